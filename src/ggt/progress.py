"""Rich progress bars for long work: counts, rate, elapsed, ETA (and money, for paid stages)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

ProgressFn = Callable[..., None]
"""`update(done, total, spent_usd=None, status=None)`: paid stages pass the money spent so far; `status`
(a short line, e.g. a batch job's state) replaces the bar's description after its label."""


class RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:.1f}/s", style="progress.data.speed")


@contextmanager
def progress_bar(label: str, console: Console, enabled: bool = True) -> Iterator[ProgressFn]:
    """Yields `update(done, total)`; a no-op when disabled (e.g. under --json)."""
    if not enabled:
        yield lambda done, total, spent_usd=None, status=None: None
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[spent]}", style="bold green"),
    )
    with Progress(*columns, console=console) as bar:
        # Shown from the first update: a command refused before any work (a config error) leaves no
        # empty "0/?" bar above its error message.
        task = bar.add_task(label, total=None, spent="", visible=False)

        def update(done: int, total: int, spent_usd: float | None = None, status: str | None = None) -> None:
            fields: dict[str, Any] = {} if spent_usd is None else {"spent": f"${spent_usd:,.2f}"}
            if status is not None:  # e.g. batch mode's "batch 1/3 batches/x: JOB_STATE_RUNNING"
                fields["description"] = f"{label} · {status}"
            bar.update(task, completed=done, total=total, visible=True, **fields)

        yield update
