"""Samplers as components: one interface, `sample(model, x_init, *, key, budget)`.

Which budgets to sweep, and what to call each sampler in a results table, belong to
the study that sweeps them (studies/reverse_diffusion.py), not here.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import diffrax
import equinox as eqx
from jaxtyping import PRNGKeyArray

from theory.ddpm import AbstractBetaSchedule
from theory.sde import AbstractSDE
from theory.validation import check_positive_number, check_probability, check_type

from ._brownian import AbstractBrownianMotion, UnsafeBrownianMotion
from ._budgets import AbstractBudget, Steps, Tolerance
from ._continuous import adaptive_probability_flow, drift_evaluations, probability_flow, reverse_sde
from ._discrete import ddim, ddpm_ancestral
from ._outputs import SamplerOutput


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

    @abc.abstractmethod
    def sample(self, model: DiffusionModel, x_init, *, key: PRNGKeyArray, budget: AbstractBudget) -> SamplerOutput:
        """Samples from x_init (prior draws, Float[Array, "n d"]) at one `budget`:
        `Steps(n)` for the fixed-step samplers, `Tolerance(rtol, atol)` for the adaptive one."""


def _steps(budget) -> int:
    return check_type("budget", budget, Steps).n


class _SolverSampler(AbstractDiffusionSampler):
    """A continuous-time sampler: a diffrax solver whose drift evaluations we can count,
    run from t = T down to t_end >= 0."""

    solver: eqx.AbstractVar[diffrax.AbstractSolver]
    t_end: eqx.AbstractVar[float]

    def __check_init__(self):
        drift_evaluations(self.solver)
        check_positive_number("t_end", self.t_end, allow_zero=True)


class ReverseSDESampler(_SolverSampler):
    """`reverse_sde` with a fixed-step diffrax solver, at a `Steps(n)` budget.

    Args:
        solver: `diffrax.Euler()` (Euler-Maruyama), `diffrax.ShARK()`, `diffrax.SRA1()`.
        brownian: `UnsafeBrownianMotion()` or `VirtualBrownianMotion()`.
        t_end: final time (Song et al.: 1e-3 for VP).
    """

    solver: diffrax.AbstractSolver = diffrax.Euler()
    brownian: AbstractBrownianMotion = UnsafeBrownianMotion()
    t_end: float = eqx.field(static=True, default=1e-3)

    def __check_init__(self):
        check_type("brownian", self.brownian, AbstractBrownianMotion)

    @property
    def evaluations_per_step(self) -> int:
        """Score evaluations per step of the solver."""
        return drift_evaluations(self.solver)[0]

    def sample(self, model, x_init, *, key, budget):
        return reverse_sde(
            model.sde, model.score_fn, x_init, key=key, n_steps=_steps(budget), t_end=self.t_end,
            solver=self.solver, brownian=self.brownian,
        )


class ProbabilityFlowSampler(_SolverSampler):
    """`probability_flow` with a fixed-step diffrax ODE solver, at a `Steps(n)` budget.

    Args:
        solver: `diffrax.Euler()`, `diffrax.Heun()`, ...
        t_end: final time.
    """

    solver: diffrax.AbstractSolver = diffrax.Heun()
    t_end: float = eqx.field(static=True, default=1e-3)

    @property
    def evaluations_per_step(self) -> int:
        """Score evaluations per step of the solver (an FSAL tableau adds one at the start)."""
        return drift_evaluations(self.solver)[0]

    def sample(self, model, x_init, *, key, budget):
        return probability_flow(
            model.sde, model.score_fn, x_init, n_steps=_steps(budget), t_end=self.t_end, solver=self.solver
        )


class AdaptiveProbabilityFlowSampler(_SolverSampler):
    """`adaptive_probability_flow`, at a `Tolerance(rtol, atol)` budget (the NFE is an
    outcome, not a choice).

    Args:
        solver: `diffrax.Tsit5()` or `diffrax.Dopri5()`.
        t_end: final time.
        max_steps: bound on accepted + rejected steps.
    """

    solver: diffrax.AbstractSolver = diffrax.Tsit5()
    t_end: float = eqx.field(static=True, default=1e-3)
    max_steps: int = eqx.field(static=True, default=4096)

    def sample(self, model, x_init, *, key, budget):
        budget = check_type("budget", budget, Tolerance)
        return adaptive_probability_flow(
            model.sde, model.score_fn, x_init, rtol=budget.rtol, atol=budget.atol, t_end=self.t_end,
            solver=self.solver, max_steps=self.max_steps,
        )


class DDPMSampler(AbstractDiffusionSampler):
    """`ddpm_ancestral` on the model's schedule, at a `Steps(S)` budget, S <= T."""

    @property
    def evaluations_per_step(self) -> int:
        """One epsilon evaluation per step of the chain."""
        return 1

    def sample(self, model, x_init, *, key, budget):
        return ddpm_ancestral(model.schedule, model.epsilon_fn, x_init, key=key, n_steps=_steps(budget))


class DDIMSampler(AbstractDiffusionSampler):
    """`ddim` on the model's schedule, at a `Steps(S)` budget, S <= T.

    Args:
        eta: stochasticity in [0, 1] (0: deterministic DDIM).
    """

    eta: float = eqx.field(static=True, default=0.0)

    def __check_init__(self):
        check_probability("eta", self.eta)

    @property
    def evaluations_per_step(self) -> int:
        """One epsilon evaluation per step of the chain."""
        return 1

    def sample(self, model, x_init, *, key, budget):
        return ddim(model.schedule, model.epsilon_fn, x_init, n_steps=_steps(budget), eta=self.eta, key=key)
