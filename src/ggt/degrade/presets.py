"""Category presets: random mixtures of primitives that look like the real degradations.

Each preset samples concrete, rounded parameters from ranges chosen to resemble photos of its category
(the rounded value is the value applied, so labels stay short and exact). Every preset returns an image
of the input's size: whatever it shrinks it resizes back.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from ggt.degrade.base import Primitive, create_primitive
from ggt.degrade.pipeline import DegradeResult, run_steps, seed_to_int
from ggt.degrade.weather import RainLayer, SnowLayer

Sampler = Callable[[np.random.Generator, int, int], list[Primitive]]


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    sample: Sampler


def _u(rng: np.random.Generator, lo: float, hi: float, nd: int = 4) -> float:
    return round(float(rng.uniform(lo, hi)), nd)


def _q(rng: np.random.Generator, lo: int, hi: int) -> int:
    return int(rng.integers(lo, hi + 1))


def _p(rng: np.random.Generator, prob: float) -> bool:
    return bool(rng.random() < prob)


def _choice(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(0, len(options)))]


def _P(type_: str, **kwargs: object) -> Primitive:
    return create_primitive(type_, **kwargs)


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**63 - 1))


# --- social media ------------------------------------------------------------------------------------


def _codec_rounds(rng: np.random.Generator, n: int, q_lo: int, q_hi: int) -> list[Primitive]:
    """n re-encodes, each JPEG or WebP; consecutive rounds of one codec form one chain step."""
    rounds = [("webp" if _p(rng, 0.3) else "jpeg", _q(rng, q_lo, q_hi)) for _ in range(n)]
    steps: list[Primitive] = []
    i = 0
    while i < len(rounds):
        codec = rounds[i][0]
        qs = []
        while i < len(rounds) and rounds[i][0] == codec:
            qs.append(rounds[i][1])
            i += 1
        steps.append(_P(codec, qualities=qs))
    return steps


def _social_media(rng: np.random.Generator, h: int, w: int) -> list[Primitive]:
    """Phone capture, then a platform's downscale, sharpening and recompression, re-shared a few times,
    then viewed/saved at the original size (resize back plus a last JPEG)."""
    steps: list[Primitive] = []
    if _p(rng, 0.6):
        steps.append(
            _P(
                "poisson_gaussian_noise",
                a=_u(rng, 1e-4, 2e-3, 6),
                b=_u(rng, 0.001, 0.008),
                gray=_p(rng, 0.4),
                seed=_seed(rng),
            )
        )
    if _p(rng, 0.5):
        steps.append(_P("gaussian_blur", sigma=_u(rng, 0.4, 1.5, 3)))
    steps.append(
        _P("resize", scale=_u(rng, 0.25, 0.8, 3), interpolation=_choice(rng, ["area", "bilinear", "bicubic"]))
    )
    if _p(rng, 0.4):
        steps.append(_P("sharpen", amount=_u(rng, 0.3, 1.6, 3), radius=_u(rng, 0.8, 2.0, 3)))
    steps += _codec_rounds(rng, _q(rng, 1, 3), 30, 85)
    steps.append(
        _P("resize_to", height=h, width=w, interpolation=_choice(rng, ["bilinear", "bicubic", "lanczos"]))
    )
    if _p(rng, 0.7):
        steps.append(_P("jpeg", qualities=[_q(rng, 55, 92)]))
    return steps


# --- old photo ---------------------------------------------------------------------------------------

_SEPIA_TONES = [(1.07, 0.94, 0.72), (1.10, 0.96, 0.80), (1.04, 0.97, 0.86), (1.12, 0.92, 0.68)]


def _old_photo(rng: np.random.Generator, h: int, w: int) -> list[Primitive]:
    """A soft lens and film, decades of fading and toning, handling damage, then a scan saved as JPEG."""
    steps: list[Primitive] = [_P("gaussian_blur", sigma=_u(rng, 0.5, 2.0, 3))]
    if _p(rng, 0.6):
        steps.append(_P("vignette", strength=_u(rng, 0.2, 0.6, 3), radius=_u(rng, 0.3, 0.6, 3)))
    steps.append(_P("fade", contrast_loss=_u(rng, 0.1, 0.5, 3), black_lift=_u(rng, 0.02, 0.2, 3)))
    look = rng.random()
    if look < 0.45:  # sepia print
        tone = _SEPIA_TONES[int(rng.integers(0, len(_SEPIA_TONES)))]
        steps.append(_P("sepia", amount=_u(rng, 0.6, 1.0, 3), tone=tone))
    elif look < 0.7:  # black and white print
        steps.append(_P("sepia", amount=_u(rng, 0.85, 1.0, 3), tone=(1.0, 1.0, 1.0)))
    else:  # colour print whose dyes aged: yellow-red shift, cyan layer faded
        gains = (_u(rng, 1.04, 1.2, 3), _u(rng, 0.98, 1.05, 3), _u(rng, 0.7, 0.9, 3))
        steps.append(_P("color_cast", gains=gains))
        if _p(rng, 0.5):
            steps.append(_P("sepia", amount=_u(rng, 0.1, 0.4, 3)))
    steps.append(
        _P("film_grain", sigma=_u(rng, 0.008, 0.045), grain_size=_u(rng, 0.5, 1.5, 3), seed=_seed(rng))
    )
    if _p(rng, 0.85):
        steps.append(_P("dust", count=_q(rng, 20, 300), max_radius=_u(rng, 0.002, 0.006), seed=_seed(rng)))
    if _p(rng, 0.7):
        steps.append(
            _P(
                "scratches",
                count=_q(rng, 1, 12),
                opacity=_u(rng, 0.3, 0.9, 3),
                orientation=_choice(rng, ["vertical", "random"]),
                seed=_seed(rng),
            )
        )
    if _p(rng, 0.3):
        steps.append(_P("creases", count=_q(rng, 1, 2), strength=_u(rng, 0.3, 0.8, 3), seed=_seed(rng)))
    steps.append(_P("resize", scale=_u(rng, 0.4, 0.9, 3), interpolation="area"))
    steps.append(_P("resize_to", height=h, width=w, interpolation="bicubic"))
    if _p(rng, 0.6):
        steps.append(_P("jpeg", qualities=[_q(rng, 60, 92)]))
    return steps


# --- weather -----------------------------------------------------------------------------------------


def _rain(rng: np.random.Generator, h: int, w: int) -> list[Primitive]:
    """Overcast light, one to three streak layers (near: long, wide, sparse), rain fog, a camera JPEG."""
    steps: list[Primitive] = []
    if _p(rng, 0.5):
        steps.append(_P("low_light", stops=_u(rng, 0.3, 1.2, 3), seed=_seed(rng)))
    base_angle = _u(rng, -25, 25, 2)
    layers = []
    for k in range(_q(rng, 1, 3)):
        layers.append(
            RainLayer(
                density=_u(rng, 0.4, 1.5, 3) * (1 + 2 * k),
                length=_u(rng, 0.04, 0.12) / (1 + k),
                width=_u(rng, 0.0012, 0.0025, 5) / (1 + 0.5 * k),
                angle_deg=round(base_angle + float(rng.normal(0, 3)), 2),
                opacity=_u(rng, 0.3, 0.7, 3) / (1 + 0.3 * k),
            )
        )
    steps.append(_P("rain", layers=layers, veil=_u(rng, 0.0, 0.35, 3), seed=_seed(rng)))
    if _p(rng, 0.5):
        steps.append(_P("gaussian_blur", sigma=_u(rng, 0.4, 1.2, 3)))
    if _p(rng, 0.8):
        steps.append(_P("jpeg", qualities=[_q(rng, 65, 95)]))
    return steps


def _haze(rng: np.random.Generator, h: int, w: int) -> list[Primitive]:
    """Scattering with a grey, slightly blue or yellow airlight, then mild capture noise, blur and JPEG."""
    grey = _u(rng, 0.7, 0.98, 3)
    tint = _u(rng, -0.04, 0.04, 3)  # > 0 bluish (clean air), < 0 yellowish (smog, dust)
    airlight = (round(min(1.0, grey - tint), 3), grey, round(min(1.0, grey + tint), 3))
    steps: list[Primitive] = [
        _P(
            "haze",
            beta=_u(rng, 0.6, 3.0, 3),
            airlight=airlight,
            w_vertical=_u(rng, 0.2, 0.7, 3),
            w_luminance=_u(rng, 0.0, 0.5, 3),
            w_random=_u(rng, 0.1, 0.5, 3),
            depth_min=_u(rng, 0.1, 0.4, 3),
            seed=_seed(rng),
        )
    ]
    if _p(rng, 0.4):
        steps.append(_P("gaussian_noise", sigma=_u(rng, 0.004, 0.02), seed=_seed(rng)))
    if _p(rng, 0.3):
        steps.append(_P("gaussian_blur", sigma=_u(rng, 0.4, 1.0, 3)))
    if _p(rng, 0.8):
        steps.append(_P("jpeg", qualities=[_q(rng, 65, 95)]))
    return steps


def _snow(rng: np.random.Generator, h: int, w: int) -> list[Primitive]:
    """Far, mid and (often) near flakes falling at one angle, a snow-fog veil, then a camera JPEG."""
    angle = _u(rng, -30, 30, 2)
    fall = _u(rng, 0.0, 0.02)
    layers = [
        SnowLayer(
            density=_u(rng, 0.5, 2.0, 3),
            radius=_u(rng, 0.0012, 0.0028, 5),
            fall=fall / 3,
            angle_deg=angle,
            opacity=_u(rng, 0.5, 0.85, 3),
        ),
        SnowLayer(
            density=_u(rng, 0.08, 0.4, 3),
            radius=_u(rng, 0.003, 0.007, 5),
            blur=_u(rng, 0.0005, 0.002, 5),
            fall=fall / 2,
            angle_deg=angle,
            opacity=_u(rng, 0.6, 0.9, 3),
        ),
    ]
    if _p(rng, 0.6):
        layers.append(
            SnowLayer(
                density=_u(rng, 0.005, 0.04, 4),
                radius=_u(rng, 0.008, 0.016, 5),
                blur=_u(rng, 0.003, 0.008, 5),
                fall=fall,
                angle_deg=angle,
                opacity=_u(rng, 0.5, 0.8, 3),
            )
        )
    steps: list[Primitive] = [_P("snow", layers=layers, veil=_u(rng, 0.05, 0.35, 3), seed=_seed(rng))]
    if _p(rng, 0.3):
        steps.append(_P("gaussian_blur", sigma=_u(rng, 0.4, 1.0, 3)))
    if _p(rng, 0.8):
        steps.append(_P("jpeg", qualities=[_q(rng, 65, 95)]))
    return steps


def _low_light(rng: np.random.Generator, h: int, w: int) -> list[Primitive]:
    """A dark exposure with sensor noise after the light loss, a wrong white balance from artificial
    light, sometimes hand shake over the long exposure, then a camera JPEG."""
    cast = rng.random()
    if cast < 0.45:  # tungsten / sodium: warm
        gains = (_u(rng, 1.1, 1.4, 3), 1.0, _u(rng, 0.6, 0.85, 3))
    elif cast < 0.7:  # fluorescent / LED: green-blue
        gains = (_u(rng, 0.85, 0.98, 3), 1.0, _u(rng, 1.02, 1.2, 3))
    else:
        gains = (1.0, 1.0, 1.0)
    steps: list[Primitive] = []
    if _p(rng, 0.3):
        steps.append(_P("motion_blur", length=_u(rng, 3, 12, 2), angle_deg=_u(rng, 0, 180, 1)))
    steps.append(
        _P(
            "low_light",
            stops=_u(rng, 1.5, 5.0, 3),
            gamma=_u(rng, 0.7, 1.0, 3),
            gains=gains,
            a=_u(rng, 2e-5, 4e-4, 6),
            b=_u(rng, 5e-4, 3e-3, 5),
            quantize_bits=int(rng.choice([8, 10])) if _p(rng, 0.3) else None,
            seed=_seed(rng),
        )
    )
    if _p(rng, 0.8):
        steps.append(_P("jpeg", qualities=[_q(rng, 60, 92)]))
    return steps


# --- Real-ESRGAN -------------------------------------------------------------------------------------

_KERNEL_KINDS = [
    ("iso", 0.45),
    ("aniso", 0.25),
    ("generalized_iso", 0.12),
    ("generalized_aniso", 0.03),
    ("plateau_iso", 0.12),
    ("plateau_aniso", 0.03),
]


def _re_blur(rng: np.random.Generator, sigma_hi: float, sinc_prob: float) -> Primitive:
    """Real-ESRGAN's random kernel: one of six Gaussian-family shapes, or a sinc, size 7..21."""
    size = int(rng.choice(np.arange(7, 22, 2)))
    if _p(rng, sinc_prob):
        cutoff = _u(rng, math.pi / 3, math.pi) if size < 13 else _u(rng, math.pi / 5, math.pi)
        return _P("sinc_blur", cutoff=cutoff, kernel_size=size)
    names, probs = zip(*_KERNEL_KINDS, strict=True)
    kind = str(rng.choice(names, p=np.asarray(probs) / sum(probs)))
    sx = _u(rng, 0.2, sigma_hi)
    sy = _u(rng, 0.2, sigma_hi) if kind.endswith("aniso") else sx
    angle = _u(rng, -90, 90, 2) if kind.endswith("aniso") else 0.0
    if kind.startswith("generalized"):
        family, beta = "generalized", (_u(rng, 0.5, 1.0) if _p(rng, 0.5) else _u(rng, 1.0, 4.0))
    elif kind.startswith("plateau"):
        family, beta = "plateau", _u(rng, 1.0, 2.0)
    else:
        family, beta = "gaussian", 1.0
    return _P(
        "gaussian_blur", sigma=sx, sigma_y=sy, angle_deg=angle, kind=family, beta=beta, kernel_size=size
    )


def _re_resize(
    rng: np.random.Generator, probs: tuple[float, float, float], lo: float, hi: float
) -> Primitive:
    mode = str(rng.choice(["up", "down", "keep"], p=probs))
    scale = _u(rng, 1.0, hi) if mode == "up" else _u(rng, lo, 1.0) if mode == "down" else 1.0
    return _P("resize", scale=scale, interpolation=_choice(rng, ["area", "bilinear", "bicubic"]))


def _re_noise(rng: np.random.Generator, sigma_hi: float, poisson_hi: float) -> Primitive:
    gray = _p(rng, 0.4)
    if _p(rng, 0.5):
        return _P("gaussian_noise", sigma=round(_u(rng, 1, sigma_hi) / 255, 6), gray=gray, seed=_seed(rng))
    # BasicSR's Poisson noise at 8-bit levels has variance scale^2 * x / 256.
    scale = _u(rng, 0.05, poisson_hi)
    return _P(
        "poisson_gaussian_noise", a=round(scale**2 / 256, 8), b=0.0, linear=False, gray=gray, seed=_seed(rng)
    )


def _realesrgan(rng: np.random.Generator, h: int, w: int) -> list[Primitive]:
    """Real-ESRGAN's second-order pipeline (Wang et al. 2021, BasicSR's default ranges), scale-1 variant:
    the final resize returns to the input size instead of the low-resolution size."""
    steps: list[Primitive] = [
        _re_blur(rng, 3.0, 0.1),
        _re_resize(rng, (0.2, 0.7, 0.1), 0.15, 1.5),
        _re_noise(rng, 30, 3.0),
        _P("jpeg", qualities=[_q(rng, 30, 95)]),
    ]
    if _p(rng, 0.8):
        steps.append(_re_blur(rng, 1.5, 0.1))
    steps.append(_re_resize(rng, (0.3, 0.4, 0.3), 0.3, 1.2))
    steps.append(_re_noise(rng, 25, 2.5))
    back = [_P("resize_to", height=h, width=w, interpolation=_choice(rng, ["area", "bilinear", "bicubic"]))]
    if _p(rng, 0.8):
        back.append(
            _P(
                "sinc_blur",
                cutoff=_u(rng, math.pi / 3, math.pi),
                kernel_size=int(rng.choice(np.arange(7, 22, 2))),
            )
        )
    jpeg = [_P("jpeg", qualities=[_q(rng, 30, 95)])]
    steps += back + jpeg if _p(rng, 0.5) else jpeg + back
    return steps


_ALL = [
    Preset(
        "social_media",
        "downscale, blur, sensor noise, multi-round JPEG/WebP, sometimes sharpening",
        _social_media,
    ),
    Preset(
        "old_photo",
        "fading, sepia/B&W/aged dyes, film grain, dust, scratches, creases, vignetting, scan",
        _old_photo,
    ),
    Preset("rain", "rain streak layers along one angle, rain fog, overcast light, JPEG", _rain),
    Preset("haze", "atmospheric scattering with a depth proxy, mild noise/blur, JPEG", _haze),
    Preset("snow", "flake layers of three sizes, snow fog, JPEG", _snow),
    Preset("low_light", "exposure drop, noise after darkening, colour cast, hand shake, JPEG", _low_light),
    Preset("realesrgan", "Real-ESRGAN second-order blur/resize/noise/JPEG (+sinc) pipeline", _realesrgan),
]
PRESETS: Mapping[str, Preset] = MappingProxyType({p.name: p for p in _ALL})


def list_presets() -> list[str]:
    return list(PRESETS)


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(
            f"unknown degradation preset {name!r}; valid presets: {', '.join(PRESETS)}"
        ) from None


def apply_preset(img: np.ndarray, preset: str, seed: int | np.random.Generator) -> DegradeResult:
    """Degrade ``img`` (float32 RGB HxWx3 in [0, 1]) with a category preset.

    The same (input, preset, seed) gives the same bytes. A Generator seed draws one int from it, which is
    what the result records. The output has the input's shape, dtype float32 and range [0, 1].
    """
    p = get_preset(preset)
    s = seed_to_int(seed)
    rng = np.random.default_rng(s)
    h, w = img.shape[:2]
    steps = p.sample(rng, h, w)
    out, labels, severity = run_steps(img, steps, rng)
    if out.shape[:2] != (h, w):  # pragma: no cover - every sampler resizes back; this guards new ones
        raise RuntimeError(f"preset {preset} changed the image size from {(h, w)} to {out.shape[:2]}")
    return DegradeResult(out, preset, s, labels, severity)
