"""Generative restoration: LoRA fine-tuning of diffusers editing pipelines on a ggt export.

``finetune(config)`` (``ggt finetune --config FILE``) trains a LoRA on the denoiser; the result loads as
the ``diffusers`` generator's ``lora`` option. torch, diffusers, peft and accelerate are imported when
``finetune`` runs, never at import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ggt.restore.generative.config import FinetuneConfig, load_finetune_config
from ggt.restore.generative.memory import InsufficientMemoryError, MemoryPlan, check_fits, plan_memory

if TYPE_CHECKING:
    from ggt.restore.generative.train import FinetuneError, FinetuneResult, finetune


def __getattr__(name: str) -> Any:
    if name in ("finetune", "FinetuneResult", "FinetuneError", "run_finetune"):
        from ggt.restore.generative import train

        return getattr(train, name)
    raise AttributeError(name)


__all__ = [
    "FinetuneConfig",
    "FinetuneError",
    "FinetuneResult",
    "InsufficientMemoryError",
    "MemoryPlan",
    "check_fits",
    "finetune",
    "load_finetune_config",
    "plan_memory",
]
