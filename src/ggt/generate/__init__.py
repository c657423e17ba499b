"""Generators: restore one LQ photo into an HQ target.

Two kinds, both chosen by name from a registry:

- local generators (``classical``, ``diffusers``): typed ``Options`` and ``restore(img, report) -> (image, info)``, run on
  the process pool::

      gen = create_generator("classical", strength=0.8)
      hq, info = gen.restore(lq, report)  # info["operators"]: what ran, with its parameters

- API generators (``gemini``, ``openai``, ``openai-compatible``): async ``generate(png_bytes, prompt)``,
  driven by the engine (cache, retries, rate limits, budget). Their modules (and vendor SDKs) are imported
  on first use::

      gen = create_api_generator("gemini", model="gemini-2.5-flash-image")
      image = await gen.generate(png, prompt)
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from ggt.generate.classical import ClassicalGenerator, ClassicalOptions
from ggt.generate.diffusers_gen import DiffusersGenerator

# Local generators: `restore(img, report[, prompt]) -> (image, info)`, run in the process pool.
GENERATORS: dict[str, type[Any]] = {"classical": ClassicalGenerator, "diffusers": DiffusersGenerator}

API_GENERATORS: dict[str, str] = {
    "gemini": "ggt.generate.gemini:GeminiGenerator",
    "openai": "ggt.generate.openai_images:OpenAIImagesGenerator",
    "openai-compatible": "ggt.generate.openai_images:OpenAICompatibleImagesGenerator",
}


def available_generators() -> list[str]:
    return sorted([*GENERATORS, *API_GENERATORS])


def _unknown(type: str) -> ValueError:
    return ValueError(f"unknown generator {type!r}; valid generators: {', '.join(available_generators())}")


def create_generator(type: str, **kwargs: Any) -> Any:
    """A local generator by registry name, its options validated from ``kwargs``."""
    try:
        cls = GENERATORS[type]
    except KeyError:
        raise _unknown(type) from None
    return cls(cls.Options(**kwargs))


def api_generator_class(type: str) -> Any:
    """The ``APIGenerator`` subclass registered as ``type`` (its module imported on first use)."""
    try:
        module, _, attr = API_GENERATORS[type].partition(":")
    except KeyError:
        raise _unknown(type) from None
    return getattr(import_module(module), attr)


def create_api_generator(type: str, **kwargs: Any) -> Any:
    """An API generator by registry name (``APIGenerator``), options validated from ``kwargs``."""
    return api_generator_class(type).create(**kwargs)


__all__ = [
    "API_GENERATORS",
    "GENERATORS",
    "ClassicalGenerator",
    "ClassicalOptions",
    "available_generators",
    "create_api_generator",
    "create_generator",
]
