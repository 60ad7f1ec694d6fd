"""Make a sweep answer its question: does variant B differ from variant A, by how much, how sure can we be, and
what did it learn differently.

    python -m zfnet_exp.experiments.compare <sweep folder> [<more sweep or run folders>] [--baseline KEY=VALUE]
        [--metrics M ...] [--replicates seed] [--figure diag/filters/conv1] [--epochs 1,2,5] [--watch 60]

The runs (a local, SLURM or plain ``-m`` sweep's job folders, or run folders) are read through
:mod:`zfnet_exp.runs`; each run's overrides (``.hydra/overrides.yaml``) are compared, and the keys whose values
differ between runs, other than the replicate keys (``seed``), define the variants (``model=zfnet``,
``model.first_conv.weight_decay=5``, in sweep order). Runs of different datasets, input sizes or training lengths
(unless that is what was swept) are never pooled: they form separate tables. Only finished runs enter the
statistics (:mod:`.stats`: mean, sd, Student's t 95% interval; against the baseline Welch's difference interval,
Cohen's d, Welch's p, Holm's p); running, preempted and failed runs, and grid points not started, are listed.

Writes into the sweep folder (``--out``): ``compare.md`` (also printed), ``compare_runs.csv`` (one row per run),
``compare_summary.csv`` (one row per variant and metric, columns :data:`SUMMARY_COLUMNS`), the side-by-side
figure ``compare_<key>.png`` (:mod:`.side_by_side`) and one W&B run in the sweep's group (job type ``compare``,
offline without credentials). The Hydra callback :class:`CompareSweep` (``conf/hydra/default.yaml``) does this at
the end of every multirun.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib
import math
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from ..errors import UserError
from ..runs import Run, find_runs, override_map
from ..utils.tables import write_csv
from .derived import DERIVED
from .paper import TABLE3
from .stats import against, describe, holm

SUMMARY_COLUMNS = [
    "variant",
    "metric",
    "n",
    "mean",
    "sd",
    "ci_low",
    "ci_high",
    "diff",
    "diff_ci_low",
    "diff_ci_high",
    "cohens_d",
    "p_welch",
    "p_holm",
]
# shown in the printed table when --metrics is not given (the CSV holds every metric)
SHOWN = (
    "val/err_top1",
    "val/err_top5",
    "best/val/err_top1",
    "train/err_top1",
    "health/conv1/aliasing",
    "health/conv1/dead_frac",
    "time/wall_s",
    "time/train_img_per_s",
)
# paper numbers (Table 3; Table 2's single-model rows are the same runs) for our metric names, by model choice
PAPER_METRICS = {"train/err_top1": 1, "val/err_top1": 2, "val/err_top5": 3}
# what may never be pooled silently: (label, override keys that sweep it, how the run's config says it)
POOLING = (
    ("dataset", ("data",), lambda r: r.choices.get("data") or str(r.setting("data._target_")).rsplit(".", 1)[-1]),
    ("input size", ("data", "data.image_size"), lambda r: r.setting("data.image_size")),
    (
        "training length",
        ("trainer", "debug", "recipe", "trainer.max_epochs", "trainer.max_steps", "trainer.limit_train_batches"),
        lambda r: (r.setting("trainer.max_epochs"), r.setting("trainer.max_steps"),
                   r.setting("trainer.limit_train_batches")),
    ),
)  # fmt: skip


@dataclass
class Job:
    """One run as the comparison sees it."""

    run: Run
    status: str
    epochs: int
    max_epochs: int | None
    overrides: dict[str, str]
    replicate: str  # "seed=1" (the replicate keys' values)
    values: dict[str, float] = field(default_factory=dict)
    variant: str = ""
    table: str = ""

    @property
    def finished(self) -> bool:
        return self.status == "finished"


@dataclass
class Table:
    """Runs that may be pooled (one dataset, input size and training length): variants, baseline, statistics."""

    label: str  # "" when the comparison has one table
    variants: list[str]
    baseline: str
    jobs: list[Job]
    summary: list[dict]
    paper: dict[tuple[str, str], float]  # (variant, metric) -> the paper's number, same units as ours


@dataclass
class Comparison:
    paths: list[Path]
    jobs: list[Job]
    tables: list[Table]
    keys: list[str]  # the override keys that define the variants
    replicates: list[str]
    metrics: list[str]  # in the summary
    shown: list[str]  # in the printed table
    pending: list[list[str]]  # grid points without a run folder (their overrides)
    notes: list[str]

    @property
    def active(self) -> bool:
        """Jobs still to come: running or preempted ones, or grid points not started."""
        return bool(self.pending) or any(j.status in ("running", "preempted") for j in self.jobs)


# ---------------------------------------------------------------------------------------------------------------
# reading


def run_metrics(run: Run) -> dict[str, float]:
    """The run's final-epoch scalars plus the best epoch's val error (``best/val/err_top1``, ``best/epoch``,
    1-based) and the run's training time (``time/wall_s``: ``time/epoch_s`` summed over its epochs)."""
    values = run.final_scalars()
    rows = run.validated_epochs()
    errors = [(float(r["val/err_top1"]), int(float(r["epoch"]))) for r in rows]
    if errors:
        best, epoch = min(errors)
        values["best/val/err_top1"], values["best/epoch"] = best, float(epoch + 1)
    times = [float(r["time/epoch_s"]) for r in run.metrics if r.get("time/epoch_s") not in (None, "")]
    if times:
        values["time/wall_s"] = math.fsum(times)
    return values


def read_job(run: Run, replicates: Sequence[str], ended: bool = False) -> Job:
    """One run: status (``ended``: the sweep is over, nothing runs), epochs, overrides, replicate, metrics."""
    overrides = run.override_map
    replicate = ",".join(f"{k}={overrides.get(k, run.setting(k))}" for k in replicates)
    return Job(run, run.state(ended), run.epochs_done, run.max_epochs, overrides, replicate, run_metrics(run))


def variant_keys(overrides: Sequence[dict[str, str]], replicates: Sequence[str]) -> list[str]:
    """The override keys whose values differ between the jobs (replicate keys aside), in first-seen order."""
    keys = list(dict.fromkeys(k for o in overrides for k in o))
    return [k for k in keys if k not in replicates and len({o.get(k) for o in overrides}) > 1]


def planned_jobs(sweep: Path) -> list[list[str]]:
    """Every job a sweep was launched with (``multirun.yaml``: the sweeper's params, overridden by the command
    line's), expanded as Hydra's basic sweeper expands them; empty when the folder is not a sweep or its grid
    cannot be expanded here (another sweeper's search space)."""
    path = sweep / "multirun.yaml"
    if not path.is_file():
        return []
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    hydra = OmegaConf.load(path).hydra
    given = [str(o) for o in (OmegaConf.select(hydra, "overrides.task") or [])]
    keys = {o.split("=", 1)[0].lstrip("+~") for o in given}
    params = OmegaConf.select(hydra, "sweeper.params") or {}
    grid = [f"{k}={v}" for k, v in params.items() if str(k) not in keys] + given
    try:
        parsed = OverridesParser.create().parse_overrides(grid)
        return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
    except Exception:  # noqa: BLE001 - not a grid the basic sweeper can expand: nothing listed as pending
        return []


def select_metrics(requested: Sequence[str] | None, available: Iterable[str]) -> list[str]:
    """The metrics named (names or shell patterns, ``health/*``) among ``available`` and the derived ones; every
    request must match something."""
    available = list(dict.fromkeys(available))
    if not requested:
        return sorted(available, key=_metric_order)
    out: list[str] = []
    missing = []
    for req in requested:
        hits = [m for m in [*available, *DERIVED] if fnmatch.fnmatchcase(m, req)]
        if not hits:
            missing.append(req)
        out += [h for h in hits if h not in out]
    if missing:
        shown = ", ".join(sorted(available, key=_metric_order)[:40])
        raise UserError(
            f"--metrics {' '.join(missing)}: no run logged such a metric and no derived metric has that name. The "
            f"runs logged: {shown}; derived (computed on request): {', '.join(DERIVED) or 'none'}. Pass one of "
            f"those (shell patterns such as 'health/*' work), or load the module defining it with --plugin."
        )
    return out


def _metric_order(name: str) -> tuple:
    head = SHOWN.index(name) if name in SHOWN else len(SHOWN)
    return (head, name)


def _pool_key(run: Run, keys: Sequence[str]) -> tuple[tuple[str, object], ...]:
    return tuple((label, get(run)) for label, sweeps, get in POOLING if not any(k in keys for k in sweeps))


def _pool_label(key: tuple[tuple[str, object], ...]) -> str:
    parts = []
    for label, value in key:
        if label == "training length":
            epochs, steps, limit = value
            text = f"{epochs} epochs" + (f", max_steps {steps}" if steps not in (None, -1) else "")
            text += f", limit_train_batches {limit}" if limit not in (None, 1.0, 1) else ""
            parts.append(text)
        elif label == "input size":
            parts.append(f"{value} px")
        else:
            parts.append(str(value))
    return ", ".join(parts)


def _paper(job: Job, metric: str) -> float | None:
    """The paper's number for this run's model and metric (ImageNet, Table 3 / Table 2 rows), as a fraction."""
    model = job.run.choices.get("model")
    if job.run.choices.get("data") != "imagenet" or model not in TABLE3 or metric not in PAPER_METRICS:
        return None
    value = TABLE3[model][PAPER_METRICS[metric]]
    return None if value is None else value / 100.0


def _parse_baseline(items: Sequence[str] | None) -> dict[str, str]:
    out = {}
    for item in items or []:
        for part in [item] if item.count("=") == 1 else item.split(","):
            key, eq, value = part.partition("=")
            if not eq or not key:
                raise UserError(f"--baseline {item}: give KEY=VALUE as in the sweep's overrides, e.g. model=zfnet.")
            out[key.strip().lstrip("+")] = value.strip()
    return out


def _pick_baseline(variants: dict[str, list[Job]], wanted: dict[str, str]) -> list[str]:
    return [v for v, jobs in variants.items() if all(jobs[0].overrides.get(k) == val for k, val in wanted.items())]


def analyze(
    paths: Sequence[str | Path],
    baseline: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    replicates: Sequence[str] = ("seed",),
    plugins: Sequence[str] = (),
    ended: bool = False,
) -> Comparison:
    """Read and group the runs under ``paths`` and compute the statistics (nothing written); ``ended``: the
    sweep is known to be over (its end-of-multirun callback). Raises :class:`UserError` for no runs, a baseline
    that matches no variant, a metric no run logged."""
    paths = [Path(p) for p in paths]
    for module in plugins:
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise UserError(f"--plugin {module}: cannot import it ({e}). Pass an importable module name.") from e
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise UserError(f"{', '.join(map(str, missing))} does not exist. Pass a sweep folder or run folders.")
    runs = find_runs(paths, started=False)
    if not runs:
        raise UserError(
            f"No training runs found in {', '.join(map(str, paths))} (a run folder holds .hydra/config.yaml and "
            f"metrics.csv). Pass the sweep folder of `python train.py -m ...` (outputs/train/multirun/<date>/"
            f"<time>_<name>, as printed at its start) or run folders."
        )
    replicates = list(replicates)
    jobs = [read_job(r, replicates, ended) for r in runs]
    planned = [override_map(p) for sweep in paths for p in planned_jobs(sweep)]
    keys = variant_keys([*(j.overrides for j in jobs), *planned], replicates)
    for j in jobs:
        j.variant = ",".join(f"{k}={j.overrides.get(k, '(default)')}" for k in keys) or "all runs"
    pending = [[f"{k}={v}" for k, v in p.items()] for p in planned if not any(p == j.overrides for j in jobs)]
    finished = [j for j in jobs if j.finished]
    available = list(dict.fromkeys(m for j in jobs for m in j.values))
    chosen = select_metrics(metrics, available)
    for name in [m for m in chosen if m in DERIVED]:
        for j in finished:
            value = DERIVED[name](j.run)
            if value is not None:
                j.values[name] = value
    shown = chosen if metrics else [m for m in SHOWN if m in chosen]
    notes = []
    pools: dict[tuple, list[Job]] = {}
    for j in jobs:
        pools.setdefault(_pool_key(j.run, keys), []).append(j)
    if len(pools) > 1:
        notes.append(
            f"the runs differ in dataset, input size or training length beyond the swept keys: {len(pools)} "
            "separate tables, never pooled (" + "; ".join(_pool_label(k) for k in pools) + ")."
        )
    wanted = _parse_baseline(baseline)
    tables = []
    matched_any = False
    for pool, members in pools.items():
        label = _pool_label(pool) if len(pools) > 1 else ""
        variants: dict[str, list[Job]] = {}
        for j in members:
            j.table = label
            variants.setdefault(j.variant, []).append(j)
        base = list(variants)[0]
        if wanted:
            hits = _pick_baseline(variants, wanted)
            if len(hits) > 1:
                raise UserError(
                    f"--baseline {' '.join(baseline)} matches {len(hits)} variants ({'; '.join(hits)}). Give more "
                    f"KEY=VALUE pairs (the variants differ in {', '.join(keys)})."
                )
            if hits:
                base, matched_any = hits[0], True
            elif len(pools) > 1:
                notes.append(f"{label}: the baseline matches no variant here; the first variant ({base}) is used.")
        tables.append(variant_table(label, variants, base, chosen))
    if wanted and not matched_any:
        names = "; ".join(v for t in tables for v in t.variants)
        raise UserError(
            f"--baseline {' '.join(baseline)} matches no variant. The variants are: {names}. Pass one of their "
            f"KEY=VALUE pairs (e.g. --baseline {names.split(';')[0].split(',')[0]}), or leave --baseline out to "
            f"compare against the first variant in sweep order."
        )
    return Comparison(paths, jobs, tables, keys, replicates, chosen, shown, pending, notes)


def variant_table(label: str, variants: dict[str, list[Job]], base: str, metrics: Sequence[str]) -> Table:
    """The statistics of ``variants`` (label -> jobs, finished ones used) for each metric against ``base``."""
    order = [base] + [v for v in variants if v != base]
    summary = []
    paper = {}
    for metric in metrics:
        values = {v: [j.values[metric] for j in variants[v] if j.finished and metric in j.values] for v in order}
        rows = []
        for v in order:
            row = {"variant": (f"[{label}] " if label else "") + v, "metric": metric, **describe(values[v])}
            row.update(dict.fromkeys(SUMMARY_COLUMNS[7:]))
            if v != base:
                row.update(against(values[base], values[v]))
            rows.append(row)
            p = _paper(variants[v][0], metric)
            if p is not None:
                paper[(v, metric)] = p
        for row, adjusted in zip(rows[1:], holm([r["p_welch"] for r in rows[1:]]), strict=True):
            row["p_holm"] = adjusted
        summary += rows
    return Table(label, order, base, [j for v in order for j in variants[v]], summary, paper)


# ---------------------------------------------------------------------------------------------------------------
# presenting


def _num(v, digits: int = 4) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float) and (abs(v) >= 1e4 or (v != 0 and abs(v) < 1e-3)):
        return f"{v:.3g}"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _p(v) -> str:
    return "n/a" if v is None else f"{v:.2g}"


def md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def markdown(c: Comparison) -> str:
    status = {}
    for j in c.jobs:
        status[j.status] = status.get(j.status, 0) + 1
    head = [
        f"# Comparison: {', '.join(map(str, c.paths))}\n",
        f"{len(c.jobs)} runs ({', '.join(f'{n} {s}' for s, n in status.items())}"
        + (f", {len(c.pending)} not started" if c.pending else "")
        + f"); variants by {', '.join(c.keys) or '(no override differs)'}; replicates: {', '.join(c.replicates)}. "
        "Statistics over finished runs only, each at its final epoch: mean, sample sd, 95% CI (Student's t); "
        "against the baseline: difference of means with its 95% CI (Welch), Cohen's d (pooled sd), Welch's "
        "two-sided p and Holm-adjusted p over the variants. n/a: undefined (one run, or no spread).\n",
    ]
    text = "\n".join(head)
    for t in c.tables:
        text += f"\n## {t.label or 'Results'} (baseline: {t.baseline})\n\n"
        rows = []
        for s in t.summary:
            if s["metric"] not in c.shown:
                continue
            variant = s["variant"].removeprefix(f"[{t.label}] ") if t.label else s["variant"]
            ci = "n/a" if s["ci_low"] is None else f"[{_num(s['ci_low'])}, {_num(s['ci_high'])}]"
            if variant == t.baseline:
                diff = "baseline"
            elif s["diff"] is None:
                diff = "n/a"
            else:
                interval = "" if s["diff_ci_low"] is None else f" [{_num(s['diff_ci_low'])}, {_num(s['diff_ci_high'])}]"
                diff = f"{s['diff']:+.4g}{interval}"
            paper = t.paper.get((variant, s["metric"]))
            rows.append(
                [
                    s["metric"],
                    variant,
                    str(s["n"]),
                    "no finished run" if s["mean"] is None else f"{_num(s['mean'])} ± {_num(s['sd'])}",
                    ci,
                    diff,
                    _num(s["cohens_d"], 2),
                    _p(s["p_welch"]),
                    _p(s["p_holm"]),
                ]
                + ([_num(paper)] if t.paper else [])
            )
        header = [
            "metric",
            "variant",
            "n",
            "mean ± sd",
            "95% CI",
            "diff [95% CI]",
            "Cohen's d",
            "p (Welch)",
            "p (Holm)",
        ]
        text += md_table(header + (["paper"] if t.paper else []), rows)
        one = sorted({s["variant"] for s in t.summary if s["n"] == 1 and s["metric"] in c.shown})
        if one:
            text += f"\nOne finished run only (no interval, no test): {', '.join(one)}.\n"
        layout = table3_layout(t)
        if layout:
            text += "\n" + layout
    text += "\n## Runs\n\n" + md_table(
        ["variant", "replicate", "status", "epochs", "run"],
        [
            [j.variant, j.replicate, j.status, f"{j.epochs}/{j.max_epochs if j.max_epochs is not None else '?'}",
             str(j.run.path)]
            for j in c.jobs
        ],
    )  # fmt: skip
    out_of_stats = [j for j in c.jobs if not j.finished]
    if out_of_stats:
        text += (
            "\nNot in the statistics (unfinished): "
            + "; ".join(f"{j.variant} {j.replicate} ({j.status}, {j.epochs} epochs)" for j in out_of_stats)
            + ".\n"
        )
    if c.pending:
        shown = [*c.keys, *c.replicates]
        text += (
            "\nNot started (no run folder): "
            + "; ".join(" ".join(o for o in p if o.split("=", 1)[0] in shown) or " ".join(p) for p in c.pending)
            + ".\n"
        )
    text += "".join(f"\nNote: {n}\n" for n in c.notes)
    return text


def table3_layout(t: Table) -> str:
    """Paper Table 3's layout (its row labels and order) with our mean ± CI half-width beside the paper's values,
    when the variants are Table 3 models on ImageNet (``experiment=table3_ablation``)."""
    models = {v: t.jobs[[j.variant for j in t.jobs].index(v)].run.choices.get("model") for v in t.variants}
    on_imagenet = all(j.run.choices.get("data") == "imagenet" for j in t.jobs)
    if not on_imagenet or not models or any(m not in TABLE3 for m in models.values()):
        return ""
    stats = {
        (s["variant"].removeprefix(f"[{t.label}] ") if t.label else s["variant"], s["metric"]): s for s in t.summary
    }

    def ours(variant: str, metric: str) -> str:
        s = stats.get((variant, metric))
        if not s or s["mean"] is None:
            return "n/a"
        half = "" if s["ci_high"] is None else f" ± {100 * (s['ci_high'] - s['mean']):.1f}"
        return f"{100 * s['mean']:.1f}{half} (n={s['n']})"

    rows = []
    for model, (label, train1, val1, val5) in TABLE3.items():
        for variant in (v for v, m in models.items() if m == model):
            paper = ["n/a" if x is None else f"{x:.1f}" for x in (train1, val1, val5)]
            rows.append(
                [label, ours(variant, "train/err_top1"), paper[0], ours(variant, "val/err_top1"), paper[1]]
                + [ours(variant, "val/err_top5"), paper[2]]
            )
    header = ["Table 3 row", "train top-1 (ours)", "paper", "val top-1 (ours)", "paper", "val top-5 (ours)", "paper"]
    return "Paper Table 3 layout (error %, ours: mean ± 95% CI half-width):\n\n" + md_table(header, rows)


def run_rows(c: Comparison) -> list[dict]:
    metrics = list(dict.fromkeys([*c.metrics, *(m for j in c.jobs for m in j.values)]))
    rows = []
    for j in c.jobs:
        variant = (f"[{j.table}] " if j.table else "") + j.variant
        row = {"variant": variant, "seed": j.replicate.removeprefix("seed=") if c.replicates == ["seed"] else ""}
        row.update(replicate=j.replicate, status=j.status, epochs=j.epochs, max_epochs=j.max_epochs)
        row.update({m: j.values.get(m) for m in metrics}, run=str(j.run.path))
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------------------------
# writing


@dataclass
class Written:
    comparison: Comparison
    markdown: Path
    runs_csv: Path
    summary_csv: Path
    figures: list[Path]
    wandb_dir: Path | None = None


def _is_job(path: Path) -> bool:
    return (path / ".hydra" / "config.yaml").is_file()


def default_out(paths: Sequence[Path]) -> Path:
    first = Path(paths[0])
    return first.parent if (first / ".hydra" / "config.yaml").is_file() and len(paths) > 1 else first


def compare(
    paths: Sequence[str | Path],
    baseline: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    replicates: Sequence[str] = ("seed",),
    out: str | Path | None = None,
    figure: str | None = "diag/filters/conv1",
    figure_seed: str | None = None,
    epochs: Sequence[int] | None = None,
    wandb: str = "auto",
    plugins: Sequence[str] = (),
    ended: bool = False,
) -> Written:
    """:func:`analyze`, then the figure(s) made in memory, then every file written (nothing when anything before
    failed), then the W&B run."""
    from .side_by_side import comparison_figures

    c = analyze(paths, baseline, metrics, replicates, plugins, ended)
    out = Path(out) if out else default_out(c.paths)
    figures = comparison_figures(c, figure, figure_seed, epochs) if figure else []
    text = markdown(c)
    out.mkdir(parents=True, exist_ok=True)
    runs_csv = _atomic_csv(run_rows(c), out / "compare_runs.csv")
    summary = [{k: s.get(k) for k in SUMMARY_COLUMNS} for t in c.tables for s in t.summary]
    summary_csv = _atomic_csv(summary, out / "compare_summary.csv", SUMMARY_COLUMNS)
    pngs = []
    for name, canvas in figures:
        path = out / name
        tmp = path.with_suffix(".tmp.png")
        canvas.to_pil().save(tmp)
        tmp.replace(path)
        pngs.append(path)
    if pngs:
        text += "\nFigures: " + ", ".join(p.name for p in pngs) + "\n"
    md = out / "compare.md"
    md.write_text(text)
    result = Written(c, md, runs_csv, summary_csv, pngs)
    if _wants_wandb(wandb, c):
        result.wandb_dir = log_wandb(result, out)
    return result


def _atomic_csv(rows: list[dict], path: Path, fieldnames: Sequence[str] | None = None) -> Path:
    tmp = write_csv(rows, path.with_suffix(".tmp.csv"), fieldnames=fieldnames)
    tmp.replace(path)
    return path


def _wants_wandb(mode: str, c: Comparison) -> bool:
    if mode in ("on", "offline", "online"):
        return True
    if mode == "off":
        return False
    return any((j.run.path / "wandb").is_dir() for j in c.jobs)


def log_wandb(result: Written, out: Path) -> Path:
    """One W&B run in the sweep's group (job type ``compare``; offline without credentials): the summary and the
    per-run table, the figures. Its id derives from the output folder, so a second comparison updates it."""
    import wandb

    from ..utils.wandb_env import run_id_for, wandb_offline

    c = result.comparison
    cfg = c.jobs[0].run.config
    raw = OmegaConf.to_container(cfg, resolve=False).get("group")  # a literal group (table3), not ${sweep_group:}
    first = c.paths[0]
    group = raw if isinstance(raw, str) and "${" not in raw else (first.parent if _is_job(first) else first).name
    project = OmegaConf.select(cfg, "logger.wandb.project", default=None, throw_on_resolution_failure=False)
    run = wandb.init(
        project=project or "zfnet-exp",
        group=group,
        job_type="compare",
        name=f"compare:{out.name}",
        id=run_id_for(out / "compare"),
        resume="allow",
        dir=str(out),
        mode="offline" if wandb_offline() else "online",
        config={"paths": [str(p) for p in c.paths], "variant_keys": c.keys, "replicates": c.replicates},
        reinit="finish_previous",
    )
    try:
        summary = [[s.get(k) for k in SUMMARY_COLUMNS] for t in c.tables for s in t.summary]
        runs = run_rows(c)
        columns = list(dict.fromkeys(k for r in runs for k in r))
        payload = {
            "compare/summary": wandb.Table(columns=SUMMARY_COLUMNS, data=summary),
            "compare/runs": wandb.Table(columns=columns, data=[[r.get(k) for k in columns] for r in runs]),
        }
        payload |= {f"compare/{p.stem}": wandb.Image(str(p)) for p in result.figures}
        run.log(payload)
    finally:
        run.finish()
    return out / "wandb"


def report(args: argparse.Namespace) -> Written | None:
    kw = dict(
        baseline=args.baseline,
        metrics=args.metrics,
        replicates=args.replicates,
        out=args.out,
        figure=None if args.figure in ("none", "") else args.figure,
        figure_seed=args.figure_seed,
        epochs=args.epochs,
        wandb=args.wandb,
        plugins=args.plugin,
    )
    if args.watch:
        watch(args.paths, kw, float(args.watch))
    result = compare(args.paths, **kw)
    sys.stdout.write(result.markdown.read_text())
    written = [result.markdown, result.runs_csv, result.summary_csv, *result.figures]
    print("\ncompare: wrote " + ", ".join(map(str, written)), flush=True)
    return result


def watch(paths: Sequence[str], kw: dict, every: float) -> None:
    """Print the table anew every ``every`` seconds while jobs are running or not started (the statistics hold
    the finished runs so far); returns when none is left, after which the full comparison is written."""
    while True:
        try:
            c = analyze(paths, kw["baseline"], kw["metrics"], kw["replicates"], kw["plugins"])
        except UserError as e:  # e.g. no run folder yet: the sweep is starting
            print(f"[{time.strftime('%H:%M:%S')}] waiting: {e}", flush=True)
        else:
            print(f"\n[{time.strftime('%H:%M:%S')}] " + markdown(c), flush=True)
            if not c.active:
                return
        time.sleep(every)


class CompareSweep(Callback):
    """Hydra callback (``conf/hydra/default.yaml``): the comparison of every multirun, after its last job. A
    comparison that cannot be made is one paragraph on stderr; the runs are untouched, and
    ``python -m zfnet_exp.experiments.compare <sweep>`` makes it later."""

    def __init__(self, figure: str | None = "diag/filters/conv1", wandb: str = "auto", enabled: bool = True):
        self.figure, self.wandb, self.enabled = figure, wandb, enabled

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        if not self.enabled:
            return
        sweep = Path(config.hydra.sweep.dir)
        if not find_runs([sweep]):  # not a training sweep (analyze.py / eval.py -m), or no job got far
            return
        try:
            result = compare([sweep], figure=self.figure, wandb=self.wandb, ended=True)
        except UserError as e:
            print(f"\nerror: {e}\n", file=sys.stderr, flush=True)
            return
        sys.stdout.write("\n" + result.markdown.read_text())
        print(f"\ncompare: wrote {result.markdown}, {result.summary_csv}, {result.runs_csv}", flush=True)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+", help="a sweep folder, more sweep folders or run folders")
    ap.add_argument("--baseline", action="append", help="KEY=VALUE picking the baseline variant (default: first)")
    ap.add_argument("--metrics", nargs="+", help="metrics (names or patterns like 'health/*'; default: all)")
    ap.add_argument("--replicates", nargs="+", default=["seed"], help="override keys of the replicates (seed)")
    ap.add_argument("--out", default=None, help="where the files go (default: the sweep folder)")
    ap.add_argument("--figure", default="diag/filters/conv1", help="diagnostic key side by side, or none")
    ap.add_argument("--figure-seed", default=None, help="the replicate shown (default: the lowest all share)")
    ap.add_argument(
        "--epochs", type=lambda s: [int(x) for x in s.split(",")], default=None, help="figure rows (1,2,5,10,...)"
    )
    ap.add_argument("--wandb", choices=["auto", "on", "off"], default="auto", help="auto: if the runs used W&B")
    ap.add_argument("--plugin", action="append", default=[], help="module registering derived metrics")
    ap.add_argument("--watch", type=float, default=0, help="refresh every N seconds while jobs run")
    return ap


def summary_figures(result: Written) -> list:
    """The comparison as record figures: ``<variant>/<metric>/<statistic>`` for every summary cell."""
    from ..utils.records import Figure

    out = []
    for t in result.comparison.tables:
        for row in t.summary:
            out += [Figure(f"{row['variant']}/{row['metric']}/{k}", row[k]) for k in SUMMARY_COLUMNS[2:]]
    return out


def main(argv: Sequence[str] | None = None) -> None:
    from ..tasks.runner import run_task
    from ..utils.records import add_record_option, recording

    ap = parser()
    add_record_option(ap)
    args = ap.parse_args(argv)

    def task(a: argparse.Namespace) -> Written | None:
        with recording("compare", a.record, "python -m zfnet_exp.experiments.compare", argv) as rec:
            result = report(a)
            rec.extend(summary_figures(result))
            rec.source = {"runs": [str(j.run.path) for j in result.comparison.jobs], "out": str(result.markdown.parent)}
        return result

    run_task(task, args)


if __name__ == "__main__":
    main()
