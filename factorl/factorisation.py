"""Action factorisation: how a continuous action is split into small discrete choices.

A Box action of M dimensions, each with its own bounds [low_j, high_j], is described by a grid of B
values per dimension. The agent picks one bin index per dimension (an array of shape [..., M]) and
the factorisation turns it into the continuous action the environment receives, and back.

This module is the single place that knows about grids. Later members of the family describe more
structure with the same object: coarse-to-fine levels (CQN) and action sequences (CQN-AS) add
leading axes to the index array ([..., L, M] or [..., K, L, M]) while the per-dimension bounds stay
the same; multi-agent teams treat each agent as a dimension.

Every function here works on NumPy and JAX arrays alike (it only uses `jnp` operations that accept
both), so the same code runs on the host and inside jitted updates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax.numpy as jnp
import numpy as np


def _set_bounds(obj, bins_low: int = 2) -> None:
    """Validate and normalise `low`, `high` and `bins` of a frozen factorisation dataclass."""
    low = np.asarray(obj.low, dtype=np.float32).reshape(-1)
    high = np.asarray(obj.high, dtype=np.float32).reshape(-1)
    if low.shape != high.shape:
        raise ValueError(f"low and high differ in shape: {low.shape} vs {high.shape}")
    if low.size == 0:
        raise ValueError("the action space has no dimensions")
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        raise ValueError(
            "action bounds must be finite to be discretised; got "
            f"low={low.tolist()} high={high.tolist()}"
        )
    if np.any(high <= low):
        raise ValueError(f"every dimension needs high > low; got low={low}, high={high}")
    if not isinstance(obj.bins, int | np.integer) or obj.bins < bins_low:
        raise ValueError(f"bins must be an integer >= {bins_low}, got {obj.bins!r}")
    object.__setattr__(obj, "low", low)
    object.__setattr__(obj, "high", high)
    object.__setattr__(obj, "bins", int(obj.bins))


@dataclass(frozen=True)
class ActionFactorisation:
    """Per-dimension uniform grid of `bins` values on each dimension's own [low, high].

    The grid is `linspace(low_j, high_j, bins)` for every dimension j, as in DecQN: bins=2 is
    bang-bang control, bins=3 bang-off-bang. (The official DecQN wrapper indexes dimension 0's grid
    for every dimension; that only matters for asymmetric bounds, and we do it per dimension.)
    """

    low: np.ndarray
    high: np.ndarray
    bins: int
    grid: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _set_bounds(self)
        grid = np.linspace(self.low, self.high, self.bins, axis=-1, dtype=np.float32)  # [M, B]
        object.__setattr__(self, "grid", grid)

    @classmethod
    def from_space(cls, space, bins: int) -> ActionFactorisation:
        """Build from a `gymnasium.spaces.Box` action space."""
        return cls(low=space.low, high=space.high, bins=bins)

    @property
    def num_dims(self) -> int:
        """M, the number of action dimensions (factors)."""
        return int(self.low.shape[0])

    @property
    def num_joint_actions(self) -> int:
        """B**M, the size of the joint action set that the factorisation avoids enumerating."""
        return self.bins**self.num_dims

    def decode(self, indices):
        """Bin indices [..., M] -> continuous action [..., M] (float32)."""
        grid = jnp.asarray(self.grid)
        idx = jnp.asarray(indices)
        return jnp.take_along_axis(
            jnp.broadcast_to(grid, (*idx.shape, self.bins)), idx[..., None], axis=-1
        )[..., 0]

    def encode(self, action):
        """Continuous action [..., M] -> index of the nearest grid value on each dimension.

        Exact inverse of `decode` on grid points; other actions go to the nearest bin (ties to the
        lower bin), and values outside the bounds to the end bins.
        """
        low = jnp.asarray(self.low)
        high = jnp.asarray(self.high)
        a = jnp.asarray(action, dtype=jnp.float32)
        position = (a - low) / (high - low) * (self.bins - 1)
        return jnp.clip(jnp.round(position), 0, self.bins - 1).astype(jnp.int32)


@dataclass(frozen=True)
class CoarseToFine:
    """Coarse-to-fine zoom (CQN): `levels` successive choices of one of `bins` equal sub-intervals.

    Every dimension starts with its own [low, high]. At level l the agent picks a bin per dimension
    and the interval shrinks to that bin; the action is the centre of the last interval, so the
    finest grid has bins**levels points per dimension (the centres of the finest intervals).
    Indices have shape [..., L, M]. All intervals stay inside the bounds by construction.
    """

    low: np.ndarray
    high: np.ndarray
    bins: int
    levels: int

    def __post_init__(self) -> None:
        _set_bounds(self)
        if not isinstance(self.levels, int | np.integer) or self.levels < 1:
            raise ValueError(f"levels must be an integer >= 1, got {self.levels!r}")
        object.__setattr__(self, "levels", int(self.levels))

    @classmethod
    def from_space(cls, space, bins: int, levels: int) -> CoarseToFine:
        return cls(low=space.low, high=space.high, bins=bins, levels=levels)

    @property
    def num_dims(self) -> int:
        return int(self.low.shape[0])

    def initial_interval(self, batch_shape: tuple[int, ...] = ()):
        """(low, high) of level 0 for every dimension, broadcast to batch_shape + (M,)."""
        shape = (*batch_shape, self.num_dims)
        return (
            jnp.broadcast_to(jnp.asarray(self.low), shape),
            jnp.broadcast_to(jnp.asarray(self.high), shape),
        )

    def zoom(self, low, high, idx):
        """Shrink [low, high] to bin `idx` of `bins` equal parts (per dimension)."""
        width = (high - low) / self.bins
        new_low = low + idx.astype(low.dtype) * width
        return new_low, new_low + width

    @staticmethod
    def centre(low, high):
        return 0.5 * (low + high)

    def encode(self, action):
        """Continuous action [..., M] -> indices [..., L, M] of the zoom path containing it."""
        a = jnp.asarray(action, jnp.float32)
        low, high = self.initial_interval(a.shape[:-1])
        path = []
        for _ in range(self.levels):
            width = (high - low) / self.bins
            idx = jnp.clip(jnp.floor((a - low) / width), 0, self.bins - 1).astype(jnp.int32)
            path.append(idx)
            low, high = self.zoom(low, high, idx)
        return jnp.stack(path, axis=-2)

    def path_centres(self, indices):
        """Indices [..., L, M] -> the centres fed to each level, [..., L, M]: level 0 gets the
        centre of the full range, level l the centre of the interval chosen at level l-1."""
        idx = jnp.asarray(indices)
        low, high = self.initial_interval(idx.shape[:-2])
        centres = []
        for level in range(self.levels):
            centres.append(self.centre(low, high))
            low, high = self.zoom(low, high, idx[..., level, :])
        return jnp.stack(centres, axis=-2)

    def decode(self, indices):
        """Indices [..., L, M] -> the centre of the final interval, [..., M]."""
        idx = jnp.asarray(indices)
        low, high = self.initial_interval(idx.shape[:-2])
        for level in range(self.levels):
            low, high = self.zoom(low, high, idx[..., level, :])
        return self.centre(low, high)

    def quantise(self, action):
        """Nearest finest-grid action (the centre of the finest interval containing `action`)."""
        return self.decode(self.encode(action))
