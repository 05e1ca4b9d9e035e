"""Replay of multi-agent windows for the host runner: the device replay, driven from NumPy.

A recurrent multi-agent learner (VDN, QMIX) trains on windows of consecutive steps of one
environment (`SequenceBatch`). The device runner keeps them in a `DeviceReplay` inside its
compiled program; the host runner (PettingZoo environments stepped in Python) uses the same
buffer through `MultiAgentSequenceReplay`, whose `add` and `sample` are jitted calls on a buffer
state it holds. Sampling keys come from the host loop's NumPy generator, so a run's draws
follow its checkpointed generator state as the host replay's do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from factorl.core.agent import SequenceBatch
from factorl.replay.device import DeviceReplay

#: the parts of a multi-agent observation (`factorl.envs.marl.marl_spaces`)
OBS_PARTS = ("obs", "state", "avail")


def multi_agent_transition(
    obs: Mapping[str, Any],
    action: Any,
    reward: Any,
    next_obs: Mapping[str, Any],
    terminated: Any,
    truncated: Any,
) -> dict[str, Any]:
    """One step of every environment as the replay stores it: the agents' observations, the
    global state and the available actions, before the step and at the observation it reached
    (`next_obs`, before any reset). Observations are dicts of `OBS_PARTS` or `MultiAgentObs`."""
    before, after = _parts(obs), _parts(next_obs)
    return {
        "obs": before["obs"],
        "action": jnp.asarray(action, jnp.float32),
        "reward": jnp.asarray(reward, jnp.float32),
        "next_obs": after["obs"],
        "terminated": terminated,
        "truncated": truncated,
        "state": before["state"],
        "avail": before["avail"],
        "next_state": after["state"],
        "next_avail": after["avail"],
    }


def _parts(obs: Any) -> dict[str, Any]:
    if isinstance(obs, Mapping):
        return {name: obs[name] for name in OBS_PARTS}
    return {name: getattr(obs, name) for name in OBS_PARTS}


def multi_agent_fields(
    num_agents: int, state_shape: tuple[int, ...], num_actions: int
) -> dict[str, tuple[tuple[int, ...], Any]]:
    """The extra fields (`DeviceReplay.extra_fields`) of a multi-agent transition."""
    extra = {
        "state": (tuple(state_shape), np.dtype(np.float32)),
        "avail": ((num_agents, num_actions), np.dtype(bool)),
    }
    extra.update({f"next_{name}": value for name, value in extra.items()})
    return extra


def _key(path: tuple) -> str:
    return ".".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


class MultiAgentSequenceReplay:
    """Windows of `sequence_length` steps of multi-agent transitions, for the host loop.

    `add` takes one vector step as the host runner has it (observation dicts with a leading
    environment axis); `sample(batch_size, rng)` returns a `SequenceBatch`. Uniform only:
    `prioritized` is False. `len` is the buffer's `size` (the windows that can be sampled, or
    with aligned windows the steps in them), which the host runner compares with
    `learning_starts` as the device runner does.
    """

    prioritized = False

    def __init__(
        self,
        *,
        num_envs: int,
        steps_per_env: int,
        batch_size: int,
        sequence_length: int,
        aligned_windows: bool = False,
        num_agents: int,
        obs_shape: tuple[int, ...],
        state_shape: tuple[int, ...],
        num_actions: int,
    ) -> None:
        self.buffer = DeviceReplay(
            num_envs=num_envs,
            steps_per_env=steps_per_env,
            batch_size=batch_size,
            obs_shape=(num_agents, *obs_shape),
            action_shape=(num_agents,),
            sequence_length=sequence_length,
            aligned_windows=aligned_windows,
            extra_fields=multi_agent_fields(num_agents, state_shape, num_actions),
        )
        self._add = jax.jit(self.buffer.add)
        self._sample = jax.jit(self.buffer.sample, static_argnums=2)
        self._state = self.buffer.init()

    def __len__(self) -> int:
        return int(self.buffer.size(self._state))

    def add(self, obs, action, reward, next_obs, terminated, truncated) -> None:
        """Store one step of every environment (each argument with the environment axis)."""
        transition = multi_agent_transition(
            obs, action, reward, next_obs, np.asarray(terminated), np.asarray(truncated)
        )
        self._state = self._add(self._state, transition)

    def sample(self, batch_size: int, rng: np.random.Generator) -> SequenceBatch:
        """`batch_size` windows, drawn with a key from `rng`."""
        key = jax.random.PRNGKey(rng.integers(0, 2**31 - 1))
        return self._sample(self._state, key, batch_size).batch

    def state_dict(self) -> dict[str, np.ndarray]:
        """The buffer as named NumPy arrays (a checkpoint's replay group)."""
        leaves = jax.tree_util.tree_flatten_with_path(self._state)[0]
        return {_key(path): np.asarray(leaf) for path, leaf in leaves}

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore a `state_dict` of a buffer with the same configuration; everything is checked
        first (it comes from disk) and a mismatch is a ValueError that changes nothing."""
        paths, treedef = jax.tree_util.tree_flatten_with_path(self.buffer.init())
        expected = {_key(path): leaf for path, leaf in paths}
        if set(state) != set(expected):
            raise ValueError(
                f"replay state keys do not match: missing {sorted(set(expected) - set(state))}, "
                f"unexpected {sorted(set(state) - set(expected))}"
            )
        leaves = []
        for name, mine in expected.items():
            value = np.asarray(state[name])
            if value.shape != mine.shape or value.dtype != mine.dtype:
                raise ValueError(
                    f"replay state {name!r} is {value.dtype}{list(value.shape)}, this buffer "
                    f"holds {mine.dtype}{list(mine.shape)}"
                )
            if name == "current_index" and not 0 <= int(value) < self.buffer.steps_per_env:
                raise ValueError(f"replay state current_index {int(value)} is out of range")
            leaves.append(jnp.asarray(value))
        self._state = jax.tree_util.tree_unflatten(treedef, leaves)
