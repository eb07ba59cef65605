"""Conditional GAN networks: G(z, y) and D(x, y) read a one-hot label.

Both networks are ReLU-family MLPs on the concatenation [input, one_hot(y)], as in
Mirza & Osindero, "Conditional generative adversarial nets" (2014), Sec. 3.2 (the
label is fed to both players as an extra input layer). Labelled training data are a
`LabelledData(points, labels, n_classes)`; `models.gan_training.train_gan` takes it in
place of an unlabelled data set.
"""

from __future__ import annotations


import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from models.generator import AbstractLatent, UniformLatent
from theory.validation import check_count


class LabelConditioned(eqx.Module):
    """u, y -> network([u, one_hot(y, n_classes)]): a network that reads a label.

    One sample at a time (vmap it): u has shape (k,), y is an integer scalar.
    """

    network: eqx.nn.MLP
    n_classes: int = eqx.field(static=True)

    def __call__(self, u: Float[Array, " k"], y: Int[Array, ""]) -> Array:
        u = jnp.asarray(u).astype(jnp.float32)
        return self.network(jnp.concatenate([u, jax.nn.one_hot(y, self.n_classes, dtype=jnp.float32)]))


def _mlp(key, in_size, out_size, depth, width, activation):
    # eqx.nn.MLP's `depth` counts hidden layers: depth linear layers = depth - 1 hidden.
    return eqx.nn.MLP(
        in_size=in_size,
        out_size=out_size,
        width_size=width,
        depth=depth - 1,
        activation=activation,
        key=key,
        dtype=jnp.float32,
    )


class ConditionalMLPGeneratorSpec(eqx.Module):
    """Spec of G(z, y) = MLP([z, one_hot(y)]), z ~ latent, with `depth` linear layers.

    Args:
        n_classes: number of labels K (y in {0, ..., K - 1}).
        depth: linear layers, >= 1; width: hidden width; latent_dim: k.
        latent: the latent law (`UniformLatent()` by default).
    """

    n_classes: int = eqx.field(static=True)
    depth: int = eqx.field(static=True, default=3)
    width: int = eqx.field(static=True, default=32)
    latent_dim: int = eqx.field(static=True, default=1)
    latent: AbstractLatent = eqx.field(static=True, default=UniformLatent())

    def __check_init__(self):
        check_count("n_classes", self.n_classes, minimum=2)
        for name in ("depth", "width", "latent_dim"):
            check_count(name, getattr(self, name), minimum=1)
        if not isinstance(self.latent, AbstractLatent):
            raise TypeError(f"latent must be a latent law such as UniformLatent(), got {self.latent!r}")

    def build(self, key: PRNGKeyArray, out_dim: int) -> LabelConditioned:
        """A float32 network (z (k,), y ()) -> x (out_dim,)."""
        check_count("out_dim", out_dim, minimum=1)
        network = _mlp(key, self.latent_dim + self.n_classes, out_dim, self.depth, self.width, jax.nn.relu)
        return LabelConditioned(network, self.n_classes)

    def sample(self, network: LabelConditioned, key: PRNGKeyArray, labels: Int[Array, " n"]) -> Float[Array, "n d"]:
        """One draw of G(z, y_i) per label y_i, z ~ latent i.i.d."""
        z = self.latent.sample(key, (labels.shape[0], self.latent_dim), jnp.float32)
        return jax.vmap(network)(z, labels)


class ConditionalMLPDiscriminatorSpec(eqx.Module):
    """Spec of D(x, y) = MLP([x, one_hot(y)]) with a raw scalar output; no penalty, no projection.

    Args:
        n_classes: number of labels K.
        depth: linear layers, >= 1; width: hidden width.
        activation: hidden activation (leaky ReLU, slope 0.2, by default).
    """

    n_classes: int = eqx.field(static=True)
    depth: int = eqx.field(static=True, default=3)
    width: int = eqx.field(static=True, default=32)
    activation: object = eqx.field(static=True, default=jax.nn.leaky_relu)

    def __check_init__(self):
        check_count("n_classes", self.n_classes, minimum=2)
        check_count("depth", self.depth, minimum=1)
        check_count("width", self.width, minimum=1)
        if not callable(self.activation):
            raise TypeError(f"activation must be callable, got {self.activation!r}")

    def build(self, key: PRNGKeyArray, in_dim: int) -> LabelConditioned:
        """A float32 network (x (in_dim,), y ()) -> scalar."""
        check_count("in_dim", in_dim, minimum=1)
        network = _mlp(key, in_dim + self.n_classes, "scalar", self.depth, self.width, self.activation)
        return LabelConditioned(network, self.n_classes)

    def penalty(self, discriminator, real, fake, *, key):
        return jnp.zeros((), jnp.float32)

    def project(self, discriminator):
        return discriminator


class LabelledData(eqx.Module):
    """A finite labelled training set: points (n, d) float and labels (n,) in {0, ..., K - 1}."""

    points: Float[Array, "n d"]
    labels: Int[Array, " n"]
    n_classes: int = eqx.field(static=True)

    def __init__(self, points, labels, n_classes: int):
        points, labels = jnp.asarray(points), jnp.asarray(labels)
        check_count("n_classes", n_classes, minimum=2)
        if points.ndim < 2 or points.shape[-2] < 1:
            raise ValueError(f"points must have shape (n, d) (or (R, n, d) for replicas), got shape {points.shape}")
        if labels.shape != points.shape[:-1]:
            raise ValueError(f"labels must have shape {points.shape[:-1]} (one per point), got shape {labels.shape}")
        if not jnp.issubdtype(labels.dtype, jnp.integer):
            raise TypeError(f"labels must be integers, got dtype {labels.dtype}")
        if not isinstance(labels, jax.core.Tracer) and labels.size and (labels.min() < 0 or labels.max() >= n_classes):
            raise ValueError(f"labels must lie in [0, {n_classes - 1}], got range [{labels.min()}, {labels.max()}]")
        self.points = points.astype(jnp.float32)
        self.labels = labels.astype(jnp.int32)
        self.n_classes = int(n_classes)
