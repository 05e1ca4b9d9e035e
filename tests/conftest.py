"""Shared fixtures: a tiny, fast DecQN configuration, test-only environments, and the helpers
that compare runs."""

import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from factorl.io.logging import read_metrics
from factorl.train import make_config

# The suite trains the same small configurations many times (straight, split and resumed runs,
# the same agent in several tests), and compiling them costs more than running them: compiled
# programs are kept on disk for the session, one folder per test process. Only this process
# uses it: child processes (the CLI and kill -9 tests) compile for themselves, so a killed child
# can never leave a half-written entry behind.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
_RUN = os.environ.get("PYTEST_XDIST_TESTRUNUID", str(os.getpid()))
_JAX_CACHE = os.path.join(tempfile.gettempdir(), f"factorl-test-jax-cache-{_RUN}-{_WORKER}")
jax.config.update("jax_compilation_cache_dir", _JAX_CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_JAX_CACHE, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    """The slow learning tests first, the rest in their usual order. pytest-xdist's worksteal
    gives each worker a contiguous share of this list, and an idle worker takes tests from the
    end of another's: long tests started first run beside the short ones, where a long test
    reached late would run alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


#: a tiny DecQN's agent and replay settings
TINY_DECQN = {
    "agent.width": 32,
    "agent.learning_starts": 100,
    "agent.update_every": 2,
    "agent.target_update_period": 20,
    "replay.batch_size": 32,
    "replay.capacity": 5000,
}


#: the loop settings of a tiny run (dotted keys, as `make_config` takes them)
TINY_LOOP = {
    "env.id": "gym:Pendulum-v1",
    "runner.eval_every": 300,
    "runner.eval_episodes": 1,
    "runner.log_every": 100,
    "runner.checkpoint_every": 10_000,
    "run.progress": "none",
    "run.tensorboard": False,
}


def in_section(section, values):
    """A table of one section's values as dotted keys: {"width": 32} -> {"agent.width": 32}."""
    return {f"{section}.{name}": value for name, value in values.items()}


def hold_run_folder(run: Path, seconds: float) -> subprocess.Popen:
    """A process holding run folder `run`'s lock for `seconds`, returned once it holds it."""
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import time
            from factorl.io.runfolder import RunFolderLock
            RunFolderLock({str(run)!r}).acquire()
            print("held", flush=True)
            time.sleep({seconds})
            """)],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    return holder


def tiny_config(run_dir, algo="decqn", steps=600, overrides=None):
    """A run on Pendulum that takes a couple of seconds: TINY_LOOP, TINY_DECQN when `algo` is
    decqn (other algorithms' tests name their own agent and replay settings), then `overrides`
    (dotted keys)."""
    agent = TINY_DECQN if algo == "decqn" else {}
    settings = {**TINY_LOOP, **agent, "run.steps": steps, "run.dir": str(run_dir)}
    return make_config(algo, {**settings, **(overrides or {})})


def learner_steps(state):
    """Learner steps of a run's final state: one for a host run, one per seed for a device
    run, whose state holds every seed's agent."""
    return np.atleast_1d(np.asarray(getattr(state, "agent", state).learner_step))


def leaves(tree):
    """A pytree's leaves as NumPy arrays (a learner state, a list of arrays)."""
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(jax.device_get(tree))]


def moved_off_start(tree, phase=0.0, scale=0.1):
    """`tree` with each leaf's entries moved by scale * sin(phase + their flat index): network
    parameters off their start, where zero output layers would make every output alike."""

    def move(x):
        wave = jnp.sin(phase + jnp.arange(x.size, dtype=jnp.float32)).reshape(x.shape)
        return x + scale * wave

    return jax.tree_util.tree_map(move, tree)


def same_leaves(a, b):
    """Whether two pytrees hold bit-identical leaves."""
    la, lb = leaves(a), leaves(b)
    return len(la) == len(lb) and all(np.array_equal(x, y) for x, y in zip(la, lb, strict=True))


def records(run_dir):
    """A run's metrics records without their wall time (the one field that may differ)."""
    return [{k: v for k, v in r.items() if k != "wall_time"} for r in read_metrics(run_dir)]


def by_params(online_value, target_value):
    """A stand-in for a network method in loss tests: the params passed (0.0 for the online
    network, anything else for the target) pick which fixed output it returns."""
    return lambda params, *_: online_value if float(params) == 0.0 else target_value


class _FaultyPendulum(gym.Wrapper):
    """Pendulum that misbehaves at a chosen step (counted over its whole life)."""

    def __init__(self, fault: str, at_step: int):
        super().__init__(gym.make("Pendulum-v1"))
        self.fault, self.at_step, self.steps = fault, at_step, 0

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.steps += 1
        if self.steps == self.at_step:
            if self.fault == "nan":
                obs = np.full_like(obs, np.nan)
            elif self.fault == "crash":
                raise RuntimeError("simulator exploded")
            elif self.fault == "sigint":
                signal.raise_signal(signal.SIGINT)
        return obs, reward, terminated, truncated, info


class _RaggedPendulum(gym.Wrapper):
    """Pendulum whose episodes last 20 to 80 steps and end terminated or truncated, both drawn
    from the reset seed: environments stepped together then end episodes at different steps."""

    def __init__(self):
        super().__init__(gym.make("Pendulum-v1"))
        self.length, self.terminal, self.t = 200, False, 0

    def reset(self, *, seed=None, options=None):
        obs, info = self.env.reset(seed=seed, options=options)
        draw = np.random.default_rng(seed)
        self.length, self.terminal, self.t = int(draw.integers(20, 81)), bool(draw.integers(2)), 0
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.t += 1
        if self.t >= self.length:
            terminated, truncated = self.terminal, not self.terminal
        return obs, reward, terminated, truncated, info


gym.register("FactorlTestRagged-v0", entry_point=lambda **_: _RaggedPendulum())

for _fault in ("nan", "crash", "sigint"):
    gym.register(
        f"FactorlTest{_fault.capitalize()}-v0",
        entry_point=lambda fault=_fault, at_step=250, **_: _FaultyPendulum(fault, at_step),
    )


@pytest.fixture
def tiny(tmp_path):
    return lambda steps=600, overrides=None: tiny_config(
        tmp_path / "run", "decqn", steps, overrides
    )


def tensorboard_events(logdir):
    """Every event in the TensorBoard event files of `logdir`, in the order written."""
    from tensorboardX.proto.event_pb2 import Event

    for path in sorted(Path(logdir).glob("events*")):
        data, at = path.read_bytes(), 0
        while at < len(data):  # TFRecord: length, its CRC, the record, its CRC
            (length,) = struct.unpack("<Q", data[at : at + 8])
            yield Event.FromString(data[at + 12 : at + 12 + length])
            at += 16 + length
