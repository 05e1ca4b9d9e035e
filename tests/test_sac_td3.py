"""SAC (Gaussian and Bernoulli bang-bang) and TD3: losses on worked cases, bounds, the loop
(determinism, exact resume, compile-once), the command line, and slow learning tests."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import in_section, tiny_config
from gymnasium import spaces

from factorl.agents.sac import (
    SAC,
    ActionBounds,
    SACConfig,
    alpha_loss,
    bernoulli_entropy,
    bernoulli_expected_q,
    clipped_double_q,
    log1m_tanh_sq,
    polyak,
    sample_tanh_gaussian,
    soft_target,
    tanh_gaussian_log_prob,
)
from factorl.agents.td3 import TD3, TD3Config, smoothed_target_action, td3_target
from factorl.cli import main
from factorl.core.agent import TrainBatch
from factorl.core.config import ConfigError
from factorl.io.logging import read_metrics
from factorl.train import make_config, train

# ------------------------------------------------------------------------------ pure functions


def _normal_cdf(x):
    return 0.5 * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


@pytest.mark.parametrize(("mean", "std"), [(0.0, 1.0), (0.7, 0.3), (-1.5, 2.0)])
def test_tanh_gaussian_density_matches_the_numeric_derivative_of_its_cdf(mean, std):
    # P(tanh(u) <= y) = Phi((atanh(y) - mean) / std); its derivative is the density of y, which must
    # equal exp(log_prob) including the change-of-variables term -log(1 - tanh(u)^2)
    y = np.linspace(-0.995, 0.995, 401)
    h = 1e-5
    cdf = lambda v: _normal_cdf((np.arctanh(v) - mean) / std)  # noqa: E731
    numeric = (cdf(y + h) - cdf(y - h)) / (2 * h)
    u = jnp.asarray(np.arctanh(y), jnp.float32)[:, None]
    log_p = tanh_gaussian_log_prob(u, jnp.full_like(u, mean), jnp.full_like(u, math.log(std)))
    np.testing.assert_allclose(np.exp(np.asarray(log_p, np.float64)), numeric, rtol=2e-3, atol=1e-4)
    # without the correction the "density" is the Gaussian's, which is wrong away from y = 0
    z = (np.arctanh(y) - mean) / std
    gaussian_only = np.exp(-0.5 * z**2) / (std * math.sqrt(2 * np.pi))
    assert np.max(np.abs(gaussian_only - numeric)) > 0.1


def test_log1m_tanh_sq_is_exact_and_finite_where_the_direct_formula_fails():
    u = jnp.asarray([-3.0, -0.5, 0.0, 0.5, 3.0])
    np.testing.assert_allclose(log1m_tanh_sq(u), jnp.log(1 - jnp.tanh(u) ** 2), rtol=1e-5)
    far = jnp.asarray([-40.0, 40.0])
    with np.errstate(divide="ignore"):
        assert np.all(np.isinf(np.log(1 - np.tanh(np.asarray(far)) ** 2)))  # the naive formula
    np.testing.assert_allclose(log1m_tanh_sq(far), 2 * (math.log(2) - 40.0), rtol=1e-6)


def test_sampled_negative_log_prob_estimates_the_tanh_gaussian_entropy():
    # SAC's entropy term is E[-log pi(y|s)]; check it against the entropy integrated numerically
    mean, log_std = 0.3, math.log(0.8)
    y = np.linspace(-1 + 1e-6, 1 - 1e-6, 200_001)
    u = jnp.asarray(np.arctanh(y), jnp.float32)[:, None]
    log_p = tanh_gaussian_log_prob(u, jnp.full_like(u, mean), jnp.full_like(u, log_std))
    p = np.exp(np.asarray(log_p, np.float64))
    exact = -np.trapezoid(p * np.log(np.maximum(p, 1e-300)), y)
    assert abs(np.trapezoid(p, y) - 1.0) < 1e-3
    shape = (200_000, 1)
    _, log_prob = sample_tanh_gaussian(
        jax.random.PRNGKey(0), jnp.full(shape, mean), jnp.full(shape, log_std)
    )
    assert abs(float(-jnp.mean(log_prob)) - exact) < 0.01


def test_alpha_loss_pushes_alpha_towards_the_target_entropy():
    grad = jax.grad(alpha_loss)
    # entropy below the target: the gradient is negative, so descent raises log alpha
    assert float(grad(jnp.asarray(0.0), jnp.asarray([-2.0, -3.0]), -1.0)) == pytest.approx(-1.5)
    # entropy above the target: descent lowers log alpha
    assert float(grad(jnp.asarray(0.0), jnp.asarray([0.5, 1.5]), -1.0)) == pytest.approx(2.0)
    # value: log alpha * (mean H - target)
    assert float(alpha_loss(jnp.asarray(0.5), jnp.asarray([1.0, 3.0]), 1.0)) == pytest.approx(0.5)
    # no gradient leaks into the entropy (the policy must not be trained by the alpha loss)
    d_entropy = jax.grad(lambda h: alpha_loss(jnp.asarray(0.7), h, 0.0))(jnp.asarray([1.0, 2.0]))
    np.testing.assert_array_equal(d_entropy, 0.0)


def test_clipped_double_q_takes_the_minimum_over_critics():
    q = jnp.asarray([[1.0, 5.0, -2.0], [3.0, 0.0, -1.0]])  # [K=2, batch=3]
    np.testing.assert_array_equal(clipped_double_q(q), [1.0, 0.0, -2.0])


def test_soft_target_on_hand_worked_numbers():
    next_q = jnp.asarray([[1.0, 4.0], [2.0, 3.0]])
    y = soft_target(
        reward=jnp.asarray([1.0, -1.0]),
        discount=jnp.asarray([0.9, 0.0]),  # the second transition is terminal
        next_q=next_q,
        next_entropy=jnp.asarray([0.5, 7.0]),
        alpha=jnp.asarray(0.2),
    )
    np.testing.assert_allclose(y, [1.0 + 0.9 * (1.0 + 0.2 * 0.5), -1.0], rtol=1e-6)


def test_td3_target_smoothing_clips_the_noise_then_the_action():
    target_action = jnp.asarray([0.9, -0.2, 0.0, -0.8])
    noise = jnp.asarray([0.7, -0.3, -2.0, 0.1])
    smoothed = smoothed_target_action(target_action, noise, noise_clip=0.5)
    # 0.9 + 0.5 -> 1.4 -> 1 (action clip); -0.2 - 0.3; 0 - 0.5 (noise clip); -0.8 + 0.1
    np.testing.assert_allclose(smoothed, [1.0, -0.5, -0.5, -0.7], rtol=1e-6)
    y = td3_target(jnp.asarray([1.0]), jnp.asarray([0.5]), jnp.asarray([[4.0], [2.0]]))
    np.testing.assert_allclose(y, [2.0])


def test_polyak_moves_tau_of_the_way():
    out = polyak({"w": jnp.asarray([1.0, 1.0])}, {"w": jnp.asarray([0.0, 2.0])}, 0.25)
    np.testing.assert_allclose(out["w"], [0.25, 1.75])


def test_bernoulli_entropy_values():
    logits = jnp.asarray([0.0, 2.0, -3.0, 60.0])
    p = jax.nn.sigmoid(logits)
    direct = -(p * jnp.log(p) + (1 - p) * jnp.log1p(-p))
    got = bernoulli_entropy(logits)
    np.testing.assert_allclose(got[:3], direct[:3], rtol=1e-5)
    assert float(got[0]) == pytest.approx(math.log(2))
    assert 0 <= float(got[3]) < 1e-20  # saturated logits stay finite


def test_bernoulli_per_dimension_gradient_is_the_exact_policy_gradient():
    # two dimensions, a known Q table over the four bang-bang corners, independent Bernoullis:
    # averaging the estimator's gradient over the sampled corner must give grad E_pi[Q] exactly
    q_table = jnp.asarray([[1.0, -2.0], [0.5, 3.0]])  # q_table[b0, b1], b = 1 is the upper extreme
    logits = jnp.asarray([0.3, -0.8])

    def prob(lg, bits):
        p = jax.nn.sigmoid(lg)
        return jnp.prod(jnp.where(jnp.asarray(bits, bool), p, 1 - p))

    corners = [(0, 0), (0, 1), (1, 0), (1, 1)]

    def exact(lg):
        return sum(prob(lg, b) * q_table[b] for b in corners)

    def estimate(lg, bits):
        flipped = jnp.asarray([q_table[1 - bits[0], bits[1]], q_table[bits[0], 1 - bits[1]]])
        upper = jnp.asarray(bits, bool)
        per_dim = bernoulli_expected_q(jax.nn.sigmoid(lg), upper, q_table[bits], flipped)
        return jnp.sum(per_dim)

    expected_grad = sum(
        jax.lax.stop_gradient(prob(logits, b)) * jax.grad(estimate)(logits, b) for b in corners
    )
    np.testing.assert_allclose(expected_grad, jax.grad(exact)(logits), rtol=1e-5)


# ------------------------------------------------------------------------------ agents


ASYM = spaces.Box(
    low=np.asarray([-1.0, 0.0, 2.0], np.float32), high=np.asarray([3.0, 0.5, 2.5], np.float32)
)
OBS = spaces.Box(-np.inf, np.inf, shape=(4,), dtype=np.float32)
SMALL = {"width": 16}


def _agents():
    return [
        SAC(SACConfig(**SMALL), OBS, ASYM),
        SAC(SACConfig(**SMALL, policy="bernoulli"), OBS, ASYM),
        TD3(TD3Config(**SMALL), OBS, ASYM),
    ]


def test_action_bounds_map_the_unit_box_onto_asymmetric_bounds():
    bounds = ActionBounds.from_space(ASYM)
    np.testing.assert_array_equal(bounds.to_env(-jnp.ones(3)), ASYM.low)
    np.testing.assert_allclose(bounds.to_env(jnp.ones(3)), ASYM.high)
    np.testing.assert_allclose(bounds.to_env(jnp.zeros(3)), [1.0, 0.25, 2.25])
    a = jnp.asarray([0.0, 0.1, 2.4])
    np.testing.assert_allclose(bounds.to_env(bounds.to_unit(a)), a, rtol=1e-6)
    np.testing.assert_array_equal(
        bounds.extremes(jnp.asarray([True, False, True])), [3.0, 0.0, 2.5]
    )


@pytest.mark.parametrize("mode", ["random", "explore", "greedy"])
def test_actions_stay_inside_asymmetric_bounds(mode):
    # large observations push the untrained actors into saturation, where a wrong rescaling shows
    obs = np.random.default_rng(0).normal(scale=50.0, size=(48, 4)).astype(np.float32)
    obs = np.concatenate([obs, np.zeros((16, 4), np.float32)])
    for agent in _agents():
        state = agent.init(0)
        actions = np.stack([agent.act(state, o[None], i, mode)[0][0] for i, o in enumerate(obs)])
        assert actions.shape == (64, 3) and actions.dtype == np.float32
        assert np.all(actions >= ASYM.low) and np.all(actions <= ASYM.high), agent.name
        if getattr(agent, "bernoulli", False):
            # bang-bang: every coordinate is exactly one of its two bounds
            assert np.all((actions == ASYM.low) | (actions == ASYM.high))
        at_zero = actions[48:]  # one observation, 16 env steps: only the noise differs
        if mode == "greedy":
            assert np.all(at_zero == at_zero[0])
        else:
            assert np.all(np.std(at_zero, axis=0) > 1e-3), agent.name


def test_infinite_bounds_are_refused():
    unbounded = spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
    with pytest.raises(ValueError, match="finite action bounds"):
        SAC(SACConfig(**SMALL), OBS, unbounded)


def _batch(agent, n=8, seed=0):
    rng = np.random.default_rng(seed)
    low, high = agent.bounds.low, agent.bounds.high
    return TrainBatch(
        obs=rng.normal(size=(n, 4)).astype(np.float32),
        action=rng.uniform(low, high, size=(n, 3)).astype(np.float32),
        reward=rng.normal(size=n).astype(np.float32),
        discount=np.full(n, 0.99, np.float32),
        next_obs=rng.normal(size=(n, 4)).astype(np.float32),
        weights=np.ones(n, np.float32),
    )


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(jax.device_get(tree))]


def _changed(a, b):
    return any(not np.array_equal(x, y) for x, y in zip(_leaves(a), _leaves(b), strict=True))


def _assert_polyak_step(new_target, old_target, online, tau):
    """new_target = (1 - tau) old_target + tau online, leaf by leaf."""
    for new, old, now in zip(
        _leaves(new_target), _leaves(old_target), _leaves(online), strict=True
    ):
        np.testing.assert_allclose(new, (1 - tau) * old + tau * now, rtol=1e-5, atol=1e-7)


def _critic_case(agent, seed):
    """A batch with distinct s and s', one terminal sample, and online and target parameters
    that differ."""
    state = agent.init(seed)
    batch = _batch(agent, seed=seed)._replace(
        discount=np.array([0.99] * 7 + [0.0], np.float32),
        weights=np.linspace(0.5, 1.0, 8).astype(np.float32),
    )
    target = jax.tree_util.tree_map(lambda x: x + 0.05, state.target_params)
    return state, batch, target


@pytest.mark.parametrize("policy", ["gaussian", "bernoulli"])
def test_sac_critic_loss_is_the_soft_td_error_to_the_target_critics_at_s_prime(policy):
    agent = SAC(SACConfig(**SMALL, policy=policy), OBS, ASYM)
    state, batch, target = _critic_case(agent, 3)
    p, key, log_alpha = state.params, jax.random.PRNGKey(7), jnp.log(0.3)
    loss, aux = agent.critic_loss(p["critic"], target["critic"], p["actor"], log_alpha, batch, key)
    # by hand: a' ~ pi(s') with the same key, y = r + d (min_k Qbar_k(s', a') + alpha H(s'))
    next_y, next_entropy, _ = agent.sample(p["actor"], batch.next_obs, key)
    next_q = np.asarray(agent.q_values(target["critic"], batch.next_obs, next_y)).min(axis=0)
    y = batch.reward + batch.discount * (next_q + 0.3 * np.asarray(next_entropy))
    q = np.asarray(agent.q_values(p["critic"], batch.obs, agent.bounds.to_unit(batch.action)))
    expected = 0.5 * sum(np.mean(batch.weights * (y - q_k) ** 2) for q_k in q)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    np.testing.assert_allclose(aux["td_abs"], np.abs(y[None] - q), rtol=1e-4, atol=1e-6)


def test_td3_critic_loss_is_the_td_error_to_the_smoothed_target_actor_at_s_prime():
    agent = TD3(TD3Config(**SMALL), OBS, ASYM)
    state, batch, target = _critic_case(agent, 4)
    key, c = jax.random.PRNGKey(8), agent.config
    loss, aux = agent.critic_loss(state.params["critic"], target, batch, key)
    # by hand: a~' = clip(mu'(s') + clip(noise, +-c), -1, 1), y = r + d min_k Qbar_k(s', a~')
    mu = np.asarray(agent.actor.apply(target["actor"], batch.next_obs))
    noise = c.policy_noise * np.asarray(jax.random.normal(key, mu.shape))
    smoothed = np.clip(mu + np.clip(noise, -c.noise_clip, c.noise_clip), -1.0, 1.0)
    next_q = np.asarray(agent.q_values(target["critic"], batch.next_obs, smoothed)).min(axis=0)
    y = batch.reward + batch.discount * next_q
    q = np.asarray(
        agent.q_values(state.params["critic"], batch.obs, agent.bounds.to_unit(batch.action))
    )
    expected = sum(np.mean(batch.weights * (y - q_k) ** 2) for q_k in q)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    np.testing.assert_allclose(aux["td_abs"], np.abs(y[None] - q), rtol=1e-4, atol=1e-6)


def test_td3_delays_the_actor_and_targets_to_every_second_step():
    agent = TD3(TD3Config(**SMALL), OBS, ASYM)
    s0 = agent.init(0)
    snapshot = jax.device_get(s0)
    s1, m1, td = agent.update(s0, _batch(agent, seed=1))
    assert bool(m1["finite"]) and td.shape == (8,)
    assert np.isnan(float(m1["actor_loss"]))  # not computed on a critic-only step
    assert _changed(s1.params["critic"], snapshot.params["critic"])
    assert not _changed(s1.params["actor"], snapshot.params["actor"])
    assert not _changed(s1.target_params, snapshot.target_params)
    s1_copy = jax.device_get(s1)
    batch2 = _batch(agent, seed=2)
    s2, m2, _ = agent.update(s1, batch2)
    assert bool(m2["finite"])
    # the reported actor loss is the one the actor stepped on: -Q_1(s, mu(s)) with the new critic
    expected = agent.actor_loss(s1_copy.params["actor"], s2.params["critic"], batch2.obs)
    assert float(m2["actor_loss"]) == pytest.approx(float(expected), rel=1e-5)
    assert _changed(s2.params["actor"], s1_copy.params["actor"])
    # both targets take one Polyak step toward the networks just updated
    _assert_polyak_step(s2.target_params, s1_copy.target_params, s2.params, agent.config.tau)
    assert int(s2.learner_step) == 2 and agent.trace_counts["update"] == 1


@pytest.mark.parametrize("policy", ["gaussian", "bernoulli"])
def test_sac_update_moves_everything_and_alpha_falls_when_entropy_is_high(policy):
    # the initial policies are near maximum entropy, above either default target, so the
    # temperature must go down on the first step (Adam's first step is lr * sign)
    agent = SAC(SACConfig(**SMALL, policy=policy), OBS, ASYM)
    s0 = agent.init(0)
    snapshot = jax.device_get(s0)
    s1, metrics, _ = agent.update(s0, _batch(agent))
    assert bool(metrics["finite"])
    assert float(metrics["entropy"]) > agent.target_entropy
    assert float(s1.params["log_alpha"]) == pytest.approx(-3e-4, rel=1e-3)
    assert _changed(s1.params["actor"], snapshot.params["actor"])
    # the critic target takes one Polyak step toward the critic just updated
    _assert_polyak_step(
        s1.target_params["critic"],
        snapshot.target_params["critic"],
        s1.params["critic"],
        agent.config.tau,
    )
    expected = 0.5 * 3 * math.log(2) if policy == "bernoulli" else -3.0
    assert agent.target_entropy == pytest.approx(expected)


def test_sac_fixed_temperature_stays_fixed():
    agent = SAC(SACConfig(**SMALL, learn_alpha=False, init_alpha=0.2), OBS, ASYM)
    state, _, _ = agent.update(agent.init(0), _batch(agent))
    assert float(jnp.exp(state.params["log_alpha"])) == pytest.approx(0.2)


# ------------------------------------------------------------------------------ the training loop

TINY_AC = {
    "agent.width": 32,
    "agent.random_steps": 50,
    "agent.learning_starts": 100,
    "replay.batch_size": 32,
    "replay.capacity": 5000,
}
VARIANTS = {
    "sac": ("sac", {}),
    "sac-bernoulli": ("sac", {"policy": "bernoulli"}),
    "td3": ("td3", {}),
}


def _tiny(run_dir, variant, steps=600):
    algo, agent = VARIANTS[variant]
    return tiny_config(run_dir, algo, steps, {**TINY_AC, **in_section("agent", agent)})


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_one_update_per_step_from_learning_starts_and_the_logged_losses(tmp_path, variant):
    result = train(_tiny(tmp_path / "run", variant))
    assert int(result.state.learner_step) == 600 - 100 + 1
    train_records = [r for r in read_metrics(result.run_dir) if r["event"] == "train"]
    assert {"critic_loss", "actor_loss", "q_mean"} <= set(train_records[-1])
    # TD3's NaN "not measured" actor losses are averaged out, never written
    assert all(math.isfinite(r.get("actor_loss", 0.0)) for r in train_records)


def test_cli_trains_sac_with_the_bernoulli_policy(tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["train", "sac", "--agent.policy", "bernoulli", "--env.id", "gym:Pendulum-v1",
                 "--run.steps", "150", "--agent.width", "16", "--replay.batch-size", "16",
                 "--agent.random-steps", "50", "--agent.learning-starts", "100",
                 "--runner.eval-every", "150", "--runner.eval-episodes", "1", "--run.progress",
                 "none", "--run.no-tensorboard", "--run.dir", str(run)])  # fmt: skip
    assert code == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--episodes", "1"]) == 0


@pytest.mark.parametrize(
    ("algo", "agent_values", "match"),
    [
        ("sac", {"policy": "beta"}, "one of 'gaussian'"),
        ("sac", {"tau": 1.5}, r"agent\.tau"),
        ("sac", {"init_alpha": 0.0}, r"agent\.init_alpha"),
        ("td3", {"policy_delay": 0}, r"agent\.policy_delay"),
        ("td3", {"bins": 3}, r"unknown setting 'agent\.bins' for td3"),
    ],
)
def test_bad_config_values_are_clear_errors(algo, agent_values, match):
    with pytest.raises(ConfigError, match=match):
        make_config(algo, in_section("agent", agent_values))


# ------------------------------------------------------------------------------ learning (slow)
# Pendulum-v1: an untrained policy scores about -1200 to -1500 and a swing-up-and-balance policy
# about -150 to -250, so a mean over 10 greedy episodes above -400 is out of reach of a broken
# target, loss or action mapping. The reference defaults are kept except the random warm-up, cut
# from 5000 (SAC) / 25000 (TD3) to 1000 steps (with learning from step 1000) so each test stays
# near two minutes on two contended CPU cores. Measured here with seed 0 (mean of 10 greedy
# episodes): SAC -178 at 6000 steps, TD3 -174 at 8000 (-299 at 6000), Bernoulli SAC -172 at 8000.


def _learn(tmp_path, algo, steps, agent_values):
    cfg = make_config(
        algo,
        {
            "env.id": "gym:Pendulum-v1",
            "run.steps": steps,
            "runner.eval_every": steps,
            "runner.eval_episodes": 10,
            "run.progress": "none",
            "run.tensorboard": False,
            "run.dir": str(tmp_path / "run"),
            "agent.random_steps": 1000,
            "agent.learning_starts": 1000,
            **in_section("agent", agent_values),
        },
    )
    final = [r for r in read_metrics(train(cfg).run_dir) if r["event"] == "eval"][-1]
    print(f"{algo} {agent_values}: eval {final['eval_return']:.1f} at {final['env_step']} steps")
    return final


@pytest.mark.slow
def test_sac_learns_pendulum(tmp_path):
    final = _learn(tmp_path, "sac", 6000, {})
    assert final["eval_return"] > -400, f"SAC did not learn Pendulum: {final['eval_return']:.1f}"


@pytest.mark.slow
def test_td3_learns_pendulum(tmp_path):
    final = _learn(tmp_path, "td3", 8000, {})
    assert final["eval_return"] > -400, f"TD3 did not learn Pendulum: {final['eval_return']:.1f}"


@pytest.mark.slow
def test_sac_bernoulli_learns_pendulum(tmp_path):
    final = _learn(tmp_path, "sac", 8000, {"policy": "bernoulli"})
    assert final["eval_return"] > -400, f"Bernoulli SAC did not learn: {final['eval_return']:.1f}"
