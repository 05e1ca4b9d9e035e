"""Tests for factorl.envs.marl: cooperative multi-agent environments (the QMIX two-step game,
JaxMARL's MPE and SMAX, PettingZoo's MPE on the host) that keep termination, truncation and the
final observation apart. Tests needing jaxmarl or mpe2 skip when those extras are missing."""

from __future__ import annotations

import functools
import sys
from types import SimpleNamespace
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from factorl.envs.device import MissingExtraError
from factorl.envs.marl import (
    JaxMARLEnv,
    MultiAgentEnv,
    MultiAgentObs,
    MultiAgentTimeStep,
    PettingZooEnv,
    make_marl_env,
    make_marl_host_env,
    marl_spaces,
)

N_ENVS = 8


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def _numpy(tree):
    return jax.tree_util.tree_map(np.asarray, tree)


@functools.cache
def _rollout_fn(env: MultiAgentEnv, steps: int, extra=None):
    """A jitted rollout of N_ENVS envs (vmap) for `steps` steps (scan) with random actions drawn
    uniformly among each agent's available ones. `extra(state, actions, key, new_state)` adds
    per-step outputs computed from the env's own state (compiled in the same function)."""

    def run(key):
        reset_key, scan_key = jax.random.split(key)
        state, first = jax.vmap(env.reset)(jax.random.split(reset_key, N_ENVS))

        def body(carry, key):
            state, current = carry
            action_key, env_key = jax.random.split(key)
            logits = jnp.where(current.avail, 0.0, -jnp.inf)
            actions = jax.random.categorical(action_key, logits).astype(jnp.int32)
            env_keys = jax.random.split(env_key, N_ENVS)
            new_state, timestep = jax.vmap(env.step)(env_keys, state, actions)
            out = (current, actions, timestep)
            if extra is not None:
                out = (*out, jax.vmap(extra)(state, actions, env_keys, new_state))
            return (new_state, timestep.obs), out

        _, outs = jax.lax.scan(body, (state, first), jax.random.split(scan_key, steps))
        return outs

    return jax.jit(run)


def _check_shapes(spec, current: MultiAgentObs, timestep: MultiAgentTimeStep, steps: int):
    lead = (steps, N_ENVS)
    for obs in (current, timestep.obs, timestep.next_final):
        assert obs.obs.shape == (*lead, spec.num_agents, *spec.obs_shape)
        assert obs.obs.dtype == np.float32
        assert obs.state.shape == (*lead, *spec.state_shape)
        assert obs.state.dtype == np.float32
        assert obs.avail.shape == (*lead, spec.num_agents, spec.num_actions)
        assert obs.avail.dtype == np.bool_
    for field in (timestep.reward, timestep.terminated, timestep.truncated):
        assert field.shape == lead
    assert timestep.reward.dtype == np.float32
    assert not (timestep.terminated & timestep.truncated).any()


# --- the two-step game -------------------------------------------------------------------------

STAGE_1, STAGE_2A, STAGE_2B = np.eye(3, dtype=np.float32)


def test_two_step_game_every_joint_action_path():
    env = make_marl_env("factorl:two-step-game")
    assert isinstance(env, MultiAgentEnv)
    spec = env.spec
    assert (spec.num_agents, spec.num_actions, spec.max_episode_steps) == (2, 2, 2)
    assert spec.obs_shape == spec.state_shape == (3,)
    step = jax.jit(env.step)
    key = jax.random.key(0)
    state, first = env.reset(key)
    np.testing.assert_array_equal(first.obs, [STAGE_1, STAGE_1])
    np.testing.assert_array_equal(first.state, STAGE_1)
    assert np.asarray(first.avail).all()
    payoff_2b = [[0.0, 1.0], [1.0, 8.0]]
    for a0 in (0, 1):
        for a1 in (0, 1):
            # Stage 1: agent 0 alone picks 2A (action 0) or 2B (action 1), reward 0.
            mid, ts = step(key, state, jnp.array([a0, a1], jnp.int32))
            expected = STAGE_2A if a0 == 0 else STAGE_2B
            assert float(ts.reward) == 0.0
            assert not bool(ts.terminated) and not bool(ts.truncated)
            np.testing.assert_array_equal(ts.obs.obs, [expected, expected])
            np.testing.assert_array_equal(ts.obs.state, expected)
            np.testing.assert_array_equal(ts.next_final.state, expected)
            for b0 in (0, 1):
                for b1 in (0, 1):
                    after, end = step(key, mid, jnp.array([b0, b1], jnp.int32))
                    reward = 7.0 if a0 == 0 else payoff_2b[b0][b1]
                    assert float(end.reward) == reward, (a0, a1, b0, b1)
                    assert bool(end.terminated) and not bool(end.truncated)
                    # The terminal state observes zeros; the next episode starts at stage 1.
                    np.testing.assert_array_equal(end.next_final.obs, np.zeros((2, 3)))
                    np.testing.assert_array_equal(end.obs.obs, [STAGE_1, STAGE_1])
                    np.testing.assert_array_equal(end.obs.state, STAGE_1)
                    np.testing.assert_array_equal(after, state)
    with pytest.raises(ValueError, match="shape"):
        env.step(key, state, jnp.zeros((3,), jnp.int32))


def test_two_step_game_jit_vmap_returns():
    env = make_marl_env("factorl:two-step-game")
    (current, actions, ts) = _numpy(_rollout_fn(env, 40)(jax.random.key(1)))
    _check_shapes(env.spec, current, ts, 40)
    # Episodes alternate: stage 1 (reward 0) then a terminal stage, in every env.
    alternating = np.broadcast_to(np.tile([False, True], 20)[:, None], (40, N_ENVS))
    np.testing.assert_array_equal(ts.terminated, alternating)
    assert not ts.truncated.any()
    assert (ts.reward[0::2] == 0).all()
    first_actions = actions[0::2, :, 0]
    second = actions[1::2]
    expected = np.where(
        first_actions == 0,
        7.0,
        np.array([[0.0, 1.0], [1.0, 8.0]])[second[..., 0], second[..., 1]],
    )
    np.testing.assert_array_equal(ts.reward[1::2], expected)
    assert {0.0, 1.0, 7.0, 8.0} <= set(np.unique(ts.reward[1::2]))


# --- the JaxMARL adapter, on a stand-in with JaxMARL's API (no jaxmarl needed) -----------------


class _FakeState(NamedTuple):
    t: jax.Array
    x: jax.Array
    won: jax.Array


class _FakeMARL:
    """JaxMARL's API in miniature: agents "a" (obs 2, actions 3) and "b" (obs 3, actions 2);
    `done` when the pre-step counter reaches max_steps=3 (4 steps) or agent a plays 2 (a win);
    rewards a: 1, b: 2; masks: a's action 1 is never available."""

    agents = ("a", "b")
    max_steps = 3

    def action_space(self, agent):
        return SimpleNamespace(n={"a": 3, "b": 2}[agent], shape=())

    @staticmethod
    def _obs(state):
        t = state.t.astype(jnp.float32)
        return {"a": jnp.stack([state.x, t]), "b": jnp.stack([state.x, t, jnp.float32(1)])}

    def reset(self, key):
        state = _FakeState(jnp.int32(0), jax.random.uniform(key, (), minval=10, maxval=20), False)
        return self._obs(state), state

    def step_env(self, key, state, actions):
        done = (state.t >= self.max_steps) | (actions["a"] == 2)
        reached = _FakeState(state.t + 1, state.x + actions["a"] + actions["b"], actions["a"] == 2)
        rewards = {"a": jnp.float32(1), "b": jnp.float32(2)}
        dones = {"a": done, "b": done, "__all__": done}
        return self._obs(reached), reached, rewards, dones, {}

    def get_avail_actions(self, state):
        return {"a": jnp.array([1, 0, 1], jnp.uint8), "b": jnp.ones((2,), jnp.uint8)}


def _fake_env(team_reward="sum"):
    return JaxMARLEnv(
        _FakeMARL(),
        name="fake",
        team_reward=team_reward,
        terminal=lambda state: state.won,
        max_episode_steps=_FakeMARL.max_steps + 1,
    )


def test_jaxmarl_adapter_pads_masks_and_concatenates_the_state():
    env = _fake_env()
    spec = env.spec
    assert (spec.num_agents, spec.obs_shape, spec.state_shape, spec.num_actions) == (
        2,
        (3,),
        (5,),
        3,
    )
    assert spec.agents == ("a", "b")
    _, first = env.reset(jax.random.key(0))
    x = float(first.obs[0, 0])
    assert 10 <= x <= 20
    np.testing.assert_array_equal(first.obs, [[x, 0, 0], [x, 0, 1]])  # a padded with a zero
    np.testing.assert_array_equal(first.state, [x, 0, x, 0, 1])  # the raw observations
    # a: its own mask (action 1 never); b: its two actions, the third beyond its space.
    np.testing.assert_array_equal(first.avail, [[True, False, True], [True, True, False]])


@pytest.mark.parametrize(("team_reward", "reward"), [("sum", 3.0), ("shared", 1.0)])
def test_jaxmarl_adapter_splits_truncation_from_termination(team_reward, reward):
    env = _fake_env(team_reward)
    step = jax.jit(env.step)
    key = jax.random.key(0)
    state, first = env.reset(key)
    x = float(first.state[0])
    wait, win = jnp.array([0, 1], jnp.int32), jnp.array([2, 0], jnp.int32)
    for t in range(1, 4):
        state, ts = step(jax.random.key(t), state, wait)
        assert not bool(ts.terminated | ts.truncated)
        assert float(ts.reward) == reward
        np.testing.assert_array_equal(ts.obs.obs, ts.next_final.obs)
    # Step 4 reaches the time limit: truncated, with the final observation kept (t=4, x moved
    # by 1 a step) and the next episode's first observation to act on.
    reached, ts = step(jax.random.key(4), state, wait)
    assert bool(ts.truncated) and not bool(ts.terminated)
    np.testing.assert_array_equal(ts.next_final.obs, [[x + 4, 4, 0], [x + 4, 4, 1]])
    assert float(ts.obs.obs[0, 1]) == 0 and float(ts.obs.obs[0, 0]) != x + 4
    assert int(reached.t) == 0
    # A win on the last allowed step is terminated, not truncated (no bootstrap).
    _, ts = step(jax.random.key(5), state, win)
    assert bool(ts.terminated) and not bool(ts.truncated)
    # A win earlier is terminated too, and resets.
    state, _ = env.reset(key)
    reached, ts = step(jax.random.key(6), state, win)
    assert bool(ts.terminated) and not bool(ts.truncated)
    assert float(ts.next_final.obs[0, 1]) == 1 and int(reached.t) == 0


def test_jaxmarl_adapter_reports_a_win_on_the_winning_step_only():
    plain = _fake_env()
    assert not plain.spec.reports_wins
    env = JaxMARLEnv(
        _FakeMARL(),
        name="fake",
        team_reward="sum",
        terminal=lambda state: state.won,
        max_episode_steps=_FakeMARL.max_steps + 1,
        won=lambda state: state.won,
    )
    assert env.spec.reports_wins
    step = jax.jit(env.step)
    wait, win = jnp.array([0, 1], jnp.int32), jnp.array([2, 0], jnp.int32)
    for e in (env, plain):
        state, _ = e.reset(jax.random.key(0))
        # a step that goes on and one that reaches the time limit are no wins
        for t in range(4):
            state, ts = jax.jit(e.step)(jax.random.key(t), state, wait)
            assert not bool(ts.won)
        assert bool(ts.truncated)
    state, _ = env.reset(jax.random.key(1))
    _, ts = step(jax.random.key(2), state, win)
    assert bool(ts.won) and bool(ts.terminated)
    # an environment without wins never reports one, even on the same terminal step
    state, _ = plain.reset(jax.random.key(1))
    _, ts = jax.jit(plain.step)(jax.random.key(2), state, win)
    assert bool(ts.terminated) and not bool(ts.won)


def test_jaxmarl_adapter_jit_vmap_and_scan_carry():
    env = _fake_env()
    (current, actions, ts) = _numpy(_rollout_fn(env, 12)(jax.random.key(2)))
    _check_shapes(env.spec, current, ts, 12)
    assert (ts.reward == 3.0).all()
    assert ts.terminated.any() and ts.truncated.any()
    assert not (actions[..., 0] == 1).any()  # the sampler kept to the masks
    # Where the episode goes on, the obs to act on is the one reached.
    going_on = ~(ts.terminated | ts.truncated)
    np.testing.assert_array_equal(ts.obs.obs[going_on], ts.next_final.obs[going_on])


# --- ids and errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env_id", "expected"),
    [
        ("factorl:two-step", "Did you mean: factorl:two-step-game"),
        ("two-step-game", "no prefix"),
        ("gymnax:Pendulum-v1", "accepted prefixes"),
        ("pettingzoo:mpe2.simple_spread_v3", "make_marl_host_env"),
    ],
)
def test_unknown_ids_raise_one_line(env_id, expected):
    with pytest.raises(ValueError) as exc:
        make_marl_env(env_id)
    assert expected in _one_line(exc)


def test_missing_jaxmarl_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "jaxmarl", None)  # makes `import jaxmarl` fail
    with pytest.raises(MissingExtraError) as exc:
        make_marl_env("jaxmarl:MPE_simple_spread_v3")
    assert 'pip install -c constraints.txt -e ".[jaxmarl]"' in _one_line(exc)


def test_missing_pettingzoo_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpe2", None)
    with pytest.raises(MissingExtraError) as exc:
        make_marl_host_env("pettingzoo:mpe2.simple_spread_v3")
    assert '".[pettingzoo]"' in _one_line(exc)


@pytest.mark.parametrize(
    "env_id", ["pettingzoo:json.tool", "pettingzoo:mpe2.simple_tag_v3", "pettingzoo:os"]
)
def test_host_ids_never_import_unlisted_modules(env_id):
    module = env_id.partition(":")[2]
    was_imported = module in sys.modules
    with pytest.raises(ValueError) as exc:
        make_marl_host_env(env_id)
    assert "does not import" in _one_line(exc)
    assert (module in sys.modules) == was_imported


def test_host_ids_need_the_pettingzoo_prefix():
    with pytest.raises(ValueError) as exc:
        make_marl_host_env("jaxmarl:MPE_simple_spread_v3")
    assert "make_marl_env" in _one_line(exc)


# --- JaxMARL MPE -------------------------------------------------------------------------------


@functools.cache
def _jaxmarl_env(env_id: str):
    pytest.importorskip("jaxmarl")
    return make_marl_env(env_id)


def test_unknown_jaxmarl_ids_suggest_close_matches():
    pytest.importorskip("jaxmarl")
    with pytest.raises(ValueError) as exc:
        make_marl_env("jaxmarl:smax-3mm")
    assert "jaxmarl:smax-3m" in _one_line(exc)
    with pytest.raises(ValueError) as exc:
        make_marl_env("jaxmarl:MPE_simple_sprad_v3")
    assert "jaxmarl:MPE_simple_spread_v3" in _one_line(exc)
    with pytest.raises(ValueError) as exc:
        make_marl_env("jaxmarl:MPE_simple_facmac_v1")  # continuous actions
    assert "discrete" in _one_line(exc)


def test_mpe_episodes_are_truncated_with_the_final_observation_kept():
    env = _jaxmarl_env("jaxmarl:MPE_simple_spread_v3")
    raw = env.jaxmarl_env
    spec = env.spec
    assert (spec.num_agents, spec.obs_shape, spec.state_shape, spec.num_actions) == (
        3,
        (18,),
        (54,),
        5,
    )
    assert spec.max_episode_steps == 26
    assert spec.agents == ("agent_0", "agent_1", "agent_2")

    def agent_rewards(state, actions, key, new_state):
        # JaxMARL's own per-agent rewards for the same transition (white box: step's key split)
        step_key, _ = jax.random.split(key)
        acts = {a: actions[i] for i, a in enumerate(spec.agents)}
        return jnp.stack(list(raw.step_env(step_key, state, acts)[2].values()))

    steps = 60
    (current, _, ts, rewards) = _numpy(_rollout_fn(env, steps, agent_rewards)(jax.random.key(3)))
    _check_shapes(spec, current, ts, steps)
    assert not ts.terminated.any()
    ends = np.flatnonzero(ts.truncated[:, 0])
    np.testing.assert_array_equal(ends, [25, 51])  # 26 steps per episode, in every env
    assert (ts.truncated == ts.truncated[:, :1]).all()
    np.testing.assert_allclose(ts.reward, rewards.sum(-1), rtol=1e-6)
    assert (current.avail).all()
    for obs in (ts.obs, ts.next_final):  # global state = the raw observations, concatenated
        # (to float rounding: XLA fuses the two copies of the observation differently)
        np.testing.assert_allclose(obs.state, obs.obs.reshape(steps, N_ENVS, -1), atol=1e-6)
    # Positions (obs[2:4]) move little per step; the final observation continues the episode,
    # and the obs to act on after a truncation is a fresh random start, far from it.
    pos_before, pos_after = current.obs[..., 2:4], ts.next_final.obs[..., 2:4]
    move = np.abs(pos_after - pos_before).max(axis=(-2, -1))
    going_on = ~ts.truncated
    assert move[~going_on].max() <= move[going_on].max() + 1e-6
    jump = np.abs(ts.obs.obs[..., 2:4] - pos_after).max(axis=(-2, -1))
    assert jump[~going_on].min() > 0 and jump[~going_on].mean() > 5 * move[going_on].mean()
    np.testing.assert_array_equal(ts.obs.obs[going_on], ts.next_final.obs[going_on])


# --- JaxMARL SMAX ------------------------------------------------------------------------------


def test_smax_3m_masks_state_and_episode_ends():
    env = _jaxmarl_env("jaxmarl:smax-3m")
    raw = env.jaxmarl_env
    spec = env.spec
    assert (spec.num_agents, spec.num_actions, spec.max_episode_steps) == (3, 8, 101)
    assert spec.agents == ("ally_0", "ally_1", "ally_2")

    def inspect(state, actions, key, new_state):
        # The world state and the allies' alive flags of the state to act in next.
        return raw.get_world_state(new_state), new_state.state.unit_alive[: spec.num_agents]

    steps = 40
    (current, actions, ts, (world_state, alive)) = _numpy(
        _rollout_fn(env, steps, inspect)(jax.random.key(4))
    )
    _check_shapes(spec, current, ts, steps)
    assert spec.obs_shape == (75,) and spec.state_shape == (72,)
    np.testing.assert_array_equal(ts.obs.state, world_state)
    # Random valid actions never broke a mask, every agent always has an action, and a dead
    # ally may only stop (action 4).
    taken = np.take_along_axis(current.avail, actions[..., None], axis=-1)[..., 0]
    assert taken.all()
    assert ts.obs.avail.any(-1).all()
    dead = ~alive
    assert dead.any(), "no ally died in the rollout: the dead-agent mask went untested"
    np.testing.assert_array_equal(
        ts.obs.avail[dead], np.tile(np.eye(8, dtype=bool)[4], (dead.sum(), 1))
    )
    assert ts.obs.avail[alive][:, :5].all()  # the living can always move and stop
    # Random play ends in wins or losses well before the 101-step limit.
    assert ts.terminated.any() and not ts.truncated.any()
    assert (ts.reward >= 0).all()
    ended = ts.terminated
    np.testing.assert_array_equal(ts.next_final.state[~ended], ts.obs.state[~ended])


def test_smax_3m_reports_wins_as_smax_pays_its_win_bonus():
    """A scripted focus fire (attack the first enemy in range, else move east) wins some 3m
    battles against the heuristic enemy; `won` is exactly JaxMARL's own test of a win (the
    final step's team reward includes the win bonus 1), and random play never wins."""
    env = _jaxmarl_env("jaxmarl:smax-3m")
    assert env.spec.reports_wins
    assert not _jaxmarl_env("jaxmarl:MPE_simple_spread_v3").spec.reports_wins
    n, steps = 16, 100

    def run(key):
        state, obs = jax.vmap(env.reset)(jax.random.split(key, n))

        def body(carry, key):
            state, obs = carry
            attack = obs.avail[..., 5:]
            target = jnp.argmax(attack, -1) + 5
            east = jnp.where(obs.avail[..., 1], 1, 4)
            actions = jnp.where(attack.any(-1), target, east).astype(jnp.int32)
            state, ts = jax.vmap(env.step)(jax.random.split(key, n), state, actions)
            return (state, ts.obs), ts

        return jax.lax.scan(body, (state, obs), jax.random.split(key, steps))[1]

    ts = _numpy(jax.jit(run)(jax.random.key(0)))
    assert ts.won.sum() >= 5 and (ts.terminated & ~ts.won).any()  # wins and losses
    np.testing.assert_array_equal(ts.won, ts.terminated & (ts.reward >= 1.0))
    (_, _, random_play) = _numpy(_rollout_fn(env, 40)(jax.random.key(4)))
    assert random_play.terminated.any() and not random_play.won.any()


# --- PettingZoo (host) -------------------------------------------------------------------------


def _pettingzoo(env_id: str, seed: int | None = None) -> PettingZooEnv:
    pytest.importorskip("mpe2")
    return make_marl_host_env(env_id, seed=seed)


def test_pettingzoo_spread_spaces_info_and_time_limit():
    env = _pettingzoo("pettingzoo:mpe2.simple_spread_v3", seed=5)
    spec = env.marl_spec
    assert (spec.num_agents, spec.obs_shape, spec.state_shape, spec.num_actions) == (
        3,
        (18,),
        (54,),
        5,
    )
    assert spec.max_episode_steps == 25
    assert env.observation_space["obs"].shape == (3, 18)
    assert env.observation_space["obs"].dtype == np.float32
    assert env.observation_space == marl_spaces(spec)[0]
    np.testing.assert_array_equal(env.action_space.nvec, [5, 5, 5])
    # A raw mpe2 env with the same seed and actions: the adapter's obs, state and team reward.
    raw = __import__("mpe2.simple_spread_v3").simple_spread_v3.parallel_env(
        continuous_actions=False
    )
    obs, _ = env.reset()
    raw_obs, _ = raw.reset(seed=5)
    np.testing.assert_array_equal(obs["obs"], np.stack([raw_obs[a] for a in spec.agents]))
    np.testing.assert_array_equal(obs["state"], raw.state())
    assert obs["avail"].shape == (3, 5) and obs["avail"].all()
    assert env.observation_space.contains(obs)
    for t in range(1, 26):
        action = env.action_space.sample()
        obs, reward, terminated, truncated, _ = env.step(action)
        raw_obs, raw_rewards, *_ = raw.step({a: int(action[i]) for i, a in enumerate(spec.agents)})
        np.testing.assert_array_equal(obs["obs"], np.stack([raw_obs[a] for a in spec.agents]))
        assert reward == pytest.approx(sum(raw_rewards.values()))
        assert obs["state"].shape == (54,) and obs["state"].dtype == np.float32
        assert not terminated
        assert truncated == (t == 25)
    with pytest.raises(RuntimeError):
        env.step(action)
    env.close()


def test_pettingzoo_seeded_reset_is_reproducible():
    first = _pettingzoo("pettingzoo:mpe2.simple_spread_v3", seed=7).reset()
    again = _pettingzoo("pettingzoo:mpe2.simple_spread_v3", seed=7).reset()
    other = _pettingzoo("pettingzoo:mpe2.simple_spread_v3", seed=8).reset()
    np.testing.assert_array_equal(first[0]["obs"], again[0]["obs"])
    np.testing.assert_array_equal(first[0]["state"], again[0]["state"])
    assert not np.array_equal(first[0]["obs"], other[0]["obs"])
    env = _pettingzoo("pettingzoo:mpe2.simple_spread_v3")
    np.testing.assert_array_equal(env.reset(seed=7)[0]["obs"], first[0]["obs"])


def test_pettingzoo_pads_unequal_agents():
    env = _pettingzoo("pettingzoo:mpe2.simple_speaker_listener_v4", seed=0)
    assert env.marl_spec.agents == ("speaker_0", "listener_0")
    assert env.observation_space["obs"].shape == (2, 11)
    obs, _ = env.reset()
    assert (obs["obs"][0, 3:] == 0).all()  # the speaker observes 3 numbers
    # The speaker has 3 actions, the listener 5: the speaker's last two are never available.
    np.testing.assert_array_equal(obs["avail"], [[True] * 3 + [False] * 2, [True] * 5])
    assert obs["state"].shape == (14,)
