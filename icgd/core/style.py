"""The shared look of every figure: the Okabe–Ito colour-blind-safe palette as the default colour
cycle, light grids, readable fonts, and fixed SVG/PNG metadata so files are byte-reproducible.

`apply_style()` sets matplotlib's rcParams (idempotent); `draw_figures`, `draw_sweep` and the HTML
report call it before drawing, so an experiment's figure code needs no styling of its own. Theory
and reference lines keep using black (`"k"`), which the cycle leaves out, so they stand apart from
the measured curves.

Okabe, M. & Ito, K. (2008), "Color Universal Design (CUD): how to make figures and presentations
that are friendly to colorblind people".
"""

from __future__ import annotations

# The eight Okabe–Ito colours, by name.
OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
}

# The colour cycle: the palette without black (kept for theory lines), strongest contrasts first,
# yellow last (faint on white).
CYCLE = [
    OKABE_ITO[name]
    for name in (
        "blue",
        "vermillion",
        "bluish_green",
        "reddish_purple",
        "orange",
        "sky_blue",
        "yellow",
    )
]

# A dash pattern per colour, so lines stay distinct in greyscale too (cycled together).
_LINESTYLES = ["-", "--", "-.", ":", "-", "--", "-."]

RC = {
    "figure.dpi": 100,
    "savefig.dpi": 120,
    "savefig.bbox": "tight",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "axes.grid": True,
    "grid.color": "#d9d9d9",
    "grid.linewidth": 0.6,
    "axes.axisbelow": True,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.6,
    "lines.markersize": 4.5,
    "image.cmap": "viridis",  # uniform and colour-blind safe; diverging maps stay explicit
    "svg.hashsalt": "icgd",  # stable element ids: the same figure gives the same SVG bytes
    "svg.fonttype": "path",  # text as outlines: the SVG looks the same without the fonts
}


def apply_style() -> None:
    """Set the shared rcParams and the Okabe–Ito colour cycle (call before creating figures)."""
    import matplotlib as mpl
    from cycler import cycler

    mpl.rcParams.update(RC)
    mpl.rcParams["axes.prop_cycle"] = cycler(color=CYCLE)


def color(i: int) -> str:
    """The i-th colour of the cycle (wraps around)."""
    return CYCLE[i % len(CYCLE)]


def linestyle(i: int) -> str:
    """A dash pattern for the i-th series (for plots read in greyscale)."""
    return _LINESTYLES[i % len(_LINESTYLES)]
