"""Geometry policy: how an LQ photo is framed for a generator, and how the answer is mapped back.

Generators return squares or a few fixed aspect ratios at their own sizes. Whatever comes back, the HQ
must end at the LQ's framing (same content at the same place) and at a recorded size: the LQ's, or an
integer multiple when an upscale is asked. The transform is stored with every result.
"""

from __future__ import annotations

import cv2
import numpy as np
from pydantic import BaseModel

from ggt.config import GeometryConfig
from ggt.imaging import to_float, to_uint8


class Transform(BaseModel):
    """What was done to the LQ before generation, enough to undo it on the answer."""

    policy: str
    lq_size: tuple[int, int]  # (width, height)
    sent_size: tuple[int, int]
    content_box: tuple[int, int, int, int]  # x, y, width, height of the LQ inside what was sent
    aspect: str | None = None
    out_size: tuple[int, int]


class GeometryError(ValueError):
    """An answer whose size or aspect cannot be mapped back onto the LQ's framing."""


def closest_aspect(width: int, height: int, aspects: list[str]) -> str:
    ratio = width / height
    return min(aspects, key=lambda a: abs(np.log(ratio / _ratio(a))))


def _ratio(aspect: str) -> float:
    w, _, h = aspect.partition(":")
    return float(w) / float(h)


def plan(w: int, h: int, cfg: GeometryConfig) -> Transform:
    """The transform for a w x h LQ: what is sent, where the LQ sits in it, and the size to end at."""
    out_size = (w * cfg.upscale, h * cfg.upscale)
    if cfg.policy == "native":
        aspect = closest_aspect(w, h, cfg.aspects)
        return Transform(
            policy="native", lq_size=(w, h), sent_size=(w, h), content_box=(0, 0, w, h), aspect=aspect,
            out_size=out_size,
        )  # fmt: skip
    scale = cfg.size / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    x, y = (cfg.size - nw) // 2, (cfg.size - nh) // 2
    return Transform(
        policy="pad_square", lq_size=(w, h), sent_size=(cfg.size, cfg.size), content_box=(x, y, nw, nh),
        aspect="1:1", out_size=out_size,
    )  # fmt: skip


def prepare(lq: np.ndarray, cfg: GeometryConfig) -> tuple[np.ndarray, Transform]:
    """The image to send (float in [0, 1], or uint8 from a uint8 LQ) and the transform that maps an answer
    back."""
    h, w = lq.shape[:2]
    t = plan(w, h, cfg)
    if t.policy == "native":
        return lq, t
    x, y, nw, nh = t.content_box
    if lq.dtype == np.uint8:
        if (nw, nh) == (w, h):
            # Nothing to resample: stay 8-bit. The bytes sent (and so the request key) are exactly those
            # of the float path, whose encoder rounds to the same 8-bit values, pad included.
            canvas = np.full((cfg.size, cfg.size, lq.shape[2]), to_uint8(np.float32(cfg.pad_value)), np.uint8)
            canvas[y : y + nh, x : x + nw] = lq
            return canvas, t
        lq = to_float(lq)  # resampling in float, as always: the same bytes as before, the same keys
    interp = cv2.INTER_AREA if nw < w else cv2.INTER_CUBIC
    canvas = np.full((cfg.size, cfg.size, lq.shape[2]), cfg.pad_value, dtype=lq.dtype)
    canvas[y : y + nh, x : x + nw] = cv2.resize(lq, (nw, nh), interpolation=interp)
    return canvas, t


def sends_lq_as_is(t: Transform) -> bool:
    """Whether what is sent is the LQ itself: nothing padded, nothing resampled."""
    return t.sent_size == t.lq_size and t.content_box == (0, 0, *t.lq_size)


def answer_is_final(t: Transform, answer_size: tuple[int, int] | None) -> bool:
    """Whether `restore_framing` returns an answer of this size unchanged: nothing was padded around the
    LQ and the answer is already at the size to end at."""
    sw, sh = t.sent_size
    return answer_size is not None and t.content_box == (0, 0, sw, sh) and tuple(answer_size) == t.out_size


def restore_framing(hq: np.ndarray, t: Transform, aspect_tolerance: float = 0.03) -> np.ndarray:
    """Map a generator's answer (float in [0, 1] or uint8, kept) back to the LQ's framing at `t.out_size`;
    GeometryError if it cannot be."""
    gh, gw = hq.shape[:2]
    sw, sh = t.sent_size
    expected = (sw / sh) if t.policy == "pad_square" else _ratio(t.aspect or f"{sw}:{sh}")
    got = gw / gh
    if abs(np.log(got / expected)) > np.log1p(aspect_tolerance):
        raise GeometryError(
            f"answer is {gw}x{gh} (aspect {got:.3f}) but {expected:.3f} was asked; it cannot be mapped back"
        )
    if t.policy == "pad_square":
        sx, sy = gw / sw, gh / sh
        x, y, cw, ch = t.content_box
        hq = hq[round(y * sy) : round((y + ch) * sy), round(x * sx) : round((x + cw) * sx)]
    ow, oh = t.out_size
    # Native answers at the closest supported aspect are resized (not cropped) back: the generator was
    # shown the whole LQ, so its whole answer is the scene, slightly stretched.
    if (hq.shape[1], hq.shape[0]) != (ow, oh):
        interp = cv2.INTER_AREA if hq.shape[1] > ow else cv2.INTER_CUBIC
        hq = cv2.resize(hq, (ow, oh), interpolation=interp)
    # 8-bit answers stay 8-bit (cv2 saturates); float ones are clipped (cubic overshoots).
    return hq if hq.dtype == np.uint8 else np.clip(hq, 0.0, 1.0)


def color_transfer(hq: np.ndarray, lq: np.ndarray) -> np.ndarray:
    """Per-channel mean and std of the LQ onto the HQ in Lab (AdaIN-style): undoes a global colour drift."""
    src = cv2.cvtColor(hq.astype(np.float32), cv2.COLOR_RGB2LAB)
    ref = cv2.cvtColor(cv2.resize(lq, (hq.shape[1], hq.shape[0])).astype(np.float32), cv2.COLOR_RGB2LAB)
    mu_s, sd_s = src.mean(axis=(0, 1)), src.std(axis=(0, 1)) + 1e-6
    mu_r, sd_r = ref.mean(axis=(0, 1)), ref.std(axis=(0, 1))
    out = (src - mu_s) / sd_s * sd_r + mu_r
    return np.clip(cv2.cvtColor(out.astype(np.float32), cv2.COLOR_LAB2RGB), 0.0, 1.0)
