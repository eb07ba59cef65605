"""Conversions between parametrisations: score, noise prediction, discrete steps."""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax.numpy as jnp

from theory.ddpm import AbstractBetaSchedule
from theory.sde import AbstractSDE

from ._discrete import _discrete_tables

class ScoreFromEpsilon(eqx.Module):
    """score(x, t) = -epsilon_fn(x, t) / s(t): a noise predictor in SDE time as a score.

    From x_t = m(t) x_0 + s(t) eps: grad log p_t(x) = -E[eps | x_t = x] / s(t).
    Reference: Song et al. (2021), App. C; Ho et al. (2020), Sec. 3.2.
    """

    sde: AbstractSDE
    epsilon_fn: Callable

    def __call__(self, x, t):
        return -self.epsilon_fn(x, t) / self.sde.marginal_std(t).astype(x.dtype)


class EpsilonFromScore(eqx.Module):
    """epsilon(x, t) = -s(t) score_fn(x, t): a score as a noise predictor in SDE time."""

    sde: AbstractSDE
    score_fn: Callable

    def __call__(self, x, t):
        return -self.sde.marginal_std(t).astype(x.dtype) * self.score_fn(x, t)


class DiscreteEpsilon(eqx.Module):
    """A continuous-time noise predictor read as a DDPM one, by matching noise levels.

    Step i of the chain (x_i = sqrt(a_i) x_0 + sqrt(1 - a_i) eps) and time t of the SDE
    (x_t = m(t) x_0 + s(t) eps) carry the same information when their noise-to-signal
    ratios agree, s(t) / m(t) = sqrt((1 - a_i) / a_i); then x_t = (m(t) / sqrt(a_i)) x_i
    and the noise is the same, so eps_i(x) = epsilon_fn(x m(t) / sqrt(a_i), t). For the VP
    SDE, m(t) = sqrt(a_i) and the rescaling is the identity. Times outside [0, T] are
    clipped (the DDPM's alpha_bar_T = 4e-5 lies just past the VP SDE's exp(-B(1)) = 4.3e-5).

    Reference: Kingma, Salimans, Poole & Ho, "Variational diffusion models", NeurIPS 2021,
    Sec. 4 (invariance to the noise schedule through the signal-to-noise ratio).
    """

    sde: AbstractSDE
    schedule: AbstractBetaSchedule
    epsilon_fn: Callable

    def __call__(self, x, i):
        alpha_bars, one_minus = _discrete_tables(self.schedule, x.dtype)
        t = self.sde.time_at_noise_ratio(jnp.sqrt(one_minus[i] / alpha_bars[i]))
        rescale = (self.sde.marginal_scale(t) / jnp.sqrt(alpha_bars[i])).astype(x.dtype)
        return self.epsilon_fn(rescale * x, t.astype(x.dtype))
