"""The offline backend: answers through local Python callables instead of a model.

It makes the VLM code paths (analyze, judge) runnable with no key and no network, which is what the demo
and most tests need. It is named for what it is: nothing here pretends to be a language model.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import SkipJsonSchema

from ggt.analyze.report import DegradationReport
from ggt.vlm.base import RawReply, VLMClient, VLMOptions, _BadAnswer, validate_answer
from ggt.vlm.errors import MalformedResponseError, VLMConfigError
from ggt.vlm.result import Usage, VLMResult

Analyzer = Callable[[np.ndarray], DegradationReport]
PromptBuilder = Callable[[DegradationReport], str]
Judge = Callable[[list[np.ndarray], str, type[BaseModel]], Any]
"""A judge returns an instance of the schema, a dict, or JSON text."""


class HeuristicOptions(VLMOptions):
    # Callables cannot come from YAML; SkipJsonSchema keeps them out of the exported config schema.
    model_config = ConfigDict(
        extra="forbid", frozen=True, arbitrary_types_allowed=True, use_attribute_docstrings=True
    )

    analyzer: SkipJsonSchema[Analyzer | None] = None
    """Default: `ggt.analyze.heuristic.HeuristicAnalyzer().analyze`."""
    prompt_builder: SkipJsonSchema[PromptBuilder | None] = None
    """Default: `ggt.analyze.prompts.build_prompt`."""
    judge: SkipJsonSchema[Judge | None] = None
    """Answers every schema other than the analysis one; none by default."""


class HeuristicVLM(VLMClient):
    name = "heuristic"
    Options: ClassVar[type[VLMOptions]] = HeuristicOptions
    options: HeuristicOptions
    # Deterministic: a corrective retry would give the same answer.
    max_attempts: ClassVar[int] = 1

    def __init__(self, options: HeuristicOptions) -> None:
        super().__init__(options)
        self._analyzer: Analyzer | None = options.analyzer
        self._prompt_builder: PromptBuilder | None = options.prompt_builder

    @property
    def model(self) -> str | None:
        return None

    def _default_analyzer(self) -> Analyzer:
        if self._analyzer is None:
            from ggt.analyze.heuristic import HeuristicAnalyzer  # lazy: it pulls in OpenCV and SciPy

            self._analyzer = HeuristicAnalyzer().analyze
        return self._analyzer

    def _default_prompt_builder(self) -> PromptBuilder:
        if self._prompt_builder is None:
            from ggt.analyze import prompts

            builder = getattr(prompts, "build_prompt", None)
            if builder is None:
                raise VLMConfigError(
                    "no prompt builder: pass prompt_builder=... (ggt.analyze.prompts.build_prompt is missing)",
                    backend=self.name,
                )
            self._prompt_builder = builder
        return self._prompt_builder

    def _answer(self, images: list[np.ndarray], instruction: str, schema: type[BaseModel]) -> Any:
        from ggt.vlm.analysis import HeuristicAnalysis, VLMAnalysis

        if issubclass(schema, VLMAnalysis):
            if len(images) != 1:
                raise VLMConfigError(
                    f"analysis takes exactly one image, got {len(images)}", backend=self.name
                )
            report = self._default_analyzer()(images[0])
            prompt = self._default_prompt_builder()(report)
            return HeuristicAnalysis(
                category=report.category,
                degradations=report.degradations,
                scene=report.scene,
                prompt=prompt,
                measures=report.measures,
            )
        if self.options.judge is None:
            raise VLMConfigError(
                f"the heuristic backend has no answer for {schema.__name__}: pass judge=...",
                reason="unsupported",
                backend=self.name,
            )
        return self.options.judge(images, instruction, schema)

    async def _generate(
        self,
        images: Sequence[np.ndarray],
        instruction: str,
        schema: type[BaseModel],
        json_schema: dict[str, Any],
    ) -> RawReply:
        answer = await asyncio.to_thread(self._answer, list(images), instruction, schema)
        if isinstance(answer, BaseModel):
            return RawReply(text=answer.model_dump_json())
        return RawReply(text=answer if isinstance(answer, str) else json.dumps(answer))

    async def request_json(
        self, images: Sequence[np.ndarray], instruction: str, schema: type[Any]
    ) -> VLMResult[Any]:
        # Overridden so an answer that is already a (sub)class instance is kept as is: the analysis
        # subclass carries measures that a JSON round trip through `schema` would drop.
        started = time.perf_counter()
        answer = await asyncio.to_thread(self._answer, list(images), instruction, schema)
        if isinstance(answer, schema):
            data, raw = answer, answer.model_dump_json()
        else:
            raw = answer if isinstance(answer, str) else json.dumps(answer)
            try:
                data = validate_answer(raw, schema)
            except _BadAnswer as bad:
                raise MalformedResponseError(
                    f"the judge's answer is not a valid {schema.__name__}: {bad.problem}",
                    backend=self.name,
                    raw_text=raw,
                ) from None
        return VLMResult(
            data=data,
            raw_text=raw,
            backend=self.name,
            model=None,
            latency_s=time.perf_counter() - started,
            usage=Usage(),
            attempts=1,
        )
