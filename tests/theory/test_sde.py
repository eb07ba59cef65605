"""Tests for theory/sde.py: the forward SDEs' closed-form marginals, priors and scores.

Statistical tests use fixed keys; each states the probability that it would fail for
a correct implementation over the draw of the key (its false-failure rate, FFR).
"""

import math

import diffrax
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import lineax
import numpy as np
import pytest
from hypothesis import given

import theory
from theory.sde import VESDE, VPSDE, AbstractSDE, ExactMarginalScore, SubVPSDE

SDES = [VPSDE(), SubVPSDE(), VESDE()]
IDS = ["vp", "subvp", "ve"]

# A two-sided normal tail of z = 5 has probability 5.7e-7; with the handful of checks
# below (fewer than 40 in all) the family-wise FFR is below 2.5e-5.
Z = 5.0


def _rate(sde: AbstractSDE, t):
    """h(t) in f(x, t) = -h(t) x, read off the drift at x = 1."""
    return -sde.drift(jnp.ones(()), t)


# --------------------------------------------------------------------------------------
# Closed forms against the SDE's own coefficients (exact identities).


@pytest.mark.parametrize("sde", SDES, ids=IDS)
@given(t=st.floats(1e-3, 1.0))
def test_marginals_solve_the_moment_equations(sde, t):
    """For dx = -h x dt + g dW: dm/dt = -h m and d(s^2)/dt = -2 h s^2 + g^2 (Särkkä &
    Solin 2019, eqs. 6.2-6.3); checked with forward-mode derivatives of the closed forms.
    Tolerance: float64 rounding of a few elementary functions (relative 1e-9)."""
    t = jnp.asarray(t, jnp.float64)
    m, dm = jax.jvp(sde.marginal_scale, (t,), (jnp.ones_like(t),))
    variance = lambda s: sde.marginal_std(s) ** 2  # noqa: E731
    v, dv = jax.jvp(variance, (t,), (jnp.ones_like(t),))
    h, g = _rate(sde, t), sde.diffusion(t)
    np.testing.assert_allclose(dm, -h * m, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(dv, -2 * h * v + g**2, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("sde", SDES, ids=IDS)
def test_marginals_start_at_the_data(sde):
    """x_0 | x_0 is the point mass: m(0) = 1, s(0) = 0."""
    assert float(sde.marginal_scale(jnp.asarray(0.0))) == pytest.approx(1.0, abs=1e-15)
    assert float(sde.marginal_std(jnp.asarray(0.0))) == pytest.approx(0.0, abs=1e-15)


def test_song_et_al_defaults_and_priors():
    """Song et al. (2021) settings; the VP prior N(0, I) is p_1 up to exp(-B(1)/2) = 0.0066
    in the mean scale, the VE prior N(0, sigma_max^2 I) up to sigma_min^2 in the variance."""
    vp, subvp, ve = VPSDE(), SubVPSDE(), VESDE()
    assert (vp.beta_min, vp.beta_max, ve.sigma_min, ve.sigma_max) == (0.1, 20.0, 0.01, 50.0)
    integrated = 0.1 + (20.0 - 0.1) / 2
    assert float(vp.marginal_scale(1.0)) == pytest.approx(math.exp(-integrated / 2), rel=1e-12)
    assert float(vp.marginal_std(1.0)) == pytest.approx(math.sqrt(1 - math.exp(-integrated)), rel=1e-12)
    assert float(subvp.marginal_std(1.0)) == pytest.approx(1 - math.exp(-integrated), rel=1e-12)
    assert float(ve.marginal_std(1.0)) == pytest.approx(math.sqrt(50.0**2 - 0.01**2), rel=1e-12)
    np.testing.assert_allclose(vp.prior(2).cov, np.eye(2))
    np.testing.assert_allclose(ve.prior(2).cov, 2500 * np.eye(2))


@given(t=st.floats(1e-4, 1.0))
def test_sub_vp_variance_is_below_vp(t):
    """Song et al. (2021), Sec. 3.4: the sub-VP variance is bounded by the VP one,
    (1 - e^{-B})^2 <= 1 - e^{-B}."""
    assert float(SubVPSDE().marginal_std(t)) ** 2 <= float(VPSDE().marginal_std(t)) ** 2 + 1e-15


@pytest.mark.parametrize("sde", SDES, ids=IDS)
@given(t=st.floats(1e-3, 1.0))
def test_time_at_noise_ratio_inverts_the_marginals(sde, t):
    """time_at_noise_ratio(s(t) / m(t)) = t, the inverse used to read a DDPM step as an SDE
    time. Tolerance: the closed-form inverses are well conditioned away from t = 0."""
    t = jnp.asarray(t, jnp.float64)
    ratio = sde.marginal_std(t) / sde.marginal_scale(t)
    np.testing.assert_allclose(sde.time_at_noise_ratio(ratio), t, rtol=1e-9)


@pytest.mark.parametrize("sde", SDES, ids=IDS)
@given(t=st.floats(1e-3, 1.0), x=st.tuples(st.floats(-4, 4), st.floats(-4, 4)))
def test_exact_score_is_the_gradient_of_the_noised_log_density(sde, t, x):
    """ExactMarginalScore(x, t) = grad_x log p_t(x) with p_t = target.noised(m(t), s(t))."""
    target = theory.gaussian_grid(4)
    x = jnp.asarray(x, jnp.float64)
    law = sde.noised_target(target, jnp.asarray(t))
    np.testing.assert_allclose(
        ExactMarginalScore(sde, target)(x, jnp.asarray(t)), jax.grad(law.log_prob)(x), rtol=1e-8, atol=1e-10
    )


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: VPSDE(beta_min=-0.1), "beta_min"),
        (lambda: VPSDE(beta_min=1.0, beta_max=0.5), "beta_max"),
        (lambda: SubVPSDE(beta_max=float("nan")), "beta_max"),
        (lambda: VESDE(sigma_min=0.0), "sigma_min"),
        (lambda: VESDE(sigma_min=1.0, sigma_max=0.5), "sigma_max"),
    ],
)
def test_bad_parameters_are_named(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# --------------------------------------------------------------------------------------
# The forward SDE simulated with diffrax against the closed forms.


def _simulate_forward(sde: AbstractSDE, x0, n_paths: int, n_steps: int, save_ts, key):
    """Euler-Maruyama through diffrax for n_paths copies of x0 (one state of n_paths * d)."""
    y0 = jnp.tile(jnp.asarray(x0, jnp.float64), n_paths)

    def drift(t, y, args):
        return sde.drift(y, t)

    def diffusion(t, y, args):
        return lineax.DiagonalLinearOperator(jnp.full(y.shape, sde.diffusion(t)))

    path = diffrax.UnsafeBrownianPath(jax.ShapeDtypeStruct(y0.shape, y0.dtype), key)
    terms = diffrax.MultiTerm(diffrax.ODETerm(drift), diffrax.ControlTerm(diffusion, path))
    solution = diffrax.diffeqsolve(
        terms, diffrax.Euler(), t0=0.0, t1=max(save_ts), dt0=max(save_ts) / n_steps, y0=y0,
        saveat=diffrax.SaveAt(ts=jnp.asarray(save_ts)), adjoint=diffrax.ForwardMode(), max_steps=n_steps,
    )
    return np.asarray(solution.ys).reshape(len(save_ts), n_paths, -1)


def _euler_maruyama_moments(sde: AbstractSDE, x0, n_steps: int, t1: float, save_ts):
    """The exact mean and variance of the Euler-Maruyama chain for the linear SDE
    dx = -h x dt + g dW: m_{k+1} = (1 - h_k dt) m_k, v_{k+1} = (1 - h_k dt)^2 v_k + g_k^2 dt.
    Its distance to the closed forms is the scheme's bias, an allowance in the tolerance."""
    dt = t1 / n_steps
    mean, variance = np.asarray(x0, np.float64), 0.0
    out = {}
    for k in range(n_steps):
        t = k * dt
        factor = 1.0 - float(_rate(sde, t)) * dt
        mean, variance = factor * mean, factor**2 * variance + float(sde.diffusion(t)) ** 2 * dt
        for s in save_ts:
            if abs((k + 1) * dt - s) < 1e-9:
                out[s] = (mean, variance)
    return out


@pytest.mark.parametrize("sde", [VPSDE(), VESDE(sigma_max=5.0)], ids=["vp", "ve"])
def test_simulated_forward_marginals_match_the_closed_forms(sde, key):
    """x_t | x_0 ~ N(m(t) x_0, s(t)^2 I): mean and variance of 20,000 simulated paths.

    Tolerance, per coordinate: Z standard errors of the estimator (sd s/sqrt(N) for the
    mean; for the variance pooled over the d = 2 coordinates, s^2 sqrt(2 / (dN - 1)), the
    Gaussian sampling variance of a variance) plus the Euler-Maruyama bias, computed
    exactly from the scheme's moment recursion. FFR < 5.7e-7 per check (Z = 5), 18
    checks. The bias allowance is also asserted to stay below one standard error, so the
    test keeps its power.
    """
    n_paths, n_steps = 20_000, 4000
    x0 = np.array([1.0, -2.0])
    save_ts = (0.05, 0.3, 1.0)
    paths = _simulate_forward(sde, x0, n_paths, n_steps, save_ts, key)
    scheme = _euler_maruyama_moments(sde, x0, n_steps, max(save_ts), save_ts)
    for index, t in enumerate(save_ts):
        m, s = float(sde.marginal_scale(t)), float(sde.marginal_std(t))
        mean_se = s / math.sqrt(n_paths)
        var_se = s**2 * math.sqrt(2.0 / (2 * n_paths - 1))
        scheme_mean, scheme_var = scheme[t]
        mean_bias = np.abs(scheme_mean - m * x0)
        var_bias = abs(scheme_var - s**2)
        assert np.all(mean_bias < mean_se) and var_bias < var_se, "step too coarse for this test's power"
        sample = paths[index]
        np.testing.assert_array_less(np.abs(sample.mean(axis=0) - m * x0), Z * mean_se + mean_bias)
        pooled_var = np.mean(sample.var(axis=0, ddof=1))
        assert abs(pooled_var - s**2) < Z * var_se + var_bias, (t, pooled_var, s**2)


@pytest.mark.parametrize("sde", [VPSDE, SubVPSDE, VESDE])
def test_sde_fields_are_keyword_only(sde):
    # VPSDE(0.1, 20.0) used to build t_max = 0.1, beta_min = 20: positions are refused.
    with pytest.raises(TypeError, match="positional argument"):
        sde(0.1, 20.0)
    with pytest.raises(TypeError, match="(beta_min|sigma_min) must be a finite number > 0, got '0.1'"):
        sde(**({"beta_min": "0.1"} if sde is not VESDE else {"sigma_min": "0.1"}))
