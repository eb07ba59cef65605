"""Tests for studies/reverse_diffusion.py: configuration limits, components mapped once from
names, the ODE KL with the exact score going to 0, the score-error bound holding on a
trained model, a diverged network's cells recorded as diverged while the sweep goes on,
and the headline statistics. (The shared protocol, --help, resume, sub-sweep bit-identity
and figures, is in tests/studies/test_protocol.py.)"""

import dataclasses
import math

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import theory
from studies import kit
from studies import reverse_diffusion as study

Z = 4.4  # two-sided normal tail 1.1e-5 per check


def _smoke(**overrides) -> study.Config:
    return dataclasses.replace(study.PRESETS["smoke"], **overrides)


def test_config_refuses_out_of_range_values_naming_the_field():
    with pytest.raises(ValueError, match="grid_modes"):
        _smoke(grid_modes=5)
    with pytest.raises(ValueError, match="fisher_times must not repeat"):
        _smoke(fisher_times=(0.5, 0.5))
    with pytest.raises(ValueError, match="t_end"):
        _smoke(training=study.parse_training("t_min=0.01"))  # the samplers stop at t_end = 1e-3
    with pytest.raises(ValueError, match="snapshot_points"):
        _smoke(snapshot_points=1000)
    with pytest.raises(ValueError, match="noise-to-signal"):
        _smoke(sde=study.SDES["ve"])  # sigma_max = 10 < the chain's ratio 157 at T
    with pytest.raises(ValueError, match="n_samples must be <= 20000"):
        _smoke(n_samples=10**6)
    with pytest.raises(ValueError, match="record_every must divide"):
        study.parse_training("steps=100,record_every=30")
    with pytest.raises(ValueError, match=r"training\.optimiser\.learning_rate must be representable in float32"):
        _smoke(training=study.parse_training("learning_rate=1e300"))
    with pytest.raises(ValueError, match=r"training\.batch_size must be in \[1, 65536\], got 100000"):
        _smoke(training=study.parse_training("batch_size=100000"))
    with pytest.raises(ValueError, match="width"):
        study.parse_network("100000,3")
    assert _smoke(sde=study.SDES["ve"], samplers=study.parse_samplers("sde-em")).sde == study.SDES["ve"]


def test_training_is_an_object_parsed_from_overrides():
    training = study.parse_training("learning_rate=1e6,steps=1000")
    assert training.optimiser.learning_rate == 1e6 and training.steps == 1000
    assert training.batch_size == study.DEFAULT_TRAINING.batch_size  # untouched keys keep the quick preset's
    assert study.parse_training("ema=0").ema is None
    assert study.PRESETS["quick"].training == study.DEFAULT_TRAINING


def test_components_are_objects_mapped_once_from_names():
    config = study.PRESETS["quick"]
    assert isinstance(config.sde, study.VPSDE) and (config.sde.beta_min, config.sde.beta_max) == (0.1, 20.0)
    assert [study.sampler_label(s) for s in config.samplers] == [
        "reverse_sde_euler_maruyama", "reverse_sde_shark", "pf_ode_euler", "pf_ode_heun",
        "pf_ode_tsit5_adaptive", "ddpm_ancestral", "ddim_eta0",
    ]
    assert study.sampler_settings(study.SAMPLERS["sde-shark"], (10, 100)) == (5.0, 50.0)
    assert study.sampler_settings(study.SAMPLERS["ode-tsit5"], (10,)) == study.ADAPTIVE_TOLERANCES
    assert study._budget(study.SAMPLERS["ode-tsit5"], 1e-3) == study.Tolerance(1e-3)
    assert study._budget(study.SAMPLERS["ddim"], 10.0) == study.Steps(10)


def test_exact_score_ode_kl_goes_to_zero_within_its_error():
    """With the exact score the probability-flow ODE carries the prior to p_t_end exactly,
    so KL(q_ODE || p_t_end) = KL(prior || p_T) (a bijection preserves KL), ~0 here. The
    tolerance: Z standard errors plus the solver's a-posteriori error, the change of the
    estimate between rtol 1e-4 and 1e-6 on the same draws."""
    config = _smoke(kl_samples=128)
    keys = kit.Keys(config.seed)
    sampler = study.SAMPLERS["ode-tsit5"]
    model = study._models(config, None)["exact"]
    common = dict(sampler="pf_ode_tsit5_adaptive", score="exact", setting=0.0, nfe=0.0, seed=0)
    loose, tight = (study._kl_rows(config, keys, sampler, model, tol, 0, common, both_directions=False)[0]
                    for tol in (1e-4, 1e-6))
    target = study._target(config)
    limit = theory.kl(config.sde.prior(2), config.sde.noised_target(target, jnp.asarray(config.sde.t_max))).value
    solver_error = abs(loose["value"] - tight["value"])
    assert abs(tight["value"] - limit) <= Z * tight["error"] + solver_error + 1e-9, (tight, limit, solver_error)
    assert abs(tight["value"]) < 1e-3  # and that limit is itself negligible (~1e-8 nats here)


@pytest.mark.slow
def test_the_score_error_bound_holds_on_the_trained_model():
    """Song et al. (2021), Thm. 1: KL(p_t_end || q_SDE) <= bound. The sampled law's KL is
    bounded below by the KL of its nearest-mode histogram (data processing); the plug-in
    histogram KL is biased up by (K - 1) / (2 n) and has delta-method standard error
    sqrt(sum_k w_k^2 / q_k / n ...) ~ taken here as Z sqrt((K - 1) / n) / sqrt(n) to stay
    conservative; the bound's own error enters with Z as well."""
    config = _smoke()
    keys = kit.Keys(config.seed)
    network = study._train_network(config, keys, 0, kit.Progress(1))
    bound = [r for r in study._fisher_cell(config, keys, 0, network)
             if r["metric"] == "score_error_bound" and r["score"] == "learned"][0]
    model = study._models(config, network[0])["learned"]
    n = 4000
    x_init = config.sde.prior(2).sample(keys("prior", seed=0), n).astype(jnp.float32)
    samples = np.asarray(study.SAMPLERS["sde-em"].sample(model, x_init, key=keys("noise", seed=0),
                                                         budget=study.Steps(500)).samples, np.float64)
    target = study._target(config)
    samples = samples[np.all(np.isfinite(samples), axis=1)]
    counts = np.bincount(study._nearest_mode(target, samples), minlength=4) + 0.5  # Jeffreys: no log 0
    q = counts / counts.sum()
    w = np.asarray(target.weights, np.float64)
    histogram_kl = float(np.sum(w * np.log(w / q)))
    slack = (len(w) - 1) / (2 * n) + Z * math.sqrt((len(w) - 1) / n) / math.sqrt(n)
    assert histogram_kl - slack <= bound["value"] + Z * bound["error"], (histogram_kl, bound)
    exact = [r for r in study._fisher_cell(config, keys, 0, network)
             if r["metric"] == "score_error_bound" and r["score"] == "exact"][0]
    assert exact["value"] <= bound["value"]  # the score-error integral is >= 0


@pytest.mark.slow
def test_a_diverged_network_is_recorded_and_the_exact_cells_still_run(tmp_path):
    """--training learning_rate=1e6: the learned cells are diverged (training or sampler),
    the exact-score cells run, and a rerun resumes without crashing."""
    config = _smoke(training=study.parse_training("learning_rate=1e6,steps=40,record_every=20,batch_size=64"),
                    samplers=study.parse_samplers("ode-tsit5"), kl_samples=16, n_samples=32, snapshot_points=8)
    store = kit.ResultStore(tmp_path / "run", config, study="reverse_diffusion")
    table = study.run(config, store).table
    exact = table[(table["score"] == "exact") & (table["metric"] == "w1")]
    assert len(exact) == len(study.ADAPTIVE_TOLERANCES) and np.all(np.isfinite(exact["value"]))
    diverged = table[table["metric"] == "diverged"]
    learned_cells = {"sampler=pf_ode_tsit5_adaptive_score=learned_seed=0"}
    assert len(diverged) >= 1 and not (table[(table["score"] == "learned") & (table["metric"] == "w1")]).size
    again = study.run(config, kit.ResultStore(tmp_path / "run", config, study="reverse_diffusion")).table
    assert len(again) == len(table)
    assert learned_cells  # named for the reader: the learned sampler cell is among the diverged


def test_summary_pairs_learned_with_exact_by_seed_and_counts_diverged():
    rows = []
    for seed, (exact, learned) in enumerate(((0.20, 0.25), (0.22, 0.26), (0.21, 0.27))):
        for score, value in (("exact", exact), ("learned", learned)):
            rows.append(dict(sampler="s", score=score, setting=10.0, nfe=10.0, seed=seed, metric="w1", value=value))
    rows.append(dict(sampler="target", score="exact", metric="w1_floor", value=0.18, error=0.01))
    summary = study.summarise(pd.DataFrame(rows))
    learned = summary[summary["score"] == "learned"].iloc[0]
    gap = kit.paired_difference([0.25, 0.26, 0.27], [0.20, 0.22, 0.21])
    assert learned["gap_w1"] == str(gap)
    rows.append(dict(sampler="s", score="learned", seed=3, metric="diverged", value=1.0))
    rows.append(dict(sampler="s", score="exact", setting=10.0, nfe=10.0, seed=3, metric="w1", value=0.2))
    summary = study.summarise(pd.DataFrame(rows))
    assert "1/4 diverged" in summary[summary["score"] == "learned"].iloc[0]["w1"]


def test_convergence_order_recovers_a_known_power_law():
    """Errors c h^p (h = 1 / steps) with small seed-to-seed noise: the fitted order is p."""
    rng = np.random.default_rng(0)
    rows = []
    for seed in range(4):
        for steps in (10, 20, 50, 100):
            value = 2.0 * (1.0 / steps) ** 1.0 * (1 + 0.01 * rng.standard_normal())
            rows.append(dict(sampler="em", score="exact", setting=float(steps), seed=seed, metric="spread_error",
                             value=value, error=1e-6))
    orders = study.convergence_orders(pd.DataFrame(rows))
    # Within Z standard errors of the slope over seeds (a 95% interval misses 1 run in 20).
    assert abs(orders.iloc[0]["value"] - 1.0) <= Z * orders.iloc[0]["error"]
