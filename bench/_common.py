"""What the benchmark scripts' reports share: where they were measured (machine, load average,
library versions, code revision) and how they are written. Each script supplies only its own
figures, under the keys its committed reports already use.

bench/ is not a package: a script puts its own folder on sys.path and imports this module.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from factorl.io import checkpoint as ckpt
from factorl.io.system import load_average, local_time, provenance

# load_average, local_time and provenance live in the package, where factorl sweep records
# them too
__all__ = ["finish", "load_average", "local_time", "provenance", "write_json"]


def write_json(path: Path, data: Any, *, indent: int = 2) -> None:
    """Write `data` as JSON atomically (`factorl.io.checkpoint.write_json`)."""
    ckpt.write_json(path, data, indent=indent)


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
