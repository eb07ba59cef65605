"""Tests for studies/pipeline.py: config JSON, command line, results store, resuming."""

import dataclasses
import io
import json
import re
from typing import Literal

import equinox as eqx
import numpy as np
import pandas as pd
import pytest

from studies.pipeline import (
    ConfigMismatchError,
    Invocation,
    Progress,
    ResultStore,
    config_hash,
    config_to_dict,
    format_duration,
    parse_config,
    rows_to_frame,
    run_cells,
    validate_cell_id,
)


# A miniature study: component objects (a frozen dataclass and an Equinox Module),
# tuples, scalars, and a field parsed from a name at the command-line edge.
@dataclasses.dataclass(frozen=True)
class Bjorck:
    depth: int = 5
    width: int = 30


class Spectral(eqx.Module):
    depth: int = 3
    scale: float = 1.0
    widths: tuple[int, ...] = (8, 8)


@dataclasses.dataclass(frozen=True)
class Inner:
    critic: Bjorck = Bjorck()


CRITICS = {"bjorck": Bjorck(depth=5, width=30), "spectral": Spectral(depth=2)}


def _parse_beta(text):
    if not text.startswith("beta:"):
        raise ValueError("expected beta:<float>")
    return ("beta", float(text[5:]))


@dataclasses.dataclass(frozen=True)
class Config:
    n_steps: int = dataclasses.field(default=100, metadata={"help": "training steps per seed"})
    learning_rate: float = dataclasses.field(default=1e-3, metadata={"help": "Adam step size (100% safe)"})
    generator_depths: tuple[int, ...] = dataclasses.field(
        default=(2, 3), metadata={"help": "generator depths swept"}
    )
    noise_scales: tuple[float, ...] = dataclasses.field(
        default=(0.1,), metadata={"help": "noise scales swept"}
    )
    use_ema: bool = dataclasses.field(default=False, metadata={"help": "average the weights"})
    name: str = dataclasses.field(default="base", metadata={"help": "a label"})
    solver: Literal["euler", "heun"] = dataclasses.field(default="euler", metadata={"help": "integrator"})
    max_seeds: int | None = dataclasses.field(default=None, metadata={"help": "cap on seeds"})
    critic: Bjorck | Spectral = dataclasses.field(
        default=Bjorck(), metadata={"help": "critic architecture", "parse": CRITICS}
    )
    schedule: tuple = dataclasses.field(
        default=("beta", 1.0), metadata={"help": "noise schedule", "parse": _parse_beta}
    )

    def __post_init__(self):
        if self.n_steps <= 0:
            raise ValueError(f"n_steps must be positive, got {self.n_steps}")


PRESETS = {
    "quick": Config(),
    "paper": Config(n_steps=5000, generator_depths=(2, 3, 5, 7), critic=Bjorck(depth=7, width=60)),
}


def _parse(argv):
    return parse_config(Config, PRESETS, argv, default_preset="quick", study_name="toy")


# --- config <-> JSON ---------------------------------------------------------------------


def test_config_to_dict_recurses_into_components_and_lists_tuples():
    config = Config(critic=Spectral(depth=4, widths=(16, 32)), generator_depths=(2, 3, 5))
    as_dict = config_to_dict(config)
    assert as_dict["type"] == "Config"
    assert as_dict["generator_depths"] == [2, 3, 5]
    assert as_dict["critic"] == {"type": "Spectral", "depth": 4, "scale": 1.0, "widths": [16, 32]}
    assert as_dict["schedule"] == ["beta", 1.0]
    assert as_dict["max_seeds"] is None
    # JSON round trip gives back the same dict (lists stay lists, floats exact).
    assert json.loads(json.dumps(as_dict)) == as_dict
    nested = config_to_dict(Inner())
    assert nested == {"type": "Inner", "critic": {"type": "Bjorck", "depth": 5, "width": 30}}


def test_config_to_dict_converts_numpy_scalars_and_rejects_arrays():
    assert config_to_dict(Bjorck(depth=np.int64(3)))["depth"] == 3
    with pytest.raises(TypeError, match=r"config\.width"):
        config_to_dict(Bjorck(width=np.ones(3)))


def test_config_hash_is_stable_and_tells_configs_apart():
    assert config_hash(Config()) == config_hash(Config())
    assert re.fullmatch(r"[0-9a-f]{12}", config_hash(Config()))
    hashes = {
        config_hash(Config()),
        config_hash(Config(n_steps=101)),
        config_hash(Config(critic=Bjorck(depth=6))),
        config_hash(Config(critic=Spectral())),
        config_hash(Config(generator_depths=(3, 2))),
    }
    assert len(hashes) == 5


# --- command line --------------------------------------------------------------------------


def test_parse_config_defaults_to_the_default_preset_and_run_dir():
    invocation = _parse([])
    assert isinstance(invocation, Invocation)
    assert invocation.config == PRESETS["quick"]
    assert invocation.preset == "quick"
    assert invocation.run_name == "quick"
    assert str(invocation.run_dir) == "results/toy/quick"


def test_parse_config_selects_a_preset_and_overrides_its_fields(tmp_path):
    invocation = _parse(
        [
            "--preset", "paper",
            "--n-steps", "7",
            "--learning-rate", "3e-4",
            "--generator-depths", "2, 3,5",
            "--noise-scales", "0.5,1",
            "--use-ema", "true",
            "--solver", "heun",
            "--max-seeds", "4",
            "--critic", "spectral",
            "--schedule", "beta:2.5",
            "--run-name", "try-2",
            "--results-dir", str(tmp_path),
        ]
    )
    config = invocation.config
    assert (config.n_steps, config.learning_rate) == (7, 3e-4)
    assert config.generator_depths == (2, 3, 5)
    assert config.noise_scales == (0.5, 1.0) and isinstance(config.noise_scales[1], float)
    assert config.use_ema is True
    assert config.solver == "heun"
    assert config.max_seeds == 4
    assert config.critic is CRITICS["spectral"]
    assert config.schedule == ("beta", 2.5)
    assert invocation.run_dir == tmp_path / "try-2"
    # Fields not given keep the preset's value, not the class default.
    assert _parse(["--preset", "paper"]).config.critic == Bjorck(depth=7, width=60)
    assert _parse(["--use-ema"]).config.use_ema is True
    assert _parse(["--use-ema", "no", "--max-seeds", "none"]).config.use_ema is False


def test_unknown_preset_exits_naming_it_and_the_choices(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _parse(["--preset", "huge"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "huge" in error and "quick" in error and "paper" in error


@pytest.mark.parametrize(
    "argv, field, value",
    [
        (["--n-steps", "ten"], "n_steps", "ten"),
        (["--n-steps", "1.5"], "n_steps", "1.5"),
        (["--learning-rate", "fast"], "learning_rate", "fast"),
        (["--generator-depths", "2,x"], "generator_depths", "2,x"),
        (["--use-ema", "maybe"], "use_ema", "maybe"),
        (["--critic", "mlp"], "critic", "mlp"),
        (["--schedule", "cosine"], "schedule", "cosine"),
        (["--solver", "rk4"], "solver", "rk4"),
        (["--run-name", "../escape"], "run-name", "../escape"),
    ],
)
def test_bad_value_exits_naming_the_field_and_value(capsys, argv, field, value):
    with pytest.raises(SystemExit):
        _parse(argv)
    error = capsys.readouterr().err
    assert field in error and repr(value) in error


def test_config_validation_errors_exit_cleanly(capsys):
    with pytest.raises(SystemExit):
        _parse(["--n-steps", "0"])
    assert "n_steps must be positive, got 0" in capsys.readouterr().err


def test_unknown_option_exits(capsys):
    with pytest.raises(SystemExit):
        _parse(["--n-step", "5"])  # no abbreviations either
    assert "--n-step" in capsys.readouterr().err


def test_help_lists_every_field_with_its_meaning_and_preset_default(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _parse(["--preset", "paper", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # undo argparse's line wrapping
    for field in dataclasses.fields(Config):
        assert "--" + field.name.replace("_", "-") in text
        assert field.metadata["help"] in text
    assert "(default: 5000)" in text  # the paper preset's value, not the class default
    assert "(default: 2,3,5,7)" in text
    assert "Bjorck(depth=7, width=60)" in text
    assert "{bjorck,spectral}" in text
    assert "--run-name" in text and "--results-dir" in text
    assert "paper: n_steps=5000" in text  # the presets epilog


def test_malformed_study_definitions_are_programming_errors():
    with pytest.raises(ValueError, match="default_preset"):
        parse_config(Config, PRESETS, [], default_preset="nope", study_name="toy")
    with pytest.raises(TypeError, match="preset 'bad'"):
        parse_config(Config, {"quick": Config(), "bad": Inner()}, [], default_preset="quick", study_name="toy")

    @dataclasses.dataclass(frozen=True)
    class Unparseable:
        critic: Bjorck = Bjorck()

    with pytest.raises(TypeError, match="'critic'.*parse"):
        parse_config(Unparseable, {"a": Unparseable()}, [], default_preset="a", study_name="toy")


# --- results store -------------------------------------------------------------------------


def _rows(k, n_seeds=2):
    return [{"K": k, "seed": s, "metric": "w1", "value": 0.1 * k + s} for s in range(n_seeds)]


def test_store_saves_cells_and_concatenates_them(tmp_path):
    store = ResultStore(tmp_path / "run", Config())
    assert json.loads((tmp_path / "run" / "config.json").read_text()) == json.loads(
        json.dumps(config_to_dict(Config()))
    )
    assert not store.is_done("K=1")
    store.save_cell("K=1", _rows(1), wall_time_s=1.5, extra={"note": "first"})
    store.save_cell("K=2", pd.DataFrame(_rows(2)), wall_time_s=2.5)
    assert store.is_done("K=1") and store.is_done("K=2") and not store.is_done("K=3")
    table = store.table(["K=2", "K=1"])
    assert list(table["K"]) == [2, 2, 1, 1]
    assert list(table.columns) == ["K", "seed", "metric", "value"]
    # Floats survive the CSV exactly.
    assert table["value"].tolist() == [0.2, 1.2, 0.1, 1.1]
    path = store.write_table()
    assert pd.read_csv(path).shape == (4, 4)
    # Only finished files, no temporary ones, are left in the run directory.
    files = sorted(p.relative_to(tmp_path / "run").as_posix() for p in (tmp_path / "run").rglob("*"))
    assert files == [
        "cells", "cells/K=1.csv", "cells/K=1.json", "cells/K=2.csv", "cells/K=2.json",
        "config.json", "results.csv",
    ]
    assert store.cell_records()["K=1"]["extra"] == {"note": "first"}


def test_store_rejects_unsafe_ids_empty_cells_and_array_values(tmp_path):
    store = ResultStore(tmp_path, Config())
    for bad in ["", "a/b", "..", ".hidden", "K 1", "K:1", "x" * 201]:
        with pytest.raises(ValueError, match="cell id"):
            store.is_done(bad)
    assert validate_cell_id("K=4_p=2.5_q-1") == "K=4_p=2.5_q-1"
    with pytest.raises(ValueError, match="no rows"):
        store.save_cell("K=1", [], wall_time_s=0.0)
    with pytest.raises(TypeError, match="'value'"):
        store.save_cell("K=1", [{"value": np.ones(3)}], wall_time_s=0.0)
    assert not store.is_done("K=1")


def test_rows_to_frame_turns_array_scalars_into_numbers():
    import jax.numpy as jnp

    frame = rows_to_frame([{"seed": np.int32(1), "value": jnp.asarray(0.5)}])
    assert frame["value"].dtype == np.float64 and frame["seed"].dtype == np.int64


def test_reopening_resumes_and_a_different_config_is_refused(tmp_path):
    store = ResultStore(tmp_path / "run", Config())
    store.save_cell("K=1", _rows(1), wall_time_s=1.0)
    again = ResultStore(tmp_path / "run", Config())
    assert again.is_done("K=1") and again.done_cells() == ["K=1"]
    with pytest.raises(ConfigMismatchError, match="--run-name") as error:
        ResultStore(tmp_path / "run", Config(critic=Bjorck(depth=9)))
    assert "critic.depth: saved 5, now 9" in str(error.value)
    # The refused open changed nothing.
    assert ResultStore(tmp_path / "run", Config()).done_cells() == ["K=1"]


def test_metadata_records_git_packages_devices_and_wall_times(tmp_path):
    store = ResultStore(tmp_path, Config())
    store.save_cell("K=1", _rows(1), wall_time_s=1.25)
    store.save_cell("K=2", _rows(2), wall_time_s=2.0)
    metadata = json.loads(store.write_metadata({"preset": "quick"}).read_text())
    assert set(metadata["git"]) == {"commit", "dirty", "changes"}
    assert metadata["packages"]["numpy"] == np.__version__
    assert metadata["packages"]["pandas"] == pd.__version__
    for name in ["jax", "jaxlib", "equinox", "optax", "diffrax", "pot", "scipy", "matplotlib", "seaborn"]:
        assert name in metadata["packages"]
    assert metadata["jax"]["devices"]  # at least the CPU
    assert metadata["cells"] == {"K=1": 1.25, "K=2": 2.0}
    assert metadata["total_cell_wall_time_s"] == pytest.approx(3.25)
    assert metadata["config_hash"] == config_hash(Config())
    assert metadata["extra"] == {"preset": "quick"}
    assert metadata["python"] and metadata["platform"] and metadata["started_at"] and metadata["ended_at"]


# --- progress and the driver --------------------------------------------------------------


def test_progress_prints_a_line_per_cell_with_an_eta():
    stream = io.StringIO()
    progress = Progress(4, already_done=1, stream=stream)
    progress.start_cell("K=2")
    progress.update(step=10, total_steps=100, loss=0.123456)
    progress.finish_cell("K=2", 12.3)
    progress.finish_cell("K=3", 7.7)
    progress.finish_cell("K=4", 10.0)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "  K=2 step 10/100 | loss=0.1235"
    assert lines[1] == "[2/4] K=2 done in 12.3s | ETA 24.6s"
    assert lines[2] == "[3/4] K=3 done in 7.7s | ETA 10.0s"
    assert lines[3] == "[4/4] K=4 done in 10.0s"
    assert [format_duration(s) for s in (5, 130, 3720)] == ["5.0s", "2m10s", "1h02m"]


def test_run_cells_saves_finished_cells_before_a_failure_and_resumes(tmp_path):
    calls = []

    def make_cell(k, fail):
        def cell():
            calls.append(k)
            if fail:
                raise RuntimeError(f"cell {k} failed")
            return _rows(k)

        return cell

    def cells(fail_at):
        return [(f"K={k}", make_cell(k, k == fail_at)) for k in range(1, 6)]

    store = ResultStore(tmp_path, Config())
    with pytest.raises(RuntimeError, match="cell 3 failed"):
        run_cells(store, cells(fail_at=3), progress=Progress(5, stream=io.StringIO()))
    assert calls == [1, 2, 3]
    assert store.done_cells() == ["K=1", "K=2"]
    metadata = json.loads((tmp_path / "metadata.json").read_text())
    assert metadata["extra"]["status"] == "interrupted"
    assert pd.read_csv(tmp_path / "results.csv").shape == (4, 4)

    calls.clear()
    stream = io.StringIO()
    table = run_cells(
        ResultStore(tmp_path, Config()),
        cells(fail_at=None),
        progress=Progress(5, 2, stream=stream),
        metadata={"preset": "quick"},
    )
    assert calls == [3, 4, 5]
    assert list(table["K"].unique()) == [1, 2, 3, 4, 5]
    assert "[5/5] K=5 done" in stream.getvalue()
    metadata = json.loads((tmp_path / "metadata.json").read_text())
    assert metadata["extra"] == {"status": "complete", "cells_total": 5, "cells_done": 5, "preset": "quick"}
    assert set(metadata["cells"]) == {f"K={k}" for k in range(1, 6)}


def test_run_cells_keyboard_interrupt_propagates_after_saving(tmp_path):
    def interrupted():
        raise KeyboardInterrupt

    store = ResultStore(tmp_path, Config())
    with pytest.raises(KeyboardInterrupt):
        run_cells(
            store,
            [("a", lambda: _rows(1)), ("b", interrupted)],
            progress=Progress(2, stream=io.StringIO()),
        )
    assert store.done_cells() == ["a"]
    assert not list(tmp_path.rglob(".*.tmp"))


def test_run_cells_validates_ids_before_running_and_works_without_a_store():
    calls = []
    with pytest.raises(ValueError, match="unique"):
        run_cells(None, [("a", lambda: calls.append(1)), ("a", lambda: calls.append(2))])
    with pytest.raises(ValueError, match="cell id"):
        run_cells(None, [("a", lambda: calls.append(1)), ("b/c", lambda: calls.append(2))])
    assert calls == []
    table = run_cells(
        None, [("K=1", lambda: _rows(1)), ("K=2", lambda: _rows(2))], progress=Progress(2, stream=io.StringIO())
    )
    assert list(table["K"]) == [1, 1, 2, 2]


def test_invocation_opens_its_store_recording_the_command_line(tmp_path, capsys):
    invocation = _parse(["--results-dir", str(tmp_path), "--n-steps", "5"])
    store = invocation.open_store()
    assert store.run_dir == tmp_path / "quick"
    metadata = json.loads(store.write_metadata().read_text())
    assert metadata["extra"]["preset"] == "quick"
    assert metadata["extra"]["argv"] == ["--results-dir", str(tmp_path), "--n-steps", "5"]
    # Same run name, other config: a clean exit naming the fix, not a traceback.
    with pytest.raises(SystemExit) as exit_info:
        _parse(["--results-dir", str(tmp_path), "--n-steps", "6"]).open_store()
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "--run-name" in error and "n_steps: saved 5, now 6" in error
