"""The Langevin mixing study's science on a tiny config: every sampler reports its mode
weights with intervals, headline intervals are pooled only for exact-score samplers and
over networks for the learned score, differences are paired by seed, a diverged network
is recorded as diverged while the exact-score cells keep their numbers. Plumbing (help,
bad input, resume, sweep independence, figures from cells) is checked for every study
in test_protocol.py."""

import dataclasses
import subprocess
import sys

import numpy as np
import pytest

import theory
from models.score_network import DSMTraining
from models.training import AdamSpec
from studies import kit
from studies import langevin_mixing as study
from theory.langevin import ConvolvedTarget, GeometricSchedule

TINY = study.PRESETS["smoke"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("langevin") / "tiny"
    return run_dir, study.run(TINY, kit.ResultStore(run_dir, TINY, study="langevin_mixing"))


def test_presets_are_the_protocols():
    code, paper = study.PRESETS["ncsn-code"], study.PRESETS["ncsn-paper"]
    assert code.schedule == GeometricSchedule(sigma_max=20.0, sigma_min=1.0, n_levels=10) and code.steps_per_level == 100
    assert code.annealed_step_size == 0.1 and code.langevin_step_size == 0.1 and code.langevin_steps == 1000
    assert code.n_chains == 1280 and code.initial_law == study.UniformBox(-8.0, 8.0)
    assert code.training == DSMTraining(optimiser=AdamSpec(1e-3), steps=10_000, batch_size=128, record_every=100)
    assert paper.schedule == GeometricSchedule(sigma_max=10.0, sigma_min=0.1, n_levels=10)
    assert isinstance(paper.noise_family, ConvolvedTarget)
    # The component variance the validation uses without JAX is the target's.
    covs = np.asarray(theory.ncsn_two_modes().covs)
    assert np.all(np.linalg.eigvalsh(covs) == study.TARGET_COMPONENT_VARIANCE)


def test_config_validation_names_the_field_and_value():
    with pytest.raises(ValueError, match="sweep_annealed_step_sizes=5.0 makes annealed Langevin diverge"):
        study.Config(sweep_annealed_step_sizes=(0.1, 5.0))
    with pytest.raises(ValueError, match="w1_every must be a multiple of record_every=50, got 75"):
        study.Config(w1_every=75)
    with pytest.raises(ValueError, match="sweep_initial_laws must not repeat"):
        study.Config(sweep_initial_laws=(study.TargetStart(), study.TargetStart()))
    with pytest.raises(ValueError, match=r"training\.optimiser\.learning_rate must be representable in float32"):
        study.Config(training=DSMTraining(optimiser=AdamSpec(1e300)))
    with pytest.raises(ValueError, match="initial laws must not repeat"):
        study.parse_initial_laws("uniform:-8,8;uniform:-8.0,8.0")
    assert study.parse_training("lr=0.01,steps=200,record-every=50") == DSMTraining(
        optimiser=AdamSpec(0.01), steps=200, batch_size=128, record_every=50)
    with pytest.raises(ValueError, match=r"training\.steps must be in \[1, 1e7\], got 20000000"):
        study.Config(training=study.parse_training("steps=20000000,record-every=100"))


def test_training_changes_apply_to_the_chosen_preset():
    """--training keys not given keep the chosen preset's values, not the quick preset's."""
    smoke = kit.parse_config(study.Config, study.PRESETS, ["--preset", "smoke", "--training", "lr=0.01"],
                             default_preset="quick").config
    base = study.PRESETS["smoke"].training
    assert smoke.training == DSMTraining(optimiser=AdamSpec(0.01), steps=base.steps, batch_size=base.batch_size,
                                         record_every=base.record_every)
    assert base.steps != study.PRESETS["quick"].training.steps


def test_study_module_does_not_import_matplotlib():
    code = "import sys, studies.langevin_mixing; sys.exit('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_every_sampler_reports_mode_weights_with_intervals(tiny_run):
    run_dir, results = tiny_run
    table = results.table
    final = table[(table["sweep"] == "baseline") & (table["metric"] == "mode_weight")]
    for sampler in ("exact", "plain", "annealed", "learned"):
        rows = final[final["sampler"] == sampler]
        assert set(rows["seed"]) == {0, 1} and set(rows["mode"]) == {0, 1}, sampler
        assert np.all((rows["ci_low"] <= rows["value"]) & (rows["value"] <= rows["ci_high"]))
        # The two modes' counts add up to the chains: every chain is in one basin.
        by_step = rows.groupby(["seed", "step"])["count"].sum()
        assert (by_step == TINY.n_chains).all()
    fisher = table[table["metric"] == "fisher_divergence"]
    assert len(fisher) == TINY.n_seeds * TINY.schedule.n_levels and np.all(fisher["value"] >= 0)
    w1 = table[table["metric"] == "w1"]
    assert np.all(w1["value"] > 0) and np.all(np.isfinite(w1["reference"]))
    for sweep in ("langevin_step_size", "annealed_step_size", "n_levels", "steps_per_level", "langevin_steps",
                  "n_chains", "initial_law", "trajectories", "samples", "learned"):
        assert (table["sweep"] == sweep).any(), sweep
    assert sorted(p.name for p in (run_dir / "artifacts").glob("score_network_seed=*.eqx")) == [
        "score_network_seed=0.eqx", "score_network_seed=1.eqx"]


def test_headline_is_pooled_for_exact_scores_over_networks_for_learned_and_paired(tiny_run):
    _, results = tiny_run
    table, summary = results.table, results.summary()
    heavy = table[(table["sweep"] == "baseline") & (table["metric"] == "mode_weight") & (table["mode"] == 0)]
    last = heavy[heavy["step"] == heavy.groupby("sampler")["step"].transform("max")]
    per_seed = {s: g.sort_values("seed") for s, g in last.groupby("sampler")}
    row = lambda q, s: summary[(summary["quantity"] == q) & (summary["sampler"] == s)].iloc[0]  # noqa: E731
    for sampler in ("exact", "plain", "annealed"):
        rows = per_seed[sampler]
        pooled = row("weight of (5,5)", sampler)
        assert pooled["value"] == pytest.approx(rows["count"].sum() / rows["n"].sum())
        assert pooled["n"] == TINY.n_seeds * TINY.n_chains
    learned = row("weight of (5,5)", "learned")
    values = per_seed["learned"]["value"].to_numpy()
    assert learned["value"] == pytest.approx(values.mean()) and learned["n"] == TINY.n_seeds
    assert learned["error"] == pytest.approx(values.std(ddof=1) / np.sqrt(TINY.n_seeds))
    difference = row("learned minus exact annealed weight", "learned - annealed")
    assert difference["value"] == pytest.approx(np.mean(values - per_seed["annealed"]["value"].to_numpy()))


def test_a_sweep_value_equal_to_the_baseline_reproduces_its_numbers(tiny_run):
    # Keys come from coordinates only: the alpha = 0.1 cell is the baseline's plain sampler.
    _, results = tiny_run
    table = results.table
    weights = table[(table["metric"] == "mode_weight") & (table["sampler"] == "plain")
                    & (table["step"] == TINY.langevin_steps)]
    baseline = weights[weights["sweep"] == "baseline"].sort_values(["seed", "mode"])["count"].to_numpy()
    swept = weights[(weights["sweep"] == "langevin_step_size") & (weights["langevin_step_size"] == 0.1)]
    np.testing.assert_array_equal(swept.sort_values(["seed", "mode"])["count"].to_numpy(), baseline)


def test_a_diverged_network_is_recorded_and_the_exact_cells_still_run():
    # lr 1e6 (issue 12, item 8): the network's cells are saved as diverged, the rest run.
    config = dataclasses.replace(
        TINY, training=dataclasses.replace(TINY.training, optimiser=AdamSpec(1e6)),
        sweep_langevin_step_sizes=None, sweep_annealed_step_sizes=None, sweep_n_levels=None,
        sweep_steps_per_level=None, sweep_langevin_steps=None, sweep_n_chains=None,
    )
    results = study.run(config)
    table = results.table
    diverged = table[table["metric"] == "diverged"]
    assert sorted(diverged["seed"]) == [0, 1] and (diverged["sweep"] == "learned").all()
    exact = table[(table["sweep"] == "baseline") & (table["metric"] == "w1")]
    assert set(exact["sampler"]) == {"exact", "plain", "annealed"} and np.all(np.isfinite(exact["value"]))
    summary = results.summary()
    learned = summary[(summary["quantity"] == "weight of (5,5)") & (summary["sampler"] == "learned")].iloc[0]
    assert learned["text"] == "all 2 diverged" and learned["n_diverged"] == 2
