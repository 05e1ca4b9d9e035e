"""The learning results' summary (factorl sweep), bench/report.py and `factorl report`
(factorl/report.py), on data the tests make themselves."""

import importlib.util
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_DECQN, tiny_config

from factorl import report as report_lib
from factorl import sweep
from factorl.io import checkpoint as ckpt
from factorl.io import system
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


def test_report_gives_win_rates_where_the_evaluations_report_them(tmp_path):
    report = _load("report")
    inp = tmp_path / "in"
    inp.mkdir()
    for seed, rate in enumerate([0.5, 0.75, 1.0]):
        data = _fake_run("vdn", "jaxmarl:smax-3m", seed, [0.5, 1.5])
        for point, won in zip(data["curve"], [0.0, rate], strict=True):
            point["eval_win_rate"] = won
        (inp / f"smax{seed}.json").write_text(json.dumps(data))
    (inp / "dmc.json").write_text(json.dumps(_fake_run("decqn", "dmc:walker-walk", 0, [1.0])))
    assert report.main(["--in", str(inp), "--out", str(tmp_path / "out")]) == 0
    wins = (tmp_path / "out" / "learning.md").read_text().split("## Win rates")[1]
    half = 4.302653 * 0.25 / math.sqrt(3)  # std of 0.5, 0.75, 1.0 is 0.25
    row = f"| jaxmarl:smax-3m | vdn | 3 | 2,000 | 0.750 ± {half:.3f} | 0.500, 0.750, 1.000 |"
    assert row in wins.split("## Every run")[0]
    # returns of a few units are given to 3 decimals, in both tables
    assert (
        "| jaxmarl:smax-3m | vdn | 3 | 2,000 | 1.500 ± 0.000 |"
        in (tmp_path / "out" / "learning.md").read_text()
    )
    assert "| jaxmarl:smax-3m | vdn | 0 | 2,000 | 1.500 |" in wins
    assert "walker" not in wins.split("## Every run")[0]  # no wins reported there
    png = tmp_path / "out" / "winrate-jaxmarl-smax-3m.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "out" / "winrate-dmc-walker-walk.png").exists()


def _runs(*fake_runs):
    return [report_lib.run_from_result(run, "test") for run in fake_runs]


def test_the_curve_band_is_cut_to_the_returns_a_task_can_have():
    # three seeds far apart: the t band (half-width 4.30 * 400 / sqrt 3, about 994) spans
    # [-594, 1394] at the second evaluation
    group = _runs(*(_fake_run("cqn", "dmc:cheetah-run", s, [10.0, v])
                    for s, v in enumerate([0, 400, 800])))  # fmt: skip
    steps, mean, low, high = report_lib.curve_band(group, "dmc:cheetah-run")
    assert steps == [1000, 2000] and mean[1] == pytest.approx(400.0)
    assert low[1] == 0.0 and high[1] == 1000.0  # Control Suite returns lie in [0, 1000]
    assert low[0] == high[0] == 10.0  # no spread, no band
    gym = _runs(*(_fake_run("cqn", "gym:Pendulum-v1", s, [10.0, v])
                  for s, v in enumerate([0, 400, 800])))  # fmt: skip
    _, _, low, high = report_lib.curve_band(gym, "gym:Pendulum-v1")
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
    result = train(tiny_config(tmp_path / "run", steps=300))
    out = tmp_path / "results"
    assert sweep.cmd_sweep(["--from-run", str(result.run_dir), "--out-dir", str(out)]) == 0
    data = json.loads((out / "decqn__gym-Pendulum-v1__s0.json").read_text())
    assert [p["env_step"] for p in data["curve"]] == [300]
    assert data["versions"]["jax"] and data["machine"]["cpu_count"]
    assert data["config"]["algo"] == "decqn"
    assert data["source_revision"] == sweep.SOURCE_REVISION  # None outside a git checkout
    # `factorl train` records its process as a sweep's trial does (one segment, from the start)
    (segment,) = data["segments"]
    assert segment["from_env_step"] == 0 and "from_offline_step" not in segment
    assert segment["source_revision"] == system.factorl_revision()
    assert segment["cpu_affinity"] == sorted(os.sched_getaffinity(0))
    # factorl report reads the same run folder to the same curve
    (run,) = report_lib.load_runs([result.run_dir])
    assert (run.algo, run.env, run.seed) == ("decqn", "gym:Pendulum-v1", 0)
    assert run.curve == tuple((p["env_step"], p["eval_return"]) for p in data["curve"])


def test_learning_summary_of_a_run_with_seeds_side_by_side(tmp_path):
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
    assert sweep.cmd_sweep(["--from-run", str(result.run_dir), "--out-dir", str(out)]) == 0
    evals = [r for r in read_metrics(result.run_dir) if r["event"] == "eval"]
    for seed in (0, 1):
        data = json.loads((out / f"vdn__factorl-two-step-game__s{seed}.json").read_text())
        assert data["seed"] == seed and data["seeds_side_by_side"] == 2
        mine = [r["eval_return"] for r in evals if r["seed"] == seed]
        assert [p["eval_return"] for p in data["curve"]] == mine and len(mine) == 2
    # factorl report splits the folder into its seeds as the summary does
    runs = report_lib.load_runs([result.run_dir])
    assert [r.seed for r in runs] == [0, 1]
    for run in runs:
        mine = [(r["env_step"], r["eval_return"]) for r in evals if r["seed"] == run.seed]
        assert run.curve == tuple(mine)
    with pytest.raises(ValueError, match="trained 2 seeds: name one"):
        sweep.summarise_run(result.run_dir, "cmd")


def test_a_resumed_sweep_run_records_the_commit_of_each_session(tmp_path, monkeypatch):
    real_train = sweep.train
    argv = ["--algos", "decqn", "--envs", "gym:Pendulum-v1", "--seeds", "0", "--steps", "300"]
    argv += ["--eval-every", "150", "--eval-episodes", "1"]
    argv += ["--work-dir", str(tmp_path / "runs"), "--out-dir", str(tmp_path / "out")]
    for key, value in TINY_DECQN.items():
        argv += ["--set", f"{key}={value}"]

    # session 1 stops after 150 steps (as Ctrl-C would); session 2 runs other code and flags
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    # (one trial per process, --array-index: the Ray path is tests/test_sweep.py's)
    argv += ["--array-index", "0"]
    # the revision a training process records (io.system.factorl_revision), and the one of the
    # process writing the results file
    monkeypatch.setattr(system, "factorl_revision", lambda: "1" * 40)
    monkeypatch.setattr(sweep, "SOURCE_REVISION", "1" * 40)
    monkeypatch.setattr(
        sweep,
        "train",
        lambda cfg, resume, **kw: real_train(cfg, resume=resume, stop_after=150, **kw),
    )
    assert sweep.cmd_sweep(argv) == 1  # interrupted: the same command continues it
    monkeypatch.setattr(system, "factorl_revision", lambda: "2" * 40)
    monkeypatch.setattr(sweep, "SOURCE_REVISION", "2" * 40)
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")
    monkeypatch.setattr(sweep, "train", real_train)
    assert sweep.cmd_sweep(argv) == 0

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
    assert sweep.cmd_sweep(argv) == 0  # a finished run is skipped, not trained again
    assert len(json.loads((tmp_path / "runs" / "decqn__gym-Pendulum-v1__s0" / "segments.json")
               .read_text())) == 2  # fmt: skip


def test_a_corrupt_checkpoint_ends_the_trial_with_one_line_naming_it(tmp_path, capsys, monkeypatch):
    argv = ["--algos", "decqn", "--envs", "gym:Pendulum-v1", "--seeds", "0", "--steps", "300"]
    argv += ["--work-dir", str(tmp_path / "runs"), "--out-dir", str(tmp_path / "out")]
    argv += ["--array-index", "0"]
    for key, value in TINY_DECQN.items():
        argv += ["--set", f"{key}={value}"]
    real_train = sweep.train
    with monkeypatch.context() as patch:  # a trial stopped at env step 150, with its checkpoint
        patch.setattr(
            sweep,
            "train",
            lambda cfg, resume, **kw: real_train(cfg, resume=resume, stop_after=150, **kw),
        )
        assert sweep.cmd_sweep(argv) == 1
    run_dir = tmp_path / "runs" / sweep.run_name("decqn", "gym:Pendulum-v1", 0)
    bad = run_dir / sweep.CHECKPOINT_DIR / "step_0000000150"
    (bad / ckpt.META_FILE).write_text("{not json")
    capsys.readouterr()
    assert sweep.cmd_sweep(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error decqn__gym-Pendulum-v1__s0: checkpoint ")
    assert "corrupt" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # no results file for a run that did not finish


def test_a_mistyped_override_stops_the_sweep_before_it_trains(tmp_path, capsys):
    argv = ["--algos", "decqn,cqn", "--envs", "gym:Pendulum-v1", "--seeds", "0", "--steps", "300"]
    argv += ["--work-dir", str(tmp_path / "runs"), "--out-dir", str(tmp_path / "out")]
    assert sweep.cmd_sweep([*argv, "--set", "agent.level=2"]) == 2
    err = capsys.readouterr().err
    assert "no selected algorithm (decqn, cqn) has setting 'agent.level'" in err
    assert "did you mean agent.levels?" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "out").exists()
    # a setting the sweep takes from its own flags is refused, not silently overridden
    assert sweep.cmd_sweep([*argv, "--set", "run.seed=3"]) == 2
    assert "--set run.seed: the sweep sets it" in capsys.readouterr().err
    # a value out of range is caught by the config, also before anything trains
    assert sweep.cmd_sweep([*argv, "--set", "agent.width=0"]) == 2
    assert "agent.width must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ factorl report (rliable)

#: bootstrap resamples in these tests: enough for an interval, few enough to keep them fast
REPS = 100


def test_aggregates_equal_their_hand_computed_values_and_lie_in_their_intervals():
    # one task, 8 runs: the IQM drops the 2 lowest and 2 highest runs, the mean keeps the 10s
    one = np.array([0.0, 0.0, 0.1, 0.2, 0.4, 0.8, 10.0, 10.0])[:, None]
    # three tasks, 2 runs each: task means 0.3, 0.6, 1.0; 6 runs -> the IQM trims one each side
    three = np.array([[0.2, 0.5, 0.9], [0.4, 0.7, 1.1]])
    est = report_lib.aggregate({"one": one, "three": three}, reps=REPS, seed=0)
    expected = {
        "one": {"IQM": (0.1 + 0.2 + 0.4 + 0.8) / 4, "mean": 21.5 / 8, "median": 21.5 / 8,
                "optimality gap": 1 - (0.1 + 0.2 + 0.4 + 0.8 + 1 + 1) / 8},
        "three": {"IQM": (0.4 + 0.5 + 0.7 + 0.9) / 4, "mean": 1.9 / 3, "median": 0.6,
                  "optimality gap": 1 - 3.7 / 6},  # 1.1 counts as 1: at the level
    }  # fmt: skip
    for key, metrics in expected.items():
        for name, value in metrics.items():
            e = est[key][name]
            assert e.point == pytest.approx(value), (key, name)
            assert e.low <= e.point <= e.high, (key, name)
    assert est["one"]["mean"].low < est["one"]["mean"].high  # runs that differ: a real interval


def test_the_bootstrap_is_reproducible_and_leaves_numpys_generator_alone():
    scores = {"a": np.random.default_rng(1).uniform(size=(5, 2))}
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    first = report_lib.aggregate(scores, reps=REPS, seed=7)
    assert np.array_equal(np.random.get_state()[1], before)
    assert report_lib.aggregate(scores, reps=REPS, seed=7) == first
    assert report_lib.aggregate(scores, reps=REPS, seed=8) != first


def test_probability_of_improvement_on_known_score_sets():
    high, low = np.array([[10.0], [11.0], [12.0]]), np.array([[1.0], [2.0], [3.0]])
    est = report_lib.probability_of_improvement(
        {
            ("high", "low"): (high, low),
            ("low", "high"): (low, high),
            ("same", "same"): (high, high.copy()),
            # 5 of the 6 pairs have X above Y: 3 > 2, 5 > 2, 5 > 4, 6 > 2, 6 > 4
            ("x", "y"): (np.array([[3.0], [5.0], [6.0]]), np.array([[2.0], [4.0]])),
        },
        reps=REPS,
    )
    assert est["high", "low"] == report_lib.Estimate(1.0, 1.0, 1.0)
    assert est["low", "high"] == report_lib.Estimate(0.0, 0.0, 0.0)
    assert est["same", "same"].point == 0.5
    assert est["x", "y"].point == pytest.approx(5 / 6)
    assert est["x", "y"].low <= 5 / 6 <= est["x", "y"].high


def test_performance_profile_is_the_fraction_of_runs_above_each_threshold():
    profiles, intervals = report_lib.performance_profiles(
        {"a": np.array([[0.2], [0.6], [1.0]])}, np.array([0.0, 0.5, 0.9, 1.0]), reps=REPS
    )
    assert profiles["a"] == pytest.approx([1.0, 2 / 3, 1 / 3, 0.0])
    assert intervals["a"].shape == (2, 4)


def test_levels_normalise_scores_and_bad_levels_are_refused():
    env, level = report_lib.parse_level("dmc:walker-walk=900")
    assert env == "dmc:walker-walk" and level.normalise([450.0, 900.0]) == pytest.approx([0.5, 1])
    env, level = report_lib.parse_level("jaxmarl:MPE_simple_spread_v3=-60:-20")
    assert env == "jaxmarl:MPE_simple_spread_v3"
    assert level.normalise([-60.0, -40.0, -20.0]) == pytest.approx([0.0, 0.5, 1.0])
    for bad in ("dmc:walker-walk", "=900", "dmc:walker-walk=lots", "x=1:1", "x=nan"):
        with pytest.raises(report_lib.ReportError, match="--level"):
            report_lib.parse_level(bad)
    # the built-in level of walker-walk, and none for Pendulum: its scores stay raw returns
    runs = _runs(_fake_run("sac", "dmc:walker-walk", 0, [900.3 / 2]),
                 _fake_run("sac", "gym:Pendulum-v1", 0, [-150.0]))  # fmt: skip
    tasks = report_lib.task_scores(runs, report_lib.default_levels())
    assert tasks["dmc:walker-walk"].scores("sac") == pytest.approx([0.5])
    assert tasks["gym:Pendulum-v1"].scores("sac") == pytest.approx([-150.0])


def _run_folder(path, algo, settings, evals, seeds=None):
    """A run folder as factorl train writes it: its config, and metrics with train records,
    eval records (tagged by seed when `seeds` run side by side) and a torn last line."""
    from factorl.io.logging import METRICS_FILE
    from factorl.io.runfolder import CONFIG_FILE

    path.mkdir(parents=True)
    (path / CONFIG_FILE).write_text(make_config(algo, settings).to_json() + "\n")
    lines = []
    for i, returns in enumerate(evals):
        step = 1000 * (i + 1)
        head = {"env_step": step, "env_frames": step, "learner_step": step, "wall_time": 1.0}
        lines.append({"event": "train", **head, "loss": 1.0})
        for s, value in enumerate(returns):
            seed = {} if seeds is None else {"seed": seeds[s]}
            lines.append({"event": "eval", **head, "eval_return": value,
                          "eval_returns": [value], **seed})  # fmt: skip
    text = "".join(json.dumps(r) + "\n" for r in lines)
    (path / METRICS_FILE).write_text(text + '{"event": "tra')  # a run killed mid-write
    return path


def _report(capsys, *argv):
    from factorl.cli import main

    code = main(["report", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_factorl_report_end_to_end(tmp_path, capsys):
    walker = {"env.id": "dmc:walker-walk"}
    # decqn on walker-walk: seed 0 in a run folder, seeds 1 and 2 as result files
    _run_folder(tmp_path / "runs" / "decqn-s0", "decqn", {**walker, "run.seed": 0},
                [[100.0], [450.0]])  # fmt: skip
    results = tmp_path / "results"
    results.mkdir()
    decqn = {0: 450.0, 1: 300.0, 2: 700.0}
    for seed in (1, 2):
        data = _fake_run("decqn", "dmc:walker-walk", seed, [50.0, decqn[seed]])
        (results / f"decqn-{seed}.json").write_text(json.dumps(data))
    (results / "throughput.json").write_text('{"benchmark": "throughput"}')  # skipped in a folder
    # sac: walker-walk from result files, Pendulum (no level: raw returns) from one folder that
    # trained seeds 0 and 1 side by side
    sac = {0: 800.0, 1: 850.0, 2: 900.0}
    for seed, final in sac.items():
        data = _fake_run("sac", "dmc:walker-walk", seed, [60.0, final])
        (results / f"sac-{seed}.json").write_text(json.dumps(data))
    pendulum = {"env.id": "gymnax:Pendulum-v1", "run.num_seeds": 2}
    _run_folder(tmp_path / "runs" / "sac-pendulum", "sac", pendulum,
                [[-900.0, -1000.0], [-200.0, -150.0]], seeds=[0, 1])  # fmt: skip
    _run_folder(tmp_path / "runs" / "decqn-pendulum", "decqn", pendulum,
                [[-1200.0, -1100.0], [-400.0, -300.0]], seeds=[0, 1])  # fmt: skip

    out = tmp_path / "report"
    code, stdout, err = _report(capsys, tmp_path / "runs", results, "--out", out,
                                "--reps", 20)  # fmt: skip
    assert code == 0, err
    text = (out / "report.md").read_text()
    assert text.startswith("# Aggregate report\n")
    rows = {tuple(c.strip() for c in line.strip("|").split("|")[:3]): line
            for line in text.split("## Per task")[1].split("##")[0].splitlines()
            if line.startswith("| ") and "---" not in line}  # fmt: skip

    def mean(values, level=900.3):
        return f"{np.mean(values) / level:.3f} ["

    row = rows[("dmc:walker-walk", "normalised: return / 900.3", "decqn")]
    assert "| 3 (0, 1, 2) | 2,000 |" in row and f"| {mean(list(decqn.values()))}" in row
    assert f"| {mean(list(sac.values()))}" in rows[("dmc:walker-walk", "normalised: return / 900.3",
                                                   "sac")]  # fmt: skip
    row = rows[("gymnax:Pendulum-v1", "raw return", "sac")]
    assert "| 2 (0, 1) |" in row and "| -175.0 [" in row and row.endswith("| - |")
    # across tasks: only walker-walk has a level; sac's IQM over its 3 runs is their mean
    across = text.split("## Across tasks")[1].split("##")[0]
    assert "1 task with an expert level that every algorithm ran: dmc:walker-walk." in across
    assert "Left out: gymnax:Pendulum-v1." in across
    assert f"| sac | 3 | {mean(list(sac.values()))}" in across
    # sac beats decqn on every pair of runs on both tasks
    assert "| decqn | sac | dmc:walker-walk, gymnax:Pendulum-v1 | 0.000 [0.000, 0.000] |" in text
    every = text.split("## Every run")[1]
    assert f"| dmc:walker-walk | decqn | 0 | 2,000 | 450.0 | {450 / 900.3:.3f} |" in every
    assert "| gymnax:Pendulum-v1 | decqn | 1 | 2,000 | -300.0 | - |" in every
    names = ["report.md", "aggregates.png", "improvement.png", "profiles.png",
             "profile-gymnax-Pendulum-v1.png", "curves-dmc-walker-walk.png",
             "curves-gymnax-Pendulum-v1.png"]  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == sorted(names)
    assert stdout.splitlines() == [f"wrote {out / name}" for name in names]
    import matplotlib.pyplot as plt

    for name in names[1:]:
        assert f"]({name})" in text
        image = plt.imread(out / name)  # a PNG that decodes
        assert image.ndim == 3 and min(image.shape[:2]) > 100
    # an earlier budget: every run scored at its first evaluation
    code, _, err = _report(capsys, tmp_path / "runs", results, "--out", tmp_path / "early",
                           "--reps", 5, "--at-step", 1500)  # fmt: skip
    assert code == 0, err
    text = (tmp_path / "early" / "report.md").read_text()
    assert "last (at or before env step 1,500)" in text
    assert "| dmc:walker-walk | decqn | 0 | 1,000 | 100.0 |" in text


def test_unequal_seeds_across_tasks_use_each_tasks_lowest_seeds(tmp_path):
    # decqn: 3 seeds on walker-walk, 2 on cheetah-run; rliable takes a [runs, tasks] matrix
    walker, cheetah = [0.2, 0.4, 0.9], [0.6, 0.8]
    runs = _runs(
        *(_fake_run("decqn", "dmc:walker-walk", s, [900.3 * v]) for s, v in enumerate(walker)),
        *(_fake_run("decqn", "dmc:cheetah-run", s, [664.57 * v]) for s, v in enumerate(cheetah)),
        *(_fake_run("sac", env, s, [0.0]) for env in ("dmc:walker-walk", "dmc:cheetah-run")
          for s in (0, 1)),
    )  # fmt: skip
    report_lib.write_report(runs, tmp_path, reps=5)
    text = (tmp_path / "report.md").read_text()
    assert "its lowest seeds of each are used: decqn (2 per task)." in text
    # seeds 0 and 1 of both tasks: normalised 0.2, 0.4, 0.6, 0.8 -> mean 0.5 (seed 2's 0.9 out)
    assert "| decqn | 4 | 0.500 [" in text
    assert "decqn ran more seeds on some tasks than on others" in text


def _one_line_error(capsys, *argv):
    code, out, err = _report(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("factorl: error: ") and err.count("\n") == 1, err
    return err


def test_grid_values_of_one_algorithm_are_reported_as_algorithms_of_their_own(tmp_path):
    """A sweep's --grid trials share algorithm, task and seed: each grid value is its own row."""
    for lr in (0.0001, 0.0003):
        data = {
            **_fake_run("decqn", "dmc:walker-walk", 0, [1.0]),
            "grid": {"agent.learning_rate": lr},
        }
        (tmp_path / f"lr{lr}.json").write_text(json.dumps(data))
    plain = _fake_run("decqn", "dmc:walker-walk", 0, [2.0])
    (tmp_path / "plain.json").write_text(json.dumps(plain))
    runs = report_lib.load_runs([tmp_path])
    assert sorted(r.algo for r in runs) == [
        "decqn",
        "decqn[learning_rate=0.0001]",
        "decqn[learning_rate=0.0003]",
    ]
    bad = {**plain, "grid": ["agent.learning_rate", 1]}
    (tmp_path / "plain.json").write_text(json.dumps(bad))
    with pytest.raises(report_lib.ReportError, match="malformed 'grid'"):
        report_lib.load_runs([tmp_path])


def test_factorl_report_refuses_bad_input_in_one_line(tmp_path, capsys):
    out = ["--out", tmp_path / "out"]
    good = tmp_path / "good.json"
    good.write_text(json.dumps(_fake_run("sac", "dmc:walker-walk", 0, [1.0])))
    err = _one_line_error(capsys, tmp_path / "missing", *out)
    assert "missing does not exist" in err
    (tmp_path / "empty").mkdir()
    err = _one_line_error(capsys, tmp_path / "empty", *out)
    assert "is not a run folder (no metrics.jsonl) and holds no run folders" in err
    config_only = tmp_path / "config-only"
    config_only.mkdir()
    (config_only / "config.json").write_text(make_config("decqn").to_json())
    err = _one_line_error(capsys, config_only, *out)
    assert "has no metrics.jsonl" in err and "train it" in err
    torn = tmp_path / "torn.json"
    torn.write_text('{"benchmark": "learning",\n "algo": ')
    err = _one_line_error(capsys, good, torn, *out)
    assert "torn.json is not valid JSON (Expecting value at line 2" in err
    other = tmp_path / "other.json"
    other.write_text("[1, 2]")
    assert "is not a learning-result file" in _one_line_error(capsys, other, *out)
    no_curve = tmp_path / "no-curve.json"
    no_curve.write_text(json.dumps({**_fake_run("sac", "gym:Pendulum-v1", 0, [1.0]), "curve": []}))
    assert "holds no evaluation" in _one_line_error(capsys, no_curve, *out)
    nan = tmp_path / "nan.json"
    nan.write_text(json.dumps(_fake_run("sac", "gym:Pendulum-v1", 0, [1.0, "nan"])))
    assert "has eval_return 'nan', not a finite number" in _one_line_error(capsys, nan, *out)
    nan.write_text(json.dumps(_fake_run("sac", "gym:Pendulum-v1", 0, [True])))
    assert "has eval_return True, not a finite number" in _one_line_error(capsys, nan, *out)
    no_eval = _run_folder(tmp_path / "no-eval", "decqn", {"env.id": "dmc:walker-walk"}, [[]])
    err = _one_line_error(capsys, no_eval, *out)
    assert "has no evaluation record yet: train it past its first evaluation" in err
    twice = tmp_path / "twice.json"
    twice.write_text(good.read_text())
    err = _one_line_error(capsys, good, twice, *out)
    assert "seed 0 of sac on dmc:walker-walk comes from both" in err
    assert "--level" in _one_line_error(capsys, good, "--level", "dmc:walker-walk", *out)
    assert "--reps must be >= 1" in _one_line_error(capsys, good, "--reps", 0, *out)
    assert "--seed must be in [0, 2**32)" in _one_line_error(capsys, good, "--seed", -1, *out)
    err = _one_line_error(capsys, good, "--at-step", 10, *out)
    assert "no evaluation at or before env step 10" in err
    assert not (tmp_path / "out").exists()  # nothing written for input that was refused


def test_factorl_report_names_its_extra_when_rliable_is_missing(tmp_path, capsys, monkeypatch):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(_fake_run("sac", "dmc:walker-walk", 0, [1.0])))
    monkeypatch.setitem(sys.modules, "rliable", None)  # as if it were not installed
    err = _one_line_error(capsys, good, "--out", tmp_path / "out")
    assert "needs the report extra (rliable, matplotlib)" in err
    assert err.rstrip().endswith('pip install "factorl[report]")')
