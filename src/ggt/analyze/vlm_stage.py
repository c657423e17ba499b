"""Analysis by a VLM backend: the VLM writes each photo's report and prompt; the rules are appended.

Calls go through the engine, so they are cached (a rerun or a crash never pays twice), retried on
rate limits and outages, and every attempt and its token usage is recorded.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from ggt.analyze.prompts import FIXED_PROMPT, finalize_vlm_prompt, vlm_instruction
from ggt.analyze.report import VLMAnalysis
from ggt.config import AnalyzeConfig
from ggt.imaging import ImageDecodeError, read_image
from ggt.store import Run


def _client(cfg: AnalyzeConfig):
    from ggt.vlm import create_vlm

    return create_vlm(cfg.vlm, **cfg.vlm_options)


def _instruction(cfg: AnalyzeConfig) -> str:
    return vlm_instruction(
        cfg.instruction_template, cfg.rules_template, schema=VLMAnalysis.model_json_schema()
    )


def _finish(analysis: VLMAnalysis, cfg: AnalyzeConfig, backend: str, model: str | None) -> dict[str, Any]:
    report = analysis.to_report(backend, model)
    if cfg.prompting == "fixed":
        prompt = FIXED_PROMPT
    else:
        prompt = finalize_vlm_prompt(analysis.prompt, report, cfg.rules_template)
    return {
        "report": report.model_dump(mode="json"),
        "prompt": prompt,
        "prompting": cfg.prompting,
        "vlm_prompt": analysis.prompt,
    }


def analyze_with_vlm(
    r: Run, cfg: AnalyzeConfig, paths: dict[str, tuple[str, str]], progress=None, redo: bool = False
) -> Any:
    """Run the VLM over `paths` (item id -> (LQ path, source path)); the engine records every result."""
    from ggt.engine import Engine, Job, Limits, PermanentError, Request, RequestCache, Response, RetryPolicy

    client = _client(cfg)
    instruction = _instruction(cfg)
    params = client.options.model_dump(mode="json", exclude={"api_key_env", "timeout_s", "base_url"})

    def jobs():
        for item_id, (lq_path, _) in paths.items():
            req = Request(
                backend=cfg.vlm, model=client.model or "", prompt=instruction,
                input_bytes=Path(lq_path).read_bytes(), params=params,
            )  # fmt: skip
            yield Job(item_id, "", req)

    async def call(job: Any) -> Response:
        try:
            img = await asyncio.to_thread(read_image, paths[job.item_id][0])
        except ImageDecodeError as exc:
            raise PermanentError(str(exc), reason=exc.reason) from None
        result = await client.request_json([img], instruction, VLMAnalysis)
        usage = {k: v for k, v in result.usage.model_dump().items() if v is not None}
        return Response(data=result.data.model_dump_json().encode(), usage=usage)

    def on_result(job: Any, data: bytes) -> dict[str, Any]:
        analysis = VLMAnalysis.model_validate_json(data)
        return _finish(analysis, cfg, cfg.vlm, client.model)

    def report(done: int, failed: int, total: int, spent: float) -> None:
        if progress:
            progress(done + failed, total)

    engine = Engine(
        r.store, RequestCache(r.cache_dir, r.store), "analyze",
        default_limits=Limits(concurrency=cfg.concurrency), retry=RetryPolicy(max_attempts=cfg.max_attempts),
        on_result=on_result, progress=report, redo=redo,
    )  # fmt: skip

    async def main():
        try:
            return await engine.run(jobs(), call, total=len(paths))
        finally:
            await client.aclose()

    return asyncio.run(main())


def inspect_with_vlm(lq: list[Path], cfg: AnalyzeConfig) -> list[dict[str, Any]]:
    """`ggt inspect` with a VLM: no run, no cache; retryable errors are retried a few times."""
    from ggt.engine import RetryPolicy

    client = _client(cfg)
    instruction = _instruction(cfg)
    policy = RetryPolicy(max_attempts=cfg.max_attempts)
    gate = asyncio.Semaphore(cfg.concurrency)

    async def one(path: Path) -> dict[str, Any]:
        line: dict[str, Any] = {"lq": str(path)}
        try:
            img = await asyncio.to_thread(read_image, path)
        except (ImageDecodeError, OSError) as exc:
            line["error"] = str(exc)
            return line
        import random

        rng = random.Random(str(path))
        for attempt in range(1, cfg.max_attempts + 1):
            try:
                async with gate:
                    result = await client.request_json([img], instruction, VLMAnalysis)
                break
            except Exception as exc:
                if not getattr(exc, "retryable", False) or attempt == cfg.max_attempts:
                    line["error"] = f"{getattr(exc, 'reason', type(exc).__name__)}: {exc}"
                    return line
                await asyncio.sleep(policy.delay(attempt, getattr(exc, "retry_after_s", None), rng))
        done = _finish(result.data, cfg, cfg.vlm, client.model)
        rep = done["report"]
        line.update(
            category=rep["category"], degradations=rep["degradations"], prompt=done["prompt"],
            scene=rep["scene"], analyzer=cfg.vlm, model=client.model,
        )  # fmt: skip
        return line

    async def main():
        try:
            return await asyncio.gather(*(one(p) for p in lq))
        finally:
            await client.aclose()

    return list(asyncio.run(main()))
