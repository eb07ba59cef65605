"""WGAN capacity sweep: exact W1 of trained generators over generator depth p and critic depth q.

Reproduces the sweep of Biau, Sangnier & Tanielian, "Some theoretical insights into
Wasserstein GANs" (JMLR 2021, Sec. 5; shared/reference/protocols.md): a ReLU generator
G_p of depth p is trained against a critic D_q of depth q on n points from a Gaussian
grid with K modes, and the trained mu_theta is scored by the exact W1 (POT's network
simplex) between m generated and m fresh target points, read against the sampling
floor W1(target sample, target sample) at the same m. The critic's own estimate of the
distance (its IPM on the same points) is recorded beside it: their gap is the metric
discrepancy of the error decomposition d_Lip1 <= eps_estim + eps_optim + eps_approx.

Departures from the public code, on purpose: every layer has its own weights (the
code's `[Linear, act] * (depth - 1)` shares one hidden layer); depth counts linear
layers (the code's D_q has q + 1); real batches are drawn uniformly from the n points
(the empirical law) instead of epoch-wise cycling; K = 2 uses fixed means (+-2, 0).

Run `python -m studies.wgan_capacity --help` for every option.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import scipy.stats

import theory
from models.critics import (
    AbstractCriticSpec,
    BjorckGroupSort,
    GradientPenaltyMLP,
    SpectralNormMLP,
    WeightClippingMLP,
)
from models.generator import AbstractLatent, GaussianLatent, MLPGenerator, UniformLatent
from models.lipschitz import measure_lipschitz
from models.wgan import WGANTraining, critic_values, init_replicas, sample_replicas, train_replicas
from studies.pipeline import Progress, ResultStore, config_field, parse_config, run_cells, write_text_atomically
from theory.validation import check_count

CRITICS: dict[str, AbstractCriticSpec] = {
    "bjorck": BjorckGroupSort(depth=1),
    "gradient-penalty": GradientPenaltyMLP(depth=1),
    "spectral-norm": SpectralNormMLP(depth=1),
    "weight-clipping": WeightClippingMLP(depth=1),
}
"""Command-line names of the critic families; each cell sets the depth to its q."""

LATENTS: dict[str, AbstractLatent] = {"uniform": UniformLatent(), "gaussian": GaussianLatent()}

FLOOR_CELL = "sampling-floor"


@dataclasses.dataclass(frozen=True)
class Config:
    """One sweep over targets K, generator depths p and critic depths q."""

    n_modes: tuple[int, ...] = config_field((4, 9), "K: Gaussian-grid targets to sweep (each in 2, 4, 9)")
    generator_depths: tuple[int, ...] = config_field((2, 5), "p: generator depths (number of linear layers) to sweep")
    critic_depths: tuple[int, ...] = config_field((2, 5), "q: critic depths (number of linear layers) to sweep")
    critic: AbstractCriticSpec = config_field(
        BjorckGroupSort(depth=1),
        "critic family; its depth is replaced by each q",
        parse=CRITICS,
    )
    generator_width: int = config_field(30, "hidden width of the generator")
    latent_dim: int = config_field(1, "latent dimension of the generator")
    latent: AbstractLatent = config_field(UniformLatent(), "latent law (uniform: U[-1,1]^k)", parse=LATENTS)
    n_train: int = config_field(5000, "n: size of the finite training set, drawn once per (K, seed)")
    n_steps: int = config_field(4000, "generator steps")
    eval_every: int = config_field(1000, "evaluate every this many generator steps (and at 0 and the end)")
    batch_size: int = config_field(256, "batch size for real and fake points")
    critic_steps: int = config_field(3, "critic steps per generator step")
    lr_critic: float = config_field(0.0025, "critic learning rate (Adam)")
    lr_generator: float = config_field(0.001, "generator learning rate (Adam)")
    adam_b1: float = config_field(0.5, "Adam beta1")
    adam_b2: float = config_field(0.5, "Adam beta2")
    n_seeds: int = config_field(3, "independent replicates per (K, p, q), trained in one vmapped program")
    seed: int = config_field(0, "root PRNG seed")
    eval_points: int = config_field(1024, "m: generated and target points per W1 evaluation")
    eval_repeats: int = config_field(5, "independent W1 evaluations averaged (mean and 95% t-interval)")
    lipschitz_probes: int = config_field(2048, "probe points for the critic's measured Lipschitz constant")
    draw_figures: bool = config_field(True, "draw the figures at the end (python -m figures.wgan_capacity redraws them)")

    def __post_init__(self):
        _check_tuple("n_modes", self.n_modes)
        for k in self.n_modes:
            if k not in theory.GRID_MEANS:
                raise ValueError(f"n_modes must hold named Gaussian grids {sorted(theory.GRID_MEANS)}, got K={k}")
        _check_tuple("generator_depths", self.generator_depths)
        _check_tuple("critic_depths", self.critic_depths)
        if not isinstance(self.critic, AbstractCriticSpec):
            raise ValueError(f"critic must be a critic spec such as BjorckGroupSort(depth=1), got {self.critic!r}")
        if not isinstance(self.latent, AbstractLatent):
            raise ValueError(f"latent must be a latent law such as UniformLatent(), got {self.latent!r}")
        for name in ("generator_width", "latent_dim", "n_train", "n_steps", "eval_every", "n_seeds", "eval_points"):
            check_count(name, getattr(self, name), minimum=1)
        check_count("eval_repeats", self.eval_repeats, minimum=2)
        check_count("lipschitz_probes", self.lipschitz_probes, minimum=1)
        check_count("seed", self.seed, minimum=0)
        self.training()  # validates the optimisation settings (learning rates, betas, ...)
        self.generator(1)

    def training(self) -> WGANTraining:
        return WGANTraining(
            lr_critic=self.lr_critic,
            lr_generator=self.lr_generator,
            adam_b1=self.adam_b1,
            adam_b2=self.adam_b2,
            critic_steps=self.critic_steps,
            batch_size=self.batch_size,
        )

    def generator(self, depth: int) -> MLPGenerator:
        return MLPGenerator(depth=depth, width=self.generator_width, latent_dim=self.latent_dim, latent=self.latent)

    def critic_of_depth(self, depth: int) -> AbstractCriticSpec:
        return dataclasses.replace(self.critic, depth=depth)

    def eval_steps(self) -> list[int]:
        steps = list(range(0, self.n_steps, self.eval_every)) + [self.n_steps]
        return sorted(set(steps))


def _check_tuple(name, values):
    if not isinstance(values, tuple) or not values:
        raise ValueError(f"{name} must be a non-empty tuple, got {values!r}")
    for value in values:
        check_count(name, value, minimum=1)
    if len(set(values)) != len(values):
        raise ValueError(f"{name} must not repeat values, got {values!r}")


PRESETS = {
    # Runs on a 2-core CPU in a few minutes and already shows the trends.
    "quick": Config(),
    # The published sweep (protocols.md): K in {2, 4, 9}, p, q in {2, 3, 5, 7},
    # n = 5000, 20,001 generator steps, evaluation every 1,000, 5 seeds.
    "paper": Config(
        n_modes=(2, 4, 9),
        generator_depths=(2, 3, 5, 7),
        critic_depths=(2, 3, 5, 7),
        n_steps=20_001,
        n_seeds=5,
    ),
    # Seconds: for tests and a first look at the pipeline.
    "smoke": Config(
        n_modes=(4,),
        generator_depths=(2,),
        critic_depths=(2,),
        n_train=512,
        n_steps=20,
        eval_every=10,
        batch_size=64,
        n_seeds=2,
        eval_points=128,
        eval_repeats=2,
        lipschitz_probes=64,
        draw_figures=False,
    ),
}


@dataclasses.dataclass(frozen=True)
class Results:
    """What `run` returns: the tidy table, and where it and the figures were saved."""

    table: pd.DataFrame
    run_dir: Any = None
    figures: tuple = ()


def _replica_grid(config: Config) -> list[tuple[int, int]]:
    """(K, seed) of every replica trained in one cell, in a fixed order."""
    return [(k, s) for k in config.n_modes for s in range(config.n_seeds)]


def _replica_key(config: Config, k: int, seed: int, purpose: int):
    """One key per (K, seed, purpose), independent of (p, q): every cell trains on the
    same n points and is evaluated against the same fresh target draws."""
    key = jax.random.fold_in(jax.random.key(config.seed), k)
    return jax.random.fold_in(jax.random.fold_in(key, seed), purpose)


_DATA, _INIT, _TRAIN, _EVAL, _TARGET_EVAL, _FLOOR = range(6)


def _t_interval(values: np.ndarray) -> tuple[float, float, float, float]:
    """Mean, standard error and the 95% Student-t interval of a few i.i.d. values."""
    mean = float(np.mean(values))
    se = float(np.std(values, ddof=1) / math.sqrt(len(values)))
    half = float(scipy.stats.t.ppf(0.975, len(values) - 1)) * se
    return mean, se, mean - half, mean + half


def _floor_rows(config: Config) -> list[dict]:
    rows = []
    for k in config.n_modes:
        target = theory.gaussian_grid(k)
        values = []
        for repeat in range(config.eval_repeats):
            key_x, key_y = jax.random.split(jax.random.fold_in(_replica_key(config, k, 0, _FLOOR), repeat))
            x = target.sample(key_x, config.eval_points)
            y = target.sample(key_y, config.eval_points)
            values.append(theory.wasserstein(x, y).value)
        mean, se, low, high = _t_interval(np.asarray(values))
        rows.append(
            {"K": k, "p": np.nan, "q": np.nan, "critic": None, "seed": np.nan, "step": np.nan,
             "metric": "w1_floor", "value": mean, "error": se, "ci_low": low, "ci_high": high}
        )
    return rows


def _replica(tree, index: int):
    return jax.tree.map(lambda leaf: leaf[index] if eqx.is_array(leaf) else leaf, tree)


class _CellRun:
    """Training and exact evaluation of every (K, seed) replica for one (p, q)."""

    def __init__(self, config: Config, p: int, q: int, progress: Progress | None):
        self.config, self.p, self.q = config, p, q
        self.progress = progress
        self.generator_spec = config.generator(p)
        self.critic_spec = config.critic_of_depth(q)
        self.training = config.training()
        self.replicas = _replica_grid(config)
        self.targets = {k: theory.gaussian_grid(k) for k in config.n_modes}
        self.rows: list[dict] = []
        self.samples: list[pd.DataFrame] = []  # final generated/target points of seed 0

    def _keys(self, purpose: int):
        return jnp.stack([_replica_key(self.config, k, s, purpose) for k, s in self.replicas])

    def _row(self, replica: int, step: int, metric: str, value: float, **extra) -> None:
        k, seed = self.replicas[replica]
        self.rows.append(
            {"K": k, "p": self.p, "q": self.q, "critic": type(self.critic_spec).__name__, "seed": seed,
             "step": step, "metric": metric, "value": float(value), **extra}
        )

    def __call__(self) -> list[dict]:
        config = self.config
        data = jnp.stack(
            [self.targets[k].sample(_replica_key(config, k, s, _DATA), config.n_train) for k, s in self.replicas]
        ).astype(jnp.float32)
        states = init_replicas(
            self._keys(_INIT),
            generator_spec=self.generator_spec,
            critic_spec=self.critic_spec,
            training=self.training,
            data_dim=2,
        )
        diverged_at = np.full(len(self.replicas), -1)
        train_keys = self._keys(_TRAIN)
        done = 0
        for step in config.eval_steps():
            if step > done:
                chunk = step - done
                states, losses = train_replicas(
                    states,
                    data,
                    jax.vmap(jax.random.fold_in, in_axes=(0, None))(train_keys, step),
                    n_steps=chunk,
                    generator_spec=self.generator_spec,
                    critic_spec=self.critic_spec,
                    training=self.training,
                )
                done = step
                reported = np.asarray(states.diverged_at)
                diverged_at = np.where((diverged_at < 0) & (reported >= 0), reported, diverged_at)
                for r in range(len(self.replicas)):
                    if diverged_at[r] < 0:
                        self._row(r, step, "critic_loss", np.mean(np.asarray(losses.critic[r], np.float64)))
                        self._row(r, step, "generator_loss", np.mean(np.asarray(losses.generator[r], np.float64)))
            diverged_at = self._evaluate(states, step, diverged_at, final=step == config.n_steps)
        for r in range(len(self.replicas)):
            self._row(r, config.n_steps, "diverged_at_step", diverged_at[r])
        return self.rows

    def _evaluate(self, states, step: int, diverged_at: np.ndarray, *, final: bool) -> np.ndarray:
        config = self.config
        m, repeats = config.eval_points, config.eval_repeats
        eval_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(self._keys(_EVAL), step)
        generated = sample_replicas(states.generator, eval_keys, generator_spec=self.generator_spec, n=repeats * m)
        generated = np.asarray(generated, np.float64).reshape(len(self.replicas), repeats, m, 2)
        targets = np.stack(
            [
                np.asarray(
                    self.targets[k].sample(jax.random.fold_in(_replica_key(config, k, s, _TARGET_EVAL), step), repeats * m),
                    np.float64,
                ).reshape(repeats, m, 2)
                for k, s in self.replicas
            ]
        )
        critic_on = np.asarray(
            critic_values(states.critic, jnp.asarray(np.concatenate([generated, targets], axis=2).reshape(len(self.replicas), -1, 2), jnp.float32)),
            np.float64,
        ).reshape(len(self.replicas), repeats, 2 * m)
        shown = []
        for r, (k, seed) in enumerate(self.replicas):
            if diverged_at[r] >= 0:
                continue
            if not np.all(np.isfinite(generated[r])):
                diverged_at[r] = step
                continue
            w1 = np.array([theory.wasserstein(generated[r, i], targets[r, i]).value for i in range(repeats)])
            mean, se, low, high = _t_interval(w1)
            self._row(r, step, "w1", mean, error=se, ci_low=low, ci_high=high)
            shown.append(mean)
            # The critic's estimate of W1 on the same points: mean D(target) - mean D(generated).
            ipm = critic_on[r, :, m:].mean(axis=1) - critic_on[r, :, :m].mean(axis=1)
            mean, se, low, high = _t_interval(ipm)
            self._row(r, step, "critic_ipm", mean, error=se, ci_low=low, ci_high=high)
            modes = theory.mode_statistics(generated[r].reshape(-1, 2), self.targets[k])
            for mode, mass in enumerate(modes.mass_near_mode):
                self._row(r, step, f"mass_near_mode_{mode}", mass)
            self._row(r, step, "mass_near_any_mode", modes.mass_near_any_mode)
            self._row(r, step, "modes_covered", modes.modes_covered)
            if final:
                self._final_checks(states, r, generated[r, 0], targets[r, 0], step)
        if self.progress is not None:
            self.progress.update(
                step=step,
                total_steps=config.n_steps,
                w1_mean=float(np.mean(shown)) if shown else float("nan"),
                diverged=int(np.sum(diverged_at >= 0)),
            )
        return diverged_at

    def _final_checks(self, states, r: int, generated: np.ndarray, target: np.ndarray, step: int) -> None:
        """Lipschitz constant of the trained critic, and samples for the scatter plots."""
        config = self.config
        critic = _replica(states.critic, r)
        n = config.lipschitz_probes
        rng = np.random.default_rng(config.seed + r)
        pool = np.concatenate([generated, target])
        a, b = pool[rng.integers(0, len(pool), n)], pool[rng.integers(0, len(pool), n)]
        t = rng.uniform(size=(n, 1))
        # Probes on the data, on the generated points and between them, where the
        # critic's slope matters for the WGAN objective.
        probes = np.concatenate([pool[rng.integers(0, len(pool), n)], t * a + (1 - t) * b])
        lipschitz = measure_lipschitz(critic, jnp.asarray(probes, jnp.float32))
        self._row(r, step, "lipschitz_max_gradient_norm", lipschitz.lower)
        self._row(r, step, "lipschitz_spectral_bound", lipschitz.upper)
        k, seed = self.replicas[r]
        if seed == 0:
            self.samples.append(_sample_frame(k, self.p, self.q, "generated", generated))
            self.samples.append(_sample_frame(k, self.p, self.q, "target", target))


def _sample_frame(k, p, q, source, points) -> pd.DataFrame:
    return pd.DataFrame({"K": k, "p": p, "q": q, "source": source, "x": points[:, 0], "y": points[:, 1]})


def _cell_id(p: int, q: int) -> str:
    return f"p={p}_q={q}"


def _run_cell(config: Config, p: int, q: int, progress: Progress | None, samples_dir) -> list[dict]:
    cell = _CellRun(config, p, q, progress)
    rows = cell()
    if samples_dir is not None and cell.samples:
        # Written before the cell's rows are saved: a saved cell always has its samples.
        write_text_atomically(samples_dir / f"{_cell_id(p, q)}.csv", pd.concat(cell.samples).to_csv(index=False))
    return rows


def run(config: Config, store: ResultStore | None = None) -> Results:
    """Train and evaluate every (p, q) cell (all K and seeds at once), saving as it goes.

    Args:
        config: the sweep.
        store: where results go (resumable); None keeps everything in memory.

    Returns:
        The tidy table (columns K, p, q, critic, seed, step, metric, value, error,
        ci_low, ci_high) and, with a store, the run directory and figure paths.
    """
    samples_dir = None
    if store is not None:
        samples_dir = store.run_dir / "samples"
        samples_dir.mkdir(parents=True, exist_ok=True)
    cell_ids = [FLOOR_CELL] + [_cell_id(p, q) for p in config.generator_depths for q in config.critic_depths]
    already = sum(store.is_done(c) for c in cell_ids) if store is not None else 0
    progress = Progress(len(cell_ids), already)
    cells = [(FLOOR_CELL, lambda: _floor_rows(config))] + [
        (_cell_id(p, q), lambda p=p, q=q: _run_cell(config, p, q, progress, samples_dir))
        for p in config.generator_depths
        for q in config.critic_depths
    ]
    table = run_cells(store, cells, progress=progress)
    figures: tuple = ()
    if store is not None and config.draw_figures:
        from figures.wgan_capacity import draw  # lazy: studies never import matplotlib themselves

        figures = tuple(draw(store.run_dir))
    return Results(table=table, run_dir=None if store is None else store.run_dir, figures=figures)


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Final W1 by (K, p, q): mean and standard deviation over seeds, with the floor."""
    w1 = table[table["metric"] == "w1"]
    final = w1[w1["step"] == w1["step"].max()]
    out = final.groupby(["K", "p", "q"])["value"].agg(["mean", "std", "count"]).reset_index()
    out[["K", "p", "q"]] = out[["K", "p", "q"]].astype(int)
    floor = table[table["metric"] == "w1_floor"].set_index("K")["value"]
    out["floor"] = out["K"].map(floor)
    return out.rename(columns={"mean": "W1_mean", "std": "W1_sd_over_seeds", "count": "seeds"})


def main(argv: list[str] | None = None) -> None:
    invocation = parse_config(Config, PRESETS, argv, default_preset="quick")
    store = invocation.open_store()
    started = time.perf_counter()
    results = run(invocation.config, store)
    print(f"\nresults: {store.run_dir / 'results.csv'} ({time.perf_counter() - started:.1f}s this session)")
    for path in results.figures:
        print(f"figure: {path}")
    with pd.option_context("display.float_format", "{:.4f}".format, "display.width", 120):
        print("\nfinal W1 (exact, POT) by K, p, q; floor = W1 between two target samples of the same size:")
        print(summary(results.table).to_string(index=False))


if __name__ == "__main__":
    main()
