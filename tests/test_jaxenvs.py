"""Tests for factorl.envs.device: pure, jittable JAX environments with auto-reset that keep
termination, truncation and the final observation apart."""

from __future__ import annotations

import functools
import importlib.util
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NamedTuple

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from factorl.core.config import install_hint
from factorl.envs import device as device_envs
from factorl.envs.device import (
    JaxEnv,
    MissingExtraError,
    PlaygroundEnv,
    TimeStep,
    make_jax_env,
)

GYMNAX_IDS = ("gymnax:Pendulum-v1", "gymnax:MountainCarContinuous-v0")


@functools.cache
def _env(env_id: str) -> JaxEnv:
    return make_jax_env(env_id)


@functools.cache
def _rollout_fn(env: JaxEnv, n_envs: int, steps: int):
    """A jitted rollout of `n_envs` environments for `steps` steps under random actions drawn
    from 1.5 times the action bounds (so clipping is exercised); compiled once per env."""
    low, high = env.spec.action_low, env.spec.action_high

    def run(key):
        reset_key, scan_key = jax.random.split(key)
        state, first_obs = jax.vmap(env.reset)(jax.random.split(reset_key, n_envs))

        def body(state, key):
            action_key, env_key = jax.random.split(key)
            action = jax.random.uniform(
                action_key, (n_envs, *low.shape), minval=1.5 * low, maxval=1.5 * high
            )
            return jax.vmap(env.step)(jax.random.split(env_key, n_envs), state, action)

        _, timesteps = jax.lax.scan(body, state, jax.random.split(scan_key, steps))
        return first_obs, timesteps

    return jax.jit(run)


def _rollout(env: JaxEnv, seed: int, n_envs: int = 4, steps: int = 300):
    first_obs, timesteps = _rollout_fn(env, n_envs, steps)(jax.random.key(seed))
    return np.asarray(first_obs), TimeStep(*(np.asarray(x) for x in timesteps))


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


# --- gymnax ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env_id", "obs_dim", "bound"),
    [("gymnax:Pendulum-v1", 3, 2.0), ("gymnax:MountainCarContinuous-v0", 2, 1.0)],
)
def test_gymnax_spec_matches_the_gymnasium_task(env_id, obs_dim, bound):
    env = _env(env_id)
    assert isinstance(env, JaxEnv)
    spec = env.spec
    assert spec.name == env_id
    assert spec.obs_shape == (obs_dim,)
    for array, value in ((spec.action_low, -bound), (spec.action_high, bound)):
        assert array.dtype == np.float32
        np.testing.assert_array_equal(array, np.full((1,), value, np.float32))
        assert not array.flags.writeable
    # The same time limit as the host's gym: id, so results on the two compare.
    assert spec.max_episode_steps == gymnasium.spec(env_id.split(":")[1]).max_episode_steps


@pytest.mark.parametrize("env_id", GYMNAX_IDS)
def test_reset_and_step_shapes_and_dtypes(env_id):
    env = _env(env_id)
    key = jax.random.key(0)
    state, obs = env.reset(key)
    assert obs.shape == env.spec.obs_shape
    assert obs.dtype == jnp.float32
    state, ts = env.step(key, state, jnp.zeros(env.spec.action_low.shape, jnp.float32))
    assert isinstance(ts, TimeStep)
    assert ts.obs.shape == ts.next_obs_final.shape == env.spec.obs_shape
    assert ts.obs.dtype == ts.next_obs_final.dtype == jnp.float32
    assert ts.reward.shape == ts.terminated.shape == ts.truncated.shape == ()
    assert ts.reward.dtype == jnp.float32
    assert ts.terminated.dtype == ts.truncated.dtype == jnp.bool_


def test_pendulum_scan_truncates_at_the_time_limit_and_resets():
    env = _env("gymnax:Pendulum-v1")
    first_obs, ts = _rollout(env, seed=0)
    assert first_obs.shape == (4, 3)
    assert ts.obs.shape == ts.next_obs_final.shape == (300, 4, 3)
    assert ts.reward.shape == ts.terminated.shape == ts.truncated.shape == (300, 4)
    assert np.isfinite(ts.obs).all() and np.isfinite(ts.reward).all()

    # Pendulum has no terminal state: every episode ends by the time limit, the 200th step.
    assert not ts.terminated.any()
    steps, envs = np.nonzero(ts.truncated)
    np.testing.assert_array_equal(steps, [199] * 4)
    np.testing.assert_array_equal(envs, [0, 1, 2, 3])

    # Within an episode the next observation is the one to act on; at the limit the step
    # returns the episode's true final observation and the next episode's first one.
    going_on = ~ts.truncated
    np.testing.assert_array_equal(ts.next_obs_final[going_on], ts.obs[going_on])
    final, restart = ts.next_obs_final[199], ts.obs[199]
    assert not np.isclose(final, restart).all(axis=1).any()
    # The restart is a reset: theta_dot within the reset's [-1, 1], on the unit circle.
    assert (np.abs(restart[:, 2]) <= 1.0).all()
    np.testing.assert_allclose(restart[:, 0] ** 2 + restart[:, 1] ** 2, 1.0, rtol=1e-5)


def test_rollouts_are_a_function_of_the_key():
    env = _env("gymnax:Pendulum-v1")
    first_a, ts_a = _rollout(env, seed=3)
    first_b, ts_b = _rollout(env, seed=3)
    first_c, ts_c = _rollout(env, seed=4)
    np.testing.assert_array_equal(first_a, first_b)
    for x, y in zip(ts_a, ts_b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(first_a, first_c)
    assert not np.array_equal(ts_a.obs, ts_c.obs)


def test_actions_are_clipped_to_the_bounds_before_the_environment_sees_them():
    # MountainCarContinuous's reward charges the action unclipped (-0.1 * a**2), so only
    # clipping in the adapter makes an out-of-range action behave exactly like the bound.
    env = _env("gymnax:MountainCarContinuous-v0")
    key = jax.random.key(1)
    state, _ = env.reset(key)
    step = jax.jit(env.step)
    for outside, bound in ((5.0, 1.0), (-7.0, -1.0)):
        _, ts_out = step(key, state, jnp.array([outside], jnp.float32))
        _, ts_bound = step(key, state, jnp.array([bound], jnp.float32))
        for x, y in zip(ts_out, ts_bound, strict=True):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        assert float(ts_bound.reward) == pytest.approx(-0.1)
    with pytest.raises(ValueError, match=r"action has shape \(2,\), expected \(1,\)"):
        env.step(key, state, jnp.zeros(2, jnp.float32))


@pytest.mark.parametrize(
    ("position", "time", "terminated", "truncated"),
    [
        (0.449, 0, True, False),  # reaches the goal: terminal
        (0.449, 998, True, False),  # the goal on the last allowed step: still terminal only
        (-0.5, 998, False, True),  # the 999th step away from the goal: the time limit
        (-0.5, 10, False, False),
    ],
)
def test_mountain_car_goal_is_terminated_and_the_time_limit_truncated(
    position, time, terminated, truncated
):
    env = _env("gymnax:MountainCarContinuous-v0")
    key = jax.random.key(2)
    state, _ = env.reset(key)
    state = state.replace(position=jnp.float32(position), velocity=jnp.float32(0.07), time=time)
    _, ts = env.step(key, state, jnp.array([1.0], jnp.float32))
    assert bool(ts.terminated) is terminated
    assert bool(ts.truncated) is truncated
    if terminated or truncated:
        reset_position = float(ts.obs[0])
        assert -0.6 <= reset_position <= -0.4 and float(ts.obs[1]) == 0.0
        assert float(ts.next_obs_final[0]) != reset_position
    else:
        np.testing.assert_array_equal(np.asarray(ts.obs), np.asarray(ts.next_obs_final))
    if terminated:
        assert float(ts.next_obs_final[0]) >= 0.45


# --- ids and errors ----------------------------------------------------------------------------


def test_unknown_gymnax_id_suggests_close_matches():
    with pytest.raises(ValueError) as exc:
        make_jax_env("gymnax:Pendulm-v1")
    message = _one_line(exc)
    assert "Unknown gymnax id 'gymnax:Pendulm-v1'" in message
    assert "Did you mean: gymnax:Pendulum-v1" in message


def test_discrete_gymnax_env_is_refused():
    with pytest.raises(ValueError) as exc:
        make_jax_env("gymnax:CartPole-v1")
    message = _one_line(exc)
    assert "'gymnax:CartPole-v1' has action space Discrete" in message
    assert "factorl needs a Box (continuous) action space" in message


@pytest.mark.parametrize(
    ("env_id", "expected"),
    [
        ("Pendulum-v1", "has no prefix; use 'gymnax:<id>' or 'playground:<name>'"),
        ("gym:Pendulum-v1", "gymnax ports Gymnasium tasks as 'gymnax:<id>'"),
        ("dmc:cheetah-run", "e.g. 'playground:CheetahRun'"),
        ("jumanji:Snake-v1", "accepted prefixes are 'gymnax:' and 'playground:'"),
    ],
)
def test_ids_without_a_jax_prefix_are_refused(env_id, expected):
    with pytest.raises(ValueError) as exc:
        make_jax_env(env_id)
    assert expected in _one_line(exc)


@pytest.mark.parametrize(
    ("env_id", "module", "extra"),
    [
        ("gymnax:Pendulum-v1", "gymnax", "gymnax"),
        ("playground:CheetahRun", "mujoco_playground", "playground"),
    ],
)
def test_a_missing_backend_names_the_extra_to_install(monkeypatch, env_id, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(MissingExtraError) as exc:
        make_jax_env(env_id)
    assert isinstance(exc.value, ImportError) and isinstance(exc.value, ValueError)
    message = _one_line(exc)
    assert message.startswith(f"{env_id!r} needs the {extra} package")
    assert message.endswith(f": {install_hint(extra)}")


def test_gymnax_older_than_1_0_1_is_refused(monkeypatch):
    # pip resolves to gymnax 0.0.9 when gymnasium>=1.4 is pinned; its merged `done` would be
    # read as terminal at every time limit.
    monkeypatch.setattr(device_envs, "_distribution_version", lambda name: "0.0.9")
    with pytest.raises(MissingExtraError) as exc:
        make_jax_env("gymnax:Pendulum-v1")
    message = _one_line(exc)
    assert "needs gymnax >= 1.0.1" in message and "gymnax 0.0.9 is installed" in message


# --- the playground adapter, on a stand-in environment ------------------------------------------


class _FakeState(NamedTuple):
    pos: jax.Array
    obs: jax.Array
    reward: jax.Array
    done: jax.Array


class _FakeMjxEnv:
    """What PlaygroundEnv uses of a playground MjxEnv: a point that moves by the action, whose
    simulation diverges (NaN, done=1, as the suite ports report it) beyond |pos| > 3."""

    action_size = 1
    mj_model = SimpleNamespace(
        actuator_ctrllimited=np.array([1]), actuator_ctrlrange=np.array([[-1.0, 1.0]])
    )

    def reset(self, key: jax.Array) -> _FakeState:
        pos = jax.random.uniform(key, (), minval=-0.5, maxval=0.5)
        return _FakeState(pos, jnp.stack([pos, -pos]), jnp.float32(0.0), jnp.float32(0.0))

    def step(self, state: _FakeState, action: jax.Array) -> _FakeState:
        pos = state.pos + action[0]
        pos = jnp.where(jnp.abs(pos) > 3.0, jnp.nan, pos)
        done = jnp.isnan(pos).astype(jnp.float32)
        return _FakeState(pos, jnp.stack([pos, -pos]), pos * 0 + 1.0, done)


@functools.cache
def _fake_env(max_episode_steps: int) -> PlaygroundEnv:
    return PlaygroundEnv(_FakeMjxEnv(), max_episode_steps=max_episode_steps, name="fake:Point")


def _scan_fake(env: PlaygroundEnv, actions: np.ndarray, seed: int = 0) -> Any:
    """Step 2 environments through `actions` (steps, 2, 1) under jit, vmap and scan."""

    @jax.jit
    def run(key, actions):
        reset_key, scan_key = jax.random.split(key)
        state, _ = jax.vmap(env.reset)(jax.random.split(reset_key, 2))
        keys = jax.random.split(scan_key, (actions.shape[0], 2))
        return jax.lax.scan(lambda s, x: jax.vmap(env.step)(x[0], s, x[1]), state, (keys, actions))

    return TimeStep(*(np.asarray(x) for x in run(jax.random.key(seed), actions)[1]))


def test_playground_adapter_truncates_at_its_time_limit():
    env = _fake_env(3)
    assert env.spec.obs_shape == (2,) and env.spec.max_episode_steps == 3
    ts = _scan_fake(env, np.full((7, 2, 1), 0.1, np.float32))
    assert not ts.terminated.any()
    np.testing.assert_array_equal(ts.truncated[:, 0], [0, 0, 1, 0, 0, 1, 0])
    np.testing.assert_array_equal(ts.truncated[:, 1], ts.truncated[:, 0])
    # At the limit: the final observation has moved three steps on; the next is a reset.
    moved = ts.next_obs_final[2] - ts.obs[1]
    np.testing.assert_allclose(moved, np.broadcast_to([0.1, -0.1], moved.shape), rtol=1e-5)
    assert (np.abs(ts.obs[2]) <= 0.5).all()
    assert not np.isclose(ts.obs[2], ts.next_obs_final[2]).all(axis=1).any()
    np.testing.assert_array_equal(ts.obs[[0, 1, 3, 4, 6]], ts.next_obs_final[[0, 1, 3, 4, 6]])


def test_playground_adapter_ends_a_diverged_episode_as_terminated_with_finite_values():
    env = _fake_env(100)
    actions = np.full((6, 2, 1), 5.0, np.float32)  # clipped to 1: |pos| passes 3 on the 4th step
    ts = _scan_fake(env, actions)
    assert not ts.truncated.any()
    np.testing.assert_array_equal(ts.terminated[:, 0], [0, 0, 0, 1, 0, 0])
    np.testing.assert_array_equal(ts.terminated[:, 1], ts.terminated[:, 0])
    assert np.isfinite(ts.next_obs_final).all() and np.isfinite(ts.reward).all()
    np.testing.assert_array_equal(ts.next_obs_final[3], 0.0)
    np.testing.assert_array_equal(ts.reward[3], 0.0)
    assert (np.abs(ts.obs[3]) <= 0.5).all()  # a fresh episode starts


class _CountingMjxEnv(_FakeMjxEnv):
    """The stand-in whose reset reports each time it is computed (once per batch under vmap)."""

    def __init__(self) -> None:
        self.resets = 0

    def reset(self, key: jax.Array) -> _FakeState:
        jax.debug.callback(self._count)
        return super().reset(key)

    def _count(self) -> None:
        self.resets += 1


def test_playground_adapter_computes_a_reset_only_on_steps_where_an_episode_ended():
    # Under vmap a cond on the episode end becomes a select that computes the reset on every
    # step (CheetahRun's settles the model for 200 physics steps); the adapter's reset runs
    # only when some environment in the batch ended, and leaves the others as they were.
    inner = _CountingMjxEnv()
    env = PlaygroundEnv(inner, max_episode_steps=3, name="fake:Counting")
    ts = _scan_fake(env, np.full((7, 2, 1), 0.1, np.float32))
    jax.effects_barrier()
    np.testing.assert_array_equal(ts.truncated[:, 0], [0, 0, 1, 0, 0, 1, 0])
    assert inner.resets == 1 + 2  # the first reset, then the two steps where episodes ended

    inner = _CountingMjxEnv()
    env = PlaygroundEnv(inner, max_episode_steps=100, name="fake:Counting")
    actions = np.zeros((6, 2, 1), np.float32)
    actions[:, 0] = 1.0  # the first environment diverges on its 4th step, the second stays put
    ts = _scan_fake(env, actions)
    jax.effects_barrier()
    assert inner.resets == 1 + 1
    np.testing.assert_array_equal(ts.terminated[:, 0], [0, 0, 0, 1, 0, 0])
    assert not ts.terminated[:, 1].any() and not ts.truncated.any()
    np.testing.assert_array_equal(ts.obs[:, 1], np.broadcast_to(ts.obs[0, 1], (6, 2)))
    np.testing.assert_allclose(ts.obs[4, 0] - ts.obs[3, 0], [1.0, -1.0], rtol=1e-5)


class _SlowResetMjxEnv(_FakeMjxEnv):
    """The stand-in with a reset that costs much more than a step (as CheetahRun's does) and
    depends only on its key, so a compiler could compute it ahead of any test on the step."""

    def reset(self, key: jax.Array) -> _FakeState:
        state = super().reset(key)
        pos = jax.lax.fori_loop(0, 20_000, lambda i, p: p + 1e-30 * jnp.sin(p + i), state.pos)
        return state._replace(pos=pos, obs=jnp.stack([pos, -pos]))


def test_playground_adapter_step_costs_no_reset_when_no_episode_ended():
    # Compiled, not traced: XLA hoisted a reset that depends only on the key out of the reset
    # loop and computed it on every step. Timed against the reset itself, so a busy machine
    # slows both alike; a step that computed the reset would take about `steps` resets.
    env = PlaygroundEnv(_SlowResetMjxEnv(), max_episode_steps=1000, name="fake:SlowReset")
    steps = 50
    reset = jax.jit(jax.vmap(env.reset))
    keys = jax.random.split(jax.random.key(0), 2)
    state, _ = jax.block_until_ready(reset(keys))

    @jax.jit
    def run(state, key):
        keys = jax.random.split(key, (steps, 2))
        action = jnp.full((2, 1), 0.01, jnp.float32)
        return jax.lax.scan(lambda s, k: jax.vmap(env.step)(k, s, action), state, keys)

    def best_of_three(fn, *args) -> float:
        jax.block_until_ready(fn(*args))  # compiles
        times = []
        for _ in range(3):
            start = time.perf_counter()
            jax.block_until_ready(fn(*args))
            times.append(time.perf_counter() - start)
        return min(times)

    one_reset = best_of_three(reset, keys)
    scan = best_of_three(run, state, jax.random.key(1))
    assert scan < steps * one_reset / 10, (scan, one_reset)


def test_playground_adapter_state_keeps_its_types_from_reset_to_step():
    # A weakly typed leaf from reset (CheetahRun sets data.time = 0.0) that comes back from
    # step with another type changes a jitted runner's input types: its next call compiles again.
    class WeakReset(_FakeMjxEnv):
        def reset(self, key: jax.Array) -> _FakeState:
            return super().reset(key)._replace(reward=0.0)

    env = PlaygroundEnv(WeakReset(), max_episode_steps=3, name="fake:Weak")
    keys = jax.random.split(jax.random.key(0), 2)
    state = jax.eval_shape(lambda k: jax.vmap(env.reset)(k)[0], keys)
    after = jax.eval_shape(lambda s, k: jax.vmap(env.step)(k, s, jnp.zeros((2, 1)))[0], state, keys)
    for a, b in zip(
        jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(after), strict=True
    ):
        assert (a.shape, a.dtype, a.weak_type) == (b.shape, b.dtype, b.weak_type)
        assert not a.weak_type


def test_bench_select_reset_path_steps_as_the_adapter_does():
    # bench/playground.py times the former reset (under lax.cond) against the adapter's while
    # loop; both take the rest of the step from the adapter, so only the reset's cost differs.
    script = Path(__file__).resolve().parents[1] / "bench" / "playground.py"
    spec = importlib.util.spec_from_file_location("factorl_bench_playground", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    select = bench.SelectResetPlaygroundEnv(_FakeMjxEnv(), max_episode_steps=5, name="fake:Point")
    actions = np.full((8, 2, 1), 0.1, np.float32)
    actions[:, 0] = 1.0  # the first environment diverges, the second reaches the time limit
    ts = _scan_fake(select, actions)
    assert ts.terminated[:, 0].any() and ts.truncated[:, 1].any()
    for got, want in zip(ts, _scan_fake(_fake_env(5), actions), strict=True):
        np.testing.assert_array_equal(got, want)


def test_playground_adapter_needs_bounded_actuators():
    env = _FakeMjxEnv()
    env.mj_model = SimpleNamespace(
        actuator_ctrllimited=np.array([0]), actuator_ctrlrange=np.array([[0.0, 0.0]])
    )
    with pytest.raises(ValueError, match="actuators without a control range"):
        PlaygroundEnv(env, max_episode_steps=10, name="fake:Unbounded")


# --- MuJoCo Playground itself (the `playground` extra; not in `test`) ----------------------------


def test_playground_pendulum_runs_under_jit_vmap_and_scan():
    playground = pytest.importorskip("mujoco_playground")
    env = make_jax_env("playground:PendulumSwingup")
    assert env.spec.obs_shape == (3,) and env.spec.max_episode_steps == 1000
    np.testing.assert_array_equal(env.spec.action_low, [-1.0])
    suite = playground.dm_control_suite
    config = suite.get_default_config("PendulumSwingup")
    config.impl = "jax"
    short = PlaygroundEnv(
        suite.load("PendulumSwingup", config=config), max_episode_steps=3, name="short"
    )
    _, ts = _rollout(short, seed=0, n_envs=2, steps=4)
    np.testing.assert_array_equal(ts.truncated[:, 0], [0, 0, 1, 0])
    assert not ts.terminated.any() and np.isfinite(ts.obs).all()
    with pytest.raises(ValueError) as exc:
        make_jax_env("playground:CheetaRun")
    assert "Did you mean: playground:CheetahRun" in _one_line(exc)
