"""One protocol, every study: --help, bad input, smoke run, resume after interruption,
sweep-composition independence, figures redrawn from cells only.

Each study contributes a case: a tiny config, the same config with part of its sweep
removed (every remaining cell must be bit-identical: a cell's numbers depend only on its
own coordinates), command lines that must be refused before compute, and its figure
module."""

from __future__ import annotations

import dataclasses
import importlib
import json

import pandas as pd
import pytest

from studies import kit
from studies.kit.progress import Progress


@dataclasses.dataclass(frozen=True)
class Case:
    module: str
    tiny: object
    subsweep: object
    bad_argv: tuple[tuple[tuple[str, ...], str], ...]


def _wgan() -> Case:
    study = importlib.import_module("studies.wgan_capacity")
    tiny = dataclasses.replace(study.PRESETS["smoke"], n_modes=(2, 4), critic_depths=(2, 3), n_steps=3, eval_every=3,
                               n_train=128, eval_points=64, lipschitz_probes=16, draw_figures=True)
    return Case(
        module="wgan_capacity",
        tiny=tiny,
        subsweep=dataclasses.replace(tiny, n_modes=(4,), critic_depths=(3,)),
        bad_argv=(
            (("--preset", "nope"), "nope"),
            (("--generator-depths", "0,2"), "generator_depths must be >= 1, got 0"),
            (("--critic-depths", "1000000"), "critic_depths must be <= 32"),
            (("--n-modes", "3"), "K=3"),
            (("--eval-repeats", "1"), "eval_repeats must be >= 2, got 1"),
            (("--eval-points", "100000000"), "eval_points must be <= 20000"),
            (("--generator-width", "100000000"), "generator_width must be <= 1024"),
            (("--lr-critic", "-1"), "lr_critic must be > 0.0, got -1.0"),
            (("--lr-critic", "1e300"), "representable in float32"),
            (("--seed", "99999999999999999999"), "seed must be <="),
            (("--n-steps", "3000000000"), "n_steps must be <= 10000000"),
            (("--critic", "magic"), "magic"),
        ),
    )


def _langevin() -> Case:
    study = importlib.import_module("studies.langevin_mixing")
    tiny = dataclasses.replace(study.PRESETS["smoke"], n_chains=24, sweep_n_chains=None, sweep_steps_per_level=None,
                               sweep_annealed_step_sizes=None, sweep_langevin_steps=None, draw_figures=True)
    return Case(
        module="langevin_mixing",
        tiny=tiny,
        # Drop a step size, the L sweep and the learned score: the remaining cells are unchanged.
        subsweep=dataclasses.replace(tiny, learned=False, sweep_langevin_step_sizes=(0.3,), sweep_n_levels=None),
        bad_argv=(
            (("--preset", "nope"), "nope"),
            (("--sweep-langevin-step-sizes", "0.1,0.1"), "sweep_langevin_step_sizes must not repeat values"),
            (("--sweep-initial-laws", "target;target"), "initial laws must not repeat"),
            (("--training", "lr=1e300"), "representable in float32"),
            (("--training", "lr=1e6,steps=10001"), "record_every must divide steps=10001"),
            (("--training", "speed=3"), "speed=3"),
            (("--n-chains", "0"), "n_chains must be >= 1, got 0"),
            (("--n-seeds", "1000"), "n_seeds must be <= 64"),
            (("--langevin-step-size", "4.5"), "makes plain Langevin diverge"),
            (("--annealed-step-size", "nan"), "annealed_step_size must be finite"),
            (("--annealed-step-size", "1e300"), "representable in float32"),
            (("--schedule", "cosine:1,2,3"), "cosine:1,2,3"),
            (("--schedule", "geometric:1e30,1,10"), "schedule sigma_max must be in [0.0001, 10000]"),
            (("--record-every", "30"), "record_every must divide langevin_steps=1000, got 30"),
            (("--network", "100000,2,5"), "network width must be an integer <= 4096"),
            (("--seed", "99999999999999999999"), "seed must be <="),
            (("--preset", "ncsn-paper", "--annealed-step-size", "0.1"), "makes annealed Langevin diverge at level 1"),
        ),
    )


def _reverse_diffusion() -> Case:
    study = importlib.import_module("studies.reverse_diffusion")
    tiny = dataclasses.replace(
        study.PRESETS["smoke"], samplers=study.parse_samplers("sde-em,ode-euler"), nfe_grid=(8,), n_samples=32,
        kl_samples=16, bound_samples=16, fisher_samples=64, snapshot_nfes=(8,), snapshot_points=8,
        training=study.parse_training("steps=40,record_every=20,batch_size=64"), draw_figures=True,
    )
    return Case(
        module="reverse_diffusion",
        tiny=tiny,
        subsweep=dataclasses.replace(tiny, samplers=study.parse_samplers("ode-euler")),
        bad_argv=(
            (("--preset", "nope"), "nope"),
            (("--fisher-times", "0.5,0.5"), "fisher_times must not repeat"),
            (("--fisher-times", "0.5,inf"), "fisher_times must be finite"),
            (("--nfe-grid", "10,5000"), "nfe_grid must be <= 4096"),
            (("--n-samples", "100000"), "n_samples must be <= 20000"),
            (("--samplers", "sde-em,rk4"), "rk4"),
            (("--grid-modes", "3"), "grid_modes must be one of"),
            (("--network", "100000,3"), "width must be in"),
            (("--training", "learning_rate=1e300"), "training.optimiser.learning_rate must be representable in float32"),
            (("--training", "steps=100,record_every=30"), "record_every must divide"),
            (("--seed", "99999999999"), "seed must be <="),
        ),
    )


def _gan_pathologies() -> Case:
    study = importlib.import_module("studies.gan_pathologies")
    # Three of the five experiments (each compiles its own programs); test_gan_pathologies
    # runs all five.
    tiny = dataclasses.replace(study.PRESETS["smoke"], experiments=("js", "modes", "disconnected"), js_steps=2,
                               js_thetas=(0.5,), mode_steps=2, eval_every=2, disconnected_steps=2, eval_points=32,
                               n_train=64, mode_objectives=(study.OBJECTIVES["non-saturating"],), draw_figures=True)
    return Case(
        module="gan_pathologies",
        tiny=tiny,
        subsweep=dataclasses.replace(tiny, experiments=("js", "modes")),
        bad_argv=(
            (("--preset", "nope"), "nope"),
            (("--mode-grids", "3"), "K=3"),
            (("--mode-objectives", "magic"), "magic"),
            (("--bound-widths", "7"), "bound_widths must be even"),
            (("--experiments", "bounds,nonsense"), "nonsense"),
            (("--n-seeds", "1"), "n_seeds must be >= 2, got 1"),
            (("--eval-every", "5000"), "eval_every must be <="),
            (("--lr-generator", "-1"), "lr_generator must be > 0.0, got -1.0"),
            (("--eval-points", "100000000"), "eval_points must be <= 20000"),
            (("--grid-spacing", "0.5"), "grid_spacing must exceed"),
            (("--js-thetas", "0.5,0.5"), "js_thetas must not repeat"),
        ),
    )


def _elbo_gap() -> Case:
    study = importlib.import_module("studies.elbo_gap")
    # The family sweep at k = 1 (one 2-D exact-evidence compilation costs ~40 s here).
    tiny = dataclasses.replace(study.PRESETS["smoke"], n_steps=5, families=(study.FactorisedGaussian(),),
                               family_latent_dim=1, betas=(1.0,), iwae_ks=(1,), draw_figures=True)
    return Case(
        module="elbo_gap",
        tiny=tiny,
        subsweep=dataclasses.replace(tiny, encoder_widths=(8,)),
        bad_argv=(
            (("--preset", "nope"), "nope"),
            (("--latent-dim", "3"), "latent_dim must be <= 2"),
            (("--family-latent-dim", "5"), "family_latent_dim must be <= 2"),
            (("--codebook-sizes", "0,4"), "codebook_sizes must be >= 1, got 0"),
            (("--families", "gaussian"), "gaussian"),
            (("--n-seeds", "1"), "n_seeds must be >= 2, got 1"),
            (("--collapse-noise-variances", "-1"), "collapse_noise_variances must be > 0.0"),
            (("--n-gap-points", "1000"), "n_gap_points and n_iwae_points must be <= n_kl_points=512"),
            (("--betas", "1e300"), "representable in float32"),
        ),
    )


def _error_decomposition() -> Case:
    study = importlib.import_module("studies.error_decomposition")
    # The smoke preset itself, so that test_error_decomposition.py reuses its compilations.
    tiny = dataclasses.replace(study.PRESETS["smoke"], draw_figures=True)
    return Case(
        module="error_decomposition",
        tiny=tiny,
        subsweep=dataclasses.replace(tiny, train_sizes=(32,)),
        bad_argv=(
            (("--preset", "nope"), "nope"),
            (("--train-sizes", "0,64"), "train_sizes must be >= 2, got 0"),
            (("--train-sizes", "-5"), "train_sizes must be >= 2, got -5"),
            (("--train-sizes", "inf"), "inf"),
            (("--generator-depths", "0"), "generator_depths must be >= 1, got 0"),
            (("--critic-depths", "2,2"), "critic_depths"),
            (("--eval-points", "-1"), "eval_points must be >= 2, got -1"),
            (("--batch-size", "-3"), "batch_size must be >= 2, got -3"),
            (("--n-modes", "3"), "K=3"),
            (("--critic-fit-steps", "5"), "critic_fit_steps must be even"),
            (("--oracle-loss", "magic"), "magic"),
        ),
    )


CASES = {"wgan_capacity": _wgan, "langevin_mixing": _langevin, "reverse_diffusion": _reverse_diffusion, "gan_pathologies": _gan_pathologies, "elbo_gap": _elbo_gap, "error_decomposition": _error_decomposition}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    return CASES[request.param]()


@pytest.fixture(scope="module")
def interrupted_then_resumed(case, tmp_path_factory):
    """A tiny run stopped (as by Ctrl-C) after its first cell, then resumed."""
    study = importlib.import_module(f"studies.{case.module}")
    run_dir = tmp_path_factory.mktemp(case.module) / "tiny"
    real_finish = Progress.finish_cell
    finished: list[str] = []

    def stop_after_first(self, cell_id, wall_time_s, **kwargs):
        finished.append(cell_id)
        real_finish(self, cell_id, wall_time_s, **kwargs)
        if len(finished) == 1:
            raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Progress, "finish_cell", stop_after_first)
        with pytest.raises(KeyboardInterrupt):
            study.run(case.tiny, kit.ResultStore(run_dir, case.tiny, study=case.module))
    first_cell = finished[0]
    first_bytes = (run_dir / "cells" / f"{first_cell}.csv").read_bytes()
    metadata = json.loads((run_dir / "metadata.json").read_text())
    finished.clear()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Progress, "finish_cell", lambda self, cell_id, *a, **k: (finished.append(cell_id), real_finish(self, cell_id, *a, **k)))
        results = study.run(case.tiny, kit.ResultStore(run_dir, case.tiny, study=case.module))
    return run_dir, results, first_cell, first_bytes, metadata, list(finished)


def test_help_lists_every_field(case, capsys):
    study = importlib.import_module(f"studies.{case.module}")
    with pytest.raises(SystemExit) as info:
        study.main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for field in dataclasses.fields(study.Config):
        assert "--" + field.name.replace("_", "-") in text, field.name


def test_bad_input_is_refused_before_any_compute(case, monkeypatch, capsys, tmp_path):
    study = importlib.import_module(f"studies.{case.module}")
    monkeypatch.setattr(study, "run", lambda *a, **k: pytest.fail("compute started"))
    for argv, message in case.bad_argv:
        with pytest.raises(SystemExit) as info:
            study.main([*argv, "--results-dir", str(tmp_path)])
        assert info.value.code == 2, argv
        captured = capsys.readouterr()
        assert message in " ".join((captured.err + captured.out).split()), (argv, captured.err)
    assert not any(tmp_path.iterdir())  # nothing written either


def test_an_interrupted_run_resumes_without_redoing_finished_cells(case, interrupted_then_resumed):
    run_dir, results, first_cell, first_bytes, metadata, rerun = interrupted_then_resumed
    assert metadata["sessions"][-1]["status"] == "interrupted"
    assert first_cell not in rerun and rerun  # only the cells left ran
    assert (run_dir / "cells" / f"{first_cell}.csv").read_bytes() == first_bytes
    final = json.loads((run_dir / "metadata.json").read_text())
    assert [s["status"] for s in final["sessions"]] == ["interrupted", "complete"]
    assert len(results.table) == len(pd.read_csv(run_dir / "results.csv"))


def test_removing_part_of_the_sweep_leaves_every_remaining_cell_bit_identical(case, interrupted_then_resumed, tmp_path):
    study = importlib.import_module(f"studies.{case.module}")
    full_dir = interrupted_then_resumed[0]
    sub_dir = tmp_path / "sub"
    study.run(dataclasses.replace(case.subsweep, **({"draw_figures": False} if hasattr(case.subsweep, "draw_figures") else {})),
              kit.ResultStore(sub_dir, case.subsweep, study=case.module))
    cells = sorted(p.name for p in (sub_dir / "cells").glob("*.csv"))
    assert cells and len(cells) < len(list((full_dir / "cells").glob("*.csv")))
    for name in cells:
        assert (sub_dir / "cells" / name).read_bytes() == (full_dir / "cells" / name).read_bytes(), name


def test_figures_are_redrawn_from_cells_alone(case, interrupted_then_resumed):
    figures = importlib.import_module(f"figures.{case.module}")
    run_dir = interrupted_then_resumed[0]
    (run_dir / "results.csv").unlink()
    paths = figures.draw(run_dir)
    assert paths and all(p.exists() and p.stat().st_size > 1000 for p in paths)


def test_figures_refuse_another_studys_run(case, tmp_path):
    figures = importlib.import_module(f"figures.{case.module}")
    other = tmp_path / "other"
    @dataclasses.dataclass(frozen=True)
    class Other:
        n: int = 1
    store = kit.ResultStore(other, Other(), study="another_study")
    store.save_cell("c", [{"metric": "m", "value": 1.0}], wall_time_s=0.0)
    store.close("complete")
    with pytest.raises(kit.WrongStudyError, match="another_study"):
        figures.draw(other)
