"""ULA on a Gaussian target: closed forms for its variance and its stability."""

from __future__ import annotations

import math

import numpy as np

from theory.validation import check_count, check_positive_number

def ula_gaussian_variance(step_size: float, variance: float, n_steps: int | None = None, initial_variance: float = 0.0) -> float:
    """Variance of ULA on the 1-D target N(m, s^2), after K steps or at stationarity.

    With rho = 1 - alpha / (2 s^2) the recursion is v_{k+1} = rho^2 v_k + alpha, so
    v_K = v_inf + rho^(2K) (v_0 - v_inf) with v_inf = alpha / (1 - rho^2)
    = alpha / (1 - (1 - alpha / (2 s^2))^2) = 2 s^2 / (2 - alpha / s^2), finite iff |rho| < 1,
    i.e. 0 < alpha < 4 s^2. (The mean contracts to m at rate rho.)

    Args:
        step_size: alpha > 0.
        variance: s^2 > 0, the target's variance.
        n_steps: K; None for the stationary variance v_inf.
        initial_variance: v_0 >= 0 (0 for chains started at one point).

    Returns:
        The variance in float64 (inf when n_steps is None and |rho| >= 1).

    Reference: Roberts & Tweedie (1996), Section 1.4 (ULA on a Gaussian is an AR(1)
    process); Durmus & Moulines, Ann. Appl. Probab. 27(3), 2017, Section 1.
    """
    alpha = check_positive_number("step_size", step_size)
    s2 = check_positive_number("variance", variance)
    rho = 1.0 - alpha / (2.0 * s2)
    if n_steps is None:
        return alpha / (1.0 - rho**2) if abs(rho) < 1 else math.inf
    n_steps = check_count("n_steps", n_steps, minimum=0)
    if abs(rho) == 1.0:
        return initial_variance + n_steps * alpha
    stationary = alpha / (1.0 - rho**2)
    return stationary + rho ** (2 * n_steps) * (initial_variance - stationary)


def ula_stability_ratio(step_size, variance):
    """alpha / (2 s^2) = 1 - rho: ULA on N(m, s^2) contracts iff this lies in (0, 2).

    It is the fraction of the distance to the mean that one step removes. For a
    Gaussian mixture whose smallest component variance is s^2 the same number bounds
    every level: the Hessian of log p is sum_k r_k (-S_k^{-1}) plus a positive
    semi-definite covariance term, so it is >= -I / s^2, and deep in a component's basin
    it equals -S_k^{-1}. Above 2 the chains oscillate with growing amplitude and diverge.

    Args:
        step_size: alpha, scalar or array.
        variance: s^2, broadcastable with `step_size`.

    Returns:
        alpha / (2 s^2), float64 NumPy.
    """
    return np.asarray(step_size, np.float64) / (2.0 * np.asarray(variance, np.float64))
