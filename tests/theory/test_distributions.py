"""Tests for theory/distributions.py, theory/targets.py and theory/singular.py.

One protocol test runs every density (Gaussians, mixtures, the named targets and their
Gaussian convolutions) through the same checks: shapes, normalisation, score = grad
log p (also 50 standard deviations out), sampler agrees with the density, support box,
jit/vmap, and `noised` = the law of scale * X + std * Z. Expectations under a density
are computed here by a dense trapezoid rule, independent of theory's quadrature: for a
Gaussian integrand on a grid of step h <= sigma / 10 its error is O(exp(-2 pi^2
sigma^2 / h^2)) < 1e-100, and the box holds all but 1e-20 of the mass, so only float64
rounding (< 1e-12 here) remains. Then hypothesis properties: mixture scores against
autodiff and a closed form, the convolution semigroup, log-densities against SciPy.
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import theory
from theory.distributions import to_float64


def _floats(lo, hi):
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


@st.composite
def gaussians(draw, d):
    """N(m, A A^T + c I) with m in [-3, 3]^d, A in [-1, 1]^{d x d}, c in [0.1, 1]."""
    mean = draw(arrays(np.float64, (d,), elements=_floats(-3, 3)))
    a = draw(arrays(np.float64, (d, d), elements=_floats(-1, 1)))
    ridge = draw(_floats(0.1, 1.0))
    return theory.Gaussian(mean, a @ a.T + ridge * np.eye(d))


@st.composite
def mixtures(draw, d, max_components=3):
    """Mixtures of 1 to `max_components` such Gaussians with weights bounded below by
    1/(10 K), normalised."""
    k = draw(st.integers(1, max_components))
    raw = np.asarray(draw(st.lists(_floats(0.1, 1.0), min_size=k, max_size=k)))
    components = [draw(gaussians(d)) for _ in range(k)]
    return theory.MixtureOfGaussians(
        raw / raw.sum(), np.stack([c.mean for c in components]), np.stack([c.cov for c in components])
    )


# Module-level jitted evaluations, shared by every law of one structure: eager JAX would
# dispatch (and compile) each primitive of log_prob / grad / vmap separately.
_log_prob = eqx.filter_jit(lambda law, x: law.log_prob(x))
_score = eqx.filter_jit(lambda law, x: law.score(x))
_autodiff_score = eqx.filter_jit(lambda law, x: jax.vmap(jax.grad(law.log_prob))(x))
_sample = eqx.filter_jit(lambda law, key, n: law.sample(key, n))
_responsibilities = eqx.filter_jit(lambda law, x: law.responsibilities(x))


_POINTS_PER_AXIS = {1: 4001, 2: 801}  # fixed, so one compilation serves each law structure


def _dense_expectation(law, f):
    """E_law[f(X)] by the trapezoid rule on the law's 10-sd box, step <= sigma_min / 10."""
    lo, hi = law.support_box(10.0)
    axes = [np.linspace(a, b, _POINTS_PER_AXIS[law.dim]) for a, b in zip(lo, hi)]
    step = max(axis[1] - axis[0] for axis in axes)
    sigma_min = min(np.sqrt(np.linalg.eigvalsh(np.asarray(c))).min() for c in _covs(law))
    assert step <= sigma_min / 10, "grid too coarse for the error bound in the module docstring"
    weights = []
    for axis in axes:
        w = np.full(len(axis), axis[1] - axis[0])
        w[[0, -1]] *= 0.5
        weights.append(w)
    points = np.stack([m.ravel() for m in np.meshgrid(*axes, indexing="ij")], axis=1)
    node_weights = np.prod(np.stack(np.meshgrid(*weights, indexing="ij")), axis=0).ravel()
    density = np.exp(np.asarray(_log_prob(law, jnp.asarray(points))))
    return np.tensordot(node_weights * density, np.asarray(f(points)), axes=(0, 0))


def _covs(law):
    return [law.cov] if isinstance(law, theory.Gaussian) else list(law.covs)


def _far_points(law, n=16):
    """n points at least 50 standard deviations (of the widest component) from every
    mode: 5 half-widths of the 10-sd box from its centre, in n directions."""
    lo, hi = law.support_box(10.0)
    centre, half_width = 0.5 * (lo + hi), 0.5 * (hi - lo)
    if law.dim == 1:
        directions = np.resize([1.0, -1.0], (n, 1))
    else:
        angles = 2 * np.pi * np.arange(n) / n
        directions = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return jnp.asarray(centre + 5.0 * half_width * directions)


NCSN = theory.ncsn_two_modes()
# One law per implementation of AbstractDensity and dimension: the protocol.
IMPLEMENTATIONS = {
    "gaussian-1d": theory.Gaussian(jnp.array([0.7]), jnp.array([[0.5]])),
    "gaussian-2d-correlated": theory.Gaussian(jnp.array([1.0, -2.0]), jnp.array([[1.0, 0.8], [0.8, 2.0]])),
    "mixture-1d": theory.MixtureOfGaussians(
        jnp.array([0.2, 0.5, 0.3]), jnp.array([[-2.0], [0.0], [3.0]]), jnp.array([[[0.3]], [[1.0]], [[0.5]]])
    ),
    "mixture-2d-anisotropic": theory.MixtureOfGaussians(
        jnp.array([0.6, 0.4]),
        jnp.array([[0.0, 0.0], [2.0, 1.0]]),
        jnp.array([[[1.0, -0.5], [-0.5, 0.5]], [[0.2, 0.0], [0.0, 0.8]]]),
    ),
}
# The named targets (all MixtureOfGaussians): the checks that depend on the parameters.
TARGETS = {
    "grid-2": theory.gaussian_grid(2),
    "grid-4": theory.gaussian_grid(4),
    "grid-9": theory.gaussian_grid(9),
    "ncsn": NCSN,
    "ncsn-noised": NCSN.noised(0.9, 0.5),
    "ncsn-code-schedule": theory.ncsn_component_std_schedule(NCSN, 0.5),
}
ALL_DENSITIES = {**IMPLEMENTATIONS, **TARGETS}


def _params(laws):
    return pytest.mark.parametrize("law", list(laws.values()), ids=list(laws))


# --------------------------------------------------------------------------------------
# Protocol: every AbstractDensity through the same checks.


@_params(IMPLEMENTATIONS)
def test_protocol_shapes_and_dtypes(law, key):
    d = law.dim
    assert isinstance(law, theory.AbstractDensity)
    x = _sample(law, key, 16)
    assert x.shape == (16, d) and x.dtype == jnp.float64
    assert _log_prob(law, x).shape == (16,)
    np.testing.assert_allclose(_log_prob(law, x.reshape(2, 8, d)), _log_prob(law, x).reshape(2, 8), rtol=1e-14)
    np.testing.assert_allclose(_score(law, x.reshape(2, 8, d)), _score(law, x).reshape(2, 8, d), rtol=1e-14)
    assert _log_prob(law, x[0]).shape == () and _score(law, x[0]).shape == (d,)
    lo, hi = law.support_box()
    assert lo.shape == hi.shape == (d,) and np.all(lo < hi)


@_params(ALL_DENSITIES)
def test_protocol_density_is_normalised_and_sampler_agrees_with_it(law, key):
    # Total mass 1 to 1e-9 (dense trapezoid error < 1e-12, module docstring). First and
    # second moments per coordinate, exact by dense integration of the density, against
    # sample means with their standard errors: |Z| > 5 has probability 5.7e-7 per
    # comparison (n = 20000 is in the CLT regime for these laws).
    n = 20_000
    samples = np.asarray(_sample(law, key, n))
    lo, hi = law.support_box(10.0)
    assert np.all((samples >= lo) & (samples <= hi))  # mass outside < 1e-20
    exact = _dense_expectation(law, lambda x: np.concatenate([np.ones((len(x), 1)), x, x**2], axis=1))
    assert exact[0] == pytest.approx(1.0, abs=1e-9)
    statistics = np.concatenate([samples, samples**2], axis=1)
    standard_error = statistics.std(axis=0, ddof=1) / math.sqrt(n)
    assert np.all(np.abs(statistics.mean(axis=0) - exact[1:]) <= 5 * standard_error)


@_params(ALL_DENSITIES)
def test_protocol_score_is_the_gradient_of_log_prob_near_and_far(law, key):
    # Both sides are float64 evaluations of one analytic function by different routes
    # (closed-form responsibilities vs autodiff through logsumexp); with covariance
    # condition numbers <= 10 they agree to ~1e-12 relative, 1e-9 leaves margin.
    points = jnp.concatenate([_sample(law, key, 16), _far_points(law)])
    # Far out the density itself underflows: a score computed as grad p / p would be 0/0.
    assert np.all(np.exp(np.asarray(_log_prob(law, points)[16:])) == 0.0)
    score = _score(law, points)
    assert np.all(np.isfinite(score))
    np.testing.assert_allclose(score, _autodiff_score(law, points), rtol=1e-9, atol=1e-9)


@_params({**IMPLEMENTATIONS, "ncsn": NCSN})
def test_protocol_noised_is_the_law_of_scale_x_plus_std_z(law, key):
    # E[f(scale X + std Z)] by Monte Carlo over X ~ law (its own sampler) and Z ~ N(0, I),
    # against the dense integral of f under law.noised(scale, std). Test functions: the
    # coordinates, their squares and a bounded oscillation. 5 standard errors as above.
    scale, std, n = 0.8, 0.6, 20_000
    key_x, key_z = jax.random.split(key)
    y = np.asarray(scale * _sample(law, key_x, n) + std * jax.random.normal(key_z, (n, law.dim)))
    noised = law.noised(scale, std)
    assert type(noised) is type(law)

    def features(x):
        return np.concatenate([x, x**2, np.cos(x.sum(axis=1, keepdims=True))], axis=1)

    exact = _dense_expectation(noised, features)
    standard_error = features(y).std(axis=0, ddof=1) / math.sqrt(n)
    assert np.all(np.abs(features(y).mean(axis=0) - exact) <= 5 * standard_error)


@_params(IMPLEMENTATIONS)
def test_protocol_jit_and_vmap(law, key):
    # The law passes through jit as an argument (a pytree), the one-sample function
    # vmaps to the batched one, and `noised` traces with a traced std.
    x = _sample(law, key, 16)
    one_point = jax.jit(jax.vmap(law.log_prob))(x)
    np.testing.assert_allclose(one_point, _log_prob(law, x), rtol=1e-12)
    noised = eqx.filter_jit(lambda law, s: law.noised(1.0, s).log_prob(x))(law, jnp.asarray(0.3))
    np.testing.assert_allclose(noised, _log_prob(law.noised(1.0, 0.3), x), rtol=1e-12)


# --------------------------------------------------------------------------------------
# Properties over random Gaussians and mixtures.


@given(st.integers(1, 3).flatmap(gaussians), st.data())
def test_gaussian_log_prob_and_score_match_scipy(law, data):
    x = data.draw(arrays(np.float64, (4, law.dim), elements=_floats(-10, 10)))
    reference = scipy.stats.multivariate_normal(np.asarray(law.mean), np.asarray(law.cov))
    np.testing.assert_allclose(_log_prob(law, x), reference.logpdf(x).reshape(4), rtol=1e-10, atol=1e-10)
    # The score of N(m, S) is -S^{-1}(x - m): a linear solve, checked against NumPy's.
    expected = -np.linalg.solve(np.asarray(law.cov), (x - np.asarray(law.mean)).T).T
    np.testing.assert_allclose(_score(law, x), expected, rtol=1e-9, atol=1e-9)


@given(st.sampled_from([1, 2]).flatmap(mixtures), st.data())
def test_mixture_score_is_autodiff_of_log_prob_even_50_sd_out(law, data):
    x = data.draw(arrays(np.float64, (3, law.dim), elements=_floats(-5, 5)))
    direction = data.draw(arrays(np.float64, (law.dim,), elements=_floats(-1, 1)).filter(lambda v: np.linalg.norm(v) > 0.1))
    widest = max(np.sqrt(np.linalg.eigvalsh(np.asarray(c)).max()) for c in law.covs)
    far = np.asarray(law.means).mean(axis=0) + 50 * widest * direction / np.linalg.norm(direction)
    points = jnp.asarray(np.vstack([x, far]))
    score = _score(law, points)
    assert np.all(np.isfinite(score))
    # Same analytic function by two float64 routes (see the protocol test). Covariances
    # here have condition number <= 41 and the far point is <= ~400 of the narrowest
    # component's sd out: rounding stays ~1e-12 relative, so 1e-8 has a wide margin.
    np.testing.assert_allclose(score, _autodiff_score(law, points), rtol=1e-8, atol=1e-8)


@given(_floats(0.05, 0.95), _floats(0.2, 2.0))
def test_two_mode_mixture_score_matches_its_closed_form(weight, std):
    # p = w N(1, s^2) + (1 - w) N(-1, s^2) has d/dx log p = (tanh(x/s^2 + log(w/(1-w))/2) - x) / s^2,
    # finite at any x, including 50 sd and 1000 sd out, where p(x) underflows to 0.
    law = theory.MixtureOfGaussians(jnp.array([weight, 1 - weight]), jnp.array([[1.0], [-1.0]]), jnp.full((2, 1, 1), std**2))
    x = np.array([0.0, 0.3, -1.7, 50 * std + 1, -50 * std - 1, 1e3])
    expected = (np.tanh(x / std**2 + 0.5 * np.log(weight / (1 - weight))) - x) / std**2
    np.testing.assert_allclose(_score(law, jnp.asarray(x[:, None]))[:, 0], expected, rtol=1e-10, atol=1e-10)


@given(
    st.sampled_from([1, 2]).flatmap(mixtures),
    _floats(-2, 2).filter(lambda a: abs(a) > 0.05),
    _floats(0, 2),
    _floats(-2, 2).filter(lambda a: abs(a) > 0.05),
    _floats(0, 2),
    st.data(),
)
def test_noised_is_a_semigroup(law, a1, s1, a2, s2, data):
    # a2 (a1 X + s1 Z1) + s2 Z2 = a1 a2 X + sqrt(a2^2 s1^2 + s2^2) Z in law.
    x = jnp.asarray(data.draw(arrays(np.float64, (4, law.dim), elements=_floats(-5, 5))))
    twice = law.noised(a1, s1).noised(a2, s2)
    once = law.noised(a1 * a2, math.sqrt(a2**2 * s1**2 + s2**2))
    np.testing.assert_allclose(_log_prob(twice, x), _log_prob(once, x), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(_log_prob(law.noised(1.0, 0.0), x), _log_prob(law, x), rtol=1e-12, atol=1e-12)


@given(st.sampled_from([1, 2]).flatmap(mixtures), st.sampled_from([1, 2]).flatmap(mixtures), _floats(0.01, 0.99), st.data())
def test_mixture_of_mixtures_has_the_weighted_density(p, q, w, data):
    if p.dim != q.dim:
        with pytest.raises(ValueError, match=r"components must share one dimension, got dimensions \[1, 2\]"):
            theory.mixture([p, q], [w, 1 - w])
        return
    x = jnp.asarray(data.draw(arrays(np.float64, (4, p.dim), elements=_floats(-5, 5))))
    m = theory.mixture([p, q], [w, 1 - w])
    assert m.n_components == p.n_components + q.n_components
    expected = np.logaddexp(np.log(w) + _log_prob(p, x), np.log(1 - w) + _log_prob(q, x))
    np.testing.assert_allclose(_log_prob(m, x), expected, rtol=1e-12, atol=1e-12)


@given(st.integers(1, 3).flatmap(gaussians), st.data())
def test_one_component_mixture_is_the_gaussian(g, data):
    x = jnp.asarray(data.draw(arrays(np.float64, (4, g.dim), elements=_floats(-5, 5))))
    m = theory.mixture([g], [1.0])
    np.testing.assert_allclose(_log_prob(m, x), _log_prob(g, x), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(_score(m, x), _score(g, x), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(_log_prob(g.noised(0.5, 0.2), x), _log_prob(m.noised(0.5, 0.2), x), rtol=1e-12)


@given(st.sampled_from([1, 2]).flatmap(mixtures), st.data())
def test_responsibilities_are_the_bayes_posterior_over_components(law, data):
    x = jnp.asarray(data.draw(arrays(np.float64, (4, law.dim), elements=_floats(-5, 5))))
    r = np.asarray(_responsibilities(law, x))
    assert r.shape == (4, law.n_components)
    np.testing.assert_allclose(r.sum(axis=1), 1.0, rtol=1e-12)
    joint = np.stack([np.log(w) + _log_prob(c, x) for w, c in zip(law.weights, law.components())], axis=1)
    np.testing.assert_allclose(r, np.exp(joint - np.asarray(_log_prob(law, x))[:, None]), rtol=1e-9, atol=1e-12)


def test_sample_with_components_draws_components_by_weight(key):
    # Component counts are Binomial(n, w_k): 5 sd bands. Draws given their component
    # have that component's mean (5 standard errors).
    law = IMPLEMENTATIONS["mixture-1d"]
    n = 30_000
    x, component = law.sample_with_components(key, n)
    counts = np.bincount(np.asarray(component), minlength=3)
    w = np.asarray(law.weights)
    assert np.all(np.abs(counts - n * w) <= 5 * np.sqrt(n * w * (1 - w)))
    for k in range(3):
        chosen = np.asarray(x)[np.asarray(component) == k, 0]
        assert abs(chosen.mean() - float(law.means[k, 0])) <= 5 * chosen.std() / math.sqrt(len(chosen))


def test_isotropic_constructor_matches_explicit_covariances():
    means = jnp.array([[0.0, 1.0], [2.0, -1.0]])
    iso = theory.MixtureOfGaussians.isotropic(jnp.array([0.3, 0.7]), means, jnp.array([0.5, 2.0]))
    explicit = theory.MixtureOfGaussians(jnp.array([0.3, 0.7]), means, jnp.stack([0.5 * jnp.eye(2), 2.0 * jnp.eye(2)]))
    x = jnp.array([[0.1, 0.2], [3.0, -4.0]])
    np.testing.assert_allclose(iso.log_prob(x), explicit.log_prob(x), rtol=1e-14)
    shared = theory.MixtureOfGaussians.isotropic(jnp.array([0.3, 0.7]), means, 0.5)
    np.testing.assert_allclose(shared.covs, 0.5 * np.stack([np.eye(2)] * 2))


def test_vmap_over_a_family_of_gaussians_built_inside_the_trace():
    # Inside vmap the parameters are tracers: validation checks shapes only, and the
    # module is an ordinary pytree.
    means = jnp.array([[0.0], [1.0], [2.0]])
    x = jnp.array([0.5])
    batched = jax.vmap(lambda m: theory.Gaussian(m, jnp.eye(1)).log_prob(x))(means)
    looped = [theory.Gaussian(m, jnp.eye(1)).log_prob(x) for m in means]
    np.testing.assert_allclose(batched, looped, rtol=1e-14)


def test_dtypes_follow_the_parameters_and_to_float64_casts_every_float_leaf():
    single = theory.Gaussian(jnp.zeros(2, jnp.float32), jnp.eye(2, dtype=jnp.float32))
    assert single.mean.dtype == single.chol.dtype == jnp.float32
    assert jnp.issubdtype(theory.Gaussian([0, 1], [[1, 0], [0, 1]]).mean.dtype, jnp.floating)  # ints promote
    cast = to_float64(single)
    assert all(leaf.dtype == jnp.float64 for leaf in jax.tree.leaves(cast))
    np.testing.assert_array_equal(cast.cov, np.eye(2))


def _laws_built_without_x64():
    """A 2-D Gaussian pair and the grid-4 / grid-9 targets, built with x64 off (float32)."""
    with jax.enable_x64(False):
        p = theory.Gaussian(jnp.array([0.3, -0.2]), jnp.array([[0.7, 0.2], [0.2, 0.4]]))
        q = theory.Gaussian(jnp.array([-0.1, 0.5]), jnp.array([[1.3, -0.3], [-0.3, 0.9]]))
        grid4, grid9 = theory.gaussian_grid(4), theory.gaussian_grid(9)
    assert p.chol.dtype == grid9.chols.dtype == jnp.float32
    return p, q, grid4, grid9


def test_to_float64_refactors_cholesky_and_renormalises_weights_of_float32_laws():
    # Issue 12, item 14: a float32 factor cast to float64 keeps ~1e-7 relative rounding;
    # to_float64 must give the factor of the (exactly representable) float64 covariance,
    # and float32 weights 1/9 (sum 1 + 7e-9) must sum to 1 in float64.
    p, _, _, grid9 = _laws_built_without_x64()
    p64, grid64 = to_float64((p, grid9))
    exact = np.linalg.cholesky(np.asarray(p.cov, np.float64))
    np.testing.assert_allclose(p64.chol, exact, rtol=4 * np.finfo(np.float64).eps, atol=0)
    assert abs(float(jnp.sum(grid64.weights)) - 1.0) <= 4 * np.finfo(np.float64).eps
    # A float32 law evaluated at float64 points computes in float64 (refactored): it
    # agrees with its float64 conversion to rounding, not to float32's 1e-7.
    x = jnp.array([[0.1, 0.2], [-1.0, 2.0], [3.0, -0.5]], jnp.float64)
    np.testing.assert_allclose(p.log_prob(x), p64.log_prob(x), rtol=1e-14)
    np.testing.assert_allclose(grid9.log_prob(x), grid64.log_prob(x), rtol=1e-14)
    np.testing.assert_allclose(grid9.score(x), grid64.score(x), rtol=1e-13)


def test_closed_form_and_quadrature_agree_on_laws_built_without_x64():
    # Issue 12, item 14: they differed by 6.7e-9 with reported errors 0 and 1.6e-15.
    # Both now see the same float64 law, so they agree to the quadrature error (plus
    # the closed form's own rounding, a few eps of the value).
    p, q, _, _ = _laws_built_without_x64()
    closed = theory.kl_gaussians(p, q)
    quadrature = theory.kl(p, q, method=theory.Quadrature())
    assert abs(closed.value - quadrature.value) <= quadrature.error + 8 * np.finfo(np.float64).eps * closed.value


def test_gan_value_of_a_float32_optimal_discriminator_is_2js_minus_log4():
    # Issue 12, item 14: gan_value(D.logit, ...) with D holding float32 laws was off by
    # 5e-9 against a reported 4e-15 (the logit read the float32 factors and unnormalised
    # weights). V(D*) = 2 JS - log 4 (Goodfellow et al. 2014, Thm. 1): both sides are
    # quadratures on the same grid, so they agree to the sum of their errors.
    for p, q in (_laws_built_without_x64()[:2], _laws_built_without_x64()[2:]):
        value = theory.gan_value(theory.optimal_discriminator(p, q).logit, p, q, logit=True)
        js = theory.js(p, q)
        assert abs(value.value - (2 * js.value - math.log(4))) <= value.error + 2 * js.error


@pytest.mark.parametrize("law", [theory.Gaussian(jnp.zeros(2), jnp.eye(2)), theory.gaussian_grid(9)], ids=["gaussian", "grid9"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_log_prob_and_score_reject_non_finite_concrete_points(law, bad):
    # Issue 12, item 12: log_prob of a NaN point returned NaN. Eager calls on concrete
    # arrays now raise; under jit only shapes are checked (documented), and the
    # arithmetic propagates the NaN.
    x = jnp.array([[0.0, 0.0], [bad, 1.0]])
    for method in (law.log_prob, law.score):
        with pytest.raises(ValueError, match=r"x must be finite, got"):
            method(x)
    traced = eqx.filter_jit(lambda law, x: law.log_prob(x))(law, x)
    assert not bool(jnp.isfinite(traced[1])) and bool(jnp.isfinite(traced[0]))


def test_singular_laws_reject_non_finite_concrete_points():
    with pytest.raises(ValueError, match=r"x must be finite, got"):
        theory.PointMass(0.0).log_prob(jnp.array([[np.nan]]))
    with pytest.raises(ValueError, match=r"x must be finite, got"):
        theory.VerticalSegment(0.0).log_prob(jnp.array([[0.0, np.nan]]))


# --------------------------------------------------------------------------------------
# Named targets.


@pytest.mark.parametrize("k", [2, 4, 9])
def test_gaussian_grids(k):
    grid = theory.gaussian_grid(k)
    means = np.asarray(grid.means)
    assert grid.n_components == k and grid.dim == 2
    np.testing.assert_allclose(grid.weights, 1.0 / k)
    np.testing.assert_allclose(grid.covs, theory.GRID_VARIANCE * np.stack([np.eye(2)] * k))
    assert theory.GRID_VARIANCE == 0.1
    np.testing.assert_array_equal(means, np.asarray(theory.GRID_MEANS[k]))
    distances = np.linalg.norm(means[:, None] - means[None], axis=-1)[~np.eye(k, dtype=bool)]
    assert distances.min() == pytest.approx(2.0 if k == 9 else 4.0)  # spacing 2 grid; K=2,4 at +-2
    np.testing.assert_allclose(means.mean(axis=0), 0.0, atol=1e-15)  # centred


def test_ncsn_target_and_its_two_noise_schedules():
    np.testing.assert_allclose(NCSN.weights, [0.8, 0.2])
    np.testing.assert_allclose(NCSN.means, [[5.0, 5.0], [-5.0, -5.0]])
    np.testing.assert_allclose(NCSN.covs, np.stack([np.eye(2)] * 2))
    # The paper's level-sigma law is the convolution (variance 1 + sigma^2); the code's
    # replaces the component variance by sigma^2.
    np.testing.assert_allclose(NCSN.noised(1.0, 0.5).covs, 1.25 * np.stack([np.eye(2)] * 2))
    code = theory.ncsn_component_std_schedule(NCSN, 0.5)
    np.testing.assert_allclose(code.covs, 0.25 * np.stack([np.eye(2)] * 2))
    np.testing.assert_allclose(code.means, NCSN.means)
    np.testing.assert_allclose(code.weights, NCSN.weights)


# --------------------------------------------------------------------------------------
# Laws on low-dimensional sets.


@given(_floats(-5, 5))
def test_point_mass(location):
    law = theory.PointMass(location)
    assert law.dim == 1 and law.support_dim == 0 and isinstance(law, theory.AbstractDistribution)
    samples = law.sample(jax.random.key(1), 5)
    assert samples.shape == (5, 1) and np.all(samples == location)
    # Density w.r.t. counting measure: 1 at the atom, 0 elsewhere.
    np.testing.assert_array_equal(law.log_prob(samples), 0.0)
    np.testing.assert_array_equal(law.log_prob(jnp.array([[location + 1.0], [location - 1e-3]])), -np.inf)


@given(_floats(-5, 5))
def test_vertical_segment(theta):
    law = theory.VerticalSegment(theta)
    assert law.dim == 2 and law.support_dim == 1
    samples = np.asarray(law.sample(jax.random.key(2), 4000))
    assert samples.shape == (4000, 2) and np.all(samples[:, 0] == theta)
    u = samples[:, 1]
    assert np.all((u >= 0) & (u <= 1))
    # U[0, 1]: mean 1/2 and variance 1/12, to 5 standard errors (sd of U is 0.289, of
    # (U - 1/2)^2 is 0.0745).
    assert abs(u.mean() - 0.5) <= 5 * 0.2887 / math.sqrt(4000)
    assert abs(((u - 0.5) ** 2).mean() - 1 / 12) <= 5 * 0.0745 / math.sqrt(4000)
    np.testing.assert_array_equal(law.log_prob(samples), 0.0)  # length measure on the segment
    off = jnp.array([[theta + 0.1, 0.5], [theta, -0.01], [theta, 1.01]])
    np.testing.assert_array_equal(law.log_prob(off), -np.inf)


# --------------------------------------------------------------------------------------
# Bad input: ValueError naming the argument and showing the value.

_EYE2 = np.eye(2)
_G1 = theory.Gaussian(jnp.zeros(1), jnp.eye(1))
_G2 = theory.Gaussian(jnp.zeros(2), jnp.eye(2))
_M1 = IMPLEMENTATIONS["mixture-1d"]


@pytest.mark.parametrize(
    "build, shown",
    [
        (lambda: theory.Gaussian(np.zeros((2, 1)), _EYE2), r"mean must have shape \(d,\), got shape \(2, 1\)"),
        (lambda: theory.Gaussian(np.zeros(0), np.zeros((0, 0))), r"mean must have shape \(d,\), got shape \(0,\)"),
        (lambda: theory.Gaussian(np.zeros(2), np.eye(3)), r"cov must have shape \(2, 2\), got shape \(3, 3\)"),
        (lambda: theory.Gaussian([np.inf, 0.0], _EYE2), r"mean must be finite, got \[inf  0\.\]"),
        (lambda: theory.Gaussian([np.nan, 0.0], _EYE2), r"mean must be finite, got \[nan  0\.\]"),
        (lambda: theory.Gaussian(np.zeros(2), [[1.0, np.nan], [np.nan, 1.0]]), r"cov must be finite, got"),
        (lambda: theory.Gaussian(np.zeros(2), [[1.0, 2.0], [2.0, 1.0]]), r"cov must be positive definite, got smallest eigenvalue -1"),
        (lambda: theory.Gaussian(np.zeros(2), [[1.0, 0.5], [0.0, 1.0]]), r"cov must be symmetric, got \[\[1\. +0\.5\]"),
        (lambda: theory.Gaussian(np.zeros(1), [[0.0]]), r"cov must be positive definite, got smallest eigenvalue 0"),
        (
            lambda: theory.MixtureOfGaussians([[1.0]], [[0.0]], np.ones((1, 1, 1))),
            r"weights must have shape \(K,\), got shape \(1, 1\)",
        ),
        (
            lambda: theory.MixtureOfGaussians([0.5, 0.5], [0.0, 1.0], np.ones((2, 1, 1))),
            r"means must have shape \(K=2, d\), got shape \(2,\)",
        ),
        (
            lambda: theory.MixtureOfGaussians([0.5, 0.5], np.zeros((3, 1)), np.ones((2, 1, 1))),
            r"means must have shape \(K=2, d\), got shape \(3, 1\)",
        ),
        (
            lambda: theory.MixtureOfGaussians([0.5, 0.5], np.zeros((2, 2)), np.ones((2, 1, 1))),
            r"covs must have shape \(2, 2, 2\), got shape \(2, 1, 1\)",
        ),
        (
            lambda: theory.MixtureOfGaussians([1.5, -0.5], np.zeros((2, 1)), np.ones((2, 1, 1))),
            r"weights must be nonnegative, got \[ 1\.5 -0\.5\]",
        ),
        (
            lambda: theory.MixtureOfGaussians([0.5, 0.43], np.zeros((2, 1)), np.ones((2, 1, 1))),
            r"weights must sum to 1, got sum 0\.93",
        ),
        (
            lambda: theory.MixtureOfGaussians([np.nan, 1.0], np.zeros((2, 1)), np.ones((2, 1, 1))),
            r"weights must be finite, got \[nan  1\.\]",
        ),
        (
            lambda: theory.MixtureOfGaussians([0.5, 0.5], [[0.0], [np.inf]], np.ones((2, 1, 1))),
            r"means must be finite, got \[\[ 0\.\]",
        ),
        (
            lambda: theory.MixtureOfGaussians([0.5, 0.5], np.zeros((2, 1)), np.array([[[1.0]], [[-2.0]]])),
            r"covs must be positive definite, got smallest eigenvalue -2",
        ),
        (lambda: theory.MixtureOfGaussians.isotropic([1.0], [0.0], 1.0), r"means must have shape \(K, d\), got shape \(1,\)"),
        (
            lambda: theory.MixtureOfGaussians.isotropic([0.5, 0.5], np.zeros((2, 1)), [1.0, 1.0, 1.0]),
            r"variance must be a scalar or have shape \(2,\), got shape \(3,\)",
        ),
        (
            lambda: theory.MixtureOfGaussians.isotropic([0.5, 0.5], np.zeros((2, 1)), -0.1),
            r"variance must be finite and > 0, got -0\.1",
        ),
        (
            lambda: theory.MixtureOfGaussians.isotropic([0.5, 0.6], np.zeros((2, 1)), 1.0),
            r"weights must sum to 1, got sum 1\.1",
        ),
        (lambda: theory.mixture([_G1, _G1], [0.5, 0.6]), r"weights must sum to 1, got sum 1\.1"),
        (lambda: theory.mixture([_G1, _G1], [1.0]), r"weights must have one entry per component \(2\), got shape \(1,\)"),
        (lambda: theory.mixture([_G1, _G1], [1.2, -0.2]), r"weights must be nonnegative, got \[ 1\.2 -0\.2\]"),
        (lambda: theory.mixture([_G1, _G2], [0.5, 0.5]), r"components must share one dimension, got dimensions \[1, 2\]"),
        (
            lambda: theory.mixture([_G1, theory.PointMass(0.0)], [0.5, 0.5]),
            r"components must be Gaussian or MixtureOfGaussians, got PointMass",
        ),
        (lambda: theory.gaussian_grid(3), r"n_modes must be one of \[2, 4, 9\] \(a named Gaussian grid\), got 3"),
        (lambda: theory.ncsn_component_std_schedule(NCSN, 0.0), r"sigma must be finite and > 0, got 0\."),
        (lambda: theory.ncsn_component_std_schedule(NCSN, np.nan), r"sigma must be finite and > 0, got nan"),
        (lambda: theory.PointMass([0.0, 1.0]), r"location must have shape \(\), got shape \(2,\)"),
        (lambda: theory.PointMass(np.nan), r"location must be finite, got nan"),
        (lambda: theory.VerticalSegment(np.inf), r"theta must be finite, got inf"),
        (lambda: theory.VerticalSegment(np.ones(2)), r"theta must have shape \(\), got shape \(2,\)"),
    ],
)
def test_constructors_reject_bad_input(build, shown):
    with pytest.raises(ValueError, match=shown):
        build()


@pytest.mark.parametrize("law", [_G1, _M1, NCSN, theory.PointMass(0.0), theory.VerticalSegment(0.5)], ids=str)
@pytest.mark.parametrize(
    "n, error, shown",
    [(0, ValueError, r"n must be an integer >= 1, got 0"), (2.0, TypeError, r"n must be an integer >= 1, got 2\.0"),
     (-3, ValueError, r"got -3")],
)
def test_sample_rejects_bad_counts(law, n, error, shown):
    with pytest.raises(error, match=shown):
        law.sample(jax.random.key(0), n)


@pytest.mark.parametrize(
    "call, shown",
    [
        (lambda: _G2.log_prob(jnp.zeros((3, 1))), r"x must have last axis of size d=2, got shape \(3, 1\)"),
        (lambda: _G2.score(jnp.zeros(3)), r"x must have last axis of size d=2, got shape \(3,\)"),
        (lambda: _M1.log_prob(jnp.asarray(1.0)), r"x must have last axis of size d=1, got shape \(\)"),
        (lambda: _M1.score(jnp.zeros((4, 2))), r"x must have last axis of size d=1, got shape \(4, 2\)"),
        (lambda: _M1.responsibilities(jnp.zeros((4, 2))), r"x must have last axis of size d=1"),
        (lambda: NCSN.sample_with_components(jax.random.key(0), 0), r"n must be an integer >= 1, got 0"),
        (lambda: theory.VerticalSegment(0.0).log_prob(jnp.zeros(3)), r"x must have last axis of size d=2"),
        (lambda: theory.PointMass(0.0).log_prob(jnp.zeros((2, 2))), r"x must have last axis of size d=1"),
        (lambda: _G1.noised(np.nan, 1.0), r"scale must be finite, got nan"),
        (lambda: _M1.noised(1.0, -0.5), r"std must be finite and >= 0, got -0\.5"),
        (lambda: _M1.noised(1.0, np.inf), r"std must be finite and >= 0, got inf"),
        (lambda: _G1.noised(np.ones(2), 1.0), r"scale must have shape \(\), got shape \(2,\)"),
        (lambda: _M1.noised(1.0, np.ones(2)), r"std must have shape \(\)"),
        (lambda: _G2.noised(0.0, 0.0), r"scale and std must not both be 0 .*got 0 and 0"),
    ],
)
def test_methods_reject_bad_input(call, shown):
    with pytest.raises(ValueError, match=shown):
        call()


@pytest.mark.parametrize(
    "law",
    [
        theory.gaussian_grid(9),
        theory.ncsn_two_modes().noised(0.5, 2.0),
        theory.Gaussian(jnp.array([1.0, -2.0]), jnp.array([[2.0, 0.3], [0.3, 0.5]])),
    ],
)
def test_score_at_point_is_the_closed_form_score_one_point_at_a_time(law):
    from theory.distributions import score_at_point

    points = jnp.array([[0.0, 0.0], [1.0, -1.0], [40.0, -35.0], [5.0, 5.0]])
    one_at_a_time = jax.vmap(lambda x: score_at_point(law, x))(points)
    # Two float64 routes to one closed form (precisions vs triangular solves); they
    # differ by rounding, ~1e-12 relative for these condition numbers.
    np.testing.assert_allclose(one_at_a_time, law.score(points), rtol=1e-9, atol=1e-9)
