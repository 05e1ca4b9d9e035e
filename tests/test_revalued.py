"""REValueD: ensemble targets, the reconstructed regulariser, exploration, the ensemble itself, and
the agent through the shared training loop (determinism, exact resume, compile-once, learning)."""

import math

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import in_section, tiny_config

from factorl.agents import ALGORITHMS, CONFIGS
from factorl.agents.revalued import (
    REValueD,
    REValueDConfig,
    decayed_epsilon,
    joint_epsilon_greedy,
)
from factorl.core.agent import TrainBatch
from factorl.core.config import ConfigError
from factorl.io.logging import read_metrics
from factorl.maths.mixers import greedy
from factorl.maths.targets import (
    double_q_ensemble_target,
    ensemble_mean_target,
    ensemble_min_target,
    independent_double_q_target,
    sample_members,
    td_weighted_utility_regulariser,
)
from factorl.train import make_config, train

R, DISC = jnp.array([1.0]), jnp.array([0.9])

# ------------------------------------------------------------------------------ targets

# target utilities at s' of K=2 members, batch 1, M=2 dimensions, B=3 bins
MEAN_CASE = jnp.array(
    [
        [[[4.0, 0.0, 0.0], [0.0, 2.0, 0.0]]],  # member 0
        [[[0.0, 0.0, 6.0], [0.0, 2.0, 0.0]]],  # member 1
    ]
)


def test_mean_target_hand_worked():
    # member mean: dim0 [2, 0, 3], dim1 [0, 2, 0]; max per dim: 3, 2; mean over dims: 2.5
    y = ensemble_mean_target(MEAN_CASE, R, DISC)
    assert y.shape == (1,)
    np.testing.assert_allclose(np.asarray(y), [1 + 0.9 * 2.5], rtol=1e-6)
    # averaging members BEFORE the max matters: max-then-mean would give mean(6, 2) = 4
    assert float(y[0]) != pytest.approx(1 + 0.9 * 4.0)
    # termination: the reward alone
    np.testing.assert_allclose(np.asarray(ensemble_mean_target(MEAN_CASE, R, jnp.zeros(1))), [1])


def test_redq_min_target_hand_worked():
    # K=3 members, batch 2, M=2, B=3
    u = jnp.array(
        [
            [[[4.0, 0.0, 0.0], [0.0, 0.0, 0.0]], [[10.0, 0.0, 0.0], [0.0, 0.0, 0.0]]],
            [[[0.0, 1.0, 0.0], [5.0, 0.0, 0.0]], [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]],
            [[[9.0, 9.0, 9.0], [9.0, 9.0, 9.0]], [[9.0, 9.0, 9.0], [9.0, 9.0, 9.0]]],
        ]
    )
    # joint greedy values V^k = mean_j max_b: sample 0: (2, 3, 9); sample 1: (5, 1, 9)
    reward, disc = jnp.array([1.0, 1.0]), jnp.array([0.9, 0.9])
    y = ensemble_min_target(u, jnp.array([0, 1]), reward, disc)
    # min per sample: sample 0 takes member 0 (2), sample 1 takes member 1 (1)
    np.testing.assert_allclose(np.asarray(y), [1 + 0.9 * 2, 1 + 0.9 * 1], rtol=1e-6)
    # the min is on the JOINT value: a per-dimension min would give mean(min(4,1), min(0,5)) = 0.5
    assert float(y[0]) != pytest.approx(1 + 0.9 * 0.5)
    y = ensemble_min_target(u, jnp.array([2, 1]), reward, disc)
    np.testing.assert_allclose(np.asarray(y), [1 + 0.9 * 3, 1 + 0.9 * 1], rtol=1e-6)


def test_sample_members_draws_distinct_pairs_uniformly():
    keys = jax.random.split(jax.random.PRNGKey(0), 6000)
    pairs = np.asarray(jax.vmap(lambda k: sample_members(k, 4, 2))(keys))
    assert pairs.shape == (6000, 2) and pairs.min() >= 0 and pairs.max() < 4
    assert np.all(pairs[:, 0] != pairs[:, 1])
    # each of the 6 unordered pairs about 1/6 of the time
    counts = np.unique(np.sort(pairs, axis=1), axis=0, return_counts=True)[1]
    assert len(counts) == 6 and np.all(np.abs(counts / 6000 - 1 / 6) < 0.025)
    # deterministic in the key
    k = jax.random.PRNGKey(7)
    np.testing.assert_array_equal(sample_members(k, 10, 2), sample_members(k, 10, 2))


def test_independent_double_q_target_hand_worked():
    online = jnp.array(
        [
            [[[1.0, 5.0, 2.0], [0.0, 0.0, 3.0]]],  # member 0: argmax (1, 2)
            [[[9.0, 0.0, 0.0], [1.0, 2.0, 0.0]]],  # member 1: argmax (0, 1)
        ]
    )
    target = jnp.array(
        [
            [[[10.0, 20.0, 30.0], [1.0, 2.0, 3.0]]],
            [[[30.0, 40.0, 50.0], [5.0, 6.0, 7.0]]],
        ]
    )
    y = independent_double_q_target(online, target, R, DISC)
    # each member on its OWN target net: member 0 mean(20, 3) = 11.5, member 1 mean(30, 6) = 18
    np.testing.assert_allclose(np.asarray(y), [[1 + 0.9 * 11.5], [1 + 0.9 * 18.0]], rtol=1e-6)
    # the "decqn_mean" variant evaluates on the target mean [20 30 40 | 3 4 5]: 17.5 and 12
    y_mean = double_q_ensemble_target(online, target, R, DISC)
    np.testing.assert_allclose(np.asarray(y_mean), [[1 + 0.9 * 17.5], [1 + 0.9 * 12.0]], rtol=1e-6)


# ------------------------------------------------------------------------------ regulariser


def test_regulariser_hand_worked_value_and_gradient():
    # one sample, M=2: U = (1, 3), Ubar = (0, 3.5), y = 1
    # delta = y - U = (0, -2) -> w = (1 - e^0, 1 - e^-2) = (0, 0.864665)
    # (U - Ubar)^2 = (1, 0.25) -> L = (0 * 1 + 0.864665 * 0.25) / 2 = 0.108083
    # a second sample with U == Ubar costs nothing whatever its TD error
    chosen = jnp.array([[1.0, 3.0], [2.0, 2.0]])
    anchor = jnp.array([[0.0, 3.5], [2.0, 2.0]])
    y = jnp.array([1.0, 7.0])
    out = td_weighted_utility_regulariser(chosen, anchor, y)
    np.testing.assert_allclose(np.asarray(out), [(1 - math.exp(-2)) * 0.25 / 2, 0.0], rtol=1e-6)
    # gradient: w is a constant, so dL/dU_j = (2/M) w_j (U_j - Ubar_j) = (0, 0.864665 * -0.5);
    # nothing flows into Ubar or y
    g_u, g_anchor, g_y = jax.grad(
        lambda u, a, t: td_weighted_utility_regulariser(u, a, t)[0], argnums=(0, 1, 2)
    )(chosen, anchor, y)
    np.testing.assert_allclose(np.asarray(g_u[0]), [0.0, -(1 - math.exp(-2)) * 0.5], atol=1e-6)
    assert not np.any(np.asarray(g_anchor)) and not np.any(np.asarray(g_y))


# ------------------------------------------------------------------------------ the agent's loss


def _tiny_agent(**overrides) -> REValueD:
    obs_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    act_space = gym.spaces.Box(np.array([-1.0, 0.0], np.float32), np.array([1.0, 2.0], np.float32))
    values = {"width": 16, "ensemble_size": 2, **overrides}
    return REValueD(REValueDConfig(**values), obs_space, act_space)


# fixed utilities [K=2, batch=1, M=2, B=3]; index 0 is U(s), index 1 is U(s')
ONLINE = jnp.array(
    [
        [[[[0.0, 2.0, 0.0], [4.0, 0.0, 0.0]]], [[[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]]],
        [[[[1.0, 5.0, 2.0], [0.0, 0.0, 3.0]]], [[[9.0, 0.0, 0.0], [1.0, 2.0, 0.0]]]],
    ]
)
TARGET = jnp.array(
    [
        [[[[0.0, 1.0, 0.0], [4.0, 0.0, 0.0]]], [[[0.0, 3.0, 0.0], [1.0, 0.0, 0.0]]]],
        MEAN_CASE,
    ]
)
# action (0.0, 0.0) is bin 1 of [-1, 0, 1] and bin 0 of [0, 1, 2]
BATCH = TrainBatch(
    obs=jnp.zeros((1, 3)),
    action=jnp.array([[0.0, 0.0]]),
    reward=R,
    discount=DISC,
    next_obs=jnp.ones((1, 3)),
    weights=jnp.ones(1),
)


def _fixed_utilities_agent(**overrides) -> REValueD:
    agent = _tiny_agent(**overrides)
    # the network is replaced by the tables above: the observation (0 for s, 1 for s') picks one
    agent.utilities = lambda params, obs: params[int(obs[0, 0])]
    return agent


def test_loss_hand_worked_mean_target_with_regulariser():
    agent = _fixed_utilities_agent(reg_coef=0.5)
    loss, aux = agent.loss(ONLINE, TARGET, BATCH, jax.random.PRNGKey(0))
    # y = 1 + 0.9 * 2.5 = 3.25 for both members (see test_mean_target_hand_worked)
    # taken utilities: member 0 (2, 4) -> Q = 3; member 1 (1, 0) -> Q = 0.5
    # TD = (0.25, 2.75); Huber = (0.03125, 2.25); mean over batch and members: 1.140625
    assert float(aux["td_loss"]) == pytest.approx(1.140625, rel=1e-6)
    # per sample, mean over members: |TD| of 0.25 and 2.75
    np.testing.assert_allclose(np.asarray(aux["td_abs"]), [1.5], rtol=1e-6)
    # regulariser, each member against its OWN target net's taken utilities:
    #   member 0: U (2, 4), Ubar (1, 4), delta (1.25, -0.75): w0 = 1 - e^-1.25 = 0.713495,
    #     squares (1, 0) -> 0.713495 / 2 = 0.356748
    #   member 1: U (1, 0), Ubar (3, 1), delta (2.25, 3.25): w = (0.894601, 0.961226),
    #     squares (4, 1) -> (3.578403 + 0.961226) / 2 = 2.269814
    #   mean over members: 1.313281; total 1.140625 + 0.5 * 1.313281 = 1.797266
    reg0 = (1 - math.exp(-1.25)) / 2
    reg1 = ((1 - math.exp(-2.25)) * 4 + (1 - math.exp(-3.25))) / 2
    assert float(aux["reg_loss"]) == pytest.approx((reg0 + reg1) / 2, rel=1e-6)
    assert float(loss) == pytest.approx(1.797266, rel=1e-6)


def test_loss_without_regulariser_is_the_td_loss():
    agent = _fixed_utilities_agent(reg_coef=0.0)
    loss, aux = agent.loss(ONLINE, TARGET, BATCH, jax.random.PRNGKey(0))
    assert float(loss) == pytest.approx(1.140625, rel=1e-6) and float(aux["reg_loss"]) == 0.0


def test_loss_decqn_target_is_per_member():
    agent = _fixed_utilities_agent(reg_coef=0.0, target="decqn")
    # online s' argmaxes: member 0 (1, 2), member 1 (0, 1); each on its own target utilities at s'
    # (MEAN_CASE): member 0 mean(0, 0) = 0 -> y0 = 1; member 1 mean(0, 2) = 1 -> y1 = 1.9
    # TD = (1 - 3, 1.9 - 0.5) = (-2, 1.4); Huber = (1.5, 0.9); mean 1.2
    loss, aux = agent.loss(ONLINE, TARGET, BATCH, jax.random.PRNGKey(0))
    # per sample, mean over members: |TD| of 2.0 and 1.4
    np.testing.assert_allclose(np.asarray(aux["td_abs"]), [1.7], rtol=1e-6)
    assert float(loss) == pytest.approx(1.2, rel=1e-6)


def test_loss_redq_with_two_members_is_the_min():
    # with K = 2 the sampled pair is always both members: V^0 = mean(4, 2) = 3, V^1 = mean(6, 2) = 4
    agent = _fixed_utilities_agent(reg_coef=0.0, target="redq")
    _, aux = agent.loss(ONLINE, TARGET, BATCH, jax.random.PRNGKey(0))
    assert float(aux["target_mean"]) == pytest.approx(1 + 0.9 * 3.0, rel=1e-6)


@pytest.mark.parametrize("target", ["mean", "redq", "decqn", "decqn_mean"])
def test_update_runs_for_every_target(target):
    agent = _tiny_agent(target=target, ensemble_size=3)
    state = agent.init(0)
    rng = np.random.default_rng(0)
    batch = TrainBatch(
        obs=rng.normal(size=(4, 3)).astype(np.float32),
        action=rng.choice([-1.0, 0.0, 1.0], size=(4, 2)).astype(np.float32),
        reward=rng.normal(size=4).astype(np.float32),
        discount=np.full(4, 0.97, np.float32),
        next_obs=rng.normal(size=(4, 3)).astype(np.float32),
        weights=np.ones(4, np.float32),
    )
    tau = agent.config.tau
    for _ in range(2):
        before = jax.tree_util.tree_leaves(jax.device_get(state.target_params))
        state, metrics, td_abs = agent.update(state, batch)
        # Polyak: each step moves the target by tau toward the online network just updated
        now = jax.tree_util.tree_leaves(jax.device_get((state.target_params, state.params)))
        half = len(now) // 2
        for old, new, online in zip(before, now[:half], now[half:], strict=True):
            np.testing.assert_allclose(new, (1 - tau) * old + tau * online, rtol=1e-5, atol=1e-7)
    assert bool(metrics["finite"]) and int(state.learner_step) == 2
    assert td_abs.shape == (4,) and agent.trace_counts["update"] == 1


# ------------------------------------------------------------------------------ exploration


def test_epsilon_decays_only_after_a_random_action():
    eps = jnp.float32(1.0)
    np.testing.assert_allclose(decayed_epsilon(eps, jnp.bool_(True), 0.999, 0.05), 0.999)
    assert float(decayed_epsilon(eps, jnp.bool_(False), 0.999, 0.05)) == 1.0
    floor = np.float32(0.05)
    assert decayed_epsilon(floor, jnp.bool_(True), 0.999, 0.05) == floor
    assert decayed_epsilon(np.float32(0.0500001), jnp.bool_(True), 0.999, 0.05) == floor
    # about 2995 random actions from 1.0 to the 0.05 floor
    assert math.ceil(math.log(0.05) / math.log(0.999)) == 2995


def test_joint_epsilon_greedy_replaces_the_whole_action():
    greedy_idx = jnp.zeros((6,), jnp.int32)
    keys = jax.random.split(jax.random.PRNGKey(0), 20_000)
    idx, eps = jax.vmap(lambda k: joint_epsilon_greedy(k, greedy_idx, 3, 0.3, 0.9, 0.05))(keys)
    took_random = np.asarray(eps) < 0.29  # the epsilon decayed exactly when the action was random
    assert took_random.mean() == pytest.approx(0.3, abs=0.015)
    np.testing.assert_allclose(np.asarray(eps)[took_random], 0.27, rtol=1e-6)
    changed = np.asarray(idx) != 0
    assert not changed[~took_random].any()
    # a random action redraws every dimension: each differs from greedy w.p. 2/3
    assert changed[took_random].mean() == pytest.approx(2 / 3, abs=0.01)


def test_acting_modes_and_the_epsilon_state():
    agent = _tiny_agent(ensemble_size=4, epsilon_start=1.0, epsilon_decay=0.5)
    state = agent.init(0)
    obs = np.ones((1, 3), np.float32)  # one environment
    _, s = agent.act(state, obs, 0, "random")
    assert float(s.memory[0]) == 1.0  # warm-up actions leave epsilon alone
    _, s = agent.act(state, obs, 0, "greedy")
    assert float(s.memory[0]) == 1.0
    # epsilon 1.0: the first exploring action is random for sure, and decays epsilon once
    _, s = agent.act(state, obs, 0, "explore")
    assert float(s.memory[0]) == 0.5
    for step in range(1, 200):
        _, s = agent.act(s, obs, step, "explore")
    assert float(s.memory[0]) == pytest.approx(0.05)  # the floor, reached by repeated halving


def test_training_acts_on_one_random_member_and_evaluation_on_the_mean():
    agent = _tiny_agent(ensemble_size=4, epsilon_start=0.0)
    state = agent.init(3)
    rng = np.random.default_rng(0)
    # an observation where the members disagree about the greedy action
    for _ in range(200):
        obs = rng.normal(size=3).astype(np.float32) * 3
        u = agent.utilities(state.params, jnp.asarray(obs)[None])[:, 0]  # [K, M, B]
        per_member = {tuple(np.asarray(greedy(u[k]))) for k in range(4)}
        if len(per_member) >= 2:
            break
    assert len(per_member) >= 2
    decode = agent.factorisation.decode
    member_actions = {tuple(np.asarray(decode(np.array(a)))) for a in per_member}
    seen = {tuple(agent.act(state, obs[None], step, "explore")[0][0]) for step in range(60)}
    assert seen <= member_actions and len(seen) >= 2
    mean_action = np.asarray(decode(greedy(jnp.mean(u, axis=0))))
    np.testing.assert_array_equal(agent.act(state, obs[None], 0, "greedy")[0][0], mean_action)


# ------------------------------------------------------------------------------ the ensemble


def test_ensemble_members_are_independent():
    agent = _tiny_agent(ensemble_size=5)
    state = agent.init(0)
    kernels = [
        x for path, x in jax.tree_util.tree_leaves_with_path(state.params) if "kernel" in str(path)
    ]
    assert kernels and all(x.shape[0] == 5 for x in jax.tree_util.tree_leaves(state.params))
    for x in kernels:  # every weight matrix differs between every pair of members
        x = np.asarray(x).reshape(5, -1)
        assert all(not np.allclose(x[i], x[j]) for i in range(5) for j in range(i + 1, 5))
    obs = jnp.asarray(np.random.default_rng(1).normal(size=(8, 3)), jnp.float32)
    u = np.asarray(agent.utilities(state.params, obs))
    assert u.shape == (5, 8, 2, 3)
    assert all(not np.allclose(u[i], u[j]) for i in range(5) for j in range(i + 1, 5))
    # the target ensemble starts as an exact copy
    for a, b in zip(
        jax.tree_util.tree_leaves(state.params),
        jax.tree_util.tree_leaves(state.target_params),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("torso", ["decqn", "revalued"])
def test_the_torso_styles_by_hand(torso):
    # the same parameters through both styles: DecQN's ELU(LN(h + W2 relu(W1 h))) and the REValueD
    # code's LN(h + relu(W2 relu(W1 h))), then the head
    agent = _tiny_agent(torso=torso)
    state = agent.init(0)
    obs = jnp.asarray(np.random.default_rng(2).normal(size=(4, 3)), jnp.float32)
    p = jax.tree_util.tree_map(lambda x: x[0], state.params)["params"]
    t = p["torso"]

    def dense(layer, x):
        return x @ layer["kernel"] + layer["bias"]

    def norm(x):
        mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mean) / jnp.sqrt(var + 1e-6) * t["norm"]["scale"] + t["norm"]["bias"]

    h = dense(t["input"], obs)
    block = dense(t["block_2"], jax.nn.relu(dense(t["block_1"], h)))
    h = jax.nn.elu(norm(h + block)) if torso == "decqn" else norm(h + jax.nn.relu(block))
    want = dense(p["head"], h).reshape(4, 2, 3)
    got = agent.utilities(state.params, obs)[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------ config


def test_registry_and_reference_defaults():
    assert ALGORITHMS["revalued"] is REValueD and CONFIGS["revalued"] is REValueDConfig
    cfg = make_config("revalued")
    c, r = cfg.agent, cfg.replay
    assert (c.bins, c.width, c.ensemble_size, r.batch_size, r.n_step) == (3, 512, 10, 256, 3)
    assert (c.learning_rate, c.max_grad_norm, c.gamma, c.tau) == (1e-4, 40.0, 0.99, 0.005)
    assert (c.update_every, c.random_steps, r.capacity, r.prioritized) == (
        5,
        10_000,
        500_000,
        False,
    )
    assert (c.epsilon_start, c.epsilon_decay, c.epsilon_min) == (1.0, 0.999, 0.05)
    assert (c.target, c.reg_coef) == ("mean", 0.5)


@pytest.mark.parametrize(
    ("agent_values", "match"),
    [
        ({"target": "max"}, "one of 'mean'"),
        ({"target": "redq", "ensemble_size": 3, "redq_members": 4}, "redq_members"),
        ({"tau": 0.0}, r"agent\.tau"),
        ({"reg_coef": -1.0}, r"agent\.reg_coef"),
        ({"epsilon_decay": 1.5}, r"agent\.epsilon_decay"),
    ],
)
def test_bad_config_values_are_clear_errors(agent_values, match):
    with pytest.raises(ConfigError, match=match):
        make_config("revalued", in_section("agent", agent_values))


# ------------------------------------------------------------------------------ through the loop

TINY = {
    "agent.width": 32,
    "agent.ensemble_size": 3,
    "agent.random_steps": 100,
    "agent.learning_starts": 100,
    "agent.update_every": 2,
    "agent.epsilon_decay": 0.99,
    "replay.batch_size": 32,
    "replay.capacity": 5000,
}


def _tiny_run(run_dir, steps=600):
    return tiny_config(run_dir, "revalued", steps, TINY)


def test_epsilon_decays_through_training(tmp_path):
    result = train(_tiny_run(tmp_path / "a", steps=400))
    # the epsilon state decayed during training (and so is part of the state resume restores,
    # which test_contract.py checks)
    assert 0.05 <= float(result.state.memory[0]) < 0.5


# ------------------------------------------------------------------------------ learning


@pytest.mark.slow
def test_revalued_learns_pendulum(tmp_path):
    """REValueD as the official code runs it (target "mean", Polyak 0.005, no regulariser), with
    non-reference sizes so it learns in 10k Pendulum steps in about a minute on a contended 2-core
    CPU: ensemble 3 (not 10), width 128 (not 512), Adam 1e-3 (not 1e-4), a learner step every 2
    env steps (not 5), 1000 warm-up steps (not 10k) and epsilon x0.99 per random action (not
    0.999), so epsilon reaches its 0.05 floor after about 300 random actions instead of 3000.

    The reconstructed regulariser is off here (`reg_coef` 0, as in the official code): at 0.5 it
    held Pendulum at about -1500 after 10k steps with these settings (its quadratic pull towards
    the slowly moving target network outweighs the Huber TD gradient when values move by more than
    about one unit), and with a faster target (tau 0.05) it learned on seed 0 but not on seed 1.
    It is covered by the hand-worked unit tests above. Measured here (this test, seed 0): eval
    -161 at 5k steps and -227 at 10k, worst of the 10 final episodes -383; about 55 s."""
    agent = {
        "ensemble_size": 3,
        "width": 128,
        "learning_rate": 1e-3,
        "update_every": 2,
        "random_steps": 1000,
        "learning_starts": 1000,
        "epsilon_decay": 0.99,
        "reg_coef": 0.0,
    }
    loop_settings = {
        "run.steps": 10_000,
        "runner.eval_every": 5_000,
        "runner.eval_episodes": 10,
        "run.progress": "none",
        "run.tensorboard": False,
        "run.dir": str(tmp_path / "run"),
    }
    result = train(make_config("revalued", {**loop_settings, **in_section("agent", agent)}))
    evals = [r for r in read_metrics(result.run_dir) if r["event"] == "eval"]
    assert [r["env_step"] for r in evals] == [5_000, 10_000]
    final = evals[-1]["eval_return"]
    # untrained greedy play scores about -1250; every evaluation episode must be a swing-up
    assert final > -400, f"REValueD did not learn Pendulum: eval return {final:.1f}"
    assert np.min(evals[-1]["eval_returns"]) > -700
