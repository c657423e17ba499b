"""Pairwise preferences for the benchmark: a VLM judge (through the engine) and people's votes.

Both live in the bench store, `OUT/bench.sqlite`: a run store (same schema and migrations as a run's) that
holds copies of the test photos' item rows, the VLM judge's answers as stage results (stage `bench_judge`,
one variant per ordered pair), their attempts and costs, and the `preferences` table the review app's
compare mode writes. The bench has no run of its own (each prompting mode is a run under `OUT/runs`), and a
comparison spans contestants of different runs, so the judgements and votes belong to the bench folder.
Paid answers are cached content-addressed under `OUT/cache`, keyed by backend, model, prompt, the three
images' bytes and the parameters: a rerun, or a resume after a crash, never pays twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
from collections.abc import Sequence
from functools import cache
from itertools import combinations
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from ggt.config import ConfigError
from ggt.fsutil import write_bytes_atomic
from ggt.progress import ProgressFn
from ggt.store import RunStore

BENCH_STORE = "bench.sqlite"
JUDGE_STAGE = "bench_judge"
TEMPLATE = Path(__file__).parent / "templates" / "pairwise_judge.j2"
VLM_JUDGES = ("gemini", "openai", "openai-compatible")
# What a pairwise judge weighs, in order; the template renders them, the answer's reasons follow them.
CRITERIA: dict[str, str] = {
    "faithfulness": "faithful to the LQ: the same content, geometry and framing, the same text and faces, the "
    "same colours; nothing invented, nothing removed",
    "degradations_removed": "the LQ's degradations (noise, blur, compression, rain, haze, low light, ...) are "
    "gone, without new artefacts (halos, blocking, plastic or painted look)",
    "natural_look": "it looks like a natural, well-exposed photograph",
}
# Bumped when the answer's schema or its meaning changes: part of every request's parameters (and key).
SCHEMA_VERSION = 1


class JudgeSummary(BaseModel):
    """What the pairwise judge did in this bench run, and what judging has cost in all."""

    judge: str
    model: str | None = None
    comparisons: int = 0  # ordered comparisons asked for (two per pair and image)
    done: int = 0
    failed: int = 0
    pending: int = 0
    calls: int = 0
    cache_hits: int = 0
    spent_usd: float = 0.0  # by this run
    total_usd: float | None = None  # by every run of this bench; None when the judge has no price
    input_tokens: int = 0
    output_tokens: int = 0
    failures: dict[str, int] = Field(default_factory=dict)


def judge_id(judge: str, model: str | None) -> str:
    return judge if not model else f"{judge}-{model}"


@cache
def _template(path: str) -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(path).parent)), undefined=jinja2.StrictUndefined,
        autoescape=False, keep_trailing_newline=False,
    )  # fmt: skip
    return env.get_template(Path(path).name)


def pairwise_instruction(category: str | None = None, template: Path | str | None = None) -> str:
    """The pairwise judge's instruction for a photo of `category` (images: LQ, A, B)."""
    path = Path(template or TEMPLATE).expanduser()
    if not path.is_file():
        raise ConfigError(f"pairwise judge template not found: {path}")
    cat = None if category in (None, "", "unknown") else category
    return _template(str(path.resolve())).render(category=cat, criteria=CRITERIA).strip()


# -- the bench store -----------------------------------------------------------------------------------------


def open_store(out: Path, create: bool = True) -> RunStore:
    return RunStore(Path(out) / BENCH_STORE, create=create)


_ITEM_COLUMNS = (
    "id", "sha256", "category", "source_path", "source_name", "source_bytes", "format", "mode", "width",
    "height", "lq_path", "phash", "exif", "notes", "created_at",
)  # fmt: skip


def sync_items(store: RunStore, runs: Sequence[Path]) -> None:
    """Copy the runs' item rows into the bench store (judgements and votes reference them).

    `lq_path` is made relative to the bench folder; near-duplicate links are left out (they would point at
    rows that may not be copied yet, and nothing here reads them).
    """
    out = store.path.parent
    cols = ", ".join(_ITEM_COLUMNS)
    with store.transaction() as conn:
        for run in runs:
            src = RunStore(Path(run) / "ggt.sqlite", create=False)
            try:
                rows = src.query(f"SELECT {cols} FROM items")
            finally:
                src.close()
            rel = Path(run).resolve().relative_to(out.resolve())
            for row in rows:
                vals = dict(row)
                vals["lq_path"] = str(rel / vals["lq_path"])
                conn.execute(
                    f"INSERT OR IGNORE INTO items({cols}) VALUES ({', '.join('?' * len(_ITEM_COLUMNS))})",
                    tuple(vals[c] for c in _ITEM_COLUMNS),
                )


# -- the VLM judge -------------------------------------------------------------------------------------------


def _digest(path: Path, memo: dict[Path, str]) -> str:
    if path not in memo:
        memo[path] = hashlib.sha256(path.read_bytes()).hexdigest()
    return memo[path]


def judge_pairs(
    out: Path,
    judge: str,
    model: str | None,
    names: list[str],
    items: dict[str, dict[str, Any]],
    ids: list[str],
    hq_paths: dict[tuple[int, str], Path],
    runs: Sequence[Path],
    overrides: list[str] | None = None,
    progress: ProgressFn | None = None,
) -> tuple[dict[tuple[str, int, int], float], JudgeSummary]:
    """Ask the VLM `judge` about every image and every pair of contestants, in both orders.

    Returns ((item, first, second) -> outcome for `first`: 1 won, 0 lost, 0.5 tie) for every settled
    comparison, and the summary. Options come from the config's `qc.judge_options` (base_url, ...),
    concurrency and retries from `qc`, the judge's price from `synth.prices` under "JUDGE/MODEL".
    """
    from ggt.config import resolve_run_config
    from ggt.engine import (
        Budget,
        Engine,
        Job,
        Limits,
        PermanentError,
        Request,
        RequestCache,
        Response,
        RetryPolicy,
    )
    from ggt.generate.stage import _pricing, price_table
    from ggt.imaging import ImageDecodeError, read_image
    from ggt.vlm import VLMError, create_vlm
    from ggt.vlm.pairwise import PairwiseAnswer, judge_pair

    if judge not in VLM_JUDGES:
        raise ConfigError(f"--judge {judge!r}: choose heuristic, {', '.join(VLM_JUDGES)}")
    cfg = resolve_run_config(Path(runs[0]) / "config.yaml", None, overrides)
    options = {**cfg.qc.judge_options, **({"model": model} if model else {})}
    model = options.get("model")
    if not model:
        raise ConfigError(f"--judge {judge} needs a model: --judge-model NAME")
    try:
        client = create_vlm(judge, **options)
    except VLMError as exc:
        raise ConfigError(str(exc)) from None
    jid = judge_id(judge, model)
    pricing = _pricing(price_table(cfg.synth).get(f"{judge}/{model}"))
    params = {
        **client.options.model_dump(mode="json", exclude={"api_key_env", "timeout_s", "base_url"}),
        "task": "pairwise", "schema_version": SCHEMA_VERSION,
    }  # fmt: skip
    summary = JudgeSummary(judge=judge, model=model)

    store = open_store(out)
    sync_items(store, runs)
    memo: dict[Path, str] = {}
    # (item, first, second, variant, request); the variant carries a digest of the three images so a
    # changed output (a redone synth) is judged again instead of matching an old settled row.
    plan: list[tuple[str, int, int, str, Any]] = []
    for item_id in ids:
        instruction = pairwise_instruction(items[item_id]["category"])
        lq = Path(items[item_id]["lq"])
        have = [ci for ci in range(len(names)) if (ci, item_id) in hq_paths]
        for a, b in combinations(have, 2):
            for x, y in ((a, b), (b, a)):
                digests = [_digest(p, memo) for p in (lq, hq_paths[(x, item_id)], hq_paths[(y, item_id)])]
                inputs = hashlib.sha256("".join(digests).encode()).hexdigest()
                variant = f"{jid}:{names[x]}|{names[y]}:{inputs[:12]}"
                req = Request(
                    backend=judge, model=model, prompt=instruction, input_sha256=inputs, params=params
                )
                plan.append((item_id, x, y, variant, req))
    summary.comparisons = len(plan)
    by_variant = {(p[0], p[3]): p for p in plan}

    async def call(job: Any) -> Any:
        item_id, x, y, _, _ = by_variant[(job.item_id, job.variant)]
        try:
            imgs = await asyncio.gather(*(
                asyncio.to_thread(read_image, p)
                for p in (items[item_id]["lq"], hq_paths[(x, item_id)], hq_paths[(y, item_id)])
            ))  # fmt: skip
        except (ImageDecodeError, OSError) as exc:
            raise PermanentError(f"unreadable image: {exc}", reason="unreadable") from None
        res = await judge_pair(client, imgs[0], imgs[1], imgs[2], job.request.prompt)
        usage = {k: v for k, v in res.usage.model_dump().items() if v is not None}
        meta = {"model_version": res.model_version, "attempts": res.attempts, "latency_s": res.latency_s}
        return Response(data=res.data.model_dump_json().encode(), usage=usage, meta=meta)

    def on_result(job: Any, data: bytes) -> dict[str, Any]:
        _, x, y, _, _ = by_variant[(job.item_id, job.variant)]
        answer = PairwiseAnswer.model_validate_json(data)
        return {"first": names[x], "second": names[y], "judge": jid, **answer.model_dump(mode="json")}

    def report(done: int, failed: int, total: int, spent: float) -> None:
        if progress:
            progress(done + failed, total, spent_usd=spent)

    engine = Engine(
        store, RequestCache(Path(out) / "cache", store), JUDGE_STAGE,
        default_limits=Limits(concurrency=cfg.qc.concurrency), retry=RetryPolicy(max_attempts=cfg.qc.max_attempts),
        budget=Budget(None, {f"{judge}/{model}": pricing} if pricing else None),
        on_result=on_result, progress=report,
    )  # fmt: skip

    async def main() -> Any:
        try:
            return await engine.run([Job(p[0], p[3], p[4]) for p in plan], call, total=len(plan))
        finally:
            await client.aclose()

    try:
        result = asyncio.run(main())
        summary.done, summary.failed, summary.pending = result.done, result.failed, result.pending
        summary.calls, summary.cache_hits, summary.spent_usd = (
            result.calls,
            result.cache_hits,
            result.spent_usd,
        )
        summary.failures = dict(result.failures)
        outcomes: dict[tuple[str, int, int], float] = {}
        records = []
        for row in store.query(
            "SELECT item_id, variant, result FROM stage_results WHERE stage = ? AND status = 'done'",
            (JUDGE_STAGE,),
        ):
            p = by_variant.get((row["item_id"], row["variant"]))
            if p is None:
                continue
            res = json.loads(row["result"])
            outcomes[(p[0], p[1], p[2])] = {"A": 1.0, "B": 0.0}.get(res["winner"], 0.5)
            records.append({"item": p[0], "source_name": items[p[0]]["source_name"], **res})
        cost = store.query(
            "SELECT SUM(usd) AS usd, COUNT(usd) AS priced, COALESCE(SUM(input_tokens), 0) AS tin,"
            " COALESCE(SUM(output_tokens), 0) AS tout FROM costs WHERE stage = ? AND backend = ? AND model = ?",
            (JUDGE_STAGE, judge, model),
        )[0]
        summary.input_tokens, summary.output_tokens = int(cost["tin"]), int(cost["tout"])
        summary.total_usd = float(cost["usd"] or 0.0) if pricing is not None else None
    finally:
        store.close()
    records.sort(key=lambda r: (r["source_name"], r["first"], r["second"]))
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    write_bytes_atomic(Path(out) / "judgments.jsonl", text.encode("utf-8"))
    return outcomes, summary


# -- people's votes --------------------------------------------------------------------------------------


def read_votes(out: Path) -> list[dict[str, Any]]:
    """Every non-skip vote of the compare mode: item, left, right, choice, voter. Empty without a store."""
    path = Path(out) / BENCH_STORE
    if not path.exists():
        return []
    store = RunStore(path, create=False)
    try:
        rows = store.query(
            "SELECT item_id, left_name, right_name, choice, voter FROM preferences WHERE choice != 'skip'"
            " ORDER BY id"
        )
    finally:
        store.close()
    return [dict(r) for r in rows]


def vote_games(
    votes: list[dict[str, Any]], names: list[str], subset: list[str]
) -> list[tuple[int, int, int, float]]:
    """Votes on images of `subset` between known contestants, as games (image index, left, right, outcome)."""
    index = {n: i for i, n in enumerate(names)}
    where = {item: m for m, item in enumerate(subset)}
    out = []
    for v in votes:
        a, b, m = index.get(v["left_name"]), index.get(v["right_name"]), where.get(v["item_id"])
        if a is None or b is None or m is None or a == b:
            continue
        outcome = {"left": 1.0, "right": 0.0, "tie": 0.5}.get(v["choice"])
        if outcome is not None and math.isfinite(outcome):
            out.append((m, a, b, outcome))
    return out
