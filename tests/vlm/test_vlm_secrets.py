"""API keys never show up in errors, tracebacks, reprs or logs, whatever fails."""

from __future__ import annotations

import logging
import pickle
import traceback

import numpy as np
import pytest
from vlm_helpers import GEMINI_KEY, OPENAI_KEY, compatible, gemini, openai

from fixtures.stubs import RecordedRequest, Reply, StubServer
from fixtures.stubs.server import gemini_error, openai_error
from ggt.vlm import VLMAnalysis, VLMError

FAULTS = [
    "rate_limit",
    "server_error",
    "reset",
    "auth",
    "safety",
    "malformed_json",
    "malformed_json",
    "empty",
]


def _everything_printed(err: BaseException) -> str:
    return "".join(traceback.format_exception(err)) + repr(err) + str(err)


@pytest.mark.parametrize("factory", [gemini, openai, compatible], ids=["gemini", "openai", "compatible"])
def test_keys_stay_out_of_errors_and_logs(
    factory,
    stub: StubServer,
    image: np.ndarray,
    caplog: pytest.LogCaptureFixture,
    vendor_env: pytest.MonkeyPatch,
) -> None:
    vendor_env.setenv("COMPAT_KEY", "compat-secret-key-0123456789")
    options = {"api_key_env": "COMPAT_KEY"} if factory is compatible else {}
    secrets = [GEMINI_KEY, OPENAI_KEY, "compat-secret-key-0123456789"]
    caplog.set_level(logging.DEBUG)  # every logger, the SDKs' and httpx's included

    client = factory(stub, timeout_s=5.0, **options)
    assert all(s not in repr(client) for s in secrets)
    stub.push_fault(*FAULTS)
    failures: list[VLMError] = []
    for _ in range(len(FAULTS) - 1):  # the two malformed answers make one failure
        try:
            client.request_json_sync([image], "Describe.", VLMAnalysis)
        except VLMError as err:
            failures.append(err)
    assert len(failures) == len(FAULTS) - 1
    for err in failures:
        text = _everything_printed(err) + repr(pickle.loads(pickle.dumps(err)))
        assert all(s not in text for s in secrets), text
    assert all(s not in caplog.text for s in secrets)


def _echo_key_back(req: RecordedRequest) -> Reply:
    # A badly behaved proxy that quotes the credentials it was given.
    leaked = req.header("x-goog-api-key") or req.header("authorization") or ""
    if req.route == "gemini.generate":
        return Reply(401, gemini_error(401, f"bad key {leaked}", "UNAUTHENTICATED"))
    return Reply(
        401, openai_error(f"Incorrect API key provided: {leaked}", "invalid_request_error", "invalid_api_key")
    )


@pytest.mark.parametrize("factory", [gemini, openai], ids=["gemini", "openai"])
def test_a_server_echoing_the_key_is_redacted(factory, stub: StubServer, image: np.ndarray) -> None:
    stub.set_responder(_echo_key_back)
    with pytest.raises(VLMError) as info:
        factory(stub).request_json_sync([image], "Describe.", VLMAnalysis)
    err = info.value
    assert err.reason == "auth" and "***" in str(err)
    printed = _everything_printed(err)
    assert GEMINI_KEY not in printed and OPENAI_KEY not in printed
    # The SDK's exception (which quotes the server) is dropped from the chain rather than shown.
    assert err.__cause__ is None
