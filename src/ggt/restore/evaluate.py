"""`ggt eval`: a restoration model's scores per category, full-reference where the set has GT.

The data is either a ggt export (folder, parquet, hf or webdataset; one split, `test` by default; each
pair's category from the export's `metadata.jsonl`), a plain folder with `lq/` and `gt/` holding images
of the same names, or a folder of LQ images without GT (category = first subfolder, `all` for loose
files), scored with no-reference metrics on the model's outputs. Metrics come from the QC registry
(`ggt.qc.metrics`); `pyiqa:NAME` takes any pyiqa metric with its weights read from `iqa_weights`.
`model="identity"` scores the LQ input itself, the baseline row of a results table.

Each category's value is the mean over its images; `overall` is the mean over all images (not of the
category means). A metric that cannot score one image (NIQE on a tiny one) leaves a gap there, counted
in `notes`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from ggt.progress import ProgressFn

DEFAULT_FR = ("psnr", "ssim")
DEFAULT_NR = ("niqe", "brisque")
OVERALL = "overall"


class MetricInfo(BaseModel):
    name: str
    kind: Literal["fr", "nr"]
    lower_better: bool


class EvalRow(BaseModel):
    category: str
    images: int
    values: dict[str, float | None]


class EvalItem(BaseModel):
    name: str
    category: str
    values: dict[str, float | None]


class EvalFailure(BaseModel):
    name: str
    reason: str
    message: str


class EvalReport(BaseModel):
    model: str
    data: str
    kind: Literal["fr", "nr"]
    format: str
    split: str | None
    metrics: list[MetricInfo]
    rows: list[EvalRow] = Field(default_factory=list)  # one per category (sorted), then `overall`
    items: list[EvalItem] = Field(default_factory=list)
    failures: list[EvalFailure] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    files: dict[str, str] = Field(default_factory=dict)
    device: str = "cpu"
    tile: int | None = None
    seconds: float = 0.0

    def row(self, category: str) -> EvalRow:
        for r in self.rows:
            if r.category == category:
                return r
        raise KeyError(category)


# -- the data ----------------------------------------------------------------------------------------------


@dataclass
class Sample:
    name: str
    category: str
    lq: np.ndarray | None
    gt: np.ndarray | None
    error: tuple[str, str] | None = None


def _categories(root: Path, split: str) -> dict[str, str]:
    path = root / "metadata.jsonl"
    out: dict[str, str] = {}
    if not path.is_file():
        return out
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if row.get("split") == split and "name" in row:
                out[str(row["name"])] = str(row.get("category") or "unknown")
    return out


def _float_hwc(t: Any) -> np.ndarray:
    return np.ascontiguousarray(t.numpy().transpose(1, 2, 0), dtype=np.float32)


def detect_data(root: Path) -> tuple[str, bool]:
    """(format, has GT): an export's format, `pairs` (plain lq/ + gt/ folders) or `images` (no GT)."""
    if not root.is_dir():
        raise FileNotFoundError(f"evaluation data {root} is not a folder")
    if (root / "export.json").is_file() or (root / "metadata.jsonl").is_file():
        if any(root.glob("*/*.tar")):
            return "webdataset", True
        from ggt.dataset.loaders import detect_format

        return detect_format(root), True
    if (root / "lq").is_dir() and (root / "gt").is_dir():
        return "pairs", True
    return "images", False


def _export_splits(root: Path, fmt: str) -> list[str]:
    if fmt == "webdataset":
        return sorted({p.parent.name for p in root.glob("*/*.tar")})
    if fmt == "parquet":
        return sorted({p.name.split("-")[0] for p in (root / "data").glob("*.parquet")})
    if fmt == "hf":
        return sorted(p.name for p in root.iterdir() if (p / "dataset_info.json").is_file())
    return sorted(p.name for p in root.iterdir() if (p / "lq").is_dir())


def export_samples(root: Path, fmt: str, split: str) -> tuple[int, Iterator[Sample]]:
    splits = _export_splits(root, fmt)
    if split not in splits:
        raise ValueError(f"{root} has no {split!r} split (splits: {', '.join(splits) or 'none'})")
    cats = _categories(root, split)
    if fmt == "webdataset":
        from ggt.dataset.loaders import webdataset_pipeline

        tars = sorted(str(p) for p in (root / split).glob("*.tar"))
        total = sum(1 for c in cats) if cats else 0

        def wds_iter() -> Iterator[Sample]:
            for s in webdataset_pipeline(tars):
                cat = str(s["meta"].get("category") or cats.get(s["name"], "unknown"))
                yield Sample(s["name"], cat, _float_hwc(s["lq"]), _float_hwc(s["gt"]))

        return total, wds_iter()
    from ggt.dataset.loaders import PairedDataset

    ds = PairedDataset(root, split=split)

    def ds_iter() -> Iterator[Sample]:
        for i in range(len(ds)):
            name = ds.names[i] if fmt == "folder" else str(i)
            try:
                s = ds[i]
            except Exception as exc:  # a damaged file fails its pair only
                yield Sample(name, cats.get(name, "unknown"), None, None, _reason(exc))
                continue
            yield Sample(s["name"], cats.get(s["name"], "unknown"), _float_hwc(s["lq"]), _float_hwc(s["gt"]))

    return len(ds), ds_iter()


def _reason(exc: BaseException) -> tuple[str, str]:
    from ggt.imaging import ImageDecodeError

    if isinstance(exc, ImageDecodeError):
        return exc.reason, str(exc.args[0])
    if isinstance(exc, FileNotFoundError):
        return "missing_file", str(exc)
    return type(exc).__name__, str(exc)[:300]


def _read(path: Path) -> np.ndarray:
    from ggt.imaging import decode_image, to_float

    return to_float(decode_image(path).rgb)


def _folder_samples(root: Path, with_gt: bool) -> tuple[int, Iterator[Sample]]:
    from ggt.restore.infer import list_images

    lq_root = root / "lq" if with_gt else root
    files = list(list_images(lq_root))
    if not files:
        raise ValueError(f"no images found under {lq_root}")
    gts: dict[str, Path] = {}
    if with_gt:
        gts = {p.relative_to(root / "gt").with_suffix("").as_posix(): p for p in list_images(root / "gt")}

    def it() -> Iterator[Sample]:
        for p in files:
            rel = p.relative_to(lq_root)
            key = rel.with_suffix("").as_posix()
            category = rel.parts[0] if len(rel.parts) > 1 else "all"
            try:
                lq = _read(p)
                gt = None
                if with_gt:
                    if key not in gts:
                        raise FileNotFoundError(f"no GT image for {rel} under {root / 'gt'}")
                    gt = _read(gts[key])
            except Exception as exc:
                yield Sample(key, category, None, None, _reason(exc))
                continue
            yield Sample(key, category, lq, gt)

    return len(files), it()


# -- metrics -----------------------------------------------------------------------------------------------


def build_metrics(names: list[str] | None, has_gt: bool, iqa_weights: Path | None = None) -> list[Any]:
    """Registry metrics by name (`pyiqa:NAME` for pyiqa's), checked available; defaults by data kind."""
    from ggt.qc.metrics import MetricUnavailableError, create_metric

    wanted = list(names) if names else list(DEFAULT_FR + DEFAULT_NR if has_gt else DEFAULT_NR)
    out = []
    for name in dict.fromkeys(n.strip() for n in wanted if n.strip()):
        if name.startswith("pyiqa:"):
            m = create_metric("pyiqa", metric=name.split(":", 1)[1], weights_dir=iqa_weights)
        elif name == "pyiqa":  # the adapter alone would score its default, PSNR, in a column named pyiqa
            raise ValueError("metric 'pyiqa' needs the pyiqa metric's name: pyiqa:NAME, e.g. pyiqa:lpips")
        else:
            m = create_metric(name)
        try:
            m.check_available()
        except MetricUnavailableError as exc:
            raise ValueError(f"metric {name!r} is unavailable: {exc}") from None
        if m.kind == "fr" and not has_gt:
            raise ValueError(f"metric {name!r} is full-reference, but the data has no GT images")
        m.label = name  # the column name, e.g. pyiqa:lpips
        out.append(m)
    if not out:
        raise ValueError("no metrics given")
    return out


def _score(m: Any, out: np.ndarray, gt: np.ndarray | None) -> float:
    v = m(gt, out) if m.kind == "fr" else m(out)  # full-reference: (reference, image)
    if isinstance(v, dict):
        v = v[m.primary]
    return float(v)


def _mean(values: list[float | None]) -> float | None:
    ok = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(ok)) if ok else None


def _rows(items: list[EvalItem], names: list[str]) -> list[EvalRow]:
    by_cat: dict[str, list[EvalItem]] = {}
    for it in items:
        by_cat.setdefault(it.category, []).append(it)
    rows = [
        EvalRow(category=c, images=len(v), values={n: _mean([i.values.get(n) for i in v]) for n in names})
        for c, v in sorted(by_cat.items())
    ]
    rows.append(EvalRow(category=OVERALL, images=len(items),
                        values={n: _mean([i.values.get(n) for i in items]) for n in names}))  # fmt: skip
    return rows


# -- output files ------------------------------------------------------------------------------------------


def fmt_value(name: str, v: float | None) -> str:
    """2 decimals (PSNR, NIQE, BRISQUE), 4 for values in [0, 1]-like ranges (SSIM, LPIPS)."""
    if v is None:
        return "-"
    return f"{v:.4f}" if abs(v) < 1.5 and "psnr" not in name else f"{v:.2f}"


def header(m: MetricInfo) -> str:
    return f"{m.name} {'↓' if m.lower_better else '↑'}"


def table_csv(rows: list[dict[str, Any]], columns: list[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow(["" if r.get(c) is None else r.get(c) for c in columns])
    return buf.getvalue()


def table_markdown(rows: list[list[str]], columns: list[str], right_from: int = 1) -> str:
    align = ["---" if i < right_from else "---:" for i in range(len(columns))]
    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_report_files(report: EvalReport, out_dir: Path) -> dict[str, str]:
    """eval.csv and eval.md (one row per category + overall), items.csv (one per image), eval.json."""
    from ggt.fsutil import write_bytes_atomic

    out_dir.mkdir(parents=True, exist_ok=True)
    names = [m.name for m in report.metrics]
    cols = ["category", "images", *names]
    rows = [{"category": r.category, "images": r.images, **r.values} for r in report.rows]
    items = [{"name": i.name, "category": i.category, **i.values} for i in report.items]
    md_rows = [
        [r.category, str(r.images), *(fmt_value(n, r.values.get(n)) for n in names)] for r in report.rows
    ]
    md = f"Model `{report.model}` on `{report.data}`" + (f" ({report.split} split)" if report.split else "")
    md += f", {report.kind.upper()} metrics\n\n" + table_markdown(
        md_rows, ["category", "images", *map(header, report.metrics)]
    )
    files = {"eval.csv": table_csv(rows, cols), "items.csv": table_csv(items, ["name", "category", *names]),
             "eval.md": md}  # fmt: skip
    written = {}
    for fname, text in files.items():
        write_bytes_atomic(out_dir / fname, text.encode("utf-8"))
        written[fname] = str(out_dir / fname)
    written["eval.json"] = str(out_dir / "eval.json")
    report.files = written
    write_bytes_atomic(out_dir / "eval.json", report.model_dump_json(indent=1).encode("utf-8"))
    return written


def clear_earlier_images(out_dir: Path) -> bool:
    """Remove the images/ folder an earlier `ggt eval` left in `out_dir` (one with its eval.json); True
    if removed. A new evaluation overwrites only the images it saves, so the rest would be another
    model's outputs beside this model's tables. Without eval.json the folder is not ours: left alone."""
    import shutil

    images = out_dir / "images"
    if not (out_dir / "eval.json").is_file():
        return False
    if images.is_symlink():  # the link is ours to drop, not what it points to
        images.unlink()
        return True
    if not images.is_dir():
        return False
    shutil.rmtree(images)
    return True


# -- the verb ----------------------------------------------------------------------------------------------


def evaluate(
    model: str | os.PathLike[str] | Any,
    data: str | os.PathLike[str],
    *,
    metrics: list[str] | None = None,
    split: str = "test",
    tile: int | None = 512,
    overlap: int = 32,
    device: str = "auto",
    half: bool = False,
    out_dir: str | os.PathLike[str] | None = None,
    iqa_weights: str | os.PathLike[str] | None = None,
    save_images: int = 0,
    progress: ProgressFn | None = None,
) -> EvalReport:
    """Score `model` (a checkpoint, a weights file, a loaded model or `identity`) on `data`; see the module.

    With `out_dir`, writes eval.csv, eval.md, items.csv and eval.json there, and the first `save_images`
    outputs (all when negative) as images/CATEGORY/NAME.png beside their GT (NAME.gt.png). The images/
    folder of an earlier evaluation in `out_dir` is removed first, so images and tables come from one
    model. Bad tile/overlap options raise ValueError before anything is loaded or written.
    """
    from ggt.restore.infer import check_tiling, load_restorer, resolve_device, restore_image

    check_tiling(tile, overlap)
    root = Path(data)
    fmt, has_gt = detect_data(root)
    dev = resolve_device(device)
    ms = build_metrics(metrics, has_gt, Path(iqa_weights) if iqa_weights else None)
    r = load_restorer(model, dev)
    if r.module is not None:
        r.module.to(dev).eval()
    if fmt in ("pairs", "images"):
        total, samples = _folder_samples(root, has_gt)
    else:
        total, samples = export_samples(root, fmt, split)
    infos = [MetricInfo(name=m.label, kind=m.kind, lower_better=bool(m.lower_better)) for m in ms]
    report = EvalReport(model=r.name, data=str(root), kind="fr" if has_gt else "nr", format=fmt,
                        split=split if fmt not in ("pairs", "images") else None, metrics=infos,
                        device=dev, tile=tile)  # fmt: skip
    gaps: dict[str, int] = {}
    t0 = time.perf_counter()
    img_dir = Path(out_dir) / "images" if out_dir is not None and save_images else None
    if img_dir is not None:  # before this run's first image lands beside the earlier run's
        clear_earlier_images(img_dir.parent)
    saved = 0
    for done, s in enumerate(samples, 1):
        if s.error is not None:
            report.failures.append(EvalFailure(name=s.name, reason=s.error[0], message=s.error[1]))
        else:
            assert s.lq is not None
            try:
                out = restore_image(r, s.lq, tile=tile, overlap=overlap, device=dev, half=half)
                if s.gt is not None and out.shape != s.gt.shape:
                    if r.is_identity:  # the LQ of a super-resolution set, enlarged as a baseline
                        from ggt.qc.metrics._image import resize_to

                        out = np.clip(resize_to(out, (s.gt.shape[1], s.gt.shape[0])), 0.0, 1.0)
                    else:
                        raise ValueError(f"output {out.shape[:2]} differs from the GT {s.gt.shape[:2]}")
            except (RuntimeError, ValueError) as exc:
                report.failures.append(EvalFailure(name=s.name, reason="inference", message=str(exc)[:300]))
            else:
                values: dict[str, float | None] = {}
                for m in ms:
                    try:
                        values[m.label] = _score(m, out, s.gt)
                    except (ValueError, ArithmeticError):
                        values[m.label] = None
                        gaps[m.label] = gaps.get(m.label, 0) + 1
                report.items.append(EvalItem(name=s.name, category=s.category, values=values))
                if img_dir is not None and (save_images < 0 or saved < save_images):
                    from ggt.imaging import write_image

                    saved += 1
                    stem = Path(s.name).name
                    write_image(img_dir / s.category / f"{stem}.png", out)
                    if s.gt is not None:
                        write_image(img_dir / s.category / f"{stem}.gt.png", s.gt)
        if progress is not None:
            progress(done, max(total, done))
    if not report.items and not report.failures:
        raise ValueError(f"no images to evaluate in {root}" + (f" ({split} split)" if report.split else ""))
    report.rows = _rows(report.items, [m.name for m in infos])
    for name, n in gaps.items():
        report.notes.append(f"{name}: no value for {n} image(s) (too small or degenerate for this metric)")
    report.seconds = round(time.perf_counter() - t0, 3)
    if out_dir is not None:
        if img_dir is None:  # tables without images: an earlier run's images would pass for this model's
            clear_earlier_images(Path(out_dir))
        write_report_files(report, Path(out_dir))
    return report
