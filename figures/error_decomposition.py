"""Figures of the WGAN error decomposition, drawn from saved results only.

    python -m figures.error_decomposition results/error_decomposition/quick

writes into RESULTS_DIR/figures/: stacked bars of eps_approx, eps_optim and eps_estim per
(p, q) at the largest n with the total and the sampling floor; the estimation term against
n on log-log axes with its fitted slope, next to the empirical rate E W1(mu*, mu_n);
eps_optim against the critic depth q; and the IPM of a fresh critic trained on a frozen
generator against the exact W1 (Kantorovich-Rubinstein: IPM <= W1). Each as PDF and PNG.
"""

from __future__ import annotations

import pathlib

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from figures.command import figure_command, figure_draw
from figures.panels import identity_line
from figures.style import save_figure
from studies import kit

INFINITY = -1  # the saved n of the fresh-draw trainings (studies.error_decomposition.INFINITY)


def _terms(table: pd.DataFrame) -> pd.DataFrame:
    """The intervals over seeds (seed empty) of the decomposition cells (which have q)."""
    rows = table[table["seed"].isna() & table["q"].notna() & table["metric"].str.startswith(("eps_", "w1_total", "w1_floor"))]
    return rows[~rows["metric"].str.endswith("_slope")]


def _ci(rows: pd.DataFrame) -> np.ndarray:
    return np.vstack([rows["value"] - rows["ci_low"], rows["ci_high"] - rows["value"]])


def stacked_bars(run: kit.Run, out_dir: pathlib.Path) -> list[pathlib.Path]:
    terms = _terms(run.table)
    ks = sorted(terms["K"].unique())
    fig, axes = plt.subplots(1, len(ks), figsize=(max(4.8, 1.6 * terms[["p", "q"]].drop_duplicates().shape[0] + 2) * len(ks), 4.0),
                             squeeze=False, layout="constrained")
    colours = {"eps_approx": "C0", "eps_optim": "C1", "eps_estim": "C2"}
    for ax, k in zip(axes[0], ks):
        sub = terms[terms["K"] == k]
        finite_n = sub[sub["n"] != INFINITY]
        pairs = sorted({(int(p), int(q)) for p, q in sub[["p", "q"]].itertuples(index=False)})
        labels, floor = [], np.nan
        for i, (p, q) in enumerate(pairs):
            at = sub[(sub["p"] == p) & (sub["q"] == q)]
            sizes = sorted(finite_n[(finite_n["p"] == p) & (finite_n["q"] == q)]["n"].unique())
            n = sizes[-1] if sizes else INFINITY
            at = at[at["n"] == n].set_index("metric")
            bottom = 0.0
            for metric in ("eps_approx", "eps_optim", "eps_estim"):
                value = float(at.loc[metric, "value"])
                ax.bar(i, value, bottom=bottom, color=colours[metric], width=0.6,
                       label=metric.replace("eps_", "eps ") if i == 0 else None)
                bottom += value
            total = at.loc[["w1_total"]]
            ax.errorbar([i], total["value"], yerr=_ci(total), fmt="o", color="black", capsize=4,
                        label="total W1 (95% CI)" if i == 0 else None)
            labels.append(f"p={p}, q={q}\nn={'inf' if n == INFINITY else int(n)}")
            floor = float(at.loc["w1_floor", "value"])
        ax.axhline(floor, color="red", linestyle="--", linewidth=1, label="sampling floor")
        ax.axhline(0.0, color="black", linewidth=0.6)
        ax.set_xticks(range(len(pairs)), labels, fontsize=8)
        ax.set(ylabel="exact W1 terms", title=f"K = {int(k)}")
        ax.legend(fontsize=7)
    return save_figure(fig, out_dir / "stacked_terms",
                       title="total = eps_estim + eps_optim + eps_approx per seed (means over seeds; a negative term is "
                             "drawn downwards)")


def estimation_vs_n(run: kit.Run, out_dir: pathlib.Path) -> list[pathlib.Path]:
    table = run.table
    terms = _terms(table)
    estim = terms[(terms["metric"].isin(["eps_estim", "eps_estim_oracle"])) & (terms["n"] != INFINITY)]
    rate = table[(table["metric"] == "w1_two_sample") & table["seed"].isna()]
    slopes = table[table["metric"].str.endswith("_slope")]
    groups = sorted({(int(k), int(p), int(q)) for k, p, q in estim[["K", "p", "q"]].itertuples(index=False)
                     if estim[(estim["K"] == k) & (estim["p"] == p) & (estim["q"] == q)]["n"].nunique() >= 2})
    if not groups:
        return []
    fig, axes = plt.subplots(1, len(groups), figsize=(6.4 * len(groups), 5.2), squeeze=False, layout="constrained")
    for ax, (k, p, q) in zip(axes[0], groups):
        here = estim[(estim["K"] == k) & (estim["p"] == p) & (estim["q"] == q)]
        for metric, colour, label in (("eps_estim", "C2", "eps_estim (WGAN)"), ("eps_estim_oracle", "C0", "oracle's estimation")):
            rows = here[here["metric"] == metric].sort_values("n")
            here_slopes = slopes[(slopes["K"] == k) & (slopes["p"] == p) & (slopes["q"] == q)]
            log_log = _slope_text(here_slopes[here_slopes["metric"] == metric + "_slope"])
            per_decade = _slope_text(here_slopes[here_slopes["metric"] == metric + "_decade_slope"])
            ax.errorbar(rows["n"], rows["value"], yerr=_ci(rows), fmt="o-", color=colour, capsize=3,
                        label=f"{label}, log-log slope {log_log}, change per tenfold n {per_decade}")
        rates = rate[rate["K"] == k].sort_values("n")
        slope = slopes[(slopes["K"] == k) & (slopes["p"] == p) & (slopes["q"] == q) & (slopes["metric"] == "rate_slope")]
        ax.errorbar(rates["n"], rates["value"], yerr=_ci(rates), fmt="s--", color="0.3", capsize=3,
                    label=f"W1(mu_n, mu'_n) (rate of E W1(mu*, mu_n)), slope {_slope_text(slope)}")
        if len(rates):
            n0, v0 = float(rates["n"].iloc[0]), float(rates["value"].iloc[0])
            grid = np.array([rates["n"].min(), rates["n"].max()], float)
            ax.plot(grid, v0 * (grid / n0) ** -0.5, color="0.6", linewidth=0.8, label="n^(-1/2)")
        ax.axhline(0.0, color="black", linewidth=0.6)
        ax.set_xscale("log")
        # Symmetric log: a difference of trained models can be negative; |y| > 0.01 is
        # logarithmic (the power law), below it linear.
        ax.set_yscale("symlog", linthresh=0.01)
        ax.set(xlabel="training-set size n", ylabel="W1 difference", title=f"K={k}, p={p}, q={q}")
        ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.14))
    return save_figure(fig, out_dir / "estimation_vs_n",
                       title="Estimation term d(n) - d(inf) against n (95% CI over seeds; symlog axis), next to the rate "
                             "of the empirical law")


def _slope_text(rows: pd.DataFrame) -> str:
    if rows.empty or not np.isfinite(rows["value"].iloc[0]):
        return "n/a"
    row = rows.iloc[0]
    fitted = f" ({int(row['n_diverged'])} seeds not fitted)" if row["n_diverged"] else ""
    if not np.isfinite(row["ci_low"]):
        return f"{row['value']:.2f}{fitted}"
    return f"{row['value']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]{fitted}"


def _drops_text(rows: pd.DataFrame) -> str:
    """"; drop q->q' d [lo, hi]" for each saved paired trend row (the study's TRENDS)."""
    parts = [f"drop {int(r.q)}->{int(r.versus)} {r.value:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}]"
             for r in rows.sort_values("q").itertuples() if np.isfinite(r.value)]
    return "; " + ", ".join(parts) if parts else ""


def optimisation_vs_q(run: kit.Run, out_dir: pathlib.Path) -> list[pathlib.Path]:
    table = run.table
    terms = _terms(table)
    optim = terms[(terms["metric"] == "eps_optim") & (terms["n"] == INFINITY)]
    gaps = table[(table["metric"] == "metric_gap") & table["seed"].isna()]
    ks = sorted(optim["K"].unique())
    fig, axes = plt.subplots(1, len(ks), figsize=(4.6 * len(ks), 3.8), squeeze=False, layout="constrained")
    for ax, k in zip(axes[0], ks):
        for p, rows in optim[optim["K"] == k].groupby("p"):
            rows = rows.sort_values("q")
            drops = lambda metric: _drops_text(table[(table["metric"] == metric) & (table["K"] == k) & (table["p"] == p)])
            ax.errorbar(rows["q"], rows["value"], yerr=_ci(rows), fmt="o-", capsize=3,
                        label=f"eps_optim, p={int(p)}{drops('eps_optim_drop')}")
            gap = gaps[(gaps["K"] == k) & (gaps["p"] == p)].sort_values("q")
            if len(gap):
                ax.errorbar(gap["q"], gap["value"], yerr=_ci(gap), fmt="x:", capsize=3,
                            label=f"W1 - fresh-critic IPM, p={int(p)}{drops('metric_gap_drop')}")
        ax.axhline(0.0, color="black", linewidth=0.6)
        ax.set(xlabel="critic depth q", ylabel="W1 difference", title=f"K = {int(k)}, n = inf")
        ax.legend(fontsize=7)
    return save_figure(fig, out_dir / "optimisation_vs_q",
                       title="eps_optim = d(inf, p, q) - d_oracle(p) and the metric gap, 95% CI over seeds")


def critic_vs_w1(run: kit.Run, out_dir: pathlib.Path) -> list[pathlib.Path]:
    fits = run.table[(run.table["model"] == "fresh_critic") & run.table["seed"].notna()]
    if fits.empty:
        return []
    wide = fits.pivot_table(index=["K", "p", "q", "seed"], columns="metric", values="value").reset_index()
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    for (p, q), rows in wide.groupby(["p", "q"]):
        ax.scatter(rows["w1"], rows["critic_ipm_fresh"], s=22, label=f"fresh critic, p={int(p)}, q={int(q)}")
        ax.scatter(rows["w1"], rows["critic_ipm_training"], s=22, marker="x", color="0.4",
                   label="training critic" if (p, q) == tuple(wide[["p", "q"]].iloc[0]) else None)
    identity_line(ax, wide[["w1", "critic_ipm_fresh", "critic_ipm_training"]].values, label="IPM = W1")
    ax.set_xlabel("exact W1 (POT) of the frozen generator")
    ax.set_ylabel("critic's IPM on the same points")
    ax.set_title("Metric discrepancy d_Dq vs d_Lip1 (one point per seed)")
    ax.legend(fontsize=6)
    return save_figure(fig, out_dir / "critic_ipm_vs_exact_w1")


draw = figure_draw(study="error_decomposition", missing="decomposition cell",
                   drawable=lambda table: "seed" in table.columns and not _terms(table).empty,
                   figures=(stacked_bars, estimation_vs_n, optimisation_vs_q, critic_vs_w1))
main = figure_command(draw, prog="python -m figures.error_decomposition", description=__doc__)

if __name__ == "__main__":
    main()
