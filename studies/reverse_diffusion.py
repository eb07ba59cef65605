"""Reverse diffusion on a Gaussian grid: score error vs discretisation error, sampler by sampler.

On the equal-weight grid of K Gaussians N(m_k, 0.1 I) in R^2 (theory.gaussian_grid) the
score of every noised marginal p_t is exact, so each sampler is run twice from the same
prior draws and the same noise: once with the exact score, once with a learned noise
predictor eps_theta(x, t) (an MLP trained by Ho et al.'s simple loss, one network per
seed). Because the lab knows the target's density and can compute an ODE sampler's, it
measures, besides W1:

- ``kl_model_target``: KL(q_ODE || p_{t_end}) = E_q[log q - log p] of the probability-flow
  ODE samplers, the sampler's log-density solved with its own solver and budget
  (theory.ode_likelihood, exact trace, float64), with its Monte Carlo standard error; the
  reference is the noised target p_{t_end} = sde.noised_target(target, t_end) at the
  sampler's end time, not p_0 (with the exact score the ODE carries the prior to p_{t_end};
  the only remaining term is KL(prior || p_T), ~1e-4 nats for the VP SDE here).
- ``kl_target_model`` and ``cross_entropy``: KL(p_{t_end} || q_ODE) = E_p[log p - log q]
  and E_p[-log q] from target draws, at each ODE sampler's finest budget.
- ``score_error_bound``: Song et al. (2021, Thm. 1) KL(p_{t_end} || q_SDE) <= KL(p_T || prior)
  + 1/2 int g^2 E||s_theta - grad log p_t||^2 dt, evaluated with the exact marginals.
- ``spread_error``: the mean squared distance of the points to their nearest mode's mean
  minus its exact value under p_{t_end} (from 10^6 exact draws): a low-variance metric with
  exact ground truth for every sampler, stochastic ones included; its log-log slope
  against the step size, fitted per seed, is the sampler's measured convergence order.
- ``w1`` against ``w1_floor`` (exact OT between n points and n fresh target draws; the
  floor is W1 between two target samples), mode weights, mass near the modes, wall time
  per budget (in each cell's record, phase "sample setting=S"),
  the learned score's Fisher divergence along t, and reverse trajectories.

Samplers: the reverse-time SDE with Euler-Maruyama and ShARK, the probability-flow ODE
with fixed-step Euler and Heun and with adaptive Tsit5 (PID controller, its NFE is an
outcome), DDPM ancestral sampling and DDIM (eta = 0) on respaced steps of the T = 1000
chain (linear betas 1e-4 -> 0.02, reading the same network through
`theory.diffusion_samplers.DiscreteEpsilon`). Continuous samplers use the VP SDE
(beta 0.1 -> 20) from t = 1 to t_end = 1e-3.

Cells: ``floor``; per seed ``training_seed=S``, ``fisher_seed=S`` (Fisher divergence and
the bound), ``sampler=LABEL_score=KIND_seed=S`` (every budget of one sampler, one score,
one seed) and ``trajectories``. Keys come from coordinates only (kit.Keys), so removing a
sampler or a seed leaves every other cell bit-identical. Every seed's network is trained
in one vmapped program and saved as the artifact ``networks.eqx``; the network of seed S
is the artifact ``network_seed=S``, its slice (each saved with its checksum, verified on
load); a diverged training (non-finite loss or weights, or a final loss above
DIVERGED_LOSS) is recorded as diverged, and so are the cells that need it, while the
exact-score cells still run. A sampler whose solver fails (diffrax's max-steps error) or
returns non-finite or exploded samples is diverged.
Protocol: shared/reference/protocols.md, "Diffusion and score SDEs".

    python -m studies.reverse_diffusion                  # quick preset: 51 cells, ~4 min CPU time (measured)
    python -m studies.reverse_diffusion --preset paper
    python -m figures.reverse_diffusion results/reverse_diffusion/quick
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

import theory
from models.epsilon_network import EpsilonMLPSpec, EpsilonNetwork, EpsilonTraining, train_epsilon_networks
from models.sharding import mesh_for
from models.training import EMA, AdamSpec, all_finite
from studies import kit
from studies.kit import config_field
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
    probability_flow,
    reverse_sde,
)
from theory.estimate import monte_carlo_mean
from theory.integrate import MonteCarlo
from theory.modes import mode_statistics
from theory.ode_likelihood import AdaptiveSteps, ExactTrace, FixedSteps, ODESolve, flow_kl, flow_log_density, probability_flow_model, score_error_kl_bound
from theory.sde import VESDE, VPSDE, AbstractSDE, ExactMarginalScore, SubVPSDE

__all__ = [
    "Config",
    "PRESETS",
    "SAMPLERS",
    "cells",
    "convergence_orders",
    "main",
    "parse_samplers",
    "parse_training",
    "run",
    "sampler_label",
    "sampler_settings",
    "summarise",
]

STUDY = "reverse_diffusion"
DIM = 2

NEAR_MODE_RADIUS = 3.0
"""A point is 'near' mode k within 3 standard deviations (Mahalanobis); an exact draw
is near its own mode with probability 1 - exp(-9/2) = 0.989 in R^2."""

DIVERGED_LOSS = 100.0 * DIM
"""A training whose last block's simple loss exceeds 100 times that of predicting zero
(E||eps||^2 = d) has diverged: an untrained network scores about d, a trained one less."""

EXPLODED_RADIUS = 100.0
"""Samples farther than this from the origin (the 9-grid lies within |x| <= 2.9 + 6 sd)
mean the sampler blew up: the cell is diverged rather than scored."""

SPREAD_REFERENCE_DRAWS = 1_000_000
"""Exact draws of p_{t_end} behind the spread metric's reference (standard error ~2e-4 of
a value ~0.2: below a tenth of the smallest sampler error the fits use)."""

KNOWN_WEAK_ORDER = {
    # Weak orders for smooth test functions: Euler-Maruyama 1 (Kloeden & Platen 1992,
    # Thm. 14.5.2); ShARK and SRA1 are order-2 weak / 1.5 strong for additive noise
    # (diffrax's `order` / `strong_order`); DDPM ancestral and DDIM are first-order
    # discretisations of the reverse SDE / probability-flow ODE (Lu et al. 2022, DPM-Solver;
    # Chen et al. 2023 for DDPM).
    "reverse_sde_euler_maruyama": 1.0,
    "ddpm_ancestral": 1.0,
    "ddim_eta0": 1.0,
}


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

ADAPTIVE_TOLERANCES = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)
"""The rtol = atol values the adaptive ODE samplers sweep (their NFE is an outcome)."""

MAX_NFE = 4096
"""The solvers' max_steps: no fixed-step budget may ask for more."""


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


def _is_ode(sampler) -> bool:
    return isinstance(sampler, (ProbabilityFlowSampler, AdaptiveProbabilityFlowSampler))


def sampler_name(sampler: AbstractDiffusionSampler) -> str:
    """The command-line name of a sampler (a key of SAMPLERS), or its label if it has none."""
    spelled = kit.config_to_dict(sampler)
    return next((name for name, known in SAMPLERS.items() if kit.config_to_dict(known) == spelled), sampler_label(sampler))


def parse_samplers(text: str) -> tuple[AbstractDiffusionSampler, ...]:
    """Comma-separated sampler names, e.g. 'sde-em,ode-heun,ddim' (see SAMPLERS)."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in SAMPLERS]
    if unknown or not names:
        raise ValueError(f"choose from {list(SAMPLERS)}, got {unknown or text!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"samplers must not repeat a name, got {text!r}")
    return tuple(SAMPLERS[name] for name in names)


GRID9_DATA_SCALE = math.sqrt(8.0 / 3.0 + 0.1)
"""Per-coordinate standard deviation of the 9-mode grid: means uniform on {-2, 0, 2}
(variance 8/3) plus the component variance 0.1."""

NETWORK_BOUNDS = {"width": (1, 4096), "depth": (1, 16), "embedding_dim": (4, 1024)}
"""Each hidden layer is width x width float32 weights: 16 layers of 4096 are 1 GiB of
parameters and Adam state, within a 24 GiB device; the embedding is even."""


def parse_network(text: str) -> EpsilonMLPSpec:
    """'WIDTH,DEPTH' or 'WIDTH,DEPTH,EMBEDDING_DIM', e.g. '128,3' (data_scale of the 9-grid)."""
    try:
        values = [int(item) for item in text.split(",")]
    except ValueError:
        raise ValueError(f"use WIDTH,DEPTH or WIDTH,DEPTH,EMBEDDING_DIM (integers), got {text!r}") from None
    if len(values) not in (2, 3):
        raise ValueError(f"use WIDTH,DEPTH or WIDTH,DEPTH,EMBEDDING_DIM, got {text!r}")
    for name, value in zip(("width", "depth", "embedding_dim"), values):
        low, high = NETWORK_BOUNDS[name]
        if not low <= value <= high:
            raise ValueError(f"network {name} must be in [{low}, {high}], got {value}")
    return EpsilonMLPSpec(*values[:2], *(values[2:] or [32]), data_scale=GRID9_DATA_SCALE)


DEFAULT_TRAINING = EpsilonTraining(
    optimiser=AdamSpec(1e-3, clip_norm=1.0), steps=6000, batch_size=512, t_min=1e-3, ema=EMA(0.999), record_every=500
)

TRAINING_OVERRIDES = kit.Overrides(
    keys={"learning_rate": "optimiser.learning_rate", "steps": "steps", "batch_size": "batch_size",
          "t_min": "t_min", "ema": "ema", "record_every": "record_every"},
    convert={"ema": kit.parse_ema},
    spell={"ema": kit.ema_text},
)
"""``--training steps=30000,learning_rate=5e-4``: changes of the chosen preset's EpsilonTraining."""


def parse_training(text: str, base: EpsilonTraining | None = None) -> EpsilonTraining:
    """Comma-separated KEY=VALUE changes of `base` (default: the quick preset's training),
    e.g. 'learning_rate=1e6' or 'steps=30000,learning_rate=5e-4,record_every=1000'; keys:
    learning_rate, steps, batch_size, t_min, ema (0 or none: no average), record_every.
    On the command line the changes apply to the chosen preset's training."""
    return TRAINING_OVERRIDES.apply(DEFAULT_TRAINING if base is None else base, text)



# --------------------------------------------------------------------------------------
# Config.


@dataclasses.dataclass(frozen=True)
class Config:
    """One run of the reverse-diffusion study."""

    grid_modes: int = config_field(9, "target: theory.gaussian_grid(K), K in {2, 4, 9} equal-weight N(m_k, 0.1 I)", low=2, high=9)
    sde: AbstractSDE = config_field(VPSDE(beta_min=0.1, beta_max=20.0), "forward SDE of the continuous samplers", parse=SDES)
    schedule: AbstractBetaSchedule = config_field(
        LinearBetaSchedule(), "beta schedule of DDPM and DDIM (Ho et al.: linear 1e-4..0.02, T=1000)", parse=SCHEDULES
    )
    samplers: tuple[AbstractDiffusionSampler, ...] = config_field(
        DEFAULT_SAMPLERS, f"comma-separated samplers from {list(SAMPLERS)}", parse=parse_samplers,
        show=lambda samplers: ",".join(sampler_name(s) for s in samplers),
    )
    nfe_grid: tuple[int, ...] = config_field(
        (10, 20, 50, 100, 200, 500, 1000),
        "target numbers of score evaluations; fixed-step samplers take NFE // (evaluations per step) "
        f"steps; the adaptive ODE sweeps rtol = atol in {ADAPTIVE_TOLERANCES} instead",
        low=1, high=MAX_NFE,
    )
    seed: int = config_field(0, "root PRNG seed (every key is derived from it and the cell's coordinates)", high=2**31 - 1)
    seeds: tuple[int, ...] = config_field(
        (0, 1, 2), "replicates; each trains its own network and draws its own prior points, noise and reference sample",
        high=10**6,
    )
    n_samples: int = config_field(
        1000, "points per sampler, budget and seed, and the fresh target sample of W1 (POT's n x n float64 cost matrix)",
        low=2, high=20_000,
    )
    floor_repeats: int = config_field(5, "independent target-sample pairs behind the W1 sampling floor", low=2, high=1000)
    network: EpsilonMLPSpec = config_field(
        EpsilonMLPSpec(width=128, depth=3, embedding_dim=32, data_scale=GRID9_DATA_SCALE),
        "eps_theta as WIDTH,DEPTH[,EMBEDDING_DIM] (SiLU MLP on [c_in(t) x, sinusoidal emb(t)]); width <= 4096, "
        "depth <= 16, embedding <= 1024",
        parse=parse_network,
        show=lambda n: f"{n.width},{n.depth},{n.embedding_dim}",
    )
    training: EpsilonTraining = config_field(
        DEFAULT_TRAINING,
        "simple-loss training as KEY=VALUE changes of the preset's: learning_rate (Adam, clipped at norm 1), "
        "steps, batch_size, t_min (0, 1), ema (0 or none: no average), record_every (divides steps)",
        parse=TRAINING_OVERRIDES,
        within=kit.TRAINING_LIMITS,
    )
    fisher_times: tuple[float, ...] = config_field(
        (1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0), "times t in (0, T] at which the learned score's Fisher divergence is measured",
        low=0.0, open_low=True, high=1.0,
    )
    fisher_samples: int = config_field(10_000, "draws of p_t per Fisher-divergence estimate", low=2, high=10**6)
    kl_samples: int = config_field(
        1000, "model (and target) draws per ODE KL estimate, each one float64 ODE solve with its log-density",
        low=2, high=100_000,
    )
    bound_samples: int = config_field(
        4000, "draws per node of the score-error integral in the KL bound (64 time nodes)", low=2, high=100_000
    )
    snapshot_nfes: tuple[int, ...] = config_field(
        (10, 100, 1000), "sample clouds saved for the figure at these NFEs (nearest budget)", low=1, high=MAX_NFE
    )
    snapshot_points: int = config_field(500, "points saved per sample cloud (<= n_samples)", low=1, high=20_000)
    trajectory_points: int = config_field(8, "prior points whose reverse ODE and SDE paths are saved", low=1, high=1000)
    trajectory_steps: int = config_field(100, "steps of the saved trajectories (Euler-Maruyama SDE, Heun ODE)", low=1, high=MAX_NFE)
    draw_figures: bool = config_field(True, "draw the figures into <run>/figures at the end (needs a store)")

    def __post_init__(self):
        kit.check_fields(self)
        _validate(self)


def _validate(config: Config) -> None:
    """The study's own constraints, checked before any compute; each error names the field."""
    if config.grid_modes not in theory.GRID_MEANS:
        raise ValueError(f"grid_modes must be one of {sorted(theory.GRID_MEANS)}, got {config.grid_modes!r}")
    for name, value in (("width", config.network.width), ("depth", config.network.depth),
                        ("embedding_dim", config.network.embedding_dim)):
        low, high = NETWORK_BOUNDS[name]
        if not low <= value <= high:
            raise ValueError(f"network {name} must be in [{low}, {high}], got {value}")
    labels = [sampler_label(sampler) for sampler in config.samplers]
    if len(set(labels)) != len(labels):
        raise ValueError(f"samplers must be distinct, got {labels}")
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
    if config.snapshot_points > config.n_samples:
        raise ValueError(f"snapshot_points must be <= n_samples={config.n_samples}, got {config.snapshot_points}")
    for t in config.fisher_times:
        if not t <= config.sde.t_max:
            raise ValueError(f"fisher_times must lie in (0, T={config.sde.t_max}], got {t!r}")
    training = config.training
    for sampler in config.samplers:
        t_end = getattr(sampler, "t_end", None)
        if t_end is not None and t_end < training.t_min:
            raise ValueError(
                f"sampler {sampler_label(sampler)} stops at t_end={t_end}, below the network's training range "
                f"training.t_min={training.t_min}"
            )


PRESETS: dict[str, Config] = {
    # The README figure. Measured: 3m50s of CPU time (all threads), 15m13s wall on 2 cores
    # shared with ~7 other jobs (load average 11-15); so at most ~4 min wall when idle.
    # Training 3 x ~26 s (loaded), sampler cells 4-35 s each.
    "quick": Config(),
    # Error bars: 5 seeds of 2000 points, longer-trained networks, finer grids.
    "paper": Config(
        seeds=(0, 1, 2, 3, 4),
        n_samples=2000,
        nfe_grid=(10, 20, 30, 50, 100, 200, 300, 500, 1000),
        training=EpsilonTraining(optimiser=AdamSpec(5e-4, clip_norm=1.0), steps=30_000, batch_size=512, t_min=1e-3,
                                 ema=EMA(0.999), record_every=1000),
        fisher_times=(1e-3, 2e-3, 5e-3, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0),
        fisher_samples=50_000,
        kl_samples=4000,
        bound_samples=20_000,
        floor_repeats=10,
        samplers=tuple(SAMPLERS[name] for name in ("sde-em", "sde-shark", "ode-euler", "ode-heun", "ode-tsit5", "ode-dopri5", "ddpm", "ddim")),
    ),
    # Seconds: tests and a first look.
    "smoke": Config(
        grid_modes=4,
        seeds=(0,),
        n_samples=64,
        nfe_grid=(4, 16),
        samplers=tuple(SAMPLERS[name] for name in ("sde-em", "ode-euler", "ddim")),
        network=EpsilonMLPSpec(width=16, depth=1, embedding_dim=8, data_scale=1.66),
        training=EpsilonTraining(optimiser=AdamSpec(3e-3, clip_norm=1.0), steps=400, batch_size=128, t_min=1e-3,
                                 ema=EMA(0.99), record_every=100),
        fisher_times=(0.1, 1.0),
        fisher_samples=200,
        kl_samples=32,
        bound_samples=64,
        floor_repeats=2,
        snapshot_nfes=(4, 16),
        snapshot_points=16,
        trajectory_points=2,
        trajectory_steps=5,
        draw_figures=False,
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


# --------------------------------------------------------------------------------------
# Laws, models and keys.


def _target(config: Config) -> theory.MixtureOfGaussians:
    return theory.gaussian_grid(config.grid_modes)


def _t_end(sampler) -> float | None:
    return getattr(sampler, "t_end", None)


def _reference_time(sampler) -> float:
    """The time of the law a sampler targets: t_end, or 0 for the DDPM/DDIM chain (step 0)."""
    t_end = _t_end(sampler)
    return 0.0 if t_end is None else float(t_end)


def _prior_points(config: Config, keys: kit.Keys, seed: int, n: int) -> jax.Array:
    return config.sde.prior(DIM).sample(keys("prior", seed=seed), n).astype(jnp.float32)


def _reference_points(config: Config, keys: kit.Keys, seed: int) -> np.ndarray:
    return np.asarray(_target(config).sample(keys("reference", seed=seed), config.n_samples), np.float64)


def _models(config: Config, network: EpsilonNetwork | None) -> dict[str, DiffusionModel]:
    """The exact model and (given a network) the learned one, as samplers read them."""
    target = _target(config)
    models = {
        "exact": DiffusionModel(
            sde=config.sde, score_fn=ExactMarginalScore(config.sde, target), schedule=config.schedule,
            epsilon_fn=ExactEpsilon(config.schedule, target),
        )
    }
    if network is not None:
        models["learned"] = DiffusionModel(
            sde=config.sde, score_fn=ScoreFromEpsilon(config.sde, network), schedule=config.schedule,
            epsilon_fn=DiscreteEpsilon(config.sde, config.schedule, network),
        )
    return models


def _network_template(config: Config) -> EpsilonNetwork:
    return config.network.build(jax.random.key(0), DIM, config.sde)


_NETWORKS = "networks.eqx"
"""The artifact of every seed's (network, steps, losses, diverged_at), stacked over the seeds."""


def _networks_artifact(config: Config, keys: kit.Keys, mesh) -> kit.Artifact:
    """Every seed's training, one program per block of steps vmapped over the seeds (split
    over `mesh`'s devices): replica r runs the arithmetic ``train_epsilon_network`` would
    run for seed r alone (its own init and batch keys), so the device count changes a
    network by float32 rounding at most. Its value per seed: the EMA weights (or the last
    iterate), the block ends and losses, and the first non-finite step (-1 if none)."""
    training = config.training

    def build(progress: kit.Progress):
        started, seeds = time.perf_counter(), [{"seed": s} for s in config.seeds]

        def on_block(step, loss):
            if step % max(training.steps // 5, training.record_every) == 0:
                progress.update(step=step, total_steps=training.steps, loss=loss, elapsed_s=time.perf_counter() - started)

        with progress.phase("train"):
            networks = eqx.filter_vmap(lambda key: config.network.build(key, DIM, config.sde))(keys.stack("init", seeds))
            result = train_epsilon_networks(networks, _target(config).sample, keys=keys.stack("train", seeds),
                                            training=training, on_block=on_block, mesh=mesh)
        network = result.model if result.ema_model is None else result.ema_model
        return (network, jnp.asarray(result.steps, jnp.int32), jnp.asarray(result.losses, jnp.float32), result.diverged_at)

    return kit.replicas_artifact(_NETWORKS, build, lambda: (*_network_value_template(config), jnp.zeros((), jnp.int32)),
                                 replicas=config.seeds, needs=("progress",))


def _network_value_template(config: Config) -> tuple[EpsilonNetwork, jax.Array, jax.Array]:
    n_blocks = config.training.steps // config.training.record_every
    return _network_template(config), jnp.zeros(n_blocks, jnp.int32), jnp.zeros(n_blocks, jnp.float32)


def _network_artifact(config: Config, seed: int) -> kit.Artifact:
    """(network, steps, losses) of one seed, its slice of the seeds' training. Raises
    kit.Diverged on a non-finite loss or weights, or a final loss above DIVERGED_LOSS."""

    def build(**needs):
        network, steps, losses, diverged_at = needs[_NETWORKS].of(seed)
        losses = np.asarray(losses, np.float64)
        if int(diverged_at) >= 0 or not np.all(np.isfinite(losses)) or not bool(all_finite(network)):
            raise kit.Diverged(f"seed {seed}: non-finite loss or weights (first non-finite step {int(diverged_at)})")
        if losses[-1] > DIVERGED_LOSS:
            raise kit.Diverged(f"seed {seed}: final simple loss {losses[-1]:.3g} > {DIVERGED_LOSS:g} (predicting 0 scores {DIM})")
        return network, steps, jnp.asarray(losses, jnp.float32)

    return kit.equinox_artifact(_network_name(seed), build, lambda: _network_value_template(config), needs=(_NETWORKS,))


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


def _spread_values(target, points: np.ndarray) -> np.ndarray:
    """||x - m_{k(x)}||^2 per point, k(x) the nearest mode (float64)."""
    means = np.asarray(target.means, np.float64)
    return np.sum((points - means[_nearest_mode(target, points)]) ** 2, axis=1)


@functools.lru_cache(maxsize=16)
def _spread_reference(grid_modes: int, sde: AbstractSDE, t_end: float, root_seed: int) -> theory.Estimate:
    """E_{p_{t_end}} ||X - m_{k(X)}||^2 from SPREAD_REFERENCE_DRAWS exact draws (a pure
    function of its arguments, hence cached)."""
    keys = kit.Keys(root_seed)
    law = sde.noised_target(theory.gaussian_grid(grid_modes), jnp.asarray(t_end, jnp.float32))
    target = theory.gaussian_grid(grid_modes)
    values = []
    for chunk in range(10):
        draws = np.asarray(law.sample(keys("spread-reference", t_end=t_end, chunk=chunk), SPREAD_REFERENCE_DRAWS // 10), np.float64)
        values.append(_spread_values(target, draws))
    return monte_carlo_mean(np.concatenate(values), f"{SPREAD_REFERENCE_DRAWS} exact draws of p_t_end")


def _mode_rows(target, points: np.ndarray, common: dict[str, Any]) -> list[dict[str, Any]]:
    """Nearest-mode weights (with binomial s.e.), their TV distance to the truth, and the
    fraction within 3 standard deviations of some mode."""
    n = points.shape[0]
    weights = np.asarray(target.weights, np.float64)
    counts = np.bincount(_nearest_mode(target, points), minlength=weights.size)
    rows = []
    for k, truth in enumerate(weights):
        p = counts[k] / n
        rows.append(_row(metric="mode_weight", mode=k, value=p, error=math.sqrt(p * (1 - p) / n), reference=truth,
                         n=n, method="nearest mode (largest responsibility)", **common))
    rows.append(_row(metric="mode_weight_tv", value=0.5 * float(np.abs(counts / n - weights).sum()),
                     n=n, method="1/2 sum_k |w_hat_k - w_k|", **common))
    stats = mode_statistics(points, target, radius=NEAR_MODE_RADIUS)
    p = stats.mass_near_any_mode
    rows.append(_row(metric="mass_near_any_mode", value=p, error=math.sqrt(p * (1 - p) / n),
                     reference=1.0 - math.exp(-NEAR_MODE_RADIUS**2 / 2), n=n,
                     method=f"Mahalanobis distance <= {NEAR_MODE_RADIUS:g} to some mode", **common))
    rows.append(_row(metric="modes_covered", value=stats.modes_covered, reference=weights.size, n=n,
                     method="modes holding >= 1/4 of their weight within 3 sd", **common))
    return rows


def _spread_row(target, points: np.ndarray, reference: theory.Estimate, common: dict[str, Any]) -> dict[str, Any]:
    values = _spread_values(target, points)
    mean = monte_carlo_mean(values, "")
    return _row(metric="spread_error", value=mean.value - reference.value, error=math.hypot(mean.error, reference.error),
                reference=reference.value, n=points.shape[0],
                method="mean ||x - m_k(x)||^2 minus its exact value under p_t_end (nearest mode)", **common)


def _position_rows(points: np.ndarray, common: dict[str, Any], metric: str) -> list[dict[str, Any]]:
    rows = []
    for point, xy in enumerate(np.asarray(points, np.float64)):
        for coordinate, value in enumerate(xy):
            rows.append(_row(metric=metric, point=point, coordinate=coordinate, value=float(value), **common))
    return rows


# --------------------------------------------------------------------------------------
# Cells.


def _floor_cell(config: Config, keys: kit.Keys) -> list[dict[str, Any]]:
    """The W1 sampling floor over floor_repeats target-sample pairs (t-interval), the mode
    statistics of exact i.i.d. draws (the best any sampler can do at this n), and a target
    cloud for the figures. (Nothing here depends on which samplers or seeds are swept.)"""
    target = _target(config)
    values, rows = [], []
    for repeat in range(config.floor_repeats):
        x = np.asarray(target.sample(keys("floor-x", repeat=repeat), config.n_samples), np.float64)
        y = np.asarray(target.sample(keys("floor-y", repeat=repeat), config.n_samples), np.float64)
        values.append(theory.wasserstein(x, y).value)
        rows += _mode_rows(target, x, dict(sampler="target", score="exact", seed=repeat))
    floor = kit.over_replicates(values)
    rows.append(_row(sampler="target", score="exact", metric="w1_floor", value=floor.value, error=floor.error,
                     n=config.n_samples, method=f"W1 of two target {config.n_samples}-samples, {floor.method}"))
    rows += _position_rows(np.asarray(target.sample(keys("target-cloud"), config.snapshot_points), np.float64),
                           dict(sampler="target", score="exact"), "sample_position")
    return rows


def _training_cell(config: Config, seed: int, network) -> list[dict[str, Any]]:
    _, steps, losses = network
    n = config.training.record_every * config.training.batch_size
    return [
        _row(sampler="network", score="learned", seed=seed, metric="train_loss", step=int(step), value=float(loss), n=n,
             method=f"mean simple loss over {config.training.record_every} steps (raw weights)")
        for step, loss in zip(np.asarray(steps), np.asarray(losses, np.float64))
    ]


def _fisher_cell(config: Config, keys: kit.Keys, seed: int, network) -> list[dict[str, Any]]:
    """F(t) = E_{p_t} ||s_theta(x, t) - grad log p_t(x)||^2 at each t, with the scale
    E ||grad log p_t||^2 and s(t)^2 F(t) (the error in epsilon units); and the score-error
    bound on the reverse SDE's KL, for the learned score and (score error 0) the exact one."""
    target = _target(config)
    score = ScoreFromEpsilon(config.sde, network[0])
    batched = jax.jit(jax.vmap(score, in_axes=(0, None)))
    rows = []
    for t in config.fisher_times:
        law = config.sde.noised_target(target, jnp.asarray(t, jnp.float32))
        key = keys("fisher", seed=seed, t=float(t))
        method = theory.MonteCarlo(config.fisher_samples)
        estimate = theory.fisher_divergence(law, lambda x, t=t: batched(jnp.asarray(x, jnp.float32), jnp.float32(t)),
                                            key=key, method=method)
        scale = theory.fisher_divergence(law, lambda x: jnp.zeros_like(x), key=key, method=method)
        std2 = float(config.sde.marginal_std(t)) ** 2
        common = dict(sampler="network", score="learned", seed=seed, t=float(t), n=config.fisher_samples)
        rows.append(_row(metric="fisher_divergence", value=estimate.value, error=estimate.error,
                         reference=scale.value, method=estimate.method, **common))
        rows.append(_row(metric="score_second_moment", value=scale.value, error=scale.error,
                         method="E ||grad log p_t||^2, " + scale.method, **common))
        rows.append(_row(metric="epsilon_error", value=std2 * estimate.value, error=std2 * estimate.error,
                         method="s(t)^2 F(t) = E ||eps_theta - eps*||^2", **common))
    # At t_end = training.t_min, where the network's training range ends (the samplers'
    # default end time), whatever samplers the sweep holds.
    for t_end in (config.training.t_min,):
        for kind, score_fn in (("learned", score), ("exact", ExactMarginalScore(config.sde, target))):
            bound = score_error_kl_bound(config.sde, score_fn, target, key=keys("bound", seed=seed, t_end=float(t_end)),
                                         method=MonteCarlo(config.bound_samples), t_end=float(t_end))
            rows.append(_row(sampler="reverse_sde", score=kind, seed=seed, t=float(t_end), metric="score_error_bound",
                             value=bound.value, error=bound.error, n=config.bound_samples, method=bound.method))
    return rows


def _snapshot_settings(settings: tuple[float, ...], nfes: dict[float, float], targets: tuple[int, ...]) -> set[float]:
    return {min(settings, key=lambda s: abs(math.log(nfes[s] / target_nfe))) for target_nfe in targets}


def _kl_rows(config: Config, keys: kit.Keys, sampler, model: DiffusionModel, setting: float, seed: int,
             common: dict[str, Any], *, both_directions: bool) -> list[dict[str, Any]]:
    """KL(q_ODE || p_{t_end}) from model draws (log q from the same solve, the sampler's
    solver and budget) and, at the finest budget, KL(p_{t_end} || q_ODE) and E_p[-log q]."""
    t_end = float(sampler.t_end)
    flow = probability_flow_model(config.sde, model.score_fn, DIM, t_end=t_end)
    if isinstance(sampler, AdaptiveProbabilityFlowSampler):
        steps = AdaptiveSteps(rtol=setting, atol=setting, max_steps=sampler.max_steps)
    else:
        steps = FixedSteps(int(setting), max_steps=MAX_NFE)  # one compilation for every step count
    solve = ODESolve(sampler.solver, steps, ExactTrace())
    reference = config.sde.noised_target(_target(config), jnp.asarray(t_end, jnp.float32))
    method = MonteCarlo(config.kl_samples)
    kl = flow_kl(flow, reference, key=keys("kl", seed=seed), method=method, solve=solve)
    base = {**common, "n": config.kl_samples}
    rows = [_row(metric="kl_model_target", value=kl.value, error=kl.error, t=t_end, method=kl.method, **base)]
    if both_directions:
        with jax.enable_x64(True):
            x = theory.distributions.to_float64(reference).sample(keys("kl-target", seed=seed), config.kl_samples)
            log_p = theory.distributions.to_float64(reference).log_prob(x)
        result = flow_log_density(flow, x, solve=solve)
        log_q = np.asarray(result.log_density, np.float64)
        if not np.all(np.isfinite(log_q)):
            raise kit.Diverged(f"{common['sampler']} {common['score']} seed {seed}: non-finite log-density")
        forward = monte_carlo_mean(np.asarray(log_p, np.float64) - log_q, "")
        cross = monte_carlo_mean(-log_q, "")
        label = f"Monte Carlo (n={config.kl_samples}) over target draws, {kl.method.split('; ', 1)[-1]}"
        rows.append(_row(metric="kl_target_model", value=forward.value, error=forward.error, t=t_end,
                         method="KL(p_t_end || q_ODE) = E_p[log p - log q], " + label, **base))
        rows.append(_row(metric="cross_entropy", value=cross.value, error=cross.error, t=t_end,
                         method="E_p[-log q_ODE], " + label, **base))
    if not math.isfinite(kl.value):
        raise kit.Diverged(f"{common['sampler']} {common['score']} seed {seed}: non-finite KL")
    return rows


_SOLVER_FAILURES = (eqx.EquinoxRuntimeError, jax.errors.JaxRuntimeError)
"""What a failed solve raises: diffrax's max-steps check is an Equinox runtime error
(surfacing as a JaxRuntimeError on some backends)."""


def _sampler_cell(config: Config, keys: kit.Keys, sampler: AbstractDiffusionSampler, kind: str, seed: int,
                  progress: kit.Progress, network=None) -> list[dict[str, Any]]:
    """Every budget of one sampler with one score on one seed: W1, mode statistics, the
    spread error, wall time, the ODE KL (ODE samplers), and the snapshot clouds."""
    target = _target(config)
    label = sampler_label(sampler)
    model = _models(config, None if network is None else network[0])[kind]
    settings = sampler_settings(sampler, config.nfe_grid)
    spread_reference = _spread_reference(config.grid_modes, config.sde, _reference_time(sampler), config.seed)
    x_init = _prior_points(config, keys, seed, config.n_samples)
    reference = _reference_points(config, keys, seed)
    noise_key = keys("noise", seed=seed)
    rows: list[dict[str, Any]] = []
    outputs, shown = {}, {}
    finest = max(settings) if not isinstance(sampler, AdaptiveProbabilityFlowSampler) else min(settings)
    try:
        # Compile once on the cheapest budget, untimed: step counts and tolerances are
        # traced, so the timed runs below reuse this compilation.
        cheapest = min(settings) if not isinstance(sampler, AdaptiveProbabilityFlowSampler) else max(settings)
        jax.block_until_ready(sampler.sample(model, x_init, key=noise_key, budget=_budget(sampler, cheapest)))
        for setting in settings:
            # Wall time goes to the cell's record (phase "sample setting=S"), not into the
            # rows: a cell's rows must be bit-identical across runs and sweeps.
            with progress.phase(f"sample setting={setting:g}"):
                output = jax.block_until_ready(sampler.sample(model, x_init, key=noise_key, budget=_budget(sampler, setting)))
            samples = np.asarray(output.samples, np.float64)
            nfe = float(np.mean(np.asarray(output.nfe)))
            if not np.all(np.isfinite(samples)) or np.max(np.abs(samples)) > EXPLODED_RADIUS:
                bad = float(np.mean(~(np.isfinite(samples).all(axis=1) & (np.abs(samples) <= EXPLODED_RADIUS).all(axis=1))))
                raise kit.Diverged(f"{label} {kind} seed {seed} setting {setting:g}: {bad:.1%} of samples non-finite "
                                   f"or beyond |x| = {EXPLODED_RADIUS:g}")
            common = dict(sampler=label, score=kind, setting=float(setting), nfe=nfe, seed=seed)
            w1 = theory.wasserstein(samples, reference)
            rows.append(_row(metric="w1", value=w1.value, error=w1.error, n=samples.shape[0], method=w1.method, **common))
            shown[round(nfe)] = round(w1.value, 3)
            rows.append(_row(metric="nfe_max", value=float(np.max(np.asarray(output.nfe))), n=samples.shape[0], **common))
            rows += _mode_rows(target, samples, common)
            rows.append(_spread_row(target, samples, spread_reference, common))
            if _is_ode(sampler):
                kl_common = dict(common)
                rows += _kl_rows(config, keys, sampler, model, setting, seed, kl_common, both_directions=setting == finest)
            outputs[float(setting)] = (nfe, samples[: config.snapshot_points], common)
    except _SOLVER_FAILURES as error:
        raise kit.Diverged(f"{label} {kind} seed {seed}: the solver failed ({type(error).__name__}: "
                           f"{str(error).strip().splitlines()[0][:200]})") from None
    progress.note(f"  {label} {kind} seed={seed} | W1 by NFE {shown}")
    nfes = {setting: value[0] for setting, value in outputs.items()}
    for setting in sorted(_snapshot_settings(tuple(outputs), nfes, config.snapshot_nfes)):
        _, points, common = outputs[setting]
        rows += _position_rows(points, common, "sample_position")
    return rows


def _trajectory_cell(config: Config, keys: kit.Keys, kind: str, network=None) -> list[dict[str, Any]]:
    """Reverse paths of the probability-flow ODE (Heun) and the reverse SDE
    (Euler-Maruyama) from the same prior points and noise, with one score."""
    x_init = config.sde.prior(DIM).sample(keys("trajectory"), config.trajectory_points).astype(jnp.float32)
    t_end = config.training.t_min  # the network's training range ends there
    model = _models(config, None if network is None else network[0])[kind]
    paths = {
        "pf_ode_heun": probability_flow(
            config.sde, model.score_fn, x_init, n_steps=config.trajectory_steps, t_end=t_end, solver=diffrax.Heun(),
            save_path=True,
        ).path,
        "reverse_sde_euler_maruyama": reverse_sde(
            config.sde, model.score_fn, x_init, key=keys("trajectory-noise"), n_steps=config.trajectory_steps, t_end=t_end,
            save_path=True,
        ).path,
    }
    rows: list[dict[str, Any]] = []
    for label, trajectories in paths.items():
        ts = np.asarray(trajectories.ts, np.float64)
        xs = np.asarray(trajectories.xs, np.float64)
        for point in range(xs.shape[0]):
            for step in range(xs.shape[1]):
                for coordinate in range(DIM):
                    rows.append(_row(sampler=label, score=kind, metric="trajectory_position", point=point, step=step,
                                     t=float(ts[step]), coordinate=coordinate, value=float(xs[point, step, coordinate])))
    return rows


def _network_name(seed: int) -> str:
    return f"network_seed={seed}.eqx"


def cells(config: Config, *, devices: int = 1) -> tuple[list[kit.Cell], list[kit.Artifact]]:
    """The sweep: floor; per seed training and Fisher/bound; one cell per (sampler, score,
    seed); trajectories. Returns (cells, artifacts): one trained network per seed, passed
    to the cells that need it under its artifact name; the seeds' networks are trained
    together, split over `devices` local devices (0: all)."""
    keys = kit.Keys(config.seed)
    mesh = mesh_for(devices)
    artifacts = [_networks_artifact(config, keys, mesh), *(_network_artifact(config, seed) for seed in config.seeds)]
    result = [kit.Cell("floor", lambda: _floor_cell(config, keys))]
    for seed in config.seeds:
        name = _network_name(seed)
        result.append(kit.Cell(f"training_seed={seed}", lambda seed=seed, name=name, **needs: _training_cell(
            config, seed, needs[name]), needs=(name,), coords={"seed": seed}))
        result.append(kit.Cell(f"fisher_seed={seed}", lambda seed=seed, name=name, **needs: _fisher_cell(
            config, keys, seed, needs[name]), needs=(name,), coords={"seed": seed}))
    for kind in ("exact", "learned"):
        for sampler in config.samplers:
            label = sampler_label(sampler)
            for seed in config.seeds:
                name = _network_name(seed) if kind == "learned" else None
                result.append(kit.Cell(
                    f"sampler={label}_score={kind}_seed={seed}",
                    lambda sampler=sampler, kind=kind, seed=seed, name=name, **needs: _sampler_cell(
                        config, keys, sampler, kind, seed, needs["progress"], needs.get(name)),
                    needs=("progress",) + ((name,) if name else ()),
                    coords={"sampler": label, "score": kind, "seed": seed},
                ))
    result.append(kit.Cell("trajectories_score=exact", lambda: _trajectory_cell(config, keys, "exact"), coords={"score": "exact"}))
    first = _network_name(config.seeds[0])
    result.append(kit.Cell(f"trajectories_score=learned_seed={config.seeds[0]}",
                           lambda **needs: _trajectory_cell(config, keys, "learned", needs[first]),
                           needs=(first,), coords={"score": "learned", "seed": config.seeds[0]}))
    return result, artifacts


def run(config: Config, store: kit.ResultStore | None = None, *, runtime: kit.Runtime | None = None) -> kit.Results:
    """Run every cell not yet saved, draw the figures (when saving), return the table.

    Args:
        config: the study's configuration (validated when it was built).
        store: where to save and resume; None keeps everything in memory (no figures).
        runtime: the process's share of the sweep (kit.Runtime).

    Returns:
        `Results` with the tidy table, the run directory and the figure paths.
    """
    runtime = runtime or kit.Runtime()
    cell_list, artifacts = cells(config, devices=runtime.devices)
    table = kit.run_cells(store, cell_list, artifacts=artifacts, runtime=runtime, metadata={"study": STUDY})
    return kit.finish(store, table, figures="figures.reverse_diffusion" if config.draw_figures else None, summarise=summarise)


# --------------------------------------------------------------------------------------
# Headline numbers.


def _per_seed(rows: pd.DataFrame) -> pd.Series:
    return rows.set_index("seed")["value"]


def _with_monte_carlo_floor(interval: kit.Interval, errors: np.ndarray) -> kit.Interval:
    """The interval over seeds, its standard error raised to at least the pooled Monte Carlo
    error of the mean of the per-seed estimates, sqrt(sum_s se_s^2) / R.

    With 3 seeds the between-seed standard error is itself uncertain (a chi-square with 2
    degrees of freedom): three seeds of an exact ODE sampler once agreed to 5e-4 on a
    statistic whose per-seed error is 6e-3. The per-seed estimates' own errors are a floor.
    """
    errors = np.asarray(errors, np.float64)
    errors = errors[np.isfinite(errors)]
    if interval.n < 1 or errors.size == 0:
        return interval
    pooled = float(np.sqrt(np.sum(errors**2)) / errors.size)
    if not math.isfinite(interval.error) or pooled > interval.error:
        half = 1.959963984540054 * pooled
        return dataclasses.replace(interval, error=pooled, low=interval.value - half, high=interval.value + half,
                                   method=interval.method + ", s.e. raised to the pooled Monte Carlo error (normal)")
    return interval


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Per sampler and score, at the cheapest and the finest budget: W1, spread error and
    (ODE samplers) KL(q || p_t_end), each a t-interval over seeds; for the learned score
    also learned minus exact, paired by seed (same prior points, noise, reference and KL
    draws). Diverged seeds are counted, never dropped.

    Each interval's standard error is at least the pooled Monte Carlo error of the seeds'
    estimates (`_with_monte_carlo_floor`). Columns: sampler, score, setting, nfe, then for each of w1, spread_error,
    kl_model_target: the interval text, and gap_<metric> (learned - exact) text; plus
    w1_floor.
    """
    if "metric" not in table.columns:
        return pd.DataFrame()
    floor = table[table["metric"] == "w1_floor"]
    floor_text = f"{floor['value'].iloc[0]:.4f} ± {floor['error'].iloc[0]:.4f}" if len(floor) else "n/a"
    diverged = table[table["metric"] == "diverged"]
    w1 = table[table["metric"] == "w1"]
    rows = []
    for (sampler, score), group in w1.groupby(["sampler", "score"], sort=False):
        budgets = group.groupby("setting")["nfe"].mean()
        n_seeds = int(table[(table["sampler"] == sampler) & (table["score"] == score)]["seed"].nunique())
        lost = diverged[(diverged.get("sampler") == sampler) & (diverged.get("score") == score)] if len(diverged) else diverged
        for setting in dict.fromkeys((budgets.idxmin(), budgets.idxmax())):
            entry = {"sampler": sampler, "score": score, "setting": float(setting), "nfe": float(budgets[setting])}
            for metric in ("w1", "spread_error", "kl_model_target"):
                rows_m = table[(table["metric"] == metric) & (table["sampler"] == sampler) & (table["setting"] == setting)]
                mine = rows_m[rows_m["score"] == score]
                if mine.empty:
                    continue
                values = np.concatenate([mine["value"].to_numpy(), np.full(len(lost), np.nan)])
                entry[metric] = str(_with_monte_carlo_floor(kit.over_replicates(values), mine["error"].to_numpy()))
                if score == "learned":
                    exact = _per_seed(rows_m[rows_m["score"] == "exact"])
                    learned = _per_seed(mine)
                    seeds = sorted(set(exact.index) | set(learned.index) | set(lost["seed"].dropna().astype(int)))
                    entry[f"gap_{metric}"] = str(kit.paired_difference(learned.reindex(seeds).to_numpy(),
                                                                       exact.reindex(seeds).to_numpy()))
            entry["seeds"] = n_seeds
            entry["w1_floor"] = floor_text
            rows.append(entry)
    return pd.DataFrame(rows)


def _step_size(sampler: str, setting: float, t_span: float) -> float:
    """h: the interval (T - t_end, or the whole chain for DDPM/DDIM = 1) over the steps."""
    return t_span / setting


def convergence_orders(table: pd.DataFrame, *, metric: str = "spread_error", score: str = "exact",
                       resolution: float = 3.0) -> pd.DataFrame:
    """The measured convergence order of each fixed-step sampler: the log-log slope of
    |error| against the step size h, fitted per seed (kit.slope_over_replicates), over the
    budgets where the error is resolved: |mean over seeds| > resolution x its standard
    error (over seeds, and at least the per-seed estimate's own error / sqrt(seeds)).

    Returns one row per sampler: order (interval text), value, error, ci_low, ci_high,
    n, n_diverged, budgets used (step counts), and h range.
    """
    rows = table[(table["metric"] == metric) & (table["score"] == score)]
    if rows.empty:
        return pd.DataFrame()
    out = []
    for sampler, group in rows.groupby("sampler", sort=False):
        if sampler.endswith("_adaptive"):
            continue  # its budget is a tolerance, not a step size
        wide = group.pivot_table(index="seed", columns="setting", values="value")
        errors = group.pivot_table(index="seed", columns="setting", values="error")
        resolved = []
        for setting in wide.columns:
            interval = kit.over_replicates(wide[setting].to_numpy())
            own = float(np.nanmean(errors[setting].to_numpy())) / math.sqrt(max(interval.n, 1))
            scale = max(interval.error if math.isfinite(interval.error) else 0.0, own)
            if abs(interval.value) > resolution * scale:
                resolved.append(setting)
        t_span = 1.0  # h in units of the whole time interval (equal for every sampler)
        entry = {"sampler": sampler, "metric": metric, "score": score, "budgets": ",".join(f"{s:g}" for s in resolved)}
        if len(resolved) >= 2:
            h = [_step_size(sampler, s, t_span) for s in resolved]
            slope = kit.slope_over_replicates(h, np.abs(wide[resolved].to_numpy()))
            entry.update(slope.row())
            entry["order"] = str(slope)
        else:
            entry["order"] = f"unresolved ({len(resolved)} budget(s) with |error| > {resolution:g} s.e.)"
        out.append(entry)
    return pd.DataFrame(out)


def main(argv: list[str] | None = None) -> None:
    """Parse the command line, run, print the headline numbers."""
    results = kit.main(run, Config, PRESETS, argv)
    orders = {metric: convergence_orders(results.table, metric=metric) for metric in ("spread_error", "kl_model_target")}
    kit.print_tables([
        ("Mean ± s.e. [95% t-interval] over seeds; gap = learned - exact, paired by seed", results.summary()),
        *((f"Convergence order from |{metric}| vs step size (exact score), slope per seed",
           frame[["sampler", "order", "budgets"]] if len(frame) else frame) for metric, frame in orders.items()),
    ], column_width=48)


if __name__ == "__main__":
    main()
