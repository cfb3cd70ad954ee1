"""Channel pruning of models outside lfubench's channel description, with Torch-Pruning.

:func:`models.pruning.prune_channels` prunes lfubench's own families through their channel
description (``channel_layers``). Any other model (an outside baseline, a user's model) comes
here: Torch-Pruning's dependency graph (Fang et al., CVPR 2023, "DepGraph: Towards Any
Structural Pruning"; package ``torch-pruning``, in the extra ``baselines``) traces it on one input,
groups the layers whose channels must be removed together, and removes the lowest-scored
channels of every group; the result is a genuinely smaller copy. Where Torch-Pruning fails, or its
result no longer gives ``(B, num_classes, H, W)`` logits, the model is refused in one line.

The same arguments as for the zoo's families, mapped onto Torch-Pruning's: importance ``l1`` /
``l2`` is its magnitude importance with ``p = 1`` / ``2``, ``bn`` its batch-norm scale importance
(refused for a model without batch norm), ``random`` its random importance (seeded); scope
``global`` is its global pruning. Convolutions with ``num_classes`` output channels (the output
heads) are not pruned. In-place activations are traced as out-of-place (Torch-Pruning cannot
follow channels through the views they leave in the graph) and restored afterwards.

Unlike a zoo family's pruned model, the result cannot be rebuilt from a configuration: its
``config`` is ``None`` (keep it whole with ``torch.save(model)``), and ``prune_report.kept`` is
empty (Torch-Pruning does not return the kept indices), so :func:`~models.pruning.zero_removed`
does not apply to it.
"""

from __future__ import annotations

import copy
import math
import time

import torch
from torch import nn

from ._outside import require
from .errors import ModelConfigError
from .pruning import PruneReport, check_arguments


def _example(model: nn.Module, example_input: torch.Tensor | None) -> torch.Tensor:
    """The traced input: ``example_input`` or zeros ``(1, in_channels, s, s)``: ``s`` the model's
    ``input_size`` where it has one (the size it is planned for), else the least multiple of its
    ``size_multiple`` that is at least 64."""
    if example_input is not None:
        return example_input
    m = getattr(model, "size_multiple", 32)
    side = getattr(model, "input_size", None) or m * math.ceil(64 / m)
    device = next(model.parameters()).device
    return torch.zeros(1, model.in_channels, side, side, device=device)


def _importance(tp, importance: str, model: nn.Module, name: str):
    if importance == "bn":
        if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
            raise ModelConfigError(f"{name}: importance 'bn' needs batch norm, and the model has none")
        return tp.importance.BNScaleImportance()
    if importance == "random":
        return tp.importance.RandomImportance()
    return tp.importance.MagnitudeImportance(p=1 if importance == "l1" else 2)


def _convs(model: nn.Module) -> dict[str, int]:
    return {n: m.out_channels for n, m in model.named_modules() if isinstance(m, nn.modules.conv._ConvNd)}


def prune_outside(model: nn.Module, ratio: float, *, importance: str = "l1", scope: str = "local",
                  example_input: torch.Tensor | None = None, seed: int = 0) -> nn.Module:
    """``model`` with a fraction ``ratio`` of its channels removed by Torch-Pruning (a new model;
    ``model`` is not changed), in ``model``'s train/eval mode, with ``prune_report``
    (:class:`~models.pruning.PruneReport`) and ``config = None``.

    The model must have ``in_channels`` and ``num_classes``. Raises :class:`ModelConfigError` in
    one line for bad arguments, a missing ``torch-pruning``, or a model Torch-Pruning cannot prune.
    """
    name = getattr(model, "model_name", type(model).__name__)
    check_arguments(name, ratio, importance, scope)
    if not all(isinstance(getattr(model, a, None), int) for a in ("in_channels", "num_classes")):
        raise ModelConfigError(f"{name}: pruning needs the model's in_channels and num_classes")
    tp = require(name, "torch_pruning", "torch-pruning")
    start = time.perf_counter()
    pruned = copy.deepcopy(model)
    training = model.training
    pruned.eval()
    x = _example(model, example_input)
    ignored = [m for m in pruned.modules()
               if isinstance(m, nn.modules.conv._ConvNd) and m.out_channels == model.num_classes]
    imp = _importance(tp, importance, pruned, name)
    # in-place activations leave as_strided nodes in the traced graph, through which Torch-Pruning
    # cannot follow channels; trace and prune without them, then put them back
    inplace = [m for m in pruned.modules() if getattr(m, "inplace", False) is True]
    for m in inplace:
        m.inplace = False
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            pruner = tp.pruner.BasePruner(
                pruned, x, importance=imp, pruning_ratio=float(ratio), global_pruning=scope == "global",
                ignored_layers=ignored)
            pruner.step()
        with torch.no_grad():
            out = pruned(x)
    except Exception as err:  # noqa: BLE001  (whatever Torch-Pruning or the pruned model raise)
        text = str(err).splitlines()[0] if str(err) else ""
        raise ModelConfigError(f"{name}: Torch-Pruning cannot prune this model "
                               f"({type(err).__name__}: {text})") from None
    expected = (x.shape[0], model.num_classes, *x.shape[2:])
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelConfigError(f"{name}: Torch-Pruning's result gives {got}, not {expected}; "
                               "this model cannot be pruned")
    for m in inplace:
        m.inplace = True
    pruned.train(training)
    before, after = _convs(model), _convs(pruned)
    prunable = [n for n, m in model.named_modules()
                if isinstance(m, nn.modules.conv._ConvNd) and m.out_channels != model.num_classes]
    total = sum(before[n] for n in prunable)
    pruned.config = None
    pruned.prune_report = PruneReport(
        ratio=float(ratio), importance=importance, scope=scope, seconds=time.perf_counter() - start,
        params_before=sum(p.numel() for p in model.parameters()),
        params_after=sum(p.numel() for p in pruned.parameters()),
        channel_ratio=1 - sum(after[n] for n in prunable) / total if total else 0.0,
        achieved={n: 1 - after[n] / before[n] for n in prunable})
    return pruned
