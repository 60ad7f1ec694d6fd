"""The machinery every group schema shares: a schema is a dataclass whose field types OmegaConf enforces when
a config node is merged into it, and whose ``__post_init__`` checks ranges and choices with the helpers below;
:func:`check_node` turns whatever goes wrong into one :class:`~zfnet_exp.errors.ConfigError` paragraph that
names the full key, the bad value and what is valid."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, ValidationError

from ..errors import ConfigError


class FieldError(Exception):
    """Raised by a schema's ``__post_init__``: ``field`` holds ``value``, which is not ``expected``."""

    def __init__(self, field: str, value: Any, expected: str):
        super().__init__(f"{field}={value!r}: expected {expected}")
        self.field, self.value, self.expected = field, value, expected


def at_least(obj: Any, name: str, low: float) -> None:
    """``obj.<name> >= low`` (None passes: optional fields say so in their type)."""
    value = getattr(obj, name)
    if value is not None and value < low:
        raise FieldError(name, value, f"a value >= {low}")


def between(obj: Any, name: str, low: float, high: float) -> None:
    value = getattr(obj, name)
    if value is not None and not low <= value <= high:
        raise FieldError(name, value, f"a value in [{low}, {high}]")


def one_of(obj: Any, name: str, choices: Sequence[Any]) -> None:
    """``obj.<name>`` is one of ``choices`` (each item, when the field is a list)."""
    value = getattr(obj, name)
    items = value if isinstance(value, list) else [value]
    for item in items:
        if item is not None and item not in choices:
            raise FieldError(name, value, f"one of {', '.join(map(str, choices))}")


def maps_option(obj: Any, name: str = "maps") -> None:
    """The ``maps`` option of the diagnostics: an int N >= 0, ``all``, or a list of channel indices."""
    value = getattr(obj, name)
    ok = (
        value == "all"
        or (isinstance(value, int) and not isinstance(value, bool) and value >= 0)
        or (isinstance(value, list) and all(isinstance(c, int) and c >= 0 for c in value))
    )
    if not ok:
        raise FieldError(name, value, "a number of maps N >= 0, all, or a list of channel indices like [0, 5]")


def dissect_options(obj: Any) -> None:
    """Network Dissection's two constants: ``quantile`` in (0, 1) (NetDissect 0.005), ``iou_threshold`` in
    [0, 1] (NetDissect 0.04)."""
    if not 0 < obj.quantile < 1:
        raise FieldError("quantile", obj.quantile, "the share of top activations, in (0, 1) (NetDissect: 0.005)")
    between(obj, "iou_threshold", 0.0, 1.0)


def number_or_fraction(obj: Any, name: str) -> None:
    """Lightning's ``limit_*_batches``: an int number of batches >= 0 or a float fraction in [0, 1]."""
    value = getattr(obj, name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FieldError(name, value, "a number of batches (int >= 0) or a fraction (float in [0, 1])")
    if (isinstance(value, int) and value < 0) or (isinstance(value, float) and not 0.0 <= value <= 1.0):
        raise FieldError(name, value, "a number of batches (int >= 0) or a fraction (float in [0, 1])")


def check_node(schema: type, node: Mapping[str, Any], key: str, *, subset: bool = False, command: str = "train") -> Any:
    """Merge the plain (resolved) ``node`` into ``schema`` and build it; any type, range, choice, unknown or
    missing key becomes a ConfigError naming ``<key>.<field>``. ``subset``: check only the keys the schema
    declares (a Lightning class takes many more arguments than the ones we set and check)."""
    names = {f.name for f in dataclasses.fields(schema)}
    values = {k: v for k, v in node.items() if not subset or k in names}
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), values))
    except FieldError as e:
        raise _error(join(key, e.field), e.value, e.expected, command) from None
    except MissingMandatoryValue as e:
        full = join(key, str(e.full_key))
        raise ConfigError(
            f"{full} must be set (it is '???' in the config). Pass it on the command line, "
            f"e.g. python {command}.py {full}=..."
        ) from None
    except ConfigKeyError as e:
        where = f"{key} ({node.get('_target_', schema.__name__)})" if key else "the top level"
        raise ConfigError(
            f"{join(key, str(e.full_key))} is not an option of {where}; valid keys: "
            f"{', '.join(sorted(n for n in names if not n.startswith('_')))}. Check the spelling, or remove it."
        ) from None
    except ValidationError as e:
        field = str(e.full_key).split(".")[0].split("[")[0]
        hint = _describe(typing.get_type_hints(schema).get(field, Any))
        raise _error(join(key, field), node.get(field), hint, command) from None


def join(key: str, field: str) -> str:
    return f"{key}.{field}" if key else field


def _error(key: str, value: Any, expected: str, command: str) -> ConfigError:
    return ConfigError(
        f"{key}={show(value)} is not valid: expected {expected}. Fix it in the config or on the command line "
        f"(python {command}.py {key}=...)."
    )


def show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value).replace("'", "")


def _describe(tp: Any) -> str:
    """A field type in words: ``int`` -> "an integer", ``list[str] | None`` -> "a list of strings, or null"."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if args and type(None) in args:
        inner = [a for a in args if a is not type(None)]
        return f"{_describe(inner[0]) if len(inner) == 1 else 'a value'}, or null"
    if origin in (list, Sequence, tuple):
        return f"a list of {_describe(args[0]).split(' ', 1)[1]}s" if args else "a list"
    if origin in (dict, Mapping):
        return "a mapping"
    words = {int: "an integer", float: "a number", bool: "a boolean (true or false)", str: "a string"}
    return words.get(tp, "a value of the documented type")
