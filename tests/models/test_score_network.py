"""Tests for models/score_network.py: the network's interface, the denoising
score-matching identity (Vincent 2011), and training.

Statistical assertions state their false-failure rate and derive their tolerance.
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import theory
from models.score_network import (
    PARAM_DTYPE,
    DSMBatches,
    DSMTraining,
    NoiseConditionalMLP,
    ScoreMLPSpec,
    dsm_loss,
    dsm_loss_per_sample,
    score_at_level,
    train_dsm,
    train_dsm_replicas,
)
from models.training import AdamSpec, FiniteSample
from theory.langevin import ConvolvedTarget


def test_network_maps_one_point_and_level_to_a_float32_score(key):
    model = ScoreMLPSpec(width=16, hidden_layers=2).build(key, 3)
    assert isinstance(model, NoiseConditionalMLP)
    out = model(jnp.ones(3, jnp.float64), jnp.asarray(0.5))
    assert out.shape == (3,) and out.dtype == PARAM_DTYPE
    assert all(leaf.dtype == PARAM_DTYPE for leaf in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array)))
    batch = jax.vmap(model, in_axes=(0, None))(jnp.ones((5, 3)), 0.5)
    np.testing.assert_allclose(batch[0], out, rtol=1e-6)
    np.testing.assert_allclose(score_at_level(model, 0.5)(jnp.ones((5, 3))), batch, rtol=1e-6)
    # Every linear layer owns its weights (no module reused between layers).
    ids = {id(layer.weight) for layer in model.layers}
    assert len(ids) == len(model.layers) == 3


def test_network_output_scales_as_one_over_sigma_at_fixed_features(key):
    # s(x, sigma) = MLP(c_in(sigma) x, log sigma) / sigma: at x = 0 the input is (0, log sigma)
    # and sigma * s(0, sigma) is the MLP of that input alone.
    model = ScoreMLPSpec(width=8, hidden_layers=1).build(key, 2)
    for sigma in (0.3, 2.0):
        mlp = model.layers[1](jax.nn.softplus(model.layers[0](jnp.asarray([0.0, 0.0, math.log(sigma)], PARAM_DTYPE))))
        np.testing.assert_allclose(sigma * model(jnp.zeros(2), sigma), mlp, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"width": 0}, "width must be an integer >= 1, got 0"), ({"hidden_layers": 0}, "hidden_layers must be an integer >= 1"),
     ({"data_scale": -1.0}, "data_scale must be a finite number > 0")],
)
def test_spec_rejects_bad_architecture(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ScoreMLPSpec(**kwargs)


def test_spec_rejects_a_wrong_kind_with_a_type_error():
    with pytest.raises(TypeError, match="width must be an integer >= 1, got 2.0"):
        ScoreMLPSpec(width=2.0)


# --------------------------------------------------------------------------------------
# Denoising score matching = explicit score matching + a constant (Vincent 2011).

DSM_SAMPLES = 400_000
# Each comparison below is a difference of two independent Monte Carlo means, normal to
# an excellent approximation at these sizes; |D| <= 4.9 SE fails a correct implementation
# with probability 1e-6 per comparison, 4e-6 for the four.
DSM_Z = 4.9


@pytest.mark.parametrize("sigma", [0.5, 2.0])
def test_dsm_loss_is_explicit_score_matching_plus_a_constant_on_a_gaussian(sigma, key):
    # Target N(m, S); at level sigma the perturbed law is q_sigma = N(m, S + sigma^2 I).
    # Vincent (2011), eq. (11): for every theta,
    #   E_{x, z} 1/2 || s(x + sigma z) + z / sigma ||^2
    #     = 1/2 E_{q_sigma} || s - grad log q_sigma ||^2 + C_sigma,
    #   C_sigma = 1/2 (E || z / sigma ||^2 - E_{q_sigma} || grad log q_sigma ||^2)
    #           = 1/2 (d / sigma^2 - tr((S + sigma^2 I)^{-1})).
    # The study's loss carries the weight lambda = sigma^2, so DSM / sigma^2 is the left side.
    mean = jnp.asarray([1.0, -2.0])
    cov = jnp.asarray([[2.0, 0.6], [0.6, 0.5]])
    target = theory.Gaussian(mean, cov)
    d = 2
    constant = 0.5 * (d / sigma**2 - float(np.trace(np.linalg.inv(np.asarray(cov) + sigma**2 * np.eye(d)))))
    key_data, key_noise, key_fisher, key_models = jax.random.split(key, 4)
    clean = target.sample(key_data, DSM_SAMPLES)
    noise = jax.random.normal(key_noise, clean.shape)
    levels = jnp.full((DSM_SAMPLES,), sigma)
    perturbed_law = ConvolvedTarget().law(theory.mixture([target], [1.0]), sigma)
    # Two different networks (theta): the identity holds for each with the SAME constant.
    for model_key in jax.random.split(key_models, 2):
        model = ScoreMLPSpec(width=32, hidden_layers=2, data_scale=1.5).build(model_key, d)
        per_sample = np.asarray(dsm_loss_per_sample(model, clean, levels, noise), np.float64) / sigma**2
        dsm_mean = per_sample.mean()
        dsm_error = per_sample.std(ddof=1) / math.sqrt(DSM_SAMPLES)
        fisher = theory.fisher_divergence(perturbed_law, score_at_level(model, sigma), key=key_fisher, method=theory.MonteCarlo(DSM_SAMPLES))
        difference = dsm_mean - 0.5 * fisher.value - constant
        error = math.sqrt(dsm_error**2 + (0.5 * fisher.error) ** 2)
        assert abs(difference) <= DSM_Z * error, (sigma, dsm_mean, fisher, constant, error)
        # Not a vacuous check: the explicit term itself is many standard errors from 0,
        # so dropping it, or doubling it, would fail.
        assert 0.5 * fisher.value > 20 * error


def test_dsm_loss_is_the_mean_of_the_per_sample_losses(key):
    model = ScoreMLPSpec(width=8, hidden_layers=1).build(key, 2)
    clean = jnp.ones((4, 2))
    sigma = jnp.asarray([0.5, 1.0, 2.0, 4.0])
    noise = jnp.asarray([[1.0, 0.0], [0.0, -1.0], [0.5, 0.5], [-2.0, 1.0]])
    per_sample = dsm_loss_per_sample(model, clean, sigma, noise)
    # Direct evaluation of 1/2 || sigma s(x + sigma z, sigma) + z ||^2 for one example.
    x1 = clean[1] + sigma[1] * noise[1]
    by_hand = 0.5 * jnp.sum((sigma[1] * model(x1, sigma[1]) + noise[1]) ** 2)
    assert per_sample[1] == pytest.approx(float(by_hand), rel=1e-6)
    assert dsm_loss(model, clean, sigma, noise) == pytest.approx(float(per_sample.mean()), rel=1e-6)
    with pytest.raises(ValueError, match="clean and noise must have shape"):
        dsm_loss_per_sample(model, clean, sigma[:3], noise)


# --------------------------------------------------------------------------------------
# Training.


def test_training_reduces_the_fisher_divergence_at_every_level(key):
    target = theory.mixture([theory.Gaussian(jnp.asarray([2.0, -1.0]), jnp.asarray([[1.0, 0.3], [0.3, 0.6]]))], [1.0])
    family = ConvolvedTarget()
    sigmas = np.asarray([2.0, 0.7])
    key_init, key_train, key_fisher = jax.random.split(key, 3)
    model = ScoreMLPSpec(width=32, hidden_layers=2, data_scale=1.5).build(key_init, 2)
    training = DSMTraining(optimiser=AdamSpec(3e-3), steps=1500, batch_size=128, record_every=500)
    result = train_dsm(model, eqx.Partial(family.sample_base, target), sigmas, key=key_train, training=training)
    assert result.steps.tolist() == [500, 1000, 1500]
    assert np.all(np.isfinite(result.losses)) and int(result.diverged_at) == -1
    assert result.ema_model is None
    assert all(leaf.dtype == PARAM_DTYPE for leaf in jax.tree.leaves(eqx.filter(result.model, eqx.is_inexact_array)))
    for sigma in sigmas:
        law = family.law(target, sigma)
        before = theory.fisher_divergence(law, score_at_level(model, sigma), key=key_fisher, method=theory.MonteCarlo(20_000))
        after = theory.fisher_divergence(law, score_at_level(result.model, sigma), key=key_fisher, method=theory.MonteCarlo(20_000))
        # A tenfold reduction, with the estimate's upper 1 - 1e-5 bound (4.4 SE) under it.
        assert after.value + 4.4 * after.error < 0.1 * (before.value - 4.4 * before.error), (sigma, before, after)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"steps": 10, "record_every": 3}, "record_every must divide steps=10, got 3"),
     ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
     ],
)
def test_training_settings_reject_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DSMTraining(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"steps": True}, "steps must be an integer >= 1, got True"),
     ({"optimiser": "adam"}, "optimiser must be an AbstractOptimiserSpec"),
     ({"ema": 0.99}, "ema must be an EMA or None")],
)
def test_training_settings_reject_wrong_kinds_with_a_type_error(kwargs, message):
    with pytest.raises(TypeError, match=message):
        DSMTraining(**kwargs)


def test_training_rejects_bad_arguments(key):
    target = theory.ncsn_two_modes()
    model = ScoreMLPSpec(width=4, hidden_layers=1).build(key, 2)
    sample = eqx.Partial(ConvolvedTarget().sample_base, target)
    with pytest.raises(ValueError, match="sigmas must be a nonempty 1-D array of finite levels > 0"):
        train_dsm(model, sample, [1.0, -1.0], key=key, training=DSMTraining(steps=10, record_every=5))
    with pytest.raises(TypeError, match="training must be a DSMTraining"):
        train_dsm(model, sample, [1.0], key=key, training={"steps": 10})


def test_dsm_batches_draw_levels_uniformly_and_standard_noise(key):
    # Clean points from a finite sample of two rows, 4 levels. Each level's count among
    # n = 40,000 draws is Binomial(n, 1/4): |count/n - 1/4| <= 5 sqrt(p(1-p)/n) fails with
    # probability 5.7e-7 per level. The noise coordinates' mean and variance are checked
    # to 5 SE as well (SE of the mean 1/sqrt(nd); of the variance sqrt(2/(nd))).
    data = jnp.asarray([[1.0, 2.0], [-3.0, 4.0]])
    sigmas = np.asarray([0.1, 0.5, 2.0, 8.0])
    n = 40_000
    clean, sigma, noise = DSMBatches(FiniteSample(data, n), sigmas).draw(key)
    assert clean.shape == noise.shape == (n, 2) and sigma.shape == (n,)
    assert clean.dtype == sigma.dtype == noise.dtype == PARAM_DTYPE
    assert np.all(np.any(np.all(np.asarray(clean)[:, None, :] == np.asarray(data)[None], axis=-1), axis=1))
    levels = np.asarray(sigmas, np.float32)
    counts = np.asarray([(np.asarray(sigma) == level).sum() for level in levels])
    assert counts.sum() == n
    assert np.all(np.abs(counts / n - 0.25) <= 5 * math.sqrt(0.25 * 0.75 / n)), counts
    flat = np.asarray(noise, np.float64).ravel()
    assert abs(flat.mean()) <= 5 / math.sqrt(flat.size)
    assert abs(flat.var() - 1.0) <= 5 * math.sqrt(2.0 / flat.size)


def test_replicas_train_as_separate_runs_to_float32_rounding(key):
    """Network r of ``train_dsm_replicas`` is ``train_dsm`` of network r with key r: vmap
    only batches the same arithmetic, so they agree to float32 rounding (eps 1.2e-7)
    accumulated over 20 Adam steps, ~1e-6 relative; 1e-4 is a 100x margin."""
    target, spec = theory.ncsn_two_modes(), ScoreMLPSpec(width=8, hidden_layers=1)
    training = DSMTraining(optimiser=AdamSpec(1e-3), steps=20, batch_size=16, record_every=10)
    sample = eqx.Partial(ConvolvedTarget().sample_base, target)
    init_keys, batch_keys = jax.random.split(key, (2, 2))
    models = eqx.filter_vmap(lambda k: spec.build(k, 2))(init_keys)
    together = train_dsm_replicas(models, sample, [5.0, 1.0], keys=batch_keys, training=training)
    assert together.losses.shape == (2, 2) and together.diverged_at.tolist() == [-1, -1]
    for r in range(2):
        alone = train_dsm(spec.build(init_keys[r], 2), sample, [5.0, 1.0], key=batch_keys[r], training=training)
        for a, b in zip(jax.tree.leaves(eqx.filter(alone, eqx.is_inexact_array)),
                        jax.tree.leaves(eqx.filter(together, eqx.is_inexact_array)), strict=True):
            np.testing.assert_allclose(np.asarray(b)[r], np.asarray(a), rtol=1e-4, atol=1e-6)
