"""Degrade every image of a folder: the Python side of ``ggt degrade --preset P --in DIR --out DIR``."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ggt.config import IMAGE_EXTENSIONS
from ggt.degrade.presets import apply_preset, get_preset
from ggt.fsutil import mkstemp_for, sweep_orphaned_temps

IMAGE_SUFFIXES = frozenset(IMAGE_EXTENSIONS)  # what `ingest` takes, so one folder serves both
LABELS_FILE = "labels.jsonl"


class FailedItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file: str
    error: str


class DegradeSummary(BaseModel):
    """What one ``degrade_folder`` call did; ``failed`` lists each unreadable input with its reason."""

    model_config = ConfigDict(extra="forbid")

    preset: str
    seed: int
    in_dir: str
    out_dir: str
    labels_path: str
    written: int = 0
    reused: int = 0
    ignored: int = 0  # files in the folder without an image suffix (IMAGE_SUFFIXES)
    failed: list[FailedItem] = Field(default_factory=list)
    seconds: float = 0.0


def image_seed(seed: int, name: str) -> int:
    """Per-image seed from the run seed and the file name, so results do not depend on folder order."""
    digest = hashlib.sha256(f"{seed}\x00{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


def _list_images(in_dir: Path) -> tuple[list[Path], int]:
    """The folder's image files by name, and how many other (non-hidden) files it holds."""
    files = sorted(
        (p for p in in_dir.iterdir() if p.is_file() and not p.name.startswith(".")), key=lambda p: p.name
    )
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    return images, len(files) - len(images)


def _newer(output: Path, source: Path) -> bool:
    """Whether `output` exists and was written after `source` last changed (as make decides): a photo
    replaced under the same name since the earlier run is degraded again."""
    try:
        return output.stat().st_mtime_ns >= source.stat().st_mtime_ns
    except FileNotFoundError:
        return False


def _previous_labels(path: Path) -> dict[str, dict[str, Any]]:
    if not path.is_file():
        return {}
    out: dict[str, dict[str, Any]] = {}
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            try:
                rec = json.loads(line)
                out[rec["source"]] = rec
            except (ValueError, KeyError, TypeError):
                continue  # a damaged line only means that image is redone
    return out


def degrade_folder(
    preset: str,
    in_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    seed: int = 0,
    *,
    skip_existing: bool = False,
) -> DegradeSummary:
    """Degrade each image directly in ``in_dir`` (sorted by name) with ``preset``.

    Writes ``out_dir/STEM.png`` per image and ``out_dir/labels.jsonl`` with one JSON object per written
    image: ``file`` (output name), ``source`` (input name), ``preset``, ``seed`` (the per-image seed:
    ``apply_preset(read_image(source), preset, seed)`` reproduces the PNG), ``labels`` and ``severity``.
    Each image's seed derives from (``seed``, file name). An unreadable file, or two inputs with the
    same stem, is recorded in ``failed`` and the run goes on. Files are written atomically; one image is
    in memory at a time. With ``skip_existing``, images whose PNG and label line exist from an earlier
    run with the same preset and seed, the PNG written after the source last changed, are kept, not
    redone.
    """
    from ggt.imaging import read_image, write_image

    get_preset(preset)  # fail before touching the disk
    src, dst = Path(in_dir), Path(out_dir)
    if not src.is_dir():
        raise ValueError(f"input folder does not exist: {src}")
    if dst.resolve() == src.resolve():
        raise ValueError(
            "the output folder must differ from the input folder (outputs would overwrite inputs)"
        )
    dst.mkdir(parents=True, exist_ok=True)
    labels_path = dst / LABELS_FILE
    previous = _previous_labels(labels_path) if skip_existing else {}
    summary = DegradeSummary(
        preset=preset, seed=seed, in_dir=str(src), out_dir=str(dst), labels_path=str(labels_path)
    )
    start = time.perf_counter()
    taken: dict[str, str] = {}
    sweep_orphaned_temps(dst)  # what a killed run left half-written
    images, summary.ignored = _list_images(src)
    fd, tmp_name = mkstemp_for(labels_path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            for path in images:
                out_name = f"{path.stem}.png"
                if out_name in taken:
                    summary.failed.append(
                        FailedItem(
                            file=path.name, error=f"output {out_name} already taken by {taken[out_name]}"
                        )
                    )
                    continue
                taken[out_name] = path.name
                item_seed = image_seed(seed, path.name)
                old = previous.get(path.name)
                if (
                    old is not None
                    and old.get("preset") == preset
                    and old.get("seed") == item_seed
                    and _newer(dst / out_name, path)
                ):
                    out.write(json.dumps(old, separators=(",", ":")) + "\n")
                    summary.reused += 1
                    continue
                try:
                    img = read_image(path)
                    result = apply_preset(img, preset, item_seed)
                    write_image(dst / out_name, result.image)
                except Exception as exc:  # one bad file must not stop a folder of thousands
                    summary.failed.append(FailedItem(file=path.name, error=f"{type(exc).__name__}: {exc}"))
                    continue
                record = {"file": out_name, "source": path.name} | result.to_dict()
                out.write(json.dumps(record, separators=(",", ":")) + "\n")
                summary.written += 1
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp_name, labels_path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    summary.seconds = round(time.perf_counter() - start, 3)
    return summary
