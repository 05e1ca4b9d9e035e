"""Run outputs: the metrics file, TensorBoard events and the progress display.

`metrics.jsonl` has one JSON record per log or eval event (env step, learner step, wall time,
losses, returns): the file other tools (plots, reports) read. TensorBoard files are written with
tensorboardX, which needs no TensorFlow. The progress display is a tqdm bar on a terminal and
periodic plain lines otherwise (CI, a log file).

A sink that fails (a full disk, say) never hangs or kills the run mid-step. TensorBoard is then
dropped with a message: metrics.jsonl still has every record. A failed metrics.jsonl write is
undone (the file is cut back to its last whole record) and this and every later record are kept
in `unwritten`; `error` tells the loop to stop at its next safe point, which checkpoints them.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
from pathlib import Path
from typing import Any, TextIO

from factorl.io.checkpoint import atomic_write_text
from factorl.io.runfolder import METRICS_FILE, TENSORBOARD_DIR, describe_os_error


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


class _TensorBoardEvents:
    """Scalars to a TensorBoard event file, written in the caller's thread.

    tensorboardX's SummaryWriter hands events to a writer thread through a bounded queue; when
    that thread dies on a write error (ENOSPC) the queue fills and the next `add_scalar` blocks
    forever, beyond the reach of Ctrl-C. Its synchronous `EventsWriter` raises the error here
    instead. A record's scalars go in one event, flushed with the record.
    """

    def __init__(self, logdir: Path) -> None:
        from tensorboardX.event_file_writer import EventsWriter

        logdir.mkdir(parents=True, exist_ok=True)
        self._writer = EventsWriter(str(logdir / "events"))

    def write(self, step: int, scalars: dict[str, float], wall_time: float) -> None:
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.proto.summary_pb2 import Summary

        values = [Summary.Value(tag=tag, simple_value=value) for tag, value in scalars.items()]
        event = Event(wall_time=wall_time, step=step, summary=Summary(value=values))
        self._writer.write_event(event)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


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
        # unbuffered: one record is one write(), so a failed write can be cut back cleanly
        self._metrics = open(self.run_dir / METRICS_FILE, "ab", buffering=0)  # noqa: SIM115
        #: the metrics.jsonl failure that stopped writing, and the records not written since
        self.error: OSError | None = None
        self.unwritten: list[dict[str, Any]] = []
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
        self._tb: _TensorBoardEvents | None = None
        if tensorboard:
            try:
                self._tb = _TensorBoardEvents(self.run_dir / TENSORBOARD_DIR)
            except OSError as e:
                self._tb_failed(e)

    @staticmethod
    def rewind(run_dir: Path, env_step: int, unwritten: list[dict[str, Any]] = ()) -> None:
        """Make metrics.jsonl what it was at a checkpoint of `env_step`, for a resume: records
        after it are dropped, records the checkpoint kept because they could not be written are
        added, and a final evaluation (taken because the budget ended there) is dropped, since
        the resumed run trains on past it."""
        records = [r for r in read_metrics(run_dir) if r.get("env_step", 0) <= env_step]
        records += unwritten
        text = "".join(json.dumps(r) + "\n" for r in records if not r.get("final"))
        atomic_write_text(Path(run_dir) / METRICS_FILE, text)

    def record(self, record: dict[str, Any]) -> None:
        """Append one record to metrics.jsonl and TensorBoard; never raises on a write error."""
        record = {k: _clean(v) for k, v in record.items()}
        self._write_metrics(record)
        if self._tb is not None:
            kind = record.get("event", "train")
            scalars = {
                f"{kind}/{key}": float(value)
                for key, value in record.items()
                if key not in ("event", "env_step")
                and isinstance(value, int | float)
                and not isinstance(value, bool)
            }
            try:
                self._tb.write(int(record["env_step"]), scalars, float(record.get("wall_time", 0)))
            except OSError as e:
                self._tb_failed(e)

    def _write_metrics(self, record: dict[str, Any]) -> None:
        if self.error is not None:
            self.unwritten.append(record)
            return
        line = (json.dumps(record) + "\n").encode("utf-8")
        end = self._metrics.tell()
        try:
            written = self._metrics.write(line)
            if written != len(line):
                raise OSError(f"short write ({written} of {len(line)} bytes)")
        except OSError as e:
            # a torn last line would hide the next record; if even cutting it fails, read_metrics
            # skips it and the record is kept in `unwritten` anyway
            with contextlib.suppress(OSError):
                self._metrics.truncate(end)
            self.error = e
            self.unwritten.append(record)

    def describe_error(self) -> str:
        """One line on the failed metrics write (call when `error` is set)."""
        return f"could not write {self.run_dir / METRICS_FILE} ({_os_text(self.error)})"

    def _tb_failed(self, error: OSError) -> None:
        self.message(
            f"[factorl] TensorBoard files could not be written ({_os_text(error)}); continuing "
            f"without TensorBoard ({METRICS_FILE} still gets every record)"
        )
        if self._tb is not None:
            with contextlib.suppress(OSError):  # the same failure again; the sink is dropped
                self._tb.close()
        self._tb = None

    def progress(self, env_step: int, fields: dict[str, str], line_due: bool | None = None) -> None:
        """Update the display: bar postfix, or a plain line every `line_every` steps (when
        `line_due`, which defaults to `env_step` being a multiple of `line_every`)."""
        if line_due is None:
            line_due = env_step % self.line_every == 0
        try:
            if self._bar is not None:
                self._bar.update(env_step - self._last_step)
                self._bar.set_postfix(fields, refresh=False)
            elif self.mode == "lines" and line_due:
                text = " ".join(f"{k}={v}" for k, v in fields.items())
                print(f"[factorl] step {env_step}/{self.total_steps} {text}", file=self.stream)
                self.stream.flush()
        except (OSError, ValueError) as e:  # ValueError: the stream was closed under us
            self._display_failed(e)
        self._last_step = env_step

    def message(self, text: str) -> None:
        """A line that does not break the progress bar."""
        try:
            if self._bar is not None:
                self._bar.write(text, file=self.stream)
            elif self.mode != "none":
                print(text, file=self.stream)
                self.stream.flush()
        except (OSError, ValueError) as e:
            self._display_failed(e)

    def _display_failed(self, error: Exception) -> None:
        """The console cannot take more (a log file on a full disk, a closed pipe): training
        goes on without a display; metrics.jsonl and TensorBoard are separate sinks."""
        self._bar, self.mode = None, "none"
        with contextlib.suppress(OSError, ValueError):  # say so where it may still be read
            print(f"[factorl] progress display stopped ({error})", file=sys.__stderr__)

    def close(self) -> None:
        if self._bar is not None:
            with contextlib.suppress(OSError, ValueError):
                self._bar.close()
        if self._tb is not None:
            try:
                self._tb.close()
            except OSError as e:
                self._tb_failed(e)
        with contextlib.suppress(OSError):  # unbuffered: a failing close loses no record
            self._metrics.close()


def _os_text(error: OSError | None) -> str:
    return describe_os_error(error) if error is not None else "unknown error"
