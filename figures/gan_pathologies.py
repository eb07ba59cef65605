"""Figures of the GAN pathologies study, drawn from saved results only.

    python -m figures.gan_pathologies results/gan_pathologies/quick

writes into RESULTS_DIR/figures/, one figure per experiment (PDF and PNG):

- ``bounds_tightness``: B(v) / Div(P, Q) against discriminator steps (log), one line per
  objective and width; the bound reaches 1 only at the optimum.
- ``gradient_decay``: the generator's gradient norm against discriminator steps (log-log)
  for the saturating, -log D and WGAN costs, one panel per generator stage (the README
  figure; Arjovsky & Bottou 2017, Fig. 2).
- ``js_saturation``: estimate and d/dtheta against theta on the parallel lines, beside
  log 2 (JS) and |theta| (W1).
- ``mode_collapse``: exact W1 (floor dashed) and modes covered over training, per grid.
- ``disconnected_supports``: generated points of the unconditional and conditional GAN
  with the mode balls, and the mass off the modes beside the isoperimetric bound.
Every band is mean ± one standard error over seeds (kit.over_replicates; diverged seeds
are counted, not drawn).
"""

from __future__ import annotations

import math
import pathlib

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from figures.command import figure_command, figure_draw
from figures.panels import line_with_band, over_seeds
from figures.style import save_figure
from studies import kit

MODE_RADIUS = 3.0  # the study's "near a mode" radius, in standard deviations


def _band(group: pd.DataFrame, x: str) -> pd.DataFrame:
    """mean ± one standard error over seeds at each x (0 where a single seed leaves it undefined)."""
    band = over_seeds(group, x)
    band["error"] = band["error"].fillna(0.0)
    return band.assign(low=band["value"] - band["error"], high=band["value"] + band["error"])


def _has_experiment(table: pd.DataFrame) -> bool:
    return "experiment" in table and table["experiment"].isin(["bounds", "gradients", "js", "modes", "disconnected"]).any()


def _experiment(table: pd.DataFrame, name: str) -> pd.DataFrame:
    return table[table["experiment"] == name] if "experiment" in table else table.iloc[:0]


def bounds_figure(run: kit.Run, out_dir: pathlib.Path) -> list[pathlib.Path]:
    frame = _experiment(run.table, "bounds")
    if frame.empty:
        return []
    laws = sorted(frame["law"].unique())
    fig, axes = plt.subplots(1, len(laws), figsize=(5.2 * len(laws), 3.8), squeeze=False, layout="constrained")
    widths = sorted(frame["width"].unique())
    styles = dict(zip(widths, ["-", "--", ":", "-."] * 4))
    colours = {name: f"C{i}" for i, name in enumerate(sorted(frame["objective"].unique()))}  # one colour per objective
    for ax, law in zip(axes[0], laws):
        sub = frame[frame["law"] == law]
        for name in sorted(sub["objective"].unique()):
            for width in widths:
                cell = sub[(sub["objective"] == name) & (sub["width"] == width)]
                exact = cell[cell["metric"] == "divergence_exact"]["value"]
                estimate = cell[cell["metric"] == "divergence_estimate"].copy()
                if estimate.empty or exact.empty:
                    continue
                estimate["value"] = estimate["value"] / float(exact.iloc[0])
                band = _band(estimate, "d_step")
                line_with_band(ax, band["d_step"], band["value"], band["low"], band["high"], styles[width],
                               color=colours[name], label=f"{name}, width {int(width)}")
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_ylim(-0.2, 1.1)
        ax.set_xlabel("discriminator steps")
        ax.set_ylabel("B(v) / Div(P, Q)")
        ax.set_title(f"{law} laws: the bound from below")
        ax.legend(fontsize=6, loc="upper left")
    return save_figure(fig, out_dir / "bounds_tightness",
                       title="Discriminator trained alone: variational bound over the exact divergence (quadrature); "
                             "1 = tight")


def gradient_figure(run: kit.Run, out_dir: pathlib.Path) -> list[pathlib.Path]:
    frame = _experiment(run.table, "gradients")
    frame = frame[frame["metric"] == "generator_grad_norm"]
    if frame.empty:
        return []
    stages = sorted(frame["stage"].unique())
    labels = {"minimax": "saturating log(1 - D)", "non-saturating": "-log D", "wgan": "WGAN critic"}
    fig, axes = plt.subplots(1, len(stages), figsize=(4.2 * len(stages), 3.6), squeeze=False, sharey=True, layout="constrained")
    for ax, stage in zip(axes[0], stages):
        sub = frame[frame["stage"] == stage].copy()
        for i, name in enumerate(["minimax", "non-saturating", "wgan"]):
            cost = sub[sub["objective"] == name].copy()
            if cost.empty:
                continue
            # Mean and s.e. of log10 norms over seeds: the decay spans orders of magnitude.
            cost["value"] = np.log10(cost["value"].where(cost["value"] > 0))
            band = _band(cost, "d_step")
            line_with_band(ax, band["d_step"], 10 ** band["value"], 10 ** band["low"], 10 ** band["high"],
                           color=f"C{i}", label=labels.get(name, name), alpha=0.2)
        ax.set(xscale="log", yscale="log", xlabel="discriminator steps (fresh discriminator)",
               title=f"generator frozen after {int(stage)} steps")
    axes[0][0].set_ylabel("||grad_theta L_G||")
    axes[0][0].legend(fontsize=7)
    return save_figure(fig, out_dir / "gradient_decay",
                       title="Generator gradient norm against a discriminator trained from scratch (geometric mean ± "
                             "s.e. over seeds)")


def js_figure(run: kit.Run, out_dir: pathlib.Path) -> list[pathlib.Path]:
    frame = _experiment(run.table, "js")
    if frame.empty:
        return []
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.6), layout="constrained")
    names = {"minimax": "GAN (JS estimate)", "wgan": "WGAN (W1 estimate)"}
    for i, name in enumerate(sorted(frame["objective"].unique())):
        sub = frame[frame["objective"] == name]
        for ax, estimate, exact in ((axes[0], "divergence_estimate", "divergence_exact"),
                                    (axes[1], "estimate_grad_theta", "exact_grad_theta")):
            band = _band(sub[sub["metric"] == estimate], "theta")
            ax.errorbar(band["theta"], band["value"], yerr=band["error"], fmt="o", color=f"C{i}", label=names.get(name, name), ms=4)
            truth = sub[sub["metric"] == exact].groupby("theta")["value"].first().sort_index()
            ax.plot(truth.index, truth.values, "--", color=f"C{i}", linewidth=1, label=f"exact ({'JS' if name != 'wgan' else 'W1'})")
    axes[0].axhline(math.log(2), color="gray", linewidth=0.6)
    axes[0].set_xlabel("theta")
    axes[0].set_ylabel("divergence")
    axes[0].set_title("estimates: JS saturates at log 2, W1 = |theta|")
    axes[1].set_xlabel("theta")
    axes[1].set_ylabel("d estimate / d theta (discriminator frozen)")
    axes[1].set_title("the gradient the generator would get")
    axes[0].legend(fontsize=7)
    return save_figure(fig, out_dir / "js_saturation",
                       title="Parallel lines P_theta = (theta, U[0, 1]) against P_0: mean ± s.e. over seeds")


def modes_figure(run: kit.Run, out_dir: pathlib.Path) -> list[pathlib.Path]:
    frame = _experiment(run.table, "modes")
    if frame.empty:
        return []
    floors = run.table[run.table["metric"] == "w1_floor"].set_index("K")["value"]
    ks = sorted(frame["K"].unique())
    fig, axes = plt.subplots(2, len(ks), figsize=(4.4 * len(ks), 6.4), squeeze=False, layout="constrained")
    for col, k in enumerate(ks):
        sub = frame[frame["K"] == k]
        for i, name in enumerate(sorted(sub["objective"].unique())):
            for row, metric in enumerate(("w1", "modes_covered")):
                band = _band(sub[(sub["objective"] == name) & (sub["metric"] == metric)], "step")
                line_with_band(axes[row][col], band["step"], band["value"], band["low"], band["high"], color=f"C{i}",
                               label=name)
        if k in floors:
            axes[0][col].axhline(floors[k], color="black", linestyle="--", linewidth=1, label="sampling floor")
        axes[1][col].axhline(k, color="black", linestyle=":", linewidth=1, label=f"all {int(k)} modes")
        axes[0][col].set_yscale("log")
        axes[0][col].set_title(f"K = {int(k)}")
        axes[0][col].set_ylabel("exact W1 (POT)")
        axes[1][col].set_ylabel("modes covered")
        axes[1][col].set_xlabel("generator step")
    axes[0][-1].legend(fontsize=7)
    return save_figure(fig, out_dir / "mode_collapse",
                       title="Gaussian grids, same generator for every objective: mean ± s.e. over seeds")


def disconnected_figure(run: kit.Run, out_dir: pathlib.Path) -> list[pathlib.Path]:
    table, config = run.table, run.config
    frame = _experiment(table, "disconnected")
    if frame.empty:
        return []
    means = table[table["metric"] == "mode_mean"]
    radius = MODE_RADIUS * math.sqrt(float(config.get("grid_variance", 0.1)))
    ks = sorted(frame["K"].unique())
    fig, axes = plt.subplots(len(ks), 3, figsize=(11, 3.6 * len(ks)), squeeze=False, layout="constrained")
    for row, k in enumerate(ks):
        sub = frame[frame["K"] == k]
        centres = means[means["K"] == k][["x", "y"]].to_numpy()
        for col, model in enumerate(("unconditional", "conditional")):
            ax = axes[row][col]
            points = sub[(sub["metric"] == "sample") & (sub["model"] == model)]
            ax.scatter(points["x"], points["y"], s=2, color=f"C{col}")
            for cx, cy in centres:
                ax.add_patch(plt.Circle((cx, cy), radius, fill=False, color="black", linewidth=0.6))
            ax.set_aspect("equal")
            ax.set_title(f"K = {int(k)}, {model} GAN (seed 0)")
        ax = axes[row][2]
        bars, heights, errors = [], [], []
        for label, model, metric in (("unconditional", "unconditional", "mass_off_modes"),
                                     ("conditional", "conditional", "mass_off_modes"),
                                     ("isoperimetric\nbound (uncond.)", "unconditional", "mass_off_modes_bound")):
            values = sub[(sub["model"] == model) & (sub["metric"] == metric)]
            final = values[values["step"] == values["step"].max()].sort_values("seed")["value"].to_numpy()
            interval = kit.over_replicates(final)
            bars.append(label)
            heights.append(interval.value)
            errors.append(interval.error if math.isfinite(interval.error) else 0.0)
        ax.bar(range(3), heights, yerr=errors, color=["C0", "C1", "0.6"], capsize=3)
        exact = table[(table["metric"] == "mass_off_modes_exact") & (table["K"] == k)]["value"]
        if len(exact):
            ax.axhline(float(exact.iloc[0]), color="black", linestyle="--", linewidth=1, label="target's own")
            ax.legend(fontsize=7)
        ax.set_xticks(range(3), bars, fontsize=8)
        ax.set_ylabel(f"final mass off the modes (> {MODE_RADIUS:g} sd)")
        ax.set_title("mean ± s.e. over seeds")
    return save_figure(fig, out_dir / "disconnected_supports",
                       title="A connected Gaussian latent must put mass between separated modes; one latent per label "
                             "need not")


draw = figure_draw(study="gan_pathologies", drawable=_has_experiment, missing="experiment cell",
                   figures=(bounds_figure, gradient_figure, js_figure, modes_figure, disconnected_figure))
main = figure_command(draw, prog="python -m figures.gan_pathologies", description=__doc__)

if __name__ == "__main__":
    main()
