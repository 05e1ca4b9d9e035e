"""JAX-native environments: pure, jittable `reset` and `step` for runners that step environments
inside jit (a `lax.scan` over steps, `vmap` over environments and over seeds).

`make_jax_env("gymnax:Pendulum-v1")` or `make_jax_env("playground:CheetahRun")` returns a
`JaxEnv`. Its `step` resets a finished episode by itself, so a scan can run forever, and its
`TimeStep` keeps apart what a learner needs at an episode's end:

- `terminated`: a true terminal state; the target does not bootstrap.
- `truncated`: the time limit; the target bootstraps from `next_obs_final`.
- `next_obs_final`: the observation this step reached, before any reset (the replay's next_obs).
- `obs`: the observation to act on next: `next_obs_final`, or the new episode's first
  observation after a reset.

At most one of `terminated` and `truncated` is true: an episode that ends in a terminal state on
its last allowed step is terminated (no bootstrap), as `factorl.envs.host.DMCEnv` reports it.
Observations are flat float32 vectors; actions are float32 and clipped to the spec's bounds
before the environment sees them, so an out-of-range action (exploration noise) behaves exactly
like the bound, in the dynamics and in the reward.

How the two backends report episode ends, and what we do with it:

gymnax (>= 1.0.1): `Environment.step` takes `terminated` from the environment's own terminal
test (`is_terminated`: never, for Pendulum-v1; reaching the goal, for MountainCarContinuous-v0),
computes `truncated = state.time >= params.max_steps_in_episode` (200 and 999 steps, as
Gymnasium's time limits for the same ids), resets on either, and returns the pre-reset
observation as `info["final_observation"]`. We pass those on. gymnax 0.0.9 returned one `done`
instead, which for Pendulum-v1 is the time limit alone (its `is_terminal` is
`time >= max_steps_in_episode`) and for MountainCarContinuous-v0 is goal or time limit, and it
kept no final observation; a learner reading that `done` as terminal would never bootstrap at
Pendulum's time limit. So factorl refuses gymnax older than 1.0.1 (1.0.0 needs jax < 0.7).

playground (MuJoCo Playground, 0.2.0): the DM Control Suite ports' `step` sets `State.done` only
when `qpos` or `qvel` becomes NaN (a diverged simulation); the time limit `episode_length`
(1000 control steps) is not in the environment at all but in brax's `EpisodeWrapper`, which sets
`done` at the limit and `info["truncation"]` to `1 - done`, and playground's auto-reset wrapper
then overwrites the final observation and by default restarts every episode from one cached
initial state. We use none of those wrappers: `PlaygroundEnv` counts steps itself, reports the
time limit as `truncated`, a diverged simulation as `terminated` (there is no state to bootstrap
from), and starts each episode with a fresh random reset. A diverged step's non-finite
observation and reward entries are replaced by 0, so one divergence cannot reach a loss through
`0 * NaN`. Playground runs on MJX's pure-JAX implementation (`impl="jax"`), which runs on every
backend and scans and vmaps like any JAX function; its default, "warp", calls NVIDIA Warp kernels
from JAX, which on a CPU are slower and log every kernel they load.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import re
from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

from factorl.core.config import install_hint

_PREFIXES = ("gymnax:", "playground:")
_EXAMPLES = "e.g. 'gymnax:Pendulum-v1', 'playground:CheetahRun'"
_GYMNAX_MIN = (1, 0, 1)

EnvState = Any
"""An environment's state: a pytree that `reset` creates and `step` consumes and returns."""


class JaxEnvSpec(NamedTuple):
    """What a runner needs to know about a `JaxEnv` before tracing it.

    `action_low` and `action_high` are read-only float32 arrays of the action's shape (a Box, as
    the host environments' action spaces); `max_episode_steps` is the time limit after which
    `step` reports `truncated`; `name` is the id that `make_jax_env` was given.
    """

    obs_shape: tuple[int, ...]
    action_low: np.ndarray
    action_high: np.ndarray
    max_episode_steps: int
    name: str


class TimeStep(NamedTuple):
    """One step's outcome; under `vmap` or `scan` each field gains the leading axes.

    `obs` (float32, `obs_shape`) is what to act on next, `next_obs_final` (the same) what this
    step reached before any reset; `reward` is a float32 scalar, `terminated` and `truncated`
    bool scalars, never both true.
    """

    obs: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    next_obs_final: jax.Array


@runtime_checkable
class JaxEnv(Protocol):
    """A pure, jittable environment. Neither method keeps state on the object, so both can be
    traced once and mapped over environments and seeds; all randomness comes from `key`."""

    spec: JaxEnvSpec

    def reset(self, key: jax.Array) -> tuple[EnvState, jax.Array]:
        """A new episode's state and first observation."""
        ...

    def step(self, key: jax.Array, state: EnvState, action: jax.Array) -> tuple[EnvState, TimeStep]:
        """Apply `action`; an episode that ends is reset at once (with randomness from `key`)."""
        ...


class MissingExtraError(ImportError, ValueError):
    """An environment id needs a package that is not installed. A ValueError too, so callers
    that turn a bad environment id into a configuration error treat this one the same way."""


def _box(low: Any, high: Any, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Float32 bounds of `shape`, read-only because every copy of a spec shares them."""
    bounds = []
    for value in (low, high):
        array = np.array(np.broadcast_to(np.asarray(value, np.float32), shape))
        array.flags.writeable = False
        bounds.append(array)
    return bounds[0], bounds[1]


def _clip_action(action: jax.Array, spec: JaxEnvSpec) -> jax.Array:
    action = jnp.asarray(action, jnp.float32)
    if action.shape != spec.action_low.shape:
        raise ValueError(
            f"{spec.name}: action has shape {action.shape}, expected {spec.action_low.shape}"
        )
    return jnp.clip(action, spec.action_low, spec.action_high)


def _flat(obs: jax.Array) -> jax.Array:
    return jnp.ravel(obs).astype(jnp.float32)


def _check_flat_obs(name: str, obs: Any) -> tuple[int, ...]:
    """The flat observation shape of an abstract observation, refusing dicts (pixels)."""
    if isinstance(obs, Mapping):
        raise ValueError(
            f"{name!r} has dict observations ({', '.join(obs)}); factorl needs one flat vector"
        )
    return (int(np.prod(obs.shape)),)


class GymnaxEnv:
    """A gymnax environment with continuous (Box) actions as a `JaxEnv`.

    gymnax's own `step` already separates termination from the time limit and keeps the final
    observation (see the module docstring); this adapter clips the action, flattens
    observations to float32, and makes `terminated` and `truncated` exclusive.
    """

    def __init__(self, env: Any, params: Any = None, *, name: str) -> None:
        """Wrap a gymnax `env` run with `params` (default: its `default_params`)."""
        from gymnax.environments import spaces

        self._env = env
        self._params = env.default_params if params is None else params
        space = env.action_space(self._params)
        if not isinstance(space, spaces.Box):
            raise ValueError(
                f"{name!r} has action space {space}; factorl needs a Box (continuous) action space"
            )
        shape = tuple(int(d) for d in space.shape)
        low, high = _box(space.low, space.high, shape)
        abstract_obs, _ = jax.eval_shape(env.reset, jax.random.key(0), self._params)
        self.spec = JaxEnvSpec(
            obs_shape=_check_flat_obs(name, abstract_obs),
            action_low=low,
            action_high=high,
            max_episode_steps=int(self._params.max_steps_in_episode),
            name=name,
        )

    def reset(self, key: jax.Array) -> tuple[EnvState, jax.Array]:
        """A new episode's gymnax state and first observation."""
        obs, state = self._env.reset(key, self._params)
        return state, _flat(obs)

    def step(self, key: jax.Array, state: EnvState, action: jax.Array) -> tuple[EnvState, TimeStep]:
        """gymnax's auto-resetting step with the action clipped to the spec's bounds."""
        action = _clip_action(action, self.spec)
        obs, state, reward, terminated, truncated, info = self._env.step(
            key, state, action, self._params
        )
        terminated = jnp.asarray(terminated, jnp.bool_).reshape(())
        truncated = jnp.asarray(truncated, jnp.bool_).reshape(())
        return state, TimeStep(
            obs=_flat(obs),
            reward=jnp.asarray(reward, jnp.float32).reshape(()),
            terminated=terminated,
            truncated=truncated & ~terminated,
            next_obs_final=_flat(info["final_observation"]),
        )


class PlaygroundState(NamedTuple):
    """A `PlaygroundEnv`'s state: playground's own `State` and the steps taken this episode."""

    inner: Any
    steps: jax.Array


def _finite_or_zero(x: jax.Array) -> jax.Array:
    return jnp.where(jnp.isfinite(x), x, jnp.zeros_like(x))


class PlaygroundEnv:
    """A MuJoCo Playground environment (an `MjxEnv` without brax's wrappers) as a `JaxEnv`.

    The time limit, the auto-reset and the terminal test are this adapter's (see the module
    docstring). The reset runs as the body of a `lax.while_loop` that runs at most once, not
    under `lax.cond`: under `vmap` (over environments, and over seeds in the device runner) a cond
    with a batched predicate becomes a select that computes the reset on every step for every
    environment, whereas a batched while loop runs its body only while some element of the batch
    needs it, so a step where no episode ended costs no reset, and one where some ended costs one
    batched reset (an optimisation barrier keeps XLA from hoisting the reset out of the loop).
    This matters: CheetahRun's reset settles the model for 200 physics steps (as dm_control's
    does), and computed on every step it made the vmapped step two orders of magnitude slower
    (bench/results/playground-cheetah-run.json). Unbatched, the loop is a cond.
    """

    def __init__(self, env: Any, *, max_episode_steps: int, name: str) -> None:
        """Wrap a playground `env`, ending episodes after `max_episode_steps` steps."""
        if max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1, got {max_episode_steps}")
        self._env = env
        model = env.mj_model
        limited = np.asarray(model.actuator_ctrllimited, bool)
        if not limited.all():
            raise ValueError(f"{name!r} has actuators without a control range; factorl needs a Box")
        ctrlrange = np.asarray(model.actuator_ctrlrange, np.float32)
        low, high = _box(ctrlrange[:, 0], ctrlrange[:, 1], (int(env.action_size),))
        abstract = jax.eval_shape(env.reset, jax.random.key(0))
        self.spec = JaxEnvSpec(
            obs_shape=_check_flat_obs(name, abstract.obs),
            action_low=low,
            action_high=high,
            max_episode_steps=int(max_episode_steps),
            name=name,
        )

    def reset(self, key: jax.Array) -> tuple[PlaygroundState, jax.Array]:
        """A new episode from playground's random reset, every leaf strongly typed: CheetahRun's
        reset sets `data.time` from a Python float (weakly typed), which came back from `step`
        as such and made a runner's second chunk compile again (its input types changed)."""
        inner = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.asarray(x).dtype),
                                       self._env.reset(key))  # fmt: skip
        return PlaygroundState(inner, jnp.zeros((), jnp.int32)), _flat(inner.obs)

    def step_without_reset(
        self, state: PlaygroundState, action: jax.Array
    ) -> tuple[PlaygroundState, TimeStep]:
        """One control step with no auto-reset: the state it reached and its `TimeStep`, whose
        `obs` is that state's observation (`next_obs_final`). `step` adds the reset; kept apart
        so that a variant of the reset (bench/playground.py's) shares the rest of the step."""
        action = _clip_action(action, self.spec)
        inner = self._env.step(state.inner, action)
        steps = state.steps + 1
        terminated = jnp.asarray(inner.done, jnp.float32).reshape(()) > 0
        truncated = (steps >= self.spec.max_episode_steps) & ~terminated
        final_obs = _finite_or_zero(_flat(inner.obs))
        reward = _finite_or_zero(jnp.asarray(inner.reward, jnp.float32).reshape(()))
        timestep = TimeStep(final_obs, reward, terminated, truncated, final_obs)
        return PlaygroundState(inner, steps), timestep

    def step(
        self, key: jax.Array, state: PlaygroundState, action: jax.Array
    ) -> tuple[PlaygroundState, TimeStep]:
        """One control step; at a terminal state or the time limit, a reset with `key`."""
        reached, timestep = self.step_without_reset(state, action)

        def reset_once(carry: tuple[jax.Array, PlaygroundState]):
            # The barrier makes the reset depend on the loop's flag: `key` alone is invariant in
            # the loop, and XLA's loop-invariant code motion would hoist the whole reset out of
            # it and compute it on every step (CheetahRun: 24 env steps/s instead of ~3700).
            _, reset_key = jax.lax.optimization_barrier((carry[0], key))
            return jnp.zeros((), jnp.bool_), self.reset(reset_key)[0]

        # At most one pass: the body clears the flag (see the class docstring for why not cond).
        _, next_state = jax.lax.while_loop(
            lambda carry: carry[0],
            reset_once,
            (timestep.terminated | timestep.truncated, reached),
        )
        return next_state, timestep._replace(obs=_flat(next_state.inner.obs))


def _close_matches(name: str, candidates: list[str]) -> str:
    """A "Did you mean" sentence for `name`, or "" when nothing is close."""
    matches = difflib.get_close_matches(name, candidates, n=5, cutoff=0.6)
    return f" Did you mean: {', '.join(matches)}?" if matches else ""


def _distribution_version(distribution: str) -> str:
    return importlib.metadata.version(distribution)


def _import_extra(module: str, extra: str, env_id: str) -> Any:
    """Import an optional backend, or say in one line which extra brings it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{env_id!r} needs the {extra} package, which cannot be imported ({exc}): "
            f"{install_hint(extra)}"
        ) from exc


def _version_tuple(version: str) -> tuple[int, ...]:
    """The release numbers of a version string ("1.0.1rc1" -> (1, 0, 1))."""
    parts = []
    for part in version.split(".")[:3]:
        match = re.match(r"\d+", part)
        parts.append(int(match.group()) if match else 0)
    return tuple(parts)


def _make_gymnax(name: str, env_id: str) -> GymnaxEnv:
    gymnax = _import_extra("gymnax", "gymnax", env_id)
    version = _distribution_version("gymnax")
    if _version_tuple(version) < _GYMNAX_MIN:
        raise MissingExtraError(
            f"{env_id!r} needs gymnax >= 1.0.1, which reports termination and truncation apart; "
            f"gymnax {version} is installed: {install_hint('gymnax')}"
        )
    registered = list(gymnax.registered_envs)
    if name not in registered:
        raise ValueError(
            f"Unknown gymnax id {env_id!r}."
            f"{_close_matches(env_id, [f'gymnax:{k}' for k in registered])} "
            "gymnax.registered_envs lists the ids; factorl takes those with continuous actions "
            "(Pendulum-v1, MountainCarContinuous-v0, Reacher-misc, Swimmer-misc, ...)."
        )
    try:
        env, params = gymnax.make(name)
    except Exception as exc:  # e.g. MNISTBandit-bsuite downloads a data set when made
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"gymnax could not make {env_id!r}: {message}") from exc
    return GymnaxEnv(env, params, name=env_id)


def _make_playground(name: str, env_id: str) -> PlaygroundEnv:
    suite = _import_extra("mujoco_playground", "playground", env_id).dm_control_suite
    names = sorted(suite.ALL_ENVS)
    if name not in names:
        raise ValueError(
            f"Unknown MuJoCo Playground id {env_id!r} (factorl takes its DM Control Suite ports)."
            f"{_close_matches(env_id, [f'playground:{k}' for k in names])} "
            f"Available: {', '.join(f'playground:{k}' for k in names)}."
        )
    config = suite.get_default_config(name)
    config.impl = "jax"
    env = suite.load(name, config=config)
    # The suite's action_repeat is applied by brax's EpisodeWrapper, which we do not use; every
    # port's default is 1, and a runner repeats actions itself.
    return PlaygroundEnv(env, max_episode_steps=int(config.episode_length), name=env_id)


def make_jax_env(env_id: str) -> JaxEnv:
    """Build a JAX environment from "gymnax:<id>" or "playground:<DM Control Suite port>".

    Backends are optional extras, imported only here: a missing one raises `MissingExtraError`
    naming the pip extra. Unknown ids and discrete-action environments raise a one-line
    ValueError.
    """
    prefix, sep, name = env_id.partition(":")
    if not sep:
        raise ValueError(
            f"JAX environment id {env_id!r} has no prefix; use 'gymnax:<id>' or "
            f"'playground:<name>' ({_EXAMPLES})."
        )
    if prefix == "gymnax":
        return _make_gymnax(name, env_id)
    if prefix == "playground":
        return _make_playground(name, env_id)
    hints = {
        "gym": " Host ids are made by factorl.envs.host.make_env; gymnax ports Gymnasium tasks as "
        "'gymnax:<id>' (e.g. 'gymnax:Pendulum-v1').",
        "dmc": " Host ids are made by factorl.envs.host.make_env; MuJoCo Playground ports the DM "
        "Control Suite as 'playground:<DomainTask>' (e.g. 'playground:CheetahRun').",
    }
    raise ValueError(
        f"Unknown JAX environment prefix {prefix + ':'!r} in {env_id!r}; accepted prefixes are "
        f"{' and '.join(repr(p) for p in _PREFIXES)} ({_EXAMPLES}).{hints.get(prefix, '')}"
    )
