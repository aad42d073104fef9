"""Small HTML pieces of the report: escaping, embedded figures (data URIs), tables, verdict and
tolerance cells. No script and no external resource."""

import base64
import html
from pathlib import Path
from typing import Any

from icgd.core.results import Claim
from icgd.reporting.tables import TOLERANCE_SYMBOL, fmt_number

MAX_SVG_BYTES = 2_000_000  # larger SVGs (dense line plots) are embedded as their PNG instead
MAX_OVERLAY_CLAIMS = 12
MAX_OVERLAY_CURVES = 4
# --- small HTML helpers ---------------------------------------------------------------------------


def escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def img(data: bytes, mime: str, alt: str, caption: str) -> str:
    return (
        f'<figure><img src="{data_uri(data, mime)}" alt="{escape(alt)}">'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


def figure_files(folder: Path) -> list[tuple[str, Path, str]]:
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


def figures_html(folder: Path) -> str:
    return "".join(
        img(path.read_bytes(), mime, name, f"{name} ({path.suffix.lstrip('.')})")
        for name, path, mime in figure_files(folder)
    )


def num(x: Any) -> str:
    if isinstance(x, bool):
        return "true" if x else "false"
    if x is None or isinstance(x, (int, float, list)):
        return fmt_number(x)
    return str(x)


def table(headers: list[str], rows: list[str], cls: str = "") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    cls_attr = f' class="{cls}"' if cls else ""
    return (
        f'<div class="scroll"><table{cls_attr}><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def verdict_cell(passed: bool | None) -> str:
    if passed is None:
        return '<td class="na">–</td>'
    return '<td class="ok">pass</td>' if passed else '<td class="bad">FAIL</td>'


def tolerance_text(claim: Claim) -> str:
    return (
        f'<td class="num" title="{escape(claim.rule)}">'
        f"{escape(TOLERANCE_SYMBOL[claim.comparison] + fmt_number(claim.tolerance))}</td>"
    )
