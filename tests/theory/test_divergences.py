"""Tests for theory/divergences.py: KL, JS and Fisher divergences (nats).

Closed forms first (the Gaussian KL against its 1-D formula, affine invariance and
additivity; discrete KL/JS against SciPy), then the three routes against each other:
closed form vs quadrature (within the reported error plus a float64 rounding floor) vs
Monte Carlo (within 5 standard errors), then the properties: KL >= 0 with equality iff
p = q, JS symmetric in [0, log 2] and squeezed to log 2 as supports separate, and the
disjoint-support laws (parallel lines, point masses).

Tolerances. Monte Carlo: |estimate - exact| <= 5 SE; for a CLT-normal estimate
P(|Z| > 5) = 5.7e-7 per check. Quadrature: |estimate - exact| <= error + floor, with
floor = 1e-10 (1 + |exact|): the integrands are sums of ~1e6 float64 terms whose
magnitudes are bounded by a few times |log p - log q| <= 1e3 on the box, so summation
and log-density rounding contribute < 1e-12; 1e-10 leaves a 100x margin.
"""

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.spatial.distance
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import theory

LOG2 = math.log(2.0)


def _floats(lo, hi):
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


def _floor(exact):
    return 1e-10 * (1.0 + abs(exact))


@st.composite
def gaussians_1d(draw, std=(0.5, 2.0)):
    return theory.Gaussian(jnp.array([draw(_floats(-2, 2))]), jnp.array([[draw(_floats(*std)) ** 2]]))


@st.composite
def gaussians(draw, d):
    """N(m, A A^T + c I): m in [-2, 2]^d, A in [-1, 1]^{d x d}, c in [0.3, 1]."""
    mean = draw(arrays(np.float64, (d,), elements=_floats(-2, 2)))
    a = draw(arrays(np.float64, (d, d), elements=_floats(-1, 1)))
    return theory.Gaussian(mean, a @ a.T + draw(_floats(0.3, 1.0)) * np.eye(d))


@st.composite
def mixtures_1d(draw, max_components=3):
    """1 to 3 components, means in [-2, 2], standard deviations in [0.5, 1.5], weights
    bounded below by 1/(10 K)."""
    k = draw(st.integers(1, max_components))
    raw = np.asarray(draw(st.lists(_floats(0.1, 1.0), min_size=k, max_size=k)))
    means = np.asarray(draw(st.lists(_floats(-2, 2), min_size=k, max_size=k)))[:, None]
    stds = np.asarray(draw(st.lists(_floats(0.5, 1.5), min_size=k, max_size=k)))
    return theory.MixtureOfGaussians(raw / raw.sum(), means, (stds**2)[:, None, None])


_score = eqx.filter_jit(lambda law, x: law.score(x))  # one compilation per law structure


def _shifted(law, shift):
    return theory.MixtureOfGaussians(law.weights, law.means + shift, law.covs)


def _as_mixture(g):
    return theory.mixture([g], [1.0])


# --------------------------------------------------------------------------------------
# Closed-form Gaussian KL.


@given(gaussians_1d(), gaussians_1d())
def test_kl_gaussians_matches_the_one_dimensional_formula(p, q):
    # KL(N(m0, s0^2) || N(m1, s1^2)) = log(s1 / s0) + (s0^2 + (m0 - m1)^2) / (2 s1^2) - 1/2.
    m0, s0 = float(p.mean[0]), math.sqrt(float(p.cov[0, 0]))
    m1, s1 = float(q.mean[0]), math.sqrt(float(q.cov[0, 0]))
    expected = math.log(s1 / s0) + (s0**2 + (m0 - m1) ** 2) / (2 * s1**2) - 0.5
    estimate = theory.kl(p, q)
    assert estimate.value == pytest.approx(expected, rel=1e-12, abs=1e-14)
    assert estimate.error == 0.0 and estimate.method == "KL: closed form (Gaussian/Gaussian)"
    assert theory.kl_gaussians(p, q) == estimate


@given(st.integers(1, 3).flatmap(lambda d: st.tuples(gaussians(d), gaussians(d), gaussians(d))), _floats(-3, 3))
def test_kl_gaussians_is_invariant_under_invertible_affine_maps(laws, offset):
    # KL(A#p || A#q) = KL(p || q) for x -> A x + b invertible; A = (matrix) + 2 I keeps
    # it invertible for the entries drawn. Relative 1e-9: condition numbers <= ~50.
    p, q, source = laws
    a = np.asarray(source.cov) + 2.0 * np.eye(p.dim)
    b = np.full(p.dim, offset)

    def push(g):
        return theory.Gaussian(a @ np.asarray(g.mean) + b, a @ np.asarray(g.cov) @ a.T)

    assert theory.kl_gaussians(push(p), push(q)).value == pytest.approx(theory.kl_gaussians(p, q).value, rel=1e-9, abs=1e-12)


@given(gaussians(2), gaussians(2), gaussians(1), gaussians(1))
def test_kl_gaussians_is_additive_over_independent_blocks(p1, q1, p2, q2):
    def product(a, b):
        cov = np.zeros((3, 3))
        cov[:2, :2], cov[2:, 2:] = a.cov, b.cov
        return theory.Gaussian(np.concatenate([a.mean, b.mean]), cov)

    joint = theory.kl_gaussians(product(p1, p2), product(q1, q2)).value
    assert joint == pytest.approx(theory.kl_gaussians(p1, q1).value + theory.kl_gaussians(p2, q2).value, rel=1e-10, abs=1e-12)


# --------------------------------------------------------------------------------------
# KL >= 0, = 0 iff equal; the three routes agree.


@settings(max_examples=6)
@given(mixtures_1d(), mixtures_1d(), _floats(0.5, 3.0))
def test_kl_is_nonnegative_and_zero_exactly_when_the_laws_are_equal(p, q, shift):
    kl_pq = theory.kl(p, q)
    assert kl_pq.value >= -(kl_pq.error + _floor(0.0))
    kl_pp = theory.kl(p, p)
    assert abs(kl_pp.value) <= kl_pp.error + _floor(0.0)
    # p and p shifted by >= 0.5 differ; their KL is >= ~0.01 for these laws (a shift of
    # 0.5 against a spread of at most ~5), far above the tolerance.
    kl_shifted = theory.kl(p, _shifted(p, shift))
    assert kl_shifted.value > 1e3 * (kl_shifted.error + _floor(0.0))


@given(gaussians_1d(std=(0.3, 3.0)), gaussians_1d(std=(0.3, 3.0)))
def test_kl_closed_form_agrees_with_quadrature_in_1d(p, q):
    exact = theory.kl_gaussians(p, q).value
    estimate = theory.kl(p, q, method=theory.Quadrature())
    assert "Gauss-Legendre quadrature (1-D" in estimate.method
    assert abs(estimate.value - exact) <= estimate.error + _floor(exact)
    assert estimate.error <= 1e-6


@settings(max_examples=3)
@given(gaussians(2), gaussians(2))
def test_kl_closed_form_agrees_with_quadrature_in_2d(p, q):
    exact = theory.kl_gaussians(p, q).value
    estimate = theory.kl(_as_mixture(p), _as_mixture(q))  # mixtures: no closed form taken
    assert "Gauss-Legendre quadrature (2-D" in estimate.method
    assert abs(estimate.value - exact) <= estimate.error + _floor(exact)
    assert estimate.error <= 1e-6


@settings(max_examples=4)
@given(gaussians(1), gaussians(1), st.integers(0, 2**31 - 1))
def test_kl_closed_form_agrees_with_monte_carlo_in_1d(p, q, seed):
    exact = theory.kl_gaussians(p, q).value
    estimate = theory.kl(p, q, key=jax.random.key(seed), method=theory.MonteCarlo(n=20_000))
    assert estimate.method == "KL: Monte Carlo (n=20000 per law)"
    assert abs(estimate.value - exact) <= 5 * estimate.error


def test_kl_in_three_dimensions_is_monte_carlo_with_a_key(key):
    # A mixture has no closed form and d = 3 has no quadrature here: Monte Carlo.
    p = theory.Gaussian(jnp.array([0.0, 1.0, -1.0]), jnp.diag(jnp.array([1.0, 0.5, 2.0])))
    q = theory.Gaussian(jnp.zeros(3), jnp.eye(3) + 0.3)
    exact = theory.kl_gaussians(p, q).value
    estimate = theory.kl(_as_mixture(p), q, key=key)
    assert "Monte Carlo (n=100000" in estimate.method
    assert abs(estimate.value - exact) <= 5 * estimate.error
    with pytest.raises(ValueError, match=r"key must be given for a Monte Carlo estimate .* d=3 .*got None"):
        theory.kl(_as_mixture(p), q)


# --------------------------------------------------------------------------------------
# JS: symmetric, in [0, log 2], -> log 2 as the supports separate.


@given(mixtures_1d(), mixtures_1d())
def test_js_is_symmetric_bounded_and_zero_on_equal_laws(p, q):
    pq, qp = theory.js(p, q), theory.js(q, p)
    tolerance = pq.error + qp.error + _floor(LOG2)
    assert abs(pq.value - qp.value) <= tolerance
    assert -tolerance <= pq.value <= LOG2 + tolerance
    same = theory.js(p, p)
    assert abs(same.value) <= same.error + _floor(0.0)


def _bhattacharyya_bound(p, q):
    """An upper bound on BC(p, q) = integral sqrt(p q) for 1-D mixtures:
    sqrt(sum_i a_i) <= sum_i sqrt(a_i) gives BC <= sum_ij sqrt(w_i v_j) BC(N_i, M_j), and
    BC(N(m1, s1^2), N(m2, s2^2)) = sqrt(2 s1 s2 / (s1^2 + s2^2)) exp(-(m1 - m2)^2 / (4 (s1^2 + s2^2)))."""
    total = 0.0
    for w, m1, c1 in zip(p.weights, p.means[:, 0], p.covs[:, 0, 0]):
        for v, m2, c2 in zip(q.weights, q.means[:, 0], q.covs[:, 0, 0]):
            s1, s2 = math.sqrt(c1), math.sqrt(c2)
            bc = math.sqrt(2 * s1 * s2 / (c1 + c2)) * math.exp(-((m1 - m2) ** 2) / (4 * (c1 + c2)))
            total += math.sqrt(w * v) * bc
    return total


@given(mixtures_1d(), _floats(0.0, 40.0))
def test_js_tends_to_log2_as_a_mixture_is_moved_away_from_itself(p, distance):
    # log(1 + t) <= sqrt(t) gives log 2 - JS(p, q) = 1/2 int [p log(1 + q/p) + q log(1 + p/q)]
    # <= int sqrt(p q) = BC(p, q): JS is squeezed into [log 2 - BC, log 2], and BC -> 0
    # (like exp(-D^2 / 12) here) as the translate q moves a distance D away.
    q = _shifted(p, distance)
    estimate = theory.js(p, q)
    tolerance = estimate.error + _floor(LOG2)
    assert LOG2 - _bhattacharyya_bound(p, q) - tolerance <= estimate.value <= LOG2 + tolerance


def test_js_between_two_gaussians_grows_with_their_separation_to_log2():
    values = [
        theory.js(theory.Gaussian(jnp.zeros(1), jnp.eye(1)), theory.Gaussian(jnp.array([d]), jnp.eye(1)))
        for d in (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 80.0)
    ]
    assert all(a.value < b.value for a, b in zip(values, values[1:]))
    assert abs(values[0].value) <= values[0].error + _floor(0.0)
    # At 80 sd, BC = exp(-800): JS = log 2 to rounding.
    assert abs(values[-1].value - LOG2) <= values[-1].error + _floor(LOG2)


# --------------------------------------------------------------------------------------
# Accuracy on the named targets: two independent routes each.

NAMED_PAIRS = {
    "KL(grid-4 || grid-9)": (theory.kl, theory.gaussian_grid(4), theory.gaussian_grid(9)),
    "JS(grid-2, grid-4)": (theory.js, theory.gaussian_grid(2), theory.gaussian_grid(4)),
    "JS(ncsn, ncsn noised by 1)": (theory.js, theory.ncsn_two_modes(), theory.ncsn_two_modes().noised(1.0, 1.0)),
}


@pytest.mark.parametrize("divergence, p, q", list(NAMED_PAIRS.values()), ids=list(NAMED_PAIRS))
def test_quadrature_on_named_targets_is_accurate_to_1e6_and_agrees_with_monte_carlo(divergence, p, q, key):
    quadrature = divergence(p, q)
    assert "quadrature (2-D" in quadrature.method and quadrature.error <= 1e-6
    monte_carlo = divergence(p, q, key=key, method=theory.MonteCarlo(n=100_000))
    assert abs(quadrature.value - monte_carlo.value) <= 5 * monte_carlo.error + quadrature.error


@pytest.mark.slow
@pytest.mark.parametrize("divergence, p, q", list(NAMED_PAIRS.values()), ids=list(NAMED_PAIRS))
def test_quadrature_on_named_targets_survives_a_refinement(divergence, p, q):
    # The default rule (64 then 128 panels) against 128 then 256 panels: the values
    # differ by < 1e-6, and by no more than the default's own error estimate (+ floor).
    default = divergence(p, q)
    finer = divergence(p, q, method=theory.Quadrature(panels=128))
    assert abs(default.value - finer.value) <= min(1e-6, default.error + _floor(default.value))


@settings(max_examples=3)
@given(_floats(-2, 2), _floats(-2, 2), _floats(0.8, 1.5))
def test_kl_between_grid_scale_gaussians_matches_closed_form_to_1e6(x, y, ratio):
    # Components at the grid targets' scale (variance 0.1, spacing-2 offsets), embedded
    # as one-component mixtures so the quadrature route is taken.
    p = theory.Gaussian(jnp.array([x, y]), theory.GRID_VARIANCE * jnp.eye(2))
    q = theory.Gaussian(jnp.array([x + 2.0, y]), theory.GRID_VARIANCE * ratio * jnp.eye(2))
    exact = theory.kl_gaussians(p, q).value
    estimate = theory.kl(_as_mixture(p), _as_mixture(q))
    assert abs(estimate.value - exact) <= min(1e-6, estimate.error + _floor(exact))


# --------------------------------------------------------------------------------------
# Disjoint supports: the parallel lines and point masses.


# theta = 0 exactly, or |theta| >= 1e-6: XLA on CPU flushes subnormals to zero, so a
# subnormal theta is the same line as 0.
offsets = st.one_of(st.just(0.0), _floats(1e-6, 3.0), _floats(-3.0, -1e-6))


@given(offsets)
def test_parallel_lines_js_is_log2_and_kl_infinite_unless_they_coincide(theta):
    key = jax.random.key(3)
    p, q = theory.VerticalSegment(0.0), theory.VerticalSegment(theta)
    js, kl = theory.js(p, q, key=key), theory.kl(p, q, key=key)
    if theta == 0.0:
        assert js.value == 0.0 and kl.value == 0.0
    else:
        # Exact, not statistical: every draw contributes log 2 (resp. +inf).
        assert js.value == pytest.approx(LOG2, abs=1e-15) and js.error <= 1e-15
        assert kl.value == math.inf and kl.error == 0.0
    assert "Monte Carlo" in js.method


@given(offsets)
def test_point_masses_js_is_log2_and_kl_infinite_unless_they_coincide(location):
    key = jax.random.key(4)
    p, q = theory.PointMass(0.0), theory.PointMass(location)
    js, kl = theory.js(p, q, key=key), theory.kl(p, q, key=key)
    assert js.value == pytest.approx(0.0 if location == 0.0 else LOG2, abs=1e-15)
    assert kl.value == (0.0 if location == 0.0 else math.inf)


def test_quadrature_refuses_a_law_without_a_lebesgue_density():
    with pytest.raises(ValueError, match=r"Quadrature needs laws with Lebesgue densities"):
        theory.js(theory.VerticalSegment(0.0), theory.gaussian_grid(2), method=theory.Quadrature())


# --------------------------------------------------------------------------------------
# Discrete divergences.

probability_vectors = st.integers(2, 6).flatmap(
    lambda k: st.tuples(
        st.lists(_floats(0.01, 1.0), min_size=k, max_size=k), st.lists(_floats(0.01, 1.0), min_size=k, max_size=k)
    )
)


@given(probability_vectors)
def test_discrete_kl_and_js_match_scipy_and_their_identities(pair):
    p, q = (np.asarray(v) / np.sum(v) for v in pair)
    kl_pq = theory.kl(p, q)
    assert kl_pq.error == 0.0 and kl_pq.method == "KL: exact sum (discrete)"
    assert kl_pq.value == pytest.approx(scipy.stats.entropy(p, q), rel=1e-12, abs=1e-15)
    assert kl_pq.value >= 0.0
    js = theory.js(p, q)
    # SciPy's Jensen-Shannon *distance* is the square root of the divergence (natural log).
    assert js.value == pytest.approx(scipy.spatial.distance.jensenshannon(p, q) ** 2, rel=1e-9, abs=1e-15)
    assert js.value == pytest.approx(theory.js(q, p).value, rel=1e-14, abs=1e-16)
    assert 0.0 <= js.value <= LOG2 + 1e-15
    m = 0.5 * (p + q)
    assert js.value == pytest.approx(0.5 * theory.kl(p, m).value + 0.5 * theory.kl(q, m).value, rel=1e-12, abs=1e-16)
    assert theory.kl(p, p).value == 0.0 and theory.js(p, p).value == 0.0


def test_discrete_divergences_with_zeros():
    assert theory.kl(np.array([1.0, 0.0]), np.array([0.5, 0.5])).value == pytest.approx(LOG2)
    assert theory.kl(np.array([0.5, 0.5]), np.array([1.0, 0.0])).value == math.inf
    assert theory.js(np.array([1.0, 0.0]), np.array([0.0, 1.0])).value == pytest.approx(LOG2)
    assert theory.js(np.array([1.0, 0.0, 0.0]), np.array([1.0, 0.0, 0.0])).value == 0.0


# --------------------------------------------------------------------------------------
# Fisher divergence.


@pytest.mark.parametrize("law", [theory.gaussian_grid(4), theory.ncsn_two_modes().noised(0.5, 0.7)], ids=["grid-4", "ncsn-noised"])
def test_fisher_divergence_of_the_exact_score_is_zero(law, key):
    estimate = theory.fisher_divergence(law, functools.partial(_score, law), key=key, method=theory.MonteCarlo(1000))
    assert estimate.value == 0.0 and estimate.error == 0.0
    assert estimate.method == "Fisher divergence: Monte Carlo (n=1000 per law)"


@given(gaussians(2), arrays(np.float64, (2,), elements=_floats(-2, 2)))
def test_fisher_divergence_of_a_shifted_score_is_the_squared_precision_times_shift(p, shift):
    # s(x) = grad log p(x - delta): s(x) - grad log p(x) = S^{-1} delta for every x, so
    # F = ||S^{-1} delta||^2 exactly (every draw gives it; rounding only).
    estimate = theory.fisher_divergence(p, lambda x: _score(p, x - shift), key=jax.random.key(0), method=theory.MonteCarlo(500))
    expected = float(np.sum(np.linalg.solve(np.asarray(p.cov), shift) ** 2))
    assert estimate.value == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert estimate.error <= 1e-9 * (1 + expected)


def test_fisher_divergence_of_a_scaled_score_is_within_five_standard_errors(key):
    # s = c grad log p for p = N(m, S): F = (1 - c)^2 E||S^{-1}(X - m)||^2 = (1 - c)^2 tr(S^{-1}).
    p = theory.Gaussian(jnp.array([1.0, -1.0]), jnp.array([[1.0, 0.3], [0.3, 0.5]]))
    c = 0.6
    estimate = theory.fisher_divergence(p, lambda x: c * _score(p, x), key=key, method=theory.MonteCarlo(20_000))
    expected = (1 - c) ** 2 * np.trace(np.linalg.inv(np.asarray(p.cov)))
    assert abs(estimate.value - expected) <= 5 * estimate.error


def test_fisher_divergence_by_default_quadrature_in_2d_matches_the_closed_form():
    # Same closed form as above, (1 - c)^2 tr(S^{-1}); in d = 2 the default method is
    # Gauss-Legendre quadrature (no key needed), within its reported error plus the
    # float64 floor 1e-10 (1 + |value|).
    p = theory.Gaussian(jnp.array([1.0, -1.0]), jnp.array([[1.0, 0.3], [0.3, 0.5]]))
    c = 0.6
    estimate = theory.fisher_divergence(p, lambda x: c * _score(p, x))
    expected = (1 - c) ** 2 * np.trace(np.linalg.inv(np.asarray(p.cov)))
    assert "quadrature (2-D" in estimate.method
    assert abs(estimate.value - expected) <= estimate.error + 1e-10 * (1 + expected)


# --------------------------------------------------------------------------------------
# Bad input.

_G1 = theory.Gaussian(jnp.zeros(1), jnp.eye(1))
_G2 = theory.Gaussian(jnp.zeros(2), jnp.eye(2))
_M2 = theory.gaussian_grid(2)
_KEY = jax.random.key(0)


@pytest.mark.parametrize(
    "call, shown",
    [
        (lambda: theory.kl(_G1, _G2), r"the laws must share a dimension, got \{'p': 1, 'q': 2\}"),
        (lambda: theory.js(_M2, _G1), r"the laws must share a dimension, got \{'p': 2, 'q': 1\}"),
        (lambda: theory.kl_gaussians(_G1, _G2), r"the laws must share a dimension, got \{'p': 1, 'q': 2\}"),
        (lambda: theory.kl_gaussians(_M2, _G2), r"p must be a Gaussian, got MixtureOfGaussians"),
        (lambda: theory.kl_gaussians(_G2, _M2), r"q must be a Gaussian, got MixtureOfGaussians"),
        (lambda: theory.kl(np.array([0.5, 0.5]), _G1), r"p must be a distribution with log_prob or a probability vector, got ndarray"),
        (lambda: theory.js(_G1, [0.5, 0.5]), r"q must be a distribution with log_prob or a probability vector, got list"),
        (lambda: theory.kl(np.array([0.5, 0.5]), np.array([1.0])), r"p and q must be probability vectors of one shape \(k,\), got shapes \(2,\) and \(1,\)"),
        (lambda: theory.js(np.ones((2, 2)) / 2, np.ones((2, 2)) / 2), r"got shapes \(2, 2\) and \(2, 2\)"),
        (lambda: theory.kl(np.array([1.5, -0.5]), np.array([0.5, 0.5])), r"p must be nonnegative, got \[ 1\.5 -0\.5\]"),
        (lambda: theory.js(np.array([0.5, 0.5]), np.array([0.5, 0.6])), r"q must sum to 1, got sum 1\.1"),
        (lambda: theory.kl(np.array([np.nan, 1.0]), np.array([0.5, 0.5])), r"p must be finite, got \[nan  1\.\]"),
        (lambda: theory.js(_G1, _G1, method="quadrature"), r"method must be Quadrature\(\.\.\.\) or MonteCarlo\(\.\.\.\), got 'quadrature'"),
        (lambda: theory.js(theory.VerticalSegment(0.0), theory.VerticalSegment(1.0)), r"key must be given for a Monte Carlo estimate \(laws \['VerticalSegment', 'VerticalSegment'\] in d=2"),
        (lambda: theory.kl(theory.PointMass(0.0), theory.PointMass(1.0)), r"key must be given for a Monte Carlo estimate"),
        (lambda: theory.fisher_divergence(_G1, _G1.score, key=_KEY, method=theory.MonteCarlo(1)), r"n must be an integer >= 2, got 1"),
        (lambda: theory.fisher_divergence(_G2, lambda x: x[:, 0], key=_KEY, method=theory.MonteCarlo(10)), r"score_fn must map points of shape \(10, 2\) to the same shape, got \(10,\)"),
    ],
)
def test_divergences_reject_bad_input(call, shown):
    with pytest.raises(ValueError, match=shown):
        call()


@pytest.mark.parametrize(
    "call, shown",
    [
        (lambda: theory.kl(_G1, _G1, method=theory.MonteCarlo(n=100)), r"key must be a JAX PRNG key, got None"),
        (lambda: theory.fisher_divergence(_G1, _G1.score, method=theory.MonteCarlo(100)), r"key must be a JAX PRNG key, got None"),
        (lambda: theory.fisher_divergence(theory.PointMass(0.0), lambda x: x, key=_KEY), r"p must be a law with a closed-form score \(an AbstractDensity\), got PointMass"),
        (lambda: theory.fisher_divergence(_G1, None, key=_KEY), r"score_fn must be callable, got None"),
    ],
)
def test_divergences_reject_arguments_of_the_wrong_kind(call, shown):
    with pytest.raises(TypeError, match=shown):
        call()
