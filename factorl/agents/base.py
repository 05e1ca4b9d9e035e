"""What the training loop needs from an agent.

An agent is a small object that owns its networks and jitted pure functions. The loop never looks
inside the state: it passes it back in. All arrays the agent sees from the loop are NumPy arrays;
all randomness inside the agent comes from JAX keys in its state, folded with counters, so a run is
a deterministic function of its seed and resume needs nothing but the saved state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct


class TrainBatch(NamedTuple):
    """A replay sample as the update step sees it (NumPy on the host, device arrays inside jit)."""

    obs: Any
    action: Any
    reward: Any
    discount: Any
    next_obs: Any
    weights: Any

    @classmethod
    def from_sample(cls, sample: Any) -> TrainBatch:
        """The update's view of a replay sample (`factorl.replay.Batch`): everything but the
        slot indices, which only the host needs (for priorities)."""
        return cls(
            sample.obs,
            sample.action,
            sample.reward,
            sample.discount,
            sample.next_obs,
            sample.weights,
        )


class AgentState(struct.PyTreeNode):
    """Learner state shared by the value-based agents.

    `explore` holds whatever exploration state the agent keeps between steps (e.g. a decaying
    epsilon); it is updated by `act`, which never touches the (large) parameters.
    """

    params: Any
    target_params: Any
    opt_state: Any
    key: jax.Array  # raw uint32 key; acting and updates fold counters into it
    learner_step: jax.Array
    explore: Any


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


class JaxAgent:
    """Plumbing every agent shares: the loop-facing settings, the jitted `act` and `update`
    wrappers, and trace counters (tests check each function compiles once).

    A subclass sets `self.config` (with update_every, learning_starts, random_steps), calls
    `self._compile()` at the end of its `__init__`, and implements
    `_act_impl(params, explore, obs, key, env_step, mode) -> (action, explore)` and
    `_update_impl(state, batch) -> (state, metrics, td_abs)`, each incrementing its
    `trace_counts` entry (that line runs only while tracing).
    """

    config: Any

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
        self._act = jax.jit(self._act_impl, static_argnames="mode")

    def acting_params(self, state: AgentState) -> Any:
        """The part of the parameters acting needs (all of them, unless overridden)."""
        return state.params

    def act(
        self, state: AgentState, obs: np.ndarray, env_step: int, mode: str = "greedy"
    ) -> tuple[np.ndarray, AgentState]:
        """Continuous env action for one observation. mode: 'explore', 'greedy' or 'random'."""
        action, explore = self._act(
            self.acting_params(state),
            state.explore,
            np.asarray(obs, np.float32),  # jit copies NumPy inputs itself; no separate dispatch
            state.key,
            env_step,
            mode=mode,
        )
        return np.asarray(action), state.replace(explore=explore)

    def update(self, state: AgentState, batch: TrainBatch):
        """One jitted learner step: (new state, metrics, per-sample |TD|).

        `metrics["finite"]` is False when the loss or a gradient was not finite; the new state is
        then garbage and the caller should keep `state`, which the step leaves intact.
        """
        return self._update(state, batch)

    def begin_episode(self, state: AgentState) -> AgentState:
        """Reset acting memory at an episode start (none by default)."""
        return state
