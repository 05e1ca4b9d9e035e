"""The device runner: every algorithm on a JAX-native environment with seeds and environments
vmapped, exact resume, the errors, and (slow) that it learns. Its replay is tested in
test_device_replay.py."""

import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import leaves, records, same_leaves
from test_contract import PER_ALGORITHM, VARIANTS
from test_reliability import _FailingFile

from factorl.core.config import ConfigError
from factorl.io import checkpoint as ckpt
from factorl.replay.device import PRIORITY_EPS
from factorl.runners import device
from factorl.runners.device import DeviceTrainer
from factorl.train import evaluate, load_agent, make_config, train


@pytest.fixture(autouse=True)
def _fresh_programs():
    """Each test compiles its own programs: a program cached by an earlier test comes with an
    agent whose trace counts include that test's (a loaded policy acts outside the program), so
    the compile-once counts below would depend on the order tests ran in."""
    device._PROGRAMS.clear()
    yield
    device._PROGRAMS.clear()


def _device_config(run_dir, variant="decqn", steps=400, overrides=None):
    algo, settings = VARIANTS[variant]
    # DecQN's replay stays prioritised, as by default
    settings = {**settings, "agent.learning_starts": 64}
    values = {
        "env.id": "gymnax:Pendulum-v1",
        "run.steps": steps,
        "env.num_envs": 2,
        "run.num_seeds": 2,
        "runner.eval_every": 200,
        "runner.eval_episodes": 2,
        "runner.log_every": 100,
        "runner.checkpoint_every": 10_000,
        "run.progress": "none",
        "run.tensorboard": False,
        "run.dir": str(run_dir),
    }
    return make_config(algo, {**values, **settings, **(overrides or {})})


@pytest.mark.parametrize("variant", PER_ALGORITHM)
def test_every_algorithm_trains_and_resumes_exactly_on_the_device_runner(tmp_path, variant):
    straight = train(_device_config(tmp_path / "straight", variant))
    assert straight.env_step == 400 and straight.status == "completed"
    learner_steps = np.asarray(straight.state.agent.learner_step)
    assert learner_steps.shape == (2,) and (learner_steps > 0).all()
    # the chunk length is traced, so the program compiles once: one trace of update and
    # of each acting mode inside it (greedy is the evaluation's)
    modes = 2 + (straight.agent.random_steps > 0)
    assert straight.agent.trace_counts == {"update": 1, "act": modes}
    evals = [r for r in records(straight.run_dir) if r["event"] == "eval"]
    assert [(r["env_step"], r["seed"]) for r in evals] == [(200, 0), (200, 1), (400, 0), (400, 1)]
    assert all(np.isfinite(r["eval_return"]) for r in evals)
    # every learner metric of a train record is a finite average (a non-finite one is written
    # as a string such as "nan"): a metric an update did not measure (NaN: TD3's actor loss
    # between actor steps) is left out of its average
    trains = [r for r in records(straight.run_dir) if r["event"] == "train"]
    for r in trains:
        assert all(isinstance(v, str | int) or np.isfinite(v) for v in r.values()), r
        assert not {"nan", "inf", "-inf"} & {v for v in r.values() if isinstance(v, str)}, r
    assert "loss" in trains[-1] or "critic_loss" in trains[-1]  # learner metrics are recorded
    # the two seeds are different runs
    params = leaves(straight.state.agent.params)
    assert not all(np.array_equal(p[0], p[1]) for p in params)
    # stopped between log points and resumed from its checkpoint: the same run bit for bit,
    # records included (the program is reused, not compiled again: chunk lengths are traced)
    first = train(_device_config(tmp_path / "split", variant), stop_after=250)
    assert first.env_step == 250
    resumed = train(_device_config(tmp_path / "split", variant), resume=tmp_path / "split")
    assert resumed.env_step == 400 and resumed.agent is straight.agent
    assert straight.agent.trace_counts == {"update": 1, "act": modes}
    assert same_leaves(straight.state, resumed.state)
    assert records(straight.run_dir) == records(tmp_path / "split")


def test_a_checkpoint_without_metric_counts_resumes_with_finite_averages(tmp_path):
    """A checkpoint written before the stats counted each metric's measurements (no
    "metric_counts" in its manifest, and the sum of TD3's actor loss NaN once a step between
    actor steps was summed) resumes: the run goes on exactly, and every record is finite."""
    straight = train(_device_config(tmp_path / "straight", "td3"))
    cfg = _device_config(tmp_path / "split", "td3")
    first = train(cfg, stop_after=250)  # between records (every 100): the stats are not empty
    root = tmp_path / "split" / "checkpoints"
    path = ckpt.latest_checkpoint(root)
    saved, _, meta = ckpt.load_checkpoint(path, leaves(first.state))
    old = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(first.state), saved)
    stats = old.stats
    assert (stats.metric_counts["actor_loss"] < stats.updates).all()  # some steps did not measure
    assert (stats.metric_counts["critic_loss"] == stats.updates).all()
    nan_sum = jnp.full_like(stats.metric_sums["actor_loss"], jnp.nan)
    sums = {**stats.metric_sums, "actor_loss": nan_sum}
    old = old._replace(stats=stats._replace(metric_sums=sums, metric_counts=None))
    meta = {k: v for k, v in meta.items() if k not in (*ckpt._RESERVED, "metric_counts")}
    shutil.rmtree(path)
    ckpt.save_checkpoint(root, 250, leaves(old), {}, meta)
    last = train(cfg, resume=tmp_path / "split")
    assert same_leaves(straight.state.agent, last.state.agent)
    ours, theirs = records(straight.run_dir), records(last.run_dir)
    after = [i for i, r in enumerate(ours) if r["event"] == "train" and r["env_step"] == 300]
    for i in after:  # the first record after the checkpoint averages the later steps alone
        assert np.isfinite(theirs[i].pop("actor_loss"))
        ours[i].pop("actor_loss")
    assert len(after) == 2 and ours == theirs


def test_a_full_disk_on_metrics_stops_a_device_run_with_a_checkpoint_and_loses_no_record(tmp_path):
    """The host runner's guarantees hold on the device runner: they are the run session's."""
    straight = train(_device_config(tmp_path / "straight"))
    run = tmp_path / "run"
    trainer = DeviceTrainer(_device_config(run))
    trainer.logger._metrics = _FailingFile(trainer.logger._metrics, ok=5)
    with pytest.raises(Exception, match="No space left on device") as err:
        trainer.run()
    assert "keeps the records not written" in str(err.value)
    resumed = train(_device_config(run), resume=run)
    assert resumed.env_step == 400
    assert records(run) == records(straight.run_dir)
    assert same_leaves(straight.state, resumed.state)


def test_resuming_a_finished_device_run_writes_nothing_and_returns_its_agent(tmp_path, capsys):
    run = tmp_path / "run"
    done = train(_device_config(run, steps=200))

    def files():
        return {
            p: (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(run.rglob("*"))
            if p.is_file() and p.name != ".lock"
        }

    before = files()
    again = train(_device_config(run, steps=200), resume=run)
    assert "already used its budget of 200 env steps" in capsys.readouterr().err
    assert again.env_step == 200 and again.last_eval_return == done.last_eval_return
    assert same_leaves(done.state, again.state)
    assert files() == before  # no file added, changed or written again


def test_prioritised_device_replay_moves_priorities_to_the_td_errors(tmp_path):
    cfg = _device_config(tmp_path / "run", "decqn")  # DecQN's default: prioritised
    trainer = DeviceTrainer(cfg)
    update = trainer.agent.update_fn

    def marked(state, batch):
        # each window's |TD| made a function of the window itself: 1 + |its first obs[0]|
        new_state, metrics, _ = update(state, batch)
        return new_state, metrics, 1.0 + jnp.abs(batch.obs[:, 0])

    trainer.agent.update_fn = marked  # before the programs are traced, at their first call
    trainer.run()
    tree = trainer.state.replay.sum_tree_state
    first = 2**tree.tree_depth - 1  # the leaves, priority^alpha per window, follow the inner nodes
    leaves_ = np.asarray(tree.nodes)[:, first : first + tree.capacity]
    obs = np.asarray(trainer.state.replay.experience["obs"])  # [seeds, envs, T, 3]
    # window i starts at step i % T of environment i // T
    assert obs.shape[1] * obs.shape[2] == leaves_.shape[1]
    alpha = cfg.replay.priority_alpha
    for seed_leaves, seed_obs in zip(leaves_, obs, strict=True):
        own = (1.0 + np.abs(seed_obs[..., 0].reshape(-1)) + PRIORITY_EPS) ** alpha
        stored = seed_leaves > 0
        # a sampled window's priority is its own |TD| (one never sampled keeps the largest
        # priority seen when it was stored)
        assert (stored & np.isclose(seed_leaves, own, rtol=1e-5)).sum() > stored.sum() // 2


def test_a_device_run_loads_as_a_policy_and_evaluates(tmp_path):
    result = train(_device_config(tmp_path / "run", "decqn"))
    policy = load_agent(result.run_dir)  # the first seed's agent
    policy.reset()
    action = policy(np.zeros(3, np.float32))
    assert action.shape == (1,) and -2.0 <= action[0] <= 2.0
    report = evaluate(result.run_dir, episodes=3)  # every seed, side by side
    assert len(report["returns"]) == 6 and len(report["per_seed_mean"]) == 2 and report["finite"]


def test_evaluations_larger_than_free_memory_are_refused_before_they_run(tmp_path, monkeypatch):
    """Evaluation environments run side by side: a run's (`runner.eval_episodes`) and a saved
    run's (`eval --episodes`) count against free memory as the run's state does. Pendulum's
    state here is well under 2 MB, 100,000 episodes for each of two seeds well over."""
    run_dir = train(_device_config(tmp_path / "run")).run_dir
    monkeypatch.setattr(device, "available_memory_bytes", lambda: 2 * 10**6)
    assert evaluate(run_dir, episodes=3)["finite"]
    with pytest.raises(ConfigError, match=r"100000 episodes side by side per seed need 0\.\d+ GiB"):
        evaluate(run_dir, episodes=100_000)
    big = _device_config(tmp_path / "big", overrides={"runner.eval_episodes": 100_000})
    with pytest.raises(ConfigError, match=r"evaluations \(100000 episodes side by side per seed"):
        train(big)
    assert not (tmp_path / "big" / "metrics.jsonl").exists()


def test_device_runner_errors_are_one_line(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"run\.num_seeds"):
        train(make_config("decqn", {"run.num_seeds": 2, "run.dir": str(tmp_path / "b")}))
    with pytest.raises(ConfigError, match="Box"):
        cfg = make_config("sac", {"env.id": "gymnax:CartPole-v1", "run.dir": str(tmp_path / "c")})
        train(cfg)
    with pytest.raises(ConfigError, match="a multi-agent environment; train a multi-agent"):
        cfg = make_config("decqn", {"env.id": "factorl:two-step-game", "run.dir": str(tmp_path)})
        train(cfg)
    with pytest.raises(ConfigError, match=r"runner\.save_replay false is for host environments"):
        train(_device_config(tmp_path, overrides={"runner.save_replay": False}))
    # more steps than the device's int32 indices reach; a state larger than the free memory
    with pytest.raises(ConfigError, match=r"holds at most 2,147,483,647 steps"):
        train(_device_config(tmp_path, overrides={"replay.capacity": 10**15}))
    monkeypatch.setattr(device, "available_memory_bytes", lambda: 10**6)
    with pytest.raises(ConfigError, match=r"need 0\.\d GiB but 0\.0 GiB of cpu memory is free"):
        train(_device_config(tmp_path, overrides={"replay.capacity": 100_000}))
    assert not (tmp_path / "metrics.jsonl").exists()


@pytest.mark.slow
def test_decqn_learns_pendulum_on_the_device_runner(tmp_path):
    # a random or broken policy scores about -1200 to -1500 on Pendulum; two seeds of DecQN,
    # four environments each, reach about -200 within 10k env steps
    agent = {
        "replay.prioritized": False,
        "agent.width": 128,
        "agent.learning_rate": 1e-3,
        "agent.update_every": 2,
        "agent.learning_starts": 1000,
        "replay.capacity": 100_000,
    }
    loop_settings = {
        "env.id": "gymnax:Pendulum-v1",
        "run.steps": 10_000,
        "env.num_envs": 4,
        "run.num_seeds": 2,
        "runner.eval_every": 10_000,
        "runner.eval_episodes": 10,
        "runner.log_every": 1000,
        "run.progress": "none",
        "run.tensorboard": False,
        "run.dir": str(tmp_path / "run"),
    }
    result = train(make_config("decqn", {**loop_settings, **agent}))
    evals = [r["eval_return"] for r in records(result.run_dir) if r["event"] == "eval"]
    assert len(evals) == 2 and min(evals) > -450, evals


def test_the_command_line_trains_resumes_and_evaluates_a_device_run(tmp_path, capsys):
    import json

    from factorl.cli import main

    run = tmp_path / "run"
    tiny = ["--agent.width", "32", "--replay.batch-size", "32", "--agent.learning-starts", "64",
            "--env.num-envs", "2", "--run.num-seeds", "2", "--runner.eval-every", "200",
            "--runner.eval-episodes", "2", "--runner.log-every", "100", "--run.progress", "lines",
            "--run.no-tensorboard"]  # fmt: skip
    argv = ["train", "decqn", "--env.id", "gymnax:Pendulum-v1", "--run.dir", str(run), *tiny]
    assert main([*argv, "--run.steps", "200"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out.strip().splitlines()[-1])["env_step"] == 200
    assert "2 seeds x 2 environments, device runner" in err
    assert main(["train", "--resume", str(run), "--run.steps", "400"]) == 0
    out, _ = capsys.readouterr()
    assert json.loads(out.strip().splitlines()[-1])["env_step"] == 400
    assert main(["eval", str(run), "--episodes", "2"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(report["per_seed_mean"]) == 2 and report["finite"]


@pytest.mark.parametrize("wins", ["always", "never", "none"])
def test_device_runner_reports_win_rates_where_the_environment_has_wins(
    tmp_path, monkeypatch, wins
):
    """Win rates (training episodes, greedy evaluations, `evaluate`) appear exactly where the
    environment reports wins. A stand-in for a JaxMARL env whose every episode is won, or never,
    pins the counting: once per finished episode, so the rate is 1 or 0 exactly."""
    import jax.numpy as jnp
    from test_marl_envs import _FakeMARL

    from factorl.envs.marl import JaxMARLEnv

    won = {
        "always": lambda state: jnp.ones((), bool),
        "never": lambda state: jnp.zeros((), bool),
        "none": None,
    }[wins]

    def fake_env(env_id):
        return JaxMARLEnv(
            _FakeMARL(),
            name=env_id,
            team_reward="sum",
            terminal=lambda state: state.won,
            max_episode_steps=_FakeMARL.max_steps + 1,
            won=won,
        )

    monkeypatch.setattr(device, "make_marl_env", fake_env)
    cfg = make_config(
        "vdn",
        {
            "env.id": f"jaxmarl:fake-{wins}",
            "env.num_envs": 2,
            "run.steps": 200,
            "run.dir": str(tmp_path / "run"),
            "run.progress": "none",
            "run.tensorboard": False,
            "runner.eval_every": 100,
            "runner.eval_episodes": 3,
            "runner.log_every": 100,
            "replay.capacity": 400,
            "replay.batch_size": 4,
            "agent.sequence_length": 4,
            "agent.hidden_size": 8,
            "agent.learning_starts": 40,
            "agent.update_every": 8,
        },
    )
    result = train(cfg)
    recs = records(result.run_dir)
    evals = [r for r in recs if r["event"] == "eval"]
    trains = [r for r in recs if r["event"] == "train"]
    assert len(evals) == 2 and all(r["episodes"] > 0 for r in trains)
    summary = evaluate(result.run_dir, episodes=5)
    if wins == "none":
        assert not any("win_rate" in k for r in recs for k in r)
        assert "win_rate" not in summary
        return
    rate = 1.0 if wins == "always" else 0.0
    assert [r["eval_win_rate"] for r in evals] == [rate, rate]
    assert [r["episode_win_rate"] for r in trains] == [rate] * len(trains)
    assert summary["win_rate"] == rate and summary["per_seed_win_rate"] == [rate]
