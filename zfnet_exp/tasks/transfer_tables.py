"""The paper's transfer numbers (Tables 4-7; ``shared/reference/paper-facts.md`` section 8) and the rows that put
ours beside them. Numbers are (mean, std) in percent; std None where the paper prints none."""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..data.voc import VOC_DISPLAY_NAMES

TABLE4 = {  # Caltech-101, mean per-class accuracy %, N training images per class -> (mean, std)
    "title": "Table 4 - Caltech-101 mean per-class accuracy %",
    "rows": {
        "Bo et al. 2013": {30: (81.4, 0.33)},
        "Jianchao et al. 2009": {15: (73.2, None), 30: (84.3, None)},
        "Non-pretrained convnet": {15: (22.8, 1.5), 30: (46.5, 1.7)},
        "ImageNet-pretrained convnet": {15: (83.8, 0.5), 30: (86.5, 0.5)},
    },
}
TABLE5 = {  # Caltech-256
    "title": "Table 5 - Caltech-256 mean per-class accuracy %",
    "rows": {
        "Sohn et al. 2011": {15: (35.1, None), 30: (42.1, None), 45: (45.7, None), 60: (47.9, None)},
        "Bo et al. 2013": {15: (40.5, 0.4), 30: (48.0, 0.2), 45: (51.9, 0.2), 60: (55.2, 0.3)},
        "Non-pretrained": {15: (9.0, 1.4), 30: (22.5, 0.7), 45: (31.2, 0.5), 60: (38.8, 1.4)},
        "ImageNet-pretrained": {15: (65.7, 0.2), 30: (70.6, 0.2), 45: (72.7, 0.4), 60: (74.2, 0.3)},
    },
}
PRETRAINED_ROW = {"caltech101": "ImageNet-pretrained convnet", "caltech256": "ImageNet-pretrained"}
SCRATCH_ROW = {"caltech101": "Non-pretrained convnet", "caltech256": "Non-pretrained"}
CALTECH_TABLES = {"caltech101": TABLE4, "caltech256": TABLE5}

# Table 7: (classifier, layer) -> {dataset: (mean, std)} at 30/class (Caltech-101) and 60/class (Caltech-256)
TABLE7_N = {"caltech101": 30, "caltech256": 60}
TABLE7 = {
    ("svm", 1): {"caltech101": (44.8, 0.7), "caltech256": (24.6, 0.4)},
    ("svm", 2): {"caltech101": (66.2, 0.5), "caltech256": (39.6, 0.3)},
    ("svm", 3): {"caltech101": (72.3, 0.4), "caltech256": (46.0, 0.3)},
    ("svm", 4): {"caltech101": (76.6, 0.4), "caltech256": (51.3, 0.1)},
    ("svm", 5): {"caltech101": (86.2, 0.8), "caltech256": (65.6, 0.3)},
    ("svm", 7): {"caltech101": (85.5, 0.4), "caltech256": (71.7, 0.2)},
    ("softmax", 5): {"caltech101": (82.9, 0.4), "caltech256": (65.7, 0.5)},
    ("softmax", 7): {"caltech101": (85.4, 0.4), "caltech256": (72.6, 0.1)},
}

# Table 6 (VOC 2012 test set, AP %): class -> ([A] Sande et al., [B] Yan et al., Ours). The Dining-table cells of
# [A]/[B] are printed as a copy of the Cow row in the paper (see paper-facts.md); kept as printed.
TABLE6 = dict(
    zip(
        VOC_DISPLAY_NAMES,
        [
            (92.0, 97.3, 96.0), (74.2, 84.2, 77.1), (73.0, 80.8, 88.4), (77.5, 85.3, 85.5), (54.3, 60.8, 55.8),
            (85.2, 89.9, 85.8), (81.9, 86.8, 78.6), (76.4, 89.3, 91.2), (65.2, 75.4, 65.0), (63.2, 77.8, 74.4),
            (63.2, 77.8, 67.7), (68.9, 83.0, 87.8), (78.2, 87.5, 86.0), (81.0, 90.1, 85.1), (91.6, 95.0, 90.9),
            (55.9, 57.8, 52.2), (69.4, 79.2, 83.6), (65.4, 73.4, 61.1), (86.7, 94.5, 91.8), (77.4, 80.7, 76.1),
        ],
    )
)  # fmt: skip
TABLE6_MEAN = (74.3, 82.2, 79.0)


def fmt(value: tuple[float, float | None] | None, paper: bool = False) -> str:
    """``mean +- std`` with one decimal (the paper's stds keep the digits it prints: 0.33)."""
    if value is None:
        return "-"
    mean, std = value
    if std is None:
        return f"{mean:.1f}"
    return f"{mean:.1f} +- {std:g}" if paper else f"{mean:.1f} +- {std:.1f}"


def caltech_rows(dataset: str, ours_label: str, ours: dict[int, tuple[float, float]], paper_row: str) -> list[dict]:
    """Table 4/5 rows: the paper's (its columns plus ours) then ours; ``paper_row`` names the row that ran the
    same protocol as ours, marked in the ``compare`` column."""
    table = CALTECH_TABLES[dataset]
    columns = sorted({n for r in table["rows"].values() for n in r} | set(ours))
    rows = []
    for method, cells in table["rows"].items():
        row = {"method": f"{method} (paper)"}
        row.update({f"{n}/class": fmt(cells.get(n), paper=True) for n in columns})
        row["compare"] = "<- same protocol as ours" if method == paper_row else ""
        rows.append(row)
    row = {"method": ours_label}
    row.update({f"{n}/class": fmt(ours.get(n)) for n in columns})
    row["compare"] = ""
    rows.append(row)
    return rows


def table7_rows(dataset: str, classifier: str, layer: int, ours: dict[int, tuple[float, float]]) -> list[dict]:
    """Table 7 rows for one (classifier, layer): the paper's cell at its N and ours at the same N."""
    n = TABLE7_N[dataset]
    paper = TABLE7.get((classifier, layer), {}).get(dataset)
    label = f"{'SVM' if classifier == 'svm' else 'Softmax'} ({layer})"
    return [
        {"classifier (layer)": label, "per_class": n, "paper": fmt(paper, paper=True) if paper else "not in Table 7",
         "ours": fmt(ours.get(n)) if n in ours else f"(run transfer.per_class={n})"}
    ]  # fmt: skip


def voc_rows(ours_ap: Sequence[float]) -> list[dict]:
    """Table 6 rows: per class [A], [B], the paper's "Ours" and this run's AP (%), then the means (this run's
    over the classes that have positive evaluation images; "-" marks a class without any)."""
    ap = [float(v) for v in ours_ap]
    rows = [
        {"class": name, "[A]": a, "[B]": b, "paper ours": p, "this run": "-" if math.isnan(v) else round(100 * v, 1)}
        for (name, (a, b, p)), v in zip(TABLE6.items(), ap)
    ]
    scored = [v for v in ap if not math.isnan(v)]
    mean = 100 * sum(scored) / max(1, len(scored))
    a, b, p = TABLE6_MEAN
    rows.append({"class": "Mean", "[A]": a, "[B]": b, "paper ours": p, "this run": round(mean, 1)})
    return rows


def render(rows: Sequence[dict], title: str, note: str | None = None) -> str:
    """A plain-text table (what the task prints)."""
    columns = list(dict.fromkeys(k for r in rows for k in r))
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = lambda vals: " | ".join(v.ljust(w) for v, w in zip(vals, widths)).rstrip()  # noqa: E731
    out = [title, line(columns), "-+-".join("-" * w for w in widths), *(line(r) for r in cells)]
    if note:
        out.append(note)
    return "\n".join(out)
