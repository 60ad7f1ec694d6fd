"""Sweeps through hydra-submitit-launcher: a 2-job grid on a real one-node SLURM cluster (Debian's slurmctld/slurmd,
started by tests/slurm/start-local-slurm.sh) with one job preempted by the scheduler's USR2 and requeued, the same
grid through submitit's local executor, and the launcher/trainer mismatch refused before submission.

References: SLURM's own accounting of the jobs (squeue), the run folders Hydra creates, and the offline W&B logs
read back with ``wandb leet inspect`` (what ``wandb sync`` would upload)."""

from __future__ import annotations

import functools
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
from helpers import NO_FIGURE_CALLBACKS, TINY_DATA, wandb_records

ROOT = Path(__file__).resolve().parents[1]
START = ROOT / "tests" / "slurm" / "start-local-slurm.sh"
SLURM_EXES = ("slurmctld", "slurmd", "sbatch", "munged", "mungekey")
# tiny, fast jobs: 2 steps per epoch, a small fc head, checkpoints on, the image diagnostics off, and no comparison
# of the sweep's runs after the last job (a W&B run and figures in the submitting process that these tests do not
# read; tests/test_compare.py runs it after a real sweep)
GRID = [
    "~hydra.callbacks.compare_sweep",
    "trainer=cpu",
    "debug=smoke",
    *TINY_DATA,
    "data.batch_size=10",
    "model.arch.fc6.units=64",
    "model.arch.fc7.units=64",
    "logger=wandb",
    *NO_FIGURE_CALLBACKS,
    "seed=1,2",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wandb_run_records(run_dir: Path) -> list[dict]:
    """The `run` record (id, group, job type, tags, name) of every offline W&B run folder in ``run_dir``."""
    out = []
    for folder in sorted((run_dir / "wandb").glob("offline-run-*")):
        out += [r["run"] for r in wandb_records(folder) if r.get("type") == "run"]
    return out


def _env(data_dir: Path, wandb_home: Path, **extra) -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", **extra}


def _check_grid(sweep: Path, requeued: int | None = None) -> None:
    runs = sorted(p for p in sweep.iterdir() if p.name.isdigit())
    assert [p.name for p in runs] == ["0", "1"]
    groups, ids = set(), set()
    for run in runs:
        records = wandb_run_records(run)
        # a requeued job starts twice in the same folder: two offline logs of ONE run (same id, resume=allow),
        # which `wandb sync` uploads as one run
        assert len(records) == (2 if run.name == str(requeued) else 1), records
        assert len({r["run_id"] for r in records}) == 1
        groups |= {r["run_group"] for r in records}
        ids.add(records[0]["run_id"])
        assert {"zfnet", "shapes"} <= set(records[0]["tags"])
        assert records[0]["job_type"] == "debug"
        ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
        assert ckpt["global_step"] == 2 * int(ckpt["epoch"] + 1)
    assert groups == {sweep.name} and len(ids) == 2  # one group = the sweep; one W&B run per job


@pytest.fixture(scope="module")
def slurm_cluster():
    missing = [exe for exe in SLURM_EXES if shutil.which(exe) is None]
    if missing:
        pytest.skip(
            f"SLURM is not installed ({', '.join(missing)} missing): apt-get install -y "
            "slurmctld slurmd slurm-client munge (.ci/run does)"
        )
    if os.geteuid() != 0:
        pytest.skip("the local SLURM cluster runs its daemons as root")
    base = Path(tempfile.mkdtemp(prefix="zfnet-slurm-", dir="/tmp"))  # not under a 700 folder (munged refuses)
    env = {**os.environ, "SLURMCTLD_PORT": str(_free_port()), "SLURMD_PORT": str(_free_port())}
    r = subprocess.run(["bash", str(START), "start", str(base)], env=env, capture_output=True, text=True, timeout=120)
    if r.returncode:
        subprocess.run(["bash", str(START), "stop", str(base)], timeout=60)
        pytest.fail(f"local SLURM did not start: {r.stderr}")
    yield {"SLURM_CONF": str(base / "etc" / "slurm.conf"), "PATH": f"{base / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(["bash", str(START), "stop", str(base)], timeout=60)
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.slurm
def test_slurm_grid_with_a_preempted_job(slurm_cluster, tmp_path, data_dir, wandb_home):
    """`python train.py -m hydra/launcher=slurm seed=1,2` goes through sbatch (a SLURM job array); job 0 receives
    USR2 from the scheduler (`scancel --signal=USR2`) mid-training, saves last.ckpt, is requeued by submitit and
    resumes in the same run folder and W&B run; both jobs finish all their epochs."""
    sweep = tmp_path / "sweep"
    env = _env(data_dir, wandb_home, **slurm_cluster)
    proc = subprocess.Popen(
        [
            sys.executable,
            "train.py",
            "-m",
            "hydra/launcher=slurm",
            *GRID,
            "trainer.max_epochs=8",
            f"paths.data_dir={data_dir}",
            f"hydra.sweep.dir={sweep}",
            "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.timeout_min=60",
            "hydra.callbacks.check_launcher.status_every_s=2",
        ],  # > 10 min: submitit reports a preemption, not a time-out
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.time() + 240
        while not (sweep / "0" / "checkpoints" / "last.ckpt").exists():
            assert proc.poll() is None and time.time() < deadline, (
                proc.stdout.read() if proc.poll() is not None else "timeout"
            )
            time.sleep(0.2)
        queue = subprocess.run(
            ["squeue", "-h", "-r", "-o", "%F %K"], env=env, capture_output=True, text=True, check=True, timeout=30
        ).stdout.split()
        array = dict(zip(queue[1::2], queue[0::2]))["0"]  # array task 0 -> its array job id
        subprocess.run(["scancel", "--signal=USR2", f"{array}_0"], env=env, check=True, timeout=30)
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-3000:]
    log = "".join(p.read_text() for p in (sweep / ".submitit").glob(f"{array}_0/*_0_log.out"))
    # both halves of the hand-over: our callback saved last.ckpt on the signal, then submitit requeued the job
    assert "Caught SIGUSR2 at epoch" in log, log[-3000:]
    assert f"Requeued job {array}_0" in log, log[-3000:]
    assert "Resuming from" in log
    for run in ("0", "1"):
        ckpt = torch.load(sweep / run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
        assert (ckpt["epoch"], ckpt["global_step"]) == (7, 16)
    # while it waited, a status line every 2 s, on stdout and in the sweep's log; the last one: both jobs done
    status = (sweep / "sweep_status.log").read_text().splitlines()
    assert len(status) >= 3 and all(line in out for line in status), out[-3000:]
    assert any(re.search(r": 2 job\(s\): \d+ pending.*, [12] running", line) for line in status), status
    assert status[-1].endswith(": 2 job(s): 0 pending, 0 running, 2 done, 0 failed"), status
    _check_grid(sweep, requeued=0)


@pytest.mark.slurm
def test_impossible_slurm_request_is_refused_before_submission(slurm_cluster, tmp_path, data_dir, wandb_home):
    """The issue's grid (`-m hydra/launcher=slurm hydra.launcher.partition=debug model=zfnet,alexnet`) asking one
    CPU more than the node has (reference: this machine's CPU count, which the one-node cluster's node declares)
    and twice its memory: exit 2 before submission, one paragraph naming both keys with values that fit; nothing
    is queued and no sweep folder is made. An unknown partition: the partitions that exist."""
    cpus = len(os.sched_getaffinity(0))
    mem_gb = 2 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**30
    env = _env(data_dir, wandb_home, **slurm_cluster)
    sweep = tmp_path / "sweep"

    def submit(*overrides: str) -> str:
        r = subprocess.run(
            [sys.executable, "train.py", "-m", "hydra/launcher=slurm", "model=zfnet,alexnet"]
            + [f"hydra.sweep.dir={sweep}", f"paths.data_dir={data_dir}", *overrides],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stdout[-2000:] + r.stderr[-3000:]
        paragraphs = [p.strip() for p in r.stderr.split("\n\n") if p.strip().startswith("error:")]
        assert len(paragraphs) == 1 and "\n" not in paragraphs[0], r.stderr
        return paragraphs[0]

    msg = submit(
        "hydra.launcher.partition=debug", f"hydra.launcher.cpus_per_task={cpus + 1}", f"hydra.launcher.mem_gb={mem_gb}"
    )
    assert f"{cpus + 1} CPUs per node (hydra.launcher.cpus_per_task={cpus + 1} x 1 task(s))" in msg, msg
    assert f"have at most {cpus}: set hydra.launcher.cpus_per_task={cpus}" in msg, msg
    assert f"{mem_gb} GB of memory per node (hydra.launcher.mem_gb)" in msg and "nothing was submitted" in msg, msg
    msg = submit("hydra.launcher.partition=gpu")
    assert "hydra.launcher.partition=gpu does not exist on this cluster (sinfo lists debug)" in msg, msg
    queue = subprocess.run(["squeue", "-h"], env=env, capture_output=True, text=True, check=True, timeout=30)
    assert queue.stdout.strip() == "" and not sweep.exists()


@pytest.mark.slurm
def test_sweep_status_names_pending_jobs_and_their_reason(slurm_cluster, tmp_path):
    """Two submitit jobs (a real job array, as the launcher submits) that each take every CPU of the one node and
    hold it until the test releases them (a file, not a fixed sleep): one runs, the other waits with SLURM's reason
    `Resources`; the status line says so, then, released, both done. Reference: squeue's own view of the same
    jobs."""
    import submitit

    from zfnet_exp.utils.slurm import SweepStatus

    cpus = len(os.sched_getaffinity(0))
    release = tmp_path / "release"
    saved = {k: os.environ.get(k) for k in slurm_cluster}
    os.environ.update(slurm_cluster)
    try:
        executor = submitit.AutoExecutor(folder=tmp_path / ".submitit" / "%j", cluster="slurm")
        executor.update_parameters(slurm_partition="debug", cpus_per_task=cpus, timeout_min=5)
        hold = f'for _ in $(seq 1200); do [ -e "{release}" ] && exit 0; sleep 0.05; done; exit 1'  # at most 60 s
        jobs = executor.map_array(functools.partial(subprocess.run, check=True), [["bash", "-c", hold]] * 2)
        status = SweepStatus(tmp_path, every_s=1)
        deadline = time.time() + 60
        while "1 pending (Resources: 1), 1 running" not in (line := status.line()):
            assert time.time() < deadline, line
            time.sleep(0.2)
        states = subprocess.run(["squeue", "-h", "-r", "-o", "%T %r"], capture_output=True, text=True, timeout=30)
        assert sorted(states.stdout.splitlines()) == ["PENDING Resources", "RUNNING None"]
        release.touch()
        for job in jobs:
            job.result()
        assert status.line().endswith(": 2 job(s): 0 pending, 0 running, 2 done, 0 failed")
    finally:
        release.touch()  # also after a failed check: the jobs must not hold the node for the next test
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def test_local_launcher_grid(tmp_path, data_dir, wandb_home):
    """The same grid through submitit's local executor: two processes, two run folders, two W&B runs, one group."""
    sweep = tmp_path / "sweep"
    r = subprocess.run(
        [
            sys.executable,
            "train.py",
            "-m",
            "hydra/launcher=local",
            *GRID,
            f"paths.data_dir={data_dir}",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=ROOT,
        env=_env(data_dir, wandb_home),
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    _check_grid(sweep)


@pytest.mark.parametrize(
    ("launcher", "overrides", "named"),
    [
        ("slurm", ["trainer.devices=2", "hydra.launcher.tasks_per_node=1"], "tasks_per_node=1 but trainer.devices=2"),
        ("slurm", ["trainer=ddp"], "trainer.devices=-1"),  # "all GPUs" cannot size a SLURM request
        ("slurm", ["+trainer.num_nodes=2", "hydra.launcher.nodes=1"], "nodes=1 but trainer.num_nodes=2"),
        ("local", ["hydra.launcher.tasks_per_node=2"], "tasks_per_node=2"),
    ],
)
def test_launcher_trainer_mismatch_is_refused_before_submission(launcher, overrides, named, tmp_path, data_dir, capsys):
    """The Hydra callback that runs before the launcher submits: one paragraph naming both keys, exit code 2."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from zfnet_exp.utils.launch import CheckLauncher

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"hydra/launcher={launcher}", *overrides], return_hydra_config=True)
    with pytest.raises(SystemExit) as e:
        CheckLauncher().on_multirun_start(cfg)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert named in err and err.strip().count("\n") == 0
