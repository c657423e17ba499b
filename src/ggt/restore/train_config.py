"""The training configuration (`ggt train --config FILE`): typed, unknown keys rejected, JSON Schema export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ggt.config import ConfigError, _deep_merge, _read_yaml, format_validation_error, parse_overrides
from ggt.restore.arch import ArchConfig
from ggt.restore.losses import LossConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Strict):
    path: Path = Field(description="an export folder (folder/parquet/hf, format detected) or webdataset tars")
    split: str = "train"
    format: Literal["auto", "folder", "parquet", "hf", "webdataset"] = "auto"
    shuffle_buffer: int = Field(1000, ge=0, description="webdataset only: shuffle buffer (samples)")


class DatasetsConfig(_Strict):
    train: DataConfig
    val: DataConfig | None = None


class OptimizerConfig(_Strict):
    type: Literal["adamw"] = "adamw"
    lr: float = Field(2e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float | None = Field(None, gt=0, description="max total gradient norm (none: no clipping)")


class SchedulerConfig(_Strict):
    type: Literal["cosine", "multistep", "constant"] = "cosine"
    warmup: int = Field(0, ge=0, description="iterations of linear warm-up")
    min_lr: float = Field(1e-7, ge=0, description="cosine: the last learning rate")
    milestones: list[int] = Field(default_factory=list, description="multistep: iterations where lr *= gamma")
    gamma: float = Field(0.5, gt=0)


class TrainConfig(_Strict):
    """One training run; `output` holds checkpoints, logs and the resolved config."""

    name: str = Field("train", pattern=r"^[A-Za-z0-9_.-]+$")
    output: Path = Field(Path("experiments"), description="runs go to OUTPUT/NAME/")
    arch: ArchConfig
    datasets: DatasetsConfig
    crop: int = Field(64, ge=8, description="LQ crop size (pixels a side)")
    batch: int = Field(8, ge=1, description="crops per step per process")
    flips: bool = True
    rot90: bool = True
    losses: list[LossConfig] = Field(default_factory=lambda: [LossConfig(type="l1")], min_length=1)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    iterations: int = Field(1000, ge=1)
    ema: float | None = Field(0.999, ge=0, lt=1, description="EMA decay (none: no EMA)")
    amp: Literal["auto", "bf16", "fp16", "off"] = Field(
        "auto", description="CUDA only; auto = bf16 if supported"
    )
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step")
    val_every: int = Field(0, ge=0, description="iterations between validations (0: never)")
    val_max_images: int | None = Field(None, ge=1)
    checkpoint_every: int = Field(
        500, ge=0, description="iterations between checkpoints (0: only at the end)"
    )
    keep_checkpoints: int | None = Field(None, ge=1, description="keep only the newest N (none: keep all)")
    log_every: int = Field(10, ge=1, description="iterations between CSV/TensorBoard loss rows")
    seed: int = 0
    num_workers: int = Field(2, ge=0)
    cpu_threads: int | None = Field(None, ge=1, description="torch intra-op threads (none: torch's default)")
    device: str = Field("auto", description="auto (cuda if available), cpu, cuda, cuda:1 ...")
    deterministic: bool = Field(False, description="cudnn deterministic algorithms (slower)")

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        s = self.scheduler
        if s.type == "multistep" and any(m <= 0 or m > self.iterations for m in s.milestones):
            raise ValueError(f"scheduler.milestones must lie in 1..iterations ({self.iterations})")
        if s.warmup >= self.iterations:
            raise ValueError("scheduler.warmup must be shorter than iterations")
        if self.val_every and self.datasets.val is None:
            raise ValueError("val_every is set but datasets.val is missing")
        return self

    @property
    def run_dir(self) -> Path:
        return self.output / self.name


def load_train_config(
    path: Path | None, overrides: list[str] | None = None, data: dict[str, Any] | None = None
) -> TrainConfig:
    """A YAML file (relative dataset/output paths resolve against the current folder), then `--set` overrides."""
    raw: dict[str, Any] = dict(data or {})
    sources = []
    if path is not None:
        raw = _deep_merge(raw, _read_yaml(Path(path)))
        sources.append(str(path))
    if overrides:
        raw = _deep_merge(raw, parse_overrides(overrides))
        sources.append("--set")
    source = " + ".join(sources) or "config"
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def train_config_schema() -> str:
    """JSON Schema of the training configuration, for editors."""
    schema = TrainConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "ggt training configuration"
    return json.dumps(schema, indent=2)
