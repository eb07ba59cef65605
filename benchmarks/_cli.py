"""What the benchmarks' command lines share: counts checked while the arguments are parsed."""

from __future__ import annotations

import argparse

from theory.validation import check_count


def count(text: str) -> int:
    """An argparse ``type`` for an integer >= 1 (``theory.validation.check_count``'s rule).

    Anything else is a usage error naming the value (argparse names the option).
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    try:
        return check_count("a count", value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
