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
seed and step: the weight of each mode with a Clopper-Pearson interval, the KL of the
mode-occupancy histogram to the true weights (bootstrap error, floor (K - 1) / 2n), and
the exact W1 to fresh target draws next to the W1 sampling floor. Protocol:
shared/reference/protocols.md, "Plain vs annealed Langevin".

    python -m studies.langevin_mixing                   # ncsn-code preset
    python -m studies.langevin_mixing --preset quick    # the README figure, ~2.5 min on 2 CPU cores
    python -m figures.langevin_mixing results/langevin_mixing/quick
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import math
import pathlib
import sys
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

import theory
from models.score_network import DSMTraining, ScoreMLP, score_at_level, train_dsm
from models.training import AdamSpec
from studies.pipeline import ResultStore, config_field, parse_config, run_cells
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
    binomial_proportion,
    langevin,
    mode_occupancy,
    occupancy_kl,
    separatrix_point,
    ula_stability_ratio,
)

__all__ = [
    "AbstractInitialLaw",
    "Config",
    "IsotropicGaussianStart",
    "PRESETS",
    "PointStart",
    "Results",
    "TargetStart",
    "UniformBox",
    "cells",
    "main",
    "run",
    "summarise",
]

STUDY = "langevin_mixing"
DIM = 2
TRUE_WEIGHTS = (0.8, 0.2)
"""Weights of the NCSN target's modes (5, 5) and (-5, -5); mode 0 is the heavy one."""


# --------------------------------------------------------------------------------------
# Initial laws (the chains' starting points), as config objects.


class AbstractInitialLaw(eqx.Module):
    """Where the chains start: `sample(key, n, target)` returns (n, 2) points."""

    @abc.abstractmethod
    def sample(self, key, n: int, target) -> jax.Array:
        """n starting points, shape (n, 2)."""

    @abc.abstractmethod
    def label(self) -> str:
        """A short human-readable name, used in tables and figures."""


class UniformBox(AbstractInitialLaw):
    """Uniform on the square [low, high]^2 (the NCSN code: [-8, 8]^2)."""

    low: float = eqx.field(static=True, default=-8.0)
    high: float = eqx.field(static=True, default=8.0)

    def __check_init__(self):
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise ValueError(f"uniform box needs finite low < high, got low={self.low!r}, high={self.high!r}")

    def sample(self, key, n, target):
        return jax.random.uniform(key, (n, DIM), target.means.dtype, self.low, self.high)

    def label(self):
        return f"uniform[{self.low:g},{self.high:g}]^2"


class PointStart(AbstractInitialLaw):
    """Every chain starts at one point."""

    point: tuple[float, float] = eqx.field(static=True, default=(0.0, 0.0))

    def __check_init__(self):
        if len(self.point) != DIM or not all(math.isfinite(v) for v in self.point):
            raise ValueError(f"point must be {DIM} finite numbers, got {self.point!r}")

    def sample(self, key, n, target):
        return jnp.broadcast_to(jnp.asarray(self.point, target.means.dtype), (n, DIM))

    def label(self):
        return "point(" + ",".join(f"{v:g}" for v in self.point) + ")"


class IsotropicGaussianStart(AbstractInitialLaw):
    """N(0, std^2 I): with std = sigma_1 this is the annealed sampler's natural prior."""

    std: float = eqx.field(static=True, default=20.0)

    def __check_init__(self):
        if not (math.isfinite(self.std) and self.std > 0):
            raise ValueError(f"std must be finite and > 0, got {self.std!r}")

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


def _numbers(text: str, count: int | None = None) -> tuple[float, ...]:
    values = tuple(float(item) for item in text.split(",") if item.strip())
    if count is not None and len(values) != count:
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
    raise ValueError("use uniform:LOW,HIGH, point:X,Y, gaussian:STD or target")


def parse_initial_laws(text: str) -> tuple[AbstractInitialLaw, ...]:
    """Semicolon-separated initial laws, e.g. 'uniform:-8,8;point:0,0;target'."""
    return tuple(parse_initial_law(item) for item in text.split(";") if item.strip())


def parse_schedule(text: str) -> AbstractNoiseSchedule:
    """'geometric:SIGMA_MAX,SIGMA_MIN,L' or 'linear:SIGMA_MAX,SIGMA_MIN,L'."""
    kind, _, rest = text.strip().partition(":")
    schedules = {"geometric": GeometricSchedule, "linear": LinearSchedule}
    if kind not in schedules:
        raise ValueError("use geometric:SIGMA_MAX,SIGMA_MIN,L or linear:SIGMA_MAX,SIGMA_MIN,L")
    sigma_max, sigma_min, n_levels = _numbers(rest, 3)
    if n_levels != int(n_levels):
        raise ValueError(f"L must be an integer, got {n_levels}")
    return schedules[kind](sigma_max=sigma_max, sigma_min=sigma_min, n_levels=int(n_levels))


def parse_network(text: str) -> ScoreMLP:
    """'WIDTH,HIDDEN_LAYERS,DATA_SCALE', e.g. '128,2,5'."""
    width, layers, scale = _numbers(text, 3)
    if width != int(width) or layers != int(layers):
        raise ValueError("width and hidden layers must be integers")
    return ScoreMLP(int(width), int(layers), scale)


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
        "annealing levels, geometric:SIGMA_MAX,SIGMA_MIN,L or linear:SIGMA_MAX,SIGMA_MIN,L",
        parse=parse_schedule,
    )
    steps_per_level: int = config_field(100, "annealed Langevin steps T at each level")
    annealed_step_size: float = config_field(0.1, "eps: annealed step alpha_i = eps * sigma_i^2 / sigma_L^2")
    langevin_step_size: float = config_field(0.1, "alpha of plain Langevin (exact target score)")
    langevin_steps: int = config_field(1000, "plain Langevin steps K (1000 = the annealed budget L * T)")
    n_chains: int = config_field(1280, "chains per sampler and seed")
    initial_law: AbstractInitialLaw = config_field(
        UniformBox(-8.0, 8.0),
        "where chains start: uniform:LOW,HIGH | point:X,Y | gaussian:STD | target",
        parse=parse_initial_law,
    )
    seeds: tuple[int, ...] = config_field((0, 1, 2, 3, 4), "PRNG seeds; each seed is an independent replicate")
    record_every: int = config_field(50, "record the chains every this many steps (metrics vs steps)")
    w1_every: int = config_field(100, "compute W1 and histogram KL at steps that are multiples of this")
    w1_max_points: int = config_field(2560, "W1 uses at most this many chains (exact OT is O(n^3))")
    floor_repeats: int = config_field(5, "independent exact-sample pairs averaged in the W1 sampling floor")
    confidence: float = config_field(0.95, "confidence of the Clopper-Pearson interval of each mode weight")
    n_bootstrap: int = config_field(1000, "bootstrap resamples for the error of the histogram KL")
    learned: bool = config_field(True, "also train a score network and run annealed Langevin with it")
    network: ScoreMLP = config_field(
        ScoreMLP(128, 2, 5.0),
        "noise-conditional MLP as WIDTH,HIDDEN_LAYERS,DATA_SCALE (softplus, output / sigma)",
        parse=parse_network,
    )
    train_steps: int = config_field(10_000, "Adam steps of denoising score matching")
    batch_size: int = config_field(128, "examples per training step (one random level each)")
    learning_rate: float = config_field(1e-3, "Adam learning rate")
    loss_record_every: int = config_field(100, "average the training loss over blocks of this many steps")
    fisher_samples: int = config_field(10_000, "draws per level for the learned score's Fisher divergence")
    trajectory_chains: int = config_field(64, "chains started at one point for the trajectory figure")
    trajectory_start: tuple[float, float] | None = config_field(
        None, "start X,Y of the trajectory chains; none = the point between the modes where "
        "their responsibilities are equal"
    )
    sweep_langevin_step_sizes: tuple[float, ...] = config_field(
        (0.01, 0.03, 0.1, 0.3, 1.0), "plain-Langevin alphas swept (empty: no sweep)"
    )
    sweep_annealed_step_sizes: tuple[float, ...] = config_field(
        (0.01, 0.03, 0.1, 0.3, 1.0), "annealed eps values swept"
    )
    sweep_n_levels: tuple[int, ...] = config_field((1, 2, 3, 5, 10, 20), "numbers of levels L swept (same end points)")
    sweep_steps_per_level: tuple[int, ...] = config_field((1, 3, 10, 30, 100, 300), "steps per level T swept")
    sweep_langevin_steps: tuple[int, ...] = config_field(
        (1000, 10_000, 100_000), "plain chain lengths K reported (one chain continued)"
    )
    sweep_n_chains: tuple[int, ...] = config_field((80, 320, 1280, 5120), "chain counts swept")
    sweep_initial_laws: tuple[AbstractInitialLaw, ...] = config_field(
        (UniformBox(-8.0, 8.0), PointStart((0.0, 0.0)), PointStart((-5.0, -5.0)), IsotropicGaussianStart(20.0), TargetStart()),
        "initial laws swept, ';'-separated (e.g. uniform:-8,8;point:-5,-5;target)",
        parse=parse_initial_laws,
    )

    def __post_init__(self):
        _validate(self)


def _require_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _require_positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def _require_type(name: str, value, kind: type) -> None:
    if not isinstance(value, kind):
        raise ValueError(f"{name} must be a {kind.__name__}, got {value!r}")


def _validate(config: Config) -> None:
    """Every constraint checked before any compute, each error naming field and value."""
    _require_type("noise_family", config.noise_family, AbstractNoiseFamily)
    _require_type("schedule", config.schedule, AbstractNoiseSchedule)
    _require_type("initial_law", config.initial_law, AbstractInitialLaw)
    _require_type("network", config.network, ScoreMLP)
    for name in ("steps_per_level", "langevin_steps", "n_chains", "record_every", "w1_every",
                 "w1_max_points", "train_steps", "batch_size", "loss_record_every",
                 "fisher_samples", "trajectory_chains"):
        _require_int(name, getattr(config, name), 1)
    _require_int("floor_repeats", config.floor_repeats, 2)
    _require_int("n_bootstrap", config.n_bootstrap, 2)
    for name in ("annealed_step_size", "langevin_step_size", "learning_rate"):
        _require_positive(name, getattr(config, name))
    if not (isinstance(config.confidence, float) and 0.0 < config.confidence < 1.0):
        raise ValueError(f"confidence must be in (0, 1), got {config.confidence!r}")
    if not isinstance(config.learned, bool):
        raise ValueError(f"learned must be true or false, got {config.learned!r}")
    if not config.seeds:
        raise ValueError("seeds must name at least one seed, got ()")
    for seed in config.seeds:
        _require_int("seeds", seed, 0)
    if len(set(config.seeds)) != len(config.seeds):
        raise ValueError(f"seeds must be distinct, got {config.seeds}")
    if config.trajectory_start is not None and (
        len(config.trajectory_start) != DIM or not all(math.isfinite(v) for v in config.trajectory_start)
    ):
        raise ValueError(f"trajectory_start must be {DIM} finite numbers or none, got {config.trajectory_start!r}")
    annealed_steps = config.schedule.n_levels * config.steps_per_level
    for name, total in (("langevin_steps", config.langevin_steps), ("n_levels * steps_per_level", annealed_steps)):
        if total % config.record_every:
            raise ValueError(f"record_every must divide {name}={total}, got {config.record_every}")
    if config.w1_every % config.record_every:
        raise ValueError(f"w1_every must be a multiple of record_every={config.record_every}, got {config.w1_every}")
    if config.train_steps % config.loss_record_every:
        raise ValueError(
            f"loss_record_every must divide train_steps={config.train_steps}, got {config.loss_record_every}"
        )
    for value in config.sweep_langevin_step_sizes:
        _require_positive("sweep_langevin_step_sizes", value)
    for value in config.sweep_annealed_step_sizes:
        _require_positive("sweep_annealed_step_sizes", value)
    for name in ("sweep_n_levels", "sweep_steps_per_level", "sweep_langevin_steps", "sweep_n_chains"):
        values = getattr(config, name)
        for value in values:
            _require_int(name, value, 1)
        if len(set(values)) != len(values):
            raise ValueError(f"{name} must not repeat a value, got {values}")
    for law in config.sweep_initial_laws:
        _require_type("sweep_initial_laws", law, AbstractInitialLaw)
    _check_stability(config)


TARGET_COMPONENT_VARIANCE = 1.0
"""Each component of `theory.ncsn_two_modes()` is N(m_k, I) (checked by a test); kept as a
number so that validating a config needs no JAX computation."""


def _smallest_variance(family: AbstractNoiseFamily, sigma) -> np.ndarray:
    return family.smallest_variance(TARGET_COMPONENT_VARIANCE, sigma)


def _check_stability(config: Config) -> None:
    """ULA diverges when alpha / (2 s^2) >= 2 for the smallest component variance s^2
    (`theory.langevin.ula_stability_ratio`): reject such step sizes up front."""
    target_variance = TARGET_COMPONENT_VARIANCE
    for name, alphas in (("langevin_step_size", [config.langevin_step_size]),
                         ("sweep_langevin_step_sizes", config.sweep_langevin_step_sizes)):
        for alpha in alphas:
            ratio = float(ula_stability_ratio(alpha, target_variance))
            if ratio >= 2:
                raise ValueError(
                    f"{name}={alpha} makes plain Langevin diverge: alpha / (2 s^2) = {ratio:.3g} >= 2 "
                    f"(s^2 = {target_variance:g}); use alpha < {4 * target_variance:g}"
                )
    sigmas = config.schedule.sigmas()
    variances = _smallest_variance(config.noise_family, sigmas)
    # The largest stable eps: alpha_i / (2 s_i^2) < 2 at every level i.
    ratio_per_eps = (sigmas**2 / sigmas[-1] ** 2) / (2 * variances)
    for name, epsilons in (("annealed_step_size", [config.annealed_step_size]),
                           ("sweep_annealed_step_sizes", config.sweep_annealed_step_sizes)):
        for eps in epsilons:
            worst = int(np.argmax(ratio_per_eps))
            if eps * ratio_per_eps[worst] >= 2:
                raise ValueError(
                    f"{name}={eps} makes annealed Langevin diverge at level {worst + 1} "
                    f"(sigma={sigmas[worst]:.4g}): alpha_i / (2 s_i^2) = {eps * ratio_per_eps[worst]:.3g} >= 2; "
                    f"use eps < {2 / ratio_per_eps[worst]:.4g} with this schedule and noise family"
                )
    for n_levels in config.sweep_n_levels:
        schedule = config.schedule.with_levels(n_levels)
        s = schedule.sigmas()
        v = _smallest_variance(config.noise_family, s)
        worst = float(np.max(config.annealed_step_size * (s**2 / s[-1] ** 2) / (2 * v)))
        if worst >= 2:
            raise ValueError(
                f"sweep_n_levels value {n_levels} makes annealed Langevin diverge with "
                f"annealed_step_size={config.annealed_step_size}: alpha_i / (2 s_i^2) = {worst:.3g} >= 2"
            )


PRESETS: dict[str, Config] = {
    # The public code (ermongroup/ncsn toy_runner.py): sigma 20 -> 1, component std = sigma,
    # eps = 0.1 (so alpha_i / (2 sigma_i^2) = 0.05 at every level), 1,280 chains.
    "ncsn-code": Config(),
    # The paper's text: sigma 10 -> 0.1 and the exact perturbed scores of p * N(0, sigma^2).
    # eps = 0.1 diverges there (alpha_1 / (2 (1 + sigma_1^2)) = 4.95 >= 2; the largest
    # stable eps is 0.0404); the paper does not state the toy's eps. We take eps = 0.005,
    # the largest value keeping alpha_1 / (2 s_1^2) <= 1/4 (well inside the stable range).
    "ncsn-paper": Config(
        noise_family=ConvolvedTarget(),
        schedule=GeometricSchedule(sigma_max=10.0, sigma_min=0.1, n_levels=10),
        annealed_step_size=0.005,
        network=ScoreMLP(128, 2, 5.0),
        sweep_annealed_step_sizes=(0.001, 0.002, 0.005, 0.01, 0.02, 0.04),
    ),
    # The README figure in a few minutes on 2 CPU cores: same protocol as ncsn-code,
    # 2 seeds (each trains its own network, 10,000 steps), shorter sweeps.
    "quick": Config(
        seeds=(0, 1),
        record_every=50,
        w1_every=250,
        w1_max_points=1280,
        n_bootstrap=500,
        train_steps=10_000,
        fisher_samples=5000,
        sweep_langevin_step_sizes=(0.01, 0.1, 1.0),
        sweep_annealed_step_sizes=(0.01, 0.1, 1.0),
        sweep_n_levels=(1, 3, 10),
        sweep_steps_per_level=(3, 30, 100),
        sweep_langevin_steps=(1000, 10_000),
        sweep_n_chains=(320, 1280),
        sweep_initial_laws=(UniformBox(-8.0, 8.0), PointStart((-5.0, -5.0)), TargetStart()),
    ),
}


# --------------------------------------------------------------------------------------
# Results.


@dataclasses.dataclass(frozen=True)
class Results:
    """The study's tidy table (one row per observation) and where it was saved.

    Columns: sweep, sampler, seed, step, sigma, metric, mode, chain, coordinate, value,
    error, ci_low, ci_high, count, n, reference, method, and the swept coordinates
    noise_family, langevin_step_size, annealed_step_size, n_levels, steps_per_level,
    langevin_steps, n_chains, initial_law (NaN where they do not apply).
    """

    table: pd.DataFrame
    run_dir: pathlib.Path | None = None

    def summary(self) -> pd.DataFrame:
        """The headline numbers: see `summarise`."""
        return summarise(self.table)


COLUMNS = (
    "sweep", "sampler", "seed", "step", "sigma", "metric", "mode", "chain", "coordinate",
    "value", "error", "ci_low", "ci_high", "count", "n", "reference", "method",
    "noise_family", "langevin_step_size", "annealed_step_size", "n_levels",
    "steps_per_level", "langevin_steps", "n_chains", "initial_law",
)


def _row(**values) -> dict[str, Any]:
    unknown = set(values) - set(COLUMNS)
    if unknown:
        raise KeyError(f"unknown columns {sorted(unknown)}")
    return {column: values.get(column, math.nan) for column in COLUMNS}


def _coordinates(config: Config, sampler: str, **overrides) -> dict[str, Any]:
    """The swept coordinates that apply to a sampler, with a sweep's overrides."""
    base: dict[str, Any] = {"n_chains": config.n_chains, "initial_law": config.initial_law.label()}
    if sampler == "plain":
        base.update(langevin_step_size=config.langevin_step_size, langevin_steps=config.langevin_steps)
    elif sampler in ("annealed", "learned"):
        base.update(
            noise_family=type(config.noise_family).__name__,
            annealed_step_size=config.annealed_step_size,
            n_levels=config.schedule.n_levels,
            steps_per_level=config.steps_per_level,
        )
    base.update(overrides)
    return base


# --------------------------------------------------------------------------------------
# Keys: one named stream per purpose, so that every cell is reproducible on its own and
# the samplers of one seed share their initial points (paired comparisons).

_PURPOSES = (
    "init", "exact", "reference", "plain", "annealed", "learned", "train", "fisher",
    "kl", "floor", "trajectory",
)


def _keys(seed: int) -> dict[str, jax.Array]:
    return dict(zip(_PURPOSES, jax.random.split(jax.random.key(seed), len(_PURPOSES))))


def _seed_keys(config: Config, purpose: str, salt: int = 0) -> jax.Array:
    """One key per seed, shape (S,), for `purpose`; `salt` separates sweep values."""
    return jnp.stack([jax.random.fold_in(_keys(seed)[purpose], salt) for seed in config.seeds])


def _initial_points(config: Config, law: AbstractInitialLaw, n: int, target) -> jax.Array:
    """(S, n, 2) starting points, one set per seed (shared by all samplers of a seed)."""
    return jnp.stack([law.sample(_keys(seed)["init"], n, target) for seed in config.seeds])


# --------------------------------------------------------------------------------------
# Batched samplers: vmapped over seeds and step sizes, one compilation per shape.


@eqx.filter_jit
def _plain_batch(score, x0s, keys, step_sizes, n_steps: int, record_every: int):
    """Plain Langevin for every (step size, seed): leaves have leading axes (A, S)."""

    def one(alpha, x0, key):
        return langevin(score, x0, key=key, step_size=alpha, n_steps=n_steps, record_every=record_every)

    over_seeds = jax.vmap(one, in_axes=(None, 0, 0))
    return jax.vmap(over_seeds, in_axes=(0, None, None))(step_sizes, x0s, keys)


@eqx.filter_jit
def _annealed_batch(score, x0s, keys, step_sizes, schedule, steps_per_level: int, record_every: int):
    """Annealed Langevin for every (eps, seed): leaves have leading axes (E, S)."""

    def one(eps, x0, key):
        return annealed_langevin(
            score, x0, key=key, schedule=schedule, step_size=eps,
            steps_per_level=steps_per_level, record_every=record_every,
        )

    over_seeds = jax.vmap(one, in_axes=(None, 0, 0))
    return jax.vmap(over_seeds, in_axes=(0, None, None))(step_sizes, x0s, keys)


# --------------------------------------------------------------------------------------
# Metrics of a set of chains.


@functools.lru_cache(maxsize=None)
def _w1_floor(m: int, repeats: int, seed: int) -> theory.Estimate:
    """The W1 sampling floor of the target at sample size m (cached: it is a pure
    function of its arguments, and every cell of a run reads the same floors)."""
    key = _keys(seed)["floor"]
    return theory.sampling_floor(theory.ncsn_two_modes(), m, key=key, repeats=repeats)


class _Reference:
    """Exact target draws per seed and the W1 sampling floor, computed once per size."""

    def __init__(self, config: Config, target, *, floor_seed: int):
        self.config = config
        self.target = target
        self.floor_seed = floor_seed
        self._draws: dict[int, np.ndarray] = {}

    def points(self, n: int) -> int:
        return min(n, self.config.w1_max_points)

    def draws(self, n: int) -> np.ndarray:
        """(S, m, 2) float64 exact draws, m = points(n)."""
        m = self.points(n)
        if m not in self._draws:
            self._draws[m] = np.stack([
                np.asarray(self.target.sample(_keys(seed)["reference"], m), np.float64)
                for seed in self.config.seeds
            ])
        return self._draws[m]

    def floor(self, n: int) -> theory.Estimate:
        return _w1_floor(self.points(n), self.config.floor_repeats, self.floor_seed)


def _chain_rows(
    config: Config,
    target,
    reference: _Reference,
    points: np.ndarray,
    *,
    sweep: str,
    sampler: str,
    steps: np.ndarray,
    sigmas: np.ndarray,
    coordinates: dict[str, Any],
    distribution_steps: Callable[[int], bool],
    kl_salt: int,
) -> list[dict[str, Any]]:
    """Rows for chains recorded at several steps: points (S, R, n, 2), steps (R,)."""
    seeds = config.seeds
    n = points.shape[-2]
    counts = mode_occupancy(target, points)  # (S, R, K)
    rows = []
    weights = np.asarray(TRUE_WEIGHTS)
    draws = reference.draws(n) if any(distribution_steps(int(s)) for s in steps) else None
    m = reference.points(n)
    for i, seed in enumerate(seeds):
        for r, step in enumerate(steps):
            step = int(step)
            common = dict(sweep=sweep, sampler=sampler, seed=seed, step=step, sigma=float(sigmas[r]), **coordinates)
            for k, truth in enumerate(TRUE_WEIGHTS):
                p = binomial_proportion(int(counts[i, r, k]), n, confidence=config.confidence)
                rows.append(_row(
                    metric="mode_weight", mode=k, value=p.value, error=p.error, ci_low=p.low,
                    ci_high=p.high, count=p.count, n=p.n, reference=truth, method=p.method, **common,
                ))
            if not distribution_steps(step):
                continue
            key = jax.random.fold_in(jax.random.fold_in(_keys(seed)["kl"], kl_salt), step)
            divergence = occupancy_kl(counts[i, r], weights, key=key, n_bootstrap=config.n_bootstrap)
            rows.append(_row(
                metric="mode_kl", value=divergence.value, error=divergence.error, n=n,
                reference=(len(weights) - 1) / (2 * n), method=divergence.method, **common,
            ))
            w1 = theory.wasserstein(np.asarray(points[i, r, :m], np.float64), draws[i])
            floor = reference.floor(n)
            rows.append(_row(metric="w1", value=w1.value, error=w1.error, n=m, reference=floor.value,
                             method=w1.method, **common))
            rows.append(_row(metric="w1_floor", value=floor.value, error=floor.error, n=m,
                             method=floor.method, **common))
    return rows


def _position_rows(points: np.ndarray, *, sweep: str, sampler: str, seed: int, step: int) -> list[dict[str, Any]]:
    """One row per chain and coordinate of a point cloud (n, 2)."""
    rows = []
    for chain, point in enumerate(np.asarray(points, np.float64)):
        for coordinate, value in enumerate(point):
            rows.append(_row(sweep=sweep, sampler=sampler, seed=seed, step=step, metric="position",
                             chain=chain, coordinate=coordinate, value=float(value)))
    return rows


def _exact_score(config: Config, target) -> ExactNoiseConditionalScore:
    return ExactNoiseConditionalScore(target, config.noise_family)


def _all_steps(config: Config, chains) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(S, R, n, 2) points, steps (R,), sigmas (R,) of a batch with a single step size."""
    return (
        np.asarray(chains.trajectory[0]),
        np.asarray(chains.steps[0, 0]),
        np.asarray(chains.sigmas[0, 0], np.float64),
    )


# --------------------------------------------------------------------------------------
# Cells.


def _baseline_cell(config: Config) -> list[dict[str, Any]]:
    """Exact draws, plain and annealed Langevin with exact scores, every seed; the
    final points of the first seed; trajectories from one start point."""
    target = theory.ncsn_two_modes()
    reference = _Reference(config, target, floor_seed=config.seeds[0])
    x0s = _initial_points(config, config.initial_law, config.n_chains, target)
    every = lambda step: step % config.w1_every == 0  # noqa: E731
    rows: list[dict[str, Any]] = []

    exact = jnp.stack([target.sample(_keys(seed)["exact"], config.n_chains) for seed in config.seeds])
    rows += _chain_rows(
        config, target, reference, np.asarray(exact)[:, None], sweep="baseline", sampler="exact",
        steps=np.array([0]), sigmas=np.array([np.nan]), coordinates={"n_chains": config.n_chains},
        distribution_steps=lambda step: True, kl_salt=0,
    )
    plain = _plain_batch(ExactScore(target), x0s, _seed_keys(config, "plain"),
                         jnp.asarray([config.langevin_step_size]), config.langevin_steps, config.record_every)
    points, steps, sigmas = _all_steps(config, plain)
    rows += _chain_rows(config, target, reference, points, sweep="baseline", sampler="plain", steps=steps,
                        sigmas=sigmas, coordinates=_coordinates(config, "plain"), distribution_steps=every, kl_salt=1)
    annealed = _annealed_batch(_exact_score(config, target), x0s, _seed_keys(config, "annealed"),
                               jnp.asarray([config.annealed_step_size]), config.schedule,
                               config.steps_per_level, config.record_every)
    a_points, a_steps, a_sigmas = _all_steps(config, annealed)
    rows += _chain_rows(config, target, reference, a_points, sweep="baseline", sampler="annealed", steps=a_steps,
                        sigmas=a_sigmas, coordinates=_coordinates(config, "annealed"), distribution_steps=every,
                        kl_salt=2)

    first = config.seeds[0]
    rows += _position_rows(np.asarray(exact[0]), sweep="samples", sampler="exact", seed=first, step=0)
    rows += _position_rows(points[0, -1], sweep="samples", sampler="plain", seed=first, step=int(steps[-1]))
    rows += _position_rows(a_points[0, -1], sweep="samples", sampler="annealed", seed=first, step=int(a_steps[-1]))
    rows += _trajectory_rows(config, target)
    return rows


def _trajectory_rows(config: Config, target) -> list[dict[str, Any]]:
    """Chains started at one point (Luo 2022, Fig. 6): every step of the first three, and
    the fraction of all `trajectory_chains` that end in each mode."""
    start = np.asarray(separatrix_point(target) if config.trajectory_start is None else config.trajectory_start)
    x0 = jnp.broadcast_to(jnp.asarray(start, target.means.dtype), (config.trajectory_chains, DIM))
    key = _keys(config.seeds[0])["trajectory"]
    shown = min(3, config.trajectory_chains)
    runs = {
        "plain": langevin(ExactScore(target), x0, key=jax.random.fold_in(key, 0), step_size=config.langevin_step_size,
                          n_steps=config.langevin_steps, record_every=1),
        "annealed": annealed_langevin(_exact_score(config, target), x0, key=jax.random.fold_in(key, 1),
                                      schedule=config.schedule, step_size=config.annealed_step_size,
                                      steps_per_level=config.steps_per_level, record_every=1),
    }
    rows = []
    for sampler, chains in runs.items():
        path = np.asarray(chains.trajectory[:, :shown], np.float64)  # (K + 1, shown, 2)
        steps = np.asarray(chains.steps)
        sigmas = np.asarray(chains.sigmas, np.float64)
        for chain in range(shown):
            for r, step in enumerate(steps):
                for coordinate in range(DIM):
                    rows.append(_row(sweep="trajectories", sampler=sampler, seed=config.seeds[0], step=int(step),
                                     sigma=float(sigmas[r]), metric="position", chain=chain,
                                     coordinate=coordinate, value=float(path[r, chain, coordinate])))
        counts = mode_occupancy(target, chains.samples)
        for k, truth in enumerate(TRUE_WEIGHTS):
            p = binomial_proportion(int(counts[k]), config.trajectory_chains, confidence=config.confidence)
            rows.append(_row(sweep="trajectories", sampler=sampler, seed=config.seeds[0], step=int(steps[-1]),
                             metric="mode_weight", mode=k, value=p.value, error=p.error, ci_low=p.low,
                             ci_high=p.high, count=p.count, n=p.n, reference=truth,
                             method=p.method + f"; all chains start at ({start[0]:.4g}, {start[1]:.4g})"))
    return rows


def _learned_cell(config: Config, seed: int) -> list[dict[str, Any]]:
    """Train s_theta by DSM on one seed; its Fisher divergence per level; annealed
    Langevin with it, from the same initial points as the exact-score run."""
    target = theory.ncsn_two_modes()
    keys = _keys(seed)
    sigmas = config.schedule.sigmas()
    model = config.network.build(jax.random.fold_in(keys["train"], 0), DIM)
    trained = train_dsm(
        model, eqx.Partial(config.noise_family.sample_base, target), sigmas,
        key=jax.random.fold_in(keys["train"], 1),
        training=DSMTraining(optimiser=AdamSpec(config.learning_rate), steps=config.train_steps,
                             batch_size=config.batch_size, record_every=config.loss_record_every),
    )
    coordinates = _coordinates(config, "learned")
    rows = [
        _row(sweep="learned", sampler="learned", seed=seed, step=int(step), metric="dsm_loss", value=float(loss),
             method=f"mean sigma^2-weighted DSM loss over {config.loss_record_every} steps "
                    f"(batch {config.batch_size})", **coordinates)
        for step, loss in zip(trained.steps, trained.losses)
    ]
    for level, sigma in enumerate(sigmas):
        law = config.noise_family.law(target, float(sigma))
        key = jax.random.fold_in(keys["fisher"], level)
        fisher = theory.fisher_divergence(law, score_at_level(trained.model, float(sigma)), key=key,
                                          method=theory.MonteCarlo(config.fisher_samples))
        scale = theory.fisher_divergence(law, lambda x: jnp.zeros_like(x), key=key,
                                         method=theory.MonteCarlo(config.fisher_samples))
        for metric, estimate in (("fisher_divergence", fisher), ("expected_squared_score", scale)):
            low, high = estimate.interval()
            rows.append(_row(sweep="learned", sampler="learned", seed=seed, step=level + 1, sigma=float(sigma),
                             metric=metric, value=estimate.value, error=estimate.error, ci_low=low, ci_high=high,
                             n=config.fisher_samples, method=estimate.method, **coordinates))

    single = dataclasses.replace(config, seeds=(seed,))
    reference = _Reference(single, target, floor_seed=config.seeds[0])
    x0s = _initial_points(single, config.initial_law, config.n_chains, target)
    chains = _annealed_batch(trained.model, x0s, _seed_keys(single, "learned"),
                             jnp.asarray([config.annealed_step_size]), config.schedule,
                             config.steps_per_level, config.record_every)
    points, steps, chain_sigmas = _all_steps(single, chains)
    rows += _chain_rows(single, target, reference, points, sweep="baseline", sampler="learned", steps=steps,
                        sigmas=chain_sigmas, coordinates=coordinates,
                        distribution_steps=lambda step: step % config.w1_every == 0, kl_salt=3)
    if seed == config.seeds[0]:
        rows += _position_rows(points[0, -1], sweep="samples", sampler="learned", seed=seed, step=int(steps[-1]))
    return rows


def _final_only(step: int, last: int) -> bool:
    return step == last


def _step_size_cell(config: Config, sampler: str) -> list[dict[str, Any]]:
    """Plain alphas or annealed eps values, all at once (vmapped), final metrics per value."""
    target = theory.ncsn_two_modes()
    reference = _Reference(config, target, floor_seed=config.seeds[0])
    x0s = _initial_points(config, config.initial_law, config.n_chains, target)
    if sampler == "plain":
        values = config.sweep_langevin_step_sizes
        chains = _plain_batch(ExactScore(target), x0s, _seed_keys(config, "plain", 1), jnp.asarray(values),
                              config.langevin_steps, config.record_every)
        sweep, coordinate = "langevin_step_size", "langevin_step_size"
    else:
        values = config.sweep_annealed_step_sizes
        chains = _annealed_batch(_exact_score(config, target), x0s, _seed_keys(config, "annealed", 1),
                                 jnp.asarray(values), config.schedule, config.steps_per_level, config.record_every)
        sweep, coordinate = "annealed_step_size", "annealed_step_size"
    trajectory = np.asarray(chains.trajectory)  # (A, S, R, n, 2)
    steps = np.asarray(chains.steps[0, 0])
    sigmas = np.asarray(chains.sigmas[0, 0], np.float64)
    rows = []
    for a, value in enumerate(values):
        rows += _chain_rows(
            config, target, reference, trajectory[a], sweep=sweep, sampler=sampler, steps=steps, sigmas=sigmas,
            coordinates=_coordinates(config, sampler, **{coordinate: float(value)}),
            distribution_steps=functools.partial(_final_only, last=int(steps[-1])), kl_salt=10 + a,
        )
    return rows


def _annealed_shape_cell(config: Config, *, n_levels: int | None = None, steps_per_level: int | None = None):
    """Annealed Langevin with another L (same end points) or another T."""
    target = theory.ncsn_two_modes()
    reference = _Reference(config, target, floor_seed=config.seeds[0])
    schedule = config.schedule if n_levels is None else config.schedule.with_levels(n_levels)
    t = config.steps_per_level if steps_per_level is None else steps_per_level
    total = schedule.n_levels * t
    record = t  # one record per level: the mode weights as the levels go down
    x0s = _initial_points(config, config.initial_law, config.n_chains, target)
    salt = 100 + (n_levels or 0) if steps_per_level is None else 10_000 + steps_per_level
    chains = _annealed_batch(_exact_score(config, target), x0s, _seed_keys(config, "annealed", salt),
                             jnp.asarray([config.annealed_step_size]), schedule, t, record)
    points, steps, sigmas = _all_steps(config, chains)
    sweep = "n_levels" if steps_per_level is None else "steps_per_level"
    return _chain_rows(
        config, target, reference, points, sweep=sweep, sampler="annealed", steps=steps, sigmas=sigmas,
        coordinates=_coordinates(config, "annealed", n_levels=schedule.n_levels, steps_per_level=t),
        distribution_steps=functools.partial(_final_only, last=total), kl_salt=salt,
    )


def _chain_length_cell(config: Config) -> list[dict[str, Any]]:
    """Plain Langevin continued to each length in `sweep_langevin_steps` (one chain per
    seed and start point, segment after segment), final metrics at each length."""
    target = theory.ncsn_two_modes()
    reference = _Reference(config, target, floor_seed=config.seeds[0])
    x = _initial_points(config, config.initial_law, config.n_chains, target)
    done = 0
    rows = []
    for index, length in enumerate(sorted(config.sweep_langevin_steps)):
        segment = length - done
        chains = _plain_batch(ExactScore(target), x, _seed_keys(config, "plain", 1000 + index),
                              jnp.asarray([config.langevin_step_size]), segment, segment)
        x = chains.samples[0]
        done = length
        rows += _chain_rows(
            config, target, reference, np.asarray(x)[:, None], sweep="langevin_steps", sampler="plain",
            steps=np.array([length]), sigmas=np.array([np.nan]),
            coordinates=_coordinates(config, "plain", langevin_steps=length),
            distribution_steps=lambda step: True, kl_salt=1000 + index,
        )
    return rows


def _chains_or_start_cell(config: Config, *, n_chains: int | None = None, law_index: int | None = None):
    """Plain and annealed Langevin with another chain count or another initial law."""
    target = theory.ncsn_two_modes()
    reference = _Reference(config, target, floor_seed=config.seeds[0])
    law = config.initial_law if law_index is None else config.sweep_initial_laws[law_index]
    n = config.n_chains if n_chains is None else n_chains
    x0s = _initial_points(config, law, n, target)
    sweep = "n_chains" if n_chains is not None else "initial_law"
    salt = 20_000 + (n_chains if n_chains is not None else 0) + 100_000 * (0 if law_index is None else law_index + 1)
    coordinates = {"n_chains": n, "initial_law": law.label()}
    plain = _plain_batch(ExactScore(target), x0s, _seed_keys(config, "plain", salt),
                         jnp.asarray([config.langevin_step_size]), config.langevin_steps, config.langevin_steps)
    annealed = _annealed_batch(_exact_score(config, target), x0s, _seed_keys(config, "annealed", salt),
                               jnp.asarray([config.annealed_step_size]), config.schedule, config.steps_per_level,
                               config.schedule.n_levels * config.steps_per_level)
    rows = []
    for sampler, chains in (("plain", plain), ("annealed", annealed)):
        points, steps, sigmas = _all_steps(config, chains)
        rows += _chain_rows(
            config, target, reference, points, sweep=sweep, sampler=sampler, steps=steps, sigmas=sigmas,
            coordinates=_coordinates(config, sampler, **coordinates),
            distribution_steps=functools.partial(_final_only, last=int(steps[-1])), kl_salt=salt + len(rows),
        )
    return rows


def cells(config: Config) -> list[tuple[str, Callable[[], list[dict[str, Any]]]]]:
    """The study's cells, in order: (cell id, function returning tidy rows)."""
    result: list[tuple[str, Callable[[], list[dict[str, Any]]]]] = [
        ("baseline", functools.partial(_baseline_cell, config)),
    ]
    if config.learned:
        result += [(f"learned_seed={seed}", functools.partial(_learned_cell, config, seed)) for seed in config.seeds]
    if config.sweep_langevin_step_sizes:
        result.append(("langevin_step_size", functools.partial(_step_size_cell, config, "plain")))
    if config.sweep_annealed_step_sizes:
        result.append(("annealed_step_size", functools.partial(_step_size_cell, config, "annealed")))
    result += [(f"n_levels={n}", functools.partial(_annealed_shape_cell, config, n_levels=n))
               for n in config.sweep_n_levels]
    result += [(f"steps_per_level={t}", functools.partial(_annealed_shape_cell, config, steps_per_level=t))
               for t in config.sweep_steps_per_level]
    if config.sweep_langevin_steps:
        result.append(("langevin_steps", functools.partial(_chain_length_cell, config)))
    result += [(f"n_chains={n}", functools.partial(_chains_or_start_cell, config, n_chains=n))
               for n in config.sweep_n_chains]
    result += [(f"initial_law={i}", functools.partial(_chains_or_start_cell, config, law_index=i))
               for i in range(len(config.sweep_initial_laws))]
    return result


# --------------------------------------------------------------------------------------
# Summary, run, main.


def summarise(table: pd.DataFrame, *, confidence: float = 0.95) -> pd.DataFrame:
    """Headline numbers of the baseline: per sampler, the final weight of mode (5, 5)
    pooled over seeds (all chains are independent, so the pooled count is binomial) with
    its Clopper-Pearson interval, the mean W1 over seeds with its standard error next to
    the W1 floor, and the histogram KL; plus the learned score's Fisher divergence per
    level (mean over seeds).

    Args:
        table: the study's tidy table.
        confidence: of the pooled intervals.

    Returns:
        A DataFrame with one row per (quantity, sampler or level).
    """
    out = []
    baseline = table[table["sweep"] == "baseline"]
    for sampler, rows in baseline.groupby("sampler", sort=False):
        last = rows[rows["step"] == rows["step"].max()]
        weight = last[(last["metric"] == "mode_weight") & (last["mode"] == 0)]
        pooled = binomial_proportion(int(weight["count"].sum()), int(weight["n"].sum()), confidence=confidence)
        out.append({"quantity": "weight of mode (5,5)", "sampler": sampler, "sigma": math.nan,
                    "value": pooled.value, "error": pooled.error, "ci_low": pooled.low, "ci_high": pooled.high,
                    "reference": TRUE_WEIGHTS[0], "seeds": len(weight)})
        for metric, label in (("w1", "W1 to exact draws"), ("mode_kl", "KL(mode histogram || weights)")):
            values = last[last["metric"] == metric]
            if values.empty:
                continue
            error = values["value"].std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else math.nan
            reference = values["reference"].mean()
            out.append({"quantity": label, "sampler": sampler, "sigma": math.nan, "value": values["value"].mean(),
                        "error": error, "ci_low": math.nan, "ci_high": math.nan, "reference": reference,
                        "seeds": len(values)})
    fisher = table[(table["sweep"] == "learned") & (table["metric"] == "fisher_divergence")]
    scale = table[(table["sweep"] == "learned") & (table["metric"] == "expected_squared_score")]
    for sigma, rows in fisher.groupby("sigma", sort=False):
        norm = scale[scale["sigma"] == sigma]["value"].mean()
        error = math.sqrt((rows["error"] ** 2).sum()) / len(rows)
        out.append({"quantity": "Fisher divergence of learned score", "sampler": "learned", "sigma": sigma,
                    "value": rows["value"].mean(), "error": error, "ci_low": math.nan, "ci_high": math.nan,
                    "reference": norm, "seeds": len(rows)})
    return pd.DataFrame(out)


def _format_summary(summary: pd.DataFrame) -> str:
    lines = []
    for _, row in summary.iterrows():
        if row["quantity"].startswith("weight"):
            lines.append(f"  {row['sampler']:>8}: weight of (5,5) = {row['value']:.3f} "
                         f"[{row['ci_low']:.3f}, {row['ci_high']:.3f}] (truth {row['reference']:.1f})")
        elif row["quantity"].startswith("W1"):
            lines.append(f"  {row['sampler']:>8}: W1 = {row['value']:.3f} +- {row['error']:.3f} "
                         f"(floor {row['reference']:.3f})")
        elif row["quantity"].startswith("KL"):
            lines.append(f"  {row['sampler']:>8}: KL(histogram) = {row['value']:.2e} "
                         f"(exact-sampler floor {row['reference']:.1e})")
        else:
            lines.append(f"  sigma={row['sigma']:7.3f}: Fisher divergence = {row['value']:.3g} +- "
                         f"{row['error']:.2g} (E|score|^2 = {row['reference']:.3g})")
    return "\n".join(lines)


def run(config: Config, store: ResultStore | None = None) -> Results:
    """Run every cell not yet saved, draw the figures (when saving), return the table.

    Args:
        config: a validated `Config`.
        store: where to save and resume; None keeps everything in memory (no figures).

    Returns:
        `Results` with the tidy table of all cells.
    """
    table = run_cells(store, cells(config))
    summary = summarise(table, confidence=config.confidence)
    print("headline (baseline, final step):\n" + _format_summary(summary), file=sys.stderr, flush=True)
    run_dir = None
    if store is not None:
        # Imported here so that importing the study never imports matplotlib.
        from figures.langevin_mixing import draw

        run_dir = store.run_dir
        for path in draw(run_dir):
            print(f"figure: {path}", file=sys.stderr, flush=True)
    return Results(table=table, run_dir=run_dir)


def main(argv: list[str] | None = None) -> None:
    """Parse the command line into a Config and run it."""
    invocation = parse_config(Config, PRESETS, argv, default_preset="ncsn-code")
    run(invocation.config, invocation.open_store())


if __name__ == "__main__":
    main()
