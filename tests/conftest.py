"""Session-wide fixtures: offline W&B in a temp folder, one generated-dataset cache, one thread per test, and the
one tiny training run with the deconvnet diagnostics that several test files read. Shared plain functions and
constants live in ``tests/helpers.py``; the tiny-model builders of the diagnostics tests in
``tests/diagnostics/conftest.py``."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from helpers import DIAG_RUN, ROOT, compose_train

# tests never touch the network or the user's W&B settings
os.environ["WANDB_MODE"] = "offline"
# one OpenMP thread in every process a test starts (entry points, benchmarks, sweep jobs), as in the tests' own
# process (_single_thread): two workers on two cores, a second thread per process only oversubscribes them
os.environ["OMP_NUM_THREADS"] = "1"
os.environ.setdefault("WANDB_SILENT", "true")
os.environ["PROJECT_ROOT"] = str(ROOT)

import zfnet_exp.utils.resolvers  # noqa: E402,F401

# The files that set the suite's length, longest first (pytest-time seconds on the 2-core VM, 2026-12-07: 77, 55,
# 50, 49, 41, 41, 38, 23, 23, 21, 20, 19, 16; the rest take 15 s or less). `make test` runs two pytest-xdist
# workers that take whole files (--dist loadfile) in this order (--no-loadscope-reorder: xdist would otherwise
# order files by their number of tests); a long file dealt last kept one worker busy 38 s after the other was done.
LONGEST_FIRST = [
    "test_launch.py",
    "test_faults.py",
    "test_train.py",
    "test_checkpoint_safety.py",
    "test_learns.py",
    "test_timm.py",
    "test_pretrained.py",
    "test_compare.py",
    "test_entry_validation.py",
    "test_benchmark_clis.py",
    "test_ddp.py",
    "test_fig6.py",
    "test_first_layer.py",
]


def pytest_collection_modifyitems(config, items):
    """The longest files first (:data:`LONGEST_FIRST`), the others after them in collection order."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file keeps its tests' order


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
    """A session-wide cache folder for generated datasets (each parameter set is generated once). Under
    pytest-xdist the workers share it (their base folders are siblings): the generators write to a per-process
    temporary folder and rename it into place, and the image statistics are computed under a file lock."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = base.parent / "data"
        shared.mkdir(exist_ok=True)
        return shared
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def diag_run(tmp_path_factory, data_dir, wandb_home) -> Path:
    """Run folder of ``train`` with :data:`DIAG_RUN` (read-only for the tests that share it). Trained once per
    session: under pytest-xdist (``make test``: ``-n 2 --dist loadfile``) the first worker that needs it trains it
    in the workers' shared base folder under a file lock, and the other reuses it."""
    from filelock import FileLock

    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return _train_diag_run(tmp_path_factory.mktemp("diag_run"), data_dir)
    shared = tmp_path_factory.getbasetemp().parent
    run_dir, done = shared / "diag_run", shared / "diag_run.done"
    with FileLock(str(shared / "diag_run.lock")):
        if not done.is_file():
            shutil.rmtree(run_dir, ignore_errors=True)  # a worker that died mid-run left it incomplete
            _train_diag_run(run_dir, data_dir)
            done.touch()
    return run_dir


def _train_diag_run(run_dir: Path, data_dir: Path) -> Path:
    from zfnet_exp.tasks.runner import run_task
    from zfnet_exp.tasks.train import train

    run_task(train, compose_train(DIAG_RUN, run_dir, data_dir))
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    return run_dir
