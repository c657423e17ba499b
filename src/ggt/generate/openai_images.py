"""OpenAI gpt-image models (and OpenAI-compatible image servers) as generators, via `images.edit`.

Client construction and error classification are the OpenAI VLM's (`ggt.vlm.openai_chat`): same SDK,
same failures (a moderation 400 becomes `safety_block` there too), so they are reused rather than copied.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, SecretStr, field_validator

from ggt.generate.api import APIGenerator, GeneratorOptions, ImageUsage, RawImage, error_usage
from ggt.vlm.base import resolve_api_key
from ggt.vlm.errors import EmptyResponseError, VLMError
from ggt.vlm.openai_chat import _NO_KEY, OpenAIVLM

if TYPE_CHECKING:
    from openai import AsyncOpenAI

_FILENAME = {"image/png": "lq.png", "image/jpeg": "lq.jpg", "image/webp": "lq.webp"}


class OpenAIImagesOptions(GeneratorOptions):
    size: str | None = Field(default=None, description='"WIDTHxHEIGHT" or "auto"; unset: the API default')
    quality: Literal["low", "medium", "high", "xhigh", "max", "auto"] | None = None
    # "high" because a restoration target must keep the input's faces, text and layout; "low" lets the
    # model redraw them.
    input_fidelity: Literal["low", "high"] | None = "high"
    # PNG: a lossy target would teach the restoration model JPEG artefacts.
    output_format: Literal["png", "jpeg", "webp"] | None = "png"
    background: Literal["transparent", "opaque", "auto"] | None = None

    @field_validator("size")
    @classmethod
    def _size(cls, value: str | None) -> str | None:
        if value is not None and value != "auto":
            w, _, h = value.partition("x")
            if not (w.isdigit() and h.isdigit() and int(w) > 0 and int(h) > 0):
                raise ValueError(f'size must be "WIDTHxHEIGHT" or "auto", got {value!r}')
        return value


class OpenAICompatibleImagesOptions(OpenAIImagesOptions):
    base_url: str = Field(description="the server's OpenAI-style endpoint, e.g. http://localhost:8000/v1")  # type: ignore[assignment]
    api_key_env: str | None = Field(
        default=None,
        description="environment variable holding the server's key; unset: the server needs none",
    )
    # gpt-image-only fields that other servers may reject as unknown; opt in where the server takes them.
    input_fidelity: Literal["low", "high"] | None = None
    output_format: Literal["png", "jpeg", "webp"] | None = None
    # DALL-E-style servers answer with a URL unless asked; OpenAI's gpt-image models always send base64.
    response_format: Literal["b64_json"] | None = "b64_json"


class OpenAIImagesGenerator(APIGenerator["AsyncOpenAI"]):
    """`images.edit` with the LQ photo as the one input image. Key: `api_key_env`, else OPENAI_API_KEY.
    Endpoint: `base_url`, else OPENAI_BASE_URL, else OpenAI's."""

    name = "openai"
    Options: ClassVar[type[GeneratorOptions]] = OpenAIImagesOptions
    options: OpenAIImagesOptions
    default_key_envs: ClassVar[tuple[str, ...]] = OpenAIVLM.default_key_envs
    # Request fields taken from the options when set; None leaves the API's default.
    _edit_fields: ClassVar[tuple[str, ...]] = (
        "size",
        "quality",
        "input_fidelity",
        "output_format",
        "background",
    )

    # The VLM's methods read only `options` (base_url, timeout_s), `_api_key`, `name` and `model`, all of
    # which this class has with the same meaning.
    def _new_sdk_client(self) -> AsyncOpenAI:
        return OpenAIVLM._new_sdk_client(self)  # type: ignore[arg-type]

    async def _close_sdk_client(self, sdk: AsyncOpenAI) -> None:
        await sdk.close()

    def _classify(self, exc: Exception) -> VLMError | None:
        return OpenAIVLM._classify(self, exc)  # type: ignore[arg-type]

    def edit_params(self) -> dict[str, Any]:
        """The `images.edit` keyword arguments besides model, image and prompt."""
        return {f: v for f in self._edit_fields if (v := getattr(self.options, f, None)) is not None}

    async def _generate(self, image: bytes, mime: str, prompt: str) -> RawImage:
        kwargs = {
            "model": self.model,
            "image": (_FILENAME.get(mime, "lq.png"), image, mime),
            "prompt": prompt,
            **self.edit_params(),
        }
        response = await self._call(lambda sdk: sdk.images.edit(**kwargs))
        return self._read(response)

    def _read(self, response: Any) -> RawImage:
        usage = _usage(getattr(response, "usage", None))
        where: dict[str, Any] = {"backend": self.name, "model": self.model, "usage": error_usage(usage)}
        data = getattr(response, "data", None)
        if not data:
            raise EmptyResponseError("no images in the response", **where)
        item = data[0]
        if not item.b64_json:
            extra = " (a URL instead: set response_format b64_json)" if getattr(item, "url", None) else ""
            raise EmptyResponseError(f"no b64_json image data in the answer{extra}", **where)
        try:
            raw = base64.b64decode(item.b64_json, validate=True)
        except (binascii.Error, ValueError):
            # Undecodable base64 is a broken image; `generate` turns empty bytes into `bad_output`.
            raw = b""
        return RawImage(
            data=raw,
            usage=usage,
            text=getattr(item, "revised_prompt", None),
        )


class OpenAICompatibleImagesGenerator(OpenAIImagesGenerator):
    """Any server with an OpenAI-style `/images/edits` (LocalAI, vLLM-Omni, gateways)."""

    name = "openai-compatible"
    Options: ClassVar[type[GeneratorOptions]] = OpenAICompatibleImagesOptions
    options: OpenAICompatibleImagesOptions
    default_key_envs: ClassVar[tuple[str, ...]] = ()
    _edit_fields: ClassVar[tuple[str, ...]] = (*OpenAIImagesGenerator._edit_fields, "response_format")
    # A different server is a different model even under the same name: the endpoint is part of the key.
    transport_options: ClassVar[frozenset[str]] = frozenset({"api_key_env", "timeout_s"})

    def _load_key(self) -> SecretStr | None:
        # Never the OPENAI_API_KEY fallback: that would send the user's OpenAI key to a third party.
        if self.options.api_key_env:
            return resolve_api_key((self.options.api_key_env,), self.name)
        return SecretStr(_NO_KEY)

    def _secrets(self) -> tuple[str, ...]:
        return tuple(s for s in super()._secrets() if s != _NO_KEY)


def _usage(usage: Any) -> ImageUsage:
    if usage is None:
        return ImageUsage()
    given = getattr(usage, "input_tokens_details", None)
    made = getattr(usage, "output_tokens_details", None)
    return ImageUsage(
        input_tokens=getattr(usage, "input_tokens", None),
        output_tokens=getattr(usage, "output_tokens", None),
        total_tokens=getattr(usage, "total_tokens", None),
        input_text_tokens=getattr(given, "text_tokens", None),
        input_image_tokens=getattr(given, "image_tokens", None),
        output_text_tokens=getattr(made, "text_tokens", None),
        output_image_tokens=getattr(made, "image_tokens", None),
    )
