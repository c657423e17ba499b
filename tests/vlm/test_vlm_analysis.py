"""analyze_image, the heuristic backend, and the registry."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import BaseModel
from vlm_helpers import VALID_ANALYSIS, gemini, openai, run

from fixtures.stubs import StubServer
from ggt.analyze.report import Degradation, DegradationReport
from ggt.vlm import (
    HeuristicAnalysis,
    VLMAnalysis,
    VLMConfigError,
    VLMResult,
    analyze_image,
    analyze_image_sync,
    available_vlms,
    create_vlm,
    vlm_class,
)

INSTRUCTION = "Analyse this photo and write a restoration prompt."


@pytest.mark.parametrize("factory", [gemini, openai], ids=["gemini", "openai"])
def test_analyze_image_with_an_api_backend(factory, stub: StubServer, image: np.ndarray) -> None:
    answer = {
        **VALID_ANALYSIS,
        # Duplicates are merged at the worst severity; unknown extra keys are ignored.
        "degradations": [
            {"type": "noise", "severity": 0.2},
            {"type": "rain", "severity": 0.7},
            {"type": "noise", "severity": 0.4},
        ],
        "confidence": 0.9,
    }
    stub.reply_text(json.dumps(answer))
    client = factory(stub)
    report, prompt, result = run(analyze_image(client, image, INSTRUCTION))

    assert isinstance(report, DegradationReport) and isinstance(result, VLMResult)
    assert report.category == "rain"
    assert report.degradations == [
        Degradation(type="noise", severity=0.4),
        Degradation(type="rain", severity=0.7),
    ]
    assert report.scene == "a street at night" and report.measures == {}
    assert report.analyzer == client.name and report.model == client.model
    assert prompt == VALID_ANALYSIS["prompt"]
    assert stub.last().texts == [INSTRUCTION]


def test_analyze_image_sync(stub: StubServer, image: np.ndarray) -> None:
    report, prompt, result = analyze_image_sync(gemini(stub), image, INSTRUCTION)
    assert report.analyzer == "gemini" and report.model == "gemini-test" and prompt and result.attempts == 1


def _fake_analyzer(img: np.ndarray) -> DegradationReport:
    return DegradationReport(
        category="low_light",
        degradations=[Degradation(type="low_light", severity=float(1.0 - img.mean()))],
        scene="dark",
        measures={"mean_luma": float(img.mean())},
    )


def test_heuristic_backend_wraps_the_given_analyzer(image: np.ndarray) -> None:
    client = create_vlm(
        "heuristic", analyzer=_fake_analyzer, prompt_builder=lambda r: f"Brighten this {r.category} photo."
    )
    report, prompt, result = analyze_image_sync(client, image * 0.1, INSTRUCTION)
    assert report.category == "low_light"
    assert report.analyzer == "heuristic" and report.model is None
    assert report.measures == {"mean_luma": pytest.approx(float((image * 0.1).mean()))}
    assert prompt == "Brighten this low_light photo."
    assert isinstance(result.data, HeuristicAnalysis)
    assert result.backend == "heuristic" and result.attempts == 1 and result.usage.input_tokens is None
    assert json.loads(result.raw_text)["category"] == "low_light"


class Verdict(BaseModel):
    keep: bool
    reason: str


def test_heuristic_backend_wraps_a_judge(image: np.ndarray) -> None:
    seen = {}

    def judge(images: list[np.ndarray], instruction: str, schema: type[BaseModel]) -> dict:
        seen.update(n=len(images), instruction=instruction, schema=schema)
        return {"keep": True, "reason": "looks fine"}

    client = create_vlm("heuristic", judge=judge)
    result = client.request_json_sync([image, image], "Judge the pair.", Verdict)
    assert result.data == Verdict(keep=True, reason="looks fine")
    assert seen == {"n": 2, "instruction": "Judge the pair.", "schema": Verdict}


def test_heuristic_judge_answers_are_validated(image: np.ndarray) -> None:
    from ggt.vlm import MalformedResponseError

    client = create_vlm("heuristic", judge=lambda *_: {"keep": "maybe"})
    with pytest.raises(MalformedResponseError, match="reason"):
        client.request_json_sync([image], "Judge.", Verdict)


def test_heuristic_without_a_judge_says_so(image: np.ndarray) -> None:
    with pytest.raises(VLMConfigError, match="judge") as info:
        create_vlm("heuristic").request_json_sync([image], "Judge.", Verdict)
    assert info.value.reason == "unsupported"


def test_heuristic_defaults_are_the_project_analyzer_and_prompt_builder() -> None:
    from ggt.analyze import prompts

    photo = np.random.default_rng(0).random((96, 128, 3), dtype=np.float32)
    report, prompt, result = analyze_image_sync(create_vlm("heuristic"), photo, "ignored offline")
    assert report.analyzer == "heuristic" and report.model is None and report.measures
    assert prompt == prompts.build_prompt(report)
    assert result.model is None


def test_real_instruction_through_an_api_backend(stub: StubServer, image: np.ndarray) -> None:
    from ggt.analyze import prompts

    instruction = prompts.vlm_instruction()
    report, _, _ = analyze_image_sync(gemini(stub), image, instruction)
    assert stub.last().texts == [instruction] and report.category == "rain"


def test_heuristic_options_stay_out_of_the_config_schema() -> None:
    schema = vlm_class("heuristic").Options.model_json_schema()
    assert schema.get("properties", {}) == {}


def test_registry() -> None:
    assert available_vlms() == ["gemini", "heuristic", "openai", "openai-compatible"]
    with pytest.raises(VLMConfigError, match=r"unknown VLM backend 'claude'.*gemini"):
        create_vlm("claude")
    with pytest.raises(VLMConfigError, match="temprature") as info:
        create_vlm("openai", model="gpt-test", temprature=0.2)
    assert info.value.reason == "invalid_config"
    with pytest.raises(VLMConfigError, match="timeout_s"):
        create_vlm("gemini", model="g", timeout_s=-1)


def test_backends_are_imported_lazily() -> None:
    import subprocess
    import sys

    code = "import sys, ggt.vlm; print(any(m.startswith(('google.genai', 'openai')) for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_vlm_analysis_schema_is_what_the_models_see() -> None:
    props = VLMAnalysis.model_json_schema()["properties"]
    assert set(props) == {"category", "degradations", "scene", "prompt"}
    assert all(props[name].get("description") for name in props)
