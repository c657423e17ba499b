"""The Ray executor in staged mode (workers that cannot see the run folder): shard storage in a folder
outside the run, `execute.stage_files` forced on. Same rows, files and decisions as the local executor; the
driver's run root never reaches a worker; a worker killed mid-shard of an API synth pays at most the one call
in flight again."""

import json
from pathlib import Path

import pytest

from ggt.analyze.stage import analyze
from ggt.generate.stage import synth
from ggt.store import Run

ray = pytest.importorskip("ray")

from test_ray_executor import VARIANT, _gemini_sets, _run, same_as_local, synth_killing_one_worker  # noqa: E402


@pytest.fixture(scope="module")
def ray_staged(tmp_path_factory):
    # Its own local cluster (the other Ray module's fixture shuts its own down when that module ends).
    kill_file = tmp_path_factory.mktemp("ray-staged") / "kill-after"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"GGT_TEST_KILL_FILE": str(kill_file)}})  # fmt: skip
    yield {"kill_file": kill_file}
    ray.shutdown()


def _staged(bucket: Path, *extra: str) -> list[str]:
    return ["execute.executor=ray", f"execute.storage=file://{bucket}", "execute.stage_files=true", *extra]


def _specs_leak(bucket: Path, run: Path) -> list[str]:
    needles = {str(run).encode(), str(run.resolve()).encode()}
    return [str(p) for p in bucket.rglob("spec.pkl") if any(n in p.read_bytes() for n in needles)]


def test_staged_ray_gives_the_same_items_files_and_decisions_as_local(ray_staged, tmp_path):
    bucket = tmp_path / "bucket"  # outside both run folders
    sets = _staged(bucket, "execute.shard_size=2")
    remote = same_as_local(tmp_path, "staged", sets)
    # Nothing of the driver's run root in any spec; the shard files live only in the bucket.
    specs = list(bucket.rglob("spec.pkl"))
    assert len(specs) == 6 and _specs_leak(bucket, remote) == []  # 3 stages x 2 shards
    assert not (remote / "shards").exists()
    # Inputs went up once per distinct content (4 LQ for analyze and synth, 4 HQ more for the metrics);
    # the outputs came back and the shards' out/ folders are gone once committed.
    assert len([p for p in (bucket / "files").rglob("*") if p.is_file()]) == 8
    assert not list(bucket.rglob("out"))
    assert all((d / "committed").exists() for d in (bucket / "synth" / "classical").iterdir())
    assert synth(remote, overrides=sets).planned == 0


def test_staged_api_worker_killed_mid_shard_is_retried_without_paying_twice(
    ray_staged, tmp_path, stub_server, monkeypatch
):
    run = _run(tmp_path, "kill", 6)
    analyze(run)
    bucket = tmp_path / "bucket"
    sets = _gemini_sets(
        stub_server,
        monkeypatch,
        "synth.concurrency=1",
        *_staged(bucket, "execute.shard_size=3", "execute.max_in_flight=1"),
    )
    synth_killing_one_worker(ray_staged["kill_file"], run, sets, stub_server)
    with Run.open(run) as r:
        results = [
            json.loads(x[0]) for x in r.store.query("SELECT result FROM stage_results WHERE stage='synth'")
        ]
    assert sorted(x["hq_path"] for x in results) == sorted(
        f"hq/{VARIANT}/{p.name}" for p in (run / "hq" / VARIANT).iterdir()
    )
    # The retry re-created the dead worker's HQ files from the shared cache beside the shards (workers
    # cannot see RUN/cache).
    assert len(list((bucket / "cache").rglob("*.json"))) == 6 and not list((run / "cache").iterdir())
    assert _specs_leak(bucket, run) == [] and not list(bucket.rglob("out"))
