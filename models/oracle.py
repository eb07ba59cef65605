"""Oracle generators: G_p trained to minimise the Wasserstein distance itself, no critic.

The generator minimises the minibatch OT loss E[W1(G_B, Y_B)] between B generated
points G_B and B points Y_B of the law it is fitted to (fresh target draws, or the n
training points), with one of two jit- and vmap-able losses:

- `ExactAssignment()`: for two uniform clouds of B points, W1 is the minimum over
  permutations sigma of (1/B) sum_i ||x_i - y_sigma(i)|| (Birkhoff-von Neumann), solved
  exactly by SciPy's `linear_sum_assignment` through `jax.pure_callback` (on the host,
  also when the rest runs on an accelerator). Its gradient in x is that of the optimal
  permutation's cost (Danskin's theorem; the minimiser is unique almost surely).
- `SinkhornDivergence(epsilon)`: ott-jax's debiased Sinkhorn divergence with ground
  cost ||x - y||, Danskin gradients (potentials frozen). Each of its three entropic
  terms lies within [W, W + epsilon log B] of its unregularised value (the entropy of
  a coupling of two B-point laws is at most log B), so |S_eps - W1| <= epsilon log B at
  convergence, on the batch.

Bias of the batch loss: by the joint convexity of W1, E W1(G_B, Y_B) >= W1(mu_theta,
mu*), with equality only as B -> infinity; for mu_theta = mu* the bias is the sampling
floor at B, about B^(-1/2) in dimension 2 (up to a log factor). Its minimiser is thus
not exactly the W1 minimiser (Fatras et al., "Learning with minibatch Wasserstein",
AISTATS 2020); any trained generator nevertheless bounds inf_theta W1(mu*, mu_theta)
from above.

The generator's initial weights equal those `models.wgan.init_state` builds from the
same key (the first half of `jax.random.split(key)`), so an oracle and a WGAN of the same
seed start from the same generator (common random numbers).
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.optimize
from jaxtyping import Array, Float, Int, PRNGKeyArray

from models import sharding
from models.generator import MLPGeneratorSpec
from models.training import (
    AdamSpec,
    FreshDraws,
    IndependentDraws,
    TrainState,
    check_adam_settings,
    init_train_state,
    train,
)
from theory.validation import check_count, check_in_interval, check_positive_number

__all__ = [
    "AbstractOTLoss",
    "ExactAssignment",
    "OracleLosses",
    "OracleState",
    "OracleTraining",
    "SinkhornDivergence",
    "init_oracle_replicas",
    "oracle_steps",
    "train_oracle_replicas",
]


def _distances(x: Float[Array, "b d"], y: Float[Array, "b d"]) -> Float[Array, "b b"]:
    # sqrt of a clamped square: the gradient of ||x - y|| is finite at x = y.
    squared = jnp.sum((x[:, None, :] - y[None, :, :]) ** 2, axis=-1)
    return jnp.sqrt(jnp.maximum(squared, jnp.finfo(squared.dtype).tiny))


class AbstractOTLoss(eqx.Module):
    """A minibatch transport loss L(x, y) ~ W1 between two equal-size uniform clouds."""

    @abc.abstractmethod
    def __call__(self, x: Float[Array, "b d"], y: Float[Array, "b d"]) -> Float[Array, ""]:
        """The loss, differentiable in x (and y)."""

    @abc.abstractmethod
    def bias_bound(self, batch_size: int) -> float:
        """A bound on |L(x, y) - W1(x, y)| on one batch (0 for an exact solver)."""


def _assignment(cost: np.ndarray) -> np.ndarray:
    """Optimal permutations for a stack of square cost matrices (..., b, b) -> (..., b)."""
    cost = np.asarray(cost, np.float64)
    flat = cost.reshape((-1,) + cost.shape[-2:])
    columns = np.stack([scipy.optimize.linear_sum_assignment(c)[1] for c in flat])
    return columns.reshape(cost.shape[:-1]).astype(np.int32)


class ExactAssignment(AbstractOTLoss):
    """Exact W1 between two B-point clouds: min over permutations, via SciPy's assignment.

    W1(x, y) = min_sigma (1/B) sum_i ||x_i - y_sigma(i)|| (Peyre & Cuturi 2019, Prop. 2.1).
    """

    def __call__(self, x, y):
        if x.shape != y.shape:
            raise ValueError(f"x and y must be clouds of the same shape (b, d), got {x.shape} and {y.shape}")
        cost = _distances(x, y)
        permutation = jax.pure_callback(
            _assignment, jax.ShapeDtypeStruct(cost.shape[:-1], jnp.int32), jax.lax.stop_gradient(cost),
            vmap_method="expand_dims",
        )
        return jnp.mean(jnp.take_along_axis(cost, permutation[:, None], axis=1))

    def bias_bound(self, batch_size: int) -> float:
        return 0.0


class SinkhornDivergence(AbstractOTLoss):
    """ott-jax's debiased Sinkhorn divergence with ground cost ||x - y||.

    S_eps = OT_eps(x, y) - (OT_eps(x, x) + OT_eps(y, y)) / 2 (Feydy et al., AISTATS 2019).

    Args:
        epsilon: absolute entropic regularisation (in the data's length unit), > 0.
        max_iterations: Sinkhorn iterations at most.
        threshold: Sinkhorn's marginal-error tolerance.
    """

    epsilon: float = eqx.field(static=True, default=0.03)
    max_iterations: int = eqx.field(static=True, default=2000)
    threshold: float = eqx.field(static=True, default=1e-3)

    def __check_init__(self):
        check_positive_number("epsilon", self.epsilon)
        check_count("max_iterations", self.max_iterations)
        check_in_interval("threshold", self.threshold, 0.0, 1.0)

    def __call__(self, x, y):
        from ott.geometry import costs
        from ott.tools.sinkhorn_divergence import sinkdiv

        # ott-jax mixes the default float dtype into its solver state: compute in it
        # (float64 under jax_enable_x64) and return the inputs' dtype.
        dtype = jnp.result_type(float)
        value, _ = sinkdiv(x.astype(dtype), y.astype(dtype), cost_fn=costs.Euclidean(), epsilon=self.epsilon,
                           solve_kwargs={"implicit_diff": None, "use_danskin": True,
                                         "max_iterations": self.max_iterations, "threshold": self.threshold})
        return value.astype(x.dtype)

    def bias_bound(self, batch_size: int) -> float:
        return float(self.epsilon * np.log(batch_size))


class OracleTraining(eqx.Module):
    """Optimisation settings of the oracle (Adam, as the WGAN's generator)."""

    loss: AbstractOTLoss = eqx.field(static=True, default=ExactAssignment())
    lr: float = eqx.field(static=True, default=0.001)
    adam_b1: float = eqx.field(static=True, default=0.5)
    adam_b2: float = eqx.field(static=True, default=0.5)
    batch_size: int = eqx.field(static=True, default=256)

    def __check_init__(self):
        if not isinstance(self.loss, AbstractOTLoss):
            raise ValueError(f"loss must be an OT loss such as ExactAssignment(), got {self.loss!r}")
        check_adam_settings(self, rates=("lr",), decays=("adam_b1", "adam_b2"), counts=("batch_size",))

    def optimiser(self) -> AdamSpec:
        return AdamSpec(self.lr, b1=self.adam_b1, b2=self.adam_b2)


class OracleState(eqx.Module):
    """The oracle's generator, optimiser state, step and divergence marker."""

    generator: eqx.Module
    opt_state: optax.OptState
    step: Int[Array, ""]
    diverged_at: Int[Array, ""]  # first step with a non-finite loss or parameter, -1 if none


class OracleLosses(eqx.Module):
    loss: Float[Array, " n_steps"]  # the batch OT loss at each step


class _OracleLoss(eqx.Module):
    """L(G_theta(z), y) on a batch (y, k_fake): B latent draws from k_fake against B target points y."""

    generator_spec: MLPGeneratorSpec
    loss: AbstractOTLoss

    def __call__(self, generator, batch) -> Float[Array, ""]:
        real, key_fake = batch
        return self.loss(self.generator_spec.sample(generator, key_fake, real.shape[0]), real.astype(jnp.float32))


def _init_one(key, *, generator_spec: MLPGeneratorSpec, training: OracleTraining, data_dim: int) -> OracleState:
    generator = generator_spec.build(jax.random.split(key)[0], data_dim)
    state = init_train_state(generator, optimiser=training.optimiser())
    return OracleState(generator=state.model, opt_state=state.opt_state, step=state.step, diverged_at=state.diverged_at)


def init_oracle_replicas(keys, *, generator_spec: MLPGeneratorSpec, training: OracleTraining, data_dim: int,
                         mesh: jax.sharding.Mesh | None = None) -> OracleState:
    """States for R replicas; replica r's generator is the one `models.wgan.init_state(keys[r])` builds.

    With a `mesh` (`models.sharding.mesh_for`), the keys are split over its devices.
    """
    return sharding.vmap_sharded(_init_one, keys, mesh=mesh, generator_spec=generator_spec, training=training,
                                 data_dim=data_dim)


def oracle_steps(state: OracleState, law, key: PRNGKeyArray, *, n_steps: int, generator_spec: MLPGeneratorSpec,
                 training: OracleTraining) -> tuple[OracleState, OracleLosses]:
    """`n_steps` Adam steps on L(G_B, Y_B), Y_B ~ law (fresh each step), by `models.training.train`.

    Step k draws (k_real, k_fake) = split(key_k): Y_B = law.sample(k_real, B) and the
    generator's latents from k_fake. The replica is diverged from the first step whose
    loss or updated parameters are not finite.

    Args:
        state: the replica's state.
        law: anything with a jit-traceable `sample(key, n)`: the target (fresh draws) or
            `models.wgan_fresh.EmpiricalLaw(points)` (mu_n).
        key: PRNG key for this chunk.
        n_steps: number of steps (static).
    """
    batches = IndependentDraws((FreshDraws(law.sample, training.batch_size),))
    start = TrainState(model=state.generator, opt_state=state.opt_state, ema_model=None, step=state.step,
                       diverged_at=state.diverged_at)
    result = train(start, _OracleLoss(generator_spec, training.loss), optimiser=training.optimiser(), batches=batches,
                   n_steps=n_steps, key=key, record_every=1)
    end = result.state
    return (OracleState(generator=end.model, opt_state=end.opt_state, step=end.step, diverged_at=end.diverged_at),
            OracleLosses(loss=result.losses))


def train_oracle_replicas(states, laws, keys, *, n_steps: int, generator_spec: MLPGeneratorSpec, training: OracleTraining,
                          mesh: jax.sharding.Mesh | None = None) -> tuple[OracleState, OracleLosses]:
    """Train R oracles at once: states, laws (leading R axis on array leaves) and keys (R,).

    With a `mesh` (`models.sharding.mesh_for`), the replica axis is split over its
    devices (`models.sharding.vmap_sharded`); None runs on the default device.
    """
    return sharding.vmap_sharded(oracle_steps, states, laws, keys, mesh=mesh, n_steps=n_steps,
                                 generator_spec=generator_spec, training=training)
