"""Auto-regressive soft advantages over a coarse-to-fine zoom (ARSQ's maths), as pure functions.

ARSQ (Liu et al., ICML 2025, arXiv 2502.00288) chooses an action the way CQN does, L levels of B
equal sub-intervals per dimension (`ActionFactorisation` with `levels=L`), but one choice at a
time, in a fixed order: position k = l * D + d is dimension d at level l (level-major), so there
are K = L * D positions. The choice at position k is conditioned on the observation and on c_k,
the midpoints of the current intervals of ALL D dimensions after the choices at positions < k
(c_0: the midpoints of the full ranges). Midpoints are given in each dimension's normalised
coordinates, where its bounds are -1 and 1 (the authors' code works on actions in [-1, 1]), so
c_0 = 0 whatever the bounds.

Each position's raw outputs u_k [B] become a soft advantage normalised by log-sum-exp at a fixed
temperature alpha, A_k(b) = u_k(b) - alpha logsumexp_b'(u_k(b') / alpha), so that
sum_b exp(A_k(b) / alpha) = 1: exp(A_k / alpha) is the policy at position k, and
Q(s, a) = V(s) + sum_k A_k(s, c_k(a), b_k(a)).

Layout: a zoom path is [..., L, D] (as `ActionFactorisation.encode` gives it); positions are
[..., K] with k = l * D + d, which is the path flattened row-major.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from factorl.maths.factorisation import ActionFactorisation


def soft_normalise(u: jax.Array, alpha: float | jax.Array) -> jax.Array:
    """A(b) = u(b) - alpha logsumexp(u / alpha) over the last axis: sum_b exp(A(b)/alpha) = 1."""
    return u - alpha * jax.nn.logsumexp(u / alpha, axis=-1, keepdims=True)


def positions(path: jax.Array) -> jax.Array:
    """Zoom path [..., L, D] -> choices in auto-regressive order [..., K], k = l * D + d."""
    return path.reshape(*path.shape[:-2], path.shape[-2] * path.shape[-1])


def unflatten_positions(choices: jax.Array, num_dims: int) -> jax.Array:
    """Choices [..., K] -> zoom path [..., L, D] (the inverse of `positions`)."""
    return choices.reshape(*choices.shape[:-1], choices.shape[-1] // num_dims, num_dims)


def normalise(fact: ActionFactorisation, x: jax.Array) -> jax.Array:
    """Points [..., D] in action units -> each dimension's normalised coordinate ([low, high]
    -> [-1, 1])."""
    low, high = jnp.asarray(fact.low), jnp.asarray(fact.high)
    return (2.0 * x - (low + high)) / (high - low)


def interval_midpoints(fact: ActionFactorisation, low: jax.Array, high: jax.Array) -> jax.Array:
    """The conditioning vector of a partial zoom: the normalised midpoints of the current
    intervals [..., D]."""
    return normalise(fact, fact.centre(low, high))


def conditioning(fact: ActionFactorisation, path: jax.Array) -> jax.Array:
    """Teacher forcing: c_k for every position along a zoom path, [..., L, D] -> [..., K, D].

    c_{l*D+d} holds, for dimensions d' < d, the midpoint after level l's choice, and for
    dimensions d' >= d the midpoint before it (after level l-1): every choice before position k
    has been applied, none after. c_0 is 0 (the midpoints of the full ranges).
    """
    path = jnp.asarray(path)
    levels, dims = path.shape[-2], path.shape[-1]
    before = fact.path_centres(path)  # [..., L, D]: centres before each level's choice
    final = fact.decode(path)[..., None, :]  # [..., 1, D]: after the last level
    after = jnp.concatenate([before[..., 1:, :], final], axis=-2)  # after each level's choice
    applied = jnp.tril(jnp.ones((dims, dims), bool), k=-1)  # [d, d']: d' < d
    centres = jnp.where(applied, after[..., :, None, :], before[..., :, None, :])  # [..., L, D, D]
    centres = centres.reshape(*path.shape[:-2], levels * dims, dims)
    return normalise(fact, centres)


def zoom_dimension(
    fact: ActionFactorisation, low: jax.Array, high: jax.Array, dim: int, idx: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Shrink only dimension `dim` of the intervals [..., D] to its bin `idx` [...]: one
    auto-regressive step."""
    new_low, new_high = fact.zoom(low, high, jnp.broadcast_to(idx[..., None], low.shape))
    mask = jnp.arange(low.shape[-1]) == dim
    return jnp.where(mask, new_low, low), jnp.where(mask, new_high, high)


def select_positions(advantages: jax.Array, choices: jax.Array) -> jax.Array:
    """A_k(b_k): advantages [..., K, B] at choices [..., K] -> [..., K]."""
    return jnp.take_along_axis(advantages, choices[..., None], axis=-1)[..., 0]


def soft_q(value: jax.Array, advantages: jax.Array, choices: jax.Array) -> jax.Array:
    """Q(s, a) = V(s) + sum_k A_k(b_k): value [...], advantages [..., K, B], choices [..., K]."""
    return value + jnp.sum(select_positions(advantages, choices), axis=-1)


def min_value_target(reward: jax.Array, discount: jax.Array, next_values: jax.Array) -> jax.Array:
    """ARSQ's target, y = R^(n) + gamma^m (1 - terminated) min_i Vbar_i(s').

    next_values: the target V networks at s', [critics, batch]; reward and discount [batch] as
    the replay gives them (a truncation keeps its discount, so it bootstraps). No next action is
    enumerated: V is the soft maximum. The result carries no gradient.
    """
    return jax.lax.stop_gradient(reward + discount * jnp.min(next_values, axis=0))


# ------------------------------------------------------------------------- demonstration terms
# On the normalised advantages of a demonstrated (data) action b_e, per position; summed over
# positions by the caller. A clip bound of None leaves that side open.


def _clip(x: jax.Array, low: float | None, high: float | None) -> jax.Array:
    return jnp.clip(x, low, high) if (low is not None or high is not None) else x


def _others(advantages: jax.Array, choice: jax.Array) -> jax.Array:
    """Mask [..., B] of the bins other than the chosen one."""
    return jnp.arange(advantages.shape[-1]) != choice[..., None]


def margin_demo_loss(
    advantages: jax.Array,
    choice: jax.Array,
    clip_min: float | None = None,
    clip_max: float | None = None,
) -> jax.Array:
    """mean_{b != b_e} clip(A(b) - A(b_e), clip_min, clip_max): advantages [..., B], demonstrated
    choice [...] -> [...]. With clip_min = -m this is zero-gradient once the demonstrated bin
    leads every other by the margin m (the paper's max(A(b) - A(b_e), C_m))."""
    chosen = select_positions(advantages, choice)[..., None]
    diff = _clip(advantages - chosen, clip_min, clip_max)
    others = _others(advantages, choice)
    return jnp.sum(jnp.where(others, diff, 0.0), axis=-1) / (advantages.shape[-1] - 1)


def cql_demo_loss(
    advantages: jax.Array,
    choice: jax.Array,
    temperature: float = 1.0,
    clip_min: float | None = None,
    clip_max: float | None = None,
) -> jax.Array:
    """clip(tau logsumexp_{b != b_e}(A(b) / tau) - A(b_e), clip_min, clip_max): the code's "cql"
    form, a soft maximum over the other bins against the demonstrated one. advantages [..., B],
    choice [...] -> [...]."""
    chosen = select_positions(advantages, choice)
    others = jnp.where(_others(advantages, choice), advantages / temperature, -jnp.inf)
    soft_max = temperature * jax.nn.logsumexp(others, axis=-1)
    return _clip(soft_max - chosen, clip_min, clip_max)


def demo_average(per_sample: jax.Array, demo: jax.Array, over: str) -> jax.Array:
    """Average a per-sample demo term [batch] over the demo-flagged samples (`over="demos"`, the
    D4RL code; 0 when there are none) or over the whole batch, non-demos counting 0
    (`over="batch"`, the RLBench code)."""
    flags = demo.astype(per_sample.dtype)
    total = jnp.sum(flags * per_sample)
    if over == "batch":
        return total / per_sample.shape[0]
    return total / jnp.maximum(jnp.sum(flags), 1.0)
