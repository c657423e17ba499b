"""Fixtures of the VLM tests: a clean vendor environment, a small image, a stub answering valid analyses."""

from __future__ import annotations

import json

import numpy as np
import pytest
from vlm_helpers import GEMINI_KEY, OPENAI_KEY, VALID_ANALYSIS, VENDOR_ENV

from fixtures.stubs import StubServer


@pytest.fixture(autouse=True)
def vendor_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Test keys, and nothing from the developer's shell (a real key, a proxy URL) leaks into a test."""
    for name in VENDOR_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GEMINI_API_KEY", GEMINI_KEY)
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    return monkeypatch


@pytest.fixture
def image() -> np.ndarray:
    """A 32x24 (WxH) float32 RGB gradient: small, and asymmetric so a transposed upload would show."""
    y, x = np.mgrid[0:24, 0:32].astype(np.float32)
    return np.stack([x / 31, y / 23, (x + y) / 54], axis=-1).astype(np.float32)


@pytest.fixture
def stub(stub_server: StubServer) -> StubServer:
    """The stub server, answering every text request with a valid analysis."""
    stub_server.default_text = json.dumps(VALID_ANALYSIS)
    return stub_server
