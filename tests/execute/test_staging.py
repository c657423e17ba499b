"""Staged shards without Ray: inputs uploaded to memory:// storage, the worker's shard function run
in-process against it, outputs downloaded and hash-checked by the driver, lost outputs failing their items,
and a driver killed between the download and the store commit."""

import os
import uuid
from pathlib import Path
from types import SimpleNamespace

import cloudpickle
import pytest

from ggt.config import ExecuteConfig
from ggt.execute import shards as sh
from ggt.execute import staging as stg
from ggt.execute.local import Outcome, item_outcome
from ggt.execute.ray_exec import _item_shard, commit_rows, mark_committed, settle_unplanned
from ggt.execute.storage import Storage
from ggt.store import RunStore


def shout(item_id: str, lq_path: str, root: str, out_rel: str) -> Outcome:
    """A stand-in stage function: reads its input, writes an output under the run root (like synth)."""

    def work() -> dict:
        data = Path(lq_path).read_bytes()
        out = Path(root) / out_rel
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data.upper())
        return {"hq_path": out_rel, "bytes": len(data)}

    return item_outcome(item_id, work, paths=(lq_path,))


@pytest.fixture
def run(tmp_path):
    root = tmp_path / "the-run-folder"
    (root / "lq").mkdir(parents=True)
    (root / "lq" / "a.png").write_bytes(b"alpha")
    (root / "lq" / "b.png").write_bytes(b"beta")
    (root / "lq" / "c.png").write_bytes(b"alpha")  # same content as a: stored once
    store = RunStore(root / "ggt.sqlite")
    with store.transaction() as conn:
        for item in ("a", "b", "c", "gone"):
            conn.execute(
                "INSERT INTO items(id, sha256, category, source_path, source_name, source_bytes, format, mode,"
                " width, height, lq_path, phash, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (item, item * 8, "haze", "/s", "s", 1, "PNG", "RGB", 8, 8, f"lq/{item}.png", "0", 0.0),
            )
    yield SimpleNamespace(root=root, store=store)
    store.close()


@pytest.fixture
def storage():
    return Storage(f"memory://ggt-stage-{uuid.uuid4().hex[:8]}/shards")


def _shard(run, storage, ids=("a", "b", "c", "gone"), rel="synth/v/s1"):
    """The driver's part: stage the args, write the spec; then the worker's part, in-process."""
    chunk = [(i, str(run.root / "lq" / f"{i}.png"), str(run.root), f"hq/v/{i}.png") for i in ids]
    uploader = stg.Uploader(storage, run.root)
    spec = stg.item_spec(uploader, stg.run_roots(run.root), shout, chunk)
    blob = cloudpickle.dumps(spec)
    storage.write_bytes(f"{rel}/{sh.SPEC}", blob)
    counts = _item_shard(storage.url, rel)
    return rel, blob, uploader, counts


def test_staged_shard_round_trip_on_memory_storage(run, storage):
    rel, blob, uploader, counts = _shard(run, storage)
    # The worker got run-relative paths only, and each distinct input once.
    assert str(run.root).encode() not in blob and b"the-run-folder" not in blob
    assert uploader.uploaded == 2 and len(storage.listdir(stg.FILES)) == 2
    assert counts == {"done": 3, "failed": 1}
    assert not (run.root / "hq").exists()  # the worker never wrote into the run folder
    rows, meta = sh.read_result(storage, rel)
    assert sorted(meta["outputs"]) == ["a", "b", "c"]
    assert meta["outputs"]["a"] == [{"path": "hq/v/a.png", "sha256": stg.sha256(b"ALPHA"), "size": 5}]
    # The missing input failed as it would locally, its message naming the worker's root as a token...
    gone = next(r for r in rows if r["item_id"] == "gone")
    assert gone["reason"] == "missing_file" and stg.ROOT_TOKEN in gone["message"]

    rows, meta = commit_rows(run, storage, rel)
    assert meta["lost"] == {}
    assert (run.root / "hq/v/a.png").read_bytes() == b"ALPHA"
    assert (run.root / "hq/v/b.png").read_bytes() == b"BETA"
    # ...which the driver turns back into its own run root.
    gone = next(r for r in rows if r["item_id"] == "gone")
    assert gone["message"].startswith(str(run.root / "lq" / "gone.png"))
    outcomes = sh.commit_outcome_rows(run.store, "synth", "v", rows)
    assert {o.item_id: o.status for o in outcomes} == {
        "a": "done",
        "b": "done",
        "c": "done",
        "gone": "failed",
    }
    mark_committed(storage, rel)
    assert not storage.exists(f"{rel}/{stg.OUT}")
    # A second shard over the same inputs uploads nothing new.
    _, _, again, _ = _shard(run, storage, ids=("a", "b"), rel="synth/v/s2")
    assert again.uploaded == 0


def test_lost_or_damaged_outputs_fail_their_items_not_the_run(run, storage):
    rel, *_ = _shard(run, storage, ids=("a", "b", "c"))
    storage.write_bytes(f"{rel}/out/hq/v/a.png", b"tampered")
    storage.rm(f"{rel}/out/hq/v/b.png")
    rows, meta = commit_rows(run, storage, rel)
    by_id = {r["item_id"]: r for r in rows}
    assert by_id["a"]["status"] == "failed" and by_id["a"]["reason"] == stg.LOST
    assert "damaged" in by_id["a"]["message"] and rel in by_id["a"]["message"]
    assert by_id["b"]["status"] == "failed" and "missing" in by_id["b"]["message"]
    assert by_id["c"]["status"] == "done" and (run.root / "hq/v/c.png").read_bytes() == b"ALPHA"
    assert not (run.root / "hq/v/a.png").exists() and not (run.root / "hq/v/b.png").exists()
    assert set(meta["lost"]) == {"a", "b"}


def test_listing_that_climbs_out_of_the_run_is_refused(run, storage):
    rel, *_ = _shard(run, storage, ids=("a",))
    rows, meta = sh.read_result(storage, rel)
    meta["outputs"] = {"a": [{"path": "../../escape.png", "sha256": "00", "size": 1}]}
    sh.write_result(storage, rel, rows, meta)
    rows, meta = commit_rows(run, storage, rel)
    assert rows[0]["status"] == "failed" and "bad output path" in rows[0]["message"]
    assert not (run.root.parent.parent / "escape.png").exists()


def test_driver_killed_after_download_before_commit_reruns_cleanly(run, storage):
    rel, *_ = _shard(run, storage, ids=("a", "b"))
    commit_rows(run, storage, rel)  # outputs downloaded; the driver dies before the store transaction
    assert (run.root / "hq/v/a.png").exists() and run.store.scalar("SELECT COUNT(*) FROM attempts") == 0
    # An HQ rewritten in between (another --redo) is put back to what the shard produced.
    (run.root / "hq/v/b.png").write_bytes(b"stale")
    for _ in range(2):  # the rerun commits; a second rerun (killed before the marker) commits again
        rows, _ = commit_rows(run, storage, rel)
        sh.commit_outcome_rows(run.store, "synth", "v", rows)
    mark_committed(storage, rel)
    assert (run.root / "hq/v/b.png").read_bytes() == b"BETA"
    assert run.store.scalar("SELECT COUNT(*) FROM stage_results WHERE status='done'") == 2
    assert run.store.scalar("SELECT COUNT(*) FROM attempts") == 2  # no duplicates
    assert sorted(p.name for p in (run.root / "hq/v").iterdir()) == ["a.png", "b.png"]  # no temp files


def test_damaged_input_is_a_task_error_for_ray_to_retry(run, storage):
    rel = "analyze/_/s1"
    uploader = stg.Uploader(storage, run.root)
    spec = stg.item_spec(
        uploader, stg.run_roots(run.root), shout, [("a", str(run.root / "lq/a.png"), str(run.root), "x")]
    )
    storage.write_bytes(f"{rel}/{sh.SPEC}", cloudpickle.dumps(spec))
    storage.write_bytes(stg.file_key(stg.sha256(b"alpha")), b"bitrot")
    with pytest.raises(OSError, match="does not match its hash"):
        _item_shard(storage.url, rel)
    assert not storage.exists(f"{rel}/{sh.DONE}")


def test_run_paths_and_mode(tmp_path):
    root = tmp_path / "run"
    (root / "lq").mkdir(parents=True)
    link = tmp_path / "link"
    os.symlink(root, link)
    roots = stg.run_roots(link)
    uploader = stg.Uploader(Storage(f"memory://ggt-stage-{uuid.uuid4().hex[:8]}"), link)
    args, inputs = uploader.stage_args(
        ("id", str(link), str(root / "lq" / "x.png"), str(tmp_path / "run2" / "y.png"), "hq/v/z.png", 3),
        roots,
    )
    assert args == ("id", stg.RunPath(""), stg.RunPath("lq/x.png"), str(tmp_path / "run2" / "y.png"),
                    "hq/v/z.png", 3)  # fmt: skip
    assert inputs == {}  # x.png does not exist: nothing to upload, the worker's item fails as missing
    assert stg.resolve_args(args, Path("/w"))[1:3] == ("/w", "/w/lq/x.png")
    local, memory = Storage(tmp_path / "s"), Storage("memory://ggt-x")
    assert not stg.is_staged(ExecuteConfig(), local) and stg.is_staged(ExecuteConfig(), memory)
    assert stg.is_staged(ExecuteConfig(stage_files=True), local)
    assert not stg.is_staged(ExecuteConfig(stage_files=False), memory)


def test_memory_storage_is_refused_for_ray_workers(tmp_path):
    from ggt.config import ConfigError
    from ggt.execute.ray_exec import shard_storage

    r = SimpleNamespace(root=tmp_path)
    with pytest.raises(ConfigError, match="Ray workers cannot reach it"):
        shard_storage(r, ExecuteConfig(executor="ray", storage="memory://ggt-x/shards"))
    assert shard_storage(r, ExecuteConfig(executor="ray")).local_path() == (tmp_path / "shards").resolve()


def test_a_shard_committed_to_the_store_but_not_marked_is_marked_at_the_end_of_the_next_run(run, storage):
    """A driver killed between a shard's store commit and its marker: the items are settled, so no rerun
    plans that shard again; the rerun's end marks it, and leaves every other shard as it is."""
    killed, *_ = _shard(run, storage, ids=("a", "b"), rel="synth/v/killed")
    rows, _ = commit_rows(run, storage, killed)
    sh.commit_outcome_rows(run.store, "synth", "v", rows)  # ...and the driver dies here
    planned, *_ = _shard(run, storage, ids=("c",), rel="synth/v/planned")  # this run's own, done
    done_before, *_ = _shard(run, storage, ids=("c",), rel="synth/v/marked")
    mark_committed(storage, done_before)
    storage.write_bytes("synth/v/running/spec.pkl", b"")  # no result yet
    assert storage.exists(f"{killed}/{stg.OUT}")

    assert settle_unplanned(storage, "synth/v", {planned}) == [killed]
    assert storage.exists(f"{killed}/{sh.COMMITTED}") and not storage.exists(f"{killed}/{stg.OUT}")
    assert not storage.exists(f"{planned}/{sh.COMMITTED}") and storage.exists(f"{planned}/{stg.OUT}")
    assert not storage.exists(f"synth/v/running/{sh.COMMITTED}")
    assert settle_unplanned(storage, "synth/v", {planned}) == []
    assert settle_unplanned(storage, "synth/elsewhere", set()) == []
