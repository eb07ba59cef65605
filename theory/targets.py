"""Named target distributions from the literature (see shared/reference/protocols.md).

Each target is a `MixtureOfGaussians`, so its density, score and every Gaussian
convolution of it (`.noised`) are exact.
"""

from __future__ import annotations

import jax.numpy as jnp

from theory.distributions import MixtureOfGaussians
from theory.validation import check_positive

GRID_VARIANCE = 0.1
"""Component variance of the Gaussian grids (Biau, Sangnier & Tanielian, JMLR 2021)."""

GRID_MEANS = {
    # The public code draws K = 2 means at random; we fix a documented, symmetric choice
    # at the grid spacing 2 from the origin, as protocols.md suggests.
    2: ((-2.0, 0.0), (2.0, 0.0)),
    # K = 4: the corners (+-2, +-2) of protocols.md.
    4: ((-2.0, -2.0), (-2.0, 2.0), (2.0, -2.0), (2.0, 2.0)),
    # K = 9: the grid {-2, 0, 2}^2, spacing 2.
    9: tuple((float(a), float(b)) for a in (-2, 0, 2) for b in (-2, 0, 2)),
}


def gaussian_grid(n_modes: int, variance: float = GRID_VARIANCE) -> MixtureOfGaussians:
    """Equal-weight mixture of K Gaussians N(m_k, variance * I_2) in R^2, K in {2, 4, 9}.

    mu* = (1 / K) sum_k N(m_k, 0.1 I) with the means of `GRID_MEANS`
    (Biau, Sangnier & Tanielian, "Some theoretical insights into Wasserstein GANs",
    JMLR 2021, Section 5).
    """
    if n_modes not in GRID_MEANS:
        raise ValueError(f"n_modes must be one of {sorted(GRID_MEANS)} (a named Gaussian grid), got {n_modes!r}")
    means = jnp.asarray(GRID_MEANS[n_modes])
    weights = jnp.full((n_modes,), 1.0 / n_modes)
    return MixtureOfGaussians.isotropic(weights, means, variance)


def ncsn_two_modes() -> MixtureOfGaussians:
    """0.8 N((5, 5), I) + 0.2 N((-5, -5), I): the target of Song & Ermon (2019), Figure 3."""
    return MixtureOfGaussians.isotropic(
        jnp.asarray([0.8, 0.2]), jnp.asarray([[5.0, 5.0], [-5.0, -5.0]]), 1.0
    )


def ncsn_component_std_schedule(target: MixtureOfGaussians, sigma) -> MixtureOfGaussians:
    """The NCSN *code's* level-sigma law: each component's covariance replaced by sigma^2 I
    (ermongroup/ncsn, models/gmm.py), as opposed to the paper's convolution
    `target.noised(1.0, sigma)` whose components have variance 1 + sigma^2."""
    check_positive("sigma", sigma)
    return MixtureOfGaussians.isotropic(target.weights, target.means, jnp.asarray(sigma) ** 2)
