"""Device replay: n-step batches from windows, extra fields, windows that never cross
environments or the write position, `extend` as repeated adds, priorities, and the mixed sample
from two buffers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import same_leaves

from factorl.replay.device import (
    PRIORITY_EPS,
    DeviceReplay,
    importance_weights,
    n_step_batch,
    sample_mixed,
    update_priorities_mixed,
)
from factorl.replay.sequences import MultiAgentSequenceReplay

GAMMA = 0.5


def _window(rewards, terminated, truncated, horizon=1):
    """One sampled window [1, W] whose step t has obs t, action t and next_obs t + 1."""
    w = len(rewards)
    t = jnp.arange(w, dtype=jnp.float32)
    terminated = jnp.asarray(terminated)[None]
    return {
        "obs": t[None, :, None],
        "action": jnp.stack([t, -t], axis=-1)[None],
        "reward": jnp.asarray(rewards, jnp.float32)[None],
        "terminated": terminated,
        "ended": terminated | jnp.asarray(truncated)[None],
        "next_obs": (t + 1)[None, :, None],
    }


def test_n_step_batch_without_an_episode_end_bootstraps_after_n_steps():
    b = n_step_batch(_window([1.0, 2.0, 4.0], [0, 0, 0], [0, 0, 0]), 3, 1, GAMMA)
    assert float(b.reward[0]) == 1.0 + 0.5 * 2.0 + 0.25 * 4.0
    assert float(b.discount[0]) == GAMMA**3
    assert float(b.next_obs[0, 0]) == 3.0 and float(b.obs[0, 0]) == 0.0
    np.testing.assert_array_equal(b.action[0], [0.0, -0.0])


def test_n_step_batch_stops_at_a_terminal_and_does_not_bootstrap():
    b = n_step_batch(_window([1.0, 2.0, 4.0], [0, 1, 0], [0, 0, 0]), 3, 1, GAMMA)
    assert float(b.reward[0]) == 1.0 + 0.5 * 2.0  # the next episode's reward is not counted
    assert float(b.discount[0]) == 0.0
    assert float(b.next_obs[0, 0]) == 2.0


def test_n_step_batch_bootstraps_through_a_time_limit_from_the_final_observation():
    b = n_step_batch(_window([1.0, 2.0, 4.0], [0, 0, 0], [1, 0, 0]), 3, 1, GAMMA)
    assert float(b.reward[0]) == 1.0
    assert float(b.discount[0]) == GAMMA
    assert float(b.next_obs[0, 0]) == 1.0  # the truncated step's own next_obs


def test_n_step_batch_pads_action_sequences_with_the_episode_last_action():
    b = n_step_batch(_window([1.0, 1.0, 1.0], [0, 1, 0], [0, 0, 0]), 1, 3, GAMMA)
    np.testing.assert_array_equal(b.action[0, :, 0], [0.0, 1.0, 1.0])  # step 2 is another episode
    assert float(b.reward[0]) == 1.0 and float(b.discount[0]) == GAMMA


def test_n_step_batch_reads_next_fields_at_the_bootstrap_step_and_others_at_the_first():
    window = _window([1.0, 2.0, 4.0], [0, 0, 0], [0, 1, 0])
    t = jnp.arange(3, dtype=jnp.float32)
    window["state"] = (10 + t)[None, :, None]
    window["next_state"] = (20 + t)[None, :, None]
    b = n_step_batch(window, 3, 1, GAMMA)
    assert float(b.next_obs[0, 0]) == 2.0  # the truncated step 1 is the bootstrap step
    assert float(b.extras["state"][0, 0]) == 10.0
    assert float(b.extras["next_state"][0, 0]) == 21.0
    assert n_step_batch(_window([1.0], [0], [0]), 1, 1, GAMMA).extras == {}


# ---------------------------------------------------------------------------------------------
# DeviceReplay

FIELDS = {"state": ((2,), jnp.float32), "next_state": ((2,), jnp.float32), "demo": ((), bool)}


def _replay(num_envs=3, steps_per_env=16, **overrides):
    kwargs = dict(
        num_envs=num_envs,
        steps_per_env=steps_per_env,
        batch_size=64,
        obs_shape=(2,),
        action_shape=(2,),
        n_step=3,
        gamma=0.9,
        extra_fields=FIELDS,
    )
    return DeviceReplay(**{**kwargs, **overrides})


def _steps(rng, num_envs, steps, base=0.0, end_rate=0.1):
    """Env-major steps [N, T, ...]: obs (env * 1000 + t + base, env), action (t + base, env),
    random rewards and episode ends, and the extra fields."""
    t = np.arange(steps, dtype=np.float32)[None, :] + base
    env = np.broadcast_to(np.arange(num_envs, dtype=np.float32)[:, None], (num_envs, steps))
    end = rng.random((num_envs, steps))
    obs = np.stack([env * 1000 + t, env], axis=-1)
    return {
        "obs": obs,
        "action": np.stack([t + 0 * env, env], axis=-1),
        "reward": rng.normal(size=(num_envs, steps)).astype(np.float32),
        "next_obs": obs + np.array([1.0, 0.0], np.float32),
        "terminated": end < end_rate / 2,
        "truncated": (end >= end_rate / 2) & (end < end_rate),
        "state": rng.normal(size=(num_envs, steps, 2)).astype(np.float32),
        "next_state": rng.normal(size=(num_envs, steps, 2)).astype(np.float32),
        "demo": rng.random((num_envs, steps)) < 0.5,
    }


def _add_each(replay, state, data):
    add = jax.jit(replay.add)
    for t in range(data["obs"].shape[1]):
        state = add(state, {k: v[:, t] for k, v in data.items()})
    return state


def test_windows_never_cross_environments_or_the_write_position():
    # a window of 4 steps and no episode ends: the action sequence is the window's 4 actions
    replay = _replay(steps_per_env=16, n_step=1, horizon=4, batch_size=256)
    data = _steps(np.random.default_rng(0), 3, 37, end_rate=0.0)  # wraps twice, ends mid-row
    state = replay.extend(replay.init(), data)
    assert int(replay.size(state)) == 3 * (16 - 4 + 1)
    for seed in range(5):
        action = np.asarray(replay.sample(state, jax.random.PRNGKey(seed)).batch.action)
        steps, env = action[..., 0], action[..., 1]
        assert (np.diff(steps, axis=1) == 1).all()
        assert (env == env[:, :1]).all()
        assert steps.min() >= 37 - 16  # nothing older than the buffer holds


@pytest.mark.parametrize("prioritized", [False, True])
@pytest.mark.parametrize("steps", [1, 7, 16, 41])  # rows of 16 steps: 41 goes in three pieces
def test_extend_is_exactly_t_adds(prioritized, steps):
    replay = _replay(prioritized=prioritized)
    rng = np.random.default_rng(steps)
    before = replay.extend(replay.init(), _steps(rng, 3, 5, base=-5))  # extend continues rows
    data = _steps(rng, 3, steps)
    by_extend = jax.jit(replay.extend)(before, data)
    by_add = _add_each(replay, before, data)
    assert same_leaves(by_extend, by_add)
    if prioritized:  # new windows entered the sum tree as adds enter them
        assert float(by_extend.sum_tree_state.nodes[..., 0].max()) > 0


def test_one_environment_takes_datasets_without_an_environment_axis():
    replay = _replay(num_envs=1)
    data = _steps(np.random.default_rng(1), 1, 20)
    with_axis = replay.extend(replay.init(), data)
    without = replay.extend(replay.init(), {k: v[0] for k, v in data.items()})
    assert same_leaves(with_axis, without)


def test_samples_carry_the_extra_fields_of_their_windows():
    replay = _replay(n_step=2, batch_size=512)
    data = _steps(np.random.default_rng(2), 3, 16, end_rate=0.0)
    data["state"] = data["obs"] * 2  # state doubles obs, next_state doubles next_obs
    data["next_state"] = data["next_obs"] * 2
    data["demo"] = data["obs"][..., 1] == 1  # environment 1 is the demonstrator
    batch = replay.sample(replay.extend(replay.init(), data), jax.random.PRNGKey(0)).batch
    np.testing.assert_array_equal(batch.extras["state"], 2 * np.asarray(batch.obs))
    np.testing.assert_array_equal(batch.extras["next_state"], 2 * np.asarray(batch.next_obs))
    np.testing.assert_array_equal(batch.extras["demo"], np.asarray(batch.obs)[:, 1] == 1)
    # without episode ends the bootstrap step is n steps on
    np.testing.assert_array_equal(batch.next_obs[:, 0], np.asarray(batch.obs)[:, 0] + 2)


def test_prioritised_samples_follow_and_take_back_priorities():
    replay = _replay(prioritized=True, priority_alpha=1.0, priority_beta=1.0, batch_size=256)
    state = replay.extend(replay.init(), _steps(np.random.default_rng(3), 3, 16))
    sample_fn = jax.jit(replay.sample)
    sample = sample_fn(state, jax.random.PRNGKey(0))
    assert sample.indices.shape == (256,)
    np.testing.assert_array_equal(sample.batch.weights, 1.0)  # every window at the same priority
    # one window made 100 times likelier than each of the other 41: it fills most of the next
    # batch, at a hundredth of their weight
    favourite = int(sample.indices[0])
    td = jnp.where(sample.indices == favourite, 100.0, 1.0)
    state = jax.jit(replay.update_priorities)(state, sample.indices, td)
    again = sample_fn(state, jax.random.PRNGKey(1))
    picked = np.asarray(again.indices) == favourite
    assert 0.6 < picked.mean() < 0.8  # 100 / 141
    weights = np.asarray(again.batch.weights)
    np.testing.assert_array_equal(weights[~picked], 1.0)
    np.testing.assert_allclose(weights[picked], 0.01, rtol=1e-4)
    uniform = _replay()
    plain = uniform.extend(uniform.init(), _steps(np.random.default_rng(3), 3, 16))
    drawn = uniform.sample(plain, jax.random.PRNGKey(0))
    assert (np.asarray(drawn.indices) == -1).all()
    assert uniform.update_priorities(plain, drawn.indices, jnp.ones(64)) is plain


def test_priorities_and_weights_take_their_exponents():
    # leaf = (|TD| + eps)^alpha; weight = (N P)^-beta over the batch's largest, P = leaf / sum
    replay = _replay(prioritized=True, priority_alpha=0.5, priority_beta=0.25, batch_size=32)
    state = replay.extend(replay.init(), _steps(np.random.default_rng(3), 3, 16))
    drawn = replay.sample(state, jax.random.PRNGKey(0))
    windows = np.unique(np.asarray(drawn.indices))
    td = 1.0 + np.arange(len(windows), dtype=np.float32)
    state = replay.update_priorities(state, jnp.asarray(windows), jnp.asarray(td))
    tree = state.sum_tree_state
    leaves_ = np.asarray(tree.nodes)[2**tree.tree_depth - 1 :][: tree.capacity]
    np.testing.assert_allclose(leaves_[windows], (td + PRIORITY_EPS) ** 0.5, rtol=1e-5)
    again = replay.sample(state, jax.random.PRNGKey(1))
    p = leaves_[np.asarray(again.indices)] / leaves_.sum()
    w = (float(replay.size(state)) * p) ** -0.25
    np.testing.assert_allclose(again.batch.weights, w / w.max(), rtol=1e-4)
    assert len(np.unique(np.round(w, 6))) > 3  # the weights differ


def test_a_row_drawn_with_probability_0_weighs_nothing_and_stays_unsampleable():
    # flashbax's sum tree can return a window of priority 0 (not stored, or cut by the write
    # head) when a drawn value falls on a boundary: its weight would be (N * 0)^-beta = inf
    weights = importance_weights(jnp.array([0.0, 0.5, 0.25]), jnp.asarray(4), 1.0)
    np.testing.assert_allclose(weights, [0.0, 0.5, 1.0])
    assert np.isfinite(importance_weights(jnp.zeros(3), jnp.asarray(4), 0.4)).all()
    replay = _replay(prioritized=True, priority_alpha=1.0, batch_size=4)
    state = replay.extend(replay.init(), _steps(np.random.default_rng(3), 3, 16))
    drawn = replay.sample(state, jax.random.PRNGKey(0))
    zero_first = drawn.batch.weights.at[0].set(0.0)
    state = replay.update_priorities(state, drawn.indices, jnp.ones(4), zero_first)
    tree = state.sum_tree_state
    leaves_ = np.asarray(tree.nodes)[2**tree.tree_depth - 1 :]
    assert leaves_[int(drawn.indices[0])] == 0.0
    assert (leaves_[np.asarray(drawn.indices[1:])] > 0).all()


def _two_replays(prioritized=False):
    """main: three environments of obs < 3000; second (demonstrations): one of obs >= 10000."""
    main, second = _replay(prioritized=prioritized), _replay(num_envs=1, prioritized=prioritized)
    rng = np.random.default_rng(4)
    main_state = main.extend(main.init(), _steps(rng, 3, 16))
    second_state = second.extend(second.init(), _steps(rng, 1, 16, base=10_000))
    return main, main_state, second, second_state


@pytest.mark.parametrize("share", [0.0, 0.3, 1.0])
def test_mixed_samples_take_their_share_from_the_second_buffer(share):
    main, main_state, second, second_state = _two_replays()
    key = jax.random.PRNGKey(5)
    mixed = sample_mixed(main, main_state, second, second_state, key, share, 20)
    k = round(20 * share)
    from_second = np.asarray(mixed.batch.obs)[:, 0] >= 10_000
    np.testing.assert_array_equal(from_second, np.arange(20) >= 20 - k)
    parts = []
    if k < 20:
        parts.append(main.sample(main_state, jax.random.fold_in(key, 0), 20 - k))
    if k:
        parts.append(second.sample(second_state, jax.random.fold_in(key, 1), k))
    expected = jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs), *parts)
    assert same_leaves(mixed, expected)
    # pure: the same rows under jit (sums may round differently once fused)
    jitted = jax.jit(sample_mixed, static_argnums=(0, 2, 5, 6))(
        main, main_state, second, second_state, key, share, 20
    )
    np.testing.assert_array_equal(jitted.batch.obs, mixed.batch.obs)
    np.testing.assert_allclose(jitted.batch.reward, mixed.batch.reward, rtol=1e-6)


def test_mixed_priorities_go_back_to_the_buffer_each_row_came_from():
    main, main_state, second, second_state = _two_replays(prioritized=True)
    mixed = sample_mixed(main, main_state, second, second_state, jax.random.PRNGKey(6), 0.25)
    td = jnp.arange(64, dtype=jnp.float32)
    new_main, new_second = update_priorities_mixed(
        main, main_state, second, second_state, mixed.indices, td, 0.25
    )
    assert same_leaves(new_main, main.update_priorities(main_state, mixed.indices[:48], td[:48]))
    assert same_leaves(
        new_second, second.update_priorities(second_state, mixed.indices[48:], td[48:])
    )
    assert not same_leaves(new_second, second_state)


def test_a_mixed_part_from_an_empty_buffer_gets_no_weight():
    main, main_state, second, _ = _two_replays()
    mixed = sample_mixed(main, main_state, second, second.init(), jax.random.PRNGKey(7), 0.5)
    np.testing.assert_array_equal(mixed.batch.weights, np.repeat([1.0, 0.0], 32))


def test_device_replay_errors_are_one_line_and_say_what_to_fix():
    replay = _replay()
    data = _steps(np.random.default_rng(8), 3, 4)
    cases = [
        ({k: v for k, v in data.items() if k != "demo"}, r"missing \['demo'\]"),
        ({**data, "info": data["reward"]}, r"unexpected \['info'\]"),
        ({**data, "obs": data["obs"][0]}, r"\[num_envs, T, \.\.\.\]"),
        ({**data, "reward": data["reward"][:, :3]}, r"'reward' must have shape \(3, 4\)"),
    ]
    for dataset, match in cases:
        with pytest.raises(ValueError, match=match) as info:
            replay.extend(replay.init(), dataset)
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=r"'action' must have shape \(3, 2\)"):
        replay.add(replay.init(), {k: v[:, 0, ..., :1] if k == "action" else v[:, 0]
                                   for k, v in data.items()})  # fmt: skip
    with pytest.raises(ValueError, match="give each environment more steps"):
        _replay(steps_per_env=2, n_step=3)
    with pytest.raises(ValueError, match="extra field name 'reward'"):
        _replay(extra_fields={"reward": ((), jnp.float32)})
    other = _replay(extra_fields={})
    with pytest.raises(ValueError, match="same layout"):
        sample_mixed(replay, replay.init(), other, other.init(), jax.random.PRNGKey(0), 0.5)


def test_sequence_windows_reach_a_recurrent_learner_as_stored_with_their_extras():
    """Multi-agent steps (obs [A, O], actions [A], a global state and masks) sampled as whole
    windows of consecutive steps of one environment."""
    agents, length, envs = 2, 3, 2
    replay = DeviceReplay(
        num_envs=envs, steps_per_env=8, batch_size=16, obs_shape=(agents, 1),
        action_shape=(agents,), sequence_length=length,
        extra_fields={"state": ((2,), jnp.float32), "avail": ((agents, 3), bool)},
    )  # fmt: skip
    state = replay.init()
    for t in range(6):  # env e's step t: obs 10 e + t; episodes end at t = 2 (time limit), 4
        ids = jnp.arange(envs, dtype=jnp.float32) * 10 + t
        state = replay.add(state, {
            "obs": jnp.repeat(ids[:, None, None], agents, axis=1),
            "action": jnp.stack([ids, -ids], axis=1),
            "reward": ids,
            "next_obs": jnp.repeat(ids[:, None, None] + 1, agents, axis=1),
            "terminated": jnp.full((envs,), t == 4),
            "truncated": jnp.full((envs,), t == 2),
            "state": jnp.stack([ids, ids], axis=1),
            "avail": jnp.full((envs, agents, 3), t % 2 == 0),
        })  # fmt: skip
    assert int(replay.size(state)) == envs * (6 - length + 1)
    batch = replay.sample(state, jax.random.PRNGKey(0)).batch
    assert batch.obs.shape == (16, length, agents, 1) and batch.action.shape == (16, length, 2)
    assert batch.weights.shape == (16,) and batch.extras["avail"].shape == (16, length, 2, 3)
    first = batch.reward[:, 0]
    # consecutive steps of one environment, every field from the same step
    np.testing.assert_array_equal(batch.reward, first[:, None] + jnp.arange(length))
    np.testing.assert_array_equal(batch.obs[..., 0, 0], batch.reward)
    np.testing.assert_array_equal(batch.next_obs[..., 1, 0], batch.reward + 1)
    np.testing.assert_array_equal(batch.extras["state"][..., 1], batch.reward)
    step = batch.reward % 10
    np.testing.assert_array_equal(batch.truncated, step == 2)
    np.testing.assert_array_equal(batch.terminated, step == 4)
    np.testing.assert_array_equal(batch.extras["avail"][..., 0, 0], step % 2 == 0)


# ------------------------------------------------------------------ the host runner's window replay
def _window_replay():
    return MultiAgentSequenceReplay(
        num_envs=2, steps_per_env=8, batch_size=4, sequence_length=3, num_agents=2,
        obs_shape=(3,), state_shape=(5,), num_actions=4,
    )  # fmt: skip


def _marl_obs(value):
    return {
        "obs": np.full((2, 2, 3), value, np.float32),
        "state": np.full((2, 5), value, np.float32),
        "avail": np.ones((2, 2, 4), bool),
    }


def test_window_replay_on_the_host_samples_consecutive_steps_and_round_trips_its_state():
    replay = _window_replay()
    assert len(replay) == 0
    ends = np.zeros(2, bool)
    for t in range(5):
        action = np.full((2, 2), t % 4)
        replay.add(_marl_obs(t), action, np.full(2, t), _marl_obs(t + 1), ends, ends)
    assert len(replay) == 2 * (5 - 3 + 1)
    batch = replay.sample(4, np.random.default_rng(0))
    assert batch.obs.shape == (4, 3, 2, 3) and batch.extras["next_state"].shape == (4, 3, 5)
    # a window is three consecutive steps, and each step's next_obs the one after it
    steps = np.asarray(batch.obs[:, :, 0, 0])
    np.testing.assert_array_equal(np.diff(steps, axis=1), 1)
    np.testing.assert_array_equal(np.asarray(batch.next_obs[:, :, 0, 0]), steps + 1)
    np.testing.assert_array_equal(np.asarray(batch.reward), steps)
    # the same generator state draws the same windows; the state survives a round trip
    again = _window_replay()
    again.load_state_dict(replay.state_dict())
    other = again.sample(4, np.random.default_rng(0))
    np.testing.assert_array_equal(np.asarray(other.obs), np.asarray(batch.obs))


def test_window_replay_refuses_a_state_that_does_not_fit_and_keeps_its_own():
    replay = _window_replay()
    ends = np.zeros(2, bool)
    replay.add(_marl_obs(1), np.zeros((2, 2)), np.ones(2), _marl_obs(2), ends, ends)
    good = replay.state_dict()
    before = {k: v.copy() for k, v in good.items()}
    bad_shape = {**good, "experience.obs": np.zeros((2, 9, 2, 3), np.float32)}
    bad_index = {**good, "current_index": np.asarray(99, good["current_index"].dtype)}
    missing = {k: v for k, v in good.items() if k != "is_full"}
    for state, message in [(bad_shape, "experience.obs"), (bad_index, "current_index"),
                           (missing, "missing")]:  # fmt: skip
        with pytest.raises(ValueError, match=message):
            replay.load_state_dict(state)
    for name, value in replay.state_dict().items():
        np.testing.assert_array_equal(value, before[name])


def test_aligned_windows_are_whole_blocks_from_each_streams_first_step_and_skip_the_one_written():
    replay = DeviceReplay(
        num_envs=2, steps_per_env=6, batch_size=64, obs_shape=(1,), action_shape=(1,),
        sequence_length=2, aligned_windows=True,
    )  # fmt: skip
    state = replay.init()
    add = jax.jit(replay.add)

    def step(t):
        obs = jnp.full((2, 1), t, jnp.float32)
        ends = jnp.zeros(2, bool)
        return {"obs": obs, "action": jnp.zeros((2, 1)), "reward": jnp.full(2, float(t)),
                "next_obs": obs + 1, "terminated": ends, "truncated": ends}  # fmt: skip

    starts = []
    for t in range(9):
        state = add(state, step(t))
        # steps 0..t are stored (the newest 6 once the row wrapped)
        complete = (t + 1) // 2 if t < 6 else 3 - ((t + 1) % 2)
        assert int(replay.size(state)) == 2 * complete * 2
        if t in (3, 6, 7, 8):
            batch = replay.sample(state, jax.random.PRNGKey(t)).batch
            first = np.asarray(batch.obs[:, 0, 0])
            np.testing.assert_array_equal(np.asarray(batch.obs[:, 1, 0]), first + 1)
            starts.append((t, sorted(set(first.astype(int).tolist()))))
    # after step 3: blocks (0, 1) and (2, 3); after 6 the row holds 6, 1..5: the block with step
    # 6 is being overwritten, so (2, 3) and (4, 5); after 7 it holds 6, 7: (6, 7) is whole again
    assert starts == [(3, [0, 2]), (6, [2, 4]), (7, [2, 4, 6]), (8, [4, 6])]
    with pytest.raises(ValueError, match="multiple"):
        DeviceReplay(num_envs=1, steps_per_env=5, batch_size=4, obs_shape=(1,),
                     action_shape=(1,), sequence_length=2, aligned_windows=True)  # fmt: skip
