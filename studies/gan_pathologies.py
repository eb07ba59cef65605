"""GAN pathologies against exact ground truth: loose bounds, vanishing gradients, JS
saturation, mode collapse, and the mass a connected latent must put between modes.

Five experiments, each a set of cells whose seeds train as one vmapped program and whose
keys come from their own coordinates only (`kit.Keys`):

1. ``bounds``: with P and Q fixed (a 1-D pair and a 2-D pair, both with densities), each
   objective's discriminator is trained alone; its variational bound
   B(v) = offset + slope L_D(v) <= Div(P, Q), evaluated by quadrature (the network's
   exact expectation, not a batch), is recorded against discriminator steps and width
   beside the exact divergence (`objective.exact_divergence`, theory's quadrature).
   Goodfellow et al. (2014), Thm. 1; Nowozin et al. (2016), eq. (4).
2. ``gradients``: a generator is trained for s steps (several stages s), frozen, and a
   fresh discriminator is trained from scratch against it; the norm of the generator's
   gradient under the saturating cost log(1 - D), the -log D cost (both against the
   same cross-entropy discriminator) and the WGAN cost (against a fresh Lipschitz
   critic) is recorded at log-spaced discriminator steps. Arjovsky & Bottou (2017),
   Fig. 2 and Thm. 2.4.
3. ``js``: P_0 = (0, U[0, 1]) against P_theta = (theta, U[0, 1]) (theory.VerticalSegment);
   the trained GAN discriminator's JS estimate saturates at log 2 and its derivative in
   theta vanishes, while the WGAN critic's estimate tracks W1 = |theta|. Exact JS from
   `theory.js` on the segments (log 2 for theta != 0); W1(P_0, P_theta) = |theta|
   (Arjovsky, Chintala & Bottou 2017, Example 1: the horizontal shift is optimal and
   no plan moves mass less than |theta|).
4. ``modes``: each objective trains the same generator on Gaussian grids (K = 4, 9 and a
   5 x 5 grid of spacing 2, variance 0.1) over seeds: exact mode coverage and mass off
   the modes (`theory.mode_statistics`), exact W1 (POT) against the sampling floor, and
   the oscillation of W1 over the last quarter of training (its standard deviation per
   seed).
5. ``disconnected``: a generator with a connected (Gaussian) latent trained on separated
   modes must put mass between them (Khayatkhoei et al. 2018; Tanielian et al. 2020,
   "Learning disconnected manifolds: a no GAN's land", ICML); the conditional GAN
   (Mirza & Osindero 2014), one connected latent per mode, removes it. Mass off the
   modes is measured for both on the same seeds and training sets (paired difference).

   The bound. Tanielian et al.'s theorem statement could not be retrieved here (only
   the abstract: an upper bound on precision from the Gaussian isoperimetric
   inequality), so it is NOT quoted. What is reported beside the measurement is a lower
   bound derived here from the same tool, stated in full so that it can be checked:
   let G be L-Lipschitz, z ~ N(0, I_k), A_i = G^{-1}(ball(m_i, rho)) the latent preimage
   of mode i's rho-ball, a_i = gamma(A_i), and D_i = min_{j != i} |m_i - m_j| - 2 rho the
   gap between mode i's ball and the others'. Then the preimage of the other balls lies
   outside the (D_i / L)-enlargement of A_i, and the Gaussian isoperimetric inequality
   (Sudakov & Tsirelson 1974; Borell 1975), gamma(A_r) >= Phi(Phi^{-1}(gamma(A)) + r),
   gives

       mass off the modes  >=  max_i [ Phi(Phi^{-1}(a_i) + D_i / L) - a_i ].

   L is certified by the product of the layers' spectral norms (ReLU is 1-Lipschitz),
   so the bound is valid (and loose by as much as that product overstates L); a_i is
   the generator's measured mass near mode i.

Diverged replicates (non-finite losses or samples, or W1 beyond ten target diameters)
keep their rows with NaN values, get a ``diverged_at_step`` row, and are counted
("k/n diverged") in every summary.

Run `python -m studies.gan_pathologies --help` for every option.
"""

from __future__ import annotations

import dataclasses
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import scipy.stats

import theory
from models import gan_objectives
from models.conditional import ConditionalMLPDiscriminatorSpec, ConditionalMLPGeneratorSpec, LabelledData
from models.critics import BjorckGroupSortSpec
from models.gan_training import (
    FrozenGenerator,
    GANTraining,
    MLPDiscriminatorSpec,
    generator_gradient_norm,
    init_discriminator_replicas,
    init_replicas,
    train_discriminator_replicas,
    train_replicas,
)
from models.generator import GaussianLatent, MLPGeneratorSpec
from models.sharding import mesh_for
from models.training import run_in_chunks
from studies import kit
from studies.kit import config_field

OBJECTIVES: dict[str, gan_objectives.AbstractGANObjective] = {
    "minimax": gan_objectives.Minimax(),
    "non-saturating": gan_objectives.NonSaturating(),
    "least-squares": gan_objectives.LeastSquares(),
    "hinge": gan_objectives.Hinge(),
    "fgan-kl": gan_objectives.FGAN(theory.KullbackLeibler()),
    "fgan-reverse-kl": gan_objectives.FGAN(theory.ReverseKullbackLeibler()),
    "fgan-pearson": gan_objectives.FGAN(theory.PearsonChiSquared()),
    "fgan-hellinger": gan_objectives.FGAN(theory.SquaredHellinger()),
    "fgan-js": gan_objectives.FGAN(theory.JensenShannon()),
    "wgan": gan_objectives.WGAN(),
}
"""Command-line (and table) names of the objectives."""

SQUARE_GRID_SIDE = 5
"""The 25-mode grid is {-2, -1, 0, 1, 2}^2 times the spacing (config.grid_spacing)."""

MODE_TARGETS = (2, 4, 9, 25)
"""Grids a cell may train on: theory.GRID_MEANS (K = 2, 4, 9) and the 5 x 5 grid."""

DIVERGENCE_DIAMETERS = 10.0
"""A replicate whose W1 exceeds this many target diameters has diverged (as in
studies.wgan_capacity: an untrained generator scores about one diameter)."""

MODE_RADIUS = 3.0
"""'Near a mode' = within 3 standard deviations (theory.mode_statistics' default)."""


def objective_name(objective: gan_objectives.AbstractGANObjective) -> str:
    """The name of `objective` in OBJECTIVES (its class name if it is not there)."""
    for name, known in OBJECTIVES.items():
        if known == objective:
            return name
    return type(objective).__name__


def _parse_objectives(text: str) -> tuple[gan_objectives.AbstractGANObjective, ...]:
    parts = [part.strip() for part in text.split(",")]
    unknown = [part for part in parts if part not in OBJECTIVES]
    if not text.strip() or unknown:
        raise ValueError(f"expected comma-separated objectives from {list(OBJECTIVES)}, got {text!r}")
    return tuple(OBJECTIVES[part] for part in parts)


def _parse_objective(text: str) -> gan_objectives.AbstractGANObjective:
    if text.strip() not in OBJECTIVES:
        raise ValueError(f"expected one of {list(OBJECTIVES)}, got {text!r}")
    return OBJECTIVES[text.strip()]


def log_checkpoints(n: int, multiples: tuple[int, ...] = (1, 2, 5)) -> list[int]:
    """m * 10^j <= n for m in `multiples` (1, 2, 5, 10, 20, 50, ... by default), and n:
    where curves on a log axis are sampled."""
    points = {n}
    decade = 1
    while decade <= n:
        points |= {m * decade for m in multiples if m * decade <= n}
        decade *= 10
    return sorted(points)


def square_grid_means(spacing: float) -> np.ndarray:
    """The 25 means spacing * {-2, ..., 2}^2 of the 5 x 5 grid, shape (25, 2)."""
    side = spacing * (np.arange(SQUARE_GRID_SIDE) - (SQUARE_GRID_SIDE - 1) / 2)
    return np.array([(a, b) for a in side for b in side], np.float64)


def grid_target(k: int, *, spacing: float, variance: float) -> theory.MixtureOfGaussians:
    """Equal-weight Gaussian grid: theory.gaussian_grid(k, variance) for k in 2, 4, 9, and
    the 5 x 5 grid of `square_grid_means(spacing)` for k = 25."""
    if k == 25:
        return theory.MixtureOfGaussians.isotropic(jnp.full((25,), 1 / 25), jnp.asarray(square_grid_means(spacing)), variance)
    if k not in theory.GRID_MEANS:
        raise ValueError(f"K must be one of {MODE_TARGETS}, got {k!r}")
    return theory.gaussian_grid(k, variance)


def target_diameter(target: theory.MixtureOfGaussians) -> float:
    """max distance between component means plus 6 standard deviations of the widest one."""
    means = np.asarray(target.means, np.float64)
    spread = max(float(np.linalg.norm(a - b)) for a in means for b in means)
    widest = max(float(np.sqrt(np.linalg.eigvalsh(np.asarray(c, np.float64)).max())) for c in target.covs)
    return spread + 6 * widest


def bound_laws(law: str) -> tuple[theory.AbstractDistribution, theory.AbstractDistribution]:
    """The fixed pairs (P, Q) of experiment 1, both with densities.

    "1d": P = (N(-1.5, 0.5^2) + N(1.5, 0.5^2)) / 2 against Q = N(0, 1).
    "2d": P = the K = 4 Gaussian grid against Q = N(0, 4 I).
    """
    if law == "1d":
        p = theory.MixtureOfGaussians.isotropic(jnp.array([0.5, 0.5]), jnp.array([[-1.5], [1.5]]), 0.25)
        return p, theory.Gaussian(jnp.zeros(1), jnp.eye(1))
    if law == "2d":
        return theory.gaussian_grid(4), theory.Gaussian(jnp.zeros(2), 4.0 * jnp.eye(2))
    raise ValueError(f"law must be '1d' or '2d', got {law!r}")


BOUND_LAWS = ("1d", "2d")


@dataclasses.dataclass(frozen=True)
class Config:
    """The five experiments' settings (networks and optimiser shared unless a field says otherwise)."""

    experiments: tuple[str, ...] = config_field(
        ("bounds", "gradients", "js", "modes", "disconnected"), "experiments to run",
        parse=lambda text: tuple(part.strip() for part in text.split(",")),
    )
    # Shared networks and optimiser.
    generator_depth: int = config_field(3, "generator linear layers", low=1, high=16)
    generator_width: int = config_field(32, "generator hidden width", low=1, high=1024)
    latent_dim: int = config_field(2, "generator latent dimension (Gaussian latent N(0, I))", low=1, high=64)
    discriminator_depth: int = config_field(3, "discriminator / critic linear layers", low=1, high=16)
    discriminator_width: int = config_field(32, "discriminator / critic hidden width (even: the WGAN critic sorts pairs)", low=2, high=1024)
    lr_discriminator: float = config_field(1e-3, "discriminator learning rate (Adam)", low=0.0, open_low=True)
    lr_generator: float = config_field(1e-3, "generator learning rate (Adam)", low=0.0, open_low=True)
    adam_b1: float = config_field(0.5, "Adam beta1", low=0.0, high=0.999999)
    adam_b2: float = config_field(0.999, "Adam beta2", low=0.0, high=0.999999)
    discriminator_steps: int = config_field(1, "discriminator steps per generator step", low=1, high=100)
    batch_size: int = config_field(256, "batch size of real and fake points", low=2, high=65536)
    n_seeds: int = config_field(5, "independent replicates per cell, trained as one vmapped program", low=2, high=256)
    seed: int = config_field(0, "root PRNG seed")
    # 1. Bounds.
    bound_objectives: tuple[gan_objectives.AbstractGANObjective, ...] = config_field(
        _parse_objectives("minimax,hinge,fgan-kl,wgan"),
        f"experiment 1: objectives whose discriminators are trained alone (WGAN on the 1-D pair only), from {list(OBJECTIVES)}",
        parse=_parse_objectives, show=lambda objectives: ",".join(map(objective_name, objectives)),
    )
    bound_widths: tuple[int, ...] = config_field((8, 32), "experiment 1: discriminator widths (even)", low=2, high=1024)
    bound_steps: int = config_field(1000, "experiment 1: discriminator steps (bound recorded at 1, 10, 100, ... and the last)", low=1, high=10**6)
    bound_panels: int = config_field(32, "experiment 1: Gauss-Legendre panels per axis of the bound's quadrature (error = |I(n) - I(2n)|)", low=2, high=512)
    # 2. Gradients.
    gradient_modes: int = config_field(4, "experiment 2: Gaussian grid the generator is trained on (K in 2, 4, 9, 25)", low=2, high=25)
    gradient_stages: tuple[int, ...] = config_field((0, 200, 1000), "experiment 2: generator steps (non-saturating GAN) before freezing", low=0, high=10**6)
    gradient_steps: int = config_field(1000, "experiment 2: discriminator steps against the frozen generator", low=1, high=10**6)
    gradient_points: int = config_field(1024, "experiment 2: latent draws per gradient-norm evaluation", low=2, high=10**6)
    # 3. JS saturation.
    js_thetas: tuple[float, ...] = config_field(
        (-1.0, -0.5, -0.1, 0.0, 0.1, 0.5, 1.0), "experiment 3: shifts theta of P_theta = (theta, U[0,1])",
        low=-10.0, high=10.0,
    )
    js_steps: int = config_field(500, "experiment 3: discriminator steps per theta", low=1, high=10**6)
    js_points: int = config_field(4096, "experiment 3: Monte Carlo draws per estimate and derivative", low=2, high=10**6)
    # 4. Mode collapse.
    mode_objectives: tuple[gan_objectives.AbstractGANObjective, ...] = config_field(
        _parse_objectives("minimax,non-saturating,least-squares,hinge,wgan"),
        f"experiment 4: objectives trained on the grids, from {list(OBJECTIVES)}", parse=_parse_objectives,
        show=lambda objectives: ",".join(map(objective_name, objectives)),
    )
    mode_grids: tuple[int, ...] = config_field((4, 9, 25), "experiment 4: Gaussian grids K (each in 2, 4, 9, 25)", low=2, high=25)
    grid_spacing: float = config_field(2.0, "spacing of the 5 x 5 grid (the named grids have spacing 2)", low=0.0, open_low=True, high=100.0)
    grid_variance: float = config_field(0.1, "component variance of every grid (theory.GRID_VARIANCE = 0.1)", low=0.0, open_low=True, high=100.0)
    mode_steps: int = config_field(1500, "experiment 4: generator steps", low=1, high=10**7)
    eval_every: int = config_field(250, "experiments 4, 5: evaluate every this many generator steps (and at 0 and the end)", low=1, high=10**7)
    eval_points: int = config_field(1024, "experiments 4, 5: generated (and target) points per evaluation (POT is m x m)", low=2, high=20_000)
    # 5. Disconnected supports.
    disconnected_modes: tuple[int, ...] = config_field((2, 9), "experiment 5: Gaussian grids K (each in 2, 4, 9, 25)", low=2, high=25)
    disconnected_objective: gan_objectives.AbstractGANObjective = config_field(
        OBJECTIVES["non-saturating"], f"experiment 5: objective of both GANs, from {list(OBJECTIVES)}", parse=_parse_objective,
    )
    disconnected_steps: int = config_field(1500, "experiment 5: generator steps", low=1, high=10**7)
    n_train: int = config_field(4096, "experiment 5: labelled training points per seed (shared by both GANs)", low=2, high=10**6)
    draw_figures: bool = config_field(True, "draw the figures at the end (python -m figures.gan_pathologies redraws them)")

    def __post_init__(self):
        kit.check_fields(self)
        known = ("bounds", "gradients", "js", "modes", "disconnected")
        for name in self.experiments:
            if name not in known:
                raise ValueError(f"experiments must be among {list(known)}, got {name!r}")
        if len(set(self.experiments)) != len(self.experiments):
            raise ValueError(f"experiments must not repeat, got {self.experiments}")
        for field, ks in (("mode_grids", self.mode_grids), ("disconnected_modes", self.disconnected_modes),
                          ("gradient_modes", (self.gradient_modes,))):
            for k in ks:
                if k not in MODE_TARGETS:
                    raise ValueError(f"{field} must hold Gaussian grids K in {MODE_TARGETS}, got K={k}")
        for name in ("discriminator_width",):
            if getattr(self, name) % 2:
                raise ValueError(f"{name} must be even (the WGAN critic sorts pairs of units), got {getattr(self, name)}")
        for w in self.bound_widths:
            if w % 2:
                raise ValueError(f"bound_widths must be even (the WGAN critic sorts pairs of units), got {w}")
        trained = [getattr(self, f"{e}_steps" if e != "modes" else "mode_steps")
                   for e in ("modes", "disconnected") if e in self.experiments]
        if trained and self.eval_every > min(trained):
            raise ValueError(f"eval_every must be <= the steps of experiments 4 and 5 (= {min(trained)}), got {self.eval_every}")
        if self.grid_spacing <= 2 * MODE_RADIUS * math.sqrt(self.grid_variance):
            raise ValueError(
                f"grid_spacing must exceed the mode balls' diameter 2 * {MODE_RADIUS} * sqrt(grid_variance) = "
                f"{2 * MODE_RADIUS * math.sqrt(self.grid_variance):.3g} (modes must be separated), got {self.grid_spacing}"
            )
        self.training()  # the optimiser's own checks

    def training(self) -> GANTraining:
        return kit.component_from(GANTraining, self)

    def generator(self) -> MLPGeneratorSpec:
        return MLPGeneratorSpec(depth=self.generator_depth, width=self.generator_width, latent_dim=self.latent_dim,
                            latent=GaussianLatent())

    def discriminator(self, objective: gan_objectives.AbstractGANObjective, width: int | None = None):
        """The discriminator spec an objective trains: a Lipschitz critic for WGAN, an MLP otherwise."""
        width = self.discriminator_width if width is None else width
        if isinstance(objective, gan_objectives.WGAN):
            return BjorckGroupSortSpec(depth=self.discriminator_depth, width=width)
        return MLPDiscriminatorSpec(depth=self.discriminator_depth, width=width)

    def target(self, k: int) -> theory.MixtureOfGaussians:
        return grid_target(k, spacing=self.grid_spacing, variance=self.grid_variance)

    def eval_steps(self, n_steps: int) -> list[int]:
        return sorted(set(range(0, n_steps, self.eval_every)) | {n_steps})


PRESETS = {
    # All five experiments on a 2-core CPU in under 10 minutes (see README for the time).
    "quick": Config(),
    # Longer training, more widths and stages, 10 seeds.
    "paper": Config(
        bound_objectives=_parse_objectives(
            "minimax,least-squares,hinge,fgan-kl,fgan-reverse-kl,fgan-pearson,fgan-hellinger,fgan-js,wgan"),
        bound_widths=(8, 32, 128),
        js_thetas=(-1.0, -0.5, -0.2, -0.1, -0.05, 0.0, 0.05, 0.1, 0.2, 0.5, 1.0),
        bound_steps=20_000,
        bound_panels=64,
        gradient_stages=(0, 500, 2000, 10_000),
        gradient_steps=4000,
        js_steps=5000,
        js_points=65_536,
        mode_objectives=_parse_objectives("minimax,non-saturating,least-squares,hinge,fgan-kl,wgan"),
        mode_steps=20_000,
        eval_every=1000,
        eval_points=2048,
        disconnected_modes=(2, 4, 9, 25),
        disconnected_steps=20_000,
        discriminator_steps=3,
        n_seeds=10,
    ),
    # Seconds: for tests and a first look at the pipeline.
    "smoke": Config(
        bound_objectives=_parse_objectives("minimax,wgan"),
        bound_widths=(8,),
        bound_steps=20,
        bound_panels=8,
        gradient_stages=(0, 5),
        gradient_steps=10,
        gradient_points=64,
        js_thetas=(0.0, 0.5),
        js_steps=10,
        js_points=256,
        mode_objectives=_parse_objectives("non-saturating,wgan"),
        mode_grids=(4,),
        mode_steps=10,
        eval_every=5,
        eval_points=64,
        disconnected_modes=(2,),
        disconnected_steps=10,
        n_train=256,
        batch_size=32,
        n_seeds=2,
        draw_figures=False,
    ),
}


# --------------------------------------------------------------------------------------
# Helpers.


def _replica(tree, index: int):
    return jax.tree.map(lambda leaf: leaf[index] if eqx.is_array(leaf) else leaf, tree)


def _seeds(config: Config) -> list[int]:
    return list(range(config.n_seeds))


def _stack(keys: kit.Keys, purpose: str, seeds, **coords):
    return keys.stack(purpose, [{**coords, "seed": s} for s in seeds])


def _fold(keys_r, step: int):
    return jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys_r, step)


CHUNKS = (100, 10, 1)
"""Training between two checkpoints runs as chunks of these lengths (greedy), so each
program compiles at most three scan lengths however the checkpoints are spaced."""


def advance(train, states, keys_r, start: int, stop: int):
    """Run `train(states, keys, n_steps)` from step `start` to `stop` in chunks of CHUNKS.

    Each chunk's keys are the replicas' keys folded with the chunk's first step, so the
    result depends only on (keys_r, start, stop) and the chunk decomposition.

    Returns:
        The states at `stop` and the last chunk's losses.
    """
    losses, step = None, start
    while step < stop:
        chunk = next(c for c in CHUNKS if c <= stop - step)
        states, losses = train(states, _fold(keys_r, step), chunk)
        step += chunk
    return states, losses


def spectral_lipschitz_bound(network: eqx.nn.MLP) -> float:
    """prod_k ||W_k||_2 of an MLP with 1-Lipschitz activations: an upper bound on its Lipschitz constant."""
    bound = 1.0
    for layer in network.layers:
        bound *= float(np.linalg.norm(np.asarray(layer.weight, np.float64), 2))
    return bound


def isoperimetric_gap_bound(mode_masses, separations, lipschitz: float) -> float:
    """max_i [Phi(Phi^{-1}(a_i) + D_i / L) - a_i]: a lower bound on the mass off the modes.

    For an L-Lipschitz push-forward of N(0, I_k) (derived in this module's docstring from
    the Gaussian isoperimetric inequality; not quoted from Tanielian et al. 2020).

    Args:
        mode_masses: a_i, the generator's mass in mode i's ball, shape (K,), in [0, 1].
        separations: D_i, the distance from mode i's ball to the nearest other ball, (K,), > 0.
        lipschitz: L > 0, an upper bound on the generator's Lipschitz constant.
    """
    a = np.asarray(mode_masses, np.float64)
    d = np.asarray(separations, np.float64)
    if a.shape != d.shape or a.ndim != 1:
        raise ValueError(f"mode_masses and separations must be vectors of one shape, got {a.shape} and {d.shape}")
    if np.any((a < 0) | (a > 1)) or not np.all(d > 0):
        raise ValueError(f"need masses in [0, 1] and separations > 0, got {a} and {d}")
    if not (math.isfinite(lipschitz) and lipschitz > 0):
        raise ValueError(f"lipschitz must be finite and > 0, got {lipschitz}")
    with np.errstate(divide="ignore"):
        gains = scipy.stats.norm.cdf(scipy.stats.norm.ppf(a) + d / lipschitz) - a
    return float(max(0.0, np.max(np.where(a > 0, gains, 0.0))))


def ball_separations(target: theory.MixtureOfGaussians, radius: float = MODE_RADIUS) -> np.ndarray:
    """D_i = min_{j != i} |m_i - m_j| - 2 radius sigma: the gap between mode balls (isotropic grids)."""
    means = np.asarray(target.means, np.float64)
    sigma = float(np.sqrt(np.asarray(target.covs, np.float64)[0, 0, 0]))
    distances = np.linalg.norm(means[:, None] - means[None], axis=-1)
    np.fill_diagonal(distances, np.inf)
    return distances.min(axis=1) - 2 * radius * sigma


# --------------------------------------------------------------------------------------
# 1. Variational bounds are tight only at the optimum.


def _bound_cell(config: Config, keys: kit.Keys, law: str, objective: gan_objectives.AbstractGANObjective, width: int,
                progress, mesh=None) -> list[dict]:
    p, q = bound_laws(law)
    name = objective_name(objective)
    spec = config.discriminator(objective, width)
    training = dataclasses.replace(config.training(), discriminator_steps=1)
    seeds = _seeds(config)
    coords = {"law": law, "objective": name, "width": width}
    states = init_discriminator_replicas(_stack(keys, "bounds-init", seeds, **coords), discriminator_spec=spec,
                                         training=training, data_dim=p.dim, mesh=mesh)
    method = theory.Quadrature(panels=config.bound_panels)
    exact = objective.exact_divergence(p, q) if isinstance(objective, gan_objectives.WGAN) else objective.exact_divergence(p, q, method=method)
    rows = [{"experiment": "bounds", **coords, "seed": s, "metric": "divergence_exact", "value": exact.value,
             "error": exact.error} for s in seeds]
    train_keys = _stack(keys, "bounds-train", seeds, **coords)
    done = 0
    diverged = np.full(len(seeds), -1)
    for step in log_checkpoints(config.bound_steps, (1,)):
        with progress.phase("train"):
            states, _ = advance(lambda st, k, n: train_discriminator_replicas(
                st, p, q, k, n_steps=n, objective=objective, discriminator_spec=spec, training=training, mesh=mesh),
                states, train_keys, done, step)
            reported = np.asarray(jax.block_until_ready(states.diverged_at))
        done = step
        diverged = np.where((diverged < 0) & (reported >= 0), reported, diverged)
        with progress.phase("evaluate"):
            for r, seed in enumerate(seeds):
                network = _replica(states.discriminator, r)
                bound = gan_objectives.discriminator_bound(objective, jax.vmap(network), p, q, method=method) if diverged[r] < 0 else None
                value = bound.value if bound is not None and math.isfinite(bound.value) else math.nan
                error = bound.error if bound is not None else math.nan
                rows.append({"experiment": "bounds", **coords, "seed": seed, "d_step": step,
                             "metric": "divergence_estimate", "value": value, "error": error})
                rows.append({"experiment": "bounds", **coords, "seed": seed, "d_step": step,
                             "metric": "divergence_gap", "value": exact.value - value, "error": error + exact.error})
        progress.update(step=step, total_steps=config.bound_steps, exact=exact.value,
                        estimate=float(np.nanmean([r["value"] for r in rows[-2 * len(seeds)::2]])))
    rows += [{"experiment": "bounds", **coords, "seed": s, "d_step": config.bound_steps, "metric": "diverged_at_step",
              "value": float(diverged[r])} for r, s in enumerate(seeds)]
    return rows


# --------------------------------------------------------------------------------------
# 2. Vanishing gradients.


def _gradient_cell(config: Config, keys: kit.Keys, stage: int, progress, mesh=None) -> list[dict]:
    target = config.target(config.gradient_modes)
    generator_spec = config.generator()
    training = config.training()
    seeds = _seeds(config)
    coords = {"stage": stage, "K": config.gradient_modes}
    pretrain = gan_objectives.NonSaturating()
    states = init_replicas(_stack(keys, "gradients-init", seeds, **coords), generator_spec=generator_spec,
                           discriminator_spec=config.discriminator(pretrain), training=training, data_dim=2, mesh=mesh)
    if stage > 0:
        with progress.phase("train generator"):
            states, _ = advance(lambda st, k, n: train_replicas(
                st, target, k, n_steps=n, objective=pretrain, generator_spec=generator_spec,
                discriminator_spec=config.discriminator(pretrain), training=training, mesh=mesh),
                states, _stack(keys, "gradients-pretrain", seeds, **coords), 0, stage)
            pretrain_diverged = np.asarray(jax.block_until_ready(states.diverged_at))
    else:
        pretrain_diverged = np.full(len(seeds), -1)
    generators = states.generator
    frozen = FrozenGenerator(spec=generator_spec, network=generators)
    d_training = dataclasses.replace(training, discriminator_steps=1)
    latent_keys = _stack(keys, "gradients-latent", seeds, **coords)  # the same z at every d_step
    rows: list[dict] = []
    # The saturating and -log D costs are read against one cross-entropy discriminator
    # (Minimax and NonSaturating share it); the WGAN cost against a fresh critic.
    readings = ((gan_objectives.Minimax(), (gan_objectives.Minimax(), gan_objectives.NonSaturating())),
                (gan_objectives.WGAN(), (gan_objectives.WGAN(),)))
    for discriminator_objective, costs in readings:
        spec = config.discriminator(discriminator_objective)
        name = objective_name(discriminator_objective)
        d_states = init_discriminator_replicas(_stack(keys, "gradients-discriminator", seeds, discriminator=name, **coords),
                                               discriminator_spec=spec, training=d_training, data_dim=2, mesh=mesh)
        train_keys = _stack(keys, "gradients-train", seeds, discriminator=name, **coords)
        done = 0
        diverged = pretrain_diverged.copy()
        for step in log_checkpoints(config.gradient_steps):
            with progress.phase("train discriminator"):
                d_states, losses = advance(lambda st, k, n: train_discriminator_replicas(
                    st, target, frozen, k, n_steps=n, objective=discriminator_objective, discriminator_spec=spec,
                    training=d_training, mesh=mesh), d_states, train_keys, done, step)
                reported = np.asarray(jax.block_until_ready(d_states.diverged_at))
            done = step
            diverged = np.where((diverged < 0) & (reported >= 0), step, diverged)
            estimates = np.asarray(losses.divergence_estimate[:, -1], np.float64)
            for cost in costs:
                norms = np.asarray(eqx.filter_vmap(
                    lambda g, d, k, cost=cost: generator_gradient_norm(g, d, k, objective=cost, generator_spec=generator_spec,
                                                                       n=config.gradient_points)
                )(generators, d_states.discriminator, latent_keys), np.float64)
                for r, seed in enumerate(seeds):
                    ok = diverged[r] < 0 and math.isfinite(norms[r])
                    rows.append({"experiment": "gradients", **coords, "objective": objective_name(cost), "seed": seed,
                                 "d_step": step, "metric": "generator_grad_norm", "value": norms[r] if ok else math.nan})
            for r, seed in enumerate(seeds):
                ok = diverged[r] < 0 and math.isfinite(estimates[r])
                rows.append({"experiment": "gradients", **coords, "objective": name, "seed": seed, "d_step": step,
                             "metric": "divergence_estimate", "value": estimates[r] if ok else math.nan})
        for r, seed in enumerate(seeds):
            for cost in costs:
                rows.append({"experiment": "gradients", **coords, "objective": objective_name(cost), "seed": seed,
                             "d_step": config.gradient_steps, "metric": "diverged_at_step", "value": float(diverged[r])})
        progress.update(step=stage, discriminator=name, final_norm=float(np.nanmean(norms)))
    return rows


# --------------------------------------------------------------------------------------
# 3. JS saturation on parallel lines.


def _js_cell(config: Config, keys: kit.Keys, objective: gan_objectives.AbstractGANObjective, theta: float, progress,
             mesh=None) -> list[dict]:
    name = objective_name(objective)
    spec = config.discriminator(objective)
    training = dataclasses.replace(config.training(), discriminator_steps=1)
    seeds = _seeds(config)
    coords = {"objective": name, "theta": theta}
    real, fake = theory.VerticalSegment(0.0), theory.VerticalSegment(theta)
    states = init_discriminator_replicas(_stack(keys, "js-init", seeds, **coords), discriminator_spec=spec,
                                         training=training, data_dim=2, mesh=mesh)
    with progress.phase("train"):
        states, _ = advance(lambda st, k, n: train_discriminator_replicas(
            st, real, fake, k, n_steps=n, objective=objective, discriminator_spec=spec, training=training, mesh=mesh),
            states, _stack(keys, "js-train", seeds, **coords), 0, config.js_steps)
        diverged = np.asarray(jax.block_until_ready(states.diverged_at))
    n = config.js_points
    if isinstance(objective, gan_objectives.WGAN):
        exact, exact_slope, error = abs(theta), float(np.sign(theta)), 0.0
    else:
        # theory.js on the two segments (densities w.r.t. length): log 2 unless theta = 0.
        js = theory.js(fake, real, key=keys("js-exact", theta=theta), method=theory.MonteCarlo(n))
        exact, exact_slope, error = js.value, 0.0, js.error
    rows = []
    for r, seed in enumerate(seeds):
        network = _replica(states.discriminator, r)
        key_bound, key_slope = jax.random.split(keys("js-evaluate", seed=seed, **coords))
        if diverged[r] >= 0:
            estimate = slope = slope_error = value_error = math.nan
        else:
            bound = gan_objectives.discriminator_bound(objective, jax.vmap(network), real, fake, key=key_bound, method=theory.MonteCarlo(n))
            estimate, value_error = bound.value, bound.error
            # dB/dtheta with v frozen: only the fake term moves, slope * E_U[d/dtheta l_fake(v(theta, U))].
            u = jax.random.uniform(key_slope, (n,), jnp.float32)
            per_point = jax.vmap(jax.grad(lambda t, u: objective.bound_slope * objective.fake_loss(network(jnp.stack([t, u])))),
                                 in_axes=(None, 0))(jnp.float32(theta), u)
            per_point = np.asarray(per_point, np.float64)
            slope, slope_error = float(per_point.mean()), float(per_point.std(ddof=1) / math.sqrt(n))
        base = {"experiment": "js", **coords, "seed": seed, "d_step": config.js_steps}
        rows += [
            {**base, "metric": "divergence_estimate", "value": estimate, "error": value_error},
            {**base, "metric": "divergence_exact", "value": exact, "error": error},
            {**base, "metric": "estimate_grad_theta", "value": slope, "error": slope_error},
            {**base, "metric": "exact_grad_theta", "value": exact_slope, "error": 0.0},
            {**base, "metric": "diverged_at_step", "value": float(diverged[r])},
        ]
    progress.update(theta=theta, exact=exact, estimate=float(np.nanmean([r["value"] for r in rows[::5]])))
    return rows


# --------------------------------------------------------------------------------------
# 4. Mode collapse and oscillation; 5. disconnected supports. Shared evaluation.


def _target_rows(config: Config, keys: kit.Keys, k: int) -> list[dict]:
    """The grid's means (so figures rebuild it), its exact mass off the modes and the W1 floor."""
    target = config.target(k)
    rows = [{"experiment": "targets", "K": k, "metric": "mode_mean", "mode": i, "x": float(m[0]), "y": float(m[1])}
            for i, m in enumerate(np.asarray(target.means, np.float64))]
    # Each component keeps 1 - exp(-radius^2 / 2) of its mass within its radius (chi^2 with
    # 2 degrees of freedom); the balls are disjoint (Config checks the spacing), so the
    # target's own mass off the modes is below exp(-radius^2 / 2) by the mass a component
    # puts in other balls (< 1e-9 at spacing 2, variance 0.1).
    rows.append({"experiment": "targets", "K": k, "metric": "mass_off_modes_exact", "value": math.exp(-MODE_RADIUS**2 / 2)})
    floors = []
    for s in _seeds(config):
        x = np.asarray(target.sample(keys("floor-x", K=k, seed=s), config.eval_points), np.float64)
        y = np.asarray(target.sample(keys("floor-y", K=k, seed=s), config.eval_points), np.float64)
        floors.append(theory.wasserstein(x, y).value)
    interval = kit.over_replicates(floors)
    rows.append({"experiment": "targets", "K": k, "metric": "w1_floor", **interval.row()})
    return rows


class _GridRun:
    """Training and exact evaluation of every seed of one GAN on one grid."""

    def __init__(self, config, keys, *, experiment, k, objective, model, n_steps, progress, mesh=None):
        self.config, self.keys, self.experiment, self.k, self.mesh = config, keys, experiment, k, mesh
        self.objective, self.model, self.n_steps, self.progress = objective, model, n_steps, progress
        self.target = config.target(k)
        self.limit = DIVERGENCE_DIAMETERS * target_diameter(self.target)
        self.seeds = _seeds(config)
        self.conditional = model == "conditional"
        self.training = config.training()
        if self.conditional:
            self.generator_spec = ConditionalMLPGeneratorSpec(n_classes=k, depth=config.generator_depth, width=config.generator_width,
                                                          latent_dim=config.latent_dim, latent=GaussianLatent())
            self.discriminator_spec = ConditionalMLPDiscriminatorSpec(n_classes=k, depth=config.discriminator_depth,
                                                                  width=config.discriminator_width)
        else:
            self.generator_spec = config.generator()
            self.discriminator_spec = config.discriminator(objective)
        self.coords = {"K": k, "objective": objective_name(objective)} | ({"model": model} if experiment == "disconnected" else {})
        self.rows: list[dict] = []

    def _row(self, seed, step, metric, value, **extra):
        self.rows.append({"experiment": self.experiment, **self.coords, "seed": seed, "step": step, "metric": metric,
                          "value": float(value), **extra})

    def _data(self):
        if self.experiment == "modes":
            return self.target  # fresh draws every batch
        # Experiment 5: one labelled training set per (K, seed), shared by both models.
        points, labels = [], []
        for s in self.seeds:
            x, y = self.target.sample_with_components(self.keys("data", K=self.k, seed=s), self.config.n_train)
            points.append(x)
            labels.append(y)
        points, labels = jnp.stack(points).astype(jnp.float32), jnp.stack(labels)
        return LabelledData(points, labels, self.k) if self.conditional else points

    def _generate(self, generators, step):
        m = self.config.eval_points
        keys = _fold(_stack(self.keys, "evaluate", self.seeds, K=self.k, **({"model": self.model} if self.experiment == "disconnected" else {}),
                            experiment=self.experiment), step)
        if self.conditional:
            def one(g, key):
                key_labels, key_z = jax.random.split(key)
                labels = jax.random.categorical(key_labels, jnp.log(self.target.weights), shape=(m,))
                return self.generator_spec.sample(g, key_z, labels)
        else:
            def one(g, key):
                return self.generator_spec.sample(g, key, m)
        return np.asarray(eqx.filter_vmap(one)(generators, keys), np.float64)

    def __call__(self) -> list[dict]:
        config = self.config
        data = self._data()
        init_coords = {"experiment": self.experiment, **self.coords}
        states = init_replicas(_stack(self.keys, "init", self.seeds, **init_coords), generator_spec=self.generator_spec,
                               discriminator_spec=self.discriminator_spec, training=self.training, data_dim=2,
                               mesh=self.mesh)
        train_keys = _stack(self.keys, "train", self.seeds, **init_coords)
        diverged_at = np.full(len(self.seeds), -1)

        def train_chunk(states, start, stop):
            with self.progress.phase("train"):
                states, _ = advance(lambda st, k, n: train_replicas(
                    st, data, k, n_steps=n, objective=self.objective, generator_spec=self.generator_spec,
                    discriminator_spec=self.discriminator_spec, training=self.training, mesh=self.mesh),
                    states, train_keys, start, stop)
                return states, np.asarray(jax.block_until_ready(states.diverged_at))

        def on_boundary(states, step, reported):
            nonlocal diverged_at
            if reported is not None:
                diverged_at = np.where((diverged_at < 0) & (reported >= 0), reported, diverged_at)
            with self.progress.phase("evaluate"):
                diverged_at = self._evaluate(states, step, diverged_at)

        run_in_chunks(train_chunk, states, config.eval_steps(self.n_steps), on_boundary=on_boundary)
        for r, seed in enumerate(self.seeds):
            self._row(seed, self.n_steps, "diverged_at_step", diverged_at[r])
        return self.rows

    def _evaluate(self, states, step, diverged_at):
        generated = self._generate(states.generator, step)
        m = self.config.eval_points
        shown = []
        for r, seed in enumerate(self.seeds):
            ok = diverged_at[r] < 0 and np.all(np.isfinite(generated[r]))
            if ok:
                fresh = np.asarray(self.target.sample(jax.random.fold_in(self.keys("target-eval", K=self.k, seed=seed), step), m),
                                   np.float64)
                w1 = theory.wasserstein(generated[r], fresh).value
                ok = w1 <= self.limit
            if not ok:
                if diverged_at[r] < 0:
                    diverged_at[r] = step
                for metric in ("w1", "modes_covered", "mass_off_modes"):
                    self._row(seed, step, metric, math.nan)
                continue
            modes = theory.mode_statistics(generated[r], self.target, radius=MODE_RADIUS)
            self._row(seed, step, "w1", w1)
            self._row(seed, step, "modes_covered", modes.modes_covered)
            self._row(seed, step, "mass_off_modes", 1.0 - modes.mass_near_any_mode)
            shown.append(w1)
            if self.experiment == "disconnected" and not self.conditional:
                network = _replica(states.generator, r)
                lipschitz = spectral_lipschitz_bound(network)
                bound = isoperimetric_gap_bound(modes.mass_near_mode, ball_separations(self.target), lipschitz)
                self._row(seed, step, "mass_off_modes_bound", bound)
                self._row(seed, step, "generator_lipschitz_bound", lipschitz)
            if step == self.n_steps and seed == 0:
                for x, y in generated[r][: min(m, 512)]:
                    self.rows.append({"experiment": self.experiment, **self.coords, "seed": seed, "step": step,
                                      "metric": "sample", "x": float(x), "y": float(y)})
        if step == self.n_steps and self.experiment == "modes":
            self._oscillation()
        self.progress.update(step=step, total_steps=self.n_steps, w1_mean=float(np.mean(shown)) if shown else math.nan,
                             diverged=int(np.sum(diverged_at >= 0)))
        return diverged_at

    def _oscillation(self):
        """Per seed: the standard deviation and mean of W1 over the last quarter of evaluations."""
        w1 = pd.DataFrame([r for r in self.rows if r["metric"] == "w1"])
        for seed, group in w1.groupby("seed"):
            values = group.sort_values("step")["value"].to_numpy()
            tail = values[-max(2, math.ceil(0.25 * len(values))):]
            finite = np.all(np.isfinite(tail)) and len(tail) >= 2
            self._row(seed, self.n_steps, "w1_late_std", float(np.std(tail, ddof=1)) if finite else math.nan)
            self._row(seed, self.n_steps, "w1_late_mean", kit.late_mean(values))


# --------------------------------------------------------------------------------------
# The sweep.


def cells(config: Config, *, devices: int = 1) -> list[kit.Cell]:
    """Every cell of the experiments named in config.experiments, in a fixed order.

    `devices` (``--devices``): the seeds of every training are sharded over that many
    local devices (0: all; 1: the plain single-device program); never changes the numbers.
    """
    keys = kit.Keys(config.seed)
    mesh = mesh_for(devices)
    out: list[kit.Cell] = []
    if "bounds" in config.experiments:
        for law in BOUND_LAWS:
            for objective in config.bound_objectives:
                if isinstance(objective, gan_objectives.WGAN) and law != "1d":
                    continue  # exact W1 in closed form on the line only
                for width in config.bound_widths:
                    name = objective_name(objective)
                    out.append(kit.Cell(
                        f"bounds_law={law}_objective={name}_width={width}",
                        lambda progress, law=law, o=objective, w=width: _bound_cell(config, keys, law, o, w, progress, mesh),
                        needs=("progress",), coords={"experiment": "bounds", "law": law, "objective": name, "width": width}))
    if "gradients" in config.experiments:
        for stage in config.gradient_stages:
            out.append(kit.Cell(f"gradients_stage={stage}", lambda progress, s=stage: _gradient_cell(config, keys, s, progress, mesh),
                                needs=("progress",), coords={"experiment": "gradients", "stage": stage}))
    if "js" in config.experiments:
        for objective in (gan_objectives.Minimax(), gan_objectives.WGAN()):
            for theta in config.js_thetas:
                name = objective_name(objective)
                out.append(kit.Cell(f"js_objective={name}_theta={theta:g}",
                                    lambda progress, o=objective, t=theta: _js_cell(config, keys, o, t, progress, mesh),
                                    needs=("progress",), coords={"experiment": "js", "objective": name, "theta": theta}))
    grids = sorted(set((config.mode_grids if "modes" in config.experiments else ())
                       + (config.disconnected_modes if "disconnected" in config.experiments else ())))
    for k in grids:
        out.append(kit.Cell(f"target_K={k}", lambda k=k: _target_rows(config, keys, k), coords={"experiment": "targets", "K": k}))
    if "modes" in config.experiments:
        for k in config.mode_grids:
            for objective in config.mode_objectives:
                name = objective_name(objective)
                out.append(kit.Cell(
                    f"modes_K={k}_objective={name}",
                    lambda progress, k=k, o=objective: _GridRun(config, keys, experiment="modes", k=k, objective=o, model="unconditional",
                                                                n_steps=config.mode_steps, progress=progress, mesh=mesh)(),
                    needs=("progress",), coords={"experiment": "modes", "K": k, "objective": name}))
    if "disconnected" in config.experiments:
        for k in config.disconnected_modes:
            for model in ("unconditional", "conditional"):
                out.append(kit.Cell(
                    f"disconnected_K={k}_model={model}",
                    lambda progress, k=k, m=model: _GridRun(config, keys, experiment="disconnected", k=k,
                                                            objective=config.disconnected_objective, model=m,
                                                            n_steps=config.disconnected_steps, progress=progress, mesh=mesh)(),
                    needs=("progress",), coords={"experiment": "disconnected", "K": k, "model": model}))
    return out


def run(config: Config, store: kit.ResultStore | None = None, *, runtime: kit.Runtime | None = None) -> kit.Results:
    """Run every cell not yet done, saving each as it finishes (resumable).

    Returns:
        The tidy table (columns experiment, objective, metric, value, error, seed and the
        coordinates law, width, d_step, stage, theta, K, model, step; sample rows carry
        x, y) and, with a store, the run directory and figure paths.
    """
    runtime = runtime or kit.Runtime()
    table = kit.run_cells(store, cells(config, devices=runtime.devices), runtime=runtime)
    return kit.finish(store, table, figures="figures.gan_pathologies" if config.draw_figures else None, summarise=mode_summary)


# --------------------------------------------------------------------------------------
# Summaries (every number through the kit's statistics).


def _final_per_seed(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """The last evaluation of every seed (NaN kept: a diverged seed's final value is NaN)."""
    last = frame.groupby(by + ["seed"])["step"].transform("max")
    return frame[frame["step"] == last]


def _experiment_rows(table: pd.DataFrame, experiment: str) -> pd.DataFrame:
    """The rows of one experiment; an empty frame when it did not run (its columns, such as
    `law` or `theta`, may then be absent from the table altogether)."""
    if "experiment" not in table:
        return table.iloc[:0]
    return table[table["experiment"] == experiment]


def _summarise(frame: pd.DataFrame, by, row, *, sort: bool = True) -> pd.DataFrame:
    """One summary row per group of `frame` by the columns `by`, `row(key, group) -> dict`;
    an empty frame when the experiment did not run."""
    if frame.empty:
        return pd.DataFrame()
    return pd.DataFrame([row(key, group) for key, group in frame.groupby(by, sort=sort)])


def mode_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Experiment 4, by (K, objective): final modes covered, mass off modes, W1 and the
    late-training W1 oscillation, each an interval over seeds; diverged k/n."""
    floors = table[table["metric"] == "w1_floor"].set_index("K")["value"] if "metric" in table else pd.Series(dtype=float)

    def row(key, group):
        k, name = key
        out = {"K": int(k), "objective": name}
        for metric in ("modes_covered", "mass_off_modes", "w1", "w1_late_std"):
            final = _final_per_seed(group[group["metric"] == metric], ["K", "objective"])
            interval = kit.over_replicates(final.sort_values("seed")["value"].to_numpy())
            out[metric] = str(interval)
            out[f"{metric}_value"], out[f"{metric}_error"] = interval.value, interval.error
        diverged = group[group["metric"] == "diverged_at_step"]["value"]
        out["diverged"] = f"{int((diverged >= 0).sum())}/{len(diverged)}"
        out["w1_floor"] = float(floors.get(k, math.nan))
        return out

    return _summarise(_experiment_rows(table, "modes"), ["K", "objective"], row, sort=False)


def gradient_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Experiment 2, by (stage, objective): log10 of the gradient norm's decay from the first
    to the last discriminator step, an interval over seeds."""
    def row(key, group):
        stage, name = key
        first, last = group["d_step"].min(), group["d_step"].max()
        a = group[group["d_step"] == first].sort_values("seed")["value"].to_numpy()
        b = group[group["d_step"] == last].sort_values("seed")["value"].to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            decay = kit.paired_difference(np.log10(b), np.log10(a))
        return {"stage": int(stage), "objective": name, "d_steps": f"{int(first)}..{int(last)}",
                "log10_norm_change": str(decay), "log10_change_value": decay.value, "log10_change_error": decay.error,
                "final_norm": str(kit.over_replicates(b))}

    grads = table[(table["metric"] == "generator_grad_norm")] if "metric" in table else table.iloc[:0]
    return _summarise(grads, ["stage", "objective"], row)


def disconnected_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Experiment 5, by K: final mass off the modes for each model, the paired difference
    unconditional minus conditional on the same seeds, and the isoperimetric bound."""
    def row(k, group):
        final = _final_per_seed(group[group["metric"].isin(["mass_off_modes", "mass_off_modes_bound"])],
                                ["K", "model", "metric"])

        def per_seed(model, metric):
            return final[(final["model"] == model) & (final["metric"] == metric)].set_index("seed")["value"]
        unconditional, conditional = per_seed("unconditional", "mass_off_modes"), per_seed("conditional", "mass_off_modes")
        seeds = sorted(set(unconditional.index) | set(conditional.index))
        difference = kit.paired_difference(unconditional.reindex(seeds).to_numpy(), conditional.reindex(seeds).to_numpy())
        bound = kit.over_replicates(per_seed("unconditional", "mass_off_modes_bound").reindex(seeds).to_numpy())
        return {"K": int(k),
                "unconditional": str(kit.over_replicates(unconditional.reindex(seeds).to_numpy())),
                "conditional": str(kit.over_replicates(conditional.reindex(seeds).to_numpy())),
                "unconditional_minus_conditional": str(difference),
                "difference_value": difference.value, "difference_error": difference.error,
                "isoperimetric_bound": str(bound)}

    return _summarise(_experiment_rows(table, "disconnected"), "K", row)


def js_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Experiment 3, by (objective, theta): estimate and its theta-derivative, intervals over seeds, beside the exact values."""
    def row(key, group):
        name, theta = key

        def values(metric):
            return group[group["metric"] == metric].sort_values("seed")["value"].to_numpy()
        return {"objective": name, "theta": float(theta), "estimate": str(kit.over_replicates(values("divergence_estimate"))),
                "exact": float(np.nanmean(values("divergence_exact"))),
                "d_estimate_d_theta": str(kit.over_replicates(values("estimate_grad_theta"))),
                "d_exact_d_theta": float(np.nanmean(values("exact_grad_theta")))}

    return _summarise(_experiment_rows(table, "js"), ["objective", "theta"], row)


def bound_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Experiment 1, by (law, objective, width): the exact divergence and the final gap, an interval over seeds."""
    def row(key, group):
        law, name, width = key
        gap = group[group["metric"] == "divergence_gap"]
        last = gap[gap["d_step"] == gap["d_step"].max()].sort_values("seed")["value"].to_numpy()
        exact = group[group["metric"] == "divergence_exact"]["value"]
        return {"law": law, "objective": name, "width": int(width), "exact": float(exact.iloc[0]),
                "final_gap": str(kit.over_replicates(last))}

    return _summarise(_experiment_rows(table, "bounds"), ["law", "objective", "width"], row, sort=False)


def main(argv: list[str] | None = None) -> None:
    table = kit.main(run, Config, PRESETS, argv).table
    kit.print_tables([(title, frame[[c for c in frame.columns if not c.endswith(("_value", "_error"))]]) for title, frame in (
        ("1. Bound gap Div - B(v) at the last discriminator step (mean ± s.e. [95% t] over seeds)", bound_summary(table)),
        ("2. Generator gradient norm: log10(last / first) over discriminator steps, paired over seeds", gradient_summary(table)),
        ("3. Parallel lines: estimate and d/dtheta against exact", js_summary(table)),
        ("4. Gaussian grids, final evaluation (diverged seeds counted)", mode_summary(table)),
        ("5. Mass off the modes: unconditional vs conditional GAN, paired over seeds", disconnected_summary(table)),
    )])


if __name__ == "__main__":
    main()
