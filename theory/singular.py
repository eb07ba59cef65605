"""Laws supported on low-dimensional sets: no Lebesgue density, disjoint supports.

These are the examples behind the "disjoint-support" identities (Arjovsky & Bottou
2017; Arjovsky, Chintala & Bottou 2017, Example 1). Their `log_prob` is the density
with respect to the Hausdorff measure of the support's dimension (counting measure
for points, length for segments), so two laws of the same family share a base measure
and KL / JS between them are well defined: for theta != 0, JS = log 2, KL = +inf,
while W1 = |theta|.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from theory.distributions import AbstractDistribution, _flatten_points
from theory.validation import check_count, check_finite, check_shape


def _finite_scalar(name: str, value) -> Float[Array, ""]:
    """`value` as a finite scalar array of the default float dtype."""
    value = jnp.asarray(value, dtype=jnp.result_type(float))
    check_shape(name, value, ())
    check_finite(name, value)
    return value


class PointMass(AbstractDistribution):
    """delta_location on R^1: a law on a 0-dimensional set.

    log_prob is w.r.t. counting measure: 0 at `location`, -inf elsewhere.
    """

    location: Float[Array, ""]
    support_dim: int = eqx.field(static=True, default=0)

    def __init__(self, location):
        self.location = _finite_scalar("location", location)

    @property
    def dim(self) -> int:
        return 1

    def sample(self, key, n):
        n = check_count("n", n)
        return jnp.full((n, 1), self.location)

    def log_prob(self, x):
        points, batch = _flatten_points(x, 1)
        return jnp.where(points[:, 0] == self.location, 0.0, -jnp.inf).reshape(batch)


class VerticalSegment(AbstractDistribution):
    """The law of (theta, U), U ~ Uniform[0, 1], on R^2: the "parallel lines" example.

    log_prob is w.r.t. one-dimensional Hausdorff (length) measure: 0 on the segment
    {theta} x [0, 1], -inf elsewhere (Arjovsky, Chintala & Bottou 2017, Example 1).
    """

    theta: Float[Array, ""]
    support_dim: int = eqx.field(static=True, default=1)

    def __init__(self, theta):
        self.theta = _finite_scalar("theta", theta)

    @property
    def dim(self) -> int:
        return 2

    def sample(self, key, n):
        n = check_count("n", n)
        u = jax.random.uniform(key, (n,), dtype=self.theta.dtype)
        return jnp.stack([jnp.full((n,), self.theta), u], axis=1)

    def log_prob(self, x):
        points, batch = _flatten_points(x, 2)
        on_support = (points[:, 0] == self.theta) & (points[:, 1] >= 0.0) & (points[:, 1] <= 1.0)
        return jnp.where(on_support, 0.0, -jnp.inf).reshape(batch)
