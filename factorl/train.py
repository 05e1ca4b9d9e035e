"""Training, evaluating and loading agents: the entry points over both runners.

`train(config)` runs host environments (dmc:, gym:) on the host runner
(`factorl.runners.host.HostTrainer`) and JAX-native ones (gymnax:, playground:) on the device
runner (`factorl.runners.device.DeviceTrainer`); both share the run folder, resume and stop
handling of `factorl.runners.session.RunSession`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import gymnasium
import jax
import numpy as np

from factorl.core.config import Config, ConfigError, build_config, check_episodes
from factorl.envs.marl import is_marl_env
from factorl.io import checkpoint as ckpt
from factorl.io.runfolder import CHECKPOINT_DIR
from factorl.presets import preset_settings
from factorl.runners.device import (
    DeviceTrainer,
    device_replay_streams,
    device_run_spaces,
    evaluate_device_run,
    is_jax_env,
    load_device_run,
    record_device_episodes,
)
from factorl.runners.host import HostTrainer, build_agent, env_or_config_error, run_episodes
from factorl.runners.session import (
    EVAL_STREAM,
    StoppedAtOnce,
    TrainingStopped,
    TrainResult,
    episode_seed,
    load_config,
)


def make_config(
    algo: str, overrides: Mapping[str, Any] | None = None, preset: str | None = None
) -> Config:
    """A validated Config of `algo`: its reference defaults, then preset `preset` (see
    `factorl.presets`), then `overrides`, keyed by dotted setting names (`"env.id"`,
    `"run.steps"`, `"replay.n_step"`). An unknown key or a bad value is a ConfigError."""
    return build_config(algo, {**preset_settings(algo, preset), **(overrides or {})})


def train(
    config: Config,
    resume: str | Path | None = None,
    *,
    stop_after: int | None = None,
    stop_after_updates: int | None = None,
    overwrite: bool = False,
    lock_wait: float = 0.0,
) -> TrainResult:
    """Train `config.algo` on `config.env.id`; with `resume`, continue that run folder.

    Host environments (dmc:, gym:) run on the host runner (`HostTrainer`), JAX-native ones
    (gymnax:, playground:) on the device runner (`DeviceTrainer`).

    `stop_after` (env steps) ends this call early, with a checkpoint, as an interruption would:
    used by tests of resume and handy for time-sliced jobs. `overwrite` lets a fresh run replace
    a previous run in its folder (otherwise refused). `stop_after_updates` ends it after that
    many learner steps of an offline phase (`data.offline_steps`), likewise. A run folder
    another process holds is refused at once, or after `lock_wait` seconds of waiting for it.
    """
    runner = DeviceTrainer if is_jax_env(config.env.id) else HostTrainer
    session = runner(config, resume, overwrite=overwrite, lock_wait=lock_wait)
    return session.run(stop_after, stop_after_updates)


# ------------------------------------------------------------------------------------- using agents
class Policy:
    """A trained agent as a function of observations: `policy(obs) -> action` (greedy).
    `env_step` is that of the checkpoint it was loaded from."""

    def __init__(self, config: Config, agent, state, env_step: int | None = None) -> None:
        self.config, self.agent = config, agent
        self.state = agent.with_num_envs(state, 1)
        self.env_step = env_step
        self._step = 0

    def reset(self) -> None:
        """Call at the start of every episode (agents that act on sequences keep memory)."""
        self.state = self.agent.begin_episodes(self.state)
        self._step = 0

    def __call__(self, obs: Any) -> np.ndarray:
        """One environment's action; a multi-agent observation is a dict (or `MultiAgentObs`)
        of its obs, state and avail, and the action one per agent."""
        if isinstance(obs, Mapping) or hasattr(obs, "_fields"):
            obs = jax.tree_util.tree_map(lambda x: np.asarray(x)[None], obs)
        else:
            obs = np.asarray(obs, np.float32)[None]
        action, self.state = self.agent.act(self.state, obs, self._step)
        self._step += 1
        return action[0]


#: reads of a run's latest checkpoint before giving up on one that keeps being replaced
_LATEST_TRIES = 5


def _from_latest(run_dir: Path, load: Callable[[Path], Any]) -> Any:
    """`load` of the run's latest checkpoint. A run still training deletes its older
    checkpoints as it writes new ones, so one can vanish while it is read: then the new latest
    is read instead."""
    for _ in range(_LATEST_TRIES):
        path = ckpt.latest_checkpoint(run_dir / CHECKPOINT_DIR)
        if path is None:
            raise ckpt.CheckpointError(f"{run_dir} has no checkpoint")
        try:
            return load(path)
        except ckpt.CheckpointError:
            if path.exists():
                raise
    raise ckpt.CheckpointError(
        f"{run_dir}: its latest checkpoint was replaced {_LATEST_TRIES} times while being read; "
        "try again"
    )


def _at_checkpoint(run_dir: str | Path, path: Path | None, load: Callable[[Path], Any]) -> Any:
    """`load` of checkpoint `path`, or with None of the run's latest (see `_from_latest`)."""
    return load(path) if path is not None else _from_latest(Path(run_dir), load)


def load_agent(run_dir: str | Path, checkpoint: str | Path | None = None) -> Policy:
    """Load the latest (or the given) checkpoint of a run as a greedy Policy."""
    cfg = load_config(run_dir)

    def load(path: Path) -> Policy:
        if is_jax_env(cfg.env.id):  # the first seed's agent of a device run
            agent, _, states, env_steps = load_device_run(cfg, path)
            first = jax.tree_util.tree_map(lambda x: x[0], states)
            return Policy(cfg, agent, first, int(env_steps[0]))
        return _load_host_policy(cfg, path)[0]

    return _at_checkpoint(run_dir, Path(checkpoint) if checkpoint else None, load)


def _load_host_policy(cfg: Config, path: Path) -> tuple[Policy, dict[str, Any]]:
    """A host run's checkpoint `path` as a greedy Policy, with the checkpoint's meta."""
    env = env_or_config_error(cfg, cfg.run.seed)
    try:
        agent = build_agent(cfg, env)
    finally:
        env.close()
    state, _, meta = ckpt.load_checkpoint(path, agent.init(cfg.run.seed, cfg.env.num_envs))
    return Policy(cfg, agent, state, int(meta["env_step"])), meta


def own_checkpoint(run_dir: str | Path, checkpoint: str | int | Path) -> Path:
    """`checkpoint_path`, refusing a checkpoint folder of another run in one line: its agent
    would be taken for this run's (evaluated or recorded with this run's config)."""
    path = checkpoint_path(run_dir, checkpoint)
    own = (Path(run_dir) / CHECKPOINT_DIR).resolve()
    if path.resolve().parent != own:
        raise ConfigError(
            f"--checkpoint {checkpoint} is not one of {run_dir}'s checkpoints (those are in "
            f"{own}); give one of them, or use the run it belongs to"
        )
    return path


def checkpoint_path(run_dir: str | Path, checkpoint: str | int | Path | None = None) -> Path:
    """The checkpoint folder `checkpoint` names in run `run_dir`: None, the latest; an env step
    (40000, or "40000"), RUN_DIR/checkpoints/step_0000040000; anything else, a path to a
    checkpoint folder (or the name of one in RUN_DIR/checkpoints). One that is not there is a
    one-line ConfigError listing the env steps of the run's checkpoints."""
    root = Path(run_dir) / CHECKPOINT_DIR
    if checkpoint is None:
        latest = ckpt.latest_checkpoint(root)
        if latest is None:
            raise ckpt.CheckpointError(f"{run_dir} has no checkpoint")
        return latest
    text = str(checkpoint)
    if not isinstance(checkpoint, bool) and text.isascii() and text.isdigit():
        step = int(text)
        path, named = root / f"step_{step:010d}", f"at env step {step}"
    else:
        path, named = Path(checkpoint), text
        if not path.exists() and (root / text).is_dir():
            path = root / text
    if not (path / ckpt.META_FILE).is_file():  # (a link is refused when it is read)
        steps = [str(int(p.name.removeprefix("step_"))) for p in ckpt.list_checkpoints(root)]
        listed = ", ".join(steps) if steps else "none"
        raise ConfigError(
            f"{run_dir} has no checkpoint {named} (its checkpoints' env steps: {listed}); give "
            "--checkpoint one of those steps or a checkpoint folder"
        )
    return path


def evaluate(
    run_dir: str | Path,
    episodes: int = 10,
    seed: int | None = None,
    *,
    checkpoint: str | int | Path | None = None,
    video: str | Path | None = None,
    video_episodes: int = 1,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Evaluate a saved agent greedily; returns mean/std/returns (a device run: `episodes` for
    each of its seeds, run side by side, with `per_seed_mean`). The agent is the run's latest
    checkpoint, or `checkpoint` (an env step or one of the run's checkpoint folders, see
    `checkpoint_path`).

    With `video` (a host run: dmc:, gym:), the first `video_episodes` of those episodes, with the
    same seeds, are also rendered into that MP4 file (`video_returns` repeats their returns);
    whether it can be made is checked before anything runs (see factorl.envs.video), and a file
    already there is replaced only with `overwrite`."""
    check_episodes(episodes)
    cfg = load_config(run_dir)
    path = None if checkpoint is None else own_checkpoint(run_dir, checkpoint)
    video_env = None
    if video is not None:
        from factorl.envs.video import check_video, check_video_path

        if not 1 <= video_episodes <= episodes:
            raise ConfigError(f"video_episodes must be in [1, episodes={episodes}]")
        check_video_path(video, overwrite=overwrite)
        video_env = check_video(cfg.env.id, cfg.env.action_repeat)
        try:
            policy = load_agent(run_dir, path)
            result = _evaluate(run_dir, cfg, episodes, seed, policy=policy)
            seed = cfg.run.seed + 10_000 if seed is None else seed  # as _evaluate's
            made = _record_video(policy, seed, video_env, video, video_episodes)
        finally:
            video_env.close()
        return {**result, **made}
    return _evaluate(run_dir, cfg, episodes, seed, path=path)


#: `episode_seed` stream of the episodes `collect` records (0-4 are the runners'), and the stream
#: of its action noise: a stream of its own, since SeedSequence pads entropy with zeros, so
#: [seed, 5] would equal episode 0's [seed, 5, 0]
COLLECT_STREAM, COLLECT_NOISE_STREAM = 5, 6


def record_episodes(
    policy: Policy, env: gymnasium.Env, episodes: int, noise: float, seed: int
) -> list[dict[str, np.ndarray]]:
    """`episodes` episodes of `policy` on `env` as `factorl.io.datasets` stores them: the greedy
    action plus N(0, noise^2) per dimension (the noise from `seed`), clipped to the bounds;
    resets seeded from (`seed`, episode index)."""
    from factorl.io.datasets import EPISODE_KEYS

    rng = np.random.default_rng(np.random.SeedSequence([seed, COLLECT_NOISE_STREAM]))
    low, high = env.action_space.low, env.action_space.high
    recorded = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=episode_seed(seed, COLLECT_STREAM, ep))
        policy.reset()
        steps: dict[str, list] = {k: [] for k in EPISODE_KEYS}
        steps["observations"].append(np.asarray(obs, np.float32))
        done = False
        while not done:
            action = np.asarray(policy(obs), np.float32)
            if noise > 0:
                # a noise beyond float32's range would overflow (and warn) in the cast; the
                # bounds below clip it all the same
                sample = np.clip(rng.normal(0.0, noise, action.shape), -1e30, 1e30)
                action = action + sample.astype(np.float32)
            action = np.clip(action, low, high).astype(np.float32)
            obs, reward, terminated, truncated, _ = env.step(action)
            steps["observations"].append(np.asarray(obs, np.float32))
            steps["actions"].append(action)
            steps["rewards"].append(float(reward))
            steps["terminations"].append(bool(terminated))
            steps["truncations"].append(bool(truncated))
            done = terminated or truncated
        recorded.append({k: np.asarray(v) for k, v in steps.items()})
    return recorded


def collect(
    run_dir: str | Path,
    out: str,
    episodes: int | None = None,
    noise: float | None = None,
    seed: int | None = None,
    *,
    checkpoint: str | int | Path | None = None,
    replay: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Record `episodes` episodes of a saved agent into local Minari dataset `out`: the greedy
    action plus Gaussian noise of std `noise` (default 0) in the environment's action units,
    clipped to the bounds. Resets are seeded from `seed` (default: the run's seed + 20000) and
    the episode index, the noise from `seed`, so a collection is reproducible. The agent is the
    run's latest checkpoint (the new latest if a run still training deletes it as it is
    read), or `checkpoint` (an env step or a checkpoint folder, see
    `checkpoint_path`). A host run (dmc:, gym:) plays its episodes one by one on its host
    environment; a device run (gymnax:, playground:) plays them side by side in its JAX
    environment, with its first seed's agent (`factorl.runners.device.record_device_episodes`).
    Multi-agent runs are refused.

    With `replay`, nothing is played: the replay buffer stored in that checkpoint is written
    instead, every stored step once (`export_replay`); `episodes`, `noise` and `seed` are then
    refused. The metadata records the source run, algorithm, env id, action repeat, the
    checkpoint's env step and the source ("policy" or "replay"), and for episodes played the
    noise, seed and number of episodes."""
    from factorl.io import datasets

    if replay:
        given = [
            flag
            for flag, value in (("--episodes", episodes), ("--noise", noise), ("--seed", seed))
            if value is not None
        ]
        if given:
            raise ConfigError(
                f"--replay exports the replay buffer a checkpoint stores; {' and '.join(given)} "
                "set how new episodes are played and cannot be used with it"
            )
    else:
        if episodes is None:
            raise ConfigError(
                "give --episodes N, the episodes to record (or --replay, to export the replay "
                "buffer a checkpoint stores)"
            )
        check_episodes(episodes, "--episodes")
        noise = 0.0 if noise is None else noise
        if not (math.isfinite(noise) and noise >= 0):
            raise ConfigError(f"--noise must be a finite number >= 0, got {noise!r}")
    # before anything is played: a name that cannot be written, or would replace what is there
    datasets.check_new_dataset(out, overwrite=overwrite)
    cfg = load_config(run_dir)
    _refuse_multi_agent(cfg)
    # the dataset records run_dir as its source: another run's checkpoint would be recorded
    # under the wrong run
    path = None if checkpoint is None else own_checkpoint(run_dir, checkpoint)

    def at_checkpoint(use: Callable[[Path], Any]) -> Any:
        return _at_checkpoint(run_dir, path, use)

    if replay:
        return at_checkpoint(lambda path: export_replay(run_dir, out, path, overwrite=overwrite))
    seed = cfg.run.seed + 20_000 if seed is None else int(seed)
    if is_jax_env(cfg.env.id):
        obs_space, action_space = device_run_spaces(cfg)
        # the same reset seeds as a host collection's; here they key the whole episode
        seeds = [episode_seed(seed, COLLECT_STREAM, ep) for ep in range(episodes)]
        # the checkpoint is verified once, as it is loaded, before any episode is played
        recorded, env_step = at_checkpoint(
            lambda path: record_device_episodes(cfg, path, seeds, noise)
        )
    else:
        env = env_or_config_error(cfg, seed)
        try:
            if isinstance(env.observation_space, gymnasium.spaces.Dict):
                raise ConfigError(f"collect records single-agent runs; {cfg.env.id} is multi-agent")
            obs_space, action_space = env.observation_space, env.action_space
            policy, ckpt_meta = at_checkpoint(lambda path: _load_host_policy(cfg, path))
            recorded = record_episodes(policy, env, episodes, noise, seed)
            env_step = ckpt_meta["env_step"]
        finally:
            env.close()
    meta = {
        **_dataset_origin(run_dir, cfg, "policy", env_step),
        "noise": float(noise),
        "seed": seed,
        "episodes": episodes,
    }
    out_path = datasets.write_dataset(
        out,
        recorded,
        obs_space,
        action_space,
        metadata=meta,
        algorithm=cfg.algo,
        description=f"factorl collect: {cfg.algo} on {cfg.env.id} at env step "
        f"{meta['checkpoint_env_step']}, noise std {noise:g}",
        overwrite=overwrite,
    )
    returns = [float(np.sum(e["rewards"])) for e in recorded]
    return {
        "dataset": out,
        "path": str(out_path),
        "episodes": episodes,
        "steps": int(sum(len(e["actions"]) for e in recorded)),
        "mean_return": float(np.mean(returns)),
        "returns": returns,
        **{k: meta[k] for k in ("algorithm", "env_id", "checkpoint_env_step", "noise", "seed")},
    }


def _refuse_multi_agent(cfg: Config) -> None:
    """A one-line error for a multi-agent device run: a Minari episode here is one agent's."""
    if is_marl_env(cfg.env.id):
        raise ConfigError(f"collect records single-agent runs; {cfg.env.id} is multi-agent")


def _dataset_origin(run_dir: str | Path, cfg: Config, source: str, env_step: int) -> dict:
    """The metadata every dataset `collect` writes: the run, its algorithm, environment and
    action repeat (checked when the dataset is loaded), and what was recorded from which
    checkpoint (`source`: "policy" or "replay")."""
    return {
        "source_run": str(Path(run_dir).resolve()),
        "algorithm": cfg.algo,
        "env_id": cfg.env.id,
        "action_repeat": cfg.env.action_repeat,
        "source": source,
        "checkpoint_env_step": env_step,
    }


def export_replay(
    run_dir: str | Path, out: str, checkpoint: str | Path, *, overwrite: bool = False
) -> dict[str, Any]:
    """Write the replay buffer stored in checkpoint folder `checkpoint` of run `run_dir` as
    local Minari dataset `out`: every stored step once, stream (environment) by stream, each
    stream's episodes in the order they were collected, with the actions the environment was
    given (the host replay stores those, in its action units, for every single-agent algorithm;
    a device run's replay stores the agent's actions, which the environment clipped to its
    bounds, and they are written clipped). A device run's replay is its first seed's
    (`factorl.runners.device.device_replay_streams`). An episode still in progress at the
    checkpoint is written truncated at its last stored step; one whose first steps the ring
    buffer overwrote starts at its oldest stored step. Anything that would not come out exactly
    (actions that are not the environment's Box actions, steps that do not follow on) is
    refused in one line. Nothing is run: a host checkpoint's arrays are read with
    `factorl.io.checkpoint.load_arrays`, a device one's state with `load_checkpoint` (verified,
    no pickle)."""
    from factorl.io import datasets
    from factorl.replay.host import stored_steps

    cfg = load_config(run_dir)
    _refuse_multi_agent(cfg)
    path = Path(checkpoint)
    if is_jax_env(cfg.env.id):
        obs_space, action_space = device_run_spaces(cfg)
        try:
            streams, meta = device_replay_streams(cfg, path)
        except ValueError as e:
            raise ckpt.CheckpointError(f"checkpoint {path}: its replay cannot be read: {e}") from e
    else:
        env = env_or_config_error(cfg, cfg.run.seed)
        try:
            obs_space, action_space = env.observation_space, env.action_space
        finally:
            env.close()
        if isinstance(obs_space, gymnasium.spaces.Dict):
            raise ConfigError(f"collect records single-agent runs; {cfg.env.id} is multi-agent")
        arrays, meta = ckpt.load_arrays(path)
        if meta.get("algo") != cfg.algo:
            raise ckpt.CheckpointError(
                f"{path} was written by {meta.get('algo')!r}, not {cfg.algo!r}"
            )
        if "replay" not in arrays:
            raise ConfigError(
                f"checkpoint {path} holds no replay buffer (the run was trained with "
                "--runner.no-save-replay); train with --runner.save-replay to export its replay"
            )
        try:
            streams = stored_steps(arrays["replay"])
        except ValueError as e:
            raise ckpt.CheckpointError(f"checkpoint {path}: its replay cannot be read: {e}") from e
    steps = sum(len(s["action"]) for s in streams)
    if steps == 0:
        raise ConfigError(f"checkpoint {path} holds an empty replay buffer: nothing to export")
    first = streams[0]
    if first["obs"].shape[1:] != obs_space.shape:
        raise ConfigError(
            f"checkpoint {path}'s replay stores observations of shape {first['obs'].shape[1:]}, "
            f"not {cfg.env.id}'s {obs_space.shape}; it cannot be exported"
        )
    _check_replay_actions(path, first["action"], action_space, cfg.env.id)
    episodes = []
    for i, stream in enumerate(streams):
        stream["action"] = stream["action"].reshape(-1, *action_space.shape)
        try:
            episodes += datasets.episodes_from_steps(stream)
        except datasets.DatasetError as e:
            raise ConfigError(
                f"checkpoint {path}: the replay of environment {i} cannot be exported exactly: {e}"
            ) from None
    env_step = meta["env_step"]
    info = {
        **_dataset_origin(run_dir, cfg, "replay", env_step),
        "steps": steps,
        "episodes": len(episodes),
        "streams": len(streams),
        # the run's earlier steps that the ring buffer no longer holds
        "overwritten_steps": max(int(env_step) - steps, 0),
    }
    out_path = datasets.write_dataset(
        out,
        episodes,
        obs_space,
        action_space,
        metadata=info,
        algorithm=cfg.algo,
        description=f"factorl collect --replay: the replay buffer of {cfg.algo} on {cfg.env.id} "
        f"at env step {env_step}",
        overwrite=overwrite,
    )
    return {"dataset": out, "path": str(out_path), **{k: info[k] for k in (
        "source", "algorithm", "env_id", "checkpoint_env_step", "steps", "episodes", "streams",
        "overwritten_steps",
    )}}  # fmt: skip


def _check_replay_actions(path: Path, actions: np.ndarray, space, env_id: str) -> None:
    """A one-line error unless a replay's stored actions are `space`'s Box actions: floats, one
    per action dimension, inside the bounds (a replay of bin indices or normalised actions
    cannot be turned back into the environment's actions exactly)."""
    size = int(np.prod(space.shape))
    if actions.dtype.kind != "f" or actions.shape[1:] != (size,):
        raise ConfigError(
            f"checkpoint {path}'s replay stores actions as {actions.dtype}{list(actions.shape[1:])}"
            f" per step, not {env_id}'s Box actions of {size} dimensions; they cannot be "
            "converted back exactly, so the replay is not exported"
        )
    low = np.asarray(space.low, np.float32).reshape(-1)
    high = np.asarray(space.high, np.float32).reshape(-1)
    if not (np.isfinite(actions).all() and (actions >= low).all() and (actions <= high).all()):
        raise ConfigError(
            f"checkpoint {path}'s replay stores actions outside {env_id}'s bounds, so they are "
            "not in the environment's units; the replay is not exported"
        )


def _record_video(policy: Policy, seed: int, env, path, episodes: int) -> dict[str, Any]:
    """The first `episodes` episodes of an evaluation with `seed`, played again on `env` and
    written to `path`."""
    from factorl.envs.video import GreedyActor, fps_of, record

    cfg = policy.config
    seeds = [episode_seed(seed, EVAL_STREAM, 0, ep) for ep in range(episodes)]
    actor = GreedyActor(policy.agent, policy.state)
    fps = fps_of(env, cfg.env.action_repeat)
    made = record(actor, env, cfg.env.id, seeds, path, fps=fps)
    return {
        "video": str(path),
        "video_episodes": episodes,
        "video_returns": made["returns"],
        "video_frames": made["frames"],
        "video_size": [made["height"], made["width"]],
    }


def _evaluate(
    run_dir,
    cfg: Config,
    episodes: int,
    seed: int | None,
    *,
    policy: Policy | None = None,
    path: Path | None = None,
) -> dict[str, Any]:
    """`evaluate` without a video: of `policy`, else of checkpoint `path`, else of the latest."""
    if is_jax_env(cfg.env.id):
        seed = cfg.run.seed + 10_000 if seed is None else seed

        def on_device(path: Path) -> dict[str, Any]:
            return evaluate_device_run(cfg, path, episodes, seed)

        return _at_checkpoint(run_dir, path, on_device)
    policy = policy or load_agent(run_dir, path)
    cfg = policy.config
    env = env_or_config_error(cfg)
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
        "checkpoint_env_step": policy.env_step,
    }


__all__ = [
    "Policy",
    "StoppedAtOnce",
    "TrainResult",
    "TrainingStopped",
    "checkpoint_path",
    "collect",
    "evaluate",
    "export_replay",
    "load_agent",
    "load_config",
    "make_config",
    "train",
]
