"""Parameter counts: total, trainable and used at inference."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch
from torch import nn


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (shared parameters counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@dataclass(frozen=True)
class ParamCounts:
    """Parameter counts of a model.

    Attributes:
        total: every parameter the model holds (shared ones once).
        trainable: those with ``requires_grad``.
        used: those the eval-mode output ``model(x)`` depends on: a parameter is used when the
            autograd graph of the output reaches it. Heads or branches that are computed but
            whose result is discarded (UNet++ deep-supervision heads with ``head_merge="last"``)
            and modules never called are not used.
    """

    total: int
    trainable: int
    used: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def used_parameters(model: nn.Module, input_shape: tuple[int, ...]) -> list[str]:
    """Names of the parameters the eval-mode output of ``model`` on a ``(1, *input_shape)``
    input depends on (shared parameters under their first name).

    The forward runs on a copy of the model on the ``meta`` device (shapes only, no memory,
    no arithmetic) with every parameter requiring a gradient; the parameters are those whose
    ``AccumulateGrad`` nodes the output's autograd graph reaches.
    """
    meta = copy.deepcopy(model).to("meta").eval()
    for p in meta.parameters():
        p.requires_grad_(True)
    x = torch.zeros(1, *input_shape, device="meta")
    with torch.enable_grad():
        out = meta(x)
    outputs = [out] if isinstance(out, torch.Tensor) else [t for t in _flatten(out) if torch.is_tensor(t)]
    reached: set[int] = set()
    seen: set = set()
    stack = [t.grad_fn for t in outputs if t.grad_fn is not None]
    reached.update(id(t) for t in outputs if t.grad_fn is None and t.requires_grad)  # a bare parameter
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        variable = getattr(fn, "variable", None)
        if variable is not None:
            reached.add(id(variable))
        stack.extend(nxt for nxt, _ in fn.next_functions)
    return [name for name, p in meta.named_parameters() if id(p) in reached]


def param_counts(model: nn.Module, input_shape: tuple[int, ...]) -> ParamCounts:
    """Total, trainable and used-at-inference parameter counts (see :class:`ParamCounts`)."""
    used = set(used_parameters(model, input_shape))
    return ParamCounts(
        total=count_params(model),
        trainable=count_params(model, trainable_only=True),
        used=sum(p.numel() for name, p in model.named_parameters() if name in used),
    )


def _flatten(obj):
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, list | tuple):
        for item in obj:
            yield from _flatten(item)
    else:
        yield obj
