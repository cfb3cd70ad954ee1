"""The errors a user's bad model configuration raises.

Catch :class:`ModelConfigError` to catch all of them: an unknown model name
(:class:`UnknownModelError`, also a ``KeyError``), an argument the model does not have, or a
value it does not accept. Each message is one line naming the model and the argument.
"""

from __future__ import annotations


class ModelConfigError(ValueError):
    """A model configuration is wrong: unknown argument or invalid value."""


class UnknownModelError(KeyError, ModelConfigError):
    """The model name is not in the registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])
