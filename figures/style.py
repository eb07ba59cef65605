"""One look for every figure: seaborn's paper style, PDF + PNG, headless."""

from __future__ import annotations

import pathlib
from collections.abc import Mapping
from typing import Any

import matplotlib

matplotlib.use("Agg")  # figures are files; no display is assumed

import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402


def apply_style() -> None:
    """seaborn 'paper' context, white grid, colour-blind palette."""
    sns.set_theme(context="paper", style="whitegrid", palette="colorblind", font_scale=1.1)


def save_figure(fig, path_stem: str | pathlib.Path, *, title: str | None = None, title_size: float | None = None,
                tight: bool | Mapping[str, Any] = False, dpi: int = 150) -> list[pathlib.Path]:
    """Finish `fig` and write it as `<path_stem>.pdf` and `<path_stem>.png`; close it, return the paths.

    Args:
        fig: the matplotlib figure.
        path_stem: the path without its suffix (its folder is made if missing).
        title: the figure's suptitle, set before the layout so that the layout makes room for it.
        title_size: the suptitle's font size; None: the style's ``figure.titlesize``.
        tight: ``fig.tight_layout()`` before saving (for figures made without
            ``layout="constrained"``); a mapping: its keywords (``{"rect": (0, 0.05, 1, 1)}``).
        dpi: resolution of the PNG.

    Returns:
        The paths written, PDF first.
    """
    if title is not None:
        # suptitle(fontsize=None) would fall back to font.size, not figure.titlesize.
        fig.suptitle(title, **({} if title_size is None else {"fontsize": title_size}))
    if tight is not False:
        fig.tight_layout(**({} if tight is True else tight))
    stem = pathlib.Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".pdf"), stem.with_suffix(".png")]
    for path in paths:
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return paths
