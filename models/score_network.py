"""A noise-conditional score network s_theta(x, sigma) and its denoising score matching.

The network is chosen in a config as a *spec*, ``ScoreMLPSpec(width=128, hidden_layers=2)``;
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
sigma^2: ``train_dsm`` runs ``models.training.train`` (one compiled scan) on
``DSMBatches`` with the settings of a ``DSMTraining`` (Adam by default).

References:
    Vincent, "A connection between score matching and denoising autoencoders",
    Neural Computation 23(7), 2011, eqs. (7)-(11).
    Song & Ermon, "Generative modeling by estimating gradients of the data
    distribution", NeurIPS 2019, eqs. (5)-(6).
    Song & Ermon, "Improved techniques for training score-based generative models",
    NeurIPS 2020, Section 3.3 (s_theta(x, sigma) = s_theta(x) / sigma).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
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
    train,
    train_replicas,
)
from theory.validation import check_count

__all__ = [
    "PARAM_DTYPE",
    "DSMBatches",
    "DSMTraining",
    "NoiseConditionalMLP",
    "ScoreMLPSpec",
    "dsm_batch_loss",
    "dsm_loss",
    "dsm_loss_per_sample",
    "score_at_level",
    "train_dsm",
    "train_dsm_replicas",
]

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


class ScoreMLPSpec(eqx.Module):
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
        check_count("width", self.width)
        check_count("hidden_layers", self.hidden_layers)
        check_real("data_scale", self.data_scale, minimum=0.0, include_minimum=False)

    def build(self, key: PRNGKeyArray, dim: int) -> NoiseConditionalMLP:
        """A fresh network on R^dim (PyTorch-style uniform initialisation, float32).

        Args:
            key: PRNG key of the initial weights.
            dim: d >= 1.

        Returns:
            A ``NoiseConditionalMLP`` with layers (d + 1) -> width -> ... -> d.
        """
        dim = check_count("dim", dim)
        sizes = [dim + 1] + [self.width] * self.hidden_layers + [dim]
        layers = linear_layers(key, sizes)
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


class DSMBatches(AbstractDenoisingBatches):
    """Denoising batches: clean draws, one level per example drawn uniformly, and the noise.

    B = (x, sigma, z): x ~ clean (b, d), sigma_i uniform on the L levels, z ~ N(0, I),
    all float32. The key is split in three, (clean, level, noise), in that order
    (``models.training.AbstractDenoisingBatches``).

    Args:
        clean: the clean draws' source (``FreshDraws(sample, b)`` or ``FiniteSample(data, b)``).
        sigmas: the noise levels, shape (L,), finite and > 0.
    """

    clean: AbstractBatchSource
    sigmas: Float[Array, " L"]

    def __init__(self, clean: AbstractBatchSource, sigmas):
        levels = np.asarray(sigmas, np.float64)
        if levels.ndim != 1 or levels.size < 1 or not np.all(np.isfinite(levels)) or np.any(levels <= 0):
            raise ValueError(f"sigmas must be a nonempty 1-D array of finite levels > 0, got {levels}")
        self.clean = clean
        self.sigmas = jnp.asarray(levels, PARAM_DTYPE)

    def draw_levels(self, key: PRNGKeyArray, n: int) -> Float[Array, " n"]:
        """n levels, each uniform on the L levels."""
        return self.sigmas[jax.random.randint(key, (n,), 0, self.sigmas.shape[0])]


def dsm_batch_loss(model, batch: tuple) -> Float[Array, ""]:
    """``dsm_loss(model, *batch)`` for a ``DSMBatches`` batch: the loss ``train`` minimises."""
    return dsm_loss(model, *batch)


class DSMTraining(AbstractTraining):
    """Optimisation settings of denoising score matching.

    Args:
        optimiser: the optimiser spec (Song & Ermon 2019, Sec. 4.2: Adam; the NCSN toy
            runner: learning rate 1e-3).
        steps: optimiser steps, >= 1.
        batch_size: examples per step (fresh clean draws, one level each), >= 1.
        record_every: the loss is averaged over blocks of this many steps (must divide
            steps).
        ema: the weights' moving average, or None (the default: NCSN trains the toy
            model without one).
    """

    optimiser: AdamSpec = eqx.field(static=True, default=AdamSpec(1e-3))
    steps: int = eqx.field(static=True, default=10_000)
    batch_size: int = eqx.field(static=True, default=128)
    record_every: int = eqx.field(static=True, default=100)
    ema: EMA | None = eqx.field(static=True, default=None)


def train_dsm(
    model: NoiseConditionalMLP,
    sample_clean,
    sigmas,
    *,
    key: PRNGKeyArray,
    training: DSMTraining,
) -> TrainResult:
    """Train a noise-conditional score by denoising score matching.

    Minimises L(theta) = (1 / L) sum_i sigma_i^2 E || s_theta(x + sigma_i z, sigma_i)
    + z / sigma_i ||^2 / 2 over x ~ data, z ~ N(0, I), one level drawn uniformly per
    example, a fresh batch every step: ``models.training.train`` with ``DSMBatches``,
    one compiled scan, float32.

    Args:
        model: the initial network (e.g. ``ScoreMLPSpec().build(key, 2)``).
        sample_clean: (key, n) -> clean draws (n, d); an Equinox module or
            ``eqx.Partial`` is traced (no recompilation for new data laws).
        sigmas: the noise levels, shape (L,).
        key: PRNG key of the batches.
        training: the optimisation settings.

    Returns:
        A ``models.training.TrainResult`` (``.model``, ``.ema_model``, ``.steps``,
        ``.losses``, ``.diverged_at``).

    Reference: Song & Ermon (2019), eq. (6) and Section 4.2 (Adam); Kingma & Ba, ICLR 2015.
    """
    return train(model, dsm_batch_loss, batches=_dsm_batches(sample_clean, sigmas, training), n_steps=training.steps,
                 key=key, **training.loop_settings())


def train_dsm_replicas(
    models: NoiseConditionalMLP,
    sample_clean,
    sigmas,
    *,
    keys: PRNGKeyArray,
    training: DSMTraining,
    mesh: jax.sharding.Mesh | None = None,
) -> TrainResult:
    """``train_dsm`` for R networks at once (one per seed), optionally split over devices.

    Replica r runs the arithmetic of ``train_dsm(models[r], sample_clean, sigmas,
    key=keys[r], training=training)`` (same batches, same updates), one compiled program
    vmapped over the replicas (``models.training.train_replicas``): equal to it up to
    float32 rounding, since vmap may order the batched products' sums differently.

    Args:
        models: R initial networks stacked along a leading axis, e.g.
            ``eqx.filter_vmap(lambda k: spec.build(k, d))(init_keys)``.
        sample_clean: (key, n) -> clean draws (n, d), shared by every replica.
        sigmas: the noise levels, shape (L,).
        keys: (R,) PRNG keys of the batches.
        training: the optimisation settings.
        mesh: a ``models.sharding.replica_mesh`` to split the replicas over, or None.

    Returns:
        A ``models.training.TrainResult`` with the replica axis first.

    Reference: Song & Ermon (2019), eq. (6).
    """
    return train_replicas(models, dsm_batch_loss, batches=_dsm_batches(sample_clean, sigmas, training),
                          n_steps=training.steps, keys=keys, mesh=mesh, **training.loop_settings())


def _dsm_batches(sample_clean, sigmas, training) -> DSMBatches:
    if not isinstance(training, DSMTraining):
        raise TypeError(f"training must be a DSMTraining, got {training!r}")
    return DSMBatches(FreshDraws(sample_clean, training.batch_size), sigmas)
