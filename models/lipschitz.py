"""Bracketing a critic's Lipschitz constant between a measured and a certified value.

For a network ``D = L_q o sigma o ... o sigma o L_1`` with 1-Lipschitz activations
(GroupSort here), ``max_i ||grad D(x_i)|| <= Lip(D) <= prod_k ||W_k||_2``: the gradient
norm at any point where D is differentiable is a lower bound, the product of the layers'
spectral norms an upper bound.
"""

from __future__ import annotations

import math
from typing import Protocol

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from theory.estimate import LipschitzEstimate
from theory.validation import check_points


class LipschitzCritic(Protocol):
    """A scalar network with 1-Lipschitz activations that reports its weight matrices."""

    def __call__(self, x: Float[Array, " d"]) -> Float[Array, ""]: ...

    def weight_matrices(self) -> list[Float[Array, "out in"]]: ...


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
        A ``theory.LipschitzEstimate`` with ``lower = max_i ||grad D(x_i)||_2`` (a
        measurement), ``upper = prod_k ||W_k||_2`` (a certificate, valid because the
        activations are 1-Lipschitz) and the method in words; the gradient norms and
        singular values are taken in float64 from the critic's own-precision gradients
        and weights.

    Reference: Anil, Lucas & Grosse, "Sorting out Lipschitz function approximation",
    ICML 2019, section 3 (products of spectral norms bound GroupSort networks).
    """
    probes = jnp.asarray(probes)
    if not jnp.issubdtype(probes.dtype, jnp.floating):
        probes = probes.astype(float)
    probes = check_points("probes", probes)
    gradients = np.asarray(_input_gradients(critic, probes), dtype=np.float64)
    max_gradient_norm = float(np.max(np.linalg.norm(gradients, axis=1)))
    weights = critic.weight_matrices()
    spectral_bound = math.prod(float(np.linalg.norm(np.asarray(w, dtype=np.float64), 2)) for w in weights)
    n_probes = int(probes.shape[0])
    return LipschitzEstimate(
        lower=max_gradient_norm,
        upper=spectral_bound,
        method=(
            f"lower: max gradient norm over {n_probes} probes; "
            f"upper: product of the spectral norms of {len(weights)} weight matrices (exact SVD)"
        ),
        n_probes=n_probes,
    )
