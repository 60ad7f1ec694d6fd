"""``python -m zfnet_exp.experiments.compare``: any sweep's runs grouped into variants by their overrides, with
per-variant intervals and tests against a baseline. References: ``scipy.stats`` computed here on the values
written into generated run folders (real layout: .hydra/config.yaml, hydra.yaml, overrides.yaml, metrics.csv);
Holm's adjustment by its textbook definition; a real tiny sweep through the local launcher read back with the
csv module; the side-by-side figure measured on its rendered pixels against each run's own PNG files."""

from __future__ import annotations

import csv
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import ROOT, TINY_DATA, compose_train, wandb_records
from omegaconf import OmegaConf
from PIL import Image
from scipy import stats

from zfnet_exp.experiments.compare import SUMMARY_COLUMNS, analyze, compare, main
from zfnet_exp.experiments.stats import holm

OLD = time.time() - 3 * 3600  # files written "hours ago": a stopped run, not a running one


@pytest.fixture(scope="module")
def base_cfg(tmp_path_factory, data_dir):
    cfg = compose_train(["trainer.max_epochs=2"], tmp_path_factory.mktemp("cfg") / "run", data_dir)
    return OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))


def make_run(folder: Path, cfg, overrides: dict, rows: list[dict], choices: dict | None = None, **config) -> Path:
    """A run folder in train.py's layout with these overrides (also applied to the config) and metrics rows."""
    (folder / ".hydra").mkdir(parents=True)
    cfg = cfg.copy()
    for key, value in {**overrides, **config}.items():
        if not OmegaConf.is_config(OmegaConf.select(cfg, key)):  # a group choice (model=...) stays a node
            OmegaConf.update(cfg, key, value, force_add=True)
    OmegaConf.save(cfg, folder / ".hydra" / "config.yaml")
    hydra = {"hydra": {"runtime": {"choices": choices or {"data": "shapes", "model": "zfnet"}}}}
    OmegaConf.save(hydra, folder / ".hydra" / "hydra.yaml")
    OmegaConf.save([f"{k}={v}" for k, v in overrides.items()], folder / ".hydra" / "overrides.yaml")
    if rows:
        with (folder / "metrics.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
            writer.writeheader()
            writer.writerows(rows)
    for p in [folder, *folder.rglob("*")]:
        os.utime(p, (OLD, OLD))
    return folder


def rows_for(final: dict, epochs: int = 2) -> list[dict]:
    """``epochs`` rows; the last one holds ``final``; the first a worse val error (so the best epoch is the last)."""
    rows = [{"epoch": e, "step": 2 * e + 1, "val/err_top1": 0.99, "time/epoch_s": 10.0 + e} for e in range(epochs)]
    rows[-1].update(final)
    return rows


WD = "model.first_conv.weight_decay"


@pytest.fixture
def generated(tmp_path, base_cfg):
    """3 variants of the first layer's weight decay: n = 3, 4 and 1 finished (plus one failed run of the last)."""
    rng = np.random.default_rng(0)
    sweep = tmp_path / "sweep"
    values = {"0.0005": rng.normal(0.40, 0.02, 3), "5": rng.normal(0.45, 0.05, 4), "20": rng.normal(0.6, 0.1, 1)}
    health = {}
    job = 0
    for wd, errs in values.items():
        for seed, err in enumerate(errs, start=1):
            h = float(rng.uniform(0.1, 0.8))
            health[(wd, seed)] = h
            final = {"val/err_top1": float(err), "health/conv1/aliasing": h, "data/skipped_files": 0.0}
            make_run(sweep / str(job), base_cfg, {WD: wd, "seed": seed}, rows_for(final))
            job += 1
    make_run(sweep / str(job), base_cfg, {WD: "20", "seed": 2}, rows_for({"val/err_top1": 0.1}, epochs=1))
    return sweep, values, health


def _read(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


def _f(s: str) -> float | None:
    return float(s) if s != "" else None


def test_statistics_match_scipy_on_generated_runs(generated):
    """Reference: scipy.stats (t.ppf intervals, Welch's ttest_ind and its confidence_interval), Cohen's d by its
    formula, Holm by its definition; unequal n (3 vs 4) and a variant with one finished run (no interval)."""
    sweep, values, _ = generated
    result = compare([sweep], figure=None, wandb="off")
    with result.summary_csv.open() as f:
        assert next(csv.reader(f)) == SUMMARY_COLUMNS
    summary = {(r["variant"], r["metric"]): r for r in _read(result.summary_csv)}
    base = values["0.0005"]
    p_raw = {}
    for wd, xs in values.items():
        row = summary[(f"{WD}={wd}", "val/err_top1")]
        assert int(row["n"]) == len(xs)  # the failed run of wd=20 is not in the statistics
        assert _f(row["mean"]) == pytest.approx(np.mean(xs))
        if len(xs) > 1:
            sd = np.std(xs, ddof=1)
            half = stats.t.ppf(0.975, len(xs) - 1) * sd / math.sqrt(len(xs))
            assert _f(row["sd"]) == pytest.approx(sd)
            assert (_f(row["ci_low"]), _f(row["ci_high"])) == pytest.approx((np.mean(xs) - half, np.mean(xs) + half))
        else:
            assert row["sd"] == row["ci_low"] == row["ci_high"] == ""
        if wd == "0.0005":  # the baseline (first in sweep order): no difference columns
            assert all(row[c] == "" for c in SUMMARY_COLUMNS[7:])
            continue
        assert _f(row["diff"]) == pytest.approx(np.mean(xs) - np.mean(base))
        if len(xs) == 1:
            assert row["diff_ci_low"] == row["cohens_d"] == row["p_welch"] == row["p_holm"] == ""
            continue
        test = stats.ttest_ind(xs, base, equal_var=False)
        ci = test.confidence_interval(0.95)
        pooled = math.sqrt(((len(xs) - 1) * np.var(xs, ddof=1) + 2 * np.var(base, ddof=1)) / (len(xs) + 1))
        assert _f(row["p_welch"]) == pytest.approx(test.pvalue)
        assert (_f(row["diff_ci_low"]), _f(row["diff_ci_high"])) == pytest.approx((ci.low, ci.high))
        assert _f(row["cohens_d"]) == pytest.approx((np.mean(xs) - np.mean(base)) / pooled)
        p_raw[wd] = test.pvalue
    assert _f(summary[(f"{WD}=5", "val/err_top1")]["p_holm"]) == pytest.approx(p_raw["5"])  # one test: unadjusted
    md = result.markdown.read_text()
    assert f"One finished run only (no interval, no test): {WD}=20" in md
    assert "failed" in md and "Not in the statistics" in md
    # every final-epoch scalar, the best epoch's error and the summed epoch times are metrics
    metrics = {m for _, m in summary}
    assert {"health/conv1/aliasing", "data/skipped_files", "best/val/err_top1", "time/wall_s"} <= metrics
    assert _f(summary[(f"{WD}=5", "time/wall_s")]["mean"]) == pytest.approx(21.0)  # 10 + 11 s per run
    runs = _read(result.runs_csv)
    assert len(runs) == 9 and {r["status"] for r in runs} == {"finished", "failed"}
    assert [r["seed"] for r in runs if r["variant"] == f"{WD}=5"] == ["1", "2", "3", "4"]
    assert {r["epochs"] for r in runs if r["status"] == "failed"} == {"1"}


def test_holm_against_its_definition():
    """Reference: Holm (1979): the i-th smallest of m p-values times (m - i + 1), made monotone, capped at 1."""
    rng = np.random.default_rng(1)
    for _ in range(50):
        ps = list(rng.uniform(0, 0.2, rng.integers(1, 7)))
        order = np.argsort(ps)
        m = len(ps)
        expected = [0.0] * m
        for rank, i in enumerate(order):
            expected[i] = min(1.0, max(min(1.0, (m - r) * ps[order[r]]) for r in range(rank + 1)))
        assert holm(ps) == pytest.approx(expected)
    assert holm([0.01, None, 0.04]) == pytest.approx([0.02, None, 0.04])


def test_baseline_choice_and_holm_over_variants(generated):
    sweep, values, _ = generated
    c = analyze([sweep], baseline=[f"{WD}=5"], metrics=["val/err_top1", "health/*"])
    (table,) = c.tables
    assert table.baseline == f"{WD}=5" and table.variants[0] == f"{WD}=5"
    assert c.metrics == ["val/err_top1", "health/conv1/aliasing"]
    rows = {r["variant"]: r for r in table.summary if r["metric"] == "health/conv1/aliasing"}
    assert rows[f"{WD}=5"]["diff"] is None and rows[f"{WD}=20"]["p_holm"] is None  # n = 1: no test
    assert rows[f"{WD}=0.0005"]["p_holm"] == pytest.approx(rows[f"{WD}=0.0005"]["p_welch"])


def _bad(args: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().startswith("error:") and err.strip().count("\n\n") == 0
    return err


def test_bad_input_is_one_paragraph_exit_2_and_writes_nothing(generated, tmp_path, capsys):
    sweep, _, _ = generated
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "No training runs found" in _bad([str(empty)], capsys)
    assert "matches no variant" in _bad([str(sweep), "--baseline", f"{WD}=7"], capsys)
    assert "no run logged such a metric" in _bad([str(sweep), "--metrics", "val/nonsense"], capsys)
    assert "not a diagnostic key" in _bad([str(sweep), "--figure", "filters"], capsys)
    assert not list(sweep.glob("compare*")) and not list(empty.iterdir())


def test_runs_of_different_input_sizes_are_never_pooled(tmp_path, base_cfg):
    """Two sweeps of the same variants at different input sizes (not a swept key): two tables, said so."""
    for size, folder in ((64, "a"), (128, "b")):
        for job, (wd, seed) in enumerate([("0.0005", 1), ("0.0005", 2), ("5", 1), ("5", 2)]):
            final = {"val/err_top1": 0.3 + 0.01 * job + size / 1000}
            make_run(tmp_path / folder / str(job), base_cfg, {WD: wd, "seed": seed}, rows_for(final),
                     **{"data.image_size": size})  # fmt: skip
    c = analyze([tmp_path / "a", tmp_path / "b"])
    assert len(c.tables) == 2 and "never pooled" in c.notes[0]
    for table, size in zip(c.tables, (64, 128), strict=True):
        assert f"{size} px" in table.label
        n = {r["variant"]: r["n"] for r in table.summary if r["metric"] == "val/err_top1"}
        assert sorted(n.values()) == [2, 2] and all(v.startswith(f"[{table.label}]") for v in n)


def test_table3_layout_beside_the_paper(tmp_path, base_cfg):
    """ImageNet runs of Table 3 models: the paper's numbers beside ours (paper.py TABLE3) in Table 3's layout."""
    for job, (model, seed, err) in enumerate([("zfnet", 1, 0.40), ("zfnet", 2, 0.42), ("alexnet", 1, 0.45)]):
        final = {"val/err_top1": err, "val/err_top5": err / 2, "train/err_top1": err - 0.05}
        make_run(tmp_path / "s" / str(job), base_cfg, {"model": model, "seed": seed}, rows_for(final),
                 choices={"data": "imagenet", "model": model})  # fmt: skip
    md = compare([tmp_path / "s"], figure=None, wandb="off").markdown.read_text()
    assert "Paper Table 3 layout" in md
    line = next(x for x in md.splitlines() if x.startswith("| Our model (Fig. 3)"))
    half = stats.t.ppf(0.975, 1) * np.std([40, 42], ddof=1) / math.sqrt(2)
    assert f"| 41.0 ± {half:.1f} (n=2) | 38.4 |" in line and "| 16.5 |" in line
    assert "| Our replication of Krizhevsky, 1 convnet | 40.0 (n=1) | 35.1 | 45.0 (n=1) | 40.5 |" in md


# ------------------------------------------------------------------------------------------------------------
# a real tiny sweep: 2 variants (conv1 kernel 7 / 5) x 2 seeds, 2 epochs each, through Hydra's basic launcher (what
# `python train.py -m` uses by default: the jobs one after another in the submitting process; submitit's executors
# are tests/test_launch.py's, where each job is a process of its own)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, data_dir, wandb_home) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("compare") / "sweep"
    args = [
        "trainer=cpu",
        "debug=smoke",
        *TINY_DATA,
        "trainer.max_epochs=2",
        "model.arch.fc6.units=64",
        "model.arch.fc7.units=64",
        "callbacks=[model_checkpoint,filter_health]",
        "logger=csv",
        "model.arch.conv1.kernel=7,5",
        "seed=1,2",
    ]
    r = subprocess.run(
        [sys.executable, "train.py", "-m", *args, f"paths.data_dir={data_dir}", f"hydra.sweep.dir={out}"],
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return out, r.stdout


def _jobs(folder: Path) -> list[dict]:
    out = []
    for job in sorted(p for p in folder.iterdir() if p.name.isdigit()):
        overrides = OmegaConf.load(job / ".hydra" / "overrides.yaml")
        kernel = next(o.split("=")[1] for o in overrides if o.startswith("model.arch.conv1.kernel="))
        seed = next(o.split("=")[1] for o in overrides if o.startswith("seed="))
        out.append({"job": job, "kernel": kernel, "seed": seed, "rows": _read(job / "metrics.csv")})
    return out


def test_end_of_sweep_callback_groups_by_overrides(sweep):
    """Reference: each job's overrides.yaml and metrics.csv read here. The Hydra callback wrote the comparison at
    the end of the multirun: 2 variants by the only differing override, 2 seeds each, means of the final rows."""
    folder, stdout = sweep
    assert "| metric | variant | n |" in stdout and (folder / "compare.md").is_file()
    jobs = _jobs(folder)
    assert sorted((j["kernel"], j["seed"]) for j in jobs) == [("5", "1"), ("5", "2"), ("7", "1"), ("7", "2")]
    summary = {(r["variant"], r["metric"]): r for r in _read(folder / "compare_summary.csv")}
    assert {v for v, _ in summary} == {"model.arch.conv1.kernel=7", "model.arch.conv1.kernel=5"}
    for kernel in ("7", "5"):
        for metric in ("val/err_top1", "health/conv1/aliasing", "time/train_img_per_s"):
            xs = [float(j["rows"][-1][metric]) for j in jobs if j["kernel"] == kernel]
            row = summary[(f"model.arch.conv1.kernel={kernel}", metric)]
            assert int(row["n"]) == 2 and float(row["mean"]) == pytest.approx(statistics.fmean(xs), abs=1e-9)
        wall = [sum(float(r["time/epoch_s"]) for r in j["rows"]) for j in jobs if j["kernel"] == kernel]
        assert float(summary[(f"model.arch.conv1.kernel={kernel}", "time/wall_s")]["mean"]) == pytest.approx(
            statistics.fmean(wall)
        )
    assert summary[("model.arch.conv1.kernel=7", "val/err_top1")]["diff"] == ""  # the first variant: baseline
    runs = _read(folder / "compare_runs.csv")
    assert [(r["status"], r["epochs"]) for r in runs] == [("finished", "2")] * 4


def test_partly_finished_sweep_lists_what_is_missing(sweep, tmp_path):
    """A copy of the sweep where one job stopped after epoch 1 and one never started: the first is listed as
    failed, the second as not started (from multirun.yaml), and the statistics use the finished runs only."""
    folder, _ = sweep
    part = tmp_path / "part"
    shutil.copytree(folder, part, ignore=shutil.ignore_patterns("compare*", "checkpoints", ".submitit"))
    jobs = _jobs(part)
    stopped = next(j["job"] for j in jobs if (j["kernel"], j["seed"]) == ("5", "2"))
    gone = next(j["job"] for j in jobs if (j["kernel"], j["seed"]) == ("7", "2"))
    shutil.rmtree(gone)
    with (stopped / "metrics.csv").open("w", newline="") as f:
        rows = _read(folder / stopped.name / "metrics.csv")[:1]
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    for p in [part, *part.rglob("*")]:
        os.utime(p, (OLD, OLD))
    c = analyze([part])
    status = {(j.variant, j.replicate): (j.status, j.epochs) for j in c.jobs}
    assert status[("model.arch.conv1.kernel=5", "seed=2")] == ("failed", 1)
    (pending,) = c.pending
    assert {"model.arch.conv1.kernel=7", "seed=2", "trainer.max_epochs=2", *TINY_DATA} <= set(pending)
    n = {r["variant"]: r["n"] for r in c.tables[0].summary if r["metric"] == "val/err_top1"}
    assert n == {"model.arch.conv1.kernel=7": 1, "model.arch.conv1.kernel=5": 1}
    # a live lock file makes a stopped-looking run "running"; a lock of a dead process of this host does not
    lock = stopped / ".lock"
    lock.write_text(f'{{"pid": {os.getpid()}, "host": "{os.uname().nodename}"}}')
    assert analyze([part]).active
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.write_text(f"{dead.pid} {os.uname().nodename}")
    assert next(j.status for j in analyze([part]).jobs if j.run.path == stopped) == "failed"


def test_side_by_side_figure_columns_rows_and_pixels(sweep, tmp_path):
    """Reference: each run's own diagnostics/diag/filters/conv1/step*.png (the FilterHealth callback's), scaled
    to the column width by PIL here; each rendered cell matches its run's file for that epoch better than any
    other cell's file. Without the files, the final epoch is drawn from last.ckpt by ``filter_figure``."""
    from zfnet_exp.experiments.side_by_side import COLUMN_PX, epoch_checkpoint, recorded_file, side_by_side
    from zfnet_exp.runs import Run
    from zfnet_exp.viz.grids import filter_figure

    folder, _ = sweep
    result = compare([folder], out=tmp_path, epochs=[1, 2], wandb="off")
    png = np.asarray(Image.open(tmp_path / "compare_diag_filters_conv1.png").convert("RGB"), dtype=np.float32)
    jobs = {(j["kernel"], j["seed"]): j["job"] for j in _jobs(folder)}
    # seed 1: the lowest replicate both variants share; labels and title as the command writes them
    labels = {k: f"model.arch.conv1.kernel={k}\nseed=1, finished" for k in ("7", "5")}
    columns = {labels[k]: Run(jobs[(k, "1")]) for k in ("7", "5")}
    title = "diag/filters/conv1: one column per variant, one row per epoch"
    canvas, boxes, sources = side_by_side(columns, "diag/filters/conv1", [1, 2], title)
    assert png.shape[:2] == (canvas.height, canvas.width) and set(sources.values()) == {"file"}
    xs, ys = sorted({b[0] for b in boxes.values()}), sorted({b[1] for b in boxes.values()})
    assert len(xs) == 2 and len(ys) == 2  # one column per variant, one row per requested epoch
    refs = {}
    for (label, epoch), (_, _, w, h) in boxes.items():
        with Image.open(recorded_file(columns[label], "diag/filters/conv1", epoch)) as im:
            src = im.convert("RGB")
        ref = src.resize((COLUMN_PX, round(src.height * COLUMN_PX / src.width)), Image.Resampling.LANCZOS)
        refs[(label, epoch)] = np.asarray(ref, dtype=np.float32)
        assert (w, h) == ref.size
    for key, (x, y, w, h) in boxes.items():
        crop = png[y : y + h, x : x + w]
        errors = {k: np.abs(crop - r).mean() if r.shape == crop.shape else 255.0 for k, r in refs.items()}
        assert errors[key] < 0.5 and min(errors, key=errors.get) == key, errors
    assert len(result.figures) == 1
    # callback off: the diagnostics removed, the last epoch drawn from the checkpoint by the callback's function
    bare = tmp_path / "bare"
    shutil.copytree(jobs[("5", "1")], bare, ignore=shutil.ignore_patterns("diagnostics"))
    canvas, boxes, sources = side_by_side({"k5": Run(bare)}, "diag/filters/conv1", [2])
    assert sources[("k5", 2)] == "checkpoint"
    ckpt = epoch_checkpoint(Run(bare), 2)  # epoch001-*.ckpt when epoch 2 was the best, else last.ckpt
    weight = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]["model.features.conv1.weight"]
    assert weight.shape[-1] == 5
    drawn = filter_figure(
        weight, ["conv1 filters (96 x 5x5), epoch 2", f"drawn from {ckpt.name} (the callback was off)"]
    )
    ref = drawn.to_pil().resize((COLUMN_PX, round(drawn.height * COLUMN_PX / drawn.width)), Image.Resampling.LANCZOS)
    x, y, w, h = boxes[("k5", 2)]
    crop = np.asarray(canvas.to_pil(), dtype=np.float32)[y : y + h, x : x + w]
    assert np.abs(crop - np.asarray(ref, dtype=np.float32)).mean() < 1.0


def test_wandb_run_in_the_sweeps_group_and_watch(generated, wandb_home, capsys):
    """Reference: the offline W&B run's own records (``wandb leet inspect``): one run, job type ``compare``, in the
    group named after the sweep folder, holding the summary table. ``--watch`` prints the table again while a
    run holds a live lock file and returns once it is gone."""
    import json
    import threading

    sweep, _, _ = generated
    result = compare([sweep], figure=None, wandb="on")
    (folder,) = sorted((sweep / "wandb").glob("offline-run-*"))
    records = wandb_records(folder)
    run = next(r["run"] for r in records if r.get("type") == "run")
    assert (run["job_type"], run["run_group"]) == ("compare", sweep.name)
    logged = {k for r in records if r.get("type") == "history" for k in r["history"]["item"]}
    assert {k.split(".")[0] for k in logged} >= {"compare/summary", "compare/runs"}  # tables: "<key>._type" ...
    assert result.wandb_dir == sweep / "wandb"

    from zfnet_exp.experiments.compare import watch

    lock = sweep / "8" / ".lock"  # the run of wd=20 that stopped after 1 of 2 epochs
    lock.write_text(json.dumps({"pid": os.getpid(), "host": os.uname().nodename}))
    printed: list[str] = []

    def release() -> None:
        """The run ends (its lock goes) once the table was printed twice, or after 2 minutes (then the
        assertion below fails): a condition, not a fixed wait, so a slow machine cannot end it early."""
        deadline = time.time() + 120
        while time.time() < deadline and "".join(printed).count("# Comparison") < 2:
            printed.append(capsys.readouterr().out)
            time.sleep(0.05)
        lock.unlink()

    releaser = threading.Thread(target=release)
    releaser.start()
    kw = {"baseline": None, "metrics": ["val/err_top1"], "replicates": ["seed"], "plugins": []}
    watch([str(sweep)], kw, every=0.5)
    releaser.join()
    out = "".join(printed) + capsys.readouterr().out
    assert out.count("# Comparison") >= 2 and "running" in out and "| val/err_top1 |" in out
    assert not lock.exists()  # watch returned after the run ended


def test_status_of_a_fresh_unfinished_run(tmp_path, base_cfg):
    """A run stopped after 1 of 2 epochs whose files were just written counts as running (no lock file to say
    otherwise) while the sweep may go on, and as failed at the end of the multirun (``ended``); a finished run is
    finished either way."""
    make_run(tmp_path / "s" / "0", base_cfg, {WD: "5", "seed": 1}, rows_for({"val/err_top1": 0.3}))
    fresh = make_run(tmp_path / "s" / "1", base_cfg, {WD: "5", "seed": 2}, rows_for({"val/err_top1": 0.3}, 1))
    now = time.time()
    os.utime(fresh / "metrics.csv", (now, now))
    assert [j.status for j in analyze([tmp_path / "s"]).jobs] == ["finished", "running"]
    assert [j.status for j in analyze([tmp_path / "s"], ended=True).jobs] == ["finished", "failed"]
    # the save-on-signal of a preemption writes last.ckpt in the middle of an epoch: "preempted" (awaiting requeue)
    (fresh / "checkpoints").mkdir()
    progress = {"fit_loop": {"epoch_loop.batch_progress": {"is_last_batch": False}}}
    torch.save(
        {"state_dict": {}, "hyper_parameters": {"name": "zfnet"}, "loops": progress},
        fresh / "checkpoints" / "last.ckpt",
    )
    assert [j.status for j in analyze([tmp_path / "s"], ended=True).jobs] == ["finished", "preempted"]


def test_status_from_the_run_lock(tmp_path, base_cfg):
    """Reference: a real process holding the POSIX lock of ``.run.lock`` (as ``zfnet_exp.utils.run_lock`` does
    while training): the run is running while that process lives, and failed once it is killed (the file a crash
    leaves behind is not locked), even though its files are fresh."""
    run = make_run(tmp_path / "s" / "0", base_cfg, {WD: "5", "seed": 1}, rows_for({"val/err_top1": 0.3}, 1))
    lock = run / ".run.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import fcntl,os,time; fd=os.open({str(lock)!r}, os.O_RDWR|os.O_CREAT); "
         "fcntl.lockf(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        now = time.time()
        os.utime(run / "metrics.csv", (now, now))
        assert [j.status for j in analyze([tmp_path / "s"]).jobs] == ["running"]
    finally:
        holder.kill()
        holder.wait()
    assert lock.is_file() and [j.status for j in analyze([tmp_path / "s"]).jobs] == ["failed"]


def test_record_holds_the_summary(generated, tmp_path, capsys):
    """``--record``: the results record's values are compare_summary.csv's cells (reference: that file read with
    the csv module), and its command is the one typed."""
    from zfnet_exp.utils.records import read_record

    sweep, _, _ = generated
    main([str(sweep), "--figure", "none", "--wandb", "off", "--record", str(tmp_path / "results")])
    (path,) = (tmp_path / "results" / "compare").glob("*.json")
    record = read_record(path)
    for row in _read(sweep / "compare_summary.csv"):
        for k in ("n", "mean", "ci_low", "p_holm"):
            assert record["values"][f"{row['variant']}/{row['metric']}/{k}"] == _f(row[k]), (row["variant"], k)
    assert record["command"].startswith(f"python -m zfnet_exp.experiments.compare {sweep}")
    assert "| metric | variant |" in capsys.readouterr().out
