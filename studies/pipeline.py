"""The plumbing every study shares: command line, config JSON, resumable results.

A study module defines a frozen ``Config`` dataclass, named ``PRESETS``, a pure
``run(config)`` and a thin ``main()``. This module supplies the rest, written once:

- :func:`config_to_dict` / :func:`config_hash`: a config (with nested component
  objects such as ``critic=BjorckGroupSort(depth=5)``) as canonical JSON, and a short
  stable hash of it.
- :func:`parse_config`: ``--preset`` plus one ``--field-name`` option per config field,
  parsed by the field's annotated type; returns an :class:`Invocation` (the config and
  the run directory ``<results-dir>/<run-name>``).
- :class:`ResultStore`: one directory per run holding ``config.json``, one CSV per
  finished *cell* (``cells/<cell_id>.csv``), ``results.csv`` and ``metadata.json``
  (git revision, package versions, devices, wall times). Every file is written
  atomically, so a crash or Ctrl-C never leaves a half-written file behind.
- :class:`Progress`: one plain-text line per finished cell with an ETA.
- :func:`run_cells`: runs the cells not yet done, saving each as it finishes, so a
  rerun with the same ``--run-name`` resumes where the last one stopped.

A *cell* is one unit of a sweep (say one ``(K, p, q)``; it covers all seeds at once).
Its rows are tidy: one row per observation, carrying the swept coordinates, the seed,
the step, the metric and its value, so that every saved table can be read alone.

Typical use in ``studies/NAME.py``::

    def cells(config: Config) -> list[tuple[str, Callable[[], list[dict]]]]:
        return [
            (f"K={k}", functools.partial(run_cell, config, k))
            for k in config.mixture_sizes
        ]

    def run(config: Config, store: ResultStore | None = None) -> Results:
        return Results(table=run_cells(store, cells(config)))

    def main(argv: list[str] | None = None) -> None:
        invocation = parse_config(Config, PRESETS, argv, default_preset="quick")
        run(invocation.config, invocation.open_store())
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import importlib.metadata
import json
import math
import os
import pathlib
import platform
import re
import subprocess
import sys
import tempfile
import time
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

import numpy as np
import pandas as pd

__all__ = [
    "ConfigMismatchError",
    "config_field",
    "Invocation",
    "Progress",
    "ResultStore",
    "config_hash",
    "config_to_dict",
    "format_duration",
    "parse_config",
    "rows_to_frame",
    "run_cells",
    "validate_cell_id",
    "write_text_atomically",
]

Rows = list[dict[str, Any]] | pd.DataFrame

# Letters, digits and "-_=." only, not starting with "." (hidden files are our temp files).
_SAFE_NAME = re.compile(r"[A-Za-z0-9_=\-][A-Za-z0-9_=.\-]*")

# Distributions whose versions are recorded in metadata.json (missing ones as null).
_RECORDED_PACKAGES = (
    "jax",
    "jaxlib",
    "jax-cuda12-plugin",
    "jax-cuda12-pjrt",
    "equinox",
    "jaxtyping",
    "optax",
    "diffrax",
    "pot",
    "numpy",
    "scipy",
    "pandas",
    "matplotlib",
    "seaborn",
)

# pandas >= 3 reads floats back exactly by default (and deprecates the option).
_EXACT_FLOATS = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}

# The code being run is this repository, wherever the command is launched from.
_REPOSITORY = pathlib.Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------------------
# Config <-> JSON
# --------------------------------------------------------------------------------------


def config_to_dict(config: Any) -> dict[str, Any]:
    """A config as a JSON-ready dict, recursing into component objects.

    Dataclasses (including frozen Equinox Modules) become ``{"type": ClassName,
    field: value, ...}`` in field order; tuples and lists become lists; dicts keep
    their (string) keys; ``None``, bools, ints, floats and strings are kept; NumPy/JAX
    scalars become Python scalars.

    Args:
        config: a dataclass instance, typically a study's ``Config``.

    Returns:
        A dict of JSON-serialisable values (``json.dumps`` accepts it as is).

    Raises:
        TypeError: for a value of any other type (an array, a function, ...), naming
            its path in the config, e.g. ``config.critic.activation``.
    """
    if not _is_dataclass_instance(config):
        raise TypeError(f"config must be a dataclass instance, got {type(config).__name__}")
    return _to_json_value(config, "config")


def config_hash(config: Any) -> str:
    """A short, stable hash of a config: the first 12 hex digits of the SHA-256 of
    its canonical JSON (:func:`config_to_dict`, sorted keys, no whitespace).

    Args:
        config: a dataclass instance.

    Returns:
        12 lowercase hex digits; equal configs give equal hashes across processes.
    """
    return hashlib.sha256(_canonical_json(config_to_dict(config)).encode()).hexdigest()[:12]


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _is_dataclass_instance(value: Any) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def _to_json_value(value: Any, path: str) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if _is_dataclass_instance(value):
        result: dict[str, Any] = {"type": type(value).__name__}
        for field in dataclasses.fields(value):
            if field.name == "type":
                raise TypeError(f"{path}: a field named 'type' clashes with the type tag")
            result[field.name] = _to_json_value(getattr(value, field.name), f"{path}.{field.name}")
        return result
    if isinstance(value, (tuple, list)):
        return [_to_json_value(item, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, Mapping):
        result = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{path}: dict keys must be strings, got {key!r}")
            result[key] = _to_json_value(item, f"{path}[{key!r}]")
        return result
    if isinstance(value, np.generic) or (hasattr(value, "shape") and getattr(value, "shape") == ()):
        return _to_json_value(value.item(), path)
    raise TypeError(
        f"{path}: cannot store a {type(value).__name__} in config.json; config values "
        f"must be None, bool, int, float, str, tuples of these, or dataclass/Equinox "
        f"objects whose fields are (got {value!r:.80})"
    )


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Invocation:
    """What the command line asked for.

    Attributes:
        config: the chosen preset with the command-line overrides applied.
        preset: the name of the chosen preset.
        run_name: the run's name (``--run-name``; defaults to the preset name).
        run_dir: ``<results-dir>/<run-name>``, where :class:`ResultStore` keeps the run.
        argv: the arguments parsed, for the record.
    """

    config: Any
    preset: str
    run_name: str
    run_dir: pathlib.Path
    argv: tuple[str, ...]

    def open_store(self) -> ResultStore:
        """Open the run's :class:`ResultStore`, recording the preset, run name and argv.

        Returns:
            The store of ``run_dir``, resuming it if it holds the same config.

        Raises:
            SystemExit: with status 2 and the differences, without a traceback, if
                ``run_dir`` holds another config (a command-line mistake: the user
                should pick another ``--run-name``).
        """
        try:
            return ResultStore(
                self.run_dir,
                self.config,
                extra_metadata={"preset": self.preset, "run_name": self.run_name, "argv": list(self.argv)},
            )
        except ConfigMismatchError as error:
            print(f"error: {error}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None


def config_field(default: Any, help_text: str, **metadata: Any) -> Any:
    """A study ``Config`` field with its one-line meaning (shown by ``--help``).

    Args:
        default: the field's default value (frozen configs hold immutable values).
        help_text: what the field means, in one line.
        **metadata: more field metadata, e.g. ``parse=`` (see :func:`parse_config`).
    """
    return dataclasses.field(default=default, metadata={"help": help_text, **metadata})


def parse_config(
    config_cls: type,
    presets: Mapping[str, Any],
    argv: Sequence[str] | None = None,
    *,
    default_preset: str,
    study_name: str | None = None,
    description: str | None = None,
) -> Invocation:
    """Parse a study's command line into a config and a run directory.

    Options: ``--preset NAME`` (one of ``presets``), one ``--field-name VALUE`` per
    dataclass field of ``config_cls`` (underscores become dashes; given values override
    the preset's), ``--run-name`` (default: the preset name) and ``--results-dir``
    (default: ``results/<study_name>``, relative to the working directory).

    Values are parsed by the field's annotated type: ``int``, ``float``, ``str``,
    ``bool`` (``true/false``, ``yes/no``, ``1/0``; a bare ``--flag`` means true),
    ``tuple[T, ...]`` and fixed-length tuples as comma-separated ``2,3,5``,
    ``Literal[...]`` as choices and ``X | None`` (``none``). A field whose metadata has
    ``"parse"`` is parsed by it instead: either a callable ``str -> value`` or a mapping
    from names to values (its keys become the choices), e.g.
    ``{"bjorck": BjorckGroupSort(depth=5, width=30), ...}``. ``--help`` shows each
    field's metadata ``"help"`` and its value in the chosen preset
    (``--preset paper --help`` shows the paper defaults).

    Errors (unknown preset, a value that does not parse, a config rejected by its
    ``__post_init__``) exit through ``argparse`` with status 2 and a message naming the
    option and the offending value, before any compute starts.

    Args:
        config_cls: the study's frozen ``Config`` dataclass.
        presets: named instances of ``config_cls``.
        argv: the arguments, without the program name; ``None`` reads ``sys.argv[1:]``.
        default_preset: the preset used when ``--preset`` is not given.
        study_name: names the default results directory; defaults to the last part of
            the module defining ``config_cls`` (``studies.wgan_capacity`` ->
            ``wgan_capacity``), which also works under ``python -m``.
        description: text shown at the top of ``--help``; defaults to the docstring of
            the module defining ``config_cls``.

    Returns:
        An :class:`Invocation` holding the config and ``run_dir``.

    Raises:
        TypeError, ValueError: for a malformed study definition (not a dataclass, a
            preset of another type, a field type with no command-line parser). These
            are programming errors, raised whatever the command line says.
    """
    _check_study_definition(config_cls, presets, default_preset)
    module = _module_name(config_cls)
    if study_name is None:
        if module is None:
            raise ValueError("cannot infer the study name when run as a script; pass study_name")
        study_name = module.rsplit(".", 1)[-1]
    if description is None:
        description = _module_docstring(config_cls)
    arguments = list(sys.argv[1:] if argv is None else argv)

    # Two passes so that --help shows the defaults of the preset actually chosen. An
    # unknown preset falls through to the full parser, whose error lists the choices.
    preset_parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    preset_parser.add_argument("--preset", default=default_preset)
    known, _ = preset_parser.parse_known_args(arguments)
    preset_name = known.preset if known.preset in presets else default_preset
    preset = presets[preset_name]

    parser = argparse.ArgumentParser(
        prog=f"python -m {module}" if module else None,
        description=description,
        epilog=_presets_epilog(presets, default_preset),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument(
        "--preset",
        choices=list(presets),
        default=default_preset,
        help=f"named configuration the options below modify (default: {default_preset})",
    )
    parser.add_argument(
        "--run-name",
        type=_argument_type("run-name", "a name", _parse_run_name),
        default=None,
        metavar="NAME",
        help="directory name of this run under --results-dir; rerunning with the same "
        "name resumes it (default: the preset name)",
    )
    parser.add_argument(
        "--results-dir",
        type=pathlib.Path,
        default=pathlib.Path("results") / study_name,
        metavar="DIR",
        help="where runs are stored (default: results/%s)" % _escape(study_name),
    )
    hints = _type_hints(config_cls)
    group = parser.add_argument_group(
        f"{config_cls.__name__} fields (defaults from preset {preset_name!r})"
    )
    for field in dataclasses.fields(config_cls):
        if not field.init:
            continue
        _add_field_option(group, field, hints[field.name], getattr(preset, field.name))

    namespace = parser.parse_args(arguments)
    overrides = {
        field.name: getattr(namespace, field.name)
        for field in dataclasses.fields(config_cls)
        if hasattr(namespace, field.name)
    }
    try:
        config = dataclasses.replace(preset, **overrides)
    except (TypeError, ValueError) as error:
        parser.error(f"invalid configuration: {error}")
    run_name = namespace.run_name if namespace.run_name is not None else preset_name
    return Invocation(
        config=config,
        preset=preset_name,
        run_name=run_name,
        run_dir=namespace.results_dir / run_name,
        argv=tuple(arguments),
    )


def _check_study_definition(config_cls: type, presets: Mapping[str, Any], default: str) -> None:
    if not (isinstance(config_cls, type) and dataclasses.is_dataclass(config_cls)):
        raise TypeError(f"config_cls must be a dataclass type, got {config_cls!r}")
    if not presets:
        raise ValueError("presets must name at least one configuration")
    if default not in presets:
        raise ValueError(f"default_preset must be one of {sorted(presets)}, got {default!r}")
    for name, preset in presets.items():
        if type(preset) is not config_cls:
            raise TypeError(
                f"preset {name!r} must be a {config_cls.__name__}, got {type(preset).__name__}"
            )
    reserved = {"preset", "run_name", "results_dir"}
    clashes = reserved & {field.name for field in dataclasses.fields(config_cls)}
    if clashes:
        raise ValueError(f"config fields {sorted(clashes)} clash with the pipeline's own options")


def _module_name(config_cls: type) -> str | None:
    """The importable name of the module defining ``config_cls``; None for a script."""
    module = config_cls.__module__
    if module == "__main__":
        # Under `python -m studies.NAME` the module is "__main__"; its spec keeps the name.
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        return None if spec is None else spec.name
    return module


def _module_docstring(config_cls: type) -> str | None:
    module = sys.modules.get(config_cls.__module__)
    doc = getattr(module, "__doc__", None)
    return doc.strip() if doc else None


def _type_hints(config_cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(config_cls)
    except Exception as error:  # annotations naming something not importable at runtime
        raise TypeError(f"cannot resolve the field types of {config_cls.__name__}: {error}") from error


def _presets_epilog(presets: Mapping[str, Any], default: str) -> str:
    """One line per preset listing the fields where it differs from the default preset."""
    lines = ["presets (fields that differ from the default preset):"]
    reference = presets[default]
    for name, preset in presets.items():
        if name == default:
            lines.append(f"  {name}: the default")
            continue
        changes = [
            f"{field.name}={_format_value(getattr(preset, field.name))}"
            for field in dataclasses.fields(preset)
            if _to_json_value(getattr(preset, field.name), field.name)
            != _to_json_value(getattr(reference, field.name), field.name)
        ]
        lines.append(f"  {name}: {', '.join(changes) if changes else 'same values'}")
    return "\n".join(lines)


def _add_field_option(
    group: argparse._ArgumentGroup, field: dataclasses.Field, annotation: Any, default: Any
) -> None:
    option = "--" + field.name.replace("_", "-")
    meaning = field.metadata.get("help", "")
    parse = field.metadata.get("parse")
    kwargs: dict[str, Any] = {}
    if isinstance(parse, Mapping):
        names = list(parse)
        parse_value = _lookup_in(parse)
        description = f"one of {names}"
        kwargs["metavar"] = "{" + ",".join(names) + "}"
    elif parse is not None:
        if not callable(parse):
            raise TypeError(f"metadata 'parse' of field {field.name!r} must be callable or a mapping")
        parse_value, description = parse, "a value"
        kwargs["metavar"] = "VALUE"
    else:
        parse_value, description, metavar = _parser_for(annotation, field.name)
        kwargs["metavar"] = metavar
        if _strip_optional(annotation) is bool:
            kwargs.update(nargs="?", const=True)
    help_text = f"{meaning} (default: {_format_value(default)})" if meaning else (
        f"(default: {_format_value(default)})"
    )
    group.add_argument(
        option,
        dest=field.name,
        type=_argument_type(field.name, description, parse_value),
        default=argparse.SUPPRESS,
        help=_escape(help_text),
        **kwargs,
    )


def _argument_type(name: str, description: str, parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """Wrap ``parse`` so that any failure becomes an argparse error naming the field."""

    def parse_argument(text: str) -> Any:
        try:
            return parse(text)
        except Exception as error:
            detail = f" ({error})" if str(error) else ""
            raise argparse.ArgumentTypeError(
                f"field {name}: expected {description}, got {text!r}{detail}"
            ) from error

    return parse_argument


def _lookup_in(choices: Mapping[str, Any]) -> Callable[[str], Any]:
    def lookup(text: str) -> Any:
        if text not in choices:
            raise ValueError(f"choose from {list(choices)}")
        return choices[text]

    return lookup


def _strip_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        arguments = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(arguments) == 1:
            return arguments[0]
    return annotation


def _parser_for(annotation: Any, name: str) -> tuple[Callable[[str], Any], str, str]:
    """``(parse, description, metavar)`` for an annotated type, or TypeError."""
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType) and type(None) in arguments:
        inner = _strip_optional(annotation)
        if inner is annotation:
            raise TypeError(f"field {name!r}: cannot parse the union {annotation} from text")
        parse, description, metavar = _parser_for(inner, name)

        def parse_optional(text: str) -> Any:
            return None if text.strip().lower() in ("none", "null") else parse(text)

        return parse_optional, f"{description} or none", metavar
    if annotation in _SCALAR_PARSERS:
        parse, description = _SCALAR_PARSERS[annotation]
        return parse, description, annotation.__name__.upper()
    if origin is typing.Literal:
        return _parse_literal(arguments), f"one of {list(arguments)}", "{" + ",".join(map(str, arguments)) + "}"
    if origin is tuple and arguments:
        if len(arguments) == 2 and arguments[1] is Ellipsis:
            element_types, length = arguments[:1], None
        else:
            element_types, length = arguments, len(arguments)
        for element in element_types:
            if element not in _SCALAR_PARSERS:
                raise TypeError(
                    f"field {name!r}: cannot parse {annotation} from text; give the field "
                    f"metadata={{'parse': ...}}"
                )
        return _parse_tuple(element_types, length), _tuple_description(element_types, length), (
            "X,Y,..." if length is None else ",".join(["X"] * length)
        )
    raise TypeError(
        f"field {name!r} of type {annotation} has no command-line parser; give it "
        f"metadata={{'parse': callable_or_mapping}} mapping the text to a value"
    )


def _parse_int(text: str) -> int:
    return int(text.strip())


def _parse_float(text: str) -> float:
    return float(text.strip())


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "1"):
        return True
    if lowered in ("false", "no", "0"):
        return False
    raise ValueError("use true or false")


_SCALAR_PARSERS: dict[type, tuple[Callable[[str], Any], str]] = {
    int: (_parse_int, "an integer"),
    float: (_parse_float, "a number"),
    str: (str, "a string"),
    bool: (_parse_bool, "true or false"),
}


def _parse_literal(choices: tuple[Any, ...]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        for choice in choices:
            if str(choice) == text:
                return choice
        raise ValueError(f"choose from {list(choices)}")

    return parse


def _parse_tuple(element_types: tuple[type, ...], length: int | None) -> Callable[[str], tuple]:
    def parse(text: str) -> tuple:
        items = [item.strip() for item in text.split(",")] if text.strip() else []
        if length is not None and len(items) != length:
            raise ValueError(f"expected {length} comma-separated values, got {len(items)}")
        types_ = element_types * len(items) if length is None else element_types
        return tuple(_SCALAR_PARSERS[t][0](item) for t, item in zip(types_, items, strict=True))

    return parse


def _tuple_description(element_types: tuple[type, ...], length: int | None) -> str:
    names = "/".join(t.__name__ for t in element_types)
    if length is None:
        return f"comma-separated {names} values such as 2,3,5"
    return f"{length} comma-separated {names} values"


def _format_value(value: Any) -> str:
    """A compact one-line rendering of a config value, as typed on the command line."""
    if isinstance(value, tuple):
        return ",".join(_format_value(item) for item in value) if value else "''"
    if isinstance(value, bool):
        return str(value).lower()
    if _is_dataclass_instance(value):
        inner = ", ".join(
            f"{field.name}={_format_scalar(getattr(value, field.name))}"
            for field in dataclasses.fields(value)
        )
        return f"{type(value).__name__}({inner})"
    if value is None:
        return "none"
    return str(value)


def _format_scalar(value: Any) -> str:
    if _is_dataclass_instance(value):
        return _format_value(value)
    return repr(value)


def _escape(text: str) -> str:
    """argparse %-formats help strings."""
    return text.replace("%", "%%")


def _parse_run_name(text: str) -> str:
    return validate_cell_id(text, what="run name")


# --------------------------------------------------------------------------------------
# Results store
# --------------------------------------------------------------------------------------


class ConfigMismatchError(ValueError):
    """A run directory already holds results of a different config."""


def validate_cell_id(cell_id: str, *, what: str = "cell id") -> str:
    """Check that a name is safe as a file name on every platform.

    Args:
        cell_id: the name, e.g. ``"K=4_p=2_q=5"``.
        what: what the name is, for the error message.

    Returns:
        ``cell_id`` unchanged.

    Raises:
        ValueError: unless it is non-empty, at most 200 characters, made of letters,
            digits, ``-``, ``_``, ``=``, ``.``, and does not start with ``.``.
    """
    if not isinstance(cell_id, str) or not _SAFE_NAME.fullmatch(cell_id) or len(cell_id) > 200:
        raise ValueError(
            f"{what} must be 1-200 characters from letters, digits, '-', '_', '=', '.' "
            f"and not start with '.', got {cell_id!r}"
        )
    return cell_id


def rows_to_frame(rows: Rows) -> pd.DataFrame:
    """Tidy rows as a DataFrame, with NumPy/JAX scalars turned into Python scalars.

    Args:
        rows: a list of dicts (one per observation) or a DataFrame.

    Returns:
        A DataFrame with one row per observation.

    Raises:
        TypeError: for a value that is not a scalar (an array with a shape, a tuple),
            naming the column: a CSV cell holds one number or string.
    """
    if isinstance(rows, pd.DataFrame):
        frame = rows.copy()
        for column in frame.columns[frame.dtypes == object]:
            frame[column] = [_to_scalar(value, column) for value in frame[column]]
        return frame.reset_index(drop=True)
    if not isinstance(rows, Sequence) or isinstance(rows, (str, bytes)):
        raise TypeError(f"rows must be a list of dicts or a DataFrame, got {type(rows).__name__}")
    records = []
    for row in rows:
        if not isinstance(row, Mapping):
            raise TypeError(f"each row must be a dict, got {type(row).__name__}")
        records.append({str(k): _to_scalar(v, k) for k, v in row.items()})
    return pd.DataFrame.from_records(records)


def _to_scalar(value: Any, column: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic) or getattr(value, "shape", None) == ():
        return value.item()
    raise TypeError(
        f"column {column!r}: a row value must be a scalar (number, string, bool), got "
        f"{type(value).__name__} {value!r:.60}; write one row per element instead"
    )


class ResultStore:
    """One run's directory: its config, a CSV per finished cell, and the metadata.

    Layout of ``run_dir``::

        config.json          the exact config (config_to_dict)
        cells/<cell_id>.csv  the tidy rows of each finished cell
        cells/<cell_id>.json its wall time, finish time, git revision and ``extra``
        results.csv          all cells concatenated (write_table)
        metadata.json        git revision, package versions, devices, wall times

    A cell is done exactly when its CSV exists; every file is written to a temporary
    file in the same directory, fsynced, then renamed over the target, so a crash leaves
    either the old file or the new one, never half of one.

    Args:
        run_dir: the run's directory; created if missing.
        config: the study's config (a dataclass instance).
        extra_metadata: JSON-serialisable facts added to every ``metadata.json``
            written, e.g. the preset and command line (see :meth:`Invocation.open_store`).

    Raises:
        ConfigMismatchError: if ``run_dir/config.json`` holds a different config;
            results of two configs are never mixed in one run.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        config: Any,
        *,
        extra_metadata: Mapping[str, Any] | None = None,
    ):
        self.run_dir = pathlib.Path(run_dir)
        self.config = config
        self.extra_metadata = dict(extra_metadata or {})
        self.config_dict = config_to_dict(config)
        self.cells_dir = self.run_dir / "cells"
        self.started_at = _now()
        self._started = time.perf_counter()
        self._git = _git_revision()
        config_path = self.run_dir / "config.json"
        # Compare what JSON would give back (tuples become lists, ...).
        wanted = json.loads(json.dumps(self.config_dict))
        if config_path.exists():
            saved = json.loads(config_path.read_text())
            if saved != wanted:
                raise ConfigMismatchError(_mismatch_message(self.run_dir, saved, wanted))
        self.cells_dir.mkdir(parents=True, exist_ok=True)
        if not config_path.exists():
            write_text_atomically(config_path, json.dumps(self.config_dict, indent=2) + "\n")

    def __repr__(self) -> str:
        return f"ResultStore({str(self.run_dir)!r}, {len(self.done_cells())} cells done)"

    def _csv_path(self, cell_id: str) -> pathlib.Path:
        return self.cells_dir / f"{validate_cell_id(cell_id)}.csv"

    def is_done(self, cell_id: str) -> bool:
        """Whether the cell's rows are saved.

        Args:
            cell_id: a filesystem-safe id (see :func:`validate_cell_id`).

        Returns:
            True if ``cells/<cell_id>.csv`` exists.
        """
        return self._csv_path(cell_id).exists()

    def done_cells(self) -> list[str]:
        """The ids of all saved cells, sorted."""
        return sorted(path.stem for path in self.cells_dir.glob("*.csv"))

    def save_cell(
        self,
        cell_id: str,
        rows: Rows,
        *,
        wall_time_s: float,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """Save a finished cell's rows atomically and record its wall time.

        Args:
            cell_id: a filesystem-safe id, e.g. ``"K=4_p=2_q=5"``.
            rows: its tidy rows (list of dicts or DataFrame), at least one.
            wall_time_s: seconds the cell took.
            extra: JSON-serialisable facts about the cell, kept in ``cells/<id>.json``
                and in ``metadata.json``.

        Raises:
            ValueError: for an unsafe id or no rows.
            TypeError: for a non-scalar row value.
        """
        csv_path = self._csv_path(cell_id)
        frame = rows_to_frame(rows)
        if frame.empty:
            raise ValueError(f"cell {cell_id!r} produced no rows; a saved cell needs at least one")
        record = {
            "wall_time_s": float(wall_time_s),
            "finished_at": _now(),
            # The revision only; metadata.json lists the changed files once.
            "git": {"commit": self._git["commit"], "dirty": self._git["dirty"]},
            "extra": dict(extra) if extra else {},
        }
        # The record first, then the CSV that marks the cell done: a crash in between
        # leaves a record without rows, and the cell simply runs again.
        write_text_atomically(csv_path.with_suffix(".json"), json.dumps(record, indent=2) + "\n")
        write_text_atomically(csv_path, frame.to_csv(index=False))

    def cell_table(self, cell_id: str) -> pd.DataFrame:
        """The saved rows of one cell."""
        return pd.read_csv(self._csv_path(cell_id), **_EXACT_FLOATS)

    def table(self, cell_ids: Sequence[str] | None = None) -> pd.DataFrame:
        """All saved rows, one cell after another.

        Args:
            cell_ids: the cells to include, in this order; ``None`` means every saved
                cell in sorted order. Ids not yet saved are skipped.

        Returns:
            The concatenated rows (an empty DataFrame if nothing is saved); columns a
            cell lacks are NaN.
        """
        ids = self.done_cells() if cell_ids is None else [c for c in cell_ids if self.is_done(c)]
        frames = [self.cell_table(cell_id) for cell_id in ids]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def write_table(self, cell_ids: Sequence[str] | None = None) -> pathlib.Path:
        """Write :meth:`table` to ``results.csv`` atomically and return its path."""
        path = self.run_dir / "results.csv"
        write_text_atomically(path, self.table(cell_ids).to_csv(index=False))
        return path

    def cell_records(self) -> dict[str, dict[str, Any]]:
        """Each saved cell's record: wall time, finish time, git revision, extra."""
        records = {}
        for cell_id in self.done_cells():
            path = self.cells_dir / f"{cell_id}.json"
            records[cell_id] = json.loads(path.read_text()) if path.exists() else {}
        return records

    def write_metadata(self, extra: Mapping[str, Any] | None = None) -> pathlib.Path:
        """Write ``metadata.json`` atomically: where, when and with what the run ran.

        Holds the config hash, the git revision (``commit``, ``dirty``, changed files;
        ``null`` without git or commits), the revisions the saved cells were computed
        at (more than one after resuming on other code), package versions (``null`` when
        not installed), Python version, platform, JAX devices, this session's start,
        end and wall time, each cell's wall time and their total, and ``extra``.

        Args:
            extra: JSON-serialisable facts to add to the store's ``extra_metadata``
                (``run_cells`` adds ``status``, ``cells_total`` and ``cells_done``).

        Returns:
            The path written.
        """
        records = self.cell_records()
        revisions = sorted(
            {json.dumps(r.get("git"), sort_keys=True) for r in records.values() if "git" in r}
        )
        metadata = {
            "config_hash": config_hash(self.config),
            "git": self._git,
            "cell_git_revisions": [json.loads(r) for r in revisions],
            "packages": _package_versions(),
            "python": sys.version,
            "platform": platform.platform(),
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
            "jax": _jax_facts(),
            "started_at": self.started_at,
            "ended_at": _now(),
            "session_wall_time_s": time.perf_counter() - self._started,
            "cells": {cell_id: r.get("wall_time_s") for cell_id, r in records.items()},
            "total_cell_wall_time_s": sum(r.get("wall_time_s") or 0.0 for r in records.values()),
            "extra": _to_json_value({**self.extra_metadata, **(extra or {})}, "extra"),
        }
        path = self.run_dir / "metadata.json"
        write_text_atomically(path, json.dumps(metadata, indent=2) + "\n")
        return path


def _mismatch_message(run_dir: pathlib.Path, saved: Any, wanted: Any) -> str:
    saved_flat, wanted_flat = _flatten(saved), _flatten(wanted)
    differences = [
        f"  {key}: saved {saved_flat.get(key, '<missing>')!r}, now {wanted_flat.get(key, '<missing>')!r}"
        for key in sorted(set(saved_flat) | set(wanted_flat))
        if saved_flat.get(key, _MISSING) != wanted_flat.get(key, _MISSING)
    ]
    shown = "\n".join(differences[:10]) + ("\n  ..." if len(differences) > 10 else "")
    return (
        f"{run_dir} already holds results of a different config; choose another "
        f"--run-name (or delete the directory to start over). Differences:\n{shown}"
    )


_MISSING = object()


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}


def write_text_atomically(path: pathlib.Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new, whole."""
    path = pathlib.Path(path)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        # Also on KeyboardInterrupt: never leave the temporary file behind.
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: pathlib.Path) -> None:
    # Makes the rename itself durable; not possible on every platform (Windows).
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _git(*arguments: str) -> str | None:
    try:
        completed = subprocess.run(
            ["git", *arguments],
            cwd=_REPOSITORY,
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return completed.stdout if completed.returncode == 0 else None


def _git_revision() -> dict[str, Any]:
    """``{"commit", "dirty", "changes"}`` of this repository; nulls without git/commits."""
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None, "changes": None}
    # Tracked changes, plus untracked Python files: a new, uncommitted study module is
    # code the commit does not contain. (Untracked results are not.)
    status = _git("status", "--porcelain", "--untracked-files=all")
    lines = [
        line
        for line in (status or "").splitlines()
        if not line.startswith("??") or line.endswith(".py")
    ]
    return {
        "commit": commit.strip(),
        "dirty": bool(lines) if status is not None else None,
        "changes": lines[:100] if status is not None else None,
    }


def _package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in _RECORDED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _jax_facts() -> dict[str, Any]:
    try:
        import jax

        return {
            "devices": [f"{device} ({device.device_kind})" for device in jax.devices()],
            "default_backend": jax.default_backend(),
            "enable_x64": bool(jax.config.jax_enable_x64),
        }
    except Exception as error:  # no usable backend: record why rather than fail the run
        return {"devices": None, "error": f"{type(error).__name__}: {error}"}


# --------------------------------------------------------------------------------------
# Progress and the driver
# --------------------------------------------------------------------------------------


class Progress:
    """Plain-text progress: a line per finished cell with an ETA, optional step lines.

    The ETA is the mean wall time of the cells finished in this session times the
    number of cells left (cells done in an earlier session did not run here, so they
    say nothing about this machine's speed).

    Args:
        total_cells: the number of cells in the sweep, done or not.
        already_done: how many were done before this session started.
        stream: where to print (default ``sys.stderr``, flushed at every line).
    """

    def __init__(self, total_cells: int, already_done: int = 0, *, stream: TextIO | None = None):
        if not 0 <= already_done <= total_cells:
            raise ValueError(
                f"already_done must be in [0, total_cells={total_cells}], got {already_done}"
            )
        self.total_cells = total_cells
        self.done = already_done
        self.stream = stream
        self.wall_times: list[float] = []
        self.current: str | None = None

    def note(self, line: str) -> None:
        """Print one line of text."""
        print(line, file=self.stream if self.stream is not None else sys.stderr, flush=True)

    def start_cell(self, cell_id: str) -> None:
        """Note that ``cell_id`` starts (shown on its step lines)."""
        self.current = cell_id

    def update(self, *, step: int | None = None, total_steps: int | None = None, **metrics: Any) -> None:
        """Print one compact line for the running cell, e.g. ``  K=4 step 100/1000 | loss=0.123``.

        Args:
            step: the current step.
            total_steps: the number of steps.
            **metrics: scalar values to show (formatted with 4 significant digits).
        """
        parts = [f"  {self.current or ''}".rstrip()]
        if step is not None:
            parts.append(f"step {step}" + (f"/{total_steps}" if total_steps is not None else ""))
        line = " ".join(parts)
        if metrics:
            line += " | " + " ".join(f"{k}={_format_metric(v)}" for k, v in metrics.items())
        self.note(line)

    def finish_cell(self, cell_id: str, wall_time_s: float) -> None:
        """Print ``[3/16] K=4_p=2_q=5 done in 12.3s | ETA 2m10s``."""
        self.done += 1
        self.wall_times.append(wall_time_s)
        self.current = None
        left = self.total_cells - self.done
        eta = sum(self.wall_times) / len(self.wall_times) * left
        self.note(
            f"[{self.done}/{self.total_cells}] {cell_id} done in {format_duration(wall_time_s)}"
            + (f" | ETA {format_duration(eta)}" if left else "")
        )


def _format_metric(value: Any) -> str:
    try:
        return f"{float(value):.4g}"
    except (TypeError, ValueError):
        return str(value)


def format_duration(seconds: float) -> str:
    """``12.3s``, ``2m10s`` or ``1h02m``."""
    if not math.isfinite(seconds):
        return "?"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes}m{rest:02d}s"
    hours, rest = divmod(round(seconds) // 60, 60)
    return f"{hours}h{rest:02d}m"


def run_cells(
    store: ResultStore | None,
    cells: Sequence[tuple[str, Callable[[], Rows]]],
    *,
    progress: Progress | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Run the cells not yet done, saving each one as soon as it finishes.

    All ids are validated before anything runs. A cell's wall time covers its function
    and the conversion of its rows to a DataFrame (which waits for JAX's asynchronous
    results). If a cell raises (or Ctrl-C arrives) the exception propagates, but only
    after ``results.csv`` and ``metadata.json`` are rewritten for the cells saved so far
    (``metadata.json`` then says ``"status": "interrupted"``); rerunning with the same
    store runs only the cells left.

    Args:
        store: where to save; ``None`` runs every cell in memory and saves nothing
            (so a study's ``run(config)`` stays usable from tests and notebooks).
        cells: ``(cell_id, function)`` pairs; each function takes no arguments and
            returns its tidy rows (list of dicts or DataFrame).
        progress: the progress printer; by default a :class:`Progress` on stderr. Pass
            your own to call its ``update`` from inside the cells.
        metadata: extra facts for ``metadata.json`` (e.g. the preset and argv).

    Returns:
        The rows of all cells, in the order of ``cells``.

    Raises:
        ValueError: for an unsafe or repeated cell id (before any cell runs).
        Whatever a cell raises, after saving.
    """
    ids = [validate_cell_id(cell_id) for cell_id, _ in cells]
    repeated = sorted({cell_id for cell_id in ids if ids.count(cell_id) > 1})
    if repeated:
        raise ValueError(f"cell ids must be unique, repeated: {repeated}")
    done = {cell_id for cell_id in ids if store is not None and store.is_done(cell_id)}
    if progress is None:
        progress = Progress(len(ids), len(done))
    if done:
        progress.note(f"resuming {store.run_dir}: {len(done)}/{len(ids)} cells already done")

    in_memory: dict[str, pd.DataFrame] = {}
    status = "interrupted"
    try:
        for cell_id, function in cells:
            if cell_id in done:
                continue
            progress.start_cell(cell_id)
            started = time.perf_counter()
            frame = rows_to_frame(function())
            wall_time_s = time.perf_counter() - started
            if store is None:
                in_memory[cell_id] = frame
            else:
                store.save_cell(cell_id, frame, wall_time_s=wall_time_s)
            progress.finish_cell(cell_id, wall_time_s)
        status = "complete"
    finally:
        if store is not None:
            # Each finished cell is already on disk; this only refreshes the summaries.
            facts = {
                "status": status,
                "cells_total": len(ids),
                "cells_done": sum(store.is_done(cell_id) for cell_id in ids),
                **(metadata or {}),
            }
            store.write_metadata(facts)
            if facts["cells_done"]:
                store.write_table(ids)
    if store is not None:
        return store.table(ids)
    frames = [in_memory[cell_id] for cell_id in ids]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
