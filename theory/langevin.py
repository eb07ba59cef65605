"""Langevin samplers that take any score function, their noise schedules, and
diagnostics of how well a sampler puts mass on the modes of a mixture.

Samplers (Song & Ermon 2019, Algorithm 1; Roberts & Tweedie 1996 for ULA):

- `langevin`: the unadjusted Langevin algorithm (ULA) for K steps,
  x <- x + (alpha / 2) s(x) + sqrt(alpha) z, z ~ N(0, I).
- `annealed_langevin`: ULA run for T steps at each of L decreasing noise levels
  sigma_1 > ... > sigma_L with alpha_i = eps * sigma_i^2 / sigma_L^2, each level
  starting where the last one stopped, using the noise-conditional score s(x, sigma_i).

Both are one `jax.lax.scan` under `equinox.filter_jit`, with the score `jax.vmap`-ped
over chains; a score that is an Equinox module (a network, or the bound method
`law.score` of a distribution) is traced, not baked in, so a new network or law does not
recompile. Both return a `LangevinChains` whatever is recorded.

Noise schedules are objects (`GeometricSchedule`, `LinearSchedule`), and so are the
exact noise-conditional families the annealed sampler can be run on
(`ConvolvedTarget`: the paper's p * N(0, sigma^2 I); `ConvolvedMeans`: the NCSN code's
"component std replaced by sigma").
"""

from __future__ import annotations

import abc
import dataclasses
import math
import numbers

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats
from jaxtyping import Array, Float, Int, PRNGKeyArray

from theory.distributions import MixtureOfGaussians, score_at_point
from theory.divergences import kl
from theory.estimate import Estimate
from theory.targets import ncsn_component_std_schedule
from theory.validation import check_count, check_key, is_concrete

__all__ = [
    "AbstractNoiseFamily",
    "AbstractNoiseSchedule",
    "ConvolvedMeans",
    "ConvolvedTarget",
    "ExactNoiseConditionalScore",
    "ExactScore",
    "GeometricSchedule",
    "LangevinChains",
    "LinearSchedule",
    "Proportion",
    "annealed_langevin",
    "annealed_step_sizes",
    "binomial_proportion",
    "langevin",
    "mode_occupancy",
    "occupancy_kl",
    "separatrix_point",
    "ula_gaussian_variance",
    "ula_stability_ratio",
]


# --------------------------------------------------------------------------------------
# Noise schedules.


def _check_real(name: str, value, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return float(value)


class AbstractNoiseSchedule(eqx.Module):
    """A decreasing sequence of noise levels sigma_1 > ... > sigma_L > 0.

    Fields are static Python numbers, so a schedule is hashable and can sit in a
    study's config (`schedule=GeometricSchedule(20.0, 1.0, 10)`).
    """

    sigma_max: eqx.AbstractVar[float]
    sigma_min: eqx.AbstractVar[float]
    n_levels: eqx.AbstractVar[int]

    @abc.abstractmethod
    def sigmas(self) -> np.ndarray:
        """The levels sigma_1, ..., sigma_L as a float64 array of shape (L,), decreasing.

        A single level (L = 1) is sigma_min: annealing degenerates to plain Langevin
        on the sigma_min law.
        """

    def with_levels(self, n_levels: int) -> "AbstractNoiseSchedule":
        """The same schedule with `n_levels` levels between the same end points."""
        return dataclasses.replace(self, n_levels=n_levels)

    def _check(self) -> None:
        _check_real("sigma_max", self.sigma_max, positive=True)
        _check_real("sigma_min", self.sigma_min, positive=True)
        check_count("n_levels", self.n_levels)
        if not self.sigma_min < self.sigma_max:
            raise ValueError(
                f"sigma_min must be < sigma_max, got sigma_min={self.sigma_min!r}, "
                f"sigma_max={self.sigma_max!r}"
            )


class GeometricSchedule(AbstractNoiseSchedule):
    """Geometric levels, the NCSN choice.

    sigma_i = sigma_max * (sigma_min / sigma_max)^((i - 1) / (L - 1)), i = 1..L.

    Args:
        sigma_max: sigma_1, > sigma_min.
        sigma_min: sigma_L, > 0.
        n_levels: L >= 1.

    Reference: Song & Ermon (2019), Section 4.2 ({sigma_i} a geometric sequence);
    ermongroup/ncsn runners/toy_runner.py (np.exp(np.linspace(np.log(20), 0., 10))).
    """

    sigma_max: float = eqx.field(static=True)
    sigma_min: float = eqx.field(static=True)
    n_levels: int = eqx.field(static=True)

    def __check_init__(self):
        self._check()

    def sigmas(self) -> np.ndarray:
        if self.n_levels == 1:
            return np.array([self.sigma_min], np.float64)
        return np.geomspace(self.sigma_max, self.sigma_min, self.n_levels, dtype=np.float64)


class LinearSchedule(AbstractNoiseSchedule):
    """Evenly spaced levels.

    sigma_i = sigma_max + (i - 1) / (L - 1) * (sigma_min - sigma_max), i = 1..L.

    Args:
        sigma_max: sigma_1, > sigma_min.
        sigma_min: sigma_L, > 0.
        n_levels: L >= 1.
    """

    sigma_max: float = eqx.field(static=True)
    sigma_min: float = eqx.field(static=True)
    n_levels: int = eqx.field(static=True)

    def __check_init__(self):
        self._check()

    def sigmas(self) -> np.ndarray:
        if self.n_levels == 1:
            return np.array([self.sigma_min], np.float64)
        return np.linspace(self.sigma_max, self.sigma_min, self.n_levels, dtype=np.float64)


def annealed_step_sizes(schedule: AbstractNoiseSchedule, step_size: float) -> np.ndarray:
    """The per-level step sizes of annealed Langevin dynamics.

    alpha_i = eps * sigma_i^2 / sigma_L^2, so that alpha_i / sigma_i^2 (the step measured
    in the level's own length scale) is the same at every level.

    Args:
        schedule: the noise levels sigma_1 > ... > sigma_L.
        step_size: eps > 0, the step size at the last level.

    Returns:
        float64 array of shape (L,).

    Reference: Song & Ermon (2019), Algorithm 1, line 3.
    """
    step_size = _check_real("step_size", step_size, positive=True)
    sigmas = schedule.sigmas()
    return step_size * sigmas**2 / sigmas[-1] ** 2


# --------------------------------------------------------------------------------------
# Exact noise-conditional families of a Gaussian mixture.


class AbstractNoiseFamily(eqx.Module):
    """A family of laws p_sigma = (law of X0 + sigma Z), X0 ~ base, Z ~ N(0, I).

    `law(target, sigma)` is p_sigma in closed form (a `MixtureOfGaussians`, so its score
    is exact) and `sample_base(target, key, n)` draws X0, the "clean data" a denoising
    score-matching objective perturbs.
    """

    @abc.abstractmethod
    def law(self, target: MixtureOfGaussians, sigma) -> MixtureOfGaussians:
        """p_sigma, the law at noise level sigma."""

    @abc.abstractmethod
    def sample_base(self, target: MixtureOfGaussians, key: PRNGKeyArray, n: int) -> Float[Array, "n d"]:
        """n draws of X0, so that X0 + sigma Z ~ law(target, sigma)."""

    @abc.abstractmethod
    def smallest_variance(self, target_variance, sigma):
        """The smallest eigenvalue of any component covariance of p_sigma, given the
        smallest one of the target's components (NumPy; no JAX needed). It sets the
        largest stable ULA step at level sigma, see `ula_stability_ratio`."""


class ConvolvedTarget(AbstractNoiseFamily):
    """The paper's perturbed laws: the target convolved with N(0, sigma^2 I).

    p_sigma = p * N(0, sigma^2 I); for p = sum_k w_k N(m_k, S_k) this is
    sum_k w_k N(m_k, S_k + sigma^2 I). X0 ~ p.

    Reference: Song & Ermon (2019), Section 4.1, q_sigma(x) = int p(t) N(x; t, sigma^2 I) dt.
    """

    def law(self, target, sigma):
        return target.noised(1.0, sigma)

    def sample_base(self, target, key, n):
        return target.sample(key, n)

    def smallest_variance(self, target_variance, sigma):
        return np.asarray(target_variance, np.float64) + np.asarray(sigma, np.float64) ** 2


class ConvolvedMeans(AbstractNoiseFamily):
    """The NCSN code's level laws: each component's covariance replaced by sigma^2 I.

    p_sigma = sum_k w_k N(m_k, sigma^2 I), which is the law of X0 + sigma Z for the
    discrete X0 ~ sum_k w_k delta_{m_k}; at sigma = 1 it is the NCSN target itself.

    Reference: ermongroup/ncsn, models/gmm.py (GMMDistAnneal.score(x, sigma));
    `theory.ncsn_component_std_schedule`.
    """

    def law(self, target, sigma):
        return ncsn_component_std_schedule(target, sigma)

    def sample_base(self, target, key, n):
        n = check_count("n", n)
        component = jax.random.categorical(key, jnp.log(target.weights), shape=(n,))
        return target.means[component]

    def smallest_variance(self, target_variance, sigma):
        return np.asarray(sigma, np.float64) ** 2


class ExactScore(eqx.Module):
    """The exact score s(x) = grad_x log p(x) of a Gaussian mixture, for ONE point.

    Same values as `law.score`, computed by `theory.distributions.score_at_point` (fast under vmap).

    Args:
        law: the mixture.
    """

    law: MixtureOfGaussians

    def __call__(self, x: Float[Array, " d"]) -> Float[Array, " d"]:
        """grad log p at one point x, shape (d,)."""
        return score_at_point(self.law, jnp.asarray(x, self.law.means.dtype))


class ExactNoiseConditionalScore(eqx.Module):
    """The exact noise-conditional score s(x, sigma) = grad_x log p_sigma(x) of a family.

    Args:
        target: the mixture the family is built on.
        family: e.g. `ConvolvedTarget()` or `ConvolvedMeans()`.
    """

    target: MixtureOfGaussians
    family: AbstractNoiseFamily

    def __call__(self, x: Float[Array, " d"], sigma: Float[Array, ""]) -> Float[Array, " d"]:
        """The exact score of p_sigma at one point x, shape (d,)."""
        law = self.family.law(self.target, sigma)
        return score_at_point(law, jnp.asarray(x, law.means.dtype))


# --------------------------------------------------------------------------------------
# Samplers.


class LangevinChains(eqx.Module):
    """The output of a Langevin sampler: final states and the recorded path.

    Attributes:
        samples: Float[Array, "n d"], the chains' states after the last step.
        trajectory: Float[Array, "r n d"], states after `steps[j]` updates; the first
            entry is the initial state (step 0) and the last is `samples`.
        steps: Int[Array, "r"], the number of updates done at each recorded state.
        sigmas: Float[Array, "r"], the noise level of the update that produced each
            recorded state (NaN at step 0 and for plain Langevin).
        step_sizes: Float[Array, "r"], likewise, the step size alpha of that update.
    """

    samples: Float[Array, "n d"]
    trajectory: Float[Array, "r n d"]
    steps: Int[Array, " r"]
    sigmas: Float[Array, " r"]
    step_sizes: Float[Array, " r"]


class _IgnoreSigma(eqx.Module):
    """Adapts a score s(x) to the noise-conditional signature s(x, sigma)."""

    score_fn: object

    def __call__(self, x, sigma):
        return self.score_fn(x)


@eqx.filter_jit
def _ula_scan(score_fn, x0, key, step_sizes, sigmas, record_every: int) -> LangevinChains:
    """Run x <- x + (alpha_t / 2) s(x, sigma_t) + sqrt(alpha_t) z_t for t = 0..K-1."""
    n_steps = step_sizes.shape[0]
    n_records = n_steps // record_every
    dtype = x0.dtype
    step_sizes = step_sizes.astype(dtype)
    sigmas = sigmas.astype(dtype)
    batched_score = jax.vmap(score_fn, in_axes=(0, None))

    def update(x, inputs):
        alpha, sigma, t = inputs
        # One key per step (fold_in), one normal per chain and coordinate: chains are
        # independent given the key.
        z = jax.random.normal(jax.random.fold_in(key, t), x.shape, dtype)
        drift = batched_score(x, sigma).astype(dtype)
        return x + 0.5 * alpha * drift + jnp.sqrt(alpha) * z, None

    def block(x, inputs):
        x, _ = jax.lax.scan(update, x, inputs)
        return x, x

    inputs = (
        step_sizes.reshape(n_records, record_every),
        sigmas.reshape(n_records, record_every),
        jnp.arange(n_steps).reshape(n_records, record_every),
    )
    final, path = jax.lax.scan(block, x0, inputs)
    nan = jnp.full((1,), jnp.nan, dtype)
    return LangevinChains(
        samples=final,
        trajectory=jnp.concatenate([x0[None], path], axis=0),
        steps=jnp.arange(n_records + 1) * record_every,
        sigmas=jnp.concatenate([nan, sigmas[record_every - 1 :: record_every]]),
        step_sizes=jnp.concatenate([nan, step_sizes[record_every - 1 :: record_every]]),
    )


def _check_x0(x0) -> jax.Array:
    x0 = jnp.asarray(x0)
    if x0.ndim != 2 or x0.shape[0] < 1 or x0.shape[1] < 1:
        raise ValueError(f"x0 must have shape (n_chains, d) with n_chains, d >= 1, got shape {x0.shape}")
    if not jnp.issubdtype(x0.dtype, jnp.floating):
        raise ValueError(f"x0 must be floating point, got dtype {x0.dtype}")
    if is_concrete(x0) and not bool(jnp.all(jnp.isfinite(x0))):
        raise ValueError("x0 must be finite, got non-finite initial states")
    return x0


def _check_record_every(record_every, n_steps: int) -> int:
    if record_every is None:
        return n_steps
    record_every = check_count("record_every", record_every)
    if n_steps % record_every:
        raise ValueError(
            f"record_every must divide the number of steps {n_steps}, got {record_every}"
        )
    return record_every


def langevin(
    score_fn,
    x0: Float[Array, "n d"],
    *,
    key: PRNGKeyArray,
    step_size: float,
    n_steps: int,
    record_every: int | None = None,
) -> LangevinChains:
    """Unadjusted Langevin algorithm (ULA) with a fixed step, n chains in parallel.

    x_{k+1} = x_k + (alpha / 2) s(x_k) + sqrt(alpha) z_k,  z_k ~ N(0, I), k = 0..K-1,

    the Euler-Maruyama discretisation of dX = grad log p(X) dt + sqrt(2) dW with
    dt = alpha / 2. For a Gaussian target its stationary law is Gaussian with the
    variance of `ula_gaussian_variance`, not the target's: ULA is biased at any alpha > 0.

    Args:
        score_fn: s(x) for ONE point, (d,) -> (d,) (it is vmapped over chains), e.g.
            `target.score` or a network. An Equinox module (or bound method of one)
            is traced, so passing a new one does not recompile.
        x0: initial states, shape (n_chains, d); their dtype is the sampler's.
        key: PRNG key of the noise.
        step_size: alpha > 0 (a scalar; may be traced, e.g. under `jax.vmap`).
        n_steps: K >= 1.
        record_every: record the states every this many steps (must divide K); None
            records only the initial and final states.

    Returns:
        `LangevinChains` with `samples` (n, d) and `trajectory` (K / record_every + 1, n, d).

    Reference: Roberts & Tweedie, "Exponential convergence of Langevin distributions
    and their discrete approximations", Bernoulli 2(4), 1996, eq. (1.3); Song & Ermon
    (2019), eq. (4) with eps = alpha / 2; ermongroup/ncsn toy_runner.langevin_dynamics.
    """
    check_key("key", key)
    x0 = _check_x0(x0)
    n_steps = check_count("n_steps", n_steps)
    record_every = _check_record_every(record_every, n_steps)
    if is_concrete(step_size):
        _check_real("step_size", float(step_size), positive=True)
    step_sizes = jnp.full((n_steps,), step_size, x0.dtype)
    sigmas = jnp.full((n_steps,), jnp.nan, x0.dtype)
    return _ula_scan(_IgnoreSigma(score_fn), x0, key, step_sizes, sigmas, record_every)


def annealed_langevin(
    score_fn,
    x0: Float[Array, "n d"],
    *,
    key: PRNGKeyArray,
    schedule: AbstractNoiseSchedule,
    step_size: float,
    steps_per_level: int,
    record_every: int | None = None,
) -> LangevinChains:
    """Annealed Langevin dynamics: T ULA steps at each noise level, largest first.

    For i = 1..L: alpha_i = eps * sigma_i^2 / sigma_L^2 and, T times,
    x <- x + (alpha_i / 2) s(x, sigma_i) + sqrt(alpha_i) z, z ~ N(0, I);
    level i + 1 starts from the states level i ended in.

    Args:
        score_fn: s(x, sigma) for ONE point x (d,) and a scalar sigma, returning (d,);
            e.g. `ExactNoiseConditionalScore(target, ConvolvedMeans())` or a
            noise-conditional network. Vmapped over chains.
        x0: initial states, shape (n_chains, d).
        key: PRNG key of the noise.
        schedule: the levels sigma_1 > ... > sigma_L.
        step_size: eps > 0, the step size at the last level.
        steps_per_level: T >= 1.
        record_every: record the states every this many steps, counted across levels
            (must divide L * T); None records only the initial and final states.

    Returns:
        `LangevinChains`; `steps` count updates across levels (K = L * T in all),
        `sigmas` says at which level each recorded state was produced.

    Reference: Song & Ermon, "Generative modeling by estimating gradients of the data
    distribution", NeurIPS 2019, Algorithm 1; ermongroup/ncsn
    toy_runner.anneal_langevin_dynamics.
    """
    check_key("key", key)
    x0 = _check_x0(x0)
    steps_per_level = check_count("steps_per_level", steps_per_level)
    if not isinstance(schedule, AbstractNoiseSchedule):
        raise ValueError(f"schedule must be a noise schedule object, got {type(schedule).__name__}")
    if is_concrete(step_size):
        _check_real("step_size", float(step_size), positive=True)
    sigmas = schedule.sigmas()
    # alpha_i = eps * sigma_i^2 / sigma_L^2, written so that eps may be traced (vmap
    # over step sizes); `annealed_step_sizes` is the same formula for concrete eps.
    ratios = np.repeat(sigmas**2 / sigmas[-1] ** 2, steps_per_level)
    n_steps = ratios.size
    record_every = _check_record_every(record_every, n_steps)
    return _ula_scan(
        score_fn,
        x0,
        key,
        jnp.asarray(step_size, x0.dtype) * jnp.asarray(ratios, x0.dtype),
        jnp.asarray(np.repeat(sigmas, steps_per_level), x0.dtype),
        record_every,
    )


# --------------------------------------------------------------------------------------
# ULA on a Gaussian: closed forms.


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
    alpha = _check_real("step_size", step_size, positive=True)
    s2 = _check_real("variance", variance, positive=True)
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


# --------------------------------------------------------------------------------------
# Mode diagnostics.


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
    count = check_count("count", count, minimum=0)
    if count > n:
        raise ValueError(f"count must be <= n={n}, got {count}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
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


def mode_occupancy(law: MixtureOfGaussians, x: Float[Array, "... n d"]) -> np.ndarray:
    """How many points sit in each component's basin: counts of argmax_k r_k(x).

    r_k(x) = w_k N(x; m_k, S_k) / sum_j w_j N(x; m_j, S_j), the responsibilities of
    `law`; a point is assigned to the component most likely to have produced it.

    Args:
        law: the mixture whose components define the modes.
        x: points, shape (..., n, d) (leading axes are batches, e.g. seeds or steps).

    Returns:
        int64 counts of shape (..., K), summing to n along the last axis.

    Reference: the maximum-a-posteriori component assignment, Bishop, Pattern
    Recognition and Machine Learning (2006), eq. (9.13); used for the mode weights of
    Song & Ermon (2019), Figure 3.
    """
    x = jnp.asarray(x)
    batch = x.shape[:-2]
    responsibilities = law.responsibilities(x.reshape(-1, x.shape[-1]))
    assigned = np.asarray(jnp.argmax(responsibilities, axis=-1)).reshape(batch + (x.shape[-2],))
    k = law.n_components
    counts = (assigned[..., None] == np.arange(k)).sum(axis=-2)
    return counts.astype(np.int64)


def occupancy_kl(counts, weights, *, key: PRNGKeyArray, n_bootstrap: int = 1000) -> Estimate:
    """KL of a sampler's mode-occupancy histogram to the true mode weights, in nats.

    KL(p_hat || w) = sum_k p_hat_k log(p_hat_k / w_k), p_hat = counts / n. (This
    direction stays finite when a mode is empty.) For n exact draws,
    2 n KL(p_hat || w) -> chi^2_{K-1}, so an exact sampler scores (K - 1) / (2 n) on
    average: the floor to read it against.

    Args:
        counts: int array (K,), the occupancy of each mode.
        weights: the true weights w, (K,), a probability vector.
        key: PRNG key of the bootstrap.
        n_bootstrap: B >= 2 multinomial resamples of the counts.

    Returns:
        An `Estimate` whose value is the plug-in KL and whose error is the bootstrap
        standard deviation (the plug-in is biased upward by about (K - 1) / (2 n)).

    Reference: Cover & Thomas, Elements of Information Theory, eq. (2.26); Efron &
    Tibshirani, An Introduction to the Bootstrap (1993), Ch. 6.
    """
    check_key("key", key)
    n_bootstrap = check_count("n_bootstrap", n_bootstrap, minimum=2)
    counts = np.asarray(counts, np.int64)
    weights = np.asarray(weights, np.float64)
    if counts.ndim != 1 or counts.shape != weights.shape:
        raise ValueError(f"counts and weights must have one shape (K,), got {counts.shape} and {weights.shape}")
    n = int(counts.sum())
    if n < 1 or np.any(counts < 0):
        raise ValueError(f"counts must be nonnegative with a positive total, got {counts}")
    p_hat = counts / n
    value = kl(p_hat, weights).value
    # Multinomial resamples of the counts as sequential binomials:
    # c_k ~ Bin(n - c_1 - ... - c_{k-1}, p_k / (p_k + ... + p_K)).
    with jax.enable_x64(True):
        left = jnp.full((n_bootstrap,), float(n), jnp.float64)
        resampled = []
        for k, key_k in enumerate(jax.random.split(key, counts.size - 1)):
            tail = p_hat[k:].sum()
            share = min(p_hat[k] / tail, 1.0) if tail > 0 else 0.0
            c = jax.random.binomial(key_k, left, jnp.float64(share))
            resampled.append(c)
            left = left - c
        resampled = np.stack([np.asarray(c) for c in resampled] + [np.asarray(left)], axis=1)
    replicates = _kl_rows(resampled / n, weights)
    return Estimate(
        value,
        float(np.std(replicates, ddof=1)),
        f"plug-in KL of the mode histogram (n={n}), bootstrap SE (B={n_bootstrap})",
    )


def _kl_rows(p, q) -> np.ndarray:
    """sum_k p_k log(p_k / q_k) for each row of p, with 0 log 0 = 0 (q > 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0)
    return terms.sum(axis=-1)


def separatrix_point(law: MixtureOfGaussians, *, tolerance: float = 1e-10) -> np.ndarray:
    """The point between the first two modes where their responsibilities are equal.

    x* = m_0 + t* (m_1 - m_0) with r_0(x*) = r_1(x*), found by bisection on t in [0, 1].
    From x* a Langevin chain is equally pushed towards either mode: the natural start
    of the "same start point, different modes" picture.

    Args:
        law: a mixture with at least two components.
        tolerance: bisection stops when the bracket on t is narrower than this.

    Returns:
        float64 array (d,).

    Reference: Luo, "Understanding diffusion models: a unified perspective" (2022),
    Figure 6 (trajectories from one start point reaching different modes).
    """
    if law.n_components < 2:
        raise ValueError(f"law must have at least two components, got {law.n_components}")
    with jax.enable_x64(True):
        means = np.asarray(law.means, np.float64)

        def gap(t):
            point = means[0] + t * (means[1] - means[0])
            r = np.asarray(law.responsibilities(jnp.asarray(point[None])), np.float64)[0]
            return r[0] - r[1]

        low, high = 0.0, 1.0
        if not gap(low) > 0 > gap(high):
            raise ValueError("the responsibilities of the first two modes do not cross between their means")
        while high - low > tolerance:
            middle = 0.5 * (low + high)
            if gap(middle) > 0:
                low = middle
            else:
                high = middle
        return means[0] + 0.5 * (low + high) * (means[1] - means[0])
