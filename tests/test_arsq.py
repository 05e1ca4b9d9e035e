"""ARSQ: the auto-regressive maths (soft advantages, positions and their conditioning vectors, the
target, the demonstration terms) on hand-worked numbers, the reference note's three-mode example
against DecQN and CQN, and short runs on both runners."""

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from factorl.agents.arsq import ARSQ, ARSQConfig
from factorl.agents.cqn import CQN, CQNConfig
from factorl.agents.decqn import DecQN, DecQNConfig
from factorl.cli import main
from factorl.core.agent import TrainBatch
from factorl.io.logging import read_metrics
from factorl.maths import autoregressive as ar
from factorl.maths.factorisation import ActionFactorisation
from factorl.runners import device

# ------------------------------------------------------------------------------ soft advantages


@pytest.mark.parametrize("alpha", [0.01, 0.3, 5.0])
def test_soft_advantages_are_normalised(alpha):
    u = jax.random.normal(jax.random.PRNGKey(0), (64, 7, 5)) * 3.0
    a = ar.soft_normalise(u, alpha)
    # float32: A / alpha magnifies the rounding of A at small alpha
    np.testing.assert_allclose(jnp.sum(jnp.exp(a / alpha), axis=-1), 1.0, rtol=5e-4)
    # a shift per position: the order of the bins is kept, every A <= 0
    np.testing.assert_allclose(a - u, (a - u)[..., :1] * jnp.ones_like(u), rtol=1e-5, atol=1e-5)
    assert (a <= 1e-6).all()


def test_as_alpha_falls_the_best_bin_tends_to_zero_advantage():
    u = jnp.array([0.3, 2.0, -1.0])
    a = ar.soft_normalise(u, 1e-3)
    np.testing.assert_allclose(a, u - 2.0, atol=1e-5)


# ----------------------------------------------------------------------- positions, conditioning


def test_positions_are_level_major_and_invert():
    path = jnp.array([[[0, 1, 2], [3, 4, 0]]])  # [1, L=2, D=3]
    assert ar.positions(path).tolist() == [[0, 1, 2, 3, 4, 0]]
    assert ar.unflatten_positions(ar.positions(path), 3).tolist() == path.tolist()


def test_encode_decode_round_trip_gives_the_finest_interval_midpoint():
    fact = ActionFactorisation(low=[-2.0, 0.0], high=[2.0, 1.0], bins=3, levels=2)
    rng = np.random.default_rng(0)
    action = rng.uniform(fact.low, fact.high, size=(200, 2)).astype(np.float32)
    path = fact.encode(action)  # floored level by level
    centre = fact.decode(path)
    width = (fact.high - fact.low) / 9
    assert np.all(np.abs(centre - action) <= width / 2 + 1e-5)
    # the midpoint is a fixed point: bins -> midpoint -> the same bins
    assert (fact.encode(centre) == path).all()
    # hand case: -0.3 in [-2, 2]: level 0 bins of width 4/3 -> bin 1 ([-2/3, 2/3]); level 1 bins
    # of width 4/9 -> floor((-0.3 + 2/3) / (4/9)) = 0, midpoint -2/3 + 2/9 = -4/9
    one = fact.encode(np.array([[-0.3, 0.95]], np.float32))
    assert one.tolist() == [[[1, 2], [0, 2]]]
    np.testing.assert_allclose(fact.decode(one), [[-4 / 9, 17 / 18]], rtol=1e-5)


def test_conditioning_vectors_by_hand():
    # D = 2 on [-1, 1] (dimension 0) and [0, 4] (dimension 1), L = 2, B = 2; path (+ -), (- +)
    fact = ActionFactorisation(low=[-1.0, 0.0], high=[1.0, 4.0], bins=2, levels=2)
    path = jnp.array([[[1, 0], [0, 1]]])
    c = ar.conditioning(fact, path)[0]
    # normalised midpoints: k=0 nothing chosen -> (0, 0); k=1 dim 0 level 0 chose + -> (0.5, 0);
    # k=2 dim 1 level 0 chose - -> (0.5, -0.5); k=3 dim 0 level 1 chose - of [0, 1] -> 0.25
    expected = [[0.0, 0.0], [0.5, 0.0], [0.5, -0.5], [0.25, -0.5]]
    np.testing.assert_allclose(c, expected, atol=1e-6)
    # acting builds the same vectors one zoom at a time
    low, high = fact.initial_interval(())
    for k, b in enumerate(ar.positions(path)[0]):
        np.testing.assert_allclose(ar.interval_midpoints(fact, low, high), expected[k], atol=1e-6)
        low, high = ar.zoom_dimension(fact, low, high, k % 2, b)
    np.testing.assert_allclose(fact.centre(low, high), fact.decode(path[0]), atol=1e-6)


@pytest.mark.parametrize("network", ["mlp", "layernorm"])
def test_teacher_forced_advantages_read_each_position_from_its_own_conditioning(network):
    """Training evaluates only each row's own position of the head (`PositionHead`, own=True);
    acting evaluates the whole head and reads position k: the same values."""
    config = ARSQConfig(levels=2, bins=3, width=16, depth=1, network=network)
    agent = ARSQ(config, _box(2), _box(2))
    params = agent.init(0).params
    # the layernorm head starts at zero: give it values that tell the positions apart
    head = params["advantage"]["params"]["head"]
    head["kernel"] = jax.random.normal(jax.random.PRNGKey(1), head["kernel"].shape)
    head["bias"] = jax.random.normal(jax.random.PRNGKey(2), head["bias"].shape)
    obs = jnp.array([[0.3, -0.1], [-0.5, 0.8]])
    path = agent.factorisation.encode(jnp.array([[0.4, -0.7], [-0.9, 0.1]]))
    forced = jax.jit(agent.teacher_forced_advantages)(params, obs, path)  # [2, batch, K, B]
    cond = ar.conditioning(agent.factorisation, path)
    raw_outputs = jax.jit(agent.raw_outputs)
    for k in range(4):
        raw = raw_outputs(params, obs, cond[:, k])[:, :, k]  # [2, batch, B]
        expected = ar.soft_normalise(raw, 0.05)
        np.testing.assert_allclose(forced[:, :, k], expected, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------- the target


def test_target_takes_the_minimum_target_value_and_bootstraps_truncations():
    next_values = jnp.array([[1.0, 5.0, -2.0, 3.0], [2.0, 4.0, -3.0, 3.5]])  # [critics, batch]
    reward = jnp.array([1.0, 0.0, 0.5, -1.0])
    # as the replay gives it: 0.9 * (1 - terminated); sample 1 terminated, sample 3 truncated
    discount = jnp.array([0.9, 0.0, 0.9, 0.9])
    y = ar.min_value_target(reward, discount, next_values)
    np.testing.assert_allclose(
        y, [1.0 + 0.9 * 1.0, 0.0, 0.5 - 0.9 * 3.0, -1.0 + 0.9 * 3.0], rtol=1e-6
    )


def test_the_agents_target_uses_the_target_value_nets_and_the_discount():
    agent = ARSQ(ARSQConfig(levels=1, bins=2, width=8, depth=1), _box(1), _box(1))
    state = agent.init(0)
    # move the target nets away from the online ones: the target must read the targets
    target = jax.tree_util.tree_map(lambda x: x + 0.5, state.target_params)
    batch = _batch(np.zeros((3, 1)), np.zeros((3, 1)), [1.0, 2.0, 3.0], [0.9, 0.0, 0.9])
    _, aux = jax.jit(agent.loss)(state.params, target, batch)
    v_next = agent.values(target, batch.next_obs)
    expected = np.array([1.0, 2.0, 3.0]) + np.array([0.9, 0.0, 0.9]) * np.min(v_next, axis=0)
    np.testing.assert_allclose(aux["target_mean"], expected.mean(), rtol=1e-5)


def test_through_the_replay_a_termination_stops_the_target_and_a_truncation_bootstraps():
    agent = ARSQ(ARSQConfig(levels=1, bins=2, width=8, depth=1, gamma=0.9), _box(1), _box(1))
    state = agent.init(0)
    replay = agent.make_replay((1,))
    obs, end = np.array([0.2], np.float32), np.array([0.7], np.float32)
    replay.add(obs, np.array([0.5]), 1.0, end, True, False)  # terminated
    replay.add(obs, np.array([0.5]), 2.0, end, False, True)  # truncated by a time limit
    b = replay.sample(16, np.random.default_rng(0))
    batch = TrainBatch.from_sample(b)
    _, aux = jax.jit(agent.loss)(state.params, state.target_params, batch)
    v_end = float(jnp.min(agent.values(state.target_params, end[None])))
    expected = np.where(np.asarray(b.reward) == 1.0, 1.0, 2.0 + 0.9 * v_end)
    assert set(np.asarray(b.reward).tolist()) == {1.0, 2.0} and abs(v_end) > 1e-4
    np.testing.assert_allclose(aux["target_mean"], expected.mean(), rtol=1e-5)


# ----------------------------------------------------------------------------- demonstration terms


def test_margin_demo_loss_by_hand():
    adv = jnp.array([[-0.5, 0.0, -3.0], [-0.1, -2.0, -0.2]])
    choice = jnp.array([1, 1])
    # row 0: others - A(b_e) = -0.5, -3.0; row 1: 1.9, 1.8
    np.testing.assert_allclose(ar.margin_demo_loss(adv, choice), [-1.75, 1.85], rtol=1e-6)
    # clipped to [-1, 1.85]: -0.5, -1 -> -0.75; 1.85, 1.8 -> 1.825
    clipped = ar.margin_demo_loss(adv, choice, -1.0, 1.85)
    np.testing.assert_allclose(clipped, [-0.75, 1.825], rtol=1e-6)
    # no gradient through a clipped difference
    grad = jax.grad(lambda a: ar.margin_demo_loss(a, choice, -1.0, 1.85).sum())(adv)
    np.testing.assert_allclose(grad[0], [0.5, -0.5, 0.0], atol=1e-6)


def test_cql_demo_loss_by_hand():
    adv = jnp.array([[-0.5, 0.0, -3.0], [-0.1, -2.0, -0.2]])
    choice = jnp.array([1, 0])
    tau = 0.5
    row0 = tau * np.log(np.exp(-0.5 / tau) + np.exp(-3.0 / tau)) - 0.0
    row1 = tau * np.log(np.exp(-2.0 / tau) + np.exp(-0.2 / tau)) + 0.1
    np.testing.assert_allclose(ar.cql_demo_loss(adv, choice, tau), [row0, row1], rtol=1e-5)
    clipped = ar.cql_demo_loss(adv, choice, tau, -0.4, 0.0)
    np.testing.assert_allclose(clipped, [max(row0, -0.4), min(row1, 0.0)], rtol=1e-5)


def test_demo_average_over_demos_or_the_batch():
    per_sample = jnp.array([1.0, 2.0, 3.0, 4.0])
    demo = jnp.array([1.0, 0.0, 1.0, 0.0])
    assert float(ar.demo_average(per_sample, demo, "demos")) == pytest.approx(2.0)
    assert float(ar.demo_average(per_sample, demo, "batch")) == pytest.approx(1.0)
    assert float(ar.demo_average(per_sample, jnp.zeros(4), "demos")) == 0.0


def test_the_demo_term_is_added_only_for_flagged_batches():
    agent = ARSQ(ARSQConfig(levels=2, bins=3, width=8, depth=1, demo_weight=2.0), _box(1), _box(2))
    state = agent.init(0)
    rng = np.random.default_rng(0)
    action = rng.uniform(-1, 1, (4, 2))
    plain = _batch(rng.normal(size=(4, 1)), action, [0.0] * 4, [0.9] * 4)
    loss_fn = jax.jit(agent.loss)
    loss, aux = loss_fn(state.params, state.target_params, plain)
    assert "demo_loss" not in aux  # online batches carry no flag: the term is off
    flags = jnp.array([1.0, 0.0, 1.0, 0.0])
    flagged = plain._replace(extras={"demo": flags})
    loss_demo, aux_demo = loss_fn(state.params, state.target_params, flagged)
    forced = jax.jit(agent.teacher_forced_advantages)
    adv = forced(state.params, plain.obs, agent.factorisation.encode(action))
    choices = ar.positions(agent.factorisation.encode(action))
    per = jnp.sum(ar.margin_demo_loss(adv, choices[None], -1.0, None), axis=-1)  # [2, batch]
    expected = sum(float(ar.demo_average(per[i], flags, "demos")) for i in range(2))
    np.testing.assert_allclose(aux_demo["demo_loss"], expected, rtol=1e-5)
    np.testing.assert_allclose(loss_demo, loss + 2.0 * expected, rtol=1e-5)


# ------------------------------------------------------------------------------- three modes


def _box(n):
    return gym.spaces.Box(-1.0, 1.0, (n,), np.float32)


def _batch(obs, action, reward, discount):
    obs = jnp.asarray(obs, jnp.float32)
    n = obs.shape[0]
    return TrainBatch(
        obs=obs,
        action=jnp.asarray(action, jnp.float32),
        reward=jnp.asarray(reward, jnp.float32),
        discount=jnp.asarray(discount, jnp.float32),
        next_obs=obs,
        weights=jnp.ones((n,), jnp.float32),
    )


#: the reference note's one-step task: 2 dimensions, L = 1, B = 2 (bins - and + at -0.5, +0.5);
#: r(+,+) = 1 seen once, r(+,-) = -1 and r(-,-) = 0.1 seen 4 times each, r(-,+) = -1 never seen
MODES = {(1, 1): (1.0, 1), (1, -1): (-1.0, 4), (-1, -1): (0.1, 4)}
REWARD = {**{m: r for m, (r, _) in MODES.items()}, (-1, 1): -1.0}


def _three_mode_fit(agent, steps=200, batch_size=36):
    """Train `agent` with its own jitted update on batches drawn from the fixed one-step dataset
    (terminated: discount 0); its learner state and greedy action as signs, e.g. (1, -1)."""
    actions = [m for m, (_, count) in MODES.items() for _ in range(count)]
    rewards = np.array([MODES[m][0] for m in actions], np.float32)
    data_action = 0.5 * np.array(actions, np.float32)
    rng = np.random.default_rng(0)
    state = agent.init(0)
    obs = np.ones((batch_size, 1), np.float32)
    for _ in range(steps):
        rows = rng.integers(0, len(actions), batch_size)
        batch = _batch(obs, data_action[rows], rewards[rows], np.zeros(batch_size))
        state, metrics, _ = agent.update(state, batch)
        assert bool(metrics["finite"])
    action, _ = agent.act(state, obs[:1], 0, "greedy")
    return state, tuple(int(x) for x in np.sign(action[0]))


def test_three_mode_example_arsq_finds_the_optimal_mode_decqn_and_cqn_the_bad_one():
    # a low training temperature: the note's argument is the alpha -> 0 limit, where V is the
    # maximum over the continuations the data shows
    arsq = ARSQ(
        ARSQConfig(levels=1, bins=2, width=32, depth=2, soft_alpha=0.01, act_alpha=0.01,
                   learning_rate=3e-3, value_learning_rate=3e-3),
        _box(1), _box(2),
    )  # fmt: skip
    decqn = DecQN(DecQNConfig(bins=2, width=32, learning_rate=3e-3), _box(1), _box(2))
    cqn = CQN(
        CQNConfig(levels=1, bins=2, width=32, learning_rate=3e-3, random_ties=False),
        _box(1), _box(2),
    )  # fmt: skip
    state, picked = _three_mode_fit(arsq)
    assert picked == (1, 1) and REWARD[picked] == 1.0
    # V(s) is the soft maximum: value(a1 = +) = max(1, -1) = 1 in the alpha -> 0 limit
    np.testing.assert_allclose(arsq.values(state.params, jnp.ones((1, 1))), 1.0, atol=0.05)
    # per-dimension values: DecQN fits U1 + U2 exactly (2.1 predicted for the unseen (-,+)),
    # CQN regresses each dimension on its own (Q1(-) = 0.1 > Q1(+) = -0.6, Q2(+) = 1 > -0.45)
    for agent in (decqn, cqn):
        _, picked = _three_mode_fit(agent)
        assert picked == (-1, 1) and REWARD[picked] == -1.0, type(agent).__name__


# ------------------------------------------------------------------------------------ both runners

#: the CLI flags of a tiny run
_TINY = ["--agent.width", "16", "--agent.depth", "1", "--agent.levels", "2", "--agent.bins", "3",
         "--agent.learning-starts", "64", "--agent.random-steps", "50", "--agent.update-every",
         "2", "--replay.batch-size", "16", "--replay.capacity", "2000", "--run.progress", "none",
         "--run.no-tensorboard", "--runner.eval-episodes", "1"]  # fmt: skip


@pytest.mark.parametrize("env_id", ["gym:Pendulum-v1", "gymnax:Pendulum-v1"])
def test_factorl_train_arsq_runs_on_the_host_and_the_device_runner(tmp_path, env_id):
    # gym: takes the host runner, gymnax: the device runner (jitted loop, 2 envs)
    device._PROGRAMS.clear()
    run = tmp_path / "run"
    code = main(["train", "arsq", "--env.id", env_id, "--run.steps", "200", "--env.num-envs",
                 "2", "--runner.eval-every", "200", "--runner.log-every", "100",
                 "--run.dir", str(run), *_TINY])  # fmt: skip
    device._PROGRAMS.clear()
    assert code == 0
    evals = [r for r in read_metrics(run) if r["event"] == "eval"]
    trains = [r for r in read_metrics(run) if r["event"] == "train"]
    assert [r["env_step"] for r in evals] == [200] and np.isfinite(evals[0]["eval_return"])
    assert trains and all(np.isfinite(r["loss"]) for r in trains)
    assert trains[-1]["learner_step"] > 0
