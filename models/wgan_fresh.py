"""WGAN training against any samplable law: fresh target draws (n = infinity) or mu_n.

The training of `models.wgan` draws its real batches from a finite array. To train on
fresh target draws at every step (the population objective, "n = infinity" of the error
decomposition of Biau, Sangnier & Tanielian, JMLR 2021, Thm. 4.1), every generator step
here draws a fresh pool of `POOL_FACTOR * critic_steps * batch_size` points from a law
and hands it to `models.wgan.train_steps` for exactly one generator step; that step's
critic batches are drawn uniformly with replacement from the pool. Each real point is
then marginally an exact draw from the law (a uniformly chosen element of an i.i.d.
sample is distributed as the law), successive steps use independent pools, and the
real-batch gradient is an unbiased estimate of the population gradient; the only cost
is that a point of the pool can appear twice within one step (about 11.5% of the real
draws with POOL_FACTOR = 4: 1 - (1 - exp(-1/4)) / (1/4)).

The same code trains on n points with `EmpiricalLaw(points)` as the law (a pool
resampled from the n points, then batches from the pool: marginally uniform on the n
points, i.e. mu_n), so that "n points" and "n = infinity" differ only in the law and
share every other random number (latent draws, critic steps) given the same key.

`freeze_generator=True` keeps the generator (and its optimiser state) fixed and trains
the critic alone: the critic's IPM sup_D E_mu* D - E_mu_theta D for a frozen mu_theta
(the metric discrepancy d_Dq versus d_Lip1).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from models import sharding
from models.critics import AbstractCriticSpec
from models.generator import MLPGeneratorSpec
from models.training import scan_steps
from models.wgan import StepLosses, WGANState, WGANTraining, train_steps
from theory.validation import check_count

__all__ = ["POOL_FACTOR", "EmpiricalLaw", "stack_law", "train_replicas_on_law", "train_steps_on_law"]

POOL_FACTOR = 4
"""Fresh points per generator step, in units of the critic's real draws per step."""


class EmpiricalLaw(eqx.Module):
    """mu_n = (1/n) sum_i delta_{x_i}: draws uniform with replacement from the n points.

    Args:
        points: Float[Array, "n d"], the training set.
    """

    points: Float[Array, "n d"]

    def sample(self, key: PRNGKeyArray, n: int) -> Float[Array, "n d"]:
        """n i.i.d. draws from mu_n."""
        return self.points[jax.random.randint(key, (n,), 0, self.points.shape[0])]


def train_steps_on_law(
    state: WGANState,
    law,
    key: PRNGKeyArray,
    *,
    n_steps: int,
    generator_spec: MLPGeneratorSpec,
    critic_spec: AbstractCriticSpec,
    training: WGANTraining,
    freeze_generator: bool = False,
) -> tuple[WGANState, StepLosses]:
    """`n_steps` generator steps of `models.wgan.train_steps`, each on a fresh pool from `law`.

    Args:
        state: the replica's state.
        law: anything with `sample(key, n) -> (n, d)` that traces under jit: a
            `theory.MixtureOfGaussians` (fresh draws, mu*) or an `EmpiricalLaw` (mu_n).
        key: PRNG key for this chunk.
        n_steps: generator steps (static).
        freeze_generator: train the critic only (the generator and its optimiser state
            are put back after every step).

    Returns:
        The new state and the per-step losses, shape (n_steps,).
    """
    pool_size = POOL_FACTOR * training.critic_steps * training.batch_size

    def step(current, step_key):
        key_pool, key_step = jax.random.split(step_key)
        pool = jnp.asarray(law.sample(key_pool, pool_size), jnp.float32)
        new, losses = train_steps(current, pool, key_step, n_steps=1, generator_spec=generator_spec,
                                  critic_spec=critic_spec, training=training)
        if freeze_generator:
            new = eqx.tree_at(lambda s: (s.generator, s.generator_opt_state), new,
                              (current.generator, current.generator_opt_state))
        return new, jax.tree.map(lambda leaf: leaf[0], losses)

    return scan_steps(step, state, jax.random.split(key, n_steps))


def train_replicas_on_law(states, laws, keys, *, n_steps, generator_spec, critic_spec, training,
                          freeze_generator: bool = False, mesh: jax.sharding.Mesh | None = None):
    """Train R replicas at once: states, laws (array leaves with a leading R axis) and keys (R,).

    Args:
        states, laws, keys: R replicas along the leading axis (``stack_law`` gives every
            replica the same law).
        n_steps, generator_spec, critic_spec, training, freeze_generator: as for
            ``train_steps_on_law``.
        mesh: a ``models.sharding.replica_mesh``: the replica axis is split over its
            devices (R padded to a multiple of the device count, padding dropped); None
            runs on the default device.

    Returns the new states and per-step losses of shape (R, n_steps).
    """
    return sharding.vmap_sharded(train_steps_on_law, states, laws, keys, mesh=mesh, n_steps=n_steps,
                                 generator_spec=generator_spec, critic_spec=critic_spec, training=training,
                                 freeze_generator=freeze_generator)


def stack_law(law, replicas: int):
    """The same law for R replicas: every array leaf broadcast to a leading axis of size R, float32."""
    check_count("replicas", replicas)
    return jax.tree.map(
        lambda leaf: jnp.broadcast_to(jnp.asarray(leaf, jnp.float32), (replicas,) + jnp.shape(leaf))
        if eqx.is_array(leaf) else leaf,
        law,
    )

