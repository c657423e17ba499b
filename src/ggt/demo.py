"""`ggt demo`: the flow end to end on the photos that scikit-image ships, offline, in one folder."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from ggt.imaging import write_image
from ggt.ingest import IngestSummary, ingest
from ggt.photos import PHOTO_NAMES, load_photo
from ggt.progress import ProgressFn
from ggt.status import RunStatus, run_status


class DemoResult(BaseModel):
    run: str
    photos: str
    ingest: IngestSummary
    status: RunStatus


def prepare_photos(folder: Path) -> Path:
    """Write the bundled photos as JPEG files, as a user's folder of real photos would hold them."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in PHOTO_NAMES:
        target = folder / f"{name}.jpg"
        if not target.exists():
            write_image(target, load_photo(name), quality=92)
    return folder


def run_demo(out: Path, progress: ProgressFn | None = None) -> DemoResult:
    """Ingest the bundled photos into `out/run` and report the run's status. Rerunnable."""
    out = Path(out)
    photos = prepare_photos(out / "photos")
    run = out / "run"
    summary = ingest([photos], run, progress=progress)
    return DemoResult(run=str(run), photos=str(photos), ingest=summary, status=run_status(run))
