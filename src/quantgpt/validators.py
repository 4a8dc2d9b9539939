"""The checks a setting's value must pass, written once for the whole package.

A check is called with the value and returns it (a list made a tuple, a path made a string; a
number is kept as given, so an int stays an int and a recipe hashed from its fields keeps its key),
or raises `NotAllowed` whose text says what is allowed ("an integer >= 1").
`settings.validate` turns that into one line naming the setting and the value; `choices` (when a
check has them) become the flag's argparse choices.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any


class NotAllowed(ValueError):
    """The value fails a check; the message is what is allowed, e.g. "an integer >= 1"."""


class Check:
    """`check(value) -> value` that raises NotAllowed(`allowed`) when `test(value)` is false.

    `allowed` and `choices` may be callables, read when asked for: the choices of a registry that
    grows at run time (a quantizer registered by a user's module) are never stale.
    """

    def __init__(self, test: Callable[[Any], bool], allowed: str | Callable[[], str],
                 choices: tuple | Callable[[], tuple] | None = None, normalize: Callable[[Any], Any] | None = None) -> None:
        self.test = test
        self._allowed = allowed
        self._choices = choices
        self.normalize = normalize

    @property
    def allowed(self) -> str:
        return self._allowed() if callable(self._allowed) else self._allowed

    @property
    def choices(self) -> tuple | None:
        choices = self._choices() if callable(self._choices) else self._choices
        return None if choices is None else tuple(choices)

    def __call__(self, value: Any) -> Any:
        try:
            passed = bool(self.test(value))
        except (TypeError, ValueError):
            passed = False
        if not passed:
            raise NotAllowed(self.allowed)
        return self.normalize(value) if self.normalize is not None else value

    def __repr__(self) -> str:
        return f"Check({self.allowed!r})"


def is_int(value: object) -> bool:
    """An int, and not a bool (True is an int in Python, never a count here)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """An int or a float, and not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _bounds(minimum: float | None, maximum: float | None, above: float | None, below: float | None) -> str:
    if minimum is not None and below is not None:
        return f" in [{minimum:g}, {below:g})"
    if minimum is not None and maximum is not None:
        return f" from {minimum:g} to {maximum:g}"
    parts = [f">= {minimum:g}" if minimum is not None else "", f"> {above:g}" if above is not None else "",
             f"<= {maximum:g}" if maximum is not None else "", f"< {below:g}" if below is not None else ""]
    text = " and ".join(part for part in parts if part)
    return f" {text}" if text else ""


def _within(value: float, minimum, maximum, above, below) -> bool:
    return ((minimum is None or value >= minimum) and (maximum is None or value <= maximum)
            and (above is None or value > above) and (below is None or value < below))


def integer(minimum: int | None = None, maximum: int | None = None) -> Check:
    """An integer (not a bool) within the bounds."""
    return Check(lambda v: is_int(v) and _within(v, minimum, maximum, None, None),
                 "an integer" + _bounds(minimum, maximum, None, None))


def number(minimum: float | None = None, maximum: float | None = None, *, above: float | None = None,
           below: float | None = None) -> Check:
    """A real number (int or float, not a bool) within the bounds; `above` / `below` are strict."""
    return Check(lambda v: is_number(v) and _within(v, minimum, maximum, above, below),
                 "a number" + _bounds(minimum, maximum, above, below))


def boolean() -> Check:
    return Check(lambda v: isinstance(v, bool), "True or False")


def one_of(choices: Iterable[str] | Callable[[], Iterable[str]]) -> Check:
    """One of `choices`: a tuple, or a callable giving them (a registry that grows at run time)."""
    listed = (lambda: tuple(choices())) if callable(choices) else (lambda fixed=tuple(choices): fixed)
    return Check(lambda v: v in listed(), lambda: "one of " + ", ".join(map(str, listed())), choices=listed)


def text() -> Check:
    """A non-empty string."""
    return Check(lambda v: isinstance(v, str) and bool(v), "a non-empty string")


def path() -> Check:
    """A non-empty path: a string or an `os.PathLike` (kept as a string)."""
    return Check(lambda v: isinstance(v, (str, os.PathLike)) and bool(os.fspath(v)), "a non-empty path",
                 normalize=lambda v: str(os.fspath(v)))


def some_of(choices: Iterable[str] | Callable[[], Iterable[str]]) -> Check:
    """A list or tuple (kept as a tuple) whose items are each one of `choices` (a tuple, or a callable
    giving them); argparse checks each item of the flag against the same choices."""
    listed = (lambda: tuple(choices())) if callable(choices) else (lambda fixed=tuple(choices): fixed)
    return Check(
        lambda v: isinstance(v, (list, tuple)) and all(isinstance(item, str) and item in listed() for item in v),
        lambda: "some of " + ", ".join(map(str, listed())),
        choices=listed,
        normalize=tuple,
    )


def instance_of(kind: type | tuple[type, ...]) -> Check:
    """An instance of `kind`, or of one of the types `kind` holds (e.g. a nested settings dataclass)."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return Check(lambda v: isinstance(v, kinds), " or ".join(f"a {k.__name__}" for k in kinds))


def optional(check: Check) -> Check:
    """None, or what `check` allows."""
    return Check(lambda v: v is None or _passes(check, v), lambda: f"None or {check.allowed}",
                 choices=lambda: check.choices, normalize=lambda v: v if v is None else check(v))


def strings() -> Check:
    """A list or tuple of strings (kept as a tuple); one string is a tuple of one."""
    return Check(
        lambda v: isinstance(v, str) or (isinstance(v, (list, tuple)) and all(isinstance(s, str) for s in v)),
        "a list of strings",
        normalize=lambda v: (v,) if isinstance(v, str) else tuple(v),
    )


def rates() -> Check:
    """A mapping of names to numbers > 0 (kept as a dict)."""
    return Check(
        lambda v: isinstance(v, dict) and all(isinstance(k, str) and is_number(r) and r > 0 for k, r in v.items()),
        "a mapping of names to numbers > 0, e.g. quantgpt=0.02",
        normalize=dict,
    )


def _passes(check: Check, value: Any) -> bool:
    try:
        check(value)
    except NotAllowed:
        return False
    return True
