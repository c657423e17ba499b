"""The heuristic analyzer: clean photos stay clean, strong degradations get their category."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ggt.analyze import calibration as C
from ggt.analyze.heuristic import HeuristicAnalyzer, HeuristicConfig
from ggt.analyze.model import MODEL_PATH
from ggt.analyze.report import DegradationReport

AN = HeuristicAnalyzer()


@pytest.mark.parametrize("name", ["astronaut", "camera", "chelsea", "coins", "rocket"])  # tune photos
def test_clean_photos_are_clean(name: str, photo_crop) -> None:  # type: ignore[no-untyped-def]
    rep = AN.analyze(photo_crop(name, 320))
    assert rep.category == "clean", rep.model_dump(exclude={"measures"})
    assert rep.degradations == []  # nothing for a prompt to "remove"
    assert rep.measures  # but the numbers behind the judgement are kept


def _rng() -> np.random.Generator:
    return np.random.default_rng(4)


@pytest.mark.parametrize(
    ("category", "make"),
    [
        ("haze", lambda im: C.add_haze(im, _rng(), 0.8)[0]),
        ("low_light", lambda im: C.low_light(im, _rng(), 0.8)[0]),
        # The classifier scores this faded full-sepia print clean 0.49 vs old_photo 0.28; a fully
        # toned monochrome (sepia >= model.STRONG_SEPIA) overrules `clean` (model.strong_evidence).
        ("old_photo", lambda im: C.fade(C.sepia(im, _rng(), 1.0)[0], _rng(), 0.4)[0]),
        pytest.param(
            "social_media",
            lambda im: C.jpeg(C.resize_down(im, _rng(), 0.5)[0], _rng(), 0.8)[0],
            # Known miss of the current model: a q 23 JPEG shrunk to 140x140 shows JPEG severity 0.38
            # (past the social_media evidence gate) but the classifier scores it clean 0.69, and the
            # quantisation-table estimate finds only 2 of the 3 steps it needs on 17x17 blocks, so the
            # strong-evidence override (a recovered table at q <= 50) does not apply either.
            marks=pytest.mark.xfail(reason="small q 23 JPEG scored clean by the classifier", strict=False),
        ),
        ("rain", lambda im: C.add_rain(im, _rng(), 0.8)[0]),
        ("snow", lambda im: C.add_snow(im, _rng(), 0.8)[0]),
    ],
)
def test_strong_degradations_get_their_category(category: str, make, photo_crop) -> None:  # type: ignore[no-untyped-def]
    rep = AN.analyze(make(photo_crop("astronaut", 384)))
    assert rep.category == category, rep.model_dump(exclude={"measures"})


def test_report_shape(photo_crop) -> None:  # type: ignore[no-untyped-def]
    img = C.add_noise(photo_crop("astronaut", 256), _rng(), 0.5)[0]
    rep = AN.analyze(img)
    assert isinstance(rep, DegradationReport)
    assert rep.analyzer == "heuristic" and rep.model is None
    assert rep.measures["noise_sigma"] > 0.03
    assert any(d.type == "noise" and 0.2 < d.severity <= 1.0 for d in rep.degradations)
    sev = [d.severity for d in rep.degradations]
    assert sev == sorted(sev, reverse=True)
    DegradationReport.model_validate_json(rep.model_dump_json())  # JSON round trip


def test_motion_blurred_clock_reads_motion_blur() -> None:
    from ggt.photos import load_photo

    rep = AN.analyze(load_photo("clock").astype(np.float32) / 255)
    assert "motion_blur" in {d.type for d in rep.degradations}


def test_config_thresholds(photo_crop) -> None:  # type: ignore[no-untyped-def]
    img = C.add_noise(photo_crop("astronaut", 256), _rng(), 0.2)[0]
    strict = HeuristicAnalyzer(HeuristicConfig(min_severity=0.99)).analyze(img)
    assert strict.degradations == []
    assert HeuristicAnalyzer(min_severity=0.99).config.min_severity == 0.99
    with pytest.raises(ValueError):
        HeuristicConfig(unknown=1)  # type: ignore[call-arg]


def test_a_model_file_from_the_config_replaces_the_shipped_one(tmp_path, photo_crop) -> None:  # type: ignore[no-untyped-def]
    dark = photo_crop("astronaut", 256, 0.3, 0.3) * 2.0**-4  # four stops under
    assert HeuristicAnalyzer().analyze(dark).category == "low_light"
    params = json.loads(MODEL_PATH.read_text())
    params["classifier"]["gates"]["low_light"] = 1.01  # no photo can show that much
    mine = tmp_path / "mine.json"
    mine.write_text(json.dumps(params))
    report = HeuristicAnalyzer(HeuristicConfig(model=str(mine))).analyze(dark)
    assert report.category != "low_light"
    with pytest.raises(FileNotFoundError, match=r"fit one with `python -m ggt\.analyze\.fit --photos"):
        HeuristicAnalyzer(HeuristicConfig(model=str(tmp_path / "absent.json")))
    (tmp_path / "junk.json").write_text('{"version": 1}')
    with pytest.raises(ValueError, match=r"is not a model `ggt\.analyze\.fit` wrote"):
        HeuristicAnalyzer(HeuristicConfig(model=str(tmp_path / "junk.json")))
