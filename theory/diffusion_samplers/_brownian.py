"""How the reverse SDE's Brownian motion is simulated, as a component."""

from __future__ import annotations

import abc

import diffrax
import equinox as eqx
import jax
from jaxtyping import PRNGKeyArray

from theory.validation import check_bool, check_in_interval

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
        check_in_interval("tol_fraction", self.tol_fraction, 0.0, 1.0, include_high=True)
        check_bool("space_time_levy_area", self.space_time_levy_area)

    def path(self, *, t0, t1, dt, shape, dtype, key, levy_area):
        if self.space_time_levy_area and levy_area is diffrax.BrownianIncrement:
            levy_area = diffrax.SpaceTimeLevyArea
        return diffrax.VirtualBrownianTree(
            t0, t1, tol=self.tol_fraction * dt, shape=jax.ShapeDtypeStruct(shape, dtype), key=key, levy_area=levy_area
        )
