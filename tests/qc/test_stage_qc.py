"""`qc` on a tiny run folder: metrics stored once, decisions re-made per policy, report written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from qc_helpers import copy_run, make_run, qc_rows

from ggt.config import ConfigError
from ggt.qc.policy import default_policy_path
from ggt.store import Run


@pytest.fixture(scope="module")
def base_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("qcrun")
    # "copy": HQ = LQ; only a copy is certainly unrestored (the left_in corruption's bilateral draw is
    # reviewed, not rejected, see docs/qc-validation.md).
    ids = make_run(root, {"astronaut": "good", "chelsea": "shift", "coffee": "copy"})
    return root / "run", ids


def test_qc_decides_stores_and_reports(base_run: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    from ggt.qc.stage import qc

    run = copy_run(base_run[0], tmp_path / "run")
    ids = base_run[1]
    s = qc(run, overrides=["qc.workers=2"])
    v = s.variants["classical"]
    assert (v.pairs, v.metrics_computed, v.metrics_cached, v.judged) == (3, 3, 0, 3)
    rows = qc_rows(run)
    assert rows[ids["astronaut"]]["verdict"] == "keep", rows[ids["astronaut"]]["reasons"]
    assert rows[ids["chelsea"]]["verdict"] == "reject" and "shifted" in rows[ids["chelsea"]]["reasons"]
    assert rows[ids["coffee"]]["verdict"] == "reject" and "unchanged" in rows[ids["coffee"]]["reasons"]
    good = rows[ids["astronaut"]]
    assert good["category"] == "rain" and "misalign.shift_px" in good["metrics"]
    assert good["judge"]["verdict"] == "keep"
    # Nothing deleted: the rejected pair's HQ file and synth row are still there.
    assert (run / "hq" / "classical" / f"{ids['chelsea']}.png").exists()
    assert len(qc_rows(run, "synth")) == 3
    report = run / "reports" / "qc.html"
    text = report.read_text(encoding="utf-8")
    assert "shifted" in text and "<script" not in text
    assert (run / "reports" / "qc_metrics.png").stat().st_size > 1000
    assert list((run / "reports" / "thumbs").glob("*.jpg"))
    with Run.open(run) as r:
        assert r.store.scalar("SELECT COUNT(*) FROM decisions WHERE reviewer = 'policy'") == 3


def test_second_run_with_another_policy_does_not_recompute(
    base_run: tuple[Path, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ggt.qc.measure
    import ggt.qc.stage
    from ggt.qc.stage import qc

    run = copy_run(base_run[0], tmp_path / "run")
    ids = base_run[1]
    qc(run, overrides=["qc.report=false"])

    def boom(*a: object, **k: object) -> None:
        raise AssertionError("metrics recomputed")

    monkeypatch.setattr(ggt.qc.measure, "compute_all", boom)
    monkeypatch.setattr(ggt.qc.stage, "measure_pair", boom)
    monkeypatch.setattr(ggt.qc.stage, "bounded_map", boom)
    strict = tmp_path / "strict.yaml"
    strict.write_text(
        "name: strict\nrules:\n  - name: any_rain\n    when: psnr < 99\n    categories: [rain]\n    action: review\n"
    )
    s = qc(run, policy=strict, overrides=["qc.report=false"])
    v = s.variants["classical"]
    assert (v.metrics_computed, v.metrics_cached, v.judged, v.judge_cached) == (0, 3, 0, 3)
    rows = qc_rows(run)
    assert {r["verdict"] for r in rows.values()} == {"review"}
    assert rows[ids["astronaut"]]["reasons"] == ["any_rain"] and rows[ids["astronaut"]]["policy"] == "strict"
    with Run.open(run) as r:
        assert r.store.scalar("SELECT COUNT(*) FROM decisions") == 6  # three changed decisions appended
        # A person's decision stands unless redo_decisions.
        with r.store.transaction() as conn:
            conn.execute(
                "INSERT INTO decisions(item_id, variant, reviewer, decision, reasons, created_at)"
                " VALUES (?, 'classical', 'alice', 'keep', '[]', 0)",
                (ids["chelsea"],),
            )
    # The run remembers the last policy (config.yaml is provenance), by its absolute path: a later qc
    # from another folder still finds it.
    monkeypatch.chdir(tmp_path)
    assert qc(run, policy=Path("strict.yaml"), overrides=["qc.report=false"]).policy == str(strict)
    monkeypatch.chdir(run)
    assert qc(run, overrides=["qc.report=false"]).policy == str(strict)
    # `default` goes back to the shipped policy.
    again = qc(run, policy=Path("default"), overrides=["qc.report=false"])
    assert again.decisions_appended == 2 and again.policy == str(default_policy_path())
    assert (
        qc(run, policy=Path("default"), overrides=["qc.report=false"], redo_decisions=True).decisions_appended
        == 1
    )


def test_unknown_generator_and_bad_policy_key(base_run: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    from ggt.qc.policy import PolicyError
    from ggt.qc.stage import qc

    run = copy_run(base_run[0], tmp_path / "run")
    with pytest.raises(ConfigError, match="no synth results for generator 'gemini'"):
        qc(run, generator="gemini")
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - name: r\n    when: drift.de_meen > 3\n    action: reject\n")
    with pytest.raises(PolicyError, match=r"drift\.de_meen"):
        qc(run, policy=bad, overrides=["qc.report=false"])


def test_unreadable_hq_is_rejected_with_reason(base_run: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    from ggt.qc.stage import qc

    run = copy_run(base_run[0], tmp_path / "run")
    ids = base_run[1]
    (run / "hq" / "classical" / f"{ids['coffee']}.png").write_bytes(b"not a png")
    s = qc(run, overrides=["qc.report=false"])
    assert s.variants["classical"].metrics_failed == 1
    row = qc_rows(run)[ids["coffee"]]
    assert row["verdict"] == "reject" and row["reasons"][0].startswith("metrics_failed:")
    assert qc_rows(run, "qc_metrics")[ids["coffee"]]["status"] == "failed"


def test_inspect_pairs(base_run: tuple[Path, dict[str, str]]) -> None:
    from ggt.qc.stage import inspect_pairs

    run, ids = base_run
    with Run.open(run) as r:
        lq = {row["id"]: run / row["lq_path"] for row in r.store.query("SELECT id, lq_path FROM items")}
    good_hq = run / "hq" / "classical" / f"{ids['astronaut']}.png"
    lines = inspect_pairs(
        [lq[ids["astronaut"]], lq[ids["chelsea"]]], [good_hq, run / "missing.png"], overrides=["qc.workers=1"]
    )
    assert lines[0]["lq"] == str(lq[ids["astronaut"]]) and lines[0]["hq"] == str(good_hq)
    assert lines[0]["verdict"] in ("keep", "review") and isinstance(lines[0]["reasons"], list)
    assert "misalign.shift_px" in lines[0]["metrics"]
    assert "verdict" not in lines[1]
    assert lines[1]["error"].startswith(f"hq {run / 'missing.png'}: unreadable")  # not blamed on the LQ
    json.dumps(lines)
    with pytest.raises(ConfigError, match="one HQ per LQ"):
        inspect_pairs([good_hq], [])


def test_full_flow_ingest_analyze_synth_qc(tmp_path: Path) -> None:
    """The real upstream stages feed qc: one rain photo through analyze and the classical generator."""
    from qc_helpers import clean

    from ggt.analyze.stage import analyze
    from ggt.degrade import apply_preset
    from ggt.generate.stage import synth
    from ggt.imaging import encode_image
    from ggt.ingest import ingest
    from ggt.qc.stage import qc

    src = tmp_path / "src"
    src.mkdir()
    (src / "a.png").write_bytes(encode_image(apply_preset(clean("chelsea"), "rain", 5).image, "png"))
    run = tmp_path / "run"
    one = ["ingest.workers=1", "analyze.workers=1", "synth.workers=1", "qc.workers=1"]
    ingest([src], run, category="rain", overrides=one)
    a = analyze(run, overrides=one)
    assert a.failed == 0, a.failures
    assert synth(run, overrides=one).done == 1
    s = qc(run, overrides=one)
    v = s.variants["classical"]
    assert v.pairs == 1 and v.keep + v.review + v.reject == 1 and v.metrics_computed == 1
    (row,) = qc_rows(run).values()
    assert row["verdict"] in ("keep", "review", "reject") and row["category"] == "rain"
    assert Path(s.report or "").exists()


def test_metric_subset_skips_rules_over_unmeasured_metrics(
    base_run: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """As when BRISQUE or NIQE is not installed: their rules are skipped with a note, not a review each."""
    from ggt.qc.stage import qc

    run = copy_run(base_run[0], tmp_path / "run")
    names = "[misalign, psnr, drift, sharpness, noise, blockiness, fidelity, local_mismatch]"
    s = qc(run, overrides=["qc.report=false", f"qc.metrics={names}"])
    assert any("unnatural" in n and "unavailable" in n for n in s.notes)
    rows = qc_rows(run)
    assert not any(r.startswith("missing:") for row in rows.values() for r in row["reasons"])
    assert rows[base_run[1]["chelsea"]]["verdict"] == "reject"
