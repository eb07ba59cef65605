"""Generators G_p: latent law pushed through a ReLU MLP of depth p.

mu_theta = G_theta # nu, with nu the latent law (Uniform[-1, 1]^k by default) and
G_theta a ReLU MLP of p linear layers (Biau, Sangnier & Tanielian, JMLR 2021, Sec. 5:
width 30, latent dimension 1).
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from theory.validation import check_count


class AbstractLatent(eqx.Module):
    """A latent law nu on R^k that can be sampled."""

    @abc.abstractmethod
    def sample(self, key: PRNGKeyArray, shape: tuple[int, ...], dtype) -> Array:
        """Draws of the given shape (..., k)."""


class UniformLatent(AbstractLatent):
    """Uniform[low, high]^k."""

    low: float = eqx.field(static=True, default=-1.0)
    high: float = eqx.field(static=True, default=1.0)

    def __check_init__(self):
        if not (float(self.low) < float(self.high)):
            raise ValueError(f"UniformLatent needs low < high, got low={self.low}, high={self.high}")

    def sample(self, key, shape, dtype):
        return jax.random.uniform(key, shape, dtype=dtype, minval=self.low, maxval=self.high)


class GaussianLatent(AbstractLatent):
    """N(0, I_k)."""

    def sample(self, key, shape, dtype):
        return jax.random.normal(key, shape, dtype=dtype)


class MLPGeneratorSpec(eqx.Module):
    """Spec of a ReLU MLP generator with `depth` linear layers (depth >= 1).

    x = W_p relu(... relu(W_1 z + b_1) ...) + b_p, z ~ latent. Each layer has its own
    weights (no module is reused across layers).

    Args:
        depth: p, the number of linear layers.
        width: hidden width.
        latent_dim: k, the latent dimension.
        latent: the latent law (`UniformLatent()` by default).
    """

    depth: int = eqx.field(static=True)
    width: int = eqx.field(static=True, default=30)
    latent_dim: int = eqx.field(static=True, default=1)
    latent: AbstractLatent = eqx.field(static=True, default=UniformLatent())

    def __check_init__(self):
        for name in ("depth", "width", "latent_dim"):
            check_count(name, getattr(self, name))
        if not isinstance(self.latent, AbstractLatent):
            raise TypeError(f"latent must be a latent law such as UniformLatent(), got {self.latent!r}")

    def build(self, key: PRNGKeyArray, out_dim: int) -> eqx.nn.MLP:
        """A float32 network z (k,) -> x (out_dim,)."""
        check_count("out_dim", out_dim)
        # eqx.nn.MLP's `depth` counts hidden layers; it builds depth + 1 Linear modules,
        # each a distinct module with its own weights.
        return eqx.nn.MLP(
            in_size=self.latent_dim,
            out_size=out_dim,
            width_size=self.width,
            depth=self.depth - 1,
            activation=jax.nn.relu,
            key=key,
            dtype=jnp.float32,
        )

    def sample(self, network, key: PRNGKeyArray, n: int) -> Float[Array, "n d"]:
        """n draws of G(z), z ~ latent."""
        z = self.latent.sample(key, (n, self.latent_dim), jnp.float32)
        return jax.vmap(network)(z)


@eqx.filter_jit
def sample_replicas(generators, keys: PRNGKeyArray, *, generator_spec: MLPGeneratorSpec, n: int) -> Float[Array, "R n d"]:
    """n draws of G_r(z) from each of R stacked generators, replica r with its own key.

    Args:
        generators: R networks of `generator_spec` stacked along a leading axis (the
            generator field of a vmapped GAN or WGAN state).
        keys: (R,) PRNG keys, one per replica.
        generator_spec: an unconditional spec (``MLPGeneratorSpec``).
        n: draws per replica.

    Returns:
        The draws, shape (R, n, d).
    """
    return eqx.filter_vmap(lambda g, k: generator_spec.sample(g, k, n))(generators, keys)
