"""Tests for factorl.envs.host: dm_control and Gymnasium adapters behind one Gymnasium API."""

from __future__ import annotations

import ctypes.util
import os
import subprocess
import sys
import warnings
from pathlib import Path

import gymnasium
import numpy as np
import pytest
from gymnasium import spaces

from factorl.envs.host import ActionRepeat, DMCEnv, available_envs, make_env

REPO_ROOT = Path(__file__).resolve().parents[1]


def _flat_reference(observation: dict) -> np.ndarray:
    """The suite's observation dict flattened independently of the adapter."""
    parts = [np.reshape(np.asarray(v, dtype=np.float64), -1) for v in observation.values()]
    return np.concatenate(parts).astype(np.float32)


def _rollout(env: gymnasium.Env, actions: np.ndarray, seed: int | None = None):
    """Reset (optionally seeded) and step through `actions`; returns stacked obs and rewards."""
    obs, _ = env.reset(seed=seed)
    observations, rewards = [obs], []
    for action in actions:
        obs, reward, terminated, truncated, _ = env.step(action)
        observations.append(obs)
        rewards.append(reward)
        if terminated or truncated:
            break
    return np.stack(observations), np.array(rewards)


# --- DeepMind Control Suite -------------------------------------------------------------------


def test_available_envs_lists_sorted_dmc_ids():
    from dm_control import suite

    ids = available_envs()
    assert "dmc:cheetah-run" in ids
    assert "dmc:walker-walk" in ids
    assert "dmc:ball_in_cup-catch" in ids
    assert ids == sorted(ids)
    assert len(ids) == len(suite.ALL_TASKS)
    assert all(i.startswith("dmc:") for i in ids)


@pytest.mark.parametrize(
    ("env_id", "dim"),
    [
        ("dmc:cheetah-run", 17),
        ("dmc:walker-walk", 24),  # includes the scalar "height", which must become one entry
        ("dmc:ball_in_cup-catch", 8),
        ("dmc:point_mass-easy", 4),
    ],
)
def test_dmc_observation_is_flat_float32_in_suite_key_order(env_id, dim):
    env = make_env(env_id, seed=0)
    obs, info = env.reset()
    assert isinstance(info, dict)
    assert env.observation_space == spaces.Box(-np.inf, np.inf, shape=(dim,), dtype=np.float32)
    assert obs.shape == (dim,)
    assert obs.dtype == np.float32
    dm_env = env.unwrapped.dm_env
    expected = _flat_reference(dm_env.task.get_observation(dm_env.physics))
    np.testing.assert_array_equal(obs, expected)

    obs, reward, *_ = env.step(np.zeros(env.action_space.shape, np.float32))
    assert obs.shape == (dim,)
    assert obs.dtype == np.float32
    assert isinstance(reward, float)


def test_dmc_walker_scalar_height_keeps_its_place():
    env = make_env("dmc:walker-walk", seed=1)
    obs, _ = env.reset()
    physics = env.unwrapped.dm_env.physics
    # Suite order is orientations (14), height (scalar), velocity (9).
    assert obs[14] == np.float32(physics.torso_height())
    np.testing.assert_array_equal(obs[15:], physics.velocity().astype(np.float32))


def test_dmc_action_bounds_come_from_the_spec_per_dimension():
    env = make_env("dmc:quadruped-walk")
    spec = env.unwrapped.dm_env.action_spec()
    space = env.action_space
    assert isinstance(space, spaces.Box)
    assert space.dtype == np.float32
    assert space.shape == spec.shape == (12,)
    low = np.broadcast_to(spec.minimum, spec.shape).astype(np.float32)
    high = np.broadcast_to(spec.maximum, spec.shape).astype(np.float32)
    np.testing.assert_array_equal(space.low, low)
    np.testing.assert_array_equal(space.high, high)
    # The quadruped's bounds are not [-1, 1]: e.g. [-1, 1.1] and [-0.8, 0.8] per leg.
    assert space.high[1] == np.float32(1.1)
    assert space.low[2] == np.float32(-0.8)
    assert space.high[2] == np.float32(0.8)


def test_dmc_actions_reach_the_physics_unclipped_and_uncast():
    env = make_env("dmc:cheetah-run", seed=0)
    env.reset()
    ctrl = env.unwrapped.dm_env.physics.data.ctrl
    action64 = np.linspace(-1.7, 1.3, 6)  # outside [-1, 1] at both ends
    env.step(action64)
    np.testing.assert_array_equal(ctrl, action64)
    action32 = np.full(6, 0.1, dtype=np.float32)
    env.step(action32)
    np.testing.assert_array_equal(ctrl, action32.astype(np.float64))
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(5))


def test_dmc_time_limit_is_truncation_not_termination():
    env = make_env("dmc:cheetah-run", seed=0)
    env.reset()
    zero = np.zeros(env.action_space.shape, np.float32)
    for t in range(1, 1001):
        _, reward, terminated, truncated, _ = env.step(zero)
        assert isinstance(reward, float)
        assert not terminated
        assert truncated == (t == 1000)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(zero)  # dm_control would silently start a new episode
    env.reset()
    env.step(zero)  # usable again after reset


def test_dmc_discount_zero_is_termination():
    env = make_env("dmc:cheetah-run", seed=0)
    env.reset()
    # Make the suite report a terminal state (discount 0) on the next step.
    env.unwrapped.dm_env.task.get_termination = lambda physics: 0.0
    _, _, terminated, truncated, _ = env.step(np.zeros(6, np.float32))
    assert terminated
    assert not truncated


def test_dmc_reset_seed_makes_episodes_reproducible():
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, size=(60, 6)).astype(np.float32)
    env = make_env("dmc:cheetah-run")
    obs_a, rew_a = _rollout(env, actions, seed=7)
    _rollout(env, actions)  # another episode in between moves the random stream on
    obs_b, rew_b = _rollout(env, actions, seed=7)
    np.testing.assert_array_equal(obs_a, obs_b)
    np.testing.assert_array_equal(rew_a, rew_b)

    # Without a seed, reset continues the stream: a new initial state.
    first, _ = env.reset(seed=7)
    second, _ = env.reset()
    assert not np.array_equal(first, second)
    # A different seed gives a different episode.
    other, _ = env.reset(seed=8)
    assert not np.array_equal(first, other)


def test_dmc_fresh_envs_with_same_seed_agree():
    rng = np.random.default_rng(1)
    actions = rng.uniform(-1, 1, size=(60, 6)).astype(np.float32)
    obs_a, rew_a = _rollout(make_env("dmc:cheetah-run", seed=3), actions)
    obs_b, rew_b = _rollout(make_env("dmc:cheetah-run", seed=3), actions)
    obs_c, _ = _rollout(make_env("dmc:cheetah-run"), actions, seed=3)
    np.testing.assert_array_equal(obs_a, obs_b)
    np.testing.assert_array_equal(rew_a, rew_b)
    # make_env(seed=s).reset() is the same episode as reset(seed=s).
    np.testing.assert_array_equal(obs_a, obs_c)
    obs_d, _ = _rollout(make_env("dmc:cheetah-run", seed=4), actions)
    assert not np.array_equal(obs_a[0], obs_d[0])


def test_dmc_unknown_render_mode_rejected():
    with pytest.raises(ValueError, match="render_mode"):
        DMCEnv("cheetah", "run", render_mode="human")


def test_dmc_renders_from_the_domain_camera_unless_told():
    """Quadruped records from camera 2 (DrQ-v2's and CQN's), other domains from camera 0; an
    explicit camera_id wins."""

    def frame(camera_id=None):
        env = DMCEnv("quadruped", "walk", seed=0, render_mode="rgb_array", camera_id=camera_id)
        env.reset(seed=0)
        try:
            return env.render()
        except RuntimeError as exc:
            pytest.skip(f"no OpenGL backend on this machine: {exc.__cause__!r}")

    default = frame()
    np.testing.assert_array_equal(default, frame(2))
    assert not np.array_equal(default, frame(0))
    assert DMCEnv("cheetah", "run")._camera_id == 0


def test_dmc_render_rgb_array():
    env = make_env("dmc:cheetah-run", seed=0, render_mode="rgb_array")
    env.reset()
    try:
        frame = env.render()
    except RuntimeError as exc:
        assert "MUJOCO_GL" in str(exc)
        pytest.skip(f"no OpenGL backend on this machine: {exc.__cause__!r}")
    assert frame.shape == (84, 84, 3)
    assert frame.dtype == np.uint8
    assert frame.std() > 0  # an actual picture, not a blank buffer


def test_dmc_render_without_backend_gives_actionable_error(monkeypatch):
    from dm_control import _render

    def no_gl(*args, **kwargs):
        raise RuntimeError("No OpenGL rendering backend is available.")

    # dm_control looks the renderer up when it first creates a context, so this simulates a
    # machine without EGL/OSMesa.
    monkeypatch.setattr(_render, "Renderer", no_gl)
    env = make_env("dmc:cheetah-run", seed=0, render_mode="rgb_array")
    env.reset()
    with pytest.raises(RuntimeError, match=r"MUJOCO_GL=egl") as excinfo:
        env.render()
    assert "osmesa" in str(excinfo.value)


# --- MUJOCO_GL default (fresh interpreters, since dm_control reads it once at import) ---------


def _import_in_fresh_python(extra_env: dict[str, str], code: str = "") -> tuple[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DISPLAY", "WAYLAND_DISPLAY", "MUJOCO_GL", "PYOPENGL_PLATFORM")
    }
    env.update(extra_env)
    script = (
        "import os\nimport factorl.envs.host\nfrom dm_control import _render\n"
        "print(os.environ['MUJOCO_GL'], _render.BACKEND)\n" + code
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, proc.stderr


headless_linux = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the MUJOCO_GL default only applies on Linux"
)


@headless_linux
def test_headless_import_picks_a_backend_quietly():
    stdout, stderr = _import_in_fresh_python({})
    assert "GLFW" not in stderr
    assert "X11" not in stderr
    mujoco_gl, backend = stdout.split()
    assert mujoco_gl in ("egl", "osmesa", "disable")
    assert backend != "glfw"


@headless_linux
@pytest.mark.skipif(ctypes.util.find_library("EGL") is None, reason="needs libEGL to break it")
def test_unusable_egl_falls_back_to_disabled_rendering():
    # An out-of-range device id makes dm_control's EGL backend fail at import, like a machine with
    # libEGL installed but no usable EGL device.
    code = (
        "import numpy as np\n"
        "env = factorl.envs.host.make_env('dmc:cheetah-run', render_mode='rgb_array')\n"
        "env.reset()\n"
        "env.step(np.zeros(6))\n"
        "try:\n    env.render()\nexcept RuntimeError as exc:\n    print('render-error', exc)\n"
    )
    stdout, stderr = _import_in_fresh_python({"MUJOCO_EGL_DEVICE_ID": "99"}, code)
    lines = stdout.splitlines()
    assert lines[0] == "disable off"
    assert lines[1].startswith("render-error") and "MUJOCO_GL=egl" in lines[1]
    assert "GLFW" not in stderr


@headless_linux
def test_user_mujoco_gl_is_respected():
    stdout, _ = _import_in_fresh_python({"MUJOCO_GL": "off"})
    assert stdout.split() == ["off", "off"]


@headless_linux
@pytest.mark.skipif(
    ctypes.util.find_library("EGL") is None, reason="needs libEGL to make a user's egl unusable"
)
def test_unusable_user_mujoco_gl_turns_rendering_off_in_one_line():
    # the user's own MUJOCO_GL=egl with no usable EGL device (an out-of-range device id): every
    # factorl command still works and a DMC task still steps, with one line saying what to do
    code = (
        "import numpy as np\n"
        "env = factorl.envs.host.make_env('dmc:cheetah-run')\n"
        "env.reset()\n"
        "env.step(np.zeros(6))\n"
        "print('stepped')\n"
    )
    stdout, stderr = _import_in_fresh_python(
        {"MUJOCO_GL": "egl", "MUJOCO_EGL_DEVICE_ID": "99"}, code
    )
    assert stdout.split() == ["disable", "off", "stepped"]
    lines = [line for line in stderr.splitlines() if line.startswith("factorl:")]
    assert len(lines) == 1, stderr
    assert "MUJOCO_GL=egl cannot be used" in lines[0] and "libegl1" in lines[0]


# --- Gymnasium -------------------------------------------------------------------------------


def test_gym_pendulum_obs_bounds_and_time_limit():
    env = make_env("gym:Pendulum-v1", seed=0)
    obs, _ = env.reset()
    assert obs.shape == (3,)
    assert obs.dtype == np.float32
    assert env.observation_space.dtype == np.float32
    assert isinstance(env.action_space, spaces.Box)
    np.testing.assert_array_equal(env.action_space.low, [-2.0])
    np.testing.assert_array_equal(env.action_space.high, [2.0])
    action = np.array([0.5], dtype=np.float32)
    for t in range(1, 201):
        obs, reward, terminated, truncated, _ = env.step(action)
        assert obs.dtype == np.float32
        assert not terminated
        assert truncated == (t == 200)
    assert isinstance(float(reward), float)


def test_gym_seed_goes_to_first_reset_and_trajectories_repeat():
    actions = np.random.default_rng(2).uniform(-2, 2, size=(50, 1)).astype(np.float32)
    env = make_env("gym:Pendulum-v1", seed=3)
    obs_a, rew_a = _rollout(env, actions)
    reference, _ = gymnasium.make("Pendulum-v1").reset(seed=3)
    np.testing.assert_array_equal(obs_a[0], reference)
    obs_b, rew_b = _rollout(make_env("gym:Pendulum-v1", seed=3), actions)
    np.testing.assert_array_equal(obs_a, obs_b)
    np.testing.assert_array_equal(rew_a, rew_b)
    # Later resets continue the stream; an explicit seed still wins.
    second, _ = env.reset()
    assert not np.array_equal(second, obs_a[0])
    again, _ = env.reset(seed=3)
    np.testing.assert_array_equal(again, obs_a[0])


class _DictObsEnv(gymnasium.Env):
    """A float64 dict-observation env with asymmetric action bounds that records its actions."""

    def __init__(self, render_mode=None):
        self.render_mode = render_mode
        self.observation_space = spaces.Dict(
            {
                "a": spaces.Box(-1.0, 1.0, (2,), np.float64),
                "b": spaces.Box(0.0, 5.0, (3, 1), np.float64),
            }
        )
        self.action_space = spaces.Box(
            np.array([-3.0, 0.0]), np.array([1.0, 0.5]), dtype=np.float64
        )
        self.actions = []

    def _obs(self):
        return {"a": self.np_random.uniform(-1, 1, 2), "b": self.np_random.uniform(0, 5, (3, 1))}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self._obs(), {}

    def step(self, action):
        self.actions.append(action)
        return self._obs(), 1.0, False, False, {}


@pytest.fixture
def dict_obs_env_id():
    env_id = "factorl_test/DictObs-v0"
    gymnasium.register(env_id, entry_point=_DictObsEnv, max_episode_steps=10)
    yield env_id
    del gymnasium.registry[env_id]


def test_gym_dict_obs_flattened_to_float32_and_actions_untouched(dict_obs_env_id):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env = make_env(f"gym:{dict_obs_env_id}", seed=5)
    assert not [w for w in caught if "precision lowered" in str(w.message)]  # cast is intended
    assert env.observation_space.shape == (5,)
    assert env.observation_space.dtype == np.float32
    np.testing.assert_array_equal(env.action_space.low, [-3.0, 0.0])
    np.testing.assert_array_equal(env.action_space.high, [1.0, 0.5])
    obs, _ = env.reset()
    raw, _ = _DictObsEnv().reset(seed=5)
    assert obs.dtype == np.float32
    np.testing.assert_array_equal(obs, np.concatenate([raw["a"], raw["b"].ravel()]).astype("f4"))
    action = np.array([-3.5, 0.123456789012345])  # out of bounds, and not float32-representable
    truncations = []
    for _ in range(10):
        truncations.append(env.step(action)[3])
        np.testing.assert_array_equal(env.unwrapped.actions[-1], action)
    assert truncations == [False] * 9 + [True]  # the registered time limit is kept


def test_gym_discrete_action_space_rejected():
    with pytest.raises(ValueError, match=r"Box \(continuous\)"):
        make_env("gym:CartPole-v1")


# --- action_repeat ---------------------------------------------------------------------------


def test_action_repeat_dmc_halves_episode_and_sums_rewards():
    actions = np.random.default_rng(3).uniform(-1, 1, size=(500, 6)).astype(np.float32)
    env = make_env("dmc:cheetah-run", seed=0, action_repeat=2)
    assert isinstance(env, ActionRepeat)
    manual = make_env("dmc:cheetah-run", seed=0)
    obs, _ = env.reset()
    manual_obs, _ = manual.reset()
    np.testing.assert_array_equal(obs, manual_obs)
    for t, action in enumerate(actions, start=1):
        obs, reward, terminated, truncated, _ = env.step(action)
        expected = 0.0
        for _ in range(2):
            manual_obs, r, *_ = manual.step(action)
            expected += r
        assert reward == expected
        np.testing.assert_array_equal(obs, manual_obs)
        assert not terminated
        assert truncated == (t == 500)


@pytest.mark.parametrize(
    ("env_id", "repeat", "episode", "shape"),
    [("dmc:cheetah-run", 3, 1000, (6,)), ("gym:Pendulum-v1", 3, 200, (1,))],
)
def test_action_repeat_stops_at_episode_end(env_id, repeat, episode, shape):
    env = make_env(env_id, seed=0, action_repeat=repeat)
    env.reset()
    action = np.zeros(shape, np.float32)
    agent_steps = 0
    truncated = False
    while not truncated:
        _, _, terminated, truncated, _ = env.step(action)
        agent_steps += 1
        assert not terminated
    # ceil(episode / repeat): the last agent step is shorter, not past the end (DMCEnv raises
    # on a step after the episode ended).
    assert agent_steps == -(-episode // repeat)


@pytest.mark.parametrize("bad", [0, -1, 1.5, 2.0, "2", True, None])
def test_action_repeat_must_be_positive_int(bad):
    with pytest.raises(ValueError, match="action_repeat"):
        make_env("dmc:cheetah-run", action_repeat=bad)


# --- id errors -------------------------------------------------------------------------------


def test_unknown_dmc_id_lists_close_matches_and_all_ids():
    with pytest.raises(ValueError) as excinfo:
        make_env("dmc:cheetah-rnu")
    message = str(excinfo.value)
    assert "Did you mean: dmc:cheetah-run" in message
    for env_id in available_envs():
        assert env_id in message


def test_dmc_id_without_task_is_unknown():
    with pytest.raises(ValueError, match="dmc:cheetah-run"):
        make_env("dmc:cheetah")


def test_unknown_gym_id_suggests_registered_ids():
    with pytest.raises(ValueError, match=r"Did you mean: gym:Pendulum-v1"):
        make_env("gym:Pendulm-v1")


def test_unknown_prefix_lists_accepted_prefixes():
    with pytest.raises(ValueError) as excinfo:
        make_env("mujoco:cheetah-run")
    assert "'dmc:'" in str(excinfo.value)
    assert "'gym:'" in str(excinfo.value)


@pytest.mark.parametrize(
    ("env_id", "suggestion"),
    [("Pendulum-v1", "'gym:Pendulum-v1'"), ("cheetah-run", "'dmc:cheetah-run'")],
)
def test_id_without_prefix_suggests_the_prefixed_form(env_id, suggestion):
    with pytest.raises(ValueError) as excinfo:
        make_env(env_id)
    message = str(excinfo.value)
    assert f"Did you mean {suggestion}" in message
    assert "gym:" in message
    assert "dmc:" in message


def test_gymnasium_mujoco_tasks_work():
    """Gymnasium's MuJoCo tasks (the SAC/TD3 comparison uses HalfCheetah-v5) need its extra."""
    env = make_env("gym:HalfCheetah-v5", seed=0)
    obs, _ = env.reset()
    assert obs.shape == (17,) and obs.dtype == np.float32
    assert env.action_space.shape == (6,)
    obs, reward, terminated, truncated, _ = env.step(np.zeros(6, np.float32))
    assert np.isfinite(reward) and not terminated and not truncated
    env.close()


def test_mujoco_settotalmass_deprecation_is_not_logged(caplog):
    import logging

    with caplog.at_level(logging.WARNING):
        make_env("dmc:cheetah-run", seed=0).close()
    assert not [r for r in caplog.records if "settotalmass" in r.getMessage()]
