"""Model registry: ``@register_model``, ``create_model`` and ``list_models``.

Modelled on timm's registry: a constructor function is registered under its own name
and builds a ``torch.nn.Module`` from keyword arguments.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable

import torch

_MODELS: dict[str, Callable[..., torch.nn.Module]] = {}


class UnknownModelError(KeyError):
    """Raised when a model name is not in the registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def register_model(fn: Callable[..., torch.nn.Module]) -> Callable[..., torch.nn.Module]:
    """Register a model constructor under its function name."""
    name = fn.__name__
    if name in _MODELS:
        raise ValueError(f"model {name!r} is already registered")
    _MODELS[name] = fn
    return fn


def list_models(pattern: str = "*") -> list[str]:
    """Names of registered models matching a shell-style wildcard ``pattern``, sorted."""
    return sorted(n for n in _MODELS if fnmatch.fnmatchcase(n, pattern))


def model_entrypoint(name: str) -> Callable[..., torch.nn.Module]:
    """The constructor registered as ``name``; ``UnknownModelError`` lists close matches."""
    try:
        return _MODELS[name]
    except KeyError:
        close = difflib.get_close_matches(name, _MODELS, n=5, cutoff=0.5)
        hint = f"; close matches: {', '.join(close)}" if close else ""
        raise UnknownModelError(
            f"unknown model {name!r}{hint} (all models: lfubench zoo)"
        ) from None


def create_model(name: str, **kwargs) -> torch.nn.Module:
    """Build the registered model ``name`` with constructor keyword arguments ``kwargs``.

    Unknown keyword arguments raise ``TypeError`` naming the model and the argument.
    """
    fn = model_entrypoint(name)
    try:
        return fn(**kwargs)
    except TypeError as err:
        if "unexpected keyword argument" in str(err):
            bad = str(err).split("unexpected keyword argument")[-1].strip()
            raise TypeError(f"model {name!r} has no argument {bad}") from None
        raise
