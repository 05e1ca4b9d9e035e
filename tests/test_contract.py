"""The contract every registered algorithm keeps on the shared loop, tested over all of them.

A new algorithm is covered by adding a tiny configuration to VARIANTS (a test fails until it is
there): determinism, a different seed giving other numbers, exact resume from the middle of an
episode, one compilation of `update` and of each acting mode, and the non-finite guard.
"""

import gymnasium as gym
import numpy as np
import pytest
from conftest import TINY_AGENT, leaves, records, same_leaves, tiny_config

from factorl.agents import ALGORITHMS
from factorl.agents.base import TrainBatch
from factorl.train import build_agent, make_config, train

#: small sizes shared by the tiny runs below: Pendulum learns nothing in 600 steps, but every
#: path of the loop (random warm-up, learning, evaluation, checkpoints) runs
_SMALL = {"width": 32, "batch_size": 32, "learning_starts": 100, "replay_capacity": 5000}
#: variant name -> (algorithm, its tiny options); each algorithm's main options get a variant
VARIANTS = {
    "decqn": ("decqn", TINY_AGENT),
    "revalued": ("revalued", {**_SMALL, "ensemble_size": 3, "random_steps": 100,
                              "update_every": 2, "epsilon_decay": 0.99}),
    # redq draws its members from the state's key and learner step: resume must reproduce them
    "revalued-redq": ("revalued", {**_SMALL, "ensemble_size": 3, "random_steps": 100,
                                   "update_every": 2, "target": "redq"}),
    "cqn": ("cqn", {**_SMALL, "random_steps": 100, "update_every": 2,
                    "target_update_period": 20}),
    "cqn-c51-dueling": ("cqn", {**_SMALL, "random_steps": 100, "update_every": 2,
                                "distributional": True, "dueling": True, "v_min": -200.0,
                                "v_max": 0.0}),
    # CQN-AS keeps the sequences it is executing in its state: resume mid-episode restores them
    "cqn_as-ensemble": ("cqn_as", {**_SMALL, "width": 16, "batch_size": 16, "random_steps": 100,
                                   "horizon": 3, "execution": "ensemble"}),
    "cqn_as-replan": ("cqn_as", {**_SMALL, "width": 16, "batch_size": 16, "random_steps": 100,
                                 "horizon": 3, "execution": "replan"}),
    "sac": ("sac", {**_SMALL, "random_steps": 50}),
    "sac-bernoulli": ("sac", {**_SMALL, "random_steps": 50, "policy": "bernoulli"}),
    "td3": ("td3", {**_SMALL, "random_steps": 50}),
}  # fmt: skip


def _tiny(run_dir, variant, steps=600, **train_values):
    algo, agent = VARIANTS[variant]
    return tiny_config(run_dir, algo, steps, agent=dict(agent), **train_values)


def test_every_registered_algorithm_has_a_contract_variant():
    assert {algo for algo, _ in VARIANTS.values()} == set(ALGORITHMS)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_deterministic_exact_resume_and_compile_once(tmp_path, variant):
    straight = train(_tiny(tmp_path / "straight", variant))
    assert int(straight.state.learner_step) > 0 and np.isfinite(straight.last_eval_return)
    # one update trace; one act trace per acting mode the run used (random warm-up if any,
    # exploration, greedy evaluation)
    modes = 2 + (straight.agent.random_steps > 0)
    assert straight.agent.trace_counts == {"update": 1, "act": modes}
    # the same seed, stopped at 330 (mid-episode: Pendulum episodes are 200 steps; between log
    # points) and resumed, reproduces the uninterrupted run bit for bit
    first = train(_tiny(tmp_path / "split", variant), stop_after=330)
    assert first.env_step == 330
    resumed = train(_tiny(tmp_path / "split", variant), resume=tmp_path / "split")
    assert resumed.env_step == 600
    assert same_leaves(straight.state, resumed.state)
    assert records(straight.run_dir) == records(tmp_path / "split")
    # another seed gives other numbers
    other = train(_tiny(tmp_path / "other", variant, seed=1), stop_after=330)
    assert not same_leaves(other.state, first.state)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_non_finite_update_is_flagged_and_leaves_its_input_state_intact(variant):
    algo, agent_values = VARIANTS[variant]
    cfg = make_config(algo, {}, {**agent_values, "batch_size": 8})
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
