"""The linear layers of an MLP: shapes, float32, the initialisation bound, no shared arrays."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models.mlp import linear_layers


def test_layers_have_the_widths_float32_and_the_fan_in_bound():
    layers = linear_layers(jax.random.key(0), [3, 16, 16, 2])
    assert [(layer.in_features, layer.out_features) for layer in layers] == [(3, 16), (16, 16), (16, 2)]
    for layer in layers:
        assert layer.weight.dtype == jnp.float32 and layer.bias.dtype == jnp.float32
        bound = 1 / np.sqrt(layer.in_features)  # uniform on [-bound, bound]
        assert float(jnp.max(jnp.abs(layer.weight))) <= bound and float(jnp.max(jnp.abs(layer.bias))) <= bound
    # Two layers of the same shape draw their own weights (own keys, no shared array).
    same_shape = linear_layers(jax.random.key(1), [8, 8, 8])
    assert not np.array_equal(np.asarray(same_shape[0].weight), np.asarray(same_shape[1].weight))


def test_bad_sizes_raise_naming_them():
    with pytest.raises(ValueError, match="sizes"):
        linear_layers(jax.random.key(0), [3])
    with pytest.raises(ValueError, match="sizes"):
        linear_layers(jax.random.key(0), [3, 0, 2])
