"""What the training loop needs from an agent.

An agent is a small object that owns its networks and jitted pure functions. The loop never looks
inside the state: it passes it back in. All arrays the agent sees from the loop are NumPy arrays;
all randomness inside the agent comes from JAX keys in its state, folded with counters, so a run is
a deterministic function of its seed and resume needs nothing but the saved state.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import jax
import numpy as np
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
