"""Computational budgets of a sampler, as typed objects.

A fixed-step solver is given a number of steps, an adaptive one a tolerance; the two
are different kinds of thing, so they are different types (`Steps(50)`,
`Tolerance(1e-3)`) and a sampler rejects the kind it cannot use, instead of reading a
float as a step count or as a tolerance depending on its class.
"""

from __future__ import annotations

import equinox as eqx

from theory.validation import check_count, check_positive_number


class AbstractBudget(eqx.Module):
    """How much computation a sampler may spend on each draw."""


class Steps(AbstractBudget):
    """A fixed number of solver steps (of the SDE or ODE solver, or of the DDPM/DDIM chain).

    Args:
        n: the number of steps, an integer >= 1.
    """

    n: int = eqx.field(static=True)

    def __check_init__(self):
        check_count("n", self.n)


class Tolerance(AbstractBudget):
    """The tolerances of an adaptive step-size controller; the NFE is an outcome.

    A step is accepted when its local error estimate e satisfies
    |e_i| <= atol + rtol |y_i| for every coordinate (Hairer, Norsett & Wanner,
    Solving ODEs I, Sec. II.4, eq. (4.10)).

    Args:
        rtol: relative tolerance > 0.
        atol: absolute tolerance > 0; defaults to rtol (Song et al. 2021 used
            rtol = atol = 1e-5).
    """

    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)

    def __init__(self, rtol: float, atol: float | None = None):
        self.rtol = check_positive_number("rtol", rtol)
        self.atol = self.rtol if atol is None else check_positive_number("atol", atol)
