"""theory: exact mathematics for generative models.

Distributions with closed-form densities, scores and Gaussian convolutions; divergences
returned as typed `Estimate`s (value, error, method); optimal transport; the GAN, f-GAN
and ELBO identities. Imports nothing from `models`, `studies` or `figures`.
"""

from theory.distributions import (
    AbstractDensity,
    AbstractDistribution,
    Gaussian,
    MixtureOfGaussians,
    mixture,
)
from theory.divergences import fisher_divergence, js, kl, kl_gaussians
from theory.elbo import LinearGaussianModel, elbo, elbo_gap, importance_weighted_bound
from theory.estimate import Estimate
from theory.f_divergences import (
    ALL_F_DIVERGENCES,
    AbstractFDivergence,
    JensenShannon,
    KullbackLeibler,
    OptimalFCritic,
    PearsonChiSquared,
    ReverseKullbackLeibler,
    SquaredHellinger,
    TotalVariation,
    f_divergence,
    f_gan_lower_bound,
    optimal_f_critic,
)
from theory.gan import (
    OptimalDiscriminator,
    gan_value,
    lsgan_generator_value,
    lsgan_optimal_discriminator,
    optimal_discriminator,
)
from theory.integrate import MonteCarlo, Quadrature
from theory.modes import ModeStatistics, mode_statistics
from theory.singular import PointMass, VerticalSegment
from theory.targets import GRID_MEANS, GRID_VARIANCE, gaussian_grid, ncsn_component_std_schedule, ncsn_two_modes
from theory.transport import gaussian_w2, sampling_floor, sliced_wasserstein, wasserstein, wasserstein_1d

__all__ = [name for name in dir() if not name.startswith("_")]
