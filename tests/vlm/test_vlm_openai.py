"""The OpenAI and OpenAI-compatible backends against the stub, through the real openai SDK."""

from __future__ import annotations

import json

import numpy as np
import pytest
from vlm_helpers import OPENAI_KEY, VALID_ANALYSIS, compatible, openai

from fixtures.stubs import Fault, Reply, StubServer
from fixtures.stubs.server import openai_error
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

INSTRUCTION = "Describe the degradations of this photo."


def test_request_shape_and_result(stub: StubServer, image: np.ndarray) -> None:
    result = openai(stub, temperature=0.0, max_output_tokens=300).request_json_sync(
        [image], INSTRUCTION, VLMAnalysis
    )

    req = stub.last()
    assert req.path == "/v1/chat/completions"
    assert req.header("authorization") == f"Bearer {OPENAI_KEY}"
    body = req.json
    assert body["model"] == "gpt-test"
    content = body["messages"][0]["content"]
    assert [c["type"] for c in content] == ["image_url", "text"]
    assert content[0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert content[0]["image_url"]["detail"] == "high"
    assert req.images[0].size == (32, 24)
    assert np.abs(req.images[0].array - image).max() <= 0.5 / 255 + 1e-6
    assert req.texts == [INSTRUCTION]
    assert body["temperature"] == 0.0 and body["max_completion_tokens"] == 300

    fmt = body["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "VLMAnalysis" and fmt["json_schema"]["strict"] is True
    schema = fmt["json_schema"]["schema"]
    # OpenAI's strict mode: every object closed, every property required, no defaults.
    assert schema["additionalProperties"] is False
    assert sorted(schema["required"]) == sorted(schema["properties"])
    item = schema["properties"]["degradations"]["items"]
    assert item["additionalProperties"] is False and sorted(item["required"]) == ["severity", "type"]
    assert '"default"' not in json.dumps(schema) and "minLength" not in json.dumps(schema)

    assert result.data == VLMAnalysis.model_validate(VALID_ANALYSIS)
    assert result.backend == "openai" and result.model == "gpt-test" and result.model_version == "gpt-test"
    assert (result.usage.input_tokens, result.usage.output_tokens, result.usage.total_tokens) == (
        123,
        45,
        168,
    )
    assert result.attempts == 1 and result.latency_s > 0


@pytest.mark.parametrize(
    ("fault", "error", "reason"),
    [
        (Fault("rate_limit", retry_after=3), RetryableVLMError, "rate_limited"),
        ("server_error", RetryableVLMError, "server_error"),
        ("unavailable", RetryableVLMError, "server_error"),
        (Fault("slow", delay_s=3.0), RetryableVLMError, "timeout"),
        ("reset", RetryableVLMError, "connection"),
        ("close", RetryableVLMError, "connection"),
        (Fault("http", status=408), RetryableVLMError, "timeout"),
        ("auth", PermanentVLMError, "auth"),
        (Fault("http", status=403), PermanentVLMError, "auth"),
        ("bad_request", PermanentVLMError, "invalid_request"),
        ("safety", SafetyBlockError, "safety_block"),
        (Fault("safety", code="moderation_blocked"), SafetyBlockError, "safety_block"),
        ("safety_finish", SafetyBlockError, "safety_block"),
        ("refusal", SafetyBlockError, "safety_block"),
        ("empty", EmptyResponseError, "empty_response"),
    ],
    ids=lambda v: v.kind if isinstance(v, Fault) else getattr(v, "__name__", str(v)),
)
def test_faults_are_classified_without_sdk_retries(
    stub: StubServer, image: np.ndarray, fault: Fault | str, error: type[Exception], reason: str
) -> None:
    stub.push_fault(fault)
    with pytest.raises(error) as info:
        openai(stub, timeout_s=1.5).request_json_sync([image], INSTRUCTION, VLMAnalysis)  # < slow fault's 3 s
    err = info.value
    assert err.reason == reason
    assert "\n" not in str(err) and str(err).startswith("openai gpt-test: ")
    assert OPENAI_KEY not in str(err) and OPENAI_KEY not in repr(err)
    assert stub.count() == 1, "the SDK must not retry behind the engine's back"
    assert stub.last().header("x-stainless-retry-count") == "0"
    if reason == "rate_limited":
        assert err.retry_after_s == 3 and err.status == 429


def test_insufficient_quota_is_permanent(stub: StubServer, image: np.ndarray) -> None:
    body = openai_error("You exceeded your current quota.", "insufficient_quota", "insufficient_quota")
    stub.set_responder(lambda _req: Reply(429, body))
    with pytest.raises(PermanentVLMError) as info:
        openai(stub).request_json_sync([image], INSTRUCTION, VLMAnalysis)
    assert info.value.reason == "quota_exceeded"


def test_malformed_json_is_retried_once_with_the_error(stub: StubServer, image: np.ndarray) -> None:
    stub.push_fault("malformed_json")
    result = openai(stub).request_json_sync([image], INSTRUCTION, VLMAnalysis)
    assert result.attempts == 2
    assert "not valid JSON" in stub.last().texts[0]
    assert result.usage.output_tokens == 90

    stub.clear()
    stub.push_fault("malformed_json", "malformed_json")
    with pytest.raises(MalformedResponseError) as info:
        openai(stub).request_json_sync([image], INSTRUCTION, VLMAnalysis)
    assert info.value.reason == "malformed_json"
    assert stub.count() == 2


def test_truncated_answer_says_so(stub: StubServer, image: np.ndarray) -> None:
    from fixtures.stubs import openai_chat_reply

    cut = json.dumps(VALID_ANALYSIS)[:40]
    stub.set_responder(lambda req: openai_chat_reply(cut, model=req.model, usage=(1, 2), finish="length"))
    with pytest.raises(MalformedResponseError, match="cut off by the output token limit"):
        openai(stub).request_json_sync([image], INSTRUCTION, VLMAnalysis)


def test_missing_key_names_the_variable(stub: StubServer, vendor_env: pytest.MonkeyPatch) -> None:
    vendor_env.delenv("OPENAI_API_KEY")
    with pytest.raises(VLMConfigError, match="OPENAI_API_KEY") as info:
        openai(stub)
    assert info.value.reason == "missing_api_key"


def test_base_url_from_the_sdk_environment_variable(
    stub: StubServer, image: np.ndarray, vendor_env: pytest.MonkeyPatch
) -> None:
    vendor_env.setenv("OPENAI_BASE_URL", stub.openai_url)
    create_vlm("openai", model="gpt-test").request_json_sync([image], INSTRUCTION, VLMAnalysis)
    assert stub.count() == 1


def test_non_strict_schema_falls_back_to_plain_json_schema(stub: StubServer, image: np.ndarray) -> None:
    from pydantic import BaseModel

    class Scores(BaseModel):
        scores: dict[str, float]  # an open map: strict mode cannot express it

    stub.reply_text('{"scores": {"sharpness": 0.5}}')
    result = openai(stub).request_json_sync([image], INSTRUCTION, Scores)
    assert result.data.scores == {"sharpness": 0.5}
    fmt = stub.last().json["response_format"]["json_schema"]
    assert fmt["strict"] is False and fmt["schema"]["properties"]["scores"]["additionalProperties"] == {
        "type": "number"
    }


# -- OpenAI-compatible servers ------------------------------------------------------------------------------


def test_compatible_needs_base_url(vendor_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(VLMConfigError, match="base_url"):
        create_vlm("openai-compatible", model="qwen2.5-vl")
    with pytest.raises(VLMConfigError, match="model"):
        create_vlm("openai-compatible", base_url="http://127.0.0.1:1/v1")


def test_compatible_defaults_to_json_in_the_prompt(stub: StubServer, image: np.ndarray) -> None:
    stub.reply_text("Sure! Here it is:\n```json\n" + json.dumps(VALID_ANALYSIS) + "\n```")
    result = compatible(stub, max_output_tokens=200).request_json_sync([image], INSTRUCTION, VLMAnalysis)
    assert result.data.category == "rain" and result.backend == "openai-compatible"
    req = stub.last()
    assert "response_format" not in req.json
    assert req.json["max_tokens"] == 200 and "max_completion_tokens" not in req.json
    assert "detail" not in req.json["messages"][0]["content"][0]["image_url"]
    text = req.texts[0]
    assert text.startswith(INSTRUCTION) and "JSON Schema" in text and '"prompt"' in text


def test_compatible_structured_output_flag(stub: StubServer, image: np.ndarray) -> None:
    compatible(stub, structured_output=True).request_json_sync([image], INSTRUCTION, VLMAnalysis)
    req = stub.last()
    assert req.json["response_format"]["type"] == "json_schema"
    assert req.texts == [INSTRUCTION]


def test_compatible_never_sends_the_openai_key(stub: StubServer, image: np.ndarray) -> None:
    # OPENAI_API_KEY is set (by the fixture); a third-party server must not receive it.
    compatible(stub).request_json_sync([image], INSTRUCTION, VLMAnalysis)
    auth = stub.last().header("authorization") or ""
    assert OPENAI_KEY not in auth


def test_compatible_key_from_the_named_variable(
    stub: StubServer, image: np.ndarray, vendor_env: pytest.MonkeyPatch
) -> None:
    with pytest.raises(VLMConfigError, match="VLLM_API_KEY"):
        compatible(stub, api_key_env="VLLM_API_KEY")
    vendor_env.setenv("VLLM_API_KEY", "vllm-secret-token")
    compatible(stub, api_key_env="VLLM_API_KEY").request_json_sync([image], INSTRUCTION, VLMAnalysis)
    assert stub.last().header("authorization") == "Bearer vllm-secret-token"


def test_compatible_faults(stub: StubServer, image: np.ndarray) -> None:
    stub.push_fault("unavailable")
    with pytest.raises(RetryableVLMError) as info:
        compatible(stub).request_json_sync([image], INSTRUCTION, VLMAnalysis)
    assert info.value.reason == "server_error" and str(info.value).startswith(
        "openai-compatible qwen2.5-vl: "
    )
    assert stub.count() == 1
