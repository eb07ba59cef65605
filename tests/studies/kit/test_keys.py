"""studies.kit.keys: streams depend on the purpose and coordinates only."""

import jax
import numpy as np
import pytest

from studies import kit


def _bits(key):
    return np.asarray(jax.random.key_data(key))


def test_a_stream_is_a_function_of_purpose_and_coordinates_only():
    keys = kit.Keys(3)
    assert np.array_equal(_bits(keys("train", K=4, seed=1)), _bits(kit.Keys(3)("train", seed=1, K=4)))
    distinct = {
        tuple(_bits(k).ravel())
        for k in (keys("train", K=4, seed=1), keys("train", K=4, seed=2), keys("train", K=9, seed=1),
                  keys("eval", K=4, seed=1), kit.Keys(4)("train", K=4, seed=1))
    }
    assert len(distinct) == 5


def test_stack_and_bad_input():
    keys = kit.Keys(0)
    stacked = keys.stack("init", [{"seed": s} for s in range(3)])
    assert stacked.shape == (3,)
    assert np.array_equal(_bits(stacked[1]), _bits(keys("init", seed=1)))
    for bad in (-1, 2**31):
        with pytest.raises(ValueError, match="root_seed must be an integer"):
            kit.Keys(bad)
    for bad in (1.5, True):
        with pytest.raises(TypeError, match="root_seed must be an integer"):
            kit.Keys(bad)
    with pytest.raises(TypeError, match="coordinates"):
        keys("x", K=[1])
    with pytest.raises(ValueError, match="purpose"):
        keys("")
