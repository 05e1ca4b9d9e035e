"""`factorl collect --checkpoint` and `--replay`: recording with a chosen checkpoint of a run, and
exporting the replay buffer a checkpoint stores as a Minari dataset (the "medium" and
"medium-replay" datasets of a D4RL-style protocol), for host runs and device runs (JAX
environments). Every test writes its datasets into a tmp folder, and the runs are tiny (a few
hundred steps, checkpoints every 100 or 200)."""

import importlib
import json
import shutil

import gymnasium as gym
import jax
import numpy as np
import pytest
from conftest import tiny_config

from factorl.cli import main
from factorl.io import datasets
from factorl.io.checkpoint import load_arrays, load_checkpoint
from factorl.runners import device
from factorl.train import (
    checkpoint_path,
    collect,
    evaluate,
    load_agent,
    load_config,
    make_config,
    record_episodes,
    train,
)

#: the module itself (the package's attribute `factorl.train` is the function train)
train_module = importlib.import_module("factorl.train")


@pytest.fixture(scope="module", autouse=True)
def _local_datasets(tmp_path_factory):
    """The module's datasets in a folder of its own, never ~/.minari."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINARI_DATASETS_PATH", str(tmp_path_factory.mktemp("minari")))
        yield


@pytest.fixture(scope="module")
def decqn_run(tmp_path_factory):
    """DecQN on Pendulum (200-step episodes, each ended by the time limit) for 300 steps, with
    checkpoints at 100, 200 and 300, and a replay of 250 steps: at the end the ring has
    overwritten the first episode's first 50 steps, and the second episode is in progress."""
    run_dir = tmp_path_factory.mktemp("decqn") / "run"
    overrides = {
        "runner.checkpoint_every": 100,
        "runner.keep_checkpoints": 10,
        "replay.capacity": 250,
    }
    return train(tiny_config(run_dir, steps=300, overrides=overrides)).run_dir


@pytest.fixture(scope="module")
def sac_run(tmp_path_factory):
    """SAC with 2 environments on the ragged Pendulum (episodes of 20 to 80 steps, ended by a
    termination or a truncation) for 300 env steps, 150 per stream, in a replay of 80 slots a
    stream: every stream has wrapped. No learner step (update_every beyond the run), so the run
    takes seconds; the policy acts after 40 random steps."""
    run_dir = tmp_path_factory.mktemp("sac") / "run"
    overrides = {
        "env.id": "gym:FactorlTestRagged-v0",
        "env.num_envs": 2,
        "agent.width": 16,
        "agent.random_steps": 40,
        "agent.learning_starts": 100,
        "agent.update_every": 1000,
        "replay.batch_size": 8,
        "replay.capacity": 160,
    }
    return train(tiny_config(run_dir, "sac", steps=300, overrides=overrides)).run_dir


def _expected_steps(run_dir, step=None):
    """The steps of a checkpoint's stored replay, read here from its arrays on their own terms:
    each stream's ring rolled so that its oldest step comes first, streams one after the other,
    truncated = episode end and not terminated, and each stream's last step truncated if its
    episode had not ended. Also the state itself."""
    arrays, _ = load_arrays(checkpoint_path(run_dir, step))
    state = arrays["replay"]
    streams = "num_envs" in state
    n = int(state["num_envs"]) if streams else 1
    cap, size, pos = int(state["capacity"]) // n, int(state["size"]), int(state["write_pos"])
    order = np.roll(np.arange(cap), -pos) if size == cap else np.arange(size)

    def column(key):
        value = state[key] if streams else state[key][None]
        return [value[e][order] for e in range(n)]

    end, terminated = column("episode_end"), column("terminated")
    truncated = []
    for e in range(n):
        flags = end[e] & ~terminated[e]
        flags[-1] |= not end[e][-1]
        truncated.append(flags)
    expected = {key: np.concatenate(column(key)) for key in ("obs", "reward", "next_obs")}
    expected["action"] = np.concatenate(column("action"))
    expected["terminated"] = np.concatenate(terminated)
    expected["truncated"] = np.concatenate(truncated)
    return expected, state


def _assert_same_transitions(name, expected):
    got = datasets.read_dataset(name).transitions()
    assert set(got) == set(expected)
    for key, want in expected.items():
        assert got[key].shape == want.shape, key
        assert np.array_equal(got[key], want), key


# ------------------------------------------------------------------------------------ --checkpoint
def test_checkpoint_records_with_that_checkpoint(decqn_run):
    result = collect(decqn_run, "pendulum/at100-v0", episodes=1, checkpoint=100)
    data = datasets.read_dataset("pendulum/at100-v0")
    assert result["checkpoint_env_step"] == 100
    assert data.metadata["checkpoint_env_step"] == 100 and data.metadata["source"] == "policy"
    seed = load_config(decqn_run).run.seed + 20_000
    env = gym.make("Pendulum-v1")
    path = decqn_run / "checkpoints" / "step_0000000100"
    at_100 = record_episodes(load_agent(decqn_run, path), env, 1, 0.0, seed)
    latest = record_episodes(load_agent(decqn_run), env, 1, 0.0, seed)
    for key in datasets.EPISODE_KEYS:
        assert np.array_equal(data.episodes[0][key], at_100[0][key]), key
    # the policy 200 steps (100 updates) later acts otherwise
    assert not np.array_equal(at_100[0]["actions"], latest[0]["actions"])
    # the checkpoint folder's path names the same checkpoint; no --checkpoint, the latest
    collect(decqn_run, "pendulum/at100-path-v0", episodes=1, checkpoint=str(path))
    by_path = datasets.read_dataset("pendulum/at100-path-v0")
    assert by_path.sha256 == data.sha256 and by_path.metadata["checkpoint_env_step"] == 100
    assert collect(decqn_run, "pendulum/latest-v0", episodes=1)["checkpoint_env_step"] == 300


def test_an_unknown_checkpoint_is_one_line_listing_the_steps(decqn_run, capsys):
    for given in ("150", "nowhere/step_0000000150"):
        args = ["collect", str(decqn_run), "--checkpoint", given, "--episodes", "1"]
        assert main([*args, "--out", "never-v0"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "env steps: 100, 200, 300" in err, err
    assert not datasets.dataset_exists("never-v0")


def _collect_error(capsys, *args):
    """`factorl collect ARGS`'s one-line error (exit code 2)."""
    assert main(["collect", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("factorl: error: "), err
    return err


def test_a_checkpoint_of_another_run_is_refused(decqn_run, tmp_path, capsys):
    # the run's checkpoint copied into another run folder: playing it would record the wrong
    # source_run, so it is refused, by path, with and without --replay
    other = tmp_path / "other" / "checkpoints" / "step_0000000100"
    shutil.copytree(decqn_run / "checkpoints" / "step_0000000100", other)
    for extra in (["--episodes", "1"], ["--replay"]):
        args = [str(decqn_run), "--checkpoint", str(other), *extra, "--out", "foreign-v0"]
        assert "is not one of" in _collect_error(capsys, *args)
    assert "foreign-v0" not in datasets.local_datasets()


def _play_nothing(*args, **kwargs):
    raise AssertionError("collect played episodes before refusing --out")


def test_collect_refuses_anything_at_the_dataset_path(decqn_run, tmp_path, capsys, monkeypatch):
    root = datasets.datasets_root()
    run = [str(decqn_run), "--episodes", "1"]
    # refused before anything is played
    monkeypatch.setattr(train_module, "record_episodes", _play_nothing)
    # a folder that is not a dataset (a user's, or one whose metadata.json was deleted)...
    notes = root / "pend" / "nometa-v0" / "notes.txt"
    notes.parent.mkdir(parents=True)
    notes.write_text("mine")
    assert "is not a Minari dataset" in _collect_error(capsys, *run, "--out", "pend/nometa-v0")
    assert notes.read_text() == "mine"
    # ...a file...
    (root / "pend" / "file-v0").write_text("mine too")
    assert "--overwrite" in _collect_error(capsys, *run, "--out", "pend/file-v0")
    assert (root / "pend" / "file-v0").read_text() == "mine too"
    # ...and a link, even with --overwrite: neither it nor what it points to is touched
    target = tmp_path / "elsewhere-v0"
    target.mkdir()
    (root / "pend" / "lnk-v0").symlink_to(target)
    for extra in ([], ["--overwrite"]):
        err = _collect_error(capsys, *run, *extra, "--out", "pend/lnk-v0")
        assert "symbolic link" in err
    assert (root / "pend" / "lnk-v0").readlink() == target and target.is_dir()
    # --overwrite replaces a folder or a file, and leaves nothing beside the dataset
    monkeypatch.undo()
    for name in ("pend/nometa-v0", "pend/file-v0"):
        assert main(["collect", *run, "--overwrite", "--out", name]) == 0
        assert datasets.read_dataset(name).steps == 200
    assert sorted(p.name for p in (root / "pend").iterdir()) == ["file-v0", "lnk-v0", "nometa-v0"]


def test_collect_out_errors_are_one_line(decqn_run, tmp_path, capsys, monkeypatch):
    run = [str(decqn_run), "--episodes", "1"]
    monkeypatch.setattr(train_module, "record_episodes", _play_nothing)
    # not a Minari id: no version (Minari's parser fails with a TypeError there)
    for name in ("noversion", "pend/x-v-1", "pend/x-v"):
        assert "NAMESPACE/NAME-vN" in _collect_error(capsys, *run, "--out", name)
    # a file where a folder of the dataset's path should be: its namespace, the datasets folder
    (datasets.datasets_root() / "filens").write_text("")
    assert "is not a folder" in _collect_error(capsys, *run, "--out", "filens/x-v0")
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(a_file))
    for name in ("x-v0", "ns/x-v0"):
        assert "MINARI_DATASETS_PATH" in _collect_error(capsys, *run, "--out", name)
    assert a_file.read_text() == ""


# ------------------------------------------------------------------------------------ --replay
def test_replay_exports_every_stored_decqn_step(decqn_run):
    expected, state = _expected_steps(decqn_run)
    assert int(state["size"]) == 250 and int(state["write_pos"]) == 50  # the ring has wrapped
    result = collect(decqn_run, "pendulum/replay-v0", replay=True)
    _assert_same_transitions("pendulum/replay-v0", expected)
    data = datasets.read_dataset("pendulum/replay-v0")
    # the first episode lost its first 50 steps to the ring and ends at its time limit; the
    # second is in progress at the checkpoint and is cut there, as a truncation
    assert [len(e["actions"]) for e in data.episodes] == [150, 100]
    assert [bool(e["truncations"][-1]) for e in data.episodes] == [True, True]
    assert not any(e["terminations"].any() for e in data.episodes)
    assert data.action_space == gym.make("Pendulum-v1").action_space
    assert data.metadata == {
        "source_run": str(decqn_run.resolve()),
        "algorithm": "decqn",
        "env_id": "gym:Pendulum-v1",
        "action_repeat": 1,
        "source": "replay",
        "checkpoint_env_step": 300,
        "steps": 250,
        "episodes": 2,
        "streams": 1,
        "overwritten_steps": 50,
    }
    assert result["steps"] == 250 and result["episodes"] == 2
    # DecQN acts on a grid of bins, and its replay holds the grid's actions in the env's units
    grid = np.linspace(-2, 2, load_config(decqn_run).agent.bins, dtype=np.float32)
    assert np.isin(data.episodes[0]["actions"], grid).all()


def test_replay_exports_both_streams_of_a_sac_run(sac_run):
    expected, state = _expected_steps(sac_run)
    assert int(state["num_envs"]) == 2 and int(state["size"]) == 80  # both streams wrapped
    assert expected["terminated"].any() and expected["truncated"].any()
    result = collect(sac_run, "ragged/replay-v0", replay=True)
    _assert_same_transitions("ragged/replay-v0", expected)
    data = datasets.read_dataset("ragged/replay-v0")
    assert data.metadata["streams"] == 2 and data.metadata["steps"] == 160 == data.steps
    assert data.metadata["algorithm"] == "sac" and result["overwritten_steps"] == 140
    # every episode ends with a flag; within one, each step starts where the last one ended
    t = data.transitions()
    assert all(e["terminations"][-1] or e["truncations"][-1] for e in data.episodes)
    ends = t["terminated"] | t["truncated"]
    assert np.array_equal(t["obs"][1:][~ends[:-1]], t["next_obs"][:-1][~ends[:-1]])


def test_replay_through_the_cli_with_a_checkpoint(decqn_run, capsys):
    args = ["collect", str(decqn_run), "--replay", "--checkpoint", "200"]
    assert main([*args, "--out", "pendulum/replay200-v0"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["checkpoint_env_step"] == 200 and summary["source"] == "replay"
    assert summary["steps"] == 200 and summary["episodes"] == 1
    expected, state = _expected_steps(decqn_run, 200)
    assert int(state["size"]) == 200  # not wrapped yet: the run's first 200 steps
    _assert_same_transitions("pendulum/replay200-v0", expected)
    data = datasets.read_dataset("pendulum/replay200-v0")
    assert data.metadata["overwritten_steps"] == 0
    assert data.episodes[0]["truncations"].tolist() == [False] * 199 + [True]  # time limit


def test_replay_errors_are_one_line(decqn_run, tmp_path, capsys, monkeypatch):
    run = str(decqn_run)

    def error(*args):
        assert main(["collect", *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        return err

    assert "--episodes" in error(run, "--replay", "--episodes", "2", "--out", "e-v0")
    assert "--noise" in error(run, "--replay", "--noise", "0.1", "--out", "e-v0")
    assert "--episodes N" in error(run, "--out", "e-v0")  # neither --episodes nor --replay
    # a run trained without its replay in the checkpoints
    bare = train(
        tiny_config(tmp_path / "bare", steps=100, overrides={"runner.save_replay": False})
    ).run_dir
    assert "train with --runner.save-replay" in error(str(bare), "--replay", "--out", "e-v0")
    # multi-agent runs, on the host and on the device runner (JAX environments), either way
    for env_id in ("pettingzoo:mpe2.simple_spread_v3", "factorl:two-step-game"):
        marl = make_config("vdn", {"env.id": env_id})
        monkeypatch.setattr(train_module, "load_config", lambda run_dir, marl=marl: marl)
        assert "is multi-agent" in error(run, "--replay", "--out", "e-v0")
        assert "is multi-agent" in error(run, "--episodes", "1", "--out", "e-v0")
    assert "e-v0" not in datasets.local_datasets()


def test_episodes_from_steps_refuses_steps_that_do_not_follow_on():
    obs = np.arange(8, dtype=np.float32).reshape(4, 2)
    steps = {
        "obs": obs,
        "next_obs": obs + 2,  # each step starts where the last ended...
        "action": np.zeros((4, 1), np.float32),
        "reward": np.ones(4, np.float32),
        "terminated": np.array([False, True, False, False]),
        "truncated": np.zeros(4, bool),
    }
    episodes = datasets.episodes_from_steps(steps)
    assert [len(e["actions"]) for e in episodes] == [2, 2]
    assert episodes[1]["truncations"].tolist() == [False, True]  # in progress: cut there
    assert np.array_equal(episodes[0]["observations"], [[0, 1], [2, 3], [4, 5]])
    steps["next_obs"] = steps["next_obs"].copy()
    steps["next_obs"][2] = -1  # ...but for step 3
    with pytest.raises(datasets.DatasetError, match="step 3 of the stream does not start"):
        datasets.episodes_from_steps(steps)


# ------------------------------------------------------------------------------------ device runs
@pytest.fixture(scope="module")
def device_run(tmp_path_factory):
    """DecQN on gymnax's Pendulum (200-step episodes, each ended by the time limit) on the device
    runner: 2 seeds x 2 environments for 600 env steps (300 per environment), checkpoints at 200,
    400 and 600, and a replay of 250 steps per environment: at the end each ring has overwritten
    its first episode's first 50 steps, and its second episode is in progress."""
    run_dir = tmp_path_factory.mktemp("device") / "run"
    overrides = {
        "env.id": "gymnax:Pendulum-v1",
        "env.num_envs": 2,
        "run.num_seeds": 2,
        "agent.learning_starts": 64,
        "runner.eval_every": 600,
        "runner.log_every": 200,
        "runner.checkpoint_every": 200,
        "runner.keep_checkpoints": 10,
        "replay.capacity": 500,
    }
    return train(tiny_config(run_dir, steps=600, overrides=overrides)).run_dir


def _device_replay(run_dir, step=None):
    """Every seed's replay in a device checkpoint, read here against the runner's own template."""
    cfg = load_config(run_dir)
    init = device._compiled_program(cfg)[2]
    seeds = np.arange(cfg.run.seed, cfg.run.seed + cfg.run.num_seeds, dtype=np.int32)
    leaves, treedef = jax.tree_util.tree_flatten(jax.eval_shape(init, seeds))
    saved, _, _ = load_checkpoint(checkpoint_path(run_dir, step), leaves)
    return jax.tree_util.tree_unflatten(treedef, saved).replay


def test_a_latest_checkpoint_deleted_while_collect_reads_it_gives_way_to_the_new_one(
    decqn_run, tmp_path, monkeypatch
):
    """A run still training deletes the checkpoint collect had just picked as it writes the
    next: collect reads the new latest, for episodes and for --replay alike."""
    run_dir = tmp_path / "run"
    shutil.copytree(decqn_run, run_dir)
    root = run_dir / "checkpoints"
    real = {name: getattr(train_module, name) for name in ("_load_host_policy", "export_replay")}
    seen = []

    def racing(name):
        def read(*args, **kwargs):
            path = args[1] if name == "_load_host_policy" else args[2]
            seen.append(path.name)
            if path.name == "step_0000000300":  # the trainer moves on and prunes it
                shutil.rmtree(path)
                (root / "latest").write_text("step_0000000200")
                raise train_module.ckpt.CheckpointError(f"{path} is not a checkpoint")
            return real[name](*args, **kwargs)

        return read

    for name in real:
        monkeypatch.setattr(train_module, name, racing(name))
    assert collect(run_dir, "pendulum/raced-v0", episodes=1)["checkpoint_env_step"] == 200
    assert seen == ["step_0000000300", "step_0000000200"]
    shutil.copytree(decqn_run / "checkpoints" / "step_0000000300", root / "step_0000000300")
    (root / "latest").write_text("step_0000000300")
    seen.clear()
    collect(run_dir, "pendulum/raced-replay-v0", replay=True)
    assert seen == ["step_0000000300", "step_0000000200"]
    meta = datasets.read_dataset("pendulum/raced-replay-v0").metadata
    assert meta["checkpoint_env_step"] == 200


def _expected_device_steps(replay, seed=0):
    """The steps one seed's flashbax replay holds, on its own terms: each environment's row
    rolled so that its oldest step (at current_index, once the row has wrapped) comes first,
    rows one after the other, truncated = ended and not terminated, and each row's last step
    truncated if its episode had not ended."""
    exp = {k: np.asarray(v[seed]) for k, v in replay.experience.items()}
    index, full = int(replay.current_index[seed]), bool(replay.is_full[seed])
    rows = exp["obs"].shape[1]
    order = np.roll(np.arange(rows), -index) if full else np.arange(index)
    parts = {k: [] for k in ("obs", "action", "reward", "next_obs", "terminated", "truncated")}
    for e in range(exp["obs"].shape[0]):
        for k in ("obs", "action", "reward", "next_obs", "terminated"):
            parts[k].append(exp[k][e, order])
        ended, terminated = exp["ended"][e, order], exp["terminated"][e, order]
        truncated = ended & ~terminated
        truncated[-1] |= not ended[-1]
        parts["truncated"].append(truncated)
    return {k: np.concatenate(v) for k, v in parts.items()}


def test_device_collect_records_episodes_in_the_jax_environment(device_run):
    result = collect(device_run, "gymnax/greedy-v0", episodes=3)
    data = datasets.read_dataset("gymnax/greedy-v0")
    cfg = load_config(device_run)
    assert data.observation_space == gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    assert data.action_space == gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
    # Pendulum's episodes last 200 steps and end by the time limit
    assert [len(e["actions"]) for e in data.episodes] == [200, 200, 200]
    for e in data.episodes:
        assert e["truncations"].tolist() == [False] * 199 + [True]
        assert not e["terminations"].any()
        assert e["observations"].shape == (201, 3) and np.isfinite(e["observations"]).all()
    assert data.metadata == {
        "source_run": str(device_run.resolve()),
        "algorithm": "decqn",
        "env_id": "gymnax:Pendulum-v1",
        "action_repeat": 1,
        "source": "policy",
        "checkpoint_env_step": 600,
        "noise": 0.0,
        "seed": cfg.run.seed + 20_000,
        "episodes": 3,
    }
    assert result["steps"] == 600 and result["seed"] == cfg.run.seed + 20_000
    # the episodes start apart, and without noise the actions are the first seed's greedy ones
    firsts = [e["observations"][0] for e in data.episodes]
    assert not np.array_equal(firsts[0], firsts[1])
    grid = np.linspace(-2, 2, cfg.agent.bins, dtype=np.float32)
    assert np.isin(data.episodes[0]["actions"], grid).all()
    policy = load_agent(device_run)
    first = data.episodes[0]
    for obs, action in zip(first["observations"][:20], first["actions"][:20], strict=True):
        assert np.array_equal(policy(obs), action)
    # the same seed writes the same arrays; noise changes the actions (within the bounds), not
    # the resets
    collect(device_run, "gymnax/greedy-again-v0", episodes=3)
    assert datasets.read_dataset("gymnax/greedy-again-v0").sha256 == data.sha256
    collect(device_run, "gymnax/noisy-v0", episodes=3, noise=0.5)
    noisy = datasets.read_dataset("gymnax/noisy-v0")
    assert noisy.metadata["noise"] == 0.5
    for clean, e in zip(data.episodes, noisy.episodes, strict=True):
        assert np.array_equal(clean["observations"][0], e["observations"][0])
        assert not np.array_equal(clean["actions"], e["actions"])
        assert (np.abs(e["actions"]) <= 2.0).all() and not np.isin(e["actions"], grid).all()
    collect(device_run, "gymnax/noisy-again-v0", episodes=3, noise=0.5)
    assert datasets.read_dataset("gymnax/noisy-again-v0").sha256 == noisy.sha256
    collect(device_run, "gymnax/other-seed-v0", episodes=1, seed=7)
    other = datasets.read_dataset("gymnax/other-seed-v0").episodes[0]
    assert not np.array_equal(other["observations"][0], firsts[0])


def test_device_collect_through_the_cli(device_run, capsys):
    args = ["collect", str(device_run), "--episodes", "2", "--noise", "0.1", "--checkpoint"]
    assert main([*args, "200", "--out", "gymnax/cli-v0"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["checkpoint_env_step"] == 200 and summary["steps"] == 400
    assert summary["seed"] == load_config(device_run).run.seed + 20_000
    assert datasets.read_dataset("gymnax/cli-v0").metadata["checkpoint_env_step"] == 200
    assert main(["collect", str(device_run), "--out", "gymnax/none-v0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--episodes N" in err


def test_device_replay_exports_every_stored_step_of_the_first_seed(device_run):
    replay = _device_replay(device_run)
    # both rings have wrapped: each environment's oldest step is at current_index
    assert bool(replay.is_full[0]) and int(replay.current_index[0]) == 50
    expected = _expected_device_steps(replay)
    result = collect(device_run, "gymnax/replay-v0", replay=True)
    _assert_same_transitions("gymnax/replay-v0", expected)
    data = datasets.read_dataset("gymnax/replay-v0")
    # per environment: the first episode lost its first 50 steps to the ring and ends at its
    # time limit; the second is in progress at the checkpoint and is cut there, as a truncation
    assert [len(e["actions"]) for e in data.episodes] == [150, 100, 150, 100]
    assert all(bool(e["truncations"][-1]) for e in data.episodes)
    assert not any(e["terminations"].any() for e in data.episodes)
    assert data.action_space == gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
    assert data.metadata == {
        "source_run": str(device_run.resolve()),
        "algorithm": "decqn",
        "env_id": "gymnax:Pendulum-v1",
        "action_repeat": 1,
        "source": "replay",
        "checkpoint_env_step": 600,
        "steps": 500,
        "episodes": 4,
        "streams": 2,
        "overwritten_steps": 100,
    }
    assert result["steps"] == 500 and result["streams"] == 2
    # the second seed's replay is another run's
    assert not np.array_equal(_expected_device_steps(replay, 1)["obs"], expected["obs"])


def test_device_replay_of_an_earlier_checkpoint(device_run, capsys):
    args = ["collect", str(device_run), "--replay", "--checkpoint", "200"]
    assert main([*args, "--out", "gymnax/replay200-v0"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 200 and summary["overwritten_steps"] == 0
    replay = _device_replay(device_run, 200)
    assert not bool(replay.is_full[0]) and int(replay.current_index[0]) == 100  # not wrapped
    _assert_same_transitions("gymnax/replay200-v0", _expected_device_steps(replay))
    data = datasets.read_dataset("gymnax/replay200-v0")
    # each environment's first 100 steps: an episode in progress, cut there
    assert [len(e["actions"]) for e in data.episodes] == [100, 100]
    assert data.episodes[0]["truncations"].tolist() == [False] * 99 + [True]


# --------------------------------------------------------------------------- eval --checkpoint
def test_eval_checkpoint_evaluates_that_checkpoint_of_a_host_or_device_run(
    decqn_run, device_run, tmp_path, capsys
):
    for run, early, last in ((decqn_run, 100, 300), (device_run, 200, 600)):
        latest = evaluate(run, episodes=2)
        at_early = evaluate(run, episodes=2, checkpoint=early)
        folder = run / "checkpoints" / f"step_{early:010d}"
        assert evaluate(run, episodes=2, checkpoint=str(folder)) == at_early
        assert evaluate(run, episodes=2, checkpoint=last) == latest
        assert at_early["returns"] != latest["returns"]  # 200 or 400 steps of learning apart
        assert (at_early["checkpoint_env_step"], latest["checkpoint_env_step"]) == (early, last)
        assert load_agent(run, folder).env_step == early
        assert main(["eval", str(run), "--episodes", "2", "--checkpoint", str(early)]) == 0
        assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == at_early
    # one that is not there, or another run's: one line each, nothing evaluated
    other = tmp_path / "other" / "checkpoints" / "step_0000000100"
    shutil.copytree(decqn_run / "checkpoints" / "step_0000000100", other)
    for given, message in (
        ("150", "has no checkpoint at env step 150 (its checkpoints' env steps: 100, 200, 300)"),
        (str(other), "is not one of"),
    ):
        assert main(["eval", str(decqn_run), "--checkpoint", given]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and message in err, err
