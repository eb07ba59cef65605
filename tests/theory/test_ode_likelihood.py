"""Tests for theory/ode_likelihood.py: the log-density ODE against closed forms, KL and
cross-entropy of the probability-flow ODE model, Hutchinson's estimator, and the
score-error bound on the reverse SDE's KL.

Closed forms used (VP SDE, Gaussian data N(mu, S), S = U diag(lam) U^T):
p_t = N(m_t mu, S_t), S_t = m_t^2 S + s_t^2 I, with eigenvalues v_j(t) = m_t^2 lam_j + s_t^2.
The exact probability-flow ODE keeps each eigen-coordinate of x - m_t mu proportional to
sqrt(v_j(t)), so its flow map from t_end to T is affine and its Jacobian's integrated
trace is M = int div v dt = U diag(log(v_j(T) / v_j(t_end)) / 2) U^T (d/dt log sqrt(v_j) =
-h + g^2 / (2 v_j) is the eigenvalue of dv/dx). With an affine score the ODE and the
reverse SDE are linear, so their laws are Gaussian with moments solved here by SciPy
(an implementation independent of the code under test).

A bijection preserves KL, so for the exact score and base law pi (the prior):
KL(q_ODE || p_{t_end}) = KL(pi || p_T) and KL(p_{t_end} || q_ODE) = KL(p_T || pi); with base
p_T itself, q_ODE = p_{t_end} and both vanish.

Statistical checks use fixed keys and z = 4.4 (two-sided normal tail 1.1e-5 per check).
Every ODE solve here uses N = 64 points, so each (vector field, divergence) pair compiles once.
"""

import itertools
import math

import equinox as eqx
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
from hypothesis import given

import theory
from theory.distributions import score_at_point
from theory.integrate import Quadrature, Term, expectation_sum
from theory.ode_likelihood import (
    AdaptiveSteps,
    ContinuousFlow,
    FixedSteps,
    Hutchinson,
    ODESolve,
    ode_log_density,
    ode_push_forward,
    flow_cross_entropy,
    flow_kl,
    probability_flow_log_density,
    probability_flow_model,
    score_error_integral,
    score_error_kl_bound,
)
from theory.sde import VPSDE, ExactMarginalScore

Z = 4.4
MEAN = np.array([1.0, -0.5])
COV = np.array([[0.5, 0.2], [0.2, 0.3]])
SDE = VPSDE()
T_END = 1e-3
TARGET = theory.Gaussian(jnp.asarray(MEAN), jnp.asarray(COV))
N = 64  # points per solve (one shape: one compilation per vector field and divergence)


class AffinePerturbedScore(eqx.Module):
    """s(x, t) = (1 + scale) grad log p_t(x) + shift: a deliberately wrong score that keeps
    the ODE and the reverse SDE linear for Gaussian data (scale = shift = 0: exact)."""

    sde: VPSDE
    target: theory.Gaussian
    scale: jax.Array
    shift: jax.Array

    def __call__(self, x, t):
        exact = score_at_point(self.sde.noised_target(self.target, t), x)
        return (1.0 + self.scale) * exact + self.shift


def perturbed(scale=0.0, shift=(0.0, 0.0)):
    return AffinePerturbedScore(SDE, TARGET, jnp.asarray(scale, jnp.float64), jnp.asarray(shift, jnp.float64))


# The VP closed forms in NumPy (SciPy calls them thousands of times; eager JAX would
# dominate the run time): beta(t) = b0 + t (b1 - b0), B = int_0^t beta, m = exp(-B / 2),
# s^2 = 1 - exp(-B) (Song et al. 2021, eq. 29).


def beta(t):
    return SDE.beta_min + t * (SDE.beta_max - SDE.beta_min)


def integrated_beta(t):
    return SDE.beta_min * t + 0.5 * (SDE.beta_max - SDE.beta_min) * t**2


def m(t):
    return math.exp(-0.5 * integrated_beta(t))


def s(t):
    return math.sqrt(-math.expm1(-integrated_beta(t)))


def cov_t(t):
    return m(t) ** 2 * COV + s(t) ** 2 * np.eye(2)


def noised(t):
    return SDE.noised_target(TARGET, jnp.asarray(t))


def exact_flow_map(x, t_from, t_to):
    """The exact probability-flow map for Gaussian data (see the module docstring)."""
    lam, u = np.linalg.eigh(COV)
    v = lambda t: m(t) ** 2 * lam + s(t) ** 2  # noqa: E731
    return m(t_to) * MEAN + ((x - m(t_from) * MEAN) @ u * np.sqrt(v(t_to) / v(t_from))) @ u.T


def model_log_density_exact_score(x, x_T):
    """log q(x) of the exact-score ODE model with the prior as base: the exact flow carries
    p_{t_end} to p_T, so log q(x) = log p_{t_end}(x) + log pi(x_T) - log p_T(x_T)."""
    prior_ratio = np.asarray(SDE.prior(2).log_prob(x_T)) - np.asarray(noised(1.0).log_prob(x_T))
    return np.asarray(noised(T_END).log_prob(x)) + prior_ratio


def solver_error_bound(result, x, x_T, tol):
    """A per-point bound on the log-density error of an adaptive Tsit5 solve at rtol = atol = tol
    for the exact-score Gaussian flow. The PID controller accepts a step when its estimated
    local error is <= atol + rtol |y| per component; over N steps the errors add and grow by
    at most the flow's largest expansion G = max_j sqrt(v_j(T) / v_j(t_end)) (or its inverse);
    log pi(x_T) then moves by |x_T| times the error of x_T. Bound: N (1 + max|y|) tol G (1 + |x_T|)."""
    lam = np.linalg.eigvalsh(COV)
    v_ratio = (m(1.0) ** 2 * lam + s(1.0) ** 2) / (m(T_END) ** 2 * lam + s(T_END) ** 2)
    growth = np.max(np.sqrt(np.maximum(v_ratio, 1.0 / v_ratio)))
    n_steps = (np.asarray(result.nfe) - 1) / 6  # Tsit5: 6 evaluations per step + 1 (FSAL)
    size = 1.0 + np.maximum(np.abs(np.asarray(x)).max(axis=1), np.abs(np.asarray(result.log_density)))
    return n_steps * size * tol * growth * (1.0 + np.linalg.norm(x_T, axis=1))


def linear_gaussian_law(scale, shift, weight, noise, init_mean, init_cov):
    """Law at T_END of the linear process run from T down to T_END,
    dx = [-h x - weight g^2 s(x, t)] dt + noise g dW_bar, s the affine perturbed score,
    from N(init_mean, init_cov) at T: weight 1/2 and noise 0 is the probability-flow ODE,
    weight 1 and noise 1 the reverse SDE. In t: dM/dt = A M + c, dSigma/dt = A Sigma +
    Sigma A^T - noise g^2 I (time runs backwards, so the diffusion removes variance)."""

    def rhs(t, y):
        mean, cov = y[:2], y[2:].reshape(2, 2)
        precision = np.linalg.inv(cov_t(t))
        a = -0.5 * beta(t) * np.eye(2) + weight * beta(t) * (1.0 + scale) * precision
        c = -weight * beta(t) * ((1.0 + scale) * precision @ (m(t) * MEAN) + np.asarray(shift))
        dcov = a @ cov + cov @ a.T - noise * beta(t) * np.eye(2)
        return np.concatenate([a @ mean + c, dcov.ravel()])

    y0 = np.concatenate([np.asarray(init_mean, float), np.asarray(init_cov, float).ravel()])
    sol = scipy.integrate.solve_ivp(rhs, (1.0, T_END), y0, method="DOP853", rtol=1e-11, atol=1e-12)
    cov = sol.y[2:, -1].reshape(2, 2)
    return theory.Gaussian(jnp.asarray(sol.y[:2, -1]), jnp.asarray(0.5 * (cov + cov.T)))


def entropy(law) -> theory.Estimate:
    return expectation_sum([Term(0, lambda x, logs: -logs[0])], [law], method=Quadrature(), key=None, what="H")


# --------------------------------------------------------------------------------------
# The log-density ODE against the closed form (Gaussian data).


def test_log_density_equals_closed_form_and_error_shrinks_with_tolerance(key):
    x = TARGET.sample(key, N)
    x_T = exact_flow_map(np.asarray(x), T_END, 1.0)
    expected = model_log_density_exact_score(x, x_T)
    errors = []
    for tol in (1e-5, 1e-7, 1e-9):
        solve = ODESolve(steps=AdaptiveSteps(tol, tol))
        result = probability_flow_log_density(SDE, perturbed(), x, t_end=T_END, solve=solve)
        assert np.all(np.asarray(result.probe_error) == 0.0)
        bound = solver_error_bound(result, x, x_T, tol)
        error = np.abs(np.asarray(result.log_density) - expected)
        assert np.all(error <= bound), (tol, error.max(), bound.min())
        errors.append(error.max())
    # Tolerance proportionality: 100x tighter tolerance, at least 10x smaller error.
    assert errors[1] < errors[0] / 10 and errors[2] < errors[1] / 10, errors


def test_push_forward_inverts_log_density(key):
    """Sampling (T -> t_end) and evaluation (t_end -> T) are the same ODE: pushing prior draws
    forward and evaluating their log-density again returns the same numbers."""
    model = probability_flow_model(SDE, perturbed(), 2, t_end=T_END)
    z = SDE.prior(2).sample(key, N)
    tol = 1e-9
    solve = ODESolve(steps=AdaptiveSteps(tol, tol))
    pushed = ode_push_forward(model.vector_field, z, SDE.prior(2).log_prob, t0=1.0, t1=T_END, solve=solve)
    back = ode_log_density(model.vector_field, pushed.points, SDE.prior(2).log_prob, t0=T_END, t1=1.0, solve=solve)
    # Each direction is within `solver_error_bound` of the exact value (the same flow, read
    # either way), so they differ by at most the sum of the two bounds.
    bound = solver_error_bound(pushed, pushed.points, z, tol) + solver_error_bound(back, pushed.points, z, tol)
    assert np.all(np.abs(back.log_density - pushed.log_density) <= bound)
    np.testing.assert_allclose(pushed.points, exact_flow_map(np.asarray(z), 1.0, T_END), rtol=0, atol=bound.min())


@pytest.mark.slow
def test_fixed_steps_converge_at_the_order_of_tsit5(key):
    """Tsit5 is of order 5: the log-density error of n fixed steps falls like n^-5."""
    x = TARGET.sample(key, N)
    x_T = exact_flow_map(np.asarray(x), T_END, 1.0)
    expected = model_log_density_exact_score(x, x_T)
    ns = np.array([8, 16, 32])
    errors = []
    for n in ns:
        result = probability_flow_log_density(SDE, perturbed(), x, t_end=T_END, solve=ODESolve(steps=FixedSteps(int(n))))
        errors.append(np.max(np.abs(result.log_density - expected)))
    slope = -np.polyfit(np.log(ns), np.log(errors), 1)[0]
    # Measured 5.3; the asymptotic order is 5 and the pre-asymptotic range reaches ~5.7.
    assert 4.5 <= slope <= 6.5, (slope, errors)



# --------------------------------------------------------------------------------------
# Hutchinson's estimator.


@given(st.integers(2, 4), st.integers(0, 2**31 - 1))
def test_hutchinson_variance_equals_exact_enumeration(d, seed):
    """Var(v^T A v) over all 2^d Rademacher vectors, enumerated exactly, matches the formula."""
    a = np.random.default_rng(seed).normal(size=(d, d))
    values = np.array([np.array(v) @ a @ np.array(v) for v in itertools.product((-1.0, 1.0), repeat=d)])
    assert values.mean() == pytest.approx(np.trace(a), abs=1e-12)  # unbiased
    assert float(Hutchinson.variance(jnp.asarray(a))) == pytest.approx(values.var(), rel=1e-12, abs=1e-12)


def test_hutchinson_log_density_deviates_by_one_probe_standard_deviation(key):
    """For Gaussian data J does not depend on x, so one probe's increment is v^T M v; in 2-D
    it is tr M +- 2 M_12 exactly, a deviation from the exact trace of sqrt(Var) = 2 |M_12|."""
    key_x, key_probes = jax.random.split(key)
    x = TARGET.sample(key_x, N)
    steps = AdaptiveSteps(1e-9, 1e-9)
    exact = probability_flow_log_density(SDE, perturbed(), x, t_end=T_END, solve=ODESolve(steps=steps))
    hutch = probability_flow_log_density(
        SDE, perturbed(), x, t_end=T_END, solve=ODESolve(steps=steps, divergence=Hutchinson(1)), key=key_probes
    )
    lam, u = np.linalg.eigh(COV)
    v = lambda t: m(t) ** 2 * lam + s(t) ** 2  # noqa: E731
    integrated_jacobian = u @ np.diag(0.5 * np.log(v(1.0) / v(T_END))) @ u.T
    spread = math.sqrt(float(Hutchinson.variance(jnp.asarray(integrated_jacobian))))
    assert spread == pytest.approx(2 * abs(integrated_jacobian[0, 1]), rel=1e-12)
    # Each solve is within `solver_error_bound` of its exact value (the Hutchinson one
    # integrates v^T J v instead of tr J, no larger a component here).
    x_T = exact_flow_map(np.asarray(x), T_END, 1.0)
    bound = solver_error_bound(exact, x, x_T, 1e-9) + solver_error_bound(hutch, x, x_T, 1e-9)
    assert np.all(np.abs(np.abs(hutch.log_density - exact.log_density) - spread) <= bound)
    assert np.all(np.isnan(hutch.probe_error))  # one probe: no per-point standard error


# --------------------------------------------------------------------------------------
# KL and cross-entropy of the ODE model.


def test_kl_and_cross_entropy_of_a_perturbed_score_match_the_closed_form(key):
    """An affine score error keeps the ODE linear: q_ODE is Gaussian with moments from SciPy."""
    scale, shift = 0.2, (0.3, -0.2)
    model = probability_flow_model(SDE, perturbed(scale, shift), 2, t_end=T_END)
    reference = noised(T_END)
    q = linear_gaussian_law(scale, shift, 0.5, 0.0, np.zeros(2), np.eye(2))
    key_kl, key_ce = jax.random.split(key)
    solve = ODESolve(steps=AdaptiveSteps(1e-7, 1e-7))
    estimate = flow_kl(model, reference, key=key_kl, method=theory.MonteCarlo(N), solve=solve)
    expected = theory.kl_gaussians(q, reference).value
    assert expected > 0.05  # a visible effect, not a test of 0 = 0
    # Solver bias at tol 1e-7 is ~1e-7 (closed-form test), far below the standard error.
    assert abs(estimate.value - expected) <= Z * estimate.error, (estimate, expected)
    cross = flow_cross_entropy(reference, model, key=key_ce, method=theory.MonteCarlo(N), solve=solve)
    expected_cross = entropy(reference).value + theory.kl_gaussians(reference, q).value
    assert abs(cross.value - expected_cross) <= Z * cross.error, (cross, expected_cross)


MIXTURE = theory.MixtureOfGaussians(
    jnp.array([0.3, 0.7]), jnp.array([[-1.0, 0.5], [1.0, -0.5]]),
    jnp.array([[[0.3, 0.1], [0.1, 0.2]], [[0.2, -0.05], [-0.05, 0.4]]]),
)
# beta_max = 3 leaves a visible prior mismatch (m_T = 0.46), so KL(pi || p_T) is not ~0.
SHORT_SDE = VPSDE(beta_max=3.0)


@pytest.fixture(scope="module")
def mixture_flows():
    score = ExactMarginalScore(SHORT_SDE, MIXTURE)
    p_T = SHORT_SDE.noised_target(MIXTURE, jnp.asarray(1.0))
    prior_model = probability_flow_model(SHORT_SDE, score, 2, t_end=T_END)
    exact_model = ContinuousFlow(prior_model.vector_field, p_T, t_base=1.0, t_data=T_END)
    return prior_model, exact_model, p_T, SHORT_SDE.noised_target(MIXTURE, jnp.asarray(T_END))


def test_kl_vanishes_with_the_exact_score_and_exact_base(key, mixture_flows):
    """Base p_T and the exact score: q_ODE = p_{t_end}, so KL = 0 up to the solver's bias,
    estimated by the difference of two tolerances on the same draws (the error is
    proportional to the tolerance, so |KL(tol) - KL(10 tol)| ~ 9 |bias(tol)| bounds it)."""
    _, exact_model, _, reference = mixture_flows
    fine, coarse = (
        flow_kl(exact_model, reference, key=key, method=theory.MonteCarlo(N), solve=ODESolve(steps=AdaptiveSteps(tol, tol)))
        for tol in (1e-9, 1e-8)
    )
    solver_error = abs(fine.value - coarse.value)
    assert abs(fine.value) <= Z * fine.error + solver_error, (fine, coarse)
    assert abs(fine.value) < 1e-6  # the bias at tol 1e-9 is of that order or below


def test_kl_with_the_prior_base_equals_the_prior_mismatch(key, mixture_flows):
    """Base pi and the exact score: the ODE is a bijection carrying p_T to p_{t_end}, so
    KL(q_ODE || p_{t_end}) = KL(pi || p_T) and E_p[-log q] = H(p_{t_end}) + KL(p_T || pi)."""
    prior_model, _, p_T, reference = mixture_flows
    key_kl, key_ce = jax.random.split(key)
    solve = ODESolve(steps=AdaptiveSteps(1e-7, 1e-7))
    estimate = flow_kl(prior_model, reference, key=key_kl, method=theory.MonteCarlo(N), solve=solve)
    expected = theory.kl(SHORT_SDE.prior(2), p_T)
    assert expected.value > 0.01
    assert abs(estimate.value - expected.value) <= Z * math.hypot(estimate.error, expected.error), (estimate, expected)
    cross = flow_cross_entropy(reference, prior_model, key=key_ce, method=theory.MonteCarlo(N), solve=solve)
    expected_cross = entropy(reference).value + theory.kl(p_T, SHORT_SDE.prior(2)).value
    assert abs(cross.value - expected_cross) <= Z * cross.error, (cross, expected_cross)


# --------------------------------------------------------------------------------------
# The score-error bound on the reverse SDE's KL (Song, Durkan, Murray & Ermon 2021, Thm. 1).


def test_bound_equals_prior_kl_for_the_exact_score(key):
    bound = score_error_kl_bound(SDE, perturbed(), TARGET, key=key, method=theory.MonteCarlo(N), t_end=T_END)
    prior_kl = theory.kl_gaussians(noised(1.0), SDE.prior(2))
    assert bound.value == pytest.approx(prior_kl.value, rel=1e-12)  # the integrand is exactly 0
    assert bound.error == 0.0


def test_score_error_integral_matches_one_dimensional_quadrature(key):
    """E||a grad log p_t + b||^2 = a^2 tr(S_t^{-1}) + |b|^2 (the score has mean 0), so
    J = 1/2 int beta(t) (a^2 tr S_t^{-1} + |b|^2) dt, here by SciPy's adaptive quadrature."""
    scale, shift = 0.3, np.array([0.2, -0.4])
    estimate = score_error_integral(
        SDE, perturbed(scale, shift), TARGET, key=key, method=theory.MonteCarlo(N), t_end=T_END
    )
    integrand = lambda t: 0.5 * beta(t) * (scale**2 * np.trace(np.linalg.inv(cov_t(t))) + shift @ shift)  # noqa: E731
    expected, quad_error = scipy.integrate.quad(integrand, T_END, 1.0, epsabs=1e-12, epsrel=1e-12)
    assert abs(estimate.value - expected) <= Z * estimate.error + quad_error, (estimate, expected)


@given(st.floats(-0.6, 0.6), st.floats(-0.5, 0.5), st.floats(-0.5, 0.5))
def test_bound_is_nonnegative_and_holds_against_the_reverse_sde_kl(scale, shift_x, shift_y):
    """For an affine score error the reverse SDE is linear, so its law at t_end is Gaussian
    (moments from SciPy) and KL(p_{t_end} || q_SDE) is exact: the bound must exceed it."""
    bound = score_error_kl_bound(
        SDE, perturbed(scale, (shift_x, shift_y)), TARGET, key=jax.random.key(1), method=theory.MonteCarlo(N),
        t_end=T_END,
    )
    assert bound.value >= 0.0  # a sum of a KL and positively weighted squares
    q_sde = linear_gaussian_law(scale, (shift_x, shift_y), 1.0, 1.0, np.zeros(2), np.eye(2))
    measured = theory.kl_gaussians(noised(T_END), q_sde).value
    assert measured <= bound.value + Z * bound.error, (measured, bound)


def test_reverse_sde_moments_recover_the_marginal_from_the_exact_start():
    """Checks the test's own closed form: the exact reverse SDE started at p_T ends at p_{t_end}."""
    law = linear_gaussian_law(0.0, (0.0, 0.0), 1.0, 1.0, m(1.0) * MEAN, cov_t(1.0))
    np.testing.assert_allclose(law.mean, m(T_END) * MEAN, atol=1e-8)
    np.testing.assert_allclose(law.cov, cov_t(T_END), atol=1e-8)


# --------------------------------------------------------------------------------------
# Bad input is refused before any compute.


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: AdaptiveSteps(rtol=0.0), "rtol"),
        (lambda: AdaptiveSteps(atol=float("nan")), "atol"),
        (lambda: FixedSteps(0), "n_steps"),
        (lambda: FixedSteps(10, max_steps=5), "max_steps"),
        (lambda: Hutchinson(0), "n_probes"),
        (lambda: Hutchinson.variance(jnp.ones(3)), "matrix"),
        (lambda: probability_flow_log_density(SDE, perturbed(), jnp.ones(3)), "x must have shape"),
        (lambda: probability_flow_log_density(SDE, perturbed(), jnp.ones((2, 2)), t_end=0.0), "t_end"),
        (lambda: ODESolve(steps=1e-5), "steps must be AdaptiveSteps"),
        (lambda: ODESolve(divergence="exact"), "divergence must be ExactTrace"),
        (lambda: ODESolve(solver="tsit5"), "solver must be diffrax.Euler, .* got 'tsit5'"),
        (lambda: probability_flow_log_density(SDE, perturbed(), jnp.ones((2, 2)), solve=AdaptiveSteps()), "solve must be"),
        (
            lambda: flow_kl(probability_flow_model(SDE, perturbed(), 2), TARGET, key=jax.random.key(0), solve="tsit5"),
            "solve must be ODESolve",
        ),
        (lambda: ode_log_density(lambda t, x: x, jnp.ones((2, 2)), lambda x: x[:, 0], t0=0.0, t1=0.0), "t1"),
        (lambda: ContinuousFlow(lambda t, x: x, SDE.prior(2), t_base=1.0, t_data=1.0), "t_data"),
        (
            lambda: flow_kl(
                probability_flow_model(SDE, perturbed(), 2), TARGET, key=jax.random.key(0), method=Quadrature()
            ),
            "method",
        ),
        (lambda: score_error_integral(SDE, perturbed(), TARGET, key=jax.random.key(0), t_end=2.0), "t_end"),
    ],
)
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize(
    "call",
    [
        lambda: probability_flow_log_density(SDE, perturbed(), jnp.ones((2, 2)), solve=ODESolve(divergence=Hutchinson(2))),
        lambda: score_error_kl_bound(SDE, perturbed(), TARGET, key=None),
    ],
)
def test_a_missing_key_is_a_type_error(call):
    # theory.validation: the wrong kind of argument (None for a key) is a TypeError.
    with pytest.raises(TypeError, match="key must be a JAX PRNG key"):
        call()


def test_adaptive_steps_need_an_error_estimate():
    import diffrax

    with pytest.raises(ValueError, match="AdaptiveSteps"):
        ODESolve(solver=diffrax.Euler())
