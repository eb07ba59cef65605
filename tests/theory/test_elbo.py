"""Tests for theory/elbo.py: the linear-Gaussian model and the bounds on its evidence.

Exact first: the posterior satisfies Bayes' rule log p(x, z) - log p(x) = log p(z | x)
at every z (which also pins log p(x), since a wrong constant would break it), and the
sampler draws x from the stated marginal. Then the identities, within Monte Carlo error
(5 SE; P(|Z| > 5) = 5.7e-7 per check): ELBO + KL(q || posterior) = log p(x) for any
Gaussian q, with zero variance at q = posterior; the importance-weighted bound is
increasing in k and stays below log p(x).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import theory


def _floats(lo, hi):
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


@st.composite
def models(draw, data_dim=3, latent_dim=2):
    weight = draw(arrays(np.float64, (data_dim, latent_dim), elements=_floats(-2, 2)))
    bias = draw(arrays(np.float64, (data_dim,), elements=_floats(-2, 2)))
    return theory.LinearGaussianModel(weight, bias, draw(_floats(0.2, 2.0)))


@st.composite
def latent_gaussians(draw, latent_dim=2):
    mean = draw(arrays(np.float64, (latent_dim,), elements=_floats(-2, 2)))
    a = draw(arrays(np.float64, (latent_dim, latent_dim), elements=_floats(-1, 1)))
    return theory.Gaussian(mean, a @ a.T + draw(_floats(0.05, 1.0)) * np.eye(latent_dim))


observations = arrays(np.float64, (3,), elements=_floats(-4, 4))


# --------------------------------------------------------------------------------------
# The model: exact evidence and posterior.


@given(models(), observations, arrays(np.float64, (5, 2), elements=_floats(-3, 3)))
def test_posterior_satisfies_bayes_rule(model, x, z):
    # Three float64 log-densities of size <= ~1e3: 1e-9 relative covers their rounding.
    joint = np.asarray(model.log_joint(x, z))
    posterior = np.asarray(model.posterior(x).log_prob(z))
    np.testing.assert_allclose(joint - float(model.log_marginal(x)), posterior, rtol=1e-9, atol=1e-9)


@given(models(), arrays(np.float64, (4, 3), elements=_floats(-4, 4)), arrays(np.float64, (4, 2), elements=_floats(-3, 3)))
def test_log_joint_broadcasts_over_batches_of_x_and_z(model, xs, zs):
    batched = np.asarray(model.log_joint(xs, zs))
    assert batched.shape == (4,)
    np.testing.assert_allclose(batched, [float(model.log_joint(x, z)) for x, z in zip(xs, zs)], rtol=1e-12)


def test_sampler_draws_from_the_stated_marginal(key):
    # x ~ N(b, W W^T + sigma^2 I) and z ~ N(0, I): sample means and second moments per
    # coordinate against the exact ones, 5 standard errors.
    model = theory.LinearGaussianModel(jnp.array([[1.0, 0.5], [-0.5, 2.0], [0.0, 1.0]]), jnp.array([1.0, 0.0, -1.0]), 0.5)
    n = 20_000
    x, z = (np.asarray(a) for a in model.sample(key, n))
    assert x.shape == (n, 3) and z.shape == (n, 2)
    marginal = model.marginal()
    assert isinstance(marginal, theory.Gaussian)
    for samples, mean, cov in ((x, marginal.mean, marginal.cov), (z, np.zeros(2), np.eye(2))):
        mean, cov = np.asarray(mean), np.asarray(cov)
        second = cov + np.outer(mean, mean)
        for i in range(samples.shape[1]):
            for j in range(i, samples.shape[1]):
                products = samples[:, i] * samples[:, j]
                assert abs(products.mean() - second[i, j]) <= 5 * products.std(ddof=1) / math.sqrt(n)
        assert np.all(np.abs(samples.mean(axis=0) - mean) <= 5 * samples.std(axis=0, ddof=1) / math.sqrt(n))


# --------------------------------------------------------------------------------------
# ELBO + KL(q || posterior) = log p(x).


@settings(max_examples=8)
@given(models(), latent_gaussians(), observations, st.integers(0, 2**31 - 1))
def test_elbo_gap_is_the_kl_from_q_to_the_posterior(model, q, x, seed):
    gap = theory.elbo_gap(model, q, x, key=jax.random.key(seed), method=theory.MonteCarlo(4000))
    kl = theory.kl_gaussians(q, model.posterior(x)).value
    assert abs(gap.value - kl) <= 5 * gap.error
    bound = theory.elbo(model, q, x, key=jax.random.key(seed), method=theory.MonteCarlo(4000))
    assert bound.value + gap.value == pytest.approx(float(model.log_marginal(x)), rel=1e-12, abs=1e-9)


@settings(max_examples=6)
@given(models(), observations)
def test_elbo_is_exact_with_zero_variance_at_the_posterior(model, x):
    # q = p(z | x): log p(x, z) - log q(z) = log p(x) for every z, so every draw gives
    # log p(x) (up to rounding) and the standard error vanishes.
    posterior = model.posterior(x)
    bound = theory.elbo(model, posterior, x, key=jax.random.key(0), method=theory.MonteCarlo(64))
    log_evidence = float(model.log_marginal(x))
    assert bound.value == pytest.approx(log_evidence, rel=1e-9, abs=1e-9)
    assert bound.error <= 1e-9 * (1 + abs(log_evidence))
    iwae = theory.importance_weighted_bound(model, posterior, x, key=jax.random.key(0), k=4, method=theory.MonteCarlo(16))
    assert iwae.value == pytest.approx(log_evidence, rel=1e-9, abs=1e-9)


# --------------------------------------------------------------------------------------
# The importance-weighted bound.

_MODEL = theory.LinearGaussianModel(jnp.array([[1.0, 0.5], [-0.5, 2.0], [0.3, 1.0]]), jnp.array([1.0, 0.0, -1.0]), 0.6)
_X = jnp.array([1.5, -1.0, 0.5])
_Q = theory.Gaussian(jnp.array([0.2, -0.3]), jnp.array([[0.5, 0.1], [0.1, 0.4]]))  # a mediocre posterior guess


def test_importance_weighted_bound_increases_in_k_towards_log_evidence(key):
    # L_1 <= L_2 <= ... <= log p(x) (Burda et al. 2016, Thm. 1), checked on independent
    # estimates: each difference within 5 SE of its combined error, each L_k below
    # log p(x) + 5 SE. L_1 is the ELBO.
    log_evidence = float(_MODEL.log_marginal(_X))
    ks = (1, 8, 64)
    bounds = [
        theory.importance_weighted_bound(_MODEL, _Q, _X, key=k_key, k=k, method=theory.MonteCarlo(4000))
        for k, k_key in zip(ks, jax.random.split(key, len(ks)))
    ]
    for lower, upper in zip(bounds, bounds[1:]):
        assert upper.value >= lower.value - 5 * math.hypot(lower.error, upper.error)
    assert all(b.value <= log_evidence + 5 * b.error for b in bounds)
    assert bounds[-1].value > bounds[0].value + 5 * math.hypot(bounds[0].error, bounds[-1].error)
    elbo = theory.elbo(_MODEL, _Q, _X, key=key, method=theory.MonteCarlo(20_000))
    assert abs(bounds[0].value - elbo.value) <= 5 * math.hypot(bounds[0].error, elbo.error)
    assert bounds[0].method == "IWAE bound: k=1, n=4000 evaluations"


# --------------------------------------------------------------------------------------
# Bad input.

_KEY = jax.random.key(0)
_Q2 = theory.Gaussian(jnp.zeros(2), jnp.eye(2))


@pytest.mark.parametrize(
    "call, shown",
    [
        (lambda: theory.LinearGaussianModel(np.ones(3), np.zeros(3), 1.0), r"weight must have shape \(d, k\), got shape \(3,\)"),
        (lambda: theory.LinearGaussianModel(np.ones((3, 2)), np.zeros(2), 1.0), r"bias must have shape \(3,\) to match weight, got shape \(2,\)"),
        (lambda: theory.LinearGaussianModel(np.ones((3, 2)), np.zeros(3), [1.0, 1.0]), r"noise_std must have shape \(\), got shape \(2,\)"),
        (lambda: theory.LinearGaussianModel(np.ones((3, 2)), np.zeros(3), 0.0), r"noise_std must be finite and > 0, got 0\."),
        (lambda: theory.LinearGaussianModel(np.ones((3, 2)), np.zeros(3), np.inf), r"noise_std must be finite and > 0, got inf"),
        (lambda: theory.LinearGaussianModel(np.full((3, 2), np.nan), np.zeros(3), 1.0), r"weight must be finite, got \[\[nan nan\]"),
        (lambda: theory.LinearGaussianModel(np.ones((3, 2)), np.array([0.0, np.inf, 0.0]), 1.0), r"bias must be finite, got \[ 0\. inf  0\.\]"),
        (lambda: _MODEL.log_marginal(np.zeros(2)), r"x must have shape \(3,\), got shape \(2,\)"),
        (lambda: _MODEL.posterior(np.array([np.nan, 0.0, 0.0])), r"x must be finite, got \[nan  0\.  0\.\]"),
        (lambda: _MODEL.log_joint(np.zeros(2), np.zeros(2)), r"x must have last axis of size d=3, got shape \(2,\)"),
        (lambda: _MODEL.log_joint(np.zeros(3), np.zeros(3)), r"z must have last axis of size k=2, got shape \(3,\)"),
        (lambda: _MODEL.sample(_KEY, 0), r"n must be an integer >= 1, got 0"),
        (lambda: theory.elbo(_MODEL, theory.Gaussian(jnp.zeros(1), jnp.eye(1)), _X, key=_KEY), r"q must be a law on R\^2 \(the latent space\), got dimension 1"),
        (lambda: theory.elbo(_MODEL, _Q2, _X, key=_KEY, method=theory.MonteCarlo(1)), r"n must be an integer >= 2, got 1"),
        (lambda: theory.elbo(_MODEL, _Q2, np.zeros(4), key=_KEY), r"x must have shape \(3,\), got shape \(4,\)"),
        (lambda: theory.elbo(_MODEL, _Q2, np.full(3, np.inf), key=_KEY), r"x must be finite, got \[inf inf inf\]"),
        (lambda: theory.importance_weighted_bound(_MODEL, _Q2, _X, key=_KEY, k=0), r"k must be an integer >= 1, got 0"),
        (lambda: theory.importance_weighted_bound(_MODEL, _Q2, _X, key=_KEY, k=2, method=theory.MonteCarlo(1)), r"n must be an integer >= 2, got 1"),
        (lambda: theory.importance_weighted_bound(_MODEL, _Q2, np.zeros(2), key=_KEY, k=2), r"x must have shape \(3,\), got shape \(2,\)"),
        (lambda: theory.elbo_gap(_MODEL, _Q2, np.zeros(2), key=_KEY), r"x must have shape \(3,\), got shape \(2,\)"),
        (lambda: theory.elbo_gap(_MODEL, theory.Gaussian(jnp.zeros(3), jnp.eye(3)), _X, key=_KEY), r"q must be a law on R\^2"),
    ],
)
def test_elbo_functions_reject_bad_input(call, shown):
    with pytest.raises(ValueError, match=shown):
        call()


@pytest.mark.parametrize(
    "call, shown",
    [
        (lambda: theory.elbo(_MODEL, theory.gaussian_grid(2), _X, key=_KEY), r"q must be a Gaussian, got MixtureOfGaussians"),
        (lambda: theory.elbo(_MODEL, _Q2, _X, key=None), r"key must be a JAX PRNG key, got None"),
        (lambda: theory.elbo(_MODEL, _Q2, _X, key=_KEY, method=theory.Quadrature()), r"method must be a MonteCarlo, got Quadrature"),
        (lambda: theory.importance_weighted_bound(_MODEL, _Q2, _X, key=None, k=2), r"key must be a JAX PRNG key, got None"),
        (lambda: theory.importance_weighted_bound(_MODEL, _Q2, _X, key=_KEY, k=2.0), r"k must be an integer >= 1, got 2\.0"),
        (lambda: _MODEL.sample(_KEY, 2.5), r"n must be an integer >= 1, got 2\.5"),
    ],
)
def test_elbo_functions_reject_arguments_of_the_wrong_kind(call, shown):
    with pytest.raises(TypeError, match=shown):
        call()
