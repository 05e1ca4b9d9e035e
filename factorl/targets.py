"""TD targets and losses as pure functions of arrays (no networks inside), so they can be unit
tested on hand-worked numbers and reused by every agent.

Conventions: `reward` is the n-step discounted return R^(n) and `discount` is
gamma^m (1 - terminated) as produced by the replay buffer, so a target is always
`reward + discount * bootstrap`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from factorl.mixers import greedy, mean_mixer, select


def bootstrap(reward: jax.Array, discount: jax.Array, next_value: jax.Array) -> jax.Array:
    """y = R^(n) + gamma^m (1 - terminated) * V(s')."""
    return reward + discount * next_value


def double_q_ensemble_target(
    online_next: jax.Array,
    target_next: jax.Array,
    reward: jax.Array,
    discount: jax.Array,
    mixer: Callable[[jax.Array], jax.Array] = mean_mixer,
) -> jax.Array:
    """DecQN's target for each of K online critics (reference: tseyde/decqn).

    online_next, target_next: utilities at s' of shape [K, batch, M, B].
    For critic k the greedy sub-actions come from ONLINE critic k, and are evaluated on the mean of
    the K TARGET critics: y^k = R + disc * mixer_j( mean_k' Ubar^k'_j(s', argmax_b U^k_j(s', b)) ).
    Returns [K, batch]. The result carries no gradient.
    """
    next_actions = greedy(online_next)  # [K, batch, M]
    target_mean = jnp.mean(target_next, axis=0)  # [batch, M, B]
    evaluated = select(jnp.broadcast_to(target_mean, online_next.shape), next_actions)
    y = bootstrap(reward[None], discount[None], mixer(evaluated))
    return jax.lax.stop_gradient(y)


def huber(x: jax.Array, delta: float = 1.0) -> jax.Array:
    """Elementwise Huber loss: x^2/2 inside [-delta, delta], linear outside."""
    abs_x = jnp.abs(x)
    quadratic = jnp.minimum(abs_x, delta)
    return 0.5 * quadratic**2 + delta * (abs_x - quadratic)
