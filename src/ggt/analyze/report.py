"""The degradation report: what the analyzer (heuristic or VLM) says about one LQ photo."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SceneCategory = Literal["social_media", "old_photo", "rain", "haze", "snow", "low_light", "clean"]

DegradationType = Literal[
    "noise",
    "blur",
    "motion_blur",
    "jpeg",
    "low_resolution",
    "haze",
    "rain",
    "snow",
    "low_light",
    "color_cast",
    "fading",
    "sepia",
    "film_grain",
    "scratches",
    "dust",
    "oversharpening",
]


class Degradation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: DegradationType
    severity: float = Field(ge=0.0, le=1.0)


class DegradationReport(BaseModel):
    """Scene category, degradations with severity in [0, 1], and the raw measures behind them."""

    model_config = ConfigDict(extra="forbid")

    category: SceneCategory
    degradations: list[Degradation] = Field(default_factory=list)
    scene: str = ""
    measures: dict[str, float] = Field(default_factory=dict)
    analyzer: str = "heuristic"
    model: str | None = None


class VLMAnalysis(BaseModel):
    """What the VLM returns for one LQ photo: the report's judgement fields plus the restoration prompt it
    writes. Numeric `measures` are not asked for: they are computed, never guessed by a language model."""

    # Extra keys are ignored rather than refused: a model adding "confidence" should not cost a paid retry.
    model_config = ConfigDict(extra="ignore")

    category: SceneCategory = Field(description="the scene's main degradation category, or clean")
    degradations: list[Degradation] = Field(
        description="each visible degradation with its severity from 0 (none) to 1 (extreme)"
    )
    scene: str = Field(description="one short sentence on what the photo shows")
    # Required but may be empty: an empty prompt is not worth a paid retry, since
    # `ggt.analyze.prompts.finalize_vlm_prompt` falls back to the adaptive prompt built from the report.
    prompt: str = Field(description="the instruction for an image-editing model to restore this photo")

    def to_report(self, analyzer: str, model: str | None = None) -> DegradationReport:
        # One entry per type: models sometimes list a type twice; the worst severity named wins.
        worst: dict[str, float] = {}
        for d in self.degradations:
            worst[d.type] = max(worst.get(d.type, 0.0), d.severity)
        return DegradationReport(
            category=self.category,
            degradations=[Degradation(type=t, severity=s) for t, s in worst.items()],  # type: ignore[arg-type]
            scene=self.scene,
            measures=dict(getattr(self, "measures", {}) or {}),
            analyzer=analyzer,
            model=model,
        )
