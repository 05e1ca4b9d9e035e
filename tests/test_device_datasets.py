"""Datasets on the device runner: a local Minari dataset in a second device buffer, an offline
phase of jitted updates from it alone, then online training with a fixed share of every batch
from it; exact resume in either phase, the demonstration flags the learner sees, and the
one-line refusals. Every test writes its own small dataset in a tmp folder."""

import json
import shutil

import gymnasium as gym
import jax
import numpy as np
import pytest
from conftest import records, same_leaves
from test_device import _device_config

from factorl.core.config import ConfigError
from factorl.io import checkpoint as ckpt
from factorl.io import datasets
from factorl.io.checkpoint import CheckpointError
from factorl.runners import device
from factorl.runners.device import DeviceTrainer
from factorl.train import TrainingStopped, evaluate, load_agent, train


@pytest.fixture(autouse=True)
def _fresh(tmp_path, monkeypatch):
    """Datasets in the test's own folder, and programs compiled by this test alone."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    device._PROGRAMS.clear()
    yield
    device._PROGRAMS.clear()


def _write_pendulum_dataset(name, episodes=2, length=200, seed=0):
    """Random episodes with gymnax Pendulum's spaces, each cut by the time limit."""
    draw = np.random.default_rng(seed)
    out = [
        {
            "observations": draw.normal(size=(length + 1, 3)).astype(np.float32),
            "actions": draw.uniform(-2, 2, size=(length, 1)).astype(np.float32),
            "rewards": draw.normal(size=length),
            "terminations": np.zeros(length, bool),
            "truncations": np.r_[np.zeros(length - 1, bool), True],
        }
        for _ in range(episodes)
    ]
    box = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    actions = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
    datasets.write_dataset(name, out, box, actions, metadata={}, overwrite=True)
    return name


def _config(run_dir, dataset, steps=400, **overrides):
    data = {"data.dataset": dataset, "data.offline_steps": 150, "data.share": 0.25}
    return _device_config(run_dir, steps=steps, overrides={**data, **overrides})


@pytest.mark.parametrize("prioritized", [True, False], ids=["prioritized", "uniform"])
def test_offline_then_online_resumes_exactly_in_either_phase(tmp_path, prioritized):
    dataset = _write_pendulum_dataset("pendulum/random-v0")
    replay = {"replay.prioritized": prioritized}
    cfg = _config(tmp_path / "straight", dataset, **replay)
    straight = train(cfg)
    assert straight.status == "completed" and straight.env_step == 400
    # the dataset's data is one buffer for every seed, outside the state and so outside
    # checkpoints; prioritised, each seed keeps its own priorities over it in the state
    assert (straight.state.demos is not None) == prioritized
    if prioritized:
        assert straight.state.demos.experience is None
        nodes = np.asarray(straight.state.demos.sum_tree_state.nodes)
        assert nodes.shape[0] == 2 and not np.array_equal(nodes[0], nodes[1])
    split = _config(tmp_path / "split", dataset, **replay)
    first = train(split, stop_after_updates=70)  # in the middle of the offline phase
    assert first.env_step == 0
    assert np.asarray(first.state.agent.learner_step).tolist() == [70, 70]
    # a record written after that checkpoint by a process then killed: only its offline step
    # tells that the resume must drop it
    with open(first.run_dir / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"event": "train", "env_step": 0, "offline_step": 100}) + "\n")
    second = train(split, resume=first.run_dir, stop_after=250)  # ...and of the online one
    assert second.env_step == 250
    last = train(split, resume=first.run_dir)
    assert same_leaves(straight.state, last.state)
    assert records(straight.run_dir) == records(last.run_dir)
    offline = [r for r in records(straight.run_dir) if r.get("phase") == "offline"]
    assert [(r["event"], r["offline_step"], r["seed"]) for r in offline] == [
        ("train", 100, 0),
        ("train", 100, 1),
        ("train", 150, 0),
        ("train", 150, 1),
        ("eval", 150, 0),  # the offline policy, before any environment step
        ("eval", 150, 1),
    ]
    assert all(r["env_step"] == 0 and np.isfinite(r["loss"]) for r in offline[:4])
    # the offline steps, then one learner step per update_every env steps once the online
    # replay holds learning_starts sampleable windows: n x (k - n_step + 1) after k vector
    # steps of n environments
    n, every, window = cfg.env.num_envs, cfg.agent.update_every, cfg.replay.n_step
    online = sum(
        (n * k) // every - (n * k - n) // every
        for k in range(1, 400 // n + 1)
        if n * (k - window + 1) >= cfg.agent.learning_starts
    )
    assert 0 < online < 400 // every
    assert np.asarray(straight.state.agent.learner_step).tolist() == [150 + online] * 2
    # (each seed draws its own samples: test_each_seed_draws_its_own_batches_...)
    # a saved run of a dataset loads and evaluates without reading the dataset again
    (tmp_path / "minari").rename(tmp_path / "minari-gone")
    assert np.isfinite(evaluate(straight.run_dir, episodes=2)["mean"])


@pytest.mark.parametrize("prioritized", [True, False], ids=["prioritized", "uniform"])
def test_a_checkpoint_with_a_dataset_copy_per_seed_still_resumes_exactly(tmp_path, prioritized):
    """A checkpoint written when every seed kept its own copy of the whole dataset buffer in
    the state (prioritised: its manifest's dataset says "in_state": true; uniform, older: it
    says nothing) loads into the shared layout and goes on as a run that never stopped."""
    dataset = _write_pendulum_dataset("pendulum/old-v0")
    replay = {"replay.prioritized": prioritized}
    straight = train(_config(tmp_path / "straight", dataset, **replay))
    cfg = _config(tmp_path / "split", dataset, **replay)
    first = train(cfg, stop_after=100)
    root = tmp_path / "split" / "checkpoints"
    path = ckpt.latest_checkpoint(root)
    state, _, meta = ckpt.load_checkpoint(path, jax.tree_util.tree_leaves(first.state))
    # the earlier layout: the state with the dataset buffer per seed, the manifest without the flag
    program = device._compiled_program(cfg, meta["dataset"]["steps"])
    demos = program.load_demos(datasets.read_dataset(dataset).transitions())
    old = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(first.state), state)
    if prioritized:  # the seeds' own priorities over copies of the data
        data = device._per_seed(demos.experience, 2)
        old = old._replace(demos=old.demos.replace(experience=data))
        meta["dataset"]["in_state"] = True
    else:
        old = old._replace(demos=device._per_seed(demos, 2))
        del meta["dataset"]["in_state"]
    # nor did its stats count each metric's measurements
    old = old._replace(stats=old.stats._replace(metric_counts=None))
    del meta["metric_counts"]
    meta = {k: v for k, v in meta.items() if k not in ckpt._RESERVED}  # written by the saver
    shutil.rmtree(path)
    ckpt.save_checkpoint(root, 100, jax.tree_util.tree_leaves(old), {}, meta)
    last = train(cfg, resume=tmp_path / "split")
    assert (last.state.demos is None) == (not prioritized)
    assert same_leaves(straight.state, last.state)
    assert records(straight.run_dir) == records(last.run_dir)


def test_batches_flag_the_dataset_rows_offline_and_the_share_online(tmp_path):
    dataset = _write_pendulum_dataset("pendulum/flags-v0")
    # one seed: the callback below then reports every batch once
    cfg = _config(
        tmp_path / "run", dataset, steps=200, **{"data.offline_steps": 3, "run.num_seeds": 1}
    )
    trainer = DeviceTrainer(cfg)
    flags = []
    update = trainer.agent.update_fn

    def spy(state, batch):
        # runs inside the jitted program: the flags come out through a host callback, in the
        # program's order
        jax.debug.callback(
            lambda f: flags.append(np.asarray(f)), batch.extras["demo"], ordered=True
        )
        return update(state, batch)

    trainer.agent.update_fn = spy  # before the programs are traced, at their first call
    trainer.run()
    jax.effects_barrier()
    batch = cfg.replay.batch_size
    offline, online = flags[:3], flags[3:]
    assert all(f.shape == (batch,) and f.all() for f in offline)
    # 0.25 of every online batch, its last rows, from the dataset
    k = round(0.25 * batch)
    assert online and all(f.tolist() == [0.0] * (batch - k) + [1.0] * k for f in online)


def test_each_seed_draws_its_own_batches_from_the_one_dataset_buffer(tmp_path):
    dataset = _write_pendulum_dataset("pendulum/seeds-v0")
    cfg = _config(
        tmp_path / "run", dataset, steps=1, **{"data.offline_steps": 4, "replay.prioritized": False}
    )
    trainer = DeviceTrainer(cfg)
    drawn = []
    update = trainer.agent.update_fn

    def spy(state, batch):
        # under the seeds' vmap the callback sees each seed's batch (in no promised order)
        jax.debug.callback(lambda o: drawn.append(np.asarray(o).tobytes()), batch.obs)
        return update(state, batch)

    trainer.agent.update_fn = spy
    trainer.run()
    jax.effects_barrier()
    assert len(drawn) >= 2 * 4 and len(set(drawn)) == len(drawn)  # (online batches too)


def test_resume_refuses_a_changed_or_missing_dataset(tmp_path):
    dataset = _write_pendulum_dataset("pendulum/changing-v0", seed=1)
    cfg = _config(tmp_path / "run", dataset)
    train(cfg, stop_after_updates=20)
    _write_pendulum_dataset("pendulum/changing-v0", seed=2)
    with pytest.raises(CheckpointError, match="not the data this run trained on"):
        train(cfg, resume=tmp_path / "run")
    without = _device_config(tmp_path / "run", steps=400)
    with pytest.raises(ConfigError, match=r"cannot change data\.dataset"):
        train(without, resume=tmp_path / "run")


def test_a_dataset_of_other_spaces_is_refused_in_one_line(tmp_path):
    box = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
    episode = {
        "observations": np.zeros((3, 4), np.float32),
        "actions": np.zeros((2, 1), np.float32),
        "rewards": np.zeros(2),
        "terminations": np.array([False, True]),
        "truncations": np.zeros(2, bool),
    }
    actions = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
    datasets.write_dataset("other/shape-v0", [episode], box, actions, metadata={})
    with pytest.raises(datasets.DatasetError, match="use a dataset of this environment"):
        DeviceTrainer(_config(tmp_path / "run", "other/shape-v0"))


def test_a_non_finite_offline_update_stops_with_a_checkpoint_of_the_last_good_state(tmp_path):
    dataset = _write_pendulum_dataset("pendulum/boom-v0")
    overrides = {"agent.learning_rate": 1e30, "agent.max_grad_norm": 1e30}
    cfg = _config(tmp_path / "boom", dataset, **overrides)
    with pytest.raises(TrainingStopped, match="non-finite loss or gradient at offline step"):
        train(cfg)
    policy = load_agent(tmp_path / "boom")
    params = jax.tree_util.tree_leaves(policy.state.params)
    assert all(np.isfinite(np.asarray(x)).all() for x in params)
    offline = [r for r in records(tmp_path / "boom") if r.get("phase") == "offline"]
    assert offline and offline[-1]["offline_step"] < 150
    # the state after the updates that were finite, not the one before them: the checkpoint
    # is at the last record's offline step, past the first update, as is its learner step
    loop = ckpt.read_meta(ckpt.latest_checkpoint(tmp_path / "boom" / "checkpoints"))["loop"]
    assert loop["offline_step"] == offline[-1]["offline_step"] >= 1
    assert int(np.asarray(policy.state.learner_step)) >= 1
