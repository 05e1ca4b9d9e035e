"""CQN-AS: Coarse-to-fine Q-Network with Action Sequence (Seo & Abbeel, arXiv 2411.12155).

CQN's critic scores a K-step action sequence instead of a single action: for each step k of the
sequence, the input is [s, c_{l-1,k}, onehot(k), onehot(l)] (the centres of step k's current
intervals for all dimensions), a per-step MLP embeds it, a GRU runs across the K steps, and a head
gives M x B utilities per step. Levels zoom each step's intervals as in CQN, so a greedy sequence is
found level by level for all K steps at once. Replay returns the K actions actually executed from t
(padded with the episode's last action past its end); the n-step return (n) and the sequence
length (K) are independent. Target and loss are CQN's, per (level, step, dimension): every
utility is regressed to R^(n) + gamma^n Qbar_{l,k,d}(s', c', b') along the online-greedy sequence.

Execution (`--agent.execution`):
- `ensemble` (default): temporal ensembling. A new sequence is predicted every step; the action
  executed at t averages the predictions for time t made at t, t-1, ..., t-K+1 within the current
  episode. With `--agent.ensemble-weighting newest` (default) the prediction made i steps ago has
  weight exp(-decay * i), so the newest prediction counts most. `oldest` reproduces the official
  code, which (contrary to its own comment) gives the OLDEST available prediction the largest
  weight, exp(-decay * j) with j = 0 for the oldest. Validity is tracked with an explicit mask: the
  official code drops any prediction containing an exact 0.0, a legitimate grid value; we don't.
- `replan`: open loop, a new sequence every K steps (or at an episode start).

Defaults are the official HumanoidBench state config (K = 4, width 1024, AdamW 5e-5 with weight
decay 0.1, batch 128, n = 3, hard target every 100 updates, one update per 2 env steps, 10k random
steps); levels x bins 3 x 5 as CQN. Where else we differ from the official code
(humanoid_src/cqn_as.py):
- the per-step MLP is one Dense-LayerNorm-SiLU layer; the official code has two
  Linear(bias=False)-LayerNorm-SiLU layers before the GRU (`step_mlp="official"`);
- exploration is CQN's: N(0, explore_std) noise, in units of each dimension's half range, on every
  step of each predicted sequence, re-quantised, before ensembling. The official code predicts
  greedy sequences, ensembles them, then adds N(0, 0.01) to the executed action and clips it,
  without re-quantising (`exploration="official"`, `action_noise` 0.01);
- Dense layers use Flax's default initialisation (lecun normal), where the official code's Linear
  layers are orthogonal with zero biases; the head starts at zero in both.
"""

from __future__ import annotations

from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp

from factorl.agents.cqn import CQN, CQNConfig
from factorl.core.config import ConfigError, ReplaySettings, option
from factorl.maths.factorisation import ActionFactorisation


@dataclass
class CQNASConfig(CQNConfig):
    """CQN-AS hyperparameters (CQN's, with the official HumanoidBench state defaults)."""

    horizon: int = option(4, "action-sequence length K", low=1)
    width: int = option(1024, "hidden width (per-step MLP and GRU)", low=1)
    learning_rate: float = option(5e-5, "AdamW learning rate", low=0.0, low_open=True)
    update_every: int = option(2, "environment steps per learner step", low=1)
    learning_starts: int = option(10_000, "transitions in replay before learning starts", low=1)
    random_steps: int = option(10_000, "uniform random actions for the first N env steps", low=0)
    execution: str = option(
        "ensemble",
        "ensemble: temporal ensembling of overlapping sequences; replan: new sequence every K",
        choices=("ensemble", "replan"),
    )
    ensemble_weighting: str = option(
        "newest",
        "which prediction weighs most in temporal ensembling: newest (ours) or oldest (official)",
        choices=("newest", "oldest"),
    )
    ensemble_decay: float = option(0.01, "temporal-ensembling weight decay rate", low=0.0)
    step_mlp: str = option(
        "one",
        "per-step layers before the GRU: one (Dense-LayerNorm-SiLU, ours) or official (two "
        "Dense-LayerNorm-SiLU layers without biases, the official code's)",
        choices=("one", "official"),
    )
    exploration: str = option(
        "sequence",
        "sequence: CQN's explore_std noise on every predicted step, re-quantised, then executed; "
        "official: greedy sequences, then action_noise on the executed action (not re-quantised)",
        choices=("sequence", "official"),
    )
    action_noise: float = option(
        0.01,
        "std of the noise on the executed action, in half ranges (exploration official; the "
        "official config's 0.01)",
        low=0.0,
    )

    def check(self) -> None:
        super().check()
        if self.distributional:
            raise ConfigError("agent.distributional is not supported (the official code is MSE)")
        if self.dueling:
            raise ConfigError("agent.dueling is not supported (SequenceCritic has no dueling head)")


class SequenceCritic(nn.Module):
    """[s, centres of step k, onehot(k), onehot(level)] per step -> Dense-LayerNorm-SiLU (the
    official code has two such layers) -> GRU over the K steps -> utilities [..., K, M, B]. The
    output layer starts at zero, as in CQN."""

    num_dims: int
    bins: int
    horizon: int
    width: int = 1024
    step_mlp: str = "one"

    @nn.compact
    def __call__(self, obs: jax.Array, centres: jax.Array, level: jax.Array) -> jax.Array:
        batch = obs.shape[:-1]
        k = self.horizon
        steps = jnp.broadcast_to(jnp.eye(k), (*batch, k, k))
        x = jnp.concatenate(
            [
                jnp.broadcast_to(obs[..., None, :], (*batch, k, obs.shape[-1])),
                centres,
                steps,
                jnp.broadcast_to(level[..., None, :], (*batch, k, level.shape[-1])),
            ],
            axis=-1,
        )
        if self.step_mlp == "official":
            h = x
            for suffix in ("", "_1"):  # the official code's two bias-free layers
                dense = nn.Dense(self.width, use_bias=False, name=f"embed{suffix}")
                h = nn.silu(nn.LayerNorm(name=f"norm{suffix}")(dense(h)))
        else:
            h = nn.silu(nn.LayerNorm(name="norm")(nn.Dense(self.width, name="embed")(x)))
        flat = h.reshape(-1, k, self.width)  # the GRU scans the step axis of a flat batch
        # written out step by step (no loop): K is a few steps, and a loop's overhead per step
        # costs more than the small matmuls inside it
        h = nn.RNN(nn.GRUCell(self.width, name="gru_cell"), unroll=k, name="gru")(flat)
        h = h.reshape(*batch, k, self.width)
        out = nn.Dense(self.num_dims * self.bins, kernel_init=nn.initializers.zeros, name="head")(h)
        return out.reshape(*batch, k, self.num_dims, self.bins)


def ensemble_weights(valid: jax.Array, decay: float, weighting: str) -> jax.Array:
    """Normalised weights of the predictions made 0..K-1 steps ago (valid: [K] mask).

    newest: w_i = exp(-decay * i); oldest (official): w = exp(-decay * j) with j = 0 for the
    oldest valid prediction. Invalid entries get weight 0.
    """
    age = jnp.arange(valid.shape[0], dtype=jnp.float32)
    if weighting == "oldest":
        oldest = jnp.max(jnp.where(valid, age, 0.0))
        rank = oldest - age
    else:
        rank = age
    w = jnp.where(valid, jnp.exp(-decay * rank), 0.0)
    return w / jnp.maximum(jnp.sum(w), 1e-12)


class CQNAS(CQN):
    """CQN-AS agent: CQN over K-step action sequences."""

    name = "cqn_as"
    Config = CQNASConfig
    config: CQNASConfig
    #: the official HumanoidBench state code's replay: batch 128, 3-step returns (independent of
    #: the horizon), uniform; its capacity is 10M transitions, ours CQN's 1M, which never binds at
    #: the run lengths used here
    REPLAY = ReplaySettings(capacity=1_000_000, batch_size=128, n_step=3, prioritized=False)

    def make_factorisation(self, action_space) -> ActionFactorisation:
        """CQN's zoom over sequences of K actions."""
        c = self.config
        return ActionFactorisation.from_space(action_space, c.bins, c.levels, horizon=c.horizon)

    def _make_network(self) -> nn.Module:
        c = self.config
        return SequenceCritic(self.factorisation.num_dims, c.bins, c.horizon, c.width, c.step_mlp)

    # ----------------------------------------------------------------------------------- acting
    def memory_init(self):
        """Acting memory: the sequences predicted 0..K-1 steps ago (row i = i steps ago), which
        of them belong to this episode, and the position in the current plan (replan mode)."""
        k, m = self.config.horizon, self.factorisation.num_dims
        return {
            "predictions": jnp.zeros((k, k, m), jnp.float32),
            "valid": jnp.zeros((k,), bool),
            "position": jnp.full((), k, jnp.int32),  # k: no plan yet
        }

    def _predict(self, params, obs, key, mode: str) -> jax.Array:
        """A new sequence [K, M]: greedy, plus quantised Gaussian noise when exploring (with
        `exploration="sequence"`)."""
        c, fact = self.config, self.factorisation
        k_ties, k_noise = jax.random.split(key)
        path = self.greedy_path(params, obs[None], k_ties if c.random_ties else None)[0]
        seq = fact.decode(jnp.moveaxis(path, 0, -2))  # [L, K, M] -> [K, L, M] -> [K, M]
        if mode == "explore" and c.exploration == "sequence":
            noise = c.explore_std * self.half_range * jax.random.normal(k_noise, seq.shape)
            seq = fact.quantise(jnp.clip(seq + noise, fact.low, fact.high))
        return seq

    def _act_impl(self, params, memory, obs, key, env_step, mode: str):
        self.trace_counts["act"] += 1
        action, memory = self._execute(params, memory, obs, key, env_step, mode)
        if mode == "explore" and self.config.exploration == "official":
            # the official code's add_noise_to_action: on the executed action, clipped only
            fact = self.factorisation
            k_act = jax.random.fold_in(jax.random.fold_in(key, 1), env_step)
            noise = (
                self.config.action_noise * self.half_range * jax.random.normal(k_act, action.shape)
            )
            action = jnp.clip(action + noise, fact.low, fact.high)
        return action, memory

    def _execute(self, params, memory, obs, key, env_step, mode: str):
        """The action of the sequences predicted so far (ensembled or the current plan's step)
        and the acting memory after it."""
        c, fact = self.config, self.factorisation
        key = jax.random.fold_in(jax.random.fold_in(key, 0), env_step)
        if mode == "random":
            u = jax.random.uniform(key, (fact.num_dims,))
            return jnp.asarray(fact.low) + u * (jnp.asarray(fact.high) - fact.low), memory
        k = c.horizon
        if c.execution == "replan":
            replan = memory["position"] >= k
            plan = jax.lax.cond(
                replan,
                lambda: self._predict(params, obs, key, mode),
                lambda: memory["predictions"][0],
            )
            position = jnp.where(replan, 0, memory["position"])
            action = plan[position]
            new = {
                "predictions": memory["predictions"].at[0].set(plan),
                "valid": memory["valid"],
                "position": position + 1,
            }
            return action, new
        seq = self._predict(params, obs, key, mode)
        predictions = jnp.concatenate([seq[None], memory["predictions"][:-1]], axis=0)
        valid = jnp.concatenate([jnp.ones((1,), bool), memory["valid"][:-1]])
        # the prediction made i steps ago proposes its step i for now
        proposals = predictions[jnp.arange(k), jnp.arange(k)]  # [K, M]
        w = ensemble_weights(valid, c.ensemble_decay, c.ensemble_weighting)
        action = jnp.sum(w[:, None] * proposals, axis=0)
        new = {"predictions": predictions, "valid": valid, "position": memory["position"]}
        return action, new
