"""The one exception type the CLI turns into a one-line message."""


class LfubenchError(Exception):
    """A user-facing error: the message names the case, file, key or argument at fault."""
