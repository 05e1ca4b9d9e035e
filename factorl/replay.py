"""Host-side NumPy replay: a circular buffer of single steps with n-step returns and
(optionally) proportional prioritised sampling through a sum tree.

Steps are stored contiguously in time order; n-step returns are assembled at sample time by
walking forward from the sampled slot. Keeping steps contiguous also makes it cheap to return
the actions executed after a sampled step later on (walk the same slots, pad past the episode
end with the last action).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
from numpy.typing import DTypeLike

__all__ = ["Batch", "ReplayBuffer", "SumTree"]


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


class Batch(NamedTuple):
    """A sampled batch of n-step transitions."""

    obs: np.ndarray  # [B, *obs_shape] float32
    action: np.ndarray  # [B, *action_shape], dtype as stored
    reward: np.ndarray  # [B] float32, n-step discounted return
    discount: np.ndarray  # [B] float32, gamma^m * (1 - terminated): factor on the bootstrap value
    next_obs: np.ndarray  # [B, *obs_shape] float32, observation to bootstrap from
    weights: np.ndarray  # [B] float32 importance-sampling weights (all 1 when uniform)
    indices: np.ndarray  # [B] int64 slots, for update_priorities


# Pending tree writes are applied in one vectorised update; flush early past this many so a long
# stretch of adds without sampling does not grow the lists without bound.
_MAX_DIRTY = 4096

_CONFIG_KEYS = (
    "capacity",
    "obs_shape",
    "action_shape",
    "n_step",
    "action_horizon",
    "gamma",
    "prioritized",
    "alpha",
    "priority_eps",
)
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


class ReplayBuffer:
    """Circular buffer of single environment steps with n-step returns built at sample time.

    Call `add` once per environment step, in time order, and mark the last step of every episode
    with `terminated` or `truncated`. A step becomes sampleable once its n-step window is
    complete (n steps stored from it, or its episode ended within them). Bootstrapping goes
    through truncation but never through termination.

    With `action_horizon` K > 1 (action-sequence critics, CQN-AS), `sample` returns as `action`
    the K actions actually executed from t, shape [B, K, *action_shape], padded with the episode's
    last action past its end; a step then becomes sampleable once max(n, K) steps are stored
    from it (or its episode ended), so the sequence is never cut short by the write head.
    """

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
    ) -> None:
        if int(capacity) != capacity or capacity < 1:
            raise ValueError(f"capacity must be an integer >= 1, got {capacity!r}")
        if int(n_step) != n_step or n_step < 1:
            raise ValueError(f"n_step must be an integer >= 1, got {n_step!r}")
        if int(action_horizon) != action_horizon or action_horizon < 1:
            raise ValueError(f"action_horizon must be an integer >= 1, got {action_horizon!r}")
        if capacity < max(n_step, action_horizon):
            raise ValueError(
                f"capacity must be >= n_step ({n_step}) and action_horizon ({action_horizon}) so "
                f"a window fits, got {capacity}"
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
        self.obs_shape = tuple(int(d) for d in obs_shape)
        self.action_shape = tuple(int(d) for d in action_shape)
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

        cap = self.capacity
        self._check_memory(np.dtype(action_dtype).itemsize)
        self._obs = np.zeros((cap, *self.obs_shape), dtype=np.float32)
        self._action = np.zeros((cap, *self.action_shape), dtype=action_dtype)
        self._reward = np.zeros(cap, dtype=np.float32)
        self._next_obs = np.zeros((cap, *self.obs_shape), dtype=np.float32)
        self._terminated = np.zeros(cap, dtype=bool)
        self._episode_end = np.zeros(cap, dtype=bool)
        self._active = np.zeros(cap, dtype=bool)
        self._tree = SumTree(cap)
        self._gamma_pows = self.gamma ** np.arange(self.n_step + 1, dtype=np.float64)
        self._reset_counters()

    def _check_memory(self, action_itemsize: int) -> None:
        """Refuse a buffer larger than the memory available, before allocating it: NumPy's
        zeroed arrays are only backed by memory as they fill, so an oversized buffer would
        otherwise fail hours into a run, or take the machine down with it."""
        from factorl.system import available_memory_bytes

        obs_size, action_size = int(np.prod(self.obs_shape)), int(np.prod(self.action_shape))
        per_step = 2 * 4 * obs_size + action_itemsize * action_size + 4 + 3  # + reward, flags
        tree = 16 * (1 << (self.capacity - 1).bit_length())  # SumTree: 2 x next power of two
        needed = self.capacity * per_step + tree
        available = available_memory_bytes()
        if available is not None and needed > available:
            fits = max(int(available / (per_step + 32)), 0)
            raise ValueError(
                f"a replay buffer of capacity {self.capacity:,} needs {needed / 2**30:.1f} GiB "
                f"but {available / 2**30:.1f} GiB of memory is available; at most about {fits:,} "
                "transitions fit"
            )

    def _reset_counters(self) -> None:
        self._write_pos = 0
        self._size = 0
        self._num_active = 0
        self._pending: list[int] = []  # current episode's slots whose window is incomplete
        self._dirty_idx: list[int] = []  # tree writes not yet applied, in order
        self._dirty_val: list[float] = []
        self._max_priority = 1.0
        self._activation_value = self._leaf_for_new()

    def _leaf_for_new(self) -> float:
        return self._max_priority**self.alpha if self.prioritized else 1.0

    def __len__(self) -> int:
        """Number of transitions that can be sampled now."""
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
        reward: float,
        next_obs: np.ndarray,
        terminated: bool,
        truncated: bool,
    ) -> None:
        """Store one environment step (obs, action) -> (reward, next_obs, terminated, truncated)."""
        if np.shape(obs) != self.obs_shape or np.shape(next_obs) != self.obs_shape:
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

        pending = self._pending
        pending.append(pos)
        if ended:
            for slot in pending:
                self._activate(slot)
            pending.clear()
        elif len(pending) == self._window:
            # The oldest pending step now has its whole window stored after it.
            self._activate(pending.pop(0))

        pos += 1
        self._write_pos = 0 if pos == self.capacity else pos
        if self._size < self.capacity:
            self._size += 1
        if len(self._dirty_idx) > _MAX_DIRTY:
            self._flush()

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        """Draw `batch_size` transitions with replacement (proportionally to priority if
        prioritised, else uniformly), using only `rng` for randomness."""
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

        # Walk forward through the same episode, stopping after the first episode end and never
        # past the newest written step.
        newest = self._write_pos - 1 if self._write_pos > 0 else self.capacity - 1
        ret = np.zeros(idx.shape, dtype=np.float64)
        last = idx
        steps = np.zeros(idx.shape, dtype=np.int64)
        alive = np.ones(idx.shape, dtype=bool)
        slot = idx
        for k in range(self.n_step):
            if k > 0:
                slot = idx + k
                slot[slot >= self.capacity] -= self.capacity
                last = np.where(alive, slot, last)
            ret += np.where(alive, self._gamma_pows[k] * self._reward[slot], 0.0)
            steps += alive
            alive &= ~self._episode_end[slot] & (slot != newest)
            if not alive.any():
                break
        discount = self._gamma_pows[steps] * (1.0 - self._terminated[last])

        return Batch(
            obs=self._obs[idx],
            action=self._action[idx] if self.action_horizon == 1 else self._sequences(idx),
            reward=ret.astype(np.float32),
            discount=discount.astype(np.float32),
            next_obs=self._next_obs[last],
            weights=weights,
            indices=idx,
        )

    def _uniform_slots(self, u: np.ndarray) -> np.ndarray | None:
        """The slots `SumTree.find(u * total)` returns when every leaf is 1 (active) or 0, without
        the tree: the floor(u * total)-th active slot in slot order, for each u.

        Sums of 0/1 leaves are exact integers in float64 and subtracting them from v is exact, so
        the tree's descent computes exactly this; here it takes a few vectorised operations
        instead of two passes over the tree's depth (about 0.2 ms per batch at capacity 1M). The
        inactive slots are the pending ones (windows still incomplete) and, until the buffer is
        full, the unwritten tail, which no k < total reaches. Returns None if the buffer is not
        in that layout, and the caller takes the tree path.
        """
        holes = sorted(self._pending)
        n = self._num_active
        if len(holes) != self._size - n or self._active[holes].any():
            return None
        k = np.floor(u * float(n)).astype(np.int64)  # the same product the tree path forms
        np.minimum(k, n - 1, out=k)  # u * n can round up to n; the tree clamps to the last leaf
        for hole in holes:  # ascending: step over each inactive slot at or below k
            k += k >= hole
        return k

    def _sequences(self, idx: np.ndarray) -> np.ndarray:
        """The action_horizon actions executed from each slot, padded with the episode's last."""
        seq = np.empty((len(idx), self.action_horizon, *self.action_shape), self._action.dtype)
        slot, alive = idx.copy(), np.ones(idx.shape, dtype=bool)
        for k in range(self.action_horizon):
            if k > 0:
                step = slot + 1
                step[step >= self.capacity] -= self.capacity
                slot = np.where(alive, step, slot)  # past the episode end: keep the last slot
            seq[:, k] = self._action[slot]
            alive &= ~self._episode_end[slot]
        return seq

    def update_priorities(self, indices: np.ndarray, td_abs: np.ndarray) -> None:
        """Set priorities of sampled slots from absolute TD errors: leaf = (td + eps) ** alpha.

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

    def state_dict(self) -> dict[str, np.ndarray]:
        """Configuration and filled storage as plain NumPy arrays (safe for `np.savez`)."""
        self._flush()
        n = self._size
        return {
            "capacity": np.asarray(self.capacity, dtype=np.int64),
            "obs_shape": np.asarray(self.obs_shape, dtype=np.int64),
            "action_shape": np.asarray(self.action_shape, dtype=np.int64),
            "n_step": np.asarray(self.n_step, dtype=np.int64),
            "action_horizon": np.asarray(self.action_horizon, dtype=np.int64),
            "gamma": np.asarray(self.gamma, dtype=np.float64),
            "prioritized": np.asarray(self.prioritized, dtype=bool),
            "alpha": np.asarray(self.alpha, dtype=np.float64),
            "priority_eps": np.asarray(self.priority_eps, dtype=np.float64),
            "obs": self._obs[:n].copy(),
            "action": self._action[:n].copy(),
            "reward": self._reward[:n].copy(),
            "next_obs": self._next_obs[:n].copy(),
            "terminated": self._terminated[:n].copy(),
            "episode_end": self._episode_end[:n].copy(),
            "active": self._active[:n].copy(),
            "leaves": self._tree.leaves[:n],
            "pending": np.asarray(self._pending, dtype=np.int64),
            "write_pos": np.asarray(self._write_pos, dtype=np.int64),
            "size": np.asarray(self._size, dtype=np.int64),
            "max_priority": np.asarray(self._max_priority, dtype=np.float64),
        }

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore a `state_dict` saved from a buffer with the same configuration."""
        keys = set(state.keys())
        expected = set(_CONFIG_KEYS) | set(_DATA_KEYS)
        if keys != expected:
            raise ValueError(
                "replay state keys do not match: missing "
                f"{sorted(expected - keys)}, unexpected {sorted(keys - expected)}"
            )
        own = {
            "capacity": self.capacity,
            "obs_shape": self.obs_shape,
            "action_shape": self.action_shape,
            "n_step": self.n_step,
            "action_horizon": self.action_horizon,
            "gamma": self.gamma,
            "prioritized": self.prioritized,
            "alpha": self.alpha,
            "priority_eps": self.priority_eps,
        }
        for key, mine in own.items():
            value = np.asarray(state[key])
            theirs = tuple(value.tolist()) if value.ndim == 1 else value.tolist()
            if value.ndim > 1 or theirs != mine:
                raise ValueError(f"replay state has {key}={theirs!r} but this buffer has {mine!r}")

        size = int(state["size"])
        if not 0 <= size <= self.capacity:
            raise ValueError(f"replay state size must be in [0, {self.capacity}], got {size}")
        specs = {
            "obs": ((size, *self.obs_shape), self._obs.dtype),
            "action": ((size, *self.action_shape), self._action.dtype),
            "reward": ((size,), self._reward.dtype),
            "next_obs": ((size, *self.obs_shape), self._next_obs.dtype),
            "terminated": ((size,), np.dtype(bool)),
            "episode_end": ((size,), np.dtype(bool)),
            "active": ((size,), np.dtype(bool)),
            "leaves": ((size,), np.dtype(np.float64)),
            "pending": (None, np.dtype(np.int64)),
            "write_pos": ((), np.dtype(np.int64)),
            "size": ((), np.dtype(np.int64)),
            "max_priority": ((), np.dtype(np.float64)),
        }
        arrays = {}
        for key, (shape, dtype) in specs.items():
            value = np.asarray(state[key])
            if shape is not None and value.shape != shape:
                raise ValueError(f"replay state {key!r} has shape {value.shape}, expected {shape}")
            if value.dtype != dtype:
                raise ValueError(f"replay state {key!r} has dtype {value.dtype}, expected {dtype}")
            arrays[key] = value

        write_pos = int(arrays["write_pos"])
        if (size < self.capacity and write_pos != size) or not 0 <= write_pos < self.capacity:
            raise ValueError(f"replay state write_pos={write_pos} is inconsistent with size={size}")
        pending = arrays["pending"]
        if pending.ndim != 1 or len(pending) >= self._window:
            raise ValueError(
                f"replay state pending must be 1-D with fewer than {self._window} entries"
            )
        if len(pending) and (pending.min() < 0 or pending.max() >= size):
            raise ValueError("replay state pending slots are outside the filled storage")
        leaves, active = arrays["leaves"], arrays["active"]
        if not (np.isfinite(leaves).all() and (leaves >= 0).all() and (leaves[~active] == 0).all()):
            raise ValueError("replay state leaves must be finite, >= 0, and 0 on inactive slots")
        if not self.prioritized and not (leaves[active] == 1.0).all():
            raise ValueError("replay state leaves must be 1 on active slots in uniform mode")
        max_priority = float(arrays["max_priority"])
        if not 0 < max_priority < np.inf:
            raise ValueError(
                f"replay state max_priority must be finite and > 0, got {max_priority}"
            )

        for key, dest in (
            ("obs", self._obs),
            ("action", self._action),
            ("reward", self._reward),
            ("next_obs", self._next_obs),
            ("terminated", self._terminated),
            ("episode_end", self._episode_end),
            ("active", self._active),
        ):
            dest[:size] = arrays[key]
            dest[size:] = 0
        full_leaves = np.zeros(self.capacity, dtype=np.float64)
        full_leaves[:size] = leaves
        self._tree.set_leaves(full_leaves)
        self._write_pos = write_pos
        self._size = size
        self._num_active = int(active.sum())
        self._pending = [int(s) for s in pending]
        self._dirty_idx = []
        self._dirty_val = []
        self._max_priority = max_priority
        self._activation_value = self._leaf_for_new()
