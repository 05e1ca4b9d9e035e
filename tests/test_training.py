"""The training loop: its records, resume without replay, loading agents, and stopping safely
(determinism, exact resume and compile-once for every algorithm: test_contract.py)."""

import json
import math

import jax
import numpy as np
import pytest
from conftest import tiny_config

from factorl.cli import main
from factorl.core.config import ConfigError
from factorl.io import checkpoint as ckpt
from factorl.io.logging import read_metrics
from factorl.runners.host import HostTrainer
from factorl.train import TrainingStopped, evaluate, load_agent, make_config, train


def test_resume_without_replay_is_allowed(tmp_path):
    first = train(
        tiny_config(tmp_path / "r", steps=400, overrides={"runner.save_replay": False}),
        stop_after=200,
    )
    assert first.env_step == 200
    resumed = train(
        tiny_config(tmp_path / "r", steps=400, overrides={"runner.save_replay": False}),
        resume=first.run_dir,
    )
    assert resumed.env_step == 400


def test_run_folder_layout_and_records(tiny):
    result = train(tiny(steps=600, overrides={"run.tensorboard": True}))
    run = result.run_dir
    assert (run / "config.json").is_file()
    assert any((run / "tb").iterdir())
    assert ckpt.latest_checkpoint(run / "checkpoints").name == "step_0000000600"
    records = read_metrics(run)
    kinds = {r["event"] for r in records}
    assert kinds == {"train", "eval", "episode"}
    train_records = [r for r in records if r["event"] == "train"]
    assert [r["env_step"] for r in train_records] == [100, 200, 300, 400, 500, 600]
    assert {"loss", "learner_step", "wall_time", "episode_return"} <= set(train_records[-1])
    evals = [r for r in records if r["event"] == "eval"]
    assert [r["env_step"] for r in evals] == [300, 600]
    assert all(np.isfinite(r["eval_return"]) for r in evals)


def test_existing_run_is_not_overwritten(tiny):
    train(tiny(steps=200))
    with pytest.raises(ConfigError, match="--resume"):
        train(tiny(steps=200))


def test_load_agent_and_evaluate(tiny):
    result = train(tiny(steps=300))
    policy = load_agent(result.run_dir)
    action = policy(np.zeros(3, np.float32))
    assert action.shape == (1,) and action[0] in (-2.0, 0.0, 2.0)
    out = evaluate(result.run_dir, episodes=2)
    assert len(out["returns"]) == 2 and out["finite"]


def test_nan_observation_stops_with_a_checkpoint(tmp_path):
    cfg = tiny_config(tmp_path / "nan", overrides={"env.id": "gym:FactorlTestNan-v0"})
    with pytest.raises(TrainingStopped, match="env step 250"):
        train(cfg)
    path = ckpt.latest_checkpoint(tmp_path / "nan" / "checkpoints")
    assert path.name == "step_0000000249"
    assert ckpt.read_meta(path)["env_step"] == 249


def test_a_nan_in_an_evaluation_stops_training_and_eval_reports_it(tmp_path, capsys):
    """The evaluation environment's 250th step is NaN: in the second episode of the first
    evaluation (two 200-step episodes), while the training environment is at step 100."""
    overrides = {
        "env.id": "gym:FactorlTestNan-v0",
        "runner.eval_every": 100,
        "runner.eval_episodes": 2,
        "runner.checkpoint_every": 50,
    }
    cfg = tiny_config(tmp_path / "run", steps=300, overrides=overrides)
    with pytest.raises(TrainingStopped, match="evaluation episode at env step 100 has a non-fin"):
        train(cfg)
    evals = [r for r in read_metrics(tmp_path / "run") if r.get("event") == "eval"]
    assert evals == []  # nothing recorded of it
    latest = ckpt.latest_checkpoint(tmp_path / "run" / "checkpoints")
    assert latest.name == "step_0000000050"
    with pytest.raises(TrainingStopped, match=f"stopped, the latest checkpoint is {latest}$"):
        train(cfg, resume=tmp_path / "run")  # the same evaluation, the same NaN
    report = evaluate(tmp_path / "run", episodes=2)
    assert not report["finite"] and math.isnan(report["returns"][1])
    assert main(["eval", str(tmp_path / "run"), "--episodes", "2"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    strict = json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in {line}"))
    assert strict["returns"][1] == "nan" and strict["finite"] is False


def test_nan_loss_stops_on_the_last_good_state(tmp_path):
    cfg = make_config(
        "decqn",
        {
            "env.id": "gym:Pendulum-v1",
            "run.steps": 2000,
            "run.progress": "none",
            "run.tensorboard": False,
            "run.dir": str(tmp_path / "boom"),
            "agent.width": 32,
            "replay.batch_size": 32,
            "agent.learning_starts": 64,
            "agent.update_every": 1,
            "agent.learning_rate": 1e30,
            "agent.max_grad_norm": 1e30,
        },
    )
    with pytest.raises(TrainingStopped, match="non-finite loss") as err:
        train(cfg)
    assert "learner step" in str(err.value)
    path = ckpt.latest_checkpoint(tmp_path / "boom" / "checkpoints")
    policy = load_agent(tmp_path / "boom", path)
    leaves = jax.tree_util.tree_leaves(policy.state.params)
    assert all(np.all(np.isfinite(np.asarray(x))) for x in leaves)


def test_crash_leaves_an_emergency_checkpoint_that_resumes(tmp_path):
    # (one evaluation episode, at the end: the evaluation's environment would crash too)
    crash = {"env.id": "gym:FactorlTestCrash-v0", "runner.eval_every": 400}
    cfg = tiny_config(tmp_path / "crash", steps=400, overrides=crash)
    with pytest.raises(RuntimeError, match="simulator exploded"):
        train(cfg)
    path = ckpt.latest_checkpoint(tmp_path / "crash" / "checkpoints")
    assert path is not None and ckpt.read_meta(path)["env_step"] == 249
    # a new process's environment counts its steps from 0 again: it crashes past the budget
    resumed = train(cfg, resume=tmp_path / "crash")
    assert resumed.status == "completed" and resumed.env_step == 400


def test_ctrl_c_stops_cleanly_with_a_checkpoint(tmp_path):
    cfg = tiny_config(tmp_path / "int", steps=600, overrides={"env.id": "gym:FactorlTestSigint-v0"})
    result = train(cfg)
    assert result.status == "interrupted" and result.env_step == 250
    assert ckpt.latest_checkpoint(tmp_path / "int" / "checkpoints").name == "step_0000000250"


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"run.steps": -5}, r"^run\.steps must be >= 1; got -5$"),
        ({"run.steps": "abc"}, r"^run\.steps must be an integer, got 'abc'$"),
        ({"agent.bins": 0}, r"^agent\.bins must be >= 2; got 0$"),
        ({"agent.epsilon": 1.5}, "agent.epsilon"),
        ({"agent.epsilon_mode": "sometimes"}, "one of 'dimension'"),
        ({"run.progress": "fancy"}, "run.progress"),
        ({"agent.no_such_option": 1}, r"^unknown setting 'agent\.no_such_option' for decqn;"),
        # a key without its section, or mistyped, is named with the keys it could have meant
        ({"steps": 10}, r"unknown setting 'steps' for decqn; did you mean run\.steps\?"),
        ({"run.stesp": 10}, r"did you mean run\.steps"),
        ({"train.env": "gym:Pendulum-v1"}, "unknown setting 'train.env'"),
    ],
)
def test_bad_config_values_are_clear_one_line_errors(overrides, match):
    with pytest.raises(ConfigError, match=match) as err:
        make_config("decqn", overrides)
    assert "\n" not in str(err.value)


def test_unknown_algorithm_and_environment(tmp_path):
    with pytest.raises(ConfigError, match=r"available: (\w+, )*decqn"):
        make_config("dqn9000")
    cfg = tiny_config(tmp_path / "x", overrides={"env.id": "dmc:cheetah-runn"})
    with pytest.raises(ConfigError, match="cheetah-run"):
        train(cfg)


def test_every_algorithm_has_a_valid_quickstart_preset():
    from factorl.agents import ALGORITHMS

    for algo, agent_class in ALGORITHMS.items():
        cfg = make_config(algo, preset="quickstart")
        if getattr(agent_class, "MULTI_AGENT", False):  # JaxMARL's simple spread, minutes
            assert cfg.env.id == "jaxmarl:MPE_simple_spread_v3" and cfg.run.steps <= 2_000_000
        else:
            assert cfg.env.id == "gym:Pendulum-v1" and cfg.run.steps <= 20_000, algo
        # explicit overrides win over the preset
        assert make_config(algo, {"run.steps": 7}, preset="quickstart").run.steps == 7


def test_learner_metrics_that_were_not_measured_are_left_out_of_the_average(tiny):
    # NaN marks a metric an update did not compute (TD3's actor loss on critic-only steps)
    trainer = HostTrainer(tiny(steps=100))
    trainer.loop.pending_metrics = [
        {"loss": 1.0, "actor_loss": float("nan")},
        {"loss": 3.0, "actor_loss": 5.0},
    ]
    trainer.record_train()
    trainer.loop.pending_metrics = [{"loss": 2.0, "actor_loss": float("nan")}]
    trainer.record_train()
    trainer.close()
    first, second = [r for r in read_metrics(trainer.run_dir) if r["event"] == "train"]
    assert first["loss"] == 2.0 and first["actor_loss"] == 5.0
    assert second["loss"] == 2.0 and "actor_loss" not in second
