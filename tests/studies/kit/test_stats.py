"""studies.kit.stats: intervals over replicates, paired differences, pooled proportions."""

import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from studies import kit


def test_over_replicates_is_the_student_t_interval_and_counts_diverged_replicates():
    values = np.array([1.0, 2.0, 4.0, np.nan])
    interval = kit.over_replicates(values)
    finite = values[:3]
    se = finite.std(ddof=1) / math.sqrt(3)
    half = scipy.stats.t.ppf(0.975, 2) * se
    assert interval.value == pytest.approx(finite.mean())
    assert interval.error == pytest.approx(se)
    assert (interval.low, interval.high) == pytest.approx((finite.mean() - half, finite.mean() + half))
    assert (interval.n, interval.n_diverged) == (3, 1)
    assert "(1/4 diverged)" in str(interval)


def test_all_diverged_says_so_instead_of_a_number():
    interval = kit.over_replicates([np.nan, np.inf])
    assert math.isnan(interval.value) and str(interval) == "all 2 diverged"


def test_the_t_interval_covers_at_its_level_over_independent_replicates():
    # 2,000 experiments of 3 seeds from N(0, 1): the 95% interval covers 0 with
    # probability 0.95; the binomial sd of the coverage is sqrt(.95 .05 / 2000) = 0.0049,
    # so 4 sd is 0.02.
    rng = np.random.default_rng(0)
    covered = [(i.low <= 0 <= i.high) for i in (kit.over_replicates(rng.normal(size=3)) for _ in range(2000))]
    assert abs(np.mean(covered) - 0.95) < 0.02


def test_paired_difference_removes_the_shared_seed_effect():
    rng = np.random.default_rng(1)
    seed_effect = rng.normal(scale=10.0, size=8)
    a, b = seed_effect + 1.0 + rng.normal(scale=0.01, size=8), seed_effect
    paired = kit.paired_difference(a, b)
    assert paired.low < 1.0 < paired.high and paired.high - paired.low < 0.1
    unpaired = kit.over_replicates(a).high - kit.over_replicates(a).low
    assert unpaired > 10 * (paired.high - paired.low)
    with pytest.raises(ValueError, match="pair up"):
        kit.paired_difference([1.0, 2.0], [1.0])


def test_pooled_proportion_is_clopper_pearson():
    interval = kit.pooled_proportion(7, 20)
    assert interval.low == pytest.approx(scipy.stats.beta.ppf(0.025, 7, 14))
    assert interval.high == pytest.approx(scipy.stats.beta.ppf(0.975, 8, 13))
    assert kit.pooled_proportion(0, 5).low == 0.0 and kit.pooled_proportion(5, 5).high == 1.0
    with pytest.raises(ValueError):
        kit.pooled_proportion(6, 5)
    with pytest.raises(ValueError, match=r"successes must be an integer >= 0, got -1"):
        kit.pooled_proportion(-1, 5)
    with pytest.raises(TypeError, match=r"trials must be an integer >= 0, got 5\.0"):
        kit.pooled_proportion(2, 5.0)


def test_late_mean_and_slope():
    assert kit.late_mean([8.0, 2.0, 6.0, 4.0]) == 4.0
    assert kit.late_mean(list(range(8))) == 6.5  # last quarter = last 2
    assert math.isnan(kit.late_mean([1.0, np.nan]))
    x = np.array([64, 256, 1024, 4096])
    y = np.stack([c * x**-0.5 for c in (1.0, 1.1, 0.9)])
    slope = kit.slope_over_replicates(x, y)
    assert slope.value == pytest.approx(-0.5) and slope.n == 3


def test_summarise_and_summarise_paired_group_by_coordinates():
    frame = pd.DataFrame({"K": [4, 4, 4, 4, 9, 9], "sampler": ["a", "b", "a", "b", "a", "b"],
                          "seed": [0, 0, 1, 1, 0, 0], "value": [1.0, 0.5, 2.0, 1.0, 3.0, np.nan]})
    summary = kit.summarise(frame[frame["sampler"] == "a"], by=["K"])
    assert list(summary["n"]) == [2, 1]
    paired = kit.summarise_paired(frame, by=["K"], contrast="sampler", a="a", b="b")
    assert paired.loc[paired["K"] == 4, "value"].item() == pytest.approx(0.75)
    assert paired.loc[paired["K"] == 9, "n_diverged"].item() == 1
