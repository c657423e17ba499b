"""`ggt demo`: the flow end to end on the photos that scikit-image ships, offline, in one folder."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from ggt import CATEGORIES
from ggt.analyze.stage import AnalyzeSummary, analyze
from ggt.dataset import ExportSummary, VerifyReport, export, verify
from ggt.generate.stage import SynthSummary, synth
from ggt.imaging import to_float, write_image
from ggt.ingest import IngestSummary, ingest
from ggt.photos import GENUINELY_DEGRADED, PHOTO_NAMES, load_photo
from ggt.progress import ProgressFn
from ggt.qc.stage import QCSummary, qc
from ggt.status import RunStatus, run_status


class DemoResult(BaseModel):
    run: str
    photos: str
    dataset: str
    report: str | None
    ingest: IngestSummary
    analyze: AnalyzeSummary
    synth: SynthSummary
    qc: QCSummary
    export: ExportSummary
    verify: VerifyReport
    status: RunStatus


def prepare_photos(folder: Path, seed: int = 0) -> Path:
    """Stand-ins for a user's folder of real LQ photos, one subfolder per category.

    Each bundled photo is degraded by the simulator with one category's preset (in turn); the genuinely
    motion-blurred `clock` goes in as it is, under `unknown`.
    """
    from ggt.degrade import apply_preset

    others = [n for n in PHOTO_NAMES if n not in GENUINELY_DEGRADED]
    for i, name in enumerate(others):
        category = CATEGORIES[i % len(CATEGORIES)]
        target = folder / category / f"{name}.png"
        if not target.exists():
            result = apply_preset(to_float(load_photo(name)), category, seed=seed + i)
            write_image(target, result.image)
    for name in GENUINELY_DEGRADED:
        target = folder / "unknown" / f"{name}.jpg"
        if not target.exists():
            write_image(target, load_photo(name), quality=95)
    return folder


def run_demo(out: Path, progress: ProgressFn | None = None) -> DemoResult:
    """The offline flow on the bundled photos in `out/run`: ingest, analyze (heuristic), synth
    (classical), QC (metrics + heuristic judge + shipped policy), export (folder) and verify.
    Rerunnable: a second call does only what is missing (the export is rewritten)."""
    out = Path(out)
    photos = prepare_photos(out / "photos")
    run = out / "run"
    ingested = ingest([photos], run, progress=progress)
    analysed = analyze(run, vlm="heuristic", progress=progress)
    synthesised = synth(run, generator="classical", progress=progress)
    checked = qc(run, judge="heuristic", progress=progress)
    dataset = out / "dataset"
    # The classical generator's targets are often sent to review by the policy; with no reviewer in the
    # demo, undecided pairs are exported too (a real export takes only kept ones by default).
    exported = export(
        run, "folder", dataset, split="test=0.2", include=["kept", "undecided"],
        overwrite=dataset.exists(), progress=progress,
    )  # fmt: skip
    return DemoResult(
        run=str(run), photos=str(photos), dataset=str(dataset), report=checked.report, ingest=ingested,
        analyze=analysed, synth=synthesised, qc=checked, export=exported, verify=verify(dataset),
        status=run_status(run),
    )  # fmt: skip
