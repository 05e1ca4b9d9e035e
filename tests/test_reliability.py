"""What a run survives: run folders from untrusted sources, signals, kill -9, two processes on one
folder, budgets that end between evaluations, full disks and bad input. Each test here failed on
the code before these guarantees were added."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from conftest import hold_run_folder, records, same_leaves, tiny_config

from factorl.cli import main
from factorl.core.config import ConfigError
from factorl.io import checkpoint as ckpt
from factorl.io.logging import read_metrics
from factorl.io.runfolder import RunFolderError, RunFolderLock, nearest_existing, read_segments
from factorl.runners.host import HostTrainer
from factorl.train import StoppedAtOnce, evaluate, load_agent, make_config, train

#: conftest's tiny_config as flags, so CLI runs and `train(tiny_config(...))` runs are the same run
TINY_FLAGS = [
    "--agent.width", "32", "--replay.batch-size", "32", "--agent.learning-starts", "100",
    "--agent.update-every", "2", "--agent.target-update-period", "20",
    "--replay.capacity", "5000", "--runner.eval-every", "300", "--runner.eval-episodes", "1",
    "--runner.log-every", "100", "--runner.checkpoint-every", "10000", "--run.progress", "lines",
    "--run.no-tensorboard",
]  # fmt: skip


def _same_final_checkpoint(a, b):
    """The newest checkpoints of two runs hold the same learner state, replay and loop arrays."""
    pa, pb = (ckpt.latest_checkpoint(p / "checkpoints") for p in (a, b))
    if pa.name != pb.name or (pa / "state.npz").read_bytes() != (pb / "state.npz").read_bytes():
        return False
    for group in ("replay.npz", "loop.npz"):
        with np.load(pa / group) as x, np.load(pb / group) as y:
            if x.files != y.files or not all(np.array_equal(x[k], y[k]) for k in x.files):
                return False
    return True


def _cli(*args, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", "factorl.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def _wait_for_step(run_dir, step, proc, timeout=120):
    """Block until the run's metrics reach `step` (the process is then past compilation)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if any(r.get("env_step", 0) >= step for r in read_metrics(run_dir)):
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError(f"{run_dir} did not reach env step {step} in {timeout} s")


# -------------------- 1. no code from a run folder
def _run_whose_config_names(tmp_path, env_id):
    """A short finished run whose config.json was then edited to name `env_id`."""
    run = tmp_path / "run"
    train(tiny_config(run, steps=100))
    config = json.loads((run / "config.json").read_text())
    config["env"]["id"] = env_id
    (run / "config.json").write_text(json.dumps(config))
    return run


@pytest.fixture
def booby_trap(tmp_path, monkeypatch):
    """A module that would leave a file behind if anything imported it (found on sys.path and in
    the working directory, where a hostile run folder would put it)."""
    marker = tmp_path / "imported"
    (tmp_path / "factorl_trap.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return marker


def test_an_environment_id_never_imports_a_module(tmp_path, booby_trap, capsys):
    from factorl.envs.host import make_env

    with pytest.raises(ValueError, match=r"--import factorl_trap --env\.id gym:Pendulum-v1"):
        make_env("gym:factorl_trap:Pendulum-v1")
    run = _run_whose_config_names(tmp_path, "gym:factorl_trap:Pendulum-v1")
    assert main(["eval", str(run)]) == 2
    assert "never imports code" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--run.steps", "200"]) == 2
    for load in (load_agent, evaluate):
        with pytest.raises(ConfigError, match="never imports code"):
            load(run)
    assert not booby_trap.exists()


def test_import_is_an_explicit_command_line_opt_in(tmp_path, monkeypatch, capsys):
    (tmp_path / "factorl_test_registry.py").write_text(
        textwrap.dedent("""
        import gymnasium
        gymnasium.register("FactorlRegistered-v0", entry_point="gymnasium.envs.classic_control:PendulumEnv", max_episode_steps=200)
        """)  # noqa: E501
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    run = tmp_path / "run"
    argv = [
        "train",
        "--env.id",
        "gym:FactorlRegistered-v0",
        "--run.steps",
        "100",
        "--run.dir",
        str(run),
    ]
    assert main([*argv, *TINY_FLAGS, "--import", "factorl_test_registry"]) == 0
    # a saved config asks for no import; evaluating needs the same explicit --import
    gym.registry.pop("FactorlRegistered-v0")
    assert main(["eval", str(run), "--episodes", "1"]) == 2
    err = capsys.readouterr().err
    assert "Unknown Gymnasium id" in err and "named with --import MODULE" in err
    sys.modules.pop("factorl_test_registry")
    assert main(["eval", str(run), "--episodes", "1", "--import", "factorl_test_registry"]) == 0
    gym.registry.pop("FactorlRegistered-v0")
    # a module that fails as it runs is one line naming the error and where it was raised
    (tmp_path / "factorl_test_broken.py").write_text("x = 1\nraise RuntimeError('boom')\n")
    assert main(["eval", str(run), "--episodes", "1", "--import", "factorl_test_broken"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "importing it raised RuntimeError: boom" in err
    assert "factorl_test_broken.py, line 2)" in err


# -------------------- 2. SIGTERM
def test_sigterm_stops_with_a_checkpoint_and_resume_is_exact(tmp_path):
    straight = tmp_path / "straight"
    train(
        tiny_config(
            straight, steps=4000, overrides={"runner.eval_every": 1000, "runner.log_every": 500}
        )
    )
    run = tmp_path / "run"
    proc = _cli(
        "train", "--env.id", "gym:Pendulum-v1", "--run.steps", "4000", "--run.dir", str(run),
        *TINY_FLAGS, "--runner.eval-every", "1000", "--runner.log-every", "500",
        "--runner.checkpoint-every", "10000",
    )  # fmt: skip
    _wait_for_step(run, 500, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "stopped by SIGTERM" in err and "--resume" in err
    stopped_at = ckpt.read_meta(ckpt.latest_checkpoint(run / "checkpoints"))["env_step"]
    assert 500 <= stopped_at < 4000
    train(
        tiny_config(
            run, steps=4000, overrides={"runner.eval_every": 1000, "runner.log_every": 500}
        ),
        resume=run,
    )
    assert records(run) == records(straight)
    assert _same_final_checkpoint(run, straight)


# -------------------- 3. time-based checkpoints, kill -9
def test_checkpoints_fall_due_by_wall_time(tiny, monkeypatch):
    trainer = HostTrainer(
        tiny(
            steps=1000,
            overrides={"runner.checkpoint_every": 10_000, "runner.checkpoint_minutes": 2.0},
        )
    )
    now = [trainer._last_save]
    monkeypatch.setattr(time, "perf_counter", lambda: now[0])
    trainer.loop.env_step = 7  # not a multiple of checkpoint_every
    assert not trainer.checkpoint_due()
    now[0] += 119.0
    assert not trainer.checkpoint_due()
    now[0] += 1.0
    assert trainer.checkpoint_due()
    trainer.save()
    assert not trainer.checkpoint_due()
    trainer.close()


def test_interrupted_checkpoint_writes_are_tidied_on_the_next_start(tmp_path):
    run = tmp_path / "run"
    train(
        tiny_config(
            run, steps=200, overrides={"runner.checkpoint_every": 100, "runner.keep_checkpoints": 1}
        )
    )
    root = run / "checkpoints"
    (root / ".tmp-step_0000000300-4242").mkdir()  # killed while writing step 300
    (root / ".tmp-step_0000000300-4242" / "state.npz").write_bytes(b"\0" * 8)
    # killed while re-saving step 200: the old copy is swapped out, the new one never landed
    (root / "step_0000000200").rename(root / ".old-step_0000000200-4243")
    (run / ".metrics.jsonl.tmp-4244").write_text("torn")
    train(
        tiny_config(
            run, steps=400, overrides={"runner.checkpoint_every": 100, "runner.keep_checkpoints": 1}
        ),
        resume=run,
    )
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_0000000400"]
    assert not (run / ".metrics.jsonl.tmp-4244").exists()
    straight = train(tiny_config(tmp_path / "straight", steps=400))
    assert records(run) == records(straight.run_dir)


def _checkpoint_step(run_dir):
    path = ckpt.latest_checkpoint(run_dir / "checkpoints")
    return -1 if path is None else ckpt.read_meta(path)["env_step"]


def _saved_past(run_dir, step, proc, timeout=300):
    """Wait until the run has a checkpoint past `step`; False if the process ended first."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if _checkpoint_step(run_dir) > step:
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    raise AssertionError(f"{run_dir} saved nothing past env step {step} in {timeout} s")


@pytest.mark.slow
def test_kill_9_at_random_moments_never_breaks_resume_and_ends_identical(tmp_path):
    flags = [
        # steps enough that four processes killed early do not finish the run between them
        "--env.id", "gym:Pendulum-v1", "--run.steps", "10000", *TINY_FLAGS,
        "--runner.eval-every", "1000", "--runner.log-every", "500",
        "--runner.checkpoint-minutes", "0.01",
    ]  # fmt: skip
    straight, run = tmp_path / "straight", tmp_path / "run"
    assert _cli("train", *flags, "--run.dir", str(straight)).wait(timeout=300) == 0
    rng = np.random.default_rng(0)
    kills = 0
    for first in (True, False, False, False):
        # a process killed before it wrote its config leaves no run to resume: it is started
        # again with its own command, as a user would
        started = (run / "config.json").is_file()
        proc = _cli(
            *(
                ["train", "--resume", str(run)]
                if started
                else ["train", *flags, "--run.dir", str(run)]
            )
        )
        if first:  # anywhere in start-up or early training, likely before any checkpoint
            time.sleep(rng.uniform(0.5, 6.0))
        elif not _saved_past(run, _checkpoint_step(run), proc):
            break
        else:  # a random moment after the run saved past where the last process left it
            time.sleep(rng.uniform(0.0, 1.0))
        if proc.poll() is not None:
            break
        proc.kill()
        proc.wait()
        kills += 1
    finish = _cli("train", "--resume", str(run))
    out, err = finish.communicate(timeout=300)
    assert finish.returncode == 0, err
    assert kills == 4  # the run did not finish before its last kill
    assert json.loads(out.splitlines()[-1])["env_step"] == 10000
    assert records(run) == records(straight)
    assert _same_final_checkpoint(run, straight)


# -------------------- 4. resume with unchanged flags
def test_resume_accepts_repeated_flags_and_names_a_real_change(tmp_path, capsys):
    run = tmp_path / "run"
    start = [
        "--env.id",
        "gym:Pendulum-v1",
        "--run.seed",
        "3",
        "--run.dir",
        str(run),
        *TINY_FLAGS,
    ]
    assert main(["train", *start, "--run.steps", "100"]) == 0
    assert main(["train", "--resume", str(run), *start, "--run.steps", "200"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["env_step"] == 200
    assert main(["train", "--resume", str(run), "--run.seed", "4", "--agent.width", "64"]) == 2
    err = capsys.readouterr().err
    assert "run.seed (saved 3, given 4)" in err and "agent.width (saved 32, given 64)" in err


# -------------------- 5. one process per run folder
def test_a_second_process_on_a_run_folder_is_refused_with_the_holders_pid(tmp_path):
    run = tmp_path / "run"
    holder = hold_run_folder(run, 120)
    try:
        with pytest.raises(
            RunFolderError, match=f"in use by another factorl process \\(PID {holder.pid}\\)"
        ):
            train(tiny_config(run, steps=100))
        assert not (run / "metrics.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()
    # the kernel drops the lock of a killed holder: no stale lock to clear by hand
    assert train(tiny_config(run, steps=100)).env_step == 100
    with RunFolderLock(run), pytest.raises(RunFolderError, match=f"PID {os.getpid()}"):
        train(tiny_config(run, steps=200), resume=run)


def test_a_lock_taken_with_a_wait_is_taken_once_its_holder_ends(tmp_path):
    run = tmp_path / "run"
    holder = hold_run_folder(run, 1.0)
    try:
        with pytest.raises(RunFolderError, match=r"\(still, after 0.2 s\); wait for it"):
            RunFolderLock(run).acquire(wait=0.2)
        with pytest.raises(ValueError, match="must be >= 0 seconds, got nan"):
            RunFolderLock(run).acquire(wait=float("nan"))
        lock = RunFolderLock(run).acquire(wait=60)
        assert holder.wait(timeout=10) == 0  # it held the lock to its end
        assert (run / ".lock").read_text() == f"{os.getpid()}\n"
        lock.release()
    finally:
        holder.kill()
        holder.wait()


def test_a_fresh_run_refuses_a_folder_with_metrics_unless_told_to_overwrite(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    # a run killed before its first checkpoint leaves metrics (and its config) behind
    (run / "metrics.jsonl").write_text('{"event": "train", "env_step": 100}\n')
    with pytest.raises(ConfigError, match="--overwrite"):
        train(tiny_config(run, steps=200))
    argv = ["train", "--env.id", "gym:Pendulum-v1", "--run.steps", "200", "--run.dir", str(run)]
    assert main([*argv, *TINY_FLAGS]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main([*argv, *TINY_FLAGS, "--overwrite"]) == 0
    straight = train(
        tiny_config(tmp_path / "straight", steps=200, overrides={"runner.eval_every": 300})
    )
    assert records(run) == records(straight.run_dir)


def test_resume_of_a_run_killed_before_its_first_checkpoint_starts_it_again(tmp_path):
    run = tmp_path / "run"
    train(tiny_config(run, steps=200))
    shutil.rmtree(run / "checkpoints")  # as if killed before its first checkpoint
    result = train(tiny_config(run, steps=300), resume=run)
    straight = train(tiny_config(tmp_path / "straight", steps=300))
    assert result.env_step == 300
    assert records(run) == records(straight.run_dir)


def test_each_process_that_trains_a_run_adds_a_segment_and_a_damaged_record_is_one_line(
    tmp_path,
):
    run = tmp_path / "run"
    train(tiny_config(run, steps=300), stop_after=150)
    train(tiny_config(run, steps=300), resume=run)
    segments = read_segments(run)
    assert [s["from_env_step"] for s in segments] == [0, 150]
    assert all(s["cpu_affinity"] and "source_revision" in s for s in segments)
    (run / "segments.json").write_text("{not json")
    with pytest.raises(RunFolderError, match=r"segments\.json is not a list of segments"):
        train(tiny_config(run, steps=450), resume=run)


# -------------------- 6. budgets and finished runs
def test_extending_a_budget_that_ended_between_evaluations_is_exact(tmp_path):
    straight = train(tiny_config(tmp_path / "straight", steps=600))
    run = tmp_path / "run"
    first = train(tiny_config(run, steps=450))  # eval_every 300: a final evaluation at 450
    assert [r["env_step"] for r in read_metrics(run) if r["event"] == "eval"] == [300, 450]
    assert first.last_eval_return is not None
    resumed = train(tiny_config(run, steps=600), resume=run)
    assert records(run) == records(straight.run_dir)
    assert same_leaves(resumed.state, straight.state)


def test_resuming_a_finished_run_changes_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "--env.id", "gym:Pendulum-v1", "--run.steps", "450", "--run.dir", str(run)]
    assert main([*argv, *TINY_FLAGS]) == 0
    capsys.readouterr()

    def snapshot():  # the lock file holds no run data: only the PID of whoever held it last
        return {
            p: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file() and p.name != ".lock"
        }

    before = snapshot()
    for _ in range(2):
        assert main(["train", "--resume", str(run)]) == 0
        assert "already used its budget of 450 env steps" in capsys.readouterr().err
    assert snapshot() == before


# -------------------- 7. failing log sinks
class _FailingFile:
    """A metrics file on a disk that fills up after `ok` writes."""

    def __init__(self, real, ok):
        self.real, self.ok = real, ok

    def write(self, data):
        if self.ok == 0:
            self.real.write(data[: len(data) // 2])  # part of the line lands, as on a real disk
            raise OSError(errno.ENOSPC, "No space left on device")
        self.ok -= 1
        return self.real.write(data)

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_a_full_disk_on_metrics_stops_with_a_checkpoint_and_loses_no_record(tmp_path):
    straight = train(tiny_config(tmp_path / "straight", steps=600))
    run = tmp_path / "run"
    trainer = HostTrainer(tiny_config(run, steps=600))
    trainer.logger._metrics = _FailingFile(trainer.logger._metrics, ok=3)
    with pytest.raises(Exception, match="No space left on device") as err:
        trainer.run()
    assert "keeps the records not written" in str(err.value)
    assert "--resume" in str(err.value)
    resumed = train(tiny_config(run, steps=600), resume=run)
    assert resumed.env_step == 600
    assert records(run) == records(straight.run_dir)


def test_a_failing_tensorboard_writer_is_dropped_not_waited_on(tiny, monkeypatch, capsys):
    from tensorboardX.event_file_writer import EventsWriter

    calls = []

    def full_disk(self, event):
        calls.append(event)
        if len(calls) > 3:  # the file header and a few records land, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(EventsWriter, "write_event", full_disk)
    result = train(tiny(steps=600, overrides={"run.tensorboard": True, "run.progress": "lines"}))
    assert result.status == "completed"
    assert "continuing without TensorBoard" in capsys.readouterr().err
    assert [r["env_step"] for r in read_metrics(result.run_dir) if r["event"] == "train"] == [
        100, 200, 300, 400, 500, 600
    ]  # fmt: skip


class _FullConsole:
    """stderr redirected to a log file on a full disk."""

    def write(self, text):
        raise OSError(errno.ENOSPC, "No space left on device")

    def flush(self):
        pass

    def isatty(self):
        return False


def test_a_console_that_cannot_take_more_does_not_stop_training(tiny, monkeypatch):
    monkeypatch.setattr(sys, "stderr", _FullConsole())
    result = train(tiny(steps=300, overrides={"run.progress": "lines"}))
    assert result.status == "completed" and result.env_step == 300
    train_steps = [r["env_step"] for r in read_metrics(result.run_dir) if r["event"] == "train"]
    assert train_steps == [100, 200, 300]


def test_a_full_disk_while_resuming_is_one_line_and_changes_nothing(tmp_path, monkeypatch):
    run = tmp_path / "run"
    train(tiny_config(run, steps=300), stop_after=150)
    before = (run / "metrics.jsonl").read_bytes()

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("factorl.io.logging.atomic_write_text", full_disk)
    with pytest.raises(RunFolderError, match=r"No space left on device.*free disk space"):
        train(tiny_config(run, steps=300), resume=run)
    assert (run / "metrics.jsonl").read_bytes() == before


# -------------------- 8. one-line errors
@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--replay.capacity", "1000000000000"], "GiB of memory is available"),
        (["--run.seed", "99999999999999999999"], "run.seed must be >= 0 and <= 2147483646"),
        # 9. a replay that can never hold learning_starts transitions
        (
            ["--replay.capacity", "500", "--agent.learning-starts", "1000"],
            "learning would never start",
        ),
    ],
)
def test_impossible_settings_are_refused_before_anything_runs(tmp_path, capsys, flags, message):
    run = tmp_path / "run"
    argv = [
        "train",
        "--env.id",
        "gym:Pendulum-v1",
        "--run.steps",
        "2000",
        "--run.dir",
        str(run),
    ]
    assert main([*argv, *flags]) == 2
    assert message in capsys.readouterr().err
    assert not run.exists()


def test_an_unwritable_run_folder_is_one_line(tmp_path, monkeypatch, capsys):
    real_open = os.open

    def read_only(path, flags, *args):  # as root a chmod would not stop us, so fake EROFS
        if str(path).startswith(str(tmp_path / "ro")) and flags & (os.O_WRONLY | os.O_RDWR):
            raise OSError(errno.EROFS, "Read-only file system")
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", read_only)
    argv = [
        "train",
        "--env.id",
        "gym:Pendulum-v1",
        "--run.steps",
        "100",
        "--run.dir",
        str(tmp_path / "ro"),
    ]
    assert main([*argv, *TINY_FLAGS]) == 1
    err = capsys.readouterr().err
    assert "cannot write to run folder" in err and err.count("\n") == 1, err


def _edit_meta(path, edit, rehash=True):
    meta = json.loads((path / "meta.json").read_text())
    edit(meta)
    if rehash:  # what a deliberate edit would do; an accidental one leaves the digest stale
        meta["files"] = {name: ckpt._sha256(path / name) for name in meta["files"]}
        meta[ckpt.META_DIGEST] = ckpt._meta_digest(meta)
    (path / "meta.json").write_text(json.dumps(meta))


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda p: _edit_meta(p, lambda m: m["loop"].update(episodes_done=-3), False), "meta.json"),
        (
            lambda p: _edit_meta(p, lambda m: m["loop"].update(episodes_done=-3)),
            "'episodes_done' is -3",
        ),
        (lambda p: _edit_meta(p, lambda m: m["loop"].update(env_step="x")), "'env_step'"),
        (lambda p: _edit_meta(p, lambda m: m["loop"].pop("wall_time")), "'wall_time'"),
        (lambda p: _edit_meta(p, lambda m: m.update(unwritten_records=5)), "unwritten_records"),
        (
            lambda p: _wrong_loop_array(p, "episode_actions", np.zeros((50, 3), np.float32)),
            "episode_actions",
        ),
        (lambda p: _wrong_loop_array(p, "obs", np.zeros(7, np.float32)), "obs"),
        (lambda p: _link(p, "replay.npz"), "symbolic link"),
    ],
)
def test_a_tampered_checkpoint_is_one_line(tmp_path, capsys, tamper, message):
    run = tmp_path / "run"
    train(tiny_config(run, steps=300), stop_after=250)  # mid-episode: 50 actions in progress
    tamper(ckpt.latest_checkpoint(run / "checkpoints"))
    assert main(["train", "--resume", str(run)]) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def _wrong_loop_array(path, name, value):
    with np.load(path / "loop.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays[name] = value
    np.savez(path / "loop.npz", **arrays)
    _edit_meta(path, lambda m: None)


def _link(path, name):
    outside = path.parent.parent / "elsewhere.npz"
    (path / name).rename(outside)
    (path / name).symlink_to(outside)


def test_a_symlinked_metrics_file_is_refused(tmp_path):
    run = tmp_path / "run"
    train(tiny_config(run, steps=300), stop_after=150)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    (run / "metrics.jsonl").unlink()
    (run / "metrics.jsonl").symlink_to(victim)
    with pytest.raises(RunFolderError, match="symbolic link"):
        train(tiny_config(run, steps=300), resume=run)
    assert victim.read_text() == "keep me\n"


def test_nearest_existing_counts_links_and_ends_at_the_current_folder(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    assert nearest_existing(tmp_path / "a" / "b" / "c") == tmp_path / "a"
    assert nearest_existing(tmp_path / "a") == tmp_path / "a"
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    assert nearest_existing(tmp_path / "dangling" / "x") == tmp_path / "dangling"
    monkeypatch.chdir(tmp_path)
    assert nearest_existing(Path("missing") / "x") == Path(".")


def test_a_config_naming_a_vanished_environment_is_one_line(tmp_path, capsys):
    run = _run_whose_config_names(tmp_path, "gym:FactorlNoLongerThere-v3")
    assert main(["eval", str(run)]) == 2
    assert main(["train", "--resume", str(run), "--run.steps", "200"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and all("FactorlNoLongerThere-v3" in line for line in lines)


class _DoubleCtrlC(gym.Wrapper):
    """An evaluation environment whose user presses Ctrl-C twice in the middle of an episode."""

    def __init__(self, env, at_step):
        super().__init__(env)
        self.steps, self.at_step = 0, at_step

    def step(self, action):
        self.steps += 1
        if self.steps == self.at_step:
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)
        return self.env.step(action)


def test_ctrl_c_twice_during_an_evaluation_is_one_line_and_resume_is_exact(tmp_path, capsys):
    run = tmp_path / "run"
    trainer = HostTrainer(tiny_config(run, steps=600, overrides={"runner.checkpoint_every": 100}))
    trainer.eval_env = _DoubleCtrlC(trainer.eval_env, at_step=50)  # the evaluation at 300
    with pytest.raises(StoppedAtOnce, match="second SIGINT at env step 300") as err:
        trainer.run()
    assert "step_0000000200" in str(err.value)  # the step's checkpoint had not been written yet
    assert ckpt.latest_checkpoint(run / "checkpoints").name == "step_0000000200"
    train(tiny_config(run, steps=600, overrides={"runner.checkpoint_every": 100}), resume=run)
    straight = train(
        tiny_config(tmp_path / "straight", steps=600, overrides={"runner.checkpoint_every": 100})
    )
    assert records(run) == records(straight.run_dir)
    assert _same_final_checkpoint(run, straight.run_dir)


def test_stopped_at_once_is_exit_code_130_with_one_line(tmp_path, monkeypatch, capsys):
    import factorl.cli as cli

    def interrupted(*args, **kwargs):
        raise StoppedAtOnce("stopped at once by a second SIGINT at env step 7; no checkpoint")

    monkeypatch.setattr(cli, "train", interrupted)
    assert main(["train", "--run.steps", "10", "--run.dir", str(tmp_path / "r")]) == 130
    assert capsys.readouterr().err.strip().splitlines() == [
        "factorl: stopped at once by a second SIGINT at env step 7; no checkpoint"
    ]


def test_make_config_refuses_a_replay_that_never_fills():
    with pytest.raises(ConfigError, match="never start"):
        make_config("decqn", {"replay.capacity": 500, "agent.learning_starts": 1000})
    # n-step windows: 1002 slots hold 1000 sampleable 3-step transitions between episode ends
    window = {"agent.learning_starts": 1000, "replay.n_step": 3}
    make_config("decqn", {**window, "replay.capacity": 1002})
    with pytest.raises(ConfigError, match="at most 999"):
        make_config("decqn", {**window, "replay.capacity": 1001})


def test_a_metrics_line_factorl_did_not_write_is_one_line_and_resume_keeps_the_file(tiny, capsys):
    result = train(tiny(steps=200))
    path = result.run_dir / "metrics.jsonl"
    good = path.read_text()
    path.write_text(good + '{"event": "tr')  # a torn last line, from a crash: skipped
    assert read_metrics(result.run_dir) == [json.loads(line) for line in good.splitlines()]
    for damage in ('{"event": "train", "env_step": "abc"}', "[1, 2]", "not json", "[" * 10**5):
        path.write_text(damage + "\n" + good)
        with pytest.raises(ConfigError, match=r"metrics\.jsonl line 1 is not a factorl record"):
            read_metrics(result.run_dir)
        argv = ["train", "--resume", str(result.run_dir), "--run.steps", "300"]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "line 1 is not a factorl record" in err and len(err.strip().splitlines()) == 1
        assert path.read_text() == damage + "\n" + good  # nothing dropped


def test_a_corrupt_latest_checkpoint_says_how_to_go_on_and_that_works(tiny, tmp_path):
    cfg = tiny(steps=300, overrides={"runner.checkpoint_every": 100, "runner.keep_checkpoints": 3})
    straight = train(tiny_config(tmp_path / "straight", steps=400, overrides={
        "runner.checkpoint_every": 100, "runner.keep_checkpoints": 3}))  # fmt: skip
    first = train(cfg)
    latest = ckpt.latest_checkpoint(first.run_dir / "checkpoints")
    state = latest / "state.npz"
    state.write_bytes(state.read_bytes()[:-10])  # a disk that lost the file's end
    with pytest.raises(ckpt.CheckpointError, match="Move it out of the checkpoints folder"):
        train(cfg, resume=first.run_dir)
    latest.rename(tmp_path / "aside")  # as the message says: the run goes on from step 200
    longer = make_config("decqn", {**cfg.settings(), "run.steps": 400})
    resumed = train(longer, resume=first.run_dir)
    assert resumed.env_step == 400
    assert same_leaves(straight.state, resumed.state)  # resume is exact from that one too


def test_resuming_a_run_whose_metrics_were_removed_says_so(tiny, capsys):
    cfg = tiny(steps=200, overrides={"run.progress": "none"})
    first = train(cfg)
    (first.run_dir / "metrics.jsonl").unlink()
    longer = make_config("decqn", {**cfg.settings(), "run.steps": 300})
    train(longer, resume=first.run_dir)
    err = capsys.readouterr().err
    assert "metrics.jsonl held no records before the checkpoint (removed or emptied?)" in err
    assert {r["env_step"] for r in read_metrics(first.run_dir)} <= {300}  # the rest is gone
    train(make_config("decqn", {**cfg.settings(), "run.steps": 400}), resume=first.run_dir)
    assert "held no records" not in capsys.readouterr().err  # a run with its records: no warning


def test_resuming_a_run_stopped_before_its_first_record_warns_of_nothing(tiny, capsys):
    # stopped at env step 50, before the first record is due (log_every 100, eval_every 300)
    cfg = tiny(steps=200, overrides={"run.progress": "none"})
    first = train(cfg, stop_after=50)
    assert first.env_step == 50 and read_metrics(first.run_dir) == []
    train(cfg, resume=first.run_dir)
    assert "held no records" not in capsys.readouterr().err
