"""Checkpoints: atomic, verifiable, and free of pickle.

A checkpoint is a directory `CKPT_ROOT/step_<env step>/` holding
- `state.npz`: the learner state pytree's leaves (params, target params, optimiser state, keys,
  counters; for the device runner its replay buffer too), one uncompressed `.npy` member per leaf
  in `jax.tree_util.tree_flatten` order, written and read one leaf at a time so that no copy of
  the whole state is ever built in memory;
- `*.npz`: named groups of NumPy arrays (the replay buffer, the loop's episode in progress), read
  back with `allow_pickle=False`; every zip member has a fixed date, so the same state gives a
  checkpoint of the same bytes;
- `meta.json`: counters and RNG states as JSON, each state leaf's path, dtype and shape, the
  SHA-256 of every other file, and a SHA-256 of its own content (so an edited counter is caught
  like a modified array).

Formats 1 and 2 held the state as `state.msgpack` (`flax.serialization`); they are still read.

Writing goes to a hidden temporary directory that is renamed into place only when every file is
flushed to disk, then the `latest` pointer is replaced atomically: killing the process at any moment
leaves the previous checkpoint loadable. Loading verifies every hash before parsing anything, and
checks the restored pytree against the structure, shapes and dtypes the agent expects, so a
truncated, tampered or foreign file gives a clear error instead of a wrong run; each state
member's header is checked against the manifest before its data is read, and object arrays are
refused, so nothing is ever unpickled. A malicious file can make loading fail but cannot run code.
Symbolic links inside a checkpoint are refused, so a checkpoint cannot make factorl read files
outside it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any, NoReturn

import jax
import numpy as np
from flax import serialization

from factorl.core.config import one_line
from factorl.io.system import available_memory_bytes

#: 2 added the manifest's own digest; 3 moved the state from msgpack to an npz streamed leaf by
#: leaf; formats 1 (no digest) and 2 are still read
FORMAT_VERSION = 3
READABLE_FORMATS = (1, 2, 3)
STATE_FILE = "state.npz"
#: the state file of formats 1 and 2
LEGACY_STATE_FILE = "state.msgpack"
META_FILE = "meta.json"
META_DIGEST = "meta_sha256"
LATEST_FILE = "latest"
#: what to do with a corrupt checkpoint: without it, its run's latest is the one before
MOVE_ASIDE = "Move it out of the checkpoints folder to use the run's previous one, or start again."
_NAME = re.compile(r"^step_\d+$")
#: what a write in progress is called, and the old copy a re-save of the same step swaps out
_TMP = re.compile(r"^\.tmp-(step_\d+)-\d+$")
_OLD = re.compile(r"^\.old-(step_\d+)-\d+$")
#: the manifest's own keys, which a caller's meta may not replace
_RESERVED = frozenset({"format", "env_step", "files", "state", META_DIGEST})
#: a fixed timestamp for the state's zip members, so the same state gives the same bytes
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
#: .npy header versions numpy writes for numeric arrays (3.0 is only for unicode field names)
_NPY_VERSIONS = ((1, 0), (2, 0))


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


def atomic_write_bytes(path: Path, data: bytes, *, replace: bool = True) -> None:
    """Write a file so that readers see either the old content or the new, never a mix. With
    `replace` False, a FileExistsError if anything is at `path`, however late it came."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            _link_if_absent(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    _fsync_dir(path.parent)


def _link_if_absent(tmp: Path, path: Path) -> None:
    """`tmp` at `path` only if nothing is there: a hard link is made or refused in one step, so
    no writer slips in between a check and the write."""
    try:
        os.link(tmp, path)
    except OSError as e:
        # a filesystem without hard links: check, then rename (a window, but a narrow one)
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
        if path.exists() or path.is_symlink():
            raise FileExistsError(errno.EEXIST, "File exists", str(path)) from None
        os.replace(tmp, path)


def atomic_write_text(path: Path, text: str, *, replace: bool = True) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), replace=replace)


def write_json(path: Path, data: Any, *, indent: int = 2, replace: bool = True) -> None:
    """`data` as JSON at `path`, atomically (its folder made if missing): a reader, or a writer
    cut off mid-write, finds the previous file or the new one, never part of one. With
    `replace` False, a FileExistsError if anything is at `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=indent) + "\n", replace=replace)


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


def state_file(meta: dict[str, Any]) -> str:
    """The name of the learner state's file in a checkpoint with this (verified) manifest."""
    return STATE_FILE if meta.get("format", FORMAT_VERSION) >= 3 else LEGACY_STATE_FILE


def _path_name(key_path: tuple) -> str:
    """A leaf's key path as text, spelled by factorl rather than by `jax.tree_util.keystr`, whose
    format may change between JAX versions and would then refuse every saved run."""
    parts = []
    for key in key_path:
        for attr in ("key", "name", "idx"):  # DictKey / FlattenedIndexKey, GetAttrKey, SequenceKey
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
        else:
            parts.append(str(key))
    return "/".join(parts)


def _stored_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype a state leaf is written with. NumPy's numeric dtypes are written as they are;
    JAX's others (bfloat16, float8, int4 from ml_dtypes) only as raw bytes that `.npy` cannot name,
    so as unsigned integers of the same size, viewed back as the template's dtype on load."""
    if dtype.isbuiltin == 1 and dtype.kind in "biufc":
        return dtype
    if dtype.isbuiltin == 2 and not dtype.hasobject and dtype.itemsize in (1, 2, 4, 8):
        return np.dtype(f"u{dtype.itemsize}")
    raise CheckpointError(f"a learner state leaf of dtype {dtype} cannot be checkpointed")


def _spec(leaf: Any) -> tuple[tuple[int, ...], np.dtype]:
    """A leaf's shape and dtype without copying it: a template may live on the device or be
    abstract (`jax.ShapeDtypeStruct`)."""
    if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
        return tuple(leaf.shape), np.dtype(leaf.dtype)
    array = np.asarray(leaf)
    return array.shape, array.dtype


def _to_host(leaf: Any) -> np.ndarray:
    # np.asarray of an accelerator's jax.Array caches the host copy on the array for as long as
    # the array lives, so every leaf written would stay in memory; a copy made through a CPU
    # buffer instead goes when the leaf has been written.
    if isinstance(leaf, jax.Array) and any(d.platform != "cpu" for d in leaf.devices()):
        try:
            cpu = jax.devices("cpu")[0]
        except RuntimeError:  # JAX_PLATFORMS without cpu: the cached copy it is
            return np.asarray(leaf)
        leaf = jax.device_put(leaf, cpu)
    return np.asarray(leaf)


def _member(index: int) -> str:
    return f"leaf_{index}.npy"


def _write_state(f, state: Any) -> list[dict[str, Any]]:
    """Write the leaves of `state` to the open file `f` as an uncompressed npz, one leaf on the
    host at a time, and return each leaf's path, dtype and shape for the manifest."""
    keyed, _ = jax.tree_util.tree_flatten_with_path(state)
    leaves = []
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for index, (key_path, leaf) in enumerate(keyed):
            array = _to_host(leaf)
            stored = _stored_dtype(array.dtype)
            info = zipfile.ZipInfo(_member(index), date_time=_ZIP_DATE)
            with zf.open(info, "w", force_zip64=True) as out:
                np.lib.format.write_array(out, array.view(stored), allow_pickle=False)
            leaves.append(
                {
                    "path": _path_name(key_path),
                    "dtype": array.dtype.name,
                    "shape": list(array.shape),
                }
            )
            del array  # before the next leaf is fetched
    return leaves


def _write_arrays(f, arrays: dict[str, np.ndarray]) -> None:
    """Write named arrays to the open file `f` as `np.savez` would (uncompressed, one `NAME.npy`
    member each), but with a fixed timestamp, so the same arrays give the same bytes."""
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, value in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
            with zf.open(info, "w", force_zip64=True) as out:
                np.lib.format.write_array(out, np.asanyarray(value), allow_pickle=False)


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
    reserved = _RESERVED & set(meta)
    if reserved or "state" in arrays:
        raise ValueError(f"meta keys {sorted(reserved)} and an array group 'state' are reserved")
    root = Path(root)
    name = f"step_{env_step:010d}"
    final = root / name
    tmp = root / f".tmp-{name}-{os.getpid()}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        described: list[dict[str, Any]] = []
        _write_file(tmp / STATE_FILE, lambda f: described.extend(_write_state(f, state)))
        for group, group_arrays in arrays.items():
            _write_file(tmp / f"{group}.npz", lambda f, a=group_arrays: _write_arrays(f, a))
        files = {p.name: _sha256(p) for p in sorted(tmp.iterdir())}
        full_meta = {"format": FORMAT_VERSION, "env_step": env_step, "files": files, **meta}
        full_meta["state"] = {"leaves": described}
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
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if not isinstance(e, OSError):
            raise
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
            "(edited by hand?). " + MOVE_ASIDE
        )
    files = meta.get("files")
    if not isinstance(files, dict) or state_file(meta) not in files:
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
                "(truncated or modified). " + MOVE_ASIDE
            )
    return meta


def _check_like(restored: Any, template: Any, path: Path) -> None:
    t_leaves, t_def = jax.tree_util.tree_flatten(template)
    r_leaves, r_def = jax.tree_util.tree_flatten(restored)
    if t_def != r_def:
        raise CheckpointError(f"checkpoint {path} holds a differently structured state")
    for i, (t, r) in enumerate(zip(t_leaves, r_leaves, strict=True)):
        (r_shape, r_dtype), (t_shape, t_dtype) = _spec(r), _spec(t)
        if r_shape != t_shape or r_dtype != t_dtype:
            _misfit(path, f"leaf {i}", f"{r_dtype}{list(r_shape)}", (t_shape, t_dtype))


def _misfit(path: Path, where: str, saved: str, expected: tuple) -> NoReturn:
    shape, dtype = expected
    raise CheckpointError(
        f"checkpoint {path} does not fit this agent: {where} is {saved}, expected"
        f" {dtype}{list(shape)} (different network, bins or environment?)"
    )


def _saved_leaves(path: Path, meta: dict[str, Any]) -> list[tuple[str, tuple[int, ...], str]]:
    """(path, shape, dtype name) of each leaf the manifest of a format 3 checkpoint lists."""
    leaves = meta.get("state", {}).get("leaves") if isinstance(meta.get("state"), dict) else None
    out = []
    for leaf in leaves if isinstance(leaves, list) else [None]:
        ok = isinstance(leaf, dict) and isinstance(leaf.get("path"), str)
        shape = leaf.get("shape") if ok else None
        ok = ok and isinstance(shape, list) and isinstance(leaf.get("dtype"), str)
        if not ok or not all(type(n) is int and n >= 0 for n in shape):
            raise CheckpointError(
                f"checkpoint {path} is corrupt: its manifest's state is malformed"
            )
        out.append((leaf["path"], tuple(shape), leaf["dtype"]))
    return out


class _NpyVersionError(ValueError):
    """A `.npy` member of a format version factorl does not write."""


def _npy_header(zf: zipfile.ZipFile, name: str) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) a zip member's `.npy` header declares, read without its data; a
    ValueError where it is not a `.npy` (`_NpyVersionError`: not of a version factorl writes)."""
    with zf.open(name) as f:
        version = np.lib.format.read_magic(f)
        if version not in _NPY_VERSIONS:
            raise _NpyVersionError(f"{name} is .npy {version}")
        read_header = np.lib.format.read_array_header_1_0
        if version == (2, 0):
            read_header = np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(f)
    return tuple(shape), dtype


def _read_member(path: Path, zf: zipfile.ZipFile, name: str, spec: tuple) -> np.ndarray:
    """One state leaf, its `.npy` header checked before its data is read (so a tampered header
    can neither unpickle nor make factorl allocate what the agent does not expect)."""
    shape, dtype = spec
    stored = _stored_dtype(dtype)
    try:
        got_shape, got_dtype = _npy_header(zf, name)
    except _NpyVersionError as e:
        raise CheckpointError(f"checkpoint {path} is corrupt: {e}") from e
    if got_dtype.hasobject or got_dtype != stored or tuple(got_shape) != shape:
        raise CheckpointError(
            f"checkpoint {path} is corrupt: {STATE_FILE} member {name} holds"
            f" {got_dtype}{list(got_shape)}, its manifest {dtype}{list(shape)}"
        )
    with zf.open(name) as f:
        array = np.lib.format.read_array(f, allow_pickle=False)
    return array if stored == dtype else array.view(dtype)


def _read_state(path: Path, meta: dict[str, Any], template: Any) -> Any:
    """The learner state of a format 3 checkpoint, read leaf by leaf into `template`'s structure
    after its manifest's paths, shapes and dtypes are checked against the template's."""
    keyed, treedef = jax.tree_util.tree_flatten_with_path(template)
    saved = _saved_leaves(path, meta)
    if [name for name, _, _ in saved] != [_path_name(k) for k, _ in keyed]:
        raise CheckpointError(f"checkpoint {path} holds a differently structured state")
    specs = []
    for index, ((name, shape, dtype), (_, leaf)) in enumerate(zip(saved, keyed, strict=True)):
        expected = _spec(leaf)
        # dtypes compared by name: the manifest's is text, which is never parsed as a dtype
        if dtype != expected[1].name or shape != expected[0]:
            where = f"leaf {index}" + (f" ({name[:80]})" if name != str(index) else "")
            _misfit(path, where, f"{dtype[:40]}{list(shape)}", expected)
        specs.append(expected)
    members = [_member(i) for i in range(len(specs))]
    try:
        with zipfile.ZipFile(path / STATE_FILE) as zf:
            names = zf.namelist()
            if names != members:
                odd = next((n for n in names if n not in members), None)
                raise CheckpointError(
                    f"checkpoint {path} is corrupt: {STATE_FILE} holds {len(names)} members, not"
                    f" the {len(members)} leaves its manifest lists"
                    + (f" (unexpected {odd[:80]!r})" if odd else "")
                )
            leaves = [_read_member(path, zf, n, s) for n, s in zip(members, specs, strict=True)]
    except CheckpointError:
        raise
    except Exception as e:  # zipfile and numpy raise many types on foreign data
        raise CheckpointError(f"checkpoint {path}: {STATE_FILE} could not be read: {e}") from e
    return jax.tree_util.tree_unflatten(treedef, leaves)


def _read_legacy_state(path: Path, template: Any) -> Any:
    """The learner state of a format 1 or 2 checkpoint (`state.msgpack`)."""
    data = (path / LEGACY_STATE_FILE).read_bytes()
    try:
        state = serialization.from_bytes(jax.device_get(template), data)
    except Exception as e:  # msgpack and flax raise many types on foreign data
        raise CheckpointError(f"checkpoint {path} state could not be read: {e}") from e
    _check_like(state, template, path)
    return state


def load_checkpoint(
    path: Path, template: Any
) -> tuple[Any, dict[str, dict[str, np.ndarray]], dict[str, Any]]:
    """Verify and load a checkpoint directory: (state like `template`, array groups, meta).

    `template` gives the structure, shapes and dtypes expected; its leaves may be arrays or
    `jax.ShapeDtypeStruct`s. The state's leaves come back as NumPy arrays."""
    path = Path(path)
    meta = read_meta(path)
    if meta["format"] >= 3:
        state = _read_state(path, meta, template)
    else:
        state = _read_legacy_state(path, template)
    return state, _read_arrays(path, meta), meta


def load_arrays(path: Path) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, Any]]:
    """Verify a checkpoint directory and load its array groups alone, without the learner state
    (which needs the agent's template): (array groups, meta). For tools that read what a run
    stored, such as its replay buffer."""
    path = Path(path)
    meta = read_meta(path)
    return _read_arrays(path, meta), meta


def _declared_bytes(path: Path, fname: str) -> int:
    """The bytes the `.npy` headers of an `.npz` group declare, read without its data: a
    compressed member of zeros is small on disk however large the array it declares."""
    with zipfile.ZipFile(path / fname) as zf:
        headers = [_npy_header(zf, name) for name in zf.namelist()]
    return sum(int(np.prod(shape, dtype=object)) * dtype.itemsize for shape, dtype in headers)


def _read_arrays(path: Path, meta: dict[str, Any]) -> dict[str, dict[str, np.ndarray]]:
    """The `*.npz` groups a verified manifest lists, read without pickle, once their headers
    declare no more than the memory available (the arrays' shapes are the reader's to check)."""
    names = [f for f in meta["files"] if f.endswith(".npz") and f != state_file(meta)]
    try:
        declared = sum(_declared_bytes(path, fname) for fname in names)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"checkpoint {path} is corrupt: {one_line(e)}") from e
    available = available_memory_bytes()
    if available is not None and declared > available:
        raise CheckpointError(
            f"checkpoint {path} declares {declared / 2**30:.1f} GiB of arrays but "
            f"{available / 2**30:.1f} GiB of memory is available; free memory, or it is not a "
            "checkpoint factorl wrote for this run"
        )
    arrays: dict[str, dict[str, np.ndarray]] = {}
    for fname in names:
        try:
            with np.load(path / fname, allow_pickle=False) as npz:
                arrays[fname[: -len(".npz")]] = {k: npz[k] for k in npz.files}
        except Exception as e:
            raise CheckpointError(f"checkpoint {path}: {fname} could not be read: {e}") from e
    return arrays
