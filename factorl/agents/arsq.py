"""ARSQ: Auto-Regressive Soft Q-learning (Liu et al., ICML 2025, arXiv 2502.00288).

CQN's coarse-to-fine zoom (L levels of B bins per dimension), but the K = L * D choices are made
one at a time, position k = l * D + d (level-major), each conditioned on the observation and on
c_k, the normalised midpoints of all D dimensions' current intervals after the choices before k
(c_0 = 0). Where CQN and DecQN score each dimension on its own, and so undervalue a joint action
whose dimensions are each mostly seen in bad company, ARSQ's later choices know the earlier ones.
The maths are the pure functions of `factorl.maths.autoregressive`.

Per critic i (two, each with its own V and advantage networks):
- advantage net: one MLP on concat[s, c_k] with K * B outputs; position k reads its own B-slice
  u_k, normalised into the dimensional soft advantage A_k(b) = u_k(b) - alpha logsumexp(u_k/alpha)
  at the FIXED training temperature `soft_alpha` (sum_b exp(A_k(b)/alpha) = 1);
- Q_i(s, a) = V_i(s) + sum_k A_{i,k}(s, c_k(a), b_k(a)), with c_k from the stored action
  (teacher forcing: the action is floored into bins level by level);
- target y = R^(n) + gamma^m (1 - terminated) min(Vbar_1(s'), Vbar_2(s')), target networks
  Polyak-averaged (tau); a truncation keeps its discount and bootstraps, as everywhere in factorl;
- loss: bellman_coef * sum_i mean_batch (Q_i - y)^2 (+ the demonstration term below);
- acting: position by position, the elementwise minimum of both critics' normalised advantages,
  sampled from Categorical(logits = min / act_alpha) while exploring and its argmax when greedy,
  then the chosen dimension's interval zooms in; the action is the centre of the final intervals.

Demonstration term (the authors' code calls it "cql"): on samples a batch flags as
demonstrations (`batch.extras["demo"]`, [batch], 1 for a demo), with the demonstrated bins b_e
and teacher-forced prefixes, summed over positions: `demo_loss="margin"`,
mean_{b != b_e} clip(A_k(b) - A_k(b_e), clip_min, clip_max), or `"cql"`,
clip(tau_c logsumexp_{b != b_e}(A_k(b)/tau_c) - A_k(b_e), clip_min, clip_max); weighted by
`demo_weight`, added per critic. The host runner flags a batch's dataset rows as demonstrations
when the run learns from a dataset (`--data.dataset`, docs/datasets.md): every row in the offline
phase, the `data.share` drawn from the dataset online. Without a dataset no batch carries the
flag and the term is skipped at trace time.

Sources and choices (docs/arsq.md has the full table):
- We follow the authors' D4RL code (state observations, as factorl's tasks) where it and the
  RLBench code differ: MLP width 512, depth 3, tanh, orthogonal init (gain sqrt 2, output gain
  0.01, zero biases) for V and advantage nets alike (`network="mlp"`); the RLBench torso adapted
  to states (obs -> Linear-LayerNorm-Tanh, concat c_k, Linear(no bias)-LayerNorm-SiLU x depth,
  zero head) is `network="layernorm"`. Acting uses the ONLINE critics (one choice of the D4RL
  code's `act_network` option; RLBench acts with the targets: `act_network="target"`). The demo
  term averages over demo samples (D4RL; RLBench's mean over the whole batch is
  `demo_average="batch"`).
- Paper vs code: the paper's demonstration loss, as a digest of it gives it, is the margin form,
  max(A(b) - A(b_e), C_m); the code has both forms behind a switch. We default to the paper's
  margin form; `demo_loss="cql"` is the code's other form.
- Values the sources do not give, chosen here: levels 3 and bins 5 (CQN's, within the paper's
  L in {2, 3}, B in {5, 7}); soft_alpha = act_alpha = 0.05; Adam 3e-4 for both V and advantage
  nets, tau 0.005, batch 256 (the JAX CQL code ARSQ's D4RL code builds on); n-step 1; 2000
  uniformly random warm-up steps and 4000 transitions before learning (CQN's); demo weight 1
  (CQN's bc_lambda), tau_c 1, clip_min -1, clip_max open. The code's `qchunk_size` (several
  advantage MLPs over chunks of positions) is not offered.
"""

from __future__ import annotations

import math
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
    polyak_target_update,
    value_learner_step,
)
from factorl.core.config import ConfigError, ReplaySettings, option
from factorl.maths import autoregressive as ar
from factorl.maths.factorisation import ActionFactorisation
from factorl.maths.networks import init_ensemble, orthogonal, stack_apply

#: ARSQ's two critics (each a V network and an advantage network)
NUM_CRITICS = 2


@dataclass
class ARSQConfig:
    """ARSQ hyperparameters. The sources give none of the values: each default is chosen here
    (docs/arsq.md says why)."""

    levels: int = option(3, "coarse-to-fine levels L (CQN's 3; the paper uses 2 or 3)", low=1)
    bins: int = option(5, "bins B per level and dimension (CQN's 5; the paper 5 or 7)", low=2)
    width: int = option(512, "hidden width of the V and advantage nets (D4RL code: 512)", low=1)
    depth: int = option(3, "hidden layers of the V and advantage nets (D4RL code: 3)", low=1)
    network: str = option(
        "mlp",
        "mlp: the D4RL code's tanh MLP with orthogonal init; layernorm: the RLBench torso on "
        "states (Linear-LayerNorm-Tanh features, Linear-LayerNorm-SiLU blocks, zero head)",
        choices=("mlp", "layernorm"),
    )
    gamma: float = option(0.99, "discount factor", low=0.0, high=1.0)
    soft_alpha: float = option(
        0.05,
        "fixed training temperature of the soft advantages (not learned); small: near-greedy "
        "soft values",
        low=0.0,
        low_open=True,
    )
    act_alpha: float = option(
        0.05,
        "fixed acting temperature: exploration samples bins from softmax(min advantage / "
        "act_alpha) (soft_alpha's value: the implied soft policy)",
        low=0.0,
        low_open=True,
    )
    act_network: str = option(
        "online",
        "critics that act: online (the D4RL code's option used here) or target (RLBench code)",
        choices=("online", "target"),
    )
    optimizer: str = option(
        "adam", "optimiser of both nets (the code's adam|sgd)", choices=("adam", "sgd")
    )
    learning_rate: float = option(
        3e-4, "learning rate of the advantage nets (qf_lr; JAX CQL's 3e-4)", low=0.0, low_open=True
    )
    value_learning_rate: float = option(
        3e-4, "learning rate of the V nets (vf_lr; JAX CQL's 3e-4)", low=0.0, low_open=True
    )
    tau: float = option(
        0.005, "Polyak rate of the target nets (JAX CQL's 0.005)", low=0.0, high=1.0
    )
    bellman_coef: float = option(1.0, "weight of the Bellman loss (bellman_loss_coef)", low=0.0)
    demo_loss: str = option(
        "margin",
        "demonstration term on demo-flagged samples: margin (the paper's) or cql (the code's "
        "soft-max form); dataset rows are the demonstrations (data.dataset)",
        choices=("margin", "cql"),
    )
    demo_weight: float = option(
        1.0, "weight of the demonstration term (cql_min_q_weight; CQN's bc_lambda 1)", low=0.0
    )
    demo_temperature: float = option(
        1.0, "tau_c of the cql form's soft maximum (JAX CQL's cql_temp 1)", low=0.0, low_open=True
    )
    demo_clip_min: float | None = option(
        -1.0,
        "lower clip of each position's demo term (None: open); -1 stops once the demonstrated "
        "bin leads by 1, e^20 times likelier at soft_alpha 0.05",
    )
    demo_clip_max: float | None = option(
        None, "upper clip of each position's demo term (None: open, as JAX CQL's default)"
    )
    demo_average: str = option(
        "demos",
        "average the demo term over demo samples (D4RL code) or over the whole batch (RLBench)",
        choices=("demos", "batch"),
    )
    update_every: int = option(1, "environment steps per learner step", low=1)
    learning_starts: int = option(4000, "transitions in replay before learning starts", low=1)
    random_steps: int = option(2000, "uniform random actions for the first N env steps", low=0)

    def check(self) -> None:
        low, high = self.demo_clip_min, self.demo_clip_max
        if low is not None and high is not None and high < low:
            raise ConfigError("agent.demo_clip_max must be at least agent.demo_clip_min")


class PositionHead(nn.Module):
    """The output layer, `positions` x `bins` units: a Dense layer (same parameters), which
    with `own=True` takes inputs [..., K, W], row k conditioned for position k, and gives each
    row only its own position's bins, [..., K, B]: the diagonal of the full [..., K, K, B]
    without computing the rest."""

    positions: int
    bins: int
    kernel_init: Any

    @nn.compact
    def __call__(self, h: jax.Array, own: bool = False) -> jax.Array:
        units = self.positions * self.bins
        kernel = self.param("kernel", self.kernel_init, (h.shape[-1], units))
        bias = self.param("bias", nn.initializers.zeros, (units,))
        if not own:
            return h @ kernel + bias
        per_position = kernel.reshape(h.shape[-1], self.positions, self.bins)
        out = jnp.einsum("...kw,wkb->...kb", h, per_position)
        return out + bias.reshape(self.positions, self.bins)


class ARSQNet(nn.Module):
    """obs [..., O] (and a conditioning vector c [..., D] for the advantage net) -> [..., P x B]
    (`positions` x `bins`; the V net has one of each); with `own=True`, obs and c have a
    position axis [..., K, .] and the result is each row's own position, [..., K, B].

    `style="mlp"`: concat[s, c] -> (Dense-tanh) x depth -> Dense(out); orthogonal kernels (gain
    sqrt 2, the output 0.01), zero biases (the D4RL code). `style="layernorm"`: s ->
    Dense-LayerNorm-tanh, concat c, (Dense without bias - LayerNorm - SiLU) x depth, zero-init
    output (the RLBench code with the state as its only input)."""

    positions: int
    bins: int
    width: int = 512
    depth: int = 3
    style: str = "mlp"

    @nn.compact
    def __call__(self, obs: jax.Array, cond: jax.Array | None = None, own: bool = False):
        if self.style == "mlp":
            h = obs if cond is None else jnp.concatenate([obs, cond], axis=-1)
            for i in range(self.depth):
                dense = nn.Dense(
                    self.width, kernel_init=orthogonal(math.sqrt(2)), name=f"hidden_{i}"
                )
                h = jnp.tanh(dense(h))
            head = PositionHead(self.positions, self.bins, orthogonal(0.01), name="head")
            return head(h, own)
        h = jnp.tanh(nn.LayerNorm(name="feature_norm")(nn.Dense(self.width, name="feature")(obs)))
        if cond is not None:
            h = jnp.concatenate([h, cond], axis=-1)
        for i in range(self.depth):
            h = nn.Dense(self.width, use_bias=False, name=f"hidden_{i}")(h)
            h = nn.silu(nn.LayerNorm(name=f"norm_{i}")(h))
        head = PositionHead(self.positions, self.bins, nn.initializers.zeros, name="head")
        return head(h, own)


class ARSQ(ReplayAgent):
    """ARSQ agent for the shared training loop (module docstring)."""

    name = "arsq"
    Config = ARSQConfig
    config: ARSQConfig
    #: 1-step returns, uniform replay, batch 256 (the JAX CQL code's), 1M transitions
    REPLAY = ReplaySettings(capacity=1_000_000, batch_size=256, n_step=1, prioritized=False)
    REPLAY_FIXED: ClassVar[dict[str, str]] = dict(UNIFORM_REPLAY_ONLY)

    def setup(self, action_space: Any) -> None:
        c = self.config
        self.factorisation = ActionFactorisation.from_space(action_space, c.bins, c.levels)
        self.num_dims = self.factorisation.num_dims
        self.num_positions = c.levels * self.num_dims
        self.value_net = ARSQNet(1, 1, c.width, c.depth, c.network)
        self.advantage_net = ARSQNet(self.num_positions, c.bins, c.width, c.depth, c.network)
        make = optax.adam if c.optimizer == "adam" else optax.sgd
        self.optimizer = optax.multi_transform(
            {"value": make(c.value_learning_rate), "advantage": make(c.learning_rate)},
            lambda params: {
                name: jax.tree_util.tree_map(lambda _, n=name: n, sub)
                for name, sub in params.items()
            },
        )
        self._target_update = polyak_target_update(c.tau)
        # one compiled program instead of many small dispatches (the orthogonal draws)
        self._init_params = jax.jit(self.init_params)

    # ----------------------------------------------------------------------------------- setup
    def init_params(self, key: jax.Array) -> dict[str, Any]:
        """Two independently initialised critics: {"value": [2, ...], "advantage": [2, ...]}."""
        k_value, k_adv = jax.random.split(key)
        obs = jnp.zeros((1, *self.obs_shape), jnp.float32)
        cond = jnp.zeros((1, self.num_dims), jnp.float32)
        return {
            "value": init_ensemble(self.value_net, k_value, NUM_CRITICS, obs),
            "advantage": init_ensemble(self.advantage_net, k_adv, NUM_CRITICS, obs, cond),
        }

    def init(self, seed: int, num_envs: int = 1) -> AgentState:
        """Two independently initialised critics (V and advantage nets), equal target copies."""
        k_params, k_run = jax.random.split(jax.random.PRNGKey(seed))
        params = self._init_params(k_params)
        return fresh_value_state(params, self.optimizer, k_run, self.initial_memory(num_envs))

    def replay_actions(self) -> tuple[int, int]:
        return self.num_dims, 1

    def acting_params(self, state: AgentState) -> Any:
        return state.target_params if self.config.act_network == "target" else state.params

    # ----------------------------------------------------------------------------------- values
    def values(self, params, obs: jax.Array) -> jax.Array:
        """V of both critics: [2, ...]."""
        return stack_apply(self.value_net, params["value"], obs)[..., 0]

    def raw_outputs(self, params, obs: jax.Array, cond: jax.Array) -> jax.Array:
        """Both critics' advantage heads for one conditioning vector: [2, ..., K, B]."""
        out = stack_apply(self.advantage_net, params["advantage"], obs, cond)
        return out.reshape(*out.shape[:-1], self.num_positions, self.config.bins)

    def teacher_forced_advantages(self, params, obs: jax.Array, path: jax.Array) -> jax.Array:
        """Normalised advantages of every position along zoom paths [batch, L, D], each read
        from its own conditioning vector c_k: [2, batch, K, B]."""
        cond = ar.conditioning(self.factorisation, path)  # [batch, K, D]
        obs_k = jnp.broadcast_to(obs[:, None], (obs.shape[0], self.num_positions, obs.shape[-1]))
        net = self.advantage_net
        own = jax.vmap(lambda p: net.apply(p, obs_k, cond, own=True))(params["advantage"])
        return ar.soft_normalise(own, self.config.soft_alpha)  # [2, batch, K, B]

    # ----------------------------------------------------------------------------------- acting
    def choose_path(self, params, obs: jax.Array, key: jax.Array | None) -> jax.Array:
        """Position by position from the full range: bin choices [K] for one observation [O],
        sampled from softmax(min advantage / act_alpha) with a key, argmax without."""
        c, fact = self.config, self.factorisation
        low, high = fact.initial_interval(())
        choices = []
        for k in range(self.num_positions):
            dim = k % self.num_dims
            cond = ar.interval_midpoints(fact, low, high)
            raw = self.raw_outputs(params, obs[None], cond[None])[:, 0, k]  # [2, B]
            adv = jnp.min(ar.soft_normalise(raw, c.soft_alpha), axis=0)
            if key is None:
                b = jnp.argmax(adv).astype(jnp.int32)
            else:
                b = jax.random.categorical(jax.random.fold_in(key, k), adv / c.act_alpha)
                b = b.astype(jnp.int32)
            choices.append(b)
            low, high = ar.zoom_dimension(fact, low, high, dim, b)
        return jnp.stack(choices)

    def _act_impl(self, params, memory, obs, key, env_step, mode: str):
        self.trace_counts["act"] += 1
        fact = self.factorisation
        key = jax.random.fold_in(jax.random.fold_in(key, 0), env_step)
        if mode == "random":
            u = jax.random.uniform(key, (fact.num_dims,))
            return jnp.asarray(fact.low) + u * (jnp.asarray(fact.high) - fact.low), memory
        choices = self.choose_path(params, obs, key if mode == "explore" else None)
        return fact.decode(ar.unflatten_positions(choices, self.num_dims)), memory

    # ----------------------------------------------------------------------------------- learning
    def demo_term(self, advantages: jax.Array, choices: jax.Array, demo: jax.Array) -> jax.Array:
        """The demonstration term of each critic, [2]: advantages [2, batch, K, B], the data's
        choices [batch, K], demo flags [batch]."""
        c = self.config
        if c.demo_loss == "margin":
            per_position = ar.margin_demo_loss(
                advantages, choices[None], c.demo_clip_min, c.demo_clip_max
            )
        else:
            per_position = ar.cql_demo_loss(
                advantages, choices[None], c.demo_temperature, c.demo_clip_min, c.demo_clip_max
            )
        per_sample = jnp.sum(per_position, axis=-1)  # [2, batch]
        return jax.vmap(lambda x: ar.demo_average(x, demo, c.demo_average))(per_sample)

    def loss(self, params, target_params, batch: TrainBatch):
        c = self.config
        action = batch.action.reshape(-1, self.num_dims)
        path = self.factorisation.encode(action)  # [batch, L, D]: floored level by level
        choices = ar.positions(path)  # [batch, K]
        advantages = self.teacher_forced_advantages(params, batch.obs, path)
        value = self.values(params, batch.obs)  # [2, batch]
        q = ar.soft_q(value, advantages, choices[None])  # [2, batch]
        y = ar.min_value_target(
            batch.reward, batch.discount, self.values(target_params, batch.next_obs)
        )
        td = q - y[None]
        bellman = jnp.sum(jnp.mean(td**2, axis=1))
        loss = c.bellman_coef * bellman
        aux = {
            "bellman_loss": bellman,
            "q_mean": jnp.mean(q),
            "v_mean": jnp.mean(value),
            "target_mean": jnp.mean(y),
            "td_abs": jnp.mean(jnp.abs(td), axis=0),
        }
        # present only once a replay flags demonstrations (issue #16's dataset step): static
        if "demo" in batch.extras:
            demo = self.demo_term(advantages, choices, batch.extras["demo"].reshape(-1))
            loss = loss + c.demo_weight * jnp.sum(demo)
            aux["demo_loss"] = jnp.sum(demo)
        return loss, aux

    def _update_impl(self, state: AgentState, batch: TrainBatch):
        self.trace_counts["update"] += 1
        return value_learner_step(state, self.loss, self.optimizer, self._target_update, batch)
