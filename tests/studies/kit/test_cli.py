"""studies.kit.cli: the tyro command line keeps the studies' surface and checks before compute."""

from __future__ import annotations

import dataclasses
import pathlib

import pytest

from studies import kit


@dataclasses.dataclass(frozen=True)
class Bjorck:
    depth: int = 1


@dataclasses.dataclass(frozen=True)
class Spectral:
    depth: int = 1


@dataclasses.dataclass(frozen=True)
class Config:
    """A toy study for the command line."""

    sizes: tuple[int, ...] = kit.config_field((2, 3), "K: sizes to sweep", low=1, high=9)
    n_steps: int = kit.config_field(100, "steps", low=1, high=10**7)
    rate: float = kit.config_field(0.1, "learning rate", low=0.0, open_low=True)
    critic: object = kit.config_field(Bjorck(), "critic family", parse={"bjorck": Bjorck(), "spectral-norm": Spectral()})
    draw: bool = kit.config_field(True, "draw figures")
    limit: int | None = kit.config_field(None, "optional limit")

    def __post_init__(self):
        kit.check_fields(self)
        if self.n_steps == 13:
            raise ValueError("n_steps must not be 13, got 13")


PRESETS = {"quick": Config(), "paper": Config(sizes=(2, 3, 5), n_steps=2000)}


def parse(argv):
    return kit.parse_config(Config, PRESETS, argv, default_preset="quick", study_name="toy")


def test_defaults_presets_overrides_and_run_dir(tmp_path):
    default = parse([])
    assert default.config == Config() and default.run_dir == pathlib.Path("results/toy/quick")
    chosen = parse(["--preset", "paper", "--n-steps", "7", "--sizes", "4,5", "--critic", "spectral-norm",
                    "--draw", "no", "--limit", "none", "--run-name", "mine", "--results-dir", str(tmp_path)])
    assert chosen.config == Config(sizes=(4, 5), n_steps=7, critic=Spectral(), draw=False)
    assert chosen.preset == "paper" and chosen.run_dir == tmp_path / "mine"
    assert parse(["--limit", "5"]).config.limit == 5
    assert parse(["--devices", "0"]).runtime == kit.Runtime(devices=0)
    assert parse(["--workers", "2"]).runtime == kit.Runtime(workers=2)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--preset", "nope"], "nope"),
        (["--n-steps", "0"], "n_steps must be >= 1, got 0"),
        (["--n-steps", "3000000000"], "n_steps must be <= 10000000"),
        (["--n-steps", "99999999999999999999"], "n_steps must be <= 10000000"),
        (["--n-steps", "1.5"], "expected an integer"),
        (["--rate", "1e300"], "representable in float32"),
        (["--rate", "nan"], "rate must be finite"),
        (["--sizes", "2,2"], "must not repeat values"),
        (["--sizes", "2,,3"], "comma-separated"),
        (["--critic", "magic"], "magic"),
        (["--n-steps", "13"], "n_steps must not be 13"),
        (["--run-name", "../escape"], "run name"),
        (["--unknown", "1"], "--unknown"),
        (["--workers", "0"], "in [1, 64], got 0"),
    ],
)
def test_bad_input_exits_with_status_2_naming_the_option_and_value(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        parse(argv)
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert message in " ".join((captured.err + captured.out).split())


def test_help_lists_every_field_with_meaning_bounds_and_the_chosen_presets_default(capsys):
    with pytest.raises(SystemExit) as info:
        parse(["--preset", "paper", "--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for option in ("--sizes", "--n-steps", "--rate", "--critic", "--draw", "--limit", "--preset", "--run-name",
                   "--results-dir", "--devices", "--workers"):
        assert option in text
    assert "K: sizes to sweep [1, 9] (default: 2,3,5)" in text
    assert "(default: 2000)" in text and "{bjorck,spectral-norm}" in text
    assert "paper: sizes=2,3,5, n_steps=2000" in text


def test_malformed_study_definitions_are_programming_errors():
    with pytest.raises(ValueError, match="default_preset"):
        kit.parse_config(Config, PRESETS, [], default_preset="none", study_name="toy")
    with pytest.raises(TypeError, match="preset"):
        kit.parse_config(Config, {"quick": Bjorck()}, [], default_preset="quick", study_name="toy")


def test_open_store_turns_user_mistakes_into_exit_2(tmp_path, capsys):
    first = parse(["--results-dir", str(tmp_path)]).open_store()
    with pytest.raises(SystemExit) as info:
        parse(["--results-dir", str(tmp_path)]).open_store()
    assert info.value.code == 2 and "another process" in capsys.readouterr().err
    first.close("complete")
    with pytest.raises(SystemExit):
        parse(["--results-dir", str(tmp_path), "--n-steps", "5"]).open_store()
    assert "different config" in capsys.readouterr().err
