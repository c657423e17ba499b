"""The chosen backends' options, checked against their typed `Options` when a run's config is resolved.

Backend options are free-form in the config (`analyze.vlm_options`, `synth.options`, `qc.judge_options`:
each backend has its own fields), so the config schema cannot check them. Checked only when a backend
is built, a typo failed late: a local generator's bad option failed every item of the run one by one,
and the run's config.yaml had already saved the typo, which every later command of the run then read.
Checked here, before the config is saved, it fails like an unknown config key: at once, naming the file
and the dotted key.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from ggt.config import ConfigError, GGTConfig, format_validation_error


def check_backend_options(cfg: GGTConfig, source: str) -> None:
    """Raise `ConfigError` naming `source` and each bad key if a chosen backend rejects its options."""
    from ggt.generate import API_GENERATORS, GENERATORS, api_generator_class
    from ggt.vlm import vlm_class

    if cfg.analyze.heuristic:  # whatever `analyze.vlm` is now: a later `--vlm heuristic` reads them
        from ggt.analyze.heuristic import HeuristicConfig

        _check(HeuristicConfig, cfg.analyze.heuristic, "analyze.heuristic", source)
    if cfg.analyze.vlm != "heuristic":
        _check(vlm_class(cfg.analyze.vlm).Options, cfg.analyze.vlm_options, "analyze.vlm_options", source)
    if cfg.qc.judge != "heuristic":
        _check(vlm_class(cfg.qc.judge).Options, cfg.qc.judge_options, "qc.judge_options", source)
    synth = cfg.synth
    if synth.generator in GENERATORS:
        options_model = GENERATORS[synth.generator].Options
        data = dict(synth.options)
        if synth.model and "model" in options_model.model_fields:
            data.setdefault("model", synth.model)  # as `--model` reaches a local generator
        _check(options_model, data, "synth.options", source)
    elif synth.generator in API_GENERATORS:
        options_model = api_generator_class(synth.generator).Options
        # The model is `synth.model`; the stage says so itself when it is missing.
        _check(options_model, {**synth.options, "model": synth.model or "unset"}, "synth.options", source)


def _check(options_model: type[BaseModel], data: dict[str, Any], key: str, source: str) -> None:
    try:
        options_model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source, prefix=key)) from None
