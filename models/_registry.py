"""Model registry: ``@register_model``, ``create_model`` and ``list_models``.

Modelled on timm's registry: a constructor function is registered under its own name and
builds a ``torch.nn.Module`` from keyword arguments. The registry wraps each constructor so
that, however it is called, the model it builds is named after the registered name and
keyword arguments the constructor does not take raise
:class:`~models.errors.ModelConfigError` before anything is built.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import inspect
from collections.abc import Callable

import torch

from .blocks import building
from .errors import ModelConfigError, UnknownModelError

_MODELS: dict[str, Callable[..., torch.nn.Module]] = {}
_SOURCES: dict[str, str] = {}

#: Where a registered model comes from, as ``lfubench zoo`` shows it.
SOURCES = ("lfubench", "authors' preset", "nnU-Net", "MONAI", "smp", "user")

_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def _arguments(fn: Callable[..., torch.nn.Module]) -> tuple[str, ...] | None:
    """The keyword arguments ``fn`` accepts; ``None`` if it accepts any.

    A constructor that takes ``**kwargs`` passes them to the class named by its return
    annotation, so that class's arguments count as well.
    """
    params = inspect.signature(fn, eval_str=True)
    names = [p.name for p in params.parameters.values() if p.kind in _NAMED]
    if all(p.kind is not inspect.Parameter.VAR_KEYWORD for p in params.parameters.values()):
        return tuple(names)
    cls = params.return_annotation
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise TypeError(
            f"register_model: {fn.__name__} takes **kwargs, so its return annotation must be "
            "the model class they are passed to"
        )
    target = inspect.signature(cls).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in target):
        return None
    return tuple(names + [p.name for p in target if p.kind in _NAMED and p.name not in names])


def register_model(fn: Callable[..., torch.nn.Module] | None = None, *,
                   source: str = "lfubench"):
    """Register a model constructor under its function name.

    Used bare (``@register_model``) or with the model's origin
    (``@register_model(source="MONAI")``; one of :data:`SOURCES`). Returns the constructor wrapped so that it takes keyword arguments only, raises
    ``ModelConfigError`` naming the model and the argument for one it does not take, and
    builds the model inside :func:`~models.blocks.building` so the model's ``model_name``
    (and every error it raises) is the registered name.
    """
    if fn is None:
        return functools.partial(register_model, source=source)
    if source not in SOURCES:
        raise ValueError(f"register_model: source {source!r} is not one of {', '.join(SOURCES)}")
    name = fn.__name__
    if name in _MODELS:
        raise ValueError(f"model {name!r} is already registered")
    accepted = _arguments(fn)

    @functools.wraps(fn)
    def build(**kwargs) -> torch.nn.Module:
        unknown = [] if accepted is None else [k for k in kwargs if k not in accepted]
        if unknown:
            noun = "argument" if len(unknown) == 1 else "arguments"
            raise ModelConfigError(
                f"model {name!r} has no {noun} {', '.join(map(repr, unknown))}; "
                f"its arguments: {', '.join(accepted)}"
            )
        with building(name):
            model = fn(**kwargs)
        if hasattr(model, "config") and getattr(model, "model_name", None) == name:
            model.config = {"name": name, **kwargs}
        return model

    _MODELS[name] = build
    _SOURCES[name] = source
    return build


def model_source(name: str) -> str:
    """Where the registered model ``name`` comes from (one of :data:`SOURCES`)."""
    model_entrypoint(name)
    return _SOURCES[name]


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

    The model's ``model_name`` is ``name``. A bad configuration raises ``ModelConfigError``
    (a ``ValueError``) with a one-line message naming the model and the argument: an unknown
    name (``UnknownModelError``, also a ``KeyError``), an argument the model does not take,
    or a value it does not accept.
    """
    return model_entrypoint(name)(**kwargs)
