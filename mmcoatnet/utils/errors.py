"""The one error type of tool plumbing."""


class ToolError(Exception):
    """What the user asked for cannot run; the message says what to do instead. The tools print it
    without a traceback and exit with status 1 (``cli.exit_status``)."""
