"""Tests for theory/transport.py: exact OT, 1-D quantiles, Bures, slices, sampling floor.

Exact solvers are compared with each other and with closed forms to float64 rounding.
Both solve for W_p^p exactly up to summation order, ~1e-15 of the largest cost entry;
comparisons are made on W_p^p with the slack `_lp_slack` = 1e-12 (1 + max cost), and
where W_p itself is compared its root carries that slack: (1e-12 (1 + max cost))^(1/p)
(a W2 of 0 can come out 7e-9 when the costs span 1e-16 to 1e2, an LP tie at rounding);
metric properties (symmetry, triangle inequality, W_p increasing in p) are checked on
random clouds; the Gaussian W2 closed form against samples on couplings whose empirical
OT cost is known exactly (the comonotone coupling in 1-D, the Brenier map in d-D) and
against independent samples read against the sampling floor; the parallel lines:
W1 = |theta| while JS = log 2.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import theory

EXACT = 1e-10  # float64 rounding of an exact value computed from O(100) terms


def _lp_slack(x, y, p):
    """Rounding slack of an exact W_p^p between clouds x and y (see the module docstring)."""
    diameter = np.max(np.linalg.norm(np.asarray(x)[:, None] - np.asarray(y)[None], axis=-1))
    return 1e-12 * (1.0 + diameter**p)


def _floats(lo, hi):
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


def clouds(d, max_size=12):
    return st.integers(1, max_size).flatmap(lambda n: arrays(np.float64, (n, d), elements=_floats(-5, 5)))


@st.composite
def weights_for(draw, n):
    """None (uniform) or a random probability vector that may contain zeros."""
    if draw(st.booleans()):
        return None
    raw = np.asarray(draw(st.lists(st.one_of(st.just(0.0), _floats(0.05, 1.0)), min_size=n, max_size=n)))
    if raw.sum() == 0:
        raw[0] = 1.0
    return raw / raw.sum()


@st.composite
def gaussians(draw, d):
    mean = draw(arrays(np.float64, (d,), elements=_floats(-2, 2)))
    a = draw(arrays(np.float64, (d, d), elements=_floats(-1, 1)))
    return theory.Gaussian(mean, a @ a.T + draw(_floats(0.1, 1.0)) * np.eye(d))


def _rotation(angle):
    return np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])


# --------------------------------------------------------------------------------------
# Exact W_p between point clouds.


@pytest.mark.parametrize("p", [1, 2, 3.5])
def test_rescaling_matches_unscaled_ot_on_moderate_clouds(p, key):
    # The clouds are centred and scaled by a power of two before solving (issue 12,
    # item 12). On moderate data the plain problem (POT on the unscaled costs) is well
    # posed: the two agree to the LP's rounding (module docstring).
    import ot
    import scipy.spatial.distance

    key_x, key_y = jax.random.split(key)
    x = 3.0 + 2.0 * np.asarray(jax.random.normal(key_x, (40, 2)))
    y = -1.0 + np.asarray(jax.random.normal(key_y, (30, 2)))
    cost = scipy.spatial.distance.cdist(x, y, metric="sqeuclidean") ** (p / 2)
    unscaled = ot.emd2(np.full(40, 1 / 40), np.full(30, 1 / 30), cost) ** (1 / p)
    assert abs(theory.wasserstein(x, y, p).value - unscaled) <= _lp_slack(x, y, p) ** (1 / p)


@pytest.mark.parametrize("p", [1, 2])
def test_wasserstein_of_huge_coordinates_is_homogeneous(p, key):
    # Near 1e200 the squared costs overflowed to inf and POT said "Problem infeasible".
    # W_p(c x, c y) = c W_p(x, y): for c a power of two the scaled problem is the same
    # floating-point problem, so the match is exact; for c = 1e200 it carries the
    # rounding of multiplying by c (a few eps relative).
    key_x, key_y = jax.random.split(key)
    x = np.asarray(jax.random.normal(key_x, (25, 2)))
    y = 0.5 + np.asarray(jax.random.normal(key_y, (20, 2)))
    reference = theory.wasserstein(x, y, p).value
    assert theory.wasserstein(2.0**600 * x, 2.0**600 * y, p).value == 2.0**600 * reference
    assert theory.wasserstein(1e200 * x, 1e200 * y, p).value == pytest.approx(1e200 * reference, rel=1e-12)
    assert theory.wasserstein_1d(1e200 * x[:, 0], 1e200 * y[:, 0], p).value == pytest.approx(
        1e200 * theory.wasserstein_1d(x[:, 0], y[:, 0], p).value, rel=1e-12
    )
    sliced = theory.sliced_wasserstein(1e200 * x, 1e200 * y, p, key=key)
    unit = theory.sliced_wasserstein(x, y, p, key=key)
    assert sliced.value == pytest.approx(1e200 * unit.value, rel=1e-12)
    assert sliced.error == pytest.approx(1e200 * unit.error, rel=1e-9)
    # Tiny clouds (1e-200) underflowed the other way; they are rescaled too.
    assert theory.wasserstein(1e-200 * x, 1e-200 * y, p).value == pytest.approx(1e-200 * reference, rel=1e-12)


def _lloyd(draws, centroids, iterations):
    """Lloyd's k-means iterations from the given centroids (empty cells stay put)."""
    centroids = centroids.copy()
    for _ in range(iterations):
        distances = (draws**2).sum(1)[:, None] - 2 * draws @ centroids.T + (centroids**2).sum(1)[None]
        cell = distances.argmin(1)
        counts = np.bincount(cell, minlength=len(centroids))
        sums = np.zeros_like(centroids)
        np.add.at(sums, cell, draws)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None]
    return centroids


@pytest.mark.slow
def test_k_means_centroids_score_below_the_sampling_floor():
    # sampling_floor is a reference scale, not a bound (issue 12, item 16; Stanczuk et
    # al. 2021): m = 1,024 k-means centroids of 16 m grid-9 draws are no sample of the
    # law (too concentrated), yet their W1 to fresh m-samples T_i is below the W1 of an
    # independent m-sample S_i to the same T_i. Lloyd cannot move centroids between
    # modes 6 sd apart, so it keeps its start's split across modes: it starts from
    # draws split in equal shares (the split k-means converges to with restarts).
    # Paired over 16 target samples; the mean gap (about 0.03, W1 0.149 vs 0.180) must
    # exceed 2.5 paired standard errors.
    m, repeats = 1024, 16
    law = theory.gaussian_grid(9)
    key_train, key_test = jax.random.split(jax.random.key(5))
    draws, component = law.sample_with_components(key_train, 16 * m)
    draws, component = np.asarray(draws, np.float64), np.asarray(component)
    shares = np.diff(np.round(np.linspace(0, m, 10)).astype(int))
    start = np.concatenate([draws[component == k][:share] for k, share in enumerate(shares)])
    centroids = _lloyd(draws, start, iterations=10)
    gaps = []
    for pair_key in jax.random.split(key_test, repeats):
        key_target, key_sample = jax.random.split(pair_key)
        target = law.sample(key_target, m)
        gaps.append(theory.wasserstein(law.sample(key_sample, m), target).value - theory.wasserstein(centroids, target).value)
    gap, gap_error = np.mean(gaps), np.std(gaps, ddof=1) / math.sqrt(repeats)
    assert gap > 2.5 * gap_error, (gap, gap_error)


@given(clouds(1), clouds(1), st.sampled_from([1, 2, 3.5]), st.data())
def test_quantile_w_p_on_the_line_equals_exact_ot(x, y, p, data):
    a, b = data.draw(weights_for(len(x))), data.draw(weights_for(len(y)))
    quantile = theory.wasserstein_1d(x[:, 0], y[:, 0], p, a, b)
    exact = theory.wasserstein(x, y, p, a, b)
    assert quantile.error == exact.error == 0.0
    assert abs(quantile.value**p - exact.value**p) <= _lp_slack(x, y, p)


@given(clouds(2), arrays(np.float64, (2,), elements=_floats(-3, 3)), st.sampled_from([1, 2, 3]))
def test_translating_a_cloud_moves_it_by_the_length_of_the_translation(x, shift, p):
    # W_p(mu, mu + c) = ||c||: the translation coupling costs ||c||, and
    # W_p >= W_1 >= ||E X - E Y|| = ||c|| (Jensen; 1-Lipschitz test function).
    y = x + shift
    assert abs(theory.wasserstein(x, y, p).value ** p - np.linalg.norm(shift) ** p) <= _lp_slack(x, y, p)
    assert theory.wasserstein(x, x, p).value ** p <= _lp_slack(x, x, p)


@given(clouds(2))
def test_nearly_coincident_clouds_are_resolved(x):
    # Regression: W1 costs from the expansion sqrt(|x|^2 + |y|^2 - 2 x.y) lose ~1e-8 |x|
    # to cancellation, so a translate by 1e-6 came out 0 or half its distance. Computed
    # from differences, the error is the LP slack plus the rounding of x + c (~1e-15 |x|).
    # (W2 is not tested here: its squared costs tie at rounding level, see the docstring.)
    y = x + np.array([1e-6, 1e-6])
    assert abs(theory.wasserstein(x, y, 1).value - math.sqrt(2) * 1e-6) <= _lp_slack(x, y, 1) + 1e-14


@given(clouds(2), clouds(2), clouds(2))
@settings(max_examples=8)
def test_wasserstein_is_a_metric_increasing_in_p(x, y, z):
    w = {p: theory.wasserstein(x, y, p).value for p in (1, 2, 3)}
    slack = {p: _lp_slack(np.vstack([x, z]), np.vstack([y, z]), p) ** (1 / p) for p in (1, 2, 3)}
    assert w[1] <= w[2] + slack[1] + slack[2] and w[2] <= w[3] + slack[2] + slack[3]  # Jensen
    assert abs(w[1] - theory.wasserstein(y, x, 1).value) <= 2 * slack[1]
    assert w[2] <= theory.wasserstein(x, z, 2).value + theory.wasserstein(z, y, 2).value + 3 * slack[2]


def test_order_may_be_a_numpy_scalar_but_not_a_bool():
    x, y = np.array([[0.0], [1.0]]), np.array([[0.5], [2.0]])
    assert theory.wasserstein(x, y, np.int64(2)).value == theory.wasserstein(x, y, 2).value
    assert theory.wasserstein_1d(x[:, 0], y[:, 0], np.float32(1.0)).value == theory.wasserstein_1d(x[:, 0], y[:, 0], 1).value
    with pytest.raises(TypeError, match=r"p must be a finite number >= 1, got True"):
        theory.wasserstein(x, y, True)


def test_wasserstein_of_point_masses_and_zero_weights():
    assert theory.wasserstein([[0.0, 0.0]], [[3.0, 4.0]], p=2).value == pytest.approx(5.0)
    x, y = np.array([[0.0], [1.0]]), np.array([[0.5], [100.0]])
    # A point with zero weight carries no mass, however far away it sits.
    assert theory.wasserstein(x, y, 1, b=[1.0, 0.0]).value == pytest.approx(0.5)
    assert theory.wasserstein_1d(x[:, 0], y[:, 0], 1, b=[1.0, 0.0]).value == pytest.approx(0.5)
    assert "exact OT (POT emd2, 2x2)" in theory.wasserstein(x, y).method


# --------------------------------------------------------------------------------------
# Gaussian W2 (Bures).


@given(_floats(-3, 3), _floats(0.1, 3), _floats(-3, 3), _floats(0.1, 3))
def test_gaussian_w2_in_one_dimension(m1, s1, m2, s2):
    p = theory.Gaussian(jnp.array([m1]), jnp.array([[s1**2]]))
    q = theory.Gaussian(jnp.array([m2]), jnp.array([[s2**2]]))
    estimate = theory.gaussian_w2(p, q)
    assert estimate.value == pytest.approx(math.hypot(m1 - m2, s1 - s2), rel=1e-9, abs=1e-7)
    assert estimate.error == 0.0 and "closed form" in estimate.method


@given(st.integers(1, 3).flatmap(lambda d: st.tuples(gaussians(d), gaussians(d), gaussians(d))))
def test_gaussian_w2_is_a_metric(laws):
    p, q, r = laws
    pq = theory.gaussian_w2(p, q).value
    # sqrt of a trace that cancels to ~1e-16: W2(p, p) is ~1e-8, not 1e-16.
    assert theory.gaussian_w2(p, p).value <= 1e-6
    assert pq == pytest.approx(theory.gaussian_w2(q, p).value, rel=1e-8, abs=1e-7)
    assert pq <= theory.gaussian_w2(p, r).value + theory.gaussian_w2(r, q).value + 1e-7
    assert pq >= np.linalg.norm(np.asarray(p.mean) - np.asarray(q.mean)) - 1e-9


@given(st.integers(1, 3).flatmap(lambda d: st.tuples(gaussians(d), gaussians(d))))
def test_gaussian_w2_is_the_cost_of_the_brenier_map(laws):
    # T(x) = m2 + A (x - m1), A = S1^{-1/2} (S1^{1/2} S2 S1^{1/2})^{1/2} S1^{-1/2}, pushes
    # p to q and is the gradient of a convex function; its cost
    # E||X - T X||^2 = ||m1 - m2||^2 + tr((I - A) S1 (I - A)^T) is W2^2: a different
    # expression from the trace formula tr(S1 + S2 - 2 (S1^{1/2} S2 S1^{1/2})^{1/2}).
    p, q = laws
    s1, s2 = np.asarray(p.cov), np.asarray(q.cov)
    root = np.real(scipy.linalg.sqrtm(s1))
    a = np.linalg.solve(root, np.linalg.solve(root, np.real(scipy.linalg.sqrtm(root @ s2 @ root))).T).T
    np.testing.assert_allclose(a @ s1 @ a.T, s2, rtol=1e-7, atol=1e-9)  # T pushes p to q
    eye = np.eye(p.dim)
    cost = np.sum((np.asarray(p.mean) - np.asarray(q.mean)) ** 2) + np.trace((eye - a) @ s1 @ (eye - a).T)
    assert theory.gaussian_w2(p, q).value ** 2 == pytest.approx(cost, rel=1e-7, abs=1e-9)


@given(gaussians(2), gaussians(2), arrays(np.float64, (2,), elements=_floats(-1, 1)))
def test_gaussian_w2_dominates_every_projection(p, q, direction):
    # x -> <theta, x> is 1-Lipschitz: W2(p, q) >= W2(theta#p, theta#q), a 1-D closed form.
    if np.linalg.norm(direction) < 1e-3:
        return
    theta = direction / np.linalg.norm(direction)
    mean_gap = theta @ (np.asarray(p.mean) - np.asarray(q.mean))
    std_gap = math.sqrt(theta @ np.asarray(p.cov) @ theta) - math.sqrt(theta @ np.asarray(q.cov) @ theta)
    assert theory.gaussian_w2(p, q).value >= math.hypot(mean_gap, std_gap) - 1e-9


def test_gaussian_w2_from_comonotone_samples_in_one_dimension(key):
    # x = m1 + s1 z, y = m2 + s2 z with one z: both increase with z, so the sorted
    # (optimal) pairing is i <-> i and W2^2(x_n, y_n) = mean((m1 - m2 + (s1 - s2) z)^2)
    # exactly; its expectation is the closed form. 5 standard errors.
    m1, s1, m2, s2, n = 0.5, 1.3, -0.2, 0.6, 20_000
    z = np.asarray(jax.random.normal(key, (n,)))
    per_pair = (m1 - m2 + (s1 - s2) * z) ** 2
    empirical = theory.wasserstein_1d(m1 + s1 * z, m2 + s2 * z, 2).value ** 2
    assert empirical == pytest.approx(per_pair.mean(), rel=1e-10)
    exact = theory.gaussian_w2(theory.Gaussian([m1], [[s1**2]]), theory.Gaussian([m2], [[s2**2]])).value ** 2
    assert abs(empirical - exact) <= 5 * per_pair.std(ddof=1) / math.sqrt(n)


@settings(max_examples=4)
@given(_floats(0.0, math.pi), st.integers(0, 1000))
def test_gaussian_w2_from_brenier_coupled_samples_in_two_dimensions(angle, seed):
    # Covariances R D R^T sharing eigenvectors: y = m2 + R D2^{1/2} D1^{-1/2} R^T (x - m1) is
    # the Brenier map, a gradient of a convex function, so its graph is cyclically monotone
    # and the pairing i <-> i is optimal for the empirical problem: exact OT must return
    # mean ||x_i - y_i||^2, whose expectation is the closed form (5 SE).
    rotation = _rotation(angle)
    d1, d2 = np.array([1.0, 0.3]), np.array([0.4, 2.0])
    m1, m2 = np.array([0.0, 1.0]), np.array([1.5, -0.5])
    z = np.asarray(jax.random.normal(jax.random.key(seed), (400, 2)))
    x = m1 + (z * np.sqrt(d1)) @ rotation.T
    y = m2 + (z * np.sqrt(d2)) @ rotation.T
    per_pair = np.sum((x - y) ** 2, axis=1)
    assert theory.wasserstein(x, y, 2).value ** 2 == pytest.approx(per_pair.mean(), rel=1e-9)
    p = theory.Gaussian(m1, rotation @ np.diag(d1) @ rotation.T)
    q = theory.Gaussian(m2, rotation @ np.diag(d2) @ rotation.T)
    exact = theory.gaussian_w2(p, q).value ** 2
    assert abs(per_pair.mean() - exact) <= 5 * per_pair.std(ddof=1) / math.sqrt(len(z))


def test_gaussian_w2_from_independent_samples_is_read_against_the_sampling_floor(key):
    # Independent m-samples: |W2(x_m, y_m) - W2(p, q)| <= W2(x_m, p) + W2(y_m, q) (triangle
    # inequality), and each term is at most the RMS W2 between two independent m-samples
    # of one law (W2^2 is jointly convex), which the sampling floor estimates (a mean over
    # repeats; the factor 2 covers mean vs RMS and its spread). The empirical value is
    # biased upward, so only this band, not 5 SE around the closed form, is honest.
    p = theory.Gaussian(jnp.array([0.0, 0.0]), jnp.array([[1.0, 0.5], [0.5, 1.0]]))
    q = theory.Gaussian(jnp.array([2.0, 0.0]), jnp.array([[0.5, 0.0], [0.0, 2.0]]))
    m = 300
    key_x, key_y, key_p, key_q = jax.random.split(key, 4)
    empirical = theory.wasserstein(p.sample(key_x, m), q.sample(key_y, m), 2).value
    floor_p = theory.sampling_floor(p, m, key=key_p, p=2)
    floor_q = theory.sampling_floor(q, m, key=key_q, p=2)
    band = 2 * (floor_p.value + floor_q.value)
    assert abs(empirical - theory.gaussian_w2(p, q).value) <= band


# --------------------------------------------------------------------------------------
# Sliced Wasserstein and the sampling floor.


@settings(max_examples=6)
@given(clouds(2), clouds(2), st.sampled_from([1, 2]), st.integers(0, 1000))
def test_sliced_wasserstein_is_below_wasserstein(x, y, p, seed):
    # Projections are 1-Lipschitz, so every slice has W_p(theta#x, theta#y) <= W_p(x, y):
    # the mean of p-th powers is below W_p^p exactly, not only in expectation.
    sliced = theory.sliced_wasserstein(x, y, p, key=jax.random.key(seed), n_projections=16)
    assert 0.0 <= sliced.value <= theory.wasserstein(x, y, p).value + EXACT
    assert "16 random projections" in sliced.method


@given(clouds(1), clouds(1))
@settings(max_examples=6)
def test_sliced_wasserstein_on_the_line_is_wasserstein(x, y):
    # In 1-D every direction is +-1: each slice is W_p itself, the error is 0.
    sliced = theory.sliced_wasserstein(x, y, 1, key=jax.random.key(0), n_projections=8)
    assert sliced.value == pytest.approx(theory.wasserstein_1d(x[:, 0], y[:, 0]).value, rel=EXACT, abs=EXACT)
    assert sliced.error <= EXACT


def test_sliced_wasserstein_of_a_translation(key):
    # x vs x + c in R^2: each slice is |<theta, c>|, so SW_1 = ||c|| E|cos U| = 2 ||c|| / pi
    # and SW_2^2 = ||c||^2 E cos^2 U = ||c||^2 / 2, U uniform angle. 5 SE.
    x = np.asarray(jax.random.normal(key, (50, 2)))
    c = np.array([3.0, 4.0])
    sw1 = theory.sliced_wasserstein(x, x + c, 1, key=key, n_projections=2000)
    assert abs(sw1.value - 2 * 5.0 / math.pi) <= 5 * sw1.error
    sw2 = theory.sliced_wasserstein(x, x + c, 2, key=key, n_projections=2000)
    assert abs(sw2.value - 5.0 / math.sqrt(2)) <= 5 * sw2.error


def test_sampling_floor_decays_like_one_over_root_m_in_one_dimension(key):
    # In 1-D, E W1 between two independent m-samples = integral E|F_m - F'_m| ~ c / sqrt(m)
    # (empirical-process CLT). A weighted least-squares slope of log floor on log m must
    # be -1/2 within 5 of its standard errors (propagated from the floors' own errors).
    law = theory.Gaussian(jnp.zeros(1), jnp.eye(1))
    sizes = np.array([16, 64, 256])
    floors = [theory.sampling_floor(law, int(m), key=k, repeats=20) for m, k in zip(sizes, jax.random.split(key, 3))]
    values = np.array([f.value for f in floors])
    assert np.all(np.diff(values) < 0)
    log_m, log_floor = np.log(sizes), np.log(values)
    sigma = np.array([f.error / f.value for f in floors])  # delta method: SE of log floor
    w = 1 / sigma**2
    centre = np.sum(w * log_m) / np.sum(w)
    slope = np.sum(w * (log_m - centre) * log_floor) / np.sum(w * (log_m - centre) ** 2)
    slope_error = 1 / math.sqrt(np.sum(w * (log_m - centre) ** 2))
    assert abs(slope + 0.5) <= 5 * slope_error
    assert "W1 sampling floor (m=16, 20 repeats" in floors[0].method


# --------------------------------------------------------------------------------------
# Disjoint supports: W1 sees the distance that JS and KL cannot.


@given(st.one_of(st.just(0.0), _floats(1e-6, 3.0), _floats(-3.0, -1e-6)))
@settings(max_examples=8)
def test_parallel_lines_w1_is_theta_while_js_is_log2(theta):
    key = jax.random.key(7)
    p, q = theory.VerticalSegment(0.0), theory.VerticalSegment(theta)
    # Coupled draws (theta, u_i) vs (0, u_i): the pairing i <-> i costs |theta|, and no
    # coupling can cost less (every pair is |theta| apart horizontally): exact.
    coupled = theory.wasserstein(p.sample(key, 200), q.sample(key, 200))
    assert coupled.value == pytest.approx(abs(theta), rel=1e-12, abs=1e-12)
    # Independent draws: still at least |theta|, plus the vertical mismatch.
    key_p, key_q = jax.random.split(key)
    assert theory.wasserstein(p.sample(key_p, 200), q.sample(key_q, 200)).value >= abs(theta) - 1e-12
    js = theory.js(p, q, key=key)
    assert js.value == pytest.approx(0.0 if theta == 0.0 else math.log(2), abs=1e-15)


@given(_floats(-3, 3), _floats(-3, 3))
def test_point_masses_w1_is_their_distance(a, b):
    x, y = theory.PointMass(a).sample(jax.random.key(0), 3), theory.PointMass(b).sample(jax.random.key(1), 5)
    assert theory.wasserstein(x, y).value == pytest.approx(abs(a - b), rel=1e-12, abs=1e-12)
    assert theory.wasserstein_1d(x[:, 0], y[:, 0], 2).value == pytest.approx(abs(a - b), rel=1e-12, abs=1e-12)


# --------------------------------------------------------------------------------------
# Bad input.

_X = np.zeros((3, 2))
_KEY = jax.random.key(0)
_G1 = theory.Gaussian(jnp.zeros(1), jnp.eye(1))
_G2 = theory.Gaussian(jnp.zeros(2), jnp.eye(2))


@pytest.mark.parametrize(
    "call, shown",
    [
        (lambda: theory.wasserstein(_X, np.zeros((3, 1))), r"x and y must live in the same R\^d, got d=2 and d=1"),
        (lambda: theory.wasserstein(np.zeros((0, 2)), _X), r"x must be a point cloud of shape \(n, d\) with n >= 1 and d >= 1, got shape \(0, 2\)"),
        (lambda: theory.wasserstein(np.zeros((3, 0)), np.zeros((3, 0))), r"x must be a point cloud of shape \(n, d\) with n >= 1 and d >= 1, got shape \(3, 0\)"),
        (lambda: theory.wasserstein(_X, np.zeros((0, 2))), r"y must be a point cloud .* got shape \(0, 2\)"),
        (lambda: theory.sliced_wasserstein(np.zeros((3, 0)), np.zeros((3, 0)), key=_KEY), r"x must be a point cloud .* got shape \(3, 0\)"),
        (lambda: theory.wasserstein(_X, _X + 1.0, p=2100), r"p must keep the costs \|\|x - y\|\|\^p finite in float64, got p=2100"),
        (lambda: theory.wasserstein(_X, np.zeros((2, 2, 2))), r"y must be a point cloud of shape \(n, d\) with n >= 1 and d >= 1, got shape \(2, 2, 2\)"),
        (lambda: theory.wasserstein(np.full((2, 2), np.nan), _X), r"x must be finite, got \[\[nan nan\]"),
        (lambda: theory.wasserstein(_X, np.array([[np.inf, 0.0]])), r"y must be finite, got \[\[inf  0\.\]\]"),
        (lambda: theory.wasserstein(_X, _X, p=0.5), r"p must be a finite number >= 1, got 0\.5"),
        (lambda: theory.wasserstein(_X, _X, p=np.inf), r"p must be a finite number >= 1, got inf"),
        (lambda: theory.wasserstein(_X, _X, a=[0.5, 0.5]), r"a must have shape \(3,\) to match its points, got shape \(2,\)"),
        (lambda: theory.wasserstein(_X, _X, b=[1.5, -0.25, -0.25]), r"b must be nonnegative, got \[ 1\.5 +-0\.25 -0\.25\]"),
        (lambda: theory.wasserstein(_X, _X, a=[0.2, 0.2, 0.2]), r"a must sum to 1, got sum 0\.6"),
        (lambda: theory.wasserstein_1d(_X, np.zeros(3)), r"x must be a 1-D sample of shape \(n,\), got shape \(3, 2\)"),
        (lambda: theory.wasserstein_1d(np.zeros(3), np.zeros(0)), r"y must be a 1-D sample of shape \(n,\), got shape \(0,\)"),
        (lambda: theory.wasserstein_1d(np.array([np.nan]), np.zeros(3)), r"x must be finite, got \[nan\]"),
        (lambda: theory.wasserstein_1d(np.zeros(3), np.zeros(3), p=0), r"p must be a finite number >= 1, got 0"),
        (lambda: theory.wasserstein_1d(np.zeros(2), np.zeros(3), a=[np.nan, 1.0]), r"a must be finite, got \[nan  1\.\]"),
        (lambda: theory.gaussian_w2(_G1, theory.gaussian_grid(2)), r"p and q must be Gaussian, got Gaussian and MixtureOfGaussians"),
        (lambda: theory.gaussian_w2(_G1, _G2), r"p and q must share a dimension, got 1 and 2"),
        (lambda: theory.sliced_wasserstein(_X, _X, key=_KEY, n_projections=1), r"n_projections must be an integer >= 2, got 1"),
        (lambda: theory.sliced_wasserstein(_X, np.zeros((3, 1)), key=_KEY), r"x and y must live in the same R\^d"),
        (lambda: theory.sliced_wasserstein(_X, _X, p=-1, key=_KEY), r"p must be a finite number >= 1, got -1"),
        (lambda: theory.sliced_wasserstein(_X, np.full((3, 2), np.nan), key=_KEY), r"y must be finite, got \[\[nan nan\]"),
        (lambda: theory.sliced_wasserstein(_X, _X, key=_KEY, a=[1.0]), r"a must have shape \(3,\) to match its points"),
        (lambda: theory.sampling_floor(_G1, 0, key=_KEY), r"m must be an integer >= 1, got 0"),
        (lambda: theory.sampling_floor(_G1, 5, key=_KEY, repeats=1), r"repeats must be an integer >= 2, got 1"),
        (lambda: theory.sampling_floor(_G1, 5, key=_KEY, p=0.5), r"p must be a finite number >= 1, got 0\.5"),
    ],
)
def test_transport_functions_reject_bad_input(call, shown):
    with pytest.raises(ValueError, match=shown):
        call()


@pytest.mark.parametrize(
    "call, shown",
    [
        (lambda: theory.sliced_wasserstein(_X, _X, key=None), r"key must be a JAX PRNG key, got None"),
        (lambda: theory.sampling_floor(_G1, 5, key=None), r"key must be a JAX PRNG key, got None"),
    ],
)
def test_transport_functions_reject_a_missing_key_as_a_type_error(call, shown):
    with pytest.raises(TypeError, match=shown):
        call()
