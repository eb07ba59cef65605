"""f-divergences from their generator f, and the variational bound of f-GAN.

D_f(P || Q) = E_Q[f(p(X) / q(X))] for convex f with f(1) = 0, and for every critic T,

    D_f(P || Q) >= E_P[T(X)] - E_Q[f*(T(X))],  f*(u) = sup_t (u t - f(t)),

with equality at T = f'(p / q) (Nguyen, Wainwright & Jordan 2010; Nowozin, Cseke &
Tomioka, "f-GAN", NeurIPS 2016, eq. (4)-(5) and Table 1).

Each generator is an object with f, its convex conjugate, f' and the perspective
q f(p / q) written in log-densities so that quadrature stays finite where one density
underflows.
"""

from __future__ import annotations

import abc
import math

import equinox as eqx
import jax.numpy as jnp

from theory.estimate import Estimate
from theory.integrate import Term, check_same_dim, choose_method, expectation_sum

_LOG2 = math.log(2.0)


class AbstractFDivergence(eqx.Module):
    """A convex generator f with f(1) = 0, and what f-GAN needs of it."""

    @abc.abstractmethod
    def f(self, t):
        """The generator f(t), t > 0."""

    @abc.abstractmethod
    def conjugate(self, u):
        """f*(u) = sup_t (u t - f(t)); +inf outside its domain."""

    @abc.abstractmethod
    def derivative_at_log_ratio(self, log_t):
        """f'(t) at t = exp(log_t): the optimal critic T* = f'(p / q)."""

    @abc.abstractmethod
    def perspective(self, log_p, log_q):
        """q f(p / q), from log-densities, computed without overflow."""


class KullbackLeibler(AbstractFDivergence):
    """f(t) = t log t: D_f = KL(P || Q); f*(u) = exp(u - 1); f'(t) = 1 + log t."""

    def f(self, t):
        return jnp.where(t > 0, t * jnp.log(t), 0.0)

    def conjugate(self, u):
        return jnp.exp(u - 1.0)

    def derivative_at_log_ratio(self, log_t):
        return 1.0 + log_t

    def perspective(self, log_p, log_q):
        return jnp.where(log_p == -jnp.inf, 0.0, jnp.exp(log_p) * (log_p - log_q))


class ReverseKullbackLeibler(AbstractFDivergence):
    """f(t) = -log t: D_f = KL(Q || P); f*(u) = -1 - log(-u) for u < 0; f'(t) = -1/t."""

    def f(self, t):
        return -jnp.log(t)

    def conjugate(self, u):
        return jnp.where(u < 0, -1.0 - jnp.log(jnp.where(u < 0, -u, 1.0)), jnp.inf)

    def derivative_at_log_ratio(self, log_t):
        return -jnp.exp(-log_t)

    def perspective(self, log_p, log_q):
        return jnp.where(log_q == -jnp.inf, 0.0, jnp.exp(log_q) * (log_q - log_p))


class PearsonChiSquared(AbstractFDivergence):
    """f(t) = (t - 1)^2: D_f = integral (p - q)^2 / q; f*(u) = u^2 / 4 + u; f'(t) = 2 (t - 1)."""

    def f(self, t):
        return (t - 1.0) ** 2

    def conjugate(self, u):
        return 0.25 * u**2 + u

    def derivative_at_log_ratio(self, log_t):
        return 2.0 * (jnp.exp(log_t) - 1.0)

    def perspective(self, log_p, log_q):
        return jnp.exp(2.0 * log_p - log_q) - 2.0 * jnp.exp(log_p) + jnp.exp(log_q)


class SquaredHellinger(AbstractFDivergence):
    """f(t) = (sqrt t - 1)^2: D_f = integral (sqrt p - sqrt q)^2, in [0, 2];
    f*(u) = u / (1 - u) for u < 1; f'(t) = 1 - 1 / sqrt t."""

    def f(self, t):
        return (jnp.sqrt(t) - 1.0) ** 2

    def conjugate(self, u):
        return jnp.where(u < 1, u / jnp.where(u < 1, 1.0 - u, 1.0), jnp.inf)

    def derivative_at_log_ratio(self, log_t):
        return 1.0 - jnp.exp(-0.5 * log_t)

    def perspective(self, log_p, log_q):
        return (jnp.exp(0.5 * log_p) - jnp.exp(0.5 * log_q)) ** 2


class TotalVariation(AbstractFDivergence):
    """f(t) = |t - 1| / 2: D_f = sup_A |P(A) - Q(A)|, in [0, 1];
    f*(u) = u on |u| <= 1/2; f'(t) = sign(t - 1) / 2."""

    def f(self, t):
        return 0.5 * jnp.abs(t - 1.0)

    def conjugate(self, u):
        return jnp.where(jnp.abs(u) <= 0.5, u, jnp.inf)

    def derivative_at_log_ratio(self, log_t):
        return 0.5 * jnp.sign(log_t)

    def perspective(self, log_p, log_q):
        return 0.5 * jnp.abs(jnp.exp(log_p) - jnp.exp(log_q))


class JensenShannon(AbstractFDivergence):
    """f(t) = [t log t - (1 + t) log((1 + t) / 2)] / 2: D_f = JS(P, Q), in [0, log 2];
    f*(u) = -log(2 - exp(2u)) / 2 for u < log(2) / 2; f'(t) = log(2t / (1 + t)) / 2.

    (f-GAN's "GAN" generator t log t - (1 + t) log(1 + t) = 2 f(t) - (1 + t) log 2 gives
    2 JS - log 4, the value of the original GAN game at the optimal discriminator.)
    """

    def f(self, t):
        return 0.5 * (jnp.where(t > 0, t * jnp.log(t), 0.0) - (1.0 + t) * jnp.log((1.0 + t) / 2.0))

    def conjugate(self, u):
        inside = u < 0.5 * _LOG2
        return jnp.where(inside, -0.5 * jnp.log(2.0 - jnp.exp(2.0 * jnp.where(inside, u, 0.0))), jnp.inf)

    def derivative_at_log_ratio(self, log_t):
        return 0.5 * (_LOG2 + log_t - jnp.logaddexp(0.0, log_t))

    def perspective(self, log_p, log_q):
        log_sum = jnp.logaddexp(log_p, log_q)
        term_p = jnp.where(log_p == -jnp.inf, 0.0, jnp.exp(log_p) * (_LOG2 + log_p - log_sum))
        term_q = jnp.where(log_q == -jnp.inf, 0.0, jnp.exp(log_q) * (_LOG2 + log_q - log_sum))
        return 0.5 * (term_p + term_q)


ALL_F_DIVERGENCES = (
    KullbackLeibler(),
    ReverseKullbackLeibler(),
    PearsonChiSquared(),
    SquaredHellinger(),
    TotalVariation(),
    JensenShannon(),
)


def f_divergence(divergence: AbstractFDivergence, p, q, *, key=None, method=None) -> Estimate:
    """D_f(P || Q) = E_Q[f(p(X) / q(X))] = integral q f(p / q), in nats where f has logs.

    Args:
        divergence: the generator, e.g. `SquaredHellinger()`.
        p, q: distributions with `log_prob` on the same R^d.
        key: PRNG key, required for Monte Carlo.
        method: None (quadrature in d <= 2, else Monte Carlo) or an explicit method.
            Monte Carlo draws from q only (E_Q[f(p/q)]), so generators whose integrand
            is heavy-tailed under Q (Pearson chi^2) give large standard errors.

    Returns:
        An `Estimate`.

    Reference: Csiszar (1967); Ali & Silvey (1966); Nowozin et al. (2016), eq. (2).
    """
    _check_generator(divergence)
    check_same_dim(p=p, q=q)
    method = choose_method([p, q], method, key)

    def under_q(x, logs):
        lp, lq = logs
        return divergence.f(jnp.exp(lp - lq))

    def weighted(x, logs):
        return divergence.perspective(*logs)

    name = type(divergence).__name__
    # q f(p / q) has mass wherever p or q has (e.g. p log(p / q) for KL), so the
    # quadrature box must cover both laws, not only q under which the term is taken.
    return expectation_sum(
        [Term(1, under_q, weighted)], [p, q], method=method, key=key, what=f"D_f[{name}]", support=(0, 1)
    )


def f_gan_lower_bound(divergence: AbstractFDivergence, critic, p, q, *, key=None, method=None) -> Estimate:
    """The f-GAN variational lower bound E_P[T(X)] - E_Q[f*(T(X))] <= D_f(P || Q).

    Args:
        divergence: the generator f.
        critic: T, a callable mapping points (n, d) to values (n,) (vmap a network first).
        p, q: distributions on the same R^d.
        key, method: as in `f_divergence`.

    Returns:
        An `Estimate`; equal to D_f(P || Q) at T = f'(p / q) (see `optimal_f_critic`).

    Reference: Nguyen, Wainwright & Jordan (2010), Lemma 1; Nowozin et al. (2016), eq. (4).
    """
    _check_generator(divergence)
    check_same_dim(p=p, q=q)
    method = choose_method([p, q], method, key)

    def under_p(x, logs):
        return critic(x)

    def under_q(x, logs):
        return -divergence.conjugate(critic(x))

    name = type(divergence).__name__
    return expectation_sum(
        [Term(0, under_p), Term(1, under_q)], [p, q], method=method, key=key, what=f"f-GAN bound[{name}]"
    )


class OptimalFCritic(eqx.Module):
    """T*(x) = f'(p(x) / q(x)), the critic at which the f-GAN bound is tight."""

    divergence: AbstractFDivergence
    p: object
    q: object

    def __call__(self, x):
        return self.divergence.derivative_at_log_ratio(self.p.log_prob(x) - self.q.log_prob(x))


def optimal_f_critic(divergence: AbstractFDivergence, p, q) -> OptimalFCritic:
    """The maximiser T* = f'(p / q) of the f-GAN bound (Nowozin et al. 2016, eq. (5))."""
    _check_generator(divergence)
    check_same_dim(p=p, q=q)
    return OptimalFCritic(divergence, p, q)


def _check_generator(divergence):
    if not isinstance(divergence, AbstractFDivergence):
        raise ValueError(f"divergence must be an f-divergence generator such as KullbackLeibler(), got {divergence!r}")
