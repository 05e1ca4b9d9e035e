"""Datasets in Minari's format: `factorl collect` writes what it recorded, loading checks spaces,
and training from a dataset (offline phase, then online with a fixed share of every batch from
it) resumes exactly in either phase. Every test makes its own small datasets in a tmp folder."""

import gymnasium as gym
import numpy as np
import pytest
from conftest import tiny_config

from factorl.cli import main
from factorl.io import datasets
from factorl.train import collect, load_agent, record_episodes, train


@pytest.fixture(autouse=True)
def _local_datasets(tmp_path, monkeypatch):
    """Every test's datasets in its own folder: nothing is read from, or written to, ~/.minari."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    """A tiny DecQN run on Pendulum to record from."""
    run_dir = tmp_path_factory.mktemp("source") / "run"
    return train(tiny_config(run_dir, steps=200)).run_dir


def _box(shape, low, high):
    return gym.spaces.Box(low, high, shape, np.float32)


def _episodes(lengths, obs_dim=3, act_dim=1, seed=0):
    draw = np.random.default_rng(seed)
    out = []
    for n in lengths:
        out.append(
            {
                "observations": draw.normal(size=(n + 1, obs_dim)).astype(np.float32),
                "actions": draw.uniform(-2, 2, size=(n, act_dim)).astype(np.float32),
                "rewards": draw.normal(size=n),
                "terminations": np.r_[np.zeros(n - 1, bool), True],
                "truncations": np.zeros(n, bool),
            }
        )
    return out


def test_collect_writes_the_episodes_it_recorded(saved_run):
    out = collect(saved_run, "pendulum/decqn-v0", episodes=2, noise=0.5, seed=7)
    assert out["steps"] == 400 and out["algorithm"] == "decqn" and out["noise"] == 0.5
    data = datasets.read_dataset("pendulum/decqn-v0")
    assert data.metadata["source_run"] == str(saved_run.resolve())
    assert data.metadata["env_id"] == "gym:Pendulum-v1" and data.metadata["seed"] == 7
    # the same episodes recorded again, by the function collect records with
    env = gym.make("Pendulum-v1")
    expected = record_episodes(load_agent(saved_run), env, 2, 0.5, 7)
    assert len(data.episodes) == 2
    for got, want in zip(data.episodes, expected, strict=True):
        for key in datasets.EPISODE_KEYS:
            assert np.array_equal(got[key], want[key]), key
    actions = np.concatenate([e["actions"] for e in data.episodes])
    assert np.abs(actions).max() <= 2.0  # clipped to the bounds
    assert not np.isin(actions, (-2.0, 0.0, 2.0)).all()  # the noise moved them off the grid


def test_collect_refuses_an_existing_name_unless_overwrite(saved_run, capsys):
    args = ["collect", str(saved_run), "--episodes", "1", "--out", "again-v0"]
    assert main(args) == 0
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
    assert main([*args, "--overwrite", "--noise", "0.1"]) == 0
    assert datasets.read_dataset("again-v0").metadata["noise"] == 0.1


def test_loading_errors_are_one_line():
    datasets.write_dataset(
        "ok-v0", _episodes([3, 4]), _box((3,), -1, 1), _box((1,), -2, 2), metadata={}
    )
    data = datasets.read_dataset("ok-v0")
    assert data.steps == 7 and data.metadata == {}
    data.check_spaces(_box((3,), -1, 1), _box((1,), -2, 2), "gym:Pendulum-v1")
    with pytest.raises(datasets.DatasetError, match=r"observations Box shape \(3,\).*\(5,\)"):
        data.check_spaces(_box((5,), -1, 1), _box((1,), -2, 2), "gym:X-v0")
    with pytest.raises(datasets.DatasetError, match=r"actions .*\[-2, 2\].*\[-1, 1\]"):
        data.check_spaces(_box((3,), -1, 1), _box((1,), -1, 1), "gym:X-v0")
    with pytest.raises(datasets.DatasetError, match="local datasets: ok-v0"):
        datasets.read_dataset("missing-v0")
    with pytest.raises(datasets.DatasetError, match="not a Minari id"):
        datasets.read_dataset("no version")
    discrete = [{**e, "actions": np.zeros(len(e["actions"]), np.int64)} for e in _episodes([2])]
    datasets.write_dataset(
        "discrete-v0", discrete, _box((3,), -1, 1), gym.spaces.Discrete(3), metadata={}
    )
    with pytest.raises(datasets.DatasetError, match=r"Discrete action space.*Box"):
        datasets.read_dataset("discrete-v0")


def test_transitions_follow_the_episodes():
    episodes = _episodes([2, 3])
    episodes[1]["terminations"][:] = False  # cut short: neither flag at its last step
    datasets.write_dataset("t-v0", episodes, _box((3,), -5, 5), _box((1,), -2, 2), metadata={})
    t = datasets.read_dataset("t-v0").transitions()
    assert t["obs"].shape == (5, 3) and t["action"].shape == (5, 1)
    assert np.array_equal(t["next_obs"][:2], episodes[0]["observations"][1:])
    assert t["terminated"].tolist() == [False, True, False, False, False]
    assert t["truncated"].tolist() == [False, False, False, False, True]
