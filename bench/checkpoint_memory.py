"""Checkpoint memory: peak resident memory of writing and of loading a checkpoint whose learner
state holds one large array, in checkpoint format 3 and in the msgpack format before it.

The device runner checkpoints its whole runner state, replay buffer included. Format 3 writes the
state's leaves into `state.npz` one at a time and reads them back one at a time; formats 1 and 2
built the whole state as one msgpack byte string (`flax.serialization.to_bytes`) to write it, and
read the whole file into memory to parse it. Each variant runs in a fresh process: the peak
resident set size (the kernel's ru_maxrss) once the state (or, to load, its abstract template)
exists, and again after the checkpoint is written or loaded. A load ends holding the state, so its
peak is at least the state's size above the first figure.

    python bench/checkpoint_memory.py --out bench/results/checkpoint-memory.json
    python bench/checkpoint_memory.py --mb 2000
"""

from __future__ import annotations

import argparse
import functools
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import finish, provenance  # bench/ is not a package

from factorl.io.system import source_revision

FORMATS = ("npz", "msgpack")
OPERATIONS = ("save", "load")


def peak_mb() -> float:
    """This process's peak resident set size so far, in MB (Linux reports ru_maxrss in KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_state(mb: int):
    """A device runner's state in miniature: one large buffer beside small learner leaves."""
    import jax.numpy as jnp

    return {
        "replay": jnp.arange(mb * 2**20 // 4, dtype=jnp.float32),
        "params": {"kernel": jnp.ones((256, 256), jnp.float32), "bias": jnp.zeros(256)},
        "step": jnp.array(3, jnp.int32),
    }


def save_msgpack(root: Path, env_step: int, state) -> None:
    """A format 2 checkpoint of `state`, its state written as save_checkpoint did before format
    3: the whole state fetched to the host, then serialised to one byte string."""
    import jax
    from flax import serialization

    from factorl.io import checkpoint as ckpt

    path = root / f"step_{env_step:010d}"
    path.mkdir(parents=True)
    state_bytes = serialization.to_bytes(jax.device_get(state))
    ckpt._write_file(path / ckpt.LEGACY_STATE_FILE, lambda f: f.write(state_bytes))
    meta = {"format": 2, "env_step": env_step, "files": {}}
    meta["files"][ckpt.LEGACY_STATE_FILE] = ckpt._sha256(path / ckpt.LEGACY_STATE_FILE)
    meta[ckpt.META_DIGEST] = ckpt._meta_digest(meta)
    ckpt._write_file(path / ckpt.META_FILE, lambda f: f.write(json.dumps(meta).encode()))
    (root / ckpt.LATEST_FILE).write_text(path.name + "\n")


def measure(operation: str, fmt: str, mb: int, folder: Path) -> dict:
    """One process's figures for writing a checkpoint to `folder`, or loading the one there."""
    import jax

    from factorl.io import checkpoint as ckpt

    if operation == "save":
        state = make_state(mb)
        jax.block_until_ready(state)
        before = peak_mb()
        start = time.perf_counter()
        if fmt == "npz":
            ckpt.save_checkpoint(folder, 1, state, {}, {})
        else:
            save_msgpack(folder, 1, state)
    else:
        template = jax.eval_shape(functools.partial(make_state, mb))  # as `load_device_run` reads
        path = ckpt.latest_checkpoint(folder)
        before = peak_mb()
        start = time.perf_counter()
        state, _, meta = ckpt.load_checkpoint(path, template)
        assert meta["format"] == (3 if fmt == "npz" else 2)
        assert state["replay"].shape == template["replay"].shape and float(state["step"]) == 3
    seconds = time.perf_counter() - start
    after = peak_mb()
    return {
        "peak_rss_mb_before": round(before),
        "peak_rss_mb_after": round(after),
        "peak_rss_mb_added": round(after - before),
        "seconds": round(seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=500, help="size of the large array")
    parser.add_argument("--workdir", help="where checkpoints are written (default: a temp dir)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)  # OPERATION FORMAT FOLDER
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.child:
        operation, fmt, folder = args.child
        print(json.dumps(measure(operation, fmt, args.mb, Path(folder))))
        return
    report = {
        "benchmark": "peak resident memory of writing and loading a checkpoint, npz or msgpack",
        "command": " ".join(sys.argv),
        "settings": {"large_array_mb": args.mb, "template_on_load": "jax.ShapeDtypeStruct"},
        **provenance(source_revision()),
        "formats": {},
    }
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="ckpt-memory-") as work:
        for fmt in FORMATS:
            folder = Path(work) / fmt
            figures = {}
            for operation in OPERATIONS:
                cmd = [sys.executable, __file__, "--mb", str(args.mb), "--child", operation, fmt,
                       str(folder)]  # fmt: skip
                done = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    raise SystemExit(f"{fmt} {operation} failed:\n{done.stderr[-3000:]}")
                figures[operation] = json.loads(done.stdout.strip().splitlines()[-1])
                print(f"{fmt} {operation}: {figures[operation]}", file=sys.stderr, flush=True)
            state = next(folder.glob("step_*/state.*"))
            figures["state_file"] = {"name": state.name, "mb": round(state.stat().st_size / 2**20)}
            report["formats"][fmt] = figures
    print(finish(report, args.out))


if __name__ == "__main__":
    main()
