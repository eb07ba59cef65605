"""Noise schedules of annealed Langevin dynamics: decreasing levels sigma_1 > ... > sigma_L.

Fields are keyword-only (`GeometricSchedule(sigma_max=20.0, sigma_min=1.0, n_levels=10)`):
three floats in a row are too easy to give in the wrong order.
"""

from __future__ import annotations

import abc
import dataclasses

import equinox as eqx
import numpy as np

from theory.validation import check_count, check_positive_number


class AbstractNoiseSchedule(eqx.Module):
    """A decreasing sequence of noise levels sigma_1 > ... > sigma_L > 0.

    Fields are static Python numbers, so a schedule is hashable and can sit in a
    study's config (`schedule=GeometricSchedule(sigma_max=20.0, sigma_min=1.0, n_levels=10)`); they
    are keyword-only.
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
        check_positive_number("sigma_max", self.sigma_max)
        check_positive_number("sigma_min", self.sigma_min)
        check_count("n_levels", self.n_levels)
        if not self.sigma_min < self.sigma_max:
            raise ValueError(
                f"sigma_min must be < sigma_max, got sigma_min={self.sigma_min!r}, "
                f"sigma_max={self.sigma_max!r}"
            )


class _EndPointSchedule(AbstractNoiseSchedule):
    """L levels spaced from sigma_max down to sigma_min by `_spaced`; one level is sigma_min."""

    sigma_max: float = eqx.field(static=True, kw_only=True)
    sigma_min: float = eqx.field(static=True, kw_only=True)
    n_levels: int = eqx.field(static=True, kw_only=True)

    def __check_init__(self):
        self._check()

    @abc.abstractmethod
    def _spaced(self) -> np.ndarray:
        """The n_levels >= 2 levels from sigma_max to sigma_min, float64."""

    def sigmas(self) -> np.ndarray:
        if self.n_levels == 1:
            return np.array([self.sigma_min], np.float64)
        return self._spaced()


class GeometricSchedule(_EndPointSchedule):
    """Geometric levels, the NCSN choice.

    sigma_i = sigma_max * (sigma_min / sigma_max)^((i - 1) / (L - 1)), i = 1..L.

    Args:
        sigma_max: sigma_1, > sigma_min.
        sigma_min: sigma_L, > 0.
        n_levels: L >= 1.

    Reference: Song & Ermon (2019), Section 4.2 ({sigma_i} a geometric sequence);
    ermongroup/ncsn runners/toy_runner.py (np.exp(np.linspace(np.log(20), 0., 10))).
    """

    def _spaced(self) -> np.ndarray:
        return np.geomspace(self.sigma_max, self.sigma_min, self.n_levels, dtype=np.float64)


class LinearSchedule(_EndPointSchedule):
    """Evenly spaced levels.

    sigma_i = sigma_max + (i - 1) / (L - 1) * (sigma_min - sigma_max), i = 1..L.

    Args:
        sigma_max: sigma_1, > sigma_min.
        sigma_min: sigma_L, > 0.
        n_levels: L >= 1.
    """

    def _spaced(self) -> np.ndarray:
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
    step_size = check_positive_number("step_size", step_size)
    sigmas = schedule.sigmas()
    return step_size * sigmas**2 / sigmas[-1] ** 2
