"""Named PRNG key streams derived from a cell's coordinates only.

``Keys(root_seed)("train", K=4, seed=1)`` is the key of the purpose ``"train"`` at the
coordinates ``K=4, seed=1``: the SHA-256 of the canonical text ``train|K=4|seed=1``
(coordinates sorted by name) folded into ``jax.random.key(root_seed)``. Nothing else
enters: not the position of the cell in the sweep, not which other cells exist, not a
counter. So removing a target or a depth from a sweep leaves every remaining cell's keys,
hence its numbers, unchanged, and two purposes never share a key by accident (no magic
salts such as ``20_000 + n``).
"""

from __future__ import annotations

import hashlib
import numbers
from collections.abc import Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from theory.validation import check_count

__all__ = ["Keys"]


def _canonical(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return repr(float(value))
    if isinstance(value, str):
        return value
    raise TypeError(f"key coordinates must be ints, floats, bools or strings, got {type(value).__name__} {value!r}")


def _words(purpose: str, coordinates: Mapping[str, Any]) -> list[int]:
    text = "|".join([purpose] + [f"{name}={_canonical(coordinates[name])}" for name in sorted(coordinates)])
    digest = hashlib.sha256(text.encode()).digest()
    # Two 32-bit words (64 bits of the hash): collisions between named streams are
    # then as unlikely as between two random 64-bit keys.
    return [int.from_bytes(digest[i : i + 4], "little") for i in (0, 4)]


class Keys:
    """The key streams of one study run, rooted at ``root_seed``.

    Args:
        root_seed: the run's root seed (a non-negative int below 2**31).
    """

    def __init__(self, root_seed: int):
        self.root_seed = check_count("root_seed", root_seed, minimum=0, maximum=2**31 - 1)

    def __call__(self, purpose: str, **coordinates: Any) -> jax.Array:
        """The key of ``purpose`` at ``coordinates`` (a typed JAX key array of shape ())."""
        if not isinstance(purpose, str) or not purpose:
            raise ValueError(f"purpose must be a non-empty string, got {purpose!r}")
        key = jax.random.key(self.root_seed)
        for word in _words(purpose, coordinates):
            key = jax.random.fold_in(key, word)
        return key

    def stack(self, purpose: str, coordinates: Iterable[Mapping[str, Any]]) -> jax.Array:
        """Keys of one purpose at several coordinates, stacked on a leading axis (for vmap)."""
        keys = [self(purpose, **dict(c)) for c in coordinates]
        if not keys:
            raise ValueError("coordinates must name at least one point")
        return jnp.stack(keys)

    def __repr__(self) -> str:
        return f"Keys(root_seed={self.root_seed})"
