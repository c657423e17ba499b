"""`ggt experiment`: the same network trained on synthetic degradations and on a GGT export, compared.

    OUT/data/synthetic/     arm (a)'s pairs: the GGT train split's clean (GT) images degraded by the
                            simulator (a ggt folder-format export: train/lq, train/gt, metadata.jsonl)
    OUT/train/{synthetic,ggt}/   the two training runs (checkpoints, logs), same architecture and settings
    OUT/eval/TESTSET/MODEL/ each model's eval files on each test set (the GGT test split with
                            full-reference metrics; each real LQ folder with no-reference metrics)
    OUT/comparison.{md,csv}, OUT/plots/*.png, OUT/samples/*.jpg, OUT/index.html, OUT/experiment.json

Models are `input` (the LQ itself, a baseline), `synthetic` and `ggt`. Every step is resumable: the
synthetic data is reused when its settings match, an arm whose last checkpoint reached the configured
iterations is not retrained (a shorter one resumes), and an evaluation is reused while its model and
settings are unchanged.
"""

from __future__ import annotations

import csv
import html
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from ggt.progress import ProgressFn
from ggt.restore.evaluate import EvalReport, evaluate, fmt_value, header, table_csv, table_markdown
from ggt.restore.experiment_config import ExperimentConfig, load_experiment_config

ARMS = ("synthetic", "ggt")
BASELINE = "input"
TEST = "test"


class ArmResult(BaseModel):
    name: str
    data: str
    checkpoint: str
    iteration: int
    trained_now: bool  # False: a finished checkpoint was reused
    final_loss: float | None = None
    seconds: float = 0.0


class ExperimentResult(BaseModel):
    name: str
    out: str
    synthetic_pairs: int
    synthetic_reused: bool
    arms: dict[str, ArmResult] = Field(default_factory=dict)
    # test set -> model -> eval.json path
    evals: dict[str, dict[str, str]] = Field(default_factory=dict)
    files: dict[str, str] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    seconds: float = 0.0


# -- (a) the synthetic dataset -----------------------------------------------------------------------------


def _synthetic_params(cfg: ExperimentConfig) -> dict[str, Any]:
    return {"source": str(Path(cfg.ggt).resolve()), "split": cfg.train_split, "preset": cfg.synthetic.preset,
            "copies": cfg.synthetic.copies, "seed": cfg.synthetic.seed}  # fmt: skip


def build_synthetic(cfg: ExperimentConfig, progress: ProgressFn | None = None) -> tuple[Path, int, bool]:
    """Arm (a)'s training pairs as a ggt folder export; returns (folder, pairs, reused)."""
    from ggt.degrade import apply_preset, list_presets
    from ggt.degrade.folder import image_seed
    from ggt.fsutil import write_bytes_atomic
    from ggt.imaging import encode_image
    from ggt.qc.metrics._image import resize_to
    from ggt.restore.evaluate import detect_data, export_samples

    out = cfg.out / "data" / "synthetic"
    params = _synthetic_params(cfg)
    marker = out / "export.json"
    if marker.is_file():
        done = json.loads(marker.read_text(encoding="utf-8"))
        if done.get("synthetic") == params:
            return out, int(done.get("pairs", 0)), True
    if out.exists():  # other settings, or interrupted before the marker: start clean
        shutil.rmtree(out)
    fmt, has_gt = detect_data(Path(cfg.ggt))
    if not has_gt or fmt in ("pairs", "images"):
        raise ValueError(f"ggt: {cfg.ggt} is not a ggt export (folder, parquet, hf or webdataset)")
    total, samples = export_samples(Path(cfg.ggt), fmt, cfg.train_split)
    split = "train"
    (out / split / "lq").mkdir(parents=True)
    (out / split / "gt").mkdir(parents=True)
    rows: list[dict[str, Any]] = []
    meta_info: list[str] = []
    categories: dict[str, int] = {}
    presets = set(list_presets())
    done_n = 0
    for s in samples:
        done_n += 1
        if s.error is not None or s.gt is None or s.lq is None:
            continue
        gt = s.gt
        scale = max(1, gt.shape[0] // s.lq.shape[0])
        gt_png = encode_image(gt, "png")
        for c in range(cfg.synthetic.copies):
            preset = cfg.synthetic.preset
            if preset == "category":
                preset = s.category if s.category in presets else "realesrgan"
            seed = image_seed(cfg.synthetic.seed, f"{s.name}#{c}")
            res = apply_preset(gt, preset, seed)
            lq = res.image
            if scale > 1:  # a super-resolution export: the synthetic LQ at the same size ratio
                lq = resize_to(lq, (gt.shape[1] // scale, gt.shape[0] // scale))
            name = f"{s.name}_s{c}"
            write_bytes_atomic(out / split / "lq" / f"{name}.png", encode_image(lq, "png"), fsync=False)
            write_bytes_atomic(out / split / "gt" / f"{name}.png", gt_png, fsync=False)
            h, w = gt.shape[:2]
            meta_info.append(f"{name}.png ({h},{w},3)")
            rows.append({"name": name, "split": split, "category": s.category, "source_name": s.name,
                         "lq": f"{split}/lq/{name}.png", "gt": f"{split}/gt/{name}.png",
                         "lq_size": [lq.shape[1], lq.shape[0]], "gt_size": [w, h], "generator": "simulator",
                         "degradation": res.to_dict()})  # fmt: skip
            categories[s.category] = categories.get(s.category, 0) + 1
        if progress is not None:
            progress(done_n, max(total, done_n))
    if not rows:
        raise ValueError(f"ggt: no readable pairs in the {cfg.train_split!r} split of {cfg.ggt}")
    write_bytes_atomic(out / split / "meta_info.txt", ("\n".join(meta_info) + "\n").encode())
    jsonl = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)
    write_bytes_atomic(out / "metadata.jsonl", jsonl.encode("utf-8"))
    summary = {"format": "folder", "pairs": len(rows), "splits": {split: len(rows)},
               "categories": {k: {split: v} for k, v in sorted(categories.items())}, "synthetic": params}  # fmt: skip
    write_bytes_atomic(marker, json.dumps(summary, indent=1, sort_keys=True).encode("utf-8"))
    return out, len(rows), False


# -- training ----------------------------------------------------------------------------------------------


def _normal(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def _last_loss(run_dir: Path) -> float | None:
    path = run_dir / "train_log.csv"
    if not path.is_file():
        return None
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    try:
        return float(rows[-1]["loss"]) if rows else None
    except (KeyError, ValueError):
        return None


def finished_checkpoint(tc: Any) -> tuple[int, Path] | None:
    """The arm's last checkpoint when it reached the configured iterations with the same settings."""
    import yaml

    from ggt.restore.checkpoint import list_checkpoints

    found = list_checkpoints(tc.run_dir / "ckpt")
    if not found or found[-1][0] < tc.iterations:
        return None
    saved_path = tc.run_dir / "config.yaml"
    if saved_path.is_file():
        saved = _normal(yaml.safe_load(saved_path.read_text(encoding="utf-8")))
        now = _normal(tc.model_dump(mode="json"))
        if saved != now:
            diff = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
            raise ValueError(
                f"{tc.run_dir} finished with other settings ({', '.join(diff)} differ): pass --retrain "
                f"{tc.name} to train it again, or use another experiment out folder"
            )
    return found[-1]


def train_arm(
    cfg: ExperimentConfig, arm: str, data: Path, *, retrain: bool = False, progress: ProgressFn | None = None
) -> ArmResult:
    from ggt.restore.train import train

    tc = cfg.train_config(arm, data)
    done = None if retrain else finished_checkpoint(tc)
    if done is not None:
        return ArmResult(name=arm, data=str(data), checkpoint=str(done[1]), iteration=done[0], trained_now=False,
                         final_loss=_last_loss(tc.run_dir))  # fmt: skip
    res = train(tc, resume=not retrain, progress=progress)
    if res.interrupted or res.checkpoint is None:
        raise KeyboardInterrupt(f"training of arm {arm} was interrupted at iteration {res.iterations}")
    return ArmResult(name=arm, data=str(data), checkpoint=str(res.checkpoint), iteration=res.iterations,
                     trained_now=True, final_loss=res.final_loss, seconds=round(res.seconds, 2))  # fmt: skip


# -- evaluation --------------------------------------------------------------------------------------------


def _signature(
    model: str, data: Path, split: str | None, metrics: list[str], cfg: ExperimentConfig
) -> dict[str, Any]:
    mtime = None
    if model != "identity":
        p = Path(model)
        target = p / "model.safetensors" if p.is_dir() else p
        mtime = target.stat().st_mtime_ns if target.exists() else None
    return {"model": model, "mtime": mtime, "data": str(Path(data).resolve()), "split": split, "metrics": metrics,
            "tile": cfg.eval.tile, "overlap": cfg.eval.overlap, "samples": cfg.eval.sample_images}  # fmt: skip


def _evaluate_cached(
    cfg: ExperimentConfig, model: str, data: Path, split: str | None, metrics: list[str], out: Path,
    progress: ProgressFn | None,
) -> EvalReport:  # fmt: skip
    sig = _signature(model, data, split, metrics, cfg)
    sig_path = out / "signature.json"
    if sig_path.is_file() and (out / "eval.json").is_file():
        try:
            if json.loads(sig_path.read_text(encoding="utf-8")) == _normal(sig):
                return EvalReport.model_validate_json((out / "eval.json").read_text(encoding="utf-8"))
        except ValueError:
            pass
    if out.exists():
        shutil.rmtree(out)
    report = evaluate(model, data, metrics=metrics, split=split or "test", tile=cfg.eval.tile,
                      overlap=cfg.eval.overlap, device=cfg.device, out_dir=out, iqa_weights=cfg.eval.iqa_weights,
                      save_images=cfg.eval.sample_images if split else 0, progress=progress)  # fmt: skip
    sig_path.write_text(json.dumps(_normal(sig)), encoding="utf-8")
    return report


# -- the comparison ----------------------------------------------------------------------------------------


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _best(values: list[float | None], lower_better: bool) -> float | None:
    ok = [v for v in values if v is not None]
    if len(ok) < 2:
        return None
    return min(ok) if lower_better else max(ok)


def comparison_tables(results: dict[str, dict[str, EvalReport]]) -> tuple[str, str]:
    """(Markdown, CSV): per test set, one row per category x model, one column per metric; the best
    value of each category and metric in bold (Markdown)."""
    md: list[str] = []
    csv_rows: list[dict[str, Any]] = []
    all_metrics: list[str] = []
    for testset, by_model in results.items():
        models = list(by_model)
        first = next(iter(by_model.values()))
        infos = first.metrics
        all_metrics += [m.name for m in infos if m.name not in all_metrics]
        cats = [r.category for r in first.rows]
        kind = "full-reference, vs GT" if first.kind == "fr" else "no-reference, on the outputs"
        md.append(
            f"### {testset} ({first.data}{', ' + first.split + ' split' if first.split else ''}; {kind})\n"
        )
        rows = []
        for cat in cats:
            per_model = {m: by_model[m].row(cat) if any(r.category == cat for r in by_model[m].rows) else None
                         for m in models}  # fmt: skip
            best = {i.name: _best([r.values.get(i.name) if r else None for r in per_model.values()], i.lower_better)
                    for i in infos}  # fmt: skip
            for m, r in per_model.items():
                cells = [cat, m, str(r.images if r else 0)]
                for i in infos:
                    v = r.values.get(i.name) if r else None
                    text = fmt_value(i.name, v)
                    cells.append(f"**{text}**" if v is not None and v == best[i.name] else text)
                rows.append(cells)
                csv_rows.append({"testset": testset, "category": cat, "model": m, "images": r.images if r else 0,
                                 **({i.name: r.values.get(i.name) for i in infos} if r else {})})  # fmt: skip
        md.append(table_markdown(rows, ["category", "model", "images", *map(header, infos)], right_from=2))
    csv_text = table_csv(csv_rows, ["testset", "category", "model", "images", *all_metrics])
    return "\n".join(md), csv_text


def write_plots(results: dict[str, dict[str, EvalReport]], out: Path) -> list[str]:
    """One PNG per test set and metric: grouped bars, categories (and overall) along x, one bar per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    files = []
    colours = ["#9e9e9e", "#dd8452", "#4c72b0", "#55a868", "#c44e52"]
    for testset, by_model in results.items():
        models = list(by_model)
        first = next(iter(by_model.values()))
        cats = [r.category for r in first.rows]
        for info in first.metrics:
            fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(cats) + 1.5), 3.2))
            width = 0.8 / max(1, len(models))
            for k, m in enumerate(models):
                vals = []
                for cat in cats:
                    row = next((r for r in by_model[m].rows if r.category == cat), None)
                    v = row.values.get(info.name) if row else None
                    vals.append(np.nan if v is None else v)
                xs = np.arange(len(cats)) + (k - (len(models) - 1) / 2) * width
                ax.bar(xs, vals, width=width, label=m, color=colours[k % len(colours)])
            ax.set_xticks(np.arange(len(cats)), cats, rotation=30, ha="right", fontsize=8)
            ax.set_title(f"{testset}: {header(info)}", fontsize=9)
            ax.legend(fontsize=7)
            fig.tight_layout()
            name = f"{_safe(testset)}_{_safe(info.name)}.png"
            fig.savefig(out / name, dpi=90)
            plt.close(fig)
            files.append(f"plots/{name}")
    return files


def write_samples(eval_root: Path, models: list[str], out: Path, n: int) -> list[str]:
    """Side-by-side strips of the first test images: each model's output, then the GT."""
    from PIL import Image, ImageDraw

    from ggt.imaging import read_image

    base = eval_root / TEST / models[0] / "images"
    gts = sorted(base.rglob("*.gt.png"))[:n] if base.is_dir() else []
    files = []
    out.mkdir(parents=True, exist_ok=True)
    for j, gt_path in enumerate(gts):
        rel = gt_path.relative_to(base)
        stem = gt_path.name[: -len(".gt.png")]
        tiles, labels = [], []
        for m in models:
            p = eval_root / TEST / m / "images" / rel.parent / f"{stem}.png"
            if p.is_file():
                tiles.append(read_image(p))
                labels.append(m)
        tiles.append(read_image(gt_path))
        labels.append("GT")
        h = 256
        row = []
        for t in tiles:
            im = Image.fromarray((np.clip(t, 0, 1) * 255 + 0.5).astype(np.uint8))
            im = im.resize((max(1, round(im.width * h / im.height)), h), Image.Resampling.BICUBIC)
            ImageDraw.Draw(im).text((4, 4), labels[len(row)], fill="yellow")
            row.append(np.asarray(im))
        strip = np.concatenate(row, axis=1)
        name = f"{TEST}_{j}_{_safe(rel.parent.as_posix())}.jpg"
        Image.fromarray(strip).save(out / name, "JPEG", quality=88)
        files.append(f"samples/{name}")
    return files


def _md_to_html_table(md_table: str) -> str:
    lines = [ln for ln in md_table.strip().splitlines() if ln.startswith("|")]
    e = html.escape

    def cells(line: str) -> list[str]:
        return [c.strip() for c in line.strip().strip("|").split("|")]

    head = cells(lines[0])
    out = ["<table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr></thead><tbody>"]
    for ln in lines[2:]:
        tds = []
        for c in cells(ln):
            bold = c.startswith("**") and c.endswith("**")
            text = e(c.strip("*"))
            tds.append(f"<td><b>{text}</b></td>" if bold else f"<td>{text}</td>")
        out.append("<tr>" + "".join(tds) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def write_html(path: Path, cfg: ExperimentConfig, result: ExperimentResult, md: str, plots: list[str],
               samples: list[str]) -> None:  # fmt: skip
    from ggt.fsutil import write_bytes_atomic

    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>ggt experiment {e(cfg.name)}</title><style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}"
        "table{border-collapse:collapse;margin-bottom:1em}td,th{border:1px solid #ccc;padding:3px 8px;"
        "text-align:right}td:nth-child(-n+2),th:nth-child(-n+2){text-align:left}img{max-width:100%}</style></head><body>",
        f"<h1>GGT vs synthetic: {e(cfg.name)}</h1>",
        f"<p>Architecture <code>{e(json.dumps(cfg.arch.model_dump()))}</code>; GGT export <code>{e(str(cfg.ggt))}</code>;"
        f" synthetic pairs: {result.synthetic_pairs} (preset <code>{e(cfg.synthetic.preset)}</code>,"
        f" {cfg.synthetic.copies} per clean image).</p><ul>",
    ]
    for a in result.arms.values():
        loss = "-" if a.final_loss is None else f"{a.final_loss:.4f}"
        how = "trained now" if a.trained_now else "reused"
        parts.append(f"<li><b>{e(a.name)}</b>: {a.iteration} iterations ({how}), last loss {loss},"
                     f" checkpoint <code>{e(a.checkpoint)}</code></li>")  # fmt: skip
    parts.append("</ul>")
    for block in md.split("### ")[1:]:
        title, _, table = block.partition("\n")
        parts.append(f"<h2>{e(title)}</h2>{_md_to_html_table(table)}")
    if plots:
        parts.append("<h2>Plots</h2>" + "".join(f"<img src='{e(p)}' alt='{e(p)}'> " for p in plots))
    if samples:
        parts.append(
            "<h2>Test images</h2>" + "".join(f"<p><img src='{e(s)}' alt='{e(s)}'></p>" for s in samples)
        )
    for note in result.notes:
        parts.append(f"<p><i>{e(note)}</i></p>")
    parts.append("</body></html>")
    write_bytes_atomic(path, "\n".join(parts).encode("utf-8"))


# -- the verb ----------------------------------------------------------------------------------------------


def experiment(
    config: ExperimentConfig | str | os.PathLike[str],
    *,
    overrides: list[str] | None = None,
    retrain: list[str] | None = None,
    progress: ProgressFn | None = None,
    log: Any = None,
) -> ExperimentResult:
    """Run (or resume) the experiment a config describes; see the module docstring for the outputs.

    `retrain` names arms to train again from scratch; `log(message)` receives one line per phase.
    """
    from ggt.fsutil import write_bytes_atomic

    cfg = config if isinstance(config, ExperimentConfig) else load_experiment_config(Path(config), overrides)
    say = log or (lambda _msg: None)
    bad = sorted(set(retrain or []) - set(ARMS))
    if bad:
        raise ValueError(f"--retrain: unknown arm(s) {', '.join(bad)}; arms: {', '.join(ARMS)}")
    t0 = time.perf_counter()
    cfg.out.mkdir(parents=True, exist_ok=True)
    say("building the synthetic dataset (simulator on the GGT train split's clean images)")
    synth_dir, pairs, reused = build_synthetic(cfg, progress)
    result = ExperimentResult(name=cfg.name, out=str(cfg.out), synthetic_pairs=pairs, synthetic_reused=reused)
    for arm, data in (("synthetic", synth_dir), ("ggt", Path(cfg.ggt))):
        say(f"arm {arm}: training on {data} (a finished checkpoint is reused)")
        a = result.arms[arm] = train_arm(cfg, arm, data, retrain=arm in (retrain or []), progress=progress)
        say(f"arm {arm}: {'trained to' if a.trained_now else 'reused'} iteration {a.iteration}")
    models = ([(BASELINE, "identity")] if cfg.eval.baseline else []) + [
        (a, r.checkpoint) for a, r in result.arms.items()
    ]
    testsets: list[tuple[str, Path, str | None, list[str]]] = []
    if cfg.eval.fr_metrics or cfg.eval.nr_metrics:
        testsets.append((TEST, Path(cfg.ggt), cfg.test_split, [*cfg.eval.fr_metrics, *cfg.eval.nr_metrics]))
    for rs in cfg.eval.real_lq:
        if cfg.eval.nr_metrics:
            testsets.append((rs.name, rs.path, None, list(cfg.eval.nr_metrics)))
        else:
            result.notes.append(f"real LQ set {rs.name} skipped: no nr_metrics configured")
    eval_root = cfg.out / "eval"
    results: dict[str, dict[str, EvalReport]] = {}
    for name, data, split, metrics in testsets:
        results[name] = {}
        for model_name, model in models:
            say(f"evaluating {model_name} on {name}")
            rep = _evaluate_cached(cfg, model, data, split, metrics, eval_root / name / model_name, progress)
            results[name][model_name] = rep
            result.evals.setdefault(name, {})[model_name] = rep.files.get("eval.json", "")
            if rep.failures:
                result.notes.append(f"{model_name} on {name}: {len(rep.failures)} image(s) failed "
                                    f"(first: {rep.failures[0].name}: {rep.failures[0].message})")  # fmt: skip
            result.notes += [f"{model_name} on {name}: {n}" for n in rep.notes]
    say("writing the comparison")
    md, csv_text = comparison_tables(results)
    title = f"# GGT vs synthetic: {cfg.name}\n\nArchitecture `{cfg.arch.type}`, "
    title += ", ".join(f"{a.name}: {a.iteration} iterations" for a in result.arms.values()) + ".\n\n"
    write_bytes_atomic(cfg.out / "comparison.md", (title + md).encode("utf-8"))
    write_bytes_atomic(cfg.out / "comparison.csv", csv_text.encode("utf-8"))
    plots = write_plots(results, cfg.out / "plots")
    samples = write_samples(eval_root, [m for m, _ in models], cfg.out / "samples", cfg.eval.sample_images)
    result.files = {"comparison.md": str(cfg.out / "comparison.md"), "comparison.csv": str(cfg.out / "comparison.csv"),
                    "index.html": str(cfg.out / "index.html"), "experiment.json": str(cfg.out / "experiment.json"),
                    **{p: str(cfg.out / p) for p in plots + samples}}  # fmt: skip
    result.seconds = round(time.perf_counter() - t0, 2)
    write_html(cfg.out / "index.html", cfg, result, md, plots, samples)
    write_bytes_atomic(cfg.out / "experiment.json", result.model_dump_json(indent=1).encode("utf-8"))
    return result
