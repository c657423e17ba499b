"""The fitted decision model: shipped parameters, numpy-only inference, ranking, reproducible fit."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest

from ggt.analyze import calibration as C
from ggt.analyze.heuristic import category_scores, severities
from ggt.analyze.measures import compute_measures
from ggt.analyze.model import MODEL_PATH, AnalyzerModel, _members, load_model, mlp_forward
from ggt.pypi_photos import PYPI_PHOTOS, held_out_names


def test_shipped_model_is_small_and_complete() -> None:
    params = json.loads(MODEL_PATH.read_text())
    assert MODEL_PATH.stat().st_size < 400_000  # five perceptrons per part (`fit --members 5`)
    assert params["classifier"]["classes"] == [
        "clean",
        "social_media",
        "old_photo",
        "rain",
        "snow",
        "haze",
        "low_light",
    ]
    assert set(params["severity"]) == {"noise", "blur", "jpeg", "haze", "low_light"}
    # Fitted on tune photos only: the benchmark's held-out photos must never appear here.
    held_out = {"coffee", "hubble_deep_field", "retina", "moon", "text", "gravel", "motorcycle", "clock"}
    assert not set(params["fitted_on"]["photos"]) & held_out
    # ... nor the PyPI photos the benchmark holds out; and `fitted` marks exactly the PyPI scenes it was fitted on.
    assert not set(params["fitted_on"]["photos"]) & set(held_out_names())
    assert {n for n, p in PYPI_PHOTOS.items() if p.fitted} <= set(params["fitted_on"]["photos"])
    assert max(params["fitted_on"]["seeds"]) < 1000  # the benchmark measures on seeds 1000+
    for reg in params["severity"].values():
        assert np.all(np.diff(reg["calib_x"]) > 0) and np.all(np.diff(reg["calib_y"]) >= 0)


def test_inference_needs_no_scikit_learn() -> None:
    code = (
        "import sys, numpy as np\n"
        "sys.modules['sklearn'] = None\n"  # any import of it would now fail
        "from ggt.analyze.heuristic import HeuristicAnalyzer\n"
        "r = HeuristicAnalyzer().analyze(np.full((64, 64, 3), 0.5, np.float32))\n"
        "print(r.category)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_probabilities(astronaut: np.ndarray) -> None:
    m = compute_measures(astronaut)
    p = category_scores(severities(m), m)
    assert set(p) == {"clean", "social_media", "old_photo", "rain", "snow", "haze", "low_light"}
    assert abs(sum(p.values()) - 1.0) < 1e-6 and all(0.0 <= v <= 1.0 for v in p.values())


@pytest.mark.parametrize(
    ("key", "make"),
    [
        ("noise", C.add_noise),
        ("blur", C.add_blur),
        ("jpeg", C.jpeg),
        ("haze", C.add_haze),
        ("low_light", C.low_light),
    ],
)
def test_severity_ranks_strength(key: str, make, photo_crop) -> None:  # type: ignore[no-untyped-def]
    img = photo_crop("chelsea", 256)
    got = []
    for s in (0.15, 0.5, 0.9):
        out, _ = make(img, np.random.default_rng(3), s)
        got.append(severities(compute_measures(out))[key])
    assert got[0] < got[1] < got[2], got


def _synthetic_rows() -> list[dict]:
    """Measure vectors around the shipped model's feature means, one class per offset, on the eight
    tune photos: enough to exercise every code path of the fit in well under a second."""
    from ggt.analyze.fit import CATEGORIES, SEVERITY_KEYS, TUNE

    rng = np.random.default_rng(0)
    template = compute_measures(np.random.default_rng(1).uniform(0, 1, (96, 96, 3)).astype(np.float32))
    rows = []
    for i in range(140):
        m = {k: float(v * rng.uniform(0.5, 1.5)) for k, v in template.items()}
        m["noise_sigma"] = float(rng.uniform(0, 0.2))
        t = {k: float(rng.uniform()) for k in SEVERITY_KEYS}
        rows.append(
            {"photo": TUNE[i % 8], "seed": i % 3, "src": "sim", "cat": CATEGORIES[i % 7], "t": t, "m": m}
        )
    return rows


def test_fit_refuses_rows_it_cannot_fit_out_of_photo() -> None:
    from ggt.analyze.fit import TUNE, fit_all

    rows = _synthetic_rows()
    with pytest.raises(ValueError, match="rows from 3 photos: the out-of-photo fit needs at least 4"):
        fit_all([r for r in rows if r["photo"] in TUNE[:3]])
    # Rows of the `alt` part alone carry no severity targets (only `base` and `extra` render them).
    with pytest.raises(ValueError, match=r"0 rows from 0 photos carry a \w+ severity target.*`--parts`"):
        fit_all([{**r, "t": {}} for r in rows])
    # A regressed key needs rows from as many photos as there are folds (here 4).
    targets_on_two = [{**r, "t": r["t"] if r["photo"] in TUNE[:2] else {}} for r in rows]
    with pytest.raises(
        ValueError, match=r"rows from 2 photos carry a \w+ severity target; its calibration needs rows from 4"
    ):
        fit_all(targets_on_two)


def test_the_model_names_a_users_photos_without_their_folders(monkeypatch: pytest.MonkeyPatch) -> None:
    from ggt.analyze import fit

    monkeypatch.setattr(fit, "MAX_ITER", 20)  # the code path, not a converged model
    rows = _synthetic_rows()
    for r in rows:
        if r["photo"] == fit.TUNE[0]:
            r["photo"] = "/home/someone/private/holiday_042.jpg"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = fit.fit_all(rows)
    for photos in (model["fitted_on"]["photos"], model["classifier"]["cv"]["photos"]):
        assert "holiday_042" in photos and not any("/" in p for p in photos) and fit.TUNE[1] in photos


def test_caches_that_overlap_enter_the_fit_once(capsys) -> None:  # type: ignore[no-untyped-def]
    from ggt.analyze.fit import unique_rows

    rows = _synthetic_rows()
    # Two `--photos` caches each hold the built-in photos' rows again (here the first 40).
    got = unique_rows(rows + json.loads(json.dumps(rows[:40])) + json.loads(json.dumps(rows[:40])))
    assert got == rows and "dropped 80 rows repeated" in capsys.readouterr().err
    assert unique_rows(rows) == rows and capsys.readouterr().err == ""


def test_the_fit_takes_the_measures_this_code_computes() -> None:
    from ggt.analyze.fit import feature_names, fit_transform

    # A cache can hold a measure tried and dropped since (half the rows here), or lack an optional one.
    rows = _synthetic_rows()
    for r in rows[::2]:
        r["m"] = {**r["m"], "hf_cliff": 3.0}
    rows[1]["m"] = {k: v for k, v in rows[1]["m"].items() if k != "blur_sigma_min"}
    names = fit_transform(rows)["names"]
    assert names == feature_names() == load_model().names
    assert "hf_cliff" not in names and "blur_sigma_min" in names


def test_fit_is_reproducible_on_synthetic_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    from ggt.analyze import fit  # fitting needs scikit-learn, part of the dev extra
    from ggt.analyze.fit import CATEGORIES, fit_all

    monkeypatch.setattr(fit, "MAX_ITER", 20)  # the code path, not a converged model

    base = load_model()
    rows = _synthetic_rows()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 20 iterations do not converge, by design
        a = fit_all(rows, seeds=(0,))
        b = fit_all(rows, seeds=(0,))
        steps: list[tuple[int, int]] = []
        pair = fit_all(rows, seeds=(0, 1), progress=lambda done, total: steps.append((done, total)))
    assert steps == [(0, 2), (1, 2), (2, 2)]
    assert json.dumps(a) == json.dumps(b)
    assert a["transform"]["names"] == base.names  # same feature set as the shipped model

    # An ensemble averages its members' probabilities and severity outputs, then applies the clean
    # offset it was gated with.
    assert (
        len(pair["classifier"]["members"]) == 2
        and pair["classifier"]["members"][0] == a["classifier"]["members"][0]
    )
    model = AnalyzerModel(pair)
    z = model.features(rows[3]["m"])
    singles = []
    for k in range(2):
        one = json.loads(json.dumps(pair))
        one["classifier"]["members"] = [pair["classifier"]["members"][k]]
        one["classifier"]["clean_offset"] = 0.0
        singles.append(AnalyzerModel(one).category_probabilities(z))
    mean = {c: (singles[0][c] + singles[1][c]) / 2 for c in CATEGORIES}
    boost = np.exp(pair["classifier"]["clean_offset"])
    want = {c: mean[c] * (boost if c == "clean" else 1.0) for c in CATEGORIES}
    got = model.category_probabilities(z)
    assert all(abs(got[c] - want[c] / sum(want.values())) < 1e-9 for c in CATEGORIES)
    # Members fitted by a pool (`jobs`) are the same members in the same order.
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr(fit, "render_pool", ThreadPoolExecutor)  # the path in-process, MAX_ITER as set
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        steps.clear()
        pooled = fit_all(rows, seeds=(0, 1), jobs=2, progress=lambda done, total: steps.append((done, total)))
    assert json.dumps(pooled) == json.dumps(pair) and steps == [(0, 2), (1, 2), (2, 2)]
    blur = pair["severity"]["blur"]
    raw = np.mean([mlp_forward(layers, z, "tanh")[0] for layers in blur["members"]])
    assert model.severities(z, rows[3]["m"])["blur"] == pytest.approx(
        float(np.clip(np.interp(raw, blur["calib_x"], blur["calib_y"]), 0, 1))
    )


def test_a_single_perceptron_model_reads_as_before() -> None:
    # Models fitted before ensembles keep one `layers` per part, the clean offset inside the last bias:
    # the same perceptron written as a one-member ensemble with the offset apart reads the same.
    params = json.loads(MODEL_PATH.read_text())
    clf = params["classifier"]
    clean, offset = clf["classes"].index("clean"), 1.5
    plain = json.loads(json.dumps(_members(clf)[0]))
    baked = json.loads(json.dumps(plain))
    baked[-1]["b"][clean] += offset
    bare = {k: v for k, v in clf.items() if k not in ("layers", "members")}
    old = AnalyzerModel({**params, "classifier": {**bare, "layers": baked}})
    new = AnalyzerModel({**params, "classifier": {**bare, "members": [plain], "clean_offset": offset}})
    z = old.features(compute_measures(np.random.default_rng(2).uniform(0, 1, (64, 64, 3)).astype(np.float32)))
    a, b = old.category_probabilities(z), new.category_probabilities(z)
    assert all(abs(a[c] - b[c]) < 1e-9 for c in a)
    assert (
        a["clean"]
        > AnalyzerModel({**params, "classifier": {**bare, "layers": plain}}).category_probabilities(z)[
            "clean"
        ]
    )


def test_shipped_model_has_evidence_gates() -> None:
    from ggt.analyze.model import EVIDENCE

    gates = load_model().gates
    assert set(gates) == set(EVIDENCE) == {"social_media", "old_photo", "rain", "snow", "haze", "low_light"}
    assert all(0.0 <= g <= 1.0 for g in gates.values())
    cv = json.loads(MODEL_PATH.read_text())["classifier"]["cv"]
    assert 0.0 <= cv["clean_rate"] <= 1.0 and 0.0 <= cv["degraded_accuracy"] <= 1.0


def test_a_category_without_its_evidence_falls_through(monkeypatch: pytest.MonkeyPatch) -> None:
    from ggt.analyze.heuristic import HeuristicAnalyzer

    model = load_model()
    monkeypatch.setattr(model, "gates", {**model.gates, "old_photo": 0.3, "rain": 0.3})
    an = HeuristicAnalyzer()
    scores = {"clean": 0.1, "social_media": 0.0, "old_photo": 0.6, "rain": 0.3, "snow": 0.0, "haze": 0.0,
              "low_light": 0.0}  # fmt: skip
    nothing = dict.fromkeys(["sepia", "fading", "scratches", "dust", "noise", "color_cast", "rain"], 0.0)
    assert an._category(scores, nothing) == "clean"  # resembles a print and rain, shows neither
    assert an._category(scores, {**nothing, "rain": 0.5}) == "rain"
    assert an._category(scores, {**nothing, "sepia": 0.5}) == "old_photo"
    assert an._category(scores) == "old_photo"  # without severities, no gate applies


def test_fit_gates_trade_clean_rate_for_accuracy() -> None:
    from ggt.analyze.fit import CATEGORIES, fit_gates, gated_predictions

    rng = np.random.default_rng(0)
    n = 400
    y = np.array([CATEGORIES[i % 7] for i in range(n)])
    logits = rng.normal(0, 1, (n, 7))
    logits[np.arange(n), [CATEGORIES.index(c) for c in y]] += 3.0
    ev = rng.uniform(0, 0.1, (n, 6))  # clean photos show almost no evidence ...
    for i, c in enumerate(y):
        if c != "clean":
            ev[i, CATEGORIES.index(c) - 1] = rng.uniform(0.2, 1.0)  # ... degraded ones show their own
        else:
            logits[i, 1:] += 4.0  # and the classifier alone would call clean photos degraded
    _off, gates, (_score, clean_rate, degraded) = fit_gates(logits, y, ev)
    ungated = gated_predictions(logits, ev, 0.0, np.zeros(6))
    assert np.mean(ungated[y == "clean"] == 0) < 0.5
    assert clean_rate > 0.9 and degraded > 0.6 and set(gates) == set(CATEGORIES[1:])


def _near_tie_rows() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows where only the rain gate matters: a gate of 0.15 or more rejects every clean photo (their
    rain evidence is 0.12); the rain photos' evidence starts at 0.26; 200 snow photos that nothing
    gets right keep the degraded accuracy the binding term of the score."""
    from ggt.analyze.fit import CATEGORIES

    y = np.array(["clean"] * 100 + ["rain"] * 1000 + ["snow"] * 200)
    logits = np.full((len(y), 7), -5.0)
    logits[:, CATEGORIES.index("rain")] = 0.0  # the classifier says rain for everything
    ev = np.zeros((len(y), 6))
    ev[:100, CATEGORIES.index("rain") - 1] = 0.12
    ev[100:1100, CATEGORIES.index("rain") - 1] = np.linspace(0.26, 1.0, 1000)
    return logits, y, ev


def test_fit_gates_keep_the_prior_gates_against_a_near_tie() -> None:
    from ggt.analyze.fit import GATE_MARGIN, fit_gates

    logits, y, ev = _near_tie_rows()
    ev[100, 2] = 0.2  # a free search now prefers 0.15-0.2 (one rain photo in 1000 more) to the prior 0.25
    free = fit_gates(logits, y, ev)
    kept = fit_gates(logits, y, ev, prior=(0.0, {"rain": 0.25}))
    assert 0.12 < free[1]["rain"] <= 0.2 and kept[1]["rain"] == 0.25
    assert 0 <= free[2][0] - kept[2][0] < GATE_MARGIN
    # A clearly better gate replaces the prior: at 0.4 a fifth of the rain photos are lost.
    moved = fit_gates(logits, y, ev, prior=(0.0, {"rain": 0.4}))
    assert moved[1]["rain"] <= 0.2 and moved[2][0] > kept[2][0]


@pytest.mark.slow
def test_fit_command_renders_and_fits_a_small_config(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`python -m ggt.analyze.fit` end to end on one seed of the Pillow-first part (about a minute)."""
    from ggt.analyze import fit

    cache = tmp_path / "rows.json"
    assert (
        fit.main(["--seeds", "1", "--parts", "alt", "--jobs", "2", "--render-only", "--cache", str(cache)])
        == 0
    )
    rows = json.loads(cache.read_text())
    assert {r["photo"] for r in rows} == set(fit.TUNE) | set(fit.EXTRA)
    assert {r["src"] for r in rows} >= {"alt_clean", "alt_rain", "alt_old_photo"}
    # Rendering again gives the same rows (seeded per photo and seed).
    steps: list[tuple[int, int]] = []
    again = fit.generate(1, 2, 0, ("alt",), progress=lambda done, total: steps.append((done, total)))
    assert json.dumps(again) == json.dumps(rows)
    jobs = len(fit.TUNE) + len(fit.EXTRA)  # one per photo at one seed
    assert steps == [(k, jobs) for k in range(jobs + 1)]


@pytest.mark.slow
def test_add_measures_completes_a_cache_as_a_full_render_would(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--add-measures`: rows rendered before a measure existed get it from a re-render that measures
    only the new ones, and then equal a full render's rows (about 20 s: one photo's `alt` part)."""
    from ggt.analyze import fit

    monkeypatch.setattr(fit, "TUNE", ("camera",))
    monkeypatch.setattr(fit, "EXTRA", {})
    full = fit.generate(1, 1, 3, ("alt",))
    added = set(fit._added_measures(np.full((64, 64, 3), 0.5, np.float32))) - {"noise_sigma"}
    assert added and all(added <= set(r["m"]) for r in full)
    old = json.loads(json.dumps(full))
    for r in old:
        for k in added:
            del r["m"][k]
    assert fit.add_measures(old, 1) == len(old)
    assert old == json.loads(json.dumps(full))  # same values (the added keys come last)
    assert fit.add_measures(old, 1) == 0  # nothing left to add
    old[0]["m"]["noise_sigma"] += 0.01  # not the image the cache holds: refused
    for k in added:
        del old[0]["m"][k]
    with pytest.raises(ValueError, match="differs"):
        fit.add_measures(old, 1)


def test_fit_renders_the_users_own_photos(tmp_path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """`--photos`: the user's clean photos join the `extra` part (built-in photos left out here for
    speed); an undecodable file is skipped with its reason, and `--add-measures` finds them again."""
    from PIL import Image

    from ggt.analyze import fit
    from ggt.photos import load_photo

    monkeypatch.setattr(fit, "TUNE", ())
    monkeypatch.setattr(fit, "EXTRA", {})
    mine = tmp_path / "mine"
    (mine / "sub").mkdir(parents=True)
    Image.fromarray(load_photo("astronaut")[100:220, 150:310]).save(mine / "a.png")
    Image.fromarray(load_photo("chelsea")[60:180, 100:260]).save(mine / "sub" / "b.jpg", quality=95)
    (mine / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    cache = tmp_path / "rows.json"
    argv = ["--seeds", "1", "--parts", "extra", "--jobs", "2", "--render-only", "--cache", str(cache)]
    assert fit.main([*argv, "--photos", str(mine)]) == 0
    err = capsys.readouterr().err
    assert "--photos: skipped" in err and "broken.jpg" in err and "2 photos join" in err
    rows = json.loads(cache.read_text())
    assert {r["photo"] for r in rows} == {
        str((mine / "a.png").resolve()),
        str((mine / "sub" / "b.jpg").resolve()),
    }
    assert {r["src"] for r in rows} >= {"clean", "sim", "own", "sim_step"}
    added = set(fit._added_measures(np.full((64, 64, 3), 0.5, np.float32))) - {"noise_sigma"}
    old = json.loads(json.dumps(rows))
    for r in old:
        for k in added:
            del r["m"][k]
    assert fit.add_measures(old, 2) == len(old) and old == rows
    with pytest.raises(SystemExit):  # an existing cache would be read, not rendered with the photos
        fit.main([*argv, "--photos", str(mine)])
    with pytest.raises(SystemExit):  # `base` renders the built-in tune photos only
        fit.main(["--parts", "base", "--cache", str(tmp_path / "new.json"), "--photos", str(mine)])
    capsys.readouterr()
    with pytest.raises(SystemExit):  # a usage error, not a traceback, and nothing is written
        fit.main(
            ["--parts", "extra", "--cache", str(tmp_path / "new.json"), "--photos", str(mine / "broken.jpg")]
        )
    assert f"--photos: no decodable photo under {mine / 'broken.jpg'}" in capsys.readouterr().err
    assert not (tmp_path / "new.json").exists()
