"""Export and verify at the edges: usage errors (exit 2), empty exports, resume repair, links, bad manifests."""

import hashlib
import os
import re
import stat

import pytest
from dataset_helpers import make_run
from typer.testing import CliRunner

from ggt.cli import app
from ggt.dataset import ExportError, ExportUsageError, export, verify
from ggt.dataset.manifest import MANIFEST

runner = CliRunner()


@pytest.fixture
def run(tmp_path):
    return make_run(tmp_path, {"haze": 4, "rain": 2})[0]


def _export(run, out, *extra):
    return runner.invoke(app, ["export", "--run", str(run), "--format", "folder", "--out", str(out), *extra])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "zip"], "unknown format 'zip'"),
        (["--include", "maybe"], "unknown decision status"),
        (["--generator", "nope"], "generator 'nope'"),
        (["--shard-size", "-3"], r"--shard-size\) must be at least 1, got -3"),
        (["--shard-size", "0"], r"--shard-size\) must be at least 1, got 0"),
        (["--split", "test=1.0"], r"fraction must be in \[0, 1\)"),
        (["--split", "test=6"], "leave train empty"),
    ],
)
def test_bad_export_options_exit_2_and_write_nothing(tmp_path, run, args, message):
    out = tmp_path / "out"
    res = runner.invoke(app, ["export", "--run", str(run), "--format", "folder", "--out", str(out), *args])
    assert res.exit_code == 2, res.output
    assert re.search(message, " ".join(res.output.split())), res.output
    assert not out.exists()


def test_unusable_out_exits_2_with_cli_flags_in_the_message(tmp_path, run):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for out in (afile, afile / "sub"):
        res = _export(run, out)
        assert res.exit_code == 2 and "is a file, not a folder" in res.output, res.output
        assert isinstance(res.exception, SystemExit)  # a clean exit, not a NotADirectoryError
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "mine.txt").write_text("keep me")
    res = _export(run, busy)
    text = " ".join(res.output.split())
    assert res.exit_code == 2 and "pass --resume (resume=True)" in text and "--overwrite" in text, text
    res = _export(run, busy, "--overwrite")
    assert res.exit_code == 2 and "not a ggt export" in res.output
    assert (busy / "mine.txt").read_text() == "keep me"


def test_resume_with_other_options_exits_2(tmp_path, run):
    out = tmp_path / "out"
    assert _export(run, out, "--split", "test=0").exit_code == 0
    res = _export(run, out, "--split", "test=2", "--resume")
    assert res.exit_code == 2 and "other options" in res.output, res.output
    assert "--overwrite (overwrite=True)" in " ".join(res.output.split())


def test_usage_errors_are_still_export_errors_for_the_python_api(tmp_path, run):
    with pytest.raises(ExportUsageError):
        export(run, "folder", tmp_path / "o", shard_size=0)
    with pytest.raises(ExportError):
        export(run, "zip", tmp_path / "o")  # type: ignore[arg-type]


def test_refused_split_keeps_the_earlier_export_on_overwrite(tmp_path, run):
    out = tmp_path / "out"
    export(run, "folder", out, split="test=0")
    with pytest.raises(ExportUsageError, match="leave train empty"):
        export(run, "folder", out, split="test=100", overwrite=True)
    assert verify(out).ok


def test_empty_export_says_why(tmp_path):
    run, _ = make_run(tmp_path, {"haze": 3}, decision="review")
    s = export(run, "folder", tmp_path / "out")
    assert s.pairs == 0
    assert any("3 undecided pairs were left out" in n and "--include undecided" in n for n in s.notes), (
        s.notes
    )
    res = _export(run, tmp_path / "cli")
    assert res.exit_code == 0 and "--include undecided" in " ".join(res.output.split()), res.output


def test_empty_run_says_run_synth(tmp_path):
    run, _ = make_run(tmp_path, {})
    s = export(run, "folder", tmp_path / "out")
    assert s.pairs == 0 and any("ggt synth" in n for n in s.notes), s.notes


@pytest.mark.parametrize("fmt", ["folder", "webdataset"])
def test_resume_rewrites_a_deleted_file_of_a_done_shard(tmp_path, run, fmt):
    out = tmp_path / "out"
    export(run, fmt, out, split="test=0", shard_size=2)
    # A shard's own file (not the card, which every run of _finish writes again).
    victim = sorted(p for p in (out / "train").rglob("*") if p.suffix in (".png", ".tar"))[0]
    victim.unlink()
    assert victim.relative_to(out).as_posix() in verify(out).missing
    s = export(run, fmt, out, split="test=0", shard_size=2, resume=True)
    assert victim.is_file()
    assert s.shards_resumed == s.shards - 1 and any("written again" in n for n in s.notes), s
    assert verify(out).ok


def test_linked_files_are_read_only_and_the_summary_says_so(tmp_path, run):
    s = export(run, "folder", tmp_path / "ln", split="test=0")
    exported = sorted((tmp_path / "ln" / "train" / "gt").iterdir())
    for path in exported:
        assert not path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH), oct(
            path.stat().st_mode
        )
    assert any("hard links" in n and "read-only" in n and "link=False" in n for n in s.notes), s.notes
    if os.geteuid() != 0:  # root writes through any mode bits
        with pytest.raises(PermissionError):
            open(exported[0], "r+b")  # noqa: SIM115
    # A copy export leaves its files writable and says nothing about links.
    s = export(run, "folder", tmp_path / "cp", split="test=0", link=False)
    assert (tmp_path / "cp" / "train" / "gt" / exported[0].name).stat().st_mode & stat.S_IWUSR
    assert not any("hard links" in n for n in s.notes)


# -- verify ----------------------------------------------------------------------------------------------


def test_verify_a_path_that_is_no_export_exits_2_with_the_reason(tmp_path):
    (tmp_path / "empty").mkdir()
    for path, reason in ((tmp_path / "nope", "no such folder"), (tmp_path / "empty", f"no {MANIFEST}")):
        rep = verify(path)
        assert not rep.found and not rep.ok and reason in rep.notes[0]
        res = runner.invoke(app, ["verify", str(path)])
        assert res.exit_code == 2 and reason in res.output, res.output


def test_verify_reports_malformed_manifest_lines(tmp_path, run):
    out = tmp_path / "out"
    export(run, "folder", out, split="test=0")
    with open(out / MANIFEST, "a") as fh:
        fh.write("not a manifest line\n")
    n = len((out / MANIFEST).read_text().splitlines())
    rep = verify(out)
    assert rep.malformed == [n] and not rep.missing and not rep.ok
    res = runner.invoke(app, ["verify", str(out)])
    assert res.exit_code == 1 and f"malformed manifest line {n}" in res.output and "missing" not in res.output


@pytest.mark.parametrize("entry", ["ABS", "../outside.txt", "train/../../outside.txt", "escape/outside.txt"])
def test_verify_never_follows_entries_outside_the_export(tmp_path, run, entry):
    out = tmp_path / "out"
    export(run, "folder", out, split="test=0")
    target = tmp_path / "outside.txt"
    target.write_text("not part of the dataset")
    (out / "escape").symlink_to(tmp_path, target_is_directory=True)
    rel = str(target) if entry == "ABS" else entry
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    with open(out / MANIFEST, "a") as fh:
        fh.write(f"{digest}  {rel}\n")
    rep = verify(out)
    assert rep.outside == [rel] and not rep.ok
    res = runner.invoke(app, ["verify", str(out)])
    assert res.exit_code == 1 and "outside the export" in res.output, res.output
