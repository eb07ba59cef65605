"""What every figure module shares around its panels: the run it draws from
(``run_to_draw``) and its command line (``python -m figures.NAME RUN_DIR``)."""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Callable, Sequence

import pandas as pd

from figures.style import apply_style
from studies import kit
from studies.kit import DamagedFileError, WrongStudyError

__all__ = ["NothingToDrawError", "figure_main", "run_to_draw"]


class NothingToDrawError(ValueError):
    """The run holds no cell a figure can be drawn from (yet)."""


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
