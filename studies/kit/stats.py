"""Headline numbers from per-replicate values, honest by construction.

Every number a table, a figure or the README shows is computed here from per-replicate
values, never by ad-hoc code in a study:

- :func:`over_replicates`: mean over independent replicates (seeds) with a Student-t
  interval. This is the default for anything trained: the interval covers the
  between-seed variation, which a pooled interval over the draws of several trained
  models does not.
- :func:`paired_difference`: "A minus B" on the same replicates (same seeds, same noise),
  with the t-interval of the per-replicate differences.
- :func:`pooled_proportion`: a Clopper-Pearson interval for a proportion of i.i.d. draws
  from ONE fixed sampler (an exact score, a closed-form law). Not for trained models.
- :func:`late_mean`: the mean over the last quarter of evaluations, beside the final
  snapshot, for training that oscillates.
- :func:`slope_over_replicates`: a log-log slope fitted per replicate, t-interval over
  replicates.

Non-finite replicate values (diverged training) are never dropped silently: they are
counted in ``n_diverged`` and shown ("1/3 diverged"); the mean is over the others, and
when every replicate diverged the value is NaN and the text says so.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats

from theory.validation import check_count, check_in_interval

__all__ = [
    "Interval",
    "late_mean",
    "over_replicates",
    "paired_difference",
    "pooled_proportion",
    "slope_over_replicates",
    "summarise",
    "summarise_paired",
]


@dataclasses.dataclass(frozen=True)
class Interval:
    """A headline number: value, standard error, confidence interval, replicates counted.

    Attributes:
        value: the estimate (NaN when no replicate is finite).
        error: its standard error (NaN with fewer than two finite replicates).
        low, high: the confidence interval at ``level`` (NaN when it cannot be formed).
        n: finite replicates (or trials, for a pooled proportion) it is computed from.
        n_diverged: replicates that diverged or gave a non-finite value (not in ``n``).
        level: the confidence level.
        method: how the interval was formed.
    """

    value: float
    error: float
    low: float
    high: float
    n: int
    n_diverged: int
    level: float
    method: str

    def __str__(self) -> str:
        total = self.n + self.n_diverged
        diverged = f" ({self.n_diverged}/{total} diverged)" if self.n_diverged else ""
        if not math.isfinite(self.value):
            return f"all {total} diverged" if self.n_diverged else "no data"
        if not math.isfinite(self.error):
            return f"{_fmt(self.value)} (n={self.n}, no interval){diverged}"
        return f"{_fmt(self.value)} ± {_fmt(self.error)} [{_fmt(self.low)}, {_fmt(self.high)}]{diverged}"

    def row(self) -> dict[str, Any]:
        """The tidy columns: value, error, ci_low, ci_high, n, n_diverged, interval."""
        return {"value": self.value, "error": self.error, "ci_low": self.low, "ci_high": self.high,
                "n": self.n, "n_diverged": self.n_diverged, "interval": self.method}


def _fmt(x: float) -> str:
    return f"{x:.3g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"


def _check_level(level: float) -> None:
    check_in_interval("level", level, 0.0, 1.0)


def _t_interval(values: np.ndarray, n_diverged: int, level: float, method: str) -> Interval:
    n = len(values)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, math.nan, 0, n_diverged, level, method)
    mean = float(np.mean(values))
    if n == 1:
        return Interval(mean, math.nan, math.nan, math.nan, 1, n_diverged, level, method)
    se = float(np.std(values, ddof=1) / math.sqrt(n))
    half = float(scipy.stats.t.ppf(0.5 + level / 2, n - 1)) * se
    return Interval(mean, se, mean - half, mean + half, n, n_diverged, level, method)


def over_replicates(values: Sequence[float] | np.ndarray, *, level: float = 0.95) -> Interval:
    """Mean over independent replicates with a Student-t interval.

    mean +- t_{n-1, (1+level)/2} s / sqrt(n) over the finite values; non-finite values
    (diverged replicates) are counted in ``n_diverged``, not averaged.

    Args:
        values: one value per independent replicate (seed), shape (R,).
        level: confidence level.
    """
    _check_level(level)
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    finite = np.isfinite(values)
    return _t_interval(values[finite], int((~finite).sum()), level, f"t over {len(values)} replicates")


def paired_difference(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, *, level: float = 0.95) -> Interval:
    """a - b on the same replicates, with the t-interval of the per-replicate differences.

    Args:
        a, b: one value per replicate each, aligned (same seed, same noise), shape (R,).
        level: confidence level.

    Raises:
        ValueError: if a and b differ in length.
    """
    _check_level(level)
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"a and b must pair up replicate by replicate, got {a.shape[0]} and {b.shape[0]} values")
    difference = a - b
    finite = np.isfinite(difference)
    return _t_interval(difference[finite], int((~finite).sum()), level, f"paired t over {len(a)} replicates")


def pooled_proportion(successes: int, trials: int, *, level: float = 0.95) -> Interval:
    """A proportion of i.i.d. draws from one fixed sampler, Clopper-Pearson interval.

    Only for draws that are independent given a fixed law (an exact score, a closed-form
    sampler). For trained models, compute one proportion per seed and use
    :func:`over_replicates`: pooling would hide the between-seed variation.
    """
    _check_level(level)
    check_count("successes", successes, minimum=0)
    check_count("trials", trials, minimum=0)
    if successes > trials or trials == 0:
        raise ValueError(f"need 0 <= successes <= trials and trials > 0, got {successes}/{trials}")
    alpha = 1 - level
    low = 0.0 if successes == 0 else float(scipy.stats.beta.ppf(alpha / 2, successes, trials - successes + 1))
    high = 1.0 if successes == trials else float(scipy.stats.beta.ppf(1 - alpha / 2, successes + 1, trials - successes))
    p = successes / trials
    return Interval(p, math.sqrt(p * (1 - p) / trials), low, high, int(trials), 0, level,
                    f"Clopper-Pearson, {trials} i.i.d. draws of one sampler")


def late_mean(values_in_step_order: Sequence[float] | np.ndarray, *, fraction: float = 0.25) -> float:
    """Mean of the last ``ceil(fraction * n)`` evaluations of one replicate (NaN if any is non-finite)."""
    check_in_interval("fraction", fraction, 0.0, 1.0, include_high=True)
    values = np.asarray(values_in_step_order, dtype=np.float64).reshape(-1)
    if values.size == 0:
        return math.nan
    tail = values[-max(1, math.ceil(fraction * values.size)) :]
    return float(np.mean(tail)) if np.all(np.isfinite(tail)) else math.nan


def slope_over_replicates(x: Sequence[float], y: np.ndarray, *, log: bool = True, level: float = 0.95) -> Interval:
    """The least-squares slope of y on x fitted per replicate, t-interval over replicates.

    Args:
        x: the abscissae, shape (m,), m >= 2 distinct values.
        y: one row per replicate, shape (R, m); a replicate with a non-finite or (for
            ``log``) non-positive value is counted as diverged.
        log: fit log y on log x (a power law's exponent).
        level: confidence level.
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    y = np.atleast_2d(np.asarray(y, dtype=np.float64))
    if y.shape[1] != x.size or len(np.unique(x)) < 2:
        raise ValueError(f"need y of shape (R, {x.size}) and at least two distinct x, got {y.shape}")
    if log and np.any(x <= 0):
        raise ValueError(f"x must be positive for a log-log fit, got {x}")
    slopes = []
    for row in y:
        if not np.all(np.isfinite(row)) or (log and np.any(row <= 0)):
            slopes.append(math.nan)
            continue
        u, v = (np.log(x), np.log(row)) if log else (x, row)
        slopes.append(float(np.polyfit(u, v, 1)[0]))
    interval = over_replicates(slopes, level=level)
    return dataclasses.replace(interval, method=f"{'log-log ' if log else ''}slope per replicate, {interval.method}")


def summarise(frame: pd.DataFrame, *, by: Sequence[str], value: str = "value", level: float = 0.95) -> pd.DataFrame:
    """One :func:`over_replicates` interval per group of rows (one row per replicate).

    Args:
        frame: tidy rows, one per replicate within each group (NaN for a diverged one).
        by: the grouping columns (the coordinates); the replicate column is not among them.
        value: the column holding the per-replicate value.
        level: confidence level.

    Returns:
        One row per group: the ``by`` columns and :meth:`Interval.row`'s columns, plus
        ``text``, the interval as shown in tables.
    """
    rows = []
    for keys, group in frame.groupby(list(by), sort=True, dropna=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        interval = over_replicates(group[value].to_numpy(), level=level)
        rows.append({**dict(zip(by, keys)), **interval.row(), "text": str(interval)})
    return pd.DataFrame(rows)


def summarise_paired(
    frame: pd.DataFrame, *, by: Sequence[str], contrast: str, a: Any, b: Any, replicate: str = "seed",
    value: str = "value", level: float = 0.95,
) -> pd.DataFrame:
    """One :func:`paired_difference` (``contrast == a`` minus ``contrast == b``) per group.

    Rows are paired on ``replicate`` within each group; a replicate present on one side
    only is counted as diverged (its difference is NaN).
    """
    rows = []
    for keys, group in frame.groupby(list(by), sort=True, dropna=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        left = group[group[contrast] == a].set_index(replicate)[value]
        right = group[group[contrast] == b].set_index(replicate)[value]
        replicates = sorted(set(left.index) | set(right.index))
        interval = paired_difference(left.reindex(replicates).to_numpy(), right.reindex(replicates).to_numpy(), level=level)
        rows.append({**dict(zip(by, keys)), **interval.row(), "text": str(interval)})
    return pd.DataFrame(rows)
