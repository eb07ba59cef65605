"""One training loop for every model trained by a single loss: jitted, scanned, vmappable.

``train(model, loss_fn, optimiser=..., batches=..., n_steps=..., key=..., record_every=...)``
runs

    theta_{k+1} = theta_k + u_k,   (u_k, s_{k+1}) = optimiser.update(grad L(theta_k; B_k), s_k, theta_k),
    B_k = batches.draw(key_k),

for k = 0 .. n_steps - 1 as one compiled program: an outer ``jax.lax.scan`` over the
n_steps / record_every records, an inner one over the record_every steps of each, so
the loss curve costs n_steps / record_every numbers of memory whatever n_steps is. The
optional exponential moving average of the weights (Polyak & Juditsky 1992; Ho et al.
2020, App. B) is carried alongside. ``eqx.filter_vmap`` of a function calling ``train``
trains many replicas (seeds, initial models, data sets) as one program, the same code on
CPU or GPU.

Divergence: the first step whose loss, or whose updated parameters, is not finite is
recorded in ``TrainState.diverged_at`` (the 0-based index of that step, -1 if none). The
replica keeps running (its numbers are then NaN or inf) so that, under ``vmap``, the
other replicas are unaffected.

The components are objects: the optimiser is a hashable spec (``AdamSpec``) built into
an optax transform inside the trace (or an ``optax.GradientTransformation`` given
directly), the batches an ``AbstractBatchSource`` (``FiniteSample``, ``FreshDraws``,
``IndependentDraws`` of several with a spare key for the loss, or a model's own noising
source), the average an ``EMA``. A loss may return an auxiliary record (``has_aux``, e.g.
a discriminator's divergence bound) and a non-gradient update may follow each step
(``after_step``: a critic's projection, a VQ-VAE codebook's moving averages). The score,
epsilon, VAE, VQ-VAE and oracle networks and the GAN discriminator alone train here. A model's settings object (e.g.
``models.epsilon_network.EpsilonTraining``) subclasses ``AbstractTraining``, which holds
and validates the fields every training shares.

Training that is not one loss (a GAN's alternating critic and generator steps) keeps its
own step function and shares ``scan_steps``, which scans any step over the array part of
its state, and ``run_in_chunks``, which advances any state between evaluation steps and
gathers what each chunk records.

References:
    Kingma & Ba, "Adam: a method for stochastic optimization", ICLR 2015, Algorithm 1.
    Polyak & Juditsky, "Acceleration of stochastic approximation by averaging", SIAM J.
    Control Optim. 30(4), 1992.
    Ho, Jain & Abbeel, "Denoising diffusion probabilistic models", NeurIPS 2020, App. B
    (EMA 0.9999, gradient clipping at norm 1).
"""

import abc
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, Int, PRNGKeyArray, PyTree

from models import sharding
from theory.validation import check_count, check_real

__all__ = [
    "adversarial_start",
    "all_finite",
    "PARAM_DTYPE",
    "EMA",
    "AbstractBatchSource",
    "AbstractDenoisingBatches",
    "AbstractOptimiserSpec",
    "AbstractTraining",
    "AdamSpec",
    "FiniteSample",
    "FreshDraws",
    "IndependentDraws",
    "TrainResult",
    "TrainState",
    "check_adam_settings",
    "check_real",
    "init_train_state",
    "opponent_values",
    "run_in_chunks",
    "scan_steps",
    "train",
    "train_replicas",
]

PARAM_DTYPE = jnp.float32
"""Dtype of every trained parameter: training runs in float32 even when float64 is enabled."""


def check_adam_settings(settings, *, rates: Sequence[str], decays: Sequence[str], counts: Sequence[str] = ()) -> None:
    """Validate the Adam fields of a settings object (the GAN, WGAN and oracle trainings).

    The same checks, and so the same messages, as every other setting:
    ``theory.validation.check_real`` for the rates and decays (as in ``AdamSpec``),
    ``theory.validation.check_count`` for the counts.

    Args:
        settings: the object whose attributes are checked.
        rates: names of learning rates, each a finite number > 0.
        decays: names of moment decays (b1, b2), each a finite number in [0, 1).
        counts: names of step counts and batch sizes, each an integer >= 1.

    Raises:
        ValueError: naming the field, the constraint and the value (a rate or decay
            that is not finite or out of range, a count below 1).
        TypeError: a rate or decay that is not a real number, a count that is not an
            integer (a bool is neither).
    """
    for name in rates:
        check_real(name, getattr(settings, name), minimum=0.0, include_minimum=False)
    for name in decays:
        check_real(name, getattr(settings, name), minimum=0.0, maximum=1.0, include_maximum=False)
    for name in counts:
        check_count(name, getattr(settings, name))


# --------------------------------------------------------------------------------------
# Optimisers and averages.


class AbstractOptimiserSpec(eqx.Module):
    """Hashable settings of an optimiser, storable in a config; ``build()`` gives the optax
    transform (built inside the trace, so equal specs share one compilation)."""

    @abc.abstractmethod
    def build(self) -> optax.GradientTransformation:
        """The optax gradient transformation."""


class AdamSpec(AbstractOptimiserSpec):
    """Adam, optionally after clipping the gradient's global norm.

    m_k = b1 m_{k-1} + (1 - b1) g_k,  v_k = b2 v_{k-1} + (1 - b2) g_k^2,
    u_k = -learning_rate (m_k / (1 - b1^k)) / (sqrt(v_k / (1 - b2^k)) + eps),
    with g_k replaced by g_k min(1, clip_norm / ||g_k||) when clip_norm is set.

    Args:
        learning_rate: step size, > 0.
        b1: first-moment decay in [0, 1).
        b2: second-moment decay in [0, 1).
        eps: added to the denominator, > 0.
        clip_norm: global-norm clip (> 0), or None for none (Ho et al. 2020: 1).

    Reference: Kingma & Ba (2015), Algorithm 1; Pascanu, Mikolov & Bengio, ICML 2013
    (clipping by norm).
    """

    learning_rate: float = eqx.field(static=True, default=1e-3)
    b1: float = eqx.field(static=True, default=0.9)
    b2: float = eqx.field(static=True, default=0.999)
    eps: float = eqx.field(static=True, default=1e-8)
    clip_norm: float | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        check_real("learning_rate", self.learning_rate, minimum=0.0, include_minimum=False)
        check_real("b1", self.b1, minimum=0.0, maximum=1.0, include_maximum=False)
        check_real("b2", self.b2, minimum=0.0, maximum=1.0, include_maximum=False)
        check_real("eps", self.eps, minimum=0.0, include_minimum=False)
        if self.clip_norm is not None:
            check_real("clip_norm", self.clip_norm, minimum=0.0, include_minimum=False)

    def build(self) -> optax.GradientTransformation:
        """``optax.adam``, chained after ``optax.clip_by_global_norm`` when clip_norm is set."""
        adam = optax.adam(self.learning_rate, b1=self.b1, b2=self.b2, eps=self.eps)
        if self.clip_norm is None:
            return adam
        return optax.chain(optax.clip_by_global_norm(self.clip_norm), adam)


class EMA(eqx.Module):
    """Exponential moving average of the weights: e_k = decay e_{k-1} + (1 - decay) theta_k, e_0 = theta_0.

    Args:
        decay: in (0, 1) (Ho et al. 2020: 0.9999 over 800k steps). No average is
            ``ema=None``, not decay 0.

    Reference: Polyak & Juditsky (1992); Ho et al. (2020), App. B.
    """

    decay: float = eqx.field(static=True, default=0.999)

    def __check_init__(self):
        check_real("decay", self.decay, minimum=0.0, maximum=1.0, include_minimum=False, include_maximum=False)

    def update(self, average: PyTree, params: PyTree) -> PyTree:
        """decay * average + (1 - decay) * params, leaf by leaf."""
        return jax.tree.map(lambda e, p: self.decay * e + (1.0 - self.decay) * p, average, params)


def _build(optimiser) -> optax.GradientTransformation:
    return optimiser.build() if isinstance(optimiser, AbstractOptimiserSpec) else optimiser


def _check_optimiser(optimiser) -> None:
    if not isinstance(optimiser, (AbstractOptimiserSpec, optax.GradientTransformation)):
        raise TypeError(
            f"optimiser must be an AbstractOptimiserSpec (e.g. AdamSpec(1e-3)) or an "
            f"optax.GradientTransformation, got {optimiser!r}"
        )


def _check_ema(ema) -> None:
    if ema is not None and not isinstance(ema, EMA):
        raise TypeError(f"ema must be an EMA or None, got {ema!r}")


# --------------------------------------------------------------------------------------
# Batch sources.


class AbstractBatchSource(eqx.Module):
    """Where training batches come from: ``draw(key)`` returns one batch (any pytree).

    Array fields (data, a sampler's parameters) are traced, so one compilation serves
    new data of the same shape, and ``vmap`` can give each replica its own.
    """

    @abc.abstractmethod
    def draw(self, key: PRNGKeyArray) -> PyTree:
        """One batch, drawn with `key`."""


class FiniteSample(AbstractBatchSource):
    """Uniform draws with replacement from n stored points: the empirical law mu_n.

    B = (x_{I_1}, ..., x_{I_b}),  I_j i.i.d. uniform on {0, ..., n - 1}.

    Args:
        data: the training set, shape ``(n, ...)``, n >= 1; or a pytree of arrays
            sharing the leading axis n (e.g. inputs and targets), indexed jointly.
        batch_size: b >= 1.
    """

    data: PyTree[Float[Array, "n ..."]]
    batch_size: int = eqx.field(static=True)

    def __check_init__(self):
        check_count("batch_size", self.batch_size)
        shapes = [jnp.shape(leaf) for leaf in jax.tree.leaves(self.data)]
        if not shapes or any(len(shape) < 1 or shape[0] != shapes[0][0] for shape in shapes) or shapes[0][0] < 1:
            raise ValueError(f"data must have shape (n, ...) with n >= 1 (every leaf the same n), got shapes {shapes}")

    def draw(self, key: PRNGKeyArray) -> PyTree[Float[Array, "b ..."]]:
        """b rows of `data`, indices uniform with replacement."""
        n = jax.tree.leaves(self.data)[0].shape[0]
        rows = jax.random.randint(key, (self.batch_size,), 0, n)
        return jax.tree.map(lambda leaf: leaf[rows], self.data)


class FreshDraws(AbstractBatchSource):
    """A fresh batch from a sampler every step: ``sample(key, batch_size)``.

    Args:
        sample: (key, n) -> n draws; an Equinox module or ``eqx.Partial`` (e.g. a
            distribution's bound ``sample``) is traced, so a new law of the same
            structure does not recompile.
        batch_size: n >= 1.
    """

    sample: Callable[[PRNGKeyArray, int], PyTree]
    batch_size: int = eqx.field(static=True)

    def __check_init__(self):
        if not callable(self.sample):
            raise TypeError(f"sample must be callable as sample(key, n), got {self.sample!r}")
        check_count("batch_size", self.batch_size)

    def draw(self, key: PRNGKeyArray) -> PyTree:
        """``sample(key, batch_size)``."""
        return self.sample(key, self.batch_size)


class IndependentDraws(AbstractBatchSource):
    """One batch from each of several sources with independent keys, and optionally a spare key.

    (k_1, ..., k_m[, k_loss]) = split(key, m [+ 1]),  B = (S_1.draw(k_1), ..., S_m.draw(k_m)[, k_loss]).

    The spare key serves a loss's own randomness (reparametrised latents, a penalty's
    interpolation points), so that one step key determines the batch and the loss.

    Args:
        sources: a tuple of ``AbstractBatchSource`` (e.g. real and fake points).
        loss_key: whether to append the spare key k_loss to the batch.
    """

    sources: tuple[AbstractBatchSource, ...]
    loss_key: bool = eqx.field(static=True, default=True)

    def __check_init__(self):
        if not isinstance(self.sources, tuple) or not self.sources or not all(
            isinstance(source, AbstractBatchSource) for source in self.sources
        ):
            raise TypeError(f"sources must be a non-empty tuple of AbstractBatchSource, got {self.sources!r}")

    def draw(self, key: PRNGKeyArray) -> tuple:
        """The sources' batches in order, then k_loss when loss_key."""
        keys = jax.random.split(key, len(self.sources) + int(self.loss_key))
        batches = tuple(source.draw(k) for source, k in zip(self.sources, keys))
        return batches + (keys[-1],) if self.loss_key else batches


class AbstractDenoisingBatches(AbstractBatchSource):
    """Batches of a denoising loss: clean draws, one noise level per example, and the noise.

    B = (x, l, z): x = clean.draw(k_clean) (b, d), l = draw_levels(k_level, b) (b,),
    z ~ N(0, I) (b, d), all float32, with (k_clean, k_level, k_noise) = split(key, 3)
    in that order. The level is a noise scale sigma (denoising score matching,
    ``models.score_network.DSMBatches``) or a diffusion time t (Ho et al.'s simple loss,
    ``models.epsilon_network.SimpleLossBatches``); a subclass says how it is drawn.

    Attributes:
        clean: the clean draws' source (``FreshDraws(sample, b)`` or ``FiniteSample(data, b)``).
    """

    clean: eqx.AbstractVar[AbstractBatchSource]

    def __check_init__(self):
        if not isinstance(self.clean, AbstractBatchSource):
            raise TypeError(f"clean must be an AbstractBatchSource, got {self.clean!r}")

    @abc.abstractmethod
    def draw_levels(self, key: PRNGKeyArray, n: int) -> Float[Array, " n"]:
        """n noise levels, float32, one per example."""

    def draw(self, key: PRNGKeyArray) -> tuple[Float[Array, "b d"], Float[Array, " b"], Float[Array, "b d"]]:
        """(clean, level, noise), shapes (b, d), (b,), (b, d)."""
        key_clean, key_level, key_noise = jax.random.split(key, 3)
        clean = self.clean.draw(key_clean).astype(PARAM_DTYPE)
        level = self.draw_levels(key_level, clean.shape[0])
        noise = jax.random.normal(key_noise, clean.shape, PARAM_DTYPE)
        return clean, level, noise


# --------------------------------------------------------------------------------------
# Settings shared by the models' training objects.


class AbstractTraining(eqx.Module):
    """The fields every single-loss training has; a model's settings subclass it.

    Attributes:
        optimiser: the optimiser spec.
        steps: optimiser steps, >= 1.
        batch_size: examples per step, >= 1.
        record_every: the loss is averaged over blocks of this many steps (must divide
            steps).
        ema: the weights' moving average, or None.
    """

    optimiser: eqx.AbstractVar[AbstractOptimiserSpec]
    steps: eqx.AbstractVar[int]
    batch_size: eqx.AbstractVar[int]
    record_every: eqx.AbstractVar[int]
    ema: eqx.AbstractVar[EMA | None]

    def __check_init__(self):
        if not isinstance(self.optimiser, AbstractOptimiserSpec):
            raise TypeError(f"optimiser must be an AbstractOptimiserSpec (e.g. AdamSpec(1e-3)), got {self.optimiser!r}")
        check_count("steps", self.steps)
        check_count("batch_size", self.batch_size)
        check_count("record_every", self.record_every)
        if self.steps % self.record_every:
            raise ValueError(f"record_every must divide steps={self.steps}, got {self.record_every}")
        if self.ema is not None and not isinstance(self.ema, EMA):
            raise TypeError(f"ema must be an EMA or None, got {self.ema!r}")

    def loop_settings(self) -> dict[str, Any]:
        """The keyword arguments of ``train`` and ``train_replicas`` that these settings fix:
        ``optimiser``, ``record_every`` and ``ema``."""
        return {"optimiser": self.optimiser, "record_every": self.record_every, "ema": self.ema}


# --------------------------------------------------------------------------------------
# The loop.


class TrainState(eqx.Module):
    """Everything a run carries from one step to the next (vmappable: stack replicas).

    Attributes:
        model: the current iterate theta_k.
        opt_state: the optimiser's state.
        ema_model: the moving average of the weights (same structure as model), or None.
        step: k, the number of steps taken, int32 scalar.
        diverged_at: 0-based index of the first step whose loss or updated parameters
            were not finite, -1 if none, int32 scalar.
    """

    model: PyTree
    opt_state: optax.OptState
    ema_model: PyTree | None
    step: Int[Array, ""]
    diverged_at: Int[Array, ""]


class TrainResult(eqx.Module):
    """What ``train`` returns (under ``vmap`` every array gains the replica axis).

    Attributes:
        state: the final ``TrainState``; pass it back to ``train`` to continue.
        losses: float32 (n_steps / record_every,), the mean loss over each block of
            record_every steps (with a fresh batch each step, an unbiased estimate of
            the population loss along training).
        steps: int32 (n_steps / record_every,), the step count at the end of each block.
        aux: with ``has_aux``, the block means of the loss's auxiliary output (each leaf
            gains the leading axis n_steps / record_every); None otherwise.
    """

    state: TrainState
    losses: Float[Array, " r"]
    steps: Int[Array, " r"]
    aux: PyTree | None = None

    @property
    def model(self) -> PyTree:
        """The last iterate."""
        return self.state.model

    @property
    def ema_model(self) -> PyTree | None:
        """The weights' moving average, or None when no EMA was kept."""
        return self.state.ema_model

    @property
    def diverged_at(self) -> Int[Array, ""]:
        """0-based index of the first non-finite step, -1 if none."""
        return self.state.diverged_at


def _params(model) -> PyTree:
    return eqx.filter(model, eqx.is_inexact_array)


def _check_float32(model) -> None:
    dtypes = {leaf.dtype for leaf in jax.tree.leaves(_params(model))}
    if not dtypes:
        raise ValueError("model must hold at least one floating-point array to train, got none")
    if dtypes != {jnp.dtype(PARAM_DTYPE)}:
        raise ValueError(f"model parameters must be float32 (training runs in float32), got dtypes {sorted(map(str, dtypes))}")


def init_train_state(model: PyTree, *, optimiser, ema: EMA | None = None) -> TrainState:
    """The state at step 0: theta_0 = model, the optimiser's initial state, e_0 = theta_0.

    Args:
        model: an Equinox model (or any pytree) with float32 floating-point leaves; those
            leaves are the trained parameters, every other leaf is held fixed.
        optimiser: an ``AbstractOptimiserSpec`` or an ``optax.GradientTransformation``.
        ema: an ``EMA`` or None.

    Returns:
        A ``TrainState`` (vmappable over models: ``eqx.filter_vmap(init_train_state)``).
    """
    _check_optimiser(optimiser)
    _check_ema(ema)
    return TrainState(
        model=model,
        opt_state=_build(optimiser).init(_params(model)),
        ema_model=None if ema is None else model,
        step=jnp.zeros((), jnp.int32),
        diverged_at=jnp.full((), -1, jnp.int32),
    )


def all_finite(tree) -> Array:
    """Whether every floating-point leaf of `tree` is finite (a bool scalar; traceable)."""
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(_params(tree))]))


def scan_steps(step: Callable[[Any, Any], tuple[Any, Any]], state: Any, xs: Any) -> tuple[Any, Any]:
    """``step`` applied along the leading axis of `xs` as one ``jax.lax.scan``, carrying the state's arrays only.

    (state_{k+1}, r_k) = step(state_k, xs[k]) for k = 0 .. len(xs) - 1. A model's
    non-array leaves (activation functions, static settings) cannot be scan carries, so
    the array part is carried and recombined with the rest inside the body; the rest
    must be the same after every step (it is, for an optimiser step). The single-loss
    ``train``, a GAN's generator and discriminator steps and the fresh-draw WGAN scan
    their own steps through it (``models.wgan.train_steps`` loops with ``fori_loop``
    instead, for its traced step count).

    Args:
        step: (state, x) -> (new state, record), traceable.
        state: any pytree (an Equinox model, a training state, a tuple of them).
        xs: what each step reads (step keys ``jax.random.split(key, n)``), a pytree of
            arrays sharing the leading axis n.

    Returns:
        The final state and the records stacked along a new leading axis n.
    """
    dynamic, static = eqx.partition(state, eqx.is_array)

    def body(carry, x):
        new_state, record = step(eqx.combine(carry, static), x)
        return eqx.filter(new_state, eqx.is_array), record

    dynamic, records = jax.lax.scan(body, dynamic, xs)
    return eqx.combine(dynamic, static), records


def adversarial_start(key: PRNGKeyArray, *, generator_spec, opponent_spec, generator_optimiser: optax.GradientTransformation,
                      opponent_optimiser: optax.GradientTransformation, data_dim: int) -> tuple:
    """Step 0 of a two-player training (a GAN's generator and discriminator, a WGAN's critic).

    The key is split in two, the first building the generator and the second its opponent;
    each optimiser starts on its network's floating-point leaves. Vmappable over keys.

    Returns:
        (generator, opponent, generator_opt_state, opponent_opt_state, step = 0,
        diverged_at = -1): the fields, in order, of ``models.wgan.WGANState`` and
        ``models.gan_training.GANState``.
    """
    key_generator, key_opponent = jax.random.split(key)
    generator = generator_spec.build(key_generator, data_dim)
    opponent = opponent_spec.build(key_opponent, data_dim)
    return (generator, opponent, generator_optimiser.init(_params(generator)), opponent_optimiser.init(_params(opponent)),
            jnp.zeros((), jnp.int32), jnp.full((), -1, jnp.int32))


@eqx.filter_jit
def opponent_values(opponents, points: Float[Array, "R m d"]) -> Float[Array, "R m"]:
    """v_r(x) for each of R stacked critics or discriminators on its own m points (R, m, d) -> (R, m).

    Exported as ``models.wgan.critic_values`` and ``models.gan_training.discriminator_values``
    (unconditional networks of one input).
    """
    return eqx.filter_vmap(lambda network, x: jax.vmap(network)(x))(opponents, points)


@eqx.filter_jit
def _train(state: TrainState, loss_fn, optimiser, batches: AbstractBatchSource, key, n_steps: int, record_every: int, ema,
           has_aux: bool, after_step):
    transform = _build(optimiser)

    def step(state, step_key):
        params, frozen = eqx.partition(state.model, eqx.is_inexact_array)
        batch = batches.draw(step_key)
        (loss, aux), grads = jax.value_and_grad(
            lambda p: _with_aux(loss_fn(eqx.combine(p, frozen), batch), has_aux), has_aux=True
        )(params)
        updates, opt_state = transform.update(grads, state.opt_state, params)
        model = eqx.combine(optax.apply_updates(params, updates), frozen)
        if after_step is not None:
            model = after_step(model, state.model, batch)
        params = _params(model)
        finite = jnp.isfinite(loss) & all_finite(params)
        diverged_at = jnp.where((state.diverged_at < 0) & ~finite, state.step, state.diverged_at)
        ema_model = state.ema_model
        if ema is not None:
            ema_model = eqx.combine(ema.update(_params(ema_model), params), frozen)
        new_state = TrainState(
            model=model,
            opt_state=opt_state,
            ema_model=ema_model,
            step=state.step + 1,
            diverged_at=diverged_at.astype(jnp.int32),
        )
        return new_state, (loss, aux)

    def record(state, record_keys):
        state, (losses, aux) = scan_steps(step, state, record_keys)
        return state, (jnp.mean(losses), jax.tree.map(lambda a: jnp.mean(a, axis=0), aux), state.step)

    n_records = n_steps // record_every
    keys = jax.random.split(key, n_steps)
    keys = keys.reshape((n_records, record_every) + keys.shape[1:])
    state, (losses, aux, steps) = scan_steps(record, state, keys)
    return TrainResult(state=state, losses=losses, steps=steps, aux=aux if has_aux else None)


def _with_aux(output, has_aux: bool):
    return output if has_aux else (output, None)


def train(
    model: PyTree | TrainState,
    loss_fn: Callable[[PyTree, PyTree], Float[Array, ""]],
    *,
    optimiser,
    batches: AbstractBatchSource,
    n_steps: int,
    key: PRNGKeyArray,
    record_every: int,
    ema: EMA | None = None,
    has_aux: bool = False,
    after_step: Callable[[PyTree, PyTree, PyTree], PyTree] | None = None,
) -> TrainResult:
    """Minimise E_B loss_fn(theta, B) by `n_steps` optimiser steps, one compiled scan.

    theta_{k+1} = theta_k + u_k with u_k from the optimiser applied to
    grad_theta loss_fn(theta_k, B_k), B_k = batches.draw(key_k); the keys key_0..key_{n-1}
    are ``jax.random.split(key, n_steps)`` in order. Jitted (``eqx.filter_jit``); call it
    inside ``eqx.filter_vmap`` to train replicas at once.

    Args:
        model: the initial model (float32 floating-point leaves are trained, every other
            leaf is held fixed), or a ``TrainState`` from an earlier call to continue
            (same optimiser and ema).
        loss_fn: (model, batch) -> scalar loss. Pass the same function object each
            call (a module-level function, not a fresh lambda) to reuse the compilation.
        optimiser: an ``AbstractOptimiserSpec`` (``AdamSpec(1e-3)``) or an
            ``optax.GradientTransformation``.
        batches: an ``AbstractBatchSource``.
        n_steps: steps, >= 1, a multiple of record_every.
        key: PRNG key of the batches.
        record_every: the loss is averaged over blocks of this many steps, >= 1.
        ema: an ``EMA`` to carry the weights' moving average, or None.
        has_aux: loss_fn returns (loss, aux) (aux a pytree of arrays, e.g. a bound
            evaluated on the batch); the block means of aux come back in ``.aux``.
        after_step: (updated model, model before the step, batch) -> model, a
            non-gradient update applied after every optimiser step (a projection onto
            a constraint set, a codebook's moving averages), or None. Divergence and
            the EMA see its result.

    Returns:
        A ``TrainResult``: final state (model, ema_model, diverged_at), the loss curve
        and, with has_aux, the auxiliary curve.

    Reference: Kingma & Ba (2015), Algorithm 1 (with ``AdamSpec``).
    """
    n_steps = check_count("n_steps", n_steps)
    record_every = check_count("record_every", record_every)
    if n_steps % record_every:
        raise ValueError(f"record_every must divide n_steps={n_steps}, got {record_every}")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable as loss_fn(model, batch), got {loss_fn!r}")
    if not isinstance(batches, AbstractBatchSource):
        raise TypeError(f"batches must be an AbstractBatchSource (FiniteSample, FreshDraws, ...), got {batches!r}")
    _check_optimiser(optimiser)
    _check_ema(ema)
    if not isinstance(has_aux, bool):
        raise TypeError(f"has_aux must be a bool, got {has_aux!r}")
    if after_step is not None and not callable(after_step):
        raise TypeError(f"after_step must be None or callable as after_step(model, previous_model, batch), got {after_step!r}")
    if key is None:
        raise ValueError("key must be a JAX PRNG key, got None")
    if isinstance(model, TrainState):
        state = model
        if (state.ema_model is None) != (ema is None):
            raise ValueError(
                f"ema must match the state being continued: the state {'has no' if state.ema_model is None else 'has an'} "
                f"EMA, got ema={ema!r}"
            )
    else:
        _check_float32(model)
        state = init_train_state(model, optimiser=optimiser, ema=ema)
    _check_float32(state.model)
    return _train(state, loss_fn, optimiser, batches, key, n_steps, record_every, ema, has_aux, after_step)


def _train_one(model, key, **settings) -> TrainResult:
    return train(model, key=key, **settings)


def train_replicas(
    models: PyTree | TrainState,
    loss_fn: Callable[[PyTree, PyTree], Float[Array, ""]],
    *,
    optimiser,
    batches: AbstractBatchSource,
    n_steps: int,
    keys: PRNGKeyArray,
    record_every: int,
    ema: EMA | None = None,
    mesh: jax.sharding.Mesh | None = None,
) -> TrainResult:
    """``train`` for R replicas at once (seeds, initial models), optionally split over devices.

    Replica r runs the arithmetic of ``train(models[r], loss_fn, ..., key=keys[r])``: the
    update theta_{k+1} = theta_k + u_k on batches B_k = batches.draw(key_k), one compiled
    program vmapped over the replica axis (equal to the separate run up to float32
    rounding: vmap may order the batched products' sums differently). The batch source is shared by every replica
    (each draws its own batches from its own key).

    Args:
        models: R initial models stacked along a leading axis (``eqx.filter_vmap`` of a
            spec's ``build`` over R keys), or a stacked ``TrainState`` to continue.
        loss_fn, optimiser, batches, n_steps, record_every, ema: as for ``train``.
        keys: (R,) PRNG keys of the batches, one per replica.
        mesh: a ``models.sharding.replica_mesh``: the replica axis is split over its
            devices (R padded to a multiple of the device count, the padding dropped);
            None runs the plain program on the default device.

    Returns:
        A ``TrainResult`` whose arrays carry the replica axis first: ``losses`` and
        ``steps`` of shape (R, n_steps / record_every), ``diverged_at`` (R,).

    Reference: JAX documentation, "Distributed arrays and automatic parallelization"
    (the replicas are independent, so the split needs no communication).
    """
    if keys is None or not jnp.ndim(keys):
        raise ValueError(f"keys must be an (R,) array of PRNG keys, one per replica, got {keys!r}")
    return sharding.vmap_sharded(_train_one, models, keys, mesh=mesh, loss_fn=loss_fn, optimiser=optimiser,
                                 batches=batches, n_steps=n_steps, record_every=record_every, ema=ema)


# --------------------------------------------------------------------------------------
# Chunks between evaluations.


def run_in_chunks(
    advance: Callable[[Any, int, int], tuple[Any, Any]],
    state: Any,
    boundaries: Sequence[int],
    *,
    on_boundary: Callable[[Any, int, Any], None] | None = None,
) -> tuple[Any, list[tuple[int, Any]]]:
    """Advance a training state from boundary to boundary and gather each chunk's record.

    For each boundary b_j (increasing, from 0): when b_j exceeds the steps done,
    ``state, record = advance(state, done, b_j)`` runs steps done .. b_j - 1 (one
    compiled call: keep the chunk length fixed to reuse the compilation); then
    ``on_boundary(state, b_j, record)`` (evaluation, progress; record is None at a
    boundary with no new steps, e.g. 0).

    Overlap: ``on_boundary`` may return a callable, the host-side rest of its work (e.g.
    exact optimal transport on points it has already copied from the device). It is
    called after the next chunk has been dispatched, so that it runs while the device
    trains (``advance`` must not block: JAX dispatches asynchronously), and before the
    next ``on_boundary``, so the order of every side effect is unchanged.

    Args:
        advance: (state, start, stop) -> (state, record); e.g. a ``train`` call on
            ``stop - start`` steps with a key folded with ``stop``.
        state: the initial state (anything ``advance`` accepts, replicas stacked or not).
        boundaries: nondecreasing step counts >= 0.
        on_boundary: called after reaching each boundary, or None.

    Returns:
        The final state and the list of (stop, record) of the chunks that ran.
    """
    if not callable(advance):
        raise TypeError(f"advance must be callable as advance(state, start, stop), got {advance!r}")
    boundaries = [check_count("boundaries", b, minimum=0) for b in boundaries]
    if any(b < a for a, b in zip(boundaries, boundaries[1:])):
        raise ValueError(f"boundaries must be nondecreasing, got {boundaries}")
    done, records, pending = 0, [], None
    for stop in boundaries:
        record = None
        if stop > done:
            state, record = advance(state, done, stop)
            records.append((stop, record))
            done = stop
        if pending is not None:
            pending, finish = None, pending
            finish()
        if on_boundary is not None:
            pending = on_boundary(state, stop, record)
            if pending is not None and not callable(pending):
                raise TypeError(f"on_boundary must return None or a callable (the host-side rest), got {pending!r}")
    if pending is not None:
        pending()
    return state, records
