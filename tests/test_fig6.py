"""Paper Fig. 6 on the embedded data (``experiment=fig6_shapes`` + ``zfnet_exp.experiments.fig6``): the
experiment composes into the default ZF model and the same model with AlexNet's first layer under one recipe
(references: the default composition of train.yaml and hand-computed map sizes), and a 2-batch version of the
one command trains both variants for two seeds and writes a table whose numbers are the runs' own metrics.csv
(read back here with the csv module, statistics recomputed by hand) and a figure with both variants' panels."""

from __future__ import annotations

import csv
import math
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from helpers import CONF, ROOT, TINY_DATA, compose_train
from omegaconf import OmegaConf
from PIL import Image

from zfnet_exp.errors import UserError
from zfnet_exp.models import build_model
from zfnet_exp.schemas import validate_config

VARIANTS = {  # the arch values each variant must have (paper Fig. 3 / Krizhevsky et al.)
    "zf": {"conv1": (7, 2, 1), "conv2": (5, 2, 0)},
    "alexnet_conv1": {"conv1": (11, 4, 2), "conv2": (5, 1, 2)},
}
# hand computation, floor((n + 2p - k) / s) + 1 for convs, ceil((n - 3) / 2) + 1 for the ceil-mode 3/2 pools:
# order conv1, pool1, conv2, pool2, conv3, conv5, pool5
SIZES = {
    ("zf", 64): [30, 15, 6, 3, 3, 3, 1],  # (64+2-7)//2+1 = 30, ceil(27/2)+1 = 15, (15-5)//2+1 = 6, ...
    ("alexnet_conv1", 64): [15, 7, 7, 3, 3, 3, 1],  # (64+4-11)//4+1 = 15, ceil(12/2)+1 = 7, (7+4-5)+1 = 7, ...
    ("zf", 224): [110, 55, 26, 13, 13, 13, 6],  # paper Fig. 3
    ("alexnet_conv1", 224): [55, 27, 27, 13, 13, 13, 6],  # AlexNet's own sizes (ARCHITECTURE.md)
}


def _sweep_params() -> dict:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=fig6_shapes"], return_hydra_config=True)
    return dict(cfg.hydra.sweeper.params), dict(cfg.hydra.callbacks)


def _sizes(arch: dict, size: int) -> list[int]:
    with torch.device("meta"):
        net = build_model(arch=arch, num_classes=10, input_size=size, init=None)
        x, out = torch.empty(1, 3, size, size), {}
        for name, module in net.features.named_children():
            x = module(x)
            out[name] = x.shape[-1]
    return [out[k] for k in ("conv1", "pool1", "conv2", "pool2", "conv3", "conv5", "pool5")]


def test_fig6_experiment_composes_two_variants_under_the_default_recipe(tmp_path, data_dir):
    """References: the plain ``python train.py`` composition (the default recipe and model) and the hand-computed
    map sizes above. The sweep is 2 variants x 3 seeds and ends with the summary callback."""
    params, callbacks = _sweep_params()
    assert params == {"fig6": "zf,alexnet_conv1", "seed": "1,2,3"}
    assert callbacks["fig6_summary"]["_target_"] == "zfnet_exp.experiments.fig6.SummarizeSweep"
    default = OmegaConf.to_container(compose_train([], tmp_path / "run", data_dir), resolve=True)
    seen = {}
    for variant, geometry in VARIANTS.items():
        cfg = compose_train(["experiment=fig6_shapes", f"fig6={variant}", "seed=1"], tmp_path / "run", data_dir)
        validate_config(cfg)
        c = OmegaConf.to_container(cfg, resolve=True)
        arch = c["model"]["arch"]
        for layer, (k, s, p) in geometry.items():
            assert (arch[layer]["kernel"], arch[layer]["stride"], arch[layer]["padding"]) == (k, s, p)
        for size in (64, 224):
            assert _sizes(arch, size) == SIZES[(variant, size)], (variant, size)
        assert c["run_name"] == f"fig6_{variant}_seed1"
        # the recipe is the default run's: data, trainer, optimizer, schedule, init, renormalization
        assert c["data"] == default["data"] and c["trainer"] == default["trainer"]
        for key in ("filter_renorm", "grad_centralization", "filter_health", "model_checkpoint"):
            assert c["callbacks"][key] == default["callbacks"][key], key
        assert not any(c["callbacks"][k]["enabled"] for k in ("top9", "evolution", "occlusion"))
        seen[variant] = c["model"]
    # the zf variant IS the default model; the other differs from it in conv1/conv2 geometry only
    assert seen["zf"] == default["model"]
    for layer in ("conv1", "conv2"):
        for key in ("kernel", "stride", "padding"):
            seen["alexnet_conv1"]["arch"][layer].pop(key)
            default["model"]["arch"][layer].pop(key)
    assert seen["alexnet_conv1"] == default["model"]


# ------------------------------------------------------------------------------------------------------------
# the 2-batch version of the one command: python train.py -m experiment=fig6_shapes (+ debug=smoke, tiny data)


# narrower FC layers for both variants (the comparison is about conv1/conv2): 4 checkpoints of ~20 MB, not ~250 MB
SMALL_FC = ["model.arch.fc6.units=256", "model.arch.fc7.units=256"]
# the default callbacks that fig6 never reads (they only read the model), switched off as the experiment switches
# off top9/evolution/occlusion: the dissection and the training-sample grid; what fig6 reads (filter health,
# checkpoints) and what changes training (renorm, centralization) stay
UNREAD = ["callbacks.dissect.enabled=false", "callbacks.train_samples.enabled=false"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, data_dir) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("fig6") / "sweep"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    args = ["experiment=fig6_shapes", "debug=smoke", *TINY_DATA, f"paths.data_dir={data_dir}", "seed=1,2"]
    args += [*SMALL_FC, *UNREAD]
    r = subprocess.run(
        [sys.executable, "train.py", "-m", *args, "logger=csv", f"hydra.sweep.dir={out}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return out, r.stdout


def _runs(sweep: Path) -> list[dict]:
    """Every job folder read back independently: its fig6 choice and seed (yaml), final metrics.csv row (csv)."""
    runs = []
    for job in sorted(p for p in sweep.iterdir() if (p / ".hydra").is_dir()):
        choice = yaml.safe_load((job / ".hydra" / "hydra.yaml").read_text())["hydra"]["runtime"]["choices"]["fig6"]
        seed = yaml.safe_load((job / ".hydra" / "config.yaml").read_text())["seed"]
        with (job / "metrics.csv").open() as f:
            last = list(csv.DictReader(f))[-1]
        runs.append({"job": job, "variant": choice, "seed": seed, "last": last})
    return runs


def test_fig6_command_trains_both_variants_and_tabulates_their_own_metrics(sweep):
    """Reference: each run's metrics.csv (csv module) and the textbook formulas for the sample std, Cohen's d
    (pooled std) and Welch's t statistic; for ZF (stride 2) the checkpoint column equals the logged aliasing."""
    folder, stdout = sweep
    runs = _runs(folder)
    assert sorted((r["variant"], r["seed"]) for r in runs) == [
        ("alexnet_conv1", 1),
        ("alexnet_conv1", 2),
        ("zf", 1),
        ("zf", 2),
    ]
    assert "| metric | zf (conv1 7x7/s2) | alexnet_conv1 (conv1 11x11/s4) |" in stdout  # printed at the end
    with (folder / "fig6_runs.csv").open() as f:
        table = {(r["variant"], int(r["seed"])): r for r in csv.DictReader(f)}
    columns = {
        "conv1_aliasing": ("health/conv1/aliasing", 1),
        "conv1_dead_pct": ("health/conv1/dead_frac", 100),
        "conv2_dead_pct": ("health/conv2/dead_frac", 100),
        "val_top1_pct": ("val/acc_top1", 100),
    }
    values: dict[str, dict[str, list[float]]] = {}
    for r in runs:
        row = table[(r["variant"], r["seed"])]
        assert Path(row["run"]) == r["job"] and int(row["epochs"]) == int(r["last"]["epoch"]) + 1 == 1
        for col, (key, scale) in columns.items():
            expected = float(r["last"][key]) * scale
            assert float(row[col]) == pytest.approx(expected, rel=1e-9, abs=1e-12), (r["job"], col)
            values.setdefault(col, {}).setdefault(r["variant"], []).append(expected)
        if r["variant"] == "zf":  # cutoff 1/stride = 0.5 is the logged index's own cutoff
            assert float(row["conv1_aliased_at_stride"]) == pytest.approx(float(r["last"]["health/conv1/aliasing"]))
        else:  # stride 4 aliases a wider band: strictly more energy than the index's band
            assert float(row["conv1_aliased_at_stride"]) > float(r["last"]["health/conv1/aliasing"])
    with (folder / "fig6_summary.csv").open() as f:
        summary = {r["column"]: r for r in csv.DictReader(f)}
    for col, by in values.items():
        a, b = by["zf"], by["alexnet_conv1"]
        s = summary[col]
        assert (s["variant_a"], s["variant_b"]) == ("zf", "alexnet_conv1")
        assert float(s["mean_a"]) == pytest.approx(statistics.fmean(a))
        assert float(s["mean_b"]) == pytest.approx(statistics.fmean(b))
        assert float(s["diff"]) == pytest.approx(statistics.fmean(b) - statistics.fmean(a), abs=1e-12)
        sa, sb = statistics.stdev(a), statistics.stdev(b)
        assert float(s["std_a"]) == pytest.approx(sa, abs=1e-12) and float(s["std_b"]) == pytest.approx(sb, abs=1e-12)
        if sa + sb > 0:
            d = (statistics.fmean(b) - statistics.fmean(a)) / math.sqrt((sa**2 + sb**2) / 2)
            t = (statistics.fmean(b) - statistics.fmean(a)) / math.sqrt(sa**2 / 2 + sb**2 / 2)
            assert float(s["cohens_d"]) == pytest.approx(d) and float(s["welch_t"]) == pytest.approx(t)
            assert 0 <= float(s["welch_p"]) <= 1
        else:  # no spread at all: no effect size, said as such
            assert s["cohens_d"] == "" and s["welch_p"] == ""
    md = (folder / "fig6.md").read_text()
    assert "Cohen's d" in md and "Welch" in md and "Not in the table" not in md


def test_fig6_figure_shows_both_variants_conv1_grids_and_conv2_panels(sweep):
    """Reference: the conv1 weights read straight from each run's last.ckpt, drawn by ``filter_grid``; the figure
    holds one column per variant (seed 1 of both), conv1 grid above conv2 top-9 panel."""
    from zfnet_exp.experiments.fig6 import figure_seed, read_run, variant_panels
    from zfnet_exp.viz.fig6 import fig6_figure
    from zfnet_exp.viz.grids import filter_grid

    folder, _ = sweep
    png = Image.open(folder / "fig6.png")
    assert png.size == (1300, 1200)  # 2 columns x 6.5 in, 12 in, 100 dpi
    by_variant = {}
    for r in _runs(folder):
        by_variant.setdefault(r["variant"], []).append(read_run(r["job"]))
    chosen = figure_seed(by_variant)
    assert {v: r.seed for v, r in chosen.items()} == {"zf": 1, "alexnet_conv1": 1}
    filters, top9 = {}, {}
    for variant, run in chosen.items():
        filters[variant], top9[variant] = variant_panels(run, maps=2, device=torch.device("cpu"))
        state = torch.load(run.path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
        w = state["state_dict"]["model.features.conv1.weight"]
        k = VARIANTS[variant]["conv1"][0]
        assert w.shape == (96, 3, k, k)
        assert torch.equal(filters[variant], filter_grid(w, scale=4))
        assert top9[variant].dim() == 3 and top9[variant].shape[0] == 3 and top9[variant].std() > 0
    fig = fig6_figure(filters, top9, {v: "caption" for v in filters})
    axes = fig.axes
    assert len(axes) == 4 and all(len(ax.images) == 1 for ax in axes)
    titles = [ax.get_title() for ax in axes]  # row-major: conv1 row, then conv2 row
    assert titles[0].startswith("zf: conv1") and titles[1].startswith("alexnet_conv1: conv1")
    assert titles[2].startswith("zf: conv2 top-9") and titles[3].startswith("alexnet_conv1: conv2 top-9")
    assert (axes[1].images[0].get_array().shape[:2]) == tuple(filters["alexnet_conv1"].shape[1:])


def _copy_runs(src: Path, dst: Path, keep, started=lambda r: False) -> Path:
    """A sweep folder with the ``keep`` jobs' configs and metrics (no checkpoints: the table alone), and only the
    config of the ``started`` ones (a job that died before its first epoch ended)."""
    dst.mkdir(parents=True)
    shutil.copy(src / "multirun.yaml", dst / "multirun.yaml")
    for r in _runs(src):
        if keep(r) or started(r):
            shutil.copytree(r["job"] / ".hydra", dst / r["job"].name / ".hydra")
        if keep(r):
            shutil.copy(r["job"] / "metrics.csv", dst / r["job"].name / "metrics.csv")
    return dst


def test_fig6_partial_sweeps_say_what_is_missing_and_bad_folders_get_one_paragraph(sweep, tmp_path, capsys):
    """Reference: the jobs removed here by hand. One variant only, or no runs, is a UserError (exit code 2 from
    the command line); a missing seed is listed and the table uses the runs that are there."""
    from zfnet_exp.experiments.fig6 import main, summarize

    folder, _ = sweep
    zf2 = lambda r: r["variant"] == "zf" and r["seed"] == 2  # noqa: E731
    alex2 = lambda r: r["variant"] == "alexnet_conv1" and r["seed"] == 2  # noqa: E731
    partial = _copy_runs(folder, tmp_path / "partial", lambda r: not zf2(r) and not alex2(r), started=alex2)
    result = summarize([partial], figure=False)
    assert [len([r for r in result.runs if r.variant == v]) for v in ("zf", "alexnet_conv1")] == [1, 1]
    job = next(r["job"].name for r in _runs(folder) if alex2(r))
    assert result.skipped == [
        f"{partial / job} (alexnet_conv1, seed 2): no epoch finished",
        "zf, seed 2: no run folder (not started)",
    ]
    assert "zf, seed 2: no run folder" in (partial / "fig6.md").read_text()
    aliasing = next(s for s in result.summary if s["column"] == "conv1_aliasing")
    assert aliasing["std_a"] is None and aliasing["cohens_d"] is None and aliasing["welch_p"] is None

    one = _copy_runs(folder, tmp_path / "one", lambda r: r["variant"] == "alexnet_conv1")
    with pytest.raises(UserError, match=r"two first-layer variants.*alexnet_conv1 \(2 finished\).*zf, seed 1"):
        summarize([one], figure=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    for bad in (one, empty):
        with pytest.raises(SystemExit) as exit_info:
            main([str(bad), "--no-figure"])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n\n") <= 2 and "Traceback" not in err and "experiment=fig6_shapes" in err


def test_fig6_table_is_the_general_comparison(sweep):
    """Fig. 6 is an instance of the general comparison: the end-of-sweep callback's ``compare_summary.csv`` of the
    same runs (variants by the ``fig6`` override, baseline fig6=zf) holds fig6.py's numbers: means, sample stds,
    difference (in fig6's units: percentages are 100 x), Cohen's d and Welch's p; and
    ``--metrics derived/conv1/aliasing_at_stride`` gives the checkpoint column of fig6_runs.csv."""
    from zfnet_exp.experiments.compare import compare
    from zfnet_exp.experiments.fig6 import METRIC

    folder, _ = sweep
    assert (folder / "compare.md").is_file()  # written by the general callback at the end of the multirun
    with (folder / "compare_summary.csv").open() as f:
        general = {(r["variant"], r["metric"]): r for r in csv.DictReader(f)}
    with (folder / "fig6_summary.csv").open() as f:
        fig6 = {r["column"]: r for r in csv.DictReader(f)}
    for column, (key, scale) in METRIC.items():
        if key not in {m for _, m in general}:
            continue  # the derived column: below
        a, b = general[("fig6=zf", key)], general[("fig6=alexnet_conv1", key)]
        s = fig6[column]
        for mine, theirs, k in ((s["mean_a"], a, "mean"), (s["mean_b"], b, "mean"), (s["std_a"], a, "sd")):
            assert float(mine) == pytest.approx(float(theirs[k]) * scale, abs=1e-9)
        assert float(s["diff"]) == pytest.approx(float(b["diff"]) * scale, abs=1e-9)
        for mine, k in ((s["cohens_d"], "cohens_d"), (s["welch_p"], "p_welch")):
            assert (mine == "" and b[k] == "") or float(mine) == pytest.approx(float(b[k]))
    out = folder / "derived"
    result = compare([folder], metrics=["derived/*"], out=out, figure=None, wandb="off", baseline=["fig6=zf"])
    with result.runs_csv.open() as f:
        derived = {Path(r["run"]).name: float(r["derived/conv1/aliasing_at_stride"]) for r in csv.DictReader(f)}
    with (folder / "fig6_runs.csv").open() as f:
        for r in csv.DictReader(f):
            assert derived[Path(r["run"]).name] == pytest.approx(float(r["conv1_aliased_at_stride"]))


def test_fig6_record_holds_the_summary_and_every_run(sweep, tmp_path, capsys):
    """``--record``: the results record's rows are the numbers of fig6_summary.csv and fig6_runs.csv (reference:
    those files read with the csv module), its printed text is the table the command printed."""
    from zfnet_exp.experiments.fig6 import main
    from zfnet_exp.utils.records import read_record

    folder, _ = sweep
    copy = tmp_path / "sweep"
    shutil.copytree(folder, copy)
    main([str(copy), "--no-figure", "--record", str(tmp_path / "results")])
    out = capsys.readouterr().out
    (path,) = (tmp_path / "results" / "fig6").glob("*.json")
    record = read_record(path)
    values = record["values"]
    with (copy / "fig6_summary.csv").open() as f:
        for s in csv.DictReader(f):
            col, a, b = s["column"], s["variant_a"], s["variant_b"]
            for key, name in (("mean_a", f"{a}/mean"), ("std_b", f"{b}/std"), ("diff", f"diff_{b}_minus_{a}"),
                              ("cohens_d", "cohens_d"), ("welch_p", "welch_p")):  # fmt: skip
                expected = float(s[key]) if s[key] else None
                assert values[f"{col}/{name}"] == expected, (col, key)
    with (copy / "fig6_runs.csv").open() as f:
        for r in csv.DictReader(f):
            assert values[f"run/{r['variant']}/seed{r['seed']}/val_top1_pct"] == float(r["val_top1_pct"])
    assert (
        record["command"] == f"python -m zfnet_exp.experiments.fig6 {copy} --no-figure --record {tmp_path / 'results'}"
    )
    assert record["printed"] == out.split("record: ")[0] and "| metric |" in record["printed"]
