"""Checkpoints: atomic, verifiable, and free of pickle.

A checkpoint is a directory `CKPT_ROOT/step_<env step>/` holding
- `state.msgpack`: the learner state pytree (params, target params, optimiser state, keys,
  counters), written with `flax.serialization` (msgpack: data only, never code);
- `*.npz`: named groups of NumPy arrays (the replay buffer, the loop's episode in progress), read
  back with `allow_pickle=False`;
- `meta.json`: counters and RNG states as JSON plus the SHA-256 of every other file.

Writing goes to a hidden temporary directory that is renamed into place only when every file is
flushed to disk, then the `latest` pointer is replaced atomically: killing the process at any moment
leaves the previous checkpoint loadable. Loading verifies every hash before parsing anything, and
checks the restored pytree against the structure, shapes and dtypes the agent expects, so a
truncated, tampered or foreign file gives a clear error instead of a wrong run. A malicious file
can make loading fail but cannot run code.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import serialization

FORMAT_VERSION = 1
STATE_FILE = "state.msgpack"
META_FILE = "meta.json"
LATEST_FILE = "latest"
_NAME = re.compile(r"^step_\d+$")


class CheckpointError(RuntimeError):
    """A checkpoint cannot be written or read; the message says which and what to do."""


def _fsync_dir(path: Path) -> None:
    # make a rename durable; not every filesystem lets a directory be opened, hence suppress
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file so that readers see either the old content or the new, never a mix."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_file(path: Path, writer) -> None:
    with open(path, "wb") as f:
        writer(f)
        f.flush()
        os.fsync(f.fileno())


def save_checkpoint(
    root: Path,
    env_step: int,
    state: Any,
    arrays: dict[str, dict[str, np.ndarray]],
    meta: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Write checkpoint `root/step_<env_step>` atomically and point `latest` at it.

    On any failure (a full disk, a permission problem) the partial files are removed and the
    previous checkpoints stay as they were; the error says so.
    """
    root = Path(root)
    name = f"step_{env_step:010d}"
    final = root / name
    tmp = root / f".tmp-{name}-{os.getpid()}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        state_bytes = serialization.to_bytes(jax.device_get(state))
        _write_file(tmp / STATE_FILE, lambda f: f.write(state_bytes))
        for group, group_arrays in arrays.items():
            _write_file(tmp / f"{group}.npz", lambda f, a=group_arrays: np.savez(f, **a))
        files = {p.name: _sha256(p) for p in sorted(tmp.iterdir())}
        full_meta = {"format": FORMAT_VERSION, "env_step": env_step, "files": files, **meta}
        _write_file(tmp / META_FILE, lambda f: f.write(json.dumps(full_meta, indent=1).encode()))
        _fsync_dir(tmp)
        if final.exists():  # re-saving the same step: swap the old one out first
            old = root / f".old-{name}-{os.getpid()}"
            os.rename(final, old)
            os.rename(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, final)
        _fsync_dir(root)
        atomic_write_text(root / LATEST_FILE, name + "\n")
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        previous = latest_checkpoint(root)
        kept = f"the previous checkpoint {previous} is intact" if previous else "no checkpoint"
        raise CheckpointError(
            f"could not write checkpoint {final} ({e.strerror or e}); {kept}. "
            "Free disk space or fix permissions, then resume with --resume."
        ) from e
    _prune(root, keep)
    return final


def _prune(root: Path, keep: int) -> None:
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and _NAME.match(p.name))
    for stale in names[:-keep]:
        shutil.rmtree(root / stale, ignore_errors=True)


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under `root`, oldest first (temporary directories are ignored)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and _NAME.match(p.name)]
    return sorted(p for p in found if (p / META_FILE).is_file())


def latest_checkpoint(root: Path) -> Path | None:
    """The checkpoint `latest` points at, else the newest complete one, else None."""
    root = Path(root)
    pointer = root / LATEST_FILE
    if pointer.is_file():
        name = pointer.read_text(errors="replace").strip()
        if _NAME.match(name) and (root / name / META_FILE).is_file():
            return root / name
    found = list_checkpoints(root)
    return found[-1] if found else None


def read_meta(path: Path) -> dict[str, Any]:
    """Read and verify a checkpoint's manifest and file hashes (parses nothing else)."""
    path = Path(path)
    try:
        meta = json.loads((path / META_FILE).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path} is not a checkpoint (no {META_FILE})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"checkpoint {path} is corrupt: {META_FILE} is not valid JSON") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format {meta.get('format') if isinstance(meta, dict) else '?'}"
            f", this factorl reads format {FORMAT_VERSION}"
        )
    files = meta.get("files")
    if not isinstance(files, dict) or STATE_FILE not in files:
        raise CheckpointError(f"checkpoint {path} is corrupt: its manifest lists no state file")
    for fname, digest in files.items():
        if "/" in fname or "\\" in fname or fname.startswith("."):
            raise CheckpointError(f"checkpoint {path} names an unsafe file {fname!r}")
        fpath = path / fname
        if not fpath.is_file():
            raise CheckpointError(f"checkpoint {path} is incomplete: {fname} is missing")
        if _sha256(fpath) != digest:
            raise CheckpointError(
                f"checkpoint {path} is corrupt: {fname} does not match its recorded SHA-256 "
                "(truncated or modified). Resume from an earlier checkpoint or start again."
            )
    return meta


def _check_like(restored: Any, template: Any, path: Path) -> None:
    t_leaves, t_def = jax.tree_util.tree_flatten(template)
    r_leaves, r_def = jax.tree_util.tree_flatten(restored)
    if t_def != r_def:
        raise CheckpointError(f"checkpoint {path} holds a differently structured state")
    for i, (t, r) in enumerate(zip(t_leaves, r_leaves, strict=True)):
        t, r = np.asarray(t), np.asarray(r)
        if t.shape != r.shape or t.dtype != r.dtype:
            raise CheckpointError(
                f"checkpoint {path} does not fit this agent: leaf {i} is {r.dtype}{list(r.shape)},"
                f" expected {t.dtype}{list(t.shape)} (different network, bins or environment?)"
            )


def load_checkpoint(
    path: Path, template: Any
) -> tuple[Any, dict[str, dict[str, np.ndarray]], dict[str, Any]]:
    """Verify and load a checkpoint directory: (state like `template`, array groups, meta)."""
    path = Path(path)
    meta = read_meta(path)
    data = (path / STATE_FILE).read_bytes()
    try:
        state = serialization.from_bytes(jax.device_get(template), data)
    except Exception as e:  # msgpack and flax raise many types on foreign data
        raise CheckpointError(f"checkpoint {path} state could not be read: {e}") from e
    _check_like(state, template, path)
    arrays: dict[str, dict[str, np.ndarray]] = {}
    for fname in meta["files"]:
        if not fname.endswith(".npz"):
            continue
        try:
            with np.load(path / fname, allow_pickle=False) as npz:
                arrays[fname[: -len(".npz")]] = {k: npz[k] for k in npz.files}
        except Exception as e:
            raise CheckpointError(f"checkpoint {path}: {fname} could not be read: {e}") from e
    return state, arrays, meta
