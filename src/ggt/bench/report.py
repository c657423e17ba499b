"""The benchmark's files: leaderboards (Markdown, CSV, HTML), plots, an image grid and report.json."""

from __future__ import annotations

import csv
import html
import json
import math
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ggt.fsutil import write_bytes_atomic

if TYPE_CHECKING:
    from ggt.bench.generators import BenchSummary, ContestantResult

GRID_ROWS = 8
GRID_TILE = 160  # long edge of one grid tile, px
SDKS = ("numpy", "scipy", "pillow", "matplotlib", "pydantic", "google-genai", "openai", "ggt")


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in SDKS:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    if out.get("ggt") is None:  # an uninstalled checkout: the package's own attribute still knows
        from ggt import __version__

        out["ggt"] = __version__
    return out


def _fmt(x: float | None, digits: int = 4) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:.{digits}g}"


def _columns(board: list[ContestantResult]) -> list[str]:
    from ggt.bench.generators import LEADERBOARD_METRICS

    return [k for k in LEADERBOARD_METRICS if any(k in c.metrics for c in board)]


def _rows(category: str, board: list[ContestantResult]) -> list[dict[str, Any]]:
    """Flat rows for the CSV: one per contestant, every metric as mean/lo/hi."""
    cols = _columns(board)
    rows = []
    for rank, c in enumerate(board, 1):
        row: dict[str, Any] = {
            "category": category, "rank": rank, "contestant": c.name, "generator": c.generator,
            "model": c.model or "", "prompting": c.prompting, "images": c.done, "failed": c.failed,
            "bt": c.bt, "bt_lo": c.bt_lo, "bt_hi": c.bt_hi, "win_rate": c.win_rate,
            "human_bt": c.human_bt, "human_bt_lo": c.human_bt_lo, "human_bt_hi": c.human_bt_hi,
            "human_win_rate": c.human_win_rate, "human_votes": c.human_votes,
            "cost_per_image_usd": c.cost_per_image_usd, "median_latency_s": c.median_latency_s,
        }  # fmt: skip
        for k in cols:
            s = c.metrics.get(k)
            row[k], row[f"{k}.lo"], row[f"{k}.hi"] = (s.mean, s.lo, s.hi) if s else (None, None, None)
        rows.append(row)
    return rows


def _bt(x: float | None, lo: float | None, hi: float | None) -> str:
    return "—" if x is None or lo is None or hi is None else f"{x:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x:.0%}"


def _judge_line(summary: BenchSummary) -> str:
    """Who judged, what it cost, and whether people voted: the sentence above every table."""
    if summary.judge == "heuristic":
        who = "judge: heuristic (offline, score-based)"
    else:
        who = f"judge: {summary.judge} {summary.judge_model or ''}".rstrip()
        js = summary.judge_summary
        if js is not None:
            cost = "cost unknown (no price)" if js.total_usd is None else f"${js.total_usd:.4f} in all"
            who += (
                f" ({js.done} of {js.comparisons} comparisons answered, {js.calls} calls this run, "
                f"{js.cache_hits} from cache, {js.input_tokens}/{js.output_tokens} tokens in/out, {cost})"
            )
    votes = (
        f"; human BT from {summary.human_votes} people's votes (review app compare mode)"
        if summary.human_votes
        else ""
    )
    return (
        f"{summary.images} images, {who}{votes}. Means with bootstrap 95% CIs over images; BT = "
        "Bradley-Terry log-strength from pairwise preferences, each pair asked in both orders."
    )


def _cell_table(board: list[ContestantResult]) -> tuple[list[str], list[list[str]]]:
    """Header and text cells shared by the Markdown and HTML tables."""
    from ggt.bench.generators import LEADERBOARD_METRICS

    cols = _columns(board)
    human = any(c.human_votes for c in board)
    head = ["#", "contestant", "BT [95% CI]", "win rate"]
    head += ["human BT [95% CI]", "human win rate", "human votes"] if human else []
    head += ["$/image", "median latency s"]
    head += [f"{k} {'↓' if LEADERBOARD_METRICS[k] else '↑'}" for k in cols]
    body = []
    for rank, c in enumerate(board, 1):
        cells = [str(rank), c.name, _bt(c.bt, c.bt_lo, c.bt_hi), _pct(c.win_rate)]
        if human:
            cells += [
                _bt(c.human_bt, c.human_bt_lo, c.human_bt_hi),
                _pct(c.human_win_rate),
                str(c.human_votes),
            ]
        cells += [_fmt(c.cost_per_image_usd, 3), _fmt(c.median_latency_s, 3)]
        for k in cols:
            s = c.metrics.get(k)
            cells.append("—" if s is None else f"{_fmt(s.mean)} [{_fmt(s.lo)}, {_fmt(s.hi)}]")
        body.append(cells)
    return head, body


def write_markdown(path: Path, summary: BenchSummary) -> Path:
    lines = ["# Generator leaderboard", "", _judge_line(summary), ""]
    for cat, board in summary.categories.items():
        head, body = _cell_table(board)
        lines += [f"## {cat}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        lines.append("")
    write_bytes_atomic(path, "\n".join(lines).encode("utf-8"))
    return path


def write_csv(path: Path, summary: BenchSummary) -> Path:
    rows = [row for cat, board in summary.categories.items() for row in _rows(cat, board)]
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    tmp.replace(path)
    return path


def write_html(path: Path, summary: BenchSummary, plots: list[str], grid: str | None) -> Path:
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>ggt generator leaderboard</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:nth-child(2){text-align:left}"
        "img{max-width:100%}</style></head><body>",
        "<h1>Generator leaderboard</h1>",
        f"<p>{e(_judge_line(summary))}</p>",
    ]
    for cat, board in summary.categories.items():
        head, body = _cell_table(board)
        parts.append(f"<h2>{e(cat)}</h2><table><thead><tr>")
        parts += [f"<th>{e(h)}</th>" for h in head]
        parts.append("</tr></thead><tbody>")
        for r in body:
            parts.append("<tr>" + "".join(f"<td>{e(x)}</td>" for x in r) + "</tr>")
        parts.append("</tbody></table>")
    for p in plots:
        parts.append(f"<p><img src='{e(p)}' alt='{e(p)}'></p>")
    if grid:
        parts.append(f"<h2>Image grid</h2><p><img src='{e(grid)}' alt='image grid'></p>")
    parts.append("</body></html>")
    write_bytes_atomic(path, "\n".join(parts).encode("utf-8"))
    return path


def write_plots(out: Path, summary: BenchSummary) -> list[str]:
    """Per-metric bars with CI error bars, and realism (BRISQUE of the HQ) against fidelity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    board = summary.categories.get("all", [])
    cols = _columns(board)
    files: list[str] = []
    if cols:
        fig, axes = plt.subplots(1, len(cols), figsize=(2.6 * len(cols), 3.2), squeeze=False)
        names = [c.name for c in board]
        for ax, k in zip(axes[0], cols, strict=True):
            means = [c.metrics[k].mean if k in c.metrics else np.nan for c in board]
            err = [
                [c.metrics[k].mean - c.metrics[k].lo if k in c.metrics else 0 for c in board],
                [c.metrics[k].hi - c.metrics[k].mean if k in c.metrics else 0 for c in board],
            ]
            ax.bar(range(len(board)), means, yerr=err, capsize=3, color="#4c72b0")
            ax.set_xticks(range(len(board)), names, rotation=60, ha="right", fontsize=7)
            ax.set_title(k, fontsize=9)
        fig.tight_layout()
        fig.savefig(out / "metrics.png", dpi=90)
        plt.close(fig)
        files.append("metrics.png")
    fig, ax = plt.subplots(figsize=(5, 4))
    for c in board:
        if "fidelity" in c.metrics and "brisque.hq" in c.metrics:
            x, y = c.metrics["fidelity"].mean, c.metrics["brisque.hq"].mean
            ax.scatter([x], [y])
            ax.annotate(c.name, (x, y), fontsize=7)
    ax.set_xlabel("fidelity to LQ (higher: more faithful)")
    ax.set_ylabel("BRISQUE of HQ (lower: more realistic)")
    fig.tight_layout()
    fig.savefig(out / "realism_vs_fidelity.png", dpi=90)
    plt.close(fig)
    files.append("realism_vs_fidelity.png")
    return files


def _tile(img: np.ndarray) -> np.ndarray:
    from PIL import Image

    h, w = img.shape[:2]
    scale = GRID_TILE / max(h, w)
    im = Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8))
    im = im.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR)
    canvas = np.full((GRID_TILE, GRID_TILE, 3), 255, np.uint8)
    a = np.asarray(im)
    y, x = (GRID_TILE - a.shape[0]) // 2, (GRID_TILE - a.shape[1]) // 2
    canvas[y : y + a.shape[0], x : x + a.shape[1]] = a
    return canvas


def write_grid(
    path: Path,
    contestants: list[ContestantResult],
    items: dict[str, dict[str, Any]],
    ids: list[str],
    hq_paths: dict[tuple[int, str], Path],
) -> Path | None:
    """Rows: the first GRID_ROWS photos; columns: LQ, the reference (if any), then each contestant."""
    from PIL import Image, ImageDraw

    from ggt.imaging import read_image

    rows = ids[:GRID_ROWS]
    if not rows:
        return None
    has_ref = any(items[i]["reference"] is not None for i in rows)
    labels = ["LQ", *(["reference"] if has_ref else []), *(c.name for c in contestants)]
    blank = np.full((GRID_TILE, GRID_TILE, 3), 220, np.uint8)
    grid_rows = []
    for i in rows:
        tiles = [_tile(read_image(items[i]["lq"]))]
        if has_ref:
            ref = items[i]["reference"]
            tiles.append(_tile(read_image(ref)) if ref is not None else blank)
        for ci in range(len(contestants)):
            p = hq_paths.get((ci, i))
            tiles.append(_tile(read_image(p)) if p is not None else blank)
        grid_rows.append(np.concatenate(tiles, axis=1))
    header = Image.new("RGB", (GRID_TILE * len(labels), 18), "white")
    draw = ImageDraw.Draw(header)
    for k, label in enumerate(labels):
        draw.text((k * GRID_TILE + 3, 3), label[:26], fill="black")
    full = np.concatenate([np.asarray(header), *grid_rows], axis=0)
    import io

    buf = io.BytesIO()
    Image.fromarray(full).save(buf, "JPEG", quality=88)
    write_bytes_atomic(path, buf.getvalue())
    return path


def write_report_json(
    out: Path,
    summary: BenchSummary,
    specs: list[tuple[str, str | None]],
    prompts: dict[str, dict[str, str]],
    overrides: list[str] | None,
) -> Path:
    """Provenance: versions, generators and models, the prompts each photo got, seeds, the judge."""
    from ggt.bench import generators as g

    doc = {
        "versions": _versions(),
        "argv": sys.argv,
        "generators": [{"generator": n, "model": m} for n, m in specs],
        "prompts": prompts,
        "seeds": {"bootstrap": g.SEED, "bootstrap_resamples": g.N_BOOT, "bt_resamples": g.N_BOOT_BT},
        "judge": _judge_doc(summary),
        "bradley_terry": {"algorithm": "MM (Hunter 2004)", "prior_tie_games": _prior()},
        "overrides": list(overrides or []),
        "summary": summary.model_dump(mode="json"),
    }
    path = out / "report.json"
    text = json.dumps(_json_safe(doc), indent=2, allow_nan=False, default=str)
    write_bytes_atomic(path, text.encode("utf-8"))
    return path


def _judge_doc(summary: BenchSummary) -> dict[str, Any]:
    from ggt.bench import generators as g

    if summary.judge == "heuristic":
        return {
            "name": "heuristic",
            "pairwise": f"heuristic: higher SSIM to the clean reference (margin {g.REF_TIE}) where there is "
            f"one, else higher checklist mean (margin {g.JUDGE_TIE}), else higher LQ-HQ fidelity (margin "
            f"{g.FIDELITY_TIE}), else a tie. Asked in both orders and averaged.",
        }
    from ggt.bench.judge import CRITERIA, SCHEMA_VERSION, pairwise_instruction

    return {
        "name": summary.judge,
        "model": summary.judge_model,
        "pairwise": "the VLM sees LQ, A, B and answers {winner: A|B|tie, confidence, reasons per criterion}; "
        "every pair is asked in both orders and the two answers averaged; a pair counts only where both "
        "were answered. Answers are in judgments.jsonl.",
        "criteria": CRITERIA,
        "schema_version": SCHEMA_VERSION,
        "instruction_example": pairwise_instruction(None),
    }


def write_manifest(
    out: Path,
    names: list[str],
    items: dict[str, dict[str, Any]],
    ids: list[str],
    hq_paths: dict[tuple[int, str], Path],
) -> Path:
    """What the review app's compare mode shows: each photo's LQ and every contestant's output, paths
    relative to `out` (the app serves nothing outside it)."""
    root = out.resolve()

    def rel(p: Path) -> str:
        return str(Path(p).resolve().relative_to(root))

    doc = {
        "contestants": names,
        "items": [
            {"id": i, "source_name": items[i]["source_name"], "category": items[i]["category"],
             "lq": rel(items[i]["lq"]),
             "hq": {names[ci]: rel(hq_paths[(ci, i)]) for ci in range(len(names)) if (ci, i) in hq_paths}}
            for i in ids
        ],
    }  # fmt: skip
    path = out / "manifest.json"
    write_bytes_atomic(path, json.dumps(doc, indent=1).encode("utf-8"))
    return path


def _json_safe(x: Any) -> Any:
    """NaN and infinities as null: strict JSON parsers (browsers, jq) reject Python's NaN literal."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    return x


def _prior() -> float:
    from ggt.bench.stats import PRIOR_GAMES

    return PRIOR_GAMES


def write_all(
    out: Path,
    summary: BenchSummary,
    specs: list[tuple[str, str | None]],
    prompts: dict[str, dict[str, str]],
    overrides: list[str] | None,
    items: dict[str, dict[str, Any]],
    ids: list[str],
    hq_paths: dict[tuple[int, str], Path],
    per_output: dict[tuple[int, str], dict[str, float]],
) -> dict[str, str]:
    files: dict[str, str] = {}
    files["leaderboard.md"] = str(write_markdown(out / "leaderboard.md", summary))
    files["leaderboard.csv"] = str(write_csv(out / "leaderboard.csv", summary))
    plots = write_plots(out, summary)
    files.update({p: str(out / p) for p in plots})
    grid = write_grid(out / "grid.jpg", summary.contestants, items, ids, hq_paths)
    if grid is not None:
        files["grid.jpg"] = str(grid)
    files["leaderboard.html"] = str(write_html(out / "leaderboard.html", summary, plots, grid and grid.name))
    per_image = [
        {"contestant": summary.contestants[ci].name, "item": item_id,
         "source_name": items[item_id]["source_name"], "category": items[item_id]["category"],
         **{k: (v if math.isfinite(v) else None) for k, v in m.items()}}
        for (ci, item_id), m in sorted(per_output.items())
    ]  # fmt: skip
    scores = out / "scores.jsonl"
    write_bytes_atomic(scores, "".join(json.dumps(r) + "\n" for r in per_image).encode("utf-8"))
    files["scores.jsonl"] = str(scores)
    summary.files = files
    files["report.json"] = str(write_report_json(out, summary, specs, prompts, overrides))
    return files
