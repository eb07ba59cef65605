"""Mode statistics against samples whose answer is known in closed form."""

import math

import numpy as np
import pytest

import theory


def test_exact_target_samples_cover_every_mode_with_their_weight(key):
    target = theory.gaussian_grid(9)
    n = 20_000
    stats = theory.mode_statistics(target.sample(key, n), target)
    # Within 3 standard deviations in R^2 a component keeps 1 - exp(-9/2) of its mass
    # (chi-square with 2 degrees of freedom); the grid's modes are 2 apart, 6.3 std, so
    # the ellipses do not overlap. Each fraction is binomial: 5 standard errors give a
    # false-failure rate below 1e-5 for the 9 modes together.
    expected = np.asarray(target.weights) * (1 - math.exp(-4.5))
    standard_error = np.sqrt(expected * (1 - expected) / n)
    np.testing.assert_array_less(np.abs(stats.mass_near_mode - expected), 5 * standard_error)
    assert stats.modes_covered == 9
    assert abs(stats.mass_near_any_mode - (1 - math.exp(-4.5))) < 5 * math.sqrt(0.011 * 0.989 / n)


def test_a_collapsed_sample_covers_one_mode(key):
    target = theory.gaussian_grid(4)
    collapsed = np.tile(np.asarray(target.means[2]), (100, 1))
    stats = theory.mode_statistics(collapsed, target)
    assert stats.modes_covered == 1
    np.testing.assert_array_equal(stats.mass_near_mode, [0.0, 0.0, 1.0, 0.0])


def test_far_away_samples_are_near_no_mode():
    target = theory.gaussian_grid(4)
    stats = theory.mode_statistics(np.full((10, 2), 50.0), target)
    assert stats.modes_covered == 0 and stats.mass_near_any_mode == 0.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"samples": np.zeros((5, 3))}, "samples must have shape"),
        ({"samples": np.full((5, 2), np.nan)}, "samples must be finite"),
        ({"samples": np.zeros((5, 2)), "radius": -1.0}, "radius must be a finite number > 0, got -1.0"),
        ({"samples": np.zeros((5, 2)), "coverage_fraction": 0.0}, "coverage_fraction must be a finite number in"),
    ],
)
def test_bad_input_names_the_argument(kwargs, match):
    samples = kwargs.pop("samples")
    with pytest.raises(ValueError, match=match):
        theory.mode_statistics(samples, theory.gaussian_grid(4), **kwargs)
