"""Component objects in a Config: check_fields looks inside them, --KEY k=v,... changes the preset's."""

from __future__ import annotations

import dataclasses

import pytest

from studies import kit


@dataclasses.dataclass(frozen=True)
class Optimiser:
    learning_rate: float = 1e-3
    clip_norm: float | None = None


@dataclasses.dataclass(frozen=True)
class Training:
    optimiser: Optimiser = Optimiser()
    steps: int = 100
    warm: bool = False

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")


OVERRIDES = kit.Overrides(keys={"lr": "optimiser.learning_rate", "clip": "optimiser.clip_norm", "steps": "steps",
                                "warm": "warm"})


@dataclasses.dataclass(frozen=True)
class Study:
    training: Training = kit.config_field(Training(), "training", parse=OVERRIDES, within={"steps": (1, 1000)})
    ladder: tuple[Optimiser, ...] = kit.config_field(
        (Optimiser(), Optimiser(0.1)), "optimisers swept",
        parse=lambda text: tuple(Optimiser(float(rate)) for rate in text.split(",")),
        show=lambda ladder: ",".join(f"{o.learning_rate:g}" for o in ladder))

    def __post_init__(self):
        kit.check_fields(self)


PRESETS = {"quick": Study(), "long": Study(training=Training(Optimiser(0.5, clip_norm=1.0), steps=900))}


def parse(argv):
    return kit.parse_config(Study, PRESETS, argv, default_preset="quick", study_name="toy").config


@pytest.mark.parametrize(
    "change, message",
    [
        # Inside a component: every float finite and in float32, every int in int32, the
        # field's within= bounds; the error names the dotted path.
        ({"training": Training(Optimiser(1e300))}, r"training\.optimiser\.learning_rate must be representable in float32"),
        ({"training": Training(Optimiser(float("nan")))}, r"training\.optimiser\.learning_rate must be finite"),
        ({"training": Training(steps=2**40)}, r"training\.steps must fit an int32"),
        ({"training": Training(steps=1001)}, r"training\.steps must be in \[1, 1000\], got 1001"),
        ({"ladder": (Optimiser(), Optimiser(float("inf")))}, r"ladder\[1\]\.learning_rate must be finite"),
    ],
)
def test_check_fields_looks_inside_components(change, message):
    with pytest.raises(ValueError, match=message):
        Study(**change)


def test_overrides_change_only_the_given_keys_of_the_chosen_preset():
    assert parse(["--training", "lr=0.01"]).training == Training(Optimiser(0.01), steps=100)
    # Under --preset long the untouched keys keep the long preset's values.
    assert parse(["--preset", "long", "--training", "steps=10,warm=yes"]).training == Training(
        Optimiser(0.5, clip_norm=1.0), steps=10, warm=True)
    assert parse(["--preset", "long", "--training", "clip=none"]).training.optimiser.clip_norm is None


@pytest.mark.parametrize(
    "value, message",
    [
        ("speed=3", "KEY in ['lr', 'clip', 'steps', 'warm']"),
        ("steps=1.5", "steps: expected an integer"),
        ("steps=3,steps=4", "given twice"),
        ("steps=0", "steps must be >= 1, got 0"),  # the component's own check
        ("steps=5000", "training.steps must be in [1, 1000], got 5000"),  # the field's within=
    ],
)
def test_bad_overrides_exit_2_naming_the_key(value, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse(["--training", value])
    assert exit_info.value.code == 2
    assert message in " ".join(capsys.readouterr().err.replace("│", " ").split())


def test_help_writes_components_briefly_with_the_chosen_presets_values(capsys):
    with pytest.raises(SystemExit):
        parse(["--preset", "long", "--help"])
    text = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert "lr=0.5,clip=1.0,steps=900,warm=false" in text
    assert "0.001,0.1" in text and "Optimiser(" not in text
    assert "steps in [1, 1000]" in text


# --------------------------------------------------------------------------------------
# The one EMA spelling of the diffusion studies' --training ema=...


@pytest.mark.parametrize("text", ["none", " None ", "NONE", "0", "0.0", "0e0"])
def test_parse_ema_reads_no_average_as_none(text):
    assert kit.parse_ema(text) is None


@pytest.mark.parametrize("text, decay", [("0.999", 0.999), (" 0.99 ", 0.99), ("0.9_999", 0.9999), ("5e-1", 0.5)])
def test_parse_ema_reads_a_decay(text, decay):
    from models.training import EMA

    assert kit.parse_ema(text) == EMA(decay)


@pytest.mark.parametrize("text", ["1", "1.5", "-0.1", "nan", "inf", "fast", ""])
def test_parse_ema_names_the_argument_and_the_value(text):
    with pytest.raises(ValueError, match=rf"ema must be 'none' or 0 \(no average\), or a decay in \(0, 1\), got {text!r}"):
        kit.parse_ema(text)


@pytest.mark.parametrize("decay", [0.5, 0.999, 0.9999999, 1 - 2**-30])
def test_ema_text_reads_back_exactly(decay):
    from models.training import EMA

    assert kit.parse_ema(kit.ema_text(EMA(decay))) == EMA(decay)
    assert kit.parse_ema(kit.ema_text(None)) is None


def test_both_diffusion_studies_spell_ema_through_the_kit():
    from studies import langevin_mixing, reverse_diffusion

    for study in (langevin_mixing, reverse_diffusion):
        assert study.TRAINING_OVERRIDES.convert["ema"] is kit.parse_ema
        assert study.TRAINING_OVERRIDES.spell["ema"] is kit.ema_text
        assert study.parse_training("ema=0").ema is None
        assert study.parse_training("ema=none").ema is None
        assert study.parse_training("ema=0.99").ema.decay == 0.99
