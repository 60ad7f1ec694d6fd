"""Paper Fig. 6 on the embedded data: the ZF model with its own first layer (7x7 stride 2) against the same
model with AlexNet's (11x11 stride 4, conv2 at stride 1), same recipe, several seeds; a side-by-side table of
filter health and accuracy with the effect size, and a figure of both first layers and their conv2 features.

    python train.py -m experiment=fig6_shapes                 # trains 2 variants x 3 seeds, then this summary
    python -m zfnet_exp.experiments.fig6 <sweep folder>       # the summary again (also of a partly done sweep)

Writes into the sweep folder: ``fig6.md`` (also printed), ``fig6_summary.csv`` (one row per metric: mean and
sample std per variant, difference, Cohen's d, Welch's t-test), ``fig6_runs.csv`` (one row per run: the final
epoch's values, i.e. the per-seed numbers) and ``fig6.png`` (conv1 filter grids and conv2 top-9 panels of one
seed of each variant, drawn with the same functions as the training callbacks, from each run's last checkpoint;
:mod:`zfnet_exp.figures.fig6`) with ``fig6.json`` (its captions and which run each column is).

The numbers are each run's own per-epoch ``metrics.csv`` (FilterHealth callback): ``health/conv1/aliasing``,
``health/conv1/dead_frac``, ``health/conv2/dead_frac``, ``val/acc_top1`` at the final epoch. One more column
comes from the last checkpoint: conv1's spectral energy above the Nyquist frequency of its own stride
(:func:`~zfnet_exp.diagnostics.filters.aliasing_index` with ``cutoff = 1/stride``), the share that aliases
when conv1's output is subsampled; for stride 2 it is the logged aliasing index itself. Only runs that
finished all their epochs enter the statistics (equal training length); the others, and grid points with no
run at all, are listed by name.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..errors import UserError
from ..runs import read_checkpoint
from ..utils.tables import write_csv
from .collect import run_choices, run_config, validated_epochs

# (metrics.csv key, column, label, scale)
LOGGED = (
    ("health/conv1/aliasing", "conv1_aliasing", "conv1 aliasing index (0 smooth .. 0.80 white noise)", 1.0),
    ("health/conv1/dead_frac", "conv1_dead_pct", "conv1 dead filters (%)", 100.0),
    ("health/conv2/dead_frac", "conv2_dead_pct", "conv2 dead filters (%)", 100.0),
    ("val/acc_top1", "val_top1_pct", "val top-1 accuracy (%)", 100.0),
)
AT_STRIDE = ("conv1_aliased_at_stride", "conv1 energy above its stride's Nyquist (cutoff 1/stride)")
COLUMNS = [c for _, c, _, _ in LOGGED] + [AT_STRIDE[0]]
LABELS = {c: label for _, c, label, _ in LOGGED} | {AT_STRIDE[0]: AT_STRIDE[1]}
COMMAND = "python train.py -m experiment=fig6_shapes"
# keys that may differ between the runs of one comparison: the variant itself and the seed
VARIANT_KEYS = ("model.arch.conv1.", "model.arch.conv2.")


@dataclass
class Fig6Run:
    path: Path
    variant: str  # the fig6 choice (zf | alexnet_conv1), else named by its first layer
    geometry: str  # "conv1 7x7/s2, conv2 5x5/s2"
    order: tuple[int, int]  # (conv1 stride, conv1 kernel): the finer first layer comes first
    seed: int | None
    epochs: int
    max_epochs: int | None
    values: dict[str, float | None] = field(default_factory=dict)
    checkpoint: Path | None = None

    @property
    def finished(self) -> bool:
        return self.epochs > 0 and (self.max_epochs is None or self.epochs >= self.max_epochs)


@dataclass
class Fig6Result:
    runs: list[Fig6Run]  # the runs in the statistics
    variants: list[str]  # [first, second]; difference = second - first
    summary: list[dict]  # one row per metric
    skipped: list[str]  # runs left out and grid points with no run, one line each
    notes: list[str]
    markdown: Path
    runs_csv: Path
    summary_csv: Path
    figure: Path | None


def _int_or_none(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _max_epochs(cfg: DictConfig) -> int | None:
    try:
        return _int_or_none(OmegaConf.select(cfg, "trainer.max_epochs", default=None))
    except OmegaConfBaseException:  # an interpolation that only resolves inside the run (None: not checked)
        return None


def _conv1_weight(checkpoint: Path) -> torch.Tensor:
    state = read_checkpoint(checkpoint).state_dict
    return next(v for k, v in state.items() if k.endswith("features.conv1.weight")).float()


def read_run(run: Path) -> Fig6Run:
    """One run folder: its variant (from the config), seed, epochs done and final-epoch values."""
    cfg, choices = run_config(run), run_choices(run)
    c1, c2 = cfg.model.arch.conv1, cfg.model.arch.conv2
    k1, s1 = int(c1.kernel), int(c1.stride or 1)
    geometry = f"conv1 {k1}x{k1}/s{s1}, conv2 {int(c2.kernel)}x{int(c2.kernel)}/s{int(c2.stride or 1)}"
    rows = validated_epochs(run)
    last = rows[-1] if rows else {}
    values: dict[str, float | None] = {
        col: float(last[key]) * scale if last.get(key) not in (None, "") else None for key, col, _, scale in LOGGED
    }
    ckpt = run / "checkpoints" / "last.ckpt"
    values[AT_STRIDE[0]] = None
    if ckpt.is_file():
        from ..diagnostics.filters import aliasing_index

        values[AT_STRIDE[0]] = aliasing_index(_conv1_weight(ckpt), cutoff=1.0 / s1)
    return Fig6Run(
        path=run,
        variant=str(choices.get("fig6") or f"conv1_{k1}x{k1}s{s1}"),
        geometry=geometry,
        order=(s1, k1),
        seed=_int_or_none(cfg.get("seed")),
        epochs=int(float(last["epoch"])) + 1 if last else 0,
        max_epochs=_max_epochs(cfg),
        values=values,
        checkpoint=ckpt if ckpt.is_file() else None,
    )


def job_folders(paths: Iterable[str | Path]) -> list[Path]:
    """Run folders (holding ``.hydra/config.yaml``) given or under the given folders, finished or not."""
    found: set[Path] = set()
    for p in map(Path, paths):
        if (p / ".hydra" / "config.yaml").is_file():
            found.add(p)
        elif p.is_dir():
            found |= {c.parent.parent for c in p.rglob(".hydra/config.yaml")}
    return sorted(found)


def planned_grid(sweep: Path) -> dict[str, list[str]]:
    """The variants and seeds a sweep was launched with (``multirun.yaml``: the experiment's sweeper params,
    overridden by comma lists on the command line); empty when the folder is not a sweep."""
    path = sweep / "multirun.yaml"
    if not path.is_file():
        return {}
    hydra = OmegaConf.load(path).hydra
    params = {str(k): str(v) for k, v in (OmegaConf.select(hydra, "sweeper.params") or {}).items()}
    for override in OmegaConf.select(hydra, "overrides.task") or []:
        key, _, value = str(override).partition("=")
        if key in ("fig6", "seed"):
            params[key] = value
    return {k: [v.strip() for v in params[k].split(",")] for k in ("fig6", "seed") if k in params}


def _flat(cfg: DictConfig) -> dict[str, str]:
    out: dict[str, str] = {}

    def walk(node, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        else:
            out[prefix[:-1]] = repr(node)

    walk(OmegaConf.to_container(cfg, resolve=False), "")
    return out


def recipe_differences(runs: Sequence[Fig6Run]) -> list[str]:
    """Config keys, other than the first-layer variant and the seed, whose values differ between the runs."""
    flats = [_flat(run_config(r.path)) for r in runs]
    keys = sorted(set().union(*flats))
    out = []
    for key in keys:
        if key == "seed" or key.startswith(VARIANT_KEYS):
            continue
        values = sorted({f.get(key, "(unset)") for f in flats})
        if len(values) > 1:
            out.append(f"{key} ({' / '.join(values)})")
    return out


def effect(a: Sequence[float], b: Sequence[float]) -> dict:
    """``b`` against ``a``: means, sample standard deviations (n - 1), the difference of the means, Cohen's d
    (difference over the pooled standard deviation) and Welch's two-sided t-test (``scipy.stats.ttest_ind``,
    ``equal_var=False``). Undefined statistics (one value per side, no spread at all) are None."""
    from scipy.stats import ttest_ind

    out: dict = {"n_a": len(a), "n_b": len(b)}
    out["mean_a"] = statistics.fmean(a) if a else None
    out["mean_b"] = statistics.fmean(b) if b else None
    out["std_a"] = statistics.stdev(a) if len(a) > 1 else None
    out["std_b"] = statistics.stdev(b) if len(b) > 1 else None
    out["diff"] = out["mean_b"] - out["mean_a"] if a and b else None
    out["cohens_d"] = out["welch_t"] = out["welch_p"] = None
    if len(a) > 1 and len(b) > 1:
        pooled = math.sqrt(
            ((len(a) - 1) * out["std_a"] ** 2 + (len(b) - 1) * out["std_b"] ** 2) / (len(a) + len(b) - 2)
        )
        if pooled > 0:
            out["cohens_d"] = out["diff"] / pooled
            with warnings.catch_warnings():  # scipy warns when one side has (almost) no spread; the test holds
                warnings.simplefilter("ignore", RuntimeWarning)
                test = ttest_ind(b, a, equal_var=False)
            out["welch_t"], out["welch_p"] = float(test.statistic), float(test.pvalue)
    return out


def _fmt(v, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _digits(column: str) -> int:
    return 3 if column in ("conv1_aliasing", AT_STRIDE[0]) else 2


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _markdown(sweep: Path, result_runs, variants, geometry, summary, skipped, notes) -> str:
    a, b = variants
    epochs = sorted({r.epochs for r in result_runs})
    head = [
        f"# Fig. 6 on the embedded data: {sweep}\n",
        f"`{a}` ({geometry[a]}) against `{b}` ({geometry[b]}), same recipe; values at the final epoch "
        f"({', '.join(map(str, epochs))}) of each run. Mean +- sample std over seeds; difference = {b} - {a}; "
        "Cohen's d = difference / pooled std; p: Welch's two-sided t-test (scipy.stats.ttest_ind, "
        "equal_var=False).\n",
    ]
    rows = []
    for s in summary:
        d = _digits(s["column"])

        def cell(m, sd, n, d=d) -> str:
            return f"{_fmt(m, d)} +- {_fmt(sd, d)} (n={n})"

        rows.append(
            [
                s["metric"],
                cell(s["mean_a"], s["std_a"], s["n_a"]),
                cell(s["mean_b"], s["std_b"], s["n_b"]),
                _fmt(s["diff"], d),
                _fmt(s["cohens_d"], 2),
                "n/a" if s["welch_p"] is None else f"{s['welch_p']:.2g}",
            ]
        )
    cols = [f"{v} ({geometry[v].split(',')[0]})" for v in (a, b)]
    text = "\n".join(head) + "\n" + _table(["metric", *cols, f"{b} - {a}", "Cohen's d", "Welch p"], rows)
    per_run = [
        [r.variant, str(r.seed), str(r.epochs)] + [_fmt(r.values.get(c), _digits(c)) for c in COLUMNS] + [r.path.name]
        for r in result_runs
    ]
    text += "\nPer run (final epoch):\n\n" + _table(["variant", "seed", "epochs", *COLUMNS, "run"], per_run)
    if skipped:
        text += "\nNot in the table:\n\n" + "".join(f"- {s}\n" for s in skipped)
    if notes:
        text += "\n" + "".join(f"Note: {n}\n" for n in notes)
    return text


def summarize(
    paths: Sequence[str | Path], out: str | Path | None = None, figure: bool = True, maps: int = 4, device="auto"
) -> Fig6Result:
    """Read the runs under ``paths`` (a sweep folder, or run folders), write the table and the figure into
    ``out`` (default: the first path) and return what was written. Raises UserError (one paragraph) when no
    finished runs of two variants are there."""
    paths = [Path(p) for p in paths]
    out = Path(out) if out else paths[0]
    folders = job_folders(paths)
    if not folders:
        raise UserError(
            f"No training runs found in {', '.join(map(str, paths))} (run folders hold .hydra/config.yaml). Run "
            f"`{COMMAND}` first and pass its sweep folder (outputs/train/multirun/<date>/<time>_fig6_shapes), or "
            f"pass run folders."
        )
    print(f"fig6: reading {len(folders)} runs under {', '.join(map(str, paths))}", flush=True)
    runs = [read_run(f) for f in folders]
    done = [r for r in runs if r.finished]
    skipped = [
        f"{r.path} ({r.variant}, seed {r.seed}): "
        + (f"{r.epochs}/{r.max_epochs} epochs, unfinished" if r.epochs else "no epoch finished")
        for r in runs
        if not r.finished
    ]
    grid = planned_grid(paths[0])
    variants_planned = list(dict.fromkeys(grid.get("fig6", []) + [r.variant for r in runs]))
    seeds_planned = list(dict.fromkeys([_int_or_none(s) for s in grid.get("seed", [])] + [r.seed for r in runs]))
    have = {(r.variant, r.seed) for r in runs}
    skipped += [
        f"{v}, seed {s}: no run folder (not started)"
        for v in variants_planned
        for s in seeds_planned
        if (v, s) not in have
    ]
    by_variant: dict[str, list[Fig6Run]] = {}
    for r in sorted(done, key=lambda r: (r.order, r.seed if r.seed is not None else -1, str(r.path))):
        by_variant.setdefault(r.variant, []).append(r)
    if len(by_variant) != 2:
        found = ", ".join(f"{v} ({len(rs)} finished)" for v, rs in by_variant.items()) or "no finished run"
        missing = "; ".join(skipped) or "none"
        raise UserError(
            f"Fig. 6 compares two first-layer variants, but the finished runs under {paths[0]} give {found}. "
            f"Runs not usable: {missing}. Finish the sweep (re-run `{COMMAND} hydra.sweep.dir={paths[0]}`: "
            f"finished jobs are skipped, unfinished ones resume) or pass a folder with both variants "
            f"(fig6=zf and fig6=alexnet_conv1)."
        )
    variants = list(by_variant)
    a, b = variants
    geometry = {v: rs[0].geometry for v, rs in by_variant.items()}
    notes = []
    differences = recipe_differences(done)
    if differences:
        notes.append("the runs differ in more than the first layer and the seed: " + "; ".join(differences))
    summary = []
    for column in COLUMNS:
        va = [r.values[column] for r in by_variant[a] if r.values.get(column) is not None]
        vb = [r.values[column] for r in by_variant[b] if r.values.get(column) is not None]
        summary.append({"metric": LABELS[column], "column": column, "variant_a": a, "variant_b": b, **effect(va, vb)})
    ordered = by_variant[a] + by_variant[b]
    runs_csv = write_csv(
        [
            {
                "variant": r.variant,
                "geometry": r.geometry,
                "seed": r.seed,
                "epochs": r.epochs,
                **r.values,
                "run": r.path,
            }
            for r in ordered
        ],
        out / "fig6_runs.csv",
        fieldnames=["variant", "geometry", "seed", "epochs", *COLUMNS, "run"],
    )
    summary_csv = write_csv(summary, out / "fig6_summary.csv")
    fig_path = None
    if figure:
        fig_path = _figure(by_variant, out / "fig6.png", maps, device, notes)
    md = out / "fig6.md"
    md.write_text(_markdown(out, ordered, variants, geometry, summary, skipped, notes))
    return Fig6Result(ordered, variants, summary, skipped, notes, md, runs_csv, summary_csv, fig_path)


def _device(name) -> torch.device:
    if str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def figure_seed(by_variant: dict[str, list[Fig6Run]]) -> dict[str, Fig6Run]:
    """One run per variant for the figure: the lowest seed that every variant has a checkpoint for (so the
    columns differ in the first layer only), else each variant's first run with a checkpoint."""
    with_ckpt = {v: [r for r in rs if r.checkpoint] for v, rs in by_variant.items()}
    common = set.intersection(*({r.seed for r in rs} for rs in with_ckpt.values()))
    if common:
        seed = min(common, key=lambda s: (s is None, s))
        return {v: next(r for r in rs if r.seed == seed) for v, rs in with_ckpt.items()}
    return {v: rs[0] for v, rs in with_ckpt.items() if rs}


def variant_panels(run: Fig6Run, maps: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The conv1 filter grid and the conv2 top-9 panel of one run's last checkpoint, mined over the
    checkpoint's own validation split (:func:`zfnet_exp.figures.fig6.variant_panels`)."""
    from ..data.normalize import denormalizer
    from ..figures import fig6
    from ..runs import build_dataset, load_model

    model, data = load_model(run.checkpoint, device)
    dataset = build_dataset(data, "val")
    print(f"fig6: {run.variant} seed {run.seed}: conv2 top-9 over {len(dataset)} val images", flush=True)
    return fig6.variant_panels(model, dataset, denormalizer(data), maps, device)


def _figure(by_variant, path: Path, maps: int, device, notes: list[str]) -> Path | None:
    from ..figures import fig6

    chosen = figure_seed(by_variant)
    if len(chosen) < 2:
        notes.append("no figure: a variant has no run with checkpoints/last.ckpt")
        return None
    device = _device(device)
    filters, top9, captions = {}, {}, {}
    for variant, run in chosen.items():
        v = run.values
        filters[variant], top9[variant] = variant_panels(run, maps, device)
        captions[variant] = (
            f"{run.geometry}; seed {run.seed}, epoch {run.epochs}\naliasing {_fmt(v['conv1_aliasing'])}, dead "
            f"filters conv1 {_fmt(v['conv1_dead_pct'], 1)}% conv2 {_fmt(v['conv2_dead_pct'], 1)}%, val top-1 "
            f"{_fmt(v['val_top1_pct'], 1)}%"
        )
    fig = fig6.comparison(
        filters,
        top9,
        captions,
        "Fig. 6 on the embedded data: first layer 7x7/s2 vs 11x11/s4",
        runs={variant: str(run.path) for variant, run in chosen.items()},
        maps=maps,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.figure.savefig(path)
    path.with_suffix(".json").write_text(json.dumps(fig.payload, indent=1))
    return path


def report(paths: Sequence[str | Path], out=None, figure: bool = True, maps: int = 4, device="auto") -> Fig6Result:
    """:func:`summarize`, then print the Markdown table and where everything went."""
    result = summarize(paths, out, figure=figure, maps=maps, device=device)
    sys.stdout.write("\n" + result.markdown.read_text())
    written = [result.markdown, result.summary_csv, result.runs_csv] + ([result.figure] if result.figure else [])
    print("\nfig6: wrote " + ", ".join(map(str, written)), flush=True)
    return result


class SummarizeSweep(Callback):
    """Hydra callback (``hydra.callbacks`` of ``experiment=fig6_shapes``): the summary after the last job.
    A summary that cannot be made (e.g. a variant has no finished run) is one paragraph on stderr; the runs
    themselves are untouched, and ``python -m zfnet_exp.experiments.fig6 <sweep>`` makes it later."""

    def __init__(self, maps: int = 4, figure: bool = True, device: str = "auto"):
        self.maps, self.figure, self.device = maps, figure, device

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep = Path(config.hydra.sweep.dir)
        try:
            report([sweep], figure=self.figure, maps=self.maps, device=self.device)
        except UserError as e:
            print(f"\nerror: {e}\n", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    from ..tasks.runner import run_task

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+", help="the sweep folder of experiment=fig6_shapes, or run folders")
    ap.add_argument("--out", default=None, help="where fig6.md/.csv/.png go (default: the first path)")
    ap.add_argument("--maps", type=int, default=4, help="conv2 feature maps in each top-9 panel (default 4)")
    ap.add_argument("--no-figure", dest="figure", action="store_false", help="the table only")
    ap.add_argument("--device", default="auto", help="for the figure's top-9 mining: auto | cpu | cuda")
    args = ap.parse_args(argv)
    run_task(lambda a: report(a.paths, a.out, figure=a.figure, maps=a.maps, device=a.device), args)


if __name__ == "__main__":
    main()
