"""The trainer: loss falls, exact resume after a kill, NaN guard, Ctrl+C, config errors, data order, configs."""

import csv
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import yaml
from restore_helpers import config, make_pairs

from ggt.config import ConfigError
from ggt.restore.arch import build_arch
from ggt.restore.checkpoint import list_checkpoints, load_model, load_training_state
from ggt.restore.data import TrainStream
from ggt.restore.train import LOCK_FILE, TrainError, TrainRefused, lr_factor, train
from ggt.restore.train_config import DataConfig, TrainConfig, load_train_config, train_config_schema

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_pairs(tmp_path_factory.mktemp("pairs"))


def _losses(csv_path):
    with open(csv_path, newline="") as fh:
        return {int(r["iteration"]): float(r["loss"]) for r in csv.DictReader(fh)}


def test_tiny_nafnet_loss_falls_in_200_iterations(data, tmp_path):
    cfg = TrainConfig.model_validate(
        config(data, tmp_path, iterations=200, val_every=100, checkpoint_every=100)
    )
    r = train(cfg)
    assert r.iterations == 200 and not r.interrupted and r.checkpoint.name == "iter_000200"
    losses = [v for _, v in sorted(_losses(r.log_csv).items())]
    assert len(losses) == 200
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    assert last < 0.7 * first, (first, last)
    with open(r.val_csv, newline="") as fh:
        val = list(csv.DictReader(fh))
    assert [int(v["iteration"]) for v in val] == [100, 200]
    assert float(val[1]["psnr"]) > float(val[0]["psnr"]) > 15 and 0 < float(val[1]["ssim"]) <= 1
    assert any((r.tensorboard).glob("events.out.tfevents.*"))
    # model.safetensors holds the EMA weights; training_state.pt the raw ones.
    loaded = load_model(r.checkpoint)
    state = load_training_state(r.checkpoint)
    assert torch.equal(loaded.model.state_dict()["intro.weight"], state["ema"]["intro.weight"])
    assert not torch.equal(state["ema"]["intro.weight"], state["model"]["intro.weight"])


def test_short_run_checkpoints_resume_and_logs(data, tmp_path):
    cfg = TrainConfig.model_validate(config(data, tmp_path, iterations=12, checkpoint_every=5, val_every=6))
    r = train(cfg, stop_after=7)
    assert r.interrupted and r.iterations == 7
    assert [i for i, _ in list_checkpoints(tmp_path / "t" / "ckpt")] == [5, 7]
    r2 = train(cfg)
    assert r2.start_iteration == 7 and r2.iterations == 12 and r2.checkpoint.name == "iter_000012"
    assert sorted(_losses(r2.log_csv)) == list(range(1, 13))
    assert (tmp_path / "t" / "config.yaml").exists()
    # --no-resume starts over and replaces the run's checkpoints.
    r3 = train(cfg.model_copy(update={"iterations": 3}), resume=False)
    assert r3.start_iteration == 0 and [i for i, _ in list_checkpoints(tmp_path / "t" / "ckpt")] == [3]


def test_a_resume_that_would_change_the_training_is_refused_and_changes_nothing(data, tmp_path):
    cfg = TrainConfig.model_validate(config(data, tmp_path, iterations=4, checkpoint_every=2))
    train(cfg, stop_after=2)
    saved = (tmp_path / "t" / "config.yaml").read_text()
    wider = cfg.model_copy(update={"arch": cfg.arch.model_copy(update={"width": cfg.arch.width * 2})})
    with pytest.raises(TrainRefused, match="checkpoint is a"):
        train(wider)
    other = data.parent / "other"
    other.mkdir(exist_ok=True)
    moved = cfg.model_dump(mode="json")
    moved["datasets"]["train"]["path"] = str(other)
    with pytest.raises(TrainRefused, match="the first 2 iterations trained on"):
        train(TrainConfig.model_validate(moved))
    assert (tmp_path / "t" / "config.yaml").read_text() == saved
    assert train(cfg).start_iteration == 2  # the same training still resumes


def test_a_run_being_trained_is_not_trained_again_at_the_same_time(data, tmp_path):
    import fcntl

    cfg = TrainConfig.model_validate(config(data, tmp_path, iterations=2))
    run_dir = tmp_path / "t"
    run_dir.mkdir()
    with open(run_dir / LOCK_FILE, "a+") as held:  # as a training in another process holds it
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("4242")
        held.flush()
        with pytest.raises(TrainRefused, match=r"being trained by another process \(pid 4242\)"):
            train(cfg)
        assert not (run_dir / "ckpt").exists()
        from typer.testing import CliRunner

        from ggt.cli import app

        path = tmp_path / "cfg.yaml"
        path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
        res = CliRunner().invoke(app, ["train", "--config", str(path)])
        assert res.exit_code == 2 and "pid 4242" in res.output  # a usage error, not a failed training
    assert train(cfg).iterations == 2


def test_resume_after_sigkill_continues_exactly(data, tmp_path):
    base = config(data, tmp_path / "ref", iterations=16, checkpoint_every=4, grad_accum=2,
                  datasets={"train": {"path": str(data)}})  # fmt: skip
    ref = train(TrainConfig.model_validate(base))
    expected = _losses(ref.log_csv)

    killed = dict(base, output=str(tmp_path / "killed"))
    cfg_file = tmp_path / "killed.yaml"
    cfg_file.write_text(yaml.safe_dump(killed))
    script = tmp_path / "run.py"
    # Slow iterations after the first checkpoint so the kill lands mid-run.
    script.write_text(
        textwrap.dedent(f"""
        import time, torch
        torch.set_num_threads(1)
        from ggt.restore.train import train
        def slow(it, batch):
            if it > 4:
                time.sleep(0.5)
            return batch
        train({str(cfg_file)!r}, batch_hook=slow)
    """)
    )
    proc = subprocess.Popen([sys.executable, str(script)], cwd=ROOT)
    ckpt_root = tmp_path / "killed" / "t" / "ckpt"
    deadline = time.time() + 120
    while not list_checkpoints(ckpt_root) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    time.sleep(0.7)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = list_checkpoints(ckpt_root)[-1][0]
    assert 4 <= done < 16

    r = train(TrainConfig.model_validate(killed))
    assert r.start_iteration == done and r.iterations == 16
    got = _losses(r.log_csv)
    assert sorted(got) == list(range(1, 17))  # rows the killed run logged past its checkpoint were dropped
    for it in range(done + 1, 17):
        assert got[it] == pytest.approx(expected[it], abs=1e-6, rel=0), it
    a = load_training_state(r.checkpoint)["model"]
    b = load_training_state(ref.checkpoint)["model"]
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_nan_guard_stops_without_saving(data, tmp_path):
    cfg = TrainConfig.model_validate(config(data, tmp_path, iterations=10, checkpoint_every=2,
                                            losses=[{"type": "l1"}, {"type": "charbonnier"}]))  # fmt: skip

    def poison(it, batch):
        if it == 3:
            batch["lq"][0, 0, 0, 0] = float("nan")
        return batch

    with pytest.raises(
        TrainError, match=r"non-finite loss 'l1' = nan, loss 'charbonnier' = nan at iteration 3"
    ):
        train(cfg, batch_hook=poison)
    assert [i for i, _ in list_checkpoints(tmp_path / "t" / "ckpt")] == [2]
    assert max(_losses(tmp_path / "t" / "train_log.csv")) == 2


def test_cli_train_ctrl_c_saves_and_exits(data, tmp_path):
    cfg_file = tmp_path / "c.yaml"
    # One DataLoader worker: Ctrl+C goes to the whole process group, the worker included.
    cfg = config(data, tmp_path, iterations=100000, checkpoint_every=0, num_workers=1)
    cfg_file.write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "ggt.cli", "train", "--config", str(cfg_file)], cwd=ROOT,
                            env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    log = tmp_path / "t" / "train_log.csv"
    deadline = time.time() + 120
    while not (tmp_path / "t" / "tb").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(1.5)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl+C does
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    ((it, path),) = list_checkpoints(tmp_path / "t" / "ckpt")
    assert 0 < it < 100000 and f"checkpoint: {path}" in out.replace("\n", "")
    assert max(_losses(log)) == it


def test_cli_config_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("arch: {type: nafnet, widht: 8}\ndatasets: {train: {path: x}}\nbatchsize: 3\n")
    p = subprocess.run([sys.executable, "-m", "ggt.cli", "train", "--config", str(bad)], cwd=ROOT,
                       capture_output=True, text=True)  # fmt: skip
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "unknown key 'batchsize'" in p.stderr and "unknown option(s) widht; valid: img_channel" in p.stderr


def test_config_errors(tmp_path, data):
    base = config(data, tmp_path)
    with pytest.raises(ConfigError, match=r"unknown key 'optimizer.learning_rate'"):
        load_train_config(None, ["optimizer.learning_rate=0.1"], data=base)
    with pytest.raises(ConfigError, match="unknown loss type 'l3'"):
        load_train_config(None, data=dict(base, losses=[{"type": "l3"}]))
    with pytest.raises(ConfigError, match=r"milestones must lie in 1..iterations"):
        load_train_config(None, data=dict(base, scheduler={"type": "multistep", "milestones": [50]}))
    with pytest.raises(ConfigError, match=r"val_every is set but datasets.val is missing"):
        load_train_config(None, data=dict(base, val_every=5, datasets={"train": {"path": "x"}}))
    cfg = load_train_config(None, ["iterations=7", "arch.width=4"], data=base)
    assert cfg.iterations == 7 and cfg.arch.options.width == 4
    with pytest.raises(ValueError, match="is not a ggt export"):
        train(TrainConfig.model_validate(dict(base, datasets={"train": {"path": str(tmp_path)}})))
    bad_val = {"train": {"path": str(data)}, "val": {"path": str(tmp_path)}}
    with pytest.raises(ValueError, match="is not a ggt export"):
        train(TrainConfig.model_validate(dict(base, datasets=bad_val)))
    assert not (tmp_path / "t" / "config.yaml").exists()  # a config that cannot train leaves no record
    assert '"title": "ggt training configuration"' in train_config_schema()


def test_schedules():
    mk = lambda **s: TrainConfig.model_validate(  # noqa: E731
        {"arch": {"type": "nafnet"}, "datasets": {"train": {"path": "x"}}, "iterations": 100,
         "optimizer": {"lr": 1e-3}, "scheduler": s})  # fmt: skip
    f = lr_factor(mk(type="cosine", warmup=10, min_lr=0))
    assert f(0) == pytest.approx(0.1) and f(10) == pytest.approx(1) and f(55) == pytest.approx(0.5)
    assert f(100) == pytest.approx(0, abs=1e-12)
    g = lr_factor(mk(type="multistep", milestones=[30, 60], gamma=0.1))
    assert (g(29), g(30), g(60)) == (1, pytest.approx(0.1), pytest.approx(0.01))


def _batches(ds, n, batch, workers=0):
    it = iter(torch.utils.data.DataLoader(ds, batch_size=batch, num_workers=workers))
    return [next(it) for _ in range(n)]


def test_data_order_is_resumable_and_shardable(data):
    kw = {"crop": 16, "flips": True, "rot90": True, "seed": 3}
    cfg = DataConfig(path=data)
    full = _batches(TrainStream(cfg, batch=4, **kw), 6, 4)
    assert len({tuple(b["g"].tolist()) for b in full}) == 6
    assert full[0]["lq"].shape == (4, 3, 16, 16) and full[0]["gt"].shape == (4, 3, 16, 16)
    # Workers keep the order; a stream started at batch 4 gives batches 4 and 5 again.
    two = _batches(TrainStream(cfg, batch=4, **kw), 6, 4, workers=2)
    later = _batches(TrainStream(cfg, batch=4, start_batch=4, **kw), 2, 4)
    for a, b in zip(full, two, strict=True):
        assert torch.equal(a["lq"], b["lq"]) and a["name"] == b["name"]
    assert torch.equal(later[0]["gt"], full[4]["gt"]) and torch.equal(later[1]["gt"], full[5]["gt"])
    # Two ranks with batch 2 see exactly the samples of one process with batch 4.
    r0 = _batches(TrainStream(cfg, batch=2, rank=0, world=2, **kw), 6, 2)
    r1 = _batches(TrainStream(cfg, batch=2, rank=1, world=2, **kw), 6, 2)
    for a, b0, b1 in zip(full, r0, r1, strict=True):
        got = sorted(b0["g"].tolist() + b1["g"].tolist())
        assert got == a["g"].tolist()
        assert torch.equal(a["lq"][0], b0["lq"][0]) and torch.equal(a["lq"][1], b1["lq"][0])


def test_webdataset_stream(tmp_path):
    wds = make_pairs(tmp_path, n=8, fmt="webdataset")
    cfg = DataConfig(path=wds, shuffle_buffer=4)
    kw = {"crop": 16, "flips": True, "rot90": False, "seed": 1, "batch": 3}
    a = _batches(TrainStream(cfg, **kw), 4, 3)
    b = _batches(TrainStream(cfg, start_batch=2, **kw), 2, 3)
    assert torch.equal(a[2]["lq"], b[0]["lq"]) and torch.equal(a[3]["gt"], b[1]["gt"])
    w2 = _batches(TrainStream(cfg, **kw), 4, 3, workers=2)
    assert all(torch.equal(x["lq"], y["lq"]) for x, y in zip(a, w2, strict=True))
    r1 = _batches(TrainStream(cfg, **dict(kw, batch=1), rank=1, world=3), 2, 1)  # positions 1 and 4
    assert torch.equal(r1[0]["lq"][0], a[0]["lq"][1]) and torch.equal(r1[1]["lq"][0], a[1]["lq"][1])
    assert {n for x in a for n in x["name"]} <= {n for x in a for n in x["name"]} and a[0]["lq"].shape == (
        3,
        3,
        16,
        16,
    )
    cfg2 = TrainConfig.model_validate(config(wds, tmp_path / "o", iterations=2, checkpoint_every=0,
                                             datasets={"train": {"path": str(wds)}, "val": {"path": str(wds), "split": "test"}},
                                             val_every=2))  # fmt: skip
    r = train(cfg2)
    assert r.iterations == 2 and r.val is not None and r.val["psnr"] > 0


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "train").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_validate_and_build(path):
    cfg = load_train_config(path)
    model = build_arch(cfg.arch)
    assert sum(p.numel() for p in model.parameters()) > 0
    assert cfg.crop % cfg.arch.pad_multiple == 0 or cfg.arch.pad_multiple == 1
