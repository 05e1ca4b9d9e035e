"""VDN and QMIX: TD targets worked by hand (episode ends, truncation, resets inside a window),
masked acting, the epsilon schedule, one compile, vmap over seeds, and the QMIX paper's two-step
game, where QMIX finds the return-8 joint policy and VDN settles on 7."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from factorl.agents.value_decomposition import (
    QMIX,
    VDN,
    QMIXConfig,
    ValueDecompositionConfig,
    linear_epsilon,
    sequence_batch,
)
from factorl.envs.marl import MultiAgentObs, MultiAgentSpec, make_marl_env, marl_spaces
from factorl.maths.mixers import select

A, OBS, S, NA, H = 3, 4, 5, 4, 8
SPEC = MultiAgentSpec("test", A, (OBS,), (S,), NA, 10, ("a", "b", "c"))
GAMMA = 0.9


def make_agent(cls, **overrides):
    obs_space, action_space = marl_spaces(SPEC)
    config = dataclasses.replace(cls.Config(), hidden_size=H, gamma=GAMMA, **overrides)
    return cls(config, obs_space, action_space)


def random_obs(key, lead):
    k_obs, k_state, k_avail = jax.random.split(key, 3)
    avail = jax.random.bernoulli(k_avail, 0.6, (*lead, A, NA)).at[..., 0].set(True)
    return MultiAgentObs(
        jax.random.normal(k_obs, (*lead, A, OBS)), jax.random.normal(k_state, (*lead, S)), avail
    )


def window(key, terminated, truncated, next_obs_override=None):
    """One window [1, L] of random steps with the given episode ends. next_obs[t] = obs[t+1]
    inside an episode; at an end it is a fresh observation (the true final one)."""
    L = len(terminated)
    k_obs, k_final, k_act, k_rew = jax.random.split(key, 4)
    obs = random_obs(k_obs, (1, L + 1))
    finals = random_obs(k_final, (1, L))
    ended = np.asarray(terminated) | np.asarray(truncated)
    follow = jax.tree_util.tree_map(lambda x: x[:, 1:], obs)
    nxt = jax.tree_util.tree_map(
        lambda f, o: jnp.where(ended.reshape((1, L) + (1,) * (o.ndim - 2)), f, o), finals, follow
    )
    obs = jax.tree_util.tree_map(lambda x: x[:, :L], obs)
    actions = jax.random.randint(k_act, (1, L, A), 0, NA).astype(jnp.float32)
    rewards = jax.random.normal(k_rew, (1, L))
    return obs, actions, rewards, nxt


def hand_targets(agent, params, target_params, obs, actions, rewards, terminated, truncated, nxt):
    """Q_tot and y of one window [1, L], step by step with plain net calls (no scan)."""
    net, mixer, L = agent.net, agent.mixer, len(terminated)
    step = jax.jit(net.apply)
    h_online = h_target = jnp.zeros((A, H))
    q_tots, ys = [], []
    for t in range(L):
        if t == 0 or terminated[t - 1] or truncated[t - 1]:
            h_online, h_target = jnp.zeros((A, H)), jnp.zeros((A, H))
        no = jnp.zeros((), bool)
        h_online, q = step(params["agent"], h_online, obs.obs[0, t], no)
        h_target, _ = step(target_params["agent"], h_target, obs.obs[0, t], no)
        act = jnp.round(actions[0, t]).astype(jnp.int32)
        q_tots.append(mixer.apply(params["mixer"], select(q, act), obs.state[0, t]))
        _, q_next_online = step(params["agent"], h_online, nxt.obs[0, t], no)
        _, q_next_target = step(target_params["agent"], h_target, nxt.obs[0, t], no)
        masked = jnp.where(nxt.avail[0, t], q_next_online, -jnp.inf)
        best = jnp.argmax(masked, axis=-1)
        q_bar = mixer.apply(target_params["mixer"], select(q_next_target, best), nxt.state[0, t])
        ys.append(rewards[0, t] + GAMMA * (0.0 if terminated[t] else 1.0) * q_bar)
    return np.array(q_tots), np.array(ys)


def distinct_targets(agent, seed):
    """A state whose target networks differ from the online ones (double Q is then visible)."""
    state = agent.init(seed)
    other = agent.init(seed + 100)
    return state.replace(target_params=other.params)


@pytest.mark.parametrize("cls", [VDN, QMIX])
def test_targets_match_hand_computation_through_ends_and_truncation(cls):
    agent = make_agent(cls, mixer_init_scale=1.0)  # a visibly non-constant QMIX mixer
    state = distinct_targets(agent, 0)
    # episode ends: truncated at t=1, terminated at t=3, the window goes on after both
    terminated = [False, False, False, True, False]
    truncated = [False, True, False, False, False]
    obs, actions, rewards, nxt = window(jax.random.PRNGKey(1), terminated, truncated)
    batch = sequence_batch(obs, actions, rewards, [terminated], [truncated], nxt)
    q_tot, y = agent.td_terms(state.params, state.target_params, batch)
    want_q, want_y = hand_targets(
        agent, state.params, state.target_params, obs, actions, rewards, terminated, truncated, nxt
    )
    np.testing.assert_allclose(q_tot[0], want_q, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y[0], want_y, rtol=1e-5, atol=1e-5)
    # terminated: the target is the reward alone
    assert float(y[0, 3]) == pytest.approx(float(rewards[0, 3]), abs=1e-6)
    # truncated: it bootstraps, and from next_obs (the final observation), not from obs[t+1]
    # (the next episode's first): with next_obs[1] := obs[2] the target changes
    assert abs(float(y[0, 1] - rewards[0, 1])) > 1e-4
    wrong = nxt._replace(obs=nxt.obs.at[0, 1].set(obs.obs[0, 2]))
    wrong_batch = sequence_batch(obs, actions, rewards, [terminated], [truncated], wrong)
    _, y_wrong = agent.td_terms(state.params, state.target_params, wrong_batch)
    assert abs(float(y_wrong[0, 1] - y[0, 1])) > 1e-4
    np.testing.assert_allclose(y_wrong[0, 2:], y[0, 2:], rtol=1e-6)


def test_reward_scale_multiplies_the_reward_in_the_targets_only():
    terminated, truncated = [False, False, True, False], [False] * 4
    obs, actions, rewards, nxt = window(jax.random.PRNGKey(2), terminated, truncated)
    batch = sequence_batch(obs, actions, rewards, [terminated], [truncated], nxt)
    plain, scaled = make_agent(VDN), make_agent(VDN, reward_scale=10.0)
    state = distinct_targets(plain, 0)
    q, y = plain.td_terms(state.params, state.target_params, batch)
    q_scaled, y_scaled = scaled.td_terms(state.params, state.target_params, batch)
    np.testing.assert_array_equal(q_scaled, q)
    np.testing.assert_allclose(y_scaled - y, 9.0 * np.asarray(rewards), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cls", [VDN, QMIX])
def test_a_reset_inside_a_window_restarts_the_hidden_state(cls):
    agent = make_agent(cls, mixer_init_scale=1.0)
    state = distinct_targets(agent, 3)
    terminated, truncated = [False, True, False, False], [False] * 4
    obs, actions, rewards, nxt = window(jax.random.PRNGKey(4), terminated, truncated)
    full = sequence_batch(obs, actions, rewards, [terminated], [truncated], nxt)
    q_full, y_full = agent.td_terms(state.params, state.target_params, full)

    def tail(x):
        return x[:, 2:]

    second = sequence_batch(
        jax.tree_util.tree_map(tail, obs),
        tail(actions),
        tail(rewards),
        [terminated[2:]],
        [truncated[2:]],
        jax.tree_util.tree_map(tail, nxt),
    )
    q_second, y_second = agent.td_terms(state.params, state.target_params, second)
    np.testing.assert_allclose(q_full[0, 2:], q_second[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y_full[0, 2:], y_second[0], rtol=1e-5, atol=1e-6)
    # without the episode end the same steps see the first episode's history
    ongoing = sequence_batch(obs, actions, rewards, [[False] * 4], [truncated], nxt)
    q_ongoing, _ = agent.td_terms(state.params, state.target_params, ongoing)
    assert not np.allclose(q_ongoing[0, 2:], q_second[0], atol=1e-6)


def test_update_loss_is_the_mean_squared_td_and_td_abs_is_per_window():
    agent = make_agent(VDN)
    state = distinct_targets(agent, 5)
    parts = [window(jax.random.PRNGKey(k), [False, True, False], [False] * 3) for k in (6, 7)]
    obs, actions, rewards, nxt = (
        jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs), *[p[i] for p in parts])
        for i in range(4)
    )
    ends = [[False, True, False]] * 2
    batch = sequence_batch(obs, actions, rewards, ends, [[False] * 3] * 2, nxt)
    q_tot, y = agent.td_terms(state.params, state.target_params, batch)
    new_state, metrics, td_abs = agent.update(state, batch)
    td = np.asarray(y - q_tot)
    assert float(metrics["loss"]) == pytest.approx(float(np.mean(td**2)), rel=1e-5)
    np.testing.assert_allclose(td_abs, np.abs(td).mean(axis=1), rtol=1e-5)
    assert set(metrics) == {"loss", "grad_norm", "q_mean", "target_mean", "finite"}
    assert bool(metrics["finite"]) and int(new_state.learner_step) == 1
    changed = jax.tree_util.tree_map(
        lambda a, b: bool(jnp.any(a != b)), new_state.params, state.params
    )
    assert any(jax.tree_util.tree_leaves(changed))


def test_truncation_drop_leaves_truncated_steps_out_of_the_loss():
    """`truncation="drop"` (JaxMARL's loss on MPE): the mean squared TD over the steps that do
    not end in a truncation; a terminated step still counts; the targets themselves are the
    same as with `bootstrap`."""
    bootstrap, drop = make_agent(VDN), make_agent(VDN, truncation="drop")
    state = distinct_targets(bootstrap, 8)
    terminated = [[False, False, True, False], [False, False, False, False]]
    truncated = [[True, False, False, False], [False, False, False, True]]
    parts = [
        window(jax.random.PRNGKey(k), te, tr)
        for k, te, tr in zip((9, 10), terminated, truncated, strict=True)
    ]
    obs, actions, rewards, nxt = (
        jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs), *[p[i] for p in parts])
        for i in range(4)
    )
    batch = sequence_batch(obs, actions, rewards, terminated, truncated, nxt)
    q_tot, y = bootstrap.td_terms(state.params, state.target_params, batch)
    q_drop, y_drop = drop.td_terms(state.params, state.target_params, batch)
    np.testing.assert_array_equal(q_drop, q_tot)
    np.testing.assert_array_equal(y_drop, y)
    td = np.asarray(y - q_tot)
    kept = ~np.asarray(truncated)
    _, metrics, td_abs = drop.update(state, batch)
    assert float(metrics["loss"]) == pytest.approx(float(np.mean(td[kept] ** 2)), rel=1e-5)
    want = [np.abs(td[b][kept[b]]).mean() for b in range(2)]
    np.testing.assert_allclose(td_abs, want, rtol=1e-5)
    _, kept_all, _ = bootstrap.update(state, batch)
    assert float(kept_all["loss"]) == pytest.approx(float(np.mean(td**2)), rel=1e-5)
    assert float(kept_all["loss"]) != pytest.approx(float(metrics["loss"]), rel=1e-3)


@pytest.mark.parametrize("mode", ["greedy", "explore", "random"])
def test_acting_never_picks_an_unavailable_action(mode):
    agent = make_agent(QMIX, epsilon_decay_steps=100)
    state = agent.init(0, num_envs=64)
    for step in range(0, 200, 40):
        obs = random_obs(jax.random.PRNGKey(step), (64,))
        actions, state = agent.act(state, obs, step, mode)
        assert actions.shape == (64, A) and actions.dtype == np.int32
        taken = np.take_along_axis(np.asarray(obs.avail), actions[..., None], axis=-1)
        assert taken.all()
    # the Dict-space form of an observation acts the same
    as_dict = {"obs": obs.obs, "state": obs.state, "avail": obs.avail}
    fresh = agent.init(0, num_envs=64)
    a1, _ = agent.act(fresh, obs, 0, mode)
    a2, _ = agent.act(fresh, as_dict, 0, mode)
    np.testing.assert_array_equal(a1, a2)


def test_epsilon_schedule_is_linear_in_env_steps_then_flat():
    assert float(linear_epsilon(0, 1.0, 0.05, 1000)) == pytest.approx(1.0)
    assert float(linear_epsilon(500, 1.0, 0.05, 1000)) == pytest.approx(0.525)
    assert float(linear_epsilon(1000, 1.0, 0.05, 1000)) == pytest.approx(0.05)
    assert float(linear_epsilon(10**7, 1.0, 0.05, 1000)) == pytest.approx(0.05)
    assert float(linear_epsilon(0, 1.0, 0.05, 0)) == pytest.approx(0.05)
    # in explore mode: all-random at step 0, greedy once epsilon reached 0
    agent = make_agent(VDN, epsilon_finish=0.0, epsilon_decay_steps=1000)
    state = agent.init(0, num_envs=512)
    obs = random_obs(jax.random.PRNGKey(9), (512,))
    obs = obs._replace(avail=jnp.ones_like(obs.avail))
    greedy, _ = agent.act(state, obs, 0, "greedy")
    late, _ = agent.act(state, obs, 5000, "explore")
    np.testing.assert_array_equal(late, greedy)
    early, _ = agent.act(state, obs, 0, "explore")
    # environment i acts at env step i, with epsilon 1 - i / 1000; a random action matches the
    # greedy one w.p. 1/4
    eps = 1.0 - np.arange(512) / 1000
    expected = np.mean(1.0 - eps * (1 - 1 / NA))
    assert np.mean(early == greedy) == pytest.approx(expected, abs=0.04)


def test_compiles_once_and_the_acting_memory_is_the_gru_state():
    agent = make_agent(QMIX)
    state = agent.init(0, num_envs=2)
    assert state.memory.shape == (2, A, H) and not np.any(np.asarray(state.memory))
    terminated = [False, True, False]
    obs, actions, rewards, nxt = window(jax.random.PRNGKey(2), terminated, [False] * 3)
    batch = sequence_batch(obs, actions, rewards, [terminated], [[False] * 3], nxt)
    for step in range(3):
        state, _, _ = agent.update(state, batch)
        _, state = agent.act(state, random_obs(jax.random.PRNGKey(step), (2,)), step, "explore")
    assert agent.trace_counts == {"update": 1, "act": 1}
    assert np.any(np.asarray(state.memory))
    state = agent.begin_episodes(state, np.array([True, False]))
    assert not np.any(np.asarray(state.memory[0])) and np.any(np.asarray(state.memory[1]))


@pytest.mark.parametrize("cls", [VDN, QMIX])
def test_init_and_update_vmap_over_seeds(cls):
    agent = make_agent(cls)
    states = jax.vmap(lambda seed: agent.init(seed))(jnp.arange(2))
    terminated = [False, False, True]
    obs, actions, rewards, nxt = window(jax.random.PRNGKey(8), terminated, [False] * 3)
    batch = sequence_batch(obs, actions, rewards, [terminated], [[False] * 3], nxt)
    _, metrics, td_abs = jax.jit(jax.vmap(agent.update_fn, in_axes=(0, None)))(states, batch)
    assert metrics["loss"].shape == (2,) and td_abs.shape == (2, 1)
    assert bool(jnp.all(metrics["finite"]))
    # different seeds, different networks, different losses
    assert float(metrics["loss"][0]) != float(metrics["loss"][1])
    _, m0, _ = agent.update(agent.init(0), batch)
    assert float(m0["loss"]) == pytest.approx(float(metrics["loss"][0]), rel=1e-5)


def test_qmix_is_the_same_learner_with_the_qmix_mixer():
    assert QMIXConfig().mixer == "qmix" and ValueDecompositionConfig().mixer == "sum"
    fields = {f.name: f.default for f in dataclasses.fields(QMIXConfig)}
    base = {f.name: f.default for f in dataclasses.fields(ValueDecompositionConfig)}
    assert {k for k in base if base[k] != fields[k]} == {"mixer"}
    assert QMIX.__mro__[1] is VDN.__mro__[1]  # no method of the learner is overridden
    assert set(QMIX.__dict__) - {"__doc__", "__module__", "__qualname__"} <= {"name", "Config"}


# ----------------------------------------------------------------------- the two-step game

TWO_STEP_EPISODES = 1024  # uniformly random episodes of 2 steps


def two_step_windows(key: jax.Array):
    """Uniformly random play (epsilon 1, as the paper) of the two-step game: one L=2 window per
    episode, [episodes, 2, ...]. Episodes always last 2 steps, so windows align with them."""
    env = make_marl_env("factorl:two-step-game")
    spec = env.spec
    num_envs, per_env = 64, TWO_STEP_EPISODES // 64

    def gather(key):
        env_state, obs = jax.vmap(env.reset)(jax.random.split(key, num_envs))

        def step(carry, k):
            env_state, obs = carry
            k_act, k_env = jax.random.split(k)
            actions = jax.random.randint(k_act, (num_envs, spec.num_agents), 0, spec.num_actions)
            env_state, ts = jax.vmap(env.step)(
                jax.random.split(k_env, num_envs), env_state, actions
            )
            out = (obs, actions, ts.reward, ts.terminated, ts.truncated, ts.next_final)
            return (env_state, ts.obs), out

        _, out = jax.lax.scan(step, (env_state, obs), jax.random.split(key, 2 * per_env))

        def to_windows(x):  # [2E, N, ...] -> [N * E, 2, ...]
            x = jnp.swapaxes(x, 0, 1)
            return x.reshape(num_envs * per_env, 2, *x.shape[2:])

        return jax.tree_util.tree_map(to_windows, out)

    obs, actions, reward, terminated, truncated, nxt = jax.jit(gather)(key)
    assert bool(jnp.all(terminated[:, 1])) and not bool(jnp.any(terminated[:, 0]))
    return env, sequence_batch(obs, actions, reward, terminated, truncated, nxt)


def two_step_trainer(cls, num_windows: int, updates: int = 1500, batch_size: int = 64):
    """The agent and one jitted training run (uniform minibatches of the windows); the same
    function serves every seed, so it compiles once per algorithm."""
    obs_space, action_space = marl_spaces(make_marl_env("factorl:two-step-game").spec)
    config = dataclasses.replace(cls.Config(), hidden_size=32, gamma=0.99, target_update_period=50)
    agent = cls(config, obs_space, action_space)

    @jax.jit
    def train(state, data, key):
        def one(state, k):
            idx = jax.random.randint(k, (batch_size,), 0, num_windows)
            batch = jax.tree_util.tree_map(lambda x: x[idx], data)
            state, metrics, _ = agent.update_fn(state, batch)
            return state, metrics["loss"]

        return jax.lax.scan(one, state, jax.random.split(key, updates))

    return agent, train


def greedy_return(agent, state, env) -> float:
    env_state, obs = env.reset(jax.random.PRNGKey(0))
    state = agent.with_num_envs(state, 1)
    total = 0.0
    for t in range(2):
        batched = jax.tree_util.tree_map(lambda x: x[None], obs)
        actions, state = agent.act(state, batched, t, "greedy")
        env_state, ts = env.step(jax.random.PRNGKey(t), env_state, jnp.asarray(actions[0]))
        total += float(ts.reward)
        obs = ts.obs
    return total


@pytest.mark.slow
def test_two_step_game_qmix_reaches_8_and_vdn_settles_on_7():
    """QMIX paper, section 5: under uniform data VDN's additive fit of stage 2B peaks at 6.5 < 7,
    so it takes 2A (return 7); QMIX's monotonic mixer fits 2B's 8 and takes 2B (return 8)."""
    env, data = two_step_windows(jax.random.PRNGKey(0))
    returns = {}
    for cls in (VDN, QMIX):
        agent, train = two_step_trainer(cls, data.reward.shape[0])
        for seed in range(3):
            state, losses = train(agent.init(seed), data, jax.random.PRNGKey(1000 + seed))
            assert np.isfinite(np.asarray(losses)).all()
            returns[cls.name, seed] = greedy_return(agent, state, env)
    assert all(returns["vdn", s] == 7.0 for s in range(3)), returns
    assert all(returns["qmix", s] == 8.0 for s in range(3)), returns
