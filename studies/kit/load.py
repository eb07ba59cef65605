"""Reading a saved run back, for figures and analysis: ``load_run(run_dir)``.

Reads ``config.json`` and the verified ``cells/*.csv`` only (``results.csv`` is a
convenience copy: a run killed by SIGTERM or SIGKILL may not have one, and its figures
must still be drawn). Every cell is checked against its record (checksum, row count,
config hash); a damaged file raises :class:`DamagedFileError` naming it. Never writes.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import pandas as pd

from studies.kit.config import config_hash
from studies.kit.store import DamagedFileError, read_cell, read_json

__all__ = ["Run", "WrongStudyError", "load_run"]


class WrongStudyError(ValueError):
    """A run directory holds another study's results."""


@dataclasses.dataclass(frozen=True)
class Run:
    """A saved run: its config (as saved), its verified rows and its records."""

    run_dir: pathlib.Path
    study: str | None
    config: dict[str, Any]
    table: pd.DataFrame
    records: dict[str, dict[str, Any]]

    def metric(self, name: str) -> pd.DataFrame:
        """The rows of one metric."""
        if "metric" not in self.table.columns:
            return self.table.iloc[0:0]
        return self.table[self.table["metric"] == name]


def load_run(run_dir: str | pathlib.Path, *, study: str | None = None) -> Run:
    """Load a run's config and verified cells.

    Args:
        run_dir: ``results/<study>/<run-name>``.
        study: the study the caller expects; a run of another study is refused.

    Raises:
        FileNotFoundError: no ``config.json`` or no saved cell (names what is missing).
        DamagedFileError: a damaged ``config.json``, cell or record (names the file).
        WrongStudyError: the cells were written by another study.
    """
    run_dir = pathlib.Path(run_dir)
    config_path = run_dir / "config.json"
    if not config_path.exists():
        raise FileNotFoundError(f"{run_dir} is not a saved run: {config_path} is missing")
    config = read_json(config_path)
    if not isinstance(config, dict):
        raise DamagedFileError(config_path, "does not hold a config object")
    expected = config_hash(config)
    csv_paths = sorted((run_dir / "cells").glob("*.csv"))
    if not csv_paths:
        raise FileNotFoundError(f"no saved cells in {run_dir} (expected {run_dir / 'cells'}/*.csv): run the study first")
    frames, records, studies = [], {}, set()
    for path in csv_paths:
        frames.append(read_cell(path, expected_config_hash=expected))
        record = read_json(path.with_suffix(".json"))
        records[path.stem] = record
        studies.add(record.get("study"))
    found = studies.pop() if len(studies) == 1 else None
    if study is not None and studies | {found} != {study}:
        raise WrongStudyError(f"{run_dir} holds results of {sorted(map(str, studies | {found}))}, not of {study!r}")
    table = pd.concat(frames, ignore_index=True)
    return Run(run_dir=run_dir, study=found, config=config, table=table, records=records)
