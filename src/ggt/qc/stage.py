"""`ggt qc` and `ggt inspect --hq`: metrics, judge and policy decision for every generated pair.

Three stages in the store, per generator variant (the `synth` variant, e.g. "classical"):

- `qc_metrics` (variant = generator variant): `compute_all(lq, hq)`, computed once per pair on the process
  pool and kept; a new policy never recomputes them.
- `qc_judge` (variant = "GENERATOR:JUDGE", e.g. "classical:heuristic" or "classical:gemini-MODEL"): the
  judge's `JudgeAnswer`, kept per judge so switching judges does not overwrite an earlier one.
- `qc` (variant = generator variant): the decision {verdict, reasons, metrics, judge}, re-made from the
  policy on every run (cheap). Rejected pairs keep their rows and files; nothing is deleted.

A decision that changes is also appended to the `decisions` table (reviewer "policy"), the audit trail
the manual review continues. A pair whose latest decision came from a person keeps it unless
`redo_decisions=True`, which appends the policy's decision after it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from ggt.config import ConfigError, QCConfig
from ggt.execute.local import Outcome, bounded_map, item_outcome, record_outcomes
from ggt.imaging import ImageDecodeError, read_image
from ggt.progress import ProgressFn
from ggt.qc.judge import JUDGE_KEYS, JudgeAnswer, heuristic_judge, judge_instruction, judge_values
from ggt.qc.measure import measure_pair
from ggt.qc.policy import Decision, Policy, load_policy
from ggt.store import Run, now
from ggt.store.run import hq_relpath

METRICS_STAGE = "qc_metrics"
JUDGE_STAGE = "qc_judge"
STAGE = "qc"
BATCH = 32
POLICY_REVIEWER = "policy"


class VariantSummary(BaseModel):
    pairs: int = 0
    keep: int = 0
    reject: int = 0
    review: int = 0
    metrics_computed: int = 0
    metrics_cached: int = 0
    metrics_failed: int = 0
    judged: int = 0
    judge_cached: int = 0
    judge_failed: int = 0
    judge_retries: int = 0
    judge_calls: int = 0
    judge_cache_hits: int = 0
    judge_spent_usd: float = 0.0
    rules: dict[str, int] = Field(default_factory=dict)
    failures: dict[str, int] = Field(default_factory=dict)


class QCSummary(BaseModel):
    run: str
    policy: str
    judge: str
    variants: dict[str, VariantSummary] = Field(default_factory=dict)
    decisions_appended: int = 0
    report: str | None = None
    notes: list[str] = Field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(v.metrics_failed + v.judge_failed for v in self.variants.values())


# -- metrics ---------------------------------------------------------------------------------------------


def _metrics_pair(item_id: str, lq_path: str, hq_path: str, names: list[str] | None) -> Outcome:
    def work() -> dict[str, Any]:
        lq, hq = read_image(lq_path), read_image(hq_path)
        values, errors = measure_pair(lq, hq, names)
        return {"metrics": values, "errors": errors, "size": [int(lq.shape[1]), int(lq.shape[0])]}

    return item_outcome(item_id, work)


def _pairs(r: Run, variant: str) -> list[Any]:
    """Every pair of this generator variant: items with a done synth result, with their category."""
    return r.store.query(
        "SELECT i.id, i.lq_path, i.category AS item_category, s.result AS synth,"
        " json_extract(a.result, '$.report.category') AS analysed_category"
        " FROM items i JOIN stage_results s ON s.item_id = i.id AND s.stage = 'synth' AND s.variant = ?"
        " AND s.status = 'done'"
        " LEFT JOIN stage_results a ON a.item_id = i.id AND a.stage = 'analyze' AND a.status = 'done'"
        " ORDER BY i.rowid",
        (variant,),
    )


def _done_results(r: Run, stage: str, variant: str) -> dict[str, dict[str, Any]]:
    rows = r.store.query(
        "SELECT item_id, result FROM stage_results WHERE stage = ? AND variant = ? AND status = 'done'",
        (stage, variant),
    )
    return {row["item_id"]: json.loads(row["result"]) for row in rows}


def _failed_results(r: Run, stage: str, variant: str) -> dict[str, tuple[str, str]]:
    rows = r.store.query(
        "SELECT item_id, reason, message FROM stage_results WHERE stage = ? AND variant = ? AND status = 'failed'",
        (stage, variant),
    )
    return {row["item_id"]: (row["reason"] or "unknown", row["message"] or "") for row in rows}


def _compute_metrics(
    r: Run, cfg: QCConfig, variant: str, pairs: list[Any], vs: VariantSummary, progress: ProgressFn | None
) -> None:
    done = _done_results(r, METRICS_STAGE, variant)
    todo = [p for p in pairs if p["id"] not in done]
    vs.metrics_cached = len(pairs) - len(todo)
    if not todo:
        return
    args = []
    for p in todo:
        hq_rel = hq_relpath(json.loads(p["synth"]), variant, p["id"])
        args.append((p["id"], str(r.root / p["lq_path"]), str(r.root / hq_rel), cfg.metrics))
    batch: list[Outcome] = []
    settled = 0
    if progress:
        progress(0, len(todo))
    # One pair runs in-process: starting a pool costs more than the pair.
    from ggt.execute.ray_exec import mapper_for

    mapper = mapper_for(r, METRICS_STAGE, variant, bounded_map)  # local: the pool; ray: shards on the cluster
    results = (
        (_metrics_pair(*a) for a in args) if len(args) == 1 else mapper(_metrics_pair, args, cfg.workers)
    )
    for o in results:
        batch.append(o)
        if o.status == "done":
            vs.metrics_computed += 1
        else:
            vs.metrics_failed += 1
            vs.failures[f"metrics:{o.reason}"] = vs.failures.get(f"metrics:{o.reason}", 0) + 1
        if len(batch) >= BATCH:
            record_outcomes(r.store, METRICS_STAGE, variant, batch)
            settled += len(batch)
            batch = []
            if progress:
                progress(settled, len(todo))
    if batch:
        record_outcomes(r.store, METRICS_STAGE, variant, batch)
    if progress:
        progress(len(todo), len(todo))


# -- judge -----------------------------------------------------------------------------------------------


def judge_id(cfg: QCConfig) -> str:
    """The judge's name in the store: the backend, plus the model for VLM judges."""
    model = cfg.judge_options.get("model")
    return cfg.judge if cfg.judge == "heuristic" or not model else f"{cfg.judge}-{model}"


def _category(pair: Any) -> str | None:
    # A category the user gave at ingest beats the analyzer's guess; "unknown" means none was given.
    item = pair["item_category"]
    return item if item and item != "unknown" else pair["analysed_category"]


def _judge_pairs(
    r: Run,
    cfg: QCConfig,
    variant: str,
    pairs: list[Any],
    metrics: dict[str, dict[str, Any]],
    vs: VariantSummary,
    synth_cfg: Any = None,
) -> None:
    jvariant = f"{variant}:{judge_id(cfg)}"
    done = _done_results(r, JUDGE_STAGE, jvariant)
    todo = [p for p in pairs if p["id"] in metrics and p["id"] not in done]
    vs.judge_cached = sum(1 for p in pairs if p["id"] in done)
    if not todo:
        return
    if cfg.judge != "heuristic":
        # The engine writes the judge's rows itself (cached, retried, costed); see _judge_with_vlm.
        _judge_with_vlm(r, cfg, variant, todo, metrics, vs, synth_cfg)
        return
    outcomes = []
    for p in todo:
        started = time.time()
        ans = heuristic_judge(metrics[p["id"]]["metrics"], _category(p))
        outcomes.append(
            Outcome(
                item_id=p["id"],
                result={"judge": "heuristic", "answer": ans.model_dump(mode="json")},
                started_at=started,
                ended_at=time.time(),
            )
        )
    vs.judged += len(outcomes)
    for i in range(0, len(outcomes), BATCH):
        record_outcomes(r.store, JUDGE_STAGE, jvariant, outcomes[i : i + BATCH])


def _pair_digest(lq_path: Path, hq_path: Path) -> str:
    """SHA-256 over both images' own digests: the judge's input in the request key (order matters)."""
    return hashlib.sha256(
        hashlib.sha256(lq_path.read_bytes()).digest() + hashlib.sha256(hq_path.read_bytes()).digest()
    ).hexdigest()


def _judge_pricing(synth_cfg: Any, cfg: QCConfig, model: str) -> Any:
    """The judge model's price from the run's price table (`synth.prices` over the shipped one), if any;
    without one the costs table still gets every call's tokens, at 0 USD."""
    if synth_cfg is None:
        return None
    from ggt.generate.stage import _pricing, price_table

    return _pricing(price_table(synth_cfg).get(f"{cfg.judge}/{model}"))


def _judge_with_vlm(
    r: Run,
    cfg: QCConfig,
    variant: str,
    todo: list[Any],
    metrics: dict[str, dict[str, Any]],
    vs: VariantSummary,
    synth_cfg: Any = None,
) -> None:
    """Judge `todo` with a VLM through the request engine.

    Every call is keyed by (backend, model, instruction with the measured numbers, digest of the LQ and HQ
    files, client options) in the run's request cache, so a rerun, a resume after a crash or a lost
    `qc_judge` row never pays for an answer it already has; rate limits and outages are retried with backoff;
    every attempt and its token usage land in `attempts` and `costs`.
    """
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
    from ggt.vlm import create_vlm

    client = create_vlm(cfg.judge, **cfg.judge_options)
    model = client.model or ""
    params = client.options.model_dump(mode="json", exclude={"api_key_env", "timeout_s", "base_url"})
    params["task"] = "qc_judge"
    jvariant = f"{variant}:{judge_id(cfg)}"
    paths: dict[str, tuple[Path, Path]] = {}
    for p in todo:
        hq_rel = hq_relpath(json.loads(p["synth"]), variant, p["id"])
        paths[p["id"]] = (r.root / p["lq_path"], r.root / hq_rel)

    def jobs():
        for p in todo:
            lq_path, hq_path = paths[p["id"]]
            try:
                digest = _pair_digest(lq_path, hq_path)
            except OSError:
                digest = hashlib.sha256(f"unreadable:{lq_path}:{hq_path}".encode()).hexdigest()
            instruction = judge_instruction(metrics[p["id"]]["metrics"], _category(p))
            req = Request(backend=cfg.judge, model=model or cfg.judge, prompt=instruction,
                          input_sha256=digest, params=params)  # fmt: skip
            yield Job(p["id"], jvariant, req)

    async def call(job: Any) -> Response:
        lq_path, hq_path = paths[job.item_id]
        try:
            lq = await asyncio.to_thread(read_image, lq_path)
            hq = await asyncio.to_thread(read_image, hq_path)
        except (ImageDecodeError, OSError) as exc:
            raise PermanentError(str(exc), reason="unreadable") from None
        res = await client.request_json([lq, hq], job.request.prompt, JudgeAnswer)
        usage = {k: v for k, v in res.usage.model_dump().items() if v is not None}
        body = {"backend": res.backend, "model": res.model, "model_version": res.model_version,
                "latency_s": res.latency_s, "answer": res.data.model_dump(mode="json")}  # fmt: skip
        # A judge answers text, not an image: no per-image price applies.
        return Response(data=json.dumps(body).encode(), usage={**usage, "images": 0})

    def on_result(job: Any, data: bytes) -> dict[str, Any]:
        body = json.loads(data)
        JudgeAnswer.model_validate(body["answer"])  # a cached answer is checked like a fresh one
        return {"judge": judge_id(cfg), **body}

    pricing = _judge_pricing(synth_cfg, cfg, model)
    engine = Engine(
        r.store, RequestCache(r.cache_dir, r.store), JUDGE_STAGE,
        default_limits=Limits(concurrency=cfg.concurrency),
        retry=RetryPolicy(max_attempts=cfg.max_attempts, base_delay_s=cfg.retry_base_s,
                          max_delay_s=max(cfg.retry_base_s, cfg.retry_max_s), max_retry_after_s=cfg.retry_max_s),
        budget=Budget(None, {f"{cfg.judge}/{model}": pricing} if pricing else None),
        on_result=on_result,
    )  # fmt: skip

    async def main():
        try:
            return await engine.run(jobs(), call, total=len(todo))
        finally:
            await client.aclose()

    result = asyncio.run(main())
    vs.judged += result.done - result.skipped
    vs.judge_failed += result.failed
    vs.judge_retries += result.retries
    vs.judge_calls += result.calls
    vs.judge_cache_hits += result.cache_hits
    vs.judge_spent_usd += result.spent_usd
    for reason, n in result.failures.items():
        vs.failures[f"judge:{reason}"] = vs.failures.get(f"judge:{reason}", 0) + n


# -- decisions -------------------------------------------------------------------------------------------


def decide_pair(
    policy: Policy,
    metrics: dict[str, float] | None,
    answer: dict[str, Any] | None,
    category: str | None,
    metric_failure: tuple[str, str] | None = None,
    judge_failure: tuple[str, str] | None = None,
) -> Decision:
    """The policy's decision for one pair; failures of the metric or judge stage become reasons."""
    if metrics is None:
        why = metric_failure[0] if metric_failure else "not_measured"
        return Decision(verdict="reject", reasons=[f"metrics_failed:{why}"])
    values: dict[str, float] = dict(metrics)
    values.update(judge_values(answer))
    if answer is None:
        # Rules over judge scores cannot fire without a judge; the pair goes to a person instead.
        policy = policy.model_copy(
            update={
                "rules": [
                    r for r in policy.rules if not any(c.key.startswith("judge.") for c in r.conditions)
                ]
            }
        )
    d = policy.decide(values, category)
    if answer is None:
        d.reasons.append(f"judge_failed:{judge_failure[0] if judge_failure else 'not_judged'}")
        if d.verdict == "keep":
            d.verdict = "review"
    return d


def _decide_all(
    r: Run,
    cfg: QCConfig,
    policy: Policy,
    variant: str,
    pairs: list[Any],
    vs: VariantSummary,
    redo_decisions: bool,
    notes: list[str],
) -> int:
    metrics = _done_results(r, METRICS_STAGE, variant)
    mfail = _failed_results(r, METRICS_STAGE, variant)
    jvariant = f"{variant}:{judge_id(cfg)}"
    judged = _done_results(r, JUDGE_STAGE, jvariant)
    jfail = _failed_results(r, JUDGE_STAGE, jvariant)
    if metrics:
        measured = {k for m in metrics.values() for k in m["metrics"]}
        policy, skipped = policy.without_unmeasured(measured)
        if skipped:
            notes.append(f"{variant}: rules skipped, their metric is unavailable here: {', '.join(skipped)}")
        # Checked against what was measured, so a typo in a rule fails loudly before any decision.
        policy.check_keys([*measured, *JUDGE_KEYS])
    latest = {
        row["item_id"]: (row["reviewer"], row["decision"], row["reasons"])
        for row in r.store.query(
            "SELECT d.item_id, d.reviewer, d.decision, d.reasons FROM decisions d JOIN"
            " (SELECT item_id, MAX(id) AS id FROM decisions WHERE variant = ? GROUP BY item_id) m ON m.id = d.id",
            (variant,),
        )
    }
    outcomes: list[Outcome] = []
    appended: list[tuple[str, Decision]] = []
    counts: Counter[str] = Counter()
    for p in pairs:
        pid = p["id"]
        m = metrics.get(pid, {}).get("metrics") if pid in metrics else None
        ans = judged.get(pid, {}).get("answer") if pid in judged else None
        d = decide_pair(
            policy, m, ans, _category(p), mfail.get(pid), jfail.get(pid) if m is not None else None
        )
        counts[d.verdict] += 1
        for reason in d.reasons:
            vs.rules[reason] = vs.rules.get(reason, 0) + 1
        result = {
            "verdict": d.verdict, "reasons": d.reasons, "category": _category(p), "policy": policy.name,
            "metrics": m or {}, "judge": ans, "judge_name": judge_id(cfg),
        }  # fmt: skip
        outcomes.append(Outcome(item_id=pid, result=result))
        prev = latest.get(pid)
        human = prev is not None and prev[0] != POLICY_REVIEWER
        same = prev is not None and prev[0] == POLICY_REVIEWER and prev[1] == d.verdict
        same = same and json.loads(prev[2]) == d.reasons if prev is not None else False
        if (not human or redo_decisions) and not same:
            appended.append((pid, d))
    vs.pairs = len(pairs)
    vs.keep, vs.reject, vs.review = counts["keep"], counts["reject"], counts["review"]
    for i in range(0, len(outcomes), 256):
        record_outcomes(r.store, STAGE, variant, outcomes[i : i + 256])
    ts = now()
    with r.store.transaction() as conn:
        for pid, d in appended:
            conn.execute(
                "INSERT INTO decisions(item_id, variant, reviewer, decision, reasons, note, created_at)"
                " VALUES (?,?,?,?,?,?,?)",
                (
                    pid,
                    variant,
                    POLICY_REVIEWER,
                    d.verdict,
                    json.dumps(d.reasons),
                    f"policy {policy.name}",
                    ts,
                ),
            )
    return len(appended)


# -- the verb --------------------------------------------------------------------------------------------


def qc(
    run: Path,
    policy: Path | None = None,
    judge: str | None = None,
    generator: str | None = None,
    config: Path | None = None,
    overrides: list[str] | None = None,
    redo_decisions: bool = False,
    progress: ProgressFn | None = None,
) -> QCSummary:
    """Measure, judge and decide every generated pair; write RUN/reports/qc.html. Resumable.

    `policy`: a policy file, kept in the run's config for later runs of the verb; `default`: back to the
    shipped policy. `generator` picks one synth variant (default: every variant with synth results). Metrics and judge
    answers already stored are reused; the decision is re-made from the policy every time.
    """
    extra = [*(overrides or []), *([f"qc.judge={judge}"] if judge else [])]
    if policy is not None:
        # Saved in the run's config for later verbs, so absolute: a relative path would name another
        # file (or none) from another folder. `default` goes back to the shipped policy.
        extra += ["qc.policy=null" if str(policy) == "default" else f"qc.policy={Path(policy).resolve()}"]
    with Run.open(run) as r:
        full = r.resolve_config(config, extra)
        cfg = full.qc
        pol = load_policy(cfg.policy)
        summary = QCSummary(run=str(run), policy=pol.source, judge=judge_id(cfg))
        present = [
            row[0]
            for row in r.store.query(
                "SELECT DISTINCT variant FROM stage_results WHERE stage = 'synth' AND status = 'done' ORDER BY 1"
            )
        ]
        if generator is not None:
            if generator not in present:
                raise ConfigError(
                    f"no synth results for generator {generator!r} in {run}; present: {', '.join(present) or 'none'}"
                )
            present = [generator]
        if not present:
            summary.notes.append("no generated pairs yet: run `ggt synth` first")
        for variant in present:
            vs = summary.variants.setdefault(variant, VariantSummary())
            pairs = _pairs(r, variant)
            _compute_metrics(r, cfg, variant, pairs, vs, progress)
            metrics = _done_results(r, METRICS_STAGE, variant)
            _judge_pairs(r, cfg, variant, pairs, metrics, vs, full.synth)
            summary.decisions_appended += _decide_all(
                r, cfg, pol, variant, pairs, vs, redo_decisions, summary.notes
            )
        if cfg.report and present:
            from ggt.qc.report import write_report

            summary.report = str(write_report(r, present, pol, worst=cfg.report_worst))
    return summary


# -- inspect --hq ----------------------------------------------------------------------------------------


def _inspect_pair(
    index: int, lq_path: str, hq_path: str, names: list[str] | None
) -> tuple[int, dict[str, Any]]:
    line: dict[str, Any] = {"lq": lq_path, "hq": hq_path}
    images = []
    for role, path in (("lq", lq_path), ("hq", hq_path)):
        try:
            images.append(read_image(path))
        except ImageDecodeError as exc:  # the error names which of the two, since the line shows both
            line["error"] = f"{role} {path}: {exc}"
        except OSError as exc:
            line["error"] = f"{role} {path}: unreadable: {exc.strerror or exc}"
        if "error" in line:
            return index, line
    lq, hq = images
    try:
        from ggt.analyze.stage import heuristic_report
        from ggt.config import AnalyzeConfig

        category: str | None = heuristic_report(lq, AnalyzeConfig())[0].category
    except Exception:  # the category only narrows rules; without it every rule applies
        category = None
    values, errors = measure_pair(lq, hq, names)
    line.update(category=category, metrics=values)
    if errors:
        line["metric_errors"] = errors
    return index, line


def inspect_pairs(
    lq: list[Path], hq: list[Path], config: Path | None = None, overrides: list[str] | None = None
) -> list[dict[str, Any]]:
    """One line per (LQ, HQ) pair, in order: `lq`, `hq`, `verdict`, `reasons`, `metrics`, `category`,
    `judge` (or `error` for an unreadable file). The judge here is always the offline heuristic one:
    `inspect` is a quick, free look; `ggt qc` runs the configured judge."""
    from ggt.config import load_config

    if len(lq) != len(hq):
        raise ConfigError(f"--hq needs one HQ per LQ: got {len(lq)} LQ and {len(hq)} HQ files")
    cfg = load_config(config, overrides).qc
    pol = load_policy(cfg.policy)
    args = [(i, str(a), str(b), cfg.metrics) for i, (a, b) in enumerate(zip(lq, hq, strict=True))]
    if len(args) <= 1:
        lines = dict(_inspect_pair(*a) for a in args)
    else:
        lines = dict(bounded_map(_inspect_pair, args, cfg.workers))
    measured = {k for line in lines.values() for k in line.get("metrics", {})}
    pol, _ = pol.without_unmeasured(measured)
    out = []
    for i in range(len(args)):
        line = lines[i]
        if "error" not in line:
            ans = heuristic_judge(line["metrics"], line.get("category"))
            d = decide_pair(pol, line["metrics"], ans.model_dump(mode="json"), line.get("category"))
            line.update(verdict=d.verdict, reasons=d.reasons, judge=ans.model_dump(mode="json"))
        out.append(line)
    return out
