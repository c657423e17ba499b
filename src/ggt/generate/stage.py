"""`ggt synth`: a generated HQ target for every analysed LQ item, by one generator.

Local generators (`classical`, later `diffusers`) run on the process pool; API generators run through
the engine (cache, retries, rate limits, budget). Either way the HQ file is written atomically before its
row is committed, and ends at the LQ's framing.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
from collections import deque
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import BaseModel, Field

from ggt.analyze.report import DegradationReport
from ggt.config import ConfigError, Price, SynthConfig
from ggt.execute.local import Outcome, bounded_map, item_outcome, record_outcomes
from ggt.fsutil import write_bytes_atomic
from ggt.imaging import ImageDecodeError, decode_image, encode_image, read_image, to_float
from ggt.progress import ProgressFn
from ggt.store import Run

STAGE = "synth"
BATCH = 16
PREFETCH = 8  # API jobs built ahead in threads
_SAFE = re.compile(r"^[A-Za-z0-9._-]+$")


class SynthSummary(BaseModel):
    run: str
    generator: str
    model: str | None = None
    variant: str
    planned: int = 0
    done: int = 0
    failed: int = 0
    pending: int = 0
    already_done: int = 0
    not_analysed: int = 0
    cache_hits: int = 0
    calls: int = 0
    retries: int = 0
    spent_usd: float = 0.0
    estimated_usd: float | None = None
    price_known: bool = True
    budget_exhausted: bool = False
    dry_run: bool = False
    failures: dict[str, int] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)


def variant_name(generator: str, model: str | None) -> str:
    """The folder under hq/ and the store's variant: the generator, plus the model when there is one."""
    name = generator if not model else f"{generator}-{model}"
    if not _SAFE.match(name):
        raise ConfigError(f"generator/model name {name!r} may hold only letters, digits, '.', '_' and '-'")
    return name


def price_table(cfg: SynthConfig) -> dict[str, Price]:
    shipped = yaml.safe_load(
        resources.files("ggt.generate").joinpath("prices.yaml").read_text(encoding="utf-8")
    )
    table = {key: Price.model_validate(value) for key, value in (shipped or {}).items()}
    table.update(cfg.prices)
    return table


def _pending(r: Run, variant: str) -> tuple[list[Any], int, int]:
    """Analysed items without a done synth result, plus counts of done and not-yet-analysed items."""
    rows = r.store.query(
        "SELECT i.id, i.lq_path, i.width, i.height, i.category, i.source_path, a.result AS analysis FROM items i"
        " JOIN stage_results a ON a.item_id = i.id AND a.stage = 'analyze' AND a.status = 'done'"
        " LEFT JOIN stage_results s ON s.item_id = i.id AND s.stage = ? AND s.variant = ?"
        " WHERE s.status IS NULL OR s.status != 'done' ORDER BY i.rowid",
        (STAGE, variant),
    )
    done = r.store.scalar(
        "SELECT COUNT(*) FROM stage_results WHERE stage = ? AND variant = ? AND status = 'done'",
        (STAGE, variant),
    )
    not_analysed = r.store.scalar(
        "SELECT COUNT(*) FROM items i LEFT JOIN stage_results a ON a.item_id = i.id AND a.stage = 'analyze'"
        " AND a.status = 'done' WHERE a.item_id IS NULL"
    )
    return rows, done, not_analysed


def synth(
    run: Path,
    generator: str | None = None,
    model: str | None = None,
    concurrency: int | None = None,
    budget: float | None = None,
    dry_run: bool = False,
    config: Path | None = None,
    overrides: list[str] | None = None,
    progress: ProgressFn | None = None,
) -> SynthSummary:
    """Generate the HQ target of every analysed item not yet done by this generator. Resumable."""
    extra = list(overrides or [])
    extra += [f"synth.generator={generator}"] if generator else []
    extra += [f"synth.model={model}"] if model else []
    extra += [f"synth.concurrency={concurrency}"] if concurrency else []
    with Run.open(run) as r:
        cfg = r.resolve_config(config, extra).synth
        variant = variant_name(cfg.generator, cfg.model)
        rows, done_before, not_analysed = _pending(r, variant)
        summary = SynthSummary(
            run=str(run), generator=cfg.generator, model=cfg.model, variant=variant, planned=len(rows),
            already_done=done_before, not_analysed=not_analysed, dry_run=dry_run,
        )  # fmt: skip
        if not_analysed:
            summary.notes.append(
                f"{not_analysed} items are not analysed yet and were left out: run `ggt analyze`"
            )
        from ggt.generate import API_GENERATORS, GENERATORS, available_generators

        if cfg.generator not in GENERATORS and cfg.generator not in API_GENERATORS:
            raise ConfigError(
                f"unknown generator {cfg.generator!r}; choose from {', '.join(available_generators())}"
            )
        if cfg.generator in GENERATORS:
            summary.estimated_usd = 0.0
            if not dry_run:
                _run_local(r, cfg, variant, rows, summary, progress)
        else:
            _run_api(r, cfg, variant, rows, summary, budget, dry_run, progress)
    return summary


# -- local generators ------------------------------------------------------------------------------------


def _restore_local(
    item_id: str, lq_path: str, analysis: str, root: str, hq_rel: str, cfg: SynthConfig
) -> Outcome:
    def work() -> dict[str, Any]:
        from ggt.generate import create_generator

        lq = read_image(lq_path)
        stored = json.loads(analysis)
        report = DegradationReport.model_validate(stored["report"])
        gen = create_generator(cfg.generator, **cfg.options)
        # Prompt-driven local models (diffusers) get the item's prompt; operator chains need only the report.
        takes_prompt = "prompt" in inspect.signature(gen.restore).parameters
        hq, info = (
            gen.restore(lq, report, prompt=stored["prompt"]) if takes_prompt else gen.restore(lq, report)
        )
        if report.category in cfg.color_transfer:
            from ggt.generate.geometry import color_transfer

            hq = color_transfer(hq, lq)
            info["color_transfer"] = True
        write_bytes_atomic(Path(root) / hq_rel, encode_image(hq, "png"))
        size = [int(hq.shape[1]), int(hq.shape[0])]
        return {"hq_path": hq_rel, "size": size, "generator": cfg.generator, "model": cfg.model, **info}

    return item_outcome(item_id, work, paths=(lq_path,))


def _run_local(
    r: Run, cfg: SynthConfig, variant: str, rows: list[Any], summary: SynthSummary, progress
) -> None:
    out_dir = r.hq_dir(variant)
    out_dir.mkdir(parents=True, exist_ok=True)
    args = (
        (
            row["id"],
            str(r.root / row["lq_path"]),
            row["analysis"],
            str(r.root),
            f"hq/{variant}/{row['id']}.png",
            cfg,
        )
        for row in rows
    )
    batch: list[Outcome] = []
    total, settled = len(rows), 0
    if progress:
        progress(0, total)
    for o in bounded_map(_restore_local, args, cfg.workers):
        batch.append(o)
        if o.status == "done":
            summary.done += 1
        else:
            summary.failed += 1
            summary.failures[o.reason or "unknown"] = summary.failures.get(o.reason or "unknown", 0) + 1
        if len(batch) >= BATCH:
            record_outcomes(r.store, STAGE, variant, batch)
            settled += len(batch)
            batch = []
            if progress:
                progress(settled, total)
    if batch:
        record_outcomes(r.store, STAGE, variant, batch)
    if progress:
        progress(total, total)


# -- API generators --------------------------------------------------------------------------------------


def _pricing(price: Price | None, batch: bool = False) -> Any:
    from ggt.engine import Pricing

    if price is None:
        return None
    factor = price.batch_discount if batch else 1.0
    return Pricing(
        per_image_usd=(price.per_image or 0.0) * factor,
        per_input_token_usd=(price.per_million_input_tokens or 0.0) * factor / 1e6,
        per_output_token_usd=(price.per_million_output_tokens or 0.0) * factor / 1e6,
        est_input_tokens=price.est_input_tokens,
        est_output_tokens=price.est_output_tokens,
    )


def _run_api(
    r: Run,
    cfg: SynthConfig,
    variant: str,
    rows: list[Any],
    summary: SynthSummary,
    budget_usd: float | None,
    dry_run: bool,
    progress,
) -> None:
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
    from ggt.generate import create_api_generator
    from ggt.generate.geometry import GeometryError, color_transfer, plan, prepare, restore_framing

    if not cfg.model:
        raise ConfigError(f"generator {cfg.generator!r} needs a model: --model NAME or synth.model in config")
    price = price_table(cfg).get(f"{cfg.generator}/{cfg.model}")
    pricing = _pricing(price)
    summary.price_known = pricing is not None
    spent_before = float(
        r.store.scalar(
            "SELECT COALESCE(SUM(usd), 0) FROM costs WHERE stage = ? AND backend = ?", (STAGE, cfg.generator)
        )
    )
    if pricing is None:
        summary.notes.append(
            f"no price for {cfg.generator}/{cfg.model}: its cost is unknown (add it under synth.prices)"
        )
        if budget_usd is not None:
            raise ConfigError(
                f"--budget needs a price for {cfg.generator}/{cfg.model}; add one under synth.prices in the config"
            )
    summary.estimated_usd = None if pricing is None else pricing.estimate() * len(rows)
    if dry_run:
        return
    gen = create_api_generator(cfg.generator, model=cfg.model, **cfg.options)
    params = {"geometry": cfg.geometry.model_dump(mode="json"), **gen.request_params()}
    out_dir = r.hq_dir(variant)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {row["id"]: row for row in rows}

    def build(row: Any) -> Any:
        lq = read_image(r.root / row["lq_path"])
        sent, _ = prepare(lq, cfg.geometry)
        req = Request(
            backend=cfg.generator, model=cfg.model, prompt=json.loads(row["analysis"])["prompt"],
            input_bytes=encode_image(sent, "png"), params=params,
        )  # fmt: skip
        return Job(row["id"], variant, req)

    async def jobs():
        # Lazy (the engine pulls jobs only when it has room) and built in threads a few ahead: reading,
        # framing and encoding a 1024x1024 LQ costs ~70 ms, which on the event loop would starve it.
        ahead: deque[asyncio.Future[Any]] = deque()
        for row in rows:
            ahead.append(asyncio.ensure_future(asyncio.to_thread(build, row)))
            if len(ahead) >= PREFETCH:
                yield await ahead.popleft()
        while ahead:
            yield await ahead.popleft()

    def check(data: bytes, transform: Any) -> np.ndarray:
        try:
            answer = to_float(decode_image(data).rgb)
            return restore_framing(answer, transform, cfg.geometry.aspect_tolerance)
        except (ImageDecodeError, GeometryError) as exc:
            raise PermanentError(f"unusable answer: {exc}", reason="bad_output") from None

    def on_result(job: Any, data: bytes) -> dict[str, Any]:
        row = meta[job.item_id]
        lq = read_image(r.root / row["lq_path"])
        transform = plan(lq.shape[1], lq.shape[0], cfg.geometry)
        hq = check(data, transform)
        category = json.loads(row["analysis"])["report"]["category"]
        if category in cfg.color_transfer:
            hq = color_transfer(hq, lq)
        path = out_dir / f"{job.item_id}.png"
        write_bytes_atomic(path, encode_image(hq, "png"))
        return {
            "hq_path": f"hq/{variant}/{path.name}", "size": [hq.shape[1], hq.shape[0]],
            "generator": cfg.generator, "model": cfg.model, "prompt": job.request.prompt,
            "transform": transform.model_dump(mode="json"), "color_transfer": category in cfg.color_transfer,
        }  # fmt: skip

    async def call(job: Any) -> Response:
        img = await gen.generate(job.request.input_bytes, job.request.prompt)
        usage = {**img.usage.model_dump(exclude_none=True), "images": 1}
        row = meta[job.item_id]
        # Checked before the engine caches it: an unusable answer must not be served from the cache for
        # ever. A rerun asks again (and pays again, which is why it is not retried within the run). The
        # transform depends only on the LQ's size, which the store knows: no decode needed.
        transform = plan(int(row["width"]), int(row["height"]), cfg.geometry)
        try:
            await asyncio.to_thread(check, img.data, transform)
        except PermanentError as exc:
            exc.usage = usage  # billed all the same: the engine records its cost
            raise
        return Response(data=img.data, usage=usage, meta={"model_version": img.model_version})

    def report(done: int, failed: int, total: int, spent: float) -> None:
        if progress:
            progress(done + failed, total, spent_usd=spent)

    cache_root = cfg.cache_dir or r.cache_dir
    engine = Engine(
        r.store, RequestCache(Path(cache_root), r.store), STAGE,
        default_limits=Limits(concurrency=cfg.concurrency, requests_per_minute=cfg.requests_per_minute),
        retry=RetryPolicy(max_attempts=cfg.max_attempts),
        budget=Budget(budget_usd, {f"{cfg.generator}/{cfg.model}": pricing} if pricing else None,
                      spent_usd=spent_before),
        on_result=on_result, progress=report, call_timeout_s=cfg.call_timeout_s,
    )  # fmt: skip

    async def main():
        try:
            return await engine.run(jobs(), call, total=len(rows))
        finally:
            await gen.aclose()

    result = asyncio.run(main())
    summary.done, summary.failed, summary.pending = result.done, result.failed, result.pending
    summary.cache_hits, summary.calls, summary.retries = result.cache_hits, result.calls, result.retries
    summary.spent_usd, summary.budget_exhausted = result.spent_usd, result.budget_exhausted
    summary.failures = dict(result.failures)
