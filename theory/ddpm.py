"""Discrete-time DDPM (Ho et al. 2020): beta schedules, forward kernels, posterior, mu_theta.

Notation (Ho et al.): steps i = 1..T, alpha_i = 1 - beta_i, alpha_bar_i = prod_{j<=i} alpha_j,
alpha_bar_0 = 1. (The lecture writes alpha_t for Ho's alpha_bar_t.)

    q(x_i | x_{i-1}) = N( sqrt(alpha_i) x_{i-1}, beta_i I )                       (Ho eq. 2)
    q(x_i | x_0)     = N( sqrt(alpha_bar_i) x_0, (1 - alpha_bar_i) I )            (Ho eq. 4)
    q(x_{i-1} | x_i, x_0) = N( mu_tilde_i(x_i, x_0), beta_tilde_i I )             (Ho eqs. 6-7)
    mu_theta(x_i, i) = ( x_i - beta_i / sqrt(1 - alpha_bar_i) eps_theta(x_i, i) ) / sqrt(alpha_i)   (Ho eq. 11)

Schedule fields are keyword-only (`LinearBetaSchedule(beta_start=1e-4, beta_end=0.02,
n_steps=1000)`). Schedules compute their tables once, in float64 NumPy (1 - alpha_bar_1 = 1e-4 would lose
three digits in float32 cumulative products); functions cast them to the dtype of
their array arguments. Every function takes the step index i as an integer (array or
Python int) so samplers can trace it.

References: Ho, Jain & Abbeel, "Denoising diffusion probabilistic models", NeurIPS 2020;
Nichol & Dhariwal, "Improved denoising diffusion probabilistic models", ICML 2021,
eq. (17) (cosine schedule).
"""

from __future__ import annotations

import abc
import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from theory.distributions import AbstractDensity
from theory.sde import mixture_score
from theory.validation import check_count, check_in_interval

__all__ = [
    "AbstractBetaSchedule",
    "LinearBetaSchedule",
    "CosineBetaSchedule",
    "IsotropicNormal",
    "forward_marginal",
    "one_step_kernel",
    "posterior",
    "epsilon_mean",
    "predicted_x0",
    "noised_target",
    "ExactEpsilon",
]


class IsotropicNormal(NamedTuple):
    """N(mean, std^2 I): a Gaussian kernel evaluated at one conditioning point."""

    mean: Float[Array, "... d"]
    std: Float[Array, ""]


class AbstractBetaSchedule(eqx.Module):
    """A variance schedule beta_1..beta_T in (0, 1) of a discrete diffusion."""

    n_steps: eqx.AbstractVar[int]

    @abc.abstractmethod
    def betas(self) -> np.ndarray:
        """beta_1..beta_T as a float64 NumPy array of shape (T,)."""

    def alpha_bars(self) -> np.ndarray:
        """alpha_bar_0..alpha_bar_T, float64 of shape (T + 1,), alpha_bar_0 = 1."""
        return np.concatenate([[1.0], np.cumprod(1.0 - self.betas())])

    def one_minus_alpha_bars(self) -> np.ndarray:
        """1 - alpha_bar_i for i = 0..T, computed as -expm1(sum log(1 - beta)) so that
        1 - alpha_bar_1 = beta_1 = 1e-4 keeps its digits."""
        log_alpha_bar = np.concatenate([[0.0], np.cumsum(np.log1p(-self.betas()))])
        return -np.expm1(log_alpha_bar)


class LinearBetaSchedule(AbstractBetaSchedule):
    """beta_i linear from beta_start (i = 1) to beta_end (i = T).

    beta_i = beta_start + (i - 1) / (T - 1) (beta_end - beta_start).

    Args:
        beta_start: beta_1 (Ho et al.: 1e-4).
        beta_end: beta_T (Ho et al.: 0.02).
        n_steps: T (Ho et al.: 1000).

    Reference: Ho et al. (2020), Sec. 4.
    """

    beta_start: float = eqx.field(static=True, default=1e-4, kw_only=True)
    beta_end: float = eqx.field(static=True, default=0.02, kw_only=True)
    n_steps: int = eqx.field(static=True, default=1000, kw_only=True)

    def __check_init__(self):
        check_count("n_steps", self.n_steps)
        check_in_interval("beta_start", self.beta_start, 0.0, 1.0)
        check_in_interval("beta_end", self.beta_end, 0.0, 1.0)

    def betas(self) -> np.ndarray:
        return np.linspace(self.beta_start, self.beta_end, self.n_steps, dtype=np.float64)


class CosineBetaSchedule(AbstractBetaSchedule):
    """The cosine schedule: alpha_bar follows a squared cosine in i / T.

    f(i) = cos( (i / T + s) / (1 + s) * pi / 2 )^2,  alpha_bar_i = f(i) / f(0),
    beta_i = min(1 - alpha_bar_i / alpha_bar_{i-1}, max_beta).

    Args:
        n_steps: T.
        offset: s (Nichol & Dhariwal: 0.008), keeps beta_1 from vanishing.
        max_beta: clip near i = T (Nichol & Dhariwal: 0.999).

    Reference: Nichol & Dhariwal (2021), eq. (17).
    """

    n_steps: int = eqx.field(static=True, default=1000, kw_only=True)
    offset: float = eqx.field(static=True, default=0.008, kw_only=True)
    max_beta: float = eqx.field(static=True, default=0.999, kw_only=True)

    def __check_init__(self):
        check_count("n_steps", self.n_steps)
        check_in_interval("offset", self.offset, 0.0, 1.0)
        check_in_interval("max_beta", self.max_beta, 0.0, 1.0)

    def betas(self) -> np.ndarray:
        steps = np.arange(self.n_steps + 1, dtype=np.float64) / self.n_steps
        f = np.cos((steps + self.offset) / (1.0 + self.offset) * math.pi / 2.0) ** 2
        alpha_bar = f / f[0]
        return np.minimum(1.0 - alpha_bar[1:] / alpha_bar[:-1], self.max_beta)


def _table(values: np.ndarray, dtype, i):
    return jnp.asarray(values, dtype)[i]


def _dtype(*arrays):
    return jnp.result_type(*[jnp.asarray(a) for a in arrays], jnp.float32)


def _posterior_tables(schedule: AbstractBetaSchedule) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float64 tables over i = 0..T of the coefficients of x_0 and x_i in mu_tilde and of
    beta_tilde (entry 0 is NaN: there is no step 0 -> -1)."""
    betas = np.concatenate([[np.nan], schedule.betas()])
    alpha_bars = schedule.alpha_bars()
    one_minus = schedule.one_minus_alpha_bars()
    with np.errstate(invalid="ignore", divide="ignore"):
        previous_alpha_bar = np.concatenate([[np.nan], alpha_bars[:-1]])
        previous_one_minus = np.concatenate([[np.nan], one_minus[:-1]])
        coef_x0 = np.sqrt(previous_alpha_bar) * betas / one_minus
        coef_xt = np.sqrt(1.0 - betas) * previous_one_minus / one_minus
        variance = previous_one_minus / one_minus * betas
    return coef_x0, coef_xt, variance


def forward_marginal(schedule: AbstractBetaSchedule, x0: Float[Array, "... d"], i: Int[Array, ""]) -> IsotropicNormal:
    """q(x_i | x_0) = N( sqrt(alpha_bar_i) x_0, (1 - alpha_bar_i) I ).

    Args:
        schedule: the beta schedule.
        x0: the clean point, shape (d,) or (..., d).
        i: step index in 0..T (i = 0 gives the point mass at x_0, std 0).

    Returns:
        `IsotropicNormal(mean, std)`.

    Reference: Ho et al. (2020), eq. (4).
    """
    dtype = _dtype(x0)
    scale = jnp.sqrt(_table(schedule.alpha_bars(), dtype, i))
    std = jnp.sqrt(_table(schedule.one_minus_alpha_bars(), dtype, i))
    return IsotropicNormal(scale * x0, std)


def one_step_kernel(schedule: AbstractBetaSchedule, x_prev: Float[Array, "... d"], i: Int[Array, ""]) -> IsotropicNormal:
    """q(x_i | x_{i-1}) = N( sqrt(1 - beta_i) x_{i-1}, beta_i I ), for i in 1..T.

    Reference: Ho et al. (2020), eq. (2).
    """
    dtype = _dtype(x_prev)
    beta = _table(np.concatenate([[0.0], schedule.betas()]), dtype, i)
    return IsotropicNormal(jnp.sqrt(1.0 - beta) * x_prev, jnp.sqrt(beta))


def posterior(
    schedule: AbstractBetaSchedule, x_t: Float[Array, "... d"], x0: Float[Array, "... d"], i: Int[Array, ""]
) -> IsotropicNormal:
    """q(x_{i-1} | x_i, x_0) = N( mu_tilde, beta_tilde I ), for i in 1..T.

    mu_tilde = sqrt(alpha_bar_{i-1}) beta_i / (1 - alpha_bar_i) x_0
               + sqrt(alpha_i) (1 - alpha_bar_{i-1}) / (1 - alpha_bar_i) x_i,
    beta_tilde = (1 - alpha_bar_{i-1}) / (1 - alpha_bar_i) beta_i.

    Args:
        schedule: the beta schedule.
        x_t: the noisy point x_i, shape (..., d).
        x0: the clean point, same shape.
        i: step index in 1..T.

    Returns:
        `IsotropicNormal(mean=mu_tilde, std=sqrt(beta_tilde))`.

    Reference: Ho et al. (2020), eqs. (6)-(7).
    """
    dtype = _dtype(x_t, x0)
    coef_x0, coef_xt, variance = _posterior_tables(schedule)
    coef_x0, coef_xt = _table(coef_x0, dtype, i), _table(coef_xt, dtype, i)
    variance = _table(variance, dtype, i)
    return IsotropicNormal(coef_x0 * x0 + coef_xt * x_t, jnp.sqrt(variance))


def epsilon_mean(
    schedule: AbstractBetaSchedule, x_t: Float[Array, "... d"], epsilon: Float[Array, "... d"], i: Int[Array, ""]
) -> Float[Array, "... d"]:
    """The epsilon-parametrised reverse mean mu_theta(x_i, i).

    mu_theta = ( x_i - beta_i / sqrt(1 - alpha_bar_i) eps_theta(x_i, i) ) / sqrt(alpha_i).
    When eps_theta returns the noise eps with x_i = sqrt(alpha_bar_i) x_0 + sqrt(1 - alpha_bar_i) eps,
    mu_theta equals the posterior mean mu_tilde(x_i, x_0).

    Args:
        schedule: the beta schedule.
        x_t: x_i, shape (..., d).
        epsilon: the predicted noise eps_theta(x_i, i), same shape.
        i: step index in 1..T.

    Reference: Ho et al. (2020), eq. (11).
    """
    dtype = _dtype(x_t, epsilon)
    beta = _table(np.concatenate([[0.0], schedule.betas()]), dtype, i)
    std = jnp.sqrt(_table(schedule.one_minus_alpha_bars(), dtype, i))
    return (x_t - beta / std * epsilon) / jnp.sqrt(1.0 - beta)


def predicted_x0(
    schedule: AbstractBetaSchedule, x_t: Float[Array, "... d"], epsilon: Float[Array, "... d"], i: Int[Array, ""]
) -> Float[Array, "... d"]:
    """x0_hat = ( x_i - sqrt(1 - alpha_bar_i) eps ) / sqrt(alpha_bar_i): x_0 solved from
    Ho eq. (4) with the predicted noise (Song, Meng & Ermon 2021, DDIM eq. 9)."""
    dtype = _dtype(x_t, epsilon)
    scale = jnp.sqrt(_table(schedule.alpha_bars(), dtype, i))
    std = jnp.sqrt(_table(schedule.one_minus_alpha_bars(), dtype, i))
    return (x_t - std * epsilon) / scale


def noised_target(schedule: AbstractBetaSchedule, target: AbstractDensity, i) -> AbstractDensity:
    """The exact marginal q(x_i) = law( sqrt(alpha_bar_i) X_0 + sqrt(1 - alpha_bar_i) Z ), X_0 ~ target."""
    dtype = _dtype(*jax.tree.leaves(eqx.filter(target, eqx.is_inexact_array)))
    scale = jnp.sqrt(_table(schedule.alpha_bars(), dtype, i))
    std = jnp.sqrt(_table(schedule.one_minus_alpha_bars(), dtype, i))
    return target.noised(scale, std)


class ExactEpsilon(eqx.Module):
    """The exact noise predictor of a Gaussian-mixture target, (x, i) -> E[eps | x_i = x].

    eps*(x, i) = -sqrt(1 - alpha_bar_i) grad_x log q(x_i = x), by Tweedie's formula
    E[x_0 | x_i] = (x_i + (1 - alpha_bar_i) grad log q_i(x_i)) / sqrt(alpha_bar_i).

    Args:
        schedule: the beta schedule.
        target: the data law (a `MixtureOfGaussians` or `Gaussian`).

    Call: x of shape (d,) (vmap over points), i an integer step in 1..T; returns shape (d,).

    Reference: Ho et al. (2020), Sec. 3.2; Vincent (2011) / Efron (2011) for Tweedie.
    """

    schedule: AbstractBetaSchedule
    target: AbstractDensity

    def __call__(self, x, i):
        law = noised_target(self.schedule, self.target, i)
        std = jnp.sqrt(_table(self.schedule.one_minus_alpha_bars(), _dtype(x), i))
        return -std * mixture_score(law, x)
