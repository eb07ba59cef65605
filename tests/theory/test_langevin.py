"""Tests for theory/langevin.py: ULA on a Gaussian, plain vs annealed Langevin on the
NCSN target, schedules, exact scores, recording, and the mode diagnostics.

Every statistical assertion states its false-failure rate (the probability that a
correct implementation fails it for a random key) and derives its tolerance. The tests
run with a fixed key, so each one either always passes or always fails; the rate says
how unlucky that fixed key would have to be.
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from hypothesis import assume, given
from hypothesis import strategies as st

import theory
from theory.langevin import (
    ConvolvedMeans,
    ConvolvedTarget,
    ExactNoiseConditionalScore,
    ExactScore,
    GeometricSchedule,
    LangevinChains,
    LinearSchedule,
    annealed_langevin,
    annealed_step_sizes,
    binomial_proportion,
    langevin,
    mode_occupancy,
    occupancy_kl,
    separatrix_point,
    ula_gaussian_variance,
    ula_stability_ratio,
)


class CentredGaussianScore(eqx.Module):
    """s(x) = -x / s^2, the score of N(0, s^2): a module, so a new s does not recompile."""

    variance: jax.Array

    def __call__(self, x):
        return -x / self.variance


# --------------------------------------------------------------------------------------
# ULA on N(0, s^2): the closed-form stationary variance.

ULA_CHAINS = 20_000
ULA_STEPS = 2_000
ULA_FALSE_FAILURE_PER_EXAMPLE = 1e-6


@given(alpha=st.floats(0.05, 2.0), s=st.floats(0.5, 2.0))
def test_ula_stationary_variance_on_a_gaussian(alpha, s):
    # ULA on N(0, s^2) is the AR(1) recursion x' = rho x + sqrt(alpha) z with
    # rho = 1 - alpha / (2 s^2); its stationary variance is
    # v = alpha / (1 - (1 - alpha / (2 s^2))^2). Keep |rho| <= 0.8 at the unstable end.
    ratio = alpha / (2 * s**2)
    assume(ratio <= 1.8)
    stationary = alpha / (1.0 - (1.0 - ratio) ** 2)
    # From x_0 = 0, Var x_K = v (1 - rho^(2K)): over this range rho^(2K) <= exp(-2 * 0.00625
    # * 2000) = 1.4e-11, so after K = 2000 steps the chains are stationary to 1e-10.
    rho = 1.0 - ratio
    assert abs(rho) ** (2 * ULA_STEPS) < 1e-10
    chains = langevin(
        CentredGaussianScore(jnp.asarray(s**2)),
        jnp.zeros((ULA_CHAINS, 1)),
        key=jax.random.key(17),
        step_size=alpha,
        n_steps=ULA_STEPS,
    )
    x = np.asarray(chains.samples[:, 0], np.float64)
    # The n chains are independent and exactly N(0, v_K) (a linear recursion of
    # Gaussians), so n * mean(x^2) / v_K ~ chi^2_n exactly. Accept inside the central
    # 1 - 1e-6 range of that law: false failure 1e-6 per example, <= 2e-4 over the 200
    # examples of the `thorough` profile.
    statistic = ULA_CHAINS * np.mean(x**2) / stationary
    low, high = scipy.stats.chi2.ppf(
        [ULA_FALSE_FAILURE_PER_EXAMPLE / 2, 1 - ULA_FALSE_FAILURE_PER_EXAMPLE / 2], ULA_CHAINS
    )
    assert low <= statistic <= high, (alpha, s, np.mean(x**2), stationary)
    # Power: the relative width of that range is about 2 * 4.9 * sqrt(2 / n) = 0.098, so the
    # test tells ULA's variance 2 s^2 / (2 - alpha / s^2) from the target's s^2 whenever
    # alpha / s^2 > 0.2, and catches a missing 1/2 on the drift or sqrt(2 alpha) noise.


@given(alpha=st.floats(0.01, 3.0), s2=st.floats(0.25, 4.0), steps=st.integers(0, 50), v0=st.floats(0.0, 5.0))
def test_ula_gaussian_variance_matches_iterating_the_recursion(alpha, s2, steps, v0):
    assume(alpha / (2 * s2) < 1.95)
    rho = 1.0 - alpha / (2 * s2)
    v = v0
    for _ in range(steps):
        v = rho**2 * v + alpha
    # Same arithmetic by two routes: agreement to float64 rounding (relative 1e-12 covers
    # the 50 multiply-adds of the loop).
    assert ula_gaussian_variance(alpha, s2, steps, v0) == pytest.approx(v, rel=1e-12, abs=1e-12)
    assert ula_gaussian_variance(alpha, s2) == pytest.approx(alpha / (1 - (1 - alpha / (2 * s2)) ** 2), rel=1e-14)


def test_ula_variance_diverges_beyond_the_stability_bound():
    assert ula_gaussian_variance(4.5, 1.0) == math.inf
    assert ula_stability_ratio(4.0, 1.0) == 2.0


# --------------------------------------------------------------------------------------
# Plain vs annealed Langevin with exact scores on the NCSN target (Song & Ermon 2019, Fig. 3).

NCSN_CHAINS = 1280
# A 1 - 1e-6 Clopper-Pearson interval of 1280 chains covers 0.8 iff the count of the
# heavy mode is in [952, 1092]. Annealed Langevin with this protocol (L = 10, T = 100) is
# NOT exactly unbiased: with 25,600 chains its heavy-mode probability is 0.789
# [0.784, 0.794] (95%). Under Bin(1280, 0.789) the interval misses 0.8 with probability
# 4.6e-5 (2.9e-4 at p = 0.784): the false-failure rate of the first assertion. Plain
# Langevin keeps the uniform start's basins, p = 0.507 [0.501, 0.513]; its interval would
# cover 0.8 with probability < 1e-63. The tolerance is the interval itself, not widened.
NCSN_CONFIDENCE = 1 - 1e-6


def test_annealed_langevin_recovers_the_mode_weight_and_plain_langevin_does_not(key):
    target = theory.ncsn_two_modes()
    key_init, key_plain, key_annealed = jax.random.split(key, 3)
    x0 = jax.random.uniform(key_init, (NCSN_CHAINS, 2), target.means.dtype, -8.0, 8.0)
    plain = langevin(ExactScore(target), x0, key=key_plain, step_size=0.1, n_steps=1000)
    annealed = annealed_langevin(
        ExactNoiseConditionalScore(target, ConvolvedMeans()),
        x0,
        key=key_annealed,
        schedule=GeometricSchedule(sigma_max=20.0, sigma_min=1.0, n_levels=10),
        step_size=0.1,
        steps_per_level=100,
    )
    heavy_plain = binomial_proportion(int(mode_occupancy(target, plain.samples)[0]), NCSN_CHAINS, confidence=NCSN_CONFIDENCE)
    heavy_annealed = binomial_proportion(
        int(mode_occupancy(target, annealed.samples)[0]), NCSN_CHAINS, confidence=NCSN_CONFIDENCE
    )
    assert heavy_annealed.covers(0.8), heavy_annealed
    assert not heavy_plain.covers(0.8), heavy_plain
    # And plain Langevin reports the start's basin occupancy, about 1/2 (exact value:
    # the uniform mass of {x1 + x2 > -ln(4) / 10} in [-8, 8]^2 is 0.5087).
    assert heavy_plain.covers(0.5087), heavy_plain


# --------------------------------------------------------------------------------------
# Exact scores, families, schedules.


@pytest.mark.parametrize("family", [ConvolvedMeans(), ConvolvedTarget()])
def test_exact_scores_match_the_mixture_score(family, key):
    target = theory.MixtureOfGaussians(
        jnp.asarray([0.3, 0.7]),
        jnp.asarray([[1.0, -2.0], [-3.0, 4.0]]),
        jnp.asarray([[[2.0, 0.5], [0.5, 1.0]], [[0.7, -0.2], [-0.2, 1.5]]]),
    )
    points = 6.0 * jax.random.normal(key, (50, 2))
    # Two closed forms of one quantity in float64 (triangular solves vs precisions):
    # they agree to rounding, 1e-10 relative to the score's scale.
    np.testing.assert_allclose(jax.vmap(ExactScore(target))(points), target.score(points), rtol=1e-10, atol=1e-10)
    for sigma in (0.1, 1.0, 7.0):
        law = family.law(target, sigma)
        exact = jax.vmap(ExactNoiseConditionalScore(target, family), in_axes=(0, None))(points, sigma)
        np.testing.assert_allclose(exact, law.score(points), rtol=1e-10, atol=1e-10)
        smallest = np.linalg.eigvalsh(np.asarray(law.covs)).min()
        target_smallest = np.linalg.eigvalsh(np.asarray(target.covs)).min()
        # ConvolvedMeans replaces each covariance by sigma^2 I; ConvolvedTarget adds it.
        assert family.smallest_variance(target_smallest, sigma) == pytest.approx(smallest, rel=1e-12)


def test_component_std_family_is_the_ncsn_code_law_and_the_target_at_sigma_one():
    target = theory.ncsn_two_modes()
    law = ConvolvedMeans().law(target, 1.0)
    np.testing.assert_array_equal(law.covs, target.covs)
    np.testing.assert_array_equal(law.means, target.means)
    paper = ConvolvedTarget().law(target, 2.0)
    np.testing.assert_allclose(paper.covs, 5.0 * np.broadcast_to(np.eye(2), (2, 2, 2)))


def test_component_std_base_draws_are_the_means_with_the_mixture_weights(key):
    target = theory.ncsn_two_modes()
    n = 20_000
    base = np.asarray(ConvolvedMeans().sample_base(target, key, n))
    at_heavy = np.all(base == np.asarray(target.means[0]), axis=1)
    at_light = np.all(base == np.asarray(target.means[1]), axis=1)
    assert np.all(at_heavy | at_light)
    # The heavy count is Bin(n, 0.8): a correct sampler falls outside the 1 - 1e-6
    # Clopper-Pearson interval with probability <= 1e-6.
    assert binomial_proportion(int(at_heavy.sum()), n, confidence=1 - 1e-6).covers(0.8)


@given(sigma_max=st.floats(1.5, 50.0), ratio=st.floats(1.5, 1e3), n_levels=st.integers(2, 40))
def test_geometric_schedule_has_a_constant_ratio_and_the_given_end_points(sigma_max, ratio, n_levels):
    schedule = GeometricSchedule(sigma_max=sigma_max, sigma_min=sigma_max / ratio, n_levels=n_levels)
    sigmas = schedule.sigmas()
    assert sigmas.shape == (n_levels,)
    assert sigmas[0] == pytest.approx(sigma_max, rel=1e-12)
    assert sigmas[-1] == pytest.approx(sigma_max / ratio, rel=1e-12)
    assert np.all(np.diff(sigmas) < 0)
    np.testing.assert_allclose(sigmas[1:] / sigmas[:-1], ratio ** (-1 / (n_levels - 1)), rtol=1e-10)
    linear = LinearSchedule(sigma_max=sigma_max, sigma_min=sigma_max / ratio, n_levels=n_levels).sigmas()
    np.testing.assert_allclose(np.diff(linear), (sigma_max / ratio - sigma_max) / (n_levels - 1), rtol=1e-9)
    assert schedule.with_levels(3).sigmas().shape == (3,)


def test_single_level_schedule_is_sigma_min():
    assert GeometricSchedule(sigma_max=20.0, sigma_min=1.0, n_levels=1).sigmas().tolist() == [1.0]
    assert LinearSchedule(sigma_max=20.0, sigma_min=1.0, n_levels=1).sigmas().tolist() == [1.0]


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ((1.0, 2.0, 10), ValueError, "sigma_min must be < sigma_max"),
        ((20.0, -1.0, 10), ValueError, "sigma_min must be a finite number > 0"),
        ((20.0, 1.0, 0), ValueError, "n_levels must be an integer >= 1"),
        ((float("nan"), 1.0, 10), ValueError, "sigma_max must be a finite number"),
        ((20.0, 1.0, 10.0), TypeError, r"n_levels must be an integer >= 1, got 10\.0"),
        (("20", 1.0, 10), TypeError, r"sigma_max must be a finite number > 0, got '20'"),
    ],
)
def test_schedule_rejects_bad_levels(arguments, error, message):
    sigma_max, sigma_min, n_levels = arguments
    with pytest.raises(error, match=message):
        GeometricSchedule(sigma_max=sigma_max, sigma_min=sigma_min, n_levels=n_levels)


@pytest.mark.parametrize("schedule", [GeometricSchedule, LinearSchedule])
def test_schedule_fields_are_keyword_only(schedule):
    # Three floats in a row are easy to give in the wrong order: positions are refused.
    with pytest.raises(TypeError, match="positional argument"):
        schedule(20.0, 1.0, 10)


def test_annealed_step_sizes_keep_alpha_over_sigma_squared_constant():
    schedule = GeometricSchedule(sigma_max=20.0, sigma_min=1.0, n_levels=10)
    alphas = annealed_step_sizes(schedule, 0.1)
    np.testing.assert_allclose(alphas / schedule.sigmas() ** 2, 0.1, rtol=1e-12)
    assert alphas[0] == pytest.approx(40.0)


# --------------------------------------------------------------------------------------
# Sampler interface: recording, determinism, validation.


def test_recording_returns_the_path_without_changing_the_samples(key):
    target = theory.ncsn_two_modes()
    x0 = jnp.zeros((7, 2))
    score = ExactNoiseConditionalScore(target, ConvolvedMeans())
    schedule = GeometricSchedule(sigma_max=20.0, sigma_min=1.0, n_levels=4)
    run = lambda every: annealed_langevin(  # noqa: E731
        score, x0, key=key, schedule=schedule, step_size=0.1, steps_per_level=5, record_every=every
    )
    bare, recorded = run(None), run(5)
    assert isinstance(recorded, LangevinChains)
    assert recorded.trajectory.shape == (5, 7, 2)
    np.testing.assert_array_equal(recorded.steps, [0, 5, 10, 15, 20])
    np.testing.assert_allclose(recorded.sigmas[1:], schedule.sigmas())
    np.testing.assert_allclose(recorded.step_sizes[1:], annealed_step_sizes(schedule, 0.1))
    np.testing.assert_array_equal(recorded.trajectory[0], x0)
    np.testing.assert_array_equal(recorded.trajectory[-1], recorded.samples)
    # Same key, same noise: recording is an observation, not a different sampler.
    np.testing.assert_array_equal(bare.samples, recorded.samples)
    assert bare.trajectory.shape == (2, 7, 2)


def test_samplers_vmap_over_step_sizes(key):
    # The study vmaps one compiled sampler over step sizes; each slice must equal the
    # sampler called with that step size alone (same key, same noise).
    target = theory.ncsn_two_modes()
    x0 = jnp.ones((5, 2))
    batched = jax.vmap(lambda a: langevin(ExactScore(target), x0, key=key, step_size=a, n_steps=20).samples)(
        jnp.asarray([0.05, 0.2])
    )
    single = langevin(ExactScore(target), x0, key=key, step_size=0.2, n_steps=20).samples
    np.testing.assert_allclose(batched[1], single, rtol=1e-12)


def test_sampler_accepts_a_distribution_score_method(key):
    law = theory.Gaussian(jnp.asarray([1.0, -1.0]), jnp.eye(2))
    chains = langevin(law.score, jnp.zeros((3, 2)), key=key, step_size=0.1, n_steps=5)
    assert chains.samples.shape == (3, 2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"step_size": -0.1}, r"step_size must be finite and > 0, got -0\.1"),
        ({"step_size": float("inf")}, "step_size must be finite and > 0, got inf"),
        ({"n_steps": 0}, "n_steps must be an integer >= 1, got 0"),
        ({"record_every": 3}, "record_every must divide the number of steps 10, got 3"),
        ({"x0": jnp.zeros(4)}, r"x0 must have shape \(n, d\) with n, d >= 1, got shape \(4,\)"),
        ({"x0": jnp.array([[0.0, jnp.nan]])}, r"x0 must be finite"),
    ],
)
def test_langevin_rejects_bad_arguments(kwargs, message, key):
    target = theory.ncsn_two_modes()
    arguments = {"x0": jnp.zeros((4, 2)), "step_size": 0.1, "n_steps": 10, "record_every": None, **kwargs}
    x0 = arguments.pop("x0")
    with pytest.raises(ValueError, match=message):
        langevin(ExactScore(target), x0, key=key, **arguments)


def test_annealed_langevin_rejects_a_schedule_given_as_a_string(key):
    with pytest.raises(TypeError, match="schedule must be an AbstractNoiseSchedule, got 'geometric'"):
        annealed_langevin(lambda x, s: -x, jnp.zeros((2, 2)), key=key, schedule="geometric",
                          step_size=0.1, steps_per_level=3)


# --------------------------------------------------------------------------------------
# Mode diagnostics.


def test_clopper_pearson_edges_have_closed_forms():
    # k = 0: upper = 1 - (a/2)^(1/n); k = n: lower = (a/2)^(1/n) (Clopper & Pearson 1934).
    none = binomial_proportion(0, 10)
    assert none.low == 0.0 and none.high == pytest.approx(1 - 0.025 ** (1 / 10), rel=1e-10)
    every = binomial_proportion(10, 10)
    assert every.high == 1.0 and every.low == pytest.approx(0.025 ** (1 / 10), rel=1e-10)


@given(n=st.integers(1, 5000), fraction=st.floats(0.0, 1.0), confidence=st.floats(0.5, 0.999999))
def test_clopper_pearson_interval_holds_its_estimate_and_widens_with_confidence(n, fraction, confidence):
    k = round(fraction * n)
    p = binomial_proportion(k, n, confidence=confidence)
    assert 0.0 <= p.low <= p.value <= p.high <= 1.0
    wider = binomial_proportion(k, n, confidence=min(confidence + (1 - confidence) / 2, 1 - 1e-12))
    assert wider.low <= p.low and wider.high >= p.high


def test_binomial_proportion_rejects_impossible_counts():
    with pytest.raises(ValueError, match="count must be an integer <= 3, got 4"):
        binomial_proportion(4, 3)
    with pytest.raises(ValueError, match=r"confidence must be a finite number in \(0, 1\)"):
        binomial_proportion(1, 3, confidence=1.0)


def test_mode_occupancy_counts_points_by_their_most_responsible_component():
    target = theory.ncsn_two_modes()
    points = jnp.asarray([[[5.0, 5.0], [-5.0, -5.0], [0.0, 0.0]], [[-1.0, -1.0], [4.0, 6.0], [-0.2, 0.0]]])
    # (0, 0) is on the heavy side of the boundary x1 + x2 = -ln(4) / 10; (-0.2, 0) is not.
    np.testing.assert_array_equal(mode_occupancy(target, points), [[2, 1], [1, 2]])


def test_separatrix_point_has_the_closed_form_of_the_ncsn_target():
    # 0.8 N(m, I) vs 0.2 N(-m, I), m = (5, 5): equal responsibilities where
    # ln 4 = (|x - m|^2 - |x + m|^2) / 2 = -2 m.x, i.e. x1 + x2 = -ln(4) / 10; on the
    # segment between the means, x = -ln(4) / 20 (1, 1). Tolerance: the float32 law's
    # responsibilities are exact to ~1e-7, which moves the root by less than 1e-6.
    point = separatrix_point(theory.ncsn_two_modes())
    np.testing.assert_allclose(point, [-math.log(4) / 20] * 2, atol=1e-6)


def test_occupancy_kl_is_the_discrete_kl_with_the_delta_method_error(key):
    counts = np.array([640, 640])
    weights = np.array([0.8, 0.2])
    estimate = occupancy_kl(counts, weights, key=key, n_bootstrap=2000)
    assert estimate.value == pytest.approx(theory.kl(counts / 1280, weights).value, rel=1e-14)
    # Delta method: SE = sqrt(Var_p(g) / n), g_k = log(p_k / w_k) = 0.01937 here. The
    # bootstrap SD of B = 2000 replicates has relative sampling error sqrt(1 / (2 (B - 1)))
    # = 0.0158; 4.4 of those (false failure 1e-5) plus 0.03 for the delta method's
    # O(n^-1/2) relative error gives the 0.1 tolerance.
    p = counts / counts.sum()
    g = np.log(p / weights)
    delta = math.sqrt((np.sum(p * g**2) - np.sum(p * g) ** 2) / counts.sum())
    assert estimate.error == pytest.approx(delta, rel=0.1)
