"""Discrete time: DDPM ancestral sampling and DDIM, on a respaced subsequence."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from theory.ddpm import AbstractBetaSchedule
from theory.validation import check_count, check_key, check_points, check_probability, check_type

from ._outputs import EpsilonFn, SamplerOutput

def respaced_timesteps(n_steps: int, total: int) -> np.ndarray:
    """tau_k = floor(k T / S) for k = 0..S: S evenly spaced steps of the T-step chain,
    strictly increasing from tau_0 = 0 to tau_S = T (the samplers compute the same
    indices in-graph, for a traced S)."""
    n_steps = check_count("n_steps", n_steps, maximum=total)
    return (np.arange(n_steps + 1) * total) // n_steps


def _discrete_tables(schedule: AbstractBetaSchedule, dtype):
    return jnp.asarray(schedule.alpha_bars(), dtype), jnp.asarray(schedule.one_minus_alpha_bars(), dtype)


@eqx.filter_jit
def _discrete_jit(schedule, epsilon_fn, x_init, key, n_steps, eta, ancestral: bool):
    alpha_bars, one_minus = _discrete_tables(schedule, x_init.dtype)
    total = schedule.n_steps
    batched_epsilon = jax.vmap(epsilon_fn, in_axes=(0, None))

    def step(m, x):
        k = n_steps - m  # k = S, S-1, ..., 1
        i = (k * total) // n_steps
        j = ((k - 1) * total) // n_steps
        a_i, a_j = alpha_bars[i], alpha_bars[j]
        om_i, om_j = one_minus[i], one_minus[j]
        eps = batched_epsilon(x, i).astype(x.dtype)
        z = jax.random.normal(jax.random.fold_in(key, k), x.shape, x.dtype)
        # b = 1 - a_i / a_j, written as (om_i - om_j) / a_j: no cancellation near 1.
        b = (om_i - om_j) / a_j
        if ancestral:
            mean = (x - b / jnp.sqrt(om_i) * eps) / jnp.sqrt(1.0 - b)
            return mean + jnp.where(j > 0, jnp.sqrt(b), 0.0) * z
        x0_hat = (x - jnp.sqrt(om_i) * eps) / jnp.sqrt(a_i)
        sigma = eta * jnp.sqrt(om_j / om_i * b)
        direction = jnp.sqrt(jnp.maximum(om_j - sigma**2, 0.0))
        return jnp.sqrt(a_j) * x0_hat + direction * eps + sigma * z

    samples = jax.lax.fori_loop(0, n_steps, step, x_init)
    return SamplerOutput(samples, jnp.full(x_init.shape[0], n_steps, jnp.int32))


def ddpm_ancestral(
    schedule: AbstractBetaSchedule,
    epsilon_fn: EpsilonFn,
    x_init: Float[Array, "n d"],
    *,
    key: PRNGKeyArray,
    n_steps: int | None = None,
) -> SamplerOutput:
    """DDPM ancestral sampling, on the full chain or an evenly respaced subsequence.

    For k = S..1 with i = tau_k, j = tau_{k-1}, a = alpha_bar, b = 1 - a_i / a_j:
    x_j = (x_i - b / sqrt(1 - a_i) eps(x_i, i)) / sqrt(1 - b) + sqrt(b) z  (no noise at j = 0).
    With S = T, b = beta_i and this is Ho et al.'s Algorithm 2 with sigma_i^2 = beta_i.

    Args:
        schedule: the beta schedule (T = schedule.n_steps).
        epsilon_fn: (x: (d,), i: int step) -> predicted noise (d,).
        x_init: Float[Array, "n d"], draws of N(0, I).
        key: drives the per-step noise.
        n_steps: S in 1..T (default T); traced, so sweeping it does not recompile.

    Returns:
        `SamplerOutput` with nfe = S.

    Reference: Ho et al. (2020), Algorithm 2 and eq. (11); Nichol & Dhariwal (2021), Sec. 4.
    """
    check_key("key", key)
    check_type("schedule", schedule, AbstractBetaSchedule)
    x_init = check_points("x_init", x_init)
    n_steps = schedule.n_steps if n_steps is None else check_count("n_steps", n_steps, maximum=schedule.n_steps)
    return _discrete_jit(schedule, epsilon_fn, x_init, key, jnp.asarray(n_steps, jnp.int32), jnp.zeros((), x_init.dtype), True)


def ddim(
    schedule: AbstractBetaSchedule,
    epsilon_fn: EpsilonFn,
    x_init: Float[Array, "n d"],
    *,
    n_steps: int,
    eta: float = 0.0,
    key: PRNGKeyArray | None = None,
) -> SamplerOutput:
    """DDIM sampling on an evenly respaced subsequence of S steps.

    x0_hat = (x_i - sqrt(1 - a_i) eps) / sqrt(a_i),
    x_j = sqrt(a_j) x0_hat + sqrt(1 - a_j - sigma^2) eps + sigma z,
    sigma = eta sqrt((1 - a_j) / (1 - a_i)) sqrt(1 - a_i / a_j).
    eta = 0 is deterministic (an Euler-type step of the probability-flow ODE in the
    variables x / sqrt(a), sqrt((1 - a) / a)); eta = 1 samples the DDPM posterior variance.

    Args:
        schedule, epsilon_fn, x_init: as in `ddpm_ancestral`.
        n_steps: S in 1..T (traced).
        eta: in [0, 1].
        key: drives the noise when eta > 0 (required then).

    Returns:
        `SamplerOutput` with nfe = S.

    Reference: Song, Meng & Ermon (2021), eqs. (12) and (16).
    """
    check_type("schedule", schedule, AbstractBetaSchedule)
    x_init = check_points("x_init", x_init)
    n_steps = check_count("n_steps", n_steps, maximum=schedule.n_steps)
    eta = check_probability("eta", eta)
    if eta > 0:
        check_key("key", key)
    key = jax.random.key(0) if key is None else key
    return _discrete_jit(schedule, epsilon_fn, x_init, key, jnp.asarray(n_steps, jnp.int32), jnp.asarray(eta, x_init.dtype), False)
