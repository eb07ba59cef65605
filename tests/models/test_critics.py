"""Tests for models/critics.py: the four critic specs and their Lipschitz constraints.

One protocol section runs every spec through the same checks (shapes, dtypes, vmappable
build, unshared layers, a jitted training step, validation); then each constraint is
checked against its mathematics.
"""

import dataclasses
import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.critics import (
    BjorckGroupSortSpec,
    GradientPenaltyMLPSpec,
    GroupSortMLP,
    SpectralNormMLPSpec,
    UnconstrainedLinear,
    WeightClippingMLPSpec,
    bjorck_orthonormalise,
    maxmin,
)
from models.lipschitz import measure_lipschitz

U32 = 2.0**-24  # float32 unit roundoff

SMALL_SPECS = [
    BjorckGroupSortSpec(depth=3, width=4),
    GradientPenaltyMLPSpec(depth=3, width=4),
    SpectralNormMLPSpec(depth=3, width=4),
    WeightClippingMLPSpec(depth=3, width=4),
]
SPEC_IDS = [type(spec).__name__ for spec in SMALL_SPECS]


def _singular_values(matrix) -> np.ndarray:
    return np.linalg.svd(np.asarray(matrix, dtype=np.float64), compute_uv=False)


# --------------------------------------------------------------------------------------
# Protocol: every spec.


@pytest.mark.parametrize("spec", SMALL_SPECS, ids=SPEC_IDS)
def test_scalar_output_and_float32_params_under_x64(spec, key):
    critic = spec.build(key, 2)
    assert len(critic.layers) == spec.depth
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(critic))
    value = critic(jnp.array([0.3, -1.2]))  # a float64 input: x64 is on in tests
    assert value.shape == () and value.dtype == jnp.float32
    assert jax.vmap(critic)(jnp.zeros((5, 2))).shape == (5,)


@pytest.mark.parametrize("spec", SMALL_SPECS, ids=SPEC_IDS)
def test_build_is_vmappable_over_keys(spec, key):
    critics = eqx.filter_vmap(lambda k: spec.build(k, 2))(jax.random.split(key, 3))
    assert all(leaf.shape[0] == 3 for leaf in jax.tree.leaves(critics))
    first_weights = np.asarray(critics.layers[0].weight)
    for i, j in [(0, 1), (0, 2), (1, 2)]:
        assert not np.allclose(first_weights[i], first_weights[j])
    values = eqx.filter_vmap(lambda c: c(jnp.array([0.5, 0.5])))(critics)
    assert values.shape == (3,) and len(set(np.asarray(values).tolist())) == 3


@pytest.mark.parametrize("spec", SMALL_SPECS, ids=SPEC_IDS)
def test_layers_do_not_share_weights(spec, key):
    # The public code's `[Linear, act] * (depth - 1)` repeats ONE module; here every
    # layer must own distinct arrays with distinct values.
    deep = dataclasses.replace(spec, depth=5)
    critic = deep.build(key, 2)
    leaves = jax.tree.leaves(critic)
    assert len({id(leaf) for leaf in leaves}) == len(leaves)
    hidden = [np.asarray(layer.weight) for layer in critic.layers[1:-1]]
    assert len(hidden) == 3 and all(w.shape == (4, 4) for w in hidden)
    for i in range(len(hidden)):
        for j in range(i + 1, len(hidden)):
            assert not np.allclose(hidden[i], hidden[j])


@pytest.mark.parametrize("spec", SMALL_SPECS, ids=SPEC_IDS)
def test_jitted_training_step_keeps_structure(spec, key):
    build_key, data_key, penalty_key = jax.random.split(key, 3)
    critic = spec.build(build_key, 2)
    real, fake = jax.random.normal(data_key, (2, 16, 2), jnp.float32)

    @eqx.filter_jit
    def step(critic, key):
        def loss(critic):
            gap = jnp.mean(jax.vmap(critic)(fake)) - jnp.mean(jax.vmap(critic)(real))
            return gap + spec.penalty(critic, real, fake, key=key)

        value, grads = eqx.filter_value_and_grad(loss)(critic)
        updated = jax.tree.map(lambda p, g: p - 1e-2 * g, critic, grads)
        return value, spec.project(updated)

    value, stepped = step(critic, penalty_key)
    assert value.shape == () and jnp.isfinite(value)
    assert jax.tree.structure(stepped) == jax.tree.structure(critic)
    for before, after in zip(jax.tree.leaves(critic), jax.tree.leaves(stepped)):
        assert after.shape == before.shape and after.dtype == jnp.float32
        assert np.all(np.isfinite(after))
    penalty = spec.penalty(critic, real, fake, key=penalty_key)
    assert penalty.shape == () and penalty >= 0


def test_specs_are_frozen_and_hashable():
    assert len({BjorckGroupSortSpec(depth=5), BjorckGroupSortSpec(depth=5)}) == 1
    assert BjorckGroupSortSpec(depth=5) != BjorckGroupSortSpec(depth=3)
    assert BjorckGroupSortSpec(depth=5) != GradientPenaltyMLPSpec(depth=5)
    assert BjorckGroupSortSpec(depth=5).width == 30
    with pytest.raises(dataclasses.FrozenInstanceError):
        BjorckGroupSortSpec(depth=5).depth = 3


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: BjorckGroupSortSpec(depth=0), "depth must be an integer >= 1, got 0"),
        (lambda: GradientPenaltyMLPSpec(depth=-2), "depth must be an integer >= 1, got -2"),
        (lambda: SpectralNormMLPSpec(depth=3, width=7), "width must be even.*got 7"),
        (lambda: WeightClippingMLPSpec(depth=3, width=0), "width must be an integer >= 2, got 0"),
        (lambda: WeightClippingMLPSpec(depth=3, clip=-0.01), "clip must be a finite number > 0, got -0.01"),
        (lambda: WeightClippingMLPSpec(depth=3, clip=0.0), "clip must be a finite number > 0, got 0.0"),
        (
            lambda: GradientPenaltyMLPSpec(depth=3, penalty_weight=-1.0),
            "penalty_weight must be a finite number >= 0, got -1.0",
        ),
        (lambda: BjorckGroupSortSpec(depth=3, iterations=0), "iterations must be an integer >= 1, got 0"),
        (lambda: BjorckGroupSortSpec(depth=3, beta=0.7), r"beta must be a finite number in \(0, 0.5\], got 0.7"),
        (
            lambda: SpectralNormMLPSpec(depth=3, power_iterations=0),
            "power_iterations must be an integer >= 1, got 0",
        ),
        (
            lambda: BjorckGroupSortSpec(depth=3).build(jax.random.key(0), 0),
            "in_dim must be an integer >= 1, got 0",
        ),
    ],
)
def test_bad_arguments_raise_naming_the_argument(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_non_integer_depth_is_a_type_error():
    with pytest.raises(TypeError, match="depth must be an integer >= 1, got 2.5"):
        BjorckGroupSortSpec(depth=2.5)


def test_maxmin_sorts_pairs_and_is_a_permutation():
    x = jnp.array([3.0, -1.0, 0.5, 2.0])
    np.testing.assert_array_equal(maxmin(x), [-1.0, 3.0, 0.5, 2.0])
    # Jacobian a permutation matrix (away from ties): rows and columns one-hot.
    jacobian = np.asarray(jax.jacobian(maxmin)(x))
    np.testing.assert_array_equal(np.sort(jacobian.sum(0)), np.ones(4))
    np.testing.assert_array_equal(jacobian @ jacobian.T, np.eye(4))


def _maxmin_by_jax_rules(x):
    # maxmin written with jnp.minimum/maximum only, differentiated by JAX's own rules.
    low, high = x[..., 0::2], x[..., 1::2]
    return jnp.stack([jnp.minimum(low, high), jnp.maximum(low, high)], axis=-1).reshape(x.shape)


def test_maxmin_forward_mode_is_refused_not_silently_wrong():
    with pytest.raises(TypeError, match="forward-mode"):
        jax.jacfwd(maxmin)(jnp.array([3.0, -1.0]))


def test_maxmin_derivatives_equal_jax_rules_exactly_ties_included():
    # maxmin's own backward pass must give the numbers JAX's min/max rules give, bit for
    # bit: values, Jacobians, and the second-order derivative a gradient penalty takes
    # (a tie in pair 0 and a zero pre-activation pair included).
    x = jax.random.normal(jax.random.key(0), (64, 6))
    x = x.at[0, 1].set(x[0, 0]).at[1, 2:4].set(0.0)
    cotangent = jax.random.normal(jax.random.key(1), (64, 6))
    np.testing.assert_array_equal(maxmin(x), _maxmin_by_jax_rules(x))
    for row in (x[0], x[1], x[2]):
        np.testing.assert_array_equal(jax.jacrev(maxmin)(row), jax.jacrev(_maxmin_by_jax_rules)(row))
    weight = jax.random.normal(jax.random.key(2), (6, 6))

    def penalty(weight, activation):
        def value(point, tangent):
            return jnp.sum(activation(weight @ point) * tangent)

        input_gradients = jax.vmap(jax.grad(value))(x, cotangent)
        return jnp.sum((jnp.sum(input_gradients**2, axis=1) - 1.0) ** 2)

    np.testing.assert_array_equal(
        jax.grad(penalty)(weight, maxmin), jax.grad(penalty)(weight, _maxmin_by_jax_rules)
    )


# --------------------------------------------------------------------------------------
# Björck: orthonormal layers, a 1-Lipschitz critic.


def test_bjorck_orthogonal_init_starts_orthonormal(key):
    critic = BjorckGroupSortSpec(depth=4).build(key, 2)  # paper width 30, 3 iterations
    for weight in critic.weight_matrices():
        # float32 orthogonal init is orthonormal to ~1e-7; 1e-3 is the brief's bound.
        np.testing.assert_allclose(_singular_values(weight), 1.0, atol=1e-3)


def _bjorck_steps_to_reach(s0: float, tol: float, beta: float = 0.5) -> int:
    # Iterations of the scalar map every singular value follows.
    s, n = s0, 0
    while 1 - s > tol:
        s, n = (1 + beta) * s - beta * s**3, n + 1
    return n


@pytest.mark.parametrize("shape", [(30, 30), (30, 2), (1, 30), (16, 30)])
def test_bjorck_converges_from_a_gaussian_weight(shape, key):
    weight = jax.random.normal(key, shape, jnp.float32)
    w64 = np.asarray(weight, dtype=np.float64)
    # Why 25 iterations suffice: each step maps every singular value of the rescaled
    # weight by f(s) = 1.5 s - 0.5 s^3, increasing on [0, 1] with f(1) = 1, so all of
    # them are at least as close to 1 as the smallest, s0. The rescaling divides by at
    # most sqrt(||W||_1 ||W||_inf), so s0 >= sigma_min / sqrt(||W||_1 ||W||_inf). f grows
    # s0 by ~1.5x per step until ~0.5 (log(0.5 / s0) / log 1.5 steps: ~15 from 1e-3),
    # then converges quadratically (~4 steps to 1 - 1e-4). Check that premise here:
    s0 = _singular_values(w64).min() / math.sqrt(
        np.abs(w64).sum(axis=0).max() * np.abs(w64).sum(axis=1).max()
    )
    assert _bjorck_steps_to_reach(s0, tol=1e-4) <= 25, f"ill-conditioned draw, s0={s0:.2e}"
    orthonormal = jax.jit(functools.partial(bjorck_orthonormalise, iterations=25))(weight)
    # 1e-4 from the scalar map plus float32 rounding of 25 steps (~25 * 30 * U32 ~ 5e-5).
    np.testing.assert_allclose(_singular_values(orthonormal), 1.0, atol=1e-3)


@functools.cache
def _jitted_bjorck(iterations: int):
    return jax.jit(functools.partial(bjorck_orthonormalise, iterations=iterations))


@given(
    seed=st.integers(0, 2**31 - 1),
    shape=st.sampled_from([(8, 8), (8, 2), (1, 8)]),
    iterations=st.sampled_from([1, 3]),
    scale=st.floats(1e-3, 1e3),
)
def test_bjorck_spectral_norm_never_exceeds_one(seed, shape, iterations, scale):
    # The rescaling puts every singular value in (0, 1], and f maps [0, 1] into itself,
    # so even an unconverged layer is 1-Lipschitz. Allowance: float32 rounding of a few
    # 8-term products, ~8 * 3 * U32 ~ 1.4e-6, rounded up to 1e-5.
    weight = scale * jax.random.normal(jax.random.key(seed), shape, jnp.float32)
    assert _singular_values(_jitted_bjorck(iterations)(weight)).max() <= 1 + 1e-5


@functools.cache
def _paper_bjorck_critic() -> GroupSortMLP:
    return BjorckGroupSortSpec(depth=4).build(jax.random.key(1), 2)


@eqx.filter_jit
def _evaluate_pair(critic, x, y):
    return critic(x), critic(y)


coordinate = st.floats(-5.0, 5.0)


@given(x=st.tuples(coordinate, coordinate), y=st.tuples(coordinate, coordinate))
def test_bjorck_critic_is_one_lipschitz(x, y):
    critic = _paper_bjorck_critic()
    x, y = np.array(x), np.array(y)
    dx, dy = (float(v) for v in _evaluate_pair(critic, jnp.asarray(x), jnp.asarray(y)))
    # The exact-arithmetic network with these float32 parameters has Lipschitz constant
    # <= L = prod ||W_k||_2 (exact SVDs of the float32 effective weights). Rounding
    # allowance for float32 evaluation, u = 2^-24:
    #   input cast: ||fl(x) - x|| <= u ||x||;
    #   each layer, rows of norm <= 1, n <= w terms: ||fl(W h + b) - (W h + b)||
    #   <= sqrt(w) * w * u ||h|| + u ||W h + b|| <= (w^1.5 + 1) u R, with every hidden
    #   norm ||h|| <= R = ||x|| + sum_k ||b_k||; later layers do not amplify it (norm <= 1).
    # So |fl D(x) - fl D(y)| <= L (||x - y|| + u (||x|| + ||y||)) + 2 q (w^1.5 + 1) u R,
    # about 1e-3 for q = 4, w = 30, R ~ 11.
    lipschitz = measure_lipschitz(critic, jnp.zeros((1, 2))).upper
    depth, width = len(critic.layers), 30
    radius = max(np.linalg.norm(x), np.linalg.norm(y)) + sum(
        float(np.linalg.norm(layer.bias)) for layer in critic.layers
    )
    allowance = lipschitz * U32 * (np.linalg.norm(x) + np.linalg.norm(y)) + 2 * depth * (
        width**1.5 + 1
    ) * U32 * radius
    assert abs(dx - dy) <= lipschitz * np.linalg.norm(x - y) + allowance


def test_bjorck_critic_measured_lipschitz(key):
    critic = _paper_bjorck_critic()
    estimate = measure_lipschitz(critic, 3.0 * jax.random.normal(key, (512, 2)))
    # Product of four spectral norms each 1 to ~1e-7 (float32 orthonormality).
    assert abs(estimate.upper - 1.0) <= 1e-3
    # The gradient is a product of float32 matvecs, relative error <= q w u ~ 1e-5.
    assert estimate.lower <= 1.0 + 1e-5


@pytest.mark.parametrize("init", ["orthonormal", "public"])
def test_bjorck_inits_stay_one_lipschitz_after_training_updates_and_projection(init, key):
    # A spec's init changes where the singular values start, never the certificate:
    # after large random updates (what Adam might do) and the spec's projection, every
    # effective weight has spectral norm <= 1 (float32 rounding, ~1e-6, allowed 1e-5).
    weight_key, update_key = jax.random.split(key)
    for project_iterations in (0, 2):
        spec = BjorckGroupSortSpec(depth=4, init=init, project_iterations=project_iterations)
        critic = spec.build(weight_key, 2)
        params, static = eqx.partition(critic, eqx.is_inexact_array)
        leaves, treedef = jax.tree.flatten(params)
        noise = [0.5 * jax.random.normal(k, leaf.shape) for k, leaf in zip(jax.random.split(update_key, len(leaves)), leaves)]
        moved = spec.project(eqx.combine(jax.tree.unflatten(treedef, [a + b for a, b in zip(leaves, noise)]), static))
        for weight in moved.weight_matrices():
            assert _singular_values(weight).max() <= 1.0 + 1e-5


def test_bjorck_public_init_starts_at_the_public_scale(key):
    # Orthogonal with gain 1/sqrt(fan_in), divided by sqrt(fan_out fan_in): singular
    # values 1 / (fan_in sqrt(fan_out)), then 3 steps of s -> 1.5 s - 0.5 s^3, each
    # x1.5 to within s^2/3 (< 1e-4 relative here).
    critic = BjorckGroupSortSpec(depth=3, init="public").build(key, 2)
    for layer, weight in zip(critic.layers, critic.weight_matrices()):
        fan_out, fan_in = layer.weight.shape
        s0 = 1.0 / (fan_in * math.sqrt(fan_out))
        expected = s0
        for _ in range(3):
            expected = 1.5 * expected - 0.5 * expected**3
        np.testing.assert_allclose(_singular_values(weight), expected, rtol=1e-4)


def test_bjorck_carried_weights_stay_orthonormal_with_one_forward_iteration(key):
    # project_iterations carries W ~ polar(W) between steps: a small update moves the
    # singular values by delta ~ 1e-2, one projection step leaves ~1.5 delta^2 ~ 1e-4,
    # and the forward step again squares it: within the brief's 1e-3 of 1.
    spec = BjorckGroupSortSpec(depth=3, iterations=1, project_iterations=1)
    critic = spec.build(key, 2)
    for k in jax.random.split(key, 5):
        critic = spec.project(jax.tree.map(lambda a: a + 1e-2 * jax.random.normal(k, a.shape, a.dtype) / math.sqrt(a.size) if eqx.is_inexact_array(a) else a, critic))
        for weight in critic.weight_matrices():
            np.testing.assert_allclose(_singular_values(weight), 1.0, atol=1e-3)


def test_bjorck_rejects_an_unknown_init():
    with pytest.raises(ValueError, match="init"):
        BjorckGroupSortSpec(depth=2, init="xavier")
    with pytest.raises(ValueError, match="project_iterations"):
        BjorckGroupSortSpec(depth=2, project_iterations=-1)


# --------------------------------------------------------------------------------------
# Gradient penalty.


def _linear_critic(weight) -> GroupSortMLP:
    """D(x) = w . x, a depth-1 critic with gradient w everywhere."""
    layer = UnconstrainedLinear(
        weight=jnp.asarray(weight, jnp.float32).reshape(1, -1), bias=jnp.zeros(1, jnp.float32)
    )
    return GroupSortMLP((layer,))


def _relu_critic() -> GroupSortMLP:
    """D(x) = max(x_1, 0) as a depth-2 MaxMin network: gradient norm 1 if x_1 > 0, else 0."""
    first = UnconstrainedLinear(
        weight=jnp.array([[1.0, 0.0], [0.0, 0.0]], jnp.float32), bias=jnp.zeros(2, jnp.float32)
    )
    second = UnconstrainedLinear(
        weight=jnp.array([[0.0, 1.0]], jnp.float32), bias=jnp.zeros(1, jnp.float32)
    )
    return GroupSortMLP((first, second))


@eqx.filter_jit
def _gradient_penalty(spec, critic, real, fake, key):
    return spec.penalty(critic, real, fake, key=key)


@given(
    radius=st.floats(0.0, 3.0),
    angle=st.floats(0.0, 2 * math.pi),
    # Weights below ~1e-30 would underflow the float32 penalty; they mean nothing anyway.
    penalty_weight=st.one_of(st.just(0.0), st.floats(1e-3, 100.0)),
    seed=st.integers(0, 2**31 - 1),
)
def test_gradient_penalty_of_a_linear_critic(radius, angle, penalty_weight, seed):
    # grad D = w everywhere, so the penalty is lambda (||w|| - 1)^2 whatever the
    # interpolates: 0 exactly when ||w|| = 1.
    spec = GradientPenaltyMLPSpec(depth=1, penalty_weight=penalty_weight)
    critic = _linear_critic([radius * math.cos(angle), radius * math.sin(angle)])
    data_key, penalty_key = jax.random.split(jax.random.key(seed))
    real, fake = 2.0 * jax.random.normal(data_key, (2, 8, 2))
    # Eager: penalty_weight is a static field, so a jitted call would recompile per example.
    penalty = float(spec.penalty(critic, real, fake, key=penalty_key))
    norm = float(np.linalg.norm(np.asarray(critic.layers[0].weight, np.float64)))
    # float32: the norm carries relative error ~2u, so (norm - 1)^2 is off by
    # ~4u norm |norm - 1| <= 1e-6 per unit of lambda; 1e-5 leaves margin.
    np.testing.assert_allclose(
        penalty, penalty_weight * (norm - 1) ** 2, rtol=1e-5, atol=1e-5 * penalty_weight
    )


def test_gradient_penalty_draws_one_interpolation_weight_per_sample(key):
    # D(x) = max(x_1, 0). Real points have x_1 = 1, fake x_1 = -1, so the interpolate
    # has x_1 = 2t - 1 and (||grad D|| - 1)^2 = 1{t < 1/2}: the penalty is lambda times
    # the fraction of t_i below 1/2, whose mean is 1/2 and standard deviation
    # 0.5 / sqrt(B) for independent t_i ~ U[0, 1] (a shared t would give 0 or lambda).
    spec = GradientPenaltyMLPSpec(depth=2, width=2, penalty_weight=10.0)
    critic, batch = _relu_critic(), 4096
    noise_key, penalty_key = jax.random.split(key)
    other = jax.random.normal(noise_key, (batch, 1))
    real = jnp.concatenate([jnp.ones((batch, 1)), other], axis=1)
    fake = jnp.concatenate([-jnp.ones((batch, 1)), other], axis=1)
    fraction = float(_gradient_penalty(spec, critic, real, fake, penalty_key)) / 10.0
    assert abs(fraction - 0.5) <= 5 * 0.5 / math.sqrt(batch)
    # Both ends in the unit-gradient region: no penalty; both in the flat region: lambda.
    assert float(_gradient_penalty(spec, critic, real, real, penalty_key)) == 0.0
    np.testing.assert_allclose(_gradient_penalty(spec, critic, fake, fake, penalty_key), 10.0)


def test_gradient_penalty_rejects_mismatched_batches(key):
    critic = GradientPenaltyMLPSpec(depth=2, width=2).build(key, 2)
    with pytest.raises(ValueError, match="real and fake"):
        GradientPenaltyMLPSpec(depth=2, width=2).penalty(
            critic, jnp.zeros((4, 2)), jnp.zeros((3, 2)), key=key
        )


# --------------------------------------------------------------------------------------
# Spectral normalisation.


def test_spectral_norm_power_iteration_converges(key):
    spec = SpectralNormMLPSpec(depth=3, width=8, power_iterations=100)
    critic = spec.build(key, 2)
    for layer in critic.layers:
        # u^T W v with unit u, v never exceeds sigma_max (float32 allowance 1e-6).
        sigma = np.linalg.norm(np.asarray(layer.weight, np.float64), 2)
        assert float(layer.spectral_norm_estimate()) <= sigma * (1 + 1e-6)
    critic = eqx.filter_jit(spec.project)(critic)
    for layer, effective in zip(critic.layers, critic.weight_matrices()):
        # Power iteration's error in sigma decays like (sigma_2 / sigma_1)^(2k); after
        # 120 steps it is far below the float32 level, well inside 1e-3.
        sigma = np.linalg.norm(np.asarray(layer.weight, np.float64), 2)
        np.testing.assert_allclose(float(layer.spectral_norm_estimate()), sigma, rtol=1e-3)
        np.testing.assert_allclose(_singular_values(effective).max(), 1.0, atol=1e-3)


def test_spectral_norm_gradient_treats_u_and_v_as_constants(key):
    # d(u^T W v)/dW = u v^T when u and v are held fixed (Miyato et al., eq. 12).
    layer = SpectralNormMLPSpec(depth=2, width=4).build(key, 3).layers[0]
    grad = eqx.filter_grad(lambda lyr: lyr.spectral_norm_estimate())(layer)
    v = layer.weight.T @ layer.u
    v = v / jnp.linalg.norm(v)
    np.testing.assert_allclose(grad.weight, jnp.outer(layer.u, v), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(grad.u, 0.0)


# --------------------------------------------------------------------------------------
# Weight clipping.


@pytest.mark.parametrize("clip", [0.01, 0.3])
def test_weight_clipping_projects_onto_the_box(clip, key):
    spec = WeightClippingMLPSpec(depth=3, width=4, clip=clip)
    big = jax.tree.map(lambda a: 2 * a, GradientPenaltyMLPSpec(depth=3, width=4).build(key, 2))
    clipped = spec.project(big)
    for before, after in zip(jax.tree.leaves(big), jax.tree.leaves(clipped)):
        before, after = np.asarray(before), np.asarray(after)
        assert np.all(np.abs(after) <= clip)
        inside = np.abs(before) <= clip
        np.testing.assert_array_equal(after[inside], before[inside])  # identity on the box
        np.testing.assert_array_equal(after[~inside], clip * np.sign(before[~inside]))
    assert eqx.tree_equal(spec.project(clipped), clipped)  # a projection: idempotent
    built = spec.build(key, 2)
    assert all(np.all(np.abs(np.asarray(leaf)) <= clip) for leaf in jax.tree.leaves(built))
