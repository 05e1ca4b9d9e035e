"""What the training loop needs from an agent.

An agent is a small object that owns its networks and jitted pure functions. The loop never looks
inside the state: it passes it back in. All arrays the agent sees from the loop are NumPy arrays;
all randomness inside the agent comes from JAX keys in its state, folded with counters, so a run is
a deterministic function of its seed and resume needs nothing but the saved state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

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


class Agent(Protocol):
    """The interface every algorithm implements for the shared loop."""

    name: str
    config: Any
    #: how many env steps per learner step, when learning starts, and the replay layout
    update_every: int
    learning_starts: int

    def init(self, seed: int) -> Any: ...

    def act(self, state: Any, obs: np.ndarray, env_step: int, mode: str) -> tuple[np.ndarray, Any]:
        """Return (continuous env action, new state). mode: 'explore', 'greedy' or 'random'."""
        ...

    def update(self, state: Any, batch: TrainBatch) -> tuple[Any, dict[str, Any], Any]:
        """One learner step: (new state, metrics, per-sample |TD| for prioritised replay)."""
        ...

    def make_replay(self, obs_shape: tuple[int, ...]) -> Any: ...


def keep_if_finite(finite: jax.Array, new: Any, old: Any) -> Any:
    """`new` where `finite`, else `old`: a non-finite step leaves the state untouched, so the loop
    can stop on the last good one."""
    return jax.tree_util.tree_map(lambda n, o: jnp.where(finite, n, o), new, old)


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
    optimiser update, target update, and the non-finite guard.

    loss_fn returns (loss, aux) with aux holding "q_mean", "target_mean" and "td_abs" (per
    sample, used as replay priorities). Returns (state, metrics, td_abs).
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
    metrics = {
        "loss": loss,
        "grad_norm": grad_norm,
        "q_mean": aux["q_mean"],
        "target_mean": aux["target_mean"],
        "finite": finite,
    }
    return keep_if_finite(finite, new_state, state), metrics, aux["td_abs"]
