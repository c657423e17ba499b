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
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import BaseModel, Field

from ggt.analyze.report import DegradationReport
from ggt.config import ConfigError, Price, SynthConfig
from ggt.execute.local import Outcome, bounded_map, item_outcome, record_outcomes
from ggt.fsutil import link_or_write_atomic, sweep_orphaned_temps, write_bytes_atomic
from ggt.imaging import ImageDecodeError, decode_image, encode_image, plain_png_size, read_image, to_float
from ggt.progress import ProgressFn
from ggt.store import Run
from ggt.store.run import hq_relpath

STAGE = "synth"
BATCH_GENERATORS = ("gemini", "openai")
BATCH = 16
PREFETCH = 8  # API jobs built ahead in threads
_SAFE = re.compile(r"^[A-Za-z0-9._-]+$")


class BatchOptions(BaseModel):
    size: int | None = None
    poll_s: float = 30.0
    max_poll_s: float = 600.0


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
    batch: bool = False
    batch_jobs: list[str] = Field(default_factory=list, description="batch mode: the vendor jobs collected")
    failures: dict[str, int] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)


def variant_name(generator: str, model: str | None) -> str:
    """The folder under hq/ and the store's variant: the generator, plus the model when there is one."""
    name = generator if not model else f"{generator}-{model}"
    if not _SAFE.match(name):
        raise ConfigError(f"generator/model name {name!r} may hold only letters, digits, '.', '_' and '-'")
    return name


def _slug(path_or_id: str) -> str:
    """A readable variant part for a local model or LoRA: its folder name, or folder and stem for a weights
    file (LoRA files are often all called `pytorch_lora_weights`); unsafe characters become '_'."""
    p = Path(path_or_id.rstrip("/\\"))
    name = f"{p.parent.name}_{p.stem}" if p.suffix in (".safetensors", ".bin", ".pt", ".ckpt") else p.name
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name.strip("_") or "model")


def local_variant(cfg: SynthConfig) -> str:
    """The variant of a local generator: its model and LoRA are part of the name, so switching either
    starts a new `hq/` folder instead of passing off the old outputs as done."""
    model, lora = cfg.options.get("model"), cfg.options.get("lora")
    name = (
        cfg.generator
        + (f"-{_slug(str(model))}" if model else "")
        + (f"-lora-{_slug(str(lora))}" if lora else "")
    )
    return variant_name(name, None)


def variant_for(generator: str, model: str | None, lora: str | None = None) -> str:
    """The variant `synth(generator=, model=, lora=)` writes to, without opening a run."""
    cfg = SynthConfig(generator=generator, model=model, options={"lora": lora} if lora else {})
    from ggt.generate import GENERATORS

    return (
        local_variant(_apply_local_model(cfg)) if generator in GENERATORS else variant_name(generator, model)
    )


def _apply_local_model(cfg: SynthConfig) -> SynthConfig:
    """`--model` (and `--lora`) of a local generator are its options: a pipeline folder is not a vendor model."""
    from ggt.generate import GENERATORS

    if cfg.generator not in GENERATORS or not cfg.model:
        return cfg
    if "model" not in GENERATORS[cfg.generator].Options.model_fields:
        raise ConfigError(f"the {cfg.generator} generator takes no model (got --model {cfg.model})")
    return cfg.model_copy(update={"options": {**cfg.options, "model": cfg.model}, "model": None})


def _forget_other_generator(config_path: Path, generator: str) -> None:
    """Drop the saved model and options when the run switches generator.

    A run's config.yaml keeps every stage's settings (provenance, and a model named once stays named), but
    another generator must not inherit them: backend options are typed models that forbid each other's
    fields, and a vendor model is no pipeline folder.
    """
    if not config_path.is_file():
        return
    data = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    saved = data.get("synth") or {}
    if saved.get("generator", "classical") == generator:
        return
    had = saved.pop("model", None) is not None
    if bool(saved.pop("options", None)) or had:
        write_bytes_atomic(config_path, yaml.safe_dump(data, sort_keys=False).encode("utf-8"))


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


def _forget_missing_hq(r: Run, variant: str) -> list[str]:
    """Drop the done results whose HQ file is gone (deleted, or lost with a disk), so that they are
    generated again; their attempts and costs stay. Returns the missing paths."""
    lost: list[tuple[str, str]] = []
    for row in r.store.query(
        "SELECT item_id, result FROM stage_results WHERE stage = ? AND variant = ? AND status = 'done'",
        (STAGE, variant),
    ):
        hq_rel = hq_relpath(json.loads(row["result"] or "{}"), variant, row["item_id"])
        if not (r.root / hq_rel).is_file():
            lost.append((row["item_id"], hq_rel))
    if lost:
        with r.store.transaction() as conn:
            conn.executemany(
                "DELETE FROM stage_results WHERE item_id = ? AND stage = ? AND variant = ?",
                [(item_id, STAGE, variant) for item_id, _ in lost],
            )
    return [path for _, path in lost]


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
    batch: bool = False,
    batch_size: int | None = None,
    batch_poll_s: float = 30.0,
    batch_max_poll_s: float = 600.0,
    lora: str | None = None,
) -> SynthSummary:
    """Generate the HQ target of every analysed item not yet done by this generator. Resumable.

    `batch`: through the vendor's Batch API (gemini, openai; about half price, answers within 24 hours):
    jobs of at most `batch_size` requests (default: the vendor's limits), polled every `batch_poll_s`
    seconds, growing to `batch_max_poll_s`. An interrupted run resumes the jobs it submitted.
    """
    extra = list(overrides or [])
    extra += [f"synth.generator={generator}"] if generator else []
    extra += [f"synth.model={model}"] if model else []
    extra += [f"synth.concurrency={concurrency}"] if concurrency else []
    extra += [f"synth.options.lora={lora}"] if lora else []
    if batch_size is not None and batch_size < 1:
        raise ConfigError("batch_size must be at least 1")
    with Run.open(run) as r:
        from ggt.generate import API_GENERATORS, GENERATORS, available_generators

        if generator:
            _forget_other_generator(r.config_path, generator)
        cfg = _apply_local_model(r.resolve_config(config, extra).synth)
        local = cfg.generator in GENERATORS
        variant = local_variant(cfg) if local else variant_name(cfg.generator, cfg.model)
        lost = [] if dry_run else _forget_missing_hq(r, variant)
        rows, done_before, not_analysed = _pending(r, variant)
        model_used = cfg.options.get("model") if local else cfg.model
        summary = SynthSummary(
            run=str(run), generator=cfg.generator, model=model_used, variant=variant, planned=len(rows),
            already_done=done_before, not_analysed=not_analysed, dry_run=dry_run, batch=batch,
        )  # fmt: skip
        if not_analysed:
            summary.notes.append(
                f"{not_analysed} items are not analysed yet and were left out: run `ggt analyze`"
            )
        if lost:
            summary.notes.append(
                f"{len(lost)} HQ files recorded as done were missing (e.g. {lost[0]}) and are generated again"
                " (an API generator's answer comes from the cache, unpaid)"
            )
        if cfg.generator not in GENERATORS and cfg.generator not in API_GENERATORS:
            raise ConfigError(
                f"unknown generator {cfg.generator!r}; choose from {', '.join(available_generators())}"
            )
        if batch and cfg.generator not in BATCH_GENERATORS:
            raise ConfigError(
                f"--batch works with {' and '.join(BATCH_GENERATORS)} (their vendors' Batch APIs), not {cfg.generator!r}"
            )
        if batch:
            opts = BatchOptions(size=batch_size, poll_s=batch_poll_s, max_poll_s=batch_max_poll_s)
            _run_api(r, cfg, variant, rows, summary, budget, dry_run, progress, batch=opts)
        elif local:
            summary.estimated_usd = 0.0
            if not dry_run:
                _run_local(r, cfg, variant, rows, summary, progress)
        else:
            from ggt.execute.ray_exec import run_synth_api, settings

            run_api = run_synth_api if settings(r).executor == "ray" else _run_api
            run_api(r, cfg, variant, rows, summary, budget, dry_run, progress)
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


def _hq_out_dir(r: Run, variant: str) -> Path:
    out_dir = r.hq_dir(variant)
    out_dir.mkdir(parents=True, exist_ok=True)
    sweep_orphaned_temps(out_dir)  # half-written HQs of a killed run
    return out_dir


def _run_local(
    r: Run, cfg: SynthConfig, variant: str, rows: list[Any], summary: SynthSummary, progress
) -> None:
    _hq_out_dir(r, variant)
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
    from ggt.execute.ray_exec import mapper_for

    for o in mapper_for(r, STAGE, variant, bounded_map)(_restore_local, args, cfg.workers):
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
    batch: BatchOptions | None = None,
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
    from ggt.generate.geometry import (
        GeometryError,
        answer_is_final,
        color_transfer,
        plan,
        prepare,
        restore_framing,
        sends_lq_as_is,
    )

    if not cfg.model:
        raise ConfigError(f"generator {cfg.generator!r} needs a model: --model NAME or synth.model in config")
    price = price_table(cfg).get(f"{cfg.generator}/{cfg.model}")
    pricing = _pricing(price, batch=batch is not None)
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
    out_dir = _hq_out_dir(r, variant)
    meta = {row["id"]: row for row in rows}

    def build(row: Any) -> Any:
        raw = (r.root / row["lq_path"]).read_bytes()
        size = (int(row["width"]), int(row["height"]))
        if sends_lq_as_is(plan(*size, cfg.geometry)) and plain_png_size(raw) == size:
            # Ingest's own PNG, sent as it is: the bytes a decode and re-encode would give (so the same
            # request key), without the ~30 ms that costs per 1024x1024 photo.
            sent_bytes = raw
        else:
            # 8-bit in: `prepare` keeps it 8-bit when nothing is resampled, sparing two float conversions.
            sent, _ = prepare(decode_image(raw).rgb, cfg.geometry)
            sent_bytes = encode_image(sent, "png")
        req = Request(
            backend=cfg.generator, model=cfg.model, prompt=json.loads(row["analysis"])["prompt"],
            input_bytes=sent_bytes, params=params,
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
        """The answer decoded and mapped back to the LQ's framing, as 8-bit RGB; `bad_output` if it cannot be."""
        try:
            # 8-bit throughout: a float round trip would cost ~15 ms per 1024x1024 answer for no change.
            return restore_framing(decode_image(data).rgb, transform, cfg.geometry.aspect_tolerance)
        except (ImageDecodeError, GeometryError) as exc:
            raise PermanentError(f"unusable answer: {exc}", reason="bad_output") from None

    # The framed answer `finish` decoded, kept (8-bit: 3 MB at 1024x1024) until `on_result` writes it, so
    # each answer is decoded once. An answer served from the cache is not here and is decoded there.
    framed: dict[str, np.ndarray] = {}

    def on_result(job: Any, data: bytes) -> dict[str, Any]:
        row = meta[job.item_id]
        # The transform depends only on the LQ's size, which the store knows: the LQ is read only when
        # its colours are needed.
        transform = plan(int(row["width"]), int(row["height"]), cfg.geometry)
        hq = framed.pop(job.item_id, None)
        if hq is None:
            hq = check(data, transform)
        category = json.loads(row["analysis"])["report"]["category"]
        if category in cfg.color_transfer:
            hq = color_transfer(to_float(hq), read_image(r.root / row["lq_path"]))
            payload = encode_image(hq, "png")
        elif answer_is_final(transform, plain_png_size(data)):
            payload = data  # the answer's own lossless PNG already holds exactly these pixels
        else:
            payload = encode_image(hq, "png")
        path = out_dir / f"{job.item_id}.png"
        if payload is data:  # the vendor's bytes, which the request cache already holds: link, not copy
            link_or_write_atomic(path, payload, source=cache.path(job.request.request_key()))
        else:
            write_bytes_atomic(path, payload)
        return {
            "hq_path": f"hq/{variant}/{path.name}", "size": [hq.shape[1], hq.shape[0]],
            "generator": cfg.generator, "model": cfg.model, "prompt": job.request.prompt,
            "transform": transform.model_dump(mode="json"), "color_transfer": category in cfg.color_transfer,
        }  # fmt: skip

    async def finish(job: Any, img: Any) -> Response:
        usage = {**img.usage.model_dump(exclude_none=True), "images": 1}
        row = meta[job.item_id]
        # Checked before the engine caches it: an unusable answer must not be served from the cache for
        # ever. A rerun asks again (and pays again, which is why it is not retried within the run). The
        # transform depends only on the LQ's size, which the store knows: no decode needed.
        transform = plan(int(row["width"]), int(row["height"]), cfg.geometry)
        try:
            framed[job.item_id] = await asyncio.to_thread(check, img.data, transform)
        except PermanentError as exc:
            exc.usage = usage  # billed all the same: the engine records its cost
            raise
        return Response(data=img.data, usage=usage, meta={"model_version": img.model_version})

    async def call(job: Any) -> Response:
        # Header-only check in the generator: `finish` decodes the pixels (once) and fails bad ones.
        return await finish(
            job, await gen.generate(job.request.input_bytes, job.request.prompt, verify=False)
        )

    shown = {"settled": 0, "total": len(rows), "spent": 0.0}

    def report(done: int, failed: int, total: int, spent: float) -> None:
        shown.update(settled=done + failed, total=total, spent=spent)
        if progress:
            progress(done + failed, total, spent_usd=spent)

    def status(text: str) -> None:
        if progress:
            try:
                progress(shown["settled"], shown["total"], spent_usd=shown["spent"], status=text)
            except TypeError:  # a caller's progress function without `status`
                progress(shown["settled"], shown["total"], spent_usd=shown["spent"])

    from ggt.execute.hooks import engine_parts

    cache_root = cfg.cache_dir or r.cache_dir
    # Inside a Ray shard: the shared cache, and the cluster-wide budget and limits (execute/hooks.py).
    cache, budget_obj, limiter = engine_parts(
        RequestCache(Path(cache_root), r.store),
        Budget(
            budget_usd, {f"{cfg.generator}/{cfg.model}": pricing} if pricing else None, spent_usd=spent_before
        ),
    )
    engine = Engine(
        r.store, cache, STAGE,
        default_limits=Limits(concurrency=cfg.concurrency, requests_per_minute=cfg.requests_per_minute),
        retry=RetryPolicy(max_attempts=cfg.max_attempts), budget=budget_obj, limiter=limiter,
        on_result=on_result, progress=report, call_timeout_s=cfg.call_timeout_s,
    )  # fmt: skip

    async def main():
        # Threads mostly wait (fsync of cache and HQ files, ~10 ms each) or run codecs that release the GIL;
        # the loop's default pool (cores + 4 threads) would queue them behind each other and idle the CPU.
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(
                max_workers=max(8, min(64, cfg.concurrency + PREFETCH)), thread_name_prefix="synth"
            )
        )
        try:
            if batch is not None:
                return await _batches(r, cfg, variant, gen, engine, jobs(), meta, params, finish, summary,
                                      batch, budget_usd, spent_before, pricing, status)  # fmt: skip
            return await engine.run(jobs(), call, total=len(rows))
        finally:
            await gen.aclose()

    result = asyncio.run(main())
    summary.done, summary.failed, summary.pending = result.done, result.failed, result.pending
    summary.cache_hits, summary.calls, summary.retries = result.cache_hits, result.calls, result.retries
    summary.spent_usd, summary.budget_exhausted = result.spent_usd, result.budget_exhausted
    summary.failures = dict(result.failures)


async def _batches(
    r: Run, cfg: SynthConfig, variant: str, gen: Any, engine: Any, jobs: Any, meta: dict[str, Any],
    params: dict[str, Any], finish: Any, summary: SynthSummary, opts: BatchOptions, budget_usd: float | None,
    spent_before: float, pricing: Any, status: Any,
) -> Any:  # fmt: skip
    """Batch mode: submit what is neither cached nor already submitted, wait, collect through `engine`."""
    from ggt.engine import Budget
    from ggt.generate.batch import BatchLedger, run_batches

    if cfg.generator == "gemini":
        from ggt.generate.gemini import GeminiBatch

        backend: Any = GeminiBatch(gen)
    else:
        from ggt.generate.openai_images import OpenAIBatch

        backend = OpenAIBatch(gen)
    # The money is committed when a job is submitted, so the cap is enforced there; the engine that
    # collects the answers must record every one of them, whatever the cap.
    engine.budget = Budget(
        None, {f"{cfg.generator}/{cfg.model}": pricing} if pricing else None, spent_usd=spent_before
    )
    ledger = BatchLedger(r.store, STAGE, variant, cfg.generator, cfg.model or "")
    result, stats = await run_batches(
        backend=backend, ledger=ledger, engine=engine, jobs=jobs, pending_ids=set(meta), params=params,
        finish=finish, total=len(meta), batch_size=min(opts.size or backend.max_items, backend.max_items),
        poll_s=opts.poll_s, max_poll_s=opts.max_poll_s, display_prefix=f"ggt-{r.root.name}-{variant}"[:80],
        cap_usd=budget_usd, committed_usd=spent_before,
        estimate_usd=0.0 if pricing is None else pricing.estimate(), on_status=status,
    )  # fmt: skip
    summary.notes.extend(stats.notes)
    summary.batch_jobs = stats.jobs
    result.budget_exhausted = result.budget_exhausted or stats.budget_exhausted
    return result
