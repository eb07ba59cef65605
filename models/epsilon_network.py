"""A time-conditioned noise predictor eps_theta(x, t) and its training by the simple loss.

The network is chosen in a config as a *spec*, ``EpsilonMLP(width=128, depth=3)``;
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

import dataclasses
import math
import numbers
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from theory.diffusion_samplers import ScoreFromEpsilon
from theory.sde import AbstractSDE

__all__ = [
    "PARAM_DTYPE",
    "EpsilonMLP",
    "EpsilonNetwork",
    "EpsilonTraining",
    "EpsilonTrainingResult",
    "sinusoidal_embedding",
    "simple_loss",
    "train_epsilon_network",
]

PARAM_DTYPE = jnp.float32
"""Dtype of every parameter: training runs in float32 even when float64 is enabled."""


def _require_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _require_positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


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


class EpsilonMLP(eqx.Module):
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
        _require_int("width", self.width, 1)
        _require_int("depth", self.depth, 1)
        _require_int("embedding_dim", self.embedding_dim, 4)
        if self.embedding_dim % 2:
            raise ValueError(f"embedding_dim must be even, got {self.embedding_dim}")
        _require_positive("data_scale", self.data_scale)
        _require_positive("time_scale", self.time_scale)

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
        dim = _require_int("dim", dim, 1)
        if not isinstance(sde, AbstractSDE):
            raise ValueError(f"sde must be an AbstractSDE, got {sde!r}")
        sizes = [dim + self.embedding_dim] + [self.width] * self.depth + [dim]
        keys = jax.random.split(key, len(sizes) - 1)
        layers = tuple(
            eqx.nn.Linear(fan_in, fan_out, dtype=PARAM_DTYPE, key=k)
            for k, fan_in, fan_out in zip(keys, sizes[:-1], sizes[1:])
        )
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


class EpsilonTraining(eqx.Module):
    """Optimisation settings of the simple loss.

    Args:
        steps: Adam steps, >= 1.
        batch_size: examples per step (fresh data draws, one time each), >= 1.
        learning_rate: Adam step size (Ho et al.: 2e-4 for their U-Nets), > 0.
        t_min: times are drawn from U[t_min, T], t_min in (0, T) (the samplers stop at
            t_end >= t_min).
        ema_decay: decay of the weights' moving average in [0, 1); 0 keeps the raw
            weights (Ho et al.: 0.9999 over 800k steps).
        gradient_clip: global-norm clip, > 0 (Ho et al.: 1).
        record_every: the loss is averaged over blocks of this many steps (must divide
            `steps`); each block is one compiled scan.
    """

    steps: int = eqx.field(static=True, default=10_000)
    batch_size: int = eqx.field(static=True, default=512)
    learning_rate: float = eqx.field(static=True, default=1e-3)
    t_min: float = eqx.field(static=True, default=1e-3)
    ema_decay: float = eqx.field(static=True, default=0.999)
    gradient_clip: float = eqx.field(static=True, default=1.0)
    record_every: int = eqx.field(static=True, default=500)

    def __check_init__(self):
        _require_int("steps", self.steps, 1)
        _require_int("batch_size", self.batch_size, 1)
        _require_int("record_every", self.record_every, 1)
        if self.steps % self.record_every:
            raise ValueError(f"record_every must divide steps={self.steps}, got {self.record_every}")
        _require_positive("learning_rate", self.learning_rate)
        _require_positive("gradient_clip", self.gradient_clip)
        if not (isinstance(self.t_min, (int, float)) and 0.0 < self.t_min < 1.0):
            raise ValueError(f"t_min must be in (0, 1), got {self.t_min!r}")
        if not (isinstance(self.ema_decay, (int, float)) and 0.0 <= self.ema_decay < 1.0):
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay!r}")

    def optimiser(self) -> optax.GradientTransformation:
        """clip_by_global_norm(gradient_clip), then Adam(learning_rate)."""
        return optax.chain(optax.clip_by_global_norm(self.gradient_clip), optax.adam(self.learning_rate))


@dataclasses.dataclass(frozen=True)
class EpsilonTrainingResult:
    """A trained noise predictor with its loss curve.

    Attributes:
        network: the weights' exponential moving average (the raw weights if
            ema_decay = 0): the network to sample with.
        raw_network: the last optimiser iterate.
        steps: int array (r,), the last optimiser step of each recorded block.
        losses: float array (r,), the mean simple loss of the raw weights over each
            block (a fresh batch every step, so an unbiased estimate of the population
            loss along training).
    """

    network: EpsilonNetwork
    raw_network: EpsilonNetwork
    steps: np.ndarray
    losses: np.ndarray


@eqx.filter_jit
def _train_block(params, static, ema, opt_state, sample_data, key, training: EpsilonTraining, t_max: float):
    optimiser = training.optimiser()
    dtype = jax.tree.leaves(params)[0].dtype

    def loss_fn(params, x0, t, noise):
        network = eqx.combine(params, static)
        return simple_loss(network, network.sde, x0, t, noise)

    def step(carry, step_key):
        params, ema, opt_state = carry
        key_data, key_time, key_noise = jax.random.split(step_key, 3)
        x0 = sample_data(key_data, training.batch_size).astype(dtype)
        t = jax.random.uniform(key_time, (training.batch_size,), dtype, training.t_min, t_max)
        noise = jax.random.normal(key_noise, x0.shape, dtype)
        loss, grads = jax.value_and_grad(loss_fn)(params, x0, t, noise)
        updates, opt_state = optimiser.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        ema = jax.tree.map(lambda e, p: training.ema_decay * e + (1.0 - training.ema_decay) * p, ema, params)
        return (params, ema, opt_state), loss

    (params, ema, opt_state), losses = jax.lax.scan(
        step, (params, ema, opt_state), jax.random.split(key, training.record_every)
    )
    return params, ema, opt_state, jnp.mean(losses)


def train_epsilon_network(
    network: EpsilonNetwork,
    sample_data: Callable,
    *,
    key: PRNGKeyArray,
    training: EpsilonTraining,
    on_block: Callable[[int, float], None] | None = None,
) -> EpsilonTrainingResult:
    """Train eps_theta by the simple loss with Adam, float32, one scan per block of steps.

    Args:
        network: the initial network (``EpsilonMLP().build(key, d, sde)``).
        sample_data: (key, n) -> clean draws (n, d); an Equinox module (e.g. a
            ``MixtureOfGaussians``'s bound ``sample``) is traced, not baked in.
        key: PRNG key of the batches.
        training: the optimisation settings.
        on_block: called as on_block(step, mean_loss) after each block (progress).

    Returns:
        An ``EpsilonTrainingResult``.

    Reference: Ho et al. (2020), Algorithm 1 (continuous t here).
    """
    if not isinstance(training, EpsilonTraining):
        raise ValueError(f"training must be an EpsilonTraining, got {training!r}")
    if not training.t_min < network.sde.t_max:
        raise ValueError(f"training.t_min must be < T={network.sde.t_max}, got {training.t_min}")
    params, static = eqx.partition(network, eqx.is_inexact_array)
    ema = params
    opt_state = training.optimiser().init(params)
    n_blocks = training.steps // training.record_every
    losses = []
    for block, block_key in enumerate(jax.random.split(key, n_blocks)):
        params, ema, opt_state, loss = _train_block(
            params, static, ema, opt_state, sample_data, block_key, training, float(network.sde.t_max)
        )
        losses.append(float(loss))
        if on_block is not None:
            on_block((block + 1) * training.record_every, losses[-1])
    raw = eqx.combine(params, static)
    averaged = eqx.combine(ema, static) if training.ema_decay > 0 else raw
    return EpsilonTrainingResult(
        network=averaged,
        raw_network=raw,
        steps=np.arange(1, n_blocks + 1) * training.record_every,
        losses=np.asarray(losses, np.float64),
    )
