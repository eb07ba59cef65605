"""Continuous time: the reverse-time SDE and the probability-flow ODE, through diffrax."""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from theory.sde import AbstractSDE
from theory.validation import check_bool, check_count, check_in_interval, check_key, check_points, check_positive_number, check_type

from ._brownian import AbstractBrownianMotion, UnsafeBrownianMotion
from ._outputs import SamplerOutput, ScoreFn, Trajectories


def _check_sde_and_t_end(sde, t_end) -> float:
    """sde an `AbstractSDE` and t_end in [0, T); returns t_end as a float."""
    check_type("sde", sde, AbstractSDE)
    return check_in_interval("t_end", t_end, 0.0, sde.t_max, include_low=True)


def _check_fixed_steps(sde, x_init, n_steps, t_end, max_steps: int | None = None):
    """The boundary checks every fixed-step sampler shares; returns (x_init, n_steps, t_end)."""
    x_init = check_points("x_init", x_init)
    n_steps = check_count("n_steps", n_steps, maximum=max_steps)
    return x_init, n_steps, _check_sde_and_t_end(sde, t_end)


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
    # A diffrax solver is named by its class (its repr holds every sub-module); anything
    # else by its value.
    got = type(solver).__name__ if isinstance(solver, diffrax.AbstractSolver) else repr(solver)
    raise ValueError(
        f"solver must be diffrax.Euler, an explicit Runge-Kutta or a stochastic Runge-Kutta solver, got {got}"
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


def _solve_batch(sde, score_fn, solver, brownian, x, key, n_steps, t_end, saveat, max_steps):
    """n_steps fixed steps in tau = T - t from 0 to T - t_end: of the reverse SDE (drift
    weight 1, noise from `brownian`), or with brownian=None of the probability-flow ODE
    (drift weight 1/2, no noise)."""
    t1 = sde.t_max - t_end
    dt = t1 / n_steps
    flat = x.reshape(-1)
    if brownian is None:
        terms = diffrax.ODETerm(_batch_drift(sde, score_fn, 0.5, x.shape))
    else:
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


def _as_times(x, *values):
    """Each value as an array of the samples' time dtype (at least float32): traced, so
    sweeping a step count or a tolerance does not recompile."""
    dtype = jnp.result_type(x.dtype, jnp.float32)
    return tuple(jnp.asarray(value, dtype) for value in values)


def _nfe_per_sample(solver, solution, n: int) -> jax.Array:
    """The drift evaluations a fixed-step batch solve spent, the same for each of its n samples."""
    per_step, initial = drift_evaluations(solver)
    return jnp.full(n, initial + per_step * solution.stats["num_steps"], jnp.int32)


@eqx.filter_jit
def _final_state_jit(sde, score_fn, solver, brownian, x_init, key, n_steps, t_end, max_steps):
    """`_solve_batch` to its final state, as a `SamplerOutput` with the counted NFE."""
    solution = _solve_batch(sde, score_fn, solver, brownian, x_init, key, n_steps, t_end, diffrax.SaveAt(t1=True), max_steps)
    return SamplerOutput(solution.ys[-1].reshape(x_init.shape), _nfe_per_sample(solver, solution, x_init.shape[0]))


@eqx.filter_jit
def _path_jit(sde, score_fn, solver, brownian, x_init, key, n_steps: int, t_end):
    """`_solve_batch` with every step saved (n_steps static: it sizes the saved path)."""
    saveat = diffrax.SaveAt(t0=True, steps=True)
    solution = _solve_batch(sde, score_fn, solver, brownian, x_init, key, n_steps, t_end, saveat, n_steps)
    xs = solution.ys.reshape(solution.ys.shape[0], *x_init.shape).transpose(1, 0, 2)
    return SamplerOutput(xs[:, -1], _nfe_per_sample(solver, solution, x_init.shape[0]),
                         Trajectories(sde.t_max - solution.ts, xs))


def _fixed_step_solve(sde, score_fn, solver, brownian, x_init, key, n_steps, t_end, max_steps, save_path) -> SamplerOutput:
    """Checks shared by the fixed-step samplers, then the final-state or whole-path solve."""
    x_init, n_steps, t_end = _check_fixed_steps(sde, x_init, n_steps, t_end, max_steps)
    drift_evaluations(solver)  # rejects solvers whose cost we cannot count
    if check_bool("save_path", save_path):
        return _path_jit(sde, score_fn, solver, brownian, x_init, key, n_steps, *_as_times(x_init, t_end))
    return _final_state_jit(sde, score_fn, solver, brownian, x_init, key, *_as_times(x_init, n_steps, t_end), max_steps)


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
    save_path: bool = False,
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
        save_path: also keep the whole path (every step), as `SamplerOutput.path`, a
            `Trajectories` with ts (n_steps + 1,) from T to t_end and xs (n, n_steps + 1, d);
            n_steps is then static (it sizes the path), so each value compiles once.

    Returns:
        `SamplerOutput` with samples (n, d), nfe = evaluations per step * n_steps, and the
        path when `save_path`.

    Reference: Song et al. (2021), eq. (6); Anderson (1982).
    """
    check_key("key", key)
    solver = diffrax.Euler() if solver is None else solver
    brownian = UnsafeBrownianMotion() if brownian is None else brownian
    return _fixed_step_solve(sde, score_fn, solver, brownian, x_init, key, n_steps, t_end, max_steps, save_path)


def probability_flow(
    sde: AbstractSDE,
    score_fn: ScoreFn,
    x_init: Float[Array, "n d"],
    *,
    n_steps: int,
    t_end: float = 1e-3,
    solver=None,
    max_steps: int = 4096,
    save_path: bool = False,
) -> SamplerOutput:
    """Integrate the probability-flow ODE from t = T to t_end with n_steps fixed steps.

    dx/dt = f(x, t) - g(t)^2 score_fn(x, t) / 2, t: T -> t_end, x_T = x_init. With the
    exact score its flow pushes p_T forward to p_t at every t (same marginals as the
    reverse SDE, deterministic paths).

    Args:
        sde, score_fn, x_init, n_steps, t_end, max_steps, save_path: as in `reverse_sde`.
        solver: an explicit diffrax ODE solver: `diffrax.Heun()` (default), `diffrax.Euler()`, ...

    Returns:
        `SamplerOutput`; nfe = evaluations per step * n_steps (+1 for FSAL tableaus), and
        the path when `save_path`.

    Reference: Song et al. (2021), eq. (13) and App. D.
    """
    solver = diffrax.Heun() if solver is None else solver
    return _fixed_step_solve(sde, score_fn, solver, None, x_init, None, n_steps, t_end, max_steps, save_path)


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
    x_init = check_points("x_init", x_init)
    rtol = check_positive_number("rtol", rtol)
    atol = check_positive_number("atol", atol)
    t_end = _check_sde_and_t_end(sde, t_end)
    check_count("max_steps", max_steps)
    drift_evaluations(solver)
    return _adaptive_probability_flow_jit(sde, score_fn, solver, x_init, *_as_times(x_init, rtol, atol, t_end), max_steps)
