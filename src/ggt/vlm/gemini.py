"""Gemini backend (google-genai SDK, Gemini Developer API)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import BaseModel, Field

from ggt.vlm.base import APIClient, APIOptions, RawReply
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

if TYPE_CHECKING:
    from google import genai

# Finish reasons that mean the answer was withheld, not merely cut short.
_BLOCKED_FINISH = frozenset(
    {
        "SAFETY",
        "PROHIBITED_CONTENT",
        "BLOCKLIST",
        "SPII",
        "RECITATION",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
    }
)


def _enum_name(value: Any) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "value", value))


class GeminiOptions(APIOptions):
    api_version: str | None = Field(default=None, description="API version in the path (SDK default: v1)")


class GeminiVLM(APIClient["genai.Client"]):
    """`models.generate_content` with the images and the instruction in one user turn, JSON out.

    Key: `api_key_env`, else GOOGLE_API_KEY then GEMINI_API_KEY (the SDK's own precedence). Endpoint:
    `base_url`, else GOOGLE_GEMINI_BASE_URL, else Google's.
    """

    name = "gemini"
    Options = GeminiOptions
    options: GeminiOptions
    default_key_envs: ClassVar[tuple[str, ...]] = ("GOOGLE_API_KEY", "GEMINI_API_KEY")

    def _new_sdk_client(self) -> genai.Client:
        from google import genai
        from google.genai import types

        assert self._api_key is not None
        http_options = types.HttpOptions(
            base_url=self.options.base_url,
            api_version=self.options.api_version,
            timeout=max(1, round(self.options.timeout_s * 1000)),
            # attempts=1 rather than None: with aiohttp installed, None leaves the SDK an implicit
            # sleep-and-retry on connection errors; any retry_options object switches that off.
            retry_options=types.HttpRetryOptions(attempts=1),
        )
        # vertexai=False pins the Developer API even if GOOGLE_GENAI_USE_VERTEXAI is set in the environment.
        return genai.Client(
            api_key=self._api_key.get_secret_value(), vertexai=False, http_options=http_options
        )

    async def _close_sdk_client(self, sdk: genai.Client) -> None:
        await sdk.aio.aclose()

    async def _generate(
        self,
        images: Sequence[np.ndarray],
        instruction: str,
        schema: type[BaseModel],
        json_schema: dict[str, Any],
    ) -> RawReply:
        from google.genai import types

        encoded = await self._encode_images(images)
        # Images before the text: Google's guidance for single-turn image prompts.
        parts = [types.Part.from_bytes(data=data, mime_type=mime) for data, mime in encoded]
        parts.append(types.Part.from_text(text=self._instruction_for(instruction, json_schema)))
        config = types.GenerateContentConfig(
            response_mime_type="application/json",
            response_json_schema=json_schema if self.options.structured_output else None,
            temperature=self.options.temperature,
            max_output_tokens=self.options.max_output_tokens,
        )
        response = await self._call(
            lambda sdk: sdk.aio.models.generate_content(
                model=self.options.model, contents=[types.Content(role="user", parts=parts)], config=config
            )
        )
        return self._read(response)

    def _read(self, response: Any) -> RawReply:
        usage = _usage(response.usage_metadata)
        feedback = response.prompt_feedback
        if feedback is not None and feedback.block_reason is not None:
            detail = f": {feedback.block_reason_message}" if feedback.block_reason_message else ""
            raise SafetyBlockError(
                f"prompt blocked (blockReason {_enum_name(feedback.block_reason)}){detail}",
                backend=self.name, model=self.model, usage=usage,
            )  # fmt: skip
        if not response.candidates:
            raise EmptyResponseError(
                "no candidates in the response", backend=self.name, model=self.model, usage=usage
            )
        candidate = response.candidates[0]
        finish = _enum_name(candidate.finish_reason)
        if finish in _BLOCKED_FINISH:
            raise SafetyBlockError(
                f"answer blocked (finishReason {finish})", backend=self.name, model=self.model, usage=usage
            )
        parts = (candidate.content.parts if candidate.content else None) or []
        # Thinking models may return their reasoning as `thought` parts; only the answer is JSON.
        text = "".join(p.text for p in parts if p.text and not p.thought)
        if not text.strip():
            raise EmptyResponseError(
                f"no text in the answer (finishReason {finish})",
                backend=self.name,
                model=self.model,
                usage=usage,
            )
        return RawReply(
            text=text, usage=usage, model_version=response.model_version, truncated=finish == "MAX_TOKENS"
        )

    def _classify(self, exc: Exception) -> VLMError | None:
        from google.genai import errors

        where = {"backend": self.name, "model": self.model}
        if isinstance(exc, errors.APIError):
            status = int(exc.code or 0)
            cls, reason = error_for_status(status)
            message = exc.message or exc.status or "no message"
            try:
                details = json.dumps(exc.details)
            except (TypeError, ValueError):
                details = str(exc.details)
            # Google answers a bad key with 400 INVALID_ARGUMENT, not 401; only the detail tells them apart.
            if status == 400 and ("API_KEY_INVALID" in details or "API key not valid" in message):
                cls, reason = PermanentVLMError, "auth"
            headers = getattr(getattr(exc, "response", None), "headers", None)
            retry_after = parse_retry_after(headers, exc.details) if cls is RetryableVLMError else None
            status_text = f" {exc.status}" if exc.status else ""
            return cls(
                f"HTTP {status}{status_text}: {message}",
                reason=reason, status=status, retry_after_s=retry_after, **where,
            )  # fmt: skip
        if isinstance(exc, errors.UnknownApiResponseError):
            return RetryableVLMError(f"unreadable response: {exc}", reason="bad_response", **where)
        reason = transport_reason(exc)
        if reason is not None:
            what = "timed out" if reason == "timeout" else "connection failed"
            return RetryableVLMError(f"{what} ({type(exc).__name__}: {exc})", reason=reason, **where)
        return None


def _usage(meta: Any) -> Usage:
    if meta is None:
        return Usage()
    candidates, thoughts = meta.candidates_token_count, meta.thoughts_token_count
    # Thinking tokens are billed as output, so they belong in the cost the engine tracks.
    output = None if candidates is None and thoughts is None else (candidates or 0) + (thoughts or 0)
    return Usage(
        input_tokens=meta.prompt_token_count, output_tokens=output, total_tokens=meta.total_token_count
    )
