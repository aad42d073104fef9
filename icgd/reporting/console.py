"""What the command line prints while it works: progress bars, a sweep's point events, and the
figures drawn after a run (a figure that fails is a warning, never a lost run)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

from rich.console import Console

__all__ = ["SweepPrinter", "draw_with_warnings", "progress_bar"]


@contextlib.contextmanager
def progress_bar(console: Console) -> Iterator:
    """A rich progress bar per training task; yields the `(task, step, total, record)` callback."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        tasks: dict[str, int] = {}

        def progress(task: str, step: int, total: int, record: dict) -> None:
            if task not in tasks:
                tasks[task] = bar.add_task(task, total=total, info="")
            loss = record.get("loss")
            info = f"loss {loss:.4g}" if isinstance(loss, float) else ""
            bar.update(tasks[task], completed=step, info=info)

        yield progress


def draw_with_warnings(
    draw_figures: Callable[[Path], list[Path]], run_dir: Path, console: Console, label: str = ""
) -> list[Path]:
    """`draw_figures(run_dir)` (`icgd.runs.figures.draw_figures`); a failure is printed as a
    warning (the figures can be redrawn from the saved files, so a run is never lost for them)."""
    try:
        return draw_figures(run_dir)
    except Exception as exc:
        of = f" of {label}" if label else ""
        console.print(
            f"warning: figures{of} not drawn ({type(exc).__name__}: {exc})",
            highlight=False,
            markup=False,
        )
        return []


class SweepPrinter:
    """`on_plan` and `report` callbacks of `icgd.sweep` that print one line per point event."""

    def __init__(self, console: Console, backend: str, max_concurrent: int) -> None:
        self.console, self.backend, self.max_concurrent = console, backend, max_concurrent
        self.total, self.finished = 0, []

    def on_plan(self, plan) -> None:
        self.total = len(plan.points)
        self.console.print(
            f"sweep folder: {plan.root} ({self.total} points, {self.backend})", highlight=False
        )

    def report(self, point, event: str, status: str, message: str) -> None:
        if event == "finished":
            self.finished.append(point)
        if event == "started" and self.max_concurrent > 1:
            return
        text = f"[{point.index + 1}/{self.total}] {point.folder}: {event}"
        text += f" ({status})" if status and event != "error" else ""
        text += f": {message}" if event == "error" else ""
        self.console.print(text, highlight=False, soft_wrap=True, markup=False)

    def summary(self, statuses: list[str]) -> None:
        counts = {s: statuses.count(s) for s in dict.fromkeys(statuses)}
        line = "sweep: " + ", ".join(f"{n} {s}" for s, n in counts.items())
        self.console.print(line, highlight=False)
