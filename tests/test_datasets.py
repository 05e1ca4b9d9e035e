"""Datasets in Minari's format: `factorl collect` writes what it recorded, loading checks spaces,
and training from a dataset (offline phase, then online with a fixed share of every batch from
it) resumes exactly in either phase. Every test makes its own small datasets in a tmp folder."""

import contextlib
import json
import warnings

import gymnasium as gym
import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import moved_off_start, records, same_leaves, tiny_config

from factorl.agents import get_algorithm
from factorl.cli import main
from factorl.core.agent import TrainBatch
from factorl.core.config import ConfigError
from factorl.io import datasets
from factorl.io.checkpoint import CheckpointError
from factorl.io.logging import read_metrics
from factorl.io.runfolder import read_segments
from factorl.maths import demonstrations as demos_maths
from factorl.runners.host import HostTrainer
from factorl.runners.session import episode_seed
from factorl.sweep import summarise_run
from factorl.train import (
    COLLECT_NOISE_STREAM,
    COLLECT_STREAM,
    collect,
    load_agent,
    make_config,
    record_episodes,
    train,
)


@pytest.fixture(scope="module", autouse=True)
def _local_datasets(tmp_path_factory):
    """The module's datasets in a folder of its own: nothing is read from, or written to,
    ~/.minari (each test names its datasets differently)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINARI_DATASETS_PATH", str(tmp_path_factory.mktemp("minari")))
        yield


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    """A tiny DecQN run on Pendulum to record from."""
    run_dir = tmp_path_factory.mktemp("source") / "run"
    return train(tiny_config(run_dir, steps=200)).run_dir


@pytest.fixture(scope="module")
def demos(saved_run):
    """Two noisy episodes of the saved run: dataset pendulum/decqn-v0 (400 steps)."""
    collect(saved_run, "pendulum/decqn-v0", episodes=2, noise=0.5, seed=7)
    return "pendulum/decqn-v0"


#: offline then online training from `demos`, on top of the tiny DecQN run
FROM_DATA = {"data.dataset": "pendulum/decqn-v0", "data.offline_steps": 150, "data.share": 0.25}


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


def test_collect_writes_the_episodes_it_recorded(saved_run, demos):
    data = datasets.read_dataset(demos)
    assert data.steps == 400 and data.metadata["algorithm"] == "decqn"
    assert data.metadata["noise"] == 0.5
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
    # and apart from that function: each episode is the environment's answer to its actions
    # from the reset its (seed, index) names, the episodes start apart, and an action is the
    # policy's plus noise of the stated size
    policy = load_agent(saved_run)
    noise = []
    for i, episode in enumerate(data.episodes):
        obs, _ = env.reset(seed=episode_seed(7, COLLECT_STREAM, i))
        assert np.array_equal(episode["observations"][0], obs)
        for t, action in enumerate(episode["actions"]):
            if np.abs(action).max() < 2.0:  # not clipped
                noise.append(action - policy(episode["observations"][t]))
            obs, reward, terminated, truncated, _ = env.step(action)
            assert np.array_equal(episode["observations"][t + 1], obs)
            assert episode["rewards"][t] == reward
            assert (episode["terminations"][t], episode["truncations"][t]) == (
                terminated,
                truncated,
            )
    assert not np.array_equal(
        data.episodes[0]["observations"][0], data.episodes[1]["observations"][0]
    )
    assert 0.4 < np.std(noise) < 0.6 and abs(np.mean(noise)) < 0.1


def test_collect_noise_is_seeded_apart_from_every_episode_reset():
    """SeedSequence pads its entropy with zeros, so a stream's generator seeded from
    [seed, stream] equals that stream's episode 0, [seed, stream, 0]: the noise has a stream of
    its own."""
    noise = np.random.SeedSequence([7, COLLECT_NOISE_STREAM]).generate_state(1)[0]
    resets = {episode_seed(7, COLLECT_STREAM, ep) for ep in range(100)}
    assert noise not in resets
    # the padding this guards against
    assert np.random.SeedSequence([7, COLLECT_STREAM]).generate_state(1)[0] in resets


def test_noise_beyond_float32_puts_every_action_on_a_bound_without_a_warning(saved_run):
    env = gym.make("Pendulum-v1", max_episode_steps=20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (episode,) = record_episodes(load_agent(saved_run), env, 1, 1e308, 3)
    assert np.isin(episode["actions"], (-2.0, 2.0)).all()
    assert len(np.unique(episode["actions"])) == 2  # both bounds: the noise's sign is kept


def test_collect_refuses_an_existing_name_unless_overwrite(saved_run, capsys):
    args = ["collect", str(saved_run), "--episodes", "1", "--out", "again-v0"]
    assert main(args) == 0
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
    assert main([*args, "--overwrite", "--noise", "0.1"]) == 0
    assert datasets.read_dataset("again-v0").metadata["noise"] == 0.1


@contextlib.contextmanager
def _one_line(match):
    """A DatasetError matching `match` whose message is one line."""
    with pytest.raises(datasets.DatasetError, match=match) as caught:
        yield
    assert "\n" not in str(caught.value), str(caught.value)


def test_loading_errors_are_one_line():
    datasets.write_dataset(
        "ok-v0", _episodes([3, 4]), _box((3,), -1, 1), _box((1,), -2, 2), metadata={}
    )
    data = datasets.read_dataset("ok-v0")
    assert data.steps == 7 and data.metadata == {}
    data.check_spaces(_box((3,), -1, 1), _box((1,), -2, 2), "gym:Pendulum-v1")
    with _one_line(r"observations Box shape \(3,\).*\(5,\)"):
        data.check_spaces(_box((5,), -1, 1), _box((1,), -2, 2), "gym:X-v0")
    with _one_line(r"actions .*\[-2, 2\].*\[-1, 1\]"):
        data.check_spaces(_box((3,), -1, 1), _box((1,), -1, 1), "gym:X-v0")
    data.check_action_repeat(3)  # written elsewhere: no action repeat recorded
    datasets.write_dataset(
        "repeat-v0", _episodes([2]), _box((3,), -1, 1), _box((1,), -2, 2),
        metadata={"action_repeat": 2},
    )  # fmt: skip
    datasets.read_dataset("repeat-v0").check_action_repeat(2)
    with _one_line(r"action_repeat 2 but this run has 1; set "):
        datasets.read_dataset("repeat-v0").check_action_repeat(1)
    with _one_line(r"local datasets: .*ok-v0"):
        datasets.read_dataset("missing-v0")
    with _one_line("not a Minari id"):
        datasets.read_dataset("no version")
    discrete = [{**e, "actions": np.zeros(len(e["actions"]), np.int64)} for e in _episodes([2])]
    datasets.write_dataset(
        "discrete-v0", discrete, _box((3,), -1, 1), gym.spaces.Discrete(3), metadata={}
    )
    with _one_line(r"Discrete action space.*Box"):
        datasets.read_dataset("discrete-v0")


def _damaged(name, damage):
    """A small dataset `name`, then `damage(data folder, metadata dict)` applied to it; the
    metadata (changed in place, or returned) is written back."""
    datasets.write_dataset(
        name, _episodes([3, 4]), _box((3,), -1, 1), _box((1,), -2, 2), metadata={}
    )
    folder = datasets.dataset_path(name) / "data"
    meta = json.loads((folder / "metadata.json").read_text())
    changed = damage(folder, meta)
    meta = meta if changed is None else changed
    (folder / "metadata.json").write_text(json.dumps(meta))
    return name


def _cut_columns(folder, meta):
    """Episode 0's observations cut to 2 of their 3 columns."""
    with h5py.File(folder / "main_data.hdf5", "a") as f:
        del f["episode_0/observations"]
        f["episode_0/observations"] = np.zeros((4, 2), np.float32)


def _one_more_observation(folder, meta):
    with h5py.File(folder / "main_data.hdf5", "a") as f:
        del f["episode_0/observations"]
        f["episode_0/observations"] = np.zeros((5, 3), np.float32)


def _nan_reward(folder, meta):
    with h5py.File(folder / "main_data.hdf5", "a") as f:
        rewards = np.array(f["episode_1/rewards"])
        rewards[2] = np.nan
        del f["episode_1/rewards"]
        f["episode_1/rewards"] = rewards


def test_damaged_datasets_are_one_line_naming_what_is_wrong():
    def without(key):
        def damage(folder, meta):
            del meta[key]

        return damage

    def rebuild_from(folder, meta):
        # no observation space, but an environment to rebuild: Minari would import its entry
        # point to get the space, which factorl never lets it do
        meta.pop("observation_space")
        meta["env_spec"] = json.dumps({"id": "X-v0", "entry_point": "not_a_module_xyz:Env"})

    cases = {
        "bad/list-v0": (lambda folder, meta: [], "holds a JSON list, not an object"),
        "bad/arrow-v0": (
            lambda folder, meta: {**meta, "data_format": "arrow"},
            "stores its arrays as 'arrow'.*HDF5",
        ),
        "bad/noobsspace-v0": (without("observation_space"), "missing 'observation_space'"),
        "bad/rebuild-v0": (rebuild_from, "missing 'observation_space'"),
        "bad/nototal-v0": (without("total_steps"), "missing 'total_steps'"),
        "bad/columns-v0": (_cut_columns, r"episode 0's observations have shape \(2,\)"),
        "bad/length-v0": (_one_more_observation, "episode 0 has 5 observations for 3 actions"),
        "bad/nan-v0": (_nan_reward, "episode 1's rewards hold non-finite values"),
    }
    for name, (damage, match) in cases.items():
        _damaged(name, damage)
        with _one_line(f"^dataset {name}[: ].*{match}"):
            datasets.read_dataset(name)


def test_training_from_a_damaged_dataset_is_one_line(tmp_path, capsys):
    name = _damaged("bad/train-columns-v0", _cut_columns)
    run = tmp_path / "run"
    args = ["train", "decqn", "--env.id", "gym:Pendulum-v1", "--data.dataset", name]
    assert main([*args, "--run.dir", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"dataset {name}: episode 0's observations" in err, err


def test_write_dataset_refuses_anything_at_its_path(tmp_path, monkeypatch):
    def write(name, **kwargs):
        box = _box((3,), -1, 1)
        return datasets.write_dataset(
            name, _episodes([2]), box, _box((1,), -2, 2), metadata={}, **kwargs
        )

    root = datasets.datasets_root()
    # a folder that is not a dataset is kept, unless overwrite; then nothing is left beside it
    notes = root / "mine" / "notes-v0" / "notes.txt"
    notes.parent.mkdir(parents=True)
    notes.write_text("mine")
    with _one_line("exists and is not a Minari dataset.*--overwrite"):
        write("mine/notes-v0")
    assert notes.read_text() == "mine"
    write("mine/notes-v0", overwrite=True)
    assert datasets.read_dataset("mine/notes-v0").steps == 2 and not notes.exists()
    # a file in place of a dataset is replaced likewise
    (root / "mine" / "file-v0").write_text("")
    with _one_line("exists and is not a Minari dataset"):
        write("mine/file-v0")
    write("mine/file-v0", overwrite=True)
    # a link never, and what it points to stays as it was
    target = tmp_path / "target"
    target.mkdir()
    (root / "mine" / "link-v0").symlink_to(target)
    with _one_line("is a symbolic link"):
        write("mine/link-v0", overwrite=True)
    assert list(target.iterdir()) == []
    assert sorted(p.name for p in (root / "mine").iterdir()) == ["file-v0", "link-v0", "notes-v0"]
    # a file where a folder of the path should be
    (root / "afile").write_text("")
    with _one_line("afile is not a folder"):
        write("afile/x-v0")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root / "afile"))
    with _one_line("afile is not a folder.*MINARI_DATASETS_PATH"):
        write("x-v0")
    with _one_line("not a Minari id; use NAME-vN"):
        write("pend/x-v-1")


def test_transitions_follow_the_episodes():
    episodes = _episodes([2, 3])
    episodes[1]["terminations"][:] = False  # cut short: neither flag at its last step
    datasets.write_dataset("t-v0", episodes, _box((3,), -5, 5), _box((1,), -2, 2), metadata={})
    t = datasets.read_dataset("t-v0").transitions()
    assert t["obs"].shape == (5, 3) and t["action"].shape == (5, 1)
    obs = [e["observations"] for e in episodes]
    assert np.array_equal(t["obs"], np.concatenate([o[:-1] for o in obs]))
    assert np.array_equal(t["next_obs"], np.concatenate([o[1:] for o in obs]))
    assert np.array_equal(t["action"], np.concatenate([e["actions"] for e in episodes]))
    assert np.allclose(t["reward"], np.concatenate([e["rewards"] for e in episodes]))
    assert t["terminated"].tolist() == [False, True, False, False, False]
    assert t["truncated"].tolist() == [False, False, False, False, True]


def test_data_settings_are_checked_in_one_line():
    with pytest.raises(ConfigError, match=r"data\.offline_steps learns from a dataset"):
        make_config("decqn", {"data.offline_steps": 10})
    with pytest.raises(ConfigError, match="single-agent algorithms; vdn"):
        make_config("vdn", {"data.dataset": "x-v0", "env.id": "jaxmarl:MPE_simple_spread_v3"})
    with pytest.raises(ConfigError, match="needs a single-agent environment"):
        make_config("decqn", {"data.dataset": "x-v0", "env.id": "factorl:two-step-game"})
    with pytest.raises(ConfigError, match=r"data\.share must be"):
        make_config("decqn", {"data.dataset": "x-v0", "data.share": 1.5})


def test_offline_then_online_resumes_exactly_in_either_phase(tmp_path, demos):
    straight = train(tiny_config(tmp_path / "straight", steps=300, overrides=FROM_DATA))
    split_cfg = tiny_config(tmp_path / "split", steps=300, overrides=FROM_DATA)
    first = train(split_cfg, stop_after_updates=70)  # in the middle of the offline phase
    assert first.env_step == 0 and int(first.state.learner_step) == 70
    # a record written after that checkpoint by a process then killed: env step 0 like the
    # checkpoint, so only its offline step tells that the resume must drop it
    with open(first.run_dir / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"event": "train", "env_step": 0, "offline_step": 100}) + "\n")
    second = train(split_cfg, resume=first.run_dir, stop_after=150)  # ...and of the online one
    assert second.env_step == 150
    last = train(split_cfg, resume=first.run_dir)
    assert same_leaves(straight.state, last.state)
    # each process's segment says where it started, in the offline phase too
    starts = [(s["from_env_step"], s["from_offline_step"]) for s in read_segments(last.run_dir)]
    assert starts == [(0, 0), (0, 70), (150, 150)]
    assert records(straight.run_dir) == records(last.run_dir)
    offline = [r for r in records(straight.run_dir) if r.get("phase") == "offline"]
    assert [(r["event"], r["offline_step"], r["env_step"]) for r in offline] == [
        ("train", 100, 0),
        ("train", 150, 0),
        ("eval", 150, 0),  # the offline policy, evaluated before any environment step
    ]
    assert int(straight.state.learner_step) == 150 + (300 - 100) // 2
    # the results file's curve keeps the tag of the offline phase's evaluation
    curve = summarise_run(straight.run_dir, "cmd")["curve"]
    assert curve[0]["phase"] == "offline" and curve[0]["offline_step"] == 150
    assert curve[0]["env_step"] == 0 and all("phase" not in point for point in curve[1:])


def test_resuming_before_the_first_record_is_due_warns_of_no_lost_records(tmp_path, demos, capsys):
    # offline step 70 comes before the first record (log_every 100): an empty metrics file
    # there is the run's own, not one whose records were removed
    cfg = tiny_config(tmp_path / "early", steps=300, overrides=FROM_DATA)
    first = train(cfg, stop_after_updates=70)
    assert read_metrics(first.run_dir) == []
    train(cfg, resume=first.run_dir, stop_after_updates=50)  # to offline step 120
    assert "held no records" not in capsys.readouterr().err
    (first.run_dir / "metrics.jsonl").unlink()  # past the record at offline step 100: lost
    train(cfg, resume=first.run_dir, stop_after_updates=1)
    assert "metrics.jsonl held no records before the checkpoint" in capsys.readouterr().err


def test_online_batches_draw_the_share_from_the_dataset(tmp_path, demos):
    overrides = {**FROM_DATA, "data.offline_steps": 3}
    trainer = HostTrainer(tiny_config(tmp_path / "share", steps=120, overrides=overrides))
    flags = []
    update = trainer.agent.update

    def spy(state, batch):
        flags.append(np.asarray(batch.extras["demo"]))
        return update(state, batch)

    trainer.agent.update = spy
    trainer.run()
    offline, online = flags[:3], flags[3:]
    assert len(online) == 10 and all(f.all() for f in offline)
    # 0.25 of 32 rows, the batch's last ones, from the dataset in every online batch
    assert all(f.tolist() == [0.0] * 24 + [1.0] * 8 for f in online)


def test_resume_refuses_a_different_dataset(tmp_path, saved_run, demos):
    collect(saved_run, "pendulum/changing-v0", episodes=1, seed=1)
    overrides = {**FROM_DATA, "data.dataset": "pendulum/changing-v0"}
    cfg = tiny_config(tmp_path / "run", steps=300, overrides=overrides)
    train(cfg, stop_after_updates=20)
    collect(saved_run, "pendulum/changing-v0", episodes=1, seed=2, overwrite=True)
    with pytest.raises(CheckpointError, match="not the data this run trained on"):
        train(cfg, resume=tmp_path / "run")


def test_demonstration_losses_worked_examples():
    # margin 0.01, two samples demonstrating bins 1 and 2. First: bin 0 is 0.005 below the
    # demonstrated 1.005 (0.005 short of the margin), bin 2 far below (0), the demonstrated bin
    # itself 0.01 (CQN's code keeps it): mean over all 0.005, over the others 0.0025. Second:
    # bin 0 is 0.1 above the demonstrated 0.1 (0.11), bin 1 0.1 below (0), itself 0.01: 0.04 and
    # 0.055
    q = jnp.array([[1.0, 1.005, 0.5], [0.2, 0.0, 0.1]])
    choice = jnp.array([1, 2])
    np.testing.assert_allclose(demos_maths.margin_loss(q, choice, 0.01), [0.005, 0.04], rtol=1e-4)
    np.testing.assert_allclose(
        demos_maths.margin_loss(q, choice, 0.01, "others"), [0.0025, 0.055], rtol=1e-4
    )
    # CDFs on three atoms. First sample, demonstrated bin 1 (0.3, 0.6, 1): bin 0's (0.1, 0.4, 1)
    # lies below it by 0.2 twice (0.4), bin 2's (0.5, 0.75, 1) above it (0): mean 0.2. Second,
    # bin 2 (0.4, 0.7, 1): bin 0's (0.6, 0.9, 1) is dominated (0), bin 1's (0.3, 0.5, 1) lies
    # below by 0.1 and 0.2 (0.3): mean 0.15. (The dominance the other way round gives 0.175
    # and 0.2.) Over all three bins, the demonstrated one's 0 included: 0.4 / 3 and 0.1.
    probs = [
        [[0.1, 0.3, 0.6], [0.3, 0.3, 0.4], [0.5, 0.25, 0.25]],
        [[0.6, 0.3, 0.1], [0.3, 0.2, 0.5], [0.4, 0.3, 0.3]],
    ]
    logits = jnp.log(jnp.array(probs))
    np.testing.assert_allclose(
        demos_maths.fosd_loss(logits, choice, "others"), [0.2, 0.15], rtol=1e-5
    )
    np.testing.assert_allclose(demos_maths.fosd_loss(logits, choice), [0.4 / 3, 0.1], rtol=1e-5)
    per_sample, flags = jnp.array([1.0, 2.0, 4.0]), jnp.array([0.0, 1.0, 1.0])
    assert float(demos_maths.demo_mean(per_sample, flags)) == 3.0
    assert float(demos_maths.demo_mean(per_sample, jnp.zeros(3))) == 0.0


#: tiny CQN (C51: margin and FOSD losses) and ARSQ (its demonstration term)
_DEMO_LEARNERS = {
    "cqn": {"agent.width": 16, "agent.levels": 2, "agent.bins": 3, "agent.distributional": True,
            "agent.num_atoms": 11, "agent.v_min": -20.0, "agent.v_max": 0.0},
    "arsq": {"agent.width": 16, "agent.depth": 1, "agent.levels": 2, "agent.bins": 3},
}  # fmt: skip


@pytest.mark.parametrize("algo", sorted(_DEMO_LEARNERS))
def test_demo_flags_switch_the_demonstration_losses_on(algo):
    # the runner's flags reach the update (test_online_batches_...); here the update uses them
    cfg = make_config(algo, {**_DEMO_LEARNERS[algo], "replay.batch_size": 8})
    space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
    agent = get_algorithm(algo)(cfg.agent, _box((3,), -1, 1), space, cfg.replay)
    state = agent.init(0)
    draw = np.random.default_rng(0)
    batch = TrainBatch(
        obs=draw.normal(size=(8, 3)).astype(np.float32),
        action=draw.uniform(-2, 2, size=(8, 1)).astype(np.float32),
        reward=draw.normal(size=8).astype(np.float32),
        discount=np.full(8, 0.99, np.float32),
        next_obs=draw.normal(size=(8, 3)).astype(np.float32),
        weights=np.ones(8, np.float32),
    )
    flags = np.r_[np.zeros(4), np.ones(4)].astype(np.float32)
    _, metrics, _ = agent.update(state, batch._replace(extras={"demo": flags}))
    assert float(metrics["demo_loss"]) > 0 and np.isfinite(float(metrics["loss"]))


@pytest.mark.parametrize("over", ["all", "others"])
def test_cqn_trains_on_the_demonstration_losses_of_the_flagged_rows_only(over):
    """The C51 critic's loss plus demo_weight x (margin + FOSD losses along each flagged row's
    own zoom path, averaged over bins as `demo_bin_mean` says, levels and dimensions, then over
    the flagged rows)."""
    overrides = {
        **_DEMO_LEARNERS["cqn"],
        "agent.demo_weight": 2.0,
        "agent.demo_bin_mean": over,
        "replay.batch_size": 6,
    }
    cfg = make_config("cqn", overrides)
    space = gym.spaces.Box(-2.0, 2.0, (2,), np.float32)
    agent = get_algorithm("cqn")(cfg.agent, _box((3,), -1, 1), space, cfg.replay)
    state = agent.init(0)
    params = moved_off_start(state.params, scale=0.3)  # so that the losses depend on the bins
    draw = np.random.default_rng(1)
    batch = TrainBatch(
        obs=jnp.asarray(draw.normal(size=(6, 3)), jnp.float32),
        action=jnp.asarray(draw.uniform(-2, 2, size=(6, 2)), jnp.float32),
        reward=jnp.asarray(draw.normal(size=6), jnp.float32),
        discount=jnp.full(6, 0.99, jnp.float32),
        next_obs=jnp.asarray(draw.normal(size=(6, 3)), jnp.float32),
        weights=jnp.ones(6, jnp.float32),
    )
    key = jax.random.PRNGKey(0)
    loss_fn = jax.jit(agent.loss)
    loss, aux = loss_fn(params, state.target_params, batch, key)
    assert "demo_loss" not in aux  # no flags (online without a dataset): the term is off
    flags = jnp.array([1.0, 0.0, 0.0, 1.0, 0.0, 1.0])
    loss_demo, aux_demo = loss_fn(
        params, state.target_params, batch._replace(extras={"demo": flags}), key
    )
    path = agent.encode_path(batch.action)  # [batch, L, M]
    out = agent.all_levels(params, batch.obs, path)  # [batch, L, M, B, atoms]
    q = jnp.sum(jax.nn.softmax(out, axis=-1) * agent.atoms, axis=-1)
    per = demos_maths.margin_loss(q, path, 0.01, over) + demos_maths.fosd_loss(out, path, over)
    per_sample = jnp.mean(per, axis=(1, 2))
    expected = float(jnp.sum(flags * per_sample) / 3)
    assert abs(expected - float(jnp.mean(per_sample))) > 1e-3  # the flags matter here
    np.testing.assert_allclose(aux_demo["demo_loss"], expected, rtol=1e-5)
    np.testing.assert_allclose(loss_demo, loss + 2.0 * expected, rtol=1e-5)
    none = batch._replace(extras={"demo": jnp.zeros(6)})
    loss_none, aux_none = loss_fn(params, state.target_params, none, key)
    assert float(aux_none["demo_loss"]) == 0.0 and float(loss_none) == float(loss)


def test_train_with_an_unknown_dataset_is_one_line_and_writes_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["train", "decqn", "--data.dataset", "nowhere-v0", "--run.dir", str(run)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "no local Minari dataset 'nowhere-v0'" in err
    assert not run.exists()
