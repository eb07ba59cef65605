"""Tests for studies/langevin_mixing.py: command line, validation before compute, a
smoke run that saves, resumes and draws, and the study's constants."""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

import theory
from models.score_network import ScoreMLP
from studies import langevin_mixing as study
from studies.pipeline import ResultStore
from theory.langevin import ConvolvedTarget, GeometricSchedule


def test_help_lists_every_config_field(capsys):
    with pytest.raises(SystemExit) as exit_info:
        study.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for field in dataclasses.fields(study.Config):
        assert "--" + field.name.replace("_", "-") in text, field.name
    for preset in ("ncsn-code", "ncsn-paper", "quick"):
        assert preset in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--preset", "nope"], "invalid choice: 'nope'"),
        (["--langevin-step-size", "-0.1"], "langevin_step_size must be a finite number > 0, got -0.1"),
        (["--annealed-step-size", "nan"], "annealed_step_size must be a finite number > 0, got nan"),
        (["--n-chains", "0"], "n_chains must be >= 1, got 0"),
        (["--schedule", "cosine:1,2,3"], "field schedule: expected a value, got 'cosine:1,2,3'"),
        (["--initial-law", "uniform:8,-8"], "field initial_law"),
        (["--record-every", "30"], "record_every must divide langevin_steps=1000, got 30"),
        # The NCSN code's eps = 0.1 on the paper's schedule: ULA diverges at level 1.
        (["--preset", "ncsn-paper", "--annealed-step-size", "0.1"], "makes annealed Langevin diverge at level 1"),
        (["--langevin-step-size", "4.5"], "makes plain Langevin diverge"),
    ],
)
def test_bad_command_lines_fail_before_any_compute(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        study.main(argv + ["--results-dir", str(tmp_path)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing was written


def test_config_validation_names_the_field_and_value():
    with pytest.raises(ValueError, match=r"seeds must be distinct, got \(1, 1\)"):
        study.Config(seeds=(1, 1))
    with pytest.raises(ValueError, match="sweep_annealed_step_sizes=5.0 makes annealed Langevin diverge"):
        study.Config(sweep_annealed_step_sizes=(0.1, 5.0))
    with pytest.raises(ValueError, match="w1_every must be a multiple of record_every=50, got 75"):
        study.Config(w1_every=75)


def test_presets_are_the_protocols():
    code, paper = study.PRESETS["ncsn-code"], study.PRESETS["ncsn-paper"]
    assert code.schedule == GeometricSchedule(sigma_max=20.0, sigma_min=1.0, n_levels=10) and code.steps_per_level == 100
    assert code.annealed_step_size == 0.1 and code.langevin_step_size == 0.1 and code.langevin_steps == 1000
    assert code.n_chains == 1280 and code.initial_law == study.UniformBox(-8.0, 8.0)
    assert paper.schedule == GeometricSchedule(sigma_max=10.0, sigma_min=0.1, n_levels=10) and isinstance(paper.noise_family, ConvolvedTarget)
    # The component variance the validation uses without JAX is the target's.
    covs = np.asarray(theory.ncsn_two_modes().covs)
    assert np.all(np.linalg.eigvalsh(covs) == study.TARGET_COMPONENT_VARIANCE)


def test_study_module_does_not_import_matplotlib():
    code = "import sys, studies.langevin_mixing; sys.exit('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


TINY = study.Config(
    schedule=GeometricSchedule(sigma_max=20.0, sigma_min=1.0, n_levels=3),
    steps_per_level=10,
    langevin_steps=30,
    n_chains=48,
    seeds=(0, 1),
    record_every=10,
    w1_every=30,
    floor_repeats=2,
    n_bootstrap=20,
    network=ScoreMLP(8, 1, 5.0),
    train_steps=40,
    loss_record_every=20,
    fisher_samples=100,
    trajectory_chains=4,
    sweep_langevin_step_sizes=(0.1, 0.3),
    sweep_annealed_step_sizes=(0.1,),
    sweep_n_levels=(1,),
    sweep_steps_per_level=(5,),
    sweep_langevin_steps=(30, 60),
    sweep_n_chains=(16,),
    sweep_initial_laws=(study.TargetStart(),),
)


def test_smoke_run_saves_resumes_and_draws(tmp_path, capsys):
    store = ResultStore(tmp_path / "tiny", TINY)
    results = study.run(TINY, store)
    table = results.table
    assert list(table.columns) == list(study.COLUMNS)
    cell_ids = [cell_id for cell_id, _ in study.cells(TINY)]
    assert sorted(store.done_cells()) == sorted(cell_ids)
    # Every sampler of the baseline reports both mode weights, with intervals, per seed.
    final = table[(table["sweep"] == "baseline") & (table["metric"] == "mode_weight")]
    for sampler in ("exact", "plain", "annealed", "learned"):
        rows = final[final["sampler"] == sampler]
        assert set(rows["seed"]) == {0, 1} and set(rows["mode"]) == {0, 1}
        assert np.all((rows["ci_low"] <= rows["value"]) & (rows["value"] <= rows["ci_high"]))
    fisher = table[table["metric"] == "fisher_divergence"]
    assert len(fisher) == 2 * 3 and np.all(fisher["value"] >= 0)
    w1 = table[table["metric"] == "w1"]
    assert np.all(w1["value"] > 0) and np.all(np.isfinite(w1["reference"]))
    for sweep in ("langevin_step_size", "annealed_step_size", "n_levels", "steps_per_level", "langevin_steps",
                  "n_chains", "initial_law", "trajectories", "samples", "learned"):
        assert (table["sweep"] == sweep).any(), sweep
    figures = {path.name for path in (tmp_path / "tiny" / "figures").iterdir()}
    for stem in ("langevin_three_panels", "langevin_mode_weight_vs_steps", "langevin_sweeps",
                 "langevin_trajectories", "langevin_fisher"):
        assert {f"{stem}.png", f"{stem}.pdf"} <= figures
    metadata = json.loads((tmp_path / "tiny" / "metadata.json").read_text())
    assert metadata["extra"]["status"] == "complete"
    summary = results.summary()
    assert set(summary["sampler"]) >= {"exact", "plain", "annealed", "learned"}
    capsys.readouterr()

    # A rerun with the same store computes nothing and returns the same table.
    again = study.run(TINY, ResultStore(tmp_path / "tiny", TINY))
    assert f"{len(cell_ids)}/{len(cell_ids)} cells already done" in capsys.readouterr().err
    np.testing.assert_array_equal(again.table["value"].to_numpy(), table["value"].to_numpy())


def test_run_without_a_store_keeps_results_in_memory():
    config = dataclasses.replace(
        TINY, learned=False, seeds=(3,), sweep_langevin_step_sizes=(), sweep_annealed_step_sizes=(),
        sweep_n_levels=(), sweep_steps_per_level=(), sweep_langevin_steps=(), sweep_n_chains=(),
        sweep_initial_laws=(),
    )
    results = study.run(config)
    assert results.run_dir is None
    assert set(results.table["sweep"]) == {"baseline", "samples", "trajectories"}
