"""`factorl sweep` (factorl/sweep.py): a local Ray sweep gives the results of the same runs made
one by one, a trial whose worker is killed resumes to the same metrics, a restarted driver reruns
no finished trial, --array-index covers the grid once, and bad input is one line.

The Ray tests share one local Ray (two CPUs) and one small grid (DecQN and TD3, seeds 0 and 1,
300 env steps); the runs made one by one are made once for all of them.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import hold_run_folder

from factorl import sweep
from factorl.cli import main
from factorl.core.config import setting_keys
from factorl.train import make_config, train

ROOT = Path(__file__).resolve().parents[1]
ALGOS, SEEDS = ("decqn", "td3"), (0, 1)
#: tiny settings of both algorithms (each takes the keys it has), as conftest's TINY_DECQN
TINY = {
    "agent.width": 32,
    "agent.learning_starts": 100,
    "agent.random_steps": 50,
    "agent.update_every": 2,
    "agent.target_update_period": 20,
    "replay.batch_size": 32,
    "replay.capacity": 5000,
    "runner.log_every": 100,
    "run.progress": "none",
    "run.tensorboard": False,
}
GRID = ["--algos", ",".join(ALGOS), "--envs", "gym:Pendulum-v1", "--seeds", "0-1"]
GRID += ["--steps", "300", "--eval-every", "150", "--eval-episodes", "1"]
GRID += [a for key, value in TINY.items() for a in ("--set", f"{key}={str(value).lower()}")]


def _argv(tmp, *extra):
    return [*GRID, "--work-dir", str(tmp / "runs"), "--out-dir", str(tmp / "out"), *extra]


def _curve(data):
    return [(p["env_step"], p["eval_return"], p["eval_returns"]) for p in data["curve"]]


def _result(tmp, algo, seed):
    return json.loads((tmp / "out" / f"{sweep.run_name(algo, 'gym:Pendulum-v1', seed)}.json")
                      .read_text())  # fmt: skip


@pytest.fixture(scope="module")
def one_by_one(tmp_path_factory):
    """(algo, seed) -> (config dict, eval curve) of each grid run made with `train` directly."""
    tmp = tmp_path_factory.mktemp("one-by-one")
    found = {}
    for algo in ALGOS:
        for seed in SEEDS:
            own = {k: v for k, v in TINY.items() if k in setting_keys(algo)}
            cfg = make_config(
                algo,
                {
                    **own,
                    "env.id": "gym:Pendulum-v1",
                    "run.seed": seed,
                    "run.steps": 300,
                    "runner.eval_every": 150,
                    "runner.eval_episodes": 1,
                    "runner.checkpoint_every": 150,
                    "run.dir": str(tmp / f"{algo}{seed}"),
                },
            )
            train(cfg)
            data = sweep.summarise_run(cfg.run.dir, "one by one")
            found[algo, seed] = (data["config"], _curve(data))
    return found


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray of two CPUs for this module's tests, its address, and afterwards the check
    that none of its processes is left.

    Compiling costs more than these runs, so its workers take this process's XLA flags and
    JAX compilation cache (conftest.py), where `one_by_one` has compiled the same programs: they
    only read it (a worker killed mid-write could leave a torn entry, but every program they
    run is there already)."""
    ray = pytest.importorskip("ray")
    import jax

    env = {
        **sweep.worker_env(0.0),
        "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
        "JAX_COMPILATION_CACHE_DIR": jax.config.jax_compilation_cache_dir,
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.5",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the raylet's environment: the workers of every job inherit it
    try:
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            object_store_memory=sweep.LOCAL_OBJECT_STORE_BYTES,
            runtime_env={"env_vars": env},
        )
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    session = ray._private.worker._global_node.get_session_dir_path()
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
    deadline = time.monotonic() + 30  # the processes take a moment to exit
    while left := _processes_of(session):
        assert time.monotonic() < deadline, f"Ray processes left behind: {left}"
        time.sleep(0.2)


def _processes_of(session: str) -> list[str]:
    """The ids of the processes whose command line names the Ray session folder."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and session in (proc / "cmdline").read_text():
                found.append(proc.name)
        except OSError:
            continue
    return found


def test_a_local_ray_sweep_equals_the_same_runs_made_one_by_one(one_by_one, ray_cluster, tmp_path):
    import ray

    import factorl

    # the workers import the factorl this process runs (PYTHONPATH from sweep.worker_env)
    where = ray.get(ray.remote(lambda: __import__("factorl").__file__).remote())
    assert where == factorl.__file__
    assert sweep.cmd_sweep(_argv(tmp_path)) == 0
    pinned = []
    for (algo, seed), (config, curve) in one_by_one.items():
        data = _result(tmp_path, algo, seed)
        assert (data["algo"], data["seed"], data["final_env_step"]) == (algo, seed, 300)
        assert _curve(data) == curve and len(curve) == 2
        assert {**data["config"], "run": None} == {**config, "run": None}
        assert data["command"].startswith("factorl sweep --algos decqn,td3")
        assert [s["from_env_step"] for s in data["segments"]] == [0]
        pinned.append(data["segments"][0]["cpu_affinity"])
    # two trials at once on two cores: each on one of its own (sweep.core_shares), so the first
    # two ran on different ones
    cores = sweep.usable_cores()
    assert all(len(c) == 1 and c[0] in cores for c in pinned)
    assert len({c[0] for c in pinned}) >= min(2, len(cores))


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["killed", "preempted"])
def test_a_trial_whose_worker_is_killed_resumes_to_the_same_metrics(
    ray_cluster, one_by_one, tmp_path, how
):
    """SIGKILL: the worker dies and Ray retries the task; SIGTERM (preemption): the run saves
    a checkpoint and stops, and the task raises so that Ray retries it."""
    argv = _argv(tmp_path, "--set", "runner.checkpoint_every=50")
    argv[argv.index("0-1")] = "1"  # decqn and td3 on seed 1
    codes = []
    driver = threading.Thread(target=lambda: codes.append(sweep.cmd_sweep(argv)))
    driver.start()
    run_dir = tmp_path / "runs" / sweep.run_name("decqn", "gym:Pendulum-v1", 1)
    deadline = time.monotonic() + 120
    while not (run_dir / "checkpoints" / "latest").exists():  # a checkpoint to resume from
        assert time.monotonic() < deadline and driver.is_alive()
        time.sleep(0.02)
    pid = int((run_dir / ".lock").read_text())
    assert pid != os.getpid()
    os.kill(pid, how)
    driver.join(timeout=180)
    assert codes == [0]
    for algo in ALGOS:
        data = _result(tmp_path, algo, 1)
        assert _curve(data) == one_by_one[algo, 1][1]
    # the killed trial was trained by two processes, the second from a checkpoint
    starts = [s["from_env_step"] for s in _result(tmp_path, "decqn", 1)["segments"]]
    assert len(starts) == 2 and starts[0] == 0 and starts[1] > 0


def test_a_restarted_driver_reruns_no_finished_trial(ray_cluster, one_by_one, tmp_path):
    argv = _argv(tmp_path, "--address", ray_cluster, "--max-parallel", "1")
    argv[argv.index("decqn,td3")] = "decqn"
    command = [sys.executable, "-m", "factorl.cli", "sweep", *argv]
    # the cluster's XLA flags (see ray_cluster), which a driver leaves alone when XLA_FLAGS is set
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XLA_FLAGS": os.environ.get("XLA_FLAGS", "")}
    first = tmp_path / "out" / f"{sweep.run_name('decqn', 'gym:Pendulum-v1', 0)}.json"
    second = tmp_path / "runs" / sweep.run_name("decqn", "gym:Pendulum-v1", 1)
    driver = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    # the first trial finished and the second started: Ray must stop it with the driver
    while not (first.exists() and (second / ".lock").exists()):
        assert time.monotonic() < deadline and driver.poll() is None
        time.sleep(0.02)
    driver.kill()  # SIGKILL: no cleanup at all
    driver.wait()
    # Ray stops the running trial's worker with its driver (a live one would still hold the
    # run folder when the restarted driver reaches that trial)
    worker = (second / ".lock").read_text().strip()  # (empty if killed before writing it)
    deadline = time.monotonic() + 60
    while worker and Path(f"/proc/{worker}").exists():
        assert time.monotonic() < deadline, f"the trial's worker {worker} outlived its driver"
        time.sleep(0.1)
    finished = first.read_text()
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"skipped {first.stem}: results exist" in again.stdout
    assert first.read_text() == finished  # not written again...
    assert len(_result(tmp_path, "decqn", 0)["segments"]) == 1  # ...nor trained again
    # the trial running when the driver died was stopped with it, and trained on on restart;
    # its first process is still a segment only if it saved a checkpoint before it was killed (a
    # run started again from env step 0 starts its record again)
    starts = [s["from_env_step"] for s in _result(tmp_path, "decqn", 1)["segments"]]
    assert starts[0] == 0 and len(starts) <= 2
    for seed in SEEDS:
        assert _curve(_result(tmp_path, "decqn", seed)) == one_by_one["decqn", seed][1]


def test_array_indices_cover_the_grid_exactly_once(one_by_one, tmp_path, capsys):
    assert sweep.cmd_sweep([*_argv(tmp_path), "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "4 trials: --array-index 0 to 3 (SLURM: #SBATCH --array=0-3)"
    listed = [line.split()[1] for line in lines[:-1]]
    assert [line.split()[0] for line in lines[:-1]] == ["0", "1", "2", "3"]
    # a trial waits for a run folder another process holds (a worker of a killed driver, say)
    holder = hold_run_folder(tmp_path / "runs" / listed[0], 2.0)
    try:
        for index in range(4):
            assert main(["sweep", *_argv(tmp_path), "--array-index", str(index)]) == 0
        assert holder.wait(timeout=10) == 0  # it held the folder to its end
    finally:
        holder.kill()
        holder.wait()
    written = sorted(p.stem for p in (tmp_path / "out").glob("*.json"))
    assert written == sorted(listed) and len(set(listed)) == 4
    for algo in ALGOS:
        for seed in SEEDS:
            assert _curve(_result(tmp_path, algo, seed)) == one_by_one[algo, seed][1]
    # a finished trial is not trained again
    assert sweep.cmd_sweep([*_argv(tmp_path), "--array-index", "0"]) == 0
    assert "skipped" in capsys.readouterr().out


def test_vmapped_seeds_are_one_trial_of_run_num_seeds_named_for_its_seeds(tmp_path, capsys):
    # (training one is the device runner's own test; the per-seed results files are
    # test_report.py's, written by the same summarise_run)
    argv = ["--algos", "vdn", "--envs", "factorl:two-step-game", "--seeds", "3-4", "--vmap-seeds"]
    argv += ["--work-dir", str(tmp_path / "runs"), "--out-dir", str(tmp_path / "out")]
    assert sweep.cmd_sweep([*argv, "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["0", "vdn__factorl-two-step-game__s3-4"] and len(lines) == 2
    (trial,) = sweep.build_grid(["vdn"], ["factorl:two-step-game"], [3, 4], vmap_seeds=True)
    assert trial.result_names() == [f"vdn__factorl-two-step-game__s{s}" for s in (3, 4)]
    cfg = sweep.trial_config(trial, sweep.Settings(work_dir=str(tmp_path)))
    assert (cfg.run.seed, cfg.run.num_seeds) == (3, 2)
    assert "as a range" in _one_line_error(capsys, [*argv[:5], "3,5", *argv[6:]])


def _one_line_error(capsys, argv):
    assert main(["sweep", *argv]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert lines[0].startswith("factorl: error: ")
    return lines[0]


def test_each_trial_imports_this_factorl_and_a_gpu_share_takes_its_share_of_memory(
    monkeypatch,
):
    monkeypatch.delenv("XLA_PYTHON_CLIENT_MEM_FRACTION", raising=False)
    env = sweep.worker_env(0.0)
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(ROOT)
    assert "XLA_FLAGS" not in env  # the user's flags pass through; threads follow the pinned core
    assert "PYTHONPATH" not in sweep.worker_env(0.0, local=False)  # a cluster's own install
    assert "XLA_PYTHON_CLIENT_MEM_FRACTION" not in sweep.worker_env(1.0)  # a whole GPU: JAX's own
    share = float(sweep.worker_env(0.25)["XLA_PYTHON_CLIENT_MEM_FRACTION"])
    assert share == pytest.approx(sweep.GPU_MEMORY_SHARE * 0.25) and 4 * share < 1
    monkeypatch.setenv("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.1")
    assert "XLA_PYTHON_CLIENT_MEM_FRACTION" not in sweep.worker_env(0.25)  # the user's value


def test_trials_at_once_share_the_cores_without_overlap():
    assert sweep.core_shares([0, 1], 1) == [{0, 1}]  # one at a time keeps every core
    assert sweep.core_shares([0, 1], 2) == [{0}, {1}]
    assert sweep.core_shares([4, 5, 6, 7, 8], 2) == [{4, 5}, {6, 7, 8}]
    assert sweep.core_shares([0, 1], 3) == [{0}, {1}, {0}]  # more trials than cores: in turn


def test_bad_input_is_one_line_before_anything_runs(tmp_path, capsys, monkeypatch):
    base = ["--envs", "gym:Pendulum-v1", "--work-dir", str(tmp_path / "runs")]
    base += ["--out-dir", str(tmp_path / "out")]
    assert "unknown algorithm 'decqm'" in _one_line_error(capsys, [*base, "--algos", "decqm"])
    bad_env = [*base, "--envs", "gym:Pendulum-v1,dmc:cheetah-rnu"]
    assert "cheetah-run" in _one_line_error(capsys, bad_env)  # a close match is named
    error = _one_line_error(capsys, [*base, "--set", "agent.widht=3"])
    assert "no selected algorithm (decqn) has setting 'agent.widht'" in error
    assert "has it" in _one_line_error(capsys, [*base, "--grid", "agent.lr=1,2"])
    assert "must be a number" in _one_line_error(
        capsys, [*base, "--grid", "agent.learning_rate=1e-4,fast"]
    )
    assert "--set run.seed: the sweep sets it" in _one_line_error(
        capsys, [*base, "--set", "run.seed=3"]
    )
    error = _one_line_error(capsys, [*base, "--seeds", "0-2", "--array-index", "3"])
    assert "--array-index 3 is outside the grid of 3 trials (0 to 2" in error
    assert "JAX-native" in _one_line_error(capsys, [*base, "--seeds", "0-1", "--vmap-seeds"])
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the sweep extra were not installed
    error = _one_line_error(capsys, base)
    assert 'pip install -c constraints.txt -e ".[sweep]"' in error
    assert not (tmp_path / "runs").exists() and not (tmp_path / "out").exists()


def test_import_registers_environments_for_the_grid_and_each_trial(tmp_path, capsys, monkeypatch):
    (tmp_path / "factorl_sweep_registry.py").write_text(
        "import gymnasium\n"
        'gymnasium.register("FactorlSweepRegistered-v0", max_episode_steps=200,\n'
        '                   entry_point="gymnasium.envs.classic_control:PendulumEnv")\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    argv = _argv(tmp_path, "--array-index", "0")
    argv[argv.index("gym:Pendulum-v1")] = "gym:FactorlSweepRegistered-v0"
    assert "Unknown Gymnasium id" in _one_line_error(capsys, argv)
    try:
        assert sweep.cmd_sweep([*argv, "--import", "factorl_sweep_registry"]) == 0
    finally:
        import gymnasium

        gymnasium.registry.pop("FactorlSweepRegistered-v0", None)
        sys.modules.pop("factorl_sweep_registry", None)
    name = sweep.run_name("decqn", "gym:FactorlSweepRegistered-v0", 0)
    assert json.loads((tmp_path / "out" / f"{name}.json").read_text())["final_env_step"] == 300


def _run_folder(path: Path, records: list) -> Path:
    """A run folder as `factorl train` leaves one (its config and metrics), without training:
    what --from-run reads."""
    path.mkdir(parents=True)
    cfg = make_config(
        "decqn", {"env.id": "gym:Pendulum-v1", "run.steps": 300, "run.dir": str(path)}
    )
    (path / "config.json").write_text(cfg.to_json() + "\n")
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _eval(step, value=-900.0, **more):
    return {"event": "eval", "env_step": step, "eval_return": value, "eval_returns": [value],
            "wall_time": 1.0, **more}  # fmt: skip


def test_from_run_replaces_a_results_file_only_with_overwrite(tmp_path, capsys):
    run = _run_folder(tmp_path / "run", [_eval(150), _eval(300)])
    out = tmp_path / "out"
    argv = ["--from-run", str(run), "--out-dir", str(out), "--train-command", "first"]
    assert main(["sweep", *argv]) == 0
    path = out / f"{sweep.run_name('decqn', 'gym:Pendulum-v1', 0)}.json"
    finished = path.read_bytes()  # as a sweep's finished trial's own results file
    capsys.readouterr()
    again = ["--from-run", str(run), "--out-dir", str(out), "--train-command", "second"]
    error = _one_line_error(capsys, again)
    assert str(path) in error and "--overwrite" in error and "another --out-dir" in error
    assert path.read_bytes() == finished and sorted(os.listdir(out)) == [path.name]
    assert main(["sweep", *again, "--overwrite"]) == 0
    assert json.loads(path.read_text())["command"] == "second"
    assert sorted(os.listdir(out)) == [path.name]  # (written atomically: no temporary left)
    # a file that appears between the check and the write is not replaced either
    later = tmp_path / "later"
    real_write = sweep.write_json

    def another_writer_first(path, data, **kwargs):
        path.parent.mkdir(exist_ok=True)
        path.write_text("theirs\n")
        real_write(path, data, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sweep, "write_json", another_writer_first)
        error = _one_line_error(capsys, [*again[:3], str(later), *again[4:]])
    assert "exists already" in error and "--overwrite" in error
    assert [p.read_text() for p in later.iterdir()] == ["theirs\n"]
    # a sweep never replaces results: --overwrite is --from-run's alone
    base = ["--envs", "gym:Pendulum-v1", "--work-dir", str(tmp_path / "runs")]
    assert "--overwrite is for --from-run" in _one_line_error(
        capsys, [*base, "--out-dir", str(out), "--overwrite", "--list"]
    )


@pytest.mark.parametrize(
    "records, expected",
    [
        # the audit's record (refused by read_metrics itself, naming its line)
        ([_eval(150), _eval("abc")], "metrics.jsonl"),
        ([_eval(150), _eval(300, "abc")], "has eval_return 'abc', not a finite number"),
        ([_eval(150), _eval(300, "nan")], "has eval_return 'nan', not a finite number"),
        ([_eval(150), _eval(300, True)], "has eval_return True, not a finite number"),
        ([_eval(150), {**_eval(300), "eval_returns": ["x"]}], "eval_returns"),
        ([_eval(150), {**_eval(300), "wall_time": None}], "wall_time"),
        ([_eval(150), {k: v for k, v in _eval(300).items() if k != "wall_time"}], "no wall_time"),
        ([{"event": "train", "env_step": 100, "wall_time": "x"}, _eval(300)], "wall_time"),
        ([{"event": "train", "env_step": 100}], "has no evaluation records for seed 0"),
        ([_eval(150), [1, 2]], "metrics.jsonl"),
    ],
    ids=[
        "env-step",
        "return",
        "nan",
        "bool",
        "returns",
        "wall-time",
        "no-wall-time",
        "train-wall-time",
        "no-eval",
        "not-an-object",
    ],
)
def test_from_run_refuses_a_record_report_would_refuse_and_writes_nothing(
    tmp_path, capsys, records, expected
):
    run = _run_folder(tmp_path / "run", records)
    out = tmp_path / "out"
    error = _one_line_error(capsys, ["--from-run", str(run), "--out-dir", str(out)])
    assert str(run) in error and expected in error
    assert not out.exists()


def test_from_run_errors_are_one_line(tmp_path, capsys):
    run = _run_folder(tmp_path / "run", [_eval(300)])
    afile = tmp_path / "afile"
    afile.write_text("mine\n")
    for out in (afile, afile / "below"):
        error = _one_line_error(capsys, ["--from-run", str(run), "--out-dir", str(out)])
        assert f"{afile} is not a folder" in error
    assert afile.read_text() == "mine\n"
    deep = tmp_path / "deep"
    deep.mkdir()
    (deep / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    error = _one_line_error(capsys, ["--from-run", str(deep), "--out-dir", str(tmp_path / "o")])
    assert "config.json" in error
    assert not (tmp_path / "o").exists()


BAD_GRIDS = [
    (["--envs", "gym:NoSuchFactorl-v0"], "Unknown Gymnasium id"),
    (["--envs", ""], "--envs '' has an empty item"),
    (["--envs", "gym:Pendulum-v1,"], "has an empty item"),
    (["--algos", "decqn,,td3"], "has an empty item"),
    (["--grid", "agent.width=0"], "agent.width must be >= 1"),
    (["--set", "agent.gamma=nan"], "agent.gamma must be finite"),
    (["--envs", "dmc:walker-walk", "--seeds", "0-1", "--vmap-seeds"], "JAX-native"),
    (
        ["--algos", "vdn", "--envs", "factorl:two-step-game", "--seeds", "0,2", "--vmap-seeds"],
        "as a range",
    ),
    (["--gpus-per-trial", "-1"], "--gpus-per-trial is 0 or more"),
    (["--gpus-per-trial", "nan"], "--gpus-per-trial is 0 or more"),
    (["--gpus-per-trial", "inf"], "--gpus-per-trial is 0 or more"),
    (["--gpus-per-trial", "0.00001"], "in steps of 0.0001"),
    (["--algos", "decqn,decqn"], "--algos names decqn twice"),
    (["--envs", "gym:Pendulum-v1,gym:Pendulum-v1"], "--envs names gym:Pendulum-v1 twice"),
    (["--envs", "gym:Pendulum-v1,gym:NoSuchFactorl-v0"], "Unknown Gymnasium id"),
    (["--envs", "gym:a/b-v0,gym:a-b-v0"], "would both be named decqn__gym-a-b-v0__s0"),
    (["--seeds", "0-99999999"], "names more than 10,000 seeds"),
    (["--seeds", "0-5000", "--grid", "agent.width=1,2"], "10,002 trials, more than 10,000"),
    (["--set", "data.dataset=../../etc/x-v0"], "Minari"),  # the id, or Minari to install
]


@pytest.mark.parametrize("flags, expected", BAD_GRIDS, ids=[" ".join(f) for f, _ in BAD_GRIDS])
def test_list_and_array_index_refuse_the_same_bad_grid(tmp_path, capsys, flags, expected):
    """--list checks the whole grid as running it does: a job array sized from it never meets
    a grid its tasks refuse, and each of its tasks checks the whole grid too."""
    base = ["--envs", "gym:Pendulum-v1", "--work-dir", str(tmp_path / "runs")]
    base += ["--out-dir", str(tmp_path / "out")]
    start = time.monotonic()
    listed = _one_line_error(capsys, [*base, *flags, "--list"])
    assert expected in listed and time.monotonic() - start < 60
    assert _one_line_error(capsys, [*base, *flags, "--array-index", "0"]) == listed
    assert not (tmp_path / "runs").exists() and not (tmp_path / "out").exists()


def test_a_work_dir_or_out_dir_that_is_a_file_is_refused(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("mine\n")
    base = ["--envs", "gym:Pendulum-v1", "--list"]
    for flag, other in (("--work-dir", "--out-dir"), ("--out-dir", "--work-dir")):
        argv = [*base, flag, str(afile), other, str(tmp_path / "x")]
        assert f"{flag} {afile}: {afile} is not a folder" in _one_line_error(capsys, argv)
    assert afile.read_text() == "mine\n"
