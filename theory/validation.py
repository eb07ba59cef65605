"""Checks at the boundary: each names the argument and the offending value.

One place for every argument check in the lab, with one exception type per kind of
error:

- `TypeError` when the argument is of the wrong kind (a float where a count is
  expected, a string where a number is, None where a PRNG key is, an object that is
  not the component asked for);
- `ValueError` when it is of the right kind with a bad value (a count below its
  minimum, a non-finite or non-positive number, a shape that does not match, weights
  that do not sum to one, repeated entries).

Messages read "<name> must be <constraint>, got <value>". Checks that accept a scalar
return it converted (`check_count` returns a Python int, `check_number` a float), so a
caller writes `n = check_count("n", n)`.

Values are checked only when they are concrete; inside `jax.jit` the arguments are
tracers and only their shapes can be checked (the object was validated when it was
built outside the trace, or will be when it is).
"""

from __future__ import annotations

import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "is_concrete",
    "check_type",
    "check_bool",
    "check_count",
    "check_counts",
    "check_number",
    "check_real",
    "check_positive",
    "check_positive_number",
    "check_in_interval",
    "check_probability",
    "check_finite",
    "check_shape",
    "check_points",
    "check_tuple",
    "check_distinct",
    "check_positive_definite",
    "check_probability_vector",
    "check_key",
]


def is_concrete(*values) -> bool:
    """True when no leaf of `values` is a JAX tracer."""
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(values))


def _short(value) -> str:
    text = np.array2string(np.asarray(value), precision=4, threshold=12)
    return text.replace("\n", "")


def _kind_name(kind) -> str:
    """'a Gaussian', 'an AbstractSDE', 'an int or float'."""
    name = " or ".join(k.__name__ for k in kind) if isinstance(kind, tuple) else kind.__name__
    return ("an " if name[0].lower() in "aeiou" else "a ") + name


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _as_float64(name: str, value) -> np.ndarray:
    """`value` as a float64 array, or a TypeError when it is not numeric at all."""
    if isinstance(value, (bool, np.bool_, str, bytes)) or value is None:
        raise TypeError(f"{name} must be a number or an array of numbers, got {value!r}")
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number or an array of numbers, got {value!r}") from None
    return array


# --------------------------------------------------------------------------------------
# Kinds.


def check_type(name: str, value, kind: type | tuple[type, ...]):
    """Raise TypeError unless `value` is an instance of `kind`; return `value`.

    For components held by configs and samplers: `check_type("sde", sde, AbstractSDE)`.
    """
    if not isinstance(value, kind):
        raise TypeError(f"{name} must be {_kind_name(kind)}, got {value!r} (a {type(value).__name__})")
    return value


def check_bool(name: str, value) -> bool:
    """Raise TypeError unless `value` is True or False (not 0, 1 or "yes")."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be true or false, got {value!r}")
    return bool(value)


def check_key(name: str, key) -> None:
    """Raise TypeError unless `key` is a JAX PRNG key (typed, or a raw uint32 key)."""
    if key is None:
        raise TypeError(f"{name} must be a JAX PRNG key, got None")
    if not isinstance(key, jax.Array | np.ndarray):
        raise TypeError(f"{name} must be a JAX PRNG key, got {key!r} (a {type(key).__name__})")
    if not (jnp.issubdtype(key.dtype, jax.dtypes.prng_key) or key.dtype == np.uint32):
        raise TypeError(f"{name} must be a JAX PRNG key, got an array of dtype {key.dtype}")


# --------------------------------------------------------------------------------------
# Scalars.


def check_count(name: str, n, *, minimum: int = 1, maximum: int | None = None) -> int:
    """An integer in [minimum, maximum], returned as a Python int.

    TypeError for anything that is not an integer (floats such as 2.0, booleans,
    strings); ValueError when it lies outside the range.
    """
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {n!r}")
    if n < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {n!r}")
    if maximum is not None and n > maximum:
        raise ValueError(f"{name} must be an integer <= {maximum}, got {n!r}")
    return int(n)


def _interval(minimum, maximum, include_minimum: bool, include_maximum: bool) -> str:
    """' in [0, 1)', ' > 0', ' <= 2', or '' (no bound): the constraint in a message."""
    if minimum is not None and maximum is not None:
        return f" in {'[' if include_minimum else '('}{minimum:g}, {maximum:g}{']' if include_maximum else ')'}"
    if minimum is not None:
        return f" {'>=' if include_minimum else '>'} {minimum:g}"
    if maximum is not None:
        return f" {'<=' if include_maximum else '<'} {maximum:g}"
    return ""


def check_real(
    name: str,
    value,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    include_minimum: bool = True,
    include_maximum: bool = True,
) -> float:
    """A finite real number (not a boolean, not an array) in the given interval, as a float.

    Every scalar check of the lab is this one with its bounds: `check_number` (none),
    `check_positive_number` (> 0 or >= 0), `check_in_interval` (two ends).
    TypeError when `value` is not a real number; ValueError when it is NaN, infinite
    or outside the interval. Messages read "lr must be a finite number > 0, got 0.0".
    """
    where = _interval(minimum, maximum, include_minimum, include_maximum)
    if not _is_real(value):
        raise TypeError(f"{name} must be a finite number{where}, got {value!r}")
    below = minimum is not None and (value < minimum if include_minimum else value <= minimum)
    above = maximum is not None and (value > maximum if include_maximum else value >= maximum)
    if not math.isfinite(value) or below or above:
        raise ValueError(f"{name} must be a finite number{where}, got {value!r}")
    return float(value)


def check_number(name: str, value) -> float:
    """A finite real number (not a boolean), returned as a float (`check_real` unbounded)."""
    return check_real(name, value)


def check_positive_number(name: str, value, *, allow_zero: bool = False) -> float:
    """A finite real number > 0 (>= 0 with `allow_zero`), returned as a float.

    The scalar form of `check_positive`, for settings such as a step size or a learning
    rate (`check_real` with a lower bound).
    """
    return check_real(name, value, minimum=0.0, include_minimum=allow_zero)


def check_in_interval(
    name: str, value, low: float, high: float, *, include_low: bool = False, include_high: bool = False
) -> float:
    """A finite real number in the interval between `low` and `high`, ends as asked.

    `check_in_interval("confidence", c, 0, 1)` checks c in (0, 1);
    `include_low=True` gives [0, 1), and so on (`check_real` with two open-by-default
    ends). Returns the number as a float.
    """
    return check_real(name, value, minimum=low, maximum=high, include_minimum=include_low, include_maximum=include_high)


def check_probability(name: str, value, *, include_ends: bool = True) -> float:
    """A probability: a number in [0, 1] (or in (0, 1) with `include_ends=False`)."""
    return check_in_interval(name, value, 0.0, 1.0, include_low=include_ends, include_high=include_ends)


# --------------------------------------------------------------------------------------
# Arrays (scalars included); value checks skipped on tracers.


def check_finite(name: str, value) -> None:
    """Raise ValueError unless every entry of `value` is finite."""
    if is_concrete(value):
        array = _as_float64(name, value)
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{name} must be finite, got {_short(array)}")


def check_positive(name: str, value, *, allow_zero: bool = False):
    """Raise ValueError unless every entry is finite and > 0 (>= 0 with `allow_zero`).

    Accepts a number or an array; returns a Python float for a concrete scalar (so
    `step = check_positive("step_size", step)` reads like `check_count`), else `value`.
    """
    if not is_concrete(value):
        return value
    array = _as_float64(name, value)
    bad = ~np.isfinite(array) | ((array < 0) if allow_zero else (array <= 0))
    if np.any(bad):
        relation = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {relation}, got {_short(array)}")
    return float(array) if array.ndim == 0 else value


def check_shape(name: str, value, shape: tuple) -> None:
    """Raise ValueError unless `value.shape` matches `shape` (None is a wildcard)."""
    actual = np.shape(value)
    if len(actual) != len(shape) or any(s is not None and s != a for s, a in zip(shape, actual)):
        expected = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name} must have shape {expected}, got shape {actual}")


def check_points(name: str, x, *, dim: int | None = None, finite: bool = False) -> jax.Array:
    """A batch of points: a floating-point array of shape (n, d), n, d >= 1.

    Args:
        name: the argument's name, for the message.
        x: the points.
        dim: the required d, or None for any.
        finite: also require finite entries (checked when concrete).

    Returns:
        `jnp.asarray(x)`. TypeError for a non-floating dtype; ValueError for a bad
        shape or a non-finite entry.
    """
    x = jnp.asarray(x)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        wanted = "(n, d) with n, d >= 1" if dim is None else f"(n, {dim}) with n >= 1"
        raise ValueError(f"{name} must have shape {wanted}, got shape {x.shape}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{name} must have shape (n, {dim}), got shape {x.shape}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{name} must be floating point, got dtype {x.dtype}")
    if finite and is_concrete(x) and not bool(jnp.all(jnp.isfinite(x))):
        raise ValueError(f"{name} must be finite, got non-finite entries in an array of shape {x.shape}")
    return x


# --------------------------------------------------------------------------------------
# Collections.


def check_tuple(name: str, values, *, min_length: int = 1) -> tuple:
    """A tuple (TypeError otherwise) of at least `min_length` entries (ValueError)."""
    if not isinstance(values, tuple):
        raise TypeError(f"{name} must be a tuple, got {values!r}")
    if len(values) < min_length:
        raise ValueError(f"{name} must hold at least {min_length} value(s), got {values!r}")
    return values


def check_distinct(name: str, values) -> None:
    """Raise ValueError when `values` repeats an entry."""
    values = tuple(values)
    repeated = sorted({v for v in values if values.count(v) > 1}, key=repr)
    if repeated:
        raise ValueError(f"{name} must not repeat a value, got {values} (repeated: {repeated})")


def check_counts(name: str, values, *, minimum: int = 1, distinct: bool = True) -> tuple[int, ...]:
    """A non-empty tuple of integers >= minimum, distinct unless `distinct=False`.

    E.g. a study's seeds (`minimum=0`) or its grid of step counts. Returns Python ints.
    """
    values = check_tuple(name, values)
    counts = tuple(check_count(name, value, minimum=minimum) for value in values)
    if distinct:
        check_distinct(name, counts)
    return counts


def check_positive_definite(name: str, cov) -> None:
    """Symmetric (to 1e-8 relative) with strictly positive eigenvalues, for (..., d, d)."""
    if not is_concrete(cov):
        return
    array = _as_float64(name, cov)
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
    array = _as_float64(name, weights)
    check_finite(name, array)
    if np.any(array < 0):
        raise ValueError(f"{name} must be nonnegative, got {_short(array)}")
    total = array.sum(axis=-1)
    if np.any(np.abs(total - 1.0) > atol):
        raise ValueError(f"{name} must sum to 1, got sum {_short(total)} for {_short(array)}")
