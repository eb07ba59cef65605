"""Exact likelihoods of ODE-defined models, and the score-error bound on a diffusion's KL.

An ODE dx/dt = v(t, x) transports a law with density p_a at time a to a law q_b at time b.
Along a solution x(t), the log-density obeys the instantaneous change of variables

    d/dt log q_t(x(t)) = -div_x v(t, x(t)),                                   (Liouville)

so log q and x are solved together as one ODE for the state (x, l), dl/dt = div v(t, x),
l(t0) = 0. Two directions use the same solve:

    evaluation (`ode_log_density`):  x(t0) = x given, the law known at t1:
        log q_{t0}(x) = log p_{t1}(x(t1)) + l(t1);
    sampling (`ode_push_forward`):   z ~ p_{t0} given, the model law wanted at t1:
        log q_{t1}(x(t1)) = log p_{t0}(z) - l(t1).

Both hold for t1 < t0 as well (l is a signed integral). The divergence is computed exactly
(`ExactTrace`: d Jacobian-vector products, cheap in low dimension) or by Hutchinson's
estimator (`Hutchinson(m)`: v^T J v for m Rademacher probes held fixed along the path,
as FFJORD does, so the estimate of l is unbiased and its spread over probes gives a
per-point standard error).

A `ContinuousFlow` is any such model: a vector field, a base law and the two times (a CNF,
or a diffusion's probability-flow ODE via `probability_flow_model`). On it:
`flow_kl(model, target)` = E_q[log q - log p] from the model's own draws (sample and
log q from the same solve) and `flow_cross_entropy(target, model)` = E_p[-log q] from
target draws, each with its Monte Carlo standard error.

Truncation at t_end: the probability-flow ODE of a diffusion is integrated from T down to
t_end > 0 (the score blows up at t = 0 for concentrated data), so with the exact score its
law is the noised marginal p_{t_end} = `sde.noised_target(target, t_end)`, not p_0. Compare
against that reference (for a Gaussian mixture it is exact); against p_0 the KL carries a
truncation term that vanishes only as t_end -> 0.

The bound (Song, Durkan, Murray & Ermon 2021, Thm. 1): for the reverse SDE started at the
prior pi at T and run to t_end with score s_theta, by Girsanov and data processing,

    KL(p_{t_end} || q^SDE_{t_end}) <= KL(p_T || pi)
                                      + 1/2 int_{t_end}^T g(t)^2 E_{p_t} ||s_theta(x, t) - grad log p_t(x)||^2 dt,

evaluated here with the exact noised-mixture marginals (`score_error_kl_bound`). It bounds
the reverse SDE's KL, not the probability-flow ODE's (Song et al. 2021, Sec. 4).

Everything runs in float64 (under `jax.enable_x64(True)`, on float64 copies of the laws),
with explicit keys; per-point solves are vmapped, so adaptive solvers step each point alone.

References: Chen, Rubanova, Bettencourt & Duvenaud, "Neural ordinary differential
equations", NeurIPS 2018, Thm. 1; Grathwohl, Chen, Bettencourt, Sutskever & Duvenaud,
"FFJORD", ICLR 2019, Sec. 3.1 (Hutchinson's estimator with fixed noise); Hutchinson,
"A stochastic estimator of the trace of the influence matrix", 1990; Song et al.,
"Score-based generative modeling through SDEs", ICLR 2021, App. D.2; Song, Durkan,
Murray & Ermon, "Maximum likelihood training of score-based diffusion models",
NeurIPS 2021, Thm. 1.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

from theory.distributions import AbstractDensity, AbstractDistribution, score_at_point, to_float64
from theory.divergences import kl
from theory.estimate import Estimate, monte_carlo_mean
from theory.integrate import MonteCarlo, Quadrature
from theory.sde import AbstractSDE
from theory.validation import (
    check_count,
    check_in_interval,
    check_key,
    check_number,
    check_points,
    check_positive_number,
)

# `drift_evaluations` counts a solver's vector-field evaluations per step (stages, FSAL).
from theory.diffusion_samplers import drift_evaluations

__all__ = [
    "AbstractDivergenceMethod",
    "ExactTrace",
    "Hutchinson",
    "AdaptiveSteps",
    "FixedSteps",
    "ODESolve",
    "FlowLogDensity",
    "ode_log_density",
    "ode_push_forward",
    "ContinuousFlow",
    "flow_log_density",
    "flow_sample",
    "flow_kl",
    "flow_cross_entropy",
    "ProbabilityFlowField",
    "probability_flow_model",
    "probability_flow_log_density",
    "score_error_integral",
    "score_error_kl_bound",
]

VectorField = Callable[[Float[Array, ""], Float[Array, " d"]], Float[Array, " d"]]
ScoreFn = Callable[[Float[Array, " d"], Float[Array, ""]], Float[Array, " d"]]


# --------------------------------------------------------------------------------------
# The divergence, as a component.


class AbstractDivergenceMethod(eqx.Module):
    """How div v = tr(dv/dx) is computed inside the log-density ODE.

    `probes(key, d, dtype)` draws the directions used along one whole path; `samples(jvp,
    probes)` turns the Jacobian-vector product x' -> J x' at the current point into the
    per-probe divergence samples that the ODE integrates (their mean estimates div v).
    """

    @abc.abstractmethod
    def probes(self, key: PRNGKeyArray, dim: int, dtype) -> Float[Array, "m d"]:
        """The probe directions for one path."""

    @abc.abstractmethod
    def samples(self, jvp: Callable, probes: Float[Array, "m d"]) -> Float[Array, " k"]:
        """Divergence samples (k of them) at one point, from J's products with the probes."""

    @property
    @abc.abstractmethod
    def n_samples(self) -> int:
        """k, the number of divergence samples integrated per path."""

    @property
    @abc.abstractmethod
    def label(self) -> str:
        """A short description for method strings."""


class ExactTrace(AbstractDivergenceMethod):
    """div v = sum_i e_i^T J e_i: d Jacobian-vector products with the standard basis (exact).

    Cost d products per evaluation; the choice in low dimension (2-D: two products).
    """

    def probes(self, key, dim, dtype):
        return jnp.eye(dim, dtype=dtype)

    def samples(self, jvp, probes):
        columns = jax.vmap(jvp)(probes)  # row i is J e_i, so columns[i, i] = J_ii
        return jnp.trace(columns)[None]

    @property
    def n_samples(self) -> int:
        return 1

    @property
    def label(self) -> str:
        return "exact trace"


class Hutchinson(AbstractDivergenceMethod):
    """div v ~ v^T J v with Rademacher probes v (E[v v^T] = I), one sample per probe.

    The probes are drawn once per path and held fixed along it (FFJORD), so each probe's
    integral int v^T J(t) v dt = v^T (int J dt) v is an unbiased estimate of the exact
    integral of div v, and the n_probes samples give a per-point standard error.
    Rademacher probes have the smallest variance among probes with i.i.d. zero-mean,
    unit-variance entries (Hutchinson 1990): see `variance`.

    Args:
        n_probes: probes per path (>= 1; >= 2 for a per-point standard error).
    """

    n_probes: int = eqx.field(static=True, default=1)

    def __check_init__(self):
        check_count("n_probes", self.n_probes)

    def probes(self, key, dim, dtype):
        return jax.random.rademacher(key, (self.n_probes, dim), dtype=dtype)

    def samples(self, jvp, probes):
        return jnp.sum(probes * jax.vmap(jvp)(probes), axis=-1)

    @property
    def n_samples(self) -> int:
        return self.n_probes

    @property
    def label(self) -> str:
        return f"Hutchinson ({self.n_probes} Rademacher probe{'s' if self.n_probes > 1 else ''})"

    @staticmethod
    def variance(matrix: Float[Array, "d d"]) -> Float[Array, ""]:
        """Var(v^T A v) for one Rademacher probe v, in closed form.

        v^T A v = tr A + sum_{i != j} v_i v_j A_ij, and E[v_i v_j v_k v_l] (i != j, k != l)
        is 1 when {k, l} = {i, j}, else 0, so with B = (A + A^T) / 2,

            Var(v^T A v) = sum_{i != j} (A_ij^2 + A_ij A_ji) = 2 (||B||_F^2 - sum_i B_ii^2).

        (Gaussian probes give 2 ||B||_F^2, larger by 2 sum_i B_ii^2.) Applied to
        A = int J dt it is the variance of one probe's log-density increment.

        Reference: Hutchinson (1990); Avron & Toledo, "Randomized algorithms for estimating
        the trace of an implicit symmetric positive semi-definite matrix", JACM 58 (2011), Sec. 3.
        """
        matrix = jnp.asarray(matrix)
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"matrix must be square (d, d), got shape {matrix.shape}")
        sym = 0.5 * (matrix + matrix.T)
        return 2.0 * (jnp.sum(sym**2) - jnp.sum(jnp.diagonal(sym) ** 2))


# --------------------------------------------------------------------------------------
# Step-size choice, as a component.


class AdaptiveSteps(eqx.Module):
    """An embedded Runge-Kutta pair under diffrax's PID controller (tolerances traced, so
    a sweep over them does not recompile); the first step is 1% of the interval (no
    evaluations go to diffrax's initial step-size heuristic).

    Args:
        rtol, atol: the controller's tolerances on the joint state (x, log-density).
        max_steps: bound on accepted + rejected steps (an error is raised past it).
    """

    rtol: float = eqx.field(static=True, default=1e-5)
    atol: float = eqx.field(static=True, default=1e-5)
    max_steps: int = eqx.field(static=True, default=4096)

    def __check_init__(self):
        check_positive_number("rtol", self.rtol)
        check_positive_number("atol", self.atol)
        check_count("max_steps", self.max_steps)

    @property
    def label(self) -> str:
        return f"adaptive, rtol={self.rtol:g}, atol={self.atol:g}"


class FixedSteps(eqx.Module):
    """n_steps equal steps (traced: a sweep over n_steps up to max_steps does not recompile).

    Args:
        n_steps: number of steps (>= 1).
        max_steps: static loop bound (>= n_steps; the loop stops at n_steps, so a large
            bound costs nothing).
    """

    n_steps: int = eqx.field(static=True)
    max_steps: int = eqx.field(static=True, default=4096)

    def __init__(self, n_steps: int, max_steps: int = 4096):
        self.n_steps = check_count("n_steps", n_steps)
        self.max_steps = check_count("max_steps", max_steps)
        if self.max_steps < self.n_steps:
            raise ValueError(f"max_steps must be >= n_steps={self.n_steps}, got {self.max_steps}")

    @property
    def label(self) -> str:
        return f"{self.n_steps} fixed steps"


class ODESolve(eqx.Module):
    """How a log-density solve runs: the solver, its step control and the divergence.

    Every function here that solves the joint ODE of (x, log q) takes one of these as
    `solve=` (None: the defaults below), so the three settings travel and are checked
    together, and each result's label says which were used.

    Args:
        solver: an explicit diffrax solver whose evaluations per step are known
            (`diffrax.Tsit5()`, the default; Euler, Heun, Midpoint, Ralston, Bosh3,
            Dopri5, ...).
        steps: `AdaptiveSteps(rtol, atol)` (the default; needs a solver with an error
            estimate) or `FixedSteps(n_steps)`.
        divergence: `ExactTrace()` (the default) or `Hutchinson(n_probes)` (the solve
            then needs a key).
    """

    solver: diffrax.AbstractSolver = diffrax.Tsit5()
    steps: AdaptiveSteps | FixedSteps = AdaptiveSteps()
    divergence: AbstractDivergenceMethod = ExactTrace()

    def __check_init__(self):
        drift_evaluations(self.solver)  # an explicit diffrax solver whose cost is known, or ValueError
        if not isinstance(self.steps, (AdaptiveSteps, FixedSteps)):
            raise ValueError(f"steps must be AdaptiveSteps(...) or FixedSteps(...), got {self.steps!r}")
        if isinstance(self.steps, AdaptiveSteps) and not isinstance(self.solver, diffrax.AbstractAdaptiveSolver):
            raise ValueError(
                "AdaptiveSteps needs a solver with an error estimate (Tsit5, Dopri5, ...), "
                f"got {type(self.solver).__name__}"
            )
        if not isinstance(self.divergence, AbstractDivergenceMethod):
            raise ValueError(f"divergence must be ExactTrace() or Hutchinson(n_probes), got {self.divergence!r}")

    def label(self, nfe) -> str:
        """The settings and the mean number of vector-field evaluations per point."""
        return (
            f"{type(self.solver).__name__}, {self.steps.label}, {self.divergence.label}, "
            f"mean NFE {float(np.mean(nfe)):.1f}; solver error not included"
        )


# --------------------------------------------------------------------------------------
# The joint solve of state and log-density.


class FlowLogDensity(eqx.Module):
    """Per-point results of a log-density solve.

    Attributes:
        points: Float[Array, "n d"], the points whose log-density is returned (the inputs
            for `ode_log_density`; the transported draws for `ode_push_forward`).
        log_density: Float[Array, "n"], log q at `points` (the mean over Hutchinson probes).
        probe_error: Float[Array, "n"], the standard error of that mean over probes
            (0 for `ExactTrace`; NaN for a single probe); it does not include the
            solver's error.
        nfe: Int[Array, "n"], vector-field evaluations per point (each with its
            Jacobian-vector products), rejected steps included.
    """

    points: Float[Array, "n d"]
    log_density: Float[Array, " n"]
    probe_error: Float[Array, " n"]
    nfe: Int[Array, " n"]


def _augmented_field(vector_field: VectorField, divergence: AbstractDivergenceMethod):
    """(t, (x, l), probes) -> (v(t, x), divergence samples at x): one linearisation of v
    serves the value and every Jacobian-vector product."""

    def field(t, state, probes):
        x, _ = state
        value, jvp = jax.linearize(lambda y: jnp.asarray(vector_field(t, y), x.dtype), x)
        return value, divergence.samples(jvp, probes).astype(x.dtype)

    return field


@eqx.filter_jit
def _solve_jit(vector_field, divergence, solver, adaptive: bool, max_steps: int, x, keys, t0, t1, rtol, atol, n_steps):
    # Only the kind of step control and the loop bound are static: tolerances, step
    # counts and times are traced, so sweeping them reuses one compilation.
    per_step, initial = drift_evaluations(solver)
    term = diffrax.ODETerm(_augmented_field(vector_field, divergence))
    if adaptive:
        controller = diffrax.PIDController(rtol=rtol, atol=atol)
        dt0 = (t1 - t0) / 100
    else:
        controller = diffrax.ConstantStepSize()
        dt0 = (t1 - t0) / n_steps

    def one(y0, key):
        probes = divergence.probes(key, y0.shape[-1], y0.dtype)
        state0 = (y0, jnp.zeros(divergence.n_samples, y0.dtype))
        # No gradients flow through these solves: forward mode runs a plain while loop.
        solution = diffrax.diffeqsolve(
            term, solver, t0=t0, t1=t1, dt0=dt0, y0=state0, args=probes, stepsize_controller=controller,
            max_steps=max_steps, adjoint=diffrax.ForwardMode(),
        )
        x_end, increments = solution.ys[0][-1], solution.ys[1][-1]
        return x_end, increments, initial + per_step * solution.stats["num_steps"]

    return jax.vmap(one)(x, keys)


def _check_solve(solve, key) -> ODESolve:
    solve = ODESolve() if solve is None else solve
    if not isinstance(solve, ODESolve):
        raise ValueError(f"solve must be ODESolve(solver, steps, divergence) or None, got {solve!r}")
    if isinstance(solve.divergence, Hutchinson):
        check_key("key", key)
    return solve


def _solve(vector_field, x, *, t0, t1, solve: ODESolve, key):
    """The joint solve from t0 to t1, in float64: (x(t1), per-probe l(t1), nfe)."""
    if t0 == t1:
        raise ValueError(f"t1 must differ from t0={t0}, got {t1}")
    solver, steps, divergence = solve.solver, solve.steps, solve.divergence
    key = jax.random.key(0) if key is None else key  # unused by ExactTrace
    keys = jax.random.split(key, x.shape[0])
    n_steps = steps.n_steps if isinstance(steps, FixedSteps) else 1
    rtol, atol = (steps.rtol, steps.atol) if isinstance(steps, AdaptiveSteps) else (1.0, 1.0)
    f64 = lambda v: jnp.asarray(v, jnp.float64)  # noqa: E731
    return _solve_jit(
        vector_field, divergence, solver, isinstance(steps, AdaptiveSteps), steps.max_steps, x, keys,
        f64(t0), f64(t1), f64(rtol), f64(atol), f64(n_steps),
    )


def _per_point(points, log_values, nfe) -> FlowLogDensity:
    """Mean over probes and its standard error (NaN for one probe, 0 for exact traces)."""
    m = log_values.shape[-1]
    mean = jnp.mean(log_values, axis=-1)
    if m == 1:
        error = jnp.full(mean.shape, jnp.nan, mean.dtype)
    else:
        error = jnp.std(log_values, axis=-1, ddof=1) / math.sqrt(m)
    return FlowLogDensity(points, mean, error, nfe)


def _check_transport(name, points, t0, t1, solve, key):
    """The checks both directions make before any compute: (points, t0, t1, solve)."""
    points = check_points(name, points)
    t0, t1 = check_number("t0", t0), check_number("t1", t1)
    return points, t0, t1, _check_solve(solve, key)


def _known_log_density(name: str, log_density, points) -> Float[Array, " n"]:
    """log_density(points) in float64, checked to give one value per point."""
    values = jnp.asarray(log_density(points), jnp.float64)
    if values.shape != (points.shape[0],):
        raise ValueError(f"{name} must map points (n, d) to shape ({points.shape[0]},), got {values.shape}")
    return values


def _exact_error(result: FlowLogDensity, solve: ODESolve) -> FlowLogDensity:
    if isinstance(solve.divergence, ExactTrace):
        return eqx.tree_at(lambda r: r.probe_error, result, jnp.zeros_like(result.log_density))
    return result


def ode_log_density(
    vector_field: VectorField,
    x: Float[Array, "n d"],
    log_density_end: Callable[[Float[Array, "n d"]], Float[Array, " n"]],
    *,
    t0: float,
    t1: float,
    solve: ODESolve | None = None,
    key: PRNGKeyArray | None = None,
) -> FlowLogDensity:
    """log q_{t0}(x) for the law q_{t0} that the flow of dx/dt = v(t, x) carries to p_{t1}.

    log q_{t0}(x) = log p_{t1}(x(t1)) + int_{t0}^{t1} div v(t, x(t)) dt,   x(t0) = x,

    solving x and the integral together (one ODE for (x, l), dl/dt = div v).

    Args:
        vector_field: (t: (), x: (d,)) -> dx/dt (d,), for ONE point (vmapped here).
        x: Float[Array, "n d"], the points at time t0.
        log_density_end: points (n, d) -> log p_{t1} (n,), the law known at t1
            (e.g. a base law's `log_prob`).
        t0, t1: the times (t1 < t0 is allowed).
        solve: `ODESolve(solver, steps, divergence)`; None means `ODESolve()` (Tsit5,
            adaptive steps, exact trace).
        key: required for `Hutchinson` (one probe set per point).

    Returns:
        `FlowLogDensity` with points = x.

    Reference: Chen et al. (2018), Thm. 1; Grathwohl et al. (2019), eq. (4); Song et al.
    (2021), App. D.2.
    """
    x, t0, t1, solve = _check_transport("x", x, t0, t1, solve, key)
    with jax.enable_x64(True):
        x64 = jnp.asarray(x, jnp.float64)
        x_end, increments, nfe = _solve(vector_field, x64, t0=t0, t1=t1, solve=solve, key=key)
        log_end = _known_log_density("log_density_end", log_density_end, x_end)
        return _exact_error(_per_point(x64, log_end[:, None] + increments, nfe), solve)


def ode_push_forward(
    vector_field: VectorField,
    z: Float[Array, "n d"],
    log_density_start: Callable[[Float[Array, "n d"]], Float[Array, " n"]],
    *,
    t0: float,
    t1: float,
    solve: ODESolve | None = None,
    key: PRNGKeyArray | None = None,
) -> FlowLogDensity:
    """Transport draws z of p_{t0} to x = x(t1) and return log q_{t1}(x) from the same solve.

    log q_{t1}(x(t1)) = log p_{t0}(z) - int_{t0}^{t1} div v(t, x(t)) dt,   x(t0) = z.

    Args:
        vector_field, solve, key: as in `ode_log_density`.
        z: Float[Array, "n d"], draws of the law p_{t0}.
        log_density_start: points (n, d) -> log p_{t0} (n,).
        t0, t1: the times (t1 < t0 is allowed: a diffusion's ODE runs from T down).

    Returns:
        `FlowLogDensity` with points = x(t1), draws of q_{t1}.

    Reference: Chen et al. (2018), Thm. 1; Grathwohl et al. (2019), eq. (4).
    """
    z, t0, t1, solve = _check_transport("z", z, t0, t1, solve, key)
    with jax.enable_x64(True):
        z64 = jnp.asarray(z, jnp.float64)
        log_start = _known_log_density("log_density_start", log_density_start, z64)
        x_end, increments, nfe = _solve(vector_field, z64, t0=t0, t1=t1, solve=solve, key=key)
        return _exact_error(_per_point(x_end, log_start[:, None] - increments, nfe), solve)


# --------------------------------------------------------------------------------------
# ODE-defined models and their divergences to a target.


class ContinuousFlow(eqx.Module):
    """A law defined by an ODE: q = law of x(t_data), dx/dt = v(t, x), x(t_base) ~ base.

    A continuous normalising flow (t_base = 1 or 0, base N(0, I)), or a diffusion's
    probability-flow ODE (t_base = T, base = the prior, t_data = t_end; see
    `probability_flow_model`).

    Args:
        vector_field: (t: (), x: (d,)) -> (d,), for one point.
        base: the law at t_base, with `sample` and `log_prob`.
        t_base, t_data: the two times (distinct).
    """

    vector_field: Callable
    base: AbstractDistribution
    t_base: float = eqx.field(static=True)
    t_data: float = eqx.field(static=True)

    def __check_init__(self):
        if not isinstance(self.base, AbstractDistribution):
            raise ValueError(f"base must be a distribution with sample and log_prob, got {type(self.base).__name__}")
        check_number("t_base", self.t_base)
        check_number("t_data", self.t_data)
        if self.t_base == self.t_data:
            raise ValueError(f"t_data must differ from t_base={self.t_base}, got {self.t_data}")

    @property
    def dim(self) -> int:
        return self.base.dim


def _check_model(model) -> None:
    if not isinstance(model, ContinuousFlow):
        raise ValueError(f"model must be a ContinuousFlow, got {type(model).__name__}")


def flow_log_density(
    model: ContinuousFlow, x: Float[Array, "n d"], *, solve: ODESolve | None = None, key: PRNGKeyArray | None = None
) -> FlowLogDensity:
    """log q(x) for the model law q, by solving from t_data back to t_base (`ode_log_density`)."""
    _check_model(model)
    with jax.enable_x64(True):
        base = to_float64(model.base)
    return ode_log_density(model.vector_field, x, base.log_prob, t0=model.t_data, t1=model.t_base, solve=solve, key=key)


def flow_sample(model: ContinuousFlow, *, key: PRNGKeyArray, n: int, solve: ODESolve | None = None) -> FlowLogDensity:
    """n draws of the model law q with their log q, from one solve per draw (`ode_push_forward`)."""
    _check_model(model)
    check_key("key", key)
    n = check_count("n", n)
    key_base, key_probes = jax.random.split(key)
    with jax.enable_x64(True):
        base = to_float64(model.base)
        z = base.sample(key_base, n)
    return ode_push_forward(
        model.vector_field, z, base.log_prob, t0=model.t_base, t1=model.t_data, solve=solve, key=key_probes
    )


def _check_method(method) -> MonteCarlo:
    method = MonteCarlo(n=1000) if method is None else method
    if not isinstance(method, MonteCarlo):
        raise ValueError(f"method must be MonteCarlo(n), got {method!r}")
    return method


def flow_kl(
    model: ContinuousFlow, target: AbstractDistribution, *, key: PRNGKeyArray, method: MonteCarlo | None = None,
    solve: ODESolve | None = None,
) -> Estimate:
    """KL(q || p) = E_q[log q(X) - log p(X)] for an ODE model q, with its standard error.

    X_i and log q(X_i) come from the same solve (`flow_sample`); the standard error of the
    mean of log q - log p includes the Hutchinson probes' noise (each draw has its own).
    For a diffusion's ODE, p should be the noised reference `sde.noised_target(target,
    t_end)` (see the module docstring).

    Args:
        model: the `ContinuousFlow`.
        target: p, with `log_prob`.
        key: PRNG key (base draws and probes).
        method: `MonteCarlo(n)` (default n = 1000).
        solve: as in `ode_log_density`.

    Returns:
        `Estimate` (nats); error = Monte Carlo standard error (the solver's bias is not
        included: sweep `steps` to see it).

    Reference: Song et al. (2021), App. D.2; Papamakarios et al., "Normalizing flows for
    probabilistic modeling and inference", JMLR 22 (2021), eq. (14).
    """
    _check_model(model)
    if not isinstance(target, AbstractDistribution) or target.dim != model.dim:
        raise ValueError(f"target must be a distribution on R^{model.dim}, got {target!r}")
    method = _check_method(method)
    check_key("key", key)
    solve = _check_solve(solve, key)
    draws = flow_sample(model, key=key, n=method.n, solve=solve)
    with jax.enable_x64(True):
        log_p = to_float64(target).log_prob(draws.points)
        values = draws.log_density - log_p
    estimate = monte_carlo_mean(values, "")
    return Estimate(
        estimate.value, estimate.error,
        f"KL(ODE model || target): Monte Carlo (n={method.n}) over model draws; "
        + solve.label(draws.nfe),
    )


def flow_cross_entropy(
    target: AbstractDistribution, model: ContinuousFlow, *, key: PRNGKeyArray, method: MonteCarlo | None = None,
    solve: ODESolve | None = None,
) -> Estimate:
    """The cross-entropy E_p[-log q(X)] of an ODE model q under target draws (the negative
    log-likelihood; KL(p || q) = it minus the entropy of p), with its standard error.

    Args:
        target: p, with `sample`.
        model, key, method, solve: as in `flow_kl`.

    Returns:
        `Estimate` (nats); error = Monte Carlo standard error (solver bias not included).

    Reference: Song et al. (2021), App. D.2 (negative log-likelihood in bits/dim is this
    divided by d log 2, after dequantisation).
    """
    _check_model(model)
    if not isinstance(target, AbstractDistribution) or target.dim != model.dim:
        raise ValueError(f"target must be a distribution on R^{model.dim}, got {target!r}")
    method = _check_method(method)
    check_key("key", key)
    solve = _check_solve(solve, key)
    key_target, key_probes = jax.random.split(key)
    with jax.enable_x64(True):
        x = to_float64(target).sample(key_target, method.n)
    result = flow_log_density(model, x, solve=solve, key=key_probes)
    estimate = monte_carlo_mean(-result.log_density, "")
    return Estimate(
        estimate.value, estimate.error,
        f"cross-entropy E_target[-log q]: Monte Carlo (n={method.n}) over target draws; "
        + solve.label(result.nfe),
    )


# --------------------------------------------------------------------------------------
# Diffusions: the probability-flow ODE as a ContinuousFlow, and the score-error bound.


class ProbabilityFlowField(eqx.Module):
    """v(t, x) = f(x, t) - g(t)^2 score_fn(x, t) / 2, the probability-flow ODE in SDE time t.

    With the exact score its flow carries p_s to p_t for all s, t (Song et al. 2021, eq. 13).

    Args:
        sde: the forward process.
        score_fn: (x: (d,), t: ()) -> (d,), exact or learned.
    """

    sde: AbstractSDE
    score_fn: Callable

    def __call__(self, t, x):
        score = jnp.asarray(self.score_fn(x, t), x.dtype)
        return self.sde.drift(x, t) - 0.5 * self.sde.diffusion(t) ** 2 * score


def _check_sde(sde, t_end) -> float:
    if not isinstance(sde, AbstractSDE):
        raise ValueError(f"sde must be an AbstractSDE (VPSDE, SubVPSDE, VESDE), got {type(sde).__name__}")
    return check_in_interval("t_end", t_end, 0.0, sde.t_max)


def probability_flow_model(sde: AbstractSDE, score_fn: ScoreFn, dim: int, *, t_end: float = 1e-3) -> ContinuousFlow:
    """The diffusion's ODE model: prior draws at T carried by the probability-flow ODE to t_end.

    With the exact score its law is p_{t_end} = `sde.noised_target(target, t_end)`.

    Args:
        sde: the forward process; its `prior(dim)` is the base law.
        score_fn: (x: (d,), t: ()) -> (d,).
        dim: d.
        t_end: the truncation time in (0, T) (Song et al.: 1e-5 for likelihoods, 1e-3 for samples).

    Reference: Song et al. (2021), eq. (13) and App. D.2.
    """
    t_end = _check_sde(sde, t_end)
    dim = check_count("dim", dim)
    return ContinuousFlow(ProbabilityFlowField(sde, score_fn), sde.prior(dim), t_base=sde.t_max, t_data=t_end)


def probability_flow_log_density(
    sde: AbstractSDE, score_fn: ScoreFn, x: Float[Array, "n d"], *, t_end: float = 1e-3,
    solve: ODESolve | None = None, key: PRNGKeyArray | None = None,
) -> FlowLogDensity:
    """log q_{t_end}(x) of the probability-flow ODE model, integrating from t_end to T.

    log q(x) = log pi(x(T)) + int_{t_end}^T div_x [f - g^2 s / 2](x(t), t) dt,  x(t_end) = x.

    Args:
        sde, score_fn, t_end: as in `probability_flow_model`.
        x: Float[Array, "n d"], points at time t_end.
        solve, key: as in `ode_log_density`.

    Reference: Song et al. (2021), eq. (39) (App. D.2).
    """
    x = check_points("x", x)
    model = probability_flow_model(sde, score_fn, x.shape[1], t_end=t_end)
    return flow_log_density(model, x, solve=solve, key=key)


def _log_time_nodes(t_lo: float, t_hi: float, panels: int, order: int):
    """Composite Gauss-Legendre in u = log t: nodes t and weights w with sum w h(t) ~ int h dt
    (the Jacobian dt = t du is folded into w)."""
    nodes, weights = np.polynomial.legendre.leggauss(order)
    edges = np.linspace(math.log(t_lo), math.log(t_hi), panels + 1)
    half = 0.5 * np.diff(edges)[:, None]
    mid = 0.5 * (edges[1:] + edges[:-1])[:, None]
    u = (mid + half * nodes).ravel()
    w = (half * weights).ravel()
    return np.exp(u), w * np.exp(u)


@eqx.filter_jit
def _weighted_squared_errors(sde, score_fn, target, x0, z, ts, weights):
    """Per rule r and draw i: sum_k W_rk g(t_k)^2 / 2 ||s(x_ki, t_k) - grad log p_{t_k}(x_ki)||^2,
    with x_ki = m(t_k) x0_i + s(t_k) z_i (common draws across the nodes); both refinements
    in one call (W is zero off each rule's nodes)."""

    def at_node(t):
        x = sde.marginal_scale(t) * x0 + sde.marginal_std(t) * z
        law = sde.noised_target(target, t)
        model = jax.vmap(lambda y: jnp.asarray(score_fn(y, t), y.dtype))(x)
        exact = jax.vmap(lambda y: score_at_point(law, y))(x)
        return 0.5 * sde.diffusion(t) ** 2 * jnp.sum((model - exact) ** 2, axis=-1)

    return weights @ jax.lax.map(at_node, ts)  # (rules, nodes) @ (nodes, n)


def score_error_integral(
    sde: AbstractSDE, score_fn: ScoreFn, target: AbstractDensity, *, key: PRNGKeyArray,
    method: MonteCarlo | None = None, t_end: float = 1e-3, time_quadrature: Quadrature | None = None,
) -> Estimate:
    """The likelihood-weighted score-matching error 1/2 int_{t_end}^T g^2 E_{p_t}||s - grad log p_t||^2 dt.

    J = 1/2 int_{t_end}^T g(t)^2 E_{X ~ p_t} || s(X, t) - grad_x log p_t(X) ||^2 dt,

    with p_t = `sde.noised_target(target, t)` and its exact score. The t-integral is
    composite Gauss-Legendre in log t (resolving the small times); the expectation uses the
    same n draws X_t = m(t) X_0 + s(t) Z at every node (X_0 ~ target, Z ~ N(0, I): exact
    draws of p_t), so each draw's integrand is smooth in t and its quadrature sum is one
    i.i.d. sample.

    Args:
        sde: the forward process.
        score_fn: (x: (d,), t: ()) -> (d,), the model score.
        target: p_0, a `Gaussian` or `MixtureOfGaussians`.
        key: PRNG key for the draws.
        method: `MonteCarlo(n)` for the x-expectation (default n = 10000).
        t_end: lower limit in (0, T).
        time_quadrature: `Quadrature(panels, order)` in log t (default 8 panels of order 8;
            `tail` is unused); the value uses 2 * panels.

    Returns:
        `Estimate` (nats); error = sqrt(SE^2 + Q^2), SE the Monte Carlo standard error and
        Q = |J(2 panels) - J(panels)| on the same draws (the quadrature's a-posteriori error).

    Reference: Song, Durkan, Murray & Ermon (2021), eq. (4) with lambda = g^2 and Thm. 1.
    """
    t_end = _check_sde(sde, t_end)
    if not isinstance(target, AbstractDensity) or not hasattr(target, "noised"):
        raise ValueError(f"target must be a Gaussian or MixtureOfGaussians, got {type(target).__name__}")
    check_key("key", key)
    method = MonteCarlo(n=10_000) if method is None else method
    if not isinstance(method, MonteCarlo):
        raise ValueError(f"method must be MonteCarlo(n), got {method!r}")
    quadrature = Quadrature(panels=8, order=8) if time_quadrature is None else time_quadrature
    if not isinstance(quadrature, Quadrature):
        raise ValueError(f"time_quadrature must be Quadrature(panels, order), got {quadrature!r}")
    key_data, key_noise = jax.random.split(key)
    with jax.enable_x64(True):
        target64 = to_float64(target)
        x0 = target64.sample(key_data, method.n)
        z = jax.random.normal(key_noise, x0.shape, jnp.float64)
        rules = [
            _log_time_nodes(t_end, sde.t_max, panels, quadrature.order)
            for panels in (quadrature.panels, 2 * quadrature.panels)
        ]
        ts = np.concatenate([t for t, _ in rules])
        weights = np.zeros((2, ts.size))
        weights[0, : rules[0][0].size] = rules[0][1]
        weights[1, rules[0][0].size :] = rules[1][1]
        totals = np.asarray(
            _weighted_squared_errors(sde, score_fn, target64, x0, z, jnp.asarray(ts), jnp.asarray(weights))
        )
    coarse, fine = monte_carlo_mean(totals[0], ""), monte_carlo_mean(totals[1], "")
    quadrature_error = abs(fine.value - coarse.value)
    return Estimate(
        fine.value, math.hypot(fine.error, quadrature_error),
        f"1/2 int g^2 E||s - grad log p_t||^2 dt on [{t_end:g}, {sde.t_max:g}]: Gauss-Legendre in log t "
        f"({2 * quadrature.panels} x {quadrature.order} nodes, error vs {quadrature.panels} panels "
        f"{quadrature_error:.2g}) x Monte Carlo (n={method.n}, common draws, SE {fine.error:.2g})",
    )


def score_error_kl_bound(
    sde: AbstractSDE, score_fn: ScoreFn, target: AbstractDensity, *, key: PRNGKeyArray,
    method: MonteCarlo | None = None, t_end: float = 1e-3, time_quadrature: Quadrature | None = None,
) -> Estimate:
    """The bound KL(p_{t_end} || q^SDE_{t_end}) <= KL(p_T || pi) + J on the reverse SDE's KL.

    KL(p_T || pi) + 1/2 int_{t_end}^T g(t)^2 E_{p_t} || s(X, t) - grad log p_t(X) ||^2 dt,

    where q^SDE is the law at t_end of the (exactly solved) reverse-time SDE with score s
    started at the prior pi = `sde.prior(d)` at T: Girsanov's theorem makes the right side
    the KL between the two path laws on [t_end, T], and marginalising can only decrease it.
    It does not bound the probability-flow ODE's KL.

    Args:
        sde, score_fn, target, key, method, t_end, time_quadrature: as in `score_error_integral`.

    Returns:
        `Estimate` (nats): KL(p_T || pi) by `theory.kl` (closed form for Gaussian data,
        quadrature in d <= 2, Monte Carlo otherwise) plus `score_error_integral`; errors add
        in quadrature (the two use independent keys).

    Reference: Song, Durkan, Murray & Ermon, "Maximum likelihood training of score-based
    diffusion models", NeurIPS 2021, Thm. 1.
    """
    t_end = _check_sde(sde, t_end)
    if not isinstance(target, AbstractDensity) or not hasattr(target, "noised"):
        raise ValueError(f"target must be a Gaussian or MixtureOfGaussians, got {type(target).__name__}")
    check_key("key", key)
    key_prior, key_integral = jax.random.split(key)
    prior_kl = kl(sde.noised_target(target, jnp.asarray(sde.t_max)), sde.prior(target.dim), key=key_prior)
    integral = score_error_integral(
        sde, score_fn, target, key=key_integral, method=method, t_end=t_end, time_quadrature=time_quadrature
    )
    return Estimate(
        prior_kl.value + integral.value, math.hypot(prior_kl.error, integral.error),
        f"KL(p_T || prior) [{prior_kl.method}] + {integral.method}",
    )
