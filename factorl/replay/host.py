"""Host-side NumPy replay: circular buffers of single steps, one per environment stream, with
n-step returns and (optionally) proportional prioritised sampling through a sum tree.

A transition is a set of named fields: the core ones (obs, action, reward, next_obs and the
episode flags) plus any extra fields declared when the buffer is made (a global state, action
masks, a demonstration flag), so new fields need no change here.

Each of the `num_envs` streams keeps its steps contiguously in time order; n-step returns are
assembled at sample time by walking forward from the sampled slot within its own stream. Keeping
steps contiguous also makes it cheap to return the actions executed after a sampled step (walk the
same slots, pad past the episode end with the last action).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import DTypeLike

__all__ = ["Batch", "MixedReplay", "ReplayBuffer", "SumTree", "mixed_split", "stored_steps"]


class SumTree:
    """Binary sum tree over `capacity` float64 leaves, vectorised with NumPy.

    Nodes live in one flat array: the root at 1, children of node i at 2i and 2i+1, and the
    leaves at [size, size + capacity) where size is the next power of two (padding leaves are
    zero). Every internal node is always recomputed as left + right, so the tree is an exact
    function of its leaves.
    """

    def __init__(self, capacity: int) -> None:
        capacity = int(capacity)
        if capacity < 1:
            raise ValueError(f"capacity must be an integer >= 1, got {capacity}")
        self.capacity = capacity
        size, depth = 1, 0
        while size < capacity:
            size *= 2
            depth += 1
        self._size = size
        self._depth = depth
        self._nodes = np.zeros(2 * size, dtype=np.float64)

    def _check_indices(self, indices: np.ndarray) -> np.ndarray:
        idx = np.asarray(indices)
        if idx.size == 0:
            return idx.astype(np.int64).ravel()
        if not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"indices must be integers, got dtype {idx.dtype}")
        idx = idx.astype(np.int64, copy=False).ravel()
        if idx.min() < 0 or idx.max() >= self.capacity:
            raise ValueError(
                f"indices must be in [0, {self.capacity}), got {idx.min()}..{idx.max()}"
            )
        return idx

    def update(self, indices: np.ndarray, priorities: np.ndarray) -> None:
        """Set leaves `indices` to `priorities` (finite, >= 0); duplicates: the last one wins."""
        idx = self._check_indices(indices)
        pri = np.asarray(priorities, dtype=np.float64).ravel()
        if pri.shape != idx.shape:
            raise ValueError(
                f"indices and priorities must have the same size, got {idx.size} and {pri.size}"
            )
        if idx.size == 0:
            return
        if not (np.isfinite(pri).all() and (pri >= 0).all()):
            raise ValueError("priorities must be finite and >= 0")
        if idx.size > 1:
            # NumPy does not define which write wins for repeated fancy indices, so keep only the
            # last occurrence of each index explicitly (first occurrence in the reversed array).
            idx, first = np.unique(idx[::-1], return_index=True)
            pri = pri[::-1][first]
        nodes = self._nodes
        pos = idx + self._size
        nodes[pos] = pri
        for _ in range(self._depth):
            pos = pos >> 1
            # Repeated parents all receive the same value, so duplicate writes are harmless.
            nodes[pos] = nodes[2 * pos] + nodes[2 * pos + 1]

    def get(self, indices: np.ndarray) -> np.ndarray:
        """Leaf priorities at `indices` (float64)."""
        idx = np.asarray(indices)
        return self._nodes[self._check_indices(idx) + self._size].reshape(idx.shape)

    def total(self) -> float:
        """Sum of all leaves."""
        return float(self._nodes[1])

    def find(self, values: np.ndarray) -> np.ndarray:
        """Leaf index whose prefix-sum interval [c_{j}, c_{j} + p_j) contains each value.

        Values are expected in [0, total); values outside are clamped to the first/last leaf with
        non-zero priority. A leaf with zero priority is never returned.
        """
        total = self._nodes[1]
        if not total > 0:
            raise ValueError("cannot search a SumTree whose total priority is 0")
        v = np.array(values, dtype=np.float64)
        shape = v.shape
        v = v.ravel()
        if not np.isfinite(v).all():
            raise ValueError("values must be finite")
        np.maximum(v, 0.0, out=v)
        nodes = self._nodes
        pos = np.ones(v.size, dtype=np.int64)
        for _ in range(self._depth):
            left = pos << 1
            left_sum = nodes[left]
            # Only step right into a subtree with mass: round-off can leave v >= left_sum at the
            # right edge even when everything to the right is zero. Since a node with mass has a
            # child with mass, the descent always ends on a non-zero leaf.
            go_right = (v >= left_sum) & (nodes[left + 1] > 0)
            v -= np.where(go_right, left_sum, 0.0)
            pos = left + go_right
        return (pos - self._size).reshape(shape)

    @property
    def leaves(self) -> np.ndarray:
        """Copy of the leaf priorities (length `capacity`)."""
        return self._nodes[self._size : self._size + self.capacity].copy()

    def set_leaves(self, leaves: np.ndarray) -> None:
        """Replace all leaves and rebuild every internal node from them."""
        leaves = np.asarray(leaves, dtype=np.float64)
        if leaves.shape != (self.capacity,):
            raise ValueError(f"leaves must have shape ({self.capacity},), got {leaves.shape}")
        if not (np.isfinite(leaves).all() and (leaves >= 0).all()):
            raise ValueError("leaves must be finite and >= 0")
        nodes = self._nodes
        nodes[self._size :] = 0.0
        nodes[self._size : self._size + self.capacity] = leaves
        n = self._size
        while n > 1:
            # Same left + right addition as `update`, hence bit-identical sums.
            nodes[n // 2 : n] = nodes[n : 2 * n : 2] + nodes[n + 1 : 2 * n : 2]
            n //= 2


class _BatchArrays(NamedTuple):
    obs: np.ndarray  # [B, *obs_shape] float32
    action: np.ndarray  # [B, *action_shape] (or [B, K, *action_shape]), dtype as stored
    reward: np.ndarray  # [B] float32, n-step discounted return
    discount: np.ndarray  # [B] float32, gamma^m * (1 - terminated): factor on the bootstrap value
    next_obs: np.ndarray  # [B, *obs_shape] float32, observation to bootstrap from
    weights: np.ndarray  # [B] float32 importance-sampling weights (all 1 when uniform)
    indices: np.ndarray  # [B] int64 flat slots env * capacity_per_env + slot, for priorities


class Batch(_BatchArrays):
    """A sampled batch of n-step transitions.

    It is a tuple of the seven arrays above (so unpacking, iteration and `_fields` are as they
    always were, and JAX sees only those); the buffer's extra fields ride along in `extras`,
    name -> [B, *shape]: `next_<x>` fields read at the bootstrap step (where `next_obs` is read),
    every other field at the sampled step.
    """

    extras: dict[str, np.ndarray]

    def __new__(
        cls,
        obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        discount: np.ndarray,
        next_obs: np.ndarray,
        weights: np.ndarray,
        indices: np.ndarray,
        extras: Mapping[str, np.ndarray] | None = None,
    ) -> Batch:
        batch = super().__new__(cls, obs, action, reward, discount, next_obs, weights, indices)
        batch.extras = {} if extras is None else dict(extras)
        return batch

    def _replace(self, **changes: Any) -> Batch:
        # the tuple's own _replace rebuilds through tuple.__new__, which would drop `extras`
        extras = changes.pop("extras", self.extras)
        return Batch(**{**self._asdict(), **changes}, extras=extras)

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]}, extras={self.extras!r})"


# Pending tree writes are applied in one vectorised update; flush early past this many so a long
# stretch of adds without sampling does not grow the lists without bound.
_MAX_DIRTY = 4096

# the configuration a state_dict saves, and each value's dtype
_CONFIG_DTYPES = {
    "capacity": np.int64,
    "num_envs": np.int64,
    "obs_shape": np.int64,
    "action_shape": np.int64,
    "n_step": np.int64,
    "action_horizon": np.int64,
    "gamma": np.float64,
    "prioritized": bool,
    "alpha": np.float64,
    "priority_eps": np.float64,
}
_DATA_KEYS = (
    "obs",
    "action",
    "reward",
    "next_obs",
    "terminated",
    "episode_end",
    "active",
    "leaves",
    "pending",
    "write_pos",
    "size",
    "max_priority",
)
# Up to this many runs of inactive slots (one stream has fewer than a window of them), the
# uniform fast path steps over each run in turn; past it (many streams) a binary search over the
# runs takes fewer NumPy calls.
_FEW_RUNS = 8
# state_dict keys of extra fields carry this prefix, so a field can never shadow a core key
_EXTRA_PREFIX = "extra."
# `add`'s own parameter names, which extra fields (passed as keywords) cannot take
_RESERVED = frozenset({"self", "obs", "action", "reward", "next_obs", "terminated", "truncated"})


class ReplayBuffer:
    """Circular buffers of single environment steps, one per environment stream, with n-step
    returns built at sample time.

    `num_envs` streams (independent environments) share the capacity equally: every field is
    stored as [num_envs, capacity // num_envs, ...]. Call `add` once per (vector) environment
    step, in time order, with one step for every stream, and mark the last step of every episode
    with `terminated` or `truncated`. A step becomes sampleable once its n-step window is
    complete within its own stream (n steps stored from it, or its episode ended within them).
    Bootstrapping goes through truncation but never through termination. Sampling draws
    uniformly (or by priority) over the sampleable steps of all streams; `Batch.indices` are flat
    indices env * capacity_per_env + slot, which `update_priorities` takes back.

    With `action_horizon` K > 1 (action-sequence critics, CQN-AS), `sample` returns as `action`
    the K actions actually executed from t, shape [B, K, *action_shape], padded with the episode's
    last action past its end; a step then becomes sampleable once max(n, K) steps are stored
    from it (or its episode ended), so the sequence is never cut short by the write head.

    `extra_fields` declares further named fields, name -> (shape, dtype), that `add` then takes
    as keyword arguments and `sample` returns in `Batch.extras`: a field named `next_<x>` is read
    at the bootstrap step of the n-step window (like `next_obs`), any other at the sampled step.

    `extend(dataset)` stores a whole time-major dataset [T, num_envs, ...] at once, exactly as T
    calls of `add` would (a recorded run, demonstrations for a second buffer).
    """

    # Fixed attributes: `add` runs on every environment step and reads about twenty of them, and
    # CPython reads slots at the same speed however many there are (an instance dict slows down
    # once it outgrows the shared-keys limit).
    __slots__ = (
        "_action",
        "_activation_value",
        "_active",
        "_columns",
        "_dirty_idx",
        "_dirty_val",
        "_env_offsets",
        "_episode_end",
        "_extras",
        "_gamma_pows",
        "_lean_obs_shape",
        "_max_priority",
        "_next_obs",
        "_num_active",
        "_obs",
        "_pending",
        "_pending_by_env",
        "_reward",
        "_size",
        "_terminated",
        "_tree",
        "_window",
        "_write_pos",
        "action_horizon",
        "action_shape",
        "alpha",
        "beta",
        "capacity",
        "capacity_per_env",
        "extra_fields",
        "gamma",
        "n_step",
        "num_envs",
        "obs_shape",
        "prioritized",
        "priority_eps",
    )

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...],
        action_shape: tuple[int, ...],
        *,
        n_step: int = 1,
        gamma: float = 0.99,
        prioritized: bool = False,
        alpha: float = 0.6,
        beta: float = 0.2,
        priority_eps: float = 1e-6,
        action_dtype: DTypeLike = np.float32,
        action_horizon: int = 1,
        num_envs: int = 1,
        extra_fields: Mapping[str, tuple[tuple[int, ...], DTypeLike]] | None = None,
    ) -> None:
        if int(capacity) != capacity or capacity < 1:
            raise ValueError(f"capacity must be an integer >= 1, got {capacity!r}")
        if int(num_envs) != num_envs or num_envs < 1:
            raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        if int(n_step) != n_step or n_step < 1:
            raise ValueError(f"n_step must be an integer >= 1, got {n_step!r}")
        if int(action_horizon) != action_horizon or action_horizon < 1:
            raise ValueError(f"action_horizon must be an integer >= 1, got {action_horizon!r}")
        if capacity % num_envs:
            raise ValueError(
                f"capacity must be a multiple of num_envs ({num_envs}) so every stream gets the "
                f"same number of slots, got {capacity}"
            )
        if capacity < num_envs * max(n_step, action_horizon):
            raise ValueError(
                f"capacity must be >= n_step ({n_step}) and action_horizon ({action_horizon}) "
                f"times num_envs ({num_envs}) so a window fits in every stream, got {capacity}"
            )
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {gamma!r}")
        if not 0.0 <= alpha < np.inf:
            raise ValueError(f"alpha must be finite and >= 0, got {alpha!r}")
        if not 0.0 <= beta < np.inf:
            raise ValueError(f"beta must be finite and >= 0, got {beta!r}")
        if not 0.0 <= priority_eps < np.inf:
            raise ValueError(f"priority_eps must be finite and >= 0, got {priority_eps!r}")
        self.capacity = int(capacity)
        self.num_envs = int(num_envs)
        self.capacity_per_env = self.capacity // self.num_envs
        self.obs_shape = tuple(int(d) for d in obs_shape)
        self.action_shape = tuple(int(d) for d in action_shape)
        self.extra_fields = _checked_extra_fields(extra_fields or {})
        self.n_step = int(n_step)
        self.action_horizon = int(action_horizon)
        # steps that must follow a transition (or its episode end) before it can be sampled
        self._window = max(self.n_step, self.action_horizon)
        self.gamma = float(gamma)
        self.prioritized = bool(prioritized)
        self.alpha = float(alpha)
        # Only affects the weights returned by `sample`; callers may anneal it between calls.
        self.beta = float(beta)
        self.priority_eps = float(priority_eps)

        # Every field is stored env-major as [N, C, *shape] (these are also the state_dict keys);
        # the attributes below are flat [N * C, *shape] views of the same memory, indexed by the
        # flat slot env * C + slot that the sum tree and `Batch.indices` use.
        specs = {
            "obs": (self.obs_shape, np.dtype(np.float32)),
            "action": (self.action_shape, np.dtype(action_dtype)),
            "reward": ((), np.dtype(np.float32)),
            "next_obs": (self.obs_shape, np.dtype(np.float32)),
            "terminated": ((), np.dtype(bool)),
            "episode_end": ((), np.dtype(bool)),
            "active": ((), np.dtype(bool)),
        }
        specs.update({_EXTRA_PREFIX + name: spec for name, spec in self.extra_fields.items()})
        self._check_memory(
            sum(dtype.itemsize * int(np.prod(shape)) for shape, dtype in specs.values())
        )
        n_envs, cap = self.num_envs, self.capacity_per_env
        self._columns = {
            key: np.zeros((n_envs, cap, *shape), dtype) for key, (shape, dtype) in specs.items()
        }
        flat = {
            key: col.reshape(n_envs * cap, *col.shape[2:]) for key, col in self._columns.items()
        }
        self._obs = flat["obs"]
        self._action = flat["action"]
        self._reward = flat["reward"]
        self._next_obs = flat["next_obs"]
        self._terminated = flat["terminated"]
        self._episode_end = flat["episode_end"]
        self._active = flat["active"]
        self._extras = {name: flat[_EXTRA_PREFIX + name] for name in self.extra_fields}
        self._env_offsets = np.arange(n_envs, dtype=np.int64) * cap  # flat index of slot 0
        # the obs shape of a step `add` stores without `_add_streams` (None matches no shape)
        self._lean_obs_shape = self.obs_shape if n_envs == 1 and not self._extras else None
        self._tree = SumTree(self.capacity)
        self._gamma_pows = self.gamma ** np.arange(self.n_step + 1, dtype=np.float64)
        self._reset_counters()

    def _check_memory(self, bytes_per_step: int) -> None:
        """Refuse a buffer larger than the memory available, before allocating it: NumPy's
        zeroed arrays are only backed by memory as they fill, so an oversized buffer would
        otherwise fail hours into a run, or take the machine down with it."""
        from factorl.io.system import available_memory_bytes

        tree = 16 * (1 << (self.capacity - 1).bit_length())  # SumTree: 2 x next power of two
        needed = self.capacity * bytes_per_step + tree
        available = available_memory_bytes()
        if available is not None and needed > available:
            fits = max(int(available / (bytes_per_step + 32)), 0)
            raise ValueError(
                f"a replay buffer of capacity {self.capacity:,} needs {needed / 2**30:.1f} GiB "
                f"but {available / 2**30:.1f} GiB of memory is available; at most about {fits:,} "
                "transitions fit"
            )

    def _reset_counters(self) -> None:
        # Every add writes one step to every stream, so the streams share the write position
        # and the number of steps stored.
        self._write_pos = 0
        self._size = 0
        self._num_active = 0
        self._set_pending([[] for _ in range(self.num_envs)])
        self._dirty_idx: list[int] = []  # tree writes not yet applied, in order
        self._dirty_val: list[float] = []
        self._max_priority = 1.0
        self._activation_value = self._leaf_for_new()

    def _set_pending(self, pending_by_env: list[list[int]]) -> None:
        # per stream, its current episode's flat slots whose window is incomplete, oldest first
        self._pending_by_env = pending_by_env
        # the single-stream add works on its one list directly (it runs every env step)
        self._pending = pending_by_env[0]

    def _leaf_for_new(self) -> float:
        return self._max_priority**self.alpha if self.prioritized else 1.0

    def __len__(self) -> int:
        """Number of transitions that can be sampled now (all streams together)."""
        return self._num_active

    def _activate(self, slot: int) -> None:
        self._active[slot] = True
        self._num_active += 1
        self._dirty_idx.append(slot)
        self._dirty_val.append(self._activation_value)

    def _flush(self) -> None:
        if self._dirty_idx:
            self._tree.update(
                np.array(self._dirty_idx, dtype=np.int64),
                np.array(self._dirty_val, dtype=np.float64),
            )
            self._dirty_idx.clear()
            self._dirty_val.clear()

    def add(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: float | np.ndarray,
        next_obs: np.ndarray,
        terminated: bool | np.ndarray,
        truncated: bool | np.ndarray,
        **extras: np.ndarray,
    ) -> None:
        """Store one environment step (obs, action) -> (reward, next_obs, terminated, truncated)
        for every stream: `obs` [num_envs, *obs_shape], `action` [num_envs, *action_shape],
        `reward`, `terminated` and `truncated` [num_envs], and each declared extra field
        [num_envs, *shape]. A single-stream buffer also takes one unbatched step (`obs` of shape
        obs_shape, scalar reward and flags).
        """
        if extras or np.shape(obs) != self._lean_obs_shape:
            self._add_streams(obs, action, reward, next_obs, terminated, truncated, extras)
            return
        # One stream, no extra fields, one unbatched step: the training loop's call on every env
        # step, so it stays as lean as it was before streams and fields existed.
        if np.shape(next_obs) != self.obs_shape:
            raise ValueError(
                f"obs and next_obs must have shape {self.obs_shape}, "
                f"got {np.shape(obs)} and {np.shape(next_obs)}"
            )
        if np.shape(action) != self.action_shape:
            raise ValueError(f"action must have shape {self.action_shape}, got {np.shape(action)}")
        pos = self._write_pos
        if self._active[pos]:
            # Writes go in time order, so the slot being overwritten holds the oldest stored step:
            # every other stored window starts later and never reaches back into it. Only the
            # transition starting here is broken, and it stops being sampleable.
            self._active[pos] = False
            self._num_active -= 1
            self._dirty_idx.append(pos)
            self._dirty_val.append(0.0)
        self._obs[pos] = obs
        self._action[pos] = action
        self._reward[pos] = reward
        self._next_obs[pos] = next_obs
        self._terminated[pos] = terminated
        ended = bool(terminated or truncated)
        self._episode_end[pos] = ended

        self._push_pending(self._pending, pos, ended)
        self._advance()

    def _add_streams(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: float | np.ndarray,
        next_obs: np.ndarray,
        terminated: bool | np.ndarray,
        truncated: bool | np.ndarray,
        extras: Mapping[str, np.ndarray],
    ) -> None:
        """`add` with a leading stream axis on every argument (the same steps as the lean
        single-stream path, applied to every stream's slot at the shared write position)."""
        n_envs = self.num_envs
        unbatched = n_envs == 1 and np.shape(obs) == self.obs_shape
        lead = () if unbatched else (n_envs,)
        given = {
            "obs": (obs, self.obs_shape),
            "next_obs": (next_obs, self.obs_shape),
            "action": (action, self.action_shape),
            "reward": (reward, ()),
            "terminated": (terminated, ()),
            "truncated": (truncated, ()),
        }
        for name, (value, shape) in given.items():
            if np.shape(value) != (*lead, *shape):
                steps = f"one step for each of the {n_envs} streams"
                if n_envs == 1:
                    steps = f"one step with a stream axis, or {shape} without"
                raise ValueError(
                    f"{name} must have shape {(*lead, *shape)} ({steps}), got {np.shape(value)}"
                )
        self._check_extras(extras, lead)
        if unbatched:  # give every argument its stream axis
            obs, action, reward, next_obs, terminated, truncated = (
                np.asarray(x)[None] for x in (obs, action, reward, next_obs, terminated, truncated)
            )
            extras = {name: np.asarray(value)[None] for name, value in extras.items()}
        terminated = np.asarray(terminated, dtype=bool)
        ended = terminated | np.asarray(truncated, dtype=bool)

        pos = self._write_pos
        flat = self._env_offsets + pos
        overwritten = flat[self._active[flat]]
        if overwritten.size:  # as in `add`: only the transitions starting here break
            self._active[overwritten] = False
            self._num_active -= overwritten.size
            self._dirty_idx.extend(overwritten.tolist())
            self._dirty_val.extend([0.0] * overwritten.size)
        self._obs[flat] = obs
        self._action[flat] = action
        self._reward[flat] = reward
        self._next_obs[flat] = next_obs
        self._terminated[flat] = terminated
        self._episode_end[flat] = ended
        for name, value in extras.items():
            self._extras[name][flat] = value

        for pending, slot, episode_ended in zip(
            self._pending_by_env, flat.tolist(), ended.tolist(), strict=True
        ):
            self._push_pending(pending, slot, episode_ended)
        self._advance()

    def _push_pending(self, pending: list[int], slot: int, ended: bool) -> None:
        """A stream's new step waits in `pending` until its window is stored: its episode ended
        (every waiting step is then complete) or `window` steps followed (the oldest is)."""
        pending.append(slot)
        if ended:
            for waiting in pending:
                self._activate(waiting)
            pending.clear()
        elif len(pending) == self._window:
            self._activate(pending.pop(0))

    def _advance(self) -> None:
        """Move the shared write position past the step just stored in every stream."""
        pos = self._write_pos + 1
        self._write_pos = 0 if pos == self.capacity_per_env else pos
        if self._size < self.capacity_per_env:
            self._size += 1
        if len(self._dirty_idx) > _MAX_DIRTY:
            self._flush()

    def _check_extras(self, extras: Mapping[str, Any], lead: tuple[int, ...]) -> None:
        """`add`'s extra fields must be exactly the declared ones, each of shape lead + shape."""
        for name in extras:
            if name not in self.extra_fields:
                declared = sorted(self.extra_fields) or "none"
                raise ValueError(f"unknown extra field {name!r} (declared: {declared})")
        for name, (shape, _) in self.extra_fields.items():
            if name not in extras:
                raise ValueError(f"missing extra field {name!r}: add must be given every field")
            if np.shape(extras[name]) != (*lead, *shape):
                raise ValueError(
                    f"extra field {name!r} must have shape {(*lead, *shape)}, "
                    f"got {np.shape(extras[name])}"
                )

    def extend(self, dataset: Mapping[str, np.ndarray]) -> None:
        """Store T consecutive steps of every stream at once, leaving the buffer exactly as T
        calls of `add` would (storage, priorities, waiting windows, write position).

        `dataset` maps obs, action, reward, next_obs, terminated, truncated and every declared
        extra field to time-major arrays [T, num_envs, *shape] (column e holds stream e's steps
        in time order); a single-stream buffer also takes [T, *shape]. The steps continue each
        stream where it stands, so an episode left open by earlier adds goes on with step 0, and
        only the newest capacity_per_env steps of a stream stay stored. Values are cast to the
        stored dtypes as `add` casts them; boolean fields (the flags) take bools or 0/1 numbers.
        """
        T, columns = self._dataset_columns(dataset)
        if T == 0:
            return
        cap = self.capacity_per_env
        # Only each stream's newest `cap` steps survive; they fill the ring from `start`, in at
        # most two contiguous pieces (before and after the wrap).
        keep = min(T, cap)
        start = (self._write_pos + T - keep) % cap
        first = min(keep, cap - start)
        for key, value in columns.items():
            column = self._columns[key]
            newest = np.swapaxes(value[T - keep :], 0, 1)  # [N, keep, ...]
            column[:, start : start + first] = newest[:, :first]
            column[:, : keep - first] = newest[:, first:]

        # Which steps `add` would have made sampleable: every step of a stream but its newest
        # ones after its last episode end, fewer than a window of them (they stay pending). A
        # step is activated within a window of being stored, before its slot can be written
        # again, so a slot's final state depends only on the step it holds last.
        self._flush()  # keep write order: these writes must land after the pending ones
        ended = columns["episode_end"]  # [T, N]
        any_end = ended.any(axis=0)
        last_end = T - 1 - np.argmax(ended[::-1], axis=0)
        write_pos = (self._write_pos + T) % cap
        slots, values, pending_by_env = [], [], []
        for e, waiting in enumerate(self._pending_by_env):
            since_end = T - 1 - int(last_end[e]) if any_end[e] else len(waiting) + T
            still = min(since_end, self._window - 1)
            # the ring slots of this stream's waiting steps and new steps still stored, oldest
            # first: all of them now belong to either the active or the pending steps
            span = min(len(waiting) + T, cap)
            touched = (write_pos - span + np.arange(span)) % cap + e * cap
            self._num_active += span - still - int(self._active[touched].sum())
            self._active[touched[: span - still]] = True
            self._active[touched[span - still :]] = False
            slots.append(touched)
            values.append(np.full(span, self._activation_value))
            values[-1][span - still :] = 0.0
            pending_by_env.append(touched[span - still :].tolist())
        self._tree.update(np.concatenate(slots), np.concatenate(values))
        self._set_pending(pending_by_env)
        self._write_pos = write_pos
        self._size = min(self._size + T, cap)

    def _dataset_columns(self, dataset: Mapping[str, np.ndarray]) -> tuple[int, dict]:
        """`extend`'s dataset checked and laid out as stored: (T, column key -> [T, N, ...]),
        with `episode_end` in place of `truncated`."""
        shapes = {
            "obs": self.obs_shape,
            "action": self.action_shape,
            "reward": (),
            "next_obs": self.obs_shape,
            "terminated": (),
            "truncated": (),
            **{name: shape for name, (shape, _) in self.extra_fields.items()},
        }
        keys = set(dataset)
        if keys != set(shapes):
            raise ValueError(
                f"dataset keys must be exactly {sorted(shapes)}: missing "
                f"{sorted(set(shapes) - keys)}, unexpected {sorted(keys - set(shapes))} (declare "
                "further fields as extra_fields when making the buffer)"
            )
        arrays = {key: np.asarray(dataset[key]) for key in shapes}
        obs = arrays["obs"]
        lead_ndim = obs.ndim - len(self.obs_shape)
        if lead_ndim not in (1, 2) or (lead_ndim == 1 and self.num_envs > 1):
            layout = "[T, num_envs, ...]" + (" or [T, ...]" if self.num_envs == 1 else "")
            raise ValueError(
                f"dataset obs must be {layout} with obs_shape {self.obs_shape} and num_envs "
                f"{self.num_envs}, got shape {obs.shape}"
            )
        lead = (obs.shape[0], self.num_envs)[:lead_ndim]
        dtypes = {key: self._columns[key].dtype for key in ("obs", "action", "reward", "next_obs")}
        dtypes["terminated"] = dtypes["truncated"] = np.dtype(bool)
        for name, (_, dtype) in self.extra_fields.items():
            dtypes[name] = dtype
        columns = {}
        for key, shape in shapes.items():
            value = arrays[key]
            if value.shape != (*lead, *shape):
                raise ValueError(
                    f"dataset {key!r} must have shape {(*lead, *shape)} (T, then "
                    f"{'num_envs, ' if lead_ndim == 2 else ''}the field's shape), got {value.shape}"
                )
            value = _cast_field(key, value, dtypes[key])
            stored = _EXTRA_PREFIX + key if key in self.extra_fields else key
            columns[stored] = value if lead_ndim == 2 else value[:, None]
        columns["episode_end"] = columns["terminated"] | columns.pop("truncated")
        return obs.shape[0], columns

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        """Draw `batch_size` transitions with replacement from all streams (proportionally to
        priority if prioritised, else uniformly), using only `rng` for randomness."""
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if self._num_active == 0:
            raise ValueError(
                "cannot sample: the buffer holds 0 sampleable transitions, need at least 1 "
                f"(a step becomes sampleable once {self.n_step} steps are stored from it or its "
                "episode ends)"
            )
        u = rng.random(int(batch_size))
        idx = None if self.prioritized else self._uniform_slots(u)
        if idx is None:
            self._flush()
            tree = self._tree
            total = tree.total()
            idx = tree.find(u * total)

        if self.prioritized:
            probs = tree.get(idx) / total
            w = (self._num_active * probs) ** (-self.beta)
            weights = (w / w.max()).astype(np.float32)
        else:
            weights = np.ones(idx.shape, dtype=np.float32)

        # Walk forward through the same episode of the same stream, stopping after the first
        # episode end and never past the stream's newest written step.
        cap = self.capacity_per_env
        if self.num_envs == 1:
            start, base = idx, 0
        else:
            start = idx % cap  # slot within the stream
            base = idx - start  # flat index of the stream's slot 0
        newest = self._write_pos - 1 if self._write_pos > 0 else cap - 1
        ret = np.zeros(idx.shape, dtype=np.float64)
        last = idx
        steps = np.zeros(idx.shape, dtype=np.int64)
        alive = np.ones(idx.shape, dtype=bool)
        slot, flat = start, idx
        for k in range(self.n_step):
            if k > 0:
                slot = start + k
                slot[slot >= cap] -= cap
                flat = base + slot
                last = np.where(alive, flat, last)
            ret += np.where(alive, self._gamma_pows[k] * self._reward[flat], 0.0)
            steps += alive
            alive &= ~self._episode_end[flat] & (slot != newest)
            if not alive.any():
                break
        discount = self._gamma_pows[steps] * (1.0 - self._terminated[last])

        return Batch(
            obs=self._obs[idx],
            action=self._action[idx] if self.action_horizon == 1 else self._sequences(start, base),
            reward=ret.astype(np.float32),
            discount=discount.astype(np.float32),
            next_obs=self._next_obs[last],
            weights=weights,
            indices=idx,
            extras={
                name: values[last] if name.startswith("next_") else values[idx]
                for name, values in self._extras.items()
            },
        )

    def _uniform_slots(self, u: np.ndarray) -> np.ndarray | None:
        """The slots `SumTree.find(u * total)` returns when every leaf is 1 (active) or 0, without
        the tree: the floor(u * total)-th active flat slot in flat order, for each u.

        Sums of 0/1 leaves are exact integers in float64 and subtracting them from v is exact, so
        the tree's descent computes exactly this; here it takes a few vectorised operations
        instead of two passes over the tree's depth (about 0.2 ms per batch at capacity 1M). The
        inactive slots are the pending ones (windows still incomplete) and, until the streams
        are full, each stream's unwritten tail. Returns None if the buffer is not in that layout,
        and the caller takes the tree path.
        """
        holes = sorted(itertools.chain.from_iterable(self._pending_by_env))
        n = self._num_active
        if len(holes) != self.num_envs * self._size - n or self._active[holes].any():
            return None
        k = np.floor(u * float(n)).astype(np.int64)  # the same product the tree path forms
        np.minimum(k, n - 1, out=k)  # u * n can round up to n; the tree clamps to the last leaf
        # Runs of inactive slots in flat order, (start, length): the pending slots and each
        # stream's unwritten tail but the last stream's, which lies past every active slot.
        runs = [(hole, 1) for hole in holes]
        tail = self.capacity_per_env - self._size
        if tail and self.num_envs > 1:
            runs += [(int(offset) + self._size, tail) for offset in self._env_offsets[:-1]]
            runs.sort()
        if len(runs) <= _FEW_RUNS:
            for start, length in runs:  # ascending: step over each run at or below k
                past = k >= start
                k += past if length == 1 else past * length
            return k
        starts = np.array([s for s, _ in runs], dtype=np.int64)
        skipped = np.cumsum([0] + [length for _, length in runs], dtype=np.int64)
        # The k-th active slot lies past run j exactly when k >= the number of active slots
        # before run j, which is its start minus the lengths of the runs before it.
        return k + skipped[np.searchsorted(starts - skipped[:-1], k, side="right")]

    def _sequences(self, start: np.ndarray, base: np.ndarray | int) -> np.ndarray:
        """The action_horizon actions executed from each (stream base, slot), padded with the
        episode's last; a sampleable step has them all stored, so no walk passes the newest."""
        seq = np.empty((len(start), self.action_horizon, *self.action_shape), self._action.dtype)
        slot, alive = start.copy(), np.ones(start.shape, dtype=bool)
        for k in range(self.action_horizon):
            if k > 0:
                step = slot + 1
                step[step >= self.capacity_per_env] -= self.capacity_per_env
                slot = np.where(alive, step, slot)  # past the episode end: keep the last slot
            flat = base + slot
            seq[:, k] = self._action[flat]
            alive &= ~self._episode_end[flat]
        return seq

    def update_priorities(self, indices: np.ndarray, td_abs: np.ndarray) -> None:
        """Set priorities of sampled flat slots (`Batch.indices`) from absolute TD errors:
        leaf = (td + eps) ** alpha.

        A no-op in uniform mode. Slots overwritten since they were sampled are skipped so they
        stay unsampleable.
        """
        idx = np.asarray(indices)
        td = np.asarray(td_abs, dtype=np.float64)
        if idx.ndim != 1 or idx.shape != td.shape:
            raise ValueError(
                f"indices and td_abs must be 1-D of the same length, got {idx.shape} and {td.shape}"
            )
        if idx.size and not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"indices must be integers, got dtype {idx.dtype}")
        if idx.size and (idx.min() < 0 or idx.max() >= self.capacity):
            raise ValueError(f"indices must be in [0, {self.capacity})")
        if not (np.isfinite(td).all() and (td >= 0).all()):
            raise ValueError("td_abs must be finite and >= 0")
        if not self.prioritized or idx.size == 0:
            return
        self._flush()  # keep write order: earlier activations must not overwrite these
        raw = td + self.priority_eps
        self._max_priority = max(self._max_priority, float(raw.max()))
        self._activation_value = self._leaf_for_new()
        keep = self._active[idx]
        self._tree.update(idx[keep], raw[keep] ** self.alpha)

    def _config(self) -> dict[str, Any]:
        return {
            "capacity": self.capacity,
            "num_envs": self.num_envs,
            "obs_shape": self.obs_shape,
            "action_shape": self.action_shape,
            "n_step": self.n_step,
            "action_horizon": self.action_horizon,
            "gamma": self.gamma,
            "prioritized": self.prioritized,
            "alpha": self.alpha,
            "priority_eps": self.priority_eps,
        }

    def state_dict(self) -> dict[str, np.ndarray]:
        """Configuration and filled storage as plain NumPy arrays (safe for `np.savez`).

        With several streams, stored fields are [num_envs, steps stored, ...] and `num_envs` is
        saved; a single-stream buffer saves them as [steps stored, ...] without `num_envs`, the
        layout every checkpoint had before streams existed. Extra fields are saved as
        `extra.<name>`; `pending` lists flat slots, stream by stream, oldest first.
        """
        self._flush()
        size = self._size
        streams = self.num_envs > 1
        config = self._config()
        if not streams:
            del config["num_envs"]
        state = {key: np.asarray(value, dtype=_CONFIG_DTYPES[key]) for key, value in config.items()}
        for key, column in self._columns.items():
            state[key] = (column[:, :size] if streams else column[0, :size]).copy()
        leaves = self._tree.leaves.reshape(self.num_envs, self.capacity_per_env)[:, :size]
        state["leaves"] = leaves.copy() if streams else leaves[0].copy()
        state["pending"] = np.asarray(
            list(itertools.chain.from_iterable(self._pending_by_env)), dtype=np.int64
        )
        state["write_pos"] = np.asarray(self._write_pos, dtype=np.int64)
        state["size"] = np.asarray(self._size, dtype=np.int64)
        state["max_priority"] = np.asarray(self._max_priority, dtype=np.float64)
        return state

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore a `state_dict` saved from a buffer with the same configuration.

        Everything is checked before anything is changed: the contents are untrusted (a
        checkpoint from disk). A state without `num_envs` (a single-stream buffer's, including
        every one saved before streams existed) has no stream axis and holds one stream.
        """
        keys = set(state.keys())
        streams = "num_envs" in keys
        expected = set(_CONFIG_DTYPES) | set(_DATA_KEYS) | set(self._columns)
        if not streams:
            expected.discard("num_envs")
        if keys != expected:
            raise ValueError(
                "replay state keys do not match: missing "
                f"{sorted(expected - keys)}, unexpected {sorted(keys - expected)}"
            )
        for key, mine in self._config().items():
            value = np.asarray(state[key] if key in keys else 1)  # no num_envs: one stream
            theirs = tuple(value.tolist()) if value.ndim == 1 else value.tolist()
            if value.ndim > 1 or theirs != mine:
                raise ValueError(f"replay state has {key}={theirs!r} but this buffer has {mine!r}")

        counters = {}
        for key, dtype in (("size", np.int64), ("write_pos", np.int64), ("max_priority", float)):
            value = np.asarray(state[key])
            if value.shape != () or value.dtype != np.dtype(dtype):
                raise ValueError(
                    f"replay state {key!r} must be a {np.dtype(dtype)} scalar, "
                    f"got shape {value.shape} and dtype {value.dtype}"
                )
            counters[key] = value.item()
        n_envs, cap = self.num_envs, self.capacity_per_env
        size, write_pos = counters["size"], counters["write_pos"]
        if not 0 <= size <= cap:
            raise ValueError(f"replay state size must be in [0, {cap}], got {size}")
        if (size < cap and write_pos != size) or not 0 <= write_pos < cap:
            raise ValueError(f"replay state write_pos={write_pos} is inconsistent with size={size}")
        max_priority = counters["max_priority"]
        if not 0 < max_priority < np.inf:
            raise ValueError(
                f"replay state max_priority must be finite and > 0, got {max_priority}"
            )

        lead = (n_envs, size) if streams else (size,)
        specs = {key: (col.shape[2:], col.dtype) for key, col in self._columns.items()}
        specs["leaves"] = ((), np.dtype(np.float64))
        arrays = {}
        for key, (shape, dtype) in specs.items():
            value = np.asarray(state[key])
            if value.shape != (*lead, *shape):
                raise ValueError(
                    f"replay state {key!r} has shape {value.shape}, expected {(*lead, *shape)}"
                )
            if value.dtype != dtype:
                raise ValueError(f"replay state {key!r} has dtype {value.dtype}, expected {dtype}")
            arrays[key] = value if streams else value[None]

        pending_by_env = self._checked_pending(np.asarray(state["pending"]), size, write_pos)
        active, leaves = arrays["active"], arrays["leaves"]
        is_pending = np.zeros((n_envs, size), dtype=bool)
        for pending in pending_by_env:
            for slot in pending:
                is_pending[divmod(slot, cap)] = True
        # every stored step is either sampleable or waiting for its window, never both
        if not (active == ~is_pending).all():
            raise ValueError("replay state active must mark exactly the stored, non-pending slots")
        if arrays["episode_end"][is_pending].any():
            raise ValueError("replay state has an episode end among the pending slots")
        if (arrays["terminated"] & ~arrays["episode_end"]).any():
            raise ValueError("replay state has a terminated step that does not end its episode")
        if not (np.isfinite(leaves).all() and (leaves >= 0).all() and (leaves[~active] == 0).all()):
            raise ValueError("replay state leaves must be finite, >= 0, and 0 on inactive slots")
        if not self.prioritized and not (leaves[active] == 1.0).all():
            raise ValueError("replay state leaves must be 1 on active slots in uniform mode")

        for key, column in self._columns.items():
            column[:, :size] = arrays[key]
            column[:, size:] = 0
        full_leaves = np.zeros((n_envs, cap), dtype=np.float64)
        full_leaves[:, :size] = leaves
        self._tree.set_leaves(full_leaves.reshape(-1))
        self._write_pos = write_pos
        self._size = size
        self._num_active = int(active.sum())
        self._set_pending(pending_by_env)
        self._dirty_idx = []
        self._dirty_val = []
        self._max_priority = max_priority
        self._activation_value = self._leaf_for_new()

    def _checked_pending(self, pending: np.ndarray, size: int, write_pos: int) -> list[list[int]]:
        """A saved `pending` array split by stream, checked to be what `add` leaves behind: per
        stream, fewer than a window of its newest steps, oldest first."""
        if pending.ndim != 1 or pending.dtype != np.int64:
            raise ValueError(
                f"replay state pending must be 1-D int64, got shape {pending.shape} and dtype "
                f"{pending.dtype}"
            )
        cap = self.capacity_per_env
        if len(pending) and (pending.min() < 0 or pending.max() >= self.capacity):
            raise ValueError("replay state pending slots are outside the storage")
        env, slot = np.divmod(pending, cap)
        if (np.diff(env) < 0).any():
            raise ValueError("replay state pending slots must be grouped by stream, in order")
        pending_by_env = []
        for e in range(self.num_envs):
            slots = slot[env == e]
            count = len(slots)
            if count >= self._window or count > size:
                raise ValueError(
                    f"replay state pending must hold fewer than {self._window} entries per "
                    f"stream, all stored, got {count} for stream {e}"
                )
            newest = (write_pos - count + np.arange(count)) % cap
            if not np.array_equal(slots, newest):
                raise ValueError(
                    f"replay state pending slots of stream {e} must be its newest {count} steps, "
                    "oldest first"
                )
            pending_by_env.append([int(s) + e * cap for s in slots])
        return pending_by_env


def mixed_split(batch_size: int, share: float) -> int:
    """How many rows of a batch of `batch_size` a mixed sample draws from its second buffer:
    share * batch_size rounded to the nearest integer, halves up (so 0 and 1 give none and all,
    and a small share of a small batch can round to none)."""
    if int(batch_size) != batch_size or batch_size < 0:
        raise ValueError(f"batch_size must be an integer >= 0, got {batch_size!r}")
    if not 0.0 <= share <= 1.0:
        raise ValueError(
            f"share must be in [0, 1] (the second buffer's part of a batch), got {share!r}"
        )
    return min(int(np.floor(share * batch_size + 0.5)), int(batch_size))


class MixedReplay:
    """Batches drawn in a fixed proportion from two host buffers: `share` of every batch from
    `second` (demonstrations, say), the rest from `main`.

    Of a batch of B rows the last k = `mixed_split(B, share)` come from `second` and the first
    B - k from `main`, drawn in that order with the one `rng`, so a batch is a deterministic
    function of the rng's state. Each part is its own buffer's sample: `Batch.indices` are that
    buffer's flat slots, and in a prioritised buffer the importance weights are normalised
    within its part. `update_priorities` sends each part's |TD| back to its own buffer by the
    same split. A part with rows to draw from a buffer that holds nothing sampleable raises
    (there is no fallback to the other buffer, so a missing demonstration set is never silently
    replaced by the agent's own data). To tell the sources apart inside an update, declare an
    extra field (e.g. a `demo` flag) in both buffers.
    """

    def __init__(self, main: ReplayBuffer, second: ReplayBuffer, share: float) -> None:
        mixed_split(1, share)  # checks the share
        layout = {
            "obs_shape": lambda b: b.obs_shape,
            "action_shape": lambda b: b.action_shape,
            "action dtype": lambda b: b._action.dtype,
            "action_horizon": lambda b: b.action_horizon,
            "extra_fields": lambda b: b.extra_fields,
        }
        for name, get in layout.items():
            if get(main) != get(second):
                raise ValueError(
                    f"the two buffers' batches must have the same layout, but {name} is "
                    f"{get(main)!r} in main and {get(second)!r} in second"
                )
        self.main = main
        self.second = second
        self.share = float(share)

    def __len__(self) -> int:
        """Transitions that can be sampled now, both buffers together."""
        return len(self.main) + len(self.second)

    @property
    def prioritized(self) -> bool:
        """Whether either buffer has priorities to update."""
        return self.main.prioritized or self.second.prioritized

    def split(self, batch_size: int) -> int:
        """Rows of a batch of `batch_size` drawn from `second` (the batch's last ones)."""
        return mixed_split(batch_size, self.share)

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        """A batch of `batch_size` rows: the first from `main`, the last `split(batch_size)`
        from `second`."""
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        k = self.split(batch_size)
        parts = []
        for buffer, rows, name in ((self.main, batch_size - k, "main"), (self.second, k, "second")):
            if rows == 0:
                continue
            if len(buffer) == 0:
                raise ValueError(
                    f"cannot draw {rows} of {batch_size} rows from the {name} buffer: it holds "
                    f"0 sampleable transitions (fill it, e.g. with extend, or change the share)"
                )
            parts.append(buffer.sample(rows, rng))
        if len(parts) == 1:
            return parts[0]
        a, b = parts
        return Batch(
            *(np.concatenate([x, y]) for x, y in zip(a, b, strict=True)),
            extras={name: np.concatenate([a.extras[name], b.extras[name]]) for name in a.extras},
        )

    def update_priorities(self, indices: np.ndarray, td_abs: np.ndarray) -> None:
        """Send a mixed batch's |TD| back: the first rows to `main`, the last
        `split(len(indices))` to `second` (each a no-op if that buffer is uniform)."""
        idx, td = np.asarray(indices), np.asarray(td_abs)
        if idx.ndim != 1 or idx.shape != td.shape:
            raise ValueError(
                f"indices and td_abs must be 1-D of the same length, got {idx.shape} and {td.shape}"
            )
        cut = len(idx) - self.split(len(idx))
        self.main.update_priorities(idx[:cut], td[:cut])
        self.second.update_priorities(idx[cut:], td[cut:])


def stored_steps(state: Mapping[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """The steps a `ReplayBuffer.state_dict` holds, stream by stream, each stream's oldest step
    first (the ring unrolled from the write position): obs, action, reward, next_obs, terminated
    and truncated, each [steps, ...], in the dtypes stored. The buffer keeps an episode end and
    a termination per step, so `truncated` is an end that is not a termination (a step both
    terminated and truncated reads as terminated). The state is read as data, from a checkpoint
    say: a ValueError unless its arrays are laid out as `state_dict` writes them."""
    columns = ("obs", "action", "reward", "next_obs", "terminated", "episode_end")
    missing = [k for k in (*columns, "capacity", "size", "write_pos") if k not in state]
    if missing:
        raise ValueError(f"replay state lacks {', '.join(missing)}")

    def count(key: str) -> int:
        value = np.asarray(state[key])
        if value.shape != () or value.dtype.kind not in "iu":
            raise ValueError(
                f"replay state {key!r} must be an integer scalar, got {value.dtype}"
                f"{list(value.shape)}"
            )
        return int(value)

    streams = "num_envs" in state  # a single-stream state has no stream axis
    num_envs = count("num_envs") if streams else 1
    capacity, size, write_pos = count("capacity"), count("size"), count("write_pos")
    if num_envs < 1 or capacity < num_envs or capacity % num_envs:
        raise ValueError(f"replay state capacity {capacity} does not fit {num_envs} streams")
    cap = capacity // num_envs
    if not (0 <= size <= cap and 0 <= write_pos < cap and (size == cap or write_pos == size)):
        raise ValueError(
            f"replay state size {size} and write_pos {write_pos} do not fit {cap} slots a stream"
        )
    arrays = {}
    for key in columns:
        value = np.asarray(state[key])
        value = value if streams else value[None]
        if value.ndim < 2 or value.shape[:2] != (num_envs, size) or value.dtype.hasobject:
            raise ValueError(
                f"replay state {key!r} has shape {value.shape}, expected ({num_envs}, {size}, ...)"
            )
        arrays[key] = value
    for key in ("terminated", "episode_end"):
        if arrays[key].dtype != bool or arrays[key].ndim != 2:
            raise ValueError(f"replay state {key!r} must be one bool per step")
    if arrays["reward"].ndim != 2 or arrays["obs"].shape != arrays["next_obs"].shape:
        raise ValueError("replay state reward or next_obs does not match the steps stored")
    if (arrays["terminated"] & ~arrays["episode_end"]).any():
        raise ValueError("replay state has a terminated step that does not end its episode")
    order = (write_pos - size + np.arange(size)) % cap  # oldest first
    out = []
    for e in range(num_envs):
        steps = {key: arrays[key][e, order] for key in columns}
        end = steps.pop("episode_end")
        steps["truncated"] = end & ~steps["terminated"]
        out.append(steps)
    return out


def _cast_field(name: str, value: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """A dataset field as `dtype`, refusing values `add`'s cast would silently change in kind
    (floats into integers, say); boolean fields also take numbers that are all 0 or 1."""
    if value.dtype == dtype:
        return value
    if dtype.kind == "b" and value.dtype.kind in "iuf":
        if not np.isin(value, (0, 1)).all():
            raise ValueError(f"dataset {name!r} must be bool or hold only 0 and 1")
        return value.astype(bool)
    if value.dtype.kind not in "biuf" or not np.can_cast(value.dtype, dtype, "same_kind"):
        raise ValueError(
            f"dataset {name!r} has dtype {value.dtype}, which does not convert to the stored "
            f"{dtype}; convert it first"
        )
    return value


def _checked_extra_fields(
    fields: Mapping[str, tuple[tuple[int, ...], DTypeLike]],
) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Extra fields as name -> (shape, dtype), refusing names `add` cannot take as keywords and
    dtypes a checkpoint cannot hold without pickle."""
    checked = {}
    for name, spec in fields.items():
        if not isinstance(name, str) or not name.isidentifier() or name in _RESERVED:
            raise ValueError(
                f"extra field name {name!r} must be a Python identifier other than "
                f"{sorted(_RESERVED)}"
            )
        try:
            shape, dtype = spec
            shape, dtype = tuple(int(d) for d in shape), np.dtype(dtype)
        except (TypeError, ValueError) as e:
            raise ValueError(f"extra field {name!r} must be given as (shape, dtype): {e}") from e
        if any(d < 0 for d in shape):
            raise ValueError(f"extra field {name!r} has a negative dimension: {shape}")
        if dtype.hasobject:
            raise ValueError(f"extra field {name!r} cannot hold Python objects ({dtype})")
        checked[name] = (shape, dtype)
    return checked
