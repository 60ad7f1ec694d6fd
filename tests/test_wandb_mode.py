"""The automatic W&B mode, for real: every other test forces ``WANDB_MODE=offline``, so this file is the one place
where the project itself decides. Without credentials (no ``WANDB_MODE``, no ``WANDB_API_KEY``, an empty home
folder without ``~/.netrc``) ``train.py logger=wandb`` must run offline and write an offline run folder instead of
asking for a login; with credentials in ``~/.netrc`` or ``WANDB_API_KEY`` the same config resolves to online.

References: the offline run folder read back with ``wandb leet inspect --json`` (what ``wandb sync`` uploads) and
a ``.netrc`` file written by hand in the format W&B's own ``wandb login`` writes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import CONF, ROOT, TINY_DATA, wandb_history

from zfnet_exp.utils.wandb_env import run_id_for

# a closed local port: should the decision be wrong, W&B cannot reach any server (tests never use the network)
NO_SERVER = "http://127.0.0.1:9"
WANDB_VARS = ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL", "NETRC", "WANDB_DISABLED", "WANDB_OFFLINE")


def _clean_env(home: Path) -> dict:
    """The environment of a user who never logged in to W&B: a fresh home, W&B's folders inside it."""
    env = {k: v for k, v in os.environ.items() if k not in WANDB_VARS}
    env.update(
        HOME=str(home),
        WANDB_BASE_URL=NO_SERVER,
        PYTHONPATH=str(ROOT),
        OMP_NUM_THREADS="1",
        **{v: str(home / "wandb") for v in ("WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR")},
    )
    return env


def test_train_without_credentials_runs_offline(tmp_path, data_dir):
    """``python train.py logger=wandb`` with no W&B credentials anywhere: exit 0, no login prompt, and the run
    folder holds one offline W&B run (id derived from the folder) whose log has the epoch's metrics."""
    home = tmp_path / "home"
    home.mkdir()
    run_dir = tmp_path / "run"
    r = subprocess.run(
        [
            sys.executable,
            "train.py",
            "debug=smoke",
            *TINY_DATA,
            "callbacks=none",
            "logger=wandb",
            f"paths.data_dir={data_dir}",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=ROOT,
        env=_clean_env(home),
        stdin=subprocess.DEVNULL,  # a login prompt would fail here instead of waiting
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert [p.name.rsplit("-", 1)[-1] for p in runs] == [run_id_for(run_dir)], runs
    assert not list((run_dir / "wandb").glob("run-*"))  # no online run folder
    logged = wandb_history(run_dir)
    assert 0.0 <= logged["val/acc_top1"] <= 1.0 and "train/loss_step" in logged
    assert not (home / ".netrc").exists()  # nothing logged in on the user's behalf


def _resolved_offline(monkeypatch, home: Path, **env: str) -> bool:
    """``logger.wandb.offline`` of the composed ``train.yaml``, resolved under ``env`` and ``HOME=home``."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    for var in WANDB_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("WANDB_BASE_URL", NO_SERVER)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["logger=wandb"])
    GlobalHydra.instance().clear()
    return cfg.logger.wandb.offline


def test_credentials_or_mode_decide_online(monkeypatch, tmp_path):
    """The same resolver with credentials: a ``.netrc`` entry for the configured W&B host (or ``WANDB_API_KEY``)
    means online; ``WANDB_MODE`` wins over both; a ``.netrc`` for another host is no credential."""
    home = tmp_path / "home"
    home.mkdir()
    assert _resolved_offline(monkeypatch, home) is True
    netrc = home / ".netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "0" * 40 + "\n")
    netrc.chmod(0o600)
    assert _resolved_offline(monkeypatch, home) is True  # a key for api.wandb.ai, but the host is NO_SERVER's
    netrc.write_text(f"machine 127.0.0.1:9\n  login user\n  password {'0' * 40}\n")
    assert _resolved_offline(monkeypatch, home) is False
    assert _resolved_offline(monkeypatch, home, WANDB_MODE="offline") is True
    netrc.unlink()
    assert _resolved_offline(monkeypatch, home, WANDB_API_KEY="0" * 40) is False
    assert _resolved_offline(monkeypatch, home, WANDB_MODE="online") is False
    assert _resolved_offline(monkeypatch, home, WANDB_MODE="disabled") is True


@pytest.fixture(autouse=True)
def _restore_hydra():
    yield
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
