"""Throughput benchmark: how fast the training loop runs, next to the floors it is built from.

In one process, for each algorithm, this measures

1. the raw environment floor: env steps/s with uniformly random actions (resets included);
2. the update floor: ms per jitted learner update on batches from a replay buffer filled with real
   transitions (replay sampling timed separately);
3. the act floor: µs per `agent.act(..., mode="explore")` call on one observation;
4. the real training loop (`factorl.runners.host.HostTrainer`) after its jit warm-up;

and compares the loop's time per env step with the sum of its parts. See bench/README.md.

Usage::

    python bench/throughput.py [--env dmc:cheetah-run] [--algos decqn] [--steps 20000]
        [--warmup 3000] [--seed 0] [--set agent.KEY=VALUE ...] [--out FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from factorl.agents import ALGORITHMS, CONFIGS
from factorl.core.agent import TrainBatch
from factorl.core.config import ConfigError, EnvSettings, overrides_by_algo
from factorl.envs.host import make_env
from factorl.io.system import source_revision
from factorl.runners.host import HostTrainer, build_agent
from factorl.runners.session import episode_seed
from factorl.train import make_config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_average, local_time, provenance, write_json  # bench/ is not a package

#: the code this process runs, taken at start: commits made while a long run goes on do not count
SOURCE_REVISION = source_revision()

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
#: TD3's default random-action phase, for the derived cumulative rates
TD3_DEFAULT_RANDOM_STEPS = CONFIGS["td3"]().random_steps


class BenchmarkError(RuntimeError):
    """The benchmark cannot run with these settings; the message says what to change."""


# ------------------------------------------------------------------------------------- settings
@dataclasses.dataclass
class Settings:
    env: str
    algos: list[str]
    steps: int
    warmup: int
    seed: int
    action_repeat: int
    updates: int
    acts: int
    overrides: list[str]  # SECTION.FIELD=VALUE, as given to --set
    plain_td3: bool
    out: Path


def parse_args(argv: Sequence[str] | None = None) -> Settings:
    """Command-line settings (see the module docstring and bench/README.md)."""
    parser = argparse.ArgumentParser(
        prog="python bench/throughput.py",
        description="Training-loop throughput next to its floors (env, act, sample, update).",
    )
    parser.add_argument("--env", default="dmc:cheetah-run", help="environment id")
    parser.add_argument(
        "--algos",
        default="decqn",
        help=f"comma-separated algorithms (available: {', '.join(sorted(ALGORITHMS))})",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=20_000,
        help="env steps timed for the raw env floor and for the training loop",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=3_000,
        help="untimed loop steps first (jit compilation and the learning_starts phase)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--action-repeat", type=int, default=EnvSettings.action_repeat, help="action repeat"
    )
    parser.add_argument(
        "--updates", type=int, default=300, help="timed learner updates for the update floor"
    )
    parser.add_argument("--acts", type=int, default=2_000, help="timed act calls for the act floor")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="agent.KEY=VALUE",
        help="override an agent or replay setting (repeatable), named by its dotted key as in "
        "'factorl train -h'; it applies to every selected algorithm that has it. The benchmark "
        "sets the run, env and runner sections itself",
    )
    parser.add_argument(
        "--plain-td3",
        action="store_true",
        help="with td3 in --algos: also time a plain single-file JAX TD3 loop (bench/plain_td3.py) "
        "at the same settings, interleaved with factorl's loop, and report the ratio",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON output (default: bench/results/throughput-HOST-DATE.json)",
    )
    args = parser.parse_args(argv)
    algos = [a.strip() for a in args.algos.split(",") if a.strip()]
    if not algos:
        parser.error("--algos names no algorithm")
    unknown = [a for a in algos if a not in ALGORITHMS]
    if unknown:
        parser.error(
            f"unknown algorithm(s) {', '.join(unknown)}; available: {', '.join(sorted(ALGORITHMS))}"
        )
    if args.plain_td3 and "td3" not in algos:
        parser.error("--plain-td3 compares against factorl's td3: add td3 to --algos")
    for name in ("steps", "updates", "acts", "action_repeat"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    out = args.out
    if out is None:
        host = "".join(c if c.isalnum() or c in "-_" else "_" for c in socket.gethostname())
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = RESULTS_DIR / f"throughput-{host or 'host'}-{stamp}.json"
    return Settings(
        env=args.env,
        algos=list(dict.fromkeys(algos)),
        steps=args.steps,
        warmup=args.warmup,
        seed=args.seed,
        action_repeat=args.action_repeat,
        updates=args.updates,
        acts=args.acts,
        overrides=list(args.overrides),
        plain_td3=args.plain_td3,
        out=out,
    )


# ------------------------------------------------------------------------------------- helpers
def _summary(seconds: list[float], scale: float) -> tuple[float, float]:
    """(median, mean) of `seconds` multiplied by `scale`."""
    return statistics.median(seconds) * scale, statistics.fmean(seconds) * scale


def _block(tree: Any) -> Any:
    return jax.block_until_ready(tree)


# ------------------------------------------------------------------------------------- floors
def env_floor(env_id: str, seed: int, action_repeat: int, steps: int) -> dict[str, Any]:
    """Env steps/s with uniformly random actions, resets at episode ends included."""
    env = make_env(env_id, seed=seed, action_repeat=action_repeat)
    try:
        space = env.action_space
        env.reset(seed=episode_seed(seed, 0, 0))
        for _ in range(min(100, steps)):  # touch every code path once before timing
            env.step(space.sample())
        episode, episodes_done = 1, 0
        env.reset(seed=episode_seed(seed, 0, episode))
        start = time.perf_counter()
        for _ in range(steps):
            _, _, terminated, truncated, _ = env.step(space.sample())
            if terminated or truncated:
                episode += 1
                episodes_done += 1
                env.reset(seed=episode_seed(seed, 0, episode))
        seconds = time.perf_counter() - start
    finally:
        env.close()
    return {
        "steps": steps,
        "seconds": seconds,
        "raw_env_sps": steps / seconds,
        "episodes_ended": episodes_done,
    }


@dataclasses.dataclass
class Transitions:
    """Real environment transitions (random actions), shared by every algorithm's replay."""

    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    next_obs: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray


def collect(env_id: str, seed: int, action_repeat: int, count: int) -> Transitions:
    """`count` transitions with uniformly random actions (untimed)."""
    env = make_env(env_id, seed=seed + 7, action_repeat=action_repeat)
    try:
        space = env.action_space
        episode = 0
        obs, _ = env.reset(seed=episode_seed(seed + 7, 0, episode))
        rows: dict[str, list[Any]] = {f.name: [] for f in dataclasses.fields(Transitions)}
        for _ in range(count):
            action = space.sample()
            next_obs, reward, terminated, truncated, _ = env.step(action)
            rows["obs"].append(np.asarray(obs, np.float32))
            rows["action"].append(np.asarray(action, np.float32))
            rows["reward"].append(float(reward))
            rows["next_obs"].append(np.asarray(next_obs, np.float32))
            rows["terminated"].append(bool(terminated))
            rows["truncated"].append(bool(truncated))
            obs = next_obs
            if terminated or truncated:
                episode += 1
                obs, _ = env.reset(seed=episode_seed(seed + 7, 0, episode))
    finally:
        env.close()
    return Transitions(**{k: np.asarray(v) for k, v in rows.items()})


def fill_replay(agent: Any, data: Transitions) -> Any:
    """The agent's own replay buffer holding the collected transitions."""
    replay = agent.make_replay(data.obs.shape[1:])
    for i in range(len(data.reward)):
        replay.add(
            data.obs[i],
            data.action[i].reshape(replay.action_shape),
            float(data.reward[i]),
            data.next_obs[i],
            bool(data.terminated[i]),
            bool(data.truncated[i]),
        )
    return replay


def compiled_flops(jitted: Any, *args: Any) -> float | None:
    """Floating-point operations of one call of the jitted function `jitted(*args)` by XLA's cost
    analysis of its compiled form (both branches of a `lax.cond` are counted); None where the
    backend gives none."""
    analysis = jitted.lower(*args).compile().cost_analysis()
    if isinstance(analysis, list):  # older JAX: one dict per device
        analysis = analysis[0] if analysis else None
    flops = (analysis or {}).get("flops")
    return float(flops) if flops is not None and flops >= 0 else None


def update_floor(agent: Any, state: Any, replay: Any, seed: int, updates: int) -> dict[str, Any]:
    """ms per learner update alone (compiled first), with sampling timed on its own."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 3]))
    batch_size = agent.replay_settings.batch_size

    def one() -> tuple[float, float, float]:
        nonlocal state
        t0 = time.perf_counter()
        batch = replay.sample(batch_size, rng)
        t1 = time.perf_counter()
        state, metrics, td_abs = _block(agent.update(state, TrainBatch.from_sample(batch)))
        t2 = time.perf_counter()
        if replay.prioritized:  # as the trainer: uniform replay has no priorities to move
            replay.update_priorities(batch.indices, np.asarray(td_abs))
        t3 = time.perf_counter()
        del metrics
        return t1 - t0, t2 - t1, t3 - t2

    flops = compiled_flops(
        agent._update, state, TrainBatch.from_sample(replay.sample(batch_size, rng))
    )
    compile_start = time.perf_counter()
    one()
    first_update_s = time.perf_counter() - compile_start
    for _ in range(5):
        one()
    times = [one() for _ in range(updates)]
    sample_s, update_s, priority_s = (list(col) for col in zip(*times, strict=True))
    update_ms, update_ms_mean = _summary(update_s, 1e3)
    sample_ms, sample_ms_mean = _summary(sample_s, 1e3)
    priority_ms, priority_ms_mean = (
        _summary(priority_s, 1e3) if replay.prioritized else (None, None)
    )
    return {
        "state": state,
        "numbers": {
            "updates_timed": updates,
            "update_flops": flops,
            "replay_size": len(replay),
            "first_update_s": first_update_s,
            "update_ms": update_ms,
            "update_ms_mean": update_ms_mean,
            "sample_ms": sample_ms,
            "sample_ms_mean": sample_ms_mean,
            "priority_update_ms": priority_ms,
            "priority_update_ms_mean": priority_ms_mean,
        },
    }


def act_floor(agent: Any, state: Any, data: Transitions, acts: int) -> dict[str, Any]:
    """µs per explore-mode act call on one observation (compiled first)."""
    obs = data.obs
    for i in range(20):
        _, state = agent.act(state, obs[i % len(obs)][None], i, "explore")
    seconds = []
    for i in range(acts):
        o = obs[i % len(obs)][None]  # one environment
        t0 = time.perf_counter()
        action, state = agent.act(state, o, 1_000 + i, "explore")
        np.asarray(action)
        seconds.append(time.perf_counter() - t0)
    act_us, act_us_mean = _summary(seconds, 1e6)
    return {"acts_timed": acts, "act_us": act_us, "act_us_mean": act_us_mean}


# ------------------------------------------------------------------------------------- the loop
def _loop_config(algo: str, settings: Settings, overrides: dict[str, Any], run_dir: Path) -> Any:
    """A run of warmup + steps env steps with evaluation and checkpoints that never fire."""
    total = settings.warmup + settings.steps
    never = total + 1
    return make_config(
        algo,
        {
            "env.id": settings.env,
            "run.seed": settings.seed,
            "env.action_repeat": settings.action_repeat,
            "run.steps": total,
            "runner.eval_every": never,
            "runner.checkpoint_every": never,
            "run.progress": "none",
            "run.tensorboard": False,
            "run.dir": str(run_dir),
            **overrides,
        },
    )


def training_loop(
    algo: str, settings: Settings, overrides: dict[str, Any], run_dir: Path
) -> dict[str, Any]:
    """Env steps/s of the real training loop, timed after `settings.warmup` untimed steps."""
    total = settings.warmup + settings.steps
    cfg = _loop_config(algo, settings, overrides, run_dir)
    trainer = HostTrainer(cfg)
    try:
        warm_start = time.perf_counter()
        warm_updates = sum(trainer.step(total) for _ in range(settings.warmup))
        warmup_s = time.perf_counter() - warm_start
        agent = trainer.agent
        if warm_updates == 0 or trainer.loop.env_step < agent.random_steps:
            raise BenchmarkError(
                f"--warmup {settings.warmup} is too short for {algo}: learning had not started "
                f"by then (learning_starts={agent.learning_starts}, "
                f"random_steps={agent.random_steps}, update_every={agent.update_every}); the "
                "timed part would include compilation. Use a larger --warmup."
            )
        updates = 0
        start = time.perf_counter()
        for _ in range(settings.steps):
            updates += trainer.step(total)
        seconds = time.perf_counter() - start
        learner_steps = int(trainer.state.learner_step)
    finally:
        trainer.close()
    return {
        "warmup_steps": settings.warmup,
        "warmup_s": warmup_s,
        "warmup_updates": warm_updates,
        "steps_timed": settings.steps,
        "seconds": seconds,
        "loop_sps": settings.steps / seconds,
        "loop_updates": updates,
        "loop_cycle_ms": seconds / updates * 1e3 if updates else None,
        "learner_steps_total": learner_steps,
    }


def plain_td3_comparison(
    settings: Settings, overrides: dict[str, Any], run_dir: Path, chunk: int = 500
) -> dict[str, Any]:
    """factorl's TD3 loop and bench/plain_td3.py at the same settings, timed in alternating chunks
    of `chunk` env steps (so load changes hit both alike): the random-action phase (after 100
    untimed steps) and, after --warmup steps, --steps learning steps."""
    from plain_td3 import PlainTD3Loop  # bench/ is on sys.path (see the imports above)

    total = settings.warmup + settings.steps
    cfg = _loop_config("td3", settings, overrides, run_dir)
    trainer = HostTrainer(cfg)
    plain = PlainTD3Loop(settings.env, settings.seed, cfg.agent, settings.action_repeat, cfg.replay)
    # the step that fills replay to learning_starts also runs (and compiles) the first update
    random_steps = min(cfg.agent.random_steps, cfg.agent.learning_starts) - 1
    loops: dict[str, Callable[[], bool]] = {
        "factorl": lambda: trainer.step(total),
        "plain": plain.step,
    }
    done = dict.fromkeys(loops, 0)
    seconds = {phase: dict.fromkeys(loops, 0.0) for phase in ("random", "learning")}
    counted = {phase: dict.fromkeys(loops, 0) for phase in ("random", "learning")}

    def advance(until: int, phase: str | None) -> None:
        while min(done.values()) < until:
            for name, step in loops.items():
                n = min(chunk, until - done[name])
                start = time.perf_counter()
                for _ in range(n):
                    step()
                if phase is not None:
                    seconds[phase][name] += time.perf_counter() - start
                    counted[phase][name] += n
                done[name] += n

    probe = np.zeros((cfg.replay.batch_size, *plain.buf_obs.shape[1:]), np.float32)
    act_probe = np.zeros((cfg.replay.batch_size, plain.buf_act.shape[1]), np.float32)
    rewards = np.zeros(cfg.replay.batch_size, np.float32)
    plain_flops = {
        "plain_critic_step_flops": compiled_flops(
            plain._update_critic,
            plain.params,
            (probe, act_probe, rewards, probe, rewards),
            jax.random.PRNGKey(0),
        ),
        "plain_actor_step_flops": compiled_flops(plain._update_actor, plain.params, probe),
    }
    try:
        advance(min(100, random_steps), None)
        advance(random_steps, "random")
        advance(settings.warmup, None)  # learning starts, the updates compile
        if trainer.loop.env_step < trainer.agent.learning_starts or plain.updates == 0:
            raise BenchmarkError(
                f"--warmup {settings.warmup} is too short for the TD3 comparison: learning had "
                "not started by then; use a larger --warmup"
            )
        advance(total, "learning")
    finally:
        trainer.close()
        plain.close()

    def sps(phase: str, name: str) -> float | None:
        return counted[phase][name] / seconds[phase][name] if seconds[phase][name] else None

    out: dict[str, Any] = {
        "chunk_steps": chunk,
        "random_steps_timed": counted["random"]["plain"],
        **plain_flops,
    }
    for name in loops:
        out[f"{name}_random_sps"] = sps("random", name)
        out[f"{name}_learning_sps"] = sps("learning", name)
    out["learning_sps_ratio"] = out["factorl_learning_sps"] / out["plain_learning_sps"]
    # What a run reports as "global step / elapsed time" part-way through (the way single-file
    # scripts print SPS), with TD3's default 25k random steps, derived from the two phase rates.
    starts = TD3_DEFAULT_RANDOM_STEPS
    out["derived_cumulative_sps"] = {
        name: {
            str(n): n
            / (starts / out[f"{name}_random_sps"] + (n - starts) / out[f"{name}_learning_sps"])
            for n in (50_000, 100_000, 1_000_000)
        }
        for name in loops
        if out[f"{name}_random_sps"] and out[f"{name}_learning_sps"]
    }
    return out


# ------------------------------------------------------------------------------- one algorithm
def prepare(algo: str, settings: Settings, overrides: dict[str, Any]) -> tuple[Any, Any]:
    """(config, agent) for `algo` with the overrides; checks that --warmup can cover learning."""
    cfg = make_config(
        algo,
        {
            "env.id": settings.env,
            "run.seed": settings.seed,
            "env.action_repeat": settings.action_repeat,
            **overrides,
        },
    )
    try:
        env = make_env(settings.env, seed=settings.seed, action_repeat=settings.action_repeat)
    except ValueError as e:  # unknown environment id
        raise ConfigError(str(e)) from e
    try:
        agent = build_agent(cfg, env)
    finally:
        env.close()
    needed = max(agent.learning_starts, agent.random_steps) + agent.update_every
    if settings.warmup < needed:
        raise BenchmarkError(
            f"--warmup {settings.warmup} is too short for {algo}: learning starts after "
            f"learning_starts={agent.learning_starts} transitions (random_steps="
            f"{agent.random_steps}, update_every={agent.update_every}), so the timed part would "
            f"include compilation; use --warmup of at least {needed} plus a margin"
        )
    return cfg, agent


def bench_algo(
    cfg: Any,
    agent: Any,
    settings: Settings,
    overrides: dict[str, Any],
    data: Transitions,
    raw_env_sps: float,
    workdir: Path,
) -> dict[str, Any]:
    """Every number for one algorithm, with the ratios against the floors."""
    algo = cfg.algo
    replay = fill_replay(agent, data)
    if len(replay) == 0:
        raise BenchmarkError(f"{algo}: the replay buffer holds no sampleable transition")
    state = agent.init(settings.seed)
    upd = update_floor(agent, state, replay, settings.seed, settings.updates)
    act = act_floor(agent, upd["state"], data, settings.acts)
    del upd["state"], state, replay
    loop = training_loop(algo, settings, overrides, workdir / f"run-{algo}")

    numbers = upd["numbers"]
    every = agent.update_every
    ideal = (
        1.0 / raw_env_sps
        + act["act_us"] * 1e-6
        + numbers["update_ms"] * 1e-3 / every
        + numbers["sample_ms"] * 1e-3 / every
    )
    per_step = 1.0 / loop["loop_sps"]
    return {
        "agent_config": dataclasses.asdict(cfg.agent),
        "overrides": dict(overrides),
        "update_every": every,
        "batch_size": agent.replay_settings.batch_size,
        "replay_config": dataclasses.asdict(cfg.replay),
        "raw_env_sps": raw_env_sps,
        **act,
        **numbers,
        **loop,
        "ideal_time_per_step_ms": ideal * 1e3,
        "ideal_sps": 1.0 / ideal,
        "loop_time_per_step_ms": per_step * 1e3,
        "loop_overhead_ratio": per_step / ideal,
        "loop_vs_update_floor": per_step / (numbers["update_ms"] * 1e-3 / every),
    }


# ------------------------------------------------------------------------------------- output
def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return format(value, spec)


def table(report: dict[str, Any]) -> str:
    """A compact human-readable summary of `report`."""
    rows: list[tuple[str, str, Callable[[dict[str, Any]], Any]]] = [
        ("raw env floor", "steps/s", lambda r: _fmt(r["raw_env_sps"], ",.0f")),
        ("act (explore)", "µs", lambda r: _fmt(r["act_us"], ".1f")),
        ("replay sample", "ms", lambda r: _fmt(r["sample_ms"], ".3f")),
        ("update median", "ms", lambda r: _fmt(r["update_ms"], ".2f")),
        ("update mean", "ms", lambda r: _fmt(r["update_ms_mean"], ".2f")),
        ("priority update", "ms", lambda r: _fmt(r["priority_update_ms"], ".3f")),
        ("update every", "env steps", lambda r: str(r["update_every"])),
        ("loop", "steps/s", lambda r: _fmt(r["loop_sps"], ",.0f")),
        ("loop cycle", "ms/update", lambda r: _fmt(r["loop_cycle_ms"], ".2f")),
        ("ideal from floors", "steps/s", lambda r: _fmt(r["ideal_sps"], ",.0f")),
        ("loop overhead ratio", "x", lambda r: _fmt(r["loop_overhead_ratio"], ".3f")),
        ("loop vs update floor", "x", lambda r: _fmt(r["loop_vs_update_floor"], ".3f")),
    ]
    results = report["results"]
    algos = list(results)
    head = ["", "unit", *algos]
    body = [[name, unit, *(fn(results[a]) for a in algos)] for name, unit, fn in rows]
    widths = [max(len(str(row[i])) for row in [head, *body]) for i in range(len(head))]
    lines = [
        f"throughput on {report['config']['env']} "
        f"(action repeat {report['config']['action_repeat']}, jax {report['jax_backend']})"
    ]
    for row in [head, *body]:
        cells = [str(row[0]).ljust(widths[0]), str(row[1]).ljust(widths[1])]
        cells += [str(c).rjust(w) for c, w in zip(row[2:], widths[2:], strict=True)]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def plain_table(paired: dict[str, Any]) -> str:
    """The TD3 comparison as a few lines of text."""
    lines = ["td3: factorl loop vs plain single-file JAX loop (same settings, interleaved)"]
    for phase in ("random", "learning"):
        f, p = paired[f"factorl_{phase}_sps"], paired[f"plain_{phase}_sps"]
        lines.append(f"  {phase:9s} steps/s  factorl {_fmt(f, ',.0f')}  plain {_fmt(p, ',.0f')}")
    lines.append(
        f"  learning-phase ratio factorl/plain: {_fmt(paired['learning_sps_ratio'], '.3f')}"
    )
    for name, rates in paired["derived_cumulative_sps"].items():
        cells = ", ".join(f"{int(n):,}: {_fmt(v, ',.0f')}" for n, v in rates.items())
        lines.append(f"  derived cumulative steps/s ({name}) at step {cells}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------- main
def run(settings: Settings) -> dict[str, Any]:
    """Measure everything and return the report (does not write it)."""
    overrides = overrides_by_algo(settings.algos, settings.overrides)
    for key in {key for values in overrides.values() for key in values}:
        if not key.startswith(("agent.", "replay.")):
            raise ConfigError(
                f"--set {key}: the benchmark sets the run, env and runner sections from its own "
                "flags (--env, --seed, --action-repeat, --steps); --set takes agent.* and replay.*"
            )
    prepared = {a: prepare(a, settings, overrides[a]) for a in settings.algos}
    report: dict[str, Any] = {
        "benchmark": "throughput",
        "created": local_time(),
        **provenance(SOURCE_REVISION),
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(d) for d in jax.devices()],
        "config": {
            "env": settings.env,
            "algos": list(settings.algos),
            "steps": settings.steps,
            "warmup": settings.warmup,
            "seed": settings.seed,
            "action_repeat": settings.action_repeat,
            "updates": settings.updates,
            "acts": settings.acts,
            "overrides": list(settings.overrides),
            "plain_td3": settings.plain_td3,
            "replay_fill": settings.warmup + settings.steps,
        },
        "results": {},
    }
    print(f"[bench] raw env floor: {settings.steps} random steps on {settings.env}", flush=True)
    floor = env_floor(settings.env, settings.seed, settings.action_repeat, settings.steps)
    report["env_floor"] = floor
    fill = settings.warmup + settings.steps
    print(f"[bench] collecting {fill} transitions for the replay buffers", flush=True)
    data = collect(settings.env, settings.seed, settings.action_repeat, fill)
    with tempfile.TemporaryDirectory(prefix="factorl-bench-") as workdir:
        for algo in settings.algos:
            print(f"[bench] {algo}: update, act and loop measurements", flush=True)
            cfg, agent = prepared[algo]
            report["results"][algo] = bench_algo(
                cfg, agent, settings, overrides[algo], data, floor["raw_env_sps"], Path(workdir)
            )
    if settings.plain_td3:
        print("[bench] td3: factorl's loop next to a plain single-file JAX TD3 loop", flush=True)
        with tempfile.TemporaryDirectory(prefix="factorl-bench-") as workdir:
            report["plain_td3"] = plain_td3_comparison(
                settings, overrides["td3"], Path(workdir) / "run-td3-paired"
            )
    report["machine"]["load_avg_at_end"] = load_average()
    return report


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark from command-line arguments, write the JSON, print the table."""
    settings = parse_args(argv)
    report = run(settings)
    write_json(settings.out, report)
    print(table(report))
    if "plain_td3" in report:
        print(plain_table(report["plain_td3"]))
    print(f"[bench] wrote {settings.out}")
    return report


if __name__ == "__main__":
    try:
        main()
    except (BenchmarkError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
