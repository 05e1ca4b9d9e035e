"""Device runner memory: peak resident memory of a run's program with its state donated or copied.

`factorl train` on a JAX-native environment runs its training in chunks, each one call of a
jitted program on the whole runner state, replay buffer included. The program takes that state as
donated, so a chunk updates the buffer in place; a program that does not (the copied mode here,
as before commit b962769) returns a new state beside the old one, and the buffer is held twice.
This script measures both in fresh processes, one after the other: the peak resident set size
(the kernel's ru_maxrss) after building the initial state and after each chunk. The replay
buffer's own size is given beside them.

    python bench/device_memory.py --out bench/results/device-memory-vdn-mpe.json
    python bench/device_memory.py --algo decqn --env gymnax:Pendulum-v1 --capacity 2000000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import finish, provenance  # bench/ is not a package

from factorl.io.system import source_revision

MODES = ("donated", "copied")
SETTING_NAMES = ("algo", "env", "num_envs", "capacity", "chunks", "vector_steps")


def peak_mb() -> float:
    """This process's peak resident set size so far, in MB (Linux reports ru_maxrss in KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(
    algo: str, env_id: str, num_envs: int, capacity: int, chunks: int, steps: int, mode: str
) -> dict:
    """One process's figures: the program built as `factorl train` builds it (donated), or the
    same functions jitted without donation (copied)."""
    import jax
    import numpy as np

    from factorl.runners import device
    from factorl.train import make_config

    cfg = make_config(
        algo, {"env.id": env_id, "env.num_envs": num_envs, "replay.capacity": capacity}
    )
    program = device._compiled_program(cfg)
    env, agent, init, run = program.env, program.agent, program.init, program.run
    if mode == "copied":
        settings = device.DeviceSettings(num_envs, 1, env.spec.max_episode_steps)
        run_one = device.make_train(agent, env, settings).run
        run = jax.jit(device.over_seeds(run_one, in_axes=(0, None, None)))
    state = init(np.zeros(1, np.int32))
    jax.block_until_ready(state)
    replay_mb = sum(x.nbytes for x in jax.tree_util.tree_leaves(state.replay)) / 2**20
    after = [round(peak_mb())]
    for _ in range(chunks):
        state, _ = run(state, np.int32(steps), None)  # no dataset
        jax.block_until_ready(state)
        after.append(round(peak_mb()))
    return {
        "replay_buffer_mb": round(replay_mb),
        "peak_rss_mb_after_init": after[0],
        "peak_rss_mb_after_each_chunk": after[1:],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", default="vdn")
    parser.add_argument("--env", default="jaxmarl:MPE_simple_spread_v3")
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--capacity", type=int, default=1_040_000, help="replay transitions")
    parser.add_argument("--chunks", type=int, default=3)
    parser.add_argument("--vector-steps", type=int, default=100, help="per chunk")
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)  # a child process
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    setting = (args.algo, args.env, args.num_envs, args.capacity, args.chunks, args.vector_steps)
    if args.mode:
        print(json.dumps(measure(*setting, args.mode)))
        return
    report = {
        "benchmark": "device runner peak resident memory, run state donated or copied",
        "command": " ".join(sys.argv),
        "settings": dict(zip(SETTING_NAMES, setting, strict=True)),
        **provenance(source_revision(), packages=["jaxmarl", "gymnax"]),
        "modes": {},
    }
    for mode in MODES:
        cmd = [sys.executable, __file__, "--mode", mode, "--algo", args.algo, "--env", args.env,
               "--num-envs", str(args.num_envs), "--capacity", str(args.capacity),
               "--chunks", str(args.chunks), "--vector-steps", str(args.vector_steps)]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{mode} failed:\n{done.stderr[-3000:]}")
        report["modes"][mode] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{mode}: {report['modes'][mode]}", file=sys.stderr, flush=True)
    print(finish(report, args.out))


if __name__ == "__main__":
    main()
