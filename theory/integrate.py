"""How expectations are computed: deterministic quadrature in d <= 2, Monte Carlo above.

Methods are objects passed as `method=` (as diffrax takes `solver=`):
`Quadrature()`, `MonteCarlo(n=...)`. Every divergence in `theory` is a sum of
expectations E_{P_i}[g_i(X)] under laws P_i; `expectation_sum` evaluates such a sum
with either method and returns an `Estimate`.

All arithmetic here runs under `jax.enable_x64(True)` on float64 copies of the
distributions, whatever the caller's default precision.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from theory.distributions import AbstractDensity, AbstractDistribution, to_float64
from theory.estimate import Estimate, monte_carlo_mean
from theory.validation import check_count, check_key

MAX_QUADRATURE_DIM = 2


@dataclasses.dataclass(frozen=True)
class Quadrature:
    """Composite Gauss-Legendre quadrature on the box holding all the mass.

    The box is the union of the laws' `support_box(tail)`: outside it every component
    is more than `tail` standard deviations away (Gaussian tail mass < 1e-22 per axis
    at tail = 10). The rule uses `panels` panels of `order` nodes per axis; the reported
    error is |I(panels) - I(2 panels)|, and the value is the finer I(2 panels). For
    the analytic integrands here Gauss-Legendre converges geometrically in the panel
    count, so the difference of two refinements bounds the coarser rule's error and
    overstates the finer one's.
    """

    panels: int = 64
    order: int = 8
    tail: float = 10.0

    def __post_init__(self):
        check_count("panels", self.panels)
        check_count("order", self.order)
        if not self.tail > 0:
            raise ValueError(f"tail must be > 0, got {self.tail}")


@dataclasses.dataclass(frozen=True)
class MonteCarlo:
    """Plain Monte Carlo with n i.i.d. draws per law; error = one standard error."""

    n: int = 100_000

    def __post_init__(self):
        check_count("n", self.n, minimum=2)


class Term(NamedTuple):
    """One expectation E_{laws[index]}[g(X)].

    `g(x, logs)` takes points (N, d) and the tuple of log-densities of the problem's
    laws at x, and returns (N,). `weighted(x, logs)`, if given, returns law(x) * g(x)
    computed stably (used by quadrature); by default exp(log law(x)) * g(x), read as
    0 where the density underflows to 0.
    """

    index: int
    g: Callable
    weighted: Callable | None = None


def choose_method(laws: Sequence[AbstractDistribution], method, key):
    """Quadrature when every law has a Lebesgue density and d <= 2, else Monte Carlo."""
    if method is not None:
        if not isinstance(method, (Quadrature, MonteCarlo)):
            raise ValueError(f"method must be Quadrature(...) or MonteCarlo(...), got {method!r}")
        if isinstance(method, Quadrature):
            for law in laws:
                if not isinstance(law, AbstractDensity) or law.dim > MAX_QUADRATURE_DIM:
                    raise ValueError(
                        f"Quadrature needs laws with Lebesgue densities in d <= {MAX_QUADRATURE_DIM}, "
                        f"got {type(law).__name__} in d={law.dim}"
                    )
        if isinstance(method, MonteCarlo):
            check_key("key", key)
        return method
    if all(isinstance(law, AbstractDensity) and law.dim <= MAX_QUADRATURE_DIM for law in laws):
        return Quadrature()
    if key is None:
        raise ValueError(
            f"key must be given for a Monte Carlo estimate (laws {[type(l).__name__ for l in laws]} "
            f"in d={laws[0].dim} have no quadrature here), got None"
        )
    return MonteCarlo()


def check_same_dim(**laws) -> int:
    dims = {name: law.dim for name, law in laws.items()}
    if len(set(dims.values())) != 1:
        raise ValueError(f"the laws must share a dimension, got {dims}")
    return next(iter(dims.values()))


@eqx.filter_jit
def _log_probs(laws, x):
    """The log-densities of `laws` at x. Module-level, with the laws as an argument, so
    that one compilation serves every call with laws of the same structure and shapes
    (a closure jitted per call recompiles every time)."""
    return tuple(law.log_prob(x) for law in laws)


@eqx.filter_jit
def _sample(law, key, n: int):
    """n draws from `law`, compiled once per law structure and n (as `_log_probs`)."""
    return law.sample(key, n)


def _default_weighted(g, index):
    def weighted(x, logs):
        log_density = logs[index]
        density = jnp.exp(log_density)
        return jnp.where(density > 0, density * g(x, logs), 0.0)

    return weighted


def _gauss_legendre_axis(lo: float, hi: float, panels: int, order: int):
    nodes, weights = np.polynomial.legendre.leggauss(order)
    edges = np.linspace(lo, hi, panels + 1)
    half = 0.5 * np.diff(edges)[:, None]
    mid = 0.5 * (edges[1:] + edges[:-1])[:, None]
    return (mid + half * nodes).ravel(), (half * weights).ravel()


def _integrate(integrand, lo, hi, panels, order, chunk=1 << 18) -> float:
    axes = [_gauss_legendre_axis(a, b, panels, order) for a, b in zip(lo, hi)]
    grids = np.meshgrid(*[a[0] for a in axes], indexing="ij")
    weight_grids = np.meshgrid(*[a[1] for a in axes], indexing="ij")
    points = np.stack([g.ravel() for g in grids], axis=1)
    weights = np.prod(np.stack([w.ravel() for w in weight_grids], axis=1), axis=1)
    total = 0.0
    for start in range(0, len(points), chunk):
        values = np.asarray(integrand(jnp.asarray(points[start : start + chunk])), dtype=np.float64)
        total += float(np.dot(weights[start : start + chunk], values))
    return total


def expectation_sum(
    terms: Sequence[Term],
    laws: Sequence[AbstractDistribution],
    *,
    method,
    key,
    what: str,
    support: Sequence[int] | None = None,
) -> Estimate:
    """sum_i E_{laws[terms[i].index]}[terms[i].g(X)], in float64, by `method`.

    Args:
        terms: the expectations, each under one of `laws`.
        laws: the laws whose log-densities g may read (`logs[i]` for `laws[i]`).
        method: `Quadrature()` or `MonteCarlo(n)` (already chosen, see `choose_method`).
        key: PRNG key for Monte Carlo (split into one key per term).
        what: a short name for the method string ("KL", "JS", ...).
        support: indices of the laws whose support boxes together hold the mass of
            every quadrature integrand (default: the laws the terms are taken under).
            A `weighted` integrand may have mass where its own law has none (the
            perspective q f(p / q) lives where p does), and then must name that law.
    """
    with jax.enable_x64(True):
        laws64 = to_float64(tuple(laws))

        def logs_at(x):
            return _log_probs(laws64, x)

        if isinstance(method, Quadrature):
            indices = [t.index for t in terms] if support is None else list(support)
            boxes = [laws64[i].support_box(method.tail) for i in indices]
            lo = np.min([b[0] for b in boxes], axis=0)
            hi = np.max([b[1] for b in boxes], axis=0)
            weighted = [t.weighted or _default_weighted(t.g, t.index) for t in terms]

            def integrand(x):
                logs = logs_at(x)
                return sum(w(x, logs) for w in weighted)

            coarse = _integrate(integrand, lo, hi, method.panels, method.order)
            fine = _integrate(integrand, lo, hi, 2 * method.panels, method.order)
            nodes = 2 * method.panels * method.order
            error = abs(fine - coarse) if math.isfinite(fine) else math.nan
            return Estimate(
                fine,
                error,
                f"{what}: Gauss-Legendre quadrature ({len(lo)}-D, {nodes} nodes per axis on "
                f"[{', '.join(f'{a:.3g}..{b:.3g}' for a, b in zip(lo, hi))}])",
            )

        keys = jax.random.split(key, len(terms))
        values = 0.0
        variances = 0.0
        for term, term_key in zip(terms, keys):
            x = _sample(laws64[term.index], term_key, method.n)
            estimate = monte_carlo_mean(term.g(x, logs_at(x)), what)
            values = values + estimate.value
            variances = variances + estimate.error**2
        return Estimate(values, math.sqrt(variances), f"{what}: Monte Carlo (n={method.n} per law)")
