"""What a study's ``run`` returns: the tidy table, where it was saved, the figures drawn."""

from __future__ import annotations

import dataclasses
import importlib
import pathlib
from collections.abc import Callable
from typing import Any

import pandas as pd

__all__ = ["Results", "finish", "print_tables"]


@dataclasses.dataclass(frozen=True)
class Results:
    """A study's results.

    Attributes:
        table: the tidy rows of every cell (one row per observation).
        run_dir: the run directory, None for a run kept in memory.
        figures: the paths of the figures drawn at the end.
        summarise: the study's headline table as a function of ``table``.
    """

    table: pd.DataFrame
    run_dir: pathlib.Path | None = None
    figures: tuple[pathlib.Path, ...] = ()
    summarise: Callable[[pd.DataFrame], pd.DataFrame] | None = None

    def summary(self) -> pd.DataFrame:
        """The study's headline numbers (intervals from ``studies.kit.stats``)."""
        if self.summarise is None:
            raise ValueError("this study defines no summary")
        return self.summarise(self.table)


def finish(store: Any, table: pd.DataFrame, *, figures: str | None, summarise: Callable | None = None) -> Results:
    """The end of every run: draw the figures of a saved run, return its :class:`Results`.

    Args:
        store: the run's ``ResultStore`` (None: in memory, no figures).
        table: what ``run_cells`` returned.
        figures: the figure module (``"figures.NAME"``, imported only here: studies never
            import matplotlib themselves), or None to draw nothing.
        summarise: the study's summary function.
    """
    paths: tuple = ()
    if store is not None and figures is not None:
        paths = tuple(importlib.import_module(figures).draw(store.run_dir))
    return Results(table=table, run_dir=None if store is None else store.run_dir, figures=paths, summarise=summarise)


def print_tables(sections, *, width: int = 200, column_width: int = 60) -> None:
    """Print a study's headline tables after a run: each ``(title, frame)`` that has rows.

    Args:
        sections: ``(title, frame)`` pairs, in order; a frame may also be a string (a
            line printed as it is). Empty frames are skipped.
        width, column_width: pandas' display width and largest column width.
    """
    with pd.option_context("display.width", width, "display.max_colwidth", column_width, "display.max_columns", 40):
        for title, frame in sections:
            if isinstance(frame, str):
                print(f"{title}: {frame}" if title else frame)
            elif len(frame):
                print(f"\n{title}:")
                print(frame.to_string(index=False))
