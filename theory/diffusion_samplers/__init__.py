"""Samplers that invert a diffusion, given any score or noise-prediction function.

Continuous time (Song et al. 2021), for a forward SDE dx = f(x, t) dt + g(t) dW on [0, T]
with marginals p_t, integrated from t = T down to t = t_end through diffrax:

    reverse-time SDE:        dx = [f(x, t) - g(t)^2 grad log p_t(x)] dt + g(t) dW_bar     (eq. 6)
    probability-flow ODE:    dx = [f(x, t) - g(t)^2 grad log p_t(x) / 2] dt                 (eq. 13)

Both are solved in the forward variable tau = T - t (so every solver and Brownian path
runs forward in time; no reliance on reverse-time Brownian conventions), where they read
dx = [-f(x, T - tau) + w g^2 s(x, T - tau)] dtau + [w = 1] g dW_tau with w = 1 (SDE) or 1/2 (ODE).
The noise is additive (g depends on t only), so Itô and Stratonovich solutions agree and
additive-noise stochastic Runge-Kutta solvers (ShARK, SRA1: strong order 1.5) apply.

Discrete time (Ho et al. 2020; Song, Meng & Ermon 2021) for a beta schedule with
alpha_bar_i, on an evenly spaced subsequence tau_k = floor(k T / S), k = 0..S:

    DDPM ancestral:  x_{tau_{k-1}} = (x - b / sqrt(1 - a_i) eps) / sqrt(1 - b) + [k > 1] sqrt(b) z,
                     a_i = alpha_bar_{tau_k}, a_j = alpha_bar_{tau_{k-1}}, b = 1 - a_i / a_j
                     (S = T is Ho et al.'s Algorithm 2 with sigma_t^2 = beta_t; S < T is the
                     respaced chain of Nichol & Dhariwal 2021, Sec. 4);
    DDIM:            x_{tau_{k-1}} = sqrt(a_j) x0_hat + sqrt(1 - a_j - sigma^2) eps + sigma z,
                     sigma = eta sqrt((1 - a_j) / (1 - a_i)) sqrt(1 - a_i / a_j)   (DDIM eq. 12, 16).

Score and epsilon functions are written for ONE sample and `jax.vmap`ped over the rows
of `x_init`. Fixed-step solvers advance the whole batch as one state (exactly n
independent solves, in one loop); the adaptive ODE solver vmaps the whole solve, so
each sample gets its own steps. Everything is jitted, and the number of steps, the
tolerances and t_end are traced, so sweeping them does not recompile. Each returns a `SamplerOutput`
with the samples and the number of function evaluations (NFE, score or epsilon calls)
each sample cost; the fixed-step continuous samplers keep the whole path too when asked
(`save_path=True`: one entry point, the path an argument, as diffrax's `saveat`).

Function conventions: `score_fn(x, t)` maps x: (d,), t: () to grad log p_t(x): (d,);
`epsilon_fn(x, i)` maps x: (d,), an integer step i in 1..T to the predicted noise (d,).

References: Song, Sohl-Dickstein, Kingma, Kumar, Ermon & Poole, ICLR 2021, eqs. (6), (13);
Ho, Jain & Abbeel, NeurIPS 2020, Algorithm 2; Song, Meng & Ermon, "Denoising diffusion
implicit models", ICLR 2021, eqs. (12), (16); Kidger, "On neural differential
equations" (2021) / diffrax; Foster, dos Reis & Strange (2023) for ShARK.
"""

from ._brownian import (
    AbstractBrownianMotion as AbstractBrownianMotion,
    UnsafeBrownianMotion as UnsafeBrownianMotion,
    VirtualBrownianMotion as VirtualBrownianMotion,
)
from ._budgets import AbstractBudget as AbstractBudget, Steps as Steps, Tolerance as Tolerance
from ._components import (
    AbstractDiffusionSampler as AbstractDiffusionSampler,
    AdaptiveProbabilityFlowSampler as AdaptiveProbabilityFlowSampler,
    DDIMSampler as DDIMSampler,
    DDPMSampler as DDPMSampler,
    DiffusionModel as DiffusionModel,
    ProbabilityFlowSampler as ProbabilityFlowSampler,
    ReverseSDESampler as ReverseSDESampler,
)
from ._continuous import (
    adaptive_probability_flow as adaptive_probability_flow,
    drift_evaluations as drift_evaluations,
    probability_flow as probability_flow,
    reverse_sde as reverse_sde,
)
from ._discrete import ddim as ddim, ddpm_ancestral as ddpm_ancestral, respaced_timesteps as respaced_timesteps
from ._outputs import SamplerOutput as SamplerOutput, Trajectories as Trajectories
from ._parametrisations import (
    DiscreteEpsilon as DiscreteEpsilon,
    EpsilonFromScore as EpsilonFromScore,
    ScoreFromEpsilon as ScoreFromEpsilon,
)

__all__ = [
    # outputs
    "SamplerOutput",
    "Trajectories",
    # Brownian motion
    "AbstractBrownianMotion",
    "UnsafeBrownianMotion",
    "VirtualBrownianMotion",
    # continuous time
    "drift_evaluations",
    "reverse_sde",
    "probability_flow",
    "adaptive_probability_flow",
    # discrete time
    "ddpm_ancestral",
    "ddim",
    "respaced_timesteps",
    # parametrisations
    "ScoreFromEpsilon",
    "EpsilonFromScore",
    "DiscreteEpsilon",
    # budgets
    "AbstractBudget",
    "Steps",
    "Tolerance",
    # samplers as components
    "DiffusionModel",
    "AbstractDiffusionSampler",
    "ReverseSDESampler",
    "ProbabilityFlowSampler",
    "AdaptiveProbabilityFlowSampler",
    "DDPMSampler",
    "DDIMSampler",
]
