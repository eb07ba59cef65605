"""The typed result every estimator in `theory` returns."""

from __future__ import annotations

import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A number with its numerical error and the method that produced it.

    Attributes:
        value: the estimate (nats for divergences, distance units for transport).
        error: one standard error for Monte Carlo estimates, an a-posteriori error
            estimate for quadrature (the difference of two refinements; the mass
            outside the integration box, below 1e-22, is not added), exactly 0.0 for
            closed forms and exact solvers (POT's W_p for p > 1 can still carry
            rounding of order (1e-15 max cost)^(1/p)).
        method: how it was computed, in words (e.g. "closed form",
            "Gauss-Legendre quadrature (2-D, 512^2 nodes)", "Monte Carlo (n=10000)").
    """

    value: float
    error: float
    method: str

    def __post_init__(self):
        object.__setattr__(self, "value", float(self.value))
        object.__setattr__(self, "error", float(self.error))
        if not (self.error >= 0.0 or math.isnan(self.error)):
            raise ValueError(f"error must be >= 0, got {self.error}")

    def interval(self, z: float = 1.96) -> tuple[float, float]:
        """The interval value +- z * error (95% for a standard error and z = 1.96)."""
        return (self.value - z * self.error, self.value + z * self.error)

    def __repr__(self) -> str:
        return f"Estimate(value={self.value:.10g}, error={self.error:.3g}, method={self.method!r})"


def monte_carlo_mean(samples, method: str) -> Estimate:
    """Mean of i.i.d. draws with its standard error, s / sqrt(n), in float64.

    An all-infinite sample of one sign gives that infinity with error 0 (e.g. a KL
    between laws with disjoint supports, which is +inf almost surely).
    """
    samples = np.asarray(samples, dtype=np.float64).ravel()
    n = samples.size
    if n < 2:
        raise ValueError(f"a Monte Carlo mean needs n >= 2 draws, got {n}")
    if np.all(np.isposinf(samples)):
        return Estimate(np.inf, 0.0, method)
    if np.all(np.isneginf(samples)):
        return Estimate(-np.inf, 0.0, method)
    mean = samples.mean()
    if not np.isfinite(mean):
        return Estimate(mean, np.nan, method)
    return Estimate(mean, samples.std(ddof=1) / math.sqrt(n), method)


def sum_of_independent(estimates: list[Estimate], weights: list[float], method: str) -> Estimate:
    """sum_i w_i E_i for independent estimates; errors add in quadrature."""
    value = sum(w * e.value for w, e in zip(weights, estimates))
    error = math.sqrt(sum((w * e.error) ** 2 for w, e in zip(weights, estimates)))
    return Estimate(value, error, method)
