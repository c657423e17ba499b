"""Gemini image models ("Nano Banana") as generators, via google-genai `models.generate_content`.

The LQ photo and the prompt go in one user turn; the answer's first non-thought inline image is the
result. Client construction and error classification are the Gemini VLM's (`ggt.vlm.gemini`): same SDK,
same endpoints, same failures, so they are reused rather than copied.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, field_validator

from ggt.generate.api import APIGenerator, GeneratorOptions, ImageUsage, RawImage, error_usage
from ggt.generate.batch import BatchItemResult, BatchRequest, BatchStatus, Submission
from ggt.vlm.errors import (
    EmptyResponseError,
    PermanentVLMError,
    Reason,
    RetryableVLMError,
    SafetyBlockError,
    VLMConfigError,
    VLMError,
    redact,
)
from ggt.vlm.gemini import _BLOCKED_FINISH, GeminiVLM, _enum_name

if TYPE_CHECKING:
    from google import genai

# Longest text quoted in a "no_image" error: enough to see a refusal or a question back, one line.
_TEXT_QUOTE = 200


class GeminiGeneratorOptions(GeneratorOptions):
    api_version: str | None = Field(default=None, description="API version in the path (SDK default: v1)")
    # Free-form "W:H" rather than a fixed list: each model generation has added ratios (21:9, 4:5, 1:4).
    aspect_ratio: str | None = Field(
        default=None,
        description='output aspect ratio, "W:H" (e.g. "4:3"); unset: the model follows the input',
    )
    image_size: str | None = Field(default=None, description='output resolution class, e.g. "1K", "2K", "4K"')
    # TEXT alongside IMAGE lets the model explain a refusal; IMAGE alone is cheaper and what restoration needs.
    response_modalities: tuple[Literal["TEXT", "IMAGE"], ...] = ("IMAGE",)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    seed: int | None = None

    @field_validator("aspect_ratio")
    @classmethod
    def _ratio(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[1-9]\d*:[1-9]\d*", value):
            raise ValueError(f'aspect_ratio must look like "4:3", got {value!r}')
        return value

    @field_validator("response_modalities")
    @classmethod
    def _modalities(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if "IMAGE" not in value:
            raise ValueError("response_modalities must include IMAGE")
        return tuple(dict.fromkeys(value))


class GeminiGenerator(APIGenerator["genai.Client"]):
    """Key: `api_key_env`, else GOOGLE_API_KEY then GEMINI_API_KEY. Endpoint: `base_url`, else
    GOOGLE_GEMINI_BASE_URL, else Google's."""

    name = "gemini"
    Options: ClassVar[type[GeneratorOptions]] = GeminiGeneratorOptions
    options: GeminiGeneratorOptions
    default_key_envs: ClassVar[tuple[str, ...]] = GeminiVLM.default_key_envs
    transport_options: ClassVar[frozenset[str]] = APIGenerator.transport_options | {"api_version"}

    # The VLM's methods read only `options` (base_url, api_version, timeout_s), `_api_key`, `name` and
    # `model`, all of which this class has with the same meaning.
    def _new_sdk_client(self) -> genai.Client:
        return GeminiVLM._new_sdk_client(self)  # type: ignore[arg-type]

    async def _close_sdk_client(self, sdk: genai.Client) -> None:
        await sdk.aio.aclose()

    def _classify(self, exc: Exception) -> VLMError | None:
        return GeminiVLM._classify(self, exc)  # type: ignore[arg-type]

    def generation_config(self) -> Any:
        from google.genai import types

        opts = self.options
        image_config = None
        if opts.aspect_ratio is not None or opts.image_size is not None:
            image_config = types.ImageConfig(aspect_ratio=opts.aspect_ratio, image_size=opts.image_size)
        return types.GenerateContentConfig(
            response_modalities=list(opts.response_modalities),
            image_config=image_config,
            temperature=opts.temperature,
            seed=opts.seed,
        )

    def contents(self, image: bytes, mime: str, prompt: str) -> list[Any]:
        """The request's `contents`: image first, then the prompt (Google's order for image edits)."""
        from google.genai import types

        parts = [types.Part.from_bytes(data=image, mime_type=mime), types.Part.from_text(text=prompt)]
        return [types.Content(role="user", parts=parts)]

    async def _generate(self, image: bytes, mime: str, prompt: str) -> RawImage:
        contents = self.contents(image, mime, prompt)
        config = self.generation_config()
        response = await self._call(
            lambda sdk: sdk.aio.models.generate_content(model=self.model, contents=contents, config=config)
        )
        return read_response(response, backend=self.name, model=self.model)


def read_response(response: Any, *, backend: str, model: str) -> RawImage:
    """A `GenerateContentResponse` -> its first image, or the classified reason there is none.

    Module-level so the batch helper reads inlined batch responses with exactly the same rules.
    """
    usage = _usage(response.usage_metadata)
    where: dict[str, Any] = {"backend": backend, "model": model, "usage": error_usage(usage)}
    feedback = response.prompt_feedback
    if feedback is not None and feedback.block_reason is not None:
        detail = f": {feedback.block_reason_message}" if feedback.block_reason_message else ""
        raise SafetyBlockError(
            f"prompt blocked (blockReason {_enum_name(feedback.block_reason)}){detail}", **where
        )
    if not response.candidates:
        raise EmptyResponseError("no candidates in the response", **where)
    candidate = response.candidates[0]
    finish = _enum_name(candidate.finish_reason)
    if finish in _BLOCKED_FINISH:
        raise SafetyBlockError(f"image withheld (finishReason {finish})", **where)
    parts = (candidate.content.parts if candidate.content else None) or []
    # Thinking image models (Gemini 3 Pro Image) return draft images as `thought` parts; only the final
    # answer is the result.
    answer = [p for p in parts if not p.thought]
    text = "".join(p.text for p in answer if p.text).strip()
    for part in answer:
        blob = part.inline_data
        if blob is not None and blob.data and (blob.mime_type or "image/").startswith("image/"):
            return RawImage(
                data=blob.data,
                usage=usage,
                model_version=response.model_version,
                finish_reason=finish,
                text=text or None,
            )
    if text or finish == "NO_IMAGE" or (finish or "").startswith("IMAGE_"):
        quoted = text if len(text) <= _TEXT_QUOTE else text[: _TEXT_QUOTE - 3] + "..."
        said = f": {quoted!r}" if text else ""
        raise PermanentVLMError(
            f"no image in the answer (finishReason {finish}){said}", reason="no_image", **where
        )
    raise EmptyResponseError(f"no content in the answer (finishReason {finish})", **where)


def _modality_counts(details: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in details or []:
        modality = _enum_name(item.modality)
        if modality and item.token_count is not None:
            counts[modality] = counts.get(modality, 0) + item.token_count
    return counts


def _usage(meta: Any) -> ImageUsage:
    if meta is None:
        return ImageUsage()
    candidates, thoughts = meta.candidates_token_count, meta.thoughts_token_count
    # Thinking tokens are billed as output, so they belong in the cost the engine tracks.
    output = None if candidates is None and thoughts is None else (candidates or 0) + (thoughts or 0)
    prompt = _modality_counts(meta.prompt_tokens_details)
    answer = _modality_counts(meta.candidates_tokens_details)
    return ImageUsage(
        input_tokens=meta.prompt_token_count,
        output_tokens=output,
        total_tokens=meta.total_token_count,
        input_text_tokens=prompt.get("TEXT"),
        input_image_tokens=prompt.get("IMAGE"),
        output_text_tokens=answer.get("TEXT"),
        output_image_tokens=answer.get("IMAGE"),
    )


# ----------------------------------------------------------------------------------------------------------
# Batch API


_DONE_STATES = frozenset(
    {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"}
)
# google.rpc.Code of an item's error -> how the engine should treat that item.
_GRPC_ERRORS: dict[int, tuple[type[VLMError], Reason]] = {
    2: (RetryableVLMError, "server_error"),  # UNKNOWN
    3: (PermanentVLMError, "invalid_request"),  # INVALID_ARGUMENT
    4: (RetryableVLMError, "timeout"),  # DEADLINE_EXCEEDED
    5: (PermanentVLMError, "not_found"),
    7: (PermanentVLMError, "auth"),  # PERMISSION_DENIED
    8: (RetryableVLMError, "rate_limited"),  # RESOURCE_EXHAUSTED
    13: (RetryableVLMError, "server_error"),  # INTERNAL
    14: (RetryableVLMError, "server_error"),  # UNAVAILABLE
    16: (PermanentVLMError, "auth"),  # UNAUTHENTICATED
}
# Google's cap on an inline batch request; larger jobs need a JSONL file upload (not implemented here).
INLINE_BATCH_LIMIT = 20_000_000


class GeminiBatch:
    """Gemini's Batch API (about half price, answered within 24 hours) with inlined requests.

        batch = GeminiBatch(generator)
        name = await batch.submit([BatchRequest(item_id, png, prompt), ...], display_name="ggt-run-17")
        ...store `name`; after a restart, resume from it...
        status = await batch.wait(name, poll_s=60)
        for item in await batch.results(name): ...

    Requests are built exactly as `generator.generate` builds them and answers are read by the same
    rules, so a batch result and a direct result for the same item are interchangeable. `submit` is the
    one call that must not be blindly retried: a lost response may still have created a (paid) job.
    """

    # No documented item cap for inline jobs: the byte limit binds first (about 10 1024x1024 PNGs).
    max_items = 1000

    def __init__(self, generator: GeminiGenerator, *, max_request_bytes: int = INLINE_BATCH_LIMIT) -> None:
        self.generator = generator
        self.max_request_bytes = max_request_bytes

    @staticmethod
    def request_bytes(request: BatchRequest) -> int:
        # Base64 inflates each image by 4/3; the prompt and JSON framing are small next to it.
        return len(request.image) * 4 // 3 + len(request.prompt.encode()) + 512

    async def submit_job(
        self, requests: Sequence[BatchRequest], *, display_name: str | None = None
    ) -> Submission:
        return Submission(await self.submit(requests, display_name=display_name))

    async def submit(self, requests: Sequence[BatchRequest], *, display_name: str | None = None) -> str:
        """Create the job; returns its name. Inputs are checked before anything is sent."""
        from google.genai import types

        gen = self.generator
        if not requests:
            raise VLMConfigError("a batch needs at least one request", backend=gen.name, model=gen.model)
        keys = [r.key for r in requests]
        if len(set(keys)) != len(keys):
            raise VLMConfigError("batch request keys must be unique", backend=gen.name, model=gen.model)
        size = sum(self.request_bytes(r) for r in requests)
        if size > self.max_request_bytes:
            raise VLMConfigError(
                f"the batch is about {size / 1e6:.1f} MB inline, over the {self.max_request_bytes / 1e6:.0f} MB "
                "limit: submit fewer or smaller images per batch",
                backend=gen.name, model=gen.model,
            )  # fmt: skip
        config = gen.generation_config()
        inlined = [
            types.InlinedRequest(
                contents=gen.contents(r.image, gen.check_input(r.image, r.prompt), r.prompt),
                config=config,
                metadata={"key": r.key},
            )
            for r in requests
        ]
        job_config = types.CreateBatchJobConfig(display_name=display_name) if display_name else None
        job = await gen._call(
            lambda sdk: sdk.aio.batches.create(model=gen.model, src=inlined, config=job_config)
        )
        if not job.name:
            raise EmptyResponseError(
                "the batch was created without a name", backend=gen.name, model=gen.model
            )
        return str(job.name)

    async def _job(self, name: str) -> Any:
        return await self.generator._call(lambda sdk: sdk.aio.batches.get(name=name))

    async def status(self, name: str) -> BatchStatus:
        return _status(await self._job(name))

    async def wait(self, name: str, *, poll_s: float = 30.0, timeout_s: float | None = None) -> BatchStatus:
        """Poll until the job is done (any terminal state) or `timeout_s` passes; returns the last status."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            status = await self.status(name)
            if status.done or (deadline is not None and time.monotonic() + poll_s > deadline):
                return status
            await asyncio.sleep(poll_s)

    async def cancel(self, name: str) -> None:
        await self.generator._call(lambda sdk: sdk.aio.batches.cancel(name=name))

    async def results(self, name: str) -> list[BatchItemResult]:
        """Each item's image or classified error, in submission order when the job kept the keys."""
        gen = self.generator
        job = await self._job(name)
        status = _status(job)
        if not status.done:
            raise RetryableVLMError(
                f"batch {name} is {status.state}, not done yet",
                reason="conflict",
                backend=gen.name,
                model=gen.model,
            )
        if not status.succeeded:
            detail = f": {status.error}" if status.error else ""
            raise PermanentVLMError(
                f"batch {name} ended {status.state}{detail}",
                reason="batch_failed",
                backend=gen.name,
                model=gen.model,
            )
        responses = (job.dest.inlined_responses if job.dest else None) or []
        # What the job took, as the best available latency for each of its items.
        latency = 0.0
        if job.create_time is not None and job.end_time is not None:
            latency = (job.end_time - job.create_time).total_seconds()
        results = []
        for i, item in enumerate(responses):
            key = (item.metadata or {}).get("key", str(i))
            results.append(await self._item(str(key), item, latency))
        return results

    async def _item(self, key: str, item: Any, latency: float) -> BatchItemResult:
        gen = self.generator
        where: dict[str, Any] = {"backend": gen.name, "model": gen.model}
        if item.error is not None:
            code = int(item.error.code or 0)
            cls, reason = _GRPC_ERRORS.get(code, (PermanentVLMError, "invalid_request"))
            message = redact(str(item.error.message or "no message"), gen._secrets())
            return BatchItemResult(
                key, error=cls(f"item failed (code {code}): {message}", reason=reason, **where)
            )
        if item.response is None:
            return BatchItemResult(key, error=EmptyResponseError("no response for this item", **where))
        try:
            raw = read_response(item.response, backend=gen.name, model=gen.model)
            return BatchItemResult(key, image=await gen.finish(raw, latency))
        except VLMError as err:
            return BatchItemResult(key, error=err)


def _status(job: Any) -> BatchStatus:
    state = _enum_name(job.state) or "JOB_STATE_UNSPECIFIED"
    error = job.error.message if job.error is not None else None
    return BatchStatus(
        name=str(job.name),
        state=state,
        done=state in _DONE_STATES,
        succeeded=state == "JOB_STATE_SUCCEEDED",
        display_name=job.display_name,
        error=error,
    )
