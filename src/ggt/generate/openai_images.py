"""OpenAI gpt-image models (and OpenAI-compatible image servers) as generators, via `images.edit`.

Client construction and error classification are the OpenAI VLM's (`ggt.vlm.openai_chat`): same SDK,
same failures (a moderation 400 becomes `safety_block` there too), so they are reused rather than copied.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, SecretStr, field_validator

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
from ggt.vlm.base import resolve_api_key
from ggt.vlm.errors import (
    EmptyResponseError,
    PermanentVLMError,
    RetryableVLMError,
    SafetyBlockError,
    VLMConfigError,
    VLMError,
    error_for_status,
    redact,
)
from ggt.vlm.openai_chat import _NO_KEY, _SAFETY_CODES, OpenAIVLM

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


# ----------------------------------------------------------------------------------------------------------
# Batch API

# OpenAI's limits on one batch input file: 50,000 requests and 200 MB (a margin kept for the JSON framing).
BATCH_MAX_ITEMS = 50_000
BATCH_MAX_BYTES = 190_000_000
BATCH_ENDPOINT = "/v1/images/edits"
_TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})


class OpenAIBatch:
    """OpenAI's Batch API on the images endpoint: a JSONL file of `/v1/images/edits` requests.

        batch = OpenAIBatch(generator)
        sub = await batch.submit_job([BatchRequest(key, png, prompt), ...])   # uploads, then creates
        ...store sub.name (and sub.detail["input_file_id"]); after a restart, resume from the name...
        status = await batch.status(sub.name)
        for item in await batch.results(sub.name): ...

    The SDK's `batches.create` accepts the endpoint "/v1/images/edits" (openai 3.x). A batch line cannot
    carry a multipart upload, so each request uses the images API's JSON form: the LQ photo goes in
    `images: [{"image_url": "data:image/png;base64,..."}]` (gpt-image models only; DALL-E edits need
    multipart). Other fields are `images.edit`'s, from the same options. Answers are read with the same
    rules as a direct call, so the two are interchangeable.
    """

    max_items = BATCH_MAX_ITEMS

    def __init__(self, generator: OpenAIImagesGenerator, *, max_request_bytes: int = BATCH_MAX_BYTES) -> None:
        if isinstance(generator, OpenAICompatibleImagesGenerator):
            raise VLMConfigError(
                "batch mode is for OpenAI's own Batch API; an OpenAI-compatible server has none (run without --batch)",
                backend=generator.name, model=generator.model, reason="unsupported",
            )  # fmt: skip
        self.generator = generator
        self.max_request_bytes = max_request_bytes

    @staticmethod
    def request_bytes(request: BatchRequest) -> int:
        return request.size * 4 // 3 + len(request.prompt.encode()) + 512

    def line(self, request: BatchRequest) -> bytes:
        """One JSONL line: the images API's JSON body for this request."""
        gen = self.generator
        image = request.image  # a spooled image is read from disk: once
        mime = gen.check_input(image, request.prompt)
        data_url = f"data:{mime};base64,{base64.b64encode(image).decode('ascii')}"
        body = {
            "model": gen.model,
            "prompt": request.prompt,
            "images": [{"image_url": data_url}],
            **gen.edit_params(),
        }
        line = {"custom_id": request.key, "method": "POST", "url": BATCH_ENDPOINT, "body": body}
        return json.dumps(line, separators=(",", ":")).encode("utf-8") + b"\n"

    async def submit_job(
        self, requests: Sequence[BatchRequest], *, display_name: str | None = None
    ) -> Submission:
        """Upload the JSONL file (purpose "batch"), then create the job; inputs are checked first."""
        gen = self.generator
        where: dict[str, Any] = {"backend": gen.name, "model": gen.model}
        check_requests(requests, self.max_items, where)
        payload = b"".join(self.line(r) for r in requests)
        if len(payload) > self.max_request_bytes:
            raise VLMConfigError(
                f"the batch file is {len(payload) / 1e6:.1f} MB, over the {self.max_request_bytes / 1e6:.0f} MB limit",
                **where,
            )
        name = f"{display_name or 'ggt-batch'}.jsonl"
        uploaded = await gen._call(
            lambda sdk: sdk.files.create(file=(name, payload, "application/jsonl"), purpose="batch")
        )
        metadata = {"ggt": display_name} if display_name else None
        job = await gen._call(
            lambda sdk: sdk.batches.create(
                completion_window="24h", endpoint=BATCH_ENDPOINT, input_file_id=uploaded.id, metadata=metadata
            )
        )
        return Submission(str(job.id), {"input_file_id": uploaded.id})

    async def find_job(self, display_name: str) -> Submission | None:
        """The job created with `display_name` (in its metadata) among the most recent ones, or None."""
        page = await self.generator._call(lambda sdk: sdk.batches.list(limit=100))
        for _ in range(FIND_PAGES):
            for job in page.data:
                if (job.metadata or {}).get("ggt") == display_name:
                    return Submission(str(job.id), {"input_file_id": job.input_file_id})
            if not page.has_next_page():
                return None
            page = await self.generator._call(lambda _sdk, p=page: p.get_next_page())
        return None

    async def status(self, name: str) -> BatchStatus:
        return _batch_status(await self.generator._call(lambda sdk: sdk.batches.retrieve(name)))

    async def cancel(self, name: str) -> None:
        await self.generator._call(lambda sdk: sdk.batches.cancel(name))

    async def _file_lines(self, file_id: str | None) -> AsyncIterator[dict[str, Any]]:
        """The file's JSON lines, read from a temporary download (a 10,000-image output stays on disk)."""
        if not file_id:
            return

        async def download(path: Path) -> None:
            async def stream(sdk: Any) -> None:
                async with sdk.files.with_streaming_response.content(file_id) as response:
                    await response.stream_to_file(path)

            await self.generator._call(stream)

        async for _n, raw in downloaded_lines(download, "ggt-openai-results-"):
            try:
                yield json.loads(raw)
            except ValueError:
                continue  # a damaged line: its item is reported as unanswered

    async def results(self, name: str) -> list[BatchItemResult]:
        """Each answered item's image or classified error. An expired or cancelled job keeps the answers it
        has; the items it never ran are not listed (the caller reports them as unanswered)."""
        return [r async for r in self._stream(name)]

    def stream_results(self, submission: Submission, keys: Sequence[str]) -> AsyncIterator[BatchItemResult]:
        """`results` one item at a time: a 10,000-image job's answers are never all in memory."""
        return self._stream(submission.name)

    async def _stream(self, name: str) -> AsyncIterator[BatchItemResult]:
        gen = self.generator
        where: dict[str, Any] = {"backend": gen.name, "model": gen.model}
        job = await gen._call(lambda sdk: sdk.batches.retrieve(name))
        status = _batch_status(job)
        if not status.done:
            raise RetryableVLMError(
                f"batch {name} is {status.state}, not done yet", reason="conflict", **where
            )
        if status.state == "failed":
            detail = f": {status.error}" if status.error else ""
            raise PermanentVLMError(f"batch {name} failed{detail}", reason="batch_failed", **where)
        latency = float(
            (job.completed_at or job.expired_at or job.cancelled_at or job.created_at) - job.created_at
        )
        for file_id in (job.output_file_id, job.error_file_id):
            async for line in self._file_lines(file_id):
                key = str(line.get("custom_id") or "")
                if key:
                    yield await self._item(key, line, max(0.0, latency))

    async def _item(self, key: str, line: dict[str, Any], latency: float) -> BatchItemResult:
        gen = self.generator
        where: dict[str, Any] = {"backend": gen.name, "model": gen.model}
        error = line.get("error")
        response = line.get("response") or {}
        if isinstance(error, dict) and error:
            code = str(error.get("code") or "")
            message = redact(str(error.get("message") or "no message"), gen._secrets())
            # batch_expired: the job ran out of its window before this item; asking again may well work.
            cls, reason = (
                (RetryableVLMError, "timeout")
                if code == "batch_expired"
                else (PermanentVLMError, "invalid_request")
            )
            return BatchItemResult(key, error=cls(f"item failed ({code}): {message}", reason=reason, **where))
        status = int(response.get("status_code") or 0)
        body = response.get("body")
        if status != 200:
            err = body.get("error", {}) if isinstance(body, dict) else {}
            err = err if isinstance(err, dict) else {}
            code = err.get("code")
            cls, reason = error_for_status(status)
            if code in _SAFETY_CODES:
                cls, reason = SafetyBlockError, "safety_block"
            message = redact(str(err.get("message") or f"HTTP {status}"), gen._secrets())
            code_text = f" {code}" if code else ""
            return BatchItemResult(
                key, error=cls(f"HTTP {status}{code_text}: {message}", reason=reason, status=status, **where)
            )
        try:
            from openai.types import ImagesResponse

            raw = gen._read(ImagesResponse.model_validate(body))
            return BatchItemResult(key, image=await gen.finish(raw, latency))
        except VLMError as err:
            return BatchItemResult(key, error=err)
        except ValueError as exc:  # pydantic: a body that is not an images response
            return BatchItemResult(key, error=EmptyResponseError(f"unreadable answer: {exc}", **where))


def _batch_status(job: Any) -> BatchStatus:
    state = str(job.status)
    errors = getattr(getattr(job, "errors", None), "data", None) or []
    error = "; ".join(str(e.message) for e in errors if getattr(e, "message", None)) or None
    counts = getattr(job, "request_counts", None)
    return BatchStatus(
        name=str(job.id), state=state, done=state in _TERMINAL, succeeded=state == "completed",
        display_name=(job.metadata or {}).get("ggt"), error=error,
        completed=None if counts is None else counts.completed + counts.failed,
        total=None if counts is None else counts.total,
    )  # fmt: skip
