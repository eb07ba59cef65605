"""The GAN pathologies study's science on a tiny config: the output contract, the
variational inequality B(v) <= Div for every trained network, the exact values on the
parallel lines, the isoperimetric bound against a generator whose mass off the modes is
known in closed form, and diverged replicates kept as NaN rows. Plumbing (help, bad
input, resume, sweep independence, figures from cells) is checked for every study in
test_protocol.py; the discriminator optima, the f-GAN activations and the conditional
generator's labels are tested in tests/models (not repeated here)."""

import dataclasses
import math

import numpy as np
import pytest
import scipy.stats

import studies.gan_pathologies as study
from studies import kit
import theory

TINY = dataclasses.replace(
    study.PRESETS["smoke"], bound_steps=10, gradient_stages=(0,), gradient_steps=5, js_steps=5, mode_steps=4, eval_every=2,
    disconnected_steps=4, eval_points=48, n_train=64,
)


@pytest.fixture(scope="module")
def table():
    # All five experiments: about 30 programs to compile (~90 s of CPU), hence slow.
    return study.run(TINY).table


@pytest.mark.slow
def test_the_output_contract_holds(table):
    for column in ("experiment", "objective", "metric", "value", "error", "seed", "d_step"):
        assert column in table.columns, column
    metrics = set(table["metric"])
    for metric in ("divergence_estimate", "divergence_exact", "generator_grad_norm", "modes_covered", "w1", "mass_off_modes"):
        assert metric in metrics, metric
    grads = table[table["metric"] == "generator_grad_norm"]
    assert set(grads["objective"]) == {"minimax", "non-saturating", "wgan"}
    assert sorted(grads["d_step"].unique()) == study.log_checkpoints(TINY.gradient_steps)
    assert set(grads["seed"]) == set(range(TINY.n_seeds)) and (grads["value"] > 0).all()
    trained = table[table["metric"].isin(["w1", "modes_covered", "mass_off_modes"])]
    assert set(trained["experiment"]) == {"modes", "disconnected"}
    assert sorted(trained["step"].unique()) == [0, 2, 4]
    assert (table[table["metric"] == "diverged_at_step"]["value"] == -1).all()


@pytest.mark.slow
def test_every_trained_bound_lies_below_the_exact_divergence(table):
    bounds = table[table["experiment"] == "bounds"]
    for (law, name), cell in bounds.groupby(["law", "objective"]):
        exact = cell[cell["metric"] == "divergence_exact"].iloc[0]
        estimates = cell[cell["metric"] == "divergence_estimate"]
        assert len(estimates) == TINY.n_seeds * len(study.log_checkpoints(TINY.bound_steps, (1,)))
        # B(v) <= Div(P, Q) for every v (the variational inequality); both are quadratures
        # whose reported errors bound their numerical error.
        slack = exact["error"] + estimates["error"]
        assert (estimates["value"] <= exact["value"] + slack).all(), (law, name)


@pytest.mark.slow
def test_the_parallel_lines_have_their_exact_values(table):
    js = table[table["experiment"] == "js"]
    for (name, theta), cell in js.groupby(["objective", "theta"]):
        exact = cell[cell["metric"] == "divergence_exact"]["value"]
        # JS between disjoint segments is log 2 (0 at theta = 0); W1 is the shift |theta|.
        expected = abs(theta) if name == "wgan" else (math.log(2) if theta != 0 else 0.0)
        assert np.allclose(exact, expected, atol=1e-12), (name, theta)
        estimate = cell[cell["metric"] == "divergence_estimate"]
        # Monte Carlo estimates of bounds: below the exact value up to 4 standard errors.
        assert (estimate["value"] <= expected + 4 * estimate["error"] + 1e-12).all(), (name, theta)


def test_the_isoperimetric_bound_holds_for_a_linear_generator_with_known_mass():
    # G(z) = (s z, 0), z ~ N(0, 1), is s-Lipschitz; with modes at (+-2, 0) and balls of
    # radius rho the mass in ball +-2 is Phi((2 + rho) / s) - Phi((2 - rho) / s) and the
    # mass off the modes is 1 minus both: compare with the bound, exactly.
    target = theory.gaussian_grid(2)
    rho = study.MODE_RADIUS * math.sqrt(theory.GRID_VARIANCE)
    separations = study.ball_separations(target)
    assert np.allclose(separations, 4 - 2 * rho)
    for s in (0.5, 1.0, 2.0, 4.0, 16.0):
        a = scipy.stats.norm.cdf((2 + rho) / s) - scipy.stats.norm.cdf((2 - rho) / s)
        off = 1 - 2 * a
        bound = study.isoperimetric_gap_bound(np.array([a, a]), separations, s)
        assert 0 < bound <= off + 1e-12, (s, bound, off)
    # A generator that puts no mass in a mode gets no bound from that mode.
    assert study.isoperimetric_gap_bound(np.array([0.0, 0.0]), separations, 1.0) == 0.0


def test_the_isoperimetric_bound_refuses_bad_input():
    with pytest.raises(ValueError, match="lipschitz"):
        study.isoperimetric_gap_bound(np.array([0.5]), np.array([1.0]), 0.0)
    with pytest.raises(ValueError, match="masses in"):
        study.isoperimetric_gap_bound(np.array([1.5]), np.array([1.0]), 1.0)


def test_the_25_mode_grid_is_recorded_and_rebuilt_from_theory():
    grid = study.grid_target(25, spacing=2.0, variance=0.1)
    assert grid.n_components == 25 and np.allclose(np.asarray(grid.weights), 1 / 25)
    means = np.asarray(grid.means)
    assert set(np.round(means[:, 0], 12)) == {-4.0, -2.0, 0.0, 2.0, 4.0}
    assert np.allclose(np.asarray(grid.covs), 0.1 * np.eye(2))
    config = dataclasses.replace(TINY, experiments=("modes",), mode_grids=(25,), mode_objectives=(study.OBJECTIVES["minimax"],))
    target_cell = [c for c in study.cells(config) if c.id == "target_K=25"][0]
    rows = target_cell.fn()
    recorded = np.array([[r["x"], r["y"]] for r in rows if r["metric"] == "mode_mean"])
    assert np.array_equal(recorded, means.astype(np.float64))


def test_a_diverged_training_keeps_its_rows_as_nan():
    config = dataclasses.replace(TINY, experiments=("modes",), mode_objectives=(study.OBJECTIVES["non-saturating"],),
                                 lr_generator=3e38, lr_discriminator=3e38, mode_steps=2, eval_every=1)
    table = study.run(config).table
    modes = table[table["experiment"] == "modes"]
    final = modes[(modes["metric"] == "w1") & (modes["step"] == config.mode_steps)]
    assert len(final) == config.n_seeds and final["value"].isna().all()
    assert (modes[modes["metric"] == "diverged_at_step"]["value"] >= 0).all()
    summary = study.mode_summary(table)
    assert summary.iloc[0]["diverged"] == f"{config.n_seeds}/{config.n_seeds}"


def test_checkpoints_are_log_spaced_and_end_at_n():
    assert study.log_checkpoints(2000) == [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000]
    assert study.log_checkpoints(37, (1,)) == [1, 10, 37]


def test_a_subset_of_experiments_prints_only_its_own_tables(tmp_path, capsys):
    # The summaries of experiments that did not run are empty (their columns, e.g. `law`,
    # are then absent from the table), not a KeyError after the training is done.
    study.main(["--preset", "smoke", "--experiments", "modes", "--mode-objectives", "wgan", "--mode-steps", "2",
                "--eval-every", "2", "--eval-points", "32", "--n-train", "64", "--results-dir", str(tmp_path),
                "--run-name", "modes-only"])
    printed = capsys.readouterr().out
    assert "4. Gaussian grids" in printed
    for title in ("1. Bound gap", "2. Generator gradient norm", "3. Parallel lines", "5. Mass off the modes"):
        assert title not in printed
    table = kit.load_run(tmp_path / "modes-only").table
    assert len(study.mode_summary(table)) == 1
    for summary in (study.bound_summary, study.gradient_summary, study.js_summary, study.disconnected_summary):
        assert summary(table).empty
