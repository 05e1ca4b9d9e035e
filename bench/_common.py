"""What the benchmark scripts' reports share: where they were measured (machine, load average,
library versions, code revision) and how they are written. Each script supplies only its own
figures, under the keys its committed reports already use.

bench/ is not a package: a script puts its own folder on sys.path and imports this module.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from factorl.io import checkpoint as ckpt
from factorl.io.system import machine_info, versions


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages, which tell how busy a shared machine was while a
    benchmark ran; None where the operating system keeps none."""
    if not hasattr(os, "getloadavg"):
        return None
    return [round(x, 2) for x in os.getloadavg()]


def provenance(
    revision: str | None, *, revision_key: str = "source_revision", packages: Sequence[str] = ()
) -> dict[str, Any]:
    """`machine` (with the load average at the start), `versions` (factorl's list of libraries
    and `packages`) and the code `revision` under `revision_key`, to spread into a report.

    The revision is the caller's: a long run takes it when it starts, so commits made while it
    runs are not credited with its numbers."""
    found = versions()
    for name in packages:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return {"machine": machine_info(), "versions": found, revision_key: revision}


def write_json(path: Path, data: Any, *, indent: int = 2) -> None:
    """Write `data` as JSON atomically, so a reader, or a run cut off while writing, finds the
    previous report or the new one, never part of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ckpt.atomic_write_text(path, json.dumps(data, indent=indent) + "\n")


def finish(
    report: dict[str, Any],
    out: Path | None,
    *,
    load_key: str = "load_avg_at_end",
    indent: int = 2,
) -> str:
    """Record the load average at the end as `report["machine"][load_key]`, write the report to
    `out` when given, and return its JSON text (for scripts that also print it)."""
    report["machine"][load_key] = load_average()
    if out is not None:
        write_json(out, report, indent=indent)
    return json.dumps(report, indent=indent)
