"""Gemini image models ("Nano Banana") as generators, via google-genai `models.generate_content`.

The LQ photo and the prompt go in one user turn; the answer's first non-thought inline image is the
result. Client construction and error classification are the Gemini VLM's (`ggt.vlm.gemini`): same SDK,
same endpoints, same failures, so they are reused rather than copied.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, field_validator

from ggt.generate.api import APIGenerator, GeneratorOptions, ImageUsage, RawImage, error_usage
from ggt.generate.batch import (
    FIND_PAGES,
    BatchItemResult,
    BatchRequest,
    BatchStatus,
    Submission,
    check_requests,
    downloaded_lines,
)
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

log = logging.getLogger("ggt.generate")

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
    # How `--batch` sends a job (see GeminiBatch); a transport option, so never part of a request key.
    batch_mode: Literal["auto", "inline", "file"] = Field(
        default="auto", description="batch jobs inline (20 MB each), as a JSONL file (2 GB), or auto by size"
    )

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
    transport_options: ClassVar[frozenset[str]] = APIGenerator.transport_options | {
        "api_version",
        "batch_mode",
    }

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
# Google's cap on an inline batch request: the whole batchGenerateContent body "under 20 MB" (Batch API
# guide, https://ai.google.dev/gemini-api/docs/batch-api, "Inline requests").
INLINE_BATCH_LIMIT = 20_000_000
# An input file is capped at 2 GB: "Input file size limit: 2GB" (Batch API limits in
# https://ai.google.dev/gemini-api/docs/rate-limits#batch-mode; the Files API's per-file cap, 2 GB, is the
# same, https://ai.google.dev/gemini-api/docs/files). Jobs are sized by the `request_bytes` estimate, so they
# are filled to 1.9 GB, and the file as written is checked against 2 GB (decimal, the smaller reading).
FILE_INPUT_LIMIT = 2_000_000_000
FILE_BATCH_LIMIT = 1_900_000_000
# No per-job request count is documented for either mode. Inline jobs hit the byte limit first (about ten
# 1024x1024 PNGs); for file jobs the binding limits are the 2 GB and the tier's batch enqueued-token quota,
# so a job is kept to 10,000 requests (some 20M+ tokens for 1K images); `--batch-size` lowers it.
INLINE_MAX_ITEMS = 1000
FILE_MAX_ITEMS = 10_000
# Google's own batch example uploads its JSONL with mime_type "jsonl" (batch-api guide, "Input file").
_JSONL_MIME = "jsonl"
# What an unanswered item's error quotes of the results file's unreadable lines.
_MAX_LINE_NOTES = 5

BatchMode = Literal["auto", "inline", "file"]


class GeminiBatch:
    """Gemini's Batch API (about half price, answered within 24 hours), inline or through a JSONL file.

        batch = GeminiBatch(generator)
        sub = await batch.submit_job([BatchRequest(key, png, prompt), ...], display_name="ggt-run-17")
        ...store sub.name and sub.detail; after a restart, resume from them...
        status = await batch.wait(sub.name, poll_s=60)
        for item in await batch.results(sub.name): ...

    `mode` (default: the generator's `batch_mode` option, "auto"): "inline" puts the requests in the create
    call (at most 20 MB per job); "file" writes them as JSONL lines `{"key", "request"}`, uploads the file
    through the Files API and creates the job from it (at most 2 GB per job), the answers coming back as a
    JSONL file of `{"key", "response" | "error"}` lines; "auto" sends a job inline while it fits 20 MB and
    as a file above that, so jobs are sized up to the file limit.

    Requests are built exactly as `generator.generate` builds them (an inline request and a file line
    carry the same `GenerateContentRequest`) and answers are read by the same rules, so a direct, an inline
    and a file answer for the same item are interchangeable. `submit_job` is the one call that must not be
    blindly retried: a lost response may still have created a (paid) job.
    """

    def __init__(
        self,
        generator: GeminiGenerator,
        *,
        mode: BatchMode | None = None,
        max_request_bytes: int | None = None,
        inline_limit: int = INLINE_BATCH_LIMIT,
    ) -> None:
        self.generator = generator
        self.mode: BatchMode = mode or generator.options.batch_mode
        if self.mode not in ("auto", "inline", "file"):
            raise VLMConfigError(
                f"batch mode must be auto, inline or file, got {self.mode!r}",
                backend=generator.name, model=generator.model,
            )  # fmt: skip
        self.inline_limit = inline_limit
        inline = self.mode == "inline"
        default = inline_limit if inline else FILE_BATCH_LIMIT
        self.max_request_bytes = default if max_request_bytes is None else max_request_bytes
        self.max_items = INLINE_MAX_ITEMS if inline else FILE_MAX_ITEMS
        # Uploaded input files of jobs created by this helper, deleted once their results are read.
        self._inputs: dict[str, str] = {}

    @staticmethod
    def request_bytes(request: BatchRequest) -> int:
        # Base64 inflates each image by 4/3; the prompt and JSON framing are small next to it.
        return request.size * 4 // 3 + len(request.prompt.encode()) + 512

    def _where(self) -> dict[str, Any]:
        return {"backend": self.generator.name, "model": self.generator.model}

    def uses_file(self, requests: Sequence[BatchRequest]) -> bool:
        """Whether these requests go as a JSONL file (else inline), by the mode and their size."""
        if self.mode != "auto":
            return self.mode == "file"
        return sum(self.request_bytes(r) for r in requests) > self.inline_limit

    def _check(self, requests: Sequence[BatchRequest]) -> list[str]:
        """Every input checked before anything is sent; returns each request's MIME type."""
        where = self._where()
        check_requests(requests, self.max_items, where)
        size = sum(self.request_bytes(r) for r in requests)
        if size > self.max_request_bytes:
            how = "inline" if self.mode == "inline" else "as a file"
            raise VLMConfigError(
                f"the batch is about {size / 1e6:.1f} MB {how}, over the {self.max_request_bytes / 1e6:.0f} MB "
                "limit: submit fewer or smaller images per batch",
                **where,
            )  # fmt: skip
        # `check_input` reads the magic bytes only: a spooled image is read whole once, when it is sent.
        return [self.generator.check_input(r.head(), r.prompt) for r in requests]

    async def submit_job(
        self, requests: Sequence[BatchRequest], *, display_name: str | None = None
    ) -> Submission:
        """Create the job (uploading its JSONL file first in file mode); inputs are checked first.

        The returned `detail` says how it was sent (`mode`) and, for a file job, the uploaded file's name
        (`input_file`), which is deleted once the job's results are read.
        """
        mimes = self._check(requests)
        if not self.uses_file(requests):
            return Submission(await self._submit_inline(requests, mimes, display_name), {"mode": "inline"})
        return await self._submit_file(requests, mimes, display_name)

    async def submit(self, requests: Sequence[BatchRequest], *, display_name: str | None = None) -> str:
        """Create the job; returns its name. Inputs are checked before anything is sent."""
        return (await self.submit_job(requests, display_name=display_name)).name

    def _job_config(self, display_name: str | None) -> Any:
        from google.genai import types

        return types.CreateBatchJobConfig(display_name=display_name) if display_name else None

    async def _create(self, src: Any, display_name: str | None) -> str:
        gen = self.generator
        job_config = self._job_config(display_name)
        job = await gen._call(lambda sdk: sdk.aio.batches.create(model=gen.model, src=src, config=job_config))
        if not job.name:
            raise EmptyResponseError("the batch was created without a name", **self._where())
        return str(job.name)

    def _inlined(self, request: BatchRequest, mime: str, config: Any) -> Any:
        from google.genai import types

        gen = self.generator
        return types.InlinedRequest(
            contents=gen.contents(request.image, mime, request.prompt),
            config=config,
            metadata={"key": request.key},
        )

    async def _submit_inline(
        self, requests: Sequence[BatchRequest], mimes: Sequence[str], display_name: str | None
    ) -> str:
        config = self.generator.generation_config()
        inlined = [self._inlined(r, m, config) for r, m in zip(requests, mimes, strict=True)]
        return await self._create(inlined, display_name)

    def wire_request(
        self, request: BatchRequest, mime: str | None = None, config: Any = None, *, api_client: Any = None
    ) -> dict[str, Any]:
        """The JSON `GenerateContentRequest` of one item, exactly as an inline batch sends it.

        Built by the SDK's own converter for inlined requests (it has no public serializer): a file line
        then cannot drift from the inline body or a direct call, whatever the SDK changes in how it
        spells contents or the generation config (a test compares the two on the wire).
        """
        from google.genai import _common, batches

        gen = self.generator
        mime = mime or gen.check_input(request.image, request.prompt)
        inlined = self._inlined(request, mime, gen.generation_config() if config is None else config)
        # The SDK client is per event loop: a caller on a worker thread passes the loop's API client.
        wire = batches._InlinedRequest_to_mldev(api_client or gen._sdk()._api_client, inlined)
        wire = _common.encode_unserializable_types(_common.convert_to_dict(wire))
        return dict(wire["request"])

    def _write_jsonl(self, requests: Sequence[BatchRequest], mimes: Sequence[str], api_client: Any) -> Path:
        # Line by line to a temporary file: a 2 GB job never exists twice in memory, and the SDK uploads
        # from the path in 8 MB chunks.
        config = self.generator.generation_config()
        fd, name = tempfile.mkstemp(prefix="ggt-gemini-batch-", suffix=".jsonl")
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                for request, mime in zip(requests, mimes, strict=True):
                    wire = self.wire_request(request, mime, config, api_client=api_client)
                    line = {"key": request.key, "request": wire}
                    out.write(json.dumps(line, separators=(",", ":")).encode("utf-8") + b"\n")
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path

    async def _submit_file(
        self, requests: Sequence[BatchRequest], mimes: Sequence[str], display_name: str | None
    ) -> Submission:
        from google.genai import types

        gen = self.generator
        where = self._where()
        path = await asyncio.to_thread(self._write_jsonl, requests, mimes, gen._sdk()._api_client)
        try:
            size = path.stat().st_size
            if size > FILE_INPUT_LIMIT:
                raise VLMConfigError(
                    f"the batch file is {size / 1e6:.1f} MB, over the {FILE_INPUT_LIMIT / 1e9:.0f} GB input-file "
                    "limit: submit fewer or smaller images per batch",
                    **where,
                )  # fmt: skip
            config = types.UploadFileConfig(mime_type=_JSONL_MIME, display_name=display_name)
            try:
                uploaded = await gen._call(lambda sdk: sdk.aio.files.upload(file=str(path), config=config))
            except (ValueError, KeyError) as exc:
                # The SDK's own failures of the resumable protocol (no upload URL, not finalized): nothing
                # was created, so a rerun may upload again.
                raise RetryableVLMError(
                    f"the batch file upload did not complete: {exc}", reason="server_error", **where
                ) from None
        finally:
            path.unlink(missing_ok=True)
        if not uploaded.name:
            raise EmptyResponseError("the uploaded batch file has no name", **where)
        file_name = str(uploaded.name)
        try:
            name = await self._create(file_name, display_name)
        except VLMError as exc:
            # A 4xx answer is a refusal: no job exists, so the upload serves nothing. After a lost answer
            # (timeout, reset, 5xx) a job may exist and need its input: keep it.
            if exc.status is not None and 400 <= exc.status < 500:
                await self._delete(file_name)
            raise
        self._inputs[name] = file_name
        return Submission(name, {"mode": "file", "input_file": file_name})

    async def _delete(self, file_name: str) -> None:
        """Best effort: an input file nobody needs any more (Google deletes it after 48 hours anyway)."""
        try:
            await self.generator._call(lambda sdk: sdk.aio.files.delete(name=file_name))
        except Exception as exc:  # cleanup only: never fails the batch
            log.warning("could not delete the batch input file %s: %s", file_name, exc)

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

    async def find_job(self, display_name: str) -> Submission | None:
        """The job named `display_name` among the account's most recent ones, or None (see BatchBackend)."""
        from google.genai import types

        pager = await self.generator._call(
            lambda sdk: sdk.aio.batches.list(config=types.ListBatchJobsConfig(page_size=100))
        )
        for _ in range(FIND_PAGES):
            for job in pager.page:
                if job.display_name == display_name and job.name:
                    # The API does not say which file a job was made from: the input file of an adopted
                    # job is left to expire (Google deletes uploads after 48 hours).
                    return Submission(str(job.name), {"adopted": True})
            if not pager.config.get("page_token"):
                return None
            await self.generator._call(lambda _sdk: pager.next_page())  # the pager moves on in place
        return None

    def stream_results(self, submission: Submission, keys: Sequence[str]) -> AsyncIterator[BatchItemResult]:
        """`results` of a job the ledger stored, one item at a time (a 10,000-image job's answers are never
        all in memory): its input file (deleted after) and keys are known."""
        input_file = submission.detail.get("input_file")
        return self._stream(submission.name, keys=keys, input_file=str(input_file) if input_file else None)

    async def results(
        self, name: str, *, keys: Sequence[str] | None = None, input_file: str | None = None
    ) -> list[BatchItemResult]:
        """Each item's image or classified error, in submission order when the job kept the keys.

        With `keys` (the job's request keys), every key the answers do not cover gets an error saying why
        (e.g. its line in the results file was not JSON). Once a file job's results are read, its input
        file (`input_file`, or the one this helper uploaded) is deleted, best effort.
        """
        return [r async for r in self._stream(name, keys=keys, input_file=input_file)]

    async def _stream(
        self, name: str, *, keys: Sequence[str] | None, input_file: str | None
    ) -> AsyncIterator[BatchItemResult]:
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
        uploaded = input_file or self._inputs.pop(name, None)
        if not status.succeeded:
            if uploaded:
                await self._delete(uploaded)
            detail = f": {status.error}" if status.error else ""
            raise PermanentVLMError(
                f"batch {name} ended {status.state}{detail}",
                reason="batch_failed",
                backend=gen.name,
                model=gen.model,
            )
        # What the job took, as the best available latency for each of its items.
        latency = 0.0
        if job.create_time is not None and job.end_time is not None:
            latency = (job.end_time - job.create_time).total_seconds()
        problems: list[str] = []
        answered: set[str] = set()
        results_file = job.dest.file_name if job.dest else None
        if results_file:
            async for result in self._file_results(str(results_file), latency, keys, problems):
                answered.add(result.key)
                yield result
        else:
            responses = (job.dest.inlined_responses if job.dest else None) or []
            for i, item in enumerate(responses):
                key = str((item.metadata or {}).get("key", str(i)))
                answered.add(key)
                yield await self._item(key, item, latency)
        if keys is not None:
            where = "results file" if results_file else "inlined responses"
            said = "; ".join(problems[:_MAX_LINE_NOTES]) + (
                "; ..." if len(problems) > _MAX_LINE_NOTES else ""
            )
            lines = "line" if len(problems) == 1 else "lines"
            why = f" ({len(problems)} unusable {lines}: {said})" if problems else ""
            for key in keys:
                if key not in answered:
                    yield BatchItemResult(key, error=PermanentVLMError(
                        f"no usable answer for this item in the batch's {where}{why}",
                        reason="batch_failed", **self._where(),
                    ))  # fmt: skip
        if uploaded:
            await self._delete(uploaded)

    async def _file_results(
        self, file_name: str, latency: float, keys: Sequence[str] | None, problems: list[str]
    ) -> AsyncIterator[BatchItemResult]:
        """The JSONL results file, downloaded to disk and read line by line (a 2 GB file stays on disk)."""
        from google.genai import batches, types

        async def download(path: Path) -> None:
            await self.generator._call(
                lambda sdk: sdk.aio.files.download(file=file_name, destination=str(path))
            )

        expected = None if keys is None else set(keys)
        async for n, raw in downloaded_lines(download, "ggt-gemini-results-"):
            try:
                line = json.loads(raw)
            except ValueError:
                problems.append(f"line {n} is not JSON")
                continue
            key = line.get("key") if isinstance(line, dict) else None
            if not isinstance(key, str) or not key:
                problems.append(f"line {n} has no key")
                continue
            if expected is not None and key not in expected:
                problems.append(f"line {n} has an unknown key {key[:40]!r}")
                continue
            # A line is an InlinedResponse with the key beside it (the error is a google.rpc.Status).
            wire = {"response": line.get("response"), "error": line.get("error") or line.get("status")}
            try:
                item = types.InlinedResponse._from_response(
                    response=batches._InlinedResponse_from_mldev(wire), kwargs={}
                )
            except (ValueError, TypeError, AttributeError) as exc:  # not a GenerateContentResponse
                yield BatchItemResult(key, error=EmptyResponseError(
                    f"unreadable answer on line {n}: {str(exc)[:200]}", **self._where()
                ))  # fmt: skip
                continue
            yield await self._item(key, item, latency)

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
