"""The command line of every study, built by ``tyro`` from the study's Config.

``python -m studies.NAME --help`` lists every Config field with its meaning, bounds and
the default of the chosen preset (``--preset paper --help`` shows the paper defaults),
plus the kit's own options: ``--preset``, ``--run-name``, ``--results-dir``,
``--devices``, ``--workers`` and ``--distributed``. Values are parsed by the field's annotated type:
``int``, ``float``, ``str``, ``bool`` (``true/false``, ``yes/no``, ``1/0``), tuples as
comma-separated ``2,3,5``, ``X | None`` (``none``); a field whose ``config_field`` has
``parse=`` is parsed by it: a mapping from names to component objects (``--critic
spectral-norm``; its keys are the choices) or a callable ``str -> value``. Every value
is checked (the field's bounds, then the Config's ``__post_init__``) before any compute;
a bad one exits with status 2 and a message naming the option and the value.

Why tyro with one string per field (rather than its native nested options): the
studies' configs hold component objects chosen by name, and tuples written ``4,9``;
keeping that surface stable matters more than tyro's nested ``--critic.depth`` flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any

import tyro
from tyro.constructors import PrimitiveConstructorSpec

from studies.kit.config import _strip_optional, _tuple_element, field_bounds_text, to_json_value, within_text
from studies.kit.store import ConfigMismatchError, DamagedFileError, ResultStore, RunDirectoryError, RunLockedError, validate_cell_id

__all__ = ["Invocation", "Overrides", "Runtime", "ema_text", "main", "parse_config", "parse_ema"]

_RESERVED = {"preset", "run_name", "results_dir", "devices", "workers", "distributed"}


@dataclasses.dataclass(frozen=True)
class Runtime:
    """How a run is spread over hardware; never changes its numbers, so not in the config.

    Attributes:
        devices: how many local devices the replica axis is sharded over (0: all).
        workers: how many cells run at once on host threads (1: one after the other).
        process_index, process_count: this process's share of a multi-host sweep
            (after ``jax.distributed.initialize``; 0 and 1 on one machine).
    """

    devices: int = 1
    workers: int = 1
    process_index: int = 0
    process_count: int = 1


@dataclasses.dataclass(frozen=True)
class Invocation:
    """What the command line asked for: the config, where to keep the run, the runtime."""

    config: Any
    study: str
    preset: str
    run_name: str
    run_dir: pathlib.Path
    argv: tuple[str, ...]
    runtime: Runtime = Runtime()

    def open_store(self) -> ResultStore:
        """Open (or resume) the run's store; a mistake the user can fix exits with status 2."""
        try:
            return ResultStore(
                self.run_dir,
                self.config,
                study=self.study,
                extra_metadata={"preset": self.preset, "run_name": self.run_name, "argv": list(self.argv),
                                "runtime": dataclasses.asdict(self.runtime)},
                process_index=self.runtime.process_index,
            )
        except (ConfigMismatchError, RunLockedError, RunDirectoryError, DamagedFileError) as error:
            print(f"error: {error}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None


@dataclasses.dataclass(frozen=True)
class Overrides:
    """``parse=`` for a component field written as ``KEY=VALUE,...`` changes of the chosen preset's value.

    ``--training steps=400,lr=3e-3`` with ``--preset paper`` changes only those two
    numbers of the paper preset's training object; every other part keeps that preset's
    value. Each key names a dotted path into the component (``"lr":
    "optimiser.learning_rate"``); the text is parsed by the type of the value it replaces
    (int, float, bool; ``none`` for an optional part), or by ``convert[key]`` when given
    (e.g. ``ema=0.999`` -> ``EMA(0.999)``), and written back in ``--help`` by
    ``spell[key]``. The component is rebuilt with ``dataclasses.replace``, so its own
    checks run on the new values.

    Attributes:
        keys: command-line key -> dotted path in the component.
        convert: key -> ``str -> value`` for parts that are not plain numbers.
        spell: key -> ``value -> str``, the inverse of ``convert[key]`` (default: the
            value as written for a plain number).
    """

    keys: Mapping[str, str]
    convert: Mapping[str, Callable[[str], Any]] = dataclasses.field(default_factory=dict)
    spell: Mapping[str, Callable[[Any], str]] = dataclasses.field(default_factory=dict)

    def apply(self, base: Any, text: str) -> Any:
        """``base`` with the ``KEY=VALUE`` changes of ``text``."""
        given: dict[str, str] = {}
        for item in text.split(","):
            if not item.strip():
                continue
            key, sep, value = (part.strip() for part in item.partition("="))
            if not sep or key not in self.keys:
                raise ValueError(f"expected KEY=VALUE with KEY in {list(self.keys)}, got {item.strip()!r}")
            if key in given:
                raise ValueError(f"key {key!r} given twice in {text!r}")
            given[key] = value
        if not given:
            raise ValueError(f"expected KEY=VALUE pairs with KEY in {list(self.keys)}, got {text!r}")
        changes: dict[str, Any] = {}
        for key, value in given.items():
            path = self.keys[key]
            changes[path] = self.convert[key](value) if key in self.convert else _parse_like(
                _get_path(base, path.split(".")), value, key)
        # All at once: a component checks its fields together (record_every divides steps).
        return _replace_paths(base, changes)

    def show(self, value: Any) -> str:
        """The component's current values under this parser's keys, e.g. ``lr=0.001,steps=10000``."""
        parts = []
        for key, path in self.keys.items():
            current = _get_path(value, path.split("."))
            parts.append(f"{key}={self.spell.get(key, _format)(current)}")
        return ",".join(parts)


_EMA_EXPECTED = "'none' or 0 (no average), or a decay in (0, 1)"


def parse_ema(text: str) -> Any:
    """An ``Overrides`` ``convert=`` for a training's weight average: ``none`` or ``0`` -> None
    (no average), a decay d in (0, 1) -> ``models.training.EMA(d)``.

    Raises:
        ValueError: naming ``ema`` and the text, for anything else (before any compute).
    """
    from models.training import EMA  # as the kit's other JAX users: imported when a study needs it

    value = text.strip().lower()
    if value == "none":
        return None
    try:
        decay = _parse_float(value)
    except ValueError:
        raise ValueError(f"ema must be {_EMA_EXPECTED}, got {text!r}") from None
    if decay == 0.0:
        return None
    if not 0.0 < decay < 1.0:
        raise ValueError(f"ema must be {_EMA_EXPECTED}, got {text!r}")
    return EMA(decay)


def ema_text(ema: Any) -> str:
    """The ``spell=`` inverse of :func:`parse_ema`: ``none``, or the decay written so that it reads back exactly."""
    if ema is None:
        return "none"
    short = f"{ema.decay:g}"
    return short if float(short) == ema.decay else repr(float(ema.decay))


def _get_path(value: Any, path: Sequence[str]) -> Any:
    for name in path:
        if value is None:
            return None
        value = getattr(value, name)
    return value


def _replace_paths(value: Any, changes: Mapping[str, Any]) -> Any:
    """``value`` rebuilt once per object with every ``{dotted path: new value}`` of ``changes``."""
    direct = {path: new for path, new in changes.items() if "." not in path}
    nested: dict[str, dict[str, Any]] = {}
    for path, new in changes.items():
        if "." in path:
            head, rest = path.split(".", 1)
            nested.setdefault(head, {})[rest] = new
    for head, inner in nested.items():
        direct[head] = _replace_paths(getattr(value, head), inner)
    return dataclasses.replace(value, **direct)


def _parse_like(current: Any, text: str, key: str) -> Any:
    """``text`` parsed as a value of the same kind as ``current`` (``none`` -> None where current may be None)."""
    if text.lower() == "none":
        return None
    try:
        if isinstance(current, bool):
            return _parse_bool(text)
        if isinstance(current, int):
            return _parse_int(text)
        return _parse_float(text)
    except ValueError as error:
        raise ValueError(f"{key}: {error}") from None


# --------------------------------------------------------------------------------------
# Text <-> values


def _parse_int(text: str) -> int:
    try:
        return int(text.strip().replace("_", ""))
    except ValueError:
        raise ValueError(f"expected an integer, got {text!r}") from None


def _parse_float(text: str) -> float:
    try:
        return float(text.strip().replace("_", ""))
    except ValueError:
        raise ValueError(f"expected a number, got {text!r}") from None


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "1", "on"):
        return True
    if lowered in ("false", "no", "0", "off"):
        return False
    raise ValueError(f"expected true/false, got {text!r}")


def _scalar_parser(kind: Any, name: str) -> tuple[Callable[[str], Any], str]:
    if kind is int:
        return _parse_int, "INT"
    if kind is float:
        return _parse_float, "FLOAT"
    if kind is bool:
        return _parse_bool, "{true,false}"
    if kind is str:
        return (lambda text: text), "TEXT"
    if typing.get_origin(kind) is typing.Literal:
        choices = typing.get_args(kind)

        def parse_literal(text: str) -> Any:
            for choice in choices:
                if str(choice) == text:
                    return choice
            raise ValueError(f"expected one of {list(choices)}, got {text!r}")

        return parse_literal, "{" + ",".join(map(str, choices)) + "}"
    raise TypeError(f"field {name!r}: no command-line parser for {kind!r}; give it parse= in config_field")


def _format(value: Any, names: Mapping[str, Any] | None = None) -> str:
    if names is not None:
        for name, candidate in names.items():
            if to_json_value(candidate, "") == to_json_value(value, ""):
                return name
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(_format(item) for item in value)
    if dataclasses.is_dataclass(value):
        fields = ", ".join(f"{f.name}={getattr(value, f.name)!r}" for f in dataclasses.fields(value))
        return f"{type(value).__name__}({fields})"
    return str(value)


def _field_parser(field: dataclasses.Field, annotation: Any, default: Any) -> tuple[Callable[[str], Any], str, tuple[str, ...] | None]:
    parse = field.metadata.get("parse")
    if isinstance(parse, Overrides):
        return (lambda text: parse.apply(default, text)), "KEY=VALUE,...", None
    if isinstance(parse, Mapping):
        names = tuple(parse)

        def lookup(text: str) -> Any:
            if text not in parse:
                raise ValueError(f"expected one of {list(names)}, got {text!r}")
            return parse[text]

        return lookup, "{" + ",".join(names) + "}", names
    if parse is not None:
        if not callable(parse):
            raise TypeError(f"parse= of field {field.name!r} must be a mapping or a callable")
        return parse, "VALUE", None
    optional = type(None) in typing.get_args(annotation)
    base = _strip_optional(annotation)
    element = _tuple_element(base)
    if element is not None:
        parse_element, metavar = _scalar_parser(element, field.name)

        def parse_tuple(text: str) -> tuple:
            parts = [part.strip() for part in text.split(",")]
            if not text.strip() or any(part == "" for part in parts):
                raise ValueError(f"expected comma-separated values such as 2,3,5, got {text!r}")
            return tuple(parse_element(part) for part in parts)

        parse_value, metavar = parse_tuple, f"{metavar},..."
    else:
        parse_value, metavar = _scalar_parser(base, field.name)
    if optional:
        inner = parse_value

        def parse_optional(text: str) -> Any:
            return None if text.strip().lower() == "none" else inner(text)

        return parse_optional, f"{metavar}|none", None
    return parse_value, metavar, None


def _shown(field: dataclasses.Field, value: Any) -> str:
    """How ``--help`` and the presets list write a field's value."""
    parse, show = field.metadata.get("parse"), field.metadata.get("show")
    if show is not None:
        return show(value)
    if isinstance(parse, Overrides):
        return parse.show(value)
    return _format(value, parse if isinstance(parse, Mapping) else None)


def _option(field: dataclasses.Field, annotation: Any, default: Any) -> Any:
    parse, metavar, choices = _field_parser(field, annotation, default)
    bounds = field_bounds_text(field, annotation)
    within = within_text(field)
    help_text = field.metadata.get("help", "") + (f" {bounds}" if bounds else "") + (f" ({within})" if within else "")
    spec = PrimitiveConstructorSpec(
        nargs=1,
        metavar=metavar,
        instance_from_str=lambda args: parse(args[0]),
        is_instance=lambda value: True,
        str_from_instance=lambda value: [_shown(field, value)],
        choices=choices,
    )
    # A factory rather than a default: tyro warns about non-frozen component objects as
    # defaults (Equinox modules are immutable, but not frozen dataclasses in its eyes).
    return (field.name, Annotated[Any, spec, tyro.conf.arg(help=help_text)],
            dataclasses.field(default_factory=lambda: default))


def _module_name(config_cls: type) -> str | None:
    module = config_cls.__module__
    if module == "__main__":
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        return None if spec is None else spec.name
    return module


def _presets_text(presets: Mapping[str, Any], default: str) -> str:
    lines = ["Presets (fields that differ from the default preset):"]
    reference = presets[default]
    for name, preset in presets.items():
        if name == default:
            lines.append(f"  {name}: the default")
            continue
        changes = [
            f"{f.name}={_shown(f, getattr(preset, f.name))}"
            for f in dataclasses.fields(preset)
            if to_json_value(getattr(preset, f.name), f.name) != to_json_value(getattr(reference, f.name), f.name)
        ]
        lines.append(f"  {name}: {', '.join(changes) if changes else 'same values'}")
    return "\n".join(lines)


def _check_study_definition(config_cls: type, presets: Mapping[str, Any], default: str) -> None:
    if not (isinstance(config_cls, type) and dataclasses.is_dataclass(config_cls)):
        raise TypeError(f"config_cls must be a dataclass type, got {config_cls!r}")
    if not presets:
        raise ValueError("presets must name at least one configuration")
    if default not in presets:
        raise ValueError(f"default_preset must be one of {sorted(presets)}, got {default!r}")
    for name, preset in presets.items():
        if type(preset) is not config_cls:
            raise TypeError(f"preset {name!r} must be a {config_cls.__name__}, got {type(preset).__name__}")
    clashes = _RESERVED & {field.name for field in dataclasses.fields(config_cls)}
    if clashes:
        raise ValueError(f"config fields {sorted(clashes)} clash with the kit's own options")


def parse_config(
    config_cls: type,
    presets: Mapping[str, Any],
    argv: Sequence[str] | None = None,
    *,
    default_preset: str,
    study_name: str | None = None,
    description: str | None = None,
) -> Invocation:
    """Parse a study's command line into an :class:`Invocation`.

    Args:
        config_cls: the study's frozen ``Config`` dataclass.
        presets: named instances of ``config_cls``.
        argv: the arguments, without the program name; ``None`` reads ``sys.argv[1:]``.
        default_preset: the preset used when ``--preset`` is not given.
        study_name: names the default results directory ``results/<study_name>``;
            defaults to the last part of the module defining ``config_cls``.
        description: the text above the options; defaults to that module's docstring.

    Raises:
        SystemExit: status 2 with a message naming the option and value, for anything
            the user typed wrong (before any compute); status 0 after ``--help``.
        TypeError, ValueError: for a malformed study definition (programming errors).
    """
    _check_study_definition(config_cls, presets, default_preset)
    module = _module_name(config_cls)
    if study_name is None:
        if module is None:
            raise ValueError("cannot infer the study name when run as a script; pass study_name")
        study_name = module.rsplit(".", 1)[-1]
    if description is None:
        doc = getattr(sys.modules.get(config_cls.__module__), "__doc__", None)
        description = doc.strip() if doc else ""
    arguments = list(sys.argv[1:] if argv is None else argv)

    # --preset first, so that the options' defaults (and --help) are the chosen preset's.
    # An unknown preset falls through to tyro, whose error lists the choices.
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--preset", default=default_preset)
    known, _ = pre.parse_known_args(arguments)
    preset_name = known.preset if known.preset in presets else default_preset
    preset = presets[preset_name]

    def text_spec(parse: Callable[[str], Any], metavar: str, choices=None) -> PrimitiveConstructorSpec:
        return PrimitiveConstructorSpec(nargs=1, metavar=metavar, instance_from_str=lambda a: parse(a[0]),
                                        is_instance=lambda v: True, str_from_instance=lambda v: [str(v)], choices=choices)

    def parse_devices(text: str) -> int:
        value = _parse_int(text)
        if value < 0:
            raise ValueError(f"expected 0 (all local devices) or a positive count, got {value}")
        return value

    def parse_workers(text: str) -> int:
        value = _parse_int(text)
        if not 1 <= value <= 64:
            raise ValueError(f"expected a count of cells run at once in [1, 64], got {value}")
        return value

    kit_options = [
        ("preset", Annotated[str, text_spec(str, "{" + ",".join(presets) + "}", tuple(presets)),
                             tyro.conf.arg(help="named configuration the options below modify")],
         dataclasses.field(default=preset_name)),
        ("run_name", Annotated[Any, text_spec(lambda t: validate_cell_id(t, what="run name"), "NAME"),
                               tyro.conf.arg(help="directory of this run under --results-dir; rerunning the same name "
                                                  "resumes it", help_behavior_hint="(default: the preset name)")],
         dataclasses.field(default=None)),
        ("results_dir", Annotated[Any, text_spec(pathlib.Path, "DIR"), tyro.conf.arg(help="where runs are stored")],
         dataclasses.field(default=pathlib.Path("results") / study_name)),
        ("devices", Annotated[int, text_spec(parse_devices, "INT"),
                              tyro.conf.arg(help="local devices to shard replicas over (0: all); never changes the numbers")],
         dataclasses.field(default=1)),
        ("workers", Annotated[int, text_spec(parse_workers, "INT"),
                              tyro.conf.arg(help="cells run at once on host threads (2 on a 2-core CPU: one small "
                                                 "cell keeps 1.5 cores busy); never changes the numbers")],
         dataclasses.field(default=1)),
        ("distributed", Annotated[bool, text_spec(_parse_bool, "{true,false}"),
                                  tyro.conf.arg(help="multi-host: call jax.distributed.initialize() and run this "
                                                     "process's share of the cells in the shared --results-dir")],
         dataclasses.field(default=False)),
    ]
    hints = typing.get_type_hints(config_cls)
    field_options = [
        _option(field, hints[field.name], getattr(preset, field.name))
        for field in dataclasses.fields(config_cls)
        if field.init
    ]
    options_cls = dataclasses.make_dataclass(f"{config_cls.__name__}Options", kit_options + field_options, frozen=True)
    parsed = tyro.cli(
        options_cls,
        prog=f"python -m {module}" if module else None,
        description=f"{description}\n\n{_presets_text(presets, default_preset)}",
        args=arguments,
    )
    overrides = {field.name: getattr(parsed, field.name) for field in dataclasses.fields(config_cls) if field.init}
    try:
        config = dataclasses.replace(preset, **overrides)
    except (TypeError, ValueError) as error:
        print(f"error: invalid configuration: {error}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    runtime = Runtime(devices=parsed.devices, workers=parsed.workers)
    if parsed.distributed:
        import jax

        jax.distributed.initialize(**_distributed_arguments())
        runtime = Runtime(devices=parsed.devices, workers=parsed.workers, process_index=jax.process_index(), process_count=jax.process_count())
    run_name = parsed.run_name if parsed.run_name is not None else preset_name
    return Invocation(
        config=config,
        study=study_name,
        preset=preset_name,
        run_name=run_name,
        run_dir=pathlib.Path(parsed.results_dir) / run_name,
        argv=tuple(arguments),
        runtime=runtime,
    )


def _distributed_arguments() -> dict[str, Any]:
    """``jax.distributed.initialize`` arguments from JAX_NUM_PROCESSES and JAX_PROCESS_ID.

    JAX itself reads JAX_COORDINATOR_ADDRESS, and detects the rest on SLURM, Open MPI,
    Kubernetes and Cloud TPU; on plain hosts these two variables give the process count and
    this host's index.
    """
    import os

    arguments = {}
    for variable, name in (("JAX_NUM_PROCESSES", "num_processes"), ("JAX_PROCESS_ID", "process_id")):
        text = os.environ.get(variable)
        if text is not None:
            try:
                arguments[name] = int(text)
            except ValueError:
                print(f"error: {variable} must be an integer, got {text!r}", file=sys.stderr, flush=True)
                raise SystemExit(2) from None
    return arguments


def main(
    run: Callable[..., Any],
    config_cls: type,
    presets: Mapping[str, Any],
    argv: Sequence[str] | None = None,
    *,
    default_preset: str = "quick",
) -> Any:
    """A study's ``main()`` up to its summary: parse, open the store, run, say where it went.

    Prints the results file, this session's wall time and the figures; returns what ``run``
    returned, for the study to print its summary.
    """
    import time

    started = time.perf_counter()
    invocation = parse_config(config_cls, presets, argv, default_preset=default_preset)
    results = run(invocation.config, invocation.open_store(), runtime=invocation.runtime)
    print(f"\nresults: {invocation.run_dir / 'results.csv'} ({time.perf_counter() - started:.1f}s this session)")
    for path in getattr(results, "figures", ()):
        print(f"figure: {path}")
    return results
