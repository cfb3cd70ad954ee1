"""Bootstrap intervals, Wilcoxon signed-rank tests and Holm's correction on hand-computable examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lfubench.reports.stats import bootstrap_ci, holm, wilcoxon_p


def test_bootstrap_ci_of_two_values_spans_both():
    # resampled means of {0, 1}: 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4 -> the 2.5% and
    # 97.5% quantiles are the extremes
    assert bootstrap_ci([0.0, 1.0]) == (0.0, 1.0)


def test_bootstrap_ci_extremes_when_they_have_over_2_5_percent():
    # of the 27 equally likely resamples of {0, 1, 5}, one has mean 0 and one mean 5: each 1/27 = 3.7%
    # of the bootstrap distribution, more than the 2.5% cut on either side
    assert bootstrap_ci([0.0, 1.0, 5.0], n_resamples=4000) == (0.0, 5.0)


def test_bootstrap_ci_is_seeded_and_skips_nan():
    x = np.random.default_rng(3).normal(0.7, 0.1, 20)
    a = bootstrap_ci(x, seed=1)
    assert bootstrap_ci(x, seed=1) == a
    assert bootstrap_ci(x, seed=2) != a
    assert a[0] < x.mean() < a[1]
    assert bootstrap_ci(list(x) + [math.nan], seed=1) == a
    assert bootstrap_ci([0.4, 0.4, 0.4]) == (0.4, 0.4)
    assert all(math.isnan(v) for v in bootstrap_ci([0.4, math.nan]))


def test_wilcoxon_exact_p_values_by_hand():
    y = np.zeros(5)
    # all five differences positive: only the empty set of negative ranks has rank sum 0 -> p = 2/32
    assert wilcoxon_p([1, 2, 3, 4, 5], y) == pytest.approx(2 / 32)
    # differences 1, -2, 3, 4, 5: W- = 2; subsets of ranks 1..5 with sum <= 2: {}, {1}, {2} -> p = 2 * 3/32
    assert wilcoxon_p([1, -2, 3, 4, 5], y) == pytest.approx(6 / 32)
    # a NaN pair is left out: the four remaining positive differences give 2/16
    assert wilcoxon_p([1, 2, 3, 4, math.nan], np.zeros(5)) == pytest.approx(2 / 16)
    assert math.isnan(wilcoxon_p([0.5, 0.6], [0.5, 0.6]))  # nothing differs: untested


def test_holm_step_down_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> running max
    # 0.02, 0.03, 0.06, 0.06, back in input order
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    out = holm([0.2, math.nan, 0.01])  # NaN: no test, not in the family (m = 2)
    assert out[0] == pytest.approx(0.2) and math.isnan(out[1]) and out[2] == pytest.approx(0.02)
    assert holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])  # capped at 1
