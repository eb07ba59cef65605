"""Tests for theory/estimate.py (the typed result) and theory/integrate.py (how it is made).

Estimate: a frozen (value, error, method) with honest float conversion. The Monte
Carlo standard error is checked for calibration (95% intervals cover 95% of the time),
quadrature for its exactness on polynomials and for an error estimate that bounds the
true error; the method objects and `choose_method` for their validation.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import theory
from theory.estimate import Estimate, monte_carlo_mean, sum_of_independent
from theory.integrate import MonteCarlo, Quadrature, Term, choose_method, expectation_sum


def _floats(lo, hi):
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


# --------------------------------------------------------------------------------------
# Estimate.


def test_estimate_converts_to_python_floats_and_is_frozen():
    estimate = Estimate(np.float32(1.5), jnp.asarray(0.25), "closed form")
    assert type(estimate.value) is float and type(estimate.error) is float
    assert (estimate.value, estimate.error, estimate.method) == (1.5, 0.25, "closed form")
    with pytest.raises(dataclasses.FrozenInstanceError):
        estimate.value = 2.0


def test_estimate_interval_is_value_plus_minus_z_errors():
    assert Estimate(1.0, 0.5, "m").interval() == (1.0 - 1.96 * 0.5, 1.0 + 1.96 * 0.5)
    assert Estimate(1.0, 0.5, "m").interval(z=2.0) == (0.0, 2.0)
    assert "value=1.5" in repr(Estimate(1.5, 0.0, "m"))


def test_estimate_error_must_be_nonnegative_or_nan():
    assert math.isnan(Estimate(np.inf, np.nan, "m").error)
    with pytest.raises(ValueError, match=r"error must be >= 0, got -0\.1"):
        Estimate(1.0, -0.1, "m")


# --------------------------------------------------------------------------------------
# monte_carlo_mean.


@given(st.lists(_floats(-1e3, 1e3), min_size=2, max_size=50))
def test_monte_carlo_mean_is_the_sample_mean_with_s_over_root_n(samples):
    estimate = monte_carlo_mean(samples, "m")
    x = np.asarray(samples)
    # Both sides sum the same float64 numbers; 1e-12 relative covers summation order.
    assert estimate.value == pytest.approx(np.mean(x), rel=1e-12, abs=1e-9)
    assert estimate.error == pytest.approx(np.std(x, ddof=1) / np.sqrt(len(x)), rel=1e-9, abs=1e-12)


def test_monte_carlo_standard_error_is_calibrated(key):
    # 2000 independent means of n = 50 standard normals: the 95% interval
    # mean +- 1.96 SE covers 0 with probability ~0.95 (Student t with 49 df gives
    # 0.944). The coverage count is Binomial(2000, 0.944), sd = 10.3; a 5-sd band
    # [0.918, 0.970] fails with probability < 1e-6.
    draws = np.asarray(jax.random.normal(key, (2000, 50)))
    covered = 0
    for row in draws:
        lo, hi = monte_carlo_mean(row, "m").interval()
        covered += lo <= 0.0 <= hi
    assert 0.918 <= covered / 2000 <= 0.970


def test_monte_carlo_mean_of_infinities():
    assert monte_carlo_mean([np.inf, np.inf], "m") == Estimate(np.inf, 0.0, "m")
    assert monte_carlo_mean([-np.inf, -np.inf], "m") == Estimate(-np.inf, 0.0, "m")
    mixed = monte_carlo_mean([np.inf, 0.0, 1.0], "m")
    assert mixed.value == np.inf and math.isnan(mixed.error)


def test_monte_carlo_mean_needs_two_draws():
    with pytest.raises(ValueError, match=r"needs n >= 2 draws, got 1"):
        monte_carlo_mean([1.0], "m")


def test_sum_of_independent_adds_errors_in_quadrature():
    total = sum_of_independent([Estimate(1.0, 0.3, "a"), Estimate(2.0, 0.4, "b")], [1.0, -2.0], "sum")
    assert total.value == pytest.approx(1.0 - 4.0)
    assert total.error == pytest.approx(math.hypot(0.3, 0.8))
    assert total.method == "sum"


# --------------------------------------------------------------------------------------
# Method objects and choose_method.


@pytest.mark.parametrize(
    "build, shown",
    [
        (lambda: Quadrature(panels=0), r"panels must be an integer >= 1, got 0"),
        (lambda: Quadrature(tail=0.0), r"tail must be a finite number > 0, got 0\.0"),
        (lambda: Quadrature(tail=np.nan), r"tail must be a finite number > 0, got nan"),
        (lambda: MonteCarlo(n=1), r"n must be an integer >= 2, got 1"),
    ],
)
def test_method_objects_validate_their_fields(build, shown):
    with pytest.raises(ValueError, match=shown):
        build()


def test_choose_method_defaults():
    g1 = theory.Gaussian(jnp.zeros(1), jnp.eye(1))
    g3 = theory.Gaussian(jnp.zeros(3), jnp.eye(3))
    key = jax.random.key(0)
    assert choose_method([g1, g1], None, None) == Quadrature()
    assert choose_method([g3, g3], None, key) == MonteCarlo()
    assert choose_method([theory.PointMass(0.0)] * 2, None, key) == MonteCarlo()
    assert choose_method([g1], MonteCarlo(n=7), key) == MonteCarlo(n=7)


@pytest.mark.parametrize(
    "laws, method, key, shown",
    [
        ("g3", None, None, r"key must be given for a Monte Carlo estimate .* in d=3 .*got None"),
        ("point", None, None, r"key must be given for a Monte Carlo estimate \(laws \['PointMass'"),
        ("g1", "quadrature", None, r"method must be Quadrature\(\.\.\.\) or MonteCarlo\(\.\.\.\), got 'quadrature'"),
        ("g3", Quadrature(), None, r"Quadrature needs laws with Lebesgue densities in d <= 2, got Gaussian in d=3"),
        ("point", Quadrature(), None, r"got PointMass in d=1"),
    ],
)
def test_choose_method_rejects_impossible_requests(laws, method, key, shown):
    law = {
        "g1": theory.Gaussian(jnp.zeros(1), jnp.eye(1)),
        "g3": theory.Gaussian(jnp.zeros(3), jnp.eye(3)),
        "point": theory.PointMass(0.0),
    }[laws]
    with pytest.raises(ValueError, match=shown):
        choose_method([law, law], method, key)


# --------------------------------------------------------------------------------------
# expectation_sum: quadrature is exact on what it should be, and its error is honest.


def _second_moment(x, logs):
    return jnp.sum(x**2, axis=-1)


@settings(max_examples=6)
@given(_floats(-2.0, 2.0), _floats(0.3, 3.0))
def test_quadrature_of_gaussian_moments_is_exact_to_rounding(mean, std):
    # E[X^2] = m^2 + s^2. The integrand x^2 N(x; m, s^2) is analytic, so 64 panels of
    # order 8 over +-10 sd converge geometrically to float64 rounding; the truncated
    # tail beyond 10 sd is < 1e-20. The floor 1e-12 (1 + E[X^2]) covers the rounding
    # of summing 1024 weighted nodes (~ sqrt(1024) eps relative, with a wide margin).
    law = theory.Gaussian(jnp.array([mean]), jnp.array([[std**2]]))
    estimate = expectation_sum([Term(0, _second_moment)], [law], method=Quadrature(), key=None, what="E")
    exact = mean**2 + std**2
    assert abs(estimate.value - exact) <= estimate.error + 1e-12 * (1.0 + exact)
    assert "Gauss-Legendre quadrature (1-D, 1024 nodes" in estimate.method


def test_quadrature_error_estimate_bounds_the_coarse_error_and_shrinks_geometrically():
    # On a coarse rule the integrand is under-resolved: the reported error
    # |I(P) - I(2P)| must dominate the true error of the returned (finer) value, and
    # the true error must fall at least 10x per doubling of panels (geometric
    # convergence of Gauss-Legendre for analytic integrands). panels_per_sd = 0.05 asks
    # for panels no narrower than 4 sd (the whole box), so `panels` alone sets the grid.
    law = theory.Gaussian(jnp.array([0.5]), jnp.array([[0.04]]))
    exact = 0.25 + 0.04
    errors = []
    for panels in (1, 2, 4):
        estimate = expectation_sum(
            [Term(0, _second_moment)], [law], method=Quadrature(panels=panels, order=4, panels_per_sd=0.05), key=None, what="E"
        )
        true_error = abs(estimate.value - exact)
        assert true_error <= estimate.error + 1e-15
        errors.append(true_error)
    assert errors[1] < errors[0] / 10 and errors[2] < errors[1] / 10


def test_monte_carlo_expectation_is_within_five_standard_errors(key):
    # E[||X||^2] = tr S + ||m||^2 under N(m, S) in d = 3. |Z| > 5 has probability
    # 5.7e-7 for a normal mean (n = 20000 is deep in the CLT regime for a chi-square).
    mean = jnp.array([1.0, -1.0, 0.5])
    cov = jnp.diag(jnp.array([0.5, 1.0, 2.0]))
    law = theory.Gaussian(mean, cov)
    estimate = expectation_sum([Term(0, _second_moment)], [law], method=MonteCarlo(n=20_000), key=key, what="E")
    assert abs(estimate.value - (3.5 + 2.25)) <= 5 * estimate.error
    assert estimate.method == "E: Monte Carlo (n=20000 per law)"


def test_quadrature_support_widens_the_box_to_where_the_integrand_lives():
    # The integrand p(x) weighted under q: without `support` naming p, a box around q
    # alone misses p's mass entirely (this was the f_divergence bug).
    p = theory.Gaussian(jnp.array([6.0]), jnp.array([[0.1]]))
    q = theory.Gaussian(jnp.array([0.0]), jnp.array([[0.1]]))

    def density_of_p(x, logs):
        return jnp.exp(logs[0])

    term = [Term(1, None, density_of_p)]
    narrow = expectation_sum(term, [p, q], method=Quadrature(), key=None, what="mass")
    wide = expectation_sum(term, [p, q], method=Quadrature(), key=None, what="mass", support=(0, 1))
    assert narrow.value < 1e-12  # P(X > 3.16 | X ~ N(6, 0.1)) = 1 - Phi(9) ~ 1e-19
    assert abs(wide.value - 1.0) <= wide.error + 1e-12


def test_arguments_of_the_wrong_kind_raise_type_errors():
    with pytest.raises(TypeError, match=r"order must be an integer >= 1, got 2\.5"):
        Quadrature(order=2.5)
    with pytest.raises(TypeError, match=r"key must be a JAX PRNG key, got None"):
        choose_method([theory.Gaussian(jnp.zeros(1), jnp.eye(1))], MonteCarlo(n=10), None)


# --------------------------------------------------------------------------------------
# Proportion: the binomial proportion with its Clopper-Pearson interval.


def test_binomial_proportion_interval_matches_the_beta_quantiles():
    # Clopper-Pearson: [B(a/2; k, n-k+1), B(1-a/2; k+1, n-k)] (Brown, Cai & DasGupta 2001).
    import scipy.stats

    p = theory.binomial_proportion(7, 20, confidence=0.9)
    assert isinstance(p, theory.Proportion)
    assert (p.count, p.n, p.value) == (7, 20, 0.35)
    assert p.error == pytest.approx(math.sqrt(0.35 * 0.65 / 20), rel=1e-15)
    assert p.low == pytest.approx(scipy.stats.beta.ppf(0.05, 7, 14), rel=1e-12)
    assert p.high == pytest.approx(scipy.stats.beta.ppf(0.95, 8, 13), rel=1e-12)
    assert p.interval() == (p.low, p.high) and p.covers(0.35) and not p.covers(0.9)
    # The ends: k = 0 gives low = 0 and high = 1 - (a/2)^(1/n); k = n mirrors it.
    zero, full = theory.binomial_proportion(0, 10), theory.binomial_proportion(10, 10)
    assert zero.low == 0.0 and zero.high == pytest.approx(1 - 0.025 ** (1 / 10), rel=1e-12)
    assert full.high == 1.0 and full.low == pytest.approx(0.025 ** (1 / 10), rel=1e-12)


@pytest.mark.parametrize(
    "args, kwargs, error, shown",
    [
        ((3, 2), {}, ValueError, r"count must be an integer <= 2, got 3"),
        ((-1, 2), {}, ValueError, r"count must be an integer >= 0, got -1"),
        ((1, 0), {}, ValueError, r"n must be an integer >= 1, got 0"),
        ((1, 2.0), {}, TypeError, r"n must be an integer >= 1, got 2\.0"),
        ((1, 2), {"confidence": 1.0}, ValueError, r"confidence must be a finite number in \(0, 1\), got 1\.0"),
        ((1, 2), {"confidence": "high"}, TypeError, r"confidence must be a finite number in \(0, 1\), got 'high'"),
    ],
)
def test_binomial_proportion_rejects_bad_input(args, kwargs, error, shown):
    with pytest.raises(error, match=shown):
        theory.binomial_proportion(*args, **kwargs)


# --------------------------------------------------------------------------------------
# LipschitzEstimate: a bracket with its method.


def test_lipschitz_estimate_holds_a_bracket_and_its_method():
    estimate = theory.LipschitzEstimate(lower=0.5, upper=2.0, method="probes; spectral norms", n_probes=3)
    assert (estimate.lower, estimate.upper, estimate.n_probes) == (0.5, 2.0, 3)
    assert theory.LipschitzEstimate(lower=0.0, upper=math.inf, method="none certified", n_probes=1).upper == math.inf
    with pytest.raises(ValueError, match=r"lower must be >= 0, got -1\.0"):
        theory.LipschitzEstimate(lower=-1.0, upper=2.0, method="m", n_probes=1)
    with pytest.raises(ValueError, match=r"upper must be a number or \+inf, got nan"):
        theory.LipschitzEstimate(lower=1.0, upper=math.nan, method="m", n_probes=1)
    with pytest.raises(TypeError, match=r"n_probes must be an integer >= 1, got 1\.5"):
        theory.LipschitzEstimate(lower=1.0, upper=2.0, method="m", n_probes=1.5)


# --------------------------------------------------------------------------------------
# Monte Carlo intervals under skew (issue 12, item 15).


def test_skewed_monte_carlo_integrand_warns_and_a_mild_one_does_not(key):
    # KL(grid4 || grid9): the log-ratio under grid4 has skewness about -44 (a rare tail
    # between grid4's modes), so at n = 2000 the Edgeworth shift of a tail of the 95%
    # interval is ~0.0846 * 44 / sqrt(2000) = 0.08 > 0.01. A Gaussian pair's log-ratio
    # (a shifted chi-square, skewness ~2) stays below: 0.0846 * 2 / 45 = 0.004.
    import warnings

    from theory.integrate import SkewedMonteCarloWarning

    with pytest.warns(SkewedMonteCarloWarning, match=r"KL: the Monte Carlo integrand has sample skewness -\d"):
        theory.kl(theory.gaussian_grid(4), theory.gaussian_grid(9), key=key, method=MonteCarlo(n=2000))
    p, q = theory.Gaussian(jnp.zeros(1), jnp.eye(1)), theory.Gaussian(jnp.ones(1), 2.0 * jnp.eye(1))
    with warnings.catch_warnings():
        warnings.simplefilter("error", SkewedMonteCarloWarning)
        theory.kl(p, q, key=key, method=MonteCarlo(n=2000))


def _coverage(p, q, n, repeats, key):
    import warnings

    truth = theory.kl(p, q, method=Quadrature()).value
    covered = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for repeat_key in jax.random.split(key, repeats):
            lo, hi = theory.kl(p, q, key=repeat_key, method=MonteCarlo(n=n)).interval()
            covered += lo <= truth <= hi
    return covered / repeats


@pytest.mark.slow
def test_normal_intervals_under_cover_where_the_warning_fires_and_cover_where_it_does_not(key):
    # 200 independent nominal-95% intervals at n = 2000: the coverage count is binomial,
    # sd = sqrt(0.95 * 0.05 / 200) = 0.0154 at 95%. The skewed KL(grid4 || grid9)
    # (measured 80.5%) must fall more than 4 sd below 95%; the mild Gaussian pair must
    # not (0.95 - 0.062 = 0.888 and above).
    key_skewed, key_mild = jax.random.split(key)
    skewed = _coverage(theory.gaussian_grid(4), theory.gaussian_grid(9), 2000, 200, key_skewed)
    assert skewed < 0.95 - 4 * 0.0154, skewed
    mild = _coverage(theory.Gaussian(jnp.zeros(1), jnp.eye(1)), theory.Gaussian(jnp.ones(1), 2.0 * jnp.eye(1)), 2000, 200, key_mild)
    assert mild > 0.95 - 4 * 0.0154, mild
