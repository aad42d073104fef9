"""Reading a saved run folder and writing figure files: what every experiment's `figures.py` uses.

Figures are drawn from files only (`result.json`, `metrics.jsonl`, `arrays.safetensors`), so they
can be redrawn without rerunning. `save` writes PNG and SVG side by side, atomically and with no
date in the metadata, so the same figure gives the same bytes. matplotlib is imported inside
`save` only: importing this module stays light.
"""

from __future__ import annotations

import io
import json
from pathlib import Path


def read_metrics(path: Path) -> list[dict]:
    """The records of a `metrics.jsonl` (an empty list if the file is missing)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_arrays(path: Path) -> dict:
    """The tensors of an `arrays.safetensors` (an empty dict if the file is missing)."""
    from safetensors.torch import load_file

    return load_file(str(path)) if path.exists() else {}


def save(fig, path: Path) -> Path:
    """Save a figure as PNG and SVG beside each other (`x.png` and `x.svg`), each atomically (temp
    file, then rename), and close it; returns `path`."""
    import matplotlib.pyplot as plt

    from icgd.core.io import atomic_write_bytes

    path = Path(path)
    blobs = {}
    for suffix in dict.fromkeys((path.suffix or ".png", ".png", ".svg")):
        buffer = io.BytesIO()
        # No date in the metadata: the same figure gives the same bytes.
        metadata = {"Date": None} if suffix in (".svg", ".pdf") else None
        fig.savefig(
            buffer, format=suffix.lstrip("."), dpi=120, bbox_inches="tight", metadata=metadata
        )
        blobs[path.with_suffix(suffix)] = buffer.getvalue()
    plt.close(fig)
    for target, data in blobs.items():
        atomic_write_bytes(target, data)
    return path
