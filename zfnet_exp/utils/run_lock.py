"""One run per run folder: ``<run folder>/.run.lock``, locked for as long as a training run writes there.

Why: a sweep re-launched while it still runs (or the same ``hydra.run.dir`` given twice) starts a second run in a
folder that a first one is writing: both resume from the same ``last.ckpt`` and interleave their checkpoints and
metrics. The second one now refuses, in one paragraph naming the running one (pid, host, start time, command),
which the holder writes into the lock file. The lock is the kernel's POSIX record lock (``lockf``): it belongs to
the process, is not inherited by forked children (DataLoader workers, a data generator's pool, which may outlive
a killed run for a moment), and goes away when the process ends however it ends, so a stale ``.run.lock`` never
blocks a later run (it is only read for the message); a finished run removes the file. Only rank 0 takes it
(the other DDP ranks are the same run).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import UserError

LOCK_NAME = ".run.lock"


class RunFolderInUse(UserError):
    """Another live process holds the run folder's lock."""


@contextmanager
def hold_run_folder(run_dir: str | Path) -> Iterator[None]:
    """Hold ``run_dir``'s lock for the duration of the block; :class:`RunFolderInUse` if another run has it."""
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    if rank_zero_only.rank != 0:
        yield
        return
    path = Path(run_dir) / LOCK_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _acquire(path)
    try:
        os.ftruncate(fd, 0)
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "command": " ".join(["python", *sys.argv]),
        }
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        yield
    finally:
        try:
            if os.path.exists(path) and os.stat(path).st_ino == os.fstat(fd).st_ino:
                os.unlink(path)  # while still holding it: a waiting run then locks a fresh file
        finally:
            os.close(fd)  # releases the lock


def launched_rank() -> int:
    """This process's global rank as its launcher set it in the environment (0 when none did): the variables
    Lightning's ``rank_zero_only`` reads, in its order (``RANK``, ``LOCAL_RANK``, ``SLURM_PROCID``,
    ``JSM_NAMESPACE_RANK``). Read here because the entry point checks the run folder before it imports Lightning;
    a rank above 0 is a process of a run whose rank 0 holds (or is about to take) the folder's lock: Lightning's
    DDP launcher re-runs ``python train.py ...`` for each further device, into the same run folder."""
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        value = os.environ.get(key)
        if value is not None:
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


def check_free(lock_files: Iterable[Path]) -> None:
    """:class:`RunFolderInUse` if a live run holds any of these lock files. The entry point asks this before Hydra
    writes the run folder's ``.hydra/`` files (which a second run would otherwise overwrite before its task
    could refuse); :func:`hold_run_folder` is the race-free check. A process of rank above 0
    (:func:`launched_rank`) belongs to the run whose rank 0 holds the lock: nothing to check."""
    if launched_rank() > 0:
        return
    for path in lock_files:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EACCES, errno.EAGAIN):
                continue
            raise RunFolderInUse(_in_use(Path(path).parent, os.pread(fd, 4096, 0))) from None
        finally:
            os.close(fd)


def _acquire(path: Path) -> int:
    """An fd of ``path`` locked exclusively; retried when the file was replaced between open and lock (a holder
    that finished unlinks it: a lock on the unlinked inode would not exclude the next run)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EACCES, errno.EAGAIN):
                os.close(fd)
                raise
            info = os.pread(fd, 4096, 0)
            os.close(fd)
            raise RunFolderInUse(_in_use(path.parent, info)) from None
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def _in_use(run_dir: Path, info: bytes) -> str:
    try:
        holder = json.loads(info.decode() or "{}")
    except ValueError:
        holder = {}
    who = (
        f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}: {holder.get('command')}"
        if holder
        else "a process that has not written its details yet"
    )
    return (
        f"The run folder {run_dir} is in use by another run ({who}); two runs in one folder would interleave their "
        f"checkpoints. Wait for that run to finish (or stop it), or start this one in another folder "
        f"(hydra.run.dir=<folder>, or hydra.sweep.dir=<folder> for a sweep). A run that crashed holds no lock; its "
        f"{LOCK_NAME} file is ignored."
    )
