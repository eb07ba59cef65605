"""Generator steps per second: S seeds in one vmapped program vs the same S one after another.

    python benchmarks/wgan_throughput.py --seeds 8 --steps 500

Both sides run the same jitted `train_replicas` (the vmapped side with R = S replicas,
the sequential side S times with R = 1), are compiled before timing (one warm-up call
each), and are timed side by side in this one process, repeated `--repeats` times; the
median is reported. Throughput counts replica-steps: S * steps / seconds.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

import theory
from models.critics import BjorckGroupSortSpec
from models.generator import MLPGeneratorSpec
from models.wgan import WGANTraining, init_replicas, train_replicas


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=8, help="S, replicas trained (default 8)")
    parser.add_argument("--steps", type=int, default=500, help="generator steps per timed call (default 500)")
    parser.add_argument("--depth", type=int, default=3, help="generator and critic depth (default 3)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions, median reported (default 3)")
    args = parser.parse_args(argv)
    for name in ("seeds", "steps", "depth", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")

    generator, critic, training = MLPGeneratorSpec(depth=args.depth), BjorckGroupSortSpec(depth=args.depth), WGANTraining()
    target = theory.gaussian_grid(4)
    keys = jax.random.split(jax.random.key(0), args.seeds)
    data = jnp.stack([target.sample(k, 5000) for k in keys]).astype(jnp.float32)
    states = init_replicas(keys, generator_spec=generator, critic_spec=critic, training=training, data_dim=2)

    def train(state, batch_data, batch_keys):
        out, _ = train_replicas(
            state, batch_data, batch_keys, n_steps=args.steps,
            generator_spec=generator, critic_spec=critic, training=training,
        )
        jax.block_until_ready(out)

    def one(tree, i):
        return jax.tree.map(lambda a: a[i : i + 1] if hasattr(a, "shape") and a.ndim else a, tree)

    singles = [(one(states, i), data[i : i + 1], keys[i : i + 1]) for i in range(args.seeds)]

    def vmapped():
        train(states, data, keys)

    def sequential():
        for s in singles:
            train(*s)

    vmapped()  # compile
    train(*singles[0])  # compile the R = 1 program
    timings = {"vmapped": [], "sequential": []}
    for _ in range(args.repeats):
        for name, fn in (("vmapped", vmapped), ("sequential", sequential)):
            started = time.perf_counter()
            fn()
            timings[name].append(time.perf_counter() - started)
    total = args.seeds * args.steps
    rate = {name: total / statistics.median(times) for name, times in timings.items()}
    print(f"device: {jax.devices()[0]} | S={args.seeds} seeds, {args.steps} generator steps each, depth {args.depth}")
    for name in ("vmapped", "sequential"):
        print(f"{name:>10}: {rate[name]:9.1f} generator steps/s (median of {args.repeats}: "
              f"{statistics.median(timings[name]):.2f}s)")
    print(f"ratio vmapped / sequential: {rate['vmapped'] / rate['sequential']:.2f}x")


if __name__ == "__main__":
    main()
