"""`ggt.dataset.export`: the four formats, selection by decision, card, manifest and verify."""

import json
from collections import Counter

import numpy as np
import pytest
from dataset_helpers import decide, make_run

from ggt.dataset import ExportError, export, verify
from ggt.imaging import decode_png_fast

CATS = {"haze": 12, "rain": 8}


def _meta(out):
    return [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]


def test_folder_export_is_basicsr_shaped_with_metadata(tmp_path):
    run, ids = make_run(tmp_path, CATS, size=(24, 16), scale=2)
    s = export(run, "folder", tmp_path / "out", split="test=0.25", shard_size=6)
    out = tmp_path / "out"
    assert s.pairs == 20 and s.splits == {"train": 15, "test": 5} and s.shards == 4
    for split in ("train", "test"):
        lq = sorted(p.name for p in (out / split / "lq").iterdir())
        gt = sorted(p.name for p in (out / split / "gt").iterdir())
        assert lq == gt and len(lq) == s.splits[split]
        lines = (out / split / "meta_info.txt").read_text().splitlines()
        # BasicSR's paired meta files: "NAME.png (h,w,c)" of the GT.
        assert sorted(line.split(" ")[0] for line in lines) == gt
        assert all(line.endswith(" (32,48,3)") for line in lines)
    rows = _meta(out)
    assert len(rows) == 20 and {r["id"] for r in rows} == set(ids)
    r0 = rows[0]
    for key in ("id", "category", "source_name", "degradation", "prompt", "generator", "model", "qc",
                "decision", "split", "lq", "gt"):  # fmt: skip
        assert key in r0, key
    assert r0["qc"]["metrics"]["psnr"] >= 30 and r0["decision"]["reviewer"] == "policy"
    assert r0["model"] == "classical-model" and r0["degradation"]["category"] == r0["category"]
    assert (out / r0["gt"]).read_bytes() == (run / "hq" / "classical" / f"{r0['id']}.png").read_bytes()
    rep = verify(out)
    # images, meta_info x2, metadata, README, histogram, export.json
    assert rep.ok and rep.checked == 40 + 2 + 4


def test_folder_links_where_it_can_and_copies_otherwise(tmp_path):
    run, ids = make_run(tmp_path, {"haze": 3})
    export(run, "folder", tmp_path / "ln", split="test=0")
    export(run, "folder", tmp_path / "cp", split="test=0", link=False)
    src = run / "hq" / "classical" / f"{ids[0]}.png"
    assert (tmp_path / "ln" / "train" / "gt" / f"{ids[0]}.png").stat().st_ino == src.stat().st_ino
    assert (tmp_path / "cp" / "train" / "gt" / f"{ids[0]}.png").stat().st_ino != src.stat().st_ino
    assert verify(tmp_path / "ln").ok and verify(tmp_path / "cp").ok
    a, b = (
        (tmp_path / "ln" / "MANIFEST.sha256").read_text(),
        (tmp_path / "cp" / "MANIFEST.sha256").read_text(),
    )
    assert [x for x in a.splitlines() if ".png" in x] == [x for x in b.splitlines() if ".png" in x]


def test_reviewer_decisions_override_policy_and_include_selects(tmp_path):
    run, ids = make_run(tmp_path, {"haze": 6}, decision="keep")
    decide(run, ids[0], "reject")  # a person rejects a policy keep
    decide(run, ids[1], "skip")  # a skip is no decision: the policy's keep holds
    s = export(run, "folder", tmp_path / "a", split="test=0")
    names = {r["id"] for r in _meta(tmp_path / "a")}
    assert ids[0] not in names and ids[1] in names and s.excluded == {"rejected": 1}

    run2, ids2 = make_run(tmp_path / "b", {"haze": 4}, decision="review")
    decide(run2, ids2[2], "accept")  # a person accepts a pair QC sent to review
    s2 = export(run2, "folder", tmp_path / "b" / "out", split="test=0")
    assert s2.pairs == 1 and s2.excluded == {"undecided": 3}
    row = _meta(tmp_path / "b" / "out")[0]
    assert row["id"] == ids2[2] and row["decision"]["human"] and row["decision"]["reviewer"] == "alice"
    s3 = export(run2, "folder", tmp_path / "b" / "all", split="test=0", include=["kept", "undecided"])
    assert s3.pairs == 4


def test_webdataset_shards_by_count_and_bytes_read_back(tmp_path):
    import webdataset as wds

    run, _ = make_run(tmp_path, CATS, size=(64, 48))
    out = tmp_path / "wds"
    s = export(run, "webdataset", out, split="test=0.25", shard_size=4)
    tars = sorted((out / "train").glob("*.tar"))
    assert len(tars) == 4 and s.shards == 4 + 2  # 15 train in fours, 5 test in fours
    samples = list(wds.WebDataset([str(t) for t in tars], shardshuffle=False, empty_check=False))
    assert len(samples) == 15
    sm = samples[0]
    assert {"lq.png", "gt.png", "json"} <= set(sm)
    meta = json.loads(sm["json"])
    assert meta["name"] == sm["__key__"] and decode_png_fast(sm["gt.png"]).shape == (48, 64, 3)
    # A byte limit smaller than three pairs gives shards of at most two.
    per_pair = sum(len(sm[k]) for k in ("lq.png", "gt.png")) + 4096
    s2 = export(
        run, "webdataset", tmp_path / "wds2", split="test=0", shard_bytes=max(per_pair * 2 + 10, 1_000_000)
    )
    assert s2.shards >= 1 and verify(tmp_path / "wds2").ok
    assert verify(out).ok


def test_small_byte_limit_splits_tars(tmp_path, monkeypatch):
    run, _ = make_run(tmp_path, {"haze": 6}, size=(64, 48))
    # The config floor is 1 MB; the writer itself takes any limit, so shards of one pair are testable.
    s = export(run, "webdataset", tmp_path / "o", split="test=0", shard_bytes=1)
    assert s.shards == 6 and len(list((tmp_path / "o" / "train").glob("*.tar"))) == 6


def test_parquet_reads_in_pandas_and_datasets_with_image_features(tmp_path):
    import datasets
    import pandas as pd

    run, _ = make_run(tmp_path, CATS)
    out = tmp_path / "pq"
    s = export(run, "parquet", out, split="test=0.25", shard_size=8)
    df = pd.read_parquet(out / "data")
    assert len(df) == 20 and set(df["split"]) == {"train", "test"}
    assert Counter(df["category"]) == Counter({"haze": 12, "rain": 8}) and s.pairs == 20
    ds = datasets.load_dataset(
        "parquet", data_files={"train": str(out / "data" / "train-*.parquet")}, cache_dir=str(tmp_path / "c")
    )["train"]
    assert isinstance(ds.features["lq"], datasets.Image) and len(ds) == 15
    assert ds[0]["gt"].size == (40, 32)
    assert json.loads(ds[0]["metadata"])["id"] == ds[0]["id"]
    assert verify(out).ok


def test_hf_save_to_disk_round_trips(tmp_path):
    import datasets

    run, _ = make_run(tmp_path, CATS)
    out = tmp_path / "hf"
    s = export(run, "hf", out, split="test=5")
    d = datasets.load_from_disk(str(out))
    assert set(d) == {"train", "test"} and len(d["test"]) == 5 and len(d["train"]) == 15 == s.splits["train"]
    assert isinstance(d["train"].features["gt"], datasets.Image)
    assert np.asarray(d["train"][0]["lq"]).shape == (32, 40, 3)
    assert verify(out).ok


def test_card_has_counts_histogram_rates_generators_and_licence(tmp_path):
    run, _ = make_run(tmp_path, CATS, generators=("classical", "gemini"))
    s = export(run, "folder", tmp_path / "o", split="test=0.25", overrides=["export.license=CC-BY-4.0"])
    card = (tmp_path / "o" / "README.md").read_text()
    assert "license: CC-BY-4.0" in card and "| haze | 18 | 6 | 24 |" in card
    assert "| classical | classical-model | 20 |" in card and "| gemini | gemini-model | 20 |" in card
    assert "| qc policy keep | 40 | 40 | 100.0% |" in card and "adaptive: 40 pairs" in card
    assert (tmp_path / "o" / "card" / "resolution_histogram.png").read_bytes()[:4] == b"\x89PNG"
    # Two generators: names carry the generator, and both pairs of a photo stay on one side.
    rows = _meta(tmp_path / "o")
    assert s.pairs == 40 and all(r["name"].endswith(("_classical", "_gemini")) for r in rows)
    sides = {}
    for r in rows:
        sides.setdefault(r["id"], set()).add(r["split"])
    assert all(len(v) == 1 for v in sides.values())


def test_verify_reports_missing_extra_and_corrupt(tmp_path):
    run, _ = make_run(tmp_path, {"haze": 4})
    out = tmp_path / "o"
    export(run, "folder", out, split="test=0")
    files = sorted((out / "train" / "gt").iterdir())
    files[0].unlink()
    files[1].write_bytes(b"not a png")
    (out / "train" / "lq" / "stray.png").write_bytes(b"x")
    rep = verify(out)
    assert not rep.ok
    assert rep.missing == [f"train/gt/{files[0].name}"] and rep.corrupt == [f"train/gt/{files[1].name}"]
    assert rep.extra == ["train/lq/stray.png"]
    assert verify(tmp_path).notes  # not an export at all


def test_refuses_non_empty_folder_unless_resume_or_overwrite(tmp_path):
    run, _ = make_run(tmp_path, {"haze": 4})
    out = tmp_path / "o"
    out.mkdir()
    (out / "mine.txt").write_text("precious")
    with pytest.raises(ExportError, match="not empty"):
        export(run, "folder", out)
    with pytest.raises(ExportError, match="not a ggt export"):
        export(run, "folder", out, overwrite=True)
    assert (out / "mine.txt").read_text() == "precious"
    export(run, "folder", tmp_path / "e", split="test=0")
    with pytest.raises(ExportError, match="not empty"):
        export(run, "folder", tmp_path / "e", split="test=0")
    again = export(run, "folder", tmp_path / "e", split="test=0", resume=True)
    assert again.shards_resumed == again.shards and verify(tmp_path / "e").ok
    with pytest.raises(ExportError, match="other options"):
        export(run, "folder", tmp_path / "e", split="test=1", resume=True)
    s = export(run, "webdataset", tmp_path / "e", overwrite=True, split="test=0")
    assert (
        s.format == "webdataset"
        and not (tmp_path / "e" / "train" / "lq").exists()
        and verify(tmp_path / "e").ok
    )


def test_missing_hq_is_reported_and_skipped(tmp_path):
    run, ids = make_run(tmp_path, {"haze": 5})
    (run / "hq" / "classical" / f"{ids[2]}.png").unlink()
    s = export(run, "parquet", tmp_path / "o", split="test=0")
    assert s.pairs == 4 and [(x.id, x.reason) for x in s.skipped] == [(ids[2], "missing_hq")]
    assert "skipped" in s.notes[0] and verify(tmp_path / "o").ok


def test_hq_deleted_between_plan_and_write_is_skipped(tmp_path, monkeypatch):
    from ggt.dataset import exporter as ex

    run, ids = make_run(tmp_path, {"haze": 5})
    real = ex._make_plan

    def plan_then_delete(r, params):
        plan = real(r, params)
        (run / "hq" / "classical" / f"{ids[3]}.png").unlink()  # behind the store's back, mid-export
        return plan

    monkeypatch.setattr(ex, "_make_plan", plan_then_delete)
    s = export(run, "webdataset", tmp_path / "o", split="test=0")
    assert s.pairs == 4 and [(x.id, x.reason) for x in s.skipped] == [(ids[3], "missing_hq")]
    assert verify(tmp_path / "o").ok


def test_bad_options_fail_before_writing(tmp_path):
    run, _ = make_run(tmp_path, {"haze": 2})
    with pytest.raises(ExportError, match="unknown format"):
        export(run, "zip", tmp_path / "o")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="split"):
        export(run, "folder", tmp_path / "o", split="val=abc")
    with pytest.raises(ExportError, match="generator 'nope'"):
        export(run, "folder", tmp_path / "o", generator="nope")
    assert not (tmp_path / "o").exists()
