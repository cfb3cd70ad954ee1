"""The captions of the report's tables and figures. The conventions they state are the ones
stored with the items (the sentences of :mod:`bench.conventions` that the run used), never
written here."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from .aggregate import model_rows, primary_config, series
from .gate import gate_sentence
from .pareto import shown_config
from .schema import CONVENTION_COLUMNS
from .stats import ALPHA, CONFIDENCE, RESAMPLES
from .tables import row_name


def conventions(items: pd.DataFrame, dataset: str | None = None,
                columns: Sequence[str] = CONVENTION_COLUMNS) -> list[str]:
    """The distinct convention sentences the items (of ``dataset``, if given) were produced
    under, one line per kind (of ``columns``); a kind that differed between items lists each
    variant."""
    sel = items if dataset is None else items[items["dataset"] == dataset]
    lines = [v for column in columns if column in sel for v in dict.fromkeys(sel[column].dropna()) if v]
    return [line[0].upper() + line[1:] + ("" if line.endswith(".") else ".") for line in lines]


def cost_notes(items: pd.DataFrame, dataset: str) -> str:
    """The conventions of the cost figures (GMACs, latency) of ``dataset``, as one text."""
    return " ".join(line for line in conventions(items, dataset) if line.startswith(("GMACs", "Latency")))


def reference_name(agg: pd.DataFrame, dataset: str) -> str:
    """The reference row of ``dataset`` as the text names it (``none`` without one)."""
    rows = model_rows(agg[agg["dataset"] == dataset])
    ref = rows[rows["reference"]]
    return row_name(ref.iloc[0]) if len(ref) else "none"


def table_caption(agg: pd.DataFrame, dataset: str, items: pd.DataFrame, efficiency: pd.DataFrame) -> str:
    """The results table's caption: what is averaged, the measured configuration (the one the
    aggregate shows for the dataset), the marks, and the dataset's conventions."""
    seeds = series(agg[agg["dataset"] == dataset], "seeds")
    n_seeds = int(seeds.max()) if seeds.notna().any() else 1
    cfg = primary_config(efficiency[efficiency["dataset"] == dataset]) if len(efficiency) else None
    text = [
        f"{dataset}: mean ± sd over test cases"
        + (f" (each case averaged over {n_seeds} seeds)" if n_seeds > 1 else "")
        + "."
    ]
    if cfg:
        text.append(f"Latency and peak memory on {cfg['device']}, batch {cfg['batch']}, {cfg['precision']}.")
    text.append(
        "Train (s): training time per item, mean over seeds. Bold: the best value of each column. "
        f"*: differs from the reference {reference_name(agg, dataset)} (ref.) by a paired Wilcoxon "
        "signed-rank test over cases, Holm-corrected over the models of each metric and region, "
        f"p < {ALPHA:g}."
    )
    return " ".join(text + conventions(items, dataset, RESULTS_CONVENTIONS))


#: the conventions the results table states (the runtimes' are the deployment table's)
RESULTS_CONVENTIONS = [c for c in CONVENTION_COLUMNS if c != "conv_deployment"]


def deployment_caption(items: pd.DataFrame, dataset: str | None = None, gated: bool = False) -> str:
    """The deployment table's caption (of ``dataset``, named first, with its items' conventions;
    default: every item's): what each figure is, the int8 gate where int8 was scored (``gated``),
    and the runtimes' conventions."""
    return " ".join([
        *([f"{dataset}:"] if dataset is not None else []),
        "Each model in each runtime and quantization measured: median latency over the timed iterations "
        "(mean over seeds), max abs diff = the largest absolute difference of its logits from PyTorch fp32 "
        "eager's (largest over seeds), the model's own peak memory (MB) and % of the device's peak "
        "(means over seeds); rows a runtime cannot measure are left out (but for an int8 model it scored).",
        *([gate_sentence()] if gated else []),
        *conventions(items, dataset, columns=["conv_deployment"])])


def stats_caption(agg: pd.DataFrame, dataset: str, metric: str, seed: int) -> str:
    """The statistics table's caption (``seed``: the bootstrap's)."""
    return (
        f"{dataset}, {metric}: mean over test cases, its {CONFIDENCE:.0%} percentile-bootstrap interval "
        f"({RESAMPLES} resamples of the cases, seed {seed}), sd over cases and over seeds, n cases with a "
        "value; Dice 0: values of exactly 0 (region missed, predicted where the reference has none, or "
        "no overlap) and NaN: values left undefined by the empty-mask rule, both counted over cases x "
        f"seeds and never averaged away; p: paired Wilcoxon signed-rank test against "
        f"{reference_name(agg, dataset)} (ref.) over cases; p (Holm): Holm-corrected over the models of "
        f"each region; *: p (Holm) < {ALPHA:g}."
    )


#: the first sentence of each kind of figure's caption
FIGURE_CAPTIONS = {
    "pareto": "{d}: mean Dice over regions against cost; dashed: the Pareto front (ringed points: no other "
    "model is as cheap or cheaper and more accurate). ",
    "levels": "{d}: Dice per region (error bars: 95% bootstrap intervals over cases) and GMACs per pruning "
    "level, for each model evaluated at several levels. ",
    "widths": "{d}: mean Dice against base width per family (highest level of each model). ",
    "prune": "{d}: mean Dice against the fraction of channels pruned per family (0: before pruning). ",
    "cases": "{d}: Dice of each test case (points, averaged over seeds) and their box (median, quartiles, "
    "whiskers to 1.5 IQR), each model at its highest level. ",
    "overlays": "{d}: test slices with image, ground truth and each model's prediction. ",
    "peak": "{d}: left, the share of the device's peak fp32 GMAC/s each model reaches in each runtime and "
    "quantization (achieved GMAC/s = GMACs per image x batch / median latency, mean over seeds), beside its "
    "GMACs per image and, where recorded, its arithmetic intensity (MACs per byte moved); right, median "
    "latency against GMACs per image (log-log), the dotted line of each runtime where latency would fall in "
    "proportion to MACs (through its largest model): a model above its line reaches a smaller share of the "
    "peak, so N times fewer MACs buys less than N times the speed. ",
}


def peak_caption(items: pd.DataFrame, efficiency: pd.DataFrame, dataset: str) -> str:
    """The caption of the share-of-peak figure of ``dataset``: what it shows, the configuration
    it shows (:func:`reports.pareto.shown_config`) and the dataset's latency conventions
    (device, batch, precision, threads, input size); % of peak and the intensity as the deployment
    table's caption (the items' ``conv_deployment``) states them."""
    cfg = shown_config(efficiency[efficiency["dataset"] == dataset]) if len(efficiency) else None
    shown = f"Shown: {cfg['device']}, batch {cfg['batch']}, {cfg['precision']}. " if cfg else ""
    notes = conventions(items, dataset, ["conv_latency"])
    return figure_caption("peak", dataset, shown + " ".join(
        [*notes, "% of peak as the deployment table's caption defines it."]))


def figure_caption(kind: str, dataset: str, extra: str = "") -> str:
    """The caption of a figure of ``kind`` (:data:`FIGURE_CAPTIONS`) for ``dataset``."""
    return FIGURE_CAPTIONS[kind].format(d=dataset) + extra
