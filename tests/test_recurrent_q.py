"""The shared recurrent agent Q-network (resets, scan, parameter sharing) and masked action
selection."""

import subprocess
import sys
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.tree_util import tree_leaves

from factorl.maths.networks import (
    RecurrentAgentQ,
    mask_unavailable,
    masked_epsilon_greedy,
    masked_greedy,
    orthogonal,
    unroll_agent_q,
    unroll_gru,
    unroll_windows,
)

T, B, N, OBS, A, H = 6, 2, 3, 4, 5, 8
NET = RecurrentAgentQ(A, H)


@pytest.fixture(scope="module")
def case():
    k_param, k_obs, k_h = jax.random.split(jax.random.PRNGKey(0), 3)
    params = NET.init(k_param, NET.initial_hidden(B, N), jnp.zeros((B, N, OBS)), jnp.zeros(B, bool))
    obs = jax.random.normal(k_obs, (T, B, N, OBS))
    # a hidden state left over from some earlier episode
    stale = jax.random.normal(k_h, (B, N, H))
    return params, obs, stale


def _unroll(params, hidden, obs, resets):
    return jax.jit(unroll_agent_q, static_argnums=0)(NET, params, hidden, obs, resets)


def test_shapes_and_initial_hidden(case):
    params, obs, _ = case
    h0 = NET.initial_hidden(B, N)
    assert h0.shape == (B, N, H) and not np.any(np.asarray(h0))
    hiddens, q = _unroll(params, h0, obs, jnp.zeros((T, B), bool))
    assert hiddens.shape == (T, B, N, H) and q.shape == (T, B, N, A)
    # the id is part of the input: Dense(obs + N) -> H
    assert params["params"]["embed"]["kernel"].shape == (OBS + N, H)


def test_scan_equals_stepping_one_by_one(case):
    params, obs, stale = case
    resets = jnp.zeros((T, B), bool).at[0].set(True).at[3, 1].set(True)
    hiddens, q = _unroll(params, stale, obs, resets)
    h = stale
    step = jax.jit(NET.apply)
    for t in range(T):
        h, q_t = step(params, h, obs[t], resets[t])
        np.testing.assert_allclose(q[t], q_t, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(hiddens[t], h, rtol=1e-5, atol=1e-6)


def test_reset_starts_a_fresh_sequence(case):
    params, obs, stale = case
    # env 0 starts a new episode at t=3; env 1 does not
    resets = jnp.zeros((T, B), bool).at[0].set(True).at[3, 0].set(True)
    _, q = _unroll(params, stale, obs, resets)
    _, fresh = _unroll(params, NET.initial_hidden(B, N), obs[3:], jnp.zeros((T - 3, B), bool))
    np.testing.assert_allclose(q[3:, 0], fresh[:, 0], rtol=1e-5, atol=1e-6)
    # without a reset the memory of t < 3 carries on (so the check above can fail)
    assert not np.allclose(q[3:, 1], fresh[:, 1], atol=1e-3)
    # the flag acts before the step: a stale hidden state is ignored at a reset step
    _, q0 = jax.jit(NET.apply)(params, stale, obs[0], jnp.ones(B, bool))
    _, q0_fresh = jax.jit(NET.apply)(params, NET.initial_hidden(B, N), obs[0], jnp.zeros(B, bool))
    np.testing.assert_allclose(q0, q0_fresh, rtol=1e-5, atol=1e-6)
    assert not np.allclose(jax.jit(NET.apply)(params, stale, obs[0], jnp.zeros(B, bool))[1], q0)


def test_per_agent_reset_flags(case):
    params, obs, stale = case
    resets = jnp.zeros((T, B, N), bool).at[0].set(True).at[2, :, 1].set(True)
    _, q = _unroll(params, stale, obs, resets)
    _, fresh = _unroll(params, NET.initial_hidden(B, N), obs[2:], jnp.zeros((T - 2, B), bool))
    np.testing.assert_allclose(q[2:, :, 1], fresh[:, :, 1], rtol=1e-5, atol=1e-6)
    assert not np.allclose(q[2:, :, 0], fresh[:, :, 0], atol=1e-3)


def test_parameters_are_shared_across_agents(case):
    params, obs, _ = case
    h0 = NET.initial_hidden(B, N)
    no_reset = jnp.zeros(B, bool)
    step = jax.jit(NET.apply)
    _, q = step(params, h0, obs[0], no_reset)
    # an agent's Q depends on its own obs and id only: other agents' obs do not enter it
    other = obs[0].at[:, 0].set(obs[1, :, 0]).at[:, 2].set(-obs[0, :, 2])
    _, q_other = step(params, h0, other, no_reset)
    np.testing.assert_allclose(q_other[:, 1], q[:, 1], rtol=1e-6)
    assert not np.allclose(q_other[:, 0], q[:, 0])
    # the same obs in every slot: the one-hot id tells the agents apart
    same = jnp.broadcast_to(obs[0, :, :1], (B, N, OBS))
    _, q_same = step(params, h0, same, no_reset)
    for i in range(N):
        for j in range(i):
            assert not np.allclose(q_same[:, i], q_same[:, j], atol=1e-4)
    # and every agent runs the one set of weights (no per-agent copies): agent i's Q is those
    # layers applied to its obs with its id appended
    p = params["params"]
    gru = nn.GRUCell(H)
    for i in range(N):
        x = jnp.concatenate([obs[0, :, i], jnp.broadcast_to(jnp.eye(N)[i], (B, N))], axis=-1)
        x = jax.nn.relu(x @ p["embed"]["kernel"] + p["embed"]["bias"])
        _, x = gru.apply({"params": p["gru"]}, jnp.zeros((B, H)), x)
        q_i = x @ p["head"]["kernel"] + p["head"]["bias"]
        np.testing.assert_allclose(q[:, i], q_i, rtol=1e-5, atol=1e-6)


def _stepped_windows(params, obs, next_obs, resets):
    """Q at obs and at next_obs by stepping the net one step at a time (the definition)."""
    step = jax.jit(NET.apply)
    h = NET.initial_hidden(B, N)
    q, q_next = [], []
    for t in range(obs.shape[0]):
        h, q_t = step(params, h, obs[t], resets[t])
        q.append(q_t)
        q_next.append(step(params, h, next_obs[t], jnp.zeros(B, bool))[1])
    return jnp.stack(q), jnp.stack(q_next)


@pytest.mark.parametrize("truncate_inside", [False, True])
def test_window_unroll_equals_stepping_for_both_parameter_sets(case, truncate_inside):
    params, obs, _ = case
    other = jax.tree_util.tree_map(lambda x: x * 1.1 + 0.01, params)
    k_next, k_final = jax.random.split(jax.random.PRNGKey(9))
    # inside an episode next_obs[t] = obs[t+1]; at an episode end it is the true final one
    next_obs = jnp.concatenate([obs[1:], jax.random.normal(k_next, obs[:1].shape)], axis=0)
    terminated = jnp.zeros((T, B), bool).at[1, 0].set(True)
    truncated = jnp.zeros((T, B), bool).at[T - 1].set(True)
    if truncate_inside:
        truncated = truncated.at[3, 1].set(True)
    ended = terminated | truncated
    finals = jax.random.normal(k_final, obs.shape)
    next_obs = jnp.where(ended[..., None, None], finals, next_obs)
    resets = jnp.concatenate([jnp.ones((1, B), bool), ended[:-1]], axis=0)
    got = jax.jit(unroll_windows, static_argnums=0)(
        NET, (params, other), obs, next_obs, resets, truncated
    )
    for p, (q, q_next) in zip((params, other), got, strict=True):
        want_q, want_next = _stepped_windows(p, obs, next_obs, resets)
        np.testing.assert_allclose(q, want_q, rtol=1e-5, atol=1e-6)
        # exact wherever it is bootstrapped from: every step but the terminated one
        live = ~np.asarray(terminated)
        np.testing.assert_allclose(
            np.asarray(q_next)[live], np.asarray(want_next)[live], rtol=1e-5, atol=1e-6
        )
        assert np.all(np.isfinite(q_next))
    # a truncation inside the window needs the true final observation: reading Q off the next
    # episode's first step instead would be wrong there (so the check above can fail)
    if truncate_inside:
        q_next = got[0][1]
        want_next = _stepped_windows(params, obs, next_obs, resets)[1]
        wrong = NET.apply(params, NET.initial_hidden(B, N), obs[4], jnp.ones(B, bool))[1]
        assert not np.allclose(want_next[3, 1], wrong[1], atol=1e-3)
        np.testing.assert_allclose(q_next[3, 1], want_next[3, 1], rtol=1e-5, atol=1e-6)


def test_window_unroll_differentiates_only_the_q_at_obs(case):
    params, obs, _ = case
    resets = jnp.zeros((T, B), bool).at[0].set(True)
    truncated = jnp.zeros((T, B), bool).at[2, 0].set(True)

    def next_only(p):
        ((_, q_next),) = unroll_windows(NET, (p,), obs, obs, resets, truncated)
        return q_next.sum()

    def at_obs(p):
        ((q, _),) = unroll_windows(NET, (p,), obs, obs, resets, truncated)
        return q.sum()

    zero = jax.grad(next_only)(params)
    assert all(not np.any(np.asarray(g)) for g in jax.tree_util.tree_leaves(zero))
    assert any(np.any(np.asarray(g)) for g in jax.tree_util.tree_leaves(jax.grad(at_obs)(params)))


def _cell_scan(gru, inputs, resets, h0):
    """Flax's GRUCell stepped along time by autodiff's own scan: the reference for unroll_gru."""
    cell = nn.GRUCell(h0.shape[-1])

    def step(h, x):
        x_t, reset = x
        h = jnp.where(reset[..., None], 0.0, h)
        h, _ = cell.apply({"params": gru}, h, x_t)
        return h, h

    return jax.lax.scan(step, h0, (inputs, resets))[1]


@pytest.mark.parametrize("per_agent", [False, True])
def test_gru_unroll_values_and_gradients_equal_the_flax_cell(case, per_agent):
    params, _, stale = case
    gru = params["params"]["gru"]
    k_x, k_r, k_w = jax.random.split(jax.random.PRNGKey(11), 3)
    inputs = jax.random.normal(k_x, (T, B, N, H))
    flags = jax.random.bernoulli(k_r, 0.3, (T, B, N) if per_agent else (T, B))
    full = flags if per_agent else jnp.broadcast_to(flags[..., None], (T, B, N))
    weights = jax.random.normal(k_w, (T, B, N, H))  # a loss that weighs every hidden unit

    got = jax.jit(unroll_gru)(gru, inputs, flags, stale)
    want = jax.jit(_cell_scan)(gru, inputs, full, stale)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)

    def loss(unroll, resets):
        def f(gru, inputs, h0):
            h = unroll(gru, inputs, resets, h0)
            return jnp.sum(weights * h) + jnp.sum(h**2)

        return jax.jit(jax.grad(f, argnums=(0, 1, 2)))(gru, inputs, stale)

    got_grads, want_grads = loss(unroll_gru, flags), loss(_cell_scan, full)
    assert jax.tree_util.tree_structure(got_grads) == jax.tree_util.tree_structure(want_grads)
    leaves = zip(tree_leaves(got_grads), tree_leaves(want_grads), strict=True)
    for g, w in leaves:
        assert np.any(np.asarray(w))  # every gradient is exercised
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5 * float(np.max(np.abs(w))))


def _avail_case(n: int = 200):
    k_q, k_a = jax.random.split(jax.random.PRNGKey(5))
    q = jax.random.normal(k_q, (n, N, A))
    avail = jax.random.bernoulli(k_a, 0.5, (n, N, A))
    avail = avail.at[..., 2].set(True)  # at least one available action in every row
    return q, avail


def test_masked_greedy_picks_the_best_available_action():
    q, avail = _avail_case()
    picked = np.asarray(jax.jit(masked_greedy)(q, avail))
    assert picked.dtype == np.int32 and picked.shape == q.shape[:-1]
    a = np.asarray(avail)
    assert np.all(np.take_along_axis(a, picked[..., None], -1))
    expected = np.argmax(np.where(a, np.asarray(q), -np.inf), axis=-1)
    np.testing.assert_array_equal(picked, expected)
    # the unmasked argmax is unavailable in many rows, so the mask does the work
    assert np.mean(~np.take_along_axis(a, np.argmax(np.asarray(q), -1)[..., None], -1)) > 0.2
    # an available action wins even with a hugely negative value
    q_low = jnp.array([[5.0, -1e30, 7.0]])
    assert int(masked_greedy(q_low, jnp.array([[0, 1, 0]]))[0]) == 1
    assert float(mask_unavailable(q_low, jnp.array([[0, 1, 0]]))[0, 0]) < -1e30


def test_epsilon_one_draws_uniformly_over_available_actions():
    avail = jnp.array([[1, 0, 1, 1, 0], [0, 0, 0, 1, 0], [1, 1, 1, 1, 1]], bool)  # [N, A]
    draws = 10_000
    q = jnp.zeros((draws, N, A)).at[..., 1].set(10.0)  # the greedy choice would be unavailable
    picked = np.asarray(
        jax.jit(masked_epsilon_greedy)(
            jax.random.PRNGKey(1), q, jnp.broadcast_to(avail, q.shape), 1.0
        )
    )
    for i in range(N):
        counts = np.bincount(picked[:, i], minlength=A)
        ok = np.asarray(avail[i])
        assert np.all(counts[~ok] == 0)
        assert np.all(counts[ok] > 0)
        # uniform: every available action within 5 standard deviations of draws / k
        k = ok.sum()
        sd = np.sqrt(draws * (1 / k) * (1 - 1 / k))
        assert np.all(np.abs(counts[ok] - draws / k) < 5 * sd + 1e-9)


def test_epsilon_zero_is_masked_greedy_and_between_mixes():
    q, avail = _avail_case(2000)
    greedy = np.asarray(masked_greedy(q, avail))
    act = jax.jit(masked_epsilon_greedy)
    np.testing.assert_array_equal(act(jax.random.PRNGKey(2), q, avail, 0.0), greedy)
    picked = np.asarray(act(jax.random.PRNGKey(3), q, avail, 0.5))
    assert np.all(np.take_along_axis(np.asarray(avail), picked[..., None], -1))
    # P(not greedy) = eps (k - 1) / k, averaged over the rows' numbers of available actions k
    k = np.asarray(avail).sum(-1)
    expected = np.mean(0.5 * (k - 1) / k)
    assert abs(np.mean(picked != greedy) - expected) < 0.03


def test_orthogonal_matches_flax_one_matrix_at_a_time_under_vmap():
    keys = jax.random.split(jax.random.PRNGKey(3), 3)
    batched = jax.vmap(lambda k: orthogonal(0.5)(k, (5, 7)))(keys)
    one_by_one = jnp.stack([nn.initializers.orthogonal(0.5)(k, (5, 7)) for k in keys])
    np.testing.assert_array_equal(batched, one_by_one)
    nested = jax.vmap(jax.vmap(lambda k: orthogonal()(k, (4, 4))))(keys[:2, None].repeat(2, 1))
    assert nested.shape == (2, 2, 4, 4)
    np.testing.assert_array_equal(nested[0, 0], nested[0, 1])


def test_vmapped_init_of_the_agent_network_and_mixer_does_not_deadlock():
    """jaxlib's batched CPU QR waits on the thread pool it runs in; a vmapped init with several
    orthogonal kernels hung on its second call. Runs in a child process, killed if it hangs."""
    code = textwrap.dedent(
        """
        import jax, jax.numpy as jnp
        from factorl.maths.mixers import qmix
        from factorl.maths.networks import RecurrentAgentQ
        net, mixer = RecurrentAgentQ(5, 16), qmix()
        def init(key):
            k1, k2 = jax.random.split(key)
            p = net.init(k1, net.initial_hidden(1, 3), jnp.zeros((1, 3, 4)), jnp.zeros(1, bool))
            return p, mixer.init(k2, 3, (6,))
        f = jax.jit(jax.vmap(init))
        for i in range(20):
            jax.block_until_ready(f(jax.random.split(jax.random.PRNGKey(i), 2)))
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
