"""The `icgd` command line: list, run, show, sweep. No logic: it wires experiments and reporting.

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


def _check_device_dtype(device: str | None, dtype: str | None) -> None:
    if device is not None and device not in ("cpu", "cuda"):
        raise InputError("--device", f"unknown device {device!r}; allowed: cpu, cuda")
    if dtype is not None and dtype not in ("float32", "float64"):
        raise InputError("--dtype", f"unknown dtype {dtype!r}; allowed: float32, float64")


def _check_tensorboard(config) -> None:
    """With `tensorboard: true`, fail early (exit 2) when the optional package is missing."""
    if getattr(config, "tensorboard", False):
        from icgd.training.tensorboard import require_tensorboard

        require_tensorboard("--tensorboard")


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
    dtype: Annotated[
        str | None, typer.Option("--dtype", help="float32 or float64 (theory-grade runs)")
    ] = None,
    compile_: Annotated[
        bool, typer.Option("--compile", help="compile the training step with torch.compile")
    ] = False,
    tensorboard: Annotated[
        bool,
        typer.Option(
            "--tensorboard",
            help="also write TensorBoard events into <run folder>/tensorboard (icgd[track])",
        ),
    ] = False,
    resume: Annotated[
        Path | None, typer.Option("--resume", help="continue an unfinished run folder")
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
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from icgd.experiments import load_all
    from icgd.experiments.runner import (
        load_resumable,
        prepare_run_dir,
        resolve_config,
        run_experiment,
    )
    from icgd.experiments.seeds import parse_seeds, prepare_ensemble_dir, run_seeds
    from icgd.reporting.figures import draw_figures
    from icgd.reporting.tables import print_result

    load_all()
    seed_list = parse_seeds(seeds) if seeds is not None else None
    if seed_list is not None and seed is not None:
        raise InputError("--seeds", "give either --seed or --seeds, not both")
    set_ = [*(set_ or []), *(more or [])]
    for text in more or []:
        if "=" not in text:
            raise InputError("--set", f"expected key=value, got {text!r}")
    _check_device_dtype(device, dtype)
    if seed is not None and seed < 0:
        raise InputError("--seed", f"must be a non-negative integer, got {seed}")
    if resume is not None:
        given = (config, seed, device, dtype, out, seed_list)
        if set_ or compile_ or tensorboard or any(x is not None for x in given):
            raise InputError(
                "--resume",
                "continues a run with its saved config; drop "
                "--config/--set/--seed/--seeds/--device/--dtype/--compile/--tensorboard/--out",
            )
        cfg = load_resumable(name, resume)
        run_dir = resume
        _check_tensorboard(cfg)
    else:
        cfg = resolve_config(
            name,
            config,
            set_ or [],
            seed,
            device,
            dtype,
            compile=True if compile_ else None,
            tensorboard=True if tensorboard else None,
        )
        _check_tensorboard(cfg)
        if seed_list is not None:
            cfg = type(cfg).model_validate(cfg.model_dump(mode="json") | {"seeds": seed_list})
        if cfg.seeds is not None:
            run_dir = prepare_ensemble_dir(name, cfg, out)
        else:
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

        if cfg.seeds is not None:
            result = run_seeds(
                name, cfg, cfg.seeds, run_dir, resume=resume is not None, progress=progress
            )
        else:
            result = run_experiment(
                name, cfg, run_dir, resume=resume is not None, progress=progress
            )
    if cfg.seeds is not None:  # figures are per seed: each seed{k}/ is a normal run folder
        print_result(result, console)
        raise typer.Exit(0 if result.status == "passed" else 1)
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


@app.command("sweep")
def sweep(
    name: Annotated[str, typer.Argument(help="experiment name (see `icgd list`)")],
    grid: Annotated[
        list[str] | None,
        typer.Option("--grid", help="key=v1,v2,... (repeat: the sweep is the product of grids)"),
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", help="base YAML config file")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="base override key=value (dotted keys)")
    ] = None,
    seeds: Annotated[
        str | None, typer.Option("--seeds", help="run every point as a seed ensemble")
    ] = None,
    device: Annotated[str | None, typer.Option("--device", help="cpu or cuda")] = None,
    dtype: Annotated[
        str | None, typer.Option("--dtype", help="float32 or float64 (theory-grade runs)")
    ] = None,
    compile_: Annotated[
        bool, typer.Option("--compile", help="compile the training step with torch.compile")
    ] = False,
    tensorboard: Annotated[
        bool,
        typer.Option(
            "--tensorboard",
            help="also write TensorBoard events into <run folder>/tensorboard (icgd[track])",
        ),
    ] = False,
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
    from icgd.experiments import load_all
    from icgd.experiments.runner import resolve_config
    from icgd.experiments.sweep import (
        check_backend,
        plan_sweep,
        prepare_sweep_dir,
        run_sweep_local,
        write_tables,
    )
    from icgd.reporting.sweep import draw_sweep

    load_all()
    _check_device_dtype(device, dtype)
    check_backend(backend, address, max_concurrent)
    seed_list = None
    if seeds is not None:
        from icgd.experiments.seeds import parse_seeds

        seed_list = parse_seeds(seeds)
    base = resolve_config(
        name,
        config,
        set_ or [],
        None,
        device,
        dtype,
        compile=True if compile_ else None,
        tensorboard=True if tensorboard else None,
    )
    _check_tensorboard(base)
    plan = plan_sweep(name, base, grid or [], seeds=seed_list, out=out)
    prepare_sweep_dir(plan)
    total = len(plan.points)
    console.print(f"sweep folder: {plan.root} ({total} points, {backend})", highlight=False)

    finished_now = []

    def report(point, event: str, status: str, message: str) -> None:
        if event == "finished":
            finished_now.append(point)
        if event == "started" and max_concurrent > 1:
            return
        text = f"[{point.index + 1}/{total}] {point.folder}: {event}"
        text += f" ({status})" if status and event != "error" else ""
        text += f": {message}" if event == "error" else ""
        console.print(text, highlight=False, soft_wrap=True)

    try:
        if backend == "ray":
            from icgd.experiments.sweep_ray import run_sweep_ray

            statuses = run_sweep_ray(
                plan, address=address, max_concurrent=max_concurrent, report=report
            )
        else:
            statuses = run_sweep_local(plan, max_concurrent=max_concurrent, report=report)
    except KeyboardInterrupt:
        write_tables(plan)
        console.print("sweep interrupted: rerun the same command to finish it", highlight=False)
        raise
    json_path, csv_path = write_tables(plan)
    if plan.seeds is None:  # each point is a normal run folder with its figures
        from icgd.reporting.figures import draw_figures

        for point in finished_now:
            try:
                draw_figures(plan.folder(point))
            except Exception as exc:  # redrawable from the saved files; never lose a run for them
                console.print(
                    f"warning: figures of {point.folder} not drawn ({type(exc).__name__}: {exc})",
                    highlight=False,
                )
    console.print(f"tables: {json_path} {csv_path}", highlight=False)
    try:
        console.print(f"figure: {draw_sweep(plan.root, metric)}", highlight=False)
    except InputError as exc:
        console.print(f"warning: figure not drawn ({exc.field}: {exc.message})", highlight=False)
    counts = {s: list(statuses.values()).count(s) for s in dict.fromkeys(statuses.values())}
    console.print("sweep: " + ", ".join(f"{n} {s}" for s, n in counts.items()), highlight=False)
    raise typer.Exit(0 if all(s == "passed" for s in statuses.values()) else 1)


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
    path, warnings = write_report(folders, out, redraw=redraw)
    for warning in warnings:
        console.print(f"warning: {warning}", highlight=False, soft_wrap=True)
    console.print(f"report: {path}", highlight=False)
    if readme is not None:
        from icgd.experiments import papers

        console.print(f"status table: {update_readme(readme, runs, papers())}", highlight=False)


_INTERRUPTED = (
    "interrupted: unfinished folders record status 'interrupted'; continue a run with --resume "
    "DIR, a sweep by rerunning the same command"
)


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
        err.print(
            f"error: {exc.field}: {exc.message}", highlight=False, soft_wrap=True, markup=False
        )
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
            err.print(f"error: {message}", highlight=False, soft_wrap=True, markup=False)
        return getattr(exc, "exit_code", 2) or 2
    code = code if isinstance(code, int) and not isinstance(code, bool) else 0
    if code == 130:
        err.print(_INTERRUPTED, highlight=False)
    return code


if __name__ == "__main__":
    sys.exit(main())
