"""Checks at the boundary: each names the argument and the offending value.

Values are checked only when they are concrete; inside `jax.jit` the arguments are
tracers and only their shapes can be checked (the object was validated when it was
built outside the trace, or will be when it is).
"""

from __future__ import annotations

import jax
import numpy as np


def is_concrete(*values) -> bool:
    """True when no leaf of `values` is a JAX tracer."""
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(values))


def _short(value) -> str:
    text = np.array2string(np.asarray(value), precision=4, threshold=12)
    return text.replace("\n", "")


def check_shape(name: str, value, shape: tuple) -> None:
    """Raise unless `value.shape` matches `shape` (None is a wildcard)."""
    actual = np.shape(value)
    if len(actual) != len(shape) or any(s is not None and s != a for s, a in zip(shape, actual)):
        expected = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name} must have shape {expected}, got shape {actual}")


def check_finite(name: str, value) -> None:
    if is_concrete(value):
        array = np.asarray(value, dtype=np.float64)
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{name} must be finite, got {_short(array)}")


def check_positive(name: str, value, *, allow_zero: bool = False) -> None:
    if is_concrete(value):
        array = np.asarray(value, dtype=np.float64)
        bad = ~np.isfinite(array) | ((array < 0) if allow_zero else (array <= 0))
        if np.any(bad):
            relation = ">= 0" if allow_zero else "> 0"
            raise ValueError(f"{name} must be finite and {relation}, got {_short(array)}")


def check_positive_definite(name: str, cov) -> None:
    """Symmetric (to 1e-8 relative) with strictly positive eigenvalues, for (..., d, d)."""
    if not is_concrete(cov):
        return
    array = np.asarray(cov, dtype=np.float64)
    check_finite(name, array)
    scale = max(1.0, float(np.max(np.abs(array))))
    if not np.allclose(array, np.swapaxes(array, -1, -2), rtol=0.0, atol=1e-8 * scale):
        raise ValueError(f"{name} must be symmetric, got {_short(array)}")
    eigenvalues = np.linalg.eigvalsh(array)
    if np.any(eigenvalues <= 0):
        raise ValueError(
            f"{name} must be positive definite, got smallest eigenvalue "
            f"{eigenvalues.min():.4g} in {_short(array)}"
        )


def check_probability_vector(name: str, weights, *, atol: float = 1e-6) -> None:
    """Nonnegative entries summing to one within `atol` (float32 rounding of a
    handful of entries is ~1e-7, so 1e-6 accepts honest float32 input)."""
    if not is_concrete(weights):
        return
    array = np.asarray(weights, dtype=np.float64)
    check_finite(name, array)
    if np.any(array < 0):
        raise ValueError(f"{name} must be nonnegative, got {_short(array)}")
    total = array.sum(axis=-1)
    if np.any(np.abs(total - 1.0) > atol):
        raise ValueError(f"{name} must sum to 1, got sum {_short(total)} for {_short(array)}")


def check_key(name: str, key) -> None:
    if key is None:
        raise ValueError(f"{name} must be a JAX PRNG key, got None")


def check_count(name: str, n, *, minimum: int = 1) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {n!r}")
    return int(n)
