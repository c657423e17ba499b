"""The offline heuristic judge and the judge instruction, on real photo pairs."""

from __future__ import annotations

import numpy as np
import pytest
from qc_helpers import clean

from ggt.degrade import apply_preset
from ggt.qc.corrupt import corrupt
from ggt.qc.judge import CHECKLIST, JudgeAnswer, heuristic_judge, judge_instruction, judge_values
from ggt.qc.measure import measure_pair
from ggt.qc.policy import load_policy
from ggt.qc.stage import decide_pair


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    hq = clean("astronaut", 256, 256)
    return apply_preset(hq, "rain", 3).image, hq


def verdict(lq: np.ndarray, hq: np.ndarray) -> tuple[JudgeAnswer, str, list[str]]:
    m, _ = measure_pair(lq, hq)
    ans = heuristic_judge(m, "rain")
    # As the stage does: rules over a metric this install cannot compute are left out.
    policy, _ = load_policy().without_unmeasured(m)
    d = decide_pair(policy, m, ans.model_dump(mode="json"), "rain")
    return ans, d.verdict, d.reasons


def test_good_pair_is_kept(pair: tuple[np.ndarray, np.ndarray]) -> None:
    ans, v, reasons = verdict(*pair)
    assert ans.verdict == "keep" and ans.failure_mode == "none"
    assert v == "keep", reasons


@pytest.mark.parametrize(
    ("kind", "mode"),
    [("shift", "misaligned"), ("paste", "invented_content"), ("different", "different_image")],
)
def test_bad_pairs_are_rejected(pair: tuple[np.ndarray, np.ndarray], kind: str, mode: str) -> None:
    lq, hq = pair
    bad, _ = corrupt(kind, hq, lq, 11, clean("coffee", 256, 256))
    ans, v, reasons = verdict(lq, bad)
    assert ans.verdict == "reject"
    assert ans.failure_mode in {mode, "misaligned", "different_image", "invented_content", "content_changed"}
    assert v == "reject", reasons


def test_scores_are_in_range_and_flatten_to_policy_keys(pair: tuple[np.ndarray, np.ndarray]) -> None:
    ans, _, _ = verdict(*pair)
    vals = judge_values(ans)
    assert set(vals) == {f"judge.{k}" for k in CHECKLIST} | {
        "judge.min",
        "judge.says_reject",
        "judge.says_review",
    }
    assert all(0.0 <= v <= 1.0 for v in vals.values())
    assert judge_values(None) == {}


def test_unmeasured_metrics_score_unsure() -> None:
    ans = heuristic_judge({}, None)
    assert ans.scores.geometry == 0.5 and ans.verdict == "review"


def test_instruction_carries_checklist_and_numbers() -> None:
    text = judge_instruction({"misalign.shift_px": 3.25, "psnr": float("nan"), "unlisted": 1.0}, "rain")
    assert "misalign.shift_px = 3.25" in text and "psnr" not in text and "unlisted" not in text
    assert all(k in text for k in CHECKLIST) and "'rain'" in text
