"""The conventions behind every figure lfubench prints, written once.

Tables, figures and reports state how their numbers were obtained. The sentences live here
and nowhere else; those that depend on a run's settings (the empty-mask rule, the latency
settings) are functions of those settings, and the item pipeline stores the sentences it
used with every record, so a report states the rules its run used and no other.
"""

from __future__ import annotations

from .metrics import BRATS_MAX_DISTANCE_MM, EMPTY_CONVENTIONS

#: how MACs are counted (fvcore, the primary counter of every table)
MACS = "GMACs from fvcore, 1 multiply-add = 1 MAC (GFLOPs = 2 x GMACs), per image"

#: how the four counters of ``lfubench profile --macs`` relate
MAC_COUNTERS = (
    "fvcore's and ptflops' figures are MACs; torch.utils.flop_counter reports FLOPs "
    "(2 per multiply-add), shown /2 as MACs"
)

#: what Dice and HD95 are computed on
SCORES = (
    "Dice and HD95 in 3D per test case, on the case's original voxel grid and spacing (mm); HD95 as "
    "medpy defines it (95th percentile of both directions' surface distances pooled, surfaces by "
    "erosion with connectivity 1)"
)

#: what the parameter count counts
PARAMS = "parameters of the model as evaluated (at its pruning level)"


#: the sentence for each empty-mask rule of :mod:`bench.metrics`
EMPTY_RULES = {
    "brats": ("empty masks: both empty -> Dice 1, HD95 0; one empty -> Dice 0, HD95 "
              f"{BRATS_MAX_DISTANCE_MM:.2f} mm (the BraTS challenge's rule)"),
    "diagonal": ("empty masks: both empty -> Dice 1, HD95 0; one empty -> Dice 0, HD95 = the diagonal "
                 "of the case's own volume in mm"),
    "nan": ("empty masks: Dice and HD95 NaN where undefined, counted in the 'nan' columns, left out "
            "of means"),
}


def empty_rule(rule: str) -> str:
    """The sentence for an empty-mask rule of :mod:`bench.metrics` (``brats``, ``diagonal``, ``nan``)."""
    if rule not in EMPTY_RULES:
        raise ValueError(f"unknown empty-mask rule {rule!r}; choose one of {', '.join(EMPTY_CONVENTIONS)}")
    return EMPTY_RULES[rule]


def latency(device: str, batch: int, precision: str, input_shape: str, threads: int | None,
            channels_last: bool) -> str:
    """The sentence for a latency/memory figure measured with these settings."""
    where = device
    if device == "cpu" and threads:
        where += f", {threads} thread{'s' if threads != 1 else ''}"
    memory = "max allocated" if device.startswith("cuda") else "process peak RSS"
    layout = "channels_last" if channels_last else "NCHW"
    return (f"latency: median ms per batch of {batch} at input {input_shape}, {precision}, {layout}, "
            f"on {where}; peak memory in MiB ({memory})")
