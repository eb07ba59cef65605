"""Reproducer for the CPU hang that keeps jax below 0.10 (seen with jax/jaxlib 0.10.2).

    python benchmarks/jax_deadlock_repro.py --runs 3 --timeout 300

Runs the 2-D Jensen-Shannon quadrature `theory.js(gaussian_grid(4), gaussian_grid(9))`
(about 8-30 s on a 2-core CPU with jax 0.9.2) in `--runs` fresh interpreters, each under
a wall-clock timeout, and reports for each whether it finished or hung (a result that
never becomes ready: the process sits idle until killed). Where gdb is installed, a hung
run's native threads are read before it is killed and the frames that show the cause are
printed (`--stacks DIR` keeps the whole backtraces).

What the stacks show (jax/jaxlib 0.10.2, 2026-12-02, 2-core Intel Xeon, every hung run
alike): both threads of XLA:CPU's intra-op pool ("tf_XLAEigen", sized to the 2 cores) wait
in `absl::BlockingCounter::Wait` under `jax::ParallelBatchMap`, inside jaxlib's LAPACK
triangular solve (`lapack_dtrsm_ffi`, the Gaussian log-densities' `solve_triangular`),
while every other pool thread is idle and the main thread waits for the result. Each
kernel split its batch into tasks queued on the same pool and waits for them; with every
pool thread waiting, no thread is left to run them. `XLA_FLAGS=--xla_cpu_multi_thread_eigen=false`
does not avoid it (2 of 8 runs hung, same frames).

Retests on this project's 2-core CPUs with jax 0.10.2 (the newest the package index
served): 1 of 3 hung; on 2026-12-01, 4 of 5 (killed at 300 s); on 2026-12-02, 1 of 3 on
an AMD EPYC, and 5 of 10 (killed at 90 s) on an Intel Xeon. Exits 1 if any run hung.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

_CALL = (
    "import jax, theory; "
    "print(jax.__version__, theory.js(theory.gaussian_grid(4), theory.gaussian_grid(9)).value, flush=True)"
)

# Frames that name the cause; the rest of a hung process's threads idle in their pools.
_TELLING = re.compile(r"lapack_\w+_ffi|ParallelBatchMap|BlockingCounter::Wait")


def native_stacks(pid: int) -> str | None:
    """``thread apply all bt`` of a live process through gdb, or None without gdb."""
    gdb = shutil.which("gdb")
    if gdb is None:
        return None
    out = subprocess.run([gdb, "-p", str(pid), "-batch", "-ex", "thread apply all bt 40"],
                         capture_output=True, text=True, timeout=120, check=False)
    return out.stdout


def telling_frames(stacks: str) -> list[str]:
    """The threads whose backtraces hold a frame of the cause, as ``thread: frame | frame``."""
    found = []
    for block in re.split(r"\n(?=Thread \d+ )", stacks):
        frames = [name for name in re.findall(r"\bin (\S+?)(?:<|\s*\()", block) if _TELLING.search(name)]
        if frames:
            header = re.match(r"Thread (\d+) .*?\"([^\"]*)\"", block)
            thread = f"thread {header.group(1)} ({header.group(2)})" if header else "a thread"
            found.append(f"{thread}: {' | '.join(dict.fromkeys(frames))}")
    return found


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="fresh interpreters to try (default 3)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds before a run counts as hung (default 300)")
    parser.add_argument("--stacks", type=pathlib.Path, default=None,
                        help="directory to keep each hung run's full native backtraces in (default: none)")
    args = parser.parse_args(argv)
    if args.runs < 1 or not args.timeout > 0:
        parser.error(f"--runs must be >= 1 and --timeout > 0, got {args.runs} and {args.timeout}")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    hung = 0
    for run in range(1, args.runs + 1):
        start = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-c", _CALL], env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        try:
            out, err = child.communicate(timeout=args.timeout)
            status = f"finished rc={child.returncode}: {out.strip() or err.strip()[-300:]}"
        except subprocess.TimeoutExpired:
            hung += 1
            try:
                stacks = native_stacks(child.pid)
            finally:  # a hung child is killed even if reading its stacks fails
                child.kill()
                child.communicate()
            if stacks is None:
                status = "HUNG (killed at the timeout; install gdb to see where)"
            else:
                frames = telling_frames(stacks)
                status = "HUNG (killed at the timeout); " + ("; ".join(frames) if frames else "no LAPACK frames waiting")
                if args.stacks is not None:
                    args.stacks.mkdir(parents=True, exist_ok=True)
                    (args.stacks / f"run{run}.txt").write_text(stacks)
        print(f"run {run}: {time.perf_counter() - start:.0f} s, {status}", flush=True)
    print(f"{hung}/{args.runs} runs hung")
    sys.exit(1 if hung else 0)


if __name__ == "__main__":
    main()
