"""The ELBO-gap study's science on a tiny config: the output contract, the identity
log p - L[q] = KL(q || p(z | x)) on every row, bounds ordered as theory says, and the
pPCA closed form for posterior collapse. Plumbing (help, bad input, resume, sweep
independence, figures from cells) is checked for every study in test_protocol.py."""

import dataclasses
import math

import jax
import numpy as np
import pytest

import studies.elbo_gap as study
from models.vae import FixedNoise, VAESpec, ppca_linear_vae
from studies import kit
from studies.kit.progress import Progress

TINY = dataclasses.replace(study.PRESETS["smoke"], n_steps=200, iwae_ks=(1, 10, 100))
BASE = study.ModelCoords(latent_dim=1, encoder_width=TINY.width, decoder_width=TINY.width, family="factorised", beta=1.0)

# Rows are compared within this many standard errors: two-sided normal tail 5.7e-7 per
# row, so < 1e-4 over the few dozen rows a test checks.
Z = 5.0


@pytest.fixture(scope="module")
def vae_rows():
    """One VAE cell (two seeds) run directly, without a store."""
    rows = study._VAECell(TINY, kit.Keys(TINY.seed), BASE, Progress(1))()
    return kit.rows_to_frame(rows)


def _metric(table, name):
    return table[table["metric"] == name].sort_values(["seed"] + (["k"] if name.startswith("iwae") and name != "iwae_log_marginal" else []))


def test_the_output_contract_holds(vae_rows):
    table = vae_rows
    for metric in ("log_marginal", "elbo_amortised", "elbo_optimal", "approximation_gap", "amortisation_gap",
                   "iwae", "kl_data_model"):
        rows = _metric(table, metric)
        assert len(rows) == (len(TINY.iwae_ks) if metric == "iwae" else 1) * TINY.n_seeds, metric
        assert np.isfinite(rows["value"]).all() and np.isfinite(rows["error"]).all(), metric
        assert set(rows["seed"]) == set(range(TINY.n_seeds))
        for column in ("model", "latent_dim", "encoder_width", "decoder_width", "family", "beta"):
            assert rows[column].notna().all(), (metric, column)
    assert sorted(_metric(table, "iwae")["k"].unique()) == list(TINY.iwae_ks)
    assert (_metric(table, "diverged_at_step")["value"] == -1).all()


def test_the_gaps_are_paired_differences_of_the_saved_bounds(vae_rows):
    """approximation = log p - L[q*], amortisation = L[q*] - L[q_phi], per seed on the
    same points: the per-seed means of the differences equal the differences of the means
    (to float64 rounding of a mean of a few O(10) numbers)."""
    t = vae_rows.set_index(["metric", "seed"])["value"]
    for seed in range(TINY.n_seeds):
        log_p, star, phi = t["log_marginal", seed], t["elbo_optimal", seed], t["elbo_amortised", seed]
        assert t["approximation_gap", seed] == pytest.approx(log_p - star, abs=1e-12)
        assert t["amortisation_gap", seed] == pytest.approx(star - phi, abs=1e-12)


def test_identity_holds_on_every_row_within_its_errors(vae_rows):
    """log p - L_quad[q] = KL(q || p(z|x)) with KL from an independent Monte Carlo ELBO:
    the residual L_MC - L_quad is 0 up to Z Monte Carlo standard errors plus the
    quadrature error bound (numerical_error)."""
    for name in ("amortised", "optimal"):
        rows = _metric(vae_rows, f"identity_residual_{name}")
        assert len(rows) == TINY.n_seeds
        assert (rows["value"].abs() <= Z * rows["error"] + rows["numerical_error"]).all(), rows[["value", "error"]]
        # The KL to the posterior is non-negative within the same errors.
        kl = _metric(vae_rows, f"kl_to_posterior_{name}")
        assert (kl["value"] >= -(Z * kl["error"] + kl["numerical_error"])).all()


def test_bounds_are_ordered_as_theory_says(vae_rows):
    """L[q_phi] <= L[q*] <= log p (within the quadrature errors; q* is the family's
    optimum found) and every IWAE bound L_K <= log p on the same points (Burda et al. 2016,
    Thm 1) within Z Monte Carlo errors; L_K grows from K = 1 to the largest K."""
    gaps = vae_rows.set_index(["metric", "seed"])
    for seed in range(TINY.n_seeds):
        assert gaps.loc[("amortisation_gap", seed), "value"] >= 0.0
        approx = gaps.loc[("approximation_gap", seed)]
        assert approx["value"] >= -approx["numerical_error"]
        log_p = gaps.loc[("iwae_log_marginal", seed)]
        iwae = _metric(vae_rows, "iwae")
        iwae = iwae[iwae["seed"] == seed].set_index("k")
        assert (iwae["value"] <= log_p["value"] + log_p["error"] + Z * iwae["error"]).all()
        first, last = iwae.loc[min(TINY.iwae_ks)], iwae.loc[max(TINY.iwae_ks)]
        assert last["value"] >= first["value"] - Z * math.hypot(first["error"], last["error"])


def test_data_model_kl_is_nonnegative_within_its_error(vae_rows):
    kl = _metric(vae_rows, "kl_data_model")
    assert (kl["value"] >= -(Z * kl["error"] + kl["numerical_error"])).all()


@pytest.mark.parametrize("noise_variance", [0.1, 0.5, 2.0, 6.0])
def test_closed_form_collapse_kl_is_that_of_the_exact_ppca_posterior(noise_variance):
    """ppca_linear_vae (W = U (Lambda - sigma^2)_+^{1/2}, encoder = exact posterior) on a
    sample, scored on the same sample, has per-dimension KL 1/2 log(lambda_j / sigma^2)_+
    with lambda_j the sample eigenvalues exactly (the derivation of closed_form_kl_per_dim
    with the sample covariance). The model is float32: parameters rounded to 2^-24
    relative move each KL of size O(1) by ~1e-7; 1e-5 leaves 100 times that."""
    law = study.collapse_data_law(TINY, kit.Keys(0))
    data = np.asarray(law.sample(jax.random.key(3), 4000), np.float64)
    d = data.shape[1]
    spec = VAESpec(data_dim=d, latent_dim=d, depth=0, noise=FixedNoise(math.sqrt(noise_variance)))
    model = ppca_linear_vae(spec, data)
    kl = study.kl_to_prior_per_dim(model, data).mean(axis=0)
    sample_eigenvalues = np.linalg.eigvalsh(np.cov(data, rowvar=False, bias=True))[::-1]
    expected = study.closed_form_kl_per_dim(sample_eigenvalues, noise_variance)
    np.testing.assert_allclose(kl, expected, atol=1e-5, rtol=1e-5)
    # Collapsed directions: exactly the eigenvalues below sigma^2.
    assert np.array_equal(kl < 1e-5, sample_eigenvalues <= noise_variance)


def test_collapse_cell_compares_trained_kl_with_the_closed_form():
    config = dataclasses.replace(TINY, n_steps=300)
    rows = kit.rows_to_frame(study._collapse_cell(config, kit.Keys(0), "linear", 0.5, Progress(1)))
    closed = rows[rows["metric"] == "kl_per_dim_closed_form"].sort_values("dim")["value"].to_numpy()
    np.testing.assert_allclose(closed, study.closed_form_kl_per_dim(sorted(TINY.collapse_eigenvalues, reverse=True), 0.5))
    for metric in ("kl_per_dim", "kl_per_dim_ppca"):
        sub = rows[rows["metric"] == metric]
        assert len(sub) == TINY.n_seeds * len(TINY.collapse_eigenvalues)
        assert np.isfinite(sub["value"]).all()
    # The closed-form optimum on the seed's own sample, scored on held-out points, is the
    # prediction up to the sampling error of the eigenvalues (n_train points: relative
    # sd sqrt(2 / n) of each, so 1/2 log moves by ~ sqrt(1 / (2 n)) = 0.044 at n = 256)
    # plus the held-out mean's standard error; Z of each.
    ppca = rows[rows["metric"] == "kl_per_dim_ppca"]
    for _, row in ppca.iterrows():
        tolerance = Z * (math.sqrt(1 / (2 * config.n_train)) + row["error"])
        assert abs(row["value"] - closed[int(row["dim"])]) <= tolerance, row


def test_bad_input_is_refused_with_the_field_and_value():
    with pytest.raises(ValueError, match="latent_dim must be <= 2.*got latent dimension 3"):
        study.Config(latent_dim=3)
    with pytest.raises(ValueError, match="codebook_sizes must be >= 1, got 0"):
        study.Config(codebook_sizes=(0, 4))
    with pytest.raises(ValueError, match="noise_variance must be a finite number > 0, got 0.0"):
        study.closed_form_kl_per_dim([1.0], 0.0)
    with pytest.raises(ValueError, match="eigenvalues must be finite and > 0"):
        study.closed_form_kl_per_dim([1.0, -1.0], 1.0)
