"""The interface of the vendor-API image generators (Gemini image models, OpenAI gpt-image, compatible servers).

    gen = GeminiGenerator.create(model="gemini-2.5-flash-image", aspect_ratio="4:3")
    out = await gen.generate(lq_png_bytes, prompt)       # GeneratedImage: data, mime, usage, ...
    key = gen.request_params()                           # what the request cache must hash besides the inputs

A generator makes exactly one HTTP call per `generate`: the SDKs' own retries are off and the engine
decides what to retry, from the classified error (`RetryableVLMError` / `PermanentVLMError` and their
`.reason`). The key, client-per-event-loop and error-translation machinery is `ggt.vlm.base.SDKBackend`,
shared with the VLM clients, so both families fail, redact and retry the same way.
"""

from __future__ import annotations

import asyncio
import io
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ggt.vlm.base import SDK, SDKBackend, _summarize_validation, run_sync
from ggt.vlm.errors import PermanentVLMError, VLMConfigError
from ggt.vlm.result import Usage

G = TypeVar("G", bound="APIGenerator[Any]")

# A generated image larger than this is a broken answer, not a photo; it also keeps a hostile or buggy
# server from making Pillow allocate gigabytes (Pillow's own bomb guard is off once ggt.imaging is loaded).
MAX_OUTPUT_PIXELS = 100_000_000

_MIME_BY_FORMAT = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}


class GeneratorOptions(BaseModel):
    """Options every API generator accepts. Unknown keys are errors: a typo must not fall back to a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(description="model name, from config (names change monthly: keep them out of code)")
    base_url: str | None = Field(
        default=None, description="API endpoint; unset: the SDK's own environment variable, then its default"
    )
    api_key_env: str | None = Field(default=None, description="environment variable holding the API key")
    # Image models take tens of seconds, high-quality 2K/4K edits over a minute; 120 s (the VLM default)
    # would turn slow successes into paid-for timeouts.
    timeout_s: float = Field(default=300.0, gt=0, description="per-call timeout, seconds")


class ImageUsage(BaseModel):
    """Token counts as the vendor reported them; None where it reported nothing.

    The per-modality counts matter for cost: image output tokens are priced several times text tokens.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    input_text_tokens: int | None = None
    input_image_tokens: int | None = None
    output_text_tokens: int | None = None
    output_image_tokens: int | None = None


class GeneratedImage(BaseModel):
    """One successful `generate` call: the image file exactly as the API returned it, plus provenance."""

    # base64 in JSON: the default (UTF-8) cannot represent image bytes, and logs/caches dump these models.
    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_bytes="base64", val_json_bytes="base64")

    data: bytes = Field(repr=False, description="the returned image file's bytes (not re-encoded)")
    mime: str = Field(description="MIME type of `data`, from its decoded format")
    width: int = Field(ge=1)
    height: int = Field(ge=1)
    backend: str
    model: str = Field(description="the model asked for")
    model_version: str | None = Field(default=None, description="the model the server says answered")
    finish_reason: str | None = None
    usage: ImageUsage = Field(default_factory=ImageUsage)
    latency_s: float = Field(ge=0.0)
    text: str | None = Field(default=None, description="text the model sent along (Gemini TEXT+IMAGE)")


@dataclass
class RawImage:
    """A backend's answer before the shared checks (`generate` decodes it and times the call)."""

    data: bytes
    usage: ImageUsage = field(default_factory=ImageUsage)
    model_version: str | None = None
    finish_reason: str | None = None
    text: str | None = None


def probe_image(data: bytes, *, full: bool = True) -> tuple[str, int, int]:
    """(MIME type, width, height) of encoded image bytes; raises ValueError when they do not decode.

    A full decode rather than a header read: truncated or garbled pixel data is exactly the failure this
    must catch before the bytes are stored as a training target. `full=False` reads the header only, for
    callers that decode the pixels themselves next (and fail on bad ones).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
            if width * height > MAX_OUTPUT_PIXELS:
                raise ValueError(f"{width}x{height} is over {MAX_OUTPUT_PIXELS} pixels")
            fmt = im.format or ""
            if full:
                im.load()
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ValueError(f"{type(exc).__name__}: {exc}") from None
    return _MIME_BY_FORMAT.get(fmt, f"image/{fmt.lower() or 'unknown'}"), width, height


def sniff_mime(data: bytes) -> str | None:
    """The MIME type of an upload from its magic bytes (PNG, JPEG, WebP), None for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


class APIGenerator(SDKBackend[SDK], ABC):
    """An image model behind a vendor API that restores one LQ photo, given a prompt.

    Async first; `generate_sync` is a convenience for scripts. Use one generator per configuration and
    share it between concurrent tasks; `aclose()` (or `async with`) releases its connections.
    """

    name: ClassVar[str]
    Options: ClassVar[type[GeneratorOptions]]
    options: GeneratorOptions
    # Options that change how a call is made but not what comes back; left out of the cache key so that,
    # e.g., a longer timeout does not make every cached response unreachable.
    transport_options: ClassVar[frozenset[str]] = frozenset({"base_url", "api_key_env", "timeout_s"})

    def __init__(self, options: GeneratorOptions) -> None:
        if not isinstance(options, self.Options):
            raise TypeError(
                f"{type(self).__name__} takes {self.Options.__name__}, got {type(options).__name__}"
            )
        self.options = options
        self._init_sdk()

    @classmethod
    def create(cls: type[G], **options: Any) -> G:
        """Build from keyword options; a bad or unknown option raises `VLMConfigError` naming it."""
        try:
            opts = cls.Options.model_validate(options)
        except ValidationError as e:
            raise VLMConfigError(
                f"bad options for {cls.name!r}: {_summarize_validation(e)}", backend=cls.name
            ) from None
        return cls(opts)

    @property
    def model(self) -> str:
        return self.options.model

    def request_params(self) -> dict[str, Any]:
        """Everything besides the input image and the prompt that affects the output, for the cache key.

        Plain JSON types, sorted keys; options left at None are dropped, so adding a new optional option
        later does not invalidate existing cache entries.
        """
        opts = self.options.model_dump(mode="json", exclude=set(self.transport_options), exclude_none=True)
        return {"backend": self.name, **dict(sorted(opts.items()))}

    @abstractmethod
    async def _generate(self, image: bytes, mime: str, prompt: str) -> RawImage:
        """One call. Raises a `VLMError` subclass for every failure the engine should know about."""

    def check_input(self, image: bytes, prompt: str) -> str:
        """The upload's MIME type; a `VLMConfigError` for inputs the vendor would reject anyway.

        Caught here, not by the vendor: its 400 would cost a round trip and read like our bug.
        """
        if not isinstance(image, bytes | bytearray) or not image:
            raise VLMConfigError(
                "image must be non-empty encoded image bytes", backend=self.name, model=self.model
            )
        if not prompt or not prompt.strip():
            raise VLMConfigError("prompt is empty", backend=self.name, model=self.model)
        mime = sniff_mime(bytes(image[:16]))
        if mime is None:
            raise VLMConfigError("image must be PNG, JPEG or WebP bytes", backend=self.name, model=self.model)
        return mime

    async def generate(self, image: bytes, prompt: str, *, verify: bool = True) -> GeneratedImage:
        """Restore `image` (PNG bytes of the LQ photo, already resized by the caller) as `prompt` asks.

        `verify=False` checks only the answer's header: for a caller that decodes the pixels itself next
        (synth does), which saves a full decode per item.
        """
        mime = self.check_input(image, prompt)
        self._sdk()  # first use imports the SDK and builds its client: not part of the call's latency
        started = time.perf_counter()
        raw = await self._generate(bytes(image), mime, prompt)
        return await self.finish(raw, time.perf_counter() - started, verify=verify)

    async def finish(self, raw: RawImage, latency_s: float, *, verify: bool = True) -> GeneratedImage:
        """A backend's answer -> `GeneratedImage`, once its bytes are proven to decode (else `bad_output`)."""
        try:
            if verify:
                # A multi-megapixel decode takes tens of milliseconds: off the loop, like the VLMs' encoding.
                mime, width, height = await asyncio.to_thread(probe_image, raw.data)
            else:
                mime, width, height = probe_image(raw.data, full=False)
        except ValueError as exc:
            raise PermanentVLMError(
                f"the returned image does not decode ({len(raw.data)} bytes): {exc}",
                reason="bad_output", backend=self.name, model=self.model, usage=error_usage(raw.usage),
            ) from None  # fmt: skip
        return GeneratedImage(
            data=raw.data,
            mime=mime,
            width=width,
            height=height,
            backend=self.name,
            model=self.model,
            model_version=raw.model_version,
            finish_reason=raw.finish_reason,
            usage=raw.usage,
            latency_s=max(0.0, latency_s),
            text=raw.text,
        )

    def generate_sync(self, image: bytes, prompt: str) -> GeneratedImage:
        """Blocking `generate`, for scripts. Not for use inside a running event loop."""
        return run_sync(self, self.generate(image, prompt))  # type: ignore[arg-type]

    async def __aenter__(self: G) -> G:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        # Options never hold keys, so showing them is safe and useful in logs.
        fields = ", ".join(f"{k}={v!r}" for k, v in self.options.model_dump(exclude_defaults=True).items())
        return f"{type(self).__name__}({fields})"


def error_usage(usage: ImageUsage) -> Usage:
    """The errors' `Usage` (totals) for an image call's usage, so failed but billed calls reach the ledger."""
    return Usage(
        input_tokens=usage.input_tokens, output_tokens=usage.output_tokens, total_tokens=usage.total_tokens
    )
