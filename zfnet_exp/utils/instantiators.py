"""Building the objects of a config group (callbacks, loggers) with ``hydra.utils.instantiate``.

One way to switch an object off: ``enabled: false`` on its node (``python train.py
callbacks.top9.enabled=false``). The key belongs to the config, not to the class: it is consumed here and
never passed to the constructor, so every callback class is simply "on" once built. A node that holds
nothing but ``enabled`` is the switch of a callback this config does not select (a recipe turns gradient
centralization on; ``callbacks=none`` selects nothing): there is nothing to build.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ..errors import ConfigError


def instantiate_group(cfg: DictConfig | None, kind: str) -> list:
    """Instantiate every child of a config group (each needs a ``_target_``), skipping ``enabled: false``."""
    objects = []
    for name, node in (cfg or {}).items():
        if node is None or switch_only(node):  # nothing selected here
            continue
        if not isinstance(node, DictConfig) or "_target_" not in node:
            raise ConfigError(f"{kind}.{name} is not a {kind} config (it has no _target_).")
        spec = OmegaConf.to_container(node, resolve=True)  # resolved against the whole config
        if spec.pop("enabled", True):
            objects.append(instantiate(spec))
    return objects


def switch_only(node: Any) -> bool:
    """A node with ``enabled`` and no ``_target_``: the switch of an object the config does not select."""
    return isinstance(node, Mapping) and "_target_" not in node and set(node) <= {"enabled"}
