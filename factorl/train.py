"""The host runner shared by every agent, evaluation, and loading trained agents.

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
"""

from __future__ import annotations

import json
import math
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium
import jax
import numpy as np

from factorl.agents import get_algorithm
from factorl.core.agent import TrainBatch
from factorl.core.config import Config, ConfigError, build_config, saved_settings
from factorl.envs.host import make_env
from factorl.io import checkpoint as ckpt
from factorl.io.logging import RunLogger
from factorl.io.runfolder import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    LOCK_FILE,
    RunFolderError,
    RunFolderLock,
    clear_run,
    describe_os_error,
    holds_a_run,
    refuse_links,
    remove_leftovers,
)
from factorl.presets import preset_settings

#: seed streams of `episode_seed`: training episodes, periodic and final evaluations (2 is the
#: replay sampler's)
TRAIN_STREAM, EVAL_STREAM, FINAL_EVAL_STREAM = 0, 1, 3


class TrainingStopped(RuntimeError):
    """Training stopped on bad numbers (NaN/Inf); the last good state was checkpointed."""


@dataclass
class TrainResult:
    """What `train` returns: where the run lives and how it ended."""

    run_dir: Path
    agent: Any
    state: Any
    env_step: int
    last_eval_return: float | None
    status: str  # "completed" or "interrupted"
    stop_signal: str | None = None  # "SIGINT" or "SIGTERM" when a signal stopped the run


@dataclass
class LoopState:
    """Host-side counters of the loop (saved in every checkpoint).

    `env_step` counts environment steps summed over environments. Every environment is always
    inside one episode: `episode_index[i]` (which numbers its reset seed), its return, length and
    actions so far; `episodes_started` is the index the next episode gets.
    """

    env_step: int = 0
    episodes_done: int = 0
    episodes_started: int = 0
    eval_round: int = 0
    last_eval_return: float | None = None
    wall_time: float = 0.0  # seconds of training before this process started
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


#: settings a resume may change: budget, intervals and display (the rest would change the run)
RESUMABLE = frozenset(
    {
        "run.steps",
        "run.progress",
        "run.tensorboard",
        "runner.eval_every",
        "runner.eval_episodes",
        "runner.log_every",
        "runner.checkpoint_every",
        "runner.checkpoint_minutes",
        "runner.keep_checkpoints",
        "runner.save_replay",
    }
)


def config_changes(saved: Config, given: Config) -> list[str]:
    """What `given` changes in a saved run's config beyond the RESUMABLE settings, one
    "KEY (saved X, given Y)" per setting. The run folder is whatever is being resumed."""
    if saved.algo != given.algo:
        return [f"the algorithm (saved {saved.algo!r}, given {given.algo!r})"]
    old, new = saved.settings(), given.settings()
    return [
        f"{key} (saved {old[key]!r}, given {value!r})"
        for key, value in new.items()
        if key not in RESUMABLE and key != "run.run_dir" and value != old[key]
    ]


def episode_seed(seed: int, stream: int, *index: int) -> int:
    """Independent, reproducible reset seed for an episode (training stream 0, evaluation 1)."""
    return int(np.random.SeedSequence([seed, stream, *index]).generate_state(1)[0])


def make_config(
    algo: str, overrides: Mapping[str, Any] | None = None, preset: str | None = None
) -> Config:
    """A validated Config of `algo`: its reference defaults, then preset `preset` (see
    `factorl.presets`), then `overrides`, keyed by dotted setting names (`"env.id"`,
    `"run.steps"`, `"replay.n_step"`). An unknown key or a bad value is a ConfigError."""
    return build_config(algo, {**preset_settings(algo, preset), **(overrides or {})})


def load_config(run_dir: str | Path) -> Config:
    """The resolved config a run was started with, read as data and checked as `make_config`
    checks (a run folder of the first, flat layout is read too)."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        if (Path(run_dir) / LOCK_FILE).is_file():  # stopped while starting, before its config
            raise ConfigError(
                f"{run_dir} holds no run yet (it was stopped before writing its {CONFIG_FILE}); "
                "start it again with the command that started it"
            )
        raise ConfigError(f"{run_dir} is not a factorl run folder (no {CONFIG_FILE})")
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise TypeError("it is not a JSON object")
        return build_config(*saved_settings(data))
    except OSError as e:
        raise ConfigError(f"cannot read {path} ({describe_os_error(e)})") from e
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ConfigError) as e:
        raise ConfigError(f"{path} is not a valid factorl config: {e}") from e


def default_run_dir(cfg: Config) -> Path:
    env = cfg.env.id.replace(":", "-").replace("/", "-")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.algo}-{env}-s{cfg.run.seed}-{stamp}"


def resolve_run_dir(cfg: Config, resume: str | Path | None) -> Path:
    """The run's folder: `resume` (whose saved config `cfg` may change only in the RESUMABLE
    settings), else `cfg.run.run_dir`, else a new default one."""
    if resume is None:
        return Path(cfg.run.run_dir) if cfg.run.run_dir else default_run_dir(cfg)
    run_dir = Path(resume)
    changes = config_changes(load_config(run_dir), cfg)
    if changes:
        raise ConfigError(
            f"cannot change {', '.join(changes)} when resuming {run_dir} (it would change the "
            "run); start a new run instead"
        )
    return run_dir


def build_agent(cfg: Config, env) -> Any:
    return get_algorithm(cfg.algo)(cfg.agent, env.observation_space, env.action_space, cfg.replay)


def _finite(obs: np.ndarray, reward: np.ndarray) -> bool:
    return bool(np.isfinite(obs).all()) and bool(np.isfinite(reward).all())


# ------------------------------------------------------------------------------------- evaluation
def run_episodes(
    agent, state, env, seed: int, index: tuple[int, ...], episodes: int, stream: int = EVAL_STREAM
) -> list[float]:
    """Greedy returns of `episodes` episodes with reproducible resets."""
    returns = []
    state = agent.with_num_envs(state, 1)
    for ep in range(episodes):
        obs, _ = env.reset(seed=episode_seed(seed, stream, *index, ep))
        state = agent.begin_episodes(state)
        total, done, step = 0.0, False, 0
        while not done:
            action, state = agent.act(state, obs[None], step, "greedy")
            obs, reward, terminated, truncated, _ = env.step(action[0])
            total += float(reward)
            done = terminated or truncated
            step += 1
        returns.append(total)
    return returns


# ------------------------------------------------------------------------------------- checkpoints
#: meta["loop_format"] of checkpoints with per-environment episode arrays (earlier ones had one
#: environment's counters in meta and cannot be resumed)
LOOP_FORMAT = 2


def _save(
    run_dir: Path, cfg: Config, action_size: int, state, replay, loop: LoopState, rng, obs,
    unwritten: list[dict[str, Any]],
) -> Path:  # fmt: skip
    actions = [np.asarray(a, np.float32).reshape(len(a), action_size) for a in loop.episode_actions]
    arrays = {
        "loop": {
            "obs": np.asarray(obs, np.float32),
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
    "last_eval_return": lambda v: v is None or _is_number(v),
    "wall_time": lambda v: _is_number(v) and v >= 0,
    "pending_metrics": lambda v: (
        isinstance(v, list)
        and all(isinstance(m, dict) and all(_is_number(x) for x in m.values()) for m in v)
    ),
}


def _checked_loop(
    path: Path, meta: dict[str, Any], arrays: dict, obs_shape, action_size: int, num_envs: int
):
    """The loop state and episode arrays of a checkpoint, each field checked."""

    def bad(what: str) -> ckpt.CheckpointError:
        return ckpt.CheckpointError(
            f"checkpoint {path} is corrupt: {what}. Resume from an earlier checkpoint or start "
            "again."
        )

    if meta.get("loop_format") != LOOP_FORMAT:
        raise ckpt.CheckpointError(
            f"checkpoint {path} was written by an earlier factorl, before runs had several "
            "environments, and cannot be resumed by this version; start a new run"
        )
    saved = meta.get("loop")
    if not isinstance(saved, dict):
        raise bad("its loop counters are missing")
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

    obs = array("obs", "f", (num_envs, *obs_shape)).astype(np.float32)
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


def _restore(path: Path, cfg: Config, agent, template, replay, rng, envs, notes: list[str]):
    state, arrays, meta = ckpt.load_checkpoint(path, template)
    if meta.get("algo") != cfg.algo:
        raise ckpt.CheckpointError(f"{path} was written by {meta.get('algo')!r}, not {cfg.algo!r}")
    action_space = envs.single_action_space
    action_size = int(np.prod(action_space.shape))
    loop, saved_obs, unwritten = _checked_loop(
        path, meta, arrays, envs.single_observation_space.shape, action_size, envs.num_envs
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
    obs = np.empty_like(saved_obs)
    for i, env in enumerate(envs.envs):
        obs[i], _ = env.reset(seed=episode_seed(cfg.run.seed, TRAIN_STREAM, loop.episode_index[i]))
        for action in loop.episode_actions[i]:
            obs[i] = env.step(action.reshape(action_space.shape))[0]
    if not np.array_equal(obs, saved_obs):
        notes.append(
            "[factorl] warning: replaying the episodes in progress did not reproduce the saved "
            "observations (non-deterministic environment?); continuing from the replayed states"
        )
    return state, loop, obs, unwritten


# ------------------------------------------------------------------------------------- the loop
class StoppedAtOnce(TrainingStopped):
    """A second Ctrl-C or SIGTERM stopped training in the middle of a step."""


class _StopFlag:
    """The first Ctrl-C or SIGTERM asks the loop to stop at a safe point (with a checkpoint); a
    second one interrupts at once. Clusters (SLURM, Ray, Kubernetes) stop jobs with SIGTERM."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: str | None = None  # name of the first stop signal
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.received is not None

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)


def _env_or_config_error(cfg: Config, seed: int | None = None):
    """`make_env` for a config, with an unknown or unusable environment as a ConfigError."""
    try:
        return make_env(cfg.env.id, seed=seed, action_repeat=cfg.env.action_repeat)
    except ValueError as e:
        raise ConfigError(str(e)) from e


def _vector_env(cfg: Config) -> gymnasium.vector.SyncVectorEnv:
    """`num_envs` training environments behind Gymnasium's vector API. Autoreset is off: the
    loop resets finished environments itself, each with its episode's seed (exact resume)."""
    return gymnasium.vector.SyncVectorEnv(
        [lambda: _env_or_config_error(cfg, cfg.run.seed) for _ in range(cfg.env.num_envs)],
        autoreset_mode=gymnasium.vector.AutoresetMode.DISABLED,
    )


def prepare_run_folder(run_dir: Path, resuming: bool, overwrite: bool) -> list[str]:
    """Checks and tidying before a run writes to its folder (the caller holds its lock): links
    refused, leftovers of killed writes removed, and a fresh run refused where a run already
    is unless `overwrite`. Returns the notes to show."""
    refuse_links(run_dir)
    try:
        notes = [f"[factorl] {note}" for note in remove_leftovers(run_dir)]
    except OSError as e:
        raise _folder_error(run_dir, e, "tidy an interrupted checkpoint write") from e
    if not resuming and holds_a_run(run_dir):
        if not overwrite:
            raise ConfigError(
                f"{run_dir} already holds a run; continue it with --resume {run_dir}, start it "
                "over with --overwrite, or choose another --run.run-dir"
            )
        notes.append(f"[factorl] --overwrite: removed the previous run in {run_dir}")
    return notes


def _crossed(before: int, after: int, every: int) -> bool:
    """Whether a multiple of `every` lies in (before, after]: a step of several environments
    can pass a logging, evaluation or checkpoint point without landing on it."""
    return after // every > before // every


def _folder_error(run_dir: Path, error: OSError, what: str) -> RunFolderError:
    return RunFolderError(
        f"could not {what} in {run_dir} ({describe_os_error(error)}); free disk space or fix the "
        "folder's permissions, then run again"
    )


class Trainer:
    """One run: the environments, agent, replay and counters, and one method per concern.

    The run folder is locked for the Trainer's life (`close` releases it). Resuming a run that
    has already used its budget writes nothing (the lock file aside): `finished` is then True and
    `run` returns at once.
    """

    def __init__(
        self, config: Config, resume: str | Path | None = None, *, overwrite: bool = False
    ) -> None:
        config.validate()
        self.cfg = cfg = config
        self.logger: RunLogger | None = None
        self.envs = self.eval_env = None
        self.finished = False
        self.run_dir = resolve_run_dir(cfg, resume)
        self._lock: RunFolderLock | None = None
        try:
            self._build()  # before touching the folder: a bad environment or size writes nothing
            self._lock = RunFolderLock(self.run_dir).acquire()
            # the checkpoint is chosen under the lock: a process that held the folder until now
            # may have saved a newer one
            checkpoint = ckpt.latest_checkpoint(self.run_dir / CHECKPOINT_DIR) if resume else None
            if checkpoint is not None and ckpt.read_meta(checkpoint)["env_step"] >= cfg.run.steps:
                self._load_finished(checkpoint)
                self.close()
                return
            self._open(checkpoint, resume is not None, overwrite)
        except BaseException:
            self.close()
            raise

    def _load_finished(self, checkpoint: Path) -> None:
        """A resume with no budget left: the saved agent for the result; nothing is written."""
        self.finished = True
        self.state, _, meta = ckpt.load_checkpoint(checkpoint, self.state)
        last = meta["loop"].get("last_eval_return") if isinstance(meta.get("loop"), dict) else None
        self.loop = LoopState(env_step=meta["env_step"])
        self.loop.last_eval_return = float(last) if _is_number(last) else None

    def _build(self) -> None:
        """The environments, agent, replay buffer and initial state (nothing is written)."""
        cfg = self.cfg
        if cfg.run.num_seeds > 1:
            raise ConfigError(
                f"run.num_seeds trains seeds side by side on JAX-native environments (gymnax:, "
                f"playground:); {cfg.env.id} runs on the host: start one run per seed instead"
            )
        self.eval_env = _env_or_config_error(cfg, cfg.run.seed + 1)
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

    def _open(self, checkpoint: Path | None, resuming: bool, overwrite: bool) -> None:
        cfg, run_dir = self.cfg, self.run_dir
        notes = prepare_run_folder(run_dir, resuming, overwrite)
        if resuming and checkpoint is None:
            notes.append(
                f"[factorl] {run_dir} has no checkpoint yet (it stopped before its first one); "
                "starting it again from env step 0 with its saved config"
            )
        fresh = checkpoint is None
        unwritten: list[dict[str, Any]] = []
        if checkpoint is not None:
            self.state, self.loop, self.obs, unwritten = _restore(
                checkpoint, cfg, self.agent, self.state, self.replay, self.rng, self.envs, notes
            )
        else:
            self.loop = LoopState.starting(cfg.env.num_envs)
            seeds = [episode_seed(cfg.run.seed, TRAIN_STREAM, i) for i in range(cfg.env.num_envs)]
            self.obs, _ = self.envs.reset(seed=seeds)
            self.state = self.agent.begin_episodes(self.state)
        try:
            if fresh:
                clear_run(run_dir)
            else:
                RunLogger.rewind(run_dir, self.loop.env_step, unwritten)
            ckpt.atomic_write_text(run_dir / CONFIG_FILE, cfg.to_json() + "\n")
            self.logger = RunLogger(
                run_dir,
                cfg.run.steps,
                self.loop.env_step,
                progress=cfg.run.progress,
                tensorboard=cfg.run.tensorboard,
                line_every=cfg.runner.log_every,
            )
        except OSError as e:
            raise _folder_error(run_dir, e, "write the run's files") from e
        where = f"from {checkpoint.name} at env step {self.loop.env_step}" if checkpoint else ""
        verb = f"resumed {run_dir} {where}" if checkpoint else "training"
        self.logger.message(f"[factorl] {verb} {cfg.algo} on {cfg.env.id}; run folder {run_dir}")
        if cfg.run.steps < self.agent.learning_starts:
            notes.append(
                f"[factorl] note: the budget of {cfg.run.steps} env steps ends before learning "
                f"starts (after {self.agent.learning_starts} transitions); this run will not learn "
                "unless resumed with more --run.steps"
            )
        for note in notes:
            self.logger.message(note)
        self._clock = time.perf_counter()
        self._last_save = self._clock
        # the step in progress has changed the replay or the counters: a checkpoint now would
        # not be one the run passes through, so an emergency stop writes none
        self._mid_step = False
        # (time, step) samples every 0.5 s; the rate is taken over the last ~10 s, so an
        # evaluation pause does not make the ETA jump
        self._window = deque([(self._clock, self.loop.env_step)], maxlen=20)
        self._evaluated_at: int | None = None  # env step of the last evaluation
        self._progress: dict[str, str] = {}

    # ------------------------------------------------------------------------------- pieces
    def wall(self) -> float:
        """Seconds of training so far, across resumes."""
        return self.loop.wall_time + time.perf_counter() - self._clock

    def save(self) -> Path:
        loop = self.loop
        saved_wall, loop.wall_time = loop.wall_time, self.wall()
        try:
            path = _save(
                self.run_dir, self.cfg, self.action_size, self.state, self.replay, loop, self.rng,
                self.obs, self.logger.unwritten,
            )  # fmt: skip
        finally:
            loop.wall_time = saved_wall
        self._last_save = time.perf_counter()
        return path

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
        if n == 1:  # the replay's lean single-step insert
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

    def learn(self) -> None:
        """One learner step on a replay sample; stops on non-finite numbers."""
        batch = self.replay.sample(self.agent.replay_settings.batch_size, self.rng)
        new_state, metrics, td_abs = self.agent.update(self.state, TrainBatch.from_sample(batch))
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
        if self.replay.prioritized:  # uniform replay has no priorities to move
            self.replay.update_priorities(batch.indices, np.asarray(td_abs))
        self.loop.pending_metrics.append({k: float(v) for k, v in metrics.items()})

    def record_train(self) -> None:
        loop = self.loop
        record = {
            "event": "train",
            "env_step": loop.env_step,
            "env_frames": loop.env_step * self.cfg.env.action_repeat,
            "learner_step": int(self.state.learner_step),
            "wall_time": round(self.wall(), 3),
            "episodes": loop.episodes_done,
        }
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

    def evaluate(self, final: bool = False) -> None:
        """Greedy evaluation. A `final` one (the budget ended between evaluation points) has
        seeds of its own and leaves the round counter alone, so a run whose budget is later
        extended goes on exactly as one that had the larger budget from the start."""
        loop, cfg = self.loop, self.cfg
        stream = FINAL_EVAL_STREAM if final else EVAL_STREAM
        index = loop.env_step if final else loop.eval_round
        returns = run_episodes(
            self.agent,
            self.state,
            self.eval_env,
            cfg.run.seed,
            (index,),
            cfg.runner.eval_episodes,
            stream,
        )
        if not final:
            loop.eval_round += 1
        self._evaluated_at = loop.env_step
        loop.last_eval_return = float(np.mean(returns))
        record = {
            "event": "eval",
            "env_step": loop.env_step,
            "env_frames": loop.env_step * cfg.env.action_repeat,
            "learner_step": int(self.state.learner_step),
            "wall_time": round(self.wall(), 3),
            "eval_return": loop.last_eval_return,
            "eval_return_std": float(np.std(returns)),
            "eval_returns": [float(r) for r in returns],
        }
        self.logger.record({**record, "final": True} if final else record)
        self.logger.message(
            f"[factorl] eval at step {loop.env_step}: return {loop.last_eval_return:.1f}"
            f" ± {np.std(returns):.1f} over {len(returns)} episodes"
        )

    def show_progress(self, end_step: int, before: int) -> None:
        # the fields are refreshed twice a second, not every step: formatting them each step
        # cost about as much as the replay insert
        now, step = time.perf_counter(), self.loop.env_step
        line_due = _crossed(before, step, self.logger.line_every)
        if now - self._window[-1][0] > 0.5 or step == end_step or line_due:
            self._window.append((now, step))
            (t0, s0), (t1, s1) = self._window[0], self._window[-1]
            sps = (s1 - s0) / (t1 - t0) if t1 > t0 else 0.0
            self._progress = _progress_fields(self.loop, sps, self.cfg.run.steps)
        self.logger.progress(step, self._progress, line_due)

    # ------------------------------------------------------------------------------- the loop
    def checkpoint_due(self, before: int | None = None) -> bool:
        """Every `checkpoint_every` env steps, and once `checkpoint_minutes` have passed;
        `before` is the env step before the last step (one vector step back by default)."""
        cfg = self.cfg
        if before is None:
            before = self.loop.env_step - cfg.env.num_envs
        if _crossed(before, self.loop.env_step, cfg.runner.checkpoint_every):
            return True
        minutes = cfg.runner.checkpoint_minutes
        return minutes > 0 and time.perf_counter() - self._last_save >= 60 * minutes

    def step(self, end_step: int) -> int:
        """One iteration of the loop: a (vector) env step, then whatever falls due. Returns the
        number of learner steps taken."""
        loop, cfg, agent = self.loop, self.cfg, self.agent
        before = loop.env_step
        self.env_step()
        step = loop.env_step
        # one learner step per `update_every` env steps passed; learning starts once replay holds
        # enough transitions (Reverb's min size), which also covers a resume without the replay
        learned = 0
        for _ in range(step // agent.update_every - before // agent.update_every):
            if len(self.replay) >= agent.learning_starts:
                self.learn()
                learned += 1
        if _crossed(before, step, cfg.runner.log_every):
            self.record_train()
        if _crossed(before, step, cfg.runner.eval_every):
            self.evaluate()
        self._mid_step = False
        if self.checkpoint_due(before) and self.logger.error is None:
            self.save()
        self.show_progress(end_step, before)
        return learned

    def run(self, stop_after: int | None = None) -> TrainResult:
        loop, cfg, agent = self.loop, self.cfg, self.agent
        if self.finished:
            print(
                f"[factorl] {self.run_dir} has already used its budget of {cfg.run.steps} env "
                f"steps (it is at env step {loop.env_step}); nothing to do. Pass --run.steps N "
                f"with N > {loop.env_step} to train further.",
                file=sys.stderr,
            )
            return TrainResult(
                self.run_dir, agent, self.state, loop.env_step, loop.last_eval_return, "completed"
            )
        end_step = (
            cfg.run.steps if stop_after is None else min(cfg.run.steps, loop.env_step + stop_after)
        )
        status, stop = "completed", _StopFlag()
        try:
            with stop:
                while loop.env_step < end_step:
                    self.step(end_step)
                    self._stop_if_logging_failed()
                    if stop.requested:
                        status = "interrupted"
                        break
                at_budget = status == "completed" and loop.env_step >= cfg.run.steps
                if at_budget and self._evaluated_at != loop.env_step:
                    self._mid_step = True  # a checkpoint without it would skip it on resume
                    self.evaluate(final=True)
                    self._mid_step = False
                    self._stop_if_logging_failed()
                path = self.save()
            if status == "interrupted" and stop.received:
                self.logger.message(
                    f"[factorl] stopped by {stop.received} at env step {loop.env_step}; "
                    f"checkpoint {path}. Continue with: factorl train --resume {self.run_dir}"
                )
            else:
                note = "interrupted" if status == "interrupted" else "finished"
                where = f"at env step {loop.env_step}; checkpoint {path}"
                self.logger.message(f"[factorl] {note} {where}")
        except (TrainingStopped, ckpt.CheckpointError, RunFolderError):
            raise
        except BaseException as crash:
            saved = self._emergency_checkpoint()
            if isinstance(crash, KeyboardInterrupt):
                raise StoppedAtOnce(
                    f"stopped at once by a second {stop.received or 'interrupt'} at env step "
                    f"{loop.env_step}; {saved}"
                ) from None
            self.logger.message(f"[factorl] crashed ({crash!r}); {saved}")
            raise
        finally:
            self.close()
        return TrainResult(
            self.run_dir, agent, self.state, loop.env_step, loop.last_eval_return, status,
            stop.received,
        )  # fmt: skip

    def _emergency_checkpoint(self) -> str:
        """Save what a crash left, if it is a state the run passes through; say what was done."""
        latest = ckpt.latest_checkpoint(self.run_dir / CHECKPOINT_DIR)
        resume = f"continue with --resume {self.run_dir}"
        if self._mid_step:
            where = f"the latest checkpoint is {latest}" if latest else "there is no checkpoint"
            return f"stopped in the middle of a step, so no checkpoint was written; {where}"
        try:
            return f"emergency checkpoint {self.save()}; {resume}"
        except Exception as e:
            return f"no checkpoint written ({e})"

    def _stop_if_logging_failed(self) -> None:
        """If a metrics.jsonl write failed: checkpoint, keeping the unwritten records, and stop."""
        if self.logger.error is None:
            return
        what = f"{self.logger.describe_error()} at env step {self.loop.env_step}"
        what += ", so training stopped"
        try:
            path = self.save()
        except ckpt.CheckpointError as e:
            raise TrainingStopped(f"{what}; {e}") from None
        raise TrainingStopped(
            f"{what}; checkpoint {path} keeps the records not written. Free disk space, then "
            f"continue with --resume {self.run_dir}"
        )

    def close(self) -> None:
        """Close the logger and environments and release the run folder (idempotent)."""
        if self.logger is not None:
            self.logger.close()
            self.logger = None
        for env in (self.envs, self.eval_env):
            if env is not None:
                env.close()
        self.envs = self.eval_env = None
        if getattr(self, "_lock", None) is not None:
            self._lock.release()


def train(
    config: Config,
    resume: str | Path | None = None,
    *,
    stop_after: int | None = None,
    overwrite: bool = False,
) -> TrainResult:
    """Train `config.algo` on `config.env.id`; with `resume`, continue that run folder.

    Host environments (dmc:, gym:) run on the host runner (`Trainer`), JAX-native ones (gymnax:,
    playground:) on the device runner (`factorl.runners.device.DeviceTrainer`).

    `stop_after` (env steps) ends this call early, with a checkpoint, as an interruption would:
    used by tests of resume and handy for time-sliced jobs. `overwrite` lets a fresh run replace
    a previous run in its folder (otherwise refused).
    """
    from factorl.runners.device import DeviceTrainer, is_jax_env

    runner = DeviceTrainer if is_jax_env(config.env.id) else Trainer
    return runner(config, resume, overwrite=overwrite).run(stop_after)


def _progress_fields(loop: LoopState, sps: float, total: int) -> dict[str, str]:
    fields = {"sps": f"{sps:.0f}"}
    if loop.recent_returns:
        fields["return"] = f"{np.mean(loop.recent_returns):.1f}"
    if loop.last_eval_return is not None:
        fields["eval"] = f"{loop.last_eval_return:.1f}"
    if sps > 0:
        fields["eta"] = time.strftime(
            "%H:%M:%S", time.gmtime(min((total - loop.env_step) / sps, 86399))
        )
    return fields


# ------------------------------------------------------------------------------------- using agents
class Policy:
    """A trained agent as a function of observations: `policy(obs) -> action` (greedy)."""

    def __init__(self, config: Config, agent, state) -> None:
        self.config, self.agent = config, agent
        self.state = agent.with_num_envs(state, 1)
        self._step = 0

    def reset(self) -> None:
        """Call at the start of every episode (agents that act on sequences keep memory)."""
        self.state = self.agent.begin_episodes(self.state)
        self._step = 0

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, np.float32)[None]
        action, self.state = self.agent.act(self.state, obs, self._step)
        self._step += 1
        return action[0]


def load_agent(run_dir: str | Path, checkpoint: str | Path | None = None) -> Policy:
    """Load the latest (or the given) checkpoint of a run as a greedy Policy."""
    run_dir = Path(run_dir)
    cfg = load_config(run_dir)
    path = Path(checkpoint) if checkpoint else ckpt.latest_checkpoint(run_dir / CHECKPOINT_DIR)
    if path is None:
        raise ckpt.CheckpointError(f"{run_dir} has no checkpoint")
    from factorl.runners.device import is_jax_env, load_device_run

    if is_jax_env(cfg.env.id):  # the first seed's agent of a device run
        agent, _, states = load_device_run(cfg, path)
        return Policy(cfg, agent, jax.tree_util.tree_map(lambda x: x[0], states))
    env = _env_or_config_error(cfg, cfg.run.seed)
    try:
        agent = build_agent(cfg, env)
    finally:
        env.close()
    state, _, _ = ckpt.load_checkpoint(path, agent.init(cfg.run.seed, cfg.env.num_envs))
    return Policy(cfg, agent, state)


def evaluate(run_dir: str | Path, episodes: int = 10, seed: int | None = None) -> dict[str, Any]:
    """Evaluate a saved agent greedily; returns mean/std/returns (a device run: `episodes` for
    each of its seeds, run side by side, with `per_seed_mean`)."""
    from factorl.runners.device import evaluate_device_run, is_jax_env

    cfg = load_config(run_dir)
    if is_jax_env(cfg.env.id):
        path = ckpt.latest_checkpoint(Path(run_dir) / CHECKPOINT_DIR)
        if path is None:
            raise ckpt.CheckpointError(f"{run_dir} has no checkpoint")
        seed = cfg.run.seed + 10_000 if seed is None else seed
        return evaluate_device_run(cfg, path, episodes, seed)
    policy = load_agent(run_dir)
    cfg = policy.config
    env = _env_or_config_error(cfg)
    seed = cfg.run.seed + 10_000 if seed is None else seed
    returns = run_episodes(policy.agent, policy.state, env, seed, (0,), episodes)
    env.close()
    return {
        "mean": float(np.mean(returns)),
        "std": float(np.std(returns)),
        "returns": returns,
        "episodes": episodes,
        "env": cfg.env.id,
        "finite": all(math.isfinite(r) for r in returns),
    }


__all__ = [
    "Policy",
    "TrainResult",
    "TrainingStopped",
    "evaluate",
    "load_agent",
    "load_config",
    "make_config",
    "train",
]
