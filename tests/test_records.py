"""Results records (:mod:`zfnet_exp.utils.records`): a benchmark's ``--record`` file holds its command, date, machine
and versions and the very numbers the command printed (reference: the printed text, parsed); ``record_run`` keeps a
training run's accuracy, wall time and aliasing trace as its ``metrics.csv`` has them, and a faithfulness analysis'
table as its ``faithfulness.csv`` has it, and the lever command its table (reference: those files read with the csv
module, or written here); ``metrics.csv``'s ``time/elapsed_s`` is the wall clock since the task began, summed over
resumed sessions (reference: the clock)."""

from __future__ import annotations

import csv
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import lightning
import pytest
import torch
from helpers import DIAG_RUN, ROOT, run_analysis
from omegaconf import OmegaConf

from zfnet_exp.utils.records import Figure, read_record, write_record


def _python(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600, check=True)


def _only_record(folder: Path) -> Path:
    (path,) = folder.glob("*.json")
    return path


def _csv(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_loader_record_holds_command_machine_versions_and_the_printed_numbers(tmp_path):
    args = ["--datasets", "caltech101,imagenet", "--workers", "0", "--images", "8", "--batch", "4", "--image-size",
            "64", "--windows", "1", "--batches-per-window", "1", "--root", str(tmp_path / "data"), "--record",
            str(tmp_path / "results")]  # fmt: skip
    before = datetime.now(timezone.utc).replace(microsecond=0)
    out = _python("-m", "zfnet_exp.benchmarks.loader", *args).stdout
    after = datetime.now(timezone.utc)
    record = read_record(_only_record(tmp_path / "results" / "loader"))

    # the numbers: each printed line, parsed, is in the record at the printed precision
    printed = re.findall(r"^(\w+) +\S+ -> +(\d+)px +workers=(\d+) +([\d.]+) img/s \(([\d.]+) per worker\)", out, re.M)
    assert [p[0] for p in printed] == ["caltech101", "imagenet"]
    for dataset, _, workers, total, per_worker in printed:
        assert f"{record['values'][f'{dataset}/workers{workers}/img_per_s']:.1f}" == total
        assert f"{record['values'][f'{dataset}/workers{workers}/img_per_s_per_worker']:.1f}" == per_worker
    assert {f["unit"] for f in record["figures"]} == {"img/s"}
    # the command, the date, the machine, the versions
    assert record["command"] == "python -m zfnet_exp.benchmarks.loader " + shlex.join(args)
    assert before <= datetime.strptime(record["date"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc) <= after
    assert _only_record(tmp_path / "results" / "loader").name.startswith(record["date"][:10] + "_")
    machine = record["machine"]
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    assert machine["cores"] == os.cpu_count() and machine["gpus"] == gpus
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    assert machine["memory_gib"] == pytest.approx(memory, abs=0.1)
    versions = record["versions"]
    assert versions["torch"] == torch.__version__.split("+")[0] and versions["lightning"] == lightning.__version__
    assert versions["python"] == platform.python_version()
    if (ROOT / ".git").exists():
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
        assert versions["git_commit"] == head.strip()
    # the text file: the same header in words, then exactly what the command printed
    txt = _only_record(tmp_path / "results" / "loader").with_suffix(".txt").read_text()
    assert f"# command: {record['command']}\n" in txt and f"torch {versions['torch']}" in txt
    assert record["printed"] == out.split("record: ")[0]


def test_deconvnet_record_rows_are_the_printed_table(tmp_path, capsys):
    from zfnet_exp.benchmarks import deconvnet

    args = ["--size", "64", "--maps", "1", "--k", "2", "--layers", "conv1,conv2", "--threads", "1"]
    result = deconvnet.main([*args, "--record", str(tmp_path)])
    out = capsys.readouterr().out
    values = read_record(_only_record(tmp_path / "deconvnet"))["values"]
    rows = re.findall(r"^ +(conv\d|total) +(\d+) +(\d*) +([\d.]+)s +([\d.]+)s +([\d.]+)s +([\d.]+)s +([\d.]+)x +"
                      r"(\S+) +([\d.]+)$", out, re.M)  # fmt: skip
    assert [r[0] for r in rows] == ["conv1", "conv2", "total"]
    for scope, n, nonzero, zf, sem, uncropped, captum, speedup, exact, lrn in rows:
        for key, text in (("zf", zf), ("captum_sem", sem), ("uncropped", uncropped), ("captum", captum)):
            assert f"{values[f'{scope}/{key}_s']:.2f}" == text
        assert f"{values[f'{scope}/speedup_vs_captum']:.1f}" == speedup
        assert f"{values[f'{scope}/max_rel_diff']:.1e}" == exact and f"{values[f'{scope}/lrn_effect']:.2f}" == lrn
        if scope != "total":
            assert values[f"{scope}/n"] == int(n) == 2 and values[f"{scope}/nonzero"] == int(nonzero)
    crop = re.search(r"crop planner vs uncropped \(same semantics\): ([\d.]+)x", out).group(1)
    assert f"{values['total/crop_vs_uncropped']:.2f}" == crop and values["n"] == result["n"] == 4
    # a second record of the same day and machine is kept beside the first, not over it
    second = write_record("deconvnet", [Figure("n", 4, "projections")], "again\n", tmp_path)
    assert second.stem.endswith("_2") and len(list((tmp_path / "deconvnet").glob("*.json"))) == 2


def _as_run_folder(folder: Path, task: str, overrides: list[str]) -> None:
    """What Hydra writes into a job's folder (tests run tasks in-process, without it)."""
    (folder / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.create({"task_name": task}), folder / ".hydra" / "config.yaml")
    OmegaConf.save(OmegaConf.create(overrides), folder / ".hydra" / "overrides.yaml")


def test_record_run_keeps_accuracy_wall_time_and_aliasing_of_a_training_run(diag_run, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy2(diag_run / "metrics.csv", run / "metrics.csv")
    init_table = Path("diagnostics/dissect/units/step0000000.csv")  # the dissect callback's at_init table
    (run / init_table).parent.mkdir(parents=True)
    shutil.copy2(diag_run / init_table, run / init_table)
    _as_run_folder(run, "train", DIAG_RUN)
    out = _python("-m", "zfnet_exp.experiments.record_run", str(run), "--name", "default_run", "--out",
                  str(tmp_path / "results")).stdout  # fmt: skip
    path = _only_record(tmp_path / "results" / "default_run")
    record = read_record(path)
    rows = [r for r in _csv(run / "metrics.csv") if r["val/err_top1"]]
    values = record["values"]
    assert values["epochs"] == len(rows) == 2
    assert values["val_top1"] == pytest.approx(100 * float(rows[-1]["val/acc_top1"]))
    assert values["val_top5"] == pytest.approx(100 * float(rows[-1]["val/acc_top5"]))
    elapsed = [float(r["time/elapsed_s"]) for r in rows]  # written by the real training run
    assert 0 < elapsed[0] <= elapsed[1] and values["wall_s"] == elapsed[-1]
    trace = [float(r["health/conv1/aliasing"]) for r in rows]
    assert [values[f"epoch_{e:02d}/conv1_aliasing"] for e in (1, 2)] == trace
    assert "conv1 aliasing after each epoch: " + ", ".join(f"{a:.3f}" for a in trace) in out
    # Network Dissection: the initial weights (counted here from the at_init units table) and every epoch
    init = [u for u in _csv(run / init_table) if u["layer"] == "conv5"]
    assert values["epoch_00/conv5_detectors"] == sum(u["detector"] == "True" for u in init)
    assert values["epoch_00/conv5_unique_concepts"] == len({u["concept"] for u in init if u["detector"] == "True"})
    for e, row in enumerate(rows, start=1):
        assert values[f"epoch_{e:02d}/conv5_detectors"] == float(row["dissect/conv5/detectors"])
    assert "dissect initial weights: conv1 " in out and "dissect after epoch 2: conv1 " in out
    assert record["source"]["run_command"] == "python train.py " + " ".join(DIAG_RUN)
    assert record["source"]["run_folder"] == str(run)
    modified = datetime.fromtimestamp((run / "metrics.csv").stat().st_mtime, timezone.utc)
    assert record["date"] == modified.strftime("%Y-%m-%dT%H:%M:%SZ") and path.name.startswith(f"{modified:%Y-%m-%d}_")
    assert record["command"].startswith("python -m zfnet_exp.experiments.record_run ")
    assert record["printed"] == out.split("record: ")[0]


def test_record_run_keeps_the_faithfulness_table(diag_run, tmp_path, capsys):
    from zfnet_exp.experiments.record_run import main

    folder = tmp_path / "analysis"
    overrides = ["analysis=faithfulness", "num_images=3", "analysis.n_steps=4", "analysis.methods=[saliency,gradcam]"]
    run_analysis(diag_run, folder, *overrides)
    analysis_lines = [line for line in capsys.readouterr().out.splitlines() if "deletion_auc" in line]
    _as_run_folder(folder, "analyze", [f"ckpt={diag_run}", *overrides])
    main([str(folder), "--out", str(tmp_path / "results")])
    values = read_record(_only_record(tmp_path / "results" / "faithfulness"))["values"]
    table = _csv(folder / "faithfulness.csv")
    assert [r["method"] for r in table] == ["saliency", "gradcam", "center", "random"]
    for row in table:
        for key in ("deletion_auc", "insertion_auc", "pointing_acc", "pointing_lo", "pointing_hi", "map_seconds"):
            assert values[f"{row['method']}/{key}"] == float(row[key])
    assert values["n_images"] == 3 and values["n_steps"] == 4
    txt = _only_record(tmp_path / "results" / "faithfulness").with_suffix(".txt").read_text()
    assert len(analysis_lines) == 4 and all(line in txt.splitlines() for line in analysis_lines)


def test_record_run_refuses_a_folder_that_is_no_run(tmp_path, capsys):
    from zfnet_exp.experiments.record_run import main

    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path), "--out", str(tmp_path / "results")])
    assert exit_info.value.code == 2 and "is not a run folder" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


def test_metrics_csv_elapsed_counts_from_the_task_start_and_across_a_resume(tmp_path):
    from zfnet_exp.utils.epoch_csv import EpochCSVLogger

    start = time.time() - 10.0
    logger = EpochCSVLogger(tmp_path, started=start)
    logger.log_metrics({"epoch": 0, "val/acc_top1": 0.5}, step=3)
    first = float(_csv(tmp_path / "metrics.csv")[0]["time/elapsed_s"])
    assert 10.0 - 0.05 <= first <= time.time() - start + 0.05  # rounded to 0.1 s
    # a resumed session in the same folder adds its own time to what the earlier one recorded
    resumed_start = time.time() - 5.0
    EpochCSVLogger(tmp_path, started=resumed_start).log_metrics({"epoch": 1, "val/acc_top1": 0.6}, step=6)
    rows = _csv(tmp_path / "metrics.csv")
    assert float(rows[0]["time/elapsed_s"]) == first
    assert first + 5.0 - 0.05 <= float(rows[1]["time/elapsed_s"]) <= first + time.time() - resumed_start + 0.05


def test_levers_record_holds_the_table_of_finished_runs(tmp_path, capsys):
    """Reference: the runs' metrics.csv written here (val top-1, conv1 aliasing after epochs 1 / middle / last);
    the wall time falls back to the run's own ``time/elapsed_s`` when the lever command did not time it."""
    from zfnet_exp.experiments.levers import main, run_dir

    for seed, accs in ((42, (0.5, 0.8, 0.9)), (43, (0.4, 0.7, 0.95))):
        folder = run_dir(tmp_path / "out", "default", seed)
        folder.mkdir(parents=True)
        rows = [{"epoch": e, "val/acc_top1": a, "val/err_top1": 1 - a, "health/conv1/aliasing": 0.8 - 0.1 * e,
                 "time/elapsed_s": 10.0 * (e + 1)} for e, a in enumerate(accs)]  # fmt: skip
        with (folder / "metrics.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    args = ["--out", str(tmp_path / "out"), "--only", "default", "--seeds", "42,43", "--summarize"]
    assert main([*args, "--record", str(tmp_path / "results")]) == 0
    out = capsys.readouterr().out
    record = read_record(_only_record(tmp_path / "results" / "levers"))
    values = record["values"]
    for seed, last in ((42, 90.0), (43, 95.0)):
        assert values[f"default/seed{seed}/val_top1"] == last and values[f"default/seed{seed}/epochs"] == 3
        assert values[f"default/seed{seed}/aliasing_first"] == pytest.approx(0.8)
        assert values[f"default/seed{seed}/aliasing_mid"] == pytest.approx(0.7)
        assert values[f"default/seed{seed}/aliasing_last"] == pytest.approx(0.6)
        assert values[f"default/seed{seed}/wall_s"] == 30.0
    assert record["command"] == "python -m zfnet_exp.experiments.levers " + shlex.join(
        [*args, "--record", str(tmp_path / "results")]
    )
    assert record["printed"] == out.split("record: ")[0] and "| default | 42 | 3 | 90.0 |" in record["printed"]
