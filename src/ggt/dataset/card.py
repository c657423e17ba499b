"""The dataset card (README.md) of an export: counts, resolutions, QC pass rates, provenance, licence."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from ggt.fsutil import write_bytes_atomic
from ggt.store import RunStore

HISTOGRAM = "card/resolution_histogram.png"


class CardStats:
    """Counters fed one metadata row at a time, so the card never needs the rows in memory."""

    def __init__(self) -> None:
        self.by_category: dict[str, Counter[str]] = defaultdict(Counter)
        self.sides: list[int] = []  # the GT's longer side per pair: one int each, fine at 100k pairs
        self.generators: Counter[tuple[str, str]] = Counter()
        self.prompting: Counter[str] = Counter()
        self.reviewed = 0

    def add(self, row: dict[str, Any]) -> None:
        self.by_category[row["category"]][row["split"]] += 1
        self.sides.append(max(row["gt_size"]))
        self.generators[(row["generator"], row.get("model") or "-")] += 1
        self.prompting[row.get("prompting") or "unknown"] += 1
        self.reviewed += bool(row.get("decision") and row["decision"].get("human"))


def stage_pass_rates(store: RunStore) -> list[tuple[str, int, int]]:
    """(stage, done, attempted) per stage of the run, over every item (not only exported ones)."""
    rows = store.query(
        "SELECT stage, SUM(status = 'done') AS done, COUNT(*) AS n FROM stage_results GROUP BY stage ORDER BY stage"
    )
    out = [(r["stage"], int(r["done"]), int(r["n"])) for r in rows]
    verdicts = store.query(
        "SELECT json_extract(result, '$.verdict') AS v, COUNT(*) AS n FROM stage_results"
        " WHERE stage = 'qc' AND status = 'done' GROUP BY v"
    )
    total = sum(int(r["n"]) for r in verdicts)
    keep = sum(int(r["n"]) for r in verdicts if r["v"] == "keep")
    if total:
        out.append(("qc policy keep", keep, total))
    return out


def _histogram(sides: list[int], path: Path) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")  # no display on servers; must precede pyplot
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    ax.hist(sides or [0], bins=min(30, max(1, len(set(sides)))), color="#4a7bb7")
    ax.set_xlabel("GT longer side (px)")
    ax.set_ylabel("pairs")
    ax.set_title("Resolution of the exported pairs")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})  # no timestamp: reruns give the same bytes
    plt.close(fig)
    write_bytes_atomic(path, buf.getvalue(), fsync=False)


def write_card(
    root: Path,
    stats: CardStats,
    store: RunStore,
    *,
    fmt: str,
    license: str,
    split: str,
    seed: int,
    include: list[str],
    excluded: dict[str, int],
    skipped: int,
    run_name: str,
) -> list[str]:
    """Write README.md and the histogram; returns the files written (relative)."""
    _histogram(stats.sides, root / HISTOGRAM)
    splits = sorted({s for c in stats.by_category.values() for s in c}, key=lambda s: (s != "train", s))
    total = Counter[str]()
    for c in stats.by_category.values():
        total.update(c)
    lines = [
        "---",
        f"license: {license}",
        "task_categories:",
        "- image-to-image",
        "tags:",
        "- image-restoration",
        "- ggt",
        "---",
        "",
        f"# Paired restoration dataset from ggt run `{run_name}`",
        "",
        "Real low-quality photos (`lq`) paired with generated high-quality targets (`gt`), kept by QC and "
        "manual review. Exported by [ggt](https://github.com/) in the "
        f"`{fmt}` format.",
        "",
        f"- Pairs: **{sum(total.values())}** ({', '.join(f'{s} {total[s]}' for s in splits)})",
        f"- Split: `{split}` stratified by category, seed {seed}; near-duplicate photos kept on one side",
        f"- Included decisions: {', '.join(include)}; left out: "
        + (", ".join(f"{k} {v}" for k, v in sorted(excluded.items())) or "none"),
        f"- Pairs skipped for missing files: {skipped}",
        f"- Pairs with a reviewer's decision: {stats.reviewed}",
        f"- Licence: {license}",
        "",
        "## Pairs per category and split",
        "",
        "| category | " + " | ".join(splits) + " | total |",
        "|---|" + "---:|" * (len(splits) + 1),
    ]
    for cat in sorted(stats.by_category):
        c = stats.by_category[cat]
        lines.append(f"| {cat} | " + " | ".join(str(c[s]) for s in splits) + f" | {sum(c.values())} |")
    lines += ["", "## Resolution", "", f"![GT resolution histogram]({HISTOGRAM})", ""]
    if stats.sides:
        lines.append(f"GT longer side: min {min(stats.sides)} px, max {max(stats.sides)} px.")
        lines.append("")
    lines += [
        "## QC pass rates per stage (whole run)",
        "",
        "| stage | done | of | rate |",
        "|---|---:|---:|---:|",
    ]
    for stage, done, n in stage_pass_rates(store):
        lines.append(f"| {stage} | {done} | {n} | {done / n:.1%} |")
    lines += ["", "## Generators and models", "", "| generator | model | pairs |", "|---|---|---:|"]
    for (gen, model), n in sorted(stats.generators.items()):
        lines.append(f"| {gen} | {model} | {n} |")
    lines += ["", "## Prompting", ""]
    lines += [f"- {mode}: {n} pairs" for mode, n in sorted(stats.prompting.items())]
    lines += [
        "",
        "## Files",
        "",
        "`metadata.jsonl` holds one line per pair (id, category, source file name, degradation report, "
        "prompt, generator and model, QC metrics and verdict, reviewer decision). `MANIFEST.sha256` lists "
        "the SHA-256 of every file (`sha256sum -c MANIFEST.sha256`, or `ggt.dataset.verify`).",
        "",
    ]
    write_bytes_atomic(root / "README.md", "\n".join(lines).encode("utf-8"), fsync=False)
    return ["README.md", HISTOGRAM]
