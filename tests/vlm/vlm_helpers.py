"""Shared helpers of the VLM tests (a uniquely named module: test folders here are not packages)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from fixtures.stubs import StubServer
from ggt.vlm import VLMClient, create_vlm

R = TypeVar("R")

GEMINI_KEY = "AIza-test-gemini-key-0123456789"
OPENAI_KEY = "sk-test-openai-key-0123456789"

VENDOR_ENV = (
    "GOOGLE_API_KEY",
    "GEMINI_API_KEY",
    "OPENAI_API_KEY",
    "GOOGLE_GEMINI_BASE_URL",
    "OPENAI_BASE_URL",
    "GOOGLE_GENAI_USE_VERTEXAI",
    "GOOGLE_CLOUD_PROJECT",
    "OPENAI_ORG_ID",
    "OPENAI_PROJECT_ID",
    "OPENAI_CUSTOM_HEADERS",
)

VALID_ANALYSIS: dict[str, Any] = {
    "category": "rain",
    "degradations": [{"type": "rain", "severity": 0.7}, {"type": "noise", "severity": 0.2}],
    "scene": "a street at night",
    "prompt": "Remove the rain streaks and the noise; keep every detail of the street.",
}


def run(coro: Coroutine[Any, Any, R]) -> R:
    return asyncio.run(coro)


def gemini(stub: StubServer, **options: Any) -> VLMClient:
    return create_vlm("gemini", **{"model": "gemini-test", "base_url": stub.url, "timeout_s": 5.0, **options})


def openai(stub: StubServer, **options: Any) -> VLMClient:
    return create_vlm(
        "openai", **{"model": "gpt-test", "base_url": stub.openai_url, "timeout_s": 5.0, **options}
    )


def compatible(stub: StubServer, **options: Any) -> VLMClient:
    return create_vlm(
        "openai-compatible",
        **{"model": "qwen2.5-vl", "base_url": stub.openai_url, "timeout_s": 5.0, **options},
    )
