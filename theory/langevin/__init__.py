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

from theory.estimate import Proportion as Proportion, binomial_proportion as binomial_proportion

from ._gaussian import ula_gaussian_variance as ula_gaussian_variance, ula_stability_ratio as ula_stability_ratio
from ._modes import mode_occupancy as mode_occupancy, occupancy_kl as occupancy_kl, separatrix_point as separatrix_point
from ._noise_families import (
    AbstractNoiseFamily as AbstractNoiseFamily,
    ConvolvedMeans as ConvolvedMeans,
    ConvolvedTarget as ConvolvedTarget,
    ExactNoiseConditionalScore as ExactNoiseConditionalScore,
    ExactScore as ExactScore,
)
from ._samplers import LangevinChains as LangevinChains, annealed_langevin as annealed_langevin, langevin as langevin
from ._schedules import (
    AbstractNoiseSchedule as AbstractNoiseSchedule,
    GeometricSchedule as GeometricSchedule,
    LinearSchedule as LinearSchedule,
    annealed_step_sizes as annealed_step_sizes,
)

__all__ = [
    # noise schedules
    "AbstractNoiseSchedule",
    "GeometricSchedule",
    "LinearSchedule",
    "annealed_step_sizes",
    # exact noise-conditional families and scores
    "AbstractNoiseFamily",
    "ConvolvedMeans",
    "ConvolvedTarget",
    "ExactNoiseConditionalScore",
    "ExactScore",
    # samplers
    "LangevinChains",
    "annealed_langevin",
    "langevin",
    # ULA on a Gaussian
    "ula_gaussian_variance",
    "ula_stability_ratio",
    # mode diagnostics
    "Proportion",
    "binomial_proportion",
    "mode_occupancy",
    "occupancy_kl",
    "separatrix_point",
]
