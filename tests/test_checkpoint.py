"""Checkpoint safety: atomic writes, verification, no pickle, clear errors."""

import errno
import json
import pickle
import time
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import same_leaves, tiny_config
from flax import serialization, struct

from factorl.io import checkpoint as ckpt
from factorl.train import _from_latest, load_agent, train

STATE = {"w": jnp.arange(6, dtype=jnp.float32).reshape(2, 3), "step": jnp.array(7, jnp.int32)}
ARRAYS = {"replay": {"obs": np.ones((4, 2), np.float32), "size": np.array(4)}}


def _save(root, step=10, **kw):
    return ckpt.save_checkpoint(root, step, STATE, ARRAYS, {"note": "x"}, **kw)


def test_round_trip(tmp_path):
    path = _save(tmp_path)
    state, arrays, meta = ckpt.load_checkpoint(path, STATE)
    np.testing.assert_array_equal(state["w"], STATE["w"])
    assert int(state["step"]) == 7
    np.testing.assert_array_equal(arrays["replay"]["obs"], ARRAYS["replay"]["obs"])
    assert meta["env_step"] == 10 and meta["note"] == "x"
    assert ckpt.latest_checkpoint(tmp_path) == path


@struct.dataclass
class _Learner:
    params: dict
    opt: tuple
    key: jax.Array
    step: jax.Array


#: a learner-like state with every kind of leaf a factorl state holds
NESTED = _Learner(
    params={
        "Dense_0": {
            "kernel": jnp.linspace(-1, 1, 12, dtype=jnp.float32).reshape(3, 4),
            "bias": jnp.array([0.5, -2.0, 3.25, 1e-3], jnp.bfloat16),
        }
    },
    opt=(jnp.arange(5, dtype=jnp.int32), [jnp.array([[True, False], [False, True]])]),
    key=jax.random.PRNGKey(3),  # uint32
    step=jnp.array(7, jnp.int32),  # 0-d
)


def _abstract(tree):
    return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)


def _assert_same(restored, expected):
    r, r_def = jax.tree_util.tree_flatten(restored)
    e, e_def = jax.tree_util.tree_flatten(expected)
    assert r_def == e_def
    for x, y in zip(r, e, strict=True):
        assert isinstance(x, np.ndarray) and x.dtype == y.dtype and x.shape == y.shape
        assert x.tobytes() == np.asarray(y).tobytes()


@pytest.mark.parametrize("abstract", [False, True], ids=["arrays", "shape_dtype_structs"])
def test_round_trip_of_every_leaf_kind(tmp_path, abstract):
    assert NESTED.params["Dense_0"]["bias"].dtype == jnp.bfloat16  # JAX made the bfloat16
    path = ckpt.save_checkpoint(tmp_path, 5, NESTED, {}, {})
    template = _abstract(NESTED) if abstract else NESTED
    state, arrays, meta = ckpt.load_checkpoint(path, template)
    _assert_same(state, NESTED)
    assert arrays == {} and meta["format"] == 3
    leaves = meta["state"]["leaves"]
    assert [leaf["path"] for leaf in leaves] == [
        "params/Dense_0/bias", "params/Dense_0/kernel", "opt/0", "opt/1/0", "key", "step"
    ]  # fmt: skip
    assert leaves[0] == {"path": "params/Dense_0/bias", "dtype": "bfloat16", "shape": [4]}
    # a plain npz: NumPy reads it without pickle (bfloat16 as its bits)
    with np.load(path / "state.npz", allow_pickle=False) as npz:
        assert npz.files == [f"leaf_{i}" for i in range(6)]
        assert npz["leaf_0"].dtype == np.uint16 and npz["leaf_5"].shape == ()


def test_a_checkpoint_is_the_same_bytes_for_the_same_state(tmp_path, monkeypatch):
    first = ckpt.save_checkpoint(tmp_path / "a", 5, NESTED, ARRAYS, {})
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 400 * 86400)  # zip entries' dates
    second = ckpt.save_checkpoint(tmp_path / "b", 5, NESTED, ARRAYS, {})
    monkeypatch.undo()
    names = sorted(p.name for p in first.iterdir())
    assert len(names) > 2 and names == sorted(p.name for p in second.iterdir())
    for name in names:  # the state, every array group and the manifest
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    for name in (n for n in names if n.endswith(".npz")):
        with zipfile.ZipFile(first / name) as zf:
            assert {info.date_time for info in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}
            assert {info.compress_type for info in zf.infolist()} == {zipfile.ZIP_STORED}
    meta = [ckpt.read_meta(p) for p in (first, second)]
    assert meta[0]["files"]["state.npz"] == meta[1]["files"]["state.npz"]


def test_the_manifest_and_array_groups_cannot_take_the_state_s_names(tmp_path):
    with pytest.raises(ValueError, match="reserved"):
        ckpt.save_checkpoint(tmp_path, 1, STATE, {}, {"state": 1})
    with pytest.raises(ValueError, match="reserved"):
        ckpt.save_checkpoint(tmp_path, 1, STATE, {"state": {"x": np.zeros(1)}}, {})
    assert not tmp_path.exists() or list(tmp_path.iterdir()) == []


def _save_legacy(root, env_step, state, arrays, meta, keep=2, *, fmt=2):
    """A checkpoint as factorl wrote it before format 3: the state as msgpack, by hand."""
    name = f"step_{env_step:010d}"
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    (path / "state.msgpack").write_bytes(serialization.to_bytes(jax.device_get(state)))
    for group, group_arrays in arrays.items():
        np.savez(path / f"{group}.npz", **group_arrays)
    files = {p.name: ckpt._sha256(p) for p in sorted(path.iterdir()) if p.name != "meta.json"}
    full = {"format": fmt, "env_step": env_step, "files": files, **meta}
    if fmt >= 2:
        full[ckpt.META_DIGEST] = ckpt._meta_digest(full)
    (path / "meta.json").write_text(json.dumps(full, indent=1))
    (root / "latest").write_text(name + "\n")
    return path


@pytest.mark.parametrize("fmt", [1, 2])
def test_format_1_and_2_checkpoints_still_load(tmp_path, fmt):
    path = _save_legacy(tmp_path, 10, NESTED, ARRAYS, {"note": "x"}, fmt=fmt)
    assert ckpt.latest_checkpoint(tmp_path) == path
    assert ckpt.state_file(ckpt.read_meta(path)) == "state.msgpack"
    for template in (NESTED, _abstract(NESTED)):
        state, arrays, meta = ckpt.load_checkpoint(path, template)
        _assert_same(state, NESTED)
        np.testing.assert_array_equal(arrays["replay"]["obs"], ARRAYS["replay"]["obs"])
        assert meta["format"] == fmt and meta["note"] == "x"
    (path / "state.msgpack").write_bytes(b"\x00")
    with pytest.raises(ckpt.CheckpointError, match=r"corrupt: state\.msgpack"):
        ckpt.load_checkpoint(path, NESTED)


@pytest.mark.parametrize("runner", ["host", "device"])
def test_a_run_checkpointed_in_format_2_resumes_as_if_never_stopped(tmp_path, monkeypatch, runner):
    if runner == "device":
        from test_device import _device_config as config
    else:
        config = tiny_config
    straight = train(config(tmp_path / "straight", steps=400))
    monkeypatch.setattr(ckpt, "save_checkpoint", _save_legacy)
    train(config(tmp_path / "split", steps=400), stop_after=250)
    root = tmp_path / "split" / "checkpoints"
    assert ckpt.read_meta(ckpt.latest_checkpoint(root))["format"] == 2
    monkeypatch.undo()
    load_agent(tmp_path / "split")  # a device run's against abstract leaves
    resumed = train(config(tmp_path / "split", steps=400), resume=tmp_path / "split")
    assert resumed.env_step == 400 and same_leaves(straight.state, resumed.state)
    assert ckpt.read_meta(ckpt.latest_checkpoint(root))["format"] == 3
    load_agent(tmp_path / "split")


@pytest.mark.parametrize("hard_links", [True, False])
def test_write_json_without_replace_never_replaces_a_file(tmp_path, monkeypatch, hard_links):
    if not hard_links:  # a filesystem without them: the check-then-rename fallback

        def no_link(src, dst):
            raise PermissionError(errno.EPERM, "Operation not permitted")

        monkeypatch.setattr(ckpt.os, "link", no_link)
    path = tmp_path / "result.json"
    ckpt.write_json(path, {"a": 1}, replace=False)
    assert json.loads(path.read_text()) == {"a": 1}
    with pytest.raises(FileExistsError):
        ckpt.write_json(path, {"a": 2}, replace=False)
    assert json.loads(path.read_text()) == {"a": 1}
    ckpt.write_json(path, {"a": 3})
    assert json.loads(path.read_text()) == {"a": 3}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]  # no temporary left


def test_keeps_only_recent_checkpoints_and_latest_pointer(tmp_path):
    for step in (10, 20, 30):
        _save(tmp_path, step, keep=2)
    names = [p.name for p in ckpt.list_checkpoints(tmp_path)]
    assert names == ["step_0000000020", "step_0000000030"]
    assert ckpt.latest_checkpoint(tmp_path).name == "step_0000000030"


@pytest.mark.parametrize("victim", ["state.npz", "replay.npz"])
def test_truncated_file_is_a_clear_error(tmp_path, victim):
    path = _save(tmp_path)
    data = (path / victim).read_bytes()
    (path / victim).write_bytes(data[: len(data) // 2])
    with pytest.raises(ckpt.CheckpointError, match=f"corrupt: {victim}"):
        ckpt.load_checkpoint(path, STATE)


def test_flipped_byte_is_detected(tmp_path):
    path = _save(tmp_path)
    data = bytearray((path / "state.npz").read_bytes())
    data[-1] ^= 0x01
    (path / "state.npz").write_bytes(bytes(data))
    with pytest.raises(ckpt.CheckpointError, match="SHA-256"):
        ckpt.load_checkpoint(path, STATE)


def _rehash(path):
    """What a malicious author would do: make the manifest agree with the tampered files."""
    meta = json.loads((path / "meta.json").read_text())
    meta["files"] = {name: ckpt._sha256(path / name) for name in meta["files"]}
    meta[ckpt.META_DIGEST] = ckpt._meta_digest(meta)
    (path / "meta.json").write_text(json.dumps(meta))


def test_pickled_arrays_are_refused_even_with_matching_hashes(tmp_path):
    path = _save(tmp_path)
    np.savez(path / "replay.npz", obs=np.array([object()], dtype=object))  # needs pickle
    _rehash(path)
    with pytest.raises(ckpt.CheckpointError, match=r"replay\.npz could not be read"):
        ckpt.load_checkpoint(path, STATE)


def test_a_group_declaring_more_than_the_memory_is_refused_before_it_is_read(tmp_path):
    """A forged member whose header declares an array larger than the memory (its data, zeros,
    compress to almost nothing) is refused from its header, before anything is allocated."""
    path = _save(tmp_path)
    header = {"descr": "<f8", "fortran_order": False, "shape": (2**40,)}
    with (
        zipfile.ZipFile(path / "replay.npz", "w", zipfile.ZIP_DEFLATED) as zf,
        zf.open("obs.npy", "w") as f,
    ):
        np.lib.format.write_array_header_1_0(f, header)
        f.write(bytes(1024))
    _rehash(path)
    with pytest.raises(ckpt.CheckpointError, match=r"declares 8192\.0 GiB of arrays but"):
        ckpt.load_checkpoint(path, STATE)


def test_foreign_state_bytes_are_refused_even_with_matching_hashes(tmp_path):
    path = _save(tmp_path)
    (path / "state.npz").write_bytes(b"PK\x03\x04 not a zip file at all")
    _rehash(path)
    with pytest.raises(ckpt.CheckpointError, match=r"state\.npz could not be read"):
        ckpt.load_checkpoint(path, STATE)


def _rewrite_state(path, members):
    """Replace state.npz by one holding `members` (name: array, pickled if need be)."""
    with zipfile.ZipFile(path / "state.npz", "w") as zf:
        for name, array in members.items():
            with zf.open(name, "w") as f:
                np.lib.format.write_array(f, np.asanyarray(array), allow_pickle=True)
    _rehash(path)


def _original_members(path):
    with np.load(path / "state.npz", allow_pickle=False) as npz:
        return {f"{k}.npy": npz[k] for k in npz.files}


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ("added", r"state\.npz holds 3 members, not the 2 leaves its manifest lists"),
        ("renamed", r"state\.npz holds 2 members, not the 2 leaves .*unexpected 'evil\.npy'"),
        ("reshaped", r"corrupt: state\.npz member leaf_1\.npy holds int32\[2\], its manifest"),
        ("retyped", r"corrupt: state\.npz member leaf_1\.npy holds float64\[\]"),
    ],
)
def test_tampered_state_members_are_refused_even_with_matching_hashes(tmp_path, change, error):
    path = _save(tmp_path)
    members = _original_members(path)
    if change == "added":
        members["leaf_2.npy"] = np.zeros(3)
    elif change == "renamed":
        members["evil.npy"] = members.pop("leaf_0.npy")
    elif change == "reshaped":
        members["leaf_1.npy"] = np.array([7, 7], np.int32)
    else:
        members["leaf_1.npy"] = np.array(7.0)
    _rewrite_state(path, members)
    with pytest.raises(ckpt.CheckpointError, match=error) as err:
        ckpt.load_checkpoint(path, STATE)
    assert "\n" not in str(err.value)


_UNPICKLED = []


def _sprung():
    _UNPICKLED.append("unpickled")


class _Trap:
    """Records being unpickled: loading a checkpoint must never get that far."""

    def __reduce__(self):
        return (_sprung, ())


def test_an_object_member_is_refused_without_unpickling(tmp_path):
    path = _save(tmp_path)
    members = _original_members(path)
    members["leaf_1.npy"] = np.array(_Trap(), dtype=object)
    _rewrite_state(path, members)
    pickle.loads(pickle.dumps(_Trap()))  # the trap works
    assert _UNPICKLED == ["unpickled"]
    _UNPICKLED.clear()
    with pytest.raises(ckpt.CheckpointError, match=r"state\.npz member leaf_1\.npy holds object"):
        ckpt.load_checkpoint(path, STATE)
    assert _UNPICKLED == []


def test_an_edited_state_manifest_is_refused(tmp_path):
    path = _save(tmp_path)
    meta = json.loads((path / "meta.json").read_text())
    meta["state"]["leaves"][0]["shape"] = "big"
    meta[ckpt.META_DIGEST] = ckpt._meta_digest(meta)
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ckpt.CheckpointError, match="manifest's state is malformed"):
        ckpt.load_checkpoint(path, STATE)


@pytest.mark.parametrize("abstract", [False, True], ids=["arrays", "shape_dtype_structs"])
def test_wrong_shapes_are_refused(tmp_path, abstract):
    path = _save(tmp_path)
    other = {"w": jnp.zeros((3, 3), jnp.float32), "step": jnp.array(0, jnp.int32)}
    with pytest.raises(
        ckpt.CheckpointError,
        match=r"does not fit this agent: leaf 1 \(w\) is float32\[2, 3\], expected float32\[3, 3\]",
    ):
        ckpt.load_checkpoint(path, _abstract(other) if abstract else other)


def test_wrong_dtypes_and_structures_are_refused(tmp_path):
    path = _save(tmp_path)
    other = {"w": jnp.zeros((2, 3), jnp.bfloat16), "step": jnp.array(0, jnp.int32)}
    with pytest.raises(ckpt.CheckpointError, match=r"leaf 1 \(w\) is float32\[2, 3\], expected"):
        ckpt.load_checkpoint(path, other)
    for other in (
        {"w": STATE["w"]},
        {**STATE, "extra": STATE["step"]},
        [STATE["w"], STATE["step"]],
    ):
        with pytest.raises(ckpt.CheckpointError, match="holds a differently structured state"):
            ckpt.load_checkpoint(path, other)


def test_manifest_cannot_point_outside_the_checkpoint(tmp_path):
    path = _save(tmp_path)
    meta = json.loads((path / "meta.json").read_text())
    meta["files"]["../../etc/passwd"] = "0" * 64
    meta[ckpt.META_DIGEST] = ckpt._meta_digest(meta)  # a deliberate edit, not an accident
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ckpt.CheckpointError, match="unsafe file"):
        ckpt.load_checkpoint(path, STATE)


def test_garbage_manifest_is_a_clear_error(tmp_path):
    path = _save(tmp_path)
    (path / "meta.json").write_text("{not json")
    with pytest.raises(ckpt.CheckpointError, match="not valid JSON"):
        ckpt.load_checkpoint(path, STATE)


@pytest.mark.parametrize("writer", ["state", "arrays"])
def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch, writer):
    first = _save(tmp_path, 10)

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    if writer == "state":  # the first file written
        monkeypatch.setattr(np.lib.format, "write_array", disk_full)
    else:  # the array groups, after the state
        monkeypatch.setattr(ckpt, "_write_arrays", disk_full)
    with pytest.raises(ckpt.CheckpointError, match="intact") as err:
        _save(tmp_path, 20)
    assert "No space left" in str(err.value)
    monkeypatch.undo()
    assert ckpt.latest_checkpoint(tmp_path) == first
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    ckpt.load_checkpoint(first, STATE)


def test_killed_mid_write_leaves_previous_loadable(tmp_path):
    """A process killed mid-write leaves a hidden temporary folder, never a half checkpoint."""
    first = _save(tmp_path, 10)
    partial = tmp_path / ".tmp-step_0000000020-999"
    partial.mkdir()
    (partial / "state.npz").write_bytes(b"\x00" * 10)
    assert ckpt.latest_checkpoint(tmp_path) == first
    # and a dangling `latest` pointer falls back to the newest complete checkpoint
    (tmp_path / "latest").write_text("step_0000000020\n")
    assert ckpt.latest_checkpoint(tmp_path) == first


def test_tampered_run_checkpoint_gives_a_clear_error(tmp_path):
    from conftest import tiny_config

    result = train(tiny_config(tmp_path / "run", steps=200))
    path = ckpt.latest_checkpoint(result.run_dir / "checkpoints")
    data = (path / "state.npz").read_bytes()
    (path / "state.npz").write_bytes(data[:100])
    with pytest.raises(ckpt.CheckpointError, match="corrupt"):
        load_agent(result.run_dir)
    with pytest.raises(ckpt.CheckpointError, match="corrupt"):
        train(tiny_config(tmp_path / "run", steps=400), resume=result.run_dir)


def test_a_latest_checkpoint_replaced_while_read_is_read_again(tmp_path):
    """A run still training writes a new checkpoint and deletes the one `eval` had just
    picked: the new latest is read instead; a checkpoint that is there and broken is not."""
    root = tmp_path / "checkpoints"

    def write(step):
        (root / f"step_{step:010d}").mkdir(parents=True)
        (root / f"step_{step:010d}" / ckpt.META_FILE).write_text("{}")
        (root / ckpt.LATEST_FILE).write_text(f"step_{step:010d}")

    write(200)
    read = []

    def load(path):
        read.append(path.name)
        if len(read) == 1:  # the trainer moves on while this reads
            write(300)
            for leftover in (path / ckpt.META_FILE, path):
                leftover.unlink() if leftover.is_file() else leftover.rmdir()
            raise ckpt.CheckpointError(f"{path} is not a checkpoint (no meta.json)")
        return path.name

    assert _from_latest(tmp_path, load) == "step_0000000300"
    assert read == ["step_0000000200", "step_0000000300"]

    def broken(path):
        raise ckpt.CheckpointError(f"checkpoint {path} is corrupt")

    with pytest.raises(ckpt.CheckpointError, match="corrupt"):
        _from_latest(tmp_path, broken)
