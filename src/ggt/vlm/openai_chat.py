"""OpenAI backend and OpenAI-compatible servers (vLLM, Ollama, LM Studio, ...), via the official SDK.

Both speak `chat.completions` with `image_url` data-URL parts. They differ in defaults: OpenAI takes a
strict JSON Schema as `response_format`; a compatible server may not support that at all, so there the
schema goes into the prompt unless `structured_output` is switched on.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, Field, SecretStr

from ggt.vlm.base import APIClient, APIOptions, RawReply, resolve_api_key
from ggt.vlm.errors import (
    EmptyResponseError,
    PermanentVLMError,
    RetryableVLMError,
    SafetyBlockError,
    VLMError,
    error_for_status,
    parse_retry_after,
    transport_reason,
)
from ggt.vlm.result import Usage
from ggt.vlm.schema import strict_json_schema

if TYPE_CHECKING:
    from openai import AsyncOpenAI

# Error codes OpenAI uses when its moderation rejects a request.
_SAFETY_CODES = frozenset({"content_policy_violation", "moderation_blocked", "content_filter"})


class OpenAIOptions(APIOptions):
    strict: bool = Field(
        default=True,
        description="strict JSON Schema (falls back to non-strict when the schema cannot be strict)",
    )
    # "high" because the question is about fine detail (noise, JPEG blocks) that "low" (512 px) erases.
    detail: Literal["auto", "low", "high"] | None = "high"


class OpenAICompatibleOptions(OpenAIOptions):
    base_url: str = Field(description="the server's OpenAI-style endpoint, e.g. http://localhost:8000/v1")  # type: ignore[assignment]
    api_key_env: str | None = Field(
        default=None,
        description="environment variable holding the server's key; unset: the server needs none",
    )
    structured_output: bool = Field(
        default=False,
        description="send response_format json_schema (vLLM, Ollama >= 0.5 and LM Studio support it)",
    )
    detail: Literal["auto", "low", "high"] | None = None


class OpenAIVLM(APIClient["AsyncOpenAI"]):
    """Chat Completions with image parts. Key: `api_key_env`, else OPENAI_API_KEY. Endpoint: `base_url`,
    else OPENAI_BASE_URL, else OpenAI's."""

    name = "openai"
    Options: ClassVar[type[OpenAIOptions]] = OpenAIOptions
    options: OpenAIOptions
    default_key_envs: ClassVar[tuple[str, ...]] = ("OPENAI_API_KEY",)
    # OpenAI deprecated `max_tokens` for chat; servers that copy the API lag behind, see the subclass.
    max_tokens_param: ClassVar[str] = "max_completion_tokens"

    def _new_sdk_client(self) -> AsyncOpenAI:
        from openai import AsyncOpenAI

        assert self._api_key is not None
        return AsyncOpenAI(
            api_key=self._api_key.get_secret_value(),
            base_url=self.options.base_url,
            timeout=self.options.timeout_s,
            max_retries=0,  # the engine owns retries
        )

    async def _close_sdk_client(self, sdk: AsyncOpenAI) -> None:
        await sdk.close()

    def _response_format(self, schema: type[BaseModel], json_schema: dict[str, Any]) -> dict[str, Any] | None:
        if not self.options.structured_output:
            return None
        strict = strict_json_schema(json_schema) if self.options.strict else None
        name = re.sub(r"[^A-Za-z0-9_-]", "_", schema.__name__)[:64]
        return {
            "type": "json_schema",
            "json_schema": {"name": name, "schema": strict or json_schema, "strict": strict is not None},
        }

    async def _generate(
        self,
        images: Sequence[np.ndarray],
        instruction: str,
        schema: type[BaseModel],
        json_schema: dict[str, Any],
    ) -> RawReply:
        encoded = await self._encode_images(images)
        content: list[dict[str, Any]] = []
        for data, mime in encoded:
            image_url: dict[str, Any] = {
                "url": f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
            }
            if self.options.detail is not None:
                image_url["detail"] = self.options.detail
            content.append({"type": "image_url", "image_url": image_url})
        content.append({"type": "text", "text": self._instruction_for(instruction, json_schema)})
        kwargs: dict[str, Any] = {
            "model": self.options.model,
            "messages": [{"role": "user", "content": content}],
        }
        response_format = self._response_format(schema, json_schema)
        if response_format is not None:
            kwargs["response_format"] = response_format
        if self.options.temperature is not None:
            kwargs["temperature"] = self.options.temperature
        if self.options.max_output_tokens is not None:
            kwargs[self.max_tokens_param] = self.options.max_output_tokens
        response = await self._call(lambda sdk: sdk.chat.completions.create(**kwargs))
        return self._read(response)

    def _read(self, response: Any) -> RawReply:
        usage = _usage(getattr(response, "usage", None))
        where = {"backend": self.name, "model": self.model, "usage": usage}
        choices = getattr(response, "choices", None)
        if not choices:
            raise EmptyResponseError("no choices in the response", **where)
        choice = choices[0]
        message = choice.message
        refusal = getattr(message, "refusal", None) if message is not None else None
        if refusal:
            raise SafetyBlockError(f"the model refused: {refusal}", **where)
        if choice.finish_reason == "content_filter":
            raise SafetyBlockError(
                "answer withheld by the content filter (finish_reason content_filter)", **where
            )
        text = (message.content if message is not None else None) or ""
        if not text.strip():
            raise EmptyResponseError(f"no text in the answer (finish_reason {choice.finish_reason})", **where)
        return RawReply(
            text=text,
            usage=usage,
            model_version=getattr(response, "model", None),
            truncated=choice.finish_reason == "length",
        )

    def _classify(self, exc: Exception) -> VLMError | None:
        import openai

        where = {"backend": self.name, "model": self.model}
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            body = exc.body
            error = body.get("error", body) if isinstance(body, dict) else {}
            error = error if isinstance(error, dict) else {}
            message = error.get("message") or exc.message
            code = error.get("code") or getattr(exc, "code", None)
            cls, reason = error_for_status(status)
            if code in _SAFETY_CODES:
                cls, reason = SafetyBlockError, "safety_block"
            elif status == 429 and code == "insufficient_quota":
                # Billing, not load: waiting will not help.
                cls, reason = PermanentVLMError, "quota_exceeded"
            retry_after = parse_retry_after(exc.response.headers) if cls is RetryableVLMError else None
            code_text = f" {code}" if code else ""
            return cls(
                f"HTTP {status}{code_text}: {message}",
                reason=reason, status=status, retry_after_s=retry_after, **where,
            )  # fmt: skip
        if isinstance(exc, openai.APITimeoutError):
            return RetryableVLMError("timed out", reason="timeout", **where)
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__
            detail = f" ({type(cause).__name__}: {cause})" if cause is not None else ""
            return RetryableVLMError(f"connection failed{detail}", reason="connection", **where)
        if isinstance(exc, openai.APIResponseValidationError):
            return RetryableVLMError(f"unreadable response: {exc.message}", reason="bad_response", **where)
        reason = transport_reason(exc)
        if reason is not None:
            return RetryableVLMError(f"{reason} ({type(exc).__name__}: {exc})", reason=reason, **where)
        return None


# A placeholder, not a secret: the SDK insists on a key, and without one of ours it would read
# OPENAI_API_KEY and send the user's OpenAI key to a third-party server.
_NO_KEY = "no-key-needed"


class OpenAICompatibleVLM(OpenAIVLM):
    """Any server with an OpenAI-style `chat.completions` (vLLM, Ollama, LM Studio, llama.cpp, TGI)."""

    name = "openai-compatible"
    Options: ClassVar[type[OpenAIOptions]] = OpenAICompatibleOptions
    options: OpenAICompatibleOptions
    default_key_envs: ClassVar[tuple[str, ...]] = ()
    max_tokens_param: ClassVar[str] = "max_tokens"

    def _load_key(self) -> SecretStr | None:
        if self.options.api_key_env:
            return resolve_api_key((self.options.api_key_env,), self.name)
        return SecretStr(_NO_KEY)

    def _secrets(self) -> tuple[str, ...]:
        secrets = super()._secrets()
        return tuple(s for s in secrets if s != _NO_KEY)


def _usage(usage: Any) -> Usage:
    if usage is None:
        return Usage()
    return Usage(
        input_tokens=getattr(usage, "prompt_tokens", None),
        output_tokens=getattr(usage, "completion_tokens", None),
        total_tokens=getattr(usage, "total_tokens", None),
    )
