"""CQN: coarse-to-fine factorisation, greedy zoom, targets, and the agent in the loop."""

import itertools

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import by_params, moved_off_start

from factorl.agents.cqn import CQN, CQNConfig, argmax_random_ties
from factorl.core.agent import TrainBatch
from factorl.maths.distributional import categorical_projection
from factorl.maths.factorisation import ActionFactorisation
from factorl.maths.targets import per_utility_categorical_target

LOW, HIGH = np.array([-1.0, 0.0, -3.0], np.float32), np.array([1.0, 0.5, 5.0], np.float32)

# ------------------------------------------------------------------------------ factorisation


def test_zooming_keeps_every_interval_inside_the_bounds():
    f = ActionFactorisation(LOW, HIGH, bins=5, levels=4)
    rng = np.random.default_rng(0)
    idx = jnp.asarray(rng.integers(0, 5, size=(500, 4, 3)))
    low, high = f.initial_interval((500,))
    for level in range(4):
        new_low, new_high = f.zoom(low, high, idx[:, level])
        assert np.all(new_low >= low - 1e-6) and np.all(new_high <= high + 1e-6)
        assert np.all(new_low >= LOW - 1e-6) and np.all(new_high <= HIGH + 1e-6)
        expected = np.broadcast_to((HIGH - LOW) / 5 ** (level + 1), (500, 3))
        np.testing.assert_allclose(new_high - new_low, expected, rtol=1e-4)
        low, high = new_low, new_high


@pytest.mark.parametrize(("bins", "levels"), [(2, 1), (3, 2), (5, 3)])
def test_decode_of_encode_is_exact_on_the_grid(bins, levels):
    f = ActionFactorisation(LOW, HIGH, bins=bins, levels=levels)
    paths = np.array(list(itertools.product(range(bins), repeat=levels)))  # [P, L]
    idx = jnp.asarray(np.broadcast_to(paths[:, :, None], (*paths.shape, 3)))  # same path per dim
    grid = np.asarray(f.decode(idx))  # every finest-grid action
    np.testing.assert_array_equal(np.asarray(f.encode(grid)), np.asarray(idx))
    np.testing.assert_array_equal(np.asarray(f.decode(f.encode(grid))), grid)
    assert len(np.unique(grid[:, 0])) == bins**levels
    assert np.all(grid >= LOW) and np.all(grid <= HIGH)


def test_quantise_goes_to_the_centre_of_the_containing_finest_interval():
    f = ActionFactorisation(LOW, HIGH, bins=5, levels=3)
    a = jnp.asarray(np.random.default_rng(1).uniform(LOW, HIGH, size=(1000, 3)), jnp.float32)
    q = np.asarray(f.quantise(a))
    finest = (HIGH - LOW) / 125
    assert np.all(np.abs(q - np.asarray(a)) <= finest / 2 + 1e-5)
    np.testing.assert_array_equal(np.asarray(f.quantise(q)), q)


def test_path_centres_start_at_the_middle_of_the_range():
    f = ActionFactorisation(LOW, HIGH, bins=3, levels=2)
    centres = np.asarray(f.path_centres(jnp.array([[[2, 0, 1], [0, 0, 0]]])))[0]
    np.testing.assert_allclose(centres[0], (LOW + HIGH) / 2)
    width = (HIGH - LOW) / 3
    np.testing.assert_allclose(centres[1], LOW + np.array([2, 0, 1]) * width + width / 2, 1e-6)


# ------------------------------------------------------------------------------ acting


def _agent(**kw):
    obs = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
    act = gym.spaces.Box(LOW, HIGH)
    return CQN(CQNConfig(width=16, **kw), obs, act)


def test_greedy_action_is_the_argmax_along_the_zoom_path():
    """A critic whose bins score closeness to a target point must zoom onto that point."""
    agent = _agent(levels=3, bins=5)
    target = jnp.array([0.37, 0.11, -2.2])
    fact = agent.factorisation

    def values(params, obs, centres, level):
        width = (fact.high - fact.low) / fact.bins ** (level + 1)
        low = centres - width * fact.bins / 2  # the interval being split at this level
        bin_centres = low[..., None] + (jnp.arange(fact.bins) + 0.5) * width[:, None]
        return -jnp.abs(bin_centres - target[:, None])

    agent.level_values = values
    path = agent.greedy_path(None, jnp.zeros((1, 4)))[0]
    np.testing.assert_array_equal(np.asarray(path), np.asarray(fact.encode(target)))
    np.testing.assert_array_equal(np.asarray(fact.decode(path)), np.asarray(fact.quantise(target)))


def test_random_tie_breaking_versus_the_official_first_maximum():
    values = jnp.zeros((3, 5))
    keys = jax.random.split(jax.random.PRNGKey(0), 200)
    picks = np.asarray(jax.vmap(lambda k: argmax_random_ties(k, values))(keys))
    assert set(np.unique(picks)) == {0, 1, 2, 3, 4}
    assert np.all(np.asarray(argmax_random_ties(None, values)) == 0)
    # a unique maximum is always taken
    assert np.all(np.asarray(argmax_random_ties(keys[0], jnp.array([0.0, 2.0, 1.0]))) == 1)
    # untrained agent (zero head): the official behaviour acts at the lowest bins...
    official = _agent(random_ties=False)
    state = official.init(0)
    greedy, _ = official.act(state, np.ones((1, 4), np.float32), 0, "greedy")
    np.testing.assert_allclose(
        greedy[0], np.asarray(official.factorisation.decode(jnp.zeros((3, 3), int)))
    )
    # ...while ours spreads its greedy actions
    agent = _agent()
    state = agent.init(0)
    actions = np.array(
        [agent.act(state, np.ones((1, 4), np.float32), t, "greedy")[0][0] for t in range(30)]
    )
    assert len(np.unique(actions[:, 0])) > 5


def test_exploration_stays_in_bounds_on_the_finest_grid():
    agent = _agent(explore_std=2.0)  # large noise hits the bounds often
    state = agent.init(0)
    fact = agent.factorisation
    for t in range(50):
        a = agent.act(state, np.ones((1, 4), np.float32), t, "explore")[0][0]
        assert np.all(a >= LOW) and np.all(a <= HIGH)
        # on the finest grid: the same zoom path, equal up to XLA's fused arithmetic (1 ulp)
        np.testing.assert_array_equal(
            np.asarray(fact.encode(a)), np.asarray(fact.encode(fact.quantise(a)))
        )
        np.testing.assert_allclose(a, np.asarray(fact.quantise(a)), rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------ targets


def test_categorical_projection_hand_worked():
    atoms = jnp.array([0.0, 1.0, 2.0])
    probs = jnp.array([0.0, 1.0, 0.0])
    # r + z = 1.5 splits the mass between atoms 1 and 2
    out = categorical_projection(probs, jnp.array(0.5), jnp.array(1.0), atoms)
    np.testing.assert_allclose(np.asarray(out), [0.0, 0.5, 0.5], atol=1e-6)
    # beyond the support everything lands on the last atom; discount 0 puts it at r
    np.testing.assert_allclose(
        np.asarray(categorical_projection(probs, jnp.array(5.0), jnp.array(1.0), atoms)), [0, 0, 1]
    )
    spread = jnp.array([0.2, 0.3, 0.5])
    out = categorical_projection(spread, jnp.array(0.25), jnp.array(0.0), atoms)
    np.testing.assert_allclose(np.asarray(out), [0.75, 0.25, 0.0], atol=1e-6)


def test_per_utility_categorical_target_hand_worked():
    """Each utility projects the distribution of its own chosen bin, with its sample's reward."""
    atoms = jnp.array([-1.0, 0.0, 1.0])
    sure = 50.0  # a logit this far above the others puts all the mass on one atom
    # [batch 2, utilities 2, bins 2, atoms 3]: bin 0 is sure of atom -1, bin 1 of atom 0
    logits = jnp.broadcast_to(jnp.array([[sure, 0, 0], [0, sure, 0]]), (2, 2, 2, 3))
    choice = jnp.array([[1, 0], [0, 0]])  # sample 0: utility 0 takes bin 1, utility 1 bin 0
    reward, discount = jnp.array([0.5, -0.25]), jnp.array([1.0, 0.5])
    out = np.asarray(per_utility_categorical_target(logits, choice, reward, discount, atoms))
    np.testing.assert_allclose(out[0, 0], [0.0, 0.5, 0.5], atol=1e-6)  # 0.5 + 0
    np.testing.assert_allclose(out[0, 1], [0.5, 0.5, 0.0], atol=1e-6)  # 0.5 - 1
    np.testing.assert_allclose(out[1, 0], [0.75, 0.25, 0.0], atol=1e-6)  # -0.25 - 0.5
    np.testing.assert_allclose(out[1, 1], out[1, 0], atol=1e-6)


def test_loss_regresses_each_level_and_dimension_on_its_own():
    agent = _agent(levels=2, bins=3)
    # fake network outputs: the params value selects U(s) (online, 0) or Ubar(s') (target, 1)
    out = jnp.arange(18.0).reshape(1, 2, 3, 3)  # [batch, L, M, B]
    next_out = 100.0 + jnp.arange(18.0).reshape(1, 2, 3, 3)
    online, target = jnp.array(0.0), jnp.array(1.0)
    calls = []

    def all_levels(params, obs, path):  # records what each network was asked about
        calls.append((float(params), np.asarray(obs), np.asarray(path)))
        return by_params(out, next_out)(params)

    agent.all_levels = all_levels
    next_path = jnp.array([[[2, 1, 0], [0, 0, 2]]])

    def greedy_path(params, obs, key=None):
        calls.append(("greedy", float(params), np.asarray(obs)))
        return next_path

    agent.greedy_path = greedy_path
    path = np.array([[[1, 0, 2], [2, 1, 0]]])
    action = agent.factorisation.decode(jnp.asarray(path))
    obs, next_obs = jnp.zeros((1, 4)), jnp.ones((1, 4))
    batch = TrainBatch(obs, action, jnp.array([1.0]), jnp.array([0.5]), next_obs, jnp.ones(1))
    loss, _ = agent.loss(online, target, batch, jax.random.PRNGKey(0))
    q = np.array([[1, 3, 8], [11, 13, 15]], float)  # out[l, d, path[l, d]]
    y = 1.0 + 0.5 * (100.0 + np.array([[2, 4, 6], [9, 12, 17]], float))
    assert float(loss) == pytest.approx(np.mean((y - q) ** 2), rel=1e-6)
    # U along the taken path at s; the greedy path at s' by the online net; Ubar along it at s'
    (u, u_obs, u_path), greedy, (ubar, ubar_obs, ubar_path) = calls
    assert (u, ubar) == (0.0, 1.0) and greedy[:2] == ("greedy", 0.0)
    assert np.array_equal(u_obs, obs) and np.array_equal(u_path, path)
    assert np.array_equal(greedy[2], next_obs) and np.array_equal(ubar_obs, next_obs)
    assert np.array_equal(ubar_path, next_path)


def test_all_levels_is_each_level_evaluated_on_its_own():
    """The loss's one batched pass over levels gives what acting computes level by level."""
    agent = _agent(levels=3, bins=4)
    # non-zero output layers, so that levels and centres change the outputs
    params = moved_off_start(agent.init(0).params)
    rng = np.random.default_rng(0)
    obs = jnp.asarray(rng.normal(size=(5, 4)), jnp.float32)
    path = jnp.asarray(rng.integers(0, 4, size=(5, 3, 3)))
    together = agent.all_levels(params, obs, path)  # [batch, L, M, B]
    centres = agent.path_centres(path)
    for level in range(3):
        alone = agent.level_values(params, obs, centres[:, level], level)
        np.testing.assert_allclose(together[:, level], alone, rtol=1e-5, atol=1e-6)
    assert not np.allclose(together[:, 0], together[:, 1])


def test_the_next_path_is_chosen_by_the_online_network_and_valued_by_the_target():
    agent = _agent(levels=2, bins=3, random_ties=False)
    online, target = jnp.array(0.0), jnp.array(1.0)

    # greedy zoom at s': the online utilities prefer bin 2 everywhere, the target ones bin 0
    def level_values(params, obs, centres, level):
        scores = jnp.array([0.0, 1.0, 2.0]) * (1.0 - 2.0 * params)
        return jnp.broadcast_to(scores, (*obs.shape[:-1], 3, 3))

    agent.level_values = level_values
    out = jnp.arange(18.0).reshape(1, 2, 3, 3)  # [batch, L, M, B]
    next_out = 100.0 + jnp.arange(18.0).reshape(1, 2, 3, 3)
    agent.all_levels = by_params(out, next_out)
    path = jnp.array([[[1, 0, 2], [2, 1, 0]]])
    batch = TrainBatch(jnp.zeros((1, 4)), agent.factorisation.decode(path), jnp.array([1.0]),
                       jnp.array([0.5]), jnp.zeros((1, 4)), jnp.ones(1))  # fmt: skip
    loss, aux = agent.loss(online, target, batch, jax.random.PRNGKey(0))
    q = np.array([[1, 3, 8], [11, 13, 15]], float)
    y = 1.0 + 0.5 * (100.0 + np.array([[2, 5, 8], [11, 14, 17]], float))  # bin 2 of next_out
    assert float(aux["target_mean"]) == pytest.approx(y.mean())
    assert float(loss) == pytest.approx(np.mean((y - q) ** 2), rel=1e-6)


def test_distributional_loss_is_the_cross_entropy_to_the_projected_target():
    agent = _agent(levels=1, bins=2, distributional=True, num_atoms=3, v_min=0.0, v_max=2.0)
    online, target = jnp.array(0.0), jnp.array(1.0)
    agent.level_values = lambda params, obs, centres, level: jnp.broadcast_to(
        jnp.array([0.0, 1.0]), (*obs.shape[:-1], 3, 2)
    )  # greedy bin 1 at s', every dimension
    # logits [batch, L, M, B, atoms]: online bin 0 says (0.2, 0.3, 0.5); the target's bin 1
    # puts all mass on atom 1 (value 1), its bin 0 on atom 0
    logits = jnp.broadcast_to(
        jnp.log(jnp.array([[0.2, 0.3, 0.5], [1.0, 1.0, 1.0]])), (1, 1, 3, 2, 3)
    )
    sharp = jnp.array([[50.0, 0.0, 0.0], [0.0, 50.0, 0.0]])
    agent.all_levels = by_params(logits, jnp.broadcast_to(sharp, (1, 1, 3, 2, 3)))
    action = agent.factorisation.decode(jnp.zeros((1, 1, 3), int))  # bin 0 everywhere
    batch = TrainBatch(jnp.zeros((1, 4)), action, jnp.array([0.5]), jnp.array([1.0]),
                       jnp.zeros((1, 4)), jnp.ones(1))  # fmt: skip
    loss, aux = agent.loss(online, target, batch, jax.random.PRNGKey(0))
    # r + z = 0.5 + 1 = 1.5: half the mass on atom 1, half on atom 2
    assert float(loss) == pytest.approx(-(0.5 * np.log(0.3) + 0.5 * np.log(0.5)), rel=1e-5)
    assert float(aux["target_mean"]) == pytest.approx(1.5, rel=1e-5)
    assert float(aux["q_mean"]) == pytest.approx(0.3 + 2 * 0.5, rel=1e-5)


@pytest.mark.parametrize("atoms", [1, 4])
def test_dueling_head_is_value_plus_centred_advantage(atoms):
    from factorl.agents.cqn import LevelCritic

    args = (jnp.ones((2, 4)), jnp.zeros((2, 3)), jnp.ones((2, 2)))
    net = LevelCritic(num_dims=3, bins=5, width=8, atoms=atoms, dueling=True)
    params = net.init(jax.random.PRNGKey(0), *args)
    leaves, tree = jax.tree_util.tree_flatten(params)  # the heads start at zero: randomise all
    keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
    params = jax.tree_util.tree_unflatten(
        tree, [jax.random.normal(k, x.shape) for k, x in zip(keys, leaves, strict=True)]
    )
    full = np.asarray(net.apply(params, *args))
    plain = {"params": {k: v for k, v in params["params"].items() if k != "value"}}
    adv = np.asarray(LevelCritic(3, 5, 8, atoms, dueling=False).apply(plain, *args))
    no_adv = jax.tree_util.tree_map(jnp.zeros_like, params["params"]["head"])
    value = np.asarray(net.apply({"params": {**params["params"], "head": no_adv}}, *args))
    np.testing.assert_allclose(full, value + adv - adv.mean(axis=2, keepdims=True), atol=1e-5)
    np.testing.assert_allclose(full.mean(axis=2), value.mean(axis=2), atol=1e-5)
    assert np.ptp(adv, axis=2).min() > 0  # the advantages do differ across bins
