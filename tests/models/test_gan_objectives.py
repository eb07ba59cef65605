"""Tests for models/gan_objectives.py: each objective's optimum is theory's, and its value the divergence.

Exact checks only (no training; the trained checks live in test_gan_training.py):
  * v* = objective.optimal_raw_output(p, q) minimises the pointwise loss
    p(x) l_real(v) + q(x) l_fake(v) (first-order condition and perturbation);
  * the bound at v* equals objective.exact_divergence(p, q) (the theory function), and
    any other raw output gives less;
  * the f-GAN activations map R into dom f* of theory's generators, f*(g(v)) agrees with
    theory's conjugate, and g(v*) is theory's optimal critic f'(p / q).
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import theory
from models.critics import BjorckGroupSortSpec
from models.gan_objectives import (
    FGAN,
    TABLE2_ACTIVATIONS,
    WGAN,
    AbstractGANObjective,
    Hinge,
    LeastSquares,
    Minimax,
    NonSaturating,
    discriminator_bound,
    table2_activation,
)
from models.gan_training import MLPDiscriminatorSpec

EPS64 = float(np.finfo(np.float64).eps)

DENSITY_OBJECTIVES = [
    Minimax(),
    NonSaturating(),
    LeastSquares(),
    LeastSquares(fake_label=0.0, real_label=1.0, generator_target=1.0),
    Hinge(),
] + [FGAN(activation.divergence) for activation in TABLE2_ACTIVATIONS]
IDS = [f"{type(o).__name__}-{getattr(o, 'divergence', getattr(o, 'fake_label', ''))}" for o in DENSITY_OBJECTIVES]
SMOOTH = [o for o in DENSITY_OBJECTIVES if not isinstance(o, Hinge)]

means = st.floats(-1.5, 1.5)
# Standard deviations in [0.9, 1.2]: 2 s_q^2 > s_p^2 keeps Pearson chi^2(P || Q) finite.
stds = st.floats(0.9, 1.2)


def _gaussian(mean, std):
    return theory.Gaussian(jnp.array([mean]), jnp.array([[std**2]]))


POINTS = st.lists(st.floats(-4, 4), min_size=8, max_size=8)  # one shape: one compilation
DELTAS = jnp.array([-1.0, -0.1, -1e-3, 1e-3, 0.1, 1.0])


@eqx.filter_jit
def _pointwise(objective, p, q, points):
    """At x: v*, the slope and curvature of phi(v) = p l_r(v) + q l_f(v) at v*, the size
    of its two terms and of their slopes, and phi(v* + delta) for each delta in DELTAS."""
    dp, dq = jnp.exp(p.log_prob(points)), jnp.exp(q.log_prob(points))
    v_star = objective.optimal_raw_output(p, q)(points)

    def phi(v):  # separable in the points: gradients are pointwise
        return dp * objective.real_loss(v) + dq * objective.fake_loss(v)

    def total(v):
        return jnp.sum(phi(v))

    slope = jax.grad(total)(v_star)
    curvature = jax.grad(lambda v: jnp.sum(jax.grad(total)(v)))(v_star)
    term_slopes = jnp.abs(dp * jax.vmap(jax.grad(objective.real_loss))(v_star)) + jnp.abs(
        dq * jax.vmap(jax.grad(objective.fake_loss))(v_star)
    )
    term_sizes = jnp.abs(dp * objective.real_loss(v_star)) + jnp.abs(dq * objective.fake_loss(v_star))
    perturbed = jax.vmap(lambda d: phi(v_star + d))(DELTAS)
    return v_star, slope, curvature, term_slopes, phi(v_star), term_sizes, perturbed


@pytest.mark.parametrize("objective", SMOOTH, ids=[IDS[DENSITY_OBJECTIVES.index(o)] for o in SMOOTH])
@given(mp=means, sp=stds, mq=means, sq=stds, x=POINTS)
def test_the_optimal_raw_output_satisfies_the_first_order_condition(objective, mp, sp, mq, sq, x):
    v_star, slope, curvature, term_slopes, *_ = _pointwise(objective, _gaussian(mp, sp), _gaussian(mq, sq), jnp.array(x)[:, None])
    # d/dv [p l_r + q l_f] at v* vanishes up to rounding: v* itself carries ~eps (|v*| + 1)
    # of error (e.g. 1 - sigmoid(log p/q) in LSGAN's optimum), which the slope turns
    # into curvature * that error, and the two terms round at eps of their size.
    tolerance = 64 * EPS64 * (term_slopes + np.abs(curvature) * (np.abs(v_star) + 1.0)) + 1e-300
    np.testing.assert_array_less(np.abs(slope), tolerance)


@pytest.mark.parametrize("objective", DENSITY_OBJECTIVES, ids=IDS)
@given(mp=means, sp=stds, mq=means, sq=stds, x=POINTS)
def test_perturbing_the_optimal_raw_output_never_lowers_the_pointwise_loss(objective, mp, sp, mq, sq, x):
    *_, at_optimum, term_sizes, perturbed = _pointwise(objective, _gaussian(mp, sp), _gaussian(mq, sq), jnp.array(x)[:, None])
    # Rounding of phi: a few eps of its two terms' size (f-GAN losses can be negative, so
    # the slack is absolute); the convex phi rises by ~ curvature * delta^2 / 2 instead.
    assert np.all(np.asarray(perturbed) >= np.asarray(at_optimum - 16 * EPS64 * term_sizes))


# Quadrature with 16 panels of 8 nodes (x2 for the error estimate) resolves these
# analytic integrands to ~1e-12 and keeps each example cheap; few examples per objective.
COARSE = theory.Quadrature(panels=16)


@pytest.mark.parametrize("objective", DENSITY_OBJECTIVES, ids=IDS)
@settings(max_examples=4)
@given(mp=means, sp=stds, mq=means, sq=stds, shift=st.floats(-0.5, 0.5), tilt=st.floats(-0.3, 0.3))
def test_the_bound_is_the_theory_divergence_at_the_optimum_and_below_it_elsewhere(objective, mp, sp, mq, sq, shift, tilt):
    p, q = _gaussian(mp, sp), _gaussian(mq, sq)
    optimum = objective.optimal_raw_output(p, q)
    exact = objective.exact_divergence(p, q, method=COARSE)
    at_optimum = discriminator_bound(objective, optimum, p, q, method=COARSE)
    elsewhere = discriminator_bound(objective, lambda x: optimum(x) + shift + tilt * jnp.tanh(x[:, 0]), p, q, method=COARSE)
    # Each quadrature reports |I(n) - I(2n)| (hinge's integrand jumps where p = q, hence
    # its larger error); float64 summation over 256 nodes adds ~1e2 eps of the largest term.
    rounding = 1e3 * EPS64 * max(1.0, abs(exact.value))
    assert abs(at_optimum.value - exact.value) <= at_optimum.error + exact.error + rounding, (at_optimum, exact)
    # Variational inequality: B(v) <= Div for every v.
    assert elsewhere.value <= exact.value + elsewhere.error + exact.error + rounding


def test_the_divergences_are_the_named_theory_functions():
    p, q = _gaussian(0.3, 1.0), _gaussian(-0.4, 1.1)
    assert Minimax().exact_divergence(p, q, method=COARSE).value == theory.js(p, q, method=COARSE).value
    assert FGAN(theory.KullbackLeibler()).exact_divergence(p, q, method=COARSE).value == theory.f_divergence(theory.KullbackLeibler(), p, q, method=COARSE).value
    assert Hinge().exact_divergence(p, q, method=COARSE).value == theory.f_divergence(theory.TotalVariation(), p, q, method=COARSE).value
    # LSGAN at v* (a = -1, b = 1, c = 0): the generator's 2 C is 2 chi^2(Q || (P + Q)/2)
    # (Mao et al. 2017, Thm. 1, as in theory.lsgan_generator_value).
    two_c = 2 * theory.lsgan_generator_value(theory.lsgan_optimal_discriminator(p, q), p, q, method=COARSE).value
    assert two_c == pytest.approx(2 * LeastSquares().exact_divergence(p, q, method=COARSE).value, rel=1e-12)
    # The minimax bound is (V + log 4) / 2 with V theory's GAN value.
    value = theory.gan_value(theory.optimal_discriminator(p, q).logit, p, q, logit=True, method=COARSE).value
    bound = discriminator_bound(Minimax(), Minimax().optimal_raw_output(p, q), p, q, method=COARSE).value
    assert bound == pytest.approx((value + math.log(4.0)) / 2, rel=1e-12)


@pytest.mark.parametrize("activation", TABLE2_ACTIVATIONS, ids=[type(a).__name__ for a in TABLE2_ACTIVATIONS])
def test_the_fgan_bound_is_theory_f_gan_lower_bound_of_the_activated_critic(activation):
    p, q = _gaussian(0.3, 1.0), _gaussian(-0.4, 1.1)
    objective = FGAN(activation.divergence)

    def raw(x):
        return 0.5 * jnp.sin(x[:, 0]) - 0.2

    ours = discriminator_bound(objective, raw, p, q)
    theirs = theory.f_gan_lower_bound(activation.divergence, lambda x: activation(raw(x)), p, q)
    assert ours.value == pytest.approx(theirs.value, rel=1e-12, abs=1e-14)


# --------------------------------------------------------------------------------------
# f-GAN output activations.


@pytest.mark.parametrize("activation", TABLE2_ACTIVATIONS, ids=[type(a).__name__ for a in TABLE2_ACTIVATIONS])
@given(v=st.floats(-30.0, 30.0))
def test_each_activation_maps_into_the_domain_of_theory_conjugate(activation, v):
    v = jnp.float64(v)
    u = activation(v)
    conjugate = activation.divergence.conjugate(u)
    # theory's f* is +inf outside dom f*: finiteness is membership.
    assert np.isfinite(float(conjugate))
    # f*(g(v)) in closed form equals theory's f* at g(v). The composed path rounds u by
    # ~eps |u| and f* amplifies that by |f*'(u)| (first-order error propagation), plus
    # its own rounding of ~eps |f*(u)|.
    derivative = jax.grad(activation.divergence.conjugate)(u)
    tolerance = 8 * EPS64 * (abs(float(u)) * abs(float(derivative)) + abs(float(conjugate)) + 1.0)
    assert abs(float(activation.conjugate_at(v)) - float(conjugate)) <= tolerance


@pytest.mark.parametrize("activation", TABLE2_ACTIVATIONS, ids=[type(a).__name__ for a in TABLE2_ACTIVATIONS])
@given(log_t=st.floats(-20.0, 20.0))
def test_the_activated_raw_optimum_is_theory_optimal_critic(activation, log_t):
    log_t = jnp.float64(log_t)
    critic = activation.divergence.derivative_at_log_ratio(log_t)
    activated = activation(activation.optimal_raw_at_log_ratio(log_t))
    # Both sides round a few times at the scale of their terms (f'(t) up to 2 e^20 for Pearson).
    assert abs(float(activated) - float(critic)) <= 16 * EPS64 * (abs(float(critic)) + 1.0)


def test_table2_activations_cover_five_generators_and_reject_total_variation():
    assert {type(a.divergence) for a in TABLE2_ACTIVATIONS} == {
        theory.KullbackLeibler,
        theory.ReverseKullbackLeibler,
        theory.PearsonChiSquared,
        theory.SquaredHellinger,
        theory.JensenShannon,
    }
    with pytest.raises(ValueError, match="TotalVariation"):
        table2_activation(theory.TotalVariation())
    with pytest.raises(ValueError, match="TotalVariation"):
        FGAN(theory.TotalVariation())
    with pytest.raises(TypeError, match="divergence"):
        FGAN("kl")


# --------------------------------------------------------------------------------------
# WGAN.


@settings(max_examples=4)
@given(mp=means, sp=stds, mq=means, sq=stds)
def test_wgan_bound_at_the_kantorovich_potential_is_w1(mp, sp, mq, sq):
    p, q = _gaussian(mp, sp), _gaussian(mq, sq)
    objective = WGAN()
    bound = discriminator_bound(objective, objective.optimal_raw_output(p, q), p, q)
    exact = objective.exact_divergence(p, q)
    # The grid potential has slope +-1 except in the cell around the (single, for two
    # Gaussians) crossing of the CDFs; there its error shifts v on one side by at most a
    # cell width h, which changes E_P v - E_Q v by at most h.
    lo, hi = [float(b) for b in (min(mp - 10 * sp, mq - 10 * sq), max(mp + 10 * sp, mq + 10 * sq))]
    h = (hi - lo) / (WGAN.grid_size - 1)
    assert abs(bound.value - exact.value) <= h + bound.error + exact.error + 1e-12


def test_wgan_w1_matches_closed_forms():
    # Equal variances: W_1 = |m_p - m_q| (a translation).
    assert WGAN().exact_divergence(_gaussian(0.7, 1.3), _gaussian(-0.5, 1.3)).value == pytest.approx(1.2, abs=1e-9)
    # Equal means: W_1 = |s_p - s_q| E|Z| = |s_p - s_q| sqrt(2 / pi) (quantile coupling).
    w1 = WGAN().exact_divergence(_gaussian(0.0, 1.0), _gaussian(0.0, 2.0))
    # The |F_P - F_Q| kink at the crossing makes Gauss-Legendre converge algebraically;
    # the reported |I(n) - I(2n)| bounds the coarse rule's error.
    assert abs(w1.value - math.sqrt(2 / math.pi)) <= 10 * w1.error + 1e-9


def test_wgan_needs_a_lipschitz_critic_and_1d_laws():
    WGAN().check_discriminator_spec(BjorckGroupSortSpec(depth=2))
    with pytest.raises(TypeError, match="Lipschitz critic"):
        WGAN().check_discriminator_spec(MLPDiscriminatorSpec())
    two_d = theory.Gaussian(jnp.zeros(2), jnp.eye(2))
    with pytest.raises(ValueError, match="1-D"):
        WGAN().exact_divergence(two_d, two_d)


# --------------------------------------------------------------------------------------
# Protocol and validation.


@pytest.mark.parametrize("objective", DENSITY_OBJECTIVES + [WGAN()], ids=IDS + ["WGAN"])
def test_batch_estimate_is_the_affine_map_of_the_loss(objective):
    v_real, v_fake = jnp.linspace(-2, 2, 7), jnp.linspace(-1, 3, 5)
    loss = objective.discriminator_loss(v_real, v_fake)
    assert objective.bound_slope < 0
    assert isinstance(objective.divergence_name, str) and objective.divergence_name
    np.testing.assert_allclose(
        objective.divergence_estimate(v_real, v_fake), objective.bound_offset + objective.bound_slope * loss, rtol=1e-15
    )
    np.testing.assert_allclose(
        loss, jnp.mean(objective.real_loss(v_real)) + jnp.mean(objective.fake_loss(v_fake)), rtol=1e-15
    )
    assert isinstance(objective, AbstractGANObjective)


def test_saturating_and_non_saturating_costs_differ_only_in_the_generator():
    v = jnp.linspace(-5, 5, 11)
    assert np.all(Minimax().real_loss(v) == NonSaturating().real_loss(v))
    assert np.all(Minimax().fake_loss(v) == NonSaturating().fake_loss(v))
    # log(1 - sigmoid v) and -log sigmoid v: slopes -sigmoid(v) and -sigmoid(-v).
    np.testing.assert_allclose(jax.vmap(jax.grad(Minimax().generator_cost))(v), -jax.nn.sigmoid(v), rtol=1e-14)
    np.testing.assert_allclose(jax.vmap(jax.grad(NonSaturating().generator_cost))(v), -jax.nn.sigmoid(-v), rtol=1e-14)


def test_bad_arguments_are_rejected_before_compute():
    with pytest.raises(ValueError, match="must differ"):
        LeastSquares(fake_label=1.0, real_label=1.0)
    with pytest.raises(ValueError, match="fake_label"):
        LeastSquares(fake_label=float("nan"))
    with pytest.raises(TypeError, match="objective"):
        discriminator_bound("minimax", lambda x: x[:, 0], _gaussian(0, 1), _gaussian(1, 1))
