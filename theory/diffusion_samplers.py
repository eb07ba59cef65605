"""Samplers that invert a diffusion, given any score or noise-prediction function.

Continuous time (Song et al. 2021), for a forward SDE dx = f(x, t) dt + g(t) dW on [0, T]
with marginals p_t, integrated from t = T down to t = t_end through diffrax:

    reverse-time SDE:        dx = [f(x, t) - g(t)^2 grad log p_t(x)] dt + g(t) dW_bar     (eq. 6)
    probability-flow ODE:    dx = [f(x, t) - g(t)^2 grad log p_t(x) / 2] dt                 (eq. 13)

Both are solved in the forward variable tau = T - t (so every solver and Brownian path
runs forward in time; no reliance on reverse-time Brownian conventions), where they read
dx = [-f(x, T - tau) + w g^2 s(x, T - tau)] dtau + [w = 1] g dW_tau with w = 1 (SDE) or 1/2 (ODE).
The noise is additive (g depends on t only), so Itô and Stratonovich solutions agree and
additive-noise stochastic Runge-Kutta solvers (ShARK, SRA1: strong order 1.5) apply.

Discrete time (Ho et al. 2020; Song, Meng & Ermon 2021) for a beta schedule with
alpha_bar_i, on an evenly spaced subsequence tau_k = floor(k T / S), k = 0..S:

    DDPM ancestral:  x_{tau_{k-1}} = (x - b / sqrt(1 - a_i) eps) / sqrt(1 - b) + [k > 1] sqrt(b) z,
                     a_i = alpha_bar_{tau_k}, a_j = alpha_bar_{tau_{k-1}}, b = 1 - a_i / a_j
                     (S = T is Ho et al.'s Algorithm 2 with sigma_t^2 = beta_t; S < T is the
                     respaced chain of Nichol & Dhariwal 2021, Sec. 4);
    DDIM:            x_{tau_{k-1}} = sqrt(a_j) x0_hat + sqrt(1 - a_j - sigma^2) eps + sigma z,
                     sigma = eta sqrt((1 - a_j) / (1 - a_i)) sqrt(1 - a_i / a_j)   (DDIM eq. 12, 16).

Score and epsilon functions are written for ONE sample and `jax.vmap`ped over the rows
of `x_init`. Fixed-step solvers advance the whole batch as one state (exactly n
independent solves, in one loop); the adaptive ODE solver vmaps the whole solve, so
each sample gets its own steps. Everything is jitted, and the number of steps, the
tolerances and t_end are traced, so sweeping them does not recompile. Each returns a `SamplerOutput`
with the samples and the number of function evaluations (NFE, score or epsilon calls)
each sample cost.

Function conventions: `score_fn(x, t)` maps x: (d,), t: () to grad log p_t(x): (d,);
`epsilon_fn(x, i)` maps x: (d,), an integer step i in 1..T to the predicted noise (d,).

References: Song, Sohl-Dickstein, Kingma, Kumar, Ermon & Poole, ICLR 2021, eqs. (6), (13);
Ho, Jain & Abbeel, NeurIPS 2020, Algorithm 2; Song, Meng & Ermon, "Denoising diffusion
implicit models", ICLR 2021, eqs. (12), (16); Kidger, "On neural differential
equations" (2021) / diffrax; Foster, dos Reis & Strange (2023) for ShARK.
"""

from __future__ import annotations

import abc
import math
import numbers
from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

from theory.ddpm import AbstractBetaSchedule
from theory.sde import AbstractSDE

__all__ = [
    "SamplerOutput",
    "Trajectories",
    "AbstractBrownianMotion",
    "UnsafeBrownianMotion",
    "VirtualBrownianMotion",
    "drift_evaluations",
    "reverse_sde",
    "probability_flow",
    "adaptive_probability_flow",
    "reverse_sde_trajectories",
    "probability_flow_trajectories",
    "ddpm_ancestral",
    "ddim",
    "respaced_timesteps",
    "ScoreFromEpsilon",
    "EpsilonFromScore",
    "DiscreteEpsilon",
    "DiffusionModel",
    "AbstractDiffusionSampler",
    "ReverseSDESampler",
    "ProbabilityFlowSampler",
    "AdaptiveProbabilityFlowSampler",
    "DDPMSampler",
    "DDIMSampler",
]

ScoreFn = Callable[[Float[Array, " d"], Float[Array, ""]], Float[Array, " d"]]
EpsilonFn = Callable[[Float[Array, " d"], Int[Array, ""]], Float[Array, " d"]]


class SamplerOutput(eqx.Module):
    """Samples and what each cost.

    Attributes:
        samples: Float[Array, "n d"], the final states (at t = t_end, or step 0).
        nfe: Int[Array, "n"], score/epsilon evaluations spent on each sample (equal
            across samples except for adaptive solvers, which step each sample alone).
    """

    samples: Float[Array, "n d"]
    nfe: Int[Array, " n"]


class Trajectories(eqx.Module):
    """Whole reverse paths.

    Attributes:
        ts: Float[Array, "k"], the process times t (decreasing from T to t_end).
        xs: Float[Array, "n k d"], the states at those times.
    """

    ts: Float[Array, " k"]
    xs: Float[Array, "n k d"]


# --------------------------------------------------------------------------------------
# Validation at the boundary.


def _check_steps(name: str, value, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return int(value)


def _check_points(x_init) -> Array:
    x_init = jnp.asarray(x_init)
    if x_init.ndim != 2 or x_init.shape[0] < 1 or x_init.shape[1] < 1:
        raise ValueError(f"x_init must have shape (n, d), got shape {x_init.shape}")
    if not jnp.issubdtype(x_init.dtype, jnp.floating):
        raise ValueError(f"x_init must be floating point, got dtype {x_init.dtype}")
    return x_init


def _check_t_end(sde: AbstractSDE, t_end) -> float:
    if isinstance(t_end, bool) or not isinstance(t_end, numbers.Real) or not 0.0 <= t_end < sde.t_max:
        raise ValueError(f"t_end must be a number in [0, T={sde.t_max}), got {t_end!r}")
    return float(t_end)


def _check_tolerance(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


# --------------------------------------------------------------------------------------
# Brownian motion, as a component.


class AbstractBrownianMotion(eqx.Module):
    """How the reverse SDE's Brownian motion is simulated (a diffrax Brownian path)."""

    @abc.abstractmethod
    def path(
        self, *, t0, t1, dt, shape: tuple[int, ...], dtype, key: PRNGKeyArray, levy_area: type
    ) -> diffrax.AbstractBrownianPath:
        """A Brownian path on [t0, t1] for steps of size dt."""


class UnsafeBrownianMotion(AbstractBrownianMotion):
    """diffrax.UnsafeBrownianPath: a fresh Gaussian increment for every step.

    Exact in law for fixed steps and no backpropagation (our case); one normal draw per
    step, so it costs what a hand-written Euler-Maruyama loop costs. Not usable with
    adaptive steps (rejected steps would resample the same interval).
    """

    def path(self, *, t0, t1, dt, shape, dtype, key, levy_area):
        return diffrax.UnsafeBrownianPath(jax.ShapeDtypeStruct(shape, dtype), key, levy_area=levy_area)


class VirtualBrownianMotion(AbstractBrownianMotion):
    """diffrax.VirtualBrownianTree: a Brownian path defined on [t0, t1] to tolerance
    `tol_fraction * dt`, deterministic in the key and consistent across step sizes.

    Each increment is a binary search of depth ~log2((t1 - t0) / tol) with a PRNG split
    per level, so it costs several times more than `UnsafeBrownianMotion` when the drift
    is cheap; it is what adaptive SDE steps and coupled (same-path) comparisons need.

    Args:
        tol_fraction: tol / dt, in (0, 1] (the diffrax docs suggest dt / 2).
        space_time_levy_area: simulate the space-time Lévy area even for solvers that
            only read the increment (Euler-Maruyama). The Lévy area changes the tree, so
            two solvers read the same path only if both trees carry it: set it to couple
            Euler-Maruyama with ShARK or SRA1.
    """

    tol_fraction: float = eqx.field(static=True, default=0.5)
    space_time_levy_area: bool = eqx.field(static=True, default=False)

    def __check_init__(self):
        if not (isinstance(self.tol_fraction, (int, float)) and 0.0 < self.tol_fraction <= 1.0):
            raise ValueError(f"tol_fraction must be in (0, 1], got {self.tol_fraction!r}")

    def path(self, *, t0, t1, dt, shape, dtype, key, levy_area):
        if self.space_time_levy_area and levy_area is diffrax.BrownianIncrement:
            levy_area = diffrax.SpaceTimeLevyArea
        return diffrax.VirtualBrownianTree(
            t0, t1, tol=self.tol_fraction * dt, shape=jax.ShapeDtypeStruct(shape, dtype), key=key, levy_area=levy_area
        )


def _levy_area_for(solver) -> type:
    """The cheapest concrete Lévy area a solver accepts (W only, or W and H, ...)."""
    minimal = getattr(solver, "minimal_levy_area", diffrax.BrownianIncrement)
    for candidate in (diffrax.BrownianIncrement, diffrax.SpaceTimeLevyArea, diffrax.SpaceTimeTimeLevyArea):
        if issubclass(candidate, minimal):
            return candidate
    raise ValueError(f"solver {type(solver).__name__} needs a Lévy area diffrax cannot simulate: {minimal}")


def drift_evaluations(solver) -> tuple[int, int]:
    """(evaluations per step, evaluations at the start) of the drift for a diffrax solver.

    Explicit Runge-Kutta: s stages per step, one fewer with first-same-as-last (FSAL)
    tableaus, which instead evaluate once at the start (Tsit5, Dopri5: 6 per step + 1).
    Stochastic Runge-Kutta (ShARK, SRA1): one per non-ignored stage. Euler: 1.
    Each step counts, accepted or rejected. Checked against counted calls in the tests.

    Raises:
        ValueError: for a solver whose count is not known here.
    """
    if isinstance(solver, diffrax.Euler):
        return 1, 0
    if isinstance(solver, diffrax.AbstractSRK):
        stages = len(solver.tableau.b_sol)
        ignored = 0 if solver.tableau.ignore_stage_f is None else int(np.sum(solver.tableau.ignore_stage_f))
        return stages - ignored, 0
    if isinstance(solver, diffrax.AbstractRungeKutta) and isinstance(solver.tableau, diffrax.ButcherTableau):
        if solver.tableau.implicit:
            raise ValueError(f"solver {type(solver).__name__} is implicit; use an explicit solver")
        stages = solver.tableau.num_stages
        fsal = bool(solver.tableau.fsal)
        return stages - int(fsal), int(fsal)
    raise ValueError(
        f"solver must be diffrax.Euler, an explicit Runge-Kutta or a stochastic Runge-Kutta "
        f"solver, got {type(solver).__name__}"
    )


# --------------------------------------------------------------------------------------
# Continuous time: the reverse SDE and the probability-flow ODE, through diffrax.


# Sampling never differentiates through the solve: forward mode runs a plain while loop
# (no checkpointing) and is the adjoint diffrax requires with UnsafeBrownianPath.
_SAMPLING_ADJOINT = diffrax.ForwardMode()


def _batch_drift(sde: AbstractSDE, score_fn: ScoreFn, weight: float, shape: tuple[int, int]):
    """tau -> -f(x, T - tau) + weight g(T - tau)^2 s(x, T - tau) on the flattened batch
    (the score vmapped over its rows)."""
    batched_score = jax.vmap(score_fn, in_axes=(0, None))

    def drift(tau, flat, args):
        t = sde.t_max - tau
        x = flat.reshape(shape)
        g = sde.diffusion(t)
        value = -sde.drift(x, t) + weight * g**2 * batched_score(x, t)
        return value.astype(flat.dtype).reshape(flat.shape)

    return drift


def _one_drift(sde: AbstractSDE, score_fn: ScoreFn, weight: float):
    """The same drift for one sample x: (d,)."""

    def drift(tau, x, args):
        t = sde.t_max - tau
        return (-sde.drift(x, t) + weight * sde.diffusion(t) ** 2 * score_fn(x, t)).astype(x.dtype)

    return drift


def _diffusion_operator(sde: AbstractSDE):
    """tau -> g(T - tau) I as a diagonal operator: an O(n d) product, not a dense matrix."""

    def diffusion(tau, flat, args):
        g = sde.diffusion(sde.t_max - tau)
        return lineax.DiagonalLinearOperator(jnp.full(flat.shape, g, flat.dtype))

    return diffusion


# The batch of n samples is integrated as one state of n * d coordinates (flattened, for
# lineax's diagonal operator) with the score vmapped over the rows: with fixed steps this
# is exactly n independent solves, but one loop instead of n vmapped ones (whose batched
# loop predicate turns every carried value into a select), and one Brownian draw of
# shape (n, d) per step (or one tree walk for all samples: benchmarks/diffusion_sde_speed.py
# measured n vmapped VirtualBrownianTree solves 1.7-2.2x slower than the batched tree).


def _solve_reverse_sde_batch(sde, score_fn, solver, brownian, x, key, n_steps, t_end, saveat, max_steps):
    t1 = sde.t_max - t_end
    dt = t1 / n_steps
    flat = x.reshape(-1)
    path = brownian.path(
        t0=jnp.zeros_like(t1), t1=t1, dt=dt, shape=flat.shape, dtype=flat.dtype, key=key,
        levy_area=_levy_area_for(solver),
    )
    terms = diffrax.MultiTerm(
        diffrax.ODETerm(_batch_drift(sde, score_fn, 1.0, x.shape)),
        diffrax.ControlTerm(_diffusion_operator(sde), path),
    )
    return diffrax.diffeqsolve(
        terms, solver, t0=jnp.zeros_like(t1), t1=t1, dt0=dt, y0=flat, saveat=saveat, max_steps=max_steps,
        adjoint=_SAMPLING_ADJOINT,
    )


def _solve_probability_flow_batch(sde, score_fn, solver, x, n_steps, t_end, saveat, max_steps):
    t1 = sde.t_max - t_end
    dt = t1 / n_steps
    term = diffrax.ODETerm(_batch_drift(sde, score_fn, 0.5, x.shape))
    return diffrax.diffeqsolve(
        term, solver, t0=jnp.zeros_like(t1), t1=t1, dt0=dt, y0=x.reshape(-1), saveat=saveat, max_steps=max_steps,
        adjoint=_SAMPLING_ADJOINT,
    )


def _time_dtype(x):
    return jnp.result_type(x.dtype, jnp.float32)


def _fixed_step_output(solution, x_init, solver) -> SamplerOutput:
    per_step, initial = drift_evaluations(solver)
    nfe = initial + per_step * solution.stats["num_steps"]
    return SamplerOutput(solution.ys[-1].reshape(x_init.shape), jnp.full(x_init.shape[0], nfe, jnp.int32))


@eqx.filter_jit
def _reverse_sde_jit(sde, score_fn, solver, brownian, x_init, key, n_steps, t_end, max_steps):
    solution = _solve_reverse_sde_batch(
        sde, score_fn, solver, brownian, x_init, key, n_steps, t_end, diffrax.SaveAt(t1=True), max_steps
    )
    return _fixed_step_output(solution, x_init, solver)


def reverse_sde(
    sde: AbstractSDE,
    score_fn: ScoreFn,
    x_init: Float[Array, "n d"],
    *,
    key: PRNGKeyArray,
    n_steps: int,
    t_end: float = 1e-3,
    solver=None,
    brownian: AbstractBrownianMotion | None = None,
    max_steps: int = 4096,
) -> SamplerOutput:
    """Integrate the reverse-time SDE from t = T to t_end with n_steps fixed steps.

    dx = [f(x, t) - g(t)^2 score_fn(x, t)] dt + g(t) dW_bar, t: T -> t_end, x_T = x_init.

    Args:
        sde: the forward process (VP, sub-VP, VE).
        score_fn: (x: (d,), t: ()) -> (d,), exact or learned.
        x_init: Float[Array, "n d"], draws from the prior (e.g. `sde.prior(d).sample`).
        key: drives the Brownian motion (split once per sample).
        n_steps: number of fixed steps (traced: sweeping it does not recompile).
        t_end: final time > 0 avoids the score's blow-up at t = 0 (Song et al.: 1e-3 for VP).
        solver: a diffrax SDE solver for additive noise: `diffrax.Euler()`
            (Euler-Maruyama, default), `diffrax.ShARK()` or `diffrax.SRA1()` (strong order 1.5).
        brownian: `UnsafeBrownianMotion()` (default, fixed steps) or `VirtualBrownianMotion()`.
        max_steps: static bound on n_steps (diffrax's loop bound).

    Returns:
        `SamplerOutput` with samples (n, d) and nfe = evaluations per step * n_steps.

    Reference: Song et al. (2021), eq. (6); Anderson (1982).
    """
    solver = diffrax.Euler() if solver is None else solver
    brownian = UnsafeBrownianMotion() if brownian is None else brownian
    x_init = _check_points(x_init)
    n_steps = _check_steps("n_steps", n_steps, max_steps)
    t_end = _check_t_end(sde, t_end)
    drift_evaluations(solver)  # rejects solvers whose cost we cannot count
    dtype = _time_dtype(x_init)
    return _reverse_sde_jit(
        sde, score_fn, solver, brownian, x_init, key, jnp.asarray(n_steps, dtype), jnp.asarray(t_end, dtype), max_steps
    )


@eqx.filter_jit
def _probability_flow_jit(sde, score_fn, solver, x_init, n_steps, t_end, max_steps):
    solution = _solve_probability_flow_batch(sde, score_fn, solver, x_init, n_steps, t_end, diffrax.SaveAt(t1=True), max_steps)
    return _fixed_step_output(solution, x_init, solver)


def probability_flow(
    sde: AbstractSDE,
    score_fn: ScoreFn,
    x_init: Float[Array, "n d"],
    *,
    n_steps: int,
    t_end: float = 1e-3,
    solver=None,
    max_steps: int = 4096,
) -> SamplerOutput:
    """Integrate the probability-flow ODE from t = T to t_end with n_steps fixed steps.

    dx/dt = f(x, t) - g(t)^2 score_fn(x, t) / 2, t: T -> t_end, x_T = x_init. With the
    exact score its flow pushes p_T forward to p_t at every t (same marginals as the
    reverse SDE, deterministic paths).

    Args:
        sde, score_fn, x_init, n_steps, t_end, max_steps: as in `reverse_sde`.
        solver: an explicit diffrax ODE solver: `diffrax.Heun()` (default), `diffrax.Euler()`, ...

    Returns:
        `SamplerOutput`; nfe = evaluations per step * n_steps (+1 for FSAL tableaus).

    Reference: Song et al. (2021), eq. (13) and App. D.
    """
    solver = diffrax.Heun() if solver is None else solver
    x_init = _check_points(x_init)
    n_steps = _check_steps("n_steps", n_steps, max_steps)
    t_end = _check_t_end(sde, t_end)
    drift_evaluations(solver)
    dtype = _time_dtype(x_init)
    return _probability_flow_jit(
        sde, score_fn, solver, x_init, jnp.asarray(n_steps, dtype), jnp.asarray(t_end, dtype), max_steps
    )


@eqx.filter_jit
def _adaptive_probability_flow_jit(sde, score_fn, solver, x_init, rtol, atol, t_end, max_steps):
    per_step, initial = drift_evaluations(solver)
    t1 = sde.t_max - t_end
    term = diffrax.ODETerm(_one_drift(sde, score_fn, 0.5))
    controller = diffrax.PIDController(rtol=rtol, atol=atol)

    def one(x):
        # An explicit first step (1% of the interval) so that no evaluations go to
        # diffrax's initial step-size heuristic; the controller adapts from there.
        solution = diffrax.diffeqsolve(
            term,
            solver,
            t0=jnp.zeros_like(t1),
            t1=t1,
            dt0=t1 / 100,
            y0=x,
            stepsize_controller=controller,
            max_steps=max_steps,
            adjoint=_SAMPLING_ADJOINT,
        )
        return solution.ys[-1], initial + per_step * solution.stats["num_steps"]

    samples, nfe = jax.vmap(one)(x_init)
    return SamplerOutput(samples, nfe)


def adaptive_probability_flow(
    sde: AbstractSDE,
    score_fn: ScoreFn,
    x_init: Float[Array, "n d"],
    *,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    t_end: float = 1e-3,
    solver=None,
    max_steps: int = 4096,
) -> SamplerOutput:
    """The probability-flow ODE with an adaptive embedded Runge-Kutta pair and a PID controller.

    Same equation as `probability_flow`; each sample is stepped alone (vmapped), so the
    NFE is per sample and depends on its path. Song et al. used RK45 with
    rtol = atol = 1e-5 from t = 1 to 1e-3 (~140 NFE on CIFAR-10, VP).

    Args:
        sde, score_fn, x_init, t_end: as in `probability_flow`.
        rtol, atol: the controller's tolerances (traced: sweeping them does not recompile).
        solver: `diffrax.Tsit5()` (default) or `diffrax.Dopri5()`.
        max_steps: bound on accepted + rejected steps.

    Returns:
        `SamplerOutput` whose nfe counts every evaluation, rejected steps included.

    Reference: Song et al. (2021), Sec. 4.3 and App. D.2; Tsitouras (2011).
    """
    solver = diffrax.Tsit5() if solver is None else solver
    x_init = _check_points(x_init)
    rtol = _check_tolerance("rtol", rtol)
    atol = _check_tolerance("atol", atol)
    t_end = _check_t_end(sde, t_end)
    _check_steps("max_steps", max_steps)
    drift_evaluations(solver)
    dtype = _time_dtype(x_init)
    return _adaptive_probability_flow_jit(
        sde, score_fn, solver, x_init, jnp.asarray(rtol, dtype), jnp.asarray(atol, dtype), jnp.asarray(t_end, dtype), max_steps
    )


@eqx.filter_jit
def _trajectories_jit(sde, score_fn, solver, brownian, x_init, key, n_steps: int, t_end, stochastic: bool):
    saveat = diffrax.SaveAt(t0=True, steps=True)
    if stochastic:
        solution = _solve_reverse_sde_batch(sde, score_fn, solver, brownian, x_init, key, n_steps, t_end, saveat, n_steps)
    else:
        solution = _solve_probability_flow_batch(sde, score_fn, solver, x_init, n_steps, t_end, saveat, n_steps)
    xs = solution.ys.reshape(solution.ys.shape[0], *x_init.shape).transpose(1, 0, 2)
    return Trajectories(sde.t_max - solution.ts, xs)


def reverse_sde_trajectories(
    sde: AbstractSDE,
    score_fn: ScoreFn,
    x_init: Float[Array, "n d"],
    *,
    key: PRNGKeyArray,
    n_steps: int,
    t_end: float = 1e-3,
    solver=None,
    brownian: AbstractBrownianMotion | None = None,
) -> Trajectories:
    """Whole paths of `reverse_sde` (every step saved; n_steps is static here).

    Returns:
        `Trajectories` with ts (n_steps + 1,) from T to t_end and xs (n, n_steps + 1, d).
    """
    x_init = _check_points(x_init)
    n_steps = _check_steps("n_steps", n_steps)
    t_end = _check_t_end(sde, t_end)
    solver = diffrax.Euler() if solver is None else solver
    brownian = UnsafeBrownianMotion() if brownian is None else brownian
    return _trajectories_jit(sde, score_fn, solver, brownian, x_init, key, n_steps, jnp.asarray(t_end, _time_dtype(x_init)), True)


def probability_flow_trajectories(
    sde: AbstractSDE,
    score_fn: ScoreFn,
    x_init: Float[Array, "n d"],
    *,
    n_steps: int,
    t_end: float = 1e-3,
    solver=None,
) -> Trajectories:
    """Whole paths of `probability_flow` (every step saved; n_steps is static here).

    Returns:
        `Trajectories` with ts (n_steps + 1,) from T to t_end and xs (n, n_steps + 1, d).
    """
    x_init = _check_points(x_init)
    n_steps = _check_steps("n_steps", n_steps)
    t_end = _check_t_end(sde, t_end)
    solver = diffrax.Heun() if solver is None else solver
    return _trajectories_jit(
        sde, score_fn, solver, UnsafeBrownianMotion(), x_init, jax.random.key(0), n_steps,
        jnp.asarray(t_end, _time_dtype(x_init)), False,
    )


# --------------------------------------------------------------------------------------
# Discrete time: DDPM ancestral sampling and DDIM, on a respaced subsequence.


def respaced_timesteps(n_steps: int, total: int) -> np.ndarray:
    """tau_k = floor(k T / S) for k = 0..S: S evenly spaced steps of the T-step chain,
    strictly increasing from tau_0 = 0 to tau_S = T (the samplers compute the same
    indices in-graph, for a traced S)."""
    n_steps = _check_steps("n_steps", n_steps, total)
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
    x_init = _check_points(x_init)
    n_steps = schedule.n_steps if n_steps is None else _check_steps("n_steps", n_steps, schedule.n_steps)
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
    x_init = _check_points(x_init)
    n_steps = _check_steps("n_steps", n_steps, schedule.n_steps)
    if isinstance(eta, bool) or not isinstance(eta, numbers.Real) or not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be a number in [0, 1], got {eta!r}")
    if eta > 0 and key is None:
        raise ValueError("key must be a JAX PRNG key when eta > 0, got None")
    key = jax.random.key(0) if key is None else key
    return _discrete_jit(schedule, epsilon_fn, x_init, key, jnp.asarray(n_steps, jnp.int32), jnp.asarray(eta, x_init.dtype), False)


# --------------------------------------------------------------------------------------
# Conversions between parametrisations.


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


# --------------------------------------------------------------------------------------
# Samplers as components: one interface for a sweep over samplers and budgets.


class DiffusionModel(eqx.Module):
    """What the samplers read from a diffusion: the SDE and its score in continuous time,
    the DDPM schedule and its noise predictor in discrete time.

    Attributes:
        sde: the forward SDE.
        score_fn: (x: (d,), t: ()) -> (d,).
        schedule: the discrete beta schedule.
        epsilon_fn: (x: (d,), i: int) -> (d,).
    """

    sde: AbstractSDE
    score_fn: Callable
    schedule: AbstractBetaSchedule
    epsilon_fn: Callable


class AbstractDiffusionSampler(eqx.Module):
    """A way to draw samples from a `DiffusionModel` at a chosen computational budget."""

    @property
    @abc.abstractmethod
    def label(self) -> str:
        """A short, file-name-safe name, e.g. 'reverse_sde_euler_maruyama'."""

    @abc.abstractmethod
    def settings(self, nfe_grid: tuple[int, ...]) -> tuple[float, ...]:
        """The budgets to sweep (numbers of steps, or tolerances for adaptive solvers)
        that aim at the target NFEs `nfe_grid`."""

    @abc.abstractmethod
    def sample(self, model: DiffusionModel, x_init, *, key: PRNGKeyArray, setting: float) -> SamplerOutput:
        """Samples from x_init (prior draws) at one budget `setting`."""


def _steps_for(nfe_grid, per_step: int, maximum: int | None = None) -> tuple[float, ...]:
    steps = sorted({max(1, int(nfe) // per_step) for nfe in nfe_grid})
    if maximum is not None:
        steps = [s for s in steps if s <= maximum]
    return tuple(float(s) for s in steps)


def _solver_label(solver) -> str:
    return "euler" if isinstance(solver, diffrax.Euler) else type(solver).__name__.lower()


class ReverseSDESampler(AbstractDiffusionSampler):
    """`reverse_sde` with a fixed-step diffrax solver; the setting is the number of steps.

    Args:
        solver: `diffrax.Euler()` (Euler-Maruyama), `diffrax.ShARK()`, `diffrax.SRA1()`.
        brownian: `UnsafeBrownianMotion()` or `VirtualBrownianMotion()`.
        t_end: final time (Song et al.: 1e-3 for VP).
    """

    solver: diffrax.AbstractSolver = diffrax.Euler()
    brownian: AbstractBrownianMotion = UnsafeBrownianMotion()
    t_end: float = eqx.field(static=True, default=1e-3)

    def __check_init__(self):
        drift_evaluations(self.solver)

    @property
    def label(self):
        name = "euler_maruyama" if isinstance(self.solver, diffrax.Euler) else _solver_label(self.solver)
        return f"reverse_sde_{name}"

    def settings(self, nfe_grid):
        return _steps_for(nfe_grid, drift_evaluations(self.solver)[0])

    def sample(self, model, x_init, *, key, setting):
        return reverse_sde(
            model.sde, model.score_fn, x_init, key=key, n_steps=int(setting), t_end=self.t_end,
            solver=self.solver, brownian=self.brownian,
        )


class ProbabilityFlowSampler(AbstractDiffusionSampler):
    """`probability_flow` with a fixed-step diffrax ODE solver; the setting is the number of steps.

    Args:
        solver: `diffrax.Euler()`, `diffrax.Heun()`, ...
        t_end: final time.
    """

    solver: diffrax.AbstractSolver = diffrax.Heun()
    t_end: float = eqx.field(static=True, default=1e-3)

    def __check_init__(self):
        drift_evaluations(self.solver)

    @property
    def label(self):
        return f"pf_ode_{_solver_label(self.solver)}"

    def settings(self, nfe_grid):
        return _steps_for(nfe_grid, drift_evaluations(self.solver)[0])

    def sample(self, model, x_init, *, key, setting):
        return probability_flow(
            model.sde, model.score_fn, x_init, n_steps=int(setting), t_end=self.t_end, solver=self.solver
        )


class AdaptiveProbabilityFlowSampler(AbstractDiffusionSampler):
    """`adaptive_probability_flow`; the setting is rtol = atol, swept over `tolerances`
    (the NFE is an outcome, not a choice).

    Args:
        solver: `diffrax.Tsit5()` or `diffrax.Dopri5()`.
        tolerances: rtol = atol values to sweep, each > 0.
        t_end: final time.
        max_steps: bound on accepted + rejected steps.
    """

    solver: diffrax.AbstractSolver = diffrax.Tsit5()
    tolerances: tuple[float, ...] = eqx.field(static=True, default=(1e-1, 1e-2, 1e-3, 1e-4, 1e-5))
    t_end: float = eqx.field(static=True, default=1e-3)
    max_steps: int = eqx.field(static=True, default=4096)

    def __check_init__(self):
        drift_evaluations(self.solver)
        if not self.tolerances:
            raise ValueError("tolerances must hold at least one value, got ()")
        for tolerance in self.tolerances:
            _check_tolerance("tolerances", tolerance)

    @property
    def label(self):
        return f"pf_ode_{_solver_label(self.solver)}_adaptive"

    def settings(self, nfe_grid):
        return tuple(float(t) for t in self.tolerances)

    def sample(self, model, x_init, *, key, setting):
        return adaptive_probability_flow(
            model.sde, model.score_fn, x_init, rtol=setting, atol=setting, t_end=self.t_end,
            solver=self.solver, max_steps=self.max_steps,
        )


class DDPMSampler(AbstractDiffusionSampler):
    """`ddpm_ancestral` on the model's schedule; the setting is the number of steps S <= T."""

    @property
    def label(self):
        return "ddpm_ancestral"

    def settings(self, nfe_grid):
        return _steps_for(nfe_grid, 1)

    def sample(self, model, x_init, *, key, setting):
        return ddpm_ancestral(model.schedule, model.epsilon_fn, x_init, key=key, n_steps=int(setting))


class DDIMSampler(AbstractDiffusionSampler):
    """`ddim` on the model's schedule; the setting is the number of steps S <= T.

    Args:
        eta: stochasticity in [0, 1] (0: deterministic DDIM).
    """

    eta: float = eqx.field(static=True, default=0.0)

    def __check_init__(self):
        if not (isinstance(self.eta, (int, float)) and 0.0 <= self.eta <= 1.0):
            raise ValueError(f"eta must be in [0, 1], got {self.eta!r}")

    @property
    def label(self):
        return f"ddim_eta{self.eta:g}"

    def settings(self, nfe_grid):
        return _steps_for(nfe_grid, 1)

    def sample(self, model, x_init, *, key, setting):
        return ddim(model.schedule, model.epsilon_fn, x_init, n_steps=int(setting), eta=self.eta, key=key)
