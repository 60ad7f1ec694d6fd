"""Gather finished training runs into one table beside the paper's numbers (Markdown + CSV).

    python -m zfnet_exp.experiments.collect <sweep folder or run folders ...> [--out DIR]

A run folder is one that holds ``metrics.csv`` (one row per epoch, written by every training run) and
``.hydra/config.yaml``; a sweep folder is searched for them (its numbered job folders). For each run the row
holds its model, dataset, epochs done, its final train/val errors (%) and, for ImageNet runs of a model the
paper reports (Table 3 / Table 2), the paper's numbers and the difference. Unfinished runs are listed with the
epochs done so far, so a partly finished grid still gives a table. Runs are read through :mod:`zfnet_exp.runs`.
For the statistics of a sweep's variants (seeds pooled, intervals, tests, pictures) see
``python -m zfnet_exp.experiments.compare``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..errors import UserError, exit_with
from ..runs import Run, find_runs
from ..utils.tables import write_csv
from .paper import TABLE3

COLUMNS = [
    "run",
    "model",
    "data",
    "epochs",
    "max_epochs",
    "train_top1",
    "val_top1",
    "val_top5",
    "paper_row",
    "paper_train_top1",
    "paper_val_top1",
    "paper_val_top5",
    "delta_val_top1",
    "delta_val_top5",
]


def _pct(row: dict, key: str) -> float | None:
    v = row.get(key)
    return round(100.0 * float(v), 2) if v not in (None, "") else None


def collect_run(run: Run) -> dict:
    cfg = run.config
    rows = run.validated_epochs()
    last = rows[-1] if rows else {}
    model = str(cfg.model.get("name") or cfg.model.get("arch"))
    data = str(run.choices.get("data") or cfg.data.get("_target_", "?").rsplit(".", 1)[-1])
    out = {
        "run": str(run.path),
        "model": model,
        "data": data,
        "epochs": run.epochs_done,
        "max_epochs": cfg.trainer.get("max_epochs"),
        "train_top1": _pct(last, "train/err_top1"),
        "val_top1": _pct(last, "val/err_top1"),
        "val_top5": _pct(last, "val/err_top5"),
    }
    if data == "imagenet" and model in TABLE3:
        label, train1, val1, val5 = TABLE3[model]
        out.update(paper_row=label, paper_train_top1=train1, paper_val_top1=val1, paper_val_top5=val5)
        if out["val_top1"] is not None:
            out["delta_val_top1"] = round(out["val_top1"] - val1, 2)
            out["delta_val_top5"] = round(out["val_top5"] - val5, 2)
    return out


def to_markdown(rows: Sequence[dict], columns: Sequence[str] = COLUMNS) -> str:
    def cell(v) -> str:
        return "" if v is None else f"{v:.2f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def collect(paths: Iterable[str | Path], out: str | Path | None = None) -> tuple[list[dict], Path, Path]:
    paths = list(paths)
    runs = find_runs(paths)
    if not runs:
        raise UserError(
            f"no finished or running training runs found in {', '.join(map(str, paths))} (folders with metrics.csv "
            "and .hydra/); pass a sweep folder (outputs/train/multirun/<date>/<time>_<name>) or run folders."
        )
    rows = [collect_run(r) for r in runs]
    out = Path(out) if out else (Path(paths[0]) if len(runs) > 1 or Path(paths[0]) != runs[0].path else runs[0].path)
    csv_path = write_csv(rows, out / "collected.csv", fieldnames=COLUMNS)
    md_path = out / "collected.md"
    md_path.write_text(
        "Error % (final epoch of each run; paper: Zeiler & Fergus v3 Tables 2/3, ImageNet only)\n\n" + to_markdown(rows)
    )
    return rows, csv_path, md_path


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+", help="a sweep folder, or run folders")
    ap.add_argument("--out", default=None, help="where collected.csv / collected.md go (default: the sweep folder)")
    args = ap.parse_args(argv)
    try:
        rows, csv_path, md_path = collect(args.paths, args.out)
    except UserError as e:
        exit_with(str(e))
    sys.stdout.write(md_path.read_text())
    print(f"\n{len(rows)} runs -> {csv_path}, {md_path}")


if __name__ == "__main__":
    main()
