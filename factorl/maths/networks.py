"""Networks shared by the factorised value agents.

Critics map an observation to per-factor utilities U(s) of shape [M, B]: one row of B bin values per
action dimension. Ensembles (DecQN's two critics, REValueD's K) are independent networks whose
parameters are stacked on a leading axis and evaluated with `jax.vmap`: K networks, not K heads.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

#: the residual torsos: DecQN's (Acme's LayerNormAndResidualMLP) and the REValueD code's
TORSOS = ("decqn", "revalued")


class ResidualTorso(nn.Module):
    """A state torso: Linear -> residual block -> LayerNorm, in one of two styles.

    `style="decqn"` (DecQN's): h = Dense(s); return ELU(LayerNorm(h + Dense(ReLU(Dense(h))))).
    `style="revalued"` (the REValueD code's): h = Dense(s);
    return LayerNorm(h + ReLU(Dense(ReLU(Dense(h))))), a ReLU after the block's second layer and
    no activation after the norm. The parameters are the same in both.
    """

    width: int = 512
    style: str = "decqn"

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        h = nn.Dense(self.width, name="input")(obs)
        residual = nn.Dense(self.width, name="block_1")(h)
        residual = nn.Dense(self.width, name="block_2")(nn.relu(residual))
        if self.style == "revalued":
            return nn.LayerNorm(name="norm")(h + nn.relu(residual))
        if self.style != "decqn":
            raise ValueError(f"style must be one of {TORSOS}, got {self.style!r}")
        return nn.elu(nn.LayerNorm(name="norm")(h + residual))


class UtilityCritic(nn.Module):
    """Observation -> utilities [..., M, B] (DecQN's per-dimension Q-values)."""

    num_dims: int
    bins: int
    width: int = 512
    torso: str = "decqn"

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        h = ResidualTorso(self.width, self.torso, name="torso")(obs)
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

    def __init__(
        self, action_space, bins: int, width: int, size: int, torso: str = "decqn"
    ) -> None:
        from factorl.maths.factorisation import ActionFactorisation

        self.factorisation = ActionFactorisation.from_space(action_space, bins)
        self.network = UtilityCritic(self.factorisation.num_dims, bins, width, torso)
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


def orthogonal(scale: float = 1.0) -> nn.initializers.Initializer:
    """Flax's orthogonal initializer, drawn one matrix at a time under `vmap`.

    Same values as `nn.initializers.orthogonal(scale)`. A hand-written batching rule because
    jaxlib's CPU QR kernel splits a batch over the XLA thread pool and waits for it from inside
    that pool: two batched QRs at once (a vmapped init of several orthogonal kernels on a 2-thread
    CPU) deadlock the process. A sequential `lax.map` over the batch never hands the kernel a batch.
    """
    base = nn.initializers.orthogonal(scale)

    def init(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
        @jax.custom_batching.custom_vmap
        def draw(key):
            return base(key, shape, dtype)

        @draw.def_vmap
        def _draw_one_at_a_time(axis_size, in_batched, key):
            if not in_batched[0]:
                return draw(key), False
            return jax.lax.map(draw, key), True

        return draw(key)

    return init


# ----------------------------------------------------------------- cooperative multi-agent agents
# VDN/QMIX agents: one recurrent Q-network whose parameters all agents share, told apart by a
# one-hot agent id in the input (JaxMARL's agent net; pymarl also feeds the last action).


def _reset_per_agent(reset: jax.Array, features: jax.Array) -> jax.Array:
    """Reset flags for features [..., N, H] as bool, broadcastable to [..., N]: flags [...]
    (one per environment: every agent restarts) become [..., 1], flags [..., N] stay."""
    reset = jnp.asarray(reset, bool)
    return reset[..., None] if reset.ndim == features.ndim - 2 else reset


class RecurrentAgentQ(nn.Module):
    """One step of the shared per-agent DRQN: (hidden, obs, reset) -> (hidden', Q).

    hidden [..., N, H], obs [..., N, O], reset [...] or [..., N] (true at an episode's first step)
    -> hidden' [..., N, H], Q [..., N, n_actions]. Input = obs ++ one-hot(agent id);
    Dense(H)+ReLU -> GRUCell(H) -> Dense(n_actions). Dense kernels are orthogonal with gain
    `init_scale` and zero bias (JaxMARL); the GRU keeps Flax's defaults except that its orthogonal
    recurrent kernel is `orthogonal` (Flax's values, safe under `vmap`).

    The three stages are also methods (`features`, `recur`, `q_values`), so an unroll over time
    runs only the GRU inside its sequential loop (`unroll_agent_q`).
    """

    n_actions: int
    hidden_size: int = 64
    init_scale: float = 1.0

    def setup(self) -> None:
        init = orthogonal(self.init_scale)
        self.embed = nn.Dense(self.hidden_size, kernel_init=init)
        self.gru = nn.GRUCell(self.hidden_size, recurrent_kernel_init=orthogonal())
        self.head = nn.Dense(self.n_actions, kernel_init=init)

    def __call__(
        self, hidden: jax.Array, obs: jax.Array, reset: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        hidden = self.recur(hidden, self.features(obs), reset)
        return hidden, self.q_values(hidden)

    def features(self, obs: jax.Array) -> jax.Array:
        """The GRU's input: relu(Dense(obs ++ one-hot id)), obs [..., N, O] -> [..., N, H]."""
        n_agents = obs.shape[-2]
        obs = obs.astype(jnp.float32)
        ids = jnp.broadcast_to(jnp.eye(n_agents, dtype=obs.dtype), (*obs.shape[:-1], n_agents))
        return nn.relu(self.embed(jnp.concatenate([obs, ids], axis=-1)))

    def recur(self, hidden: jax.Array, features: jax.Array, reset: jax.Array) -> jax.Array:
        """One GRU step from `hidden`, restarted from zeros where `reset` ([...] or [..., N])."""
        reset = _reset_per_agent(reset, features)
        # zeroed before the step, so an episode's first Q ignores the previous episode
        hidden = jnp.where(reset[..., None], jnp.zeros_like(hidden), hidden)
        hidden, _ = self.gru(hidden, features)  # a GRU's output is its new hidden state
        return hidden

    def q_values(self, hidden: jax.Array) -> jax.Array:
        """Q [..., N, n_actions] read from hidden states [..., N, H]."""
        return self.head(hidden)

    def initial_hidden(self, batch: int, n_agents: int) -> jax.Array:
        """Zeros [batch, n_agents, H]: the state before any observation."""
        return jnp.zeros((batch, n_agents, self.hidden_size), jnp.float32)


#: Flax GRUCell's gates, in the order their kernels are stacked for one matmul
_GRU_GATES = ("r", "z", "n")


def _stacked_gru_weights(gru: Any) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """A Flax `GRUCell`'s parameters stacked gate by gate: the input kernel [I, 3H] and its bias
    [3H], the recurrent kernel [H, 3H], and the candidate gate's recurrent bias [H]."""
    k_in = jnp.concatenate([gru[f"i{g}"]["kernel"] for g in _GRU_GATES], axis=-1)
    b_in = jnp.concatenate([gru[f"i{g}"]["bias"] for g in _GRU_GATES], axis=-1)
    k_hidden = jnp.concatenate([gru[f"h{g}"]["kernel"] for g in _GRU_GATES], axis=-1)
    return k_in, b_in, k_hidden, gru["hn"]["bias"]


def _gru_loop(k_hidden, b_hn, x_r, x_z, x_n, resets, h0, for_backward: bool = False):
    """Flax's GRUCell along time from precomputed input gates: (final hidden, per step the new
    hidden, with `for_backward` also the values the backward pass reads)."""

    def step(h, inputs):
        x_r, x_z, x_n, reset = inputs
        h = jnp.where(reset[..., None], 0.0, h)
        h_r, h_z, h_n = jnp.split(h @ k_hidden, 3, axis=-1)
        r = nn.sigmoid(x_r + h_r)
        z = nn.sigmoid(x_z + h_z)
        h_n = h_n + b_hn
        n = jnp.tanh(x_n + r * h_n)
        new = (1.0 - z) * n + z * h
        return new, ((new, h, r, z, n, h_n) if for_backward else new)

    return jax.lax.scan(step, h0, (x_r, x_z, x_n, resets))


@jax.custom_vjp
def _gru_scan(k_hidden, b_hn, x_r, x_z, x_n, resets, h0):
    return _gru_loop(k_hidden, b_hn, x_r, x_z, x_n, resets, h0)[1]


def _gru_scan_forward(k_hidden, b_hn, x_r, x_z, x_n, resets, h0):
    _, (hiddens, *saved) = _gru_loop(k_hidden, b_hn, x_r, x_z, x_n, resets, h0, True)
    return hiddens, (k_hidden, resets, *saved)


def _gru_scan_backward(saved, d_hiddens):
    # backpropagation through time that only carries dL/dh: the per-step gradients of the
    # gates come out of the loop, and the recurrent kernel's gradient is one matmul over every
    # step afterwards instead of a small one accumulated at each step
    k_hidden, resets, h_prev, r, z, n, h_n = saved

    def step(d_next, inputs):
        d_out, reset, h_prev, r, z, n, h_n = inputs
        d_h = d_out + d_next
        d_pre_n = d_h * (1.0 - z) * (1.0 - n * n)
        d_pre_r = d_pre_n * h_n * r * (1.0 - r)
        d_pre_z = d_h * (h_prev - n) * z * (1.0 - z)
        d_gates_h = jnp.concatenate([d_pre_r, d_pre_z, d_pre_n * r], axis=-1)
        d_prev = d_h * z + d_gates_h @ k_hidden.T
        d_prev = jnp.where(reset[..., None], 0.0, d_prev)
        return d_prev, (d_pre_r, d_pre_z, d_pre_n, d_gates_h)

    d_h0, (d_x_r, d_x_z, d_x_n, d_gates_h) = jax.lax.scan(
        step,
        jnp.zeros_like(d_hiddens[0]),
        (d_hiddens, resets, h_prev, r, z, n, h_n),
        reverse=True,
    )
    hidden = h_prev.shape[-1]
    d_k_hidden = h_prev.reshape(-1, hidden).T @ d_gates_h.reshape(-1, 3 * hidden)
    d_b_hn = jnp.sum(d_gates_h[..., 2 * hidden :].reshape(-1, hidden), axis=0)
    return d_k_hidden, d_b_hn, d_x_r, d_x_z, d_x_n, None, d_h0


_gru_scan.defvjp(_gru_scan_forward, _gru_scan_backward)


def unroll_gru(gru: Any, inputs: jax.Array, resets: jax.Array, h0: jax.Array) -> jax.Array:
    """A Flax `GRUCell`'s parameters `gru` run along a leading time axis: inputs [T, ..., I],
    resets [T, ...] (restart from zeros before that step; one flag per row of h0's leading axes,
    or per its first axis only), h0 [..., H] -> the hidden state after every step [T, ..., H].

    The same values as stepping the cell (`RecurrentAgentQ.recur`), computed for speed: the
    input's share of the three gates for every step at once before the loop, one stacked
    matmul for the recurrent share inside it, and a hand-written backward pass (checked
    against autodiff of the cell in the tests) that keeps the weight gradients out of the loop.
    """
    resets = jnp.broadcast_to(_reset_per_agent(resets, inputs), inputs.shape[:-1])
    k_in, b_in, k_hidden, b_hn = _stacked_gru_weights(gru)
    gates = inputs @ k_in + b_in
    # three arrays rather than slices of one inside the loop, which XLA runs far slower
    x_r, x_z, x_n = jnp.split(gates, 3, axis=-1)
    return _gru_scan(k_hidden, b_hn, x_r, x_z, x_n, resets, jnp.asarray(h0, gates.dtype))


def unroll_agent_q(
    net: RecurrentAgentQ, params, hidden: jax.Array, obs: jax.Array, resets: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """`net` run along a leading time axis: hidden [B, N, H], obs [T, B, N, O], resets [T, B] or
    [T, B, N] -> (hidden states after every step [T, B, N, H], Q [T, B, N, n_actions]).

    The input layer and the head run over all steps at once; only the GRU steps sequentially.
    """
    features = net.apply(params, obs, method=net.features)
    hiddens = unroll_gru(params["params"]["gru"], features, resets, hidden)
    return hiddens, net.apply(params, hiddens, method=net.q_values)


def unroll_windows(
    net: RecurrentAgentQ,
    params_sets: tuple[Any, ...],
    obs: jax.Array,
    next_obs: jax.Array,
    resets: jax.Array,
    truncated: jax.Array,
) -> tuple[tuple[jax.Array, jax.Array], ...]:
    """Q along replay windows for several parameter sets (online and target).

    obs, next_obs [T, B, N, O] (next_obs[t]: what step t reached, before any reset), resets and
    truncated [T, B] -> for each parameter set (Q at obs, Q at next_obs), each
    [T, B, N, n_actions]; windows start from zero hidden states, and Q at next_obs carries no
    gradient (it is only bootstrapped from).

    Q at next_obs[t] is one more GRU step, without a reset, from the hidden state after step t.
    Inside an episode next_obs[t] is obs[t+1], so the loop runs over obs and then the last
    next_obs and reads Q at next_obs[t] off step t+1. That is exact except where step t ended
    the episode: after a termination the bootstrap is masked anyway (any finite value will
    do), after a truncation inside the window the true final observation is needed, and only
    then the extra GRU step runs for the whole batch.
    """
    steps = jnp.concatenate([obs, next_obs[-1:]], axis=0)
    step_resets = jnp.concatenate([resets, jnp.zeros_like(resets[:1])], axis=0)
    h0 = jnp.zeros((*obs.shape[1:-1], net.hidden_size), jnp.float32)
    hiddens = tuple(
        unroll_gru(p["params"]["gru"], net.apply(p, steps, method=net.features), step_resets, h0)
        for p in params_sets
    )
    truncated_inside = jnp.asarray(truncated, bool)[:-1]  # the last step's next_obs is exact

    out = []
    for p, h in zip(params_sets, hiddens, strict=True):
        q = net.apply(p, h, method=net.q_values)
        q_next = jax.lax.stop_gradient(q[1:])
        p_fixed, h_fixed = jax.lax.stop_gradient((p, h[:-2]))

        def from_final_obs(q_next, p=p_fixed, h=h_fixed):
            final = net.apply(p, next_obs[:-1], method=net.features)
            h_final = net.apply(p, h, final, jnp.zeros_like(truncated_inside), method=net.recur)
            q_final = net.apply(p, h_final, method=net.q_values)
            inside = jnp.where(truncated_inside[..., None, None], q_final, q_next[:-1])
            return jnp.concatenate([inside, q_next[-1:]], axis=0)

        q_next = jax.lax.cond(jnp.any(truncated_inside), from_final_obs, lambda q: q, q_next)
        out.append((q[:-1], q_next))
    return tuple(out)


def mask_unavailable(q: jax.Array, avail: jax.Array) -> jax.Array:
    """Q [..., A] with unavailable actions (avail 0) set to the dtype's lowest finite value, below
    any Q an available action can have, so no max or argmax picks them."""
    return jnp.where(jnp.asarray(avail, bool), q, jnp.finfo(q.dtype).min)


def masked_greedy(q: jax.Array, avail: jax.Array) -> jax.Array:
    """argmax over available actions: Q [..., A], avail [..., A] -> [...] int32."""
    return jnp.argmax(mask_unavailable(q, avail), axis=-1).astype(jnp.int32)


def random_available(key: jax.Array, avail: jax.Array) -> jax.Array:
    """An action drawn uniformly from the available ones: avail [..., A] -> [...] int32."""
    logits = jnp.where(jnp.asarray(avail, bool), 0.0, -jnp.inf)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


def masked_epsilon_greedy(
    key: jax.Array, q: jax.Array, avail: jax.Array, epsilon: float | jax.Array
) -> jax.Array:
    """Per agent (each entry of [...]): with probability epsilon a uniformly random available
    action, else the greedy available one. Q, avail [..., A] -> [...] int32."""
    k_explore, k_action = jax.random.split(key)
    explore = jax.random.uniform(k_explore, q.shape[:-1]) < epsilon
    return jnp.where(explore, random_available(k_action, avail), masked_greedy(q, avail))
