"""Tests for models/epsilon_network.py: shapes and dtypes, the embedding, the simple
loss's decomposition, conversion to a score, and that training learns."""

import math

import equinox as eqx
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given

import theory
from models.epsilon_network import (
    EpsilonMLPSpec,
    EpsilonTraining,
    simple_loss,
    sinusoidal_embedding,
    train_epsilon_network,
    train_epsilon_networks,
)
from models.training import EMA, AdamSpec
from theory.diffusion_samplers import EpsilonFromScore, ScoreFromEpsilon
from theory.sde import VESDE, VPSDE, ExactMarginalScore

SDE = VPSDE()


def test_network_maps_one_point_to_a_float32_noise(key):
    network = EpsilonMLPSpec(width=16, depth=2, embedding_dim=8).build(key, 3, SDE)
    out = network(jnp.ones(3, jnp.float64), jnp.asarray(0.5, jnp.float64))
    assert out.shape == (3,) and out.dtype == jnp.float32
    batch = jax.vmap(network)(jnp.ones((5, 3)), jnp.linspace(0.1, 1.0, 5))
    assert batch.shape == (5, 3)
    # Every layer owns its weights (no module shared between hidden layers).
    ids = {id(layer.weight) for layer in network.layers}
    assert len(ids) == len(network.layers) == 3


@given(t=st.floats(0.0, 1.0))
def test_sinusoidal_embedding_has_unit_pairs(t):
    """sin^2 + cos^2 = 1 for each of the dim / 2 frequencies, so ||emb(t)||^2 = dim / 2;
    frequency 0 is w_0 = 1 (emb[0] = sin(1000 t))."""
    embedding = sinusoidal_embedding(jnp.asarray(t, jnp.float64), 16)
    assert float(jnp.sum(embedding**2)) == pytest.approx(8.0, rel=1e-12)
    assert float(embedding[0]) == pytest.approx(math.sin(1000 * t), abs=1e-9)


def test_as_score_divides_by_the_marginal_std(key):
    network = EpsilonMLPSpec(width=16, depth=1, embedding_dim=8).build(key, 2, SDE)
    x, t = jnp.asarray([0.3, -0.7]), jnp.asarray(0.2)
    expected = -network(x, t) / SDE.marginal_std(t)
    np.testing.assert_allclose(network.as_score()(x, t), expected, rtol=1e-6)


def test_simple_loss_is_irreducible_loss_plus_weighted_fisher(key):
    """E||eps - f(x_t, t)||^2 = E||eps - eps*||^2 + E||eps* - f||^2 because
    E[eps - eps* | x_t] = 0 (eps* = -s(t) grad log p_t). With shared draws, the loss
    difference of f and eps* is a mean of D_i = ||eps* - f||^2 + 2 <eps - eps*, eps* - f>;
    it must match mean ||eps* - f||^2 within Z = 5 standard errors of D (FFR 5.7e-7).
    A wrongly noised x_t would break the identity (eps* would not be the minimiser)."""
    target = theory.gaussian_grid(4)
    exact = EpsilonFromScore(SDE, ExactMarginalScore(SDE, target))
    network = EpsilonMLPSpec(width=16, depth=1, embedding_dim=8).build(key, 2, SDE)
    n = 40_000
    k_x, k_t, k_e = jax.random.split(jax.random.fold_in(key, 7), 3)
    x0 = target.sample(k_x, n)
    t = jax.random.uniform(k_t, (n,), jnp.float64, 0.01, 1.0)
    noise = jax.random.normal(k_e, (n, 2), jnp.float64)

    def as64(f):
        return lambda x, s: jnp.asarray(f(x, s), jnp.float64)

    @jax.jit
    def terms(x0, t, noise):
        difference = simple_loss(as64(network), SDE, x0, t, noise) - simple_loss(exact, SDE, x0, t, noise)
        x_t = SDE.marginal_scale(t)[:, None] * x0 + SDE.marginal_std(t)[:, None] * noise
        f, star = jax.vmap(as64(network))(x_t, t), jax.vmap(exact)(x_t, t)
        gap = jnp.sum((star - f) ** 2, axis=-1)
        return difference, gap, gap + 2 * jnp.sum((noise - star) * (star - f), axis=-1)

    difference, gap, per_draw = terms(x0, t, noise)
    difference = float(difference)
    standard_error = float(jnp.std(per_draw) / math.sqrt(n))
    assert difference == pytest.approx(float(jnp.mean(per_draw)), rel=1e-9)  # same draws, same number
    assert abs(difference - float(jnp.mean(gap))) < 5 * standard_error
    assert difference > 0


def test_training_learns_the_score(key):
    """600 Adam steps on the 2-mode grid cut the Fisher divergence at t = 0.5 (5,000
    draws) to below a tenth of the untrained network's; a smoke test of the training
    loop (fixed seeds), not a statement about convergence rates."""
    target = theory.gaussian_grid(2)
    network = EpsilonMLPSpec(width=64, depth=2, embedding_dim=16, data_scale=2.0).build(key, 2, SDE)
    training = EpsilonTraining(optimiser=AdamSpec(3e-3, clip_norm=1.0), steps=600, batch_size=256, record_every=200,
                               ema=None)
    reported = []
    result = train_epsilon_network(network, target.sample, key=jax.random.fold_in(key, 1), training=training,
                                   on_block=lambda step, loss: reported.append((step, loss)))
    assert [step for step, _ in reported] == [200, 400, 600] and result.losses.shape == (3,)
    assert result.steps.tolist() == [200, 400, 600]
    # The progress callback sees exactly the recorded block means.
    np.testing.assert_array_equal([loss for _, loss in reported], np.asarray(result.losses))
    assert result.ema_model is None and int(result.diverged_at) == -1

    def fisher(net):
        batched = jax.vmap(ScoreFromEpsilon(SDE, net), in_axes=(0, None))
        law = SDE.noised_target(target, jnp.asarray(0.5))
        return theory.fisher_divergence(law, lambda x: batched(x, jnp.float32(0.5)), key=key, method=theory.MonteCarlo(5000))

    before, after = fisher(network), fisher(result.model)
    assert after.value + 5 * after.error < 0.1 * (before.value - 5 * before.error), (before, after)


def test_network_normalises_its_input_for_any_sde(key):
    """c_in(t) = 1 / sqrt(m^2 sigma_data^2 + s^2): for the VE SDE at t = 1 (s = 50) the
    first layer sees x / 50, so a far point gives the same output as VP's unit-scale one."""
    spec = EpsilonMLPSpec(width=8, depth=1, embedding_dim=8, data_scale=1.0)
    ve = VESDE()
    network = spec.build(key, 2, ve)
    scale = float(jax.lax.rsqrt(ve.marginal_scale(1.0) ** 2 + ve.marginal_std(1.0) ** 2))
    x = jnp.asarray([30.0, -40.0])
    h = jnp.concatenate([scale * x, sinusoidal_embedding(jnp.asarray(1.0), 8)]).astype(jnp.float32)
    manual = network.layers[1](jax.nn.silu(network.layers[0](h)))
    np.testing.assert_allclose(network(x, jnp.asarray(1.0)), manual, rtol=1e-5)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: EpsilonMLPSpec(width=0), "width"),
        (lambda: EpsilonMLPSpec(embedding_dim=7), "embedding_dim"),
        (lambda: EpsilonMLPSpec(data_scale=-1.0), "data_scale"),
        (lambda: EpsilonTraining(steps=100, record_every=30), "record_every must divide steps=100, got 30"),
        (lambda: EpsilonTraining(optimiser=AdamSpec(float("inf"))), "learning_rate"),
        (lambda: EpsilonTraining(ema=EMA(1.0)), "decay"),
        (lambda: EpsilonTraining(t_min=0.0), "t_min must be a finite number in \\(0, 1\\), got 0.0"),
        (lambda: EpsilonTraining(batch_size=0), "batch_size must be an integer >= 1, got 0"),
    ],
)
def test_bad_settings_are_named(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_a_wrong_kind_of_setting_is_a_type_error():
    # theory.validation: TypeError for the wrong kind (a bool is not a count), ValueError for a bad value.
    with pytest.raises(TypeError, match="width must be an integer"):
        EpsilonMLPSpec(width=True)


def test_training_returns_the_moving_average_beside_the_last_iterate(key):
    """With EMA(0.9) the result holds both the averaged weights and the last iterate,
    and they differ (the average's closed form is tested in tests/models/test_training.py);
    a t_min beyond the SDE's horizon is rejected before training."""
    target = theory.gaussian_grid(2)
    network = EpsilonMLPSpec(width=8, depth=1, embedding_dim=8).build(key, 2, SDE)
    result = train_epsilon_network(network, target.sample, key=key,
                                   training=EpsilonTraining(steps=20, batch_size=16, record_every=10, ema=EMA(0.9)))
    assert result.steps.tolist() == [10, 20] and int(result.state.step) == 20
    assert result.ema_model is not None and not eqx.tree_equal(result.model, result.ema_model)
    with pytest.raises(ValueError, match="t_min must be < T=0.5"):
        short = EpsilonMLPSpec(width=8, depth=1, embedding_dim=8).build(key, 2, VPSDE(t_max=0.5))
        train_epsilon_network(short, target.sample, key=key, training=EpsilonTraining(t_min=0.7, steps=10, record_every=10))


def test_replicas_train_as_separate_runs_to_float32_rounding(key):
    """Network r of ``train_epsilon_networks`` is ``train_epsilon_network`` of network r
    with key r: vmap only batches the same arithmetic, so they agree to float32 rounding
    (eps 1.2e-7) accumulated over 20 Adam steps, ~1e-6 relative; 1e-4 is a 100x margin."""
    target = theory.gaussian_grid(2)
    spec, training = EpsilonMLPSpec(width=8, depth=1, embedding_dim=8), EpsilonTraining(steps=20, batch_size=16, record_every=10)
    init_keys, batch_keys = jax.random.split(key, (2, 2))
    networks = eqx.filter_vmap(lambda k: spec.build(k, 2, SDE))(init_keys)
    together = train_epsilon_networks(networks, target.sample, keys=batch_keys, training=training)
    assert together.losses.shape == (2, 2) and together.steps.tolist() == [[10, 20], [10, 20]]
    for r in range(2):
        alone = train_epsilon_network(spec.build(init_keys[r], 2, SDE), target.sample, key=batch_keys[r], training=training)
        for a, b in zip(jax.tree.leaves(eqx.filter(alone, eqx.is_inexact_array)),
                        jax.tree.leaves(eqx.filter(together, eqx.is_inexact_array)), strict=True):
            np.testing.assert_allclose(np.asarray(b)[r], np.asarray(a), rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="keys must be"):
        train_epsilon_networks(networks, target.sample, keys=None, training=training)
