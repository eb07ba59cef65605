"""VQ-VAE with a Gaussian decoder and a learned categorical prior: an exact C-mixture.

van den Oord, Vinyals & Kavukcuoglu (2017): an encoder z_e(x) in R^k is quantised to its
nearest codebook vector e_c, c(x) = argmin_j ||z_e(x) - e_j||, and decoded to
x | c ~ N(f(e_c), sigma^2 I). Training minimises (their eq. (3))
    -log N(x; f(z_e + sg(e_c - z_e)), sigma^2 I)       (straight-through estimator)
    + ||sg(z_e) - e_c||^2                                (codebook; replaced by EMA)
    + beta ||z_e - sg(e_c)||^2                           (commitment)
    - log pi_{c(x)}                                      (categorical prior, on sg(c))
With `EMACodebook(decay)` the codebook follows exponential moving averages of the
assigned encodings instead (their Appendix A.1). With prior pi = softmax(logits) the
model law is the C-component mixture
    p(x) = sum_c pi_c N(x; f(e_c), sigma^2 I),
so log p(x) is exact (`VQVAE.marginal()` is a `theory.MixtureOfGaussians`).
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from theory.distributions import MixtureOfGaussians, to_float64
from theory.estimate import Estimate, monte_carlo_mean
from theory.validation import check_count, check_in_interval, check_key, check_positive_number
from models.training import AdamSpec, FiniteSample, train
from models.vae import AbstractObservationNoise, LearnedNoise, _fit_replicas, check_autoencoder_fields

_LOG_2PI = math.log(2.0 * math.pi)


class EMACodebook(eqx.Module):
    """Codebook updated by EMA of cluster sizes N_c and sums m_c: e_c = m_c / N~_c, with
    Laplace smoothing N~_c = (N_c + eps) / (N + C eps) N (van den Oord et al. 2017, App. A.1)."""

    decay: float = eqx.field(static=True, default=0.99)
    epsilon: float = eqx.field(static=True, default=1e-5)

    def __check_init__(self):
        check_in_interval("decay", self.decay, 0.0, 1.0, include_low=True)
        check_positive_number("epsilon", self.epsilon)


class VQVAESpec(eqx.Module):
    """A VQ-VAE architecture: `spec.build(key)` returns a float32 `VQVAE`.

    Args:
        data_dim: d; code_dim: k, the dimension of the codebook vectors.
        n_codes: C >= 1, the codebook size.
        width, depth: encoder and decoder MLPs (tanh).
        commitment: beta >= 0 of the commitment loss.
        noise: `LearnedNoise(init_std)` or `FixedNoise(std)`.
        ema: `EMACodebook(decay)` to update the codebook by EMA, None for the codebook loss.
    """

    data_dim: int = eqx.field(static=True, default=2)
    code_dim: int = eqx.field(static=True, default=1)
    n_codes: int = eqx.field(static=True, default=8)
    width: int = eqx.field(static=True, default=32)
    depth: int = eqx.field(static=True, default=2)
    commitment: float = eqx.field(static=True, default=0.25)
    noise: AbstractObservationNoise = eqx.field(static=True, default=LearnedNoise())
    ema: EMACodebook | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        check_autoencoder_fields(self)
        check_count("code_dim", self.code_dim, minimum=1)
        check_count("n_codes (C)", self.n_codes, minimum=1)
        check_positive_number("commitment", self.commitment, allow_zero=True)
        if self.ema is not None and not isinstance(self.ema, EMACodebook):
            raise TypeError(f"ema must be EMACodebook(...) or None, got {self.ema!r}")

    def build(self, key: PRNGKeyArray) -> "VQVAE":
        key_encoder, key_decoder, key_codes = jax.random.split(key, 3)
        encoder = eqx.nn.MLP(self.data_dim, self.code_dim, self.width, self.depth, activation=jnp.tanh, key=key_encoder, dtype=jnp.float32)
        decoder = eqx.nn.MLP(self.code_dim, self.data_dim, self.width, self.depth, activation=jnp.tanh, key=key_decoder, dtype=jnp.float32)
        codebook = jax.random.normal(key_codes, (self.n_codes, self.code_dim), jnp.float32)
        return VQVAE(
            encoder_net=encoder,
            decoder_net=decoder,
            codebook=codebook,
            prior_logits=jnp.zeros((self.n_codes,), jnp.float32),
            log_noise_std=jnp.log(jnp.asarray(self.noise.initial_std(), jnp.float32)),
            ema_counts=jnp.ones((self.n_codes,), jnp.float32),
            ema_sums=codebook,
            spec=self,
        )


class VQVAE(eqx.Module):
    """Encoder, codebook (C, k), decoder, categorical prior logits (C,), noise, EMA state."""

    encoder_net: eqx.nn.MLP
    decoder_net: eqx.nn.MLP
    codebook: Float[Array, "C k"]
    prior_logits: Float[Array, " C"]
    log_noise_std: Float[Array, ""]
    ema_counts: Float[Array, " C"]
    ema_sums: Float[Array, "C k"]
    spec: VQVAESpec = eqx.field(static=True)

    def noise_std(self) -> Float[Array, ""]:
        log_std = self.log_noise_std if self.spec.noise.learned() else jax.lax.stop_gradient(self.log_noise_std)
        return jnp.exp(log_std)

    def encode(self, x: Float[Array, " d"]) -> Float[Array, " k"]:
        """z_e(x)."""
        return self.encoder_net(x)

    def assign(self, z_e: Float[Array, " k"]) -> Int[Array, ""]:
        """c = argmin_j ||z_e - e_j||^2."""
        return jnp.argmin(jnp.sum((self.codebook - z_e) ** 2, axis=1))

    def code_means(self) -> Float[Array, "C d"]:
        """f(e_c) for every code."""
        return jax.vmap(self.decoder_net)(self.codebook)

    def log_prior(self) -> Float[Array, " C"]:
        return jax.nn.log_softmax(self.prior_logits)

    def log_prob(self, x: Float[Array, "... d"]) -> Float[Array, "..."]:
        """log p(x) = logsumexp_c [log pi_c + log N(x; f(e_c), sigma^2 I)], exact."""
        means = self.code_means()
        sigma = self.noise_std()
        d = means.shape[1]
        residual = x[..., None, :] - means
        log_components = -0.5 * jnp.sum(residual**2, axis=-1) / sigma**2 - d * (jnp.log(sigma) + 0.5 * _LOG_2PI)
        return logsumexp(self.log_prior() + log_components, axis=-1)

    def marginal(self) -> MixtureOfGaussians:
        """The model law sum_c pi_c N(f(e_c), sigma^2 I) as a `theory.MixtureOfGaussians`."""
        return MixtureOfGaussians.isotropic(jax.nn.softmax(self.prior_logits), self.code_means(), self.noise_std() ** 2)

    def sample(self, key: PRNGKeyArray, n: int) -> Float[Array, "n d"]:
        """n ancestral draws: c ~ pi, x = f(e_c) + sigma eps."""
        n = check_count("n", n)
        key_c, key_x = jax.random.split(key)
        codes = jax.random.categorical(key_c, self.prior_logits, shape=(n,))
        noise = jax.random.normal(key_x, (n, self.spec.data_dim), self.codebook.dtype)
        return self.code_means()[codes] + self.noise_std() * noise


def vqvae_loss(model: VQVAE, x: Float[Array, "b d"]) -> tuple[Float[Array, ""], Int[Array, " b"]]:
    """The mean per-point VQ-VAE loss over a batch, and the batch's code assignments."""
    spec = model.spec
    z_e = jax.vmap(model.encode)(x)
    codes = jax.vmap(model.assign)(jax.lax.stop_gradient(z_e))
    e = model.codebook[codes]
    z_q = z_e + jax.lax.stop_gradient(e - z_e)  # straight-through: forward e, backward identity
    sigma = model.noise_std()
    residual = x - jax.vmap(model.decoder_net)(z_q)
    d = x.shape[1]
    reconstruction = 0.5 * jnp.sum(residual**2, axis=1) / sigma**2 + d * (jnp.log(sigma) + 0.5 * _LOG_2PI)
    commitment = spec.commitment * jnp.sum((z_e - jax.lax.stop_gradient(e)) ** 2, axis=1)
    codebook = 0.0 if spec.ema is not None else jnp.sum((jax.lax.stop_gradient(z_e) - e) ** 2, axis=1)
    prior = -model.log_prior()[codes]
    return jnp.mean(reconstruction + commitment + codebook + prior), codes


def _ema_update(model: VQVAE, z_e, codes) -> VQVAE:
    ema = model.spec.ema
    one_hot = jax.nn.one_hot(codes, model.spec.n_codes, dtype=z_e.dtype)
    counts = ema.decay * model.ema_counts + (1 - ema.decay) * one_hot.sum(axis=0)
    sums = ema.decay * model.ema_sums + (1 - ema.decay) * one_hot.T @ z_e
    total = counts.sum()
    smoothed = (counts + ema.epsilon) / (total + model.spec.n_codes * ema.epsilon) * total
    return eqx.tree_at(lambda m: (m.ema_counts, m.ema_sums, m.codebook), model, (counts, sums, sums / smoothed[:, None]))


def _vqvae_batch_loss(model: VQVAE, x) -> Float[Array, ""]:
    return vqvae_loss(model, x)[0]


def _ema_after_step(model: VQVAE, previous: VQVAE, x) -> VQVAE:
    """The codebook's EMA step on the batch's encodings and codes under the pre-step model."""
    if model.spec.ema is None:
        return model
    z_e = jax.vmap(previous.encode)(x)
    # The assignments vqvae_loss made on this batch (same model, same points).
    codes = jax.vmap(previous.assign)(jax.lax.stop_gradient(z_e))
    return _ema_update(model, z_e, codes)


@eqx.filter_jit
def train_vqvae(
    model: VQVAE,
    data: Float[Array, "n d"],
    *,
    key: PRNGKeyArray,
    n_steps: int,
    learning_rate: float = 3e-3,
    batch_size: int = 128,
) -> tuple[VQVAE, Float[Array, " n_steps"]]:
    """`n_steps` Adam steps on `vqvae_loss` over uniform minibatches (`models.training.train`);
    with `spec.ema` the codebook then takes one EMA step per minibatch (van den Oord et al.
    2017, App. A.1).

    No gradient reaches the EMA statistics, nor the codebook under EMA (its loss term is
    dropped and every other use is behind stop_gradient), so Adam leaves them unchanged.

    Returns the trained VQ-VAE and the per-step losses (vmappable over models and keys;
    `train_vqvae_replicas` also shards replicas over devices).
    """
    batches = FiniteSample(jnp.asarray(data, jnp.float32), batch_size)
    result = train(model, _vqvae_batch_loss, optimiser=AdamSpec(learning_rate), batches=batches, n_steps=n_steps,
                   key=key, record_every=1, after_step=_ema_after_step)
    return result.model, result.losses


def train_vqvae_replicas(
    models: VQVAE, data: Float[Array, "R n d"], keys: PRNGKeyArray, *, mesh: jax.sharding.Mesh | None = None, **settings
) -> tuple[VQVAE, Float[Array, "R n_steps"]]:
    """`train_vqvae` on R replicas: models, data (R, n, d) and keys (R,) share a leading axis,
    split over `mesh`'s devices when given; `settings` are `train_vqvae`'s keywords
    (n_steps, learning_rate, batch_size), common to all."""
    return _fit_replicas(train_vqvae, models, data, keys, mesh=mesh, settings=settings)


class CodebookUsage(eqx.Module):
    """How the data use the codebook: perplexity exp(H(freq)) in [1, C] and dead codes
    (codes no data point is assigned to)."""

    frequencies: Float[Array, " C"]
    perplexity: Float[Array, ""]
    dead_codes: Int[Array, ""]


@eqx.filter_jit
def codebook_usage(model: VQVAE, data: Float[Array, "n d"]) -> CodebookUsage:
    """Empirical code frequencies of data, their perplexity and the number of dead codes."""
    codes = jax.vmap(lambda x: model.assign(model.encode(x)))(data)
    freq = jnp.bincount(codes, length=model.spec.n_codes) / codes.shape[0]
    entropy = -jnp.sum(jnp.where(freq > 0, freq * jnp.log(jnp.where(freq > 0, freq, 1.0)), 0.0))
    return CodebookUsage(freq, jnp.exp(entropy), jnp.sum(freq == 0))


def monte_carlo_likelihood(model: VQVAE, x, *, key, n: int = 10_000) -> Estimate:
    """p(x) = E_{c ~ pi}[N(x; f(e_c), sigma^2 I)] by Monte Carlo over codes, float64.

    An unbiased estimate of the likelihood itself (not its log) with its standard error;
    compare with exp(`model.log_prob(x)`)."""
    check_key("key", key)
    n = check_count("n", n, minimum=2)
    with jax.enable_x64(True):
        model64 = to_float64(model)
        x = jnp.asarray(x, jnp.float64)
        codes = jax.random.categorical(key, model64.prior_logits, shape=(n,))
        means = model64.code_means()[codes]
        sigma = model64.noise_std()
        d = means.shape[1]
        log_values = -0.5 * jnp.sum((x - means) ** 2, axis=1) / sigma**2 - d * (jnp.log(sigma) + 0.5 * _LOG_2PI)
        return monte_carlo_mean(np.exp(np.asarray(log_values)), f"p(x): Monte Carlo over codes (n={n})")


__all__ = [
    "CodebookUsage",
    "EMACodebook",
    "VQVAE",
    "VQVAESpec",
    "codebook_usage",
    "monte_carlo_likelihood",
    "train_vqvae",
    "train_vqvae_replicas",
    "vqvae_loss",
]
