"""Variational autoencoders with a Gaussian decoder and an amortised Gaussian encoder.

Model (Kingma & Welling 2014): z ~ N(0, I_k), x | z ~ N(f_theta(z), sigma^2 I_d), with
sigma learned or fixed; encoder q_phi(z | x) = N(m_phi(x), L_phi(x) L_phi(x)^T) in a
factorised or full-covariance family (`theory.latent_evidence.FactorisedGaussian`,
`FullCovarianceGaussian`). Objectives are objects: `ELBOObjective(beta)` (beta = 1 is the
ELBO, beta != 1 the beta-VAE of Higgins et al. 2017) and `IWAEObjective(k)` (Burda,
Grosse & Salakhutdinov 2016). `depth=0` gives the linear VAE, whose optimum is
probabilistic PCA (Tipping & Bishop 1999; Lucas et al. 2019); `ppca_linear_vae` builds it
in closed form.

A trained `VAE` exposes `decoder_log_likelihood(x, z)` and `encoder(x)`, and
`latent_model()` hands it to `theory.latent_evidence` for the exact log p(x), posterior
and gaps (latent dimension 1 or 2).

`train_vae` runs `n_steps` Adam steps through `models.training.train` (one jitted scan);
`train_vae_replicas` trains many seeds at once, optionally sharded over devices.
Parameters are float32.
"""

from __future__ import annotations

import abc
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp
from jaxtyping import Array, Float, PRNGKeyArray

from models import sharding
from models.training import AdamSpec, FiniteSample, IndependentDraws, train
from theory.distributions import Gaussian
from theory.latent_evidence import AbstractGaussianFamily, FactorisedGaussian, LatentModel
from theory.validation import check_count, check_positive_number

_LOG_2PI = math.log(2.0 * math.pi)


# --------------------------------------------------------------------------------------
# Observation noise
# --------------------------------------------------------------------------------------


class AbstractObservationNoise(eqx.Module):
    """How sigma in x | z ~ N(f(z), sigma^2 I) is set."""

    @abc.abstractmethod
    def initial_std(self) -> float:
        """sigma at initialisation."""

    @abc.abstractmethod
    def learned(self) -> bool:
        """Whether sigma is a trained parameter."""


class LearnedNoise(AbstractObservationNoise):
    """sigma = exp(s), s trained, starting at log(init_std)."""

    init_std: float = eqx.field(static=True, default=1.0)

    def __check_init__(self):
        check_positive_number("init_std", self.init_std)

    def initial_std(self):
        return self.init_std

    def learned(self):
        return True


class FixedNoise(AbstractObservationNoise):
    """sigma fixed at `std` (no gradient reaches it)."""

    std: float = eqx.field(static=True, default=1.0)

    def __check_init__(self):
        check_positive_number("std", self.std)

    def initial_std(self):
        return self.std

    def learned(self):
        return False


# --------------------------------------------------------------------------------------
# Spec and model
# --------------------------------------------------------------------------------------


def check_autoencoder_fields(spec) -> None:
    """Check the fields every Gaussian-decoder autoencoder spec has (`VAESpec`, `VQVAESpec`).

    `data_dim` >= 1, MLP `width` >= 1 and `depth` >= 0, and `noise` an observation noise;
    a bad value raises the error `theory.validation` gives for that kind, naming the field.
    """
    check_count("data_dim", spec.data_dim, minimum=1)
    check_count("width", spec.width, minimum=1)
    check_count("depth", spec.depth, minimum=0)
    if not isinstance(spec.noise, AbstractObservationNoise):
        raise TypeError(f"noise must be LearnedNoise(...) or FixedNoise(...), got {spec.noise!r}")


class VAESpec(eqx.Module):
    """A VAE architecture: `spec.build(key)` returns a float32 `VAE`.

    Args:
        data_dim: d.
        latent_dim: k (exact evidence in `theory.latent_evidence` needs k <= 2).
        width: hidden width of the decoder MLP (and of the encoder unless encoder_width).
        depth: hidden layers of each MLP (tanh); 0 gives the linear VAE (pPCA).
        posterior_family: `FactorisedGaussian()` or `FullCovarianceGaussian()`.
        noise: `LearnedNoise(init_std)` or `FixedNoise(std)`.
        encoder_width: hidden width of the encoder MLP (None: `width`), so that encoder
            and decoder capacity can be swept separately (Cremer et al. 2018, Sec. 5.2).
    """

    data_dim: int = eqx.field(static=True, default=2)
    latent_dim: int = eqx.field(static=True, default=1)
    width: int = eqx.field(static=True, default=32)
    depth: int = eqx.field(static=True, default=2)
    posterior_family: AbstractGaussianFamily = eqx.field(static=True, default=FactorisedGaussian())
    noise: AbstractObservationNoise = eqx.field(static=True, default=LearnedNoise())
    encoder_width: int | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        check_autoencoder_fields(self)
        check_count("latent_dim", self.latent_dim, minimum=1)
        if self.encoder_width is not None:
            check_count("encoder_width", self.encoder_width, minimum=1)
        if not isinstance(self.posterior_family, AbstractGaussianFamily):
            raise TypeError(
                f"posterior_family must be FactorisedGaussian() or FullCovarianceGaussian(), got {self.posterior_family!r}"
            )

    @property
    def n_encoder_outputs(self) -> int:
        return self.latent_dim + self.posterior_family.n_scale_params(self.latent_dim)

    def build(self, key: PRNGKeyArray) -> "VAE":
        """Fresh float32 networks (encoder x -> (mean, raw scale), decoder z -> f(z))."""
        key_encoder, key_decoder = jax.random.split(key)
        encoder = eqx.nn.MLP(
            self.data_dim, self.n_encoder_outputs, self.width if self.encoder_width is None else self.encoder_width, self.depth,
            activation=jnp.tanh, key=key_encoder, dtype=jnp.float32,
        )
        decoder = eqx.nn.MLP(
            self.latent_dim, self.data_dim, self.width, self.depth,
            activation=jnp.tanh, key=key_decoder, dtype=jnp.float32,
        )
        return VAE(encoder, decoder, jnp.log(jnp.asarray(self.noise.initial_std(), jnp.float32)), self)


class VAE(eqx.Module):
    """A trained or fresh VAE: p(z) = N(0, I_k), p(x | z) = N(f(z), sigma^2 I), q(z | x)."""

    encoder_net: eqx.nn.MLP
    decoder_net: eqx.nn.MLP
    log_noise_std: Float[Array, ""]
    spec: VAESpec = eqx.field(static=True)

    @property
    def latent_dim(self) -> int:
        return self.spec.latent_dim

    def noise_std(self) -> Float[Array, ""]:
        log_std = self.log_noise_std if self.spec.noise.learned() else jax.lax.stop_gradient(self.log_noise_std)
        return jnp.exp(log_std)

    def encoder(self, x: Float[Array, " d"]) -> tuple[Float[Array, " k"], Float[Array, "k k"]]:
        """q(z | x) = N(mean, L L^T): returns (mean, L), L lower triangular (diagonal for
        the factorised family) with positive diagonal."""
        out = self.encoder_net(x)
        k = self.latent_dim
        return out[:k], self.spec.posterior_family.scale_tril(out[k:], k)

    def decoder_mean(self, z: Float[Array, " k"]) -> Float[Array, " d"]:
        """f(z)."""
        return self.decoder_net(z)

    def decoder_log_likelihood(self, x: Float[Array, " d"], z: Float[Array, " k"]) -> Float[Array, ""]:
        """log p(x | z) = log N(x; f(z), sigma^2 I_d)."""
        sigma = self.noise_std()
        residual = x - self.decoder_mean(z)
        d = residual.shape[0]
        return -0.5 * jnp.sum(residual**2) / sigma**2 - d * (jnp.log(sigma) + 0.5 * _LOG_2PI)

    def variational_posterior(self, x: Float[Array, " d"]) -> Gaussian:
        """q(z | x) as a `theory.Gaussian`."""
        mean, chol = self.encoder(x)
        return Gaussian(mean, chol @ chol.T)

    def latent_model(self) -> LatentModel:
        """The generative model for `theory.latent_evidence` (exact log p(x) etc.)."""
        return LatentModel(self.decoder_log_likelihood, self.latent_dim)

    def sample(self, key: PRNGKeyArray, n: int) -> Float[Array, "n d"]:
        """n ancestral draws x = f(z) + sigma eps."""
        n = check_count("n", n)
        key_z, key_x = jax.random.split(key)
        dtype = self.log_noise_std.dtype
        z = jax.random.normal(key_z, (n, self.latent_dim), dtype)
        noise = jax.random.normal(key_x, (n, self.spec.data_dim), dtype)
        return jax.vmap(self.decoder_mean)(z) + self.noise_std() * noise


def _reparametrised(model: VAE, x, key, n):
    """n draws z = m + L eps of q(z | x) with log q(z) and log p(x | z)."""
    mean, chol = model.encoder(x)
    eps = jax.random.normal(key, (n, model.latent_dim), mean.dtype)
    z = mean + eps @ chol.T
    log_q = -0.5 * jnp.sum(eps**2, axis=1) - jnp.sum(jnp.log(jnp.diag(chol))) - 0.5 * model.latent_dim * _LOG_2PI
    log_lik = jax.vmap(lambda zi: model.decoder_log_likelihood(x, zi))(z)
    return z, log_q, log_lik, mean, chol


# --------------------------------------------------------------------------------------
# Objectives
# --------------------------------------------------------------------------------------


class AbstractVAEObjective(eqx.Module):
    """A per-point training loss (a negated bound on log p(x)), estimated with `key`."""

    @abc.abstractmethod
    def loss(self, model: VAE, x: Float[Array, " d"], key: PRNGKeyArray) -> Float[Array, ""]:
        """The loss at one observation x."""


class ELBOObjective(AbstractVAEObjective):
    """-[E_q log p(x | z) - beta KL(q(z | x) || N(0, I))], reparametrised, KL in closed form.

    beta = 1: the negative ELBO (Kingma & Welling 2014, eq. (10)); beta != 1: the
    beta-VAE (Higgins et al. 2017, eq. (4)), a bound on log p(x) only at beta = 1.

    Args:
        beta: weight of the KL term (> 0).
        n_samples: draws of z per x.
    """

    beta: float = eqx.field(static=True, default=1.0)
    n_samples: int = eqx.field(static=True, default=1)

    def __check_init__(self):
        check_positive_number("beta", self.beta)
        check_count("n_samples", self.n_samples, minimum=1)

    def loss(self, model, x, key):
        _, _, log_lik, mean, chol = _reparametrised(model, x, key, self.n_samples)
        k = model.latent_dim
        kl = 0.5 * (jnp.sum(chol**2) + jnp.sum(mean**2) - k) - jnp.sum(jnp.log(jnp.diag(chol)))
        return -(jnp.mean(log_lik) - self.beta * kl)


class IWAEObjective(AbstractVAEObjective):
    """-log (1/K) sum_i p(x, z_i) / q(z_i | x), z_i ~ q i.i.d. (Burda et al. 2016, eq. (8)).

    Args:
        k: K >= 1 importance samples (K = 1 is the ELBO).
    """

    k: int = eqx.field(static=True, default=5)

    def __check_init__(self):
        check_count("k", self.k, minimum=1)

    def loss(self, model, x, key):
        z, log_q, log_lik, _, _ = _reparametrised(model, x, key, self.k)
        log_prior = -0.5 * jnp.sum(z**2, axis=1) - 0.5 * model.latent_dim * _LOG_2PI
        return -(logsumexp(log_lik + log_prior - log_q) - math.log(self.k))


# --------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------


class VAETraining(eqx.Module):
    """Adam settings and minibatch size."""

    learning_rate: float = eqx.field(static=True, default=3e-3)
    batch_size: int = eqx.field(static=True, default=128)

    def __check_init__(self):
        check_positive_number("learning_rate", self.learning_rate)
        check_count("batch_size", self.batch_size, minimum=1)


class _VAELoss(eqx.Module):
    """The mean per-point loss over a batch (x, k_loss), one key split from k_loss per point."""

    objective: AbstractVAEObjective

    def __call__(self, model: VAE, batch) -> Float[Array, ""]:
        x, key = batch
        keys = jax.random.split(key, x.shape[0])
        return jnp.mean(jax.vmap(lambda xi, ki: self.objective.loss(model, xi, ki))(x, keys))


@eqx.filter_jit
def train_vae(
    model: VAE,
    data: Float[Array, "n d"],
    *,
    key: PRNGKeyArray,
    n_steps: int,
    objective: AbstractVAEObjective = ELBOObjective(),
    training: VAETraining = VAETraining(),
) -> tuple[VAE, Float[Array, " n_steps"]]:
    """`n_steps` Adam steps on the mean per-point loss over minibatches (`models.training.train`).

    Step k draws (k_batch, k_loss) = split(key_k): a minibatch uniform with replacement
    from the n training points (`FiniteSample`) and the objective's reparametrisation
    noise. A non-finite loss is recorded as such (the run is not stopped; check
    `losses`). `eqx.filter_vmap(lambda m, k: train_vae(m, data, key=k, n_steps=...))(models, keys)`
    trains many seeds as one program; `train_vae_replicas` also shards them over devices.

    Args:
        model: the initial VAE (e.g. `spec.build(key)`).
        data: training points, (n, d), cast to float32.
        key: PRNG key; n_steps: number of steps (static).
        objective: `ELBOObjective(beta)` or `IWAEObjective(k)`.

    Returns:
        The trained VAE and the per-step minibatch losses.

    Reference: Kingma & Welling (2014), Algorithm 1 (with Adam, Kingma & Ba 2015).
    """
    batches = IndependentDraws((FiniteSample(jnp.asarray(data, jnp.float32), training.batch_size),))
    result = train(model, _VAELoss(objective), optimiser=AdamSpec(training.learning_rate), batches=batches,
                   n_steps=n_steps, key=key, record_every=1)
    return result.model, result.losses


def _fit_one(model, data, key, *, fit, **settings):
    return fit(model, data, key=key, **settings)


def _fit_replicas(fit, models, data, keys, *, mesh, settings):
    """`fit(model, data, key=key, **settings)` on every replica, sharded over `mesh` (also VQ-VAE's)."""
    return sharding.vmap_sharded(_fit_one, models, data, keys, mesh=mesh, fit=fit, **settings)


def train_vae_replicas(
    models: VAE, data: Float[Array, "R n d"], keys: PRNGKeyArray, *, mesh: jax.sharding.Mesh | None = None, **settings
) -> tuple[VAE, Float[Array, "R n_steps"]]:
    """`train_vae` on R replicas as one program: models, data (R, n, d) and keys (R,) share a leading axis.

    Args:
        models, data, keys: R replicas along the leading axis.
        mesh: a `models.sharding.mesh_for` mesh: the replica axis is split over its
            devices; None runs on the default device.
        settings: `train_vae`'s keywords (n_steps, objective, training), common to all.

    Returns:
        The trained VAEs and the losses (R, n_steps).
    """
    return _fit_replicas(train_vae, models, data, keys, mesh=mesh, settings=settings)


# --------------------------------------------------------------------------------------
# The linear VAE's closed-form optimum
# --------------------------------------------------------------------------------------


def ppca_linear_vae(spec: VAESpec, data: Float[Array, "n d"], *, noise_std: float | None = None) -> VAE:
    """The linear VAE at the pPCA maximum-likelihood point, encoder at the exact posterior.

    With S the sample covariance (1/n) of data, eigenpairs (lambda_i, u_i) in decreasing
    order (Tipping & Bishop 1999, eq. (7)-(8)):
        sigma^2 = mean_{i > k} lambda_i (if noise_std is None, else noise_std^2),
        W = U_k (Lambda_k - sigma^2 I)_+^{1/2},  b = mean(data),
    so directions with lambda_i <= sigma^2 collapse (zero column). The encoder is the
    exact posterior N(M^{-1} W^T (x - b), sigma^2 M^{-1}), M = W^T W + sigma^2 I, which
    is diagonal since W's columns are orthogonal: the ELBO equals log p(x) there.

    Args:
        spec: a `VAESpec` with depth 0 (linear) and latent_dim <= data_dim.
        data: (n, d) training points.
        noise_std: sigma, or None: the spec's `FixedNoise` std, else the maximum-likelihood
            sigma (for `LearnedNoise`).

    Returns:
        A float32 `VAE` at that point (R = I).
    """
    if not isinstance(spec, VAESpec) or spec.depth != 0:
        raise ValueError(f"spec must be a linear VAESpec (depth=0), got {spec!r}")
    data = np.asarray(data, np.float64)
    if data.ndim != 2 or data.shape[1] != spec.data_dim:
        raise ValueError(f"data must have shape (n, {spec.data_dim}), got shape {data.shape}")
    k, d = spec.latent_dim, spec.data_dim
    if k > d:
        raise ValueError(f"latent_dim must be <= data_dim for pPCA, got {k} > {d}")
    if noise_std is None and k == d and spec.noise.learned():
        raise ValueError("noise_std must be given when latent_dim == data_dim (no discarded eigenvalues)")
    if noise_std is not None:
        check_positive_number("noise_std", noise_std)
    if not spec.noise.learned():
        if noise_std is not None and noise_std != spec.noise.initial_std():
            raise ValueError(f"noise_std must equal the spec's FixedNoise std {spec.noise.initial_std()}, got {noise_std}")
        noise_std = spec.noise.initial_std()
    mean = data.mean(axis=0)
    cov = np.cov(data, rowvar=False, bias=True).reshape(d, d)
    eigenvalues, vectors = np.linalg.eigh(cov)
    eigenvalues, vectors = eigenvalues[::-1], vectors[:, ::-1]
    sigma2 = float(np.mean(eigenvalues[k:])) if noise_std is None else float(noise_std) ** 2
    weight = vectors[:, :k] * np.sqrt(np.maximum(eigenvalues[:k] - sigma2, 0.0))
    m = weight.T @ weight + sigma2 * np.eye(k)
    encoder_weight = np.linalg.solve(m, weight.T)
    posterior_cov = sigma2 * np.linalg.inv(m)
    raw_scale = np.asarray(spec.posterior_family.raw_from_cov(jnp.asarray(posterior_cov)))
    model = spec.build(jax.random.key(0))
    enc_w = np.zeros((spec.n_encoder_outputs, d))
    enc_w[:k] = encoder_weight
    enc_b = np.concatenate([-encoder_weight @ mean, raw_scale])
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    enc_layer, dec_layer = model.encoder_net.layers[0], model.decoder_net.layers[0]
    model = eqx.tree_at(
        lambda v: (v.encoder_net.layers[0].weight, v.encoder_net.layers[0].bias,
                   v.decoder_net.layers[0].weight, v.decoder_net.layers[0].bias, v.log_noise_std),
        model,
        (f32(enc_w).reshape(enc_layer.weight.shape), f32(enc_b).reshape(enc_layer.bias.shape),
         f32(weight).reshape(dec_layer.weight.shape), f32(mean).reshape(dec_layer.bias.shape),
         f32(0.5 * np.log(sigma2))),
    )
    return model


__all__ = [
    "AbstractObservationNoise",
    "AbstractVAEObjective",
    "ELBOObjective",
    "FixedNoise",
    "IWAEObjective",
    "LearnedNoise",
    "VAE",
    "VAESpec",
    "VAETraining",
    "check_autoencoder_fields",
    "ppca_linear_vae",
    "train_vae",
    "train_vae_replicas",
]
