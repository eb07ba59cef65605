"""Reverse diffusion on a Gaussian grid: score error vs discretisation error, sampler by sampler.

On the equal-weight grid of K Gaussians N(m_k, 0.1 I) in R^2 (theory.gaussian_grid) the
score of every noised marginal p_t is exact, so each sampler can be run twice from the
same prior draws and the same noise: once with the exact score, once with a learned
noise predictor eps_theta(x, t) (an MLP trained by Ho et al.'s simple loss). Then

- W1(exact, NFE) - W1 floor          = the discretisation error of the sampler at that NFE,
- W1(learned, large NFE) - W1(exact, large NFE) = the error due to the learned score,

where W1 is the exact optimal-transport distance between the n generated points and n
fresh target draws and the floor is W1 between two independent n-samples of the target
(what a perfect sampler scores). Samplers: the reverse-time SDE with Euler-Maruyama and
with ShARK (strong order 1.5 for additive noise), the probability-flow ODE with fixed-step
Euler and Heun and with adaptive Tsit5 under a PID controller (its NFE is an outcome),
DDPM ancestral sampling and DDIM (eta = 0) on evenly respaced steps of the T = 1000 chain.
All continuous samplers use the VP SDE (beta 0.1 -> 20) from t = 1 to t = 1e-3; the
discrete ones its DDPM discretisation (linear betas 1e-4 -> 0.02), which reads the same
network through `theory.diffusion_samplers.DiscreteEpsilon`.

Also measured: the weight of each mode (nearest-mode assignment) and its total-variation
distance to the true weights, the fraction of points within 3 standard deviations of
some mode, the wall time per run, the learned score's Fisher divergence to the exact
score at a grid of times t, and whole reverse trajectories of the ODE and the SDE from
the same prior points. Protocol: shared/reference/protocols.md, "Diffusion and score SDEs".

    python -m studies.reverse_diffusion                  # quick preset: 2m41s on 2 CPU cores (measured)
    python -m studies.reverse_diffusion --preset paper
    python -m figures.reverse_diffusion results/reverse_diffusion/quick
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import pathlib
import tempfile
import time
from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

import theory
from models.epsilon_network import EpsilonMLP, EpsilonNetwork, EpsilonTraining, train_epsilon_network
from models.training import EMA, AdamSpec
from studies.pipeline import Progress, ResultStore, config_field, parse_config, run_cells
from theory.ddpm import AbstractBetaSchedule, CosineBetaSchedule, ExactEpsilon, LinearBetaSchedule
from theory.diffusion_samplers import (
    AbstractDiffusionSampler,
    AdaptiveProbabilityFlowSampler,
    DDIMSampler,
    DDPMSampler,
    DiffusionModel,
    DiscreteEpsilon,
    ProbabilityFlowSampler,
    ReverseSDESampler,
    ScoreFromEpsilon,
    Steps,
    Tolerance,
    probability_flow_trajectories,
    reverse_sde_trajectories,
)
from theory.modes import mode_statistics
from theory.sde import VESDE, VPSDE, AbstractSDE, ExactMarginalScore, SubVPSDE

__all__ = [
    "Config",
    "PRESETS",
    "Results",
    "SAMPLERS",
    "cells",
    "main",
    "run",
    "summarise",
]

STUDY = "reverse_diffusion"
DIM = 2
NETWORK_FILE = "epsilon_network.eqx"
"""The trained network, saved in the run directory so that a resumed run reuses it."""

NEAR_MODE_RADIUS = 3.0
"""A point is 'near' mode k within 3 standard deviations (Mahalanobis); an exact draw
is near its own mode with probability 1 - exp(-9/2) = 0.989 in R^2."""


# --------------------------------------------------------------------------------------
# Components named on the command line (strings only here, mapped once).

SDES: dict[str, AbstractSDE] = {
    "vp": VPSDE(beta_min=0.1, beta_max=20.0),
    "subvp": SubVPSDE(beta_min=0.1, beta_max=20.0),
    # sigma_max above the grid's diameter (4 sqrt(2) = 5.7 between opposite corners),
    # Song & Ermon (2020) Technique 1; Song et al. used 50 for CIFAR-10.
    "ve": VESDE(sigma_min=0.01, sigma_max=10.0),
}

SCHEDULES: dict[str, AbstractBetaSchedule] = {
    "linear": LinearBetaSchedule(beta_start=1e-4, beta_end=0.02, n_steps=1000),
    "cosine": CosineBetaSchedule(n_steps=1000),
}

SAMPLERS: dict[str, AbstractDiffusionSampler] = {
    "sde-em": ReverseSDESampler(solver=diffrax.Euler()),
    "sde-shark": ReverseSDESampler(solver=diffrax.ShARK()),
    "sde-sra1": ReverseSDESampler(solver=diffrax.SRA1()),
    "ode-euler": ProbabilityFlowSampler(solver=diffrax.Euler()),
    "ode-heun": ProbabilityFlowSampler(solver=diffrax.Heun()),
    "ode-tsit5": AdaptiveProbabilityFlowSampler(solver=diffrax.Tsit5()),
    "ode-dopri5": AdaptiveProbabilityFlowSampler(solver=diffrax.Dopri5()),
    "ddpm": DDPMSampler(),
    "ddim": DDIMSampler(eta=0.0),
}

DEFAULT_SAMPLERS = tuple(SAMPLERS[name] for name in ("sde-em", "sde-shark", "ode-euler", "ode-heun", "ode-tsit5", "ddpm", "ddim"))

# The rtol = atol values the adaptive ODE samplers sweep (their NFE is an outcome).
ADAPTIVE_TOLERANCES = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)


def _solver_name(solver) -> str:
    return "euler" if isinstance(solver, diffrax.Euler) else type(solver).__name__.lower()


def sampler_label(sampler: AbstractDiffusionSampler) -> str:
    """A short, file-name-safe name for a sampler in the results, e.g. 'reverse_sde_euler_maruyama'."""
    if isinstance(sampler, ReverseSDESampler):
        name = "euler_maruyama" if isinstance(sampler.solver, diffrax.Euler) else _solver_name(sampler.solver)
        return f"reverse_sde_{name}"
    if isinstance(sampler, ProbabilityFlowSampler):
        return f"pf_ode_{_solver_name(sampler.solver)}"
    if isinstance(sampler, AdaptiveProbabilityFlowSampler):
        return f"pf_ode_{_solver_name(sampler.solver)}_adaptive"
    if isinstance(sampler, DDPMSampler):
        return "ddpm_ancestral"
    if isinstance(sampler, DDIMSampler):
        return f"ddim_eta{sampler.eta:g}"
    raise TypeError(f"sampler must be one of the theory.diffusion_samplers samplers, got {sampler!r}")


def sampler_settings(sampler: AbstractDiffusionSampler, nfe_grid: tuple[int, ...]) -> tuple[float, ...]:
    """The budgets a sampler sweeps, as the numbers stored in the `setting` column: step
    counts NFE // (evaluations per step) aiming at `nfe_grid`, or ADAPTIVE_TOLERANCES."""
    if isinstance(sampler, AdaptiveProbabilityFlowSampler):
        return ADAPTIVE_TOLERANCES
    return tuple(float(s) for s in sorted({max(1, int(nfe) // sampler.evaluations_per_step) for nfe in nfe_grid}))


def _budget(sampler: AbstractDiffusionSampler, setting: float):
    """The typed budget a `setting` number stands for: a tolerance or a step count."""
    return Tolerance(setting) if isinstance(sampler, AdaptiveProbabilityFlowSampler) else Steps(int(setting))


def parse_samplers(text: str) -> tuple[AbstractDiffusionSampler, ...]:
    """Comma-separated sampler names, e.g. 'sde-em,ode-heun,ddim' (see SAMPLERS)."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in SAMPLERS]
    if unknown or not names:
        raise ValueError(f"choose from {list(SAMPLERS)}, got {unknown or text!r}")
    return tuple(SAMPLERS[name] for name in names)


def parse_network(text: str) -> EpsilonMLP:
    """'WIDTH,DEPTH' or 'WIDTH,DEPTH,EMBEDDING_DIM', e.g. '128,3' (data_scale of the 9-grid)."""
    values = [int(item) for item in text.split(",")]
    if len(values) not in (2, 3):
        raise ValueError("use WIDTH,DEPTH or WIDTH,DEPTH,EMBEDDING_DIM")
    return EpsilonMLP(*values[:2], *(values[2:] or [32]), data_scale=GRID9_DATA_SCALE)


GRID9_DATA_SCALE = math.sqrt(8.0 / 3.0 + 0.1)
"""Per-coordinate standard deviation of the 9-mode grid: means uniform on {-2, 0, 2}
(variance 8/3) plus the component variance 0.1."""


# --------------------------------------------------------------------------------------
# Config.


@dataclasses.dataclass(frozen=True)
class Config:
    """One run of the reverse-diffusion study."""

    grid_modes: int = config_field(9, "target: theory.gaussian_grid(K), K in {2, 4, 9} equal-weight N(m_k, 0.1 I)")
    sde: AbstractSDE = config_field(VPSDE(beta_min=0.1, beta_max=20.0), "forward SDE of the continuous samplers", parse=SDES)
    schedule: AbstractBetaSchedule = config_field(
        LinearBetaSchedule(), "beta schedule of DDPM and DDIM (Ho et al.: linear 1e-4..0.02, T=1000)", parse=SCHEDULES
    )
    samplers: tuple[AbstractDiffusionSampler, ...] = config_field(
        DEFAULT_SAMPLERS, f"comma-separated samplers from {list(SAMPLERS)}", parse=parse_samplers
    )
    nfe_grid: tuple[int, ...] = config_field(
        (10, 20, 50, 100, 200, 500, 1000),
        "target numbers of score evaluations; fixed-step samplers take NFE // (evaluations per step) "
        "steps; the adaptive ODE sweeps its own tolerances instead",
    )
    seeds: tuple[int, ...] = config_field((0, 1, 2), "seeds; each draws its own prior points, noise and reference sample")
    n_samples: int = config_field(1000, "points per sampler, budget and seed; also the size of the fresh target sample")
    floor_repeats: int = config_field(5, "independent target-sample pairs averaged in the W1 sampling floor")
    network: EpsilonMLP = config_field(
        EpsilonMLP(width=128, depth=3, embedding_dim=32, data_scale=GRID9_DATA_SCALE),
        "eps_theta as WIDTH,DEPTH[,EMBEDDING_DIM] (SiLU MLP on [c_in(t) x, sinusoidal emb(t)])",
        parse=parse_network,
    )
    train_steps: int = config_field(6000, "Adam steps of the simple loss (fresh target draws every step)")
    batch_size: int = config_field(512, "examples per training step, one t ~ U[t_min, 1] each")
    learning_rate: float = config_field(1e-3, "Adam learning rate (Ho et al. 2e-4 for U-Nets; 1e-3 suits this MLP)")
    train_t_min: float = config_field(1e-3, "training times t ~ U[train_t_min, 1]; samplers must stop at t_end >= it")
    ema_decay: float = config_field(0.999, "exponential moving average of the weights (0: none)")
    loss_record_every: int = config_field(500, "training loss averaged over blocks of this many steps")
    fisher_times: tuple[float, ...] = config_field(
        (1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0), "times t at which the learned score's Fisher divergence is measured"
    )
    fisher_samples: int = config_field(10_000, "draws of p_t per Fisher-divergence estimate")
    snapshot_nfes: tuple[int, ...] = config_field((10, 100, 1000), "sample clouds saved for the figure at these NFEs (nearest budget)")
    snapshot_points: int = config_field(500, "points saved per sample cloud")
    trajectory_points: int = config_field(8, "prior points whose reverse ODE and SDE paths are saved")
    trajectory_steps: int = config_field(100, "steps of the saved trajectories (Euler-Maruyama SDE, Heun ODE)")
    draw_figures: bool = config_field(True, "draw the figures into <run>/figures at the end (needs a store)")

    def __post_init__(self):
        _validate(self)

    def training(self) -> EpsilonTraining:
        """The network's optimisation settings."""
        return EpsilonTraining(
            optimiser=AdamSpec(self.learning_rate, clip_norm=1.0),
            steps=self.train_steps,
            batch_size=self.batch_size,
            t_min=self.train_t_min,
            ema=EMA(self.ema_decay) if self.ema_decay != 0 else None,
            record_every=self.loss_record_every,
        )


def _require_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _require_ints(name: str, values, minimum: int, *, distinct: bool = True) -> None:
    if not isinstance(values, tuple) or not values:
        raise ValueError(f"{name} must be a non-empty tuple of integers, got {values!r}")
    for value in values:
        _require_int(name, value, minimum)
    if distinct and len(set(values)) != len(values):
        raise ValueError(f"{name} must not repeat a value, got {values}")


def _validate(config: Config) -> None:
    """Every constraint, checked before any compute; each error names the field and value."""
    if config.grid_modes not in theory.GRID_MEANS:
        raise ValueError(f"grid_modes must be one of {sorted(theory.GRID_MEANS)}, got {config.grid_modes!r}")
    if not isinstance(config.sde, AbstractSDE):
        raise ValueError(f"sde must be an AbstractSDE, got {config.sde!r}")
    if not isinstance(config.schedule, AbstractBetaSchedule):
        raise ValueError(f"schedule must be an AbstractBetaSchedule, got {config.schedule!r}")
    if not isinstance(config.network, EpsilonMLP):
        raise ValueError(f"network must be an EpsilonMLP, got {config.network!r}")
    if not isinstance(config.samplers, tuple) or not config.samplers:
        raise ValueError(f"samplers must be a non-empty tuple of samplers, got {config.samplers!r}")
    for sampler in config.samplers:
        if not isinstance(sampler, AbstractDiffusionSampler):
            raise ValueError(f"samplers must hold AbstractDiffusionSampler objects, got {sampler!r}")
    labels = [sampler_label(sampler) for sampler in config.samplers]
    if len(set(labels)) != len(labels):
        raise ValueError(f"samplers must be distinct, got {labels}")
    _require_ints("nfe_grid", config.nfe_grid, 1)
    _require_ints("seeds", config.seeds, 0)
    _require_ints("snapshot_nfes", config.snapshot_nfes, 1)
    discrete = any(isinstance(s, (DDPMSampler, DDIMSampler)) for s in config.samplers)
    if discrete and max(config.nfe_grid) > config.schedule.n_steps:
        raise ValueError(
            f"nfe_grid must not exceed the schedule's T={config.schedule.n_steps} with DDPM/DDIM samplers, "
            f"got {max(config.nfe_grid)}"
        )
    if discrete:
        # DDPM/DDIM read the network (trained in SDE time) at the SDE time with the same
        # noise-to-signal ratio; an SDE that never gets as noisy as step T of the chain
        # would make them query the network far outside its training range.
        reach = float(config.sde.marginal_std(config.sde.t_max) / config.sde.marginal_scale(config.sde.t_max))
        needed = math.sqrt(config.schedule.one_minus_alpha_bars()[-1] / config.schedule.alpha_bars()[-1])
        if reach < 0.9 * needed:
            raise ValueError(
                f"sde {config.sde!r} reaches a noise-to-signal ratio of {reach:.3g} at T, but the DDPM/DDIM "
                f"schedule needs {needed:.3g}; drop ddpm/ddim from samplers or use an SDE that reaches it (vp, subvp)"
            )
    if max(config.nfe_grid) > 4096:
        raise ValueError(f"nfe_grid must be <= 4096 (the solvers' max_steps), got {max(config.nfe_grid)}")
    for name in ("n_samples", "fisher_samples"):
        _require_int(name, getattr(config, name), 2)
    _require_int("floor_repeats", config.floor_repeats, 2)
    for name in ("trajectory_points", "trajectory_steps", "snapshot_points"):
        _require_int(name, getattr(config, name), 1)
    if config.snapshot_points > config.n_samples:
        raise ValueError(f"snapshot_points must be <= n_samples={config.n_samples}, got {config.snapshot_points}")
    if not isinstance(config.fisher_times, tuple) or not config.fisher_times:
        raise ValueError(f"fisher_times must be a non-empty tuple, got {config.fisher_times!r}")
    for t in config.fisher_times:
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not (math.isfinite(t) and 0 < t <= config.sde.t_max):
            raise ValueError(f"fisher_times must lie in (0, T={config.sde.t_max}], got {t!r}")
    for name in ("learning_rate", "train_t_min", "ema_decay"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    if not isinstance(config.draw_figures, bool):
        raise ValueError(f"draw_figures must be true or false, got {config.draw_figures!r}")
    try:
        training = config.training()
    except ValueError as error:
        raise ValueError(f"training settings: {error}") from None
    for sampler in config.samplers:
        t_end = getattr(sampler, "t_end", None)
        if t_end is not None and t_end < training.t_min:
            raise ValueError(
                f"sampler {sampler_label(sampler)} stops at t_end={t_end}, below the network's training range "
                f"train_t_min={training.t_min}"
            )


PRESETS: dict[str, Config] = {
    # The README figure: 2m41s wall on this 2-core CPU when otherwise idle, 4m22s with other
    # jobs sharing it (measured); training 20 s, 14 sampler cells 4-12 s each.
    "quick": Config(),
    # Error bars: 5 seeds of 2000 points, a longer-trained network, finer Fisher grid.
    "paper": Config(
        seeds=(0, 1, 2, 3, 4),
        n_samples=2000,
        nfe_grid=(10, 20, 30, 50, 100, 200, 300, 500, 1000),
        train_steps=30_000,
        learning_rate=5e-4,
        loss_record_every=1000,
        fisher_times=(1e-3, 2e-3, 5e-3, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0),
        fisher_samples=50_000,
        floor_repeats=10,
        samplers=tuple(SAMPLERS[name] for name in ("sde-em", "sde-shark", "ode-euler", "ode-heun", "ode-tsit5", "ode-dopri5", "ddpm", "ddim")),
    ),
}


# --------------------------------------------------------------------------------------
# Results.

COLUMNS = (
    "sampler", "score", "setting", "nfe", "seed", "metric", "value", "error", "reference",
    "mode", "t", "step", "point", "coordinate", "n", "method",
)


def _row(**values) -> dict[str, Any]:
    unknown = set(values) - set(COLUMNS)
    if unknown:
        raise KeyError(f"unknown columns {sorted(unknown)}")
    return {column: values.get(column, math.nan) for column in COLUMNS}


@dataclasses.dataclass(frozen=True)
class Results:
    """The study's tidy table (one row per observation) and where it was saved.

    Columns: sampler, score (exact | learned), setting (steps, or rtol = atol for the
    adaptive ODE), nfe (mean score evaluations per sample), seed, metric, value, error
    (standard error; 0 for exact OT values; NaN where none applies), reference (the
    W1 floor for w1, the true weight for mode_weight, ...), mode, t, step, point,
    coordinate, n (points behind the value), method.
    """

    table: pd.DataFrame
    run_dir: pathlib.Path | None = None

    def summary(self) -> pd.DataFrame:
        """Headline numbers: see `summarise`."""
        return summarise(self.table)


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Headline numbers per sampler and score kind, at the smallest and the largest budget.

    Columns: sampler, score, nfe, w1 (mean over seeds), w1_se (its standard error over
    seeds), floor (the W1 sampling floor), on_mode (mean fraction within 3 sd of a mode;
    exact i.i.d. draws: 0.989), and for learned rows gap / gap_se: W1(learned) -
    W1(exact) at the same budget, paired by seed (same prior points, noise and
    reference sample), mean and standard error, at the largest budget only (an adaptive
    solver's budget is a tolerance, which buys different NFEs with the two scores; at
    the tightest one both have converged).
    """
    w1 = table[table.metric == "w1"]
    floor = table[table.metric == "w1_floor"]["value"]
    floor_value = float(floor.iloc[0]) if len(floor) else math.nan
    on_mode = table[table.metric == "mass_near_any_mode"]
    rows = []
    for (sampler, score), group in w1.groupby(["sampler", "score"], sort=False):
        by_budget = group.groupby("setting").agg(nfe=("nfe", "mean"), w1=("value", "mean"), sd=("value", "std"),
                                                 k=("value", "size"))
        near = on_mode[(on_mode.sampler == sampler) & (on_mode.score == score)].groupby("setting")["value"].mean()
        exact = w1[(w1.sampler == sampler) & (w1.score == "exact")].set_index(["setting", "seed"])["value"]
        for setting in dict.fromkeys((by_budget.nfe.idxmin(), by_budget.nfe.idxmax())):
            entry = by_budget.loc[setting]
            gap, gap_se = math.nan, math.nan
            if score == "learned" and setting == by_budget.nfe.idxmax():
                mine = group[group.setting == setting].set_index(["setting", "seed"])["value"]
                paired = (mine - exact.reindex(mine.index)).dropna()
                if len(paired):
                    gap = float(paired.mean())
                    gap_se = float(paired.std() / math.sqrt(len(paired))) if len(paired) > 1 else math.nan
            rows.append({
                "sampler": sampler,
                "score": score,
                "nfe": float(entry.nfe),
                "w1": float(entry.w1),
                "w1_se": float(entry.sd / math.sqrt(entry.k)) if entry.k > 1 else math.nan,
                "floor": floor_value,
                "on_mode": float(near.get(setting, math.nan)),
                "gap": gap,
                "gap_se": gap_se,
            })
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------
# Keys: one named stream per purpose and seed, so every cell is reproducible alone and
# all samplers of a seed share their prior points, noise and reference sample.

_PURPOSES = ("prior", "noise", "reference", "train", "init", "fisher", "floor", "trajectory")


def _key(seed: int, purpose: str) -> jax.Array:
    return jax.random.fold_in(jax.random.key(seed), _PURPOSES.index(purpose))


def _target(config: Config) -> theory.MixtureOfGaussians:
    return theory.gaussian_grid(config.grid_modes)


def _prior_points(config: Config, seed: int, n: int) -> jax.Array:
    return config.sde.prior(DIM).sample(_key(seed, "prior"), n).astype(jnp.float32)


# --------------------------------------------------------------------------------------
# The learned model, trained once per run and saved beside the results.


class _NetworkHolder:
    """Trains the network on first use, or loads it from the run directory on resume."""

    def __init__(self, config: Config, store: ResultStore | None, progress: Progress):
        self.config = config
        self.store = store
        self.progress = progress
        self.network: EpsilonNetwork | None = None
        self.losses: tuple[np.ndarray, np.ndarray] | None = None

    def _template(self) -> EpsilonNetwork:
        return self.config.network.build(_key(self.config.seeds[0], "init"), DIM, self.config.sde)

    def _path(self) -> pathlib.Path | None:
        return None if self.store is None else self.store.run_dir / NETWORK_FILE

    def train(self) -> EpsilonNetwork:
        target = _target(self.config)
        started = time.perf_counter()

        def on_block(step, loss):
            if step % max(self.config.train_steps // 5, self.config.loss_record_every) == 0:
                self.progress.update(step=step, total_steps=self.config.train_steps, loss=loss,
                                     elapsed_s=time.perf_counter() - started)

        result = train_epsilon_network(
            self._template(), target.sample, key=_key(self.config.seeds[0], "train"),
            training=self.config.training(), on_block=on_block,
        )
        self.network = result.model if result.ema_model is None else result.ema_model
        self.losses = (np.asarray(result.steps), np.asarray(result.losses, np.float64))
        path = self._path()
        if path is not None:
            # Written before the training cell's CSV marks it done, and atomically.
            descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            os.close(descriptor)
            try:
                eqx.tree_serialise_leaves(temporary, self.network)
                os.replace(temporary, path)
            finally:
                if os.path.exists(temporary):
                    os.unlink(temporary)
        return self.network

    def get(self) -> EpsilonNetwork:
        if self.network is not None:
            return self.network
        path = self._path()
        if path is not None and path.exists():
            self.network = eqx.tree_deserialise_leaves(path, self._template())
            return self.network
        return self.train()


def _models(config: Config, network: EpsilonNetwork | None) -> dict[str, DiffusionModel]:
    """The exact model and (given a network) the learned one, as samplers read them."""
    target = _target(config)
    models = {
        "exact": DiffusionModel(
            sde=config.sde,
            score_fn=ExactMarginalScore(config.sde, target),
            schedule=config.schedule,
            epsilon_fn=ExactEpsilon(config.schedule, target),
        )
    }
    if network is not None:
        models["learned"] = DiffusionModel(
            sde=config.sde,
            score_fn=ScoreFromEpsilon(config.sde, network),
            schedule=config.schedule,
            epsilon_fn=DiscreteEpsilon(config.sde, config.schedule, network),
        )
    return models


# --------------------------------------------------------------------------------------
# Metrics of a cloud of points.


def _nearest_mode(target, points: np.ndarray) -> np.ndarray:
    """argmax_k r_k(x): the component with the largest posterior probability, in float64
    NumPy (log w_k + log N(x; m_k, S_k))."""
    means = np.asarray(target.means, np.float64)
    covs = np.asarray(target.covs, np.float64)
    precisions = np.linalg.inv(covs)
    diff = points[None, :, :] - means[:, None, :]
    quadratic = np.einsum("knd,kde,kne->kn", diff, precisions, diff)
    logits = np.log(np.asarray(target.weights, np.float64))[:, None] - 0.5 * quadratic - 0.5 * np.linalg.slogdet(covs)[1][:, None]
    return np.argmax(logits, axis=0)


def _mode_rows(target, points: np.ndarray, common: dict[str, Any]) -> list[dict[str, Any]]:
    """Nearest-mode weights (with binomial s.e.), their TV distance to the truth, and the
    fraction within 3 standard deviations of some mode."""
    n = points.shape[0]
    weights = np.asarray(target.weights, np.float64)
    assigned = _nearest_mode(target, points)
    counts = np.bincount(assigned, minlength=weights.size)
    rows = []
    for k, truth in enumerate(weights):
        p = counts[k] / n
        rows.append(_row(metric="mode_weight", mode=k, value=p, error=math.sqrt(p * (1 - p) / n), reference=truth,
                         n=n, method="nearest mode (largest responsibility)", **common))
    rows.append(_row(metric="mode_weight_tv", value=0.5 * float(np.abs(counts / n - weights).sum()), error=math.nan,
                     n=n, method="1/2 sum_k |w_hat_k - w_k|", **common))
    stats = mode_statistics(points, target, radius=NEAR_MODE_RADIUS)
    p = stats.mass_near_any_mode
    rows.append(_row(metric="mass_near_any_mode", value=p, error=math.sqrt(p * (1 - p) / n),
                     reference=1.0 - math.exp(-NEAR_MODE_RADIUS**2 / 2), n=n,
                     method=f"Mahalanobis distance <= {NEAR_MODE_RADIUS:g} to some mode", **common))
    rows.append(_row(metric="modes_covered", value=stats.modes_covered, reference=weights.size, n=n,
                     method="modes holding >= 1/4 of their weight within 3 sd", **common))
    return rows


def _position_rows(points: np.ndarray, common: dict[str, Any], metric: str) -> list[dict[str, Any]]:
    rows = []
    for point, xy in enumerate(np.asarray(points, np.float64)):
        for coordinate, value in enumerate(xy):
            rows.append(_row(metric=metric, point=point, coordinate=coordinate, value=float(value), **common))
    return rows


@functools.lru_cache(maxsize=8)
def _w1_floor(grid_modes: int, n: int, repeats: int, seed: int) -> theory.Estimate:
    """The W1 sampling floor (a pure function of its arguments, cached: every cell of a
    run reads the same one)."""
    return theory.sampling_floor(theory.gaussian_grid(grid_modes), n, key=_key(seed, "floor"), repeats=repeats)


def _reference_points(config: Config, seed: int) -> np.ndarray:
    return np.asarray(_target(config).sample(_key(seed, "reference"), config.n_samples), np.float64)


# --------------------------------------------------------------------------------------
# Cells.


def _floor_cell(config: Config) -> list[dict[str, Any]]:
    """The W1 sampling floor, and the mode statistics of exact i.i.d. draws (the best any
    sampler can do at this n), plus a target cloud for the figures."""
    target = _target(config)
    floor = _w1_floor(config.grid_modes, config.n_samples, config.floor_repeats, config.seeds[0])
    rows = [_row(sampler="target", score="exact", metric="w1_floor", value=floor.value, error=floor.error,
                 n=config.n_samples, method=floor.method)]
    for seed in config.seeds:
        draws = np.asarray(target.sample(jax.random.fold_in(_key(seed, "floor"), 1), config.n_samples), np.float64)
        rows += _mode_rows(target, draws, dict(sampler="target", score="exact", seed=seed))
    rows += _position_rows(_reference_points(config, config.seeds[0])[: config.snapshot_points],
                           dict(sampler="target", score="exact", seed=config.seeds[0]), "sample_position")
    return rows


def _training_cell(config: Config, holder: _NetworkHolder) -> list[dict[str, Any]]:
    holder.train()
    steps, losses = holder.losses
    return [
        _row(sampler="network", score="learned", metric="train_loss", step=int(step), value=float(loss),
             n=config.loss_record_every * config.batch_size,
             method=f"mean simple loss over {config.loss_record_every} steps (raw weights)")
        for step, loss in zip(steps, losses)
    ]


def _fisher_cell(config: Config, holder: _NetworkHolder) -> list[dict[str, Any]]:
    """F(t) = E_{p_t} ||s_theta(x, t) - grad log p_t(x)||^2 at each t, with the scale
    E ||grad log p_t||^2 as reference; also s(t)^2 F(t), the error in epsilon units (its
    average over t is the excess simple loss)."""
    target = _target(config)
    score = ScoreFromEpsilon(config.sde, holder.get())
    batched = jax.jit(jax.vmap(score, in_axes=(0, None)))
    rows = []
    for index, t in enumerate(config.fisher_times):
        law = config.sde.noised_target(target, jnp.asarray(t, jnp.float32))
        key = jax.random.fold_in(_key(config.seeds[0], "fisher"), index)
        estimate = theory.fisher_divergence(
            law, lambda x, t=t: batched(jnp.asarray(x, jnp.float32), jnp.float32(t)), key=key,
            method=theory.MonteCarlo(config.fisher_samples),
        )
        scale = theory.fisher_divergence(law, lambda x: jnp.zeros_like(x), key=key,
                                         method=theory.MonteCarlo(config.fisher_samples))
        std2 = float(config.sde.marginal_std(t)) ** 2
        common = dict(sampler="network", score="learned", t=float(t), n=config.fisher_samples)
        rows.append(_row(metric="fisher_divergence", value=estimate.value, error=estimate.error,
                         reference=scale.value, method=estimate.method, **common))
        rows.append(_row(metric="score_second_moment", value=scale.value, error=scale.error,
                         method="E ||grad log p_t||^2, " + scale.method, **common))
        rows.append(_row(metric="epsilon_error", value=std2 * estimate.value, error=std2 * estimate.error,
                         method="s(t)^2 F(t) = E ||eps_theta - eps*||^2", **common))
    return rows


def _snapshot_settings(sampler: AbstractDiffusionSampler, settings: tuple[float, ...], nfes: dict[float, float],
                       targets: tuple[int, ...]) -> set[float]:
    chosen = set()
    for target_nfe in targets:
        chosen.add(min(settings, key=lambda s: abs(math.log(nfes[s] / target_nfe))))
    return chosen


def _sampler_cell(config: Config, sampler: AbstractDiffusionSampler, kind: str, holder: _NetworkHolder,
                  progress: Progress) -> list[dict[str, Any]]:
    """Every budget and seed of one sampler with one score: W1, mode statistics, wall time,
    and the sample clouds of the snapshot budgets (first seed)."""
    target = _target(config)
    model = _models(config, holder.get() if kind == "learned" else None)[kind]
    settings = sampler_settings(sampler, config.nfe_grid)
    floor = _w1_floor(config.grid_modes, config.n_samples, config.floor_repeats, config.seeds[0])
    # Compile once on the cheapest budget, untimed: n_steps and tolerances are traced, so
    # the timed runs below reuse this compilation.
    warm_x = _prior_points(config, config.seeds[0], config.n_samples)
    cheapest = min(settings) if not isinstance(sampler, AdaptiveProbabilityFlowSampler) else max(settings)
    jax.block_until_ready(sampler.sample(model, warm_x, key=_key(config.seeds[0], "noise"), budget=_budget(sampler, cheapest)))
    rows: list[dict[str, Any]] = []
    outputs = {}
    for seed in config.seeds:
        x_init = _prior_points(config, seed, config.n_samples)
        reference = _reference_points(config, seed)
        w1_by_nfe = {}
        for setting in settings:
            started = time.perf_counter()
            output = jax.block_until_ready(sampler.sample(model, x_init, key=_key(seed, "noise"), budget=_budget(sampler, setting)))
            wall = time.perf_counter() - started
            samples = np.asarray(output.samples, np.float64)
            nfe = float(np.mean(np.asarray(output.nfe)))
            common = dict(sampler=sampler_label(sampler), score=kind, setting=float(setting), nfe=nfe, seed=seed)
            if not np.all(np.isfinite(samples)):
                rows.append(_row(metric="nonfinite_fraction", value=float(np.mean(~np.isfinite(samples).all(axis=1))),
                                 n=samples.shape[0], **common))
                continue
            w1 = theory.wasserstein(samples, reference)
            rows.append(_row(metric="w1", value=w1.value, error=w1.error, reference=floor.value,
                             n=samples.shape[0], method=w1.method, **common))
            w1_by_nfe[round(nfe)] = round(w1.value, 3)
            rows.append(_row(metric="wall_time_s", value=wall, n=samples.shape[0],
                             method="sampling only, after compilation", **common))
            rows.append(_row(metric="nfe_max", value=float(np.max(np.asarray(output.nfe))), n=samples.shape[0], **common))
            rows += _mode_rows(target, samples, common)
            if seed == config.seeds[0]:
                outputs[float(setting)] = (nfe, samples[: config.snapshot_points], common)
        progress.note(f"  {sampler_label(sampler)} {kind} seed={seed} | W1 by NFE {w1_by_nfe} (floor {floor.value:.3f})")
    if outputs:
        nfes = {setting: value[0] for setting, value in outputs.items()}
        for setting in _snapshot_settings(sampler, tuple(outputs), nfes, config.snapshot_nfes):
            _, points, common = outputs[setting]
            rows += _position_rows(points, common, "sample_position")
    return rows


def _trajectory_cell(config: Config, holder: _NetworkHolder) -> list[dict[str, Any]]:
    """Reverse paths of the probability-flow ODE (Heun) and the reverse SDE
    (Euler-Maruyama) from the same prior points, exact and learned scores."""
    seed = config.seeds[0]
    x_init = config.sde.prior(DIM).sample(_key(seed, "trajectory"), config.trajectory_points).astype(jnp.float32)
    t_end = min(getattr(s, "t_end", 1e-3) for s in config.samplers)
    t_end = max(t_end, config.train_t_min)
    rows: list[dict[str, Any]] = []
    for kind, model in _models(config, holder.get()).items():
        paths = {
            "pf_ode_heun": probability_flow_trajectories(
                config.sde, model.score_fn, x_init, n_steps=config.trajectory_steps, t_end=t_end, solver=diffrax.Heun()
            ),
            "reverse_sde_euler_maruyama": reverse_sde_trajectories(
                config.sde, model.score_fn, x_init, key=jax.random.fold_in(_key(seed, "trajectory"), 1),
                n_steps=config.trajectory_steps, t_end=t_end,
            ),
        }
        for label, trajectories in paths.items():
            ts = np.asarray(trajectories.ts, np.float64)
            xs = np.asarray(trajectories.xs, np.float64)
            for point in range(xs.shape[0]):
                for step in range(xs.shape[1]):
                    for coordinate in range(DIM):
                        rows.append(_row(sampler=label, score=kind, seed=seed, metric="trajectory_position",
                                         point=point, step=step, t=float(ts[step]), coordinate=coordinate,
                                         value=float(xs[point, step, coordinate])))
    return rows


def cells(config: Config, store: ResultStore | None = None, progress: Progress | None = None
          ) -> list[tuple[str, Callable[[], list[dict[str, Any]]]]]:
    """The study's cells: floor, training, fisher, one per (sampler, score), trajectories."""
    progress = progress if progress is not None else Progress(0)
    holder = _NetworkHolder(config, store, progress)
    result: list[tuple[str, Callable[[], list[dict[str, Any]]]]] = [
        ("floor", lambda: _floor_cell(config)),
        ("training", lambda: _training_cell(config, holder)),
        ("fisher", lambda: _fisher_cell(config, holder)),
    ]
    for kind in ("exact", "learned"):
        for sampler in config.samplers:
            result.append((f"sampler={sampler_label(sampler)}_score={kind}",
                           lambda sampler=sampler, kind=kind: _sampler_cell(config, sampler, kind, holder, progress)))
    result.append(("trajectories", lambda: _trajectory_cell(config, holder)))
    return result


def run(config: Config, store: ResultStore | None = None) -> Results:
    """Run every cell not yet saved, draw the figures (when saving), return the table.

    Args:
        config: the study's configuration (validated when it was built).
        store: where to save and resume; None keeps everything in memory (no figures).

    Returns:
        `Results` with the tidy table and the run directory.
    """
    started = time.perf_counter()
    cell_list_ids = [cell_id for cell_id, _ in cells(config)]
    already = sum(store.is_done(cell_id) for cell_id in cell_list_ids) if store is not None else 0
    progress = Progress(len(cell_list_ids), already)
    table = run_cells(store, cells(config, store, progress), progress=progress,
                      metadata={"study": STUDY})
    if store is None:
        return Results(table=table)
    if config.draw_figures:
        # Imported here so that the study module never imports matplotlib.
        from figures.reverse_diffusion import draw

        for path in draw(store.run_dir):
            progress.note(f"figure: {path}")
    progress.note(f"total wall time {time.perf_counter() - started:.1f}s")
    return Results(table=table, run_dir=store.run_dir)


def main(argv: list[str] | None = None) -> None:
    """Parse the command line, run, print the headline numbers."""
    invocation = parse_config(Config, PRESETS, argv, default_preset="quick")
    results = run(invocation.config, invocation.open_store())
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(results.summary().to_string(index=False, float_format=lambda v: f"{v:.4g}"))


if __name__ == "__main__":
    main()
