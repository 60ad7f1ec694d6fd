"""Keep a finished run's figures as a results record (:mod:`zfnet_exp.utils.records`): a training run's accuracy,
wall time and per-epoch conv1 aliasing, or an analysis run's faithfulness table.

    python -m zfnet_exp.experiments.record_run outputs/train/<date>/<time>_<name> --name default_run
    python -m zfnet_exp.experiments.record_run outputs/analyze/<date>/<time>_faithfulness --name faithfulness

Why a separate command: training and analysis are Hydra tasks whose output is a run folder; the figures the README
quotes are in that folder (``metrics.csv``, ``faithfulness.json``), and this reads them through
:class:`zfnet_exp.runs.Run`, so the record holds exactly what the run wrote. The record's command is this
command; the run's own command (``python train.py <its overrides>``) and folder are its ``source``, and its date is
when the run wrote its last figure. Run it on the machine the run ran on, since the record states the machine that
writes it.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from ..errors import UserError
from ..runs import Run
from ..utils.records import DEFAULT_DIR, Figure, numeric_figures, write_record

ALIASING = "health/conv1/aliasing"
ELAPSED = "time/elapsed_s"  # zfnet_exp.utils.epoch_csv.EpochCSVLogger.ELAPSED


def _float(row: dict, key: str) -> float | None:
    value = row.get(key)
    return float(value) if value not in (None, "") else None


def _pct(value: float | None) -> float | None:
    return None if value is None else round(100 * value, 4)


def _modified(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)


def run_command(run: Run) -> str:
    """How the run was started: its task's entry point and its command-line overrides."""
    task = str(run.config.get("task_name") or "train")
    return " ".join(["python", f"{task}.py", *run.overrides])


def train_figures(run: Run) -> tuple[list[Figure], str]:
    """Final val top-1/top-5, epochs, wall time (``time/elapsed_s`` of the last epoch) and conv1's aliasing index
    and dead fractions after every epoch, from the run's ``metrics.csv``; and the lines that say them."""
    rows = run.validated_epochs()
    if not rows:
        raise UserError(
            f"{run.path} has no validated epoch in metrics.csv: there is nothing to record yet. Pass the folder of a "
            f"training run that finished at least one epoch."
        )
    last = rows[-1]
    wall = _float(last, ELAPSED)
    top1, top5 = _pct(_float(last, "val/acc_top1")), _pct(_float(last, "val/acc_top5"))
    out = [
        Figure("epochs", len(rows)),
        Figure("val_top1", top1, "%"),
        Figure("val_top5", top5, "%"),
        Figure("train_top1", _pct(_float(last, "train/acc_top1")), "%"),
        Figure("wall_s", wall, "s"),
        Figure("conv1_dead_frac", _float(last, "health/conv1/dead_frac")),
        Figure("conv2_dead_frac", _float(last, "health/conv2/dead_frac")),
    ]
    trace = [_float(r, ALIASING) for r in rows]
    out += [Figure(f"epoch_{int(r['epoch']) + 1:02d}/conv1_aliasing", a) for r, a in zip(rows, trace)]
    detectors, detector_lines = dissect_figures(run, rows)
    out += detectors
    wall_text = f"{wall:.0f} s ({int(wall // 60)} min {wall % 60:02.0f} s)" if wall is not None else "not recorded"
    lines = [
        f"run: {run.path}",
        f"command: {run_command(run)}",
        f"val top-1 {top1}% (top-5 {top5}%) after {len(rows)} epochs",
        f"wall time (from the start of the training task, dataset preparation included): {wall_text}",
        "conv1 aliasing after each epoch: " + ", ".join("-" if a is None else f"{a:.3f}" for a in trace),
        f"dead filters at the end: conv1 {last.get('health/conv1/dead_frac') or '-'}, "
        f"conv2 {last.get('health/conv2/dead_frac') or '-'}",
        *detector_lines,
    ]
    return out, "\n".join(lines)


def dissect_figures(run: Run, rows: list[dict]) -> tuple[list[Figure], list[str]]:
    """Network Dissection's detector and unique-concept counts per layer: at initialization (the callback's
    ``at_init`` table, ``epoch_00``) and after every dissected epoch (``metrics.csv``'s ``dissect/*`` columns)."""
    layers = sorted({k.split("/")[1] for r in rows for k in r if k.startswith("dissect/") and r[k] != ""})
    out: list[Figure] = []
    by_epoch: dict[int, dict[str, tuple[float, float]]] = {}
    detectors = [u for u in run.dissect_units(step=0) if u["detector"] == "True"]
    if detectors:
        by_epoch[0] = {
            layer: (
                sum(u["layer"] == layer for u in detectors),
                len({u["concept"] for u in detectors if u["layer"] == layer}),
            )
            for layer in layers
        }
    for r in rows:
        counts = {
            layer: (float(r[f"dissect/{layer}/detectors"]), float(r[f"dissect/{layer}/unique_concepts"]))
            for layer in layers
            if r.get(f"dissect/{layer}/detectors")
        }
        if counts:
            by_epoch[int(r["epoch"]) + 1] = counts
    lines = []
    for epoch, counts in sorted(by_epoch.items()):
        for layer, (n, unique) in counts.items():
            out += [Figure(f"epoch_{epoch:02d}/{layer}_detectors", n),
                    Figure(f"epoch_{epoch:02d}/{layer}_unique_concepts", unique)]  # fmt: skip
        when = "initial weights" if epoch == 0 else f"after epoch {epoch}"
        lines.append(f"dissect {when}: " + ", ".join(f"{k} {n:.0f} ({u:.0f})" for k, (n, u) in counts.items()))
    return out, lines


def faithfulness_figures(run: Run) -> tuple[list[Figure], str]:
    """Every number of every row of the run's ``faithfulness.json`` (``<method>/<metric>``), and its table."""
    meta = json.loads((run.path / "faithfulness.json").read_text())
    out = [Figure("n_images", meta["n_images"]), Figure("n_steps", meta["n_steps"]),
           Figure("image_size", meta["image_size"], "px")]  # fmt: skip
    lines = [
        f"run: {run.path}",
        f"command: {run_command(run)}",
        f"checkpoint: {meta.get('checkpoint')}; {meta['n_images']} images at {meta['image_size']} px, "
        f"{meta['n_steps']} deletion/insertion steps, pointing tolerance {meta['tolerance_px']:.1f} px",
    ]
    keys = ("deletion_auc", "insertion_auc", "pointing_acc", "pointing_acc_offcentre")  # as the analysis prints
    for row in meta["rows"]:
        out += numeric_figures(
            {k: v for k, v in row.items() if k != "method"},
            prefix=f"{row['method']}/",
            units={"tolerance_px": "px", "map_seconds": "s", "n": "images", "n_offcentre": "images"},
        )
        lines.append(f"{row['method']:>22}" + "".join(f"  {k} {row[k]:.3f}" for k in keys if k in row))
    return out, "\n".join(lines)


def fig6_figures(result) -> list[Figure]:
    """A :class:`zfnet_exp.experiments.fig6.Fig6Result` as figures: per metric, each variant's mean, sample std and
    number of runs, the difference, Cohen's d and Welch's test; then every run's final values."""
    out = []
    for row in result.summary:
        col, a, b = row["column"], row["variant_a"], row["variant_b"]
        unit = "%" if col.endswith("_pct") else ""
        for side, variant in (("a", a), ("b", b)):
            out += [Figure(f"{col}/{variant}/mean", row[f"mean_{side}"], unit),
                    Figure(f"{col}/{variant}/std", row[f"std_{side}"], unit),
                    Figure(f"{col}/{variant}/n", row[f"n_{side}"], "runs")]  # fmt: skip
        out += [Figure(f"{col}/diff_{b}_minus_{a}", row["diff"], unit), Figure(f"{col}/cohens_d", row["cohens_d"]),
                Figure(f"{col}/welch_t", row["welch_t"]), Figure(f"{col}/welch_p", row["welch_p"])]  # fmt: skip
    for run in result.runs:
        out += [Figure(f"run/{run.variant}/seed{run.seed}/{k}", v, "%" if k.endswith("_pct") else "")
                for k, v in run.values.items()]  # fmt: skip
    return out


def record_run(
    folder: str | Path, name: str | None = None, out: str | Path = DEFAULT_DIR, command: str | None = None
) -> Path:
    """Write the record of a training run folder (``metrics.csv``) or a faithfulness analysis folder
    (``faithfulness.json``); print what it holds; return the record's path."""
    run = Run(folder)
    if not (run.path / ".hydra" / "config.yaml").is_file():
        raise UserError(
            f"{run.path} is not a run folder (no .hydra/config.yaml). Pass the folder a `python train.py` or "
            f"`python analyze.py ... analysis=faithfulness` run wrote (outputs/<task>/<date>/<time>_<name>)."
        )
    if (run.path / "faithfulness.json").is_file():
        kind, written = "faithfulness", run.path / "faithfulness.json"
        figures, text = faithfulness_figures(run)
    elif (run.path / "metrics.csv").is_file():
        kind, written = "train", run.path / "metrics.csv"
        figures, text = train_figures(run)
    else:
        raise UserError(
            f"{run.path} holds neither metrics.csv (a training run) nor faithfulness.json (analysis=faithfulness): "
            f"nothing to record. Pass the folder of a finished training run or faithfulness analysis."
        )
    print(text, flush=True)
    source = {
        "run_folder": str(run.path),
        "run_command": run_command(run),
        "read": written.name,
        "recorded_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    when = _modified(written)
    path = write_record(name or kind, figures, text + "\n", out, command=command, source=source, when=when)
    print(f"record: {path} (printed text: {path.with_suffix('.txt').name})", flush=True)
    return path


def main(argv: Sequence[str] | None = None) -> None:
    from ..tasks.runner import run_task

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", help="a training run folder, or an analyze run folder of analysis=faithfulness")
    ap.add_argument("--name", default=None, help="the record's name (default: train | faithfulness)")
    ap.add_argument("--out", default=DEFAULT_DIR, help=f"records folder (default: {DEFAULT_DIR})")
    args = ap.parse_args(argv)
    command = shlex.join(
        ["python", "-m", "zfnet_exp.experiments.record_run", *(sys.argv[1:] if argv is None else argv)]
    )
    run_task(lambda a: record_run(a.folder, a.name, a.out, command), args)


if __name__ == "__main__":
    main()
