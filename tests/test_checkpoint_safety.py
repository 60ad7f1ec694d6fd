"""Checkpoints are data, never code (issue: a shared checkpoint ran a shell command in analyze/eval/transfer).

A file made with ``torch.save`` around an object whose unpickling runs ``touch <marker>`` is given to every entry
point (real subprocesses) and to every loader in the package: the marker must never appear, and each refusal is one
``error:`` paragraph naming the file and the refused type, exit code 2. Files that are not checkpoints at all
(random bytes, empty, truncated, a bare weights file: each given to every entry point's task in process, the path
the subprocesses take for the crafted file) and a checkpoint of another network (a real subprocess) get one
paragraph too. The reference for "would have run": the file's pickle opcodes (read with ``pickletools``, nothing
unpickled) name ``os.system`` and the marker command.
"""

from __future__ import annotations

import os
import pickletools
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from helpers import ROOT, TINY_DATA, run_entry_task

from zfnet_exp.errors import UserError
from zfnet_exp.utils.torch_files import NotATorchFileError, UnsafeFileError, load_torch_file


class _Payload:
    """Unpickling this runs a shell command (what a hostile checkpoint does)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def crafted(tmp_path) -> tuple[Path, Path]:
    marker = tmp_path / "MARKER"
    path = tmp_path / "shared.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": _Payload(marker), "epoch": 0}, path)
    return path, marker


def test_the_crafted_file_would_run_code(crafted):
    """The reference, read without unpickling anything (``pickletools`` only lists the opcodes): the file's pickle
    names ``os.system`` (``posix.system``) and calls it with the command that creates the marker, so an unsafe
    load would run it and the tests below can fail."""
    path, marker = crafted
    with zipfile.ZipFile(path) as z:
        data = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(data)]
    assert ("GLOBAL", "posix system") in ops and ("REDUCE", None) in ops
    assert any(isinstance(arg, str) and arg == f"touch {marker}" for _, arg in ops)
    assert not marker.exists()


def _entry(script: str, *overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": str(ROOT), "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, str(ROOT / script), *overrides],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _one_paragraph(proc: subprocess.CompletedProcess) -> str:
    return _the_paragraph(proc.returncode, proc.stderr, proc.stdout)


def _the_paragraph(returncode: int, stderr: str, stdout: str = "") -> str:
    assert returncode == 2, stdout[-2000:] + stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    paragraphs = [p for p in re.split(r"\n\s*\n", stderr) if p.strip().startswith("error:")]
    assert len(paragraphs) == 1, stderr
    return paragraphs[0]


ENTRY_POINTS = {
    "train": ("train.py", "ckpt_path={}", "logger=none", "debug=smoke", *TINY_DATA),
    "analyze": ("analyze.py", "ckpt={}", "analysis=top9", "logger=none", "device=cpu"),
    "eval": ("eval.py", "ckpt={}", "logger=none", "device=cpu"),
    "transfer": ("transfer.py", "ckpt={}", "data=caltech101", "data.root={tmp}/c101", "logger=none"),
}


def _command(name: str, ckpt: Path, tmp: Path, data: Path | None = None) -> tuple[str, list[str]]:
    script, *overrides = ENTRY_POINTS[name]
    args = [o.format(ckpt, tmp=tmp) for o in overrides]
    return script, [*args, f"hydra.run.dir={tmp / 'run'}", f"paths.data_dir={data or tmp / 'data'}"]


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_crafted_checkpoint_runs_nothing_in_any_entry_point(entry, crafted, tmp_path):
    path, marker = crafted
    script, args = _command(entry, path, tmp_path)
    error = _one_paragraph(_entry(script, *args, cwd=tmp_path))
    assert not marker.exists(), f"{script} ran the checkpoint's code"
    assert str(path) in error and "posix.system" in error, error


def _not_a_checkpoint(kind: str, real: Path, path: Path) -> Path:
    """Random bytes, an empty file, a checkpoint (``real``) cut in half, or its bare state dict, written to ``path``."""
    if kind == "random":
        path.write_bytes(os.urandom(4096))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        data = real.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        state = torch.load(real, map_location="cpu", weights_only=True)["state_dict"]
        torch.save({k.removeprefix("model."): v for k, v in state.items()}, path)
    return path


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_a_file_that_is_not_a_checkpoint_is_one_paragraph(entry, diag_run, tmp_path):
    """Random bytes, an empty file, a checkpoint cut in half, a bare state dict: each named, with what was expected,
    in one paragraph with exit code 2. In process: what ``python <entry>.py`` runs once Hydra has composed its
    command line (``run_entry_task``: ``run_task(<task>, cfg)``, the config composed from the same overrides as the
    subprocesses above, whose refusal of the crafted file takes this path: the file's loader raises, ``run_task``
    reports)."""
    real = diag_run / "checkpoints" / "last.ckpt"
    for kind in ("random", "empty", "truncated", "weights"):
        path = _not_a_checkpoint(kind, real, tmp_path / f"{kind}.ckpt")
        _, args = _command(entry, path, tmp_path)
        error = _the_paragraph(*run_entry_task(entry, args, tmp_path / "run"))
        assert str(path) in error and "train.py" in error, (kind, error)
        if kind == "weights":
            assert "model.checkpoint=" in error, error  # the fix: start a run from the weights


def test_checkpoint_of_another_network_is_refused_before_training(diag_run, data_dir, tmp_path):
    """An AlexNet run given a ZFNet run's checkpoint: both architectures, the first differing layer and its shapes
    (read from the checkpoint itself as the reference), and the fix; nothing is trained or written. (The session's
    dataset cache, which the ZFNet run's data is in already: the refusal comes once the model is built.)"""
    script, args = _command("train", diag_run, tmp_path, data=data_dir)
    proc = _entry(script, *args, "model=alexnet", cwd=tmp_path)
    error = _one_paragraph(proc)
    ref = torch.load(diag_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    shape = tuple(ref["model.features.conv1.weight"].shape)
    assert "zfnet" in error and "alexnet" in error and "model.features.conv1.weight" in error, error
    assert str(shape) in error and "model=zfnet" in error and "model.checkpoint=" in error, error
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_every_loader_refuses_the_crafted_file(crafted, tmp_path):
    """The package's loaders of files: checkpoints, run folders, weight files (``model.checkpoint``), the image
    statistics cache and the transfer feature cache."""
    from zfnet_exp.data.stats import cache_key, cached_statistics
    from zfnet_exp.models.external import load_weights
    from zfnet_exp.models.registry import create_model
    from zfnet_exp.runs import Run, read_checkpoint
    from zfnet_exp.tasks.transfer_features import extract_features

    path, marker = crafted
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(path.read_bytes())
    files = [str(tmp_path / "a.png")]
    stats = tmp_path / "cache" / "stats" / f"{cache_key(tmp_path, 16, files)}.pt"
    stats.parent.mkdir(parents=True)
    stats.write_bytes(path.read_bytes())
    model = create_model("zfnet", num_classes=3, input_size=64)
    loaders = {
        "load_torch_file": lambda: load_torch_file(path, "anything"),
        "read_checkpoint(file)": lambda: read_checkpoint(path),
        "read_checkpoint(run folder)": lambda: read_checkpoint(run, prefer="best"),
        "Run.checkpoint": lambda: Run(run).checkpoint(prefer="last"),
        "model.checkpoint": lambda: load_weights(model, path),
        "image statistics cache": lambda: cached_statistics(tmp_path, files, 16, tmp_path / "cache"),
        "transfer feature cache": lambda: extract_features(model, [], 6, None, torch.device("cpu"), cache_path=path),
    }
    for name, load in loaders.items():
        with pytest.raises(UnsafeFileError, match="posix.system") as info:
            load()
        assert str(path) in str(info.value) or str(stats) in str(info.value) or "last.ckpt" in str(info.value), name
        assert not marker.exists(), f"{name} ran the file's code"


def test_not_a_torch_file_names_the_file(tmp_path):
    path = tmp_path / "notes.ckpt"
    path.write_text("these are my notes, not a checkpoint\n" * 20)
    with pytest.raises(NotATorchFileError, match="notes.ckpt") as info:
        load_torch_file(path, "a checkpoint written by train.py")
    assert isinstance(info.value, UserError) and "Expected a checkpoint written by train.py" in str(info.value)


def test_a_checkpoint_written_by_train_loads_safely(diag_run):
    """Everything train.py writes into a checkpoint is allowed (the project's own types): model, data record,
    callback states and the best checkpoint ModelCheckpoint recorded."""
    from zfnet_exp.runs import Run, read_checkpoint

    run = Run(diag_run)
    last = run.checkpoint(prefer="last")
    assert last.epoch == 1 and last.global_step > 0 and last.data["mean"] is not None
    best = read_checkpoint(diag_run)
    assert best.path == run.best and best.path.parent == diag_run / "checkpoints"
    model = last.model()
    x = torch.zeros(1, 3, 64, 64)
    assert model(x).shape == (1, int(last.hparams["num_classes"]))
