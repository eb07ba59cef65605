"""The linear layers of a multilayer perceptron, float32, each owning its weights.

``linear_layers(key, sizes)`` is the stack sizes[0] -> sizes[1] -> ... -> sizes[-1] that
the score and noise-prediction networks apply with an activation between layers
(``models.score_network``, ``models.epsilon_network``).
"""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
from jaxtyping import PRNGKeyArray

from models.training import PARAM_DTYPE

__all__ = ["linear_layers"]


def linear_layers(key: PRNGKeyArray, sizes: Sequence[int]) -> tuple[eqx.nn.Linear, ...]:
    """Fresh layers x -> W_i x + b_i, W_i of shape (sizes[i + 1], sizes[i]), float32.

    Equinox's default (PyTorch-style) initialisation: W_i and b_i uniform on
    [-1/sqrt(sizes[i]), 1/sqrt(sizes[i])], layer i drawn with the i-th key of
    ``jax.random.split(key, len(sizes) - 1)``. No two layers share an array.

    Args:
        key: PRNG key of the initial weights.
        sizes: the widths, input first, at least two, each >= 1.

    Returns:
        ``len(sizes) - 1`` ``eqx.nn.Linear`` layers.

    Reference: ``equinox.nn.Linear``, which follows PyTorch's ``nn.Linear`` default.
    """
    sizes = [int(size) for size in sizes]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"sizes must list at least two widths >= 1, got {sizes}")
    keys = jax.random.split(key, len(sizes) - 1)
    return tuple(
        eqx.nn.Linear(fan_in, fan_out, dtype=PARAM_DTYPE, key=k) for k, fan_in, fan_out in zip(keys, sizes[:-1], sizes[1:])
    )
