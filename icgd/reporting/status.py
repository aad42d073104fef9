"""The status table of the experiments on their last runs, as Markdown for a README.

    icgd report runs/status/*/ --readme README.md

writes, between the two marker lines of README.md,

    <!-- icgd-status:begin -->
    | experiment | paper | claims passed | status | seed | run time | run folder |
    ...
    <!-- icgd-status:end -->

one row per experiment, from the newest `result.json` among the folders given (newest by the
file's modification time, so the row shows the *last* run of that experiment); the rows of
experiments not among the folders stay as they were, so reporting one new run updates its row
only. Everything outside the markers is kept byte for byte, and the file is replaced atomically.
A seed ensemble's row gives each claim's pass rate over the seeds instead of one seed's verdicts.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from icgd.core.errors import InputError
from icgd.core.io import atomic_write_text
from icgd.reporting.sources import RunEntry
from icgd.reporting.tables import seed_list

BEGIN = "<!-- icgd-status:begin -->"
END = "<!-- icgd-status:end -->"
HEADERS = ["experiment", "paper", "claims passed", "status", "seed", "run time", "run folder"]


def latest_per_experiment(runs: list[RunEntry]) -> list[RunEntry]:
    """The run with the newest `result.json` of each experiment, in experiment-name order."""
    newest: dict[str, tuple[float, RunEntry]] = {}
    for entry in runs:
        stamp = (entry.path / "result.json").stat().st_mtime
        name = entry.result.experiment
        if name not in newest or stamp >= newest[name][0]:
            newest[name] = (stamp, entry)
    return [newest[name][1] for name in sorted(newest)]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def status_row(entry: RunEntry, papers: Mapping[str, str]) -> list[str]:
    """`HEADERS` for one run folder or seed ensemble; `papers` maps experiment names to the
    paper each reproduces ('' for a name it lacks)."""
    result = entry.result
    claims = result.claims
    if result.seeds is not None:
        seeds = result.seeds.seeds
        rates = result.seeds.claim_pass_rate
        mean = sum(rates.values()) / len(rates) if rates else float("nan")
        full = sum(1 for r in rates.values() if r == 1.0)
        passed = f"{full}/{len(rates)} on every seed (mean pass rate {mean:.0%})"
        seed = seed_list(seeds)
    else:
        passed = f"{sum(c.passed for c in claims)}/{len(claims)}"
        seed = str(result.provenance.seed)
    failed = [c.name for c in claims if not c.passed]
    status = result.status + (f" ({', '.join(failed)} not passed)" if failed else "")
    wall = result.provenance.wall_seconds
    return [
        f"`{result.experiment}`",
        papers.get(result.experiment, ""),
        passed,
        status,
        seed,
        f"{wall:.0f} s",
        f"`{entry.path}`",
    ]


def _kept_rows(block: str, replaced: set[str]) -> dict[str, str]:
    """The rows of a previous table (`block`, the text between the markers) whose experiment is
    not in `replaced`, by their first cell, e.g. "`looped-gd`"."""
    kept = {}
    for line in block.splitlines():
        line = line.strip()
        if not line.startswith("| `"):  # header, rule and anything else are rebuilt
            continue
        first = line[2:].split(" | ", 1)[0].strip()
        if first not in replaced:
            kept[first] = line
    return kept


def status_table(runs: list[RunEntry], papers: Mapping[str, str], previous: str = "") -> str:
    """The Markdown table (header, rule, one row per experiment, by name): the newest run given of
    each experiment, and the rows of `previous` (an earlier table) for the other experiments."""
    rows = {}
    for entry in latest_per_experiment(runs):
        row = status_row(entry, papers)
        rows[row[0]] = "| " + " | ".join(_cell(c) for c in row) + " |"
    rows = {**_kept_rows(previous, set(rows)), **rows}
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += [rows[key] for key in sorted(rows)]
    return "\n".join(lines) + "\n"


def _block(text: str, where: str) -> tuple[int, int]:
    """The span of the text between the `BEGIN` and `END` marker lines."""
    begin, end = text.find(BEGIN), text.find(END)
    if begin < 0 or end < 0 or end < begin:
        raise InputError(
            where, f"no status markers: put the lines {BEGIN} and {END} where the table goes"
        )
    if text.count(BEGIN) > 1 or text.count(END) > 1:
        raise InputError(where, f"the markers {BEGIN} / {END} must appear once each")
    return begin + len(BEGIN), end


def replace_between_markers(text: str, table: str, where: str) -> str:
    """`text` with everything between the `BEGIN` and `END` lines replaced by `table`."""
    start, end = _block(text, where)
    return text[:start] + "\n" + table + text[end:]


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("--readme", f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError("--readme", f"cannot read {path} ({exc.__class__.__name__})") from None


def check_readme(path: str | Path, runs: list[RunEntry]) -> None:
    """Fail early (`InputError`) if the table cannot be written: no runs, `path` unreadable or
    without markers."""
    if not runs:
        raise InputError("--readme", "no run folders given (sweep points do not count)")
    replace_between_markers(_read(Path(path)), "", f"--readme {path}")


def update_readme(path: str | Path, runs: list[RunEntry], papers: Mapping[str, str]) -> Path:
    """Write the status table of `runs` between the markers of the Markdown file `path`
    (`papers`: experiment name → paper, from the experiment registry, which the caller reads:
    reporting imports nothing above core)."""
    path = Path(path)
    check_readme(path, runs)
    text, where = _read(path), f"--readme {path}"
    start, end = _block(text, where)
    updated = replace_between_markers(text, status_table(runs, papers, text[start:end]), where)
    try:
        return atomic_write_text(path, updated)
    except OSError as exc:
        raise InputError("--readme", f"cannot write {path} ({exc.strerror or exc})") from None
