"""The generator spec: depth, independent layers, latent laws, float32, bad input."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models.generator import GaussianLatent, MLPGeneratorSpec, UniformLatent


@pytest.mark.parametrize("depth", [1, 2, 5])
def test_depth_counts_linear_layers_each_with_its_own_weights(key, depth):
    network = MLPGeneratorSpec(depth=depth).build(key, 2)
    linears = [layer for layer in network.layers if isinstance(layer, eqx.nn.Linear)]
    assert len(linears) == depth
    weights = [layer.weight for layer in linears]
    assert len({id(w) for w in weights}) == depth
    hidden = [w for w in weights if w.shape == (30, 30)]
    for i in range(len(hidden)):
        for j in range(i):
            assert not np.allclose(hidden[i], hidden[j])
    assert all(w.dtype == jnp.float32 for w in weights)


def test_samples_have_the_data_shape_and_uniform_latents_stay_in_range(key):
    spec = MLPGeneratorSpec(depth=3, latent_dim=2)
    network = spec.build(key, 2)
    x = spec.sample(network, jax.random.key(1), 100)
    assert x.shape == (100, 2) and x.dtype == jnp.float32
    z = UniformLatent().sample(key, (10_000, 1), jnp.float32)
    assert float(z.min()) >= -1.0 and float(z.max()) <= 1.0
    g = GaussianLatent().sample(key, (10_000, 1), jnp.float32)
    # Sample standard deviation of 10^4 standard normals: 1 +- 0.007 (one standard error).
    assert abs(float(g.std()) - 1.0) < 5 * 0.0071


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"depth": 0}, ValueError, "depth must be an integer >= 1, got 0"),
        ({"depth": 2, "width": -3}, ValueError, "width must be an integer >= 1, got -3"),
        ({"depth": 2, "latent_dim": 0}, ValueError, "latent_dim must be an integer >= 1, got 0"),
        ({"depth": True}, TypeError, "depth must be an integer >= 1, got True"),
        ({"depth": 2, "latent": "uniform"}, TypeError, "latent must be a latent law"),
    ],
)
def test_bad_input_names_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        MLPGeneratorSpec(**kwargs)


def test_uniform_latent_needs_an_interval():
    with pytest.raises(ValueError, match="low < high"):
        UniformLatent(low=1.0, high=1.0)
