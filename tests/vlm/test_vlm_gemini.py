"""The Gemini backend against the stub, through the real google-genai SDK."""

from __future__ import annotations

import json

import numpy as np
import pytest
from vlm_helpers import GEMINI_KEY, VALID_ANALYSIS, gemini, run

from fixtures.stubs import Fault, StubServer, gemini_reply
from ggt.vlm import (
    EmptyResponseError,
    MalformedResponseError,
    PermanentVLMError,
    RetryableVLMError,
    SafetyBlockError,
    VLMAnalysis,
    VLMConfigError,
    create_vlm,
)
from ggt.vlm.schema import json_schema_for

INSTRUCTION = "Describe the degradations of this photo."


def test_request_shape_and_result(stub: StubServer, image: np.ndarray) -> None:
    result = gemini(stub).request_json_sync([image], INSTRUCTION, VLMAnalysis)

    req = stub.last()
    assert req.path == "/v1/models/gemini-test:generateContent"
    assert req.header("x-goog-api-key") == GEMINI_KEY
    assert len(req.images) == 1
    assert req.images[0].mime_type == "image/png"
    assert req.images[0].size == (32, 24)
    # PNG upload: the model sees exactly our pixels (to 8-bit rounding), no compression artefacts added.
    assert np.abs(req.images[0].array - image).max() <= 0.5 / 255 + 1e-6
    assert req.texts == [INSTRUCTION]
    parts = req.json["contents"][0]["parts"]
    assert "inlineData" in parts[0] and "text" in parts[1], "image first, then the instruction"
    config = req.json["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"] == json_schema_for(VLMAnalysis)
    assert "$ref" not in json.dumps(config["responseJsonSchema"])

    assert result.data == VLMAnalysis.model_validate(VALID_ANALYSIS)
    assert result.backend == "gemini" and result.model == "gemini-test"
    assert result.model_version == "gemini-test"
    assert result.attempts == 1
    assert result.usage.input_tokens == 123 and result.usage.output_tokens == 45
    assert result.usage.total_tokens == 168
    assert 0.0 < result.latency_s < 5.0
    assert json.loads(result.raw_text) == VALID_ANALYSIS


def test_api_version_and_generation_options(stub: StubServer, image: np.ndarray) -> None:
    client = gemini(stub, api_version="v1beta", temperature=0.2, max_output_tokens=512)
    client.request_json_sync([image, image], INSTRUCTION, VLMAnalysis)
    req = stub.last()
    assert req.path == "/v1beta/models/gemini-test:generateContent"
    assert len(req.images) == 2
    assert req.json["generationConfig"]["temperature"] == 0.2
    assert req.json["generationConfig"]["maxOutputTokens"] == 512


def test_thinking_usage_counts_as_output(stub: StubServer, image: np.ndarray) -> None:
    body = gemini_reply(
        [{"text": "(reasoning)", "thought": True}, {"text": json.dumps(VALID_ANALYSIS)}],
        model="gemini-test",
        usage=None,
    )
    body["usageMetadata"] = {
        "promptTokenCount": 10,
        "candidatesTokenCount": 20,
        "thoughtsTokenCount": 5,
        "totalTokenCount": 35,
    }
    stub.set_responder(lambda _req: body)
    result = gemini(stub).request_json_sync([image], INSTRUCTION, VLMAnalysis)
    assert result.data.category == "rain", "thought parts are not part of the JSON answer"
    assert (result.usage.input_tokens, result.usage.output_tokens, result.usage.total_tokens) == (10, 25, 35)


@pytest.mark.parametrize(
    ("fault", "error", "reason"),
    [
        (Fault("rate_limit", retry_after=7), RetryableVLMError, "rate_limited"),
        ("server_error", RetryableVLMError, "server_error"),
        ("unavailable", RetryableVLMError, "server_error"),
        (Fault("slow", delay_s=3.0), RetryableVLMError, "timeout"),
        ("reset", RetryableVLMError, "connection"),
        ("close", RetryableVLMError, "connection"),
        ("auth", PermanentVLMError, "auth"),
        ("bad_request", PermanentVLMError, "invalid_request"),
        (Fault("http", status=404), PermanentVLMError, "not_found"),
        ("safety", SafetyBlockError, "safety_block"),
        (Fault("safety_finish", finish_reason="PROHIBITED_CONTENT"), SafetyBlockError, "safety_block"),
        ("empty", EmptyResponseError, "empty_response"),
        ("text_only", MalformedResponseError, "malformed_json"),
    ],
    ids=lambda v: v.kind if isinstance(v, Fault) else getattr(v, "__name__", str(v)),
)
def test_faults_are_classified_without_sdk_retries(
    stub: StubServer, image: np.ndarray, fault: Fault | str, error: type[Exception], reason: str
) -> None:
    # Prose instead of JSON gets one corrective retry, so it must fail twice to surface.
    stub.push_fault(*([fault] * (2 if reason == "malformed_json" else 1)))
    client = gemini(stub, timeout_s=1.5)  # under the slow fault's 3 s, well over a loaded stub's answer
    with pytest.raises(error) as info:
        client.request_json_sync([image], INSTRUCTION, VLMAnalysis)
    err = info.value
    assert err.reason == reason
    assert "\n" not in str(err) and str(err).startswith("gemini gemini-test: ")
    assert GEMINI_KEY not in str(err) and GEMINI_KEY not in repr(err)
    # The engine owns retries: transport failures reach the stub exactly once. (A malformed answer gets
    # our one corrective retry, so it is seen twice.)
    assert stub.count() == (2 if reason == "malformed_json" else 1)
    if reason == "rate_limited":
        assert err.retry_after_s == 7 and err.status == 429
    if reason == "server_error":
        assert err.status in (500, 503)


def test_retry_delay_from_google_retry_info(stub: StubServer, image: np.ndarray) -> None:
    from fixtures.stubs import Reply
    from fixtures.stubs.server import gemini_error

    detail = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "27s"}
    stub.set_responder(lambda _req: Reply(429, gemini_error(429, "quota", "RESOURCE_EXHAUSTED", [detail])))
    with pytest.raises(RetryableVLMError) as info:
        gemini(stub).request_json_sync([image], INSTRUCTION, VLMAnalysis)
    assert info.value.retry_after_s == 27


def test_safety_block_carries_usage(stub: StubServer, image: np.ndarray) -> None:
    stub.push_fault("safety")
    with pytest.raises(SafetyBlockError) as info:
        gemini(stub).request_json_sync([image], INSTRUCTION, VLMAnalysis)
    assert "blockReason SAFETY" in str(info.value)
    assert info.value.usage is not None and info.value.usage.input_tokens == 123


def test_malformed_json_is_retried_once_with_the_error(stub: StubServer, image: np.ndarray) -> None:
    stub.push_fault("malformed_json")
    result = gemini(stub).request_json_sync([image], INSTRUCTION, VLMAnalysis)
    assert result.attempts == 2
    assert result.data.category == "rain"
    first, second = stub.requests
    assert max(stub.counts_by_body().values()) == 1, "the retry is a different request, not a repeat"
    assert first.texts == [INSTRUCTION]
    assert second.texts[0].startswith(INSTRUCTION)
    assert "not valid JSON" in second.texts[0]
    assert len(second.images) == 1, "the retry resends the image"
    # Both calls were paid for.
    assert result.usage.input_tokens == 246 and result.usage.output_tokens == 90


def test_schema_violation_is_retried_with_the_validation_error(stub: StubServer, image: np.ndarray) -> None:
    bad = {**VALID_ANALYSIS, "degradations": [{"type": "rain", "severity": 7}]}
    stub.reply_sequence([json.dumps(bad), json.dumps(VALID_ANALYSIS)])
    result = gemini(stub).request_json_sync([image], INSTRUCTION, VLMAnalysis)
    assert result.attempts == 2
    retry_text = stub.last().texts[0]
    assert "degradations.0.severity" in retry_text and "less than or equal to 1" in retry_text


def test_malformed_twice_fails_with_malformed_json(stub: StubServer, image: np.ndarray) -> None:
    stub.push_fault("malformed_json", "malformed_json")
    with pytest.raises(MalformedResponseError) as info:
        gemini(stub).request_json_sync([image], INSTRUCTION, VLMAnalysis)
    err = info.value
    assert err.reason == "malformed_json" and not err.retryable
    assert "after 2 attempt(s)" in str(err)
    assert err.raw_text is not None and err.raw_text.startswith('{"category"')
    assert err.usage is not None and err.usage.input_tokens == 246
    assert stub.count() == 2


def test_transport_error_on_the_corrective_retry_keeps_its_class(stub: StubServer, image: np.ndarray) -> None:
    stub.push_fault("malformed_json", "rate_limit")
    with pytest.raises(RetryableVLMError) as info:
        gemini(stub).request_json_sync([image], INSTRUCTION, VLMAnalysis)
    assert info.value.reason == "rate_limited"
    assert info.value.usage is not None and info.value.usage.input_tokens == 123


def test_failure_on_the_corrective_retry_counts_both_calls(stub: StubServer, image: np.ndarray) -> None:
    stub.push_fault("malformed_json", "safety")
    with pytest.raises(SafetyBlockError) as info:
        gemini(stub).request_json_sync([image], INSTRUCTION, VLMAnalysis)
    assert info.value.usage is not None and info.value.usage.input_tokens == 246


def test_fenced_json_is_accepted(stub: StubServer, image: np.ndarray) -> None:
    stub.reply_text("```json\n" + json.dumps(VALID_ANALYSIS) + "\n```")
    assert gemini(stub).request_json_sync([image], INSTRUCTION, VLMAnalysis).attempts == 1


def test_without_structured_output_the_schema_goes_into_the_prompt(
    stub: StubServer, image: np.ndarray
) -> None:
    gemini(stub, structured_output=False).request_json_sync([image], INSTRUCTION, VLMAnalysis)
    req = stub.last()
    assert "responseJsonSchema" not in req.json["generationConfig"]
    assert req.texts[0].startswith(INSTRUCTION) and '"degradations"' in req.texts[0]


def test_large_images_are_downscaled(stub: StubServer) -> None:
    big = np.random.default_rng(0).random((300, 200, 3), dtype=np.float32)
    gemini(stub, max_image_side=100).request_json_sync([big], INSTRUCTION, VLMAnalysis)
    assert stub.last().images[0].size == (67, 100)


def test_jpeg_upload(stub: StubServer, image: np.ndarray) -> None:
    gemini(stub, image_format="jpeg").request_json_sync([image], INSTRUCTION, VLMAnalysis)
    assert stub.last().images[0].mime_type == "image/jpeg"
    assert stub.last().images[0].size == (32, 24)


def test_missing_key_names_the_variables(stub: StubServer, vendor_env: pytest.MonkeyPatch) -> None:
    vendor_env.delenv("GEMINI_API_KEY")
    with pytest.raises(VLMConfigError) as info:
        gemini(stub)
    assert info.value.reason == "missing_api_key"
    assert "GOOGLE_API_KEY or GEMINI_API_KEY" in str(info.value)

    with pytest.raises(VLMConfigError, match="MY_GEMINI_KEY"):
        gemini(stub, api_key_env="MY_GEMINI_KEY")


def test_google_api_key_takes_precedence_like_the_sdk(
    stub: StubServer, image: np.ndarray, vendor_env: pytest.MonkeyPatch
) -> None:
    vendor_env.setenv("GOOGLE_API_KEY", "google-api-key-value")
    gemini(stub).request_json_sync([image], INSTRUCTION, VLMAnalysis)
    assert stub.last().header("x-goog-api-key") == "google-api-key-value"


def test_custom_key_variable(stub: StubServer, image: np.ndarray, vendor_env: pytest.MonkeyPatch) -> None:
    vendor_env.setenv("TEAM_GEMINI_KEY", "team-key-value-123")
    gemini(stub, api_key_env="TEAM_GEMINI_KEY").request_json_sync([image], INSTRUCTION, VLMAnalysis)
    assert stub.last().header("x-goog-api-key") == "team-key-value-123"


def test_base_url_from_the_sdk_environment_variable(
    stub: StubServer, image: np.ndarray, vendor_env: pytest.MonkeyPatch
) -> None:
    vendor_env.setenv("GOOGLE_GEMINI_BASE_URL", stub.url)
    client = create_vlm("gemini", model="gemini-test")
    client.request_json_sync([image], INSTRUCTION, VLMAnalysis)
    assert stub.count() == 1


def test_one_client_serves_concurrent_calls_and_several_loops(stub: StubServer, image: np.ndarray) -> None:
    import asyncio

    client = gemini(stub)

    async def many() -> list[str]:
        async with client:
            results = await asyncio.gather(
                *(client.request_json([image], INSTRUCTION, VLMAnalysis) for _ in range(5))
            )
        return [r.data.category for r in results]

    assert run(many()) == ["rain"] * 5
    # A second event loop (a second asyncio.run, or the sync wrapper) gets its own connections.
    assert run(many()) == ["rain"] * 5
    assert client.request_json_sync([image], INSTRUCTION, VLMAnalysis).data.category == "rain"
    assert stub.count() == 11


def test_sync_wrapper_refuses_to_run_inside_a_loop(stub: StubServer, image: np.ndarray) -> None:
    client = gemini(stub)

    async def inside() -> None:
        client.request_json_sync([image], INSTRUCTION, VLMAnalysis)

    with pytest.raises(RuntimeError, match="await"):
        run(inside())


def test_bad_image_is_a_caller_error(stub: StubServer) -> None:
    with pytest.raises(ValueError, match="HxWx3"):
        gemini(stub).request_json_sync([np.zeros((8, 8), np.float32)], INSTRUCTION, VLMAnalysis)
    assert stub.count() == 0


@pytest.mark.parametrize("factory_name", ["gemini", "openai"])
def test_concurrent_calls_under_random_faults_are_all_classified(
    stub: StubServer, image: np.ndarray, factory_name: str
) -> None:
    # The engine's view: many calls on one client, some failing at random; each either succeeds or raises
    # a classified VLMError, connections broken by one call do not poison the next, nothing hangs.
    import asyncio

    import vlm_helpers

    from ggt.vlm import VLMError

    stub.set_fault_rate(0.4, ["rate_limit", "server_error", "reset", "close", "safety", "empty"], seed=11)
    client = getattr(vlm_helpers, factory_name)(stub, timeout_s=2.0)

    async def all_calls() -> list[object]:
        async with client:
            return await asyncio.gather(
                *(client.request_json([image], INSTRUCTION, VLMAnalysis) for _ in range(24)),
                return_exceptions=True,
            )

    outcomes = run(all_calls())
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    assert all(isinstance(f, VLMError) for f in failures), failures
    assert 0 < len(failures) < 24
    assert stub.count() == 24
    assert sum(1 for r in stub.requests if r.fault) == len(failures)
