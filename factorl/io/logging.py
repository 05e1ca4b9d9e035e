"""Run outputs: the metrics file, TensorBoard events, Weights & Biases and the progress display.

`metrics.jsonl` has one JSON record per log or eval event (env step, learner step, wall time,
losses, returns): the file other tools (plots, reports) read. TensorBoard files are written with
tensorboardX, which needs no TensorFlow. With `run.wandb`, the same records go to a W&B run
(`WandbRun`, the optional `wandb` extra) whose id is kept in the run folder, so a resumed run
goes on logging to it. The progress display is a tqdm bar on a terminal and periodic plain lines
otherwise (CI, a log file).

A sink that fails (a full disk, say) never hangs or kills the run mid-step. TensorBoard or W&B is
then dropped with a message: metrics.jsonl still has every record. A failed metrics.jsonl write
is undone (the file is cut back to its last whole record) and this and every later record are
kept in `unwritten`; `error` tells the loop to stop at its next safe point, which checkpoints
them.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import secrets
import string
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from factorl.core.config import ConfigError, install_hint, one_line
from factorl.io.checkpoint import atomic_write_text
from factorl.io.runfolder import (
    METRICS_FILE,
    TENSORBOARD_DIR,
    WANDB_DIR,
    WANDB_RUN_FILE,
    describe_os_error,
)

#: what the `wandb` extra brings
WANDB_HINT = install_hint("wandb")
#: what to do when W&B cannot start a run (no login, no network)
WANDB_LOGIN_HINT = (
    "run `wandb login` (or set WANDB_API_KEY), or set WANDB_MODE=offline to log to "
    f"RUN_DIR/{WANDB_DIR} and `wandb sync` it later, or train without --run.wandb"
)
#: the run ids W&B makes and accepts; anything else in a run folder's wandb.json is not used
_WANDB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: the characters of a new W&B run id (as W&B's own ids)
_ID_CHARS = string.ascii_lowercase + string.digits


class MetricsError(ConfigError):
    """A run's metrics file holds a line factorl did not write there (edited or damaged)."""


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """All records of a run's metrics file. A torn last line (a crash cut its write short) is
    skipped; any other line that is not a record factorl writes is a one-line MetricsError,
    rather than a record that later code trips over or a resume silently drops."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError):  # (JSON nested deeper than Python goes)
            if number == len(lines):
                continue
            record = None
        if not _is_record(record):
            raise MetricsError(
                f"{path} line {number} is not a factorl record (edited or damaged?): "
                "remove that line or put back the original"
            )
        records.append(record)
    return records


def _is_record(record: Any) -> bool:
    """A JSON object whose counters, where it has them, are whole numbers."""
    if not isinstance(record, dict):
        return False
    counters = [record.get(k, 0) for k in ("env_step", "offline_step", "learner_step")]
    return all(type(c) is int for c in counters) and isinstance(record.get("event", ""), str)


def json_safe(value: Any) -> Any:
    """`value` with every non-finite float, however deeply nested, written as a string ("nan",
    "inf"): JSON has no NaN or Infinity, and strict readers refuse Python's spelling of them,
    while a string keeps them visible."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


#: the kinds of record (their "event") that TensorBoard and W&B plot against env_step
RECORD_KINDS = ("train", "eval", "episode")


def _plotted(record: dict[str, Any]) -> tuple[str, str, int, dict[str, int | float]]:
    """(tag prefix, x axis, step, numeric fields) of a record as TensorBoard and W&B plot it:
    KIND/FIELD at its env step, except that the records of an offline phase (all at env step
    0) are offline/KIND/FIELD at their offline (learner) step. Booleans, lists and strings
    such as NaN written as "nan" are not plotted."""
    kind = record.get("event", "train")
    if record.get("phase") == "offline":
        prefix, axis = f"offline/{kind}", "offline_step"
    else:
        prefix, axis = kind, "env_step"
    scalars = {
        key: value
        for key, value in record.items()
        if key not in ("event", "env_step", "offline_step")
        and isinstance(value, int | float)
        and not isinstance(value, bool)
    }
    return prefix, axis, int(record.get(axis, 0)), scalars


def _named_scalars(record: dict[str, Any]) -> tuple[str, int, dict[str, int | float]]:
    """(x axis, step, {name: value}) of a record as TensorBoard and W&B plot it: KIND/FIELD,
    and KIND/FIELD/seed_S where a run of several seeds tags its records with their seed, so
    each seed is a curve of its own (see `_plotted`)."""
    prefix, axis, step, scalars = _plotted(record)
    tag = f"/seed_{record['seed']}" if "seed" in record else ""
    named = {f"{prefix}/{key}{tag}": value for key, value in scalars.items() if key != "seed"}
    return axis, step, named


class WandbError(ConfigError):
    """W&B cannot be used (the extra is missing, or `wandb.init` failed: no login, no network);
    the message is one line that says what to do."""


def require_wandb() -> Any:
    """The wandb module, or a one-line WandbError naming the extra to install."""
    try:
        import wandb
    except ImportError as e:
        raise WandbError(
            f"run.wandb needs the wandb extra, which cannot be imported ({one_line(e)}): "
            f"{WANDB_HINT}"
        ) from e
    return wandb


def read_wandb_id(run_dir: Path) -> str | None:
    """The id of the W&B run a run folder logs to, or None where it has none (or an unreadable
    one: the run then starts a new W&B run)."""
    try:
        data = json.loads((Path(run_dir) / WANDB_RUN_FILE).read_text())
    except (OSError, ValueError):
        return None
    run_id = data.get("id") if isinstance(data, dict) else None
    return run_id if isinstance(run_id, str) and _WANDB_ID.fullmatch(run_id) else None


class WandbRun:
    """The W&B run a factorl run logs to (`run.wandb`).

    `start` reuses the id kept in RUN_DIR/wandb.json, or makes one and keeps it there first, and
    starts W&B with `resume="allow"`: a resumed factorl run goes on logging to the same W&B run.
    Every chart's x axis is the record's `env_step` (`define_metric`; an offline phase's
    `offline_step`), not W&B's own step, which only grows: a resume that goes back to a
    checkpoint logs the records after it again, at their env steps (the same values, since
    resume is exact). W&B's files go to RUN_DIR/wandb.
    The console is not captured: the progress bar would fill W&B's copy of it.
    """

    def __init__(self, run: Any, module: Any) -> None:
        self.run, self._wandb = run, module

    @classmethod
    def start(cls, run_dir: Path, init: Mapping[str, Any], config: Mapping[str, Any]) -> WandbRun:
        """Start (or resume) the W&B run of `run_dir` with `wandb.init` arguments `init`
        (project, entity, group, tags) and log `config`; a one-line WandbError if W&B cannot
        start. An OSError where the id cannot be written."""
        wandb = require_wandb()
        run_dir = Path(run_dir)
        run_id = read_wandb_id(run_dir) or "".join(secrets.choice(_ID_CHARS) for _ in range(8))
        atomic_write_text(run_dir / WANDB_RUN_FILE, json.dumps({"id": run_id}) + "\n")
        run = None
        try:
            run = wandb.init(
                id=run_id, resume="allow", dir=str(run_dir), name=run_dir.name,
                settings=wandb.Settings(console="off"), **init,
            )  # fmt: skip
            for axis in ("env_step", "offline_step"):
                run.define_metric(axis)
            for kind in RECORD_KINDS:
                run.define_metric(f"{kind}/*", step_metric="env_step")
            run.define_metric("offline/*", step_metric="offline_step")
            # a resume may change the budget and the runner settings: the config is updated
            run.config.update(dict(config), allow_val_change=True)
        except Exception as e:
            if run is not None:
                with contextlib.suppress(Exception):
                    run.finish(exit_code=1)
            raise WandbError(
                f"W&B could not start run {run_id} ({one_line(e)}); {WANDB_LOGIN_HINT}"
            ) from e
        return cls(run, wandb)

    def log(self, record: dict[str, Any]) -> None:
        """A metrics record's numeric fields as KIND/FIELD (eval/eval_return, train/loss, ...),
        KIND/FIELD/seed_S where runs of several seeds tag their records, at its env step; an
        offline phase's as offline/KIND/FIELD at its offline step."""
        axis, step, data = _named_scalars(record)
        self.run.log({**data, axis: step})

    def video(self, path: Path, env_step: int) -> None:
        """An MP4 written by runner.video_every, as eval/video at its env step."""
        video = self._wandb.Video(str(path), format="mp4")
        self.run.log({"eval/video": video, "env_step": int(env_step)})

    def finish(self, failed: bool = False) -> None:
        """End the W&B run (idempotent): W&B uploads what it buffered, or keeps it in
        RUN_DIR/wandb for `wandb sync`; a failure here is a message, never an error."""
        run, self.run = self.run, None
        if run is None:
            return
        try:
            run.finish(exit_code=1 if failed else 0)
        except (Exception, KeyboardInterrupt) as e:
            # what W&B did not send stays in RUN_DIR/wandb
            with contextlib.suppress(OSError, ValueError):
                print(
                    f"[factorl] W&B could not finish its run ({one_line(e)}); "
                    f"`wandb sync` its folder under {WANDB_DIR}/ to upload what it kept",
                    file=sys.stderr,
                )


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
        wandb: WandbRun | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        #: where records also go with run.wandb (started and finished by the caller)
        self._wandb = wandb
        self.stream = stream or sys.stderr
        self._display_broken = False  # the console took no more writes
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
        record = json_safe(record)
        self._write_metrics(record)
        if self._tb is not None:
            _, step, named = _named_scalars(record)
            scalars = {name: float(value) for name, value in named.items()}
            try:
                self._tb.write(step, scalars, float(record.get("wall_time", 0)))
            except OSError as e:
                self._tb_failed(e)
        if self._wandb is not None:
            try:
                self._wandb.log(record)
            except Exception as e:  # W&B buffers network failures itself; this is anything else
                self._wandb_failed(e)

    def video(self, path: Path, env_step: int) -> None:
        """Log a video file written at `env_step` to W&B (with run.wandb; else nothing)."""
        if self._wandb is None or not Path(path).is_file():
            return
        try:
            self._wandb.video(Path(path), env_step)
        except Exception as e:
            self.message(
                f"[factorl] W&B could not take the video {path} ({one_line(e)})", important=True
            )

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
            f"without TensorBoard ({METRICS_FILE} still gets every record)",
            important=True,
        )
        if self._tb is not None:
            with contextlib.suppress(OSError):  # the same failure again; the sink is dropped
                self._tb.close()
        self._tb = None

    def _wandb_failed(self, error: Exception) -> None:
        self.message(
            f"[factorl] W&B logging failed ({one_line(error)}); continuing without W&B "
            f"({METRICS_FILE} still gets every record)",
            important=True,
        )
        self._wandb = None

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

    def message(self, text: str, *, important: bool = False) -> None:
        """A line that does not break the progress bar. An `important` one (how to resume after
        a stop, a crash, a dropped writer) is shown without a progress display too (`none`),
        which hides only progress; a display that failed (`_display_failed`) takes no more."""
        if self._display_broken or (self.mode == "none" and not important):
            return
        try:
            if self._bar is not None:
                self._bar.write(text, file=self.stream)
            else:
                print(text, file=self.stream)
                self.stream.flush()
        except (OSError, ValueError) as e:
            self._display_failed(e)

    def _display_failed(self, error: Exception) -> None:
        """The console cannot take more (a log file on a full disk, a closed pipe): training
        goes on without a display; metrics.jsonl and TensorBoard are separate sinks."""
        self._bar, self.mode, self._display_broken = None, "none", True
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
