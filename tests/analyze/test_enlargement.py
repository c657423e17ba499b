"""The enlargement detector: numpy inference equal to the torch module it is fitted as, clear errors
for missing or foreign weights, the shipped net on a photo and an enlarged copy of it, the override
of a `clean` call, and the fit script's round trip with its threshold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ggt.analyze import enlargement as E
from ggt.analyze.fit import feature_names
from ggt.analyze.heuristic import ENLARGEMENT_THRESHOLD, HeuristicAnalyzer
from ggt.analyze.model import load_model
from ggt.degrade import apply_pipeline


def _torch_logits(net, x: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    import torch

    with torch.no_grad():
        return net(torch.from_numpy(x).permute(0, 3, 1, 2).float()).numpy()


def test_numpy_inference_equals_the_torch_module(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from ggt.analyze import fit_enlargement as F

    torch.manual_seed(5)
    net = F.build_net().eval()
    F.save(net, tmp_path / "w.npz")
    x = np.random.default_rng(0).normal(0, 2, (3, E.PATCH, E.PATCH, 3)).astype(np.float32)
    got = E.load_enlargement_net(str(tmp_path / "w.npz")).logits(x)
    np.testing.assert_allclose(got, _torch_logits(net, x), rtol=1e-4, atol=1e-4)


def test_missing_unreadable_or_foreign_weights_fail_clearly(tmp_path: Path, photo_crop) -> None:  # type: ignore[no-untyped-def]
    missing = tmp_path / "none.npz"
    with pytest.raises(
        E.EnlargementNetError, match=r"not found at .*none\.npz.*fit_enlargement.*enlargement: false"
    ):
        E.load_enlargement_net(str(missing))
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip")
    with pytest.raises(E.EnlargementNetError, match="unreadable"):
        E.load_enlargement_net(str(garbage))
    with np.load(E.WEIGHTS_PATH) as shipped:
        weights = {k: shipped[k] for k in shipped.files}
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, **{k: v for k, v in weights.items() if k != "conv2.bias"})
    with pytest.raises(E.EnlargementNetError, match=r"lack 'conv2\.bias'"):
        E.load_enlargement_net(str(wrong))
    np.savez(wrong, **{**weights, "conv1.weight": weights["conv1.weight"][:, :8]})
    with pytest.raises(E.EnlargementNetError, match=r"\(32, 8, 3, 3\) layer where .* needs \(32, 16, 3, 3\)"):
        E.load_enlargement_net(str(wrong))
    np.savez(wrong, **{**weights, "head.weight": np.zeros((2, 128), np.float32)})
    with pytest.raises(E.EnlargementNetError, match=r"head is \(2, 128\), not \(1, 128\)"):
        E.load_enlargement_net(str(wrong))
    img = photo_crop("astronaut", 128)
    with pytest.raises(E.EnlargementNetError, match="not found"):
        HeuristicAnalyzer(enlargement_weights=str(missing)).analyze(img)
    # Turned off, the analyzer needs no weights and reports no logit.
    rep = HeuristicAnalyzer(enlargement=False, enlargement_weights=str(missing)).analyze(img)
    assert "enlargement_logit" not in rep.measures


def test_an_image_too_small_for_a_patch_gets_no_opinion_and_rgba_is_read(photo_crop) -> None:  # type: ignore[no-untyped-def]
    net = E.load_enlargement_net()
    assert net.logit(photo_crop("astronaut", 256)[:40]) == 0.0
    rgb = (photo_crop("astronaut", 256) * 255 + 0.5).astype(np.uint8)
    rgba = np.concatenate([rgb, np.full((*rgb.shape[:2], 1), 255, np.uint8)], axis=2)
    assert net.logit(rgba) == net.logit(rgb) != 0.0


def _enlarged(img: np.ndarray, scale: float, quality: int) -> np.ndarray:
    """What a platform does to a photo and a viewer saves: shrink, JPEG, enlarge back."""
    h, w = img.shape[:2]
    steps = [
        {"type": "resize", "params": {"scale": scale, "interpolation": "area"}},
        {"type": "jpeg", "params": {"qualities": [quality]}},
        {"type": "resize_to", "params": {"height": h, "width": w, "interpolation": "bicubic"}},
    ]
    return apply_pipeline(img, steps, seed=0).image


@pytest.mark.parametrize("name", ["coffee", "motorcycle"])  # photos the net never saw
def test_shipped_net_tells_an_enlarged_copy_from_the_photo(photo_crop, name: str) -> None:  # type: ignore[no-untyped-def]
    img = photo_crop(name, 384)
    net = E.load_enlargement_net()
    photo, copy = net.logit(img), net.logit(_enlarged(img, 0.6, 80))
    assert photo < ENLARGEMENT_THRESHOLD <= copy, (photo, copy)


def test_the_detector_overrules_a_clean_call_only(photo_crop) -> None:  # type: ignore[no-untyped-def]
    an = HeuristicAnalyzer()
    img = photo_crop("coffee", 256)
    rep = an.analyze(img)
    assert rep.category == "clean" and rep.measures["enlargement_logit"] < ENLARGEMENT_THRESHOLD
    m = dict(rep.measures)
    sev = {d.type: d.severity for d in rep.degradations}
    scores = {"clean": 0.6, "social_media": 0.1, "rain": 0.3}
    assert an._category(scores, sev, {**m, "enlargement_logit": ENLARGEMENT_THRESHOLD - 0.01}) == "clean"
    assert an._category(scores, sev, {**m, "enlargement_logit": ENLARGEMENT_THRESHOLD}) == "social_media"
    # Turned off, or with a floor social_media's probability does not reach, clean stays clean.
    off = HeuristicAnalyzer(enlargement=False)
    assert off._category(scores, sev, {**m, "enlargement_logit": 99.0}) == "clean"
    floored = HeuristicAnalyzer(social_media_category=0.2)
    assert floored._category(scores, sev, {**m, "enlargement_logit": 99.0}) == "clean"
    # A stricter threshold from the config is honoured; a degraded call is never overruled.
    assert (
        HeuristicAnalyzer(enlargement_threshold=5.0)._category(scores, sev, {**m, "enlargement_logit": 4.0})
        == "clean"
    )
    rain_first = {"clean": 0.2, "social_media": 0.1, "rain": 0.7}
    assert an._category(rain_first, {**sev, "rain": 0.9}, {**m, "enlargement_logit": 99.0}) == "rain"


def test_an_enlarged_copy_is_called_social_media_and_names_a_degradation(photo_crop) -> None:  # type: ignore[no-untyped-def]
    copy = _enlarged(photo_crop("coffee", 384), 0.5, 80)  # the measures alone read it clean
    assert HeuristicAnalyzer(enlargement=False).analyze(copy).category == "clean"
    rep = HeuristicAnalyzer().analyze(copy)
    assert rep.category == "social_media"
    assert {d.type for d in rep.degradations} & {"noise", "blur", "jpeg", "low_resolution"}


def test_the_logit_is_reported_but_never_a_model_input() -> None:
    assert not any(n.startswith("enlargement") for n in load_model().names)
    assert "enlargement_logit" not in feature_names()


def test_fit_script_trains_and_sets_a_threshold_on_photos_it_left_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    import cv2

    from ggt.analyze import fit_enlargement as F
    from ggt.photos import load_photo

    x, y = F.render_job(("astronaut", 0, 2))
    assert x.dtype == np.float16 and x.shape == (4 * F.PATCHES_PER_IMAGE, 3, E.PATCH, E.PATCH)
    assert list(y) == [0] * 8 + [1] * 8 + [0] * 8 + [1] * 8  # per draw: the clean image, then its render

    mine = tmp_path / "mine"
    mine.mkdir()
    cv2.imwrite(str(mine / "a.png"), load_photo("chelsea")[:, :, ::-1])
    cv2.imwrite(str(mine / "b.png"), load_photo("coffee")[::2, ::2, ::-1])
    (mine / "broken.jpg").write_bytes(b"not a jpeg")
    monkeypatch.setattr(F, "PHOTOS", ())  # only the user's two photos (the built-in ones take a minute)
    out = tmp_path / "w.npz"
    argv = ["--photos", str(mine), "--folds", "2", "--fold", "1", "--draws", "2", "--epochs", "1"]
    assert F.main([*argv, "--jobs", "1", "--calibrate", "--calibration-draws", "2", "--out", str(out)]) == 0
    cap = capsys.readouterr()
    assert f"--photos: skipped {mine / 'broken.jpg'}" in cap.err
    assert "32 patches of 1 photos" in cap.out  # a.png trained on, b.png left out for the threshold
    # b.png's two clean crops (those the analyzer reads clean) set the threshold.
    words = next(s for s in cap.out.splitlines() if s.startswith("enlargement_threshold:")).split()
    assert np.isfinite(float(words[1])) and 1 <= int(words[words.index("of") + 1]) <= 2
    assert np.isfinite(E.load_enlargement_net(str(out)).logit(load_photo("coffee")))
    with pytest.raises(SystemExit):
        F.main(["--photos", str(mine), "--folds", "2", "--fold", "2", "--out", str(tmp_path / "x.npz")])
    assert "--fold must be in 0..1" in capsys.readouterr().err
    (mine / "a.png").unlink()
    (mine / "b.png").unlink()
    with pytest.raises(SystemExit):
        F.main([*argv, "--out", str(tmp_path / "x.npz")])
    assert f"--photos: no decodable photo under {mine}" in capsys.readouterr().err
    assert not (tmp_path / "x.npz").exists()
