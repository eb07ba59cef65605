"""Figures of the reverse-diffusion study, drawn from its saved results only.

    python -m figures.reverse_diffusion results/reverse_diffusion/quick

Reads the verified cells and ``config.json`` of a run directory (``kit.load_run``; the
target is rebuilt from the saved config) and writes, under ``<run>/figures/`` (PDF and PNG):

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
- ``reverse_diffusion_kl``: KL(q_ODE || p_t_end) of the probability-flow ODE samplers against
  NFE (exact and learned score, mean +- 1 s.e. over seeds), beside the score-error bound on
  the reverse SDE's KL (Song et al. 2021, Thm. 1) of the learned score.
- ``reverse_diffusion_convergence``: |spread error| (exact score) against the step size,
  log-log, with the order fitted per seed over the resolved budgets.

Every interval is kit.over_replicates over seeds (diverged seeds counted).
"""

from __future__ import annotations

import math
import pathlib

import numpy as np
import pandas as pd

import theory
from figures.command import figure_command, figure_draw
from figures.panels import over_seeds
from figures.style import save_figure
from studies import kit

import matplotlib.pyplot as plt
import matplotlib.ticker  # noqa: E402  (figures.style selects the Agg backend first)

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
    """over_seeds at each budget (index: setting) with its mean NFE, ascending in NFE (error NaN for one seed)."""
    stats = over_seeds(rows, "setting").set_index("setting")
    return stats.assign(nfe=rows.groupby("setting")["nfe"].mean()).sort_values("nfe")


def _errorbars_by_score(ax, rows: pd.DataFrame, *, magnitude: bool = False) -> None:
    """One sampler's rows against NFE, mean ± 1 s.e. over seeds per budget, one series per score
    (exact: C0 solid, learned: C3 dashed); `magnitude` plots |mean| for a log axis."""
    for colour, (kind, style) in zip(("C0", "C3"), _KINDS.items()):
        selected = rows[rows["score"] == kind]
        if selected.empty:
            continue
        stats = _by_budget(selected)
        ax.errorbar(stats["nfe"], stats["value"].abs() if magnitude else stats["value"], yerr=stats["error"].fillna(0.0),
                    color=colour, markersize=3.5, capsize=2, label=f"{kind} score", **style)


def _lines_by_sampler(ax, rows: pd.DataFrame, samplers: list[str]) -> None:
    """The mean over seeds per budget against NFE, one colour per sampler (labelled once), one
    line style per score (solid exact, dashed learned)."""
    for i, sampler in enumerate(samplers):
        for kind, style in _KINDS.items():
            selected = rows[(rows["sampler"] == sampler) & (rows["score"] == kind)]
            if selected.empty:
                continue
            stats = _by_budget(selected)
            ax.plot(stats["nfe"], stats["value"], color=f"C{i % 10}", markersize=3,
                    label=_title(sampler) if kind == "exact" else None, **style)


def _floor(table: pd.DataFrame) -> tuple[float, float]:
    rows = table[table["metric"] == "w1_floor"]
    if rows.empty:
        return math.nan, math.nan
    return float(rows["value"].iloc[0]), float(rows["error"].iloc[0])


def _grid(n: int, columns: int = 4) -> tuple[int, int]:
    columns = min(columns, n)
    return math.ceil(n / columns), columns


def _w1_vs_nfe(run: kit.Run, out: pathlib.Path) -> list[pathlib.Path]:
    table = run.table
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
        _errorbars_by_score(ax, w1[w1["sampler"] == sampler])
        ax.set_title(_title(sampler), fontsize=9)
        ax.set(xscale="log", yscale="log")
    for ax in axes.flat[len(samplers):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("score evaluations (NFE)")
    for ax in axes[:, 0]:
        ax.set_ylabel("W1 to target sample")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, frameon=False, bbox_to_anchor=(0.5, -0.02))
    seeds, n = w1["seed"].nunique(), int(w1["n"].iloc[0])
    return save_figure(fig, out / "reverse_diffusion_w1_vs_nfe", dpi=110, tight={"rect": (0, 0.05, 1, 1)},
                       title=f"W1 between {n} samples and {n} fresh target draws, mean +- 1 s.e. over {seeds} seeds "
                             f"(same prior points and noise for both scores)", title_size=9)


def _modes(run: kit.Run, out: pathlib.Path) -> list[pathlib.Path]:
    table = run.table
    samplers = _samplers(table)
    if not samplers:
        return []
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, metric in ((left, "mass_near_any_mode"), (right, "mode_weight_tv")):
        rows = table[table["metric"] == metric]
        _lines_by_sampler(ax, rows, samplers)
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
    return save_figure(fig, out / "reverse_diffusion_modes", tight=True)


def _density_grid(config: dict, lim: float = 4.0, n: int = 200):
    """The target's density on a grid, the target rebuilt from the saved config."""
    target = theory.gaussian_grid(int(config["grid_modes"]))
    xs = np.linspace(-lim, lim, n)
    xx, yy = np.meshgrid(xs, xs)
    points = np.stack([xx.ravel(), yy.ravel()], axis=1)
    density = np.exp(np.asarray(target.log_prob(points), np.float64)).reshape(xx.shape)
    return xx, yy, density


def _points(rows: pd.DataFrame) -> np.ndarray:
    wide = rows.pivot_table(index="point", columns="coordinate", values="value")
    return wide.sort_index().to_numpy()


def _samples(run: kit.Run, out: pathlib.Path) -> list[pathlib.Path]:
    rows = run.table[run.table["metric"] == "sample_position"]
    samplers = [s for s in dict.fromkeys(rows["sampler"]) if s != "target"]
    if not samplers:
        return []
    columns = []
    for kind in ("exact", "learned"):
        settings = rows[(rows["score"] == kind) & (rows["sampler"] != "target")].groupby("sampler")["setting"]
        count = int(settings.nunique().max()) if len(settings.size()) else 0
        columns += [(kind, j) for j in range(count)]
    xx, yy, density = _density_grid(run.config)
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
    return save_figure(fig, out / "reverse_diffusion_samples", dpi=120, tight={"pad": 0.3})


def _trajectories(run: kit.Run, out: pathlib.Path) -> list[pathlib.Path]:
    rows = run.table[run.table["metric"] == "trajectory_position"]
    if rows.empty:
        return []
    kinds = list(dict.fromkeys(rows["score"]))
    samplers = list(dict.fromkeys(rows["sampler"]))
    xx, yy, density = _density_grid(run.config)
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
    return save_figure(fig, out / "reverse_diffusion_trajectories", title="same prior points (o) to t_end (*)", title_size=9,
                       tight=True)


def _over_seeds(rows: pd.DataFrame, by: str) -> pd.DataFrame:
    """over_seeds at each value of `by`, the error 0 where one seed leaves it undefined."""
    return over_seeds(rows, by).fillna({"error": 0.0})


def _fisher(run: kit.Run, out: pathlib.Path) -> list[pathlib.Path]:
    table = run.table
    fisher = _over_seeds(table[table["metric"] == "fisher_divergence"], "t")
    loss = _over_seeds(table[table["metric"] == "train_loss"], "step")
    if fisher.empty and loss.empty:
        return []
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(12, 3.6))
    if not fisher.empty:
        left.errorbar(fisher["t"], fisher["value"], yerr=fisher["error"], marker="o", markersize=3,
                      capsize=2, label="F(t) = E||s_theta - grad log p_t||^2 (±1 s.e. over seeds)")
        moment = _over_seeds(table[table["metric"] == "score_second_moment"], "t")
        left.plot(moment["t"], moment["value"], color="0.4", linestyle=":", marker=".",
                  label="E||grad log p_t||^2 (scale)")
        left.set(xscale="log", yscale="log", xlabel="t")
        left.legend(fontsize=7, frameon=False)
        left.set_title("learned score vs exact score", fontsize=9)
        epsilon = _over_seeds(table[table["metric"] == "epsilon_error"], "t")
        middle.errorbar(epsilon["t"], epsilon["value"], yerr=epsilon["error"], marker="o", markersize=3,
                        capsize=2, color="C2")
        middle.set(xscale="log", yscale="log", xlabel="t")
        middle.set_title("s(t)^2 F(t) = E||eps_theta - eps*||^2", fontsize=9)
    if not loss.empty:
        right.errorbar(loss["step"], loss["value"], yerr=loss["error"], color="C1")
        right.set_xlabel("training step")
        right.set_yscale("log")
        right.set_title("simple loss (block means, mean ± s.e. over seeds)", fontsize=9)
    return save_figure(fig, out / "reverse_diffusion_fisher", tight=True)


def _cost(run: kit.Run, out: pathlib.Path) -> list[pathlib.Path]:
    """Wall time per budget from the cells' records (phase "sample setting=S"), against NFE."""
    w1 = run.table[run.table["metric"] == "w1"]
    rows = []
    for cell_id, record in run.records.items():
        if not cell_id.startswith("sampler="):
            continue
        for phase, seconds in record.get("phases_s", {}).items():
            if not phase.startswith("sample setting="):
                continue
            setting = float(phase.split("=", 1)[1])
            match = w1[(w1["setting"] == setting) & (cell_id == "sampler=" + w1["sampler"] + "_score=" + w1["score"]
                                                       + "_seed=" + w1["seed"].astype(int).astype(str))]
            if len(match):
                rows.append({"sampler": match["sampler"].iloc[0], "score": match["score"].iloc[0], "setting": setting,
                             "nfe": float(match["nfe"].iloc[0]), "value": seconds})
    if not rows:
        return []
    rows = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    _lines_by_sampler(ax, rows, list(dict.fromkeys(rows["sampler"])))
    ax.set(xscale="log", yscale="log", xlabel="score evaluations (NFE)", ylabel="wall time per run (s)")
    ax.set_title("sampling only, after compilation (solid exact, dashed learned)", fontsize=8)
    ax.legend(fontsize=7, frameon=False)
    return save_figure(fig, out / "reverse_diffusion_cost", tight=True)


def _kl(run: kit.Run, out: pathlib.Path) -> list[pathlib.Path]:
    table = run.table
    kl = table[table["metric"] == "kl_model_target"]
    if kl.empty:
        return []
    samplers = list(dict.fromkeys(kl["sampler"]))
    fig, axes = plt.subplots(1, len(samplers), figsize=(3.6 * len(samplers), 3.2), squeeze=False, sharey=True)
    bound = table[(table["metric"] == "score_error_bound") & (table["score"] == "learned")]
    for ax, sampler in zip(axes[0], samplers):
        # |KL| on a log axis: at coarse steps the discretised log-density can make the
        # estimate negative; open markers show those budgets.
        _errorbars_by_score(ax, kl[kl["sampler"] == sampler], magnitude=True)
        if len(bound):
            interval = kit.over_replicates(bound["value"].to_numpy())
            ax.axhline(interval.value, color="C2", linestyle=":", label="SDE bound, learned (Song et al. Thm. 1)")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # adaptive NFEs span < 1 decade
        ax.set_yscale("log")
        ax.set_title(_title(sampler), fontsize=9)
        ax.set_xlabel("score evaluations (NFE)")
    axes[0][0].set_ylabel("|KL(q_ODE || p_t_end)| (nats)")
    axes[0][0].legend(fontsize=7, frameon=False)
    return save_figure(fig, out / "reverse_diffusion_kl", tight=True, title_size=9,
                       title="KL of the probability-flow ODE sampler's law to the noised target, mean ± 1 s.e. over seeds")


def _convergence(run: kit.Run, out: pathlib.Path) -> list[pathlib.Path]:
    table = run.table
    rows = table[(table["metric"] == "spread_error") & (table["score"] == "exact")]
    rows = rows[~rows["sampler"].str.endswith("_adaptive")]
    if rows.empty:
        return []
    fig, ax = plt.subplots(figsize=(5.8, 4.0))
    for i, sampler in enumerate(dict.fromkeys(rows["sampler"])):
        stats = _by_budget(rows[rows["sampler"] == sampler])
        h = 1.0 / stats.index.to_numpy(dtype=float)  # step size as a fraction of the interval
        ax.errorbar(h, stats["value"].abs(), yerr=stats["error"].fillna(0.0), color=f"C{i % 10}", marker="o",
                    markersize=3, capsize=2, label=_title(sampler))
    errors = rows.groupby(["sampler", "setting"])["error"].apply(lambda e: float(np.sqrt(np.sum(e**2)) / len(e)))
    if len(errors) and np.isfinite(errors.median()):
        # Below this the error is not resolved: the Monte Carlo error of the mean over seeds.
        ax.axhline(float(errors.median()), color="0.4", linestyle=":", linewidth=1,
                   label="Monte Carlo error of the mean (pooled)")
    ax.set(xscale="log", yscale="log", xlabel="step size h (fraction of the time interval)",
           ylabel="|spread error| (exact score)")
    ax.set_title("mean ||x - m_k(x)||^2 minus its exact value, mean ± 1 s.e. over seeds", fontsize=8)
    ax.legend(fontsize=7, frameon=False)
    return save_figure(fig, out / "reverse_diffusion_convergence", tight=True)


draw = figure_draw(study="reverse_diffusion", drawable=lambda table: (table["metric"] == "w1").any(), missing="sampler cell",
                   figures=(_w1_vs_nfe, _modes, _samples, _trajectories, _fisher, _cost, _kl, _convergence))
main = figure_command(draw, prog="python -m figures.reverse_diffusion", description=__doc__)

if __name__ == "__main__":
    main()
