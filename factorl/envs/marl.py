"""Cooperative multi-agent environments for value decomposition (VDN, QMIX): agents are the
factors of the joint action, each with its own discrete action set.

`make_marl_env("jaxmarl:MPE_simple_spread_v3")`, `make_marl_env("jaxmarl:smax-3m")` or
`make_marl_env("factorl:two-step-game")` returns a `MultiAgentEnv`: pure, jittable `reset` and
`step` like `factorl.envs.device.JaxEnv`, auto-resetting inside `step`, with the agents stacked
on a leading axis of fixed order (`spec.agents`). `make_marl_host_env("pettingzoo:mpe2.
simple_spread_v3")` returns a Gymnasium env over a PettingZoo parallel env for host runners.

What a step gives a learner (`MultiAgentTimeStep`):

- `obs`: the `MultiAgentObs` to act on next (the new episode's first after a reset): per-agent
  observations [A, O] float32 (each agent's flattened and zero-padded to the longest agent's
  length; no one-hot agent id, which the agent network adds), the global state [S] float32 for a
  mixer, and the available actions [A, num_actions] bool.
- `reward`: the team reward, a float32 scalar.
- `terminated` / `truncated`: a true terminal state (no bootstrap) / the time limit (bootstrap
  from `next_final`); never both.
- `next_final`: the `MultiAgentObs` this step reached, before any reset.
- `won`: true on the last step of an episode the team won (SMAX: every enemy dead and an ally
  alive, the condition of SMAX's win bonus); always false where `spec.reports_wins` is false.

Conventions for JaxMARL (0.2.0), chosen as its Q-learning baselines' `CTRolloutManager` does:
team reward = the sum over agents for MPE (agents' rewards differ) and agent 0's reward for SMAX
(every ally gets the same team reward); global state = the concatenation of the agents' raw
observations for MPE (it has no global state) and `world_state` for SMAX; available actions from
`get_avail_actions` where the environment implements it (SMAX), else every action of the
agent's own action space (MPE); an agent with fewer actions than the largest gets the rest
marked unavailable, and its observation zero-padded. Agent order is the environment's
`agents` list (MPE: agent_0, agent_1, ...; SMAX: ally_0, ally_1, ..., enemies are scripted).

Where we differ from `CTRolloutManager` (known deviations; they touch SMAX only, as no MPE agent
is ever done on its own and a JaxMARL MPE rollout never goes on past an episode's end):
- dead agents: it zeroes the whole input of an agent whose own done flag is set (the one-hot id
  included), and its agent net restarts that agent's GRU state on the same flag, so every dead
  agent gives one shared constant Q. We read only `dones["__all__"]`: the GRU restarts for all
  of an environment's agents together, at an episode start, and the agent net keeps appending
  the one-hot id (SMAX itself already zeroes a dead unit's observation);
- the first observation after an auto-reset: it zeroes it (the done flags of the step that ended
  the episode are still set; the global state is not zeroed); we give the real one.

JaxMARL's own `step` auto-resets on `dones["__all__"]`, which merges the time limit with wins and
losses, and returns the new episode's first observation in place of the final one. We call
`step_env` (no reset) and reset ourselves, so the final observation is kept and the ending is
split: MPE episodes only ever end at the time limit (truncated); SMAX episodes are terminated
when every ally or every enemy is dead (also on the last allowed step) and truncated otherwise.
So a battle still running at the step limit is a truncation, which a learner bootstraps from;
JaxMARL's baselines treat every `dones["__all__"]`, that time limit included, as terminal.
Both count steps before incrementing, so an episode lasts `max_steps + 1` steps (MPE 26, SMAX
101), which is `spec.max_episode_steps`. SMAX uses `HeuristicEnemySMAX` with the kwargs of
JaxMARL's QMIX baseline (`ql_rnn_smax.yaml`).
"""

from __future__ import annotations

import difflib
import importlib
import io
import sys
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol, runtime_checkable

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
from gymnasium import spaces

from factorl.core.config import install_hint
from factorl.envs.device import EnvState, MissingExtraError

_PREFIXES = ("jaxmarl:", "factorl:")
_EXAMPLES = "e.g. 'jaxmarl:MPE_simple_spread_v3', 'jaxmarl:smax-3m', 'factorl:two-step-game'"
_BUILTIN = ("factorl:two-step-game",)
#: JaxMARL's QMIX baseline SMAX settings (baselines/QLearning/config/alg/ql_rnn_smax.yaml)
_SMAX_KWARGS: dict[str, Any] = {
    "see_enemy_actions": True,
    "walls_cause_death": True,
    "attack_mode": "closest",
}
#: PettingZoo modules a host id may name, with the kwargs their `parallel_env` gets. An id comes
#: from a run's config and may be edited by anyone, so it never imports a module outside this
#: list (as factorl.envs.host refuses Gymnasium's "module:Id" form).
_PETTINGZOO_MODULES: dict[str, dict[str, Any]] = {
    "mpe2.simple_spread_v3": {"continuous_actions": False},
    "mpe2.simple_reference_v3": {"continuous_actions": False},
    "mpe2.simple_speaker_listener_v4": {"continuous_actions": False},
}


class MultiAgentSpec(NamedTuple):
    """What a runner needs to know about a multi-agent env before tracing it.

    `obs_shape` is one agent's flat observation shape (padded to the longest agent's), the same
    for every agent; `state_shape` the global state's; `num_actions` each agent's number of
    discrete actions (the largest agent's, the others' extra actions never available);
    `max_episode_steps` the time limit; `agents` the agent names in the order of the leading
    axis of observations, actions and masks; `name` the id the env was made from;
    `reports_wins` whether episodes can be won (SMAX), so runners report win rates.
    """

    name: str
    num_agents: int
    obs_shape: tuple[int, ...]
    state_shape: tuple[int, ...]
    num_actions: int
    max_episode_steps: int
    agents: tuple[str, ...]
    reports_wins: bool = False


class MultiAgentObs(NamedTuple):
    """What the agents and a mixer see: `obs` [A, *obs_shape] float32, the global `state`
    [*state_shape] float32, `avail` [A, num_actions] bool (True: the action may be taken)."""

    obs: jax.Array
    state: jax.Array
    avail: jax.Array


class MultiAgentTimeStep(NamedTuple):
    """One step's outcome; under `vmap` or `scan` each field gains the leading axes.

    `obs` is what to act on next, `next_final` what this step reached before any reset (equal
    when the episode goes on); `reward` the float32 team reward; `terminated` and `truncated`
    bool scalars, never both true; `won` a bool scalar, true on the last step of a won episode.
    """

    obs: MultiAgentObs
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    next_final: MultiAgentObs
    won: jax.Array


def is_marl_env(env_id: str) -> bool:
    """Whether `env_id` names a JAX multi-agent environment (`make_marl_env`)."""
    return env_id.startswith(_PREFIXES)


def marl_spaces(spec: MultiAgentSpec) -> tuple[spaces.Dict, spaces.MultiDiscrete]:
    """The Gymnasium spaces a multi-agent learner is built from: the observation as a Dict of
    per-agent `obs` [A, O], global `state` [S] and `avail` [A, num_actions], and one discrete
    action per agent."""
    observation = spaces.Dict(
        {
            "obs": spaces.Box(-np.inf, np.inf, (spec.num_agents, *spec.obs_shape), np.float32),
            "state": spaces.Box(-np.inf, np.inf, tuple(spec.state_shape), np.float32),
            "avail": spaces.MultiBinary((spec.num_agents, spec.num_actions)),
        }
    )
    return observation, spaces.MultiDiscrete([spec.num_actions] * spec.num_agents)


@runtime_checkable
class MultiAgentEnv(Protocol):
    """A pure, jittable cooperative multi-agent environment; all randomness comes from `key`.
    `actions` is int32 [num_agents] in `spec.agents` order."""

    spec: MultiAgentSpec

    def reset(self, key: jax.Array) -> tuple[EnvState, MultiAgentObs]:
        """A new episode's state and first observations."""
        ...

    def step(
        self, key: jax.Array, state: EnvState, actions: jax.Array
    ) -> tuple[EnvState, MultiAgentTimeStep]:
        """Apply the joint action; an episode that ends is reset at once (randomness: `key`)."""
        ...


def _check_actions(actions: jax.Array, spec: MultiAgentSpec) -> jax.Array:
    actions = jnp.asarray(actions)
    if actions.shape != (spec.num_agents,):
        raise ValueError(
            f"{spec.name}: actions have shape {actions.shape}, expected ({spec.num_agents},)"
        )
    return actions.astype(jnp.int32)


def _strongly_typed(tree: Any) -> Any:
    """Every leaf with an explicit dtype: a weakly typed leaf from `reset` (a Python scalar)
    would come back strongly typed from `step` and change a scan carry's type."""
    return jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.asarray(x).dtype), tree)


def _select(pred: jax.Array, on_true: Any, on_false: Any) -> Any:
    return jax.tree_util.tree_map(lambda t, f: jnp.where(pred, t, f), on_true, on_false)


# --- the two-step game -------------------------------------------------------------------------

#: stage 2B's payoff, rows agent 0's action, columns agent 1's (QMIX paper, section 5)
_TWO_STEP_PAYOFF = np.array([[0.0, 1.0], [1.0, 8.0]], np.float32)
_TWO_STEP_2A_REWARD = 7.0


class TwoStepGame:
    """The two-step cooperative matrix game of the QMIX paper (Rashid et al. 2018, section 5).

    Two agents, actions 0 (A) and 1 (B). In the first state agent 0's action alone picks the
    next state, A -> 2A and B -> 2B, reward 0. In 2A every joint action pays 7; in 2B the payoff
    is [[0, 1], [1, 8]] (row agent 0, column agent 1). The episode then ends (terminated). Both
    agents and the global state see a one-hot of the state (1, 2A, 2B); the terminal state,
    where no one acts, is all zeros. Optimal return 8 (B, then B B); an additive (VDN) fit of
    2B undervalues it (max 6.5 < 7 under uniform data), so VDN settles on 7 and QMIX reaches 8.
    Actions outside {0, 1} are clipped.
    """

    def __init__(self) -> None:
        """The game has no parameters."""
        self.spec = MultiAgentSpec(
            name="factorl:two-step-game",
            num_agents=2,
            obs_shape=(3,),
            state_shape=(3,),
            num_actions=2,
            max_episode_steps=2,
            agents=("agent_0", "agent_1"),
        )

    @staticmethod
    def _observe(stage: jax.Array) -> MultiAgentObs:
        onehot = jax.nn.one_hot(stage, 3, dtype=jnp.float32)  # stage 3 (ended) -> zeros
        return MultiAgentObs(
            obs=jnp.stack([onehot, onehot]), state=onehot, avail=jnp.ones((2, 2), jnp.bool_)
        )

    def reset(self, key: jax.Array) -> tuple[jax.Array, MultiAgentObs]:
        """Stage 0 (the first state); deterministic, `key` is unused."""
        stage = jnp.zeros((), jnp.int32)
        return stage, self._observe(stage)

    def step(
        self, key: jax.Array, state: jax.Array, actions: jax.Array
    ) -> tuple[jax.Array, MultiAgentTimeStep]:
        """One stage of the game; the second ends the episode and resets to stage 0."""
        actions = jnp.clip(_check_actions(actions, self.spec), 0, 1)
        first = state == 0
        payoff = jnp.asarray(_TWO_STEP_PAYOFF)[actions[0], actions[1]]
        reward = jnp.where(first, 0.0, jnp.where(state == 1, _TWO_STEP_2A_REWARD, payoff))
        reached = jnp.where(first, 1 + actions[0], 3).astype(jnp.int32)
        terminated = ~first
        next_state = jnp.where(terminated, 0, reached).astype(jnp.int32)
        return next_state, MultiAgentTimeStep(
            obs=self._observe(next_state),
            reward=reward.astype(jnp.float32),
            terminated=terminated,
            truncated=jnp.zeros((), jnp.bool_),
            next_final=self._observe(reached),
            won=jnp.zeros((), jnp.bool_),
        )


# --- JaxMARL -----------------------------------------------------------------------------------


class JaxMARLEnv:
    """A JaxMARL `MultiAgentEnv` with discrete actions as a factorl `MultiAgentEnv`.

    `team_reward` is "sum" (over agents) or "shared" (agent 0's). `terminal(state)` says whether
    a state JaxMARL reached is terminal (win, loss); a JaxMARL `done` that is not terminal is
    the time limit. `won(state)`, where given, says whether a final state is the team's win.
    Episodes last `max_episode_steps` steps at most (JaxMARL's `max_steps + 1`).
    """

    def __init__(
        self,
        env: Any,
        *,
        name: str,
        team_reward: str,
        terminal: Callable[[Any], jax.Array],
        max_episode_steps: int,
        won: Callable[[Any], jax.Array] | None = None,
    ) -> None:
        """Wrap `env` (JaxMARL, or anything with its reset/step_env/agents API)."""
        if team_reward not in ("sum", "shared"):
            raise ValueError(f"team_reward must be 'sum' or 'shared', got {team_reward!r}")
        self._env = env
        self._team_reward = team_reward
        self._terminal = terminal
        self._won = won
        self._agents = tuple(env.agents)
        sizes = []
        for agent in self._agents:
            space = env.action_space(agent)
            if not isinstance(getattr(space, "n", None), int | np.integer) or space.shape != ():
                raise ValueError(
                    f"{name!r}: agent {agent} has action space {type(space).__name__}"
                    f"{getattr(space, 'shape', '')}; factorl needs discrete actions"
                )
            sizes.append(int(space.n))
        num_actions = max(sizes)
        # An agent's actions beyond its own action space are never available.
        self._own_actions = np.arange(num_actions)[None, :] < np.array(sizes)[:, None]
        abstract_obs, abstract_state = jax.eval_shape(env.reset, jax.random.key(0))
        self._obs_sizes = [int(np.prod(abstract_obs[a].shape)) for a in self._agents]
        self._world_state = "world_state" in abstract_obs
        try:
            jax.eval_shape(env.get_avail_actions, abstract_state)
            self._has_avail = True
        except NotImplementedError:  # MPE: every action is always available
            self._has_avail = False
        state_size = (
            int(np.prod(abstract_obs["world_state"].shape))
            if self._world_state
            else sum(self._obs_sizes)
        )
        self.spec = MultiAgentSpec(
            name=name,
            num_agents=len(self._agents),
            obs_shape=(max(self._obs_sizes),),
            state_shape=(state_size,),
            num_actions=num_actions,
            max_episode_steps=int(max_episode_steps),
            agents=self._agents,
            reports_wins=won is not None,
        )

    @property
    def jaxmarl_env(self) -> Any:
        """The wrapped JaxMARL environment."""
        return self._env

    def _observe(self, obs: Mapping[str, jax.Array], state: Any) -> MultiAgentObs:
        flat = [jnp.ravel(obs[a]).astype(jnp.float32) for a in self._agents]
        width = self.spec.obs_shape[0]
        padded = jnp.stack([jnp.pad(x, (0, width - x.shape[0])) for x in flat])
        if self._world_state:
            global_state = jnp.ravel(obs["world_state"]).astype(jnp.float32)
        else:
            global_state = jnp.concatenate(flat)
        avail = jnp.asarray(self._own_actions)
        if self._has_avail:
            masks = self._env.get_avail_actions(state)
            width = self.spec.num_actions
            stacked = jnp.stack(
                [jnp.pad(jnp.asarray(masks[a]) != 0, (0, width - masks[a].shape[0]))
                 for a in self._agents]
            )  # fmt: skip
            avail = avail & stacked
        return MultiAgentObs(padded, global_state, avail)

    def reset(self, key: jax.Array) -> tuple[EnvState, MultiAgentObs]:
        """A new episode from JaxMARL's `reset`."""
        obs, state = self._env.reset(key)
        state = _strongly_typed(state)
        return state, self._observe(obs, state)

    def step(
        self, key: jax.Array, state: EnvState, actions: jax.Array
    ) -> tuple[EnvState, MultiAgentTimeStep]:
        """JaxMARL's `step_env`, then our own reset where the episode ended (keeping the final
        observation and telling the time limit from a terminal state)."""
        actions = _check_actions(actions, self.spec)
        step_key, reset_key = jax.random.split(key)
        action_dict = {agent: actions[i] for i, agent in enumerate(self._agents)}
        obs, reached, rewards, dones, _ = self._env.step_env(step_key, state, action_dict)
        final = self._observe(obs, reached)
        if self._team_reward == "sum":
            reward = sum(jnp.asarray(rewards[a], jnp.float32) for a in self._agents)
        else:
            reward = jnp.asarray(rewards[self._agents[0]], jnp.float32)
        done = jnp.asarray(dones["__all__"], jnp.bool_).reshape(())
        terminated = done & jnp.asarray(self._terminal(reached), jnp.bool_).reshape(())
        won = jnp.zeros((), jnp.bool_)
        if self._won is not None:
            won = done & jnp.asarray(self._won(reached), jnp.bool_).reshape(())
        # The reset is computed on every step and selected, as JaxMARL's own auto-reset does:
        # MPE's and SMAX's resets (random placements) are small next to a step.
        reset_state, reset_obs = self.reset(reset_key)
        next_state = _select(done, reset_state, reached)
        return next_state, MultiAgentTimeStep(
            obs=_select(done, reset_obs, final),
            reward=jnp.reshape(reward, ()),
            terminated=terminated,
            truncated=done & ~terminated,
            next_final=final,
            won=won,
        )


def _never_terminal(state: Any) -> jax.Array:
    return jnp.zeros((), jnp.bool_)


def _import_extra(module: str, extra: str, env_id: str) -> Any:
    """Import an optional backend, or say in one line which extra brings it."""
    # jaxmarl 0.2.0 prints two lines on import, and its mabrax module sets sys.stdout and
    # sys.stderr to sys.__stdout__ and sys.__stderr__ (undoing any redirection, pytest's
    # capture included). So the import runs with all four pointing at a buffer, and all four
    # are put back afterwards.
    saved = (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)
    sink = io.StringIO()
    try:
        sys.stdout = sys.stderr = sys.__stdout__ = sys.__stderr__ = sink
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{env_id!r} needs the {extra} extra, which cannot be imported ({exc}): "
            f"{install_hint(extra)}"
        ) from exc
    finally:
        sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__ = saved


def _close_matches(name: str, candidates: list[str]) -> str:
    """A "Did you mean" sentence for `name`, or "" when nothing is close."""
    matches = difflib.get_close_matches(name, candidates, n=5, cutoff=0.6)
    return f" Did you mean: {', '.join(matches)}?" if matches else ""


def _make_jaxmarl(name: str, env_id: str) -> JaxMARLEnv:
    jaxmarl = _import_extra("jaxmarl", "jaxmarl", env_id)
    smax_env = importlib.import_module("jaxmarl.environments.smax.smax_env")
    maps = sorted(smax_env.MAP_NAME_TO_SCENARIO)
    mpe_ids = sorted(k for k in jaxmarl.registered_envs if k.startswith("MPE_"))
    if name.startswith("smax-") and name[len("smax-") :] in maps:
        scenario = smax_env.map_name_to_scenario(name[len("smax-") :])
        env = jaxmarl.make("HeuristicEnemySMAX", scenario=scenario, **_SMAX_KWARGS)
        num_allies = int(env.num_allies)

        def battle_over(state: Any) -> jax.Array:
            alive = state.state.unit_alive
            return ~jnp.any(alive[:num_allies]) | ~jnp.any(alive[num_allies:])

        def battle_won(state: Any) -> jax.Array:  # SMAX pays its win bonus on exactly this
            alive = state.state.unit_alive
            return jnp.any(alive[:num_allies]) & ~jnp.any(alive[num_allies:])

        return JaxMARLEnv(
            env,
            name=env_id,
            team_reward="shared",
            terminal=battle_over,
            max_episode_steps=int(env.max_steps) + 1,
            won=battle_won,
        )
    if name in mpe_ids:
        env = jaxmarl.make(name)
        return JaxMARLEnv(
            env,
            name=env_id,
            team_reward="sum",
            terminal=_never_terminal,
            max_episode_steps=int(env.max_steps) + 1,
        )
    known = [f"jaxmarl:{k}" for k in mpe_ids] + [f"jaxmarl:smax-{m}" for m in maps]
    raise ValueError(
        f"Unknown JaxMARL id {env_id!r} (factorl takes 'jaxmarl:MPE_<name>' and "
        f"'jaxmarl:smax-<map>').{_close_matches(env_id, known)} "
        f"SMAX maps: {', '.join(maps)}."
    )


def builtin_marl_envs() -> tuple[str, ...]:
    """The ids of factorl's own multi-agent environments (device runner)."""
    return _BUILTIN


def host_marl_envs() -> tuple[str, ...]:
    """The PettingZoo ids `make_marl_host_env` accepts (host runner; the pettingzoo extra)."""
    return tuple(f"pettingzoo:{module}" for module in _PETTINGZOO_MODULES)


def make_marl_env(env_id: str) -> MultiAgentEnv:
    """Build a JAX multi-agent env from "jaxmarl:MPE_<name>", "jaxmarl:smax-<map>" or
    "factorl:two-step-game".

    jaxmarl is an optional extra, imported only here (its import takes seconds): a missing one
    raises `MissingExtraError` naming the pip extra. Unknown ids raise a one-line ValueError.
    """
    prefix, sep, name = env_id.partition(":")
    if prefix == "factorl" and sep:
        if env_id == "factorl:two-step-game":
            return TwoStepGame()
        raise ValueError(
            f"Unknown built-in multi-agent id {env_id!r}.{_close_matches(env_id, list(_BUILTIN))}"
            f" Built-in: {', '.join(_BUILTIN)}."
        )
    if prefix == "jaxmarl" and sep:
        return _make_jaxmarl(name, env_id)
    hint = ""
    if prefix == "pettingzoo":
        hint = " PettingZoo envs run on the host: factorl.envs.marl.make_marl_host_env."
    elif not sep:
        hint = " The id has no prefix."
    raise ValueError(
        f"Unknown multi-agent environment id {env_id!r}; accepted prefixes are "
        f"{' and '.join(repr(p) for p in _PREFIXES)} ({_EXAMPLES}).{hint}"
    )


# --- PettingZoo (host) -------------------------------------------------------------------------


class PettingZooEnv(gymnasium.Env[dict, np.ndarray]):
    """A PettingZoo parallel env with discrete actions as one Gymnasium env for host runners.

    Observation: a dict of `obs` [A, O] float32 (each agent's flattened, zero-padded to the
    longest), the global `state` [S] float32 (`env.state()`) and `avail` [A, num_actions] bool
    (an agent's `action_mask` in its info where the env gives one, else its whole action space;
    actions beyond an agent's own space are never available): the space `marl_spaces` gives, as
    the device runner's environments. Action: MultiDiscrete([num_actions] * A). Both in
    `marl_spec.agents` order (PettingZoo's `possible_agents`). The reward is the team sum;
    `terminated` / `truncated` are any agent's (truncated only when no agent terminated). An
    agent that has left the episode observes zeros. After an episode ends, `step` raises until
    `reset`.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012

    def __init__(
        self, env: Any, *, name: str, max_episode_steps: int, seed: int | None = None
    ) -> None:
        """Wrap the parallel env `env`; `seed` seeds the first reset unless it brings its own."""
        self._env = env
        self._agents = tuple(env.possible_agents)
        sizes = []
        for agent in self._agents:
            space = env.action_space(agent)
            if not isinstance(space, spaces.Discrete):
                raise ValueError(
                    f"{name!r}: agent {agent} has action space {space}; factorl needs Discrete"
                )
            sizes.append(int(space.n))
        self._sizes = sizes
        self._obs_sizes = [int(np.prod(env.observation_space(a).shape)) for a in self._agents]
        state_space = getattr(env, "state_space", None)
        if state_space is None:
            raise ValueError(f"{name!r} has no global state (state_space); QMIX needs one")
        num_actions = max(sizes)
        self.marl_spec = MultiAgentSpec(
            name=name,
            num_agents=len(self._agents),
            obs_shape=(max(self._obs_sizes),),
            state_shape=(int(np.prod(state_space.shape)),),
            num_actions=num_actions,
            max_episode_steps=int(max_episode_steps),
            agents=self._agents,
        )
        self.observation_space, self.action_space = marl_spaces(self.marl_spec)
        self._own_actions = np.arange(num_actions)[None, :] < np.array(sizes)[:, None]
        self._pending_seed = seed
        if seed is not None:
            self.action_space.seed(seed)
        self._needs_reset = True

    @property
    def parallel_env(self) -> Any:
        """The wrapped PettingZoo parallel env."""
        return self._env

    def _observe(self, obs: Mapping[str, Any], infos: Mapping[str, Any]) -> dict[str, np.ndarray]:
        stacked = np.zeros(self.observation_space["obs"].shape, np.float32)
        avail = self._own_actions.copy()
        for i, agent in enumerate(self._agents):
            if agent in obs:
                flat = np.asarray(obs[agent], np.float32).ravel()
                stacked[i, : flat.shape[0]] = flat
            mask = (infos.get(agent) or {}).get("action_mask")
            if mask is not None:
                avail[i, : self._sizes[i]] &= np.asarray(mask, bool).ravel()
        state = np.asarray(self._env.state(), np.float32).ravel()
        return {"obs": stacked, "state": state, "avail": avail}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Start an episode; with `seed` (or the constructor's, first), a deterministic one."""
        if seed is None:
            seed = self._pending_seed
        self._pending_seed = None
        super().reset(seed=seed)
        obs, infos = self._env.reset(seed=seed, options=options)
        self._needs_reset = False
        return self._observe(obs, infos), {}

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Apply one action per agent (int, `marl_spec.agents` order)."""
        if self._needs_reset:
            raise RuntimeError(
                "PettingZooEnv.step() called before reset() or after the episode ended"
            )
        action = np.asarray(action)
        if action.shape != self.action_space.shape:
            raise ValueError(f"action has shape {action.shape}, expected {self.action_space.shape}")
        live = set(self._env.agents)
        actions = {a: int(action[i]) for i, a in enumerate(self._agents) if a in live}
        obs, rewards, terminations, truncations, infos = self._env.step(actions)
        reward = float(sum(float(r) for r in rewards.values()))
        terminated = any(bool(t) for t in terminations.values())
        truncated = any(bool(t) for t in truncations.values()) and not terminated
        self._needs_reset = terminated or truncated or not self._env.agents
        return self._observe(obs, infos), reward, terminated, truncated, {}

    def close(self) -> None:
        """Close the wrapped env."""
        self._env.close()


def make_marl_host_env(env_id: str, *, seed: int | None = None) -> PettingZooEnv:
    """Build a host multi-agent env from "pettingzoo:<module>" for an allow-listed PettingZoo
    module (mpe2.simple_spread_v3, mpe2.simple_reference_v3, mpe2.simple_speaker_listener_v4).

    An id never imports a module outside the allow-list. A missing package raises
    `MissingExtraError` naming the `pettingzoo` extra; other ids a one-line ValueError.
    """
    prefix, sep, module = env_id.partition(":")
    if prefix != "pettingzoo" or not sep:
        hint = (
            " JAX multi-agent ids are made by make_marl_env."
            if prefix in ("jaxmarl", "factorl")
            else ""
        )
        raise ValueError(
            f"Unknown host multi-agent id {env_id!r}; use 'pettingzoo:<module>' "
            f"(e.g. 'pettingzoo:mpe2.simple_spread_v3').{hint}"
        )
    if module not in _PETTINGZOO_MODULES:
        known = [f"pettingzoo:{m}" for m in _PETTINGZOO_MODULES]
        raise ValueError(
            f"{env_id!r} names a module factorl does not import: an id only selects from "
            f"{', '.join(known)}.{_close_matches(env_id, known)}"
        )
    package = module.split(".")[0]
    _import_extra("pettingzoo", "pettingzoo", env_id)
    _import_extra(package, "pettingzoo", env_id)
    env = importlib.import_module(module).parallel_env(**_PETTINGZOO_MODULES[module])
    # mpe2 keeps the time limit (25 by default) on the underlying AEC env.
    max_cycles = int(env.unwrapped.max_cycles)
    return PettingZooEnv(env, name=env_id, max_episode_steps=max_cycles, seed=seed)
