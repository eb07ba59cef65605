"""Tests for theory/gan.py: the optimal discriminators and the values of the games.

Original GAN: D* = p / (p + q) pointwise, V(D*) = 2 JS - log 4 (Goodfellow et al. 2014,
Thm. 1) on random 1-D mixtures, a named 2-D pair and disjoint segments, and V(D) <= V(D*)
for perturbed discriminators. LSGAN: D* = (b p + a q) / (p + q) and, with a = -1,
b = 1, c = 0, 2 C = 2 PearsonChi2(q || (p + q) / 2) (Mao et al. 2017, Thm. 1).

Tolerances: quadrature values within the sum of reported errors plus the float64 floor
1e-10 (1 + |value|) argued in test_divergences.py; Monte Carlo within 5 SE.
"""

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import theory

LOG2, LOG4 = math.log(2.0), math.log(4.0)


def _floats(lo, hi):
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


def _floor(value):
    return 1e-10 * (1.0 + abs(value))


@st.composite
def mixtures_1d(draw):
    """Two-component 1-D mixtures (a fixed structure, so every draw reuses one
    compilation; the number of components varies in test_divergences.py)."""
    k = 2
    raw = np.asarray(draw(st.lists(_floats(0.1, 1.0), min_size=k, max_size=k)))
    means = np.asarray(draw(st.lists(_floats(-2, 2), min_size=k, max_size=k)))[:, None]
    stds = np.asarray(draw(st.lists(_floats(0.5, 1.5), min_size=k, max_size=k)))
    return theory.MixtureOfGaussians(raw / raw.sum(), means, (stds**2)[:, None, None])


# Jitted once per law structure; the laws ride along as pytree arguments.
@eqx.filter_jit
def _perturbed_logit(discriminator, amplitude, frequency, x):
    return discriminator.logit(x) + amplitude * jnp.cos(frequency * x[:, 0])


def _logit(discriminator):
    return functools.partial(_perturbed_logit, discriminator, jnp.asarray(0.0), jnp.asarray(0.0))


# jax.jit, not filter_jit: the LSGAN labels are float fields, traced rather than static.
_call = jax.jit(lambda module, x: module(x))
_log_prob = eqx.filter_jit(lambda law, x: law.log_prob(x))


# --------------------------------------------------------------------------------------
# The original GAN.


@settings(max_examples=6)
@given(mixtures_1d(), mixtures_1d())
def test_value_at_the_optimal_discriminator_is_2js_minus_log4(p, q):
    value = theory.gan_value(_logit(theory.optimal_discriminator(p, q)), p, q, logit=True)
    js = theory.js(p, q)
    assert abs(value.value - (2 * js.value - LOG4)) <= value.error + 2 * js.error + _floor(LOG4)


def test_value_at_the_optimal_discriminator_on_named_targets():
    p, q = theory.gaussian_grid(2), theory.gaussian_grid(4)
    value = theory.gan_value(_logit(theory.optimal_discriminator(p, q)), p, q, logit=True)
    js = theory.js(p, q)
    assert "quadrature (2-D" in value.method
    assert abs(value.value - (2 * js.value - LOG4)) <= value.error + 2 * js.error + _floor(LOG4)


@settings(max_examples=6)
@given(mixtures_1d(), mixtures_1d(), _floats(-2.0, 2.0).filter(lambda a: abs(a) > 0.05), _floats(0.0, 3.0))
def test_any_other_discriminator_scores_lower(p, q, amplitude, frequency):
    # V(D; p, q) is maximised pointwise by D*: perturbing the logit by
    # a cos(w x) (non-zero on a set of positive mass) strictly lowers the value.
    best = theory.gan_value(_logit(theory.optimal_discriminator(p, q)), p, q, logit=True)
    perturbed = functools.partial(
        _perturbed_logit, theory.optimal_discriminator(p, q), jnp.asarray(amplitude), jnp.asarray(frequency)
    )
    other = theory.gan_value(perturbed, p, q, logit=True)
    assert other.value < best.value + other.error + best.error + _floor(best.value)


@settings(max_examples=4)
@given(_floats(-20.0, 20.0))
def test_value_of_a_constant_discriminator(logit):
    # D = sigmoid(l) everywhere: V = log sigmoid(l) + log sigmoid(-l), whatever p and q.
    p = theory.MixtureOfGaussians(jnp.array([0.5, 0.5]), jnp.array([[-2.0], [2.0]]), 0.1 * jnp.ones((2, 1, 1)))
    q = theory.Gaussian(jnp.zeros(1), jnp.eye(1))
    value = theory.gan_value(lambda x: jnp.full(x.shape[0], logit), p, q, logit=True)
    expected = float(jax.nn.log_sigmoid(logit) + jax.nn.log_sigmoid(-logit))
    assert abs(value.value - expected) <= value.error + _floor(expected)


@given(mixtures_1d(), mixtures_1d(), st.data())
def test_optimal_discriminator_is_p_over_p_plus_q(p, q, data):
    x = jnp.asarray(data.draw(arrays(np.float64, (5, 1), elements=_floats(-4, 4))))
    discriminator = theory.optimal_discriminator(p, q)
    lp, lq = np.asarray(_log_prob(p, x)), np.asarray(_log_prob(q, x))
    expected = np.exp(lp) / (np.exp(lp) + np.exp(lq))
    np.testing.assert_allclose(_call(discriminator, x), expected, rtol=1e-12)
    np.testing.assert_allclose(_logit(discriminator)(x), lp - lq, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(_call(theory.optimal_discriminator(p, p), x), 0.5)


def test_optimal_discriminator_is_exact_where_both_densities_underflow():
    # 60 sd out both densities are 0 in float64, but their ratio is not: D* = sigmoid(lp - lq).
    p = theory.Gaussian(jnp.array([0.0]), jnp.eye(1))
    q = theory.Gaussian(jnp.array([1.0]), jnp.eye(1))
    x = jnp.array([[60.0], [-60.0]])
    assert np.all(np.exp(np.asarray(p.log_prob(x))) == 0.0)
    # log p - log q = ((x - 1)^2 - x^2) / 2 = 1/2 - x: D* = sigmoid(1/2 - x).
    np.testing.assert_allclose(theory.optimal_discriminator(p, q)(x), jax.nn.sigmoid(0.5 - x[:, 0]), rtol=1e-12)


@given(st.one_of(st.just(0.0), _floats(1e-6, 3.0), _floats(-3.0, -1e-6)))
def test_value_on_disjoint_parallel_lines_is_2log2_minus_log4(theta):
    # theta != 0: D* = 1 on p's line, 0 on q's, V = 0 = 2 log 2 - log 4 exactly;
    # theta = 0: D* = 1/2, V = -log 4.
    p, q = theory.VerticalSegment(0.0), theory.VerticalSegment(theta)
    value = theory.gan_value(theory.optimal_discriminator(p, q), p, q, key=jax.random.key(5))
    expected = -LOG4 if theta == 0.0 else 2 * LOG2 - LOG4
    assert value.value == pytest.approx(expected, abs=1e-15)
    assert "Monte Carlo" in value.method


def test_gan_value_takes_the_optimal_discriminator_itself():
    # Regression: gan_value(optimal_discriminator(p, q), p, q) used to read D* as a
    # logit and return -1.2797 for these laws instead of 2 JS - log 4 = -0.8947.
    # Tolerance: both sides are Gauss-Legendre quadratures; the difference is within
    # the sum of their reported errors plus the float64 floor.
    p, q = theory.gaussian_grid(4), theory.gaussian_grid(9)
    value = theory.gan_value(theory.optimal_discriminator(p, q), p, q)
    js = theory.js(p, q)
    expected = 2 * js.value - LOG4
    assert abs(value.value - expected) <= value.error + 2 * js.error + _floor(LOG4)
    assert abs(expected - (-0.8947)) < 1e-4


@eqx.filter_jit
def _optimal_probability(discriminator, x):
    return discriminator(x)


def test_gan_value_of_a_probability_equals_that_of_its_logit():
    # Any x -> D(x) in (0, 1) is a probability discriminator: D* as a plain function
    # (not the OptimalDiscriminator object) and its logit give one value. Away from
    # D in {0, 1}, log D and log sigmoid(logit) agree to float64 rounding, so the
    # two quadratures of the same integrand agree to the float64 floor.
    p = theory.Gaussian(jnp.array([0.0]), jnp.eye(1))
    q = theory.Gaussian(jnp.array([1.0]), 2.0 * jnp.eye(1))
    optimal = theory.optimal_discriminator(p, q)
    as_probability = theory.gan_value(functools.partial(_optimal_probability, optimal), p, q)
    as_logit = theory.gan_value(optimal.logit, p, q, logit=True)
    assert abs(as_probability.value - as_logit.value) <= as_probability.error + as_logit.error + _floor(LOG4)


def test_gan_value_refuses_a_logit_passed_as_a_probability():
    p = theory.Gaussian(jnp.array([0.0]), jnp.eye(1))
    q = theory.Gaussian(jnp.array([1.0]), 2.0 * jnp.eye(1))
    with pytest.raises(ValueError, match=r"discriminator must return probabilities in \[0, 1\] \(pass logit=True"):
        theory.gan_value(theory.optimal_discriminator(p, q).logit, p, q)
    with pytest.raises(TypeError, match=r"logit must be true or false, got 'yes'"):
        theory.gan_value(theory.optimal_discriminator(p, q), p, q, logit="yes")


def test_gan_value_by_monte_carlo_is_within_five_standard_errors(key):
    p = theory.mixture([theory.Gaussian(jnp.array([-1.0]), jnp.eye(1)), theory.Gaussian(jnp.array([1.5]), 0.5 * jnp.eye(1))], [0.4, 0.6])
    q = theory.Gaussian(jnp.array([0.5]), 2.0 * jnp.eye(1))
    logit = _logit(theory.optimal_discriminator(p, q))
    exact = theory.gan_value(logit, p, q, logit=True)
    estimate = theory.gan_value(logit, p, q, logit=True, key=key, method=theory.MonteCarlo(n=20_000))
    assert abs(estimate.value - exact.value) <= 5 * estimate.error + exact.error


# --------------------------------------------------------------------------------------
# LSGAN.


@settings(max_examples=6)
@given(mixtures_1d(), mixtures_1d())
def test_lsgan_generator_value_at_the_optimum_is_pearson_chi2_to_the_midpoint(p, q):
    # a = -1, b = 1, c = 0: 2 C = integral (p - q)^2 / (p + q) = 2 chi^2(q || (p + q) / 2).
    value = theory.lsgan_generator_value(
        functools.partial(_call, theory.lsgan_optimal_discriminator(p, q, fake_label=-1.0, real_label=1.0)), p, q, target=0.0
    )
    pearson = theory.f_divergence(theory.PearsonChiSquared(), q, theory.mixture([p, q], [0.5, 0.5]))
    assert abs(2 * value.value - 2 * pearson.value) <= 2 * (value.error + pearson.error) + _floor(pearson.value)


@given(mixtures_1d(), mixtures_1d(), _floats(-3, 3), _floats(-3, 3), st.data())
def test_lsgan_optimal_discriminator_is_the_label_average(p, q, fake, real, data):
    x = jnp.asarray(data.draw(arrays(np.float64, (5, 1), elements=_floats(-4, 4))))
    discriminator = theory.lsgan_optimal_discriminator(p, q, fake_label=fake, real_label=real)
    density_p, density_q = np.exp(np.asarray(_log_prob(p, x))), np.exp(np.asarray(_log_prob(q, x)))
    expected = (real * density_p + fake * density_q) / (density_p + density_q)
    np.testing.assert_allclose(_call(discriminator, x), expected, rtol=1e-10, atol=1e-12)
    same = theory.lsgan_optimal_discriminator(p, p, fake_label=fake, real_label=real)
    np.testing.assert_allclose(_call(same, x), 0.5 * (fake + real), rtol=1e-12, atol=1e-15)


@given(_floats(-3, 3), _floats(-3, 3))
def test_lsgan_generator_value_of_a_constant_discriminator(level, target):
    # D = d everywhere: C = 1/2 (d - c)^2 + 1/2 (d - c)^2 = (d - c)^2.
    p, q = theory.Gaussian(jnp.zeros(1), jnp.eye(1)), theory.Gaussian(jnp.ones(1), 2.0 * jnp.eye(1))
    value = theory.lsgan_generator_value(lambda x: jnp.full(x.shape[0], level), p, q, target=target)
    assert abs(value.value - (level - target) ** 2) <= value.error + _floor((level - target) ** 2)


# --------------------------------------------------------------------------------------
# Bad input.

_G1 = theory.Gaussian(jnp.zeros(1), jnp.eye(1))
_G2 = theory.Gaussian(jnp.zeros(2), jnp.eye(2))


@pytest.mark.parametrize(
    "call, shown",
    [
        (lambda: theory.optimal_discriminator(_G1, _G2), r"the laws must share a dimension, got \{'p': 1, 'q': 2\}"),
        (lambda: theory.gan_value(lambda x: x[:, 0], _G2, _G1, logit=True), r"the laws must share a dimension, got \{'p': 2, 'q': 1\}"),
        (lambda: theory.gan_value(lambda x: x[:, 0], _G1, _G1, logit=True, method="quadrature"), r"method must be Quadrature\(\.\.\.\) or MonteCarlo\(\.\.\.\), got 'quadrature'"),
        (lambda: theory.gan_value(lambda x: x[:, 0], theory.PointMass(0.0), theory.PointMass(1.0), logit=True), r"key must be given for a Monte Carlo estimate"),
        (lambda: theory.lsgan_optimal_discriminator(_G1, _G2), r"the laws must share a dimension"),
        (lambda: theory.lsgan_optimal_discriminator(_G1, _G1, fake_label=np.nan), r"fake_label must be finite, got nan"),
        (lambda: theory.lsgan_optimal_discriminator(_G1, _G1, real_label=np.inf), r"real_label must be finite, got inf"),
        (lambda: theory.lsgan_generator_value(lambda x: x[:, 0], _G1, _G1, target=-np.inf), r"target must be finite, got -inf"),
        (lambda: theory.lsgan_generator_value(lambda x: x[:, 0], _G1, _G2), r"the laws must share a dimension"),
    ],
)
def test_gan_functions_reject_bad_input(call, shown):
    with pytest.raises(ValueError, match=shown):
        call()


def test_gan_functions_reject_a_missing_key_as_a_type_error():
    with pytest.raises(TypeError, match=r"key must be a JAX PRNG key, got None"):
        theory.lsgan_generator_value(lambda x: x[:, 0], _G1, _G1, method=theory.MonteCarlo(n=10))
    with pytest.raises(TypeError, match=r"discriminator must be callable, got 0\.5"):
        theory.gan_value(0.5, _G1, _G1)
