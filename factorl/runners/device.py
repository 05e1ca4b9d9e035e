"""The device runner: JAX-native environments, acting, replay and learning in one jitted scan.

`make_train(agent, env, settings)` returns pure functions in the style of PureJaxRL:
`init(seed) -> RunnerState` and `run(state, num_vector_steps) -> (state, ChunkStats)` (the
number of vector steps is traced: one program serves every chunk length). One vector
step acts in `num_envs` environments (the agent's batched `act_fn`), steps them (`vmap` of the
environment's pure `step`, which resets finished episodes itself), stores the transitions in a
flashbax trajectory buffer (one row per environment, so n-step windows and action sequences never
cross environments), and runs as many learner steps (`update_fn`) as `update_every` env steps
passed. Both functions are vmapped over seeds by the host side (`DeviceTrainer`), so S seeds train
in one process and one compiled program.

Randomness: each seed's keys come from the seed alone, folded with the env step (acting, as on
the host runner), the vector step (environments) and the learner step (sampling), so a run does
not depend on how it is cut into chunks, and resume from a saved `RunnerState` is exact. The sums
behind a "train" record accumulate in the state too, step by step, until the host writes the
record at a `log_every` point and zeroes them; so the records do not depend on the chunks either
(a run stopped between log points and resumed writes the records of one that was not).

Replay is `factorl.replay.device.DeviceReplay` (see there for how it differs from the host
buffer: a step is sampleable once its whole window is stored; prioritised sampling is stratified).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np

from factorl.core.agent import AgentState
from factorl.core.config import Config, ConfigError, window_rows
from factorl.envs.device import make_jax_env
from factorl.envs.marl import is_marl_env, make_marl_env, marl_spaces
from factorl.io import checkpoint as ckpt
from factorl.io.runfolder import CHECKPOINT_DIR
from factorl.io.system import available_memory_bytes
from factorl.replay.device import DeviceReplay, sample_mixed, update_priorities_mixed
from factorl.replay.host import mixed_split
from factorl.replay.sequences import multi_agent_fields, multi_agent_transition
from factorl.runners.session import (
    Counters,
    RunSession,
    TrainingStopped,
    algorithm_for,
    crossed,
    episode_seed,
)

#: streams of the runner key: first resets, environment steps, replay sampling
_RESET, _ENV, _SAMPLE = 0, 1, 2


@dataclass(frozen=True)
class DeviceSettings:
    """What the device runner needs beyond the agent's own config. `dataset_steps` > 0: the run
    learns from a dataset of that many steps too (a second replay, `data.share` of every online
    batch drawn from it, and the `offline` function for a phase of updates from it alone)."""

    num_envs: int
    eval_episodes: int
    max_episode_steps: int
    dataset_steps: int = 0
    dataset_share: float = 0.0


class ChunkStats(NamedTuple):
    """Sums over the vector steps since the last "train" record, for the host's records."""

    episodes: jax.Array
    return_sum: jax.Array
    length_sum: jax.Array
    wins: jax.Array  # episodes won (environments that report wins: SMAX)
    updates: jax.Array
    metric_sums: dict[str, jax.Array]  # of each learner metric over the updates that measured it
    # how many updates measured each metric: a NaN metric was not measured at that step (TD3's
    # actor loss between actor steps). None only in a state loaded from a checkpoint written
    # before factorl kept them (see `_checkpoint_template`)
    metric_counts: dict[str, jax.Array] | None = None


class RunnerState(NamedTuple):
    """Everything one seed's run carries between vector steps (checkpointed as is)."""

    agent: AgentState
    env_state: Any
    obs: jax.Array  # [N, *obs_shape]
    replay: Any  # flashbax trajectory buffer state, rows = environments
    env_step: jax.Array  # env steps summed over environments
    key: jax.Array  # raw key; environments and sampling fold counters into it
    episode_return: jax.Array  # [N], of the episodes in progress
    episode_length: jax.Array  # [N]
    stopped: jax.Array  # a non-finite update was discarded: learning stops until the host acts
    stats: ChunkStats  # since the last "train" record; the host zeroes them after writing one
    # where a dataset is sampled by priority, this seed's priorities over it: the dataset
    # buffer's state without its data (`experience` None), so the priorities and a resume are
    # exact like the replay's. None without a dataset or with uniform sampling. The data itself
    # is one buffer every seed reads, passed to `run` and `offline`, never in the state
    demos: Any = None


class TrainFunctions(NamedTuple):
    """What `make_train` returns: pure functions of one seed's run."""

    init: Callable  # seed -> RunnerState (with empty priorities if it holds a dataset's)
    # (state, num_vector_steps, the dataset buffer or None) -> (state, ChunkStats since the
    # last record)
    run: Callable
    evaluate: Callable  # (agent state, key) -> (greedy returns, won), each [eval_episodes]
    # (state, num_updates, the dataset buffer or None) -> (state, ChunkStats): learner steps
    # on the dataset alone (None without a dataset); stops early at a non-finite update
    offline: Callable | None = None
    # dataset transitions [T, ...] (`factorl.io.datasets.Dataset.transitions`) -> the dataset
    # buffer's state (None without a dataset)
    load_demos: Callable | None = None
    # a dataset buffer's state (with or without a leading seed axis) -> what of it each seed
    # keeps in `RunnerState.demos`: its priorities (prioritised sampling) or None (uniform)
    seed_part: Callable | None = None
    empty_demos: Callable | None = None  # () -> an empty dataset buffer (None without one)


def _strong(tree: Any) -> Any:
    """The same arrays without weak types: a weakly typed leaf (gymnax's Pendulum resets
    `last_u` from a Python float) comes back strongly typed from a step, and the changed input
    type would make every chunk after the first compile again."""
    return jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype=jnp.asarray(x).dtype), tree)


def _where_tree(flag: jax.Array, new: Any, old: Any) -> Any:
    return jax.tree_util.tree_map(lambda a, b: jnp.where(flag, a, b), new, old)


class _Stream(NamedTuple):
    """How an environment's steps reach the replay: the stored shapes, and the pure functions
    that turn an observation and a step into what the agent acts on and the replay stores."""

    obs_shape: tuple[int, ...]
    action_shape: tuple[int, ...]
    extra_fields: dict[str, tuple[tuple[int, ...], Any]]
    observe: Any  # env observation -> what the agent acts on
    transition: Any  # (observation acted on, action, time step) -> replay fields
    won: Any  # time step -> whether it ended a won episode (false where there are no wins)


def _stream(env: Any) -> _Stream:
    """A single-agent environment stores flat float32 observations and continuous actions; a
    multi-agent one (`factorl.envs.marl`) per-agent observations [A, O] and actions [A], with the
    global state and the available actions, before and after the step, as extra fields."""
    spec = env.spec
    if not hasattr(spec, "num_agents"):

        def transition(obs, action, ts):
            return {
                "obs": obs,
                "action": action.astype(jnp.float32),
                "reward": ts.reward.astype(jnp.float32),
                "next_obs": ts.next_obs_final.astype(jnp.float32),
                "terminated": ts.terminated,
                "truncated": ts.truncated,
            }

        action_shape = (int(spec.action_low.shape[0]),)
        return _Stream(
            tuple(spec.obs_shape),
            action_shape,
            {},
            lambda o: o.astype(jnp.float32),
            transition,
            lambda ts: jnp.zeros_like(ts.terminated),
        )

    def marl_transition(obs, action, ts):
        return multi_agent_transition(
            obs, action, ts.reward, ts.next_final, ts.terminated, ts.truncated
        )

    agents = spec.num_agents
    extra = multi_agent_fields(agents, tuple(spec.state_shape), spec.num_actions)
    return _Stream(
        (agents, *spec.obs_shape), (agents,), extra, lambda o: o, marl_transition, lambda ts: ts.won
    )


def make_train(agent: Any, env: Any, settings: DeviceSettings):
    """(init, run, evaluate) pure functions for one seed; see the module docstring."""
    c, r = agent.config, agent.replay_settings
    n = settings.num_envs
    n_step = r.n_step
    horizon = int(getattr(c, "horizon", 1))
    # a recurrent learner (VDN, QMIX) learns from windows of consecutive steps
    sequence_length = int(getattr(c, "sequence_length", 0))
    window = max(n_step, horizon, sequence_length)
    gamma = float(c.gamma)
    aligned = bool(getattr(c, "aligned_windows", False))
    rows = window_rows(r.capacity, n, window, sequence_length if aligned else 0)
    prioritized = r.prioritized
    stream = _stream(env)
    replay = DeviceReplay(
        num_envs=n,
        steps_per_env=rows,
        batch_size=r.batch_size,
        obs_shape=stream.obs_shape,
        action_shape=stream.action_shape,
        n_step=n_step,
        horizon=horizon,
        gamma=gamma,
        prioritized=prioritized,
        priority_alpha=r.priority_alpha,
        priority_beta=r.priority_beta,
        extra_fields=stream.extra_fields,
        sequence_length=sequence_length,
        aligned_windows=aligned,
    )
    demo_replay = None
    if settings.dataset_steps:
        if stream.extra_fields:
            raise ValueError("datasets are for single-agent environments")
        # one stream holding the whole dataset; its last window - 1 steps start no window (the
        # host buffer samples them), as a step is sampleable here once its whole window is stored
        demo_replay = replace(replay, num_envs=1, steps_per_env=max(settings.dataset_steps, window))
    # the seeds share the dataset's data (held once, and not in checkpoints: it is read again
    # from the dataset, whose hash is checked); prioritised sampling moves only the sum tree,
    # which each seed keeps in its state

    def seed_part(demos: Any) -> Any:
        return demos.replace(experience=None) if prioritized else None

    def with_data(part: Any, shared: Any) -> Any:
        """The whole dataset buffer a seed samples: the shared data under its priorities."""
        return part.replace(experience=shared.experience) if prioritized else shared

    share = float(settings.dataset_share)
    reset_envs = jax.vmap(env.reset)
    step_envs = jax.vmap(env.step)

    def init(seed: jax.Array) -> RunnerState:
        key = jax.random.fold_in(jax.random.PRNGKey(seed), 7)  # apart from the agent's keys
        env_state, obs = reset_envs(jax.random.split(jax.random.fold_in(key, _RESET), n))
        return _strong(
            RunnerState(
                agent=agent.init(seed, n),
                env_state=env_state,
                obs=stream.observe(obs),
                replay=replay.init(),
                env_step=jnp.zeros((), jnp.int32),
                key=key,
                episode_return=jnp.zeros((n,), jnp.float32),
                episode_length=jnp.zeros((n,), jnp.int32),
                stopped=jnp.zeros((), bool),
                stats=zero_stats(),
                demos=None if demo_replay is None else seed_part(demo_replay.init()),
            )
        )

    def draw(replay_state: Any, demos: Any, key: jax.Array, offline: bool) -> Any:
        """A learner sample: from the replay, or with a dataset from the dataset alone
        (`offline`) or mixed, its rows flagged as demonstrations in `extras["demo"]` (the last
        rows of a mixed batch, as on the host runner)."""
        if demo_replay is None:
            return replay.sample(replay_state, key)
        batch_size = replay.batch_size
        if offline:
            sample, demo_rows = demo_replay.sample(demos, key), batch_size
        elif share > 0:
            sample = sample_mixed(replay, replay_state, demo_replay, demos, key, share)
            demo_rows = mixed_split(batch_size, share)
        else:
            sample, demo_rows = replay.sample(replay_state, key), 0
        flag = (jnp.arange(batch_size) >= batch_size - demo_rows).astype(jnp.float32)
        extras = {**sample.batch.extras, "demo": flag}
        return sample._replace(batch=sample.batch._replace(extras=extras))

    counts = dict(agent.trace_counts)

    def metrics_of(seed: jax.Array) -> dict:
        demos = None if demo_replay is None else demo_replay.init()
        batch = draw(replay.init(), demos, jax.random.PRNGKey(seed), False).batch
        return agent.update_fn(agent.init(seed, n), batch)[1]

    metric_shapes = jax.eval_shape(metrics_of, 0)
    agent.trace_counts.update(counts)  # a shape query, not a compilation
    metric_names = [k for k in metric_shapes if k != "finite"]

    def zero_stats() -> ChunkStats:
        return ChunkStats(
            episodes=jnp.zeros((), jnp.int32),
            return_sum=jnp.zeros((), jnp.float32),
            length_sum=jnp.zeros((), jnp.int32),
            wins=jnp.zeros((), jnp.int32),
            updates=jnp.zeros((), jnp.int32),
            metric_sums={k: jnp.zeros((), jnp.float32) for k in metric_names},
            metric_counts={k: jnp.zeros((), jnp.int32) for k in metric_names},
        )

    def learn(carry, shared: Any, offline: bool = False):
        state, stats = carry
        k_sample = jax.random.fold_in(
            jax.random.fold_in(state.key, _SAMPLE), state.agent.learner_step
        )
        demos = None if demo_replay is None else with_data(state.demos, shared)
        sample = draw(state.replay, demos, k_sample, offline)
        new_agent, metrics, td_abs = agent.update_fn(state.agent, sample.batch)
        finite = metrics["finite"]
        replay_state = state.replay
        if prioritized:
            weights = sample.batch.weights
            if offline:
                demos = demo_replay.update_priorities(demos, sample.indices, td_abs, weights)
            elif demo_replay is not None and share > 0:
                replay_state, demos = update_priorities_mixed(
                    replay, replay_state, demo_replay, demos, sample.indices, td_abs, share,
                    weights,
                )  # fmt: skip
            else:
                replay_state = replay.update_priorities(
                    replay_state, sample.indices, td_abs, weights
                )
            replay_state = _where_tree(finite, replay_state, state.replay)
        # what the seed keeps of the dataset buffer (its priorities, if any; never the data)
        kept_demos = state.demos
        if demo_replay is not None:
            kept_demos = _where_tree(finite, seed_part(demos), state.demos)
        state = state._replace(
            agent=_where_tree(finite, new_agent, state.agent),
            replay=replay_state,
            demos=kept_demos,
            stopped=state.stopped | ~finite,
        )
        # a NaN metric of a finite update was not measured at that step (as on the host runner)
        measured = {k: finite & ~jnp.isnan(metrics[k]) for k in metric_names}
        stats = stats._replace(
            updates=stats.updates + finite,
            metric_sums={
                k: stats.metric_sums[k] + jnp.where(measured[k], metrics[k], 0.0)
                for k in metric_names
            },
            metric_counts={k: stats.metric_counts[k] + measured[k] for k in metric_names},
        )
        return state, stats

    def vector_step(carry, shared):
        state, stats = carry
        step = state.env_step
        params = agent.acting_params(state.agent)
        key = state.agent.key

        def act(mode):
            return agent.act_fn(params, state.agent.memory, state.obs, key, step, mode)

        if agent.random_steps > 0:
            random_action, random_memory = act("random")
            explore_action, explore_memory = act("explore")
            warm = step < agent.random_steps
            action = jnp.where(warm, random_action, explore_action)
            memory = _where_tree(warm, random_memory, explore_memory)
        else:
            action, memory = act("explore")
        env_keys = jax.random.split(
            jax.random.fold_in(jax.random.fold_in(state.key, _ENV), step // n), n
        )
        env_state, ts = step_envs(env_keys, state.env_state, action)
        ended = ts.terminated | ts.truncated
        reward = ts.reward.astype(jnp.float32)
        replay_state = replay.add(state.replay, stream.transition(state.obs, action, ts))
        agent_state = state.agent.replace(memory=memory)
        if agent.episodic_memory:
            agent_state = agent_state.replace(
                memory=agent.reset_memory_fn(agent_state.memory, ended)
            )
        episode_return = state.episode_return + reward
        episode_length = state.episode_length + 1
        stats = stats._replace(
            episodes=stats.episodes + jnp.sum(ended),
            return_sum=stats.return_sum + jnp.sum(jnp.where(ended, episode_return, 0.0)),
            length_sum=stats.length_sum + jnp.sum(jnp.where(ended, episode_length, 0)),
            wins=stats.wins + jnp.sum(ended & stream.won(ts)),
        )
        state = state._replace(
            agent=agent_state,
            env_state=env_state,
            obs=stream.observe(ts.obs),
            replay=replay_state,
            env_step=step + n,
            episode_return=jnp.where(ended, 0.0, episode_return),
            episode_length=jnp.where(ended, 0, episode_length),
        )
        # one learner step per `update_every` env steps passed, once replay holds enough
        due = (step + n) // agent.update_every - step // agent.update_every
        can = (replay.size(replay_state) >= agent.learning_starts) & ~state.stopped
        state, stats = jax.lax.fori_loop(
            0, jnp.where(can, due, 0), lambda _, c: learn(c, shared), (state, stats)
        )
        return state, stats

    def run(
        state: RunnerState, num_vector_steps: Any, shared: Any = None
    ) -> tuple[RunnerState, ChunkStats]:
        """`num_vector_steps` more vector steps (`shared`: the dataset buffer every seed reads,
        where they share one); also returns the sums since the last record."""
        state, stats = jax.lax.fori_loop(
            0,
            num_vector_steps,
            lambda _, carry: vector_step(carry, shared),
            (state, state.stats),
        )
        return state._replace(stats=stats), stats

    def evaluate(agent_state: AgentState, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Greedy returns of `eval_episodes` episodes run side by side, and whether each was won
        (false where the environment has no wins): ([episodes], [episodes])."""
        episodes = settings.eval_episodes
        env_state, obs = reset_envs(jax.random.split(key, episodes))
        memory = agent.initial_memory(episodes)
        params = agent.acting_params(agent_state)

        def body(carry, t):
            env_state, obs, memory, total, won, done = carry
            action, memory = agent.act_fn(params, memory, obs, agent_state.key, t, "greedy")
            keys = jax.random.split(jax.random.fold_in(key, t), episodes)
            env_state, ts = step_envs(keys, env_state, action)
            total = total + jnp.where(done, 0.0, ts.reward)
            won = won | (~done & stream.won(ts))
            done = done | ts.terminated | ts.truncated
            return (env_state, stream.observe(ts.obs), memory, total, won, done), None

        carry = (
            env_state,
            stream.observe(obs),
            memory,
            jnp.zeros((episodes,), jnp.float32),
            jnp.zeros((episodes,), bool),
            jnp.zeros((episodes,), bool),
        )
        carry, _ = jax.lax.scan(body, carry, jnp.arange(settings.max_episode_steps))
        return carry[3], carry[4]

    if demo_replay is None:
        return TrainFunctions(init, run, evaluate)

    def offline(
        state: RunnerState, num_updates: Any, shared: Any = None
    ) -> tuple[RunnerState, ChunkStats]:
        """`num_updates` learner steps on samples of the dataset alone (fewer if one is not
        finite: it is discarded and `stopped` set); also returns the sums since the last
        record. The environments do not move."""

        def more(carry):
            i, (state, _) = carry
            return (i < num_updates) & ~state.stopped

        def body(carry):
            i, inner = carry
            return i + 1, learn(inner, shared, offline=True)

        _, (state, stats) = jax.lax.while_loop(more, body, (0, (state, state.stats)))
        return state._replace(stats=stats), stats

    def load_demos(transitions: dict[str, Any]) -> Any:
        return demo_replay.extend(demo_replay.init(), transitions)

    return TrainFunctions(init, run, evaluate, offline, load_demos, seed_part, demo_replay.init)


# ------------------------------------------------------------------------------------- host side
#: environment id prefixes that name JAX-native environments (run on the device runner)
JAX_ENV_PREFIXES = ("gymnax:", "playground:")


def is_jax_env(env_id: str) -> bool:
    """Whether `env_id` names a JAX-native environment (stepped inside jit): single-agent
    (gymnax:, playground:) or multi-agent (jaxmarl:, factorl:)."""
    return env_id.startswith(JAX_ENV_PREFIXES) or is_marl_env(env_id)


def agent_for_jax_env(cfg: Config, env: Any) -> Any:
    """The configured agent for a JAX environment's spec (the same class the host runner uses);
    a one-line error where a single-agent algorithm meets a multi-agent environment or the
    reverse."""
    multi_agent = hasattr(env.spec, "num_agents")
    agent_class = algorithm_for(cfg, multi_agent)
    if multi_agent:
        obs_space, action_space = marl_spaces(env.spec)
    else:
        obs_space, action_space = jax_env_spaces(env.spec)
    return agent_class(cfg.agent, obs_space, action_space, cfg.replay)


def over_seeds(f: Callable, in_axes: int | tuple[int | None, ...] = 0) -> Callable:
    """`f` vmapped over a leading seed axis (`in_axes` as vmap's: 0 or None per argument),
    except that a single seed runs unbatched, its axis dropped and put back.

    Under vmap a data-dependent `lax.cond` computes both branches and selects, so a branch that
    is rarely taken (the learners' extra pass for truncations inside replay windows) costs every
    step; one seed, the common case, keeps it a branch.
    """
    batched = jax.vmap(f, in_axes=in_axes)

    def mapped(*args: Any) -> Any:
        axes = in_axes if isinstance(in_axes, tuple) else (in_axes,) * len(args)
        seeded = [a for a, axis in zip(args, axes, strict=True) if axis == 0]
        if any(x.shape[0] != 1 for x in jax.tree_util.tree_leaves(seeded)):
            return batched(*args)
        drop = [
            jax.tree_util.tree_map(lambda x: x[0], a) if axis == 0 else a
            for a, axis in zip(args, axes, strict=True)
        ]
        return jax.tree_util.tree_map(lambda x: x[None], f(*drop))

    return mapped


#: compiled programs by configuration, so runs of one configuration in a process (a resume, a
#: sweep's repeats) compile once; a few are kept
_PROGRAMS: dict[str, Program] = {}
_PROGRAMS_KEPT = 4


class Program(NamedTuple):
    """A configuration's environment, agent and `TrainFunctions`, vmapped over seeds and
    jitted. `run` and `offline` take their state as donated: use the state they return; their
    third argument, the dataset buffer every seed reads, is not vmapped."""

    env: Any
    agent: Any
    init: Callable
    run: Callable
    evaluate: Callable
    offline: Callable | None = None
    load_demos: Callable | None = None  # unbatched: one dataset buffer
    seed_part: Callable | None = None  # as `TrainFunctions.seed_part`
    empty_demos: Callable | None = None  # unbatched


def _compiled_program(cfg: Config, dataset_steps: int = 0) -> Program:
    """The `Program` for `cfg` (with a dataset of `dataset_steps` steps, if > 0); the same
    objects for every configuration that differs only in seeds and loop settings."""
    key = json.dumps(
        [
            cfg.algo,
            asdict(cfg.agent),
            asdict(cfg.replay),
            cfg.env.id,
            cfg.env.num_envs,
            cfg.runner.eval_episodes,
            [dataset_steps, cfg.data.share] if dataset_steps else None,
        ],
        sort_keys=True,
    )
    if key in _PROGRAMS:
        return _PROGRAMS[key]
    try:
        env = make_marl_env(cfg.env.id) if is_marl_env(cfg.env.id) else make_jax_env(cfg.env.id)
        agent = agent_for_jax_env(cfg, env)
    except ValueError as e:
        raise ConfigError(str(e)) from e
    settings = DeviceSettings(
        num_envs=cfg.env.num_envs,
        eval_episodes=cfg.runner.eval_episodes,
        max_episode_steps=env.spec.max_episode_steps,
        dataset_steps=dataset_steps,
        dataset_share=cfg.data.share if dataset_steps else 0.0,
    )
    try:
        fns = make_train(agent, env, settings)
    except ValueError as e:
        raise ConfigError(str(e)) from e
    # the state is donated: a chunk updates the replay buffer in place instead of writing a
    # copy of it, so the largest array is held once; callers use the state it returns
    donated = {"donate_argnums": 0}
    program = Program(
        env,
        agent,
        jax.jit(over_seeds(fns.init)),
        jax.jit(over_seeds(fns.run, in_axes=(0, None, None)), **donated),
        jax.jit(over_seeds(fns.evaluate)),
        None
        if fns.offline is None
        else jax.jit(over_seeds(fns.offline, (0, None, None)), **donated),
        None if fns.load_demos is None else jax.jit(fns.load_demos),
        fns.seed_part,
        fns.empty_demos,
    )
    while len(_PROGRAMS) >= _PROGRAMS_KEPT:
        _PROGRAMS.pop(next(iter(_PROGRAMS)))
    _PROGRAMS[key] = program
    return program


class DeviceTrainer(RunSession):
    """One device run: S seeds x N JAX environments in one compiled program, driven in chunks.

    Between chunks of `log_every` env steps the host writes one "train" record per seed (the
    mean return of the episodes finished in the chunk and the learner metrics averaged over its
    updates), then evaluates, checkpoints and shows progress as they fall due (`RunSession`). A
    checkpoint holds every seed's `RunnerState` (parameters, optimiser, replay, environment
    states, keys), so resume is exact.
    """

    def _build(self) -> None:
        cfg = self.cfg
        if cfg.env.action_repeat != 1:
            raise ConfigError("env.action_repeat is for host environments; the device runner has 1")
        if not cfg.runner.save_replay:
            raise ConfigError(
                "runner.save_replay false is for host environments; a device run's replay is "
                "part of its run state, which every checkpoint holds whole (drop "
                "--runner.no-save-replay)"
            )
        self.dataset = _read_dataset(cfg) if cfg.data.dataset is not None else None
        program = _compiled_program(cfg, self.dataset.steps if self.dataset else 0)
        self.env, self.agent = program.env, program.agent
        self._program = program
        self.reports_wins = bool(getattr(self.env.spec, "reports_wins", False))
        self.seeds = np.arange(cfg.run.seed, cfg.run.seed + cfg.run.num_seeds, dtype=np.int32)
        _check_memory(program, self.seeds, cfg.runner.eval_episodes)
        self.state = program.init(self.seeds)
        self.shared_demos = None  # the dataset buffer every seed reads
        if self.dataset is not None:
            self.shared_demos = program.load_demos(self.dataset.transitions())
            # every seed starts from the same priorities (if sampling is prioritised), its own
            part = program.seed_part(self.shared_demos)
            self.state = self.state._replace(demos=_per_seed(part, len(self.seeds)))

    def _start(self) -> None:
        self.loop = Counters()

    def _restore(self, checkpoint: Path, notes: list[str]) -> list[dict[str, Any]]:
        template = _checkpoint_template(self._program, self.state, checkpoint)
        leaves, treedef = jax.tree_util.tree_flatten(template)
        saved, _, meta = ckpt.load_checkpoint(checkpoint, leaves)
        if meta.get("algo") != self.cfg.algo or meta.get("runner") != "device":
            raise ckpt.CheckpointError(
                f"{checkpoint} was not written by the device runner for {self.cfg.algo!r}"
            )
        _check_dataset(checkpoint, meta, self.dataset)
        loop = meta.get("loop", {})
        try:
            last = loop.get("last_eval_return")
            self.loop = Counters(
                env_step=int(loop["env_step"]),
                eval_round=int(loop["eval_round"]),
                offline_step=int(loop.get("offline_step", 0)),  # none before datasets
                wall_time=float(loop["wall_time"]),
                last_eval_return=None if last is None else float(last),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ckpt.CheckpointError(f"checkpoint {checkpoint} is corrupt: {e!r}") from e
        if self.loop.offline_step < 0:
            raise ckpt.CheckpointError(f"checkpoint {checkpoint} is corrupt: offline_step < 0")
        self.state = _in_current_layout(
            self._program, jax.tree_util.tree_unflatten(treedef, [jnp.asarray(x) for x in saved])
        )
        if int(self.state.env_step[0]) != self.loop.env_step:
            raise ckpt.CheckpointError(f"checkpoint {checkpoint} is corrupt: env steps differ")
        unwritten = meta.get("unwritten_records", [])
        return unwritten if isinstance(unwritten, list) else []

    def _load_finished(self, checkpoint: Path) -> None:
        self._restore(checkpoint, [])

    def _describe(self) -> str:
        cfg = self.cfg
        seeds = f"{cfg.run.num_seeds} seeds x " if cfg.run.num_seeds > 1 else ""
        backend = jax.default_backend()
        text = f" ({seeds}{cfg.env.num_envs} environments, device runner on {backend})"
        if self.dataset is not None:
            text += (
                f" with dataset {self.dataset.name} ({self.dataset.steps} steps, share "
                f"{cfg.data.share:g} of each online batch)"
            )
        return text

    def _write_checkpoint(self, wall_time: float) -> Path:
        loop = self.loop
        meta = {
            "algo": self.cfg.algo,
            "runner": "device",
            "loop": {
                "env_step": loop.env_step,
                "eval_round": loop.eval_round,
                "offline_step": loop.offline_step,
                "wall_time": wall_time,
                "last_eval_return": loop.last_eval_return,
            },
            "versions": {"jax": jax.__version__, "numpy": np.__version__},
            "unwritten_records": self.logger.unwritten if self.logger else [],
        }
        if self.dataset is not None:
            meta["dataset"] = {
                "id": self.dataset.name,
                "sha256": self.dataset.sha256,
                "steps": self.dataset.steps,
                # whether the state holds the dataset's data (a copy per seed), as it did
                # with prioritised sampling before factorl kept only the priorities there
                "in_state": False,
            }
        # the state's stats count each metric's measurements (older checkpoints: no key)
        meta["metric_counts"] = True
        return ckpt.save_checkpoint(
            self.run_dir / CHECKPOINT_DIR,
            loop.env_step,
            jax.tree_util.tree_leaves(self.state),
            {},
            meta,
            self.cfg.runner.keep_checkpoints,
        )

    def _learner_steps(self) -> np.ndarray:
        return np.asarray(self.state.agent.learner_step)

    def _eval_episodes(self, stream: int, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        keys = np.stack(
            [
                np.asarray(jax.random.PRNGKey(episode_seed(int(seed), stream, index)))
                for seed in self.seeds
            ]
        )
        # [S, episodes]
        returns, won = jax.device_get(self._program.evaluate(self.state.agent, keys))
        return np.asarray(returns), np.asarray(won) if self.reports_wins else None

    def record_chunk(self, stats: ChunkStats) -> None:
        """The "train" record of every seed from the sums since the last one."""
        stats = jax.device_get(stats)
        learner_steps = self._learner_steps()
        for s in range(len(self.seeds)):
            record = self._record_head("train", learner_steps[s])
            record["episodes"] = int(stats.episodes[s])
            if stats.episodes[s] > 0:
                record["episode_return"] = float(stats.return_sum[s] / stats.episodes[s])
                if self.reports_wins:
                    record["episode_win_rate"] = float(stats.wins[s] / stats.episodes[s])
            for key, total in stats.metric_sums.items():
                # left out when no update since the last record measured it
                if stats.metric_counts[key][s] > 0:
                    record[key] = float(total[s] / stats.metric_counts[key][s])
            self.logger.record(self._per_seed(record, s))

    def offline_left(self) -> int:
        return self.cfg.data.offline_steps - self.loop.offline_step if self.dataset else 0

    def advance_offline(self, limit: int | None = None) -> None:
        """Learner steps on the dataset alone in one jitted call for every seed, up to the next
        "train" record, checkpoint or the phase's end (and at most `limit`), and the record due."""
        runner, before = self.cfg.runner, self.loop.offline_step
        due = [(before // every + 1) * every - before
               for every in (runner.log_every, runner.checkpoint_every)]  # fmt: skip
        count = min(self.offline_left(), *due, *([limit] if limit is not None else []))
        state, stats = self._program.offline(self.state, np.int32(count), self.shared_demos)
        self._mid_step = True
        # after a discarded update, the learner steps every seed did take before it
        stopped = bool(np.asarray(state.stopped).any())
        self.loop.offline_step = before + (int(stats.updates.min()) if stopped else count)
        record = (
            crossed(before, self.loop.offline_step, runner.log_every) or not self.offline_left()
        )
        self._finish_chunk(state, stats, record, f"at offline step {self.loop.offline_step}")

    def advance(self, end_step: int) -> int:
        """One jitted chunk for every seed, up to the next point where something falls due (a
        record, an evaluation, a checkpoint, the end), and the records due."""
        n, runner = self.cfg.env.num_envs, self.cfg.runner
        before = self.loop.env_step
        learner_steps = self._learner_steps()[0]
        # the next multiple of each interval: chunks end on the same grid however a run was cut
        due = [(before // every + 1) * every for every in (runner.log_every, runner.eval_every,
                                                          runner.checkpoint_every)]  # fmt: skip
        vector_steps = max(1, -(-(min(end_step, *due) - before) // n))
        state, stats = self._program.run(self.state, np.int32(vector_steps), self.shared_demos)
        self._mid_step = True
        self.loop.env_step = int(np.asarray(state.env_step)[0])
        record = crossed(before, self.loop.env_step, runner.log_every)
        self._finish_chunk(state, stats, record, f"before env step {self.loop.env_step}")
        return int(self._learner_steps()[0] - learner_steps)

    def _finish_chunk(
        self, state: RunnerState, stats: ChunkStats, record: bool, where: str
    ) -> None:
        """Keep a chunk's state; write its "train" records if `record` (or learning stopped)
        and zero the sums; after a discarded non-finite update, checkpoint and stop."""
        self.state = state
        stopped = bool(np.asarray(state.stopped).any())
        if stopped or record:
            self.record_chunk(stats)
            self.state = state._replace(stats=jax.tree_util.tree_map(jnp.zeros_like, stats))
        if stopped:
            path = self.save()
            raise TrainingStopped(
                f"non-finite loss or gradient {where}; the update was discarded and learning "
                f"stopped; checkpoint {path}. Try a lower learning rate."
            )


def _read_dataset(cfg: Config) -> Any:
    """The configured dataset, checked against the JAX environment's spaces."""
    from factorl.io.datasets import read_dataset

    dataset = read_dataset(cfg.data.dataset)
    dataset.check_spaces(*jax_env_spaces(make_jax_env(cfg.env.id).spec), cfg.env.id)
    dataset.check_action_repeat(cfg.env.action_repeat)
    return dataset


def _check_dataset(path: Path, meta: dict[str, Any], dataset: Any) -> None:
    """A checkpoint error unless the checkpoint was trained on `dataset` (or neither on one)."""
    saved = meta.get("dataset")
    if dataset is None and saved is None:
        return
    if dataset is None or not isinstance(saved, dict):
        which = "no dataset" if dataset is None else f"dataset {dataset.name}"
        raise ckpt.CheckpointError(
            f"checkpoint {path} was{'' if saved else ' not'} trained with a dataset, but this "
            f"run's config names {which}; resume with the config it was trained with"
        )
    if saved.get("sha256") != dataset.sha256:
        raise ckpt.CheckpointError(
            f"dataset {dataset.name} is not the data this run trained on (SHA-256 "
            f"{str(saved.get('sha256'))[:12]}... saved, {dataset.sha256[:12]}... now); restore "
            "that dataset or start a new run"
        )


# ------------------------------------------------------------------------------------- saved runs
def load_device_run(cfg: Config, checkpoint: Path, episodes: int | None = None) -> tuple:
    """(agent, program's evaluate, every seed's agent state, every seed's env step) of a device
    run's checkpoint; the state is read against an abstract template, so no replay buffer is
    allocated (nor the dataset read: its buffer's size comes from the checkpoint)."""
    program, state = _load_run(cfg, checkpoint, episodes)
    return program.agent, program.evaluate, state.agent, np.asarray(state.env_step)


def _unverified_meta(checkpoint: Path) -> dict[str, Any]:
    """A checkpoint's manifest ({}: no readable one), read before verification only to shape
    the template the state is loaded against: `load_checkpoint` then verifies the manifest and
    refuses a state that does not fit."""
    try:
        meta = json.loads((Path(checkpoint) / ckpt.META_FILE).read_text())
    except (OSError, ValueError):
        return {}  # load_checkpoint reports what is wrong with it
    return meta if isinstance(meta, dict) else {}


def _saved_dataset_steps(checkpoint: Path) -> int:
    """The size of the dataset a checkpoint's state holds a buffer of (0: none)."""
    saved = _unverified_meta(checkpoint).get("dataset")
    steps = saved.get("steps", 0) if isinstance(saved, dict) else 0
    return steps if isinstance(steps, int) and 0 <= steps < 2**40 else 0


def _load_run(cfg: Config, checkpoint: Path, episodes: int | None) -> tuple[Program, Any]:
    """A device run's program and its checkpoint's `RunnerState` (see `load_device_run`)."""
    if episodes is not None:
        cfg = replace(cfg, runner=replace(cfg.runner, eval_episodes=episodes))
    program = _compiled_program(cfg, _saved_dataset_steps(checkpoint))
    seeds = np.arange(cfg.run.seed, cfg.run.seed + cfg.run.num_seeds, dtype=np.int32)
    init_shapes = jax.eval_shape(program.init, seeds)
    template = _checkpoint_template(program, init_shapes, checkpoint)
    leaves, treedef = jax.tree_util.tree_flatten(template)
    saved, _, meta = ckpt.load_checkpoint(checkpoint, leaves)
    if meta.get("runner") != "device":
        raise ckpt.CheckpointError(f"{checkpoint} was not written by the device runner")
    if episodes is not None:
        _check_evaluation_memory(init_shapes, episodes)
    state = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(x) for x in saved])
    return program, _in_current_layout(program, state)


def _bytes(tree: Any) -> int:
    return sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(tree))


def _evaluation_bytes(init_shapes: RunnerState, episodes: int) -> int:
    """What an evaluation of `episodes` episodes per seed holds beyond the run's state: that
    many environments side by side per seed, sized from the run's own environments."""
    seeds, envs = init_shapes.episode_return.shape
    per_env = _bytes((init_shapes.env_state, init_shapes.obs)) / (seeds * envs)
    return int(per_env * seeds * episodes)


def _check_memory(program: Program, seeds: np.ndarray, eval_episodes: int) -> None:
    """Refuse a run whose state (every seed's replay, parameters and environments, and the
    dataset buffer) and evaluation environments are larger than the device's free memory,
    before allocating them: otherwise the allocation fails mid-way, or on a CPU the kernel
    kills the process without a word."""
    # abstract, and jit keeps this trace for the call of program.init that follows
    init = jax.eval_shape(program.init, seeds)
    state = _bytes(init) + (
        0 if program.empty_demos is None else _bytes(jax.eval_shape(program.empty_demos))
    )
    evaluation = _evaluation_bytes(init, eval_episodes)
    available = _free_device_memory()
    if available is not None and state + evaluation > available:
        raise ConfigError(
            f"the run's state ({len(seeds)} seeds' replay buffers, networks and environments) "
            f"and its evaluations ({eval_episodes} episodes side by side per seed) need "
            f"{(state + evaluation) / 2**30:.1f} GiB but {available / 2**30:.1f} GiB of "
            f"{jax.default_backend()} memory is free; lower replay.capacity, "
            "runner.eval_episodes or run.num_seeds"
        )


def _check_evaluation_memory(init_shapes: RunnerState, episodes: int) -> None:
    """Refuse an evaluation of a saved run whose environments, `episodes` side by side per
    seed, are larger than the device's free memory (after its agents are loaded)."""
    needed = _evaluation_bytes(init_shapes, episodes)
    available = _free_device_memory()
    if available is not None and needed > available:
        raise ConfigError(
            f"{episodes} episodes side by side per seed need {needed / 2**30:.1f} GiB but "
            f"{available / 2**30:.1f} GiB of {jax.default_backend()} memory is free; lower "
            "--episodes"
        )


def _free_device_memory() -> int | None:
    """Bytes free on the default device: the host's available memory on a CPU, the
    allocator's limit less what is in use on an accelerator; None where it cannot be told."""
    if jax.default_backend() == "cpu":
        return available_memory_bytes()
    stats = jax.devices()[0].memory_stats() or {}
    if "bytes_limit" not in stats:
        return None
    return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))


def _per_seed(tree: Any, seeds: int) -> Any:
    """`tree` with a leading seed axis of `seeds` equal copies."""
    return jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (seeds, *x.shape)), tree)


def _checkpoint_template(program: Program, state: Any, checkpoint: Path) -> Any:
    """The state (or its abstract shape) a checkpoint holds: `state`, in the layout of the
    factorl that wrote it. Older layouts: a copy of the whole dataset buffer per seed in the
    state (its manifest's dataset says "in_state": true, or, older, nothing), and stats without
    per-metric counts (its manifest has no "metric_counts")."""
    meta = _unverified_meta(checkpoint)
    if meta.get("metric_counts") is not True:
        state = state._replace(stats=state.stats._replace(metric_counts=None))
    saved = meta.get("dataset")
    if program.empty_demos is None or not isinstance(saved, dict):
        return state
    if saved.get("in_state") is False:
        return state
    seeds = state.env_step.shape[0]
    copies = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct((seeds, *x.shape), x.dtype),
        jax.eval_shape(program.empty_demos),
    )
    return state._replace(demos=copies)


def _in_current_layout(program: Program, state: Any) -> Any:
    """A loaded state in this factorl's layout, whichever its checkpoint had: only what each
    seed keeps of the dataset buffer (its priorities, or nothing), and a count per metric (an
    older state's sums counted every update; a NaN sum, which it kept for a metric not measured
    at some step, starts again from zero)."""
    stats = state.stats
    if stats.metric_counts is None:
        sums = stats.metric_sums
        stats = stats._replace(
            metric_sums={k: jnp.where(jnp.isnan(v), 0.0, v) for k, v in sums.items()},
            metric_counts={k: jnp.where(jnp.isnan(v), 0, stats.updates) for k, v in sums.items()},
        )
        state = state._replace(stats=stats)
    if program.seed_part is None or state.demos is None:
        return state
    return state._replace(demos=program.seed_part(state.demos))


def evaluate_device_run(cfg: Config, checkpoint: Path, episodes: int, seed: int) -> dict[str, Any]:
    """Greedy returns of `episodes` episodes per trained seed, run side by side on the device."""
    program, state = _load_run(cfg, checkpoint, episodes)
    seeds = cfg.run.num_seeds
    keys = jax.random.split(jax.random.PRNGKey(seed), seeds)
    returns, won = jax.device_get(program.evaluate(state.agent, keys))  # [seeds, episodes]
    returns = np.asarray(returns, np.float64)
    wins = {}
    if getattr(program.env.spec, "reports_wins", False):
        won = np.asarray(won, np.float64)
        wins = {"win_rate": float(won.mean()), "per_seed_win_rate": won.mean(axis=1).tolist()}
    return {
        "mean": float(returns.mean()),
        "std": float(returns.std()),
        "returns": [float(r) for r in returns.reshape(-1)],
        "per_seed_mean": [float(r) for r in returns.mean(axis=1)],
        "episodes": episodes,
        "env": cfg.env.id,
        "finite": bool(np.isfinite(returns).all()),
        "checkpoint_env_step": int(state.env_step[0]),
        **wins,
    }


# ------------------------------------------------------------------------------ datasets (collect)
# What `factorl.train.collect` needs from a device run: episodes of its agent played in its JAX
# environment, and the replay its checkpoint stores, both as `factorl.io.datasets` takes them.

#: streams of a collected episode's key: its reset, its environment steps, its action noise
_COLLECT_RESET, _COLLECT_ENV, _COLLECT_NOISE = 0, 1, 2


def jax_env_spaces(spec: Any) -> tuple[gymnasium.spaces.Box, gymnasium.spaces.Box]:
    """A single-agent JAX environment's observation and action spaces, as the agent is built
    with them (`agent_for_jax_env`): flat float32 observations, Box actions in the spec's
    bounds."""
    obs_space = gymnasium.spaces.Box(-np.inf, np.inf, tuple(spec.obs_shape), np.float32)
    action_space = gymnasium.spaces.Box(spec.action_low, spec.action_high, dtype=np.float32)
    return obs_space, action_space


def device_run_spaces(cfg: Config) -> tuple[gymnasium.spaces.Box, gymnasium.spaces.Box]:
    """The spaces of a single-agent device run's environment (`jax_env_spaces`)."""
    return jax_env_spaces(make_jax_env(cfg.env.id).spec)


def _collect_program(env: Any, agent: Any, episodes: int) -> Callable:
    """A jitted `play(agent_state, keys, noise) -> steps`: `episodes` episodes side by side, one
    raw key each, for the environment's `max_episode_steps` steps, acting greedily plus
    N(0, noise^2) per action dimension, clipped to the bounds. `steps` holds the fields of
    `_stream(env).transition` (obs acted on, action given, reward, next_obs before any reset,
    terminated, truncated), each [steps, episodes, ...]; an episode's steps after its first end
    belong to the next episode its environment started and are the caller's to drop."""
    spec = env.spec
    stream = _stream(env)
    low, high = jnp.asarray(spec.action_low), jnp.asarray(spec.action_high)
    reset_envs, step_envs = jax.vmap(env.reset), jax.vmap(env.step)

    def keys_for(keys: jax.Array, purpose: int, t: Any = 0) -> jax.Array:
        return jax.vmap(lambda k: jax.random.fold_in(jax.random.fold_in(k, purpose), t))(keys)

    def play(agent_state: AgentState, keys: jax.Array, noise: jax.Array) -> dict:
        env_state, obs = reset_envs(keys_for(keys, _COLLECT_RESET))
        params = agent.acting_params(agent_state)

        def body(carry, t):
            env_state, obs, memory = carry
            action, memory = agent.act_fn(params, memory, obs, agent_state.key, t, "greedy")
            action = action.astype(jnp.float32)
            draws = jax.vmap(lambda k: jax.random.normal(k, action.shape[1:], jnp.float32))(
                keys_for(keys, _COLLECT_NOISE, t)
            )
            # clipped here, not only by the environment, so the dataset holds the action applied
            action = jnp.clip(action + noise * draws, low, high)
            env_state, ts = step_envs(keys_for(keys, _COLLECT_ENV, t), env_state, action)
            return (env_state, stream.observe(ts.obs), memory), stream.transition(obs, action, ts)

        carry = (env_state, stream.observe(obs), agent.initial_memory(episodes))
        _, steps = jax.lax.scan(body, carry, jnp.arange(spec.max_episode_steps))
        return steps

    return jax.jit(play)


def record_device_episodes(
    cfg: Config, checkpoint: Path, episode_seeds: list[int], noise: float
) -> tuple[list[dict[str, np.ndarray]], int]:
    """Episodes of a single-agent device run's first seed (its agent in `checkpoint`), one per
    entry of `episode_seeds`, played side by side in one program on the run's JAX environment
    (`_collect_program`; each episode's reset, steps and noise from its seed), each kept up to
    its first end, as `factorl.io.datasets` stores episodes; and the env step the checkpoint's
    state is at."""
    from factorl.io.datasets import episodes_from_steps

    program, state = _load_run(cfg, checkpoint, None)
    env, agent = program.env, program.agent
    first_seed = jax.tree_util.tree_map(lambda x: x[0], state.agent)
    keys = jnp.stack([jax.random.PRNGKey(s) for s in episode_seeds])
    play = _collect_program(env, agent, len(episode_seeds))
    steps = jax.device_get(play(first_seed, keys, jnp.float32(noise)))
    ended = np.asarray(steps["terminated"]) | np.asarray(steps["truncated"])  # [T, episodes]
    recorded = []
    for e in range(len(episode_seeds)):
        # every episode ends by the time limit, so one end lies within the steps played
        stop = int(np.argmax(ended[:, e])) + 1 if ended[:, e].any() else len(ended)
        episode = {k: np.asarray(v[:stop, e]) for k, v in steps.items()}
        recorded += episodes_from_steps(episode)
    return recorded, int(np.asarray(state.env_step)[0])


def device_replay_streams(
    cfg: Config, checkpoint: Path
) -> tuple[list[dict[str, np.ndarray]], dict]:
    """The steps the first seed's replay holds in a single-agent device run's checkpoint,
    environment by environment, each one's oldest step first (as
    `factorl.replay.host.stored_steps` gives a host replay's: obs, action, reward, next_obs,
    terminated, truncated), and the checkpoint's meta. Stored actions are clipped to the action
    bounds: they are the agent's, and the environment applied them clipped (see
    `factorl.envs.device`). A checkpoint of another runner or algorithm is a CheckpointError, a
    replay laid out otherwise a ValueError."""
    from factorl.replay.host import stored_steps

    meta = ckpt.read_meta(checkpoint)
    if meta.get("runner") != "device" or meta.get("algo") != cfg.algo:
        raise ckpt.CheckpointError(
            f"{checkpoint} was not written by the device runner for {cfg.algo!r}"
        )
    program, state = _load_run(cfg, checkpoint, None)
    env, replay = program.env, state.replay
    experience = {k: np.asarray(v[0]) for k, v in replay.experience.items()}
    written, full = int(np.asarray(replay.current_index)[0]), bool(np.asarray(replay.is_full)[0])
    num_envs, rows = experience["obs"].shape[:2]
    size = rows if full else written
    # flashbax's ring laid out as the host buffer's state, so one reader unrolls both
    state = {
        "num_envs": np.int64(num_envs),
        "capacity": np.int64(num_envs * rows),
        "size": np.int64(size),
        "write_pos": np.int64(written),
        "episode_end": experience["ended"][:, :size],
        **{
            k: experience[k][:, :size]
            for k in ("obs", "action", "reward", "next_obs", "terminated")
        },
    }
    streams = stored_steps(state)
    low, high = env.spec.action_low, env.spec.action_high
    for stream in streams:
        stream["action"] = np.clip(stream["action"], low, high).astype(stream["action"].dtype)
    return streams, meta
