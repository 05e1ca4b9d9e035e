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
        low = np.asarray(self.low, dtype=np.float32).reshape(-1)
        high = np.asarray(self.high, dtype=np.float32).reshape(-1)
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
        if not isinstance(self.bins, int | np.integer) or self.bins < 2:
            raise ValueError(f"bins must be an integer >= 2 (2 = bang-bang), got {self.bins!r}")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)
        object.__setattr__(self, "bins", int(self.bins))
        grid = np.linspace(low, high, self.bins, axis=-1, dtype=np.float32)  # [M, B]
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
