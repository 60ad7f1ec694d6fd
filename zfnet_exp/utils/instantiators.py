"""Building the objects of a config group (callbacks, loggers) with ``hydra.utils.instantiate``."""

from __future__ import annotations

from hydra.utils import get_class, instantiate
from omegaconf import DictConfig

from ..errors import ConfigError


def instantiate_group(cfg: DictConfig | None, kind: str) -> list:
    """Instantiate every child of a config group that has a ``_target_`` (``enabled: false`` skips one)."""
    objects = []
    for name, node in (cfg or {}).items():
        if isinstance(node, DictConfig) and "_target_" in node:
            if node.get("enabled", True) is False and "enabled" not in _init_params(node):
                continue
            objects.append(instantiate(node))
        elif node is not None:
            raise ConfigError(f"{kind}.{name} is not a {kind} config (it has no _target_).")
    return objects


def _init_params(node: DictConfig) -> set[str]:
    import inspect

    try:
        return set(inspect.signature(get_class(node._target_).__init__).parameters)
    except Exception:  # noqa: BLE001 - a factory function: let instantiate report problems
        return set()
