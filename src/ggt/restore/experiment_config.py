"""The GGT-vs-synthetic experiment's configuration (`ggt experiment --config FILE`): typed, strict.

Relative paths resolve against the current folder, as in training configs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ggt.config import ConfigError, _deep_merge, _read_yaml, format_validation_error, parse_overrides
from ggt.restore.arch import ArchConfig

# TrainConfig keys the experiment sets itself, one value per arm.
_ARM_KEYS = ("name", "output", "arch", "datasets")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SyntheticConfig(_Strict):
    """How arm (a)'s training pairs are made from the GGT train split's clean (GT) images."""

    preset: str = Field(
        "realesrgan",
        description="a `ggt degrade` preset for every image (realesrgan: the second-order random pipeline),"
        " or `category`: each pair's own category preset (realesrgan where the category has none)",
    )
    copies: int = Field(1, ge=1, le=100, description="degraded versions per clean image (different seeds)")
    seed: int = Field(0, ge=0)

    @field_validator("preset")
    @classmethod
    def _known(cls, v: str) -> str:
        from ggt.degrade import list_presets

        if v != "category" and v not in list_presets():
            raise ValueError(f"unknown preset {v!r}; use category or one of: {', '.join(list_presets())}")
        return v


class RealSet(_Strict):
    """A folder of real LQ photos without GT (category = first subfolder), scored with NR metrics."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    path: Path


class EvalSettings(_Strict):
    fr_metrics: list[str] = Field(
        default_factory=lambda: ["psnr", "ssim"], description="on the GGT test split"
    )
    nr_metrics: list[str] = Field(
        default_factory=lambda: ["niqe", "brisque"], description="on the real LQ sets (and the test split)"
    )
    real_lq: list[RealSet] = Field(default_factory=list)
    baseline: bool = Field(True, description="also score the LQ input itself (the `input` row)")
    tile: int | None = Field(512, ge=8, description="inference tile size (none: whole images)")
    overlap: int = Field(32, ge=0)
    iqa_weights: Path | None = Field(None, description="local folder of pyiqa weights for pyiqa:NAME metrics")
    sample_images: int = Field(2, ge=0, description="test images shown side by side in the HTML page")

    @model_validator(mode="after")
    def _check(self) -> EvalSettings:
        if not self.fr_metrics and not self.nr_metrics:
            raise ValueError("give at least one metric (fr_metrics or nr_metrics)")
        names = [r.name for r in self.real_lq]
        if len(set(names)) != len(names) or "test" in names:
            raise ValueError("real_lq names must be unique and not 'test'")
        return self


class ExperimentConfig(_Strict):
    """Train one architecture on (a) synthetic pairs and (b) a GGT export, then score both the same way."""

    name: str = Field("ggt_vs_synthetic", pattern=r"^[A-Za-z0-9_.-]+$")
    out: Path = Field(description="the experiment's folder: data/, train/, eval/, report files")
    ggt: Path = Field(description="the GGT export (folder, parquet, hf or webdataset)")
    train_split: str = "train"
    test_split: str = "test"
    arch: ArchConfig
    train: dict[str, Any] = Field(
        default_factory=dict,
        description="TrainConfig settings shared by both arms (iterations, crop, batch, losses, optimizer,"
        " scheduler, ema, seed, device, ...); name, output, arch and datasets are set per arm",
    )
    synthetic: SyntheticConfig = Field(default_factory=SyntheticConfig)
    eval: EvalSettings = Field(default_factory=EvalSettings)
    device: str = Field("auto", description="for evaluation; training follows train.device")

    @model_validator(mode="after")
    def _train_settings(self) -> ExperimentConfig:
        clash = sorted(set(self.train) & set(_ARM_KEYS))
        if clash:
            raise ValueError(f"train: {', '.join(clash)} are set by the experiment for each arm; remove them")
        self.train_config("check", Path("."))  # reject unknown or bad training keys now, not after hours
        return self

    def train_config(self, arm: str, data: Path) -> Any:
        """The TrainConfig of one arm."""
        from ggt.restore.train_config import TrainConfig

        raw = {**self.train, "name": arm, "output": str(self.out / "train"), "arch": self.arch.model_dump(),
               "datasets": {"train": {"path": str(data), "split": self.train_split}}}  # fmt: skip
        try:
            return TrainConfig.model_validate(raw)
        except ValidationError as exc:
            msgs = "; ".join(
                f"train.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                for e in exc.errors(include_url=False)
            )
            raise ValueError(msgs) from None


def load_experiment_config(path: Path | None, overrides: list[str] | None = None) -> ExperimentConfig:
    """A YAML file, then `--set key=value` overrides."""
    raw: dict[str, Any] = {}
    sources = []
    if path is not None:
        raw = _read_yaml(Path(path))
        sources.append(str(path))
    if overrides:
        raw = _deep_merge(raw, parse_overrides(overrides))
        sources.append("--set")
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, " + ".join(sources) or "config")) from None


def experiment_config_schema() -> str:
    schema = ExperimentConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "ggt experiment configuration"
    return json.dumps(schema, indent=2)
