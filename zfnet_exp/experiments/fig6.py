"""Paper Fig. 6 on the embedded data: the ZF model with its own first layer (7x7 stride 2) against the same
model with AlexNet's (11x11 stride 4, conv2 at stride 1), same recipe, several seeds; a side-by-side table of
filter health and accuracy with the effect size, and a figure of both first layers and their conv2 features.

    python train.py -m experiment=fig6_shapes                 # trains 2 variants x 3 seeds, then this summary
    python -m zfnet_exp.experiments.fig6 <sweep folder>       # the summary again (also of a partly done sweep)
    python -m zfnet_exp.experiments.fig6 <sweep folder> --record   # and keep its numbers in results/fig6/

Writes into the sweep folder: ``fig6.md`` (also printed), ``fig6_summary.csv`` (one row per metric: mean and
sample std per variant, difference, Cohen's d, Welch's t-test), ``fig6_runs.csv`` (one row per run: the final
epoch's values, i.e. the per-seed numbers) and ``fig6.png`` (conv1 filter grids and conv2 top-9 panels of one
seed of each variant, drawn with the same functions as the training callbacks, from each run's last checkpoint;
:mod:`zfnet_exp.figures.fig6`) with ``fig6.json`` (its captions and which run each column is).

The numbers are each run's own per-epoch ``metrics.csv`` (FilterHealth callback): ``health/conv1/aliasing``,
``health/conv1/dead_frac``, ``health/conv2/dead_frac``, ``val/acc_top1`` at the final epoch. One more column
comes from the last checkpoint: conv1's spectral energy above the Nyquist frequency of its own stride
(:func:`~zfnet_exp.diagnostics.filters.aliasing_index` with ``cutoff = 1/stride``), the share that aliases
when conv1's output is subsampled; for stride 2 it is the logged aliasing index itself (the comparison's derived
metric ``derived/conv1/aliasing_at_stride``). Only runs that finished all their epochs enter the statistics (equal
training length); the others, and grid points with no run at all, are listed by name.

Fig. 6 is an instance of the general comparison (:mod:`.compare`): the runs, their status and the grid points not
started are read by it, and the statistics are its :func:`~.compare.variant_table` with ``zf`` as baseline; what
stays here is Fig. 6's own: its variant names and geometry, its units and layout, and its figure.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from ..errors import UserError
from ..runs import Run, find_runs
from ..utils.records import add_record_option, recording
from ..utils.tables import write_csv
from .compare import Job, analyze, md_table, read_job, variant_table
from .derived import DERIVED
from .record_run import fig6_figures

# (metrics.csv key, column, label, scale)
LOGGED = (
    ("health/conv1/aliasing", "conv1_aliasing", "conv1 aliasing index (0 smooth .. 0.80 white noise)", 1.0),
    ("health/conv1/dead_frac", "conv1_dead_pct", "conv1 dead filters (%)", 100.0),
    ("health/conv2/dead_frac", "conv2_dead_pct", "conv2 dead filters (%)", 100.0),
    ("val/acc_top1", "val_top1_pct", "val top-1 accuracy (%)", 100.0),
)
AT_STRIDE = ("conv1_aliased_at_stride", "conv1 energy above its stride's Nyquist (cutoff 1/stride)")
DERIVED_AT_STRIDE = "derived/conv1/aliasing_at_stride"  # the comparison's derived metric (.derived)
COLUMNS = [c for _, c, _, _ in LOGGED] + [AT_STRIDE[0]]
LABELS = {c: label for _, c, label, _ in LOGGED} | {AT_STRIDE[0]: AT_STRIDE[1]}
METRIC = {c: (key, scale) for key, c, _, scale in LOGGED} | {AT_STRIDE[0]: (DERIVED_AT_STRIDE, 1.0)}
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
    job: Job | None = field(default=None, repr=False)  # the run as the general comparison reads it

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


def from_job(job: Job) -> Fig6Run:
    """One run of the comparison as a Fig. 6 run: its variant (the ``fig6`` choice), first-layer geometry and
    the final-epoch values in Fig. 6's units (the derived at-stride aliasing computed when the run finished)."""
    run = job.run
    c1, c2 = run.config.model.arch.conv1, run.config.model.arch.conv2
    k1, s1 = int(c1.kernel), int(c1.stride or 1)
    geometry = f"conv1 {k1}x{k1}/s{s1}, conv2 {int(c2.kernel)}x{int(c2.kernel)}/s{int(c2.stride or 1)}"
    values = {col: job.values[key] * scale if key in job.values else None for col, (key, scale) in METRIC.items()}
    return Fig6Run(
        path=run.path,
        variant=str(run.choices.get("fig6") or f"conv1_{k1}x{k1}s{s1}"),
        geometry=geometry,
        order=(s1, k1),
        seed=_int_or_none(run.setting("seed")),
        epochs=job.epochs,
        max_epochs=job.max_epochs,
        values=values,
        checkpoint=run.last,
        job=job,
    )


def read_run(run: Path) -> Fig6Run:
    """One run folder: its variant (from the config), seed, epochs done and final-epoch values."""
    job = read_job(Run(run), ("seed",))
    if job.run.last is not None:
        job.values[DERIVED_AT_STRIDE] = DERIVED[DERIVED_AT_STRIDE](job.run)
    return from_job(job)


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
    flats = [_flat(Run(r.path).config) for r in runs]
    keys = sorted(set().union(*flats))
    out = []
    for key in keys:
        if key == "seed" or key.startswith(VARIANT_KEYS):
            continue
        values = sorted({f.get(key, "(unset)") for f in flats})
        if len(values) > 1:
            out.append(f"{key} ({' / '.join(values)})")
    return out


def effect_rows(by_variant: dict[str, list[Fig6Run]]) -> list[dict]:
    """Fig. 6's summary (one row per column: ``variant_a``/``variant_b``, ``n``, mean, sample std, difference b - a,
    Cohen's d, Welch's t and p) from the general comparison's statistics (:func:`.compare.variant_table`,
    baseline = the first variant), in Fig. 6's units (the percentages scale means, stds and differences)."""
    a, b = by_variant
    jobs = {v: [r.job for r in rs] for v, rs in by_variant.items()}
    table = variant_table("", jobs, a, [key for key, _ in METRIC.values()])
    stats = {(s["variant"], s["metric"]): s for s in table.summary}
    out = []
    for column, (key, scale) in METRIC.items():
        sa, sb = stats[(a, key)], stats[(b, key)]

        def scaled(v, scale=scale):
            return None if v is None else v * scale

        out.append(
            {
                "metric": LABELS[column],
                "column": column,
                "variant_a": a,
                "variant_b": b,
                "n_a": sa["n"],
                "n_b": sb["n"],
                "mean_a": scaled(sa["mean"]),
                "mean_b": scaled(sb["mean"]),
                "std_a": scaled(sa["sd"]),
                "std_b": scaled(sb["sd"]),
                "diff": scaled(sb["diff"]),
                "cohens_d": sb["cohens_d"],
                "welch_t": sb["t_welch"],
                "welch_p": sb["p_welch"],
            }
        )
    return out


def _fmt(v, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _digits(column: str) -> int:
    return 3 if column in ("conv1_aliasing", AT_STRIDE[0]) else 2


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
    text = "\n".join(head) + "\n" + md_table(["metric", *cols, f"{b} - {a}", "Cohen's d", "Welch p"], rows)
    per_run = [
        [r.variant, str(r.seed), str(r.epochs)] + [_fmt(r.values.get(c), _digits(c)) for c in COLUMNS] + [r.path.name]
        for r in result_runs
    ]
    text += "\nPer run (final epoch):\n\n" + md_table(["variant", "seed", "epochs", *COLUMNS, "run"], per_run)
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
    if not all(p.exists() for p in paths) or not find_runs(paths, started=False):
        raise UserError(
            f"No training runs found in {', '.join(map(str, paths))} (run folders hold .hydra/config.yaml). Run "
            f"`{COMMAND}` first and pass its sweep folder (outputs/train/multirun/<date>/<time>_fig6_shapes), or "
            f"pass run folders."
        )
    comparison = analyze(paths)  # the general comparison: runs, their status, the grid points not started
    print(f"fig6: reading {len(comparison.jobs)} runs under {', '.join(map(str, paths))}", flush=True)
    for job in comparison.jobs:
        if job.finished and job.run.last is not None:
            job.values[DERIVED_AT_STRIDE] = DERIVED[DERIVED_AT_STRIDE](job.run)
    runs = [from_job(j) for j in comparison.jobs]
    done = [r for r in runs if r.finished]
    skipped = [
        f"{r.path} ({r.variant}, seed {r.seed}): "
        + (f"{r.epochs}/{r.max_epochs} epochs, unfinished" if r.epochs else "no epoch finished")
        for r in runs
        if not r.finished
    ]
    for planned in comparison.pending:
        grid = dict(o.split("=", 1) for o in planned if "=" in o)
        skipped.append(f"{grid.get('fig6', '?')}, seed {grid.get('seed', '?')}: no run folder (not started)")
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
    summary = effect_rows(by_variant)
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
    add_record_option(ap)
    args = ap.parse_args(argv)
    run_task(lambda a: _report_and_record(a, argv), args)


def _report_and_record(args: argparse.Namespace, argv: Sequence[str] | None) -> Fig6Result:
    """:func:`report`; with ``--record``, the table's numbers also become a results record (``results/fig6/``)."""
    with recording("fig6", args.record, "python -m zfnet_exp.experiments.fig6", argv) as rec:
        result = report(args.paths, args.out, figure=args.figure, maps=args.maps, device=args.device)
        rec.extend(fig6_figures(result))
        rec.source = {"runs": [str(r.path) for r in result.runs], "skipped": result.skipped}
    return result


if __name__ == "__main__":
    main()
