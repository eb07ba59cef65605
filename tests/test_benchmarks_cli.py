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


# Two threads of a hung jaxlib 0.10.2 run, cut from gdb's `thread apply all bt` (paths
# shortened): an idle pool thread, and a pool thread blocked inside the LAPACK kernel.
_HUNG_STACKS = """\
Thread 6 (Thread 0x7fc1d39f96c0 (LWP 4054) "python"):
#5  0x00007fc1f78a741d in std::condition_variable::wait(std::unique_lock<std::mutex>&) () from libstdc++.so.6
#6  0x00007fc1f0aca112 in Eigen::EventCount::CommitWait(Eigen::EventCount::Waiter*) () from jaxlib/libjax_common.so
Thread 4 (Thread 0x7fc1d49fb6c0 (LWP 4052) "tf_XLAEigen"):
#0  syscall () at ../sysdeps/unix/sysv/linux/x86_64/syscall.S:38
#6  0x00007fc1e19ca181 in absl::lts_20260107::BlockingCounter::Wait() () from jaxlib/cpu/_lapack.so
#7  0x00007fc1e18d52de in jax::ParallelBatchMap(xla::ffi::ThreadPool, long, long, absl::lts_20260107::FunctionRef<void (long, long)>) () from jaxlib/cpu/_lapack.so
#8  0x00007fc1e18d5b10 in jax::TriMatrixEquationSolver<(xla::ffi::DataType)12>::Kernel() () from jaxlib/cpu/_lapack.so
#11 0x00007fc1e18d6a01 in lapack_dtrsm_ffi () from jaxlib/cpu/_lapack.so
"""


def test_the_deadlock_reproducer_names_the_threads_blocked_in_lapack():
    from benchmarks.jax_deadlock_repro import telling_frames

    assert telling_frames(_HUNG_STACKS) == [
        "thread 4 (tf_XLAEigen): absl::lts_20260107::BlockingCounter::Wait | jax::ParallelBatchMap | lapack_dtrsm_ffi"
    ]
    assert telling_frames(_HUNG_STACKS.split("Thread 4")[0]) == []


@pytest.mark.parametrize("argv", [["--runs", "0"], ["--timeout", "0"]])
def test_the_deadlock_reproducer_refuses_bad_arguments_before_running(argv, capsys):
    from benchmarks.jax_deadlock_repro import main

    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2 and "--runs must be >= 1" in capsys.readouterr().err
