"""VQ-VAE: exact mixture likelihood, straight-through gradients, EMA codebook, usage."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import theory
from models.vae import FixedNoise, LearnedNoise
from models.vqvae import EMACodebook, VQVAESpec, codebook_usage, monte_carlo_likelihood, train_vqvae, vqvae_loss

def _spec(ema=None):
    return VQVAESpec(n_codes=6, width=16, depth=2, noise=LearnedNoise(0.5), ema=ema)


SPEC = _spec()


@pytest.fixture(scope="module")
def grid_data():
    return theory.gaussian_grid(4).sample(jax.random.key(10), 1000)


@pytest.fixture(scope="module", params=[None, EMACodebook(0.9)], ids=["codebook-loss", "ema"])
def trained(request, grid_data):
    spec = _spec(request.param)
    return train_vqvae(spec.build(jax.random.key(1)), grid_data, key=jax.random.key(2), n_steps=200)


def test_training_lowers_the_loss(trained):
    model, losses = trained
    assert np.all(np.isfinite(losses))
    assert losses[-30:].mean() < losses[:30].mean() - 3 * losses[-30:].std()


def test_exact_likelihood_is_the_mixture_and_matches_monte_carlo(trained, grid_data, key):
    """log p(x) = logsumexp_c [log pi_c + log N(x; f(e_c), sigma^2 I)] equals the
    MixtureOfGaussians law's log-density (float32 rounding, 1e-5), and exp of it equals
    the Monte Carlo mean over codes within 4 standard errors (two-sided p < 1e-4)."""
    model, _ = trained
    np.testing.assert_allclose(model.log_prob(grid_data[:50]), model.marginal().log_prob(grid_data[:50]), atol=1e-5)
    for i, x in enumerate(grid_data[:3]):
        estimate = monte_carlo_likelihood(model, x, key=jax.random.fold_in(key, i), n=20_000)
        assert abs(float(jnp.exp(model.log_prob(x))) - estimate.value) <= 4 * estimate.error


def test_codebook_usage(trained, grid_data):
    model, _ = trained
    usage = codebook_usage(model, grid_data)
    assert float(usage.frequencies.sum()) == pytest.approx(1.0)
    assert 1.0 <= float(usage.perplexity) <= model.spec.n_codes + 1e-9
    assert int(usage.dead_codes) == int(jnp.sum(usage.frequencies == 0))


def test_ema_codebook_is_the_smoothed_ratio_of_its_statistics(grid_data):
    ema = EMACodebook(0.9)
    spec = _spec(ema)
    model, _ = train_vqvae(spec.build(jax.random.key(1)), grid_data, key=jax.random.key(2), n_steps=200)
    counts, total = model.ema_counts, model.ema_counts.sum()
    smoothed = (counts + ema.epsilon) / (total + spec.n_codes * ema.epsilon) * total
    np.testing.assert_allclose(model.codebook, model.ema_sums / smoothed[:, None], rtol=1e-5)


def test_straight_through_gradients(grid_data):
    """The reconstruction reaches the encoder through z_q = z_e + sg(e - z_e); the codebook
    gets gradient only from the codebook loss, so none under EMA."""
    x = grid_data[:64]
    for ema, codebook_moves in ((None, True), (EMACodebook(), False)):
        spec = _spec(ema)
        model = spec.build(jax.random.key(0))
        grads = eqx.filter_grad(lambda m: vqvae_loss(m, x)[0])(model)
        assert float(jnp.abs(grads.encoder_net.layers[0].weight).max()) > 0
        assert (float(jnp.abs(grads.codebook).max()) > 0) == codebook_moves
        assert float(jnp.abs(grads.prior_logits).max()) > 0


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="n_codes \\(C\\) must be an integer >= 1, got 0"):
        VQVAESpec(n_codes=0)
    with pytest.raises(ValueError, match="std must be a finite number > 0, got -0.1"):
        VQVAESpec(noise=FixedNoise(-0.1))
    with pytest.raises(ValueError, match="commitment must be a finite number >= 0, got -1.0"):
        VQVAESpec(commitment=-1.0)
    with pytest.raises(ValueError, match="decay must be a finite number in \\[0, 1\\), got 1.0"):
        EMACodebook(decay=1.0)
    model = SPEC.build(jax.random.key(0))
    with pytest.raises(TypeError, match="key must be a JAX PRNG key"):
        monte_carlo_likelihood(model, jnp.zeros(2), key=None)
