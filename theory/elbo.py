"""The evidence lower bound on a model whose evidence and posterior are exact.

Linear-Gaussian latent model (probabilistic PCA; Tipping & Bishop 1999):
    z ~ N(0, I_k),  x | z ~ N(W z + b, sigma^2 I_d),
    p(x) = N(x; b, W W^T + sigma^2 I_d),
    p(z | x) = N(A^{-1} W^T (x - b) / sigma^2, A^{-1}),  A = I_k + W^T W / sigma^2.

For any q(z | x):  log p(x) = ELBO(q) + KL(q || p(. | x))  (Kingma & Welling 2014,
eq. (1)-(2)), so the gap log p(x) - ELBO is exactly that KL; the importance-weighted
bound of Burda et al. (2016) tightens it as the number of samples k grows.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp
from jaxtyping import Array, Float

from theory.distributions import Gaussian, to_float64
from theory.estimate import Estimate, monte_carlo_mean
from theory.integrate import MonteCarlo
from theory.validation import check_count, check_finite, check_key, check_positive, check_shape, check_type

_LOG_2PI = math.log(2.0 * math.pi)


class LinearGaussianModel(eqx.Module):
    """z ~ N(0, I_k), x | z ~ N(W z + b, sigma^2 I_d), with exact evidence and posterior.

    Args:
        weight: W, Float[Array, "d k"].
        bias: b, Float[Array, "d"].
        noise_std: sigma > 0.
    """

    weight: Float[Array, "d k"]
    bias: Float[Array, " d"]
    noise_std: Float[Array, ""]

    def __init__(self, weight, bias, noise_std):
        weight, bias, noise_std = jnp.asarray(weight), jnp.asarray(bias), jnp.asarray(noise_std)
        if weight.ndim != 2:
            raise ValueError(f"weight must have shape (d, k), got shape {weight.shape}")
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"bias must have shape ({weight.shape[0]},) to match weight, got shape {bias.shape}")
        check_shape("noise_std", noise_std, ())
        check_finite("weight", weight)
        check_finite("bias", bias)
        check_positive("noise_std", noise_std)
        dtype = jnp.result_type(weight, bias, noise_std, jnp.float32)
        self.weight, self.bias, self.noise_std = weight.astype(dtype), bias.astype(dtype), noise_std.astype(dtype)

    @property
    def data_dim(self) -> int:
        return self.weight.shape[0]

    @property
    def latent_dim(self) -> int:
        return self.weight.shape[1]

    def _check_x(self, x):
        x = jnp.asarray(x)
        if x.shape != (self.data_dim,):
            raise ValueError(f"x must have shape ({self.data_dim},), got shape {x.shape}")
        check_finite("x", x)
        return x

    def marginal(self) -> Gaussian:
        """p(x) = N(b, W W^T + sigma^2 I)."""
        cov = self.weight @ self.weight.T + self.noise_std**2 * jnp.eye(self.data_dim, dtype=self.weight.dtype)
        return Gaussian(self.bias, cov)

    def log_marginal(self, x) -> Float[Array, ""]:
        """log p(x), exact."""
        return self.marginal().log_prob(self._check_x(x))

    def posterior(self, x) -> Gaussian:
        """p(z | x) = N(A^{-1} W^T (x - b) / sigma^2, A^{-1}), A = I + W^T W / sigma^2."""
        x = self._check_x(x)
        precision = jnp.eye(self.latent_dim, dtype=self.weight.dtype) + self.weight.T @ self.weight / self.noise_std**2
        cov = jnp.linalg.inv(precision)
        cov = 0.5 * (cov + cov.T)
        mean = cov @ self.weight.T @ (x - self.bias) / self.noise_std**2
        return Gaussian(mean, cov)

    def log_joint(self, x, z) -> Float[Array, "..."]:
        """log p(x, z) = log N(z; 0, I) + log N(x; W z + b, sigma^2 I), z of shape (..., k)."""
        x, z = jnp.asarray(x), jnp.asarray(z)
        if x.ndim == 0 or x.shape[-1] != self.data_dim:
            raise ValueError(f"x must have last axis of size d={self.data_dim}, got shape {x.shape}")
        if z.ndim == 0 or z.shape[-1] != self.latent_dim:
            raise ValueError(f"z must have last axis of size k={self.latent_dim}, got shape {z.shape}")
        prior = -0.5 * jnp.sum(z**2, axis=-1) - 0.5 * self.latent_dim * _LOG_2PI
        residual = x - (z @ self.weight.T + self.bias)
        likelihood = -0.5 * jnp.sum(residual**2, axis=-1) / self.noise_std**2 - self.data_dim * (
            jnp.log(self.noise_std) + 0.5 * _LOG_2PI
        )
        return prior + likelihood

    def sample(self, key, n):
        """n draws of (x, z)."""
        n = check_count("n", n)
        key_z, key_x = jax.random.split(key)
        z = jax.random.normal(key_z, (n, self.latent_dim), dtype=self.weight.dtype)
        noise = jax.random.normal(key_x, (n, self.data_dim), dtype=self.weight.dtype)
        return z @ self.weight.T + self.bias + self.noise_std * noise, z


def _check_q(model: LinearGaussianModel, q):
    check_type("model", model, LinearGaussianModel)
    check_type("q", q, Gaussian)
    if q.dim != model.latent_dim:
        raise ValueError(f"q must be a law on R^{model.latent_dim} (the latent space), got dimension {q.dim}")


def _monte_carlo(method, key, default_n: int) -> MonteCarlo:
    """The Monte Carlo method to use: `method`, or MonteCarlo(default_n) when None."""
    method = MonteCarlo(default_n) if method is None else method
    check_type("method", method, MonteCarlo)
    check_key("key", key)
    return method


def _log_importance_weights(model: LinearGaussianModel, q: Gaussian, x, key, shape: tuple[int, ...]):
    """log p(x, z) - log q(z) for z ~ q drawn with batch shape `shape`, in float64.

    Call inside `jax.enable_x64(True)`, after `_check_q`; the draws are sample(key, prod(shape)).
    """
    model64, q64 = to_float64((model, q))
    x = model64._check_x(jnp.asarray(x, jnp.float64))
    z = q64.sample(key, math.prod(shape)).reshape(*shape, -1)
    return model64.log_joint(x, z) - q64.log_prob(z)


def elbo(model: LinearGaussianModel, q: Gaussian, x, *, key=None, method=None) -> Estimate:
    """The evidence lower bound of a Gaussian q(z | x), by reparametrised Monte Carlo.

    ELBO(q) = E_{z ~ q}[log p(x, z) - log q(z)] <= log p(x),
    with z = m + L eps, eps ~ N(0, I) (Kingma & Welling 2014, Sec. 2.4).

    Args:
        model: the generative model.
        q: the variational posterior for this x, a `Gaussian` on R^k.
        x: one observation, Float[Array, "d"].
        key: PRNG key of the draws of z (required).
        method: `MonteCarlo(n)` with n draws of z; None for `MonteCarlo(10_000)`.

    Returns:
        An `Estimate` with the Monte Carlo standard error (float64).
    """
    method = _monte_carlo(method, key, 10_000)
    _check_q(model, q)
    n = method.n
    with jax.enable_x64(True):
        values = _log_importance_weights(model, q, x, key, (n,))
        return monte_carlo_mean(values, f"ELBO: reparametrised Monte Carlo (n={n})")


def importance_weighted_bound(
    model: LinearGaussianModel, q: Gaussian, x, *, k: int, key=None, method=None
) -> Estimate:
    """The importance-weighted bound L_k = E[log (1/k) sum_i p(x, z_i) / q(z_i)], z_i ~ q.

    ELBO = L_1 <= L_k <= L_{k+1} <= log p(x), and L_k -> log p(x) as k -> infinity
    (Burda, Grosse & Salakhutdinov 2016, Theorem 1).

    Args:
        model, q, x: as in `elbo`.
        k: importance samples per bound evaluation.
        key: PRNG key (required).
        method: `MonteCarlo(n)`, n independent evaluations of the k-sample bound
            averaged (n k draws of z); None for `MonteCarlo(1_000)`.

    Returns:
        An `Estimate` whose error is the standard error over the n evaluations.
    """
    k = check_count("k", k)
    method = _monte_carlo(method, key, 1_000)
    _check_q(model, q)
    n = method.n
    with jax.enable_x64(True):
        log_weights = _log_importance_weights(model, q, x, key, (n, k))
        values = logsumexp(log_weights, axis=1) - math.log(k)
        return monte_carlo_mean(values, f"IWAE bound: k={k}, n={n} evaluations")


def elbo_gap(model: LinearGaussianModel, q: Gaussian, x, *, key=None, method=None) -> Estimate:
    """log p(x) - ELBO(q), which equals KL(q || p(. | x)) exactly.

    log p(x) is exact, so the error is that of the ELBO's Monte Carlo estimate.
    Arguments as in `elbo`.
    """
    bound = elbo(model, q, x, key=key, method=method)
    with jax.enable_x64(True):
        log_evidence = float(np.asarray(to_float64(model).log_marginal(jnp.asarray(x, jnp.float64))))
    return Estimate(log_evidence - bound.value, bound.error, "log p(x) exact minus " + bound.method)
