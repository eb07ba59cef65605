"""The command line every figure module shares: ``python -m figures.NAME RUN_DIR``."""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Callable, Sequence

from studies.kit import DamagedFileError, WrongStudyError

__all__ = ["NothingToDrawError", "figure_main"]


class NothingToDrawError(ValueError):
    """The run holds no cell a figure can be drawn from (yet)."""


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
