"""The statistics of the report tables: bootstrap confidence intervals over cases, paired
Wilcoxon signed-rank tests against a reference model, and Holm's step-down correction.

The test statistics are scipy's (``scipy.stats.bootstrap``, ``scipy.stats.wilcoxon``); Holm's
correction is the few lines of its definition (scipy offers Benjamini-Hochberg only). Values
that are NaN (undefined under the ``nan`` empty-mask rule) are left out, never imputed; the
tables count them separately.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

#: the significance level of every mark in the tables (after Holm's correction)
ALPHA = 0.05

#: the confidence of the bootstrap intervals
CONFIDENCE = 0.95

#: bootstrap resamples per interval
RESAMPLES = 2000


def bootstrap_ci(
    values: Sequence[float], *, confidence: float = CONFIDENCE, n_resamples: int = RESAMPLES, seed: int = 0
) -> tuple[float, float]:
    """The percentile bootstrap interval of the mean of ``values`` (cases resampled with
    replacement, ``seed`` fixing the draws). NaNs are left out; fewer than two values give
    ``(nan, nan)``; identical values give the value twice."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if len(x) < 2:
        return float("nan"), float("nan")
    if np.all(x == x[0]):
        return float(x[0]), float(x[0])
    res = stats.bootstrap(
        (x,),
        np.mean,
        confidence_level=confidence,
        n_resamples=n_resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def wilcoxon_p(x: Sequence[float], y: Sequence[float]) -> float:
    """The two-sided p-value of the Wilcoxon signed-rank test of the paired ``x`` and ``y``
    (scipy's default: exact distribution for small samples without ties, zero differences
    dropped). Pairs with a NaN are left out; NaN when no pair differs."""
    from scipy import stats

    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = ~(np.isnan(a) | np.isnan(b))
    d = a[keep] - b[keep]
    if not np.any(d != 0):
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns that small samples have little power
        return float(stats.wilcoxon(a[keep], b[keep]).pvalue)


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the input order. NaN p-values (no test) stay NaN
    and do not count in the family size.

    The k-th smallest of m p-values becomes ``max_{j <= k} min(1, (m - j + 1) p_(j))``.
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    if len(valid) == 0:
        return out
    order = valid[np.argsort(p[valid], kind="stable")]
    m = len(order)
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out
