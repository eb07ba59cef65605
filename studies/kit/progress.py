"""Plain-text progress: one line per finished cell with an ETA, step lines, phase timers."""

from __future__ import annotations

import contextlib
import math
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, TextIO

__all__ = ["Progress", "format_duration"]


def format_duration(seconds: float) -> str:
    """``12.3s``, ``2m10s`` or ``1h02m``; ``?`` for a non-finite value."""
    if not math.isfinite(seconds):
        return "?"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes}m{rest:02d}s"
    hours, rest = divmod(round(seconds) // 60, 60)
    return f"{hours}h{rest:02d}m"


class Progress:
    """Progress of a sweep on stderr (or ``stream``), flushed at every line.

    The ETA is the mean wall time of the cells finished in this session times the
    number of cells left (cells done in an earlier session say nothing about this
    machine's speed). :meth:`phase` times named phases of the running cell (compile,
    train, evaluate, ...); the totals go into the cell's record and ``metadata.json``.
    Phase timers measure wall time: code timed inside one must block on JAX's
    asynchronous results (``jax.block_until_ready``) before the block ends. The running
    cell and its phase timers belong to the calling thread, so cells run at once on
    several threads (``run_cells(workers=...)``) each time their own phases.

    Args:
        total_cells: the number of cells this process runs, done or not.
        already_done: how many were done before this session started.
        stream: where to print (default ``sys.stderr``).
    """

    def __init__(self, total_cells: int, already_done: int = 0, *, stream: TextIO | None = None):
        if not 0 <= already_done <= total_cells:
            raise ValueError(f"already_done must be in [0, total_cells={total_cells}], got {already_done}")
        self.total_cells = total_cells
        self.done = already_done
        self.workers = 1  # cells running at once; run_cells sets it
        self.stream = stream
        self.wall_times: list[float] = []
        self._thread = threading.local()

    @property
    def current(self) -> str | None:
        """The id of the cell running on the calling thread (None between cells)."""
        return getattr(self._thread, "current", None)

    @current.setter
    def current(self, cell_id: str | None) -> None:
        self._thread.current = cell_id

    @property
    def phases(self) -> dict[str, float]:
        """The phase timers of the cell running on the calling thread, in seconds."""
        if not hasattr(self._thread, "phases"):
            self._thread.phases = {}
        return self._thread.phases

    @phases.setter
    def phases(self, phases: dict[str, float]) -> None:
        self._thread.phases = phases

    def note(self, line: str) -> None:
        """Print one line of text."""
        print(line, file=self.stream if self.stream is not None else sys.stderr, flush=True)

    def start_cell(self, cell_id: str) -> None:
        """Note that ``cell_id`` starts; its phase timers start from zero."""
        self.current = cell_id
        self.phases = {}

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Add the wall time of the ``with`` block to the running cell's phase ``name``."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.phases[name] = self.phases.get(name, 0.0) + time.perf_counter() - started

    def update(self, *, step: int | None = None, total_steps: int | None = None, **metrics: Any) -> None:
        """Print one compact line for the running cell, e.g. ``  K=4 step 100/1000 | loss=0.123``."""
        parts = [f"  {self.current or ''}".rstrip()]
        if step is not None:
            parts.append(f"step {step}" + (f"/{total_steps}" if total_steps is not None else ""))
        line = " ".join(parts)
        if metrics:
            line += " | " + " ".join(f"{k}={_format_metric(v)}" for k, v in metrics.items())
        self.note(line)

    def finish_cell(self, cell_id: str, wall_time_s: float, *, status: str = "ok") -> None:
        """Print ``[3/16] K=4_p=2_q=5 done in 12.3s | ETA 2m10s`` (or ``diverged``).

        The ETA divides the mean cell time by the number of cells that run at once
        (:attr:`workers`). Called by the driver thread only (``run_cells`` saves every cell)."""
        self.done += 1
        self.wall_times.append(wall_time_s)
        if self.current == cell_id:
            self.current = None
        left = self.total_cells - self.done
        eta = sum(self.wall_times) / len(self.wall_times) * left / self.workers
        verb = "done" if status == "ok" else status
        self.note(
            f"[{self.done}/{self.total_cells}] {cell_id} {verb} in {format_duration(wall_time_s)}"
            + (f" | ETA {format_duration(eta)}" if left else "")
        )


def _format_metric(value: Any) -> str:
    try:
        return f"{float(value):.4g}"
    except (TypeError, ValueError):
        return str(value)
