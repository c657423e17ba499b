"""`GeminiBatch`: the Gemini Batch API, inline and JSONL-file jobs, against the stub's batch routes, real SDK."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import pytest
from test_gen_api import GEMINI_KEY, PROMPT, gemini, lq, vendor_env  # noqa: F401 - fixtures used by name

from fixtures.stubs import Fault, StubServer, png_bytes
from ggt.generate.gemini import (
    FILE_BATCH_LIMIT,
    FILE_MAX_ITEMS,
    INLINE_BATCH_LIMIT,
    INLINE_MAX_ITEMS,
    BatchRequest,
    GeminiBatch,
)
from ggt.vlm.errors import PermanentVLMError, RetryableVLMError, VLMConfigError, VLMError


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def requests(image: bytes, n: int = 3) -> list[BatchRequest]:
    return [BatchRequest(f"item-{i}", image, f"{PROMPT} #{i}") for i in range(n)]


def test_submit_wait_results(stub_server: StubServer, lq: bytes) -> None:  # noqa: F811
    answer = png_bytes(np.full((30, 50, 3), 0.6, np.float32))
    stub_server.set_responder(lambda _req: answer, route="gemini.batch_item")
    # Faults without a route skip the batch routes and reach the items, in order.
    stub_server.push_fault("safety", "text_only")
    batch = GeminiBatch(gemini(stub_server, aspect_ratio="5:3"))

    async def main() -> tuple[str, Any, Any]:
        name = await batch.submit(requests(lq, 4), display_name="ggt-test")
        status = await batch.wait(name, poll_s=0.01, timeout_s=5)
        return name, status, await batch.results(name)

    name, status, results = run(main())
    assert name.startswith("batches/")
    assert status.done and status.succeeded and status.display_name == "ggt-test"

    create = stub_server.last("gemini.batch_create")
    assert create.path == "/v1/models/gemini-img-test:batchGenerateContent"
    assert create.header("x-goog-api-key") == GEMINI_KEY
    assert create.json["batch"]["displayName"] == "ggt-test"
    sent = create.json["batch"]["inputConfig"]["requests"]["requests"]
    assert [s["metadata"] for s in sent] == [{"key": f"item-{i}"} for i in range(4)]
    assert sent[0]["request"]["generationConfig"] == {
        "responseModalities": ["IMAGE"],
        "imageConfig": {"aspectRatio": "5:3"},
    }
    items = [r for r in stub_server.requests if r.route == "gemini.batch_item"]
    assert [r.texts for r in items] == [[f"{PROMPT} #{i}"] for i in range(4)]
    assert all(r.images[0].size == (40, 24) and r.images[0].data == lq for r in items)
    assert stub_server.count("gemini.batch_get") == 3  # wait: RUNNING, SUCCEEDED; then results

    assert [r.key for r in results] == [f"item-{i}" for i in range(4)]
    assert [r.ok for r in results] == [False, False, True, True]
    assert results[0].error is not None and results[0].error.reason == "safety_block"
    assert results[1].error is not None and results[1].error.reason == "no_image"
    image = results[2].image
    assert image is not None and image.data == answer and (image.width, image.height) == (50, 30)
    assert image.usage.input_tokens == 123 and image.backend == "gemini"


def test_item_errors_are_classified(stub_server: StubServer, lq: bytes) -> None:  # noqa: F811
    stub_server.push_fault("rate_limit", "bad_request", "corrupt_image", "empty")
    batch = GeminiBatch(gemini(stub_server))

    async def main() -> list[Any]:
        name = await batch.submit(requests(lq, 5))
        await batch.wait(name, poll_s=0.01, timeout_s=5)
        return await batch.results(name)

    results = run(main())
    errors = [r.error for r in results[:4]]
    assert all(isinstance(e, VLMError) for e in errors)
    assert [(e.retryable, e.reason) for e in errors if e is not None] == [
        (True, "rate_limited"),
        (False, "invalid_request"),
        (False, "bad_output"),
        (False, "empty_response"),
    ]
    assert results[4].ok


def test_resume_from_the_stored_name(stub_server: StubServer, lq: bytes) -> None:  # noqa: F811
    stub_server.batch_pending_polls = 0  # the job is done by the first look
    name = run(GeminiBatch(gemini(stub_server)).submit(requests(lq, 2)))
    # A new process: a new generator and helper, only the name kept.
    fresh = GeminiBatch(gemini(stub_server))

    async def main() -> list[Any]:
        assert (await fresh.status(name)).succeeded
        return await fresh.results(name)

    assert [r.key for r in run(main()) if r.ok] == ["item-0", "item-1"]
    assert stub_server.count("gemini.batch_create") == 1


def test_results_before_done_and_after_failure(stub_server: StubServer, lq: bytes) -> None:  # noqa: F811
    stub_server.batch_pending_polls = 10
    batch = GeminiBatch(gemini(stub_server))
    name = run(batch.submit(requests(lq, 1)))
    with pytest.raises(RetryableVLMError) as early:
        run(batch.results(name))
    assert early.value.reason == "conflict"
    status = run(batch.wait(name, poll_s=0.01, timeout_s=0.05))
    assert not status.done and status.state == "JOB_STATE_RUNNING"

    stub_server.set_batch_state(name, "BATCH_STATE_EXPIRED")
    with pytest.raises(PermanentVLMError) as late:
        run(batch.results(name))
    assert late.value.reason == "batch_failed" and "EXPIRED" in str(late.value)

    other = run(batch.submit(requests(lq, 1)))
    run(batch.cancel(other))
    assert stub_server.last("gemini.batch_cancel").path == f"/v1/{other}:cancel"
    assert run(batch.status(other)).state == "JOB_STATE_CANCELLED"


@pytest.mark.parametrize(
    ("route", "fault", "reason"),
    [
        ("gemini.batch_create", Fault("rate_limit", retry_after=11), "rate_limited"),
        ("gemini.batch_create", Fault("auth"), "auth"),
        ("gemini.batch_get", Fault("server_error"), "server_error"),
    ],
)
def test_job_calls_fail_classified_once(
    route: str,
    fault: Fault,
    reason: str,
    stub_server: StubServer,
    lq: bytes,  # noqa: F811
) -> None:
    batch = GeminiBatch(gemini(stub_server))
    name = run(batch.submit(requests(lq, 1))) if route == "gemini.batch_get" else None
    fault.route = route
    stub_server.push_fault(fault)
    with pytest.raises(VLMError) as info:
        run(batch.status(name) if name else batch.submit(requests(lq, 1)))
    assert info.value.reason == reason
    if reason == "rate_limited":
        assert info.value.retry_after_s == 11
    assert stub_server.count(route) == 1
    assert GEMINI_KEY not in str(info.value)


def test_bad_batches_fail_before_any_call(stub_server: StubServer, lq: bytes) -> None:  # noqa: F811
    batch = GeminiBatch(gemini(stub_server), max_request_bytes=10_000)
    big = png_bytes(np.random.default_rng(1).random((80, 80, 3)).astype(np.float32))
    cases = [
        [],
        [BatchRequest("a", lq, PROMPT), BatchRequest("a", lq, PROMPT)],
        [BatchRequest(str(i), big, PROMPT) for i in range(3)],
        [BatchRequest("a", b"not an image", PROMPT)],
    ]
    for case in cases:
        with pytest.raises(VLMConfigError):
            run(batch.submit(case))
    assert stub_server.count() == 0


# ----------------------------------------------------------------------------------------------------------
# File mode: a JSONL upload, a job from the file, a JSONL results file


def _input_lines(stub: StubServer, file_name: str) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in stub.gemini_files[file_name].data.splitlines()]


def test_file_lines_carry_the_inline_request_and_answers_match(stub_server: StubServer, lq: bytes) -> None:  # noqa: F811
    gen = gemini(stub_server, aspect_ratio="5:3", temperature=0.2)
    reqs = requests(lq, 3)

    async def main() -> tuple[Any, Any, Any, list[dict[str, Any]]]:
        inline = GeminiBatch(gen, mode="inline")
        file = GeminiBatch(gen, mode="file")
        sub_inline = await inline.submit_job(reqs, display_name="ggt-inline")
        sub_file = await file.submit_job(reqs, display_name="ggt-file")
        lines = _input_lines(stub_server, sub_file.detail["input_file"])  # before results delete it
        await file.wait(sub_file.name, poll_s=0.01, timeout_s=5)
        await inline.wait(sub_inline.name, poll_s=0.01, timeout_s=5)
        return sub_file, await inline.results(sub_inline.name), await file.results(sub_file.name), lines

    sub, from_inline, from_file, lines = run(main())
    assert sub.detail == {"mode": "file", "input_file": "files/stub-upload-1"}

    # Each line's request is the very GenerateContentRequest the inline create carried for that item.
    creates = [r for r in stub_server.requests if r.route == "gemini.batch_create"]
    inline_sent, file_sent = creates[0], creates[1]
    assert file_sent.json["batch"]["inputConfig"] == {"fileName": "files/stub-upload-1"}
    assert file_sent.json["batch"]["displayName"] == "ggt-file"
    wire = inline_sent.json["batch"]["inputConfig"]["requests"]["requests"]
    assert [line["key"] for line in lines] == [r.key for r in reqs]
    assert [line["request"] for line in lines] == [w["request"] for w in wire]
    assert lines[0]["request"]["generationConfig"] == {
        "responseModalities": ["IMAGE"],
        "temperature": 0.2,
        "imageConfig": {"aspectRatio": "5:3"},
    }
    # ...and the stub saw identical item requests either way.
    items = [r for r in stub_server.requests if r.route == "gemini.batch_item"]
    assert [r.json for r in items[:3]] == [r.json for r in items[3:]]
    assert [r.metadata for r in items[3:]] == [{"key": r.key} for r in reqs]

    # The upload used the resumable protocol, as a JSONL file named after the job.
    start = stub_server.last("gemini.files_upload_start")
    assert start.header("x-goog-upload-protocol") == "resumable"
    meta = start.json["file"]  # the SDK spells this metadata in snake_case
    assert (meta.get("mime_type"), meta.get("display_name")) == ("jsonl", "ggt-file")
    assert stub_server.last("gemini.files_upload").header("x-goog-upload-command") == "upload, finalize"
    assert stub_server.uploads == 1

    assert [r.key for r in from_file] == [r.key for r in from_inline] == [r.key for r in reqs]
    for a, b in zip(from_inline, from_file, strict=True):
        assert a.image is not None and b.image is not None
        assert (a.image.data, a.image.width, a.image.usage) == (b.image.data, b.image.width, b.image.usage)
    # Results read: the input file is deleted; the results file stays (a crash before the answers are
    # stored must be able to read it again).
    assert stub_server.deleted_files == ["files/stub-upload-1"]
    assert stub_server.last("gemini.files_download").query == {"alt": ["media"]}
    assert "files/stub-results-2" in stub_server.gemini_files


def test_auto_mode_goes_inline_below_the_limit_and_as_a_file_above(
    stub_server: StubServer,
    lq: bytes,  # noqa: F811
) -> None:
    gen = gemini(stub_server)
    assert GeminiBatch(gen).mode == "auto"  # the generator's default
    auto = GeminiBatch(gen, inline_limit=2 * GeminiBatch.request_bytes(requests(lq, 1)[0]))
    assert (auto.max_request_bytes, auto.max_items) == (FILE_BATCH_LIMIT, FILE_MAX_ITEMS)
    inline_only = GeminiBatch(gemini(stub_server, batch_mode="inline"))
    assert (inline_only.mode, inline_only.max_request_bytes) == ("inline", INLINE_BATCH_LIMIT)
    assert inline_only.max_items == INLINE_MAX_ITEMS

    small = run(auto.submit_job(requests(lq, 2)))
    big = run(auto.submit_job(requests(lq, 3)))
    assert small.detail == {"mode": "inline"} and big.detail["mode"] == "file"
    assert stub_server.uploads == 1 and stub_server.count("gemini.batch_create") == 2
    # The option is a transport option: a request key does not change with it.
    assert gemini(stub_server, batch_mode="file").request_params() == gen.request_params()


def test_file_item_errors_are_classified_like_inline(stub_server: StubServer, lq: bytes) -> None:  # noqa: F811
    stub_server.push_fault("rate_limit", "bad_request", "corrupt_image", "empty", "safety", "safety_finish")
    batch = GeminiBatch(gemini(stub_server), mode="file")

    async def main() -> list[Any]:
        name = await batch.submit(requests(lq, 7))
        await batch.wait(name, poll_s=0.01, timeout_s=5)
        return await batch.results(name)

    results = run(main())
    assert [r.key for r in results] == [f"item-{i}" for i in range(7)]
    errors = [r.error for r in results[:6]]
    assert [(e.retryable, e.reason) for e in errors if e is not None] == [
        (True, "rate_limited"),
        (False, "invalid_request"),
        (False, "bad_output"),
        (False, "empty_response"),
        (False, "safety_block"),
        (False, "safety_block"),
    ]
    assert "code 8" in str(errors[0]) and "blockReason SAFETY" in str(errors[4])
    assert results[6].ok


def test_malformed_result_lines_fail_only_their_items(stub_server: StubServer, lq: bytes) -> None:  # noqa: F811
    batch = GeminiBatch(gemini(stub_server), mode="file")
    reqs = requests(lq, 6)
    keys = [r.key for r in reqs]

    async def submit() -> str:
        name = await batch.submit(reqs)
        await batch.wait(name, poll_s=0.01, timeout_s=5)
        return name

    name = run(submit())
    results_file = stub_server.batches[name].responses_file
    assert results_file is not None
    lines = stub_server.gemini_files[results_file].data.splitlines()
    no_key = json.loads(lines[1])
    del no_key["key"]
    stranger = {**json.loads(lines[2]), "key": "not-one-of-ours"}
    odd_shape = {**json.loads(lines[3]), "response": {"usageMetadata": {"promptTokenCount": "many"}}}
    stub_server.gemini_files[results_file].data = b"\n".join(
        [b'{"key": "item-0", "response": {trunc', json.dumps(no_key).encode(), json.dumps(stranger).encode(),
         json.dumps(odd_shape).encode(), b"", *lines[4:]]
    ) + b"\n"  # fmt: skip

    results = {r.key: r for r in run(batch.results(name, keys=keys))}
    assert sorted(results) == keys
    assert [k for k in keys if results[k].ok] == ["item-4", "item-5"]
    for key in ("item-0", "item-1", "item-2"):
        error = results[key].error
        assert error is not None and error.reason == "batch_failed" and not error.retryable
        assert "no usable answer for this item in the batch's results file (3 unusable lines:" in str(error)
        assert "line 1 is not JSON" in str(error) and "line 2 has no key" in str(error)
        assert "line 3 has an unknown key 'not-one-of-ours'" in str(error)
    odd = results["item-3"].error
    assert odd is not None and odd.reason == "empty_response" and "unreadable answer on line 4" in str(odd)


def test_a_stored_file_job_resumes_without_a_second_upload(stub_server: StubServer, lq: bytes) -> None:  # noqa: F811
    stub_server.batch_pending_polls = 0
    sub = run(GeminiBatch(gemini(stub_server), mode="file").submit_job(requests(lq, 2)))
    # A new process: a new generator and helper (auto mode this time), only the stored submission kept.
    fresh = GeminiBatch(gemini(stub_server))

    async def main() -> list[Any]:
        assert (await fresh.status(sub.name)).succeeded
        return [r async for r in fresh.stream_results(sub, ["item-0", "item-1"])]

    assert [r.key for r in run(main()) if r.ok] == ["item-0", "item-1"]
    assert stub_server.count("gemini.batch_create") == 1 and stub_server.uploads == 1
    assert stub_server.deleted_files == [sub.detail["input_file"]]  # known from the stored detail


def test_file_job_refusals_create_nothing_and_clean_up(stub_server: StubServer, lq: bytes) -> None:  # noqa: F811
    batch = GeminiBatch(gemini(stub_server), mode="file")
    stub_server.push_fault(Fault("auth", route="gemini.files_upload_start"))
    with pytest.raises(VLMError) as info:
        run(batch.submit(requests(lq, 1)))
    assert info.value.reason == "auth" and GEMINI_KEY not in str(info.value)
    assert stub_server.count("gemini.batch_create") == 0 and stub_server.uploads == 0

    # The job is refused after the upload (a 4xx: no job exists): the upload is deleted.
    stub_server.push_fault(Fault("rate_limit", route="gemini.batch_create"))
    with pytest.raises(VLMError) as refused:
        run(batch.submit(requests(lq, 1)))
    assert refused.value.reason == "rate_limited"
    assert stub_server.uploads == 1 and stub_server.deleted_files == ["files/stub-upload-1"]
    # A lost answer (the connection dropped) may have created the job: its input is kept.
    stub_server.push_fault(Fault("reset", route="gemini.batch_create"))
    with pytest.raises(VLMError) as lost:
        run(batch.submit(requests(lq, 1)))
    assert lost.value.retryable and stub_server.deleted_files == ["files/stub-upload-1"]
    assert "files/stub-upload-2" in stub_server.gemini_files

    # A job that ended badly still gives its input file back.
    stub_server.batch_pending_polls = 10
    name = run(batch.submit(requests(lq, 1)))
    stub_server.set_batch_state(name, "BATCH_STATE_FAILED")
    with pytest.raises(PermanentVLMError):
        run(batch.results(name))
    assert stub_server.deleted_files == ["files/stub-upload-1", "files/stub-upload-3"]


def test_bad_file_batches_fail_before_any_call(stub_server: StubServer, lq: bytes) -> None:  # noqa: F811
    batch = GeminiBatch(gemini(stub_server), mode="file", max_request_bytes=10_000)
    big = png_bytes(np.random.default_rng(1).random((80, 80, 3)).astype(np.float32))
    for case in (
        [],
        [BatchRequest(str(i), big, PROMPT) for i in range(3)],
        [BatchRequest("a", lq, PROMPT), BatchRequest("b", b"not an image", PROMPT)],
        [BatchRequest(str(i), lq, PROMPT) for i in range(FILE_MAX_ITEMS + 1)],
    ):
        with pytest.raises(VLMConfigError):
            run(batch.submit(case))
    with pytest.raises(VLMConfigError, match="auto, inline or file"):
        GeminiBatch(gemini(stub_server), mode="bulk")  # type: ignore[arg-type]
    assert stub_server.count() == 0
