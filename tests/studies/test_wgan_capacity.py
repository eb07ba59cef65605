"""The WGAN capacity study's science on a tiny config: Kantorovich-Rubinstein, Lipschitz
bounds, divergence flagged and counted. Plumbing (help, bad input, resume, sweep
independence, figures from cells) is checked for every study in test_protocol.py."""

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats

import studies.wgan_capacity as study
from studies import kit

TINY = dataclasses.replace(
    study.PRESETS["smoke"], n_steps=6, eval_every=3, critic_depths=(2, 3), lipschitz_probes=32
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("wgan") / "tiny"
    results = study.run(TINY, kit.ResultStore(run_dir, TINY, study="wgan_capacity"))
    return run_dir, results


def test_the_table_is_tidy_and_complete(tiny_run):
    _, results = tiny_run
    table = results.table
    trained = table[~table["metric"].isin(["w1_floor", "sample"])]
    assert set(trained["p"]) == {2} and set(trained["q"]) == {2, 3} and set(trained["seed"]) == {0, 1}
    w1 = trained[trained["metric"] == "w1"]
    assert sorted(w1["step"].unique()) == [0, 3, 6] and len(w1) == 3 * 2 * 2
    assert (w1["value"] > 0).all() and (w1["ci_low"] <= w1["value"]).all() and (w1["value"] <= w1["ci_high"]).all()
    floor = table[table["metric"] == "w1_floor"]
    assert list(floor["K"]) == [4] and (floor["value"] > 0).all() and (floor["n"] == TINY.eval_repeats).all()
    for metric in ("critic_ipm", "modes_covered", "mass_near_any_mode", "mass_near_mode_3",
                   "lipschitz_max_gradient_norm", "lipschitz_spectral_bound", "diverged_at_step"):
        assert metric in set(trained["metric"]), metric
    assert (trained[trained["metric"] == "diverged_at_step"]["value"] == -1).all()
    samples = table[table["metric"] == "sample"]
    assert set(samples["source"]) == {"generated", "target"} and set(samples["seed"]) == {0}


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


def test_the_summary_gives_intervals_over_seeds_and_the_late_mean(tiny_run):
    _, results = tiny_run
    summary = results.summary()
    assert len(summary) == 2 and (summary["diverged"] == "0/2").all()
    final = results.table.query("metric == 'w1' and step == 6 and q == 2")["value"].to_numpy()
    row = summary[summary["q"] == 2].iloc[0]
    assert row["final_value"] == pytest.approx(final.mean())
    assert row["final_error"] == pytest.approx(final.std(ddof=1) / math.sqrt(2))
    assert "±" in row["late_mean_w1"] and "floor" in summary.columns


def test_the_trends_are_paired_differences_over_seeds(tiny_run):
    _, results = tiny_run
    trends = study.trends(results.table)
    # TINY varies q only (2, 3) at p = 2: one "deeper critic" row, no generator contrast.
    assert list(trends["contrast"]) == ["deeper critic: q=3 minus q=2"] and list(trends["at"]) == ["p=2"]
    final = results.table.query("metric == 'w1' and step == 6").set_index(["q", "seed"])["value"]
    differences = (final.loc[3] - final.loc[2]).to_numpy()
    row = trends.iloc[0]
    assert row["final_value"] == pytest.approx(differences.mean())
    # The paired t-interval with 1 degree of freedom: half-width t_{1, 0.975} s / sqrt(2).
    half = scipy.stats.t.ppf(0.975, 1) * differences.std(ddof=1) / math.sqrt(2)
    assert row["final_high"] - row["final_low"] == pytest.approx(2 * half)


def _w1_rows(final_by_cell: dict) -> pd.DataFrame:
    """A w1 table with two evaluations per seed, the last one given (NaN: diverged)."""
    rows = [{"K": 4, "p": p, "q": q, "seed": seed, "step": step, "metric": "w1", "value": value}
            for (p, q), finals in final_by_cell.items() for seed, final in enumerate(finals)
            for step, value in ((0, 5.0), (10, final))]
    return pd.DataFrame(rows)


def test_a_trend_counts_a_seed_diverged_on_either_side_instead_of_dropping_it():
    nan = math.nan
    table = _w1_rows({(2, 2): [3.0, 2.0, 4.0], (2, 5): [1.0, nan, 1.5], (5, 2): [6.0, 7.0, 8.0],
                      (5, 5): [1.0, 1.0, 1.0]})
    trends = study.trends(table).set_index(["contrast", "at"])
    critic = trends.loc[("deeper critic: q=5 minus q=2", "p=2")]
    # Seeds 0 and 2 pair up (-2.0, -2.5); seed 1 diverged at q = 5 and is shown, not dropped.
    assert critic["final_value"] == pytest.approx(-2.25) and "(1/3 diverged)" in critic["final_w1_difference"]
    generator = trends.loc[("deeper generator: p=5 minus p=2", "q=2")]
    assert generator["final_value"] == pytest.approx(4.0) and "diverged" not in generator["final_w1_difference"]
    # The late mean (last quarter of 2 evaluations: the last one) follows the same pairs.
    assert "(1/3 diverged)" in critic["late_mean_difference"]


def test_trends_of_a_single_depth_are_empty():
    trends = study.trends(_w1_rows({(2, 2): [1.0, 2.0]}))
    assert trends.empty and list(trends.columns) == study.TREND_COLUMNS


def test_two_runs_compare_as_paired_differences_with_a_diverged_seed_counted():
    nan = math.nan
    before = _w1_rows({(2, 2): [3.0, 2.0, 4.0], (2, 5): [1.0, 1.2, 1.5], (5, 5): [2.0, 2.0, 2.0]})
    after = _w1_rows({(2, 2): [2.0, 1.0, 2.0], (2, 5): [1.0, nan, 1.0], (3, 3): [1.0, 1.0, 1.0]})
    comparison = study.compare_runs(before, after).set_index(["p", "q"])
    # Only the cells in both runs; (5, 5) and (3, 3) are in one run each.
    assert sorted(comparison.index) == [(2, 2), (2, 5)]
    row = comparison.loc[(2, 2)]
    differences = np.array([-1.0, -1.0, -2.0])  # after minus before, seed by seed
    assert row["final_value"] == pytest.approx(differences.mean())
    half = scipy.stats.t.ppf(0.975, 2) * differences.std(ddof=1) / math.sqrt(3)
    assert row["final_high"] - row["final_low"] == pytest.approx(2 * half)
    # Seed 1 diverged in `after`: counted in both columns, its pair not dropped silently.
    diverged = comparison.loc[(2, 5)]
    assert diverged["final_value"] == pytest.approx(-0.25) and "(1/3 diverged)" in diverged["final_w1_difference"]
    assert "(1/3 diverged)" in diverged["late_mean_difference"]
    assert study.compare_runs(before, _w1_rows({(7, 7): [1.0]})).empty


def test_the_carried_critic_is_offered_on_the_command_line():
    invocation = kit.parse_config(study.Config, study.PRESETS, ["--critic", "bjorck-carried"], default_preset="quick")
    critic = invocation.config.critic_of_depth(5)
    assert (critic.depth, critic.iterations, critic.project_iterations) == (5, 1, 1)


def test_every_replica_diverged_says_so_instead_of_showing_step_0_as_final():
    # lr 3e38: the first update overflows; the step-0 W1 (untrained) must not be "final".
    config = dataclasses.replace(TINY, critic_depths=(2,), lr_critic=3e38, lr_generator=3e38)
    results = study.run(config)
    summary = results.summary().iloc[0]
    assert summary["diverged"] == "2/2" and summary["final_w1"] == "all 2 diverged"
    assert math.isnan(summary["final_value"])
    diverged_at = results.table.query("metric == 'diverged_at_step'")["value"]
    assert (diverged_at >= 0).all()


def test_an_exploded_generator_with_finite_losses_is_flagged_by_its_distance():
    # lr 1e6 keeps the losses finite but throws the generator ~1e6 away; W1 beyond
    # DIVERGENCE_DIAMETERS target diameters marks it diverged at that evaluation.
    config = dataclasses.replace(TINY, critic_depths=(2,), lr_critic=1e6, lr_generator=1e6)
    table = study.run(config).table
    diverged_at = table.query("metric == 'diverged_at_step'")["value"]
    assert (diverged_at >= 0).all()
    final = table.query("metric == 'w1' and step == 6")["value"]
    assert final.isna().all() and len(final) == 2  # rows kept, as NaN, never dropped


def test_the_divergence_limit_is_ten_target_diameters():
    import theory

    grid = theory.gaussian_grid(4)
    # Opposite corners of the K = 4 grid are 4 sqrt(2) apart; sd = sqrt(0.1).
    assert study.target_diameter(grid) == pytest.approx(4 * math.sqrt(2) + 6 * math.sqrt(0.1))


def test_figures_of_a_run_with_only_the_floor_say_there_is_nothing_to_draw(tmp_path, capsys):
    # Issue 12, item 11: this used to exit 0 and draw nothing without a word.
    from figures import wgan_capacity as figures
    from figures.command import NothingToDrawError

    floors = [cell for cell in study.cells(TINY) if cell.id.startswith("floor")]
    kit.run_cells(kit.ResultStore(tmp_path / "floors", TINY, study="wgan_capacity"), floors)
    with pytest.raises(NothingToDrawError, match="no trained cell"):
        figures.draw(tmp_path / "floors")
    with pytest.raises(SystemExit) as info:
        figures.main([str(tmp_path / "floors")])
    assert info.value.code == 2 and "nothing to draw" in capsys.readouterr().err


def test_two_cells_at_once_give_the_same_cells_byte_for_byte(tiny_run, tmp_path):
    # Each cell's keys and compiled programs are its own, so running the two critic
    # depths on two threads at once must not change a digit of their saved rows.
    run_dir, _ = tiny_run
    study.run(TINY, kit.ResultStore(tmp_path / "two", TINY, study="wgan_capacity"), runtime=kit.Runtime(workers=2))
    names = sorted(path.name for path in (run_dir / "cells").glob("*.csv"))
    assert names == sorted(path.name for path in (tmp_path / "two" / "cells").glob("*.csv")) and len(names) == 3
    for name in names:
        assert (run_dir / "cells" / name).read_bytes() == (tmp_path / "two" / "cells" / name).read_bytes(), name
