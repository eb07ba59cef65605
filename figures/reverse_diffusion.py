"""Figures of the reverse-diffusion study, drawn from its saved results only.

    python -m figures.reverse_diffusion results/reverse_diffusion/quick

Reads ``results.csv`` and ``config.json`` of a run directory and writes, under
``<run>/figures/`` (PDF and PNG):

- ``reverse_diffusion_w1_vs_nfe``: W1 to fresh target draws against the number of
  score evaluations, one panel per sampler, exact score (solid) and learned score
  (dashed), mean +- one standard error over seeds, with the W1 sampling floor (band:
  +- 2 s.e.). Exact minus floor is the discretisation error; learned minus exact at
  large NFE is the score error.
- ``reverse_diffusion_modes``: the fraction of points within 3 sd of some mode and the
  total-variation distance of the nearest-mode weights to the true weights, vs NFE.
- ``reverse_diffusion_samples``: sample clouds at a few NFEs (exact and learned) over the
  target's density.
- ``reverse_diffusion_trajectories``: reverse paths of the probability-flow ODE and the
  reverse SDE from the same prior points.
- ``reverse_diffusion_fisher``: the learned score's Fisher divergence along t next to
  E ||grad log p_t||^2, its epsilon-space version s(t)^2 F(t), and the training loss.
- ``reverse_diffusion_cost``: wall time per run against NFE.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys

import numpy as np
import pandas as pd

from figures.style import apply_style, save_figure

import matplotlib.pyplot as plt  # noqa: E402  (figures.style selects the Agg backend first)

__all__ = ["draw", "main"]

_KINDS = {"exact": dict(linestyle="-", marker="o"), "learned": dict(linestyle="--", marker="s")}

_TITLES = {
    "reverse_sde_euler_maruyama": "reverse SDE, Euler-Maruyama",
    "reverse_sde_shark": "reverse SDE, ShARK",
    "reverse_sde_sra1": "reverse SDE, SRA1",
    "pf_ode_euler": "PF ODE, Euler",
    "pf_ode_heun": "PF ODE, Heun",
    "pf_ode_tsit5_adaptive": "PF ODE, Tsit5 (adaptive)",
    "pf_ode_dopri5_adaptive": "PF ODE, Dopri5 (adaptive)",
    "ddpm_ancestral": "DDPM ancestral",
    "ddim_eta0": "DDIM (eta = 0)",
}


def _title(sampler: str) -> str:
    return _TITLES.get(sampler, sampler.replace("_", " "))


def _samplers(table: pd.DataFrame) -> list[str]:
    rows = table[table["metric"] == "w1"]
    return list(dict.fromkeys(rows["sampler"]))


def _by_budget(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds at each budget, with its standard error (NaN for one seed)."""
    grouped = rows.groupby("setting").agg(nfe=("nfe", "mean"), value=("value", "mean"), sd=("value", "std"),
                                          k=("value", "size"))
    grouped["se"] = grouped["sd"] / np.sqrt(grouped["k"])
    return grouped.sort_values("nfe")


def _floor(table: pd.DataFrame) -> tuple[float, float]:
    rows = table[table["metric"] == "w1_floor"]
    if rows.empty:
        return math.nan, math.nan
    return float(rows["value"].iloc[0]), float(rows["error"].iloc[0])


def _grid(n: int, columns: int = 4) -> tuple[int, int]:
    columns = min(columns, n)
    return math.ceil(n / columns), columns


def _w1_vs_nfe(table: pd.DataFrame, out: pathlib.Path) -> list[pathlib.Path]:
    samplers = _samplers(table)
    if not samplers:
        return []
    floor, floor_se = _floor(table)
    n_rows, n_cols = _grid(len(samplers))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.0 * n_cols, 2.6 * n_rows), sharex=True, sharey=True,
                             squeeze=False)
    w1 = table[table["metric"] == "w1"]
    for ax, sampler in zip(axes.flat, samplers):
        if math.isfinite(floor):
            ax.axhspan(floor - 2 * floor_se, floor + 2 * floor_se, color="0.85", zorder=0)
            ax.axhline(floor, color="0.4", linewidth=0.8, zorder=1, label="W1 floor (2 s.e.)")
        for colour, (kind, style) in zip(("C0", "C3"), _KINDS.items()):
            rows = w1[(w1["sampler"] == sampler) & (w1["score"] == kind)]
            if rows.empty:
                continue
            stats = _by_budget(rows)
            ax.errorbar(stats["nfe"], stats["value"], yerr=stats["se"].fillna(0.0), color=colour, markersize=3.5,
                        capsize=2, label=f"{kind} score", **style)
        ax.set_title(_title(sampler), fontsize=9)
        ax.set_xscale("log")
        ax.set_yscale("log")
    for ax in axes.flat[len(samplers):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("score evaluations (NFE)")
    for ax in axes[:, 0]:
        ax.set_ylabel("W1 to target sample")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, frameon=False, bbox_to_anchor=(0.5, -0.02))
    seeds, n = w1["seed"].nunique(), int(w1["n"].iloc[0])
    fig.suptitle(f"W1 between {n} samples and {n} fresh target draws, mean +- 1 s.e. over {seeds} seeds "
                 f"(same prior points and noise for both scores)", fontsize=9)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return save_figure(fig, out / "reverse_diffusion_w1_vs_nfe", dpi=110)


def _modes(table: pd.DataFrame, out: pathlib.Path) -> list[pathlib.Path]:
    samplers = _samplers(table)
    if not samplers:
        return []
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    palette = {sampler: f"C{i % 10}" for i, sampler in enumerate(samplers)}
    for ax, metric in ((left, "mass_near_any_mode"), (right, "mode_weight_tv")):
        rows = table[table["metric"] == metric]
        for sampler in samplers:
            for kind, style in _KINDS.items():
                selected = rows[(rows["sampler"] == sampler) & (rows["score"] == kind)]
                if selected.empty:
                    continue
                stats = _by_budget(selected)
                ax.plot(stats["nfe"], stats["value"], color=palette[sampler], markersize=3,
                        label=_title(sampler) if kind == "exact" else None, **style)
        target = rows[rows["sampler"] == "target"]["value"]
        if len(target):
            ax.axhline(float(target.mean()), color="0.3", linewidth=0.8, linestyle=":",
                       label="exact i.i.d. draws")
        ax.set_xscale("log")
        ax.set_xlabel("score evaluations (NFE)")
    left.set_ylabel("fraction within 3 sd of a mode")
    right.set_ylabel("TV(mode weights, truth)")
    right.set_yscale("log")
    left.legend(fontsize=7, frameon=False, title="solid: exact, dashed: learned", title_fontsize=7)
    fig.tight_layout()
    return save_figure(fig, out / "reverse_diffusion_modes")


def _density_grid(config: dict, lim: float = 4.0, n: int = 200):
    """The target's density on a grid, from the named target in config.json."""
    from theory.targets import GRID_MEANS, GRID_VARIANCE

    means = np.asarray(GRID_MEANS[config["grid_modes"]])
    xs = np.linspace(-lim, lim, n)
    xx, yy = np.meshgrid(xs, xs)
    density = np.zeros_like(xx)
    for mean in means:
        density += np.exp(-((xx - mean[0]) ** 2 + (yy - mean[1]) ** 2) / (2 * GRID_VARIANCE))
    return xx, yy, density / (2 * math.pi * GRID_VARIANCE * len(means))


def _points(rows: pd.DataFrame) -> np.ndarray:
    wide = rows.pivot_table(index="point", columns="coordinate", values="value")
    return wide.sort_index().to_numpy()


def _samples(table: pd.DataFrame, config: dict, out: pathlib.Path) -> list[pathlib.Path]:
    rows = table[table["metric"] == "sample_position"]
    samplers = [s for s in dict.fromkeys(rows["sampler"]) if s != "target"]
    if not samplers:
        return []
    columns = []
    for kind in ("exact", "learned"):
        settings = rows[(rows["score"] == kind) & (rows["sampler"] != "target")].groupby("sampler")["setting"]
        count = int(settings.nunique().max()) if len(settings.size()) else 0
        columns += [(kind, j) for j in range(count)]
    xx, yy, density = _density_grid(config)
    fig, axes = plt.subplots(len(samplers), len(columns), figsize=(1.7 * len(columns), 1.7 * len(samplers)),
                             sharex=True, sharey=True, squeeze=False)
    for i, sampler in enumerate(samplers):
        for j, (kind, index) in enumerate(columns):
            ax = axes[i, j]
            ax.contour(xx, yy, density, levels=4, colors="0.75", linewidths=0.5)
            selected = rows[(rows["sampler"] == sampler) & (rows["score"] == kind)]
            budgets = selected.groupby("setting")["nfe"].first().sort_values()
            if index < len(budgets):
                setting = budgets.index[index]
                points = _points(selected[selected["setting"] == setting])
                ax.scatter(points[:, 0], points[:, 1], s=1.5, color="C0" if kind == "exact" else "C3", linewidths=0)
                ax.set_title(f"{kind}, NFE {budgets.iloc[index]:.0f}", fontsize=7)
            else:
                # An adaptive solver's tolerances may not reach every snapshot NFE.
                ax.text(0, 0, "no budget\nnear this NFE", ha="center", va="center", fontsize=6, color="0.4")
            ax.set_xlim(-4, 4)
            ax.set_ylim(-4, 4)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[i, 0].set_ylabel(_title(sampler), fontsize=7)
    fig.tight_layout(pad=0.3)
    return save_figure(fig, out / "reverse_diffusion_samples", dpi=120)


def _trajectories(table: pd.DataFrame, config: dict, out: pathlib.Path) -> list[pathlib.Path]:
    rows = table[table["metric"] == "trajectory_position"]
    if rows.empty:
        return []
    kinds = list(dict.fromkeys(rows["score"]))
    samplers = list(dict.fromkeys(rows["sampler"]))
    xx, yy, density = _density_grid(config)
    fig, axes = plt.subplots(len(kinds), len(samplers), figsize=(4.0 * len(samplers), 3.8 * len(kinds)),
                             sharex=True, sharey=True, squeeze=False)
    for i, kind in enumerate(kinds):
        for j, sampler in enumerate(samplers):
            ax = axes[i, j]
            ax.contour(xx, yy, density, levels=5, colors="0.7", linewidths=0.6)
            selected = rows[(rows["score"] == kind) & (rows["sampler"] == sampler)]
            stochastic = "sde" in sampler
            for point, path_rows in selected.groupby("point"):
                path = path_rows.pivot_table(index="step", columns="coordinate", values="value").sort_index().to_numpy()
                colour = f"C{int(point) % 10}"
                ax.plot(path[:, 0], path[:, 1], color=colour, linewidth=0.5 if stochastic else 0.9,
                        alpha=0.6 if stochastic else 0.9)
                ax.plot(path[0, 0], path[0, 1], "o", color=colour, markersize=3)
                ax.plot(path[-1, 0], path[-1, 1], "*", color=colour, markersize=6, markeredgecolor="k",
                        markeredgewidth=0.3)
            ax.set_title(f"{_title(sampler)} ({kind} score)", fontsize=9)
            ax.set_xlim(-4, 4)
            ax.set_ylim(-4, 4)
            ax.set_aspect("equal")
    fig.suptitle("same prior points (o) to t_end (*)", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out / "reverse_diffusion_trajectories")


def _fisher(table: pd.DataFrame, out: pathlib.Path) -> list[pathlib.Path]:
    fisher = table[table["metric"] == "fisher_divergence"].sort_values("t")
    loss = table[table["metric"] == "train_loss"].sort_values("step")
    if fisher.empty and loss.empty:
        return []
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(12, 3.6))
    if not fisher.empty:
        left.errorbar(fisher["t"], fisher["value"], yerr=1.96 * fisher["error"], marker="o", markersize=3,
                      capsize=2, label="F(t) = E||s_theta - grad log p_t||^2")
        moment = table[table["metric"] == "score_second_moment"].sort_values("t")
        left.plot(moment["t"], moment["value"], color="0.4", linestyle=":", marker=".",
                  label="E||grad log p_t||^2 (scale)")
        left.set_xscale("log")
        left.set_yscale("log")
        left.set_xlabel("t")
        left.legend(fontsize=7, frameon=False)
        left.set_title("learned score vs exact score", fontsize=9)
        epsilon = table[table["metric"] == "epsilon_error"].sort_values("t")
        middle.errorbar(epsilon["t"], epsilon["value"], yerr=1.96 * epsilon["error"], marker="o", markersize=3,
                        capsize=2, color="C2")
        middle.set_xscale("log")
        middle.set_yscale("log")
        middle.set_xlabel("t")
        middle.set_title("s(t)^2 F(t) = E||eps_theta - eps*||^2", fontsize=9)
    if not loss.empty:
        right.plot(loss["step"], loss["value"], color="C1")
        right.set_xlabel("training step")
        right.set_title("simple loss (block means)", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out / "reverse_diffusion_fisher")


def _cost(table: pd.DataFrame, out: pathlib.Path) -> list[pathlib.Path]:
    rows = table[table["metric"] == "wall_time_s"]
    if rows.empty:
        return []
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for i, sampler in enumerate(dict.fromkeys(rows["sampler"])):
        for kind, style in _KINDS.items():
            selected = rows[(rows["sampler"] == sampler) & (rows["score"] == kind)]
            if selected.empty:
                continue
            stats = _by_budget(selected)
            ax.plot(stats["nfe"], stats["value"], color=f"C{i % 10}", markersize=3,
                    label=_title(sampler) if kind == "exact" else None, **style)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("score evaluations (NFE)")
    ax.set_ylabel("wall time per run (s)")
    n = int(rows["n"].iloc[0]) if "n" in rows and len(rows) else 0
    ax.set_title(f"{n} samples, after compilation (solid exact, dashed learned)", fontsize=8)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return save_figure(fig, out / "reverse_diffusion_cost")


def draw(run_dir: str | pathlib.Path) -> list[pathlib.Path]:
    """Draw every figure of a saved run into ``<run_dir>/figures``.

    Args:
        run_dir: a run directory holding ``results.csv`` and ``config.json``.

    Returns:
        The paths written (PDF and PNG of each figure).
    """
    run_dir = pathlib.Path(run_dir)
    results = run_dir / "results.csv"
    if not results.exists():
        raise FileNotFoundError(f"run_dir must hold results.csv, got {run_dir}")
    table = pd.read_csv(results, low_memory=False)
    config = json.loads((run_dir / "config.json").read_text())
    out = run_dir / "figures"
    apply_style()
    paths: list[pathlib.Path] = []
    paths += _w1_vs_nfe(table, out)
    paths += _modes(table, out)
    paths += _samples(table, config, out)
    paths += _trajectories(table, config, out)
    paths += _fisher(table, out)
    paths += _cost(table, out)
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m figures.reverse_diffusion", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=pathlib.Path, help="a run directory, e.g. results/reverse_diffusion/quick")
    arguments = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        paths = draw(arguments.run_dir)
    except FileNotFoundError as error:
        parser.error(str(error))
    for path in paths:
        print(path)


if __name__ == "__main__":
    main()
