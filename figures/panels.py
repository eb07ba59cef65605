"""Pieces of panels that several figures draw the same way: intervals over seeds at each
value of a coordinate, a line over its band, the diagonal y = x."""

from __future__ import annotations

import numpy as np
import pandas as pd

from studies import kit

__all__ = ["identity_line", "line_with_band", "over_seeds"]

_COLUMNS = ["value", "error", "low", "high", "n", "n_diverged"]


def over_seeds(rows: pd.DataFrame, by: str, *, level: float = 0.95) -> pd.DataFrame:
    """The interval over seeds of ``rows["value"]`` at each value of ``rows[by]``.

    value_b = mean of the finite values among the rows with by == b (one per seed), with
    its standard error and Student-t interval: kit.over_replicates (diverged seeds are
    counted in n_diverged, never averaged).

    Args:
        rows: tidy rows with a ``value`` column and a `by` column, one row per seed at each b.
        by: the coordinate to group on (``"step"``, ``"k"``, ...).
        level: confidence level of ``low`` and ``high``.

    Returns:
        One row per value of `by`, ascending; columns `by`, value, error (NaN with fewer
        than two finite seeds), low, high, n (finite seeds), n_diverged.
    """
    out = []
    for key, group in rows.groupby(by):
        interval = kit.over_replicates(group["value"].to_numpy(), level=level)
        out.append({by: key, **{name: getattr(interval, name) for name in _COLUMNS}})
    return pd.DataFrame(out, columns=[by, *_COLUMNS]).sort_values(by)


def line_with_band(ax, x, centre, low, high, fmt: str | None = None, *, color=None, label: str | None = None,
                   alpha: float = 0.15, **fill):
    """Plot `centre` against `x` as a line over a band from `low` to `high` in its colour.

    Args:
        ax: the matplotlib axes.
        x, centre, low, high: arrays of one shape (n,).
        fmt: a matplotlib format string for the line ("--"); None: the default line.
        color: the line's colour; None: the next colour of the axes' cycle.
        label: the line's legend entry.
        alpha: the band's opacity.
        **fill: further keywords of ``ax.fill_between`` (``linewidth=0``).

    Returns:
        The line (a ``Line2D``).
    """
    (line,) = ax.plot(x, centre, *(() if fmt is None else (fmt,)), color=color, label=label)
    ax.fill_between(x, low, high, color=line.get_color(), alpha=alpha, **fill)
    return line


def identity_line(ax, values, *, label: str) -> None:
    """Draw the diagonal y = x from 0 to 5% past the largest of `values` (to 1 if empty).

    For a bound read off a scatter plot, e.g. a critic's IPM <= W1 (Kantorovich-Rubinstein).
    NaN values (diverged seeds) are ignored.
    """
    values = np.asarray(values, dtype=np.float64)
    limit = np.nanmax(values) * 1.05 if values.size else 1.0
    ax.plot([0, limit], [0, limit], color="black", linewidth=0.8, linestyle=":", label=label)
