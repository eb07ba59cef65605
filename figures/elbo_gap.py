"""Figures of the ELBO-gap study, drawn from saved results only.

    python -m figures.elbo_gap results/elbo_gap/quick

writes into RESULTS_DIR/figures/: the gaps as stacked bars per VAE (approximation gap
log p - L[q*] below, amortisation gap L[q*] - L[q_phi] above, each mean ± s.e. over
seeds) beside KL(p_data || p_theta) and W1 against its floor; the IWAE bound against K
with log p as a line; the per-dimension KL to the prior against sigma^2 with the pPCA
closed form and its thresholds lambda_j, beside VQ-VAE codebook usage against C; decoded
samples and, for a 1-D latent, the exact posterior with q* and q_phi for a few points.
"""

from __future__ import annotations

import pathlib

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from figures.command import figure_command, figure_draw
from figures.panels import over_seeds
from figures.style import save_figure
from studies import kit

VAE_COORDS = ["latent_dim", "encoder_width", "decoder_width", "family", "beta"]


def _interval(values) -> kit.Interval:
    return kit.over_replicates(np.asarray(values, np.float64))


def _vae_rows(table: pd.DataFrame) -> pd.DataFrame:
    if "encoder_width" not in table.columns:
        return table.iloc[0:0]
    return table[(table["model"] == "vae") & table["encoder_width"].notna()]


def _has_vae_cell(table: pd.DataFrame) -> bool:
    vae = _vae_rows(table)
    return not vae.empty and (vae["metric"] == "approximation_gap").any()


def _base(config: dict) -> dict:
    return {"latent_dim": config["latent_dim"], "encoder_width": config["width"], "decoder_width": config["width"],
            "family": "factorised", "beta": 1.0}


def _label(coords: dict, base: dict) -> str:
    changed = [name for name in VAE_COORDS if name != "latent_dim" and coords[name] != base[name]]
    short = {"encoder_width": "enc", "decoder_width": "dec", "family": "q", "beta": "beta"}
    text = ", ".join(f"{short[n]}={coords[n]:g}" if isinstance(coords[n], float) else f"{short[n]}={coords[n]}" for n in changed)
    text = text or "base"
    if coords["latent_dim"] != base["latent_dim"]:
        text += f" (k={int(coords['latent_dim'])})"
    return text


def _configs(vae: pd.DataFrame, base: dict) -> list[dict]:
    found = vae[VAE_COORDS].drop_duplicates().to_dict("records")
    for c in found:
        c["latent_dim"], c["encoder_width"], c["decoder_width"] = int(c["latent_dim"]), int(c["encoder_width"]), int(c["decoder_width"])
        c["beta"] = float(c["beta"])
    order = {"encoder_width": 0, "decoder_width": 1, "family": 2, "beta": 3}

    def key(c):
        changed = [order[n] for n in order if c[n] != base[n]] or [-1]
        return (changed[0], str(c["family"]), c["encoder_width"], c["decoder_width"], c["beta"])

    return sorted(found, key=key)


def _select(frame: pd.DataFrame, coords: dict) -> pd.DataFrame:
    mask = np.ones(len(frame), bool)
    for name, value in coords.items():
        mask &= (frame[name] == value).to_numpy()
    return frame[mask]


def gap_bars(run: kit.Run, out_dir: pathlib.Path) -> list[pathlib.Path]:
    table, config = run.table, run.config
    vae = _vae_rows(table)
    base = _base(config)
    configs = _configs(vae, base)
    floor = _interval(table[table["metric"] == "w1_floor"]["value"])
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2), layout="constrained", gridspec_kw={"width_ratios": [2.2, 1, 1]})
    labels = [_label(c, base) for c in configs]
    x = np.arange(len(configs))
    stats = {m: [] for m in ("approximation_gap", "amortisation_gap", "kl_data_model", "w1")}
    for c in configs:
        sub = _select(vae, c)
        for metric in stats:
            stats[metric].append(_interval(sub[sub["metric"] == metric].sort_values("seed")["value"]))
    approx = np.array([i.value for i in stats["approximation_gap"]])
    amort = np.array([i.value for i in stats["amortisation_gap"]])
    ax = axes[0]
    ax.bar(x, approx, color="C0", label="approximation gap log p - L[q*]",
           yerr=[i.error for i in stats["approximation_gap"]], capsize=2)
    ax.bar(x, amort, bottom=approx, color="C1", label="amortisation gap L[q*] - L[q_phi]",
           yerr=[i.error for i in stats["amortisation_gap"]], capsize=2)
    ax.set_xticks(x, labels, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("nats per point")
    ax.set_title("ELBO gap of the amortised bound, split (mean ± s.e. over seeds)")
    ax.legend(fontsize=8)
    for ax, metric, title in ((axes[1], "kl_data_model", "KL(p_data || p_theta), exact"),
                              (axes[2], "w1", "W1 of samples (POT)")):
        values = [i.value for i in stats[metric]]
        ax.errorbar(values, x, xerr=[i.error for i in stats[metric]], fmt="o", color="C2")
        ax.set_yticks(x, labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(title)
    if np.isfinite(floor.value):
        axes[2].axvline(floor.value, color="black", linestyle="--", linewidth=1, label=f"floor {floor.value:.3f}")
        axes[2].legend(fontsize=8)
    return save_figure(fig, out_dir / "gaps",
                       title="Inference suboptimality (Cremer et al. 2018) read against the model's own fit")


def iwae_curves(run: kit.Run, out_dir: pathlib.Path) -> list[pathlib.Path]:
    vae = _vae_rows(run.table)
    base = _base(run.config)
    configs = [c for c in _configs(vae, base) if c["decoder_width"] == base["decoder_width"]
               and c["family"] == "factorised" and c["beta"] == 1.0 and c["latent_dim"] == base["latent_dim"]]
    fig, axes = plt.subplots(2, len(configs), figsize=(3.2 * len(configs), 6.2), squeeze=False, layout="constrained")
    for col, c in enumerate(configs):
        ax, gap_ax = axes[0][col], axes[1][col]
        sub = _select(vae, c)
        curve = over_seeds(sub[sub["metric"] == "iwae"].sort_values("seed"), "k")
        ax.errorbar(curve["k"], curve["value"], yerr=curve["error"], fmt="o-", label="IWAE L_K(q_phi)")
        log_p = _interval(sub[sub["metric"] == "iwae_log_marginal"].sort_values("seed")["value"])
        ax.axhline(log_p.value, color="black", linewidth=1, label="exact log p")
        ax.set_xscale("log")
        ax.set_title(_label(c, base), fontsize=9)
        # The paired gap log p - L_K per seed (same points), free of the between-seed
        # spread of log p itself.
        curve = over_seeds(sub[sub["metric"] == "iwae_gap"].sort_values("seed"), "k")
        gap_ax.errorbar(curve["k"], curve["value"], yerr=curve["error"], fmt="o-", color="C1")
        gap_ax.set_xscale("log")
        if (curve["value"] > 0).all():
            gap_ax.set_yscale("log")
        gap_ax.set_xlabel("K")
    axes[0][0].set_ylabel("nats (mean over the IWAE points)")
    axes[1][0].set_ylabel("log p - L_K (paired, per seed)")
    axes[0][0].legend(fontsize=7)
    return save_figure(fig, out_dir / "iwae",
                       title="IWAE bounds approach log p as K grows (Burda et al. 2016); mean ± s.e. over seeds")


def collapse(run: kit.Run, out_dir: pathlib.Path) -> list[pathlib.Path]:
    table, config = run.table, run.config
    if "noise_variance" not in table.columns:
        return []
    sub = table[table["noise_variance"].notna()]
    decoders = [d for d in ("linear", "mlp") if (sub["decoder"] == d).any()]
    has_vq = "n_codes" in table.columns and (table["model"] == "vqvae").any()
    n_panels = len(decoders) + int(has_vq)
    fig, axes = plt.subplots(1, n_panels, figsize=(4.4 * n_panels, 3.6), squeeze=False, layout="constrained")
    eigenvalues = np.asarray(config["collapse_eigenvalues"], np.float64)
    s2_line = np.geomspace(sub["noise_variance"].min() / 2, sub["noise_variance"].max() * 2, 200)
    for ax, decoder in zip(axes[0], decoders):
        kl = sub[(sub["decoder"] == decoder) & (sub["metric"] == "kl_per_dim")]
        for dim in sorted(kl["dim"].unique()):
            curve = over_seeds(kl[kl["dim"] == dim].sort_values("seed"), "noise_variance")
            ax.errorbar(curve["noise_variance"], curve["value"], yerr=curve["error"], fmt="o", color=f"C{int(dim)}",
                        label=f"trained, dim {int(dim)}")
        # The closed form, drawn from the saved eigenvalues (sorted as the dims are).
        for j, lam in enumerate(np.sort(eigenvalues)[::-1]):
            ax.plot(s2_line, 0.5 * np.log(np.maximum(lam / s2_line, 1.0)), color=f"C{j}", linewidth=1,
                    linestyle="-" if decoder == "linear" else ":")
            ax.axvline(lam, color=f"C{j}", linewidth=0.6, linestyle="--")
        ax.set_xscale("log")
        ax.set_xlabel("observation noise sigma^2")
        ax.set_ylabel("E_x KL(q(z_j | x) || N(0, 1))")
        ax.set_title(f"{'linear VAE (pPCA): closed form' if decoder == 'linear' else 'MLP decoder: closed form dotted, for reference'}",
                     fontsize=9)
        ax.legend(fontsize=7)
    if has_vq:
        ax = axes[0][-1]
        vq = table[table["model"] == "vqvae"]
        cs = sorted(vq["n_codes"].dropna().unique())
        for metric, color, label in (("perplexity", "C0", "perplexity exp H(codes)"), ("dead_codes", "C3", "dead codes")):
            curve = over_seeds(vq[vq["metric"] == metric].sort_values("seed"), "n_codes")
            ax.errorbar(curve["n_codes"], curve["value"], yerr=curve["error"], fmt="o-", color=color, label=label)
        ax.plot(cs, cs, color="black", linewidth=0.8, linestyle=":", label="C (all codes used)")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("codebook size C")
        ax.set_title("VQ-VAE codebook collapse", fontsize=9)
        ax.legend(fontsize=7)
    return save_figure(fig, out_dir / "collapse",
                       title="Posterior collapse (directions with lambda_j <= sigma^2; Lucas et al. 2019) beside "
                             "codebook collapse")


def samples_and_posteriors(run: kit.Run, out_dir: pathlib.Path, max_cells: int = 4) -> list[pathlib.Path]:
    vae = _vae_rows(run.table)
    samples = vae[vae["metric"] == "sample"]
    if samples.empty:
        return []
    base = _base(run.config)
    configs = _configs(vae, base)[:max_cells]
    posterior = vae[vae["metric"] == "posterior_density"]
    fig, axes = plt.subplots(2, len(configs), figsize=(3.0 * len(configs), 6.0), squeeze=False, layout="constrained")
    for col, c in enumerate(configs):
        ax = axes[0][col]
        sub = _select(samples, c)
        for source, color in (("target", "0.6"), ("generated", "C3")):
            pts = sub[sub["source"] == source]
            ax.scatter(pts["x"], pts["y"], s=3, color=color, label=source)
        ax.set_title(_label(c, base), fontsize=9)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax = axes[1][col]
        dens = _select(posterior, c)
        if dens.empty:
            ax.set_axis_off()
            continue
        for point in sorted(dens["point"].unique()):
            d = dens[dens["point"] == point]
            for source, style in (("exact", "-"), ("optimal", "--"), ("amortised", ":")):
                curve = d[d["source"] == source].sort_values("z")
                ax.plot(curve["z"], curve["value"], linestyle=style, color=f"C{int(point)}",
                        label=source if point == 0 else None)
        ax.set_xlabel("z")
        ax.set_title("p(z|x) solid, q* dashed, q_phi dotted", fontsize=8)
    axes[0][0].legend(fontsize=6, markerscale=3)
    axes[1][0].legend(fontsize=6)
    return save_figure(fig, out_dir / "samples_posteriors",
                       title="Decoded samples (seed 0) and posteriors of three held-out points")


draw = figure_draw(study="elbo_gap", drawable=_has_vae_cell, missing="VAE cell",
                   figures=(gap_bars, iwae_curves, collapse, samples_and_posteriors))
main = figure_command(draw, prog="python -m figures.elbo_gap", description=__doc__)

if __name__ == "__main__":
    main()
