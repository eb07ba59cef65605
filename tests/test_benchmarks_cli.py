"""benchmarks._cli: the benchmarks' counts are checked while their arguments are parsed."""

from __future__ import annotations

import argparse

import pytest

from benchmarks._cli import count


def test_count_accepts_integers_from_one():
    assert count("1") == 1 and count("48") == 48


@pytest.mark.parametrize(
    "text, message",
    [("0", "a count must be an integer >= 1, got 0"), ("-3", "got -3"), ("x", "got 'x'"), ("1.5", "got '1.5'")],
)
def test_count_refuses_other_values_naming_them(text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        count(text)


def test_a_bad_count_is_a_usage_error_naming_the_option(capsys):
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=count)
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["--steps", "0"])
    assert info.value.code == 2
    assert "argument --steps: a count must be an integer >= 1, got 0" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--cells", "5", "5,5"], "argument --cells: expected p,q, got '5'"),
        (["--cells", "5,0", "5,5"], "argument --cells: a count must be an integer >= 1, got 0"),
        (["--steps", "0"], "argument --steps: a count must be an integer >= 1, got 0"),
    ],
)
def test_the_parallel_cells_benchmark_refuses_bad_arguments_before_compiling(argv, message, capsys):
    from benchmarks import wgan_parallel_cells

    with pytest.raises(SystemExit) as info:
        wgan_parallel_cells.main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err
