"""The contract every registered algorithm keeps on the shared loop, tested over all of them.

A new algorithm is covered by adding a tiny configuration to VARIANTS (a test fails until it is
there): determinism, a different seed giving other numbers, exact resume from the middle of an
episode, one compilation of `update` and of each acting mode, the non-finite guard, value losses
that are means over the batch with a |TD| per sample, and several environments: batched acting
equal to each environment acting alone, acting memory reset per environment, and exact resume
of environments whose episodes end at different steps.
"""

import inspect

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import (
    TINY_DECQN,
    learner_steps,
    leaves,
    moved_off_start,
    records,
    same_leaves,
    tiny_config,
)

from factorl.agents import ALGORITHMS
from factorl.agents.value_decomposition import sequence_batch
from factorl.core.agent import TrainBatch
from factorl.core.config import ConfigError
from factorl.envs.host import make_env
from factorl.envs.marl import MultiAgentObs, make_marl_env
from factorl.runners.device import agent_for_jax_env
from factorl.runners.host import build_agent
from factorl.train import evaluate, load_agent, make_config, train

#: small sizes shared by the tiny runs below: Pendulum learns nothing in 600 steps, but every
#: path of the loop (random warm-up, learning, evaluation, checkpoints) runs
_SMALL = {"agent.width": 32, "agent.learning_starts": 100, "replay.batch_size": 32,
          "replay.capacity": 5000}  # fmt: skip
_MARL = {"env.id": "factorl:two-step-game", "agent.hidden_size": 16, "agent.sequence_length": 2,
         "agent.learning_starts": 64, "agent.update_every": 4, "agent.epsilon_decay_steps": 300,
         "replay.batch_size": 16, "replay.capacity": 1000}  # fmt: skip
#: variant name -> (algorithm, its tiny settings); each algorithm's main options get a variant
VARIANTS = {
    "decqn": ("decqn", TINY_DECQN),
    "revalued": ("revalued", {**_SMALL, "agent.ensemble_size": 3, "agent.random_steps": 100,
                              "agent.update_every": 2, "agent.epsilon_decay": 0.99}),
    # redq draws its members from the state's key and learner step: resume must reproduce them
    "revalued-redq": ("revalued", {**_SMALL, "agent.ensemble_size": 3,
                                   "agent.random_steps": 100, "agent.update_every": 2,
                                   "agent.target": "redq"}),
    "cqn": ("cqn", {**_SMALL, "agent.random_steps": 100, "agent.update_every": 2,
                    "agent.target_update_period": 20}),
    "cqn-c51-dueling": ("cqn", {**_SMALL, "agent.random_steps": 100, "agent.update_every": 2,
                                "agent.distributional": True, "agent.dueling": True,
                                "agent.v_min": -200.0, "agent.v_max": 0.0}),
    # CQN-AS keeps the sequences it is executing in its state: resume mid-episode restores them
    "cqn_as-ensemble": ("cqn_as", {**_SMALL, "agent.width": 16, "replay.batch_size": 16,
                                   "agent.random_steps": 100, "agent.horizon": 3,
                                   "agent.execution": "ensemble"}),
    "cqn_as-replan": ("cqn_as", {**_SMALL, "agent.width": 16, "replay.batch_size": 16,
                                 "agent.random_steps": 100, "agent.horizon": 3,
                                 "agent.execution": "replan"}),
    "sac": ("sac", {**_SMALL, "agent.random_steps": 50}),
    "sac-bernoulli": ("sac", {**_SMALL, "agent.random_steps": 50, "agent.policy": "bernoulli"}),
    "td3": ("td3", {**_SMALL, "agent.random_steps": 50}),
    "arsq": ("arsq", {**_SMALL, "agent.depth": 1, "agent.levels": 2, "agent.bins": 3,
                      "agent.random_steps": 100, "agent.update_every": 2}),
    # the RLBench torso and acting with the target critics
    "arsq-layernorm-target": ("arsq", {**_SMALL, "agent.depth": 1, "agent.levels": 2,
                                       "agent.bins": 3, "agent.random_steps": 100,
                                       "agent.update_every": 2, "agent.network": "layernorm",
                                       "agent.act_network": "target"}),
    # multi-agent: the QMIX paper's two-step game on the device runner (2-step episodes)
    "vdn": ("vdn", _MARL),
    "qmix": ("qmix", _MARL),
    # ... and PettingZoo's simple spread (25-step episodes) on the host runner
    "vdn-pettingzoo": ("vdn", {**_MARL, "env.id": "pettingzoo:mpe2.simple_spread_v3",
                               "env.num_envs": 2}),
    "qmix-pettingzoo": ("qmix", {**_MARL, "env.id": "pettingzoo:mpe2.simple_spread_v3"}),
}  # fmt: skip
#: the single-agent variants, on Pendulum; the multi-agent ones name their environment
SINGLE_AGENT_VARIANTS = [v for v, (_, s) in VARIANTS.items() if "env.id" not in s]
MARL_VARIANTS = [v for v in VARIANTS if v not in SINGLE_AGENT_VARIANTS]
#: the variants the device runner trains (JAX-native environments)
DEVICE_VARIANTS = [v for v in MARL_VARIANTS if not v.endswith("-pettingzoo")]


#: the variants the costlier tests over several environments and the device runner take: every
#: algorithm once, and both of CQN-AS's acting memories
PER_ALGORITHM = ["decqn", "revalued", "cqn", "cqn_as-ensemble", "cqn_as-replan", "sac", "td3",
                 "vdn", "qmix", "arsq"]  # fmt: skip
SINGLE_AGENT_PER_ALGORITHM = [v for v in PER_ALGORITHM if v in SINGLE_AGENT_VARIANTS]


def _tiny(run_dir, variant, steps=600, overrides=None):
    algo, settings = VARIANTS[variant]
    return tiny_config(run_dir, algo, steps, {**settings, **(overrides or {})})


def test_every_registered_algorithm_has_a_contract_variant():
    assert {algo for algo, _ in VARIANTS.values()} == set(ALGORITHMS)
    assert {VARIANTS[v][0] for v in PER_ALGORITHM} == set(ALGORITHMS)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_deterministic_exact_resume_and_compile_once(tmp_path, variant):
    straight = train(_tiny(tmp_path / "straight", variant))
    assert (learner_steps(straight.state) > 0).all() and np.isfinite(straight.last_eval_return)
    # one update trace; one act trace per acting mode the run used (random warm-up if any,
    # exploration, greedy evaluation)
    modes = 2 + (straight.agent.random_steps > 0)
    assert straight.agent.trace_counts == {"update": 1, "act": modes}
    # the same seed, stopped at 330 (mid-episode: Pendulum episodes are 200 steps, simple
    # spread's 25; between log, evaluation and checkpoint points) and resumed, reproduces the
    # uninterrupted run bit for bit, records included
    stop = 330
    first = train(_tiny(tmp_path / "split", variant), stop_after=stop)
    assert first.env_step == stop
    resumed = train(_tiny(tmp_path / "split", variant), resume=tmp_path / "split")
    assert resumed.env_step == 600
    assert same_leaves(straight.state, resumed.state)
    assert records(straight.run_dir) == records(tmp_path / "split")
    # another seed gives other numbers
    other = train(_tiny(tmp_path / "other", variant, overrides={"run.seed": 1}), stop_after=stop)
    assert not same_leaves(other.state, first.state)


@pytest.mark.parametrize("variant", SINGLE_AGENT_VARIANTS)
def test_a_non_finite_update_is_flagged_and_leaves_its_input_state_intact(variant):
    algo, settings = VARIANTS[variant]
    cfg = make_config(algo, {**settings, "replay.batch_size": 8})
    env = gym.make("Pendulum-v1")
    agent = build_agent(cfg, env)
    replay = agent.make_replay(env.observation_space.shape)
    obs, _ = env.reset(seed=0)
    for _ in range(20):
        action = env.action_space.sample()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        replay.add(
            obs, action.reshape(replay.action_shape), reward, next_obs, terminated, truncated
        )
        obs = next_obs
    env.close()
    b = replay.sample(8, np.random.default_rng(0))
    reward = np.full_like(b.reward, np.nan)
    state = agent.init(0)
    before = [x.copy() for x in leaves(state)]
    _, metrics, _ = agent.update(
        state, TrainBatch(b.obs, b.action, reward, b.discount, b.next_obs, b.weights)
    )
    assert not bool(metrics["finite"])
    # the input state is still readable and unchanged (no buffer donation)
    assert same_leaves(before, state)


def _agent(variant: str):
    algo, settings = VARIANTS[variant]
    return build_agent(make_config(algo, settings), gym.make("Pendulum-v1"))


@pytest.mark.parametrize("variant", SINGLE_AGENT_PER_ALGORITHM)
def test_batched_acting_is_each_environment_acting_alone_with_its_own_memory(variant):
    agent = _agent(variant)
    obs = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    for mode in ("random", "explore", "greedy"):
        together, after = agent.act(agent.init(0, num_envs=4), obs, 100, mode)
        assert together.shape == (4, 1) and agent.num_envs(after) == 4
        for i in range(4):
            # environment i of a step that starts at env step 100 acts as step 100 + i
            alone, alone_after = agent.act(agent.init(0), obs[i : i + 1], 100 + i, mode)
            np.testing.assert_allclose(together[i], alone[0], rtol=1e-5, atol=1e-6)
            memory_i = [x[i] for x in leaves(after.memory)]
            for x, y in zip(memory_i, leaves(alone_after.memory), strict=True):
                np.testing.assert_allclose(x, y[0], rtol=1e-5, atol=1e-6)
    # an episode start resets its environment's episodic acting memory and no other's
    state = agent.init(0, num_envs=4)
    for step in range(3):
        _, state = agent.act(state, obs, 4 * step, "explore")
    # every value moved off its start, so that a reset (or none) shows even in a memory that
    # acting leaves as it was (a placeholder)
    state = state.replace(memory=jax.tree_util.tree_map(_moved, state.memory))
    starting = np.array([True, False, True, False])
    before, after = leaves(state.memory), leaves(agent.begin_episodes(state, starting).memory)
    # run-long memory (REValueD's epsilon) outlives episodes
    expected = leaves(agent.initial_memory(4)) if agent.episodic_memory else before
    for old, new, fresh in zip(before, after, expected, strict=True):
        np.testing.assert_array_equal(new[starting], fresh[starting])
        np.testing.assert_array_equal(new[~starting], old[~starting])


#: the value learners whose loss takes a TrainBatch of single actions (CQN-AS shares CQN's)
_VALUE_LOSS_VARIANTS = ["decqn", "revalued", "revalued-redq", "cqn", "cqn-c51-dueling", "arsq"]


@pytest.mark.parametrize("variant", _VALUE_LOSS_VARIANTS)
def test_a_value_loss_is_a_mean_over_the_batch_with_a_td_error_per_sample(variant):
    """The loss of samples a and b together is the mean of their losses alone (a batch of one
    cannot tell a mean from a sum), and |TD| (the priorities) is each sample's own."""
    agent = _agent(variant)
    state = agent.init(0)
    # every parameter moved off its start (zero output layers would make every loss alike)
    params, target = moved_off_start(state.params), moved_off_start(state.target_params, 1.0)
    rng = np.random.default_rng(0)
    batch = TrainBatch(
        obs=rng.normal(size=(2, 3)).astype(np.float32),
        action=rng.uniform(-2, 2, size=(2, 1)).astype(np.float32),
        reward=np.array([-1.0, -7.0], np.float32),
        discount=np.array([0.99, 0.0], np.float32),
        next_obs=rng.normal(size=(2, 3)).astype(np.float32),
        weights=np.ones(2, np.float32),
    )
    keyed = "key" in inspect.signature(agent.loss).parameters  # a key for random ties, members

    def loss(batch):
        return agent.loss(params, target, batch, *([jax.random.PRNGKey(3)] if keyed else []))

    both, aux = loss(batch)
    alone = [loss(jax.tree_util.tree_map(lambda x, i=i: x[i : i + 1], batch)) for i in range(2)]
    assert abs(float(alone[0][0]) - float(alone[1][0])) > 1e-3  # the samples differ
    np.testing.assert_allclose(both, (alone[0][0] + alone[1][0]) / 2, rtol=1e-5)
    td = np.concatenate([np.asarray(a[1]["td_abs"]) for a in alone])
    np.testing.assert_allclose(aux["td_abs"], td, rtol=1e-5)


def _moved(x):
    """x with every entry changed: negated if boolean, else plus one."""
    x = jnp.asarray(x)
    return ~x if x.dtype == bool else x + 1


@pytest.mark.parametrize("variant", SINGLE_AGENT_PER_ALGORITHM)
def test_several_environments_resume_exactly_with_ragged_episodes(tmp_path, variant):
    # three environments whose episodes end at different steps, terminated or truncated; the run
    # stops with every environment mid-episode and resumes bit for bit
    ragged = {"env.id": "gym:FactorlTestRagged-v0", "env.num_envs": 3}
    straight = train(_tiny(tmp_path / "straight", variant, steps=300, overrides=ragged))
    assert straight.env_step == 300 and int(straight.state.learner_step) > 0
    modes = 2 + (straight.agent.random_steps > 0)
    assert straight.agent.trace_counts == {"update": 1, "act": modes}
    first = train(_tiny(tmp_path / "split", variant, steps=300, overrides=ragged), stop_after=162)
    assert first.env_step == 162
    resumed = train(
        _tiny(tmp_path / "split", variant, steps=300, overrides=ragged), resume=tmp_path / "split"
    )
    assert same_leaves(straight.state, resumed.state)
    assert records(straight.run_dir) == records(tmp_path / "split")
    episodes = [r for r in records(straight.run_dir) if r["event"] == "episode"]
    assert {r["env"] for r in episodes} == {0, 1, 2}
    indices = [r["episode"] for r in episodes]
    assert len(set(indices)) == len(indices) and max(indices) < len(indices) + 3
    assert len({r["episode_length"] for r in episodes}) > 3  # the episodes were ragged


# ----------------------------------------------------------------------- multi-agent algorithms


def _marl_agent(variant: str, overrides=None):
    algo, settings = VARIANTS[variant]
    cfg = make_config(algo, {**settings, **(overrides or {})})
    return agent_for_jax_env(cfg, make_marl_env(cfg.env.id))


def _two_step_observations(num_envs: int) -> MultiAgentObs:
    """Observations of `num_envs` two-step games at stages 0, 1, 2, 0, ... (the state differs)."""
    env = make_marl_env("factorl:two-step-game")
    keys = jax.random.split(jax.random.PRNGKey(0), num_envs)
    state, obs = jax.vmap(env.reset)(keys)
    # move every other environment one step on, so the observations differ
    _, moved = jax.vmap(env.step)(keys, state, jnp.ones((num_envs, 2), jnp.int32))[:2]
    pick = jnp.arange(num_envs) % 2 == 1
    return jax.tree_util.tree_map(
        lambda a, b: jnp.where(pick.reshape((-1,) + (1,) * (a.ndim - 1)), b, a), obs, moved.obs
    )


@pytest.mark.parametrize("variant", DEVICE_VARIANTS)
def test_multi_agent_non_finite_update_is_flagged_and_leaves_its_input_state_intact(variant):
    agent = _marl_agent(variant)
    obs = _two_step_observations(8)
    B, L = 4, 2
    windows = jax.tree_util.tree_map(lambda x: x.reshape((B, L, *x.shape[1:])), obs)
    actions = jnp.zeros((B, L, agent.num_agents))
    ends = jnp.zeros((B, L), bool)
    batch = sequence_batch(windows, actions, jnp.full((B, L), jnp.nan), ends, ends, windows)
    state = agent.init(0)
    before = [x.copy() for x in leaves(state)]
    _, metrics, _ = agent.update(state, batch)
    assert not bool(metrics["finite"])
    assert same_leaves(before, state)
    _, metrics, _ = agent.update(state, batch._replace(reward=jnp.zeros((B, L))))
    assert bool(metrics["finite"])


@pytest.mark.parametrize("variant", DEVICE_VARIANTS)
def test_multi_agent_batched_acting_is_each_environment_acting_alone_with_its_own_memory(variant):
    agent = _marl_agent(variant)
    obs = _two_step_observations(4)

    def env(i):
        return jax.tree_util.tree_map(lambda x: x[i : i + 1], obs)

    for mode in ("random", "explore", "greedy"):
        together, after = agent.act(agent.init(0, num_envs=4), obs, 100, mode)
        assert together.shape == (4, agent.num_agents) and agent.num_envs(after) == 4
        for i in range(4):
            alone, alone_after = agent.act(agent.init(0), env(i), 100 + i, mode)
            np.testing.assert_array_equal(together[i], alone[0])
            np.testing.assert_allclose(after.memory[i], alone_after.memory[0], rtol=1e-5, atol=1e-6)
    # the GRU hidden state of an environment whose episode starts is zeros, the others' kept
    state = agent.init(0, num_envs=4)
    for step in range(3):
        _, state = agent.act(state, obs, 4 * step, "explore")
    starting = np.array([True, False, True, False])
    before, after = (
        np.asarray(state.memory),
        np.asarray(agent.begin_episodes(state, starting).memory),
    )
    assert np.abs(before).sum() > 0
    np.testing.assert_array_equal(after[starting], 0.0)
    np.testing.assert_array_equal(after[~starting], before[~starting])


def test_multi_agent_host_runs_evaluate_and_mismatched_algorithms_are_one_line_errors(tmp_path):
    cfg = _tiny(tmp_path / "run", "qmix-pettingzoo", steps=100)
    train(cfg)
    report = evaluate(tmp_path / "run", episodes=2)
    assert len(report["returns"]) == 2 and report["finite"]
    assert all(r < 0 for r in report["returns"])  # simple spread's rewards are distances
    policy = load_agent(tmp_path / "run")
    policy.reset()
    env = make_env("pettingzoo:mpe2.simple_spread_v3", seed=0)
    action = policy(env.reset()[0])
    assert action.shape == (3,) and env.action_space.contains(action.astype(np.int64))
    spread = {"env.id": "pettingzoo:mpe2.simple_spread_v3", "run.dir": str(tmp_path / "a")}
    with pytest.raises(ConfigError, match="a multi-agent environment; train a multi-agent"):
        train(make_config("decqn", spread))
    with pytest.raises(ConfigError, match="a single-agent environment"):
        train(make_config("vdn", {"env.id": "gym:Pendulum-v1", "run.dir": str(tmp_path / "b")}))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
