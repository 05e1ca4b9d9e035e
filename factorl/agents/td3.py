"""TD3: Twin Delayed Deep Deterministic policy gradient.

Fujimoto, van Hoof, Meger. *Addressing Function Approximation Error in Actor-Critic Methods*,
ICML 2018 (arXiv 1802.09477). A deterministic actor mu(s) = tanh(...) in [-1, 1]^M, mapped to each
dimension's own [low_j, high_j]; two critics whose minimum forms the target (clipped double Q);
target policy smoothing (the target action is the target actor's plus clipped Gaussian noise); and
delayed updates: the actor and all target networks move once every `policy_delay` critic steps.
The actor ascends the FIRST critic, Q_1(s, mu(s)), as in the paper and the authors' code.

All noise is defined in the normalised action space, so on the environment's scale it is multiplied
by each dimension's half-range (high_j - low_j)/2: exploration noise N(0, 0.1), target smoothing
noise N(0, 0.2) clipped to +-0.5, and both noisy actions are clipped back into the bounds.

Defaults and their sources: policy noise 0.2, noise clip 0.5, exploration noise 0.1, policy delay 2,
tau 0.005, gamma 0.99: the paper (Section 6 and Appendix). Adam 3e-4 for both networks, batch 256,
two hidden layers of 256 ReLU units, 25000 uniformly random steps before learning, one update per
environment step: the authors' updated reference code (sfujim/TD3) and CleanRL's
td3_continuous_action.py. The paper itself used 400-300 units, Adam 1e-3, batch 100, and (as we
read it) 10000 random steps on HalfCheetah and Ant and 1000 on the other tasks. Critic loss: the
sum over critics of the mean squared TD error, as in the authors' code. Initialisation: Flax's
defaults (lecun normal kernels, zero biases), not PyTorch's uniform(+-1/sqrt(fan_in)) of the
authors' code and CleanRL.

One learner step is one jitted pure function; the delayed actor/target step is a `jax.lax.cond` on
the learner step, taken when (learner step + 1) is a multiple of the delay (the authors' counter).
On the other steps the actor loss is not computed and its metric is NaN, which the loop's
averaging of learner metrics skips.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import optax

from factorl.agents.base import ReplayAgent
from factorl.agents.sac import ActionBounds, clipped_double_q, polyak
from factorl.core.agent import AgentState, TrainBatch, fresh_state
from factorl.core.config import ReplaySettings, option
from factorl.maths.networks import DeterministicActor, StateActionCritic, init_ensemble, stack_apply


def smoothed_target_action(
    target_action: jax.Array, noise: jax.Array, noise_clip: float
) -> jax.Array:
    """TD3's target policy smoothing in normalised units: clip(mu'(s') + clip(noise, +-c), -1, 1).

    `noise` is already scaled (policy_noise * N(0, 1)); the result carries no gradient.
    """
    smoothed = target_action + jnp.clip(noise, -noise_clip, noise_clip)
    return jax.lax.stop_gradient(jnp.clip(smoothed, -1.0, 1.0))


def td3_target(reward: jax.Array, discount: jax.Array, next_q: jax.Array) -> jax.Array:
    """y = r + discount * min_k Q'_k(s', a~'); next_q: [K, batch]. Carries no gradient."""
    return jax.lax.stop_gradient(reward + discount * clipped_double_q(next_q))


@dataclass
class TD3Config:
    """TD3 hyperparameters; defaults as in the module docstring (paper and authors' code)."""

    width: int = option(256, "hidden units per layer (actor and critics)", low=1)
    depth: int = option(2, "hidden layers (actor and critics)", low=1)
    num_critics: int = option(2, "independent Q networks; targets take their minimum", low=1)
    gamma: float = option(0.99, "discount factor", low=0.0, high=1.0)
    actor_learning_rate: float = option(3e-4, "Adam learning rate of the actor", low=0.0)
    critic_learning_rate: float = option(3e-4, "Adam learning rate of the critics", low=0.0)
    tau: float = option(0.005, "Polyak rate of the target networks", low=0.0, high=1.0)
    policy_noise: float = option(0.2, "target smoothing noise std (normalised units)", low=0.0)
    noise_clip: float = option(0.5, "target smoothing noise clip (normalised units)", low=0.0)
    exploration_noise: float = option(0.1, "exploration noise std (normalised units)", low=0.0)
    policy_delay: int = option(2, "critic steps per actor and target step", low=1)
    update_every: int = option(1, "environment steps per learner step", low=1)
    learning_starts: int = option(25_000, "transitions in replay before learning starts", low=1)
    random_steps: int = option(25_000, "act uniformly at random for the first N env steps", low=0)


class TD3(ReplayAgent):
    """TD3 agent for the shared training loop."""

    name = "td3"
    Config = TD3Config
    config: TD3Config
    #: the authors' code: 1M transitions, batch 256; one-step, uniform
    REPLAY = ReplaySettings(capacity=1_000_000, batch_size=256, n_step=1, prioritized=False)
    REPLAY_FIXED: ClassVar[dict[str, str]] = {"n_step": "its critic targets are one-step"}

    def setup(self, action_space: Any) -> None:
        c = self.config
        self.bounds = ActionBounds.from_space(action_space)
        hidden = (c.width,) * c.depth
        self.actor = DeterministicActor(self.bounds.num_dims, hidden)
        self.critic = StateActionCritic(hidden)
        self.optimizers = {
            "actor": optax.adam(c.actor_learning_rate),
            "critic": optax.adam(c.critic_learning_rate),
        }

    # ----------------------------------------------------------------------------------- setup
    def init(self, seed: int, num_envs: int = 1) -> AgentState:
        """Fresh networks, targets, optimiser states and run key from `seed`."""
        k_actor, k_critic, k_run = jax.random.split(jax.random.PRNGKey(seed), 3)
        obs = jnp.zeros((1, *self.obs_shape), jnp.float32)
        action = jnp.zeros((1, self.bounds.num_dims), jnp.float32)
        params = {
            "actor": self.actor.init(k_actor, obs),
            "critic": init_ensemble(self.critic, k_critic, self.config.num_critics, obs, action),
        }
        opt_state = {k: opt.init(params[k]) for k, opt in self.optimizers.items()}
        # the memory is unused: exploration noise is stateless
        return fresh_state(params, opt_state, k_run, self.initial_memory(num_envs))

    def replay_actions(self) -> tuple[int, int]:
        return self.bounds.num_dims, 1

    # ----------------------------------------------------------------------------------- acting
    def acting_params(self, state: AgentState):
        return state.params["actor"]

    def _act_impl(self, actor_params, memory, obs, key, env_step, mode: str):
        # no acting memory: exploration is the policy's own noise
        return self._policy_action(actor_params, obs, key, env_step, mode), memory

    def _policy_action(self, actor_params, obs, key, env_step, mode: str):
        self.trace_counts["act"] += 1
        m = self.bounds.num_dims
        key = jax.random.fold_in(jax.random.fold_in(key, 0), env_step)
        if mode == "random":
            y = jax.random.uniform(key, (m,), minval=-1.0, maxval=1.0)
        else:
            y = self.actor.apply(actor_params, obs[None])[0]
            if mode == "explore":
                noise = self.config.exploration_noise * jax.random.normal(key, (m,))
                y = jnp.clip(y + noise, -1.0, 1.0)
        return self.bounds.to_env(y)

    # ----------------------------------------------------------------------------------- losses
    def q_values(self, critic_params, obs: jax.Array, unit_action: jax.Array) -> jax.Array:
        """Q of every critic at (obs, normalised action): [K, ...]."""
        return stack_apply(self.critic, critic_params, obs, unit_action)

    def critic_loss(self, critic_params, target_params, batch: TrainBatch, key: jax.Array):
        """Importance-weighted squared TD error, mean over the batch, summed over critics."""
        c = self.config
        target_action = self.actor.apply(target_params["actor"], batch.next_obs)
        noise = c.policy_noise * jax.random.normal(key, target_action.shape)
        next_action = smoothed_target_action(target_action, noise, c.noise_clip)
        next_q = self.q_values(target_params["critic"], batch.next_obs, next_action)
        y = td3_target(batch.reward, batch.discount, next_q)
        q = self.q_values(critic_params, batch.obs, self.bounds.to_unit(batch.action))
        td = y[None] - q
        loss = jnp.sum(jnp.mean(batch.weights[None] * td**2, axis=1))
        return loss, {"q_mean": jnp.mean(q), "target_mean": jnp.mean(y), "td_abs": jnp.abs(td)}

    def actor_loss(self, actor_params, critic_params, obs: jax.Array) -> jax.Array:
        """-E[Q_1(s, mu(s))]: the deterministic policy gradient through the first critic."""
        first = jax.tree_util.tree_map(lambda x: x[0], critic_params)
        return -jnp.mean(self.critic.apply(first, obs, self.actor.apply(actor_params, obs)))

    # ----------------------------------------------------------------------------------- learning
    def _update_impl(self, state: AgentState, batch: TrainBatch):
        self.trace_counts["update"] += 1
        c = self.config
        key = jax.random.fold_in(jax.random.fold_in(state.key, 1), state.learner_step)
        params, opt = state.params, state.opt_state
        (c_loss, aux), c_grads = jax.value_and_grad(self.critic_loss, has_aux=True)(
            params["critic"], state.target_params, batch, key
        )
        updates, critic_opt = self.optimizers["critic"].update(
            c_grads, opt["critic"], params["critic"]
        )
        critic = optax.apply_updates(params["critic"], updates)
        step = state.learner_step + 1

        def delayed(_):
            grad_fn = jax.value_and_grad(self.actor_loss)
            a_loss, a_grads = grad_fn(params["actor"], critic, batch.obs)
            a_updates, actor_opt = self.optimizers["actor"].update(
                a_grads, opt["actor"], params["actor"]
            )
            actor = optax.apply_updates(params["actor"], a_updates)
            targets = polyak({"actor": actor, "critic": critic}, state.target_params, c.tau)
            return actor, actor_opt, targets, a_loss, optax.tree.norm(a_grads)

        def skipped(_):
            # nothing to compute: the actor loss is reported as NaN ("not measured at this step"),
            # which the loop's metric averaging skips; evaluating it anyway would cost about 8% of
            # the update for a diagnostic
            nan = jnp.full((), jnp.nan, c_loss.dtype)
            return params["actor"], opt["actor"], state.target_params, nan, jnp.zeros(())

        actor_step = step % c.policy_delay == 0
        actor, actor_opt, targets, a_loss, a_norm = jax.lax.cond(actor_step, delayed, skipped, None)
        new_state = state.replace(
            params={"actor": actor, "critic": critic},
            target_params=targets,
            opt_state={"actor": actor_opt, "critic": critic_opt},
            learner_step=step,
        )
        c_norm = optax.tree.norm(c_grads)
        actor_finite = jnp.isfinite(a_loss) & jnp.isfinite(a_norm)
        finite = jnp.isfinite(c_loss) & jnp.isfinite(c_norm) & (actor_finite | ~actor_step)
        metrics = {
            "critic_loss": c_loss,
            "actor_loss": a_loss,
            "critic_grad_norm": c_norm,
            "q_mean": aux["q_mean"],
            "target_mean": aux["target_mean"],
            "finite": finite,
        }
        return new_state, metrics, jnp.mean(aux["td_abs"], axis=0)
