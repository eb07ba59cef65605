"""Wasserstein GAN training, jitted end to end and vmapped over replicas.

Objective (Arjovsky, Chintala & Bottou 2017, eq. (3)): the critic D minimises
    mean D(G(z)) - mean D(x) + penalty(D)
and the generator G minimises -mean D(G(z)). Each generator step follows
`critic_steps` critic steps; after every critic update the critic spec's `project`
is applied (weight clipping, spectral-norm power iteration; identity otherwise).

`train_steps` runs `n_steps` generator steps as one `lax.scan`; `eqx.filter_vmap`
of it trains many replicas (seeds, targets) as one compiled program, the same code on
CPU or GPU. A non-finite loss marks the replica diverged at that step; the replica
keeps running (its numbers are then NaN) so that the others are unaffected.
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, Int, PRNGKeyArray

from models.critics import AbstractCriticSpec
from models.generator import MLPGenerator


class WGANTraining(eqx.Module):
    """Optimisation settings (defaults: Biau, Sangnier & Tanielian 2021, public code)."""

    lr_critic: float = eqx.field(static=True, default=0.0025)
    lr_generator: float = eqx.field(static=True, default=0.001)
    adam_b1: float = eqx.field(static=True, default=0.5)
    adam_b2: float = eqx.field(static=True, default=0.5)
    critic_steps: int = eqx.field(static=True, default=3)
    batch_size: int = eqx.field(static=True, default=256)

    def __check_init__(self):
        for name in ("lr_critic", "lr_generator"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 < value < float("inf")):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        for name in ("adam_b1", "adam_b2"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 <= value < 1):
                raise ValueError(f"{name} must be in [0, 1), got {value!r}")
        for name in ("critic_steps", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")

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
    diverged_at: Int[Array, ""]  # first generator step with a non-finite loss, -1 if none


class StepLosses(eqx.Module):
    """Per-step losses recorded by the scan."""

    critic: Float[Array, " n_steps"]  # mean D(fake) - mean D(real) + penalty, last critic step
    generator: Float[Array, " n_steps"]  # -mean D(fake)


def _params(model):
    return eqx.filter(model, eqx.is_inexact_array)


def init_state(
    key: PRNGKeyArray,
    generator_spec: MLPGenerator,
    critic_spec: AbstractCriticSpec,
    training: WGANTraining,
    data_dim: int,
) -> WGANState:
    """Fresh networks and optimiser states (vmappable over keys)."""
    key_generator, key_critic = jax.random.split(key)
    generator = generator_spec.build(key_generator, data_dim)
    critic = critic_spec.build(key_critic, data_dim)
    return WGANState(
        generator=generator,
        critic=critic,
        generator_opt_state=training.generator_optimiser().init(_params(generator)),
        critic_opt_state=training.critic_optimiser().init(_params(critic)),
        step=jnp.zeros((), jnp.int32),
        diverged_at=jnp.full((), -1, jnp.int32),
    )


def train_steps(
    state: WGANState,
    data: Float[Array, "n d"],
    key: PRNGKeyArray,
    *,
    n_steps: int,
    generator_spec: MLPGenerator,
    critic_spec: AbstractCriticSpec,
    training: WGANTraining,
) -> tuple[WGANState, StepLosses]:
    """`n_steps` generator steps (each after `critic_steps` critic steps) as one scan.

    Real batches are drawn uniformly with replacement from the n training points (the
    empirical law mu_n); fake batches from fresh latent draws.

    Args:
        state: the replica's current state.
        data: its finite training set, (n, d).
        key: PRNG key for this chunk of steps.
        n_steps: number of generator steps (static).

    Returns:
        The new state and the per-step losses.
    """
    critic_optimiser = training.critic_optimiser()
    generator_optimiser = training.generator_optimiser()
    batch = training.batch_size

    def critic_update(generator, carry, step_key):
        critic, opt_state = carry
        key_real, key_fake, key_penalty = jax.random.split(step_key, 3)
        real = data[jax.random.randint(key_real, (batch,), 0, data.shape[0])]
        fake = jax.lax.stop_gradient(generator_spec.sample(generator, key_fake, batch))

        def loss_fn(critic):
            gap = jnp.mean(jax.vmap(critic)(fake)) - jnp.mean(jax.vmap(critic)(real))
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
        finite = jnp.isfinite(critic_loss) & jnp.isfinite(generator_loss)
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

    # The networks hold non-array leaves (activation functions): scan over the array
    # part only and recombine with the static part inside the body.
    dynamic, static = eqx.partition(state, eqx.is_array)

    def body(dynamic_state, step_key):
        new_state, losses = generator_step(eqx.combine(dynamic_state, static), step_key)
        return eqx.filter(new_state, eqx.is_array), losses

    dynamic, losses = jax.lax.scan(body, dynamic, jax.random.split(key, n_steps))
    return eqx.combine(dynamic, static), losses


@eqx.filter_jit
def train_replicas(states, data, keys, *, n_steps, generator_spec, critic_spec, training):
    """Train R replicas at once: states, data (R, n, d) and keys (R,) share a leading axis.

    One compiled program per (shapes, n_steps, specs): the specs and step count are
    static, so repeated calls (chunks between evaluations) reuse the compilation.
    Returns the new states and per-step losses of shape (R, n_steps).
    """

    def one(state, replica_data, key):
        return train_steps(
            state,
            replica_data,
            key,
            n_steps=n_steps,
            generator_spec=generator_spec,
            critic_spec=critic_spec,
            training=training,
        )

    return eqx.filter_vmap(one)(states, data, keys)


@eqx.filter_jit
def init_replicas(keys, *, generator_spec, critic_spec, training, data_dim: int) -> WGANState:
    """States for R replicas, one per key, stacked along a leading axis."""
    return eqx.filter_vmap(lambda k: init_state(k, generator_spec, critic_spec, training, data_dim))(keys)


@eqx.filter_jit
def sample_replicas(generators, keys, *, generator_spec: MLPGenerator, n: int):
    """(R, n, d) draws, one batch per replica's generator."""
    return eqx.filter_vmap(lambda g, k: generator_spec.sample(g, k, n))(generators, keys)


@eqx.filter_jit
def critic_values(critics, points):
    """D_r(x) for each replica's critic on its own points (R, m, d) -> (R, m)."""
    return eqx.filter_vmap(lambda c, x: jax.vmap(c)(x))(critics, points)
