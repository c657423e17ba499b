"""The fine-tuning loop: LoRA (peft) on the denoiser of a diffusers editing pipeline, run by accelerate.

Output folder::

    OUT/config.yaml                               the resolved configuration
    OUT/pytorch_lora_weights.safetensors          the latest LoRA (diffusers' load_lora_weights format)
    OUT/checkpoints/step-0000500/                 pytorch_lora_weights.safetensors + training_state.pt
    OUT/validation/step-0000500.png               rows of LQ | output | GT
    OUT/log.jsonl                                 one line per optimizer step: step, loss, lr

A checkpoint folder is written under a temporary name and renamed when complete, so a run killed at any
moment resumes from the last complete one, at the same step, with the same next batch and loss.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from ggt.config import ConfigError
from ggt.progress import ProgressFn
from ggt.restore.generative.config import FinetuneConfig, dump_finetune_config, load_finetune_config
from ggt.restore.generative.memory import MemoryPlan, check_fits, denoiser_blocks, plan_memory

LORA_FILE = "pytorch_lora_weights.safetensors"
STATE_FILE = "training_state.pt"


class FinetuneError(ValueError):
    """A fine-tuning run that cannot start or go on; the message says why."""


class FinetuneResult(BaseModel):
    output_dir: str
    lora: str
    pipeline: str
    steps: int
    start_step: int = 0
    resumed_from: str | None = None
    losses: list[float] = Field(default_factory=list, description="per optimizer step run in this call")
    checkpoints: list[str] = Field(default_factory=list)
    validation: list[str] = Field(default_factory=list)
    plan: MemoryPlan
    pairs: int = 0
    processes: int = 1
    fixed_prompts: int = 0
    seconds: float = 0.0
    steps_per_second: float | None = None
    peak_memory: int | None = None
    notes: list[str] = Field(default_factory=list)


def _require_extra() -> None:
    missing = []
    for mod in ("torch", "diffusers", "transformers", "peft", "accelerate", "safetensors"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        raise FinetuneError(f"fine-tuning needs {', '.join(missing)}: pip install 'ggt[finetune]'")


def _seed_of(*parts: int) -> int:
    import numpy as np

    return int(np.random.SeedSequence(list(parts)).generate_state(1, dtype=np.uint64)[0] >> 1)


def _checkpoints(out: Path) -> list[Path]:
    root = out / "checkpoints"
    if not root.is_dir():
        return []
    done = [
        p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and (p / STATE_FILE).exists()
    ]
    return sorted(done, key=lambda p: int(p.name.split("-")[1]))


def _load_pipeline(cfg: FinetuneConfig, dtype: Any) -> Any:
    import diffusers

    from ggt.generate.diffusers_gen import _PIPELINE_CLASSES, _resolve_model

    source = _resolve_model(cfg.model, cfg.local_files_only)
    cls = getattr(diffusers, _PIPELINE_CLASSES[cfg.pipeline])
    new_kw = tuple(int(p) for p in diffusers.__version__.split(".")[:2] if p.isdigit()) >= (0, 42)
    kw = {"dtype" if new_kw else "torch_dtype": dtype}
    try:
        pipe = cls.from_pretrained(source, local_files_only=cfg.local_files_only, **kw)
    except (OSError, ValueError) as e:
        raise FinetuneError(f"cannot load {cfg.model!r} as pipeline {cfg.pipeline}: {e}") from e
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _denoiser_name(pipe: Any) -> str:
    if getattr(pipe, "transformer", None) is not None:
        return "transformer"
    if getattr(pipe, "unet", None) is not None:
        return "unet"
    raise FinetuneError(f"{type(pipe).__name__} has neither a UNet nor a transformer to adapt")


def _frozen_modules(pipe: Any) -> list[Any]:
    import torch

    return [m for m in pipe.components.values() if isinstance(m, torch.nn.Module)]


def save_lora(pipe: Any, denoiser: Any, name: str, folder: Path) -> Path:
    """Write the denoiser's LoRA in the format ``pipe.load_lora_weights(folder)`` reads."""
    import inspect

    from peft.utils import get_peft_model_state_dict

    # peft's own key names (lora_A / lora_B), which every diffusers LoRA loader reads for UNets and
    # transformers alike. (convert_state_dict_to_diffusers renames only the attention layers, and a file
    # mixing both namings loads only partly.)
    sd = get_peft_model_state_dict(denoiser)
    kw: dict[str, Any] = {f"{name}_lora_layers": sd}
    params = inspect.signature(type(pipe).save_lora_weights).parameters
    if f"{name}_lora_adapter_metadata" in params:
        # Rank and alpha travel in the file's metadata, so a loader scales the LoRA as it was trained.
        kw[f"{name}_lora_adapter_metadata"] = denoiser.peft_config["default"].to_dict()
    type(pipe).save_lora_weights(str(folder), safe_serialization=True, **kw)
    return folder / LORA_FILE


def load_lora_into(denoiser: Any, name: str, file: Path) -> None:
    """Load a LoRA file written by ``save_lora`` into the denoiser's (already added) adapter, exactly."""
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    raw = load_file(str(file))
    prefix = f"{name}."
    sd = {k[len(prefix) :]: v for k, v in raw.items() if k.startswith(prefix)}
    res = set_peft_model_state_dict(denoiser, sd, adapter_name="default")
    unexpected = getattr(res, "unexpected_keys", None)
    if unexpected:
        raise FinetuneError(
            f"{file}: {len(unexpected)} LoRA keys do not match the model (e.g. {unexpected[0]})"
        )


def _rng_state() -> dict[str, Any]:
    import numpy as np
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _grid(rows: list[tuple[Any, Any, Any]]) -> Any:
    """LQ | output | GT per row, float32 HxWx3 in [0, 1], with a 2-pixel white gutter."""
    import numpy as np

    gap = 2
    h, w = rows[0][0].shape[:2]
    out = np.ones((len(rows) * (h + gap) - gap, 3 * (w + gap) - gap, 3), dtype=np.float32)
    for r, imgs in enumerate(rows):
        for c, img in enumerate(imgs):
            out[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = img[:h, :w]
    return out


def _validate(pipe: Any, cfg: FinetuneConfig, pairs: list[tuple[Any, Any, str]], path: Path) -> Path:
    import inspect

    import numpy as np
    import torch
    from PIL import Image

    from ggt.fsutil import write_bytes_atomic
    from ggt.imaging import encode_image

    accepted = inspect.signature(pipe.__call__).parameters
    rows = []
    for lq, gt, prompt in pairs:
        pil = Image.fromarray((lq * 255.0 + 0.5).astype(np.uint8))
        kw: dict[str, Any] = {
            "image": pil, "prompt": prompt, "num_inference_steps": cfg.validation_steps,
            "generator": torch.Generator("cpu").manual_seed(cfg.seed), "output_type": "np",
            "guidance_scale": cfg.guidance_scale, "height": cfg.resolution, "width": cfg.resolution,
            # Kontext rescales to about 1 MP unless told the area and not to resize.
            "max_area": cfg.resolution * cfg.resolution, "_auto_resize": False,
            "max_sequence_length": min(cfg.max_sequence_length, 512),
        }  # fmt: skip
        kw = {k: v for k, v in kw.items() if k in accepted and v is not None}
        with torch.inference_mode():
            img = pipe(**kw).images[0]
        res = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)
        if res.shape[:2] != lq.shape[:2]:
            import cv2

            res = cv2.resize(res, (lq.shape[1], lq.shape[0]), interpolation=cv2.INTER_AREA)
        rows.append((lq, res, gt))
    grid = _grid(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, encode_image((grid * 255.0 + 0.5).astype(np.uint8), "png"), fsync=False)
    return path


class _Batches:
    """Batch sampler: global micro-batches ``first``.. as (index, position) lists for one process."""

    def __init__(
        self, n: int, cfg: FinetuneConfig, first: int, last: int, process: int, processes: int
    ) -> None:
        self.n, self.cfg, self.first, self.last = n, cfg, first, last
        self.process, self.processes = process, processes

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        from ggt.restore.generative.data import batch_indices

        for mb in range(self.first, self.last):
            yield batch_indices(self.n, self.cfg.seed, mb, self.process, self.processes, self.cfg.batch_size)

    def __len__(self) -> int:
        return self.last - self.first


def finetune(
    config: FinetuneConfig | Path | str,
    *,
    resume: bool = True,
    progress: ProgressFn | None = None,
    log: Callable[[str], None] | None = None,
    overrides: list[str] | None = None,
) -> FinetuneResult:
    """Fine-tune a LoRA on the denoiser of ``config.model`` with the pairs of ``config.data.path``.

    With ``resume`` (the default) a run whose ``output_dir`` holds checkpoints continues from the latest
    one (same configuration required, except steps and cadences); without it, existing checkpoints are an
    error. ``log`` receives human-readable lines (the memory plan first); ``progress(step, steps)`` is
    called after each optimizer step.
    """
    if isinstance(config, FinetuneConfig):
        if overrides:
            raise ValueError("overrides apply to a config file; change the FinetuneConfig object instead")
        cfg = config
    else:
        cfg = load_finetune_config(Path(config), overrides)
    say = log or (lambda line: None)
    _require_extra()
    import torch
    from accelerate import Accelerator
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import cast_training_params
    from peft import LoraConfig

    from ggt.restore.generative.data import CropDataset, ExportPairs, collate, square_crop
    from ggt.restore.generative.objectives import OBJECTIVES

    device = cfg.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda, but no CUDA GPU is visible")
    mp = cfg.mixed_precision
    if mp == "auto":
        mp = "bf16" if device == "cuda" else "no"
    if mp != "no" and device != "cuda":
        raise ConfigError(f"mixed_precision: {mp} needs a CUDA GPU; use mixed_precision: no (or auto) on CPU")
    out = cfg.output_dir
    existing = _checkpoints(out)
    if existing and not resume:
        raise FinetuneError(
            f"{out} already holds checkpoints ({existing[-1].name}); resume, or pick another output_dir"
        )

    accelerator = Accelerator(
        mixed_precision=mp, gradient_accumulation_steps=cfg.grad_accum, cpu=device == "cpu"
    )
    main = accelerator.is_main_process
    weight_dtype = {"no": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[mp]

    pairs = ExportPairs(cfg.data.path, cfg.data.split, cfg.data.prompt, cfg.data.fixed_prompt)
    if len(pairs) == 0:
        raise FinetuneError(f"{cfg.data.path} has no pairs in split {cfg.data.split!r}")
    fixed = pairs.missing_prompts()
    notes = []
    if fixed:
        notes.append(f"{fixed} of {len(pairs)} pairs have no exported prompt: they use the fixed instruction")
    val_pairs = pairs
    if cfg.validation_every and cfg.data.validation_split and cfg.data.validation_split != cfg.data.split:
        try:
            candidate = ExportPairs(
                cfg.data.path, cfg.data.validation_split, cfg.data.prompt, cfg.data.fixed_prompt
            )
            if len(candidate):
                val_pairs = candidate
        except (ValueError, FileNotFoundError):
            notes.append(f"no split {cfg.data.validation_split!r}: validation uses training pairs")

    pipe = _load_pipeline(cfg, weight_dtype)
    name = _denoiser_name(pipe)
    denoiser = getattr(pipe, name)
    for m in _frozen_modules(pipe):
        m.requires_grad_(False)
    lora_cfg = LoraConfig(
        r=cfg.lora.rank,
        lora_alpha=cfg.lora.alpha or cfg.lora.rank,
        lora_dropout=cfg.lora.dropout,
        init_lora_weights="gaussian",
        target_modules=cfg.target_modules(),
    )
    torch.manual_seed(_seed_of(cfg.seed, 1))  # the LoRA's random A matrices
    try:
        denoiser.add_adapter(lora_cfg)
    except ValueError as e:
        raise FinetuneError(f"lora.target_modules {cfg.target_modules()} do not fit the {name}: {e}") from e
    if cfg.gradient_checkpointing:
        denoiser.enable_gradient_checkpointing()
    cast_training_params(denoiser, dtype=torch.float32)
    trainable = [p for p in denoiser.parameters() if p.requires_grad]

    # Memory plan, before anything goes to the GPU.
    n_params = sum(p.numel() for m in _frozen_modules(pipe) for p in m.parameters())
    n_train = sum(p.numel() for p in trainable)
    text_tokens = cfg.max_sequence_length if name == "transformer" else 77
    kind = "unet" if name == "unet" else "transformer"
    plan = plan_memory(
        parameters=n_params, trainable=n_train,
        blocks=denoiser_blocks(kind, dict(denoiser.config), cfg.resolution, text_tokens),
        batch_size=cfg.batch_size, resolution=cfg.resolution,
        weight_bytes=torch.finfo(weight_dtype).bits // 8, gradient_checkpointing=cfg.gradient_checkpointing,
    )  # fmt: skip
    if device == "cuda":
        free, _total = torch.cuda.mem_get_info(accelerator.device)
        check_fits(plan, free, cfg.memory_margin)
    if main:
        for line in plan.lines():
            say(line)
        eff = cfg.batch_size * cfg.grad_accum * accelerator.num_processes
        say(
            f"{accelerator.num_processes} process(es) on {accelerator.device}, effective batch {eff}, {mp} precision"
        )

    pipe.to(accelerator.device)
    objective = OBJECTIVES[cfg.pipeline](pipe, cfg, accelerator.device, weight_dtype)
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = get_scheduler(
        cfg.lr_scheduler, optimizer=optimizer, num_warmup_steps=cfg.warmup_steps, num_training_steps=cfg.steps
    )
    model, optimizer = accelerator.prepare(denoiser, optimizer)

    start = 0
    resumed_from = None
    if existing:
        ck = existing[-1]
        state = torch.load(ck / STATE_FILE, map_location="cpu", weights_only=False)
        if state.get("identity") != cfg.identity():
            raise FinetuneError(
                f"{ck} was trained with another configuration; resume with the same model, data, LoRA, batch, "
                "learning-rate settings and seed (steps and cadences may change), or pick another output_dir"
            )
        load_lora_into(accelerator.unwrap_model(model), name, ck / LORA_FILE)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        start, resumed_from = int(state["step"]), str(ck)
        if main:
            say(f"resuming from {ck} at step {start}")
    if start >= cfg.steps:
        notes.append(f"already trained {start} steps (steps: {cfg.steps}); nothing to do")

    if main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(dump_finetune_config(cfg), encoding="utf-8")
        log_path = out / "log.jsonl"
        if log_path.exists():
            # Steps after the checkpoint were lost with the crash; their lines are rewritten by this run.
            kept = [ln for ln in log_path.read_text(encoding="utf-8").splitlines()
                    if ln.strip() and json.loads(ln)["step"] <= start]  # fmt: skip
            log_path.write_text("".join(k + "\n" for k in kept), encoding="utf-8")

    ds = CropDataset(pairs, cfg.resolution, cfg.seed, random_crop=True)
    sampler = _Batches(len(pairs), cfg, start * cfg.grad_accum, cfg.steps * cfg.grad_accum,
                       accelerator.process_index, accelerator.num_processes)  # fmt: skip
    loader = torch.utils.data.DataLoader(
        ds, batch_sampler=sampler, collate_fn=collate, num_workers=cfg.data.num_workers,
        persistent_workers=False,
    )  # fmt: skip

    val_set: list[tuple[Any, Any, str]] = []
    if cfg.validation_every and main:
        for i in range(min(cfg.validation_images, len(val_pairs))):
            _n, lq, gt, prompt = val_pairs.get(i)
            lq_c, gt_c = square_crop(lq, gt, cfg.resolution, None)
            val_set.append((lq_c, gt_c, prompt))

    result = FinetuneResult(
        output_dir=str(out), lora=str(out / LORA_FILE), pipeline=type(pipe).__name__, steps=cfg.steps,
        start_step=start, resumed_from=resumed_from, plan=plan, pairs=len(pairs), fixed_prompts=fixed,
        processes=accelerator.num_processes,
        notes=notes,
    )  # fmt: skip
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats(accelerator.device)
    started = time.time()
    step = start
    model.train()
    batches = iter(loader)
    micro_losses: list[Any] = []
    mb = start * cfg.grad_accum
    while step < cfg.steps:
        batch = next(batches)
        gen = torch.Generator("cpu").manual_seed(_seed_of(cfg.seed, 2, mb, accelerator.process_index))
        mb += 1
        with accelerator.accumulate(model):
            loss = objective.loss(model, batch, gen)
            if not torch.isfinite(loss):
                raise FinetuneError(
                    f"loss is {loss.item()} at step {step + 1}; lower lr, or use bf16 instead of fp16"
                )
            accelerator.backward(loss)
            micro_losses.append(loss.detach())
            if accelerator.sync_gradients and cfg.max_grad_norm:
                accelerator.clip_grad_norm_(trainable, cfg.max_grad_norm)
            optimizer.step()
            if accelerator.sync_gradients:
                scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        if not accelerator.sync_gradients:
            continue
        step += 1
        step_loss = float(accelerator.gather(torch.stack(micro_losses).mean().reshape(1)).mean())
        micro_losses = []
        result.losses.append(step_loss)
        if main:
            with open(out / "log.jsonl", "a", encoding="utf-8") as fh:
                fh.write(
                    json.dumps({"step": step, "loss": step_loss, "lr": scheduler.get_last_lr()[0]}) + "\n"
                )
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            accelerator.wait_for_everyone()
            if main:
                ck = _save_checkpoint(
                    pipe, accelerator.unwrap_model(model), name, optimizer, scheduler, cfg, step
                )
                result.checkpoints.append(str(ck))
            accelerator.wait_for_everyone()
        if cfg.validation_every and step % cfg.validation_every == 0:
            if main:
                model.eval()
                path = _validate(pipe, cfg, val_set, out / "validation" / f"step-{step:07d}.png")
                result.validation.append(str(path))
                model.train()
            accelerator.wait_for_everyone()
        if progress:
            progress(step, cfg.steps)
    elapsed = time.time() - started
    result.seconds = round(elapsed, 3)
    if step > start and elapsed > 0:
        result.steps_per_second = round((step - start) / elapsed, 4)
    if device == "cuda":
        result.peak_memory = int(torch.cuda.max_memory_allocated(accelerator.device))
    accelerator.end_training()
    return result


def _save_checkpoint(
    pipe: Any, denoiser: Any, name: str, optimizer: Any, scheduler: Any, cfg: FinetuneConfig, step: int
) -> Path:
    import torch

    out = cfg.output_dir
    root = out / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:07d}"
    tmp = root / f".step-{step:07d}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_lora(pipe, denoiser, name, tmp)
    state = {
        "step": step,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": _rng_state(),
        "identity": cfg.identity(),
    }
    torch.save(state, tmp / STATE_FILE)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    # The latest LoRA at the top of the output folder: what `--lora OUT` loads.
    shutil.copyfile(final / LORA_FILE, out / f".{LORA_FILE}.tmp")
    os.replace(out / f".{LORA_FILE}.tmp", out / LORA_FILE)
    for old in _checkpoints(out)[: -cfg.keep_checkpoints]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def run_finetune(config: Path, overrides: list[str] | None = None, **kw: Any) -> FinetuneResult:
    """``ggt finetune --config FILE --set k=v``: the file, then the overrides."""
    return finetune(load_finetune_config(config, overrides), **kw)


__all__ = ["FinetuneError", "FinetuneResult", "finetune", "load_lora_into", "run_finetune", "save_lora"]
