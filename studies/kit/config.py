"""Study configs: fields with their meaning and bounds, canonical JSON, a stable hash.

A study's ``Config`` is a frozen dataclass whose fields are declared with
:func:`config_field` (default, one-line meaning, optional bounds and command-line
parser). :func:`check_fields` checks every field against its annotated type and bounds
(the study calls it first thing in ``__post_init__``), so bad input fails before any
compute with an error that names the field and the value. Every integer is bounded by
what an int32 holds unless the field says less, every float must be finite and, unless
the field is declared ``float64=True``, representable in float32 (training runs in
float32: 1e300 is finite in float64 and inf in float32). Tuples must be non-empty and
free of repeats.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import numbers
import typing
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "INT32_MAX",
    "FLOAT32_MAX",
    "TRAINING_LIMITS",
    "check_fields",
    "component_from",
    "config_field",
    "config_hash",
    "config_to_dict",
    "field_bounds_text",
    "within_text",
]

INT32_MAX = 2**31 - 1
"""Largest count a field may hold by default: step counters and seeds are int32 in JAX."""

FLOAT32_MAX = float(np.finfo(np.float32).max)
"""Largest magnitude a float field may hold unless declared float64 (training is float32)."""


TRAINING_LIMITS = {"steps": (1, 10**7), "batch_size": (1, 65536), "record_every": (1, 10**7)}
"""``within=`` bounds of a ``models.training.AbstractTraining`` field: 10^7 steps are hours
on 2 CPU cores (and step counters are int32); a batch of 65,536 points through a
4096-wide MLP holds 1 GiB of activations."""


def config_field(
    default: Any,
    help_text: str,
    *,
    low: float | None = None,
    high: float | None = None,
    open_low: bool = False,
    parse: Any = None,
    float64: bool = False,
    distinct: bool = True,
    within: Mapping[str, tuple[float | None, float | None]] | None = None,
    show: Any = None,
) -> Any:
    """A study ``Config`` field with its meaning and bounds (shown by ``--help``).

    Args:
        default: the default value (frozen configs hold immutable values).
        help_text: what the field means, in one line.
        low, high: inclusive bounds on the value (on each element of a tuple);
            ``open_low=True`` makes the lower bound strict (``> low``). Integers default
            to ``[0, INT32_MAX]``.
        parse: how the command line turns text into a value: a mapping from names to
            values (its keys become the choices) or a callable ``str -> value``.
        float64: a float field used only in float64 code (bounds float64's range
            instead of float32's).
        distinct: whether a tuple field must not repeat values (default True).
        within: inclusive bounds on numbers inside a component object, by dotted path
            (``{"steps": (1, 10**7), "optimiser.learning_rate": (None, 1.0)}``; None: no
            bound on that side); checked by :func:`check_fields` with the component's
            other numbers, and shown by ``--help``.
        show: how ``--help`` writes a value of this field (``value -> str``), for a
            component whose repr is long; by default names from ``parse`` or the repr.
    """
    metadata = {
        "help": help_text,
        "low": low,
        "high": high,
        "open_low": open_low,
        "parse": parse,
        "float64": float64,
        "distinct": distinct,
        "within": dict(within or {}),
        "show": show,
    }
    return dataclasses.field(default=default, metadata=metadata)


def field_bounds_text(field: dataclasses.Field, annotation: Any) -> str:
    """The bounds of a field as shown in ``--help``, e.g. ``[1, 10000000]``; '' for none."""
    meta = field.metadata
    base = _strip_optional(annotation)
    element = _tuple_element(base)
    kind = element if element is not None else base
    low, high = meta.get("low"), meta.get("high")
    if kind is int:
        low = 0 if low is None else low
        high = INT32_MAX if high is None else high
    elif kind is not float:
        return ""
    if low is None and high is None:
        return ""
    return _interval_text(low, high, open_low=meta.get("open_low", False))


def _interval_text(low: float | None, high: float | None, *, open_low: bool = False) -> str:
    """``[low, high]`` (``(low, high]`` when open_low), -inf or inf for a missing side."""
    return f"{'(' if open_low else '['}{_short(low) if low is not None else '-inf'}, {_short(high) if high is not None else 'inf'}]"


def _short(value: float) -> str:
    if isinstance(value, int) and abs(value) >= 10**5:
        exponent = math.log10(abs(value))
        if exponent.is_integer():
            return f"1e{int(exponent)}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def check_fields(config: Any) -> None:
    """Check every field of a study config against its annotated type and bounds.

    Component objects (dataclasses and Equinox modules held by a field, alone or in a
    tuple) are checked too, recursively: every integer inside must fit an int32, every
    float must be finite and fit a float32 (unless the field is ``float64=True``), and
    the numbers named in the field's ``within=`` must lie in their bounds. Errors name
    the path, e.g. ``training.optimiser.learning_rate``. (A component's own rules, such
    as a positive learning rate, are its constructor's to check.)

    Args:
        config: a dataclass instance whose fields come from :func:`config_field`.

    Raises:
        TypeError: a value of the wrong type (a float for an int, a bool for an int, a
            list for a tuple), naming the field.
        ValueError: a value out of its bounds, non-finite, too large for its dtype, an
            empty tuple or one with repeats, naming the field and the value.
    """
    hints = typing.get_type_hints(type(config))
    for field in dataclasses.fields(config):
        if not field.init:
            continue
        value = getattr(config, field.name)
        _check_value(field, hints[field.name], value)
        _check_components(field, value)


def _check_components(field: dataclasses.Field, value: Any) -> None:
    """The numbers inside the component objects of one field (see :func:`check_fields`)."""
    float64 = field.metadata.get("float64", False)
    found: dict[str, Any] = {}

    def visit(item: Any, path: str) -> None:
        if _is_dataclass_instance(item):
            for sub in dataclasses.fields(item):
                visit(getattr(item, sub.name), f"{path}.{sub.name}")
        elif isinstance(item, (tuple, list)):
            for i, element in enumerate(item):
                visit(element, f"{path}[{i}]")
        elif isinstance(item, bool) or item is None or isinstance(item, str):
            return
        elif isinstance(item, numbers.Integral):
            found[path] = item
            if not -INT32_MAX - 1 <= item <= INT32_MAX:
                raise ValueError(f"{path} must fit an int32 (|value| <= {INT32_MAX}), got {item!r}")
        elif isinstance(item, numbers.Real):
            found[path] = item
            if not math.isfinite(item):
                raise ValueError(f"{path} must be finite, got {item!r}")
            if not float64 and abs(item) > FLOAT32_MAX:
                raise ValueError(f"{path} must be representable in float32 (|value| <= {FLOAT32_MAX:.3g}), got {item!r}")

    components = value if isinstance(value, tuple) else (value,)
    for i, component in enumerate(components):
        if _is_dataclass_instance(component):
            visit(component, field.name if not isinstance(value, tuple) else f"{field.name}[{i}]")
    if isinstance(value, tuple) or not _is_dataclass_instance(value):
        return
    for sub_path, (low, high) in field.metadata.get("within", {}).items():
        path = f"{field.name}.{sub_path}"
        if path not in found:
            continue  # e.g. an optional part (ema=None) that is absent
        number = found[path]
        if (low is not None and number < low) or (high is not None and number > high):
            raise ValueError(f"{path} must be in {_interval_text(low, high)}, got {number!r}")


def within_text(field: dataclasses.Field) -> str:
    """The ``within=`` bounds of a field as shown in ``--help``; '' for none."""
    return "; ".join(f"{path} in {_interval_text(low, high)}" for path, (low, high) in field.metadata.get("within", {}).items())


def _check_value(field: dataclasses.Field, annotation: Any, value: Any) -> None:
    name = field.name
    annotation, optional = _strip_optional(annotation), _is_optional(annotation)
    if value is None:
        if not optional:
            raise TypeError(f"{name} must not be None")
        return
    element = _tuple_element(annotation)
    if element is not None:
        if not isinstance(value, tuple):
            raise TypeError(f"{name} must be a tuple, got {type(value).__name__} {value!r}")
        if not value:
            raise ValueError(f"{name} must not be empty")
        for item in value:
            _check_scalar(field, element, item, f"{name}")
        if field.metadata.get("distinct", True) and len(set(value)) != len(value):
            raise ValueError(f"{name} must not repeat values, got {value!r}")
        return
    _check_scalar(field, annotation, value, name)


def _check_scalar(field: dataclasses.Field, kind: Any, value: Any, name: str) -> None:
    meta = field.metadata
    low, high = meta.get("low"), meta.get("high")
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
        low = 0 if low is None else low
        high = INT32_MAX if high is None else high
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value!r}")
        if not meta.get("float64") and abs(value) > FLOAT32_MAX:
            raise ValueError(
                f"{name} must be representable in float32 (|value| <= {FLOAT32_MAX:.3g}), got {value!r}"
            )
    elif kind is bool:
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be true or false, got {value!r}")
        return
    elif kind is str:
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a string, got {type(value).__name__} {value!r}")
        return
    else:
        if isinstance(kind, type) and not isinstance(value, kind):
            raise TypeError(f"{name} must be a {kind.__name__}, got {type(value).__name__} {value!r}")
        return
    if low is not None and (value <= low if meta.get("open_low") else value < low):
        relation = ">" if meta.get("open_low") else ">="
        raise ValueError(f"{name} must be {relation} {low}, got {value!r}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value!r}")


def _is_optional(annotation: Any) -> bool:
    return type(None) in typing.get_args(annotation) and _is_union(annotation)


def _is_union(annotation: Any) -> bool:
    import types

    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _strip_optional(annotation: Any) -> Any:
    if _is_union(annotation):
        arguments = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(arguments) == 1:
            return arguments[0]
    return annotation


def _tuple_element(annotation: Any) -> Any:
    """``T`` of ``tuple[T, ...]``; None for anything else."""
    if typing.get_origin(annotation) is tuple:
        arguments = typing.get_args(annotation)
        if len(arguments) == 2 and arguments[1] is Ellipsis:
            return arguments[0]
    return None


# --------------------------------------------------------------------------------------
# Components built from flat config fields


def component_from(component: type, config: Any, **renamed: str) -> Any:
    """A component built from its config's fields of the same names.

    ``component_from(GANTraining, config)`` is ``GANTraining(lr_generator=config.lr_generator,
    ...)`` over every field of ``GANTraining``: a config that keeps a component's settings as
    flat fields (one command-line option each) gathers them here, in one place, instead of
    copying them field by field.

    Args:
        component: a dataclass class (an Equinox Module is one).
        config: the config instance (a dataclass) whose fields hold the values.
        **renamed: component field -> the config field that holds it where the names differ,
            e.g. ``lr="lr_generator"``.

    Returns:
        ``component(**{name: getattr(config, renamed.get(name, name)) for each init field})``;
        the component's own checks run.

    Raises:
        TypeError: if `component` is not a dataclass class, a key of `renamed` is not one of
            its fields, or `config` has no field for one of them (naming each).
    """
    if not (isinstance(component, type) and dataclasses.is_dataclass(component)):
        raise TypeError(f"component must be a dataclass class (e.g. an Equinox Module), got {component!r}")
    if not _is_dataclass_instance(config):
        raise TypeError(f"config must be a dataclass instance, got {type(config).__name__}")
    names = [field.name for field in dataclasses.fields(component) if field.init]
    unknown = sorted(set(renamed) - set(names))
    if unknown:
        raise TypeError(f"renamed names {unknown}, which are not fields of {component.__name__} (its fields: {names})")
    available = {field.name for field in dataclasses.fields(config)}
    sources = {name: renamed.get(name, name) for name in names}
    missing = [source if source == name else f"{source} (for {name})"
               for name, source in sources.items() if source not in available]
    if missing:
        raise TypeError(f"{type(config).__name__} has no field {', '.join(missing)} to build {component.__name__} from; "
                        f"add the field or pass it renamed (component_from({component.__name__}, config, NAME='field'))")
    return component(**{name: getattr(config, source) for name, source in sources.items()})


# --------------------------------------------------------------------------------------
# Config <-> JSON


def config_to_dict(config: Any) -> dict[str, Any]:
    """A config as a JSON-ready dict, recursing into component objects.

    Dataclasses (including frozen Equinox Modules) become ``{"type": ClassName,
    field: value, ...}`` in field order; tuples and lists become lists; dicts keep
    their (string) keys; ``None``, bools, ints, floats and strings are kept; NumPy/JAX
    scalars become Python scalars.

    Raises:
        TypeError: for a value of any other type (an array, a function, ...), naming
            its path in the config, e.g. ``config.critic.activation``.
    """
    if not _is_dataclass_instance(config):
        raise TypeError(f"config must be a dataclass instance, got {type(config).__name__}")
    return to_json_value(config, "config")


def config_hash(config: Any) -> str:
    """The first 12 hex digits of the SHA-256 of the config's canonical JSON.

    Equal configs give equal hashes across processes and machines; the hash of a
    saved ``config.json`` (as a dict) equals that of the config that wrote it.
    """
    as_dict = config if isinstance(config, dict) else config_to_dict(config)
    canonical = json.dumps(json.loads(json.dumps(as_dict)), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def _is_dataclass_instance(value: Any) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def to_json_value(value: Any, path: str) -> Any:
    """``value`` as JSON-ready data (see :func:`config_to_dict`); ``path`` names it in errors."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if _is_dataclass_instance(value):
        result: dict[str, Any] = {"type": type(value).__name__}
        for field in dataclasses.fields(value):
            if field.name == "type":
                raise TypeError(f"{path}: a field named 'type' clashes with the type tag")
            result[field.name] = to_json_value(getattr(value, field.name), f"{path}.{field.name}")
        return result
    if isinstance(value, (tuple, list)):
        return [to_json_value(item, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, Mapping):
        result = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{path}: dict keys must be strings, got {key!r}")
            result[key] = to_json_value(item, f"{path}[{key!r}]")
        return result
    if isinstance(value, np.generic) or (hasattr(value, "shape") and getattr(value, "shape") == ()):
        return to_json_value(value.item(), path)
    raise TypeError(
        f"{path}: cannot store a {type(value).__name__} in config.json; config values "
        f"must be None, bool, int, float, str, tuples of these, or dataclass/Equinox "
        f"objects whose fields are (got {value!r:.80})"
    )
