"""The training loop shared by every agent, evaluation, and loading trained agents.

One environment on the host feeds a NumPy replay buffer; every `update_every` environment steps the
agent's jitted update runs on a sampled batch. Everything random is derived from the run's seed:
network init and exploration from JAX keys folded with counters, replay sampling from a NumPy
Generator whose state is checkpointed, and every episode's reset from a seed derived from
(run seed, episode index). That last choice is what makes resume exact: a checkpoint taken in the
middle of an episode stores the actions taken so far in it, and resuming resets the environment with
the same seed and replays those actions, which rebuilds the simulator state bit for bit on a
deterministic environment (checked against the saved observation).
"""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import numpy as np

from factorl import checkpoint as ckpt
from factorl.agents import CONFIGS, get_algorithm
from factorl.agents.base import TrainBatch
from factorl.config import ConfigError, RunConfig, TrainConfig, from_dict
from factorl.envs import make_env
from factorl.logging import RunLogger
from factorl.presets import apply_preset

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
TRAIN_STREAM, EVAL_STREAM = 0, 1


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


@dataclass
class LoopState:
    """Host-side counters of the loop (saved in every checkpoint)."""

    env_step: int = 0
    episode: int = 0  # index of the training episode in progress
    episode_return: float = 0.0
    episode_length: int = 0
    episodes_done: int = 0
    eval_round: int = 0
    last_eval_return: float | None = None
    wall_time: float = 0.0  # seconds of training before this process started
    recent_returns: deque = field(default_factory=lambda: deque(maxlen=10))
    episode_actions: list = field(default_factory=list)
    pending_metrics: list = field(default_factory=list)  # learner metrics since the last record


def episode_seed(seed: int, stream: int, *index: int) -> int:
    """Independent, reproducible reset seed for an episode (training stream 0, evaluation 1)."""
    return int(np.random.SeedSequence([seed, stream, *index]).generate_state(1)[0])


def make_config(
    algo: str, train: dict | None = None, agent: dict | None = None, preset: str | None = None
) -> RunConfig:
    """Build and validate a RunConfig from plain dicts (unknown keys are errors).

    `preset` names overrides from `factorl.presets` applied under the given values.
    """
    get_algorithm(algo)
    train, agent = apply_preset(algo, preset, dict(train or {}), dict(agent or {}))
    cfg = RunConfig(
        algo=algo,
        train=from_dict(TrainConfig, train or {}, "train"),
        agent=from_dict(CONFIGS[algo], agent or {}, algo),
    )
    cfg.validate()
    return cfg


def load_config(run_dir: Path) -> RunConfig:
    """The resolved config a run was started with."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a factorl run folder (no {CONFIG_FILE})")
    try:
        data = json.loads(path.read_text())
        return make_config(data["algo"], data["train"], data["agent"])
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ConfigError(f"{path} is not a valid factorl config: {e}") from e


def default_run_dir(cfg: RunConfig) -> Path:
    env = cfg.train.env.replace(":", "-").replace("/", "-")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.algo}-{env}-s{cfg.train.seed}-{stamp}"


def build_agent(cfg: RunConfig, env) -> Any:
    return get_algorithm(cfg.algo)(cfg.agent, env.observation_space, env.action_space)


def _finite(obs: np.ndarray, reward: float) -> bool:
    return bool(np.isfinite(obs).all()) and math.isfinite(reward)


# ------------------------------------------------------------------------------------- evaluation
def run_episodes(
    agent, state, env, seed: int, index: tuple[int, ...], episodes: int
) -> list[float]:
    """Greedy returns of `episodes` episodes with reproducible resets."""
    returns = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=episode_seed(seed, EVAL_STREAM, *index, ep))
        state = agent.begin_episode(state)
        total, done, step = 0.0, False, 0
        while not done:
            action, state = agent.act(state, obs, step, "greedy")
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
            step += 1
        returns.append(total)
    return returns


# ------------------------------------------------------------------------------------- checkpoints
def _save(
    run_dir: Path, cfg: RunConfig, action_size: int, state, replay, loop: LoopState, rng, obs
) -> Path:
    arrays = {
        "loop": {
            "obs": np.asarray(obs, np.float32),
            "episode_actions": np.asarray(loop.episode_actions, np.float32).reshape(
                len(loop.episode_actions), action_size
            ),
            "recent_returns": np.asarray(loop.recent_returns, np.float64),
        }
    }
    if cfg.train.save_replay:
        arrays["replay"] = replay.state_dict()
    meta = {
        "algo": cfg.algo,
        "loop": {
            k: v
            for k, v in dataclasses.asdict(loop).items()
            if k not in ("recent_returns", "episode_actions")
        },
        "numpy_rng": rng.bit_generator.state,
        "learner_step": int(state.learner_step),
        "versions": {"jax": jax.__version__, "numpy": np.__version__},
    }
    return ckpt.save_checkpoint(
        run_dir / CHECKPOINT_DIR, loop.env_step, state, arrays, meta, cfg.train.keep_checkpoints
    )


def _restore(path: Path, cfg: RunConfig, agent, template, replay, rng, env, notes: list[str]):
    state, arrays, meta = ckpt.load_checkpoint(path, template)
    if meta.get("algo") != cfg.algo:
        raise ckpt.CheckpointError(f"{path} was written by {meta.get('algo')!r}, not {cfg.algo!r}")
    saved = meta["loop"]
    loop = LoopState(**{k: v for k, v in saved.items() if k in LoopState.__dataclass_fields__})
    loop_arrays = arrays.get("loop", {})
    loop.recent_returns = deque(loop_arrays.get("recent_returns", []).tolist(), maxlen=10)
    loop.episode_actions = [np.asarray(a) for a in loop_arrays.get("episode_actions", [])]
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
    # rebuild the environment state of the episode in progress by replaying its actions
    obs, _ = env.reset(seed=episode_seed(cfg.train.seed, TRAIN_STREAM, loop.episode))
    for action in loop.episode_actions:
        obs, *_ = env.step(action.reshape(env.action_space.shape))
    saved_obs = loop_arrays.get("obs")
    if saved_obs is not None and not np.array_equal(np.asarray(obs, np.float32), saved_obs):
        notes.append(
            "[factorl] warning: replaying the episode in progress did not reproduce the saved "
            "observation (non-deterministic environment?); continuing from the replayed state"
        )
    return state, loop, obs


# ------------------------------------------------------------------------------------- the loop
class _StopFlag:
    """First Ctrl-C asks the loop to stop at a safe point (with a checkpoint); a second one
    interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class Trainer:
    """One run: the environments, agent, replay and counters, and one method per concern."""

    def __init__(self, config: RunConfig, resume: str | Path | None = None) -> None:
        config.validate()
        self.cfg = cfg = config
        t = cfg.train
        checkpoint = None
        if resume is not None:
            self.run_dir = Path(resume)
            checkpoint = ckpt.latest_checkpoint(self.run_dir / CHECKPOINT_DIR)
            if checkpoint is None:
                raise ckpt.CheckpointError(f"{self.run_dir} has no checkpoint to resume from")
        else:
            self.run_dir = Path(t.run_dir) if t.run_dir else default_run_dir(cfg)
            if ckpt.latest_checkpoint(self.run_dir / CHECKPOINT_DIR) is not None:
                raise ConfigError(
                    f"{self.run_dir} already holds a run; continue it with --resume "
                    f"{self.run_dir} or choose another --run-dir"
                )
        try:
            self.env = make_env(t.env, seed=t.seed, action_repeat=t.action_repeat)
            self.eval_env = make_env(t.env, seed=t.seed + 1, action_repeat=t.action_repeat)
            self.agent = build_agent(cfg, self.env)
        except ValueError as e:  # unknown environment or unusable action space: a config problem
            raise ConfigError(str(e)) from e
        self.run_dir.mkdir(parents=True, exist_ok=True)
        ckpt.atomic_write_text(self.run_dir / CONFIG_FILE, cfg.to_json() + "\n")
        self.replay = self.agent.make_replay(self.env.observation_space.shape)
        self.rng = np.random.default_rng(np.random.SeedSequence([t.seed, 2]))
        self.state = self.agent.init(t.seed)
        notes: list[str] = []
        if checkpoint is not None:
            self.state, self.loop, self.obs = _restore(
                checkpoint, cfg, self.agent, self.state, self.replay, self.rng, self.env, notes
            )
            RunLogger.truncate(self.run_dir, self.loop.env_step)
        else:
            self.loop = LoopState()
            self.obs, _ = self.env.reset(seed=episode_seed(t.seed, TRAIN_STREAM, 0))
            self.state = self.agent.begin_episode(self.state)
        self.logger = RunLogger(
            self.run_dir,
            t.steps,
            self.loop.env_step,
            progress=t.progress,
            tensorboard=t.tensorboard,
            line_every=t.log_every,
        )
        where = f"from {checkpoint.name} at env step {self.loop.env_step}" if checkpoint else ""
        verb = f"resumed {self.run_dir} {where}" if checkpoint else "training"
        self.logger.message(f"[factorl] {verb} {cfg.algo} on {t.env}; run folder {self.run_dir}")
        for note in notes:
            self.logger.message(note)
        self._clock = time.perf_counter()
        # (time, step) samples every 0.5 s; the rate is taken over the last ~10 s, so an
        # evaluation pause does not make the ETA jump
        self._window = deque([(self._clock, self.loop.env_step)], maxlen=20)
        self._progress: dict[str, str] = {}

    # ------------------------------------------------------------------------------- pieces
    def wall(self) -> float:
        """Seconds of training so far, across resumes."""
        return self.loop.wall_time + time.perf_counter() - self._clock

    def save(self) -> Path:
        loop = self.loop
        saved_wall, loop.wall_time = loop.wall_time, self.wall()
        try:
            action_size = int(np.prod(self.env.action_space.shape))
            return _save(
                self.run_dir, self.cfg, action_size, self.state, self.replay, loop, self.rng,
                self.obs,
            )  # fmt: skip
        finally:
            loop.wall_time = saved_wall

    def env_step(self) -> None:
        """Act, step the environment, store the transition, handle the episode end."""
        loop, t = self.loop, self.cfg.train
        mode = "random" if loop.env_step < self.agent.random_steps else "explore"
        action, self.state = self.agent.act(self.state, self.obs, loop.env_step, mode)
        next_obs, reward, terminated, truncated, _ = self.env.step(action)
        if not _finite(next_obs, reward):
            path = self.save()
            raise TrainingStopped(
                "the environment returned a non-finite observation or reward at env step "
                f"{loop.env_step + 1}; stopped, last good state saved to {path}"
            )
        self.replay.add(self.obs, action, float(reward), next_obs, terminated, truncated)
        loop.env_step += 1
        loop.episode_return += float(reward)
        loop.episode_length += 1
        loop.episode_actions.append(np.asarray(action, np.float32))
        self.obs = next_obs
        if terminated or truncated:
            loop.recent_returns.append(loop.episode_return)
            self.logger.record(
                {
                    "event": "episode",
                    "env_step": loop.env_step,
                    "episode": loop.episodes_done,
                    "episode_return": loop.episode_return,
                    "episode_length": loop.episode_length,
                    "wall_time": round(self.wall(), 3),
                }
            )
            loop.episodes_done += 1
            loop.episode += 1
            loop.episode_return, loop.episode_length = 0.0, 0
            loop.episode_actions = []
            self.obs, _ = self.env.reset(seed=episode_seed(t.seed, TRAIN_STREAM, loop.episode))
            self.state = self.agent.begin_episode(self.state)

    def learn(self) -> None:
        """One learner step on a replay sample; stops on non-finite numbers."""
        batch = self.replay.sample(self.agent.config.batch_size, self.rng)
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
            "env_frames": loop.env_step * self.cfg.train.action_repeat,
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

    def evaluate(self) -> None:
        loop, t = self.loop, self.cfg.train
        returns = run_episodes(
            self.agent, self.state, self.eval_env, t.seed, (loop.eval_round,), t.eval_episodes
        )
        loop.eval_round += 1
        loop.last_eval_return = float(np.mean(returns))
        self.logger.record(
            {
                "event": "eval",
                "env_step": loop.env_step,
                "env_frames": loop.env_step * t.action_repeat,
                "learner_step": int(self.state.learner_step),
                "wall_time": round(self.wall(), 3),
                "eval_return": loop.last_eval_return,
                "eval_return_std": float(np.std(returns)),
                "eval_returns": [float(r) for r in returns],
            }
        )
        self.logger.message(
            f"[factorl] eval at step {loop.env_step}: return {loop.last_eval_return:.1f}"
            f" ± {np.std(returns):.1f} over {len(returns)} episodes"
        )

    def show_progress(self, end_step: int) -> None:
        # the fields are refreshed twice a second, not every step: formatting them each step
        # cost about as much as the replay insert
        now, step = time.perf_counter(), self.loop.env_step
        line_due = step % self.logger.line_every == 0
        if now - self._window[-1][0] > 0.5 or step == end_step or line_due:
            self._window.append((now, step))
            (t0, s0), (t1, s1) = self._window[0], self._window[-1]
            sps = (s1 - s0) / (t1 - t0) if t1 > t0 else 0.0
            self._progress = _progress_fields(self.loop, sps, self.cfg.train.steps)
        self.logger.progress(step, self._progress)

    # ------------------------------------------------------------------------------- the loop
    def step(self, end_step: int) -> bool:
        """One iteration of the loop: an env step, then whatever falls due. True if it learned."""
        loop, t, agent = self.loop, self.cfg.train, self.agent
        self.env_step()
        step = loop.env_step
        # learning starts once replay holds enough transitions (Reverb's min size), which also
        # covers a resume without the replay buffer
        learned = step % agent.update_every == 0 and len(self.replay) >= agent.learning_starts
        if learned:
            self.learn()
        if step % t.log_every == 0:
            self.record_train()
        if step % t.eval_every == 0:
            self.evaluate()
        if step % t.checkpoint_every == 0:
            self.save()
        self.show_progress(end_step)
        return learned

    def run(self, stop_after: int | None = None) -> TrainResult:
        loop, t, agent = self.loop, self.cfg.train, self.agent
        end_step = t.steps if stop_after is None else min(t.steps, loop.env_step + stop_after)
        status = "completed"
        try:
            with _StopFlag() as stop:
                while loop.env_step < end_step:
                    self.step(end_step)
                    if stop.requested:
                        status = "interrupted"
                        break
            if status == "completed" and loop.env_step >= t.steps and loop.env_step % t.eval_every:
                self.evaluate()
            path = self.save()
            note = "interrupted" if status == "interrupted" else "finished"
            self.logger.message(f"[factorl] {note} at env step {loop.env_step}; checkpoint {path}")
        except (TrainingStopped, ckpt.CheckpointError):
            raise
        except BaseException as crash:
            # save what we can so a crash loses nothing (updates do not consume their input
            # state, so the last completed step is there to save unless saving itself fails)
            try:
                path = self.save()
                self.logger.message(f"[factorl] crashed ({crash!r}); emergency checkpoint {path}")
            except Exception as e:
                self.logger.message(f"[factorl] crashed ({crash!r}); no checkpoint written ({e})")
            raise
        finally:
            self.close()
        return TrainResult(
            self.run_dir, agent, self.state, loop.env_step, loop.last_eval_return, status
        )

    def close(self) -> None:
        self.logger.close()
        self.env.close()
        self.eval_env.close()


def train(
    config: RunConfig, resume: str | Path | None = None, *, stop_after: int | None = None
) -> TrainResult:
    """Train `config.algo` on `config.train.env`; with `resume`, continue that run folder.

    `stop_after` (env steps) ends this call early, with a checkpoint, as an interruption would:
    used by tests of resume and handy for time-sliced jobs.
    """
    return Trainer(config, resume).run(stop_after)


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

    def __init__(self, config: RunConfig, agent, state) -> None:
        self.config, self.agent, self.state = config, agent, state
        self._step = 0

    def reset(self) -> None:
        """Call at the start of every episode (agents that act on sequences keep memory)."""
        self.state = self.agent.begin_episode(self.state)
        self._step = 0

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        action, self.state = self.agent.act(self.state, np.asarray(obs, np.float32), self._step)
        self._step += 1
        return action


def load_agent(run_dir: str | Path, checkpoint: str | Path | None = None) -> Policy:
    """Load the latest (or the given) checkpoint of a run as a greedy Policy."""
    run_dir = Path(run_dir)
    cfg = load_config(run_dir)
    path = Path(checkpoint) if checkpoint else ckpt.latest_checkpoint(run_dir / CHECKPOINT_DIR)
    if path is None:
        raise ckpt.CheckpointError(f"{run_dir} has no checkpoint")
    env = make_env(cfg.train.env, seed=cfg.train.seed, action_repeat=cfg.train.action_repeat)
    agent = build_agent(cfg, env)
    env.close()
    state, _, _ = ckpt.load_checkpoint(path, agent.init(cfg.train.seed))
    return Policy(cfg, agent, state)


def evaluate(run_dir: str | Path, episodes: int = 10, seed: int | None = None) -> dict[str, Any]:
    """Evaluate a saved agent greedily; returns mean/std/returns."""
    policy = load_agent(run_dir)
    cfg = policy.config
    env = make_env(cfg.train.env, action_repeat=cfg.train.action_repeat)
    seed = cfg.train.seed + 10_000 if seed is None else seed
    returns = run_episodes(policy.agent, policy.state, env, seed, (0,), episodes)
    env.close()
    return {
        "mean": float(np.mean(returns)),
        "std": float(np.std(returns)),
        "returns": returns,
        "episodes": episodes,
        "env": cfg.train.env,
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
