"""Smoke test of the throughput benchmark (bench/throughput.py) with tiny settings."""

import importlib.util
import json
import math
import sys
from pathlib import Path

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
        "width": 32,
        "batch_size": 32,
        "learning_starts": 64,
        "update_every": 2,
        "replay_capacity": 2000,
    }
    argv = ["--env", "gym:Pendulum-v1", "--algos", "decqn", "--steps", "200", "--warmup", "150"]
    argv += ["--updates", "10", "--acts", "50", "--out", str(out)]
    for key, value in overrides.items():
        argv += ["--agent-override", f"{key}={value}"]
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
