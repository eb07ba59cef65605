"""A noise-conditional score network s_theta(x, sigma) and its denoising score matching.

The network is chosen in a config as a *spec*, ``ScoreMLP(width=128, hidden_layers=2)``;
``spec.build(key, dim)`` returns a ``NoiseConditionalMLP``. It maps ONE point ``x`` of
shape ``(d,)`` and a scalar ``sigma`` to a score of shape ``(d,)`` (``jax.vmap`` it over
a batch), holds float32 parameters whatever ``jax_enable_x64`` says, and computes in
that dtype.

Parameterisation (why the network is not a plain MLP of (x, sigma)): the score of a
law perturbed by N(0, sigma^2 I) scales like 1 / sigma, and x ranges over
sqrt(data_scale^2 + sigma^2), which is 20 times wider at sigma = 20 than at sigma = 1.
So the MLP reads the normalised input c_in(sigma) x, c_in = 1 / sqrt(data_scale^2 +
sigma^2), and log sigma, and its output is divided by sigma (Song & Ermon 2020,
"technique 3"; Karras et al. 2022, Table 1, c_in). With the sigma^2 weighting the
per-level loss is then (1/2) E || MLP + z ||^2, of order d at every level.

Training is denoising score matching over the noise levels with lambda(sigma) =
sigma^2, Adam, the whole loop one ``jax.lax.scan``.

References:
    Vincent, "A connection between score matching and denoising autoencoders",
    Neural Computation 23(7), 2011, eqs. (7)-(11).
    Song & Ermon, "Generative modeling by estimating gradients of the data
    distribution", NeurIPS 2019, eqs. (5)-(6).
    Song & Ermon, "Improved techniques for training score-based generative models",
    NeurIPS 2020, Section 3.3 (s_theta(x, sigma) = s_theta(x) / sigma).
"""

from __future__ import annotations

import dataclasses
import numbers

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, PRNGKeyArray

__all__ = [
    "PARAM_DTYPE",
    "DSMTrainingResult",
    "NoiseConditionalMLP",
    "ScoreMLP",
    "dsm_loss",
    "dsm_loss_per_sample",
    "score_at_level",
    "train_dsm",
]

PARAM_DTYPE = jnp.float32
"""Dtype of every parameter: training runs in float32 even when float64 is enabled."""


def _require_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _require_positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


class NoiseConditionalMLP(eqx.Module):
    """s_theta(x, sigma) = MLP([c_in(sigma) x, log sigma]) / sigma, softplus activations.

    c_in(sigma) = 1 / sqrt(data_scale^2 + sigma^2). Every linear layer owns its weights.
    """

    layers: tuple[eqx.nn.Linear, ...]
    data_scale: float = eqx.field(static=True)

    def __call__(self, x: Float[Array, " d"], sigma: Float[Array, ""]) -> Float[Array, " d"]:
        """The score estimate at one point and one noise level.

        Args:
            x: one point, shape ``(d,)``; cast to the parameters' dtype (float32).
            sigma: the noise level, shape ``()``, > 0.

        Returns:
            s_theta(x, sigma), shape ``(d,)``, float32.
        """
        dtype = self.layers[0].weight.dtype
        x = jnp.asarray(x).astype(dtype)
        sigma = jnp.asarray(sigma).astype(dtype)
        c_in = jax.lax.rsqrt(jnp.asarray(self.data_scale, dtype) ** 2 + sigma**2)
        h = jnp.concatenate([c_in * x, jnp.log(sigma)[None]])
        for layer in self.layers[:-1]:
            h = jax.nn.softplus(layer(h))
        return self.layers[-1](h) / sigma


class ScoreMLP(eqx.Module):
    """Spec of a ``NoiseConditionalMLP``: hashable, storable in a config.

    Args:
        width: hidden units per layer, >= 1 (the NCSN toy model: 128).
        hidden_layers: number of hidden layers, >= 1 (the NCSN toy model: 2, i.e.
            2-128-128-2 plus the sigma input).
        data_scale: the clean data's typical per-coordinate standard deviation, > 0,
            used only to normalise the input (about 5 for the NCSN target).

    Reference: Song & Ermon (2019), Section 3.2 / ermongroup/ncsn toy_runner.py
    (MLP 2-128-128-2, softplus).
    """

    width: int = eqx.field(static=True, default=128)
    hidden_layers: int = eqx.field(static=True, default=2)
    data_scale: float = eqx.field(static=True, default=5.0)

    def __check_init__(self):
        _require_int("width", self.width, 1)
        _require_int("hidden_layers", self.hidden_layers, 1)
        _require_positive("data_scale", self.data_scale)

    def build(self, key: PRNGKeyArray, dim: int) -> NoiseConditionalMLP:
        """A fresh network on R^dim (PyTorch-style uniform initialisation, float32).

        Args:
            key: PRNG key of the initial weights.
            dim: d >= 1.

        Returns:
            A ``NoiseConditionalMLP`` with layers (d + 1) -> width -> ... -> d.
        """
        dim = _require_int("dim", dim, 1)
        sizes = [dim + 1] + [self.width] * self.hidden_layers + [dim]
        keys = jax.random.split(key, len(sizes) - 1)
        layers = tuple(
            eqx.nn.Linear(fan_in, fan_out, dtype=PARAM_DTYPE, key=k)
            for k, fan_in, fan_out in zip(keys, sizes[:-1], sizes[1:])
        )
        return NoiseConditionalMLP(layers=layers, data_scale=float(self.data_scale))


def score_at_level(model, sigma):
    """The batched score x -> s_theta(x, sigma) at one level, (n, d) -> (n, d).

    Args:
        model: a noise-conditional score s(x, sigma) of one point.
        sigma: the level, a scalar.

    Returns:
        A function of points (n, d), as ``theory.fisher_divergence`` expects.
    """
    batched = jax.jit(jax.vmap(model, in_axes=(0, None)))
    return lambda x: batched(x, sigma)


def dsm_loss_per_sample(
    model,
    clean: Float[Array, "n d"],
    sigma: Float[Array, " n"],
    noise: Float[Array, "n d"],
) -> Float[Array, " n"]:
    """sigma^2-weighted denoising score-matching loss of each example.

    l_i = lambda(sigma_i) * 1/2 || s(x~_i, sigma_i) - grad log q(x~_i | x_i) ||^2
        = 1/2 || sigma_i s(x~_i, sigma_i) + z_i ||^2,
    with x~_i = x_i + sigma_i z_i, grad log q(x~ | x) = -(x~ - x) / sigma^2 = -z / sigma,
    lambda(sigma) = sigma^2.

    Args:
        model: s(x, sigma) of one point.
        clean: clean draws x_i, shape ``(n, d)``.
        sigma: the level of each example, shape ``(n,)``.
        noise: z_i ~ N(0, I), shape ``(n, d)``.

    Returns:
        The losses, shape ``(n,)``, in the model's dtype.

    Reference: Vincent (2011), eq. (11); Song & Ermon (2019), eqs. (5)-(6).
    """
    dtype = jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))[0].dtype
    clean, sigma, noise = (jnp.asarray(a).astype(dtype) for a in (clean, sigma, noise))
    if clean.ndim != 2 or noise.shape != clean.shape or sigma.shape != clean.shape[:1]:
        raise ValueError(
            f"clean and noise must have shape (n, d) and sigma (n,), got {clean.shape}, "
            f"{noise.shape} and {sigma.shape}"
        )
    perturbed = clean + sigma[:, None] * noise
    scores = jax.vmap(model)(perturbed, sigma)
    return 0.5 * jnp.sum((sigma[:, None] * scores + noise) ** 2, axis=-1)


def dsm_loss(model, clean, sigma, noise) -> Float[Array, ""]:
    """The mean of ``dsm_loss_per_sample``: with sigma drawn uniformly from the L levels,
    an unbiased estimate of (1 / L) sum_i sigma_i^2 l(theta; sigma_i), Song & Ermon (2019)
    eq. (6)."""
    return jnp.mean(dsm_loss_per_sample(model, clean, sigma, noise))


@dataclasses.dataclass(frozen=True)
class DSMTrainingResult:
    """A trained score network with its loss curve.

    Attributes:
        model: the trained network.
        steps: int array (r,), the last optimiser step of each recorded block.
        losses: float array (r,), the mean training loss over each block of
            ``record_every`` steps (each step a fresh batch, so this is an unbiased
            estimate of the population loss at that point of training).
    """

    model: NoiseConditionalMLP
    steps: np.ndarray
    losses: np.ndarray


@eqx.filter_jit
def _train_scan(model, sample_clean, sigmas, key, steps: int, batch_size: int, learning_rate: float, record_every: int):
    optimiser = optax.adam(learning_rate)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    dtype = jax.tree.leaves(params)[0].dtype
    sigmas = jnp.asarray(sigmas, dtype)

    def loss_fn(params, clean, sigma, noise):
        return dsm_loss(eqx.combine(params, static), clean, sigma, noise)

    def step(carry, step_key):
        params, opt_state = carry
        key_clean, key_level, key_noise = jax.random.split(step_key, 3)
        clean = sample_clean(key_clean, batch_size).astype(dtype)
        sigma = sigmas[jax.random.randint(key_level, (batch_size,), 0, sigmas.shape[0])]
        noise = jax.random.normal(key_noise, clean.shape, dtype)
        loss, grads = jax.value_and_grad(loss_fn)(params, clean, sigma, noise)
        updates, opt_state = optimiser.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    def block(carry, block_keys):
        carry, losses = jax.lax.scan(step, carry, block_keys)
        return carry, jnp.mean(losses)

    keys = jax.random.split(key, steps).reshape(steps // record_every, record_every)
    (params, _), losses = jax.lax.scan(block, (params, optimiser.init(params)), keys)
    return eqx.combine(params, static), losses


def train_dsm(
    model: NoiseConditionalMLP,
    sample_clean,
    sigmas,
    *,
    key: PRNGKeyArray,
    steps: int,
    batch_size: int,
    learning_rate: float,
    record_every: int | None = None,
) -> DSMTrainingResult:
    """Train a noise-conditional score by denoising score matching with Adam.

    Minimises L(theta) = (1 / L) sum_i sigma_i^2 E || s_theta(x + sigma_i z, sigma_i)
    + z / sigma_i ||^2 / 2 over x ~ data, z ~ N(0, I), one level drawn uniformly per
    example, a fresh batch every step. The loop is one ``jax.lax.scan``, float32.

    Args:
        model: the initial network (e.g. ``ScoreMLP().build(key, 2)``).
        sample_clean: (key, n) -> clean draws (n, d); an Equinox module or
            ``eqx.Partial`` is traced (no recompilation for new data laws).
        sigmas: the noise levels, shape (L,).
        key: PRNG key of the batches.
        steps: optimiser steps, >= 1.
        batch_size: examples per step, >= 1.
        learning_rate: Adam step size, > 0.
        record_every: average the loss over blocks of this many steps (must divide
            ``steps``); None records one block.

    Returns:
        A ``DSMTrainingResult``.

    Reference: Song & Ermon (2019), eq. (6) and Section 4.2 (Adam); Kingma & Ba, ICLR 2015.
    """
    steps = _require_int("steps", steps, 1)
    batch_size = _require_int("batch_size", batch_size, 1)
    learning_rate = _require_positive("learning_rate", learning_rate)
    record_every = steps if record_every is None else _require_int("record_every", record_every, 1)
    if steps % record_every:
        raise ValueError(f"record_every must divide steps={steps}, got {record_every}")
    sigmas = np.asarray(sigmas, np.float64)
    if sigmas.ndim != 1 or sigmas.size < 1 or not np.all(np.isfinite(sigmas)) or np.any(sigmas <= 0):
        raise ValueError(f"sigmas must be a nonempty 1-D array of finite levels > 0, got {sigmas}")
    trained, losses = _train_scan(model, sample_clean, sigmas, key, steps, batch_size, learning_rate, record_every)
    return DSMTrainingResult(
        model=trained,
        steps=np.arange(1, steps // record_every + 1) * record_every,
        losses=np.asarray(losses, np.float64),
    )
