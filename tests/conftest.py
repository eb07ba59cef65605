"""Shared test set-up: float64, an explicit PRNG key, hypothesis profiles.

float64 is on for every test so that identities are checked to the precision the
theory promises; models set their own dtypes (float32 for training) explicitly, so
they behave the same whether or not x64 is on.

Hypothesis profiles: ``ci`` (default, few examples, no deadline: the first call of a
jitted function compiles) and ``thorough`` (many examples), chosen with
``HYPOTHESIS_PROFILE=thorough pytest``.
"""

import gc
import os

import jax
import pytest
from hypothesis import HealthCheck, settings

jax.config.update("jax_enable_x64", True)

settings.register_profile(
    "ci",
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough",
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def key():
    """A fixed PRNG key; tests split it into named keys."""
    return jax.random.key(0)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's compiled programs after each test module.

    Every compiled XLA:CPU executable keeps memory mappings; a whole-suite session compiles
    thousands and crossed Linux's default vm.max_map_count (65,530), crashing the compiler
    with a segmentation fault late in the run (measured: 18,000 mappings after two minutes
    of tests/models). Modules share few programs, so clearing costs little.
    """
    yield
    jax.clear_caches()
    gc.collect()
