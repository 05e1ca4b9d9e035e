"""Smoke test of the throughput benchmark (bench/throughput.py) with tiny settings."""

import importlib.util
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from factorl.core.config import ConfigError

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "throughput.py"


def _load_bench():
    spec = importlib.util.spec_from_file_location("factorl_bench_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_throughput_benchmark_runs_and_writes_its_report(tmp_path):
    bench = _load_bench()
    out = tmp_path / "results" / "throughput.json"
    overrides = {
        "agent.width": 32,
        "replay.batch_size": 32,
        "agent.learning_starts": 64,
        "agent.update_every": 2,
        "replay.capacity": 2000,
    }
    argv = ["--env", "gym:Pendulum-v1", "--algos", "decqn", "--steps", "200", "--warmup", "150"]
    argv += ["--updates", "10", "--acts", "50", "--out", str(out)]
    for key, value in overrides.items():
        argv += ["--set", f"{key}={value}"]
    bench.main(argv)

    report = json.loads(out.read_text())
    assert report["benchmark"] == "throughput"
    for key in ("created", "machine", "versions", "jax_backend", "config", "results"):
        assert key in report
    for key in ("hostname", "platform", "processor", "cpu_count", "memory_gb", "python"):
        assert key in report["machine"]
    for key in ("factorl", "jax", "jaxlib", "flax", "optax", "numpy", "gymnasium"):
        assert report["versions"][key]
    assert report["config"]["env"] == "gym:Pendulum-v1"
    assert list(report["results"]) == ["decqn"]

    result = report["results"]["decqn"]
    positive = (
        "raw_env_sps",
        "update_ms",
        "update_ms_mean",
        "sample_ms",
        "act_us",
        "loop_sps",
        "loop_cycle_ms",
        "ideal_sps",
        "loop_overhead_ratio",
        "loop_vs_update_floor",
        "update_flops",
        "priority_update_ms",  # DecQN's replay is prioritised
    )
    for key in positive:
        value = result[key]
        assert isinstance(value, float) and math.isfinite(value) and value > 0, (key, value)
    assert result["update_every"] == 2 and result["batch_size"] == 32
    assert result["agent_config"]["width"] == 32
    assert result["steps_timed"] == 200
    # one update every 2 env steps in the timed part, learning having started in the warm-up
    assert result["loop_updates"] == 100
    assert not list(out.parent.glob("*.tmp"))  # the atomic write left no temporary file


def test_plain_td3_comparison_runs_both_loops_on_the_same_steps(tmp_path):
    bench = _load_bench()
    out = tmp_path / "td3.json"
    argv = ["--env", "gym:Pendulum-v1", "--algos", "td3", "--steps", "300", "--warmup", "250"]
    argv += ["--updates", "5", "--acts", "20", "--plain-td3", "--out", str(out)]
    for key, value in {
        "agent.width": 16,
        "replay.batch_size": 16,
        "agent.learning_starts": 200,
        "agent.random_steps": 200,
    }.items():
        argv += ["--set", f"{key}={value}"]
    bench.main(argv)

    paired = json.loads(out.read_text())["plain_td3"]
    # random phase: steps 100..198 (step 199 fills replay to learning_starts and learns)
    assert paired["random_steps_timed"] == 99
    for key in (
        "factorl_random_sps",
        "plain_random_sps",
        "factorl_learning_sps",
        "plain_learning_sps",
    ):
        assert math.isfinite(paired[key]) and paired[key] > 0, key
    ratio = paired["factorl_learning_sps"] / paired["plain_learning_sps"]
    assert paired["learning_sps_ratio"] == ratio
    assert set(paired["derived_cumulative_sps"]) == {"factorl", "plain"}
    # the two loops do the same arithmetic: factorl's update counts both branches of its cond;
    # its extras (norms, |TD| for priorities, weights) are 3% at this toy size, 0.14% at 256 x 256
    report = json.loads(out.read_text())
    assert report["results"]["td3"]["priority_update_ms"] is None  # uniform replay: none to move
    flops = report["results"]["td3"]["update_flops"]
    plain = paired["plain_critic_step_flops"] + paired["plain_actor_step_flops"]
    assert flops == pytest.approx(plain, rel=0.05)


def test_plain_td3_comparison_needs_td3(capsys):
    bench = _load_bench()
    with pytest.raises(SystemExit):
        bench.parse_args(["--algos", "decqn", "--plain-td3"])
    assert "add td3 to --algos" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_source_revision_names_the_commit_and_flags_uncommitted_changes(tmp_path):
    from factorl.io.system import source_revision

    assert source_revision(tmp_path) is None  # not a checkout
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "a.txt").write_text("one")
    subprocess.run([*git, "add", "a.txt"], check=True)
    subprocess.run([*git, "commit", "-qm", "first"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True)
    assert source_revision(repo) == head.stdout.strip()
    (repo / "a.txt").write_text("two")
    assert source_revision(repo) == head.stdout.strip() + "+dirty"
    (repo / "sub").mkdir()
    assert source_revision(repo / "sub") is None  # inside a repository but not its root


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("agent.widht=32", r"no selected algorithm \(decqn\) has setting 'agent\.widht'"),
        ("agent.width=wide", r"agent\.width must be an integer, got 'wide'"),
        ("run.seed=3", r"--set run\.seed: the benchmark sets the run, env and runner sections"),
    ],
)
def test_throughput_set_takes_agent_settings_and_refuses_typos_before_measuring(item, message):
    bench = _load_bench()
    argv = ["--env", "gym:Pendulum-v1", "--algos", "decqn", "--set", item]
    with pytest.raises(ConfigError, match=message):
        bench.run(bench.parse_args(argv))


def test_common_report_helpers_record_where_and_write_atomically(tmp_path):
    sys.path.insert(0, str(SCRIPT.parent))
    import _common

    found = _common.provenance("abc", revision_key="commit", packages=("no-such-package-x",))
    assert set(found) == {"machine", "versions", "commit"} and found["commit"] == "abc"
    assert "load_avg_at_start" in found["machine"] and found["versions"]["jax"]
    assert found["versions"]["no-such-package-x"] is None
    report = {"machine": {}, "figure": 1.5}
    out = tmp_path / "deep" / "report.json"
    text = _common.finish(report, out, load_key="load_average_end", indent=1)
    assert json.loads(out.read_text()) == json.loads(text) == report
    assert len(report["machine"]["load_average_end"]) == 3
    assert out.read_text() == json.dumps(report, indent=1) + "\n"
    assert [p.name for p in out.parent.iterdir()] == ["report.json"]  # no temporary file left


def test_device_memory_benchmark_measures_both_modes(tmp_path):
    out = tmp_path / "memory.json"
    cmd = [sys.executable, str(SCRIPT.parent / "device_memory.py"), "--algo", "decqn",
           "--env", "gymnax:Pendulum-v1", "--num-envs", "2", "--capacity", "20000",
           "--chunks", "1", "--vector-steps", "5", "--out", str(out)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert set(report["modes"]) == {"donated", "copied"}
    for mode in report["modes"].values():
        assert mode["replay_buffer_mb"] >= 0
        assert len(mode["peak_rss_mb_after_each_chunk"]) == 1
        assert mode["peak_rss_mb_after_each_chunk"][0] >= mode["peak_rss_mb_after_init"] > 0
    assert report["machine"]["load_avg_at_end"] and report["source_revision"]


def _load_protocol():
    script = SCRIPT.parent / "offline_protocol.py"
    spec = importlib.util.spec_from_file_location("factorl_bench_offline_protocol", script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_medium_checkpoint_is_the_earliest_checkpointed_evaluation_at_the_level(tmp_path):
    from factorl.io import checkpoint as ckpt
    from factorl.report import Level

    bench = _load_protocol()
    run = tmp_path / "source"
    run.mkdir()
    evals = {200: -2500.0, 400: -1900.0, 600: -1500.0, 800: -1000.0}
    with open(run / "metrics.jsonl", "w") as f:
        for step, ret in evals.items():
            f.write(json.dumps({"event": "train", "env_step": step}) + "\n")
            f.write(json.dumps({"event": "eval", "env_step": step, "eval_return": ret}) + "\n")
    for step in (200, 600, 800):  # no checkpoint at 400, the first evaluation above -2000
        ckpt.save_checkpoint(run / "checkpoints", step, [np.zeros(1)], {}, {}, keep=10)
    level = Level(expert=-1000.0, low=-3000.0)
    assert bench.medium_reached(run, -2000.0) == 600
    choice = bench.pick_medium("gymnax:Pendulum-v1", run, level, 0.5, tmp_path)
    assert (choice["checkpoint_env_step"], choice["eval_return"]) == (600, -1500.0)
    assert choice["threshold"] == -2000.0 and choice["normalised_score"] == 0.75
    assert json.loads((tmp_path / "medium.json").read_text()) == choice
    assert bench.medium_reached(run, -900.0) is None
    with pytest.raises(bench.ProtocolError, match=r"no checkpointed evaluation .* reaches -900\.0"):
        bench.pick_medium("gymnax:Pendulum-v1", run, level, 1.05, tmp_path / "higher")


def test_offline_protocol_runs_every_stage_then_skips_them(tmp_path, monkeypatch, capsys):
    """bench/offline_protocol.py at a tiny budget on gymnax Pendulum: source run, medium
    checkpoint, both datasets, the comparison and the table; a second invocation trains and
    collects nothing."""
    pytest.importorskip("minari")
    pytest.importorskip("gymnax")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    bench = _load_protocol()
    out = tmp_path / "out"
    tiny = ["agent.width=16", "replay.batch_size=16", "agent.learning_starts=50"]
    argv = ["--envs", "gymnax:Pendulum-v1", "--algos", "decqn", "--online-algos", "decqn"]
    argv += ["--level=gymnax:Pendulum-v1=-3000:-1000", "--source-steps", "4000"]
    argv += ["--source-checkpoint-every", "200", "--source-segment", "1"]
    argv += ["--steps", "200", "--offline-steps", "10"]
    argv += ["--eval-every", "200", "--eval-episodes", "1", "--medium-episodes", "2"]
    argv += ["--seeds", "0", "--work-dir", str(tmp_path / "runs"), "--out-dir", str(out)]
    for item in tiny:
        argv += ["--set", item, "--source-set", item]
    # nothing to report before the source run
    assert bench.main([*argv, "--report-only"]) == 1
    assert "source run has not finished" in capsys.readouterr().err
    assert bench.main(argv) == 0

    summary = json.loads((out / "summary.json").read_text())
    assert summary["benchmark"] == "offline_protocol" and summary["source_revision"] is not None
    recipe = summary["recipes"]["gymnax:Pendulum-v1"]
    # the earliest checkpointed evaluation at or above -2000 (-3000 + 0.5 x 2000)
    medium = recipe["medium_checkpoint"]
    assert medium["threshold"] == -2000.0 and medium["checkpoint_env_step"] == 200
    # the source run stopped at the first check after reaching it, not at --source-steps
    assert recipe["source_env_steps"] == 200
    assert "trained to env step 200 (at most 4,000" in (out / "offline.md").read_text()
    assert recipe["datasets"]["medium"]["episodes"] == 2
    assert recipe["datasets"]["medium"]["steps"] == 400  # Pendulum's 200-step episodes
    # the replay up to the checkpoint: its 200 steps, every one
    assert recipe["datasets"]["medium-replay"]["steps"] == 200
    rows = {(r["algo"], r["dataset"]): r for r in summary["rows"]}
    assert set(rows) == {("decqn", "medium"), ("decqn", "medium-replay"), ("decqn", "online")}
    for key, row in rows.items():
        assert row["final_env_step"] == 200 and len(row["final_eval"]["per_seed"]) == 1
        assert (row["offline_end_eval"] is None) == (key[1] == "online")
    table = (out / "offline.md").read_text()
    assert "| gymnax:Pendulum-v1 | decqn | medium-replay | 1 | 200 |" in table
    assert "factorl sweep --algos decqn" in table
    assert len(list(out.glob("decqn__*.json"))) == 3

    assert "[factorl] training" in capsys.readouterr().err  # the first invocation trained
    assert bench.main(argv) == 0
    printed = capsys.readouterr()
    assert "source run done, skipped" in printed.out
    assert printed.out.count("exists, skipped") == 2
    assert printed.out.count("skipped (results exist)") == 3
    assert "[factorl] training" not in printed.err  # (the run's own lines go to stderr)

    # a trial not finished yet: --report-only leaves its row out, names it, and trains nothing
    online = next(p for p in out.glob("decqn__*.json") if "dataset" not in p.name)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    finished = json.loads(online.read_text())
    online.rename(elsewhere / online.name)
    assert bench.main([*argv, "--report-only"]) == 0
    printed = capsys.readouterr()
    assert "[factorl] training" not in printed.err
    assert "skipped (results exist)" not in printed.out
    summary = json.loads((out / "summary.json").read_text())
    assert {(r["algo"], r["dataset"]) for r in summary["rows"]} == {
        ("decqn", "medium"),
        ("decqn", "medium-replay"),
    }
    assert len(summary["pending_trials"]) == 1
    assert "Not finished yet, left out: 1 trials" in (out / "offline.md").read_text()

    # --reuse-results: a folder that is not there is one line...
    assert bench.main([*argv, "--reuse-results", str(tmp_path / "nowhere")]) == 2
    assert (
        capsys.readouterr().err
        == f"error: --reuse-results {tmp_path / 'nowhere'} is not a folder\n"
    )
    # ...a finished run made elsewhere at another setting is not taken...
    other = {**finished, "config": {**finished["config"]}}
    other["config"]["agent"] = {**finished["config"]["agent"], "width": 17}
    (elsewhere / online.name).write_text(json.dumps(other))
    assert bench.main([*argv, "--report-only", "--reuse-results", str(elsewhere)]) == 0
    assert "not reused (another config)" in capsys.readouterr().out
    assert not online.exists()
    # ...the same run is, and its row is back
    (elsewhere / online.name).write_text(json.dumps(finished))
    assert bench.main([*argv, "--report-only", "--reuse-results", str(elsewhere)]) == 0
    assert f"reused {elsewhere / online.name}" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert ("decqn", "online") in {(r["algo"], r["dataset"]) for r in summary["rows"]}
    assert json.loads(online.read_text())["reused_from"] == str(elsewhere / online.name)

    # a results file trained at other settings than the command's is a row that names them
    medium = next(out.glob("decqn__*medium-v0__s0.json"))
    edited = json.loads(medium.read_text())
    edited["config"]["agent"]["width"] = 17
    medium.write_text(json.dumps(edited))
    assert bench.main([*argv, "--report-only"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    changed = {(r["algo"], r["dataset"]): r["changed_settings"] for r in summary["rows"]}
    assert changed[("decqn", "medium")] == {"agent.width": 17}
    assert changed[("decqn", "medium-replay")] == {}
    table = (out / "offline.md").read_text()
    assert "| gymnax:Pendulum-v1 | decqn (agent.width=17) | medium | 1 | 200 |" in table
    assert "An algorithm with settings in brackets: its results files ran at those" in table
