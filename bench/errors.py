"""The exception types the command line turns into a one-line message."""


class LfubenchError(Exception):
    """A user-facing error: the message names the case, file, key or argument at fault."""


class OptionError(LfubenchError, ValueError):
    """An option or argument value the instruments cannot honour (a phantom's case count, a
    preprocessing size, a split setting); a ``ValueError`` for library callers."""
