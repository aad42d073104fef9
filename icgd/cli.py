"""The `icgd` command line: list, run, show, sweep, report. It parses, calls `icgd.runs` and
`icgd.reporting`, and prints; the logic lives there (`icgd.run` does what `icgd run` does).

Exit codes: 0 every claim passed; 1 a claim failed or training diverged; 2 bad input (a one-line
`error: <field>: <message>` on stderr, never a traceback; nothing is written); 3 the run crashed
(status `error` in result.json, the traceback in the folder's error.log; `icgd --debug ...`
raises it instead); 130 / 143 / 129 stopped by SIGINT / SIGTERM / SIGHUP (status `interrupted`,
checkpointed at the current step; continue with `--resume`).
"""

from __future__ import annotations

import contextlib
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
_debug = {"on": False}
CRASH_EXIT = 3


@app.callback()
def _options(
    debug: Annotated[
        bool, typer.Option("--debug", help="re-raise a crash with its traceback (status error)")
    ] = False,
) -> None:
    """icgd: transformers that run learning algorithms in their forward pass."""
    _debug["on"] = debug


# Options shared by `run` and `sweep` (one definition each).
Name = Annotated[str, typer.Argument(help="experiment name (see `icgd list`)")]
Preset = Annotated[
    str | None, typer.Option("--preset", help="a named set of overrides, e.g. smoke")
]
ConfigFile = Annotated[Path | None, typer.Option("--config", help="YAML config file")]
Sets = Annotated[list[str] | None, typer.Option("--set", help="override key=value (dotted keys)")]
More = Annotated[
    list[str] | None, typer.Argument(help="more key=value overrides, as in `--set a=1 b=2`")
]
Seed = Annotated[int | None, typer.Option("--seed", help="run seed")]
Out = Annotated[Path | None, typer.Option("--out", help="run folder (new or empty)")]
Device = Annotated[str | None, typer.Option("--device", help="cpu or cuda")]
Dtype = Annotated[
    str | None, typer.Option("--dtype", help="float32 or float64 (theory-grade runs)")
]
Compile = Annotated[
    bool, typer.Option("--compile", help="compile the training step with torch.compile")
]
TensorBoard = Annotated[
    bool,
    typer.Option(
        "--tensorboard",
        help="also write TensorBoard events into <run folder>/tensorboard (icgd[track])",
    ),
]


def _check_device_dtype(device: str | None, dtype: str | None) -> None:
    if device is not None and device not in ("cpu", "cuda"):
        raise InputError("--device", f"unknown device {device!r}; allowed: cpu, cuda")
    if dtype is not None and dtype not in ("float32", "float64"):
        raise InputError("--dtype", f"unknown dtype {dtype!r}; allowed: float32, float64")


@app.command("list")
def list_registered(
    what: Annotated[
        str, typer.Argument(help="experiments (default), tasks, models or algorithms")
    ] = "experiments",
) -> None:
    """List what is registered, icgd's own and plugins', one line each."""
    from icgd.runs.listing import registered

    for line in registered(what):
        console.print(line, highlight=False, soft_wrap=True, markup=False)


@app.command("run")
def run(
    name: Name,
    more: More = None,
    preset: Preset = None,
    config: ConfigFile = None,
    set_: Sets = None,
    seed: Seed = None,
    out: Out = None,
    device: Device = None,
    dtype: Dtype = None,
    compile_: Compile = False,
    tensorboard: TensorBoard = False,
    resume: Annotated[
        Path | None,
        typer.Option("--resume", help="continue an interrupted (or retry a crashed) run folder"),
    ] = None,
    seeds: Annotated[
        str | None,
        typer.Option("--seeds", help="seed ensemble in one process: 0-15, 0,3,7 or 0-3,8"),
    ] = None,
) -> None:
    """Train, analyse and check an experiment's claims; write a run folder; print the verdict.

    With --seeds (or `seeds:` in the config) every seed runs in one process with training stacked
    over the seeds; the folder holds seed{k}/ run folders and the aggregated result.json.
    """
    from icgd.runs.api import prepare

    _check_device_dtype(device, dtype)
    prepared = prepare(
        name,
        [*(set_ or []), *(more or [])],
        preset=preset,
        config=config,
        seed=seed,
        seeds=seeds,
        out=out,
        device=device,
        dtype=dtype,
        compile=True if compile_ else None,
        tensorboard=True if tensorboard else None,
        resume=resume,
    )
    _execute(prepared)


def _execute(prepared) -> None:
    """Run a prepared run folder with a progress bar, draw its figures, print its verdict, and
    exit 0 (passed) or 1."""
    from icgd.reporting.console import draw_with_warnings, progress_bar
    from icgd.reporting.tables import print_result
    from icgd.runs.api import start
    from icgd.runs.figures import draw_figures

    console.print(f"run folder: {prepared.run_dir}", highlight=False)
    if prepared.retrying:
        console.print(f"resume: {prepared.retrying}", highlight=False)
    with _exit_on_stop(), progress_bar(console) as progress:
        loaded = start(prepared, progress)
    if loaded.result.seeds is None:  # an ensemble's figures are per seed, in seed{k}/
        for path in draw_with_warnings(draw_figures, loaded.path, console):
            console.print(f"figure: {path}", highlight=False)
    print_result(loaded.result, console)
    raise typer.Exit(0 if loaded.status == "passed" else 1)


@app.command("identify")
def identify(
    source: Annotated[
        str,
        typer.Argument(help="a run folder, or construction:gd|preconditioned-gd|iterative-newton"),
    ],
    more: More = None,
    algorithms: Annotated[
        str | None, typer.Option("--algorithms", help="candidates, comma-separated (default: all)")
    ] = None,
    prompts: Annotated[
        int | None, typer.Option("--prompts", help="fitting prompts (as many held out)")
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="a sub-model, e.g. stacked")] = None,
    set_: Sets = None,
    seed: Seed = None,
    out: Out = None,
) -> None:
    """Which algorithm a trained model runs, with which fitted parameters, and at which layer:
    `icgd run identify` on SOURCE; writes a run folder that `icgd show` and `icgd report` read.
    """
    from icgd.runs.api import prepare

    overrides = [f"source={source}", *(set_ or []), *(more or [])]
    if algorithms is not None:
        overrides.append(f"algorithms=[{','.join(a.strip() for a in algorithms.split(','))}]")
    overrides += [f"prompts={prompts}"] if prompts is not None else []
    overrides += [f"model={model}"] if model is not None else []
    _execute(prepare("identify", overrides, seed=seed, out=out))


@contextlib.contextmanager
def _exit_on_stop():
    """A signal's stop becomes exit 128 + signal (the parser would make every one 130)."""
    from icgd.runs.signals import exit_code

    try:
        yield
    except KeyboardInterrupt as exc:
        raise typer.Exit(exit_code(exc)) from None


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


@app.command("sweep")
def sweep(
    name: Name,
    grid: Annotated[
        list[str] | None,
        typer.Option("--grid", help="key=v1,v2,... (repeat: the sweep is the product of grids)"),
    ] = None,
    preset: Preset = None,
    config: ConfigFile = None,
    set_: Sets = None,
    seeds: Annotated[
        str | None, typer.Option("--seeds", help="run every point as a seed ensemble")
    ] = None,
    device: Device = None,
    dtype: Dtype = None,
    compile_: Compile = False,
    tensorboard: TensorBoard = False,
    backend: Annotated[str, typer.Option("--backend", help="local or ray")] = "local",
    address: Annotated[
        str | None, typer.Option("--address", help="Ray cluster address (ray backend)")
    ] = None,
    max_concurrent: Annotated[int, typer.Option("--max-concurrent", help="points run at once")] = 1,
    out: Annotated[
        Path | None, typer.Option("--out", help="sweep folder (new, or the same sweep's to resume)")
    ] = None,
    metric: Annotated[
        str | None,
        typer.Option("--metric", help="metric of the summary figure (default: first claim)"),
    ] = None,
) -> None:
    """Run the product of --grid values, one run folder per point; write sweep.json/csv and a
    figure. Rerunning the same command skips finished points and resumes unfinished ones."""
    from icgd.reporting.console import SweepPrinter, draw_with_warnings
    from icgd.reporting.sweep import draw_sweep
    from icgd.runs.api import sweep as run_sweep
    from icgd.runs.figures import draw_figures

    _check_device_dtype(device, dtype)
    printer = SweepPrinter(console, backend, max_concurrent)
    flags = {"compile": True if compile_ else None, "tensorboard": True if tensorboard else None}
    try:
        with _exit_on_stop():
            outcome = run_sweep(
                name, grid or [], set_ or [], backend=backend, address=address,
                max_concurrent=max_concurrent, out=out, seeds=seeds, report=printer.report,
                on_plan=printer.on_plan, preset=preset, config=config, device=device,
                dtype=dtype, **flags,
            )  # fmt: skip
    except typer.Exit:
        console.print("sweep interrupted: rerun the same command to finish it", highlight=False)
        raise
    if seeds is None:  # each point is a normal run folder with its figures
        for point in printer.finished:
            draw_with_warnings(draw_figures, outcome.root / point.folder, console, point.folder)
    console.print(f"tables: {outcome.tables[0]} {outcome.tables[1]}", highlight=False)
    try:
        console.print(f"figure: {draw_sweep(outcome.root, metric)}", highlight=False)
    except InputError as exc:
        console.print(f"warning: figure not drawn ({exc.field}: {exc.message})", highlight=False)
    statuses = list(outcome.statuses.values())
    printer.summary(statuses)
    raise typer.Exit(0 if all(s == "passed" for s in statuses) else 1)


@app.command("report")
def report(
    folders: Annotated[
        list[Path], typer.Argument(help="run folders, seed-ensemble folders or sweep folders")
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="HTML file (default: report.html in the folder; here for several)"
        ),
    ] = None,
    redraw: Annotated[
        bool, typer.Option("--redraw", help="first redraw every run's figures from its files")
    ] = False,
    readme: Annotated[
        Path | None,
        typer.Option(
            "--readme",
            help="also write the experiments' status table (last run of each) between the "
            "<!-- icgd-status:begin/end --> lines of this Markdown file",
        ),
    ] = None,
) -> None:
    """Write one self-contained HTML report (verdicts, metrics, figures, config, provenance; a
    comparison table and overlay plots for several runs or a sweep). Reads the folders only."""
    from icgd.reporting.html import load_sources, write_report
    from icgd.reporting.status import check_readme, update_readme

    runs, _ = load_sources(folders)
    if readme is not None:
        check_readme(readme, runs)  # before anything is written
    from icgd.runs.figures import draw_figures

    path, warnings = write_report(folders, out, redraw=draw_figures if redraw else None)
    for warning in warnings:
        console.print(f"warning: {warning}", highlight=False, soft_wrap=True)
    console.print(f"report: {path}", highlight=False)
    if readme is not None:
        from icgd.experiments.api import EXPERIMENTS

        papers = {name: e.paper for name, e in EXPERIMENTS.items()}
        console.print(f"status table: {update_readme(readme, runs, papers)}", highlight=False)


_INTERRUPTED = (
    "interrupted: unfinished folders record status 'interrupted'; continue a run with --resume "
    "DIR, a sweep by rerunning the same command"
)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app and map every failure to a one-line message and an exit code."""
    from icgd.runs.runner import RunError
    from icgd.runs.signals import exit_code

    command = typer.main.get_command(app)
    err = Console(stderr=True)
    _debug["on"] = False
    try:
        # With standalone_mode=False the parser *returns* the code of a `typer.Exit` raised by a
        # command (and turns Ctrl-C into exit code 130) instead of raising it.
        code = command.main(
            args=argv if argv is not None else sys.argv[1:], prog_name="icgd", standalone_mode=False
        )
    except InputError as exc:
        err.print(
            f"error: {exc.field}: {exc.message}", highlight=False, soft_wrap=True, markup=False
        )
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except (KeyboardInterrupt, typer.Abort) as exc:
        # click turns KeyboardInterrupt (our StopRequested included) into Abort from it
        cause = exc.__cause__ if isinstance(exc.__cause__, KeyboardInterrupt) else exc
        err.print(_INTERRUPTED, highlight=False)
        return exit_code(cause) if isinstance(cause, KeyboardInterrupt) else 130
    except RunError as exc:
        if _debug["on"]:
            raise exc.cause from None
        err.print(
            f"error: the run crashed ({exc}); status 'error' recorded in {exc.run_dir}, "
            f"traceback in {exc.run_dir / 'error.log'}; retry with --resume {exc.run_dir}",
            highlight=False,
            soft_wrap=True,
            markup=False,
        )
        return CRASH_EXIT
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
            err.print(f"error: {message}", highlight=False, soft_wrap=True, markup=False)
        return getattr(exc, "exit_code", 2) or 2
    code = code if isinstance(code, int) and not isinstance(code, bool) else 0
    if code in (129, 130, 143):
        err.print(_INTERRUPTED, highlight=False)
    return code


if __name__ == "__main__":
    sys.exit(main())
