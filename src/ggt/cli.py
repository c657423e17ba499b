"""The `ggt` command line: parses, calls the API function of the same name, renders Rich or `--json`.

Exit codes: 0 done, 1 some items failed (listed), 2 usage or configuration error.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ggt import __version__
from ggt.config import ConfigError
from ggt.store import StoreError

app = typer.Typer(
    name="ggt",
    help="Generative Ground Truth: real LQ photos -> audited LQ-HQ pairs for image restoration.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Configuration: JSON Schema and a run's resolved config.", no_args_is_help=True)
app.add_typer(config_app, name="config")

out = Console()
err = Console(stderr=True, soft_wrap=True)  # one error, one line: greppable in logs

RunOpt = Annotated[Path, typer.Option("--run", help="the run folder, e.g. runs/rain-2026")]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable JSON on stdout")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="YAML config merged onto the run's config")]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="override one config key, e.g. --set ingest.workers=2")
]
ExecutorOpt = Annotated[
    str | None, typer.Option("--executor", help="local (this machine) or ray (shards on a Ray cluster)")
]
RayAddressOpt = Annotated[
    str | None,
    typer.Option("--ray-address", help="auto or ray://HOST:10001 (default: RAY_ADDRESS, else local)"),
]
ShardSizeOpt = Annotated[int | None, typer.Option("--shard-size", help="items per Ray shard")]


def _exec_sets(
    set_: list[str] | None, executor: str | None, address: str | None, shard: int | None
) -> list[str]:
    """--executor/--ray-address/--shard-size as config overrides (the `execute` section, see docs/ray.md)."""
    extra = list(set_ or [])
    extra += [f"execute.executor={executor}"] if executor else []
    extra += [f"execute.ray_address={address}"] if address else []
    extra += [f"execute.shard_size={shard}"] if shard else []
    return extra


def _fail(message: str, code: int = 2) -> typer.Exit:
    from rich.markup import escape

    # Messages quote user input and install hints such as "pip install 'ggt[train]'": not markup.
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    return typer.Exit(code)


@contextmanager
def _errors() -> Iterator[None]:
    """Turn the errors a user can fix into one clear line and exit code 2 (no traceback)."""
    try:
        yield
    except (ConfigError, StoreError, FileNotFoundError, ValueError) as exc:
        raise _fail(str(exc)) from None


def _progress(label: str, enabled: bool = True):
    from ggt.progress import progress_bar

    return progress_bar(label, err, enabled)


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="print the version and exit")] = False,
) -> None:
    if version:
        out.print(f"ggt {__version__}")
        raise typer.Exit(0)


@app.command()
def ingest(
    sources: Annotated[list[Path], typer.Argument(help="files and folders of LQ photos")],
    run: RunOpt,
    category: Annotated[
        str | None, typer.Option(help="category for all sources; default: the first subfolder's name")
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add photos to a run: normalised LQ copies, hashes, categories; every unusable file recorded."""
    from ggt.ingest import ingest as ingest_api

    with _errors(), _progress("ingest", enabled=not as_json) as progress:
        summary = ingest_api(
            sources, run, category=category, config=config, overrides=set_, progress=progress
        )
    if as_json:
        _print_json(summary.model_dump())
    else:
        table = Table(title=f"ingest -> {run}", show_header=False)
        for key in ("found", "new", "already_done", "duplicates", "near_duplicates", "failed", "ignored"):
            table.add_row(key.replace("_", " "), str(getattr(summary, key)))
        out.print(table)
        for note in summary.notes:
            err.print(f"[yellow]note:[/] {note}", highlight=False)
        for f in summary.failures[:20]:
            err.print(f"[red]failed[/] {f.path}: {f.reason}: {f.message}", highlight=False)
        if len(summary.failures) > 20:
            err.print(f"... and {len(summary.failures) - 20} more: ggt status --run {run} --errors")
    raise typer.Exit(1 if summary.failures else 0)


@app.command()
def status(
    run: RunOpt,
    errors: Annotated[
        bool, typer.Option("--errors", help="list every failed item with its path and reason")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Counts per category and per stage; with --errors, each failure and why."""
    from ggt.status import run_status

    with _errors():
        st = run_status(run, errors=errors)
    if as_json:
        _print_json(st.model_dump(exclude_none=True))
        return
    render_status(st)


def render_status(st: Any) -> None:
    # The run's name on a line of its own: as the table's title it wrapped to the table's narrow width.
    out.print(f"run {st.run}: {st.items} items", style="italic", highlight=False)
    table = Table()
    table.add_column("category")
    table.add_column("items", justify="right")
    for cat, n in st.categories.items():
        table.add_row(cat, str(n))
    out.print(table)
    src = Table(title="files seen by ingest")
    src.add_column("outcome")
    src.add_column("files", justify="right")
    for key, n in st.sources.items():
        src.add_row(key, str(n))
    src.add_row("near-duplicates flagged", str(st.near_duplicates))
    out.print(src)
    if st.stages:
        stages = Table(title="stages")
        stages.add_column("stage")
        for col in ("done", "failed", "skipped"):
            stages.add_column(col, justify="right")
        for name, counts in st.stages.items():
            stages.add_row(name, *(str(counts.get(c, 0)) for c in ("done", "failed", "skipped")))
        out.print(stages)
    if st.errors is not None:
        if not st.errors:
            out.print("[green]no errors[/]")
        for e in st.errors:
            out.print(f"[red]{e.stage}[/] {e.path}: {e.reason}: {e.message}", highlight=False)


@app.command()
def analyze(
    run: RunOpt,
    vlm: Annotated[
        str | None, typer.Option(help="heuristic (offline), gemini, openai or openai-compatible")
    ] = None,
    redo: Annotated[bool, typer.Option("--redo", help="analyse again items already analysed")] = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    as_json: JsonOpt = False,
    executor: ExecutorOpt = None,
    ray_address: RayAddressOpt = None,
    shard_size: ShardSizeOpt = None,
) -> None:
    """A degradation report and an adaptive restoration prompt for every ingested photo."""
    from ggt.analyze.stage import analyze as analyze_api

    set_ = _exec_sets(set_, executor, ray_address, shard_size)
    with _errors(), _progress("analyze", enabled=not as_json) as progress:
        summary = analyze_api(run, vlm=vlm, config=config, overrides=set_, redo=redo, progress=progress)
    if as_json:
        _print_json(summary.model_dump())
    else:
        table = Table(title=f"analyze ({summary.analyzer}, {summary.prompting} prompts) -> {run}")
        table.add_column("category")
        table.add_column("items", justify="right")
        for cat, n in summary.categories.items():
            table.add_row(cat, str(n))
        out.print(table)
        out.print(
            f"analysed {summary.analyzed}, already done {summary.already_done}, failed {summary.failed}"
        )
        for f in summary.failures[:20]:
            err.print(f"[red]failed[/] {f.path}: {f.reason}: {f.message}", highlight=False)
    raise typer.Exit(1 if summary.failures else 0)


@app.command()
def inspect(
    lq: Annotated[list[Path], typer.Argument(help="LQ image files")],
    hq: Annotated[
        list[Path] | None,
        typer.Option("--hq", help="HQ files paired with the LQ files in order: QC verdicts"),
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Each image's degradation report and prompt; with --hq, each pair's QC verdict (JSON Lines with --json)."""
    from ggt.analyze.stage import inspect as inspect_api

    with _errors():
        if hq is not None and len(hq) != len(lq):
            raise ValueError(f"--hq was given {len(hq)} times for {len(lq)} LQ images; pair them one to one")
        lines = inspect_api(lq, config=config, overrides=set_)
        if hq:
            from ggt.qc.stage import inspect_pairs

            for line, pair in zip(lines, inspect_pairs(lq, hq, config=config, overrides=set_), strict=True):
                if "error" in pair and "error" not in line:
                    line["error"] = pair["error"]
                line.update({k: v for k, v in pair.items() if k not in ("lq", "error", "category")})
    for line in lines:
        if as_json:
            _print_json(line)
        elif "error" in line:
            err.print(f"[red]{line['lq']}[/]: {line['error']}", highlight=False)
        else:
            degr = ", ".join(f"{d['type']} {d['severity']:.2f}" for d in line["degradations"]) or "none"
            out.print(f"[bold]{line['lq']}[/]: {line['category']} ({degr})", highlight=False)
            out.print(line["prompt"], highlight=False, markup=False)
            if "verdict" in line:
                why = "; ".join(line["reasons"]) or "no rule fired"
                out.print(f"  -> [bold]{line['verdict']}[/] ({why})", highlight=False)
    raise typer.Exit(1 if any("error" in line for line in lines) else 0)


@app.command()
def synth(
    run: RunOpt,
    generator: Annotated[
        str | None, typer.Option(help="classical (offline), gemini, openai, openai-compatible")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="the vendor's model (e.g. gemini-2.5-flash-image); diffusers: a pipeline folder"),
    ] = None,
    concurrency: Annotated[int | None, typer.Option(help="API requests in flight")] = None,
    budget: Annotated[
        float | None,
        typer.Option(help="USD this run may spend on synth in all; stops launching requests before it"),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="print planned calls and estimated cost")
    ] = False,
    batch: Annotated[
        bool,
        typer.Option(
            "--batch",
            help="gemini/openai: the vendor's Batch API (about half price, answers within 24 h); "
            "an interrupted run resumes its jobs",
        ),
    ] = False,
    lora: Annotated[
        str | None,
        typer.Option(help="diffusers: LoRA weights (file or folder, e.g. from `ggt finetune`) on the model"),
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    as_json: JsonOpt = False,
    executor: ExecutorOpt = None,
    ray_address: RayAddressOpt = None,
    shard_size: ShardSizeOpt = None,
) -> None:
    """Generate an HQ target for every analysed item (cached, resumable, budgeted)."""
    from ggt.generate.stage import synth as synth_api

    set_ = _exec_sets(set_, executor, ray_address, shard_size)
    with _errors(), _progress("synth", enabled=not (as_json or dry_run)) as progress:
        s = synth_api(run, generator=generator, model=model, concurrency=concurrency, budget=budget,
                      dry_run=dry_run, config=config, overrides=set_, progress=progress,
                      batch=batch, lora=lora)  # fmt: skip
    if as_json:
        _print_json(s.model_dump())
    else:
        est = "unknown" if s.estimated_usd is None else f"${s.estimated_usd:,.2f}"
        if s.dry_run:
            out.print(f"dry run: {s.planned} calls planned to {s.variant}; estimated cost {est}")
        else:
            out.print(
                f"{s.variant}: done {s.done} (already {s.already_done}), failed {s.failed}, pending {s.pending}; "
                f"calls {s.calls}, retries {s.retries}, cache hits {s.cache_hits}, spent ${s.spent_usd:,.2f}"
            )
        if s.budget_exhausted:
            err.print("[yellow]budget reached:[/] no new requests were started; rerun with a larger --budget")
        for reason, n in s.failures.items():
            err.print(f"[red]failed[/] {n} x {reason} (ggt status --run {run} --errors)", highlight=False)
        for note in s.notes:
            err.print(f"[yellow]note:[/] {note}", highlight=False)
    raise typer.Exit(1 if s.failed else 0)


@app.command()
def qc(
    run: RunOpt,
    policy: Annotated[
        Path | None,
        typer.Option(
            help="YAML policy of named rules, kept for the run's later qc (unset: the run's saved policy, "
            "else the shipped one; `default`: the shipped one)"
        ),
    ] = None,
    judge: Annotated[
        str | None,
        typer.Option(help="heuristic (offline, from the metrics), gemini, openai or openai-compatible"),
    ] = None,
    generator: Annotated[str | None, typer.Option(help="only this synth variant (default: all)")] = None,
    redo_decisions: Annotated[
        bool, typer.Option("--redo-decisions", help="let the policy override reviewers' decisions")
    ] = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    as_json: JsonOpt = False,
    executor: ExecutorOpt = None,
    ray_address: RayAddressOpt = None,
    shard_size: ShardSizeOpt = None,
) -> None:
    """Metrics, judge and policy for every generated pair: keep, reject or review, with reasons."""
    from ggt.qc.stage import qc as qc_api

    set_ = _exec_sets(set_, executor, ray_address, shard_size)
    with _errors(), _progress("qc", enabled=not as_json) as progress:
        s = qc_api(run, policy=policy, judge=judge, generator=generator, config=config, overrides=set_,
                   redo_decisions=redo_decisions, progress=progress)  # fmt: skip
    if as_json:
        _print_json({**s.model_dump(), "failed": s.failed})
    else:
        table = Table(title=f"qc ({s.judge} judge, policy {Path(s.policy).stem}) -> {run}")
        for col in ("generator", "pairs", "keep", "reject", "review", "failed"):
            table.add_column(col, justify="left" if col == "generator" else "right")
        for name, v in s.variants.items():
            table.add_row(name, str(v.pairs), str(v.keep), str(v.reject), str(v.review),
                          str(v.metrics_failed + v.judge_failed))  # fmt: skip
        out.print(table)
        for name, v in s.variants.items():
            if v.rules:
                fired = ", ".join(f"{rule} {n}" for rule, n in sorted(v.rules.items(), key=lambda kv: -kv[1]))
                out.print(f"[dim]{name} rules fired:[/] {fired}", highlight=False)
        if s.report:
            out.print(f"report: [bold]{s.report}[/]")
        for note in s.notes:
            err.print(f"[yellow]note:[/] {note}", highlight=False)
    raise typer.Exit(1 if s.failed else 0)


@app.command()
def export(
    run: RunOpt,
    format: Annotated[str, typer.Option("--format", help="folder (BasicSR), webdataset, parquet or hf")],
    out_dir: Annotated[Path, typer.Option("--out", help="folder for the dataset")],
    split: Annotated[str | None, typer.Option(help="test=FRACTION or test=COUNT (default test=0.05)")] = None,
    seed: Annotated[int | None, typer.Option(help="split seed")] = None,
    generator: Annotated[str | None, typer.Option(help="only this synth variant (default: all)")] = None,
    include: Annotated[
        list[str] | None, typer.Option(help="kept (default), undecided, rejected; repeatable")
    ] = None,
    shard_size: Annotated[int | None, typer.Option(help="pairs per shard")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue an interrupted export in --out")] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="replace an earlier ggt export in --out")
    ] = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The kept pairs as a training dataset, with metadata, dataset card and SHA-256 manifest."""
    from ggt.dataset import ExportError, ExportUsageError
    from ggt.dataset import export as export_api

    with _errors(), _progress("export", enabled=not as_json) as progress:
        try:
            s = export_api(run, format, out_dir, generator=generator, split=split, seed=seed, include=include,  # type: ignore[arg-type]
                           resume=resume, overwrite=overwrite, shard_size=shard_size, config=config,
                           overrides=set_, progress=progress)  # fmt: skip
        except ExportUsageError as exc:  # bad options, unusable --out, options changed on resume
            raise _fail(str(exc), code=2) from None
        except ExportError as exc:  # full disk or another write error midway: resumable
            raise _fail(str(exc), code=1) from None
    if as_json:
        _print_json(s.model_dump())
    else:
        splits = ", ".join(f"{k} {v}" for k, v in s.splits.items())
        out.print(f"{s.pairs} pairs ({splits}) -> {s.out} [{s.format}]")
        for x in s.skipped:
            err.print(f"[yellow]skipped[/] {x.id}/{x.generator}: {x.reason} ({x.message})", highlight=False)
        for note in s.notes:
            err.print(f"[yellow]note:[/] {note}", highlight=False)
    raise typer.Exit(1 if s.skipped else 0)


@app.command()
def verify(
    dataset: Annotated[Path, typer.Argument(help="an exported dataset folder")],
    as_json: JsonOpt = False,
) -> None:
    """Check every file of an export against its SHA-256 manifest: missing, extra and corrupt files."""
    from rich.markup import escape

    from ggt.dataset import verify as verify_api

    with _errors():
        report = verify_api(dataset)
    if as_json:
        _print_json({**report.model_dump(), "ok": report.ok})
    elif not report.found:
        err.print(f"[bold red]error:[/] {escape(' '.join(report.notes))}", highlight=False)
    else:
        verdict = "[green]intact[/]" if report.ok else "[red]damaged[/]"
        out.print(f"{dataset}: {verdict}, {report.checked} files checked")
        for line in report.malformed:
            out.print(f"  malformed manifest line {line}", highlight=False)
        for path in report.outside:
            out.print(f"  outside: {escape(path)} (path outside the export; not read)", highlight=False)
        for kind in ("missing", "extra", "corrupt"):
            for path in getattr(report, kind):
                out.print(f"  {kind}: {escape(path)}", highlight=False)
        for note in report.notes:
            out.print(f"  note: {escape(note)}", highlight=False)
    # 2: nothing to verify (no such path, not an export); 1: an export that is damaged.
    raise typer.Exit(2 if not report.found else 0 if report.ok else 1)


@app.command()
def review(
    run: RunOpt,
    host: Annotated[
        str, typer.Option(help="address to bind; any address but loopback needs a token")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8765,
    reviewer: Annotated[str, typer.Option(help="reviewer name recorded with each decision")] = "reviewer",
    token: Annotated[
        str | None,
        typer.Option(
            envvar="GGT_REVIEW_TOKEN", help="token the page must send (default: generated off loopback)"
        ),
    ] = None,
) -> None:
    """Review generated pairs in the browser: accept, reject with reasons, undo; every decision kept."""
    from ggt.review import serve

    with _errors():
        serve(run, host=host, port=port, reviewer=reviewer, token=token)


@app.command()
def degrade(
    preset: Annotated[
        str, typer.Option(help="social_media, old_photo, rain, haze, snow, low_light or realesrgan")
    ],
    in_dir: Annotated[Path, typer.Option("--in", help="folder of clean photos")],
    out_dir: Annotated[Path, typer.Option("--out", help="folder for degraded PNGs and labels.jsonl")],
    seed: Annotated[int, typer.Option(help="same seed, same bytes")] = 0,
    skip_existing: Annotated[
        bool,
        typer.Option(
            "--skip-existing",
            help="keep the images an earlier run (same preset and seed) finished in --out, e.g. after a crash",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Synthesise a category's degradations on clean photos; labels record exactly what was applied."""
    from ggt.degrade import degrade_folder

    with _errors():
        summary = degrade_folder(preset, in_dir, out_dir, seed=seed, skip_existing=skip_existing)
    if as_json:
        _print_json(summary.model_dump(mode="json"))
    else:
        out.print(
            f"{preset}: wrote {summary.written} images ({summary.reused} reused) to {summary.out_dir} "
            f"in {summary.seconds:.1f} s; labels in {summary.labels_path}"
        )
        if summary.ignored:
            out.print(f"{summary.ignored} other files ignored (not an image suffix)")
        for f in summary.failed:
            err.print(f"[red]failed[/] {f.file}: {f.error}", highlight=False)
    raise typer.Exit(1 if summary.failed else 0)


@config_app.command("schema")
def config_schema_cmd(
    output: Annotated[Path | None, typer.Option("--out", help="write to this file instead of stdout")] = None,
) -> None:
    """Write the JSON Schema of the configuration (for editor completion and validation)."""
    from ggt.config import config_schema

    text = config_schema()
    if output:
        output.write_text(text + "\n", encoding="utf-8")
        err.print(f"wrote {output}")
    else:
        sys.stdout.write(text + "\n")


@config_app.command("show")
def config_show(
    run: Annotated[Path | None, typer.Option("--run", help="show this run's resolved config")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the resolved configuration (defaults, the run's config, a file, overrides)."""
    from ggt.config import dump_config, load_config, resolve_run_config
    from ggt.store.run import CONFIG_FILE, STORE_FILE

    with _errors():
        if run is not None:
            if not (run / STORE_FILE).exists():
                raise StoreError(f"{run} is not a ggt run (no {STORE_FILE})")
            cfg = resolve_run_config(run / CONFIG_FILE, config, set_)
        else:
            cfg = load_config(config, set_)
    if as_json:
        _print_json(cfg.model_dump(mode="json"))
    else:
        sys.stdout.write(dump_config(cfg))


@app.command()
def demo(
    output: Annotated[Path, typer.Option("--out", help="folder for the demo's photos and run")] = Path(
        "demo-run"
    ),
    as_json: JsonOpt = False,
) -> None:
    """The flow end to end on the photos scikit-image ships, offline."""
    from ggt.demo import run_demo

    with _errors(), _progress("demo", enabled=not as_json) as progress:
        result = run_demo(output, progress=progress)
    if as_json:
        _print_json(result.model_dump())
        return
    render_status(result.status)
    table = Table(title="the demo's pairs")
    for col in ("generator", "pairs", "keep", "review", "reject"):
        table.add_column(col, justify="left" if col == "generator" else "right")
    for name, v in result.qc.variants.items():
        table.add_row(name, str(v.pairs), str(v.keep), str(v.review), str(v.reject))
    out.print(table)
    splits = ", ".join(f"{k} {v}" for k, v in result.export.splits.items())
    intact = "intact" if result.verify.ok else "DAMAGED"
    out.print(f"dataset: {result.dataset} ({result.export.pairs} pairs: {splits}; verify: {intact})")
    out.print(f"QC report: {result.report}")
    out.print(f"run folder: {result.run}  (next: ggt status --run {result.run} --errors)")


bench_app = typer.Typer(help="Benchmarks: which generator makes the best ground truth.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


@bench_app.command("generators")
def bench_generators_cmd(
    images: Annotated[Path, typer.Option("--images", help="LQ test photos (subfolders name the category)")],
    generator: Annotated[
        list[str],
        typer.Option(
            "--generator",
            help="NAME or NAME:MODEL, repeatable, e.g. gemini:gemini-2.5-flash-image; "
            "a local pipeline with a LoRA: diffusers:PIPE+lora=PATH",
        ),
    ],
    out_dir: Annotated[
        Path, typer.Option("--out", help="output folder (runs, leaderboards, plots, report.json)")
    ],
    prompting: Annotated[str, typer.Option(help="fixed, adaptive or both")] = "adaptive",
    judge: Annotated[
        str,
        typer.Option(help="pairwise judge: heuristic (offline), gemini, openai or openai-compatible (a VLM)"),
    ] = "heuristic",
    judge_model: Annotated[
        str | None, typer.Option("--judge-model", help="the VLM judge's model (options: qc.judge_options)")
    ] = None,
    references: Annotated[
        Path | None, typer.Option(help="clean images named like the LQ photos, for full-reference metrics")
    ] = None,
    budget: Annotated[float | None, typer.Option(help="USD cap per backend and prompting run")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="estimate the cost; call no generator")] = False,
    set_: SetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run generators x prompting modes on the photos and rank them (leaderboard, plots, image grid)."""
    from ggt.bench import bench_generators

    with _errors(), _progress("bench", enabled=not (as_json or dry_run)) as progress:
        s = bench_generators(images, generator, prompting, judge=judge, judge_model=judge_model, out=out_dir,
                             references=references,
                             budget=budget, dry_run=dry_run, overrides=set_, progress=progress)  # fmt: skip
    if as_json:
        _print_json(s.model_dump(mode="json"))
        raise typer.Exit(1 if s.failed else 0)
    est = "unknown" if s.estimated_usd is None else f"${s.estimated_usd:,.2f}"
    if s.dry_run:
        out.print(f"dry run: {len(s.contestants)} contestants on {s.images} images; estimated cost {est}")
        _bench_failures(s)
        raise typer.Exit(1 if s.failed else 0)
    for rank, c in enumerate(s.categories.get("all", []), 1):
        bt = "-" if c.bt is None else f"{c.bt:+.2f} [{c.bt_lo:+.2f}, {c.bt_hi:+.2f}]"
        out.print(f"{rank}. {c.name}: BT {bt}, {c.done} images", highlight=False)
    for note in s.notes:
        err.print(f"[yellow]note:[/] {note}", highlight=False)
    if s.judge_summary is not None:
        js = s.judge_summary
        cost = "unknown (no price)" if js.total_usd is None else f"${js.total_usd:,.4f} in all"
        out.print(f"judge {js.judge} {js.model}: {js.done}/{js.comparisons} comparisons, {js.calls} calls, "
                  f"{js.cache_hits} cached, cost {cost}", highlight=False)  # fmt: skip
    out.print(f"leaderboard: {s.files.get('leaderboard.html', s.out)}")
    _bench_failures(s)
    # As `ggt synth`: a bench with failed items is not done, whatever its leaderboard shows.
    raise typer.Exit(1 if s.failed else 0)


def _bench_failures(s: Any) -> None:
    """One stderr line per photo ingest refused and per contestant with failed items (count, reasons)."""
    from rich.markup import escape

    # Paths and messages are user data: a file named "a[1].png" must not be read as Rich markup.
    for f in s.ingest_failures[:20]:
        err.print(f"[red]failed[/] photo {escape(f'{f.path}: {f.reason}: {f.message}')}", highlight=False)
    if len(s.ingest_failures) > 20:
        run = next(iter(s.runs.values()), s.out)
        more = f"... and {len(s.ingest_failures) - 20} more photos: ggt status --run {run} --errors"
        err.print(escape(more), highlight=False)
    for c in s.contestants:
        if c.failed:
            why = ", ".join(f"{n} x {r}" for r, n in sorted(c.failures.items(), key=lambda kv: -kv[1]))
            run = s.runs.get(c.prompting, s.out)
            # The main reason's message, its first line cut short: one greppable line per contestant.
            first = ((c.failure_message or "").strip().splitlines() or [""])[0]
            detail = f": {first[:160]}{'...' if len(first) > 160 else ''}" if first else ""
            line = f"{c.name}: {c.failed} images ({why or 'unknown'}){detail}"
            err.print(
                f"[red]failed[/] {escape(f'{line} (ggt status --run {run} --errors)')}", highlight=False
            )


@bench_app.command("review")
def bench_review_cmd(
    out_dir: Annotated[
        Path, typer.Argument(help="the benchmark's output folder (--out of bench generators)")
    ],
    host: Annotated[
        str, typer.Option(help="address to bind; any address but loopback needs a token")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8766,
    voter: Annotated[
        str | None, typer.Option(help="name recorded with each vote (default: the page's, else anonymous)")
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="GGT_REVIEW_TOKEN", help="token the page must send (default: generated off loopback)"
        ),
    ] = None,
) -> None:
    """Compare generators by eye: LQ and two outputs, names hidden until you vote (left, right, tie, skip).
    Rerun `ggt bench generators` to rank the votes beside the judge (every call is cached)."""
    from ggt.review.compare import serve_compare

    with _errors():
        serve_compare(out_dir, host=host, port=port, voter=voter, token=token)


# -- restoration models: eval, restore, onnx, experiment (issue 9) -----------------------------------------

ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        help="a checkpoint folder (or its model.safetensors), a training run folder, a community weights file"
        " spandrel identifies, 'identity' (the input itself, a baseline), or a local generator:"
        " generator:classical, generator:diffusers:PIPE+lora=PATH",
    ),
]
TileOpt = Annotated[
    int, typer.Option(help="tile size in input pixels for large images (0: whole images at once)")
]
OverlapOpt = Annotated[int, typer.Option(help="pixels shared by neighbouring tiles (blended)")]
DeviceOpt = Annotated[str, typer.Option(help="auto (cuda if available), cpu, cuda or cuda:N")]
Fp16Opt = Annotated[bool, typer.Option("--fp16", help="float16 autocast (CUDA only)")]


@contextmanager
def _train_extra() -> Iterator[None]:
    """A missing torch stack is a user error with the extra to install."""
    try:
        yield
    except ImportError as exc:
        msg = (
            str(exc)
            if "pip install" in str(exc)
            else f"{exc.name or exc} is not installed: pip install 'ggt[train]'"
        )
        raise _fail(msg) from None


@app.command("train")
def train_cmd(
    config: Annotated[Path, typer.Option("--config", help="training YAML (configs/train/)")],
    set_: SetOpt = None,
    no_resume: Annotated[
        bool, typer.Option("--no-resume", help="start over: replaces this run's checkpoints and logs")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Train a restoration network on a ggt export; reruns resume from the newest checkpoint.

    Several GPUs: torchrun --nproc_per_node N -m ggt.cli train --config FILE. Ctrl+C saves and stops (exit 130).
    """
    import os

    main_rank = os.environ.get("RANK", "0") == "0"
    with _errors(), _train_extra(), _progress("train", enabled=not as_json and main_rank) as progress:
        from ggt.restore.train_config import load_train_config

        cfg = load_train_config(config, set_)  # config errors come before torch is imported (seconds)
        from ggt.restore.train import TrainError, TrainRefused
        from ggt.restore.train import train as train_api

        try:
            r = train_api(cfg, resume=not no_resume, progress=progress)
        except TrainRefused as exc:  # before any work: another process on the run, or a changed resume
            raise _fail(str(exc), code=2) from None
        except TrainError as exc:
            raise _fail(str(exc), code=1) from None
    if not main_rank:
        return
    if as_json:
        _print_json(r.model_dump(mode="json"))
    else:
        loss = "-" if r.final_loss is None else f"{r.final_loss:.4f}"
        val = "" if not r.val else ", " + ", ".join(f"val {k} {v:.4f}" for k, v in r.val.items())
        how = f"resumed at {r.start_iteration}, " if r.start_iteration else ""
        out.print(f"{how}iteration {r.iterations}: loss {loss}{val} ({r.it_per_s:.2f} it/s)", highlight=False)
        out.print(f"checkpoint: {r.checkpoint}\nlogs: {r.log_csv}, {r.tensorboard}", highlight=False)
    if r.interrupted:
        err.print(f"[yellow]interrupted[/] at iteration {r.iterations}: checkpoint saved, rerun to resume")
        raise typer.Exit(130)


def render_eval(report: Any) -> None:
    where = f"{report.data}" + (f" ({report.split} split)" if report.split else "")
    table = Table(title=f"eval: {report.model} on {where}, {report.kind.upper()} metrics")
    table.add_column("category")
    table.add_column("images", justify="right")
    from ggt.restore.evaluate import fmt_value, header

    for m in report.metrics:
        table.add_column(header(m), justify="right")
    for r in report.rows:
        style = "bold" if r.category == "overall" else None
        table.add_row(r.category, str(r.images), *(fmt_value(m.name, r.values.get(m.name)) for m in report.metrics),
                      style=style)  # fmt: skip
    out.print(table)


@app.command("eval")
def eval_cmd(
    model: ModelOpt,
    data: Annotated[
        Path,
        typer.Option(
            "--data",
            help="a ggt export (scored on --split with GT), lq/ + gt/ folders, or LQ images without GT",
        ),
    ],
    metrics: Annotated[
        str | None,
        typer.Option(
            help="comma-separated registry metrics, pyiqa:NAME for pyiqa's (default: psnr,ssim,niqe,brisque"
            " with GT, niqe,brisque without)"
        ),
    ] = None,
    split: Annotated[str, typer.Option(help="the export's split to score")] = "test",
    tile: TileOpt = 512,
    overlap: OverlapOpt = 32,
    device: DeviceOpt = "auto",
    fp16: Fp16Opt = False,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="folder for eval.csv, eval.md, items.csv, eval.json")
    ] = None,
    iqa_weights: Annotated[
        Path | None, typer.Option("--iqa-weights", help="local folder of pyiqa weights (pyiqa:NAME metrics)")
    ] = None,
    save_images: Annotated[
        int, typer.Option("--save-images", help="write the first N outputs under --out/images (-1: all)")
    ] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Score a model per category: full-reference metrics against GT, or no-reference ones without GT."""
    from ggt.restore.evaluate import evaluate

    names = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None
    with _errors(), _train_extra(), _progress("eval", enabled=not as_json) as progress:
        report = evaluate(model, data, metrics=names, split=split, tile=tile or None, overlap=overlap,
                          device=device, half=fp16, out_dir=out_dir, iqa_weights=iqa_weights,
                          save_images=save_images, progress=progress)  # fmt: skip
    if as_json:
        _print_json(report.model_dump(mode="json"))
    else:
        render_eval(report)
        for note in report.notes:
            err.print(f"[yellow]note:[/] {note}", highlight=False)
        for f in report.failures[:20]:
            err.print(f"[red]failed[/] {f.name}: {f.reason}: {f.message}", highlight=False)
        if report.files:
            out.print(
                f"tables: {report.files.get('eval.md')}, {report.files.get('eval.csv')}", highlight=False
            )
    raise typer.Exit(1 if report.failures else 0)


@app.command()
def restore(
    inputs: Annotated[Path, typer.Argument(help="an image or a folder of images (searched recursively)")],
    output: Annotated[
        Path,
        typer.Argument(help="output folder (PNGs, same relative paths), or a .png file for a single image"),
    ],
    model: ModelOpt,
    tile: TileOpt = 512,
    overlap: OverlapOpt = 32,
    device: DeviceOpt = "auto",
    fp16: Fp16Opt = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="redo outputs that already exist")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Restore images with a model, tiled with blended overlaps.

    A folder resumes: outputs that exist are skipped (those of another model are refused without
    --overwrite). A single image is always restored, replacing its output.
    """
    from ggt.restore.infer import restore as restore_api

    with _errors(), _train_extra(), _progress("restore", enabled=not as_json) as progress:
        s = restore_api(model, inputs, output, tile=tile or None, overlap=overlap, device=device, half=fp16,
                        overwrite=overwrite, progress=progress)  # fmt: skip
    if as_json:
        _print_json(s.model_dump())
    else:
        rate = f", {s.megapixels / s.seconds:.2f} MP/s" if s.seconds and s.megapixels else ""
        out.print(f"{s.written} restored ({s.already_done} already done, {len(s.failed)} failed) -> {s.out} "
                  f"on {s.device}{rate}", highlight=False)  # fmt: skip
        for f in s.failed:
            err.print(f"[red]failed[/] {f.path}: {f.reason}: {f.message}", highlight=False)
    raise typer.Exit(1 if s.failed else 0)


@app.command()
def onnx(
    model: ModelOpt,
    output: Annotated[Path, typer.Option("--out", help="the .onnx file to write")],
    opset: Annotated[int, typer.Option(help="ONNX opset (dynamo: at least 18)")] = 17,
    static: Annotated[
        bool, typer.Option("--static", help="fixed input size (--sample); dynamic height/width otherwise")
    ] = False,
    sample: Annotated[int, typer.Option(help="side of the traced and checked input, pixels")] = 64,
    exporter: Annotated[
        str, typer.Option(help="legacy (TorchScript, fast) or dynamo (torch.export)")
    ] = "legacy",
    as_json: JsonOpt = False,
) -> None:
    """Export a model to ONNX and check it against onnxruntime on random inputs (max abs difference)."""
    from ggt.restore.onnx_export import export_onnx

    with _errors(), _train_extra():
        r = export_onnx(model, output, opset=opset, dynamic=not static, sample=sample, exporter=exporter)  # type: ignore[arg-type]
    if as_json:
        _print_json(r.model_dump())
    else:
        verdict = "[green]matches[/]" if r.ok else "[red]DIFFERS[/]"
        # The graph does not pad: say what the caller must do to get ggt restore's result.
        size = f"{'dynamic' if r.dynamic else 'static'} size"
        if r.size_multiple > 1:
            size += (f"; the caller must pad inputs to a multiple of {r.size_multiple} (reflect) and crop the"
                     " output")  # fmt: skip
        diff = "not checked" if r.max_abs_diff is None else f"{r.max_abs_diff:.2e}"
        out.print(f"{r.out}: {r.bytes / 1e6:.1f} MB, opset {r.opset}, {size}; onnxruntime vs torch max |diff| "
                  f"{diff} on {len(r.checked_shapes)} shape(s): {verdict}", highlight=False)  # fmt: skip
        if not r.ok and r.dynamic:
            err.print("[yellow]note:[/] this architecture does not trace size-independently; try --static "
                      "--sample TILE (and ggt restore's tiling), or --exporter dynamo")  # fmt: skip
    raise typer.Exit(0 if r.ok else 1)


@app.command("experiment")
def experiment_cmd(
    config: Annotated[Path, typer.Option("--config", help="experiment YAML (configs/experiment/)")],
    set_: SetOpt = None,
    retrain: Annotated[
        list[str] | None,
        typer.Option("--retrain", help="train this arm again from scratch: synthetic or ggt"),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train one architecture on synthetic pairs and on a GGT export, evaluate both, compare (tables, plots)."""
    from ggt.restore.experiment import experiment as experiment_api

    def log(msg: str) -> None:
        if not as_json:
            err.print(f"[dim]experiment:[/] {msg}", highlight=False)

    with _errors(), _train_extra(), _progress("experiment", enabled=not as_json) as progress:
        try:
            r = experiment_api(config, overrides=set_, retrain=retrain, progress=progress, log=log)
        except KeyboardInterrupt:  # training saved a checkpoint first; the rerun resumes there
            raise _fail("interrupted: run the same command again to resume", code=1) from None
    if as_json:
        _print_json(r.model_dump(mode="json"))
        return
    for a in r.arms.values():
        how = "trained" if a.trained_now else "reused"
        loss = "-" if a.final_loss is None else f"{a.final_loss:.4f}"
        out.print(f"{a.name}: {a.iteration} iterations ({how}), last loss {loss}", highlight=False)
    md = Path(r.files["comparison.md"]).read_text(encoding="utf-8")
    out.print(md, markup=False, highlight=False)
    for note in r.notes:
        err.print(f"[yellow]note:[/] {note}", highlight=False)
    out.print(f"report: {r.files['index.html']}", highlight=False)


@app.command("finetune")
def finetune_cmd(
    config: Annotated[Path, typer.Option("--config", help="fine-tuning YAML (configs/finetune/)")],
    set_: SetOpt = None,
    no_resume: Annotated[
        bool, typer.Option("--no-resume", help="refuse to continue from checkpoints in output_dir")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """LoRA fine-tuning of a diffusers editing pipeline on a ggt export; reruns resume.

    Several GPUs: accelerate launch -m ggt.cli finetune --config FILE. The LoRA loads as
    ggt synth --generator diffusers --model PIPELINE --lora OUTPUT_DIR.
    """
    import os

    main_rank = os.environ.get("RANK", "0") == "0"

    def log(msg: str) -> None:
        if main_rank:
            err.print(f"[dim]finetune:[/] {msg}", highlight=False)

    with _progress("finetune", enabled=not as_json and main_rank) as progress:
        try:
            from ggt.restore.generative.config import load_finetune_config
            from ggt.restore.generative.train import finetune as finetune_api

            r = finetune_api(
                load_finetune_config(config, set_), resume=not no_resume, progress=progress, log=log
            )
        except ImportError as exc:
            raise _fail(f"{exc.name or exc} is not installed: pip install 'ggt[finetune]'") from None
        except (ConfigError, FileNotFoundError, ValueError) as exc:
            raise _fail(str(exc)) from None
    if not main_rank:
        return
    if as_json:
        _print_json(r.model_dump(mode="json"))
        return
    how = f"resumed at step {r.start_step}, " if r.start_step else ""
    loss = f", last loss {r.losses[-1]:.4f}" if r.losses else ""
    speed = f" ({r.steps_per_second:.2f} steps/s)" if r.steps_per_second else ""
    out.print(f"{how}step {r.steps}{loss}{speed}", highlight=False)
    for note in r.notes:
        err.print(f"[yellow]note:[/] {note}", highlight=False)
    out.print(f"LoRA: {r.lora}  (use: ggt synth --generator diffusers --model PIPELINE --lora {r.output_dir})",
              highlight=False)  # fmt: skip


def main() -> None:
    app()


if __name__ == "__main__":
    main()
