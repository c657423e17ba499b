"""Schema helpers, JSON extraction and error plumbing, without a server."""

from __future__ import annotations

import email.utils
import json
import pickle
import time

import pytest
from pydantic import BaseModel

from ggt.vlm import PermanentVLMError, RetryableVLMError, Usage, VLMAnalysis
from ggt.vlm.errors import MalformedResponseError, parse_retry_after, redact, transport_reason
from ggt.vlm.schema import extract_json_text, json_schema_for, strict_json_schema


def test_json_schema_is_inlined() -> None:
    schema = json_schema_for(VLMAnalysis)
    assert "$defs" not in schema and "$ref" not in json.dumps(schema)
    item = schema["properties"]["degradations"]["items"]
    assert item["properties"]["severity"] == {
        "maximum": 1.0,
        "minimum": 0.0,
        "title": "Severity",
        "type": "number",
    }


class Node(BaseModel):
    name: str
    children: list[Node] = []


def test_recursive_schema_keeps_its_refs() -> None:
    assert "$defs" in json_schema_for(Node)


class WithOddNames(BaseModel):
    default: str = "x"
    properties: int = 0


def test_strict_schema_leaves_field_names_alone() -> None:
    strict = strict_json_schema(json_schema_for(WithOddNames))
    assert strict is not None
    assert set(strict["properties"]) == {"default", "properties"}
    assert strict["required"] == ["default", "properties"] and strict["additionalProperties"] is False
    assert "default" not in strict["properties"]["default"]


def test_strict_schema_refuses_open_maps() -> None:
    class Scores(BaseModel):
        scores: dict[str, float]

    assert strict_json_schema(json_schema_for(Scores)) is None


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1}',
        '  {"a": 1}\n',
        '```json\n{"a": 1}\n```',
        '```\n{"a": 1}\n```',
        'Here you go: {"a": 1} Hope this helps!',
    ],
)
def test_extract_json_text(text: str) -> None:
    assert json.loads(extract_json_text(text)) == {"a": 1}


def test_extract_json_text_leaves_hopeless_text_for_the_parser_to_report() -> None:
    assert extract_json_text("no json here") == "no json here"


def test_parse_retry_after() -> None:
    assert parse_retry_after({"retry-after": "12"}) == 12
    future = email.utils.formatdate(time.time() + 60, usegmt=True)
    assert 55 <= (parse_retry_after({"Retry-After": future}) or 0) <= 61
    assert parse_retry_after({}, {"error": {"details": [{"retryDelay": "4.5s"}]}}) == 4.5
    assert parse_retry_after(None) is None


def test_transport_reason_by_class_name() -> None:
    class ReadTimeout(Exception):
        pass

    class TimeoutException(Exception):
        pass

    class RealReadTimeout(TimeoutException):
        pass

    assert transport_reason(RealReadTimeout()) == "timeout"
    assert transport_reason(ConnectionResetError()) == "connection"
    assert transport_reason(TimeoutError()) == "timeout"
    assert transport_reason(ReadTimeout()) is None
    assert transport_reason(ValueError()) is None


def test_redact() -> None:
    assert redact("key=abcdef123 here", ["abcdef123"]) == "key=*** here"
    assert redact("a short key", ["a"]) == "a short key", "too short to redact safely"


def test_errors_are_one_line_and_picklable() -> None:
    err = RetryableVLMError(
        "HTTP 429:\n  slow down",
        reason="rate_limited",
        backend="gemini",
        model="m",
        status=429,
        retry_after_s=2.0,
    )
    assert str(err) == "gemini m: HTTP 429: slow down"
    assert err.retryable and not PermanentVLMError("x").retryable
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is RetryableVLMError and str(copy) == str(err)
    assert (copy.reason, copy.status, copy.retry_after_s) == ("rate_limited", 429, 2.0)
    bad = MalformedResponseError("nope", raw_text="{", usage=Usage(input_tokens=3))
    again = pickle.loads(pickle.dumps(bad))
    assert again.reason == "malformed_json" and again.raw_text == "{" and again.usage == Usage(input_tokens=3)
    assert len(str(RetryableVLMError("x" * 1000))) <= 300


def test_usage_addition() -> None:
    assert Usage(input_tokens=1) + Usage(input_tokens=2, output_tokens=3) == Usage(
        input_tokens=3, output_tokens=3
    )
    assert Usage() + Usage() == Usage()


def test_results_serialize_for_the_run_store() -> None:
    from ggt.vlm import HeuristicAnalysis, VLMResult

    data = HeuristicAnalysis(category="rain", degradations=[], scene="x", prompt="p", measures={"m": 1.0})
    result = VLMResult(data=data, raw_text="{}", backend="heuristic", model=None, latency_s=0.1, attempts=1)
    dumped = json.loads(result.model_dump_json())
    assert dumped["data"]["measures"] == {"m": 1.0}, "a subclass answer keeps its own fields"
    again = VLMResult[VLMAnalysis].model_validate_json(result.model_dump_json())
    assert again.data.prompt == "p" and again.attempts == 1
