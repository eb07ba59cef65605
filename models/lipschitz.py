"""Bracketing a critic's Lipschitz constant between a measured and a certified value.

For a network ``D = L_q o sigma o ... o sigma o L_1`` with 1-Lipschitz activations
(GroupSort here), ``max_i ||grad D(x_i)|| <= Lip(D) <= prod_k ||W_k||_2``: the gradient
norm at any point where D is differentiable is a lower bound, the product of the layers'
spectral norms an upper bound.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Protocol

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float


class LipschitzCritic(Protocol):
    """A scalar network with 1-Lipschitz activations that reports its weight matrices."""

    def __call__(self, x: Float[Array, " d"]) -> Float[Array, ""]: ...

    def weight_matrices(self) -> list[Float[Array, "out in"]]: ...


@dataclasses.dataclass(frozen=True)
class LipschitzEstimate:
    """Lower and upper bounds on a critic's Lipschitz constant (Euclidean norms).

    ``max_gradient_norm <= Lip(D) <= spectral_bound``.
    """

    max_gradient_norm: float
    """``max_i ||grad_x D(x_i)||_2`` over the probes: a lower bound (a measurement)."""
    spectral_bound: float
    """``prod_k ||W_k||_2`` over ``weight_matrices()``, exact SVDs in float64: an upper
    bound (a certificate), valid because the activations are 1-Lipschitz."""
    n_probes: int
    """Number of probe points behind ``max_gradient_norm``."""


@eqx.filter_jit
def _input_gradients(critic: LipschitzCritic, probes: Float[Array, "n d"]) -> Float[Array, "n d"]:
    return jax.vmap(jax.grad(critic))(probes)


def measure_lipschitz(critic: LipschitzCritic, probes: Float[Array, "n d"]) -> LipschitzEstimate:
    """Bracket ``Lip(D)`` by gradient norms at probe points and by spectral norms.

    ``max_i ||grad D(x_i)||_2 <= Lip(D) <= prod_k sigma_max(W_k)``.

    Args:
        critic: one (not vmapped) network ``R^d -> R`` with ``weight_matrices()``, e.g. a
            ``models.critics.GroupSortMLP``.
        probes: points where the gradient is measured, shape ``(n, d)``, ``n >= 1``.

    Returns:
        A ``LipschitzEstimate``; the gradient norms and singular values are taken in
        float64 from the critic's own-precision gradients and weights.

    Reference: Anil, Lucas & Grosse, "Sorting out Lipschitz function approximation",
    ICML 2019, section 3 (products of spectral norms bound GroupSort networks).
    """
    probes = jnp.asarray(probes)
    if probes.ndim != 2 or probes.shape[0] < 1:
        raise ValueError(f"probes must have shape (n, d) with n >= 1, got {probes.shape}")
    if not jnp.issubdtype(probes.dtype, jnp.floating):
        probes = probes.astype(float)
    gradients = np.asarray(_input_gradients(critic, probes), dtype=np.float64)
    max_gradient_norm = float(np.max(np.linalg.norm(gradients, axis=1)))
    spectral_bound = math.prod(
        float(np.linalg.norm(np.asarray(w, dtype=np.float64), 2))
        for w in critic.weight_matrices()
    )
    return LipschitzEstimate(
        max_gradient_norm=max_gradient_norm,
        spectral_bound=spectral_bound,
        n_probes=int(probes.shape[0]),
    )
