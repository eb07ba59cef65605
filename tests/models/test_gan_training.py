"""Tests for models/gan_training.py and models/conditional.py.

* Trained discriminators (alone, between two fixed 1-D Gaussians) approach the theory's
  optimum and their bound approaches the divergence: one run per family (cross-entropy,
  least squares, hinge, f-GAN, WGAN), the last four marked slow.
* Replicas: vmapped runs equal separate runs; a diverging replica is marked.
* Generator gradient norms: saturating vs non-saturating vs WGAN, exactly.
* Conditional GAN: the label conditions the generator's output.
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import theory
from models.conditional import ConditionalMLPDiscriminatorSpec, ConditionalMLPGeneratorSpec, LabelledData
from models.critics import BjorckGroupSortSpec
from models.gan_objectives import FGAN, WGAN, Hinge, LeastSquares, Minimax, NonSaturating, discriminator_bound
from models.gan_training import (
    GANTraining,
    MLPDiscriminatorSpec,
    discriminator_values,
    generator_gradient_norm,
    init_discriminator_replicas,
    init_discriminator_state,
    init_gan_state,
    init_replicas,
    sample_replicas,
    train_discriminator,
    train_discriminator_replicas,
    train_gan,
    train_replicas,
)
from models.generator import MLPGeneratorSpec

P = theory.Gaussian(jnp.array([1.0]), jnp.eye(1))
Q = theory.Gaussian(jnp.array([-1.0]), jnp.eye(1))
BATCH = 256
FIT_TRAINING = GANTraining(lr_discriminator=2e-3, batch_size=BATCH)
FIT_STEPS = 2000
GRID = np.linspace(-12.0, 12.0, 24_001)  # trapezoid grid holding all the mass of P and Q


def _densities():
    return np.exp(np.asarray(P.log_prob(GRID[:, None]))), np.exp(np.asarray(Q.log_prob(GRID[:, None])))


def _batch_standard_error(objective, v_star):
    """One batch's standard error of the estimate B at the optimum v* (grid quadrature).

    sd(B_batch) = |slope| sqrt(Var_P l_real(v*) / n + Var_Q l_fake(v*) / n), n = BATCH.
    """
    dp, dq = _densities()
    real, fake = np.asarray(objective.real_loss(v_star)), np.asarray(objective.fake_loss(v_star))
    var = [np.trapezoid(d * t**2, GRID) - np.trapezoid(d * t, GRID) ** 2 for d, t in ((dp, real), (dq, fake))]
    return abs(objective.bound_slope) * math.sqrt(sum(var) / BATCH)


def _train_alone(objective, spec, key):
    state = init_discriminator_state(key, discriminator_spec=spec, training=FIT_TRAINING, data_dim=1)
    state, losses = train_discriminator(
        state, P, Q, jax.random.fold_in(key, 1), n_steps=FIT_STEPS, objective=objective,
        discriminator_spec=spec, training=FIT_TRAINING,
    )
    assert int(state.diverged_at) == -1 and int(state.step) == FIT_STEPS
    return state.discriminator, losses


def _check_trained_bound(objective, network):
    """The trained bound is below the divergence and within one batch standard error of it."""
    raw = lambda x: jax.vmap(network)(x)  # noqa: E731
    bound = discriminator_bound(objective, raw, P, Q)
    exact = objective.exact_divergence(P, Q)
    v_star = np.asarray(objective.optimal_raw_output(P, Q)(GRID[:, None]))
    budget = _batch_standard_error(objective, v_star)
    # B(v) <= Div for every v (variational inequality), up to the quadrature errors.
    assert bound.value <= exact.value + bound.error + exact.error + 1e-12
    # Learning criterion: what is left of the gap is below what one training batch can
    # resolve (the batch estimate of B at v* itself scatters by `budget`). An untrained
    # network (v = const) misses it by far more (e.g. JS: 0.34 vs a budget of 0.02).
    assert exact.value - bound.value <= budget, (bound, exact, budget)
    return raw, v_star, budget


def _check_quadratic_fit(objective, raw, v_star, budget):
    """Raw output on the grid vs theory's optimum, in the metric the objective sees.

    To second order the gap is |slope| int 1/2 h(x) (v - v*)^2 dx with
    h = p l_real''(v*) + q l_fake''(v*), the pointwise curvature; so the curvature-weighted
    squared error of the fit must also lie within the batch resolution.
    """
    dp, dq = _densities()
    second = lambda loss: np.asarray(jax.vmap(jax.grad(jax.grad(loss)))(jnp.asarray(v_star)))  # noqa: E731
    h = dp * second(objective.real_loss) + dq * second(objective.fake_loss)
    error = np.asarray(raw(jnp.asarray(GRID[:, None]))) - v_star
    quadratic = abs(objective.bound_slope) * np.trapezoid(0.5 * h * error**2, GRID)
    assert quadratic <= budget, (quadratic, budget)


def test_a_cross_entropy_discriminator_trained_alone_reaches_d_star_and_js():
    objective = Minimax()
    network, losses = _train_alone(objective, MLPDiscriminatorSpec(depth=3, width=32), jax.random.key(0))
    raw, v_star, budget = _check_trained_bound(objective, network)
    _check_quadratic_fit(objective, raw, v_star, budget)
    # The batch estimates of the last 200 steps average to the divergence within their
    # standard error (200 nearly independent batches: budget / sqrt(200)), plus the gap.
    tail = np.asarray(losses.divergence_estimate[-200:], np.float64)
    exact = objective.exact_divergence(P, Q).value
    assert abs(tail.mean() - exact) <= 3 * budget / math.sqrt(200) + budget


@pytest.mark.slow
@pytest.mark.parametrize(
    "objective", [LeastSquares(), FGAN(theory.KullbackLeibler()), FGAN(theory.SquaredHellinger())], ids=["LSGAN", "KL", "Hellinger"]
)
def test_smooth_discriminators_trained_alone_reach_their_optimum(objective):
    network, _ = _train_alone(objective, MLPDiscriminatorSpec(depth=3, width=32), jax.random.key(0))
    raw, v_star, budget = _check_trained_bound(objective, network)
    _check_quadratic_fit(objective, raw, v_star, budget)


@pytest.mark.slow
def test_a_hinge_discriminator_trained_alone_reaches_total_variation():
    # v* = sign(p - q) is discontinuous and the loss piecewise linear (no curvature), so
    # only the bound is compared: the gap is int |p - q| |v - v*| / 2 inside [-1, 1].
    network, _ = _train_alone(Hinge(), MLPDiscriminatorSpec(depth=3, width=32), jax.random.key(0))
    _check_trained_bound(Hinge(), network)


@pytest.mark.slow
def test_a_bjorck_critic_trained_alone_reaches_w1():
    network, _ = _train_alone(WGAN(), BjorckGroupSortSpec(depth=2, width=16), jax.random.key(0))
    _check_trained_bound(WGAN(), network)


# --------------------------------------------------------------------------------------
# Replicas.

GENERATOR = MLPGeneratorSpec(depth=2, width=8)
DISCRIMINATOR = MLPDiscriminatorSpec(depth=2, width=8)
SMALL = GANTraining(batch_size=32)


def _gan_replicas(n, training=SMALL, objective=NonSaturating()):
    keys = jax.random.split(jax.random.key(3), n)
    data = jnp.stack([P.sample(k, 100) for k in keys]).astype(jnp.float32)
    states = init_replicas(keys, generator_spec=GENERATOR, discriminator_spec=DISCRIMINATOR, training=training, data_dim=1)
    run = lambda s, d, k: train_replicas(  # noqa: E731
        s, d, k, n_steps=4, objective=objective, generator_spec=GENERATOR, discriminator_spec=DISCRIMINATOR, training=training
    )
    return keys, data, states, run


def test_vmapped_gan_replicas_train_exactly_as_separate_runs():
    keys, data, states, run = _gan_replicas(2)
    together, losses = run(states, data, keys)
    for r in range(2):
        alone_state = jax.tree.map(lambda a: a[r : r + 1] if eqx.is_array(a) else a, states)
        alone, alone_losses = run(alone_state, data[r : r + 1], keys[r : r + 1])
        # Same program on one replica: vmapping batches the arithmetic only, so results
        # agree to float32 rounding accumulated over 4 steps (~1e-6 relative).
        for a, b in zip(jax.tree.leaves(eqx.filter(together, eqx.is_array)), jax.tree.leaves(eqx.filter(alone, eqx.is_array))):
            np.testing.assert_allclose(np.asarray(a[r]), np.asarray(b[0]), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(losses.discriminator[r], alone_losses.discriminator[0], rtol=1e-4, atol=1e-5)
    assert np.all(np.asarray(together.step) == 4) and np.all(np.asarray(together.diverged_at) == -1)
    assert losses.divergence_estimate.shape == (2, 4)
    assert sample_replicas(together.generator, keys, generator_spec=GENERATOR, n=5).shape == (2, 5, 1)


def test_a_diverging_gan_replica_is_marked_with_its_first_bad_step():
    # A learning rate of 1e38 sends float32 weights to inf within a step or two.
    reckless = GANTraining(batch_size=32, lr_generator=1e38, lr_discriminator=1e38)
    keys, data, states, run = _gan_replicas(2, reckless)
    states, losses = run(states, data, keys)
    diverged_at = np.asarray(states.diverged_at)
    first_bad = [int(np.argmax(~np.isfinite(np.asarray(losses.discriminator[r]) + np.asarray(losses.generator[r])))) for r in range(2)]
    assert np.all((diverged_at >= 0) & (diverged_at < 4))
    np.testing.assert_array_equal(diverged_at, first_bad)


def test_discriminator_replicas_share_a_law_and_map_data_sets():
    keys = jax.random.split(jax.random.key(5), 2)
    training = GANTraining(batch_size=16)
    states = init_discriminator_replicas(keys, discriminator_spec=DISCRIMINATOR, training=training, data_dim=1)
    fake = jnp.stack([Q.sample(k, 50) for k in keys]).astype(jnp.float32)  # one data set per replica
    states, losses = train_discriminator_replicas(
        states, P, fake, keys, n_steps=3, objective=Minimax(), discriminator_spec=DISCRIMINATOR, training=training
    )
    assert losses.divergence_estimate.shape == (2, 3) and np.all(np.isfinite(np.asarray(losses.discriminator)))
    assert discriminator_values(states.discriminator, jnp.zeros((2, 7, 1), jnp.float32)).shape == (2, 7)


# --------------------------------------------------------------------------------------
# Generator gradient norms against a frozen discriminator.


class _Affine(eqx.Module):
    """v(x) = w x + b, a frozen discriminator with a known raw output."""

    w: float
    b: float

    def __call__(self, x):
        return self.w * x[0] + self.b


def test_generator_gradient_norms_scale_as_the_cost_slopes():
    # A generator with zero weights outputs its bias c for every z, so every sample has
    # the same v = w c + b and grad L_G = c'(v) w (d/dtheta of G, the same for all z):
    # the norms are |c'(v)| times one common vector's norm. c'(v) is -sigmoid(v)
    # (saturating), -sigmoid(-v) (non-saturating) and -1 (WGAN).
    spec = MLPGeneratorSpec(depth=1, width=4)
    generator = spec.build(jax.random.key(0), 1)
    generator = eqx.tree_at(lambda g: g.layers[0].weight, generator, jnp.zeros_like(generator.layers[0].weight))
    discriminator = _Affine(w=0.5, b=-12.0)  # v = 0.5 c - 12, D(G(z)) ~ 6e-6: confidently rejected
    v = 0.5 * float(generator.layers[0].bias[0]) - 12.0
    norms = {
        name: float(generator_gradient_norm(generator, discriminator, jax.random.key(1), objective=o, generator_spec=spec, n=64))
        for name, o in (("saturating", Minimax()), ("non_saturating", NonSaturating()), ("wgan", WGAN()))
    }
    sigmoid = lambda t: 1.0 / (1.0 + math.exp(-t))  # noqa: E731
    # float32 gradients: a few units of roundoff (2^-24) relative.
    assert norms["saturating"] / norms["wgan"] == pytest.approx(sigmoid(v), rel=1e-5)
    assert norms["non_saturating"] / norms["wgan"] == pytest.approx(sigmoid(-v), rel=1e-5)
    assert norms["saturating"] < 1e-4 * norms["non_saturating"]


# --------------------------------------------------------------------------------------
# Conditional GAN.

MODES = (-3.0, 3.0)


def test_the_conditional_generator_reads_its_label_at_init():
    spec = ConditionalMLPGeneratorSpec(n_classes=2, depth=2, width=8)
    network = spec.build(jax.random.key(0), 1)
    z = jnp.linspace(-1, 1, 16)[:, None].astype(jnp.float32)
    out0 = jax.vmap(network)(z, jnp.zeros(16, jnp.int32))
    out1 = jax.vmap(network)(z, jnp.ones(16, jnp.int32))
    # The one-hot input enters through its own weight columns (random at init, nonzero
    # with probability 1), so the same z gives different outputs.
    assert np.all(np.asarray(out0) != np.asarray(out1))


def test_after_brief_training_each_label_sits_at_its_own_mode():
    key_data, key_init, key_train, key_sample = jax.random.split(jax.random.key(11), 4)
    n = 2000
    labels = jax.random.bernoulli(key_data, 0.5, (n,)).astype(jnp.int32)
    points = jnp.asarray(MODES)[labels][:, None] + 0.3 * jax.random.normal(jax.random.fold_in(key_data, 1), (n, 1))
    data = LabelledData(points, labels, n_classes=2)
    generator_spec = ConditionalMLPGeneratorSpec(n_classes=2, depth=3, width=32)
    discriminator_spec = ConditionalMLPDiscriminatorSpec(n_classes=2, depth=3, width=32)
    training = GANTraining(lr_discriminator=2e-3, lr_generator=2e-3, batch_size=128)
    state = init_gan_state(key_init, generator_spec=generator_spec, discriminator_spec=discriminator_spec, training=training, data_dim=1)
    state, losses = train_gan(
        state, data, key_train, n_steps=800, objective=NonSaturating(),
        generator_spec=generator_spec, discriminator_spec=discriminator_spec, training=training,
    )
    assert int(state.diverged_at) == -1
    m = 2000
    near_own = []
    for label in (0, 1):
        x = np.asarray(generator_spec.sample(state.generator, jax.random.fold_in(key_sample, label), jnp.full(m, label, jnp.int32)))[:, 0]
        own, other = MODES[label], MODES[1 - label]
        near_own.append(np.mean(np.abs(x - own) < np.abs(x - other)))
    # If the label did not condition the output, both labels would share one law and the
    # two fractions would sum to 1 (fraction near mode 0 for label 0 = 1 - fraction near
    # mode 1 for label 1). Each fraction's standard error is at most 0.5 / sqrt(m), so
    # the sum minus 1 has sd <= 0.5 sqrt(2 / m) = 0.016: reject at 5 sd.
    assert near_own[0] + near_own[1] - 1 > 5 * 0.5 * math.sqrt(2 / m), near_own
    # And each label's samples mostly sit at its own mode.
    assert min(near_own) > 0.5, near_own


# --------------------------------------------------------------------------------------
# Validation.


def test_bad_arguments_are_rejected_before_compute():
    state = init_discriminator_state(jax.random.key(0), discriminator_spec=DISCRIMINATOR, training=SMALL, data_dim=1)
    kwargs = dict(n_steps=2, objective=WGAN(), discriminator_spec=DISCRIMINATOR, training=SMALL)
    with pytest.raises(TypeError, match="Lipschitz critic"):
        train_discriminator(state, P, Q, jax.random.key(1), **kwargs)
    kwargs["objective"] = Minimax()
    with pytest.raises(TypeError, match="real must be"):
        train_discriminator(state, [1.0, 2.0], Q, jax.random.key(1), **kwargs)
    with pytest.raises(ValueError, match="n_steps"):
        train_discriminator(state, P, Q, jax.random.key(1), **{**kwargs, "n_steps": 0})
    with pytest.raises(ValueError, match="batch_size"):
        GANTraining(batch_size=0)
    with pytest.raises(ValueError, match="labels must lie"):
        LabelledData(jnp.zeros((3, 1)), jnp.array([0, 1, 2]), n_classes=2)
    gan_state = init_gan_state(jax.random.key(0), generator_spec=GENERATOR, discriminator_spec=DISCRIMINATOR, training=SMALL, data_dim=1)
    with pytest.raises(TypeError, match="conditional GAN"):
        train_gan(
            gan_state,
            LabelledData(jnp.zeros((3, 1)), jnp.array([0, 1, 1]), n_classes=2),
            jax.random.key(1), n_steps=2, objective=Minimax(), generator_spec=GENERATOR,
            discriminator_spec=DISCRIMINATOR, training=SMALL,
        )
