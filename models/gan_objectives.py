"""GAN objectives as objects: what the discriminator minimises, what the generator
minimises, and which divergence the optimal discriminator's value estimates.

Every objective reads the discriminator's *raw* scalar output v(x) (a logit, a
least-squares score, an f-GAN pre-activation or a WGAN critic value) and is an affine
map of one expected loss:

    L_D(v) = E_P[l_real(v(X))] + E_Q[l_fake(v(X))],            (P data, Q generator)
    divergence estimate  B(v) = offset + slope * L_D(v)  <=  Div(P, Q),   slope < 0,

with equality at the optimal raw output v* (pointwise minimiser of
p(x) l_real(v) + q(x) l_fake(v)). So training the discriminator alone between fixed
laws drives B(v) up to the divergence the objective names:

    objective        v*(x)                         Div(P, Q) (theory/)
    Minimax, NonSat  log p/q (D* = sigmoid v*)     JS(P, Q)                     theory.js
    LeastSquares     (b p + a q) / (p + q)          chi^2(Q || (P+Q)/2)          theory.f_divergence
    Hinge            sign(log p/q)                  TV(P, Q)                     theory.f_divergence
    FGAN(f)          g_f^{-1}(f'(p/q))              D_f(P || Q)                  theory.f_divergence
    WGAN             Kantorovich potential          W_1(P, Q)                    (1-D CDF formula here)

References: Goodfellow et al. (2014), Prop. 1 and Thm. 1; Mao et al., "Least squares
generative adversarial networks", ICCV 2017, Thm. 1; Lim & Ye, "Geometric GAN" (2017),
eq. (8) and Miyato et al. (2018), eq. (17) for the hinge loss; Nowozin, Cseke & Tomioka,
"f-GAN", NeurIPS 2016, eq. (6) and Table 2; Arjovsky, Chintala & Bottou (2017), eq. (3).
"""

import abc
import math
from collections.abc import Callable
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtr
from jaxtyping import Array, Float

import theory
from models.critics import AbstractCriticSpec
from theory.distributions import Gaussian, MixtureOfGaussians
from theory.estimate import Estimate
from theory.f_divergences import (
    AbstractFDivergence,
    JensenShannon,
    KullbackLeibler,
    PearsonChiSquared,
    ReverseKullbackLeibler,
    SquaredHellinger,
    TotalVariation,
)
from theory.integrate import Term, check_same_dim, choose_method, expectation_sum
from theory.validation import check_finite

_LOG2 = math.log(2.0)

RawOutput = Callable[[Float[Array, "n d"]], Float[Array, " n"]]


# --------------------------------------------------------------------------------------
# The interface.


class AbstractGANObjective(eqx.Module):
    """A GAN game read through the discriminator's raw output v.

    Subclasses give the elementwise losses l_real, l_fake (discriminator) and c
    (generator), the affine map (offset, slope) from L_D to the divergence bound, the
    optimal raw output v* for laws with densities, and the exact divergence.

    Attributes:
        divergence_name: the divergence the optimal discriminator's bound equals, in
            words (a class constant, or a property where it names a field).
        bound_offset: the offset a in B = a + s L_D, a class constant.
        bound_slope: the slope s < 0 in B = a + s L_D (a class constant, or a property
            where it depends on the objective's fields).
    """

    divergence_name: eqx.AbstractVar[str]
    bound_offset: eqx.AbstractClassVar[float]
    bound_slope: eqx.AbstractVar[float]

    @abc.abstractmethod
    def real_loss(self, v: Float[Array, "..."]) -> Float[Array, "..."]:
        """l_real(v): the discriminator's loss on one real sample's raw output."""

    @abc.abstractmethod
    def fake_loss(self, v: Float[Array, "..."]) -> Float[Array, "..."]:
        """l_fake(v): the discriminator's loss on one generated sample's raw output."""

    @abc.abstractmethod
    def generator_cost(self, v: Float[Array, "..."]) -> Float[Array, "..."]:
        """c(v): the generator's loss on one generated sample's raw output."""

    @abc.abstractmethod
    def optimal_raw_output(self, p, q) -> RawOutput:
        """v*: points (n, d) -> (n,), the pointwise minimiser of p l_real + q l_fake."""

    @abc.abstractmethod
    def exact_divergence(self, p, q, *, key=None, method=None) -> Estimate:
        """Div(P, Q), the value of B at v*, computed by `theory`."""

    def check_discriminator_spec(self, spec) -> None:
        """Raise if `spec` cannot serve this objective (all specs can, except for WGAN)."""
        for method in ("build", "penalty", "project"):
            if not callable(getattr(spec, method, None)):
                raise TypeError(
                    f"discriminator_spec must have build, penalty and project (e.g. MLPDiscriminatorSpec(...)), "
                    f"got {spec!r}"
                )

    def discriminator_loss(self, d_real_raw: Float[Array, " n"], d_fake_raw: Float[Array, " m"]) -> Float[Array, ""]:
        """L_D = mean l_real(v(x_i)) + mean l_fake(v(G(z_j))), the discriminator minimises it."""
        return jnp.mean(self.real_loss(d_real_raw)) + jnp.mean(self.fake_loss(d_fake_raw))

    def generator_loss(self, d_fake_raw: Float[Array, " m"]) -> Float[Array, ""]:
        """L_G = mean c(v(G(z_j))), the generator minimises it."""
        return jnp.mean(self.generator_cost(d_fake_raw))

    def divergence_estimate(self, d_real_raw: Float[Array, " n"], d_fake_raw: Float[Array, " m"]) -> Float[Array, ""]:
        """B = offset + slope * L_D: the variational lower bound on Div(P, Q) from batches."""
        return self.bound_offset + self.bound_slope * self.discriminator_loss(d_real_raw, d_fake_raw)


def discriminator_bound(objective: AbstractGANObjective, raw_output: RawOutput, p, q, *, key=None, method=None) -> Estimate:
    """The divergence bound B(v) = offset + slope (E_P[l_real(v)] + E_Q[l_fake(v)]) of a raw output.

    B(v) <= Div(P, Q) for every v, with equality at v = objective.optimal_raw_output(p, q).

    Args:
        objective: the GAN objective.
        raw_output: v, points (n, d) -> (n,) (vmap a network first).
        p: the data law; q: the generator's law (same R^d).
        key, method: as in `theory.js` (quadrature in d <= 2, else Monte Carlo).

    Returns:
        An `Estimate` of B(v) (its error scaled by |slope|).
    """
    _check_objective(objective)
    check_same_dim(p=p, q=q)
    method = choose_method([p, q], method, key)

    def real(x, logs):
        return objective.real_loss(raw_output(x))

    def fake(x, logs):
        return objective.fake_loss(raw_output(x))

    loss = expectation_sum(
        [Term(0, real), Term(1, fake)], [p, q], method=method, key=key, what=f"{type(objective).__name__} bound"
    )
    return Estimate(
        objective.bound_offset + objective.bound_slope * loss.value, abs(objective.bound_slope) * loss.error, loss.method
    )


def _check_objective(objective):
    if not isinstance(objective, AbstractGANObjective):
        raise TypeError(f"objective must be a GAN objective such as Minimax(), got {objective!r}")


# --------------------------------------------------------------------------------------
# The original game: D = sigmoid(v), binary cross-entropy.


class _AbstractCrossEntropy(AbstractGANObjective):
    """Shared discriminator of Minimax and NonSaturating: -log D on real, -log(1 - D) on fake.

    L_D = -E_P[log sigmoid(v)] - E_Q[log sigmoid(-v)] = -V(D; P, Q), and at
    v* = log p/q, V = 2 JS - log 4 (Goodfellow et al. 2014, Thm. 1), so
    B = (log 4 - L_D) / 2 is a lower bound on JS(P, Q).
    """

    divergence_name: ClassVar[str] = "JS(P, Q)"
    bound_offset: ClassVar[float] = _LOG2
    bound_slope: ClassVar[float] = -0.5

    def real_loss(self, v):
        return jax.nn.softplus(-v)

    def fake_loss(self, v):
        return jax.nn.softplus(v)

    def optimal_raw_output(self, p, q):
        return theory.optimal_discriminator(p, q).logit

    def exact_divergence(self, p, q, *, key=None, method=None):
        return theory.js(p, q, key=key, method=method)


class Minimax(_AbstractCrossEntropy):
    """The original minimax game: the generator minimises E_Q[log(1 - D)] (saturating).

    c(v) = log(1 - sigmoid(v)) = -softplus(v); dc/dv = -sigmoid(v) vanishes where the
    discriminator confidently rejects the fakes (v -> -inf).

    Reference: Goodfellow et al. (2014), eq. (1).
    """

    def generator_cost(self, v):
        return -jax.nn.softplus(v)


class NonSaturating(_AbstractCrossEntropy):
    """The non-saturating game: the generator minimises -E_Q[log D].

    c(v) = -log sigmoid(v) = softplus(-v); dc/dv = -sigmoid(-v) -> -1 as v -> -inf.

    Reference: Goodfellow et al. (2014), Sec. 3 (the "-log D trick").
    """

    def generator_cost(self, v):
        return jax.nn.softplus(-v)


# --------------------------------------------------------------------------------------
# Least squares.


class LeastSquares(AbstractGANObjective):
    """LSGAN: L_D = 1/2 E_P[(v - b)^2] + 1/2 E_Q[(v - a)^2], L_G = 1/2 E_Q[(v - c)^2].

    v* = (b p + a q) / (p + q) (Mao et al. 2017, eq. (4); `theory.lsgan_optimal_discriminator`),
    where the pointwise loss is (b - a)^2 p q / (2 (p + q)); with
    int 2 p q / (p + q) = 1 - Delta, Delta = 1/2 int (p - q)^2 / (p + q) = chi^2(Q || (P+Q)/2),
    L_D* = (b - a)^2 (1 - Delta) / 4, so B = 1 - 4 L_D / (b - a)^2 <= Delta. (For
    b - c = 1, b - a = 2 the generator's 2 C at v* is 2 Delta, Mao et al. Thm. 1.)

    Args:
        fake_label: a; real_label: b (b != a); generator_target: c. Defaults -1, 1, 0
            are the Theorem 1 setting.
    """

    fake_label: float = eqx.field(static=True, default=-1.0)
    real_label: float = eqx.field(static=True, default=1.0)
    generator_target: float = eqx.field(static=True, default=0.0)
    divergence_name: ClassVar[str] = "chi^2_Pearson(Q || (P + Q) / 2)"
    bound_offset: ClassVar[float] = 1.0

    def __check_init__(self):
        for name in ("fake_label", "real_label", "generator_target"):
            check_finite(name, getattr(self, name))
        if self.fake_label == self.real_label:
            raise ValueError(f"real_label and fake_label must differ, got both {self.real_label}")

    def real_loss(self, v):
        return 0.5 * (v - self.real_label) ** 2

    def fake_loss(self, v):
        return 0.5 * (v - self.fake_label) ** 2

    def generator_cost(self, v):
        return 0.5 * (v - self.generator_target) ** 2

    @property
    def bound_slope(self):
        return -4.0 / (self.real_label - self.fake_label) ** 2

    def optimal_raw_output(self, p, q):
        optimum = theory.lsgan_optimal_discriminator(p, q, fake_label=self.fake_label, real_label=self.real_label)
        return optimum.__call__

    def exact_divergence(self, p, q, *, key=None, method=None):
        midpoint = theory.mixture([p, q], [0.5, 0.5])
        return theory.f_divergence(PearsonChiSquared(), q, midpoint, key=key, method=method)


# --------------------------------------------------------------------------------------
# Hinge.


class Hinge(AbstractGANObjective):
    """Hinge loss: L_D = E_P[relu(1 - v)] + E_Q[relu(1 + v)], L_G = -E_Q[v].

    The pointwise loss p relu(1 - v) + q relu(1 + v) is minimised at v* = sign(p - q)
    (any v in [-1, 1] where p = q) with value 2 min(p, q); int 2 min(p, q) = 2 (1 - TV),
    so B = 1 - L_D / 2 <= TV(P, Q) = sup_A |P(A) - Q(A)|.

    Reference: Lim & Ye, "Geometric GAN" (2017), eq. (8); Miyato et al. (2018), eq. (17).
    """

    divergence_name: ClassVar[str] = "TV(P, Q)"
    bound_offset: ClassVar[float] = 1.0
    bound_slope: ClassVar[float] = -0.5

    def real_loss(self, v):
        return jax.nn.relu(1.0 - v)

    def fake_loss(self, v):
        return jax.nn.relu(1.0 + v)

    def generator_cost(self, v):
        return -v

    def optimal_raw_output(self, p, q):
        check_same_dim(p=p, q=q)
        return lambda x: jnp.sign(p.log_prob(x) - q.log_prob(x))

    def exact_divergence(self, p, q, *, key=None, method=None):
        return theory.f_divergence(TotalVariation(), p, q, key=key, method=method)


# --------------------------------------------------------------------------------------
# f-GAN: output activations (Nowozin et al. 2016, Table 2) in theory's conventions.


class AbstractOutputActivation(eqx.Module):
    """g_f: R -> dom(f*), the f-GAN output activation T = g_f(v), for one generator f.

    `conjugate_at(v)` is f*(g_f(v)) in a closed form that stays finite for every
    finite v (composing `theory`'s f* with g_f would round g_f(v) onto the boundary of
    dom f*); `optimal_raw_at_log_ratio(log t)` is g_f^{-1}(f'(t)), the raw optimum.
    """

    divergence: eqx.AbstractClassVar[AbstractFDivergence]

    @abc.abstractmethod
    def __call__(self, v):
        """g_f(v)."""

    @abc.abstractmethod
    def conjugate_at(self, v):
        """f*(g_f(v))."""

    @abc.abstractmethod
    def optimal_raw_at_log_ratio(self, log_t):
        """v* with g_f(v*) = f'(t), t = exp(log_t)."""


class KLActivation(AbstractOutputActivation):
    """KL, f = t log t: g(v) = v, dom f* = R; f*(g(v)) = exp(v - 1); v* = 1 + log t."""

    divergence: ClassVar[AbstractFDivergence] = KullbackLeibler()

    def __call__(self, v):
        return v

    def conjugate_at(self, v):
        return jnp.exp(v - 1.0)

    def optimal_raw_at_log_ratio(self, log_t):
        return 1.0 + log_t


class ReverseKLActivation(AbstractOutputActivation):
    """Reverse KL, f = -log t: g(v) = -exp(-v) < 0 = sup dom f*; f*(g(v)) = v - 1; v* = log t."""

    divergence: ClassVar[AbstractFDivergence] = ReverseKullbackLeibler()

    def __call__(self, v):
        return -jnp.exp(-v)

    def conjugate_at(self, v):
        return v - 1.0

    def optimal_raw_at_log_ratio(self, log_t):
        return log_t


class PearsonActivation(AbstractOutputActivation):
    """Pearson chi^2, f = (t - 1)^2: g(v) = v, dom f* = R; f*(g(v)) = v^2 / 4 + v; v* = 2 (t - 1)."""

    divergence: ClassVar[AbstractFDivergence] = PearsonChiSquared()

    def __call__(self, v):
        return v

    def conjugate_at(self, v):
        return 0.25 * v**2 + v

    def optimal_raw_at_log_ratio(self, log_t):
        return 2.0 * jnp.expm1(log_t)


class SquaredHellingerActivation(AbstractOutputActivation):
    """Squared Hellinger, f = (sqrt t - 1)^2: g(v) = 1 - exp(-v) < 1; f*(g(v)) = exp(v) - 1;
    v* = log(t) / 2."""

    divergence: ClassVar[AbstractFDivergence] = SquaredHellinger()

    def __call__(self, v):
        return -jnp.expm1(-v)

    def conjugate_at(self, v):
        return jnp.expm1(v)

    def optimal_raw_at_log_ratio(self, log_t):
        return 0.5 * log_t


class JensenShannonActivation(AbstractOutputActivation):
    """JS with theory's f = [t log t - (1 + t) log((1 + t) / 2)] / 2 (D_f = JS, not 2 JS):
    g(v) = (log 2 - log(1 + exp(-v))) / 2 < log(2) / 2; f*(g(v)) = (softplus(v) - log 2) / 2;
    v* = log t.

    Nowozin et al.'s Table 2 entry log 2 - log(1 + exp(-v)) belongs to their unhalved
    f = 2 f_theory, whose conjugate is f_N*(u) = 2 f_theory*(u / 2); halving the
    activation keeps T = g(v) in theory's dom f* = (-inf, log(2) / 2).
    """

    divergence: ClassVar[AbstractFDivergence] = JensenShannon()

    def __call__(self, v):
        return 0.5 * (_LOG2 - jax.nn.softplus(-v))

    def conjugate_at(self, v):
        return 0.5 * (jax.nn.softplus(v) - _LOG2)

    def optimal_raw_at_log_ratio(self, log_t):
        return log_t


TABLE2_ACTIVATIONS: tuple[AbstractOutputActivation, ...] = (
    KLActivation(),
    ReverseKLActivation(),
    PearsonActivation(),
    SquaredHellingerActivation(),
    JensenShannonActivation(),
)
"""Nowozin et al. (2016), Table 2, for the generators of theory.f_divergences (TV is left
out: its optimal critic +-1/2 lies on the boundary of dom f*, so v* = +-inf; `Hinge`
estimates TV instead)."""


def table2_activation(divergence: AbstractFDivergence) -> AbstractOutputActivation:
    """The Table 2 output activation g_f for the generator `divergence`."""
    for activation in TABLE2_ACTIVATIONS:
        if type(activation.divergence) is type(divergence):
            return activation
    supported = ", ".join(f"{type(a.divergence).__name__}()" for a in TABLE2_ACTIVATIONS)
    raise ValueError(f"divergence must be one of {supported} (f-GAN Table 2), got {divergence!r}")


class FGAN(AbstractGANObjective):
    """f-GAN: T = g_f(v), L_D = -(E_P[g_f(v)] - E_Q[f*(g_f(v))]), B = -L_D <= D_f(P || Q).

    The generator minimises E_Q[-f*(g_f(v))] (the saddle-point objective, Nowozin et al.
    eq. (6)), or with `non_saturating=True` E_Q[-g_f(v)] (their Sec. 3.2 alternative).
    v* = g_f^{-1}(f'(p / q)); f' and f* come from theory.f_divergences.

    Args:
        divergence: the generator f, one of KullbackLeibler(), ReverseKullbackLeibler(),
            PearsonChiSquared(), SquaredHellinger(), JensenShannon().
        non_saturating: which generator cost to use.
    """

    divergence: AbstractFDivergence = eqx.field(static=True)
    non_saturating: bool = eqx.field(static=True, default=False)
    bound_offset: ClassVar[float] = 0.0
    bound_slope: ClassVar[float] = -1.0

    def __check_init__(self):
        if not isinstance(self.divergence, AbstractFDivergence):
            raise TypeError(f"divergence must be an f-divergence generator such as KullbackLeibler(), got {self.divergence!r}")
        table2_activation(self.divergence)
        if not isinstance(self.non_saturating, bool):
            raise TypeError(f"non_saturating must be a bool, got {self.non_saturating!r}")

    @property
    def divergence_name(self) -> str:
        return f"D_f[{type(self.divergence).__name__}](P || Q)"

    @property
    def activation(self) -> AbstractOutputActivation:
        return table2_activation(self.divergence)

    def real_loss(self, v):
        return -self.activation(v)

    def fake_loss(self, v):
        return self.activation.conjugate_at(v)

    def generator_cost(self, v):
        if self.non_saturating:
            return -self.activation(v)
        return -self.activation.conjugate_at(v)

    def optimal_raw_output(self, p, q):
        check_same_dim(p=p, q=q)
        activation = self.activation
        return lambda x: activation.optimal_raw_at_log_ratio(p.log_prob(x) - q.log_prob(x))

    def exact_divergence(self, p, q, *, key=None, method=None):
        return theory.f_divergence(self.divergence, p, q, key=key, method=method)


# --------------------------------------------------------------------------------------
# WGAN.


class WGAN(AbstractGANObjective):
    """WGAN: L_D = E_Q[v] - E_P[v], L_G = -E_Q[v], B = -L_D = E_P[v] - E_Q[v] <= W_1(P, Q).

    The bound holds for 1-Lipschitz v (Kantorovich-Rubinstein duality), so the
    discriminator spec must be one of the lab's Lipschitz critics (models.critics); its
    penalty and projection are applied by the training step. On the real line
    W_1 = int |F_P - F_Q| and the optimal potential is v*(x) = int_lo^x sign(F_Q - F_P).

    Reference: Arjovsky, Chintala & Bottou (2017), eq. (3); Villani (2009), Remark 6.5.
    """

    divergence_name: ClassVar[str] = "W_1(P, Q)"
    bound_offset: ClassVar[float] = 0.0
    bound_slope: ClassVar[float] = -1.0
    grid_size: ClassVar[int] = 1 << 16

    def check_discriminator_spec(self, spec):
        if not isinstance(spec, AbstractCriticSpec):
            raise TypeError(
                f"WGAN needs a Lipschitz critic spec from models.critics (e.g. BjorckGroupSortSpec(depth=3)), got {spec!r}"
            )

    def real_loss(self, v):
        return -v

    def fake_loss(self, v):
        return v

    def generator_cost(self, v):
        return -v

    def optimal_raw_output(self, p, q):
        """The Kantorovich potential of two 1-D Gaussians or mixtures, on a grid.

        v*(x) = int_lo^x sign(F_Q(s) - F_P(s)) ds by the trapezoid rule on `grid_size`
        points of the laws' support box, linearly interpolated (clamped outside). Its
        slope is +-1 except in the one grid cell around each crossing of F_P and F_Q,
        so B(v*) is within (number of crossings) x (cell width) of W_1.
        """
        lo, hi = _line_box(p, q)
        grid = np.linspace(lo, hi, self.grid_size)
        with jax.enable_x64(True):
            slope = np.sign(np.asarray(_cdf(q, grid) - _cdf(p, grid)))
        potential = np.concatenate([[0.0], np.cumsum(0.5 * (slope[1:] + slope[:-1]) * np.diff(grid))])
        grid, potential = jnp.asarray(grid), jnp.asarray(potential)
        return lambda x: jnp.interp(jnp.asarray(x).reshape(-1), grid, potential)

    def exact_divergence(self, p, q, *, key=None, method=None):
        """W_1(P, Q) = int |F_P - F_Q| for 1-D Gaussians or mixtures, by Gauss-Legendre quadrature.

        The integrand has a kink at each crossing of the CDFs, so the rule converges
        algebraically there; the error reported is |I(n) - I(2n)|.
        """
        if method is not None or key is not None:
            raise ValueError(f"WGAN.exact_divergence computes W_1 by quadrature only, got method={method!r}, key={key!r}")
        lo, hi = _line_box(p, q)
        values = []
        for panels in (4096, 8192):
            nodes, weights = np.polynomial.legendre.leggauss(8)
            edges = np.linspace(lo, hi, panels + 1)
            half = 0.5 * np.diff(edges)[:, None]
            x = (0.5 * (edges[1:] + edges[:-1]))[:, None] + half * nodes
            with jax.enable_x64(True):
                gap = np.abs(np.asarray(_cdf(p, x.ravel()) - _cdf(q, x.ravel()))).reshape(x.shape)
            values.append(float(np.sum(half * weights * gap)))
        return Estimate(values[1], abs(values[1] - values[0]), f"W_1: Gauss-Legendre quadrature of |F_P - F_Q| ({8 * 8192} nodes)")


def _as_line_mixture(law):
    if isinstance(law, Gaussian):
        law = theory.mixture([law], [1.0])
    if not isinstance(law, MixtureOfGaussians) or law.dim != 1:
        raise ValueError(
            f"WGAN's exact W_1 needs 1-D Gaussian or MixtureOfGaussians laws, got {type(law).__name__} "
            f"in d={getattr(law, 'dim', '?')} (use theory.wasserstein on samples otherwise)"
        )
    return law


def _cdf(law, x):
    law = theory.distributions.to_float64(_as_line_mixture(law))
    std = jnp.sqrt(law.covs[:, 0, 0])
    return jnp.sum(law.weights[:, None] * ndtr((jnp.asarray(x, jnp.float64)[None, :] - law.means[:, :1]) / std[:, None]), 0)


def _line_box(p, q):
    boxes = [_as_line_mixture(law).support_box() for law in (p, q)]
    return float(min(b[0][0] for b in boxes)), float(max(b[1][0] for b in boxes))
