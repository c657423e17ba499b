"""Two processes under torchrun (gloo on CPU) train like one process with twice the batch; rank 0 writes."""

import os
import subprocess
import sys
from pathlib import Path

import torch
import yaml
from restore_helpers import config, make_pairs

from ggt.restore import ddp
from ggt.restore.checkpoint import list_checkpoints, load_training_state
from ggt.restore.train import train
from ggt.restore.train_config import TrainConfig

ROOT = Path(__file__).resolve().parents[2]


def test_torchrun_two_processes_match_one_process(tmp_path):
    data = make_pairs(tmp_path)
    common = {"iterations": 6, "checkpoint_every": 3, "ema": None, "datasets": {"train": {"path": str(data)}}}
    cfg_ddp = config(data, tmp_path / "ddp", batch=2, **common)
    (tmp_path / "ddp.yaml").write_text(yaml.safe_dump(cfg_ddp))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "ggt.cli",
         "train", "--config", str(tmp_path / "ddp.yaml"), "--json"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.count('"checkpoint"') == 1  # only rank 0 reports
    ckpts = list_checkpoints(tmp_path / "ddp" / "t" / "ckpt")
    assert [i for i, _ in ckpts] == [3, 6]
    state = load_training_state(ckpts[-1][1])
    assert state["world"] == 2 and len(state["rng"]) == 2

    torch.set_num_threads(1)
    single = train(TrainConfig.model_validate(config(data, tmp_path / "one", batch=4, **common)))
    ref = load_training_state(single.checkpoint)["model"]
    for k, v in state["model"].items():
        assert torch.allclose(v, ref[k], atol=1e-5, rtol=1e-4), k
    lines = [
        ln.split(",")[2] for ln in (tmp_path / "ddp" / "t" / "train_log.csv").read_text().splitlines()[1:]
    ]
    assert len(lines) == 6


def test_teardown_waits_for_the_peers_only_after_a_finished_run(monkeypatch):
    """A finished rank waits at a barrier before leaving (so no rank exits while another still writes);
    after an error it leaves at once, since a failed peer may never reach the barrier."""
    calls: list[str] = []
    monkeypatch.setattr(ddp.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(ddp.dist, "barrier", lambda: calls.append("barrier"))
    monkeypatch.setattr(ddp.dist, "destroy_process_group", lambda: calls.append("destroy"))
    two = ddp.Dist(rank=1, local_rank=1, world=2)
    ddp.teardown(two, finished=True)
    assert calls == ["barrier", "destroy"]
    calls.clear()
    ddp.teardown(two, finished=False)
    assert calls == ["destroy"]
    calls.clear()
    ddp.teardown(ddp.Dist(), finished=True)  # one process: no group to leave
    assert calls == []
