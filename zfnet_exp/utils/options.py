"""How a configurable object declares the ranges and choices of its options, next to the options themselves.

An option is declared once, as a parameter of the object that takes it (a callback's or a datamodule's
constructor, an analysis function): its name, type and default are the parameter's. What the type cannot say
(a size >= 1, one of a few words) is declared on the object with :func:`option_rules`::

    @option_rules(k=at_least(1), every_n_epochs=at_least(1), maps=maps_option)
    class Top9Deconv(Callback):
        def __init__(self, layers: Sequence[str] | None = None, k: int = 9, maps: ... = 8, ...): ...

:mod:`zfnet_exp.schemas` builds the schema of a config node from the object its ``_target_`` names (the
signature and these rules), so a subclass keeps its parent's rules and a rename cannot lose them.

A rule is a function of the option's value that returns ``None`` when the value is valid, else what is valid in
words ("a value >= 1"); a rule over several options is a positional argument: a function of the options (an
object with one attribute per option) that raises :class:`FieldError`. This module sits with the utilities
(no import of the layers above) because every layer's objects declare their rules with it.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

Rule = Callable[[Any], str | None]
T = TypeVar("T")

RULES_ATTRIBUTE = "__option_rules__"
PACKAGE = __name__.split(".")[0]


class FieldError(Exception):
    """An option ``field`` holds ``value``, which is not ``expected`` (raised while a config is checked)."""

    def __init__(self, field: str, value: Any, expected: str):
        super().__init__(f"{field}={value!r}: expected {expected}")
        self.field, self.value, self.expected = field, value, expected


def option_rules(*whole: Callable[[Any], None], **rules: Rule) -> Callable[[T], T]:
    """Declare the rules of the options of a class or function (see the module docstring). A subclass's
    rules add to its parent's (and may replace one of them)."""

    def declare(obj: T) -> T:
        inherited = getattr(obj, RULES_ATTRIBUTE, ({}, ()))
        setattr(obj, RULES_ATTRIBUTE, ({**inherited[0], **rules}, (*inherited[1], *whole)))
        return obj

    return declare


def rules_of(obj: Any) -> tuple[dict[str, Rule], tuple[Callable[[Any], None], ...]]:
    """The per-option rules and the whole-object rules declared on ``obj`` (or inherited by it)."""
    return getattr(obj, RULES_ATTRIBUTE, ({}, ()))


@functools.cache
def parameters(obj: Callable) -> tuple[list[inspect.Parameter], bool]:
    """The options ``obj`` (a class or a function) takes: its keyword parameters, annotations evaluated, and
    whether it also takes any other key. A class whose constructor passes ``**kwargs`` on to its parent takes the
    parent's parameters too (followed up the class hierarchy inside this package); a library's ``**kwargs``
    (``WandbLogger``'s go to ``wandb.init``) take any key."""
    if not inspect.isclass(obj):
        return _own(obj, obj)
    params: dict[str, inspect.Parameter] = {}
    for cls in obj.__mro__:
        if "__init__" not in vars(cls) or cls is object:
            continue
        own, takes_any = _own(cls.__init__, cls)
        for p in own:
            params.setdefault(p.name, p)
        if not takes_any:
            return list(params.values()), False
        if not cls.__module__.startswith(PACKAGE):  # a library's **kwargs go elsewhere
            return list(params.values()), True
    return list(params.values()), False


def _own(func: Callable, owner: Any) -> tuple[list[inspect.Parameter], bool]:
    signature = inspect.signature(func)
    namespace = vars(inspect.getmodule(owner) or typing)
    params, takes_any = [], False
    for i, p in enumerate(signature.parameters.values()):
        if p.kind is p.VAR_KEYWORD:
            takes_any = True
        elif p.kind is not p.VAR_POSITIONAL and not (i == 0 and p.name == "self"):
            params.append(p.replace(annotation=_evaluate(p.annotation, namespace)))
    return params, takes_any


def _evaluate(annotation: Any, namespace: Mapping[str, Any]) -> Any:
    """A string annotation (``from __future__ import annotations``) evaluated in its module; a name imported
    only for type checkers is ``Any``."""
    if not isinstance(annotation, str):
        return Any if annotation is inspect.Parameter.empty else annotation
    try:
        return eval(annotation, dict(namespace))  # noqa: S307 - the package's own annotations
    except Exception:  # noqa: BLE001 - a TYPE_CHECKING-only name: nothing to check the value against
        return Any


def default_of(obj: Callable, name: str) -> Any:
    """The default of option ``name`` of ``obj`` (what ``${default:}`` in a YAML file stands for): a tuple as a list,
    a path as a string."""
    found = {p.name: p.default for p in parameters(obj)[0]}
    if name not in found or found[name] is inspect.Parameter.empty:
        raise KeyError(f"{name} is not an option with a default of {getattr(obj, '__qualname__', obj)}")
    value = found[name]
    return list(value) if isinstance(value, tuple) else str(value) if hasattr(value, "__fspath__") else value


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def at_least(low: float) -> Rule:
    """``value >= low`` (None passes: an optional option says so in its type)."""
    return lambda v: None if v is None or not _number(v) or v >= low else f"a value >= {low}"


def greater_than(low: float, what: str = "") -> Rule:
    return lambda v: None if v is None or not _number(v) or v > low else (what or f"a value > {low}")


def between(low: float, high: float, what: str = "") -> Rule:
    return lambda v: (
        None if v is None or not _number(v) or low <= v <= high else (what or f"a value in [{low}, {high}]")
    )


def one_of(choices: Iterable[Any] | Callable[[], Iterable[Any]]) -> Rule:
    """The value is one of ``choices`` (each item, when the option is a list). ``choices`` may be a function,
    called when a config is checked (a registry filled at import)."""

    def rule(value: Any) -> str | None:
        valid = list(dict.fromkeys(choices() if callable(choices) else choices))
        items = value if isinstance(value, list | tuple) else [value]
        if any(item is not None and item not in valid for item in items):
            return f"one of {', '.join(map(str, valid))}"
        return None

    return rule


def each(rule: Rule) -> Rule:
    """``rule`` holds for every item of a list option."""
    return lambda v: next((r for r in map(rule, v or []) if r is not None), None)


def maps_option(value: Any) -> str | None:
    """The ``maps`` option of the diagnostics: an int N >= 0, ``all``, or a list of channel indices."""
    ok = (
        value == "all"
        or (isinstance(value, int) and not isinstance(value, bool) and value >= 0)
        or (isinstance(value, list) and all(isinstance(c, int) and c >= 0 for c in value))
    )
    return None if ok else "a number of maps N >= 0, all, or a list of channel indices like [0, 5]"


def number_or_fraction(value: Any) -> str | None:
    """Lightning's ``limit_*_batches``: an int number of batches >= 0 or a float fraction in [0, 1]."""
    what = "a number of batches (int >= 0) or a fraction (float in [0, 1])"
    if value is None:
        return None
    if not _number(value):
        return what
    if (isinstance(value, int) and value < 0) or (isinstance(value, float) and not 0.0 <= value <= 1.0):
        return what
    return None
