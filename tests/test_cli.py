import json

from typer.testing import CliRunner

from fixtures import badfiles as bf
from ggt.cli import app

runner = CliRunner()


def test_demo_builds_a_run_with_every_category(tmp_path):
    res = runner.invoke(app, ["demo", "--out", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout)
    cats = result["status"]["categories"]
    assert set(cats) == {"social_media", "old_photo", "rain", "haze", "snow", "low_light", "unknown"}
    assert sum(cats.values()) == 16 and result["ingest"]["failed"] == 0
    again = runner.invoke(app, ["demo", "--out", str(tmp_path), "--json"])
    assert json.loads(again.stdout)["ingest"]["already_done"] == 16


def test_degrade_verb_writes_images_and_labels_and_reports_bad_files(tmp_path):
    src = tmp_path / "clean"
    src.mkdir()
    (src / "a.png").write_bytes(bf.save(bf.photo("coffee"), "PNG"))
    (src / "broken.jpg").write_bytes(b"nope")
    res = runner.invoke(
        app, ["degrade", "--preset", "haze", "--in", str(src), "--out", str(tmp_path / "o"), "--json"]
    )
    assert res.exit_code == 1
    summary = json.loads(res.stdout)
    assert summary["written"] == 1 and summary["failed"][0]["file"] == "broken.jpg"
    labels = [json.loads(line) for line in (tmp_path / "o" / "labels.jsonl").read_text().splitlines()]
    assert labels[0]["preset"] == "haze" and labels[0]["severity"]["haze"] > 0
    res = runner.invoke(app, ["degrade", "--preset", "fog", "--in", str(src), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "valid presets" in res.stderr


def test_degrade_verb_skips_finished_images_and_names_ignored_files(tmp_path):
    src = tmp_path / "clean"
    src.mkdir()
    for name in ("a", "b"):
        (src / f"{name}.png").write_bytes(bf.save(bf.photo("coffee"), "PNG"))
    (src / "notes.txt").write_text("not a photo")
    args = ["degrade", "--preset", "rain", "--in", str(src), "--out", str(tmp_path / "o"), "--seed", "4"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0 and "1 other files ignored" in first.stdout, first.output
    (tmp_path / "o" / "b.png").unlink()  # as if the first run had been killed before b
    again = json.loads(runner.invoke(app, [*args, "--skip-existing", "--json"]).stdout)
    assert (again["written"], again["reused"], again["ignored"]) == (1, 1, 1)
    redo = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    assert (redo["written"], redo["reused"]) == (2, 0)


def test_status_of_a_missing_run_is_a_usage_error(tmp_path):
    res = runner.invoke(app, ["status", "--run", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "not a ggt run" in res.stderr


def test_help_lists_the_verbs():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for verb in ("ingest", "status", "degrade", "config", "demo"):
        assert verb in res.stdout
