"""Errors a user can act on. Tasks print their message and exit non-zero, no traceback."""

from datasets import DataError


class ToolError(Exception):
    """A problem the user can fix; the message says what happened and what to do."""


# Everything a task reports as a one-line error: the tools' own, and the data sets' (datasets/
# defines its DataError without importing pytools, so the arrow between the two runs one way).
USER_ERRORS: tuple[type[Exception], ...] = (ToolError, DataError)
