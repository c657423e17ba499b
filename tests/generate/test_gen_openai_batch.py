"""`OpenAIBatch`: OpenAI's Batch API on /v1/images/edits (files + batches), against the stub, real SDK."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import pytest
from test_gen_api import OPENAI_KEY, PROMPT, compatible, lq, openai, vendor_env  # noqa: F401 - fixtures

from fixtures.stubs import Fault, StubServer, png_bytes
from ggt.generate.batch import BatchRequest
from ggt.generate.openai_images import BATCH_ENDPOINT, OpenAIBatch
from ggt.vlm.errors import PermanentVLMError, RetryableVLMError, VLMConfigError, VLMError


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def requests(image: bytes, n: int = 3) -> list[BatchRequest]:
    return [BatchRequest(f"key-{i}", image, f"{PROMPT} #{i}") for i in range(n)]


async def _submit_and_collect(batch: OpenAIBatch, reqs: list[BatchRequest]) -> tuple[Any, Any, list[Any]]:
    sub = await batch.submit_job(reqs, display_name="ggt-test")
    status = await batch.status(sub.name)
    while not status.done:
        status = await batch.status(sub.name)
    return sub, status, await batch.results(sub.name)


def test_upload_create_poll_results(stub_server: StubServer, lq: bytes) -> None:  # noqa: F811
    answer = png_bytes(np.full((30, 50, 3), 0.6, np.float32))
    stub_server.set_responder(lambda _req: answer, route="openai.batch_item")
    stub_server.push_fault("safety", "text_only")  # route-less faults reach the items, in order
    batch = OpenAIBatch(openai(stub_server, size="1024x1024", quality="high"))
    sub, status, results = run(_submit_and_collect(batch, requests(lq, 4)))

    assert sub.name.startswith("batch_") and sub.detail["input_file_id"].startswith("file-")
    assert status.done and status.succeeded and status.display_name == "ggt-test"
    upload = stub_server.last("openai.files_create")
    assert upload.form["purpose"] == ["batch"] and upload.header("authorization") == f"Bearer {OPENAI_KEY}"
    lines = [json.loads(x) for x in upload.files["file"][0].data.splitlines()]
    assert [line["custom_id"] for line in lines] == [f"key-{i}" for i in range(4)]
    assert {line["url"] for line in lines} == {BATCH_ENDPOINT} and {line["method"] for line in lines} == {
        "POST"
    }
    body = lines[0]["body"]
    assert body["model"] == "gpt-image-test" and body["prompt"] == f"{PROMPT} #0"
    assert (body["size"], body["quality"], body["input_fidelity"], body["output_format"]) == (
        "1024x1024", "high", "high", "png",
    )  # fmt: skip
    create = stub_server.last("openai.batches_create")
    assert create.json["endpoint"] == BATCH_ENDPOINT and create.json["completion_window"] == "24h"
    items = [r for r in stub_server.requests if r.route == "openai.batch_item"]
    assert all(r.images[0].data == lq and r.images[0].mime_type == "image/png" for r in items)

    by_key = {r.key: r for r in results}
    assert sorted(by_key) == [f"key-{i}" for i in range(4)]
    assert by_key["key-0"].error is not None and by_key["key-0"].error.reason == "safety_block"
    assert by_key["key-1"].error is not None and by_key["key-1"].error.reason == "empty_response"
    image = by_key["key-2"].image
    assert image is not None and image.data == answer and (image.width, image.height) == (50, 30)
    assert image.usage.input_tokens == 123 and image.backend == "openai"
    assert stub_server.count("openai.files_content") == 2  # the output file and the error file


def test_item_errors_are_classified(stub_server: StubServer, lq: bytes) -> None:  # noqa: F811
    stub_server.push_fault("rate_limit", "bad_request", "corrupt_image", "server_error")
    results = run(_submit_and_collect(OpenAIBatch(openai(stub_server)), requests(lq, 5)))[2]
    by_key = {r.key: r for r in results}
    got = [(by_key[f"key-{i}"].error.retryable, by_key[f"key-{i}"].error.reason) for i in range(4)]  # type: ignore[union-attr]
    assert got == [
        (True, "rate_limited"),
        (False, "invalid_request"),
        (False, "bad_output"),
        (True, "server_error"),
    ]
    assert by_key["key-4"].ok


def test_expired_batch_keeps_its_answers_and_the_rest_may_be_retried(
    stub_server: StubServer,
    lq: bytes,  # noqa: F811
) -> None:
    stub_server.batch_pending_polls = 5
    batch = OpenAIBatch(openai(stub_server))
    sub = run(batch.submit_job(requests(lq, 3)))
    with pytest.raises(RetryableVLMError) as early:
        run(batch.results(sub.name))
    assert early.value.reason == "conflict"
    stub_server.set_batch_state(sub.name, "expired", answered=1)
    status = run(batch.status(sub.name))
    assert status.done and not status.succeeded and status.state == "expired"
    results = {r.key: r for r in run(batch.results(sub.name))}
    assert results["key-0"].ok
    for key in ("key-1", "key-2"):
        err = results[key].error
        assert err is not None and err.retryable and err.reason == "timeout" and "batch_expired" in str(err)


def test_failed_batch_and_cancel(stub_server: StubServer, lq: bytes) -> None:  # noqa: F811
    batch = OpenAIBatch(openai(stub_server))
    sub = run(batch.submit_job(requests(lq, 1)))
    stub_server.set_batch_state(sub.name, "failed")
    with pytest.raises(PermanentVLMError) as info:
        run(batch.results(sub.name))
    assert info.value.reason == "batch_failed" and "told to fail" in str(info.value)
    other = run(batch.submit_job(requests(lq, 1)))
    run(batch.cancel(other.name))
    assert stub_server.last("openai.batches_cancel").path == f"/v1/batches/{other.name}/cancel"
    assert run(batch.status(other.name)).state == "cancelled"


def test_job_calls_fail_classified_without_leaking_the_key(stub_server: StubServer, lq: bytes) -> None:  # noqa: F811
    stub_server.push_fault(Fault("rate_limit", route="openai.files_create", retry_after=7))
    with pytest.raises(VLMError) as info:
        run(OpenAIBatch(openai(stub_server)).submit_job(requests(lq, 1)))
    assert info.value.reason == "rate_limited" and info.value.retry_after_s == 7
    assert OPENAI_KEY not in str(info.value) and stub_server.count("openai.batches_create") == 0


def test_bad_batches_fail_before_any_call(stub_server: StubServer, lq: bytes) -> None:  # noqa: F811
    batch = OpenAIBatch(openai(stub_server), max_request_bytes=2_000)
    for case in (
        [],
        [BatchRequest("a", lq, PROMPT)] * 2,
        requests(lq, 30),
        [BatchRequest("a", b"nope", PROMPT)],
    ):
        with pytest.raises(VLMConfigError):
            run(batch.submit_job(case))
    with pytest.raises(VLMConfigError, match="OpenAI-compatible"):
        OpenAIBatch(compatible(stub_server, base_url=stub_server.openai_url))
    assert stub_server.count() == 0
