"""`ggt bench generators`: which generator makes the best ground truth for a set of LQ test photos.

Every generator x prompting mode ("contestant") runs through the ordinary stages, so cache, budget,
resume and dry-run behave exactly as in `ggt synth`: one run folder per prompting mode under
`out/runs/MODE`, the images ingested and analysed (with that mode) once, then `synth` per generator.
Each output is then scored with the QC metrics, the judge and, where clean references exist,
full-reference metrics; a pairwise judge (the offline heuristic, or a VLM shown the LQ and both outputs)
compares every pair of contestants on every image in both orders, and Bradley-Terry scores summarise
those games. People's votes from the review app's compare mode (`ggt bench review OUT`) make a second,
separate Bradley-Terry ranking beside the judge's.
"""

from __future__ import annotations

import json
import math
import statistics
from itertools import combinations
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from ggt.bench.judge import VLM_JUDGES, JudgeSummary
from ggt.config import ConfigError
from ggt.imaging import read_image
from ggt.progress import ProgressFn
from ggt.store import Run

Prompting = Literal["fixed", "adaptive", "both"]
SEED = 0
N_BOOT = 1000
N_BOOT_BT = 200
# Margins below which the heuristic pairwise judge treats two outputs as equal on a criterion (`prefer`).
JUDGE_TIE = 0.02
FIDELITY_TIE = 1e-3
REF_TIE = 1e-3
REF_METRICS = ("psnr", "ssim", "ms_ssim")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")

# The leaderboard's columns: key -> lower is better. Realism (no-reference, of the HQ), fidelity to the
# LQ, alignment, colour drift, the judge, and full-reference scores against clean references.
LEADERBOARD_METRICS: dict[str, bool] = {
    "niqe.hq": True,
    "brisque.hq": True,
    "fidelity": False,
    "misalign.shift_px": True,
    "drift.de_mean": True,
    "local_mismatch.worst": True,
    "judge.mean": False,
    "ref.psnr": False,
    "ref.ssim": False,
    "ref.ms_ssim": False,
}


class MetricStat(BaseModel):
    mean: float
    lo: float
    hi: float
    n: int


class ContestantResult(BaseModel):
    name: str  # "VARIANT" for one prompting mode, "VARIANT@MODE" for both
    generator: str
    model: str | None = None
    variant: str
    prompting: str
    done: int = 0
    failed: int = 0
    failures: dict[str, int] = Field(default_factory=dict)  # synth's failure reason -> items
    failure_message: str | None = None  # one failed item's message, for the main reason (a reason alone,
    # e.g. "unexpected", rarely says what to fix)
    pending: int = 0
    calls: int = 0
    cache_hits: int = 0
    estimated_usd: float | None = None
    spent_usd: float = 0.0
    cost_per_image_usd: float | None = None
    median_latency_s: float | None = None
    metrics: dict[str, MetricStat] = Field(default_factory=dict)
    win_rate: float | None = None
    games: int = 0
    bt: float | None = None
    bt_lo: float | None = None
    bt_hi: float | None = None
    # The same from people's votes (compare mode of the review app); None without votes.
    human_votes: int = 0
    human_win_rate: float | None = None
    human_bt: float | None = None
    human_bt_lo: float | None = None
    human_bt_hi: float | None = None


class PhotoFailure(BaseModel):
    """A photo that ingest could not take (corrupt, unreadable): it is in no contestant's board."""

    path: str
    reason: str
    message: str = ""


class BenchSummary(BaseModel):
    out: str
    runs: dict[str, str] = Field(default_factory=dict)  # prompting mode -> run folder
    images: int = 0
    judge: str = "heuristic"
    judge_model: str | None = None
    judge_summary: JudgeSummary | None = None  # a VLM judge's calls, cache hits and cost
    human_votes: int = 0  # people's votes (not skips) that the human ranking counts
    dry_run: bool = False
    estimated_usd: float | None = None
    calls: int = 0
    cache_hits: int = 0
    contestants: list[ContestantResult] = Field(default_factory=list)  # in run order (mode, generator)
    # "all" and each category -> its leaderboard, best Bradley-Terry score first
    categories: dict[str, list[ContestantResult]] = Field(default_factory=dict)
    files: dict[str, str] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    ingest_failures: list[PhotoFailure] = Field(default_factory=list)  # photos left out of the bench

    @property
    def failed(self) -> bool:
        """Whether any item failed (a photo at ingest, an output at synth): the CLI then exits 1."""
        return bool(self.ingest_failures) or any(c.failed for c in self.contestants)


def parse_generator(spec: str) -> tuple[str, str | None]:
    """'NAME' or 'NAME:MODEL' -> (name, model); a local model may carry a LoRA: 'diffusers:PIPE+lora=PATH'."""
    name, _, model = spec.partition(":")
    if not name or model.startswith("+lora="):
        raise ConfigError(f"--generator {spec!r}: expected NAME, NAME:MODEL or NAME:MODEL+lora=PATH")
    return name, (model or None)


def split_lora(model: str | None) -> tuple[str | None, str | None]:
    """'PIPE+lora=PATH' -> ('PIPE', 'PATH')."""
    if model is None or "+lora=" not in model:
        return model, None
    base, _, lora = model.partition("+lora=")
    return base, lora


def _modes(prompting: str) -> list[str]:
    if prompting == "both":
        return ["fixed", "adaptive"]
    if prompting in ("fixed", "adaptive"):
        return [prompting]
    raise ConfigError(f"--prompting {prompting!r}: choose fixed, adaptive or both")


def _finite(x: Any) -> float:
    return float(x) if x is not None and math.isfinite(float(x)) else math.nan


def _measure(
    lq: np.ndarray, hq: np.ndarray, ref: np.ndarray | None, category: str | None
) -> dict[str, float]:
    """QC metrics of one output (each metric alone: one that cannot measure a small image is NaN, not
    fatal), the heuristic judge's scores, and full-reference metrics against the clean reference."""
    from ggt.qc.judge import heuristic_judge, judge_values
    from ggt.qc.metrics import compute_all, create_metric, default_metric_names
    from ggt.qc.metrics._image import resize_to

    m: dict[str, float] = {}
    for name in default_metric_names():
        try:
            m.update(compute_all(lq, hq, [name]))
        except ValueError:
            continue
    judged = judge_values(heuristic_judge(m, category))
    m.update(judged)
    m["judge.mean"] = float(np.mean([judged[f"judge.{k}"] for k in _checklist()]))
    if ref is not None:
        if hq.shape != ref.shape:
            hq = resize_to(hq.astype(np.float32, copy=False), (ref.shape[1], ref.shape[0]))
        for name in REF_METRICS:
            try:
                m[f"ref.{name}"] = float(create_metric(name)(ref, hq))  # type: ignore[arg-type]
            except ValueError:
                m[f"ref.{name}"] = math.nan
    return m


def _checklist() -> list[str]:
    from ggt.qc.judge import CHECKLIST

    return list(CHECKLIST)


def prefer(a: dict[str, float], b: dict[str, float]) -> float:
    """The heuristic judge's pairwise call: 1.0 when `a` is the better target, 0.0 when `b`, 0.5 a tie.

    Score-based, so it has no position bias, but it is still asked in both orders like a VLM judge (the
    two answers are averaged) so every kind of judge feeds the same games to Bradley-Terry. In order:
    - with a clean reference for the photo, the SSIM to it (beyond REF_TIE): the truth, where known;
    - the judge's checklist mean (beyond JUDGE_TIE): it sees only LQ and HQ, so it cannot tell a true
      restoration from a timid one, which is why the reference comes first;
    - the LQ-HQ fidelity (beyond FIDELITY_TIE), since the checklist's ramps saturate at 1;
    - else a tie.
    """
    for key, margin in (("ref.ssim", REF_TIE), ("judge.mean", JUDGE_TIE), ("fidelity", FIDELITY_TIE)):
        x, y = _finite(a.get(key)), _finite(b.get(key))
        if math.isfinite(x) and math.isfinite(y) and abs(x - y) > margin:
            return 1.0 if x > y else 0.0
    return 0.5


def _find_reference(references: Path | None, source_name: str) -> Path | None:
    """The clean image named like the LQ's source file: same name first, else same stem, any format."""
    if references is None:
        return None
    exact = references / source_name
    if exact.is_file():
        return exact
    stem = Path(source_name).stem
    for ext in IMAGE_EXTS:
        cand = references / f"{stem}{ext}"
        if cand.is_file():
            return cand
    return None


def _overrides_for(generator: str | None, overrides: list[str] | None) -> list[str]:
    """The overrides one stage gets: `synth.options.*` only reaches the API generators' synth, since one
    bench mixes backends and the local ones reject unknown options (e.g. an API `base_url`); the other
    stages (`generator` None) would check them against whichever generator the run last saved."""
    from ggt.generate import API_GENERATORS

    extra = list(overrides or [])
    if generator not in API_GENERATORS:
        extra = [o for o in extra if not o.strip().startswith("synth.options.")]
    return extra


def _cost_and_latency(r: Run, name: str, model: str | None, variant: str) -> tuple[float, float | None]:
    """Spent dollars (store's `costs`) and the median latency of successful calls (`attempts`)."""
    usd = float(
        r.store.scalar(
            "SELECT COALESCE(SUM(usd), 0) FROM costs WHERE stage = 'synth' AND backend = ? AND model IS ?",
            (name, model),
        )
    )
    rows = r.store.query(
        "SELECT ended_at - started_at AS s FROM attempts WHERE stage = 'synth' AND variant = ? AND ok = 1"
        " AND ended_at IS NOT NULL",
        (variant,),
    )
    lat = [float(row["s"]) for row in rows]
    return usd, (statistics.median(lat) if lat else None)


def bench_generators(
    images: Path,
    generators: list[str],
    prompting: Prompting | str = "adaptive",
    judge: str = "heuristic",
    out: Path = Path("bench"),
    judge_model: str | None = None,
    references: Path | None = None,
    budget: float | None = None,
    dry_run: bool = False,
    overrides: list[str] | None = None,
    progress: ProgressFn | None = None,
) -> BenchSummary:
    """Run every generator x prompting mode on every image, score the outputs, write the leaderboard.

    `budget` is passed to each `synth` call, where it caps the run's spending on that backend in all.
    `judge`: `heuristic` (offline, score-based) or a VLM backend (`gemini`, `openai`, `openai-compatible`,
    model from `judge_model`) asked about every pair in both orders through the engine.
    Resumable: a rerun does only the work not yet recorded, and pays for nothing already cached.
    """
    from ggt.analyze.stage import analyze
    from ggt.generate.stage import synth, variant_for
    from ggt.ingest import ingest

    if not generators:
        raise ConfigError("bench needs at least one --generator")
    if judge != "heuristic" and judge not in VLM_JUDGES:
        raise ConfigError(f"--judge {judge!r}: choose heuristic, {', '.join(VLM_JUDGES)}")
    if judge == "heuristic" and judge_model:
        raise ConfigError("--judge-model goes with a VLM judge (--judge gemini, openai or openai-compatible)")
    specs = [parse_generator(g) for g in generators]
    variants = [variant_for(n, *split_lora(m)) for n, m in specs]
    if len(set(variants)) != len(variants):
        raise ConfigError("the same generator is named twice")
    modes = _modes(prompting)
    # Checked before any folder is made or photo ingested: a mistyped path would otherwise bench 0 images
    # (or score without references) and look like a finished run.
    if not Path(images).exists():
        raise ConfigError(f"--images {images}: no such file or folder")
    if references is not None and not Path(references).is_dir():
        raise ConfigError(f"--references {references}: no such folder")
    common = _overrides_for(None, overrides)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if judge in VLM_JUDGES and not judge_model:
        # Checked before any generator is paid for: the judge comes last.
        from ggt.config import resolve_run_config

        saved = out / "runs" / modes[0] / "config.yaml"
        judge_model = resolve_run_config(saved, None, common).qc.judge_options.get("model")
        if not judge_model:
            raise ConfigError(f"--judge {judge} needs a model: --judge-model NAME")
    summary = BenchSummary(out=str(out), judge=judge, judge_model=judge_model, dry_run=dry_run)
    contestants: list[ContestantResult] = []
    per_output: dict[tuple[int, str], dict[str, float]] = {}  # (contestant, item id) -> metrics
    items: dict[str, dict[str, Any]] = {}  # item id -> source name, category, lq path, reference
    prompts: dict[str, dict[str, str]] = {}
    hq_paths: dict[tuple[int, str], Path] = {}
    failed_ids: dict[int, dict[str, str]] = {}  # contestant -> item id -> reason its synth failed
    for mode in modes:
        run = out / "runs" / mode
        summary.runs[mode] = str(run)
        ing = ingest([Path(images)], run, overrides=common)
        # Every mode ingests the same photos, so a bad one fails once per mode: report it once.
        seen = {f.path for f in summary.ingest_failures}
        summary.ingest_failures += [
            PhotoFailure(path=f.path, reason=f.reason, message=f.message)
            for f in ing.failures
            if f.path not in seen
        ]
        analyze(run, overrides=[*common, f"analyze.prompting={mode}"])
        for (name, model), variant in zip(specs, variants, strict=True):
            base, lora = split_lora(model)
            s = synth(run, generator=name, model=base, lora=lora, budget=budget, dry_run=dry_run,
                      overrides=_overrides_for(name, overrides), progress=progress)  # fmt: skip
            c = ContestantResult(
                name=variant if len(modes) == 1 else f"{variant}@{mode}", generator=name, model=model,
                variant=variant, prompting=mode, done=s.done + s.already_done, failed=s.failed,
                failures=dict(s.failures), pending=s.pending, calls=s.calls, cache_hits=s.cache_hits,
                estimated_usd=s.estimated_usd,
            )  # fmt: skip
            summary.notes += [f"{c.name}: {n}" for n in s.notes]
            contestants.append(c)
        with Run.open(run) as r:
            rows = r.store.query(
                "SELECT i.id, i.source_name, i.category, i.lq_path, a.result FROM items i JOIN stage_results a"
                " ON a.item_id = i.id AND a.stage = 'analyze' AND a.status = 'done' ORDER BY i.source_name"
            )
            prompts[mode] = {}
            for row in rows:
                analysis = json.loads(row["result"])
                category = row["category"]
                if category in ("unknown", "", None):
                    category = analysis.get("report", {}).get("category") or "unknown"
                items.setdefault(row["id"], {
                    "source_name": row["source_name"], "category": category, "lq": run / row["lq_path"],
                    "reference": _find_reference(references, row["source_name"]),
                })  # fmt: skip
                prompts[mode][row["source_name"]] = analysis.get("prompt", "")
            for ci, c in enumerate(contestants):
                if c.prompting != mode:
                    continue
                c.spent_usd, c.median_latency_s = _cost_and_latency(r, c.generator, c.model, c.variant)
                if c.done:
                    c.cost_per_image_usd = c.spent_usd / c.done
                if dry_run:
                    continue
                failed_rows = r.store.query(
                    "SELECT item_id, reason, message FROM stage_results WHERE stage = 'synth' AND variant = ?"
                    " AND status = 'failed' ORDER BY item_id",
                    (c.variant,),
                )
                failed_ids[ci] = {row["item_id"]: row["reason"] or "unknown" for row in failed_rows}
                if c.failures:
                    main = max(c.failures, key=lambda k: c.failures[k])
                    c.failure_message = next(
                        (row["message"] for row in failed_rows if (row["reason"] or "unknown") == main), None
                    )
                for row in r.store.query(
                    "SELECT item_id, result FROM stage_results WHERE stage = 'synth' AND variant = ?"
                    " AND status = 'done'",
                    (c.variant,),
                ):
                    hq_paths[(ci, row["item_id"])] = run / json.loads(row["result"])["hq_path"]
    summary.images = len(items)
    summary.calls = sum(c.calls for c in contestants)
    summary.cache_hits = sum(c.cache_hits for c in contestants)
    est = [c.estimated_usd for c in contestants]
    summary.estimated_usd = None if any(e is None for e in est) else float(sum(e or 0.0 for e in est))
    summary.contestants = contestants
    if references is not None:
        missing = sum(1 for it in items.values() if it["reference"] is None)
        if missing:
            summary.notes.append(f"{missing} images have no clean reference in {references}")
    if dry_run:
        from ggt.bench.report import write_report_json

        if judge in VLM_JUDGES:
            k = len(contestants)
            summary.notes.append(
                f"the {judge} judge will be asked {summary.images * k * (k - 1)} pairwise questions "
                "(every pair, both orders, every image); their cost is not in the estimate"
            )
        summary.files["report.json"] = str(write_report_json(out, summary, specs, prompts, overrides))
        return summary

    ids = sorted(items, key=lambda i: items[i]["source_name"])
    lqs = {i: read_image(items[i]["lq"]) for i in ids}
    refs = {i: read_image(items[i]["reference"]) for i in ids if items[i]["reference"] is not None}
    for (ci, item_id), path in sorted(hq_paths.items()):
        per_output[(ci, item_id)] = _measure(
            lqs[item_id], read_image(path), refs.get(item_id), items[item_id]["category"]
        )
    names = [c.name for c in contestants]
    judged = None
    if judge in VLM_JUDGES:
        from ggt.bench.judge import judge_pairs

        judged, summary.judge_summary = judge_pairs(
            out, judge, judge_model, names, items, ids, hq_paths, [Path(p) for p in summary.runs.values()],
            common, progress,
        )  # fmt: skip
        js = summary.judge_summary
        if js.failed or js.pending:
            summary.notes.append(
                f"judge: {js.failed} comparisons failed and {js.pending} are pending "
                f"({', '.join(f'{k} {v}' for k, v in js.failures.items()) or 'budget'}); their pairs are left "
                "out of the ranking on those images"
            )
    from ggt.bench.judge import read_votes

    votes = read_votes(out)
    summary.categories = _leaderboards(contestants, ids, items, per_output, judged, votes, failed_ids)
    summary.human_votes = sum(c.human_votes for c in contestants) // 2
    from ggt.bench.report import write_all, write_manifest

    write_manifest(out, names, items, ids, hq_paths)
    summary.files = write_all(out, summary, specs, prompts, overrides, items, ids, hq_paths, per_output)
    return summary


def _games(
    subset: list[str],
    k: int,
    per_output: dict[tuple[int, str], dict[str, float]],
    judged: dict[tuple[str, int, int], float] | None,
) -> list[tuple[int, int, int, float]]:
    """Every image with outputs from both contestants, asked in both orders and averaged.

    The two answers are `p(a first)` and `1 - p(b first)`: a judge that always picks its first image
    gives 1 and 0, a tie, so position bias cancels instead of crowning whoever is listed first. With a VLM
    judge a pair counts only where both orders were answered (a half-asked pair would bring the bias back).
    """
    games: list[tuple[int, int, int, float]] = []
    for m, item_id in enumerate(subset):
        for a, b in combinations(range(k), 2):
            if (a, item_id) not in per_output or (b, item_id) not in per_output:
                continue
            if judged is None:
                x, y = per_output[(a, item_id)], per_output[(b, item_id)]
                first, second = prefer(x, y), prefer(y, x)
            else:
                first, second = judged.get((item_id, a, b), math.nan), judged.get((item_id, b, a), math.nan)
                if not (math.isfinite(first) and math.isfinite(second)):
                    continue
            games.append((m, a, b, (first + (1.0 - second)) / 2.0))
    return games


def _rank(
    board: list[ContestantResult], games: list[tuple[int, int, int, float]], n_images: int
) -> list[tuple[int, float | None, float | None, float | None, float | None]]:
    """Per contestant: (games, win rate, BT, lo, hi), Nones where it played no game."""
    from ggt.bench.stats import bt_with_ci

    est, lo, hi = bt_with_ci(games, len(board), n_images, N_BOOT_BT, SEED)
    out = []
    for ci in range(len(board)):
        mine = [g for g in games if ci in (g[1], g[2])]
        won = sum(g[3] if g[1] == ci else 1.0 - g[3] for g in mine)
        if mine:
            out.append((len(mine), won / len(mine), float(est[ci]), float(lo[ci]), float(hi[ci])))
        else:
            out.append((0, None, None, None, None))
    return out


def _leaderboards(
    contestants: list[ContestantResult],
    ids: list[str],
    items: dict[str, dict[str, Any]],
    per_output: dict[tuple[int, str], dict[str, float]],
    judged: dict[tuple[str, int, int], float] | None = None,
    votes: list[dict[str, Any]] | None = None,
    failed_ids: dict[int, dict[str, str]] | None = None,
) -> dict[str, list[ContestantResult]]:
    """Fill the overall board into `contestants` and return one board per category (plus 'all').

    `judged`: a VLM judge's answers, (item, first, second) -> outcome for first; None: the heuristic
    `prefer`. `votes`: people's votes (`judge.read_votes`), ranked separately. `failed_ids`: per
    contestant, item id -> reason its synth failed, so a category board counts only its own failures.
    """
    from ggt.bench.judge import vote_games
    from ggt.bench.stats import bootstrap_mean

    boards: dict[str, list[ContestantResult]] = {}
    cats = sorted({items[i]["category"] for i in ids})
    for cat in ["all", *cats]:
        subset = [i for i in ids if cat == "all" or items[i]["category"] == cat]
        board = contestants if cat == "all" else [c.model_copy(deep=True) for c in contestants]
        for ci, c in enumerate(board):
            if cat != "all":
                # A category board's `done`/`failed` are that category's images, not the contestant's total.
                c.done = sum(1 for i in subset if (ci, i) in per_output)
                reasons = [r for i, r in (failed_ids or {}).get(ci, {}).items() if i in subset]
                c.failed = len(reasons)
                c.failures = {r: reasons.count(r) for r in sorted(set(reasons))}
            c.metrics = {}
            for key in LEADERBOARD_METRICS:
                vals = [per_output[(ci, i)].get(key, math.nan) for i in subset if (ci, i) in per_output]
                mean, lo, hi = bootstrap_mean(vals, N_BOOT, SEED)
                if math.isfinite(mean):
                    n = sum(1 for v in vals if math.isfinite(v))
                    c.metrics[key] = MetricStat(mean=mean, lo=lo, hi=hi, n=n)
        games = _games(subset, len(board), per_output, judged)
        for c, (n, rate, bt, lo, hi) in zip(board, _rank(board, games, len(subset)), strict=True):
            c.games, c.win_rate, c.bt, c.bt_lo, c.bt_hi = n, rate, bt, lo, hi
        human = vote_games(votes or [], [c.name for c in board], subset)
        for c, (n, rate, bt, lo, hi) in zip(board, _rank(board, human, len(subset)), strict=True):
            c.human_votes, c.human_win_rate, c.human_bt, c.human_bt_lo, c.human_bt_hi = n, rate, bt, lo, hi
        boards[cat] = sorted(board, key=lambda c: -(c.bt if c.bt is not None else -math.inf))
    return boards
