"""The aggregate (long form): means, spreads, counts, tests against the reference, the row
measures; its one wide pivot; and the three renderings (CSV, Markdown, LaTeX) of the same
numbers."""

from __future__ import annotations

import math
import re
import statistics

import pandas as pd
import pytest

from lfubench.reports.aggregate import aggregate, mean_score, model_rows, wide
from lfubench.reports.pareto import frontier, write_pareto_plots
from lfubench.reports.schema import (
    AGGREGATE_COLUMNS,
    BASE_EFFICIENCY_COLUMNS,
    EFFICIENCY_COLUMNS,
    RESULT_COLUMNS,
    frame,
    row,
)
from lfubench.reports.tables import (
    latex_escape,
    results_display,
    stats_display,
    to_latex,
    to_markdown,
    write_tables,
)
from lfubench.reports.text import format_number

REF = [0.5] * 7 + [0.5]
L4 = [0.6, 0.62, 0.64, 0.66, 0.68, 0.7, 0.72, math.nan]
L1 = [0.45, 0.62, 0.3, 0.19, 0.0, 0.41, 0.37, math.nan]
LABEL = "A_x & #1"


def _tidy():
    rows, eff = [], []
    for label, model, level, values, params in (
        ("ref", "unet", 0, REF, 1000),
        (LABEL, "lfunet", 1, L1, 100),
        (LABEL, "lfunet", 4, L4, 400),
    ):
        key = dict(
            item=f"{label}|d|s0", model=model, label=label, dataset="d", seed=0, level=level, stage="final"
        )
        for c, v in enumerate(values):
            rows.append(row(RESULT_COLUMNS, **key, case=f"c{c}", region="liver", metric="dice", value=v,
                            ref_empty=False, pred_empty=v == 0))
        eff.append(
            row(
                BASE_EFFICIENCY_COLUMNS,
                **key,
                params=params,
                gmacs=params / 1e4,
                input="3x8x8",
                device="cpu",
                batch=1,
                precision="fp32",
                latency_ms=params / 100,
                p90_ms=1.0,
                peak_mb=50.0,
                status="ok",
            )
        )
    for seed, values in ((0, [0.4, 0.6]), (1, [0.5, 0.9])):  # a second dataset, two seeds
        key = dict(
            item=f"ref|e|s{seed}", model="unet", label="ref", dataset="e", seed=seed, level=0, stage="final"
        )
        rows += [
            row(RESULT_COLUMNS, **key, case=f"k{c}", region="liver", metric="dice", value=v, ref_empty=False,
                pred_empty=False)
            for c, v in enumerate(values)
        ]
    return frame(rows, RESULT_COLUMNS), frame(eff, EFFICIENCY_COLUMNS)


def value(agg, measure, region="", statistic="mean", **key):
    """The one value of ``agg`` (long form) at ``measure``, ``region``, ``statistic`` and ``key``
    (row columns)."""
    sel = agg[(agg["measure"] == measure) & (agg["region"] == region) & (agg["statistic"] == statistic)]
    for column, v in key.items():
        sel = sel[sel[column] == v]
    assert len(sel) == 1, (measure, region, statistic, key, len(sel))
    return sel["value"].iloc[0]


def test_aggregate_means_spreads_counts_and_tests():
    results, eff = _tidy()
    agg = aggregate(results, eff, reference="ref")
    assert list(agg.columns) == AGGREGATE_COLUMNS
    rows = model_rows(agg)
    d = rows[rows["dataset"] == "d"]
    assert list(d["label"]) == ["ref", LABEL, LABEL] and list(d["level"]) == [0, 1, 4]
    assert list(rows["reference"]) == [True, False, False, True]

    def dice(level, statistic="mean"):
        return value(agg, "dice", "liver", statistic, dataset="d", level=level)

    assert dice(4) == pytest.approx(statistics.mean(L4[:7]))
    assert dice(4, "sd") == pytest.approx(statistics.stdev(L4[:7]))
    assert dice(1, "nan") == 1 and dice(1, "zero") == 1  # counted, not averaged away
    assert dice(4, "n") == 7 and dice(0, "nan") == 0
    assert dice(4, "ci_lo") < dice(4) < dice(4, "ci_hi")
    # Wilcoxon against ref over the 7 paired cases: L4 all higher -> 2/2^7; L1: W+ = rank 3 of 7
    # (one positive difference, 0.12, third smallest) -> subsets with rank sum <= 3: 5 -> 2 * 5/128
    assert dice(4, "p") == pytest.approx(2 / 128)
    assert dice(1, "p") == pytest.approx(10 / 128)
    assert dice(4, "p_holm") == pytest.approx(2 * 2 / 128)  # Holm: smallest of 2 times 2
    assert dice(1, "p_holm") == pytest.approx(10 / 128)
    assert math.isnan(dice(0, "p"))
    assert value(agg, "params", statistic="value", dataset="d", level=1) == 100
    assert value(agg, "latency_ms", statistic="value", dataset="d", level=4) == 4.0
    # per case over seeds: 0.45, 0.75; per seed: 0.5, 0.7
    assert value(agg, "dice", "liver", dataset="e") == pytest.approx(0.6)
    assert value(agg, "dice", "liver", "sd", dataset="e") == pytest.approx(statistics.stdev([0.45, 0.75]))
    assert value(agg, "dice", "liver", "sd_seed", dataset="e") == pytest.approx(statistics.stdev([0.5, 0.7]))
    assert value(agg, "seeds", statistic="value", dataset="e") == 2
    assert agg[(agg["dataset"] == "d") & (agg["statistic"] == "sd_seed")].empty  # one seed: undefined


def test_wide_pivot_names_every_statistic_once():
    results, eff = _tidy()
    table = wide(aggregate(results, eff, reference="ref"))
    assert list(table.columns[:13]) == ["family", "dataset", "label", "model", "level", "stage", "seeds",
                                        "params", "gmacs", "latency_ms", "peak_mb", "reference", "dice liver"]
    stats = ("sd", "sd_seed", "ci_lo", "ci_hi", "n", "nan", "zero", "empty", "missed", "p", "p_holm")
    assert list(table.columns[13:]) == [f"dice liver {s}" for s in stats]
    d = table[table["dataset"] == "d"].set_index("level")
    assert d.loc[4, "dice liver"] == pytest.approx(statistics.mean(L4[:7])) and d.loc[1, "params"] == 100
    assert str(d["dice liver n"].dtype) == "Int64" and str(d["params"].dtype) == "Int64"
    assert d["dice liver sd_seed"].isna().all() and table["dice liver sd_seed"].notna().sum() == 1


def test_display_marks_significance_bold_and_families():
    results, eff = _tidy()
    table = aggregate(results, eff, reference="ref")
    shown = results_display(table, {"d": "caption d"})[0]
    assert shown.columns[:3] == ["Family", "Model", "Level"] and "Dice liver" in shown.columns
    rows = {(r[1], r[2]): r for r in shown.rows}
    dice = shown.columns.index("Dice liver")
    assert (
        rows[(LABEL, "L4")][dice] == f"{format_number(statistics.mean(L4[:7]))} ± "
        f"{format_number(statistics.stdev(L4[:7]))}*"
    )
    assert not rows[(LABEL, "L1")][dice].endswith("*")  # p_Holm 0.078
    assert rows[("ref (ref.)", "–")][0] == "unet" and rows[(LABEL, "L1")][0] == "lfunet"
    assert rows[(LABEL, "L4")][0] == ""  # the family is named once per group
    assert shown.group_starts == [1]
    k4 = [k for k, r in enumerate(shown.rows) if r[2] == "L4"][0]
    k1 = [k for k, r in enumerate(shown.rows) if r[2] == "L1"][0]
    assert (k4, dice) in shown.bold and (k1, shown.columns.index("Params")) in shown.bold
    stats = stats_display(table, "dice")[0]
    cells = {r[2]: r for r in stats.rows}
    assert cells["L4"][-2:] == ["0.016", "0.031*"] and cells["L1"][stats.columns.index("Dice 0")] == "1"
    assert cells["L1"][stats.columns.index("NaN")] == "1"


def test_latex_is_balanced_escaped_and_carries_the_csv_numbers(tmp_path):
    results, eff = _tidy()
    table = aggregate(results, eff, reference="ref")
    paths = write_tables(table, tmp_path, {"d": "Dice_x 100% & more"})
    assert [p.name for p in paths[:3]] == ["table.csv", "table.md", "table.tex"]
    csv = pd.read_csv(paths[0])
    tex = paths[2].read_text()
    assert tex.count(r"\begin{table}") == tex.count(r"\end{table}") == 2
    assert tex.count(r"\begin{tabular}") == tex.count(r"\end{tabular}") == 2
    assert tex.count(r"\toprule") == tex.count(r"\bottomrule") == 2
    bare = tex.replace(r"\{", "").replace(r"\}", "")
    assert bare.count("{") == bare.count("}")  # braces balanced, escaped ones aside
    assert r"\caption{Dice\_x 100\% \& more}" in tex
    assert r"A\_x \& \#1" in tex and "A_x" not in tex
    for block in tex.split(r"\begin{tabular}")[1:]:
        spec = re.match(r"\{([lr]+)\}", block).group(1)
        body = block.split(r"\toprule", 1)[1].split(r"\bottomrule")[0]
        lines = [ln for ln in body.splitlines() if ln.endswith(r"\\")]
        assert lines and all(len(re.split(r"(?<!\\)&", ln)) == len(spec) for ln in lines)
    # the same numbers as the CSV, in the one number format
    rows = [ln for ln in tex.splitlines() if ln.endswith(r"\\") and ("&" in ln) and "Family" not in ln]
    for k, (_, r) in enumerate(csv.iterrows()):
        assert format_number(float(r["dice liver"])) in rows[k]
        assert latex_escape(format_number(float(r["dice liver sd"]))) in rows[k] or math.isnan(
            r["dice liver sd"]
        )
    md = paths[1].read_text()
    assert "Dice_x 100% & more" in md and f"**{format_number(statistics.mean(L4[:7]))}" in md
    assert (tmp_path / "stats_dice.tex").read_text().count(r"\toprule") == 2


def test_latex_escape_every_special_character():
    assert (
        latex_escape(r"a_b & c% $d# {e} ~f ^g \h ±")
        == r"a\_b \& c\% \$d\# \{e\} \textasciitilde{}f \textasciicircum{}g \textbackslash{}h $\pm$"
    )


def test_markdown_shows_captions_and_every_row():
    results, eff = _tidy()
    md = to_markdown(results_display(aggregate(results, eff), {"d": "the caption"}))
    assert md.splitlines()[:3] == ["**d**", "", "the caption"]
    assert md.count("| lfunet") == 1 and md.count("A_x & #1") == 2
    assert (
        to_latex(results_display(aggregate(results, eff))).count(r"\midrule") == 3
    )  # header + family; e: header


def test_frontier_keeps_only_non_dominated_points(tmp_path):
    pts = pd.DataFrame(
        {
            "label": ["a", "b", "c", "d", "e"],
            "model": ["m"] * 5,
            "dataset": ["d"] * 5,
            "params": [10, 20, 30, 40, 25],
            "dice": [0.5, 0.4, 0.7, 0.69, 0.7],
        }
    )
    assert frontier(pts, "params", "dice")["label"].tolist() == ["a", "e"]
    paths = write_pareto_plots(pts, tmp_path)
    assert [p.name for p in paths] == ["pareto_d_params.pdf"]
    assert paths[0].read_bytes()[:5] == b"%PDF-" and paths[0].with_suffix(".png").stat().st_size > 10_000


def _regions(label, model, values: dict, dataset="d", flags=True):
    key = dict(item=f"{label}|{dataset}|s0", model=model, label=label, dataset=dataset, seed=0, level=0,
               stage="final")
    return [row(RESULT_COLUMNS, **key, case=f"c{c}", region=region, metric="dice", value=v, ref_empty=False,
                pred_empty=False) for region, vals in values.items() for c, v in enumerate(vals)]


def test_mean_score_averages_regions():
    rows = _regions("a", "unet", {"liver": [0.6, 0.6], "tumor": [0.2, 0.2]}) + _regions(
        "b", "unet", {"liver": [0.8, 0.8], "tumor": [0.4, 0.4]})
    assert mean_score(aggregate(frame(rows, RESULT_COLUMNS))).tolist() == pytest.approx([0.4, 0.6])


def test_empty_references_and_missed_regions_are_counted():
    key = dict(item="m|d|s0", model="unet", label="m", dataset="d", seed=0, level=0, stage="final")
    flags = [(0.8, False, False), (1.0, True, True), (0.0, False, True), (0.0, True, False),
             (0.6, False, False)]
    rows = [row(RESULT_COLUMNS, **key, case=f"c{c}", region="tumor", metric="dice", value=v, ref_empty=re_,
                pred_empty=pe) for c, (v, re_, pe) in enumerate(flags)]
    agg = aggregate(frame(rows, RESULT_COLUMNS))
    assert value(agg, "dice", "tumor", "empty") == 2  # c1 (both empty) and c3 (predicted where there is none)
    assert value(agg, "dice", "tumor", "missed") == 1  # c2 only
    assert value(agg, "dice", "tumor", "zero") == 2
    display = stats_display(aggregate(frame(rows, RESULT_COLUMNS)), "dice")[0]
    cells = dict(zip(display.columns, display.rows[0], strict=True))
    assert cells["Empty ref."] == "2" and cells["Missed"] == "1"


def test_a_region_without_values_makes_the_mean_undefined_never_best():
    """A model whose tumor Dice is NaN in every case has no mean over regions: it is not the
    best, not on the front, and the summary says it has no values (not "no differing pair")."""
    from lfubench.reports.summary import summarize

    rows = (_regions("ref", "unet", {"liver": [0.5] * 4, "tumor": [0.2, 0.3, 0.1, 0.2]})
            + _regions("x", "lfunet", {"liver": [0.9] * 4, "tumor": [math.nan] * 4}))
    agg = aggregate(frame(rows, RESULT_COLUMNS), reference="ref")
    score = mean_score(agg)
    assert score[0] == pytest.approx(0.35) and math.isnan(score[1])
    text = " ".join(summarize(agg))
    assert "The highest mean Dice over liver, tumor is 0.3500 (ref)" in text
    assert "No Dice values (every case undefined or missing) for x (tumor)" in text
    assert "On the Pareto front" not in text  # no costs here; the front itself:
    assert frontier(model_rows(agg).assign(s=score, c=[1, 2]), "c", "s")["label"].tolist() == ["ref"]
    # liver (0.9 against 0.5 in all 4 cases) is tested; tumor has no values, which is not "no differing pair"
    assert "0 of 1 comparisons differ significantly" in text
    assert "1 comparison had no values (untested)" in text and "no differing pair" not in text


def test_efficiency_of_each_dataset_is_its_own_configuration():
    """Two datasets measured on different devices (a merged report): each keeps its figures, from
    the configuration its caption names."""
    from lfubench.reports.aggregate import series
    from lfubench.reports.captions import table_caption

    rows = [r for d in ("d1", "d2") for r in _regions("a", "unet", {"liver": [0.5] * 3}, d)]
    eff = []
    for dataset, device, params in (("d1", "cpu", 7), ("d2", "cuda", 8)):
        key = dict(item=f"a|{dataset}|s0", model="unet", label="a", dataset=dataset, seed=0, level=0,
                   stage="final")
        eff.append(row(BASE_EFFICIENCY_COLUMNS, **key, params=params, gmacs=1.0, input="x", device=device,
                       batch=1, precision="fp32", latency_ms=2.0, p90_ms=2.0, peak_mb=1.0, status="ok"))
    efficiency = frame(eff, EFFICIENCY_COLUMNS)
    agg = aggregate(frame(rows, RESULT_COLUMNS), efficiency)
    assert list(series(agg, "params")) == [7, 8]
    assert list(series(agg, "latency_ms")) == [2.0, 2.0]
    items = pd.DataFrame(columns=["dataset"])
    assert "on cuda, batch 1, fp32" in table_caption(agg, "d2", items, efficiency)


def test_results_without_empty_flags_are_aggregated():
    """Results stored without ref_empty/pred_empty: no empty/missed counts, no error."""
    rows = frame(_regions("a", "unet", {"liver": [0.5, 0.7]}), RESULT_COLUMNS)
    agg = aggregate(rows.drop(columns=["ref_empty", "pred_empty"]))
    assert value(agg, "dice", "liver") == pytest.approx(0.6)
    assert not agg["statistic"].isin(["empty", "missed"]).any()
    assert "dice liver empty" not in wide(agg)


def test_a_bar_in_a_label_keeps_the_markdown_table_whole():
    rows = frame(_regions("a|b", "unet", {"liver": [0.5, 0.7]}), RESULT_COLUMNS)
    md = to_markdown(results_display(aggregate(rows)))
    table = [ln for ln in md.splitlines() if ln.startswith("|")]
    cells = [len(re.split(r"(?<!\\)\|", ln)) for ln in table]
    assert len(set(cells)) == 1 and r"a\|b (ref.)" in md


def test_family_groups_registered_names_and_keeps_a_user_reference_whole():
    from lfubench.reports.aggregate import family
    assert family("unet_zhou2018") == "unet"
    assert family("lfunet") == "lfunet"
    assert family("my_net:build") == "my_net:build"
