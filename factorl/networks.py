"""Networks shared by the factorised value agents.

Critics map an observation to per-factor utilities U(s) of shape [M, B]: one row of B bin values per
action dimension. Ensembles (DecQN's two critics, REValueD's K) are independent networks whose
parameters are stacked on a leading axis and evaluated with `jax.vmap`: K networks, not K heads.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class ResidualTorso(nn.Module):
    """DecQN's state torso: Linear -> residual block with LayerNorm -> ELU.

    h = Dense(s); h = LayerNorm(h + Dense(ReLU(Dense(h)))); return ELU(h).
    """

    width: int = 512

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        h = nn.Dense(self.width, name="input")(obs)
        residual = nn.Dense(self.width, name="block_1")(h)
        residual = nn.Dense(self.width, name="block_2")(nn.relu(residual))
        h = nn.LayerNorm(name="norm")(h + residual)
        return nn.elu(h)


class UtilityCritic(nn.Module):
    """Observation -> utilities [..., M, B] (DecQN's per-dimension Q-values)."""

    num_dims: int
    bins: int
    width: int = 512

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        h = ResidualTorso(self.width, name="torso")(obs)
        out = nn.Dense(self.num_dims * self.bins, name="head")(h)
        return out.reshape(*out.shape[:-1], self.num_dims, self.bins)


def init_ensemble(module: nn.Module, key: jax.Array, size: int, *example_inputs: jax.Array):
    """Initialise `size` independent copies of `module` (different keys), stacked on axis 0."""
    keys = jax.random.split(key, size)
    return jax.vmap(lambda k: module.init(k, *example_inputs))(keys)


def stack_apply(module: nn.Module, params, *inputs: jax.Array) -> jax.Array:
    """Evaluate every member of a stacked ensemble on the same inputs: [K, ...]."""
    return jax.vmap(lambda p: module.apply(p, *inputs))(params)


def param_count(params) -> int:
    """Number of scalar parameters in a pytree."""
    return int(sum(jnp.size(x) for x in jax.tree_util.tree_leaves(params)))
