"""The patch classifier: numpy inference equal to the torch module it is fitted as, clear errors for
missing or foreign weights, the fit script's round trip, and how its opinion joins the decision."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ggt.analyze import calibration as C
from ggt.analyze import heuristic as H
from ggt.analyze.heuristic import HeuristicAnalyzer
from ggt.analyze.model import load_model
from ggt.analyze.patchnet import (
    CATEGORIES,
    PATCH,
    WEIGHTS_PATH,
    PatchNet,
    PatchNetError,
    at_least_patch,
    load_patchnet,
    patch_probabilities,
    patches,
)


def _torch_logits(net, x: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    import torch

    with torch.no_grad():
        return net(torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255).numpy()


def test_numpy_inference_equals_the_torch_module() -> None:
    torch = pytest.importorskip("torch")
    from ggt.analyze.fit_patchnet import build_net

    torch.manual_seed(3)
    net = build_net().eval()
    x = np.random.default_rng(0).integers(0, 256, (3, PATCH, PATCH, 3), dtype=np.uint8)
    got = PatchNet({k: v.numpy() for k, v in net.state_dict().items()}).logits(x)
    np.testing.assert_allclose(got, _torch_logits(net, x), rtol=1e-4, atol=1e-4)


def test_patches_spread_over_the_image_and_take_small_grey_and_rgba_images() -> None:
    img = np.arange(300 * 500 * 3, dtype=np.uint32).reshape(300, 500, 3).astype(np.uint8)
    p = patches(img)
    assert p.shape == (16, PATCH, PATCH, 3)
    assert np.array_equal(p[0], img[:PATCH, :PATCH]) and np.array_equal(p[-1], img[-PATCH:, -PATCH:])
    assert patches(np.zeros((40, 300), np.uint8)).shape == (16, PATCH, PATCH, 3)  # upscaled to 96 high
    assert patches(np.zeros((200, 200, 4), np.uint8)).shape == (16, PATCH, PATCH, 3)
    # A thin strip is read in its middle, not upscaled whole (2 x 100000 px would become 5.7 GB).
    strip = np.zeros((2, 100_000, 3), np.uint8)
    strip[:, 50_000:] = 255
    assert at_least_patch(strip).shape == (PATCH, 16 * PATCH, 3)
    p = patches(strip)
    assert p[0].max() == 0 and p[-1].min() == 255  # left half dark, right half bright: the middle


def test_missing_unreadable_or_foreign_weights_fail_clearly(tmp_path: Path, photo_crop) -> None:  # type: ignore[no-untyped-def]
    missing = tmp_path / "none.npz"
    with pytest.raises(PatchNetError, match=r"not found at .*none\.npz.*fit_patchnet.*patchnet: false"):
        load_patchnet(str(missing))
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip")
    with pytest.raises(PatchNetError, match="unreadable"):
        load_patchnet(str(garbage))
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, **{"f.1.weight": np.zeros((8, 12, 3, 3), np.float32)})
    with pytest.raises(PatchNetError, match=r"lack 'f\.1\.bias'"):
        load_patchnet(str(wrong))
    with np.load(WEIGHTS_PATH) as shipped:
        weights = {k: shipped[k] for k in shipped.files}
    weights["f.3.weight"] = weights["f.3.weight"][:, :8]
    np.savez(wrong, **weights)
    with pytest.raises(PatchNetError, match=r"\(24, 8, 3, 3\) layer where .* needs \(24, 24, 3, 3\)"):
        load_patchnet(str(wrong))
    img = photo_crop("astronaut", 128)
    with pytest.raises(PatchNetError, match="not found"):
        HeuristicAnalyzer(patchnet_weights=str(missing)).analyze(img)
    # Turned off, the analyzer needs no weights and reports no patch probabilities.
    rep = HeuristicAnalyzer(patchnet=False, patchnet_weights=str(missing)).analyze(img)
    assert not any(k.startswith("patchnet_") for k in rep.measures)


def test_fit_script_writes_weights_the_analyzer_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torch")
    from ggt.analyze import fit_patchnet as F

    x, y = F.render_job(("astronaut", 0, 0))
    assert x.dtype == np.uint8 and x.shape[1:] == (PATCH, PATCH, 3) and len(x) == len(y)
    assert set(np.unique(y)) == set(range(7))  # every category rendered
    net = F.train(x, y, epochs=1, batch=64, log=lambda _: None)
    F.save(net, tmp_path / "w.npz")
    np.testing.assert_allclose(
        load_patchnet(str(tmp_path / "w.npz")).logits(x[:4]), _torch_logits(net, x[:4]), rtol=1e-4, atol=1e-4
    )
    with pytest.raises(SystemExit):  # the benchmark's seeds (1000 and up) are never trained on
        F.main(["--first-seed", "990", "--seeds", "20", "--out", str(tmp_path / "x.npz")])
    assert "training seeds must stay below 1000" in capsys.readouterr().err
    # A cache rendered for other seeds is refused, not silently trained on.
    cache = tmp_path / "patches.npz"
    np.savez(cache, X=x, Y=y, photo=np.full(len(y), "astronaut"), seeds=np.arange(0, 1))
    with pytest.raises(SystemExit):
        F.main(["--seeds", "120", "--cache", str(cache), "--out", str(tmp_path / "y.npz")])
    assert f"--cache {cache} holds seeds 0-0, not 0-119" in capsys.readouterr().err
    assert not (tmp_path / "y.npz").exists()


def test_fit_script_trains_on_a_users_photos_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    import cv2

    from ggt.analyze import fit_patchnet as F
    from ggt.photos import load_photo

    mine = tmp_path / "mine"
    mine.mkdir()
    cv2.imwrite(str(mine / "street.png"), load_photo("astronaut")[::2, ::2, ::-1])
    (mine / "broken.jpg").write_bytes(b"not a jpeg")
    # Only the user's photo is rendered here (the built-in ones take a minute).
    monkeypatch.setattr(F.fit, "TUNE", ())
    monkeypatch.setattr(F.fit, "EXTRA", {})
    cache, out = tmp_path / "patches.npz", tmp_path / "w.npz"
    argv = ["--seeds", "1", "--epochs", "1", "--jobs", "1", "--photos", str(mine), "--cache", str(cache)]
    assert F.main([*argv, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"--photos: skipped {mine / 'broken.jpg'}" in err
    with np.load(cache) as d:
        assert set(d["photo"]) == {str((mine / "street.png").resolve())}
        assert set(np.unique(d["Y"])) == set(range(len(CATEGORIES)))
    assert load_patchnet(str(out)).logits(np.zeros((1, PATCH, PATCH, 3), np.uint8)).shape == (1, 7)
    # A cache holds the photos it was rendered from: new --photos need a new one.
    with pytest.raises(SystemExit):
        F.main([*argv, "--out", str(tmp_path / "again.npz")])
    assert "--photos renders new training patches" in capsys.readouterr().err
    assert not (tmp_path / "again.npz").exists()
    (mine / "street.png").unlink()
    with pytest.raises(SystemExit):
        F.main([*argv[:-1], str(tmp_path / "new.npz"), "--out", str(tmp_path / "again.npz")])
    assert f"--photos: no decodable photo under {mine}" in capsys.readouterr().err


def test_shipped_net_tells_rain_from_the_clean_photo(photo_crop) -> None:  # type: ignore[no-untyped-def]
    img = photo_crop("coffee", 384)  # a photo the fit never saw
    rain = C.add_rain(img, np.random.default_rng(4), 0.8)[0]
    clean_p, rain_p = patch_probabilities(img), patch_probabilities(rain)
    assert abs(sum(rain_p.values()) - 1.0) < 1e-9
    assert rain_p["patchnet_rain"] > 0.5 and rain_p["patchnet_rain"] > 5 * clean_p["patchnet_rain"]


def test_patch_opinion_joins_the_scores_and_stands_in_for_rain_evidence(photo_crop) -> None:  # type: ignore[no-untyped-def]
    from ggt.analyze.measures import compute_measures

    m = compute_measures(photo_crop("astronaut", 256))
    sev = H.severities(m)
    alone = H.category_scores(sev, m)
    sure = {f"patchnet_{c}": (0.94 if c == "rain" else 0.01) for c in alone}
    fused = H.category_scores(sev, {**m, **sure})
    assert fused["rain"] > alone["rain"] and abs(sum(fused.values()) - 1.0) < 1e-9
    # The gate reads the net's probabilities as evidence of the PATCH_EVIDENCE categories only.
    gated = H.gate_severities(sev, {**m, **sure})
    assert gated["rain"] == max(sev["rain"], 0.94) and "rain" in H.PATCH_EVIDENCE
    for k, v in gated.items():
        assert v == (max(sev[k], sure[f"patchnet_{k}"]) if k in H.PATCH_EVIDENCE else sev[k]), k
    assert H.gate_severities(sev, m) is sev


def test_rain_called_on_the_nets_evidence_still_names_rain(photo_crop, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    img = photo_crop("astronaut", 256)
    sure = {f"patchnet_{c}": (0.94 if c == "rain" else 0.01) for c in CATEGORIES}
    monkeypatch.setattr(H, "patch_probabilities", lambda *_: sure)
    monkeypatch.setattr(H, "PATCH_WEIGHT", 50.0)  # the net's word decides, whatever the measures say
    rep = HeuristicAnalyzer().analyze(img)
    assert rep.category == "rain"
    rain = [d for d in rep.degradations if d.type == "rain"]
    assert rain and rain[0].severity >= load_model().gates["rain"] > 0  # at least what the gate asks


def test_a_degraded_category_always_names_its_own_degradation(photo_crop, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # Haze's gate (0.05) is under the default min_severity (0.1): a photo called haze on faint haze
    # used to list no degradation, its prompt asked to remove nothing and the classical restorer
    # returned the LQ unchanged (the staged Ray test saw an HQ identical to its LQ).
    img = photo_crop("astronaut", 256)
    monkeypatch.setattr(load_model(), "gates", {})  # every category may be called
    for category in ("haze", "old_photo", "social_media", "rain"):
        forced = {c: (1.0 if c == category else 0.0) for c in CATEGORIES}
        monkeypatch.setattr(H, "category_scores", lambda *_, f=forced: f)
        rep = HeuristicAnalyzer(patchnet=False, min_severity=0.99).analyze(img)
        assert rep.category == category
        own = {*H._PRIMARY[category], "fading"} if category == "old_photo" else set(H._PRIMARY[category])
        assert [d.type for d in rep.degradations if d.type in own], (category, rep.degradations)
