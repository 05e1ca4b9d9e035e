"""Host runner throughput with N vectorised environments: DecQN on dmc:cheetah-run.

Builds a real host runner (`factorl.runners.host.HostTrainer`, `factorl.train.Trainer` in earlier
commits; reference DecQN settings, small budget, no evaluation, checkpoints or TensorBoard),
drives it untimed with `trainer.step` for `--warmup` env steps and, when `--learning-starts` is
at most `--warmup`, until the first learner update (its compilation) has passed; then times
`--steps` env steps of the loop and, separately, the agent's `act` alone.
Prints one JSON line. `--profile FILE` writes cProfile stats of the timed loop.

Runs against whichever factorl is importable, so it can time the code of two commits side by side
(PYTHONPATH pointing at a worktree of each). The single-env loop before `num_envs` existed is
supported: there `num_envs` must be 1, and `act` takes one observation instead of a batch.

Usage::

    PYTHONPATH=/path/to/worktree python bench/host_vector.py [--num-envs 1] [--steps 3000]
        [--warmup 1200] [--acts 1000] [--seed 0] [--profile FILE]

`--steps` and `--warmup` count env steps (summed over environments); with N environments the loop
makes steps / N calls of `trainer.step`. See bench/README.md.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import inspect
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import jax
import numpy as np

import factorl
from factorl.io.system import source_revision

try:
    from factorl.runners.host import HostTrainer as Trainer
except ImportError:  # a commit from before the host runner left factorl.train, timed side by side
    from factorl.train import Trainer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import load_average  # bench/ is not a package

ENV = "dmc:cheetah-run"
ALGO = "decqn"


def _config(num_envs: int, steps: int, seed: int, learning_starts: int, run_dir: str):
    """(config, whether this factorl has num_envs) of the timed run, in the config syntax of the
    factorl on PYTHONPATH: this checkout's sections, or an earlier commit's flat dicts."""
    loop = {"env": ENV, "steps": steps, "seed": seed, "eval_every": 10**9, "log_every": 1000,
            "checkpoint_every": 10**9, "checkpoint_minutes": 0, "progress": "none",
            "tensorboard": False, "run_dir": run_dir}  # fmt: skip
    if "overrides" in inspect.signature(factorl.make_config).parameters:  # the config in sections
        section = {"env": "env", "seed": "run", "steps": "run", "progress": "run",
                   "tensorboard": "run"}  # fmt: skip
        settings = {
            f"{section.get(k, 'runner')}.{'id' if k == 'env' else k}": v
            for k, v in loop.items()
            if k != "run_dir"
        }
        # the run folder's setting was run.run_dir until it became run.dir
        run_fields = {f.name for f in dataclasses.fields(factorl.RunSettings)}
        settings["run.dir" if "dir" in run_fields else "run.run_dir"] = run_dir
        settings.update({"env.num_envs": num_envs, "agent.learning_starts": learning_starts})
        return factorl.make_config(ALGO, settings), True
    from factorl.core.config import TrainConfig  # an earlier commit: flat train and agent dicts

    vector = "num_envs" in {f.name for f in dataclasses.fields(TrainConfig)}
    if num_envs != 1:
        loop["num_envs"] = num_envs
    return factorl.make_config(ALGO, loop, {"learning_starts": learning_starts}), vector


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python bench/host_vector.py", description=__doc__.split("\n")[0]
    )
    p.add_argument("--num-envs", type=int, default=1)
    p.add_argument("--steps", type=int, default=3000, help="timed env steps (summed over envs)")
    p.add_argument("--warmup", type=int, default=1200, help="untimed env steps (at least)")
    p.add_argument("--acts", type=int, default=1000, help="timed act calls (after 20 untimed)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--learning-starts",
        type=int,
        default=1000,
        help="DecQN learning_starts; above --warmup + --steps: the loop without learner updates",
    )
    p.add_argument("--profile", metavar="FILE", help="cProfile stats of the timed loop to FILE")
    args = p.parse_args(argv)
    n = args.num_envs
    if args.steps % n or args.warmup % n:
        sys.exit("--steps and --warmup must be multiples of --num-envs")

    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="host_vector_") as tmp:
        total = args.warmup + args.steps + 10 * n
        cfg, vector = _config(n, total, args.seed, args.learning_starts, os.path.join(tmp, "run"))
        if n != 1 and not vector:
            sys.exit("this factorl has no num_envs: only --num-envs 1 is possible")
        trainer = Trainer(cfg)
        try:
            loop = trainer.loop
            t_built = time.perf_counter()

            # ---- untimed warm-up: until learning has started (first update compiled), then on
            learned_at = None
            wait_for_update = args.learning_starts <= args.warmup
            while loop.env_step < args.warmup or (wait_for_update and learned_at is None):
                if trainer.step(total) and learned_at is None:
                    learned_at = loop.env_step
            warm_steps = loop.env_step
            t_warm = time.perf_counter()

            # ---- timed loop
            s0 = loop.env_step
            updates = 0
            profiler = cProfile.Profile() if args.profile else None
            t0 = time.perf_counter()
            if profiler is not None:
                profiler.enable()
            for _ in range(args.steps // n):
                updates += int(trainer.step(total))
            if profiler is not None:
                profiler.disable()
            t1 = time.perf_counter()
            if profiler is not None:
                profiler.dump_stats(args.profile)
            timed_steps = loop.env_step - s0
            loop_s = t1 - t0

            # ---- act alone (explore, as the loop calls it after random_steps)
            agent, state = trainer.agent, trainer.state
            obs = np.asarray(trainer.obs, np.float32)  # [N, ...] (vector) or [...] (old loop)
            step = loop.env_step
            for _ in range(20):
                a, _ = agent.act(state, obs, step, "explore")
            times = []
            for _ in range(args.acts):
                ta = time.perf_counter()
                a, _ = agent.act(state, obs, step, "explore")
                times.append(time.perf_counter() - ta)
            act_shape = list(np.shape(a))
        finally:
            trainer.close()

    call_med = statistics.median(times) * 1e6
    call_mean = statistics.fmean(times) * 1e6
    result = {
        "bench": "host_vector",
        "algo": ALGO,
        "env": ENV,
        "commit": source_revision(os.path.dirname(os.path.dirname(factorl.__file__))),
        "vector_loop": vector,
        "num_envs": n,
        "obs_shape": list(obs.shape),
        "act_output_shape": act_shape,
        "learning_starts": args.learning_starts,
        "warmup_env_steps": warm_steps,
        "first_update_at_env_step": learned_at,
        "timed_env_steps": timed_steps,
        "timed_step_calls": args.steps // n,
        "timed_updates": updates,
        "loop_s": round(loop_s, 4),
        "env_steps_per_s": round(timed_steps / loop_s, 2),
        "us_per_env_step": round(1e6 * loop_s / timed_steps, 2),
        "profiled": bool(args.profile),
        "act_calls": args.acts,
        "act_us_per_call_median": round(call_med, 2),
        "act_us_per_call_mean": round(call_mean, 2),
        "act_us_per_env_step_median": round(call_med / n, 2),
        "act_us_per_env_step_mean": round(call_mean / n, 2),
        "build_s": round(t_built - t_start, 2),
        "warmup_s": round(t_warm - t_built, 2),
        "total_s": round(time.perf_counter() - t_start, 2),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "numpy": np.__version__,
        "load_avg_end": load_average(),
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
