"""The machinery every schema shares: a schema is a dataclass whose field types OmegaConf enforces when a config
node is merged into it, and whose ``__post_init__`` checks ranges and choices (the rules of
:mod:`zfnet_exp.utils.options`); :func:`check_node` turns whatever goes wrong into one
:class:`~zfnet_exp.errors.ConfigError` paragraph that names the full key, the bad value, what is valid and the fix."""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, ValidationError

from ..errors import ConfigError
from ..utils.options import FieldError


def check_node(schema: type, node: Mapping[str, Any], key: str, *, subset: bool = False, command: str = "train") -> Any:
    """Merge the plain (resolved) ``node`` into ``schema`` and build it; any type, range, choice, unknown or
    missing key becomes a ConfigError naming ``<key>.<field>``. ``subset``: check only the keys the schema
    declares (a Lightning class takes many more arguments than the ones we set and check)."""
    names = {f.name for f in dataclasses.fields(schema)}
    if not subset and set(node) - names:  # a wrong value of a declared key first, then the unknown key
        check_node(schema, node, key, subset=True, command=command)
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
        where = f"{key} ({node.get('_target_', schema.__name__)})" if key else f"python {command}.py's config"
        valid = sorted(n for n in names if not n.startswith("_"))
        close = difflib.get_close_matches(str(e.full_key), valid, n=1)
        guess = f" Did you mean {join(key, close[0])}?" if close else ""
        raise ConfigError(
            f"{join(key, str(e.full_key))} is not an option of {where}; valid keys: {', '.join(valid)}.{guess} "
            f"Check the spelling, or remove it."
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
