"""Rich progress bars for the steps a user waits for (embedding, fine-tuning), as callbacks the stages accept.

The stages take plain callbacks (`Callable[[int], None]` for counts, `Callable[[FineTuneStatus], None]` for
training), so they stay free of any UI; the CLI, flows and benchmarks wrap them with these bars.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

if TYPE_CHECKING:
    from recsys.encoder.finetune import FineTuneStatus


def _progress(console: Console | None, *extra: TextColumn) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        *extra,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


@contextmanager
def count_bar(description: str, total: int, *, console: Console | None = None) -> Iterator[Callable[[int], None]]:
    """A bar over `total` units; the yielded callback advances it (e.g. texts embedded)."""
    with _progress(console, TextColumn("{task.fields[rate]}")) as bar:
        task = bar.add_task(description, total=total, rate="")

        def advance(n: int) -> None:
            bar.advance(task, n)
            speed = bar.tasks[task].speed
            if speed:
                bar.update(task, rate=f"{speed:,.0f}/s")

        yield advance


@contextmanager
def training_bar(description: str, *, console: Console | None = None) -> Iterator[Callable[[FineTuneStatus], None]]:
    """A bar over optimisation steps showing loss, validation loss and pairs/s."""
    with _progress(console, TextColumn("{task.fields[info]}")) as bar:
        task = bar.add_task(description, total=None, info="")

        def update(status: FineTuneStatus) -> None:
            info = f"loss {status.loss:.3f} | {status.pairs_per_second:,.1f} pairs/s"
            if status.val_loss is not None:
                info += f" | val {status.val_loss:.3f}"
            bar.update(task, completed=status.step, total=status.total_steps, info=info)

        yield update


@contextmanager
def steps_bar(description: str, *, console: Console | None = None) -> Iterator[Callable[[int, int, float], None]]:
    """A bar over a fixed number of optimisation steps showing the loss (the collaborative head's callback)."""
    with _progress(console, TextColumn("{task.fields[info]}")) as bar:
        task = bar.add_task(description, total=None, info="")

        def update(step: int, total: int, loss: float) -> None:
            bar.update(task, completed=step, total=total, info=f"loss {loss:.4f}")

        yield update
