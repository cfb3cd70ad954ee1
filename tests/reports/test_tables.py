"""Aggregated tables and Pareto frontiers."""

from __future__ import annotations

import math

import pandas as pd

from reports.pareto import frontier, write_pareto_plots
from reports.tables import aggregate, cells, mean_score, to_latex, to_markdown, write_tables
from reports.text import format_number


def _tidy():
    rows = []
    values = {("a", 1): [0.8, 0.6], ("a", 4): [0.9, 0.7], ("b", 4): [0.5, math.nan]}
    for (label, level), (v1, v2) in values.items():
        for case, v in (("c1", v1), ("c2", v2)):
            rows.append(dict(item=f"{label}|d|s0", model=label, label=label, dataset="d", seed=0, level=level,
                             case=case, region="liver", metric="dice", value=v))
    return pd.DataFrame(rows)


def test_aggregate_means_sds_and_nan_counts():
    table = aggregate(_tidy())
    assert list(table["label"]) == ["a", "a", "b"]
    assert table["dice liver"].tolist()[:2] == [0.7, 0.8]
    assert table["dice liver sd"].iloc[0] == pd.Series([0.8, 0.6]).std()
    assert table["dice liver nan"].tolist() == [0, 0, 1]  # the NaN case is counted, not dropped
    assert table["dice liver"].iloc[2] == 0.5


def test_markdown_and_latex_render_every_row(tmp_path):
    table = aggregate(_tidy())
    md = to_markdown(table, {"d": "Dice (mean ± sd over cases)"})
    assert md.splitlines()[:3] == ["**d**", "", "Dice (mean ± sd over cases)"]
    assert "| a     |     4 | d       | 0.8000 ± 0.1414 |              0 |" in md  # one number format
    tex = to_latex(table, "Dice")
    assert r"\textbf{0.8000 $\pm$ 0.1414}" in tex  # best Dice of the dataset in bold
    assert tex.count(r"\\") == 4  # header + three rows
    paths = write_tables(table, tmp_path, "Dice")
    assert [p.name for p in paths] == ["table.csv", "table.md", "table.tex"]
    assert pd.read_csv(paths[0]).shape == table.shape


def test_one_number_format_for_every_table():
    assert [format_number(v) for v in (0.08389, 1.0, 210.44, 12345.6, 47867, 0.0, None, float("nan"))] == [
        "0.08389", "1.000", "210.4", "12,346", "47,867", "0", "–", "–"]
    cell = cells(pd.DataFrame({"label": ["x_1 & y"], "level": [0], "dataset": ["d"], "dice liver": [0.5],
                               "dice liver sd": [0.25]}))
    assert cell == [{"label": "x_1 & y", "level": "0", "dataset": "d", "dice liver": "0.5000 ± 0.2500"}]
    tex = to_latex(pd.DataFrame({"label": ["x_1 & y"], "level": [0], "dataset": ["d"], "dice liver": [0.5]}))
    assert r"x\_1 \& y" in tex and "x_1" not in tex


def test_frontier_keeps_only_non_dominated_points(tmp_path):
    pts = pd.DataFrame({"label": ["a", "b", "c", "d", "e"], "level": [4] * 5, "dataset": ["d"] * 5,
                        "params": [10, 20, 30, 40, 25], "dice": [0.5, 0.4, 0.7, 0.69, 0.7]})
    assert frontier(pts, "params", "dice")["label"].tolist() == ["a", "e"]
    paths = write_pareto_plots(pts, tmp_path)
    assert [p.name for p in paths] == ["pareto_d_params.png"]
    assert paths[0].stat().st_size > 10_000


def test_mean_score_averages_regions_and_cases():
    assert mean_score(_tidy())["dice"].tolist()[:2] == [0.7, 0.8]
