"""Measure the default recipe's levers on the embedded data: one training run per lever, then one table.

    python -m zfnet_exp.experiments.levers --out outputs/levers                 # every lever, one seed, in turn
    python -m zfnet_exp.experiments.levers --out DIR --only base,first_conv_0.01 --seeds 42,43 --jobs 2
    python -m zfnet_exp.experiments.levers --out DIR --summarize                 # table of the runs already there
    python -m zfnet_exp.experiments.levers --out DIR --summarize --record results # ... kept in results/levers/

Each lever is a list of ``train.py`` overrides applied on top of the shipped default (``python train.py``), so a
row says what changing that one thing (or that combination) does. Every run keeps the filter-health callback
(it writes ``health/conv1/aliasing`` and the dead fractions into ``metrics.csv`` every epoch) and switches the
other picture callbacks off, which changes no number in the table. The table (Markdown + CSV in ``--out``) gives
final val top-1, conv1's aliasing index after the first, middle and last epoch, conv1's dead fraction and the
wall time of each run (``--jobs`` > 1 runs several at once: their times are then not comparable to a lone run).
README "Default recipe" quotes it.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..utils.records import Figure, add_record_option, recording
from ..utils.tables import write_csv

ROOT = Path(__file__).resolve().parents[2]

# name -> overrides of `python train.py`. Every lever states all three first-layer settings explicitly (conv1's
# init std, its own weight decay, whether gradient centralization skips it), so a row means the same thing
# whatever the shipped default is; "default" is the recipe as shipped, "previous_default" the one before issue 10.


def first_layer(init_std: float | None, weight_decay: float | None, skip_gc: bool, lr_scale: float = 1.0) -> list[str]:
    null = lambda v: "null" if v is None else v  # noqa: E731
    return [
        f"model.first_conv.init_std={null(init_std)}",
        f"model.first_conv.weight_decay={null(weight_decay)}",
        f"model.first_conv.lr_scale={lr_scale}",
        f"callbacks.grad_centralization.skip_first_conv={str(skip_gc).lower()}",
    ]


DEFAULT = first_layer(0.01, 5.0, True)
NORENORM1 = ["callbacks.filter_renorm.layers=[conv2,conv3,conv4,conv5]"]
LEVERS: dict[str, list[str]] = {
    "previous_default": first_layer(None, None, False),  # Kaiming conv1 (RMS 0.117: on the radius 0.1)
    "default": DEFAULT,
    # one thing changed from the previous default
    "init0.01": first_layer(0.01, None, False),
    "gc_skips_conv1": first_layer(None, None, True),
    "no_renorm_conv1": first_layer(None, None, False) + NORENORM1,
    # on the way to the default (init 0.01, gradient centralization skips conv1), then one thing more
    "init0.01+gc_skip": first_layer(0.01, None, True),
    "init0.001+gc_skip": first_layer(0.001, None, True),
    "init0.01+gc_skip+no_renorm": first_layer(0.01, None, True) + NORENORM1,
    "init0.01+gc_skip+wd1": first_layer(0.01, 1.0, True),
    "init0.01+gc_skip+lr0.3": first_layer(0.01, None, True, lr_scale=0.3),
    "init0.01+gc_skip+lr3": first_layer(0.01, None, True, lr_scale=3.0),
    "init0.01+gc_skip+noise0": first_layer(0.01, None, True) + ["data.pixel_noise=0"],
    "init0.01+gc_skip+noise12": first_layer(0.01, None, True) + ["data.pixel_noise=12"],
    "init0.01+gc_skip+blur_all": first_layer(0.01, None, True) + ["data.blur_probability=1.0"],
    "init0.01+gc_skip+radius0.05": first_layer(0.01, None, True) + ["callbacks.filter_renorm.radius=0.05"],
    "init0.01+gc_skip+wd1+noise12": first_layer(0.01, 1.0, True) + ["data.pixel_noise=12"],
    # around the default
    "default+wd10": first_layer(0.01, 10.0, True),
    "default+wd20": first_layer(0.01, 20.0, True),
    "default_init0.003": first_layer(0.003, 5.0, True),
    "default_init0.001": first_layer(0.001, 5.0, True),
    "default+gc_on_conv1": first_layer(0.01, 5.0, False),
    "default_kaiming_conv1": first_layer(None, 5.0, True),
}
# every run: only the filter-health pictures (their numbers are the table), no W&B
QUIET = [
    "logger=csv",
    "callbacks.top9.enabled=false",
    "callbacks.evolution.enabled=false",
    "callbacks.occlusion.enabled=false",
    "callbacks.train_samples.enabled=false",
]
COLUMNS = [
    "lever",
    "seed",
    "epochs",
    "val_top1",
    "aliasing_first",
    "aliasing_mid",
    "aliasing_last",
    "conv1_dead_frac",
    "conv2_dead_frac",
    "conv1_rms",
    "wall_s",
    "overrides",
]


def run_dir(out: Path, lever: str, seed: int) -> Path:
    return out / "runs" / f"{lever}_seed{seed}"


def train(out: Path, lever: str, seed: int, extra: Sequence[str], threads: int | None) -> float:
    """One ``train.py`` run in its own folder; returns its wall time. Its log goes to ``train.out`` there."""
    folder = run_dir(out, lever, seed)
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(ROOT / "train.py"), *LEVERS[lever], *QUIET, f"seed={seed}",
           f"hydra.run.dir={folder}", *extra]  # fmt: skip
    env = dict(os.environ)
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    start = time.perf_counter()
    with (folder / "train.out").open("w") as log:
        rc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    wall = time.perf_counter() - start
    (folder / "wall_s.txt").write_text(f"{wall:.1f}\n")
    print(f"[levers] {lever} seed {seed}: exit {rc}, {wall:.0f} s ({folder})", flush=True)
    return wall


def prepare_data(overrides: Sequence[str]) -> None:
    """Generate the dataset these ``data.*`` overrides describe once, before runs start in parallel (each run
    would otherwise generate the same folder itself)."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from ..utils import resolvers  # noqa: F401  (the config's own resolvers)

    with initialize_config_dir(str(ROOT / "conf"), version_base=None):
        cfg = compose("train", overrides=list(overrides))
    instantiate(cfg.data).prepare_data()


def _float(row: dict, key: str) -> float | None:
    v = row.get(key)
    return float(v) if v not in (None, "") else None


def summarize_run(folder: Path, lever: str, seed: int) -> dict | None:
    """The table row of one finished (or partly finished) run, read from its ``metrics.csv``."""
    metrics = folder / "metrics.csv"
    if not metrics.is_file():
        return None
    with metrics.open() as f:
        rows = [r for r in csv.DictReader(f) if r.get("val/acc_top1") not in (None, "")]
    if not rows:
        return None
    alias = [_float(r, "health/conv1/aliasing") for r in rows]
    wall = folder / "wall_s.txt"
    last = rows[-1]
    return {
        "lever": lever,
        "seed": seed,
        "epochs": len(rows),
        "val_top1": round(100 * float(last["val/acc_top1"]), 1),
        "aliasing_first": alias[0],
        "aliasing_mid": alias[(len(alias) - 1) // 2],
        "aliasing_last": alias[-1],
        "conv1_dead_frac": _float(last, "health/conv1/dead_frac"),
        "conv2_dead_frac": _float(last, "health/conv2/dead_frac"),
        "conv1_rms": _float(last, "health/conv1/rms_mean"),
        # the subprocess's wall time; without it (runs made elsewhere) the run's own metrics.csv time/elapsed_s
        "wall_s": float(wall.read_text()) if wall.is_file() else _float(last, "time/elapsed_s"),
        "overrides": " ".join(LEVERS.get(lever, [])),
    }


def markdown(rows: list[dict]) -> str:
    def fmt(v):
        return f"{v:.3f}" if isinstance(v, float) and abs(v) < 10 else ("" if v is None else str(v))

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


def figures(rows: list[dict]) -> list[Figure]:
    """The table's numbers as record rows ``<lever>/seed<seed>/<column>``."""
    units = {"val_top1": "%", "wall_s": "s", "epochs": ""}
    return [
        Figure(f"{r['lever']}/seed{r['seed']}/{c}", r[c], units.get(c, ""))
        for r in rows
        for c in COLUMNS
        if c not in ("lever", "seed", "overrides")
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the runs and the table")
    parser.add_argument("--only", default=None, help=f"comma-separated levers (default: all: {', '.join(LEVERS)})")
    parser.add_argument("--seeds", default="42", help="comma-separated seeds (default 42, the shipped seed)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (each gets --threads threads)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per run (default: torch's)")
    parser.add_argument("--summarize", action="store_true", help="only print the table of the runs in --out")
    parser.add_argument("overrides", nargs="*", help="extra train.py overrides for every run (e.g. trainer=gpu)")
    add_record_option(parser)  # give DIR (--record results) when overrides follow, or it takes the first one
    args = parser.parse_args(argv)
    levers = args.only.split(",") if args.only else list(LEVERS)
    unknown = [name for name in levers if name not in LEVERS]
    if unknown:
        parser.error(f"unknown lever(s) {unknown}; choose from {', '.join(LEVERS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    jobs = [(name, seed) for seed in seeds for name in levers]
    if not args.summarize:
        data_sets = {tuple(o for o in [*LEVERS[n], *args.overrides] if o.startswith("data.")) for n, _ in jobs}
        for data in sorted(data_sets):
            prepare_data(data)
        print(f"[levers] {len(jobs)} runs, {args.jobs} at a time, into {args.out}", flush=True)
        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            list(pool.map(lambda j: train(args.out, j[0], j[1], args.overrides, args.threads), jobs))
    rows = [r for name, seed in jobs if (r := summarize_run(run_dir(args.out, name, seed), name, seed))]
    missing = [f"{n} seed {s}" for n, s in jobs if not (run_dir(args.out, n, s) / "metrics.csv").is_file()]
    table = markdown(rows)
    with recording("levers", args.record, "python -m zfnet_exp.experiments.levers", argv) as rec:
        print(table)
        if missing:
            print(f"[levers] no metrics.csv (failed or not run): {', '.join(missing)}")
        rec.extend(figures(rows))
        rec.source = {"out": str(args.out), "overrides": list(args.overrides), "missing": missing}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "levers.md").write_text(table + "\n")
    write_csv(rows, args.out / "levers.csv", COLUMNS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
