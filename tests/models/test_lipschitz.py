"""Tests for models/lipschitz.py: the gradient lower bound and the spectral upper bound."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from models import critics
from models.lipschitz import measure_lipschitz
from theory import LipschitzEstimate


@pytest.mark.parametrize(
    "spec",
    [
        critics.BjorckGroupSortSpec(depth=1),
        critics.GradientPenaltyMLPSpec(depth=1),
        critics.SpectralNormMLPSpec(depth=1),
        critics.WeightClippingMLPSpec(depth=1, clip=0.5),
    ],
    ids=lambda spec: type(spec).__name__,
)
def test_bounds_coincide_on_a_linear_critic(spec, key):
    # D(x) = w . x + b: grad D = w everywhere, and ||w^T||_2 = ||w||, so both bounds
    # equal ||w||. Both are float64 norms of the same float32 numbers (autodiff of a
    # matvec returns w exactly), so they agree to float64 rounding.
    build_key, probe_key = jax.random.split(key)
    critic = spec.build(build_key, 3)
    estimate = measure_lipschitz(critic, jax.random.normal(probe_key, (7, 3)))
    w = np.asarray(critic.weight_matrices()[0], np.float64)
    np.testing.assert_allclose(estimate.lower, np.linalg.norm(w), rtol=1e-12)
    np.testing.assert_allclose(estimate.upper, np.linalg.norm(w), rtol=1e-12)
    assert estimate.n_probes == 7


@given(
    seed=st.integers(0, 2**31 - 1),
    spec=st.sampled_from(
        [
            critics.GradientPenaltyMLPSpec(depth=2, width=4),
            critics.GradientPenaltyMLPSpec(depth=4, width=6),
            critics.SpectralNormMLPSpec(depth=3, width=4),
            critics.BjorckGroupSortSpec(depth=3, width=4),
        ]
    ),
)
def test_gradient_norm_never_exceeds_spectral_bound(seed, spec):
    # grad D(x) = W_1^T P_1 W_2^T ... P_{q-1} w_q with permutation matrices P_k (MaxMin),
    # so ||grad D|| <= prod ||W_k||_2. Allowance for the float32 gradient: relative error
    # <= q w u ~ 4 * 6 * 6e-8 ~ 1.4e-6, rounded up to 1e-5.
    build_key, probe_key = jax.random.split(jax.random.key(seed))
    critic = spec.build(build_key, 2)
    estimate = measure_lipschitz(critic, 3.0 * jax.random.normal(probe_key, (64, 2)))
    assert 0 <= estimate.lower <= estimate.upper * (1 + 1e-5)


@given(scale=st.floats(-10.0, 10.0).filter(lambda c: abs(c) > 1e-3))
def test_both_bounds_scale_with_the_output_layer(scale):
    # Multiplying the last layer by c multiplies D's gradient and the last spectral norm
    # by |c|; float32 rounding of c * W is relative ~u, so rtol 1e-5.
    critic = critics.GradientPenaltyMLPSpec(depth=3, width=4).build(jax.random.key(3), 2)
    scaled = eqx.tree_at(lambda c: c.layers[-1].weight, critic, scale * critic.layers[-1].weight)
    probes = jax.random.normal(jax.random.key(4), (32, 2))
    base, after = measure_lipschitz(critic, probes), measure_lipschitz(scaled, probes)
    np.testing.assert_allclose(
        after.lower, abs(scale) * base.lower, rtol=1e-5
    )
    np.testing.assert_allclose(after.upper, abs(scale) * base.upper, rtol=1e-5)


def test_closed_form_relu_critic():
    # D(x) = max(x_1, 0) as MaxMin(W_1 x) read out by w_2 = (0, 1): ||W_1|| = ||w_2|| = 1.
    # The gradient has norm 1 where x_1 > 0 and 0 where x_1 < 0, so the lower bound is
    # tight or loose according to where the probes fall.
    critic = critics.GroupSortMLP(
        (
            critics.UnconstrainedLinear(
                weight=jnp.array([[1.0, 0.0], [0.0, 0.0]], jnp.float32),
                bias=jnp.zeros(2, jnp.float32),
            ),
            critics.UnconstrainedLinear(
                weight=jnp.array([[0.0, 1.0]], jnp.float32), bias=jnp.zeros(1, jnp.float32)
            ),
        )
    )
    both_sides = measure_lipschitz(critic, jnp.array([[-1.0, 0.0], [2.0, 5.0]]))
    assert isinstance(both_sides, LipschitzEstimate)
    assert (both_sides.lower, both_sides.upper, both_sides.n_probes) == (1.0, 1.0, 2)
    assert "max gradient norm over 2 probes" in both_sides.method and "spectral norms" in both_sides.method
    flat_side = measure_lipschitz(critic, jnp.array([[-1.0, 0.0], [-2.0, 5.0], [-0.1, 1.0]]))
    assert flat_side.lower == 0.0 and flat_side.upper == 1.0


@pytest.mark.parametrize("shape", [(2,), (0, 2), (2, 2, 2)])
def test_bad_probes_raise(shape, key):
    critic = critics.GradientPenaltyMLPSpec(depth=2, width=2).build(key, 2)
    with pytest.raises(ValueError, match="probes must have shape"):
        measure_lipschitz(critic, jnp.zeros(shape))


def test_estimate_is_frozen(key):
    critic = critics.GradientPenaltyMLPSpec(depth=2, width=2).build(key, 2)
    estimate = measure_lipschitz(critic, jnp.zeros((1, 2)))
    assert isinstance(estimate.lower, float)
    assert isinstance(estimate.upper, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        estimate.n_probes = 3
