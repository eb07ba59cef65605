"""One run's directory: its config, a verified CSV per finished cell, artifacts, sessions.

Layout of ``run_dir``::

    config.json             the exact config (config_to_dict)
    cells/<cell_id>.csv     the tidy rows of each finished cell
    cells/<cell_id>.json    its record: config hash, row count, SHA-256 of the CSV, status
                            (ok or diverged), wall time, phase times, git revision, extra
    cells/damaged/          cells that failed verification, moved aside (and redone)
    artifacts/<name>        trained networks and other files cells share; artifacts/<name>.json
                            holds its SHA-256, size and the config hash that made it
    results.csv             all verified cells concatenated, rebuilt on every open and close
    metadata.json           provenance and one entry per session (start, end, status, error)
    .lock                   held (flock) by the process running the run

A cell is done when its CSV and record exist, the record was written under this config's
hash, and the CSV's bytes match the record's checksum and row count. Anything else is
damage: the cell is moved to ``cells/damaged/`` with a warning that names the file, and
computed again. An artifact whose bytes do not match its record raises
:class:`DamagedFileError` naming the file: a truncated or swapped network is never used.
Every file is written to a temporary file in the same directory, fsynced and renamed
over the target, so a crash leaves the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pathlib
import re
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from studies.kit.config import config_hash, config_to_dict, to_json_value
from studies.kit.provenance import git_revision, machine_facts, now, package_versions

try:  # POSIX advisory locks; elsewhere runs are not locked (and say so in metadata)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

def _session_key(session: Mapping[str, Any]) -> tuple:
    return (session.get("id"), session.get("started_at"), session.get("pid"), session.get("process_index", 0))


@contextlib.contextmanager
def _exclusive(path: pathlib.Path):
    """Hold an exclusive flock on ``path`` (a read-modify-write shared by processes)."""
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


__all__ = [
    "ConfigMismatchError",
    "DamagedFileError",
    "ResultStore",
    "RunDirectoryError",
    "RunLockedError",
    "Rows",
    "read_cell",
    "read_json",
    "rows_to_frame",
    "validate_cell_id",
    "write_bytes_atomically",
    "write_text_atomically",
]

Rows = list[dict[str, Any]] | pd.DataFrame

# Letters, digits and "-_=." only, not starting with "." (hidden files are our temp files).
_SAFE_NAME = re.compile(r"[A-Za-z0-9_=\-][A-Za-z0-9_=.\-]*")

# pandas >= 3 reads floats back exactly by default (and deprecates the option).
_EXACT_FLOATS = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}


class ConfigMismatchError(ValueError):
    """A run directory already holds results of a different config."""


class DamagedFileError(ValueError):
    """A saved file is unreadable, truncated or does not match its checksum; names the file."""

    def __init__(self, path: os.PathLike | str, problem: str):
        self.path = pathlib.Path(path)
        super().__init__(f"{self.path}: {problem}")


class RunLockedError(RuntimeError):
    """Another process is running the same run directory."""


class RunDirectoryError(RuntimeError):
    """The run directory cannot be created or written."""


def validate_cell_id(cell_id: str, *, what: str = "cell id") -> str:
    """``cell_id`` if it is a safe file name: 1-200 of letters, digits, '-_=.', not starting with '.'."""
    if not isinstance(cell_id, str) or not _SAFE_NAME.fullmatch(cell_id) or len(cell_id) > 200:
        raise ValueError(
            f"{what} must be 1-200 characters from letters, digits, '-', '_', '=', '.' "
            f"and not start with '.', got {cell_id!r}"
        )
    return cell_id


def rows_to_frame(rows: Rows) -> pd.DataFrame:
    """Tidy rows (list of dicts or DataFrame) as a DataFrame of scalars.

    Raises:
        TypeError: for a value that is not a scalar, naming the column.
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


# --------------------------------------------------------------------------------------
# Files


def write_bytes_atomically(path: os.PathLike | str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new, whole."""
    path = pathlib.Path(path)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        # Also on KeyboardInterrupt: never leave the temporary file behind.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_directory(path.parent)


def write_text_atomically(path: os.PathLike | str, text: str) -> None:
    """:func:`write_bytes_atomically` for UTF-8 text."""
    write_bytes_atomically(path, text.encode("utf-8"))


def _fsync_directory(directory: pathlib.Path) -> None:
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


def read_json(path: os.PathLike | str) -> Any:
    """A JSON file's content; :class:`DamagedFileError` naming the file if it does not parse."""
    path = pathlib.Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DamagedFileError(path, f"not valid JSON ({error}); delete it or restore it from a backup") from None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_cell(csv_path: os.PathLike | str, *, expected_config_hash: str | None = None) -> pd.DataFrame:
    """A saved cell's rows, verified against its record (checksum, row count, config hash).

    Args:
        csv_path: ``cells/<cell_id>.csv``; its record is ``cells/<cell_id>.json``.
        expected_config_hash: the hash the record must carry (None: not checked).

    Raises:
        DamagedFileError: naming the file, if the record is missing or unreadable, the
            CSV's bytes do not match the checksum, or its row count differs.
        ConfigMismatchError: if the record carries another config's hash.
    """
    csv_path = pathlib.Path(csv_path)
    record_path = csv_path.with_suffix(".json")
    if not record_path.exists():
        raise DamagedFileError(record_path, f"missing: {csv_path.name} cannot be verified")
    record = read_json(record_path)
    if not isinstance(record, dict) or "sha256" not in record or "rows" not in record:
        raise DamagedFileError(record_path, "not a cell record (no checksum or row count)")
    if expected_config_hash is not None and record.get("config_hash") != expected_config_hash:
        raise ConfigMismatchError(
            f"{csv_path} was computed under config hash {record.get('config_hash')!r}, "
            f"not this run's {expected_config_hash!r}"
        )
    try:
        data = csv_path.read_bytes()
    except FileNotFoundError:
        raise DamagedFileError(csv_path, "missing (its record exists)") from None
    if _sha256(data) != record["sha256"]:
        raise DamagedFileError(csv_path, f"checksum mismatch: the file was truncated or changed after it was saved ({len(data)} bytes)")
    try:
        frame = pd.read_csv(io.BytesIO(data), **_EXACT_FLOATS)
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as error:
        raise DamagedFileError(csv_path, f"unreadable CSV ({error})") from None
    if len(frame) != record["rows"]:
        raise DamagedFileError(csv_path, f"holds {len(frame)} rows, its record says {record['rows']}")
    return frame


# --------------------------------------------------------------------------------------
# The store


class ResultStore:
    """A run directory opened for writing: locked, checked writable, config verified.

    Args:
        run_dir: the run's directory; created if missing.
        config: the study's config (a dataclass instance).
        study: the study's name (recorded, and checked by figure loaders).
        extra_metadata: JSON-serialisable facts added to ``metadata.json`` (preset, argv).
        process_index: this process's index in a multi-host run (each holds its own lock).

    Raises:
        RunDirectoryError: if the directory cannot be created or written (before any
            compute: a read-only directory is found here, not after a cell ran).
        RunLockedError: if another process holds the run (says which pid and host).
        DamagedFileError: if ``config.json`` is not valid JSON (names it).
        ConfigMismatchError: if ``config.json``, or with it lost, any saved cell, holds
            another config: results of two configs are never mixed in one run.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        config: Any,
        *,
        study: str,
        extra_metadata: Mapping[str, Any] | None = None,
        process_index: int = 0,
    ):
        self.run_dir = pathlib.Path(run_dir)
        self.config = config
        self.study = study
        self.config_dict = json.loads(json.dumps(config_to_dict(config)))
        self.config_hash = config_hash(self.config_dict)
        self.extra_metadata = dict(extra_metadata or {})
        self.process_index = int(process_index)
        self.cells_dir = self.run_dir / "cells"
        self.artifacts_dir = self.run_dir / "artifacts"
        self._started = time.perf_counter()
        self._git = git_revision()
        self._lock_file = None
        self._closed = False
        self._verified: dict[str, tuple] = {}  # cell id -> file stamps when it last verified
        self._killed: set[tuple] = set()  # sessions found running at open, of this process index
        self._prepare_directory()
        try:
            self._acquire_lock()
            self._check_config()
            self._sessions = self._previous_sessions()
            self.session = {
                "id": uuid.uuid4().hex[:12],
                "started_at": now(),
                "pid": os.getpid(),
                "process_index": self.process_index,
                "status": "running",
                "git_commit": self._git["commit"],
                "argv": self.extra_metadata.get("argv"),
            }
            self.write_metadata()
            if self.done_cells():
                self.write_table()
        except BaseException:
            self._release_lock()
            raise

    # -- opening -----------------------------------------------------------------------

    def _prepare_directory(self) -> None:
        try:
            self.cells_dir.mkdir(parents=True, exist_ok=True)
            self.artifacts_dir.mkdir(exist_ok=True)
            for directory in (self.run_dir, self.cells_dir, self.artifacts_dir):
                descriptor, probe = tempfile.mkstemp(dir=directory, prefix=".write-probe.")
                os.close(descriptor)
                os.unlink(probe)
        except OSError as error:
            raise RunDirectoryError(
                f"run directory {self.run_dir} is not writable ({error.strerror or error}); "
                f"nothing was computed: choose another --results-dir or fix its permissions"
            ) from None

    def _acquire_lock(self) -> None:
        if fcntl is None:  # pragma: no cover
            return
        suffix = "" if self.process_index == 0 else f"-{self.process_index}"
        path = self.run_dir / f".lock{suffix}"
        handle = open(path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "an unknown process"
            handle.close()
            raise RunLockedError(
                f"{self.run_dir} is being run by another process ({holder}); wait for it to "
                f"finish, or choose another --run-name"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {machine_facts()['host']} since {now()}")
        handle.flush()
        self._lock_file = handle

    def _release_lock(self) -> None:
        if self._lock_file is not None:
            with contextlib.suppress(OSError):
                self._lock_file.seek(0)
                self._lock_file.truncate()
                fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    def _check_config(self) -> None:
        config_path = self.run_dir / "config.json"
        if config_path.exists():
            saved = read_json(config_path)
            if saved != self.config_dict:
                raise ConfigMismatchError(_mismatch_message(self.run_dir, saved, self.config_dict))
            return
        # No config.json: cells already here must have been computed under this config.
        foreign = []
        for record_path in sorted(self.cells_dir.glob("*.json")):
            try:
                record = read_json(record_path)
            except DamagedFileError:
                continue  # verified (and moved aside) cell by cell later
            if isinstance(record, dict) and record.get("config_hash") != self.config_hash:
                foreign.append(f"{record_path.name} (config hash {record.get('config_hash')!r})")
        if foreign:
            raise ConfigMismatchError(
                f"{config_path} is missing and {self.cells_dir} holds cells of another config "
                f"(this config's hash is {self.config_hash!r}): {', '.join(foreign[:5])}"
                f"{' ...' if len(foreign) > 5 else ''}; choose another --run-name"
            )
        write_text_atomically(config_path, json.dumps(self.config_dict, indent=2) + "\n")

    def _previous_sessions(self) -> list[dict[str, Any]]:
        path = self.run_dir / "metadata.json"
        if not path.exists():
            return []
        try:
            metadata = read_json(path)
        except DamagedFileError as error:
            aside = path.with_name(f"metadata.damaged-{int(time.time())}.json")
            os.replace(path, aside)
            _warn(f"{error}; moved to {aside.name}, its session history is lost")
            return []
        sessions = metadata.get("sessions", []) if isinstance(metadata, dict) else []
        for session in sessions:
            if session.get("status") == "running" and session.get("process_index", 0) == self.process_index:
                # A session of this process index that never closed: killed (SIGKILL, power
                # loss, OOM killer). Other process indices of a multi-host run may be running.
                session["status"] = "ended without closing (killed?)"
                self._killed.add(_session_key(session))
        return sessions

    def _merged_sessions(self, mine: dict[str, Any]) -> list[dict[str, Any]]:
        """Every session on disk now (other processes of a multi-host run write theirs too),
        this one's replaced by ``mine``; call under the metadata lock."""
        path = self.run_dir / "metadata.json"
        try:
            metadata = read_json(path) if path.exists() else {}
        except DamagedFileError:
            metadata = {}
        on_disk = metadata.get("sessions", []) if isinstance(metadata, dict) else []
        known = {_session_key(s): s for s in [*self._sessions, *on_disk] if isinstance(s, dict)}
        for key in self._killed:
            if key in known and known[key].get("status") == "running":
                known[key] = dict(known[key], status="ended without closing (killed?)")
        known.pop(_session_key(mine), None)
        return sorted(known.values(), key=lambda s: str(s.get("started_at"))) + [mine]

    # -- cells -------------------------------------------------------------------------

    def _csv_path(self, cell_id: str) -> pathlib.Path:
        return self.cells_dir / f"{validate_cell_id(cell_id)}.csv"

    def is_done(self, cell_id: str) -> bool:
        """Whether the cell is saved and verifies; a damaged one is moved aside (warned) and is not done."""
        csv_path = self._csv_path(cell_id)
        if not csv_path.exists() and not csv_path.with_suffix(".json").exists():
            return False
        stamp = _stamp(csv_path)
        if stamp is not None and self._verified.get(cell_id) == stamp:
            return True
        try:
            read_cell(csv_path, expected_config_hash=self.config_hash)
        except (DamagedFileError, ConfigMismatchError) as error:
            self._verified.pop(cell_id, None)
            self._quarantine(cell_id, str(error))
            return False
        self._verified[cell_id] = stamp
        return True

    def _quarantine(self, cell_id: str, why: str) -> None:
        damaged = self.cells_dir / "damaged"
        damaged.mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        for suffix in (".csv", ".json"):
            path = self.cells_dir / f"{cell_id}{suffix}"
            if path.exists():
                os.replace(path, damaged / f"{cell_id}.{stamp}{suffix}")
        _warn(f"damaged cell {cell_id!r}: {why}; moved to {damaged}, it will be computed again")

    def done_cells(self) -> list[str]:
        """The ids of all saved cells that verify, sorted."""
        ids = sorted({path.stem for path in self.cells_dir.glob("*.csv")} | {p.stem for p in self.cells_dir.glob("*.json")})
        return [cell_id for cell_id in ids if _SAFE_NAME.fullmatch(cell_id) and self.is_done(cell_id)]

    def save_cell(
        self,
        cell_id: str,
        rows: Rows,
        *,
        wall_time_s: float,
        status: str = "ok",
        phases: Mapping[str, float] | None = None,
        artifacts: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """Save a finished cell's rows and its record (checksum, row count, config hash).

        Args:
            cell_id: a filesystem-safe id, e.g. ``"K=4_p=2_q=5"``.
            rows: its tidy rows, at least one.
            wall_time_s: seconds the cell took.
            status: ``"ok"`` or ``"diverged"`` (a cell whose training diverged is done,
                and its rows say so).
            phases: seconds spent per phase (compile, train, evaluate, ...).
            artifacts: the SHA-256 of each artifact the cell used, by name.
            extra: JSON-serialisable facts about the cell.

        Raises:
            ValueError: for an unsafe id or no rows.
            TypeError: for a non-scalar row value.
        """
        csv_path = self._csv_path(cell_id)
        frame = rows_to_frame(rows)
        if frame.empty:
            raise ValueError(f"cell {cell_id!r} produced no rows; a saved cell needs at least one")
        data = frame.to_csv(index=False).encode("utf-8")
        record = {
            "study": self.study,
            "cell_id": cell_id,
            "config_hash": self.config_hash,
            "rows": len(frame),
            "sha256": _sha256(data),
            "status": status,
            "wall_time_s": float(wall_time_s),
            "phases_s": {k: float(v) for k, v in (phases or {}).items()},
            "artifacts": dict(artifacts or {}),
            "finished_at": now(),
            "process_index": self.process_index,
            "git": {"commit": self._git["commit"], "dirty": self._git["dirty"]},
            "extra": to_json_value(dict(extra or {}), "extra"),
        }
        # The CSV first, then the record that marks it done: a crash in between leaves a
        # CSV without a record, which fails verification and is computed again.
        write_bytes_atomically(csv_path, data)
        write_text_atomically(csv_path.with_suffix(".json"), json.dumps(record, indent=2) + "\n")

    def cell_table(self, cell_id: str) -> pd.DataFrame:
        """The verified rows of one saved cell."""
        return read_cell(self._csv_path(cell_id), expected_config_hash=self.config_hash)

    def cell_record(self, cell_id: str) -> dict[str, Any]:
        """The record of one saved cell (see :meth:`save_cell`)."""
        return read_json(self._csv_path(cell_id).with_suffix(".json"))

    def table(self, cell_ids: Sequence[str] | None = None) -> pd.DataFrame:
        """The verified rows of the given cells (default: every saved cell), concatenated."""
        ids = self.done_cells() if cell_ids is None else [c for c in cell_ids if self.is_done(c)]
        frames = [self.cell_table(cell_id) for cell_id in ids]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def write_table(self, cell_ids: Sequence[str] | None = None) -> pathlib.Path:
        """Write :meth:`table` to ``results.csv`` atomically and return its path."""
        path = self.run_dir / "results.csv"
        write_text_atomically(path, self.table(cell_ids).to_csv(index=False))
        return path

    # -- artifacts ---------------------------------------------------------------------

    def _artifact_path(self, name: str) -> pathlib.Path:
        return self.artifacts_dir / validate_cell_id(name, what="artifact name")

    def artifact_record(self, name: str) -> dict[str, Any] | None:
        """The record of a saved artifact (sha256, size, status), None if there is none."""
        path = self._artifact_path(name).with_name(f"{name}.json")
        return read_json(path) if path.exists() else None

    def save_artifact(self, name: str, data: bytes, *, status: str = "ok", reason: str | None = None) -> str:
        """Save an artifact's bytes with its checksum; returns the SHA-256.

        ``status="diverged"`` records that building it failed (``reason``), so that cells
        needing it are recorded as diverged instead of retrained on every rerun.
        """
        path = self._artifact_path(name)
        if status == "ok":
            write_bytes_atomically(path, data)
        digest = _sha256(data)
        record = {"sha256": digest, "bytes": len(data), "status": status, "reason": reason,
                  "config_hash": self.config_hash, "saved_at": now()}
        write_text_atomically(path.with_name(f"{name}.json"), json.dumps(record, indent=2) + "\n")
        return digest

    def load_artifact(self, name: str) -> bytes:
        """A saved artifact's bytes, verified against its checksum.

        Raises:
            FileNotFoundError: if it was never saved.
            DamagedFileError: naming the file if it is truncated, swapped or its record
                is unreadable or belongs to another config.
        """
        path = self._artifact_path(name)
        record = self.artifact_record(name)
        if record is None:
            raise FileNotFoundError(f"no artifact {name!r} in {self.artifacts_dir}")
        if record.get("config_hash") != self.config_hash:
            raise DamagedFileError(path.with_name(f"{name}.json"), "belongs to another config")
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise DamagedFileError(path, "missing (its record exists)") from None
        if _sha256(data) != record.get("sha256"):
            raise DamagedFileError(path, f"checksum mismatch: truncated or replaced after it was saved ({len(data)} bytes, record says {record.get('bytes')})")
        return data

    # -- metadata and closing ----------------------------------------------------------

    def cell_records(self) -> dict[str, dict[str, Any]]:
        """Each verified cell's record."""
        return {cell_id: self.cell_record(cell_id) for cell_id in self.done_cells()}

    def write_metadata(self, extra: Mapping[str, Any] | None = None) -> pathlib.Path:
        """Write ``metadata.json``: provenance, every session so far, per-cell times and phases."""
        records = self.cell_records()
        revisions = sorted({json.dumps(r.get("git"), sort_keys=True) for r in records.values() if "git" in r})
        phases: dict[str, float] = {}
        for record in records.values():
            for phase, seconds in record.get("phases_s", {}).items():
                phases[phase] = phases.get(phase, 0.0) + seconds
        session = dict(self.session, wall_time_s=time.perf_counter() - self._started, updated_at=now())
        path = self.run_dir / "metadata.json"
        with _exclusive(self.run_dir / ".metadata.lock"):
            return self._write_metadata(path, records, revisions, phases, session, extra)

    def _write_metadata(self, path, records, revisions, phases, session, extra) -> pathlib.Path:
        metadata = {
            "study": self.study,
            "config_hash": self.config_hash,
            "git": self._git,
            "cell_git_revisions": [json.loads(r) for r in revisions],
            "packages": package_versions(),
            **machine_facts(),
            "sessions": self._merged_sessions(session),
            "cells": {cell_id: r.get("wall_time_s") for cell_id, r in records.items()},
            "cells_diverged": sorted(c for c, r in records.items() if r.get("status") == "diverged"),
            "total_cell_wall_time_s": sum(r.get("wall_time_s") or 0.0 for r in records.values()),
            "phases_s": phases,
            "extra": to_json_value({**self.extra_metadata, **(extra or {})}, "extra"),
        }
        write_text_atomically(path, json.dumps(metadata, indent=2) + "\n")
        return path

    def close(self, status: str, *, error: BaseException | None = None, extra: Mapping[str, Any] | None = None) -> None:
        """End this session: record its status (and error), rebuild results.csv, unlock."""
        if self._closed:
            return
        self.session["status"] = status
        self.session["ended_at"] = now()
        if error is not None:
            self.session["error"] = {
                "type": type(error).__name__,
                "message": str(error)[:2000],
                "traceback": "".join(traceback.format_exception(error))[-4000:],
            }
        try:
            self.write_metadata(extra)
            if self.done_cells():
                self.write_table()
        finally:
            self._closed = True
            self._release_lock()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, kind, error, tb) -> None:
        self.close("complete" if error is None else "interrupted" if isinstance(error, KeyboardInterrupt) else "failed", error=error)

    def __repr__(self) -> str:
        return f"ResultStore({str(self.run_dir)!r})"


def _stamp(csv_path: pathlib.Path) -> tuple | None:
    """(mtime, size) of a cell's CSV and record: a file rewritten since it verified is checked again."""
    try:
        files = (csv_path.stat(), csv_path.with_suffix(".json").stat())
    except FileNotFoundError:
        return None
    return tuple((f.st_mtime_ns, f.st_size, f.st_ino) for f in files)


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


_MISSING = object()


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


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}
