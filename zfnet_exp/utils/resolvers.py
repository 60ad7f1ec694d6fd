"""OmegaConf resolvers used by ``conf/``. Registered once on import (idempotent).

``${default:}``: the default of this option in the signature of the object the node builds (its ``_target_``),
so a YAML file lists an option (a key a user overrides without ``+`` must exist) without copying its value:
the value is declared once, where the object takes it (:func:`zfnet_exp.utils.options.default_of`)."""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf

from .options import default_of
from .wandb_env import job_label, run_id_for, sweep_group, wandb_offline, with_tags


def option_default(*, _parent_: Any, _node_: Any) -> Any:
    from hydra.utils import get_object

    target = _parent_.get("_target_") if hasattr(_parent_, "get") else None
    if target is None:
        raise ValueError("${default:} stands for an option of the object a node builds; this node has no _target_")
    value = default_of(get_object(target), str(_node_._key()))
    return OmegaConf.create(value) if isinstance(value, list | dict) else value  # a node, so OmegaConf.resolve works


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("wandb_offline"):
        OmegaConf.register_new_resolver("wandb_offline", wandb_offline)
    if not OmegaConf.has_resolver("run_id"):
        OmegaConf.register_new_resolver("run_id", run_id_for)
    if not OmegaConf.has_resolver("default"):
        OmegaConf.register_new_resolver("default", option_default)
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
