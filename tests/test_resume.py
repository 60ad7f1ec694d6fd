"""Preemption-safe training: a run killed hard (SIGKILL) mid-epoch, or sent the scheduler's requeue signal (USR2)
mid-epoch, and restarted continues at the right epoch and step, and on CPU with fixed seeds ends with exactly the
weights and metrics of the uninterrupted run (the reference: that uninterrupted run). Checkpoints are written
atomically; a run whose stdout is a file prints plain progress lines."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from helpers import NO_FIGURE_CALLBACKS, TINY_DATA, compose_train

from zfnet_exp.tasks.runner import run_task
from zfnet_exp.tasks.train import train

ROOT = Path(__file__).resolve().parents[1]
# 3 epochs of 2 steps, a small fc head, dropout and random crops on, the image diagnostics off
RUN = [
    "debug=smoke",
    *TINY_DATA,
    "logger=none",
    "trainer.max_epochs=3",
    "data.batch_size=10",
    "model.arch.fc6.units=64",
    "model.arch.fc7.units=64",
    *NO_FIGURE_CALLBACKS,
]

KILLER = textwrap.dedent(
    '''
    import os, signal, lightning as L

    class KillAt(L.Callback):
        """Sends the signal to its own process once global_step reaches `step` (a real signal, not an exception)."""
        def __init__(self, step, sig="SIGKILL"):
            self.step, self.sig, self.sent = int(step), getattr(signal, sig), False
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step == self.step and not self.sent:
                self.sent = True
                os.kill(os.getpid(), self.sig)
    '''
)


@pytest.fixture(scope="module")
def killer_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("killer")
    (d / "killer.py").write_text(KILLER)
    sys.path.insert(0, str(d))
    yield d
    sys.path.remove(str(d))


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_dir):
    """The uninterrupted run (one intra-op thread like every run here: conftest's per-test fixture does not cover a
    module fixture, and another thread count changes float summation order)."""
    run_dir = tmp_path_factory.mktemp("reference")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_dir, run_task(train, compose_train(RUN, run_dir, data_dir))
    finally:
        torch.set_num_threads(threads)


def _last(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


def _assert_same_as_reference(run_dir: Path, metrics: dict, reference) -> None:
    ref_dir, ref_metrics = reference
    a, b = _last(run_dir), _last(ref_dir)
    assert (a["epoch"], a["global_step"]) == (b["epoch"], b["global_step"]) == (2, 6)
    for k in b["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), (
            k,
            (a["state_dict"][k] - b["state_dict"][k]).abs().max(),
            metrics,
            ref_metrics,
        )
    for key in ("val/loss", "val/acc_top1", "train/loss_epoch"):
        assert metrics[key] == ref_metrics[key], key


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(tmp_path, data_dir, killer_dir, reference):
    """SIGKILL in epoch 3 (after epoch 2's last.ckpt; the best checkpoint is older), restarted with
    ckpt_path=<run folder>: it loses only the step since that checkpoint and ends equal to the uninterrupted run.
    Its log (stdout is a pipe, not a terminal) holds one plain line per epoch with step, img/s, ETA, metrics."""
    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{killer_dir}", "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [
            sys.executable,
            "train.py",
            *RUN,
            f"paths.data_dir={data_dir}",
            f"hydra.run.dir={killed}",
            "+callbacks.kill._target_=killer.KillAt",
            "+callbacks.kill.step=5",
            "progress.every_n_steps=2",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    ckpt = _last(killed)  # complete and loadable: written atomically
    assert (ckpt["epoch"], ckpt["global_step"]) == (1, 4)  # the last completed epoch, not the best one
    assert not list((killed / "checkpoints").glob(".*tmp*"))
    epoch_lines = re.findall(
        r"^epoch (\d)/3 done step (\d)/6 \| \d+ img/s \| .*ETA \d+:\d\d:\d\d \| .*val/loss \d", r.stdout, re.M
    )
    assert epoch_lines == [("1", "2"), ("2", "4")], r.stdout[-2000:]
    assert re.search(r"^epoch 2/3 step 4/6 \| \d+ img/s \| ETA .*train/loss \d", r.stdout, re.M), r.stdout[-2000:]

    resumed = tmp_path / "resumed"
    metrics = run_task(train, compose_train([*RUN, f"ckpt_path={killed}"], resumed, data_dir))
    _assert_same_as_reference(resumed, metrics, reference)


def test_requeue_signal_mid_epoch_then_resume_equals_uninterrupted(tmp_path, data_dir, killer_dir, reference):
    """USR2 (submitit's preemption signal) in the middle of epoch 2, no submitit to requeue: the run saves last.ckpt at
    that step and exits;
    restarted in the same run folder (as a requeued job is) it resumes there, runs only the rest of the epoch,
    and ends equal to the uninterrupted run."""
    run_dir = tmp_path / "run"
    overrides = ["+callbacks.kill._target_=killer.KillAt", "+callbacks.kill.step=2", "+callbacks.kill.sig=SIGUSR2"]
    with pytest.raises(SystemExit) as stopped:
        run_task(train, compose_train([*RUN, *overrides], run_dir, data_dir))
    assert stopped.value.code == 128 + signal.SIGUSR2  # not finished: a wrapper script must not take it for done
    ckpt = _last(run_dir)
    assert (ckpt["epoch"], ckpt["global_step"]) == (1, 3)
    metrics = run_task(train, compose_train(RUN, run_dir, data_dir))  # auto-resume from the run folder
    _assert_same_as_reference(run_dir, metrics, reference)
    # re-launching the finished run into its folder skips it instead of training again
    assert run_task(train, compose_train(RUN, run_dir, data_dir)) == {}
    assert _last(run_dir)["global_step"] == 6
