"""The learning benchmark's summary and report scripts, on data the test makes itself."""

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_DECQN, tiny_config

from factorl.io import checkpoint as ckpt
from factorl.io.logging import read_metrics
from factorl.train import make_config, train

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _fake_run(algo, env, seed, finals, wall=3600.0):
    """Evaluations every 1000 steps, the last one reached after `wall` seconds."""
    curve = [
        {"env_step": 1000 * (i + 1), "eval_return": v, "eval_returns": [v],
         "wall_time": wall * (i + 1) / len(finals)}
        for i, v in enumerate(finals)
    ]  # fmt: skip
    return {
        "benchmark": "learning", "algo": algo, "env": env, "seed": seed,
        "steps": 1000 * len(finals),
        "final_env_step": 1000 * len(finals), "wall_time_s": wall, "curve": curve,
        "machine": {"cpu_count": 2},
    }  # fmt: skip


def test_t_interval_matches_hand_computation():
    report = _load("report")
    mean, half = report.t_interval([1.0, 2.0, 3.0])
    # std (ddof 1) = 1, t_{0.975, 2} = 4.302653, n = 3
    assert mean == 2.0
    assert half == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)
    assert math.isnan(report.t_interval([5.0])[1])


def test_report_table_and_plots(tmp_path):
    report = _load("report")
    inp = tmp_path / "in"
    inp.mkdir()
    for seed, final in enumerate([100.0, 200.0, 300.0]):
        data = _fake_run("decqn", "dmc:walker-walk", seed, [10.0, final])
        data["source_revision"] = "c" * 40 if seed == 0 else None  # the writing process's
        (inp / f"r{seed}.json").write_text(json.dumps(data))
    # a longer run of the same group: compared at the common 2000 steps, where it took 0.5 h
    longer = _fake_run("decqn", "dmc:walker-walk", 3, [10.0, 200.0, 999.0, 999.0], wall=3600)
    longer["segments"] = [
        {"from_env_step": 0, "source_revision": "a" * 40},
        {"from_env_step": 1500, "source_revision": "a" * 40},
        {"from_env_step": 2500, "source_revision": "b" * 40 + "+dirty"},
    ]
    (inp / "r3.json").write_text(json.dumps(longer))
    assert report.main(["--in", str(inp), "--out", str(tmp_path / "out")]) == 0
    text = (tmp_path / "out" / "learning.md").read_text()
    assert text.startswith("# Learning results\n") and f"--in {inp} --out" in text
    assert "[`../in/`](../in)" in text  # the run files, relative to the table
    row = next(line for line in text.splitlines() if "decqn" in line)
    values = [100.0, 200.0, 300.0, 200.0]
    half = 3.182446 * np.std(values, ddof=1) / 2  # t_{0.975, 3}, n = 4
    assert f"200.0 ± {half:.1f}" in row and "| 2,000 |" in row
    assert "900.3" in row  # the reference expert level for walker-walk
    # the official code's figure (100k steps, which these 2k-step runs never reached)
    assert "| 372.5 at 100k (-) |" in row
    # wall time to 2000 steps: 1 h for three runs, 0.5 h for the longer one -> 0.875 h mean;
    # 200 return over 0.875 h on 2 CPUs
    assert "| 0.88 |" in row and row.rstrip(" |").endswith(f"{200 / (0.875 * 2):.1f}")
    every_run = text.split("## Every run")[1]
    assert "| dmc:walker-walk | decqn | 3 | 4,000 | 999.0 |" in every_run
    # a run resumed under another commit names both, in order; repeats of one commit collapse
    assert "| 4,000 | 999.0 | 1.00 | aaaaaaaaaa → bbbbbbbbbb+dirty |" in every_run
    assert "| 0 | 2,000 | 100.0 | 1.00 | cccccccccc |" in every_run
    assert "| 1 | 2,000 | 200.0 | 1.00 | - |" in every_run
    png = tmp_path / "out" / "curves-dmc-walker-walk.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_curve_band_is_cut_to_the_returns_a_task_can_have():
    report = _load("report")
    # three seeds far apart: the t band (half-width 4.30 * 400 / sqrt 3, about 994) spans
    # [-594, 1394] at the second evaluation
    group = [_fake_run("cqn", "dmc:cheetah-run", s, [10.0, v]) for s, v in enumerate([0, 400, 800])]
    steps, mean, low, high = report.curve_band(group, "dmc:cheetah-run")
    assert steps == [1000, 2000] and mean[1] == pytest.approx(400.0)
    assert low[1] == 0.0 and high[1] == 1000.0  # Control Suite returns lie in [0, 1000]
    assert low[0] == high[0] == 10.0  # no spread, no band
    gym = [_fake_run("cqn", "gym:Pendulum-v1", s, [10.0, v]) for s, v in enumerate([0, 400, 800])]
    _, _, low, high = report.curve_band(gym, "gym:Pendulum-v1")
    half = 4.302653 * 400 / math.sqrt(3)  # no known range: the band is left as it is
    assert low[1] == pytest.approx(400 - half, rel=1e-5)
    assert high[1] == pytest.approx(400 + half, rel=1e-5)


def test_the_official_figure_sits_beside_our_mean_at_its_step(tmp_path):
    report = _load("report")
    runs = []
    for seed, at_50k in enumerate([300.0, 400.0, 500.0]):
        run = _fake_run("cqn", "dmc:walker-walk", seed, [0.0] * 49 + [at_50k] + [600.0] * 50)
        runs.append(run)
    runs.append(_fake_run("td3", "dmc:walker-walk", 0, [1.0]))  # no official figure for td3
    rows = report.table(runs).splitlines()
    cqn = next(line for line in rows if "| cqn |" in line)
    assert "| 379.5 at 50k (400.0) |" in cqn  # the note's CQN point, our mean at 50k
    assert "| 900.3 | - |" in next(line for line in rows if "| td3 |" in line)
    report.plot(runs, tmp_path)  # the cross is drawn without error
    assert (tmp_path / "curves-dmc-walker-walk.png").exists()


def test_learning_summary_of_a_real_run(tmp_path):
    learning = _load("learning")
    result = train(tiny_config(tmp_path / "run", steps=300))
    out = tmp_path / "results"
    assert learning.main(["--from-run", str(result.run_dir), "--out-dir", str(out)]) == 0
    data = json.loads((out / "decqn__gym-Pendulum-v1__s0.json").read_text())
    assert [p["env_step"] for p in data["curve"]] == [300]
    assert data["versions"]["jax"] and data["machine"]["cpu_count"]
    assert data["config"]["algo"] == "decqn"
    assert data["source_revision"] == learning.SOURCE_REVISION  # None outside a git checkout


def test_learning_summary_of_a_run_with_seeds_side_by_side(tmp_path):
    learning = _load("learning")
    settings = {
        "env.id": "factorl:two-step-game",
        "env.num_envs": 2,
        "run.num_seeds": 2,
        "run.steps": 80,
        "run.dir": str(tmp_path / "run"),
        "run.progress": "none",
        "run.tensorboard": False,
        "runner.eval_every": 40,
        "runner.eval_episodes": 2,
        "runner.log_every": 40,
        "replay.capacity": 80,
        "replay.batch_size": 4,
        "agent.sequence_length": 2,
        "agent.hidden_size": 4,
        "agent.learning_starts": 8,
    }
    result = train(make_config("vdn", settings))
    out = tmp_path / "results"
    assert learning.main(["--from-run", str(result.run_dir), "--out-dir", str(out)]) == 0
    evals = [r for r in read_metrics(result.run_dir) if r["event"] == "eval"]
    for seed in (0, 1):
        data = json.loads((out / f"vdn__factorl-two-step-game__s{seed}.json").read_text())
        assert data["seed"] == seed and data["seeds_side_by_side"] == 2
        mine = [r["eval_return"] for r in evals if r["seed"] == seed]
        assert [p["eval_return"] for p in data["curve"]] == mine and len(mine) == 2
    with pytest.raises(ValueError, match="trained 2 seeds: name one"):
        learning.summarise_run(result.run_dir, "cmd")


def test_a_resumed_sweep_run_records_the_commit_of_each_session(tmp_path, monkeypatch):
    learning = _load("learning")
    real_train = learning.train
    argv = ["--algos", "decqn", "--envs", "gym:Pendulum-v1", "--seeds", "0", "--steps", "300"]
    argv += ["--eval-every", "150", "--eval-episodes", "1"]
    argv += ["--work-dir", str(tmp_path / "runs"), "--out-dir", str(tmp_path / "out")]
    for key, value in TINY_DECQN.items():
        argv += ["--set", f"{key}={value}"]

    # session 1 stops after 150 steps (as Ctrl-C would); session 2 runs other code and flags
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    monkeypatch.setattr(learning, "SOURCE_REVISION", "1" * 40)
    monkeypatch.setattr(
        learning, "train", lambda cfg, resume: real_train(cfg, resume=resume, stop_after=150)
    )
    assert learning.main(argv) == 130
    monkeypatch.setattr(learning, "SOURCE_REVISION", "2" * 40)
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")
    monkeypatch.setattr(learning, "train", real_train)
    assert learning.main(argv) == 0

    data = json.loads((tmp_path / "out" / "decqn__gym-Pendulum-v1__s0.json").read_text())
    assert [p["env_step"] for p in data["curve"]] == [150, 300]
    assert [(s["from_env_step"], s["source_revision"]) for s in data["segments"]] == [
        (0, "1" * 40),
        (150, "2" * 40),
    ]
    # each segment records the XLA flags of the process that trained it
    assert [s["xla_flags"] for s in data["segments"]] == [
        None,
        "--xla_cpu_multi_thread_eigen=false",
    ]
    assert data["source_revision"] == "2" * 40
    assert learning.main(argv) == 0  # a finished run is skipped, not trained again
    assert len(json.loads((tmp_path / "runs" / "decqn__gym-Pendulum-v1__s0" / "segments.json")
               .read_text())) == 2  # fmt: skip


def test_a_corrupt_checkpoint_ends_the_sweep_with_one_line_naming_the_run(tmp_path, capsys):
    learning = _load("learning")
    argv = ["--algos", "decqn", "--envs", "gym:Pendulum-v1", "--seeds", "0", "--steps", "300"]
    argv += ["--work-dir", str(tmp_path / "runs"), "--out-dir", str(tmp_path / "out")]
    run_dir = tmp_path / "runs" / learning.run_name("decqn", "gym:Pendulum-v1", 0)
    bad = run_dir / learning.CHECKPOINT_DIR / "step_0000000150"
    bad.mkdir(parents=True)
    (bad / ckpt.META_FILE).write_text("{not json")
    assert learning.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: decqn__gym-Pendulum-v1__s0: checkpoint ")
    assert "corrupt" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # no results file for a run that did not finish


def test_a_mistyped_override_stops_the_sweep_before_it_trains(tmp_path, capsys):
    learning = _load("learning")
    argv = ["--algos", "decqn,cqn", "--envs", "gym:Pendulum-v1", "--seeds", "0", "--steps", "300"]
    argv += ["--work-dir", str(tmp_path / "runs"), "--out-dir", str(tmp_path / "out")]
    assert learning.main([*argv, "--set", "agent.level=2"]) == 2
    err = capsys.readouterr().err
    assert "no selected algorithm (decqn, cqn) has setting 'agent.level'" in err
    assert "did you mean agent.levels?" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "out").exists()
    # a setting the sweep takes from its own flags is refused, not silently overridden
    assert learning.main([*argv, "--set", "run.seed=3"]) == 2
    assert "--set run.seed: the sweep sets it" in capsys.readouterr().err
    # a value out of range is caught by the config, also before anything trains
    assert learning.main([*argv, "--set", "agent.width=0"]) == 2
    assert "agent.width must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
