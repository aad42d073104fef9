"""The comparison of several runs in a report: one table row per run (or sweep point) and the
overlay plots (held-out loss curves; each claim's measured value per run against its expected
value and tolerance band)."""

import io
import json
import math
from pathlib import Path
from typing import Any

from icgd.core.results import Claim
from icgd.reporting.markup import MAX_OVERLAY_CLAIMS, MAX_OVERLAY_CURVES, escape, img, num, table
from icgd.reporting.sources import RunEntry, scalar_metrics, seed_dirs
from icgd.reporting.tables import fmt_number

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
        cells = [f"<td>{escape(entry.label)}</td>"]
        cells += [f"<td>{escape(num(entry.grid.get(k)))}</td>" for k in grid_keys]
        cells += [f"<td>{escape(r.experiment)}</td>"] if len(experiments) > 1 else []
        cells += [f'<td class="status {escape(r.status)}">{escape(r.status)}</td>']
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
                f'<td class="num {cls}">{escape(fmt_number(claim.measured))} {mark}{rate}</td>'
            )
        values = scalar_metrics(r)
        cells += [
            f'<td class="num">{escape(num(values[k]))}</td>'
            if k in values
            else '<td class="na">–</td>'
            for k in metric_names
        ]
        rows.append(f"<tr>{''.join(cells)}</tr>")
    for row in pending or []:
        before = len(grid_keys) + (len(experiments) > 1)
        cells = f"<td>{escape(row['label'])}</td>" + "<td></td>" * before
        cells += f"<td>{escape(row['status'])}</td>"
        cells += f'<td colspan="{len(headers) - 2 - before}">{escape(row.get("message", ""))}</td>'
        rows.append(f'<tr class="pending">{cells}</tr>')
    return table(headers, rows, "comparison")


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
        folder = seed_dirs(entry)[0] if entry.result.seeds is not None else entry.path
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
        parts.append(img(curves, "image/svg+xml", "overlay_curves", "held-out curves, overlaid"))
    claims = _claims_figure(entries)
    if claims is not None:
        caption = "claims: measured per run (marker), expected (black), tolerance band (shaded)"
        parts.append(img(claims, "image/svg+xml", "overlay_claims", caption))
    return f'<div class="figures">{"".join(parts)}</div>' if parts else ""
