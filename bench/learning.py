"""Learning benchmark: algorithms x environments x seeds for a step budget, one JSON per run.

    python bench/learning.py --algos decqn --envs dmc:walker-walk,dmc:cheetah-run \
        --seeds 0,1,2 --steps 100000 --eval-every 10000

Each run trains with the algorithm's reference defaults (plus any `--set SECTION.FIELD=VALUE`) in
`--work-dir/ALGO__ENV__sSEED` and, when it finishes, writes `--out-dir/ALGO__ENV__sSEED.json`: the
evaluation curve (env step, mean and per-episode eval returns, wall time), the config, the machine
and library versions, and the command. Runs whose JSON exists are skipped; unfinished runs whose
folder holds a checkpoint are resumed, so a sweep can be spread over several sessions (commit each
JSON as it lands). Each process that trains a run first adds its code revision and starting env
step to the run folder's `segments.json`, which the JSON carries as `segments`, so a run resumed
across sessions names every commit that trained it. `--from-run RUN_DIR` writes the JSON of a run
trained some other way (one JSON per seed where the device runner trained several side by side).
`bench/report.py` turns the JSON files into a table and plots.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from factorl.core.config import ConfigError, overrides_by_algo
from factorl.io import checkpoint as ckpt
from factorl.io.logging import read_metrics
from factorl.io.runfolder import CONFIG_FILE, RunFolderError
from factorl.io.system import process_settings, source_revision
from factorl.train import CHECKPOINT_DIR, TrainingStopped, load_config, make_config, train

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # bench/ is not a package

#: the code this process runs, taken at start: commits made while a long run goes on do not count
SOURCE_REVISION = source_revision()
#: in a run folder: the code revision of every process that trained the run, with its start step
SEGMENTS_FILE = "segments.json"


#: the settings each run of the sweep takes from the sweep's own flags, not from --set (the
#: others it sets, such as runner.log_every, --set may change)
SWEEP_KEYS = frozenset(
    {"env.id", "run.seed", "run.steps", "run.dir", "runner.eval_every", "runner.eval_episodes"}
)


def run_name(algo: str, env: str, seed: int) -> str:
    return f"{algo}__{env.replace(':', '-').replace('/', '-')}__s{seed}"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def read_segments(run_dir: Path) -> list[dict[str, Any]] | None:
    """The run's segments (see `record_segment`); None for a run trained outside a sweep."""
    path = Path(run_dir) / SEGMENTS_FILE
    return json.loads(path.read_text()) if path.exists() else None


def record_segment(run_dir: Path, checkpoint: Path | None) -> None:
    """Add this process to the run's segments before it trains from `checkpoint` (None: from
    the start): a run resumed across sessions may have been trained by several commits, and its
    results should name each of them."""
    start = ckpt.read_meta(checkpoint)["env_step"] if checkpoint else 0
    segment = {
        "from_env_step": start,
        "source_revision": SOURCE_REVISION,
        "started": _now(),
        **process_settings(),  # a pinned or single-threaded session runs at other speeds
    }
    write_json(Path(run_dir) / SEGMENTS_FILE, [*(read_segments(run_dir) or []), segment])


def summarise_run(run_dir: Path, command: str, seed: int | None = None) -> dict[str, Any]:
    """The results record of a finished run folder; for a run of several seeds side by side
    (the device runner's `run.num_seeds`), that of `seed`."""
    cfg = load_config(run_dir)
    if seed is None:
        if cfg.run.num_seeds > 1:
            raise ValueError(f"{run_dir} trained {cfg.run.num_seeds} seeds: name one")
        seed = cfg.run.seed
    records = [r for r in read_metrics(run_dir) if r.get("seed", cfg.run.seed) == seed]
    curve = [
        {
            "env_step": r["env_step"],
            "env_frames": r.get("env_frames", r["env_step"]),
            "eval_return": r["eval_return"],
            "eval_returns": r.get("eval_returns", []),
            **({"eval_win_rate": r["eval_win_rate"]} if "eval_win_rate" in r else {}),
            "wall_time": r["wall_time"],
        }
        for r in records
        if r.get("event") == "eval"
    ]
    if not curve:
        raise ValueError(f"{run_dir} has no evaluation records for seed {seed}")
    last = ckpt.latest_checkpoint(Path(run_dir) / CHECKPOINT_DIR)
    return {
        "benchmark": "learning",
        "algo": cfg.algo,
        "env": cfg.env.id,
        "seed": seed,
        "steps": cfg.run.steps,
        "final_env_step": curve[-1]["env_step"],
        "wall_time_s": max(r.get("wall_time", 0.0) for r in records),
        "curve": curve,
        "config": cfg.to_dict(),
        "checkpoint": str(last) if last else None,
        **_common.provenance(SOURCE_REVISION),  # the process writing this file
        "segments": read_segments(run_dir),  # each process that trained the run
        "command": command,
        "created": _now(),
        **({"seeds_side_by_side": cfg.run.num_seeds} if cfg.run.num_seeds > 1 else {}),
    }


def write_json(path: Path, data: Any) -> None:
    """The shared writer at the indent the committed results/learning files use."""
    _common.write_json(path, data, indent=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algos", default="decqn", help="comma-separated algorithm names")
    parser.add_argument("--envs", default="dmc:walker-walk", help="comma-separated env ids")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds")
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--eval-every", type=int, default=10_000)
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="a setting of every run, by its dotted key as in 'factorl train -h' (repeatable); "
        "it applies to each algorithm that has it",
    )
    parser.add_argument("--work-dir", default="runs/learning", help="run folders (not committed)")
    parser.add_argument("--out-dir", default="results/learning", help="where the JSON goes")
    parser.add_argument("--from-run", metavar="RUN_DIR", help="only summarise this finished run")
    parser.add_argument(
        "--train-command", help="with --from-run: the command that trained it (recorded as is)"
    )
    args = parser.parse_args(argv)
    command = "python bench/learning.py " + " ".join(sys.argv[1:] if argv is None else argv)
    out_dir = Path(args.out_dir)
    if args.from_run:  # one file per seed (a device run may train several side by side)
        run_dir = Path(args.from_run)
        cfg = load_config(run_dir)
        for seed in range(cfg.run.seed, cfg.run.seed + cfg.run.num_seeds):
            data = summarise_run(run_dir, args.train_command or command, seed)
            path = out_dir / (run_name(data["algo"], data["env"], data["seed"]) + ".json")
            write_json(path, data)
            print(f"wrote {path}")
        return 0
    algos = args.algos.split(",")
    try:
        overrides = overrides_by_algo(algos, args.overrides)
        clash = sorted({key for values in overrides.values() for key in values} & SWEEP_KEYS)
        if clash:
            raise ConfigError(
                f"--set {clash[0]}: the sweep sets it from its own flags (--envs, --seeds, "
                "--steps, --eval-every, --eval-episodes, --work-dir)"
            )
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for algo in algos:
        for env in args.envs.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                name = run_name(algo, env, seed)
                out = out_dir / f"{name}.json"
                if out.exists():
                    print(f"skip {name}: {out} exists")
                    continue
                run_dir = Path(args.work_dir) / name
                try:
                    cfg = make_config(
                        algo,
                        {
                            "env.id": env,
                            "run.seed": seed,
                            "run.steps": args.steps,
                            "runner.eval_every": args.eval_every,
                            "runner.eval_episodes": args.eval_episodes,
                            "runner.checkpoint_every": args.eval_every,
                            "run.dir": str(run_dir),
                            "run.progress": "lines",
                            "runner.log_every": args.eval_every,
                            **overrides[algo],
                        },
                    )
                    checkpoint = ckpt.latest_checkpoint(run_dir / CHECKPOINT_DIR)
                    record_segment(run_dir, checkpoint)
                    # a run killed before its first checkpoint has a config to restart from
                    started = (run_dir / CONFIG_FILE).is_file()
                    result = train(cfg, resume=run_dir if started else None)
                except ConfigError as e:
                    print(f"error: {name}: {e}", file=sys.stderr)
                    return 2
                except (ckpt.CheckpointError, TrainingStopped, RunFolderError) as e:
                    # as the CLI does: one line naming the run, not a traceback; the other
                    # runs' results are already written, so nothing else is lost
                    print(f"error: {name}: {e}", file=sys.stderr)
                    return 1
                if result.status != "completed" or result.env_step < args.steps:
                    print(f"{name} interrupted at {result.env_step}; run again to resume")
                    return 130
                write_json(out, summarise_run(run_dir, command))
                print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
