"""Bootstrap confidence intervals, one implementation for every suite.

scipy's `stats.bootstrap` with the percentile method: BCa (scipy's default) fails or warns on the degenerate
samples bias probes produce all the time (every pair preferring the same sentence, a group of one), and the
percentile interval is what lm-evaluation-harness and most bias papers report. Resampling is seeded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats as scipy_stats

DEFAULT_RESAMPLES = 1000
DEFAULT_CONFIDENCE = 0.95


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    statistic: Callable[[np.ndarray], float] = np.mean,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> tuple[float | None, float | None]:
    """(low, high) percentile-bootstrap interval of `statistic` over `values`; (None, None) below 2 values.
    A sample with one distinct value has the degenerate interval (v, v)."""
    data = np.asarray(values, dtype=float)
    if data.size < 2:
        return None, None
    if np.all(data == data[0]):
        v = float(statistic(data))
        return v, v
    res = scipy_stats.bootstrap(
        (data,),
        lambda x, axis=-1: np.apply_along_axis(statistic, axis, x),
        n_resamples=resamples,
        confidence_level=confidence,
        method="percentile",
        random_state=np.random.default_rng(seed),
        vectorized=True,
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def bootstrap_paired_ci(
    columns: Sequence[Sequence[float] | np.ndarray],
    statistic: Callable[..., float],
    *,
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> tuple[float | None, float | None]:
    """Interval of a statistic over several aligned columns (items resampled together, e.g. the accuracy gap
    between pro- and anti-stereotypical halves of the same item list)."""
    data = [np.asarray(c, dtype=float) for c in columns]
    if not data or data[0].size < 2:
        return None, None
    n = data[0].size
    rng = np.random.default_rng(seed)
    draws = np.empty(resamples)
    for i in range(resamples):
        idx = rng.integers(0, n, n)
        draws[i] = statistic(*(c[idx] for c in data))
    alpha = (1 - confidence) / 2
    low, high = np.quantile(draws, [alpha, 1 - alpha])
    return float(low), float(high)
