"""CQN-AS: sequence critic, temporal ensembling, re-planning, and the agent in the loop."""

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import by_params, in_section

from factorl.agents.cqn_as import CQNAS, CQNASConfig, SequenceCritic, ensemble_weights
from factorl.core.agent import TrainBatch
from factorl.core.config import ConfigError
from factorl.train import make_config, train

LN2 = float(np.log(2.0))


def test_ensemble_weights_hand_worked():
    full = jnp.array([True, True, True])
    np.testing.assert_allclose(ensemble_weights(full, LN2, "newest"), np.array([4, 2, 1]) / 7, 1e-6)
    np.testing.assert_allclose(ensemble_weights(full, LN2, "oldest"), np.array([1, 2, 4]) / 7, 1e-6)
    # early in an episode only the last two predictions exist
    part = jnp.array([True, True, False])
    np.testing.assert_allclose(ensemble_weights(part, LN2, "newest"), [2 / 3, 1 / 3, 0], 1e-6)
    np.testing.assert_allclose(ensemble_weights(part, LN2, "oldest"), [1 / 3, 2 / 3, 0], 1e-6)


def _agent(**kw):
    obs = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    act = gym.spaces.Box(np.array([-10.0, -10.0], np.float32), np.array([100.0, 100.0], np.float32))
    return CQNAS(CQNASConfig(width=8, horizon=3, **kw), obs, act)


def _with_fake_predictions(agent):
    """Sequence predicted at time t (carried in obs[0]): step k proposes 10 t + k; at t = 0 the
    whole sequence is exactly 0.0 for step 0, a valid grid value that must not be dropped."""
    agent._predict = lambda params, obs, key, mode: jnp.broadcast_to(
        (10.0 * obs[0] + jnp.arange(3.0))[:, None], (3, 2)
    )
    return agent


def _run(agent, steps, reset_at=()):
    state = agent.init(0)
    actions = []
    for t in range(steps):
        if t in reset_at:
            state = agent.begin_episodes(state)
        action, state = agent.act(state, np.array([[t, 0.0]], np.float32), t, "greedy")
        actions.append(float(action[0, 0]))
    return actions


def test_temporal_ensembling_averages_overlapping_predictions():
    agent = _with_fake_predictions(_agent(ensemble_decay=LN2, ensemble_weighting="newest"))
    actions = _run(agent, 4)
    # t=0: only the prediction made now (its step 0 is exactly 0.0, and it counts)
    assert actions[0] == pytest.approx(0.0)
    # t=1: now (10) weight 1, made 1 step ago proposing its step 1 (0 + 1) weight 1/2
    assert actions[1] == pytest.approx((10 * 1 + 1 * 0.5) / 1.5)
    # t=3: made now (30), 1 ago (20 + 1), 2 ago (10 + 2): weights 4, 2, 1
    assert actions[3] == pytest.approx((30 * 4 + 21 * 2 + 12 * 1) / 7)
    official = _with_fake_predictions(_agent(ensemble_decay=LN2, ensemble_weighting="oldest"))
    assert _run(official, 4)[3] == pytest.approx((30 * 1 + 21 * 2 + 12 * 4) / 7)


def test_an_exact_zero_proposal_is_averaged_in_with_the_others():
    """The official code treats 0.0 as "no prediction"; here it is a grid value like any other."""
    agent = _agent(ensemble_decay=LN2, ensemble_weighting="newest")
    # the sequence predicted at t proposes 10 t + k - 1 for its step k: at t = 1 the prediction
    # made at t = 0 proposes exactly 0.0 (its step 1) beside the new one's 9
    agent._predict = lambda params, obs, key, mode: jnp.broadcast_to(
        (10.0 * obs[0] + jnp.arange(3.0) - 1.0)[:, None], (3, 2)
    )
    actions = _run(agent, 2)
    assert actions[1] == pytest.approx((9 * 1 + 0.0 * 0.5) / 1.5)  # 6, not 9


def test_episode_start_forgets_old_predictions():
    agent = _with_fake_predictions(_agent(ensemble_decay=LN2))
    actions = _run(agent, 4, reset_at=(2,))
    assert actions[2] == pytest.approx(20.0)  # only the prediction made at the reset
    assert actions[3] == pytest.approx((30 * 2 + 21 * 1) / 3)


def test_replan_executes_each_sequence_open_loop():
    agent = _with_fake_predictions(_agent(execution="replan"))
    # sequences predicted at t = 0 and t = 3 are executed whole
    assert _run(agent, 6) == pytest.approx([0.0, 1.0, 2.0, 30.0, 31.0, 32.0])
    assert _run(agent, 4, reset_at=(2,)) == pytest.approx([0.0, 1.0, 20.0, 21.0])


def test_sequence_critic_is_causal_across_steps():
    net = SequenceCritic(num_dims=2, bins=3, horizon=3, width=16)
    obs, level = jnp.ones((1, 5)), jnp.array([[1.0, 0.0]])
    centres = jnp.zeros((1, 3, 2))
    params = net.init(jax.random.PRNGKey(0), obs, centres, level)
    # give the zero-initialised head random weights so outputs depend on the input
    head = params["params"]["head"]
    params["params"]["head"]["kernel"] = jax.random.normal(
        jax.random.PRNGKey(1), head["kernel"].shape
    )
    base = net.apply(params, obs, centres, level)
    assert base.shape == (1, 3, 2, 3)
    changed = net.apply(params, obs, centres.at[:, 0].set(0.7), level)  # change step 0 only
    assert not np.allclose(base[:, 2], changed[:, 2])  # later steps see earlier steps (GRU)
    changed_last = net.apply(params, obs, centres.at[:, 2].set(0.7), level)
    np.testing.assert_allclose(base[:, :2], changed_last[:, :2])  # earlier steps do not see later


def test_target_and_loss_are_per_level_step_and_dimension():
    """L = 2 levels, K = 3 steps, M = 2 dimensions, B = 3 bins: every utility on its own."""
    agent = _agent(levels=2, bins=3)  # horizon 3
    fact = agent.factorisation
    idx = np.array([[[0, 1], [2, 2]], [[1, 0], [0, 1]], [[2, 2], [1, 0]]])  # [K, L, M]
    action = fact.decode(jnp.asarray(idx))[None]  # [1, K, M]
    path = np.asarray(agent.encode_path(action))[0]  # the loss's layout: [L, K, M]
    np.testing.assert_array_equal(path, idx.transpose(1, 0, 2))
    # the centres each level of each step sees are that step's own zoom path
    centres = np.asarray(agent.path_centres(jnp.asarray(path)[None]))[0]
    for k in range(3):
        np.testing.assert_allclose(centres[:, k], np.asarray(fact.path_centres(idx[k])), 1e-6)

    out = jnp.arange(36.0).reshape(1, 2, 3, 2, 3)  # [batch, L, K, M, B]
    next_out = 100.0 + out
    next_path = jnp.asarray(np.array([[[2, 0], [1, 1], [0, 2]], [[1, 1], [2, 0], [0, 0]]]))[None]
    agent.all_levels = by_params(out, next_out)
    agent.greedy_path = lambda params, obs, key=None: next_path
    batch = TrainBatch(jnp.zeros((1, 2)), action, jnp.array([2.0]), jnp.array([0.25]),
                       jnp.zeros((1, 2)), jnp.ones(1))  # fmt: skip
    loss, _ = agent.loss(jnp.array(0.0), jnp.array(1.0), batch, jax.random.PRNGKey(0))
    flat = np.arange(36.0).reshape(2, 3, 2, 3)
    q = np.take_along_axis(flat, path[..., None], -1)[..., 0]
    y = 2.0 + 0.25 * (
        100.0 + np.take_along_axis(flat, np.asarray(next_path)[0, ..., None], -1)[..., 0]
    )
    assert float(loss) == pytest.approx(np.mean((y - q) ** 2), rel=1e-6)


def test_official_step_mlp_is_two_bias_free_layers():
    net = SequenceCritic(num_dims=2, bins=3, horizon=3, width=16, step_mlp="official")
    obs, level, centres = jnp.ones((1, 5)), jnp.array([[1.0, 0.0]]), jnp.zeros((1, 3, 2))
    params = net.init(jax.random.PRNGKey(0), obs, centres, level)["params"]
    assert set(params["embed"]) == set(params["embed_1"]) == {"kernel"}  # no biases
    assert params["embed"]["kernel"].shape == (5 + 2 + 3 + 2, 16)
    assert params["embed_1"]["kernel"].shape == (16, 16) and "norm_1" in params
    assert net.apply({"params": params}, obs, centres, level).shape == (1, 3, 2, 3)
    ours = SequenceCritic(num_dims=2, bins=3, horizon=3, width=16)
    assert "embed_1" not in ours.init(jax.random.PRNGKey(0), obs, centres, level)["params"]


@pytest.mark.parametrize("execution", ["ensemble", "replan"])
def test_official_exploration_adds_noise_to_the_executed_action_only(execution):
    # greedy sequences (the memory holds what greedy acting would hold), then N(0, action_noise)
    # in half ranges (55 here) on the executed action, not re-quantised
    agent = _agent(exploration="official", action_noise=0.01, execution=execution)
    state = agent.init(0)
    obs = np.array([[0.3, -0.2]], np.float32)
    greedy, greedy_state = agent.act(state, obs, 5, "greedy")
    explore, explore_state = agent.act(state, obs, 5, "explore")
    for a, b in zip(
        jax.tree_util.tree_leaves(greedy_state.memory),
        jax.tree_util.tree_leaves(explore_state.memory),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    noise = np.asarray(explore) - np.asarray(greedy)
    assert np.all(noise != 0) and np.all(np.abs(noise) < 5 * 0.01 * 55)
    grid = np.asarray(agent.factorisation.quantise(jnp.asarray(explore)))
    assert not np.allclose(grid, explore)  # off the grid: not re-quantised
    quiet = _agent(exploration="official", action_noise=0.0, execution=execution)
    quiet_state = quiet.init(0)
    np.testing.assert_array_equal(
        quiet.act(quiet_state, obs, 5, "explore")[0], quiet.act(quiet_state, obs, 5, "greedy")[0]
    )


def test_distributional_is_refused():
    with pytest.raises(ConfigError, match="distributional"):
        make_config("cqn_as", {"agent.distributional": True})


def test_dueling_is_refused():
    with pytest.raises(ConfigError, match="dueling"):
        make_config("cqn_as", {"agent.dueling": True})


def _cfg(run_dir, steps=400, **agent):
    values = {"width": 16, "random_steps": 100, "learning_starts": 100,
              "target_update_period": 20, "horizon": 3, **agent}  # fmt: skip
    return make_config(
        "cqn_as",
        {"env.id": "gym:Pendulum-v1", "run.steps": steps, "runner.eval_every": 200,
         "runner.eval_episodes": 1, "runner.log_every": 100, "run.progress": "none",
         "run.tensorboard": False, "run.dir": str(run_dir), "replay.batch_size": 16,
         "replay.capacity": 5000, **in_section("agent", values)},
    )  # fmt: skip


@pytest.mark.parametrize("execution", ["ensemble", "replan"])
def test_a_sequence_of_one_action_trains(tmp_path, execution):
    """K = 1 is allowed: replay returns single actions and the agent restores the step axis."""
    result = train(_cfg(tmp_path / "run", steps=250, horizon=1, execution=execution))
    assert result.agent.factorisation.index_shape == (1, 3, 1)  # K, L, M on Pendulum
    assert int(result.state.learner_step) > 0 and np.isfinite(result.last_eval_return)
