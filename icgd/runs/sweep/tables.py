"""A sweep's tables: one row per point (grid values, status, metrics, claims) as JSON and CSV."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from icgd.core.errors import InputError
from icgd.core.io import atomic_write_json, atomic_write_text
from icgd.core.results import read_result
from icgd.runs.sweep.plan import (
    ERROR_FILE,
    FINISHED,
    SweepPlan,
)

if TYPE_CHECKING:
    pass

# --- tables --------------------------------------------------------------------------------------


def _scalar(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def collect_rows(plan: SweepPlan) -> tuple[list[str], list[dict[str, Any]]]:
    """One row per point, read from the point folders only (whichever backend ran them).

    Columns: `point`, `folder`, the grid keys, `status`, `message`, `wall_seconds`, then
    `metrics.<name>` for every scalar metric and `claims.<name>.measured`/`.passed` for every
    claim, in order of first appearance. A point never started has status "pending".
    """
    rows = []
    extra: list[str] = []
    for point in plan.points:
        folder = plan.folder(point)
        row: dict[str, Any] = {"point": point.index, "folder": point.folder, **point.values}
        row.update(status="pending", message="", wall_seconds=None)
        if (folder / "result.json").is_file():
            try:
                result = read_result(folder / "result.json")
            except InputError as exc:
                row.update(status="error", message=exc.message)
            else:
                row.update(
                    status=result.status,
                    message=result.message,
                    wall_seconds=result.provenance.wall_seconds,
                )
                for key, value in result.metrics.items():
                    if _scalar(value):
                        row[f"metrics.{key}"] = value
                for claim in result.claims:
                    row[f"claims.{claim.name}.measured"] = claim.measured
                    row[f"claims.{claim.name}.passed"] = claim.passed
        if row["status"] not in FINISHED and (folder / ERROR_FILE).is_file():
            row.update(status="error", message=(folder / ERROR_FILE).read_text().strip())
        for key in row:
            if key.startswith(("metrics.", "claims.")) and key not in extra:
                extra.append(key)
        rows.append(row)
    columns = ["point", "folder", *plan.keys, "status", "message", "wall_seconds"]
    metric_cols = [c for c in extra if c.startswith("metrics.")]
    claim_cols = [c for c in extra if c.startswith("claims.")]
    columns += metric_cols + claim_cols
    return columns, [{c: row.get(c) for c in columns} for row in rows]


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def write_tables(plan: SweepPlan) -> tuple[Path, Path]:
    """Write `sweep.json` and `sweep.csv` atomically from the point folders."""
    columns, rows = collect_rows(plan)
    identity = plan.identity()
    data = {
        "experiment": plan.name,
        "grid": identity["grid"],
        "seeds": identity["seeds"],
        "columns": columns,
        "rows": rows,
    }
    json_path = atomic_write_json(plan.root / "sweep.json", data)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_cell(row[c]) for c in columns])
    csv_path = atomic_write_text(plan.root / "sweep.csv", buffer.getvalue())
    return json_path, csv_path
