"""The paper recipes: every experiment config (and every job of its sweep) composes, resolves and passes the config
checks, and ``zfnet_exp.experiments.collect`` tabulates finished runs beside the paper's numbers (reference: the
runs' own metrics.csv last rows, and paper-facts.md Table 3)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from helpers import CONF, compose_train
from omegaconf import OmegaConf

from zfnet_exp.schemas import validate_config

# the ImageNet recipes; fig6_shapes runs on the embedded data and is composed and run in tests/test_fig6.py
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml") if not p.stem.startswith("fig6"))


def _sweep_params(name: str) -> dict:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={name}", "data.root=/data/imagenet"], return_hydra_config=True)
    return dict(cfg.hydra.sweeper.get("params") or {})


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_recipe_composes(name, tmp_path, data_dir):
    params = _sweep_params(name)
    jobs = [[]] if not params else [[f"{k}={v.strip()}"] for k, vs in params.items() for v in str(vs).split(",")]
    for job in jobs:
        cfg = compose_train([f"experiment={name}", "data.root=/data/imagenet", *job], tmp_path / "run", data_dir)
        OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
        validate_config(cfg)
        assert "paper" in cfg.tags and cfg.data.image_size == 224 and cfg.group != cfg.task_name
    if name == "table3_ablation":  # the whole Table 3 in one sweep
        assert len(jobs) == 12


def _fake_run(root: Path, name: str, model: str, data: str, rows: list[dict], data_dir) -> Path:
    run = root / name
    cfg = compose_train(
        [f"model={model}", f"data={data}", *(["data.root=/x"] if data == "imagenet" else [])], run, data_dir
    )
    (run / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, run / ".hydra" / "config.yaml")
    OmegaConf.save({"hydra": {"runtime": {"choices": {"data": data, "model": model}}}}, run / ".hydra" / "hydra.yaml")
    with (run / "metrics.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return run


def test_collect_tabulates_runs_beside_the_paper(tmp_path, data_dir):
    from zfnet_exp.experiments.collect import collect

    sweep = tmp_path / "sweep"
    row = lambda e, t1, v1, v5: {"epoch": e, "train/err_top1": t1, "val/err_top1": v1, "val/err_top5": v5}  # noqa: E731
    _fake_run(sweep, "0", "zfnet", "imagenet", [row(0, 0.9, 0.8, 0.6), row(1, 0.35, 0.40, 0.18)], data_dir)
    _fake_run(sweep, "1", "alexnet_no34", "imagenet", [row(0, 0.5, 0.46, 0.23)], data_dir)
    _fake_run(sweep, "2", "zfnet", "shapes", [row(0, 0.1, 0.05, 0.0)], data_dir)
    rows, csv_path, md_path = collect([sweep])
    by_run = {Path(r["run"]).name: r for r in rows}
    z = by_run["0"]
    assert (z["epochs"], z["train_top1"], z["val_top1"], z["val_top5"]) == (2, 35.0, 40.0, 18.0)
    assert (z["paper_val_top1"], z["paper_val_top5"], z["delta_val_top1"]) == (38.4, 16.5, 1.6)
    assert by_run["1"]["paper_val_top1"] == 45.4 and by_run["1"]["delta_val_top5"] == 0.9
    assert "paper_val_top1" not in by_run["2"]  # not ImageNet: no paper number beside it
    with csv_path.open() as f:
        assert len(list(csv.DictReader(f))) == 3
    assert md_path.read_text().count("\n| ") == 4  # header + 3 rows


def test_collect_command_line(tmp_path, data_dir, capsys):
    """``python -m zfnet_exp.experiments.collect SWEEP --out DIR`` (a real subprocess): exit 0, the table it prints
    is collected.md, collected.csv holds each run's last validated epoch as a percentage (reference: the rows
    written into the runs' metrics.csv); a folder without runs is one ``error:`` paragraph, exit code 2 (the
    command's ``main`` in this process: the subprocess above already covers the entry point, a second one would
    only pay the imports again)."""
    import os
    import subprocess
    import sys

    from helpers import ROOT

    def cli(*args):
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        cmd = [sys.executable, "-m", "zfnet_exp.experiments.collect", *map(str, args)]
        return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)

    sweep, out = tmp_path / "sweep", tmp_path / "tables"
    row = lambda e, t1, v1, v5: {"epoch": e, "train/err_top1": t1, "val/err_top1": v1, "val/err_top5": v5}  # noqa: E731
    _fake_run(sweep, "0", "zfnet", "shapes", [row(0, 0.9, 0.8, 0.6), row(1, 0.25, 0.125, 0.0)], data_dir)
    _fake_run(sweep, "1", "alexnet", "shapes", [row(0, 0.5, 0.375, 0.0625)], data_dir)
    out.mkdir()
    r = cli(sweep, "--out", out)
    assert r.returncode == 0, r.stderr[-3000:]
    md = (out / "collected.md").read_text()
    assert r.stdout.startswith(md) and r.stdout.strip().endswith(
        f"2 runs -> {out / 'collected.csv'}, {out / 'collected.md'}"
    )
    with (out / "collected.csv").open() as f:
        got = {Path(r["run"]).name: r for r in csv.DictReader(f)}
    assert [(got[n]["epochs"], got[n]["val_top1"], got[n]["val_top5"]) for n in ("0", "1")] == [
        ("2", "12.5", "0.0"),
        ("1", "37.5", "6.25"),
    ]
    from zfnet_exp.experiments.collect import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "tables")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.strip().startswith("error: no finished or running training runs"), err
    assert err.strip().count("\n") == 0 and "Traceback" not in err
