"""Benchmark: the one-point exact score kernels of theory.langevin under vmap over chains.

`theory.langevin.ExactScore` / `ExactNoiseConditionalScore` evaluate a mixture's score
through precision matrices; `MixtureOfGaussians.score` uses triangular solves. Both are
exact; this measures what the sampler pays for each when the one-point score is vmapped
over 1,280 chains for 1,000 steps (the NCSN protocol), on whatever device JAX sees.

    python -m benchmarks.langevin_score_kernels [--chains 1280] [--steps 1000] [--repeats 3]

Prints wall and process-CPU seconds per sampler call (after one warm-up call that
compiles), so the numbers are comparable on a shared machine.
"""

from __future__ import annotations

import argparse
import time

import equinox as eqx
import jax

from benchmarks._cli import count
import theory
from theory.langevin import (
    AbstractNoiseFamily,
    ConvolvedMeans,
    ExactNoiseConditionalScore,
    ExactScore,
    GeometricSchedule,
    annealed_langevin,
    langevin,
)


class TriangularSolveScore(eqx.Module):
    """s(x, sigma) through `MixtureOfGaussians.score` (the general method)."""

    target: theory.MixtureOfGaussians
    family: AbstractNoiseFamily

    def __call__(self, x, sigma):
        return self.family.law(self.target, sigma).score(x)


def _time(function, repeats: int) -> tuple[float, float]:
    jax.block_until_ready(function())
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        jax.block_until_ready(function())
    return (time.perf_counter() - wall) / repeats, (time.process_time() - cpu) / repeats


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chains", type=count, default=1280)
    parser.add_argument("--steps", type=count, default=1000)
    parser.add_argument("--repeats", type=count, default=3)
    arguments = parser.parse_args(argv)
    target = theory.ncsn_two_modes()
    key = jax.random.key(0)
    x0 = jax.random.uniform(key, (arguments.chains, 2), target.means.dtype, -8.0, 8.0)
    schedule = GeometricSchedule(sigma_max=20.0, sigma_min=1.0, n_levels=10)
    per_level = max(arguments.steps // schedule.n_levels, 1)
    cases = {
        "plain, law.score (triangular solves)": lambda: langevin(
            target.score, x0, key=key, step_size=0.1, n_steps=arguments.steps).samples,
        "plain, ExactScore (precisions)": lambda: langevin(
            ExactScore(target), x0, key=key, step_size=0.1, n_steps=arguments.steps).samples,
        "annealed, law(sigma).score (triangular solves)": lambda: annealed_langevin(
            TriangularSolveScore(target, ConvolvedMeans()), x0, key=key, schedule=schedule, step_size=0.1,
            steps_per_level=per_level).samples,
        "annealed, ExactNoiseConditionalScore (precisions)": lambda: annealed_langevin(
            ExactNoiseConditionalScore(target, ConvolvedMeans()), x0, key=key, schedule=schedule, step_size=0.1,
            steps_per_level=per_level).samples,
    }
    print(f"device: {jax.devices()[0]}; {arguments.chains} chains, {arguments.steps} steps, "
          f"mean of {arguments.repeats} calls after a compiling one")
    for name, function in cases.items():
        wall, cpu = _time(function, arguments.repeats)
        print(f"  {name:52s} wall {wall:8.3f} s   cpu {cpu:8.3f} s")


if __name__ == "__main__":
    main()
