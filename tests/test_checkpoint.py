"""Checkpoint safety: atomic writes, verification, no pickle, clear errors."""

import errno
import json

import jax.numpy as jnp
import msgpack
import numpy as np
import pytest

from factorl.io import checkpoint as ckpt
from factorl.train import load_agent, train

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


def test_foreign_state_bytes_are_refused_even_with_matching_hashes(tmp_path):
    path = _save(tmp_path)
    (path / "state.npz").write_bytes(msgpack.packb({"w": "not an array", "evil": [1, 2]}))
    _rehash(path)
    with pytest.raises(ckpt.CheckpointError, match=r"could not be read|differently structured"):
        ckpt.load_checkpoint(path, STATE)


def test_wrong_shapes_are_refused(tmp_path):
    path = _save(tmp_path)
    other = {"w": jnp.zeros((3, 3), jnp.float32), "step": jnp.array(0, jnp.int32)}
    with pytest.raises(ckpt.CheckpointError, match="does not fit this agent"):
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


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    first = _save(tmp_path, 10)

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
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
