"""studies.kit.config: field checks from annotations and bounds, canonical JSON, hash."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from studies import kit
from studies.kit.config import FLOAT32_MAX, INT32_MAX


@dataclasses.dataclass(frozen=True)
class Component:
    depth: int = 2


@dataclasses.dataclass(frozen=True)
class Config:
    sizes: tuple[int, ...] = kit.config_field((2, 3), "sizes", low=1, high=10)
    steps: float = kit.config_field(0.1, "step sizes", low=0.0, open_low=True)
    rates: tuple[float, ...] = kit.config_field((0.1, 0.2), "rates", low=0.0)
    count: int = kit.config_field(5, "a count")
    tolerance: float = kit.config_field(1e-3, "float64-only", float64=True)
    name: str = kit.config_field("a", "a name")
    flag: bool = kit.config_field(True, "a flag")
    component: Component = kit.config_field(Component(), "a component")
    maybe: int | None = kit.config_field(None, "optional")

    def __post_init__(self):
        kit.check_fields(self)


@pytest.mark.parametrize(
    "change, error, message",
    [
        ({"sizes": (0, 2)}, ValueError, "sizes must be >= 1, got 0"),
        ({"sizes": (2, 11)}, ValueError, "sizes must be <= 10, got 11"),
        ({"sizes": ()}, ValueError, "sizes must not be empty"),
        ({"sizes": (2, 2)}, ValueError, "sizes must not repeat values, got (2, 2)"),
        ({"sizes": [2, 3]}, TypeError, "sizes must be a tuple"),
        ({"rates": (0.1, 0.1)}, ValueError, "rates must not repeat values"),
        ({"steps": 0.0}, ValueError, "steps must be > 0.0, got 0.0"),
        ({"steps": float("nan")}, ValueError, "steps must be finite"),
        ({"steps": 1e300}, ValueError, "steps must be representable in float32"),
        ({"count": 2**31}, ValueError, f"count must be <= {INT32_MAX}"),
        ({"count": 99999999999999999999}, ValueError, "count must be <="),
        ({"count": -1}, ValueError, "count must be >= 0, got -1"),
        ({"count": 2.0}, TypeError, "count must be an integer"),
        ({"count": True}, TypeError, "count must be an integer"),
        ({"flag": 1}, TypeError, "flag must be true or false"),
        ({"component": "deep"}, TypeError, "component must be a Component"),
        ({"maybe": 1.5}, TypeError, "maybe must be an integer"),
    ],
)
def test_bad_fields_are_refused_naming_the_field_and_value(change, error, message):
    with pytest.raises(error) as info:
        Config(**change)
    assert message in str(info.value)


def test_good_fields_pass_including_float64_only_magnitudes():
    Config(tolerance=1e300, maybe=3, steps=FLOAT32_MAX)


def test_config_to_dict_recurses_and_the_hash_is_stable_and_discriminating():
    as_dict = kit.config_to_dict(Config())
    assert as_dict["component"] == {"type": "Component", "depth": 2}
    assert as_dict["sizes"] == [2, 3]
    assert kit.config_hash(Config()) == kit.config_hash(Config())
    assert kit.config_hash(Config()) == kit.config_hash(as_dict)  # a saved config.json hashes the same
    assert kit.config_hash(Config()) != kit.config_hash(Config(count=6))
    with pytest.raises(TypeError, match=r"config\.x"):
        kit.config_to_dict(dataclasses.make_dataclass("C", [("x", object)])(np.zeros(3)))


@dataclasses.dataclass(frozen=True)
class Adam:
    learning_rate: float = 1e-3
    batch_size: int = 32

    def __post_init__(self):
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")


@dataclasses.dataclass(frozen=True)
class Flat:
    learning_rate: float = 0.5
    batch_size: int = 8
    lr_other: float = 0.25


def test_component_from_copies_same_named_fields_and_renamed_ones():
    assert kit.component_from(Adam, Flat()) == Adam(learning_rate=0.5, batch_size=8)
    assert kit.component_from(Adam, Flat(), learning_rate="lr_other") == Adam(learning_rate=0.25, batch_size=8)
    with pytest.raises(ValueError, match="learning_rate must be > 0"):  # the component's own checks run
        kit.component_from(Adam, Flat(learning_rate=-1.0))


@pytest.mark.parametrize(
    "component, config, renamed, message",
    [
        (Adam, Component(), {}, "Component has no field learning_rate, batch_size to build Adam from"),
        (Adam, Flat(), {"learning_rate": "lr_missing"}, "Flat has no field lr_missing (for learning_rate) to build Adam"),
        (Adam, Flat(), {"momentum": "lr_other"}, "renamed names ['momentum'], which are not fields of Adam"),
        (dict, Flat(), {}, "component must be a dataclass class"),
        (Adam, {"learning_rate": 1.0}, {}, "config must be a dataclass instance, got dict"),
    ],
)
def test_component_from_names_what_is_missing(component, config, renamed, message):
    with pytest.raises(TypeError) as error:
        kit.component_from(component, config, **renamed)
    assert message in str(error.value)
