"""`ggt experiment`: synthetic arm vs GGT arm, the comparison files, and resuming without retraining."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")
pytest.importorskip("spandrel")

from test_restore_eval import make_export, nr_folder  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from ggt.cli import app  # noqa: E402
from ggt.config import ConfigError  # noqa: E402
from ggt.imaging import read_image  # noqa: E402
from ggt.restore.experiment import experiment  # noqa: E402
from ggt.restore.experiment_config import ExperimentConfig, load_experiment_config  # noqa: E402

NAFNET = {"type": "nafnet", "width": 4, "middle_blk_num": 1, "enc_blk_nums": [1], "dec_blk_nums": [1]}
MODELS = ("input", "synthetic", "ggt")


def _config(tmp_path: Path, data: Path, real: Path, iterations: int = 5, **train) -> dict:
    return {
        "name": "tiny", "out": str(tmp_path / "exp"), "ggt": str(data), "arch": NAFNET,
        "train": {"iterations": iterations, "crop": 32, "batch": 2, "num_workers": 0, "device": "cpu",
                  "checkpoint_every": 0, "log_every": 1, "optimizer": {"lr": 1e-3}, **train},
        "synthetic": {"preset": "realesrgan", "copies": 2, "seed": 3},
        "eval": {"fr_metrics": ["psnr", "ssim"], "nr_metrics": ["brisque"], "tile": 32, "overlap": 8,
                 "real_lq": [{"name": "real", "path": str(real)}], "sample_images": 1},
        "device": "cpu",
    }  # fmt: skip


def test_experiment_trains_both_arms_compares_and_does_not_retrain(tmp_path):
    data = make_export(tmp_path / "d")
    real = nr_folder(tmp_path)
    cfg = ExperimentConfig.model_validate(_config(tmp_path, data, real))
    r = experiment(cfg)
    out = tmp_path / "exp"

    # (a) the synthetic set: the GGT train split's GT images, each degraded twice by the simulator.
    train_rows = [json.loads(x) for x in (data / "metadata.jsonl").read_text().splitlines()]
    train_rows = [x for x in train_rows if x["split"] == "train"]
    syn = out / "data" / "synthetic"
    syn_rows = [json.loads(x) for x in (syn / "metadata.jsonl").read_text().splitlines()]
    assert r.synthetic_pairs == len(syn_rows) == 2 * len(train_rows) and not r.synthetic_reused
    first = syn_rows[0]
    assert first["degradation"]["preset"] == "realesrgan"
    src = next(x for x in train_rows if x["name"] == first["source_name"])
    gt = read_image(syn / first["gt"])
    assert np.array_equal(gt, read_image(data / src["gt"]))  # the same clean photo as the GGT pair
    assert np.abs(read_image(syn / first["lq"]) - gt).mean() > 0.005  # ... degraded

    # Both arms trained with the same architecture; checkpoints at the last iteration.
    for arm in ("synthetic", "ggt"):
        a = r.arms[arm]
        assert a.trained_now and a.iteration == 5 and (Path(a.checkpoint) / "model.safetensors").exists()
        assert yaml.safe_load((out / "train" / arm / "config.yaml").read_text())["arch"]["width"] == 4

    # The comparison: every (category, model) row of each test set, one column per metric.
    with open(out / "comparison.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["testset", "category", "model", "images", "psnr", "ssim", "brisque"]
    per_cat = json.loads((data / "export.json").read_text())["categories"]
    test_cats = sorted(c for c, splits in per_cat.items() if splits.get("test"))
    got = {(x["testset"], x["category"], x["model"]) for x in rows}
    want = {("test", c, m) for c in [*test_cats, "overall"] for m in MODELS}
    want |= {("real", c, m) for c in ("all", "rain", "snow", "overall") for m in MODELS}
    assert got == want
    assert all(x["brisque"] != "" for x in rows) and all(
        x["psnr"] == "" for x in rows if x["testset"] == "real"
    )
    md = (out / "comparison.md").read_text()
    assert "| category | model | images | psnr ↑ | ssim ↑ | brisque ↓ |" in md and "**" in md
    for name in ("test_psnr", "test_ssim", "test_brisque", "real_brisque"):
        assert (out / "plots" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    page = (out / "index.html").read_text()
    assert "plots/test_psnr.png" in page and "samples/" in page and "<table>" in page
    assert json.loads((out / "experiment.json").read_text())["arms"]["ggt"]["iteration"] == 5

    # A rerun reuses the data, both checkpoints and every evaluation.
    ckpt_time = (Path(r.arms["ggt"].checkpoint) / "model.safetensors").stat().st_mtime_ns
    eval_time = (out / "eval" / "test" / "ggt" / "eval.json").stat().st_mtime_ns
    table = (out / "comparison.csv").read_text()
    again = experiment(cfg)
    assert again.synthetic_reused and not any(a.trained_now for a in again.arms.values())
    assert (Path(again.arms["ggt"].checkpoint) / "model.safetensors").stat().st_mtime_ns == ckpt_time
    assert (out / "eval" / "test" / "ggt" / "eval.json").stat().st_mtime_ns == eval_time
    assert (out / "comparison.csv").read_text() == table

    # The CLI on the finished experiment: nothing to train, the table printed.
    cfg_file = tmp_path / "exp.yaml"
    cfg_file.write_text(yaml.safe_dump(_config(tmp_path, data, real)))
    res = CliRunner().invoke(app, ["experiment", "--config", str(cfg_file), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["arms"]["synthetic"]["trained_now"] is False

    # Changed training settings on a finished arm: a clear error naming --retrain.
    changed = ExperimentConfig.model_validate(_config(tmp_path, data, real, optimizer={"lr": 5e-4}))
    with pytest.raises(ValueError, match="--retrain"):
        experiment(changed)


def test_experiment_config_is_strict(tmp_path):
    base = _config(tmp_path, tmp_path / "d", tmp_path / "r")
    ExperimentConfig.model_validate(base)
    for bad, msg in (
        ({**base, "colour": 1}, "colour"),
        ({**base, "train": {**base["train"], "name": "x"}}, "set by the experiment"),
        ({**base, "train": {**base["train"], "iterationz": 3}}, "iterationz"),
        ({**base, "synthetic": {"preset": "nope"}}, "unknown preset"),
        ({**base, "arch": {"type": "restormer"}}, "non-commercial"),
        ({**base, "eval": {"real_lq": [{"name": "test", "path": "x"}]}}, "unique"),
    ):
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump(bad))
        with pytest.raises(ConfigError, match=msg):
            load_experiment_config(path)


def test_shipped_tiny_config_is_valid():
    cfg = load_experiment_config(
        Path(__file__).resolve().parents[2] / "configs/experiment/ggt_vs_synthetic_tiny.yaml"
    )
    assert cfg.arch.type == "nafnet" and cfg.train_config("ggt", cfg.ggt).iterations >= 100
