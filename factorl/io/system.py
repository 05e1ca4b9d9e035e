"""Where a measurement was taken: the machine and the library versions (recorded in benchmark
and results files)."""

from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = (
    "factorl",
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "numpy",
    "gymnasium",
    "dm_control",
    "mujoco",
)


def _memory_gb() -> float | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024**2, 2)
    except (OSError, ValueError, IndexError):
        pass
    return None


def available_memory_bytes() -> int | None:
    """Memory this process can still take: the kernel's MemAvailable, capped by a cgroup v2
    limit (containers, CI) when one is set; None where neither can be read."""
    found: list[int] = []
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        cgroup = Path("/sys/fs/cgroup")
        limit = (cgroup / "memory.max").read_text().strip()
        if limit != "max":
            found.append(int(limit) - int((cgroup / "memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def _processor() -> str:
    name = platform.processor()
    if name and name not in ("x86_64", "aarch64", "arm64", "i386"):
        return name
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return name or platform.machine()


def machine_info() -> dict[str, Any]:
    """Where the numbers were taken (the load average shows whether the machine was busy)."""
    info: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "processor": _processor(),
        "cpu_count": os.cpu_count(),
        "memory_gb": _memory_gb(),
        "python": platform.python_version(),
    }
    info.update(process_settings())
    if hasattr(os, "getloadavg"):
        info["load_avg_at_start"] = [round(x, 2) for x in os.getloadavg()]
    return info


def process_settings() -> dict[str, Any]:
    """Settings of this process that change its speed (and can change XLA's floating-point
    reduction order): the CPUs it may run on and the XLA flags it was started with."""
    settings: dict[str, Any] = {"xla_flags": os.environ.get("XLA_FLAGS")}
    if hasattr(os, "sched_getaffinity"):
        usable = sorted(os.sched_getaffinity(0))
        settings["cpus_usable"] = len(usable)
        settings["cpu_affinity"] = usable
    return settings


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages, which tell how busy a shared machine was while a
    measurement ran; None where the operating system keeps none."""
    if not hasattr(os, "getloadavg"):
        return None
    return [round(x, 2) for x in os.getloadavg()]


def local_time() -> str:
    """Now, in local time with its UTC offset (ISO 8601, to the second), as results files and
    run folders record when something started."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def provenance(
    revision: str | None, *, revision_key: str = "source_revision", packages: Sequence[str] = ()
) -> dict[str, Any]:
    """`machine` (with the load average at the start), `versions` (factorl's list of libraries
    and `packages`) and the code `revision` under `revision_key`, to spread into a results file.

    The revision is the caller's: a long run takes it when it starts, so commits made while it
    runs are not credited with its numbers."""
    found = versions()
    for name in packages:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return {"machine": machine_info(), "versions": found, revision_key: revision}


def _git(root: Path, *args: str) -> str:
    """stdout of `git -C root ARGS`; raises OSError/SubprocessError when git fails."""
    command = ["git", "-C", str(root), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=10, check=True).stdout


@functools.cache
def factorl_revision() -> str | None:
    """`source_revision()` of factorl's own tree, taken once per process (at its first call):
    commits made while a run trains are not credited with it."""
    return source_revision()


def source_revision(root: str | Path | None = None) -> str | None:
    """The git commit of the source tree at `root` (default: factorl's own), with "+dirty" if
    tracked files have uncommitted changes; None outside a git checkout (e.g. an installed wheel)
    or without git."""
    root = (Path(__file__).resolve().parents[2] if root is None else Path(root)).resolve()
    try:
        top, head = _git(root, "rev-parse", "--show-toplevel", "HEAD").split()
        if Path(top).resolve() != root:
            return None  # e.g. an installed copy inside some other repository's tree
        dirty = _git(root, "status", "--porcelain", "--untracked-files=no").strip()
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return f"{head}+dirty" if dirty else head
