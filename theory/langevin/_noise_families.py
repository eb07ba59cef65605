"""Exact noise-conditional families of a Gaussian mixture and their exact scores."""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from theory.distributions import MixtureOfGaussians, score_at_point
from theory.targets import ncsn_component_std_schedule
from theory.validation import check_count

class AbstractNoiseFamily(eqx.Module):
    """A family of laws p_sigma = (law of X0 + sigma Z), X0 ~ base, Z ~ N(0, I).

    `law(target, sigma)` is p_sigma in closed form (a `MixtureOfGaussians`, so its score
    is exact) and `sample_base(target, key, n)` draws X0, the "clean data" a denoising
    score-matching objective perturbs.
    """

    @abc.abstractmethod
    def law(self, target: MixtureOfGaussians, sigma) -> MixtureOfGaussians:
        """p_sigma, the law at noise level sigma."""

    @abc.abstractmethod
    def sample_base(self, target: MixtureOfGaussians, key: PRNGKeyArray, n: int) -> Float[Array, "n d"]:
        """n draws of X0, so that X0 + sigma Z ~ law(target, sigma)."""

    @abc.abstractmethod
    def smallest_variance(self, target_variance, sigma):
        """The smallest eigenvalue of any component covariance of p_sigma, given the
        smallest one of the target's components (NumPy; no JAX needed). It sets the
        largest stable ULA step at level sigma, see `ula_stability_ratio`."""


class ConvolvedTarget(AbstractNoiseFamily):
    """The paper's perturbed laws: the target convolved with N(0, sigma^2 I).

    p_sigma = p * N(0, sigma^2 I); for p = sum_k w_k N(m_k, S_k) this is
    sum_k w_k N(m_k, S_k + sigma^2 I). X0 ~ p.

    Reference: Song & Ermon (2019), Section 4.1, q_sigma(x) = int p(t) N(x; t, sigma^2 I) dt.
    """

    def law(self, target, sigma):
        return target.noised(1.0, sigma)

    def sample_base(self, target, key, n):
        return target.sample(key, n)

    def smallest_variance(self, target_variance, sigma):
        return np.asarray(target_variance, np.float64) + np.asarray(sigma, np.float64) ** 2


class ConvolvedMeans(AbstractNoiseFamily):
    """The NCSN code's level laws: each component's covariance replaced by sigma^2 I.

    p_sigma = sum_k w_k N(m_k, sigma^2 I), which is the law of X0 + sigma Z for the
    discrete X0 ~ sum_k w_k delta_{m_k}; at sigma = 1 it is the NCSN target itself.

    Reference: ermongroup/ncsn, models/gmm.py (GMMDistAnneal.score(x, sigma));
    `theory.ncsn_component_std_schedule`.
    """

    def law(self, target, sigma):
        return ncsn_component_std_schedule(target, sigma)

    def sample_base(self, target, key, n):
        n = check_count("n", n)
        component = jax.random.categorical(key, jnp.log(target.weights), shape=(n,))
        return target.means[component]

    def smallest_variance(self, target_variance, sigma):
        return np.asarray(sigma, np.float64) ** 2


class ExactScore(eqx.Module):
    """The exact score s(x) = grad_x log p(x) of a Gaussian mixture, for ONE point.

    Same values as `law.score`, computed by `theory.distributions.score_at_point` (fast under vmap).

    Args:
        law: the mixture.
    """

    law: MixtureOfGaussians

    def __call__(self, x: Float[Array, " d"]) -> Float[Array, " d"]:
        """grad log p at one point x, shape (d,)."""
        return score_at_point(self.law, jnp.asarray(x, self.law.means.dtype))


class ExactNoiseConditionalScore(eqx.Module):
    """The exact noise-conditional score s(x, sigma) = grad_x log p_sigma(x) of a family.

    Args:
        target: the mixture the family is built on.
        family: e.g. `ConvolvedTarget()` or `ConvolvedMeans()`.
    """

    target: MixtureOfGaussians
    family: AbstractNoiseFamily

    def __call__(self, x: Float[Array, " d"], sigma: Float[Array, ""]) -> Float[Array, " d"]:
        """The exact score of p_sigma at one point x, shape (d,)."""
        law = self.family.law(self.target, sigma)
        return score_at_point(law, jnp.asarray(x, law.means.dtype))
