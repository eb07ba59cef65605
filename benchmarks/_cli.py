"""What the benchmarks' command lines share: counts checked while the arguments are parsed."""

from __future__ import annotations

import argparse


def count(text: str) -> int:
    """An argparse ``type`` for an integer >= 1; anything else is a usage error naming the value."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value
