"""TD targets and losses as pure functions of arrays (no networks inside), so they can be unit
tested on hand-worked numbers and reused by every agent.

Conventions: `reward` is the n-step discounted return R^(n) and `discount` is
gamma^m (1 - terminated) as produced by the replay buffer, so a target is always
`reward + discount * bootstrap`. Targets that mix take `mix`, a mixer with its parameters and
global state bound (`factorl.maths.mixers.bind`): a function of the chosen utilities alone.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from factorl.maths.distributional import categorical_projection, select_distribution
from factorl.maths.mixers import greedy, mean_mixer, select


def bootstrap(reward: jax.Array, discount: jax.Array, next_value: jax.Array) -> jax.Array:
    """y = R^(n) + gamma^m (1 - terminated) * V(s')."""
    return reward + discount * next_value


def per_utility_target(
    next_utilities: jax.Array, next_choice: jax.Array, reward: jax.Array, discount: jax.Array
) -> jax.Array:
    """CQN's target: every utility gets the full TD target on its own, with no mixing.

    y_u = R^(n) + gamma^m (1 - terminated) Ubar_u(s', b'_u) for each utility u (a level and a
    dimension, and for CQN-AS a sequence step), where b' is the path the caller chose at s' (the
    online network's greedy zoom) and `next_utilities` are the target network's outputs along it.
    next_utilities [batch, ..., B], next_choice [batch, ...] int, reward and discount [batch]
    -> [batch, ...].
    """
    next_value = select(next_utilities, next_choice)
    reward, discount = _per_sample(reward, next_choice), _per_sample(discount, next_choice)
    return bootstrap(reward, discount, next_value)


def per_utility_categorical_target(
    next_logits: jax.Array,
    next_choice: jax.Array,
    reward: jax.Array,
    discount: jax.Array,
    atoms: jax.Array,
) -> jax.Array:
    """The C51 form of `per_utility_target`: each utility's own target distribution.

    For each utility u, the distribution of R^(n) + gamma^m (1 - terminated) Zbar_u(s', b'_u)
    projected onto the fixed atoms. next_logits [batch, ..., B, A] (target network), next_choice
    [batch, ...] int, reward and discount [batch], atoms [A] -> probabilities [batch, ..., A].
    """
    chosen = select_distribution(next_logits, next_choice)
    reward, discount = _per_sample(reward, next_choice), _per_sample(discount, next_choice)
    return categorical_projection(jax.nn.softmax(chosen, axis=-1), reward, discount, atoms)


def _per_sample(x: jax.Array, like: jax.Array) -> jax.Array:
    """[batch] -> [batch, 1, ...] with as many axes as `like`, to broadcast over the utilities."""
    return x.reshape((-1,) + (1,) * (like.ndim - 1))


def double_q_ensemble_target(
    online_next: jax.Array,
    target_next: jax.Array,
    reward: jax.Array,
    discount: jax.Array,
    mix: Callable[[jax.Array], jax.Array] = mean_mixer,
) -> jax.Array:
    """DecQN's target for each of K online critics (reference: tseyde/decqn).

    online_next, target_next: utilities at s' of shape [K, batch, M, B].
    For critic k the greedy sub-actions come from ONLINE critic k, and are evaluated on the mean of
    the K TARGET critics: y^k = R + disc * mix_j( mean_k' Ubar^k'_j(s', argmax_b U^k_j(s', b)) ).
    Returns [K, batch]. The result carries no gradient.
    """
    next_actions = greedy(online_next)  # [K, batch, M]
    target_mean = jnp.mean(target_next, axis=0)  # [batch, M, B]
    evaluated = select(jnp.broadcast_to(target_mean, online_next.shape), next_actions)
    y = bootstrap(reward[None], discount[None], mix(evaluated))
    return jax.lax.stop_gradient(y)


def huber(x: jax.Array, delta: float = 1.0) -> jax.Array:
    """Elementwise Huber loss: x^2/2 inside [-delta, delta], linear outside."""
    abs_x = jnp.abs(x)
    quadratic = jnp.minimum(abs_x, delta)
    return 0.5 * quadratic**2 + delta * (abs_x - quadratic)


# ------------------------------------------------------------------------------ REValueD ensembles
# Utilities at s' come stacked over K ensemble members: [K, batch, M, B].


def ensemble_mean_target(
    target_next: jax.Array,
    reward: jax.Array,
    discount: jax.Array,
    mix: Callable[[jax.Array], jax.Array] = mean_mixer,
) -> jax.Array:
    """REValueD's default ("Mean") target, shared by every member (reference code's default).

    target_next: TARGET utilities at s', [K, batch, M, B]. The K members are averaged per
    (dimension, bin) first, then maximised per dimension, then mixed:
    y = R + disc * mix_j( max_b (1/K) sum_k Ubar^k_j(s', b) ). No double-Q argmax.
    Returns [batch]. The result carries no gradient.
    """
    mean_utilities = jnp.mean(target_next, axis=0)  # [batch, M, B]
    y = bootstrap(reward, discount, mix(jnp.max(mean_utilities, axis=-1)))
    return jax.lax.stop_gradient(y)


def sample_members(key: jax.Array, ensemble_size: int, count: int) -> jax.Array:
    """`count` distinct member indices drawn uniformly from range(ensemble_size): [count] int32."""
    return jax.random.choice(key, ensemble_size, (count,), replace=False).astype(jnp.int32)


def ensemble_min_target(
    target_next: jax.Array,
    members: jax.Array,
    reward: jax.Array,
    discount: jax.Array,
    mix: Callable[[jax.Array], jax.Array] = mean_mixer,
) -> jax.Array:
    """REValueD's "REDQ" target: the minimum over a subset of members of their JOINT greedy values.

    target_next: TARGET utilities at s', [K, batch, M, B]; members: indices [N] (REDQ: two drawn
    without replacement, see `sample_members`). Each member k's own greedy joint value is
    V^k(s') = mix_j( max_b Ubar^k_j(s', b) ); the target is y = R + disc * min_{k in members} V^k.
    The min is taken on the joint value, per sample, not per dimension utility, as the reference
    code does (max over bins, mean over dimensions, then min over the sampled pair).
    Returns [batch]. The result carries no gradient.
    """
    joint = mix(jnp.max(target_next, axis=-1))  # [K, batch]
    y = bootstrap(reward, discount, jnp.min(joint[members], axis=0))
    return jax.lax.stop_gradient(y)


def independent_double_q_target(
    online_next: jax.Array,
    target_next: jax.Array,
    reward: jax.Array,
    discount: jax.Array,
    mix: Callable[[jax.Array], jax.Array] = mean_mixer,
) -> jax.Array:
    """REValueD's "DecQN" target: every member is its own double-Q DecQN learner.

    online_next, target_next: utilities at s', [K, batch, M, B]. Member k picks its greedy
    sub-actions with its ONLINE utilities and evaluates them with its OWN target network:
    y^k = R + disc * mix_j( Ubar^k_j(s', argmax_b U^k_j(s', b)) ). (Compare
    `double_q_ensemble_target`, which evaluates on the mean of the target members.)
    Returns [K, batch]. The result carries no gradient.
    """
    evaluated = select(target_next, greedy(online_next))  # [K, batch, M]
    y = bootstrap(reward[None], discount[None], mix(evaluated))
    return jax.lax.stop_gradient(y)


def td_weighted_utility_regulariser(
    chosen: jax.Array, chosen_target: jax.Array, target: jax.Array
) -> jax.Array:
    """REValueD's per-dimension regulariser, as RECONSTRUCTED from the paper (section 4).

    The official code does not contain this loss (its README leaves it as a TODO); the formula is
    the best available reading of the paper, not a copy of it:
        L_reg = (1/M) sum_j w_j (U_j(s, a_j) - Ubar_j(s, a_j))^2,
        w_j = 1 - exp(-|delta_j|),  delta_j = y - U_j(s, a_j),
    with w_j a constant (no gradient flows through it, nor through Ubar or y).
    chosen: ONLINE utilities of the taken sub-actions [..., M]; chosen_target: the TARGET
    network's utilities of the same sub-actions [..., M]; target: the TD target y [...].
    Returns the per-sample penalty [...] (the caller averages it over batch and members).
    """
    weight = jax.lax.stop_gradient(1.0 - jnp.exp(-jnp.abs(target[..., None] - chosen)))
    anchor = jax.lax.stop_gradient(chosen_target)
    return jnp.mean(weight * (chosen - anchor) ** 2, axis=-1)
