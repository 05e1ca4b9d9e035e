"""Tests for the host-side replay buffer and sum tree."""

import numpy as np
import pytest

from factorl.replay.host import Batch, MixedReplay, ReplayBuffer, SumTree, mixed_split

# ---------------------------------------------------------------------------------------------
# SumTree


def test_sumtree_total_get_and_leaves():
    rng = np.random.default_rng(0)
    tree = SumTree(37)  # not a power of two: padding leaves must stay out of the sums
    leaves = rng.random(37)
    tree.update(np.arange(37), leaves)
    assert tree.capacity == 37
    assert tree.total() == pytest.approx(leaves.sum(), rel=1e-12)
    np.testing.assert_array_equal(tree.get(np.array([0, 5, 36])), leaves[[0, 5, 36]])
    np.testing.assert_array_equal(tree.leaves, leaves)
    tree.update(np.array([5]), np.array([10.0]))
    assert tree.total() == pytest.approx(leaves.sum() - leaves[5] + 10.0, rel=1e-12)


def test_sumtree_find_exact_intervals():
    tree = SumTree(4)
    tree.update(np.arange(4), np.array([1.0, 0.0, 2.0, 3.0]))
    values = np.array([0.0, 0.999, 1.0, 2.999, 3.0, 5.999])
    np.testing.assert_array_equal(tree.find(values), [0, 0, 2, 2, 3, 3])


def test_sumtree_find_proportions_and_never_zero():
    leaves = np.array([0.0, 1.0, 2.0, 0.0, 3.0, 0.5, 0.0, 1.5, 2.0, 0.0, 0.0, 0.0, 0.0])
    tree = SumTree(len(leaves))
    tree.update(np.arange(len(leaves)), leaves)
    rng = np.random.default_rng(1)
    n = 200_000
    idx = tree.find(rng.random(n) * tree.total())
    freq = np.bincount(idx, minlength=len(leaves)) / n
    assert (freq[leaves == 0] == 0).all()
    np.testing.assert_allclose(freq, leaves / leaves.sum(), atol=0.005)


def test_sumtree_right_edge_never_returns_zero_leaf():
    # Trailing zero leaves: a value at (or past, by round-off) the total must not descend into them.
    leaves = np.zeros(100)
    leaves[:30] = 0.1
    tree = SumTree(100)
    tree.update(np.arange(100), leaves)
    total = tree.total()
    values = np.array([total, np.nextafter(total, 0.0), total * (1 + 1e-15), 10 * total])
    idx = tree.find(values)
    assert (leaves[idx] > 0).all()
    np.testing.assert_array_equal(idx, [29, 29, 29, 29])


def test_sumtree_duplicates_last_write_wins():
    tree = SumTree(8)
    tree.update(np.array([2, 2, 5, 2]), np.array([5.0, 1.0, 3.0, 7.0]))
    assert tree.get(np.array([2]))[0] == 7.0
    assert tree.total() == 10.0

    rng = np.random.default_rng(2)
    big = SumTree(50)
    reference = np.zeros(50)
    for _ in range(20):
        idx = rng.integers(0, 50, size=40)  # many repeats
        val = rng.random(40)
        big.update(idx, val)
        for i, v in zip(idx, val, strict=True):
            reference[i] = v
    np.testing.assert_array_equal(big.leaves, reference)
    assert big.total() == pytest.approx(reference.sum(), rel=1e-12)


def test_sumtree_rebuild_from_leaves_is_bit_identical():
    rng = np.random.default_rng(3)
    tree = SumTree(1000)
    for _ in range(200):
        idx = rng.integers(0, 1000, size=64)
        # Spread magnitudes so accumulated deltas would drift away from a fresh rebuild.
        tree.update(idx, rng.random(64) * 10.0 ** rng.integers(-6, 6, size=64))
    rebuilt = SumTree(1000)
    rebuilt.set_leaves(tree.leaves)
    np.testing.assert_array_equal(rebuilt._nodes, tree._nodes)  # every internal sum
    assert rebuilt.total() == tree.total()


def test_sumtree_validation():
    tree = SumTree(4)
    with pytest.raises(ValueError, match="total priority is 0"):
        tree.find(np.array([0.0]))
    with pytest.raises(ValueError, match=">= 0"):
        tree.update(np.array([0]), np.array([-1.0]))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        tree.update(np.array([4]), np.array([1.0]))
    with pytest.raises(ValueError, match="capacity"):
        SumTree(0)


# ---------------------------------------------------------------------------------------------
# n-step returns. Observations are 1-D "ids" and gamma = 0.5 so every expected value is exact.


def _add_steps(buf, steps):
    """steps: (obs_id, reward, next_obs_id, terminated, truncated); the action equals the obs id."""
    for obs, reward, next_obs, terminated, truncated in steps:
        o = np.array([obs], np.float32)
        buf.add(o, o, reward, np.array([next_obs], np.float32), terminated, truncated)


def _sample_by_obs(buf, n=2000, seed=0):
    """Map obs id -> (reward, discount, next_obs id) over a large batch; checks repeats agree."""
    batch = buf.sample(n, np.random.default_rng(seed))
    out = {}
    for i in range(n):
        row = (float(batch.reward[i]), float(batch.discount[i]), float(batch.next_obs[i, 0]))
        assert out.setdefault(float(batch.obs[i, 0]), row) == row
        assert batch.action[i, 0] == batch.obs[i, 0]
    return out


def _episode(ids, rewards, final_next, terminated):
    steps = []
    for j, (o, r) in enumerate(zip(ids, rewards, strict=True)):
        last = j == len(ids) - 1
        nxt = final_next if last else ids[j + 1]
        steps.append((o, r, nxt, last and terminated, last and not terminated))
    return steps


def test_nstep_terminated_episode():
    buf = ReplayBuffer(16, (1,), (1,), n_step=3, gamma=0.5)
    _add_steps(buf, _episode([0, 1, 2, 3], [1.0, 2.0, 3.0, 4.0], 99, terminated=True))
    assert len(buf) == 4
    assert _sample_by_obs(buf) == {
        0.0: (1 + 0.5 * 2 + 0.25 * 3, 0.125, 3.0),
        1.0: (2 + 0.5 * 3 + 0.25 * 4, 0.0, 99.0),  # window reaches the terminal step
        2.0: (3 + 0.5 * 4, 0.0, 99.0),  # window shorter than n at the episode end
        3.0: (4.0, 0.0, 99.0),
    }


def test_nstep_truncated_episode_bootstraps():
    buf = ReplayBuffer(16, (1,), (1,), n_step=3, gamma=0.5)
    _add_steps(buf, _episode([0, 1, 2, 3], [1.0, 2.0, 3.0, 4.0], 99, terminated=False))
    assert _sample_by_obs(buf) == {
        0.0: (2.75, 0.125, 3.0),
        1.0: (4.5, 0.125, 99.0),
        2.0: (5.0, 0.25, 99.0),  # m = 2: bootstrap from the final next_obs with gamma^2
        3.0: (4.0, 0.5, 99.0),
    }


def test_nstep_one_step():
    buf = ReplayBuffer(16, (1,), (1,), n_step=1, gamma=0.5)
    _add_steps(buf, _episode([0, 1, 2], [1.0, 2.0, 3.0], 99, terminated=True))
    assert _sample_by_obs(buf) == {
        0.0: (1.0, 0.5, 1.0),
        1.0: (2.0, 0.5, 2.0),
        2.0: (3.0, 0.0, 99.0),
    }


def test_nstep_episode_shorter_than_n():
    buf = ReplayBuffer(16, (1,), (1,), n_step=5, gamma=0.5)
    _add_steps(buf, _episode([0, 1], [1.0, 2.0], 99, terminated=False))
    assert _sample_by_obs(buf) == {0.0: (2.0, 0.25, 99.0), 1.0: (2.0, 0.5, 99.0)}


def test_nstep_window_stops_at_episode_boundary():
    buf = ReplayBuffer(16, (1,), (1,), n_step=3, gamma=0.5)
    _add_steps(buf, _episode([0, 1], [1.0, 2.0], 50, terminated=False))
    _add_steps(buf, _episode([10, 11, 12], [4.0, 8.0, 16.0], 60, terminated=True))
    _add_steps(buf, [(20, 32.0, 21, False, False)])  # open episode: window incomplete
    assert len(buf) == 5
    assert _sample_by_obs(buf) == {
        0.0: (2.0, 0.25, 50.0),
        1.0: (2.0, 0.5, 50.0),
        10.0: (12.0, 0.0, 60.0),
        11.0: (16.0, 0.0, 60.0),
        12.0: (16.0, 0.0, 60.0),
    }


# ---------------------------------------------------------------------------------------------
# Activation and wrap-around


def test_incomplete_window_is_never_sampled_until_episode_ends():
    buf = ReplayBuffer(16, (1,), (1,), n_step=3, gamma=0.5)
    with pytest.raises(ValueError, match="need at least 1"):
        buf.sample(4, np.random.default_rng(0))
    _add_steps(buf, [(0, 1.0, 1, False, False), (1, 2.0, 2, False, False)])
    assert len(buf) == 0
    with pytest.raises(ValueError, match="0 sampleable"):
        buf.sample(4, np.random.default_rng(0))
    _add_steps(buf, [(2, 4.0, 3, False, False)])
    assert len(buf) == 1
    assert _sample_by_obs(buf) == {0.0: (1 + 1 + 1.0, 0.125, 3.0)}
    _add_steps(buf, [(3, 8.0, 4, False, False)])
    assert set(_sample_by_obs(buf)) == {0.0, 1.0}
    _add_steps(buf, [(4, 16.0, 5, False, True)])  # truncation activates everything pending
    assert len(buf) == 5
    assert set(_sample_by_obs(buf)) == {0.0, 1.0, 2.0, 3.0, 4.0}


def test_overwritten_slot_is_unsampleable():
    # capacity 5, n 3: step 5 overwrites slot 0 (step 0) and is itself still pending.
    buf = ReplayBuffer(5, (1,), (1,), n_step=3, gamma=0.5)
    _add_steps(buf, [(t, 1.0, t + 1, False, False) for t in range(6)])
    assert len(buf) == 3
    assert set(_sample_by_obs(buf)) == {1.0, 2.0, 3.0}


def test_wrap_around_keeps_newest_and_correct_returns():
    buf = ReplayBuffer(5, (1,), (1,), n_step=2, gamma=0.5)
    _add_steps(buf, [(t, float(t + 1), t + 1, False, False) for t in range(12)])
    # Slots hold steps 7..11; step 11 still waits for its second step. The window of step 9
    # wraps from slot 4 to slot 0.
    assert len(buf) == 4
    assert _sample_by_obs(buf) == {
        float(t): ((t + 1) + 0.5 * (t + 2), 0.25, float(t + 2)) for t in range(7, 11)
    }
    _add_steps(buf, [(12, 13.0, 100, False, True)])
    assert len(buf) == 5
    expected = {float(t): ((t + 1) + 0.5 * (t + 2), 0.25, float(t + 2)) for t in range(8, 11)}
    expected[11.0] = (12 + 0.5 * 13, 0.25, 100.0)
    expected[12.0] = (13.0, 0.5, 100.0)
    assert _sample_by_obs(buf) == expected


# ---------------------------------------------------------------------------------------------
# Sampling modes


def _filled(capacity=8, n_transitions=4, **kwargs):
    buf = ReplayBuffer(capacity, (1,), (1,), n_step=1, gamma=0.5, **kwargs)
    _add_steps(buf, _episode(list(range(n_transitions)), [1.0] * n_transitions, 99, True))
    return buf


def test_uniform_sampling_ignores_priorities():
    buf = _filled(n_transitions=6)
    buf.update_priorities(np.array([0, 1]), np.array([1000.0, 0.0]))  # no-op when uniform
    batch = buf.sample(60_000, np.random.default_rng(4))
    freq = np.bincount(batch.indices, minlength=8) / len(batch.indices)
    np.testing.assert_allclose(freq[:6], 1 / 6, atol=0.01)
    assert (freq[6:] == 0).all()
    np.testing.assert_array_equal(batch.weights, 1.0)


def test_prioritized_proportions_and_weights():
    # alpha 0.5, eps 1: raw priorities [1, 4, 9, 16] -> leaves [1, 2, 3, 4], P = [.1, .2, .3, .4].
    buf = _filled(prioritized=True, alpha=0.5, beta=1.0, priority_eps=1.0)
    rng = np.random.default_rng(5)
    uniform = buf.sample(1000, rng)  # everything starts at max priority 1 -> uniform, weight 1
    np.testing.assert_array_equal(uniform.weights, 1.0)
    buf.update_priorities(np.array([0, 1, 2, 3]), np.array([0.0, 3.0, 8.0, 15.0]))
    batch = buf.sample(100_000, rng)
    freq = np.bincount(batch.indices, minlength=4) / len(batch.indices)
    np.testing.assert_allclose(freq, [0.1, 0.2, 0.3, 0.4], atol=0.01)
    # beta 1: w = 1 / (N P), over max -> P_min / P; slot 0 (the max weight) is in the batch.
    expected = np.array([1.0, 0.5, 1 / 3, 0.25], np.float32)
    np.testing.assert_allclose(batch.weights, expected[batch.indices], rtol=1e-6)
    assert buf.sample(1, rng).weights[0] == 1.0  # normalised by the batch's own max

    buf.beta = 0.5
    batch = buf.sample(5000, rng)
    np.testing.assert_allclose(batch.weights, np.sqrt(expected)[batch.indices], rtol=1e-6)

    # A new transition enters at (max raw priority 16) ** 0.5 = 4, so its weight is 1/4 again.
    buf.beta = 1.0
    _add_steps(buf, [(10, 1.0, 11, True, False)])
    batch = buf.sample(20_000, rng)
    assert 0 in batch.indices and 4 in batch.indices
    np.testing.assert_allclose(batch.weights[batch.indices == 4], 0.25, rtol=1e-6)


def test_update_priorities_skips_overwritten_slots():
    buf = ReplayBuffer(2, (1,), (1,), n_step=2, gamma=0.5, prioritized=True)
    _add_steps(buf, [(0, 1.0, 1, False, False), (1, 1.0, 2, False, False)])
    stale = buf.sample(4, np.random.default_rng(0)).indices
    np.testing.assert_array_equal(stale, 0)
    _add_steps(buf, [(2, 1.0, 3, False, False)])  # overwrites slot 0, activates slot 1
    buf.update_priorities(stale, np.full(4, 100.0))
    batch = buf.sample(500, np.random.default_rng(1))
    np.testing.assert_array_equal(batch.indices, 1)
    np.testing.assert_array_equal(batch.obs[:, 0], 1.0)


def test_batch_dtypes_and_shapes():
    buf = ReplayBuffer(32, (3, 2), (4,), n_step=2, action_dtype=np.int32, prioritized=True)
    for t in range(10):
        obs = np.full((3, 2), t, np.float64)
        buf.add(obs, np.full(4, t, np.int32), 1.0, obs + 1, False, t == 9)
    batch = buf.sample(7, np.random.default_rng(0))
    assert isinstance(batch, Batch)
    assert batch.obs.shape == (7, 3, 2) and batch.obs.dtype == np.float32
    assert batch.next_obs.shape == (7, 3, 2) and batch.next_obs.dtype == np.float32
    assert batch.action.shape == (7, 4) and batch.action.dtype == np.int32
    for name in ("reward", "discount", "weights"):
        arr = getattr(batch, name)
        assert arr.shape == (7,) and arr.dtype == np.float32, name
    assert batch.indices.shape == (7,) and batch.indices.dtype == np.int64
    with pytest.raises(ValueError, match="shape"):
        buf.add(np.zeros(6), np.zeros(4), 0.0, np.zeros((3, 2)), False, False)


# ---------------------------------------------------------------------------------------------
# Determinism and checkpointing


def _random_buffer(**overrides):
    kwargs = dict(n_step=3, gamma=0.9, prioritized=True, alpha=0.6, beta=0.4)
    kwargs.update(overrides)
    return ReplayBuffer(50, (3,), (2,), **kwargs)


def _drive(buf, data_rng, steps):
    """Add steps with random episode ends (seeded by data_rng, not the sampling rng)."""
    for _ in range(steps):
        end = data_rng.random()
        buf.add(
            data_rng.normal(size=3),
            data_rng.normal(size=2),
            float(data_rng.normal()),
            data_rng.normal(size=3),
            bool(end < 0.05),
            bool(0.05 <= end < 0.1),
        )


def _assert_batches_equal(a, b):
    for name, x, y in zip(Batch._fields, a, b, strict=True):
        assert x.dtype == y.dtype, name
        np.testing.assert_array_equal(x, y, err_msg=name)


def _assert_same_continuation(buf, fresh, drive):
    """A restored buffer samples, takes priorities and stores new steps exactly as the buffer
    it was saved from (`drive(buffer, data_rng)` adds steps)."""
    assert len(fresh) == len(buf)
    np.testing.assert_array_equal(fresh._tree._nodes, buf._tree._nodes)
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    data_a, data_b = np.random.default_rng(4), np.random.default_rng(4)
    td_rng = np.random.default_rng(5)
    for _ in range(5):
        a, b = buf.sample(32, rng_a), fresh.sample(32, rng_b)
        _assert_samples_equal(a, b)
        td = np.abs(td_rng.normal(size=32))
        buf.update_priorities(a.indices, td)
        fresh.update_priorities(b.indices, td)
        drive(buf, data_a)
        drive(fresh, data_b)
    assert len(fresh) == len(buf)


def test_sampling_is_deterministic_given_rng_state():
    buf = _random_buffer()
    _drive(buf, np.random.default_rng(0), 40)
    rng = np.random.default_rng(7)
    state = rng.bit_generator.state
    first = buf.sample(32, rng)
    rng.bit_generator.state = state
    _assert_batches_equal(first, buf.sample(32, rng))
    assert not np.array_equal(first.indices, buf.sample(32, rng).indices)


@pytest.mark.parametrize("prioritized", [True, False])
def test_state_dict_round_trip(tmp_path, prioritized):
    data_rng = np.random.default_rng(1)
    rng = np.random.default_rng(2)
    buf = _random_buffer(prioritized=prioritized)
    _drive(buf, data_rng, 130)  # wraps the 50-slot storage
    for _ in range(3):
        batch = buf.sample(16, rng)
        buf.update_priorities(batch.indices, np.abs(rng.normal(size=16)) * 3)
    _drive(buf, data_rng, 2)  # leave activations/deactivations not yet applied to the tree

    state = buf.state_dict()
    assert all(isinstance(v, np.ndarray) for v in state.values())
    path = tmp_path / "replay.npz"
    np.savez(path, **state)
    with np.load(path, allow_pickle=False) as saved:
        fresh = _random_buffer(prioritized=prioritized)
        fresh.load_state_dict(saved)

    # the restored pending list and max priority at work
    _assert_same_continuation(buf, fresh, lambda b, data: _drive(b, data, 7))
    np.testing.assert_array_equal(fresh._tree._nodes, buf._tree._nodes)


def test_state_dict_only_filled_part():
    buf = _random_buffer()
    _drive(buf, np.random.default_rng(0), 12)
    state = buf.state_dict()
    assert state["obs"].shape == (12, 3)
    assert state["leaves"].shape == (12,)
    assert state["capacity"].shape == ()


def test_load_state_dict_rejects_mismatches():
    buf = _random_buffer()
    _drive(buf, np.random.default_rng(0), 20)
    state = buf.state_dict()
    with pytest.raises(ValueError, match="obs_shape"):
        ReplayBuffer(50, (4,), (2,), n_step=3, gamma=0.9, prioritized=True).load_state_dict(state)
    with pytest.raises(ValueError, match="prioritized"):
        _random_buffer(prioritized=False).load_state_dict(state)
    with pytest.raises(ValueError, match="n_step"):
        _random_buffer(n_step=2).load_state_dict(state)
    with pytest.raises(ValueError, match=r"missing.*pending"):
        _random_buffer().load_state_dict({k: v for k, v in state.items() if k != "pending"})
    bad = dict(state, obs=state["obs"].astype(np.float64))
    with pytest.raises(ValueError, match="'obs' has dtype float64"):
        _random_buffer().load_state_dict(bad)
    bad = dict(state, obs=state["obs"][:5])
    with pytest.raises(ValueError, match="'obs' has shape"):
        _random_buffer().load_state_dict(bad)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(capacity=0), r"capacity must be an integer >= 1"),
        (dict(n_step=0), r"n_step must be an integer >= 1"),
        (dict(capacity=2, n_step=3), r"capacity must be >= n_step"),
        (dict(gamma=1.5), r"gamma must be in \[0, 1\]"),
        (dict(gamma=-0.1), r"gamma must be in \[0, 1\]"),
        (dict(alpha=-1.0), r"alpha must be finite and >= 0"),
        (dict(beta=-0.5), r"beta must be finite and >= 0"),
        (dict(priority_eps=-1.0), r"priority_eps must be finite and >= 0"),
    ],
)
def test_constructor_validation(kwargs, match):
    args = dict(capacity=10, obs_shape=(1,), action_shape=(1,))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        ReplayBuffer(**args)


# ------------------------------------------------------------------------------ action sequences


def _seq_buffer(capacity=20, horizon=3, n_step=1):
    return ReplayBuffer(capacity, (1,), (1,), n_step=n_step, action_horizon=horizon)


def _add_episode(buf, actions, terminated=True):
    for i, a in enumerate(actions):
        last = i == len(actions) - 1
        buf.add(
            [float(a)], [float(a)], 0.0, [float(a)], last and terminated, last and not terminated
        )


def _sequences_by_first_action(buf, draws=400):
    batch = buf.sample(draws, np.random.default_rng(0))
    return {int(b.obs[0]): b.action[:, 0].tolist() for b in _rows(batch)}


def _rows(batch):
    for i in range(len(batch.indices)):
        yield type(batch)(*(field[i] for field in batch))


def test_sequences_are_the_executed_actions_padded_past_the_episode_end():
    buf = _seq_buffer()
    _add_episode(buf, [1, 2, 3, 4, 5])
    _add_episode(buf, [6, 7])  # the next episode must never leak into the first one's sequences
    seqs = _sequences_by_first_action(buf)
    assert seqs[1] == [1, 2, 3] and seqs[3] == [3, 4, 5]
    assert seqs[4] == [4, 5, 5] and seqs[5] == [5, 5, 5]
    assert seqs[6] == [6, 7, 7] and seqs[7] == [7, 7, 7]


def test_sequence_windows_wait_for_the_whole_horizon():
    buf = _seq_buffer(horizon=3, n_step=1)
    for a in (1, 2):
        buf.add([a], [a], 0.0, [a], False, False)
    assert len(buf) == 0  # n = 1 is complete, but not the 3-action sequence
    buf.add([3], [3], 0.0, [3], False, False)
    assert len(buf) == 1
    assert _sequences_by_first_action(buf) == {1: [1, 2, 3]}


def test_sequences_wrap_around_the_storage():
    buf = _seq_buffer(capacity=6, horizon=3)
    _add_episode(buf, range(1, 10), terminated=False)  # 9 steps into 6 slots
    seqs = _sequences_by_first_action(buf)
    assert set(seqs) == {4, 5, 6, 7, 8, 9}
    assert seqs[5] == [5, 6, 7] and seqs[6] == [6, 7, 8] and seqs[8] == [8, 9, 9]


def test_action_horizon_is_part_of_the_saved_configuration():
    buf = _seq_buffer(horizon=3)
    _add_episode(buf, [1, 2, 3])
    with pytest.raises(ValueError, match="action_horizon"):
        _seq_buffer(horizon=2).load_state_dict(buf.state_dict())
    with pytest.raises(ValueError, match="action_horizon"):
        ReplayBuffer(10, (1,), (1,), action_horizon=0)


@pytest.mark.parametrize(("n_step", "horizon"), [(1, 1), (3, 1), (1, 4), (3, 5)])
def test_uniform_fast_path_picks_exactly_the_slots_the_sum_tree_picks(n_step, horizon):
    # the uniform path skips the tree; it must agree with it slot for slot, through episode ends,
    # pending windows and wrap-around, so results do not depend on which path ran
    capacity = 37
    buf = ReplayBuffer(capacity, (1,), (1,), n_step=n_step, action_horizon=horizon)
    rng = np.random.default_rng(n_step * 10 + horizon)
    fast_used = sampled = 0
    for t in range(200):
        end = rng.random() < 0.08
        o = np.array([t], np.float32)
        buf.add(o, o, 1.0, o + 1, end and rng.random() < 0.5, end)
        if len(buf) == 0:
            continue
        sampled += 1
        u = rng.random(64)
        u[:3] = [0.0, np.nextafter(1.0, 0.0), 0.5]  # both edges of [0, 1)
        fast = buf._uniform_slots(u)
        buf._flush()
        expected = buf._tree.find(u * buf._tree.total())
        if fast is not None:
            fast_used += 1
            np.testing.assert_array_equal(fast, expected)
            assert buf._active[fast].all()
    assert fast_used == sampled  # the fast path is the one normally taken
    # a layout the fast path does not recognise falls back to the tree
    buf._pending.append(int(np.flatnonzero(buf._active)[0]))
    assert buf._uniform_slots(np.array([0.5])) is None


def test_n_step_returns_and_action_sequences_have_independent_lengths():
    """n = 2 and K = 4: reward, discount and next observation follow n; actions follow K."""
    gamma = 0.5
    buf = ReplayBuffer(20, (1,), (1,), n_step=2, gamma=gamma, action_horizon=4)
    for t in range(1, 7):  # obs t, action t, reward 10 t, next obs t + 1; terminates after 6
        buf.add([t], [t], 10.0 * t, [t + 1], t == 6, False)
    rows = {int(b.obs[0]): b for b in _rows(buf.sample(400, np.random.default_rng(0)))}
    assert set(rows) == {1, 2, 3, 4, 5, 6}
    for t, row in rows.items():
        assert row.action[:, 0].tolist() == [min(t + k, 6) for k in range(4)]
        if t <= 4:  # two whole steps, bootstrapped from the obs after them
            assert row.reward == pytest.approx(10 * t + gamma * 10 * (t + 1))
            assert row.discount == pytest.approx(gamma**2) and row.next_obs[0] == t + 2
        else:  # the episode terminates inside the n-step window: no bootstrap
            assert row.reward == pytest.approx(sum(10 * s * gamma ** (s - t) for s in range(t, 7)))
            assert row.discount == 0.0


# ------------------------------------------------------------------------ environment streams


def _stream_steps(base, ends, length=6):
    """One stream's steps (obs id, reward, next obs id, terminated, truncated): obs ids base + t,
    reward t + 1, and `ends` maps t -> "term" or "trunc" (the final next obs is base + 50 + t)."""
    steps = []
    for t in range(length):
        end = ends.get(t)
        nxt = base + 50 + t if end else base + t + 1
        steps.append((base + t, t + 1.0, nxt, end == "term", end == "trunc"))
    return steps


def _add_vector_steps(buf, streams):
    """Add the streams' steps in lockstep, one vector step per time index; action = obs id."""
    for rows in zip(*streams, strict=True):
        obs = np.array([[r[0]] for r in rows], np.float32)
        buf.add(
            obs,
            obs,
            np.array([r[1] for r in rows]),
            np.array([[r[2]] for r in rows], np.float32),
            np.array([r[3] for r in rows]),
            np.array([r[4] for r in rows]),
        )


def test_streams_compute_n_step_returns_within_their_own_episodes():
    buf = ReplayBuffer(48, (1,), (1,), n_step=3, gamma=0.5, num_envs=3)
    assert buf.capacity_per_env == 16
    _add_vector_steps(
        buf,
        [
            _stream_steps(0, {1: "term"}),  # a 2-step episode, then one still open
            _stream_steps(100, {3: "trunc"}),  # truncated after 4 steps, then one open
            _stream_steps(200, {}),  # one open episode
        ],
    )
    # every stream's t = 4 and 5 wait for their windows; stream 0's t = 0, 1 ended early
    assert len(buf) == 12
    stream2 = {
        200.0 + t: ((t + 1) + 0.5 * (t + 2) + 0.25 * (t + 3), 0.125, 203.0 + t) for t in range(4)
    }
    assert _sample_by_obs(buf) == {
        0.0: (1 + 0.5 * 2, 0.0, 51.0),
        1.0: (2.0, 0.0, 51.0),
        2.0: (3 + 0.5 * 4 + 0.25 * 5, 0.125, 5.0),
        3.0: (4 + 0.5 * 5 + 0.25 * 6, 0.125, 6.0),
        100.0: (1 + 0.5 * 2 + 0.25 * 3, 0.125, 103.0),
        101.0: (2 + 0.5 * 3 + 0.25 * 4, 0.125, 153.0),
        102.0: (3 + 0.5 * 4, 0.25, 153.0),  # truncation bootstraps, with gamma^2
        103.0: (4.0, 0.5, 153.0),
        **stream2,
    }
    # stream 2 terminates: its three pending steps activate, the others each gain one
    buf.add(
        np.array([[6], [106], [206]], np.float32),
        np.array([[6], [106], [206]], np.float32),
        np.array([7.0, 7.0, 7.0]),
        np.array([[7], [107], [256]], np.float32),
        np.array([False, False, True]),
        np.array([False, False, False]),
    )
    assert len(buf) == 17
    rows = _sample_by_obs(buf, n=4000)
    assert rows[4.0] == (5 + 0.5 * 6 + 0.25 * 7, 0.125, 7.0)
    assert rows[104.0] == (5 + 0.5 * 6 + 0.25 * 7, 0.125, 107.0)
    assert rows[204.0] == (5 + 0.5 * 6 + 0.25 * 7, 0.0, 256.0)
    assert rows[205.0] == (6 + 0.5 * 7, 0.0, 256.0)
    assert rows[206.0] == (7.0, 0.0, 256.0)
    assert 5.0 not in rows and 105.0 not in rows


def test_stream_windows_wrap_within_their_stream_and_never_cross_into_the_next():
    # 4 slots per stream: stream 0's step 3 sits in its last slot and its window continues in
    # its own slot 0 (step 4), which in flat order is right before stream 1's slot 0
    buf = ReplayBuffer(8, (1,), (1,), n_step=2, gamma=0.5, num_envs=2)
    stream0 = [(t, t + 1.0, t + 1, False, False) for t in range(6)]
    stream1 = [(100 + t, 100.0, 101 + t, False, False) for t in range(6)]
    _add_vector_steps(buf, [stream0, stream1])
    assert len(buf) == 6  # each stream holds steps 2..5, and step 5 waits for its window
    assert _sample_by_obs(buf) == {
        **{float(t): ((t + 1) + 0.5 * (t + 2), 0.25, float(t + 2)) for t in (2, 3, 4)},
        **{100.0 + t: (150.0, 0.25, 102.0 + t) for t in (2, 3, 4)},
    }


def test_action_sequences_follow_their_own_stream():
    buf = ReplayBuffer(20, (1,), (1,), action_horizon=3, num_envs=2)
    # stream 0: episode 1..4, then 5, 6 open; stream 1: episode 11, 12, then 13..16 open
    ends0, ends1 = (
        [False, False, False, True, False, False],
        [False, True, False, False, False, False],
    )
    for t in range(6):
        a = np.array([[1 + t], [11 + t]], np.float32)
        buf.add(a, a, np.zeros(2), a, np.array([ends0[t], ends1[t]]), np.zeros(2, bool))
    assert _sequences_by_first_action(buf) == {
        1: [1, 2, 3],
        2: [2, 3, 4],
        3: [3, 4, 4],
        4: [4, 4, 4],
        11: [11, 12, 12],
        12: [12, 12, 12],
        13: [13, 14, 15],
        14: [14, 15, 16],
    }


_FIELDS = {
    "state": ((2,), np.float32),
    "next_state": ((2,), np.float32),
    "demo": ((), bool),
}


def _add_with_fields(buf, streams):
    """Like _add_vector_steps, with state = (obs id, -obs id), next_state likewise for the next
    obs, and demo set on streams whose ids are >= 100."""
    for rows in zip(*streams, strict=True):
        ids = np.array([r[0] for r in rows], np.float32)
        nxt = np.array([r[2] for r in rows], np.float32)
        buf.add(
            ids[:, None],
            ids[:, None],
            np.array([r[1] for r in rows]),
            nxt[:, None],
            np.array([r[3] for r in rows]),
            np.array([r[4] for r in rows]),
            state=np.stack([ids, -ids], axis=1),
            next_state=np.stack([nxt, -nxt], axis=1),
            demo=ids >= 100,
        )


def test_extra_fields_are_read_at_t_and_next_fields_at_the_bootstrap_step():
    buf = ReplayBuffer(20, (1,), (1,), n_step=2, gamma=0.5, num_envs=2, extra_fields=_FIELDS)
    _add_with_fields(buf, [_stream_steps(0, {1: "term"}, 4), _stream_steps(100, {}, 4)])
    batch = buf.sample(500, np.random.default_rng(0))
    assert set(batch.extras) == {"state", "next_state", "demo"}
    assert batch.extras["state"].dtype == np.float32 and batch.extras["demo"].dtype == bool
    assert batch.extras["state"].shape == (500, 2) and batch.extras["demo"].shape == (500,)
    obs, next_obs = batch.obs[:, 0], batch.next_obs[:, 0]
    np.testing.assert_array_equal(batch.extras["state"], np.stack([obs, -obs], axis=1))
    np.testing.assert_array_equal(batch.extras["next_state"], np.stack([next_obs, -next_obs], 1))
    np.testing.assert_array_equal(batch.extras["demo"], obs >= 100)
    # 2-step windows: next_state comes from the step the window bootstraps from, not from t
    rows = dict(zip(obs.tolist(), batch.extras["next_state"][:, 0].tolist(), strict=True))
    assert rows == {0.0: 51.0, 1.0: 51.0, 2.0: 4.0, 100.0: 102.0, 101.0: 103.0, 102.0: 104.0}


def test_one_stream_takes_unbatched_steps_with_extra_fields_like_batched_ones():
    unbatched = ReplayBuffer(10, (1,), (1,), n_step=2, extra_fields=_FIELDS)
    batched = ReplayBuffer(10, (1,), (1,), n_step=2, extra_fields=_FIELDS)
    for t in range(12):
        o, end = np.array([t], np.float32), t % 5 == 4
        fields = dict(state=np.array([t, -t], np.float32), next_state=np.zeros(2), demo=t > 6)
        unbatched.add(o, o, 1.0, o + 1, end, False, **fields)
        batched.add(
            o[None], o[None], [1.0], o[None] + 1, [end], [False],
            **{k: np.asarray(v)[None] for k, v in fields.items()},
        )  # fmt: skip
    a = unbatched.sample(64, np.random.default_rng(1))
    b = batched.sample(64, np.random.default_rng(1))
    _assert_batches_equal(a, b)
    for name in _FIELDS:
        np.testing.assert_array_equal(a.extras[name], b.extras[name])
    np.testing.assert_array_equal(a.extras["state"][:, 0], a.obs[:, 0])


def test_one_stream_batched_adds_match_unbatched_ones():
    unbatched, batched = _random_buffer(), _random_buffer()
    data_a, data_b = np.random.default_rng(0), np.random.default_rng(0)
    _drive(unbatched, data_a, 130)
    _drive_streams(batched, data_b, 130)  # the same draws, with a stream axis of 1
    state_a, state_b = unbatched.state_dict(), batched.state_dict()
    for key in state_a:
        np.testing.assert_array_equal(state_a[key], state_b[key], err_msg=key)
    _assert_batches_equal(
        unbatched.sample(64, np.random.default_rng(2)), batched.sample(64, np.random.default_rng(2))
    )


def _drive_streams(buf, data_rng, steps, extras=False):
    """Random vector steps with random episode ends per stream; draws the same numbers as
    `_drive` for one stream (plus the extra fields, drawn last)."""
    n = buf.num_envs
    for _ in range(steps):
        end = data_rng.random(n)
        obs, action = data_rng.normal(size=(n, 3)), data_rng.normal(size=(n, 2))
        reward, next_obs = data_rng.normal(size=n), data_rng.normal(size=(n, 3))
        fields = {}
        if extras:
            fields = dict(
                state=data_rng.normal(size=(n, 2)),
                next_state=data_rng.normal(size=(n, 2)),
                demo=data_rng.random(n) < 0.5,
            )
        buf.add(obs, action, reward, next_obs, end < 0.05, (end >= 0.05) & (end < 0.1), **fields)


def test_uniform_sampling_covers_all_streams_evenly():
    buf = ReplayBuffer(200, (3,), (2,), n_step=3, num_envs=4)
    _drive_streams(buf, np.random.default_rng(0), 120)  # wraps each stream's 50 slots
    active = np.flatnonzero(buf._active)
    assert len(active) == len(buf) and len(buf) > 150
    assert len(set(active // 50)) == 4
    batch = buf.sample(200_000, np.random.default_rng(1))
    freq = np.bincount(batch.indices, minlength=200) / len(batch.indices)
    assert (freq[~buf._active] == 0).all()
    np.testing.assert_allclose(freq[active], 1 / len(active), atol=0.0015)
    per_stream = np.bincount(batch.indices // 50, minlength=4) / len(batch.indices)
    expected = np.bincount(active // 50, minlength=4) / len(active)
    np.testing.assert_allclose(per_stream, expected, atol=0.005)


@pytest.mark.parametrize(("n_step", "horizon"), [(1, 1), (3, 1), (2, 4)])
def test_uniform_fast_path_matches_the_sum_tree_across_streams(n_step, horizon):
    # as for one stream, plus each stream's unwritten tail before the streams fill up
    buf = ReplayBuffer(39, (1,), (1,), n_step=n_step, action_horizon=horizon, num_envs=3)
    rng = np.random.default_rng(n_step * 10 + horizon)
    for t in range(40):
        ends = rng.random(3) < 0.15
        o = np.full((3, 1), t, np.float32)
        buf.add(o, o, np.ones(3), o + 1, ends & (rng.random(3) < 0.5), ends)
        if len(buf) == 0:
            continue
        u = rng.random(64)
        u[:3] = [0.0, np.nextafter(1.0, 0.0), 0.5]
        fast = buf._uniform_slots(u)
        buf._flush()
        assert fast is not None
        np.testing.assert_array_equal(fast, buf._tree.find(u * buf._tree.total()))
        assert buf._active[fast].all()


def test_prioritized_sampling_follows_priorities_across_streams():
    buf = ReplayBuffer(
        12, (1,), (1,), prioritized=True, alpha=1.0, beta=1.0, priority_eps=0.0, num_envs=3
    )
    _add_vector_steps(buf, [_stream_steps(b, {3: "term"}, 4) for b in (0, 100, 200)])
    assert len(buf) == 12
    buf.update_priorities(np.arange(12), np.arange(1.0, 13.0))
    batch = buf.sample(200_000, np.random.default_rng(6))
    probs = np.arange(1.0, 13.0) / 78
    freq = np.bincount(batch.indices, minlength=12) / len(batch.indices)
    np.testing.assert_allclose(freq, probs, atol=0.005)
    np.testing.assert_allclose(
        np.bincount(batch.indices // 4) / len(batch.indices), probs.reshape(3, 4).sum(1), atol=0.005
    )
    # flat index env * 4 + slot: stream 2's slot 1 holds its step 1 (obs 201)
    np.testing.assert_array_equal(batch.obs[batch.indices == 9, 0], 201.0)
    np.testing.assert_allclose(batch.weights, (probs[0] / probs)[batch.indices], rtol=1e-6)


def _stream_buffer(**overrides):
    kwargs = dict(
        n_step=3, gamma=0.9, prioritized=True, alpha=0.6, beta=0.4, num_envs=3, extra_fields=_FIELDS
    )
    kwargs.update(overrides)
    return ReplayBuffer(60, (3,), (2,), **kwargs)


def _assert_samples_equal(a, b):
    _assert_batches_equal(a, b)
    assert a.extras.keys() == b.extras.keys()
    for name in a.extras:
        assert a.extras[name].dtype == b.extras[name].dtype, name
        np.testing.assert_array_equal(a.extras[name], b.extras[name], err_msg=name)


@pytest.mark.parametrize("prioritized", [True, False])
def test_state_dict_round_trip_with_streams_and_extra_fields(tmp_path, prioritized):
    data_rng, rng = np.random.default_rng(1), np.random.default_rng(2)
    buf = _stream_buffer(prioritized=prioritized)
    _drive_streams(buf, data_rng, 47, extras=True)  # wraps each stream's 20 slots
    for _ in range(3):
        batch = buf.sample(16, rng)
        buf.update_priorities(batch.indices, np.abs(rng.normal(size=16)) * 3)
    _drive_streams(buf, data_rng, 2, extras=True)  # tree writes not yet applied

    state = buf.state_dict()
    assert state["obs"].shape == (3, 20, 3) and state["leaves"].shape == (3, 20)
    assert state["extra.state"].shape == (3, 20, 2) and state["extra.demo"].dtype == bool
    assert int(state["num_envs"]) == 3
    np.savez(tmp_path / "replay.npz", **state)
    with np.load(tmp_path / "replay.npz", allow_pickle=False) as saved:
        fresh = _stream_buffer(prioritized=prioritized)
        fresh.load_state_dict(saved)

    # the restored pending lists at work
    _assert_same_continuation(buf, fresh, lambda b, data: _drive_streams(b, data, 4, extras=True))
    np.testing.assert_array_equal(fresh._tree._nodes, buf._tree._nodes)


_OLD_KEYS = {
    "capacity", "obs_shape", "action_shape", "n_step", "action_horizon", "gamma", "prioritized",
    "alpha", "priority_eps", "obs", "action", "reward", "next_obs", "terminated", "episode_end",
    "active", "leaves", "pending", "write_pos", "size", "max_priority",
}  # fmt: skip


def test_a_state_dict_saved_before_streams_existed_still_loads():
    # the layout checkpoints on disk have: no num_envs, no stream axis. Episode 0, 1, 2 ended by
    # termination and step 3 of the next one waits for its 2-step window.
    i64, f32 = np.int64, np.float32
    ids = np.array([[0.0], [1.0], [2.0], [3.0]], f32)
    old = {
        "capacity": np.asarray(8, i64),
        "obs_shape": np.asarray([1], i64),
        "action_shape": np.asarray([1], i64),
        "n_step": np.asarray(2, i64),
        "action_horizon": np.asarray(1, i64),
        "gamma": np.asarray(0.5),
        "prioritized": np.asarray(False),
        "alpha": np.asarray(0.6),
        "priority_eps": np.asarray(1e-6),
        "obs": ids,
        "action": ids.copy(),
        "reward": np.array([1.0, 2.0, 4.0, 8.0], f32),
        "next_obs": np.array([[1.0], [2.0], [99.0], [4.0]], f32),
        "terminated": np.array([False, False, True, False]),
        "episode_end": np.array([False, False, True, False]),
        "active": np.array([True, True, True, False]),
        "leaves": np.array([1.0, 1.0, 1.0, 0.0]),
        "pending": np.array([3], i64),
        "write_pos": np.asarray(4, i64),
        "size": np.asarray(4, i64),
        "max_priority": np.asarray(1.0),
    }
    assert set(old) == _OLD_KEYS
    loaded = ReplayBuffer(8, (1,), (1,), n_step=2, gamma=0.5)
    loaded.load_state_dict(old)
    assert len(loaded) == 3
    assert _sample_by_obs(loaded) == {
        0.0: (2.0, 0.25, 2.0),
        1.0: (4.0, 0.0, 99.0),
        2.0: (4.0, 0.0, 99.0),
    }
    # and it goes on exactly like the buffer that took those steps
    fresh = ReplayBuffer(8, (1,), (1,), n_step=2, gamma=0.5)
    _add_steps(fresh, _episode([0, 1, 2], [1.0, 2.0, 4.0], 99, terminated=True))
    _add_steps(fresh, [(3, 8.0, 4, False, False)])
    for buf in (loaded, fresh):
        _add_steps(buf, [(t, 1.0, t + 1, False, t == 9) for t in range(4, 10)])
    _assert_batches_equal(
        loaded.sample(64, np.random.default_rng(0)), fresh.sample(64, np.random.default_rng(0))
    )
    # a single-stream buffer still saves that layout, so older code can read new checkpoints
    state = fresh.state_dict()
    assert set(state) == _OLD_KEYS
    for key, value in old.items():
        assert state[key].dtype == value.dtype, key
    with pytest.raises(ValueError, match="num_envs=1 but this buffer has 2"):
        ReplayBuffer(8, (1,), (1,), n_step=2, gamma=0.5, num_envs=2).load_state_dict(old)
    with pytest.raises(ValueError, match=r"missing \['extra.demo'\]"):
        ReplayBuffer(
            8, (1,), (1,), n_step=2, gamma=0.5, extra_fields={"demo": ((), bool)}
        ).load_state_dict(old)


def _stream_state():
    buf = _stream_buffer()
    _drive_streams(buf, np.random.default_rng(0), 30, extras=True)
    return buf.state_dict()


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda s: s.update(num_envs=np.asarray(2, np.int64)), r"num_envs=2 but this buffer has 3"),
        (lambda s: s.pop("extra.demo"), r"missing \['extra.demo'\]"),
        (lambda s: s.update({"extra.foo": s["obs"]}), r"unexpected \['extra.foo'\]"),
        (
            lambda s: s.update({"extra.state": s["extra.state"].astype(np.float64)}),
            "'extra.state' has dtype float64",
        ),
        (
            lambda s: s.update({"extra.state": s["extra.state"][:, :, :1]}),
            "'extra.state' has shape",
        ),
        (lambda s: s.update(obs=s["obs"][0]), "'obs' has shape"),  # the stream axis is required
        (lambda s: s.update(size=np.asarray([10], np.int64)), "'size' must be a int64 scalar"),
        (lambda s: s.update(size=np.asarray(21, np.int64)), r"size must be in \[0, 20\]"),
        (lambda s: s.update(write_pos=np.asarray(20, np.int64)), "write_pos=20 is inconsistent"),
        (lambda s: s.update(pending=np.asarray([60], np.int64)), "outside the storage"),
        (lambda s: s.update(pending=s["pending"][::-1].copy()), "grouped by stream"),
        # within a stream: oldest first, and exactly its newest steps
        (lambda s: s.update(pending=s["pending"][[1, 0, 2, 3, 4, 5]]), "must be its newest 2"),
        (lambda s: s.update(pending=s["pending"] - 1), "must be its newest 2"),
        (lambda s: s.update(pending=s["pending"].astype(np.int32)), "pending must be 1-D int64"),
        (lambda s: s["active"].__setitem__((1, 3), ~s["active"][1, 3]), "active must mark"),
        (lambda s: s["leaves"].__setitem__((0, 0), np.inf), "leaves must be finite"),
        (lambda s: s.update(max_priority=np.asarray(0.0)), "max_priority must be finite and > 0"),
    ],
)
def test_load_state_dict_rejects_inconsistent_stream_states(change, match):
    state = _stream_state()
    np.testing.assert_array_equal(state["pending"], [8, 9, 28, 29, 48, 49])  # what changes edit
    change(state)
    before = _stream_buffer()
    _drive_streams(before, np.random.default_rng(9), 5, extras=True)
    snapshot = before.state_dict()
    with pytest.raises(ValueError, match=match):
        before.load_state_dict(state)
    after = before.state_dict()  # a refused state changes nothing
    for key in snapshot:
        np.testing.assert_array_equal(after[key], snapshot[key], err_msg=key)


def test_a_stream_state_does_not_load_into_one_stream_and_back():
    streams = _stream_state()
    with pytest.raises(ValueError, match="num_envs=3 but this buffer has 1"):
        _stream_buffer(num_envs=1).load_state_dict(streams)
    one = _stream_buffer(num_envs=1)
    _drive_streams(one, np.random.default_rng(0), 10, extras=True)
    with pytest.raises(ValueError, match="num_envs=1 but this buffer has 3"):
        _stream_buffer().load_state_dict(one.state_dict())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(num_envs=0), r"num_envs must be an integer >= 1"),
        (dict(num_envs=3), r"capacity must be a multiple of num_envs \(3\)"),
        (dict(num_envs=5, n_step=3), r"capacity must be >= n_step \(3\).*num_envs \(5\)"),
        (dict(num_envs=2, action_horizon=6), r"action_horizon \(6\) times num_envs \(2\)"),
        (dict(extra_fields={"obs": ((1,), np.float32)}), "extra field name 'obs'"),
        (dict(extra_fields={"self": ((1,), np.float32)}), "extra field name 'self'"),
        (dict(extra_fields={"a b": ((1,), np.float32)}), "extra field name 'a b'"),
        (dict(extra_fields={"x": np.float32}), "extra field 'x' must be given as"),
        (dict(extra_fields={"x": ((-1,), np.float32)}), "extra field 'x' has a negative"),
        (dict(extra_fields={"x": ((1,), object)}), "extra field 'x' cannot hold Python objects"),
    ],
)
def test_stream_and_field_constructor_validation(kwargs, match):
    args = dict(capacity=10, obs_shape=(1,), action_shape=(1,))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        ReplayBuffer(**args)


def test_add_rejects_bad_streams_and_fields_and_changes_nothing():
    buf = ReplayBuffer(20, (3,), (2,), num_envs=2, extra_fields=_FIELDS)
    good = dict(
        obs=np.zeros((2, 3)),
        action=np.zeros((2, 2)),
        reward=np.zeros(2),
        next_obs=np.zeros((2, 3)),
        terminated=np.zeros(2, bool),
        truncated=np.ones(2, bool),
        state=np.zeros((2, 2)),
        next_state=np.zeros((2, 2)),
        demo=np.zeros(2, bool),
    )
    buf.add(**good)
    assert len(buf) == 2
    snapshot = buf.state_dict()
    bad = [
        (dict(obs=np.zeros(3)), r"obs must have shape \(2, 3\)"),
        (dict(action=np.zeros((3, 2))), r"action must have shape \(2, 2\)"),
        (dict(reward=0.0), r"reward must have shape \(2,\)"),
        (dict(truncated=True), r"truncated must have shape \(2,\)"),
        (dict(state=np.zeros((2, 3))), r"extra field 'state' must have shape \(2, 2\)"),
        (dict(demo=np.zeros(1, bool)), r"extra field 'demo' must have shape \(2,\)"),
        (dict(foo=np.zeros(2)), "unknown extra field 'foo'"),
    ]
    for change, match in bad:
        with pytest.raises(ValueError, match=match):
            buf.add(**{**good, **change})
    with pytest.raises(ValueError, match="missing extra field 'next_state'"):
        buf.add(**{k: v for k, v in good.items() if k != "next_state"})
    with pytest.raises(ValueError, match="unknown extra field 'demo'"):
        ReplayBuffer(10, (3,), (2,)).add(
            np.zeros(3), np.zeros(2), 0.0, np.zeros(3), False, False, demo=True
        )
    after = buf.state_dict()
    for key in snapshot:
        np.testing.assert_array_equal(after[key], snapshot[key], err_msg=key)


def test_batches_still_unpack_as_seven_arrays_and_carry_their_extras():
    buf = ReplayBuffer(20, (1,), (1,), num_envs=2, extra_fields={"demo": ((), bool)})
    o = np.array([[1.0], [2.0]], np.float32)
    buf.add(o, o, np.zeros(2), o, np.ones(2, bool), np.zeros(2, bool), demo=np.array([True, False]))
    batch = buf.sample(4, np.random.default_rng(0))
    obs, _, reward, _, _, _, _ = batch  # still exactly seven arrays
    assert batch._fields == Batch._fields and len(batch) == 7
    np.testing.assert_array_equal(batch.extras["demo"], obs[:, 0] == 1.0)
    replaced = batch._replace(reward=reward + 1)
    assert type(replaced) is Batch and replaced.extras is not None
    np.testing.assert_array_equal(replaced.extras["demo"], batch.extras["demo"])
    np.testing.assert_array_equal(replaced.reward, reward + 1)
    assert "extras={'demo'" in repr(batch)
    assert ReplayBuffer(10, (1,), (1,)).extra_fields == {}
    one = _filled()
    assert one.sample(2, np.random.default_rng(0)).extras == {}


# ---------------------------------------------------------------------------------------------
# extend: a dataset of T steps per stream, stored as T adds would store it


def _dataset(data_rng, steps, n_envs, extras=True, end_rate=0.08):
    """Random time-major steps [T, N, ...] with episode ends of both kinds inside."""
    end = data_rng.random((steps, n_envs))
    data = {
        "obs": data_rng.normal(size=(steps, n_envs, 3)),
        "action": data_rng.normal(size=(steps, n_envs, 2)).astype(np.float32),
        "reward": data_rng.normal(size=(steps, n_envs)),
        "next_obs": data_rng.normal(size=(steps, n_envs, 3)).astype(np.float32),
        "terminated": end < end_rate / 2,
        "truncated": (end >= end_rate / 2) & (end < end_rate),
    }
    if extras:
        data["state"] = data_rng.normal(size=(steps, n_envs, 2))
        data["next_state"] = data_rng.normal(size=(steps, n_envs, 2))
        data["demo"] = data_rng.random((steps, n_envs)) < 0.5
    return data


def _add_each(buf, data):
    """The same dataset, one `add` per step."""
    core = ("obs", "action", "reward", "next_obs", "terminated", "truncated")
    for t in range(len(data["obs"])):
        extras = {k: v[t] for k, v in data.items() if k not in core}
        buf.add(*(data[k][t] for k in core), **extras)


def _assert_same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert sa[key].dtype == sb[key].dtype, key
        np.testing.assert_array_equal(sa[key], sb[key], err_msg=key)
    assert len(a) == len(b)
    np.testing.assert_array_equal(a._tree._nodes, b._tree._nodes)


@pytest.mark.parametrize("prioritized", [True, False])
@pytest.mark.parametrize(("n_step", "horizon"), [(1, 1), (3, 1), (2, 4)])
@pytest.mark.parametrize("steps", [0, 1, 5, 19, 20, 47])  # per stream: 20 slots
def test_extend_is_exactly_t_adds(prioritized, n_step, horizon, steps):
    data_rng = np.random.default_rng(steps * 100 + n_step * 10 + horizon)

    def make():
        return _stream_buffer(prioritized=prioritized, n_step=n_step, action_horizon=horizon)

    by_add, by_extend = make(), make()
    # a history first: stored steps, waiting windows and moved priorities for extend to continue
    before = _dataset(data_rng, 13, 3)
    _add_each(by_add, before)
    _add_each(by_extend, before)
    if len(by_add):
        batch = by_add.sample(16, np.random.default_rng(0))
        td = 3.0 * np.abs(data_rng.normal(size=16))  # raises the priority new steps enter with
        by_add.update_priorities(batch.indices, td)
        by_extend.update_priorities(batch.indices, td)
    data = _dataset(data_rng, steps, 3)
    _add_each(by_add, data)
    by_extend.extend(data)
    _assert_same_state(by_extend, by_add)
    if len(by_add):
        _assert_samples_equal(
            by_extend.sample(64, np.random.default_rng(1)),
            by_add.sample(64, np.random.default_rng(1)),
        )


def test_extend_in_pieces_equals_one_extend_and_one_stream_takes_unbatched_steps():
    data = _dataset(np.random.default_rng(7), 90, 1, extras=False, end_rate=0.03)
    whole, pieces, unbatched = (_random_buffer() for _ in range(3))
    whole.extend(data)
    for lo, hi in [(0, 1), (1, 4), (4, 4), (4, 61), (61, 90)]:
        pieces.extend({k: v[lo:hi] for k, v in data.items()})
    unbatched.extend({k: v[:, 0] for k, v in data.items()})  # [T, ...]: no stream axis
    by_add = _random_buffer()
    _add_each(by_add, {k: v[:, 0] for k, v in data.items()})
    for buf in (whole, pieces, unbatched):
        _assert_same_state(buf, by_add)


def test_extend_takes_flags_as_numbers_and_casts_like_add():
    data = _dataset(np.random.default_rng(8), 30, 3)
    numbers = {**data, "terminated": data["terminated"].astype(np.float32)}
    numbers["demo"] = data["demo"].astype(np.int64)
    a, b = _stream_buffer(), _stream_buffer()
    a.extend(data)
    b.extend(numbers)
    _assert_same_state(a, b)
    assert a.state_dict()["obs"].dtype == np.float32  # float64 data stored as float32


def test_extend_of_a_large_dataset_is_much_faster_than_adding_it():
    import time

    n = 200_000
    data = _dataset(np.random.default_rng(9), n, 1, extras=False, end_rate=0.002)
    one_by_one = ReplayBuffer(n, (3,), (2,), n_step=3, prioritized=True)
    start = time.perf_counter()
    _add_each(one_by_one, {k: v[:2000] for k, v in data.items()})
    adds = (time.perf_counter() - start) * n / 2000  # the whole dataset, one add at a time
    buf = ReplayBuffer(n, (3,), (2,), n_step=3, prioritized=True)
    start = time.perf_counter()
    buf.extend(data)
    # a ratio of the two on the same machine, not a time, so load on the machine cancels out
    assert time.perf_counter() - start < adds / 5
    last_end = n - 1 - np.argmax((data["terminated"] | data["truncated"])[::-1, 0])
    assert len(buf) == n - min(n - 1 - last_end, 2)  # only the open episode's last steps wait


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda d: d.pop("reward"), r"missing \['reward'\]"),
        (lambda d: d.update(info=d["reward"]), r"unexpected \['info'\]"),
        (lambda d: d.update(obs=d["obs"][:, 0]), r"\[T, num_envs, \.\.\.\]"),
        (lambda d: d.update(reward=d["reward"][:-1]), r"'reward' must have shape \(6, 3\)"),
        (lambda d: d.update(action=d["action"][..., :1]), r"'action' must have shape \(6, 3, 2\)"),
        (lambda d: d.update(terminated=d["reward"]), "'terminated' must be bool or hold only 0"),
        (lambda d: d.update(obs=d["obs"].astype(complex)), "'obs' has dtype complex128"),
        (lambda d: d.update(state=d["state"].astype(object)), "'state' has dtype object"),
    ],
)
def test_extend_rejects_bad_datasets_in_one_line_and_changes_nothing(change, match):
    buf = _stream_buffer()
    _drive_streams(buf, np.random.default_rng(0), 9, extras=True)
    snapshot = buf.state_dict()
    data = _dataset(np.random.default_rng(1), 6, 3)
    change(data)
    with pytest.raises(ValueError, match=match) as info:
        buf.extend(data)
    assert "\n" not in str(info.value)
    after = buf.state_dict()
    for key in snapshot:
        np.testing.assert_array_equal(after[key], snapshot[key], err_msg=key)


# ---------------------------------------------------------------------------------------------
# MixedReplay: a fixed share of every batch from a second buffer


def _two_buffers(prioritized=False):
    """A main buffer whose obs are 0..39 and a second one (demonstrations) whose obs are
    1000..1029, both with a `demo` flag, so every row shows where it came from."""
    fields = {"demo": ((), bool)}
    main = ReplayBuffer(40, (1,), (1,), prioritized=prioritized, extra_fields=fields)
    second = ReplayBuffer(30, (1,), (1,), prioritized=prioritized, extra_fields=fields)
    for buf, base, demo in ((main, 0, False), (second, 1000, True)):
        t = np.arange(buf.capacity, dtype=np.float32)
        obs = (base + t)[:, None]
        buf.extend(
            {
                "obs": obs,
                "action": obs,
                "reward": np.ones_like(t),
                "next_obs": obs + 1,
                "terminated": t % 10 == 9,
                "truncated": np.zeros_like(t, bool),
                "demo": np.full(t.shape, demo),
            }
        )
    return main, second


@pytest.mark.parametrize(
    ("batch_size", "share", "second"),
    [
        (10, 0.25, 3),
        (8, 0.25, 2),
        (6, 0.25, 2),
        (2, 0.25, 1),
        (3, 0.1, 0),
        (5, 0.0, 0),
        (5, 1.0, 5),
    ],
)
def test_mixed_split_rounds_halves_up(batch_size, share, second):
    assert mixed_split(batch_size, share) == second


@pytest.mark.parametrize("share", [0.0, 0.3, 0.5, 1.0])
def test_mixed_batches_are_main_rows_then_second_rows_drawn_with_one_rng(share):
    main, second = _two_buffers()
    mixed = MixedReplay(main, second, share)
    batch = mixed.sample(20, np.random.default_rng(4))
    k = mixed.split(20)
    assert k == round(20 * share)
    from_second = batch.obs[:, 0] >= 1000
    np.testing.assert_array_equal(from_second, np.arange(20) >= 20 - k)
    np.testing.assert_array_equal(batch.extras["demo"], from_second)
    # the same draws as sampling each buffer in turn with the same generator
    rng = np.random.default_rng(4)
    parts = [buf.sample(rows, rng) for buf, rows in ((main, 20 - k), (second, k)) if rows]
    expected = Batch(
        *(np.concatenate(columns) for columns in zip(*parts, strict=True)),
        extras={"demo": np.concatenate([p.extras["demo"] for p in parts])},
    )
    _assert_samples_equal(batch, expected)
    _assert_samples_equal(batch, mixed.sample(20, np.random.default_rng(4)))
    assert len(mixed) == len(main) + len(second)


def test_mixed_priorities_go_back_to_the_buffer_each_row_came_from():
    main, second = _two_buffers(prioritized=True)
    twin_main, twin_second = _two_buffers(prioritized=True)
    mixed = MixedReplay(main, second, 0.25)
    assert mixed.prioritized
    batch = mixed.sample(16, np.random.default_rng(5))
    td = np.arange(16, dtype=np.float64)
    mixed.update_priorities(batch.indices, td)
    twin_main.update_priorities(batch.indices[:12], td[:12])
    twin_second.update_priorities(batch.indices[12:], td[12:])
    np.testing.assert_array_equal(main._tree.leaves, twin_main._tree.leaves)
    np.testing.assert_array_equal(second._tree.leaves, twin_second._tree.leaves)
    assert not np.array_equal(second._tree.leaves, _two_buffers(True)[1]._tree.leaves)


def test_mixed_replay_refuses_an_empty_part_incompatible_buffers_and_bad_shares():
    main, second = _two_buffers()
    empty = ReplayBuffer(30, (1,), (1,), extra_fields={"demo": ((), bool)})
    with pytest.raises(ValueError, match="from the second buffer: it holds 0 sampleable"):
        MixedReplay(main, empty, 0.1).sample(32, np.random.default_rng(0))
    MixedReplay(main, empty, 0.0).sample(32, np.random.default_rng(0))  # nothing to draw there
    MixedReplay(empty, second, 1.0).sample(32, np.random.default_rng(0))  # offline: all second
    with pytest.raises(ValueError, match="from the main buffer"):
        MixedReplay(empty, second, 0.5).sample(32, np.random.default_rng(0))
    with pytest.raises(ValueError, match="extra_fields"):
        MixedReplay(main, ReplayBuffer(30, (1,), (1,)), 0.5)
    with pytest.raises(ValueError, match="action_shape"):
        MixedReplay(main, ReplayBuffer(30, (1,), (2,), extra_fields={"demo": ((), bool)}), 0.5)
    for share in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"share must be in \[0, 1\]"):
            MixedReplay(main, second, share)


def test_learner_batches_carry_the_extra_fields_into_a_jitted_update():
    import jax

    from factorl.core.agent import TrainBatch

    buf = ReplayBuffer(20, (1,), (1,), num_envs=2, extra_fields=_FIELDS)
    _add_with_fields(buf, [_stream_steps(0, {5: "term"}), _stream_steps(100, {2: "trunc"})])
    sample = buf.sample(8, np.random.default_rng(0))
    batch = TrainBatch.from_sample(sample)
    assert batch.extras.keys() == sample.extras.keys()
    assert batch.extras is not sample.extras  # the learner's dict, not the replay's
    traces = []

    @jax.jit
    def update(batch):
        traces.append(1)
        return batch.reward + batch.extras["state"][:, 0]

    np.testing.assert_allclose(update(batch), sample.reward + sample.extras["state"][:, 0])
    update(TrainBatch.from_sample(buf.sample(8, np.random.default_rng(1))))
    assert len(traces) == 1  # the same fields compile once
    plain = TrainBatch(*sample[:6])  # six positional fields, as before extras existed
    assert plain.extras == {} and plain._replace(reward=1).extras == {}
    assert TrainBatch.from_sample(_filled().sample(2, np.random.default_rng(0))).extras == {}
