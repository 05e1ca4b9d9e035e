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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import finish, load_average  # bench/ is not a package

ROOT = Path(__file__).resolve().parent.parent
#: (algorithm, environment, env steps, preset): every algorithm, learning for most of the run
#: (CQN-AS at its quickstart size: its reference network takes most of a second per update)
CASES = [
    ("decqn", "dmc:cartpole-swingup", 3000, "none"),
    ("revalued", "gym:Pendulum-v1", 2000, "none"),
    ("cqn", "gym:Pendulum-v1", 2000, "none"),
    ("cqn_as", "gym:Pendulum-v1", 2000, "quickstart"),
    ("sac", "gym:Pendulum-v1", 2000, "none"),
    ("td3", "gym:Pendulum-v1", 2000, "none"),
]
RUN = """
import dataclasses, inspect, sys, factorl
algo, env, steps, out, preset = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
train = {"env": env, "steps": steps, "eval_every": steps // 2, "eval_episodes": 2,
         "log_every": 500, "progress": "none", "tensorboard": False, "run_dir": out}
agent = {"learning_starts": 500}
if "overrides" in inspect.signature(factorl.make_config).parameters:  # the config in sections
    section = {"env": "env", "eval_every": "runner", "eval_episodes": "runner",
               "log_every": "runner"}
    keys = {f"{section.get(k, 'run')}.{'id' if k == 'env' else k}": v for k, v in train.items()}
    if "dir" in {f.name for f in dataclasses.fields(factorl.RunSettings)}:  # was run.run_dir
        keys["run.dir"] = keys.pop("run.run_dir")
    agent = {f"agent.{k}": v for k, v in agent.items()}
    cfg = factorl.make_config(algo, {**keys, **agent}, preset=preset)
else:  # an earlier commit: flat train and agent dicts
    cfg = factorl.make_config(algo, train, agent, preset=preset)
factorl.train(cfg)
"""


def _records(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "wall_time"} for line in lines]


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True, help="the earlier commit")
    parser.add_argument("--algos", default=",".join(c[0] for c in CASES))
    parser.add_argument("--out", type=Path, help="a report to write (cases already in it are kept)")
    args = parser.parse_args()
    old = _git("rev-parse", args.old)
    report = {
        "what": __doc__.splitlines()[0],
        "old_commit": old,
        "new_commit": _git("rev-parse", "HEAD"),
        "new_tree_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "load_average_start": load_average()},
        "python": sys.version.split()[0],
        "cases": [],
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "old"
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), old], cwd=ROOT,
                       check=True, capture_output=True)  # fmt: skip
        try:
            for algo, env, steps, preset in CASES:
                if algo not in args.algos.split(","):
                    continue
                runs = {}
                for name, code in (("old", tree), ("new", ROOT)):
                    out = Path(tmp) / f"{algo}-{name}"
                    environ = {**os.environ, "PYTHONPATH": str(code)}
                    command = [sys.executable, "-c", RUN, algo, env, str(steps), str(out), preset]
                    subprocess.run(command, check=True, capture_output=True, env=environ, cwd=tmp)
                    runs[name] = _records(out)
                case = {"algo": algo, "env": env, "steps": steps, "preset": preset,
                        "new_commit": report["new_commit"], "records": len(runs["new"]),
                        "identical": runs["old"] == runs["new"]}  # fmt: skip
                report["cases"].append(case)
                print(json.dumps(case), flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT,
                           capture_output=True)  # fmt: skip
    report["command"] = f"python bench/identity.py --old {args.old} --algos {args.algos}"
    if args.out and args.out.exists():  # keep the cases of earlier calls that were not rerun
        earlier = json.loads(args.out.read_text())
        done = {c["algo"] for c in report["cases"]}
        report["cases"] = [c for c in earlier["cases"] if c["algo"] not in done] + report["cases"]
        report["earlier_commands"] = [*earlier.get("earlier_commands", []), earlier["command"]]
    print(finish(report, args.out, load_key="load_average_end"))


if __name__ == "__main__":
    main()
