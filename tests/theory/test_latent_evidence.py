"""Exact evidence of latent models: closed forms, a narrow and a bimodal posterior, identities."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate

from theory.distributions import Gaussian
from theory.divergences import kl_gaussians
from theory.elbo import LinearGaussianModel
from theory.integrate import MonteCarlo, Quadrature
from theory.latent_evidence import (
    DEFAULT_QUADRATURE,
    N_MODES,
    FactorisedGaussian,
    FullCovarianceGaussian,
    LatentModel,
    elbo_of,
    iwae_bound,
    kl_to_posterior,
    log_evidence,
    log_evidence_values,
    optimal_gaussian_posterior,
    posterior_on_grid,
)

EPS = np.finfo(np.float64).eps
FULL_WEIGHT = np.array([[1.0, 0.3], [0.5, -1.2], [0.2, 0.7]])
BIAS = np.array([0.1, -0.2, 0.3])


def _fine_nodes(k, method=DEFAULT_QUADRATURE):
    return (2 * (N_MODES + 1) * method.panels * method.order) ** k


def _rounding(k, value):
    # Summing N positive terms in float64 loses at most N * eps relative (in log units);
    # the closed form itself is exact to a few eps.
    return _fine_nodes(k) * EPS + 10 * EPS * (1 + abs(value))


class LinearLikelihood(eqx.Module):
    """log N(x; W z + b, sigma^2 I) as a pytree, so that one compilation serves every
    (W, b, sigma) of the same shapes (a fresh closure per test would recompile)."""

    model: LinearGaussianModel

    def log_likelihood(self, x, z):
        k = self.model.latent_dim
        return self.model.log_joint(x, z) - (-0.5 * jnp.sum(z**2) - 0.5 * k * math.log(2 * math.pi))


def linear_gaussian(k, sigma):
    """The pPCA model of theory.elbo and the same model as a LatentModel."""
    model = LinearGaussianModel(jnp.asarray(FULL_WEIGHT[:, :k]), jnp.asarray(BIAS), jnp.asarray(sigma, jnp.float64))
    return model, LatentModel(LinearLikelihood(model).log_likelihood, k)


@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("sigma", [0.5, 1e-3])
def test_evidence_and_posterior_equal_linear_gaussian_closed_form(k, sigma, key):
    """log p(x) and the grid posterior's moments equal the closed forms; sigma = 1e-3 gives a
    posterior with sd ~ 1e-3, 20 times narrower than the search grid's spacing."""
    exact_model, model = linear_gaussian(k, sigma)
    x = exact_model.sample(key, 1)[0][0]
    exact = float(exact_model.log_marginal(x))
    estimate = log_evidence(model, x)
    assert abs(estimate.value - exact) <= estimate.error + _rounding(k, exact)
    # Resolved, not merely honest: the refinement difference is tiny.
    assert estimate.error < 1e-6
    posterior = posterior_on_grid(model, x)
    exact_posterior = exact_model.posterior(x)
    sd = np.sqrt(np.diag(np.asarray(exact_posterior.cov)))
    # Moments of a normalised quadrature: relative error of the same order as the
    # evidence's (error in log units = relative error of the integral), times the
    # moment's scale (sd for the mean, variance for the covariance).
    tol = 10 * (estimate.error + _rounding(k, exact))
    np.testing.assert_allclose(posterior.mean(), exact_posterior.mean, rtol=0, atol=tol * sd.max() + 1e-12)
    np.testing.assert_allclose(posterior.cov(), exact_posterior.cov, rtol=0, atol=tol * sd.max() ** 2 + 1e-14)
    assert posterior.log_evidence == estimate


@pytest.mark.parametrize("k", [1, 2])
def test_error_estimate_covers_the_actual_error_of_a_coarse_rule(k, key):
    """With one 2-node panel per box the rule is inaccurate; its reported error must still
    cover the actual error (the difference of refinements bounds the coarse rule's error)."""
    exact_model, model = linear_gaussian(k, 0.05)
    x = exact_model.sample(key, 1)[0][0]
    exact = float(exact_model.log_marginal(x))
    estimate = log_evidence(model, x, method=Quadrature(panels=1, order=2, tail=6.0))
    actual = abs(estimate.value - exact)
    assert actual > 1e-8  # the coarse rule is visibly off ...
    assert actual <= estimate.error  # ... and says so


def test_bimodal_narrow_posterior_matches_adaptive_reference():
    """x | z ~ N(z^2, s^2), z ~ N(0, 1), x = 1: two posterior modes at z = +-1, each of sd
    ~ s / 2 = 0.005. Reference: scipy's adaptive QUADPACK with the modes as breakpoints."""
    s = 0.01

    def log_likelihood(x, z):
        return -0.5 * (x[0] - z[0] ** 2) ** 2 / s**2 - math.log(s) - 0.5 * math.log(2 * math.pi)

    model = LatentModel(log_likelihood, 1)
    x = jnp.array([1.0])

    def integrand(z):
        return math.exp(float(log_likelihood(np.array([1.0]), np.array([z])))) * math.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)

    # Outside [-3, 3] the likelihood is below exp(-0.5 (8 / 0.01)^2): nothing is lost.
    reference, reference_error = scipy.integrate.quad(integrand, -3, 3, points=[-1.0, 1.0], epsabs=0, epsrel=1e-12, limit=500)
    estimate = log_evidence(model, x)
    assert abs(estimate.value - math.log(reference)) <= estimate.error + reference_error / reference + _rounding(1, estimate.value)
    assert estimate.error < 1e-8
    # Both modes carry half the mass by symmetry.
    posterior = posterior_on_grid(model, x)
    mass_right = float(posterior.expectation(lambda z: (z[0] > 0).astype(jnp.float64)))
    assert abs(mass_right - 0.5) < 10 * (estimate.error + _rounding(1, 0.0))


def test_elbo_plus_kl_is_log_evidence_and_kl_matches_closed_form(key):
    """For any q: KL(q || p(z | x)) = log p(x) - ELBO(q), and for the linear-Gaussian model
    the posterior is Gaussian, so the KL has a closed form."""
    exact_model, model = linear_gaussian(2, 0.3)
    x = exact_model.sample(key, 1)[0][0]
    posterior = exact_model.posterior(x)
    q = Gaussian(posterior.mean + jnp.array([0.2, -0.1]), jnp.array([[0.05, 0.01], [0.01, 0.02]]))
    kl = kl_to_posterior(q, model, x)
    exact_kl = kl_gaussians(q, posterior).value
    assert abs(kl.value - exact_kl) <= kl.error + _rounding(2, exact_kl)
    assert abs(kl_to_posterior(posterior, model, x).value) <= kl.error + _rounding(2, 0.0)
    # The Monte Carlo ELBO agrees with the quadrature ELBO within its standard error
    # (4 standard errors: two-sided p < 1e-4).
    by_quadrature = elbo_of(q, model, x)
    by_monte_carlo = elbo_of(q, model, x, key=jax.random.fold_in(key, 1), method=MonteCarlo(20_000))
    assert abs(by_quadrature.value - by_monte_carlo.value) <= 4 * by_monte_carlo.error + by_quadrature.error


def test_iwae_is_monotone_in_k_and_below_the_evidence(key):
    """L_1 <= L_5 <= L_50 <= log p(x) (Burda et al. 2016, Thm 1), each within 3 standard
    errors of the differences (one-sided p ~ 1e-3 each)."""
    exact_model, model = linear_gaussian(1, 0.3)
    x = exact_model.sample(key, 1)[0][0]
    posterior = exact_model.posterior(x)
    q = Gaussian(posterior.mean + 0.3, 2.0 * posterior.cov)
    evidence = log_evidence(model, x)
    bounds = [iwae_bound(q, model, x, k=k, key=jax.random.fold_in(key, k), n_repeats=2000) for k in (1, 5, 50)]
    for lower, upper in zip(bounds, bounds[1:]):
        assert lower.value <= upper.value + 3 * math.hypot(lower.error, upper.error)
    for bound in bounds:
        assert bound.value <= evidence.value + 3 * bound.error + evidence.error
    # K = 1 is the ELBO: its mean equals the exact ELBO within 4 standard errors.
    exact_elbo = elbo_of(q, model, x)
    assert abs(bounds[0].value - exact_elbo.value) <= 4 * bounds[0].error + exact_elbo.error
    # and the bound is visibly tighter at K = 50 than at K = 1 (the gap is not noise).
    assert bounds[2].value - bounds[0].value > 4 * math.hypot(bounds[0].error, bounds[2].error)


def test_optimal_gaussian_is_the_exact_posterior_or_its_mean_field_optimum(key):
    """Linear-Gaussian posterior N(mu, Lambda^{-1}): the full-covariance optimum is the
    posterior itself; the mean-field optimum has mean mu and variances 1 / Lambda_ii
    (Bishop 2006, eq. (10.12)-(10.13)). The Gauss-Hermite objective is exact for this
    quadratic log-joint, so the only error is L-BFGS's, converged here to ~1e-9 relative:
    we allow 1e-6 of each quantity's scale."""
    exact_model, model = linear_gaussian(2, 0.4)
    x = exact_model.sample(key, 1)[0][0]
    posterior = exact_model.posterior(x)
    sd = float(np.sqrt(np.max(np.diag(np.asarray(posterior.cov)))))
    full = optimal_gaussian_posterior(model, x, family=FullCovarianceGaussian())
    np.testing.assert_allclose(full.mean, posterior.mean, atol=1e-6 * sd)
    np.testing.assert_allclose(full.cov, posterior.cov, atol=1e-6 * sd**2)
    factorised = optimal_gaussian_posterior(model, x, family=FactorisedGaussian())
    precision = np.linalg.inv(np.asarray(posterior.cov))
    np.testing.assert_allclose(factorised.mean, posterior.mean, atol=1e-6 * sd)
    np.testing.assert_allclose(np.diag(factorised.cov), 1.0 / np.diag(precision), rtol=1e-6)
    # Its KL is that of the closed-form mean-field optimum, and positive.
    kl = kl_to_posterior(factorised, model, x)
    assert kl.value > 10 * kl.error
    assert abs(kl.value - kl_gaussians(factorised, posterior).value) <= kl.error + 1e-9


def test_batch_evidence_equals_pointwise(key):
    exact_model, model = linear_gaussian(1, 0.2)
    data = exact_model.sample(key, 3)[0]
    values, errors = log_evidence_values(model, data)
    for x, value in zip(data, values):
        assert float(value) == pytest.approx(log_evidence(model, x).value, abs=1e-12)
    np.testing.assert_allclose(values, exact_model.marginal().log_prob(data), atol=float(errors.max()) + _rounding(1, 10.0))


def test_bad_input_is_rejected_before_compute():
    def log_likelihood(x, z):
        return -jnp.sum((x - z[:1]) ** 2)

    with pytest.raises(ValueError, match="latent dimension <= 2, got latent dimension 3"):
        log_evidence(LatentModel(log_likelihood, 3), jnp.zeros(1))
    with pytest.raises(ValueError, match="latent dimension"):
        optimal_gaussian_posterior(LatentModel(log_likelihood, 3), jnp.zeros(1))
    with pytest.raises(TypeError, match="prior must be a theory.Gaussian"):
        LatentModel(log_likelihood, "normal")
    with pytest.raises(ValueError, match="prior \\(latent dimension\\) must be an integer >= 1, got 0"):
        LatentModel(log_likelihood, 0)
    with pytest.raises(TypeError, match="log_likelihood must be a function"):
        LatentModel(3.0, 1)
    model = LatentModel(log_likelihood, 1)
    with pytest.raises(ValueError, match="method must be Quadrature"):
        log_evidence(model, jnp.zeros(1), method=MonteCarlo(100))
    with pytest.raises(ValueError, match="x must be one observation of shape \\(d,\\)"):
        log_evidence(model, jnp.zeros((2, 1)))
    with pytest.raises(ValueError, match="x must be finite"):
        log_evidence(model, jnp.array([jnp.nan]))
    with pytest.raises(ValueError, match="q must be a law on R\\^1"):
        elbo_of(Gaussian(jnp.zeros(2), jnp.eye(2)), model, jnp.zeros(1))
    with pytest.raises(TypeError, match="key must be a JAX PRNG key"):
        elbo_of(Gaussian(jnp.zeros(1), jnp.eye(1)), model, jnp.zeros(1), method=MonteCarlo(10))
    with pytest.raises(ValueError, match="k must be an integer >= 1, got 0"):
        iwae_bound(Gaussian(jnp.zeros(1), jnp.eye(1)), model, jnp.zeros(1), k=0, key=jax.random.key(0))
