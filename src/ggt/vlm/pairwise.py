"""Pairwise judging: a VLM sees the LQ photo and two candidate HQs (A, B) and says which is the better target.

    result = await judge_pair(client, lq, hq_a, hq_b, instruction)   # VLMResult[PairwiseAnswer]

The instruction (the checklist) is written by the caller, e.g. `ggt.bench.judge.pairwise_instruction`, so
the caller decides, and caches by, the exact text. Asking both orders, (A, B) and (B, A), to cancel the
model's position bias is also the caller's job: one call here is one order.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ggt.vlm.base import VLMClient, run_sync
from ggt.vlm.result import VLMResult

Winner = Literal["A", "B", "tie"]


class PairwiseReasons(BaseModel):
    """One or two sentences per criterion, naming the candidate that does better on it."""

    model_config = ConfigDict(extra="forbid")

    faithfulness: str = Field(max_length=1000, description="same content, geometry, text, faces, colours")
    degradations_removed: str = Field(max_length=1000, description="noise, blur, rain, haze, ... gone")
    natural_look: str = Field(max_length=1000, description="looks like a natural, clean photograph")


class PairwiseAnswer(BaseModel):
    """What a pairwise judge returns: the better training target of the two, and why."""

    model_config = ConfigDict(extra="forbid")

    winner: Winner = Field(description="A, B, or tie when neither is clearly the better target")
    confidence: float = Field(ge=0.0, le=1.0, description="0 = a guess, 1 = certain")
    reasons: PairwiseReasons

    def outcome_for_a(self) -> float:
        """1.0 when A won, 0.0 when B won, 0.5 for a tie."""
        return {"A": 1.0, "B": 0.0, "tie": 0.5}[self.winner]


async def judge_pair(
    client: VLMClient, lq: np.ndarray, hq_a: np.ndarray, hq_b: np.ndarray, instruction: str
) -> VLMResult[PairwiseAnswer]:
    """One pairwise call: images in the order LQ, A, B (the instruction must say so)."""
    return await client.request_json([lq, hq_a, hq_b], instruction, PairwiseAnswer)


def judge_pair_sync(
    client: VLMClient, lq: np.ndarray, hq_a: np.ndarray, hq_b: np.ndarray, instruction: str
) -> VLMResult[PairwiseAnswer]:
    """Blocking `judge_pair`."""
    return run_sync(client, judge_pair(client, lq, hq_a, hq_b, instruction))
