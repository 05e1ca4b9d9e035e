"""What a runner needs from an agent.

An agent is a small object that owns its networks and jitted pure functions. A runner never looks
inside the state: it passes it back in. Acting is batched over environments: `act` takes
observations `[N_env, *obs_shape]` and returns actions `[N_env, action_dim]`, and the acting memory
an agent keeps between steps (CQN-AS's action sequences, REValueD's epsilon) has the same leading
environment axis inside the state. All randomness comes from JAX keys in the state folded with
counters (environment i of a vector step that starts at env step E acts with step index E + i), so
a run is a deterministic function of its seed and resume needs nothing but the saved state.

The pure functions behind `act` and `update` (`act_fn`, `update_fn`) can be called inside a
caller's own `jit`, `vmap` (e.g. over seeds) or `lax.scan`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from factorl.core.config import ReplaySettings


class TrainBatch(NamedTuple):
    """A replay sample as the update step sees it (NumPy on the host, device arrays inside jit).

    `extras` carries the replay's named extra fields, name -> [B, ...] (a global state, action
    masks), so an update can read them without a change to the replay or the runners. It is
    part of the pytree: a batch with other field names compiles its own update. The default is
    one shared empty dict, so build a new dict rather than filling it in place.
    """

    obs: Any
    action: Any
    reward: Any
    discount: Any
    next_obs: Any
    weights: Any
    extras: dict[str, Any] = {}  # noqa: RUF012  (read-only: see the docstring)

    @classmethod
    def from_sample(cls, sample: Any) -> TrainBatch:
        """The update's view of a replay sample (`factorl.replay.host.Batch`): everything but the
        slot indices, which only the host needs (for priorities)."""
        return cls(
            sample.obs,
            sample.action,
            sample.reward,
            sample.discount,
            sample.next_obs,
            sample.weights,
            dict(getattr(sample, "extras", {})),
        )


class SequenceBatch(NamedTuple):
    """Replay windows of L consecutive steps of one environment, for learners that unroll a
    recurrent network over time (VDN, QMIX): every field is [B, L, ...] except `weights` [B].

    `terminated[t]` and `truncated[t]` end the episode at step t; `next_obs[t]` is the
    observation step t reached (the true final one at an episode end), so every step of a
    window has its bootstrap observation, also the last. A recurrent state starts at zeros at
    the window's first step and again after every episode end inside the window. `extras` holds
    the replay's named extra fields, [B, L, ...] (a global `state`, `avail` masks, and their
    `next_` values at the step reached).
    """

    obs: Any
    action: Any
    reward: Any
    terminated: Any
    truncated: Any
    next_obs: Any
    weights: Any
    extras: dict[str, Any] = {}  # noqa: RUF012  (read-only, as TrainBatch.extras)


class AgentState(struct.PyTreeNode):
    """Learner state shared by the value-based agents.

    `memory` is the acting memory the agent keeps between steps for each environment, with a
    leading environment axis (e.g. a decaying epsilon per environment, or the action sequences
    predicted in the last steps); it is updated by `act`, which never touches the (large)
    parameters.
    """

    params: Any
    target_params: Any
    opt_state: Any
    key: jax.Array  # raw uint32 key; acting and updates fold counters into it
    learner_step: jax.Array
    memory: Any


def fresh_state(
    params: Any, opt_state: Any, run_key: jax.Array, memory: Any, targets: Any = None
) -> AgentState:
    """A learner's first state at step 0: target networks are copies of `targets` (the part of
    `params` that has targets; all of it by default)."""
    return AgentState(
        params=params,
        target_params=jax.tree_util.tree_map(jnp.copy, params if targets is None else targets),
        opt_state=opt_state,
        key=run_key,
        learner_step=jnp.zeros((), jnp.int32),
        memory=memory,
    )


def fresh_value_state(
    params: Any, optimizer: optax.GradientTransformation, run_key: jax.Array, memory: Any
) -> AgentState:
    """A value learner's first state: equal target copies, fresh optimiser, step 0."""
    return fresh_state(params, optimizer.init(params), run_key, memory)


def stream_capacity(capacity: int, num_envs: int) -> int:
    """A replay capacity the environments' streams share equally: `capacity` rounded down to a
    multiple of `num_envs` (the replay gives every stream the same number of slots)."""
    return capacity - capacity % num_envs


def hard_target_update(period: int) -> Callable[[Any, Any, jax.Array], Any]:
    """Copy the online parameters into the target every `period` learner steps."""
    return lambda params, target, step: optax.periodic_update(params, target, step, period)


def polyak_target_update(tau: float) -> Callable[[Any, Any, jax.Array], Any]:
    """target <- tau * online + (1 - tau) * target, every learner step."""
    return lambda params, target, step: optax.incremental_update(params, target, tau)


def value_learner_step(
    state: AgentState,
    loss_fn: Callable[..., tuple[jax.Array, dict[str, jax.Array]]],
    optimizer: optax.GradientTransformation,
    update_target: Callable[[Any, Any, jax.Array], Any],
    *loss_args: Any,
) -> tuple[AgentState, dict[str, jax.Array], jax.Array]:
    """One step of a value-based learner: gradient of loss_fn(params, target_params, *loss_args),
    optimiser update, target update, and the `finite` flag of the non-finite guard.

    loss_fn returns (loss, aux): aux["td_abs"] is the per-sample |TD| (replay priorities) and
    every other entry a scalar diagnostic that is logged with the loss. Returns
    (state, metrics, td_abs).
    """
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, state.target_params, *loss_args
    )
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    step = state.learner_step + 1
    new_state = state.replace(
        params=params,
        target_params=update_target(params, state.target_params, step),
        opt_state=opt_state,
        learner_step=step,
    )
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    diagnostics = {k: v for k, v in aux.items() if k != "td_abs"}
    metrics = {"loss": loss, "grad_norm": grad_norm, **diagnostics, "finite": finite}
    return new_state, metrics, aux["td_abs"]


#: `REPLAY_FIXED` of an agent whose loss applies no importance weights, so it samples uniformly
UNIFORM_REPLAY_ONLY: dict[str, str] = {
    name: "its loss applies no importance weights, so it samples uniformly"
    for name in ("prioritized", "priority_alpha", "priority_beta")
}


class JaxAgent:
    """Plumbing every agent shares: the loop-facing settings, the batched, jitted `act` and the
    jitted `update`, acting memory, and trace counters (tests check each function compiles once).

    The constructor keeps the config (with update_every, learning_starts, random_steps), the
    replay settings (`self.REPLAY` when none are given) and the observation shape, then calls the
    subclass's `setup(action_space)` for its own networks and optimisers, then compiles. A
    subclass implements `setup`, `init(seed, num_envs)`,
    `_act_impl(params, memory, obs, key, env_step, mode) -> (action, memory)` for ONE
    environment (the base class vmaps it over environments), and
    `_update_impl(state, batch) -> (state, metrics, td_abs)`, each incrementing its
    `trace_counts` entry (that line runs only while tracing). An agent with acting memory
    overrides `memory_init` (one environment's memory).
    """

    config: Any
    #: the algorithm's reference replay settings, and those it cannot use (name: why), which must
    #: keep their reference value
    REPLAY: ReplaySettings = ReplaySettings()
    REPLAY_FIXED: ClassVar[dict[str, str]] = {}
    #: the replay settings this agent was built with (`REPLAY` unless given)
    replay_settings: ReplaySettings
    #: whether the acting memory belongs to an episode (reset at its start: CQN-AS's sequences)
    #: or to the whole run (REValueD's decaying epsilon)
    episodic_memory: bool = True

    def __init__(
        self,
        config: Any,
        observation_space: Any,
        action_space: Any,
        replay: ReplaySettings | None = None,
    ) -> None:
        self.config = config
        self.replay_settings = self.REPLAY if replay is None else replay
        self.observation_space = observation_space
        # a Dict space (a multi-agent observation) has no single shape
        shape = getattr(observation_space, "shape", None)
        self.obs_shape = tuple(shape) if shape is not None else None
        self.setup(action_space)
        self._compile()

    def setup(self, action_space: Any) -> None:
        """Build the algorithm's networks and optimisers from `self.config` and the action space
        (`gymnasium.spaces.Box`); runs before compiling, so the jitted functions can use them."""
        raise NotImplementedError

    def _compile(self) -> None:
        c = self.config
        self.update_every = c.update_every
        self.learning_starts = c.learning_starts
        self.random_steps = c.random_steps
        self.trace_counts = {"update": 0, "act": 0}
        # no buffer donation: the input state stays valid, so a caller can drop a non-finite
        # step's output and keep the last good state. That costs nothing measurable, where a
        # select of new-or-old inside the update cost about 4% of TD3's update
        # (docs/td3.md, "Throughput").
        self._update = jax.jit(self._update_impl)
        self._act = jax.jit(self.act_fn, static_argnames="mode")
        self._reset_memory = jax.jit(self.reset_memory_fn)

    # ----------------------------------------------------------------------------- pure functions
    def act_fn(
        self, params: Any, memory: Any, obs: jax.Array, key: jax.Array, env_step: Any, mode: str
    ) -> tuple[jax.Array, Any]:
        """Actions [N, action_dim] for observations [N, *obs_shape]: `_act_impl` vmapped over
        environments, environment i acting with step index `env_step + i` (pure, jittable)."""
        # observations may be a pytree (a multi-agent observation: per-agent obs, state, masks)
        num_envs = jax.tree_util.tree_leaves(obs)[0].shape[0]
        steps = env_step + jnp.arange(num_envs, dtype=jnp.int32)

        def one_env(m, o, t):
            return self._act_impl(params, m, o, key, t, mode)

        return jax.vmap(one_env)(memory, obs, steps)

    def update_fn(self, state: AgentState, batch: Any) -> tuple[AgentState, dict, jax.Array]:
        """One learner step, pure: (new state, metrics, per-sample |TD|)."""
        return self._update_impl(state, batch)

    def memory_init(self) -> Any:
        """One environment's acting memory at an episode start (a placeholder by default)."""
        return jnp.zeros((), jnp.float32)

    def initial_memory(self, num_envs: int) -> Any:
        """Acting memory of `num_envs` environments at their episode starts."""
        return jax.tree_util.tree_map(
            lambda x: jnp.repeat(x[None], num_envs, axis=0), self.memory_init()
        )

    def reset_memory_fn(self, memory: Any, starting: jax.Array) -> Any:
        """Memory with the environments flagged in `starting` [N] back at an episode start."""
        fresh = self.memory_init()

        def reset(m, f):
            flag = starting.reshape(starting.shape + (1,) * (m.ndim - 1))
            return jnp.where(flag, f[None], m)

        return jax.tree_util.tree_map(reset, memory, fresh)

    # ----------------------------------------------------------------------------- host API
    def acting_params(self, state: AgentState) -> Any:
        """The part of the parameters acting needs (all of them, unless overridden)."""
        return state.params

    def num_envs(self, state: AgentState) -> int:
        """How many environments the state's acting memory is for."""
        return int(jax.tree_util.tree_leaves(state.memory)[0].shape[0])

    def act(
        self, state: AgentState, obs: np.ndarray, env_step: int, mode: str = "greedy"
    ) -> tuple[np.ndarray, AgentState]:
        """Continuous env actions [N, action_dim] for observations [N, *obs_shape]; the state's
        memory must be for N environments. mode: 'explore', 'greedy' or 'random'."""
        action, memory = self._act(
            self.acting_params(state),
            state.memory,
            np.asarray(obs, np.float32),  # jit copies NumPy inputs itself; no separate dispatch
            state.key,
            env_step,
            mode=mode,
        )
        return np.asarray(action), state.replace(memory=memory)

    def update(self, state: AgentState, batch: TrainBatch):
        """One jitted learner step: (new state, metrics, per-sample |TD|).

        `metrics["finite"]` is False when the loss or a gradient was not finite; the new state is
        then garbage and the caller should keep `state`, which the step leaves intact.
        """
        return self._update(state, batch)

    def begin_episodes(self, state: AgentState, starting: np.ndarray | None = None) -> AgentState:
        """Reset the acting memory of the environments whose episodes start (all by default),
        if the memory is episodic."""
        if not self.episodic_memory:
            return state
        if starting is None:
            return state.replace(memory=self.initial_memory(self.num_envs(state)))
        return state.replace(memory=self._reset_memory(state.memory, np.asarray(starting, bool)))

    def with_num_envs(self, state: AgentState, num_envs: int) -> AgentState:
        """The same learner acting in `num_envs` fresh environments (e.g. for evaluation)."""
        return state.replace(memory=self.initial_memory(num_envs))
