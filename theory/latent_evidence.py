"""Exact evidence, posterior and variational gaps of latent models with 1-D or 2-D latents.

A latent model is a prior p(z) on R^k (k <= 2) and a likelihood log p(x | z) given as a
plain function, so that any decoder (a VAE's, a linear-Gaussian model's) can be
evaluated exactly:

    log p(x) = log int p(x | z) p(z) dz,          p(z | x) = p(x | z) p(z) / p(x),
    log p(x) = ELBO(q) + KL(q || p(. | x))        (Kingma & Welling 2014, eq. (1)-(2)),
    ELBO(q) = L_1(q) <= L_K(q) <= log p(x)        (Burda, Grosse & Salakhutdinov 2016, Thm 1).

The evidence integral is computed by a posterior-centred composite Gauss-Legendre rule
(see `log_evidence` for the grid and for what its error holds). Expectations under a
Gaussian q use a Gauss-Legendre rule in q's standardised coordinates.

All arithmetic runs under `jax.enable_x64(True)` on float64 copies of the model (a
`log_likelihood` that is a bound method of an Equinox module is cast with it; arrays
closed over by a plain function keep their dtype).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.special import logsumexp
from jaxtyping import Array, Float

from theory.distributions import Gaussian, to_float64
from theory.estimate import Estimate, monte_carlo_mean
from theory.integrate import MonteCarlo, Quadrature
from theory.validation import check_count, check_finite, check_key

MAX_LATENT_DIM = 2
"""Exact evidence by quadrature is offered for latent dimension k <= 2."""

DEFAULT_QUADRATURE = Quadrature(panels=8, order=8, tail=10.0)
"""Panels per box (the global box and each mode's Laplace box), Gauss-Legendre order, and
the Laplace boxes' half-width in posterior standard deviations."""

SEARCH_NODES = {1: 1024, 2: 96}
"""Nodes per axis of the uniform search grid on the prior box (mode finding only)."""

SEARCH_TAIL = 10.0
"""Half-width of the search box in prior standard deviations: prior mass outside < 1e-22
per axis."""

N_MODES = 2
"""Posterior modes located (local maxima of the search grid refined by Newton's method)."""

NEWTON_STEPS = 60
DROP_NATS = 60.0
"""The global box holds every search node within DROP_NATS of the highest log-joint value."""

_LOG_2PI = math.log(2.0 * math.pi)


# --------------------------------------------------------------------------------------
# Latent models and Gaussian families
# --------------------------------------------------------------------------------------


class LatentModel(eqx.Module):
    """p(x, z) = p(x | z) p(z) with z in R^k, given by a log-likelihood function and a prior.

    Args:
        log_likelihood: (x Float[Array, "d"], z Float[Array, "k"]) -> scalar log p(x | z).
            A bound method of an Equinox module (e.g. `vae.decoder_log_likelihood`) is a
            pytree, so its parameters are traced and cast to float64 with the model.
        prior: a `Gaussian` on R^k, or an integer k for the standard normal N(0, I_k).
    """

    log_likelihood: Callable
    prior: Gaussian

    def __init__(self, log_likelihood, prior):
        if not callable(log_likelihood):
            raise TypeError(f"log_likelihood must be a function (x, z) -> log p(x | z), got {log_likelihood!r}")
        if isinstance(prior, (int, np.integer)) and not isinstance(prior, bool):
            k = check_count("prior (latent dimension)", prior)
            prior = Gaussian(jnp.zeros(k), jnp.eye(k))
        if not isinstance(prior, Gaussian):
            raise TypeError(f"prior must be a theory.Gaussian or an integer latent dimension, got {prior!r}")
        self.log_likelihood = log_likelihood
        self.prior = prior

    @property
    def latent_dim(self) -> int:
        return self.prior.dim

    def log_joint(self, x: Float[Array, " d"], z: Float[Array, " k"]) -> Float[Array, ""]:
        """log p(x, z) = log p(x | z) + log p(z) for one x and one z."""
        return self.log_likelihood(x, z) + self.prior.log_prob(z)


class AbstractGaussianFamily(eqx.Module):
    """A family of Gaussians N(m, L L^T) on R^k parametrised by m and unconstrained `raw`."""

    @abc.abstractmethod
    def n_scale_params(self, k: int) -> int:
        """Length of the unconstrained scale parameter vector for dimension k."""

    @abc.abstractmethod
    def scale_tril(self, raw: Float[Array, " p"], k: int) -> Float[Array, "k k"]:
        """The lower-triangular factor L (positive diagonal) from the unconstrained `raw`."""

    @abc.abstractmethod
    def raw_from_cov(self, cov: Float[Array, "k k"]) -> Float[Array, " p"]:
        """Unconstrained parameters of the family member closest in this parametrisation
        to N(., cov) (used to initialise from a Laplace approximation)."""


class FactorisedGaussian(AbstractGaussianFamily):
    """Mean-field N(m, diag(s^2)) with s = exp(raw)."""

    def n_scale_params(self, k):
        return k

    def scale_tril(self, raw, k):
        return jnp.diag(jnp.exp(raw))

    def raw_from_cov(self, cov):
        # The mean-field optimum for a Gaussian target has precision diag(Lambda): the
        # variances are 1 / Lambda_ii, not Sigma_ii (Bishop 2006, Sec. 10.1.2).
        return -0.5 * jnp.log(jnp.diag(jnp.linalg.inv(cov)))


class FullCovarianceGaussian(AbstractGaussianFamily):
    """N(m, L L^T), L lower triangular with diagonal exp(raw[:k]) and the rest raw[k:]."""

    def n_scale_params(self, k):
        return k * (k + 1) // 2

    def scale_tril(self, raw, k):
        rows, cols = np.tril_indices(k, -1)
        tril = jnp.diag(jnp.exp(raw[:k]))
        return tril.at[rows, cols].set(raw[k:])

    def raw_from_cov(self, cov):
        k = cov.shape[0]
        chol = jnp.linalg.cholesky(cov)
        rows, cols = np.tril_indices(k, -1)
        return jnp.concatenate([jnp.log(jnp.diag(chol)), chol[rows, cols]])


# --------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------


def _check_model(model) -> LatentModel:
    if not isinstance(model, LatentModel):
        raise TypeError(f"model must be a theory LatentModel(log_likelihood, prior), got {type(model).__name__}")
    if model.latent_dim > MAX_LATENT_DIM:
        raise ValueError(
            f"exact evidence by quadrature needs latent dimension <= {MAX_LATENT_DIM}, "
            f"got latent dimension {model.latent_dim}"
        )
    return model


def _check_x(x, name="x"):
    x = jnp.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"{name} must be one observation of shape (d,), got shape {x.shape}")
    check_finite(name, x)
    return x


def _check_quadrature(method) -> Quadrature:
    if method is None:
        return DEFAULT_QUADRATURE
    if not isinstance(method, Quadrature):
        raise ValueError(f"method must be Quadrature(...) for an exact evidence, got {method!r}")
    return method


def _check_q(q, model: LatentModel):
    if not isinstance(q, Gaussian):
        raise TypeError(f"q must be a theory.Gaussian over the latent space, got {type(q).__name__}")
    if q.dim != model.latent_dim:
        raise ValueError(f"q must be a law on R^{model.latent_dim} (the latent space), got dimension {q.dim}")


# --------------------------------------------------------------------------------------
# The posterior-centred grid
# --------------------------------------------------------------------------------------


def _gauss_legendre_panels(edges, order):
    """Nodes and weights of `order`-point Gauss-Legendre on each panel [e_i, e_{i+1}]."""
    nodes, weights = np.polynomial.legendre.leggauss(order)
    half = 0.5 * (edges[1:] - edges[:-1])[:, None]
    mid = 0.5 * (edges[1:] + edges[:-1])[:, None]
    return (mid + half * nodes).ravel(), (half * weights).ravel()


def _tensor(axes):
    """Tensor-product nodes (N, k) and log-weights (N,) from per-axis (nodes, weights)."""
    grids = jnp.meshgrid(*[a[0] for a in axes], indexing="ij")
    weight_grids = jnp.meshgrid(*[a[1] for a in axes], indexing="ij")
    points = jnp.stack([g.ravel() for g in grids], axis=1)
    weights = jnp.prod(jnp.stack([w.ravel() for w in weight_grids], axis=1), axis=1)
    log_weights = jnp.where(weights > 0, jnp.log(jnp.where(weights > 0, weights, 1.0)), -jnp.inf)
    return points, log_weights


def _local_maxima(values, shape):
    """Mask of grid nodes not below any of their (up to 3^k - 1) neighbours."""
    grid = values.reshape(shape)
    padded = jnp.pad(grid, 1, constant_values=-jnp.inf)
    is_max = jnp.ones(shape, bool)
    k = len(shape)
    for offset in np.ndindex(*(3,) * k):
        if all(o == 1 for o in offset):
            continue
        window = tuple(slice(o, o + n) for o, n in zip(offset, shape))
        is_max = is_max & (grid >= padded[window])
    return is_max.ravel()


def _newton_ascent(log_joint, z0, radius0, precision_floor):
    """Trust-region Newton ascent on log_joint from z0: steps use the Hessian with its
    eigenvalues floored at `precision_floor`, are clipped to the trust radius, and are
    accepted only when they increase log_joint (the radius then doubles, else quarters)."""
    grad_fn = jax.grad(log_joint)
    hess_fn = jax.hessian(log_joint)

    def step(carry, _):
        z, value, radius = carry
        g = grad_fn(z)
        eigenvalues, vectors = jnp.linalg.eigh(-hess_fn(z))
        eigenvalues = jnp.maximum(eigenvalues, precision_floor)
        move = vectors @ ((vectors.T @ g) / eigenvalues)
        norm = jnp.linalg.norm(move)
        move = move * jnp.minimum(1.0, radius / jnp.maximum(norm, 1e-300))
        candidate = z + move
        candidate_value = log_joint(candidate)
        better = candidate_value >= value
        z = jnp.where(better, candidate, z)
        value = jnp.where(better, candidate_value, value)
        radius = jnp.where(better, 2.0 * radius, 0.25 * radius)
        return (z, value, radius), None

    (z, value, _), _ = jax.lax.scan(step, (z0, log_joint(z0), radius0), None, length=NEWTON_STEPS)
    eigenvalues, vectors = jnp.linalg.eigh(-hess_fn(z))
    cov = (vectors / jnp.maximum(eigenvalues, precision_floor)) @ vectors.T
    return z, value, 0.5 * (cov + cov.T)


def _modes(model: LatentModel, x):
    """Search grid on the prior box, its best local maxima refined by Newton ascent.

    Returns the search nodes and their log-joint values, the search spacing per axis and
    box, and N_MODES modes with their log-joint values and Laplace covariances."""
    k = model.latent_dim
    n = SEARCH_NODES[k]
    prior_sd = jnp.sqrt(jnp.diag(model.prior.cov))
    lo = model.prior.mean - SEARCH_TAIL * prior_sd
    hi = model.prior.mean + SEARCH_TAIL * prior_sd
    axes = [jnp.linspace(lo[a], hi[a], n) for a in range(k)]
    spacing = (hi - lo) / (n - 1)
    points = jnp.stack([g.ravel() for g in jnp.meshgrid(*axes, indexing="ij")], axis=1)

    def log_joint(z):
        return model.log_joint(x, z)

    values = jax.vmap(log_joint)(points)
    safe = jnp.where(jnp.isnan(values), -jnp.inf, values)
    scores = jnp.where(_local_maxima(safe, (n,) * k), safe, -jnp.inf)
    top_scores, top = jax.lax.top_k(scores, N_MODES)
    top = jnp.where(jnp.isfinite(top_scores), top, jnp.argmax(safe))
    # Floor the Hessian's eigenvalues so that a flat direction gets a Laplace width of at
    # most the search box, never an infinite one.
    precision_floor = 1.0 / jnp.max(hi - lo) ** 2
    modes, mode_values, covs = jax.vmap(
        lambda z0: _newton_ascent(log_joint, z0, 2.0 * jnp.max(spacing), precision_floor)
    )(points[top])
    return points, values, spacing, (lo, hi), modes, mode_values, covs


def _evidence_grid(model: LatentModel, x, panels: int, order: int, tail: float):
    """The posterior-centred grid: log p(x) at two refinements, nodes and log-weights.

    Per axis the panel edges are the union of P uniform panels on the global box (all
    search nodes within DROP_NATS of the best log-joint value, plus one spacing) and P
    uniform panels on each mode's Laplace box (mode +- tail Laplace standard deviations,
    at most the search box's half-width); the refinement halves every panel.
    """
    k = model.latent_dim
    points, values, spacing, (lo, hi), modes, mode_values, covs = _modes(model, x)
    best = jnp.maximum(jnp.max(jnp.where(jnp.isnan(values), -jnp.inf, values)), jnp.max(mode_values))
    keep = values >= best - DROP_NATS
    global_lo = jnp.maximum(jnp.min(jnp.where(keep[:, None], points, jnp.inf), axis=0) - spacing, lo)
    global_hi = jnp.minimum(jnp.max(jnp.where(keep[:, None], points, -jnp.inf), axis=0) + spacing, hi)
    half_search = 0.5 * (hi - lo)
    widths = jnp.minimum(tail * jnp.sqrt(jnp.diagonal(covs, axis1=1, axis2=2)), half_search)

    def edges_on_axis(a):
        pieces = [jnp.linspace(global_lo[a], global_hi[a], panels + 1)]
        pieces += [jnp.linspace(modes[j, a] - widths[j, a], modes[j, a] + widths[j, a], panels + 1) for j in range(N_MODES)]
        return jnp.sort(jnp.concatenate(pieces))

    edges = [edges_on_axis(a) for a in range(k)]
    refined = [jnp.sort(jnp.concatenate([e, 0.5 * (e[1:] + e[:-1])])) for e in edges]

    def log_integral(axis_edges):
        nodes, log_weights = _tensor([_gauss_legendre_panels(e, order) for e in axis_edges])
        log_values = jax.vmap(lambda z: model.log_joint(x, z))(nodes)
        terms = jnp.where(jnp.isfinite(log_weights), log_weights + log_values, -jnp.inf)
        return logsumexp(terms), nodes, terms

    coarse, _, _ = log_integral(edges)
    fine, nodes, terms = log_integral(refined)
    # Mass the grid leaves out: a Riemann sum of the search nodes outside its hull.
    hull_lo = jnp.stack([e[0] for e in refined])
    hull_hi = jnp.stack([e[-1] for e in refined])
    outside = jnp.any((points < hull_lo) | (points > hull_hi), axis=1)
    log_cell = jnp.sum(jnp.log(spacing))
    log_outside = logsumexp(jnp.where(outside, values + log_cell, -jnp.inf))
    error = jnp.abs(fine - coarse) + jnp.exp(log_outside - fine)
    return fine, error, nodes, terms - fine


_evidence_grid_jit = eqx.filter_jit(_evidence_grid)


def _describe(k, method: Quadrature) -> str:
    per_axis = 2 * (N_MODES + 1) * method.panels * method.order
    return (
        f"posterior-centred Gauss-Legendre quadrature ({k}-D, {per_axis} nodes per axis: "
        f"{2 * method.panels} panels on the global box and on each of {N_MODES} Laplace boxes of +-{method.tail:g} sd)"
    )


def _evidence_on_grid(model, x, method) -> tuple[Estimate, Float[Array, "N k"], Float[Array, " N"]]:
    """Check (model, x, method), then log p(x) as an `Estimate` with the fine grid's nodes
    and log posterior quadrature weights, all in float64 (`_evidence_grid`)."""
    model = _check_model(model)
    method = _check_quadrature(method)
    x = _check_x(x)
    with jax.enable_x64(True):
        value, error, nodes, log_weights = _evidence_grid_jit(
            to_float64(model), jnp.asarray(x, jnp.float64), method.panels, method.order, method.tail
        )
        return Estimate(value, error, "log p(x): " + _describe(model.latent_dim, method)), nodes, log_weights


def log_evidence(model: LatentModel, x, *, method: Quadrature | None = None) -> Estimate:
    """log p(x) = log int p(x | z) p(z) dz by posterior-centred quadrature, k <= 2.

    The grid: a uniform search on the prior box (mean +- 10 prior sd) finds the N_MODES
    best local maxima of log p(x, z); Newton ascent refines each to a mode m_j with
    Laplace covariance H_j^{-1} (H_j = -Hessian of log p(x, z) at m_j). Composite
    Gauss-Legendre panels are laid uniformly on the global box (every search node within
    60 nats of the maximum) and on each box m_j +- tail * sd_j, so a posterior narrower
    than the search spacing is still resolved by P panels across +- tail sd.

    Error: |log I(2P) - log I(P)| (the relative change of the integral under halving
    every panel; Gauss-Legendre converges geometrically for analytic integrands, so this
    bounds the coarse rule's error and overstates the fine one's) plus the relative mass
    outside the grid estimated by the search grid's Riemann sum there. Not covered: a
    feature of the posterior narrower than the search spacing and away from the located
    modes, and prior mass beyond 10 prior sd (< 1e-22 per axis, times sup p(x | z)).

    Args:
        model: the latent model (latent dimension 1 or 2).
        x: one observation, Float[Array, "d"].
        method: `Quadrature(panels, order, tail)` (default `DEFAULT_QUADRATURE`).

    Returns:
        An `Estimate` of log p(x) in nats (float64).
    """
    evidence, _, _ = _evidence_on_grid(model, x, method)
    return evidence


def log_evidence_values(
    model: LatentModel, data, *, method: Quadrature | None = None
) -> tuple[Float[Array, " n"], Float[Array, " n"]]:
    """log p(x_i) and its error (as in `log_evidence`) for each row of data (n, d), float64.

    Computed with `jax.lax.map` over the rows in batches (the grid of each point has a
    static size), so memory stays bounded in 2-D.
    """
    model = _check_model(model)
    method = _check_quadrature(method)
    data = jnp.asarray(data)
    if data.ndim != 2:
        raise ValueError(f"data must have shape (n, d), got shape {data.shape}")
    check_finite("data", data)
    with jax.enable_x64(True):
        model64 = to_float64(model)
        nodes = (2 * (N_MODES + 1) * method.panels * method.order) ** model.latent_dim
        batch = max(1, min(data.shape[0], (1 << 21) // nodes))
        return _evidence_values_jit(model64, jnp.asarray(data, jnp.float64), method.panels, method.order, method.tail, batch)


@eqx.filter_jit
def _evidence_values_jit(model, data, panels, order, tail, batch):
    def one(x):
        value, error, _, _ = _evidence_grid(model, x, panels, order, tail)
        return value, error

    return jax.lax.map(one, data, batch_size=batch)


def mean_log_evidence(model: LatentModel, data, *, method: Quadrature | None = None) -> Estimate:
    """(1/n) sum_i log p(x_i) over the rows of data (n, d); error = mean of the per-point
    quadrature errors (a bound on the average's error, the errors not being independent)."""
    values, errors = log_evidence_values(model, data, method=method)
    method = _check_quadrature(method)
    return Estimate(
        np.mean(np.asarray(values)),
        np.mean(np.asarray(errors)),
        f"mean log p(x) over n={values.shape[0]}: " + _describe(model.latent_dim, method),
    )


class GridPosterior(eqx.Module):
    """The exact posterior p(z | x) on a quadrature grid.

    E_{p(z|x)}[g(z)] ~= sum_i exp(log_weights_i) g(points_i), with the quadrature weight
    folded in: log_weights_i = log w_i + log p(x, z_i) - log p(x), summing to one.

    Attributes:
        points: Float[Array, "N k"], the grid nodes.
        log_weights: Float[Array, "N"], log posterior quadrature weights (-inf on empty panels).
        log_evidence: the `Estimate` of log p(x) the weights are normalised by.
    """

    points: Float[Array, "N k"]
    log_weights: Float[Array, " N"]
    log_evidence: Estimate = eqx.field(static=True)

    def expectation(self, g: Callable) -> Float[Array, "..."]:
        """sum_i w_i g(z_i) for g: (k,) -> array."""
        values = jax.vmap(g)(self.points)
        weights = jnp.exp(self.log_weights).reshape((-1,) + (1,) * (values.ndim - 1))
        return jnp.sum(jnp.where(weights > 0, weights * values, 0.0), axis=0)

    def mean(self) -> Float[Array, " k"]:
        return self.expectation(lambda z: z)

    def cov(self) -> Float[Array, "k k"]:
        mean = self.mean()
        return self.expectation(lambda z: jnp.outer(z - mean, z - mean))


def posterior_on_grid(model: LatentModel, x, *, method: Quadrature | None = None) -> GridPosterior:
    """p(z | x) = p(x | z) p(z) / p(x) on the fine grid of `log_evidence` (float64).

    Args:
        model: the latent model (k <= 2); x: one observation (d,); method: as `log_evidence`.

    Returns:
        A `GridPosterior` (nodes, normalised log quadrature weights, the evidence).
    """
    evidence, nodes, log_weights = _evidence_on_grid(model, x, method)
    return GridPosterior(nodes, log_weights, evidence)


# --------------------------------------------------------------------------------------
# Expectations under a Gaussian q: ELBO, KL to the posterior, IWAE
# --------------------------------------------------------------------------------------


def _gaussian_expectation(log_integrand, mean, chol, panels, order, tail):
    """int N(u; 0, I) f(m + L u) du on [-tail, tail]^k by Gauss-Legendre (P panels/axis)."""
    k = mean.shape[0]
    edges = jnp.linspace(-tail, tail, panels + 1)
    u, log_w = _tensor([_gauss_legendre_panels(edges, order)] * k)
    log_density = -0.5 * jnp.sum(u**2, axis=1) - 0.5 * k * _LOG_2PI
    values = jax.vmap(lambda ui: log_integrand(mean + chol @ ui))(u)
    return jnp.sum(jnp.exp(log_w + log_density) * values)


def _gaussian_entropy(chol):
    k = chol.shape[0]
    return 0.5 * k * (1.0 + _LOG_2PI) + jnp.sum(jnp.log(jnp.abs(jnp.diag(chol))))


@eqx.filter_jit
def _elbo_quadrature(model, x, mean, chol, panels, order, tail):
    """E_q[log p(x, z)] + H(q) at P and 2P panels in q's standardised coordinates."""

    def expected(p):
        return _gaussian_expectation(lambda z: model.log_joint(x, z), mean, chol, p, order, tail)

    entropy = _gaussian_entropy(chol)
    return expected(panels) + entropy, expected(2 * panels) + entropy


def elbo_of(q: Gaussian, model: LatentModel, x, *, key=None, method: Quadrature | MonteCarlo | None = None) -> Estimate:
    """ELBO(q) = E_{z ~ q}[log p(x, z) - log q(z)] for a Gaussian q(z | x).

    With `Quadrature(panels, order, tail)` (default): E_q[log p(x, z)] by Gauss-Legendre
    in q's standardised coordinates u = L^{-1}(z - m) on [-tail, tail]^k, plus the
    closed-form entropy; error = |I(2P) - I(P)| (q's mass outside the box, < 1e-22 per
    axis at tail 10, is not added). With `MonteCarlo(n)`: the reparametrised estimate
    z = m + L eps (Kingma & Welling 2014, Sec. 2.4) with its standard error; needs `key`.

    Args:
        q: the variational posterior for this x, a `Gaussian` on R^k.
        model: the latent model; x: one observation (d,).

    Returns:
        An `Estimate` in nats (float64).
    """
    model = _check_model(model)
    _check_q(q, model)
    x = _check_x(x)
    if method is None:
        method = DEFAULT_QUADRATURE
    if not isinstance(method, (Quadrature, MonteCarlo)):
        raise ValueError(f"method must be Quadrature(...) or MonteCarlo(...), got {method!r}")
    if isinstance(method, MonteCarlo):
        check_key("key", key)
    with jax.enable_x64(True):
        model64, q64 = to_float64((model, q))
        x64 = jnp.asarray(x, jnp.float64)
        if isinstance(method, MonteCarlo):
            values = _elbo_samples(model64, q64, x64, key, method.n)
            return monte_carlo_mean(values, f"ELBO: reparametrised Monte Carlo (n={method.n})")
        coarse, fine = _elbo_quadrature(model64, x64, q64.mean, q64.chol, method.panels, method.order, method.tail)
        return Estimate(
            fine,
            abs(float(fine) - float(coarse)),
            f"ELBO: Gauss-Legendre quadrature in q's standardised coordinates "
            f"({2 * method.panels * method.order} nodes per axis on +-{method.tail:g} sd)",
        )


@eqx.filter_jit
def _elbo_samples(model, q, x, key, n):
    z = q.sample(key, n)
    return jax.vmap(lambda zi: model.log_joint(x, zi))(z) - q.log_prob(z)


def kl_to_posterior(q: Gaussian, model: LatentModel, x, *, key=None, method: Quadrature | MonteCarlo | None = None) -> Estimate:
    """KL(q || p(. | x)) = log p(x) - ELBO(q) >= 0 (Kingma & Welling 2014, eq. (1)).

    log p(x) by `log_evidence` (default quadrature), ELBO(q) by `elbo_of` with `method`;
    the two errors add.
    """
    evidence = log_evidence(model, x, method=method if isinstance(method, Quadrature) else None)
    bound = elbo_of(q, model, x, key=key, method=method)
    return Estimate(
        evidence.value - bound.value,
        evidence.error + bound.error,
        f"KL(q || p(z | x)) = [{evidence.method}] minus [{bound.method}]",
    )


def iwae_bound(q: Gaussian, model: LatentModel, x, *, k: int, key, n_repeats: int = 1000) -> Estimate:
    """L_K = E[log (1/K) sum_i p(x, z_i) / q(z_i)], z_i ~ q i.i.d. (Burda et al. 2016, eq. (8)).

    ELBO = L_1 <= L_K <= L_{K+1} <= log p(x) (their Theorem 1).

    Args:
        q: the proposal, a `Gaussian` on R^k_latent; model, x: as `elbo_of`.
        k: K, importance samples per bound; key: PRNG key; n_repeats: independent
            evaluations of the inner log-mean averaged.

    Returns:
        An `Estimate` whose error is the standard error over the n_repeats evaluations.
    """
    model = _check_model(model)
    k = check_count("k", k)
    n_repeats = check_count("n_repeats", n_repeats, minimum=2)
    check_key("key", key)
    _check_q(q, model)
    x = _check_x(x)
    with jax.enable_x64(True):
        model64, q64 = to_float64((model, q))
        values = _iwae_values(model64, q64, jnp.asarray(x, jnp.float64), key, k, n_repeats)
        return monte_carlo_mean(values, f"IWAE bound: K={k}, {n_repeats} evaluations")


@eqx.filter_jit
def _iwae_values(model, q, x, key, k, n_repeats):
    z = q.sample(key, n_repeats * k)
    log_weights = jax.vmap(lambda zi: model.log_joint(x, zi))(z) - q.log_prob(z)
    return logsumexp(log_weights.reshape(n_repeats, k), axis=1) - math.log(k)


# --------------------------------------------------------------------------------------
# The optimal Gaussian posterior
# --------------------------------------------------------------------------------------


OPTIMISER_HERMITE_NODES = {1: 48, 2: 20}
"""Gauss-Hermite nodes per axis for E_q[log p(x, z)] inside the optimisation: a smooth,
deterministic objective (exact for polynomial log-joints of degree < 2n); the reported
KL of the optimum is then computed with the refined rule of `elbo_of`."""


def _gauss_hermite_expectation(log_integrand, mean, chol, n):
    """E_{N(m, L L^T)}[f] = pi^{-k/2} sum_i w_i f(m + sqrt(2) L t_i) (tensor Gauss-Hermite)."""
    k = mean.shape[0]
    t, w = np.polynomial.hermite.hermgauss(n)
    u, log_w = _tensor([(jnp.asarray(math.sqrt(2.0) * t), jnp.asarray(w / math.sqrt(math.pi)))] * k)
    values = jax.vmap(lambda ui: log_integrand(mean + chol @ ui))(u)
    return jnp.sum(jnp.exp(log_w) * values)


@eqx.filter_jit
def _optimal_gaussian_params(model, x, family, steps):
    k = model.latent_dim
    _, _, _, _, modes, mode_values, covs = _modes(model, x)
    best = jnp.argmax(mode_values)
    params = (modes[best], family.raw_from_cov(covs[best]))

    def negative_elbo(params):
        mean, raw = params
        chol = family.scale_tril(raw, k)
        expected = _gauss_hermite_expectation(lambda z: model.log_joint(x, z), mean, chol, OPTIMISER_HERMITE_NODES[k])
        return -(expected + _gaussian_entropy(chol))

    optimiser = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(negative_elbo)

    def step(carry, _):
        params, state = carry
        value, grad = value_and_grad(params, state=state)
        updates, state = optimiser.update(grad, state, params, value=value, grad=grad, value_fn=negative_elbo)
        return (optax.apply_updates(params, updates), state), value

    (params, _), values = jax.lax.scan(step, (params, optimiser.init(params)), None, length=steps)
    mean, raw = params
    return mean, family.scale_tril(raw, k), values


def optimal_gaussian_posterior(
    model: LatentModel,
    x,
    *,
    family: AbstractGaussianFamily | None = None,
    steps: int = 50,
) -> Gaussian:
    """q*(z | x) = argmax_{q in family} ELBO(q) for one x, by L-BFGS (optax.lbfgs).

    The ELBO is E_q[log p(x, z)] (tensor Gauss-Hermite, `OPTIMISER_HERMITE_NODES` per
    axis) plus the closed-form entropy, a smooth
    deterministic function of (m, L). Started at the Laplace approximation of the highest
    located posterior mode, so for a multimodal posterior q* is the best Gaussian around
    that mode (a local optimum). KL(q* || p(. | x)) is then `kl_to_posterior(q*, ...)`.

    Args:
        model: the latent model (k <= 2); x: one observation (d,).
        family: `FullCovarianceGaussian()` (default) or `FactorisedGaussian()`.
        steps: L-BFGS iterations.

    Returns:
        The optimal `Gaussian` q* (float64).
    """
    model = _check_model(model)
    x = _check_x(x)
    family = FullCovarianceGaussian() if family is None else family
    if not isinstance(family, AbstractGaussianFamily):
        raise TypeError(f"family must be FactorisedGaussian() or FullCovarianceGaussian(), got {family!r}")
    steps = check_count("steps", steps)
    with jax.enable_x64(True):
        model64 = to_float64(model)
        mean, chol, _ = _optimal_gaussian_params(model64, jnp.asarray(x, jnp.float64), family, steps)
        return Gaussian(mean, chol @ chol.T)


__all__ = [
    "DEFAULT_QUADRATURE",
    "MAX_LATENT_DIM",
    "AbstractGaussianFamily",
    "FactorisedGaussian",
    "FullCovarianceGaussian",
    "GridPosterior",
    "LatentModel",
    "elbo_of",
    "iwae_bound",
    "kl_to_posterior",
    "log_evidence",
    "log_evidence_values",
    "mean_log_evidence",
    "optimal_gaussian_posterior",
    "posterior_on_grid",
]
