"""`factorl collect --checkpoint` and `--replay`: recording with a chosen checkpoint of a run, and
exporting the replay buffer a checkpoint stores as a Minari dataset (the "medium" and
"medium-replay" datasets of a D4RL-style protocol). Every test writes its datasets into a tmp
folder, and the runs are tiny (a few hundred steps, checkpoints every 100)."""

import importlib
import json

import gymnasium as gym
import numpy as np
import pytest
from conftest import tiny_config

from factorl.cli import main
from factorl.io import datasets
from factorl.io.checkpoint import load_arrays
from factorl.train import (
    checkpoint_path,
    collect,
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
    # a device run (JAX-native environment) and a multi-agent run
    device = make_config("decqn", {"env.id": "gymnax:Pendulum-v1"})
    monkeypatch.setattr(train_module, "load_config", lambda run_dir: device)
    assert "is JAX-native" in error(run, "--replay", "--out", "e-v0")
    marl = make_config("vdn", {"env.id": "pettingzoo:mpe2.simple_spread_v3"})
    monkeypatch.setattr(train_module, "load_config", lambda run_dir: marl)
    assert "is multi-agent" in error(run, "--replay", "--out", "e-v0")
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
