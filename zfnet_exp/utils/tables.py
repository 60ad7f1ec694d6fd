"""Writing result tables (CSV) the same way everywhere."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path


def write_csv(rows: Sequence[Mapping], path: str | Path, fieldnames: Iterable[str] | None = None) -> Path:
    """Write dict rows to CSV (columns: ``fieldnames``, else the union of the rows' keys in first-seen
    order, so rows may lack some columns); creates the folder; returns the path."""
    if fieldnames is None:
        fieldnames = []
        for row in rows:
            fieldnames += [k for k in row if k not in fieldnames]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(fieldnames))
        writer.writeheader()
        writer.writerows(rows)
    return path
