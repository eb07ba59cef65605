"""studies.kit.cells: resume, needs and artifacts, divergence, interruption, partitioning."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import subprocess
import sys
import textwrap

import pytest

from studies import kit


@dataclasses.dataclass(frozen=True)
class Config:
    n: int = kit.config_field(3, "n")


def _store(path):
    return kit.ResultStore(path, Config(), study="toy")


def _artifact(calls, *, diverge=False):
    def build():
        calls.append("build")
        if diverge:
            raise kit.Diverged("loss became nan at step 7")
        return {"w": 2.0}

    return kit.Artifact("net.json", build, encode=lambda v: json.dumps(v).encode(), decode=lambda b: json.loads(b))


def test_cells_resume_and_an_artifact_is_built_once_then_loaded_verified(tmp_path):
    calls = []
    cells = [
        kit.Cell("free", lambda: [{"metric": "m", "value": 1.0}], coords={"K": 4}),
        kit.Cell("uses-net", lambda **needs: [{"metric": "w", "value": needs["net.json"]["w"]}], needs=("net.json",)),
        kit.Cell("uses-net-too", lambda **needs: [{"metric": "w", "value": needs["net.json"]["w"] + 1}], needs=("net.json",)),
    ]
    table = kit.run_cells(_store(tmp_path / "r"), cells, artifacts=[_artifact(calls)])
    assert calls == ["build"] and list(table["value"]) == [1.0, 2.0, 3.0]
    assert list(table["K"].fillna(-1)) == [4, -1, -1]  # coords added to the cell's rows
    record = json.loads((tmp_path / "r" / "cells" / "uses-net.json").read_text())
    assert len(record["artifacts"]["net.json"]) == 64
    # Resume: nothing runs, nothing is built.
    again = kit.run_cells(_store(tmp_path / "r"), [dataclasses.replace(c, fn=lambda **k: pytest.fail("reran")) for c in cells],
                          artifacts=[_artifact(calls)])
    assert calls == ["build"] and len(again) == 3


def test_a_damaged_artifact_is_named_not_used(tmp_path):
    calls = []
    cells = [kit.Cell(f"c{i}", lambda **needs: [{"value": needs["net.json"]["w"]}], needs=("net.json",)) for i in range(2)]
    store = _store(tmp_path / "r")
    with pytest.raises(KeyboardInterrupt):
        def interrupt_second(**needs):
            raise KeyboardInterrupt
        kit.run_cells(store, [cells[0], dataclasses.replace(cells[1], fn=interrupt_second)], artifacts=[_artifact(calls)])
    (tmp_path / "r" / "artifacts" / "net.json").write_text('{"w": 9.0}')  # swapped after saving
    with pytest.raises(kit.DamagedFileError, match=r"net\.json"):
        kit.run_cells(_store(tmp_path / "r"), cells, artifacts=[_artifact(calls)])


def test_divergence_is_recorded_and_the_sweep_goes_on(tmp_path):
    calls = []
    cells = [
        kit.Cell("needs-net", lambda **needs: pytest.fail("ran without its network"), needs=("net.json",), coords={"seed": 0}),
        kit.Cell("itself-diverges", lambda: (_ for _ in ()).throw(kit.Diverged("W1 = 1e6 > 75"))),
        kit.Cell("independent", lambda: [{"metric": "m", "value": 1.0}]),
    ]
    table = kit.run_cells(_store(tmp_path / "r"), cells, artifacts=[_artifact(calls, diverge=True)])
    diverged = table[table["metric"] == "diverged"]
    assert len(diverged) == 2 and "nan at step 7" in diverged["reason"].iloc[0]
    assert (table["metric"] == "m").sum() == 1
    metadata = json.loads((tmp_path / "r" / "metadata.json").read_text())
    assert metadata["cells_diverged"] == ["itself-diverges", "needs-net"]
    # A rerun does not retrain the diverged network: its failure is recorded.
    kit.run_cells(_store(tmp_path / "r"), cells, artifacts=[_artifact(calls, diverge=True)])
    assert calls == ["build"]


def test_an_exception_is_recorded_after_saving_what_finished(tmp_path):
    cells = [kit.Cell("ok", lambda: [{"value": 1.0}]), kit.Cell("bad", lambda: 1 / 0)]
    with pytest.raises(ZeroDivisionError):
        kit.run_cells(_store(tmp_path / "r"), cells)
    metadata = json.loads((tmp_path / "r" / "metadata.json").read_text())
    assert metadata["sessions"][-1]["status"] == "failed"
    assert metadata["sessions"][-1]["error"]["type"] == "ZeroDivisionError"
    assert metadata["extra"]["cells_done"] == 1 and (tmp_path / "r" / "results.csv").exists()


def test_sigterm_is_handled_like_ctrl_c(tmp_path):
    script = textwrap.dedent(f"""
        import dataclasses, os, signal, sys
        sys.path.insert(0, {str(pathlib.Path(__file__).resolve().parents[3])!r})
        from studies import kit
        @dataclasses.dataclass(frozen=True)
        class Config:
            n: int = 3
        def second():
            os.kill(os.getpid(), signal.SIGTERM)
            return [{{"value": 2.0}}]
        kit.run_cells(kit.ResultStore({str(tmp_path / 'r')!r}, Config(), study="toy"),
                      [kit.Cell("first", lambda: [{{"value": 1.0}}]), kit.Cell("second", second)])
    """)
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert completed.returncode != 0
    metadata = json.loads((tmp_path / "r" / "metadata.json").read_text())
    assert metadata["sessions"][-1]["status"] == "interrupted (SIGTERM)"
    assert (tmp_path / "r" / "results.csv").exists() and (tmp_path / "r" / "cells" / "first.csv").exists()
    assert not (tmp_path / "r" / ".lock").read_text()  # released


def test_cells_are_partitioned_over_processes_into_one_directory(tmp_path):
    cells = [kit.Cell(f"c{i}", lambda i=i: [{"value": float(i)}]) for i in range(5)]
    for index in (0, 1):
        store = kit.ResultStore(tmp_path / "r", Config(), study="toy", process_index=index)
        kit.run_cells(store, cells, process_index=index, process_count=2)
    assert sorted(p.stem for p in (tmp_path / "r" / "cells").glob("*.csv")) == [f"c{i}" for i in range(5)]
    records = {i: json.loads((tmp_path / "r" / "cells" / f"c{i}.json").read_text())["process_index"] for i in range(5)}
    assert records == {0: 0, 1: 1, 2: 0, 3: 1, 4: 0}


def test_definitions_are_checked_before_anything_runs():
    ran = []
    good = kit.Cell("a", lambda: ran.append(1) or [{"value": 1}])
    with pytest.raises(ValueError, match="repeated"):
        kit.run_cells(None, [good, good])
    with pytest.raises(ValueError, match="needs"):
        kit.run_cells(None, [good, kit.Cell("b", lambda: [], needs=("nothing",))])
    with pytest.raises(ValueError, match="process_index"):
        kit.run_cells(None, [good], process_index=2, process_count=2)
    assert ran == []


def _replica_artifacts(calls):
    """A stacked training of seeds 10, 20, 30 and one per-seed artifact slicing it."""
    import jax.numpy as jnp

    def train(progress):
        calls.append("train")
        return {"w": jnp.arange(3.0, dtype=jnp.float32)[:, None] * jnp.ones(2, jnp.float32), "step": jnp.full(3, 7, jnp.int32)}

    stacked = kit.replicas_artifact("all.eqx", train, lambda: {"w": jnp.zeros(2, jnp.float32), "step": jnp.int32(0)},
                                    replicas=[10, 20, 30], needs=("progress",))
    one = [kit.equinox_artifact(f"seed={s}.eqx", lambda s=s, **needs: needs["all.eqx"].of(s)["w"],
                                lambda: jnp.zeros(2, jnp.float32), needs=("all.eqx",)) for s in (10, 20, 30)]
    return [stacked, *one]


def _seed_cell(seed):
    return kit.Cell(f"c{seed}", lambda seed=seed, **needs: [{"value": float(needs[f"seed={seed}.eqx"][0])}],
                    needs=(f"seed={seed}.eqx",))


def test_replicas_artifact_trains_once_and_a_resumed_run_reads_it_from_the_store(tmp_path):
    calls = []
    first = kit.run_cells(_store(tmp_path / "r"), [_seed_cell(10), _seed_cell(30)], artifacts=_replica_artifacts(calls))
    assert calls == ["train"] and list(first["value"]) == [0.0, 2.0]  # seed 30 is row 2 of the stack
    record = json.loads((tmp_path / "r" / "artifacts" / "all.eqx.json").read_text())
    assert record["status"] == "ok" and len(record["sha256"]) == 64
    # A later session needing a seed not sliced yet reads the stack, verified, and trains nothing.
    later = kit.run_cells(_store(tmp_path / "r"), [_seed_cell(10), _seed_cell(20), _seed_cell(30)],
                          artifacts=_replica_artifacts(calls))
    assert calls == ["train"] and list(later["value"]) == [0.0, 1.0, 2.0]
    # Damaged stack: named, never used.
    (tmp_path / "r" / "artifacts" / "seed=20.eqx").unlink()
    (tmp_path / "r" / "artifacts" / "seed=20.eqx.json").unlink()
    (tmp_path / "r" / "cells" / "c20.csv").unlink()
    path = tmp_path / "r" / "artifacts" / "all.eqx"
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(kit.DamagedFileError, match="all.eqx"):
        kit.run_cells(_store(tmp_path / "r"), [_seed_cell(20)], artifacts=_replica_artifacts(calls))


def test_replicas_slice_each_replica_and_refuse_an_unknown_one():
    import numpy as np

    replicas = kit.Replicas((10, 20, 30), {"w": np.arange(6.0).reshape(3, 2), "scalar": np.float32(1.0), "label": "shared"})
    assert list(replicas.of(20)["w"]) == [2.0, 3.0]
    assert replicas.of(30)["scalar"] == 1.0 and replicas.of(10)["label"] == "shared"  # no replica axis: as is
    with pytest.raises(ValueError, match=r"replica must be one of \[10, 20, 30\], got 40"):
        replicas.of(40)


def _sleepy_cells(barrier):
    """Two cells that can only finish if they run at the same time (each waits for the other)."""
    def fn(i, progress):
        with progress.phase("train"):
            barrier.wait(timeout=30)
        return [{"metric": "m", "value": float(i)}]

    return [kit.Cell(f"c{i}", lambda progress, i=i: fn(i, progress), needs=("progress",), coords={"i": i})
            for i in range(4)]


def test_workers_run_cells_at_once_with_the_same_rows_and_their_own_phases(tmp_path):
    import threading

    serial = kit.run_cells(_store(tmp_path / "serial"), [kit.Cell(f"c{i}", lambda i=i: [{"metric": "m", "value": float(i)}],
                                                                  coords={"i": i}) for i in range(4)])
    parallel = kit.run_cells(_store(tmp_path / "parallel"), _sleepy_cells(threading.Barrier(2)), workers=2)
    assert serial.equals(parallel)  # the table keeps the sweep's order, whatever order cells finished in
    for i in range(4):
        record = json.loads((tmp_path / "parallel" / "cells" / f"c{i}.json").read_text())
        assert set(record["phases_s"]) == {"train"}  # only its own phase, timed on its own thread
    # With one worker the two cells would wait for each other forever: the barrier breaks.
    with pytest.raises(threading.BrokenBarrierError):
        kit.run_cells(_store(tmp_path / "one"), _sleepy_cells(threading.Barrier(2, timeout=0.5))[:1])


def test_workers_start_the_costliest_cells_first_and_build_an_artifact_once(tmp_path):
    import threading

    calls, started, lock, barrier = [], [], threading.Lock(), threading.Barrier(2, timeout=30)

    def fn(i, **needs):
        with lock:
            started.append(i)
        barrier.wait()  # pairs: a third cell cannot start before both of a pair are running
        return [{"value": needs["net.json"]["w"] + i}]

    cells = [kit.Cell(f"c{i}", lambda i=i, **needs: fn(i, **needs), needs=("net.json",), cost=float(i)) for i in range(6)]
    table = kit.run_cells(_store(tmp_path / "r"), cells, artifacts=[_artifact(calls)], workers=2)
    assert calls == ["build"] and list(table["value"]) == [2.0 + i for i in range(6)]
    assert [set(started[j:j + 2]) for j in (0, 2, 4)] == [{5, 4}, {3, 2}, {1, 0}]


@pytest.mark.parametrize("bad_cost", [1.0, 3.0])  # the failing cell started after or before the slow one
@pytest.mark.parametrize("error, status", [(ZeroDivisionError, "failed"), (KeyboardInterrupt, "interrupted")])
def test_a_failure_with_workers_saves_the_cells_that_were_running(tmp_path, error, status, bad_cost):
    import threading
    import time

    started = threading.Event()

    def slow():
        started.set()
        time.sleep(0.5)  # still running when the other cell fails
        return [{"value": 1.0}]

    def bad():
        started.wait(timeout=30)
        raise error("boom")

    cells = [kit.Cell("slow", slow, cost=2.0), kit.Cell("bad", bad, cost=bad_cost),
             kit.Cell("never", lambda: pytest.fail("ran"), cost=0.0)]
    with pytest.raises(error):
        kit.run_cells(_store(tmp_path / "r"), cells, workers=2)
    metadata = json.loads((tmp_path / "r" / "metadata.json").read_text())
    assert metadata["sessions"][-1]["status"] == status
    assert (tmp_path / "r" / "cells" / "slow.csv").exists() and not (tmp_path / "r" / "cells" / "never.csv").exists()


@pytest.mark.parametrize("workers", [0, -1, 1.5, True, "2"])
def test_workers_and_cost_are_checked_before_anything_runs(tmp_path, workers):
    with pytest.raises(ValueError, match=r"workers must be a whole number >= 1, got"):
        kit.run_cells(None, [kit.Cell("c", lambda: pytest.fail("ran"))], workers=workers)
    with pytest.raises(ValueError, match=r"cell 'c': cost must be a finite number >= 0, got nan"):
        kit.run_cells(None, [kit.Cell("c", lambda: pytest.fail("ran"), cost=float("nan"))])


def test_the_runtime_gives_the_partition_and_workers_once(tmp_path):
    cells = [kit.Cell(f"c{i}", lambda i=i: [{"value": float(i)}]) for i in range(4)]
    table = kit.run_cells(None, cells, runtime=kit.Runtime(workers=2, process_index=1, process_count=2))
    assert list(table["value"]) == [1.0, 3.0]
    with pytest.raises(ValueError, match="either in runtime or separately"):
        kit.run_cells(None, cells, runtime=kit.Runtime(), workers=2)
