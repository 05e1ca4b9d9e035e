"""Mixers: how per-factor utilities compose into one joint value.

Utilities have shape [..., M, B] (M factors, B choices each). A mixer takes the utilities of the
chosen sub-actions, shape [..., M], and returns the joint value [...]. Mixers in this family are
monotonic in every argument, which is what makes the joint argmax decompose into per-factor
argmaxes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def select(utilities: jax.Array, indices: jax.Array) -> jax.Array:
    """Utilities [..., M, B] and indices [..., M] -> chosen utilities [..., M]."""
    return jnp.take_along_axis(utilities, indices[..., None].astype(jnp.int32), axis=-1)[..., 0]


def greedy(utilities: jax.Array) -> jax.Array:
    """Per-factor argmax: [..., M, B] -> [..., M] (int32). Ties go to the lowest index."""
    return jnp.argmax(utilities, axis=-1).astype(jnp.int32)


def mean_mixer(chosen: jax.Array) -> jax.Array:
    """DecQN: Q(s, a) = (1/M) sum_j U_j(s, a_j)."""
    return jnp.mean(chosen, axis=-1)


def sum_mixer(chosen: jax.Array) -> jax.Array:
    """VDN: Q_tot = sum_i Q_i(tau_i, u_i)."""
    return jnp.sum(chosen, axis=-1)
