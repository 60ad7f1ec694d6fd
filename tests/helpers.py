"""What the test modules share that is not a fixture: the repository's paths, the tiny-data overrides, in-process
Hydra composition of ``conf/train.yaml`` (as ``train.py`` would see it) and of ``analyze.py``, the session's
shared diagnostics run, and the reader of a run's offline W&B log. A plain module (``tests/`` is on the
``pythonpath`` in pyproject.toml) rather than ``conftest.py``, so that ``from helpers import ...`` means this one
file wherever a test sits (a second ``conftest.py`` in a sub-folder would shadow ``from conftest import ...``)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

# the diagnostic figure callbacks, and the dissection's figure (its scalars and table stay: the callback is on by
# default), left out by the tests whose runs only train (they add minutes, not checks)
NO_FIGURE_CALLBACKS = [
    "~callbacks.top9",
    "~callbacks.evolution",
    "~callbacks.occlusion",
    "~callbacks.filter_health",
    "~callbacks.train_samples",
    "callbacks.dissect.figures=false",
]

# tiny but real runs: 64 px inputs, a few images per class
TINY_DATA = [
    "data.image_size=64",
    "data.train_per_class=3",
    "data.val_per_class=2",
    "data.batch_size=8",
    "data.num_workers=0",
]


def compose_task(task: str, overrides: list[str], run_dir: Path):
    """Compose ``conf/<task>.yaml`` with ``overrides`` and register it as the current Hydra config, so that
    ``${hydra:...}`` interpolations resolve exactly as under ``python <task>.py``; the job config proper is
    returned (as ``@hydra.main`` hands it to the task)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(task, overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def compose_train(overrides: list[str], run_dir: Path, data_dir: Path):
    """``train.yaml`` composed as ``python train.py`` would see it (see :func:`compose_task`)."""
    return compose_task("train", [f"paths.data_dir={data_dir}", *overrides], run_dir)


# The one tiny training run with the deconvnet diagnostics that several test files read (two epochs, one
# checkpoint per epoch, W&B offline): trained once per session instead of once per file.
DIAG_LAYERS = ["conv1", "conv2", "conv5"]
DIAG_RUN = [
    "debug=smoke",
    *TINY_DATA,
    "trainer.max_epochs=2",
    "trainer.limit_val_batches=1.0",
    "trainer.num_sanity_val_steps=1",
    "callbacks=[model_checkpoint,top9,evolution,filter_health,dissect]",
    "callbacks.model_checkpoint.save_top_k=-1",  # one checkpoint per epoch: the reference weights
    f"callbacks.top9.layers=[{','.join(DIAG_LAYERS)}]",
    "callbacks.top9.maps=3",
    f"callbacks.evolution.layers=[{','.join(DIAG_LAYERS)}]",
    "callbacks.evolution.maps=3",
    "callbacks.evolution.num_images=16",
    f"callbacks.dissect.layers=[{','.join(DIAG_LAYERS)}]",
    "logger=wandb",
]


def run_analysis(run_dir: Path, out: Path, *overrides: str, logger: str = "none") -> dict:
    """``analyze.py ckpt=<run_dir> ...`` in process (composition exactly as the entry point's)."""
    from zfnet_exp.tasks.analyze import analyze

    overrides = (f"ckpt={run_dir}", f"paths.output_dir={out}", "device=cpu", f"logger={logger}", *overrides)
    return analyze(compose_task("analyze", list(overrides), out))


def wandb_records(folder: Path) -> list[dict]:
    """The records of one offline W&B run folder, read back from its ``.wandb`` file with
    ``wandb leet inspect --json``: what a user would see in the W&B UI after ``wandb sync``."""
    import json
    import subprocess
    import sys

    out = subprocess.run(
        [str(Path(sys.executable).parent / "wandb"), "leet", "inspect", "--json", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def wandb_history(run_dir: Path) -> dict:
    """Every key logged to the run folder's one offline W&B run (last value wins)."""
    runs = sorted((Path(run_dir) / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    logged: dict = {}
    for rec in wandb_records(runs[0]):
        if rec.get("type") == "history":
            logged.update(rec["history"]["item"])
    return logged


def fresh_python(code: str) -> str:
    """What ``code`` prints in a new interpreter (nothing shared with the test's process: a reference for
    "the same seed gives the same choice on every run")."""
    import os
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    ).stdout.strip()


def run_entry_task(task: str, overrides: list[str], run_dir: Path) -> tuple[int, str]:
    """What ``python <task>.py <overrides>`` runs once Hydra has composed the command line, in this process:
    ``run_task(<task>, cfg)`` on the config composed as the script composes it; the exit status and stderr of a
    command line the task refuses (a user error, exit code 2). For refusals of the same kind as those the real
    subprocess tests cover (tests/test_entry_validation.py, tests/test_checkpoint_safety.py, tests/test_faults.py),
    without a new interpreter's start-up (~5 s of imports) each."""
    import contextlib
    import io

    from zfnet_exp.tasks.runner import run_task

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            run_task(_task_function(task), compose_task(task, overrides, run_dir))
        except SystemExit as e:
            return (e.code if isinstance(e.code, int) else 1), err.getvalue()
    return 0, err.getvalue()


def _task_function(task: str):
    """The function ``<task>.py`` hands the composed config to (inside ``run_task``)."""
    from zfnet_exp.tasks.analyze import analyze
    from zfnet_exp.tasks.eval import evaluate
    from zfnet_exp.tasks.train import train
    from zfnet_exp.tasks.transfer import transfer

    return {"train": train, "analyze": analyze, "eval": evaluate, "transfer": transfer}[task]
