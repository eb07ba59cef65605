"""Multi-host path for real: two processes joined by jax.distributed.initialize share one run.

Two `python -m studies.wgan_capacity --distributed` processes on this machine, the
coordinator on a local port (JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID as
a user sets them on each host), write one results directory: each cell is computed by
exactly one process, both sessions are recorded, and the cells equal a one-process run.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pandas as pd

ARGS = ["--preset", "smoke", "--n-modes", "2,4", "--n-steps", "2", "--eval-every", "2", "--eval-points", "32",
        "--lipschitz-probes", "8", "--draw-figures", "false"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _command(results_dir, run_name, *extra):
    return [sys.executable, "-m", "studies.wgan_capacity", *ARGS, "--results-dir", str(results_dir), "--run-name", run_name, *extra]


def test_two_processes_share_one_run_and_match_a_single_process(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{_free_port()}", JAX_NUM_PROCESSES="2")
    processes = [
        subprocess.Popen(_command(tmp_path, "two", "--distributed"), env=dict(env, JAX_PROCESS_ID=str(i)),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=600)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], "\n".join(o[-2000:] for o in outputs)
    single = subprocess.run(_command(tmp_path, "one"), env=dict(os.environ, JAX_PLATFORMS="cpu"),
                            capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-2000:]

    two, one = tmp_path / "two", tmp_path / "one"
    records = {path.stem: json.loads(path.read_text()) for path in (two / "cells").glob("*.json")}
    assert sorted(records) == sorted(path.stem for path in (one / "cells").glob("*.json"))
    # Cells are dealt out by index: both processes worked, none computed a cell twice.
    assert {r["process_index"] for r in records.values()} == {0, 1}
    sessions = json.loads((two / "metadata.json").read_text())["sessions"]
    assert sorted((s["process_index"], s["status"]) for s in sessions) == [(0, "complete"), (1, "complete")]
    for cell in records:
        pd.testing.assert_frame_equal(pd.read_csv(two / "cells" / f"{cell}.csv"), pd.read_csv(one / "cells" / f"{cell}.csv"))
