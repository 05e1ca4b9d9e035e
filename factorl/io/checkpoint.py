"""Checkpoints: atomic, verifiable, and free of pickle.

A checkpoint is a directory `CKPT_ROOT/step_<env step>/` holding
- `state.msgpack`: the learner state pytree (params, target params, optimiser state, keys,
  counters), written with `flax.serialization` (msgpack: data only, never code);
- `*.npz`: named groups of NumPy arrays (the replay buffer, the loop's episode in progress), read
  back with `allow_pickle=False`;
- `meta.json`: counters and RNG states as JSON plus the SHA-256 of every other file, and a
  SHA-256 of its own content (so an edited counter is caught like a modified array).

Writing goes to a hidden temporary directory that is renamed into place only when every file is
flushed to disk, then the `latest` pointer is replaced atomically: killing the process at any moment
leaves the previous checkpoint loadable. Loading verifies every hash before parsing anything, and
checks the restored pytree against the structure, shapes and dtypes the agent expects, so a
truncated, tampered or foreign file gives a clear error instead of a wrong run. A malicious file
can make loading fail but cannot run code. Symbolic links inside a checkpoint are refused, so a
checkpoint cannot make factorl read files outside it.
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

#: 2 added the manifest's own digest; format 1 (no digest) is still read
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
STATE_FILE = "state.msgpack"
META_FILE = "meta.json"
META_DIGEST = "meta_sha256"
LATEST_FILE = "latest"
_NAME = re.compile(r"^step_\d+$")
#: what a write in progress is called, and the old copy a re-save of the same step swaps out
_TMP = re.compile(r"^\.tmp-(step_\d+)-\d+$")
_OLD = re.compile(r"^\.old-(step_\d+)-\d+$")


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


def write_json(path: Path, data: Any, *, indent: int = 2) -> None:
    """`data` as JSON at `path`, atomically (its folder made if missing): a reader, or a writer
    cut off mid-write, finds the previous file or the new one, never part of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=indent) + "\n")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _meta_digest(meta: dict[str, Any]) -> str:
    body = {k: v for k, v in meta.items() if k != META_DIGEST}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


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
        full_meta[META_DIGEST] = _meta_digest(full_meta)
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


def recover_partial_writes(root: Path) -> list[str]:
    """Tidy what a writer killed mid-save left in `root`: a temporary folder is removed; an old
    copy swapped out for a re-save of the same step is put back if the new one never landed, else
    removed. Only for the process that owns the run folder. Returns what was done."""
    root = Path(root)
    done: list[str] = []
    if not root.is_dir():
        return done
    for path in sorted(root.iterdir()):
        tmp, old = _TMP.match(path.name), _OLD.match(path.name)
        if old and not (root / old.group(1)).exists():
            os.rename(path, root / old.group(1))
            done.append(f"restored {old.group(1)} from an interrupted re-save")
        elif tmp or old:
            shutil.rmtree(path, ignore_errors=True)
            done.append(f"removed {path.name} left by an interrupted checkpoint write")
    return done


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
    if path.is_symlink():
        raise CheckpointError(f"checkpoint {path} is a symbolic link; factorl refuses links")
    if (path / META_FILE).is_symlink():
        raise CheckpointError(f"checkpoint {path} is corrupt: {META_FILE} is a symbolic link")
    try:
        meta = json.loads((path / META_FILE).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path} is not a checkpoint (no {META_FILE})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"checkpoint {path} is corrupt: {META_FILE} is not valid JSON") from e
    if not isinstance(meta, dict) or meta.get("format") not in READABLE_FORMATS:
        raise CheckpointError(
            f"checkpoint {path} has format {meta.get('format') if isinstance(meta, dict) else '?'}"
            f", this factorl reads formats {', '.join(map(str, READABLE_FORMATS))}"
        )
    if meta["format"] >= 2 and meta.get(META_DIGEST) != _meta_digest(meta):
        raise CheckpointError(
            f"checkpoint {path} is corrupt: {META_FILE} does not match its recorded SHA-256 "
            "(edited by hand?). Resume from an earlier checkpoint or start again."
        )
    files = meta.get("files")
    if not isinstance(files, dict) or STATE_FILE not in files:
        raise CheckpointError(f"checkpoint {path} is corrupt: its manifest lists no state file")
    for fname, digest in files.items():
        if "/" in fname or "\\" in fname or fname.startswith("."):
            raise CheckpointError(f"checkpoint {path} names an unsafe file {fname!r}")
        fpath = path / fname
        if fpath.is_symlink():
            raise CheckpointError(f"checkpoint {path} is corrupt: {fname} is a symbolic link")
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
        # the template may be abstract (jax.ShapeDtypeStruct leaves): only shapes and dtypes
        t = t if isinstance(t, jax.ShapeDtypeStruct) else np.asarray(t)
        r = np.asarray(r)
        if tuple(t.shape) != r.shape or np.dtype(t.dtype) != r.dtype:
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
    return state, _read_arrays(path, meta), meta


def load_arrays(path: Path) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, Any]]:
    """Verify a checkpoint directory and load its array groups alone, without the learner state
    (which needs the agent's template): (array groups, meta). For tools that read what a run
    stored, such as its replay buffer."""
    path = Path(path)
    meta = read_meta(path)
    return _read_arrays(path, meta), meta


def _read_arrays(path: Path, meta: dict[str, Any]) -> dict[str, dict[str, np.ndarray]]:
    """The `*.npz` groups a verified manifest lists, read without pickle."""
    arrays: dict[str, dict[str, np.ndarray]] = {}
    for fname in meta["files"]:
        if not fname.endswith(".npz"):
            continue
        try:
            with np.load(path / fname, allow_pickle=False) as npz:
                arrays[fname[: -len(".npz")]] = {k: npz[k] for k in npz.files}
        except Exception as e:
            raise CheckpointError(f"checkpoint {path}: {fname} could not be read: {e}") from e
    return arrays
