"""Videos of greedy episodes: `factorl eval RUN_DIR --video PATH` and `--runner.video-every N`.

A video is rendered on an environment of its own, made with `render_mode="rgb_array"` (Gymnasium:
pygame for the classic-control tasks, MuJoCo's offscreen renderer for its tasks; the Control
Suite: `physics.render(height, width, camera_id)`), so the training and evaluation environments
and every random stream of a run are left alone: a run with videos has the same metrics as one
without. The agent acts greedily on a copy of its acting memory.

Everything that can fail is checked before a run starts (`VideoRecorder.open`, `check_video`):
the `video` extra (imageio, imageio-ffmpeg with its own ffmpeg binary) and an OpenGL backend
where MuJoCo renders. Either missing is one line that says what to install; the headless setup
is in docs/videos.md. MP4 files are written to a temporary file and renamed, so a video is
complete or absent. Only host environments (dmc:, gym:) render.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np

from factorl.core.config import ConfigError, install_hint, one_line
from factorl.envs.host import ActionRepeat, DMCEnv, make_env
from factorl.io.runfolder import TENSORBOARD_DIR, VIDEO_DIR, nearest_existing

#: env id prefixes that render (host environments with a Gymnasium or dm_control renderer)
VIDEO_PREFIXES = ("dmc:", "gym:")
#: frame size of Control Suite videos (height, width); Gymnasium tasks render at their own size
DMC_SIZE = (240, 320)
#: the longest side and most frames of the animated GIF a video is logged to TensorBoard as
TB_SIDE, TB_FRAMES = 160, 100
#: what the `video` extra brings
EXTRA_HINT = install_hint("video")
GL_HINT = (
    "install an OpenGL backend and set MUJOCO_GL before starting factorl: apt install libegl1 "
    "and MUJOCO_GL=egl (GPU, or Mesa on the CPU), or apt install libosmesa6 and "
    "MUJOCO_GL=osmesa (CPU); see docs/videos.md"
)


#: the MUJOCO_GL values Gymnasium's MuJoCo renderer accepts
GYM_GL = ("glfw", "egl", "osmesa")


class VideoError(ConfigError):
    """A video cannot be made here (missing extra, no OpenGL backend, an environment that does
    not render); the message is one line that says what to do."""


@contextlib.contextmanager
def _no_fork_warning() -> Iterator[None]:
    """ffmpeg is started with fork + exec, and JAX warns about any fork in its process; nothing
    of this process runs in the child before exec, so that warning is noise here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called")
        yield


def require_extra() -> Any:
    """imageio_ffmpeg with its ffmpeg binary, or a one-line VideoError naming the extra."""
    try:
        import imageio  # noqa: F401  (the GIFs logged to TensorBoard)
        import imageio_ffmpeg

        with _no_fork_warning():  # it runs `ffmpeg -version` once to check the binary
            imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as e:
        raise VideoError(
            f"videos need the video extra (imageio, imageio-ffmpeg), which cannot be used "
            f"({one_line(e)}): {EXTRA_HINT}"
        ) from e
    return imageio_ffmpeg


def check_env_id(env_id: str, what: str = "a video") -> None:
    """A VideoError unless `env_id` is a host environment that renders."""
    if not env_id.startswith(VIDEO_PREFIXES):
        raise VideoError(
            f"{what} needs a host environment that renders (dmc: or gym:); {env_id} does not "
            "(JAX-native and multi-agent environments have no renderer here): record a dmc: or "
            "gym: run, or turn videos off"
        )


def _uses_mujoco(env_id: str, env: gymnasium.Env | None) -> bool:
    if env_id.startswith("dmc:"):
        return True
    try:
        from gymnasium.envs.mujoco import MujocoEnv
    except ImportError:
        return False
    return env is not None and isinstance(env.unwrapped, MujocoEnv)


def make_video_env(
    env_id: str, action_repeat: int = 1, size: tuple[int, int] = DMC_SIZE
) -> gymnasium.Env:
    """An environment of `env_id` that renders RGB frames (a Control Suite task at `size`,
    height x width, from the domain's camera: `factorl.envs.host.DMC_CAMERAS`)."""
    check_env_id(env_id)
    # pygame (Gymnasium's classic-control renderer) starts SDL's sound and display drivers; a
    # video needs neither, and on a headless machine they print errors (ALSA, XDG_RUNTIME_DIR)
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    try:
        if env_id.startswith("dmc:"):
            domain, _, task = env_id.removeprefix("dmc:").partition("-")
            env: gymnasium.Env = DMCEnv(
                domain, task, render_mode="rgb_array", render_height=size[0], render_width=size[1]
            )
            return ActionRepeat(env, action_repeat) if action_repeat > 1 else env
        return make_env(env_id, action_repeat=action_repeat, render_mode="rgb_array")
    except ValueError as e:
        raise VideoError(str(e)) from e


def render_frame(env: gymnasium.Env, env_id: str) -> np.ndarray:
    """One RGB frame [H, W, 3] uint8; where rendering fails, a one-line VideoError (for MuJoCo:
    which system package to install and which MUJOCO_GL to set)."""
    mujoco = _uses_mujoco(env_id, env)
    backend = os.environ.get("MUJOCO_GL")
    if mujoco and env_id.startswith("gym:") and backend not in (None, *GYM_GL):
        # Gymnasium's MuJoCo viewer takes only these; a viewer that fails to start also fails
        # again, noisily, when it is garbage-collected, so it is not started at all
        raise VideoError(
            f"cannot render {env_id} for a video: MuJoCo has no OpenGL backend "
            f"(MUJOCO_GL={backend}); {GL_HINT}"
        )
    try:
        frame = env.render()
    except Exception as e:
        if mujoco:
            # dm_control's failure is factorl's own hint (DMCEnv.render) over the real cause
            cause = e.__cause__ if isinstance(env.unwrapped, DMCEnv) and e.__cause__ else e
            raise VideoError(
                f"cannot render {env_id} for a video: MuJoCo has no working OpenGL backend "
                f"(MUJOCO_GL={backend or 'unset'}: {one_line(cause)}); {GL_HINT}"
            ) from e
        raise VideoError(f"cannot render {env_id} for a video: {one_line(e)}") from e
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[-1] != 3:
        raise VideoError(f"{env_id} renders {frame.shape} frames, not RGB images [H, W, 3]")
    return np.ascontiguousarray(frame, dtype=np.uint8)


def check_video_path(path: str | Path, *, overwrite: bool = False) -> None:
    """A one-line VideoError where an MP4 cannot be written at `path` (a folder there, or a
    folder that cannot hold it) or would replace a file without `overwrite`, checked before any
    episode is played."""
    path = Path(path)
    if path.is_dir():
        raise VideoError(
            f"--video {path} is a folder; give a file path such as {path / 'clip.mp4'}"
        )
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise VideoError(
            f"--video {path} exists already; give another path, or add --overwrite to replace it"
        )
    folder = nearest_existing(path.parent)
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise VideoError(
            f"--video {path}: cannot write in {folder}; give a path in a writable folder"
        )


def check_video(env_id: str, action_repeat: int = 1) -> gymnasium.Env:
    """Everything a video needs, checked before any work: the extra, an environment of
    `env_id` that renders, and one frame rendered. Returns that environment (reset)."""
    check_env_id(env_id)
    require_extra()
    env = make_video_env(env_id, action_repeat)
    try:
        env.reset(seed=0)
        render_frame(env, env_id)
    except BaseException:
        # a renderer that failed half-way can fail again on close (Gymnasium's MuJoCo viewer)
        with contextlib.suppress(Exception):
            env.close()
        raise
    return env


def fps_of(env: gymnasium.Env, action_repeat: int = 1) -> float:
    """Frames per second that play an episode in real time (one frame per agent step)."""
    fps = float(env.metadata.get("render_fps") or 30)
    return max(fps / action_repeat, 1.0)


class GreedyActor:
    """An agent acting greedily in one environment, as the evaluation loop acts, on a copy of
    its acting memory (the learner state it is given is not changed)."""

    def __init__(self, agent: Any, state: Any) -> None:
        self.agent, self.state, self.step = agent, agent.with_num_envs(state, 1), 0

    def reset(self) -> None:
        self.state, self.step = self.agent.begin_episodes(self.state), 0

    def __call__(self, obs: Any) -> np.ndarray:
        action, self.state = self.agent.act(self.state, np.asarray(obs)[None], self.step, "greedy")
        self.step += 1
        return np.asarray(action[0])


class _Mp4:
    """Frames streamed to ffmpeg (libx264, yuv420p) in a temporary file, renamed on `finish`."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path, self.fps = Path(path), fps
        self.tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}.mp4")
        self._writer = None
        self.frames = 0
        self.size: tuple[int, int] | None = None  # (height, width)

    def add(self, frame: np.ndarray) -> None:
        if self._writer is not None and frame.shape[:2] != self.size:
            raise VideoError(f"frame size changed from {self.size} to {frame.shape[:2]}")
        with self._writing():
            if self._writer is None:
                self.size = frame.shape[:2]
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with _no_fork_warning():
                    self._writer = require_extra().write_frames(
                        str(self.tmp), (frame.shape[1], frame.shape[0]), fps=self.fps,
                        codec="libx264", quality=7, macro_block_size=2,
                        ffmpeg_log_level="error", output_params=["-f", "mp4"],
                    )  # fmt: skip
                    self._writer.send(None)
            self._writer.send(frame)
        self.frames += 1

    def finish(self) -> None:
        if self._writer is None:
            raise VideoError("no frames to write")
        with self._writing():
            self._writer.close()
            self._writer = None
            os.replace(self.tmp, self.path)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """ffmpeg refusing its output (it reports that once frames flow) is an OSError or
        imageio's RuntimeError, whose message holds the whole ffmpeg command line: one line
        that names the path instead."""
        try:
            yield
        except (OSError, RuntimeError) as e:
            raise VideoError(
                f"cannot write the video {self.path} ({one_line(e)[:200]}); give another path"
            ) from None

    def discard(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None
        with contextlib.suppress(OSError):
            self.tmp.unlink()


def record(
    policy: Callable[[Any], np.ndarray],
    env: gymnasium.Env,
    env_id: str,
    seeds: Iterable[int],
    path: str | Path,
    *,
    fps: float,
    max_steps: int | None = None,
    keep: Callable[[np.ndarray], None] | None = None,
) -> dict[str, Any]:
    """Play one episode per seed with `policy` (with `reset()`, if it has one, at every start),
    render every step and write them, one after the other, as the MP4 `path` (atomically).
    `max_steps` cuts each episode short (tests); `keep` sees every frame. Returns the episodes'
    returns, frame count and size."""
    video = _Mp4(Path(path), fps)
    returns = []

    def add(frame: np.ndarray) -> None:
        video.add(frame)
        if keep is not None:
            keep(frame)

    try:
        for seed in seeds:
            obs, _ = env.reset(seed=int(seed))
            if hasattr(policy, "reset"):
                policy.reset()
            add(render_frame(env, env_id))
            total, done, steps = 0.0, False, 0
            while not done and (max_steps is None or steps < max_steps):
                obs, reward, terminated, truncated, _ = env.step(policy(obs))
                total += float(reward)
                done = terminated or truncated
                steps += 1
                add(render_frame(env, env_id))
            returns.append(total)
        video.finish()
    except BaseException:
        video.discard()
        raise
    height, width = video.size
    return {"returns": returns, "frames": video.frames, "height": height, "width": width}


def gif_bytes(frames: list[np.ndarray], fps: float) -> tuple[bytes, int, int]:
    """An animated GIF of at most TB_FRAMES frames, longest side at most TB_SIDE pixels, that
    plays at the video's speed; with its height and width."""
    import imageio.v3 as iio

    step_t = max(1, -(-len(frames) // TB_FRAMES))
    step_xy = max(1, -(-max(frames[0].shape[:2]) // TB_SIDE))
    small = np.stack([f[::step_xy, ::step_xy] for f in frames[::step_t]])
    duration = 1000.0 * step_t / fps  # milliseconds per frame
    gif = iio.imwrite("<bytes>", small, extension=".gif", duration=duration, loop=0)
    return gif, small.shape[1], small.shape[2]


class _TensorBoardImages:
    """Animated GIFs as TensorBoard image summaries (the Images tab plays them), in an event file
    of its own under the run's tb/ folder, shown as the run "videos"."""

    def __init__(self, logdir: Path) -> None:
        from tensorboardX.event_file_writer import EventsWriter

        logdir.mkdir(parents=True, exist_ok=True)
        self._writer = EventsWriter(str(logdir / "events"))

    def write(self, tag: str, step: int, gif: bytes, height: int, width: int) -> None:
        import time

        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.proto.summary_pb2 import Summary

        image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=gif)
        event = Event(
            wall_time=time.time(),
            step=step,
            summary=Summary(value=[Summary.Value(tag=tag, image=image)]),
        )
        self._writer.write_event(event)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def video_name(env_step: int) -> str:
    return f"step_{env_step:010d}.mp4"


class VideoRecorder:
    """The videos of a training run: one greedy episode every `runner.video_every` env steps, as
    RUN_DIR/videos/step_XXXXXXXXXX.mp4 and, with TensorBoard on, an animated GIF in
    RUN_DIR/tb/videos (tag eval/video). `open` checks everything first; a failure while
    recording later (a full disk) is reported by `record_step` and never stops training."""

    def __init__(self, run_dir: Path, env_id: str, action_repeat: int, tensorboard: bool) -> None:
        self.run_dir, self.env_id, self.action_repeat = Path(run_dir), env_id, action_repeat
        self.tensorboard = tensorboard
        self.env: gymnasium.Env | None = check_video(env_id, action_repeat)
        self._tb: _TensorBoardImages | None = None

    @property
    def folder(self) -> Path:
        return self.run_dir / VIDEO_DIR

    def prepare(self, env_step: int | None) -> list[str]:
        """Tidy the videos folder as the run opens: temporary files of killed writes go, and
        videos past the step the run starts from (a fresh run: all; a resume: those after its
        checkpoint, which the resumed run writes again). Returns notes to show."""
        folder = self.folder
        if folder.is_symlink():
            raise VideoError(
                f"{folder} is a symbolic link; factorl does not write through links in a run "
                "folder (remove it)"
            )
        notes = []
        if folder.is_dir():
            for path in folder.glob(".*.tmp-*"):
                with contextlib.suppress(OSError):
                    path.unlink()
                    notes.append(f"[factorl] removed {VIDEO_DIR}/{path.name}")
            for path in folder.glob("step_*.mp4"):
                step = path.stem.removeprefix("step_")
                if step.isdigit() and (env_step is None or int(step) > env_step):
                    with contextlib.suppress(OSError):
                        path.unlink()
        return notes

    def record_step(self, agent: Any, state: Any, env_step: int, seed: int) -> str:
        """Write the video of env step `env_step` (episode reset with `seed`); returns the line
        to show, which says what went wrong if anything did."""
        path = self.folder / video_name(env_step)
        frames: list[np.ndarray] = []
        fps = fps_of(self.env, self.action_repeat)
        try:
            result = record(
                GreedyActor(agent, state), self.env, self.env_id, [seed], path, fps=fps,
                keep=frames.append if self.tensorboard else None,
            )  # fmt: skip
        except Exception as e:
            return f"[factorl] no video at env step {env_step} ({one_line(e)}); training goes on"
        if self.tensorboard and frames:
            try:
                if self._tb is None:
                    self._tb = _TensorBoardImages(self.run_dir / TENSORBOARD_DIR / VIDEO_DIR)
                self._tb.write("eval/video", env_step, *gif_bytes(frames, fps))
            except Exception as e:
                self.tensorboard = False
                return (
                    f"[factorl] video {path} written; TensorBoard could not take it "
                    f"({one_line(e)}), so later videos go to {VIDEO_DIR}/ only"
                )
        return f"[factorl] video {path} (return {result['returns'][0]:.1f})"

    def close(self) -> None:
        if self._tb is not None:
            with contextlib.suppress(OSError):
                self._tb.close()
            self._tb = None
        if self.env is not None:
            self.env.close()
            self.env = None
