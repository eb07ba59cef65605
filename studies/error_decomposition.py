"""Error decomposition of a trained WGAN: estimation, optimisation (metric) and approximation.

Biau, Sangnier & Tanielian ("Some theoretical insights into Wasserstein GANs", JMLR 2021,
Thm. 4.1 and Sec. 4) bound the distance of a trained WGAN to its target by three terms,

    d_Lip1(mu*, mu_theta_hat_n) <= eps_estim + eps_optim + eps_approx,

and this study measures each on the Gaussian grids. For a target K, generator depth p,
critic depth q and training-set size n it trains, seeds vmapped:

- the WGAN on n points (real batches from mu_n): d(n, p, q);
- the same WGAN on fresh target draws at every step (n = infinity, `models.wgan_fresh`):
  d(inf, p, q);
- an oracle generator of depth p minimising the minibatch W1 itself, no critic, on fresh
  draws (`models.oracle`): d_oracle(p); and on the n points: d_oracle(n, p).

Every generator is scored by the exact W1 (POT) between m generated and m target points,
averaged over repeats. Per seed, with all trainings of one (K, seed) sharing their
training points (the first n of one stream), their initial generator, their latent draws
and the target draws they are scored on (common random numbers, so differences are tight):

    w1_total         = d(n, p, q)
    eps_estim        = d(n, p, q) - d(inf, p, q)     the price of n points instead of mu*
    eps_optim        = d(inf, p, q) - d_oracle(p)    the price of the critic D_q for d_Lip1
    eps_approx       = d_oracle(p)                   an upper bound of inf_theta W1(mu*, mu_theta)
    eps_estim_oracle = d_oracle(n, p) - d_oracle(p)  the oracle's own estimation error

so w1_total = eps_estim + eps_optim + eps_approx exactly (up to float64 rounding), each
term a paired difference over seeds with its t-interval (`kit.paired_difference`).

What the numbers hold. Any trained generator bounds the infimum from above, so
d_oracle(p) >= eps_approx; the evaluation at finite m adds the sampling bias (by joint
convexity E W1(mu_theta,m, mu*_m) >= W1(mu_theta, mu*), and a perfect generator scores the
floor, W1 between two m-samples of the target). We report eps_approx = d_oracle(p) so that
the three terms add up to the total, and beside it eps_approx_above_floor = d_oracle(p) -
floor (paired by seed; the floor uses the seed's own target evaluation draws): the fairer
reading of the approximation error. In the differences eps_estim and eps_optim the
sampling bias largely cancels (same target draws, same m). eps_optim is a difference of
trained networks, not the infimum the theorem names: it also holds the optimisation error
of the adversarial training (and can be negative if the oracle trains worse than the
WGAN); the metric discrepancy itself is measured directly: a fresh critic of depth q
trained on fresh draws against the frozen n = infinity generator, its IPM against the
exact W1 on the same points (IPM <= W1 for a 1-Lipschitz critic, Kantorovich-Rubinstein).

The estimation term against n is fitted on log-log axes (slope per seed, t-interval over
seeds; seeds with a non-positive term cannot be fitted and are counted), next to the
empirical rate of E W1(mu*, mu_n), measured per seed on the seed's own n training points
two ways: `w1_data`, the exact W1 to M = `rate_reference_points` fresh target points,
within E W1(mu*, mu_M) of W1(mu*, mu_n) (triangle inequality), so that its slope flattens
as n approaches M; and `w1_two_sample`, the exact W1 to n fresh points, between
E W1(mu*, mu_n) and twice it (triangle inequality and Jensen), without a reference bias,
whose slope (`rate_slope`) is the rate's.

The trends the theory predicts (eps_approx falling with p, eps_optim and the metric
discrepancy falling with q) are paired differences too (`TRENDS`): the smaller depth minus
the next larger one in the sweep, same seeds, one cell per pair of depths.

Sweep designs: `full_grid` trains every (p, q, n); otherwise every (p, q) at the largest n
and at infinity, and every n only at the first depths (p0, q0). Cells are keyed by coordinates only (`kit.Keys`), trained networks and per-seed
distances are artifacts (verified JSON + Equinox bytes), and the decomposition cells need
the artifacts they combine: everything goes through the store.

Run `python -m studies.error_decomposition --help` for every option.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

import theory
from models.generator import MLPGeneratorSpec
from models.oracle import AbstractOTLoss, ExactAssignment, OracleTraining, SinkhornDivergence, init_oracle_replicas, train_oracle_replicas
from models.sharding import mesh_for
from models.wgan import critic_values, init_replicas, sample_replicas
from models.wgan_fresh import EmpiricalLaw, stack_law, train_replicas_on_law
from studies import kit
from studies.kit import config_field
from studies.wgan_capacity import DIVERGENCE_DIAMETERS, PAPER_GRID, WGANSettings, target_diameter

INFINITY = -1
"""The value of the `n` coordinate for training on fresh target draws (n = infinity)."""

OT_LOSSES: dict[str, AbstractOTLoss] = {"exact": ExactAssignment(), "sinkhorn": SinkhornDivergence(epsilon=0.03)}

TERMS = ("w1_total", "eps_estim", "eps_optim", "eps_approx", "eps_estim_oracle", "eps_approx_above_floor", "w1_floor")


@dataclasses.dataclass(frozen=True)
class Config(WGANSettings):
    """One error-decomposition sweep over targets K, depths p and q, and training-set sizes n."""

    n_modes: tuple[int, ...] = config_field((4,), "K: Gaussian-grid targets (each in 2, 4, 9)", low=2, high=9)
    generator_depths: tuple[int, ...] = config_field((5, 2), "p: generator depths (linear layers); the first carries the n sweep", low=1, high=32)
    critic_depths: tuple[int, ...] = config_field((5, 2), "q: critic depths (linear layers); the first carries the n sweep", low=1, high=32)
    train_sizes: tuple[int, ...] = config_field((64, 256, 1024), "n: finite training-set sizes (n = infinity is always trained)", low=2, high=100_000)
    full_grid: bool = config_field(False, "train every (p, q, n); otherwise every n at (p0, q0) only and the other (p, q) at the largest n")
    n_steps: int = config_field(1200, "generator steps of every WGAN and oracle training", low=1, high=10**6)
    batch_size: int = config_field(256, "WGAN batch size for real and fake points", low=2, high=8192)
    oracle_loss: AbstractOTLoss = config_field(ExactAssignment(), "the oracle's minibatch OT loss", parse=OT_LOSSES)
    oracle_batch_size: int = config_field(128, "oracle batch size B (its loss is biased up by about the floor at B)", low=2, high=4096)
    critic_fit_steps: int = config_field(600, "steps (each critic_steps critic updates) of the fresh critic on a frozen generator; even", low=2, high=10**6)
    n_seeds: int = config_field(10, "replicates per cell, trained as one vmapped program", low=2, high=256)
    seed: int = config_field(0, "root PRNG seed")
    eval_points: int = config_field(512, "m: generated and target points per exact W1 (POT's cost matrix is m x m)", low=2, high=10_000)
    eval_repeats: int = config_field(3, "independent W1 evaluations averaged per seed", low=1, high=100)
    rate_reference_points: int = config_field(4096, "M: fresh target points the n training points are compared with for E W1(mu*, mu_n)", low=2, high=20_000)
    draw_figures: bool = config_field(True, "draw the figures at the end (python -m figures.error_decomposition redraws them)")

    def __post_init__(self):
        kit.check_fields(self)
        self.check_wgan_settings()
        if self.critic_fit_steps % 2:
            raise ValueError(f"critic_fit_steps must be even (the critic is checked at half and full), got {self.critic_fit_steps}")
        if self.critic.width % 2:
            raise ValueError(f"the critic's width must be even, got {self.critic.width}")
        self.oracle_training()

    def oracle_training(self) -> OracleTraining:
        return kit.component_from(OracleTraining, self, loss="oracle_loss", lr="lr_generator", batch_size="oracle_batch_size")

    def pairs(self) -> list[tuple[int, int]]:
        """The (p, q) trained: every pair of the grid."""
        return [(p, q) for p in self.generator_depths for q in self.critic_depths]

    def sizes_at(self, p: int, q: int) -> list[int]:
        """The finite n trained at (p, q), ascending (n = infinity comes on top)."""
        if self.full_grid or (p, q) == (self.generator_depths[0], self.critic_depths[0]):
            return sorted(self.train_sizes)
        return [max(self.train_sizes)]


PRESETS = {
    # K = 4, the (p, q) grid {2, 5}^2 at n = 1024 and infinity, every n at (p, q) = (5, 5),
    # 1,200 steps, 10 seeds (5 left the estimation trend's interval touching 0), 40 cells.
    "quick": Config(),
    # The full grid of protocols.md: K in {2, 4, 9}, p, q in {2, 3, 5, 7},
    # n in {64, 256, 1024, 5000, inf}, 20,001 steps, 5 seeds, m = 1024 x 5 repeats.
    "paper": Config(
        **PAPER_GRID,
        train_sizes=(64, 256, 1024, 5000),
        full_grid=True,
        oracle_batch_size=256,
        critic_fit_steps=4000,
        eval_points=1024,
        eval_repeats=5,
        rate_reference_points=10_000,
    ),
    # Seconds: for tests.
    "smoke": Config(
        n_modes=(4,),
        generator_depths=(2,),
        critic_depths=(2,),
        train_sizes=(32, 128),
        n_steps=10,
        batch_size=32,
        oracle_batch_size=16,
        critic_fit_steps=4,
        n_seeds=2,
        eval_points=64,
        eval_repeats=2,
        rate_reference_points=128,
        draw_figures=False,
    ),
}


# ------------------------------------------------------------------------------------
# Names of cells and artifacts (coordinates only).


def _n_text(n: int) -> str:
    return "inf" if n == INFINITY else str(n)


def _wgan_name(k, p, q, n) -> str:
    return f"wgan_K={k}_p={p}_q={q}_n={_n_text(n)}"


def _oracle_name(k, p, n) -> str:
    return f"oracle_K={k}_p={p}_n={_n_text(n)}"


# ------------------------------------------------------------------------------------
# Artifacts: a JSON header (per-seed distances) and, for trainings, the Equinox bytes of
# the R trained generators.


def _encode(value: dict) -> bytes:
    header = json.dumps(value["evaluation"], sort_keys=True, allow_nan=True).encode()
    if value.get("generators") is None:
        return header
    buffer = io.BytesIO()
    eqx.tree_serialise_leaves(buffer, value["generators"])
    return header + b"\n" + buffer.getvalue()


def _decoder(like):
    def decode(data: bytes) -> dict:
        header, _, body = data.partition(b"\n")
        evaluation = json.loads(header)
        if like is None:
            if body:
                raise ValueError("unexpected bytes after the JSON header")
            return {"evaluation": evaluation, "generators": None}
        buffer = io.BytesIO(body)
        generators = eqx.tree_deserialise_leaves(buffer, like())
        if buffer.read(1):
            raise ValueError("trailing bytes after the last leaf")
        return {"evaluation": evaluation, "generators": generators}

    return decode


def _interval_row(interval: kit.Interval) -> dict:
    """`Interval.row()` with its replicate count as `n_seeds`: `n` is this study's training-set size."""
    row = interval.row()
    row["n_seeds"] = row.pop("n")
    return row


def _floats(values) -> list[float]:
    return [float(v) for v in np.asarray(values, np.float64).reshape(-1)]


# ------------------------------------------------------------------------------------
# The science.


class _Target:
    """One target K of one run: its law (float32), its keys, its points and its scorer."""

    def __init__(self, config: Config, keys: kit.Keys, k: int):
        self.config, self.keys, self.k = config, keys, k
        # float32 whatever jax_enable_x64 says, so tests and the command line agree.
        self.law = jax.tree.map(lambda leaf: jnp.asarray(leaf, jnp.float32) if eqx.is_array(leaf) else leaf,
                                theory.gaussian_grid(k))
        self.law64 = theory.gaussian_grid(k)
        self.seeds = list(range(config.n_seeds))
        self.limit = DIVERGENCE_DIAMETERS * target_diameter(self.law64)

    def seed_keys(self, purpose: str) -> jax.Array:
        return self.keys.stack(purpose, [{"K": self.k, "seed": s} for s in self.seeds])

    def points(self, seed: int, n: int) -> jax.Array:
        """The first n points of the seed's training stream: mu_n for every n is nested in the next."""
        stream = self.keys("data", K=self.k, seed=seed)
        draw = lambda i: self.law.sample(jax.random.fold_in(stream, i), 1)[0]
        return jax.vmap(draw)(jnp.arange(n))

    def laws(self, n: int):
        """The law each replica trains on: mu* (n = infinity) or its own mu_n, stacked over seeds."""
        if n == INFINITY:
            return stack_law(self.law, len(self.seeds))
        return EmpiricalLaw(points=jnp.stack([self.points(s, n) for s in self.seeds]))

    def target_eval(self, seed: int) -> np.ndarray:
        """(repeats, m, 2) target draws every generator of this (K, seed) is scored on."""
        m, repeats = self.config.eval_points, self.config.eval_repeats
        x = self.law64.sample(self.keys("target-eval", K=self.k, seed=seed), repeats * m)
        return np.asarray(x, np.float64).reshape(repeats, m, 2)

    def generated(self, generators, spec: MLPGeneratorSpec) -> np.ndarray:
        """(R, repeats, m, 2) draws of each replica, latent keys shared by every generator of a seed."""
        m, repeats = self.config.eval_points, self.config.eval_repeats
        x = sample_replicas(generators, self.seed_keys("eval-latent"), generator_spec=spec, n=repeats * m)
        return np.asarray(x, np.float64).reshape(len(self.seeds), repeats, m, 2)

    def w1(self, generated: np.ndarray) -> list[float]:
        """Per seed: the mean over repeats of the exact W1; NaN if non-finite or beyond the divergence limit."""
        values = []
        for r, seed in enumerate(self.seeds):
            if not np.all(np.isfinite(generated[r])):
                values.append(math.nan)
                continue
            target = self.target_eval(seed)
            w = np.array([theory.wasserstein(generated[r, i], target[i]).value for i in range(len(target))])
            values.append(float(w.mean()) if np.all(w <= self.limit) else math.nan)
        return values

    def ipm(self, critics, generated: np.ndarray) -> list[float]:
        """Per seed: mean over repeats of mean D(target) - mean D(generated), on the scored points."""
        m = self.config.eval_points
        targets = np.stack([self.target_eval(s) for s in self.seeds])
        both = np.concatenate([generated, targets], axis=2).reshape(len(self.seeds), -1, 2)
        safe = np.where(np.isfinite(both), both, 0.0)
        values = np.asarray(critic_values(critics, jnp.asarray(safe, jnp.float32)), np.float64)
        values = values.reshape(len(self.seeds), -1, 2 * m)
        out = values[:, :, m:].mean(axis=2) - values[:, :, :m].mean(axis=2)
        return [float(v) if np.all(np.isfinite(generated[r])) else math.nan for r, v in enumerate(out.mean(axis=1))]


def _train_wgan(config: Config, target: _Target, p: int, q: int, n: int, progress: kit.Progress, mesh=None) -> dict:
    generator_spec, critic_spec, training = config.generator(p), config.critic_of_depth(q), config.training()
    # Init and training keys from (K, seed) only: the same initial generator (and latent
    # draws) for every n and q, and the same generator as the oracle's of that seed.
    states = init_replicas(target.seed_keys("init"), generator_spec=generator_spec, critic_spec=critic_spec,
                           training=training, data_dim=2, mesh=mesh)
    with progress.phase(f"train WGAN p={p} q={q} n={_n_text(n)} (with compile)"):
        states, losses = train_replicas_on_law(states, target.laws(n), target.seed_keys("train"), n_steps=config.n_steps,
                                               generator_spec=generator_spec, critic_spec=critic_spec, training=training,
                                               mesh=mesh)
        diverged_at = np.asarray(jax.block_until_ready(states.diverged_at))
    with progress.phase("evaluate (exact W1)"):
        generated = target.generated(states.generator, generator_spec)
        w1 = target.w1(generated)
        ipm = target.ipm(states.critic, generated)
    w1 = [math.nan if d >= 0 else v for v, d in zip(w1, diverged_at)]
    progress.update(step=config.n_steps, total_steps=config.n_steps, w1_mean=float(np.nanmean(w1)) if np.isfinite(w1).any() else math.nan)
    evaluation = {"w1": w1, "critic_ipm": ipm, "diverged_at_step": [int(d) for d in diverged_at],
                  "critic_loss_late": _floats(np.asarray(losses.critic)[:, -max(1, config.n_steps // 4):].mean(axis=1))}
    return {"evaluation": evaluation, "generators": states.generator}


def _train_oracle(config: Config, target: _Target, p: int, n: int, progress: kit.Progress, mesh=None) -> dict:
    generator_spec, training = config.generator(p), config.oracle_training()
    states = init_oracle_replicas(target.seed_keys("init"), generator_spec=generator_spec, training=training, data_dim=2,
                                  mesh=mesh)
    with progress.phase(f"train oracle p={p} n={_n_text(n)} (with compile)"):
        states, losses = train_oracle_replicas(states, target.laws(n), target.seed_keys("oracle-train"),
                                               n_steps=config.n_steps, generator_spec=generator_spec, training=training,
                                               mesh=mesh)
        diverged_at = np.asarray(jax.block_until_ready(states.diverged_at))
    with progress.phase("evaluate (exact W1)"):
        w1 = target.w1(target.generated(states.generator, generator_spec))
    w1 = [math.nan if d >= 0 else v for v, d in zip(w1, diverged_at)]
    progress.update(step=config.n_steps, total_steps=config.n_steps, w1_mean=float(np.nanmean(w1)) if np.isfinite(w1).any() else math.nan)
    evaluation = {"w1": w1, "diverged_at_step": [int(d) for d in diverged_at],
                  "batch_loss_late": _floats(np.asarray(losses.loss)[:, -max(1, config.n_steps // 4):].mean(axis=1))}
    return {"evaluation": evaluation, "generators": states.generator}


def _floor(config: Config, target: _Target) -> dict:
    """Per seed: mean over repeats of W1 between the seed's target evaluation draws and fresh ones."""
    m, repeats = config.eval_points, config.eval_repeats
    values = []
    for seed in target.seeds:
        own = target.target_eval(seed)
        other = np.asarray(target.law64.sample(target.keys("floor", K=target.k, seed=seed), repeats * m), np.float64)
        other = other.reshape(repeats, m, 2)
        values.append(float(np.mean([theory.wasserstein(own[i], other[i]).value for i in range(repeats)])))
    return {"evaluation": {"w1_floor": values}, "generators": None}


def _rate(config: Config, target: _Target, n: int) -> dict:
    """Per seed: exact W1 between its n training points and M fresh target points
    (`w1_data`, within E W1(mu*, mu_M) of W1(mu*, mu_n)), and between them and n fresh
    points (`w1_two_sample`, between E W1(mu*, mu_n) and twice it, no reference bias)."""
    data, two_sample = [], []
    for seed in target.seeds:
        points = np.asarray(target.points(seed, n), np.float64)
        reference = target.law64.sample(target.keys("rate-reference", K=target.k, seed=seed), config.rate_reference_points)
        data.append(theory.wasserstein(points, np.asarray(reference, np.float64)).value)
        other = target.law64.sample(target.keys("rate-two-sample", K=target.k, seed=seed, n=n), n)
        two_sample.append(theory.wasserstein(points, np.asarray(other, np.float64)).value)
    return {"evaluation": {"w1_data": data, "w1_two_sample": two_sample}, "generators": None}


def _fit_critic(config: Config, target: _Target, p: int, q: int, trained: dict, progress: kit.Progress,
                mesh=None) -> dict:
    """A fresh critic of depth q trained on fresh draws against the frozen n = infinity
    generator: per seed, its IPM at half and at all `critic_fit_steps` steps, on the
    generator's scored points (an artifact, so the trend cells can pair its gaps by seed)."""
    generator_spec, critic_spec, training = config.generator(p), config.critic_of_depth(q), config.training()
    states = init_replicas(target.seed_keys("critic-fit-init"), generator_spec=generator_spec, critic_spec=critic_spec,
                           training=training, data_dim=2, mesh=mesh)
    states = eqx.tree_at(lambda s: s.generator, states, trained["generators"])
    generated = target.generated(states.generator, generator_spec)
    half = config.critic_fit_steps // 2
    ipm = {}
    fit_keys = target.seed_keys("critic-fit")
    for chunk, steps in ((0, half), (1, config.critic_fit_steps)):
        with progress.phase(f"fit critic q={q} on frozen generator p={p}"):
            states, _ = train_replicas_on_law(states, target.laws(INFINITY), jax.vmap(jax.random.fold_in, in_axes=(0, None))(fit_keys, chunk),
                                              n_steps=half, generator_spec=generator_spec, critic_spec=critic_spec,
                                              training=training, freeze_generator=True, mesh=mesh)
        ipm[steps] = target.ipm(states.critic, generated)
    w1 = trained["evaluation"]["w1"]
    evaluation = {"w1": w1, "critic_ipm_fresh": ipm[config.critic_fit_steps], "critic_ipm_fresh_half": ipm[half],
                  "critic_ipm_training": trained["evaluation"]["critic_ipm"],
                  "metric_gap": [a - b for a, b in zip(w1, ipm[config.critic_fit_steps])]}
    return {"evaluation": evaluation, "generators": None}


def _critic_fit_rows(target: _Target, fit: dict) -> list[dict]:
    """Per-seed rows of a fresh-critic fit, with the gap W1 - IPM and the second half's gain
    as paired differences over seeds."""
    value = fit["evaluation"]
    rows = []
    for r, seed in enumerate(target.seeds):
        for metric in ("w1", "critic_ipm_fresh", "critic_ipm_fresh_half", "critic_ipm_training", "metric_gap"):
            rows.append({"seed": seed, "metric": metric, "value": value[metric][r]})
    for metric, a, b in (("metric_gap", value["w1"], value["critic_ipm_fresh"]),
                         ("critic_ipm_fresh_gain_second_half", value["critic_ipm_fresh"], value["critic_ipm_fresh_half"])):
        rows.append({"metric": metric, **_interval_row(kit.paired_difference(a, b))})
    rows.append({"metric": "critic_ipm_fresh", **_interval_row(kit.over_replicates(value["critic_ipm_fresh"]))})
    rows.append({"metric": "w1", **_interval_row(kit.over_replicates(value["w1"]))})
    return rows


TRENDS = ("eps_approx_drop", "eps_optim_drop", "metric_gap_drop")
"""The trends, each "smaller depth minus the next larger one" in the sweep, paired by seed
(positive: the term falls as the depth grows), one cell per pair of depths:
eps_approx between consecutive p (the oracles on fresh draws); eps_optim = d(inf, p, q) -
d_oracle(p) between consecutive q at each p (the oracle cancels, so it is d(inf, p, q) -
d(inf, p, q')); the fresh critic's gap W1 - IPM between consecutive q at each p. The larger
depth is in the `versus` column."""


def _trend_rows(metric: str, coords: dict, versus: int, a: list[float], b: list[float]) -> list[dict]:
    """One TRENDS row: a - b paired by seed, a at the smaller depth, b at `versus`."""
    return [{"metric": metric, **coords, "versus": versus, **_interval_row(kit.paired_difference(a, b))}]


def decompose(d_n, d_inf, oracle_inf, oracle_n, floor) -> dict[str, tuple[np.ndarray, kit.Interval]]:
    """The terms per seed and their intervals over seeds.

    Args:
        d_n, d_inf: per-seed W1 of the WGAN on n points and on fresh draws, shape (R,).
        oracle_inf, oracle_n: per-seed W1 of the oracle on fresh draws and on n points.
        floor: per-seed sampling floor (W1 between two m-samples of the target).

    Returns:
        metric -> (per-seed values, interval); w1_total = eps_estim + eps_optim + eps_approx
        per seed, each difference a `kit.paired_difference`.
    """
    d_n, d_inf, oracle_inf, oracle_n, floor = (np.asarray(v, np.float64) for v in (d_n, d_inf, oracle_inf, oracle_n, floor))
    return {
        "w1_total": (d_n, kit.over_replicates(d_n)),
        "eps_estim": (d_n - d_inf, kit.paired_difference(d_n, d_inf)),
        "eps_optim": (d_inf - oracle_inf, kit.paired_difference(d_inf, oracle_inf)),
        "eps_approx": (oracle_inf, kit.over_replicates(oracle_inf)),
        "eps_estim_oracle": (oracle_n - oracle_inf, kit.paired_difference(oracle_n, oracle_inf)),
        "eps_approx_above_floor": (oracle_inf - floor, kit.paired_difference(oracle_inf, floor)),
        "w1_floor": (floor, kit.over_replicates(floor)),
    }


def _terms_rows(target: _Target, n: int, wgan_n, wgan_inf, oracle_inf, oracle_n, floor) -> list[dict]:
    terms = decompose(wgan_n["evaluation"]["w1"], wgan_inf["evaluation"]["w1"], oracle_inf["evaluation"]["w1"],
                      oracle_n["evaluation"]["w1"], floor["evaluation"]["w1_floor"])
    rows = []
    for metric, (per_seed, interval) in terms.items():
        rows += [{"seed": seed, "metric": metric, "value": float(v)} for seed, v in zip(target.seeds, per_seed)]
        rows.append({"metric": metric, **_interval_row(interval)})
    return rows


def _slope_rows(target: _Target, sizes: list[int], wgans: list[dict], wgan_inf: dict, oracles: list[dict],
                oracle_inf: dict, rates: list[dict]) -> list[dict]:
    estim = np.array([np.asarray(w["evaluation"]["w1"]) - np.asarray(wgan_inf["evaluation"]["w1"]) for w in wgans]).T
    estim_oracle = np.array([np.asarray(o["evaluation"]["w1"]) - np.asarray(oracle_inf["evaluation"]["w1"]) for o in oracles]).T
    rate = np.array([r["evaluation"]["w1_two_sample"] for r in rates]).T
    rate_reference = np.array([r["evaluation"]["w1_data"] for r in rates]).T
    rows = []
    for metric, y in (("eps_estim_slope", estim), ("eps_estim_oracle_slope", estim_oracle), ("rate_slope", rate),
                      ("rate_reference_slope", rate_reference)):
        interval = kit.slope_over_replicates(sizes, y)
        # A seed whose term is <= 0 at some n has no log-log slope: counted in n_diverged, said here.
        rows.append({"metric": metric, **_interval_row(interval), "note": "seeds with a non-positive value at some n are not fitted (counted in n_diverged)"})
    # The trend without the sign restriction of a log-log fit: the least-squares change of
    # the term per decade of n, per seed (a term near 0 at large n can be negative by noise
    # or because n points train better than fresh draws at this budget), t-interval over seeds.
    decades = np.log10(np.asarray(sizes, np.float64))
    for metric, y in (("eps_estim_decade_slope", estim), ("eps_estim_oracle_decade_slope", estim_oracle)):
        interval = kit.slope_over_replicates(decades, y, log=False)
        rows.append({"metric": metric, **_interval_row(interval), "note": "change of the term per tenfold n (semi-log slope)"})
    return rows


def cells(config: Config, *, devices: int = 1) -> tuple[list[kit.Cell], list[kit.Artifact]]:
    """Floors and rates per K; WGAN and oracle trainings (artifacts and their rows); the
    fresh critic on each frozen n = infinity generator; decomposition and slope cells.

    `devices` (``--devices``): the seeds of every WGAN and oracle training are sharded over
    that many local devices (0: all; 1: the plain single-device program); never changes the
    numbers beyond float32 rounding.
    """
    keys = kit.Keys(config.seed)
    mesh = mesh_for(devices)
    cell_list: list[kit.Cell] = []
    artifacts: dict[str, kit.Artifact] = {}
    pairs = config.pairs()

    def add_artifact(name: str, build, like=None, needs=("progress",)):
        artifacts[name] = kit.Artifact(name=name, build=build, encode=_encode, decode=_decoder(like), needs=needs)

    def evaluation_cell(cell_id: str, name: str, coords: dict, metrics: tuple[str, ...]):
        def fn(**needs):
            value = needs[name]["evaluation"]
            rows = []
            for metric in metrics:
                per_seed = value[metric]
                rows += [{"seed": s, "metric": metric, "value": float(v)} for s, v in enumerate(per_seed)]
                if metric in ("w1", "w1_floor", "w1_data", "w1_two_sample", "critic_ipm"):
                    rows.append({"metric": metric, **_interval_row(kit.over_replicates(per_seed))})
            return rows

        cell_list.append(kit.Cell(cell_id, fn, needs=(name,), coords=coords))

    for k in config.n_modes:
        target = _Target(config, keys, k)
        floor_name = f"floor_K={k}.json"
        add_artifact(floor_name, lambda target=target: _floor(config, target), needs=())
        evaluation_cell(f"floor_K={k}", floor_name, {"K": k}, ("w1_floor",))
        all_sizes = sorted({n for p, q in pairs for n in config.sizes_at(p, q)})
        for n in all_sizes:
            name = f"rate_K={k}_n={n}.json"
            add_artifact(name, lambda target=target, n=n: _rate(config, target, n), needs=())
            evaluation_cell(f"rate_K={k}_n={n}", name, {"K": k, "n": n}, ("w1_data", "w1_two_sample"))
        oracle_sizes = {p: sorted({n for pp, q in pairs if pp == p for n in config.sizes_at(pp, q)}) for p, _ in pairs}
        for p, sizes in oracle_sizes.items():
            like = lambda p=p, target=target: init_oracle_replicas(target.seed_keys("init"), generator_spec=config.generator(p),
                                                     training=config.oracle_training(), data_dim=2).generator
            for n in [INFINITY] + sizes:
                name = _oracle_name(k, p, n) + ".eqx"
                add_artifact(name, lambda progress, target=target, p=p, n=n: _train_oracle(config, target, p, n, progress, mesh), like)
                evaluation_cell(_oracle_name(k, p, n), name, {"K": k, "p": p, "n": n, "model": "oracle"},
                                ("w1", "diverged_at_step", "batch_loss_late"))
        for p, q in pairs:
            like = lambda p=p, q=q, target=target: init_replicas(target.seed_keys("init"), generator_spec=config.generator(p),
                                                   critic_spec=config.critic_of_depth(q), training=config.training(), data_dim=2).generator
            for n in [INFINITY] + config.sizes_at(p, q):
                name = _wgan_name(k, p, q, n) + ".eqx"
                add_artifact(name, lambda progress, target=target, p=p, q=q, n=n: _train_wgan(config, target, p, q, n, progress, mesh), like)
                evaluation_cell(_wgan_name(k, p, q, n), name, {"K": k, "p": p, "q": q, "n": n, "model": "wgan"},
                                ("w1", "critic_ipm", "diverged_at_step", "critic_loss_late"))
            inf_name = _wgan_name(k, p, q, INFINITY) + ".eqx"
            fit_name = f"critic_fit_K={k}_p={p}_q={q}.json"
            add_artifact(fit_name, lambda progress, target=target, p=p, q=q, inf_name=inf_name, **got: _fit_critic(
                config, target, p, q, got[inf_name], progress, mesh), needs=("progress", inf_name))
            cell_list.append(kit.Cell(
                f"critic_fit_K={k}_p={p}_q={q}",
                lambda target=target, fit_name=fit_name, **got: _critic_fit_rows(target, got[fit_name]),
                needs=(fit_name,), coords={"K": k, "p": p, "q": q, "n": INFINITY, "model": "fresh_critic"},
            ))
        for p, q in pairs:
            sizes = config.sizes_at(p, q)
            for n in [INFINITY] + sizes:
                need = {"wgan_n": _wgan_name(k, p, q, n) + ".eqx", "wgan_inf": _wgan_name(k, p, q, INFINITY) + ".eqx",
                        "oracle_inf": _oracle_name(k, p, INFINITY) + ".eqx", "oracle_n": _oracle_name(k, p, n) + ".eqx",
                        "floor": floor_name}
                cell_list.append(kit.Cell(
                    f"terms_K={k}_p={p}_q={q}_n={_n_text(n)}",
                    lambda target=target, n=n, need=need, **got: _terms_rows(target, n, **{role: got[name] for role, name in need.items()}),
                    needs=tuple(dict.fromkeys(need.values())), coords={"K": k, "p": p, "q": q, "n": n},
                ))
            if len(sizes) >= 2:
                wgan_names = [_wgan_name(k, p, q, n) + ".eqx" for n in sizes]
                oracle_names = [_oracle_name(k, p, n) + ".eqx" for n in sizes]
                rate_names = [f"rate_K={k}_n={n}.json" for n in sizes]
                inf_names = [_wgan_name(k, p, q, INFINITY) + ".eqx", _oracle_name(k, p, INFINITY) + ".eqx"]
                cell_list.append(kit.Cell(
                    f"slope_K={k}_p={p}_q={q}_n={'-'.join(map(str, sizes))}",
                    lambda target=target, sizes=sizes, wn=wgan_names, on=oracle_names, rn=rate_names, inf=inf_names, **got: _slope_rows(
                        target, sizes, [got[x] for x in wn], got[inf[0]], [got[x] for x in on], got[inf[1]], [got[x] for x in rn]),
                    needs=tuple(wgan_names + oracle_names + rate_names + inf_names), coords={"K": k, "p": p, "q": q},
                ))
        # The trends between neighbouring depths, one cell per pair (its numbers depend on
        # those two depths only, whatever else the sweep holds).
        def add_trend(metric: str, coords: dict, versus: int, names: tuple[str, str], key: str):
            cell_id = f"{metric}_K={k}_" + "_".join(f"{c}={v}" for c, v in coords.items()) + f"_vs_{versus}"
            cell_list.append(kit.Cell(
                cell_id,
                lambda metric=metric, coords=coords, versus=versus, names=names, key=key, **got: _trend_rows(
                    metric, coords, versus, got[names[0]]["evaluation"][key], got[names[1]]["evaluation"][key]),
                needs=names, coords={"K": k, "n": INFINITY},
            ))

        depths_p = sorted({p for p, _ in pairs})
        for p, p_next in zip(depths_p, depths_p[1:]):
            add_trend("eps_approx_drop", {"p": p}, p_next,
                      (_oracle_name(k, p, INFINITY) + ".eqx", _oracle_name(k, p_next, INFINITY) + ".eqx"), "w1")
        for p in depths_p:
            depths_q = sorted(q for pp, q in pairs if pp == p)
            for q, q_next in zip(depths_q, depths_q[1:]):
                add_trend("eps_optim_drop", {"p": p, "q": q}, q_next,
                          (_wgan_name(k, p, q, INFINITY) + ".eqx", _wgan_name(k, p, q_next, INFINITY) + ".eqx"), "w1")
                add_trend("metric_gap_drop", {"p": p, "q": q}, q_next,
                          (f"critic_fit_K={k}_p={p}_q={q}.json", f"critic_fit_K={k}_p={p}_q={q_next}.json"), "metric_gap")
    return cell_list, list(artifacts.values())


def run(config: Config, store: kit.ResultStore | None = None, *, runtime: kit.Runtime | None = None) -> kit.Results:
    """Train, evaluate and decompose every cell, saving each as it finishes (resumable).

    Returns:
        The tidy table (columns K, p, q, n (-1 = infinity), model, seed, metric, value,
        error, ci_low, ci_high, n_diverged, ...) and, with a store, the run directory and
        figure paths.
    """
    runtime = runtime or kit.Runtime()
    cell_list, artifacts = cells(config, devices=runtime.devices)
    table = kit.run_cells(store, cell_list, artifacts=artifacts, runtime=runtime)
    return kit.finish(store, table, figures="figures.error_decomposition" if config.draw_figures else None, summarise=summary)


def terms_table(table: pd.DataFrame) -> pd.DataFrame:
    """The decomposition's intervals over seeds: one row per (K, p, q, n, metric) of TERMS."""
    rows = table[table["metric"].isin(TERMS) & table["seed"].isna() & table["q"].notna()] if len(table) else table
    return rows[["K", "p", "q", "n", "metric", "value", "error", "ci_low", "ci_high", "n_diverged"]].reset_index(drop=True)


def trends_table(table: pd.DataFrame) -> pd.DataFrame:
    """The TRENDS rows as "value ± s.e. [95% CI]", one line per pair of depths."""
    rows = table[table["metric"].isin(TRENDS)] if len(table) else table
    if rows.empty:
        return pd.DataFrame()
    depth = lambda v: "" if pd.isna(v) else str(int(v))
    return pd.DataFrame({"K": rows["K"].astype(int), "metric": rows["metric"], "p": rows["p"].map(depth),
                         "q": rows["q"].map(depth), "versus": rows["versus"].map(depth),
                         "difference": rows.apply(_interval_text, axis=1)}).reset_index(drop=True)


def _interval_text(row) -> str:
    """value ± s.e. [95% CI] of a saved interval row, with the diverged seeds counted (for a
    log-log slope: the seeds that could not be fitted, a non-positive term at some n)."""
    left_out = "not fittable" if str(row.metric).endswith("_slope") else "diverged"
    diverged = f" ({int(row.n_diverged)} {left_out})" if row.n_diverged else ""
    if not math.isfinite(row.value):
        return "all diverged" if row.n_diverged else "no data"
    if not math.isfinite(row.error):
        return f"{row.value:.3g}{diverged}"
    return f"{row.value:.3g} ± {row.error:.2g} [{row.ci_low:.3g}, {row.ci_high:.3g}]{diverged}"


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """By (K, p, q, n): each term as "value ± s.e. [95% CI]" over seeds (n = -1: infinity)."""
    terms = terms_table(table)
    if terms.empty:
        return terms
    text = terms.apply(_interval_text, axis=1)
    wide = terms.assign(text=text).pivot_table(index=["K", "p", "q", "n"], columns="metric", values="text", aggfunc="first")
    columns = [c for c in ("w1_total", "eps_estim", "eps_optim", "eps_approx", "eps_approx_above_floor", "eps_estim_oracle", "w1_floor") if c in wide.columns]
    out = wide[columns].reset_index()
    out["n"] = out["n"].map(lambda v: "inf" if int(v) == INFINITY else str(int(v)))
    return out


def main(argv: list[str] | None = None) -> None:
    table = kit.main(run, Config, PRESETS, argv).table
    slopes = table[table["metric"].str.endswith("_slope")]
    kit.print_tables([
        ("Exact W1 (POT) terms, mean ± s.e. [95% t-interval] over seeds, paired by seed; "
         "w1_total = eps_estim + eps_optim + eps_approx per seed", summary(table)),
        ("Trends, smaller depth minus the next larger one (versus), paired by seed; positive: the term falls "
         "with depth", trends_table(table)),
        *((f"K={int(row.K)} p={int(row.p)} q={int(row.q)} {row.metric}",
           f"{_interval_text(row) if math.isfinite(row.value) else 'no seed fittable'} ({int(row.n_seeds)} seeds fitted"
           f"{'; a log-log slope needs a positive term at every n' if 'decade' not in row.metric else ''})")
          for row in slopes.itertuples()),
    ], column_width=40)


if __name__ == "__main__":
    main()
