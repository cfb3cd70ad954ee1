"""The int8 accuracy gate, as MLPerf Inference states it for its 3D U-Net: per region, the int8
model's Dice as a fraction of the fp32 model's, passing at 99% (:data:`GATE`; 99.9% is MLPerf's
high-accuracy target, :data:`GATE_HIGH`).

In a run, both Dice figures are the mean over the test cases (each case averaged over seeds, as in
the results table) of the results' ``dice`` rows: the fp32 model's rows (PyTorch eager, ``quantize``
``none``) and the int8 model's rows of one runtime (``quantize`` ``int8``, scored through the same
evaluation), paired by item and case (a case counts where both have a value). A model passes a
threshold when every region does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

#: MLPerf Inference's accuracy target for int8: at least this fraction of the fp32 reference
GATE = 0.99
#: MLPerf Inference's high-accuracy target
GATE_HIGH = 0.999
#: the thresholds a report states, in order
GATES = (GATE, GATE_HIGH)


@dataclass(frozen=True)
class GateResult:
    """One region's gate: ``ratio`` = int8 Dice / fp32 Dice (``None`` where fp32 Dice is 0 or
    missing, or int8's is missing), ``passed`` = ``ratio >= threshold`` (``False`` without a ratio)."""

    region: str
    fp32_dice: float | None
    int8_dice: float | None
    ratio: float | None
    passed: bool


def _value(x) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def int8_gate(fp32_dice: Mapping[str, float], int8_dice: Mapping[str, float],
              threshold: float = GATE) -> list[GateResult]:
    """The int8 accuracy gate per region of ``fp32_dice`` (mean Dice per region), in its order.

    A region passes when int8 Dice is at least ``threshold`` (MLPerf: 0.99; 0.999 for its
    high-accuracy target) of fp32 Dice. A region without an fp32 value, with fp32 Dice 0 (no
    fraction of it is defined) or missing from ``int8_dice`` has no ratio and does not pass.
    """
    out = []
    for region, ref in fp32_dice.items():
        ref, got = _value(ref), _value(int8_dice.get(region))
        ratio = None if ref is None or got is None or ref == 0 else got / ref
        out.append(GateResult(region, ref, got, ratio, ratio is not None and ratio >= threshold))
    return out


def gate_name(threshold: float) -> str:
    """The column of a threshold's verdict: ``gate 99%``, ``gate 99.9%``."""
    return f"gate {threshold * 100:g}%"


def ratio_name(region: str) -> str:
    """The column of a region's int8 Dice / fp32 Dice."""
    return f"int8/fp32 dice {region}"


#: what identifies a gated model: one evaluated model row in one runtime
GATE_KEYS = ["dataset", "label", "level", "stage", "runtime", "quantize"]


def gate_frame(results: pd.DataFrame) -> pd.DataFrame:
    """Per model row (dataset, label, level, stage) and runtime whose int8 model was scored: per
    region ``fp32 dice R``, ``int8 dice R`` and :func:`ratio_name` (``R`` in the results' order),
    and per threshold of :data:`GATES` its :func:`gate_name` column, ``pass`` or ``fail``
    (``quantize`` is ``int8``). Empty without int8 rows (results recorded before they were scored
    have neither ``runtime`` nor ``quantize``: the model as trained)."""
    if "quantize" not in results or "runtime" not in results:
        return pd.DataFrame(columns=GATE_KEYS)
    res = results if "stage" in results else results.assign(stage="final")
    dice = res[res["metric"] == "dice"].astype({"runtime": object, "quantize": object}).fillna(
        {"runtime": "torch", "quantize": "none", "stage": "final"})
    fp32 = dice[(dice["runtime"] == "torch") & (dice["quantize"] == "none")]
    int8 = dice[dice["quantize"] == "int8"]
    if int8.empty:
        return pd.DataFrame(columns=GATE_KEYS)
    case = ["dataset", "label", "level", "stage", "item", "case", "region"]
    pairs = int8.merge(fp32[[*case, "value"]], on=case, suffixes=("_int8", "_fp32"), how="left")
    pairs = pairs.dropna(subset=["value_int8", "value_fp32"])
    regions = list(dict.fromkeys(int8["region"]))
    rows = []
    for key, part in int8.groupby(GATE_KEYS, sort=False, dropna=False):
        sel = pairs
        for column, value in zip(GATE_KEYS, key, strict=True):
            sel = sel[sel[column] == value]
        per_case = sel.groupby(["region", "case"], sort=False)[["value_fp32", "value_int8"]].mean()
        means = per_case.groupby(level="region", sort=False).mean()
        own = [r for r in regions if r in set(part["region"])]
        fp32_dice = {r: means["value_fp32"].get(r, math.nan) for r in own}
        int8_dice = {r: means["value_int8"].get(r, math.nan) for r in own}
        out = dict(zip(GATE_KEYS, key, strict=True))
        for g in int8_gate(fp32_dice, int8_dice):
            out |= {f"fp32 dice {g.region}": g.fp32_dice, f"int8 dice {g.region}": g.int8_dice,
                    ratio_name(g.region): g.ratio}
        for threshold in GATES:
            passed = all(g.passed for g in int8_gate(fp32_dice, int8_dice, threshold))
            out[gate_name(threshold)] = "pass" if passed and own else "fail"
        rows.append(out)
    return pd.DataFrame(rows)


def gate_sentence() -> str:
    """What the gate columns of a deployment table say."""
    return ("int8/fp32 Dice: the int8 model's mean Dice over the test cases as a fraction of the fp32 "
            "model's (PyTorch eager), per region, over the cases both scored; "
            + ", ".join(gate_name(t).capitalize() for t in GATES)
            + ": pass where every region reaches that fraction (MLPerf Inference's int8 targets; "
            "a region with fp32 Dice 0 has no fraction and fails).")
