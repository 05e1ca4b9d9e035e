"""REValueD: Randomised Ensemble Value Decomposition.

Ireland & Montana, ICLR 2024 (arXiv 2401.08850); official code davidireland3/REValueD (PyTorch).

REValueD is DecQN with an ensemble of K independent critics (K = 10). Each member k outputs
utilities U^k_j(s, b) of shape [M, B] and values a joint action by the mean over dimensions,
Q^k(s, a) = (1/M) sum_j U^k_j(s, a_j). The members are separate networks (stacked parameters
evaluated with `jax.vmap`), all trained on the same batch towards a target built from the target
ensemble. Training acts greedily with respect to ONE member drawn at random every step (randomised
value functions for exploration); evaluation acts on the ensemble mean.

We follow the official code (davidireland3/REValueD, PyTorch) where it exists:
- target `"mean"` (the code's default "Mean"): y = R^(n) + gamma^n (1 - done) (1/M) sum_j
  max_b [(1/K) sum_k Ubar^k_j(s', b)], one target shared by all members;
- target `"redq"` (the code's "REDQ"): each member's own greedy joint value
  V^k(s') = (1/M) sum_j max_b Ubar^k_j(s', b) is computed, and the target is the minimum of V^k over
  `redq_members` (2) members drawn without replacement. The min is over JOINT values (after the
  per-dimension max and the mean over dimensions), not per dimension utility, as in the code. The
  code draws one pair per learner step for the whole batch; so do we, from the state's key folded
  with the learner step (deterministic, and exact across resume);
- target `"decqn"` (the code's "DecQN", "train networks independently"): member k takes its
  argmax at s' with its ONLINE utilities and evaluates it with its OWN target network (double Q
  per member);
  `"decqn_mean"` evaluates every member's argmax on the mean of the target members instead, as
  DecQN's two critics do (not in the REValueD code; offered for comparison);
- loss: Huber (delta 1) of each member's joint TD error, averaged over batch AND members (the
  code's `HuberLoss()` mean reduction), so the gradient per member is 1/K of a summed loss;
- Polyak target averaging with tau 0.005 after every learner step; Adam 1e-4, global-norm clip 40;
  batch 256; n = 3; gamma 0.99; 3 bins; width 512; one learner step per 5 env steps; replay 500k;
- exploration: 10k uniformly random warm-up steps (the code's burn-in, which does not touch
  epsilon), then epsilon-greedy on the JOINT action (with probability epsilon the whole action is
  uniformly random, otherwise greedy w.r.t. one random member), epsilon starting at 1.0 and
  multiplied by 0.999 each time a random action is taken, down to 0.05. The epsilon lives in
  `AgentState.memory`, so it is checkpointed and resume is exact. With N environments each keeps
  its own epsilon, decayed by its own random actions (one environment: the reference exactly);
- replay is uniform: the code has no prioritised replay. Its n-step buffer is flushed only on
  termination, so at a time limit it never stores an episode's last n-1 transitions and every
  bootstrapped target uses gamma^n; we store them with gamma^m (m < n steps left) and bootstrap
  from the true final observation.

The regulariser is the paper's (section 4), which the official code omits (its README says TODO);
the formula below is a RECONSTRUCTION, switchable with `reg_coef` (0 disables it):
    L_reg = (1/M) sum_j w_j (U^k_j(s, a_j) - Ubar^k_j(s, a_j))^2,
    w_j = 1 - exp(-|delta_j|),  delta_j = y^k - U^k_j(s, a_j),  w_j a constant (stop_gradient).
Reading chosen: Ubar^k is member k's OWN target network (the paper regularises each utility towards
"its" target-network value; the ensemble mean would couple the members and shrink their diversity),
and L_reg is averaged over batch and members exactly like the TD term, so `reg_coef` (0.5, the
paper's beta) weighs two losses on the same scale. Total: L = L_TD + reg_coef * L_reg.

Network: every member, LayerNorm included, is its own `UtilityCritic` with DecQN's torso (the
paper's "ensemble of DecQN critics"; `torso="decqn"`). The official code's torso differs: a ReLU
after the residual block's second layer and none after the LayerNorm (`torso="revalued"`), and its
vectorised ensemble shares one LayerNorm's affine parameters across members (not offered).
Initialisation: Flax's defaults (lecun normal kernels, zero biases); the official code draws
weights and biases from U(+-1/sqrt(fan_in)).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import optax

from factorl.agents.base import ReplayAgent
from factorl.core.agent import (
    AgentState,
    TrainBatch,
    fresh_value_state,
    polyak_target_update,
    value_learner_step,
)
from factorl.core.config import ConfigError, ReplaySettings, option
from factorl.maths.mixers import greedy, mean_mixer, select
from factorl.maths.networks import TORSOS, UtilityEnsemble
from factorl.maths.targets import (
    double_q_ensemble_target,
    ensemble_mean_target,
    ensemble_min_target,
    huber,
    independent_double_q_target,
    sample_members,
    td_weighted_utility_regulariser,
)

TARGETS = ("mean", "redq", "decqn", "decqn_mean")


@dataclass
class REValueDConfig:
    """REValueD hyperparameters; defaults are the official code's (configs/base_config.yaml)."""

    bins: int = option(3, "bins per action dimension (2 = bang-bang, 3 = bang-off-bang)", low=2)
    width: int = option(512, "hidden width of each member's residual torso", low=1)
    torso: str = option(
        "decqn",
        "decqn: DecQN's residual torso (ELU after the LayerNorm); revalued: the official code's "
        "(ReLU after the block's second layer, nothing after the LayerNorm)",
        choices=TORSOS,
    )
    ensemble_size: int = option(10, "independent critics in the ensemble (K)", low=1)
    target: str = option(
        "mean",
        "mean: max over the target-ensemble mean (code default); redq: min over redq_members "
        "sampled members' joint values; decqn: per-member double Q on its own target network; "
        "decqn_mean: per-member argmax evaluated on the target-ensemble mean",
        choices=TARGETS,
    )
    redq_members: int = option(2, "members sampled for the redq target's min", low=1)
    reg_coef: float = option(
        0.5, "weight of the reconstructed per-dimension regulariser (0 disables it)", low=0.0
    )
    gamma: float = option(0.99, "discount factor", low=0.0, high=1.0)
    learning_rate: float = option(1e-4, "Adam learning rate", low=0.0, low_open=True)
    max_grad_norm: float = option(40.0, "global gradient-norm clip", low=0.0, low_open=True)
    huber_delta: float = option(
        1.0, "Huber threshold on each member's joint TD error", low=0.0, low_open=True
    )
    tau: float = option(
        0.005, "Polyak target step size, every learner step", low=0.0, high=1.0, low_open=True
    )
    update_every: int = option(5, "environment steps per learner step", low=1)
    learning_starts: int = option(10_000, "transitions in replay before learning starts", low=1)
    random_steps: int = option(
        10_000, "uniformly random warm-up env steps (they do not decay epsilon)", low=0
    )
    epsilon_start: float = option(1.0, "initial exploration probability", low=0.0, high=1.0)
    epsilon_decay: float = option(
        0.999, "epsilon multiplier applied each time a random action is taken", low=0.0, high=1.0
    )
    epsilon_min: float = option(0.05, "floor of the decaying epsilon", low=0.0, high=1.0)

    def check(self) -> None:
        """Cross-field checks that single-field bounds cannot express."""
        if self.target == "redq" and self.redq_members > self.ensemble_size:
            raise ConfigError(
                f"agent.redq_members ({self.redq_members}) must be at most "
                f"agent.ensemble_size ({self.ensemble_size})"
            )


def decayed_epsilon(
    epsilon: jax.Array, took_random: jax.Array, decay: float, minimum: float
) -> jax.Array:
    """The reference rule: epsilon <- max(epsilon * decay, minimum), only after a random action."""
    return jnp.where(took_random, jnp.maximum(epsilon * decay, minimum), epsilon)


def joint_epsilon_greedy(
    key: jax.Array,
    greedy_idx: jax.Array,
    bins: int,
    epsilon: jax.Array,
    decay: float,
    minimum: float,
) -> tuple[jax.Array, jax.Array]:
    """With probability epsilon replace the WHOLE action [M] by uniform random bins.

    Returns (bin indices [M], the new epsilon), which is decayed only when the action was random.
    """
    k_coin, k_rand = jax.random.split(key)
    took_random = jax.random.uniform(k_coin, ()) < epsilon
    random_idx = jax.random.randint(k_rand, greedy_idx.shape, 0, bins, dtype=jnp.int32)
    idx = jnp.where(took_random, random_idx, greedy_idx)
    return idx, decayed_epsilon(epsilon, took_random, decay, minimum)


class REValueD(ReplayAgent):
    """REValueD agent: an ensemble of DecQN critics (the `UtilityEnsemble` DecQN uses, with K
    members), its own acting, targets and loss."""

    name = "revalued"
    Config = REValueDConfig
    config: REValueDConfig
    #: the reference's replay: 500k transitions, batch 256, 3-step returns, uniform
    REPLAY = ReplaySettings(capacity=500_000, batch_size=256, n_step=3, prioritized=False)
    episodic_memory = False  # the epsilon decays over the whole run, across episodes

    def setup(self, action_space: Any) -> None:
        c = self.config
        self.critic = UtilityEnsemble(action_space, c.bins, c.width, c.ensemble_size, c.torso)
        self.factorisation = self.critic.factorisation
        self.network = self.critic.network
        self.optimizer = optax.chain(
            optax.clip_by_global_norm(c.max_grad_norm), optax.adam(c.learning_rate)
        )
        self._target_update = polyak_target_update(c.tau)

    def init(self, seed: int, num_envs: int = 1) -> AgentState:
        """Independently initialised members, equal target copies, fresh optimiser state."""
        k_params, k_run = jax.random.split(jax.random.PRNGKey(seed))
        params = self.critic.init(k_params, self.obs_shape)
        return fresh_value_state(params, self.optimizer, k_run, self.initial_memory(num_envs))

    def utilities(self, params: Any, obs: jax.Array) -> jax.Array:
        """Utilities of every member: [K, ..., M, B]."""
        return self.critic(params, obs)

    def memory_init(self) -> jax.Array:
        """The decaying epsilon, starting at epsilon_start."""
        return jnp.asarray(self.config.epsilon_start, jnp.float32)

    def replay_actions(self) -> tuple[int, int]:
        return self.factorisation.num_dims, 1

    # ----------------------------------------------------------------------------------- acting
    def _act_impl(self, params, memory, obs, key, env_step, mode: str):
        """'explore' is greedy w.r.t. one member drawn afresh every step, with joint
        epsilon-greedy on top (returning the decayed epsilon); 'greedy' acts on the ensemble
        mean; 'random' draws uniform bins and leaves epsilon alone."""
        self.trace_counts["act"] += 1
        c = self.config
        key = jax.random.fold_in(jax.random.fold_in(key, 0), env_step)
        if mode == "random":
            idx = jax.random.randint(key, (self.factorisation.num_dims,), 0, c.bins, jnp.int32)
            return self.factorisation.decode(idx), memory
        if mode == "greedy":
            u = self.utilities(params, obs[None])[:, 0]  # [K, M, B]
            return self.factorisation.decode(greedy(jnp.mean(u, axis=0))), memory
        k_member, k_explore = jax.random.split(key)
        member = jax.random.randint(k_member, (), 0, c.ensemble_size)
        # only the drawn member is evaluated: 1/K of the ensemble's forward cost per env step
        u = self.critic.member(params, member, obs[None])[0]  # [M, B]
        idx, memory = joint_epsilon_greedy(
            k_explore, greedy(u), c.bins, memory, c.epsilon_decay, c.epsilon_min
        )
        return self.factorisation.decode(idx), memory

    # ----------------------------------------------------------------------------------- learning
    def targets(self, params: Any, target_params: Any, batch: TrainBatch, key: jax.Array):
        """TD targets of every member, [K, batch], for the configured target variant."""
        c = self.config
        u_next_target = self.utilities(target_params, batch.next_obs)  # [K, batch, M, B]
        if c.target == "mean":
            y = ensemble_mean_target(u_next_target, batch.reward, batch.discount)
        elif c.target == "redq":
            members = sample_members(key, c.ensemble_size, c.redq_members)
            y = ensemble_min_target(u_next_target, members, batch.reward, batch.discount)
        else:
            u_next_online = self.utilities(jax.lax.stop_gradient(params), batch.next_obs)
            rule = independent_double_q_target if c.target == "decqn" else double_q_ensemble_target
            y = rule(u_next_online, u_next_target, batch.reward, batch.discount)
        return jnp.broadcast_to(y, (c.ensemble_size, y.shape[-1]))

    def loss(self, params: Any, target_params: Any, batch: TrainBatch, key: jax.Array):
        """Huber loss of every member's joint TD error (mean over batch and members), plus
        `reg_coef` times the reconstructed regulariser (see the module docstring)."""
        c = self.config
        u = self.utilities(params, batch.obs)  # [K, batch, M, B]
        actions = self.factorisation.encode(batch.action)  # [batch, M]
        taken = jnp.broadcast_to(actions, u.shape[:-1])
        chosen = select(u, taken)  # [K, batch, M]
        q = mean_mixer(chosen)  # [K, batch]
        y = self.targets(params, target_params, batch, key)
        td = y - q
        # weights are 1 under uniform replay; kept so the loss stays correct for any sampler
        td_loss = jnp.mean(batch.weights[None] * huber(td, c.huber_delta))
        if c.reg_coef > 0:
            chosen_target = select(self.utilities(target_params, batch.obs), taken)
            penalty = td_weighted_utility_regulariser(chosen, chosen_target, y)  # [K, batch]
            reg_loss = jnp.mean(batch.weights[None] * penalty)
        else:
            reg_loss = jnp.zeros(())
        loss = td_loss + c.reg_coef * reg_loss
        aux = {
            "td_loss": td_loss,
            "reg_loss": reg_loss,
            "q_mean": jnp.mean(q),
            "q_member_std": jnp.mean(jnp.std(q, axis=0)),
            "target_mean": jnp.mean(y),
            "td_abs": jnp.mean(jnp.abs(td), axis=0),  # per sample, mean over members
        }
        return loss, aux

    def _update_impl(self, state: AgentState, batch: TrainBatch):
        self.trace_counts["update"] += 1
        # stream 1 of the run key, one draw per learner step (acting uses stream 0)
        key = jax.random.fold_in(jax.random.fold_in(state.key, 1), state.learner_step)
        new_state, metrics, td_abs = value_learner_step(
            state, self.loss, self.optimizer, self._target_update, batch, key
        )
        return new_state, {**metrics, "epsilon": jnp.mean(state.memory)}, td_abs
