"""A time-conditioned noise predictor eps_theta(x, t) and its training by the simple loss.

The network is chosen in a config as a *spec*, ``EpsilonMLPSpec(width=128, depth=3)``;
``spec.build(key, dim, sde)`` returns an ``EpsilonNetwork``. It maps ONE point ``x`` of
shape ``(d,)`` and a scalar time ``t`` of the forward SDE to a predicted noise of shape
``(d,)`` (``jax.vmap`` it over a batch), holds float32 parameters whatever
``jax_enable_x64`` says, and computes in that dtype.

Parameterisation:

    eps_theta(x, t) = MLP([ c_in(t) x, emb(t) ]),   c_in(t) = 1 / sqrt(m(t)^2 sigma_data^2 + s(t)^2),

where x_t = m(t) x_0 + s(t) eps is the SDE's marginal (so c_in x_t has unit scale at every
t, for VP and VE alike; Karras et al. 2022, Table 1) and emb is the sinusoidal embedding
of ``time_scale * t`` (Vaswani et al. 2017, Sec. 3.5; Ho et al. 2020, App. B, which embed
the integer step: with time_scale = 1000, t = i / 1000 reads the same). SiLU activations
(Ho et al.'s swish).

Training minimises the simple loss (Ho et al. 2020, eq. 14) in continuous time,

    L(theta) = E_{t ~ U[t_min, T], x_0 ~ data, eps ~ N(0, I)} || eps - eps_theta(m(t) x_0 + s(t) eps, t) ||^2,

i.e. denoising score matching with weight lambda(t) = s(t)^2 (Song et al. 2021, eq. 7),
with Adam, gradient clipping at global norm 1 and an exponential moving average of the
weights (Ho et al. 2020, App. B), each block of steps one ``jax.lax.scan``.

The trained network is a noise predictor in SDE time; ``as_score`` turns it into the
score -eps_theta / s(t) for the SDE and ODE samplers, ``theory.diffusion_samplers.
DiscreteEpsilon`` into a DDPM noise predictor.

References:
    Ho, Jain & Abbeel, "Denoising diffusion probabilistic models", NeurIPS 2020, eq. (14),
    Algorithm 1 and App. B.
    Song, Sohl-Dickstein, Kingma, Kumar, Ermon & Poole, "Score-based generative modeling
    through stochastic differential equations", ICLR 2021, eq. (7).
    Karras, Aittala, Aila & Laine, "Elucidating the design space of diffusion-based
    generative models", NeurIPS 2022, Table 1 (c_in).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from models.mlp import linear_layers
from models.training import (
    PARAM_DTYPE,
    AbstractBatchSource,
    AbstractDenoisingBatches,
    AbstractTraining,
    AdamSpec,
    EMA,
    FreshDraws,
    TrainResult,
    check_real,
    init_train_state,
    run_in_chunks,
    train,
    train_replicas,
)
from theory.diffusion_samplers import ScoreFromEpsilon
from theory.sde import AbstractSDE
from theory.validation import check_count

__all__ = [
    "PARAM_DTYPE",
    "EpsilonMLPSpec",
    "EpsilonNetwork",
    "EpsilonTraining",
    "SimpleLossBatches",
    "sinusoidal_embedding",
    "simple_batch_loss",
    "simple_loss",
    "train_epsilon_network",
    "train_epsilon_networks",
]

def sinusoidal_embedding(t: Float[Array, ""], dim: int, time_scale: float = 1000.0) -> Float[Array, " dim"]:
    """The transformer position embedding of the scalar time_scale * t.

    emb(t)_k = sin(time_scale t w_k), emb(t)_{k + dim/2} = cos(time_scale t w_k),
    w_k = 10000^(-k / (dim/2 - 1)), k = 0..dim/2 - 1.

    Args:
        t: a scalar time.
        dim: the embedding size, even and >= 4.
        time_scale: multiplies t first (1000: the DDPM step index for t = i / 1000).

    Returns:
        Float[Array, "dim"], in t's floating dtype.

    Reference: Vaswani et al., "Attention is all you need", NeurIPS 2017, Sec. 3.5;
    Ho et al. (2020), App. B (get_timestep_embedding).
    """
    if dim % 2 or dim < 4:
        raise ValueError(f"dim must be even and >= 4, got {dim}")
    half = dim // 2
    t = jnp.asarray(t)
    dtype = jnp.result_type(t, jnp.float32)
    frequencies = jnp.exp(-math.log(10000.0) * jnp.arange(half, dtype=dtype) / (half - 1))
    angles = time_scale * t.astype(dtype) * frequencies
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)])


class EpsilonNetwork(eqx.Module):
    """eps_theta(x, t) = MLP([c_in(t) x, emb(t)]), SiLU activations; see the module docstring.

    Every linear layer owns its weights.
    """

    layers: tuple[eqx.nn.Linear, ...]
    sde: AbstractSDE
    data_scale: float = eqx.field(static=True)
    embedding_dim: int = eqx.field(static=True)
    time_scale: float = eqx.field(static=True)

    def __call__(self, x: Float[Array, " d"], t: Float[Array, ""]) -> Float[Array, " d"]:
        """The predicted noise at one point and one time.

        Args:
            x: one point, shape ``(d,)``; cast to the parameters' dtype (float32).
            t: the SDE time, shape ``()``.

        Returns:
            eps_theta(x, t), shape ``(d,)``, float32.
        """
        dtype = self.layers[0].weight.dtype
        x = jnp.asarray(x).astype(dtype)
        t = jnp.asarray(t).astype(dtype)
        scale, std = self.sde.marginal_scale(t), self.sde.marginal_std(t)
        c_in = jax.lax.rsqrt((scale * self.data_scale) ** 2 + std**2).astype(dtype)
        h = jnp.concatenate([c_in * x, sinusoidal_embedding(t, self.embedding_dim, self.time_scale).astype(dtype)])
        for layer in self.layers[:-1]:
            h = jax.nn.silu(layer(h))
        return self.layers[-1](h)

    def as_score(self) -> ScoreFromEpsilon:
        """The score s_theta(x, t) = -eps_theta(x, t) / s(t) of the network's SDE."""
        return ScoreFromEpsilon(self.sde, self)


class EpsilonMLPSpec(eqx.Module):
    """Spec of an ``EpsilonNetwork``: hashable, storable in a config.

    Args:
        width: hidden units per layer, >= 1.
        depth: number of hidden layers, >= 1.
        embedding_dim: size of the sinusoidal time embedding, even, >= 4.
        data_scale: sigma_data, the clean data's per-coordinate standard deviation,
            used only to normalise the input (sqrt(8/3 + 0.1) = 1.66 for the 9-mode grid).
        time_scale: the embedding reads time_scale * t.
    """

    width: int = eqx.field(static=True, default=128)
    depth: int = eqx.field(static=True, default=3)
    embedding_dim: int = eqx.field(static=True, default=32)
    data_scale: float = eqx.field(static=True, default=1.0)
    time_scale: float = eqx.field(static=True, default=1000.0)

    def __check_init__(self):
        check_count("width", self.width)
        check_count("depth", self.depth)
        check_count("embedding_dim", self.embedding_dim, minimum=4)
        if self.embedding_dim % 2:
            raise ValueError(f"embedding_dim must be even, got {self.embedding_dim}")
        check_real("data_scale", self.data_scale, minimum=0.0, include_minimum=False)
        check_real("time_scale", self.time_scale, minimum=0.0, include_minimum=False)

    def build(self, key: PRNGKeyArray, dim: int, sde: AbstractSDE) -> EpsilonNetwork:
        """A fresh network on R^dim for the forward process `sde` (float32, Equinox's
        default uniform initialisation).

        Args:
            key: PRNG key of the initial weights.
            dim: d >= 1.
            sde: the forward SDE whose marginals set c_in(t).

        Returns:
            An ``EpsilonNetwork`` with layers (d + embedding_dim) -> width -> ... -> d.
        """
        dim = check_count("dim", dim)
        if not isinstance(sde, AbstractSDE):
            raise TypeError(f"sde must be an AbstractSDE, got {sde!r}")
        sizes = [dim + self.embedding_dim] + [self.width] * self.depth + [dim]
        layers = linear_layers(key, sizes)
        return EpsilonNetwork(
            layers=layers,
            sde=sde,
            data_scale=float(self.data_scale),
            embedding_dim=int(self.embedding_dim),
            time_scale=float(self.time_scale),
        )


def simple_loss(
    epsilon_fn: Callable,
    sde: AbstractSDE,
    x0: Float[Array, "n d"],
    t: Float[Array, " n"],
    noise: Float[Array, "n d"],
) -> Float[Array, ""]:
    """Ho et al.'s simple loss on one batch: mean_i || eps_i - eps_theta(m(t_i) x0_i + s(t_i) eps_i, t_i) ||^2.

    Its minimiser over all functions is eps*(x, t) = E[eps | x_t = x] = -s(t) grad log p_t(x),
    and for any eps_theta the excess over eps* is E_t s(t)^2 F_t(s_theta) (the Fisher
    divergence of the implied score, weighted by s^2): the cross term vanishes because
    E[eps - eps* | x_t] = 0.

    Args:
        epsilon_fn: (x: (d,), t: ()) -> (d,), e.g. an ``EpsilonNetwork``.
        sde: the forward SDE, for m(t) and s(t).
        x0: clean draws, shape ``(n, d)``.
        t: times, shape ``(n,)``.
        noise: eps_i ~ N(0, I), shape ``(n, d)``.

    Returns:
        The mean over the batch, shape ``()``, in x0's dtype.

    Reference: Ho et al. (2020), eq. (14); Song et al. (2021), eq. (7) with lambda = s^2;
    Vincent (2011) for the decomposition.
    """
    x0, t, noise = jnp.asarray(x0), jnp.asarray(t), jnp.asarray(noise)
    if x0.ndim != 2 or noise.shape != x0.shape or t.shape != x0.shape[:1]:
        raise ValueError(f"x0 and noise must have shape (n, d) and t (n,), got {x0.shape}, {noise.shape} and {t.shape}")
    dtype = x0.dtype
    scale = sde.marginal_scale(t)[:, None].astype(dtype)
    std = sde.marginal_std(t)[:, None].astype(dtype)
    predicted = jax.vmap(epsilon_fn)(scale * x0 + std * noise, t).astype(dtype)
    return jnp.mean(jnp.sum((noise - predicted) ** 2, axis=-1))


class SimpleLossBatches(AbstractDenoisingBatches):
    """Batches of the simple loss: clean draws, one time each uniform on [t_min, t_max], and the noise.

    B = (x0, t, eps): x0 ~ clean (b, d), t_i ~ U[t_min, t_max], eps ~ N(0, I), all
    float32. The key is split in three, (data, time, noise), in that order
    (``models.training.AbstractDenoisingBatches``, with the time as the level).

    Args:
        clean: the clean draws' source (``FreshDraws(sample, b)`` or ``FiniteSample(data, b)``).
        t_min: the smallest training time, in [0, t_max).
        t_max: the SDE's horizon T.
    """

    clean: AbstractBatchSource
    t_min: float = eqx.field(static=True)
    t_max: float = eqx.field(static=True)

    def __check_init__(self):
        check_real("t_max", self.t_max, minimum=0.0, include_minimum=False)
        check_real("t_min", self.t_min, minimum=0.0, maximum=self.t_max, include_maximum=False)

    def draw_levels(self, key: PRNGKeyArray, n: int) -> Float[Array, " n"]:
        """n times, i.i.d. uniform on [t_min, t_max]."""
        return jax.random.uniform(key, (n,), PARAM_DTYPE, self.t_min, self.t_max)


def simple_batch_loss(network: EpsilonNetwork, batch: tuple) -> Float[Array, ""]:
    """``simple_loss(network, network.sde, *batch)`` for a ``SimpleLossBatches`` batch:
    the loss ``train`` minimises."""
    return simple_loss(network, network.sde, *batch)


class EpsilonTraining(AbstractTraining):
    """Optimisation settings of the simple loss.

    Args:
        optimiser: the optimiser spec (Ho et al.: Adam at 2e-4 for their U-Nets, the
            gradient clipped at global norm 1; the default here, 1e-3, suits small MLPs).
        steps: optimiser steps, >= 1.
        batch_size: examples per step (fresh data draws, one time each), >= 1.
        record_every: the loss is averaged over blocks of this many steps (must divide
            `steps`); each block is one compiled call (progress can be reported between).
        ema: the weights' moving average, or None (Ho et al.: EMA(0.9999) over 800k steps).
        t_min: times are drawn from U[t_min, T], t_min in (0, 1) and below the SDE's T
            (the samplers stop at t_end >= t_min).
    """

    # The fields in AbstractTraining's order, then t_min (the order of the repr and of
    # positional arguments).
    optimiser: AdamSpec = eqx.field(static=True, default=AdamSpec(1e-3, clip_norm=1.0))
    steps: int = eqx.field(static=True, default=10_000)
    batch_size: int = eqx.field(static=True, default=512)
    record_every: int = eqx.field(static=True, default=500)
    ema: EMA | None = eqx.field(static=True, default=EMA(0.999))
    t_min: float = eqx.field(static=True, default=1e-3)

    def __check_init__(self):
        check_real("t_min", self.t_min, minimum=0.0, maximum=1.0, include_minimum=False, include_maximum=False)


def train_epsilon_network(
    network: EpsilonNetwork,
    sample_data: Callable,
    *,
    key: PRNGKeyArray,
    training: EpsilonTraining,
    on_block: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train eps_theta by the simple loss, float32, one compiled call per block of steps.

    ``models.training.train`` on ``SimpleLossBatches`` run block by block with
    ``run_in_chunks``: block j (of record_every steps) uses the j-th key of
    ``jax.random.split(key, steps // record_every)``.

    Args:
        network: the initial network (``EpsilonMLPSpec().build(key, d, sde)``).
        sample_data: (key, n) -> clean draws (n, d); an Equinox module (e.g. a
            ``MixtureOfGaussians``'s bound ``sample``) is traced, not baked in.
        key: PRNG key of the batches.
        training: the optimisation settings.
        on_block: called as on_block(step, mean_loss) after each block (progress).

    Returns:
        A ``models.training.TrainResult``: ``.ema_model`` (the network to sample with,
        when training.ema is set), ``.model`` (the last iterate), ``.steps``, ``.losses``
        (the mean simple loss of the raw weights over each block), ``.diverged_at``.

    Reference: Ho et al. (2020), Algorithm 1 (continuous t here).
    """
    batches = _simple_loss_batches(network.sde, sample_data, training)
    block_keys = jax.random.split(key, training.steps // training.record_every)

    def train_block(state, block):
        return train(state, simple_batch_loss, batches=batches, n_steps=training.record_every, key=block_keys[block],
                     **training.loop_settings())

    state = init_train_state(network, optimiser=training.optimiser, ema=training.ema)
    return _train_in_blocks(train_block, state, training, on_block, lambda losses: float(losses[0]))


def train_epsilon_networks(
    networks: EpsilonNetwork,
    sample_data: Callable,
    *,
    keys: PRNGKeyArray,
    training: EpsilonTraining,
    on_block: Callable[[int, float], None] | None = None,
    mesh: jax.sharding.Mesh | None = None,
) -> TrainResult:
    """``train_epsilon_network`` for R networks at once (one per seed), optionally split over devices.

    Replica r runs the arithmetic of ``train_epsilon_network(networks[r], sample_data,
    key=keys[r], training=training)`` (the same blocks and block keys), each block one
    compiled program vmapped over the replicas (``models.training.train_replicas``):
    equal to it up to float32 rounding (vmap may order batched sums differently).

    Args:
        networks: R initial networks stacked along a leading axis, e.g.
            ``eqx.filter_vmap(lambda k: spec.build(k, d, sde))(init_keys)``; one SDE.
        sample_data: (key, n) -> clean draws (n, d), shared by every replica.
        keys: (R,) PRNG keys of the batches.
        training: the optimisation settings.
        on_block: called as on_block(step, loss) after each block, loss the mean over
            the replicas of their block losses (NaN once a replica has diverged).
        mesh: a ``models.sharding.replica_mesh`` to split the replicas over, or None.

    Returns:
        A ``models.training.TrainResult`` with the replica axis first (``losses`` and
        ``steps`` of shape (R, steps / record_every)).

    Reference: Ho et al. (2020), Algorithm 1 (continuous t here).
    """
    batches = _simple_loss_batches(networks.sde, sample_data, training)
    if keys is None or not jnp.ndim(keys):
        raise ValueError(f"keys must be an (R,) array of PRNG keys, one per network, got {keys!r}")
    block_keys = jax.vmap(lambda key: jax.random.split(key, training.steps // training.record_every))(keys)

    def train_block(states, block):
        return train_replicas(states, simple_batch_loss, batches=batches, n_steps=training.record_every,
                              keys=block_keys[:, block], mesh=mesh, **training.loop_settings())

    states = eqx.filter_vmap(lambda network: init_train_state(network, optimiser=training.optimiser,
                                                              ema=training.ema))(networks)
    return _train_in_blocks(train_block, states, training, on_block, lambda losses: float(jnp.mean(losses[:, 0])))


def _simple_loss_batches(sde: AbstractSDE, sample_data: Callable, training: EpsilonTraining) -> SimpleLossBatches:
    if not isinstance(training, EpsilonTraining):
        raise TypeError(f"training must be an EpsilonTraining, got {training!r}")
    if not training.t_min < sde.t_max:
        raise ValueError(f"training.t_min must be < T={sde.t_max}, got {training.t_min}")
    return SimpleLossBatches(FreshDraws(sample_data, training.batch_size), training.t_min, float(sde.t_max))


def _train_in_blocks(train_block, state, training: EpsilonTraining, on_block, block_loss) -> TrainResult:
    """Block j (steps j * record_every .. (j + 1) * record_every - 1) is ``train_block(state, j)``,
    one compiled call; ``on_block(stop, block_loss(losses))`` after each; the block records
    joined along their last axis."""
    def advance(state, start, stop):
        result = train_block(state, stop // training.record_every - 1)
        return result.state, result

    def report(state, stop, result):
        if on_block is not None:
            on_block(stop, block_loss(result.losses))

    boundaries = [(block + 1) * training.record_every for block in range(training.steps // training.record_every)]
    state, chunks = run_in_chunks(advance, state, boundaries, on_boundary=report)
    results = [result for _, result in chunks]
    return TrainResult(
        state=state,
        losses=jnp.concatenate([result.losses for result in results], axis=-1),
        steps=jnp.concatenate([result.steps for result in results], axis=-1),
    )
