"""`ggt train`: paired-crop training of a spandrel architecture on a ggt export.

One process, or several under `torchrun` (DistributedDataParallel; only rank 0 writes). Output folder
`OUTPUT/NAME/`: `config.yaml` (resolved), `ckpt/iter_NNNNNN/` (see checkpoint.py), `train_log.csv`,
`val_log.csv`, `tb/` (TensorBoard). A rerun of the same config resumes from the newest checkpoint and
continues exactly: same iteration, learning rate, RNG states and data order.
"""

from __future__ import annotations

import csv
import fcntl
import math
import os
import random
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml
from pydantic import BaseModel

from ggt.progress import ProgressFn
from ggt.restore import ddp
from ggt.restore.arch import ArchConfig, build_arch, forward_padded
from ggt.restore.checkpoint import latest_checkpoint, load_training_state, save_checkpoint
from ggt.restore.data import TrainStream, val_dataset
from ggt.restore.ema import EMA
from ggt.restore.losses import build_losses, psnr, ssim
from ggt.restore.train_config import TrainConfig, load_train_config


class TrainError(RuntimeError):
    """Training cannot go on (non-finite loss or gradient, incompatible checkpoint)."""


class TrainRefused(TrainError, ValueError):
    """Refused before any work, a usage error (the CLI exits 2): the run is being trained by another
    process, or resuming it would change its architecture or data."""


LOCK_FILE = ".train.lock"


@contextmanager
def _run_lock(run_dir: Path, main: bool) -> Iterator[None]:
    """Hold the run's lock for the whole training: two trainings of one run interleaved their
    iterations in the logs and overwrote each other's checkpoints."""
    if not main:
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / LOCK_FILE, "a+", encoding="utf-8") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "?"
            raise TrainRefused(
                f"{run_dir} is being trained by another process (pid {holder}); wait for it, or give "
                "this one another name"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class TrainResult(BaseModel):
    run_dir: Path
    checkpoint: Path | None
    start_iteration: int
    iterations: int
    final_loss: float | None
    log_csv: Path
    val_csv: Path
    tensorboard: Path
    val: dict[str, float] | None = None
    interrupted: bool = False
    seconds: float = 0.0
    it_per_s: float = 0.0


def _device(cfg: TrainConfig, d: ddp.Dist) -> torch.device:
    if cfg.device == "auto":
        return torch.device(f"cuda:{d.local_rank}" if torch.cuda.is_available() else "cpu")
    dev = torch.device(cfg.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {cfg.device!r}: CUDA is not available here (use device: cpu or auto)")
    if dev.type == "cuda" and d.enabled:
        dev = torch.device(f"cuda:{d.local_rank}")
    return dev


def _amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    if device.type != "cuda" or cfg.amp == "off":
        return None
    if cfg.amp == "fp16":
        return torch.float16
    if cfg.amp == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def lr_factor(cfg: TrainConfig) -> Callable[[int], float]:
    """The learning-rate multiplier after `step` optimizer steps (LambdaLR's convention)."""
    s, total = cfg.scheduler, cfg.iterations
    floor = s.min_lr / cfg.optimizer.lr

    def f(step: int) -> float:
        if s.warmup and step < s.warmup:
            return (step + 1) / s.warmup
        if s.type == "cosine":
            t = min(1.0, (step - s.warmup) / max(1, total - s.warmup))
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))
        if s.type == "multistep":
            return s.gamma ** sum(step >= m for m in s.milestones)
        return 1.0

    return f


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": list(random.getstate()),
    }


def _set_rng_state(s: dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    if s["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])
    n = s["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), *n[2:]))
    py = s["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))


class _StopFlag:
    """Ctrl+C / SIGTERM ask the loop to save and stop at the end of the current iteration; a second
    Ctrl+C interrupts at once."""

    def __init__(self) -> None:
        self.set = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.set and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.set = True

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _diagnose(
    iteration: int, loss_names: list[str], vals: list[float], batch_names: list[str], model: Any
) -> str:
    """Which loss (or gradient) went non-finite: `vals` is [total, grad_norm, parts sum, *parts]."""
    where = f"at iteration {iteration}"
    parts = [f"loss '{n}' = {v}" for n, v in zip(loss_names, vals[3:], strict=True) if not math.isfinite(v)]
    if parts:
        msg = f"non-finite {', '.join(parts)} {where}"
    elif not math.isfinite(vals[0]):
        msg = f"non-finite total loss = {vals[0]} {where}"
    else:
        grads = [
            n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()
        ]
        first = grads[0] if grads else "?"
        msg = f"non-finite gradient (norm = {vals[1]}) {where}, first in parameter {first}"
    return f"{msg}; batch: {', '.join(batch_names[:8])}. Nothing was saved after the last checkpoint."


def train(
    config: TrainConfig | Path | str,
    *,
    resume: bool = True,
    progress: ProgressFn | None = None,
    overrides: list[str] | None = None,
    batch_hook: Callable[[int, dict[str, Any]], dict[str, Any]] | None = None,
    stop_after: int | None = None,
) -> TrainResult:
    """Train (or resume) the run a config describes; returns where its last checkpoint is.

    `batch_hook(iteration, batch)` may replace a batch (tests poison one with it); `stop_after` ends the
    call after that iteration as Ctrl+C would (with a checkpoint)."""
    if isinstance(config, TrainConfig):
        cfg = load_train_config(None, overrides, data=config.model_dump(mode="json")) if overrides else config
    else:
        cfg = load_train_config(Path(config), overrides)
    d = ddp.setup(cfg.device)
    finished = False
    try:
        with _run_lock(cfg.run_dir, d.main):
            result = _train(cfg, d, resume, progress, batch_hook, stop_after)
        finished = True
        return result
    finally:
        ddp.teardown(d, finished)


def _check_resume(cfg: TrainConfig, latest: Path, state: dict[str, Any], saved_config: Path) -> None:
    """Resuming continues the same training: the same architecture, on the same data."""
    saved = ArchConfig.model_validate(state["arch"])
    if saved != cfg.arch:
        raise TrainRefused(
            f"{latest}: checkpoint is a {saved.model_dump()} but the config asks for {cfg.arch.model_dump()};"
            " use --no-resume or another name"
        )
    try:
        before = yaml.safe_load(saved_config.read_text(encoding="utf-8")).get("datasets")
    except (OSError, AttributeError, yaml.YAMLError):
        return  # no readable record of the earlier data: nothing to compare
    now_data = cfg.model_dump(mode="json")["datasets"]
    if before is not None and before != now_data:
        raise TrainRefused(
            f"{latest}: the first {state['iteration']} iterations trained on {before}, the config now "
            f"names {now_data}; resuming would mix the two without a record: use --no-resume or another name"
        )


def _train(
    cfg: TrainConfig,
    d: ddp.Dist,
    resume: bool,
    progress: ProgressFn | None,
    batch_hook: Callable[[int, dict[str, Any]], dict[str, Any]] | None,
    stop_after: int | None,
) -> TrainResult:
    device = _device(cfg, d)
    run_dir = cfg.run_dir
    ckpt_root, log_csv, val_csv, tb_dir = (
        run_dir / "ckpt",
        run_dir / "train_log.csv",
        run_dir / "val_log.csv",
        run_dir / "tb",
    )
    if cfg.cpu_threads:
        torch.set_num_threads(cfg.cpu_threads)
    if cfg.deterministic:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    latest = latest_checkpoint(ckpt_root) if resume else None
    # Checked before the run's config.yaml is rewritten: a refused resume must leave it as it was.
    state = load_training_state(latest) if latest is not None else None
    if state is not None:
        _check_resume(cfg, latest, state, run_dir / "config.yaml")
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    model = build_arch(cfg.arch).to(device)
    ema = EMA(model, cfg.ema) if cfg.ema and d.main else None
    opt = torch.optim.AdamW(
        model.parameters(),
        lr=cfg.optimizer.lr,
        betas=cfg.optimizer.betas,
        weight_decay=cfg.optimizer.weight_decay,
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(cfg))
    amp = _amp_dtype(cfg, device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp is torch.float16)
    losses = build_losses(cfg.losses).to(device)
    loss_names = list(losses.names)

    start = 0
    if state is not None:
        model.load_state_dict(state["model"])
        if ema is not None:
            ema.load_state_dict(state["ema"] if state.get("ema") is not None else state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        start = int(state["iteration"])
        rng = state["rng"][d.rank] if d.rank < len(state["rng"]) else None
        if rng is not None:
            _set_rng_state(rng)
    else:
        torch.manual_seed(cfg.seed + 1 + d.rank)  # dropout / drop-path differ per rank
        random.seed(cfg.seed + d.rank)
        np.random.seed(cfg.seed + d.rank)

    net: Any = model
    if d.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)

    stream = TrainStream(
        cfg.datasets.train, crop=cfg.crop, flips=cfg.flips, rot90=cfg.rot90, batch=cfg.batch, seed=cfg.seed,
        rank=d.rank, world=d.world, start_batch=start * cfg.grad_accum,
    )  # fmt: skip
    loader = torch.utils.data.DataLoader(
        stream, batch_size=cfg.batch, num_workers=cfg.num_workers, pin_memory=device.type == "cuda",
        prefetch_factor=4 if cfg.num_workers else None, persistent_workers=False,
        worker_init_fn=_quiet_worker if cfg.num_workers else None,
    )  # fmt: skip
    val_set = val_dataset(cfg.datasets.val) if (d.main and cfg.datasets.val is not None) else None
    # Only now, with the model and the data opened: a config that cannot train leaves no record.
    if d.main:
        if not resume:
            for p in (ckpt_root, tb_dir):
                shutil.rmtree(p, ignore_errors=True)
            for p in (log_csv, val_csv):
                p.unlink(missing_ok=True)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(
            yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), encoding="utf-8"
        )
    if d.enabled:
        dist.barrier()

    writer = None
    log_rows: list[list[Any]] = []
    if d.main:
        _truncate_csv(log_csv, start)
        _truncate_csv(val_csv, start)
        try:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(tb_dir), purge_step=start + 1 if start else None)
        except ImportError:  # tensorboard is optional: the CSV logs are always written
            writer = None

    def weights() -> dict[str, torch.Tensor]:
        return ema.state_dict() if ema is not None else model.state_dict()

    def save(iteration: int) -> Path | None:
        rngs: list[Any] = [_rng_state()]
        if d.enabled:
            rngs = [None] * d.world
            dist.all_gather_object(rngs, _rng_state())
        if not d.main:
            return None
        state = {
            "iteration": iteration, "arch": cfg.arch.model_dump(), "model": model.state_dict(),
            "ema": ema.state_dict() if ema is not None else None, "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(), "scaler": scaler.state_dict(), "rng": rngs,
            "world": d.world, "seed": cfg.seed,
        }  # fmt: skip
        return save_checkpoint(ckpt_root, iteration, cfg.arch, weights(), state, ema=ema is not None,
                               keep=cfg.keep_checkpoints)  # fmt: skip

    def validate(iteration: int) -> dict[str, float]:
        vmodel = ema.model if ema is not None else model
        was_training = vmodel.training
        vmodel.eval()
        ps, ss = [], []
        n = len(val_set) if cfg.val_max_images is None else min(len(val_set), cfg.val_max_images)
        with torch.no_grad():
            for i in range(n):
                s = val_set[i]
                lq, gt = s["lq"][None].to(device), s["gt"][None].to(device)
                pred = forward_padded(vmodel, lq, cfg.arch.pad_multiple, cfg.arch.scale).float().clamp(0, 1)
                ps.append(float(psnr(pred, gt)))
                if min(gt.shape[-2:]) >= 11:
                    ss.append(float(ssim(pred, gt)))
        vmodel.train(was_training)
        out = {
            "psnr": float(np.mean(ps)) if ps else float("nan"),
            "ssim": float(np.mean(ss)) if ss else float("nan"),
        }
        _append_csv(
            val_csv, ["iteration", "psnr", "ssim", "images"], [[iteration, out["psnr"], out["ssim"], n]]
        )
        if writer is not None:
            for k, v in out.items():
                writer.add_scalar(f"val/{k}", v, iteration)
        return out

    header = ["iteration", "lr", "loss", *loss_names, "grad_norm", "seconds"]
    last_ckpt = latest
    last_val: dict[str, float] | None = None
    last_losses: list[float] = []
    data_iter = iter(loader)
    model.train()
    t0 = time.perf_counter()
    it = start
    interrupted = False
    check_grads = amp is not torch.float16  # the fp16 scaler skips steps with inf gradients by design
    with _StopFlag() as stop:
        for it in range(start + 1, cfg.iterations + 1):
            batch_names: list[str] = []
            total = torch.zeros((), device=device)
            part_sums = torch.zeros(len(loss_names), device=device)
            for micro in range(cfg.grad_accum):
                batch = next(data_iter)
                if batch_hook is not None:
                    batch = batch_hook(it, batch)
                batch_names += list(batch["name"])
                lq = batch["lq"].to(device, non_blocking=True)
                gt = batch["gt"].to(device, non_blocking=True)
                sync = micro == cfg.grad_accum - 1 or not d.enabled
                ctx = net.no_sync() if not sync else _null()
                with ctx:
                    with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                        pred = forward_padded(net, lq, cfg.arch.pad_multiple, cfg.arch.scale)
                        loss, parts = losses(pred.float(), gt)
                    scaler.scale(loss / cfg.grad_accum).backward()
                total = total + loss.detach() / cfg.grad_accum
                part_sums = (
                    part_sums + torch.stack([p.detach().float() for p in parts.values()]) / cfg.grad_accum
                )
            scaler.unscale_(opt)
            max_norm = cfg.optimizer.grad_clip or float("inf")
            gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm, foreach=True)
            # One host sync per iteration: loss, grad norm and the parts come back together.
            flags = torch.stack(
                [total.float(), gnorm.float() if check_grads else total.float(), part_sums.sum()]
            )
            vals = torch.cat([flags, part_sums]).tolist()
            bad = not all(math.isfinite(v) for v in vals[:3])
            stop_now = stop.set or (stop_after is not None and it >= stop_after)
            if d.enabled:
                t = torch.tensor([float(bad), float(stop_now)], device=device)
                dist.all_reduce(t, op=dist.ReduceOp.MAX)
                bad, stop_now = bool(t[0]), bool(t[1])
            if bad:
                raise TrainError(_diagnose(it, loss_names, vals, batch_names, model))
            scaler.step(opt)
            scaler.update()
            opt.zero_grad(set_to_none=True)
            sched.step()
            if ema is not None:
                ema.update(model)
            last_losses.append(vals[0])
            del last_losses[: -cfg.log_every]
            if d.main:
                if it % cfg.log_every == 0 or it == cfg.iterations:
                    lr = opt.param_groups[0]["lr"]
                    log_rows.append([it, lr, vals[0], *vals[3:], vals[1], round(time.perf_counter() - t0, 3)])
                    if writer is not None:
                        writer.add_scalar("train/loss", vals[0], it)
                        writer.add_scalar("train/lr", lr, it)
                        for n, v in zip(loss_names, vals[3:], strict=True):
                            writer.add_scalar(f"train/{n}", v, it)
                    if len(log_rows) >= 50:  # file writes batched: cheap even at log_every 1
                        _append_csv(log_csv, header, log_rows)
                        log_rows = []
                if cfg.val_every and it % cfg.val_every == 0 and val_set is not None:
                    last_val = validate(it)
                if progress is not None:
                    progress(it, cfg.iterations)
            if (cfg.checkpoint_every and it % cfg.checkpoint_every == 0) or stop_now or it == cfg.iterations:
                if d.main:
                    _append_csv(log_csv, header, log_rows)
                    log_rows = []
                    if writer is not None:
                        writer.flush()
                last_ckpt = save(it) or last_ckpt
            if stop_now:
                interrupted = it < cfg.iterations
                break
    if d.main:
        _append_csv(log_csv, header, log_rows)
        if (
            val_set is not None
            and not interrupted
            and it == cfg.iterations
            and (not cfg.val_every or it % cfg.val_every)
        ):
            last_val = validate(it)
        if writer is not None:
            writer.close()
    secs = time.perf_counter() - t0
    done = it - start
    return TrainResult(
        run_dir=run_dir, checkpoint=last_ckpt, start_iteration=start, iterations=it,
        final_loss=float(np.mean(last_losses)) if last_losses else None, log_csv=log_csv, val_csv=val_csv,
        tensorboard=tb_dir, val=last_val, interrupted=interrupted, seconds=round(secs, 3),
        it_per_s=round(done / secs, 3) if secs > 0 and done else 0.0,
    )  # fmt: skip


def _quiet_worker(_: int) -> None:
    # Ctrl+C in a terminal reaches the whole process group: workers must keep feeding the main process
    # while it finishes the iteration and saves (it stops them itself).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _truncate_csv(path: Path, upto: int) -> None:
    """Drop rows past `upto` (a killed run logged iterations its last checkpoint does not have)."""
    if not path.exists():
        return
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        return
    keep = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= upto]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(keep)


def _append_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    if not rows:
        return
    new = not path.exists() or path.stat().st_size == 0
    with open(path, "a", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        if new:
            w.writerow(header)
        w.writerows(rows)
