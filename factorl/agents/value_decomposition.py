"""Cooperative value decomposition: VDN (Sunehag et al. 2017, arXiv 1706.05296) and QMIX (Rashid
et al. 2018, arXiv 1803.11485), with the agents as the factors of the joint action.

Every agent acts on its own observation history with one shared recurrent Q-network (a GRU; a
one-hot agent id tells the agents apart), and a mixer composes the chosen per-agent values into
the team value, Q_tot = mix(Q_1(tau_1, u_1), ..., Q_A(tau_A, u_A); s): the sum (VDN), the mean
(DecQN's) or QMIX's state-conditioned monotonic hypernetwork. Every mixer is monotonic in each
Q_i, so the greedy joint action is every agent's own masked argmax and acting stays
decentralised. VDN and QMIX are the same learner (`ValueDecomposition`); only the config's
`mixer` default differs.

Learning follows JaxMARL's Q-learning baselines (`baselines/QLearning/{vdn,qmix}_rnn.py`, MPE
config) unless said otherwise: RAdam after global-norm clipping, 1-step double-Q targets formed on
the mixed value, a hard target copy of agent net and mixer every 200 learner steps, epsilon-greedy
over the available actions with a linearly decaying epsilon. It learns on `SequenceBatch` windows
of consecutive steps of one environment:

- the GRU restarts from zeros at a window's first step and after every episode end inside it
  (reset[t] = terminated[t-1] | truncated[t-1]), with no burn-in and no stored hidden state;
- every step t bootstraps from `next_obs[t]`, reached by one more GRU step from the hidden state
  after step t: within an episode that is obs[t+1], at a time limit the true final observation
  (not the next episode's first), so no step of a window is dropped and truncation bootstraps
  correctly;
- y_t = r_t + gamma (1 - terminated[t]) Qbar_tot(next_obs[t]), with a* the online net's masked
  argmax at next_obs[t] (`next_avail`), evaluated by the target net and mixed by the target mixer
  on `next_state`.

JaxMARL drops each rollout's last step and masks step t's target with the done flag of step t-1
(its stored `dones` are shifted by one for the GRU reset), which bootstraps across episode ends
when a rollout spans several episodes (SMAX). We mask with terminated[t] of the same step.

Windows and the GRU state (a known deviation): aligned windows are fixed L-step blocks of each
environment's continuous stream, and no runner resets an environment at a block's edge, while
JaxMARL resets every environment at the start of each update's rollout, so each of its rollouts
starts an episode. The two coincide only where every episode lasts exactly `sequence_length`
steps (`jaxmarl:MPE_simple_spread_v3`: 26-step episodes, the default 26), each window then one
whole episode. Elsewhere most windows start mid-episode (the `smax` presets: 128-step windows,
battles of at most 101 steps; PettingZoo's MPE: 25-step episodes in 26-step windows), and the
learner starts them from a zero GRU state where acting carried the real one. How JaxMARL's
inputs differ for dead SMAX agents and after an auto-reset: `factorl.envs.marl`.

On MPE a JaxMARL rollout is one whole episode, so the step it drops is the time-limit step: the
net is never trained at, nor bootstraps from, the observation after the 26th step. factorl
trains on that step too, bootstrapping from the true final observation (`truncation="bootstrap"`,
the correct target for a time limit that is not part of the task). `truncation="drop"` leaves
every step that ends in a truncation out of the loss instead, which on MPE's aligned windows is
exactly JaxMARL's loss (the mean over the other 25 steps of each window).

On SMAX a battle still running at the step limit is a truncation too, and we bootstrap from it.
JaxMARL's done flag is the same for a time-out as for a win or a loss, so it treats the time-out
as terminal; as a timed-out battle never earns the win bonus, that limit is arguably part of the
task there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from factorl.core.agent import (
    AgentState,
    JaxAgent,
    SequenceBatch,
    fresh_value_state,
    hard_target_update,
    value_learner_step,
)
from factorl.core.config import ReplaySettings, option, window_rows
from factorl.envs.marl import MultiAgentObs
from factorl.maths.mixers import MEAN, SUM, Mixer, qmix, select
from factorl.maths.networks import (
    RecurrentAgentQ,
    masked_epsilon_greedy,
    masked_greedy,
    random_available,
    unroll_windows,
)
from factorl.replay.sequences import MultiAgentSequenceReplay

#: the mixers `mixer` can name
MIXER_NAMES = ("sum", "mean", "qmix")
#: what the learner does with a step that ends in a time limit (see the module docstring)
TRUNCATION_MODES = ("bootstrap", "drop")
#: the learning rate a linear decay ends at (JaxMARL's end value; RAdam needs no exact zero)
LR_DECAY_END = 1e-10


@dataclass
class ValueDecompositionConfig:
    """VDN/QMIX hyperparameters; defaults are JaxMARL's MPE values (`ql_rnn_mpe.yaml`)."""

    hidden_size: int = option(64, "width of the shared agent net's embedding and GRU", low=1)
    mixer: str = option(
        "sum",
        "how agent Qs compose into Q_tot: sum (VDN), mean (DecQN's), qmix (monotonic hypernetwork "
        "of the global state)",
        choices=MIXER_NAMES,
    )
    mixer_embed_dim: int = option(32, "QMIX: width E of the mixing layer", low=1)
    hypernet_hidden: int = option(128, "QMIX: hidden width of the weight hypernetworks", low=1)
    hypernet_layers: int = option(
        2, "QMIX: hypernetwork depth (2: JaxMARL and pymarl; 1: the paper's linear)", low=1, high=2
    )
    mixer_init_scale: float = option(
        0.001, "QMIX: orthogonal gain of the mixer's kernels", low=0.0, low_open=True
    )
    gamma: float = option(0.9, "discount factor", low=0.0, high=1.0)
    reward_scale: float = option(
        1.0,
        "the learner's targets use reward x this (JaxMARL's REW_SCALE: 10 on SMAX); returns "
        "are reported unscaled",
        low=0.0,
        low_open=True,
    )
    learning_rate: float = option(0.005, "RAdam learning rate", low=0.0, low_open=True)
    lr_decay_steps: int = option(
        0,
        "decay the learning rate linearly to ~0 over this many learner steps (0: constant)",
        low=0,
    )
    max_grad_norm: float = option(25.0, "global gradient-norm clip", low=0.0, low_open=True)
    target_update_period: int = option(
        200, "hard copy of agent net and mixer into the target every N learner steps", low=1
    )
    epsilon_start: float = option(1.0, "exploration probability at env step 0", low=0.0, high=1.0)
    epsilon_finish: float = option(
        0.05, "exploration probability after the decay", low=0.0, high=1.0
    )
    epsilon_decay_steps: int = option(
        1_000_000, "env steps of the linear epsilon decay (0: epsilon_finish at once)", low=0
    )
    sequence_length: int = option(
        26, "steps per replay window the GRU is unrolled over (MPE's episode length)", low=1
    )
    aligned_windows: bool = option(
        True,
        "replay windows are each environment's consecutive sequence_length-step blocks from its "
        "first step (JaxMARL's rollouts where episodes last sequence_length steps, as on its MPE; "
        "elsewhere blocks start mid-episode, the GRU from zeros); false: windows start at any step",
    )
    update_every: int = option(208, "environment steps per learner step", low=1)
    learning_starts: int = option(
        10_000, "transitions (env steps) in replay before learning starts", low=1
    )
    random_steps: int = option(
        0, "act uniformly over the available actions for the first N env steps", low=0
    )
    truncation: str = option(
        "bootstrap",
        "a step that ends at a time limit: bootstrap (its target uses the true final "
        "observation) or drop (left out of the loss, as JaxMARL's MPE rollouts drop their last "
        "step)",
        choices=TRUNCATION_MODES,
    )


@dataclass
class QMIXConfig(ValueDecompositionConfig):
    """QMIX's hyperparameters: VDN's with the QMIX mixer."""

    mixer: str = option(
        "qmix",
        "how agent Qs compose into Q_tot: sum (VDN), mean (DecQN's), qmix (monotonic hypernetwork "
        "of the global state)",
        choices=MIXER_NAMES,
    )


def make_mixer(config: ValueDecompositionConfig) -> Mixer:
    """The mixer `config.mixer` names, with its QMIX sizes."""
    if config.mixer == "sum":
        return SUM
    if config.mixer == "mean":
        return MEAN
    if config.mixer == "qmix":
        return qmix(
            config.mixer_embed_dim,
            config.hypernet_hidden,
            config.hypernet_layers,
            config.mixer_init_scale,
        )
    raise ValueError(f"mixer must be one of {MIXER_NAMES}, got {config.mixer!r}")


def as_multi_agent_obs(obs: Any) -> MultiAgentObs:
    """A `MultiAgentObs` (or a mapping with its field names, a Dict-space observation) with
    float32 obs and state and bool masks, any leading axes kept."""
    if isinstance(obs, Mapping):
        obs = MultiAgentObs(obs["obs"], obs["state"], obs["avail"])
    return MultiAgentObs(
        jnp.asarray(obs.obs, jnp.float32),
        jnp.asarray(obs.state, jnp.float32),
        jnp.asarray(obs.avail, bool),
    )


def sequence_batch(
    obs: MultiAgentObs,
    action: Any,
    reward: Any,
    terminated: Any,
    truncated: Any,
    next_obs: MultiAgentObs,
    weights: Any = None,
) -> SequenceBatch:
    """A `SequenceBatch` from [B, L, ...] steps: obs and next_obs as `MultiAgentObs` (next_obs[t]
    is what step t reached, before any reset), action [B, L, A], the rest [B, L]; weights [B]
    (default ones). The states and masks go to the extras the update reads."""
    reward = jnp.asarray(reward, jnp.float32)
    if weights is None:
        weights = jnp.ones(reward.shape[:1], jnp.float32)
    return SequenceBatch(
        obs=jnp.asarray(obs.obs, jnp.float32),
        action=jnp.asarray(action, jnp.float32),
        reward=reward,
        terminated=jnp.asarray(terminated, bool),
        truncated=jnp.asarray(truncated, bool),
        next_obs=jnp.asarray(next_obs.obs, jnp.float32),
        weights=jnp.asarray(weights, jnp.float32),
        extras={
            "state": jnp.asarray(obs.state, jnp.float32),
            "avail": jnp.asarray(obs.avail, bool),
            "next_state": jnp.asarray(next_obs.state, jnp.float32),
            "next_avail": jnp.asarray(next_obs.avail, bool),
        },
    )


def linear_epsilon(env_step: Any, start: float, finish: float, decay_steps: int) -> jax.Array:
    """Epsilon moving linearly from `start` at env step 0 to `finish` at `decay_steps`, then
    constant (JaxMARL's schedule, counted in env steps rather than rollout updates)."""
    if decay_steps <= 0:
        return jnp.asarray(finish, jnp.float32)
    frac = jnp.clip(jnp.asarray(env_step, jnp.float32) / decay_steps, 0.0, 1.0)
    return jnp.asarray(start + frac * (finish - start), jnp.float32)


class ValueDecomposition(JaxAgent):
    """The VDN/QMIX learner: shared recurrent agent Qs, a mixer, 1-step double-Q on windows.

    Runner contract:
    - construct with `factorl.envs.marl.marl_spaces(spec)`; observations are `MultiAgentObs`
      (or Dict-space dicts) with a leading environment axis; `act` returns int32 actions [N, A];
    - the acting memory is the GRU hidden state [N, A, H]: call `begin_episodes(state, starting)`
      after every vector step with the environments whose episode ended, so it restarts at zeros;
    - `update` takes a `SequenceBatch` of `config.sequence_length` steps per window (any L works)
      with extras state, avail, next_state, next_avail (`sequence_batch` builds one); actions may
      be stored as float32, they are rounded back.
    """

    name = "value_decomposition"
    Config = ValueDecompositionConfig
    #: trains on multi-agent environments (the runners check this against the environment)
    MULTI_AGENT = True
    config: ValueDecompositionConfig
    #: JaxMARL's replay: 5000 rollouts of 26 steps, 32 windows per batch, 1-step, uniform
    REPLAY = ReplaySettings(capacity=130_000, batch_size=32, n_step=1, prioritized=False)
    REPLAY_FIXED = {  # noqa: RUF012  (class constant, as JaxAgent.REPLAY_FIXED)
        "n_step": "the learner forms 1-step targets inside each window from next_obs itself",
        "prioritized": "windows are sampled uniformly, as JaxMARL and pymarl do (td_abs per "
        "window is returned for priorities, which the window replay does not implement)",
    }
    episodic_memory = True  # the GRU hidden state belongs to one episode

    def setup(self, action_space: Any) -> None:
        c = self.config
        nvec = np.asarray(action_space.nvec).reshape(-1)
        self.num_agents = int(nvec.size)
        self.num_actions = int(nvec.max())
        space = self.observation_space
        self.agent_obs_shape = tuple(space["obs"].shape[1:])
        self.state_shape = tuple(space["state"].shape)
        self.net = RecurrentAgentQ(self.num_actions, c.hidden_size)
        self.mixer = make_mixer(c)
        lr: Any = c.learning_rate
        if c.lr_decay_steps > 0:
            lr = optax.linear_schedule(c.learning_rate, LR_DECAY_END, c.lr_decay_steps)
        self.optimizer = optax.chain(optax.clip_by_global_norm(c.max_grad_norm), optax.radam(lr))
        self._target_update = hard_target_update(c.target_update_period)

    # ----------------------------------------------------------------------------------- setup
    def init(self, seed: int | jax.Array, num_envs: int = 1) -> AgentState:
        """Agent net and mixer parameters, equal target copies, fresh optimiser, zero hiddens."""
        k_agent, k_mixer, k_run = jax.random.split(jax.random.PRNGKey(seed), 3)
        A = self.num_agents
        agent = self.net.init(
            k_agent,
            jnp.zeros((A, self.config.hidden_size), jnp.float32),
            jnp.zeros((A, *self.agent_obs_shape), jnp.float32),
            jnp.zeros((), bool),
        )
        params = {"agent": agent, "mixer": self.mixer.init(k_mixer, A, self.state_shape)}
        return fresh_value_state(params, self.optimizer, k_run, self.initial_memory(num_envs))

    def memory_init(self) -> jax.Array:
        """One environment's GRU hidden state at an episode start: zeros [A, H]."""
        return jnp.zeros((self.num_agents, self.config.hidden_size), jnp.float32)

    def make_replay(self, obs_shape: Any = None, num_envs: int = 1) -> MultiAgentSequenceReplay:
        """The host runner's replay: windows of `sequence_length` steps, the capacity shared
        equally by the environments (the device runner builds the same buffer in its program).
        `obs_shape` is unused: the shapes come from the observation space."""
        r, c = self.replay_settings, self.config
        L = c.sequence_length
        rows = window_rows(r.capacity, num_envs, L, L if c.aligned_windows else 0)
        return MultiAgentSequenceReplay(
            num_envs=num_envs,
            steps_per_env=rows,
            batch_size=r.batch_size,
            sequence_length=self.config.sequence_length,
            aligned_windows=c.aligned_windows,
            num_agents=self.num_agents,
            obs_shape=self.agent_obs_shape,
            state_shape=self.state_shape,
            num_actions=self.num_actions,
        )

    def replay_actions(self) -> tuple[int, int]:
        """(A, 1): one action per agent, the one taken."""
        return self.num_agents, 1

    def acting_params(self, state: AgentState) -> Any:
        """Acting needs the agent net only (the mixer is for learning)."""
        return state.params["agent"]

    # ----------------------------------------------------------------------------------- acting
    def epsilon(self, env_step: Any) -> jax.Array:
        """The exploration probability at `env_step`."""
        c = self.config
        return linear_epsilon(env_step, c.epsilon_start, c.epsilon_finish, c.epsilon_decay_steps)

    def _act_impl(self, params, memory, obs, key, env_step, mode: str):
        self.trace_counts["act"] += 1
        obs = as_multi_agent_obs(obs)
        key = jax.random.fold_in(jax.random.fold_in(key, 0), env_step)
        # the GRU steps in every mode, so the hidden state follows the episode even while the
        # actions are random (random_steps, then explore)
        hidden, q = self.net.apply(params, memory, obs.obs, jnp.zeros((), bool))
        if mode == "random":
            action = random_available(key, obs.avail)
        elif mode == "explore":
            action = masked_epsilon_greedy(key, q, obs.avail, self.epsilon(env_step))
        elif mode == "greedy":
            action = masked_greedy(q, obs.avail)
        else:
            raise ValueError(f"mode must be 'explore', 'greedy' or 'random', got {mode!r}")
        return action, hidden

    def act(
        self, state: AgentState, obs: Any, env_step: int, mode: str = "greedy"
    ) -> tuple[np.ndarray, AgentState]:
        """int32 actions [N, A] for observations with a leading environment axis N (a
        `MultiAgentObs` or a Dict-space dict); the state's memory must be for N environments."""
        action, memory = self._act(
            self.acting_params(state),
            state.memory,
            as_multi_agent_obs(obs),  # a pytree, not one float array as the base class casts
            state.key,
            env_step,
            mode=mode,
        )
        return np.asarray(action), state.replace(memory=memory)

    # ----------------------------------------------------------------------------------- learning
    def td_terms(
        self, params: Any, target_params: Any, batch: SequenceBatch
    ) -> tuple[jax.Array, jax.Array]:
        """(Q_tot of the actions taken, the double-Q target y), each [B, L]; y is not stopped."""
        c = self.config
        x = batch.extras
        terminated = jnp.asarray(batch.terminated, bool)
        ended = terminated | jnp.asarray(batch.truncated, bool)
        # the GRU restarts at the window's first step and after every episode end inside it
        resets = jnp.concatenate([jnp.ones_like(ended[:, :1]), ended[:, :-1]], axis=1)
        obs = jnp.asarray(batch.obs, jnp.float32)
        next_obs = jnp.asarray(batch.next_obs, jnp.float32)
        actions = jnp.round(jnp.asarray(batch.action)).astype(jnp.int32)  # stored as float32

        # time-major for the unrolls (`unroll_gru`: the GRU with a hand-written backward pass)
        (q, q_next_online), (_, q_next_target) = unroll_windows(
            self.net,
            (params["agent"], jax.lax.stop_gradient(target_params["agent"])),
            *(jnp.swapaxes(x, 0, 1) for x in (obs, next_obs, resets, batch.truncated)),
        )
        q, q_next_online, q_next_target = (
            jnp.swapaxes(x, 0, 1) for x in (q, q_next_online, q_next_target)
        )
        q_tot = self.mixer.apply(params["mixer"], select(q, actions), x["state"])

        # double Q: the online net picks among the available actions, the target net values them
        best = masked_greedy(jax.lax.stop_gradient(q_next_online), x["next_avail"])
        q_next_tot = self.mixer.apply(
            target_params["mixer"], select(q_next_target, best), x["next_state"]
        )
        reward = c.reward_scale * jnp.asarray(batch.reward, jnp.float32)
        y = reward + c.gamma * (1.0 - terminated.astype(jnp.float32)) * q_next_tot
        return q_tot, y

    def loss(self, params: Any, target_params: Any, batch: SequenceBatch):
        """Mean over windows and steps of w_b (y - Q_tot)^2 (JaxMARL's MSE; w = 1 uniform);
        with `truncation="drop"`, the mean over the steps that do not end in a truncation.

        td_abs is each window's mean |TD| over those steps, [B]."""
        q_tot, y = self.td_terms(params, target_params, batch)
        td = jax.lax.stop_gradient(y) - q_tot
        weights = jnp.asarray(batch.weights, jnp.float32)[:, None]
        if self.config.truncation == "drop":
            kept = 1.0 - jnp.asarray(batch.truncated, jnp.float32)
        else:
            kept = jnp.ones_like(td)
        # max(., 1): a window (or batch) of truncations only adds nothing rather than 0/0
        loss = jnp.sum(kept * weights * jnp.square(td)) / jnp.maximum(jnp.sum(kept), 1.0)
        per_window = jnp.sum(kept * jnp.abs(td), axis=1) / jnp.maximum(jnp.sum(kept, axis=1), 1.0)
        aux = {
            "q_mean": jnp.sum(kept * q_tot) / jnp.maximum(jnp.sum(kept), 1.0),
            "target_mean": jnp.sum(kept * y) / jnp.maximum(jnp.sum(kept), 1.0),
            "td_abs": per_window,
        }
        return loss, aux

    def _update_impl(self, state: AgentState, batch: SequenceBatch):
        self.trace_counts["update"] += 1
        return value_learner_step(state, self.loss, self.optimizer, self._target_update, batch)


class VDN(ValueDecomposition):
    """VDN: Q_tot = sum_i Q_i (`mixer="sum"`)."""

    name = "vdn"
    Config = ValueDecompositionConfig


class QMIX(ValueDecomposition):
    """QMIX: the same learner with the monotonic hypernetwork mixer (`mixer="qmix"`)."""

    name = "qmix"
    Config = QMIXConfig
