"""`GeminiBatch`: the Gemini Batch API with inlined requests, against the stub's batch routes, real SDK."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from test_gen_api import GEMINI_KEY, PROMPT, gemini, lq, vendor_env  # noqa: F401 - fixtures used by name

from fixtures.stubs import Fault, StubServer, png_bytes
from ggt.generate.gemini import BatchRequest, GeminiBatch
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
