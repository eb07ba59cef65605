"""The GAN identities: optimal discriminators and the values of the games at them.

Original GAN (Goodfellow et al. 2014, Proposition 1 and Theorem 1):
    V(D; p, q) = E_p[log D(X)] + E_q[log(1 - D(X))],
    D*(x) = p(x) / (p(x) + q(x)),   V(D*; p, q) = 2 JS(p, q) - log 4.
Least-squares GAN (Mao et al. 2017, Theorem 1), with labels a (fake), b (real) and
the generator's target c:
    D*(x) = (b p(x) + a q(x)) / (p(x) + q(x)),
    2 C(q) = E_p[(D* - c)^2] + E_q[(D* - c)^2] = chi^2_Pearson(p + q || 2q) when
    b - c = 1 and b - a = 2, i.e. 2 * PearsonChi2(q || (p + q) / 2) in the normalised form.

`gan_value` takes the discriminator as what it is, a probability D(x) in [0, 1] (the
`OptimalDiscriminator` returned by `optimal_discriminator(p, q)` among them), or as a
logit with `logit=True` (D = sigmoid(logit)); it never guesses which. For the optimal
discriminator and for logits, log D and log(1 - D) are computed as log-sigmoids,
exactly, even where D* is within 1e-300 of 0 or 1.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from theory.distributions import to_float64
from theory.estimate import Estimate
from theory.integrate import Term, check_same_dim, choose_method, expectation_sum
from theory.validation import check_bool, check_finite, is_concrete


class OptimalDiscriminator(eqx.Module):
    """D*(x) = p(x) / (p(x) + q(x)), the maximiser of V(D; p, q) (Goodfellow et al. 2014, Prop. 1).

    `logit(x) = log p(x) - log q(x)`; calling it gives D*(x) = sigmoid(logit(x)).
    """

    p: object
    q: object

    def __init__(self, p, q):
        check_same_dim(p=p, q=q)
        self.p = p
        self.q = q

    def logit(self, x):
        lp, lq = self.p.log_prob(x), self.q.log_prob(x)
        # Where both densities vanish (disjoint singular supports) the value is never
        # used with positive weight; 0 keeps it finite.
        return jnp.where((lp == -jnp.inf) & (lq == -jnp.inf), 0.0, lp - lq)

    def __call__(self, x):
        return jax.nn.sigmoid(self.logit(x))


def optimal_discriminator(p, q) -> OptimalDiscriminator:
    """x -> p(x) / (p(x) + q(x)); see `OptimalDiscriminator`."""
    return OptimalDiscriminator(p, q)


def gan_value(discriminator, p, q, *, logit: bool = False, key=None, method=None) -> Estimate:
    """The value of the original GAN game for a discriminator D.

    V(D; p, q) = E_p[log D(X)] + E_q[log(1 - D(X))].

    Args:
        discriminator: callable mapping points (n, d) to (n,). By default these are
            probabilities D(x) in [0, 1], e.g. `optimal_discriminator(p, q)` itself
            (whose exact logit is then used, so log D stays exact where D underflows).
            With `logit=True` they are logits l(x), D = sigmoid(l), e.g.
            `optimal_discriminator(p, q).logit` or a network's raw output.
        p: the data law; q: the generator's law (same R^d).
        logit: whether `discriminator` returns logits instead of probabilities.
        key, method: as in `theory.js` (quadrature in d <= 2, else Monte Carlo).

    Returns:
        An `Estimate`; at D* it equals 2 JS(p, q) - log 4 (Goodfellow et al. 2014, Thm. 1).

    Raises:
        ValueError: when a probability discriminator returns values outside [0, 1]
            (often a logit passed without `logit=True`), on the points where it is
            evaluated.
    """
    if not callable(discriminator):
        raise TypeError(f"discriminator must be callable, got {discriminator!r}")
    check_bool("logit", logit)
    check_same_dim(p=p, q=q)
    method = choose_method([p, q], method, key)

    if isinstance(discriminator, OptimalDiscriminator) and not logit:
        # D* carries its exact logit log p - log q; evaluate it on float64 copies of its
        # laws (the integrals run in float64) so that float32 parameters do not cost
        # float32 rounding (~5e-9 on the 4- vs 9-mode grids).
        optimal = discriminator
        logit = True

        def discriminator(x):
            return to_float64(optimal).logit(x)

    if logit:

        def log_real(x):
            return jax.nn.log_sigmoid(discriminator(x))

        def log_fake(x):
            return jax.nn.log_sigmoid(-discriminator(x))

    else:

        def probability(x):
            d = discriminator(x)
            if is_concrete(d):
                d_np = np.asarray(d, np.float64)
                if d_np.size and not (np.all(d_np >= 0.0) and np.all(d_np <= 1.0)):
                    raise ValueError(
                        "discriminator must return probabilities in [0, 1] (pass logit=True for "
                        f"logits), got values in [{np.nanmin(d_np):.4g}, {np.nanmax(d_np):.4g}]"
                    )
            return d

        def log_real(x):
            return jnp.log(probability(x))

        def log_fake(x):
            return jnp.log1p(-probability(x))

    def real(x, logs):
        return log_real(x)

    def fake(x, logs):
        return log_fake(x)

    return expectation_sum([Term(0, real), Term(1, fake)], [p, q], method=method, key=key, what="GAN value")


class LeastSquaresOptimalDiscriminator(eqx.Module):
    """D*(x) = (b p(x) + a q(x)) / (p(x) + q(x)) (Mao et al. 2017, eq. (4))."""

    p: object
    q: object
    fake_label: float
    real_label: float

    def __call__(self, x):
        real_share = jax.nn.sigmoid(self.p.log_prob(x) - self.q.log_prob(x))
        return self.real_label * real_share + self.fake_label * (1.0 - real_share)


def lsgan_optimal_discriminator(p, q, *, fake_label: float = -1.0, real_label: float = 1.0):
    """The LSGAN discriminator's optimum for labels a = fake_label, b = real_label."""
    check_same_dim(p=p, q=q)
    check_finite("fake_label", fake_label)
    check_finite("real_label", real_label)
    return LeastSquaresOptimalDiscriminator(p, q, float(fake_label), float(real_label))


def lsgan_generator_value(discriminator, p, q, *, target: float = 0.0, key=None, method=None) -> Estimate:
    """The LSGAN generator's objective C = 1/2 E_p[(D(X) - c)^2] + 1/2 E_q[(D(X) - c)^2].

    Args:
        discriminator: callable mapping points (n, d) to D(x) (n,).
        p: the data law; q: the generator's law.
        target: c, the value the generator wants D to output on its samples.

    Returns:
        An `Estimate`; with D = D* and b - c = 1, b - a = 2 (a = -1, b = 1, c = 0),
        2 C = chi^2_Pearson(p + q || 2 q) = 2 PearsonChi2(q || (p + q) / 2)
        (Mao et al. 2017, Theorem 1).
    """
    check_same_dim(p=p, q=q)
    check_finite("target", target)
    method = choose_method([p, q], method, key)

    def half_square(x, logs):
        return 0.5 * (discriminator(x) - target) ** 2

    return expectation_sum(
        [Term(0, half_square), Term(1, half_square)], [p, q], method=method, key=key, what="LSGAN generator value"
    )
