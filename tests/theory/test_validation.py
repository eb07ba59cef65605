"""Tests for theory/validation.py: every check names the argument and shows the value.

Each check passes honest input, raises ValueError (a bad value) or TypeError (the
wrong kind of argument) with the argument's name and the offending value, and stays
silent on tracers (inside `jax.jit` only
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
    check_bool,
    check_count,
    check_counts,
    check_distinct,
    check_finite,
    check_in_interval,
    check_key,
    check_number,
    check_points,
    check_positive,
    check_positive_definite,
    check_positive_number,
    check_probability,
    check_probability_vector,
    check_shape,
    check_tuple,
    check_type,
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


def test_check_key_accepts_typed_and_raw_keys_and_rejects_everything_else():
    check_key("key", jax.random.key(0))
    check_key("key", jax.random.PRNGKey(0))
    with pytest.raises(TypeError, match=r"key must be a JAX PRNG key, got None"):
        check_key("key", None)
    with pytest.raises(TypeError, match=r"key must be a JAX PRNG key, got 0 \(a int\)"):
        check_key("key", 0)
    with pytest.raises(TypeError, match=r"key must be a JAX PRNG key, got an array of dtype float32"):
        check_key("key", jnp.zeros(2, jnp.float32))


def test_check_count_returns_a_python_int():
    assert check_count("n", 3) == 3
    assert type(check_count("n", np.int64(5))) is int
    assert check_count("n", 2, minimum=2) == 2


@pytest.mark.parametrize(
    "n, minimum, error, shown",
    [
        (0, 1, ValueError, r"n must be an integer >= 1, got 0"),
        (1, 2, ValueError, r"n must be an integer >= 2, got 1"),
        (2.0, 1, TypeError, r"n must be an integer >= 1, got 2\.0"),
        (True, 1, TypeError, r"n must be an integer >= 1, got True"),
        ("3", 1, TypeError, r"n must be an integer >= 1, got '3'"),
        (None, 1, TypeError, r"n must be an integer >= 1, got None"),
    ],
)
def test_check_count_rejects_non_integers_and_small_values(n, minimum, error, shown):
    with pytest.raises(error, match=shown):
        check_count("n", n, minimum=minimum)


def test_check_count_upper_bound():
    assert check_count("n_steps", 1000, maximum=1000) == 1000
    with pytest.raises(ValueError, match=r"n_steps must be an integer <= 1000, got 1001"):
        check_count("n_steps", 1001, maximum=1000)


def test_check_counts_is_a_tuple_of_distinct_integers():
    assert check_counts("seeds", (0, np.int64(3)), minimum=0) == (0, 3)
    assert check_counts("grid", (2, 2), distinct=False) == (2, 2)
    with pytest.raises(TypeError, match=r"seeds must be a tuple, got \[0, 1\]"):
        check_counts("seeds", [0, 1])
    with pytest.raises(ValueError, match=r"seeds must hold at least 1 value\(s\), got \(\)"):
        check_counts("seeds", ())
    with pytest.raises(ValueError, match=r"seeds must not repeat a value, got \(1, 1\)"):
        check_counts("seeds", (1, 1))
    with pytest.raises(TypeError, match=r"seeds must be an integer >= 0, got 1\.5"):
        check_counts("seeds", (1.5,), minimum=0)


# --------------------------------------------------------------------------------------
# Scalars: numbers, intervals, probabilities, booleans, kinds.


def test_check_number_and_positive_number():
    assert check_number("x", np.float32(1.5)) == 1.5 and type(check_number("x", 2)) is float
    assert check_positive_number("lr", 1e-3) == 1e-3
    assert check_positive_number("t_end", 0, allow_zero=True) == 0.0
    for bad, error, shown in [
        ("1", TypeError, r"x must be a finite number, got '1'"),
        (True, TypeError, r"x must be a finite number, got True"),
        (np.ones(2), TypeError, r"x must be a finite number, got array"),
        (np.nan, ValueError, r"x must be a finite number, got nan"),
    ]:
        with pytest.raises(error, match=shown):
            check_number("x", bad)
    with pytest.raises(ValueError, match=r"lr must be a finite number > 0, got 0\.0"):
        check_positive_number("lr", 0.0)
    with pytest.raises(ValueError, match=r"t_end must be a finite number >= 0, got -1\.0"):
        check_positive_number("t_end", -1.0, allow_zero=True)


def test_check_in_interval_names_the_ends_it_includes():
    assert check_in_interval("c", 0.5, 0.0, 1.0) == 0.5
    assert check_in_interval("t_end", 0.0, 0.0, 1.0, include_low=True) == 0.0
    with pytest.raises(ValueError, match=r"c must be a finite number in \(0, 1\), got 1\.0"):
        check_in_interval("c", 1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match=r"f must be a finite number in \(0, 1\], got 0\.0"):
        check_in_interval("f", 0.0, 0.0, 1.0, include_high=True)
    assert check_probability("eta", 1.0) == 1.0 and check_probability("eta", 0) == 0.0
    with pytest.raises(ValueError, match=r"eta must be a finite number in \[0, 1\], got 1\.5"):
        check_probability("eta", 1.5)
    with pytest.raises(ValueError, match=r"p must be a finite number in \(0, 1\), got 0\.0"):
        check_probability("p", 0.0, include_ends=False)


def test_check_bool_and_check_type():
    assert check_bool("learned", np.bool_(True)) is True
    with pytest.raises(TypeError, match=r"learned must be true or false, got 1"):
        check_bool("learned", 1)
    assert check_type("n", 3, int) == 3
    with pytest.raises(TypeError, match=r"schedule must be an int or float, got 'geometric' \(a str\)"):
        check_type("schedule", "geometric", (int, float))


def test_check_distinct_lists_the_repeats():
    check_distinct("labels", ("a", "b"))
    with pytest.raises(ValueError, match=r"labels must not repeat a value, got \('a', 'b', 'a'\) \(repeated: \['a'\]\)"):
        check_distinct("labels", ("a", "b", "a"))
    with pytest.raises(TypeError, match=r"values must be a tuple, got 3"):
        check_tuple("values", 3)


def test_check_points_shape_dtype_and_finiteness():
    x = check_points("x0", np.zeros((3, 2)))
    assert isinstance(x, jax.Array) and x.shape == (3, 2)
    check_points("x0", np.zeros((1, 2)), dim=2)
    for bad, error, shown in [
        (np.zeros(3), ValueError, r"x0 must have shape \(n, d\) with n, d >= 1, got shape \(3,\)"),
        (np.zeros((0, 2)), ValueError, r"x0 must have shape \(n, d\) with n, d >= 1, got shape \(0, 2\)"),
        (np.zeros((3, 2), np.int32), TypeError, r"x0 must be floating point, got dtype int32"),
    ]:
        with pytest.raises(error, match=shown):
            check_points("x0", bad)
    with pytest.raises(ValueError, match=r"x0 must have shape \(n, 3\), got shape \(2, 2\)"):
        check_points("x0", np.zeros((2, 2)), dim=3)
    with pytest.raises(ValueError, match=r"x0 must be finite, got non-finite entries"):
        check_points("x0", np.array([[0.0, np.nan]]), finite=True)


def test_array_checks_reject_non_numbers_as_type_errors():
    with pytest.raises(TypeError, match=r"std must be a number or an array of numbers, got 'big'"):
        check_positive("std", "big")
    with pytest.raises(TypeError, match=r"mean must be a number or an array of numbers, got None"):
        check_finite("mean", None)
    assert check_positive("std", np.float32(0.5)) == 0.5
