"""What a VLM call returns: the validated answer plus what the engine needs for costs and provenance."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T", bound=BaseModel)


class Usage(BaseModel):
    """Token counts as the vendor reported them; None where it reported nothing."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None

    def __add__(self, other: Usage) -> Usage:
        def add(a: int | None, b: int | None) -> int | None:
            return None if a is None and b is None else (a or 0) + (b or 0)

        return Usage(
            input_tokens=add(self.input_tokens, other.input_tokens),
            output_tokens=add(self.output_tokens, other.output_tokens),
            total_tokens=add(self.total_tokens, other.total_tokens),
        )


class VLMResult(BaseModel, Generic[T]):
    """One successful `request_json` call. `usage` and `latency_s` cover every attempt: all were paid for."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: T
    raw_text: str = Field(description="the model's final answer, as text")
    backend: str
    model: str | None = Field(description="the model asked for (None for offline backends)")
    model_version: str | None = Field(default=None, description="the model the server says answered")
    latency_s: float = Field(ge=0.0)
    usage: Usage = Field(default_factory=Usage)
    attempts: int = Field(ge=1, description="calls made: 2 when the first answer needed the corrective retry")
