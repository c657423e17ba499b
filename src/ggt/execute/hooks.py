"""Engine parts a stage uses when it runs inside a Ray shard: shared cache, global limiter and budget.

A stage builds its `RequestCache` and `Budget` as always and passes them through `engine_parts`; outside
a shard (the local executor) they come back unchanged and the limiter is None (the engine's own gate).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


@dataclass
class ShardContext:
    """Set by the shard runner around a stage call; the factories get the stage's own objects."""

    cache: Callable[[Any], Any] | None = None  # RequestCache -> RequestCache
    budget: Callable[[Any], Any] | None = None  # Budget -> Budget
    limiter: Callable[[str, Any], Any] | None = None  # Engine(limiter=...)


_active: ShardContext | None = None


@contextmanager
def shard_context(ctx: ShardContext) -> Iterator[ShardContext]:
    global _active
    previous, _active = _active, ctx
    try:
        yield ctx
    finally:
        _active = previous


def engine_parts(cache: Any, budget: Any) -> tuple[Any, Any, Callable[[str, Any], Any] | None]:
    """(cache, budget, limiter) for an Engine: the shard's shared ones inside a shard, else the given ones."""
    ctx = _active
    if ctx is None:
        return cache, budget, None
    return (
        ctx.cache(cache) if ctx.cache else cache,
        ctx.budget(budget) if ctx.budget else budget,
        ctx.limiter,
    )
