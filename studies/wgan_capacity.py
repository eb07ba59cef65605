"""WGAN capacity sweep: exact W1 of trained generators over generator depth p and critic depth q.

Reproduces the sweep of Biau, Sangnier & Tanielian, "Some theoretical insights into
Wasserstein GANs" (JMLR 2021, Sec. 5; shared/reference/protocols.md): a ReLU generator
G_p of depth p is trained against a critic D_q of depth q on n points from a Gaussian
grid with K modes, and the trained mu_theta is scored by the exact W1 (POT's network
simplex) between m generated and m fresh target points, read against the sampling
floor W1(target sample, target sample) at the same m. The critic's own estimate of the
distance (its IPM on the same points) is recorded beside it: their gap is the metric
discrepancy of the error decomposition d_Lip1 <= eps_estim + eps_optim + eps_approx.

A cell is one (K, p, q), its seeds trained as one vmapped program; its keys come from
(K, seed) only, so every cell of a target trains on the same n points and is scored
against the same target draws, and removing a target or a depth from the sweep leaves
every other cell's numbers unchanged. A replicate has diverged when its loss or
parameters become non-finite or its W1 exceeds DIVERGENCE_DIAMETERS times the target's
diameter; its later W1 rows are NaN and every summary says "k/n diverged". After the
summary the study prints the published trends (deeper critic, deeper generator) as
paired differences over seeds, since the cells of one seed share their training set.

Departures from the public code, on purpose: every layer has its own weights (the
code's `[Linear, act] * (depth - 1)` shares one hidden layer); depth counts linear
layers (the code's D_q has q + 1); real batches are drawn uniformly from the n points
(the empirical law) instead of epoch-wise cycling; K = 2 uses fixed means (+-2, 0).

Run `python -m studies.wgan_capacity --help` for every option.
"""

from __future__ import annotations

import dataclasses
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

import theory
from models.critics import (
    AbstractCriticSpec,
    BjorckGroupSortSpec,
    GradientPenaltyMLPSpec,
    SpectralNormMLPSpec,
    WeightClippingMLPSpec,
)
from models.generator import AbstractLatent, GaussianLatent, MLPGeneratorSpec, UniformLatent
from models.lipschitz import measure_lipschitz
from models.sharding import mesh_for
from models.training import run_in_chunks
from models.wgan import WGANTraining, critic_values, init_replicas, sample_replicas, train_replicas
from studies import kit
from studies.kit import config_field

CRITICS: dict[str, AbstractCriticSpec] = {
    "bjorck": BjorckGroupSortSpec(depth=1),
    # The protocol's critic with its orthonormalised weights carried between steps: one
    # Björck step on the stored weights after each update, one per forward pass. Same
    # 1-Lipschitz certificate, fewer products per step (see the README's benchmarks).
    "bjorck-carried": BjorckGroupSortSpec(depth=1, iterations=1, project_iterations=1),
    "gradient-penalty": GradientPenaltyMLPSpec(depth=1),
    "spectral-norm": SpectralNormMLPSpec(depth=1),
    "weight-clipping": WeightClippingMLPSpec(depth=1),
}
"""Command-line names of the critic families; each cell sets the depth to its q."""

LATENTS: dict[str, AbstractLatent] = {"uniform": UniformLatent(), "gaussian": GaussianLatent()}

DIVERGENCE_DIAMETERS = 10.0
"""A replicate whose W1 to the target exceeds this many target diameters has diverged:
the untrained generator (outputs near 0) scores about one diameter, a trained one far
less, so 10 diameters means the generator exploded (an lr of 1e6 gives W1 ~ 1e6)."""


@dataclasses.dataclass(frozen=True)
class WGANSettings:
    """The fields every WGAN study shares (critic family, generator, Adam and critic steps of
    Biau et al.'s protocol) and what it builds from them with its own n_modes and batch_size:
    the checks of its targets and optimiser, the training settings, the generator and critic
    specs. The base of a study's frozen Config dataclass."""

    critic: AbstractCriticSpec = config_field(
        BjorckGroupSortSpec(depth=1), "critic family; its depth is replaced by each q", parse=CRITICS
    )
    generator_width: int = config_field(30, "hidden width of the generator", low=1, high=1024)
    latent_dim: int = config_field(1, "latent dimension of the generator", low=1, high=64)
    latent: AbstractLatent = config_field(UniformLatent(), "latent law (uniform: U[-1,1]^k)", parse=LATENTS)
    critic_steps: int = config_field(3, "critic steps per generator step", low=1, high=100)
    lr_critic: float = config_field(0.0025, "critic learning rate (Adam)", low=0.0, open_low=True)
    lr_generator: float = config_field(0.001, "generator learning rate (Adam)", low=0.0, open_low=True)
    adam_b1: float = config_field(0.5, "Adam beta1", low=0.0, high=0.999999)
    adam_b2: float = config_field(0.5, "Adam beta2", low=0.0, high=0.999999)

    def check_wgan_settings(self) -> None:
        """The named-grid targets, the optimiser's own checks and a buildable generator."""
        for k in self.n_modes:
            if k not in theory.GRID_MEANS:
                raise ValueError(f"n_modes must hold named Gaussian grids {sorted(theory.GRID_MEANS)}, got K={k}")
        self.training()
        self.generator(1)

    def training(self) -> WGANTraining:
        return kit.component_from(WGANTraining, self)

    def generator(self, depth: int) -> MLPGeneratorSpec:
        return MLPGeneratorSpec(depth=depth, width=self.generator_width, latent_dim=self.latent_dim, latent=self.latent)

    def critic_of_depth(self, depth: int) -> AbstractCriticSpec:
        return dataclasses.replace(self.critic, depth=depth)


@dataclasses.dataclass(frozen=True)
class Config(WGANSettings):
    """One sweep over targets K, generator depths p and critic depths q."""

    n_modes: tuple[int, ...] = config_field((4, 9), "K: Gaussian-grid targets to sweep (each in 2, 4, 9)", low=2, high=9)
    generator_depths: tuple[int, ...] = config_field((2, 5), "p: generator depths (number of linear layers) to sweep", low=1, high=32)
    critic_depths: tuple[int, ...] = config_field((2, 5), "q: critic depths (number of linear layers) to sweep", low=1, high=32)
    n_train: int = config_field(5000, "n: size of the finite training set, drawn once per (K, seed)", low=1, high=10**6)
    n_steps: int = config_field(4000, "generator steps", low=1, high=10**7)
    eval_every: int = config_field(1000, "evaluate every this many generator steps (and at 0 and the end)", low=1, high=10**7)
    batch_size: int = config_field(256, "batch size for real and fake points", low=1, high=65536)
    n_seeds: int = config_field(3, "independent replicates per (K, p, q), trained in one vmapped program", low=1, high=1024)
    seed: int = config_field(0, "root PRNG seed")
    eval_points: int = config_field(1024, "m: generated and target points per W1 evaluation (POT's cost matrix is m x m)", low=2, high=20_000)
    eval_repeats: int = config_field(5, "independent W1 evaluations averaged (mean and 95% t-interval)", low=2, high=1000)
    lipschitz_probes: int = config_field(2048, "probe points for the critic's measured Lipschitz constant", low=1, high=10**6)
    draw_figures: bool = config_field(True, "draw the figures at the end (python -m figures.wgan_capacity redraws them)")

    def __post_init__(self):
        kit.check_fields(self)
        self.check_wgan_settings()
        if self.eval_every > self.n_steps:
            raise ValueError(f"eval_every must be <= n_steps={self.n_steps}, got {self.eval_every}")

    def eval_steps(self) -> list[int]:
        return sorted(set(range(0, self.n_steps, self.eval_every)) | {self.n_steps})


PAPER_GRID = {"n_modes": (2, 4, 9), "generator_depths": (2, 3, 5, 7), "critic_depths": (2, 3, 5, 7),
              "n_steps": 20_001, "n_seeds": 5}
"""The published sweep of protocols.md (Biau et al. 2021): targets, depths, generator steps, seeds."""

PRESETS = {
    # Runs on a 2-core CPU in a few minutes and already shows the trends.
    "quick": Config(),
    # The published sweep: PAPER_GRID at n = 5000, evaluation every 1,000.
    "paper": Config(**PAPER_GRID),
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


def target_diameter(target: theory.MixtureOfGaussians) -> float:
    """max distance between component means plus 6 standard deviations of the widest one."""
    means = np.asarray(target.means, np.float64)
    spread = max(float(np.linalg.norm(a - b)) for a in means for b in means)
    widest = max(float(np.sqrt(np.linalg.eigvalsh(np.asarray(c, np.float64)).max())) for c in target.covs)
    return spread + 6 * widest


def _floor_rows(config: Config, keys: kit.Keys, k: int) -> list[dict]:
    """W1 between two independent m-samples of the target, over eval_repeats i.i.d. pairs."""
    target = theory.gaussian_grid(k)
    values = []
    for repeat in range(config.eval_repeats):
        x = target.sample(keys("floor-x", K=k, repeat=repeat), config.eval_points)
        y = target.sample(keys("floor-y", K=k, repeat=repeat), config.eval_points)
        values.append(theory.wasserstein(x, y).value)
    interval = kit.over_replicates(values)
    return [{"K": k, "metric": "w1_floor", **interval.row()}]


def _replica(tree, index: int):
    return jax.tree.map(lambda leaf: leaf[index] if eqx.is_array(leaf) else leaf, tree)


class _CellRun:
    """Training and exact evaluation of every seed of one (K, p, q)."""

    def __init__(self, config: Config, keys: kit.Keys, k: int, p: int, q: int, progress: kit.Progress, devices: int):
        self.config, self.keys, self.k, self.p, self.q = config, keys, k, p, q
        self.progress = progress
        self.devices = devices
        self.generator_spec = config.generator(p)
        self.critic_spec = config.critic_of_depth(q)
        self.training = config.training()
        self.seeds = list(range(config.n_seeds))
        self.target = theory.gaussian_grid(k)
        self.limit = DIVERGENCE_DIAMETERS * target_diameter(self.target)
        self.rows: list[dict] = []

    def _keys(self, purpose: str):
        return self.keys.stack(purpose, [{"K": self.k, "seed": s} for s in self.seeds])

    def _row(self, seed: int, step: int, metric: str, value: float, **extra) -> None:
        self.rows.append({"K": self.k, "p": self.p, "q": self.q, "critic": type(self.critic_spec).__name__,
                          "seed": seed, "step": step, "metric": metric, "value": float(value), **extra})

    def __call__(self) -> list[dict]:
        config = self.config
        data = jnp.stack(
            [self.target.sample(self.keys("data", K=self.k, seed=s), config.n_train) for s in self.seeds]
        ).astype(jnp.float32)
        # --devices 1 keeps the plain single-device program; more shards the seeds.
        mesh = mesh_for(self.devices)
        states = init_replicas(self._keys("init"), generator_spec=self.generator_spec,
                               critic_spec=self.critic_spec, training=self.training, data_dim=2, mesh=mesh)
        diverged_at = np.full(len(self.seeds), -1)
        train_keys = self._keys("train")

        first_chunk_end = config.eval_steps()[1]

        def phase(step):
            return "train (first chunk, with compile)" if step == first_chunk_end else "train"

        def advance(states, start, stop):
            with self.progress.phase(phase(stop)):
                # max_steps = eval_every: one compiled program serves every chunk, the
                # shorter last one included. Dispatched without waiting: the exact
                # evaluation of the previous boundary runs on the host meanwhile.
                return train_replicas(
                    states, data, jax.vmap(jax.random.fold_in, in_axes=(0, None))(train_keys, stop),
                    n_steps=stop - start, generator_spec=self.generator_spec, critic_spec=self.critic_spec,
                    training=self.training, max_steps=config.eval_every, mesh=mesh,
                )

        def on_boundary(states, step, losses):
            nonlocal diverged_at
            if losses is not None:
                with self.progress.phase(phase(step)):
                    reported = np.asarray(states.diverged_at)
                diverged_at = np.where((diverged_at < 0) & (reported >= 0), reported, diverged_at)
                for r, seed in enumerate(self.seeds):
                    finite = diverged_at[r] < 0
                    self._row(seed, step, "critic_loss", np.mean(np.asarray(losses.critic[r], np.float64)) if finite else math.nan)
                    self._row(seed, step, "generator_loss", np.mean(np.asarray(losses.generator[r], np.float64)) if finite else math.nan)
            with self.progress.phase("evaluate (device: points, critic)"):
                points = self._evaluation_points(states, step)

            def score():  # host only (POT, NumPy), overlapping the next chunk's training
                nonlocal diverged_at
                with self.progress.phase("evaluate (host: exact W1)"):
                    diverged_at = self._evaluate(states, step, points, diverged_at, final=step == config.n_steps)

            return score

        run_in_chunks(advance, states, config.eval_steps(), on_boundary=on_boundary)
        for r, seed in enumerate(self.seeds):
            self._row(seed, config.n_steps, "diverged_at_step", diverged_at[r])
        return self.rows

    def _evaluation_points(self, states, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Generated and target points of every seed, and the critic on both, copied to the host."""
        config = self.config
        m, repeats, n_replicas = config.eval_points, config.eval_repeats, len(self.seeds)
        eval_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(self._keys("eval"), step)
        generated = sample_replicas(states.generator, eval_keys, generator_spec=self.generator_spec, n=repeats * m)
        generated = np.asarray(generated, np.float64).reshape(n_replicas, repeats, m, 2)
        targets = np.stack([
            np.asarray(self.target.sample(jax.random.fold_in(self.keys("target-eval", K=self.k, seed=s), step), repeats * m),
                       np.float64).reshape(repeats, m, 2)
            for s in self.seeds
        ])
        both = np.concatenate([generated, targets], axis=2).reshape(n_replicas, -1, 2)
        critic_on = np.asarray(critic_values(states.critic, jnp.asarray(both, jnp.float32)), np.float64)
        return generated, targets, critic_on.reshape(n_replicas, repeats, 2 * m)

    def _evaluate(self, states, step: int, points, diverged_at: np.ndarray, *, final: bool) -> np.ndarray:
        config = self.config
        m = config.eval_points
        generated, targets, critic_on = points
        shown = []
        for r, seed in enumerate(self.seeds):
            w1 = None
            if diverged_at[r] < 0 and np.all(np.isfinite(generated[r])) and np.all(np.isfinite(critic_on[r])):
                w1 = np.array([theory.wasserstein(generated[r, i], targets[r, i]).value for i in range(config.eval_repeats)])
                if not np.all(w1 <= self.limit):
                    w1 = None
            if w1 is None:
                if diverged_at[r] < 0:
                    diverged_at[r] = step
                for metric in ("w1", "critic_ipm", "mass_near_any_mode", "modes_covered"):
                    self._row(seed, step, metric, math.nan)
                continue
            interval = kit.over_replicates(w1)
            self._row(seed, step, "w1", interval.value, error=interval.error, ci_low=interval.low, ci_high=interval.high)
            shown.append(interval.value)
            # The critic's estimate of W1 on the same points: mean D(target) - mean D(generated).
            ipm = kit.over_replicates(critic_on[r, :, m:].mean(axis=1) - critic_on[r, :, :m].mean(axis=1))
            self._row(seed, step, "critic_ipm", ipm.value, error=ipm.error, ci_low=ipm.low, ci_high=ipm.high)
            modes = theory.mode_statistics(generated[r].reshape(-1, 2), self.target)
            for mode, mass in enumerate(modes.mass_near_mode):
                self._row(seed, step, f"mass_near_mode_{mode}", mass)
            self._row(seed, step, "mass_near_any_mode", modes.mass_near_any_mode)
            self._row(seed, step, "modes_covered", modes.modes_covered)
            if final:
                self._final_checks(states, r, seed, generated[r, 0], targets[r, 0], step)
        self.progress.update(step=step, total_steps=config.n_steps,
                             w1_mean=float(np.mean(shown)) if shown else float("nan"),
                             diverged=int(np.sum(diverged_at >= 0)))
        return diverged_at

    def _final_checks(self, states, r: int, seed: int, generated: np.ndarray, target: np.ndarray, step: int) -> None:
        """Lipschitz constant of the trained critic, and (seed 0) the points of the scatter plots."""
        config = self.config
        critic = _replica(states.critic, r)
        n = config.lipschitz_probes
        key_a, key_b, key_c, key_t = jax.random.split(self.keys("lipschitz-probes", K=self.k, seed=seed), 4)
        pool = np.concatenate([generated, target])
        pick = lambda key: pool[np.asarray(jax.random.randint(key, (n,), 0, len(pool)))]
        a, b = pick(key_a), pick(key_b)
        t = np.asarray(jax.random.uniform(key_t, (n, 1)), np.float64)
        # Probes on the data, on the generated points and between them, where the
        # critic's slope matters for the WGAN objective.
        probes = np.concatenate([pick(key_c), t * a + (1 - t) * b])
        lipschitz = measure_lipschitz(critic, jnp.asarray(probes, jnp.float32))
        self._row(seed, step, "lipschitz_max_gradient_norm", lipschitz.lower)
        self._row(seed, step, "lipschitz_spectral_bound", lipschitz.upper)
        if seed == 0:
            for source, points in (("generated", generated), ("target", target)):
                for x, y in points:
                    self.rows.append({"K": self.k, "p": self.p, "q": self.q, "seed": seed, "step": step,
                                      "metric": "sample", "source": source, "x": float(x), "y": float(y)})


def cells(config: Config, *, devices: int = 1) -> list[kit.Cell]:
    """The floor of each target, then every (K, p, q) with all its seeds."""
    keys = kit.Keys(config.seed)
    floors = [kit.Cell(f"floor_K={k}", lambda k=k: _floor_rows(config, keys, k), coords={"K": k}, cost=0.0)
              for k in config.n_modes]
    trainings = [
        kit.Cell(
            f"K={k}_p={p}_q={q}",
            lambda progress, k=k, p=p, q=q: _CellRun(config, keys, k, p, q, progress, devices)(),
            needs=("progress",),
            coords={"K": k, "p": p, "q": q},
            # Relative run time, for the order cells start in with --workers > 1: the critic's
            # q layers run critic_steps times per generator step, the generator's p once.
            cost=p + config.critic_steps * q,
        )
        for k in config.n_modes
        for p in config.generator_depths
        for q in config.critic_depths
    ]
    return floors + trainings


def run(config: Config, store: kit.ResultStore | None = None, *, runtime: kit.Runtime | None = None) -> kit.Results:
    """Train and evaluate every cell, saving each as it finishes (resumable).

    Returns:
        The tidy table (columns K, p, q, critic, seed, step, metric, value, error,
        ci_low, ci_high; sample rows carry source, x, y) and, with a store, the run
        directory and figure paths.
    """
    runtime = runtime or kit.Runtime()
    table = kit.run_cells(store, cells(config, devices=runtime.devices), runtime=runtime)
    return kit.finish(store, table, figures="figures.wgan_capacity" if config.draw_figures else None, summarise=summary)


def _per_seed(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (K, p, q, seed): its final W1 and its mean over the last quarter of
    evaluations (both NaN for a seed that diverged: its later rows are NaN)."""
    rows = []
    for (k, p, q, seed), group in table[table["metric"] == "w1"].groupby(["K", "p", "q", "seed"]):
        # The last row in step order, not pandas' last(), which skips NaN and would
        # report a diverged seed's last finite value as its final one.
        values = group.sort_values("step")["value"].to_numpy()
        rows.append({"K": int(k), "p": int(p), "q": int(q), "seed": int(seed), "final": float(values[-1]),
                     "late": kit.late_mean(values)})
    return pd.DataFrame(rows, columns=["K", "p", "q", "seed", "final", "late"])


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """By (K, p, q): final W1 and the mean W1 over the last quarter of evaluations,
    each an interval over seeds with diverged seeds counted, and the sampling floor."""
    rows = []
    for (k, p, q), group in _per_seed(table).groupby(["K", "p", "q"]):
        final = kit.over_replicates(group["final"].to_numpy())
        late = kit.over_replicates(group["late"].to_numpy())
        rows.append({"K": int(k), "p": int(p), "q": int(q), "final_w1": str(final), "late_mean_w1": str(late),
                     "diverged": f"{final.n_diverged}/{final.n + final.n_diverged}",
                     "final_value": final.value, "final_error": final.error})
    out = pd.DataFrame(rows)
    floors = table[table["metric"] == "w1_floor"]
    if len(out) and len(floors):
        floor_text = {int(r.K): f"{r.value:.3f} ± {r.error:.3f}" for r in floors.itertuples()}
        out["floor"] = out["K"].map(floor_text)
    return out


TREND_COLUMNS = ["contrast", "K", "at", "final_w1_difference", "late_mean_difference", "final_value",
                 "final_low", "final_high"]


def trends(table: pd.DataFrame) -> pd.DataFrame:
    """The published trends as paired differences over seeds, deepest minus shallowest.

    ``deeper critic``: W1(K, p, q_max) - W1(K, p, q_min) at each (K, p); ``deeper
    generator``: W1(K, p_max, q) - W1(K, p_min, q) at each (K, q); for the final W1 and
    for the late mean. Negative: the deeper network ends nearer the target. The pairs
    share their seed, hence (keys of (K, seed)) their training set and target draws; the
    interval is the paired t-interval of the per-seed differences, and a seed diverged
    on either side is counted, not dropped. Empty when no depth takes two values.
    """
    seeds = _per_seed(table)
    rows = []
    for name, varied, fixed in (("deeper critic", "q", "p"), ("deeper generator", "p", "q")):
        levels = sorted(seeds[varied].unique())
        if len(levels) < 2:
            continue
        deep, shallow = levels[-1], levels[0]
        final, late = (
            kit.summarise_paired(seeds, by=["K", fixed], contrast=varied, a=deep, b=shallow, value=column)
            for column in ("final", "late")
        )
        for f, l in zip(final.itertuples(), late.itertuples()):
            rows.append({"contrast": f"{name}: {varied}={deep} minus {varied}={shallow}", "K": int(f.K),
                         "at": f"{fixed}={int(getattr(f, fixed))}", "final_w1_difference": f.text,
                         "late_mean_difference": l.text, "final_value": f.value, "final_low": f.ci_low,
                         "final_high": f.ci_high})
    return pd.DataFrame(rows, columns=TREND_COLUMNS)


COMPARISON_COLUMNS = ["K", "p", "q", "final_w1_difference", "late_mean_difference", "final_value", "final_low",
                      "final_high"]


def compare_runs(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    """Two runs of the same cells (e.g. two critic variants) as paired differences over seeds.

    By (K, p, q) present in both tables: W1(after) - W1(before), for the final W1 and
    for the late mean, as the paired t-interval of the per-seed differences. A seed has
    the same keys in both runs (they come from (K, seed)), hence the same training set,
    initial networks and target draws, so the pairing removes that variation. A seed
    that diverged in either run, or is missing from one, is counted, not dropped.
    Negative: ``after`` ends nearer the target.

    Example, on two saved runs: ``compare_runs(kit.load_run(a).table, kit.load_run(b).table)``.
    """
    runs = {"before": _per_seed(before), "after": _per_seed(after)}
    shared = runs["before"][["K", "p", "q"]].merge(runs["after"][["K", "p", "q"]]).drop_duplicates()
    seeds = pd.concat([frame.assign(run=name) for name, frame in runs.items()]).merge(shared)
    if seeds.empty:
        return pd.DataFrame(columns=COMPARISON_COLUMNS)
    final, late = (kit.summarise_paired(seeds, by=["K", "p", "q"], contrast="run", a="after", b="before", value=column)
                   for column in ("final", "late"))
    rows = [{"K": int(f.K), "p": int(f.p), "q": int(f.q), "final_w1_difference": f.text,
             "late_mean_difference": l.text, "final_value": f.value, "final_low": f.ci_low, "final_high": f.ci_high}
            for f, l in zip(final.itertuples(), late.itertuples())]
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def main(argv: list[str] | None = None) -> None:
    results = kit.main(run, Config, PRESETS, argv)
    kit.print_tables([
        ("Exact W1 (POT), mean ± standard error [95% t-interval] over seeds; late = mean over the last "
         "quarter of evaluations; floor = W1 between two target samples of the same size",
         summary(results.table).drop(columns=["final_value", "final_error"])),
        ("Trends: paired differences of W1 over seeds (same training set and target draws), deepest minus "
         "shallowest; negative = the deeper network ends nearer the target",
         trends(results.table).drop(columns=["final_value", "final_low", "final_high"])),
    ], width=160)


if __name__ == "__main__":
    main()
