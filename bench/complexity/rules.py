"""Each counter's counting rule, written out per op category and applied to a trace.

The four counters are run as libraries (:mod:`bench.complexity.counters`); the rules here
restate what each one counts so a report can attribute every MAC to an op category, list the
ops a counter ignores, and check that the rules explain the library's total exactly (the
reconciliation's "unexplained" row is then 0). All figures are MACs (1 multiply-add = 1 MAC);
``flop_counter`` reports FLOPs = 2 x MACs and its rule is stated here in MACs.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from .trace import CONV, POOL, Event

COUNTERS = ("fvcore", "ptflops-pytorch", "ptflops-aten", "flop_counter")

#: what each counter counts, per category (the reports print this table)
RULES: dict[str, dict[str, str]] = {
    "fvcore": {
        "conv": "N*prod(weight.shape)*Hout*Wout (transposed: *Hin*Win); aten::_convolution",
        "conv bias": "not counted",
        "batch norm": "eval: numel*(2 with affine, 1 without)",
        "upsampling": "bilinear 4*output numel, nearest 1*output numel",
        "pooling": "max pool: no fvcore handle, lfubench registers it as ignored (0); "
        "adaptive avg: input numel",
        "activation": "ReLU is on fvcore's ignore list (0)",
        "addition": "no fvcore handle; lfubench registers aten::add as ignored (0)",
        "mul/div": "no fvcore handle; lfubench registers aten::mul/aten::div as ignored (0)",
        "concatenation": "on fvcore's ignore list (0)",
        "dropout": "on fvcore's ignore list (0)",
        "result unused": "removed from the traced graph with the ops whose result is discarded (0)",
    },
    "ptflops-pytorch": {
        "conv": "nn.Conv*/ConvTranspose* module hook: k*k*Cin*(Cout/g)*N*Hout*Wout (transposed: *Hin*Win); "
        "functional F.conv2d not counted",
        "conv bias": "module hook: N*Cout*Hout*Wout when the module has a bias",
        "batch norm": "nn.BatchNorm* module hook: numel*(2 with affine, 1 without); F.batch_norm not counted",
        "upsampling": "patched F.interpolate: N*C*prod(size), or input numel*scale^d (= output numel); "
        "an nn.Upsample module adds its hook's output numel on top",
        "pooling": "patched F.max_pool2d etc.: input numel; "
        "an nn.MaxPool2d module adds its hook's input numel",
        "activation": "patched F.relu: input numel; an nn.ReLU module adds its hook's output numel on top "
        "(so a ReLU module counts 2*numel)",
        "addition": "patched torch.add/Tensor.add: broadcast numel; the + operator is not patched (0). "
        "Tensor.add events are taken as +",
        "mul/div": "patched torch.mul/Tensor.mul like add (Tensor.mul events taken as *); "
        "division not patched (0)",
        "concatenation": "not counted (0)",
        "dropout": "not counted (0)",
        "result unused": "counted: every executed op counts",
    },
    "ptflops-aten": {
        "conv": "aten.convolution: N*prod(weight.shape)*Hout*Wout (transposed: *Hin*Win)",
        "conv bias": "N*Cout*Hout*Wout when a bias is given",
        "batch norm": "zero-op (only aten mm, matmul, addmm, bmm, convolution are counted)",
        "upsampling": "zero-op",
        "pooling": "zero-op",
        "activation": "zero-op",
        "addition": "zero-op",
        "mul/div": "zero-op",
        "concatenation": "zero-op",
        "dropout": "zero-op",
        "result unused": "counted: every executed op counts",
    },
    "flop_counter": {
        "conv": "aten.convolution: 2*N*prod(weight.shape)*Hout*Wout FLOPs (transposed: *Hin*Win), "
        "here /2 = MACs",
        "conv bias": "not counted",
        "batch norm": "not in torch's FLOP registry (0)",
        "upsampling": "not in the FLOP registry (0)",
        "pooling": "not in the FLOP registry (0)",
        "activation": "not in the FLOP registry (0)",
        "addition": "not in the FLOP registry (0)",
        "mul/div": "not in the FLOP registry (0)",
        "concatenation": "not in the FLOP registry (0)",
        "dropout": "not in the FLOP registry (0)",
        "result unused": "counted: every executed op counts",
    },
}


def numel(shape: tuple[int, ...] | None) -> int:
    return math.prod(shape) if shape else 0


def conv_macs(ev: Event) -> tuple[int, int]:
    """(weight MACs, bias additions) of a conv call: ``N * prod(weight.shape) * spatial``,
    where spatial is the output size (input size for a transposed conv)."""
    x, w = ev.inputs[0], ev.inputs[1]
    spatial = x[2:] if ev.attrs.get("transposed") else ev.output[2:]
    weights = x[0] * numel(w) * math.prod(spatial)
    return weights, (numel(ev.output) if ev.attrs.get("bias") else 0)


def _broadcast_numel(a, b) -> int:
    if a is None:
        return numel(b)
    if b is None:
        return numel(a)
    n = max(len(a), len(b))
    a, b = (1,) * (n - len(a)) + tuple(a), (1,) * (n - len(b)) + tuple(b)
    return math.prod(max(x, y) for x, y in zip(a, b, strict=True))


# --- fvcore -----------------------------------------------------------------------------------


def fvcore_rule(ev: Event) -> dict[str, int]:
    if ev.kind != "call" or not ev.live:
        return {}
    cat = ev.category
    if cat == "conv":
        return {"conv": conv_macs(ev)[0]}
    if cat == "batch norm" and ev.name == "batch_norm" and not ev.attrs.get("training"):
        return {cat: numel(ev.inputs[0]) * (2 if ev.attrs.get("affine") else 1)}
    if cat == "upsampling":
        scale = {"bilinear": 4, "nearest": 1}.get(ev.attrs.get("mode"), 0)
        return {cat: scale * numel(ev.output)}
    if cat == "pooling" and ev.name == "adaptive_avg_pool2d":
        return {cat: numel(ev.inputs[0])}
    return {}


# --- ptflops, pytorch backend -----------------------------------------------------------------

_PTF_ACT_MODULES = {"ReLU", "PReLU", "ELU", "LeakyReLU", "ReLU6", "GELU"}
_PTF_POOL_MODULES = {f"{k}Pool{d}d" for k in ("Max", "Avg", "AdaptiveMax", "AdaptiveAvg") for d in (1, 2, 3)}
_PTF_NORM_MODULES = {f"{k}{d}d" for k in ("BatchNorm", "InstanceNorm") for d in (1, 2, 3)} | {
    "GroupNorm",
    "LayerNorm",
}
_PTF_CONV_MODULES = {f"Conv{d}d" for d in (1, 2, 3)} | {f"ConvTranspose{d}d" for d in (1, 2, 3)}
_PTF_FUNCTIONAL = {"relu", "prelu", "elu", "relu6", "gelu", "silu", "softmax", "interpolate", "upsample"} | (
    POOL - {"max_pool2d_with_indices"}
)


def _ptflops_interpolate(ev: Event) -> int:
    x = ev.inputs[0]
    size, scale = ev.attrs.get("size"), ev.attrs.get("scale_factor")
    if size is not None:
        spatial = math.prod(size) if isinstance(size, list | tuple) else int(size) ** (len(x) - 2)
        return int(spatial * x[0] * x[1])
    if isinstance(scale, list | tuple) and len(scale) == len(x) - 2:
        return int(numel(x) * math.prod(int(s) for s in scale))
    return int(numel(x) * scale ** (len(x) - 2))


def ptflops_pytorch_rule(ev: Event) -> dict[str, int]:
    if ev.kind == "module":
        t, a = ev.name, ev.attrs
        if t in _PTF_CONV_MODULES:
            spatial = (ev.inputs[0] if t.startswith("ConvTranspose") else ev.output)[2:]
            n = ev.inputs[0][0]
            weights = math.prod(a["kernel_size"]) * a["in_channels"] * (a["out_channels"] // a["groups"])
            return {
                "conv": weights * n * math.prod(spatial),
                "conv bias": numel(ev.output) if a.get("bias") else 0,
            }
        if t in _PTF_NORM_MODULES:
            return {"batch norm": numel(ev.inputs[0]) * (2 if a.get("affine") else 1)}
        if t in _PTF_ACT_MODULES:
            return {"activation": numel(ev.output)}
        if t in _PTF_POOL_MODULES:
            return {"pooling": numel(ev.inputs[0])}
        if t == "Upsample":
            return {"upsampling": numel(ev.output)}
        if t == "Linear":
            n = numel(ev.inputs[0]) // a["in_features"]
            return {
                "other": n * (a["in_features"] * a["out_features"] + (a["out_features"] if a["bias"] else 0))
            }
        return {}
    cat = ev.category
    if ev.qualname.startswith("torch.nn.functional.") and ev.name in _PTF_FUNCTIONAL:
        if cat == "upsampling":
            return {cat: _ptflops_interpolate(ev)}
        return {cat: numel(ev.inputs[0])}
    if ev.qualname in ("torch.add", "torch.mul"):
        return {cat: _broadcast_numel(ev.inputs[0], ev.inputs[1])}
    return {}


# --- ptflops, aten backend, and torch.utils.flop_counter --------------------------------------


def ptflops_aten_rule(ev: Event) -> dict[str, int]:
    if ev.kind == "call" and ev.name in CONV:
        weights, bias = conv_macs(ev)
        return {"conv": weights, "conv bias": bias}
    return {}


def flop_counter_rule(ev: Event) -> dict[str, int]:
    if ev.kind == "call" and ev.name in CONV:
        return {"conv": conv_macs(ev)[0]}
    return {}


RULE_FUNCTIONS: dict[str, Callable[[Event], dict[str, int]]] = {
    "fvcore": fvcore_rule,
    "ptflops-pytorch": ptflops_pytorch_rule,
    "ptflops-aten": ptflops_aten_rule,
    "flop_counter": flop_counter_rule,
}
