"""The host runner: simulators on the CPU (dm_control, Gymnasium), any agent unchanged.

`num_envs` environments on the host (Gymnasium's synchronous vector API, with resets done here)
feed a NumPy replay buffer with one stream per environment; the agent acts on all of them in one
batched call, and every `update_every` environment steps (summed over environments) its jitted
update runs on a sampled batch. Everything random is derived from the run's seed: network init and
exploration from JAX keys folded with counters, replay sampling from a NumPy Generator whose state
is checkpointed, and every episode's reset from a seed derived from (run seed, episode index),
episodes being numbered in the order they start (environment order within a step). That last
choice is what makes resume exact: a checkpoint taken in the middle of episodes stores the actions
taken so far in each, and resuming resets every environment with its episode's seed and replays
those actions, which rebuilds the simulator states bit for bit on a deterministic environment
(checked against the saved observations).

The run folder, loop cadence and stop handling are `factorl.runners.session.RunSession`'s.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium
import jax
import numpy as np

from factorl.core.agent import SequenceBatch, TrainBatch
from factorl.core.config import Config, ConfigError
from factorl.envs.host import make_env
from factorl.io import checkpoint as ckpt
from factorl.io.runfolder import CHECKPOINT_DIR
from factorl.replay.host import MixedReplay, ReplayBuffer
from factorl.runners.session import (
    EVAL_STREAM,
    TRAIN_STREAM,
    Counters,
    RunSession,
    TrainingStopped,
    algorithm_for,
    crossed,
    episode_seed,
)


@dataclass
class LoopState(Counters):
    """Host-side counters of the loop (saved in every checkpoint).

    Every environment is always inside one episode: `episode_index[i]` (which numbers its reset
    seed), its return, length and actions so far; `episodes_started` is the index the next
    episode gets.
    """

    episodes_done: int = 0
    episodes_started: int = 0
    recent_returns: deque = field(default_factory=lambda: deque(maxlen=10))
    pending_metrics: list = field(default_factory=list)  # learner metrics since the last record
    episode_index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    episode_return: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    episode_length: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    episode_actions: list = field(default_factory=list)  # per environment, a list of actions

    @classmethod
    def starting(cls, num_envs: int) -> LoopState:
        """Counters of a fresh run: environment i in episode i."""
        return cls(
            episodes_started=num_envs,
            episode_index=np.arange(num_envs, dtype=np.int64),
            episode_return=np.zeros(num_envs, np.float64),
            episode_length=np.zeros(num_envs, np.int64),
            episode_actions=[[] for _ in range(num_envs)],
        )


def build_agent(cfg: Config, env) -> Any:
    """The configured agent for a host environment's spaces; a ValueError where a multi-agent
    algorithm meets a single-agent environment or the reverse."""
    agent_class = algorithm_for(cfg, hasattr(env.unwrapped, "marl_spec"))
    return agent_class(cfg.agent, env.observation_space, env.action_space, cfg.replay)


def env_or_config_error(cfg: Config, seed: int | None = None):
    """`make_env` for a config, with an unknown or unusable environment as a ConfigError."""
    try:
        return make_env(cfg.env.id, seed=seed, action_repeat=cfg.env.action_repeat)
    except ValueError as e:
        raise ConfigError(str(e)) from e


def _vector_env(cfg: Config) -> gymnasium.vector.SyncVectorEnv:
    """`num_envs` training environments behind Gymnasium's vector API. Autoreset is off: the
    loop resets finished environments itself, each with its episode's seed (exact resume)."""
    return gymnasium.vector.SyncVectorEnv(
        [lambda: env_or_config_error(cfg, cfg.run.seed) for _ in range(cfg.env.num_envs)],
        autoreset_mode=gymnasium.vector.AutoresetMode.DISABLED,
    )


def _finite(obs: Any, reward: np.ndarray) -> bool:
    parts = obs.values() if isinstance(obs, Mapping) else [obs]
    return all(bool(np.isfinite(x).all()) for x in parts) and bool(np.isfinite(reward).all())


# A multi-agent observation is a dict of arrays (`factorl.envs.marl.marl_spaces`); these helpers
# let the loop hold either kind, with or without the environment axis.
def _obs_map(fn, obs: Any) -> Any:
    if isinstance(obs, Mapping):
        return {name: fn(value) for name, value in obs.items()}
    return fn(obs)


def _obs_arrays(obs: Any) -> dict[str, np.ndarray]:
    """Named arrays of an observation, as a checkpoint stores them: `obs` for an array,
    `obs.<part>` for a dict."""
    if isinstance(obs, Mapping):
        return {f"obs.{name}": np.asarray(value) for name, value in obs.items()}
    return {"obs": np.asarray(obs)}


def _obs_specs(space: gymnasium.Space) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """(shape, dtype) of each of `_obs_arrays`' names for one environment's observation."""
    if isinstance(space, gymnasium.spaces.Dict):
        return {f"obs.{name}": (sub.shape, np.dtype(sub.dtype)) for name, sub in space.items()}
    return {"obs": (space.shape, np.dtype(np.float32))}


def _set_env_obs(obs: Any, i: int, value: Any) -> None:
    if isinstance(obs, Mapping):
        for name in obs:
            obs[name][i] = value[name]
    else:
        obs[i] = value


# ------------------------------------------------------------------------------------- evaluation
def run_episodes(
    agent, state, env, seed: int, index: tuple[int, ...], episodes: int, stream: int = EVAL_STREAM
) -> list[float]:
    """Greedy returns of `episodes` episodes with reproducible resets. An episode whose
    environment returns a non-finite observation or reward ends there with return NaN, which
    `factorl eval` reports as not finite and training stops on."""
    returns = []
    state = agent.with_num_envs(state, 1)
    for ep in range(episodes):
        obs, _ = env.reset(seed=episode_seed(seed, stream, *index, ep))
        state = agent.begin_episodes(state)
        total, done, step = 0.0, False, 0
        while not done:
            action, state = agent.act(state, _obs_map(lambda x: np.asarray(x)[None], obs), step,
                                      "greedy")  # fmt: skip
            obs, reward, terminated, truncated, _ = env.step(action[0])
            if not _finite(obs, np.asarray(reward)):
                total = float("nan")
                break
            total += float(reward)
            done = terminated or truncated
            step += 1
        returns.append(total)
    return returns


# ------------------------------------------------------------------------------------- checkpoints
#: meta["loop_format"] of checkpoints with per-environment episode arrays (earlier ones had one
#: environment's counters in meta and cannot be resumed)
LOOP_FORMAT = 2


#: a replay state's columns that hold the dataset itself (rebuilt from it on resume)
_DATASET_COLUMNS = frozenset({"obs", "action", "reward", "next_obs", "terminated", "episode_end"})


def _save_checkpoint(
    run_dir: Path, cfg: Config, action_size: int, state, replay, loop: LoopState, rng, obs,
    unwritten: list[dict[str, Any]], demos: ReplayBuffer | None = None, dataset=None,
) -> Path:  # fmt: skip
    actions = [np.asarray(a, np.float32).reshape(len(a), action_size) for a in loop.episode_actions]
    arrays = {
        "loop": {
            # float32 also for a multi-agent observation's masks: exact for 0/1, cast back on load
            **{name: value.astype(np.float32) for name, value in _obs_arrays(obs).items()},
            # every environment's actions of its episode so far, one after the other
            "episode_actions": np.concatenate(actions),
            "episode_index": np.asarray(loop.episode_index, np.int64),
            "episode_return": np.asarray(loop.episode_return, np.float64),
            "episode_length": np.asarray(loop.episode_length, np.int64),
            "recent_returns": np.asarray(loop.recent_returns, np.float64),
        }
    }
    if cfg.runner.save_replay:
        arrays["replay"] = replay.state_dict()
    if demos is not None:
        # the dataset's own columns are read again on resume: only what training changes
        # (priorities, counters) is saved, with the data's digest to check it is the same data
        arrays["demos"] = {k: v for k, v in demos.state_dict().items() if k not in _DATASET_COLUMNS}
    meta = {
        "algo": cfg.algo,
        "loop_format": LOOP_FORMAT,
        "loop": {name: getattr(loop, name) for name in _LOOP_FIELDS},
        "numpy_rng": rng.bit_generator.state,
        "learner_step": int(state.learner_step),
        "versions": {"jax": jax.__version__, "numpy": np.__version__},
        # metrics records a failed metrics.jsonl write could not take; written back on resume
        "unwritten_records": unwritten,
    }
    if dataset is not None:
        meta["dataset"] = {"id": dataset.name, "sha256": dataset.sha256}
    return ckpt.save_checkpoint(
        run_dir / CHECKPOINT_DIR, loop.env_step, state, arrays, meta, cfg.runner.keep_checkpoints
    )


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


#: what each saved loop counter must be; a checkpoint is read as data, never trusted
_LOOP_FIELDS = {
    "env_step": _is_count,
    "episodes_done": _is_count,
    "episodes_started": _is_count,
    "eval_round": _is_count,
    "offline_step": _is_count,
    "last_eval_return": lambda v: v is None or _is_number(v),
    "wall_time": lambda v: _is_number(v) and v >= 0,
    "pending_metrics": lambda v: (
        isinstance(v, list)
        and all(isinstance(m, dict) and all(_is_number(x) for x in m.values()) for m in v)
    ),
}


def _checked_loop(
    path: Path, meta: dict[str, Any], arrays: dict, obs_space, action_size: int, num_envs: int
):
    """The loop state and episode arrays of a checkpoint, each field checked."""

    def bad(what: str) -> ckpt.CheckpointError:
        return ckpt.CheckpointError(f"checkpoint {path} is corrupt: {what}. {ckpt.MOVE_ASIDE}")

    if meta.get("loop_format") != LOOP_FORMAT:
        raise ckpt.CheckpointError(
            f"checkpoint {path} was written by an earlier factorl, before runs had several "
            "environments, and cannot be resumed by this version; start a new run"
        )
    saved = meta.get("loop")
    if not isinstance(saved, dict):
        raise bad("its loop counters are missing")
    saved = {"offline_step": 0, **saved}  # checkpoints from before datasets have none
    for name, ok in _LOOP_FIELDS.items():
        if name not in saved or not ok(saved[name]):
            raise bad(f"loop field {name!r} is {saved.get(name, 'missing')!r}")
    if saved["env_step"] != meta.get("env_step"):
        raise bad(f"loop env_step {saved['env_step']} differs from the checkpoint's")
    unwritten = meta.get("unwritten_records", [])
    if not (isinstance(unwritten, list) and all(isinstance(r, dict) for r in unwritten)):
        raise bad("unwritten_records is not a list of records")
    loop = LoopState(**{name: saved[name] for name in _LOOP_FIELDS})
    if loop.episodes_started != loop.episodes_done + num_envs:
        raise bad(
            f"{loop.episodes_started} episodes started and {loop.episodes_done} done do not leave "
            f"one in progress in each of the {num_envs} environments"
        )
    group = arrays.get("loop", {})

    def array(name: str, kind: str, shape: tuple[int, ...]) -> np.ndarray:
        value = group.get(name)
        if value is None or value.dtype.kind != kind or value.shape != shape:
            got = "missing" if value is None else f"{value.dtype}{list(value.shape)}"
            raise bad(f"loop.npz {name} is {got}, expected {shape} of kind {kind!r}")
        return value

    obs_parts = {
        name: array(name, "f", (num_envs, *shape)).astype(dtype)
        for name, (shape, dtype) in _obs_specs(obs_space).items()
    }
    if list(obs_parts) == ["obs"]:
        obs = obs_parts["obs"]
    else:
        obs = {name.removeprefix("obs."): value for name, value in obs_parts.items()}
    index = array("episode_index", "i", (num_envs,))
    lengths = array("episode_length", "i", (num_envs,))
    episode_returns = array("episode_return", "f", (num_envs,))
    actions = array("episode_actions", "f", (int(lengths.sum()), action_size))
    if (lengths < 0).any() or (index < 0).any() or (index >= loop.episodes_started).any():
        raise bad("loop.npz episode_length or episode_index is out of range")
    if len(set(index.tolist())) != num_envs or not np.isfinite(episode_returns).all():
        raise bad("loop.npz episode_index repeats or episode_return is not finite")
    returns = group.get("recent_returns", np.zeros(0))
    if returns.ndim != 1 or len(returns) > 10 or not np.issubdtype(returns.dtype, np.floating):
        raise bad(f"loop.npz recent_returns is {returns.dtype}{list(returns.shape)}")
    loop.recent_returns = deque(returns.tolist(), maxlen=10)
    loop.episode_index = index.astype(np.int64)
    loop.episode_return = episode_returns.astype(np.float64)
    loop.episode_length = lengths.astype(np.int64)
    ends = np.cumsum(lengths)
    loop.episode_actions = [
        list(actions[end - n : end]) for n, end in zip(lengths, ends, strict=True)
    ]
    return loop, obs, unwritten


def _restore_demos(path: Path, meta: dict, arrays: dict, demos: ReplayBuffer, dataset) -> None:
    """Check that the dataset read now is the one the run trained on, and put back what
    training changed in its buffer (priorities, counters) over the data just loaded."""
    saved = meta.get("dataset")
    if not isinstance(saved, dict) or "demos" not in arrays:
        raise ckpt.CheckpointError(
            f"checkpoint {path} has no dataset state, but the run's config names data.dataset. "
            f"{ckpt.MOVE_ASIDE}"
        )
    if saved.get("sha256") != dataset.sha256:
        raise ckpt.CheckpointError(
            f"dataset {dataset.name} is not the data this run trained on (SHA-256 "
            f"{str(saved.get('sha256'))[:12]}... saved, {dataset.sha256[:12]}... now); restore "
            "that dataset or start a new run"
        )
    state = demos.state_dict()
    extra = set(arrays["demos"]) - (set(state) - _DATASET_COLUMNS)
    if extra:
        raise ckpt.CheckpointError(f"{path}: demos.npz has unexpected arrays {sorted(extra)}")
    state.update(arrays["demos"])
    try:
        demos.load_state_dict(state)
    except ValueError as e:
        raise ckpt.CheckpointError(f"{path}: the dataset's buffer does not fit: {e}") from e


def _restore_checkpoint(
    path: Path, cfg: Config, agent, template, replay, rng, envs, notes: list[str],
    demos: ReplayBuffer | None = None, dataset=None,
):  # fmt: skip
    state, arrays, meta = ckpt.load_checkpoint(path, template)
    if meta.get("algo") != cfg.algo:
        raise ckpt.CheckpointError(f"{path} was written by {meta.get('algo')!r}, not {cfg.algo!r}")
    if demos is not None:
        _restore_demos(path, meta, arrays, demos, dataset)
    action_space = envs.single_action_space
    action_size = int(np.prod(action_space.shape))
    loop, saved_obs, unwritten = _checked_loop(
        path, meta, arrays, envs.single_observation_space, action_size, envs.num_envs
    )
    try:
        rng.bit_generator.state = meta["numpy_rng"]
    except (TypeError, ValueError, KeyError) as e:
        raise ckpt.CheckpointError(f"{path}: the replay RNG state is invalid: {e}") from e
    if "replay" in arrays:
        try:
            replay.load_state_dict(arrays["replay"])
        except ValueError as e:
            raise ckpt.CheckpointError(f"{path}: the replay buffer does not fit: {e}") from e
    else:
        notes.append("[factorl] checkpoint has no replay buffer: resuming with an empty one")
    # rebuild every environment's episode in progress by replaying its actions
    obs = _obs_map(np.empty_like, saved_obs)
    for i, env in enumerate(envs.envs):
        reached, _ = env.reset(seed=episode_seed(cfg.run.seed, TRAIN_STREAM, loop.episode_index[i]))
        for action in loop.episode_actions[i]:
            reached = env.step(action.reshape(action_space.shape))[0]
        _set_env_obs(obs, i, reached)
    replayed, saved = _obs_arrays(obs), _obs_arrays(saved_obs)
    if not all(np.array_equal(replayed[name], saved[name]) for name in saved):
        notes.append(
            "[factorl] warning: replaying the episodes in progress did not reproduce the saved "
            "observations (non-deterministic environment?); continuing from the replayed states"
        )
    return state, loop, obs, unwritten


# ------------------------------------------------------------------------------------- the runner
class HostTrainer(RunSession):
    """One host run: the environments, agent, replay and counters, and one method per concern
    (the loop itself is `RunSession.run`)."""

    envs: gymnasium.vector.SyncVectorEnv | None = None
    eval_env: gymnasium.Env | None = None

    def _build(self) -> None:
        cfg = self.cfg
        if cfg.run.num_seeds > 1:
            raise ConfigError(
                f"run.num_seeds trains seeds side by side on JAX-native environments (gymnax:, "
                f"playground:); {cfg.env.id} runs on the host: start one run per seed instead"
            )
        self.eval_env = env_or_config_error(cfg, cfg.run.seed + 1)
        self.envs = _vector_env(cfg)
        try:
            self.agent = build_agent(cfg, self.eval_env)
        except ValueError as e:  # an action space the algorithm cannot use: a config problem
            raise ConfigError(str(e)) from e
        try:
            self.replay = self.agent.make_replay(
                self.eval_env.observation_space.shape, cfg.env.num_envs
            )
        except ValueError as e:
            raise ConfigError(f"replay.capacity: {e}") from e
        self.rng = np.random.default_rng(np.random.SeedSequence([cfg.run.seed, 2]))
        self.state = self.agent.init(cfg.run.seed, cfg.env.num_envs)
        self.action_size = int(np.prod(self.eval_env.action_space.shape))
        # what batches are drawn from online: the replay, or the replay and the dataset mixed
        self.sampler: ReplayBuffer | MixedReplay = self.replay
        self.dataset = self.demos = None
        if cfg.data.dataset is not None:
            self._load_dataset()

    def _load_dataset(self) -> None:
        """The configured dataset, checked against the environment's spaces, in a second
        replay buffer of the agent's layout (one stream, holding all of it)."""
        from factorl.io.datasets import read_dataset

        cfg, env = self.cfg, self.eval_env
        self.dataset = read_dataset(cfg.data.dataset)
        self.dataset.check_spaces(env.observation_space, env.action_space, cfg.env.id)
        self.dataset.check_action_repeat(cfg.env.action_repeat)
        settings = self.agent.replay_settings
        # room for every step, and at least one n-step window or action sequence
        capacity = self.dataset.steps + settings.n_step + self.agent.replay_actions()[1]
        self.agent.replay_settings = dataclasses.replace(settings, capacity=capacity)
        try:
            self.demos = self.agent.make_replay(env.observation_space.shape, 1)
        finally:
            self.agent.replay_settings = settings
        self.demos.extend(self.dataset.transitions())
        if cfg.data.share > 0:
            self.sampler = MixedReplay(self.replay, self.demos, cfg.data.share)

    def _start(self) -> None:
        cfg = self.cfg
        self.loop = LoopState.starting(cfg.env.num_envs)
        seeds = [episode_seed(cfg.run.seed, TRAIN_STREAM, i) for i in range(cfg.env.num_envs)]
        self.obs, _ = self.envs.reset(seed=seeds)
        self.state = self.agent.begin_episodes(self.state)

    def _restore(self, checkpoint: Path, notes: list[str]) -> list[dict[str, Any]]:
        self.state, self.loop, self.obs, unwritten = _restore_checkpoint(
            checkpoint, self.cfg, self.agent, self.state, self.replay, self.rng, self.envs, notes,
            self.demos, self.dataset,
        )  # fmt: skip
        return unwritten

    def _load_finished(self, checkpoint: Path) -> None:
        self.state, _, meta = ckpt.load_checkpoint(checkpoint, self.state)
        last = meta["loop"].get("last_eval_return") if isinstance(meta.get("loop"), dict) else None
        self.loop = LoopState(env_step=meta["env_step"])
        self.loop.last_eval_return = float(last) if _is_number(last) else None

    def _describe(self) -> str:
        n = self.cfg.env.num_envs
        text = f" ({n} environments)" if n > 1 else ""
        if self.dataset is not None:
            text += (
                f" with dataset {self.dataset.name} ({self.dataset.steps} steps, share "
                f"{self.cfg.data.share:g} of each online batch)"
            )
        return text

    def _write_checkpoint(self, wall_time: float) -> Path:
        loop = self.loop
        saved_wall, loop.wall_time = loop.wall_time, wall_time
        try:
            return _save_checkpoint(
                self.run_dir, self.cfg, self.action_size, self.state, self.replay, loop, self.rng,
                self.obs, self.logger.unwritten, self.demos, self.dataset,
            )  # fmt: skip
        finally:
            loop.wall_time = saved_wall

    def _close_envs(self) -> None:
        for env in (self.envs, self.eval_env):
            if env is not None:
                env.close()
        self.envs = self.eval_env = None

    # ------------------------------------------------------------------------------- pieces
    def env_step(self) -> None:
        """Act in every environment, step them, store the transitions, handle episode ends."""
        loop, n = self.loop, self.cfg.env.num_envs
        mode = "random" if loop.env_step < self.agent.random_steps else "explore"
        state_before = self.state
        try:
            actions, self.state = self.agent.act(self.state, self.obs, loop.env_step, mode)
            next_obs, rewards, terminated, truncated, _ = self.envs.step(actions)
        except BaseException:
            # nothing of this step is stored yet: the state before it is the one to save (the
            # simulators are rebuilt on resume by replaying the episodes' actions)
            self.state = state_before
            raise
        if not _finite(next_obs, rewards):
            self.state = state_before
            path = self.save()
            raise TrainingStopped(
                "the environment returned a non-finite observation or reward at env step "
                f"{loop.env_step + 1}; stopped, last good state saved to {path}"
            )
        self._mid_step = True
        if n == 1 and not isinstance(next_obs, Mapping):  # the replay's lean single-step insert
            self.replay.add(
                self.obs[0], actions[0], float(rewards[0]), next_obs[0],
                bool(terminated[0]), bool(truncated[0]),
            )  # fmt: skip
        else:
            self.replay.add(self.obs, actions, rewards, next_obs, terminated, truncated)
        loop.env_step += n
        loop.episode_return += rewards
        loop.episode_length += 1
        for i in range(n):
            loop.episode_actions[i].append(np.asarray(actions[i], np.float32))
        self.obs = next_obs
        ended = terminated | truncated
        if ended.any():
            self._begin_episodes(ended)

    def _begin_episodes(self, ended: np.ndarray) -> None:
        """Record the finished episodes and reset their environments with the next seeds."""
        loop, cfg = self.loop, self.cfg
        seeds: list[int | None] = [None] * len(ended)
        for i in np.flatnonzero(ended).tolist():
            loop.recent_returns.append(float(loop.episode_return[i]))
            record = {
                "event": "episode",
                "env_step": loop.env_step,
                "episode": int(loop.episode_index[i]),
                "episode_return": float(loop.episode_return[i]),
                "episode_length": int(loop.episode_length[i]),
                "wall_time": round(self.wall(), 3),
            }
            self.logger.record({**record, "env": i} if len(ended) > 1 else record)
            loop.episodes_done += 1
            loop.episode_index[i] = loop.episodes_started
            loop.episodes_started += 1
            loop.episode_return[i], loop.episode_length[i] = 0.0, 0
            loop.episode_actions[i] = []
            seeds[i] = episode_seed(cfg.run.seed, TRAIN_STREAM, int(loop.episode_index[i]))
        self.obs, _ = self.envs.reset(seed=seeds, options={"reset_mask": ended})
        self.state = self.agent.begin_episodes(self.state, ended)

    def learn(self, offline: bool = False) -> None:
        """One learner step on a replay sample (`offline`: on a sample of the dataset alone);
        stops on non-finite numbers."""
        size = self.agent.replay_settings.batch_size
        source = self.demos if offline else self.sampler
        sample = source.sample(size, self.rng)
        # a recurrent learner's windows go as they are
        batch = sample if isinstance(sample, SequenceBatch) else TrainBatch.from_sample(sample)
        if self.demos is not None:
            # the dataset's rows are demonstrations: the last `demo_rows` of a batch
            demo_rows = size if offline else getattr(source, "split", lambda b: 0)(size)
            flag = (np.arange(size) >= size - demo_rows).astype(np.float32)
            batch = batch._replace(extras={**batch.extras, "demo": flag})
        new_state, metrics, td_abs = self.agent.update(self.state, batch)
        metrics = jax.device_get(metrics)
        if not bool(metrics.pop("finite")):
            # the update leaves its input intact, so self.state is still the last good state
            path = self.save()
            raise TrainingStopped(
                f"non-finite loss or gradient at env step {self.loop.env_step} (learner step "
                f"{int(self.state.learner_step) + 1}); the update was discarded and the last good "
                f"state saved to {path}. Try a lower learning rate."
            )
        self.state = new_state
        if source.prioritized:  # uniform replay has no priorities to move
            source.update_priorities(sample.indices, np.asarray(td_abs))
        self.loop.pending_metrics.append({k: float(v) for k, v in metrics.items()})

    def record_train(self) -> None:
        loop = self.loop
        record = self._record_head("train", self.state.learner_step)
        record["episodes"] = loop.episodes_done
        if loop.recent_returns:
            record["episode_return"] = float(np.mean(loop.recent_returns))
        # a learner metric that is NaN was not measured at that step (TD3's actor loss on the
        # steps its actor does not move; real NaNs stop the run in `learn`), so it is left out of
        # the average, and out of the record when no step in the window measured it
        for key in loop.pending_metrics[0] if loop.pending_metrics else ():
            values = np.array([m[key] for m in loop.pending_metrics], dtype=np.float64)
            if not np.isnan(values).all():
                record[key] = float(np.nanmean(values))
        loop.pending_metrics = []
        self.logger.record(record)

    def _eval_episodes(self, stream: int, index: int) -> tuple[np.ndarray, None]:
        cfg = self.cfg
        returns = run_episodes(
            self.agent, self.state, self.eval_env, cfg.run.seed, (index,),
            cfg.runner.eval_episodes, stream,
        )  # fmt: skip
        return np.asarray([returns]), None  # no host environment reports wins

    def _learner_steps(self) -> np.ndarray:
        return np.asarray([int(self.state.learner_step)])

    def progress_fields(self, sps: float) -> dict[str, str]:
        fields = super().progress_fields(sps)
        if self.loop.recent_returns:
            fields = {
                "sps": fields.pop("sps"),
                "return": f"{np.mean(self.loop.recent_returns):.1f}",
                **fields,
            }
        return fields

    # ------------------------------------------------------------------------------- the loop
    def offline_left(self) -> int:
        return self.cfg.data.offline_steps - self.loop.offline_step if self.demos else 0

    def advance_offline(self, limit: int | None = None) -> None:
        """One learner step on the dataset alone (`limit` >= 1 changes nothing), and a "train"
        record every `log_every` of them."""
        self._mid_step = True
        self.learn(offline=True)
        self.loop.offline_step += 1
        if self.loop.offline_step % self.cfg.runner.log_every == 0 or not self.offline_left():
            self.record_train()

    def advance(self, end_step: int) -> int:
        """A vector env step, then one learner step per `update_every` env steps passed, once
        replay holds `learning_starts` transitions (items in replay, not env steps, so this also
        covers a resume without the replay), and a "train" record when `log_every` is crossed."""
        loop, agent = self.loop, self.agent
        before = loop.env_step
        self.env_step()
        step = loop.env_step
        learned = 0
        for _ in range(step // agent.update_every - before // agent.update_every):
            if len(self.replay) >= agent.learning_starts:
                self.learn()
                learned += 1
        if crossed(before, step, self.cfg.runner.log_every):
            self.record_train()
        return learned
