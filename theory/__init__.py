"""theory: exact mathematics for generative models.

Distributions with closed-form densities, scores and Gaussian convolutions; divergences
returned as typed `Estimate`s (value, error, method); optimal transport; the GAN, f-GAN
and ELBO identities. Imports nothing from `models`, `studies` or `figures`.

Every estimator has one signature, `(laws..., *, key=None, method=None) -> Estimate`,
with `method=MonteCarlo(n)` or `Quadrature(...)`. The forward processes and samplers
live in the sub-modules `theory.sde`, `theory.ddpm`, `theory.langevin` and
`theory.diffusion_samplers`; exact likelihoods of ODE-defined models (probability-flow
ODEs, continuous flows) and the score-error KL bound in `theory.ode_likelihood`; exact
evidence, posteriors and gaps of low-dimensional latent-variable models in
`theory.latent_evidence`; the argument checks in `theory.validation`. Each sub-module
writes its public names out in its own `__all__`.
"""

from theory.distributions import (
    AbstractDensity as AbstractDensity,
    AbstractDistribution as AbstractDistribution,
    Gaussian as Gaussian,
    MixtureOfGaussians as MixtureOfGaussians,
    mixture as mixture,
)
from theory.divergences import fisher_divergence as fisher_divergence, js as js, kl as kl, kl_gaussians as kl_gaussians
from theory.elbo import (
    LinearGaussianModel as LinearGaussianModel,
    elbo as elbo,
    elbo_gap as elbo_gap,
    importance_weighted_bound as importance_weighted_bound,
)
from theory.estimate import (
    Estimate as Estimate,
    LipschitzEstimate as LipschitzEstimate,
    Proportion as Proportion,
    binomial_proportion as binomial_proportion,
)
from theory.f_divergences import (
    ALL_F_DIVERGENCES as ALL_F_DIVERGENCES,
    AbstractFDivergence as AbstractFDivergence,
    JensenShannon as JensenShannon,
    KullbackLeibler as KullbackLeibler,
    OptimalFCritic as OptimalFCritic,
    PearsonChiSquared as PearsonChiSquared,
    ReverseKullbackLeibler as ReverseKullbackLeibler,
    SquaredHellinger as SquaredHellinger,
    TotalVariation as TotalVariation,
    f_divergence as f_divergence,
    f_gan_lower_bound as f_gan_lower_bound,
    optimal_f_critic as optimal_f_critic,
)
from theory.gan import (
    OptimalDiscriminator as OptimalDiscriminator,
    gan_value as gan_value,
    lsgan_generator_value as lsgan_generator_value,
    lsgan_optimal_discriminator as lsgan_optimal_discriminator,
    optimal_discriminator as optimal_discriminator,
)
from theory.integrate import MonteCarlo as MonteCarlo, Quadrature as Quadrature, SkewedMonteCarloWarning as SkewedMonteCarloWarning
from theory.modes import ModeStatistics as ModeStatistics, mode_statistics as mode_statistics
from theory.singular import PointMass as PointMass, VerticalSegment as VerticalSegment
from theory.targets import (
    GRID_MEANS as GRID_MEANS,
    GRID_VARIANCE as GRID_VARIANCE,
    gaussian_grid as gaussian_grid,
    ncsn_component_std_schedule as ncsn_component_std_schedule,
    ncsn_two_modes as ncsn_two_modes,
)
from theory.transport import (
    gaussian_w2 as gaussian_w2,
    sampling_floor as sampling_floor,
    sliced_wasserstein as sliced_wasserstein,
    wasserstein as wasserstein,
    wasserstein_1d as wasserstein_1d,
)

__all__ = [
    # distributions
    "AbstractDensity",
    "AbstractDistribution",
    "Gaussian",
    "MixtureOfGaussians",
    "mixture",
    "PointMass",
    "VerticalSegment",
    # named targets
    "GRID_MEANS",
    "GRID_VARIANCE",
    "gaussian_grid",
    "ncsn_component_std_schedule",
    "ncsn_two_modes",
    # results and methods
    "Estimate",
    "LipschitzEstimate",
    "Proportion",
    "binomial_proportion",
    "MonteCarlo",
    "Quadrature",
    "SkewedMonteCarloWarning",
    # divergences
    "fisher_divergence",
    "js",
    "kl",
    "kl_gaussians",
    # f-divergences
    "ALL_F_DIVERGENCES",
    "AbstractFDivergence",
    "JensenShannon",
    "KullbackLeibler",
    "OptimalFCritic",
    "PearsonChiSquared",
    "ReverseKullbackLeibler",
    "SquaredHellinger",
    "TotalVariation",
    "f_divergence",
    "f_gan_lower_bound",
    "optimal_f_critic",
    # GAN identities
    "OptimalDiscriminator",
    "gan_value",
    "lsgan_generator_value",
    "lsgan_optimal_discriminator",
    "optimal_discriminator",
    # ELBO
    "LinearGaussianModel",
    "elbo",
    "elbo_gap",
    "importance_weighted_bound",
    # mode statistics
    "ModeStatistics",
    "mode_statistics",
    # optimal transport
    "gaussian_w2",
    "sampling_floor",
    "sliced_wasserstein",
    "wasserstein",
    "wasserstein_1d",
]
