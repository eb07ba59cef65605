"""Plain vs annealed Langevin on two separated modes, with exact and learned scores.

Reproduces, as numbers, Figure 3 of Song & Ermon (2019): on the target
0.8 N((5, 5), I) + 0.2 N((-5, -5), I), Langevin dynamics with the EXACT score leaves
each chain in the basin it started in, so the mode weights it reports are those of the
initial law (about 0.5 / 0.5 from a uniform start), while annealed Langevin, which
starts at noise levels where the modes overlap, recovers 0.8 / 0.2. It then measures
how this depends on the step size, the number of levels L, the steps per level T, the
plain chain length, the number of chains and the initial law, and what a score network
trained by denoising score matching changes (its Fisher divergence at every level and
the weights its annealed sampler reports).

Measured, per sampler (exact i.i.d. draws, plain, annealed, learned-score annealed),
seed and step: the weight of each mode with a Clopper-Pearson interval over that seed's
chains, the KL of the mode-occupancy histogram to the true weights (bootstrap error,
floor (K - 1) / 2n), and the exact W1 to fresh target draws next to the W1 sampling
floor. Protocol: shared/reference/protocols.md, "Plain vs annealed Langevin".

Statistics. The chains of an exact-score sampler are i.i.d. draws of one fixed sampler
(independent initial points and noise), so its headline weight pools every chain of
every seed (Clopper-Pearson). A learned score is one network per seed: its headline
weight is one proportion per seed with a t-interval over seeds, which covers the
between-network variation. Differences (learned minus exact annealed, annealed minus
plain) are paired by seed: within a seed every sampler starts from the same points and
is driven by the same noise.

Cells and keys. A cell is one swept value (all seeds vmapped inside it); its keys come
from its coordinates only (kit.Keys: seed, initial law, chain count, ...), so removing
a value from a sweep leaves every other cell bit-identical, and a sweep value equal to
the baseline's reproduces the baseline's numbers. Every seed's score network is trained
in one program vmapped over the seeds (split over `--devices`) and saved as one kit
artifact (score_networks.eqx, verified on load); each seed's network is its own artifact
sliced from it; a diverged training (or non-finite samples) saves the cells that need that
seed's network as diverged and the sweep goes on.

    python -m studies.langevin_mixing                       # quick preset (the README figure)
    python -m studies.langevin_mixing --preset ncsn-code    # the public code's full sweeps
    python -m figures.langevin_mixing results/langevin_mixing/quick
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

import theory
from models.score_network import DSMTraining, ScoreMLPSpec, score_at_level, train_dsm_replicas
from models.sharding import mesh_for
from models.training import AdamSpec, all_finite
from studies import kit
from studies.kit import config_field
from theory.langevin import (
    AbstractNoiseFamily,
    AbstractNoiseSchedule,
    ConvolvedMeans,
    ConvolvedTarget,
    ExactNoiseConditionalScore,
    ExactScore,
    GeometricSchedule,
    LinearSchedule,
    annealed_langevin,
    langevin,
    mode_occupancy,
    occupancy_kl,
    separatrix_point,
    ula_stability_ratio,
)
from theory.validation import check_count, check_number, check_positive_number, check_type

__all__ = [
    "AbstractInitialLaw",
    "Config",
    "IsotropicGaussianStart",
    "PRESETS",
    "PointStart",
    "TargetStart",
    "TrainedScore",
    "UniformBox",
    "cells",
    "main",
    "parse_initial_laws",
    "parse_training",
    "run",
    "summary",
]

DIM = 2
HEAVY_MODE = 0
"""Index of the mode (5, 5) of `theory.ncsn_two_modes()`, weight 0.8."""

MAX_RECORDS = 10_000
"""Recorded steps per sampler and cell at most (each gives 2 rows per seed and mode)."""
MAX_RECORDED_BYTES = 2 * 2**30
"""The baseline keeps (seeds, records, chains, 2) float32 points in memory: at most 2 GiB."""
MAX_SAMPLER_STEPS = 10**6
"""Langevin steps of one sampler run at most (a scan of 10^6 steps is minutes on a CPU)."""
SIGMA_RANGE = (1e-4, 1e4)
"""Noise levels are kept in this range so that sigma^2, 1 / sigma^2 and the annealed
step sizes eps sigma_1^2 / sigma_L^2 (up to 1e16 eps) stay far inside float32."""


# --------------------------------------------------------------------------------------
# Initial laws (the chains' starting points), as config objects.


class AbstractInitialLaw(eqx.Module):
    """Where the chains start: `sample(key, n, target)` returns (n, 2) points."""

    @abc.abstractmethod
    def sample(self, key, n: int, target) -> jax.Array:
        """n starting points, shape (n, 2)."""

    @abc.abstractmethod
    def label(self) -> str:
        """A short human-readable name, used in tables, figures and key coordinates."""


class UniformBox(AbstractInitialLaw):
    """Uniform on the square [low, high]^2 (the NCSN code: [-8, 8]^2)."""

    low: float = eqx.field(static=True, default=-8.0)
    high: float = eqx.field(static=True, default=8.0)

    def __check_init__(self):
        for name in ("low", "high"):
            value = check_number(name, getattr(self, name))
            if abs(value) > 1e6:
                raise ValueError(f"uniform box {name} must be in [-1e6, 1e6], got {value!r}")
        if not self.low < self.high:
            raise ValueError(f"uniform box needs low < high, got low={self.low!r}, high={self.high!r}")

    def sample(self, key, n, target):
        return jax.random.uniform(key, (n, DIM), target.means.dtype, self.low, self.high)

    def label(self):
        return f"uniform[{self.low:g},{self.high:g}]^2"


class PointStart(AbstractInitialLaw):
    """Every chain starts at one point."""

    point: tuple[float, float] = eqx.field(static=True, default=(0.0, 0.0))

    def __check_init__(self):
        if not isinstance(self.point, tuple) or len(self.point) != DIM:
            raise ValueError(f"point must be {DIM} numbers, got {self.point!r}")
        for value in self.point:
            if abs(check_number("point", value)) > 1e6:
                raise ValueError(f"point coordinates must be in [-1e6, 1e6], got {self.point!r}")

    def sample(self, key, n, target):
        return jnp.broadcast_to(jnp.asarray(self.point, target.means.dtype), (n, DIM))

    def label(self):
        return "point(" + ",".join(f"{v:g}" for v in self.point) + ")"


class IsotropicGaussianStart(AbstractInitialLaw):
    """N(0, std^2 I): with std = sigma_1 this is the annealed sampler's natural prior."""

    std: float = eqx.field(static=True, default=20.0)

    def __check_init__(self):
        if check_positive_number("std", self.std) > 1e6:
            raise ValueError(f"std must be <= 1e6, got {self.std!r}")

    def sample(self, key, n, target):
        return self.std * jax.random.normal(key, (n, DIM), target.means.dtype)

    def label(self):
        return f"N(0,{self.std:g}^2 I)"


class TargetStart(AbstractInitialLaw):
    """Exact draws from the target: a sampler that preserves the target keeps 0.8 / 0.2."""

    def sample(self, key, n, target):
        return target.sample(key, n)

    def label(self):
        return "target"


# --------------------------------------------------------------------------------------
# Command-line parsers (the edge where text becomes objects).


def _numbers(text: str, count: int) -> tuple[float, ...]:
    try:
        values = tuple(float(item) for item in text.split(",") if item.strip())
    except ValueError:
        raise ValueError(f"expected {count} comma-separated numbers, got {text!r}") from None
    if len(values) != count:
        raise ValueError(f"expected {count} comma-separated numbers, got {text!r}")
    return values


def parse_initial_law(text: str) -> AbstractInitialLaw:
    """'uniform:-8,8', 'point:-5,-5', 'gaussian:20' or 'target'."""
    kind, _, rest = text.strip().partition(":")
    if kind == "uniform":
        return UniformBox(*_numbers(rest, 2))
    if kind == "point":
        return PointStart(_numbers(rest, DIM))
    if kind == "gaussian":
        return IsotropicGaussianStart(*_numbers(rest, 1))
    if kind == "target" and not rest:
        return TargetStart()
    raise ValueError(f"use uniform:LOW,HIGH, point:X,Y, gaussian:STD or target, got {text!r}")


def initial_law_text(law: AbstractInitialLaw) -> str:
    """The command-line spelling of an initial law (the inverse of `parse_initial_law`)."""
    if isinstance(law, UniformBox):
        return f"uniform:{law.low:g},{law.high:g}"
    if isinstance(law, PointStart):
        return "point:" + ",".join(f"{v:g}" for v in law.point)
    if isinstance(law, IsotropicGaussianStart):
        return f"gaussian:{law.std:g}"
    return "target"


def parse_initial_laws(text: str) -> tuple[AbstractInitialLaw, ...] | None:
    """Semicolon-separated initial laws, e.g. 'uniform:-8,8;point:0,0;target'; 'none': no sweep.

    Raises:
        ValueError: for an unknown law or a law given twice.
    """
    if text.strip().lower() == "none":
        return None
    laws = tuple(parse_initial_law(item) for item in text.split(";") if item.strip())
    labels = [law.label() for law in laws]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ValueError(f"initial laws must not repeat, got {repeated} more than once in {text!r}")
    return laws


def parse_schedule(text: str) -> AbstractNoiseSchedule:
    """'geometric:SIGMA_MAX,SIGMA_MIN,L' or 'linear:SIGMA_MAX,SIGMA_MIN,L'."""
    kind, _, rest = text.strip().partition(":")
    schedules = {"geometric": GeometricSchedule, "linear": LinearSchedule}
    if kind not in schedules:
        raise ValueError(f"use geometric:SIGMA_MAX,SIGMA_MIN,L or linear:SIGMA_MAX,SIGMA_MIN,L, got {text!r}")
    sigma_max, sigma_min, n_levels = _numbers(rest, 3)
    if n_levels != int(n_levels):
        raise ValueError(f"L must be an integer, got {n_levels}")
    return schedules[kind](sigma_max=sigma_max, sigma_min=sigma_min, n_levels=int(n_levels))


def parse_network(text: str) -> ScoreMLPSpec:
    """'WIDTH,HIDDEN_LAYERS,DATA_SCALE', e.g. '128,2,5'."""
    width, layers, scale = _numbers(text, 3)
    if width != int(width) or layers != int(layers):
        raise ValueError(f"width and hidden layers must be integers, got {text!r}")
    return ScoreMLPSpec(int(width), int(layers), scale)


def parse_point(text: str) -> tuple[float, float] | None:
    """'X,Y' or 'none'."""
    if text.strip().lower() == "none":
        return None
    return _numbers(text, DIM)


DEFAULT_TRAINING = DSMTraining(optimiser=AdamSpec(1e-3), steps=10_000, batch_size=128, record_every=100)
"""The quick preset's score-network training (the NCSN toy runner's settings)."""


TRAINING_OVERRIDES = kit.Overrides(
    keys={"lr": "optimiser.learning_rate", "b1": "optimiser.b1", "b2": "optimiser.b2", "steps": "steps",
          "batch-size": "batch_size", "record-every": "record_every", "ema": "ema", "clip-norm": "optimiser.clip_norm"},
    convert={"ema": kit.parse_ema},
    spell={"ema": kit.ema_text},
)
"""``--training lr=1e-3,steps=10000,...``: changes of the chosen preset's DSMTraining."""


def parse_training(text: str, base: DSMTraining | None = None) -> DSMTraining:
    """'lr=1e-3,steps=10000,batch-size=128,record-every=100[,b1=..,b2=..,ema=DECAY|none,clip-norm=C|none]'.

    Keys not given keep `base`'s values (default: the quick preset's training, the NCSN
    toy runner's: Adam lr 1e-3, b1 0.9, b2 0.999, 10,000 steps, batch 128, loss averaged
    over 100 steps, no EMA); on the command line, the chosen preset's.
    """
    return TRAINING_OVERRIDES.apply(DEFAULT_TRAINING if base is None else base, text)


NOISE_FAMILIES = {"component-std": ConvolvedMeans(), "convolution": ConvolvedTarget()}


# --------------------------------------------------------------------------------------
# Config.


@dataclasses.dataclass(frozen=True)
class Config:
    """One run of the Langevin mixing study (target: 0.8 N((5,5), I) + 0.2 N((-5,-5), I))."""

    noise_family: AbstractNoiseFamily = config_field(
        ConvolvedMeans(),
        "law at level sigma: component-std (NCSN code: each component N(m_k, sigma^2 I)) or "
        "convolution (paper: target * N(0, sigma^2 I))",
        parse=NOISE_FAMILIES,
    )
    schedule: AbstractNoiseSchedule = config_field(
        GeometricSchedule(sigma_max=20.0, sigma_min=1.0, n_levels=10),
        "annealing levels, geometric:SIGMA_MAX,SIGMA_MIN,L or linear:SIGMA_MAX,SIGMA_MIN,L "
        "(sigmas in [1e-4, 1e4], L in [1, 1000], L * steps_per_level <= 1e5)",
        parse=parse_schedule,
        show=lambda s: f"{'geometric' if isinstance(s, GeometricSchedule) else 'linear'}:{s.sigma_max:g},{s.sigma_min:g},{s.n_levels}",
    )
    steps_per_level: int = config_field(100, "annealed Langevin steps T at each level", low=1, high=10**5)
    annealed_step_size: float = config_field(
        0.1, "eps: annealed step alpha_i = eps * sigma_i^2 / sigma_L^2 (must keep ULA stable at every level)",
        low=0.0, open_low=True)
    langevin_step_size: float = config_field(
        0.1, "alpha of plain Langevin, exact target score (stable: alpha < 4 s^2 = 4)", low=0.0, open_low=True)
    langevin_steps: int = config_field(1000, "plain Langevin steps K (1000 = the annealed budget L * T)",
                                       low=1, high=10**5)
    n_chains: int = config_field(1280, "chains per sampler and seed", low=1, high=10**6)
    initial_law: AbstractInitialLaw = config_field(
        UniformBox(-8.0, 8.0),
        "where chains start: uniform:LOW,HIGH | point:X,Y | gaussian:STD | target",
        parse=parse_initial_law,
        show=initial_law_text,
    )
    n_seeds: int = config_field(5, "independent replicates (seeds 0..n-1; each trains its own network)",
                                low=1, high=64)
    seed: int = config_field(0, "root PRNG seed (kit.Keys)")
    record_every: int = config_field(50, "record the baseline chains every this many steps (metrics vs steps)",
                                     low=1, high=10**5)
    w1_every: int = config_field(100, "W1 and histogram KL at baseline steps that are multiples of this",
                                 low=1, high=10**5)
    w1_max_points: int = config_field(2560, "W1 uses at most this many chains (exact OT, m x m float64 costs)",
                                      low=2, high=20_000)
    floor_repeats: int = config_field(5, "independent exact-sample pairs averaged in the W1 sampling floor",
                                      low=2, high=1000)
    confidence: float = config_field(0.95, "confidence level of every interval", low=0.5, high=0.9999)
    n_bootstrap: int = config_field(1000, "bootstrap resamples for the error of the histogram KL", low=2, high=10**5)
    learned: bool = config_field(True, "also train a score network per seed and run annealed Langevin with it")
    network: ScoreMLPSpec = config_field(
        ScoreMLPSpec(128, 2, 5.0),
        "noise-conditional MLP as WIDTH,HIDDEN_LAYERS,DATA_SCALE (softplus, output / sigma; "
        "width <= 4096, hidden layers <= 32)",
        parse=parse_network,
        show=lambda n: f"{n.width},{n.hidden_layers},{n.data_scale:g}",
    )
    training: DSMTraining = config_field(
        DEFAULT_TRAINING,
        "denoising score matching as KEY=VALUE changes of the preset's: lr, b1, b2, steps, batch-size, "
        "record-every (divides steps), ema (DECAY|none), clip-norm (C|none)",
        parse=TRAINING_OVERRIDES,
        within=kit.TRAINING_LIMITS,
    )
    fisher_samples: int = config_field(10_000, "draws per level for the learned score's Fisher divergence",
                                       low=1, high=10**7)
    trajectory_chains: int = config_field(64, "chains started at one point for the trajectory figure",
                                          low=1, high=10**5)
    trajectory_start: tuple[float, float] | None = config_field(
        None, "start X,Y of the trajectory chains (|X|, |Y| <= 1e6); none = the point between the modes "
        "where their responsibilities are equal",
        parse=parse_point,
    )
    sweep_langevin_step_sizes: tuple[float, ...] | None = config_field(
        (0.01, 0.03, 0.1, 0.3, 1.0), "plain-Langevin alphas swept (none: no sweep)", low=0.0, open_low=True
    )
    sweep_annealed_step_sizes: tuple[float, ...] | None = config_field(
        (0.01, 0.03, 0.1, 0.3, 1.0), "annealed eps values swept (none: no sweep)", low=0.0, open_low=True
    )
    sweep_n_levels: tuple[int, ...] | None = config_field(
        (1, 2, 3, 5, 10, 20), "numbers of levels L swept, same end points (none: no sweep)", low=1, high=1000)
    sweep_steps_per_level: tuple[int, ...] | None = config_field(
        (1, 3, 10, 30, 100, 300), "steps per level T swept (none: no sweep)", low=1, high=10**5)
    sweep_langevin_steps: tuple[int, ...] | None = config_field(
        (1000, 10_000, 100_000), "plain chain lengths K swept, each run from the start (none: no sweep)",
        low=1, high=MAX_SAMPLER_STEPS)
    sweep_n_chains: tuple[int, ...] | None = config_field(
        (80, 320, 1280, 5120), "chain counts swept (none: no sweep)", low=1, high=10**6)
    sweep_initial_laws: tuple[AbstractInitialLaw, ...] | None = config_field(
        (UniformBox(-8.0, 8.0), PointStart((0.0, 0.0)), PointStart((-5.0, -5.0)), IsotropicGaussianStart(20.0),
         TargetStart()),
        "initial laws swept, ';'-separated, no repeats (e.g. uniform:-8,8;point:-5,-5;target; none: no sweep)",
        parse=parse_initial_laws,
        show=lambda laws: "none" if laws is None else ";".join(map(initial_law_text, laws)),
    )
    draw_figures: bool = config_field(True, "draw the figures at the end (python -m figures.langevin_mixing redraws them)")

    def __post_init__(self):
        kit.check_fields(self)
        _check_components(self)
        _check_budgets(self)
        _check_stability(self)

    def seeds(self) -> tuple[int, ...]:
        return tuple(range(self.n_seeds))


def _check_components(config: Config) -> None:
    """The component objects' own bounds, which kit.check_fields does not look into."""
    schedule = config.schedule
    low, high = SIGMA_RANGE
    for name in ("sigma_max", "sigma_min"):
        value = getattr(schedule, name)
        if not low <= value <= high:
            raise ValueError(f"schedule {name} must be in [{low:g}, {high:g}], got {value!r}")
    check_count("schedule n_levels", schedule.n_levels, maximum=1000)
    check_count("network width", config.network.width, maximum=4096)
    check_count("network hidden_layers", config.network.hidden_layers, maximum=32)
    if not config.network.data_scale <= 1e6:
        raise ValueError(f"network data_scale must be <= 1e6, got {config.network.data_scale!r}")
    training = check_type("training", config.training, DSMTraining)
    check_type("training optimiser", training.optimiser, AdamSpec)
    if config.trajectory_start is not None:
        if not (isinstance(config.trajectory_start, tuple) and len(config.trajectory_start) == DIM):
            raise ValueError(f"trajectory_start must be {DIM} numbers or none, got {config.trajectory_start!r}")
        for value in config.trajectory_start:
            if not (math.isfinite(check_number("trajectory_start", value)) and abs(value) <= 1e6):
                raise ValueError(f"trajectory_start must hold finite numbers in [-1e6, 1e6], "
                                 f"got {config.trajectory_start!r}")


def _check_budgets(config: Config) -> None:
    """Steps, records and memory bounded before any compute."""
    annealed_steps = config.schedule.n_levels * config.steps_per_level
    if annealed_steps > 10**5:
        raise ValueError(f"n_levels * steps_per_level must be <= 100000 (the baseline trajectory records every "
                         f"step), got {config.schedule.n_levels} * {config.steps_per_level} = {annealed_steps}")
    for name, total in (("langevin_steps", config.langevin_steps), ("n_levels * steps_per_level", annealed_steps)):
        if total % config.record_every:
            raise ValueError(f"record_every must divide {name}={total}, got {config.record_every}")
        if total // config.record_every > MAX_RECORDS:
            raise ValueError(f"{name} / record_every must be <= {MAX_RECORDS} recorded steps, "
                             f"got {total} / {config.record_every}")
    if config.w1_every % config.record_every:
        raise ValueError(f"w1_every must be a multiple of record_every={config.record_every}, got {config.w1_every}")
    records = max(config.langevin_steps, annealed_steps) // config.record_every + 1
    recorded = config.n_seeds * records * config.n_chains * DIM * 4
    if recorded > MAX_RECORDED_BYTES:
        raise ValueError(f"n_seeds * records * n_chains * 2 float32 = {recorded / 2**30:.1f} GiB of recorded "
                         f"chains exceeds {MAX_RECORDED_BYTES / 2**30:g} GiB; raise record_every or lower n_chains")
    for n_levels in config.sweep_n_levels or ():
        if n_levels * config.steps_per_level > MAX_SAMPLER_STEPS:
            raise ValueError(f"sweep_n_levels value {n_levels} times steps_per_level={config.steps_per_level} "
                             f"exceeds {MAX_SAMPLER_STEPS} steps")
    for t in config.sweep_steps_per_level or ():
        if config.schedule.n_levels * t > MAX_SAMPLER_STEPS:
            raise ValueError(f"sweep_steps_per_level value {t} times n_levels={config.schedule.n_levels} "
                             f"exceeds {MAX_SAMPLER_STEPS} steps")


TARGET_COMPONENT_VARIANCE = 1.0
"""Each component of `theory.ncsn_two_modes()` is N(m_k, I) (checked by a test); kept as a
number so that validating a config needs no JAX computation."""


def _check_stability(config: Config) -> None:
    """ULA diverges when alpha / (2 s^2) >= 2 for the smallest component variance s^2
    (`theory.langevin.ula_stability_ratio`): reject such step sizes up front."""
    s2 = TARGET_COMPONENT_VARIANCE
    for name, alphas in (("langevin_step_size", [config.langevin_step_size]),
                         ("sweep_langevin_step_sizes", config.sweep_langevin_step_sizes or ())):
        for alpha in alphas:
            ratio = float(ula_stability_ratio(alpha, s2))
            if ratio >= 2:
                raise ValueError(f"{name}={alpha} makes plain Langevin diverge: alpha / (2 s^2) = {ratio:.3g} >= 2 "
                                 f"(s^2 = {s2:g}); use alpha < {4 * s2:g}")

    def worst(schedule: AbstractNoiseSchedule) -> tuple[int, float, np.ndarray]:
        sigmas = schedule.sigmas()
        per_eps = (sigmas**2 / sigmas[-1] ** 2) / (2 * config.noise_family.smallest_variance(s2, sigmas))
        level = int(np.argmax(per_eps))
        return level, float(per_eps[level]), sigmas

    level, per_eps, sigmas = worst(config.schedule)
    for name, epsilons in (("annealed_step_size", [config.annealed_step_size]),
                           ("sweep_annealed_step_sizes", config.sweep_annealed_step_sizes or ())):
        for eps in epsilons:
            if eps * per_eps >= 2:
                raise ValueError(
                    f"{name}={eps} makes annealed Langevin diverge at level {level + 1} "
                    f"(sigma={sigmas[level]:.4g}): alpha_i / (2 s_i^2) = {eps * per_eps:.3g} >= 2; "
                    f"use eps < {2 / per_eps:.4g} with this schedule and noise family")
    for n_levels in config.sweep_n_levels or ():
        _, ratio, _ = worst(config.schedule.with_levels(n_levels))
        if config.annealed_step_size * ratio >= 2:
            raise ValueError(f"sweep_n_levels value {n_levels} makes annealed Langevin diverge with "
                             f"annealed_step_size={config.annealed_step_size}: alpha_i / (2 s_i^2) = "
                             f"{config.annealed_step_size * ratio:.3g} >= 2")


PRESETS: dict[str, Config] = {
    # The README figure in a few minutes on 2 CPU cores: the ncsn-code protocol, 3 seeds
    # (each trains its own network, 10,000 steps; three so that the interval over
    # networks has 2 degrees of freedom), shorter sweeps.
    "quick": Config(
        n_seeds=3,
        w1_every=250,
        w1_max_points=1280,
        n_bootstrap=500,
        fisher_samples=5000,
        sweep_langevin_step_sizes=(0.01, 0.1, 1.0),
        sweep_annealed_step_sizes=(0.01, 0.1, 1.0),
        sweep_n_levels=(1, 3, 10),
        sweep_steps_per_level=(3, 30, 100),
        sweep_langevin_steps=(1000, 10_000),
        sweep_n_chains=(320, 1280),
        sweep_initial_laws=(UniformBox(-8.0, 8.0), PointStart((-5.0, -5.0)), TargetStart()),
    ),
    # The public code (ermongroup/ncsn toy_runner.py): sigma 20 -> 1, component std = sigma,
    # eps = 0.1 (so alpha_i / (2 sigma_i^2) = 0.05 at every level), 1,280 chains; full sweeps.
    "ncsn-code": Config(),
    # The paper's text: sigma 10 -> 0.1 and the exact perturbed scores of p * N(0, sigma^2).
    # eps = 0.1 diverges there (alpha_1 / (2 (1 + sigma_1^2)) = 4.95 >= 2; the largest
    # stable eps is 0.0404); the paper does not state the toy's eps. We take eps = 0.005,
    # the largest value keeping alpha_1 / (2 s_1^2) <= 1/4 (well inside the stable range).
    "ncsn-paper": Config(
        noise_family=ConvolvedTarget(),
        schedule=GeometricSchedule(sigma_max=10.0, sigma_min=0.1, n_levels=10),
        annealed_step_size=0.005,
        sweep_annealed_step_sizes=(0.001, 0.002, 0.005, 0.01, 0.02, 0.04),
    ),
    # Seconds: for tests and a first look.
    "smoke": Config(
        schedule=GeometricSchedule(sigma_max=20.0, sigma_min=1.0, n_levels=3),
        steps_per_level=10,
        langevin_steps=30,
        n_chains=48,
        n_seeds=2,
        record_every=10,
        w1_every=30,
        floor_repeats=2,
        n_bootstrap=20,
        network=ScoreMLPSpec(8, 1, 5.0),
        training=DSMTraining(optimiser=AdamSpec(1e-3), steps=40, batch_size=32, record_every=20),
        fisher_samples=100,
        trajectory_chains=4,
        sweep_langevin_step_sizes=(0.1, 0.3),
        sweep_annealed_step_sizes=(0.1,),
        sweep_n_levels=(1,),
        sweep_steps_per_level=(5,),
        sweep_langevin_steps=(30, 60),
        sweep_n_chains=(16,),
        sweep_initial_laws=(TargetStart(),),
        draw_figures=False,
    ),
}


# --------------------------------------------------------------------------------------
# Results.


class TrainedScore(eqx.Module):
    """A trained score network with its loss history (the artifact of one seed)."""

    model: eqx.Module
    steps: jax.Array
    losses: jax.Array


# --------------------------------------------------------------------------------------
# Batched samplers: vmapped over seeds only (never over swept values).


@eqx.filter_jit
def _plain(score, x0s, keys, step_size, n_steps: int, record_every: int):
    """Plain Langevin for every seed: leaves have a leading axis (S,)."""
    step_size = jnp.asarray(step_size, x0s.dtype)  # traced: one compilation for every alpha
    return jax.vmap(lambda x0, key: langevin(score, x0, key=key, step_size=step_size, n_steps=n_steps,
                                             record_every=record_every))(x0s, keys)


@eqx.filter_jit
def _annealed(score, x0s, keys, step_size, schedule, steps_per_level: int, record_every: int):
    """Annealed Langevin for every seed: leaves have a leading axis (S,)."""
    step_size = jnp.asarray(step_size, x0s.dtype)  # traced: one compilation for every eps
    return jax.vmap(lambda x0, key: annealed_langevin(score, x0, key=key, schedule=schedule, step_size=step_size,
                                                      steps_per_level=steps_per_level,
                                                      record_every=record_every))(x0s, keys)


class _Sampling:
    """The key streams and reference quantities of one run, from coordinates only."""

    def __init__(self, config: Config):
        self.config = config
        self.keys = kit.Keys(config.seed)
        self.target = theory.ncsn_two_modes()
        self.weights = np.asarray(self.target.weights, np.float64)

    def starts(self, seeds, law: AbstractInitialLaw, n: int) -> jax.Array:
        """(S, n, 2) starting points; every sampler of a seed starts from the same points."""
        return jnp.stack([law.sample(self.keys("init", seed=s, initial_law=law.label(), n_chains=n), n, self.target)
                          for s in seeds])

    def noise(self, seeds, law: AbstractInitialLaw, n: int) -> jax.Array:
        """(S,) noise keys shared by every sampler of a seed (common random numbers: paired)."""
        return self.keys.stack("noise", [{"seed": s, "initial_law": law.label(), "n_chains": n} for s in seeds])

    def m(self, n: int) -> int:
        return min(n, self.config.w1_max_points)

    def reference(self, seed: int, m: int) -> np.ndarray:
        """(m, 2) float64 exact draws that W1 compares against."""
        return np.asarray(self.target.sample(self.keys("reference", seed=seed, m=m), m), np.float64)

    def floor(self, m: int) -> theory.Estimate:
        return _w1_floor(self.config.seed, m, self.config.floor_repeats)


@functools.lru_cache(maxsize=None)
def _w1_floor(root_seed: int, m: int, repeats: int) -> theory.Estimate:
    """The W1 sampling floor of the target at sample size m (a pure function of its
    arguments, cached because every cell of a run reads the same floors)."""
    key = kit.Keys(root_seed)("floor", m=m)
    return theory.sampling_floor(theory.ncsn_two_modes(), m, key=key, repeats=repeats)


def _finite_or_diverged(points: np.ndarray, what: str) -> None:
    if not np.all(np.isfinite(points)):
        raise kit.Diverged(f"{what}: non-finite chain states")


def _chain_rows(
    sampling: _Sampling,
    seeds,
    points: np.ndarray,
    *,
    cell: str,
    sampler: str,
    steps: np.ndarray,
    sigmas: np.ndarray,
    coordinates: dict[str, Any],
    distribution_steps,
) -> list[dict[str, Any]]:
    """Rows for chains recorded at several steps: points (S, R, n, 2), steps (R,).

    Per seed and recorded step: the weight of each mode (Clopper-Pearson over that
    seed's i.i.d. chains); at `distribution_steps`, the histogram KL and W1 to exact draws.
    """
    config = sampling.config
    _finite_or_diverged(points, f"{sampler} sampler in {cell}")
    n = points.shape[-2]
    counts = mode_occupancy(sampling.target, points)  # (S, R, K)
    m = sampling.m(n)
    rows = []
    for i, seed in enumerate(seeds):
        reference = None
        for r, step in enumerate(steps):
            step = int(step)
            common = dict(sampler=sampler, seed=seed, step=step, sigma=float(sigmas[r]), **coordinates)
            for k, truth in enumerate(sampling.weights):
                p = kit.pooled_proportion(int(counts[i, r, k]), n, level=config.confidence)
                rows.append({**common, "metric": "mode_weight", "mode": k, **p.row(), "count": int(counts[i, r, k]),
                             "reference": float(truth)})
            if not distribution_steps(step):
                continue
            key = sampling.keys("kl-bootstrap", cell=cell, sampler=sampler, seed=seed, step=step, **coordinates)
            kl = occupancy_kl(counts[i, r], sampling.weights, key=key, n_bootstrap=config.n_bootstrap)
            rows.append({**common, "metric": "mode_kl", "value": kl.value, "error": kl.error, "n": n,
                         "reference": (len(sampling.weights) - 1) / (2 * n), "method": kl.method})
            if reference is None:
                reference = sampling.reference(seed, m)
            w1 = theory.wasserstein(np.asarray(points[i, r, :m], np.float64), reference)
            floor = sampling.floor(m)
            rows.append({**common, "metric": "w1", "value": w1.value, "error": w1.error, "n": m,
                         "reference": floor.value, "method": w1.method})
            rows.append({**common, "metric": "w1_floor", "value": floor.value, "error": floor.error, "n": m,
                         "method": floor.method})
    return rows


def _sample_rows(points: np.ndarray, *, sampler: str, seed: int, step: int) -> list[dict[str, Any]]:
    """One row per chain of a point cloud (n, 2): metric "sample", columns x, y."""
    return [{"sweep": "samples", "sampler": sampler, "seed": seed, "step": step, "metric": "sample",
             "chain": chain, "x": float(x), "y": float(y)}
            for chain, (x, y) in enumerate(np.asarray(points, np.float64))]


def _plain_coords(config: Config, **overrides) -> dict[str, Any]:
    return {"n_chains": config.n_chains, "initial_law": config.initial_law.label(),
            "langevin_step_size": config.langevin_step_size, "langevin_steps": config.langevin_steps, **overrides}


def _annealed_coords(config: Config, **overrides) -> dict[str, Any]:
    return {"n_chains": config.n_chains, "initial_law": config.initial_law.label(),
            "noise_family": type(config.noise_family).__name__, "annealed_step_size": config.annealed_step_size,
            "n_levels": config.schedule.n_levels, "steps_per_level": config.steps_per_level, **overrides}


def _recorded(chains) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(S, R, n, 2) points, steps (R,), sigmas (R,) of a batch over seeds."""
    return (np.asarray(chains.trajectory), np.asarray(chains.steps[0]), np.asarray(chains.sigmas[0], np.float64))


def _exact_score(config: Config, target) -> ExactNoiseConditionalScore:
    return ExactNoiseConditionalScore(target, config.noise_family)


# --------------------------------------------------------------------------------------
# Cells.


def _baseline_cell(config: Config, progress: kit.Progress) -> list[dict[str, Any]]:
    """Exact draws, plain and annealed Langevin with exact scores, every seed, from the
    same starting points and noise; the final points of seed 0; trajectories."""
    sampling, seeds = _Sampling(config), config.seeds()
    target, law, n = sampling.target, config.initial_law, config.n_chains
    x0s, noise = sampling.starts(seeds, law, n), sampling.noise(seeds, law, n)
    every = lambda step: step % config.w1_every == 0  # noqa: E731
    rows: list[dict[str, Any]] = []
    with progress.phase("exact draws"):
        exact = np.stack([np.asarray(target.sample(sampling.keys("exact", seed=s, n_chains=n), n)) for s in seeds])
        rows += _chain_rows(sampling, seeds, exact[:, None], cell="baseline", sampler="exact", steps=np.array([0]),
                            sigmas=np.array([np.nan]), coordinates={"n_chains": n}, distribution_steps=lambda s: True)
    with progress.phase("plain"):
        plain = _plain(ExactScore(target), x0s, noise, config.langevin_step_size, config.langevin_steps,
                       config.record_every)
        points, steps, sigmas = _recorded(plain)
        rows += _chain_rows(sampling, seeds, points, cell="baseline", sampler="plain", steps=steps, sigmas=sigmas,
                            coordinates=_plain_coords(config), distribution_steps=every)
    with progress.phase("annealed"):
        annealed = _annealed(_exact_score(config, target), x0s, noise, config.annealed_step_size, config.schedule,
                             config.steps_per_level, config.record_every)
        a_points, a_steps, a_sigmas = _recorded(annealed)
        rows += _chain_rows(sampling, seeds, a_points, cell="baseline", sampler="annealed", steps=a_steps,
                            sigmas=a_sigmas, coordinates=_annealed_coords(config), distribution_steps=every)
    rows += _sample_rows(exact[0], sampler="exact", seed=seeds[0], step=0)
    rows += _sample_rows(points[0, -1], sampler="plain", seed=seeds[0], step=int(steps[-1]))
    rows += _sample_rows(a_points[0, -1], sampler="annealed", seed=seeds[0], step=int(a_steps[-1]))
    for row in rows:
        row.setdefault("sweep", "baseline")
    with progress.phase("trajectories"):
        rows += _trajectory_rows(config, sampling)
    return rows


def _trajectory_rows(config: Config, sampling: _Sampling) -> list[dict[str, Any]]:
    """Chains started at one point (Luo 2022, Fig. 6): every step of the first three, and
    the fraction of all `trajectory_chains` that end in each mode (i.i.d. chains of one
    exact sampler: Clopper-Pearson)."""
    target = sampling.target
    start = np.asarray(separatrix_point(target) if config.trajectory_start is None else config.trajectory_start)
    x0 = jnp.broadcast_to(jnp.asarray(start, target.means.dtype), (config.trajectory_chains, DIM))
    key = sampling.keys("trajectory", x=float(start[0]), y=float(start[1]), n_chains=config.trajectory_chains)
    shown = min(3, config.trajectory_chains)
    runs = {
        "plain": langevin(ExactScore(target), x0, key=key, step_size=config.langevin_step_size,
                          n_steps=config.langevin_steps, record_every=1),
        "annealed": annealed_langevin(_exact_score(config, target), x0, key=key, schedule=config.schedule,
                                      step_size=config.annealed_step_size, steps_per_level=config.steps_per_level,
                                      record_every=1),
    }
    rows = []
    for sampler, chains in runs.items():
        path = np.asarray(chains.trajectory[:, :shown], np.float64)  # (K + 1, shown, 2)
        _finite_or_diverged(path, f"{sampler} trajectories")
        steps = np.asarray(chains.steps)
        sigmas = np.asarray(chains.sigmas, np.float64)
        for chain in range(shown):
            for r, step in enumerate(steps):
                rows.append({"sweep": "trajectories", "sampler": sampler, "step": int(step), "sigma": float(sigmas[r]),
                             "metric": "position", "chain": chain, "x": path[r, chain, 0], "y": path[r, chain, 1]})
        counts = mode_occupancy(target, chains.samples)
        for k, truth in enumerate(sampling.weights):
            p = kit.pooled_proportion(int(counts[k]), config.trajectory_chains, level=config.confidence)
            rows.append({"sweep": "trajectories", "sampler": sampler, "step": int(steps[-1]), "metric": "mode_weight",
                         "mode": k, **p.row(), "count": int(counts[k]), "reference": float(truth),
                         "interval": p.method + f"; all chains start at ({start[0]:.4g}, {start[1]:.4g})"})
    return rows


_NETWORKS = "score_networks.eqx"
"""The artifact of every seed's (TrainedScore, diverged_at), stacked over the seeds."""


def _networks_artifact(config: Config, mesh) -> kit.Artifact:
    """Every seed's DSM training as one program vmapped over the seeds (split over `mesh`'s
    devices): replica r runs the arithmetic ``train_dsm`` would run for seed r alone (its
    own init and batch keys), so the device count changes a network by float32 rounding
    at most. Its value: (TrainedScore, first non-finite step or -1) per seed, stacked."""

    def build(progress: kit.Progress) -> tuple[TrainedScore, jax.Array]:
        keys, seeds = kit.Keys(config.seed), [{"seed": s} for s in config.seeds()]
        with progress.phase("train network"):
            models = eqx.filter_vmap(lambda key: config.network.build(key, DIM))(keys.stack("network-init", seeds))
            trained = train_dsm_replicas(models, eqx.Partial(config.noise_family.sample_base, theory.ncsn_two_modes()),
                                         config.schedule.sigmas(), keys=keys.stack("dsm-batches", seeds),
                                         training=config.training, mesh=mesh)
        return (TrainedScore(model=trained.model, steps=jnp.asarray(trained.steps, jnp.int32),
                             losses=jnp.asarray(trained.losses, jnp.float32)), trained.diverged_at)

    return kit.replicas_artifact(_NETWORKS, build, lambda: (_trained_score_template(config), jnp.zeros((), jnp.int32)),
                                 replicas=config.seeds(), needs=("progress",))


def _trained_score_template(config: Config) -> TrainedScore:
    records = config.training.steps // config.training.record_every
    return TrainedScore(model=config.network.build(jax.random.key(0), DIM),
                        steps=jnp.zeros(records, jnp.int32), losses=jnp.zeros(records, jnp.float32))


def _network_artifact(config: Config, seed: int) -> kit.Artifact:
    """The score network of one seed, its slice of the seeds' training; raises Diverged if its training did."""

    def build(**needs) -> TrainedScore:
        trained, diverged_at = needs[_NETWORKS].of(seed)
        diverged_at = int(diverged_at)
        if diverged_at >= 0:
            raise kit.Diverged(f"DSM training of seed {seed} diverged at step {diverged_at} "
                               f"(lr {config.training.optimiser.learning_rate:g})")
        if not bool(all_finite(trained.model)):
            raise kit.Diverged(f"DSM training of seed {seed}: non-finite parameters")
        return trained

    return kit.equinox_artifact(_network_name(seed), build, lambda: _trained_score_template(config), needs=(_NETWORKS,))


def _network_name(seed: int) -> str:
    return f"score_network_seed={seed}.eqx"


def _learned_cell(config: Config, seed: int, progress: kit.Progress, network: TrainedScore) -> list[dict[str, Any]]:
    """One seed's network: its DSM loss curve, its Fisher divergence per level, and
    annealed Langevin with it from the baseline's starting points and noise of that seed."""
    sampling = _Sampling(config)
    target, training = sampling.target, config.training
    sigmas = config.schedule.sigmas()
    coordinates = _annealed_coords(config)
    rows = [{"sweep": "learned", "sampler": "learned", "seed": seed, "step": int(step), "metric": "dsm_loss",
             "value": float(loss), "method": f"mean sigma^2-weighted DSM loss over {training.record_every} steps "
                                             f"(batch {training.batch_size})"}
            for step, loss in zip(np.asarray(network.steps), np.asarray(network.losses))]
    with progress.phase("fisher"):
        for level, sigma in enumerate(sigmas):
            law = config.noise_family.law(target, float(sigma))
            key = sampling.keys("fisher", seed=seed, sigma=float(sigma))  # shared by both: a paired ratio
            method = theory.MonteCarlo(config.fisher_samples)
            fisher = theory.fisher_divergence(law, score_at_level(network.model, float(sigma)), key=key, method=method)
            scale = theory.fisher_divergence(law, lambda x: jnp.zeros_like(x), key=key, method=method)
            if not (math.isfinite(fisher.value) and math.isfinite(fisher.error)):
                raise kit.Diverged(f"seed {seed}: non-finite Fisher divergence at sigma={sigma:.4g}")
            common = {"sweep": "learned", "sampler": "learned", "seed": seed, "step": level + 1, "sigma": float(sigma),
                      "n": config.fisher_samples}
            for metric, estimate in (("fisher_divergence", fisher), ("expected_squared_score", scale)):
                low, high = estimate.interval()
                rows.append({**common, "metric": metric, "value": estimate.value, "error": estimate.error,
                             "ci_low": low, "ci_high": high, "method": estimate.method})
            rows.append({**common, "metric": "relative_fisher_divergence", "value": fisher.value / scale.value,
                         "method": "fisher_divergence / expected_squared_score (same draws)"})
    with progress.phase("annealed, learned score"):
        law, n = config.initial_law, config.n_chains
        chains = _annealed(network.model, sampling.starts([seed], law, n), sampling.noise([seed], law, n),
                           config.annealed_step_size, config.schedule, config.steps_per_level, config.record_every)
        points, steps, chain_sigmas = _recorded(chains)
        sampled = _chain_rows(sampling, [seed], points, cell=f"learned_seed={seed}", sampler="learned", steps=steps,
                              sigmas=chain_sigmas, coordinates=coordinates,
                              distribution_steps=lambda step: step % config.w1_every == 0)
    rows += [{**row, "sweep": "baseline"} for row in sampled]
    if seed == 0:
        rows += _sample_rows(points[0, -1], sampler="learned", seed=seed, step=int(steps[-1]))
    return rows


def _final_only(last: int):
    return lambda step: step == last


def _plain_cell(config: Config, *, sweep: str, alpha: float | None = None, n_steps: int | None = None):
    """Plain Langevin with another step size alpha or another chain length K, final metrics."""
    sampling, seeds = _Sampling(config), config.seeds()
    alpha = config.langevin_step_size if alpha is None else alpha
    n_steps = config.langevin_steps if n_steps is None else n_steps
    law, n = config.initial_law, config.n_chains
    chains = _plain(ExactScore(sampling.target), sampling.starts(seeds, law, n), sampling.noise(seeds, law, n),
                    alpha, n_steps, n_steps)
    points, steps, sigmas = _recorded(chains)
    return _chain_rows(sampling, seeds, points, cell=sweep, sampler="plain", steps=steps, sigmas=sigmas,
                       coordinates=_plain_coords(config, langevin_step_size=alpha, langevin_steps=n_steps),
                       distribution_steps=_final_only(n_steps))


def _annealed_cell(config: Config, *, sweep: str, eps: float | None = None, n_levels: int | None = None,
                   steps_per_level: int | None = None):
    """Annealed Langevin with another eps, L (same end points) or T; one record per level
    (the mode weights as the levels go down), metrics of the final state."""
    sampling, seeds = _Sampling(config), config.seeds()
    eps = config.annealed_step_size if eps is None else eps
    schedule = config.schedule if n_levels is None else config.schedule.with_levels(n_levels)
    t = config.steps_per_level if steps_per_level is None else steps_per_level
    law, n = config.initial_law, config.n_chains
    chains = _annealed(_exact_score(config, sampling.target), sampling.starts(seeds, law, n),
                       sampling.noise(seeds, law, n), eps, schedule, t, t)
    points, steps, sigmas = _recorded(chains)
    return _chain_rows(sampling, seeds, points, cell=sweep, sampler="annealed", steps=steps, sigmas=sigmas,
                       coordinates=_annealed_coords(config, annealed_step_size=eps, n_levels=schedule.n_levels,
                                                    steps_per_level=t),
                       distribution_steps=_final_only(schedule.n_levels * t))


def _chains_or_start_cell(config: Config, *, sweep: str, n_chains: int | None = None,
                          law: AbstractInitialLaw | None = None):
    """Plain and annealed Langevin with another chain count or another initial law."""
    sampling, seeds = _Sampling(config), config.seeds()
    law = config.initial_law if law is None else law
    n = config.n_chains if n_chains is None else n_chains
    x0s, noise = sampling.starts(seeds, law, n), sampling.noise(seeds, law, n)
    total = config.schedule.n_levels * config.steps_per_level
    runs = {
        "plain": (_plain(ExactScore(sampling.target), x0s, noise, config.langevin_step_size, config.langevin_steps,
                         config.langevin_steps), _plain_coords(config, n_chains=n, initial_law=law.label())),
        "annealed": (_annealed(_exact_score(config, sampling.target), x0s, noise, config.annealed_step_size,
                               config.schedule, config.steps_per_level, total),
                     _annealed_coords(config, n_chains=n, initial_law=law.label())),
    }
    rows = []
    for sampler, (chains, coordinates) in runs.items():
        points, steps, sigmas = _recorded(chains)
        rows += _chain_rows(sampling, seeds, points, cell=sweep, sampler=sampler, steps=steps, sigmas=sigmas,
                            coordinates=coordinates, distribution_steps=_final_only(int(steps[-1])))
    return rows


def _value_id(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _law_id(law: AbstractInitialLaw) -> str:
    """A filesystem-safe cell id for an initial law, e.g. 'point_-5_-5'."""
    label = law.label()
    for old, new in (("(", "_"), (")", ""), (",", "_"), ("[", "_"), ("]", ""), ("^2", ""), (" ", ""), ("N_0", "gauss")):
        label = label.replace(old, new)
    return "".join(c if c.isalnum() or c in "-_.=" else "_" for c in label).strip("_")


def cells(config: Config, *, devices: int = 1) -> tuple[list[kit.Cell], list[kit.Artifact]]:
    """The study's cells, in order, and the artifacts (one network per seed) they need;
    the seeds' networks are trained together, split over `devices` local devices (0: all)."""
    mesh = mesh_for(devices)
    result = [kit.Cell("baseline", functools.partial(_baseline_cell, config), needs=("progress",),
                       coords={"sweep": "baseline"})]
    artifacts = []
    if config.learned:
        artifacts.append(_networks_artifact(config, mesh))
        for seed in config.seeds():
            artifacts.append(_network_artifact(config, seed))
            result.append(kit.Cell(
                f"learned_seed={seed}",
                lambda progress, seed=seed, **nets: _learned_cell(config, seed, progress, nets[_network_name(seed)]),
                needs=("progress", _network_name(seed)), coords={"sweep": "learned", "sampler": "learned", "seed": seed},
            ))

    def sweep(name: str, values, make) -> None:
        for value in values or ():
            cell_id = f"{name}={_law_id(value) if name == 'initial_law' else _value_id(value)}"
            coordinate = value.label() if name == "initial_law" else value
            result.append(kit.Cell(cell_id, functools.partial(make, config, sweep=name, **{_ARG[name]: value}),
                                   coords={"sweep": name, name: coordinate}))

    sweep("langevin_step_size", config.sweep_langevin_step_sizes, _plain_cell)
    sweep("annealed_step_size", config.sweep_annealed_step_sizes, _annealed_cell)
    sweep("n_levels", config.sweep_n_levels, _annealed_cell)
    sweep("steps_per_level", config.sweep_steps_per_level, _annealed_cell)
    sweep("langevin_steps", config.sweep_langevin_steps, _plain_cell)
    sweep("n_chains", config.sweep_n_chains, _chains_or_start_cell)
    sweep("initial_law", config.sweep_initial_laws, _chains_or_start_cell)
    return result, artifacts


_ARG = {"langevin_step_size": "alpha", "annealed_step_size": "eps", "n_levels": "n_levels",
        "steps_per_level": "steps_per_level", "langevin_steps": "n_steps", "n_chains": "n_chains",
        "initial_law": "law"}


# --------------------------------------------------------------------------------------
# Summary, run, main.


def _final_heavy_weights(table: pd.DataFrame, sampler: str) -> pd.DataFrame:
    """Final-step rows of the weight of mode (5, 5) of one baseline sampler, one per seed."""
    rows = table[(table["sweep"] == "baseline") & (table["sampler"] == sampler)
                 & (table["metric"] == "mode_weight") & (table["mode"] == HEAVY_MODE)]
    if rows.empty:
        return rows
    return rows[rows["step"] == rows["step"].max()].sort_values("seed")


def _per_seed(table: pd.DataFrame, sampler: str, metric: str, seeds: list[int]) -> np.ndarray:
    """Final-step values of one baseline metric per seed, NaN for a seed without one
    (its network diverged): aligned on `seeds` for paired differences."""
    if metric == "mode_weight":
        rows = _final_heavy_weights(table, sampler)
    else:
        rows = table[(table["sweep"] == "baseline") & (table["sampler"] == sampler) & (table["metric"] == metric)]
        rows = rows[rows["step"] == rows["step"].max()] if not rows.empty else rows
    return rows.set_index("seed")["value"].reindex(seeds).to_numpy(np.float64)


def summary(table: pd.DataFrame, *, confidence: float = 0.95) -> pd.DataFrame:
    """The headline numbers of the baseline, each a kit interval.

    - weight of (5, 5), exact-score samplers (exact draws, plain, annealed): pooled
      Clopper-Pearson over every chain of every seed (i.i.d. chains of one fixed sampler);
    - weight of (5, 5), learned-score annealed: one proportion per network (seed),
      t-interval over seeds (diverged networks counted);
    - paired differences by seed: learned minus exact annealed, annealed minus plain;
    - W1 to exact draws and histogram KL per sampler: t-interval over seeds, beside the
      W1 sampling floor and the KL floor (K - 1) / 2n;
    - the learned score's Fisher divergence relative to E||grad log p_sigma||^2 per
      level: t-interval over seeds.

    Returns:
        One row per quantity: quantity, sampler, sigma, text (the interval as printed),
        value, error, ci_low, ci_high, n, n_diverged, reference.
    """
    out = []

    def add(quantity: str, sampler: str, interval: kit.Interval, reference: float = math.nan, sigma=math.nan):
        out.append({"quantity": quantity, "sampler": sampler, "sigma": sigma, "text": str(interval),
                    **interval.row(), "reference": reference})

    if "sweep" not in table.columns:
        return pd.DataFrame(out)
    seeds = sorted(int(s) for s in table.loc[table["sweep"] == "baseline", "seed"].dropna().unique())
    learned_seeds: list[int] = []
    learned_cells = table[table["sweep"] == "learned"]
    for sampler in ("exact", "plain", "annealed"):
        rows = _final_heavy_weights(table, sampler)
        if len(rows):
            add("weight of (5,5)", sampler,
                kit.pooled_proportion(int(rows["count"].sum()), int(rows["n"].sum()), level=confidence), 0.8)
    if len(learned_cells):
        learned_seeds = sorted(int(s) for s in learned_cells["seed"].dropna().unique())
        add("weight of (5,5)", "learned",
            kit.over_replicates(_per_seed(table, "learned", "mode_weight", learned_seeds), level=confidence), 0.8)
        add("learned minus exact annealed weight", "learned - annealed",
            kit.paired_difference(_per_seed(table, "learned", "mode_weight", learned_seeds),
                                  _per_seed(table, "annealed", "mode_weight", learned_seeds), level=confidence), 0.0)
    if len(_final_heavy_weights(table, "plain")) and len(_final_heavy_weights(table, "annealed")):
        add("annealed minus plain weight", "annealed - plain",
            kit.paired_difference(_per_seed(table, "annealed", "mode_weight", seeds),
                                  _per_seed(table, "plain", "mode_weight", seeds), level=confidence))
    for metric, label in (("w1", "W1 to exact draws"), ("mode_kl", "KL(mode histogram || weights)")):
        for sampler in ("exact", "plain", "annealed", "learned"):
            rows = table[(table["sweep"] == "baseline") & (table["sampler"] == sampler) & (table["metric"] == metric)]
            if rows.empty:
                continue
            these = learned_seeds if sampler == "learned" else seeds
            last = rows[rows["step"] == rows["step"].max()]
            add(label, sampler, kit.over_replicates(_per_seed(table, sampler, metric, these), level=confidence),
                float(last["reference"].mean()))
    relative = learned_cells[learned_cells["metric"] == "relative_fisher_divergence"]
    for sigma, rows in relative.groupby("sigma", sort=False):
        values = rows.set_index("seed")["value"].reindex(learned_seeds).to_numpy(np.float64)
        add("relative Fisher divergence", "learned", kit.over_replicates(values, level=confidence), sigma=float(sigma))
    return pd.DataFrame(out)


def run(config: Config, store: kit.ResultStore | None = None, *, runtime: kit.Runtime | None = None) -> kit.Results:
    """Run every cell not yet saved (resumable), draw the figures when saving.

    Returns:
        `Results` with the tidy table of every done cell.
    """
    runtime = runtime or kit.Runtime()
    study_cells, artifacts = cells(config, devices=runtime.devices)
    table = kit.run_cells(store, study_cells, artifacts=artifacts, runtime=runtime)
    return kit.finish(store, table, figures="figures.langevin_mixing" if config.draw_figures else None, summarise=functools.partial(summary, confidence=config.confidence))


def main(argv: list[str] | None = None) -> None:
    results = kit.main(run, Config, PRESETS, argv)
    table = results.summary()
    if table.empty:
        return
    diverged = results.table[results.table["metric"] == "diverged"]
    shown = table[["quantity", "sampler", "sigma", "text", "reference"]].copy()
    shown["sigma"] = shown["sigma"].map(lambda s: "" if not math.isfinite(s) else f"{s:.3g}")
    shown["reference"] = shown["reference"].map(lambda r: "" if not math.isfinite(r) else f"{r:.3g}")
    kit.print_tables([
        ("Headline (baseline, final step). Exact-score weights: Clopper-Pearson pooled over every chain of "
         "every seed; learned-score numbers and differences: mean ± s.e. [t-interval] over seeds (networks), "
         "paired by seed (same starts, same noise)", shown),
        *([(f"{len(diverged)} cell(s) diverged", "; ".join(diverged["reason"].astype(str)))] if len(diverged) else []),
    ], width=160, column_width=70)


if __name__ == "__main__":
    main()
