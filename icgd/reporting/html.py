"""One self-contained HTML report of run folders, seed-ensemble folders and sweep folders.

    write_report([Path("runs/one-step-gd-…")], Path("report.html"))   # `icgd report DIR… --out F`

Reads the folders only (`result.json`, `metrics.jsonl`, `figures/`, `sweep.json`), so a report is
re-rendered without re-training. The page needs no network: every figure is embedded as a data
URI (the SVG beside each PNG when there is one, else the PNG), the style sheet is inline, and there
is no script.

Per run: the verdict table (claim, statement, measured, expected, tolerance, pass; a pass-rate
column for a seed ensemble, plus a per-seed table), the scalar metrics (list-valued ones folded),
every figure, the resolved config and the provenance. With several runs or a sweep: a comparison
table (one row per run or sweep point: grid values, status, each claim's measured value and
verdict, scalar metrics) and overlay plots (the held-out loss curves of every run; each claim's
measured value per run next to its expected value and tolerance band).
"""

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from icgd.core.errors import InputError
from icgd.core.io import atomic_write_text
from icgd.core.results import Result
from icgd.reporting.markup import (
    escape,
    figure_files,
    figures_html,
    num,
    table,
    tolerance_text,
    verdict_cell,
)
from icgd.reporting.overlays import comparison_html, overlays_html
from icgd.reporting.sources import (
    STATS,
    RunEntry,
    SweepEntry,
    ensemble_stats,
    load_sources,
    redraw_figures,
    seed_dirs,
)
from icgd.reporting.tables import fmt_number

__all__ = ["RunEntry", "SweepEntry", "load_sources", "render_report", "write_report"]

# --- one run --------------------------------------------------------------------------------------


def verdict_html(result: Result) -> str:
    """The verdict table: one body row per claim."""
    rates = result.seeds.claim_pass_rate if result.seeds is not None else None
    headers = ["claim", "statement", "measured", "expected", "tolerance"]
    headers += ["pass rate"] if rates is not None else []
    headers += ["pass"]
    rows = []
    for claim in result.claims:
        cells = [
            f"<td><code>{escape(claim.name)}</code></td>",
            f"<td>{escape(claim.statement)}</td>",
            f'<td class="num">{escape(fmt_number(claim.measured))}</td>',
            f'<td class="num">{escape(fmt_number(claim.expected))}</td>',
            tolerance_text(claim),
        ]
        if rates is not None:
            cells.append(f'<td class="num">{rates.get(claim.name, 0.0):.0%}</td>')
        cells.append(verdict_cell(claim.passed))
        rows.append(f'<tr data-claim="{escape(claim.name)}">{"".join(cells)}</tr>')
    return table(headers, rows, "verdict")


def _metric_row(name: str, value: Any) -> str:
    return f'<tr><td>{escape(name)}</td><td class="num">{escape(num(value))}</td></tr>'


def _status_badge(status: str) -> str:
    return f'<span class="status {escape(status)}">{escape(status)}</span>'


def _metrics_html(result: Result) -> str:
    lists = [(k, v) for k, v in result.metrics.items() if isinstance(v, list)]
    stats = ensemble_stats(result) if result.seeds is not None else {}
    if stats:  # a seed ensemble: one row per metric, its statistics over the seeds as columns
        grouped = {f"{m}.{s}" for m in stats for s in STATS}
        rows = [
            f"<tr><td>{escape(m)}</td>"
            + "".join(f'<td class="num">{escape(num(v[s]))}</td>' for s in STATS)
            + "</tr>"
            for m, v in stats.items()
        ]
        out = table(["metric (over the seeds)", *STATS], rows, "metrics")
        rest = [
            (k, v)
            for k, v in result.metrics.items()
            if k not in grouped and not isinstance(v, list)
        ]
        rows = [
            f'<tr><td>{escape(k)}</td><td class="num">{escape(num(v))}</td></tr>' for k, v in rest
        ]
        out += table(["ensemble", "value"], rows, "metrics") if rows else ""
    else:
        scalars = [(k, v) for k, v in result.metrics.items() if not isinstance(v, list)]
        rows = [
            f'<tr><td>{escape(k)}</td><td class="num">{escape(num(v))}</td></tr>'
            for k, v in scalars
        ]
        out = table(["metric", "value"], rows, "metrics") if rows else "<p>no scalar metrics</p>"
    if lists:
        items = "".join(
            f"<tr><td>{escape(k)}</td><td>{len(v)}</td><td><code>{escape(num(v))}</code></td></tr>"
            for k, v in lists
        )
        out += (
            f"<details><summary>list-valued metrics ({len(lists)})</summary>"
            f"{table(['metric', 'length', 'values (first 6)'], [items])}</details>"
        )
    return out


def _seeds_html(entry: RunEntry) -> str:
    summary = entry.result.seeds
    assert summary is not None
    names = list(summary.claims)
    rows = []
    for i, seed in enumerate(summary.seeds):
        cells = [f"<td>seed{seed}</td>", f"<td>{escape(summary.status[i])}</td>"]
        cells += [verdict_cell(summary.claims[n][i]) for n in names]
        rows.append(f"<tr>{''.join(cells)}</tr>")
    rates = [f'<td class="num">{summary.claim_pass_rate.get(n, 0.0):.0%}</td>' for n in names]
    rows.append(f'<tr class="total"><td>pass rate</td><td></td>{"".join(rates)}</tr>')
    return table(["seed", "status", *names], rows, "seeds")


def _provenance_html(entry: RunEntry) -> str:
    data = entry.result.provenance.model_dump(mode="json")
    data["folder"] = str(entry.path.resolve())
    rows = [f"<tr><td>{escape(k)}</td><td>{escape(num(v))}</td></tr>" for k, v in data.items()]
    return table(["field", "value"], rows, "provenance")


def run_html(entry: RunEntry, anchor: str) -> str:
    """The section of one run or seed-ensemble folder."""
    r = entry.result
    parts = [
        f'<section class="run" id="{anchor}">',
        f"<h2>{escape(entry.label)} {_status_badge(r.status)}</h2>",
        f'<p class="sub">experiment <code>{escape(r.experiment)}</code>'
        + (
            f" · seed ensemble of {len(r.seeds.seeds)} seeds"
            if r.seeds is not None
            else f" · seed {r.provenance.seed}"
        )
        + f" · {escape(r.provenance.device)}/{escape(r.provenance.dtype)}"
        + f" · {r.provenance.wall_seconds:.1f} s</p>",
    ]
    if r.message:
        parts.append(f'<p class="message">{escape(r.message)}</p>')
    parts.append("<h3>verdict</h3>")
    parts.append(verdict_html(r) if r.claims else "<p>no claims checked</p>")
    if r.seeds is not None:
        parts.append("<h3>seeds</h3>" + _seeds_html(entry))
    parts.append("<h3>metrics</h3>" + _metrics_html(r))
    parts.append("<h3>figures</h3>")
    folders = [d / "figures" for d in seed_dirs(entry)] or [entry.path / "figures"]
    shown = next((f for f in folders if figure_files(f)), None)
    if shown is None:
        parts.append(
            '<p class="note">no figures in the folder (draw them from the saved files with '
            "<code>icgd report --redraw</code>)</p>"
        )
    else:
        if r.seeds is not None:
            parts.append(f'<p class="note">figures of {escape(shown.parent.name)}</p>')
        parts.append(f'<div class="figures">{figures_html(shown)}</div>')
    config = yaml.safe_dump(r.config, sort_keys=False, allow_unicode=True)
    parts.append(f'<h3>config</h3><pre class="config">{escape(config)}</pre>')
    parts.append("<h3>provenance</h3>" + _provenance_html(entry))
    parts.append("</section>")
    return "\n".join(parts)


# --- sweeps ---------------------------------------------------------------------------------------


def _pending_rows(sweep: SweepEntry) -> list[dict[str, Any]]:
    have = {p.path.name for p in sweep.points}
    return [
        {
            "label": f"{sweep.label}/{row.get('folder')}",
            "status": row.get("status", "?"),
            "message": row.get("message") or "",
        }
        for row in sweep.table.get("rows", [])
        if row.get("folder") not in have
    ]


def sweep_html(sweep: SweepEntry, anchor: str) -> str:
    grid = "; ".join(
        f"{g['key']} = {', '.join(num(v) for v in g['values'])}"
        for g in sweep.table.get("grid", [])
    )
    parts = [
        f'<section class="sweep" id="{anchor}">',
        f"<h2>sweep {escape(sweep.label)}</h2>",
        f'<p class="sub">experiment <code>{escape(sweep.table.get("experiment", "?"))}</code> · '
        f"{len(sweep.table.get('rows', []))} points · grid: {escape(grid)}"
        + (f" · seeds {escape(sweep.table['seeds'])}" if sweep.table.get("seeds") else "")
        + f" · folder {escape(sweep.path.resolve())}</p>",
        "<h3>points</h3>",
        comparison_html(sweep.points, _pending_rows(sweep)),
    ]
    figures = figures_html(sweep.path / "figures")
    if figures:
        parts.append(f'<h3>sweep figure</h3><div class="figures">{figures}</div>')
    overlays = overlays_html(sweep.points) if len(sweep.points) >= 2 else ""
    if overlays:
        parts.append("<h3>overlays</h3>" + overlays)
    parts.append("</section>")
    return "\n".join(parts)


# --- the page -------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;
max-width:1200px;padding:1em 2em;color:#222;line-height:1.4}
h1{margin-bottom:.2em}h2{border-bottom:2px solid #0072B2;padding-bottom:.2em;margin-top:2em}
h3{margin:1.2em 0 .4em}
.sub,.note{color:#555;font-size:.9em}.message{background:#fff4e0;padding:.4em .6em}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:.85em;margin:.3em 0}
th,td{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.ok{color:#0072B2;font-weight:600}td.bad{color:#D55E00;font-weight:700}td.na{color:#999}
tr.total td{font-weight:600;background:#fafafa}tr.pending td{color:#777}
.status{font-size:.7em;padding:.1em .5em;border-radius:.3em;color:#fff;vertical-align:middle}
.status.passed{background:#0072B2}.status.failed,.status.diverged{background:#D55E00}
.status.interrupted,.status.running{background:#999}.status.error{background:#CC79A7}td.status{background:none;color:inherit;font-size:1em}
.figures{display:flex;flex-wrap:wrap;gap:1em}
figure{margin:0;border:1px solid #eee;padding:.4em;background:#fff}
figure img{display:block;max-width:100%;height:auto}
figcaption{font-size:.8em;color:#555;text-align:center}
pre.config{background:#f7f7f7;padding:.6em;font-size:.8em;max-height:30em;overflow:auto}
nav ul{columns:2;font-size:.9em}
"""


def render_report(runs: list[RunEntry], sweeps: list[SweepEntry], title: str | None = None) -> str:
    """The report page as one HTML string (no external resource)."""
    from icgd.core.version import __version__

    title = title or "icgd report: " + ", ".join(e.label for e in [*runs, *sweeps])
    body = []
    toc = []
    if len(runs) >= 2:
        toc.append('<li><a href="#comparison">comparison of the runs</a></li>')
        body.append('<section id="comparison"><h2>comparison of the runs</h2>')
        body.append(comparison_html(runs))
        overlays = overlays_html(runs)
        body.append(("<h3>overlays</h3>" + overlays) if overlays else "")
        body.append("</section>")
    for i, sweep in enumerate(sweeps):
        anchor = f"sweep-{i}"
        toc.append(f'<li><a href="#{anchor}">sweep {escape(sweep.label)}</a></li>')
        body.append(sweep_html(sweep, anchor))
    entries = [*runs, *(p for s in sweeps for p in s.points)]
    for i, entry in enumerate(entries):
        anchor = f"run-{i}"
        toc.append(
            f'<li><a href="#{anchor}">{escape(entry.label)}</a> '
            f"{_status_badge(entry.result.status)}</li>"
        )
        body.append(run_html(entry, anchor))
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head>\n<body>\n"
        f"<h1>{escape(title)}</h1>\n"
        f'<p class="sub">written by icgd {escape(__version__)} from the saved folders '
        f"(re-render with <code>icgd report</code>; nothing is re-run)</p>\n"
        f"<nav><ul>{''.join(toc)}</ul></nav>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def default_out(paths: Sequence[str | Path]) -> Path:
    """`report.html` inside the one folder given, or in the current folder for several."""
    return Path(paths[0]) / "report.html" if len(paths) == 1 else Path("report.html")


def write_report(
    paths: Sequence[str | Path],
    out: str | Path | None = None,
    *,
    redraw: Callable[[Path], object] | None = None,
    title: str | None = None,
) -> tuple[Path, list[str]]:
    """Read the folders, render the page and write it atomically to `out`; returns the path and
    the warnings of `redraw` (figures that could not be drawn). `redraw`: a function that redraws
    one run folder's figures first (`icgd.runs.figures.draw_figures`; None: keep them)."""
    runs, sweeps = load_sources(paths)
    out = Path(out) if out is not None else default_out(paths)
    if out.is_dir():
        raise InputError("--out", f"{out} is a folder; give a file name such as report.html")
    entries = [*runs, *(p for s in sweeps for p in s.points)]
    warnings = redraw_figures(entries, redraw) if redraw is not None else []
    page = render_report(runs, sweeps, title)
    try:
        return atomic_write_text(out, page), warnings
    except OSError as exc:
        raise InputError("--out", f"cannot write {out} ({exc.strerror or exc})") from None
