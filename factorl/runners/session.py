"""What every runner shares: the run folder, the loop's cadence and how a run stops.

`RunSession` is one run from opening its folder to closing it. It resolves and locks the run
folder, starts fresh or restores the latest checkpoint, writes the config, opens the logger, and
drives the loop: one iteration of runner-specific work (`advance`: a vector step on the host, a
jitted chunk on the device), then evaluation, checkpoints and progress as they fall due. It stops
at a safe point on the first Ctrl-C or SIGTERM (with a checkpoint), saves what a crash leaves
when that is a state the run passes through, stops with a checkpoint when metrics.jsonl cannot be
written, and evaluates once more at the end of the budget. A runner provides how its state is
built, restored, advanced, evaluated and saved (`factorl.runners.host.HostTrainer`,
`factorl.runners.device.DeviceTrainer`).
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from factorl.agents import get_algorithm
from factorl.core.config import Config, ConfigError, build_config, saved_settings
from factorl.io import checkpoint as ckpt
from factorl.io import system
from factorl.io.logging import RunLogger, WandbRun, read_metrics, require_wandb
from factorl.io.runfolder import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    LOCK_FILE,
    METRICS_FILE,
    RunFolderError,
    RunFolderLock,
    clear_run,
    describe_os_error,
    holds_a_run,
    record_segment,
    refuse_links,
    remove_leftovers,
)

#: seed streams of `episode_seed`: training episodes, periodic and final evaluations (2 is the
#: host replay sampler's), and the episodes of `runner.video_every`'s videos
TRAIN_STREAM, EVAL_STREAM, FINAL_EVAL_STREAM, VIDEO_STREAM = 0, 1, 3, 4


def algorithm_for(cfg: Config, multi_agent: bool) -> type:
    """The configured algorithm's class for an environment that is multi-agent or not; a
    ValueError (one line) where a single-agent algorithm meets a multi-agent environment or the
    reverse. Both runners build their agents through it."""
    agent_class = get_algorithm(cfg.algo)
    if multi_agent != bool(getattr(agent_class, "MULTI_AGENT", False)):
        if multi_agent:
            hint = "a multi-agent environment; train a multi-agent algorithm (vdn, qmix) on it"
        else:
            hint = (
                "a single-agent environment; this algorithm needs a multi-agent one "
                "(jaxmarl:, pettingzoo: or factorl:)"
            )
        raise ValueError(f"{cfg.algo} cannot learn on {cfg.env.id}, {hint}")
    return agent_class


def episode_seed(seed: int, stream: int, *index: int) -> int:
    """Independent, reproducible reset seed for an episode (training stream 0, evaluation 1).

    SeedSequence pads entropy with zeros, so (stream, 0) equals (stream,): within a stream, use
    one number of indices throughout, and seed anything else from a stream of its own."""
    return int(np.random.SeedSequence([seed, stream, *index]).generate_state(1)[0])


class TrainingStopped(RuntimeError):
    """Training stopped on bad numbers (NaN/Inf); the last good state was checkpointed."""


class StoppedAtOnce(TrainingStopped):
    """A second Ctrl-C or SIGTERM stopped training in the middle of a step."""


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
class Counters:
    """The counters every runner keeps and checkpoints. `env_step` counts environment steps
    summed over environments (one seed's, on a device run of several seeds)."""

    env_step: int = 0
    eval_round: int = 0
    offline_step: int = 0  # learner steps of the offline phase (from a dataset) so far
    last_eval_return: float | None = None
    wall_time: float = 0.0  # seconds of training before this process started


class StopFlag:
    """The first Ctrl-C or SIGTERM asks the loop to stop at a safe point (with a checkpoint); a
    second one interrupts at once. Clusters (SLURM, Ray, Kubernetes) stop jobs with SIGTERM."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: str | None = None  # name of the first stop signal
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.received is not None

    def __enter__(self) -> StopFlag:
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


def crossed(before: int, after: int, every: int) -> bool:
    """Whether a multiple of `every` lies in (before, after]: a step of several environments
    (or a chunk of steps) can pass a logging, evaluation or checkpoint point without landing on
    it."""
    return after // every > before // every


# ------------------------------------------------------------------------------------- run folders
#: settings a resume may change: budget, intervals and display (the rest would change the run)
RESUMABLE = frozenset(
    {
        "run.steps",
        "run.progress",
        "run.tensorboard",
        "run.wandb",
        "run.wandb_project",
        "run.wandb_entity",
        "run.wandb_group",
        "run.wandb_tags",
        "runner.eval_every",
        "runner.eval_episodes",
        "runner.log_every",
        "runner.checkpoint_every",
        "runner.checkpoint_minutes",
        "runner.keep_checkpoints",
        "runner.save_replay",
        "runner.video_every",
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
        if key not in RESUMABLE and key != "run.dir" and value != old[key]
    ]


def load_config(run_dir: str | Path) -> Config:
    """The resolved config a run was started with, read as data and checked as `make_config`
    checks (a run folder of the first, flat layout is read too)."""
    path = Path(run_dir) / CONFIG_FILE
    if not Path(run_dir).exists():
        raise ConfigError(f"{run_dir} does not exist: give the folder of a factorl run")
    if not path.is_file():
        if holds_a_run(Path(run_dir)):  # its records, without a config file
            raise ConfigError(
                f"{run_dir} holds a run's records but no {CONFIG_FILE} file (removed?): put it "
                "back to resume, or start the run again with --overwrite, which discards them"
            )
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
    except RecursionError:  # JSON nested deeper than Python's parser recurses
        raise ConfigError(f"{path} is not a valid factorl config: nested too deeply") from None
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ConfigError) as e:
        raise ConfigError(f"{path} is not a valid factorl config: {e}") from e


def default_run_dir(cfg: Config) -> Path:
    env = cfg.env.id.replace(":", "-").replace("/", "-")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.algo}-{env}-s{cfg.run.seed}-{stamp}"


def resolve_run_dir(cfg: Config, resume: str | Path | None) -> Path:
    """The run's folder: `resume` (whose saved config `cfg` may change only in the RESUMABLE
    settings), else `cfg.run.dir`, else a new default one."""
    if resume is None:
        return Path(cfg.run.dir) if cfg.run.dir else default_run_dir(cfg)
    run_dir = Path(resume)
    changes = config_changes(load_config(run_dir), cfg)
    if changes:
        raise ConfigError(
            f"cannot change {', '.join(changes)} when resuming {run_dir} (it would change the "
            "run); start a new run instead"
        )
    return run_dir


def folder_error(run_dir: Path, error: OSError, what: str) -> RunFolderError:
    return RunFolderError(
        f"could not {what} in {run_dir} ({describe_os_error(error)}); free disk space or fix the "
        "folder's permissions, then run again"
    )


def prepare_run_folder(run_dir: Path, resuming: bool, overwrite: bool) -> list[str]:
    """Checks and tidying before a run writes to its folder (the caller holds its lock): links
    refused, leftovers of killed writes removed, and a fresh run refused where a run already
    is unless `overwrite`. Returns the notes to show."""
    refuse_links(run_dir)
    try:
        notes = [f"[factorl] {note}" for note in remove_leftovers(run_dir)]
    except OSError as e:
        raise folder_error(run_dir, e, "tidy an interrupted checkpoint write") from e
    if not resuming and holds_a_run(run_dir):
        if not overwrite:
            raise ConfigError(
                f"{run_dir} already holds a run; continue it with --resume {run_dir}, start it "
                "over with --overwrite, or choose another --run.dir"
            )
        notes.append(f"[factorl] --overwrite: removed the previous run in {run_dir}")
    return notes


def _rewind_offline(run_dir: Path, offline_step: int) -> None:
    """Drop the offline phase's records after a checkpoint taken in it: they all have env step
    0, so `RunLogger.rewind` keeps them, and they are told apart by their `offline_step`."""
    every = read_metrics(run_dir)
    kept = [r for r in every if r.get("offline_step", -1) <= offline_step]
    if len(kept) != len(every):
        text = "".join(json.dumps(r) + "\n" for r in kept)
        ckpt.atomic_write_text(Path(run_dir) / METRICS_FILE, text)


# ------------------------------------------------------------------------------------- the session
class RunSession:
    """One run of a runner, from opening its folder to closing it; see the module docstring.

    The run folder is locked for the session's life (`close` releases it). Resuming a run that
    has already used its budget writes nothing (the lock file aside): `finished` is then True and
    `run` returns at once.

    A runner sets `agent`, `state` and `loop` (a `Counters`) and provides `_build`, `_start`,
    `_restore`, `_load_finished`, `advance`, `_eval_episodes`, `_learner_steps` and
    `_write_checkpoint`.
    """

    #: training runs side by side in one process (seeds of a device run); records carry "seed"
    #: when there are several
    seeds: np.ndarray

    def __init__(
        self,
        config: Config,
        resume: str | Path | None = None,
        *,
        overwrite: bool = False,
        lock_wait: float = 0.0,
    ) -> None:
        config.validate()
        self.cfg = cfg = config
        self.logger: RunLogger | None = None
        self.finished = False
        self.run_dir = resolve_run_dir(cfg, resume)
        self._lock: RunFolderLock | None = None
        self._video = None  # a factorl.envs.video.VideoRecorder with runner.video_every
        self._wandb: WandbRun | None = None  # with run.wandb; finished by `close`
        self.seeds = np.array([cfg.run.seed])
        try:
            if cfg.run.wandb:  # a missing extra is one line before any work
                require_wandb()
            if cfg.runner.video_every:  # a device run cannot render: say so before building it
                from factorl.envs.video import VideoRecorder, check_env_id

                check_env_id(cfg.env.id, "runner.video_every")
            self._build()  # before touching the folder: a bad environment or size writes nothing
            if cfg.runner.video_every:  # everything a video needs, checked before any work
                self._video = VideoRecorder(
                    self.run_dir, cfg.env.id, cfg.env.action_repeat, cfg.run.tensorboard
                )
            self._lock = RunFolderLock(self.run_dir).acquire(wait=lock_wait)
            # the checkpoint is chosen under the lock: a process that held the folder until now
            # may have saved a newer one
            checkpoint = ckpt.latest_checkpoint(self.run_dir / CHECKPOINT_DIR) if resume else None
            if checkpoint is not None and ckpt.read_meta(checkpoint)["env_step"] >= cfg.run.steps:
                self.finished = True
                self._load_finished(checkpoint)
                self.close()
                return
            self._open(checkpoint, resume is not None, overwrite)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------------------- runner parts
    def _build(self) -> None:
        """Environments, agent and initial state; nothing is written."""
        raise NotImplementedError

    def _start(self) -> None:
        """Begin a fresh run: `loop` at zero, first episodes reset."""
        raise NotImplementedError

    def _restore(self, checkpoint: Path, notes: list[str]) -> list[dict[str, Any]]:
        """Restore `checkpoint`; returns the records it kept that metrics.jsonl lacks."""
        raise NotImplementedError

    def _load_finished(self, checkpoint: Path) -> None:
        """A resume with no budget left: the saved agent and counters for the result."""
        raise NotImplementedError

    def advance(self, end_step: int) -> int:
        """One iteration's work up to at most `end_step`: environment steps, learning and the
        "train" records that fall due. Sets `_mid_step` once it has changed the run. Returns the
        number of learner steps taken (by the first seed)."""
        raise NotImplementedError

    def _eval_episodes(self, stream: int, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Greedy returns, [runs side by side, episodes], with resets seeded by
        `episode_seed(seed, stream, index, episode)`, and whether each episode was won (same
        shape; None where the environment has no wins)."""
        raise NotImplementedError

    def _learner_steps(self) -> np.ndarray:
        """Learner steps of each run side by side."""
        raise NotImplementedError

    def _write_checkpoint(self, wall_time: float) -> Path:
        raise NotImplementedError

    def offline_left(self) -> int:
        """Learner steps of the offline phase still to take (0: none, or it is over)."""
        return 0

    def advance_offline(self, limit: int | None = None) -> None:
        """Learner steps of the offline phase (one, or a chunk of at most `limit` that ends
        where a record or checkpoint falls due), with the "train" record when due; advances
        `loop.offline_step` and sets `_mid_step`."""
        raise NotImplementedError

    def _describe(self) -> str:
        """What the start message says of the runner, e.g. " (8 environments)"."""
        return ""

    def _close_envs(self) -> None:
        """Close the environments (idempotent)."""

    # ------------------------------------------------------------------------------- opening
    def _open(self, checkpoint: Path | None, resuming: bool, overwrite: bool) -> None:
        cfg, run_dir = self.cfg, self.run_dir
        notes = prepare_run_folder(run_dir, resuming, overwrite)
        if resuming and checkpoint is None:
            notes.append(
                f"[factorl] {run_dir} has no checkpoint yet (it stopped before its first one); "
                "starting it again from env step 0 with its saved config"
            )
        unwritten: list[dict[str, Any]] = []
        lost = False  # the records before the checkpoint, missing on resume
        if checkpoint is not None:
            unwritten = self._restore(checkpoint, notes)
        else:
            self._start()
        if self._video is not None:  # videos after the starting step are the run's to write
            notes += self._video.prepare(self.loop.env_step if checkpoint is not None else None)
        try:
            if checkpoint is None:
                clear_run(run_dir)
            else:
                # a checkpoint past a record's step with no records before it: they were
                # removed (a timed checkpoint can come before the first record is due)
                lost = self._records_due() and not read_metrics(run_dir)
                RunLogger.rewind(run_dir, self.loop.env_step, unwritten)
                _rewind_offline(run_dir, self.loop.offline_step)
            start = {"from_env_step": self.loop.env_step}
            if cfg.data.offline_steps:
                start["from_offline_step"] = self.loop.offline_step
            record_segment(run_dir, start, system.factorl_revision())
            if cfg.run.wandb:  # before the config: a W&B that cannot start leaves no run here
                self._wandb = WandbRun.start(run_dir, cfg.run.wandb_init(), cfg.to_dict())
            ckpt.atomic_write_text(run_dir / CONFIG_FILE, cfg.to_json() + "\n")
            self.logger = RunLogger(
                run_dir,
                cfg.run.steps,
                self.loop.env_step,
                progress=cfg.run.progress,
                tensorboard=cfg.run.tensorboard,
                line_every=cfg.runner.log_every,
                wandb=self._wandb,
            )
        except OSError as e:
            raise folder_error(run_dir, e, "write the run's files") from e
        where = f"from {checkpoint.name} at env step {self.loop.env_step}" if checkpoint else ""
        verb = f"resumed {run_dir} {where}" if checkpoint else "training"
        self.logger.message(
            f"[factorl] {verb} {cfg.algo} on {cfg.env.id}{self._describe()}; run folder {run_dir}"
        )
        if cfg.run.steps < self.agent.learning_starts and not cfg.data.offline_steps:
            notes.append(
                f"[factorl] note: the budget of {cfg.run.steps} env steps ends before learning "
                f"starts (after {self.agent.learning_starts} transitions); this run will not learn "
                "unless resumed with more --run.steps"
            )
        for note in notes:
            self.logger.message(note)
        if lost:
            self.logger.message(
                f"[factorl] warning: {run_dir / METRICS_FILE} held no records before the "
                "checkpoint (removed or emptied?); the run goes on without them (to keep them, "
                "stop now and put the file back before resuming)",
                important=True,
            )
        self._clock = time.perf_counter()
        self._last_save = self._clock
        # the step in progress has changed the run (replay, counters, records): a checkpoint now
        # would not be one the run passes through, so an emergency stop writes none
        self._mid_step = False
        # (time, step) samples every 0.5 s; the rate is taken over the last ~10 s, so an
        # evaluation pause does not make the ETA jump
        self._window = deque([(self._clock, self.loop.env_step)], maxlen=20)
        self._evaluated_at: int | None = None  # env step of the last evaluation
        self._offline_phase = False  # records are tagged with the offline phase's step
        self._progress: dict[str, str] = {}

    # ------------------------------------------------------------------------------- pieces
    def _records_due(self) -> bool:
        """Whether a run at the loop's counters has written a record: a "train" record at each
        `log_every` (in env steps, or in offline steps during the offline phase), an
        evaluation at each `eval_every`, and both when the offline phase ends."""
        runner, data, loop = self.cfg.runner, self.cfg.data, self.loop
        if loop.env_step >= min(runner.log_every, runner.eval_every):
            return True
        offline_done = bool(data.offline_steps) and loop.offline_step >= data.offline_steps
        return loop.offline_step >= runner.log_every or offline_done

    def wall(self) -> float:
        """Seconds of training so far, across resumes."""
        return self.loop.wall_time + time.perf_counter() - self._clock

    def save(self) -> Path:
        path = self._write_checkpoint(self.wall())
        self._last_save = time.perf_counter()
        return path

    def _per_seed(self, record: dict[str, Any], s: int) -> dict[str, Any]:
        return {**record, "seed": int(self.seeds[s])} if len(self.seeds) > 1 else record

    def _record_head(self, event: str, learner_step: int) -> dict[str, Any]:
        """The fields every train and eval record starts with."""
        step = self.loop.env_step
        head = {
            "event": event,
            "env_step": step,
            "env_frames": step * self.cfg.env.action_repeat,
            "learner_step": int(learner_step),
            "wall_time": round(self.wall(), 3),
        }
        if self._offline_phase:
            head.update(phase="offline", offline_step=self.loop.offline_step)
        return head

    def evaluate(self, final: bool = False) -> None:
        """Greedy evaluation of every run side by side. A `final` one (the budget ended between
        evaluation points) has seeds of its own and leaves the round counter alone, so a run
        whose budget is later extended goes on exactly as one that had the larger budget from the
        start."""
        loop = self.loop
        stream = FINAL_EVAL_STREAM if final else EVAL_STREAM
        index = loop.env_step if final else loop.eval_round
        returns, won = self._eval_episodes(stream, index)
        returns = np.asarray(returns, np.float64)
        if not np.isfinite(returns).all():
            # as for a non-finite training step: stop at once. This evaluation comes in the
            # middle of a step, so the latest checkpoint is the state to go on from
            raise TrainingStopped(
                f"an evaluation episode at env step {loop.env_step} has a non-finite return (the "
                f"environment returned a non-finite reward); stopped, {self._latest_saved()}"
            )
        if not final:
            loop.eval_round += 1
        self._evaluated_at = loop.env_step
        loop.last_eval_return = float(returns.mean())
        learner_steps = self._learner_steps()
        for s, run_returns in enumerate(returns):
            record = {
                **self._record_head("eval", learner_steps[s]),
                "eval_return": float(run_returns.mean()),
                "eval_return_std": float(run_returns.std()),
                "eval_returns": [float(r) for r in run_returns],
            }
            if won is not None:
                record["eval_win_rate"] = float(np.mean(won[s]))
            record = self._per_seed(record, s)
            self.logger.record({**record, "final": True} if final else record)
        if len(returns) > 1:
            spread = f" (mean of {len(returns)} seeds)"
        else:
            spread = f" ± {returns.std():.1f}"
        wins = "" if won is None else f", won {100 * np.mean(won):.0f}%"
        self.logger.message(
            f"[factorl] eval at step {loop.env_step}: return {loop.last_eval_return:.1f}{spread}"
            f" over {returns.shape[1]} episodes{wins}"
        )

    def record_video(self) -> None:
        """A video of one greedy episode (reset seeded from the video stream and the env step)
        into RUN_DIR/videos and TensorBoard. It renders on an environment of its own and acts on
        a copy of the acting memory, so the run goes on exactly as without it; a failure here is
        a message, never the end of the run."""
        step = self.loop.env_step
        seed = episode_seed(self.cfg.run.seed, VIDEO_STREAM, step)
        self.logger.message(self._video.record_step(self.agent, self.state, step, seed))
        from factorl.envs.video import video_name

        self.logger.video(self._video.folder / video_name(step), step)

    def progress_fields(self, sps: float) -> dict[str, str]:
        loop = self.loop
        fields = {"sps": f"{sps:.0f}"}
        if loop.last_eval_return is not None:
            fields["eval"] = f"{loop.last_eval_return:.1f}"
        if sps > 0:
            left = (self.cfg.run.steps - loop.env_step) * len(self.seeds) / sps
            fields["eta"] = time.strftime("%H:%M:%S", time.gmtime(min(left, 86399)))
        return fields

    def show_progress(self, end_step: int, before: int) -> None:
        # the fields are refreshed twice a second, not every step: formatting them each step
        # cost about as much as the replay insert
        now, step = time.perf_counter(), self.loop.env_step
        line_due = crossed(before, step, self.logger.line_every)
        if now - self._window[-1][0] > 0.5 or step == end_step or line_due:
            self._window.append((now, step))
            (t0, s0), (t1, s1) = self._window[0], self._window[-1]
            # env steps of every run side by side
            sps = (s1 - s0) * len(self.seeds) / (t1 - t0) if t1 > t0 else 0.0
            self._progress = self.progress_fields(sps)
        self.logger.progress(step, self._progress, line_due)

    def checkpoint_due(self, before: int | None = None) -> bool:
        """Every `checkpoint_every` env steps, and once `checkpoint_minutes` have passed;
        `before` is the env step before the last step (one vector step back by default)."""
        cfg = self.cfg
        if before is None:
            before = self.loop.env_step - cfg.env.num_envs
        if crossed(before, self.loop.env_step, cfg.runner.checkpoint_every):
            return True
        minutes = cfg.runner.checkpoint_minutes
        return minutes > 0 and time.perf_counter() - self._last_save >= 60 * minutes

    # ------------------------------------------------------------------------------- the loop
    def step(self, end_step: int) -> int:
        """One iteration of the loop: the runner's work, then whatever falls due. Returns the
        number of learner steps taken (by the first seed)."""
        cfg, before = self.cfg, self.loop.env_step
        learned = self.advance(end_step)
        if crossed(before, self.loop.env_step, cfg.runner.eval_every):
            self.evaluate()
        self._mid_step = False
        if self._video is not None and crossed(before, self.loop.env_step, cfg.runner.video_every):
            self.record_video()
        if self.checkpoint_due(before) and self.logger.error is None:
            self.save()
        self.show_progress(end_step, before)
        return learned

    def _result(self, status: str, stop_signal: str | None = None) -> TrainResult:
        loop = self.loop
        return TrainResult(
            self.run_dir, self.agent, self.state, loop.env_step, loop.last_eval_return, status,
            stop_signal,
        )  # fmt: skip

    def run(
        self, stop_after: int | None = None, stop_after_updates: int | None = None
    ) -> TrainResult:
        """Train until the budget (or `stop_after` more env steps, or a stop signal); the
        session is closed afterwards. An offline phase still to run comes first, and
        `stop_after_updates` ends the call after that many of its learner steps."""
        loop, cfg = self.loop, self.cfg
        if self.finished:
            print(
                f"[factorl] {self.run_dir} has already used its budget of {cfg.run.steps} env "
                f"steps (it is at env step {loop.env_step}); nothing to do. Pass --run.steps N "
                f"with N > {loop.env_step} to train further.",
                file=sys.stderr,
            )
            return self._result("completed")
        end_step = (
            cfg.run.steps if stop_after is None else min(cfg.run.steps, loop.env_step + stop_after)
        )
        status, stop = "completed", StopFlag()
        try:
            with stop:
                cut = False
                if self.offline_left() > 0:
                    cut = self._run_offline(stop, stop_after_updates)
                    if stop.requested:
                        status = "interrupted"
                while loop.env_step < end_step and not cut and status == "completed":
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
            step = f"env step {loop.env_step}"
            if self.offline_left() > 0:
                step = f"offline step {loop.offline_step} (env step 0)"
            if status == "interrupted" and stop.received:
                self.logger.message(
                    f"[factorl] stopped by {stop.received} at {step}; checkpoint {path}. "
                    f"Continue with: factorl train --resume {self.run_dir}",
                    important=True,
                )
            else:
                note = "interrupted" if status == "interrupted" or cut else "finished"
                where = f"at {step}; checkpoint {path}"
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
            self.logger.message(f"[factorl] crashed ({crash!r}); {saved}", important=True)
            raise
        finally:
            self.close()
        return self._result(status, stop.received)

    def _run_offline(self, stop: StopFlag, stop_after_updates: int | None) -> bool:
        """The offline phase: learner steps from the dataset alone, a checkpoint every
        `checkpoint_every` of them (and by time), an evaluation at its end. Returns whether it
        stopped early (`stop_after_updates` reached, a stop signal)."""
        loop, every = self.loop, self.cfg.runner.checkpoint_every
        self.logger.message(
            f"[factorl] offline phase: {self.offline_left()} learner steps from the dataset, "
            f"then environment steps (at offline step {loop.offline_step})"
        )
        self._offline_phase = True
        shown = time.perf_counter()
        try:
            taken = 0
            while self.offline_left() > 0:
                if stop_after_updates is not None and taken >= stop_after_updates:
                    return True
                before = loop.offline_step
                self.advance_offline(
                    None if stop_after_updates is None else stop_after_updates - taken
                )
                taken += loop.offline_step - before
                if self.offline_left() == 0:
                    self.evaluate()  # the offline policy, before any environment step
                self._mid_step = False
                due = crossed(before, loop.offline_step, every) or self.checkpoint_due(0)
                if due and self.logger.error is None:
                    self.save()
                line_due = crossed(before, loop.offline_step, self.cfg.runner.log_every)
                if line_due or time.perf_counter() - shown > 0.5:  # as show_progress
                    shown = time.perf_counter()
                    total = f"{loop.offline_step}/{self.cfg.data.offline_steps}"
                    self.logger.progress(loop.env_step, {"offline": total}, line_due)
                self._stop_if_logging_failed()
                if stop.requested:
                    return True
        finally:
            self._offline_phase = False
        return False

    def _latest_saved(self) -> str:
        """Where a run stopped mid-step goes on from: its latest checkpoint, in words."""
        latest = ckpt.latest_checkpoint(self.run_dir / CHECKPOINT_DIR)
        return f"the latest checkpoint is {latest}" if latest else "there is no checkpoint"

    def _emergency_checkpoint(self) -> str:
        """Save what a crash left, if it is a state the run passes through; say what was done."""
        resume = f"continue with --resume {self.run_dir}"
        if self._mid_step:
            return (
                "stopped in the middle of a step, so no checkpoint was written; "
                f"{self._latest_saved()}"
            )
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
        self._close_envs()
        if self._video is not None:
            self._video.close()
            self._video = None
        if self._wandb is not None:  # while an exception propagates, the run failed
            self._wandb.finish(failed=sys.exc_info()[0] is not None)
            self._wandb = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None
