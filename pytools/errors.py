"""Errors a user can act on. Tasks print their message and exit non-zero, no traceback."""


class ToolError(Exception):
    """A problem the user can fix; the message says what happened and what to do."""
