"""Does the host runner at one environment still run exactly the loop of an earlier commit?

For each algorithm, a short run (learning, evaluation and logging included) is trained twice from
the same config: once with factorl at `--old` (checked out in a temporary git worktree) and once
with this checkout. The two `metrics.jsonl` files are compared record by record, wall times
aside; equal records mean the same losses, Q-values, episode returns and evaluation returns at
every logged step, so results measured with the old loop stand for the new one.

    python bench/identity.py --old c6cb79f --out results/host-runner-identity.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: (algorithm, environment, env steps): every algorithm, learning for most of the run
CASES = [
    ("decqn", "dmc:cartpole-swingup", 3000),
    ("revalued", "gym:Pendulum-v1", 2000),
    ("cqn", "gym:Pendulum-v1", 2000),
    ("cqn_as", "gym:Pendulum-v1", 2000),
    ("sac", "gym:Pendulum-v1", 2000),
    ("td3", "gym:Pendulum-v1", 2000),
]
RUN = """
import sys, factorl
algo, env, steps, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
train = {"env": env, "steps": steps, "eval_every": steps // 2, "eval_episodes": 2,
         "log_every": 500, "progress": "none", "tensorboard": False, "run_dir": out}
factorl.train(factorl.make_config(algo, train, {"learning_starts": 500}))
"""


def _records(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "wall_time"} for line in lines]


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True, help="the earlier commit")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    old = _git("rev-parse", args.old)
    report = {
        "what": __doc__.splitlines()[0],
        "old_commit": old,
        "new_commit": _git("rev-parse", "HEAD"),
        "new_tree_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "load_average_start": os.getloadavg()},
        "python": sys.version.split()[0],
        "cases": [],
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "old"
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), old], cwd=ROOT,
                       check=True, capture_output=True)  # fmt: skip
        try:
            for algo, env, steps in CASES:
                runs = {}
                for name, code in (("old", tree), ("new", ROOT)):
                    out = Path(tmp) / f"{algo}-{name}"
                    environ = {**os.environ, "PYTHONPATH": str(code)}
                    command = [sys.executable, "-c", RUN, algo, env, str(steps), str(out)]
                    subprocess.run(command, check=True, capture_output=True, env=environ, cwd=tmp)
                    runs[name] = _records(out)
                case = {"algo": algo, "env": env, "steps": steps, "records": len(runs["new"]),
                        "identical": runs["old"] == runs["new"]}  # fmt: skip
                report["cases"].append(case)
                print(json.dumps(case), flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT,
                           capture_output=True)  # fmt: skip
    report["machine"]["load_average_end"] = os.getloadavg()
    report["command"] = f"python bench/identity.py --old {args.old}"
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
