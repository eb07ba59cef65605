"""The WGAN capacity study end to end on a tiny config: numbers, resume, bad input, figures."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

import studies.wgan_capacity as study
from studies.pipeline import ResultStore

TINY = dataclasses.replace(
    study.PRESETS["smoke"], n_steps=6, eval_every=3, critic_depths=(2, 3), lipschitz_probes=32
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("wgan") / "tiny"
    results = study.run(TINY, ResultStore(run_dir, TINY))
    return run_dir, results


def test_the_table_is_tidy_and_complete(tiny_run):
    _, results = tiny_run
    table = results.table
    trained = table[table["metric"] != "w1_floor"]
    assert set(trained["p"]) == {2} and set(trained["q"]) == {2, 3} and set(trained["seed"]) == {0, 1}
    w1 = trained[trained["metric"] == "w1"]
    # Evaluations at steps 0, 3 and 6 for every (q, seed).
    assert sorted(w1["step"].unique()) == [0, 3, 6]
    assert len(w1) == 3 * 2 * 2
    assert (w1["value"] > 0).all() and (w1["ci_low"] <= w1["value"]).all() and (w1["value"] <= w1["ci_high"]).all()
    floor = table[table["metric"] == "w1_floor"]
    assert list(floor["K"]) == [4] and (floor["value"] > 0).all()
    for metric in ("critic_ipm", "modes_covered", "mass_near_any_mode", "mass_near_mode_3",
                   "lipschitz_max_gradient_norm", "lipschitz_spectral_bound", "diverged_at_step"):
        assert metric in set(trained["metric"]), metric
    assert (trained[trained["metric"] == "diverged_at_step"]["value"] == -1).all()


def test_the_bjorck_critic_respects_kantorovich_rubinstein_and_its_lipschitz_bounds(tiny_run):
    _, results = tiny_run
    t = results.table
    key = ["q", "seed", "step"]
    w1 = t[t["metric"] == "w1"].set_index(key)["value"]
    ipm = t[t["metric"] == "critic_ipm"].set_index(key)["value"]
    # A 1-Lipschitz critic's IPM never exceeds the exact W1 on the same points (each
    # repeat, hence their mean); float32 critic values allow ~1e-5 of rounding.
    assert (ipm <= w1.loc[ipm.index] + 1e-4).all()
    lower = t[t["metric"] == "lipschitz_max_gradient_norm"]["value"].to_numpy()
    upper = t[t["metric"] == "lipschitz_spectral_bound"]["value"].to_numpy()
    assert np.all(lower <= upper + 1e-6) and np.all(upper <= 1 + 1e-5)


def test_the_run_directory_holds_config_metadata_samples_and_figures(tiny_run, tmp_path):
    run_dir, _ = tiny_run
    assert json.loads((run_dir / "config.json").read_text())["n_steps"] == 6
    metadata = json.loads((run_dir / "metadata.json").read_text())
    assert "git" in metadata and metadata["packages"]["jax"]
    samples = pd.read_csv(run_dir / "samples" / "p=2_q=2.csv")
    assert set(samples["source"]) == {"generated", "target"}
    from figures.wgan_capacity import draw

    paths = draw(run_dir)
    assert {p.name for p in paths} >= {"w1_heatmaps.png", "w1_learning_curves.png", "samples.png"}
    assert all(p.stat().st_size > 1000 for p in paths)


def test_the_same_seed_gives_the_same_numbers(tiny_run):
    _, first = tiny_run
    config = dataclasses.replace(TINY, critic_depths=(2,))
    again = study.run(config).table
    mine = first.table[(first.table["q"] == 2) | (first.table["metric"] == "w1_floor")]
    columns = ["K", "q", "seed", "step", "metric", "value"]
    pd.testing.assert_frame_equal(
        mine[columns].reset_index(drop=True), again[columns].reset_index(drop=True), check_dtype=False
    )


def test_an_interrupted_sweep_resumes_without_redoing_finished_cells(tmp_path, monkeypatch):
    config = dataclasses.replace(TINY, n_steps=3, eval_every=3)
    store_dir = tmp_path / "run"
    real_run_cell = study._run_cell
    calls = []

    def crash_on_second_cell(config, p, q, progress, samples_dir):
        calls.append(q)
        if q == 3:
            raise KeyboardInterrupt  # as Ctrl-C in the middle of the sweep
        return real_run_cell(config, p, q, progress, samples_dir)

    monkeypatch.setattr(study, "_run_cell", crash_on_second_cell)
    with pytest.raises(KeyboardInterrupt):
        study.run(config, ResultStore(store_dir, config))
    saved = ResultStore(store_dir, config)
    assert saved.done_cells() == ["p=2_q=2", "sampling-floor"]
    first_rows = saved.cell_table("p=2_q=2")

    calls.clear()
    monkeypatch.setattr(study, "_run_cell", lambda *a: (calls.append(a[2]), real_run_cell(*a))[1])
    results = study.run(config, ResultStore(store_dir, config))
    assert calls == [3]
    pd.testing.assert_frame_equal(ResultStore(store_dir, config).cell_table("p=2_q=2"), first_rows)
    assert set(results.table["q"].dropna()) == {2, 3}


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--preset", "nope"], "nope"),
        (["--generator-depths", "0,2"], "generator_depths must be an integer >= 1, got 0"),
        (["--n-modes", "3"], "K=3"),
        (["--eval-repeats", "1"], "eval_repeats must be an integer >= 2, got 1"),
        (["--lr-critic", "-1"], "lr_critic must be a finite number > 0, got -1.0"),
        (["--critic", "magic"], "magic"),
    ],
)
def test_bad_input_is_refused_before_training(argv, message, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(study, "run", lambda *a, **k: pytest.fail("training started"))
    with pytest.raises(SystemExit) as exit_info:
        study.main(argv + ["--results-dir", str(tmp_path)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_help_documents_every_field(capsys):
    with pytest.raises(SystemExit):
        study.main(["--help"])
    text = capsys.readouterr().out
    for field in dataclasses.fields(study.Config):
        assert "--" + field.name.replace("_", "-") in text
