"""A plain, single-file JAX TD3 training loop: the yardstick for factorl's TD3 loop.

Users ask how much factorl's shared machinery (config, replay with n-step and priorities, the
non-finite guard, metrics, checkpoint bookkeeping) costs next to the minimal script they would
otherwise write. This module is that script, written here for the comparison: the usual structure
of a single-file JAX TD3 (two separately held critics, one jitted critic update per env step, one
jitted actor-and-targets update every `policy_delay` steps, a NumPy ring buffer sampled uniformly,
NumPy exploration noise, random actions from `action_space.sample()` before learning starts) with
the same hyperparameters and networks as `factorl.agents.td3.TD3Config`. It has no evaluation,
logging, checkpoints or NaN handling. `bench/throughput.py` times it next to the real loop.

Not part of the library, and not for training anything: it only needs to do the same work per step.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from factorl.agents.td3 import TD3, TD3Config
from factorl.core.config import ReplaySettings
from factorl.envs.host import make_env


class _Actor(nn.Module):
    hidden: tuple[int, ...]
    action_dim: int

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        x = obs
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        return jnp.tanh(nn.Dense(self.action_dim)(x))


class _Critic(nn.Module):
    hidden: tuple[int, ...]

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        x = jnp.concatenate([obs, action], axis=-1)
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(1)(x)[..., 0]


class PlainTD3Loop:
    """env step -> buffer add -> (critic update, every `policy_delay`: actor/targets update)."""

    def __init__(
        self,
        env_id: str,
        seed: int,
        config: TD3Config,
        action_repeat: int = 1,
        replay: ReplaySettings = TD3.REPLAY,
    ) -> None:
        c = self.config = config
        self.replay_settings = replay
        self.env = make_env(env_id, seed=seed, action_repeat=action_repeat)
        space = self.env.action_space
        space.seed(seed)
        self.low, self.high = np.asarray(space.low), np.asarray(space.high)
        self.scale = (self.high - self.low) / 2.0
        obs_dim = int(np.prod(self.env.observation_space.shape))
        act_dim = int(np.prod(space.shape))
        hidden = (c.width,) * c.depth
        self.actor, self.critic = _Actor(hidden, act_dim), _Critic(hidden)
        keys = jax.random.split(jax.random.PRNGKey(seed), 4)
        o, a = jnp.zeros((1, obs_dim)), jnp.zeros((1, act_dim))
        actor = self.actor.init(keys[0], o)
        critics = [self.critic.init(k, o, a) for k in keys[1:3]]
        self.actor_opt = optax.adam(c.actor_learning_rate)
        self.critic_opt = optax.adam(c.critic_learning_rate)
        self.params: dict[str, Any] = {
            "actor": actor,
            "q1": critics[0],
            "q2": critics[1],
            "target_actor": actor,
            "target_q1": critics[0],
            "target_q2": critics[1],
            "opt_actor": self.actor_opt.init(actor),
            "opt_q1": self.critic_opt.init(critics[0]),
            "opt_q2": self.critic_opt.init(critics[1]),
        }
        self.key = keys[3]
        capacity = min(replay.capacity, 10_000_000)
        self.buf_obs = np.zeros((capacity, obs_dim), np.float32)
        self.buf_next = np.zeros((capacity, obs_dim), np.float32)
        self.buf_act = np.zeros((capacity, act_dim), np.float32)  # normalised to [-1, 1]
        self.buf_rew = np.zeros(capacity, np.float32)
        self.buf_done = np.zeros(capacity, np.float32)  # terminated (not truncated)
        self.capacity, self.size, self.pos = capacity, 0, 0
        self.rng = np.random.default_rng(seed)
        self.global_step, self.updates = 0, 0
        self.obs, _ = self.env.reset(seed=seed)
        self._act = jax.jit(self.actor.apply)
        self._update_critic = jax.jit(self._critic_step)
        self._update_actor = jax.jit(self._actor_step)

    # --------------------------------------------------------------------------- jitted steps
    def _critic_step(self, p: dict[str, Any], batch: tuple, key: jax.Array) -> dict[str, Any]:
        c = self.config
        obs, action, reward, next_obs, done = batch
        noise = jnp.clip(
            c.policy_noise * jax.random.normal(key, action.shape), -c.noise_clip, c.noise_clip
        )
        next_action = jnp.clip(self.actor.apply(p["target_actor"], next_obs) + noise, -1.0, 1.0)
        next_q = jnp.minimum(
            self.critic.apply(p["target_q1"], next_obs, next_action),
            self.critic.apply(p["target_q2"], next_obs, next_action),
        )
        y = reward + c.gamma * (1.0 - done) * next_q
        out = dict(p)
        for name in ("q1", "q2"):
            grads = jax.grad(lambda q: jnp.mean((self.critic.apply(q, obs, action) - y) ** 2))(
                p[name]
            )
            updates, out["opt_" + name] = self.critic_opt.update(grads, p["opt_" + name])
            out[name] = optax.apply_updates(p[name], updates)
        return out

    def _actor_step(self, p: dict[str, Any], obs: jax.Array) -> dict[str, Any]:
        c = self.config

        def loss(actor: Any) -> jax.Array:
            return -jnp.mean(self.critic.apply(p["q1"], obs, self.actor.apply(actor, obs)))

        grads = jax.grad(loss)(p["actor"])
        out = dict(p)
        updates, out["opt_actor"] = self.actor_opt.update(grads, p["opt_actor"])
        out["actor"] = optax.apply_updates(p["actor"], updates)
        for name in ("actor", "q1", "q2"):
            out["target_" + name] = optax.incremental_update(out[name], p["target_" + name], c.tau)
        return out

    # --------------------------------------------------------------------------------- the loop
    def step(self) -> bool:
        """One env step and, once learning has started, one update. True if it updated."""
        c = self.config
        if self.global_step < c.random_steps:
            unit = self.rng.uniform(-1.0, 1.0, self.low.shape).astype(np.float32)
        else:
            mean = np.asarray(self._act(self.params["actor"], self.obs[None].astype(np.float32)))[0]
            noise = self.rng.normal(0.0, c.exploration_noise, mean.shape)
            unit = np.clip(mean + noise, -1.0, 1.0).astype(np.float32)
        action = self.low + (unit + 1.0) * self.scale
        next_obs, reward, terminated, truncated, _ = self.env.step(action)
        i = self.pos
        self.buf_obs[i], self.buf_next[i], self.buf_act[i] = self.obs, next_obs, unit
        self.buf_rew[i], self.buf_done[i] = reward, float(terminated)
        self.pos, self.size = (i + 1) % self.capacity, min(self.size + 1, self.capacity)
        self.obs = next_obs
        if terminated or truncated:
            self.obs, _ = self.env.reset()
        self.global_step += 1
        if self.size < c.learning_starts or self.global_step % c.update_every:
            return False
        idx = self.rng.integers(0, self.size, self.replay_settings.batch_size)
        batch = (
            self.buf_obs[idx],
            self.buf_act[idx],
            self.buf_rew[idx],
            self.buf_next[idx],
            self.buf_done[idx],
        )
        self.key, sub = jax.random.split(self.key)
        self.params = self._update_critic(self.params, batch, sub)
        self.updates += 1
        if self.updates % c.policy_delay == 0:
            self.params = self._update_actor(self.params, batch[0])
        return True

    def close(self) -> None:
        self.env.close()
