"""The errors a user's bad model configuration raises.

Catch :class:`ModelConfigError` to catch all of them: an unknown model name
(:class:`UnknownModelError`, also a ``KeyError``), an argument the model does not have, or a
value it does not accept, or a user's model (``package.module:callable``, an entry point) that
cannot be imported, built or run (:class:`UserModelError`). Each message is one line naming the
model and the argument.
"""

from __future__ import annotations


class ModelConfigError(ValueError):
    """A model configuration is wrong: unknown argument or invalid value."""


class UnknownModelError(KeyError, ModelConfigError):
    """The model name is not in the registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class UserModelError(ModelConfigError):
    """A user's model (``package.module:callable`` or an entry point of the group
    ``lfubench.models``) cannot be imported, built or run as the output contract asks.

    ``name`` is the model as the user named it and ``detail`` what is wrong, so a caller can
    name the entry in its own words (a plan says ``models[2] name 'mynet:build': ...``).
    """

    def __init__(self, name: str, detail: str) -> None:
        super().__init__(f"model {name!r}: {detail}")
        self.name, self.detail = name, detail
