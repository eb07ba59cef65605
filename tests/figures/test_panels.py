"""figures.panels: intervals over seeds per coordinate, a line over its band, the diagonal."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from figures.panels import identity_line, line_with_band, over_seeds  # noqa: E402


def test_over_seeds_of_two_seeds_is_their_midpoint_with_half_their_distance():
    # Two values a, b: mean (a + b) / 2, sample s.d. |a - b| / sqrt 2, so s.e. |a - b| / 2;
    # the 95% t-interval is mean +- t_{1, 0.975} s.e. with t_{1, 0.975} = tan(0.475 pi) = 12.706...
    rows = pd.DataFrame({"step": [20, 10, 20, 10], "seed": [0, 0, 1, 1], "value": [1.0, 4.0, 3.0, 4.5]})
    band = over_seeds(rows, "step")
    assert list(band["step"]) == [10, 20]  # ascending, whatever the row order
    np.testing.assert_allclose(band["value"], [4.25, 2.0], rtol=1e-15)
    np.testing.assert_allclose(band["error"], [0.25, 1.0], rtol=1e-15)
    t = math.tan(0.475 * math.pi)
    np.testing.assert_allclose(band["high"] - band["value"], t * band["error"], rtol=1e-12)
    np.testing.assert_allclose(band["value"] - band["low"], t * band["error"], rtol=1e-12)
    assert list(band["n"]) == [2, 2] and list(band["n_diverged"]) == [0, 0]


def test_over_seeds_counts_a_diverged_seed_and_leaves_one_seed_without_an_error():
    rows = pd.DataFrame({"k": [1, 1, 1, 5], "value": [2.0, np.nan, 4.0, 7.0]})
    band = over_seeds(rows, "k").set_index("k")
    assert band.loc[1, "value"] == 3.0 and band.loc[1, "n"] == 2 and band.loc[1, "n_diverged"] == 1
    assert band.loc[5, "value"] == 7.0 and math.isnan(band.loc[5, "error"]) and band.loc[5, "n"] == 1


def test_over_seeds_of_no_rows_is_an_empty_frame_with_the_columns():
    band = over_seeds(pd.DataFrame({"t": [], "value": []}), "t")
    assert band.empty and list(band.columns) == ["t", "value", "error", "low", "high", "n", "n_diverged"]


@given(st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=8), st.floats(0.5, 0.99))
def test_over_seeds_interval_holds_its_mean_and_widens_with_the_level(values, level):
    rows = pd.DataFrame({"x": 0, "value": values})
    narrow, wide = over_seeds(rows, "x", level=level).iloc[0], over_seeds(rows, "x", level=0.995).iloc[0]
    assert narrow["low"] <= narrow["value"] <= narrow["high"]
    assert wide["low"] <= narrow["low"] and narrow["high"] <= wide["high"]
    # The mean of n float64 values in another summation order: each of the n - 1 roundings of a
    # sum is at most eps * n max|x|, so two orders differ by <= 2 n^2 eps max|x|, the means by
    # 2 n eps max|x|.
    bound = 2 * len(values) * np.finfo(np.float64).eps * max(abs(v) for v in values)
    assert abs(narrow["value"] - np.mean(values)) <= bound


def test_line_with_band_shades_low_to_high_in_the_lines_colour():
    fig, ax = plt.subplots()
    x, centre = np.array([1.0, 2.0, 3.0]), np.array([2.0, 3.0, 1.0])
    line = line_with_band(ax, x, centre, centre - 0.5, centre + 1.0, "--", label="mean")
    band = ax.collections[0]
    assert line.get_linestyle() == "--" and line.get_label() == "mean"
    np.testing.assert_array_equal(band.get_facecolor()[0][:3], matplotlib.colors.to_rgb(line.get_color()))
    vertices = band.get_paths()[0].vertices
    assert vertices[:, 1].min() == pytest.approx(0.5) and vertices[:, 1].max() == pytest.approx(4.0)
    other = line_with_band(ax, x, centre, centre, centre, color="C3", alpha=0.2, linewidth=0)
    assert other.get_color() == "C3" and ax.collections[1].get_alpha() == 0.2
    assert ax.collections[1].get_linewidth()[0] == 0
    plt.close(fig)


def test_identity_line_runs_from_zero_past_the_largest_finite_value():
    fig, ax = plt.subplots()
    identity_line(ax, np.array([[0.2, np.nan], [0.4, 0.1]]), label="IPM = W1")
    identity_line(ax, np.empty((0, 2)), label="empty")
    full, empty = ax.lines
    np.testing.assert_allclose(full.get_xydata(), [[0, 0], [0.42, 0.42]], rtol=1e-15)
    np.testing.assert_array_equal(empty.get_xydata(), [[0, 0], [1, 1]])
    assert full.get_label() == "IPM = W1"
    plt.close(fig)
