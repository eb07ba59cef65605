"""Figures of the WGAN capacity sweep, drawn from saved results only.

    python -m figures.wgan_capacity results/wgan_capacity/quick

writes into RESULTS_DIR/figures/: one heatmap per K of the final exact W1 over
(generator depth p, critic depth q) with the sampling floor marked on the colour bar,
learning curves (W1 against generator steps, floor dashed), the critic's own distance
estimate against the exact W1 (the metric discrepancy), and scatter plots of generated
against target points for a few cells. Each as PDF and PNG.
"""

from __future__ import annotations

import pathlib

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import theory
from figures.command import figure_command, figure_draw
from figures.panels import identity_line, line_with_band
from figures.style import save_figure
from studies import kit


def _final_w1(table: pd.DataFrame) -> pd.DataFrame:
    """The last evaluation of every seed (NaN where the seed diverged)."""
    w1 = table[table["metric"] == "w1"]
    last = w1.groupby(["K", "p", "q", "seed"])["step"].transform("max")
    return w1[w1["step"] == last]


def _floors(table: pd.DataFrame) -> pd.Series:
    return table[table["metric"] == "w1_floor"].set_index("K")["value"]


def heatmaps(run: kit.Run, out_dir: pathlib.Path) -> list[pathlib.Path]:
    final = _final_w1(run.table)
    floors = _floors(run.table)
    ks = sorted(final["K"].unique())
    fig, axes = plt.subplots(1, len(ks), figsize=(4.6 * len(ks), 3.8), squeeze=False, layout="constrained")
    for ax, k in zip(axes[0], ks):
        intervals = {
            (p, q): kit.over_replicates(group["value"].to_numpy())
            for (p, q), group in final[final["K"] == k].groupby(["p", "q"])
        }
        mean = pd.Series({pq: i.value for pq, i in intervals.items()}).unstack().sort_index(ascending=False)
        mean.index.name, mean.columns.name = "p", "q"
        floor = floors.get(k, np.nan)
        # The scale starts at 0 so that the floor (the best a perfect generator can
        # score at this sample size) sits visibly on it.
        image = ax.imshow(mean.values, cmap="viridis_r", vmin=0.0, aspect="auto")
        ax.set_xticks(range(mean.shape[1]), [str(int(q)) for q in mean.columns])
        ax.set_yticks(range(mean.shape[0]), [str(int(p)) for p in mean.index])
        ax.set_xlabel("critic depth q")
        ax.set_ylabel("generator depth p")
        for i, p in enumerate(mean.index):
            for j, q in enumerate(mean.columns):
                interval = intervals.get((p, q))
                if interval is None:
                    continue
                text = f"{interval.value:.3f}" if np.isfinite(interval.value) else "n/a"
                if np.isfinite(interval.error):
                    text += f"\n±{interval.error:.3f}"
                if interval.n_diverged:
                    text += f"\n{interval.n_diverged}/{interval.n + interval.n_diverged} div."
                ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if np.isfinite(interval.value) else "black")
        bar = fig.colorbar(image, ax=ax)
        bar.set_label("final W1")
        if np.isfinite(floor):
            bar.ax.axhline(floor, color="red", linewidth=2)
            bar.ax.text(0.5, floor, " floor", color="red", fontsize=7, va="bottom", transform=bar.ax.get_yaxis_transform())
        ax.set_title(f"K = {int(k)}: exact W1, floor {floor:.3f}")
        ax.grid(False)
    return save_figure(fig, out_dir / "w1_heatmaps",
                       title="Exact W1 (POT) of the trained generator, mean ± s.e. over seeds (diverged seeds counted); "
                             "red line: sampling floor")


def learning_curves(run: kit.Run, out_dir: pathlib.Path) -> list[pathlib.Path]:
    w1 = run.table[run.table["metric"] == "w1"].copy()
    floors = _floors(run.table)
    ks = sorted(w1["K"].unique())
    fig, axes = plt.subplots(1, len(ks), figsize=(4.6 * len(ks), 3.6), squeeze=False, layout="constrained")
    for ax, k in zip(axes[0], ks):
        sub = w1[w1["K"] == k]
        for (p, q), group in sub.groupby(["p", "q"]):
            curve = group.groupby("step")["value"].agg(["mean", "min", "max"])  # NaN (diverged) seeds skipped here, counted in the heatmap
            line_with_band(ax, curve.index, curve["mean"], curve["min"], curve["max"], label=f"p={int(p)}, q={int(q)}")
        if k in floors:
            ax.axhline(floors[k], color="black", linestyle="--", linewidth=1, label="sampling floor")
        ax.set_yscale("log")
        ax.set_xlabel("generator step")
        ax.set_ylabel("exact W1")
        ax.set_title(f"K = {int(k)}")
    axes[0][-1].legend(fontsize=7, loc="upper right")
    return save_figure(fig, out_dir / "w1_learning_curves",
                       title="Exact W1 during training: mean over seeds, band from min to max")


def metric_discrepancy(run: kit.Run, out_dir: pathlib.Path) -> list[pathlib.Path]:
    final = run.table[run.table["metric"].isin(["w1", "critic_ipm"])]
    last = final.groupby(["K", "p", "q", "seed"])["step"].transform("max")
    final = final[final["step"] == last]
    wide = final.pivot_table(index=["K", "p", "q", "seed"], columns="metric", values="value").reset_index()
    fig, ax = plt.subplots(figsize=(4.4, 4.0))
    for k, group in wide.groupby("K"):
        ax.scatter(group["w1"], group["critic_ipm"], s=18, label=f"K = {int(k)}")
    identity_line(ax, wide[["w1", "critic_ipm"]].values, label="IPM = W1")
    ax.set_xlabel("exact W1 (POT)")
    ax.set_ylabel("critic's IPM: mean D(target) - mean D(gen.)")
    ax.set_title("Metric discrepancy at the end of training")
    ax.legend(fontsize=7)
    return save_figure(fig, out_dir / "critic_vs_exact_w1")


def scatter_plots(run: kit.Run, out_dir: pathlib.Path, max_cells: int = 4) -> list[pathlib.Path]:
    samples = run.table[run.table["metric"] == "sample"]
    if samples.empty:
        return []
    cells = samples[["p", "q"]].drop_duplicates().sort_values(["p", "q"]).values.tolist()
    if len(cells) > max_cells:  # the corners of the (p, q) grid
        ps, qs = sorted({c[0] for c in cells}), sorted({c[1] for c in cells})
        cells = [c for c in ([ps[0], qs[0]], [ps[0], qs[-1]], [ps[-1], qs[0]], [ps[-1], qs[-1]]) if c in cells]
    ks = sorted(samples["K"].unique())
    fig, axes = plt.subplots(len(ks), len(cells), figsize=(2.8 * len(cells), 2.8 * len(ks)), squeeze=False)
    for row, k in enumerate(ks):
        # The axes frame the target rebuilt from the saved config, not retyped here.
        target = theory.gaussian_grid(int(k))
        means = np.asarray(target.means)
        pad = 4 * float(np.sqrt(np.max(np.asarray(target.covs))))
        low, high = means.min() - pad, means.max() + pad
        for col, (p, q) in enumerate(cells):
            ax = axes[row][col]
            sub = samples[(samples["K"] == k) & (samples["p"] == p) & (samples["q"] == q)]
            points = sub[sub["source"] == "target"]
            generated = sub[sub["source"] == "generated"]
            ax.scatter(points["x"], points["y"], s=2, color="0.6", label="target")
            ax.scatter(generated["x"], generated["y"], s=2, color="C3", label="generated")
            ax.set_title(f"K={int(k)}, p={int(p)}, q={int(q)}", fontsize=9)
            ax.set_xlim(low, high)
            ax.set_ylim(low, high)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0][0].legend(fontsize=6, loc="lower left", markerscale=3)
    return save_figure(fig, out_dir / "samples")


draw = figure_draw(study="wgan_capacity", drawable=lambda table: (table["metric"] == "w1").any(), missing="trained cell",
                   figures=(heatmaps, learning_curves, metric_discrepancy, scatter_plots))
main = figure_command(draw, prog="python -m figures.wgan_capacity", description=__doc__)

if __name__ == "__main__":
    main()
