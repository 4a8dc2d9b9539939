"""Settings are frozen dataclasses; this module derives their checks, flags and YAML keys from the fields.

A field is declared once, with its default, its check (`validators`) and its help::

    @dataclass(frozen=True)
    class LMOptions:
        block_size: int = setting(512, integer(2), "tokens per training block")

        def __post_init__(self) -> None:
            validate(self)

`validate` runs every field's check (a bad value is one line naming the setting, the value and
what is allowed); `add_arguments` makes one flag per field (`--block-size`, typed from the
annotation, choices from the check, `--x/--no-x` for a bool) whose argparse dest is the field name,
so a YAML `--config` file's keys are the field names; `from_args` builds the dataclass back.
Transformers' `HfArgumentParser` does the same for its own dataclasses; it is not used because it
knows nothing of checks, of one-line errors or of flags whose default is another object's value.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, TypeVar

from .errors import ConfigError
from .validators import Check, NotAllowed

T = TypeVar("T")
_METADATA_KEY = "quantgpt.setting"


@dataclasses.dataclass(frozen=True)
class _Meta:
    check: Check | None
    help: str
    flags: tuple[str, ...]
    cli: bool
    parse: Any


def setting(default: Any = dataclasses.MISSING, check: Check | None = None, help: str = "", *,
            factory: Any = dataclasses.MISSING, flags: tuple[str, ...] = (), cli: bool = True,
            parse: Any = None) -> Any:
    """A dataclass field with its check and help. `flags` are extra spellings of its flag (the
    first flag is always `--field-name`); `cli=False` keeps it off the command line; `parse`
    converts the flag's text where the annotation's type does not (e.g. "a=1,b=2" to a dict)."""
    meta = {_METADATA_KEY: _Meta(check, help, tuple(flags), cli, parse)}
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _meta(field: dataclasses.Field) -> _Meta | None:
    return field.metadata.get(_METADATA_KEY)


def validate(instance: Any) -> None:
    """Check every field of `instance` that has a check, storing the normalized value (frozen or not)."""
    owner = type(instance).__name__
    for field in dataclasses.fields(instance):
        meta = _meta(field)
        if meta is None or meta.check is None:
            continue
        value = getattr(instance, field.name)
        try:
            normalized = meta.check(value)
        except NotAllowed as error:
            raise SettingError(owner, field.name, value, str(error)) from None
        object.__setattr__(instance, field.name, normalized)


class SettingError(ConfigError):
    """One setting's value fails its check; `name` is the field (the command line names the flag)."""

    def __init__(self, owner: str, name: str, value: Any, allowed: str) -> None:
        super().__init__(f"{owner}.{name}={value!r}: allowed is {allowed}")
        self.owner, self.name, self.value, self.allowed = owner, name, value, allowed


def _base_type(annotation: Any) -> tuple[Any, bool]:
    """(the type inside `X | None`, whether None is allowed)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return (args[0] if len(args) == 1 else str), len(args) < len(typing.get_args(annotation))
    return annotation, False


def _flag_name(prefix: str, name: str) -> str:
    return f"--{prefix}{name}".replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser | Any, cls: type, *, title: str | None = None, prefix: str = "",
                  defaults: dict[str, Any] | None = None, inherit: bool = False, skip: tuple[str, ...] = ()) -> None:
    """One flag per field of `cls` (dest: `<prefix><field>` with `_`), in an argument group `title`
    (or `parser` itself when it is already a group). `defaults` overrides field defaults for this
    command; `inherit=True` gives no argparse default at all: a flag not given is left out of the
    namespace, so `from_args` keeps the field's default (or with `base=...` the base's value), and
    `given` tells which were set (help still shows the field's default). Fields in `skip` get no
    flag."""
    group = parser.add_argument_group(title) if title is not None else parser
    hints = typing.get_type_hints(cls)
    defaults = defaults or {}
    for field in dataclasses.fields(cls):
        meta = _meta(field)
        if field.name in skip or (meta is not None and not meta.cli):
            continue
        meta = meta or _Meta(None, "", (), True, None)
        kind, _ = _base_type(hints[field.name])
        options: dict[str, Any] = {"dest": f"{prefix}{field.name}", "help": meta.help}
        if field.name in defaults:
            default = defaults[field.name]
        elif field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = dataclasses.MISSING
        if inherit:
            options["default"] = argparse.SUPPRESS
        elif default is dataclasses.MISSING:
            options["required"] = True
        else:
            options["default"] = list(default) if isinstance(default, tuple) else default
        shown = default is not dataclasses.MISSING and default not in (None, (), [], {})
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        else:
            origin = typing.get_origin(kind)
            item = typing.get_args(kind)[0] if origin in (tuple, list) else kind
            options["type"] = meta.parse or (item if item in (int, float) else str)
            if origin in (tuple, list) and meta.parse is None:
                options["nargs"] = "*"
            choices = meta.check.choices if meta.check is not None else None
            if choices:
                options["choices"] = choices
            options["metavar"] = field.name.upper() if not choices else None
        text = f"{meta.help} (default {_shown(default)})" if shown else meta.help
        options["help"] = text.replace("%", "%%")  # argparse formats help with %
        group.add_argument(_flag_name(prefix, field.name), *meta.flags, **options)


def _shown(value: Any) -> str:
    """A default as the flag would be written (a bool as on / off)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (tuple, list)):
        return " ".join(map(str, value))
    if isinstance(value, dict):
        return ",".join(f"{key}={item}" for key, item in value.items())
    return str(value)


def from_args(cls: type[T], args: argparse.Namespace, *, prefix: str = "", base: T | None = None, **fixed: Any) -> T:
    """`cls` from the parsed flags of `add_arguments(..., prefix=prefix)`; `fixed` sets fields
    directly; with `base`, fields whose flag was not given keep the base's value. A value that
    fails its check is one line naming the flag."""
    values = {}
    for field in dataclasses.fields(cls):
        dest = f"{prefix}{field.name}"
        meta = _meta(field)
        if field.name in fixed:
            values[field.name] = fixed[field.name]
        elif (meta is None or meta.cli) and hasattr(args, dest):
            values[field.name] = getattr(args, dest)
    try:
        return dataclasses.replace(base, **values) if base is not None else cls(**values)
    except SettingError as error:
        if error.name in fixed or not hasattr(args, f"{prefix}{error.name}"):
            raise
        raise ConfigError(f"{_flag_name(prefix, error.name)} {error.value!r}: allowed is {error.allowed}") from None


def to_dict(instance: Any) -> dict[str, Any]:
    """The fields as a JSON-ready dict (tuples as lists), for run records."""
    return {
        key: list(value) if isinstance(value, tuple) else value for key, value in dataclasses.asdict(instance).items()
    }


def flag(name: str, prefix: str = "") -> str:
    """The primary flag of field `name`: `--<prefix><name>` with `-` (what error messages name)."""
    return _flag_name(prefix, name)


def aliases(cls: type) -> dict[str, str]:
    """{identifier of each extra flag spelling: field name}, e.g. {"lr": "learning_rate"}: the old
    spellings a constructor or a YAML file may still use."""
    names = {}
    for field in dataclasses.fields(cls):
        meta = _meta(field)
        for spelling in meta.flags if meta is not None else ():
            names[spelling.lstrip("-").replace("-", "_")] = field.name
    return names


def given(cls: type, args: argparse.Namespace, prefix: str = "") -> dict[str, Any]:
    """{field: value} of the fields of `cls` whose flag is in `args`: with `inherit=True`, the flags
    given on the command line or in the YAML file."""
    return {
        field.name: getattr(args, f"{prefix}{field.name}")
        for field in dataclasses.fields(cls)
        if (_meta(field) is None or _meta(field).cli) and hasattr(args, f"{prefix}{field.name}")
    }
