"""Diagnostics of how a sampler puts mass on the modes of a mixture."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from theory.distributions import MixtureOfGaussians
from theory.divergences import kl
from theory.estimate import Estimate
from theory.validation import check_count, check_key, check_positive_number, check_shape, check_type

def mode_occupancy(law: MixtureOfGaussians, x: Float[Array, "... n d"]) -> np.ndarray:
    """How many points sit in each component's basin: counts of argmax_k r_k(x).

    r_k(x) = w_k N(x; m_k, S_k) / sum_j w_j N(x; m_j, S_j), the responsibilities of
    `law`; a point is assigned to the component most likely to have produced it.

    Args:
        law: the mixture whose components define the modes.
        x: points, shape (..., n, d) (leading axes are batches, e.g. seeds or steps).

    Returns:
        int64 counts of shape (..., K), summing to n along the last axis.

    Reference: the maximum-a-posteriori component assignment, Bishop, Pattern
    Recognition and Machine Learning (2006), eq. (9.13); used for the mode weights of
    Song & Ermon (2019), Figure 3.
    """
    x = jnp.asarray(x)
    batch = x.shape[:-2]
    responsibilities = law.responsibilities(x.reshape(-1, x.shape[-1]))
    assigned = np.asarray(jnp.argmax(responsibilities, axis=-1)).reshape(batch + (x.shape[-2],))
    k = law.n_components
    counts = (assigned[..., None] == np.arange(k)).sum(axis=-2)
    return counts.astype(np.int64)


def occupancy_kl(counts, weights, *, key: PRNGKeyArray, n_bootstrap: int = 1000) -> Estimate:
    """KL of a sampler's mode-occupancy histogram to the true mode weights, in nats.

    KL(p_hat || w) = sum_k p_hat_k log(p_hat_k / w_k), p_hat = counts / n. (This
    direction stays finite when a mode is empty.) For n exact draws,
    2 n KL(p_hat || w) -> chi^2_{K-1}, so an exact sampler scores (K - 1) / (2 n) on
    average: the floor to read it against.

    Args:
        counts: int array (K,), the occupancy of each mode.
        weights: the true weights w, (K,), a probability vector.
        key: PRNG key of the bootstrap.
        n_bootstrap: B >= 2 multinomial resamples of the counts.

    Returns:
        An `Estimate` whose value is the plug-in KL and whose error is the bootstrap
        standard deviation (the plug-in is biased upward by about (K - 1) / (2 n)).

    Reference: Cover & Thomas, Elements of Information Theory, eq. (2.26); Efron &
    Tibshirani, An Introduction to the Bootstrap (1993), Ch. 6.
    """
    check_key("key", key)
    n_bootstrap = check_count("n_bootstrap", n_bootstrap, minimum=2)
    counts = np.asarray(counts, np.int64)
    weights = np.asarray(weights, np.float64)
    check_shape("counts", counts, (None,))
    check_shape("weights", weights, counts.shape)
    n = int(counts.sum())
    if n < 1 or np.any(counts < 0):
        raise ValueError(f"counts must be nonnegative with a positive total, got {counts}")
    p_hat = counts / n
    value = kl(p_hat, weights).value
    # Multinomial resamples of the counts as sequential binomials:
    # c_k ~ Bin(n - c_1 - ... - c_{k-1}, p_k / (p_k + ... + p_K)).
    with jax.enable_x64(True):
        left = jnp.full((n_bootstrap,), float(n), jnp.float64)
        resampled = []
        for k, key_k in enumerate(jax.random.split(key, counts.size - 1)):
            tail = p_hat[k:].sum()
            share = min(p_hat[k] / tail, 1.0) if tail > 0 else 0.0
            c = jax.random.binomial(key_k, left, jnp.float64(share))
            resampled.append(c)
            left = left - c
        resampled = np.stack([np.asarray(c) for c in resampled] + [np.asarray(left)], axis=1)
    replicates = _kl_rows(resampled / n, weights)
    return Estimate(
        value,
        float(np.std(replicates, ddof=1)),
        f"plug-in KL of the mode histogram (n={n}), bootstrap SE (B={n_bootstrap})",
    )


def _kl_rows(p, q) -> np.ndarray:
    """sum_k p_k log(p_k / q_k) for each row of p, with 0 log 0 = 0 (q > 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0)
    return terms.sum(axis=-1)


def separatrix_point(law: MixtureOfGaussians, *, tolerance: float = 1e-10) -> np.ndarray:
    """The point between the first two modes where their responsibilities are equal.

    x* = m_0 + t* (m_1 - m_0) with r_0(x*) = r_1(x*), found by bisection on t in [0, 1].
    From x* a Langevin chain is equally pushed towards either mode: the natural start
    of the "same start point, different modes" picture.

    Args:
        law: a mixture with at least two components.
        tolerance: bisection stops when the bracket on t is narrower than this.

    Returns:
        float64 array (d,).

    Reference: Luo, "Understanding diffusion models: a unified perspective" (2022),
    Figure 6 (trajectories from one start point reaching different modes).
    """
    check_type("law", law, MixtureOfGaussians)
    tolerance = check_positive_number("tolerance", tolerance)
    if law.n_components < 2:
        raise ValueError(f"law must have at least two components, got {law.n_components}")
    with jax.enable_x64(True):
        means = np.asarray(law.means, np.float64)

        def gap(t):
            point = means[0] + t * (means[1] - means[0])
            r = np.asarray(law.responsibilities(jnp.asarray(point[None])), np.float64)[0]
            return r[0] - r[1]

        low, high = 0.0, 1.0
        if not gap(low) > 0 > gap(high):
            raise ValueError("the responsibilities of the first two modes do not cross between their means")
        while high - low > tolerance:
            middle = 0.5 * (low + high)
            if gap(middle) > 0:
                low = middle
            else:
                high = middle
        return means[0] + 0.5 * (low + high) * (means[1] - means[0])
