"""RUN/reports/qc.html: pass rates per generator, category and rule, metric histograms, the worst pairs.

Self-contained: one HTML file with inline CSS, PNG plots (matplotlib, Agg) and small JPEG thumbnails in
`reports/thumbs/` next to it, linked by relative paths, so the folder can be zipped and mailed. No
JavaScript.
"""

from __future__ import annotations

import html
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ggt.fsutil import write_bytes_atomic
from ggt.qc.policy import Policy
from ggt.store import Run
from ggt.store.run import hq_relpath

# Metrics the policy reads most often; the histograms show these when present.
HIST_METRICS: tuple[str, ...] = (
    "misalign.shift_px", "local_mismatch.worst", "fidelity", "psnr", "drift.chroma_shift", "brisque.hq",
    "noise.gain", "blockiness.hq",
)  # fmt: skip
THUMB_SIDE = 192
_SEVERITY = {"reject": 2, "review": 1, "keep": 0}

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}.keep{color:#1a7f37}.reject{color:#c62828}.review{color:#b26a00}
.pairs{display:flex;flex-wrap:wrap;gap:12px}.pair{border:1px solid #ddd;padding:6px;width:400px}
.pair img{width:192px;height:auto;vertical-align:top}.small{font-size:12px;color:#555}
"""


def _thumb(r: Run, rel: str, out: Path) -> str | None:
    """A small JPEG of the image at `rel` (run-relative), written once; its path relative to reports/."""
    import cv2

    from ggt.imaging import encode_image, read_image

    if out.exists():
        return f"thumbs/{out.name}"
    try:
        img = read_image(r.root / rel)
    except Exception:  # a missing or broken file shows as a gap in the report, never ends it
        return None
    h, w = img.shape[:2]
    s = THUMB_SIDE / max(h, w)
    if s < 1:
        img = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    write_bytes_atomic(out, encode_image(img, "jpeg"))
    return f"thumbs/{out.name}"


def _histograms(rows: list[dict[str, Any]], path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in HIST_METRICS if any(k in row["metrics"] for row in rows)]
    if not keys:
        return False
    cols = 4
    nrows = (len(keys) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 2.8 * nrows), squeeze=False)
    colours = {"keep": "#1a7f37", "review": "#e0a000", "reject": "#c62828"}
    for ax, key in zip(axes.flat, keys, strict=False):
        vals = {v: [row["metrics"][key] for row in rows if row["verdict"] == v and key in row["metrics"]]
                for v in colours}  # fmt: skip
        allv = np.array([x for v in vals.values() for x in v if np.isfinite(x)])
        if allv.size == 0:
            ax.set_visible(False)
            continue
        lo, hi = np.percentile(allv, [1, 99]) if allv.size > 10 else (allv.min(), allv.max())
        bins = np.linspace(lo, hi if hi > lo else lo + 1, 30)
        for verdict, xs in vals.items():
            xs = np.clip([x for x in xs if np.isfinite(x)], bins[0], bins[-1])
            if len(xs):
                ax.hist(xs, bins=bins, alpha=0.6, color=colours[verdict], label=verdict)
        ax.set_title(key, fontsize=10)
    for ax in list(axes.flat)[len(keys) :]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    tmp.replace(path)
    return True


def _rates_plot(table: dict[str, Counter[str]], path: Path, title: str) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not table:
        return False
    names = list(table)
    fig, ax = plt.subplots(figsize=(max(4, 0.8 * len(names) + 2), 3))
    bottom = np.zeros(len(names))
    for verdict, colour in (("keep", "#1a7f37"), ("review", "#e0a000"), ("reject", "#c62828")):
        share = np.array([table[n][verdict] / max(1, sum(table[n].values())) for n in names])
        ax.bar(names, share, bottom=bottom, color=colour, label=verdict)
        bottom += share
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    tmp.replace(path)
    return True


def _rate_table(title: str, table: dict[str, Counter[str]]) -> str:
    out = [f"<h3>{html.escape(title)}</h3><table><tr><th class=l></th><th>pairs</th>"
           "<th>keep</th><th>review</th><th>reject</th></tr>"]  # fmt: skip
    for name, c in table.items():
        n = sum(c.values())
        cells = "".join(
            f"<td class={v}>{c[v]} ({c[v] / max(n, 1):.0%})</td>" for v in ("keep", "review", "reject")
        )
        out.append(f"<tr><td class=l>{html.escape(str(name))}</td><td>{n}</td>{cells}</tr>")
    out.append("</table>")
    return "".join(out)


def write_report(r: Run, variants: list[str], policy: Policy, worst: int = 24) -> Path:
    """Write RUN/reports/qc.html (and its PNGs and thumbnails); returns its path."""
    reports = r.reports_dir
    thumbs = reports / "thumbs"
    thumbs.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for variant in variants:
        for row in r.store.query(
            "SELECT q.item_id, q.result, i.lq_path, s.result AS synth FROM stage_results q"
            " JOIN items i ON i.id = q.item_id"
            " LEFT JOIN stage_results s ON s.item_id = q.item_id AND s.stage = 'synth' AND s.variant = q.variant"
            " WHERE q.stage = 'qc' AND q.variant = ? ORDER BY i.rowid",
            (variant,),
        ):
            res = json.loads(row["result"])
            synth = json.loads(row["synth"] or "{}")
            rows.append({
                "id": row["item_id"], "variant": variant, "lq": row["lq_path"],
                "hq": hq_relpath(synth, variant, row["item_id"]),
                "verdict": res["verdict"], "reasons": res["reasons"], "category": res.get("category") or "?",
                "metrics": res.get("metrics") or {}, "judge": res.get("judge"),
            })  # fmt: skip
    # Per stage: what the metric rules alone, the judge alone, and the whole policy would decide.
    metric_rules = policy.model_copy(
        update={
            "rules": [x for x in policy.rules if not any(c.key.startswith("judge.") for c in x.conditions)]
        }
    )
    by_stage: dict[str, Counter[str]] = defaultdict(Counter)
    for row in rows:
        if row["metrics"]:
            by_stage["metric stage (metric rules only)"][
                metric_rules.decide(row["metrics"], row["category"]).verdict
            ] += 1
        if row["judge"]:
            by_stage["judge stage (the judge's own verdict)"][row["judge"]["verdict"]] += 1
        by_stage["final (policy)"][row["verdict"]] += 1
    by_variant: dict[str, Counter[str]] = defaultdict(Counter)
    by_category: dict[str, Counter[str]] = defaultdict(Counter)
    by_rule: Counter[str] = Counter()
    for row in rows:
        by_variant[row["variant"]][row["verdict"]] += 1
        by_category[row["category"]][row["verdict"]] += 1
        by_rule.update(row["reasons"])
    parts = [
        "<!doctype html><html><head><meta charset=utf-8><title>ggt QC report</title>",
        f"<style>{_CSS}</style></head><body><h1>QC report</h1>",
        f"<p class=small>run {html.escape(str(r.root))}; policy <b>{html.escape(policy.name)}</b> "
        f"({html.escape(policy.source)}); {len(rows)} pairs. Rejected pairs stay in the store with their "
        "reasons.</p>",
        "<h2>Pass rates</h2>",
        _rate_table("per stage", by_stage),
        _rate_table("per generator (metric stage, judge and policy together)", by_variant),
        _rate_table("per category", dict(sorted(by_category.items()))),
    ]
    if _rates_plot(dict(sorted(by_category.items())), reports / "qc_categories.png", "verdicts per category"):
        parts.append('<p><img src="qc_categories.png" alt="verdicts per category"></p>')
    descr = {rule.name: (rule.action, rule.why, rule.when) for rule in policy.rules}
    parts.append("<h3>per rule</h3><table><tr><th class=l>rule</th><th class=l>action</th><th>fired</th>"
                 "<th>share</th><th class=l>when</th><th class=l>why</th></tr>")  # fmt: skip
    for name, n in by_rule.most_common():
        action, why, when = descr.get(name, ("", "", ""))
        parts.append(
            f"<tr><td class=l>{html.escape(name)}</td><td class='l {action}'>{action}</td><td>{n}</td>"
            f"<td>{n / max(len(rows), 1):.0%}</td><td class=l>{html.escape(when)}</td>"
            f"<td class=l>{html.escape(why)}</td></tr>"
        )
    parts.append("</table>")
    if _histograms(rows, reports / "qc_metrics.png"):
        parts.append('<h2>Metric histograms</h2><p><img src="qc_metrics.png" alt="metric histograms"></p>')

    def badness(row: dict[str, Any]) -> tuple[int, int, float]:
        j = row["judge"] or {}
        jmin = min((j.get("scores") or {"x": 1.0}).values())
        return (_SEVERITY[row["verdict"]], len(row["reasons"]), -jmin)

    shown = sorted((x for x in rows if x["verdict"] != "keep"), key=badness, reverse=True)[:worst]
    parts.append(f"<h2>Worst pairs ({len(shown)})</h2><div class=pairs>")
    for row in shown:
        key = f"{row['variant']}_{row['id']}"
        lq_t = _thumb(r, row["lq"], thumbs / f"{key}_lq.jpg")
        hq_t = _thumb(r, row["hq"], thumbs / f"{key}_hq.jpg")
        m = row["metrics"]
        nums = ", ".join(f"{k}={m[k]:.3g}" for k in HIST_METRICS[:5] if k in m)
        imgs = "".join(f'<img src="{t}" alt="{a}">' for t, a in ((lq_t, "LQ"), (hq_t, "HQ")) if t)
        parts.append(
            f"<div class=pair>{imgs}<div><b class={row['verdict']}>{row['verdict']}</b> {html.escape(row['id'])}"
            f" ({html.escape(row['variant'])}, {html.escape(row['category'])})<br>"
            f"{html.escape(', '.join(row['reasons']))}<br><span class=small>{html.escape(nums)}</span></div></div>"
        )
    parts.append("</div></body></html>")
    path = reports / "qc.html"
    write_bytes_atomic(path, "\n".join(parts).encode("utf-8"))
    return path
