"""Device replay: flashbax trajectory buffers with one row per environment, and the pure functions
that turn their windows into learner batches (jittable, vmappable over seeds).

A row holds one environment's steps in time order, so a sampled window of W = max(n_step,
horizon) consecutive steps never crosses environments; the n-step return, the bootstrap
observation and the action sequence are assembled from the window (`n_step_batch`). A step is
sampleable once its whole window is stored, also when its episode ended inside the window (the
host buffer, `factorl.replay.host`, takes such a step at once). Sampling is uniform, or prioritised
with flashbax's sum tree (stratified over the batch, where the host buffer draws each sample
independently); new windows enter with the largest priority seen so far, as in the host buffer.
A recurrent learner takes the windows as they are instead (`sequence_length`, `sequence_batch`):
W consecutive steps of one environment, each with its own reward, end and bootstrap observation.

A transition is a dict of arrays with a leading environment axis: obs, action, reward, next_obs,
terminated, truncated, and any extra fields declared up front (a global state, action masks). A
field named `next_<x>` is read at the window's bootstrap step, like next_obs; any other at its
first step; they reach the update in `TrainBatch.extras`. The buffer stores `ended` (terminated
or truncated) in place of truncated.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import flashbax
import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import DTypeLike

from factorl.core.agent import SequenceBatch, TrainBatch
from factorl.replay.host import mixed_split

__all__ = [
    "DeviceReplay",
    "DeviceSample",
    "importance_weights",
    "n_step_batch",
    "sample_mixed",
    "sequence_batch",
    "update_priorities_mixed",
]

#: the most steps a device replay holds: its indices are int32
_MAX_STEPS = 2**31 - 1

#: added to |TD| so no window's priority is 0 (the host buffer's priority_eps)
PRIORITY_EPS = 1e-6
#: the fields every window holds, as stored
_CORE = ("obs", "action", "reward", "terminated", "ended", "next_obs")
#: the fields `add` and `extend` take besides the extra ones
_GIVEN = ("obs", "action", "reward", "next_obs", "terminated", "truncated")


class DeviceSample(NamedTuple):
    """A learner batch and where its rows came from: flashbax's item indices, which
    `update_priorities` takes back (-1 in a uniform buffer, which has no priorities)."""

    batch: TrainBatch
    indices: jax.Array


def n_step_batch(
    sequence: Mapping[str, jax.Array], n_step: int, horizon: int, gamma: float
) -> TrainBatch:
    """A learner batch from sampled windows [B, W, ...] (W = max(n_step, horizon)).

    Rewards are summed with discount over the first n steps, stopping after the first episode
    end; the bootstrap observation is that step's `next_obs` (the true final observation at a
    time limit), and the discount is gamma^m, or 0 when the window ends on a terminal state.
    With horizon K > 1 the action is the K actions executed from the first step, padded with the
    episode's last action past its end (as the host replay does). Any other field of the windows
    goes to `extras`: a `next_<x>` field read at the bootstrap step, the others at the first.
    """
    ended = sequence["ended"][:, :n_step]
    # steps before the first episode end count (the end step itself included)
    ended_before = jnp.cumsum(ended, axis=1) - ended
    alive = (ended_before == 0).astype(jnp.float32)
    powers = gamma ** jnp.arange(n_step, dtype=jnp.float32)
    reward = jnp.sum(alive * powers * sequence["reward"][:, :n_step], axis=1)
    steps = jnp.sum(alive, axis=1).astype(jnp.int32)  # >= 1
    last = steps - 1
    rows = jnp.arange(ended.shape[0])
    terminal = sequence["terminated"][rows, last]
    discount = jnp.where(terminal, 0.0, gamma ** steps.astype(jnp.float32))
    next_obs = sequence["next_obs"][rows, last]
    if horizon > 1:
        window_ended = sequence["ended"][:, :horizon]
        first_end = jnp.where(
            window_ended.any(axis=1), jnp.argmax(window_ended, axis=1), horizon - 1
        )
        taken = jnp.minimum(jnp.arange(horizon)[None], first_end[:, None])  # [B, K]
        action = jnp.take_along_axis(sequence["action"], taken[..., None], axis=1)
    else:
        action = sequence["action"][:, 0]
    extras = {
        name: values[rows, last] if name.startswith("next_") else values[:, 0]
        for name, values in sequence.items()
        if name not in _CORE
    }
    return TrainBatch(
        obs=sequence["obs"][:, 0],
        action=action,
        reward=reward,
        discount=discount.astype(jnp.float32),
        next_obs=next_obs,
        weights=jnp.ones_like(reward),
        extras=extras,
    )


def sequence_batch(sequence: Mapping[str, jax.Array]) -> SequenceBatch:
    """The sampled windows [B, L, ...] as they are, for a recurrent learner: every step with its
    own reward, episode end and bootstrap observation; other fields go to `extras`."""
    extras = {name: values for name, values in sequence.items() if name not in _CORE}
    return SequenceBatch(
        obs=sequence["obs"],
        action=sequence["action"],
        reward=sequence["reward"],
        terminated=sequence["terminated"],
        truncated=sequence["ended"] & ~sequence["terminated"],
        next_obs=sequence["next_obs"],
        weights=jnp.ones(sequence["reward"].shape[:1], jnp.float32),
        extras=extras,
    )


@dataclass(frozen=True, eq=False)
class DeviceReplay:
    """A device replay's configuration and its pure functions; the buffer state is a pytree the
    caller carries (e.g. in a runner state, vmapped over seeds).

    `num_envs` rows of `steps_per_env` steps each; `batch_size` windows per sample (a call may
    ask for another size). Prioritised replay samples windows with probability priority^alpha
    over the sum and weights them by (size * P)^-beta, normalised by the batch's largest.
    `extra_fields` declares further transition fields, name -> (shape, dtype).
    `sequence_length` L > 0 makes a sample `SequenceBatch` windows of L steps (recurrent
    learners) instead of n-step `TrainBatch`es. With `aligned_windows` the windows are the
    non-overlapping blocks of L steps of each stream counted from its first step (steps 0..L-1,
    L..2L-1, ...), as a learner that stores L-step rollouts (JaxMARL) samples them: every step is
    in exactly one window, and where episodes last L steps from step 0 (MPE) a window is one
    whole episode. The block being overwritten is never sampled; `steps_per_env` must be a
    multiple of L.
    """

    num_envs: int
    steps_per_env: int
    batch_size: int
    obs_shape: tuple[int, ...]
    action_shape: tuple[int, ...]
    n_step: int = 1
    horizon: int = 1
    gamma: float = 0.99
    prioritized: bool = False
    priority_alpha: float = 0.6
    priority_beta: float = 0.4
    action_dtype: DTypeLike = jnp.float32
    sequence_length: int = 0
    aligned_windows: bool = False
    extra_fields: Mapping[str, tuple[tuple[int, ...], DTypeLike]] = field(default_factory=dict)
    _specs: dict[str, tuple[tuple[int, ...], np.dtype]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("num_envs", "steps_per_env", "batch_size", "n_step", "horizon"):
            value = getattr(self, name)
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if int(self.sequence_length) != self.sequence_length or self.sequence_length < 0:
            raise ValueError(f"sequence_length must be an integer >= 0, got {self.sequence_length}")
        if self.aligned_windows and (
            not self.sequence_length
            or self.steps_per_env % self.sequence_length
            or self.prioritized
        ):
            raise ValueError(
                "aligned_windows needs uniform sampling, sequence_length > 0 and steps_per_env a "
                f"multiple of it, got prioritized={self.prioritized}, {self.sequence_length} "
                f"and {self.steps_per_env}"
            )
        if self.num_envs * self.steps_per_env > _MAX_STEPS:  # indices are int32 on the device
            raise ValueError(
                f"a device replay holds at most {_MAX_STEPS:,} steps; {self.num_envs} "
                f"environments x {self.steps_per_env:,} steps is more: lower replay.capacity"
            )
        if self.steps_per_env < self.window:
            raise ValueError(
                f"steps_per_env ({self.steps_per_env}) must hold a whole window of max(n_step, "
                f"horizon, sequence_length) = {self.window} steps; give each environment more "
                "steps"
            )
        specs = {
            "obs": (tuple(self.obs_shape), np.dtype(np.float32)),
            "action": (tuple(self.action_shape), np.dtype(self.action_dtype)),
            "reward": ((), np.dtype(np.float32)),
            "terminated": ((), np.dtype(bool)),
            "ended": ((), np.dtype(bool)),
            "next_obs": (tuple(self.obs_shape), np.dtype(np.float32)),
        }
        for name, spec in dict(self.extra_fields).items():
            if not isinstance(name, str) or name in _CORE or name in _GIVEN:
                taken = sorted({*_CORE, *_GIVEN})
                raise ValueError(f"extra field name {name!r} must be a string other than {taken}")
            try:
                shape, dtype = spec
                specs[name] = (tuple(int(d) for d in shape), np.dtype(dtype))
            except (TypeError, ValueError) as e:
                raise ValueError(
                    f"extra field {name!r} must be given as (shape, dtype): {e}"
                ) from e
        object.__setattr__(self, "_specs", specs)

    @property
    def window(self) -> int:
        """Steps in a sampled window: max(n_step, horizon, sequence_length)."""
        return max(self.n_step, self.horizon, self.sequence_length)

    def _buffer(self, batch_size: int | None = None) -> Any:
        shape = {
            "add_batch_size": self.num_envs,
            "sample_batch_size": self.batch_size if batch_size is None else batch_size,
            "sample_sequence_length": self.window,
            "period": 1,
            "min_length_time_axis": self.window,
            "max_length_time_axis": self.steps_per_env,
        }
        if not self.prioritized:
            return flashbax.make_trajectory_buffer(**shape)
        backend = {"cuda": "gpu", "rocm": "gpu"}.get(jax.default_backend(), jax.default_backend())
        return flashbax.make_prioritised_trajectory_buffer(
            **shape,
            priority_exponent=self.priority_alpha,
            device=backend if backend in ("cpu", "gpu", "tpu") else "cpu",
        )

    def init(self) -> Any:
        """An empty buffer state."""
        example = {name: jnp.zeros(shape, dtype) for name, (shape, dtype) in self._specs.items()}
        return self._buffer().init(example)

    def _stored(self, given: Mapping[str, Any], lead: tuple[int, ...], what: str) -> dict:
        """`given` (the fields `add` takes, with leading axes `lead`) checked, cast and laid out
        as stored."""
        expected = {*_GIVEN, *self._specs} - {"ended"}
        if set(given) != expected:
            raise ValueError(
                f"{what} keys must be exactly {sorted(expected)}: missing "
                f"{sorted(expected - set(given))}, unexpected {sorted(set(given) - expected)}"
            )
        specs = {**self._specs, "truncated": ((), np.dtype(bool))}
        stored = {}
        for name, value in given.items():
            shape, dtype = specs[name]
            if jnp.shape(value) != (*lead, *shape):
                raise ValueError(
                    f"{what} {name!r} must have shape {(*lead, *shape)}, got {jnp.shape(value)}"
                )
            stored[name] = jnp.asarray(value, dtype)
        stored["ended"] = stored["terminated"] | stored.pop("truncated")
        return stored

    def add(self, state: Any, transition: Mapping[str, jax.Array]) -> Any:
        """State with one step of every environment stored: each field [num_envs, *shape]."""
        stored = self._stored(transition, (self.num_envs,), "transition")
        return self._buffer().add(state, jax.tree_util.tree_map(lambda x: x[:, None], stored))

    def extend(self, state: Any, dataset: Mapping[str, jax.Array]) -> Any:
        """State with T consecutive steps of every environment stored, as T calls of `add`
        would store them: each field [num_envs, T, *shape] (env-major, flashbax's layout; a
        single-environment buffer also takes [T, *shape]). T may exceed `steps_per_env`: it is
        added in pieces of at most that many steps, of which the newest stay."""
        obs = jnp.shape(dataset["obs"]) if "obs" in dataset else ()
        lead_ndim = len(obs) - len(self.obs_shape)
        if lead_ndim not in (1, 2) or (lead_ndim == 1 and self.num_envs > 1):
            layout = "[num_envs, T, ...]" + (" or [T, ...]" if self.num_envs == 1 else "")
            raise ValueError(
                f"dataset obs must be {layout} with obs_shape {tuple(self.obs_shape)} and "
                f"num_envs {self.num_envs}, got shape {obs}"
            )
        T = obs[lead_ndim - 1]
        lead = (self.num_envs, T) if lead_ndim == 2 else (T,)
        stored = self._stored(dataset, lead, "dataset")
        if lead_ndim == 1:
            stored = jax.tree_util.tree_map(lambda x: x[None], stored)
        buffer = self._buffer()
        rows = self.steps_per_env
        for start in range(0, T, rows):  # flashbax adds at most a row's length at once
            state = buffer.add(state, {k: v[:, start : start + rows] for k, v in stored.items()})
        return state

    def size(self, state: Any) -> jax.Array:
        """Sampleable windows stored, summed over environments; with `aligned_windows`, the
        steps in them (each step is in one window), so that either compares with a number of
        transitions such as `learning_starts`."""
        if self.aligned_windows:
            return self.num_envs * self._aligned_blocks(state) * self.sequence_length
        stored = jnp.where(state.is_full, self.steps_per_env, state.current_index)
        return self.num_envs * jnp.maximum(stored - self.window + 1, 0)

    def _aligned_blocks(self, state: Any) -> jax.Array:
        """Complete L-step blocks in each row: those written so far, and once the row has
        wrapped all but the one the next writes go into (when they have begun filling it)."""
        L = self.sequence_length
        begun = state.current_index % L != 0
        return jnp.where(
            state.is_full,
            self.steps_per_env // L - begun.astype(jnp.int32),
            state.current_index // L,
        )

    def _sample_aligned(self, state: Any, key: jax.Array, batch_size: int) -> dict:
        L = self.sequence_length
        k_env, k_block = jax.random.split(key)
        env = jax.random.randint(k_env, (batch_size,), 0, self.num_envs)
        block = jax.random.randint(
            k_block, (batch_size,), 0, jnp.maximum(self._aligned_blocks(state), 1)
        )
        # after a wrap, skip the block holding the write position (part new, part old)
        writing = state.current_index // L
        skip = state.is_full & (state.current_index % L != 0) & (block >= writing)
        start = (block + skip) * L
        steps = start[:, None] + jnp.arange(L)
        return jax.tree_util.tree_map(lambda x: x[env[:, None], steps], state.experience)

    def sample(self, state: Any, key: jax.Array, batch_size: int | None = None) -> DeviceSample:
        """`batch_size` windows (default: the configured one) as a learner batch, with
        importance weights if prioritised. Meaningless while `size(state)` is 0: check it first
        (the runner waits for `learning_starts`)."""
        if self.aligned_windows:
            size = self.batch_size if batch_size is None else batch_size
            batch = sequence_batch(self._sample_aligned(state, key, size))
            return DeviceSample(batch, jnp.full(batch.weights.shape, -1, jnp.int32))
        sample = self._buffer(batch_size).sample(state, key)
        if self.sequence_length:
            batch = sequence_batch(sample.experience)
        else:
            batch = n_step_batch(sample.experience, self.n_step, self.horizon, self.gamma)
        if not self.prioritized:
            return DeviceSample(batch, jnp.full(batch.weights.shape, -1, jnp.int32))
        weights = importance_weights(sample.probabilities, self.size(state), self.priority_beta)
        return DeviceSample(batch._replace(weights=weights), sample.indices)

    def update_priorities(
        self, state: Any, indices: jax.Array, td_abs: jax.Array, weights: jax.Array | None = None
    ) -> Any:
        """State with the sampled windows' priorities set from their |TD| (plus a small eps,
        so none is 0); the state itself in a uniform buffer. Given the batch's `weights`, rows
        of weight 0 (drawn with probability 0, see `importance_weights`) keep priority 0, so a
        window that is not sampleable is never made so."""
        if not self.prioritized or indices.shape[0] == 0:
            return state
        priorities = jnp.abs(td_abs) + PRIORITY_EPS
        if weights is not None:
            priorities = jnp.where(weights > 0, priorities, 0.0)
        return self._buffer().set_priorities(state, indices, priorities)

    def _layout(self) -> dict[str, Any]:
        batch = {k: v for k, v in self._specs.items() if k not in ("terminated", "ended")}
        return {"horizon": self.horizon, "sequence_length": self.sequence_length, **batch}


def importance_weights(probabilities: jax.Array, size: jax.Array, beta: float) -> jax.Array:
    """Importance weights (N P(i))^-beta, normalised by the batch's largest: [B] float32.

    A row drawn with probability 0 gets weight 0, so it adds nothing to the loss. flashbax's
    sum tree can return such a row (a window whose priority is 0: not yet stored, or cut by the
    write head) when a drawn value falls on a boundary; its weight would otherwise be infinite
    and stop the run at the non-finite guard.
    """
    drawn = probabilities > 0
    w = jnp.where(drawn, (size * jnp.where(drawn, probabilities, 1.0)) ** (-beta), 0.0)
    return (w / jnp.maximum(jnp.max(w), jnp.finfo(jnp.float32).tiny)).astype(jnp.float32)


def sample_mixed(
    main: DeviceReplay,
    main_state: Any,
    second: DeviceReplay,
    second_state: Any,
    key: jax.Array,
    share: float,
    batch_size: int | None = None,
) -> DeviceSample:
    """A batch with a fixed `share` of rows from a second device buffer (demonstrations, say):
    of B rows (default: main's batch size) the last k = `factorl.replay.host.mixed_split(B, share)`
    come from `second`, the first B - k from `main`, as on the host. Pure and jittable.

    Each part is drawn with its own key (`jax.random.fold_in(key, 0)` for main, 1 for second)
    and carries its own buffer's importance weights and indices; a part whose buffer holds no
    sampleable window yet gets weight 0 (its rows are meaningless), since inside jit nothing can
    raise. `update_priorities_mixed` sends priorities back by the same split.
    """
    if main._layout() != second._layout():
        raise ValueError(
            "the two device buffers' batches must have the same layout (obs, action, horizon, "
            f"extra fields), got {main._layout()} and {second._layout()}"
        )
    batch_size = main.batch_size if batch_size is None else batch_size
    k = mixed_split(batch_size, share)
    parts = []
    for replay, state, rows, stream in ((main, main_state, batch_size - k, 0),
                                        (second, second_state, k, 1)):  # fmt: skip
        if rows == 0:
            continue
        part = replay.sample(state, jax.random.fold_in(key, stream), rows)
        weights = jnp.where(replay.size(state) > 0, part.batch.weights, 0.0)
        parts.append(part._replace(batch=part.batch._replace(weights=weights)))
    return jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs), *parts)


def update_priorities_mixed(
    main: DeviceReplay,
    main_state: Any,
    second: DeviceReplay,
    second_state: Any,
    indices: jax.Array,
    td_abs: jax.Array,
    share: float,
    weights: jax.Array | None = None,
) -> tuple[Any, Any]:
    """(main_state, second_state) with a `sample_mixed` batch's priorities set: its first rows
    in main, its last `mixed_split(len(indices), share)` in second (rows of weight 0 keep
    priority 0, as in `DeviceReplay.update_priorities`)."""
    cut = indices.shape[0] - mixed_split(indices.shape[0], share)
    head, tail = (None, None) if weights is None else (weights[:cut], weights[cut:])
    return (
        main.update_priorities(main_state, indices[:cut], td_abs[:cut], head),
        second.update_priorities(second_state, indices[cut:], td_abs[cut:], tail),
    )
