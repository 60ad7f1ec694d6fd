"""OmegaConf resolvers used by ``conf/``. Registered once on import (idempotent)."""

from __future__ import annotations

from omegaconf import OmegaConf

from .wandb_env import run_id_for, wandb_offline


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("wandb_offline"):
        OmegaConf.register_new_resolver("wandb_offline", wandb_offline)
    if not OmegaConf.has_resolver("run_id"):
        OmegaConf.register_new_resolver("run_id", run_id_for)


register_resolvers()
