"""Reproducer for the CPU hang that keeps jax below 0.10 (seen with jax/jaxlib 0.10.2).

    python benchmarks/jax_deadlock_repro.py --runs 3 --timeout 300

Runs the 2-D Jensen-Shannon quadrature `theory.js(gaussian_grid(4), gaussian_grid(9))`
(about 30 s on a 2-core CPU with jax 0.9.2) in `--runs` fresh interpreters, each under
a wall-clock timeout, and reports for each whether it finished or hung (a result that
never becomes ready: the process sits idle until killed). Retests on this project's
2-core CPU with jax 0.10.2 (the newest the package index served): first 1 of 3 runs
hung; on 2026-12-01, `--runs 5` gave 4 hung (killed at 300 s) and one finished in 36 s.
Exits 1 if any run hung.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

_CALL = (
    "import jax, theory; "
    "print(jax.__version__, theory.js(theory.gaussian_grid(4), theory.gaussian_grid(9)).value, flush=True)"
)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="fresh interpreters to try (default 3)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds before a run counts as hung (default 300)")
    args = parser.parse_args(argv)
    if args.runs < 1 or not args.timeout > 0:
        parser.error(f"--runs must be >= 1 and --timeout > 0, got {args.runs} and {args.timeout}")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    hung = 0
    for run in range(1, args.runs + 1):
        start = time.perf_counter()
        try:
            out = subprocess.run([sys.executable, "-c", _CALL], env=env, capture_output=True, text=True,
                                 timeout=args.timeout)
            status = f"finished rc={out.returncode}: {out.stdout.strip() or out.stderr.strip()[-300:]}"
        except subprocess.TimeoutExpired:
            hung += 1
            status = "HUNG (killed at the timeout)"
        print(f"run {run}: {time.perf_counter() - start:.0f} s, {status}", flush=True)
    print(f"{hung}/{args.runs} runs hung")
    sys.exit(1 if hung else 0)


if __name__ == "__main__":
    main()
