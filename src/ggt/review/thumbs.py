"""JPEG thumbnails of a pair's images, made on first request and kept under RUN/cache/thumbs/."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from PIL import Image

from ggt.fsutil import write_bytes_atomic

THUMB_PX = 1024
QUALITY = 85


def thumb_path(run_root: Path, item_id: str, kind: str, variant: str) -> Path:
    # The variant is a generator's name from the store; hashing it keeps the file name to [0-9a-f_].
    tag = "lq" if kind == "lq" else "hq_" + hashlib.sha256(variant.encode()).hexdigest()[:12]
    return run_root / "cache" / "thumbs" / f"{item_id}_{tag}_{THUMB_PX}.jpg"


def thumbnail(source: Path, target: Path) -> Path:
    """The cached thumbnail of `source`, made again when the source is newer (a regenerated HQ)."""
    if target.exists() and target.stat().st_mtime_ns >= source.stat().st_mtime_ns:
        return target
    with Image.open(source) as im:
        im.draft("RGB", (THUMB_PX, THUMB_PX))  # JPEG sources decode at a reduced scale: much faster
        img = im.convert("RGB")
    img.thumbnail((THUMB_PX, THUMB_PX), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=QUALITY, optimize=True)
    # Atomic, so two reviewers asking for the same thumbnail never read a half-written file.
    write_bytes_atomic(target, buf.getvalue(), fsync=False)
    return target
