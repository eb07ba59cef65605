"""Two WGAN cells trained at once (two host threads) against one after the other.

    python -m benchmarks.wgan_parallel_cells --rounds 3 --steps 1000 [--cells 5,5 3,2]

A cell of the capacity sweep is one (K, p, q) with its seeds vmapped (R = 5 in the paper
preset). At that size XLA's CPU programs leave part of a 2-core machine idle, so two
cells' programs dispatched from two threads may finish sooner than the same two run one
after the other. Each round times both ways on the same two compiled programs (a p = q = 5
cell twice by default, with other seeds, or the two `--cells` given as p,q; `--steps`
generator steps each), checks that the two-thread
run returns the same critic losses bit for bit as the serial one, and prints the wall
times, the CPU cores used (process CPU time over wall time) and the ratio serial /
two threads; the last line holds the median ratio over rounds with its min and max.

The studies do not run cells in parallel yet: this measures what they would gain.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import threading
import time

import jax
import numpy as np

import theory
from benchmarks._cli import count
from models.critics import BjorckGroupSortSpec
from models.generator import MLPGeneratorSpec
from models.wgan import WGANTraining, init_replicas, train_replicas

SEEDS = 5  # the paper preset's seeds per cell


def shape(text: str) -> tuple[int, int]:
    """``p,q`` -> (p, q), each an integer >= 1."""
    parts = text.split(",")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected p,q, got {text!r}")
    return count(parts[0]), count(parts[1])


def cell_runner(p: int, q: int, *, steps: int, seed: int):
    """A compiled training of one cell (SEEDS replicas); returns a function that runs it
    from the same start and returns its critic losses."""
    generator_spec, critic_spec, training = MLPGeneratorSpec(depth=p), BjorckGroupSortSpec(depth=q), WGANTraining()
    keys = jax.random.split(jax.random.key(seed), SEEDS)
    states = init_replicas(keys, generator_spec=generator_spec, critic_spec=critic_spec, training=training, data_dim=2)
    data = np.stack([np.asarray(theory.gaussian_grid(4).sample(k, 5000), np.float32) for k in keys])

    def run() -> np.ndarray:
        _, losses = train_replicas(states, data, keys, n_steps=steps, generator_spec=generator_spec,
                                   critic_spec=critic_spec, training=training)
        return np.asarray(losses.critic)

    run()  # compile
    return run


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=count, default=3, help="rounds of serial and two-thread runs (default 3)")
    parser.add_argument("--steps", type=count, default=1000, help="generator steps per cell and run (default 1000)")
    parser.add_argument("--cells", type=shape, nargs=2, default=[(5, 5), (5, 5)], metavar="P,Q",
                        help="generator and critic depths of the two cells (default 5,5 5,5)")
    args = parser.parse_args(argv)

    runs = [cell_runner(p, q, steps=args.steps, seed=i) for i, (p, q) in enumerate(args.cells)]
    ratios = []
    print(f"device: {jax.devices()[0].platform} x{len(jax.devices())} | two cells (p, q) = {args.cells}, "
          f"{SEEDS} seeds each, {args.steps} generator steps | {args.rounds} rounds")
    for round_index in range(args.rounds):
        wall, cpu = time.perf_counter(), _cpu_seconds()
        serial = [run() for run in runs]
        serial_wall, serial_cpu = time.perf_counter() - wall, _cpu_seconds() - cpu

        results: list[np.ndarray | None] = [None] * len(runs)

        def work(i: int) -> None:
            results[i] = runs[i]()

        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(runs))]
        wall, cpu = time.perf_counter(), _cpu_seconds()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        parallel_wall, parallel_cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
        same = all(r is not None and np.array_equal(a, r) for a, r in zip(serial, results))
        ratios.append(serial_wall / parallel_wall)
        print(f"round {round_index}: serial {serial_wall:.2f} s ({serial_cpu / serial_wall:.2f} cores), two threads "
              f"{parallel_wall:.2f} s ({parallel_cpu / parallel_wall:.2f} cores), losses identical: {same}")
    print(f"serial / two threads: {statistics.median(ratios):.2f}x [{min(ratios):.2f}, {max(ratios):.2f}]")


if __name__ == "__main__":
    main()
