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
import warnings
from collections.abc import Callable, Sequence
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from theory.distributions import AbstractDensity, AbstractDistribution, to_float64
from theory.estimate import Estimate, monte_carlo_mean
from theory.validation import check_count, check_key, check_positive_number

MAX_QUADRATURE_DIM = 2


@dataclasses.dataclass(frozen=True)
class Quadrature:
    """Composite Gauss-Legendre quadrature on a tensor grid that resolves every component.

    The box is the union of the laws' `support_box(tail)`: outside it every component
    is more than `tail` standard deviations away (Gaussian tail mass < 1e-22 per axis
    at tail = 10). Along each axis the box is cut at every component's window
    centre +- tail * sd (of every law the integrand reads, see
    `AbstractDensity.quadrature_scales`), and each piece gets panels of width
    min(box width / `panels`, smallest slice sd active there / `panels_per_sd`), each
    with `order` nodes. A uniform grid on the union box missed narrow components
    (JS(N(0, 0.003^2), N(0, 10^2)) came out 0.347 instead of 0.690, with an error of
    6e-17).

    The value is the rule on these panels halved (I_fine); the reported error is
    |I_fine - I_coarse| + sqrt(N) eps sum_j |w_j f(x_j)| (the second term the
    root-mean-square rounding of an N-term float64 sum, Higham, Accuracy and
    Stability of Numerical Algorithms, 2002, Sec. 4.2). For the analytic integrands
    here Gauss-Legendre converges geometrically once the panels resolve the
    integrand, and then the difference of two refinements bounds the coarse rule's
    error and overstates the fine one's. As a check that the grid resolves the laws,
    each law's own density is integrated on the same grid: a law whose box lies in
    the grid must have mass 1 within that mass's own error estimate, and every law
    mass <= 1 + error; otherwise the estimate is refused (ValueError), as it is when
    the grid would need more than `max_nodes` nodes.
    """

    panels: int = 64
    order: int = 8
    tail: float = 10.0
    panels_per_sd: float = 1.0
    max_nodes: int = 1 << 23

    def __post_init__(self):
        check_count("panels", self.panels)
        check_count("order", self.order)
        check_count("max_nodes", self.max_nodes)
        check_positive_number("tail", self.tail)
        check_positive_number("panels_per_sd", self.panels_per_sd)


class SkewedMonteCarloWarning(UserWarning):
    """The normal interval value +- 1.96 error of a Monte Carlo estimate is unreliable:
    the integrand's sample skewness is too large for n (see `MonteCarlo`)."""


# Edgeworth expansion of the studentized mean T = sqrt(n) (mean - mu) / s (Hall, The
# Bootstrap and Edgeworth Expansion, 1992, Sec. 2.6): P(T <= z) = Phi(z) + n^{-1/2}
# gamma (2 z^2 + 1) phi(z) / 6 + O(1/n), gamma the skewness of one draw. Each tail of
# the 95% interval (z = 1.96) then misses with probability 0.025 -+ 0.0846 gamma/sqrt(n).
_EDGEWORTH_TAIL_SHIFT = (2 * 1.96**2 + 1) * math.exp(-0.5 * 1.96**2) / math.sqrt(2 * math.pi) / 6
_TAIL_SHIFT_TOLERANCE = 0.01  # warn once a tail's miss rate moves by 1 point (40% of 2.5%)


@dataclasses.dataclass(frozen=True)
class MonteCarlo:
    """Plain Monte Carlo with n i.i.d. draws per law; error = one standard error.

    The interval value +- 1.96 error is the normal (CLT) interval, and it under-covers
    when the integrand is skewed: for KL(grid4 || grid9) the log-ratio has skewness -44
    (a rare long tail between grid4's modes), and nominal 95% intervals covered 80% of
    the time at n = 2,000 and 90% at n = 10,000. By the Edgeworth expansion each tail
    of the interval misses with probability 0.025 -+ 0.0846 gamma / sqrt(n) (gamma the
    skewness of the summed integrand); `expectation_sum` issues a
    `SkewedMonteCarloWarning` when the sample estimate of that shift exceeds 0.01.
    Sample skewness itself underestimates a rare tail, so no warning is no guarantee.
    """

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


def _axis_edges(lo: float, hi: float, windows, method: Quadrature) -> np.ndarray:
    """Panel edges on [lo, hi]: cut at every window end; in each piece the panel width
    is min((hi - lo) / panels, smallest slice sd of a window overlapping it / panels_per_sd)."""
    base = (hi - lo) / method.panels
    cuts = [lo, hi] + [c for a, b, _ in windows for c in (a, b) if lo < c < hi]
    cuts = np.unique(np.asarray(cuts, np.float64))
    edges = [np.asarray([lo])]
    for a, b in zip(cuts[:-1], cuts[1:]):
        width = min([base] + [sd / method.panels_per_sd for w_lo, w_hi, sd in windows if w_lo < b and w_hi > a])
        count = max(1, math.ceil((b - a) / width - 1e-9))
        edges.append(np.linspace(a, b, count + 1)[1:])
    return np.concatenate(edges)


def _gauss_legendre_axis(edges: np.ndarray, order: int):
    nodes, weights = np.polynomial.legendre.leggauss(order)
    half = 0.5 * np.diff(edges)[:, None]
    mid = 0.5 * (edges[1:] + edges[:-1])[:, None]
    return (mid + half * nodes).ravel(), (half * weights).ravel()


def _refine(edges: np.ndarray) -> np.ndarray:
    """Every panel halved."""
    mid = 0.5 * (edges[1:] + edges[:-1])
    return np.insert(edges, np.arange(1, len(edges)), mid)


def _padded_size(n: int, chunk: int) -> int:
    """Evaluation sizes are powers of two (at least 1024, at most `chunk`), so that the
    compiled log-densities are reused across calls and refinement levels."""
    return min(chunk, max(1024, 1 << (n - 1).bit_length()))


def _integrate(integrand, axes, chunk=1 << 18) -> tuple[np.ndarray, np.ndarray, int]:
    """The tensor rule sum_j w_j f(x_j) over the grid of `axes` [(nodes, weights) per
    axis] for an integrand mapping (N, d) to (N, m), and a bound on its rounding.

    Rounding: the sum of N terms carries sqrt(N) eps sum_j |w_j f_j| (root mean square,
    Higham 2002, Sec. 4.2); each node is stored with an error up to eps |x_j| / 2 per
    coordinate, which moves f_j by up to |df/dx_i| eps |x_ji| / 2, summed over nodes
    with |df/dx_i| from differences of neighbouring nodes (this term dominates for a
    component much narrower than its distance to the origin).
    """
    shape = tuple(len(nodes) for nodes, _ in axes)
    total_nodes = math.prod(shape)
    grid = np.stack(np.meshgrid(*[nodes for nodes, _ in axes], indexing="ij"), axis=-1).reshape(-1, len(axes))
    values = []
    for start in range(0, total_nodes, chunk):
        points = grid[start : start + chunk]
        size = _padded_size(len(points), chunk)
        padded = np.concatenate([points, np.repeat(points[-1:], size - len(points), axis=0)])
        values.append(np.asarray(integrand(jnp.asarray(padded)), dtype=np.float64)[: len(points)])
    values = np.concatenate(values).reshape(shape + (-1,))
    with np.errstate(invalid="ignore"):
        return _tensor_sum(values, axes, total_nodes)


def _contract(array, vectors):
    """sum over the grid axes of array * prod_i vectors[i] (separable weights)."""
    for vector in vectors:
        array = np.tensordot(vector, array, axes=(0, 0))
    return array


def _tensor_sum(values, axes, total_nodes):
    weights = [w for _, w in axes]
    total = _contract(values, weights)
    eps = np.finfo(np.float64).eps
    rounding = math.sqrt(total_nodes) * eps * _contract(np.abs(values), weights)
    for i, (nodes, w) in enumerate(axes):
        if len(nodes) < 2:
            continue
        # |df/dx_i| at node k from the difference to node k + 1 (the last node reuses
        # the last difference), times w_k eps |x_k| / 2.
        step = np.diff(nodes)
        coefficient = w[:-1] * np.abs(nodes[:-1]) / step
        coefficient[-1] += w[-1] * np.abs(nodes[-1]) / step[-1]
        vectors = weights[:i] + [0.5 * eps * coefficient] + weights[i + 1 :]
        rounding = rounding + _contract(np.abs(np.diff(values, axis=i)), vectors)
    return total, rounding, total_nodes


def _quadrature(terms, laws64, logs_at, method: Quadrature, what: str, support) -> Estimate:
    indices = [t.index for t in terms] if support is None else list(support)
    boxes = [laws64[i].support_box(method.tail) for i in indices]
    lo = np.min([b[0] for b in boxes], axis=0)
    hi = np.max([b[1] for b in boxes], axis=0)
    dim = len(lo)
    # Windows (lo, hi, slice sd) of every component of every law the integrand reads.
    windows = [[] for _ in range(dim)]
    for law in laws64:
        centres, marginal, slice_sd = law.quadrature_scales()
        for i in range(dim):
            for c, m, s in zip(centres[:, i], marginal[:, i], slice_sd[:, i]):
                windows[i].append((c - method.tail * m, c + method.tail * m, s))
    coarse_edges = [_axis_edges(float(a), float(b), w, method) for a, b, w in zip(lo, hi, windows)]
    fine_edges = [_refine(e) for e in coarse_edges]
    per_axis = [(len(e) - 1) * method.order for e in fine_edges]
    if math.prod(per_axis) > method.max_nodes:
        narrowest = min(s for w in windows for _, _, s in w)
        raise ValueError(
            f"method=Quadrature(max_nodes={method.max_nodes}) is too small for these laws: resolving "
            f"their narrowest component (slice sd {narrowest:.3g}) across the box "
            f"[{', '.join(f'{a:.3g}..{b:.3g}' for a, b in zip(lo, hi))}] needs "
            f"{' x '.join(map(str, per_axis))} = {math.prod(per_axis)} nodes; pass "
            f"method=MonteCarlo(n) with a key, or a larger max_nodes"
        )
    weighted = [t.weighted or _default_weighted(t.g, t.index) for t in terms]

    def integrand(x):
        logs = logs_at(x)
        value = sum(w(x, logs) for w in weighted)
        return jnp.stack([jnp.broadcast_to(value, x.shape[:1])] + [jnp.exp(log) for log in logs], axis=1)

    coarse, _, _ = _integrate(integrand, [_gauss_legendre_axis(e, method.order) for e in coarse_edges])
    fine, rounding, _ = _integrate(integrand, [_gauss_legendre_axis(e, method.order) for e in fine_edges])
    with np.errstate(invalid="ignore"):
        errors = np.abs(fine - coarse) + rounding
    for i, (mass, mass_error) in enumerate(zip(fine[1:], errors[1:])):
        box_lo, box_hi = laws64[i].support_box(method.tail)
        inside = bool(np.all(box_lo >= lo) and np.all(box_hi <= hi))
        if (abs(mass - 1.0) if inside else mass - 1.0) > mass_error:
            raise ValueError(
                f"method=Quadrature(...) does not resolve law {i} ({type(laws64[i]).__name__}): its density "
                f"integrates to {mass:.15g} on the grid (error estimate {mass_error:.3g}); pass "
                f"method=MonteCarlo(n) with a key, or a finer Quadrature(panels_per_sd=...)"
            )
    value, error = float(fine[0]), float(errors[0])
    if not math.isfinite(value):
        error = math.nan
    return Estimate(
        value,
        error,
        f"{what}: Gauss-Legendre quadrature ({dim}-D, {' x '.join(map(str, per_axis))} nodes on "
        f"[{', '.join(f'{a:.3g}..{b:.3g}' for a, b in zip(lo, hi))}])",
    )


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
            return _quadrature(terms, laws64, logs_at, method, what, support)

        keys = jax.random.split(key, len(terms))
        values = 0.0
        variances = 0.0
        moments = []
        for term, term_key in zip(terms, keys):
            x = _sample(laws64[term.index], term_key, method.n)
            samples = np.asarray(term.g(x, logs_at(x)), np.float64).ravel()
            estimate = monte_carlo_mean(samples, what)
            values = values + estimate.value
            variances = variances + estimate.error**2
            moments.append(_central_moments(samples))
        _warn_if_skewed(moments, method.n, what)
        return Estimate(values, math.sqrt(variances), f"{what}: Monte Carlo (n={method.n} per law)")


def _central_moments(samples: np.ndarray) -> tuple[float, float]:
    """(second, third) central sample moments, NaN when a draw is not finite."""
    if not np.all(np.isfinite(samples)):
        return math.nan, math.nan
    centred = samples - samples.mean()
    return float(np.mean(centred**2)), float(np.mean(centred**3))


def _warn_if_skewed(moments, n: int, what: str) -> None:
    """Warn when the Edgeworth shift of a tail of the 95% interval exceeds 1 point.

    The estimate is a sum of independent means of n draws each; its skewness is
    sum_i k3_i / (sum_i k2_i)^{3/2} / sqrt(n) (cumulants add), i.e. gamma / sqrt(n) for
    gamma the skewness of the summed integrand.
    """
    second = sum(m[0] for m in moments)
    third = sum(m[1] for m in moments)
    if not (math.isfinite(second) and math.isfinite(third)) or second <= 0:
        return
    gamma = third / second**1.5
    shift = _EDGEWORTH_TAIL_SHIFT * abs(gamma) / math.sqrt(n)
    if shift > _TAIL_SHIFT_TOLERANCE:
        warnings.warn(
            f"{what}: the Monte Carlo integrand has sample skewness {gamma:.3g} at n={n}, so each tail "
            f"of the normal 95% interval value +- 1.96 error may miss {shift:.2g} more or less often "
            f"than 2.5% (Edgeworth); the interval can under-cover. Increase n (the shift falls as "
            f"1/sqrt(n)) or use quadrature where d <= 2.",
            SkewedMonteCarloWarning,
            stacklevel=3,
        )
