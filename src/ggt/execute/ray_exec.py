"""The Ray executor: a stage's pending items in shards, each shard one Ray task running the stage's own code.

Workers never open the run store. A shard task reads its spec from shard storage (fsspec), runs the same
per-item function the local executor runs (or, for API generators, the same engine-driven stage code over
a scratch store), writes the outputs (atomically, into the run folder on the shared file system; or, when
staged, into a temporary run root whose new files go back through shard storage: execute/staging.py), then
a result file and a done marker. The driver commits each finished shard into the store (idempotently) and
marks it committed. A rerun commits shards that finished while the driver was away, re-runs the rest,
and the content-addressed request cache in shared storage keeps paid calls from repeating.

See docs/ray.md for clusters, resources, storage and what happens when a node dies.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from ggt.config import ConfigError, ExecuteConfig, RayResources, load_config
from ggt.execute import shards as sh
from ggt.execute import staging as stg
from ggt.execute.local import Outcome, bounded_map
from ggt.execute.storage import FsspecRequestCache, Storage
from ggt.store import Run, RunStore

RAY_HINT = "the ray executor needs Ray: pip install 'ggt[ray]'"
KILL_FILE_ENV = "GGT_TEST_KILL_FILE"  # tests only: a worker exits hard after N items (see _maybe_die)
POLL_S = 0.25
STATS: Counter[str] = Counter()  # shard counts and overhead seconds of the last runs (benchmarks read it)
LEASE_S = 10.0  # a dead worker's API slots and reservations come back after this (limiter.py)


# -- settings and connection -----------------------------------------------------------------------------


def settings(r: Run) -> ExecuteConfig:
    """The run's `execute` section, as the stage just resolved and saved it."""
    return load_config(r.config_path if r.config_path.exists() else None).execute


def mapper_for(
    r: Run, stage: str, variant: str = "", local: Callable[..., Any] = bounded_map
) -> Callable[..., Iterator[Outcome]]:
    """`local` (the stage's `bounded_map`) for the local executor; for Ray, a drop-in with the same call
    that runs the items in shards on the cluster."""
    ex = settings(r)
    if ex.executor == "local":
        return local

    def ray_map(
        fn: Callable[..., Outcome], args: Iterable[tuple[Any, ...]], workers: int = 0
    ) -> Iterator[Outcome]:
        return map_items(r, ex, stage, variant, fn, args)

    return ray_map


def connect(ex: ExecuteConfig) -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(RAY_HINT) from None
    if not ray.is_initialized():
        address = ex.ray_address or os.environ.get("RAY_ADDRESS") or None
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        except ConnectionError as exc:
            raise ConfigError(f"cannot reach the Ray cluster at {address}: {exc}") from None
    return ray


def shard_storage(r: Run, ex: ExecuteConfig) -> Storage:
    storage = Storage(ex.storage or str((r.root / "shards").resolve()))
    if "memory" in storage.protocols:
        # Each process has its own memory:// (Ray workers would find no spec): fine for unit tests only.
        raise ConfigError(
            f"execute.storage {storage.url!r} lives in this process's memory; Ray workers cannot reach it."
            " Use a shared path, file://, s3:// or gs://"
        )
    return storage


def _resources(ex: ExecuteConfig, stage: str) -> dict[str, Any]:
    group = "qc" if stage.startswith("qc") else stage
    res = ex.resources.get(group) or RayResources()  # type: ignore[call-overload]
    opts: dict[str, Any] = {"num_cpus": res.num_cpus, "max_retries": ex.max_retries}
    if res.num_gpus:
        opts["num_gpus"] = res.num_gpus
    if res.memory:
        opts["memory"] = res.memory
    return opts


# Secrets come from environment variables only: the driver's are passed to its shard tasks (never written
# to shard storage), so a cluster whose nodes lack them still works. Nodes that have them can keep theirs.
_FORWARD_ENV = (
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "OPENAI_API_KEY",
    "GOOGLE_GEMINI_BASE_URL",
    "OPENAI_BASE_URL",
)


def _forwarded_env(options: dict[str, Any]) -> dict[str, str]:
    names = {*_FORWARD_ENV, *(str(v) for k, v in options.items() if k.endswith("_env") and v)}
    return {n: os.environ[n] for n in sorted(names) if n in os.environ}


def _max_in_flight(ray: Any, ex: ExecuteConfig) -> int:
    if ex.max_in_flight:
        return ex.max_in_flight
    return max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))


def _maybe_die(settled: int) -> None:
    """Test hook: with GGT_TEST_KILL_FILE naming a file that holds N, the first worker to settle N items of
    a shard takes the file (rename: only one does) and exits hard, like a node lost mid-shard."""
    path = os.environ.get(KILL_FILE_ENV)
    if not path or not os.path.exists(path):
        return
    try:
        n = int(Path(path).read_text().strip() or "1")
    except (OSError, ValueError):
        return
    if settled < n:
        return
    try:
        os.rename(path, path + ".fired")
    except OSError:
        return
    os._exit(137)


# -- per-item stages (analyze, classical synth, QC metrics) -------------------------------------------------


SCRATCH = "scratch.sqlite"  # an API shard's engine store, in the shard folder (with its -wal and -shm)


def mark_committed(storage: Storage, rel: str) -> None:
    """Say that the shard's rows are in the store, and drop what only running it again would need."""
    storage.write_text(f"{rel}/{sh.COMMITTED}", "")
    for name in (SCRATCH, f"{SCRATCH}-wal", f"{SCRATCH}-shm", stg.OUT):
        storage.rm(f"{rel}/{name}")


def settle_unplanned(storage: Storage, base: str, planned: set[str]) -> list[str]:
    """Mark committed the finished, uncommitted shards under `base` that this run did not plan; their
    rels, sorted.

    A driver killed between a shard's store commit and its marker leaves one: its items are settled, so
    no rerun plans it again. So does a task of a killed driver that finished after a rerun had redone its
    items in other shards (the rerun paid nothing twice, thanks to the request cache, but the ledger
    does not see that task's spend). Either way its result must never be committed later, over newer
    results; marked, a later plan that reaches its rel again runs it afresh. Called when this run's own
    shards are all settled, so it assumes no other planner of the stage and variant is running."""
    settled = []
    for name in storage.listdir(base):
        rel = f"{base}/{name}"
        if (
            rel in planned
            or not storage.exists(f"{rel}/{sh.DONE}")
            or storage.exists(f"{rel}/{sh.COMMITTED}")
        ):
            continue
        mark_committed(storage, rel)
        settled.append(rel)
    return settled


def _item_shard(storage_url: str, rel: str) -> dict[str, int]:
    """A Ray task: run the spec's per-item function over its items; write the result file and done."""
    import cloudpickle

    storage = Storage(storage_url)
    spec = cloudpickle.loads(storage.read_bytes(f"{rel}/{sh.SPEC}"))
    if spec.get("staged"):
        return _staged_item_shard(storage, rel, spec)
    fn = spec["fn"]
    rows, counts = [], {"done": 0, "failed": 0}
    for n, args in enumerate(spec["args"], 1):
        o = fn(*args)
        rows.append(sh.outcome_row(o))
        counts["done" if o.status == "done" else "failed"] += 1
        _maybe_die(n)
    sh.write_result(storage, rel, rows, {"counts": counts})
    return counts


def _staged_item_shard(storage: Storage, rel: str, spec: dict[str, Any]) -> dict[str, int]:
    """`_item_shard` for a worker without the run folder: a temporary root holds the shard's inputs; the
    files each item's call creates there are uploaded to the shard's `out/` and listed for the driver."""
    import tempfile

    fn = spec["fn"]
    rows, counts = [], {"done": 0, "failed": 0}
    outputs: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="ggt-stage-") as tmp:
        root = Path(tmp)
        stg.fetch_inputs(storage, root, spec["inputs"])
        known = stg.list_files(root)
        for n, args in enumerate(spec["args"], 1):
            o = fn(*stg.resolve_args(args, root))
            created = stg.list_files(root) - known
            known |= created
            if created:
                outputs[o.item_id] = stg.upload_outputs(storage, rel, root, created)
            row = sh.outcome_row(o)
            row["result"], row["message"] = (
                stg.tokenize(row["result"], root),
                stg.tokenize(row["message"], root),
            )
            rows.append(row)
            counts["done" if o.status == "done" else "failed"] += 1
            _maybe_die(n)
    sh.write_result(storage, rel, rows, {"counts": counts, "outputs": outputs})
    return counts


def map_items(
    r: Run,
    ex: ExecuteConfig,
    stage: str,
    variant: str,
    fn: Callable[..., Outcome],
    args: Iterable[tuple[Any, ...]],
) -> Iterator[Outcome]:
    """Outcomes of `fn(*a)` for every `a` (first element: the item id), computed shard by shard on Ray.

    Each finished shard is committed to the store before its outcomes are yielded, so the stage's own
    loop (which records them again, idempotently) and a killed driver both leave the store consistent.
    """
    ray = connect(ex)
    import cloudpickle

    storage = shard_storage(r, ex)
    base = sh.stage_dir(stage, variant)
    task = ray.remote(_item_shard).options(**_resources(ex, stage))
    limit = _max_in_flight(ray, ex)
    in_flight: dict[Any, tuple[str, list[str]]] = {}
    planned: set[str] = set()
    staged = stg.is_staged(ex, storage)
    uploader, roots = stg.Uploader(storage, r.root), stg.run_roots(r.root)

    def commit(rel: str) -> list[Outcome]:
        rows, _ = commit_rows(r, storage, rel)
        outcomes = sh.commit_outcome_rows(r.store, stage, variant, rows)
        mark_committed(storage, rel)
        return outcomes

    def finish(ready: list[Any]) -> Iterator[Outcome]:
        for ref in ready:
            rel, ids = in_flight.pop(ref)
            try:
                ray.get(ref)
            except Exception as exc:  # retries exhausted: the items fail, a rerun tries them again
                msg = f"shard {rel} failed on the cluster: {type(exc).__name__}: {str(exc)[:200]}"
                outcomes = [
                    Outcome(item_id=i, status="failed", reason="shard_failed", message=msg) for i in ids
                ]
                from ggt.execute.local import record_outcomes

                record_outcomes(r.store, stage, variant, outcomes)
                yield from outcomes
                continue
            yield from commit(rel)

    chunk: list[tuple[Any, ...]] = []
    todo = iter(args)
    while True:
        nxt = next(todo, None)
        if nxt is not None:
            chunk.append(nxt)
            if len(chunk) < ex.shard_size:
                continue
        if chunk:
            sid = sh.shard_id(stage, variant, fn, chunk)
            rel = f"{base}/{sid}"
            planned.add(rel)
            ids = [str(a[0]) for a in chunk]
            if storage.exists(f"{rel}/{sh.COMMITTED}"):
                # Committed before, yet its items are pending again (they failed): run it afresh.
                for name in (sh.COMMITTED, sh.DONE, sh.RESULT, stg.OUT):
                    storage.rm(f"{rel}/{name}")
            if storage.exists(f"{rel}/{sh.DONE}"):
                yield from commit(rel)  # finished while the driver was away
            else:
                spec = stg.item_spec(uploader, roots, fn, chunk) if staged else {"fn": fn, "args": chunk}
                storage.write_bytes(f"{rel}/{sh.SPEC}", cloudpickle.dumps(spec))
                in_flight[task.remote(storage.url, rel)] = (rel, ids)
            chunk = []
        while in_flight and (len(in_flight) >= limit or nxt is None):
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=None)
            yield from finish(ready)
        if nxt is None and not in_flight:
            settle_unplanned(storage, base, planned)
            return


def commit_rows(r: Run, storage: Storage, rel: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A finished shard's result rows, ready for the store: a staged shard's outputs are first downloaded
    into the run folder (hash checked); an item whose output is lost becomes a failure (`output_lost`).

    Driven by the result's own listing, not the current mode, so a shard that finished staged is committed
    correctly whatever the rerun's settings. Safe to repeat (a driver killed before the store commit)."""
    rows, meta = sh.read_result(storage, rel)
    if "outputs" not in meta:
        return rows, meta
    lost = stg.fetch_outputs(storage, rel, r.root, meta["outputs"])
    return stg.restore_rows(rows, lost, r.root), {**meta, "lost": lost}


# -- API generators (synth) -------------------------------------------------------------------------------


class ShardRun:
    """What the stage code needs of a `Run` inside a worker: the run folder (shared) and a scratch store."""

    def __init__(self, root: Path, store: RunStore) -> None:
        self.root = root
        self.store = store

    def hq_dir(self, generator: str) -> Path:
        return self.root / "hq" / generator

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"


def _api_shard(storage_url: str, rel: str, actor_name: str, budget_usd: float | None) -> dict[str, Any]:
    """A Ray task: the synth stage's own API code over this shard's rows, limits and budget cluster-wide."""
    import tempfile

    import cloudpickle
    import ray

    from ggt.execute.hooks import ShardContext, shard_context
    from ggt.execute.limiter import ACTOR_NAMESPACE, GlobalBudget, global_limiter
    from ggt.generate.stage import STAGE, SynthSummary, _run_api

    t0 = time.perf_counter()
    storage = Storage(storage_url)
    spec = cloudpickle.loads(storage.read_bytes(f"{rel}/{sh.SPEC}"))
    cfg, variant, rows = spec["cfg"], spec["variant"], spec["rows"]
    actor = ray.get_actor(actor_name, namespace=ACTOR_NAMESPACE)
    # On a shared file system the scratch store lives in the shard folder, so a retry after a lost worker
    # carries on from what that worker recorded (its paid items are skipped, their costs kept).
    local = storage.local_path(rel)
    tmp = None
    if local is None:
        tmp = tempfile.TemporaryDirectory(prefix="ggt-shard-")
        local = Path(tmp.name)
    local.mkdir(parents=True, exist_ok=True)
    scratch = RunStore(local / SCRATCH)
    scratch.conn.execute("PRAGMA foreign_keys=OFF")  # its items live in the driver's store only
    cache_url = spec.get("cache_url")
    staged = bool(spec.get("staged"))
    work = tempfile.TemporaryDirectory(prefix="ggt-stage-") if staged else None
    root = Path(work.name) if work is not None else Path(spec["root"])
    state = {"settled": 0}

    def progress(settled: int, total: int, spent_usd: float | None = None) -> None:
        delta, state["settled"] = settled - state["settled"], settled
        if delta > 0:
            actor.report.remote(delta, 0)
        _maybe_die(settled)

    ctx = ShardContext(
        cache=(lambda c: FsspecRequestCache(Storage(cache_url), c.store)) if cache_url else None,
        budget=lambda b: GlobalBudget(b, actor, LEASE_S / 4),
        limiter=global_limiter(actor, LEASE_S / 4),
    )
    summary = SynthSummary(
        run=spec.get("root") or "", generator=cfg.generator, model=cfg.model, variant=variant
    )
    t1 = time.perf_counter()
    outputs: dict[str, list[dict[str, Any]]] = {}
    try:
        if staged:
            stg.fetch_inputs(storage, root, spec["inputs"])
            # A retry over a scratch store kept in the shard folder: the HQ files of items an earlier attempt
            # settled were in that attempt's temporary root, now gone. Unsettle them: the engine serves them
            # from the shared cache (no call; their attempts and costs stay) and writes their HQ here again.
            with scratch.transaction() as conn:
                conn.execute("DELETE FROM stage_results WHERE stage = ? AND status = 'done'", (STAGE,))
        with shard_context(ctx):
            _run_api(ShardRun(root, scratch), cfg, variant, rows, summary, budget_usd, False,
                     progress)  # fmt: skip
        t2 = time.perf_counter()
        out, cache = sh.export_engine_rows(scratch, STAGE, variant)
        if staged:
            for row in out:
                if row["status"] == "done":
                    hq = json.loads(row["result"] or "{}").get("hq_path")
                    if hq:
                        outputs[row["item_id"]] = stg.upload_outputs(storage, rel, root, [hq])
                row["result"], row["message"] = (
                    stg.tokenize(row["result"], root),
                    stg.tokenize(row["message"], root),
                )
        # From the scratch store, not this attempt's engine: a lost earlier attempt's calls count too.
        summary.calls = int(scratch.scalar("SELECT COUNT(*) FROM attempts WHERE request_key IS NOT NULL"))
        summary.spent_usd = float(scratch.scalar("SELECT COALESCE(SUM(usd), 0) FROM costs"))
    finally:
        scratch.close()
        if tmp is not None:
            tmp.cleanup()
        if work is not None:
            work.cleanup()
    meta = {"summary": summary.model_dump(mode="json"), "cache_index": cache}
    if staged:
        meta["outputs"] = outputs
    meta["timing"] = {"setup_s": t1 - t0, "run_s": t2 - t1, "export_s": time.perf_counter() - t2}
    sh.write_result(storage, rel, out, meta)
    return meta["summary"]


def run_synth_api(
    r: Run, cfg: Any, variant: str, rows: list[Any], summary: Any, budget_usd: float | None, dry_run: bool,
    progress: Callable[..., None] | None,
) -> None:  # fmt: skip
    """`generate.stage._run_api` on the cluster: same checks and estimate on the driver, shards on Ray."""
    from ggt.engine import Limits
    from ggt.execute.limiter import coordinator_actor
    from ggt.generate.stage import STAGE, _run_api

    # The driver-side checks (model named, price known for a budget) and the estimate, with no call made.
    _run_api(r, cfg, variant, rows, summary, budget_usd, True, None)
    if dry_run:
        return
    ex = settings(r)
    storage = shard_storage(r, ex)
    base = sh.stage_dir(STAGE, variant)
    if not rows:  # nothing to run, but a driver killed before its last marker may have left one to set
        settle_unplanned(storage, base, set())
        return
    ray = connect(ex)
    import cloudpickle

    staged = stg.is_staged(ex, storage)
    # On a (shared) file system the stage's own cache folder (RUN/cache or synth.cache_dir) serves every
    # worker; on an object store, or when workers cannot see the run folder, the cache lives beside the shards.
    cache_url = f"{storage.url.rstrip('/')}/cache" if staged or not storage.is_local else None
    plan: list[tuple[str, list[str], list[dict[str, Any]]]] = []
    for i in range(0, len(rows), ex.shard_size):
        chunk = [dict(row) for row in rows[i : i + ex.shard_size]]
        ids = [c["id"] for c in chunk]
        sid = sh.shard_id(STAGE, variant, cfg, ids, cache_url)
        plan.append((f"{base}/{sid}", ids, chunk))
    summary.done = summary.failed = summary.cache_hits = summary.calls = summary.retries = 0
    summary.spent_usd = 0.0
    failures: dict[str, int] = {}

    def add(s: dict[str, Any]) -> None:
        for k in ("done", "failed", "cache_hits", "calls", "retries"):
            setattr(summary, k, getattr(summary, k) + int(s.get(k) or 0))
        summary.spent_usd += float(s.get("spent_usd") or 0.0)
        summary.budget_exhausted = summary.budget_exhausted or bool(s.get("budget_exhausted"))
        for k, v in (s.get("failures") or {}).items():
            failures[k] = failures.get(k, 0) + v

    def commit(rel: str) -> dict[str, Any]:
        t = time.perf_counter()
        out, meta = commit_rows(r, storage, rel)  # a staged shard's HQ files land before its rows
        sh.commit_engine_rows(r.store, STAGE, variant, out, meta.get("cache_index") or [])
        mark_committed(storage, rel)
        STATS["shards"] += 1
        STATS["commit_s"] += time.perf_counter() - t
        for k, v in (meta.get("timing") or {}).items():
            STATS[k] += v
        shard_summary = dict(meta.get("summary") or {})
        if meta.get("lost"):
            n = len(meta["lost"])
            shard_summary["done"] = int(shard_summary.get("done") or 0) - n
            shard_summary["failed"] = int(shard_summary.get("failed") or 0) + n
            shard_summary["failures"] = {**(shard_summary.get("failures") or {}), stg.LOST: n}
        return shard_summary

    uploader = stg.Uploader(storage, r.root)

    def write_spec(rel: str, chunk: list[dict[str, Any]]) -> None:
        spec: dict[str, Any] = {"cfg": cfg, "variant": variant, "rows": chunk, "cache_url": cache_url}
        if staged:
            # Inputs go up now (content-addressed: once per distinct LQ); the worker never learns the run
            # root. The stage's cache folder is not used by a staged worker: the shared cache_url is.
            spec["cfg"] = cfg.model_copy(update={"cache_dir": None})
            spec["rows"] = [{k: v for k, v in c.items() if k != "source_path"} for c in chunk]
            spec["inputs"] = {
                c["lq_path"]: d
                for c in chunk
                if (d := uploader.upload(stg.safe_rel(c["lq_path"]))) is not None
            }
            spec["staged"] = True
        else:
            spec["root"] = str(r.root.resolve())
        storage.write_bytes(f"{rel}/{sh.SPEC}", cloudpickle.dumps(spec))

    todo: list[tuple[str, list[str], list[dict[str, Any]]]] = []
    for rel, ids, chunk in plan:
        if storage.exists(f"{rel}/{sh.COMMITTED}"):
            for name in (sh.COMMITTED, sh.DONE, sh.RESULT, stg.OUT):
                storage.rm(f"{rel}/{name}")
        if storage.exists(f"{rel}/{sh.DONE}"):
            add(commit(rel))  # finished while the driver was away: its money is in the store before we count
        else:
            if not staged:
                write_spec(rel, chunk)
            todo.append((rel, ids, chunk))
    spent_before = float(r.store.scalar(
        "SELECT COALESCE(SUM(usd), 0) FROM costs WHERE stage = ? AND backend = ?", (STAGE, cfg.generator)
    ))  # fmt: skip
    name = f"ggt-{sh.shard_id(str(r.root.resolve()), STAGE, variant)}"
    actor = coordinator_actor(
        name,
        limits=Limits(concurrency=cfg.concurrency, requests_per_minute=cfg.requests_per_minute),
        cap_usd=budget_usd, spent_usd=spent_before, lease_s=LEASE_S, total=len(rows),
    )  # fmt: skip
    task = ray.remote(_api_shard).options(
        **_resources(ex, "synth"), runtime_env={"env_vars": _forwarded_env(cfg.options)}
    )
    limit = _max_in_flight(ray, ex)
    in_flight: dict[Any, tuple[str, list[str]]] = {}
    base_done = summary.done + summary.failed
    queue = iter(todo)
    try:
        while True:
            while len(in_flight) < limit:
                nxt = next(queue, None)
                if nxt is None:
                    break
                if staged:  # its uploads just before it runs, not all of the run's up front
                    write_spec(nxt[0], nxt[2])
                in_flight[task.remote(storage.url, nxt[0], name, budget_usd)] = nxt[:2]
            if not in_flight:
                break
            ready, _ = ray.wait(list(in_flight), num_returns=len(in_flight), timeout=POLL_S)
            for ref in ready:
                rel, ids = in_flight.pop(ref)
                try:
                    ray.get(ref)
                except Exception as exc:
                    failures["shard_failed"] = failures.get("shard_failed", 0) + len(ids)
                    summary.notes.append(
                        f"shard {rel} failed on the cluster ({type(exc).__name__}); rerun to retry"
                    )
                    continue
                add(commit(rel))
            if progress:
                snap = ray.get(actor.snapshot.remote())
                progress(min(len(rows), base_done + snap["done"]), len(rows), spent_usd=snap["spent_usd"])
    finally:
        ray.kill(actor)
    settle_unplanned(storage, base, {rel for rel, _, _ in plan})
    summary.failures = failures
    summary.pending = max(0, len(rows) - summary.done - summary.failed)
    if progress:
        progress(summary.done + summary.failed, len(rows), spent_usd=summary.spent_usd)
