"""Cells that declare what they need, artifacts built once and verified, and the driver.

A study is a list of :class:`Cell`: an id, a function returning tidy rows, the
coordinates it stands for (added to each of its rows), and the names of what it needs.
What a cell needs is passed to its function as keyword arguments: an :class:`Artifact`
by its name (a trained network, say), or the built-in ``progress``. An artifact is
built the first time a cell that needs it runs, saved through the store with its
SHA-256 and loaded, verified, by later cells and later sessions; nothing is shared
through hidden state, and a resumed run whose network-dependent cells are all done
never trains the network.

A cell (or an artifact it needs) that raises :class:`Diverged` is saved as diverged:
one row per cell with ``metric = "diverged"`` and the reason, status ``diverged`` in
its record, and the sweep goes on; cells that need nothing diverged still run. Any
other exception, Ctrl-C or SIGTERM stops the sweep after everything finished has been
saved, and the session's status and error go into ``metadata.json``.

``run_cells(workers=2)`` runs two cells at once on host threads (a 2-core CPU that one
small cell keeps only 1.4-1.5 cores busy: ``benchmarks.wgan_parallel_cells``). A cell's
numbers do not depend on it (its keys and programs are its own); cells start in order of
their declared ``cost``, largest first, so that cells of similar cost overlap; artifacts
are built once under a lock; rows are saved by the driver thread as cells finish. Ctrl-C
or SIGTERM then stops starting cells, waits for the running ones and saves them (a
computation on another thread cannot be cancelled), and stops.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import math
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

from studies.kit.cli import Runtime
from studies.kit.progress import Progress
from studies.kit.store import DamagedFileError, ResultStore, Rows, rows_to_frame, validate_cell_id

try:
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

__all__ = ["Artifact", "Cell", "Diverged", "Replicas", "equinox_artifact", "replicas_artifact", "run_cells"]

_BUILT_INS = ("progress",)


class Diverged(Exception):
    """Training diverged (non-finite loss or parameters, or a distance beyond its bound)."""


@dataclasses.dataclass(frozen=True)
class Artifact:
    """A value some cells need, built once per run and kept in the store, verified.

    Args:
        name: its file name in ``artifacts/`` (safe characters only).
        build: makes the value; called with what ``needs`` names as keyword arguments.
            Raises :class:`Diverged` if the training behind it diverged.
        encode, decode: the value to bytes and back (e.g. Equinox serialisation).
        needs: names of other artifacts (or ``progress``) that ``build`` takes.
    """

    name: str
    build: Callable[..., Any]
    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], Any]
    needs: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Cell:
    """One unit of a sweep.

    Args:
        id: a filesystem-safe id, unique in the sweep, e.g. ``"K=4_p=2_q=5"``.
        fn: returns the cell's tidy rows; called with what ``needs`` names.
        needs: names of artifacts (or ``progress``) the function takes.
        coords: the swept coordinates the cell stands for; each is added to every row
            that lacks it (and to the row of a diverged cell).
        cost: its expected run time relative to the sweep's other cells (any unit);
            only the order cells start in with ``workers > 1`` reads it.
    """

    id: str
    fn: Callable[..., Rows]
    needs: tuple[str, ...] = ()
    coords: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    cost: float = 1.0


@dataclasses.dataclass(frozen=True)
class Replicas:
    """Every replica's value stacked on a leading axis (the value of a :func:`replicas_artifact`).

    Args:
        labels: the replica labels (seeds), in the order of the replica axis.
        stacked: a pytree whose arrays carry the replica axis first.
    """

    labels: tuple[Any, ...]
    stacked: Any

    def of(self, label) -> Any:
        """The slice of replica `label` (arrays without a replica axis, and non-arrays, as they are)."""
        if label not in self.labels:
            raise ValueError(f"replica must be one of {list(self.labels)}, got {label!r}")
        import jax  # as equinox_artifact: the kit itself imports no JAX until a study needs it

        index = self.labels.index(label)
        return jax.tree.map(lambda leaf: leaf[index] if hasattr(leaf, "ndim") and leaf.ndim else leaf, self.stacked)


class _Interrupted(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C."""


@contextlib.contextmanager
def _sigterm_as_interrupt():
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise _Interrupted("SIGTERM")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Resolver:
    """Builds, saves, loads and caches the artifacts of one session."""

    def __init__(self, store: ResultStore | None, artifacts: Mapping[str, Artifact], progress: Progress):
        self.store, self.artifacts, self.progress = store, artifacts, progress
        self.values: dict[str, Any] = {}
        self.failures: dict[str, str] = {}
        self.digests: dict[str, str] = {}
        self._lock = threading.RLock()  # cells on several threads: each artifact built once

    def get(self, name: str) -> Any:
        if name == "progress":
            return self.progress
        with self._lock:
            return self._get(name)

    def _get(self, name: str) -> Any:
        if name in self.failures:
            raise Diverged(self.failures[name])
        if name in self.values:
            return self.values[name]
        artifact = self.artifacts[name]
        with self._file_lock(name):
            record = self.store.artifact_record(name) if self.store is not None else None
            if record is not None and record.get("status") == "diverged":
                self.failures[name] = f"{name} diverged: {record.get('reason')}"
                raise Diverged(self.failures[name])
            if record is not None:
                data = self.store.load_artifact(name)
                try:
                    value = artifact.decode(data)
                except Exception as error:
                    path = self.store.artifacts_dir / name
                    raise DamagedFileError(path, f"cannot be decoded ({type(error).__name__}: {error})") from None
                self.digests[name] = record["sha256"]
            else:
                needs = {need: self.get(need) for need in artifact.needs}
                try:
                    value = artifact.build(**needs)
                except Diverged as error:
                    self.failures[name] = f"{name} diverged: {error}"
                    if self.store is not None:
                        self.store.save_artifact(name, b"", status="diverged", reason=str(error))
                    raise Diverged(self.failures[name]) from None
                data = artifact.encode(value)
                if self.store is not None:
                    self.digests[name] = self.store.save_artifact(name, data)
                    value = artifact.decode(data)  # what later sessions will load, exactly
        self.values[name] = value
        return value

    @contextlib.contextmanager
    def _file_lock(self, name: str):
        # Processes of a multi-host run share the directory: one builds, the others wait.
        if self.store is None or fcntl is None:
            yield
            return
        with open(self.store.artifacts_dir / f".{name}.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _with_coords(frame: pd.DataFrame, coords: Mapping[str, Any]) -> pd.DataFrame:
    for position, (name, value) in enumerate(coords.items()):
        if name not in frame.columns:
            frame.insert(min(position, len(frame.columns)), name, value)
    return frame


def _compute(cell: Cell, resolver: _Resolver, progress: Progress):
    """Run one cell (on whichever thread calls): (frame, status, wall time, phases, artifact digests)."""
    progress.start_cell(cell.id)
    started = time.perf_counter()
    try:
        needs = {need: resolver.get(need) for need in cell.needs}
        frame = rows_to_frame(cell.fn(**needs))
        status = "ok"
    except Diverged as error:
        frame = pd.DataFrame([{"metric": "diverged", "value": 1.0, "reason": str(error)}])
        status = "diverged"
    used = {need: resolver.digests[need] for need in cell.needs if need in resolver.digests}
    return _with_coords(frame, cell.coords), status, time.perf_counter() - started, dict(progress.phases), used


def _run_at_once(pending: Sequence[Cell], workers: int, compute: Callable, save: Callable) -> None:
    """Run `pending` on `workers` threads, largest declared cost first, saving each as it finishes.

    The driver thread starts a cell only when one has finished and been saved, so after
    an exception (a cell's, Ctrl-C or SIGTERM) no further cell starts: the running ones
    are waited for, those that succeeded are saved, and the exception propagates."""
    order = iter(sorted(pending, key=lambda cell: -cell.cost))  # stable: ties keep the sweep's order
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cell")
    running: dict[concurrent.futures.Future, Cell] = {}

    def start_next() -> None:
        cell = next(order, None)
        if cell is not None:
            running[executor.submit(compute, cell)] = cell

    try:
        for _ in range(workers):
            start_next()
        while running:
            finished, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in finished:
                save(running.pop(future), *future.result())
                start_next()
    except BaseException:
        concurrent.futures.wait(running)  # a second Ctrl-C here abandons them
        for future, cell in running.items():
            if future.exception() is None:  # exception() returns a cell's KeyboardInterrupt too, not raises it
                with contextlib.suppress(Exception):
                    save(cell, *future.result())
        raise
    finally:
        executor.shutdown(wait=False)


def run_cells(
    store: ResultStore | None,
    cells: Sequence[Cell],
    *,
    artifacts: Sequence[Artifact] = (),
    progress: Progress | None = None,
    process_index: int = 0,
    process_count: int = 1,
    metadata: Mapping[str, Any] | None = None,
    workers: int = 1,
    runtime: Runtime | None = None,
) -> pd.DataFrame:
    """Run the cells not yet done, saving each as it finishes; close the store's session.

    Everything is checked before anything runs: ids safe and unique, every need known,
    the process partition valid. In a multi-host run (``process_count > 1``) cell ``i``
    (in the order given) runs on process ``i % process_count``; all share one results
    directory. The store's session is closed at the end, also on failure: status
    ``complete``, ``interrupted`` (Ctrl-C or SIGTERM) or ``failed`` with the error.

    Args:
        store: where to save; ``None`` runs every cell in memory and saves nothing.
        cells: the sweep.
        artifacts: what cells may need, by name.
        progress: the progress printer (default: one on stderr).
        process_index, process_count: this process's share of the sweep.
        metadata: extra facts for ``metadata.json``.
        workers: how many cells run at once on host threads (1: one after the other,
            in the order given); never changes a cell's rows.
        runtime: the command line's :class:`Runtime`; gives process_index,
            process_count and workers (then not to be passed separately).

    Returns:
        The saved rows of all done cells, in the order of ``cells`` (in memory: the rows
        of every cell).
    """
    if runtime is not None:
        if (process_index, process_count, workers) != (0, 1, 1):
            raise ValueError("pass process_index, process_count and workers either in runtime or separately, not both")
        process_index, process_count, workers = runtime.process_index, runtime.process_count, runtime.workers
    ids = [validate_cell_id(cell.id) for cell in cells]
    repeated = sorted({cell_id for cell_id in ids if ids.count(cell_id) > 1})
    if repeated:
        raise ValueError(f"cell ids must be unique, repeated: {repeated}")
    by_name = {artifact.name: artifact for artifact in artifacts}
    for artifact in artifacts:
        validate_cell_id(artifact.name, what="artifact name")
    for owner, needs in [(c.id, c.needs) for c in cells] + [(a.name, a.needs) for a in artifacts]:
        unknown = [need for need in needs if need not in by_name and need not in _BUILT_INS]
        if unknown:
            raise ValueError(f"{owner} needs {unknown}, which no artifact provides (known: {sorted(by_name)})")
    if not (isinstance(process_count, int) and process_count >= 1 and 0 <= process_index < process_count):
        raise ValueError(f"process_index must be in [0, process_count={process_count}), got {process_index}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a whole number >= 1, got {workers!r}")
    for cell in cells:
        if not (isinstance(cell.cost, (int, float)) and math.isfinite(cell.cost) and cell.cost >= 0):
            raise ValueError(f"cell {cell.id!r}: cost must be a finite number >= 0, got {cell.cost!r}")
    mine = [cell for i, cell in enumerate(cells) if i % process_count == process_index]
    done = {cell.id for cell in mine if store is not None and store.is_done(cell.id)}
    if progress is None:
        progress = Progress(len(mine), len(done))
    progress.workers = workers
    if done:
        progress.note(f"resuming {store.run_dir}: {len(done)}/{len(mine)} cells already done")
    resolver = _Resolver(store, by_name, progress)
    in_memory: dict[str, pd.DataFrame] = {}

    def save(cell: Cell, frame, cell_status, wall_time_s, phases, used) -> None:
        if store is None:
            in_memory[cell.id] = frame
        else:
            store.save_cell(cell.id, frame, wall_time_s=wall_time_s, status=cell_status, phases=phases, artifacts=used)
        progress.finish_cell(cell.id, wall_time_s, status=cell_status)

    pending = [cell for cell in mine if cell.id not in done]
    status, failure = "failed", None
    try:
        with _sigterm_as_interrupt():
            if workers == 1:
                for cell in pending:
                    save(cell, *_compute(cell, resolver, progress))
            else:
                _run_at_once(pending, workers, lambda cell: _compute(cell, resolver, progress), save)
        status = "complete"
    except KeyboardInterrupt as error:
        status, failure = ("interrupted (SIGTERM)" if isinstance(error, _Interrupted) else "interrupted"), error
        raise
    except BaseException as error:
        failure = error
        raise
    finally:
        if store is not None:
            store.close(status, error=failure, extra={
                "cells_total": len(ids),
                "cells_this_process": len(mine),
                "cells_done": sum(store.is_done(cell_id) for cell_id in ids),
                **(metadata or {}),
            })
    if store is not None:
        return store.table(ids)
    frames = [in_memory[cell.id] for cell in mine]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def equinox_artifact(name: str, build: Callable[..., Any], like: Callable[[], Any], *, needs: tuple[str, ...] = ()) -> Artifact:
    """An :class:`Artifact` holding an Equinox module (or any PyTree of arrays).

    Args:
        name: its file name, e.g. ``"epsilon_network.eqx"``.
        build: trains and returns the module.
        like: returns a module of the same structure (the template its leaves are read
            into; a truncated or reshaped file fails to decode and is reported by name).
        needs: what ``build`` takes.
    """
    import io

    import equinox as eqx

    def encode(module: Any) -> bytes:
        buffer = io.BytesIO()
        eqx.tree_serialise_leaves(buffer, module)
        return buffer.getvalue()

    def decode(data: bytes) -> Any:
        buffer = io.BytesIO(data)
        module = eqx.tree_deserialise_leaves(buffer, like())
        if buffer.read(1):
            raise ValueError("trailing bytes after the last leaf")
        return module

    return Artifact(name=name, build=build, encode=encode, decode=decode, needs=needs)


def replicas_artifact(name: str, build: Callable[..., Any], like: Callable[[], Any], *, replicas: Sequence[Any],
                      needs: tuple[str, ...] = ()) -> Artifact:
    """An Equinox :class:`Artifact` holding every replica's value at once, as :class:`Replicas`.

    For a training of all seeds as one vmapped program: the stacked result is built once
    through the store like any artifact (saved with its SHA-256, verified on load, so a
    resumed run reads it instead of training again), and what needs one seed names this
    artifact in its ``needs`` and takes ``.of(seed)``; e.g. a per-seed artifact that checks
    that seed's training for divergence.

    Args:
        name: its file name, e.g. ``"networks.eqx"``.
        build: trains every replica; returns a pytree whose arrays carry the replica
            axis first, in the order of `replicas`; called with what `needs` names.
        like: returns ONE replica's value (the template its leaves are read into; every
            array gains the replica axis).
        replicas: the replica labels (seeds), in the order of the replica axis.
        needs: what `build` takes.
    """
    labels = tuple(replicas)

    def stacked_like() -> Any:
        import jax
        import jax.numpy as jnp

        return jax.tree.map(lambda leaf: jnp.broadcast_to(leaf, (len(labels), *leaf.shape)) if hasattr(leaf, "shape") else leaf,
                            like())

    stacked = equinox_artifact(name, build, stacked_like, needs=needs)
    return Artifact(
        name=name,
        build=lambda **given: Replicas(labels, build(**given)),
        encode=lambda value: stacked.encode(value.stacked),
        decode=lambda data: Replicas(labels, stacked.decode(data)),
        needs=needs,
    )
