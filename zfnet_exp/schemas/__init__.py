"""Config validation by schema: every group of a composed task config is checked at start, before anything
is built, and a wrong value fails in one :class:`~zfnet_exp.errors.ConfigError` paragraph that names the full
key, the bad value and what is valid (the task runner prints it and exits with code 2).

- one dataclass per group option in this package (``data``, ``model``, ``trainer``, ``callbacks``,
  ``logger``, ``analysis``, ``paths`` and the top-level keys); OmegaConf enforces the field types when a node
  is merged into it, ``__post_init__`` the ranges and choices (:mod:`.base`);
- :func:`validate_config` picks the schema of each node by the class (or function) its ``_target_`` names;
  a node whose target has no schema here (a user's own callback) is only checked to be importable;
- :func:`check_layer_names` checks the layer names of every enabled callback and of the analysis against
  the built model (the names a model has are only known once it exists), before training or analysing.

The composition itself stays untyped: a typed Hydra defaults list would reject a bad value inside
``@hydra.main``, with Hydra's own message and exit code 1, before the runner can report it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ..errors import ConfigError
from ..utils.instantiators import switch_only
from . import analysis, callbacks, data, logger, model, trainer
from .base import check_node, show
from .model import ModelConfig, validate_model
from .top import AnalyzeTop, Paths, TrainTop

__all__ = ["ModelConfig", "check_layer_names", "validate_config", "validate_model"]


def validate_config(cfg: DictConfig) -> None:
    """Check every group of a composed ``train`` or ``analyze`` config; raise one ConfigError on the first
    problem. Interpolations are resolved first (the values the objects would receive)."""
    command = "analyze" if "analysis" in cfg else "train"
    plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    plain.pop("hydra", None)
    check_node(AnalyzeTop if command == "analyze" else TrainTop, plain, "", subset=True, command=command)
    if "paths" in plain:
        check_node(Paths, plain["paths"] or {}, "paths", subset=True, command=command)
    if plain.get("data") is not None:
        _by_target(plain["data"], "data", data.SCHEMAS, {}, command)
    if plain.get("model") is not None:
        check_node(model.ModelConfig, plain["model"], "model", command=command)
    if plain.get("trainer") is not None:
        check_node(trainer.Trainer, plain["trainer"], "trainer", subset=True, command=command)
    for group, full, subset in (
        ("callbacks", callbacks.SCHEMAS, callbacks.SUBSET_SCHEMAS),
        ("logger", {}, logger.SUBSET_SCHEMAS),
    ):
        for name, node in (plain.get(group) or {}).items():
            if node is not None and not switch_only(node):
                _by_target(node, f"{group}.{name}", full, subset, command, generic=callbacks.Callback)
    if plain.get("analysis") is not None:
        _by_target(plain["analysis"], "analysis", analysis.SCHEMAS, {}, command, by_path=True)


def check_layer_names(cfg: DictConfig, network: nn.Module) -> None:
    """Every layer name configured for an enabled callback (``callbacks.<name>.layers`` / ``.layer``) or for
    the analysis resolves on ``network`` (the built ``nn.Module``); otherwise one ConfigError that lists the
    valid names. Run it right after the model is built, before ``trainer.fit`` or the analysis."""
    from ..diagnostics.layers import resolve_layer

    command = "analyze" if "analysis" in cfg else "train"
    nodes = [(f"callbacks.{n}", node) for n, node in (cfg.get("callbacks") or {}).items() if node is not None]
    if cfg.get("analysis") is not None:
        nodes.append(("analysis", cfg.analysis))
    for key, node in nodes:
        if not isinstance(node, Mapping) or node.get("enabled", True) is False:
            continue
        for option in ("layers", "layer"):
            value = node.get(option)
            if value is None:
                continue
            for name in [value] if isinstance(value, str) else list(value):
                try:
                    resolve_layer(network, str(name))
                except ValueError as e:
                    raise ConfigError(
                        f"{key}.{option}={show(_plain(value))}: {e}. Fix it in the config or on the command line "
                        f"(python {command}.py {key}.{option}=...)."
                    ) from None


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def _by_target(node: Any, key: str, full: dict, subset: dict, command: str, generic=None, by_path=False) -> None:
    """Check ``node`` against the schema of the class (or function) its ``_target_`` names."""
    if not isinstance(node, Mapping) or "_target_" not in node:
        raise ConfigError(f"{key} has no _target_ (the class or function to build); see conf/{key.split('.')[0]}/.")
    target = node["_target_"]
    try:
        obj = get_object(target)
    except Exception as e:  # noqa: BLE001 - any import problem is reported as the config's
        raise ConfigError(f"{key}._target_={target!r} cannot be imported ({e}). Check the dotted path.") from None
    name = f"{obj.__module__}.{obj.__name__}" if by_path else getattr(obj, "__name__", "")
    if name in full:
        check_node(full[name], node, key, command=command)
    elif name in subset:
        check_node(subset[name], node, key, subset=True, command=command)
    elif generic is not None:
        check_node(generic, {k: v for k, v in node.items() if k in ("_target_", "enabled")}, key, command=command)
