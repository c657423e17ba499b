"""`ggt analyze` and `ggt inspect`: a degradation report and a restoration prompt for each LQ photo."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from ggt.analyze.heuristic import HeuristicAnalyzer, HeuristicConfig
from ggt.analyze.prompts import build_prompt
from ggt.analyze.report import DegradationReport
from ggt.config import AnalyzeConfig
from ggt.execute.local import Outcome, bounded_map, item_outcome, pending_items, record_outcomes
from ggt.imaging import ImageDecodeError, read_image
from ggt.progress import ProgressFn
from ggt.store import Run

STAGE = "analyze"
BATCH = 32


class AnalyzeFailure(BaseModel):
    item_id: str
    path: str
    reason: str
    message: str


class AnalyzeSummary(BaseModel):
    run: str
    analyzer: str
    prompting: str
    model: str | None = None
    analyzed: int = 0
    failed: int = 0
    calls: int = 0
    cache_hits: int = 0
    already_done: int = 0
    categories: dict[str, int] = Field(default_factory=dict)
    failures: list[AnalyzeFailure] = Field(default_factory=list)


def heuristic_report(img: Any, cfg: AnalyzeConfig) -> tuple[DegradationReport, str]:
    """Report and prompt for one image with the offline analyzer."""
    report = HeuristicAnalyzer(HeuristicConfig(**cfg.heuristic)).analyze(img)
    return report, build_prompt(report, cfg.prompting, cfg.prompt_template, cfg.rules_template)


def _analyze_file(item_id: str, path: str, cfg: AnalyzeConfig) -> Outcome:
    def work() -> dict[str, Any]:
        report, prompt = heuristic_report(read_image(path), cfg)
        return {"report": report.model_dump(mode="json"), "prompt": prompt, "prompting": cfg.prompting}

    return item_outcome(item_id, work, paths=(path,))


def analyze(
    run: Path,
    vlm: str | None = None,
    config: Path | None = None,
    overrides: list[str] | None = None,
    redo: bool = False,
    progress: ProgressFn | None = None,
) -> AnalyzeSummary:
    """Analyse every ingested item not yet analysed: store its report and prompt. Resumable."""
    extra = [*(overrides or []), *([f"analyze.vlm={vlm}"] if vlm else [])]
    with Run.open(run) as r:
        cfg = r.resolve_config(config, extra).analyze
        summary = AnalyzeSummary(run=str(run), analyzer=cfg.vlm, prompting=cfg.prompting)
        total_items = r.store.scalar("SELECT COUNT(*) FROM items")
        todo = pending_items(r.store, STAGE, redo=redo)
        summary.already_done = total_items - len(todo)
        paths = {row["id"]: (str(r.root / row["lq_path"]), row["source_path"]) for row in todo}
        if cfg.vlm == "heuristic":
            from ggt.execute.ray_exec import mapper_for

            # Its options and model file are checked once, here: a wrong one would fail every item.
            HeuristicAnalyzer(HeuristicConfig(**cfg.heuristic))

            mapper = mapper_for(r, STAGE, "", bounded_map)  # local: the pool; ray: shards on the cluster
            outcomes = mapper(_analyze_file, ((i, p[0], cfg) for i, p in paths.items()), cfg.workers)
            _commit_all(r, outcomes, paths, len(todo), summary, progress)
        else:
            from ggt.analyze.vlm_stage import analyze_with_vlm

            result = analyze_with_vlm(r, cfg, paths, progress, redo=redo)
            summary.analyzed, summary.failed = result.done - result.skipped, result.failed
            summary.model = cfg.vlm_options.get("model")
            summary.calls, summary.cache_hits = result.calls, result.cache_hits
            for row in r.store.query(
                "SELECT item_id, reason, message FROM stage_results WHERE stage = ? AND status = 'failed'",
                (STAGE,),
            ):
                if row["item_id"] in paths:
                    summary.failures.append(
                        AnalyzeFailure(item_id=row["item_id"], path=paths[row["item_id"]][1],
                                       reason=row["reason"] or "", message=row["message"] or "")
                    )  # fmt: skip
        for row in r.store.query(
            "SELECT json_extract(result, '$.report.category'), COUNT(*) FROM stage_results"
            " WHERE stage = ? AND status = 'done' GROUP BY 1 ORDER BY 1",
            (STAGE,),
        ):
            summary.categories[row[0]] = row[1]
    return summary


def _commit_all(
    r: Run, outcomes, paths, total: int, summary: AnalyzeSummary, progress: ProgressFn | None
) -> None:
    batch: list[Outcome] = []
    done = 0
    if progress:
        progress(0, total)
    for o in outcomes:
        batch.append(o)
        if o.status == "done":
            summary.analyzed += 1
        else:
            summary.failed += 1
            summary.failures.append(
                AnalyzeFailure(
                    item_id=o.item_id,
                    path=paths[o.item_id][1],
                    reason=o.reason or "",
                    message=o.message or "",
                )
            )
        if len(batch) >= BATCH:
            record_outcomes(r.store, STAGE, "", batch)
            done += len(batch)
            batch = []
            if progress:
                progress(done, total)
    if batch:
        record_outcomes(r.store, STAGE, "", batch)
    if progress:
        progress(total, total)


def _inspect_file(index: int, path: str, cfg: AnalyzeConfig) -> tuple[int, dict[str, Any]]:
    line: dict[str, Any] = {"lq": path}
    try:
        img = read_image(path)
    except ImageDecodeError as exc:
        line["error"] = str(exc)
        return index, line
    except OSError as exc:
        line["error"] = f"unreadable: {exc.strerror or exc}"
        return index, line
    report, prompt = heuristic_report(img, cfg)
    line.update(
        category=report.category,
        degradations=[d.model_dump() for d in report.degradations],
        prompt=prompt,
        scene=report.scene,
        measures=report.measures,
        analyzer=report.analyzer,
    )
    return index, line


def inspect(
    lq: list[Path], config: Path | None = None, overrides: list[str] | None = None
) -> list[dict[str, Any]]:
    """One line per image, in the order given: its category, degradations and prompt, or an `error`."""
    from ggt.config import load_config

    cfg = load_config(config, overrides).analyze
    if cfg.vlm != "heuristic":
        from ggt.analyze.vlm_stage import inspect_with_vlm

        return inspect_with_vlm(lq, cfg)
    if len(lq) == 1:  # no process pool start-up for the common single-image call
        return [_inspect_file(0, str(lq[0]), cfg)[1]]
    lines = dict(bounded_map(_inspect_file, ((i, str(p), cfg) for i, p in enumerate(lq)), cfg.workers))
    return [lines[i] for i in range(len(lq))]
