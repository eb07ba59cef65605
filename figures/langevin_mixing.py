"""Figures of the Langevin mixing study, drawn from its saved cells only.

    python -m figures.langevin_mixing results/langevin_mixing/quick

Reads the verified ``cells/*.csv`` and ``config.json`` of a run (kit.load_run; a run
killed before writing ``results.csv`` can still be drawn) and writes, under
``<run>/figures/``, each as PDF and PNG:

- ``langevin_three_panels``: Song & Ermon (2019), Figure 3, as scatter plots: exact
  draws, plain Langevin, annealed Langevin (exact scores), and the learned-score
  annealed sampler when present, each with its weight of the mode (5, 5) and interval.
- ``langevin_mode_weight_vs_steps``: that weight as the chains run (exact-score
  samplers: Clopper-Pearson pooled over every chain of every seed; learned score: mean
  and t-interval over networks), and W1 to exact draws against the sampling floor.
- ``langevin_sweeps``: the final weight against step size, L, T, plain chain length,
  chain count and initial law (exact scores: pooled Clopper-Pearson).
- ``langevin_trajectories``: three chains from one start point on the target's density
  (Luo 2022, Fig. 6), plain and annealed.
- ``langevin_fisher``: the learned score's Fisher divergence at every noise level next to
  E ||grad log p_sigma||^2, and the denoising score-matching loss during training.

The target (its density, its weights) is rebuilt with ``theory.ncsn_two_modes()``, the
study's fixed target, never retyped here.
"""

from __future__ import annotations

import math
import pathlib

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import theory
from figures.command import figure_command, figure_draw
from figures.panels import line_with_band, over_seeds
from figures.style import save_figure
from studies import kit

__all__ = ["draw", "main"]

_SAMPLERS = {
    "exact": ("exact draws", "0.3"),
    "plain": ("Langevin", "C3"),
    "annealed": ("annealed Langevin", "C0"),
    "learned": ("annealed, learned score", "C2"),
}
_HEAVY_MODE = 0  # mode (5, 5) of theory.ncsn_two_modes()


def _heavy(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[(rows["metric"] == "mode_weight") & (rows["mode"] == _HEAVY_MODE)]


def _interval(rows: pd.DataFrame, sampler: str, level: float) -> kit.Interval:
    """The weight of (5, 5) over the given rows (one per seed): pooled over the i.i.d.
    chains of an exact-score sampler, a t-interval over networks for the learned one."""
    if sampler == "learned":
        return kit.over_replicates(rows["value"].to_numpy(), level=level)
    return kit.pooled_proportion(int(rows["count"].sum()), int(rows["n"].sum()), level=level)


def _points(table: pd.DataFrame, sampler: str) -> np.ndarray | None:
    rows = table[(table["sweep"] == "samples") & (table["sampler"] == sampler)]
    return None if rows.empty else rows.sort_values("chain")[["x", "y"]].to_numpy(np.float64)


def _level(run: kit.Run) -> float:
    """The confidence level of every interval drawn: the run's own."""
    return float(run.config.get("confidence", 0.95))


def _limits(target) -> tuple[float, float]:
    means = np.asarray(target.means, np.float64)
    pad = 3 * float(np.sqrt(np.max(np.asarray(target.covs))))
    return float(means.min() - pad), float(means.max() + pad)


def _three_panels(run: kit.Run, out: pathlib.Path) -> list[pathlib.Path]:
    table, target, level = run.table, theory.ncsn_two_modes(), _level(run)
    samplers = [s for s in _SAMPLERS if _points(table, s) is not None]
    if not samplers:
        return []
    fig, axes = plt.subplots(1, len(samplers), figsize=(3.3 * len(samplers), 3.6), sharex=True, sharey=True,
                             squeeze=False)
    baseline = table[table["sweep"] == "baseline"]
    low, high = _limits(target)
    for ax, sampler in zip(axes[0], samplers):
        points = _points(table, sampler)
        label, color = _SAMPLERS[sampler]
        ax.scatter(points[:, 0], points[:, 1], s=1.0, color=color, alpha=0.6, linewidths=0, rasterized=True)
        rows = _heavy(baseline[baseline["sampler"] == sampler])
        last = rows[rows["step"] == rows["step"].max()]
        interval = _interval(last, sampler, level)
        how = "over networks" if sampler == "learned" else "pooled"
        ax.set_title(f"{label}\nweight of (5,5): {interval.value:.3f} [{interval.low:.3f}, {interval.high:.3f}]\n"
                     f"({how}, {last['seed'].nunique()} seeds)", fontsize=8)
        ax.set_xlim(low, high)
        ax.set_ylim(low, high)
        ax.set_aspect("equal")
    weights = np.asarray(target.weights)
    return save_figure(fig, out / "langevin_three_panels", tight=True, title_size=9,
                       title=f"{weights[0]:g} N((5,5), I) + {weights[1]:g} N((-5,-5), I); points of seed 0; "
                             f"{100 * level:g}% intervals")


def _level_ticks(ax, annealed: pd.DataFrame) -> None:
    """Thin vertical lines where annealed Langevin moves to the next noise level."""
    ends = annealed.dropna(subset=["sigma"]).groupby("sigma")["step"].max().sort_values()
    for step in ends.to_numpy()[:-1]:
        ax.axvline(step, color="C0", alpha=0.12, linewidth=0.8)


def _weight_vs_steps(run: kit.Run, out: pathlib.Path) -> list[pathlib.Path]:
    table, target, level = run.table, theory.ncsn_two_modes(), _level(run)
    baseline = table[table["sweep"] == "baseline"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for sampler, (label, color) in _SAMPLERS.items():
        rows = _heavy(baseline[baseline["sampler"] == sampler])
        if rows.empty:
            continue
        if sampler == "exact":
            interval = _interval(rows, sampler, level)
            left.axhspan(interval.low, interval.high, color=color, alpha=0.25, label=f"{label} ({100 * level:g}% CI)")
            continue
        steps = np.array(sorted(rows["step"].unique()))
        intervals = [_interval(group, sampler, level) for _, group in rows.groupby("step", sort=True)]
        values = np.array([[i.value, i.low, i.high] for i in intervals])
        line_with_band(left, steps, values[:, 0], values[:, 1], values[:, 2], color=color, alpha=0.2, linewidth=0,
                       label=label + (" (t over networks)" if sampler == "learned" else ""))
    left.axhline(float(np.asarray(target.weights)[_HEAVY_MODE]), color="k", linestyle="--", linewidth=0.8,
                 label="truth")
    _level_ticks(left, baseline[(baseline["sampler"] == "annealed") & (baseline["metric"] == "mode_weight")])
    left.set_ylim(-0.02, 1.02)
    left.set_xlabel("Langevin steps (annealed: across levels)")
    left.set_ylabel("weight of mode (5,5)")
    left.legend(fontsize=7, loc="lower right")

    w1 = baseline[baseline["metric"] == "w1"]
    for sampler, (label, color) in _SAMPLERS.items():
        rows = w1[w1["sampler"] == sampler]
        if rows.empty or sampler == "exact":
            continue
        curve = over_seeds(rows, "step", level=level)
        half = (curve["high"] - curve["value"]).fillna(0.0)  # 0 where one seed leaves the interval undefined
        right.errorbar(curve["step"], curve["value"], yerr=half, color=color, marker="o", markersize=3, capsize=2,
                       label=label)
    floor = baseline[baseline["metric"] == "w1_floor"]
    if not floor.empty:
        value, error = floor["value"].iloc[0], floor["error"].iloc[0]
        right.axhspan(value - 1.96 * error, value + 1.96 * error, color="0.3", alpha=0.25,
                      label=f"sampling floor (m={int(floor['n'].iloc[0])})")
    exact = w1[w1["sampler"] == "exact"]
    if not exact.empty:
        right.axhline(exact["value"].mean(), color="0.3", linestyle=":", label="exact draws")
    right.set_yscale("log")
    right.set_xlabel("Langevin steps")
    right.set_ylabel("W1 to exact target draws")
    right.set_title(f"mean and {100 * level:g}% t-interval over seeds", fontsize=9)
    right.legend(fontsize=7)
    return save_figure(fig, out / "langevin_mode_weight_vs_steps", tight=True)


_SWEEPS = (
    ("langevin_step_size", "plain step size alpha", True),
    ("annealed_step_size", "annealed eps", True),
    ("n_levels", "noise levels L", True),
    ("steps_per_level", "steps per level T", True),
    ("langevin_steps", "plain chain length K", True),
    ("n_chains", "chains", True),
    ("initial_law", "initial law", False),
)


def _sweeps(run: kit.Run, out: pathlib.Path) -> list[pathlib.Path]:
    table, target, level = run.table, theory.ncsn_two_modes(), _level(run)
    present = [s for s in _SWEEPS if ((table["sweep"] == s[0]) & (table["metric"] == "mode_weight")).any()]
    if not present:
        return []
    columns = 4
    fig, axes = plt.subplots(math.ceil(len(present) / columns), columns,
                             figsize=(3.2 * columns, 2.9 * math.ceil(len(present) / columns)), squeeze=False)
    for ax, (sweep, label, numeric) in zip(axes.flat, present):
        rows = _heavy(table[table["sweep"] == sweep])
        last = rows[rows["step"] == rows.groupby(["sampler", sweep])["step"].transform("max")]
        samplers = [s for s in ("plain", "annealed") if (last["sampler"] == s).any()]
        for offset, sampler in enumerate(samplers):
            groups = list(last[last["sampler"] == sampler].groupby(sweep, sort=numeric))
            values = [key for key, _ in groups]
            intervals = [_interval(group, sampler, level) for _, group in groups]
            mean = np.array([i.value for i in intervals])
            x = np.asarray(values, float) if numeric else np.arange(len(values)) + 0.12 * (offset - 0.5)
            ax.errorbar(x, mean, yerr=[mean - np.array([i.low for i in intervals]),
                                       np.array([i.high for i in intervals]) - mean],
                        color=_SAMPLERS[sampler][1], marker="o", markersize=3, capsize=2, label=_SAMPLERS[sampler][0])
            if not numeric:
                ax.set_xticks(np.arange(len(values)))
                ax.set_xticklabels(values, rotation=30, ha="right", fontsize=7)
        if numeric and len(last) and last[sweep].astype(float).max() / max(last[sweep].astype(float).min(), 1e-12) > 20:
            ax.set_xscale("log")
        ax.axhline(float(np.asarray(target.weights)[_HEAVY_MODE]), color="k", linestyle="--", linewidth=0.8)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel(label)
        ax.set_ylabel("weight of (5,5)")
    handles = {}
    for ax in axes.flat:
        for handle, name in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(name, handle)
    unused = list(axes.flat)[len(present):]
    for ax in unused:
        ax.axis("off")
    if unused:
        unused[0].legend(list(handles.values()), list(handles.keys()), loc="center", fontsize=9)
    else:
        fig.legend(list(handles.values()), list(handles.keys()), loc="lower center", ncol=len(handles), fontsize=8,
                   frameon=False)
    return save_figure(fig, out / "langevin_sweeps", tight=True if unused else {"rect": (0, 0.06, 1, 1)}, title_size=9,
                       title=f"final weight of (5,5), exact scores, Clopper-Pearson pooled over the chains of every seed, "
                             f"{100 * level:g}%; dashed: truth")


def _trajectories(run: kit.Run, out: pathlib.Path) -> list[pathlib.Path]:
    table, target = run.table, theory.ncsn_two_modes()
    rows = table[(table["sweep"] == "trajectories") & (table["metric"] == "position")]
    if rows.empty:
        return []
    samplers = [s for s in ("plain", "annealed") if (rows["sampler"] == s).any()]
    fig, axes = plt.subplots(1, len(samplers), figsize=(4.2 * len(samplers), 4.0), squeeze=False)
    axis = np.linspace(-10, 10, 201)
    grid = np.stack(np.meshgrid(axis, axis), axis=-1).reshape(-1, 2)
    density = np.exp(np.asarray(target.log_prob(grid), np.float64)).reshape(axis.size, axis.size)
    # Contours at the densities of the lightest mode at radii 0.5, 1, ..., 2.5 from its
    # mean, so both modes get rings (evenly spaced levels would all hug the heavy one).
    weights = np.asarray(target.weights, np.float64)
    variance = float(np.max(np.asarray(target.covs)))
    radii = np.arange(0.5, 3.0, 0.5)
    levels = np.sort(weights.min() / (2 * np.pi * variance) * np.exp(-0.5 * radii**2 / variance))
    for ax, sampler in zip(axes.flat, samplers):
        ax.contour(axis, axis, density, levels=levels, colors="0.55", linewidths=0.6)
        paths = rows[rows["sampler"] == sampler]
        for chain, color in zip(sorted(paths["chain"].unique()), ("C1", "C4", "C5")):
            chain_rows = paths[paths["chain"] == chain].sort_values("step")
            xy = chain_rows[["x", "y"]].to_numpy(np.float64)
            if sampler == "annealed":
                # Steps at the large levels jump by sqrt(alpha_1) ~ 6: draw one point per
                # level (its last state) joined by lines, and the last level in full.
                sigma = chain_rows["sigma"].to_numpy()
                ends = [0] + [i for i in range(1, len(sigma)) if i == len(sigma) - 1 or sigma[i + 1] != sigma[i]]
                ax.plot(xy[ends, 0], xy[ends, 1], color=color, linewidth=0.9, marker=".", markersize=5)
                last_level = np.flatnonzero(sigma == sigma[-1])
                ax.plot(xy[last_level, 0], xy[last_level, 1], color=color, linewidth=0.4, alpha=0.7)
            else:
                ax.plot(xy[:, 0], xy[:, 1], color=color, linewidth=0.6, alpha=0.85)
            ax.plot(xy[-1, 0], xy[-1, 1], marker="o", color=color, markersize=4)
            ax.plot(xy[0, 0], xy[0, 1], marker="*", color="k", markersize=9)
        heavy = _heavy(table[(table["sweep"] == "trajectories") & (table["sampler"] == sampler)])
        note = ""
        if not heavy.empty:
            row = heavy.iloc[0]
            note = f"\n{int(row['count'])}/{int(row['n'])} chains from * end at (5,5)"
        what = "one point per level, last level in full" if sampler == "annealed" else "every step"
        ax.set_title(f"{_SAMPLERS[sampler][0]}: three chains ({what}){note}", fontsize=9)
        ax.set_xlim(-10, 10)
        ax.set_ylim(-10, 10)
        ax.set_aspect("equal")
    return save_figure(fig, out / "langevin_trajectories", tight=True)


def _fisher(run: kit.Run, out: pathlib.Path) -> list[pathlib.Path]:
    learned = run.table[(run.table["sweep"] == "learned") & (run.table["metric"] != "diverged")]
    if learned.empty:
        return []
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.5, 3.5))
    fisher = learned[learned["metric"] == "fisher_divergence"]
    scale = learned[learned["metric"] == "expected_squared_score"].groupby("sigma")["value"].mean()
    for seed, rows in fisher.groupby("seed"):
        left.errorbar(rows["sigma"], rows["value"], yerr=1.96 * rows["error"], marker="o", markersize=3,
                      capsize=2, linewidth=0.8, label=f"Fisher divergence, seed {int(seed)}")
    left.plot(scale.index, scale.to_numpy(), color="k", linestyle="--", linewidth=0.8,
              label="E ||grad log p_sigma||^2 (zero-score baseline)")
    left.set(xscale="log", yscale="log", xlabel="noise level sigma", ylabel="E_{p_sigma} ||s_theta - grad log p_sigma||^2")
    left.legend(fontsize=7)
    for seed, rows in learned[learned["metric"] == "dsm_loss"].groupby("seed"):
        right.plot(rows["step"], rows["value"], linewidth=0.9, label=f"seed {int(seed)}")
    right.set_xlabel("training step")
    right.set_ylabel("sigma^2-weighted DSM loss")
    right.set_yscale("log")
    right.legend(fontsize=7)
    return save_figure(fig, out / "langevin_fisher", tight=True)


draw = figure_draw(study="langevin_mixing", missing="sampler results",
                   drawable=lambda table: "sweep" in table.columns and (table["metric"] == "mode_weight").any(),
                   figures=(_three_panels, _weight_vs_steps, _sweeps, _trajectories, _fisher))
main = figure_command(draw, prog="python -m figures.langevin_mixing", description=__doc__)

if __name__ == "__main__":
    main()
