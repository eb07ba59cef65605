"""WGAN training on a samplable law: the empirical law draws only its points, a frozen
generator stays bit-identical while its critic trains, and mu_n and mu* share every other
random number."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import theory
from models.critics import BjorckGroupSortSpec
from models.generator import MLPGeneratorSpec
from models.wgan import WGANTraining, init_replicas
from models.wgan_fresh import EmpiricalLaw, stack_law, train_replicas_on_law


def _arrays(tree):
    return [np.asarray(a) for a in jax.tree.leaves(eqx.filter(tree, eqx.is_array))]


def test_the_empirical_law_draws_its_points_only(key):
    points = jnp.arange(10.0).reshape(5, 2)
    draws = np.asarray(EmpiricalLaw(points).sample(key, 200))
    assert {tuple(row) for row in draws} <= {tuple(row) for row in np.asarray(points)}
    assert len({tuple(row) for row in draws}) == 5  # 200 draws of 5 points miss one w.p. ~5 * 0.8^200


def test_a_frozen_generator_stays_identical_while_the_critic_trains(key):
    spec, critic, training = MLPGeneratorSpec(depth=2, width=8), BjorckGroupSortSpec(depth=2, width=8), WGANTraining(batch_size=16)
    keys = jax.random.split(key, 2)
    states = init_replicas(keys, generator_spec=spec, critic_spec=critic, training=training, data_dim=2)
    laws = stack_law(theory.gaussian_grid(4), 2)
    trained, losses = train_replicas_on_law(states, laws, keys, n_steps=3, generator_spec=spec, critic_spec=critic,
                                            training=training, freeze_generator=True)
    for before, after in zip(_arrays(states.generator), _arrays(trained.generator)):
        np.testing.assert_array_equal(before, after)
    assert any(np.any(a != b) for a, b in zip(_arrays(states.critic), _arrays(trained.critic)))
    assert losses.critic.shape == (2, 3) and np.all(np.isfinite(np.asarray(losses.critic)))
    assert np.all(np.asarray(trained.step) == 3) and np.all(np.asarray(trained.diverged_at) == -1)
