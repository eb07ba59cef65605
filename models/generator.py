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
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not isinstance(self.latent, AbstractLatent):
            raise ValueError(f"latent must be a latent law such as UniformLatent(), got {self.latent!r}")

    def build(self, key: PRNGKeyArray, out_dim: int) -> eqx.nn.MLP:
        """A float32 network z (k,) -> x (out_dim,)."""
        if isinstance(out_dim, bool) or not isinstance(out_dim, int) or out_dim < 1:
            raise ValueError(f"out_dim must be an integer >= 1, got {out_dim!r}")
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
