"""Kullback-Leibler, Jensen-Shannon and Fisher divergences, exactly where possible (nats).

Method choice, unless `method=` says otherwise: closed form where one exists (KL between
Gaussians), Gauss-Legendre quadrature when both laws have densities on R^d with d <= 2,
Monte Carlo with a standard error otherwise (then `key=` is required). Probability
vectors (NumPy arrays) give the exact discrete divergences.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from theory.distributions import AbstractDensity, AbstractDistribution, Gaussian, to_float64
from theory.estimate import Estimate
from theory.integrate import Term, check_same_dim, choose_method, expectation_sum
from theory.validation import check_probability_vector

_LOG2 = math.log(2.0)


def _is_probability_vector(p) -> bool:
    return not isinstance(p, AbstractDistribution)


def _discrete_pair(p, q):
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.ndim != 1 or p.shape != q.shape:
        raise ValueError(f"p and q must be probability vectors of one shape (k,), got shapes {p.shape} and {q.shape}")
    check_probability_vector("p", p)
    check_probability_vector("q", q)
    return p, q


def _xlogy_ratio(a, b):
    """a log(a / b) with 0 log(0 / b) = 0 and a log(a / 0) = +inf for a > 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(a > 0, a * (np.log(a) - np.log(b)), 0.0)
    return out


def _check_pair(p, q):
    for name, law in (("p", p), ("q", q)):
        if not isinstance(law, AbstractDistribution):
            raise ValueError(f"{name} must be a distribution with log_prob or a probability vector, got {type(law).__name__}")
    check_same_dim(p=p, q=q)


def kl_gaussians(p: Gaussian, q: Gaussian) -> Estimate:
    """KL(N(m0, S0) || N(m1, S1)) in closed form, float64.

    KL = 1/2 [tr(S1^{-1} S0) + (m1 - m0)^T S1^{-1} (m1 - m0) - d + log det S1 - log det S0].
    """
    for name, law in (("p", p), ("q", q)):
        if not isinstance(law, Gaussian):
            raise ValueError(f"{name} must be a Gaussian, got {type(law).__name__}")
    check_same_dim(p=p, q=q)
    m0, s0 = np.asarray(p.mean, np.float64), np.asarray(p.cov, np.float64)
    m1, s1 = np.asarray(q.mean, np.float64), np.asarray(q.cov, np.float64)
    c1 = np.linalg.cholesky(s1)
    diff = np.linalg.solve(c1, m1 - m0)
    whitened = np.linalg.solve(c1, np.linalg.cholesky(s0))
    logdet0 = np.linalg.slogdet(s0)[1]
    logdet1 = 2.0 * np.sum(np.log(np.diag(c1)))
    value = 0.5 * (np.sum(whitened**2) + diff @ diff - len(m0) + logdet1 - logdet0)
    return Estimate(max(value, 0.0), 0.0, "KL: closed form (Gaussian/Gaussian)")


def kl(p, q, *, key=None, method=None) -> Estimate:
    """Kullback-Leibler divergence KL(p || q) in nats.

    KL(p || q) = E_p[log p(X) - log q(X)] = integral p(x) log(p(x) / q(x)) dx,
    and sum_i p_i log(p_i / q_i) for probability vectors.

    Args:
        p, q: distributions with `log_prob` on the same R^d (w.r.t. the same base
            measure), or probability vectors of shape (k,).
        key: PRNG key, required when Monte Carlo is used.
        method: None (closed form if both are `Gaussian`, else `Quadrature()` in
            d <= 2, else `MonteCarlo()`), or a `Quadrature(...)` / `MonteCarlo(n=...)`.

    Returns:
        An `Estimate`: value, error (0 for closed forms, quadrature error estimate,
        or Monte Carlo standard error) and the method used.

    Reference: Kullback & Leibler (1951); Cover & Thomas, Elements of Information
    Theory, eq. (2.26).
    """
    if _is_probability_vector(p) and _is_probability_vector(q):
        p, q = _discrete_pair(p, q)
        return Estimate(float(np.sum(_xlogy_ratio(p, q))), 0.0, "KL: exact sum (discrete)")
    _check_pair(p, q)
    if method is None and isinstance(p, Gaussian) and isinstance(q, Gaussian):
        return kl_gaussians(p, q)
    method = choose_method([p, q], method, key)

    def log_ratio(x, logs):
        lp, lq = logs
        return jnp.where(lp == -jnp.inf, 0.0, lp - lq)

    return expectation_sum([Term(0, log_ratio)], [p, q], method=method, key=key, what="KL")


def _js_half_terms():
    """JS = 1/2 E_p[log(2p / (p + q))] + 1/2 E_q[log(2q / (p + q))], each in [0, log 2]."""

    def term_p(x, logs):
        lp, lq = logs
        return 0.5 * (_LOG2 + lp - jnp.logaddexp(lp, lq))

    def term_q(x, logs):
        lp, lq = logs
        return 0.5 * (_LOG2 + lq - jnp.logaddexp(lp, lq))

    return [Term(0, term_p), Term(1, term_q)]


def js(p, q, *, key=None, method=None) -> Estimate:
    """Jensen-Shannon divergence JS(p, q) in nats, in [0, log 2].

    JS(p, q) = 1/2 KL(p || m) + 1/2 KL(q || m), m = (p + q) / 2,
    computed as 1/2 E_p[log(2p / (p + q))] + 1/2 E_q[log(2q / (p + q))] with
    log-sum-exp, so it stays exact when the supports (nearly) separate.

    Args:
        p, q: distributions with `log_prob` on the same R^d (w.r.t. the same base
            measure, e.g. two `VerticalSegment`s), or probability vectors (k,).
        key: PRNG key, required when Monte Carlo is used.
        method: None (quadrature in d <= 2 for Lebesgue densities, else Monte Carlo),
            or `Quadrature(...)` / `MonteCarlo(n=...)`.

    Returns:
        An `Estimate` (value, error, method).

    Reference: Lin, "Divergence measures based on the Shannon entropy", IEEE Trans.
    Inf. Theory 37 (1991); Goodfellow et al. (2014), Theorem 1: V(D*, G) = 2 JS - log 4.
    """
    if _is_probability_vector(p) and _is_probability_vector(q):
        p, q = _discrete_pair(p, q)
        m = 0.5 * (p + q)
        value = 0.5 * np.sum(_xlogy_ratio(p, m)) + 0.5 * np.sum(_xlogy_ratio(q, m))
        return Estimate(float(value), 0.0, "JS: exact sum (discrete)")
    _check_pair(p, q)
    method = choose_method([p, q], method, key)
    return expectation_sum(_js_half_terms(), [p, q], method=method, key=key, what="JS")


@eqx.filter_jit
def _score(law, x):
    return law.score(x)


def fisher_divergence(p, score_fn, *, key=None, method=None) -> Estimate:
    """Fisher divergence of a score model to the exact score of p, with its numerical error.

    F(p, s) = E_p || s(X) - grad_x log p(X) ||^2.

    Args:
        p: a law with a closed-form `score` (e.g. `MixtureOfGaussians`, `Gaussian`,
            or `target.noised(scale, std)` for a perturbed score).
        score_fn: callable mapping points (n, d) to scores (n, d) (vmap a one-sample
            network first).
        key: PRNG key for the draws from p, required when Monte Carlo is used.
        method: None (`Quadrature()` in d <= 2, else `MonteCarlo()`), or a
            `Quadrature(...)` / `MonteCarlo(n)`.

    Returns:
        An `Estimate` (value, error: the quadrature error estimate or the Monte Carlo
        standard error, method).

    Reference: Hyvarinen, "Estimation of non-normalized statistical models by score
    matching", JMLR 6 (2005), eq. (2); Song & Ermon (2019), eq. (2).
    """
    if not isinstance(p, AbstractDensity):
        raise TypeError(f"p must be a law with a closed-form score (an AbstractDensity), got {type(p).__name__}")
    if not callable(score_fn):
        raise TypeError(f"score_fn must be callable, got {score_fn!r}")
    method = choose_method([p], method, key)
    with jax.enable_x64(True):
        p64 = to_float64(p)

        def squared_error(x, logs):
            model = jnp.asarray(score_fn(x), jnp.float64)
            if model.shape != x.shape:
                raise ValueError(f"score_fn must map points of shape {x.shape} to the same shape, got {model.shape}")
            return jnp.sum((model - _score(p64, x)) ** 2, axis=-1)

        return expectation_sum([Term(0, squared_error)], [p64], method=method, key=key, what="Fisher divergence")
