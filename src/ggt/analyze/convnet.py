"""Numpy inference shared by the analyzer's small fitted nets (`patchnet.py`, `enlargement.py`):
reading and checking their weights, and their stack of 3x3 convolutions with ReLU, mean and max
pooling and a linear head. Torch fits them; inference needs numpy only."""

from __future__ import annotations

from pathlib import Path

import numpy as np

Arch = tuple[tuple[int, int, int], ...]  # (in, out, stride) per convolution


def read_weights(
    path: Path, what: str, fit_module: str, switch: str, error: type[Exception]
) -> dict[str, np.ndarray]:
    """The arrays of an `.npz` of weights, or `error` saying how to get them or do without."""
    if not path.is_file():
        raise error(
            f"{what} weights not found at {path}; fit them with `python -m ggt.analyze.{fit_module}`"
            f" or set analyze.heuristic.{switch}: false"
        )
    try:
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise error(f"{what} weights at {path} are unreadable: {exc}") from None


class ConvStack:
    """The convolutions `conv_keys[i]`.weight/.bias of `arch` and the head `head_key`.weight/.bias with
    `outputs` rows, from torch-named `weights`; a missing or misshapen array raises `error`."""

    def __init__(
        self,
        weights: dict[str, np.ndarray],
        conv_keys: list[str],
        arch: Arch,
        head_key: str,
        outputs: int,
        what: str,
        error: type[Exception],
    ) -> None:
        try:
            self.convs = [
                (weights[f"{k}.weight"].astype(np.float32), weights[f"{k}.bias"].astype(np.float32), s)
                for k, (_, _, s) in zip(conv_keys, arch, strict=True)
            ]
            self.head_w = weights[f"{head_key}.weight"].astype(np.float32)
            self.head_b = weights[f"{head_key}.bias"].astype(np.float32)
        except KeyError as exc:
            raise error(f"{what} weights lack {exc.args[0]!r}") from None
        for (w, _, _), (cin, cout, _) in zip(self.convs, arch, strict=True):
            if w.shape != (cout, cin, 3, 3):
                raise error(f"{what} weights have a {w.shape} layer where {arch} needs ({cout}, {cin}, 3, 3)")
        if self.head_w.shape != (outputs, 2 * arch[-1][1]):
            raise error(f"{what} head is {self.head_w.shape}, not ({outputs}, {2 * arch[-1][1]})")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """(N, outputs) logits of an NHWC float32 batch."""
        for weight, bias, stride in self.convs:
            x = np.maximum(conv3x3(x, weight, stride) + bias, 0.0)
        pooled = np.concatenate([x.mean(axis=(1, 2)), x.max(axis=(1, 2))], axis=1)
        return pooled @ self.head_w.T + self.head_b


def grid_crops(x: np.ndarray, size: int, grid: int) -> np.ndarray:
    """`grid` x `grid` crops of `size` px spread evenly over `x` (at least `size` on each side),
    corners included, stacked in row order."""
    h, w = x.shape[:2]
    ys = np.linspace(0, h - size, grid).round().astype(int)
    xs = np.linspace(0, w - size, grid).round().astype(int)
    return np.stack([x[y : y + size, c : c + size] for y in ys for c in xs])


def conv3x3(x: np.ndarray, weight: np.ndarray, stride: int) -> np.ndarray:
    """A 3x3 convolution with padding 1 of NHWC `x` with torch-layout (out, in, 3, 3) `weight`.

    The three column offsets side by side on the channel axis, then one matrix product per row
    offset (inner size 3 x in): 1.5x as fast here as nine products of inner size `in`, which keep
    BLAS short of work, and faster than one product over a 9 x in im2col copy."""
    _, h, w, cin = x.shape
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
    taps = weight.transpose(2, 3, 1, 0).reshape(3, 3 * cin, weight.shape[0])  # row, (column, in), out
    cols = np.concatenate([padded[:, :, j : j + stride * wo : stride] for j in range(3)], axis=3)
    out = cols[:, 0 : stride * ho : stride] @ taps[0]
    for i in (1, 2):
        out += cols[:, i : i + stride * ho : stride] @ taps[i]
    return out
