"""`ggt onnx`: a restoration model as ONNX, checked against onnxruntime on random inputs.

The graph takes float32 NCHW RGB in [0, 1] named `input` and returns `output` clamped to [0, 1]. With
`dynamic` (the default) height and width are free (and the batch, with the legacy exporter).
Architectures that need a size multiple (window attention, U-Net levels: `ggt_size_multiple` in the
model's metadata) expect the caller to pad to it by reflection and crop the output back (times
`ggt_scale`), as `ggt restore` does, because their own padding is traced as a constant: the graph itself
does not pad.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel

Exporter = Literal["legacy", "dynamo"]


class OnnxExport(BaseModel):
    model: str
    out: str
    opset: int
    exporter: str
    dynamic: bool
    scale: int
    size_multiple: int
    checked_shapes: list[list[int]]
    max_abs_diff: float | None  # onnxruntime vs torch over the checked shapes; None when not checked
    tolerance: float
    ok: bool
    bytes: int
    seconds: float


def _wrapped(module: Any) -> Any:
    import torch

    class Clamped(torch.nn.Module):
        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.net(x)
            if isinstance(y, list | tuple):
                y = y[0]
            return y.clamp(0.0, 1.0)

    return Clamped(module).eval()


def _export(net: Any, x: Any, out: Path, opset: int, dynamic: bool, exporter: Exporter) -> None:
    import torch

    if exporter == "legacy":
        axes = {
            "input": {0: "batch", 2: "height", 3: "width"},
            "output": {0: "batch", 2: "height", 3: "width"},
        }
        with warnings.catch_warnings():
            # The TorchScript exporter is deprecated but traces in seconds where dynamo takes a minute.
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (x,), str(out), dynamo=False, opset_version=opset, input_names=["input"],
                              output_names=["output"], dynamic_axes=axes if dynamic else None)  # fmt: skip
        return
    from torch.export import Dim

    # Batch stays static: torch.export specialises a traced batch of 1, and tiles go one at a time.
    shapes = ({2: Dim("height", min=8, max=8192), 3: Dim("width", min=8, max=8192)},) if dynamic else None
    torch.onnx.export(net, (x,), str(out), dynamo=True, opset_version=max(opset, 18), input_names=["input"],
                      output_names=["output"], dynamic_shapes=shapes, verbose=False)  # fmt: skip


def export_onnx(
    model: str | os.PathLike[str] | Any,
    out: str | os.PathLike[str],
    *,
    opset: int = 17,
    dynamic: bool = True,
    exporter: Exporter = "legacy",
    sample: int = 64,
    tolerance: float = 1e-4,
    check: bool = True,
) -> OnnxExport:
    """Export `model` (checkpoint, weights file or module) to `out` and compare onnxruntime with torch.

    The check runs the graph on random inputs (`sample` pixels a side, and with `dynamic` a second,
    non-square size and, for a size multiple above 1, a size that is not a multiple, padded and cropped
    the way a caller must) and reports the largest absolute difference; `ok` is False above `tolerance`.
    """
    import torch

    from ggt.restore.infer import load_restorer

    try:
        import onnx
    except ImportError:
        raise ImportError("onnx is not installed: pip install 'ggt[train]'") from None
    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise ValueError(f"the output should end in .onnx, got {out.name}")
    if exporter not in ("legacy", "dynamo"):
        raise ValueError(f"unknown exporter {exporter!r}; use legacy or dynamo")
    r = load_restorer(model, "cpu")
    if r.module is None:
        raise ValueError(f"{r.name} has no single network to export (the identity baseline or a generator)")
    r.module.to("cpu").eval()
    k = r.multiple
    side = max(k, -(-sample // k) * k)
    net = _wrapped(r.module)
    t0 = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        _export(net, torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0)), tmp, opset,
                dynamic, exporter)  # fmt: skip
        proto = onnx.load(str(tmp))
        meta = {"ggt_scale": str(r.scale), "ggt_size_multiple": str(k), "ggt_source": r.name,
                "ggt_io": "float32 NCHW RGB in [0, 1]"}  # fmt: skip
        for key, value in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(proto, str(tmp))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    seconds = time.perf_counter() - t0
    shapes = [[1, 3, side, side]]
    if dynamic:
        batch = 2 if exporter == "legacy" else 1
        shapes.append([batch, 3, side + k * max(1, 8 // k), side + 2 * k * max(1, 8 // k)])
        if k > 1:  # the caller's path: padded to the multiple by the check, as the module says
            shapes.append([1, 3, side + 1, side + k + 3])
    diff = None
    if check:
        diff = verify_onnx(net, out, shapes, multiple=k, scale=r.scale)
    return OnnxExport(
        model=r.name, out=str(out), opset=opset if exporter == "legacy" else max(opset, 18), exporter=exporter,
        dynamic=dynamic, scale=r.scale, size_multiple=k, checked_shapes=shapes if check else [],
        max_abs_diff=diff, tolerance=tolerance, ok=diff is None or diff <= tolerance,
        bytes=out.stat().st_size, seconds=round(seconds, 2),
    )  # fmt: skip


def verify_onnx(
    net: Any,
    path: str | os.PathLike[str],
    shapes: list[list[int]],
    seed: int = 0,
    multiple: int = 1,
    scale: int = 1,
) -> float:
    """Largest |onnxruntime - torch| over random inputs of the given NCHW shapes. A shape whose height or
    width is not a multiple of `multiple` is padded by reflection (as `ggt restore` pads) and both
    outputs cropped back to the shape times `scale`: the graph does not pad, its callers must."""
    import torch

    from ggt.restore.infer import pad_to_multiple

    try:
        import onnxruntime as ort
    except ImportError:
        raise ImportError("onnxruntime is not installed: pip install onnxruntime") from None
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    rng = np.random.default_rng(seed)
    worst = 0.0
    for shape in shapes:
        padded, h, w = pad_to_multiple(torch.from_numpy(rng.random(shape, dtype=np.float32)), multiple)
        x = padded.numpy()
        with torch.inference_mode():
            ref = net(padded).numpy()
        got = sess.run(None, {name: x})[0]
        if got.shape != ref.shape:
            raise ValueError(f"onnxruntime returned shape {got.shape} for input {shape}, torch {ref.shape}")
        crop = (..., slice(0, h * scale), slice(0, w * scale))
        worst = max(worst, float(np.abs(got[crop] - ref[crop]).max()))
    return worst
