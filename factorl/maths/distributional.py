"""Categorical (C51) value distributions as pure functions (Bellemare et al. 2017)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def support(v_min: float, v_max: float, num_atoms: int) -> jax.Array:
    """The fixed atoms z_i, evenly spaced on [v_min, v_max]."""
    return jnp.linspace(v_min, v_max, num_atoms)


def expected_value(logits: jax.Array, atoms: jax.Array) -> jax.Array:
    """E[Z] for logits [..., A] over atoms [A] -> [...]."""
    return jnp.sum(jax.nn.softmax(logits, axis=-1) * atoms, axis=-1)


def select_distribution(logits: jax.Array, choice: jax.Array) -> jax.Array:
    """The logits of the chosen bin: logits [..., B, A], choice [...] int -> [..., A]."""
    return jnp.take_along_axis(logits, choice[..., None, None], axis=-2)[..., 0, :]


def categorical_projection(
    next_probs: jax.Array, reward: jax.Array, discount: jax.Array, atoms: jax.Array
) -> jax.Array:
    """Project the distribution of r + discount * Z(s') back onto the fixed atoms.

    next_probs: [..., A] probabilities at s'; reward, discount: broadcastable to [...].
    Each shifted atom Tz_j = clip(r + discount z_j) splits its mass between its two neighbouring
    atoms in proportion to closeness. Returns target probabilities [..., A] (no gradient).
    """
    v_min, v_max = atoms[0], atoms[-1]
    delta = (v_max - v_min) / (atoms.shape[0] - 1)
    tz = jnp.clip(reward[..., None] + discount[..., None] * atoms, v_min, v_max)  # [..., A]
    position = (tz - v_min) / delta  # fractional index of each shifted atom
    # weight of shifted atom j on atom i: max(0, 1 - |position_j - i|)
    weights = jnp.clip(
        1.0 - jnp.abs(position[..., None, :] - jnp.arange(atoms.shape[0])[:, None]), 0.0
    )
    return jax.lax.stop_gradient(jnp.sum(weights * next_probs[..., None, :], axis=-1))
