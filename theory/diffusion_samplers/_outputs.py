"""What the diffusion samplers return, and the signatures of the functions they take."""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
from jaxtyping import Array, Float, Int

ScoreFn = Callable[[Float[Array, " d"], Float[Array, ""]], Float[Array, " d"]]
EpsilonFn = Callable[[Float[Array, " d"], Int[Array, ""]], Float[Array, " d"]]


class Trajectories(eqx.Module):
    """Whole reverse paths.

    Attributes:
        ts: Float[Array, "k"], the process times t (decreasing from T to t_end).
        xs: Float[Array, "n k d"], the states at those times.
    """

    ts: Float[Array, " k"]
    xs: Float[Array, "n k d"]


class SamplerOutput(eqx.Module):
    """Samples and what each cost.

    Attributes:
        samples: Float[Array, "n d"], the final states (at t = t_end, or step 0).
        nfe: Int[Array, "n"], score/epsilon evaluations spent on each sample (equal
            across samples except for adaptive solvers, which step each sample alone).
        path: the whole paths, `Trajectories`, when the sampler was asked for them
            (`save_path=True`); None otherwise.
    """

    samples: Float[Array, "n d"]
    nfe: Int[Array, " n"]
    path: Trajectories | None = None
