"""Config validation: every group of a composed task config (``train``, ``analyze``, ``eval``, ``transfer``) is
checked once, at start, in one pass, before any data is read or anything is built, and a wrong value fails in one
:class:`~zfnet_exp.errors.ConfigError` paragraph that names the full key, the bad value, what is valid and the fix
(the task runner prints it and exits with code 2).

Where each schema comes from (each option is declared once):

- a node with a ``_target_`` (``data``, ``model``, ``model.optimizer``/``model.scheduler``, ``callbacks.*``,
  ``logger.*``, ``trainer``, ``analysis``): the object it names, imported from the config's own dotted path,
  gives the schema: its signature (names, types, defaults) and the rules it declares next to it with
  :func:`zfnet_exp.utils.options.option_rules` (:mod:`.signature`; a library class's rules: :mod:`.library`).
  A subclass keeps its parent's rules; a user's own class is checked against its own signature. The ``model``
  node's layer table and first-layer settings are checked by the rules its class declares
  (:mod:`zfnet_exp.models.options`);
- the top-level keys of each entry point, ``transfer.*`` and ``paths``: :mod:`.top` (their values live in the
  YAML file; the dataclass gives their types and ranges, and refuses a key that does not exist);
- :func:`check_layer_names` checks the layer names of every enabled callback and of the analysis against the
  built model (the names a model has are only known once it exists), before training or analysing.

The composition itself stays untyped: the YAML files list the options a user sets (a key
overridden without ``+`` must exist in the composed config), with ``${default:}`` standing for the object's own
default (:mod:`zfnet_exp.utils.resolvers`), and the checks here run on the composed, resolved config.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf

from ..errors import ConfigError
from ..utils.instantiators import switch_only
from .base import check_node, show
from .signature import schema_of
from .top import AnalyzeTop, EvalTop, Paths, TrainTop, Transfer, TransferTop, group_keys, per_class_counts

if TYPE_CHECKING:  # torch is not imported by the schemas: the entry points check a command line before it loads
    from torch import nn

__all__ = ["check_layer_names", "per_class_counts", "validate_config", "validate_model"]

TOPS = {"train": TrainTop, "analyze": AnalyzeTop, "eval": EvalTop, "transfer": TransferTop}


def command_of(cfg: Mapping) -> str:
    """The entry point a composed config belongs to (the command its error messages show)."""
    if "analysis" in cfg:
        return "analyze"
    if "transfer" in cfg:
        return "transfer"
    return "train" if "trainer" in cfg else "eval"


def validate_config(cfg: DictConfig, command: str | None = None) -> None:
    """Check every group of a composed config of ``command`` (train, analyze, eval or transfer; by default
    inferred from its groups); raise one ConfigError on the first problem. Interpolations are resolved first
    (the values the objects would receive)."""
    command = command or command_of(cfg)
    plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    plain.pop("hydra", None)
    top = TOPS[command]
    groups = group_keys(top)
    check_node(top, {k: (None if k in groups else v) for k, v in plain.items()}, "", command=command)
    if "paths" in plain:
        check_node(Paths, plain["paths"] or {}, "paths", subset=True, command=command)
    if plain.get("data") is not None:
        _by_target(plain["data"], "data", command)
    if plain.get("model") is not None:
        _by_target(plain["model"], "model", command)
        for part in ("optimizer", "scheduler"):
            if isinstance(plain["model"].get(part), Mapping):
                _by_target(plain["model"][part], f"model.{part}", command)
    if plain.get("trainer") is not None:
        _by_target(plain["trainer"], "trainer", command)
    for group in ("callbacks", "logger"):
        for name, node in (plain.get(group) or {}).items():
            if node is not None and not switch_only(node):
                _by_target(node, f"{group}.{name}", command, switch=True)
    if plain.get("analysis") is not None:
        _by_target(plain["analysis"], "analysis", command)
    if command == "transfer":
        check_node(Transfer, plain.get("transfer") or {}, "transfer", command=command)


def validate_model(model_cfg: DictConfig, command: str = "train") -> None:
    """Check a composed ``model`` node alone (as :func:`validate_config` does within a whole config)."""
    _by_target(OmegaConf.to_container(model_cfg, resolve=True), "model", command)


def check_layer_names(cfg: DictConfig, network: nn.Module) -> None:
    """Every layer name configured for an enabled callback (``callbacks.<name>.layers`` / ``.layer``) or for
    the analysis resolves on ``network`` (the built ``nn.Module``); otherwise one ConfigError that lists the
    valid names. Run it right after the model is built, before ``trainer.fit`` or the analysis."""
    from ..diagnostics.layers import resolve_layer

    command = command_of(cfg)
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


def _by_target(node: Any, key: str, command: str, switch: bool = False) -> None:
    """Check ``node`` against the schema of the class (or function) its ``_target_`` names. ``switch``: the
    node may hold ``enabled`` (callbacks, loggers)."""
    if not isinstance(node, Mapping) or "_target_" not in node:
        raise ConfigError(f"{key} has no _target_ (the class or function to build); see conf/{key.split('.')[0]}/.")
    target = node["_target_"]
    try:
        obj = get_object(target)
    except Exception as e:  # noqa: BLE001 - any import problem is reported as the config's
        raise ConfigError(f"{key}._target_={target!r} cannot be imported ({e}). Check the dotted path.") from None
    schema = schema_of(obj, partial=bool(node.get("_partial_", False)), switch=switch)
    check_node(schema.dataclass, node, key, subset=schema.open, command=command)
