"""The typed results of the lab's estimators: one family, each with its method.

- `Estimate(value, error, method)`: a number with its numerical error (every
  divergence, distance and bound in `theory`);
- `Proportion`: a binomial proportion k / n with its exact Clopper-Pearson interval
  (`binomial_proportion`);
- `LipschitzEstimate(lower, upper, method)`: a bracket on a Lipschitz constant, a
  measured lower bound and a certified upper bound.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import scipy.stats

from theory.validation import check_count, check_in_interval, check_number

__all__ = ["Estimate", "Proportion", "LipschitzEstimate", "binomial_proportion"]


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


@dataclasses.dataclass(frozen=True)
class Proportion:
    """A binomial proportion k / n with its standard error and an exact interval.

    Attributes:
        count: k, successes.
        n: trials.
        value: k / n.
        error: the plug-in standard error sqrt(p (1 - p) / n).
        low, high: the Clopper-Pearson interval at `confidence`: it covers the true p
            with probability >= confidence for every p (conservative).
        confidence: e.g. 0.95.
        method: how it was computed, in words.
    """

    count: int
    n: int
    value: float
    error: float
    low: float
    high: float
    confidence: float
    method: str

    def covers(self, p: float) -> bool:
        """Whether p lies in [low, high]."""
        return self.low <= p <= self.high

    def interval(self) -> tuple[float, float]:
        """(low, high), the Clopper-Pearson interval at `confidence`."""
        return (self.low, self.high)


def binomial_proportion(count: int, n: int, *, confidence: float = 0.95) -> Proportion:
    """k / n with its Clopper-Pearson ("exact") interval.

    [low, high] = [B(a/2; k, n - k + 1), B(1 - a/2; k + 1, n - k)], a = 1 - confidence,
    with B(q; a, b) the q-quantile of Beta(a, b) (low = 0 if k = 0, high = 1 if k = n).

    Args:
        count: k in [0, n].
        n: n >= 1.
        confidence: in (0, 1).

    Returns:
        A `Proportion`.

    Reference: Clopper & Pearson, Biometrika 26(4), 1934; Brown, Cai & DasGupta,
    Statistical Science 16(2), 2001, Section 2.
    """
    n = check_count("n", n)
    count = check_count("count", count, minimum=0, maximum=n)
    confidence = check_in_interval("confidence", confidence, 0.0, 1.0)
    tail = (1.0 - confidence) / 2.0
    low = 0.0 if count == 0 else float(scipy.stats.beta.ppf(tail, count, n - count + 1))
    high = 1.0 if count == n else float(scipy.stats.beta.ppf(1.0 - tail, count + 1, n - count))
    p = count / n
    return Proportion(
        count=count,
        n=n,
        value=p,
        error=math.sqrt(p * (1.0 - p) / n),
        low=low,
        high=high,
        confidence=confidence,
        method=f"binomial k/n, Clopper-Pearson {100 * confidence:g}% interval",
    )


@dataclasses.dataclass(frozen=True)
class LipschitzEstimate:
    """A bracket lower <= Lip(f) <= upper on a Lipschitz constant (Euclidean norms).

    Attributes:
        lower: a measured lower bound (e.g. max_i ||grad f(x_i)||_2 over probe points:
            every gradient norm at a point of differentiability is <= Lip(f)).
        upper: a certified upper bound (e.g. prod_k ||W_k||_2 for a network with
            1-Lipschitz activations); +inf when nothing is certified.
        method: how each bound was obtained, in words.
        n_probes: number of points behind `lower`.
    """

    lower: float
    upper: float
    method: str
    n_probes: int

    def __post_init__(self):
        object.__setattr__(self, "lower", check_number("lower", self.lower))
        upper = float(self.upper)
        if math.isnan(upper):
            raise ValueError(f"upper must be a number or +inf, got {self.upper!r}")
        object.__setattr__(self, "upper", upper)
        object.__setattr__(self, "n_probes", check_count("n_probes", self.n_probes))
        if self.lower < 0:
            raise ValueError(f"lower must be >= 0, got {self.lower!r}")

