"""Device runner throughput on MuJoCo Playground's CheetahRun: env steps/s with random actions and
with DecQN learning, for N = 1 and N = 64 environments, with the adapter's reset in a while loop
(factorl.envs.device.PlaygroundEnv, "while") next to the former reset under `lax.cond` ("select").

Why both: under `vmap` (the runner maps over environments and over seeds) a cond with a batched
predicate becomes a select, so the former adapter computed CheetahRun's reset, which settles the
model for 200 physics steps, on every step for every environment. The "select" path here is that
former step, kept only in this file for the comparison.

What is timed, for each mode, N and path, on one seed (as `factorl train --num-seeds 1` runs it):

- random: `lax.scan` over vector steps of `vmap(env.step)` with actions uniform in the bounds
  (jitted; the floor of the runner: no agent, no replay).
- decqn: one chunk of the device runner (`make_train`, vmapped over one seed and jitted as
  `DeviceTrainer` does): acting, stepping, replay inserts and learner steps, after a warm-up that
  compiles it and fills replay past `learning_starts`.

Every program is compiled and warmed up before timing. The "while" path is timed over exactly one
episode length of vector steps (so its one batched reset, all environments ending together at the
time limit, is in the timed span once, as in training); the "select" path costs the same on every
step, so a short span is enough. Chunks of the two paths alternate, so a change in the machine's
load hits both alike. The report gives env steps/s (summed over environments) per path and the
ratio while/select, from the median chunk's wall time and from its CPU time (this process's,
all threads: what the work costs whatever else runs).

    python bench/playground.py --out bench/results/playground-cheetah-run.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from factorl.envs.device import PlaygroundEnv, PlaygroundState, TimeStep, _flat, make_jax_env
from factorl.io.system import source_revision
from factorl.runners.device import DeviceSettings, agent_for_jax_env, make_train
from factorl.train import make_config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import finish, load_average, provenance, write_json  # bench/ is not a package

ENV = "playground:CheetahRun"
EXTRA_PACKAGES = ("playground", "mujoco-mjx", "brax", "warp-lang", "flashbax")


class SelectResetPlaygroundEnv(PlaygroundEnv):
    """The adapter's former step (factorl before b146714 and 6013497): the reset under
    `lax.cond`, which `vmap` turns into a select that computes the reset on every step."""

    def step(
        self, key: jax.Array, state: PlaygroundState, action: jax.Array
    ) -> tuple[PlaygroundState, TimeStep]:
        reached, timestep = self.step_without_reset(state, action)
        next_state = jax.lax.cond(
            timestep.terminated | timestep.truncated,
            lambda: self.reset(key)[0],
            lambda: reached,
        )
        return next_state, timestep._replace(obs=_flat(next_state.inner.obs))


def make_envs() -> dict[str, PlaygroundEnv]:
    new = make_jax_env(ENV)
    old = SelectResetPlaygroundEnv(new._env, max_episode_steps=new.spec.max_episode_steps, name=ENV)
    return {"while": new, "select": old}


def random_program(env: PlaygroundEnv, n: int, chunk: int):
    """(state, run): `run(state)` steps n environments `chunk` vector steps, random actions."""
    low, high = env.spec.action_low, env.spec.action_high

    @jax.jit
    def run(carry):
        env_state, key = carry

        def body(env_state, k):
            k_act, k_env = jax.random.split(k)
            action = jax.random.uniform(k_act, (n, *low.shape), minval=low, maxval=high)
            env_state, ts = jax.vmap(env.step)(jax.random.split(k_env, n), env_state, action)
            return env_state, ts.reward.sum()

        key, sub = jax.random.split(key)
        env_state, rewards = jax.lax.scan(body, env_state, jax.random.split(sub, chunk))
        return (env_state, key), rewards.sum()

    key = jax.random.key(0)
    env_state, _ = jax.jit(jax.vmap(env.reset))(jax.random.split(key, n))
    return (env_state, jax.random.fold_in(key, 1)), run


def decqn_program(env: PlaygroundEnv, n: int, chunk: int, overrides: dict[str, Any]):
    """(state, run) of the device runner for one seed, as DeviceTrainer composes it."""
    cfg = make_config(
        "decqn",
        {"env.id": ENV, "env.num_envs": n, "runner.eval_episodes": 1, **overrides},
    )
    agent = agent_for_jax_env(cfg, env)
    settings = DeviceSettings(
        num_envs=n, eval_episodes=1, max_episode_steps=env.spec.max_episode_steps
    )
    fns = make_train(agent, env, settings)
    init, run = fns.init, fns.run
    state = jax.jit(jax.vmap(init))(np.zeros(1, np.int32))
    run = jax.jit(jax.vmap(run, in_axes=(0, None)), static_argnums=1)
    return state, lambda state: run(state, chunk), agent, cfg


def bench_case(
    mode: str,
    n: int,
    envs,
    chunks: dict[str, int],
    timed_chunks: dict[str, int],
    overrides: dict[str, Any],
) -> dict[str, Any]:
    progs: dict[str, Any] = {}
    for path, env in envs.items():
        t0 = time.perf_counter()
        if mode == "random":
            state, run = random_program(env, n, chunks[path])
            state, out = run(state)  # compiles
            jax.block_until_ready(out)
            warm_steps = chunks[path]
        else:
            state, run, _, _ = decqn_program(env, n, chunks[path], overrides)
            warm_steps = 0
            while True:  # until replay is past learning_starts and the chunk has learned
                state, stats = run(state)
                warm_steps += chunks[path]
                if int(np.asarray(stats.updates)[0]) > 0:
                    break
            jax.block_until_ready(state)
        progs[path] = {
            "state": state,
            "run": run,
            "times": [],
            "cpu_times": [],
            "updates": 0,
            "warmup_s": time.perf_counter() - t0,
            "warmup_vector_steps": warm_steps,
        }
        print(
            f"[bench] {mode} N={n} {path}: compiled and warmed up in "
            f"{progs[path]['warmup_s']:.1f}s",
            flush=True,
        )
    load_before = load_average()
    order = list(envs)
    for r in range(max(timed_chunks.values())):
        for path in order if r % 2 == 0 else order[::-1]:
            p = progs[path]
            if len(p["times"]) >= timed_chunks[path]:
                continue
            t0, c0 = time.perf_counter(), time.process_time()
            p["state"], out = p["run"](p["state"])
            jax.block_until_ready(out)
            p["times"].append(time.perf_counter() - t0)
            p["cpu_times"].append(time.process_time() - c0)
            if mode == "decqn":
                p["updates"] += int(np.asarray(out.updates)[0])
    result: dict[str, Any] = {
        "load_avg_before": load_before,
        "load_avg_after": load_average(),
    }
    for path, p in progs.items():
        steps = n * chunks[path] * len(p["times"])
        per_chunk = n * chunks[path]
        result[path] = {
            # the median chunk: a chunk that waited for the CPU behind other jobs is an outlier
            "env_steps_per_s": per_chunk / float(np.median(p["times"])),
            "env_steps_per_s_over_all_chunks": steps / float(np.sum(p["times"])),
            # this process's CPU time (all its threads): what the work costs, whatever the load
            "env_steps_per_cpu_s": per_chunk / float(np.median(p["cpu_times"])),
            "timed_env_steps": steps,
            "timed_vector_steps": chunks[path] * len(p["times"]),
            "chunk_vector_steps": chunks[path],
            "chunk_seconds": [round(t, 4) for t in p["times"]],
            "chunk_cpu_seconds": [round(t, 4) for t in p["cpu_times"]],
            "compile_and_warmup_s": round(p["warmup_s"], 2),
            "warmup_vector_steps": p["warmup_vector_steps"],
        }
        if mode == "decqn":
            result[path]["timed_learner_steps"] = p["updates"]
            # a non-finite update stops learning (the runner's `stopped`); timings after it
            # would be of acting alone
            result[path]["learning_stopped"] = bool(np.asarray(p["state"].stopped).any())
    for unit in ("env_steps_per_s", "env_steps_per_cpu_s"):
        result[f"ratio_while_over_select_{unit}"] = result["while"][unit] / result["select"][unit]
    print(
        f"[bench] {mode} N={n}: "
        + ", ".join(f"{path} {result[path]['env_steps_per_s']:.0f} env steps/s" for path in envs)
        + f" (x{result['ratio_while_over_select_env_steps_per_s']:.1f}; per CPU second "
        f"x{result['ratio_while_over_select_env_steps_per_cpu_s']:.1f})",
        flush=True,
    )
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python bench/playground.py", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--num-envs", type=int, nargs="+", default=[1, 64])
    parser.add_argument(
        "--modes", nargs="+", default=["random", "decqn"], choices=["random", "decqn"]
    )
    parser.add_argument(
        "--while-chunks",
        type=int,
        default=8,
        help="timed chunks of the while path; they cover one episode length",
    )
    parser.add_argument("--select-chunks", type=int, default=3, help="timed chunks, select path")
    parser.add_argument(
        "--select-env-steps",
        type=int,
        default=64,
        help="env steps (summed over environments) per select-path chunk",
    )
    parser.add_argument(
        "--replay-capacity",
        type=int,
        default=None,
        help="DecQN replay capacity (default: the reference 1,000,000)",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("bench/results/playground-cheetah-run.json")
    )
    parser.add_argument(
        "--from-run",
        metavar="RUN_DIR",
        type=Path,
        help="instead of benchmarking: write the learning JSON (factorl sweep's format) and a "
        "PNG of this finished run into --figure-dir",
    )
    parser.add_argument(
        "--uniform-replay",
        action="store_true",
        help="DecQN with uniform replay (--no-prioritized): flashbax 0.1.3's sum tree can return "
        "a window of probability 0, whose infinite importance weight stops learning",
    )
    parser.add_argument(
        "--note", default="", help="recorded as is: e.g. what else ran on the machine meanwhile"
    )
    parser.add_argument("--train-command", help="with --from-run: the command that trained it")
    parser.add_argument("--figure-dir", type=Path, default=Path("results/playground-cheetah-run"))
    args = parser.parse_args(argv)
    if args.from_run:
        return figure(args.from_run, args.train_command, args.figure_dir)
    t_start = time.perf_counter()
    envs = make_envs()
    episode = envs["while"].spec.max_episode_steps
    if episode % args.while_chunks:
        parser.error(f"--while-chunks must divide the episode length {episode}")
    overrides: dict[str, Any] = {}
    if args.uniform_replay:
        overrides["replay.prioritized"] = False
    if args.replay_capacity is not None:
        overrides["replay.capacity"] = args.replay_capacity
    decqn_cfg = make_config("decqn", {"env.id": ENV, **overrides})
    report: dict[str, Any] = {
        "bench": "playground",
        "what": "device runner on playground:CheetahRun: env steps/s (summed over N "
        "environments, one seed) with random actions and with DecQN learning; the adapter's "
        "reset in a while loop (factorl's) next to the former reset under lax.cond (a select "
        "under vmap)",
        "env": ENV,
        "command": "python " + " ".join(["bench/playground.py", *(argv or sys.argv[1:])]),
        **provenance(source_revision(), revision_key="commit", packages=EXTRA_PACKAGES),
        "shared_machine": "the machine is shared with other workers' jobs: the load average "
        "(per case before and after timing, and machine.load_avg_at_start/_at_end) shows how "
        "busy it was; the two paths' chunks alternate so both see the same load",
        "note": args.note,
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(d) for d in jax.devices()],
        "decqn_settings": {
            **{
                key: getattr(getattr(decqn_cfg, key.split(".")[0]), key.split(".")[1])
                for key in (
                    "agent.width",
                    "replay.batch_size",
                    "replay.n_step",
                    "agent.learning_rate",
                    "agent.update_every",
                    "agent.learning_starts",
                    "replay.capacity",
                    "replay.prioritized",
                    "agent.bins",
                    "agent.num_critics",
                    "agent.target_update_period",
                    "agent.epsilon",
                )
            },
            "changed_from_reference": sorted(overrides) or "none",
        },
        "results": {},
    }
    for mode in args.modes:
        report["results"][mode] = {}
        for n in args.num_envs:
            chunks = {
                "while": episode // args.while_chunks,
                "select": max(1, args.select_env_steps // n),
            }
            timed = {"while": args.while_chunks, "select": args.select_chunks}
            report["results"][mode][f"N={n}"] = bench_case(mode, n, envs, chunks, timed, overrides)
            report["total_s"] = round(time.perf_counter() - t_start, 1)
            finish(report, args.out)  # after every case, so a cut-off run keeps what it did
    print(f"[bench] wrote {args.out} in {report['total_s']:.0f}s", flush=True)
    return report


def figure(run_dir: Path, command: str | None, out_dir: Path) -> dict[str, Any]:
    """The learning JSON of a finished run (factorl sweep's summary, with the training
    episode returns added) and its PNG: evaluation and training returns against env steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from factorl.io.logging import read_metrics
    from factorl.sweep import run_name, summarise_run

    if not command:
        raise SystemExit("--from-run needs --train-command (the exact command that trained it)")
    data = summarise_run(run_dir, command)
    data["training_returns"] = [
        {"env_step": r["env_step"], "episode_return": r["episode_return"],
         "episodes": r["episodes"], "wall_time": r["wall_time"]}
        for r in read_metrics(run_dir)
        if r.get("event") == "train" and "episode_return" in r
    ]  # fmt: skip
    name = run_name(data["algo"], data["env"], data["seed"])
    write_json(out_dir / f"{name}.json", data)
    fig, ax = plt.subplots(figsize=(6, 4))
    if data["training_returns"]:
        train = data["training_returns"]
        ax.plot([r["env_step"] for r in train], [r["episode_return"] for r in train], ".",
                color="0.6", label="training episodes (mean per log chunk)")  # fmt: skip
    curve = data["curve"]
    steps = [r["env_step"] for r in curve]
    ax.plot(steps, [r["eval_return"] for r in curve], "o-", label="greedy evaluation (mean)")
    ax.fill_between(
        steps,
        [min(r["eval_returns"]) for r in curve],
        [max(r["eval_returns"]) for r in curve],
        alpha=0.25,
        label="evaluation episodes (min to max)",
    )
    t = data["config"]["env"]
    ax.set_title(
        f"{data['algo']} on {data['env']}, seed {data['seed']}, {t['num_envs']} environments\n"
        f"device runner (CPU), {data['wall_time_s'] / 60:.0f} min wall time",
        fontsize=9,
    )
    ax.set_xlabel("env steps (summed over environments)")
    ax.set_ylabel("episode return")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / f"{name}.png", dpi=120)
    print(f"[bench] wrote {out_dir / name}.json and .png", flush=True)
    return data


if __name__ == "__main__":
    main()
