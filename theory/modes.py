"""Mode statistics of a sample against a mixture: where the mass went.

For a mixture of Gaussians with component means m_k and covariances S_k, a point x is
"near mode k" when its Mahalanobis distance to m_k is at most `radius` (in standard
deviations): (x - m_k)^T S_k^{-1} (x - m_k) <= radius^2. At radius 3 in R^2 a component
keeps 1 - exp(-9/2) = 98.9% of its own mass in that ellipse. A mode is "covered" when
it receives at least `coverage_fraction` of its fair share, i.e. a mass of at least
coverage_fraction * w_k. The 3-standard-deviation notion of a "high-quality" sample
follows Srivastava et al. (VEEGAN, NeurIPS 2017, Sec. 5.1); the coverage threshold
relative to w_k is ours, so that it reads the same for any K.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from theory.distributions import MixtureOfGaussians
from theory.validation import check_finite, check_in_interval, check_positive_number


@dataclasses.dataclass(frozen=True)
class ModeStatistics:
    """Fractions of a sample near each mode of a mixture."""

    mass_near_mode: np.ndarray  # (K,) fraction of the sample within `radius` of mode k
    mass_near_any_mode: float  # fraction within `radius` of some mode ("high quality")
    modes_covered: int  # number of k with mass_near_mode[k] >= coverage_fraction * w_k
    radius: float
    coverage_fraction: float


def mode_statistics(
    samples, mixture: MixtureOfGaussians, *, radius: float = 3.0, coverage_fraction: float = 0.25
) -> ModeStatistics:
    """Fraction of `samples` (n, d) near each mode of `mixture`, and the modes covered.

    Args:
        samples: Float[Array, "n d"].
        mixture: the target, whose component means and covariances define the modes.
        radius: Mahalanobis radius, in standard deviations, defining "near".
        coverage_fraction: a mode counts as covered once it holds at least this
            fraction of its weight w_k.
    """
    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim != 2 or samples.shape[1] != mixture.dim:
        raise ValueError(f"samples must have shape (n, {mixture.dim}), got shape {samples.shape}")
    check_finite("samples", samples)
    radius = check_positive_number("radius", radius)
    coverage_fraction = check_in_interval("coverage_fraction", coverage_fraction, 0.0, 1.0, include_high=True)
    means = np.asarray(mixture.means, np.float64)
    precisions = np.linalg.inv(np.asarray(mixture.covs, np.float64))
    diff = samples[None, :, :] - means[:, None, :]  # (K, n, d)
    mahalanobis2 = np.einsum("knd,kde,kne->kn", diff, precisions, diff)
    near = mahalanobis2 <= radius**2
    mass = near.mean(axis=1)
    weights = np.asarray(mixture.weights, np.float64)
    return ModeStatistics(
        mass_near_mode=mass,
        mass_near_any_mode=float(near.any(axis=0).mean()),
        modes_covered=int(np.sum(mass >= coverage_fraction * weights)),
        radius=float(radius),
        coverage_fraction=float(coverage_fraction),
    )
