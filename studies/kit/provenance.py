"""Where and with what a result was computed: git revision, package versions, devices, time."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import pathlib
import platform
import socket
import subprocess
import sys
from typing import Any

__all__ = ["RECORDED_PACKAGES", "cpu_facts", "git_revision", "machine_facts", "now", "package_versions"]

RECORDED_PACKAGES = (
    "jax",
    "jaxlib",
    "jax-cuda12-plugin",
    "jax-cuda12-pjrt",
    "equinox",
    "jaxtyping",
    "optax",
    "diffrax",
    "ott-jax",
    "pot",
    "numpy",
    "scipy",
    "pandas",
    "matplotlib",
    "seaborn",
    "tyro",
)
"""Distributions whose versions every run records (missing ones as null)."""

# The code being run is this repository, wherever the command is launched from.
_REPOSITORY = pathlib.Path(__file__).resolve().parents[2]


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _git(*arguments: str) -> str | None:
    try:
        completed = subprocess.run(
            ["git", *arguments], cwd=_REPOSITORY, capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return completed.stdout if completed.returncode == 0 else None


def git_revision() -> dict[str, Any]:
    """``{"commit", "dirty", "changes"}`` of this repository; nulls without git or commits.

    Untracked Python files count as changes (a new, uncommitted study module is code the
    commit does not contain); untracked results do not.
    """
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None, "changes": None}
    status = _git("status", "--porcelain", "--untracked-files=all")
    lines = [line for line in (status or "").splitlines() if not line.startswith("??") or line.endswith(".py")]
    return {
        "commit": commit.strip(),
        "dirty": bool(lines) if status is not None else None,
        "changes": lines[:100] if status is not None else None,
    }


def package_versions() -> dict[str, str | None]:
    """The installed version of each of :data:`RECORDED_PACKAGES` (None if absent)."""
    versions: dict[str, str | None] = {}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def cpu_facts(cpuinfo: str = "/proc/cpuinfo") -> dict[str, Any]:
    """The CPU's model name and vector extensions (Linux's ``/proc/cpuinfo``; None elsewhere).

    XLA compiles for the CPU it runs on, so two CPUs with different vector extensions
    (AVX2 against AVX-512, say) can round a float32 training differently, and a training
    amplifies rounding: the same config and keys then give different numbers on the two
    machines, each reproducible on its own. This records which CPU a run had.
    """
    try:
        text = pathlib.Path(cpuinfo).read_text()
    except OSError:
        return {"model": platform.processor() or None, "vector_extensions": None}
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    flags = fields.get("flags", "").split()
    extensions = sorted(flag for flag in flags if flag.startswith(("avx", "sse", "fma", "amx")))
    return {"model": fields.get("model name"), "vector_extensions": extensions or None}


def machine_facts() -> dict[str, Any]:
    """Python, platform, host, CPU (count, model, vector extensions) and JAX's devices."""
    facts: dict[str, Any] = {
        "python": sys.version,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "host": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "cpu": cpu_facts(),
    }
    try:
        import jax

        facts["jax"] = {
            "devices": [f"{device} ({device.device_kind})" for device in jax.devices()],
            "default_backend": jax.default_backend(),
            "process_index": jax.process_index(),
            "process_count": jax.process_count(),
            "enable_x64": bool(jax.config.jax_enable_x64),
        }
    except Exception as error:  # no usable backend: record why rather than fail the run
        facts["jax"] = {"devices": None, "error": f"{type(error).__name__}: {error}"}
    return facts
