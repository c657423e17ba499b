"""Checkpoints: a folder per save, and one loader for ggt checkpoints and community weights.

    OUT/ckpt/iter_000200/
      model.safetensors    the weights to use (EMA when EMA is on), metadata: ggt_arch, scale, iteration
      training_state.pt    raw weights, EMA, optimizer, scheduler, AMP scaler, RNG states, iteration

A folder is written as `iter_000200.tmp` and renamed when complete, so a kill mid-save leaves the previous
checkpoint as the latest one and never a half-written folder under the final name.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ggt.restore.arch import ArchConfig, build_arch

if TYPE_CHECKING:
    import torch

MODEL_FILE = "model.safetensors"
STATE_FILE = "training_state.pt"
_ITER_DIR = re.compile(r"^iter_(\d+)$")


class CheckpointError(ValueError):
    """A checkpoint or weights file that is missing, unreadable or not a model ggt can build."""


@dataclass
class LoadedModel:
    """A network ready for inference (eval mode) and what is known about it."""

    model: torch.nn.Module
    scale: int
    arch: dict[str, Any]
    source: str
    pad_multiple: int = 1
    iteration: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)


def checkpoint_name(iteration: int) -> str:
    return f"iter_{iteration:06d}"


def list_checkpoints(ckpt_root: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints under `ckpt_root`, oldest first."""
    found = []
    if ckpt_root.is_dir():
        for p in ckpt_root.iterdir():
            m = _ITER_DIR.match(p.name)
            if m and p.is_dir() and (p / MODEL_FILE).exists() and (p / STATE_FILE).exists():
                found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(ckpt_root: Path) -> Path | None:
    found = list_checkpoints(ckpt_root)
    return found[-1][1] if found else None


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_weights(
    path: Path, state: dict[str, torch.Tensor], arch: ArchConfig, iteration: int, ema: bool
) -> None:
    from safetensors.torch import save_file

    # safetensors refuses tensors that share storage; a clone per tensor is cheap at save time.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    meta = {
        "format": "pt",
        "ggt_arch": arch.to_json(),
        "scale": str(arch.scale),
        "iteration": str(iteration),
        "ema": "true" if ema else "false",
    }
    save_file(tensors, str(path), metadata=meta)


def save_checkpoint(
    ckpt_root: Path,
    iteration: int,
    arch: ArchConfig,
    weights: dict[str, torch.Tensor],
    training_state: dict[str, Any],
    *,
    ema: bool,
    keep: int | None = None,
) -> Path:
    """Write `ckpt_root/iter_NNNNNN/` atomically; `keep` prunes older checkpoints beyond that many."""
    import torch

    final = ckpt_root / checkpoint_name(iteration)
    tmp = ckpt_root / (final.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_weights(tmp / MODEL_FILE, weights, arch, iteration, ema)
    torch.save(training_state, tmp / STATE_FILE)
    for f in (MODEL_FILE, STATE_FILE):
        with open(tmp / f, "rb+") as fh:
            os.fsync(fh.fileno())
    if final.exists():  # the same iteration saved twice (e.g. the end after a checkpoint-every hit)
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(ckpt_root)
    if keep:
        for _, old in list_checkpoints(ckpt_root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def load_training_state(ckpt: Path, map_location: str = "cpu") -> dict[str, Any]:
    import torch

    path = ckpt / STATE_FILE
    if not path.exists():
        raise CheckpointError(f"{path}: missing (not a complete ggt checkpoint)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, pickle error: one clear line naming the file
        raise CheckpointError(f"{path}: cannot read training state ({type(exc).__name__}: {exc})") from None


def _resolve(path: Path) -> Path:
    """A checkpoint folder, a training output folder or its ckpt/ folder -> the weights file."""
    if path.is_dir():
        if (path / MODEL_FILE).exists():
            return path / MODEL_FILE
        for root in (path, path / "ckpt"):
            latest = latest_checkpoint(root)
            if latest is not None:
                return latest / MODEL_FILE
        raise CheckpointError(f"{path}: no {MODEL_FILE} and no complete checkpoint (iter_*/) in this folder")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such model file or checkpoint folder")
    return path


def _safetensors_metadata(path: Path) -> dict[str, str] | None:
    """The header metadata of a .safetensors file; None when the file is not safetensors."""
    try:
        with open(path, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            if n <= 0 or n > 100_000_000:
                return None
            header = json.loads(fh.read(n))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return header.get("__metadata__") or {} if isinstance(header, dict) else None


def load_model(path: str | Path, device: str = "cpu") -> LoadedModel:
    """A model in eval mode from a ggt checkpoint (folder or model.safetensors) or any weights file that
    spandrel identifies (.pth, .pt, .ckpt, .safetensors from the community)."""
    path = _resolve(Path(path))
    meta = _safetensors_metadata(path) if path.suffix == ".safetensors" else None
    if meta and "ggt_arch" in meta:
        from safetensors.torch import load_file

        try:
            arch = ArchConfig.model_validate(json.loads(meta["ggt_arch"]))
            state = load_file(str(path), device="cpu")
        except Exception as exc:
            raise CheckpointError(f"{path}: cannot read ggt weights ({type(exc).__name__}: {exc})") from None
        model = build_arch(arch)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(
                f"{path}: weights do not fit {arch.type}: {str(exc).splitlines()[0]}"
            ) from None
        it = meta.get("iteration")
        return LoadedModel(
            model=model.to(device).eval(), scale=arch.scale, arch=arch.model_dump(), source=str(path),
            pad_multiple=arch.pad_multiple, iteration=int(it) if it else None, metadata=dict(meta),
        )  # fmt: skip
    try:
        from spandrel import ModelLoader
    except ImportError:
        raise ImportError("spandrel is not installed: pip install 'ggt[train]'") from None
    try:
        desc = ModelLoader(device="cpu").load_from_file(str(path))
    except Exception as exc:  # spandrel raises several types for unknown/garbled files
        raise CheckpointError(
            f"{path}: not a model spandrel can identify ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
        ) from None
    sizes = getattr(desc, "size_requirements", None)
    return LoadedModel(
        model=desc.model.to(device).eval(), scale=int(desc.scale), source=str(path),
        arch={"type": desc.architecture.id, "spandrel": True, "tags": list(desc.tags)},
        pad_multiple=int(getattr(sizes, "multiple_of", 1) or 1), metadata=dict(meta or {}),
    )  # fmt: skip
