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

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from icgd.core.errors import InputError
from icgd.core.io import atomic_write_text
from icgd.core.results import Claim, Result, read_result
from icgd.reporting.tables import TOLERANCE_SYMBOL, fmt_number

MAX_SVG_BYTES = 2_000_000  # larger SVGs (dense line plots) are embedded as their PNG instead
MAX_OVERLAY_CLAIMS = 12
MAX_OVERLAY_CURVES = 4


@dataclass
class RunEntry:
    """A run folder (single run or seed ensemble) and its `Result`."""

    label: str
    path: Path
    result: Result
    grid: dict[str, Any] = field(default_factory=dict)  # a sweep point's grid values
    sweep: str | None = None  # label of the sweep it belongs to


@dataclass
class SweepEntry:
    """A sweep folder: its `sweep.json` table and the point folders that have a result."""

    label: str
    path: Path
    table: dict[str, Any]
    points: list[RunEntry]


# --- reading the folders --------------------------------------------------------------------------


def _label(path: Path, given: Path) -> str:
    return path.name or str(given)


def load_sources(paths: Sequence[str | Path]) -> tuple[list[RunEntry], list[SweepEntry]]:
    """Classify each path as a run/ensemble folder (`result.json`) or a sweep folder (`sweep.json`)
    and read it; anything else is an `InputError` naming the path."""
    from icgd.reporting.sweep import read_table

    if not paths:
        raise InputError("FOLDER", "give at least one run folder or sweep folder")
    runs: list[RunEntry] = []
    sweeps: list[SweepEntry] = []
    seen: set[Path] = set()
    for given in map(Path, paths):
        if not given.exists():
            raise InputError(str(given), "no such folder")
        if not given.is_dir():
            raise InputError(str(given), "not a folder (give a run folder or a sweep folder)")
        resolved = given.resolve()
        if resolved in seen:
            continue
        seen.add(resolved)
        if (given / "result.json").is_file():
            result = read_result(given / "result.json")
            runs.append(RunEntry(_label(resolved, given), given, result))
        elif (given / "sweep.json").is_file() or (given / "sweep.yaml").is_file():
            table = read_table(given / "sweep.json")
            label = _label(resolved, given)
            keys = [g["key"] for g in table.get("grid", [])]
            points = []
            for row in table.get("rows", []):
                folder = given / str(row.get("folder", ""))
                if row.get("folder") and (folder / "result.json").is_file():
                    try:
                        result = read_result(folder / "result.json")
                    except InputError:
                        continue  # the table row still shows its status
                    grid = {k: row.get(k) for k in keys}
                    points.append(RunEntry(f"{label}/{folder.name}", folder, result, grid, label))
            sweeps.append(SweepEntry(label, given, table, points))
        else:
            raise InputError(
                str(given), "not a run folder or a sweep folder (no result.json or sweep.json)"
            )
    _unique_labels(runs + [p for s in sweeps for p in s.points])
    return runs, sweeps


def _unique_labels(entries: list[RunEntry]) -> None:
    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry.label] = counts.get(entry.label, 0) + 1
    for entry in entries:
        if counts[entry.label] > 1:
            entry.label = str(entry.path)


def _seed_dirs(entry: RunEntry) -> list[Path]:
    if entry.result.seeds is None:
        return []
    return [entry.path / f"seed{s}" for s in entry.result.seeds.seeds]


def redraw_figures(runs: list[RunEntry]) -> list[str]:
    """Redraw every run's figures from its saved files (each seed's for an ensemble); returns a
    warning per folder whose figures could not be drawn (a report is still written)."""
    from icgd.reporting.figures import draw_figures

    warnings = []
    for entry in runs:
        for folder in _seed_dirs(entry) or [entry.path]:
            if not (folder / "result.json").is_file():
                continue
            try:
                draw_figures(folder)
            except Exception as exc:  # redrawable later; never lose the report for one figure
                warnings.append(f"figures of {folder} not drawn ({type(exc).__name__}: {exc})")
    return warnings


# --- small HTML helpers ---------------------------------------------------------------------------


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _img(data: bytes, mime: str, alt: str, caption: str) -> str:
    return (
        f'<figure><img src="{_data_uri(data, mime)}" alt="{_e(alt)}">'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


def _figure_files(folder: Path) -> list[tuple[str, Path, str]]:
    """(name, file, mime) of every figure in `folder`: the SVG of a name when there is one (and it
    is not huge), else its PNG; sorted by name."""
    if not folder.is_dir():
        return []
    stems = sorted({p.stem for p in folder.iterdir() if p.suffix in (".png", ".svg")})
    chosen = []
    for stem in stems:
        svg, png = folder / f"{stem}.svg", folder / f"{stem}.png"
        if svg.is_file() and (svg.stat().st_size <= MAX_SVG_BYTES or not png.is_file()):
            chosen.append((stem, svg, "image/svg+xml"))
        elif png.is_file():
            chosen.append((stem, png, "image/png"))
    return chosen


def _figures_html(folder: Path) -> str:
    return "".join(
        _img(path.read_bytes(), mime, name, f"{name} ({path.suffix.lstrip('.')})")
        for name, path, mime in _figure_files(folder)
    )


def _num(x: Any) -> str:
    if isinstance(x, bool):
        return "true" if x else "false"
    if x is None or isinstance(x, (int, float, list)):
        return fmt_number(x)
    return str(x)


def _table(headers: list[str], rows: list[str], cls: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    cls_attr = f' class="{cls}"' if cls else ""
    return (
        f'<div class="scroll"><table{cls_attr}><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _verdict_cell(passed: bool | None) -> str:
    if passed is None:
        return '<td class="na">–</td>'
    return '<td class="ok">pass</td>' if passed else '<td class="bad">FAIL</td>'


def _tolerance(claim: Claim) -> str:
    return (
        f'<td class="num" title="{_e(claim.rule)}">'
        f"{_e(TOLERANCE_SYMBOL[claim.comparison] + fmt_number(claim.tolerance))}</td>"
    )


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
            f"<td><code>{_e(claim.name)}</code></td>",
            f"<td>{_e(claim.statement)}</td>",
            f'<td class="num">{_e(fmt_number(claim.measured))}</td>',
            f'<td class="num">{_e(fmt_number(claim.expected))}</td>',
            _tolerance(claim),
        ]
        if rates is not None:
            cells.append(f'<td class="num">{rates.get(claim.name, 0.0):.0%}</td>')
        cells.append(_verdict_cell(claim.passed))
        rows.append(f'<tr data-claim="{_e(claim.name)}">{"".join(cells)}</tr>')
    return _table(headers, rows, "verdict")


_STATS = ("mean", "std", "min", "max")


def _ensemble_stats(result: Result) -> dict[str, dict[str, Any]]:
    """A seed ensemble's scalar metrics `m.mean`, `m.std`, `m.min`, `m.max` grouped by `m`."""
    grouped: dict[str, dict[str, Any]] = {}
    for key, value in result.metrics.items():
        base, _, stat = key.rpartition(".")
        if base and stat in _STATS and not isinstance(value, list):
            grouped.setdefault(base, {})[stat] = value
    return {m: v for m, v in grouped.items() if len(v) == len(_STATS)}


def scalar_metrics(result: Result) -> dict[str, Any]:
    """The scalar metrics of a run; for a seed ensemble each metric's mean over the seeds (under
    the metric's own name, so runs and ensembles line up in a comparison) and its counts."""
    if result.seeds is None:
        return {k: v for k, v in result.metrics.items() if not isinstance(v, list)}
    stats = _ensemble_stats(result)
    grouped = {f"{m}.{s}" for m in stats for s in _STATS}
    out = {m: v["mean"] for m, v in stats.items()}
    out |= {
        k: v
        for k, v in result.metrics.items()
        if k not in grouped and not isinstance(v, list) and not k.endswith(".mean")
    }
    return out


def _metrics_html(result: Result) -> str:
    lists = [(k, v) for k, v in result.metrics.items() if isinstance(v, list)]
    stats = _ensemble_stats(result) if result.seeds is not None else {}
    if stats:  # a seed ensemble: one row per metric, its statistics over the seeds as columns
        grouped = {f"{m}.{s}" for m in stats for s in _STATS}
        rows = [
            f"<tr><td>{_e(m)}</td>"
            + "".join(f'<td class="num">{_e(_num(v[s]))}</td>' for s in _STATS)
            + "</tr>"
            for m, v in stats.items()
        ]
        out = _table(["metric (over the seeds)", *_STATS], rows, "metrics")
        rest = [
            (k, v)
            for k, v in result.metrics.items()
            if k not in grouped and not isinstance(v, list)
        ]
        rows = [f'<tr><td>{_e(k)}</td><td class="num">{_e(_num(v))}</td></tr>' for k, v in rest]
        out += _table(["ensemble", "value"], rows, "metrics") if rows else ""
    else:
        scalars = [(k, v) for k, v in result.metrics.items() if not isinstance(v, list)]
        rows = [f'<tr><td>{_e(k)}</td><td class="num">{_e(_num(v))}</td></tr>' for k, v in scalars]
        out = _table(["metric", "value"], rows, "metrics") if rows else "<p>no scalar metrics</p>"
    if lists:
        items = "".join(
            f"<tr><td>{_e(k)}</td><td>{len(v)}</td><td><code>{_e(_num(v))}</code></td></tr>"
            for k, v in lists
        )
        out += (
            f"<details><summary>list-valued metrics ({len(lists)})</summary>"
            f"{_table(['metric', 'length', 'values (first 6)'], [items])}</details>"
        )
    return out


def _seeds_html(entry: RunEntry) -> str:
    summary = entry.result.seeds
    assert summary is not None
    names = list(summary.claims)
    rows = []
    for i, seed in enumerate(summary.seeds):
        cells = [f"<td>seed{seed}</td>", f"<td>{_e(summary.status[i])}</td>"]
        cells += [_verdict_cell(summary.claims[n][i]) for n in names]
        rows.append(f"<tr>{''.join(cells)}</tr>")
    rates = [f'<td class="num">{summary.claim_pass_rate.get(n, 0.0):.0%}</td>' for n in names]
    rows.append(f'<tr class="total"><td>pass rate</td><td></td>{"".join(rates)}</tr>')
    return _table(["seed", "status", *names], rows, "seeds")


def _provenance_html(entry: RunEntry) -> str:
    data = entry.result.provenance.model_dump(mode="json")
    data["folder"] = str(entry.path.resolve())
    rows = [f"<tr><td>{_e(k)}</td><td>{_e(_num(v))}</td></tr>" for k, v in data.items()]
    return _table(["field", "value"], rows, "provenance")


def run_html(entry: RunEntry, anchor: str) -> str:
    """The section of one run or seed-ensemble folder."""
    r = entry.result
    parts = [
        f'<section class="run" id="{anchor}">',
        f'<h2>{_e(entry.label)} <span class="status {_e(r.status)}">{_e(r.status)}</span></h2>',
        f'<p class="sub">experiment <code>{_e(r.experiment)}</code>'
        + (
            f" · seed ensemble of {len(r.seeds.seeds)} seeds"
            if r.seeds is not None
            else f" · seed {r.provenance.seed}"
        )
        + f" · {_e(r.provenance.device)}/{_e(r.provenance.dtype)}"
        + f" · {r.provenance.wall_seconds:.1f} s</p>",
    ]
    if r.message:
        parts.append(f'<p class="message">{_e(r.message)}</p>')
    parts.append("<h3>verdict</h3>")
    parts.append(verdict_html(r) if r.claims else "<p>no claims checked</p>")
    if r.seeds is not None:
        parts.append("<h3>seeds</h3>" + _seeds_html(entry))
    parts.append("<h3>metrics</h3>" + _metrics_html(r))
    parts.append("<h3>figures</h3>")
    folders = [d / "figures" for d in _seed_dirs(entry)] or [entry.path / "figures"]
    shown = next((f for f in folders if _figure_files(f)), None)
    if shown is None:
        parts.append(
            '<p class="note">no figures in the folder (draw them from the saved files with '
            "<code>icgd report --redraw</code>)</p>"
        )
    else:
        if r.seeds is not None:
            parts.append(f'<p class="note">figures of {_e(shown.parent.name)}</p>')
        parts.append(f'<div class="figures">{_figures_html(shown)}</div>')
    config = yaml.safe_dump(r.config, sort_keys=False, allow_unicode=True)
    parts.append(f'<h3>config</h3><pre class="config">{_e(config)}</pre>')
    parts.append("<h3>provenance</h3>" + _provenance_html(entry))
    parts.append("</section>")
    return "\n".join(parts)


# --- comparison of several runs -------------------------------------------------------------------


def comparison_html(entries: list[RunEntry], pending: list[dict[str, Any]] | None = None) -> str:
    """One row per run: label, grid values, experiment, status, each claim's measured value and
    verdict (with the pass rate for an ensemble), the scalar metrics. `pending`: sweep rows without
    a readable result (label, status, message) shown with their status only."""
    grid_keys: list[str] = []
    claim_names: list[str] = []
    metric_names: list[str] = []
    for entry in entries:
        grid_keys += [k for k in entry.grid if k not in grid_keys]
        claim_names += [c.name for c in entry.result.claims if c.name not in claim_names]
        metric_names += [k for k in scalar_metrics(entry.result) if k not in metric_names]
    experiments = {e.result.experiment for e in entries}
    headers = ["run", *grid_keys]
    headers += ["experiment"] if len(experiments) > 1 else []
    headers += ["status", "wall s", *claim_names, *metric_names]
    rows = []
    for entry in entries:
        r = entry.result
        claims = {c.name: c for c in r.claims}
        rates = r.seeds.claim_pass_rate if r.seeds is not None else {}
        cells = [f"<td>{_e(entry.label)}</td>"]
        cells += [f"<td>{_e(_num(entry.grid.get(k)))}</td>" for k in grid_keys]
        cells += [f"<td>{_e(r.experiment)}</td>"] if len(experiments) > 1 else []
        cells += [f'<td class="status {_e(r.status)}">{_e(r.status)}</td>']
        cells += [f'<td class="num">{r.provenance.wall_seconds:.1f}</td>']
        for name in claim_names:
            claim = claims.get(name)
            if claim is None:
                cells.append('<td class="na">–</td>')
                continue
            rate = f" ({rates[name]:.0%})" if name in rates else ""
            cls = "ok" if claim.passed else "bad"
            mark = "✓" if claim.passed else "✗"
            cells.append(
                f'<td class="num {cls}">{_e(fmt_number(claim.measured))} {mark}{rate}</td>'
            )
        values = scalar_metrics(r)
        cells += [
            f'<td class="num">{_e(_num(values[k]))}</td>'
            if k in values
            else '<td class="na">–</td>'
            for k in metric_names
        ]
        rows.append(f"<tr>{''.join(cells)}</tr>")
    for row in pending or []:
        before = len(grid_keys) + (len(experiments) > 1)
        cells = f"<td>{_e(row['label'])}</td>" + "<td></td>" * before
        cells += f"<td>{_e(row['status'])}</td>"
        cells += f'<td colspan="{len(headers) - 2 - before}">{_e(row.get("message", ""))}</td>'
        rows.append(f'<tr class="pending">{cells}</tr>')
    return _table(headers, rows, "comparison")


def _log_if_decades(ax, values: list[float], axis: str = "y") -> None:
    """Log scale on `axis` when the values are positive and span at least a decade."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if finite and min(finite) > 0 and max(finite) >= 10 * min(finite):
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")


def _svg(fig) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    return buffer.getvalue()


def _read_evals(folder: Path) -> list[dict]:
    from icgd.core.figures import read_metrics

    try:
        return [r for r in read_metrics(folder / "metrics.jsonl") if r.get("kind") == "eval"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return []


def _curves_figure(entries: list[RunEntry]) -> bytes | None:
    """The held-out curves (eval records of `metrics.jsonl`) of every run, overlaid, one panel per
    quantity (loss first); None when fewer than two runs have any."""
    import matplotlib.pyplot as plt

    evals = {}
    for entry in entries:
        folder = _seed_dirs(entry)[0] if entry.result.seeds is not None else entry.path
        records = _read_evals(folder)
        if records:
            evals[entry.label] = records
    if len(evals) < 2:
        return None
    keys: list[str] = []
    for records in evals.values():
        for record in records:
            keys += [
                k
                for k, v in record.items()
                if k not in ("step", "kind", "lr") and isinstance(v, (int, float)) and k not in keys
            ]
    keys = sorted(keys, key=lambda k: (k != "loss", keys.index(k)))[:MAX_OVERLAY_CURVES]
    if not keys:
        return None
    fig, axes = plt.subplots(1, len(keys), figsize=(4.6 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        values = []
        for label, records in evals.items():
            points = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", ms=3, label=label)
                values += [p[1] for p in points]
        _log_if_decades(ax, values)
        ax.set(xlabel="training step", ylabel=f"held-out {key}", title=f"{key} over training")
    if len(evals) <= 12:  # beyond that a legend hides the curves; the table names the runs
        axes[0][0].legend(fontsize=7)
    return _svg(fig)


def _band(claim: Claim) -> tuple[float, float]:
    e, t = claim.expected, claim.tolerance
    if claim.comparison == "abs":
        return e - t, e + t
    if claim.comparison == "rel":
        return e - t * abs(e), e + t * abs(e)
    if claim.comparison == "at_most":
        return -math.inf, e + t
    return e - t, math.inf


def _claims_figure(entries: list[RunEntry]) -> bytes | None:
    """Per claim, every run's measured value (markers; filled = pass, cross = fail) next to the
    expected value (black line, "theory") and the band the tolerance allows (shaded)."""
    import matplotlib.pyplot as plt

    from icgd.core.style import OKABE_ITO

    names: list[str] = []
    for entry in entries:
        names += [c.name for c in entry.result.claims if c.name not in names]
    names = names[:MAX_OVERLAY_CLAIMS]
    if not names:
        return None
    cols = min(3 if len(entries) <= 8 else 1, len(names))  # many runs: one wide panel a row
    rows = math.ceil(len(names) / cols)
    width = min(max(3.6, 0.45 * len(entries) + 1.8), 14.0)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, 3.2 * rows), squeeze=False)
    labels = [e.label.rsplit("/", 1)[-1] for e in entries]
    for k, name in enumerate(names):
        ax = axes[k // cols][k % cols]
        xs, measured, expected, values = [], [], [], []
        bands: list[tuple[int, float, float]] = []
        for i, entry in enumerate(entries):
            claim = next((c for c in entry.result.claims if c.name == name), None)
            if claim is None:
                continue
            lo, hi = _band(claim)
            bands.append((i, lo, hi))
            xs.append(i)
            expected.append(claim.expected)
            measured.append((claim.measured, claim.passed))
            values += [claim.expected, *(v for v in (lo, hi) if math.isfinite(v))]
            if claim.measured is not None:
                values.append(claim.measured)
        ax.plot(xs, expected, "k_", ms=22, mew=1.6, label="expected (theory)")
        ok = [(x, m) for x, (m, p) in zip(xs, measured, strict=True) if p and m is not None]
        bad = [(x, m) for x, (m, p) in zip(xs, measured, strict=True) if not p and m is not None]
        if ok:
            ax.plot(*zip(*ok, strict=True), "o", color=OKABE_ITO["blue"], label="measured: pass")
        if bad:
            ax.plot(*zip(*bad, strict=True), "X", color=OKABE_ITO["vermillion"], ms=7,
                    label="measured: fail")  # fmt: skip
        finite = [v for v in values if math.isfinite(v)]
        if finite:  # keep the one-sided bands from stretching the axis to ±1e300
            lo, hi = min(finite), max(finite)
            pad = 0.08 * (hi - lo) or 0.08 * abs(hi) or 1.0
            if lo > 0 and hi >= 10 * lo:
                ax.set_yscale("log")
                ax.set_ylim(lo / 1.5, hi * 1.5)
            else:
                ax.set_ylim(lo - pad, hi + pad)
        bottom, top = ax.get_ylim() if finite else (-1e300, 1e300)
        for i, lo, hi in bands:  # clipped to the axis: a log axis cannot draw a band to ±1e300
            ax.fill_between(
                [i - 0.4, i + 0.4],
                [max(lo, bottom)] * 2,
                [min(hi, top)] * 2,
                color=OKABE_ITO["sky_blue"],
                alpha=0.25,
                lw=0,
            )
        if finite:
            ax.set_ylim(bottom, top)  # the bands must not move the limits
        ax.set_xticks(range(len(entries)), labels, rotation=30 if len(entries) > 3 else 0,
                      ha="right" if len(entries) > 3 else "center", fontsize=7)  # fmt: skip
        ax.set_xlim(-0.6, len(entries) - 0.4)
        ax.set(xlabel="run", ylabel="claim value (its own units)", title=name)
        if k == 0:
            ax.legend(fontsize=7)
    for k in range(len(names), rows * cols):
        axes[k // cols][k % cols].axis("off")
    fig.tight_layout()
    return _svg(fig)


def overlays_html(entries: list[RunEntry]) -> str:
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    from icgd.core.style import apply_style

    apply_style()
    parts = []
    curves = _curves_figure(entries)
    if curves is not None:
        parts.append(_img(curves, "image/svg+xml", "overlay_curves", "held-out curves, overlaid"))
    claims = _claims_figure(entries)
    if claims is not None:
        caption = "claims: measured per run (marker), expected (black), tolerance band (shaded)"
        parts.append(_img(claims, "image/svg+xml", "overlay_claims", caption))
    return f'<div class="figures">{"".join(parts)}</div>' if parts else ""


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
        f"{g['key']} = {', '.join(_num(v) for v in g['values'])}"
        for g in sweep.table.get("grid", [])
    )
    parts = [
        f'<section class="sweep" id="{anchor}">',
        f"<h2>sweep {_e(sweep.label)}</h2>",
        f'<p class="sub">experiment <code>{_e(sweep.table.get("experiment", "?"))}</code> · '
        f"{len(sweep.table.get('rows', []))} points · grid: {_e(grid)}"
        + (f" · seeds {_e(sweep.table['seeds'])}" if sweep.table.get("seeds") else "")
        + f" · folder {_e(sweep.path.resolve())}</p>",
        "<h3>points</h3>",
        comparison_html(sweep.points, _pending_rows(sweep)),
    ]
    figures = _figures_html(sweep.path / "figures")
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
        toc.append(f'<li><a href="#{anchor}">sweep {_e(sweep.label)}</a></li>')
        body.append(sweep_html(sweep, anchor))
    entries = [*runs, *(p for s in sweeps for p in s.points)]
    for i, entry in enumerate(entries):
        anchor = f"run-{i}"
        toc.append(
            f'<li><a href="#{anchor}">{_e(entry.label)}</a> '
            f'<span class="status {_e(entry.result.status)}">{_e(entry.result.status)}</span></li>'
        )
        body.append(run_html(entry, anchor))
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n<body>\n"
        f"<h1>{_e(title)}</h1>\n"
        f'<p class="sub">written by icgd {_e(__version__)} from the saved folders '
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
    redraw: bool = False,
    title: str | None = None,
) -> tuple[Path, list[str]]:
    """Read the folders, render the page and write it atomically to `out`; returns the path and
    the warnings of `redraw` (figures that could not be drawn)."""
    runs, sweeps = load_sources(paths)
    out = Path(out) if out is not None else default_out(paths)
    if out.is_dir():
        raise InputError("--out", f"{out} is a folder; give a file name such as report.html")
    warnings = redraw_figures([*runs, *(p for s in sweeps for p in s.points)]) if redraw else []
    page = render_report(runs, sweeps, title)
    try:
        return atomic_write_text(out, page), warnings
    except OSError as exc:
        raise InputError("--out", f"cannot write {out} ({exc.strerror or exc})") from None
