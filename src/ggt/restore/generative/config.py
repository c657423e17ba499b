"""The fine-tuning configuration: one YAML file (``ggt finetune --config FILE``), validated strictly."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from ggt.config import ConfigError, _deep_merge, _read_yaml, format_validation_error, parse_overrides

FinetunePipeline = Literal["instruct-pix2pix", "image-to-image", "kontext", "qwen-edit"]

DEFAULT_INSTRUCTION = (
    "Restore this photo: remove the degradations (noise, blur, compression artifacts, haze, rain, low light) "
    "and keep the content, composition and colours unchanged."
)

# Attention projections are where a LoRA on a diffusion denoiser usually goes: small, and they steer what
# the model attends to. The transformer families add their text-stream (context) projections.
DEFAULT_TARGETS: dict[str, list[str]] = {
    "instruct-pix2pix": ["to_q", "to_k", "to_v", "to_out.0"],
    "image-to-image": ["to_q", "to_k", "to_v", "to_out.0"],
    "kontext": ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"],
    "qwen-edit": ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"],
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoraSettings(_Strict):
    """The LoRA adapter put on the denoiser (UNet or transformer)."""

    rank: int = Field(default=16, ge=1, le=1024, description="LoRA rank r")
    alpha: float | None = Field(default=None, gt=0, description="LoRA alpha; None: equal to rank (scale 1)")
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0, description="dropout on the LoRA branch")
    target_modules: list[str] | None = Field(
        default=None,
        min_length=1,
        description="module names to adapt; None: the family's attention projections",
    )


class DataSettings(_Strict):
    """Where the pairs come from and how they are cut to the training resolution."""

    path: Path = Field(description="a ggt export (folder, webdataset, parquet or hf)")
    split: str = Field(default="train", min_length=1, description="split trained on")
    validation_split: str | None = Field(
        default="test", description="split the validation pairs come from; falls back to the training split"
    )
    prompt: Literal["pair", "fixed"] = Field(
        default="pair", description="pair: each pair's exported prompt (fixed text where it has none); fixed"
    )
    fixed_prompt: str = Field(default=DEFAULT_INSTRUCTION, min_length=1, description="the fixed instruction")
    num_workers: int = Field(default=0, ge=0, le=64, description="DataLoader worker processes")


class FinetuneConfig(_Strict):
    """LoRA fine-tuning of a diffusers editing pipeline on a ggt export."""

    model: str = Field(min_length=1, description="local pipeline folder, or a hub id already in the HF cache")
    pipeline: FinetunePipeline = Field(description="pipeline family; decides the objective and conditioning")
    local_files_only: bool = Field(default=True, description="never reach the hub (no downloads)")
    output_dir: Path = Field(description="checkpoints, the final LoRA, validation grids and the log")
    data: DataSettings
    lora: LoraSettings = Field(default_factory=LoraSettings)
    resolution: int = Field(default=512, ge=16, le=4096, description="square training crop side (pixels)")
    batch_size: int = Field(default=1, ge=1, le=1024, description="pairs per micro-batch per process")
    grad_accum: int = Field(default=1, ge=1, le=1024, description="micro-batches per optimizer step")
    steps: int = Field(default=1000, ge=1, description="optimizer steps in all")
    lr: float = Field(default=1e-4, gt=0, le=1.0, description="AdamW learning rate")
    lr_scheduler: Literal["constant", "cosine", "linear"] = "constant"
    warmup_steps: int = Field(default=0, ge=0)
    weight_decay: float = Field(default=1e-2, ge=0.0)
    max_grad_norm: float | None = Field(default=1.0, gt=0, description="gradient clipping; None: off")
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        default="auto", description="auto: bf16 on CUDA, none on CPU; bf16/fp16 need CUDA"
    )
    gradient_checkpointing: bool = False
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="auto: cuda when available")
    seed: int = Field(default=0, ge=0)
    checkpoint_every: int = Field(default=500, ge=1, description="save LoRA + training state every N steps")
    keep_checkpoints: int = Field(default=3, ge=1, description="older checkpoints are deleted")
    validation_every: int = Field(default=0, ge=0, description="validation grid every N steps; 0: off")
    validation_images: int = Field(default=4, ge=1, le=64)
    validation_steps: int = Field(default=20, ge=1, le=1000, description="denoising steps of validation")
    guidance_scale: float | None = Field(
        default=None, ge=0.0, description="validation text guidance; FLUX Kontext's distilled guidance input"
    )
    conditioning_dropout: float = Field(
        default=0.0, ge=0.0, lt=1.0, description="InstructPix2Pix: drop text / image condition (for CFG)"
    )
    timestep_sampling: Literal["logit-normal", "uniform"] = Field(
        default="logit-normal", description="flow-matching families: how noise levels are drawn"
    )
    max_sequence_length: int = Field(default=512, ge=8, le=4096, description="T5 / LLM prompt tokens")
    memory_margin: float = Field(
        default=0.9, gt=0, le=1.0, description="CUDA: the estimate must fit in this fraction of free memory"
    )

    # Field validators (not a model validator) so an error names its key instead of dumping the whole file.
    @field_validator("resolution")
    @classmethod
    def _resolution(cls, v: int, info: ValidationInfo) -> int:
        pipeline = info.data.get("pipeline")
        mult = 16 if pipeline in ("kontext", "qwen-edit") else 8
        if v % mult:
            raise ValueError(f"must be a multiple of {mult} for {pipeline}")
        return v

    @field_validator("conditioning_dropout")
    @classmethod
    def _dropout(cls, v: float, info: ValidationInfo) -> float:
        if v and info.data.get("pipeline") != "instruct-pix2pix":
            raise ValueError("applies to instruct-pix2pix only")
        return v

    def target_modules(self) -> list[str]:
        return list(self.lora.target_modules or DEFAULT_TARGETS[self.pipeline])

    def identity(self) -> dict[str, Any]:
        """What a checkpoint must share with the config resuming it (steps and cadences may change)."""
        return self.model_dump(
            mode="json",
            include={
                "model",
                "pipeline",
                "data",
                "lora",
                "resolution",
                "batch_size",
                "grad_accum",
                "lr",
                "lr_scheduler",
                "warmup_steps",
                "weight_decay",
                "seed",
                "timestep_sampling",
                "conditioning_dropout",
            },
        )


def load_finetune_config(path: Path | None = None, overrides: list[str] | None = None) -> FinetuneConfig:
    """The YAML file, then ``--set`` overrides (``lora.rank=8``); errors name the file and key."""
    data: dict[str, Any] = _read_yaml(path) if path else {}
    sources = [str(path)] if path else []
    if overrides:
        data = _deep_merge(data, parse_overrides(overrides))
        sources.append("--set")
    source = " + ".join(sources) or "defaults"
    try:
        return FinetuneConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def dump_finetune_config(cfg: FinetuneConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


__all__ = [
    "DEFAULT_INSTRUCTION",
    "DataSettings",
    "FinetuneConfig",
    "FinetunePipeline",
    "LoraSettings",
    "dump_finetune_config",
    "load_finetune_config",
]
