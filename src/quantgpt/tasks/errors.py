"""The one error type of the data loaders."""

from ..errors import QuantgptError


class DataError(QuantgptError, ValueError):
    """A data file is missing or not in the expected format.

    The message is one line naming the file and what was expected, so a user can fix the data
    directory without reading a traceback.
    """
