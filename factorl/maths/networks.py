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


class UtilityEnsemble:
    """K independent utility critics over a discretised action space: the value-decomposition
    head DecQN (K = 2) and REValueD (K = 10) share. `self(params, obs)` gives U^k_j(s, b) of
    shape [K, ..., M, B]; `member(params, k, obs)` evaluates member k alone."""

    def __init__(self, action_space, bins: int, width: int, size: int) -> None:
        from factorl.maths.factorisation import ActionFactorisation

        self.factorisation = ActionFactorisation.from_space(action_space, bins)
        self.network = UtilityCritic(self.factorisation.num_dims, bins, width)
        self.size = size

    def init(self, key: jax.Array, obs_shape: tuple[int, ...]):
        """Stacked parameters of `size` independently initialised members."""
        dummy = jnp.zeros((1, *obs_shape), jnp.float32)
        return init_ensemble(self.network, key, self.size, dummy)

    def __call__(self, params, obs: jax.Array) -> jax.Array:
        return stack_apply(self.network, params, obs)

    def member(self, params, k: jax.Array, obs: jax.Array) -> jax.Array:
        """Utilities [..., M, B] of member k only (1/K of the ensemble's cost)."""
        return self.network.apply(jax.tree_util.tree_map(lambda x: x[k], params), obs)


# ------------------------------------------------------------------------- actor-critic modules
# The continuous baselines (SAC, TD3) work in a normalised action space [-1, 1]^M: actors output
# there and critics take actions there, and the agent maps to each dimension's own [low, high].


class MLP(nn.Module):
    """ReLU Dense layers of the given widths, then a linear output layer of `out` units."""

    hidden: tuple[int, ...]
    out: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i, width in enumerate(self.hidden):
            x = nn.relu(nn.Dense(width, name=f"hidden_{i}")(x))
        return nn.Dense(self.out, name="out")(x)


class GaussianActor(nn.Module):
    """Observation -> (mean, log_std), each [..., M], of a diagonal Gaussian before the tanh.

    log_std is clipped to [log_std_min, log_std_max]; the defaults (-20, 2) are the original SAC
    code's (haarnoja/sac, also Stable-Baselines3).
    """

    num_dims: int
    hidden: tuple[int, ...] = (256, 256)
    log_std_min: float = -20.0
    log_std_max: float = 2.0

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        out = MLP(self.hidden, 2 * self.num_dims, name="mlp")(obs)
        mean, log_std = jnp.split(out, 2, axis=-1)
        return mean, jnp.clip(log_std, self.log_std_min, self.log_std_max)


class BernoulliActor(nn.Module):
    """Observation -> logits [..., M]: log-odds of choosing each dimension's upper extreme."""

    num_dims: int
    hidden: tuple[int, ...] = (256, 256)

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        return MLP(self.hidden, self.num_dims, name="mlp")(obs)


class DeterministicActor(nn.Module):
    """Observation -> action in [-1, 1]^M through a final tanh (TD3's actor)."""

    num_dims: int
    hidden: tuple[int, ...] = (256, 256)

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        return jnp.tanh(MLP(self.hidden, self.num_dims, name="mlp")(obs))


class StateActionCritic(nn.Module):
    """(observation [..., D], normalised action [..., M]) -> Q value [...].

    Leading axes of the two inputs must match; ensembles come from `init_ensemble`/`stack_apply`.
    """

    hidden: tuple[int, ...] = (256, 256)

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        x = jnp.concatenate([obs, action.astype(obs.dtype)], axis=-1)
        return MLP(self.hidden, 1, name="mlp")(x)[..., 0]
