"""The run folder as a resource one process owns: an exclusive lock, leftovers from killed
processes, links that would send writes elsewhere, and what counts as an existing run.

The lock is an advisory `flock` on `RUN_DIR/.lock`, held for the life of the training process.
The kernel drops it when the process dies, however it dies (kill -9 included), so a stale lock
never blocks a resume. The file holds the holder's PID, only so that a refused second process can
name it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from factorl.io import checkpoint as ckpt
from factorl.io.system import local_time, process_settings

LOCK_FILE = ".lock"
CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tb"
VIDEO_DIR = "videos"  # runner.video_every's MP4s
WANDB_DIR = "wandb"  # Weights & Biases' own files (run.wandb): logs, offline runs to sync
WANDB_RUN_FILE = "wandb.json"  # the id of the W&B run this run logs to, kept for resumes
SEGMENTS_FILE = "segments.json"  # one entry per process that trained the run (record_segment)
#: what factorl writes in a run folder: the only entries `--overwrite` removes
RUN_ENTRIES = (
    CONFIG_FILE,
    METRICS_FILE,
    TENSORBOARD_DIR,
    CHECKPOINT_DIR,
    VIDEO_DIR,
    WANDB_DIR,
    WANDB_RUN_FILE,
    SEGMENTS_FILE,
)


class RunFolderError(RuntimeError):
    """The run folder cannot be used (held by another process, unwritable, holds a link that
    points elsewhere, or already holds a run); the message says what to do."""


def describe_os_error(error: OSError) -> str:
    """`strerror` of an OSError, or its text when it has none."""
    return error.strerror or str(error)


def nearest_existing(path: Path) -> Path:
    """`path` or the nearest of its parents that is there (a link counts, a dangling one too):
    where a write to `path` would have to make its missing folders. A relative path whose
    parents are all missing ends at the current folder."""
    path = Path(path)
    for there in (path, *path.parents):
        if there.exists() or there.is_symlink():
            return there
    return Path(".")


class RunFolderInUse(RunFolderError):
    """Another live process holds the run folder's lock."""


#: seconds between tries of a lock held by another process (`RunFolderLock.acquire(wait)`)
_LOCK_POLL = 0.5


class RunFolderLock:
    """Exclusive ownership of a run folder for as long as the lock is held."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self._fd: int | None = None

    def acquire(self, wait: float = 0.0) -> RunFolderLock:
        """Take the lock, or raise RunFolderError naming its holder; while another process
        holds it, try again for up to `wait` seconds first."""
        if not wait >= 0:  # a NaN would never reach its deadline
            raise ValueError(f"the wait for a run folder's lock must be >= 0 seconds, got {wait!r}")
        deadline = time.monotonic() + wait
        while True:
            try:
                return self._try_acquire(waited=wait)
            except RunFolderInUse:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(min(_LOCK_POLL, max(deadline - time.monotonic(), 0.0)))

    def _try_acquire(self, waited: float) -> RunFolderLock:
        import fcntl  # POSIX only; factorl's simulators (MuJoCo, dm_control) run on POSIX hosts

        path = self.run_dir / LOCK_FILE
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if path.is_symlink():
                raise RunFolderError(f"{path} is a symbolic link; remove it and run again")
            # no O_TRUNC: a refused process must not wipe the holder's PID before reading it
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as e:
            raise RunFolderError(
                f"cannot write to run folder {self.run_dir} ({describe_os_error(e)}); choose "
                "another --run.dir or fix its permissions"
            ) from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                after = f" (still, after {waited:g} s)" if waited > 0 else ""
                raise RunFolderInUse(
                    f"{self.run_dir} is in use by another factorl process (PID {holder}){after}; "
                    "wait for it to finish or stop it, or choose another --run.dir"
                ) from None
            raise RunFolderError(f"cannot lock {path} ({describe_os_error(e)})") from e
        with contextlib.suppress(OSError):  # the PID is information only
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def __enter__(self) -> RunFolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def refuse_links(run_dir: Path) -> None:
    """Refuse a run folder whose factorl entries are symbolic links: writes (metrics appends,
    checkpoint renames) would land wherever a link points."""
    for name in (*RUN_ENTRIES, LOCK_FILE):
        path = Path(run_dir) / name
        if path.is_symlink():
            raise RunFolderError(
                f"{path} is a symbolic link; factorl does not write through links in a run folder"
                " (remove it, or copy the run folder without links)"
            )


def holds_a_run(run_dir: Path) -> bool:
    """Whether the folder already has a run's records: metrics, checkpoints or a config."""
    run_dir = Path(run_dir)
    if (run_dir / METRICS_FILE).exists() or (run_dir / CONFIG_FILE).exists():
        return True
    return bool(ckpt.list_checkpoints(run_dir / CHECKPOINT_DIR))


def clear_run(run_dir: Path) -> None:
    """Remove a previous run's entries (the `--overwrite` of a fresh run); nothing else."""
    for name in RUN_ENTRIES:
        path = Path(run_dir) / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def remove_leftovers(run_dir: Path) -> list[str]:
    """Remove what a process killed mid-write leaves behind: temporary checkpoint folders and
    temporary files of atomic writes. Call only while holding the lock. Returns what was done."""
    done = ckpt.recover_partial_writes(Path(run_dir) / CHECKPOINT_DIR)
    for path in Path(run_dir).glob(".*.tmp-*"):
        with contextlib.suppress(OSError):
            path.unlink()
            done.append(f"removed {path.name}")
    return done


def read_segments(run_dir: Path) -> list[dict[str, Any]] | None:
    """The run's segments (see `record_segment`); None for a run trained before factorl kept
    them."""
    path = Path(run_dir) / SEGMENTS_FILE
    if not path.exists():
        return None
    try:
        segments = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        segments = None
    # written atomically by factorl: anything else was edited or damaged by hand
    if not isinstance(segments, list) or not all(isinstance(s, dict) for s in segments):
        raise RunFolderError(f"{path} is not a list of segments (damaged?): remove it")
    return segments


def record_segment(run_dir: Path, start: Mapping[str, int], revision: str | None) -> None:
    """Add this process to the run's segments as it starts training from the counters `start`
    ({"from_env_step": 0} for a fresh run): a run resumed across sessions may have been
    trained by several commits, and its results should name each, with the process settings
    that change its speed. Call while holding the run folder's lock."""
    segment = {
        **start,
        "source_revision": revision,
        "started": local_time(),
        **process_settings(),  # a pinned or single-threaded process runs at other speeds
    }
    done = read_segments(run_dir) or []
    ckpt.write_json(Path(run_dir) / SEGMENTS_FILE, [*done, segment], indent=1)
