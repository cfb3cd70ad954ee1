"""Structured channel pruning by ratio: a genuinely smaller dense model, for every family.

:func:`prune_channels` scores the output channels of every convolution, keeps the most
important ones and builds a new model of the same family with the smaller per-layer widths
(``widths=`` of :mod:`models.channels`), whose weights are the kept slices of the original's.
The result has fewer parameters, MACs and milliseconds, and is a first-class zoo model:
``models.create_model(**pruned.config)`` rebuilds its architecture, so a checkpoint (state
dict + config) loads anywhere, and ``create_model(**{**pruned.config, "prune_level": k})``
with ``load_from_full`` gives its every pruning level.

``torch.nn.utils.prune`` is not used: its masks zero weights inside tensors of the original
size, which saves no parameters, MACs or time. Torch-Pruning (DepGraph, version 1.6.1) is not
used either: on U-Net w32 and on LFU-Net w16 without groups it gives the same parameter counts
as this module at ratio 0.5 (1,965,603 and 366,899), but on LFU-Net's grouped convolutions over
concatenated skips it fails (w16, 8 groups: an index error in its pruning step; the authors'
w8 model: its dependency graph did not finish in 200 s). One native mechanism serves all
families instead, through each model's explicit channel description (``model.channel_layers()``).

Rules, per channel set (the output channels of one convolution):

- channels coupled through a shared module (an LFU-Net transition or head reading several
  nodes) are pruned together: one score (the sum), one choice;
- a set touched by a grouped convolution with ``g`` groups keeps a multiple of ``g`` channels,
  the same number in each of its ``g`` chunks, and never fewer than ``g``; the sets
  concatenated into one grouped convolution keep equal widths;
- the class outputs of the heads are never pruned;
- where a ratio cannot be met exactly, the kept count is rounded to the nearest valid count;
  ``pruned.prune_report`` gives the achieved ratio per set and in total.

Importance of a channel: ``l1`` (default) or ``l2`` norm of its filter (summed over the
coupled producers), ``bn`` the absolute batch-norm scale after it (network slimming; needs
batch norm after every pruned convolution), ``random`` a seeded random score (a control:
which channels are kept versus how many). Scope ``local`` keeps ``1 - ratio`` of every set;
``global`` ranks all channels together (each set's scores divided by their mean, so sets of
different fan-in compare) and removes the lowest ``ratio`` of all channels, keeping at least
:data:`GLOBAL_FLOOR` of every set. Equal scores (fresh batch-norm scales are all 1) are ranked
by their place in their set, the later channel first, so a tie is shared out over the sets
rather than removed whole: all-equal scores prune every set by about ``ratio``.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ._registry import create_model
from .blocks import SegmentationNet
from .channels import INPUT, ChannelGraph, Layer, graph
from .errors import ModelConfigError

#: how a channel's importance is scored
IMPORTANCE = ("l1", "l2", "bn", "random")

#: where channels are ranked: within each set, or across all sets
SCOPES = ("local", "global")

#: the largest ratio accepted
MAX_RATIO = 0.9

#: the least fraction of each set that global pruning keeps
GLOBAL_FLOOR = 0.1


@dataclass
class PruneReport:
    """What :func:`prune_channels` did (JSON-able with :meth:`to_dict`).

    ``kept`` lists, per channel set, the indices of the original channels kept; ``achieved``
    the fraction of each set removed; ``channel_ratio`` the fraction of all prunable channels
    removed; ``param_ratio`` the fraction of parameters removed.
    """

    ratio: float
    importance: str
    scope: str
    seconds: float
    params_before: int
    params_after: int
    channel_ratio: float
    achieved: dict[str, float] = field(default_factory=dict)
    kept: dict[str, list[int]] = field(default_factory=dict)

    @property
    def param_ratio(self) -> float:
        return 1 - self.params_after / self.params_before

    def to_dict(self) -> dict:
        return {**asdict(self), "param_ratio": self.param_ratio}


def described(model: nn.Module) -> bool:
    """Whether ``model`` has lfubench's channel description (``channel_layers``), which
    :func:`prune_channels` prunes natively; other models go to :mod:`models.outside_pruning`."""
    return isinstance(model, SegmentationNet) and \
        type(model).channel_layers is not SegmentationNet.channel_layers


def _check(model, ratio, importance, scope) -> None:
    name = getattr(model, "model_name", type(model).__name__)
    if not isinstance(model, SegmentationNet) or not model.config:
        raise ModelConfigError(f"{name}: prune_channels needs a zoo model built by models.create_model")
    check_arguments(name, ratio, importance, scope)


def check_arguments(name: str, ratio, importance, scope) -> None:
    """``ModelConfigError`` naming the model ``name`` for a bad ratio, importance or scope."""
    if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 <= ratio <= MAX_RATIO:
        raise ModelConfigError(f"{name}: prune ratio must be a number in [0, {MAX_RATIO}], got {ratio!r}")
    if importance not in IMPORTANCE:
        raise ModelConfigError(f"{name}: importance {importance!r} is not one of {', '.join(IMPORTANCE)}")
    if scope not in SCOPES:
        raise ModelConfigError(f"{name}: scope {scope!r} is not one of {', '.join(SCOPES)}")


def _filter_scores(model: nn.Module, layer: Layer, importance: str, model_name: str) -> torch.Tensor:
    """Per output channel of ``layer``: the norm of its filter or its batch-norm scale."""
    if importance == "bn":
        if layer.norm is None:
            raise ModelConfigError(f"{model_name}: importance 'bn' needs batch norm after every pruned "
                                   f"convolution; layer {layer.path!r} has none")
        return model.get_submodule(layer.norm).weight.detach().abs().double()
    conv = model.get_submodule(layer.path)
    w = conv.weight.detach().double()
    w = w.transpose(0, 1) if isinstance(conv, nn.ConvTranspose2d) else w
    flat = w.reshape(w.shape[0], -1)
    return flat.abs().sum(1) if importance == "l1" else flat.square().sum(1).sqrt()


def _class_scores(model, g: ChannelGraph, importance: str, seed: int) -> dict[str, torch.Tensor]:
    """One score per channel for every coupled class (keyed by its first set)."""
    producers = {layer.out: layer for layer in g.layers if layer.out is not None}
    gen = torch.Generator().manual_seed(seed)
    scores = {}
    for cls in g.coupled:
        width = model.widths[cls[0]]
        if importance == "random":
            scores[cls[0]] = torch.rand(width, generator=gen, dtype=torch.float64)
        else:
            scores[cls[0]] = sum(_filter_scores(model, producers[n], importance, model.model_name)
                                 for n in cls)
    return scores


def _round_to(x: float, step: int) -> int:
    return step * math.floor(x / step + 0.5)


def _keep_counts(model, g: ChannelGraph, scores: dict[str, torch.Tensor], ratio: float,
                 scope: str) -> dict[str, int]:
    """Channels kept per coupled class (keyed by its first set)."""
    width = {c[0]: model.widths[c[0]] for c in g.coupled}
    chunks = {c[0]: g.chunks[c[0]] for c in g.coupled}
    if scope == "local":
        counts = {k: min(width[k], max(chunks[k], _round_to((1 - ratio) * width[k], chunks[k])))
                  for k in width}
    else:
        norm, weights, place = {}, [], []
        for c in g.coupled:
            s = scores[c[0]]
            mean = s.mean()
            norm[c[0]] = s / mean if mean > 0 else torch.ones_like(s)
            weights.append(torch.full_like(s, len(c)))  # a coupled class stands for len(c) sets
            place.append((torch.arange(len(s), dtype=torch.float64) + 0.5) / len(s))
        flat, wts = torch.cat(list(norm.values())), torch.cat(weights)
        # ascending score; among equal scores the channel later in its set first (the one a
        # set's own selection drops first), so ties are shared out over the sets in proportion
        # to their widths; then the position in the concatenation: a deterministic order
        order = torch.argsort(-torch.cat(place), stable=True)
        order = order[torch.argsort(flat[order], stable=True)]
        removed = torch.zeros(len(flat), dtype=torch.bool)
        removed[order[torch.cumsum(wts[order], 0) <= ratio * wts.sum()]] = True
        counts, start = {}, 0
        for k, s in norm.items():
            left = len(s) - int(removed[start:start + len(s)].sum())
            start += len(s)
            floor = max(chunks[k], math.ceil(GLOBAL_FLOOR * width[k] / chunks[k]) * chunks[k])
            counts[k] = min(width[k], max(floor, _round_to(left, chunks[k])))
    root = {n: c[0] for c in g.coupled for n in c}
    for tie in g.tied:  # equal widths where grouped concatenations need them
        keys = list(dict.fromkeys(root[n] for n in tie))
        if len({counts[k] for k in keys}) > 1:
            step = math.lcm(*(chunks[k] for k in keys))
            count = _round_to(sum(counts[k] for k in keys) / len(keys), step)
            for k in keys:
                counts[k] = min(width[k], max(step, count))
    return counts


def _select(scores: torch.Tensor, count: int, chunks: int) -> torch.Tensor:
    """The ``count`` best channels, ``count / chunks`` from each equal chunk, ascending."""
    size, per = len(scores) // chunks, count // chunks
    kept = []
    for c in range(chunks):
        part = scores[c * size:(c + 1) * size]
        order = torch.argsort(-part, stable=True)  # ties: the lower index first
        kept.append(order[:per] + c * size)
    return torch.sort(torch.cat(kept)).values


def _input_index(model, use: tuple[str, ...], kept: dict[str, torch.Tensor]) -> torch.Tensor:
    parts, offset = [], 0
    for name in use:
        width = model.in_channels if name == INPUT else model.widths[name]
        idx = torch.arange(width) if name == INPUT else kept[name]
        parts.append(idx + offset)
        offset += width
    return torch.cat(parts)


def _sliced(model, layer: Layer, kept: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state-dict entries of ``layer`` (and its batch norm) restricted to the kept channels."""
    conv = model.get_submodule(layer.path)
    out_all = conv.out_channels
    out_idx = kept[layer.out] if layer.out is not None else torch.arange(out_all)
    in_idx = _input_index(model, layer.uses[0], kept)
    w = conv.weight.detach()
    if isinstance(conv, nn.ConvTranspose2d):
        new_w = w[in_idx][:, out_idx]
    else:
        g = conv.groups
        opg, ipg = out_all // g, conv.in_channels // g
        blocks = []
        for grp in range(g):
            outs = out_idx[out_idx // opg == grp]
            ins = in_idx[in_idx // ipg == grp] - grp * ipg
            blocks.append(w[outs][:, ins])
        if len({b.shape for b in blocks}) > 1:  # the width rules make this impossible
            raise RuntimeError(f"{model.model_name}: unbalanced groups in layer {layer.path!r}")
        new_w = torch.cat(blocks)
    out = {f"{layer.path}.weight": new_w}
    if conv.bias is not None:
        out[f"{layer.path}.bias"] = conv.bias.detach()[out_idx]
    if layer.norm is not None:
        bn = model.get_submodule(layer.norm)
        for key in ("weight", "bias", "running_mean", "running_var"):
            out[f"{layer.norm}.{key}"] = getattr(bn, key).detach()[out_idx]
        out[f"{layer.norm}.num_batches_tracked"] = bn.num_batches_tracked.detach().clone()
    return out


def prune_channels(model: SegmentationNet, ratio: float, *, importance: str = "l1", scope: str = "local",
                   example_input: torch.Tensor | None = None, seed: int = 0) -> SegmentationNet:
    """Remove a fraction ``ratio`` of the channels of every convolution; return the smaller model.

    Args:
        model: a zoo model (built by :func:`models.create_model`), trained or not; not changed.
        ratio: fraction of each channel set to remove, in [0, 0.9]; 0 returns an equivalent
            model (same widths, same weights).
        importance: ``"l1"``, ``"l2"``, ``"bn"`` or ``"random"`` (see the module docstring).
        scope: ``"local"`` (every set loses ``ratio``) or ``"global"`` (ranked across sets).
        example_input: when given, both models are run on it once in eval mode and the output
            shapes compared (a check; pruning itself needs no input); every module of both
            models is then back in its own train/eval mode.
        seed: seed of the ``random`` importance.

    Returns:
        A new model of the same family with the smaller widths, on the original's device, in
        the original's train/eval mode, with ``config`` (``create_model(**config)`` rebuilds
        it) and ``prune_report`` (:class:`PruneReport`). In eval mode its output equals the
        original's with the removed channels zeroed (:func:`zero_removed`).

    A model without lfubench's channel description (an outside baseline, a user's model) is
    pruned by Torch-Pruning instead, or refused in one line: :mod:`models.outside_pruning`.

    Raises:
        ModelConfigError: a model not built by the registry, a ratio outside [0, 0.9], an
            unknown importance or scope, or ``bn`` importance on a layer without batch norm.
    """
    if not described(model):  # a model outside lfubench's channel description: Torch-Pruning
        from .outside_pruning import prune_outside

        return prune_outside(model, ratio, importance=importance, scope=scope,
                             example_input=example_input, seed=seed)
    _check(model, ratio, importance, scope)
    start = time.perf_counter()
    g = graph(model.channel_layers())
    scores = _class_scores(model, g, importance, seed)
    counts = _keep_counts(model, g, scores, float(ratio), scope)
    kept: dict[str, torch.Tensor] = {}
    for cls in g.coupled:
        idx = _select(scores[cls[0]], counts[cls[0]], g.chunks[cls[0]])
        kept.update({n: idx for n in cls})
    widths = {**model.widths, **{n: len(idx) for n, idx in kept.items()}}
    device = next(model.parameters()).device
    pruned = create_model(**{**model.config, "widths": widths})
    state = {}
    for layer in g.layers:
        state.update(_sliced(model, layer, kept))
    pruned.load_state_dict(state, strict=True)
    pruned.to(device).train(model.training)
    if example_input is not None:
        modes = [(m, m.training) for m in (*model.modules(), *pruned.modules())]
        try:
            with torch.no_grad():
                a, b = model.eval()(example_input), pruned.eval()(example_input)
        finally:  # each module back in its own mode (a frozen batch norm stays frozen)
            for m, mode in modes:
                m.training = mode
        if a.shape != b.shape:
            raise RuntimeError(f"{model.model_name}: pruned output shape {tuple(b.shape)} != "
                               f"{tuple(a.shape)}")
    before = sum(model.widths[n] for n in g.names)
    pruned.prune_report = PruneReport(
        ratio=float(ratio), importance=importance, scope=scope, seconds=time.perf_counter() - start,
        params_before=sum(p.numel() for p in model.parameters()),
        params_after=sum(p.numel() for p in pruned.parameters()),
        channel_ratio=1 - sum(widths[n] for n in g.names) / before,
        achieved={n: 1 - len(idx) / model.widths[n] for n, idx in kept.items()},
        kept={n: idx.tolist() for n, idx in kept.items()})
    return pruned


def zero_removed(model: SegmentationNet, kept: dict[str, list[int]]) -> SegmentationNet:
    """A copy of ``model`` whose channels not in ``kept`` (per set, as in
    ``PruneReport.kept``) are zeroed at their source: the filter, its bias and the batch-norm
    scale and shift after it. In eval mode its output equals the pruned model's -- the
    equivalence that proves the surgery."""
    masked = copy.deepcopy(model)
    with torch.no_grad():
        for layer in masked.channel_layers():
            if layer.out is None or layer.out not in kept:
                continue
            conv = masked.get_submodule(layer.path)
            removed = torch.ones(conv.out_channels, dtype=torch.bool)
            removed[torch.as_tensor(kept[layer.out], dtype=torch.long)] = False
            if isinstance(conv, nn.ConvTranspose2d):
                conv.weight[:, removed] = 0
            else:
                conv.weight[removed] = 0
            if conv.bias is not None:
                conv.bias[removed] = 0
            if layer.norm is not None:
                bn = masked.get_submodule(layer.norm)
                bn.weight[removed] = 0
                bn.bias[removed] = 0
    return masked
