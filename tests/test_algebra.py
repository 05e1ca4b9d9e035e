"""The algebra of the value family: factorisation, mixers, targets, losses, exploration."""

import itertools

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from factorl.agents.decqn import DecQN, DecQNConfig, epsilon_greedy, per_dimension_explore_prob
from factorl.core.agent import TrainBatch
from factorl.maths.factorisation import ActionFactorisation
from factorl.maths.mixers import MEAN, MIXERS, SUM, bind, greedy, mean_mixer, select
from factorl.maths.networks import UtilityCritic, init_ensemble, stack_apply
from factorl.maths.targets import bootstrap, double_q_ensemble_target, huber

# ------------------------------------------------------------------------------ factorisation


def test_grid_is_per_dimension_linspace():
    f = ActionFactorisation(low=[-1.0, 0.0, -3.0], high=[1.0, 2.0, 5.0], bins=3)
    np.testing.assert_array_equal(f.grid, [[-1, 0, 1], [0, 1, 2], [-3, 1, 5]])
    assert f.num_dims == 3 and f.num_joint_actions == 27


@pytest.mark.parametrize("bins", [2, 3, 5, 11])
def test_encode_decode_are_exact_inverses_on_the_grid(bins):
    f = ActionFactorisation(low=[-1.0, -0.4, 0.0], high=[1.0, 2.5, 7.0], bins=bins)
    every = np.array(list(itertools.product(range(bins), repeat=3)), dtype=np.int32)
    actions = np.asarray(f.decode(every))
    np.testing.assert_array_equal(np.asarray(f.encode(actions)), every)
    # decode(encode(a)) returns exactly the grid point a
    np.testing.assert_array_equal(np.asarray(f.decode(f.encode(actions))), actions)
    assert actions.min(axis=0).tolist() == pytest.approx(f.low.tolist())
    assert actions.max(axis=0).tolist() == pytest.approx(f.high.tolist())


def test_encode_goes_to_the_nearest_bin_and_clips():
    f = ActionFactorisation(low=[0.0], high=[4.0], bins=5)  # grid 0,1,2,3,4
    a = np.array([[0.4], [0.6], [2.49], [3.7], [-9.0], [9.0]], np.float32)
    np.testing.assert_array_equal(np.asarray(f.encode(a))[:, 0], [0, 1, 2, 4, 0, 4])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"low": [0.0], "high": [1.0], "bins": 1},
        {"low": [1.0], "high": [1.0], "bins": 3},
        {"low": [0.0, 0.0], "high": [1.0], "bins": 3},
        {"low": [-np.inf], "high": [1.0], "bins": 3},
    ],
)
def test_factorisation_rejects_bad_spaces(kwargs):
    with pytest.raises(ValueError):
        ActionFactorisation(**kwargs)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "3"])
@pytest.mark.parametrize("field", ["levels", "horizon"])
def test_levels_and_horizon_must_be_none_or_a_positive_integer(field, bad):
    with pytest.raises(ValueError, match=f"{field} must be None or an integer >= 1"):
        ActionFactorisation(low=[0.0], high=[1.0], bins=3, **{field: bad})


def test_one_object_describes_bins_levels_and_sequences():
    low, high = [-1.0, 0.0], [1.0, 4.0]
    flat = ActionFactorisation(low, high, bins=3)
    zoom = ActionFactorisation(low, high, bins=3, levels=2)
    seq = ActionFactorisation(low, high, bins=3, levels=2, horizon=4)
    assert (flat.action_shape, flat.index_shape, flat.sequence_shape) == ((2,), (2,), ())
    assert (zoom.action_shape, zoom.index_shape) == ((2,), (2, 2))
    assert (seq.action_shape, seq.index_shape, seq.sequence_shape) == ((4, 2), (4, 2, 2), (4,))
    # a sequence of one keeps its axis: CQN-AS with K = 1 still has a step axis
    assert ActionFactorisation(low, high, bins=3, horizon=1).index_shape == (1, 2)
    # joint action sets: P**(M*K) with P points per dimension and step
    assert flat.num_joint_actions == 3**2
    assert zoom.num_joint_actions == 9**2 and seq.num_joint_actions == 9 ** (2 * 4)
    # levels: the grid is the centres of the 9 finest intervals, not linspace's endpoints
    np.testing.assert_allclose(zoom.grid[1], (np.arange(9) + 0.5) * 4 / 9, rtol=1e-6)
    np.testing.assert_array_equal(flat.grid[1], [0.0, 2.0, 4.0])


@pytest.mark.parametrize("levels", [None, 1, 3])
def test_sequences_encode_and_decode_step_by_step(levels):
    """The step axis of a sequence is a batch axis to encode/decode: every step on its own."""
    f = ActionFactorisation([-1.0, 0.0, -3.0], [1.0, 0.5, 5.0], bins=3, levels=levels, horizon=4)
    rng = np.random.default_rng(0)
    grid = np.asarray(f.grid)  # [M, P]
    cols = rng.integers(0, grid.shape[1], size=(6, 4, 3))  # [batch, K, M]
    actions = np.take_along_axis(
        np.broadcast_to(grid, (6, 4, 3, grid.shape[1])), cols[..., None], -1
    )[..., 0]
    idx = np.asarray(f.encode(actions))
    assert idx.shape == (6, *f.index_shape)
    np.testing.assert_allclose(np.asarray(f.decode(idx)), actions, rtol=1e-6, atol=1e-6)
    for k in range(4):  # the same as encoding each step alone
        np.testing.assert_array_equal(np.asarray(f.encode(actions[:, k])), idx[:, k])


def test_the_grid_of_levels_is_every_zoom_path_decoded():
    f = ActionFactorisation([-1.0, 0.0], [1.0, 0.5], bins=3, levels=2)
    paths = np.array(list(itertools.product(range(3), repeat=2)))  # [9, L], in grid order
    idx = np.broadcast_to(paths[:, :, None], (9, 2, 2))
    np.testing.assert_allclose(np.asarray(f.decode(idx)).T, f.grid, rtol=1e-6, atol=1e-7)


def test_zoom_methods_need_levels():
    f = ActionFactorisation([0.0], [1.0], bins=3)
    with pytest.raises(ValueError, match="levels=L"):
        f.initial_interval()
    with pytest.raises(ValueError, match="levels=L"):
        f.path_centres(np.zeros((1, 1), np.int32))


# ------------------------------------------------------------------------------ mixers


def test_select_greedy_and_mixers():
    u = jnp.array([[[1.0, 5.0, 2.0], [0.0, 0.0, 3.0]]])  # [batch=1, M=2, B=3]
    np.testing.assert_array_equal(greedy(u), [[1, 2]])
    chosen = select(u, jnp.array([[2, 0]]))
    np.testing.assert_array_equal(chosen, [[2.0, 0.0]])
    assert float(mean_mixer(chosen)[0]) == 1.0
    assert float(bind(SUM)(chosen)[0]) == 2.0


@pytest.mark.parametrize("name", sorted(MIXERS))
def test_mixers_are_functions_of_parameters_and_state(name):
    # the form a learned mixer (QMIX) takes: init gives parameters, apply(params, chosen, state)
    mixer = MIXERS[name]
    params = mixer.init(jax.random.PRNGKey(0), 3, (5,))
    chosen = jax.random.normal(jax.random.PRNGKey(1), (4, 2, 3))  # [K, batch, M]
    state = jnp.ones((2, 5))  # [batch, S]
    q = jax.jit(mixer.apply)(params, chosen, state)
    assert q.shape == (4, 2)
    expected = {"mean": np.mean, "sum": np.sum}[name](np.asarray(chosen), axis=-1)
    np.testing.assert_allclose(q, expected, rtol=1e-6)
    # bound to its parameters and state, it is what the targets take
    np.testing.assert_array_equal(bind(mixer, params, state)(chosen), q)
    assert MIXERS["mean"] is MEAN


def test_mean_mixer_argmax_is_the_joint_argmax():
    # the reason factorisation works: per-dimension argmax == argmax over all B**M joint actions
    u = jax.random.normal(jax.random.PRNGKey(3), (3, 4))  # M=3, B=4
    joint = np.array(list(itertools.product(range(4), repeat=3)))
    values = np.asarray(mean_mixer(select(jnp.broadcast_to(u, (len(joint), 3, 4)), joint)))
    np.testing.assert_array_equal(joint[np.argmax(values)], np.asarray(greedy(u)))


# ------------------------------------------------------------------------------ targets


def test_double_q_target_hand_worked():
    online = jnp.array(
        [
            [[[1.0, 5.0, 2.0], [0.0, 0.0, 3.0]]],  # critic 0: argmax (1, 2)
            [[[9.0, 0.0, 0.0], [1.0, 2.0, 0.0]]],  # critic 1: argmax (0, 1)
        ]
    )  # [K=2, batch=1, M=2, B=3]
    target = jnp.array(
        [
            [[[10.0, 20.0, 30.0], [1.0, 2.0, 3.0]]],
            [[[30.0, 40.0, 50.0], [5.0, 6.0, 7.0]]],
        ]
    )  # mean over critics: dim0 [20, 30, 40], dim1 [3, 4, 5]
    y = double_q_ensemble_target(online, target, jnp.array([1.0]), jnp.array([0.9]))
    # critic 0: mean(30, 5) = 17.5; critic 1: mean(20, 4) = 12
    np.testing.assert_allclose(np.asarray(y), [[1 + 0.9 * 17.5], [1 + 0.9 * 12.0]], rtol=1e-6)
    # termination: discount 0 -> target is the reward alone
    y0 = double_q_ensemble_target(online, target, jnp.array([2.0]), jnp.array([0.0]))
    np.testing.assert_allclose(np.asarray(y0), [[2.0], [2.0]])


def test_bootstrap_and_huber():
    assert float(bootstrap(jnp.array(1.0), jnp.array(0.5), jnp.array(4.0))) == 3.0
    x = jnp.array([-3.0, -1.0, -0.5, 0.0, 0.5, 2.0])
    np.testing.assert_allclose(np.asarray(huber(x)), [2.5, 0.5, 0.125, 0.0, 0.125, 1.5])
    np.testing.assert_allclose(np.asarray(huber(x, delta=2.0)), [4.0, 0.5, 0.125, 0, 0.125, 2.0])


def _tiny_decqn(**overrides):
    obs_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    act_space = gym.spaces.Box(np.array([-1.0, 0.0], np.float32), np.array([1.0, 2.0], np.float32))
    cfg = DecQNConfig(width=16, **overrides)
    return DecQN(cfg, obs_space, act_space)


def test_decqn_loss_hand_worked():
    """Huber on the joint (mean) TD error, weighted, summed over the two critics."""
    agent = _tiny_decqn()
    # replace the network by fixed utilities: params hold U(s) and U(s') [K, batch, M, B],
    # and the observation (0 for s, 1 for s') says which one to return
    agent.utilities = lambda params, obs: params[int(obs[0, 0])]
    online = jnp.array(
        [
            [[[[0.0, 2.0, 0.0], [4.0, 0.0, 0.0]]], [[[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]]],
            [[[[1.0, 5.0, 2.0], [0.0, 0.0, 3.0]]], [[[9.0, 0.0, 0.0], [1.0, 2.0, 0.0]]]],
        ]
    )  # online[0]: U(s) of both critics, online[1]: U(s')
    target = jnp.array(
        [[[[10.0, 20.0, 30.0], [1.0, 2.0, 3.0]]], [[[30.0, 40.0, 50.0], [5.0, 6.0, 7.0]]]]
    )
    target = jnp.stack([target, target])  # indexed like online; only U(s') is used
    # taken action (0.0, 0.0) -> bins (1, 0): Q^0 = mean(2, 4) = 3, Q^1 = mean(1, 0) = 0.5
    batch = TrainBatch(
        obs=jnp.zeros((1, 3)),
        action=jnp.array([[0.0, 0.0]]),
        reward=jnp.array([1.0]),
        discount=jnp.array([0.9]),
        next_obs=jnp.ones((1, 3)),
        weights=jnp.array([0.5]),
    )
    loss, aux = agent.loss(online, target, batch)
    y0, y1 = 1 + 0.9 * 17.5, 1 + 0.9 * 12.0
    td = np.array([y0 - 3.0, y1 - 0.5])
    expected = 0.5 * np.sum(np.asarray(huber(jnp.asarray(td))))
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    # the replay priority is the mean over critics of |TD|
    np.testing.assert_allclose(np.asarray(aux["td_abs"]), [np.mean(np.abs(td))], rtol=1e-6)


# ------------------------------------------------------------------------------ exploration


def test_official_epsilon_quirk_probability():
    assert per_dimension_explore_prob(0.1, 6, "official") == pytest.approx(
        (0.1 / 6) / (0.1 / 6 + 0.9)
    )
    assert per_dimension_explore_prob(0.1, 6, "dimension") == 0.1


@pytest.mark.parametrize("mode", ["dimension", "official", "joint"])
def test_epsilon_greedy_replacement_rates(mode):
    greedy_idx = jnp.zeros((6,), jnp.int32)
    keys = jax.random.split(jax.random.PRNGKey(0), 20_000)
    out = np.asarray(jax.vmap(lambda k: epsilon_greedy(k, greedy_idx, 3, 0.3, mode))(keys))
    changed = out != 0  # a random bin differs from the greedy one w.p. 2/3
    if mode == "joint":
        rows = changed.any(axis=1).mean()
        assert rows == pytest.approx(0.3 * (1 - (1 / 3) ** 6), abs=0.015)
        # when the action is replaced, every dimension is redrawn together
        assert changed.mean() == pytest.approx(0.3 * 2 / 3, abs=0.01)
    else:
        p = per_dimension_explore_prob(0.3, 6, mode)
        assert changed.mean() == pytest.approx(p * 2 / 3, abs=0.01)


# ------------------------------------------------------------------------------ networks


def test_ensemble_members_are_independent_networks():
    net = UtilityCritic(num_dims=2, bins=3, width=8)
    params = init_ensemble(net, jax.random.PRNGKey(0), 2, jnp.zeros((1, 4)))
    leaves = jax.tree_util.tree_leaves(params)
    assert all(x.shape[0] == 2 for x in leaves)
    out = stack_apply(net, params, jax.random.normal(jax.random.PRNGKey(1), (5, 4)))
    assert out.shape == (2, 5, 2, 3)
    assert not np.allclose(np.asarray(out[0]), np.asarray(out[1]))


def test_per_utility_target_gives_every_utility_its_own_full_target():
    from factorl.maths.targets import per_utility_target

    # batch 2, 2 levels x 3 dimensions, 2 bins: each utility bootstraps from its own chosen bin
    next_u = jnp.arange(24.0).reshape(2, 2, 3, 2)
    choice = jnp.array([[[0, 1, 1], [1, 0, 0]], [[1, 1, 0], [0, 0, 1]]])
    y = per_utility_target(next_u, choice, jnp.array([1.0, -1.0]), jnp.array([0.5, 0.0]))
    expected = [
        [[1 + 0.5 * 0, 1 + 0.5 * 3, 1 + 0.5 * 5], [1 + 0.5 * 7, 1 + 0.5 * 8, 1 + 0.5 * 10]],
        [[-1.0] * 3, [-1.0] * 3],  # terminated: the reward alone, for every utility
    ]
    np.testing.assert_allclose(np.asarray(y), expected)
