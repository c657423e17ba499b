"""Inference with a restoration model: tiled for large images, and `ggt restore --model CKPT IN OUT`.

Tiling: the image is cut into overlapping tiles of about `tile` input pixels, placed at multiples of the
network's size multiple (2^levels for U-Nets, the window for window attention) so every tile sees the
same downsampling grid and windows as the untiled pass. Each tile's output is weighted by a separable
window: 1 inside, 0 in the outer quarter of a span shared with a neighbour (where the tile lacked
context) and a raised-cosine cross-fade over the middle half. The windows of neighbouring tiles sum to
one, so a model whose receptive field fits in a quarter of the overlap gives the untiled result exactly,
and models with global context (channel attention) show no seams. Model memory is bound by the tile
size; the output is accumulated on the host.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, Field

from ggt.config import IMAGE_EXTENSIONS
from ggt.progress import ProgressFn

if TYPE_CHECKING:
    import torch

IMAGE_SUFFIXES = frozenset(IMAGE_EXTENSIONS)
IDENTITY = "identity"


# -- the model ---------------------------------------------------------------------------------------------


GENERATOR_PREFIX = "generator:"


class Restorer:
    """A model ready for inference: the module, its scale and the size multiple its input needs; or `fn`,
    a whole-image restorer (a ggt generator) that sizes its input itself."""

    def __init__(
        self,
        module: Any,
        scale: int = 1,
        multiple: int = 1,
        name: str = "model",
        fn: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        self.module, self.scale, self.multiple, self.name = module, int(scale), max(1, int(multiple)), name
        self.fn = fn

    @property
    def is_identity(self) -> bool:
        return self.module is None and self.fn is None


def generator_restorer(spec: str) -> Restorer:
    """`generator:NAME[:MODEL][+lora=PATH]`: a local ggt generator (`classical`, or a `diffusers` pipeline
    with an optional LoRA from `ggt finetune`) as a restorer, so `ggt eval` scores it like an IR model.
    Each image gets the heuristic analyzer's report and adaptive prompt, as in `ggt synth`."""
    from ggt.analyze.heuristic import analyze
    from ggt.analyze.prompts import build_prompt
    from ggt.bench.generators import parse_generator, split_lora
    from ggt.generate import GENERATORS, create_generator
    from ggt.generate.stage import variant_for

    name, model = parse_generator(spec[len(GENERATOR_PREFIX) :])
    if name not in GENERATORS:
        raise ValueError(
            f"{spec!r}: only local generators can be evaluated ({', '.join(sorted(GENERATORS))})"
        )
    base, lora = split_lora(model)
    options = {k: v for k, v in (("model", base), ("lora", lora)) if v}
    gen = create_generator(name, **options)
    takes_prompt = "prompt" in inspect.signature(gen.restore).parameters

    def fn(img: np.ndarray) -> np.ndarray:
        report = analyze(img)
        hq, _ = (
            gen.restore(img, report, prompt=build_prompt(report))
            if takes_prompt
            else gen.restore(img, report)
        )
        return np.clip(np.asarray(hq, dtype=np.float32), 0.0, 1.0)

    return Restorer(None, 1, 1, variant_for(name, base, lora), fn=fn)


def size_multiple(module: Any) -> int:
    """The multiple of which the input's height and width must be, read from known architectures.

    NAFNet/Uformer-style U-Nets keep `padder_size` (2 ** downsamplings); window-attention nets (SwinIR,
    HAT, ...) keep `window_size`. Most pad internally anyway; padding here by reflection matches the
    training distribution better than their zero padding and keeps the ONNX export shape-static.
    """
    k = 1
    for attr in ("padder_size", "window_size"):
        v = getattr(module, attr, None)
        if isinstance(v, int) and v > 0:
            k = math.lcm(k, v)
    # Modules with several downsamplings but no attribute: SCUNet pads to 64 itself.
    if type(module).__name__ == "SCUNet":
        k = math.lcm(k, 64)
    return k


def load_restorer(model: str | os.PathLike[str] | Any, device: str = "cpu") -> Restorer:
    """`identity` (the input itself, a baseline), a checkpoint/model file, a `LoadedModel` or a module."""
    if isinstance(model, Restorer):
        return model
    if isinstance(model, str) and model == IDENTITY:
        return Restorer(None, 1, 1, IDENTITY)
    if isinstance(model, str) and model.startswith(GENERATOR_PREFIX):
        return generator_restorer(model)
    if isinstance(model, str | os.PathLike):
        path = Path(model)
        if not path.exists():
            raise FileNotFoundError(f"model {path} not found (a checkpoint folder, .safetensors or .pth)")
        from ggt.restore.checkpoint import load_model

        model = load_model(path, device=device)
    if hasattr(model, "model") and hasattr(model, "scale"):  # a LoadedModel
        multiple = math.lcm(int(getattr(model, "pad_multiple", 1) or 1), size_multiple(model.model))
        return Restorer(model.model, model.scale, multiple, getattr(model, "source", "model"))
    return Restorer(model, 1, size_multiple(model), type(model).__name__)


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but CUDA is not available here (use --device cpu)")
    if device != "cpu" and not device.startswith("cuda") and device != "mps":
        raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")
    return device


# -- tiling ------------------------------------------------------------------------------------------------


def tile_spans(length: int, tile: int, overlap: int, multiple: int = 1) -> list[tuple[int, int]]:
    """(start, end) of the tiles along one axis. Starts are multiples of `multiple`, so a network's
    downsampling grid and attention windows line up with those of the untiled pass; the stride is the
    largest such multiple that keeps `overlap`; the last tile reaches the end (it may be up to
    `multiple - 1` pixels longer than `tile`)."""
    if length <= tile:
        return [(0, length)]
    k = max(1, multiple)
    stride = max(k, (tile - overlap) // k * k)
    starts = list(range(0, length - tile, stride))  # tiles that end before the image does
    last = (length - tile) // k * k
    if starts[-1] == last:
        starts.pop()
    spans = [(s, s + tile) for s in starts]
    spans.append((last, length))
    return spans


def _ramp(n: int) -> np.ndarray:
    # Raised cosine from 0 to 1 over n samples at pixel centres; ramp + reversed ramp == 1.
    t = (np.arange(n, dtype=np.float64) + 0.5) / n
    return np.sin(0.5 * np.pi * t) ** 2


def axis_windows(
    length: int, tile: int, overlap: int, scale: int = 1, multiple: int = 1
) -> list[tuple[int, int, np.ndarray]]:
    """(start, size, weights) per tile along one axis, weights in output pixels, summing to 1 at every pixel.

    Between two tiles the weights cross-fade over the middle half of the span they share; the outer
    quarters (where one of them lacked context) get none of that tile's weight.
    """
    spans = tile_spans(length, tile, overlap, multiple)
    out = []
    for j, (s, e) in enumerate(spans):
        w = np.ones((e - s) * scale, dtype=np.float64)
        for nb, right in ((j - 1, False), (j + 1, True)):
            if nb < 0 or nb >= len(spans):
                continue
            lo, hi = (spans[nb][0], e) if right else (s, spans[nb][1])  # the shared span
            shared = hi - lo
            if shared <= 0:  # abutting tiles (overlap 0): a hard edge
                continue
            centre = (lo + hi) / 2 * scale
            half = max(1, shared - 2 * (shared // 4)) * scale / 2
            a, b = round(centre - half) - s * scale, round(centre + half) - s * scale
            ramp = _ramp(b - a)
            if right:  # fade out towards the right (or lower) neighbour
                w[a:b] *= ramp[::-1]
                w[b:] = 0.0
            else:
                w[:a] = 0.0
                w[a:b] *= ramp
        out.append((s, e - s, w))
    return out


def check_tiling(tile: int | None, overlap: int) -> None:
    """Raise ValueError for tile/overlap options no image can be restored with (`tile=None`: untiled).

    Callers check once before loading a model or writing anything, so a mistyped option is one usage
    error instead of the same failure repeated for every image.
    """
    if overlap < 0:
        raise ValueError(f"overlap {overlap} must not be negative")
    if tile is None:
        return
    if tile < 8:
        raise ValueError(f"tile {tile} is too small (at least 8 pixels; 0 for whole images)")
    if 2 * overlap > tile:
        raise ValueError(f"overlap {overlap} must be between 0 and half the tile ({tile // 2})")


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, int, int]:
    """`x` (..., H, W) padded at the bottom and right to multiples of `multiple`, as an architecture
    with a size multiple needs (also for its ONNX export, whose graph does not pad), with H and W."""
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        # Reflection needs the pad smaller than the side; tiny images fall back to edge replication.
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, h, w


def _run(r: Restorer, x: torch.Tensor, half: bool) -> torch.Tensor:
    import torch

    xp, h, w = pad_to_multiple(x, r.multiple)
    with torch.inference_mode():
        if half:
            with torch.autocast(device_type="cuda", dtype=torch.float16):
                y = r.module(xp)
        else:
            y = r.module(xp)
    if isinstance(y, list | tuple):  # some nets return (image, aux)
        y = y[0]
    return y[..., : h * r.scale, : w * r.scale].float()


def restore_image(
    model: Any,
    img: np.ndarray,
    tile: int | None = 512,
    overlap: int = 32,
    device: str = "cpu",
    half: bool = False,
) -> np.ndarray:
    """Restore a float32 RGB HxWx3 image in [0, 1]; the result is (H*scale)x(W*scale)x3 in [0, 1].

    `tile=None` runs the whole image at once. `half` runs the model under float16 autocast (CUDA only).
    """
    import torch

    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"restore_image expects an RGB HxWx3 image, got shape {img.shape}")
    r = load_restorer(model, device)
    if r.is_identity:
        return np.clip(img, 0.0, 1.0).astype(np.float32, copy=False)
    if r.fn is not None:
        return r.fn(img)
    if half and not str(device).startswith("cuda"):
        raise ValueError("half precision (fp16) needs a CUDA device")
    check_tiling(tile, overlap)
    # The image stays on the host; only a tile at a time goes to the device.
    x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32))[None]
    h, w = img.shape[:2]
    s = r.scale
    r.module.to(device)
    if tile is None:
        y = _run(r, x.to(device), half)
        return np.clip(y[0].permute(1, 2, 0).cpu().numpy(), 0.0, 1.0)
    # Whole multiples: tiles need no padding inside the image, and strides can keep the overlap.
    tile = max(2 * r.multiple, -(-tile // r.multiple) * r.multiple)
    acc = np.zeros((h * s, w * s, 3), dtype=np.float32)
    weight = np.zeros((h * s, w * s, 1), dtype=np.float32)
    rows = axis_windows(h, tile, overlap, s, r.multiple)
    cols = axis_windows(w, tile, overlap, s, r.multiple)
    for y0, th, wy in rows:
        for x0, tw, wx in cols:
            t = x[..., y0 : y0 + th, x0 : x0 + tw].to(device)
            y = _run(r, t, half)[0].permute(1, 2, 0).cpu().numpy()
            if y.shape[:2] != (th * s, tw * s):
                raise ValueError(f"the model returned {y.shape[:2]} for a {th}x{tw} tile at scale {s}")
            win = np.outer(wy, wx).astype(np.float32)[..., None]
            acc[y0 * s : (y0 + th) * s, x0 * s : (x0 + tw) * s] += y * win
            weight[y0 * s : (y0 + th) * s, x0 * s : (x0 + tw) * s] += win
    return np.clip(acc / np.maximum(weight, 1e-8), 0.0, 1.0)


# -- ggt restore -------------------------------------------------------------------------------------------


class RestoreFailure(BaseModel):
    path: str
    reason: str
    message: str


class RestoreSummary(BaseModel):
    model: str
    out: str
    device: str
    tile: int | None
    overlap: int
    scale: int = 1
    found: int = 0
    written: int = 0
    already_done: int = 0
    failed: list[RestoreFailure] = Field(default_factory=list)
    megapixels: float = 0.0  # input megapixels restored
    seconds: float = 0.0


def list_images(root: Path, exclude: Path | None = None) -> Iterator[Path]:
    """Image files under `root` (recursive, sorted, hidden files and `exclude` left out)."""
    ex = exclude.resolve() if exclude is not None else None
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        d = Path(dirpath)
        dirnames[:] = sorted(
            n for n in dirnames if not n.startswith(".") and (ex is None or (d / n).resolve() != ex)
        )
        for name in sorted(filenames):
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                yield d / name


def _plan(inputs: Path, out: Path) -> list[tuple[Path, Path]]:
    if inputs.is_file():
        suffix = out.suffix.lower()
        if suffix in IMAGE_SUFFIXES and suffix != ".png":
            # Otherwise `out.jpg` would become a folder holding the PNG: not what the name asks for.
            raise ValueError(f"outputs are PNG: name it {out.with_suffix('.png').name}")
        target = out if suffix == ".png" else out / f"{inputs.stem}.png"
        return [(inputs, target)]
    if not inputs.is_dir():
        raise FileNotFoundError(f"input {inputs} not found")
    if out.suffix.lower() == ".png":
        raise ValueError(f"input {inputs} is a folder: the output must be a folder, not {out.name}")
    return [(p, (out / p.relative_to(inputs)).with_suffix(".png")) for p in list_images(inputs, exclude=out)]


# In an output folder: which model made its images, so that a rerun with another model does not count
# the first model's outputs as its own work done.
PROVENANCE_FILE = ".ggt-restore.json"


def model_fingerprint(model: str | os.PathLike[str] | Any) -> str | None:
    """What identifies a model's outputs: `identity` and `generator:...` specs as they are, a checkpoint
    file or folder by the SHA-256 of its contents (so a copy elsewhere is the same model, a retrained one
    is not); None for a model object passed from Python."""
    if isinstance(model, str) and (model == IDENTITY or model.startswith(GENERATOR_PREFIX)):
        return model
    if not isinstance(model, str | os.PathLike) or not Path(model).exists():
        return None
    path = Path(model)
    digest = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file()) if path.is_dir() else [path]:
        if path.is_dir():  # a folder's files by their place in it; a file's name is not its content
            digest.update(f"{p.relative_to(path)}\0".encode())
        with p.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def _claim_folder(out: Path, fingerprint: str, model: str, overwrite: bool, has_outputs: bool) -> None:
    """Record `fingerprint` as the maker of `out`'s images, or refuse a folder another model made."""
    path = out / PROVENANCE_FILE
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        old = None
    if isinstance(old, dict) and old.get("fingerprint") == fingerprint:
        return
    if isinstance(old, dict) and not overwrite:
        raise ValueError(
            f"{out} holds the outputs of another model ({old.get('model')}); "
            "pass --overwrite to redo them with this one, or choose another folder"
        )
    if has_outputs and not overwrite:
        return  # made before provenance was recorded: resumed as before, and not claimed
    from ggt.fsutil import write_bytes_atomic

    out.mkdir(parents=True, exist_ok=True)
    record = {"model": str(model), "fingerprint": fingerprint}
    write_bytes_atomic(path, json.dumps(record, indent=2).encode())


def restore(
    model: str | os.PathLike[str] | Any,
    inputs: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    tile: int | None = 512,
    overlap: int = 32,
    device: str = "auto",
    half: bool = False,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> RestoreSummary:
    """Restore one image or every image under a folder into PNGs (same relative paths, `.png`).

    Folders are resumable: an output that exists is skipped (unless `overwrite`). An output folder
    records which model made it (`PROVENANCE_FILE`), and another model is refused there unless
    `overwrite`. A single input file is always restored, replacing its output: nothing records which
    model made a lone PNG, and skipping the one image would make the command do nothing. Two inputs
    that map to the same output (`a.png` and `a.jpg`) do not share it: the first in sorted order gets
    it, the other fails with reason `output_taken`. A file that cannot be decoded or restored fails
    alone, with its reason; the rest go on. Bad tile/overlap options raise ValueError before anything.
    """
    from ggt.fsutil import sweep_orphaned_temps, write_bytes_atomic
    from ggt.imaging import ImageDecodeError, decode_image, encode_image, to_float

    check_tiling(tile, overlap)
    inputs, out = Path(inputs), Path(out_dir)
    dev = resolve_device(device)
    jobs = _plan(inputs, out)
    single = inputs.is_file()
    taken: dict[Path, Path] = {}
    clashes: list[RestoreFailure] = []
    for src, dst in jobs:
        if dst in taken:  # a second writer would be counted "already done" on the first one's output
            msg = f"output {dst.relative_to(out)} already taken by {taken[dst].relative_to(inputs)}"
            clashes.append(RestoreFailure(path=str(src), reason="output_taken", message=msg))
        else:
            taken[dst] = src
    found = len(jobs)
    jobs = [(src, dst) for dst, src in taken.items()]
    for folder in {dst.parent for _, dst in jobs}:
        sweep_orphaned_temps(folder)  # half-written outputs of a killed run
    fingerprint = model_fingerprint(model)
    if fingerprint is not None and inputs.is_dir():  # before the model is loaded: a refusal is quick
        _claim_folder(out, fingerprint, model, overwrite, any(dst.exists() for _, dst in jobs))
    r = load_restorer(model, dev)
    if r.module is not None:
        r.module.to(dev).eval()
    summary = RestoreSummary(
        model=r.name, out=str(out), device=dev, tile=tile, overlap=overlap, scale=r.scale
    )
    summary.found = found
    summary.failed.extend(clashes)
    t0 = time.perf_counter()
    for i, (src, dst) in enumerate(jobs):
        if dst.exists() and not (overwrite or single):
            summary.already_done += 1
        else:
            try:
                img = to_float(decode_image(src).rgb)
                result = restore_image(r, img, tile=tile, overlap=overlap, device=dev, half=half)
                dst.parent.mkdir(parents=True, exist_ok=True)
                write_bytes_atomic(dst, encode_image(result, "png"))
                summary.written += 1
                summary.megapixels += img.shape[0] * img.shape[1] / 1e6
            except ImageDecodeError as exc:
                summary.failed.append(RestoreFailure(path=str(src), reason=exc.reason, message=exc.args[0]))
            except (RuntimeError, ValueError, OSError) as exc:  # e.g. CUDA out of memory on one huge image
                reason = "out_of_memory" if "out of memory" in str(exc).lower() else type(exc).__name__
                summary.failed.append(RestoreFailure(path=str(src), reason=reason, message=str(exc)[:300]))
        if progress is not None:
            progress(i + 1, len(jobs))
    summary.seconds = round(time.perf_counter() - t0, 3)
    return summary
