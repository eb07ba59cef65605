"""GAN training for any objective, jitted end to end and vmapped over replicas.

The WGAN step of `models.wgan`, generalised: an objective object
(`models.gan_objectives`) supplies the losses, a discriminator spec supplies the
network, its penalty (added to the discriminator loss) and its projection (applied after
every discriminator update). Each generator step follows `discriminator_steps`
discriminator steps:

    D:  minimise  objective.discriminator_loss(v(x), v(G(z))) + spec.penalty(v, x, G(z))
    G:  minimise  objective.generator_loss(v(G(z)))

`train_gan` runs `n_steps` generator steps as one `lax.scan` (`models.training.scan_steps`,
shared with the single-loss loop); `train_discriminator`
trains the discriminator alone between two fixed sources (laws, data sets or a frozen
generator), the experiment in which its divergence estimate approaches the divergence.
`generator_gradient_norm` measures ||grad_theta L_G|| against a frozen discriminator
(the vanishing-gradient experiment of Goodfellow et al. 2014, Sec. 3; Arjovsky &
Bottou 2017, Thm. 2.4). A non-finite loss marks the replica diverged at that step; it
keeps running (its numbers are then NaN) so that vmapped replicas are unaffected.
Trained replicas are read with `sample_replicas` (from `models.generator`) and
`discriminator_values` (`models.training.opponent_values`, shared with the WGAN's
`critic_values`).

Data sources (`data`, `real`, `fake`): a finite data set, an array (n, d) (batches drawn
uniformly with replacement, i.e. from the empirical law); a law from `theory` with
`sample` (fresh draws every batch); a `FrozenGenerator`; or, for a conditional GAN, a
`models.conditional.LabelledData` (fake samples then take the real batch's labels).
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, Int, PRNGKeyArray

from models.conditional import ConditionalMLPDiscriminatorSpec, ConditionalMLPGeneratorSpec, LabelledData
from models.gan_objectives import AbstractGANObjective
from models import sharding
from models.generator import MLPGeneratorSpec, sample_replicas as sample_replicas  # re-exported
from models.training import (
    AbstractBatchSource,
    AdamSpec,
    IndependentDraws,
    TrainState,
    adversarial_start,
    check_adam_settings,
    init_train_state,
    opponent_values as discriminator_values,  # re-exported under the GAN's name
    scan_steps,
    train,
)
from theory.distributions import AbstractDistribution
from theory.validation import check_count

__all__ = [
    "DiscriminatorLosses",
    "DiscriminatorState",
    "Float32MLP",
    "FrozenGenerator",
    "GANLosses",
    "GANState",
    "GANTraining",
    "MLPDiscriminatorSpec",
    "discriminator_values",
    "generator_gradient_norm",
    "init_discriminator_replicas",
    "init_discriminator_state",
    "init_gan_state",
    "init_replicas",
    "sample_replicas",
    "train_discriminator",
    "train_discriminator_replicas",
    "train_gan",
    "train_replicas",
]

# --------------------------------------------------------------------------------------
# Settings and specs.


class GANTraining(eqx.Module):
    """Optimisation settings (defaults: Adam(2e-4, b1 = 0.5), Radford et al. 2016, Sec. 4)."""

    lr_discriminator: float = eqx.field(static=True, default=2e-4)
    lr_generator: float = eqx.field(static=True, default=2e-4)
    adam_b1: float = eqx.field(static=True, default=0.5)
    adam_b2: float = eqx.field(static=True, default=0.999)
    discriminator_steps: int = eqx.field(static=True, default=1)
    batch_size: int = eqx.field(static=True, default=256)

    def __check_init__(self):
        check_adam_settings(self, rates=("lr_discriminator", "lr_generator"), decays=("adam_b1", "adam_b2"),
                            counts=("discriminator_steps", "batch_size"))

    def discriminator_adam(self) -> AdamSpec:
        return AdamSpec(self.lr_discriminator, b1=self.adam_b1, b2=self.adam_b2)

    def discriminator_optimiser(self) -> optax.GradientTransformation:
        return self.discriminator_adam().build()

    def generator_optimiser(self) -> optax.GradientTransformation:
        return optax.adam(self.lr_generator, b1=self.adam_b1, b2=self.adam_b2)


class MLPDiscriminatorSpec(eqx.Module):
    """Spec of a plain MLP discriminator x (d,) -> raw scalar v(x); no penalty, no projection.

    v = W_p s(... s(W_1 x + b_1) ...) + b_p with `depth` linear layers, each with its own
    weights, and hidden activation s (leaky ReLU with slope 0.2 by default, as in
    Radford et al. 2016). Float32 parameters; inputs are cast to float32.
    """

    depth: int = eqx.field(static=True, default=3)
    width: int = eqx.field(static=True, default=32)
    activation: object = eqx.field(static=True, default=jax.nn.leaky_relu)

    def __check_init__(self):
        check_count("depth", self.depth)
        check_count("width", self.width)
        if not callable(self.activation):
            raise TypeError(f"activation must be callable, got {self.activation!r}")

    def build(self, key: PRNGKeyArray, in_dim: int) -> "Float32MLP":
        """A fresh float32 network on R^in_dim; vmappable over `key`."""
        check_count("in_dim", in_dim)
        mlp = eqx.nn.MLP(
            in_size=in_dim,
            out_size="scalar",
            width_size=self.width,
            depth=self.depth - 1,
            activation=self.activation,
            key=key,
            dtype=jnp.float32,
        )
        return Float32MLP(mlp)

    def penalty(self, discriminator, real, fake, *, key):
        return jnp.zeros((), jnp.float32)

    def project(self, discriminator):
        return discriminator


class Float32MLP(eqx.Module):
    """An MLP that casts its one input (d,) to float32 (so float64 test points work)."""

    mlp: eqx.nn.MLP

    def __call__(self, x: Float[Array, " d"]) -> Float[Array, ""]:
        return self.mlp(jnp.asarray(x).astype(jnp.float32))


class FrozenGenerator(eqx.Module):
    """A generator network held fixed, used as a source of fake samples."""

    spec: MLPGeneratorSpec = eqx.field(static=True)
    network: eqx.Module

    def sample(self, key: PRNGKeyArray, n: int) -> Float[Array, "n d"]:
        return jax.lax.stop_gradient(self.spec.sample(self.network, key, n))


# --------------------------------------------------------------------------------------
# States and recorded losses.


class GANState(eqx.Module):
    """Everything a training run carries from one generator step to the next."""

    generator: eqx.Module
    discriminator: eqx.Module
    generator_opt_state: optax.OptState
    discriminator_opt_state: optax.OptState
    step: Int[Array, ""]
    diverged_at: Int[Array, ""]  # first generator step with a non-finite loss, -1 if none


class GANLosses(eqx.Module):
    """Per-generator-step records of the scan (last discriminator step's batch)."""

    discriminator: Float[Array, " n_steps"]  # L_D + penalty
    generator: Float[Array, " n_steps"]  # L_G
    divergence_estimate: Float[Array, " n_steps"]  # B = offset + slope L_D, before the update


class DiscriminatorState(eqx.Module):
    """The discriminator alone, trained between fixed sources; diverged_at is the first step
    with a non-finite loss or parameter (-1 if none)."""

    discriminator: eqx.Module
    opt_state: optax.OptState
    step: Int[Array, ""]
    diverged_at: Int[Array, ""]


class DiscriminatorLosses(eqx.Module):
    discriminator: Float[Array, " n_steps"]  # L_D + penalty
    divergence_estimate: Float[Array, " n_steps"]  # B, before the update


def _params(model):
    return eqx.filter(model, eqx.is_inexact_array)


def _is_conditional(spec) -> bool:
    return isinstance(spec, (ConditionalMLPGeneratorSpec, ConditionalMLPDiscriminatorSpec))


# --------------------------------------------------------------------------------------
# Sources.


def _check_source(name: str, source) -> None:
    if isinstance(source, (AbstractDistribution, FrozenGenerator, LabelledData)):
        return
    if eqx.is_array(source) and source.ndim == 2 and source.shape[0] >= 1:
        return
    shape = getattr(source, "shape", None)
    raise TypeError(
        f"{name} must be a data array (n, d), a law with `sample`, a FrozenGenerator or LabelledData, "
        f"got {type(source).__name__}{'' if shape is None else f' of shape {shape}'}"
    )


def _draw(source, key, n: int):
    """(points (n, d) float32, labels (n,) or None)."""
    if isinstance(source, LabelledData):
        index = jax.random.randint(key, (n,), 0, source.points.shape[0])
        return source.points[index], source.labels[index]
    if isinstance(source, (AbstractDistribution, FrozenGenerator)):
        return jax.lax.stop_gradient(source.sample(key, n)).astype(jnp.float32), None
    index = jax.random.randint(key, (n,), 0, source.shape[0])
    return jnp.asarray(source[index], jnp.float32), None


def _raw(network, x, labels):
    if labels is None:
        return jax.vmap(network)(x)
    return jax.vmap(network)(x, labels)


class _DiscriminatorLoss(eqx.Module):
    """L_D + penalty on a batch, with the bound B = offset + slope L_D (before the update) as aux."""

    objective: AbstractGANObjective
    spec: object

    def value(self, network, real, real_labels, fake, key):
        v_real, v_fake = _raw(network, real, real_labels), _raw(network, fake, real_labels)
        loss = self.objective.discriminator_loss(v_real, v_fake)
        # ConditionalMLPDiscriminatorSpec's penalty is zero (the critics' penalties read D(x) only).
        total = loss + self.spec.penalty(network, real, fake, key=key)
        return total, self.objective.bound_offset + self.objective.bound_slope * loss

    def __call__(self, network, batch):
        real, fake, key = batch
        return self.value(network, real, None, fake, key)


class _Project(eqx.Module):
    """The spec's projection after every discriminator update (identity for an unconstrained one)."""

    spec: object

    def __call__(self, network, previous, batch):
        return self.spec.project(network)


def _discriminator_update(discriminator, opt_state, real, real_labels, fake, key, *, objective, spec, optimiser):
    """One optimiser step on L_D + penalty; returns (network, opt_state, loss, estimate)."""
    loss_fn = _DiscriminatorLoss(objective, spec)
    (total, estimate), grads = eqx.filter_value_and_grad(
        lambda network: loss_fn.value(network, real, real_labels, fake, key), has_aux=True
    )(discriminator)
    updates, opt_state = optimiser.update(grads, opt_state, _params(discriminator))
    discriminator = _Project(spec)(eqx.apply_updates(discriminator, updates), discriminator, None)
    return discriminator, opt_state, total, estimate


class _SourceBatches(AbstractBatchSource):
    """B points (float32) of a GAN source: rows of a data array drawn uniformly with
    replacement, or fresh draws of a law or a frozen generator (see `_draw`)."""

    source: object
    batch_size: int = eqx.field(static=True)

    def draw(self, key):
        return _draw(self.source, key, self.batch_size)[0]


def _check_common(objective, discriminator_spec, training, n_steps):
    if not isinstance(objective, AbstractGANObjective):
        raise TypeError(f"objective must be a GAN objective such as NonSaturating(), got {objective!r}")
    objective.check_discriminator_spec(discriminator_spec)
    if not isinstance(training, GANTraining):
        raise TypeError(f"training must be a GANTraining(...), got {training!r}")
    check_count("n_steps", n_steps)


def _check_conditioning(data, generator_spec, discriminator_spec):
    labelled = isinstance(data, LabelledData)
    if not (labelled == _is_conditional(generator_spec) == _is_conditional(discriminator_spec)):
        raise TypeError(
            "a conditional GAN needs LabelledData with ConditionalMLPGeneratorSpec and ConditionalMLPDiscriminatorSpec "
            f"(and an unconditional one none of them), got data {type(data).__name__}, generator_spec "
            f"{type(generator_spec).__name__}, discriminator_spec {type(discriminator_spec).__name__}"
        )
    if labelled:
        classes = {"data": data.n_classes, "generator_spec": generator_spec.n_classes, "discriminator_spec": discriminator_spec.n_classes}
        if len(set(classes.values())) != 1:
            raise ValueError(f"n_classes must agree, got {classes}")


# --------------------------------------------------------------------------------------
# Training.


def init_gan_state(
    key: PRNGKeyArray, *, generator_spec, discriminator_spec, training: GANTraining, data_dim: int
) -> GANState:
    """Fresh networks and optimiser states (vmappable over keys)."""
    return GANState(*adversarial_start(key, generator_spec=generator_spec, opponent_spec=discriminator_spec,
                                       generator_optimiser=training.generator_optimiser(),
                                       opponent_optimiser=training.discriminator_optimiser(), data_dim=data_dim))


@eqx.filter_jit
def train_gan(
    state: GANState,
    data,
    key: PRNGKeyArray,
    *,
    n_steps: int,
    objective: AbstractGANObjective,
    generator_spec,
    discriminator_spec,
    training: GANTraining,
) -> tuple[GANState, GANLosses]:
    """`n_steps` generator steps, each after `discriminator_steps` discriminator steps, as one scan.

    Args:
        state: the replica's current state (`init_gan_state`).
        data: the real source: an array (n, d), a law with `sample`, or `LabelledData`
            for a conditional GAN (with conditional specs).
        key: PRNG key for this chunk of steps.
        n_steps: number of generator steps (static).
        objective: e.g. `NonSaturating()`, `FGAN(KullbackLeibler())`, `WGAN()`.
        generator_spec: `MLPGeneratorSpec` or `ConditionalMLPGeneratorSpec`.
        discriminator_spec: `MLPDiscriminatorSpec`, a critic spec of `models.critics`, or
            `ConditionalMLPDiscriminatorSpec`.
        training: optimiser settings.

    Returns:
        The new state and the per-step `GANLosses`.
    """
    _check_common(objective, discriminator_spec, training, n_steps)
    _check_source("data", data)
    _check_conditioning(data, generator_spec, discriminator_spec)
    d_optimiser, g_optimiser = training.discriminator_optimiser(), training.generator_optimiser()
    batch = training.batch_size
    conditional = isinstance(data, LabelledData)

    def fake_batch(generator, key, labels):
        if conditional:
            return generator_spec.sample(generator, key, labels)
        return generator_spec.sample(generator, key, batch)

    def discriminator_step(generator, carry, step_key):
        discriminator, opt_state = carry
        key_real, key_fake, key_penalty = jax.random.split(step_key, 3)
        real, labels = _draw(data, key_real, batch)
        fake = jax.lax.stop_gradient(fake_batch(generator, key_fake, labels))
        discriminator, opt_state, loss, estimate = _discriminator_update(
            discriminator, opt_state, real, labels, fake, key_penalty,
            objective=objective, spec=discriminator_spec, optimiser=d_optimiser,
        )
        return (discriminator, opt_state), (loss, estimate)

    def generator_step(state: GANState, step_key):
        key_discriminator, key_labels, key_fake = jax.random.split(step_key, 3)
        (discriminator, d_opt_state), (d_losses, estimates) = scan_steps(
            functools.partial(discriminator_step, state.generator),
            (state.discriminator, state.discriminator_opt_state),
            jax.random.split(key_discriminator, training.discriminator_steps),
        )
        _, labels = _draw(data, key_labels, batch)

        def loss_fn(generator):
            return objective.generator_loss(_raw(discriminator, fake_batch(generator, key_fake, labels), labels))

        g_loss, grads = eqx.filter_value_and_grad(loss_fn)(state.generator)
        updates, g_opt_state = g_optimiser.update(grads, state.generator_opt_state, _params(state.generator))
        d_loss = d_losses[-1]
        finite = jnp.isfinite(d_loss) & jnp.isfinite(g_loss)
        new_state = GANState(
            generator=eqx.apply_updates(state.generator, updates),
            discriminator=discriminator,
            generator_opt_state=g_opt_state,
            discriminator_opt_state=d_opt_state,
            step=state.step + 1,
            diverged_at=jnp.where((state.diverged_at < 0) & ~finite, state.step, state.diverged_at),
        )
        return new_state, GANLosses(discriminator=d_loss, generator=g_loss, divergence_estimate=estimates[-1])

    return scan_steps(generator_step, state, jax.random.split(key, n_steps))


def init_discriminator_state(
    key: PRNGKeyArray, *, discriminator_spec, training: GANTraining, data_dim: int
) -> DiscriminatorState:
    """A fresh discriminator and optimiser state (vmappable over keys)."""
    state = init_train_state(discriminator_spec.build(key, data_dim), optimiser=training.discriminator_adam())
    return DiscriminatorState(discriminator=state.model, opt_state=state.opt_state, step=state.step,
                              diverged_at=state.diverged_at)


@eqx.filter_jit
def train_discriminator(
    state: DiscriminatorState,
    real,
    fake,
    key: PRNGKeyArray,
    *,
    n_steps: int,
    objective: AbstractGANObjective,
    discriminator_spec,
    training: GANTraining,
) -> tuple[DiscriminatorState, DiscriminatorLosses]:
    """`n_steps` discriminator steps between two fixed sources P (real) and Q (fake), as one scan.

    Maximises the bound B(v) = offset + slope L_D(v) <= Div(P, Q) over the network, so
    B approaches objective.exact_divergence(P, Q) as the network nears v*.

    Args:
        state: from `init_discriminator_state`.
        real, fake: unconditional sources (arrays (n, d), laws, `FrozenGenerator`s).
        key, n_steps, objective, discriminator_spec, training: as in `train_gan`
            (`training.discriminator_steps` is not used: every step is a discriminator step).

    Returns:
        The new state and per-step `DiscriminatorLosses`.
    """
    _check_common(objective, discriminator_spec, training, n_steps)
    for name, source in (("real", real), ("fake", fake)):
        _check_source(name, source)
        if isinstance(source, LabelledData):
            raise TypeError(f"{name} must be unconditional for train_discriminator, got LabelledData")
    if _is_conditional(discriminator_spec):
        raise TypeError(f"train_discriminator needs an unconditional discriminator spec, got {discriminator_spec!r}")
    batches = IndependentDraws((_SourceBatches(real, training.batch_size), _SourceBatches(fake, training.batch_size)))
    start = TrainState(model=state.discriminator, opt_state=state.opt_state, ema_model=None, step=state.step,
                       diverged_at=state.diverged_at)
    result = train(start, _DiscriminatorLoss(objective, discriminator_spec), optimiser=training.discriminator_adam(),
                   batches=batches, n_steps=n_steps, key=key, record_every=1, has_aux=True,
                   after_step=_Project(discriminator_spec))
    end = result.state
    return (
        DiscriminatorState(discriminator=end.model, opt_state=end.opt_state, step=end.step, diverged_at=end.diverged_at),
        DiscriminatorLosses(discriminator=result.losses, divergence_estimate=result.aux),
    )


@eqx.filter_jit
def generator_gradient_norm(
    generator, discriminator, key: PRNGKeyArray, *, objective: AbstractGANObjective, generator_spec: MLPGeneratorSpec, n: int
) -> Float[Array, ""]:
    """||grad_theta L_G(theta)||_2 against a frozen discriminator, from n latent draws.

    L_G = mean_j objective.generator_cost(v(G_theta(z_j))), the Euclidean norm taken over
    all of the generator's parameters. With a near-perfect discriminator the saturating
    cost log(1 - D) has a vanishing gradient and -log D does not (Goodfellow et al.
    2014, Sec. 3; Arjovsky & Bottou 2017, Thm. 2.4 and 2.5).

    Args:
        generator: the network G_theta; discriminator: the network v (held fixed).
        key: PRNG key for the latent draws; n: their number.

    Returns:
        The gradient norm, a float32 scalar.
    """
    # Only the array leaves: the networks also hold activation functions, which
    # stop_gradient (a tree map over every leaf) rejects.
    dynamic, static = eqx.partition(discriminator, eqx.is_array)
    discriminator = eqx.combine(jax.lax.stop_gradient(dynamic), static)

    def loss_fn(g):
        return objective.generator_loss(jax.vmap(discriminator)(generator_spec.sample(g, key, n)))

    grads = eqx.filter_grad(loss_fn)(generator)
    return optax.tree.norm(grads)


# --------------------------------------------------------------------------------------
# Replicas: a leading axis R on states, keys and per-replica data.


def _is_shared(source) -> bool:
    """Laws are shared by all replicas; arrays, LabelledData and frozen generators are per replica."""
    return isinstance(source, AbstractDistribution)


def _per_replica(*sources):
    """(per-replica sources, shared sources): each source sits in one tuple, None in the other,
    so that only the per-replica ones are vmapped (and sharded)."""
    return tuple(None if _is_shared(s) else s for s in sources), tuple(s if _is_shared(s) else None for s in sources)


def _merge(per_replica, shared):
    return tuple(s if p is None else p for p, s in zip(per_replica, shared))


def init_replicas(keys, *, generator_spec, discriminator_spec, training: GANTraining, data_dim: int,
                  mesh: jax.sharding.Mesh | None = None) -> GANState:
    """GAN states for R replicas, one per key, stacked along a leading axis (split over `mesh`'s devices when given)."""
    return sharding.vmap_sharded(init_gan_state, keys, mesh=mesh, generator_spec=generator_spec,
                                 discriminator_spec=discriminator_spec, training=training, data_dim=data_dim)


def _train_gan_one(state, key, per_replica, *, shared, **settings):
    (data,) = _merge(per_replica, shared)
    return train_gan(state, data, key, **settings)


def train_replicas(states, data, keys, *, mesh: jax.sharding.Mesh | None = None, **settings):
    """`train_gan` on R replicas as one program: states and keys (R,), data (R, n, d) or a shared law.

    Args:
        states, keys: R replicas along the leading axis; data: per replica, or a law shared by all.
        mesh: a `models.sharding.mesh_for` mesh: the replica axis is split over its
            devices; None runs on the default device.
        settings: `train_gan`'s keywords (n_steps, objective, generator_spec,
            discriminator_spec, training), common to all.

    Returns the new states and `GANLosses` of shape (R, n_steps).
    """
    per_replica, shared = _per_replica(data)
    return sharding.vmap_sharded(_train_gan_one, states, keys, per_replica, mesh=mesh, shared=shared, **settings)


def init_discriminator_replicas(keys, *, discriminator_spec, training: GANTraining, data_dim: int,
                                mesh: jax.sharding.Mesh | None = None) -> DiscriminatorState:
    """Discriminator states for R replicas, one per key (split over `mesh`'s devices when given)."""
    return sharding.vmap_sharded(init_discriminator_state, keys, mesh=mesh, discriminator_spec=discriminator_spec,
                                 training=training, data_dim=data_dim)


def _train_discriminator_one(state, key, per_replica, *, shared, **settings):
    real, fake = _merge(per_replica, shared)
    return train_discriminator(state, real, fake, key, **settings)


def train_discriminator_replicas(states, real, fake, keys, *, mesh: jax.sharding.Mesh | None = None, **settings):
    """`train_discriminator` on R replicas: laws are shared, arrays (R, n, d) and frozen generators per replica.

    `settings` are `train_discriminator`'s keywords (n_steps, objective,
    discriminator_spec, training); with a `mesh`, the replica axis is split over its
    devices (see `train_replicas`).
    """
    per_replica, shared = _per_replica(real, fake)
    return sharding.vmap_sharded(_train_discriminator_one, states, keys, per_replica, mesh=mesh, shared=shared, **settings)

