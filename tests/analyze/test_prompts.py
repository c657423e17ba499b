"""Adaptive and fixed prompts, template overrides, and the VLM instruction and prompt finishing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ggt.analyze.prompts import (
    FIXED_PROMPT,
    build_prompt,
    finalize_vlm_prompt,
    preservation_rules,
    vlm_instruction,
    vlm_response_schema,
)
from ggt.analyze.report import Degradation, DegradationReport, VLMAnalysis


def _report(category: str = "rain", **sev: float) -> DegradationReport:
    return DegradationReport(
        category=category,  # type: ignore[arg-type]
        degradations=[Degradation(type=k, severity=v) for k, v in sev.items()],  # type: ignore[arg-type]
    )


RAIN = _report("rain", rain=0.7, jpeg=0.2)
OLD = _report("old_photo", sepia=0.9, scratches=0.4, film_grain=0.3)
CLEAN = _report("clean")


def test_adaptive_prompt_names_exactly_the_degradations_found() -> None:
    p = build_prompt(RAIN)
    assert "rain streaks" in p and "JPEG" in p
    assert "haze" not in p.lower() and "noise" not in p.lower() and "sepia" not in p.lower()
    # Strongest first, with severity in words and numbers.
    assert p.index("rain streaks") < p.index("JPEG")
    assert "strong, severity 0.70" in p and "light, severity 0.20" in p
    o = build_prompt(OLD)
    assert "sepia" in o and "scratches" in o and "film grain" in o and "rain streaks" not in o


def test_adaptive_prompt_states_the_preservation_rules() -> None:
    for report in (RAIN, OLD, CLEAN):
        p = build_prompt(report).lower()
        for word in ("content", "layout", "geometry", "text", "faces", "colours", "framing", "add nothing"):
            assert word in p, (word, p)


def test_clean_prompt_asks_for_no_change() -> None:
    assert "unchanged" in build_prompt(CLEAN)


def test_fixed_mode_is_identical_across_images() -> None:
    prompts = {build_prompt(r, mode="fixed") for r in (RAIN, OLD, CLEAN)}
    assert prompts == {FIXED_PROMPT}


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="prompt mode"):
        build_prompt(RAIN, mode="creative")  # type: ignore[arg-type]


def test_template_override_from_a_path(tmp_path: Path) -> None:
    tpl = tmp_path / "mine.j2"
    tpl.write_text(
        "FIX {{ category }}:{% for d in found %} {{ d.type }}={{ d.level }}{% endfor %} | {{ rules|length }}"
    )
    p = build_prompt(RAIN, template=tpl)
    assert p.startswith("FIX rain: rain=strong jpeg=light | ")
    assert build_prompt(RAIN, template=str(tpl)) == p  # str paths work too


def test_rules_template_override(tmp_path: Path) -> None:
    rules = tmp_path / "rules.j2"
    rules.write_text("Only rule.\n")
    assert preservation_rules(RAIN, rules) == ["Only rule."]
    assert "Only rule." in build_prompt(RAIN, rules_template=rules)


def test_missing_template_path_gives_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.j2"
    with pytest.raises(FileNotFoundError, match=r"prompt template not found: .*nope\.j2"):
        build_prompt(RAIN, template=missing)
    with pytest.raises(FileNotFoundError, match=r"VLM instruction template not found"):
        vlm_instruction(template=missing)


def test_template_with_an_undefined_name_fails(tmp_path: Path) -> None:
    tpl = tmp_path / "typo.j2"
    tpl.write_text("{{ categroy }}")
    with pytest.raises(Exception, match="categroy"):
        build_prompt(RAIN, template=tpl)


def test_template_syntax_error_names_the_file(tmp_path: Path) -> None:
    tpl = tmp_path / "bad.j2"
    tpl.write_text("{% for %}")
    with pytest.raises(ValueError, match=r"bad\.j2"):
        build_prompt(RAIN, template=tpl)


def test_vlm_instruction_asks_for_json_and_a_prompt() -> None:
    text = vlm_instruction()
    assert "JSON" in text and '"prompt"' in text
    for name in ("social_media", "old_photo", "low_light", "clean", "motion_blur", "scratches"):
        assert name in text
    schema = vlm_response_schema()
    assert set(schema["properties"]) == {"category", "degradations", "scene", "prompt"}
    assert json.dumps(schema, separators=(",", ":")) in text


def test_vlm_answer_round_trip() -> None:
    ans = VLMAnalysis.model_validate_json(
        '{"category":"haze","degradations":[{"type":"haze","severity":0.5}],"scene":"a city","prompt":"Dehaze."}'
    )
    rep = ans.to_report("gemini", "gemini-x")
    assert rep.category == "haze" and rep.analyzer == "gemini" and rep.degradations[0].severity == 0.5


def test_finalize_appends_rules_to_vlm_prompt() -> None:
    out = finalize_vlm_prompt("Remove the rain streaks gently.", RAIN)
    assert out.startswith("Remove the rain streaks gently.")
    for rule in preservation_rules(RAIN):
        assert rule in out
    # Not repeated when the VLM already quoted a rule verbatim.
    first = preservation_rules(RAIN)[0]
    assert finalize_vlm_prompt(f"Derain. {first}", RAIN).count(first) == 1


def test_finalize_falls_back_to_adaptive_prompt() -> None:
    assert finalize_vlm_prompt("   ", RAIN) == build_prompt(RAIN)
