"""Seeing a file again: twice in one call, touched, changed, or under another category; and the counts."""

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fixtures import badfiles as bf
from ggt.cli import app
from ggt.ingest import IngestSummary, ingest
from ggt.status import run_status
from ggt.store import Run

runner = CliRunner()


def _photos(folder: Path, **names: str) -> dict[str, Path]:
    """Real scikit-image photos saved as JPEGs by Pillow: file name -> photo name."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for file_name, photo in names.items():
        out[file_name] = folder / f"{file_name}.jpg"
        out[file_name].write_bytes(bf.jpeg(bf.photo(photo)))
    return out


def _sources(run: Path) -> dict[str, dict]:
    with Run.open(run) as r:
        return {row["path"]: dict(row) for row in r.store.query("SELECT * FROM sources")}


def _adds_up(s: IngestSummary) -> bool:
    return s.found == s.new + s.already_done + s.duplicates + s.failed


def test_folder_given_twice_is_ingested_once_and_stays_ok(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _photos(Path("in/photos"), astro="astronaut", coffee="coffee")
    res = runner.invoke(app, ["ingest", "in/photos", "in/photos", "--run", "runs/twice", "--category", "rain",
                              "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert (summary["found"], summary["new"], summary["duplicates"]) == (2, 2, 0)
    assert any("more than once" in n for n in summary["notes"])
    st = json.loads(runner.invoke(app, ["status", "--run", "runs/twice", "--json"]).stdout)
    assert st["sources"] == {"ok": 2}
    rows = _sources(Path("runs/twice"))
    assert rows["in/photos/astro.jpg"]["status"] == "ok"

    # The same files spelled otherwise (./, absolute, through a link) reuse their records.
    os.symlink("in/photos", "linked")
    again = ingest([Path("./in/photos/"), tmp_path / "in/photos", Path("linked")], Path("runs/twice"))
    assert (again.found, again.already_done, again.new, again.duplicates) == (2, 2, 0, 0)
    assert run_status(Path("runs/twice")).sources == {"ok": 2} and len(_sources(Path("runs/twice"))) == 2


def test_touched_or_copied_file_is_already_done_not_a_duplicate(tmp_path):
    files = _photos(tmp_path / "src", astro="astronaut", coffee="coffee")
    run = tmp_path / "run"
    ingest([tmp_path / "src"], run, category="rain")
    st = files["astro"].stat()
    os.utime(files["astro"], ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))  # `touch`
    copy = files["coffee"].read_bytes()
    files["coffee"].unlink()
    files["coffee"].write_bytes(copy)  # `cp` without -p: new inode, new mtime, same bytes
    summary = ingest([tmp_path / "src"], run, category="rain")
    assert (summary.already_done, summary.duplicates, summary.new) == (2, 0, 0) and _adds_up(summary)
    assert run_status(run).sources == {"ok": 2}
    row = _sources(run)[str(files["astro"])]
    assert row["mtime_ns"] == files["astro"].stat().st_mtime_ns  # settled: the next rerun skips it
    assert ingest([tmp_path / "src"], run).already_done == 2


def test_changed_content_points_the_path_at_its_new_content(tmp_path):
    files = _photos(tmp_path / "src", a="astronaut", b="coffee")
    run = tmp_path / "run"
    ingest([tmp_path / "src"], run, category="rain")
    before = {p: row["item_id"] for p, row in _sources(run).items()}
    astro_id = before[str(files["a"])]

    # a.jpg becomes a photo the run has not seen; b.jpg becomes a copy of what a.jpg was.
    astro_bytes = files["a"].read_bytes()
    files["a"].write_bytes(bf.jpeg(bf.photo("rocket")))
    files["b"].write_bytes(astro_bytes)
    os.utime(files["b"], ns=(1, 1))
    summary = ingest([tmp_path / "src"], run, category="rain")
    assert (summary.new, summary.duplicates, summary.already_done) == (1, 1, 0) and _adds_up(summary)
    assert any("changed content" in n and n.startswith("2 ") for n in summary.notes)

    rows = _sources(run)
    a, b = rows[str(files["a"])], rows[str(files["b"])]
    assert a["status"] == "ok" and a["item_id"] not in (astro_id, before[str(files["b"])])
    assert astro_id in a["message"]
    assert b["status"] == "duplicate" and b["item_id"] == astro_id
    assert before[str(files["b"])] in b["message"]
    assert run_status(run).items == 3  # the earlier items stay


def test_self_duplicates_left_by_an_earlier_version_are_repaired_by_the_migration(tmp_path):
    _photos(tmp_path / "src", a="astronaut", b="coffee")
    _photos(tmp_path / "other", c="rocket")
    run = tmp_path / "run"
    ingest([tmp_path / "src", tmp_path / "other"], run)
    with Run.open(run) as r, r.store.transaction() as conn:
        # What the old commit wrote (a and b were their own duplicates), plus a true duplicate: a
        # source pointing at another file's item, which the repair must leave alone.
        conn.execute("UPDATE sources SET status = 'duplicate' WHERE path NOT LIKE '%c.jpg'")
        conn.execute(
            "INSERT INTO sources(path, status, item_id, updated_at) SELECT ?, 'duplicate', id, 0 FROM items LIMIT 1",
            (str(tmp_path / "copy.jpg"),),
        )
        conn.execute("PRAGMA user_version = 3")
    assert run_status(run).sources == {"ok": 3, "duplicate": 1}  # opening the store migrated it
    summary = ingest([tmp_path / "src"], run)
    assert summary.already_done == 2 and summary.duplicates == 0


def test_other_category_on_rerun_is_noted_and_not_applied(tmp_path):
    _photos(tmp_path / "src", a="astronaut", b="coffee", c="rocket")
    run = str(tmp_path / "run")
    assert runner.invoke(app, ["ingest", str(tmp_path / "src"), "--run", run]).exit_code == 0
    res = runner.invoke(app, ["ingest", str(tmp_path / "src"), "--run", run, "--category", "rain"])
    assert res.exit_code == 0
    assert "3 already-ingested photos keep their earlier category (unknown: 3), not rain" in " ".join(
        res.stderr.split()
    )
    assert run_status(tmp_path / "run").categories == {"unknown": 3}
    # Nothing asked for: a flat folder says 'unknown', which is no request, so no note.
    quiet = ingest([tmp_path / "src"], tmp_path / "run")
    assert quiet.already_done == 3 and not any("category" in n for n in quiet.notes)
    same = ingest([tmp_path / "src"], tmp_path / "run", category="unknown")
    assert not any("category" in n for n in same.notes)


def test_empty_folder_is_noted(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("no photos here")
    res = runner.invoke(app, ["ingest", str(tmp_path / "empty"), str(tmp_path / "docs"), "--run",
                              str(tmp_path / "run")])  # fmt: skip
    assert res.exit_code == 0
    err = " ".join(res.stderr.split())
    assert f"no photos found under {tmp_path / 'empty'}" in err
    assert f"no photos found under {tmp_path / 'docs'} (1 other files skipped for their extension)" in err


def test_counts_add_up_with_a_symlink_loop_in_the_walk(tmp_path):
    _photos(tmp_path / "src", a="astronaut", b="coffee", c="rocket")
    (tmp_path / "src" / "bad.jpg").write_bytes(b"not a photo")
    (tmp_path / "src" / "looped").mkdir()
    (tmp_path / "src" / "looped" / "back").symlink_to(tmp_path / "src", target_is_directory=True)
    (tmp_path / "src" / "self.jpg").symlink_to(tmp_path / "src" / "self.jpg")
    summary = ingest([tmp_path / "src"], tmp_path / "run")
    assert (summary.found, summary.new, summary.failed) == (6, 3, 3) and _adds_up(summary)
    assert sorted(f.reason for f in summary.failures) == ["not_an_image", "symlink_loop", "symlink_loop"]


@pytest.mark.parametrize(("target", "reason"), [("self.jpg", "symlink_loop"), ("gone.jpg", "broken_link")])
def test_link_given_as_a_file_argument_says_why_it_cannot_be_followed(tmp_path, target, reason):
    link = tmp_path / "self.jpg"
    link.symlink_to(tmp_path / target)
    summary = ingest([link], tmp_path / "run")
    assert summary.found == summary.failed == 1
    assert [(f.path, f.reason) for f in summary.failures] == [(str(link), reason)]
    assert run_status(tmp_path / "run", errors=True).errors[0].reason == reason
