"""Run outputs: the metrics file, TensorBoard events and the progress display.

`metrics.jsonl` has one JSON record per log or eval event (env step, learner step, wall time,
losses, returns): the file other tools (plots, reports) read. TensorBoard files are written with
tensorboardX, which needs no TensorFlow. The progress display is a tqdm bar on a terminal and
periodic plain lines otherwise (CI, a log file).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, TextIO

from factorl.checkpoint import atomic_write_text

METRICS_FILE = "metrics.jsonl"


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """All records of a run's metrics file (a torn last line, from a crash, is skipped)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/Inf; keep them visible as strings
    return value


class RunLogger:
    """Writes metrics records and TensorBoard scalars, and drives the progress display."""

    def __init__(
        self,
        run_dir: Path,
        total_steps: int,
        start_step: int,
        progress: str = "auto",
        tensorboard: bool = True,
        stream: TextIO | None = None,
        line_every: int = 1000,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.stream = stream or sys.stderr
        self.total_steps = total_steps
        self._metrics = open(self.run_dir / METRICS_FILE, "a", encoding="utf-8")  # noqa: SIM115
        self._tb = None
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(str(self.run_dir / "tb"))
        if progress == "auto":
            progress = "bar" if self.stream.isatty() else "lines"
        self.mode = progress
        self.line_every = line_every
        self._bar = None
        if progress == "bar":
            from tqdm import tqdm

            self._bar = tqdm(
                total=total_steps,
                initial=start_step,
                file=self.stream,
                unit="step",
                dynamic_ncols=True,
                smoothing=0.05,
            )
        self._last_step = start_step

    @staticmethod
    def truncate(run_dir: Path, env_step: int) -> None:
        """Drop records after `env_step` (used on resume, so the file matches the checkpoint)."""
        records = [r for r in read_metrics(run_dir) if r.get("env_step", 0) <= env_step]
        text = "".join(json.dumps(r) + "\n" for r in records)
        atomic_write_text(Path(run_dir) / METRICS_FILE, text)

    def record(self, record: dict[str, Any]) -> None:
        """Append one record to metrics.jsonl and TensorBoard."""
        record = {k: _clean(v) for k, v in record.items()}
        self._metrics.write(json.dumps(record) + "\n")
        self._metrics.flush()
        if self._tb is not None:
            step = record["env_step"]
            kind = record.get("event", "train")
            for key, value in record.items():
                if key in ("event", "env_step") or not isinstance(value, int | float):
                    continue
                if isinstance(value, bool):
                    continue
                self._tb.add_scalar(f"{kind}/{key}", value, step)

    def progress(self, env_step: int, fields: dict[str, str]) -> None:
        """Update the display: bar postfix, or a plain line every `line_every` steps."""
        if self._bar is not None:
            self._bar.update(env_step - self._last_step)
            self._bar.set_postfix(fields, refresh=False)
        elif self.mode == "lines" and env_step % self.line_every == 0:
            text = " ".join(f"{k}={v}" for k, v in fields.items())
            print(f"[factorl] step {env_step}/{self.total_steps} {text}", file=self.stream)
            self.stream.flush()
        self._last_step = env_step

    def message(self, text: str) -> None:
        """A line that does not break the progress bar."""
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        elif self.mode != "none":
            print(text, file=self.stream)
            self.stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._tb is not None:
            self._tb.close()
        self._metrics.close()
