"""Mixers: how per-factor utilities compose into one joint value.

Utilities have shape [..., M, B] (M factors, B choices each). A mixer takes the utilities of the
chosen sub-actions, shape [..., M], and returns the joint value [...]. Mixers in this family are
monotonic in every argument, which is what makes the joint argmax decompose into per-factor
argmaxes.

A mixer is a pair of pure functions, `init(key, num_factors, state_shape) -> params` and
`apply(params, chosen, state) -> q_tot`, so a learned mixer (QMIX's state-conditioned
hypernetwork) has the same form as the parameter-free ones: the mean (DecQN) and the sum (VDN)
take empty parameters and ignore the state. `state` is a global state [..., *state_shape] for the
mixers that condition on one, else None. Targets take a mixer with its parameters and state bound
(`bind`), a function of the chosen utilities alone.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


class Mixer(NamedTuple):
    """A mixer's two pure functions (see the module docstring)."""

    init: Callable[..., Any]
    apply: Callable[[Any, jax.Array, jax.Array | None], jax.Array]


def select(utilities: jax.Array, indices: jax.Array) -> jax.Array:
    """Utilities [..., M, B] and indices [..., M] -> chosen utilities [..., M]."""
    return jnp.take_along_axis(utilities, indices[..., None].astype(jnp.int32), axis=-1)[..., 0]


def greedy(utilities: jax.Array) -> jax.Array:
    """Per-factor argmax: [..., M, B] -> [..., M] (int32). Ties go to the lowest index."""
    return jnp.argmax(utilities, axis=-1).astype(jnp.int32)


def no_params(key: jax.Array, num_factors: int, state_shape: tuple[int, ...] = ()) -> dict:
    """The parameters of a parameter-free mixer: none."""
    del key, num_factors, state_shape
    return {}


def mean_mix(params: Any, chosen: jax.Array, state: jax.Array | None = None) -> jax.Array:
    """DecQN: Q(s, a) = (1/M) sum_j U_j(s, a_j)."""
    del params, state
    return jnp.mean(chosen, axis=-1)


def sum_mix(params: Any, chosen: jax.Array, state: jax.Array | None = None) -> jax.Array:
    """VDN: Q_tot = sum_i Q_i(tau_i, u_i)."""
    del params, state
    return jnp.sum(chosen, axis=-1)


MEAN = Mixer(no_params, mean_mix)
SUM = Mixer(no_params, sum_mix)
#: the mixers an agent can name in its config
MIXERS: dict[str, Mixer] = {"mean": MEAN, "sum": SUM}


def bind(
    mixer: Mixer, params: Any = None, state: jax.Array | None = None
) -> Callable[[jax.Array], jax.Array]:
    """`mixer` with its parameters and global state fixed: chosen [..., M] -> joint value [...]."""
    return partial(mixer.apply, {} if params is None else params, state=state)


#: the mean with nothing bound, the default of the targets
mean_mixer = bind(MEAN)
