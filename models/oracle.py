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

from models.generator import MLPGeneratorSpec

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
        if not (isinstance(self.epsilon, (int, float)) and 0 < self.epsilon < float("inf")):
            raise ValueError(f"epsilon must be a finite number > 0, got {self.epsilon!r}")
        if isinstance(self.max_iterations, bool) or not isinstance(self.max_iterations, int) or self.max_iterations < 1:
            raise ValueError(f"max_iterations must be an integer >= 1, got {self.max_iterations!r}")
        if not (isinstance(self.threshold, (int, float)) and 0 < self.threshold < 1):
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold!r}")

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
        if not (isinstance(self.lr, (int, float)) and 0 < self.lr < float("inf")):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")
        for name in ("adam_b1", "adam_b2"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 <= value < 1):
                raise ValueError(f"{name} must be in [0, 1), got {value!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {self.batch_size!r}")

    def optimiser(self) -> optax.GradientTransformation:
        return optax.adam(self.lr, b1=self.adam_b1, b2=self.adam_b2)


class OracleState(eqx.Module):
    """The oracle's generator, optimiser state, step and divergence marker."""

    generator: eqx.Module
    opt_state: optax.OptState
    step: Int[Array, ""]
    diverged_at: Int[Array, ""]  # first step with a non-finite loss, -1 if none


class OracleLosses(eqx.Module):
    loss: Float[Array, " n_steps"]  # the batch OT loss at each step


def _params(model):
    return eqx.filter(model, eqx.is_inexact_array)


@eqx.filter_jit
def init_oracle_replicas(keys, *, generator_spec: MLPGeneratorSpec, training: OracleTraining, data_dim: int) -> OracleState:
    """States for R replicas; replica r's generator is the one `models.wgan.init_state(keys[r])` builds."""

    def one(key):
        generator = generator_spec.build(jax.random.split(key)[0], data_dim)
        return OracleState(generator=generator, opt_state=training.optimiser().init(_params(generator)),
                           step=jnp.zeros((), jnp.int32), diverged_at=jnp.full((), -1, jnp.int32))

    return eqx.filter_vmap(one)(keys)


def oracle_steps(state: OracleState, law, key: PRNGKeyArray, *, n_steps: int, generator_spec: MLPGeneratorSpec,
                 training: OracleTraining) -> tuple[OracleState, OracleLosses]:
    """`n_steps` Adam steps on L(G_B, Y_B), Y_B ~ law (fresh each step), as one scan.

    Args:
        state: the replica's state.
        law: anything with a jit-traceable `sample(key, n)`: the target (fresh draws) or
            `models.wgan_fresh.EmpiricalLaw(points)` (mu_n).
        key: PRNG key for this chunk.
        n_steps: number of steps (static).
    """
    optimiser = training.optimiser()
    batch = training.batch_size
    dynamic, static = eqx.partition(state, eqx.is_array)

    def body(dynamic_state, step_key):
        current = eqx.combine(dynamic_state, static)
        key_real, key_fake = jax.random.split(step_key)
        real = jnp.asarray(law.sample(key_real, batch), jnp.float32)

        def loss_fn(generator):
            return training.loss(generator_spec.sample(generator, key_fake, batch), real)

        loss, grads = eqx.filter_value_and_grad(loss_fn)(current.generator)
        updates, opt_state = optimiser.update(grads, current.opt_state, _params(current.generator))
        generator = eqx.apply_updates(current.generator, updates)
        diverged_at = jnp.where((current.diverged_at < 0) & ~jnp.isfinite(loss), current.step, current.diverged_at)
        new = OracleState(generator=generator, opt_state=opt_state, step=current.step + 1, diverged_at=diverged_at)
        return eqx.filter(new, eqx.is_array), loss

    dynamic, losses = jax.lax.scan(body, dynamic, jax.random.split(key, n_steps))
    return eqx.combine(dynamic, static), OracleLosses(loss=losses)


@eqx.filter_jit
def train_oracle_replicas(states, laws, keys, *, n_steps: int, generator_spec: MLPGeneratorSpec, training: OracleTraining):
    """Train R oracles at once: states, laws (leading R axis on array leaves) and keys (R,)."""

    def one(state, law, key):
        return oracle_steps(state, law, key, n_steps=n_steps, generator_spec=generator_spec, training=training)

    return eqx.filter_vmap(one)(states, laws, keys)
