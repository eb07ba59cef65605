"""Langevin samplers for any score function: ULA and annealed Langevin dynamics."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

from theory.validation import check_count, check_key, check_points, check_positive, check_type

from ._schedules import AbstractNoiseSchedule

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
    x0 = check_points("x0", x0, finite=True)
    n_steps = check_count("n_steps", n_steps)
    record_every = _check_record_every(record_every, n_steps)
    check_positive("step_size", step_size)
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
    x0 = check_points("x0", x0, finite=True)
    steps_per_level = check_count("steps_per_level", steps_per_level)
    check_type("schedule", schedule, AbstractNoiseSchedule)
    check_positive("step_size", step_size)
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
