"""One look for every figure: seaborn's paper style, PDF + PNG, headless."""

from __future__ import annotations

import pathlib

import matplotlib

matplotlib.use("Agg")  # figures are files; no display is assumed

import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402


def apply_style() -> None:
    """seaborn 'paper' context, white grid, colour-blind palette."""
    sns.set_theme(context="paper", style="whitegrid", palette="colorblind", font_scale=1.1)


def save_figure(fig, path_stem: str | pathlib.Path, *, dpi: int = 150) -> list[pathlib.Path]:
    """Write `fig` as `<path_stem>.pdf` and `<path_stem>.png`, close it, return the paths."""
    stem = pathlib.Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".pdf"), stem.with_suffix(".png")]
    for path in paths:
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return paths
