"""Generator steps/s: this project (JAX) against a PyTorch eager reference of the public code.

    pip install -e '.[bench]'        # torch, an optional extra
    python -m benchmarks.wgan_vs_torch --rounds 8

The protocol of Biau, Sangnier & Tanielian (2021): a Björck GroupSort critic of
`--critic-depth` linear layers (width 30, 3 Björck iterations, beta 1/2), a ReLU
generator of `--generator-depth` layers (width 30, latent dimension 1), batch 256, 3
critic steps per generator step, Adam (lr 0.0025 / 0.001, betas (0.5, 0.5)), float32,
data = 5,000 draws of the 4-mode Gaussian grid. The torch side is a faithful eager
reference of the public code's training step (tanouch/synthetic_gans on Anil et al.'s
LNets: orthogonal init with gain 1/sqrt(fan_in), constant Björck scaling
sqrt(out * in), critic evaluated on fake and real separately), on `--torch-threads`
threads (1: two threads are slower on 2 cores). The JAX side is `models.wgan` at R = 1
and at R = `--replicas` (vmapped), compiled before timing. `--carried` adds the same two
runs with the capacity study's `--critic bjorck-carried` (the orthonormalised weights
carried between steps: 1 Björck step per forward pass and 1 on the stored weights after
each update, same 1-Lipschitz certificate), and their ratios to torch and to the default
critic at the same R.

Each round times the runs in turn (interleaved, so drifts in machine load hit all of
them); per round, ratio = JAX rate / torch rate; the medians over rounds are printed,
with the min and max, and the last line holds the ratios: per model and aggregate
against torch, and the vmapped R against R = 1 (what vmapping gains over training the
R replicas one after another; the only ratio with `--no-torch`).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks._cli import count
import theory
from models.critics import BjorckGroupSortSpec
from models.generator import MLPGeneratorSpec
from models.wgan import WGANTraining, init_replicas, train_replicas

WIDTH = 30
BATCH = 256
CRITIC_STEPS = 3
BJORCK_ITERATIONS = 3
BJORCK_BETA = 0.5
LR_CRITIC, LR_GENERATOR, BETAS = 0.0025, 0.001, (0.5, 0.5)


def torch_reference(data: np.ndarray, *, critic_depth: int, generator_depth: int, seed: int):
    """A closure running n generator steps of the public code's training, in torch eager."""
    import torch
    from torch import nn

    torch.manual_seed(seed)

    def bjorck(w):
        # LNets' bjorck_orthonormalize, order 1, on the constant-scaled weight.
        for _ in range(BJORCK_ITERATIONS):
            w = (1 + BJORCK_BETA) * w - BJORCK_BETA * w.mm(w.t().mm(w))
        return w

    class BjorckLinear(nn.Linear):
        def reset_parameters(self):
            stdv = 1.0 / math.sqrt(self.weight.size(1))
            nn.init.orthogonal_(self.weight, gain=stdv)
            nn.init.uniform_(self.bias, -stdv, stdv)

        def forward(self, x):
            scaling = math.sqrt(self.weight.shape[0] * self.weight.shape[1])
            ortho_w = bjorck(self.weight.t() / scaling).t()
            return nn.functional.linear(x, ortho_w, self.bias)

    class MaxMin(nn.Module):
        def forward(self, x):
            pairs = x.view(x.shape[0], -1, 2)
            return torch.stack([pairs.min(-1).values, pairs.max(-1).values], -1).view(x.shape)

    dims = [2] + [WIDTH] * (critic_depth - 1) + [1]
    critic_layers = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        critic_layers.append(BjorckLinear(a, b))
        if i < critic_depth - 1:
            critic_layers.append(MaxMin())
    critic = nn.Sequential(*critic_layers)
    gdims = [1] + [WIDTH] * (generator_depth - 1) + [2]
    generator_layers = []
    for i, (a, b) in enumerate(zip(gdims[:-1], gdims[1:])):
        generator_layers.append(nn.Linear(a, b))
        if i < generator_depth - 1:
            generator_layers.append(nn.ReLU())
    generator = nn.Sequential(*generator_layers)
    critic_opt = torch.optim.Adam(critic.parameters(), lr=LR_CRITIC, betas=BETAS)
    generator_opt = torch.optim.Adam(generator.parameters(), lr=LR_GENERATOR, betas=BETAS)
    real_data = torch.tensor(np.array(data), dtype=torch.float32)

    def latent():
        return 2 * torch.rand(BATCH, 1) - 1

    def run(n_steps: int) -> None:
        for _ in range(n_steps):
            for _ in range(CRITIC_STEPS):
                real = real_data[torch.randint(0, real_data.shape[0], (BATCH,))]
                with torch.no_grad():
                    fake = generator(latent())
                critic_opt.zero_grad()
                loss = critic(fake).mean() - critic(real).mean()
                loss.backward()
                critic_opt.step()
            generator_opt.zero_grad()
            loss = -critic(generator(latent())).mean()
            loss.backward()
            generator_opt.step()

    return run


def jax_runner(data: np.ndarray, *, replicas: int, n_steps: int, critic_spec, generator_spec, mesh=None):
    """A closure running n_steps generator steps of `replicas` vmapped replicas (compiled first)."""
    training = WGANTraining()
    keys = jax.random.split(jax.random.key(0), replicas)
    replica_data = jnp.broadcast_to(jnp.asarray(data, jnp.float32), (replicas, *data.shape))
    sharded = {} if mesh is None else {"mesh": mesh}
    state = {"s": init_replicas(keys, generator_spec=generator_spec, critic_spec=critic_spec, training=training,
                                data_dim=2, **sharded)}

    def run() -> None:
        out, losses = train_replicas(state["s"], replica_data, keys, n_steps=n_steps, generator_spec=generator_spec,
                                     critic_spec=critic_spec, training=training, **sharded)
        jax.block_until_ready((out, losses))
        state["s"] = out

    run()  # compile
    return run


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=count, default=8, help="interleaved timing rounds (default 8)")
    parser.add_argument("--torch-steps", type=count, default=100, help="torch generator steps per round (default 100)")
    parser.add_argument("--steps", type=count, default=1000, help="JAX generator steps per round (default 1000)")
    parser.add_argument("--replicas", type=count, default=48, help="R of the vmapped JAX run (default 48)")
    parser.add_argument("--critic-depth", type=count, default=5, help="critic linear layers (default 5)")
    parser.add_argument("--generator-depth", type=count, default=3, help="generator linear layers (default 3)")
    parser.add_argument("--torch-threads", type=count, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--project-iterations", type=int, default=0,
                        help="JAX critic: Björck steps on the stored weights after each update (default 0, "
                             "the public code); with > 0, --iterations 1 suffices")
    parser.add_argument("--iterations", type=int, default=BJORCK_ITERATIONS, help="JAX critic: Björck steps per forward")
    parser.add_argument("--init", default="orthonormal", choices=["orthonormal", "public"], help="JAX critic init")
    parser.add_argument("--devices", type=int, default=None, help="shard the vmapped run over this many devices")
    parser.add_argument("--no-torch", action="store_true", help="time the JAX side only (no ratios)")
    parser.add_argument("--carried", action="store_true",
                        help="also time the capacity study's `--critic bjorck-carried` (1 Björck step per forward, "
                             "1 on the stored weights after each update) at both R, beside the default critic")
    args = parser.parse_args(argv)

    data = np.asarray(theory.gaussian_grid(4).sample(jax.random.key(1), 5000), np.float32)
    # Options beyond the defaults are passed only when set, so that the script also
    # times older revisions of models/ (for before/after comparisons).
    extras = {name: getattr(args, name) for name, default in (("init", "orthonormal"), ("project_iterations", 0))
              if getattr(args, name) != default}
    critic_spec = BjorckGroupSortSpec(depth=args.critic_depth, width=WIDTH, iterations=args.iterations, **extras)
    generator_spec = MLPGeneratorSpec(depth=args.generator_depth, width=WIDTH)
    mesh = None
    if args.devices is not None:
        from models.sharding import replica_mesh

        mesh = replica_mesh(args.devices)
    variants = [("", critic_spec)]
    if args.carried:
        from studies.wgan_capacity import CRITICS  # the study's spec itself, so both time the same critic

        carried = dataclasses.replace(CRITICS["bjorck-carried"], depth=args.critic_depth, width=WIDTH)
        variants.append((" carried", carried))
    runners = {}
    for suffix, spec in variants:
        runners[f"jax R=1{suffix}"] = (jax_runner(data, replicas=1, n_steps=args.steps, critic_spec=spec,
                                                  generator_spec=generator_spec), args.steps)
        runners[f"jax R={args.replicas}{suffix}"] = (
            jax_runner(data, replicas=args.replicas, n_steps=args.steps, critic_spec=spec,
                       generator_spec=generator_spec, mesh=mesh),
            args.steps * args.replicas)
    if not args.no_torch:
        import torch

        torch.set_num_threads(args.torch_threads)
        run_torch = torch_reference(data, critic_depth=args.critic_depth, generator_depth=args.generator_depth, seed=0)
        run_torch(5)  # warm-up (allocator, first-call dispatch)
        runners = {"torch": (lambda: run_torch(args.torch_steps), args.torch_steps), **runners}

    rates = {name: [] for name in runners}
    for _ in range(args.rounds):
        for name, (fn, steps) in runners.items():
            rates[name].append(steps / _timed(fn))
    print(f"device: {jax.devices()[0].platform} x{len(jax.devices())} | critic {critic_spec} | generator depth "
          f"{args.generator_depth} | batch {BATCH}, {CRITIC_STEPS} critic steps | {args.rounds} rounds")
    for name, values in rates.items():
        print(f"{name:>18}: {statistics.median(values):9.1f} generator (replica-)steps/s  "
              f"[min {min(values):.1f}, max {max(values):.1f}]")
    # R = 1 run R times one after another is the sequential alternative to vmapping.
    pairs = [(f"jax R={args.replicas}", "jax R=1")]
    if not args.no_torch:
        pairs = [("jax R=1", "torch"), (f"jax R={args.replicas}", "torch"), *pairs]
    if args.carried:
        # The carried critic against torch and against the default critic at the same R.
        for name in ("jax R=1", f"jax R={args.replicas}"):
            if not args.no_torch:
                pairs.append((f"{name} carried", "torch"))
            pairs.append((f"{name} carried", name))
    summary = []
    for name, baseline in pairs:
        ratios = [a / b for a, b in zip(rates[name], rates[baseline])]
        summary.append(f"{name} / {baseline} = {statistics.median(ratios):.1f}x "
                       f"[{min(ratios):.1f}, {max(ratios):.1f}]")
    print("median per-round ratio: " + "; ".join(summary))


if __name__ == "__main__":
    main()
