"""Action factorisation: how a continuous action is split into small discrete choices.

A Box action of M dimensions, each with its own bounds [low_j, high_j], is chosen as one small
discrete choice per dimension, and one object, `ActionFactorisation`, describes every structure the
value family puts on those choices:

- bins (DecQN, REValueD; `levels=None`): a grid of `bins` points per dimension, ends on the
  bounds; indices [..., M];
- coarse-to-fine levels (CQN; `levels=L`): L successive choices of one of `bins` equal
  sub-intervals, the action being the centre of the last one; indices [..., L, M];
- action sequences (CQN-AS; `horizon=K`): K consecutive actions, each factorised as above;
  actions [..., K, M], indices [..., K, M] or [..., K, L, M].

It is the single place that knows about grids: it turns indices into the continuous actions the
environment receives, and stored actions back into indices. Multi-agent teams treat each agent as
a dimension. Every method works on NumPy and JAX arrays alike (it only uses `jnp` operations that
accept both), so the same code runs on the host and inside jitted updates; leading axes are batch
axes throughout.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax.numpy as jnp
import numpy as np


def _set_bounds(obj) -> None:
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
    if not isinstance(obj.bins, int | np.integer) or obj.bins < 2:
        raise ValueError(f"bins must be an integer >= 2, got {obj.bins!r}")
    object.__setattr__(obj, "low", low)
    object.__setattr__(obj, "high", high)
    object.__setattr__(obj, "bins", int(obj.bins))


def _check_count(name: str, value) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be None or an integer >= 1, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class ActionFactorisation:
    """Per-dimension discrete choices over a Box action (or a K-step sequence of Box actions).

    `levels=None` (DecQN, REValueD): a uniform grid `linspace(low_j, high_j, bins)` per dimension,
    so bins=2 is bang-bang control and bins=3 bang-off-bang. (The official DecQN wrapper indexes
    dimension 0's grid for every dimension; that only matters for asymmetric bounds, and we do it
    per dimension.)

    `levels=L` (CQN): a coarse-to-fine zoom. Every dimension starts with its own [low, high]; at
    level l the agent picks one of `bins` equal sub-intervals and the interval shrinks to it; the
    action is the centre of the last interval, so the finest grid has bins**L points per dimension
    (the centres of the finest intervals) and every interval stays inside the bounds by
    construction. L=1 is a grid of interval centres, which differs from `levels=None`'s endpoints.

    `horizon=K` (CQN-AS): the choices are made for K consecutive actions at once, so actions gain
    an axis of K before the dimensions. `horizon=None` is a single action; `horizon=1` is a
    sequence of length one (the axis is there).

    `grid` [M, P] is each dimension's action set (P = bins, or bins**levels).
    """

    low: np.ndarray
    high: np.ndarray
    bins: int
    levels: int | None = None
    horizon: int | None = None
    grid: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _set_bounds(self)
        object.__setattr__(self, "levels", _check_count("levels", self.levels))
        object.__setattr__(self, "horizon", _check_count("horizon", self.horizon))
        if self.levels is None:
            grid = np.linspace(self.low, self.high, self.bins, axis=-1, dtype=np.float32)
        else:
            points = self.bins**self.levels
            width = (self.high - self.low)[:, None] / points
            grid = self.low[:, None] + (np.arange(points, dtype=np.float32) + 0.5) * width
        object.__setattr__(self, "grid", grid.astype(np.float32))  # [M, P]

    @classmethod
    def from_space(
        cls, space, bins: int, levels: int | None = None, horizon: int | None = None
    ) -> ActionFactorisation:
        """Build from a `gymnasium.spaces.Box` action space."""
        return cls(low=space.low, high=space.high, bins=bins, levels=levels, horizon=horizon)

    @property
    def num_dims(self) -> int:
        """M, the number of action dimensions (factors)."""
        return int(self.low.shape[0])

    @property
    def sequence_shape(self) -> tuple[int, ...]:
        """(K,) for action sequences, () for single actions."""
        return () if self.horizon is None else (self.horizon,)

    @property
    def action_shape(self) -> tuple[int, ...]:
        """Shape of one (sequence of) continuous action(s): [K,] M."""
        return (*self.sequence_shape, self.num_dims)

    @property
    def index_shape(self) -> tuple[int, ...]:
        """Shape of the indices of one (sequence of) action(s): [K,] [L,] M."""
        levels = () if self.levels is None else (self.levels,)
        return (*self.sequence_shape, *levels, self.num_dims)

    @property
    def num_joint_actions(self) -> int:
        """The size of the joint action set that the factorisation avoids enumerating:
        P**(M*K), with P grid points per dimension and step."""
        steps = 1 if self.horizon is None else self.horizon
        return self.grid.shape[1] ** (self.num_dims * steps)

    def decode(self, indices):
        """Indices [..., M] (bins) or [..., L, M] (levels) -> continuous action [..., M]."""
        idx = jnp.asarray(indices)
        if self.levels is None:
            grid = jnp.asarray(self.grid)
            return jnp.take_along_axis(
                jnp.broadcast_to(grid, (*idx.shape, self.bins)), idx[..., None], axis=-1
            )[..., 0]
        low, high = self.initial_interval(idx.shape[:-2])
        for level in range(self.levels):
            low, high = self.zoom(low, high, idx[..., level, :])
        return self.centre(low, high)

    def encode(self, action):
        """Continuous action [..., M] -> indices [..., M] or [..., L, M].

        Exact inverse of `decode` on the grid. Bins: other actions go to the nearest grid point
        (ties to the lower one), values outside the bounds to the end points. Levels: the zoom path
        whose intervals contain the action (values outside the bounds to the end intervals).
        """
        a = jnp.asarray(action, jnp.float32)
        if self.levels is None:
            low, high = jnp.asarray(self.low), jnp.asarray(self.high)
            position = (a - low) / (high - low) * (self.bins - 1)
            return jnp.clip(jnp.round(position), 0, self.bins - 1).astype(jnp.int32)
        low, high = self.initial_interval(a.shape[:-1])
        path = []
        for _ in range(self.levels):
            width = (high - low) / self.bins
            idx = jnp.clip(jnp.floor((a - low) / width), 0, self.bins - 1).astype(jnp.int32)
            path.append(idx)
            low, high = self.zoom(low, high, idx)
        return jnp.stack(path, axis=-2)

    def quantise(self, action):
        """The grid action nearest to (bins) or containing (levels) `action`, [..., M]."""
        return self.decode(self.encode(action))

    # -------------------------------------------------------------- the zoom (levels only)
    def _check_levels(self, what: str) -> None:
        if self.levels is None:
            raise ValueError(f"{what} needs a coarse-to-fine factorisation (levels=L)")

    def initial_interval(self, batch_shape: tuple[int, ...] = ()):
        """(low, high) of level 0 for every dimension, broadcast to batch_shape + (M,)."""
        self._check_levels("initial_interval")
        shape = (*batch_shape, self.num_dims)
        return (
            jnp.broadcast_to(jnp.asarray(self.low), shape),
            jnp.broadcast_to(jnp.asarray(self.high), shape),
        )

    def zoom(self, low, high, idx):
        """Shrink [low, high] to bin `idx` of `bins` equal parts (per dimension)."""
        self._check_levels("zoom")
        width = (high - low) / self.bins
        new_low = low + idx.astype(low.dtype) * width
        return new_low, new_low + width

    @staticmethod
    def centre(low, high):
        """Centre of an interval: the action a (partial) zoom path stands for."""
        return 0.5 * (low + high)

    def path_centres(self, indices):
        """Indices [..., L, M] -> the centres fed to each level, [..., L, M]: level 0 gets the
        centre of the full range, level l the centre of the interval chosen at level l-1."""
        self._check_levels("path_centres")
        idx = jnp.asarray(indices)
        low, high = self.initial_interval(idx.shape[:-2])
        centres = []
        for level in range(self.levels):
            centres.append(self.centre(low, high))
            low, high = self.zoom(low, high, idx[..., level, :])
        return jnp.stack(centres, axis=-2)
