"""Wasserstein GAN training, jitted end to end and vmapped over replicas.

Objective (Arjovsky, Chintala & Bottou 2017, eq. (3)): the critic D minimises
    mean D(G(z)) - mean D(x) + penalty(D)
and the generator G minimises -mean D(G(z)). Each generator step follows
`critic_steps` critic steps; after every critic update the critic spec's `project`
is applied (weight clipping, spectral-norm power iteration; identity otherwise).

`train_steps` runs `n_steps` generator steps as one compiled loop; `eqx.filter_vmap`
of it trains many replicas (seeds, targets) as one compiled program, the same code on
CPU or GPU, optionally split over devices (`models.sharding`). A non-finite loss or
parameter marks the replica diverged at that step; the replica keeps running (its
numbers are then NaN) so that the others are unaffected. Trained replicas are read with
`sample_replicas` (from `models.generator`) and `critic_values` (`models.training.
opponent_values`, shared with the GAN's `discriminator_values`).
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, Int, PRNGKeyArray

from models import sharding
from models.critics import AbstractCriticSpec
from models.generator import MLPGeneratorSpec, sample_replicas as sample_replicas  # re-exported
from models.training import adversarial_start, all_finite, check_adam_settings
from models.training import opponent_values as critic_values  # re-exported under the WGAN's name
from theory.validation import check_count

__all__ = [
    "StepLosses",
    "WGANState",
    "WGANTraining",
    "critic_values",
    "init_replicas",
    "init_state",
    "sample_replicas",
    "train_replicas",
    "train_steps",
]


class WGANTraining(eqx.Module):
    """Optimisation settings (defaults: Biau, Sangnier & Tanielian 2021, public code)."""

    lr_critic: float = eqx.field(static=True, default=0.0025)
    lr_generator: float = eqx.field(static=True, default=0.001)
    adam_b1: float = eqx.field(static=True, default=0.5)
    adam_b2: float = eqx.field(static=True, default=0.5)
    critic_steps: int = eqx.field(static=True, default=3)
    batch_size: int = eqx.field(static=True, default=256)

    def __check_init__(self):
        check_adam_settings(self, rates=("lr_critic", "lr_generator"), decays=("adam_b1", "adam_b2"),
                            counts=("critic_steps", "batch_size"))

    def critic_optimiser(self) -> optax.GradientTransformation:
        return optax.adam(self.lr_critic, b1=self.adam_b1, b2=self.adam_b2)

    def generator_optimiser(self) -> optax.GradientTransformation:
        return optax.adam(self.lr_generator, b1=self.adam_b1, b2=self.adam_b2)


class WGANState(eqx.Module):
    """Everything a training run carries from one generator step to the next."""

    generator: eqx.Module
    critic: eqx.Module
    generator_opt_state: optax.OptState
    critic_opt_state: optax.OptState
    step: Int[Array, ""]
    diverged_at: Int[Array, ""]  # first generator step with a non-finite loss or parameter, -1 if none


class StepLosses(eqx.Module):
    """Per-step losses recorded by the scan."""

    critic: Float[Array, " n_steps"]  # mean D(fake) - mean D(real) + penalty, last critic step
    generator: Float[Array, " n_steps"]  # -mean D(fake)


def _params(model):
    return eqx.filter(model, eqx.is_inexact_array)


def init_state(
    key: PRNGKeyArray,
    generator_spec: MLPGeneratorSpec,
    critic_spec: AbstractCriticSpec,
    training: WGANTraining,
    data_dim: int,
) -> WGANState:
    """Fresh networks and optimiser states (vmappable over keys)."""
    return WGANState(*adversarial_start(key, generator_spec=generator_spec, opponent_spec=critic_spec,
                                        generator_optimiser=training.generator_optimiser(),
                                        opponent_optimiser=training.critic_optimiser(), data_dim=data_dim))


def train_steps(
    state: WGANState,
    data: Float[Array, "n d"],
    key: PRNGKeyArray,
    *,
    n_steps: int | Int[Array, ""],
    generator_spec: MLPGeneratorSpec,
    critic_spec: AbstractCriticSpec,
    training: WGANTraining,
    max_steps: int | None = None,
) -> tuple[WGANState, StepLosses]:
    """`n_steps` generator steps (each after `critic_steps` critic steps) as one loop.

    Real batches are drawn uniformly with replacement from the n training points (the
    empirical law mu_n); fake batches from fresh latent draws. Generator step i of the
    chunk uses the key `fold_in(key, i)`, so a chunk's result does not depend on
    `max_steps`. The critic is evaluated once per critic step, on fake and real points
    together (one forward pass, one Björck orthonormalisation per layer).

    A replica is diverged from the first step whose critic or generator loss, or any
    generator or critic parameter after the update, is not finite.

    Args:
        state: the replica's current state.
        data: its finite training set, (n, d).
        key: PRNG key for this chunk of steps.
        n_steps: number of generator steps: a Python int (static), or a traced int32
            scalar <= `max_steps` when `max_steps` is given.
        max_steps: static capacity of the loss record; `None` means `n_steps` (which
            must then be a Python int). One compilation then serves every
            `n_steps <= max_steps`.

    Returns:
        The new state and the per-step losses, of length `max_steps` (entries from
        `n_steps` on are NaN: steps not run).
    """
    if max_steps is None:
        max_steps = n_steps = check_count("n_steps", n_steps)
    critic_optimiser = training.critic_optimiser()
    generator_optimiser = training.generator_optimiser()
    batch = training.batch_size

    def critic_update(generator, carry, step_key):
        critic, opt_state = carry
        key_real, key_fake, key_penalty = jax.random.split(step_key, 3)
        real = data[jax.random.randint(key_real, (batch,), 0, data.shape[0])]
        fake = jax.lax.stop_gradient(generator_spec.sample(generator, key_fake, batch))
        both = jnp.concatenate([fake, real.astype(fake.dtype)])

        def loss_fn(critic):
            values = jax.vmap(critic)(both)
            gap = jnp.mean(values[:batch]) - jnp.mean(values[batch:])
            return gap + critic_spec.penalty(critic, real, fake, key=key_penalty)

        loss, grads = eqx.filter_value_and_grad(loss_fn)(critic)
        updates, opt_state = critic_optimiser.update(grads, opt_state, _params(critic))
        critic = critic_spec.project(eqx.apply_updates(critic, updates))
        return (critic, opt_state), loss

    def generator_step(state: WGANState, step_key):
        key_critic, key_fake = jax.random.split(step_key)
        (critic, critic_opt_state), critic_losses = jax.lax.scan(
            functools.partial(critic_update, state.generator),
            (state.critic, state.critic_opt_state),
            jax.random.split(key_critic, training.critic_steps),
        )

        def loss_fn(generator):
            return -jnp.mean(jax.vmap(critic)(generator_spec.sample(generator, key_fake, batch)))

        generator_loss, grads = eqx.filter_value_and_grad(loss_fn)(state.generator)
        updates, generator_opt_state = generator_optimiser.update(
            grads, state.generator_opt_state, _params(state.generator)
        )
        generator = eqx.apply_updates(state.generator, updates)
        critic_loss = critic_losses[-1]
        finite = (
            jnp.isfinite(critic_loss)
            & jnp.isfinite(generator_loss)
            & all_finite(generator)
            & all_finite(critic)
        )
        diverged_at = jnp.where((state.diverged_at < 0) & ~finite, state.step, state.diverged_at)
        new_state = WGANState(
            generator=generator,
            critic=critic,
            generator_opt_state=generator_opt_state,
            critic_opt_state=critic_opt_state,
            step=state.step + 1,
            diverged_at=diverged_at,
        )
        return new_state, StepLosses(critic=critic_loss, generator=generator_loss)

    # The networks hold non-array leaves (activation functions): loop over the array
    # part only and recombine with the static part inside the body.
    dynamic, static = eqx.partition(state, eqx.is_array)
    dtype = _params(state.critic).layers[-1].bias.dtype
    record = StepLosses(
        critic=jnp.full((max_steps,), jnp.nan, dtype), generator=jnp.full((max_steps,), jnp.nan, dtype)
    )

    def body(i, carry):
        dynamic_state, record = carry
        new_state, losses = generator_step(eqx.combine(dynamic_state, static), jax.random.fold_in(key, i))
        record = StepLosses(
            critic=record.critic.at[i].set(losses.critic), generator=record.generator.at[i].set(losses.generator)
        )
        return eqx.filter(new_state, eqx.is_array), record

    dynamic, record = jax.lax.fori_loop(0, n_steps, body, (dynamic, record))
    return eqx.combine(dynamic, static), record


def train_replicas(
    states: WGANState,
    data: Float[Array, "R n d"],
    keys: PRNGKeyArray,
    *,
    n_steps: int,
    generator_spec: MLPGeneratorSpec,
    critic_spec: AbstractCriticSpec,
    training: WGANTraining,
    max_steps: int | None = None,
    mesh: jax.sharding.Mesh | None = None,
) -> tuple[WGANState, StepLosses]:
    """Train R replicas at once: states, data (R, n, d) and keys (R,) share a leading axis.

    One compiled program per (shapes, max_steps, specs, mesh): `n_steps` is a traced
    argument, so every chunk of at most `max_steps` steps (default: `n_steps`) reuses
    one compilation; pass `max_steps` = the longest chunk (e.g. the evaluation
    interval) so that a shorter last chunk does not compile again.

    Args:
        states, data, keys: R replicas along the leading axis.
        n_steps: generator steps to run, an integer in [1, max_steps].
        max_steps: the compiled capacity, an integer >= n_steps; None means n_steps.
        mesh: a `models.sharding.replica_mesh`; the replica axis is split over its
            devices (R padded to a multiple of the device count, padding dropped).
            None runs on the default device.

    Returns:
        The new states and per-step losses of shape (R, n_steps).
    """
    check_count("n_steps", n_steps)
    if max_steps is None:
        max_steps = n_steps
    check_count("max_steps", max_steps)
    if max_steps < n_steps:
        raise ValueError(f"max_steps must be an integer >= n_steps = {n_steps}, got {max_steps!r}")
    states, losses = sharding.vmap_sharded(
        train_steps, states, data, keys, mesh=mesh,
        n_steps=jnp.asarray(n_steps, jnp.int32), max_steps=max_steps,
        generator_spec=generator_spec, critic_spec=critic_spec, training=training,
    )
    if max_steps != n_steps:
        losses = jax.tree.map(lambda a: a[:, :n_steps], losses)
    return states, losses


def init_replicas(
    keys: PRNGKeyArray,
    *,
    generator_spec: MLPGeneratorSpec,
    critic_spec: AbstractCriticSpec,
    training: WGANTraining,
    data_dim: int,
    mesh: jax.sharding.Mesh | None = None,
) -> WGANState:
    """States for R replicas, one per key, stacked along a leading axis.

    With a `mesh`, the keys are split over its devices (see `train_replicas`).
    """
    return sharding.vmap_sharded(init_state, keys, mesh=mesh, generator_spec=generator_spec, critic_spec=critic_spec,
                                 training=training, data_dim=data_dim)
