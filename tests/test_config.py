import json

import pytest
from typer.testing import CliRunner

from ggt.cli import app
from ggt.config import ConfigError, load_config, normalize_category, parse_overrides

runner = CliRunner()


def test_defaults_validate():
    cfg = load_config()
    assert cfg.ingest.image.max_pixels > 0 and cfg.ingest.near_dup_distance == 6


def test_unknown_key_names_the_key_and_the_file(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("ingest:\n  near_dup_distanse: 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and "ingest.near_dup_distanse" in str(info.value)
    assert "unknown key" in str(info.value)


def test_mistyped_value_names_the_key(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("ingest:\n  image:\n    max_pixels: lots\n")
    with pytest.raises(ConfigError, match=r"ingest\.image\.max_pixels"):
        load_config(path)


def test_backend_options_are_checked_by_the_chosen_backend_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"key 'analyze\.vlm_options\.model': Field required"):
        load_config(overrides=["analyze.vlm=gemini"])
    with pytest.raises(ConfigError, match=r"unknown key 'qc\.judge_options\.temprature'"):
        load_config(
            overrides=["qc.judge=openai", "qc.judge_options.model=m", "qc.judge_options.temprature=0"]
        )
    with pytest.raises(ConfigError, match=r"key 'synth\.options\.strength'"):
        load_config(overrides=["synth.options.strength=lots"])
    with pytest.raises(ConfigError, match=r"unknown key 'analyze\.heuristic\.patchnett'"):
        load_config(overrides=["analyze.heuristic.patchnett=false"])
    with pytest.raises(ConfigError, match=r"key 'analyze\.heuristic\.min_severity'"):
        load_config(overrides=["analyze.heuristic.min_severity=2"])
    heuristic = load_config(overrides=["analyze.heuristic.patchnet=false"]).analyze.heuristic
    assert heuristic == {"patchnet": False}
    with pytest.raises(ConfigError, match=r"key 'analyze\.vlm_options\.base_url': Field required"):
        load_config(overrides=["analyze.vlm=openai-compatible", "analyze.vlm_options.model=qwen2.5-vl"])
    # A valid set passes; an API generator's model is `synth.model`, which `ggt synth` asks for itself.
    served = ["analyze.vlm_options.model=qwen2.5-vl", "analyze.vlm_options.base_url=http://127.0.0.1:8000/v1"]
    cfg = load_config(overrides=["analyze.vlm=openai-compatible", *served, "synth.generator=gemini"])
    assert cfg.analyze.vlm_options["model"] == "qwen2.5-vl"


def test_bad_yaml_and_wrong_top_level(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("ingest: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping of sections"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_overrides_apply_on_top_of_the_file(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("ingest:\n  workers: 3\n  image:\n    min_side: 8\n")
    cfg = load_config(path, ["ingest.workers=1", "ingest.image.background=[0, 0, 0]"])
    assert cfg.ingest.workers == 1 and cfg.ingest.image.min_side == 8
    assert cfg.ingest.image.background == (0, 0, 0)
    assert parse_overrides(["a.b=2", "a.c=x"]) == {"a": {"b": 2, "c": "x"}}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_overrides(["ingest.workers"])
    with pytest.raises(ConfigError, match="--set"):
        load_config(None, ["ingest.wrkers=1"])


def test_category_names_are_normalised():
    assert normalize_category("Low-Light") == "low_light"
    assert normalize_category("old photos") == "old_photo"
    assert normalize_category("foggy") == "haze"
    assert normalize_category("holiday") is None


def test_cli_schema_and_show(tmp_path):
    res = runner.invoke(app, ["config", "schema"])
    assert res.exit_code == 0
    schema = json.loads(res.stdout)
    assert schema["additionalProperties"] is False and "ingest" in schema["properties"]
    res = runner.invoke(app, ["config", "show", "--set", "ingest.workers=2", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["ingest"]["workers"] == 2
    res = runner.invoke(app, ["config", "show", "--set", "ingest.nope=2"])
    assert res.exit_code == 2 and "ingest.nope" in res.stderr
    res = runner.invoke(app, ["config", "show", "--run", str(tmp_path)])
    assert res.exit_code == 2 and "not a ggt run" in res.stderr
