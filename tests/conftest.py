"""Shared fixtures: offline W&B in a temp folder, one small generated dataset per session, in-process
Hydra composition of ``conf/train.yaml`` (as ``train.py`` would see it), and the tiny models the
diagnostics tests use. (One conftest for the whole suite: a second ``conftest.py`` under ``tests/diagnostics``
would shadow this one for the modules that ``from conftest import ...``.)"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

# tests never touch the network or the user's W&B settings
os.environ["WANDB_MODE"] = "offline"
os.environ.setdefault("WANDB_SILENT", "true")
os.environ["PROJECT_ROOT"] = str(ROOT)

import zfnet_exp.schemas  # noqa: E402,F401  (registers the structured-config schemas with Hydra)
import zfnet_exp.utils.resolvers  # noqa: E402,F401

# tiny but real runs: 64 px inputs, a few images per class
TINY_DATA = [
    "data.image_size=64",
    "data.train_per_class=3",
    "data.val_per_class=2",
    "data.batch_size=8",
    "data.num_workers=0",
]


@pytest.fixture(autouse=True)
def _single_thread():
    """One intra-op thread: on a 2-core machine OpenMP oversubscription makes small convs 10x slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def wandb_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("wandb_home")
    for var in ("WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_ARTIFACT_DIR"):
        os.environ[var] = str(home)
    return home


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """A session-wide cache folder for generated datasets (each parameter set is generated once)."""
    return tmp_path_factory.mktemp("data")


def compose_train(overrides: list[str], run_dir: Path, data_dir: Path):
    """Compose ``train.yaml`` with ``overrides`` and register it as the current Hydra config, so that
    ``${hydra:...}`` interpolations resolve exactly as under ``python train.py``."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"paths.data_dir={data_dir}", *overrides], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]  # the job config proper, as @hydra.main hands it to the task
    return cfg


# The one tiny training run with the deconvnet diagnostics that several test files read (two epochs, one
# checkpoint per epoch, W&B offline): trained once per session instead of once per file.
DIAG_LAYERS = ["conv1", "conv2", "conv5"]
DIAG_RUN = [
    "debug=smoke",
    *TINY_DATA,
    "trainer.max_epochs=2",
    "trainer.limit_val_batches=1.0",
    "trainer.num_sanity_val_steps=1",
    "callbacks=[model_checkpoint,top9,evolution,filter_health]",
    "callbacks.model_checkpoint.save_top_k=-1",  # one checkpoint per epoch: the reference weights
    f"callbacks.top9.layers=[{','.join(DIAG_LAYERS)}]",
    "callbacks.top9.maps=3",
    f"callbacks.evolution.layers=[{','.join(DIAG_LAYERS)}]",
    "callbacks.evolution.maps=3",
    "callbacks.evolution.num_images=16",
    "logger=wandb",
]


@pytest.fixture(scope="session")
def diag_run(tmp_path_factory, data_dir, wandb_home) -> Path:
    """Run folder of ``train`` with :data:`DIAG_RUN` (read-only for the tests that share it)."""
    from zfnet_exp.tasks.runner import run_task
    from zfnet_exp.tasks.train import train

    run_dir = tmp_path_factory.mktemp("diag_run")
    run_task(train, compose_train(DIAG_RUN, run_dir, data_dir))
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    return run_dir


def run_analysis(run_dir: Path, out: Path, *overrides: str, logger: str = "none") -> dict:
    """``analyze.py ckpt=<run_dir> ...`` in process (composition exactly as the entry point's)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from zfnet_exp.tasks.analyze import analyze

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "analyze",
            overrides=[f"ckpt={run_dir}", f"paths.output_dir={out}", "device=cpu", f"logger={logger}", *overrides],
        )
    return analyze(cfg)


def wandb_history(run_dir: Path) -> dict:
    """Every key logged to the run folder's one offline W&B run (last value wins), read back from the ``.wandb``
    file with ``wandb leet inspect --json``: what a user would see in the W&B UI after ``wandb sync``."""
    import json
    import subprocess
    import sys

    runs = sorted((Path(run_dir) / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    out = subprocess.run(
        [str(Path(sys.executable).parent / "wandb"), "leet", "inspect", "--json", str(runs[0])],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    logged: dict = {}
    for line in out.splitlines():
        if line.strip():
            rec = json.loads(line)
            if rec.get("type") == "history":
                logged.update(rec["history"]["item"])
    return logged


def _tiny(
    name: str = "zfnet",
    size: int = 64,
    classes: int = 6,
    widths: dict[int, int] | int = 16,
    fc_units: int = 32,
    seed: int | None = 0,
    init: str | None = "kaiming",
) -> nn.Module:
    """A paper architecture (same kernels, strides, pools, LRN) with few channels, in eval mode, seeded."""
    if seed is not None:
        torch.manual_seed(seed)
    widths = widths if isinstance(widths, dict) else dict.fromkeys(range(1, 6), widths)
    kw = {"init": init} if init else {}
    from zfnet_exp.models import create_model

    return create_model(name, num_classes=classes, input_size=size, conv_widths=widths, fc_units=fc_units, **kw).eval()


@pytest.fixture(scope="session")
def tiny_model() -> Callable[..., nn.Module]:
    """The builder itself: ``tiny_model("alexnet", size=80, classes=10, widths={...})``."""
    return _tiny


@pytest.fixture(scope="module")
def zf() -> nn.Module:
    """ZFNet at 64 px, 6 classes, conv widths 16/24/24/24/16, fc 32 (the attribution tests' model)."""
    return _tiny(widths={1: 16, 2: 24, 3: 24, 4: 24, 5: 16})
