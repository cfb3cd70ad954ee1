"""Model registry: ``@register_model``, ``create_model`` and ``list_models``.

Modelled on timm's registry: a constructor function is registered under its own name and
builds a ``torch.nn.Module`` from keyword arguments. The registry wraps each constructor so
that, however it is called, the model it builds is named after the registered name and
keyword arguments the constructor does not take raise
:class:`~models.errors.ModelConfigError` before anything is built.

A user's own model is named, wherever a model name is accepted, by reference:
``package.module:callable`` (``mynet:build`` for ``build`` in ``mynet.py`` of the working
folder, which is importable), or by a name an installed package registers in the entry-point
group ``lfubench.models`` (``name = "package.module:callable"``; :func:`list_models` lists
those, with source ``user``). The callable takes ``in_channels`` and ``num_classes`` (a plan
gives the dataset's) and any other keyword arguments, and returns a ``torch.nn.Module``
mapping ``(B, in_channels, H, W)`` to logits ``(B, num_classes, H, W)``; ``forward_heads``
(deep-supervision heads, level 1 first) is optional. The registry gives the module what the
rest of lfubench reads, where it lacks it: ``in_channels``, ``num_classes``, ``model_name``
and ``config`` (``create_model(**model.config)`` rebuilds it). :func:`check_forward` gives it
one dry forward. Every problem is a :class:`~models.errors.UserModelError`, one line naming the
model as the user named it.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import importlib
import importlib.metadata
import inspect
import logging
import os
import re
import sys
from collections.abc import Callable

import torch

from .blocks import building
from .errors import ModelConfigError, UnknownModelError, UserModelError

log = logging.getLogger(__name__)

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
    (``@register_model(source="MONAI")``; one of :data:`SOURCES`). Returns the constructor
    wrapped so that it takes keyword arguments only, raises
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
    """Where the model ``name`` comes from (one of :data:`SOURCES`): ``user`` for a reference
    (``package.module:callable``, not imported here) and an entry-point model."""
    if is_user_model(name):  # known without importing it
        return "user"
    model_entrypoint(name)
    return _SOURCES[name]


def list_models(pattern: str = "*") -> list[str]:
    """Names of the registered models and the entry-point models (:data:`ENTRY_POINT_GROUP`)
    matching a shell-style wildcard ``pattern``, sorted."""
    return sorted(n for n in {*_MODELS, *_entry_points()} if fnmatch.fnmatchcase(n, pattern))


def model_entrypoint(name: str) -> Callable[..., torch.nn.Module]:
    """The constructor of the model ``name``: a registered one, an entry-point model, or a
    reference ``package.module:callable`` (imported now; the working folder is importable).
    An unknown name raises ``UnknownModelError`` listing close matches; a reference or entry
    point that cannot be imported, :class:`~models.errors.UserModelError`."""
    if name in _MODELS:
        return _MODELS[name]
    if is_reference(name):
        module, _, attr = name.partition(":")
        return _user_builder(name, _resolve(name, module, attr))
    found = _entry_points().get(name) if isinstance(name, str) else None
    if found is not None:
        return _user_builder(name, _resolve(name, found.module, found.attr, found.value))
    close = difflib.get_close_matches(str(name), list_models(), n=5, cutoff=0.5)
    hint = f"; close matches: {', '.join(close)}" if close else ""
    raise UnknownModelError(
        f"unknown model {name!r}{hint} (all models: lfubench zoo; a model of your own: "
        "package.module:callable)"
    ) from None


def model_arguments(name: str) -> tuple[str, ...] | None:
    """The keyword arguments the constructor of the model ``name`` takes; ``None`` if it takes
    any (a user's callable with ``**kwargs``)."""
    fn = model_entrypoint(name).__wrapped__
    if name in _MODELS:
        return _arguments(fn)
    sig = _signature(fn)
    if sig is None or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    return tuple(p.name for p in sig.parameters.values() if p.kind in _NAMED)


def sized_arguments(name: str, size: int) -> dict:
    """``{"input_size": size}`` for a model whose network is planned for its input size (nnU-Net's
    stages, MONAI DynUNet's strides), else ``{}``: what a plan, ``zoo`` and ``profile`` add to the
    model's arguments for an input of ``size`` x ``size`` unless the entry gives its own."""
    try:
        accepted = model_arguments(name)
    except ModelConfigError:  # an unknown name or a bad reference: building it says why
        return {}
    return {"input_size": size} if accepted is not None and "input_size" in accepted else {}


def argument_default(name: str, key: str):
    """The default of the constructor argument ``key`` of the model ``name`` (for a registered
    constructor that passes ``**kwargs`` on, its model class's); ``None`` where there is none."""
    fn = model_entrypoint(name).__wrapped__
    if name in _MODELS:
        sig = inspect.signature(fn, eval_str=True)
        params = (sig.parameters if key in sig.parameters
                  else inspect.signature(sig.return_annotation).parameters)
    else:
        sig = _signature(fn)
        params = sig.parameters if sig is not None else {}
    if key not in params or params[key].default is inspect.Parameter.empty:
        return None
    return params[key].default


# --- a user's own models --------------------------------------------------------------------

#: the entry-point group through which installed packages register models
ENTRY_POINT_GROUP = "lfubench.models"

#: what a user's model is built with where neither the caller nor its callable gives a value
#: (the zoo families' own defaults)
USER_DEFAULTS = {"in_channels": 3, "num_classes": 3}

_REFERENCE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
_ENTRY_POINTS: dict[tuple[str, ...], dict[str, importlib.metadata.EntryPoint]] = {}


def is_reference(name) -> bool:
    """Whether ``name`` names a model by reference, ``package.module:callable``."""
    return isinstance(name, str) and ":" in name


def is_user_model(name) -> bool:
    """Whether ``name`` names a user's model: a reference or an entry-point model (source ``user``)."""
    return is_reference(name) or (isinstance(name, str) and name not in _MODELS and name in _entry_points())


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    """The entry points of :data:`ENTRY_POINT_GROUP` by name, read once per ``sys.path``. A
    name the registry already has, or that a second distribution repeats, is left out (logged)."""
    key = tuple(sys.path)
    if key not in _ENTRY_POINTS:
        found: dict[str, importlib.metadata.EntryPoint] = {}
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = getattr(ep.dist, "name", None) or "a distribution"
            if ep.name in _MODELS or ep.name in found or ":" in ep.name:
                log.warning("entry point %r (%s) of %s left out: the name is %s", ep.name, ep.value, dist,
                            "not a plain name" if ":" in ep.name else "already taken")
                continue
            found[ep.name] = ep
        _ENTRY_POINTS.clear()
        _ENTRY_POINTS[key] = found
    return _ENTRY_POINTS[key]


def _one_line(err: BaseException) -> str:
    """``Type: message`` of an exception, its message cut to the first line."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def _working_folder_importable() -> None:
    """Put the working folder first on ``sys.path`` (as ``python -m`` does), where it is not:
    a model in a file of the user's own folder (``mynet.py`` -> ``mynet:build``) imports from
    the console script too."""
    cwd = os.getcwd()
    if "" not in sys.path and cwd not in sys.path:
        sys.path.insert(0, cwd)


def _resolve(name: str, module: str, attr: str, value: str | None = None) -> Callable:
    """The callable ``attr`` (dotted) of ``module``; ``value``: the entry point's reference."""
    shown = value or f"{module}:{attr}"
    if not _REFERENCE.fullmatch(f"{module}:{attr}"):
        raise UserModelError(name, f"{shown!r} is not a reference package.module:callable")
    _working_folder_importable()
    importlib.invalidate_caches()
    try:
        obj = importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name and (module == err.name or module.startswith(err.name + ".")):
            raise UserModelError(name, f"module {module!r} not found (not installed, nor in the working "
                                 f"folder {os.getcwd()})") from None
        raise UserModelError(name, f"importing module {module!r} failed: {_one_line(err)}") from err
    except Exception as err:  # the user's module raised while it was imported
        raise UserModelError(name, f"importing module {module!r} failed: {_one_line(err)}") from err
    for part in attr.split("."):
        if not hasattr(obj, part):
            where = getattr(sys.modules.get(module), "__file__", None) or module
            raise UserModelError(name, f"module {module!r} has no {attr!r} ({where})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise UserModelError(name, f"{attr!r} of module {module!r} is not callable (a {type(obj).__name__})")
    return obj


def _signature(fn: Callable) -> inspect.Signature | None:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):  # a callable without a signature (a builtin)
        return None


def _user_builder(name: str, fn: Callable) -> Callable[..., torch.nn.Module]:
    """``fn`` wrapped as a registered constructor is: arguments checked first, the model built
    inside :func:`~models.blocks.building`, and what lfubench reads attached (:func:`_attach`)."""
    sig = _signature(fn)
    params = sig.parameters if sig is not None else {}
    named = tuple(p for p, v in params.items() if v.kind in _NAMED)
    takes_any = sig is None or any(v.kind is inspect.Parameter.VAR_KEYWORD for v in params.values())

    def build(**kwargs) -> torch.nn.Module:
        lacking = [k for k in USER_DEFAULTS if k not in named and not takes_any]
        if lacking:
            raise UserModelError(name, f"its callable must take {' and '.join(USER_DEFAULTS)} (the dataset "
                                 f"sets them); it takes {', '.join(named) or 'no keyword arguments'}")
        unknown = [] if takes_any else [k for k in kwargs if k not in named]
        if unknown:
            noun = "argument" if len(unknown) == 1 else "arguments"
            raise UserModelError(name, f"it takes no {noun} {', '.join(map(repr, unknown))}; its arguments: "
                                 f"{', '.join(named)}")
        filled = {k: v for k, v in USER_DEFAULTS.items()
                  if k not in params or params[k].default is inspect.Parameter.empty}
        call = {k: kwargs.get(k, filled.get(k)) for k in USER_DEFAULTS if k in kwargs or k in filled}
        call.update(kwargs)
        if sig is not None:
            try:
                sig.bind(**call)
            except TypeError as err:  # a required argument not given, a positional-only one
                raise UserModelError(name, f"{err}; its arguments: {', '.join(named)}") from None
        with building(name):
            try:
                model = fn(**call)
            except Exception as err:  # the user's constructor failed: one line, the cause chained
                raise UserModelError(name, f"building it raised {_one_line(err)}") from err
        if not isinstance(model, torch.nn.Module):
            raise UserModelError(name, f"its callable returned a {type(model).__name__}, not a "
                                 "torch.nn.Module")
        effective = {k: v.default for k, v in params.items()
                     if v.kind in _NAMED and v.default is not inspect.Parameter.empty}
        _attach(model, name, call, {**effective, **call})
        return model

    build.__name__ = build.__qualname__ = name
    build.__doc__ = fn.__doc__
    build.__wrapped__ = fn
    return build


def _attach(model: torch.nn.Module, name: str, call: dict, effective: dict) -> None:
    """Give a user's ``model`` the attributes lfubench reads, where it lacks them:
    ``in_channels`` and ``num_classes`` (the values it was built with), ``model_name``
    (``name``), and ``config`` (``{"name": name, **call}``: ``create_model(**config)`` rebuilds
    it; a ``config`` of its own that is not lfubench's is refused rather than overwritten)."""
    for key in USER_DEFAULTS:
        if getattr(model, key, None) is None:
            setattr(model, key, effective[key])
    if getattr(model, "model_name", None) is None:
        model.model_name = name
    own = getattr(model, "config", None)
    if own is not None and not (isinstance(own, dict) and "name" in own):
        raise UserModelError(name, f"the model has an attribute 'config' of its own (a "
                             f"{type(own).__name__}); lfubench keeps the settings that rebuild a model "
                             "there: rename it")
    model.config = {"name": name, **call}


def check_forward(model: torch.nn.Module, input_shape: tuple[int, int, int]) -> None:
    """One dry forward of a zero ``(1, C, H, W)`` input in eval mode, without gradients: the
    output must be one tensor ``(1, model.num_classes, H, W)``, and ``forward_heads``, where the
    model has it, a non-empty list of such tensors; else :class:`~models.errors.UserModelError`
    naming the model. The model is left in its own train/eval mode."""
    name = getattr(model, "model_name", type(model).__name__)
    c, h, w = input_shape
    expected = (1, model.num_classes, h, w)
    shown = "x".join(map(str, expected))
    x = torch.zeros(1, c, h, w)
    heads_fn = getattr(model, "forward_heads", None)
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for what, fn in (("forward", model), ("forward_heads", heads_fn)):
                if fn is None:
                    continue
                try:
                    out = fn(x)
                except Exception as err:
                    raise UserModelError(name, f"{what} of a 1x{c}x{h}x{w} input raised "
                                         f"{_one_line(err)}") from err
                if what == "forward_heads":
                    if not (isinstance(out, list | tuple) and out
                            and all(isinstance(t, torch.Tensor) for t in out)):
                        raise UserModelError(name, f"forward_heads must return a non-empty list of tensors "
                                             f"{shown}, got a {type(out).__name__}")
                    out = next((t for t in out if tuple(t.shape) != expected), out[0])
                if not isinstance(out, torch.Tensor):
                    raise UserModelError(name, f"forward must return one logits tensor {shown}, got a "
                                         f"{type(out).__name__} (deep-supervision heads go in forward_heads)")
                if tuple(out.shape) != expected:
                    raise UserModelError(name, f"{what} of a 1x{c}x{h}x{w} input returned "
                                         f"{'x'.join(map(str, out.shape))}; expected {shown} (batch, "
                                         f"num_classes {model.num_classes}, the input's height and width)")
    finally:
        model.train(training)


def create_model(name: str, **kwargs) -> torch.nn.Module:
    """Build the model ``name`` with constructor keyword arguments ``kwargs``.

    ``name``: a registered model, an entry-point model, or a user's callable by reference
    (``package.module:callable``; see the module docstring). The model's ``model_name`` is
    ``name``. A bad configuration raises ``ModelConfigError`` (a ``ValueError``) with a one-line
    message naming the model and the argument: an unknown name (``UnknownModelError``, also a
    ``KeyError``), an argument the model does not take, or a value it does not accept; for a
    user's model also a module or callable not found, or its constructor raising
    (``UserModelError``).
    """
    return model_entrypoint(name)(**kwargs)
