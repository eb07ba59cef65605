"""Tests for studies/reverse_diffusion.py: the command line, validation before compute,
and a smoke run end to end (saved, resumed, figures drawn from the saved results)."""

import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest

from studies import reverse_diffusion as study
from studies.pipeline import ResultStore, validate_cell_id


def _tiny(**overrides) -> study.Config:
    settings = dict(
        seeds=(0,),
        n_samples=64,
        nfe_grid=(4, 16),
        samplers=study.parse_samplers("sde-em,ode-tsit5,ddim"),
        network=study.EpsilonMLP(width=16, depth=1, embedding_dim=8, data_scale=1.66),
        train_steps=40,
        batch_size=64,
        loss_record_every=20,
        fisher_times=(0.1, 1.0),
        fisher_samples=200,
        floor_repeats=2,
        snapshot_nfes=(4, 16),
        snapshot_points=16,
        trajectory_points=2,
        trajectory_steps=5,
        draw_figures=False,
        grid_modes=4,
    )
    settings.update(overrides)
    return study.Config(**settings)


def test_help_lists_every_field(capsys):
    with pytest.raises(SystemExit) as exit_info:
        study.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for field in dataclasses.fields(study.Config):
        assert "--" + field.name.replace("_", "-") in text, field.name
    assert "paper" in text and "quick" in text


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--preset", "fast"], "fast"),
        (["--nfe-grid", "10,-5"], "nfe_grid"),
        (["--learning-rate", "nan"], "learning_rate"),
        (["--n-samples", "0"], "n_samples"),
        (["--samplers", "sde-em,rk4"], "rk4"),
        (["--fisher-times", "0.5,inf"], "fisher_times"),
        (["--nfe-grid", "10,2000"], "nfe_grid"),
    ],
)
def test_bad_command_lines_fail_before_any_compute(argv, needle, capsys, tmp_path, monkeypatch):
    """Exit status 2 and a message naming the argument and value; nothing is written."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        study.main(argv)
    assert exit_info.value.code == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


def test_config_names_the_offending_field():
    with pytest.raises(ValueError, match="grid_modes"):
        _tiny(grid_modes=5)
    with pytest.raises(ValueError, match="t_end"):
        _tiny(train_t_min=0.01)  # the samplers stop at t_end = 1e-3 < 0.01
    with pytest.raises(ValueError, match="snapshot_points"):
        _tiny(snapshot_points=1000)
    with pytest.raises(ValueError, match="noise-to-signal"):
        _tiny(sde=study.SDES["ve"])  # sigma_max = 10 < the chain's ratio 157 at T
    assert _tiny(sde=study.SDES["ve"], samplers=study.parse_samplers("sde-em")).sde == study.SDES["ve"]


def test_components_are_objects_mapped_once_from_names():
    config = study.PRESETS["quick"]
    assert isinstance(config.sde, study.VPSDE) and (config.sde.beta_min, config.sde.beta_max) == (0.1, 20.0)
    assert [study.sampler_label(s) for s in config.samplers] == [
        "reverse_sde_euler_maruyama", "reverse_sde_shark", "pf_ode_euler", "pf_ode_heun",
        "pf_ode_tsit5_adaptive", "ddpm_ancestral", "ddim_eta0",
    ]
    invocation = study.parse_config(study.Config, study.PRESETS, ["--sde", "subvp", "--samplers", "sde-em,ddim"],
                                    default_preset="quick")
    assert invocation.config.sde == study.SDES["subvp"]
    assert [study.sampler_label(s) for s in invocation.config.samplers] == ["reverse_sde_euler_maruyama", "ddim_eta0"]


def test_sampler_labels_and_budgets_are_the_study_s():
    # Moved from theory: which budgets each sampler sweeps and what it is called.
    assert study.sampler_settings(study.SAMPLERS["sde-shark"], (10, 100)) == (5.0, 50.0)
    assert study.sampler_settings(study.SAMPLERS["ddpm"], (10, 1000)) == (10.0, 1000.0)
    assert study.sampler_settings(study.SAMPLERS["ode-tsit5"], (10,)) == study.ADAPTIVE_TOLERANCES
    assert study.sampler_label(study.SAMPLERS["ode-heun"]) == "pf_ode_heun"
    assert study._budget(study.SAMPLERS["ode-tsit5"], 1e-3) == study.Tolerance(1e-3)
    assert study._budget(study.SAMPLERS["ddim"], 10.0) == study.Steps(10)
    for sampler in study.SAMPLERS.values():
        assert validate_cell_id(study.sampler_label(sampler)) == study.sampler_label(sampler)


def test_smoke_run_saves_resumes_and_draws(tmp_path):
    """The whole pipeline on a tiny config: tidy rows for every cell, W1 next to its
    floor, a resumed run that recomputes nothing, and figures from the saved table."""
    config = _tiny()
    store = ResultStore(tmp_path / "run", config)
    table = study.run(config, store).table
    assert set(table["metric"]) >= {
        "w1", "w1_floor", "mode_weight", "mode_weight_tv", "mass_near_any_mode", "wall_time_s", "train_loss",
        "fisher_divergence", "sample_position", "trajectory_position",
    }
    w1 = table[table.metric == "w1"]
    assert set(w1.score) == {"exact", "learned"}
    assert set(w1.sampler) == {"reverse_sde_euler_maruyama", "pf_ode_tsit5_adaptive", "ddim_eta0"}
    assert np.all(np.isfinite(w1.value)) and np.all(w1.value > 0)
    assert np.all(w1.reference == table[table.metric == "w1_floor"].value.iloc[0])
    # Fixed-step budgets: NFE = steps * evaluations per step (Euler-Maruyama: 1).
    em = w1[w1.sampler == "reverse_sde_euler_maruyama"]
    assert sorted(em.nfe.unique()) == [4.0, 16.0]
    weights = table[(table.metric == "mode_weight") & (table.sampler == "ddim_eta0")]
    sums = weights.groupby(["score", "setting"])["value"].sum()
    np.testing.assert_allclose(sums, 1.0)
    assert (store.run_dir / study.NETWORK_FILE).exists()
    saved = pd.read_csv(store.run_dir / "results.csv")
    assert len(saved) == len(table)

    # Resume: every cell is done, so nothing runs and the same rows come back.
    again = study.run(config, ResultStore(tmp_path / "run", config)).table
    pd.testing.assert_frame_equal(again, table)

    from figures.reverse_diffusion import draw

    paths = draw(store.run_dir)
    names = {path.name for path in paths}
    assert "reverse_diffusion_w1_vs_nfe.png" in names and "reverse_diffusion_trajectories.png" in names
    assert all(path.stat().st_size > 0 for path in paths)
    metadata = json.loads((store.run_dir / "metadata.json").read_text())
    assert metadata["extra"]["status"] == "complete"


def test_summary_reports_both_ends_of_the_budget():
    table = pd.DataFrame([
        dict(sampler="s", score="exact", setting=s, nfe=float(s), seed=seed, metric="w1", value=v)
        for s, values in ((10, (0.5, 0.7)), (100, (0.2, 0.2))) for seed, v in enumerate(values)
    ] + [dict(sampler="target", score="exact", metric="w1_floor", value=0.18)])
    summary = study.summarise(table)
    assert list(summary.nfe) == [10.0, 100.0]
    assert summary.w1.iloc[0] == pytest.approx(0.6) and summary.w1_se.iloc[0] == pytest.approx(0.1)
    assert summary.floor.iloc[0] == pytest.approx(0.18) and math.isnan(summary.on_mode.iloc[0])
