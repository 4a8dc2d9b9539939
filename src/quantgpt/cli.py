"""The `quantgpt` command line: a thin layer over the Python API, one module per command.

Every flag of a command can also come from a YAML file (`--config FILE`); flags given on the
command line win. Bad input prints one line saying what is wrong and exits with status 2
(set QUANTGPT_DEBUG=1 for the traceback).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

import yaml

# Each module in quantgpt.commands provides `NAME`, `HELP`, `add_arguments(parser)` and `run(args) -> int`.
COMMANDS = ("run", "size", "pretrain", "finetune", "quantize", "evaluate", "export", "generate", "report")

USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


def _load_command_modules() -> list:
    modules = []
    for name in COMMANDS:
        try:
            modules.append(importlib.import_module(f"quantgpt.commands.{name}"))
        except ModuleNotFoundError as error:
            if error.name != f"quantgpt.commands.{name}":
                raise
    return modules


def _apply_yaml_defaults(parser: argparse.ArgumentParser, path: str) -> None:
    """Flags from a YAML mapping become the parser's defaults; unknown keys are an error."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"--config {path}: no such file")
    data = yaml.safe_load(file.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"--config {path}: expected a mapping of flag names to values, got {type(data).__name__}")
    known = {action.dest for action in parser._actions}
    values = {str(key).replace("-", "_"): value for key, value in data.items()}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"--config {path}: unknown keys {unknown}; allowed are {sorted(known - {'help', 'config'})}")
    parser.set_defaults(**values)
    for action in parser._actions:  # a required flag given by the file is no longer required on the line
        if action.dest in values:
            action.required = False


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(prog="quantgpt", description=__doc__.splitlines()[0])
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
    try:
        if argv and argv[0] in subparsers and "--config" in argv[1:]:
            position = argv.index("--config", 1)
            if position + 1 >= len(argv):
                parser.error("--config needs a YAML file")
            _apply_yaml_defaults(subparsers[argv[0]], argv[position + 1])
        args = parser.parse_args(argv)
        return int(args._run(args) or 0)
    except USER_ERRORS as error:
        if os.environ.get("QUANTGPT_DEBUG"):
            raise
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"quantgpt: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("quantgpt: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
