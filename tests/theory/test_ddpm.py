"""Tests for theory/ddpm.py: schedules, forward kernels, posterior, mu_theta, exact epsilon."""

import math

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given

import theory
from theory.ddpm import (
    CosineBetaSchedule,
    ExactEpsilon,
    LinearBetaSchedule,
    epsilon_mean,
    forward_marginal,
    noised_target,
    one_step_kernel,
    posterior,
    predicted_x0,
)

SCHEDULES = [LinearBetaSchedule(), CosineBetaSchedule()]
IDS = ["linear", "cosine"]
points = st.tuples(st.floats(-5, 5), st.floats(-5, 5)).map(lambda p: jnp.asarray(p, jnp.float64))


def _gaussian_log_density(x, mean, std):
    x, mean = np.asarray(x, np.float64), np.asarray(mean, np.float64)
    return float(-0.5 * np.sum((x - mean) ** 2) / std**2 - x.size * math.log(std) - 0.5 * x.size * math.log(2 * math.pi))


def test_ho_et_al_linear_schedule():
    """beta_1 = 1e-4, beta_T = 0.02, T = 1000 (Ho et al. 2020, Sec. 4); the chain ends
    near N(0, I): alpha_bar_T = prod (1 - beta_i) = 4.04e-5, its value to 3 digits."""
    schedule = LinearBetaSchedule()
    betas = schedule.betas()
    assert betas.shape == (1000,)
    assert betas[0] == pytest.approx(1e-4) and betas[-1] == pytest.approx(0.02)
    assert schedule.alpha_bars()[-1] == pytest.approx(4.036e-5, rel=1e-3)
    # 1 - alpha_bar_1 keeps its digits (a float32 cumulative product would not).
    assert schedule.one_minus_alpha_bars()[1] == pytest.approx(1e-4, rel=1e-12)


def test_cosine_schedule_follows_its_defining_curve():
    """alpha_bar_i = f(i) / f(0), f(i) = cos((i/T + s) / (1 + s) pi / 2)^2 (Nichol & Dhariwal
    2021, eq. 17), wherever the beta clip at 0.999 is inactive."""
    schedule = CosineBetaSchedule()
    i = np.arange(1001)
    f = np.cos((i / 1000 + 0.008) / 1.008 * np.pi / 2) ** 2
    clipped = np.concatenate([[False], np.cumsum(schedule.betas() >= 0.999) > 0])
    np.testing.assert_allclose(schedule.alpha_bars()[~clipped], (f / f[0])[~clipped], rtol=1e-10)
    assert np.all(schedule.betas() <= 0.999) and np.all(schedule.betas() > 0)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=IDS)
def test_marginal_is_the_composition_of_one_step_kernels(schedule):
    """q(x_i | x_0) = q(x_i | x_{i-1}) o ... o q(x_1 | x_0) for every i.

    Composing linear-Gaussian kernels x_i = a_i x_{i-1} + b_i z: the scale multiplies,
    c_i = a_i c_{i-1}, and the variances add after scaling, v_i = a_i^2 v_{i-1} + b_i^2
    (exact). a_i, b_i are read off `one_step_kernel`, c_i, v_i compared with
    `forward_marginal` to float64 rounding accumulated over T = 1000 steps (rtol 1e-10).
    """
    one = jnp.ones(1, jnp.float64)
    scale, variance = 1.0, 0.0
    for i in range(1, schedule.n_steps + 1):
        kernel = one_step_kernel(schedule, one, i)
        a, b = float(kernel.mean[0]), float(kernel.std)
        scale, variance = a * scale, a**2 * variance + b**2
        marginal = forward_marginal(schedule, one, i)
        assert float(marginal.mean[0]) == pytest.approx(scale, rel=1e-10, abs=1e-300)
        assert float(marginal.std) ** 2 == pytest.approx(variance, rel=1e-10)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=IDS)
def test_chain_of_one_step_draws_has_the_marginal_law(schedule, key):
    """Monte Carlo version: run x_i = sqrt(1 - beta_i) x_{i-1} + sqrt(beta_i) z from x_0 for
    20,000 chains up to i = 300 and compare mean and variance with q(x_300 | x_0).
    Tolerance: 5 standard errors of each estimator (FFR 5.7e-7 per check, 3 checks)."""
    n, i_max = 20_000, 300
    x0 = jnp.asarray([1.5, -0.5], jnp.float64)
    x = jnp.broadcast_to(x0, (n, 2))

    def step(x, inputs):
        i, noise_key = inputs
        kernel = one_step_kernel(schedule, x, i)
        return kernel.mean + kernel.std * jax.random.normal(noise_key, x.shape, x.dtype), None

    x, _ = jax.lax.scan(step, x, (jnp.arange(1, i_max + 1), jax.random.split(key, i_max)))
    marginal = forward_marginal(schedule, x0, i_max)
    std = float(marginal.std)
    np.testing.assert_array_less(np.abs(np.mean(x, axis=0) - marginal.mean), 5 * std / math.sqrt(n))
    pooled = float(np.mean(np.var(np.asarray(x), axis=0, ddof=1)))
    assert abs(pooled - std**2) < 5 * std**2 * math.sqrt(2 / (2 * n - 1))


@pytest.mark.parametrize("schedule", SCHEDULES, ids=IDS)
@given(i=st.integers(1, 1000), x0=points, noise=points)
def test_posterior_mean_is_mu_theta_with_the_true_noise(schedule, i, x0, noise):
    """mu_theta(x_i, i) = mu_tilde(x_i, x_0) when eps_theta returns the eps of
    x_i = sqrt(alpha_bar_i) x_0 + sqrt(1 - alpha_bar_i) eps (Ho et al. 2020, eqs. 7, 10-11).
    Tolerance: float64 rounding, amplified by 1 / sqrt(alpha_i) <= 32 at the cosine
    schedule's last steps (atol 1e-9). Also x0_hat(x_i, eps) = x_0 (DDIM eq. 9)."""
    marginal = forward_marginal(schedule, x0, i)
    x_t = marginal.mean + marginal.std * noise
    np.testing.assert_allclose(epsilon_mean(schedule, x_t, noise, i), posterior(schedule, x_t, x0, i).mean,
                               rtol=1e-9, atol=1e-9)
    # x0_hat = (x_i - b eps) / a recovers x_0; rounding of x_i - b eps (~1e-15 |x|) is
    # amplified by 1 / a (up to ~1e4 at the cosine schedule's last step).
    a = float(forward_marginal(schedule, jnp.ones(()), i).mean)
    np.testing.assert_allclose(predicted_x0(schedule, x_t, noise, i), x0, rtol=0, atol=1e-12 / a)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=IDS)
@given(i=st.integers(2, 1000), x0=points, x_t=points, a=points, b=points)
def test_posterior_is_bayes_rule(schedule, i, x0, x_t, a, b):
    """q(x_{i-1} | x_i, x_0) is proportional to q(x_i | x_{i-1}) q(x_{i-1} | x_0) in x_{i-1}:
    the log-ratio is the same at any two points a, b. Tolerance: float64 cancellation
    of terms of size |x|^2 / beta_i <= 1e6 (atol 1e-6)."""

    def log_ratio(previous):
        kernel = one_step_kernel(schedule, previous, i)
        prior = forward_marginal(schedule, x0, i - 1)
        post = posterior(schedule, x_t, x0, i)
        return (_gaussian_log_density(x_t, kernel.mean, float(kernel.std))
                + _gaussian_log_density(previous, prior.mean, float(prior.std))
                - _gaussian_log_density(previous, post.mean, float(post.std)))

    assert log_ratio(a) == pytest.approx(log_ratio(b), abs=1e-6, rel=1e-9)


@given(i=st.integers(1, 1000), x=points)
def test_exact_epsilon_gives_tweedies_posterior_mean(i, x):
    """For Gaussian data N(mu, S), x0_hat(x, eps*(x, i)) = E[x_0 | x_i = x] =
    mu + a S (a^2 S + b^2 I)^{-1} (x - a mu), a = sqrt(alpha_bar_i), b = sqrt(1 - alpha_bar_i)
    (Gaussian conditioning). Tolerance: float64 rounding amplified by 1 / a <= 160."""
    schedule = LinearBetaSchedule()
    mean = jnp.asarray([0.5, -1.0])
    cov = jnp.asarray([[0.6, 0.2], [0.2, 0.3]])
    data = theory.Gaussian(mean, cov)
    a = float(forward_marginal(schedule, jnp.ones(()), i).mean)
    b = float(forward_marginal(schedule, jnp.ones(()), i).std)
    expected = mean + a * cov @ jnp.linalg.solve(a**2 * cov + b**2 * jnp.eye(2), x - a * mean)
    eps = ExactEpsilon(schedule, data)(x, i)
    np.testing.assert_allclose(predicted_x0(schedule, x, eps, i), expected, rtol=1e-7, atol=1e-7)


@given(i=st.integers(1, 1000), x=points)
def test_exact_epsilon_matches_the_noised_mixture_score(i, x):
    """eps*(x, i) = -sqrt(1 - alpha_bar_i) grad log q_i(x), q_i the exact noised mixture."""
    schedule = LinearBetaSchedule()
    target = theory.gaussian_grid(9)
    law = noised_target(schedule, target, i)
    std = float(forward_marginal(schedule, jnp.ones(()), i).std)
    np.testing.assert_allclose(ExactEpsilon(schedule, target)(x, i), -std * law.score(x), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: LinearBetaSchedule(n_steps=0), "n_steps"),
        (lambda: LinearBetaSchedule(beta_end=1.5), "beta_end"),
        (lambda: CosineBetaSchedule(offset=-1.0), "offset"),
        (lambda: CosineBetaSchedule(max_beta=1.0), "max_beta"),
    ],
)
def test_bad_schedules_are_named(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("schedule", [LinearBetaSchedule, CosineBetaSchedule])
def test_beta_schedule_fields_are_keyword_only(schedule):
    with pytest.raises(TypeError, match="positional argument"):
        schedule(1000)
    with pytest.raises(TypeError, match=r"n_steps must be an integer >= 1, got 10\.0"):
        schedule(n_steps=10.0)
