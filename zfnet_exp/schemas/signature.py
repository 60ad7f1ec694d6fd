"""The schema of a config node, built from the object its ``_target_`` names: one field per parameter of the
object (its name, its type in OmegaConf's terms, its default) and the rules the object declares with
:func:`zfnet_exp.utils.options.option_rules` (plus, for a library's class, :data:`LIBRARY_RULES`), run by the
dataclass's ``__post_init__``. So an option is declared once, where the object takes it, and a subclass or a
renamed class keeps its validation (the object is imported from the config's own dotted path).

A class whose constructor passes ``**kwargs`` on to its parent takes the parent's parameters too (followed up the
class hierarchy inside this package); a library's ``**kwargs`` (``WandbLogger``'s go to ``wandb.init``) leave the
node open: keys the signature does not name are passed through unchecked.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import inspect
import pathlib
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from omegaconf import MISSING, OmegaConf

from ..utils.options import FieldError, Rule, one_of, parameters, rules_of

# keys every node may hold besides the object's parameters: Hydra's instantiate keys, and ``enabled`` (read by
# zfnet_exp.utils.instantiators for the callbacks and loggers, never passed to the object)
HYDRA_KEYS = ("_target_", "_partial_", "_recursive_", "_convert_", "_args_")


@dataclasses.dataclass(frozen=True)
class Schema:
    """A generated schema: the dataclass to check a node against, and whether keys it lacks are passed on."""

    dataclass: type
    open: bool


def library_rules(cls: type) -> tuple[dict[str, Rule], tuple]:
    """Rules of a library class (Lightning's), found by the class or any parent, so a subclass keeps them."""
    from .library import LIBRARY_RULES

    rules: dict[str, Rule] = {}
    whole: tuple = ()
    for base in reversed(cls.__mro__):
        own, checks = LIBRARY_RULES.get(base, ({}, ()))
        rules, whole = {**rules, **own}, (*whole, *checks)
    return rules, whole


@functools.cache
def schema_of(obj: Callable, partial: bool = False, switch: bool = False) -> Schema:
    """The schema of the options of ``obj`` (a class or a function). ``partial``: the node is built with
    ``_partial_: true``, so parameters without a default are given later, not by the config. ``switch``: the
    node also takes ``enabled``."""
    params, is_open = parameters(obj)
    rules, whole = rules_of(obj)
    if inspect.isclass(obj):
        extra, extra_whole = library_rules(obj)
        rules, whole = {**extra, **rules}, (*extra_whole, *whole)
    fields: list[tuple] = [(key, Any, dataclasses.field(default=None)) for key in HYDRA_KEYS]
    if switch:
        fields.append(("enabled", bool, dataclasses.field(default=True)))
    literal_rules: dict[str, Rule] = {}
    for p in params:
        if (p.default is inspect.Parameter.empty and partial) or p.name in {f[0] for f in fields}:
            continue
        tp, choices = _config_type(p.annotation)
        if choices is not None:
            literal_rules[p.name] = one_of(choices)
        fields.append((p.name, tp, _field(p.default)))
    all_rules = {**literal_rules, **rules}

    def __post_init__(self) -> None:
        for name, rule in all_rules.items():
            if hasattr(self, name):
                expected = rule(getattr(self, name))
                if expected is not None:
                    raise FieldError(name, getattr(self, name), expected)
        for check in whole:
            check(self)

    name = f"{getattr(obj, '__qualname__', 'Options').replace('.', '_')}Options"
    return Schema(dataclasses.make_dataclass(name, fields, namespace={"__post_init__": __post_init__}), is_open)


_PRIMITIVES = (int, float, bool, str)


def _config_type(tp: Any) -> tuple[Any, tuple | None]:
    """An annotation in the types OmegaConf checks (what it cannot check becomes ``Any``), and the choices of a
    ``Literal``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp in _PRIMITIVES:
        return tp, None
    if tp is pathlib.Path:
        return str, None
    if inspect.isclass(tp) and issubclass(tp, enum.Enum):
        return Any, tuple(m.value for m in tp)
    if origin is typing.Literal:
        return Any, args
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            t, choices = _config_type(inner[0])
            optional = type(None) in args
            if choices is not None:
                return Any, choices  # None passes a choice (the field's null)
            return (t | None if optional and t is not Any else t), None
        if all(typing.get_origin(a) is typing.Literal or a is bool for a in inner):  # bool | Literal["link"]
            choices = tuple(c for a in inner for c in ((True, False) if a is bool else typing.get_args(a)))
            return Any, choices
        return Any, None
    if origin in (list, tuple, Sequence, typing.Sequence) or tp in (list, tuple):
        t, _ = _config_type(args[0] if args else Any)
        return (list[t] if t in _PRIMITIVES else list[Any]), None
    if origin in (dict, Mapping) or tp is dict:
        value = args[1] if len(args) == 2 else Any
        t, _ = _config_type(value)
        return (dict[str, t] if t in _PRIMITIVES else dict[str, Any]), None
    return Any, None


def _field(default: Any) -> dataclasses.Field:
    if default is inspect.Parameter.empty:
        return dataclasses.field(default=MISSING)
    if isinstance(default, pathlib.Path):
        default = str(default)
    if isinstance(default, tuple):
        default = list(default)
    if isinstance(default, list | dict):
        return dataclasses.field(default_factory=lambda: OmegaConf.to_container(OmegaConf.create(default)))
    if default is None or isinstance(default, (*_PRIMITIVES, enum.Enum)):
        return dataclasses.field(default=default.value if isinstance(default, enum.Enum) else default)
    return dataclasses.field(default=None)  # an object no config can hold: the config does not set it
