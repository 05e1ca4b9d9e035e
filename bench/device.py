"""Device runner throughput: env steps/s with learning, and the cost of seeds vmapped in one
process.

For each algorithm and each number of seeds S, one compiled chunk of the device runner (N
environments x `--chunk` vector steps, acting, replay inserts and learner steps inside `lax.scan`,
vmapped over S seeds) is timed after a warm-up that compiles it and fills replay past
`learning_starts`. The S values are timed in rounds, in alternating order (1 2 4 8, then 8 4 2 1,
...), so a drift in the machine's speed hits every S alike; the report gives the median wall time
per chunk, env steps/s summed over seeds, and the ratio to S = 1.

    python bench/device.py --out bench/results/device-gymnax-pendulum.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import jax
import numpy as np

from factorl.io.system import source_revision
from factorl.runners.device import _compiled_program
from factorl.train import make_config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import finish, load_average  # bench/ is not a package

AGENTS = {
    # the learning test's DecQN (tests/test_device.py) and SAC's reference settings
    "decqn": {
        "width": 256,
        "learning_rate": 1e-3,
        "update_every": 2,
        "learning_starts": 1000,
    },
    "sac": {"learning_starts": 1000},
}


def time_seeds(algo: str, env: str, num_envs: int, seeds: list[int], chunk: int, rounds: int):
    """Median seconds per chunk for each S, timed in alternating order."""
    programs = {}
    for s in seeds:
        cfg = make_config(
            algo,
            {"env.id": env, "env.num_envs": num_envs, "run.num_seeds": s,
             "runner.eval_episodes": 1, "replay.capacity": 100_000,
             **{f"agent.{k}": v for k, v in AGENTS[algo].items()},
             **({"replay.prioritized": False} if algo == "decqn" else {})},
        )  # fmt: skip
        program = _compiled_program(cfg)
        agent, init, run = program.agent, program.init, program.run
        state = init(np.arange(s, dtype=np.int32))
        start = time.perf_counter()
        warm_steps = 0
        while warm_steps * num_envs < 2 * agent.learning_starts:  # learning has started
            state, stats = run(state, chunk, None)  # no dataset
            warm_steps += chunk
        jax.block_until_ready(state)
        programs[s] = {"run": run, "state": state, "warmup_s": time.perf_counter() - start}
    times: dict[int, list[float]] = {s: [] for s in seeds}
    for r in range(rounds):
        for s in seeds if r % 2 == 0 else list(reversed(seeds)):
            p = programs[s]
            start = time.perf_counter()
            p["state"], stats = p["run"](p["state"], chunk, None)
            jax.block_until_ready(p["state"])
            times[s].append(time.perf_counter() - start)
            assert int(np.asarray(stats.updates).min()) > 0, "the timed chunk did not learn"
    base = float(np.median(times[seeds[0]]))
    out = {}
    for s in seeds:
        median = float(np.median(times[s]))
        out[str(s)] = {
            "chunk_seconds": times[s],
            "median_chunk_s": median,
            "env_steps_per_s_all_seeds": s * num_envs * chunk / median,
            "wall_ratio_to_one_seed": median / base,
            "warmup_and_compile_s": programs[s]["warmup_s"],
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="gymnax:Pendulum-v1")
    parser.add_argument("--algos", nargs="+", default=list(AGENTS))
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--chunk", type=int, default=250, help="vector steps per timed chunk")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    report = {
        "what": "device runner: wall time of one chunk per number of vmapped seeds",
        "env": args.env,
        "num_envs": args.num_envs,
        "chunk_vector_steps": args.chunk,
        "rounds": args.rounds,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "backend": jax.default_backend(),
            "devices": [str(d) for d in jax.devices()],
            "load_average_start": load_average(),
        },
        "versions": {"jax": jax.__version__, "numpy": np.__version__},
        "commit": source_revision(),
        "results": {},
    }
    for algo in args.algos:
        report["results"][algo] = time_seeds(
            algo, args.env, args.num_envs, args.seeds, args.chunk, args.rounds
        )
        print(json.dumps({algo: {s: round(v["wall_ratio_to_one_seed"], 2) for s, v in
                                 report["results"][algo].items()}}), flush=True)  # fmt: skip
    print(finish(report, args.out, load_key="load_average_end"))


if __name__ == "__main__":
    main()
