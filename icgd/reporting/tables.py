"""The verdict table and key metrics of a run, rendered with rich from a `Result`."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from icgd.core.results import Result

TOLERANCE_SYMBOL = {"abs": "±", "rel": "±rel", "at_most": "≤ +", "at_least": "≥ −"}


def fmt_number(x) -> str:
    if x is None:
        return "nan"
    if isinstance(x, list):
        return "[" + ", ".join(fmt_number(v) for v in x[:6]) + (", …]" if len(x) > 6 else "]")
    if isinstance(x, int) and not isinstance(x, bool):
        return str(x)
    x = float(x)
    return f"{x:.4g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.3e}"


def seed_list(seeds: list[int]) -> str:
    if seeds == list(range(seeds[0], seeds[0] + len(seeds))) and len(seeds) > 2:
        return f"{seeds[0]}-{seeds[-1]} ({len(seeds)})"
    return ",".join(map(str, seeds)) + f" ({len(seeds)})"


def verdict_table(result: Result) -> Table:
    table = Table(title=f"{result.experiment}: {result.status.upper()}", title_justify="left")
    rates = result.seeds.claim_pass_rate if result.seeds is not None else None
    columns = ["claim", "measured", "expected", "tolerance", "verdict"]
    if rates is not None:  # a seed ensemble: measured/expected are means over the seeds
        columns.insert(-1, "pass rate")
    for column in columns:
        table.add_column(column, justify="left" if column == "claim" else "right")
    for claim in result.claims:
        verdict = "[green]pass[/]" if claim.passed else "[red]FAIL[/]"
        tol = f"{TOLERANCE_SYMBOL[claim.comparison]}{fmt_number(claim.tolerance)}"
        row = [
            claim.statement,
            fmt_number(claim.measured),
            fmt_number(claim.expected),
            tol,
            verdict,
        ]
        if rates is not None:
            row.insert(-1, f"{rates.get(claim.name, 0.0):.0%}")
        table.add_row(*row)
    return table


def metrics_table(result: Result, keys: list[str] | None = None) -> Table:
    table = Table(title="metrics", title_justify="left")
    table.add_column("name")
    table.add_column("value", justify="right")
    for key in keys or list(result.metrics):
        if key in result.metrics:
            table.add_row(key, fmt_number(result.metrics[key]))
    return table


def print_result(result: Result, console: Console | None = None, all_metrics: bool = False) -> None:
    """Print the verdict table, the key metrics and the provenance line of a run."""
    console = console or Console()
    if result.claims:
        console.print(verdict_table(result))
    keys = (
        None if all_metrics else [k for k, v in result.metrics.items() if not isinstance(v, list)]
    )
    if result.metrics:
        console.print(metrics_table(result, keys))
    p = result.provenance
    if result.error is not None:  # a crash: what it was, and where the traceback is
        console.print(f"error: {result.error.type}: {result.error.message}", highlight=False)
    console.print(
        f"status: {result.status}"
        + (f" ({result.message})" if result.message else "")
        + (
            f" · seeds {seed_list(result.seeds.seeds)}"
            if result.seeds is not None
            else f" · seed {p.seed}"
        )
        + f" · {p.device}/{p.dtype} · {p.wall_seconds:.1f} s"
        + f" · icgd {p.icgd} · torch {p.torch}"
    )
