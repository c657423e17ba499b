"""The fitted decision model of the heuristic analyzer: measures -> scene category and severities.

Numpy only, and small: its parameters live in `heuristic_model.json` next to this file and are
re-fitted by `python -m ggt.analyze.fit` (seeded, tune photos and training seeds only). A learned
model, not hand thresholds, because the measures interact (grain reads as noise, haze lifts blacks as
fading does, JPEG blocks read as edges to the blur estimator) in ways that single thresholds on single
measures cannot untangle; the same reason BRISQUE fits a regressor on its features.

Pipeline: engineered features from the measure dict -> per-feature log (heavy-tailed measures) and
standardisation, clipped so that a photo unlike any training photo cannot push one feature to an
extreme -> a one-hidden-layer perceptron with softmax for the category; per severity key a small
perceptron regressor (noise: the Immerkaer estimate alone, which ranks best on unseen scenes), then a
monotone piecewise-linear calibration onto the physical severity scale of `ggt.degrade.severity`. A
model fitted with `fit --members K` holds K perceptrons per part, fitted at different seeds, and
averages them.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

MODEL_PATH = Path(__file__).with_name("heuristic_model.json")
# Raw measures that enter the model as they are (angles and absolute sizes do not: an angle wraps,
# and a size says nothing about degradation).
# `point_light_density` was added after the shipped model was fitted (it feeds the dust severity
# only); a re-fit may let it in by removing it here. `rain_line_*` (`measures.rain_lines`) feed the
# rain severity only: as model inputs they lowered the leave-photos-out CV (clean / degraded 0.839 /
# 0.794 against 0.851 / 0.803; docs/analyzer-accuracy.md).
_SKIP = frozenset(
    {
        "width",
        "height",
        "blur_direction_deg",
        "rain_direction_deg",
        "cast_hue_deg",
        "edge_count",
        "point_light_density",
        "rain_line_excess",
        "rain_line_coherence",
        "vignette_falloff",
    }
)
_CLIP_Z = 6.0
LEARNED_PREFIXES = ("patchnet_", "enlargement_")
# The degradations that make up each degraded category: the analyzer calls a photo by a degraded
# category only if one of them reaches that category's evidence gate (fitted, `classifier.gates`), so a
# new clean scene that merely resembles a category (warm like a print, dark like a night shot) without
# showing any of its degradations stays clean.
EVIDENCE: dict[str, tuple[str, ...]] = {
    "social_media": ("noise", "blur", "jpeg", "low_resolution", "motion_blur"),
    "old_photo": ("sepia", "fading", "scratches", "dust", "noise", "color_cast"),
    "rain": ("rain",),
    "snow": ("snow",),
    "haze": ("haze",),
    "low_light": ("low_light",),
}
# Fading alone is not evidence of an old print: a flat grey scene (a lunar surface, fog, a grey
# document) has lifted blacks and little range too, and haze looks the same. Fading counts towards
# old_photo only next to one of these, at FADING_COMPANION or more: a tint, grain, film damage or
# lens fall-off (`vignette`, all four corners darker: old lenses and prints show it, and unlike grain
# it survives a scan's down/up-scale).
FADING_COMPANIONS = ("sepia", "scratches", "dust", "noise", "color_cast", "vignette")
FADING_COMPANION = 0.1
# Evidence that no clean photo shows, whatever the classifier makes of the scene: a fully toned
# monochrome (sepia measure at this level: one warm hue, chroma a function of lightness) is a toned
# print, and a quantisation table recovered from the 8x8 DCT coefficients (`jpeg_quality` from
# `measures.jpeg_quality`, found only on decoded JPEGs) at this quality or lower is a heavily
# re-compressed photo. Checked on the training rows: no clean variant reaches either (CV clean rate
# unchanged). Applied only when the gated decision would be `clean`.
STRONG_SEPIA = 0.9
STRONG_JPEG_QUALITY = 50.0


def evidence(sev: dict[str, float], category: str) -> float:
    """The strongest severity among the degradations that make up `category` (`EVIDENCE`), fading
    counting for old_photo only with a companion (`FADING_COMPANIONS`)."""
    keys = EVIDENCE.get(category, ())
    best = max((sev.get(k, 0.0) for k in keys if k != "fading"), default=0.0)
    if "fading" in keys:
        comp = max(sev.get(k, 0.0) for k in FADING_COMPANIONS)
        if comp >= FADING_COMPANION:
            best = max(best, sev.get("fading", 0.0))
    return best


def strong_evidence(sev: dict[str, float], m: dict[str, float]) -> str | None:
    """The degraded category that unambiguous evidence names (see STRONG_SEPIA), or None."""
    if sev.get("sepia", 0.0) >= STRONG_SEPIA:
        return "old_photo"
    if float(m.get("jpeg_quality", 100.0)) <= STRONG_JPEG_QUALITY:
        return "social_media"
    return None


def raw_features(m: dict[str, float]) -> dict[str, float]:
    """The model's inputs before transformation: measures plus a few unambiguous recombinations."""
    # The learned opinions (the patch classifier's `patchnet_*`, the enlargement detector's
    # `enlargement_logit`) join after this model, never as its inputs: on the training renders they
    # are in-sample and would be trusted far beyond their worth.
    f = {k: float(v) for k, v in m.items() if k not in _SKIP and not k.startswith(LEARNED_PREFIXES)}
    # The cast's hue as a vector weighted by its strength: a warm (old print, tungsten) and a green
    # (fluorescent) cast are opposite directions, which the raw angle in degrees cannot say.
    hue = math.radians(float(m.get("cast_hue_deg", 0.0)))
    cast = float(m.get("color_cast", 0.0))
    f["cast_warm"] = cast * math.cos(hue - math.radians(60.0))
    f["cast_cool"] = cast * math.sin(hue - math.radians(60.0))
    # Short side in octaves: the structure detectors' densities depend somewhat on resolution.
    f["log2_short_side"] = math.log2(max(16.0, min(float(m.get("width", 512)), float(m.get("height", 512)))))
    return f


def _act(x: np.ndarray, kind: str) -> np.ndarray:
    if kind == "relu":
        return np.maximum(x, 0.0)
    if kind == "tanh":
        return np.tanh(x)
    return x


def mlp_forward(layers: list[dict[str, Any]], x: np.ndarray, activation: str) -> np.ndarray:
    """Forward pass of a perceptron stored as [{"W": [[...]], "b": [...]}, ...]; last layer linear."""
    for i, layer in enumerate(layers):
        x = x @ np.asarray(layer["W"]) + np.asarray(layer["b"])
        if i < len(layers) - 1:
            x = _act(x, activation)
    return x


class AnalyzerModel:
    """Inference of the fitted model; construct with the parsed JSON (see `load_model`)."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params
        tr = params["transform"]
        self.names: list[str] = tr["names"]
        self.log = np.asarray(tr["log"], dtype=bool)
        self.offset = np.asarray(tr["offset"], dtype=np.float64)
        self.mean = np.asarray(tr["mean"], dtype=np.float64)
        self.std = np.asarray(tr["std"], dtype=np.float64)
        self.categories: list[str] = params["classifier"]["classes"]
        self.gates: dict[str, float] = dict(params["classifier"].get("gates", {}))

    def features(self, m: dict[str, float]) -> np.ndarray:
        raw = raw_features(m)
        x = np.array([raw.get(n, 0.0) for n in self.names], dtype=np.float64)
        x[self.log] = np.log(np.maximum(x[self.log], 0.0) + self.offset[self.log])
        return np.clip((x - self.mean) / self.std, -_CLIP_Z, _CLIP_Z)

    def category_probabilities(self, z: np.ndarray) -> dict[str, float]:
        c = self.params["classifier"]
        p = np.mean([_softmax(mlp_forward(layers, z, c["activation"])) for layers in _members(c)], axis=0)
        if "members" in c:  # a single-perceptron model (`layers`) carries the offset in its last bias
            p[self.categories.index("clean")] *= math.exp(float(c.get("clean_offset", 0.0)))
            p /= p.sum()
        return {k: float(v) for k, v in zip(self.categories, p, strict=True)}

    def severities(self, z: np.ndarray, m: dict[str, float]) -> dict[str, float]:
        """Severities from the features `z` of the measures `m`: a regressor's output (its members'
        mean), or for keys whose own estimator ranks best alone (noise), that measure, then the
        monotone calibration."""
        out: dict[str, float] = {}
        for key, reg in self.params["severity"].items():
            if "measure" in reg:
                raw = float(m.get(reg["measure"], 0.0))
            else:
                raw = float(
                    np.mean([mlp_forward(layers, z, reg["activation"])[0] for layers in _members(reg)])
                )
            out[key] = float(np.clip(np.interp(raw, reg["calib_x"], reg["calib_y"]), 0.0, 1.0))
        return out


def _members(part: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """The perceptrons of a classifier or regressor: an ensemble's `members`, or the one `layers` of a
    model fitted before ensembles."""
    return part["members"] if "members" in part else [part["layers"]]


def _softmax(logits: np.ndarray) -> np.ndarray:
    p = np.exp(logits - logits.max())
    return p / p.sum()


def load_model(path: str | None = None) -> AnalyzerModel:
    """The model at `path`, the shipped one by default (parsed once per process)."""
    return _load_model(str(path) if path else None)  # one cache entry for `()` and `(None)`


@lru_cache(maxsize=4)
def _load_model(path: str | None) -> AnalyzerModel:
    file = Path(path) if path else MODEL_PATH
    if not file.is_file():
        raise FileNotFoundError(
            f"analyzer model {file} not found: fit one with `python -m ggt.analyze.fit --photos DIR "
            f"--out {file}`, or leave `analyze.heuristic.model` unset for the shipped model"
        )
    try:
        return AnalyzerModel(json.loads(file.read_text()))
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"analyzer model {file} is not a model `ggt.analyze.fit` wrote: {exc!r}") from exc
