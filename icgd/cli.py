"""The `icgd` command line: list, run, show. No logic here: it wires experiments and reporting.

Exit codes: 0 every claim passed, 1 a claim failed or training diverged, 2 bad input
(a one-line `error: <field>: <message>` on stderr, never a traceback), 130 interrupted.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from icgd.core.errors import InputError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="icgd: transformers that run learning algorithms in their forward pass.",
)
console = Console()


@app.command("list")
def list_experiments() -> None:
    """List the registered experiments, one line each."""
    from icgd.core.registry import get, names
    from icgd.experiments import load_all

    load_all()
    for name in names():
        console.print(f"{name:<20} {get(name).summary}", highlight=False, soft_wrap=True)


@app.command("run")
def run(
    name: Annotated[str, typer.Argument(help="experiment name (see `icgd list`)")],
    more: Annotated[
        list[str] | None,
        typer.Argument(help="more key=value overrides, as in `--set loops=5 d=10`"),
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", help="YAML config file")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="override key=value (dotted keys)")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="run seed")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="run folder (new or empty)")] = None,
    device: Annotated[str | None, typer.Option("--device", help="cpu or cuda")] = None,
    resume: Annotated[
        Path | None, typer.Option("--resume", help="continue an unfinished run folder")
    ] = None,
) -> None:
    """Train, analyse and check an experiment's claims; write a run folder; print the verdict."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from icgd.experiments import load_all
    from icgd.experiments.runner import (
        load_resumable,
        prepare_run_dir,
        resolve_config,
        run_experiment,
    )
    from icgd.reporting.figures import draw_figures
    from icgd.reporting.tables import print_result

    load_all()
    set_ = [*(set_ or []), *(more or [])]
    for text in more or []:
        if "=" not in text:
            raise InputError("--set", f"expected key=value, got {text!r}")
    if device is not None and device not in ("cpu", "cuda"):
        raise InputError("--device", f"unknown device {device!r}; allowed: cpu, cuda")
    if seed is not None and seed < 0:
        raise InputError("--seed", f"must be a non-negative integer, got {seed}")
    if resume is not None:
        if config is not None or set_ or seed is not None or device is not None or out is not None:
            raise InputError(
                "--resume",
                "continues a run with its saved config; drop --config/--set/--seed/--device/--out",
            )
        cfg = load_resumable(name, resume)
        run_dir = resume
    else:
        cfg = resolve_config(name, config, set_ or [], seed, device)
        run_dir = prepare_run_dir(name, cfg, out)
    console.print(f"run folder: {run_dir}", highlight=False)

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

        result = run_experiment(name, cfg, run_dir, resume=resume is not None, progress=progress)
    try:
        for path in draw_figures(run_dir):
            console.print(f"figure: {path}", highlight=False)
    except (
        Exception
    ) as exc:  # figures are redrawable from the saved files; never lose a run for them
        console.print(
            f"warning: figures not drawn ({exc.__class__.__name__}: {exc})", highlight=False
        )
    print_result(result, console)
    raise typer.Exit(0 if result.status == "passed" else 1)


@app.command("show")
def show(
    run_dir: Annotated[Path, typer.Argument(help="a run folder")],
    all_metrics: Annotated[
        bool, typer.Option("--all", help="also print list-valued metrics")
    ] = False,
) -> None:
    """Print the verdict table and key metrics of a finished run folder."""
    from icgd.core.results import read_result
    from icgd.reporting.tables import print_result

    if not run_dir.is_dir():
        raise InputError(str(run_dir), "not a folder")
    print_result(read_result(run_dir / "result.json"), console, all_metrics=all_metrics)


_INTERRUPTED = "interrupted: the run folder records status 'interrupted'; continue it with --resume"


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app and map every failure to a one-line message and an exit code."""
    command = typer.main.get_command(app)
    err = Console(stderr=True)
    try:
        # With standalone_mode=False the parser *returns* the code of a `typer.Exit` raised by a
        # command (and turns Ctrl-C into exit code 130) instead of raising it.
        code = command.main(
            args=argv if argv is not None else sys.argv[1:], prog_name="icgd", standalone_mode=False
        )
    except InputError as exc:
        err.print(f"error: {exc.field}: {exc.message}", highlight=False, soft_wrap=True)
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except (KeyboardInterrupt, typer.Abort):
        err.print(_INTERRUPTED)
        return 130
    except Exception as exc:
        # Usage errors of the CLI parser (unknown option, missing argument, bad type). Matched by
        # shape, not class, because typer vendors its parser in recent releases and uses click in
        # older ones.
        if not hasattr(exc, "format_message"):
            raise
        if type(exc).__name__ == "NoArgsIsHelpError":
            err.print(exc.format_message(), highlight=False)
        else:
            message = " ".join(exc.format_message().split())
            err.print(f"error: {message}", highlight=False, soft_wrap=True)
        return getattr(exc, "exit_code", 2) or 2
    code = code if isinstance(code, int) and not isinstance(code, bool) else 0
    if code == 130:
        err.print(_INTERRUPTED, highlight=False)
    return code


if __name__ == "__main__":
    sys.exit(main())
