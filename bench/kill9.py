"""kill -9 test: a run killed with SIGKILL at random moments and resumed each time must end
identical to an uninterrupted run of the same command.

    python bench/kill9.py                        # DecQN on dmc:cartpole-balance, 20 kills
    python bench/kill9.py --env gym:Pendulum-v1 --steps 3000 --kills 3 --min-wait 4 \
        --max-wait 12 --checkpoint-minutes 0.05 \
        --extra "--agent.learning-starts 500 --runner.eval-every 1000"

The script trains a reference run to the end, then the same run in another folder, killing it
`--kills` times (each kill after a random wait since the process started) and restarting it with
`factorl train --resume`. It then compares the two folders: config, metrics (without wall_time)
and the final checkpoint (parameters byte for byte, replay and loop arrays, RNG and counters).
Exit code 0 iff they are identical and every kill hit a running process.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from factorl.io.checkpoint import latest_checkpoint, read_meta, state_file
from factorl.io.logging import read_metrics
from factorl.io.system import source_revision

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import local_time, provenance, write_json  # bench/ is not a package

TRAIN = [sys.executable, "-m", "factorl.cli", "train"]


def launch(command: list[str], log: Path) -> subprocess.Popen:
    # stdout and stderr both go to the log, unbuffered: a killed process loses no line of it
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as f:
        return subprocess.Popen(command, stdout=f, stderr=subprocess.STDOUT, env=env)


def fail(message: str, log: Path) -> NoReturn:
    tail = log.read_text(errors="replace").splitlines()[-40:]
    sys.exit(f"kill9: {message}\n--- tail of {log} ---\n" + "\n".join(tail))


def checkpoint_step(run_dir: Path) -> int | None:
    found = latest_checkpoint(run_dir / "checkpoints")
    return read_meta(found)["env_step"] if found else None


def same_arrays(a: Path, b: Path) -> bool:
    """npz files compared array by array: the arrays are what must agree (checkpoints written
    before the fixed zip timestamps also differ in their members' dates)."""
    if not a.exists() or not b.exists():
        return a.exists() == b.exists()  # e.g. both without replay.npz under --no-save-replay
    with np.load(a, allow_pickle=False) as x, np.load(b, allow_pickle=False) as y:
        if sorted(x.files) != sorted(y.files):
            return False
        # bytes, not values: NaN != NaN and -0.0 == 0.0 would hide or invent differences
        return all(same_bytes(x[k], y[k]) for k in x.files)


def same_bytes(x: np.ndarray, y: np.ndarray) -> bool:
    return x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()


def without(record: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != key}


def compare(ref: Path, run: Path) -> dict[str, bool]:
    """One boolean per thing compared, and `identical`: all of them."""
    config = [json.loads((d / "config.json").read_text()) for d in (ref, run)]
    for c in config:
        c["run"].pop("dir")  # the one setting that differs by construction
    metrics = [[without(r, "wall_time") for r in read_metrics(d)] for d in (ref, run)]
    a, b = latest_checkpoint(ref / "checkpoints"), latest_checkpoint(run / "checkpoints")
    out = {"config": config[0] == config[1], "metrics": metrics[0] == metrics[1]}
    out["checkpoint_name"] = a is not None and b is not None and a.name == b.name
    if out["checkpoint_name"]:
        ma, mb = read_meta(a), read_meta(b)
        names = [state_file(m) for m in (ma, mb)]
        state = [(c / n).read_bytes() for c, n in zip((a, b), names, strict=True)]
        out["state_file"] = names[0] == names[1] and state[0] == state[1]
        out["replay_npz"] = same_arrays(a / "replay.npz", b / "replay.npz")
        out["loop_npz"] = same_arrays(a / "loop.npz", b / "loop.npz")
        out["meta_loop"] = without(ma["loop"], "wall_time") == without(mb["loop"], "wall_time")
        out["meta_numpy_rng"] = ma["numpy_rng"] == mb["numpy_rng"]
        out["meta_learner_step"] = ma["learner_step"] == mb["learner_step"]
    out["identical"] = all(out.values())
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--algo", default="decqn")
    p.add_argument("--env", default="dmc:cartpole-balance")
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--checkpoint-minutes", type=float, default=0.25)
    p.add_argument("--min-wait", type=float, default=3.0, help="s after a (re)start, at least")
    p.add_argument("--max-wait", type=float, default=40.0, help="s after a (re)start, at most")
    p.add_argument("--killer-seed", type=int, default=0, help="seed of the kill times")
    p.add_argument("--workdir", help="run folders and logs (default: a fresh temporary folder)")
    p.add_argument("--out", help="JSON report (default: bench/results/kill9-ALGO-ENV.json)")
    p.add_argument("--extra", default="", help="more training flags, one string (shlex-split)")
    args = p.parse_args()
    if not 0 <= args.min_wait <= args.max_wait:
        p.error("need 0 <= --min-wait <= --max-wait")
    env_name = args.env.replace(":", "-").replace("/", "-")
    out = Path(args.out or Path(__file__).parent / "results" / f"kill9-{args.algo}-{env_name}.json")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="kill9-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    ref_dir, run_dir = work / "reference", work / "killed"
    if ref_dir.exists() or run_dir.exists():
        p.error(f"{work} already holds a kill9 test; pass a fresh --workdir")
    killer = np.random.default_rng(args.killer_seed)
    # the code under test, taken now: files edited while the test runs must not be credited to it
    revision = source_revision()

    def start(run: Path) -> list[str]:
        return [
            *TRAIN, args.algo, "--env.id", args.env, "--run.steps", str(args.steps),
            "--run.seed", str(args.seed), "--run.dir", str(run), "--run.progress", "lines",
            "--run.no-tensorboard", "--runner.checkpoint-minutes", str(args.checkpoint_minutes),
            *shlex.split(args.extra),
        ]  # fmt: skip

    resume = [*TRAIN, "--resume", str(run_dir)]

    def restart() -> list[str]:
        # a kill before config.json was written leaves no run to resume: start it over, as a
        # user would (`--resume` rightly refuses a folder that holds no run)
        return resume if (run_dir / "config.json").exists() else start(run_dir)

    print(f"kill9: work folder {work}")

    # 1. the uninterrupted reference
    t0 = time.perf_counter()
    log = work / "reference.log"
    if launch(start(ref_dir), log).wait() != 0:
        fail("the reference run failed", log)
    reference_s = time.perf_counter() - t0
    print(f"kill9: reference finished in {reference_s:.1f} s")

    # 2. the same run, killed at random moments and resumed each time
    kills: list[dict[str, Any]] = []
    finished_early, t_killed, n = False, time.perf_counter(), 0
    while len(kills) < args.kills:
        log, n = work / f"killed-{n:02d}.log", n + 1
        wait = float(killer.uniform(args.min_wait, args.max_wait))
        began, proc = time.perf_counter(), launch(restart(), log)
        try:
            code = proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        after = time.perf_counter() - began
        if code != -signal.SIGKILL:  # it ended before the kill (or in the instant before it)
            if code != 0:
                fail(f"process {n} exited with code {code} before its kill", log)
            if (checkpoint_step(run_dir) or 0) < args.steps:
                fail(f"process {n} exited with code 0 before its kill, unfinished", log)
            print(f"kill9: the run finished before kill {len(kills) + 1}; stopping early")
            finished_early = True
            break
        step = checkpoint_step(run_dir)
        kills.append(
            {
                "after_s": round(after, 3),
                "checkpoint_step": step,  # where the next process continues from
                "next_from_zero": step is None,
                "next_command": "resume" if restart() == resume else "start",
                "log": log.name,
            }
        )
        print(f"kill9: kill {len(kills)} after {after:.1f} s; latest checkpoint: {step}")
    log = work / f"killed-{n:02d}-final.log"
    if launch(restart(), log).wait() != 0:
        fail("the final resume failed", log)
    killed_s = time.perf_counter() - t_killed

    # 3. compare and report
    comparison = compare(ref_dir, run_dir)
    delivered = len(kills)
    passed = comparison["identical"] and delivered >= args.kills
    report = {
        "benchmark": "kill9",
        "created": local_time(),
        **provenance(revision),
        "config": {k: v for k, v in vars(args).items() if k not in ("out", "workdir")},
        "workdir": str(work),
        "commands": {
            "reference": shlex.join(start(ref_dir)),
            "killed_start": shlex.join(start(run_dir)),
            "resume": shlex.join(resume),
        },
        "kills": kills,
        "counts": {
            "kills_requested": args.kills,
            "kills_delivered": delivered,
            "resumes_from_checkpoint": sum(not k["next_from_zero"] for k in kills),
            "restarts_from_zero": sum(k["next_from_zero"] for k in kills),
            "restarts_with_start_command": sum(k["next_command"] == "start" for k in kills),
            "finished_before_all_kills": finished_early,
        },
        "wall_time_s": {"reference": round(reference_s, 2), "killed_total": round(killed_s, 2)},
        "comparison": comparison,
        "passed": passed,
    }
    write_json(out, report, indent=1)
    print(json.dumps({"comparison": comparison, **report["counts"]}, indent=1))
    if finished_early:
        print(f"kill9: only {delivered} of {args.kills} kills delivered: the run finished first")
    print(f"kill9: {'PASSED' if passed else 'FAILED'}; report {out}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
