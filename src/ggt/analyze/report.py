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
