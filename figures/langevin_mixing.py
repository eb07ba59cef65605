"""Figures of the Langevin mixing study, drawn from its saved results only.

    python -m figures.langevin_mixing results/langevin_mixing/quick

Reads ``results.csv`` of a run directory and writes, under ``<run>/figures/``:

- ``langevin_three_panels``: Song & Ermon (2019), Figure 3, as scatter plots: exact
  draws, plain Langevin, annealed Langevin (exact scores), with each panel's weight of
  the mode (5, 5) and its interval.
- ``langevin_mode_weight_vs_steps``: that weight as the chains run, pooled over seeds,
  with Clopper-Pearson bands (plain, annealed, learned-score annealed, exact draws), and
  W1 to exact draws against the W1 sampling floor.
- ``langevin_sweeps``: the final weight against step size, L, T, plain chain length,
  chain count and initial law.
- ``langevin_trajectories``: three chains from one start point on the target's density
  (Luo 2022, Fig. 6), plain and annealed.
- ``langevin_fisher``: the learned score's Fisher divergence at every noise level next to
  E ||grad log p_sigma||^2, and the denoising score-matching loss during training.
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys

import numpy as np
import pandas as pd

from figures.style import apply_style, save_figure

import matplotlib.pyplot as plt  # noqa: E402  (figures.style selects the Agg backend first)

__all__ = ["draw", "main"]

_SAMPLERS = {
    "exact": ("exact draws", "0.3"),
    "plain": ("Langevin", "C3"),
    "annealed": ("annealed Langevin", "C0"),
    "learned": ("annealed, learned score", "C2"),
}
_HEAVY_MODE = 0  # mode (5, 5), true weight 0.8
_TRUE_WEIGHT = 0.8
_LIMITS = (-8.0, 8.0)


def _pooled(rows: pd.DataFrame, confidence: float = 0.95):
    """Pool the mode-(5,5) counts of several seeds: chains are independent, so the pooled
    count is binomial; returns (value, low, high)."""
    from theory.langevin import binomial_proportion

    p = binomial_proportion(int(rows["count"].sum()), int(rows["n"].sum()), confidence=confidence)
    return p.value, p.low, p.high


def _heavy(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[(rows["metric"] == "mode_weight") & (rows["mode"] == _HEAVY_MODE)]


def _points(table: pd.DataFrame, sampler: str) -> np.ndarray | None:
    rows = table[(table["sweep"] == "samples") & (table["sampler"] == sampler)]
    if rows.empty:
        return None
    wide = rows.pivot_table(index="chain", columns="coordinate", values="value")
    return wide.to_numpy()


def _three_panels(table: pd.DataFrame, out: pathlib.Path, confidence: float) -> list[pathlib.Path]:
    samplers = [s for s in ("exact", "plain", "annealed") if _points(table, s) is not None]
    fig, axes = plt.subplots(1, len(samplers), figsize=(3.3 * len(samplers), 3.5), sharex=True, sharey=True)
    axes = np.atleast_1d(axes)
    baseline = table[table["sweep"] == "baseline"]
    for ax, sampler in zip(axes, samplers):
        points = _points(table, sampler)
        label, color = _SAMPLERS[sampler]
        ax.scatter(points[:, 0], points[:, 1], s=1.0, color=color, alpha=0.6, linewidths=0, rasterized=True)
        rows = _heavy(baseline[baseline["sampler"] == sampler])
        last = rows[rows["step"] == rows["step"].max()]
        value, low, high = _pooled(last, confidence)
        ax.set_title(f"{label}\nweight of (5,5): {value:.3f} [{low:.3f}, {high:.3f}]", fontsize=9)
        ax.set_xlim(*_LIMITS)
        ax.set_ylim(*_LIMITS)
        ax.set_aspect("equal")
    fig.suptitle(f"0.8 N((5,5), I) + 0.2 N((-5,-5), I): exact scores; intervals {100 * confidence:g}%, "
                 f"pooled over {last['seed'].nunique()} seeds", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out / "langevin_three_panels")


def _weight_vs_steps(table: pd.DataFrame, out: pathlib.Path, confidence: float) -> list[pathlib.Path]:
    baseline = table[table["sweep"] == "baseline"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for sampler, (label, color) in _SAMPLERS.items():
        rows = _heavy(baseline[baseline["sampler"] == sampler])
        if rows.empty:
            continue
        if sampler == "exact":
            value, low, high = _pooled(rows, confidence)
            left.axhspan(low, high, color=color, alpha=0.25, label=f"{label} ({100 * confidence:g}% CI)")
            continue
        pooled = np.array([_pooled(group, confidence) for _, group in rows.groupby("step")])
        steps = np.array(sorted(rows["step"].unique()))
        left.plot(steps, pooled[:, 0], color=color, label=label)
        left.fill_between(steps, pooled[:, 1], pooled[:, 2], color=color, alpha=0.25, linewidth=0)
    left.axhline(_TRUE_WEIGHT, color="k", linestyle="--", linewidth=0.8, label="truth 0.8")
    annealed = baseline[(baseline["sampler"] == "annealed") & (baseline["metric"] == "mode_weight")]
    _level_ticks(left, annealed)
    left.set_xlabel("Langevin steps (annealed: across levels)")
    left.set_ylabel("weight of mode (5,5)")
    left.legend(fontsize=7, loc="lower right")

    w1 = baseline[baseline["metric"] == "w1"]
    for sampler, (label, color) in _SAMPLERS.items():
        rows = w1[w1["sampler"] == sampler]
        if rows.empty or sampler == "exact":
            continue
        stats = rows.groupby("step")["value"].agg(["mean", "std", "count"])
        error = stats["std"].fillna(0.0) / np.sqrt(stats["count"])
        right.errorbar(stats.index, stats["mean"], yerr=1.96 * error, color=color, marker="o", markersize=3,
                       capsize=2, label=label)
    floor = baseline[baseline["metric"] == "w1_floor"]
    if not floor.empty:
        value, error = floor["value"].iloc[0], floor["error"].iloc[0]
        right.axhspan(value - 1.96 * error, value + 1.96 * error, color="0.3", alpha=0.25,
                      label=f"sampling floor (n={int(floor['n'].iloc[0])})")
    exact = w1[w1["sampler"] == "exact"]
    if not exact.empty:
        right.axhline(exact["value"].mean(), color="0.3", linestyle=":", label="exact draws")
    right.set_yscale("log")
    right.set_xlabel("Langevin steps")
    right.set_ylabel("W1 to exact target draws (mean over seeds)")
    right.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, out / "langevin_mode_weight_vs_steps")


def _level_ticks(ax, annealed: pd.DataFrame) -> None:
    """Thin vertical lines where annealed Langevin moves to the next noise level."""
    ends = annealed.dropna(subset=["sigma"]).groupby("sigma")["step"].max().sort_values()
    for step in ends.to_numpy()[:-1]:
        ax.axvline(step, color="C0", alpha=0.12, linewidth=0.8)


_SWEEPS = (
    ("langevin_step_size", "langevin_step_size", "plain step size alpha", True),
    ("annealed_step_size", "annealed_step_size", "annealed eps", True),
    ("n_levels", "n_levels", "noise levels L", True),
    ("steps_per_level", "steps_per_level", "steps per level T", True),
    ("langevin_steps", "langevin_steps", "plain chain length K", True),
    ("n_chains", "n_chains", "chains", True),
    ("initial_law", "initial_law", "initial law", False),
)


def _sweeps(table: pd.DataFrame, out: pathlib.Path, confidence: float) -> list[pathlib.Path]:
    present = [s for s in _SWEEPS if (table["sweep"] == s[0]).any()]
    if not present:
        return []
    columns = 4
    rows_n = math.ceil(len(present) / columns)
    fig, axes = plt.subplots(rows_n, columns, figsize=(3.2 * columns, 2.9 * rows_n), squeeze=False)
    for ax, (sweep, coordinate, label, numeric) in zip(axes.flat, present):
        rows = table[table["sweep"] == sweep]
        rows = _heavy(rows)
        last = rows[rows["step"] == rows.groupby(["sampler", coordinate])["step"].transform("max")]
        samplers = [s for s in ("plain", "annealed") if (last["sampler"] == s).any()]
        for offset, sampler in enumerate(samplers):
            _, color = _SAMPLERS[sampler]
            groups = list(last[last["sampler"] == sampler].groupby(coordinate, sort=numeric))
            values = [key for key, _ in groups]
            pooled = np.array([_pooled(group, confidence) for _, group in groups])
            x = np.asarray(values, float) if numeric else np.arange(len(values)) + 0.12 * (offset - 0.5)
            ax.errorbar(x, pooled[:, 0], yerr=[pooled[:, 0] - pooled[:, 1], pooled[:, 2] - pooled[:, 0]],
                        color=color, marker="o", markersize=3, capsize=2, label=_SAMPLERS[sampler][0])
            if not numeric:
                ax.set_xticks(np.arange(len(values)))
                ax.set_xticklabels(values, rotation=30, ha="right", fontsize=7)
        if numeric and last[coordinate].astype(float).max() / max(last[coordinate].astype(float).min(), 1e-12) > 20:
            ax.set_xscale("log")
        ax.axhline(_TRUE_WEIGHT, color="k", linestyle="--", linewidth=0.8)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel(label)
        ax.set_ylabel("weight of (5,5)")
    handles = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    unused = list(axes.flat)[len(present):]
    for ax in unused:
        ax.axis("off")
    fig.suptitle(f"final weight of (5,5), pooled over seeds, {100 * confidence:g}% intervals; dashed: truth 0.8",
                 fontsize=9)
    if unused:
        unused[0].legend(list(handles.values()), list(handles.keys()), loc="center", fontsize=9)
        fig.tight_layout()
    else:
        fig.legend(list(handles.values()), list(handles.keys()), loc="lower center", ncol=len(handles),
                   fontsize=8, frameon=False)
        fig.tight_layout(rect=(0, 0.06, 1, 1))
    return save_figure(fig, out / "langevin_sweeps")


def _target_density(grid: np.ndarray) -> np.ndarray:
    # The target's density, in closed form (0.8 N((5,5), I) + 0.2 N((-5,-5), I)).
    def gaussian(mean):
        return np.exp(-0.5 * np.sum((grid - np.asarray(mean)) ** 2, axis=-1)) / (2 * np.pi)

    return 0.8 * gaussian((5.0, 5.0)) + 0.2 * gaussian((-5.0, -5.0))


def _trajectories(table: pd.DataFrame, out: pathlib.Path) -> list[pathlib.Path]:
    rows = table[(table["sweep"] == "trajectories") & (table["metric"] == "position")]
    if rows.empty:
        return []
    samplers = [s for s in ("plain", "annealed") if (rows["sampler"] == s).any()]
    fig, axes = plt.subplots(1, len(samplers), figsize=(4.2 * len(samplers), 4.0), squeeze=False)
    axis = np.linspace(-10, 10, 201)
    grid = np.stack(np.meshgrid(axis, axis), axis=-1)
    density = _target_density(grid)
    # Contours at the densities of the light mode at radii 0.5, 1, ..., 2.5 from its mean,
    # so both modes get rings (evenly spaced density levels would all hug the heavy one).
    radii = np.arange(0.5, 3.0, 0.5)
    levels = np.sort(0.2 / (2 * np.pi) * np.exp(-0.5 * radii**2))
    for ax, sampler in zip(axes.flat, samplers):
        ax.contour(axis, axis, density, levels=levels, colors="0.55", linewidths=0.6)
        paths = rows[rows["sampler"] == sampler]
        for chain, color in zip(sorted(paths["chain"].unique()), ("C1", "C4", "C5")):
            chain_rows = paths[paths["chain"] == chain]
            wide = chain_rows.pivot_table(index="step", columns="coordinate", values="value")
            xy = wide.to_numpy()
            if sampler == "annealed":
                # Steps at the large levels jump by sqrt(alpha_1) ~ 6: draw one point per
                # level (its last state) joined by lines, and the last level in full.
                sigma = chain_rows.groupby("step")["sigma"].first().reindex(wide.index).to_numpy()
                ends = [0] + [i for i in range(1, len(sigma)) if i == len(sigma) - 1 or sigma[i + 1] != sigma[i]]
                ax.plot(xy[ends, 0], xy[ends, 1], color=color, linewidth=0.9, marker=".", markersize=5)
                last_level = np.flatnonzero(sigma == sigma[-1])
                ax.plot(xy[last_level, 0], xy[last_level, 1], color=color, linewidth=0.4, alpha=0.7)
            else:
                ax.plot(xy[:, 0], xy[:, 1], color=color, linewidth=0.6, alpha=0.85)
            ax.plot(xy[-1, 0], xy[-1, 1], marker="o", color=color, markersize=4)
            ax.plot(xy[0, 0], xy[0, 1], marker="*", color="k", markersize=9)
        weights = table[(table["sweep"] == "trajectories") & (table["sampler"] == sampler)]
        heavy = _heavy(weights)
        note = ""
        if not heavy.empty:
            row = heavy.iloc[0]
            note = f"\n{int(row['count'])}/{int(row['n'])} chains from * end at (5,5)"
        what = "one point per level, last level in full" if sampler == "annealed" else "every step"
        ax.set_title(f"{_SAMPLERS[sampler][0]}: three chains ({what}){note}", fontsize=9)
        ax.set_xlim(-10, 10)
        ax.set_ylim(-10, 10)
        ax.set_aspect("equal")
    fig.tight_layout()
    return save_figure(fig, out / "langevin_trajectories")


def _fisher(table: pd.DataFrame, out: pathlib.Path) -> list[pathlib.Path]:
    learned = table[table["sweep"] == "learned"]
    if learned.empty:
        return []
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.5, 3.5))
    fisher = learned[learned["metric"] == "fisher_divergence"]
    scale = learned[learned["metric"] == "expected_squared_score"].groupby("sigma")["value"].mean()
    for seed, rows in fisher.groupby("seed"):
        left.errorbar(rows["sigma"], rows["value"], yerr=1.96 * rows["error"], marker="o", markersize=3,
                      capsize=2, linewidth=0.8, label=f"Fisher divergence, seed {seed}")
    left.plot(scale.index, scale.to_numpy(), color="k", linestyle="--", linewidth=0.8,
              label="E ||grad log p_sigma||^2 (zero-score baseline)")
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("noise level sigma")
    left.set_ylabel("E_{p_sigma} ||s_theta - grad log p_sigma||^2")
    left.legend(fontsize=7)
    losses = learned[learned["metric"] == "dsm_loss"]
    for seed, rows in losses.groupby("seed"):
        right.plot(rows["step"], rows["value"], linewidth=0.9, label=f"seed {seed}")
    right.set_xlabel("training step")
    right.set_ylabel("sigma^2-weighted DSM loss")
    right.set_yscale("log")
    right.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, out / "langevin_fisher")


def draw(results_dir: str | pathlib.Path, out_dir: str | pathlib.Path | None = None) -> list[pathlib.Path]:
    """Draw every figure of a run from its ``results.csv``.

    Args:
        results_dir: the run directory (holding ``results.csv`` and ``config.json``).
        out_dir: where to write; default ``<results_dir>/figures``.

    Returns:
        The paths written (PDF and PNG of each figure whose data the run holds).
    """
    results_dir = pathlib.Path(results_dir)
    csv = results_dir / "results.csv"
    if not csv.exists():
        raise FileNotFoundError(f"no results.csv in {results_dir}; run the study first")
    table = pd.read_csv(csv)
    confidence = 0.95
    config_path = results_dir / "config.json"
    if config_path.exists():
        import json

        confidence = float(json.loads(config_path.read_text()).get("confidence", 0.95))
    out = pathlib.Path(out_dir) if out_dir is not None else results_dir / "figures"
    apply_style()
    paths: list[pathlib.Path] = []
    paths += _three_panels(table, out, confidence)
    paths += _weight_vs_steps(table, out, confidence)
    paths += _sweeps(table, out, confidence)
    paths += _trajectories(table, out)
    paths += _fisher(table, out)
    return paths


def main(argv: list[str] | None = None) -> None:
    """``python -m figures.langevin_mixing RESULTS_DIR [--out DIR]``."""
    parser = argparse.ArgumentParser(prog="python -m figures.langevin_mixing", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results_dir", type=pathlib.Path, help="a run directory of studies.langevin_mixing")
    parser.add_argument("--out", type=pathlib.Path, default=None, help="output directory (default: RUN/figures)")
    arguments = parser.parse_args(argv)
    for path in draw(arguments.results_dir, arguments.out):
        print(path, file=sys.stderr)


if __name__ == "__main__":
    main()
