"""studies.kit.store: verified cells, refused foreign configs, artifacts, lock, sessions."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile

import pandas as pd
import pytest

from studies import kit


@dataclasses.dataclass(frozen=True)
class Config:
    n: int = kit.config_field(3, "n")


def _store(path, config=Config()):
    return kit.ResultStore(path, config, study="toy")


def _saved(path, cells=("a", "b"), config=Config()):
    store = _store(path, config)
    for i, cell in enumerate(cells):
        store.save_cell(cell, [{"metric": "x", "value": float(i)}, {"metric": "y", "value": 0.5}], wall_time_s=0.1)
    store.close("complete")
    return path


def test_cells_round_trip_with_their_record(tmp_path):
    _saved(tmp_path / "r")
    store = _store(tmp_path / "r")
    assert store.done_cells() == ["a", "b"]
    record = store.cell_record("a")
    assert record["rows"] == 2 and record["config_hash"] == kit.config_hash(Config()) and record["study"] == "toy"
    assert list(store.table()["value"]) == [0.0, 0.5, 1.0, 0.5]
    with pytest.raises(ValueError, match="no rows"):
        store.save_cell("c", [], wall_time_s=0.0)
    with pytest.raises(ValueError, match="cell id"):
        store.save_cell("../x", [{"v": 1}], wall_time_s=0.0)
    store.close("complete")


@pytest.mark.parametrize("damage", ["truncate", "empty", "edit", "drop-record"])
def test_a_damaged_cell_is_named_moved_aside_and_not_done(tmp_path, damage, capsys):
    run = _saved(tmp_path / "r")
    csv = run / "cells" / "a.csv"
    if damage == "truncate":
        csv.write_bytes(csv.read_bytes()[:15])
    elif damage == "empty":
        csv.write_bytes(b"")
    elif damage == "edit":
        csv.write_text(csv.read_text().replace("0.5", "0.6"))
    else:
        (run / "cells" / "a.json").unlink()
    store = _store(run)
    assert store.done_cells() == ["b"]
    assert "a.csv" in capsys.readouterr().err or damage == "drop-record"
    assert any((run / "cells" / "damaged").iterdir())
    store.close("complete")
    assert kit.load_run(run).records.keys() == {"b"}  # the damaged cell is out of the way until redone


def test_load_run_names_a_damaged_cell(tmp_path):
    run = _saved(tmp_path / "r")
    csv = run / "cells" / "b.csv"
    csv.write_bytes(csv.read_bytes()[:-4])
    with pytest.raises(kit.DamagedFileError, match=r"b\.csv.*checksum"):
        kit.load_run(run)


def test_a_lost_config_json_does_not_let_another_config_adopt_the_cells(tmp_path):
    run = _saved(tmp_path / "r")
    (run / "config.json").unlink()
    with pytest.raises(kit.ConfigMismatchError, match="config.json is missing"):
        _store(run, Config(n=4))
    # The config that made them may take them back (and config.json is rewritten).
    store = _store(run)
    assert store.done_cells() == ["a", "b"] and (run / "config.json").exists()
    store.close("complete")


def test_another_config_is_refused_and_garbage_config_json_is_named(tmp_path):
    run = _saved(tmp_path / "r")
    with pytest.raises(kit.ConfigMismatchError, match="n: saved 3, now 4"):
        _store(run, Config(n=4))
    (run / "config.json").write_text("{not json")
    with pytest.raises(kit.DamagedFileError, match="config.json"):
        _store(run)


def test_artifacts_are_verified_truncated_or_swapped_files_are_refused(tmp_path):
    store = _store(tmp_path / "r")
    store.save_artifact("net.eqx", b"0123456789")
    store.save_artifact("other.eqx", b"abcdefghij")
    assert store.load_artifact("net.eqx") == b"0123456789"
    path = store.artifacts_dir / "net.eqx"
    path.write_bytes(b"01234")
    with pytest.raises(kit.DamagedFileError, match=r"net\.eqx.*checksum"):
        store.load_artifact("net.eqx")
    path.write_bytes((store.artifacts_dir / "other.eqx").read_bytes())  # same size, other content
    with pytest.raises(kit.DamagedFileError, match="net.eqx"):
        store.load_artifact("net.eqx")
    with pytest.raises(FileNotFoundError, match="missing.eqx"):
        store.load_artifact("missing.eqx")
    store.close("complete")


def test_a_second_process_is_told_who_holds_the_run(tmp_path):
    store = _store(tmp_path / "r")
    with pytest.raises(kit.RunLockedError, match=f"pid {os.getpid()}"):
        _store(tmp_path / "r")
    store.close("complete")
    _store(tmp_path / "r").close("complete")  # released on close


def test_an_unwritable_run_directory_is_found_before_any_compute(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    with pytest.raises(kit.RunDirectoryError, match="not writable"):
        _store(tmp_path / "file" / "r")

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)  # root ignores chmod: simulate a read-only mount
    with pytest.raises(kit.RunDirectoryError, match="Permission denied"):
        _store(tmp_path / "ro")


def test_sessions_are_recorded_and_a_killed_one_is_marked(tmp_path):
    run = tmp_path / "r"
    first = _store(run)  # never closed: as if killed with SIGKILL
    first._release_lock()
    second = _store(run)
    second.close("failed", error=RuntimeError("boom"))
    sessions = json.loads((run / "metadata.json").read_text())["sessions"]
    assert [s["status"] for s in sessions] == ["ended without closing (killed?)", "failed"]
    assert sessions[1]["error"]["type"] == "RuntimeError" and "boom" in sessions[1]["error"]["message"]


def test_results_csv_is_rebuilt_from_cells_on_open(tmp_path):
    run = _saved(tmp_path / "r")
    (run / "results.csv").unlink()
    _store(run).close("complete")
    assert len(pd.read_csv(run / "results.csv")) == 4


def test_a_damaged_metadata_json_is_moved_aside_not_fatal(tmp_path, capsys):
    run = _saved(tmp_path / "r")
    (run / "metadata.json").write_text("{")
    _store(run).close("complete")
    assert "metadata.json" in capsys.readouterr().err
    assert list(run.glob("metadata.damaged-*.json"))


def test_processes_of_one_multi_host_run_keep_each_others_sessions(tmp_path):
    """Each process of a multi-host run writes metadata.json; none may drop another's session,
    and a running session of another process index is not taken for a killed one."""
    run = tmp_path / "r"
    first = kit.ResultStore(run, Config(), study="toy", process_index=0)
    second = kit.ResultStore(run, Config(), study="toy", process_index=1)  # opens while the first runs
    first.close("complete")
    second.close("complete")
    sessions = json.loads((run / "metadata.json").read_text())["sessions"]
    assert sorted((s["process_index"], s["status"]) for s in sessions) == [(0, "complete"), (1, "complete")]
