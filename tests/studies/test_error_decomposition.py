"""The error-decomposition study's science on the smoke config: the telescoping sum, the
intervals derived from the training cells' per-seed rows, the output contract, and bad
input refused before compute. Plumbing (help, resume, sweep independence, figures from
cells) is checked for every study in test_protocol.py."""

import dataclasses
import math

import numpy as np
import pytest

import studies.error_decomposition as study
from studies import kit

SMOKE = study.PRESETS["smoke"]


@pytest.fixture(scope="module")
def smoke_table(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("decomposition") / "smoke"
    return study.run(SMOKE, kit.ResultStore(run_dir, SMOKE, study="error_decomposition")).table


def _per_seed(table, metric, **coords):
    rows = table[(table["metric"] == metric) & table["seed"].notna()]
    for name, value in coords.items():
        rows = rows[rows[name] == value]
    return rows.sort_values("seed")["value"].to_numpy()


def test_decompose_telescopes_exactly_and_pairs_by_seed():
    rng = np.random.default_rng(0)
    d_n, d_inf, o_inf, o_n, floor = rng.uniform(0.1, 3.0, size=(5, 4))
    terms = study.decompose(d_n, d_inf, o_inf, o_n, floor)
    total = terms["eps_estim"][0] + terms["eps_optim"][0] + terms["eps_approx"][0]
    # (a - b) + (b - c) + c = a up to float64 rounding: at most 3 roundings of numbers <= 3.
    np.testing.assert_allclose(total, terms["w1_total"][0], rtol=0, atol=4 * np.finfo(float).eps * 3)
    assert terms["eps_estim"][1] == kit.paired_difference(d_n, d_inf)
    assert terms["eps_approx_above_floor"][1] == kit.paired_difference(o_inf, floor)


def test_every_saved_decomposition_adds_up_to_its_total(smoke_table):
    t = smoke_table
    for n in (*SMOKE.train_sizes, study.INFINITY):
        coords = {"K": 4, "p": 2, "q": 2, "n": n}
        total = _per_seed(t, "w1_total", **coords)
        parts = sum(_per_seed(t, m, **coords) for m in ("eps_estim", "eps_optim", "eps_approx"))
        assert len(total) == SMOKE.n_seeds
        np.testing.assert_allclose(parts, total, rtol=0, atol=1e-12)


def test_the_terms_are_paired_differences_of_the_training_cells_rows(smoke_table):
    t = smoke_table
    n = max(SMOKE.train_sizes)
    wgan = lambda n: _per_seed(t[t["model"] == "wgan"], "w1", K=4, p=2, q=2, n=n)
    oracle = lambda n: _per_seed(t[t["model"] == "oracle"], "w1", K=4, p=2, n=n)
    summary = t[t["seed"].isna() & (t["n"] == n) & (t["q"] == 2)].set_index("metric")
    for metric, expected in (("eps_estim", kit.paired_difference(wgan(n), wgan(study.INFINITY))),
                             ("eps_optim", kit.paired_difference(wgan(study.INFINITY), oracle(study.INFINITY))),
                             ("eps_approx", kit.over_replicates(oracle(study.INFINITY))),
                             ("eps_estim_oracle", kit.paired_difference(oracle(n), oracle(study.INFINITY)))):
        row = summary.loc[metric]
        assert row["value"] == pytest.approx(expected.value, abs=1e-12), metric
        assert row["error"] == pytest.approx(expected.error, abs=1e-12), metric
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((expected.low, expected.high), abs=1e-12), metric


def test_the_output_contract(smoke_table):
    t = smoke_table
    for column in ("K", "p", "q", "n", "seed", "metric", "value", "error", "ci_low", "ci_high"):
        assert column in t.columns, column
    for metric in ("w1_total", "eps_estim", "eps_optim", "eps_approx", "w1_floor"):
        summary = t[(t["metric"] == metric) & t["seed"].isna() & t["q"].notna()]
        assert len(summary) == len(SMOKE.train_sizes) + 1, metric  # every finite n and n = -1
        assert set(summary["n"]) == {*SMOKE.train_sizes, study.INFINITY}
        assert summary[["value", "error", "ci_low", "ci_high"]].notna().all().all(), metric
        assert (summary["ci_low"] <= summary["value"]).all() and (summary["value"] <= summary["ci_high"]).all()
    # n = infinity has no estimation error by definition (the same trainings, subtracted).
    inf = t[(t["metric"] == "eps_estim") & (t["n"] == study.INFINITY) & t["seed"].notna()]
    assert (inf["value"] == 0).all()
    slopes = t[t["metric"].str.endswith("_slope")]
    assert set(slopes["metric"]) == {"eps_estim_slope", "eps_estim_oracle_slope", "rate_slope", "rate_reference_slope",
                                     "eps_estim_decade_slope", "eps_estim_oracle_decade_slope"}
    # The semi-log slope is least squares per seed, linear in the data: its mean over seeds
    # is the fit to the seeds' mean term (float64 rounding only).
    for k, p, q in {(int(r.K), int(r.p), int(r.q)) for r in slopes.itertuples()}:
        estim = t[(t["metric"] == "eps_estim") & t["seed"].notna() & (t["n"] != study.INFINITY)
                  & (t["K"] == k) & (t["p"] == p) & (t["q"] == q)]
        mean = estim.groupby("n")["value"].mean()
        fitted = np.polyfit(np.log10(mean.index.to_numpy(np.float64)), mean.to_numpy(), 1)[0]
        slope = slopes[(slopes["metric"] == "eps_estim_decade_slope") & (slopes["K"] == k) & (slopes["p"] == p) & (slopes["q"] == q)]
        np.testing.assert_allclose(slope["value"].to_numpy(), fitted, rtol=1e-9, atol=1e-12)
    rate = t[(t["metric"] == "w1_data") & t["seed"].isna()]
    assert sorted(rate["n"]) == sorted(SMOKE.train_sizes) and (rate["value"] > 0).all()


def test_a_fresh_critic_respects_kantorovich_rubinstein(smoke_table):
    t = smoke_table[smoke_table["model"] == "fresh_critic"]
    w1, ipm = _per_seed(t, "w1"), _per_seed(t, "critic_ipm_fresh")
    # A 1-Lipschitz (Bjorck) critic's IPM on the scored points never exceeds their exact
    # W1 (each repeat, hence the mean); float32 critic values allow ~1e-5 of rounding.
    assert np.all(ipm <= w1 + 1e-4)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"train_sizes": (0, 64)}, "train_sizes must be >= 2, got 0"),
        ({"train_sizes": (-5,)}, "train_sizes must be >= 2, got -5"),
        ({"generator_depths": (0,)}, "generator_depths must be >= 1, got 0"),
        ({"critic_depths": (2, 2)}, "critic_depths"),
        ({"eval_points": -1}, "eval_points must be >= 2, got -1"),
        ({"batch_size": -3}, "batch_size must be >= 2, got -3"),
        ({"n_modes": (3,)}, "K=3"),
        ({"critic_fit_steps": 5}, "critic_fit_steps must be even"),
    ],
)
def test_bad_input_is_refused_by_the_config(change, message):
    with pytest.raises(ValueError) as info:
        dataclasses.replace(SMOKE, **change)
    assert message in str(info.value)


def test_without_the_full_grid_every_n_is_trained_at_the_first_depths_only():
    config = dataclasses.replace(SMOKE, generator_depths=(2, 3), critic_depths=(2, 4), train_sizes=(32, 64, 128))
    assert config.pairs() == [(2, 2), (2, 4), (3, 2), (3, 4)]
    assert config.sizes_at(2, 2) == [32, 64, 128] and config.sizes_at(3, 2) == [128] and config.sizes_at(3, 4) == [128]
    full = dataclasses.replace(config, full_grid=True)
    assert full.sizes_at(3, 4) == [32, 64, 128]
    ids = [cell.id for cell in study.cells(config)[0]]
    assert "slope_K=4_p=2_q=2_n=32-64-128" in ids and not any(i.startswith("slope_K=4_p=3") for i in ids)
    assert len(ids) == len(set(ids))
    assert math.isfinite(study.INFINITY) and study.INFINITY == -1


def test_trends_are_paired_differences_between_neighbouring_depths():
    """One cell per pair of neighbouring depths, needing exactly the two trainings it pairs
    (so its numbers do not depend on the rest of the sweep); each row is a - b paired by
    seed, a at the smaller depth (positive: the term falls with depth)."""
    config = dataclasses.replace(SMOKE, generator_depths=(5, 2, 3), critic_depths=(4, 2))
    cells = {cell.id: cell for cell in study.cells(config)[0]}
    trends = sorted(i for i in cells if i.split("_K=")[0] in study.TRENDS)
    assert trends == sorted(
        ["eps_approx_drop_K=4_p=2_vs_3", "eps_approx_drop_K=4_p=3_vs_5"]
        + [f"{m}_K=4_p={p}_q=2_vs_4" for m in ("eps_optim_drop", "metric_gap_drop") for p in (2, 3, 5)]
    )
    assert cells["eps_approx_drop_K=4_p=3_vs_5"].needs == ("oracle_K=4_p=3_n=inf.eqx", "oracle_K=4_p=5_n=inf.eqx")
    assert cells["eps_optim_drop_K=4_p=5_q=2_vs_4"].needs == ("wgan_K=4_p=5_q=2_n=inf.eqx", "wgan_K=4_p=5_q=4_n=inf.eqx")
    assert cells["metric_gap_drop_K=4_p=2_q=2_vs_4"].needs == ("critic_fit_K=4_p=2_q=2.json", "critic_fit_K=4_p=2_q=4.json")
    rng = np.random.default_rng(1)
    a, b = rng.uniform(0.5, 2.0, size=(2, 6))
    a[3] = math.nan  # a diverged seed is counted, not dropped silently
    value = {"evaluation": {"w1": list(a)}}, {"evaluation": {"w1": list(b)}}
    (row,) = cells["eps_approx_drop_K=4_p=3_vs_5"].fn(**dict(zip(cells["eps_approx_drop_K=4_p=3_vs_5"].needs, value)))
    interval = kit.paired_difference(a, b)
    assert (row["metric"], row["p"], row["versus"]) == ("eps_approx_drop", 3, 5)
    assert (row["value"], row["error"], row["ci_low"], row["ci_high"]) == (interval.value, interval.error, interval.low, interval.high)
    assert row["n_diverged"] == 1 and row["n_seeds"] == 5  # 5 seeds in the interval, 1 counted apart
