"""The VLM client interface, the JSON request loop every backend shares, and the backend registry.

A backend only implements `_generate` (one call: images + instruction -> text, or a classified
`VLMError`). Everything that must behave the same across vendors lives here once: JSON extraction,
pydantic validation, the single corrective retry, usage/latency accounting, the sync wrapper.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any, ClassVar, Generic, Literal, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from ggt.vlm.errors import MalformedResponseError, VLMConfigError, VLMError, redact, strip_cause_if_leaky
from ggt.vlm.result import Usage, VLMResult
from ggt.vlm.schema import extract_json_text, json_schema_for

log = logging.getLogger("ggt.vlm")

T = TypeVar("T", bound=BaseModel)
R = TypeVar("R")
SDK = TypeVar("SDK")

# ----------------------------------------------------------------------------------------------------------
# Options


class VLMOptions(BaseModel):
    """Options every backend accepts. Unknown keys are errors: a typo must not fall back to a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class APIOptions(VLMOptions):
    """Options of the vendor-API backends. Keys never appear here: they come from environment variables."""

    model: str = Field(
        description="model name, e.g. from config (names change monthly: keep them out of code)"
    )
    base_url: str | None = Field(
        default=None, description="API endpoint; unset: the SDK's own environment variable, then its default"
    )
    api_key_env: str | None = Field(default=None, description="environment variable holding the API key")
    timeout_s: float = Field(default=120.0, gt=0, description="per-call timeout, seconds")
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_output_tokens: int | None = Field(default=None, ge=1)
    structured_output: bool = Field(
        default=True, description="send the JSON Schema as the API's structured-output constraint"
    )
    # PNG because the model is asked about compression artefacts and noise; JPEG would add its own.
    image_format: Literal["png", "jpeg"] = "png"
    # Vendors downscale large images themselves (and charge per tile), and inline payloads are capped
    # (Gemini: 20 MB per request), so sending a 24-megapixel PNG buys nothing but failures.
    max_image_side: int | None = Field(default=2048, ge=64)


# ----------------------------------------------------------------------------------------------------------
# Helpers


@dataclass
class RawReply:
    """One call's answer before validation."""

    text: str
    usage: Usage = field(default_factory=Usage)
    model_version: str | None = None
    truncated: bool = False  # the output token limit cut the answer


class _BadAnswer(Exception):
    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def _summarize_validation(err: ValidationError, limit: int = 8) -> str:
    items = []
    for e in err.errors(include_url=False, include_input=False)[:limit]:
        where = ".".join(str(p) for p in e["loc"]) or "(root)"
        items.append(f"{where}: {e['msg']}")
    more = err.error_count() - limit
    return "; ".join(items) + (f"; and {more} more" if more > 0 else "")


def validate_answer(text: str, schema: type[T]) -> T:
    """Parse `text` as JSON for `schema`; raises `_BadAnswer` with a message meant for the model to read."""
    candidate = extract_json_text(text)
    if not candidate:
        raise _BadAnswer("the answer was empty; a JSON object was expected")
    try:
        obj = json.loads(candidate)
    except json.JSONDecodeError as e:
        raise _BadAnswer(
            f"the answer is not valid JSON ({e.msg} at line {e.lineno} column {e.colno})"
        ) from None
    try:
        return schema.model_validate(obj)
    except ValidationError as e:
        raise _BadAnswer(f"the JSON does not match the schema: {_summarize_validation(e)}") from None


def corrective_instruction(instruction: str, problem: str) -> str:
    return (
        f"{instruction}\n\n"
        f"Your previous answer could not be used: {problem}.\n"
        "Answer again with only the JSON object, following the schema exactly."
    )


def json_only_instruction(instruction: str, json_schema: dict[str, Any]) -> str:
    """For servers without structured output: ask for bare JSON and show the schema in the prompt."""
    return (
        f"{instruction}\n\n"
        "Reply with a single JSON object and nothing else (no prose, no code fences). "
        f"It must validate against this JSON Schema:\n{json.dumps(json_schema, separators=(',', ':'))}"
    )


def resolve_api_key(names: Sequence[str], backend: str) -> SecretStr:
    """The first non-empty of the environment variables `names`, or a `VLMConfigError` naming them."""
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return SecretStr(value)
    wanted = " or ".join(names)
    raise VLMConfigError(
        f"no API key: set the environment variable {wanted}", reason="missing_api_key", backend=backend
    )


def encode_for_upload(img: np.ndarray, fmt: str, max_side: int | None) -> tuple[bytes, str]:
    """float32 RGB HxWx3 in [0, 1] -> (encoded bytes, MIME type), downscaled so its longer side <= max_side."""
    if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3:
        shape = getattr(img, "shape", None)
        raise ValueError(f"expected an RGB image array of shape HxWx3, got {type(img).__name__} {shape}")
    h, w = img.shape[:2]
    if max_side is not None and max(h, w) > max_side:
        import cv2  # local: keeps `import ggt.vlm` light

        scale = max_side / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        # INTER_AREA averages, so downscaling keeps the look of noise and grain instead of aliasing it.
        img = cv2.resize(np.ascontiguousarray(img, dtype=np.float32), size, interpolation=cv2.INTER_AREA)
    from ggt.imaging import encode_image

    data = encode_image(img, "jpeg" if fmt == "jpeg" else "png")
    return data, ("image/jpeg" if fmt == "jpeg" else "image/png")


# ----------------------------------------------------------------------------------------------------------
# The client interface


class VLMClient(ABC):
    """A vision-language model that answers JSON for a pydantic schema.

    Async first; `request_json_sync` is a convenience for scripts. Use one client per configuration and
    share it between concurrent tasks; `aclose()` (or `async with`) releases its connections.
    """

    name: ClassVar[str]
    Options: ClassVar[type[VLMOptions]]
    # 2 = one corrective retry after an answer that is not valid JSON for the schema.
    max_attempts: ClassVar[int] = 2

    def __init__(self, options: VLMOptions) -> None:
        self.options = options

    @property
    def model(self) -> str | None:
        return getattr(self.options, "model", None)

    @abstractmethod
    async def _generate(
        self,
        images: Sequence[np.ndarray],
        instruction: str,
        schema: type[BaseModel],
        json_schema: dict[str, Any],
    ) -> RawReply:
        """One call. Raises a `VLMError` subclass for every failure the engine should know about."""

    def _secrets(self) -> tuple[str, ...]:
        """Strings that must never appear in messages (API keys)."""
        return ()

    async def request_json(
        self, images: Sequence[np.ndarray], instruction: str, schema: type[T]
    ) -> VLMResult[T]:
        """Ask about `images`; the answer is validated against `schema` (one corrective retry if it is not)."""
        images = list(images)
        json_schema = json_schema_for(schema)
        started = time.perf_counter()
        usage = Usage()
        prompt = instruction
        problem = ""
        reply = RawReply(text="")
        for attempt in range(1, self.max_attempts + 1):
            try:
                reply = await self._generate(images, prompt, schema, json_schema)
            except VLMError as err:
                if attempt > 1:  # the engine's cost ledger needs the first, paid, attempt too
                    err.usage = usage if err.usage is None else usage + err.usage
                raise
            usage = usage + reply.usage
            try:
                data = validate_answer(reply.text, schema)
            except _BadAnswer as bad:
                problem = bad.problem
                if reply.truncated:
                    problem += " (the answer was cut off by the output token limit)"
                log.info("%s %s: attempt %d unusable: %s", self.name, self.model or "", attempt, problem)
                prompt = corrective_instruction(instruction, problem)
                continue
            latency = time.perf_counter() - started
            log.debug(
                "%s %s: ok in %.2fs, %d attempt(s), tokens in/out %s/%s",
                self.name, self.model or "", latency, attempt, usage.input_tokens, usage.output_tokens,
            )  # fmt: skip
            return VLMResult(
                data=data,
                raw_text=reply.text,
                backend=self.name,
                model=self.model,
                model_version=reply.model_version,
                latency_s=latency,
                usage=usage,
                attempts=attempt,
            )
        raise MalformedResponseError(
            f"no valid {schema.__name__} after {self.max_attempts} attempt(s): {problem}",
            backend=self.name,
            model=self.model,
            raw_text=redact(reply.text, self._secrets())[:4000],
            usage=usage,
        )

    def request_json_sync(
        self, images: Sequence[np.ndarray], instruction: str, schema: type[T]
    ) -> VLMResult[T]:
        """Blocking `request_json`, for scripts and notebooks-without-a-loop. Not for use inside a loop."""
        return run_sync(self, self.request_json(images, instruction, schema))

    async def aclose(self) -> None:  # noqa: B027 - optional hook: offline backends hold nothing
        """Release network resources held for the running event loop."""

    async def __aenter__(self) -> VLMClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        # Options never hold keys, so showing them is safe and useful in logs.
        fields = ", ".join(f"{k}={v!r}" for k, v in self.options.model_dump(exclude_defaults=True).items())
        return f"{type(self).__name__}({fields})"


def run_sync(client: VLMClient, coro: Coroutine[Any, Any, R]) -> R:
    """Run `coro` to completion on a fresh event loop, then close the connections it opened there."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        coro.close()
        raise RuntimeError("called from inside a running event loop: await the async method instead")

    async def main() -> R:
        try:
            return await coro
        finally:
            await client.aclose()

    return asyncio.run(main())


class SDKBackend(Generic[SDK]):
    """The vendor-SDK half of an API backend, shared by VLM clients and image generators.

    API key from environment variables, one SDK client per event loop, SDK failures translated into
    classified `VLMError`s with the key redacted. Subclasses set `name` and `options` (with `api_key_env`)
    and call `_init_sdk()` from their constructor; this mixin holds no constructor of its own so that it
    composes with either family's base class.
    """

    name: ClassVar[str]
    options: Any
    default_key_envs: ClassVar[tuple[str, ...]] = ()

    def _init_sdk(self) -> None:
        self._api_key = self._load_key()
        # The SDKs' async HTTP clients bind their connection pools to the loop that first used them, so a
        # client shared by `asyncio.run` calls (or by threads with their own loops) keeps one per loop.
        self._sdk_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SDK] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def model(self) -> str | None:
        return getattr(self.options, "model", None)

    def _key_envs(self) -> tuple[str, ...]:
        return (self.options.api_key_env,) if self.options.api_key_env else self.default_key_envs

    def _load_key(self) -> SecretStr | None:
        return resolve_api_key(self._key_envs(), self.name)

    def _secrets(self) -> tuple[str, ...]:
        return (self._api_key.get_secret_value(),) if self._api_key is not None else ()

    @abstractmethod
    def _new_sdk_client(self) -> SDK:
        """A new async SDK client with the SDK's own retries switched off."""

    @abstractmethod
    async def _close_sdk_client(self, sdk: SDK) -> None: ...

    @abstractmethod
    def _classify(self, exc: Exception) -> VLMError | None:
        """The `VLMError` for an SDK/transport exception, or None to let it propagate (a bug, not an outage).

        Build it with `backend=self.name, model=self.model`; `_call` redacts the message afterwards.
        """

    def _sdk(self) -> SDK:
        loop = asyncio.get_running_loop()
        sdk = self._sdk_clients.get(loop)
        if sdk is None:
            sdk = self._new_sdk_client()
            self._sdk_clients[loop] = sdk
        return sdk

    async def aclose(self) -> None:
        """Release the SDK client (connections) held for the running event loop."""
        loop = asyncio.get_running_loop()
        sdk = self._sdk_clients.pop(loop, None)
        if sdk is not None:
            await self._close_sdk_client(sdk)

    async def _call(self, make_call: Callable[[SDK], Coroutine[Any, Any, R]]) -> R:
        """Run one SDK call, translating its failures into classified `VLMError`s without leaking the key."""
        sdk = self._sdk()
        try:
            return await make_call(sdk)
        except VLMError:
            raise
        except Exception as exc:
            err = self._classify(exc)
            if err is None:
                raise
            err.message = redact(err.message, self._secrets())
            err.args = (err.message,)
            strip_cause_if_leaky(err, exc, self._secrets())
            if err.__cause__ is None:
                raise err from None
            raise err from exc


# SDKBackend first, so its `_secrets`, `aclose` and `model` override VLMClient's offline defaults.
class APIClient(SDKBackend[SDK], VLMClient):
    """Base for vendor-SDK VLM backends: `SDKBackend`'s key/client/error machinery plus image upload."""

    options: APIOptions

    def __init__(self, options: APIOptions) -> None:
        VLMClient.__init__(self, options)
        self._init_sdk()

    async def _encode_images(self, images: Sequence[np.ndarray]) -> list[tuple[bytes, str]]:
        # PNG encoding of a large photo takes tens of milliseconds; off the loop, so concurrent calls
        # keep their sockets serviced.
        opts = self.options
        return await asyncio.gather(
            *(
                asyncio.to_thread(encode_for_upload, img, opts.image_format, opts.max_image_side)
                for img in images
            )
        )

    def _instruction_for(self, instruction: str, json_schema: dict[str, Any]) -> str:
        return (
            instruction if self.options.structured_output else json_only_instruction(instruction, json_schema)
        )


# ----------------------------------------------------------------------------------------------------------
# Registry


_REGISTRY: dict[str, str | type[VLMClient]] = {
    "gemini": "ggt.vlm.gemini:GeminiVLM",
    "openai": "ggt.vlm.openai_chat:OpenAIVLM",
    "openai-compatible": "ggt.vlm.openai_chat:OpenAICompatibleVLM",
    "heuristic": "ggt.vlm.heuristic:HeuristicVLM",
}


def register_vlm(name: str, cls: str | type[VLMClient]) -> None:
    """Add a backend: a class, or "module:Class" imported on first use (keeps SDK imports lazy)."""
    _REGISTRY[name] = cls


def available_vlms() -> list[str]:
    return sorted(_REGISTRY)


def vlm_class(name: str) -> type[VLMClient]:
    try:
        entry = _REGISTRY[name]
    except KeyError:
        raise VLMConfigError(
            f"unknown VLM backend {name!r}; available: {', '.join(available_vlms())}", reason="invalid_config"
        ) from None
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        entry = getattr(import_module(module), attr)
        _REGISTRY[name] = entry
    return entry


def create_vlm(type: str, /, **options: Any) -> VLMClient:
    """Build the backend `type` from keyword options, validated by its typed `Options` model."""
    cls = vlm_class(type)
    try:
        opts = cls.Options.model_validate(options)
    except ValidationError as e:
        raise VLMConfigError(f"bad options for {type!r}: {_summarize_validation(e)}", backend=type) from None
    return cls(opts)
