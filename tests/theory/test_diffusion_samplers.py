"""Tests for theory/diffusion_samplers.py: the reverse SDE, the probability-flow ODE, DDPM
and DDIM with exact scores, checked against closed forms for Gaussian data.

For Gaussian data N(mu, S) every marginal of the VP SDE is Gaussian,
p_t = N(m_t mu, S_t), S_t = m_t^2 S + s_t^2 I, and S_t shares the eigenvectors U of S
(eigenvalues v_j(t) = m_t^2 lambda_j + s_t^2). The probability-flow ODE then keeps each
eigen-coordinate of (x - m_t mu) proportional to sqrt(v_j(t)) (differentiate: both
satisfy dy/dt = (-h + g^2 / (2 v_j)) y), so its flow map from T to t is known exactly,

    x_t = m_t mu + U diag( sqrt(v_j(t) / v_j(T)) ) U^T (x_T - m_T mu),

and the Euler-Maruyama and DDPM chains are affine-Gaussian recursions whose output laws
follow from their moment recursions. Statistical tests use fixed keys and state their
false-failure rate (FFR) over the draw of the key.
"""

import math

import diffrax
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given

import theory
from theory.ddpm import ExactEpsilon, LinearBetaSchedule
from theory.diffusion_samplers import (
    AdaptiveProbabilityFlowSampler,
    DDIMSampler,
    DDPMSampler,
    DiffusionModel,
    DiscreteEpsilon,
    EpsilonFromScore,
    ProbabilityFlowSampler,
    ReverseSDESampler,
    ScoreFromEpsilon,
    Steps,
    Tolerance,
    VirtualBrownianMotion,
    adaptive_probability_flow,
    ddim,
    ddpm_ancestral,
    drift_evaluations,
    probability_flow,
    respaced_timesteps,
    reverse_sde,
)
from theory.sde import VESDE, VPSDE, ExactMarginalScore, SubVPSDE

Z = 5.0  # two-sided normal tail 5.7e-7 per check
MEAN = np.array([1.0, -0.5])
COV = np.array([[0.5, 0.2], [0.2, 0.3]])
SDE = VPSDE()
T_END = 1e-5  # s(t_end)^2 = 1e-6: p_{t_end} and the data law differ by < 2e-6


@pytest.fixture(scope="module")
def data():
    return theory.Gaussian(jnp.asarray(MEAN), jnp.asarray(COV))


def _eigen():
    values, vectors = np.linalg.eigh(COV)
    return values, vectors


def _variances(t):
    m, s = float(SDE.marginal_scale(t)), float(SDE.marginal_std(t))
    values, _ = _eigen()
    return m, m**2 * values + s**2


def _flow_map(x_T, t_end=T_END):
    """The exact probability-flow map from t = T to t_end (module docstring)."""
    m_T, v_T = _variances(SDE.t_max)
    m_e, v_e = _variances(t_end)
    _, vectors = _eigen()
    matrix = vectors @ np.diag(np.sqrt(v_e / v_T)) @ vectors.T
    return m_e * MEAN + (np.asarray(x_T) - m_T * MEAN) @ matrix.T, matrix


def _check_moments(samples, mean, cov, extra_mean=0.0, extra_cov=0.0):
    """Sample mean and covariance against (mean, cov): Z standard errors of the Gaussian
    estimators (Var S_ij = (S_ii S_jj + S_ij^2) / n) plus a stated allowance."""
    samples = np.asarray(samples, np.float64)
    n = samples.shape[0]
    mean_se = np.sqrt(np.diag(cov) / n)
    np.testing.assert_array_less(np.abs(samples.mean(axis=0) - mean), Z * mean_se + extra_mean)
    cov_se = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
    np.testing.assert_array_less(np.abs(np.cov(samples.T) - cov), Z * cov_se + extra_cov)


# --------------------------------------------------------------------------------------
# Probability-flow ODE.


def test_adaptive_ode_follows_the_exact_flow_map(data, key):
    """Per point, Tsit5 at rtol = atol = 1e-8 lands on the closed-form flow map.

    Tolerance: in reverse time the ODE contracts each eigen-coordinate (its rate
    (beta / 2)(1 - 1 / v_j) <= 0 since v_j <= 1 here), so the global error is at most the
    sum of the accepted local errors, each <= atol + rtol |x|: tolerance =
    steps * (atol + rtol * max|x|), steps = (NFE - 1) / 6 from the reported NFE.
    """
    x_T = jax.random.normal(key, (64, 2), jnp.float64)
    out = adaptive_probability_flow(SDE, ExactMarginalScore(SDE, data), x_T, rtol=1e-8, atol=1e-8, t_end=T_END)
    expected, _ = _flow_map(x_T)
    steps = (np.asarray(out.nfe) - 1) / 6
    bound = steps * (1e-8 + 1e-8 * np.max(np.abs(expected)))
    error = np.max(np.abs(np.asarray(out.samples) - expected), axis=1)
    np.testing.assert_array_less(error, bound)
    assert np.all(np.asarray(out.nfe) > 1)


@pytest.mark.parametrize("solver, order", [(diffrax.Euler(), 1.0), (diffrax.Heun(), 2.0)], ids=["euler", "heun"])
def test_fixed_step_ode_converges_at_its_order(data, key, solver, order):
    """Max error to the exact flow map at n = 200..1600 steps, log-log slope fitted: the
    solver's order (Euler 1, Heun 2). Steps this fine are in the asymptotic regime
    (beta_max dt <= 0.1); tolerance 0.25 on the slope absorbs the remaining curvature."""
    x_T = jax.random.normal(key, (32, 2), jnp.float64)
    expected, _ = _flow_map(x_T, t_end=1e-3)
    steps = np.array([200, 400, 800, 1600])
    errors = [
        np.max(np.abs(np.asarray(probability_flow(SDE, ExactMarginalScore(SDE, data), x_T, n_steps=int(n),
                                                    t_end=1e-3, solver=solver).samples) - expected))
        for n in steps
    ]
    slope = np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert abs(slope + order) < 0.25, (slope, errors)


def test_probability_flow_maps_the_prior_to_the_data_law(data, key):
    """20,000 prior draws N(0, I) through the ODE (Tsit5, rtol = atol = 1e-7): mean and
    covariance of the data law N(mu, S).

    Tolerance: Z standard errors (FFR 5.7e-7 per check, 5 checks) plus the exact
    distance between the data law and the pushforward of the prior, which is
    N(m_e mu - A m_T mu, A A^T) with A the flow map's matrix (the prior is p_T up to
    m_T = 0.0066 in the mean scale), plus the solver bound of the test above.
    """
    n = 20_000
    x_T = SDE.prior(2).sample(key, n).astype(jnp.float64)
    out = adaptive_probability_flow(SDE, ExactMarginalScore(SDE, data), x_T, rtol=1e-7, atol=1e-7, t_end=T_END)
    m_T, _ = _variances(SDE.t_max)
    m_e, _ = _variances(T_END)
    _, matrix = _flow_map(np.zeros((1, 2)))
    pushed_mean = m_e * MEAN - matrix @ (m_T * MEAN)
    pushed_cov = matrix @ matrix.T
    solver = float(np.max(np.asarray(out.nfe))) / 6 * 1e-7 * 10
    assert np.max(np.abs(pushed_mean - MEAN)) < 0.02 and np.max(np.abs(pushed_cov - COV)) < 1e-3
    _check_moments(out.samples, MEAN, COV, extra_mean=np.abs(pushed_mean - MEAN) + solver,
                   extra_cov=np.abs(pushed_cov - COV) + 2 * solver)


def test_trajectories_start_at_the_prior_points_and_end_at_the_samples(data, key):
    x_T = jax.random.normal(key, (5, 2), jnp.float64)
    score = ExactMarginalScore(SDE, data)
    with_path = probability_flow(SDE, score, x_T, n_steps=20, t_end=1e-3, save_path=True)
    paths = with_path.path
    final = probability_flow(SDE, score, x_T, n_steps=20, t_end=1e-3).samples
    assert probability_flow(SDE, score, x_T, n_steps=20, t_end=1e-3).path is None
    assert paths.xs.shape == (5, 21, 2)
    np.testing.assert_array_equal(with_path.samples, paths.xs[:, -1])
    assert np.all(np.asarray(with_path.nfe) == 2 * 20)  # Heun: two drift evaluations a step
    np.testing.assert_allclose(paths.ts[0], 1.0)
    np.testing.assert_allclose(paths.ts[-1], 1e-3, rtol=1e-9)
    assert np.all(np.diff(np.asarray(paths.ts)) < 0)
    np.testing.assert_allclose(paths.xs[:, 0], x_T)
    np.testing.assert_allclose(paths.xs[:, -1], final, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------------------
# Reverse SDE.


def test_reverse_sde_path_ends_at_the_same_samples_from_the_same_noise(data, key):
    """save_path changes what is kept, not the solve: same key, same Brownian increments."""
    x_T, noise = jax.random.normal(key, (5, 2), jnp.float64), jax.random.key(3)
    score = ExactMarginalScore(SDE, data)
    with_path = reverse_sde(SDE, score, x_T, key=noise, n_steps=16, t_end=1e-3, save_path=True)
    final = reverse_sde(SDE, score, x_T, key=noise, n_steps=16, t_end=1e-3)
    assert with_path.path.xs.shape == (5, 17, 2) and final.path is None
    np.testing.assert_allclose(with_path.path.xs[:, 0], x_T)
    # Same steps in the same order; only the traced vs static step count differs, so
    # the two agree to float64 rounding of dt = t1 / n_steps accumulated over 16 steps.
    np.testing.assert_allclose(with_path.samples, final.samples, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(with_path.nfe, final.nfe)

def _euler_maruyama_law(n_steps: int, t_end: float):
    """Mean and covariance of the Euler-Maruyama chain for the reverse VP SDE with the
    exact Gaussian score, from x_T ~ N(0, I): per eigen-coordinate y of x,
    y <- y + (a y + c) dtau + g sqrt(dtau) z with a = h - g^2 / v_j, c = g^2 (U^T m_t mu)_j / v_j
    evaluated at the left end of each step (the scheme's definition), so
    M <- (1 + a dtau) M + c dtau and V <- (1 + a dtau)^2 V + g^2 dtau exactly."""
    values, vectors = _eigen()
    projected_mean = vectors.T @ MEAN
    length = SDE.t_max - t_end
    dtau = length / n_steps
    mean, variance = np.zeros(2), np.ones(2)
    for k in range(n_steps):
        t = SDE.t_max - k * dtau
        m, v = _variances(t)
        beta = float(SDE.beta(t))
        a = beta / 2 - beta / v
        c = beta * m * projected_mean / v
        mean, variance = (1 + a * dtau) * mean + c * dtau, (1 + a * dtau) ** 2 * variance + beta * dtau
    return vectors @ mean, vectors @ np.diag(variance) @ vectors.T


def test_reverse_sde_maps_the_prior_to_the_data_law_in_distribution(data, key):
    """Euler-Maruyama (diffrax, 500 steps) from 20,000 prior draws: the samples have the
    law of the scheme (Z standard errors, FFR 5.7e-7 per check, 5 checks), whose exact
    distance to the data law (moment recursion above; it contains the prior mismatch
    and the O(dt) weak error) is the allowance when comparing with N(mu, S) directly,
    and is itself small."""
    n, steps = 20_000, 500
    x_T = SDE.prior(2).sample(jax.random.fold_in(key, 1), n).astype(jnp.float64)
    out = reverse_sde(SDE, ExactMarginalScore(SDE, data), x_T, key=key, n_steps=steps, t_end=T_END)
    scheme_mean, scheme_cov = _euler_maruyama_law(steps, T_END)
    bias_mean, bias_cov = np.abs(scheme_mean - MEAN), np.abs(scheme_cov - COV)
    assert np.max(bias_mean) < 0.02 and np.max(bias_cov) < 0.02, (bias_mean, bias_cov)
    _check_moments(out.samples, scheme_mean, scheme_cov)
    _check_moments(out.samples, MEAN, COV, extra_mean=bias_mean, extra_cov=bias_cov)
    np.testing.assert_array_equal(out.nfe, steps)


@pytest.mark.slow
def test_shark_converges_strongly_faster_than_euler_maruyama(data, key):
    """Pathwise (strong) error against a 3,200-step ShARK solution driven by the SAME
    Brownian path (a VirtualBrownianTree at one fixed tolerance, with space-time Lévy
    area for both solvers, so every step count of either reads one path): fitted slopes
    ~ -1 for Euler-Maruyama (additive noise: strong order 1) and ~ -1.5 for ShARK; we
    assert EM's is within 0.25 of -1 and ShARK's steeper by at least 0.25 (steps are
    in the asymptotic regime, beta_max dt <= 0.1). Slow: the tree costs ~13 PRNG levels
    per increment."""
    x_T = jax.random.normal(jax.random.fold_in(key, 2), (16, 2), jnp.float64)
    score = ExactMarginalScore(SDE, data)
    fine = 3200
    steps = np.array([100, 200, 400, 800])

    def run(solver, n):
        # tol = tol_fraction * dt is the same for every n: one tree, one path.
        brownian = VirtualBrownianMotion(tol_fraction=float(0.5 * n / fine), space_time_levy_area=True)
        return np.asarray(reverse_sde(SDE, score, x_T, key=key, n_steps=int(n), t_end=1e-3, solver=solver,
                                      brownian=brownian).samples)

    reference = run(diffrax.ShARK(), fine)
    slopes = {}
    for name, solver in (("em", diffrax.Euler()), ("shark", diffrax.ShARK())):
        errors = [np.mean(np.linalg.norm(run(solver, n) - reference, axis=1)) for n in steps]
        slopes[name] = np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert abs(slopes["em"] + 1.0) < 0.25, slopes
    assert slopes["shark"] < slopes["em"] - 0.25, slopes


# --------------------------------------------------------------------------------------
# DDPM and DDIM.


def _ddpm_law(schedule):
    """Mean and covariance of DDPM ancestral sampling (S = T) with the exact Gaussian
    epsilon, from N(0, I): eps*(x, i) = b (x - a mu) / (a^2 lambda + b^2) per eigen-coordinate,
    x <- (x - beta / b eps*) / sqrt(1 - beta) + sqrt(beta) z (no noise at i = 1)."""
    values, vectors = _eigen()
    projected_mean = vectors.T @ MEAN
    alpha_bars, one_minus = schedule.alpha_bars(), schedule.one_minus_alpha_bars()
    betas = np.concatenate([[0.0], schedule.betas()])
    mean, variance = np.zeros(2), np.ones(2)
    for i in range(schedule.n_steps, 0, -1):
        a, b = math.sqrt(alpha_bars[i]), math.sqrt(one_minus[i])
        slope = b / (a**2 * values + b**2)  # eps* = slope * (x - a mu)
        factor = (1 - betas[i] / b * slope) / math.sqrt(1 - betas[i])
        shift = (betas[i] / b * slope * a * projected_mean) / math.sqrt(1 - betas[i])
        mean = factor * mean + shift
        variance = factor**2 * variance + (betas[i] if i > 1 else 0.0)
    return vectors @ mean, vectors @ np.diag(variance) @ vectors.T


def test_ddpm_ancestral_maps_the_prior_to_the_data_law_in_distribution(data, key):
    """DDPM (T = 1000, exact epsilon) from 20,000 prior draws: the law of the chain
    (Z standard errors; FFR 5.7e-7 per check, 10 checks), which is within its exact,
    small bias of the data law."""
    schedule = LinearBetaSchedule()
    x_T = jax.random.normal(jax.random.fold_in(key, 3), (20_000, 2), jnp.float64)
    out = ddpm_ancestral(schedule, ExactEpsilon(schedule, data), x_T, key=key)
    chain_mean, chain_cov = _ddpm_law(schedule)
    bias_mean, bias_cov = np.abs(chain_mean - MEAN), np.abs(chain_cov - COV)
    assert np.max(bias_mean) < 0.01 and np.max(bias_cov) < 0.01, (bias_mean, bias_cov)
    _check_moments(out.samples, chain_mean, chain_cov)
    _check_moments(out.samples, MEAN, COV, extra_mean=bias_mean, extra_cov=bias_cov)
    np.testing.assert_array_equal(out.nfe, 1000)


def test_ddim_converges_to_the_probability_flow_map(data, key):
    """DDIM (eta = 0) with S respaced steps is a first-order discretisation of the
    probability-flow ODE (Song, Meng & Ermon 2021, Sec. 4.3): its distance to the exact
    flow map of the DDPM marginals (the VP flow map with alpha_bar_T in place of m_T^2)
    decays with fitted slope -1 +- 0.25 for S = 50..400."""
    schedule = LinearBetaSchedule()
    x_T = jax.random.normal(jax.random.fold_in(key, 4), (32, 2), jnp.float64)
    values, vectors = _eigen()
    a_T, b_T = math.sqrt(schedule.alpha_bars()[-1]), math.sqrt(schedule.one_minus_alpha_bars()[-1])
    v_T = a_T**2 * values + b_T**2
    # Ends at alpha_bar_0 = 1: the data law itself (variance values).
    matrix = vectors @ np.diag(np.sqrt(values / v_T)) @ vectors.T
    expected = MEAN + (np.asarray(x_T) - a_T * MEAN) @ matrix.T
    steps = np.array([50, 100, 200, 400])
    errors = [np.max(np.abs(np.asarray(ddim(schedule, ExactEpsilon(schedule, data), x_T, n_steps=int(s)).samples)
                            - expected)) for s in steps]
    slope = np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert abs(slope + 1.0) < 0.25, (slope, errors)


def test_respaced_timesteps():
    assert list(respaced_timesteps(4, 1000)) == [0, 250, 500, 750, 1000]
    steps = respaced_timesteps(7, 1000)
    assert steps[0] == 0 and steps[-1] == 1000 and np.all(np.diff(steps) > 0)
    np.testing.assert_array_equal(respaced_timesteps(1000, 1000), np.arange(1001))


# --------------------------------------------------------------------------------------
# Cost accounting, batching, conversions, validation.


def test_reported_nfe_equals_counted_score_calls(data):
    """NFE = the number of times the score is called, counted by a host callback, for an
    Euler-Maruyama and a ShARK SDE, a Heun ODE and the adaptive Tsit5 (FSAL, rejected
    steps included)."""
    calls = {"n": 0}

    def count(_):
        calls["n"] += 1

    exact = ExactMarginalScore(SDE, data)

    def score(x, t):
        jax.debug.callback(count, t)
        return exact(x, t)

    x = jnp.asarray([[0.3, -1.2]], jnp.float64)
    runs = {
        "euler_maruyama": lambda: reverse_sde(SDE, score, x, key=jax.random.key(1), n_steps=7),
        "shark": lambda: reverse_sde(SDE, score, x, key=jax.random.key(1), n_steps=7, solver=diffrax.ShARK()),
        "heun": lambda: probability_flow(SDE, score, x, n_steps=7, solver=diffrax.Heun()),
        "tsit5": lambda: adaptive_probability_flow(SDE, score, x, rtol=1e-6, atol=1e-6),
    }
    for name, sample in runs.items():
        calls["n"] = 0
        out = jax.block_until_ready(sample())
        jax.effects_barrier()
        assert int(out.nfe[0]) == calls["n"], name
    assert drift_evaluations(diffrax.Tsit5()) == (6, 1) and drift_evaluations(diffrax.Dopri5()) == (6, 1)
    assert drift_evaluations(diffrax.SRA1()) == (2, 0)


def test_samples_do_not_depend_on_the_rest_of_the_batch(data, key):
    """Each row is its own solve: changing the other rows of the batch leaves a row's
    sample unchanged (deterministic samplers; same shapes as the tests above, so no
    recompilation; equality up to float64 reassociation)."""
    score = ExactMarginalScore(SDE, data)
    schedule = LinearBetaSchedule()
    for n, sample in (
        (32, lambda y: probability_flow(SDE, score, y, n_steps=200, t_end=1e-3, solver=diffrax.Heun()).samples),
        (64, lambda y: adaptive_probability_flow(SDE, score, y, rtol=1e-8, atol=1e-8, t_end=T_END).samples),
        (32, lambda y: ddim(schedule, ExactEpsilon(schedule, data), y, n_steps=50).samples),
    ):
        x = jax.random.normal(key, (n, 2), jnp.float64)
        other = x.at[8:].set(3.0 * jax.random.normal(jax.random.fold_in(key, 9), (n - 8, 2), jnp.float64))
        np.testing.assert_allclose(sample(x)[:8], sample(other)[:8], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("sde", [VPSDE(), SubVPSDE(), VESDE()], ids=["vp", "subvp", "ve"])
@given(i=st.integers(1, 600), x=st.tuples(st.floats(-4, 4), st.floats(-4, 4)))
def test_discrete_epsilon_reads_a_continuous_predictor_at_the_matching_noise_level(sde, i, x):
    """The exact continuous epsilon of any SDE, read through DiscreteEpsilon at step i,
    is the exact DDPM epsilon (same noise-to-signal ratio, same noise): for i <= 600 the
    matching time lies inside [0, 1] for all three SDEs (VE: ratio <= sigma_max)."""
    target = theory.gaussian_grid(4)
    schedule = LinearBetaSchedule()
    continuous = EpsilonFromScore(sde, ExactMarginalScore(sde, target))
    x = jnp.asarray(x, jnp.float64)
    np.testing.assert_allclose(DiscreteEpsilon(sde, schedule, continuous)(x, i), ExactEpsilon(schedule, target)(x, i),
                               rtol=1e-7, atol=1e-9)


@given(t=st.floats(1e-3, 1.0), x=st.tuples(st.floats(-4, 4), st.floats(-4, 4)))
def test_score_and_epsilon_conversions_are_inverse(t, x):
    target = theory.gaussian_grid(2)
    score = ExactMarginalScore(SDE, target)
    x, t = jnp.asarray(x, jnp.float64), jnp.asarray(t, jnp.float64)
    np.testing.assert_allclose(ScoreFromEpsilon(SDE, EpsilonFromScore(SDE, score))(x, t), score(x, t), rtol=1e-12)


ALL_SAMPLERS = [
    ReverseSDESampler(solver=diffrax.Euler()),
    ReverseSDESampler(solver=diffrax.ShARK()),
    ReverseSDESampler(solver=diffrax.SRA1(), brownian=VirtualBrownianMotion()),
    ProbabilityFlowSampler(solver=diffrax.Euler()),
    ProbabilityFlowSampler(solver=diffrax.Heun()),
    AdaptiveProbabilityFlowSampler(solver=diffrax.Tsit5()),
    AdaptiveProbabilityFlowSampler(solver=diffrax.Dopri5()),
    DDPMSampler(),
    DDIMSampler(eta=0.0),
    DDIMSampler(eta=1.0),
]


def _sampler_id(sampler):
    solver = getattr(sampler, "solver", None)
    eta = getattr(sampler, "eta", None)
    return "-".join(str(part) for part in (type(sampler).__name__, type(solver).__name__ if solver else None, eta) if part is not None)


@pytest.mark.parametrize("sampler", ALL_SAMPLERS, ids=_sampler_id)
def test_every_sampler_honours_the_interface(data, key, sampler):
    """One protocol for every sampler component: finite samples of the batch's shape at
    a typed budget, and an NFE that matches it (fixed-step: evaluations per step x
    steps; adaptive: > 1, and more for a tighter tolerance)."""
    schedule = LinearBetaSchedule()
    model = DiffusionModel(SDE, ExactMarginalScore(SDE, data), schedule, ExactEpsilon(schedule, data))
    x = jax.random.normal(key, (16, 2), jnp.float64)
    if isinstance(sampler, AdaptiveProbabilityFlowSampler):
        loose = sampler.sample(model, x, key=key, budget=Tolerance(1e-2))
        tight = sampler.sample(model, x, key=key, budget=Tolerance(1e-4, 1e-4))
        for out in (loose, tight):
            assert out.samples.shape == (16, 2) and np.all(np.isfinite(np.asarray(out.samples)))
        assert np.all(np.asarray(loose.nfe) > 1)
        assert np.mean(np.asarray(tight.nfe)) > np.mean(np.asarray(loose.nfe))
        with pytest.raises(TypeError, match=r"budget must be a Tolerance, got Steps\(n=5\)"):
            sampler.sample(model, x, key=key, budget=Steps(5))
    else:
        steps = 10 // sampler.evaluations_per_step
        out = sampler.sample(model, x, key=key, budget=Steps(steps))
        assert out.samples.shape == (16, 2) and np.all(np.isfinite(np.asarray(out.samples)))
        per_step, initial = (1, 0) if not hasattr(sampler, "solver") else drift_evaluations(sampler.solver)
        assert np.all(np.asarray(out.nfe) == initial + per_step * steps)
        with pytest.raises(TypeError, match=r"budget must be a Steps, got"):
            sampler.sample(model, x, key=key, budget=Tolerance(1e-3))


def test_budgets_are_typed_and_checked():
    assert Steps(5).n == 5 and Steps(n=7).n == 7
    assert (Tolerance(1e-3).rtol, Tolerance(1e-3).atol) == (1e-3, 1e-3)
    assert (Tolerance(1e-3, 1e-6).rtol, Tolerance(rtol=1e-3, atol=1e-6).atol) == (1e-3, 1e-6)
    assert Steps(5) == Steps(5) and hash(Steps(5)) == hash(Steps(5))
    with pytest.raises(TypeError, match=r"n must be an integer >= 1, got 5\.0"):
        Steps(5.0)
    with pytest.raises(ValueError, match=r"n must be an integer >= 1, got 0"):
        Steps(0)
    with pytest.raises(ValueError, match=r"rtol must be a finite number > 0, got 0\.0"):
        Tolerance(0.0)
    with pytest.raises(ValueError, match=r"atol must be a finite number > 0, got -1\.0"):
        Tolerance(1e-3, -1.0)


def test_sampler_components_run_at_their_budgets(data, key):
    """The config-facing samplers, one run each at an explicit budget."""
    schedule = LinearBetaSchedule()
    model = DiffusionModel(SDE, ExactMarginalScore(SDE, data), schedule, ExactEpsilon(schedule, data))
    x = jax.random.normal(key, (8, 2), jnp.float64)
    assert ReverseSDESampler(solver=diffrax.ShARK()).evaluations_per_step == 2
    assert ProbabilityFlowSampler(solver=diffrax.Heun()).evaluations_per_step == 2
    assert DDPMSampler().evaluations_per_step == 1
    out = DDIMSampler().sample(model, x, key=key, budget=Steps(10))
    assert out.samples.shape == (8, 2) and np.all(np.asarray(out.nfe) == 10)
    with pytest.raises(ValueError, match=r"n_steps must be an integer <= 1000, got 1001"):
        DDPMSampler().sample(model, x, key=key, budget=Steps(1001))
    with pytest.raises(ValueError, match=r"eta must be a finite number in \[0, 1\], got 1\.5"):
        DDIMSampler(eta=1.5)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda s, x: reverse_sde(SDE, s, x, key=jax.random.key(0), n_steps=0), "n_steps"),
        (lambda s, x: reverse_sde(SDE, s, x, key=jax.random.key(0), n_steps=10, t_end=1.0), "t_end"),
        (lambda s, x: probability_flow(SDE, s, x[0], n_steps=10), "x_init"),
        (lambda s, x: adaptive_probability_flow(SDE, s, x, rtol=-1.0), "rtol"),
        (lambda s, x: adaptive_probability_flow(SDE, s, x, atol=float("nan")), "atol"),
        (lambda s, x: ddim(LinearBetaSchedule(), None, x, n_steps=2000), "n_steps"),
        (lambda s, x: ddim(LinearBetaSchedule(), None, x, n_steps=10, eta=2.0), "eta"),
        (lambda s, x: probability_flow(SDE, s, x, n_steps=10, solver=diffrax.ImplicitEuler()), "solver"),
    ],
)
def test_bad_arguments_are_named_before_any_compute(data, call, match):
    x = jnp.zeros((4, 2))
    with pytest.raises(ValueError, match=match):
        call(ExactMarginalScore(SDE, data), x)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda s, x: reverse_sde(SDE, s, x, key=None, n_steps=10), r"key must be a JAX PRNG key, got None"),
        (lambda s, x: reverse_sde(SDE, s, x, key=jax.random.key(0), n_steps=10.0), r"n_steps must be an integer >= 1, got 10\.0"),
        (lambda s, x: reverse_sde("vp", s, x, key=jax.random.key(0), n_steps=10), r"sde must be an AbstractSDE, got 'vp'"),
        (lambda s, x: probability_flow(SDE, s, x.astype(jnp.int32), n_steps=10), r"x_init must be floating point, got dtype int32"),
        (lambda s, x: ddpm_ancestral(LinearBetaSchedule(), None, x, key=None), r"key must be a JAX PRNG key, got None"),
        (lambda s, x: ddim(LinearBetaSchedule(), None, x, n_steps=10, eta=0.5), r"key must be a JAX PRNG key, got None"),
        (lambda s, x: ddim(LinearBetaSchedule(), None, x, n_steps=10, eta="0"), r"eta must be a finite number in \[0, 1\], got '0'"),
        (lambda s, x: probability_flow(SDE, s, x, n_steps=10, save_path="yes"), r"save_path must be true or false, got 'yes'"),
    ],
)
def test_arguments_of_the_wrong_kind_are_type_errors(data, call, match):
    x = jnp.zeros((4, 2))
    with pytest.raises(TypeError, match=match):
        call(ExactMarginalScore(SDE, data), x)
