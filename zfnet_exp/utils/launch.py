"""Cluster launching: the checks that tie the SLURM request to the trainer, and resuming in a stable run folder.

* :class:`CheckLauncher` (a Hydra callback) checks, before hydra-submitit-launcher submits anything, that
  ``trainer.devices`` / ``trainer.num_nodes`` match the launcher's ``tasks_per_node`` / ``nodes`` (Lightning
  under SLURM starts no processes itself: one SLURM task per device, or the job hangs at "Initializing
  distributed" or trains N unrelated copies into one folder).
* the request against what the SLURM partition can ever run, and a status line while a sweep waits:
  :mod:`zfnet_exp.utils.slurm`.
* :func:`check_job_resources` is the same check inside a running SLURM job (someone's own ``sbatch`` script).

Resuming in the same run folder (a requeued job, or a sweep re-launched into the same sweep folder: Hydra's sweep
dir + job number are stable because the launcher pickles the resolved ``${now:...}``) is
:func:`zfnet_exp.runs.resume_checkpoint`, beside everything else that reads a run folder.
"""

from __future__ import annotations

import os

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from ..errors import ConfigError, exit_with

GPU_ACCELERATORS = ("gpu", "cuda")


def slurm_gpus(accelerator: str, devices) -> int | None:
    """GPUs to request per node: ``trainer.devices`` for a GPU trainer, none otherwise (``accelerator=auto``
    requests none: say ``trainer=gpu``/``trainer=ddp`` to get GPUs)."""
    return int(devices) if str(accelerator) in GPU_ACCELERATORS and isinstance(devices, int) and devices > 0 else None


def launcher_mismatch(kind: str, launcher: DictConfig, trainer: DictConfig) -> str | None:
    """One paragraph naming the mismatch and the fix, or None."""
    devices, nodes = trainer.get("devices", 1), trainer.get("num_nodes", 1)
    if kind == "local":
        if int(launcher.get("tasks_per_node", 1)) != 1 or int(launcher.get("nodes", 1)) != 1:
            return (
                f"hydra/launcher=local runs each job as one process on this machine (Lightning starts the "
                f"trainer.devices={devices} processes itself), but hydra.launcher.tasks_per_node="
                f"{launcher.get('tasks_per_node')} and hydra.launcher.nodes={launcher.get('nodes')}. Remove those "
                f"overrides (both must be 1)."
            )
        return None
    if not isinstance(devices, int) or devices < 1:
        return (
            f"trainer.devices={devices!r}: under SLURM each device is one SLURM task, so the count must be explicit. "
            f"Set trainer.devices=<GPUs per node> (e.g. trainer=ddp trainer.devices=4); hydra.launcher.tasks_per_node "
            f"and gpus_per_node follow it."
        )
    problems = []
    if int(launcher.tasks_per_node) != devices:
        problems.append(f"hydra.launcher.tasks_per_node={launcher.tasks_per_node} but trainer.devices={devices}")
    if int(launcher.nodes) != int(nodes):
        problems.append(f"hydra.launcher.nodes={launcher.nodes} but trainer.num_nodes={nodes}")
    gpus = launcher.get("gpus_per_node")
    if gpus is not None and str(trainer.get("accelerator")) in GPU_ACCELERATORS and int(gpus) != devices:
        problems.append(f"hydra.launcher.gpus_per_node={gpus} but trainer.devices={devices}")
    if not problems:
        return None
    return (
        f"The SLURM request does not match the trainer: {'; '.join(problems)}. Lightning runs one SLURM task per "
        f"device and node, so these must be equal: set only trainer.devices and trainer.num_nodes (the launcher "
        f"config conf/hydra/launcher/slurm.yaml copies them) and drop the hydra.launcher overrides, or make them "
        f"equal. A sweep cannot vary trainer.devices/num_nodes within one launch (one SLURM array shares one request)."
    )


class CheckLauncher(Callback):
    """Hydra callback (conf/hydra/default.yaml): before a multirun submits anything, the submitit launcher's request
    must match the trainer, and on SLURM the partition must be able to run it
    (:func:`zfnet_exp.utils.slurm.impossible_request`); exit code 2 and one paragraph otherwise, like
    :func:`zfnet_exp.tasks.runner.run_task`. A per-job mismatch (a sweep over trainer.devices) is caught again at
    job start by :func:`check_job_resources`. While a SLURM sweep waits for its jobs, a status line every
    ``status_every_s`` seconds (:class:`zfnet_exp.utils.slurm.SweepStatus`; 0: none)."""

    def __init__(self, status_every_s: float = 60):
        self.status_every_s = float(status_every_s)
        self._status = None

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        from .slurm import SweepStatus, impossible_request

        target = str(config.hydra.launcher.get("_target_", ""))
        kind = "slurm" if target.endswith("SlurmLauncher") else "local" if target.endswith("LocalLauncher") else None
        if kind is None or "submitit" not in target:
            return
        if config.get("trainer") is not None:  # eval/analyze: no trainer
            problem = launcher_mismatch(kind, config.hydra.launcher, config.trainer)
            if problem:
                exit_with(str(ConfigError(problem)))
        if kind == "slurm":
            problem = impossible_request(config.hydra.launcher)
            if problem:
                exit_with(str(ConfigError(problem)))
            if self.status_every_s > 0:
                self._status = SweepStatus(config.hydra.sweep.dir, self.status_every_s)
                self._status.start()

    def __getstate__(self) -> dict:
        """submitit pickles the launcher, and with it Hydra's callbacks, into every job: the status thread stays
        in the process that watches the sweep."""
        return {**self.__dict__, "_status": None}

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None


def check_job_resources(trainer: DictConfig) -> None:
    """Inside a SLURM job step (``srun``): the tasks SLURM started must be the processes the trainer expects."""
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    if not SLURMEnvironment.detect():
        return
    tasks = os.environ.get("SLURM_NTASKS_PER_NODE") or os.environ.get("SLURM_TASKS_PER_NODE", "1").split("(")[0]
    nodes = os.environ.get("SLURM_JOB_NUM_NODES") or os.environ.get("SLURM_NNODES", "1")
    launcher = DictConfig({"tasks_per_node": int(tasks), "nodes": int(nodes), "gpus_per_node": None})
    problem = launcher_mismatch("slurm", launcher, trainer)
    if problem:
        raise ConfigError(
            problem.replace("hydra.launcher.tasks_per_node", "SLURM --ntasks-per-node").replace(
                "hydra.launcher.nodes", "SLURM --nodes"
            )
        )


def say(message: str) -> None:
    """A line in the job's stdout log (rank 0 only), where a cluster user looks (Lightning's own INFO logger is not
    always routed there under submitit)."""
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    if rank_zero_only.rank == 0:
        print(message, flush=True)
