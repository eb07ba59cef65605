"""The ELBO gap of trained VAEs, split and read against exact evidence: approximation,
amortisation, IWAE, posterior collapse, and VQ-VAE codebook collapse.

For a trained VAE p_theta(x, z) = N(z; 0, I) N(x; f(z), sigma^2 I) with a 1-D or 2-D
latent, log p_theta(x) is exact (posterior-centred quadrature, `theory.latent_evidence`),
so the gap of the amortised bound splits exactly (Cremer, Li & Duvenaud 2018,
"Inference suboptimality in variational autoencoders", eq. (3)-(5)):

    log p(x) - L[q_phi] = (log p(x) - L[q*]) + (L[q*] - L[q_phi])
                        =  approximation gap  +  amortisation gap,

with q*(z | x) the best Gaussian of the encoder's family for this one x. Every one of
these is a paired difference on the same held-out points; per seed the value is the mean
over points with its standard error over points, and the headline (`summary`) is an
interval over seeds (`kit.over_replicates` of the per-seed means). The IWAE bounds L_K
(Burda et al. 2016) of q_phi for K up to 1000 (paper: 5000) approach log p. Every ELBO row
is checked against the identity log p - L[q] = KL(q || p(z | x)): the ELBO by quadrature
against an independent reparametrised Monte Carlo ELBO (`identity_residual_*`, which must
lie within its Monte Carlo standard error plus the quadrature errors).

The model's own distance to the data law is exact too: KL(p_data || p_theta) =
E_data[log p_data - log p_theta] over held-out draws (p_data is a Gaussian grid), and
the exact W1 (POT) of model samples against data, read against the sampling floor.

Posterior collapse on the linear VAE (probabilistic PCA; Tipping & Bishop 1999; Lucas et
al. 2019, "Don't blame the ELBO!"): with data N(0, U diag(lambda) U^T) and fixed noise
sigma^2, the ELBO optimum has W = U (Lambda - sigma^2 I)_+^{1/2} and the exact posterior
as encoder, so per latent direction (see `closed_form_kl_per_dim`)

    E_x KL(q(z_j | x) || N(0, 1)) = 1/2 log(lambda_j / sigma^2)  if lambda_j > sigma^2, else 0.

The sweep over sigma^2 compares the trained linear VAE's per-dimension KL with it, then
repeats it with an MLP decoder (no closed form). VQ-VAEs (van den Oord et al. 2017) on
the VAE's target give exact log-likelihoods (a C-mixture), codebook perplexity and dead
codes against C: codebook collapse beside posterior collapse.

Keys come from (purpose, seed, point, K) only: every model of a seed trains on the same
data and is scored on the same held-out points, whatever else is in the sweep.

Run `python -m studies.elbo_gap --help` for every option.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

import theory
from models.sharding import mesh_for
from models.vae import ELBOObjective, FixedNoise, LearnedNoise, VAE, VAESpec, VAETraining, ppca_linear_vae, train_vae_replicas
from models.vqvae import VQVAESpec, codebook_usage, train_vqvae_replicas
from studies import kit
from studies.kit import config_field
from theory.distributions import Gaussian, to_float64
from theory.integrate import MonteCarlo
from theory.latent_evidence import (
    MAX_LATENT_DIM,
    AbstractGaussianFamily,
    FactorisedGaussian,
    FullCovarianceGaussian,
    elbo_of,
    iwae_bound,
    log_evidence_values,
    optimal_gaussian_posterior,
)
from theory.validation import check_positive_number

FAMILIES: dict[str, AbstractGaussianFamily] = {"factorised": FactorisedGaussian(), "full": FullCovarianceGaussian()}
"""Command-line names of the posterior families."""


def _family_name(family: AbstractGaussianFamily) -> str:
    return next(name for name, f in FAMILIES.items() if type(f) is type(family))


def _parse_families(text: str) -> tuple[AbstractGaussianFamily, ...]:
    parts = [p.strip() for p in text.split(",")]
    unknown = [p for p in parts if p not in FAMILIES]
    if unknown or not parts:
        raise ValueError(f"expected comma-separated families from {list(FAMILIES)}, got {text!r}")
    return tuple(FAMILIES[p] for p in parts)


@dataclasses.dataclass(frozen=True)
class Config:
    """VAE gap sweeps (encoder width, decoder width, posterior family, beta), the pPCA
    posterior-collapse sweep over sigma^2, and VQ-VAE over codebook sizes C."""

    n_modes: int = config_field(4, "K: the data law is the Gaussian grid with K modes (2, 4 or 9)", low=2, high=9)
    latent_dim: int = config_field(1, "latent dimension of the VAE sweeps (exact evidence needs <= 2)", low=1, high=64)
    width: int = config_field(32, "hidden width of the network not being swept (encoder and decoder)", low=1, high=1024)
    depth: int = config_field(2, "hidden layers of encoder and decoder MLPs (tanh)", low=1, high=8)
    encoder_widths: tuple[int, ...] = config_field((4, 16, 64), "encoder widths swept (decoder at --width)", low=1, high=1024)
    decoder_widths: tuple[int, ...] = config_field((8, 32), "decoder widths swept (encoder at --width)", low=1, high=1024)
    families: tuple[AbstractGaussianFamily, ...] = config_field(
        (FactorisedGaussian(), FullCovarianceGaussian()), "posterior families swept (factorised, full), at --family-latent-dim",
        parse=_parse_families,
    )
    family_latent_dim: int = config_field(2, "latent dimension of the family sweep (the families differ only for k >= 2)", low=1, high=64)
    betas: tuple[float, ...] = config_field((0.5, 1.0, 2.0), "beta of the beta-VAE objective swept (gaps always of the beta = 1 ELBO)", low=0.0, open_low=True, high=1e3)
    n_train: int = config_field(5000, "training points per seed (one draw per seed, shared by every model)", low=2, high=10**6)
    n_steps: int = config_field(3000, "Adam steps", low=1, high=10**7)
    batch_size: int = config_field(128, "minibatch size", low=1, high=65536)
    learning_rate: float = config_field(3e-3, "Adam learning rate", low=0.0, open_low=True, high=10.0)
    n_seeds: int = config_field(3, "independent replicates per model, trained as one vmapped program", low=2, high=256)
    seed: int = config_field(0, "root PRNG seed")
    n_gap_points: int = config_field(64, "held-out points per seed for the gaps (each needs an L-BFGS q*)", low=2, high=10**5)
    n_kl_points: int = config_field(512, "held-out points per seed for log p and KL(p_data || p_theta), 1-D latent", low=2, high=10**6)
    n_kl_points_2d: int = config_field(
        64, "the same for a 2-D latent (each point's exact evidence costs ~2e5 decoder evaluations)", low=2, high=10**6)
    identity_samples: int = config_field(1000, "reparametrised draws per point of the Monte Carlo ELBO checking the identity", low=2, high=10**6)
    iwae_ks: tuple[int, ...] = config_field((1, 10, 100, 1000), "K of the IWAE bounds", low=1, high=100_000)
    n_iwae_points: int = config_field(8, "held-out points per seed for the IWAE bounds", low=1, high=10**4)
    iwae_repeats: int = config_field(64, "independent evaluations of each IWAE bound (its standard error)", low=2, high=10**5)
    w1_points: int = config_field(512, "model and data points per exact W1 (POT cost matrix m x m)", low=2, high=20_000)
    collapse_eigenvalues: tuple[float, ...] = config_field(
        (4.0, 1.0, 0.25), "eigenvalues lambda_j of the pPCA data covariance (data dim = latent dim = their number)",
        low=0.0, open_low=True, high=1e6)
    collapse_noise_variances: tuple[float, ...] = config_field(
        (0.1, 0.5, 2.0, 6.0), "sigma^2 (fixed observation noise) swept for posterior collapse", low=0.0, open_low=True, high=1e6)
    collapse_nonlinear: bool = config_field(True, "repeat the collapse sweep with an MLP decoder (no closed form)")
    codebook_sizes: tuple[int, ...] = config_field((2, 4, 8, 16), "C: VQ-VAE codebook sizes swept", low=1, high=4096)
    commitment: float = config_field(0.25, "VQ-VAE commitment weight beta", low=0.0, high=1e3)
    n_sample_rows: int = config_field(256, "generated and target points saved (seed 0) for the scatter plots", low=1, high=10**5)
    draw_figures: bool = config_field(True, "draw the figures at the end (python -m figures.elbo_gap redraws them)")

    def __post_init__(self):
        kit.check_fields(self)
        if self.n_modes not in theory.GRID_MEANS:
            raise ValueError(f"n_modes must name a Gaussian grid {sorted(theory.GRID_MEANS)}, got K={self.n_modes}")
        for name in ("latent_dim", "family_latent_dim"):
            if getattr(self, name) > MAX_LATENT_DIM:
                raise ValueError(
                    f"{name} must be <= {MAX_LATENT_DIM}: exact evidence by quadrature is asked for every VAE, "
                    f"got latent dimension {getattr(self, name)}"
                )
        for name in ("n_kl_points", "n_kl_points_2d"):
            if self.n_gap_points > getattr(self, name) or self.n_iwae_points > getattr(self, name):
                raise ValueError(f"n_gap_points and n_iwae_points must be <= {name}={getattr(self, name)}, "
                                 f"got {self.n_gap_points} and {self.n_iwae_points}")
        if self.batch_size > self.n_train:
            raise ValueError(f"batch_size must be <= n_train={self.n_train}, got {self.batch_size}")
        self.training()  # the optimiser's own checks

    def training(self) -> VAETraining:
        return kit.component_from(VAETraining, self)

    def vae_models(self) -> list["ModelCoords"]:
        """Every distinct VAE of the four sweeps, each once (a model in two sweeps is one cell)."""
        base = ModelCoords(self.latent_dim, self.width, self.width, "factorised", 1.0)
        wanted = [dataclasses.replace(base, encoder_width=w) for w in self.encoder_widths]
        wanted += [dataclasses.replace(base, decoder_width=w) for w in self.decoder_widths]
        wanted += [dataclasses.replace(base, latent_dim=self.family_latent_dim, family=_family_name(f)) for f in self.families]
        wanted += [dataclasses.replace(base, beta=float(b)) for b in self.betas]
        return list(dict.fromkeys(wanted))


PRESETS = {
    # <= 10 minutes on 2 CPU cores (measured: see the README).
    "quick": Config(),
    # Closer to Cremer et al.: more seeds, wider sweeps, K up to 5000, more points.
    "paper": Config(
        encoder_widths=(2, 4, 8, 16, 32, 64, 128),
        decoder_widths=(4, 8, 16, 32, 64, 128),
        betas=(0.25, 0.5, 1.0, 2.0, 4.0),
        n_steps=20_000,
        n_seeds=5,
        n_gap_points=256,
        n_kl_points=4096,
        n_kl_points_2d=512,
        identity_samples=10_000,
        iwae_ks=(1, 5, 10, 50, 100, 500, 1000, 5000),
        n_iwae_points=32,
        iwae_repeats=100,
        w1_points=2048,
        collapse_noise_variances=(0.05, 0.1, 0.2, 0.5, 0.8, 1.5, 2.0, 3.0, 4.5, 6.0),
        codebook_sizes=(1, 2, 4, 8, 16, 32, 64),
    ),
    # Seconds: tests and a first look at the pipeline.
    "smoke": Config(
        encoder_widths=(4,),
        decoder_widths=(8,),
        families=(FullCovarianceGaussian(),),
        family_latent_dim=2,
        betas=(2.0,),
        width=8,
        n_train=256,
        n_steps=30,
        batch_size=32,
        n_seeds=2,
        n_gap_points=4,
        n_kl_points=16,
        n_kl_points_2d=8,
        identity_samples=200,
        iwae_ks=(1, 10),
        n_iwae_points=2,
        iwae_repeats=8,
        w1_points=32,
        collapse_eigenvalues=(2.0, 0.25),
        collapse_noise_variances=(0.5,),
        collapse_nonlinear=False,
        codebook_sizes=(2,),
        n_sample_rows=16,
        draw_figures=False,
    ),
}


@dataclasses.dataclass(frozen=True)
class ModelCoords:
    """The coordinates of one VAE of the sweeps."""

    latent_dim: int
    encoder_width: int
    decoder_width: int
    family: str
    beta: float

    def cell_id(self) -> str:
        return (f"vae_k={self.latent_dim}_enc={self.encoder_width}_dec={self.decoder_width}"
                f"_q={self.family}_beta={self.beta:g}")

    def as_dict(self) -> dict[str, Any]:
        return {"model": "vae", **dataclasses.asdict(self)}


# --------------------------------------------------------------------------------------
# Closed forms
# --------------------------------------------------------------------------------------


def closed_form_kl_per_dim(eigenvalues, noise_variance: float) -> np.ndarray:
    """E_x KL(q(z_j | x) || N(0, 1)) at the linear VAE's optimum, per latent direction.

    At the pPCA solution W = U (Lambda - sigma^2 I)_+^{1/2} (Tipping & Bishop 1999,
    eq. (7)) with the exact posterior as encoder, M = W^T W + sigma^2 I = diag(max(lambda_j,
    sigma^2)), so q(z_j | x) = N(m_j, s_j^2) with s_j^2 = sigma^2 / max(lambda_j, sigma^2)
    and m_j = sqrt((lambda_j - sigma^2)_+) u_j^T (x - b) / max(lambda_j, sigma^2). Over
    data of covariance diag(lambda) in the u-basis, E m_j^2 = (lambda_j - sigma^2)_+ /
    lambda_j, so s_j^2 + E m_j^2 = 1 and
        E KL_j = 1/2 (s_j^2 + E m_j^2 - 1 - log s_j^2) = 1/2 log(lambda_j / sigma^2)_+ .
    A direction with lambda_j <= sigma^2 collapses (q = prior, KL 0; Lucas et al. 2019, Sec. 4).

    Args:
        eigenvalues: lambda_j of the data covariance (the sample covariance for the exact
            optimum on a given sample), shape (k,).
        noise_variance: sigma^2 > 0.

    Returns:
        Float64 array (k,), nats, in the order of `eigenvalues`.
    """
    eigenvalues = np.asarray(eigenvalues, np.float64)
    check_positive_number("noise_variance", noise_variance)
    if np.any(~np.isfinite(eigenvalues)) or np.any(eigenvalues <= 0):
        raise ValueError(f"eigenvalues must be finite and > 0, got {eigenvalues}")
    return 0.5 * np.log(np.maximum(eigenvalues / noise_variance, 1.0))


def kl_to_prior_per_dim(model: VAE, data) -> np.ndarray:
    """KL(q(z_j | x) || N(0, 1)) of the marginal q(z_j | x) = N(m_j, Sigma_jj), per point
    and dimension, shape (n, k), float64."""
    with jax.enable_x64(True):
        model64 = to_float64(model)
        mean, chol = jax.vmap(model64.encoder)(jnp.asarray(data, jnp.float64))
        var = jnp.sum(chol**2, axis=2)
        return np.asarray(0.5 * (var + mean**2 - 1.0 - jnp.log(var)))


def collapse_data_law(config: Config, keys: kit.Keys) -> Gaussian:
    """N(0, U diag(lambda) U^T) with U a Haar-random rotation fixed by the root seed."""
    d = len(config.collapse_eigenvalues)
    gaussian = np.asarray(jax.random.normal(keys("collapse-rotation"), (d, d)), np.float64)
    q, r = np.linalg.qr(gaussian)
    rotation = q * np.sign(np.diag(r))
    cov = rotation @ np.diag(np.asarray(config.collapse_eigenvalues, np.float64)) @ rotation.T
    return Gaussian(jnp.zeros(d), jnp.asarray(0.5 * (cov + cov.T)))


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def _replica(tree, index: int):
    return jax.tree.map(lambda leaf: leaf[index] if eqx.is_array(leaf) else leaf, tree)


def _mean_se(values) -> tuple[float, float]:
    """Mean over points and its standard error over points."""
    values = np.asarray(values, np.float64)
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(values.size))


def _first_bad_step(losses, model) -> int:
    """-1 if the losses and parameters are finite, else the first non-finite step."""
    losses = np.asarray(losses)
    bad = np.flatnonzero(~np.isfinite(losses))
    if bad.size:
        return int(bad[0])
    finite = all(bool(np.all(np.isfinite(np.asarray(leaf)))) for leaf in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array)))
    return -1 if finite else len(losses) - 1


def _decoder_only(vae: VAE) -> VAE:
    """The VAE's generative half with a canonical spec, so that the exact-evidence programs
    compile once per decoder architecture, not once per encoder, family or beta."""
    spec = VAESpec(data_dim=vae.spec.data_dim, latent_dim=vae.spec.latent_dim, width=vae.spec.width,
                   depth=vae.spec.depth, noise=vae.spec.noise)
    return VAE(None, vae.decoder_net, vae.log_noise_std, spec)


GAP_METRICS = (
    "log_marginal", "elbo_amortised", "elbo_optimal", "approximation_gap", "amortisation_gap",
    "kl_to_posterior_amortised", "kl_to_posterior_optimal", "identity_residual_amortised",
    "identity_residual_optimal", "qstar_from_encoder", "kl_data_model", "log_marginal_all",
    "reconstruction_error", "w1",
)
"""Per-seed metrics of a VAE cell (NaN for a diverged seed)."""


# --------------------------------------------------------------------------------------
# Cells
# --------------------------------------------------------------------------------------


def _target(config: Config) -> theory.MixtureOfGaussians:
    return theory.gaussian_grid(config.n_modes)


def _data(config: Config, keys: kit.Keys, seed: int) -> tuple[jax.Array, jax.Array]:
    """The seed's training points and held-out points (the same for every model)."""
    target = _target(config)
    train = target.sample(keys("train-data", K=config.n_modes, seed=seed), config.n_train).astype(jnp.float32)
    held_out = target.sample(keys("held-out", K=config.n_modes, seed=seed), max(config.n_kl_points, config.n_kl_points_2d))
    return train, np.asarray(held_out, np.float64)


def _floor_rows(config: Config, keys: kit.Keys) -> list[dict]:
    """W1 between two independent m-samples of the data law, one pair per seed."""
    target = _target(config)
    values = [theory.wasserstein(target.sample(keys("floor-a", seed=s), config.w1_points),
                                 target.sample(keys("floor-b", seed=s), config.w1_points)).value
              for s in range(config.n_seeds)]
    return [{"metric": "w1_floor", "seed": s, "value": float(v), "error": 0.0} for s, v in enumerate(values)]


def _log_data(config: Config, x) -> np.ndarray:
    with jax.enable_x64(True):
        return np.asarray(to_float64(_target(config)).log_prob(jnp.asarray(x, jnp.float64)))


class _VAECell:
    """Train every seed of one VAE and measure its gaps, bounds and fit."""

    def __init__(self, config: Config, keys: kit.Keys, coords: ModelCoords, progress: kit.Progress, mesh=None):
        self.config, self.keys, self.coords, self.progress, self.mesh = config, keys, coords, progress, mesh
        self.family = FAMILIES[coords.family]
        self.spec = VAESpec(data_dim=2, latent_dim=coords.latent_dim, width=coords.decoder_width, depth=config.depth,
                            posterior_family=self.family, noise=LearnedNoise(0.5), encoder_width=coords.encoder_width)
        self.rows: list[dict] = []

    def _row(self, seed, metric, value, error=math.nan, **extra):
        self.rows.append({**self.coords.as_dict(), "seed": seed, "step": self.config.n_steps, "metric": metric,
                          "value": float(value), "error": float(error), **extra})

    def __call__(self) -> list[dict]:
        config, seeds = self.config, list(range(self.config.n_seeds))
        data = [_data(config, self.keys, s) for s in seeds]
        with self.progress.phase("train"):
            models = eqx.filter_vmap(self.spec.build)(self.keys.stack("init", [{"seed": s} for s in seeds]))
            trained, losses = train_vae_replicas(
                models, jnp.stack([d[0] for d in data]), self.keys.stack("train", [{"seed": s} for s in seeds]),
                n_steps=config.n_steps, objective=ELBOObjective(beta=self.coords.beta), training=config.training(),
                mesh=self.mesh,
            )
            losses = np.asarray(jax.block_until_ready(losses), np.float64)
        for r, seed in enumerate(seeds):
            model = _replica(trained, r)
            bad = _first_bad_step(losses[r], model)
            self._row(seed, "diverged_at_step", bad)
            self._row(seed, "final_loss", kit.late_mean(losses[r]) if bad < 0 else math.nan)
            if bad >= 0:
                for metric in GAP_METRICS:
                    self._row(seed, metric, math.nan)
                for k in config.iwae_ks:
                    self._row(seed, "iwae", math.nan, k=k)
                continue
            with self.progress.phase("evaluate"):
                self._evaluate(model, seed, data[r][1])
            self.progress.update(seed=seed, of=len(seeds))
        return self.rows

    def _evaluate(self, model: VAE, seed: int, held_out: np.ndarray) -> None:
        config = self.config
        latent = _decoder_only(model).latent_model()
        held_out = held_out[: config.n_kl_points if self.coords.latent_dim == 1 else config.n_kl_points_2d]
        log_p, log_p_err = (np.asarray(a, np.float64) for a in log_evidence_values(latent, held_out))
        gap_points = held_out[: config.n_gap_points]
        elbo_phi, elbo_star, err_phi, err_star, mc_phi, mc_star, se_phi, se_star = ([] for _ in range(8))
        from_encoder = []
        for i, x in enumerate(gap_points):
            q_phi = model.variational_posterior(jnp.asarray(x, jnp.float32))
            q_opt = optimal_gaussian_posterior(latent, x, family=self.family)
            b_phi, b_opt = elbo_of(q_phi, latent, x), elbo_of(q_opt, latent, x)
            # q* is the best Gaussian of the family found for this x: the L-BFGS optimum
            # from the Laplace start, or q_phi itself where that start led to a worse local
            # optimum (a multimodal posterior), so that L[q*] >= L[q_phi] as defined.
            use_encoder = b_phi.value > b_opt.value
            q_star, b_star = (q_phi, b_phi) if use_encoder else (q_opt, b_opt)
            from_encoder.append(float(use_encoder))
            mc = [elbo_of(q, latent, x, key=self.keys("identity", seed=seed, point=i, q=name),
                          method=MonteCarlo(config.identity_samples)) for q, name in ((q_phi, "amortised"), (q_star, "optimal"))]
            elbo_phi.append(b_phi.value), err_phi.append(b_phi.error)
            elbo_star.append(b_star.value), err_star.append(b_star.error)
            mc_phi.append(mc[0].value), se_phi.append(mc[0].error)
            mc_star.append(mc[1].value), se_star.append(mc[1].error)
        n = config.n_gap_points
        lp, lp_err = log_p[:n], log_p_err[:n]
        elbo_phi, elbo_star, mc_phi, mc_star = map(np.asarray, (elbo_phi, elbo_star, mc_phi, mc_star))
        err_phi, err_star, se_phi, se_star = map(np.asarray, (err_phi, err_star, se_phi, se_star))
        quad_p = float(lp_err.mean())

        def per_point(metric, values, numerical):
            value, error = _mean_se(values)
            self._row(seed, metric, value, error, numerical_error=numerical, n_points=len(values))

        per_point("log_marginal", lp, quad_p)
        per_point("elbo_amortised", elbo_phi, float(err_phi.mean()))
        per_point("elbo_optimal", elbo_star, float(err_star.mean()))
        per_point("approximation_gap", lp - elbo_star, quad_p + float(err_star.mean()))
        per_point("amortisation_gap", elbo_star - elbo_phi, float(err_star.mean() + err_phi.mean()))
        # The identity's right side, KL(q || p(z | x)) = log p - ELBO with the ELBO by
        # reparametrised Monte Carlo, and the residual (log p - L_quad) - KL_MC = L_MC - L_quad,
        # which is 0 up to the Monte Carlo standard error (independent over points) and
        # the quadrature errors (numerical_error).
        for name, mc, se, quad, err in (("amortised", mc_phi, se_phi, elbo_phi, err_phi),
                                        ("optimal", mc_star, se_star, elbo_star, err_star)):
            mc_error = float(np.sqrt(np.sum(se**2)) / n)
            self._row(seed, f"kl_to_posterior_{name}", float(np.mean(lp - mc)), mc_error,
                      numerical_error=quad_p, n_points=n)
            self._row(seed, f"identity_residual_{name}", float(np.mean(mc - quad)), mc_error,
                      numerical_error=float(err.mean()), n_points=n)
        self._row(seed, "qstar_from_encoder", float(np.mean(from_encoder)), n_points=n)
        per_point("log_marginal_all", log_p, float(log_p_err.mean()))
        per_point("kl_data_model", _log_data(self.config, held_out) - log_p, float(log_p_err.mean()))
        with jax.enable_x64(True):
            model64 = to_float64(model)
            recon = jax.vmap(lambda x: jnp.sum((x - model64.decoder_mean(model64.encoder(x)[0])) ** 2))(jnp.asarray(held_out))
        per_point("reconstruction_error", np.asarray(recon), 0.0)
        kl_dims = kl_to_prior_per_dim(model, held_out)
        for j in range(kl_dims.shape[1]):
            value, error = _mean_se(kl_dims[:, j])
            self._row(seed, "kl_prior_per_dim", value, error, dim=j)
        generated = np.asarray(model.sample(self.keys("w1-model", seed=seed), config.w1_points), np.float64)
        target = np.asarray(_target(config).sample(self.keys("w1-data", seed=seed), config.w1_points), np.float64)
        self._row(seed, "w1", theory.wasserstein(generated, target).value, 0.0)
        self._iwae(model, latent, seed, held_out, log_p, log_p_err)
        if seed == 0:
            self._pictures(model, latent, generated, target, held_out)

    def _iwae(self, model, latent, seed, held_out, log_p, log_p_err) -> None:
        config = self.config
        points = held_out[: config.n_iwae_points]
        n = len(points)
        self._row(seed, "iwae_log_marginal", float(log_p[:n].mean()), float(log_p_err[:n].mean()), n_points=n)
        for k in config.iwae_ks:
            values, ses = [], []
            for i, x in enumerate(points):
                q_phi = model.variational_posterior(jnp.asarray(x, jnp.float32))
                bound = iwae_bound(q_phi, latent, x, k=k, key=self.keys("iwae", seed=seed, point=i, K=k),
                                   n_repeats=config.iwae_repeats)
                values.append(bound.value), ses.append(bound.error)
            # Conditional on these n points: the error is Monte Carlo only (independent
            # over points); log p on the same points is the iwae_log_marginal row.
            error = float(np.sqrt(np.sum(np.square(ses))) / n)
            self._row(seed, "iwae", float(np.mean(values)), error, k=k, n_points=n)
            self._row(seed, "iwae_gap", float(np.mean(log_p[:n] - np.asarray(values))), error,
                      k=k, n_points=n, numerical_error=float(log_p_err[:n].mean()))

    def _pictures(self, model, latent, generated, target, held_out) -> None:
        m = min(self.config.n_sample_rows, len(generated))
        for source, points in (("generated", generated[:m]), ("target", target[:m])):
            for x, y in points:
                self.rows.append({**self.coords.as_dict(), "seed": 0, "metric": "sample", "source": source,
                                  "x": float(x), "y": float(y)})
        if self.coords.latent_dim != 1:
            return
        # Exact posterior, q* and q_phi on a z grid for three held-out points.
        for point in range(min(3, len(held_out))):
            x = held_out[point]
            q_phi = model.variational_posterior(jnp.asarray(x, jnp.float32))
            q_opt = optimal_gaussian_posterior(latent, x, family=self.family)
            with jax.enable_x64(True):
                latent64, q_phi64, q_opt64 = to_float64((latent, q_phi, q_opt))
                z = jnp.linspace(-4.0, 4.0, 161)[:, None]
                log_joint = jax.vmap(lambda zi: latent64.log_joint(jnp.asarray(x), zi))(z)
                log_p = jax.scipy.special.logsumexp(log_joint) + jnp.log(z[1, 0] - z[0, 0])
                curves = {"exact": jnp.exp(log_joint - log_p), "optimal": jnp.exp(q_opt64.log_prob(z)),
                          "amortised": jnp.exp(q_phi64.log_prob(z))}
                for source, density in curves.items():
                    for zi, di in zip(np.asarray(z[:, 0]), np.asarray(density)):
                        self.rows.append({**self.coords.as_dict(), "seed": 0, "metric": "posterior_density",
                                          "source": source, "point": point, "x": float(x[0]), "y": float(x[1]),
                                          "z": float(zi), "value": float(di)})


def _collapse_cell(config: Config, keys: kit.Keys, decoder: str, noise_variance: float, progress: kit.Progress,
                   mesh=None) -> list[dict]:
    """Per-dimension KL to the prior of trained VAEs at fixed sigma^2, with the closed form."""
    law = collapse_data_law(config, keys)
    d = len(config.collapse_eigenvalues)
    seeds = list(range(config.n_seeds))
    spec = VAESpec(data_dim=d, latent_dim=d, width=config.width, depth=0 if decoder == "linear" else config.depth,
                   noise=FixedNoise(math.sqrt(noise_variance)))
    train = jnp.stack([law.sample(keys("collapse-train", seed=s), config.n_train) for s in seeds]).astype(jnp.float32)
    held_out = [np.asarray(law.sample(keys("collapse-held-out", seed=s), config.n_kl_points), np.float64) for s in seeds]
    with progress.phase("train"):
        models = eqx.filter_vmap(spec.build)(keys.stack("collapse-init", [{"seed": s} for s in seeds]))
        trained, losses = train_vae_replicas(models, train, keys.stack("collapse-train-steps", [{"seed": s} for s in seeds]),
                                             n_steps=config.n_steps, training=config.training(), mesh=mesh)
        losses = np.asarray(jax.block_until_ready(losses), np.float64)
    coords = {"model": "vae", "decoder": decoder, "noise_variance": noise_variance}
    rows = []
    prediction = np.sort(closed_form_kl_per_dim(config.collapse_eigenvalues, noise_variance))[::-1]
    for j, value in enumerate(prediction):
        rows.append({**coords, "metric": "kl_per_dim_closed_form", "dim": j, "value": float(value), "error": 0.0})
    for r, seed in enumerate(seeds):
        model = _replica(trained, r)
        bad = _first_bad_step(losses[r], model)
        rows.append({**coords, "seed": seed, "metric": "diverged_at_step", "value": float(bad)})
        kl = kl_to_prior_per_dim(model, held_out[r]) if bad < 0 else np.full((config.n_kl_points, d), math.nan)
        # Latent directions are identified only up to permutation: sort by KL, as the
        # closed form (sorted by eigenvalue) is.
        order = np.argsort(-kl.mean(axis=0))
        for j, column in enumerate(order):
            value, error = _mean_se(kl[:, column])
            rows.append({**coords, "seed": seed, "metric": "kl_per_dim", "dim": j, "value": value, "error": error})
        if decoder == "linear":
            # The closed-form optimum on this seed's own training sample, scored on the
            # same held-out points: the finite-sample version of the prediction.
            optimum = ppca_linear_vae(spec, np.asarray(train[r], np.float64))
            kl_opt = kl_to_prior_per_dim(optimum, held_out[r])
            for j, column in enumerate(np.argsort(-kl_opt.mean(axis=0))):
                value, error = _mean_se(kl_opt[:, column])
                rows.append({**coords, "seed": seed, "metric": "kl_per_dim_ppca", "dim": j, "value": value, "error": error})
        progress.update(seed=seed, of=len(seeds))
    return rows


def _vqvae_cell(config: Config, keys: kit.Keys, n_codes: int, progress: kit.Progress, mesh=None) -> list[dict]:
    """Exact log-likelihood, fit and codebook usage of VQ-VAEs with C codes, every seed."""
    seeds = list(range(config.n_seeds))
    spec = VQVAESpec(data_dim=2, code_dim=config.latent_dim, n_codes=n_codes, width=config.width, depth=config.depth,
                     commitment=config.commitment, noise=LearnedNoise(0.5))
    data = [(train, held_out[: config.n_kl_points]) for train, held_out in (_data(config, keys, s) for s in seeds)]
    with progress.phase("train"):
        models = eqx.filter_vmap(spec.build)(keys.stack("vq-init", [{"seed": s} for s in seeds]))
        trained, losses = train_vqvae_replicas(
            models, jnp.stack([d[0] for d in data]), keys.stack("vq-train", [{"seed": s} for s in seeds]),
            n_steps=config.n_steps, learning_rate=config.learning_rate, batch_size=config.batch_size, mesh=mesh,
        )
        losses = np.asarray(jax.block_until_ready(losses), np.float64)
    coords = {"model": "vqvae", "n_codes": n_codes, "latent_dim": config.latent_dim}
    rows = []

    def row(seed, metric, value, error=math.nan, **extra):
        rows.append({**coords, "seed": seed, "step": config.n_steps, "metric": metric, "value": float(value),
                     "error": float(error), **extra})

    for r, seed in enumerate(seeds):
        model = _replica(trained, r)
        held_out = data[r][1]
        bad = _first_bad_step(losses[r], model)
        row(seed, "diverged_at_step", bad)
        if bad >= 0:
            for metric in ("log_marginal_all", "kl_data_model", "perplexity", "dead_codes", "reconstruction_error", "w1"):
                row(seed, metric, math.nan)
            continue
        with jax.enable_x64(True):
            model64 = to_float64(model)
            x64 = jnp.asarray(held_out)
            log_p = np.asarray(model64.log_prob(x64))
            recon = np.asarray(jax.vmap(lambda x: jnp.sum(
                (x - model64.decoder_net(model64.codebook[model64.assign(model64.encode(x))])) ** 2))(x64))
        # The mixture log-likelihood is exact: the error is the standard error over points.
        row(seed, "log_marginal_all", *_mean_se(log_p), numerical_error=0.0, n_points=len(log_p))
        row(seed, "kl_data_model", *_mean_se(_log_data(config, held_out) - log_p), numerical_error=0.0, n_points=len(log_p))
        row(seed, "reconstruction_error", *_mean_se(recon), n_points=len(recon))
        usage = codebook_usage(model, jnp.asarray(held_out, jnp.float32))
        row(seed, "perplexity", float(usage.perplexity))
        row(seed, "dead_codes", int(usage.dead_codes))
        generated = np.asarray(model.sample(keys("w1-model", seed=seed), config.w1_points), np.float64)
        target = np.asarray(_target(config).sample(keys("w1-data", seed=seed), config.w1_points), np.float64)
        row(seed, "w1", theory.wasserstein(generated, target).value, 0.0)
        progress.update(seed=seed, of=len(seeds))
    return rows


def cells(config: Config, *, devices: int = 1) -> list[kit.Cell]:
    """The W1 floor, every distinct VAE, the collapse sweep, the VQ-VAE sweep.

    `devices` (``--devices``): the seeds of every training are sharded over that many
    local devices (0: all; 1: the plain single-device program); never changes the numbers.
    """
    keys = kit.Keys(config.seed)
    mesh = mesh_for(devices)
    out = [kit.Cell(f"floor_K={config.n_modes}", lambda: _floor_rows(config, keys), coords={"model": "data"})]
    for coords in config.vae_models():
        out.append(kit.Cell(coords.cell_id(), lambda progress, c=coords: _VAECell(config, keys, c, progress, mesh)(),
                            needs=("progress",), coords=coords.as_dict()))
    decoders = ("linear", "mlp") if config.collapse_nonlinear else ("linear",)
    for decoder in decoders:
        for s2 in config.collapse_noise_variances:
            out.append(kit.Cell(
                f"collapse_decoder={decoder}_noise_var={s2:g}",
                lambda progress, decoder=decoder, s2=s2: _collapse_cell(config, keys, decoder, float(s2), progress, mesh),
                needs=("progress",), coords={"model": "vae", "decoder": decoder, "noise_variance": float(s2)},
            ))
    for c in config.codebook_sizes:
        out.append(kit.Cell(f"vqvae_C={c}", lambda progress, c=c: _vqvae_cell(config, keys, c, progress, mesh),
                            needs=("progress",), coords={"model": "vqvae", "n_codes": c}))
    return out


def run(config: Config, store: kit.ResultStore | None = None, *, runtime: kit.Runtime | None = None) -> kit.Results:
    """Train and evaluate every cell, saving each as it finishes (resumable).

    Returns:
        The tidy table: columns model, latent_dim, encoder_width, decoder_width, family,
        beta (VAE sweeps), decoder, noise_variance (collapse), n_codes (VQ-VAE), seed,
        step, metric, value, error (standard error over held-out points, or Monte Carlo
        for iwae and identity rows), numerical_error (quadrature), k (IWAE), dim
        (per-dimension KL); sample and posterior_density rows carry source, x, y, z, point.
    """
    runtime = runtime or kit.Runtime()
    table = kit.run_cells(store, cells(config, devices=runtime.devices), runtime=runtime)
    return kit.finish(store, table, figures="figures.elbo_gap" if config.draw_figures else None, summarise=summary)


# --------------------------------------------------------------------------------------
# Summaries (intervals over seeds)
# --------------------------------------------------------------------------------------

VAE_COORDS = ["latent_dim", "encoder_width", "decoder_width", "family", "beta"]
HEADLINE = ["log_marginal", "elbo_optimal", "elbo_amortised", "approximation_gap", "amortisation_gap",
            "kl_data_model", "w1"]


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per VAE: each headline metric as an interval over seeds of the per-seed means over
    held-out points (kit.over_replicates; diverged seeds counted)."""
    if "encoder_width" not in table.columns:
        return pd.DataFrame()
    vae = table[(table["model"] == "vae") & table["encoder_width"].notna() & table["metric"].isin(HEADLINE)]
    rows = []
    for keys, group in vae.groupby(VAE_COORDS, sort=False):
        row = dict(zip(VAE_COORDS, keys))
        for name in ("latent_dim", "encoder_width", "decoder_width"):
            row[name] = int(row[name])
        for metric in HEADLINE:
            values = group[group["metric"] == metric].sort_values("seed")["value"].to_numpy()
            row[metric] = str(kit.over_replicates(values)) if len(values) else ""
        rows.append(row)
    return pd.DataFrame(rows)


def collapse_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per (decoder, sigma^2, dim): trained per-dimension KL over seeds beside the closed form."""
    if "noise_variance" not in table.columns:
        return pd.DataFrame()
    sub = table[table["noise_variance"].notna()]
    rows = []
    for (decoder, s2, dim), group in sub[sub["metric"] == "kl_per_dim"].groupby(["decoder", "noise_variance", "dim"]):
        closed = sub[(sub["metric"] == "kl_per_dim_closed_form") & (sub["noise_variance"] == s2) & (sub["dim"] == dim)
                     & (sub["decoder"] == decoder)]["value"]
        rows.append({"decoder": decoder, "sigma2": s2, "dim": int(dim),
                     "trained_kl": str(kit.over_replicates(group.sort_values("seed")["value"].to_numpy())),
                     "closed_form": f"{closed.iloc[0]:.3f}" if decoder == "linear" and len(closed) else "none"})
    return pd.DataFrame(rows)


def vqvae_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per C: exact log-likelihood, KL to the data, usage, reconstruction, over seeds."""
    if "n_codes" not in table.columns:
        return pd.DataFrame()
    sub = table[(table["model"] == "vqvae") & table["n_codes"].notna()]
    rows = []
    for c, group in sub.groupby("n_codes"):
        row = {"C": int(c)}
        for metric in ("log_marginal_all", "kl_data_model", "perplexity", "dead_codes", "reconstruction_error", "w1"):
            row[metric] = str(kit.over_replicates(group[group["metric"] == metric].sort_values("seed")["value"].to_numpy()))
        rows.append(row)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    table = kit.main(run, Config, PRESETS, argv).table
    kit.print_tables([
        ("VAE gaps (nats), mean ± s.e. [95% t-interval] over seeds of the per-seed means over held-out points", summary(table)),
        ("Posterior collapse: per-dimension E_x KL(q(z_j|x) || N(0,1)) over seeds, closed form 1/2 log(lambda/sigma^2)_+",
         collapse_summary(table)),
        ("VQ-VAE (exact mixture log-likelihood), over seeds", vqvae_summary(table)),
    ], column_width=40)


if __name__ == "__main__":
    main()
