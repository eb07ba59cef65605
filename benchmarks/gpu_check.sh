#!/usr/bin/env bash
# One GPU check, within 8 minutes: install CUDA JAX from PyPI, time the WGAN training at
# R in {1, 48, 240} and one paper-preset cell, and project the paper preset's wall time.
#
#     bash benchmarks/gpu_check.sh            # from the repository root, on a GPU machine
#
# Needs PyPI only (the cuda12 wheels carry their CUDA libraries). Prints generator
# steps/s per R and the projection; exits non-zero if JAX sees no GPU.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${GPU_CHECK_VENV:-.venv-gpu}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet -e '.[cuda]'
PY="$VENV/bin/python"
export PYTHONPATH="$PWD"

"$PY" - <<'PYEOF'
import jax
platforms = {d.platform for d in jax.devices()}
print("jax", jax.__version__, "devices:", jax.devices())
if "gpu" not in platforms and "cuda" not in platforms:
    raise SystemExit("no GPU visible to JAX: check the driver (nvidia-smi) and the jax[cuda12] install")
PYEOF

# Throughput at R = 1, 48, 240 (JAX only: the torch reference is a CPU comparison).
for R in 1 48 240; do
  timeout 90 "$PY" -m benchmarks.wgan_vs_torch --no-torch --rounds 3 --steps 300 --replicas "$R" | tail -1
done

# One paper-preset cell (K = 9, p = 7, q = 7, 5 seeds: the largest networks) for 1,000
# generator steps, timed after compilation, and the projection to the whole preset:
# 3 K x 4 p x 4 q cells x 5 seeds = 240 replica-runs of 20,001 steps.
timeout 150 "$PY" - <<'PYEOF'
import time
import jax, jax.numpy as jnp
import theory
from models.critics import BjorckGroupSortSpec
from models.generator import MLPGeneratorSpec
from models.wgan import WGANTraining, init_replicas, train_replicas

seeds, steps, total_steps, replica_runs = 5, 1000, 20_001, 3 * 4 * 4 * 5
generator, critic, training = MLPGeneratorSpec(depth=7), BjorckGroupSortSpec(depth=7), WGANTraining()
keys = jax.random.split(jax.random.key(0), seeds)
data = jnp.stack([theory.gaussian_grid(9).sample(k, 5000) for k in keys]).astype(jnp.float32)
kw = dict(generator_spec=generator, critic_spec=critic, training=training)
states = init_replicas(keys, data_dim=2, **kw)
states, _ = train_replicas(states, data, keys, n_steps=steps, **kw)  # compile
jax.block_until_ready(states)
start = time.perf_counter()
states, losses = train_replicas(states, data, keys, n_steps=steps, **kw)
jax.block_until_ready((states, losses))
seconds = time.perf_counter() - start
rate = seeds * steps / seconds
print(f"paper cell K=9 p=7 q=7, {seeds} seeds: {rate:.1f} replica-steps/s")
print(f"projected paper preset, cell by cell (5 replicas per program): "
      f"{replica_runs * total_steps / rate / 3600:.2f} h of training (the largest cell's rate; smaller cells are faster)")
PYEOF
