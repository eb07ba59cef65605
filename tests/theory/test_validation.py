"""Tests for theory/validation.py: every check names the argument and shows the value.

Each check passes honest input, raises ValueError with the argument's name and the
offending value on bad input, and stays silent on tracers (inside `jax.jit` only
shapes are known; the values were checked when the object was built).
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from theory.validation import (
    check_count,
    check_finite,
    check_key,
    check_positive,
    check_positive_definite,
    check_probability_vector,
    check_shape,
    is_concrete,
)


def _unit_floats(lo, hi):
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


# --------------------------------------------------------------------------------------
# is_concrete and the tracer escape hatch.


def test_is_concrete_true_outside_a_trace_false_inside():
    assert is_concrete(jnp.ones(3), np.zeros(2), 1.0, {"a": jnp.zeros(())})
    seen = []
    jax.jit(lambda v: seen.append(is_concrete(v, 1.0)) or v)(jnp.ones(2))
    assert seen == [False]


@pytest.mark.parametrize(
    "check",
    [
        lambda v: check_finite("v", v),
        lambda v: check_positive("v", v),
        lambda v: check_positive_definite("v", v[None, None]),
        lambda v: check_probability_vector("v", v[None]),
    ],
    ids=["finite", "positive", "positive_definite", "probability_vector"],
)
def test_value_checks_are_skipped_on_tracers(check):
    # A NaN inside jit cannot be seen without a host round trip; the check must not
    # try (it would raise a ConcretizationError instead of tracing).
    def f(v):
        check(v)
        return v

    assert np.isnan(jax.jit(f)(jnp.asarray(np.nan)))


# --------------------------------------------------------------------------------------
# check_shape.


def test_check_shape_accepts_matching_and_wildcard_shapes():
    check_shape("a", np.zeros((2, 3)), (2, 3))
    check_shape("a", np.zeros((2, 3)), (None, 3))
    check_shape("a", 1.0, ())


@pytest.mark.parametrize(
    "value, shape, shown",
    [
        (np.zeros((2, 3)), (3, 2), r"a must have shape \(3, 2\), got shape \(2, 3\)"),
        (np.zeros((2, 3)), (None,), r"a must have shape \(\*\), got shape \(2, 3\)"),
        (np.zeros(3), (), r"a must have shape \(\), got shape \(3,\)"),
    ],
)
def test_check_shape_names_argument_and_shapes(value, shape, shown):
    with pytest.raises(ValueError, match=shown):
        check_shape("a", value, shape)


# --------------------------------------------------------------------------------------
# check_finite / check_positive.


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_check_finite_rejects_non_finite(bad):
    with pytest.raises(ValueError, match=rf"mean must be finite, got \[ *1\. +{re.escape(str(bad))}\]"):
        check_finite("mean", np.array([1.0, bad]))
    check_finite("mean", np.array([1.0, -2.0]))


def test_check_positive_strict_and_allow_zero():
    check_positive("std", 0.5)
    check_positive("std", 0.0, allow_zero=True)
    with pytest.raises(ValueError, match=r"std must be finite and > 0, got 0\."):
        check_positive("std", 0.0)
    with pytest.raises(ValueError, match=r"std must be finite and >= 0, got -1\."):
        check_positive("std", -1.0, allow_zero=True)
    with pytest.raises(ValueError, match=r"std must be finite and > 0, got inf"):
        check_positive("std", np.inf)


# --------------------------------------------------------------------------------------
# check_positive_definite.


@given(
    arrays(np.float64, (3, 3), elements=_unit_floats(-2, 2)),
    _unit_floats(1e-3, 1.0),
)
def test_check_positive_definite_accepts_every_gram_matrix_plus_ridge(a, ridge):
    check_positive_definite("cov", a @ a.T + ridge * np.eye(3))


def test_check_positive_definite_tolerates_rounding_asymmetry_only():
    cov = np.array([[2.0, 0.5], [0.5, 1.0]])
    # 1e-8 relative is a few hundred float64 ulps: the rounding of S = A A^T computed
    # in another order, but far below any asymmetry that is a real mistake.
    check_positive_definite("cov", cov + np.array([[0.0, 1e-12], [0.0, 0.0]]))
    with pytest.raises(ValueError, match=r"cov must be symmetric, got \[\[2\. +0\.5001\]"):
        check_positive_definite("cov", cov + np.array([[0.0, 1e-4], [0.0, 0.0]]))


@pytest.mark.parametrize(
    "cov, shown",
    [
        (np.array([[1.0, 2.0], [2.0, 1.0]]), r"cov must be positive definite, got smallest eigenvalue -1 in"),
        (np.zeros((2, 2)), r"cov must be positive definite, got smallest eigenvalue 0 in"),
        (np.array([[1.0, np.nan], [np.nan, 1.0]]), r"cov must be finite, got"),
        (np.stack([np.eye(2), -np.eye(2)]), r"cov must be positive definite, got smallest eigenvalue -1 in"),
    ],
    ids=["indefinite", "singular", "nan", "one-bad-in-a-batch"],
)
def test_check_positive_definite_names_the_eigenvalue(cov, shown):
    with pytest.raises(ValueError, match=shown):
        check_positive_definite("cov", cov)


# --------------------------------------------------------------------------------------
# check_probability_vector.


@given(st.lists(_unit_floats(0.0, 1.0), min_size=1, max_size=8).filter(lambda w: sum(w) > 1e-3))
def test_check_probability_vector_accepts_any_normalised_nonnegative_vector(raw):
    check_probability_vector("weights", np.asarray(raw) / np.sum(raw))


def test_check_probability_vector_tolerance_is_float32_rounding():
    # float32 rounding of a few entries is ~1e-7: accepted; 1e-5 is a real error.
    check_probability_vector("w", np.array([0.5, 0.5 + 5e-7]))
    check_probability_vector("w", np.array([1 / 3, 1 / 3, 1 / 3], dtype=np.float32))
    with pytest.raises(ValueError, match=r"w must sum to 1, got sum 1\. for \[0\.5 +0\.5\]"):
        check_probability_vector("w", np.array([0.5, 0.50001]))


@pytest.mark.parametrize(
    "weights, shown",
    [
        (np.array([1.2, -0.2]), r"weights must be nonnegative, got \[ 1\.2 -0\.2\]"),
        (np.array([0.5, 0.43]), r"weights must sum to 1, got sum 0\.93"),
        (np.array([np.nan, 1.0]), r"weights must be finite, got \[nan +1\.\]"),
        (np.array([[0.5, 0.5], [0.9, 0.2]]), r"weights must sum to 1, got sum \[1\.  1\.1\]"),
    ],
    ids=["negative", "sum", "nan", "batched-rows"],
)
def test_check_probability_vector_names_the_offence(weights, shown):
    with pytest.raises(ValueError, match=shown):
        check_probability_vector("weights", weights)


# --------------------------------------------------------------------------------------
# check_key / check_count.


def test_check_key_rejects_none_only():
    check_key("key", jax.random.key(0))
    with pytest.raises(ValueError, match=r"key must be a JAX PRNG key, got None"):
        check_key("key", None)


def test_check_count_returns_a_python_int():
    assert check_count("n", 3) == 3
    assert type(check_count("n", np.int64(5))) is int
    assert check_count("n", 2, minimum=2) == 2


@pytest.mark.parametrize(
    "n, minimum, shown",
    [
        (0, 1, r"n must be an integer >= 1, got 0"),
        (1, 2, r"n must be an integer >= 2, got 1"),
        (2.0, 1, r"n must be an integer >= 1, got 2\.0"),
        (True, 1, r"n must be an integer >= 1, got True"),
        ("3", 1, r"n must be an integer >= 1, got '3'"),
    ],
)
def test_check_count_rejects_non_integers_and_small_values(n, minimum, shown):
    with pytest.raises(ValueError, match=shown):
        check_count("n", n, minimum=minimum)
