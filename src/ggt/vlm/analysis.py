"""Degradation analysis through a VLM: the answer's schema and the call that turns it into a report."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from ggt.analyze.report import DegradationReport, VLMAnalysis
from ggt.vlm.base import VLMClient, run_sync
from ggt.vlm.result import VLMResult


class HeuristicAnalysis(VLMAnalysis):
    """The offline backend's answer, which also carries the measures its judgement came from."""

    measures: dict[str, float] = Field(default_factory=dict)


def report_from_analysis(analysis: VLMAnalysis, backend: str, model: str | None) -> DegradationReport:
    return analysis.to_report(backend, model)


async def analyze_image(
    client: VLMClient, img: np.ndarray, instruction: str
) -> tuple[DegradationReport, str, VLMResult[VLMAnalysis]]:
    """Ask `client` about one photo; returns its report, the restoration prompt it wrote, and the call.

    `instruction` comes from `ggt.analyze.prompts.vlm_instruction()`; it is a parameter so the analyze
    stage decides (and caches by) the exact text.
    """
    result = await client.request_json([img], instruction, VLMAnalysis)
    report = report_from_analysis(result.data, client.name, client.model)
    return report, result.data.prompt, result


def analyze_image_sync(
    client: VLMClient, img: np.ndarray, instruction: str
) -> tuple[DegradationReport, str, VLMResult[VLMAnalysis]]:
    """Blocking `analyze_image`."""
    return run_sync(client, analyze_image(client, img, instruction))
