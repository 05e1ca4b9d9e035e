"""CQN: Coarse-to-fine Q-Network (Seo, Uruc, James, CoRL 2024, arXiv 2407.07787).

Each action dimension is chosen by zooming: at level l the critic scores `bins` equal
sub-intervals of the interval chosen at level l-1, the agent takes the best one per dimension,
and the interval shrinks to it; the action is the centre of the last interval (3 levels of 5 bins
give a 125-point grid per dimension from 15 outputs). One network serves every level: its input is
the observation, the centres of the current intervals of ALL dimensions (the only channel through
which dimensions coordinate) and a one-hot of the level. Every (level, dimension) utility is
regressed on its own to the full TD target, with no mean or sum across dimensions.

We follow the official state-based code (younggyoseo/CQN-AS, dmc_src/cqn_state.py) unless noted:
- torso [s, c, onehot(l)] -> Linear-LayerNorm-SiLU x 2 (width 512) -> Linear(M*B), head
  initialised to zero; AdamW 1e-4 with weight decay 0.1; batch 512; n-step 1 (the code's walker
  tasks; its other tasks, cheetah_run among them, use batch 256 and n-step 3); gamma 0.99; hard
  target copy every 100 updates; one update per env step; 2000 uniform random steps;
- target per (l, d): y = R + gamma^n (1-done) Qbar_{l,d}(s', c'_{l-1}, b'_{l,d}), where the greedy
  path b' (and so its centres c') is chosen by the ONLINE network and evaluated by the target one;
- loss: mean squared error over batch, levels and dimensions (uniform replay);
- exploration: greedy action + N(0, 0.1) in units of each dimension's half range, clipped to the
  bounds and re-quantised to the finest grid.
Where we differ: ties between equal utilities are broken at random (`random_ties`, default on).
The official state code takes the first maximum, so with its zero-initialised head it acts at the
lowest bin of every dimension (about -1) until the utilities separate; `--agent.no-random-ties`
restores that. Updates start after 4000 transitions (`learning_starts`), half the official
warm-up: the official state config (action repeat 1) starts updating after 8000 env steps, then
updates every env step. We keep 4000 because every CQN result in results/ was trained with it;
`--agent.learning-starts 8000` is the official value. The random warm-up actions are raw uniform
draws, where the official code re-quantises them to the finest grid. Hidden layers use Flax's
default initialisation (lecun normal), where the official code's Linear layers are orthogonal
with zero biases; the heads start at zero in both.
The distributional variant of the pixel/RLBench code is an option: `--agent.distributional` uses
C51 (51 atoms on [v_min, v_max], default [0, 200] as on DMC) with a cross-entropy loss, and
`--agent.dueling` splits the head into value and advantage streams, q = V + A - mean(A), on one
shared torso (the pixel/RLBench code uses two separate networks).
Learning from a dataset (`--data.dataset`, docs/datasets.md), the dataset's rows are
demonstrations, as in the RLBench code: on them, at every level along the data's own zoom path,
a margin loss max(0, 0.01 - (Q(b_e) - Q(b))) and, for the C51 critic, the first-order stochastic
dominance loss, averaged over levels, dimensions and all B bins (the demonstrated bin's own term
included, as the code does; `demo_bin_mean="others"` averages over the other B - 1 only), then
over the demo samples, weighted by `demo_weight` (bc_lambda, 1); `critic_weight` scales the TD
loss (the RLBench code's critic_lambda is 0.1; the default 1 keeps the state code's loss).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from factorl.agents.base import ReplayAgent
from factorl.core.agent import (
    UNIFORM_REPLAY_ONLY,
    AgentState,
    TrainBatch,
    fresh_value_state,
    hard_target_update,
    value_learner_step,
)
from factorl.core.config import ConfigError, ReplaySettings, option
from factorl.maths.demonstrations import BIN_MEANS, demo_mean, fosd_loss, margin_loss
from factorl.maths.distributional import expected_value, select_distribution, support
from factorl.maths.factorisation import ActionFactorisation
from factorl.maths.mixers import select
from factorl.maths.targets import per_utility_categorical_target, per_utility_target


@dataclass
class CQNConfig:
    """CQN hyperparameters; defaults are the official state-based code's (walker_walk)."""

    levels: int = option(3, "coarse-to-fine levels", low=1)
    bins: int = option(5, "bins per level and dimension", low=2)
    width: int = option(512, "hidden width", low=1)
    gamma: float = option(0.99, "discount factor", low=0.0, high=1.0)
    learning_rate: float = option(1e-4, "AdamW learning rate", low=0.0, low_open=True)
    weight_decay: float = option(0.1, "AdamW weight decay", low=0.0)
    target_update_period: int = option(100, "hard target copy every N learner steps", low=1)
    update_every: int = option(1, "environment steps per learner step", low=1)
    learning_starts: int = option(4000, "transitions in replay before learning starts", low=1)
    random_steps: int = option(2000, "uniform random actions for the first N env steps", low=0)
    explore_std: float = option(
        0.1, "Gaussian exploration std, in units of each dimension's half range", low=0.0
    )
    random_ties: bool = option(True, "break ties between equal utilities at random")
    distributional: bool = option(False, "C51 distributional critic (pixel/RLBench variant)")
    dueling: bool = option(False, "dueling head: q = V + A - mean(A)")
    num_atoms: int = option(51, "atoms of the C51 distribution", low=2)
    v_min: float = option(0.0, "lowest atom (C51)")
    v_max: float = option(200.0, "highest atom (C51)")
    critic_weight: float = option(
        1.0, "weight of the TD loss (CQN's RLBench code with demonstrations: 0.1)", low=0.0
    )
    demo_weight: float = option(
        1.0,
        "weight of the demonstration losses on dataset samples (data.dataset): the margin loss, "
        "plus the FOSD loss for the distributional critic (CQN's bc_lambda); 0: off",
        low=0.0,
    )
    demo_margin: float = option(0.01, "margin of the demonstration margin loss", low=0.0)
    demo_fosd: bool = option(
        True, "add the first-order stochastic dominance loss (distributional critic only)"
    )
    demo_bin_mean: str = option(
        "all",
        "average the demonstration losses over all B bins, the demonstrated one's own term "
        "included (CQN's code), or over the B - 1 others (a B/(B-1) stronger pull)",
        choices=BIN_MEANS,
    )

    def check(self) -> None:
        if self.distributional and self.v_max <= self.v_min:
            raise ConfigError("agent.v_max must be greater than agent.v_min")


class LevelCritic(nn.Module):
    """[s, centres of all dimensions, onehot(level)] -> utilities [..., M, B] (or logits
    [..., M, B, atoms] when atoms > 1). The output layers start at zero."""

    num_dims: int
    bins: int
    width: int = 512
    atoms: int = 1
    dueling: bool = False

    @nn.compact
    def __call__(self, obs: jax.Array, centres: jax.Array, level: jax.Array) -> jax.Array:
        h = jnp.concatenate([obs, centres, level], axis=-1)
        for i in range(2):
            h = nn.Dense(self.width, name=f"hidden_{i}")(h)
            h = nn.silu(nn.LayerNorm(name=f"norm_{i}")(h))
        zeros = nn.initializers.zeros
        shape = (*h.shape[:-1], self.num_dims, self.bins, self.atoms)
        adv = nn.Dense(self.num_dims * self.bins * self.atoms, kernel_init=zeros, name="head")(h)
        out = adv.reshape(shape)
        if self.dueling:
            value = nn.Dense(self.num_dims * self.atoms, kernel_init=zeros, name="value")(h)
            value = value.reshape(*h.shape[:-1], self.num_dims, 1, self.atoms)
            out = value + out - jnp.mean(out, axis=-2, keepdims=True)
        return out[..., 0] if self.atoms == 1 else out


def argmax_random_ties(key: jax.Array | None, values: jax.Array) -> jax.Array:
    """Argmax over the last axis; with a key, ties are broken uniformly at random."""
    if key is None:
        return jnp.argmax(values, axis=-1).astype(jnp.int32)
    is_max = values >= jnp.max(values, axis=-1, keepdims=True)
    logits = jnp.where(is_max, 0.0, -jnp.inf)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


class CQN(ReplayAgent):
    """CQN agent for the shared training loop."""

    name = "cqn"
    Config = CQNConfig
    config: CQNConfig
    #: the official state code's replay on its walker tasks: batch 512, 1-step returns, uniform
    #: (its other tasks: batch 256, 3-step); its capacity is 10M transitions, ours 1M, which
    #: never binds at the run lengths used here
    REPLAY = ReplaySettings(capacity=1_000_000, batch_size=512, n_step=1, prioritized=False)
    REPLAY_FIXED: ClassVar[dict[str, str]] = dict(UNIFORM_REPLAY_ONLY)

    def setup(self, action_space: Any) -> None:
        c = self.config
        self.factorisation = self.make_factorisation(action_space)
        self.network = self._make_network()
        self.atoms = support(c.v_min, c.v_max, c.num_atoms) if c.distributional else None
        self.optimizer = optax.adamw(c.learning_rate, weight_decay=c.weight_decay)
        self.half_range = (self.factorisation.high - self.factorisation.low) / 2
        self._target_update = hard_target_update(c.target_update_period)

    def make_factorisation(self, action_space) -> ActionFactorisation:
        """L levels of B bins per dimension, one action at a time."""
        return ActionFactorisation.from_space(action_space, self.config.bins, self.config.levels)

    def _make_network(self) -> nn.Module:
        c = self.config
        atoms = c.num_atoms if c.distributional else 1
        return LevelCritic(self.factorisation.num_dims, c.bins, c.width, atoms, c.dueling)

    def encode_path(self, action: jax.Array) -> jax.Array:
        """Stored actions [batch, *seq, M] -> zoom paths [batch, L, *seq, M]."""
        return jnp.moveaxis(self.factorisation.encode(action), -2, 1)

    def path_centres(self, path: jax.Array) -> jax.Array:
        """Centres fed to each level along `path`, same layout [batch, L, *seq, M]."""
        return jnp.moveaxis(self.factorisation.path_centres(jnp.moveaxis(path, 1, -2)), -2, 1)

    # ----------------------------------------------------------------------------------- setup
    def init(self, seed: int, num_envs: int = 1) -> AgentState:
        k_params, k_run = jax.random.split(jax.random.PRNGKey(seed))
        params = self.network.init(
            k_params,
            jnp.zeros((1, *self.obs_shape)),
            jnp.zeros((1, *self.factorisation.action_shape)),  # centres: shaped like an action
            jnp.zeros((1, self.config.levels)),
        )
        return fresh_value_state(params, self.optimizer, k_run, self.initial_memory(num_envs))

    def replay_actions(self) -> tuple[int, int]:
        # CQN-AS's factorisation is over sequences of `horizon` actions; CQN's has none (None)
        return self.factorisation.num_dims, self.factorisation.horizon or 1

    # ----------------------------------------------------------------------------------- values
    def level_values(self, params, obs, centres, level: int | jax.Array):
        """Utilities [..., M, B] of one level (expected values for the C51 critic)."""
        onehot = jax.nn.one_hot(level, self.config.levels)
        onehot = jnp.broadcast_to(onehot, (*obs.shape[:-1], self.config.levels))
        out = self.network.apply(params, obs, centres, onehot)
        return out if self.atoms is None else expected_value(out, self.atoms)

    def greedy_path(self, params, obs: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """Zoom greedily from the full range: bin indices [..., L, *seq, M] (random ties with a
        key)."""
        fact = self.factorisation
        low, high = fact.initial_interval((*obs.shape[:-1], *fact.sequence_shape))
        path = []
        for level in range(self.config.levels):
            q = self.level_values(params, obs, fact.centre(low, high), level)
            sub = None if key is None else jax.random.fold_in(key, level)
            idx = argmax_random_ties(sub, q)
            path.append(idx)
            low, high = fact.zoom(low, high, idx)
        return jnp.stack(path, axis=obs.ndim - 1)

    def all_levels(self, params, obs, path):
        """Outputs of every level along `path`, in one batched pass: [batch, L, M, B(, A)]."""
        levels = self.config.levels
        centres = self.path_centres(path)  # [batch, L, *seq, M]
        obs_l = jnp.broadcast_to(obs[:, None], (obs.shape[0], levels, obs.shape[-1]))
        onehot = jnp.broadcast_to(jnp.eye(levels), (obs.shape[0], levels, levels))
        return self.network.apply(params, obs_l, centres, onehot)

    # ----------------------------------------------------------------------------------- acting
    def _act_impl(self, params, memory, obs, key, env_step, mode: str):
        self.trace_counts["act"] += 1
        c, fact = self.config, self.factorisation
        key = jax.random.fold_in(jax.random.fold_in(key, 0), env_step)
        k_ties, k_noise = jax.random.split(key)
        if mode == "random":
            u = jax.random.uniform(k_noise, (fact.num_dims,))
            return jnp.asarray(fact.low) + u * (jnp.asarray(fact.high) - fact.low), memory
        path = self.greedy_path(params, obs[None], k_ties if c.random_ties else None)[0]
        action = fact.decode(path)
        if mode == "explore":
            noise = c.explore_std * self.half_range * jax.random.normal(k_noise, action.shape)
            action = fact.quantise(jnp.clip(action + noise, fact.low, fact.high))
        return action, memory

    # ----------------------------------------------------------------------------------- learning
    def loss(self, params, target_params, batch: TrainBatch, key: jax.Array):
        """Per-(level, dimension) regression to the full TD target (MSE, or C51 cross-entropy)."""
        c = self.config
        # replay drops the sequence axis of length one (CQN-AS with K = 1); the reshape restores it
        action = batch.action.reshape(-1, *self.factorisation.action_shape)
        path = self.encode_path(action)  # [batch, L, *seq, M]
        out = self.all_levels(params, batch.obs, path)
        online = jax.lax.stop_gradient(params)
        next_path = self.greedy_path(online, batch.next_obs, key if c.random_ties else None)
        next_out = self.all_levels(target_params, batch.next_obs, next_path)
        if self.atoms is None:
            q = select(out, path)  # [batch, L, *seq, M]
            y = per_utility_target(next_out, next_path, batch.reward, batch.discount)
            td = jax.lax.stop_gradient(y) - q
            loss = jnp.mean(td**2)
            q_mean, y_mean = jnp.mean(q), jnp.mean(y)
        else:
            logits = select_distribution(out, path)  # [batch, L, M, A]
            target = per_utility_categorical_target(
                next_out, next_path, batch.reward, batch.discount, self.atoms
            )
            loss = -jnp.mean(jnp.sum(target * jax.nn.log_softmax(logits, axis=-1), axis=-1))
            q = expected_value(logits, self.atoms)
            y = jnp.sum(target * self.atoms, axis=-1)
            td = y - q
            q_mean, y_mean = jnp.mean(q), jnp.mean(y)
        td_abs = jnp.mean(jnp.abs(td), axis=tuple(range(1, td.ndim)))
        aux = {"q_mean": q_mean, "target_mean": y_mean, "td_abs": td_abs}
        loss = c.critic_weight * loss
        # a batch flags demonstrations only when the run learns from a dataset: static
        if "demo" in batch.extras and c.demo_weight > 0:
            demo = self.demo_loss(out, path, batch.extras["demo"].reshape(-1))
            loss = loss + c.demo_weight * demo
            aux["demo_loss"] = demo
        return loss, aux

    def demo_loss(self, out: jax.Array, path: jax.Array, demo: jax.Array) -> jax.Array:
        """CQN's demonstration losses at every level along the data's own zoom path, averaged
        over levels, dimensions and bins (`demo_bin_mean`), then over the demo-flagged samples:
        the margin loss on the values, plus the FOSD loss on the distributional critic's
        logits."""
        c = self.config
        q = out if self.atoms is None else expected_value(out, self.atoms)
        per = margin_loss(q, path, c.demo_margin, c.demo_bin_mean)  # [batch, L, *seq, M]
        if self.atoms is not None and c.demo_fosd:
            per = per + fosd_loss(out, path, c.demo_bin_mean)
        return demo_mean(jnp.mean(per.reshape(per.shape[0], -1), axis=-1), demo)

    def _update_impl(self, state: AgentState, batch: TrainBatch):
        self.trace_counts["update"] += 1
        key = jax.random.fold_in(jax.random.fold_in(state.key, 1), state.learner_step)
        aux = self.loss, self.optimizer, self._target_update
        return value_learner_step(state, *aux, batch, key)
