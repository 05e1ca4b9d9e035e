"""SAC: Soft Actor-Critic with a learned temperature, and its Bernoulli bang-bang variant.

Haarnoja, Zhou, Hartikainen, Tucker, Ha, Tan, Kumar, Zhu, Gupta, Abbeel, Levine. *Soft Actor-Critic
Algorithms and Applications*, arXiv 1812.05905 (2018): the "v2" SAC with twin Q critics, no value
network and an automatically tuned temperature alpha.

Gaussian policy (`policy="gaussian"`, the default): u ~ N(mu(s), sigma(s)), y = tanh(u) in
[-1, 1]^M, and the environment receives a_j = low_j + (y_j + 1)(high_j - low_j)/2 on each
dimension's own bounds. Log-probabilities, and so the entropy target, are measured in the
normalised space y (as in Stable-Baselines3), so the target -M means the same whatever the bounds.

Bernoulli policy (`policy="bernoulli"`; Seyde, Gilitschenski, Schwarting, Stellato, Riedmiller,
Wulfmeier, Rus, *Is Bang-Bang Control All You Need? Solving Continuous Control with Bernoulli
Policies*, NeurIPS 2021, arXiv 2111.02552): each dimension independently picks low_j or high_j with
probability 1 - p_j(s) or p_j(s). Nothing can be reparameterised through that choice, so the actor
gradient is computed by enumeration one dimension at a time: with the other dimensions sampled
(a_-j ~ pi), dE[Q]/dp_j = E[Q(s, high_j, a_-j) - Q(s, low_j, a_-j)] exactly, which needs M + 1
critic evaluations per state (the sampled action and its M one-dimension flips). This is unbiased
(a per-dimension "local expectation" gradient), unlike a straight-through estimator, and has far
lower variance than a score-function estimator. The entropy is the exact sum of per-dimension
Bernoulli entropies, used in the actor loss, the temperature loss and the soft target. We could not
determine which estimator Seyde et al. used for their SAC variant, so this is our choice, not a
reproduction. The entropy target is `bernoulli_entropy_fraction * M log 2` (M log 2 is the entropy
of a uniform bang-bang policy); the default fraction 0.5 keeps each dimension's chance of playing
its less likely extreme at about 11% once alpha has converged.

Defaults and their sources: Adam 3e-4 for actor, critics and temperature, batch 256, two hidden
layers of 256 ReLU units, gamma 0.99, Polyak tau 0.005 every learner step, one gradient step per
environment step, target entropy -dim(A), replay 1e6: Haarnoja et al. 2018 (arXiv 1812.05905,
Appendix D, Table 1). Initial temperature 1 (log alpha = 0): CleanRL's sac_continuous_action.py and
Stable-Baselines3's `ent_coef="auto"`. 5000 uniformly random steps before learning starts: CleanRL's
`learning_starts=5e3` (the paper-era softlearning code used 10 episodes, 10000 steps on
MuJoCo). log-std clipped to [-20, 2]: the original SAC code (haarnoja/sac). Initialisation: Flax's
defaults (lecun normal kernels, zero biases).

Where CleanRL's sac_continuous_action.py differs we follow the paper: CleanRL uses Adam 1e-3 for
the critics and the temperature, updates the actor and temperature twice every second env step,
squashes the log-std into [-5, 2] with a tanh, and measures log-probabilities on the
environment's scale (so its entropy target shifts with the bounds).

One learner step is one jitted pure function: the critic step (clipped double-Q soft target from the
Polyak target critics), then the actor step against the updated critics, then the temperature step
on the entropy of the actor step's (pre-update) policy, then the Polyak update of the targets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax

from factorl.agents.base import ReplayAgent
from factorl.core.agent import AgentState, TrainBatch, fresh_state
from factorl.core.config import ReplaySettings, option
from factorl.maths.networks import (
    BernoulliActor,
    GaussianActor,
    StateActionCritic,
    init_ensemble,
    stack_apply,
)

# ------------------------------------------------------------------------------------ pure helpers


class ActionBounds:
    """Maps between the normalised action space [-1, 1]^M and each dimension's [low_j, high_j]."""

    def __init__(self, low: np.ndarray, high: np.ndarray) -> None:
        low = np.asarray(low, dtype=np.float32).reshape(-1)
        high = np.asarray(high, dtype=np.float32).reshape(-1)
        if low.shape != high.shape or low.size == 0:
            raise ValueError(f"action bounds must be non-empty and alike, got {low} and {high}")
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            raise ValueError(
                "actor-critic agents need finite action bounds to squash into; got "
                f"low={low.tolist()} high={high.tolist()}"
            )
        if np.any(high <= low):
            raise ValueError(f"every dimension needs high > low; got low={low}, high={high}")
        self.low, self.high = low, high

    @classmethod
    def from_space(cls, space) -> ActionBounds:
        """Bounds of a `gymnasium.spaces.Box` action space (flattened)."""
        return cls(space.low, space.high)

    @property
    def num_dims(self) -> int:
        """M, the number of action dimensions."""
        return int(self.low.shape[0])

    def to_env(self, unit: jax.Array) -> jax.Array:
        """[-1, 1]^M -> [low, high]; the clip guards the float rounding of low + (high - low)."""
        low, high = jnp.asarray(self.low), jnp.asarray(self.high)
        return jnp.clip(low + (unit + 1.0) * 0.5 * (high - low), low, high)

    def to_unit(self, action: jax.Array) -> jax.Array:
        """[low, high] -> [-1, 1]^M (inverse of `to_env` inside the bounds)."""
        low, high = jnp.asarray(self.low), jnp.asarray(self.high)
        return 2.0 * (jnp.asarray(action, jnp.float32) - low) / (high - low) - 1.0

    def extremes(self, upper: jax.Array) -> jax.Array:
        """Boolean [..., M] -> high_j where True, low_j where False (exactly the bound values)."""
        return jnp.where(upper, jnp.asarray(self.high), jnp.asarray(self.low))


def clipped_double_q(q: jax.Array) -> jax.Array:
    """Minimum over the critic axis: [K, ...] -> [...] (Fujimoto et al. 2018's clipped double Q)."""
    return jnp.min(q, axis=0)


def polyak(online: Any, target: Any, tau: float) -> Any:
    """target <- tau * online + (1 - tau) * target, leaf by leaf."""
    return optax.incremental_update(online, target, tau)


def log1m_tanh_sq(u: jax.Array) -> jax.Array:
    """log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), stable for any u (no epsilon)."""
    return 2.0 * (math.log(2.0) - u - jax.nn.softplus(-2.0 * u))


def tanh_gaussian_log_prob(u: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
    """log density of y = tanh(u), u ~ N(mean, exp(log_std)^2), summed over the last axis.

    Change of variables: log p(y) = log N(u; mean, std) - log |dy/du| = ... - log(1 - tanh(u)^2).
    Taking u (not y) avoids atanh at |y| = 1.
    """
    z = (u - mean) * jnp.exp(-log_std)
    log_normal = -0.5 * z**2 - log_std - 0.5 * math.log(2.0 * math.pi)
    return jnp.sum(log_normal - log1m_tanh_sq(u), axis=-1)


def sample_tanh_gaussian(
    key: jax.Array, mean: jax.Array, log_std: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Reparameterised sample y = tanh(mean + std * eps) and its log-probability."""
    u = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape, mean.dtype)
    return jnp.tanh(u), tanh_gaussian_log_prob(u, mean, log_std)


def bernoulli_entropy(logits: jax.Array) -> jax.Array:
    """Entropy of Bernoulli(sigmoid(logits)) per element, in nats (log 2 at logits 0)."""
    p = jax.nn.sigmoid(logits)
    # -log p = softplus(-l) and -log(1 - p) = softplus(l): finite for any logit
    return p * jax.nn.softplus(-logits) + (1.0 - p) * jax.nn.softplus(logits)


def bernoulli_expected_q(
    probs: jax.Array, upper: jax.Array, q_sampled: jax.Array, q_flipped: jax.Array
) -> jax.Array:
    """Per-dimension expectation of Q over dimension j, the others fixed at their sampled values.

    probs: P(upper extreme) [..., M]; upper: the sampled choice [..., M] (bool); q_sampled: Q of the
    sampled action [...]; q_flipped: Q with only dimension j flipped [..., M]. Returns
    p_j Q(high_j, a_-j) + (1 - p_j) Q(low_j, a_-j), [..., M]; its gradient in p_j is exact.
    """
    q_sampled = q_sampled[..., None]
    q_high = jnp.where(upper, q_sampled, q_flipped)
    q_low = jnp.where(upper, q_flipped, q_sampled)
    return probs * q_high + (1.0 - probs) * q_low


def alpha_loss(log_alpha: jax.Array, entropy: jax.Array, target_entropy: float) -> jax.Array:
    """Temperature loss, log alpha * (H - target) averaged: alpha grows when H is below target.

    Haarnoja et al.'s E[-alpha (log pi + target)] with log alpha as the variable, as the
    paper-era softlearning code and Stable-Baselines3 (the gradient differs by a factor alpha;
    the fixed point is the same). `entropy` is a per-sample estimate (-log pi(a|s)
    for the Gaussian, the exact entropy for the Bernoulli policy) and carries no gradient here.
    """
    return log_alpha * jnp.mean(jax.lax.stop_gradient(entropy) - target_entropy)


def soft_target(
    reward: jax.Array,
    discount: jax.Array,
    next_q: jax.Array,
    next_entropy: jax.Array,
    alpha: jax.Array,
) -> jax.Array:
    """Soft Bellman target y = r + discount * (min_k Q_k(s', a') + alpha * H(s')); next_q: [K, B].

    With the sampled-action estimate H = -log pi(a'|s') this is SAC's y = r + gamma (min Q - alpha
    log pi). The result carries no gradient.
    """
    value = clipped_double_q(next_q) + alpha * next_entropy
    return jax.lax.stop_gradient(reward + discount * value)


# ------------------------------------------------------------------------------------ the agent


@dataclass
class SACConfig:
    """SAC hyperparameters; defaults are the paper's where it gives them, else from code (initial
    temperature, warm-up, log-std clip): sources in the module docstring."""

    policy: str = option(
        "gaussian",
        "gaussian: tanh-squashed Gaussian; bernoulli: per-dimension bang-bang (Seyde et al. 2021)",
        choices=("gaussian", "bernoulli"),
    )
    width: int = option(256, "hidden units per layer (actor and critics)", low=1)
    depth: int = option(2, "hidden layers (actor and critics)", low=1)
    num_critics: int = option(2, "independent Q networks; targets take their minimum", low=1)
    gamma: float = option(0.99, "discount factor", low=0.0, high=1.0)
    actor_learning_rate: float = option(3e-4, "Adam learning rate of the actor", low=0.0)
    critic_learning_rate: float = option(3e-4, "Adam learning rate of the critics", low=0.0)
    alpha_learning_rate: float = option(3e-4, "Adam learning rate of log alpha", low=0.0)
    tau: float = option(0.005, "Polyak rate of the target critics", low=0.0, high=1.0)
    init_alpha: float = option(1.0, "initial temperature alpha", low=0.0, low_open=True)
    learn_alpha: bool = option(True, "tune alpha towards the target entropy (False: fixed)")
    target_entropy: float | None = option(
        None, "entropy target; default -M (gaussian) or fraction * M log 2 (bernoulli)"
    )
    bernoulli_entropy_fraction: float = option(
        0.5, "bernoulli target entropy as a fraction of its maximum M log 2", low=0.0, high=1.0
    )
    update_every: int = option(1, "environment steps per learner step", low=1)
    learning_starts: int = option(5000, "transitions in replay before learning starts", low=1)
    random_steps: int = option(5000, "act uniformly at random for the first N env steps", low=0)


class SAC(ReplayAgent):
    """Soft Actor-Critic (Gaussian or Bernoulli policy) for the shared training loop."""

    name = "sac"
    Config = SACConfig
    config: SACConfig
    #: Haarnoja et al. 2018, Table 1: 1M transitions, batch 256; one-step, uniform
    REPLAY = ReplaySettings(capacity=1_000_000, batch_size=256, n_step=1, prioritized=False)
    REPLAY_FIXED: ClassVar[dict[str, str]] = {"n_step": "its critic targets are one-step"}

    def setup(self, action_space: Any) -> None:
        c = self.config
        self.bounds = ActionBounds.from_space(action_space)
        m = self.bounds.num_dims
        hidden = (c.width,) * c.depth
        self.bernoulli = c.policy == "bernoulli"
        self.actor = BernoulliActor(m, hidden) if self.bernoulli else GaussianActor(m, hidden)
        self.critic = StateActionCritic(hidden)
        if c.target_entropy is not None:
            self.target_entropy = float(c.target_entropy)
        elif self.bernoulli:
            self.target_entropy = c.bernoulli_entropy_fraction * m * math.log(2.0)
        else:
            self.target_entropy = -float(m)
        self.optimizers = {
            "actor": optax.adam(c.actor_learning_rate),
            "critic": optax.adam(c.critic_learning_rate),
            "log_alpha": optax.adam(c.alpha_learning_rate),
        }

    # ----------------------------------------------------------------------------------- setup
    def init(self, seed: int, num_envs: int = 1) -> AgentState:
        """Fresh networks, optimiser states and run key from `seed`."""
        k_actor, k_critic, k_run = jax.random.split(jax.random.PRNGKey(seed), 3)
        obs = jnp.zeros((1, *self.obs_shape), jnp.float32)
        action = jnp.zeros((1, self.bounds.num_dims), jnp.float32)
        params = {
            "actor": self.actor.init(k_actor, obs),
            "critic": init_ensemble(self.critic, k_critic, self.config.num_critics, obs, action),
            "log_alpha": jnp.asarray(math.log(self.config.init_alpha), jnp.float32),
        }
        opt_state = {k: opt.init(params[k]) for k, opt in self.optimizers.items()}
        # the memory is unused: exploration is the policy's own noise
        memory = self.initial_memory(num_envs)
        return fresh_state(params, opt_state, k_run, memory, {"critic": params["critic"]})

    def replay_actions(self) -> tuple[int, int]:
        return self.bounds.num_dims, 1

    # ----------------------------------------------------------------------------------- policy
    def sample(self, actor_params, obs: jax.Array, key: jax.Array):
        """Sample normalised actions at `obs`: (y [..., M], per-sample entropy estimate, aux).

        Gaussian: the entropy estimate is -log pi(y|s) (reparameterised, carries gradient).
        Bernoulli: it is the exact entropy; aux holds (probabilities, sampled upper-extreme mask).
        """
        if self.bernoulli:
            logits = self.actor.apply(actor_params, obs)
            probs = jax.nn.sigmoid(logits)
            upper = jax.random.uniform(key, logits.shape) < probs
            y = jnp.where(upper, 1.0, -1.0)
            return y, jnp.sum(bernoulli_entropy(logits), axis=-1), (probs, upper)
        mean, log_std = self.actor.apply(actor_params, obs)
        y, log_prob = sample_tanh_gaussian(key, mean, log_std)
        return y, -log_prob, None

    def acting_params(self, state: AgentState):
        return state.params["actor"]

    def _act_impl(self, actor_params, memory, obs, key, env_step, mode: str):
        # no acting memory: exploration is the policy's own noise
        return self._policy_action(actor_params, obs, key, env_step, mode), memory

    def _policy_action(self, actor_params, obs, key, env_step, mode: str):
        self.trace_counts["act"] += 1
        m = self.bounds.num_dims
        key = jax.random.fold_in(jax.random.fold_in(key, 0), env_step)
        if self.bernoulli:
            if mode == "random":
                # uniform over the policy's own support (the bang-bang corners), not the box
                upper = jax.random.bernoulli(key, 0.5, (m,))
            elif mode == "explore":
                upper = self.sample(actor_params, obs[None], key)[2][1][0]
            else:
                upper = self.actor.apply(actor_params, obs[None])[0] > 0.0  # the mode
            return self.bounds.extremes(upper)
        if mode == "random":
            y = jax.random.uniform(key, (m,), minval=-1.0, maxval=1.0)
        elif mode == "explore":
            y = self.sample(actor_params, obs[None], key)[0][0]
        else:
            y = jnp.tanh(self.actor.apply(actor_params, obs[None])[0][0])
        return self.bounds.to_env(y)

    # ----------------------------------------------------------------------------------- losses
    def q_values(self, critic_params, obs: jax.Array, unit_action: jax.Array) -> jax.Array:
        """Q of every critic at (obs, normalised action): [K, ...]."""
        return stack_apply(self.critic, critic_params, obs, unit_action)

    def critic_loss(self, critic_params, target_critic, actor_params, log_alpha, batch, key):
        """0.5 * importance-weighted squared soft TD error, summed over critics."""
        next_y, next_entropy, _ = self.sample(actor_params, batch.next_obs, key)
        next_q = self.q_values(target_critic, batch.next_obs, next_y)
        alpha = jnp.exp(log_alpha)
        y = soft_target(batch.reward, batch.discount, next_q, next_entropy, alpha)
        q = self.q_values(critic_params, batch.obs, self.bounds.to_unit(batch.action))
        td = y[None] - q
        loss = 0.5 * jnp.sum(jnp.mean(batch.weights[None] * td**2, axis=1))
        return loss, {"q_mean": jnp.mean(q), "target_mean": jnp.mean(y), "td_abs": jnp.abs(td)}

    def actor_loss(self, actor_params, critic_params, log_alpha, obs, key):
        """E[-alpha H - min_k Q_k(s, a)], a ~ pi; returns (loss, per-sample entropy)."""
        alpha = jnp.exp(log_alpha)
        y, entropy, aux = self.sample(actor_params, obs, key)
        if not self.bernoulli:
            q = clipped_double_q(self.q_values(critic_params, obs, y))
            return jnp.mean(-alpha * entropy - q), entropy
        probs, upper = aux
        m = self.bounds.num_dims
        # the sampled action and its M one-dimension flips: [batch, M + 1, M]
        flips = y[:, None, :] * (1.0 - 2.0 * jnp.eye(m, dtype=y.dtype))[None]
        candidates = jnp.concatenate([y[:, None, :], flips], axis=1)
        obs_rep = jnp.broadcast_to(obs[:, None, :], (*candidates.shape[:2], obs.shape[-1]))
        q = clipped_double_q(self.q_values(critic_params, obs_rep, candidates))  # [batch, M + 1]
        expected = bernoulli_expected_q(probs, upper, q[:, 0], q[:, 1:])
        # x - stop_gradient(x) is zero in value: the loss reads as -alpha H - Q(s, a) while its
        # gradient is the exact per-dimension one
        surrogate = jnp.sum(expected - jax.lax.stop_gradient(expected), axis=-1)
        return jnp.mean(-alpha * entropy - q[:, 0] - surrogate), entropy

    # ----------------------------------------------------------------------------------- learning
    def _step(self, name: str, grads, opt_state, params):
        updates, opt_state = self.optimizers[name].update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    def _update_impl(self, state: AgentState, batch: TrainBatch):
        self.trace_counts["update"] += 1
        c = self.config
        key = jax.random.fold_in(jax.random.fold_in(state.key, 1), state.learner_step)
        k_critic, k_actor = jax.random.split(key)
        params, opt = state.params, state.opt_state
        log_alpha = params["log_alpha"]

        critic_grad = jax.value_and_grad(self.critic_loss, has_aux=True)
        target_critic = state.target_params["critic"]
        (c_loss, aux), c_grads = critic_grad(
            params["critic"], target_critic, params["actor"], log_alpha, batch, k_critic
        )
        critic, critic_opt = self._step("critic", c_grads, opt["critic"], params["critic"])

        (a_loss, entropy), a_grads = jax.value_and_grad(self.actor_loss, has_aux=True)(
            params["actor"], critic, log_alpha, batch.obs, k_actor
        )
        actor, actor_opt = self._step("actor", a_grads, opt["actor"], params["actor"])

        t_loss, t_grad = jax.value_and_grad(alpha_loss)(log_alpha, entropy, self.target_entropy)
        if c.learn_alpha:
            log_alpha, alpha_opt = self._step("log_alpha", t_grad, opt["log_alpha"], log_alpha)
        else:
            alpha_opt = opt["log_alpha"]

        new_state = state.replace(
            params={"actor": actor, "critic": critic, "log_alpha": log_alpha},
            target_params={"critic": polyak(critic, state.target_params["critic"], c.tau)},
            opt_state={"actor": actor_opt, "critic": critic_opt, "log_alpha": alpha_opt},
            learner_step=state.learner_step + 1,
        )
        c_norm, a_norm = optax.tree.norm(c_grads), optax.tree.norm(a_grads)
        finite = jnp.all(
            jnp.isfinite(jnp.stack([c_loss, a_loss, t_loss, c_norm, a_norm, log_alpha]))
        )
        metrics = {
            "critic_loss": c_loss,
            "actor_loss": a_loss,
            "alpha_loss": t_loss,
            "alpha": jnp.exp(log_alpha),
            "entropy": jnp.mean(entropy),
            "critic_grad_norm": c_norm,
            "actor_grad_norm": a_norm,
            "q_mean": aux["q_mean"],
            "target_mean": aux["target_mean"],
            "finite": finite,
        }
        return new_state, metrics, jnp.mean(aux["td_abs"], axis=0)
