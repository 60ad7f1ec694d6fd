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

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

Rule = Callable[[Any], str | None]
T = TypeVar("T")

RULES_ATTRIBUTE = "__option_rules__"


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
