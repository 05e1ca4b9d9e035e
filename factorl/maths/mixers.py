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

In the cooperative multi-agent reading a factor is an agent and its utility the agent's Q_i.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from math import prod
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from factorl.maths.networks import orthogonal


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


# ------------------------------------------------------------------------------------ QMIX


def _kernel_init(init_scale: float | None) -> nn.initializers.Initializer:
    """Orthogonal kernels of gain `init_scale` (JaxMARL), or for None PyTorch's nn.Linear default
    U(+-1/sqrt(fan_in)) (pymarl trains with framework defaults)."""
    if init_scale is None:
        return nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
    return orthogonal(init_scale)


class HyperNet(nn.Module):
    """State -> `out` raw mixing weights: Dense(hidden)+ReLU+Dense for layers=2, Dense for 1."""

    out: int
    hidden: int
    layers: int = 2
    init_scale: float | None = 0.001

    @nn.compact
    def __call__(self, state: jax.Array) -> jax.Array:
        init = _kernel_init(self.init_scale)
        if self.layers == 2:
            state = nn.relu(nn.Dense(self.hidden, kernel_init=init, name="hidden")(state))
        elif self.layers != 1:
            raise ValueError(f"hypernet_layers must be 1 or 2, got {self.layers}")
        return nn.Dense(self.out, kernel_init=init, name="out")(state)


class QMixNet(nn.Module):
    """QMIX's mixing network: chosen [..., M] and flat state [..., S] -> Q_tot [...].

    w1 = |HyperNet(s)| as [M, E], b1 = Dense(E)(s), w2 = |HyperNet(s)| as [E],
    b2 = Dense(1)(ReLU(Dense(E)(s))); Q_tot = ELU(Q w1 + b1) w2 + b2. The batch axes of `chosen`
    and `state` broadcast against each other (e.g. K critics' utilities against one state batch).
    """

    num_factors: int
    embed_dim: int = 32
    hyper_hidden: int = 128
    hypernet_layers: int = 2
    init_scale: float | None = 0.001

    @nn.compact
    def __call__(self, chosen: jax.Array, state: jax.Array) -> jax.Array:
        M, E = self.num_factors, self.embed_dim
        init = _kernel_init(self.init_scale)

        def hyper(out: int, name: str) -> HyperNet:
            return HyperNet(
                out, self.hyper_hidden, self.hypernet_layers, self.init_scale, name=name
            )

        # absolute values keep every dQ_tot/dQ_i >= 0, so per-agent argmaxes give the joint one
        w1 = jnp.abs(hyper(M * E, "w1")(state)).reshape(*state.shape[:-1], M, E)
        w2 = jnp.abs(hyper(E, "w2")(state))
        # biases are unconstrained: they shift Q_tot without touching monotonicity
        b1 = nn.Dense(E, kernel_init=init, name="b1")(state)
        b2 = nn.relu(nn.Dense(E, kernel_init=init, name="b2_hidden")(state))
        b2 = nn.Dense(1, kernel_init=init, name="b2_out")(b2)[..., 0]
        hidden = nn.elu((chosen[..., None, :] @ w1)[..., 0, :] + b1)
        return jnp.sum(hidden * w2, axis=-1) + b2


def _flatten_state(state: jax.Array | None, size: int) -> jax.Array:
    """[..., *state_shape] -> [..., size], flattening the fewest trailing axes that hold `size`
    elements (the mixer's parameters record the state size, not its shape)."""
    if state is None:
        raise ValueError("QMIX conditions on a global state; got state=None")
    n = 1
    for k in range(1, state.ndim + 1):
        n *= state.shape[-k]
        if n == size:
            return state.reshape(*state.shape[: state.ndim - k], size)
        if n > size:
            break
    raise ValueError(f"no trailing axes of a state of shape {state.shape} hold {size} elements")


def qmix(
    embed_dim: int = 32,
    hyper_hidden: int = 128,
    hypernet_layers: int = 2,
    init_scale: float | None = 0.001,
) -> Mixer:
    """QMIX (Rashid et al. 2018, arXiv 1803.11485) as a `Mixer`.

    Which reference each choice follows:
    - structure (state-conditioned hypernetworks, |.| on the weights, unconstrained b1, ELU
      hidden layer, b2 from a 2-layer ReLU net of hidden width E): the paper, JaxMARL and pymarl
      agree.
    - `hypernet_layers=2` (default), Dense(hyper_hidden)+ReLU+Dense for w1 and w2: JaxMARL's
      qmix_rnn.py and pymarl's `hypernet_layers: 2`. `hypernet_layers=1` is the paper's single
      linear layer (then `hyper_hidden` is unused).
    - `embed_dim=32`, `hyper_hidden=128`: JaxMARL's MPE config (SMAX: 64 / 256; pymarl: 32 / 64).
    - `init_scale=0.001`: JaxMARL, orthogonal kernels with that gain and zero biases, which starts
      Q_tot near a constant. `init_scale=None`: pymarl's framework default for the kernels
      (PyTorch's U(+-1/sqrt(fan_in))), biases still zero (PyTorch draws them uniformly too).

    `init(key, num_factors, state_shape)` -> Flax parameters; `apply(params, chosen [..., M],
    state [..., *state_shape])` -> Q_tot [...], jittable and vmappable.
    """

    def net(num_factors: int) -> QMixNet:
        return QMixNet(num_factors, embed_dim, hyper_hidden, hypernet_layers, init_scale)

    def init(key: jax.Array, num_factors: int, state_shape: tuple[int, ...] = ()) -> Any:
        size = prod(state_shape)
        return net(num_factors).init(
            key, jnp.zeros((num_factors,), jnp.float32), jnp.zeros((size,), jnp.float32)
        )

    def apply(params: Any, chosen: jax.Array, state: jax.Array | None = None) -> jax.Array:
        size = params["params"]["b1"]["kernel"].shape[0]
        return net(chosen.shape[-1]).apply(params, chosen, _flatten_state(state, size))

    return Mixer(init, apply)
