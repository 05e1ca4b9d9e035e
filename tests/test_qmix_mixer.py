"""QMIX's mixer: a hand-worked case, monotonicity in every agent's Q, shapes, jit and vmap."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from factorl.maths.mixers import MIXERS, bind, qmix, select


def _dense(kernel, bias):
    return {"kernel": jnp.array(kernel, jnp.float32), "bias": jnp.array(bias, jnp.float32)}


def _hand_params(layers: int) -> dict:
    """M=2 agents, E=2, a 1-d state; hyper_hidden=2. With s = [2] both layer counts give
    w1 = [[2, 3], [1, 1]], b1 = [2, -1.5], w2 = [1, 2], b2 = 3.5 (worked out beside each layer)."""
    if layers == 2:
        # w1: ReLU([1, -1] * 2) = [2, 0]; [2, 0] @ out + [0, 0, 0, 1] = [2, -3, 1, 1]; |.| as [2, 2]
        w1 = {
            "hidden": _dense([[1.0, -1.0]], [0.0, 0.0]),
            "out": _dense([[1.0, -1.5, 0.5, 0.0], [5.0, 5.0, 5.0, 5.0]], [0.0, 0.0, 0.0, 1.0]),
        }
        # w2: ReLU([0.5, 1] * 2) = [1, 2]; [1, 2] @ [[1, 0], [0, -1]] = [1, -2]; |.| = [1, 2]
        w2 = {
            "hidden": _dense([[0.5, 1.0]], [0.0, 0.0]),
            "out": _dense([[1.0, 0.0], [0.0, -1.0]], [0.0, 0.0]),
        }
    else:
        # w1: [1, -1.5, 0.5, 0] * 2 + [0, 0, 0, 1] = [2, -3, 1, 1]; w2: [0.5, -1] * 2 = [1, -2]
        w1 = {"out": _dense([[1.0, -1.5, 0.5, 0.0]], [0.0, 0.0, 0.0, 1.0])}
        w2 = {"out": _dense([[0.5, -1.0]], [0.0, 0.0])}
    return {
        "params": {
            "w1": w1,
            "w2": w2,
            "b1": _dense([[1.0, -1.0]], [0.0, 0.5]),  # [2, -2] + [0, 0.5] = [2, -1.5]
            # ReLU([1, 1] * 2 + [-1, -3]) = [1, 0]; [1, 0] @ [[3], [7]] + 0.5 = 3.5
            "b2_hidden": _dense([[1.0, 1.0]], [-1.0, -3.0]),
            "b2_out": _dense([[3.0], [7.0]], [0.5]),
        }
    }


@pytest.mark.parametrize("layers", [1, 2])
def test_qmix_hand_worked(layers):
    mixer = qmix(embed_dim=2, hyper_hidden=2, hypernet_layers=layers)
    params = _hand_params(layers)
    # the hand-set tree is the one init builds (so the hand case exercises the real layers)
    built = mixer.init(jax.random.PRNGKey(0), 2, (1,))
    assert jax.tree_util.tree_structure(built) == jax.tree_util.tree_structure(params)
    assert jax.tree_util.tree_map(jnp.shape, built) == jax.tree_util.tree_map(jnp.shape, params)

    chosen = jnp.array([1.0, -2.0])
    state = jnp.array([2.0])
    # Q w1 = [1*2 - 2*1, 1*3 - 2*1] = [0, 1]; + b1 = [2, -0.5]; ELU = [2, e^-0.5 - 1]
    # Q_tot = 2*1 + (e^-0.5 - 1)*2 + 3.5 = 3.5 + 2 e^-0.5
    expected = 3.5 + 2.0 * math.exp(-0.5)
    np.testing.assert_allclose(float(mixer.apply(params, chosen, state)), expected, rtol=1e-6)
    # dQ_tot/dQ_i = sum_e w1[i, e] ELU'(.) w2[e]: agent 0: 2*1*1 + 3*e^-0.5*2, agent 1: 1 + 2e^-0.5
    grad = jax.grad(lambda q: mixer.apply(params, q, state))(chosen)
    e = math.exp(-0.5)
    np.testing.assert_allclose(np.asarray(grad), [2.0 + 6.0 * e, 1.0 + 2.0 * e], rtol=1e-6)


def test_sum_and_mean_ignore_the_state():
    # (the hand-worked sum and mean are in test_algebra.py); here: a state changes nothing
    chosen = jnp.array([[1.0, 2.0, 6.0]])
    for name, expected in (("sum", 9.0), ("mean", 3.0)):
        mix = MIXERS[name]
        assert float(mix.apply({}, chosen, jnp.full((1, 4), 7.0))[0]) == expected
        assert float(mix.apply({}, chosen, None)[0]) == expected


def _random_case(seed: int, layers: int, init_scale, n: int = 256, M: int = 4, S: int = 6):
    mixer = qmix(embed_dim=8, hyper_hidden=16, hypernet_layers=layers, init_scale=init_scale)
    k_param, k_q, k_s = jax.random.split(jax.random.PRNGKey(seed), 3)
    params = mixer.init(k_param, M, (S,))
    chosen = 3.0 * jax.random.normal(k_q, (n, M))
    state = 3.0 * jax.random.normal(k_s, (n, S))
    return mixer, params, chosen, state


@pytest.mark.parametrize("init_scale", [0.001, 1.0, 3.0, None])
@pytest.mark.parametrize("layers", [1, 2])
def test_qmix_is_monotonic_in_every_agent(layers, init_scale):
    for seed in range(4):
        mixer, params, chosen, state = _random_case(seed, layers, init_scale)
        grads = jax.jit(jax.vmap(jax.grad(mixer.apply, argnums=1), (None, 0, 0)))(
            params, chosen, state
        )
        assert grads.shape == chosen.shape
        assert np.all(np.asarray(grads) >= 0.0)
        if init_scale != 0.001:
            # not a trivially flat mixer: the utilities move Q_tot
            assert float(jnp.max(grads)) > 1e-2


@pytest.mark.parametrize("layers", [1, 2])
def test_qmix_per_agent_argmax_is_the_joint_argmax(layers):
    # what monotonicity buys: decentralised greedy actions are the joint greedy action
    mixer, params, _, states = _random_case(7, layers, 1.0, n=16, M=3)
    utilities = 3.0 * jax.random.normal(jax.random.PRNGKey(8), (16, 3, 4))  # [n, M, B]
    joint = jnp.array(list(itertools.product(range(4), repeat=3)))  # [64, M]
    apply = jax.jit(mixer.apply)
    for u, s in zip(utilities, states, strict=True):
        chosen = select(jnp.broadcast_to(u, (len(joint), 3, 4)), joint)
        q_tot = apply(params, chosen, jnp.broadcast_to(s, (len(joint), s.shape[0])))
        np.testing.assert_array_equal(joint[jnp.argmax(q_tot)], jnp.argmax(u, axis=-1))


def test_qmix_default_init_follows_jaxmarl_and_none_pytorch():
    params = qmix().init(jax.random.PRNGKey(0), 3, (5,))["params"]
    assert params["w1"]["out"]["kernel"].shape == (128, 3 * 32)
    # orthogonal with gain 0.001: every singular value is 0.001
    for layer in (params["w1"]["hidden"], params["w1"]["out"], params["b1"], params["b2_out"]):
        sv = np.linalg.svd(np.asarray(layer["kernel"]), compute_uv=False)
        np.testing.assert_allclose(sv, 0.001, rtol=1e-4)
        assert not np.any(np.asarray(layer["bias"]))
    kernel = np.asarray(
        qmix(init_scale=None).init(jax.random.PRNGKey(0), 3, (5,))["params"]["b1"]["kernel"]
    )
    assert np.max(np.abs(kernel)) <= 1 / math.sqrt(5) and np.std(kernel) > 0.1
    with pytest.raises(ValueError, match="hypernet_layers"):
        qmix(hypernet_layers=3).init(jax.random.PRNGKey(0), 3, (5,))


def test_qmix_shapes_batch_axes_jit_and_vmap():
    mixer = qmix(embed_dim=8, hyper_hidden=16, init_scale=1.0)
    params = mixer.init(jax.random.PRNGKey(0), 3, (2, 5))  # a 2-d state, flattened inside
    keys = jax.random.split(jax.random.PRNGKey(1), 3)
    chosen = jax.random.normal(keys[0], (4, 6, 7, 3))
    state = jax.random.normal(keys[1], (4, 6, 7, 2, 5))
    q = jax.jit(mixer.apply)(params, chosen, state)
    assert q.shape == (4, 6, 7)
    # the same as one sample at a time
    one = mixer.apply(params, chosen[1, 2, 3], state[1, 2, 3])
    assert one.shape == ()
    np.testing.assert_allclose(q[1, 2, 3], one, rtol=1e-5, atol=1e-6)
    # vmap over the batch, and over an ensemble of independently initialised mixers
    by_vmap = jax.jit(
        jax.vmap(jax.vmap(jax.vmap(mixer.apply, (None, 0, 0)), (None, 0, 0)), (None, 0, 0))
    )
    np.testing.assert_allclose(by_vmap(params, chosen, state), q, rtol=1e-5, atol=1e-6)
    members = [mixer.init(k, 3, (2, 5)) for k in keys]
    stacked = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *members)
    ensemble = jax.jit(jax.vmap(mixer.apply, (0, None, None)))(stacked, chosen, state)
    assert ensemble.shape == (3, 4, 6, 7)
    assert not np.allclose(ensemble[0], ensemble[1])
    # K critics' utilities [K, batch, M] broadcast against one state batch [batch, S]
    flat_state = state[0, 0].reshape(7, 10)
    q_k = bind(mixer, params, flat_state)(chosen[:, 0])
    assert q_k.shape == (4, 7)
    np.testing.assert_allclose(q_k[2], mixer.apply(params, chosen[2, 0], flat_state), rtol=1e-6)
    with pytest.raises(ValueError, match="state"):
        mixer.apply(params, chosen, None)
    with pytest.raises(ValueError, match="hold 10"):
        mixer.apply(params, chosen, jnp.zeros((4, 6, 7, 3)))
