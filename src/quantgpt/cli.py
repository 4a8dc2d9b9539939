"""The `quantgpt` command line: a thin layer over the Python API, one module per command.

Every flag of a command can also come from a YAML file (`--config FILE`); flags given on the
command line win. Bad input (a `QuantgptError`, or a flag argparse refuses) prints one line
`quantgpt: error: ...` and exits with status 2 (set QUANTGPT_DEBUG=1 for the traceback); any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path
from collections.abc import Callable
from typing import Any, NoReturn

import yaml

from quantgpt.errors import InputFileError, MissingInputError, QuantgptError, UsageError

# Each module in quantgpt.commands provides `NAME`, `HELP`, `add_arguments(parser)` and `run(args) -> int`.
COMMANDS = ("run", "size", "pretrain", "finetune", "quantize", "evaluate", "export", "generate", "report")

MAX_YAML_BYTES = 2**20  # a flag file is a few hundred bytes


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a refused flag prints one line and a pointer to --help instead of the usage."""

    def error(self, message: str) -> NoReturn:
        first = message.splitlines()[0] if message else "bad arguments"
        self.exit(2, f"quantgpt: error: {first} (see '{self.prog} --help')\n")


def _load_command_modules() -> list:
    modules = []
    for name in COMMANDS:
        try:
            modules.append(importlib.import_module(f"quantgpt.commands.{name}"))
        except ModuleNotFoundError as error:
            if error.name != f"quantgpt.commands.{name}":
                raise
    return modules


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader, but a key given twice in one mapping is refused: PyYAML keeps the last
    silently, so a flag set twice would take whichever came later."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice; keep one of them", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: str) -> Any:
    file = Path(path)
    if not file.exists():
        raise MissingInputError(f"--config {path}: no such file")
    if not file.is_file():
        raise InputFileError(f"--config {path}: not a file")
    try:
        data = file.read_bytes()
    except OSError as error:
        raise InputFileError(f"--config {path}: cannot read it ({error.strerror})") from None
    if len(data) > MAX_YAML_BYTES:
        raise InputFileError(f"--config {path}: {len(data)} bytes, too large for a flag file (at most {MAX_YAML_BYTES})")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputFileError(f"--config {path}: not UTF-8 text (byte {error.start})") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: a !!python tag is refused, never constructed
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1} column {mark.column + 1}: " if mark is not None else ""
        problem = " ".join(str(error.problem or error.context or "malformed").split())
        raise InputFileError(f"--config {path}: {where}not valid YAML ({problem})") from None
    except (yaml.YAMLError, RecursionError) as error:
        raise InputFileError(f"--config {path}: not valid YAML ({' '.join(str(error).split())[:200]})") from None


def _converted(action: argparse.Action, value: Any, where: str) -> Any:
    """One YAML scalar as argparse would have it from the command line: typed, and among the choices."""
    if value is None:
        return None
    custom_type = action.type not in (None, str, int, float)
    if isinstance(value, (dict, list)) and not custom_type:
        raise UsageError(f"{where}={value!r} is not allowed: give a single value")
    if isinstance(value, bool) and action.type in (int, float):
        raise UsageError(f"{where}={value!r} is not allowed: give a number")
    if isinstance(value, (dict, list)):
        return value  # a structured value for a custom flag type, checked by the code that takes it
    text = value if isinstance(value, str) else str(value)
    try:
        converted = action.type(text) if action.type is not None else text
    except (ValueError, TypeError, argparse.ArgumentTypeError) as error:
        raise UsageError(f"{where}={value!r} is not allowed ({' '.join(str(error).split())[:200]})") from None
    if action.choices is not None and converted not in action.choices:
        raise UsageError(f"{where}={value!r} is not allowed: use one of {', '.join(map(str, action.choices))}")
    return converted


def _yaml_value(action: argparse.Action, value: Any, where: str) -> Any:
    if action.nargs == 0:  # store_true / store_false / --x/--no-x
        if value is not None and not isinstance(value, bool):
            raise UsageError(f"{where}={value!r} is not allowed: use true or false")
        return value
    if action.nargs in ("*", "+") or isinstance(action.nargs, int):
        items = value if isinstance(value, list) else [value]
        return [_converted(action, item, where) for item in items]
    return _converted(action, value, where)


def _apply_yaml_defaults(parser: argparse.ArgumentParser, path: str) -> None:
    """Flags from a YAML mapping become the parser's defaults, typed and checked as on the command
    line; unknown keys are an error."""
    data = _read_yaml(path)
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise InputFileError(f"--config {path}: expected a mapping of flag names to values, got {type(data).__name__}")
    actions = {}
    for action in parser._actions:
        actions.setdefault(action.dest, action)
    known = set(actions) - {"help", "config"}
    # A key is a setting's name (the flag's dest); an older flag spelling (lr for learning_rate) still works.
    spellings = {
        option.lstrip("-").replace("-", "_"): action.dest
        for action in parser._actions
        for option in action.option_strings
        if option.startswith("--") and not (action.nargs == 0 and option.startswith("--no-"))
    }
    values: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        dest = name if name in known else spellings.get(name, name)
        if dest in values:
            raise UsageError(f"--config {path}: {key} sets {dest} a second time; keep one of them")
        values[dest] = value
    unknown = sorted(set(values) - known)
    if unknown:
        raise UsageError(f"--config {path}: unknown keys {unknown}; allowed are {sorted(known)}")
    values = {key: _yaml_value(actions[key], value, f"--config {path}: {key}") for key, value in values.items()}
    parser.set_defaults(**values)
    for action in parser._actions:  # a required flag given by the file is no longer required on the line
        if action.dest in values:
            action.required = False


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = OneLineParser(prog="quantgpt", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    subparsers = {}
    for module in _load_command_modules():
        command = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        command.add_argument("--config", metavar="YAML", help="read flag values from this YAML file")
        module.add_arguments(command)
        command.set_defaults(_run=module.run)
        subparsers[module.NAME] = command
    return parser, subparsers


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, subparsers = build_parser()

    def parse_and_run() -> int:
        try:
            if argv and argv[0] in subparsers:
                # a pre-parser, so that `--config=FILE` and `--config FILE` both apply the file's defaults
                pre = OneLineParser(prog=subparsers[argv[0]].prog, add_help=False)
                pre.add_argument("--config")
                config_path = pre.parse_known_args(argv[1:])[0].config
                if config_path is not None:
                    _apply_yaml_defaults(subparsers[argv[0]], config_path)
            args = parser.parse_args(argv)
        except SystemExit as stop:  # argparse: --help (0) or a refused flag (2, its line printed)
            return 0 if stop.code is None else stop.code if isinstance(stop.code, int) else 2
        return int(args._run(args) or 0)

    return exit_status(parse_and_run)


def exit_status(run: Callable[[], int | None]) -> int:
    """`run()`'s status, or 2 after one line `quantgpt: error: ...` for a `QuantgptError` (the
    user's to fix; QUANTGPT_DEBUG=1 keeps the traceback), 130 when interrupted. The benchmarks'
    scripts run through it too."""
    try:
        return int(run() or 0)
    except QuantgptError as error:
        if os.environ.get("QUANTGPT_DEBUG"):
            raise
        lines = str(error).splitlines()
        message = lines[0] if lines and lines[0] else type(error).__name__
        print(f"quantgpt: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("quantgpt: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
