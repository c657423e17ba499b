"""The judge: a checklist verdict on one LQ-HQ pair, from a VLM or from the metrics (offline).

Every judge answers the same `JudgeAnswer`: eight checklist scores, each in [0, 1] where 1 means the
item is fully satisfied and 0 clearly violated (0.5: unsure), a verdict (keep / reject / review) and a
failure mode. Items that do not apply (no text, no faces in the photo) score 1.

Backends:
- `heuristic` (offline, default): scores computed from the measured metrics by fixed ramps. It is not a
  model and sees no pixels beyond what the metrics measured: `text` and `identity` are read from local
  structure (`local_mismatch`), a proxy, not a reading of the text or a face comparison.
- `gemini`, `openai`, `openai-compatible`: `ggt.vlm.create_vlm(...).request_json([lq, hq], instruction,
  JudgeAnswer)`, the instruction holding the checklist and the measured numbers.

`judge_values(answer)` flattens an answer into the `judge.*` keys a policy reads.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

CHECKLIST: dict[str, str] = {
    "content": "the same scene: every object, person and region of the LQ is still there, nothing swapped",
    "geometry": "the same framing: no shift, crop, zoom, rotation or warp against the LQ",
    "no_invention": "nothing invented: no new objects, textures or details that the LQ does not support",
    "text": "text and signs read exactly as in the LQ (1 when there is no text)",
    "identity": "faces keep their identity, expression and age (1 when there are no faces)",
    "no_artifacts": "no new artefacts: no halos, blocking, ringing, banding, plastic or painted look",
    "degradation_removed": "the degradations of the LQ (noise, blur, rain, haze, ...) are gone",
    "natural": "the HQ looks like a natural, well-exposed photograph with plausible colours",
}
FailureMode = Literal[
    "none",
    "different_image",
    "misaligned",
    "content_changed",
    "invented_content",
    "removed_content",
    "text_damaged",
    "identity_changed",
    "artifacts",
    "degradation_left",
    "colour_shift",
    "too_soft",
    "unnatural",
    "other",
]


def _score() -> float:
    return Field(ge=0.0, le=1.0)  # type: ignore[return-value]


class JudgeScores(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content: float = _score()
    geometry: float = _score()
    no_invention: float = _score()
    text: float = _score()
    identity: float = _score()
    no_artifacts: float = _score()
    degradation_removed: float = _score()
    natural: float = _score()


class JudgeAnswer(BaseModel):
    """What every judge returns. Scores: 0 (clearly violated) .. 1 (fully satisfied)."""

    model_config = ConfigDict(extra="forbid")

    scores: JudgeScores
    verdict: Literal["keep", "reject", "review"]
    failure_mode: FailureMode = "none"
    explanation: str = Field(default="", max_length=2000)


# Metrics shown to a VLM judge: the ones a person can relate to what they see.
INSTRUCTION_METRICS: tuple[str, ...] = (
    "misalign.shift_px", "misalign.scale", "misalign.rotation_deg", "misalign.crop", "fidelity",
    "local_mismatch.worst", "local_mismatch.mean", "drift.de_mean", "drift.chroma_shift", "wb.change",
    "wb.cast_added", "wb.hue_shift", "wb.chroma_ratio", "psnr", "ssim",
    "noise.lq", "noise.hq", "sharpness.lq", "sharpness.hq", "blockiness.lq", "blockiness.hq",
    "niqe.lq", "niqe.hq", "brisque.lq", "brisque.hq",
)  # fmt: skip


def judge_instruction(metrics: Mapping[str, float], category: str | None = None) -> str:
    """The instruction for a VLM judge: the checklist, the scale, and the measured numbers."""
    items = "\n".join(f"- {k}: {v}" for k, v in CHECKLIST.items())
    nums = "\n".join(
        f"- {k} = {metrics[k]:.4g}" for k in INSTRUCTION_METRICS if k in metrics and math.isfinite(metrics[k])
    )
    cat = f" The LQ was classified as '{category}'." if category else ""
    return (
        "You are checking a training pair for image restoration. Image 1 is the real low-quality photo "
        "(LQ); image 2 is a generated high-quality target (HQ) that must show exactly the same scene, "
        f"only restored.{cat}\n\n"
        "Score each checklist item from 0 (clearly violated) to 1 (fully satisfied); 0.5 means unsure. "
        "Score 1 for an item that does not apply (no text, no faces).\n"
        f"{items}\n\n"
        "Measured numbers (LQ vs HQ; misalign in LQ pixels; local_mismatch 0 = same structure, 1 = "
        "unrelated; drift in CIEDE2000; wb.change = white-balance change (log chromaticity), wb.hue_shift = "
        "hue rotation after white balance (degrees), wb.chroma_ratio = HQ/LQ saturation; "
        "noise/sharpness/blockiness/niqe/brisque per image, lower niqe and "
        f"brisque are better):\n{nums}\n\n"
        "Then give a verdict: keep (a faithful, clean target), reject (unusable), or review (a person "
        "should look), the main failure mode ('none' when keeping), and one or two sentences of explanation."
    )


# -- the offline heuristic judge ------------------------------------------------------------------------


def _ramp(x: float, good: float, bad: float) -> float:
    """1 at or beyond `good`, 0 at or beyond `bad`, linear between; NaN (unmeasured) gives 0.5."""
    if x is None or not math.isfinite(x):
        return 0.5
    t = (x - good) / (bad - good)
    return float(min(1.0, max(0.0, 1.0 - t)))


def _get(m: Mapping[str, float], key: str) -> float:
    v = m.get(key)
    return float(v) if v is not None else math.nan


def heuristic_judge(metrics: Mapping[str, float], category: str | None = None) -> JudgeAnswer:
    """Checklist scores from the metrics by fixed, physically motivated ramps (see docs/qc-validation.md).

    Each ramp starts where a person would begin to notice (e.g. a 1 px shift, local structure
    correlation dropping) and ends where the pair is plainly unusable (a 4 px shift, an unrelated region).
    """
    g = lambda k: _get(metrics, k)  # noqa: E731 - a short local reader keeps the table below legible
    geometry = min(
        _ramp(g("misalign.shift_px"), 1.0, 4.0),
        _ramp(abs(g("misalign.scale") - 1), 0.01, 0.03),
        _ramp(abs(g("misalign.rotation_deg")), 0.3, 0.9),
        _ramp(g("misalign.crop"), 0.02, 0.06),
    )
    different = g("local_mismatch.mean") > 0.5 and g("fidelity") < 0.8
    content = min(_ramp(g("local_mismatch.mean"), 0.2, 0.5), _ramp(g("fidelity"), 0.85, 0.7))
    no_invention = _ramp(g("local_mismatch.worst"), 0.55, 0.85)
    artifacts = min(
        _ramp(g("blockiness.hq"), 1.3, 1.8),
        _ramp(-g("noise.gain"), 3.5, 6.0),  # new high-frequency energy: halos and ringing read as noise
        _ramp(g("sharpness.hq"), 2500.0, 5000.0),
    )
    unchanged = _ramp(g("psnr"), 35.0, 40.0)
    removed = min(unchanged, _ramp(-g("brisque.gain"), 0.0, 15.0))
    natural = _ramp(g("brisque.hq"), 35.0, 55.0)
    scores = JudgeScores(
        content=content,
        geometry=geometry,
        no_invention=no_invention,
        text=no_invention,
        identity=no_invention,
        no_artifacts=artifacts,
        degradation_removed=removed,
        natural=natural,
    )
    modes: list[tuple[float, FailureMode]] = [
        (0.0 if different else 1.0, "different_image"),
        (geometry, "misaligned"),
        (content, "content_changed"),
        (no_invention, "invented_content"),
        (artifacts, "artifacts"),
        (removed, "degradation_left"),
        (natural, "unnatural"),
    ]
    worst, mode = min(modes, key=lambda t: t[0])
    verdict: Literal["keep", "reject", "review"] = (
        "reject" if worst < 0.15 else "review" if worst <= 0.5 else "keep"
    )
    if verdict == "keep":
        mode = "none"
    low = [f"{k} {v:.2f}" for k, v in scores.model_dump().items() if v <= 0.5]
    explanation = "heuristic judge from metrics; " + (f"low: {', '.join(low)}" if low else "all items fine")
    return JudgeAnswer(scores=scores, verdict=verdict, failure_mode=mode, explanation=explanation)


def judge_values(answer: JudgeAnswer | Mapping | None) -> dict[str, float]:
    """Policy keys of a judge answer: `judge.<item>` scores, `judge.min`, and `judge.says_reject` /
    `judge.says_review` (1.0 or 0.0)."""
    if answer is None:
        return {}
    a = answer if isinstance(answer, JudgeAnswer) else JudgeAnswer.model_validate(answer)
    scores = a.scores.model_dump()
    out = {f"judge.{k}": float(v) for k, v in scores.items()}
    out["judge.min"] = float(min(scores.values()))
    out["judge.says_reject"] = float(a.verdict == "reject")
    out["judge.says_review"] = float(a.verdict == "review")
    return out


JUDGE_KEYS: tuple[str, ...] = (
    *(f"judge.{k}" for k in CHECKLIST),
    "judge.min",
    "judge.says_reject",
    "judge.says_review",
)
