"""VAEs against exact evidence: ELBO + KL = log p(x), IWAE ordering, the pPCA stationary point."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import theory
from theory.distributions import Gaussian, to_float64
from theory.divergences import kl_gaussians
from theory.integrate import Quadrature
from theory.latent_evidence import FullCovarianceGaussian, iwae_bound, kl_to_posterior, log_evidence
from models.vae import (
    ELBOObjective,
    FixedNoise,
    IWAEObjective,
    LearnedNoise,
    VAESpec,
    ppca_linear_vae,
    train_vae,
)

SPEC = VAESpec(latent_dim=1, width=16, depth=2, noise=LearnedNoise(0.5))


@pytest.fixture(scope="module")
def grid_data():
    return theory.gaussian_grid(4).sample(jax.random.key(10), 1000)


@pytest.fixture(scope="module")
def trained(grid_data):
    model, losses = train_vae(SPEC.build(jax.random.key(1)), grid_data, key=jax.random.key(2), n_steps=300)
    return model, losses


def _objective_estimate(objective, model, x, key, n):
    """Mean and standard error of -objective.loss over n independent keys (float64 model)."""
    with jax.enable_x64(True):
        model64 = to_float64(model)
        values = -jax.vmap(lambda k: objective.loss(model64, jnp.asarray(x, jnp.float64), k))(jax.random.split(key, n))
        values = np.asarray(values)
    return values.mean(), values.std(ddof=1) / math.sqrt(n)


def test_training_is_float32_and_lowers_the_loss(trained):
    model, losses = trained
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array)))
    assert np.all(np.isfinite(losses))
    # Mean of the last 50 minibatch losses below the first 50 by more than their spread.
    assert losses[-50:].mean() < losses[:50].mean() - 3 * losses[-50:].std()


def test_elbo_plus_kl_is_exact_evidence_for_a_trained_vae(trained, grid_data, key):
    """The training objective's ELBO (reparametrised, analytic KL to the prior) plus the
    exact KL(q || p(z | x)) equals the exact log p(x), within 4 standard errors of the
    Monte Carlo ELBO plus the quadrature errors."""
    model, _ = trained
    latent_model = model.latent_model()
    for i, x in enumerate(grid_data[:2]):
        q = model.variational_posterior(x)
        elbo, se = _objective_estimate(ELBOObjective(), model, x, jax.random.fold_in(key, i), 4000)
        kl = kl_to_posterior(q, latent_model, x)
        evidence = log_evidence(latent_model, x)
        assert kl.value > -kl.error  # KL >= 0
        assert abs(elbo + kl.value - evidence.value) <= 4 * se + kl.error + evidence.error


def test_iwae_objective_is_monotone_in_k_and_below_exact_evidence(trained, grid_data, key):
    """-IWAEObjective(k).loss estimates L_k: L_1 <= L_4 <= L_32 <= log p(x) within 3
    standard errors; it agrees with theory.iwae_bound within 4 joint standard errors."""
    model, _ = trained
    latent_model = model.latent_model()
    x = grid_data[0]
    evidence = log_evidence(latent_model, x)
    bounds = [_objective_estimate(IWAEObjective(k=k), model, x, jax.random.fold_in(key, k), 2000) for k in (1, 4, 32)]
    for (low, low_se), (high, high_se) in zip(bounds, bounds[1:]):
        assert low <= high + 3 * math.hypot(low_se, high_se)
    for value, se in bounds:
        assert value <= evidence.value + 3 * se + evidence.error
    reference = iwae_bound(model.variational_posterior(x), latent_model, x, k=4, key=jax.random.fold_in(key, 99), n_repeats=2000)
    assert abs(bounds[1][0] - reference.value) <= 4 * math.hypot(bounds[1][1], reference.error)


def test_beta_vae_adds_beta_times_the_closed_form_kl_to_the_prior(trained, grid_data, key):
    """loss_beta - loss_1 = (beta - 1) KL(q(z | x) || N(0, I)), same key (same z draws)."""
    model, _ = trained
    x = grid_data[3]
    difference = ELBOObjective(beta=3.0).loss(model, x, key) - ELBOObjective(beta=1.0).loss(model, x, key)
    q = model.variational_posterior(x)
    kl = kl_gaussians(q, Gaussian(jnp.zeros(1), jnp.eye(1))).value
    # float32 evaluation: relative rounding ~ 1e-6 of the loss terms (|loss| < 100).
    assert float(difference) == pytest.approx(2.0 * kl, abs=1e-4)


def test_full_covariance_encoder_is_lower_triangular_with_positive_diagonal(grid_data):
    spec = VAESpec(latent_dim=2, width=8, depth=1, posterior_family=FullCovarianceGaussian())
    model = spec.build(jax.random.key(3))
    _, chol = model.encoder(grid_data[0])
    assert chol.shape == (2, 2) and float(chol[0, 1]) == 0.0 and bool(jnp.all(jnp.diag(chol) > 0))
    assert float(chol[1, 0]) != 0.0  # a full covariance, not a diagonal one


@pytest.mark.slow
def test_full_covariance_vae_in_two_latent_dimensions(grid_data, key):
    spec = VAESpec(latent_dim=2, width=8, depth=1, posterior_family=FullCovarianceGaussian(), noise=LearnedNoise(0.5))
    model, losses = train_vae(spec.build(jax.random.key(3)), grid_data, key=jax.random.key(4), n_steps=150)
    assert np.all(np.isfinite(losses))
    _, chol = model.encoder(grid_data[0])
    assert chol.shape == (2, 2) and float(chol[0, 1]) == 0.0
    latent_model = model.latent_model()
    x = grid_data[0]
    method = Quadrature(panels=4, order=8, tail=10.0)
    elbo, se = _objective_estimate(ELBOObjective(), model, x, key, 4000)
    kl = kl_to_posterior(model.variational_posterior(x), latent_model, x, method=method)
    evidence = log_evidence(latent_model, x, method=method)
    assert abs(elbo + kl.value - evidence.value) <= 4 * se + kl.error + evidence.error


def test_seeds_train_as_one_vmapped_program(grid_data):
    keys = jax.random.split(jax.random.key(5), 2)
    models = eqx.filter_vmap(SPEC.build)(keys)
    trained, losses = eqx.filter_vmap(lambda m, k: train_vae(m, grid_data, key=k, n_steps=20))(models, keys)
    assert losses.shape == (2, 20)
    single, single_losses = train_vae(SPEC.build(keys[1]), grid_data, key=keys[1], n_steps=20)
    # Same program per replica: float32 results agree to rounding (vmap may reorder sums).
    np.testing.assert_allclose(losses[1], single_losses, rtol=1e-4)


def _per_point_elbo_gradients(model, data, key):
    """Gradients of -loss (one z draw per point) w.r.t. all parameters, one row per point."""
    model64 = to_float64(model)
    dynamic, static = eqx.partition(model64, eqx.is_inexact_array)

    def elbo(dyn, x, k):
        return -ELBOObjective().loss(eqx.combine(dyn, static), x, k)

    grads = jax.vmap(jax.grad(elbo), in_axes=(None, 0, 0))(dynamic, data, jax.random.split(key, data.shape[0]))
    return np.concatenate([np.asarray(g).reshape(data.shape[0], -1) for g in jax.tree.leaves(grads)], axis=1)


def _max_z_score(gradients):
    """Largest |mean| / standard error over parameters (components with zero spread and
    zero mean count as 0)."""
    mean = gradients.mean(axis=0)
    se = gradients.std(axis=0, ddof=1) / math.sqrt(gradients.shape[0])
    z = np.where(se > 0, np.abs(mean) / np.where(se > 0, se, 1.0), np.where(np.abs(mean) > 0, np.inf, 0.0))
    return z.max()


@pytest.mark.parametrize(
    "spec",
    [
        VAESpec(latent_dim=1, depth=0, noise=LearnedNoise()),  # sigma^2 = lambda_2 (ML)
        VAESpec(latent_dim=2, depth=0, noise=FixedNoise(1.0)),  # lambda_2 < 1 < lambda_1: collapse
    ],
)
def test_ppca_optimum_is_a_stationary_point_of_the_linear_vae_elbo(spec, key):
    """At W = U (Lambda - sigma^2 I)_+^{1/2}, b = mean, encoder = exact posterior, the data
    ELBO's gradient is 0 in expectation over z (KL = 0 there, so it is the gradient of
    log p, zero at the pPCA ML point; Tipping & Bishop 1999, eq. (7)). The Monte Carlo
    gradient (one z per point) is a mean of n i.i.d. terms: every component lies within 5
    standard errors of 0 (two-sided p = 6e-7 per component; < 1e-5 over <= 15 components).
    The same test rejects a point 20% off in W (power check)."""
    cov = jnp.array([[3.0, 1.0], [1.0, 0.6]])  # eigenvalues ~3.35 and ~0.25
    data = Gaussian(jnp.array([0.5, -1.0]), cov).sample(jax.random.key(7), 4000)
    model = ppca_linear_vae(spec, data)
    weight = np.asarray(model.decoder_net.layers[0].weight)
    if spec.latent_dim == 2:
        assert np.allclose(weight[:, 1], 0.0)  # the direction with lambda < sigma^2 collapsed
    with jax.enable_x64(True):
        data64 = jnp.asarray(data, jnp.float64)
        grads = _per_point_elbo_gradients(model, data64, key)
        assert _max_z_score(grads) < 5.0
        off = eqx.tree_at(lambda m: m.decoder_net.layers[0].weight, model, model.decoder_net.layers[0].weight * 1.2)
        assert _max_z_score(_per_point_elbo_gradients(off, data64, key)) > 5.0


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="latent_dim must be an integer >= 1, got 0"):
        VAESpec(latent_dim=0)
    with pytest.raises(ValueError, match="std must be a finite number > 0, got -1.0"):
        FixedNoise(-1.0)
    with pytest.raises(ValueError, match="init_std must be a finite number > 0, got 0.0"):
        LearnedNoise(0.0)
    with pytest.raises(ValueError, match="k must be an integer >= 1, got 0"):
        IWAEObjective(k=0)
    with pytest.raises(ValueError, match="beta must be a finite number > 0"):
        ELBOObjective(beta=-1.0)
    with pytest.raises(TypeError, match="posterior_family must be"):
        VAESpec(posterior_family="full")
    model = VAESpec(latent_dim=3, width=4, depth=1).build(jax.random.key(0))
    with pytest.raises(ValueError, match="latent dimension <= 2, got latent dimension 3"):
        log_evidence(model.latent_model(), jnp.zeros(2))
    with pytest.raises(ValueError, match="spec must be a linear VAESpec"):
        ppca_linear_vae(SPEC, jnp.zeros((10, 2)))
