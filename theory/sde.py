"""Forward noising SDEs with closed-form marginals: VP, sub-VP and VE (Song et al. 2021).

Each process is an Itô SDE on [0, T] (T = 1) with affine drift and state-independent
diffusion,

    dx = f(x, t) dt + g(t) dW,      f(x, t) = -h(t) x,

so that, given x_0, the marginal is Gaussian and isotropic:

    x_t | x_0 ~ N( m(t) x_0, s(t)^2 I ),   i.e.   x_t = m(t) x_0 + s(t) eps.

If the data law is a Gaussian mixture, p_t = law(m(t) X + s(t) Z) is the mixture
`target.noised(m(t), s(t))`, whose score is exact (log-sum-exp over components): this is
what lets the lab separate score error from discretisation error. The reverse-time SDE
and the probability-flow ODE built from these objects live in `theory.diffusion_samplers`.

Fields are keyword-only: `VPSDE(beta_min=0.1, beta_max=20.0)` (a positional
`VPSDE(0.1, 20.0)` used to build t_max = 0.1, beta_min = 20). Time `t` is a scalar
array; the state `x` is one sample of shape (d,) (vmap over samples) or any array
whose last axis is d. Computations run in the dtype of `t`/`x`.

Reference: Song, Sohl-Dickstein, Kingma, Kumar, Ermon & Poole, "Score-based generative
modeling through stochastic differential equations", ICLR 2021, Sec. 3.4 and App. B
(eqs. 9, 11, 29-31); public code yang-song/score_sde, sde_lib.py.
"""

from __future__ import annotations

import abc
import math

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from theory.distributions import AbstractDensity, Gaussian, score_at_point
from theory.validation import check_positive_number

__all__ = [
    "AbstractSDE",
    "VPSDE",
    "SubVPSDE",
    "VESDE",
    "ExactMarginalScore",
    "mixture_score",
]


class AbstractSDE(eqx.Module):
    """A forward noising SDE dx = f(x, t) dt + g(t) dW on [0, T] with Gaussian transitions.

    Subclasses define the drift f, the diffusion g, and the exact marginal
    x_t | x_0 ~ N(m(t) x_0, s(t)^2 I) with m = `marginal_scale`, s = `marginal_std`;
    everything else (the noised target, its exact score, the prior) follows.
    """

    t_max: eqx.AbstractVar[float]

    @abc.abstractmethod
    def drift(self, x: Float[Array, "... d"], t: Float[Array, ""]) -> Float[Array, "... d"]:
        """f(x, t)."""

    @abc.abstractmethod
    def diffusion(self, t: Float[Array, ""]) -> Float[Array, ""]:
        """g(t), a scalar: the noise is additive and isotropic."""

    @abc.abstractmethod
    def marginal_scale(self, t: Float[Array, "..."]) -> Float[Array, "..."]:
        """m(t) in x_t | x_0 ~ N(m(t) x_0, s(t)^2 I)."""

    @abc.abstractmethod
    def marginal_std(self, t: Float[Array, "..."]) -> Float[Array, "..."]:
        """s(t) in x_t | x_0 ~ N(m(t) x_0, s(t)^2 I)."""

    @abc.abstractmethod
    def prior(self, dim: int) -> Gaussian:
        """The tractable law p_T the reverse processes start from (approximates p_T)."""

    @abc.abstractmethod
    def time_at_noise_ratio(self, ratio: Float[Array, "..."]) -> Float[Array, "..."]:
        """The time t at which s(t) / m(t) = ratio (a noise-to-signal ratio), inverting the
        closed forms; clipped to [0, T] outside the range the process reaches."""

    def noised_target(self, target: AbstractDensity, t: Float[Array, ""]) -> AbstractDensity:
        """The exact marginal p_t = law(m(t) X_0 + s(t) Z), X_0 ~ target, Z ~ N(0, I).

        Args:
            target: the data law p_0 (a `Gaussian` or `MixtureOfGaussians`).
            t: a scalar time in [0, T].

        Returns:
            `target.noised(m(t), s(t))`, with closed-form density and score.
        """
        t = jnp.asarray(t)
        return target.noised(self.marginal_scale(t), self.marginal_std(t))

    def score(self, target: AbstractDensity, x: Float[Array, "... d"], t: Float[Array, ""]) -> Float[Array, "... d"]:
        """grad_x log p_t(x), exactly, for the noised target at time t."""
        return self.noised_target(target, t).score(x)


class _AbstractLinearBetaSDE(AbstractSDE):
    """The VP family: drift -beta(t) x / 2 with beta linear in t, mean scale
    m(t) = exp(-B(t) / 2), B(t) = int_0^t beta, and prior N(0, I). Subclasses choose the
    diffusion (and with it s(t))."""

    beta_min: eqx.AbstractVar[float]
    beta_max: eqx.AbstractVar[float]

    def __check_init__(self):
        check_positive_number("beta_min", self.beta_min)
        check_positive_number("beta_max", self.beta_max)
        check_positive_number("t_max", self.t_max)
        if self.beta_max < self.beta_min:
            raise ValueError(f"beta_max must be >= beta_min={self.beta_min}, got {self.beta_max}")

    def beta(self, t):
        """beta(t) = beta_min + t (beta_max - beta_min)."""
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def integrated_beta(self, t):
        """B(t) = int_0^t beta(s) ds."""
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2

    def drift(self, x, t):
        return -0.5 * self.beta(t) * x

    def marginal_scale(self, t):
        return jnp.exp(-0.5 * self.integrated_beta(t))

    def prior(self, dim: int) -> Gaussian:
        return Gaussian(jnp.zeros(dim), jnp.eye(dim))


class VPSDE(_AbstractLinearBetaSDE):
    """Variance-preserving SDE, the continuous limit of DDPM.

    beta(t) = beta_min + t (beta_max - beta_min),   B(t) = int_0^t beta = beta_min t + (beta_max - beta_min) t^2 / 2,
    dx = -beta(t) x / 2 dt + sqrt(beta(t)) dW,
    m(t) = exp(-B(t) / 2),   s(t)^2 = 1 - exp(-B(t)),   prior N(0, I).

    Args:
        beta_min: beta(0) > 0 (Song et al.: 0.1).
        beta_max: beta(T) >= beta_min (Song et al.: 20).

    Reference: Song et al. (2021), eqs. (11) and (29); DDPM with T = 1000 linear betas
    1e-4 .. 0.02 is its discretisation with beta_i = beta(i / N) / N.
    """

    beta_min: float = eqx.field(static=True, default=0.1, kw_only=True)
    beta_max: float = eqx.field(static=True, default=20.0, kw_only=True)
    t_max: float = eqx.field(static=True, default=1.0, kw_only=True)

    def diffusion(self, t):
        return jnp.sqrt(self.beta(t))

    def marginal_std(self, t):
        # -expm1 keeps s(t) accurate for small t, where 1 - exp(-B) cancels.
        return jnp.sqrt(-jnp.expm1(-self.integrated_beta(t)))

    def time_at_noise_ratio(self, ratio):
        # s^2 / m^2 = exp(B) - 1 = ratio^2  <=>  B(t) = log(1 + ratio^2).
        return _time_at_integrated_beta(self, jnp.log1p(jnp.asarray(ratio) ** 2))


class SubVPSDE(_AbstractLinearBetaSDE):
    """Sub-variance-preserving SDE: the VP drift with a smaller diffusion.

    dx = -beta(t) x / 2 dt + sqrt(beta(t) (1 - exp(-2 B(t)))) dW,
    m(t) = exp(-B(t) / 2),   s(t) = 1 - exp(-B(t))   (a standard deviation, not a variance),
    so s(t)^2 <= the VP variance at every t; prior N(0, I).

    Args:
        beta_min, beta_max: as in `VPSDE` (Song et al.: 0.1, 20).

    Reference: Song et al. (2021), eq. (17) and App. B, eq. (31).
    """

    beta_min: float = eqx.field(static=True, default=0.1, kw_only=True)
    beta_max: float = eqx.field(static=True, default=20.0, kw_only=True)
    t_max: float = eqx.field(static=True, default=1.0, kw_only=True)

    def diffusion(self, t):
        return jnp.sqrt(self.beta(t) * -jnp.expm1(-2.0 * self.integrated_beta(t)))

    def marginal_std(self, t):
        return -jnp.expm1(-self.integrated_beta(t))

    def time_at_noise_ratio(self, ratio):
        # s / m = (1 - m^2) / m = ratio  <=>  m = (sqrt(ratio^2 + 4) - ratio) / 2,
        # written as 2 / (sqrt(ratio^2 + 4) + ratio) to avoid cancellation.
        ratio = jnp.asarray(ratio)
        scale = 2.0 / (jnp.sqrt(ratio**2 + 4.0) + ratio)
        return _time_at_integrated_beta(self, -2.0 * jnp.log(scale))


def _time_at_integrated_beta(sde: _AbstractLinearBetaSDE, integrated):
    """Solve beta_min t + (beta_max - beta_min) t^2 / 2 = integrated for t >= 0."""
    slope = sde.beta_max - sde.beta_min
    if slope == 0.0:
        t = integrated / sde.beta_min
    else:
        # The positive root, written as 2c / (b + sqrt(b^2 + 4ac)) to stay accurate for
        # small `integrated` (no cancellation of b against the square root).
        t = 2.0 * integrated / (sde.beta_min + jnp.sqrt(sde.beta_min**2 + 2.0 * slope * integrated))
    return jnp.clip(t, 0.0, sde.t_max)


class VESDE(AbstractSDE):
    """Variance-exploding SDE, the continuous limit of NCSN (SMLD).

    sigma(t) = sigma_min (sigma_max / sigma_min)^t,
    dx = sigma(t) sqrt(2 log(sigma_max / sigma_min)) dW   (no drift),
    m(t) = 1,   s(t)^2 = sigma(t)^2 - sigma_min^2   (exact, from x_0 at t = 0),
    prior N(0, sigma_max^2 I) (as in Song et al.; it differs from the exact p_T's
    Gaussian part by sigma_min^2, negligible next to sigma_max^2).

    Args:
        sigma_min: sigma(0) > 0 (Song et al.: 0.01).
        sigma_max: sigma(T) > sigma_min, chosen to exceed the data's diameter
            (Song et al.: 50 for CIFAR-10; Song & Ermon 2020, Technique 1).

    Reference: Song et al. (2021), eqs. (9) and (30).
    """

    sigma_min: float = eqx.field(static=True, default=0.01, kw_only=True)
    sigma_max: float = eqx.field(static=True, default=50.0, kw_only=True)
    t_max: float = eqx.field(static=True, default=1.0, kw_only=True)

    def __check_init__(self):
        check_positive_number("sigma_min", self.sigma_min)
        check_positive_number("sigma_max", self.sigma_max)
        check_positive_number("t_max", self.t_max)
        if self.sigma_max <= self.sigma_min:
            raise ValueError(f"sigma_max must be > sigma_min={self.sigma_min}, got {self.sigma_max}")

    @property
    def log_ratio(self) -> float:
        """log(sigma_max / sigma_min)."""
        return math.log(self.sigma_max / self.sigma_min)

    def sigma(self, t):
        """sigma(t) = sigma_min (sigma_max / sigma_min)^t."""
        return self.sigma_min * jnp.exp(t * self.log_ratio)

    def drift(self, x, t):
        return jnp.zeros_like(x)

    def diffusion(self, t):
        return self.sigma(t) * math.sqrt(2.0 * self.log_ratio)

    def marginal_scale(self, t):
        return jnp.ones_like(jnp.asarray(t))

    def marginal_std(self, t):
        # sigma(t)^2 - sigma_min^2 = sigma_min^2 expm1(2 t log ratio), exact near t = 0.
        return self.sigma_min * jnp.sqrt(jnp.expm1(2.0 * t * self.log_ratio))

    def prior(self, dim: int) -> Gaussian:
        return Gaussian(jnp.zeros(dim), self.sigma_max**2 * jnp.eye(dim))

    def time_at_noise_ratio(self, ratio):
        # sigma_min^2 expm1(2 t log ratio) = ratio^2.
        ratio = jnp.asarray(ratio)
        t = 0.5 * jnp.log1p((ratio / self.sigma_min) ** 2) / self.log_ratio
        return jnp.clip(t, 0.0, self.t_max)


mixture_score = score_at_point
"""The one-point closed-form score used by the samplers (see `theory.distributions.score_at_point`)."""


class ExactMarginalScore(eqx.Module):
    """The exact score (x, t) -> grad_x log p_t(x) of a noised Gaussian-mixture target.

    p_t = law(m(t) X_0 + s(t) Z), X_0 ~ target, is `target.noised(m(t), s(t))`, a mixture
    with components N(m mu_k, m^2 S_k + s^2 I); its score is evaluated by `mixture_score`
    (equal to `sde.score(target, x, t)`; a responsibility-weighted sum, stable far from
    the modes).

    Args:
        sde: the forward process.
        target: the data law p_0.

    Call:
        x: Float[Array, "d"], one point (vmap over points); t: a scalar time. Returns the
        score, shape (d,), in the dtype of the target's parameters promoted with x.
    """

    sde: AbstractSDE
    target: AbstractDensity

    def __call__(self, x: Float[Array, " d"], t: Float[Array, ""]) -> Float[Array, " d"]:
        return mixture_score(self.sde.noised_target(self.target, t), x)
