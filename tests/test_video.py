"""Videos of greedy episodes: `factorl eval --video`, `--runner.video-every`, and the one-line
errors where a video cannot be made (missing extra, no OpenGL backend for MuJoCo, a device run).

Pendulum renders with pygame (no OpenGL), so its videos are made everywhere; the Control Suite
video is made only where MuJoCo can render here."""

import os
import subprocess
import sys
from pathlib import Path

import imageio.v2 as iio
import imageio.v3 as iio3
import numpy as np
import pytest
from conftest import records, same_leaves, tensorboard_events, tiny_config

from factorl.cli import main
from factorl.core.config import ConfigError
from factorl.envs import video
from factorl.train import train

ROOT = Path(__file__).resolve().parents[1]
# imageio's reader starts ffmpeg with fork + exec, which JAX warns about
pytestmark = pytest.mark.filterwarnings(r"ignore:os\.fork\(\) was called:RuntimeWarning")
#: a Pendulum episode: the reset frame and one per step
PENDULUM_FRAMES, PENDULUM_SIZE = 201, (500, 500)


def read_video(path):
    """(frame count, (height, width)) of an MP4, decoded frame by frame with imageio."""
    reader = iio.get_reader(path, format="FFMPEG")
    try:
        shapes = [frame.shape for frame in reader]
    finally:
        reader.close()
    assert shapes and all(s == shapes[0] for s in shapes)
    return len(shapes), shapes[0][:2]


def read_images(logdir):
    """(step, tag, image) of every image summary in the TensorBoard event files of `logdir`."""
    return [
        (event.step, value.tag, value.image)
        for event in tensorboard_events(logdir)
        for value in event.summary.value
        if value.HasField("image")
    ]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same tiny DecQN run on Pendulum with a video every 100 env steps and without."""
    root = tmp_path_factory.mktemp("video-runs")
    loop = {"runner.eval_every": 100, "runner.log_every": 50, "run.tensorboard": True}
    plain = train(tiny_config(root / "plain", steps=200, overrides=loop))
    filmed = train(
        tiny_config(root / "filmed", steps=200, overrides={**loop, "runner.video_every": 100})
    )
    return plain, filmed


def test_video_every_writes_videos_and_leaves_the_run_unchanged(runs):
    plain, filmed = runs
    # rendering draws from nothing the run uses: same records and the same final parameters
    assert records(filmed.run_dir) == records(plain.run_dir)
    assert any(r["event"] == "eval" for r in records(filmed.run_dir))
    assert same_leaves(filmed.state, plain.state)
    folder = filmed.run_dir / "videos"
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["step_0000000100.mp4", "step_0000000200.mp4"]  # no temporary files left
    for name in names:
        assert read_video(folder / name) == (PENDULUM_FRAMES, PENDULUM_SIZE)
    assert not (plain.run_dir / "videos").exists()
    # TensorBoard: an animated GIF per video, small, in a run of its own
    images = read_images(filmed.run_dir / "tb" / "videos")
    assert [(step, tag) for step, tag, _ in images] == [(100, "eval/video"), (200, "eval/video")]
    for _, _, image in images:
        assert image.encoded_image_string.startswith(b"GIF89a")
        gif = iio3.imread(image.encoded_image_string, index=None, extension=".gif")
        assert 2 <= len(gif) <= video.TB_FRAMES
        assert gif.shape[1:3] == (image.height, image.width) and max(gif.shape[1:3]) <= 160


def test_eval_video_is_the_evaluations_first_episodes(runs, tmp_path, capsys):
    import json

    run = runs[1].run_dir
    out = tmp_path / "clips" / "eval.mp4"
    code = main(["eval", str(run), "--episodes", "2", "--video", str(out), "--video-episodes", "1"])
    assert code == 0, capsys.readouterr().err
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert read_video(out) == (PENDULUM_FRAMES, PENDULUM_SIZE)
    assert result["video_frames"] == PENDULUM_FRAMES and result["video_size"] == [500, 500]
    # the video's episode is the evaluation's first: same seed, same return
    assert result["video_returns"] == result["returns"][:1]
    assert sorted(p.name for p in out.parent.iterdir()) == ["eval.mp4"]

    assert main(["eval", str(run), "--episodes", "2", "--video", str(out),
                 "--video-episodes", "3"]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert err == "factorl: error: --video-episodes must be in [1, --episodes 2], got 3"
    # an existing video is replaced only when asked
    out.write_bytes(b"mine")
    assert main(["eval", str(run), "--episodes", "1", "--video", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"factorl: error: --video {out} exists already; give another path, or add " \
        "--overwrite to replace it"  # fmt: skip
    assert out.read_bytes() == b"mine"
    assert main(["eval", str(run), "--episodes", "1", "--video", str(out), "--overwrite"]) == 0
    assert read_video(out) == (PENDULUM_FRAMES, PENDULUM_SIZE)
    assert main(["eval", str(run), "--overwrite"]) == 2
    assert "give --video PATH" in capsys.readouterr().err


def test_a_video_path_that_cannot_be_written_is_one_line_before_any_episode(runs, tmp_path, capsys):
    folder = tmp_path / "clips"
    folder.mkdir()
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)  # (root ignores permissions: checked where they hold)
    cases = {str(folder): "is a folder; give a file path such as"}
    if os.geteuid() != 0:
        cases[str(locked / "a" / "clip.mp4")] = f"cannot write in {locked}"
    for path, message in cases.items():
        assert main(["eval", str(runs[1].run_dir), "--episodes", "1", "--video", path]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and message in err, err
    assert list(folder.iterdir()) == []
    # what ffmpeg itself refuses is one line too
    with pytest.raises(video.VideoError, match=r"cannot write the video .* give another path"):
        mp4 = video._Mp4(Path("/proc/clip.mp4"), fps=10)
        mp4.add(np.zeros((8, 8, 3), np.uint8))
        mp4.finish()  # (ffmpeg reports it once frames flow: at the latest here)


def test_a_missing_extra_is_one_line_naming_it(runs, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # import fails as if not installed
    out = tmp_path / "eval.mp4"
    assert main(["eval", str(runs[1].run_dir), "--episodes", "1", "--video", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("factorl: error: videos need the video extra")
    assert 'pip install "factorl[video]"' in err and not out.exists()
    # training checks before anything is written
    cfg = tiny_config(tmp_path / "run", steps=200, overrides={"runner.video_every": 100})
    with pytest.raises(video.VideoError, match=r"factorl\[video\]"):
        train(cfg)
    assert not (tmp_path / "run").exists()


def test_no_opengl_backend_is_one_line_before_anything_is_written(tmp_path):
    """MUJOCO_GL=disable is what factorl picks on a headless machine without libEGL or
    libOSMesa: a run asking for videos of a Control Suite task stops at once, in one line."""
    run = tmp_path / "run"
    env = {**os.environ, "MUJOCO_GL": "disable", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "factorl.cli", "train", "decqn", "--env.id",
         "dmc:cartpole-balance", "--run.steps", "100", "--runner.video-every", "50",
         "--run.dir", str(run)],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("factorl: error:")]
    assert len(errors) == 1, proc.stderr
    for hint in ("MUJOCO_GL=disable", "apt install libegl1", "MUJOCO_GL=egl",
                 "apt install libosmesa6", "MUJOCO_GL=osmesa"):  # fmt: skip
        assert hint in errors[0], errors[0]
    assert not run.exists()


def test_a_failing_renderer_is_the_opengl_hint(monkeypatch):
    """The same check in this process, with dm_control's renderer failing as it does when a
    backend's library is missing."""

    def broken(self):
        raise RuntimeError("MuJoCo could not create an OpenGL context") from RuntimeError(
            "No OpenGL rendering backend is available."
        )

    monkeypatch.setattr(video.DMCEnv, "render", broken)
    with pytest.raises(video.VideoError) as info:
        video.check_video("dmc:cartpole-balance")
    message = str(info.value)
    assert "\n" not in message and "No OpenGL rendering backend is available" in message
    assert "libosmesa6" in message and "MUJOCO_GL=egl" in message
    # Gymnasium's MuJoCo tasks: what factorl sets where no backend library is found
    monkeypatch.setenv("MUJOCO_GL", "disable")
    with pytest.raises(video.VideoError, match=r"\(MUJOCO_GL=disable\); install an OpenGL"):
        video.check_video("gym:HalfCheetah-v5")


def test_video_every_needs_a_host_environment(tmp_path):
    cfg = tiny_config(
        tmp_path / "run", steps=100,
        overrides={"env.id": "gymnax:Pendulum-v1", "runner.video_every": 50},
    )  # fmt: skip
    with pytest.raises(ConfigError, match=r"runner\.video_every needs a host environment"):
        train(cfg)
    assert not (tmp_path / "run").exists()


def test_prepare_keeps_only_the_videos_before_the_starting_step(tmp_path):
    recorder = object.__new__(video.VideoRecorder)  # its folder logic alone, no environment
    recorder.run_dir = tmp_path
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("step_0000000100.mp4", "step_0000000300.mp4", ".step_0000000400.mp4.tmp-7.mp4"):
        (folder / name).write_bytes(b"x")
    notes = recorder.prepare(200)  # a resume from step 200 writes step 300 again
    assert sorted(p.name for p in folder.iterdir()) == ["step_0000000100.mp4"]
    assert notes == ["[factorl] removed videos/.step_0000000400.mp4.tmp-7.mp4"]
    recorder.prepare(None)  # a fresh run
    assert list(folder.iterdir()) == []


def test_dmc_video_where_mujoco_renders(tmp_path):
    try:
        env = video.check_video("dmc:cartpole-balance", action_repeat=2)
    except video.VideoError as e:
        pytest.skip(f"MuJoCo cannot render here: {e}")
    try:
        zero = np.zeros(env.action_space.shape, np.float32)
        path = tmp_path / "cartpole.mp4"
        made = video.record(lambda obs: zero, env, "dmc:cartpole-balance", [1, 2], path,
                            fps=video.fps_of(env, 2), max_steps=5)  # fmt: skip
    finally:
        env.close()
    assert made["frames"] == 2 * 6 and (made["height"], made["width"]) == video.DMC_SIZE
    assert read_video(path) == (12, video.DMC_SIZE)
    assert video.fps_of(env, 2) == 50.0  # cartpole's 100 control steps a second, 2 per frame
