"""The one family of user-facing errors.

Anything raised as a `QuantgptError` is the user's to fix (a bad flag, a damaged file, a run folder
in the wrong state): the command line prints its first line as `quantgpt: error: ...` and exits 2.
Every other exception is a bug in quantgpt and keeps its traceback. Library errors that a user's
input provokes (a truncated safetensors file, a malformed YAML) are caught where they arise and
re-raised as one of these, naming the file and the fix.

Each class also derives from the built-in error it refines, so callers of the Python API that
catch `ValueError` or `FileNotFoundError` keep working.
"""

from __future__ import annotations


class QuantgptError(Exception):
    """Base class: the message is one line saying what is wrong and how to fix it."""


class UsageError(QuantgptError, ValueError):
    """A flag or argument value is not allowed."""


class ConfigError(UsageError):
    """A setting's value is out of range; the message names the setting, the value and what is allowed."""


class InputFileError(QuantgptError, ValueError):
    """A file the user gave (config.json, YAML, weights, run directory) is missing, damaged or of the wrong kind."""


class OutputPathError(QuantgptError, ValueError):
    """An output path cannot be written without losing something (it exists, it is a file, it is the input)."""


class TrainingDivergedError(QuantgptError, ArithmeticError):
    """The loss became NaN or infinite; the last good checkpoint and best model are kept."""


class MissingInputError(InputFileError, FileNotFoundError):
    """A file or directory the user named does not exist."""


class OutputExistsError(OutputPathError, FileExistsError):
    """The output path already holds something that the command may not replace."""
