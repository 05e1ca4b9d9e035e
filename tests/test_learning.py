"""Learning tests: each algorithm must really learn a small task with a fixed seed.

Pendulum-v1 with 3 bins (torques -2, 0, 2): the untrained greedy policy scores about -1250 and a
policy that swings up and balances scores about -150 to -250. A broken target, loss or
factorisation stays far below the thresholds used here.
"""

import numpy as np
import pytest

from factorl.io.logging import read_metrics
from factorl.train import make_config, train


@pytest.mark.slow
def test_decqn_learns_pendulum(tmp_path):
    cfg = make_config(
        "decqn",
        {
            "run.steps": 10_000,
            "runner.eval_every": 5_000,
            "runner.eval_episodes": 10,
            "run.progress": "none",
            "run.tensorboard": False,
            "run.dir": str(tmp_path / "run"),
        },
        preset="quickstart",
    )
    result = train(cfg)
    evals = [r for r in read_metrics(result.run_dir) if r["event"] == "eval"]
    assert [r["env_step"] for r in evals] == [5_000, 10_000]
    final = evals[-1]["eval_return"]
    # every one of the 10 evaluation episodes must be a swing-up, not just the mean
    assert final > -400, f"DecQN did not learn Pendulum: eval return {final:.1f}"
    assert np.min(evals[-1]["eval_returns"]) > -700


@pytest.mark.slow
def test_cqn_learns_pendulum(tmp_path):
    """CQN (3 levels x 5 bins, 125 torques) with its quickstart preset, 10k steps."""
    cfg = make_config(
        "cqn",
        {
            "run.steps": 10_000,
            "runner.eval_every": 5_000,
            "runner.eval_episodes": 10,
            "run.progress": "none",
            "run.tensorboard": False,
            "run.dir": str(tmp_path / "run"),
        },
        preset="quickstart",
    )
    result = train(cfg)
    evals = [r for r in read_metrics(result.run_dir) if r["event"] == "eval"]
    final = evals[-1]["eval_return"]
    assert final > -400, f"CQN did not learn Pendulum: eval return {final:.1f}"
    assert np.min(evals[-1]["eval_returns"]) > -700


@pytest.mark.slow
def test_cqn_as_learns_pendulum(tmp_path):
    """CQN-AS (4-step sequences, re-planning) with its quickstart settings at batch 64, 16k steps.

    The batch is half the quickstart's, which makes each learner step cheaper. With
    re-planning, seeds 0, 1 and 2 started to learn near 10k, 12k and 14k env steps at batch 64
    (docs/cqn_as.md; files in results/variants/cqn_as-pendulum-batch64), near 10k, 16k and 12k at
    batch 128. When is chaotic: at batch 128, seed 1 had started near 10k before a change that
    only reordered float operations (the GRU written out step by step). The test uses seed 0, the
    earliest, so that a few thousand steps of such drift still pass. At 16k steps the greedy
    return still varies much from episode to episode, so one evaluation of 10 episodes decides
    too little: the test takes the mean of the last two evaluations, at 14k and 16k steps (20
    episodes). Re-planning is used because temporal ensembling was less steady here."""
    cfg = make_config(
        "cqn_as",
        {
            "run.seed": 0,
            "run.steps": 16_000,
            "runner.eval_every": 2_000,
            "runner.eval_episodes": 10,
            "run.progress": "none",
            "run.tensorboard": False,
            "run.dir": str(tmp_path / "run"),
            "agent.execution": "replan",
            "replay.batch_size": 64,
        },
        preset="quickstart",
    )
    result = train(cfg)
    evals = [r for r in read_metrics(result.run_dir) if r["event"] == "eval"]
    assert [r["env_step"] for r in evals[-2:]] == [14_000, 16_000]
    last_two = np.mean([r["eval_return"] for r in evals[-2:]])
    assert last_two > -400, f"CQN-AS did not learn: {last_two:.1f} over the last two evaluations"
