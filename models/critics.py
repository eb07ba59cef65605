"""WGAN critics D_q: GroupSort ("MaxMin") networks under four Lipschitz constraints.

A critic is chosen in a config as a *spec*, a frozen hashable object such as
``BjorckGroupSortSpec(depth=5)``; ``spec.build(key, in_dim)`` returns the network, and the
training loop calls ``spec.penalty`` (added to the critic loss) and ``spec.project``
(after every optimiser step), so that no loop ever branches on the kind of critic.

Every network maps ONE sample ``x`` of shape ``(d,)`` to a scalar (``jax.vmap`` it over a
batch), holds float32 parameters whatever ``jax_enable_x64`` says, computes in that
dtype, and exposes ``weight_matrices()``: the effective matrices of its forward pass, from
which ``models.lipschitz`` bounds its Lipschitz constant. Every linear layer owns its
weights: the public code's ``[Linear, act] * (depth - 1)`` shares one module between all
hidden layers, which is not reproduced here.

Depth convention: ``depth`` is the number of linear layers, so ``depth = q`` is
``in_dim -> width -> ... -> width -> 1`` with ``q - 1`` MaxMin activations. (The public code
tanouch/synthetic_gans builds ``d_depth + 1`` linear layers for ``d_depth = q``.)

References:
    Anil, Lucas & Grosse, "Sorting out Lipschitz function approximation", ICML 2019.
    Biau, Sangnier & Tanielian, "Some theoretical insights into Wasserstein GANs",
    JMLR 2021.
"""

import abc
import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from theory.validation import check_count, check_in_interval, check_positive_number

PARAM_DTYPE = jnp.float32
"""Dtype of every parameter: training runs in float32 even when float64 is enabled."""

Batch = Float[Array, "batch d"]
"""A batch of points, as the critic loss and its penalty read them."""

SPECTRAL_NORM_BUILD_ITERATIONS = 20
"""Power iterations run at build time, so a fresh spectral-norm critic starts with an
estimate of each sigma(W) close to the truth rather than from a random vector."""


# --------------------------------------------------------------------------------------
# Activation.


def maxmin(x: Float[Array, " width"]) -> Float[Array, " width"]:
    """GroupSort with groups of 2 ("MaxMin"): sort each consecutive pair, ascending.

    ``maxmin(x)[2i], maxmin(x)[2i + 1] = min(x[2i], x[2i+1]), max(x[2i], x[2i+1])``.
    Its Jacobian is a permutation matrix almost everywhere, so it is 1-Lipschitz and
    preserves gradient norms. Reverse mode (``jax.grad``, ``jax.jacrev``, to any order)
    uses a one-select backward pass with JAX's values; forward mode (``jax.jvp``,
    ``jax.jacfwd``) is not defined for it (JAX raises a ``TypeError``).

    Args:
        x: pre-activations, shape ``(width,)`` with ``width`` even.

    Returns:
        The pairwise-sorted vector, shape ``(width,)``.

    Reference: Anil, Lucas & Grosse (2019), section 4 (GroupSort, MaxMin).
    """
    if x.shape[-1] % 2:
        raise ValueError(f"maxmin needs an even number of units, got {x.shape[-1]}")
    return _maxmin(x)


def _pairs(x: Float[Array, "... width"]) -> Float[Array, "... half 2"]:
    return x.reshape(*x.shape[:-1], x.shape[-1] // 2, 2)


@jax.custom_vjp
def _maxmin(x):
    # Each unit meets its partner through a reversal within its pair, and a constant
    # low/high mask picks min or max: elementwise ops and a reversal, which XLA fuses into
    # one loop. Exact: no arithmetic on the values.
    pairs = _pairs(x)
    partner = pairs[..., ::-1]
    is_low = jnp.arange(2) == 0
    return jnp.where(is_low, jnp.minimum(pairs, partner), jnp.maximum(pairs, partner)).reshape(x.shape)


def _maxmin_forward(x):
    pairs = _pairs(x)
    return _maxmin(x), (pairs[..., 0] > pairs[..., 1], pairs[..., 0] == pairs[..., 1])


def _maxmin_backward(residuals, cotangent):
    """The cotangent of maxmin: each pair's cotangent, swapped where the pair was swapped.

    The Jacobian is a permutation within each pair (away from ties), its own transpose,
    so the backward pass is one select on masks saved by the forward pass. At a tie
    each unit takes half of each output's cotangent, as JAX's rules for
    ``minimum``/``maximum`` give. Differentiated by JAX's own rules, maxmin's backward
    pass adds the two paths of every unit (itself and its partner's reversal), each with
    a tie test and a division, and recomputes the forward pass inside it: in the WGAN
    step that was a fifth to a quarter of the time. The numbers are the same, bit for
    bit, in first and second order (tested).
    """
    swapped, tie = residuals
    pairs = _pairs(cotangent)
    partner = pairs[..., ::-1]
    out = jnp.where(tie[..., None], 0.5 * (pairs + partner), jnp.where(swapped[..., None], partner, pairs))
    return (out.reshape(cotangent.shape),)


_maxmin.defvjp(_maxmin_forward, _maxmin_backward)


# --------------------------------------------------------------------------------------
# Linear layers.


def bjorck_orthonormalise(
    weight: Float[Array, "out in"], *, iterations: int, beta: float = 0.5, min_scale: float = 0.0
) -> Float[Array, "out in"]:
    """Björck's orthonormalisation of order 1, after a safe rescaling.

    ``W_0 = W / c`` with ``c = max(sqrt(||G||_inf), min_scale) >= sigma_max(W)``, where
    ``G`` is the smaller of the Gram matrices ``W^T W`` and ``W W^T``; then
    ``W_{k+1} = (1 + beta) W_k - beta W_k W_k^T W_k`` for ``k < iterations``.

    Each step maps every singular value by ``s -> (1 + beta) s - beta s^3``. The rescaling
    puts them in ``(0, 1]`` (``||G||_2 <= ||G||_inf`` because an induced norm bounds the
    spectral radius), and for ``0 < beta <= 1/2`` that map is increasing on ``[0, 1]``
    and fixes 1, so the singular values stay in ``[0, 1]`` and increase to 1: the
    result has spectral norm <= 1 after ANY number of iterations, and converges to the
    orthonormal polar factor of ``W``. For orthonormal ``W``, ``G = I`` and ``c = 1``:
    an orthogonally initialised layer starts at the fixed point. (The rescaling is also
    tighter than ``sqrt(||W||_1 ||W||_inf)``, since ``||W^T W||_inf <= ||W||_1 ||W||_inf``.)
    Differentiable in ``W``.

    Args:
        weight: raw weight, shape ``(out, in)``.
        iterations: number of Björck steps, ``>= 0``.
        beta: step parameter, in ``(0, 1/2]`` for the guarantee above.
        min_scale: a floor on ``c``, ``>= 0``. The public code divides by the constant
            ``sqrt(out * in)``; passing it here reproduces that scaling whenever it is
            safe (``sqrt(out * in) >= sqrt(||G||_inf)``) and keeps the guarantee when
            it is not. A larger ``c`` only shrinks ``W_0``, so ``||W_0||_2 <= 1`` holds.

    Returns:
        The (approximately) orthonormalised weight, shape ``(out, in)``, same dtype.

    Reference: Björck & Bowie, "An iterative algorithm for computing the best estimate
    of an orthogonal matrix", SIAM J. Numer. Anal. 8(2), 1971; Anil, Lucas & Grosse
    (2019), eq. (2) with p = 1.
    """
    tall = weight.shape[0] >= weight.shape[1]
    gram = weight.T @ weight if tall else weight @ weight.T
    bound_sq = jnp.max(jnp.sum(jnp.abs(gram), axis=1))
    # A zero matrix stays zero instead of becoming 0/0.
    scale = jnp.maximum(jnp.sqrt(jnp.where(bound_sq > 0, bound_sq, 1.0)), min_scale)
    w = weight / scale
    for _ in range(iterations):
        # W W^T W associated so the Gram matrix is the smaller one.
        cubic = w @ (w.T @ w) if tall else (w @ w.T) @ w
        w = (1 + beta) * w - beta * cubic
    return w


class AbstractLinear(eqx.Module):
    """An affine layer ``x -> W_eff x + b`` whose effective weight a subclass defines."""

    weight: eqx.AbstractVar[Float[Array, "out in"]]
    bias: eqx.AbstractVar[Float[Array, " out"]]

    @abc.abstractmethod
    def effective_weight(self) -> Float[Array, "out in"]:
        """The matrix actually applied in the forward pass."""

    def __call__(self, x: Float[Array, " in"]) -> Float[Array, " out"]:
        return self.effective_weight() @ x + self.bias


class UnconstrainedLinear(AbstractLinear):
    """A plain affine layer ``x -> W x + b``."""

    weight: Float[Array, "out in"]
    bias: Float[Array, " out"]

    def effective_weight(self) -> Float[Array, "out in"]:
        return self.weight


class BjorckLinear(AbstractLinear):
    """An affine layer whose weight is orthonormalised in every forward pass.

    ``x -> bjorck_orthonormalise(W, iterations, beta, min_scale) x + b``; see
    ``bjorck_orthonormalise`` for the equation and the guarantee ``||W_eff||_2 <= 1``.
    """

    weight: Float[Array, "out in"]
    bias: Float[Array, " out"]
    iterations: int = eqx.field(static=True)
    beta: float = eqx.field(static=True)
    min_scale: float = eqx.field(static=True, default=0.0)

    def effective_weight(self) -> Float[Array, "out in"]:
        return bjorck_orthonormalise(
            self.weight, iterations=self.iterations, beta=self.beta, min_scale=self.min_scale
        )

    def orthonormalise_stored(self, iterations: int) -> "BjorckLinear":
        """The same layer with ``W`` replaced by ``bjorck_orthonormalise(W, iterations)``.

        The stored weight then starts the next forward pass's iteration next to its
        fixed point, where each step squares the distance of the singular values to 1.
        """
        weight = bjorck_orthonormalise(self.weight, iterations=iterations, beta=self.beta)
        return eqx.tree_at(lambda layer: layer.weight, self, weight)


def _unit(v: Float[Array, " n"]) -> Float[Array, " n"]:
    return v / jnp.maximum(jnp.linalg.norm(v), jnp.finfo(v.dtype).tiny)


class SpectralNormLinear(AbstractLinear):
    """An affine layer whose weight is divided by a power-iteration estimate of sigma(W).

    ``x -> (W / sigma_hat) x + b`` with ``sigma_hat = u^T W v``, ``v = W^T u / ||W^T u||``,
    and ``u`` (shape ``(out,)``) the left singular vector estimate carried in the module
    and advanced by ``power_iterate``. ``u`` and ``v`` are constants for the gradient, as
    in Miyato et al.; then ``d sigma_hat / dW = u v^T``. ``sigma_hat <= sigma_max(W)``, so
    ``||W_eff||_2 >= 1`` until the iteration has converged.

    Reference: Miyato, Kataoka, Koyama & Yoshida, "Spectral normalization for generative
    adversarial networks", ICLR 2018, Algorithm 1 and eq. (8).
    """

    weight: Float[Array, "out in"]
    bias: Float[Array, " out"]
    u: Float[Array, " out"]

    def spectral_norm_estimate(self) -> Float[Array, ""]:
        """``sigma_hat = u^T W v``, a lower bound on the largest singular value of W."""
        u = jax.lax.stop_gradient(self.u)
        v = jax.lax.stop_gradient(_unit(self.weight.T @ u))
        return u @ (self.weight @ v)

    def effective_weight(self) -> Float[Array, "out in"]:
        return self.weight / self.spectral_norm_estimate()

    def power_iterate(self, steps: int) -> "SpectralNormLinear":
        """Advance ``u <- W W^T u / ||W W^T u||`` by ``steps`` steps; weights unchanged."""

        def step(_, u):
            return _unit(self.weight @ _unit(self.weight.T @ u))

        u = jax.lax.fori_loop(0, steps, step, jax.lax.stop_gradient(self.u))
        return eqx.tree_at(lambda layer: layer.u, self, u)


# --------------------------------------------------------------------------------------
# The network.


class GroupSortMLP(eqx.Module):
    """A MaxMin network ``D(x) = L_q(maxmin(L_{q-1}(... maxmin(L_1(x)))))``, scalar out.

    Each ``L_k`` is an affine layer with its own parameters. Because maxmin is
    1-Lipschitz, ``Lip(D) <= prod_k ||W_eff,k||_2``.
    """

    layers: tuple[AbstractLinear, ...]

    def __call__(self, x: Float[Array, " d"]) -> Float[Array, ""]:
        """Evaluate the critic at one sample.

        Args:
            x: one sample, shape ``(d,)``; cast to the parameters' dtype (float32).

        Returns:
            The critic value, shape ``()``.
        """
        h = jnp.asarray(x).astype(self.layers[0].weight.dtype)
        for layer in self.layers[:-1]:
            h = maxmin(layer(h))
        return self.layers[-1](h).reshape(())

    def weight_matrices(self) -> list[Float[Array, "out in"]]:
        """The effective weight matrices of the forward pass, input layer first."""
        return [layer.effective_weight() for layer in self.layers]


def _layer_dims(in_dim: int, depth: int, width: int) -> list[tuple[int, int]]:
    dims = [in_dim] + [width] * (depth - 1) + [1]
    return list(zip(dims[:-1], dims[1:]))


def _uniform_weight_and_bias(
    key: PRNGKeyArray, in_dim: int, out_dim: int
) -> tuple[Float[Array, "out in"], Float[Array, " out"]]:
    # PyTorch's nn.Linear default, U(-1/sqrt(in), 1/sqrt(in)), as in the public code's
    # unconstrained baseline.
    weight_key, bias_key = jax.random.split(key)
    limit = 1.0 / math.sqrt(in_dim)
    weight = jax.random.uniform(
        weight_key, (out_dim, in_dim), PARAM_DTYPE, minval=-limit, maxval=limit
    )
    bias = jax.random.uniform(bias_key, (out_dim,), PARAM_DTYPE, minval=-limit, maxval=limit)
    return weight, bias


# --------------------------------------------------------------------------------------
# Validation, shared by the specs.


def _check_architecture(depth, width) -> None:
    check_count("depth", depth, minimum=1)
    check_count("width", width, minimum=2)
    if width % 2:
        raise ValueError(f"width must be even (MaxMin sorts pairs of units), got {width}")


def _check_in_dim(in_dim) -> None:
    check_count("in_dim", in_dim, minimum=1)


# --------------------------------------------------------------------------------------
# Specs.


class AbstractCriticSpec(eqx.Module):
    """How to build, regularise and constrain a WGAN critic D_q.

    The critic is trained to minimise ``mean D(fake) - mean D(real) + penalty``, with
    ``project`` applied after every optimiser step.
    """

    depth: eqx.AbstractVar[int]
    width: eqx.AbstractVar[int]

    @abc.abstractmethod
    def build(self, key: PRNGKeyArray, in_dim: int) -> GroupSortMLP:
        """A fresh critic on ``R^in_dim``; vmappable over ``key``."""

    def penalty(self, critic: GroupSortMLP, real: Batch, fake: Batch, *, key: PRNGKeyArray) -> Float[Array, ""]:
        """The term added to the critic loss: zero, in the critic's dtype, unless the spec
        regularises by a penalty (``GradientPenaltyMLPSpec``)."""
        return jnp.zeros((), critic.layers[-1].bias.dtype)

    @abc.abstractmethod
    def project(self, critic: GroupSortMLP) -> GroupSortMLP:
        """Applied after every optimiser step (identity unless the spec constrains)."""


BJORCK_INITS = ("orthonormal", "public")
"""The initialisations a ``BjorckGroupSortSpec`` critic offers (see its docstring)."""


class BjorckGroupSortSpec(AbstractCriticSpec):
    """The paper's critic: Björck-orthonormalised linear layers and MaxMin activations.

    ``D(x) = L_q(maxmin(... maxmin(L_1(x))))`` with
    ``L_k(h) = bjorck_orthonormalise(W_k, iterations, beta, min_scale_k) h + b_k``. Every
    effective weight has spectral norm <= 1 after any number of iterations (see
    ``bjorck_orthonormalise``), so D is 1-Lipschitz by construction; no penalty.

    Two initialisations (biases ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` in both):

    - ``"orthonormal"`` (default): ``W_k`` orthogonal with gain 1 and the data-dependent
      safe scaling ``c = sqrt(||W^T W||_inf)`` (``min_scale = 0``), so every layer starts
      exactly orthonormal, at the iteration's fixed point.
    - ``"public"``: as the public code (Anil et al.'s ``BjorckLinear``, used by Biau et
      al.): ``W_k`` orthogonal with gain ``1/sqrt(fan_in)`` and the constant scaling
      ``c = sqrt(fan_out * fan_in)`` (``min_scale_k = sqrt(fan_out * fan_in)``), so the
      scaled singular values start at ``1 / (fan_in sqrt(fan_out))`` (0.006 for a 30 x
      30 layer, about 0.02 after the default 3 iterations), far below 1. Where the constant
      would be unsafe (``sqrt(||W^T W||_inf) > c``, which the public code does not
      check), the safe value is used instead, so the certificate holds in both.

    ``project_iterations > 0`` carries the orthonormalised weights between steps:
    after every optimiser step the stored ``W_k`` is replaced by
    ``bjorck_orthonormalise(W_k, project_iterations)``, so the next forward pass
    starts next to the fixed point, where one step maps ``1 - delta`` to
    ``1 - 3 delta^2 / 2 + O(delta^3)`` (beta = 1/2), and ``iterations = 1`` then keeps
    the layers orthonormal to float32 precision. This changes the optimisation (the
    raw weights no longer drift in scale), not the 1-Lipschitz certificate.

    Args:
        depth: number of linear layers q, >= 1.
        width: hidden width, even (MaxMin pairs), >= 2.
        iterations: Björck steps per forward pass, >= 1.
        beta: Björck step parameter, in (0, 1/2].
        init: ``"orthonormal"`` or ``"public"``, as above.
        project_iterations: Björck steps applied to the stored weights after every
            optimiser step, >= 0 (0: none, as in the public code).

    Reference: Biau, Sangnier & Tanielian (2021), section 5; Anil, Lucas & Grosse
    (2019), section 5 (Björck linear layers with GroupSort) and their public code
    (``BjorckLinear.reset_parameters``, ``get_safe_bjorck_scaling``).
    """

    depth: int = eqx.field(static=True)
    width: int = eqx.field(static=True, default=30)
    iterations: int = eqx.field(static=True, default=3)
    beta: float = eqx.field(static=True, default=0.5)
    init: str = eqx.field(static=True, default="orthonormal")
    project_iterations: int = eqx.field(static=True, default=0)

    def __check_init__(self):
        _check_architecture(self.depth, self.width)
        check_count("iterations", self.iterations, minimum=1)
        check_count("project_iterations", self.project_iterations, minimum=0)
        # Beyond 1/2 the step s -> (1 + beta) s - beta s^3 overshoots 1, and an
        # unconverged layer could then have spectral norm above 1.
        check_in_interval("beta", self.beta, 0.0, 0.5, include_high=True)
        if self.init not in BJORCK_INITS:
            raise ValueError(f"init must be one of {BJORCK_INITS}, got {self.init!r}")

    def build(self, key: PRNGKeyArray, in_dim: int) -> GroupSortMLP:
        _check_in_dim(in_dim)
        public = self.init == "public"
        layers = []
        for layer_key, (fan_in, fan_out) in zip(
            jax.random.split(key, self.depth), _layer_dims(in_dim, self.depth, self.width)
        ):
            weight_key, bias_key = jax.random.split(layer_key)
            _, bias = _uniform_weight_and_bias(bias_key, fan_in, fan_out)
            gain = 1.0 / math.sqrt(fan_in) if public else 1.0
            orthogonal = jax.nn.initializers.orthogonal(scale=gain)
            layers.append(
                BjorckLinear(
                    weight=orthogonal(weight_key, (fan_out, fan_in), PARAM_DTYPE),
                    bias=bias,
                    iterations=self.iterations,
                    beta=self.beta,
                    min_scale=math.sqrt(fan_in * fan_out) if public else 0.0,
                )
            )
        return GroupSortMLP(tuple(layers))

    def project(self, critic: GroupSortMLP) -> GroupSortMLP:
        """Orthonormalise the stored weights by ``project_iterations`` steps (if > 0)."""
        if self.project_iterations == 0:
            return critic
        layers = tuple(layer.orthonormalise_stored(self.project_iterations) for layer in critic.layers)
        return eqx.tree_at(lambda c: c.layers, critic, layers)


def _build_unconstrained(key: PRNGKeyArray, in_dim: int, depth: int, width: int) -> GroupSortMLP:
    layers = []
    for layer_key, (fan_in, fan_out) in zip(
        jax.random.split(key, depth), _layer_dims(in_dim, depth, width)
    ):
        weight, bias = _uniform_weight_and_bias(layer_key, fan_in, fan_out)
        layers.append(UnconstrainedLinear(weight=weight, bias=bias))
    return GroupSortMLP(tuple(layers))


class GradientPenaltyMLPSpec(AbstractCriticSpec):
    """An unconstrained MaxMin critic trained with a gradient penalty (WGAN-GP).

    ``penalty = lambda * mean_i (||grad_x D(xhat_i)||_2 - 1)^2`` with
    ``xhat_i = t_i real_i + (1 - t_i) fake_i``, ``t_i ~ U[0, 1]`` independently per sample.

    Args:
        depth: number of linear layers q, >= 1.
        width: hidden width, even (MaxMin pairs), >= 2.
        penalty_weight: lambda, >= 0.

    Reference: Gulrajani, Ahmed, Arjovsky, Dumoulin & Courville, "Improved training of
    Wasserstein GANs", NeurIPS 2017, eq. (3) and Algorithm 1.
    """

    depth: int = eqx.field(static=True)
    width: int = eqx.field(static=True, default=30)
    penalty_weight: float = eqx.field(static=True, default=10.0)

    def __check_init__(self):
        _check_architecture(self.depth, self.width)
        check_positive_number("penalty_weight", self.penalty_weight, allow_zero=True)

    def build(self, key: PRNGKeyArray, in_dim: int) -> GroupSortMLP:
        _check_in_dim(in_dim)
        return _build_unconstrained(key, in_dim, self.depth, self.width)

    def penalty(self, critic: GroupSortMLP, real: Batch, fake: Batch, *, key: PRNGKeyArray) -> Float[Array, ""]:
        """``lambda * mean_i (||grad D(t_i real_i + (1 - t_i) fake_i)|| - 1)^2``.

        Args:
            critic: the critic D.
            real: data batch, shape ``(batch, d)``.
            fake: generated batch, shape ``(batch, d)``.
            key: draws the interpolation weights t, shape ``(batch,)``.

        Returns:
            The penalty, shape ``()``, in the critic's dtype.
        """
        if real.ndim != 2 or real.shape != fake.shape:
            raise ValueError(
                f"real and fake must both have shape (batch, d), got {real.shape} and {fake.shape}"
            )
        dtype = critic.layers[0].weight.dtype
        real, fake = real.astype(dtype), fake.astype(dtype)
        t = jax.random.uniform(key, (real.shape[0], 1), dtype)
        interpolates = t * real + (1 - t) * fake
        grads = jax.vmap(jax.grad(critic))(interpolates)
        # `tiny` keeps the derivative of the norm finite where a gradient vanishes
        # (the public code adds 1e-16 for the same reason); it shifts the norm by ~1e-19.
        norms = jnp.sqrt(jnp.sum(grads**2, axis=-1) + jnp.finfo(dtype).tiny)
        return self.penalty_weight * jnp.mean((norms - 1) ** 2)

    def project(self, critic):
        return critic


class SpectralNormMLPSpec(AbstractCriticSpec):
    """A MaxMin critic whose weights are divided by their estimated spectral norms.

    ``L_k(h) = (W_k / sigma_hat_k) h + b_k``, ``sigma_hat_k = u_k^T W_k v_k`` (see
    ``SpectralNormLinear``). ``project`` advances each ``u_k`` by ``power_iterations``
    steps after every optimiser step: the stateless form of Miyato et al.'s one power
    iteration per forward pass.

    Args:
        depth: number of linear layers q, >= 1.
        width: hidden width, even (MaxMin pairs), >= 2.
        power_iterations: power-iteration steps per ``project``, >= 1.

    Reference: Miyato et al., "Spectral normalization for generative adversarial
    networks", ICLR 2018, Algorithm 1.
    """

    depth: int = eqx.field(static=True)
    width: int = eqx.field(static=True, default=30)
    power_iterations: int = eqx.field(static=True, default=1)

    def __check_init__(self):
        _check_architecture(self.depth, self.width)
        check_count("power_iterations", self.power_iterations, minimum=1)

    def build(self, key: PRNGKeyArray, in_dim: int) -> GroupSortMLP:
        _check_in_dim(in_dim)
        layers = []
        for layer_key, (fan_in, fan_out) in zip(
            jax.random.split(key, self.depth), _layer_dims(in_dim, self.depth, self.width)
        ):
            weight_key, u_key = jax.random.split(layer_key)
            weight, bias = _uniform_weight_and_bias(weight_key, fan_in, fan_out)
            u = _unit(jax.random.normal(u_key, (fan_out,), PARAM_DTYPE))
            layer = SpectralNormLinear(weight=weight, bias=bias, u=u)
            layers.append(layer.power_iterate(SPECTRAL_NORM_BUILD_ITERATIONS))
        return GroupSortMLP(tuple(layers))

    def project(self, critic: GroupSortMLP) -> GroupSortMLP:
        """Advance every layer's power iteration by ``power_iterations`` steps."""
        layers = tuple(layer.power_iterate(self.power_iterations) for layer in critic.layers)
        return eqx.tree_at(lambda c: c.layers, critic, layers)


class WeightClippingMLPSpec(AbstractCriticSpec):
    """An unconstrained MaxMin critic whose parameters are clipped to a box (WGAN).

    ``project: theta -> clip(theta, -c, c)`` for every weight and bias entry. ``build``
    returns a critic already in the box.

    Args:
        depth: number of linear layers q, >= 1.
        width: hidden width, even (MaxMin pairs), >= 2.
        clip: c, > 0.

    Reference: Arjovsky, Chintala & Bottou, "Wasserstein generative adversarial
    networks", ICML 2017, Algorithm 1 (c = 0.01).
    """

    depth: int = eqx.field(static=True)
    width: int = eqx.field(static=True, default=30)
    clip: float = eqx.field(static=True, default=0.01)

    def __check_init__(self):
        _check_architecture(self.depth, self.width)
        check_positive_number("clip", self.clip)

    def build(self, key: PRNGKeyArray, in_dim: int) -> GroupSortMLP:
        _check_in_dim(in_dim)
        return self.project(_build_unconstrained(key, in_dim, self.depth, self.width))

    def project(self, critic: GroupSortMLP) -> GroupSortMLP:
        """Clip every weight and bias entry to ``[-clip, clip]``."""
        return jax.tree.map(
            lambda leaf: jnp.clip(leaf, -self.clip, self.clip)
            if eqx.is_inexact_array(leaf)
            else leaf,
            critic,
        )
