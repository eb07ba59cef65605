"""What every figure module shares around its panels: the run it draws from
(``run_to_draw``), its ``draw(run_dir)`` (``figure_draw``) and its command line
(``python -m figures.NAME RUN_DIR``: ``figure_command``).

A figure module declares its figures, each ``figure(run, out_dir) -> list[Path]``, and
builds the rest::

    draw = figure_draw(study="NAME", drawable=..., missing="trained cell", figures=(heatmaps, samples))
    main = figure_command(draw, prog="python -m figures.NAME", description=__doc__)
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Callable, Sequence

import pandas as pd

from figures.style import apply_style
from studies import kit
from studies.kit import DamagedFileError, WrongStudyError

__all__ = ["Figure", "NothingToDrawError", "figure_command", "figure_draw", "figure_main", "run_to_draw"]


class NothingToDrawError(ValueError):
    """The run holds no cell a figure can be drawn from (yet)."""


Figure = Callable[[kit.Run, pathlib.Path], list[pathlib.Path]]
"""One figure of a run: ``figure(run, out_dir)`` draws from ``run.table`` (and ``run.config``,
``run.records`` where it needs them) into `out_dir` and returns the paths it wrote (none
when the run holds nothing for it)."""


def run_to_draw(run_dir: str | pathlib.Path, *, study: str, drawable: Callable[[pd.DataFrame], bool],
                missing: str) -> tuple[kit.Run, pathlib.Path]:
    """Load a saved run of `study`, check it holds something to draw, set the house style.

    Args:
        run_dir: a run directory (``results/<study>/<run-name>``).
        study: the study the run must come from (another study's run is refused).
        drawable: True when the run's table holds at least one cell the figures use.
        missing: what is missing otherwise, for the message ("trained cell").

    Returns:
        The run (kit.load_run) and the directory its figures go to, ``<run_dir>/figures``.

    Raises:
        FileNotFoundError, DamagedFileError, WrongStudyError: from kit.load_run.
        NothingToDrawError: if `drawable` is False for the run's table.
    """
    run = kit.load_run(run_dir, study=study)
    if not drawable(run.table):
        raise NothingToDrawError(f"{run.run_dir} holds no {missing} yet (only {sorted(run.records)}): nothing to draw")
    apply_style()
    return run, run.run_dir / "figures"


def figure_draw(*, study: str, drawable: Callable[[pd.DataFrame], bool], missing: str,
                figures: Sequence[Figure]) -> Callable[[str | pathlib.Path], list[pathlib.Path]]:
    """A figure module's ``draw(run_dir)``: load the run (:func:`run_to_draw`), draw each of `figures`.

    Args:
        study, drawable, missing: as for :func:`run_to_draw`.
        figures: the module's figures, in the order their paths are returned.

    Returns:
        ``draw(run_dir) -> list[Path]``: every figure of the run drawn into
        ``<run_dir>/figures``, the paths in the order of `figures`. Its docstring names the
        figures and what it raises.
    """
    figures = tuple(figures)

    def draw(run_dir: str | pathlib.Path) -> list[pathlib.Path]:
        run, out_dir = run_to_draw(run_dir, study=study, drawable=drawable, missing=missing)
        return [path for figure in figures for path in figure(run, out_dir)]

    draw.__doc__ = (f"Draw every figure of a saved {study} run into RUN_DIR/figures and return their paths.\n\n"
                    f"Figures, in this order: {', '.join(figure.__name__ for figure in figures)}.\n\n"
                    f"Raises:\n    NothingToDrawError: if the run holds no {missing} yet.\n"
                    f"    FileNotFoundError, DamagedFileError, WrongStudyError: from kit.load_run.\n")
    return draw


def figure_command(draw: Callable[[pathlib.Path], list[pathlib.Path]], *, prog: str,
                   description: str | None) -> Callable[[Sequence[str] | None], None]:
    """A figure module's ``main(argv=None)``: :func:`figure_main` of its `draw`."""

    def main(argv: Sequence[str] | None = None) -> None:
        figure_main(draw, prog=prog, description=description, argv=argv)

    return main


def figure_main(draw: Callable[[pathlib.Path], list[pathlib.Path]], *, prog: str, description: str | None,
                argv: Sequence[str] | None = None) -> None:
    """Parse RUN_DIR, draw, print the paths; exit 2 with a message naming the problem."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=pathlib.Path, help="a run directory, e.g. results/STUDY/quick")
    args = parser.parse_args(argv)
    try:
        paths = draw(args.run_dir)
    except (FileNotFoundError, DamagedFileError, WrongStudyError, NothingToDrawError) as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    for path in paths:
        print(path)
