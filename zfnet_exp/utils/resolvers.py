"""OmegaConf resolvers used by ``conf/``. Registered once on import (idempotent)."""

from __future__ import annotations

from omegaconf import OmegaConf

from .wandb_env import job_label, run_id_for, sweep_group, wandb_offline, with_tags


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("wandb_offline"):
        OmegaConf.register_new_resolver("wandb_offline", wandb_offline)
    if not OmegaConf.has_resolver("run_id"):
        OmegaConf.register_new_resolver("run_id", run_id_for)
    from .launch import slurm_gpus

    for name, fn in (
        ("sweep_group", sweep_group),
        ("job_label", job_label),
        ("with_tags", with_tags),
        ("slurm_gpus", slurm_gpus),
    ):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


register_resolvers()
