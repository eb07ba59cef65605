"""WGAN training: vmapped replicas equal separate runs, divergence is caught, duality holds."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import theory
from models.critics import BjorckGroupSortSpec
from models.generator import MLPGeneratorSpec
from models.wgan import WGANTraining, critic_values, init_replicas, sample_replicas, train_replicas

GENERATOR = MLPGeneratorSpec(depth=2, width=8)
CRITIC = BjorckGroupSortSpec(depth=2, width=8)
TRAINING = WGANTraining(batch_size=32)


def _setup(n_replicas, training=TRAINING):
    keys = jax.random.split(jax.random.key(3), n_replicas)
    target = theory.gaussian_grid(4)
    data = jnp.stack([target.sample(k, 200) for k in keys]).astype(jnp.float32)
    states = init_replicas(keys, generator_spec=GENERATOR, critic_spec=CRITIC, training=training, data_dim=2)
    return keys, data, states


def _train(states, data, keys, n_steps, training=TRAINING):
    return train_replicas(
        states, data, keys, n_steps=n_steps, generator_spec=GENERATOR, critic_spec=CRITIC, training=training
    )


def test_vmapped_replicas_train_exactly_as_separate_runs():
    keys, data, states = _setup(2)
    together, losses = _train(states, data, keys, 5)
    for r in range(2):
        alone_state = jax.tree.map(lambda a: a[r : r + 1] if eqx.is_array(a) else a, states)
        alone, alone_losses = _train(alone_state, data[r : r + 1], keys[r : r + 1], 5)
        # Same program on one replica; vmapping only batches the arithmetic, so the
        # results agree to float32 rounding accumulated over 5 steps (~1e-6 relative).
        for a, b in zip(jax.tree.leaves(eqx.filter(together, eqx.is_array)), jax.tree.leaves(eqx.filter(alone, eqx.is_array))):
            np.testing.assert_allclose(np.asarray(a[r]), np.asarray(b[0]), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(losses.critic[r], alone_losses.critic[0], rtol=1e-4, atol=1e-5)
    assert np.all(np.asarray(together.step) == 5)
    assert np.all(np.asarray(together.diverged_at) == -1)


def test_a_diverging_replica_is_marked_with_its_step_and_does_not_stop_training():
    # A generator learning rate of 1e38 makes its float32 weights ~1e38 after one step;
    # the next fake batch then overflows to inf and the losses turn non-finite.
    reckless = WGANTraining(batch_size=32, lr_generator=1e38)
    keys, data, states = _setup(2, reckless)
    states, losses = _train(states, data, keys, 5, reckless)
    diverged_at = np.asarray(states.diverged_at)
    assert np.all((diverged_at >= 0) & (diverged_at < 5))
    bad = ~np.isfinite(np.asarray(losses.critic) + np.asarray(losses.generator))
    assert np.all(bad.any(axis=1))
    first_bad_loss = np.argmax(bad, axis=1)
    # Non-finite parameters can only flag a step at or before the first bad loss.
    assert np.all(diverged_at <= first_bad_loss)
    assert np.all(np.asarray(states.step) == 5)


def test_non_finite_parameters_mark_divergence_before_any_loss_is_non_finite():
    # A learning rate of 1e39 is inf in float32: the first Adam update sends generator
    # weights to +-inf (or NaN), while that step's losses, computed before the update,
    # are finite. Only the parameter check can flag step 0.
    reckless = WGANTraining(batch_size=32, lr_generator=1e39)
    keys, data, states = _setup(2, reckless)
    states, losses = _train(states, data, keys, 1, reckless)
    assert np.all(np.isfinite(np.asarray(losses.critic))) and np.all(np.isfinite(np.asarray(losses.generator)))
    np.testing.assert_array_equal(np.asarray(states.diverged_at), [0, 0])


def test_a_short_chunk_under_a_larger_capacity_equals_its_own_program():
    # Step i uses fold_in(key, i) whatever the capacity, so 3 steps compiled for a
    # capacity of 5 run the same arithmetic as a 3-step program: equal to float32
    # rounding (the loops are compiled separately, so fusion may reorder sums).
    keys, data, states = _setup(2)
    exact, exact_losses = _train(states, data, keys, 3)
    capped, capped_losses = train_replicas(
        states, data, keys, n_steps=3, max_steps=5, generator_spec=GENERATOR, critic_spec=CRITIC, training=TRAINING
    )
    assert capped_losses.critic.shape == (2, 3)
    for a, b in zip(jax.tree.leaves(eqx.filter(exact, eqx.is_array)), jax.tree.leaves(eqx.filter(capped, eqx.is_array))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(exact_losses.generator, capped_losses.generator, rtol=1e-5, atol=1e-6)


def test_train_replicas_rejects_a_capacity_below_the_step_count():
    keys, data, states = _setup(1)
    with pytest.raises(ValueError, match="max_steps"):
        train_replicas(states, data, keys, n_steps=4, max_steps=3, generator_spec=GENERATOR, critic_spec=CRITIC, training=TRAINING)
    with pytest.raises(ValueError, match="n_steps"):
        _train(states, data, keys, 0)


def test_a_bjorck_critic_never_claims_more_than_the_exact_w1():
    # Kantorovich-Rubinstein: for any 1-Lipschitz D, mean D(x) - mean D(y) <= W1 of the
    # two empirical measures. Bjorck layers have spectral norm <= 1 after any number of
    # iterations, so the bound holds for the trained critic on any pair of point sets.
    keys, data, states = _setup(2)
    for _ in range(4):  # the same compiled 5-step program as above, run 4 times
        states, _ = _train(states, data, keys, 5)
    generated = np.asarray(sample_replicas(states.generator, keys, generator_spec=GENERATOR, n=256), np.float64)
    target = np.asarray(data[:, :256], np.float64)
    values = np.asarray(critic_values(states.critic, jnp.asarray(np.concatenate([generated, target], 1), jnp.float32)), np.float64)
    for r in range(2):
        ipm = values[r, 256:].mean() - values[r, :256].mean()
        w1 = theory.wasserstein(generated[r], target[r]).value
        # float32 critic evaluations: relative rounding ~1e-6 of values of order 10.
        assert ipm <= w1 + 1e-4
