"""A D4RL-style offline-to-online protocol with datasets made here, as one resumable command.

    python bench/offline_protocol.py --envs dmc:walker-walk,dmc:cheetah-run --steps 100000

Per environment, in `--work-dir/ENV/`:

1. source run: `factorl train sac`, evaluated and checkpointed every `--source-checkpoint-every`
   env steps (every checkpoint kept, each with its replay), until a checkpointed evaluation
   reaches the medium level (checked every `--source-segment` checkpoints) or `--source-steps`;
2. the "medium" checkpoint: the earliest whose greedy evaluation reaches `--fraction` of the way
   from the task's low level to its expert level (`--level ENV=LOW:EXPERT`; the Control Suite's
   default is 0 to `factorl.report.EXPERT_LEVELS`), recorded in `medium.json` with why;
3. datasets: `factorl collect` of that checkpoint (`--medium-episodes` episodes, `--noise`) as
   `ENV/medium-v0`, and of its replay (`--replay`) as `ENV/medium-replay-v0`;
4. the comparison, through `factorl.sweep`'s trials (one run folder and one results file per
   trial, a finished trial skipped): `--algos` x {medium, medium-replay} with
   `data.offline_steps` `--offline-steps`, then online to `--steps`, and `--online-algos` with no
   dataset, for `--seeds` (side by side with `run.num_seeds` on JAX-native environments);
5. `--out-dir/summary.json` and `--out-dir/offline.md`: per algorithm x dataset the evaluation at
   the end of the offline phase and the final one (mean and Student-t 95% interval over seeds),
   the dataset recipe and the commands; `--out-dir/curves-TASK.png`. Results files whose agent
   or replay settings differ from what the command would train (say, from before a default
   changed) make a row of their own that names those settings.

Each stage is skipped when its output exists, so running the same command again continues where
a crash or kill left it: the source run and each trial resume from their latest checkpoint.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import provenance, write_json

from factorl.core.config import ConfigError, build_config, saved_settings
from factorl.io import checkpoint as ckpt
from factorl.io import datasets
from factorl.io.logging import read_metrics
from factorl.report import (
    EXPERT_LEVELS,
    Level,
    parse_level,
    plot_curves,
    run_from_result,
    t_interval,
)
from factorl.runners.device import is_jax_env
from factorl.sweep import (
    SOURCE_REVISION,
    Settings,
    Trial,
    build_grid,
    check_trials,
    fixed_overrides,
    parse_seeds,
    result_paths,
    run_trial,
    trial_config,
)
from factorl.train import CHECKPOINT_DIR, collect, make_config, train

#: the dataset axis of the comparison: (label in the table, Minari name under the env's namespace)
DATASETS = (("medium", "medium-v0"), ("medium-replay", "medium-replay-v0"))
#: runner.keep_checkpoints of the source run: more than any run here writes
KEEP_ALL = 10**9
#: the label of the trials that learn online only
ONLINE = "online"


class ProtocolError(RuntimeError):
    """A stage cannot go on; the message says why and what to change."""


def _safe(env: str) -> str:
    return env.replace(":", "-").replace("/", "-")


def dataset_id(env: str, name: str) -> str:
    """The Minari id of one of `env`'s datasets, `ENV/NAME` with a file-safe namespace."""
    return f"{_safe(env)}/{name}"


# ------------------------------------------------------------------------------- 1. source run
def source_run(env: str, args: argparse.Namespace, work: Path, threshold: float) -> Path:
    """Train (or go on training) SAC on `env` until a checkpointed evaluation reaches
    `threshold` or the run reaches `--source-steps`; returns its run folder. Skipped once
    `source-done.json` is written; a killed run resumes from its latest checkpoint.

    Training past the medium level would only cost time and checkpoints (each holds the whole
    replay), so the run goes in segments of `--source-segment` checkpoints and stops after the
    first segment in which the level is reached."""
    run_dir = work / "source-sac"
    if (work / "source-done.json").exists():
        print(f"[protocol] {env}: source run done, skipped")
        return run_dir
    if args.report_only:
        raise ProtocolError(f"{env}: the source run has not finished; run without --report-only")
    cfg = make_config(
        "sac",
        {
            "env.id": env,
            "run.seed": args.source_seed,
            "run.steps": args.source_steps,
            "run.dir": str(run_dir),
            "run.progress": "lines",
            "runner.eval_every": args.source_checkpoint_every,
            "runner.eval_episodes": args.eval_episodes,
            "runner.checkpoint_every": args.source_checkpoint_every,
            "runner.log_every": args.source_checkpoint_every,
            # every checkpoint is a candidate for "medium", and its replay is medium-replay; the
            # timed ones (runner.checkpoint_minutes) must not push early ones out
            "runner.keep_checkpoints": KEEP_ALL,
            "runner.save_replay": True,
            **_sets(["sac"], args.source_set)["sac"],
        },
    )
    segment = args.source_segment * args.source_checkpoint_every
    while True:
        started = (run_dir / "config.json").is_file()
        print(
            f"[protocol] {env}: source run ({'resuming' if started else 'starting'}) in {run_dir}"
        )
        result = train(cfg, resume=run_dir if started else None, stop_after=segment)
        if result.status != "completed":
            raise ProtocolError(f"source run stopped at env step {result.env_step}; run again")
        reached = medium_reached(run_dir, threshold)
        if reached is not None or result.env_step >= args.source_steps:
            break
    write_json(
        work / "source-done.json",
        {"env_step": result.env_step, "medium_reached_at": reached, "threshold": threshold},
    )
    return run_dir


def _evaluations(run_dir: Path) -> list[tuple[int, float]]:
    """(env step, greedy eval return) of every evaluation of the run, in order."""
    return [
        (int(r["env_step"]), float(r["eval_return"]))
        for r in read_metrics(run_dir)
        if r.get("event") == "eval"
    ]


def _reaching(run_dir: Path, threshold: float) -> list[tuple[int, float]]:
    """The evaluations at or above `threshold` at env steps that have a checkpoint, in order."""
    kept = {int(ckpt.read_meta(p)["env_step"]) for p in _checkpoints(run_dir)}
    return [(s, ret) for s, ret in _evaluations(run_dir) if ret >= threshold and s in kept]


def medium_reached(run_dir: Path, threshold: float) -> int | None:
    """The earliest env step whose evaluation reaches `threshold` and which has a checkpoint."""
    reached = _reaching(run_dir, threshold)
    return reached[0][0] if reached else None


# -------------------------------------------------------------------------- 2. medium checkpoint
def pick_medium(env: str, run_dir: Path, level: Level, fraction: float, work: Path) -> dict:
    """The earliest checkpoint whose evaluation reaches `fraction` of `level` (from its low to
    its expert return), recorded in `medium.json`."""
    path = work / "medium.json"
    if path.exists():
        return json.loads(path.read_text())
    threshold = medium_threshold(level, fraction)
    evals = _evaluations(run_dir)
    reached = _reaching(run_dir, threshold)
    if not reached:
        seen = ", ".join(f"{s}: {r:.1f}" for s, r in evals)
        raise ProtocolError(
            f"{env}: no checkpointed evaluation of the source run reaches {threshold:.1f} "
            f"({fraction} of {level.low} to {level.expert}); evaluations: {seen}. Raise "
            "--source-steps (a new source run) or lower --fraction"
        )
    step, ret = reached[0]
    choice = {
        "checkpoint_env_step": step,
        "eval_return": ret,
        "threshold": threshold,
        "fraction": fraction,
        "level": {"low": level.low, "expert": level.expert},
        "normalised_score": float(level.normalise(ret)),
        "source_evaluations": [{"env_step": s, "eval_return": r} for s, r in evals],
        "why": (
            f"the earliest checkpointed greedy evaluation of the source run at or above "
            f"{threshold:.1f} = {level.low} + {fraction} x ({level.expert} - {level.low})"
        ),
    }
    write_json(path, choice)
    print(f"[protocol] {env}: medium checkpoint at env step {step} (eval return {ret:.1f})")
    return choice


def medium_threshold(level: Level, fraction: float) -> float:
    """The return `fraction` of the way from the task's low level to its expert level."""
    return level.low + fraction * (level.expert - level.low)


def _checkpoints(run_dir: Path) -> list[Path]:
    folder = run_dir / CHECKPOINT_DIR
    return sorted(p for p in folder.glob("step_*") if p.is_dir())


# ----------------------------------------------------------------------------------- 3. datasets
def make_datasets(
    env: str, run_dir: Path, step: int, args: argparse.Namespace
) -> dict[str, dict[str, Any]]:
    """Collect the medium and medium-replay datasets (each skipped once it exists: collect
    writes a dataset whole or not at all) and return each one's recipe and size."""
    made = {}
    for label, name in DATASETS:
        out = dataset_id(env, name)
        replay = label == "medium-replay"
        command = f"factorl collect {run_dir} --checkpoint {step} " + (
            "--replay" if replay else f"--episodes {args.medium_episodes} --noise {args.noise}"
        )
        command += f" --out {out}"
        if datasets.dataset_exists(out):
            print(f"[protocol] {env}: dataset {out} exists, skipped")
        elif args.report_only:
            raise ProtocolError(f"{env}: dataset {out} is not made yet; run without --report-only")
        else:
            print(f"[protocol] {env}: {command}")
            if replay:
                collect(run_dir, out, checkpoint=step, replay=True)
            else:
                collect(run_dir, out, args.medium_episodes, args.noise, checkpoint=step)
        meta = json.loads((datasets.dataset_path(out) / "data" / "metadata.json").read_text())
        origin = _json(meta.get("factorl")) or {}
        # a dataset left by another source run or checkpoint would be reused silently
        if (origin.get("source_run"), origin.get("checkpoint_env_step")) != (str(run_dir), step):
            raise ProtocolError(
                f"dataset {out} comes from {origin.get('source_run')} at env step "
                f"{origin.get('checkpoint_env_step')}, not {run_dir} at {step}: remove it from "
                f"{datasets.datasets_root()} or use another MINARI_DATASETS_PATH"
            )
        made[label] = {
            "dataset": out,
            "steps": int(meta["total_steps"]),
            "episodes": int(meta["total_episodes"]),
            "command": command,
            "factorl": origin,
        }
    return made


def _json(value: Any) -> Any:
    """Minari keeps metadata values as strings: a JSON one read back as JSON."""
    try:
        return json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError:
        return value


# --------------------------------------------------------------------------------- 4. the trials
def _sets(algos: list[str], items: list[str]) -> dict[str, dict[str, Any]]:
    return fixed_overrides(algos, items) if items else {a: {} for a in algos}


def comparison(
    env: str, made: dict[str, dict[str, Any]], args: argparse.Namespace, command: str
) -> list[tuple[str, Trial, Settings]]:
    """Run every trial of the comparison not yet finished, one after another in this process
    (none with `--report-only`); returns (dataset label, trial, settings) of each."""
    seeds = parse_seeds(args.seeds)
    vmap = is_jax_env(env) and len(seeds) > 1
    common = dict(
        steps=args.steps,
        eval_every=args.eval_every,
        eval_episodes=args.eval_episodes,
        work_dir=str(Path(args.work_dir) / _safe(env) / "trials"),
        out_dir=args.out_dir,
        command=command,
    )
    planned: list[tuple[str, Trial, Settings]] = []
    algos = _split(args.algos)
    if algos:
        offline = _sets(algos, [f"data.offline_steps={args.offline_steps}", *args.set])
        axis = [("data.dataset", [made[label]["dataset"] for label, _ in DATASETS])]
        settings = Settings(fixed=offline, **common)
        labels = {made[label]["dataset"]: label for label, _ in DATASETS}
        for trial in build_grid(algos, [env], seeds, axis, vmap_seeds=vmap):
            planned.append((labels[dict(trial.variant)["data.dataset"]], trial, settings))
    online = _split(args.online_algos)
    if online:
        settings = Settings(fixed=_sets(online, args.set), **common)
        for trial in build_grid(online, [env], seeds, vmap_seeds=vmap):
            planned.append((ONLINE, trial, settings))
    for _, trial, settings in planned:
        check_trials([trial], settings)
    if args.reuse_results:
        for _, trial, settings in planned:
            reuse_result(trial, settings, Path(args.reuse_results))
    if args.report_only:
        return planned
    for _, trial, settings in planned:
        outcome = run_trial(trial, settings)
        print(f"[protocol] {trial.name}: {outcome['status']} ({outcome['message']})")
        if outcome["status"] not in ("finished", "skipped"):
            raise ProtocolError(f"{trial.name}: {outcome['message']}")
    return planned


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    """A results file's config as today's `Config` would hold it (older layouts converted),
    without the run folder, which names where it ran, not what."""
    algo, settings = saved_settings(config)
    built = build_config(algo, settings).to_dict()
    built["run"]["dir"] = None
    return built


def reuse_result(trial: Trial, settings: Settings, folder: Path) -> bool:
    """Copy `folder/NAME.json` into the out-dir as the results file of `trial` (not finished
    here) when it holds a finished run whose config equals the trial's, setting by setting: the
    same run made elsewhere, e.g. the online CQN runs of `results/learning`. Whether it did."""
    if len(trial.seeds) != 1:  # seeds side by side: one run folder, a file per seed
        return False
    path, found = result_paths(trial, settings)[0], folder / f"{trial.name}.json"
    if path.is_file() or not found.is_file():
        return False
    try:
        data = json.loads(found.read_text())
        same = _comparable(data["config"]) == _comparable(trial_config(trial, settings).to_dict())
        finished = int(data["final_env_step"]) >= settings.steps
    except (ValueError, KeyError, TypeError, AttributeError, ConfigError) as e:
        print(f"[protocol] {trial.name}: {found} not reused (unreadable: {e})")
        return False
    if not (same and finished):
        why = "another config" if not same else f"ends at {data['final_env_step']:,} env steps"
        print(f"[protocol] {trial.name}: {found} not reused ({why})")
        return False
    data["reused_from"] = str(found)
    write_json(path, data)
    print(f"[protocol] {trial.name}: reused {found} (the same config, finished)")
    return True


def sweep_commands(env: str, made: dict[str, dict[str, Any]], args: argparse.Namespace) -> list:
    """The `factorl sweep` commands that run the same trials (same names, settings and files),
    e.g. on Ray or a job array instead of one after another here."""
    seeds = parse_seeds(args.seeds)
    vmap = " --vmap-seeds" if is_jax_env(env) and len(seeds) > 1 else ""
    work = Path(args.work_dir) / _safe(env) / "trials"
    base = (
        f"--envs {env} --seeds {args.seeds} --steps {args.steps} --eval-every {args.eval_every} "
        f"--eval-episodes {args.eval_episodes}{vmap} --work-dir {work} --out-dir {args.out_dir}"
    )
    sets = "".join(f" --set {shlex.quote(s)}" for s in args.set)
    commands = []
    if _split(args.algos):
        names = ",".join(made[label]["dataset"] for label, _ in DATASETS)
        commands.append(
            f"factorl sweep --algos {args.algos} {base} --grid data.dataset={names} "
            f"--set data.offline_steps={args.offline_steps}{sets}"
        )
    if _split(args.online_algos):
        commands.append(f"factorl sweep --algos {args.online_algos} {base}{sets}")
    return commands


# ---------------------------------------------------------------------------------- 5. the table
def offline_eval(result: dict[str, Any]) -> float | None:
    """The greedy evaluation at the end of the offline phase: the results file's curve point
    tagged "phase": "offline" (at env step 0); in files written before that tag, the
    evaluation at env step 0 of a run with offline steps (the committed Pendulum trials)."""
    curve = result["curve"]
    for point in curve:
        if point.get("phase") == "offline":
            return float(point["eval_return"])
    offline_steps = (result.get("config", {}).get("data") or {}).get("offline_steps")
    if offline_steps and curve and curve[0]["env_step"] == 0:
        return float(curve[0]["eval_return"])
    return None


#: the config sections a row names a difference in: the learner's own settings (the protocol
#: sets the env, run, runner and data sections itself, from its flags)
LABELLED_SECTIONS = ("agent", "replay")


def changed_settings(config: dict[str, Any], planned: dict[str, Any]) -> dict[str, Any]:
    """The agent and replay settings of a results file's `config` that differ from the trial's
    planned ones (the algorithm's defaults with `planned`, its `--set` values): a file trained
    at other settings, e.g. before a default changed, is a row of its own that says so."""
    ran = _comparable(config)
    ours = {k: v for k, v in planned.items() if k.split(".")[0] in LABELLED_SECTIONS}
    meant = build_config(ran["algo"], ours).to_dict()
    return {
        f"{section}.{name}": value
        for section in LABELLED_SECTIONS
        for name, value in ran[section].items()
        if value != meant[section][name]
    }


def algorithm_text(algo: str, settings: dict[str, Any]) -> str:
    """The table's algorithm cell: its name, with the settings its files changed."""
    changed = ", ".join(f"{key}={value}" for key, value in sorted(settings.items()))
    return f"{algo} ({changed})" if changed else algo


def _cell(values: list[float]) -> dict[str, Any]:
    mean, half = t_interval(values)
    return {"mean": mean, "ci95": half, "per_seed": values}


def _text(cell: dict[str, Any] | None) -> str:
    if cell is None:
        return "-"
    return (
        f"{cell['mean']:.1f} ± {cell['ci95']:.1f}"
        if math.isfinite(cell["ci95"])
        else (f"{cell['mean']:.1f}")
    )


def summarise(
    env: str, planned: list[tuple[str, Trial, Settings]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per (algorithm, dataset, changed settings) row of the table, and the results files it
    was built from; a seed whose trial has not finished (`--report-only`) is left out, a row
    without any too. Files whose agent or replay settings differ from the trial's planned ones
    (`changed_settings`) make a row of their own, named by them."""
    # the trials of one row: one per seed on the host, all its seeds at once on a device
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    results = []
    for label, trial, settings in planned:
        for seed, path in zip(trial.seeds, result_paths(trial, settings), strict=True):
            if not path.is_file():
                continue
            data = json.loads(path.read_text())
            results.append(data)
            changed = changed_settings(data["config"], dict(settings.fixed.get(trial.algo, {})))
            group = groups.setdefault(
                (trial.algo, label, json.dumps(changed, sort_keys=True)),
                {"changed": changed, "finals": [], "offlines": [], "steps": [], "done": []},
            )
            group["done"].append((seed, path))
            group["finals"].append(float(data["curve"][-1]["eval_return"]))
            group["steps"].append(int(data["final_env_step"]))
            if label != ONLINE:
                value = offline_eval(data)
                if value is not None:
                    group["offlines"].append(value)
    rows = [
        {
            "env": env,
            "algo": algo,
            "dataset": label,
            "changed_settings": group["changed"],
            "seeds": [seed for seed, _ in group["done"]],
            "final_env_step": min(group["steps"]),
            "offline_end_eval": _cell(group["offlines"]) if group["offlines"] else None,
            "final_eval": _cell(group["finals"]),
            "results": [str(path) for _, path in group["done"]],
        }
        for (algo, label, _), group in groups.items()
    ]
    return rows, results


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| task | algorithm | dataset | seeds | env steps | offline-phase end eval "
        "(mean ± 95% CI) | final eval (mean ± 95% CI) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['env']} | {algorithm_text(r['algo'], r.get('changed_settings', {}))} | "
            f"{r['dataset']} | {len(r['seeds'])} | "
            f"{r['final_env_step']:,} | {_text(r['offline_end_eval'])} | "
            f"{_text(r['final_eval'])} |"
        )
    return "\n".join(lines) + "\n"


def recipe_text(env: str, recipe: dict[str, Any]) -> str:
    medium = recipe["medium_checkpoint"]
    lines = [
        f"### {env}",
        "",
        f"- source run: SAC, seed {recipe['source_seed']}, trained to env step "
        f"{recipe['source_env_steps']:,} (at most {recipe['source_steps']:,}, stopped once a "
        f"checkpointed evaluation reached the medium level), evaluated and checkpointed every "
        f"{recipe['source_checkpoint_every']:,} (`{recipe['source_run']}`)",
        f"- medium checkpoint: env step {medium['checkpoint_env_step']:,}, eval return "
        f"{medium['eval_return']:.1f} (normalised {medium['normalised_score']:.2f}); "
        f"{medium['why']}",
    ]
    for label, made in recipe["datasets"].items():
        lines.append(
            f"- {label}: `{made['dataset']}`, {made['steps']:,} steps, {made['episodes']:,} "
            f"episodes: `{made['command']}`"
        )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------- main
def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _levels(items: list[str]) -> dict[str, Level]:
    levels = {env: Level(value) for env, value in EXPERT_LEVELS.items()}
    for item in items:
        env, level = parse_level(item)
        levels[env] = level
    return levels


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--envs", default="dmc:walker-walk,dmc:cheetah-run")
    p.add_argument("--algos", default="arsq,cqn,decqn", help="trained from each dataset")
    p.add_argument("--online-algos", default="cqn", help="trained online only, the baseline")
    p.add_argument("--seeds", default="0-2", help="seeds of the comparison (0-2)")
    p.add_argument("--steps", type=int, default=100_000, help="online env steps per trial")
    p.add_argument("--offline-steps", type=int, default=20_000, help="data.offline_steps")
    p.add_argument("--eval-every", type=int, default=10_000)
    p.add_argument("--eval-episodes", type=int, default=5)
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="a setting of every comparison trial (as factorl sweep --set)",
    )
    p.add_argument(
        "--source-steps", type=int, default=500_000, help="most env steps of the SAC run"
    )
    p.add_argument(
        "--source-checkpoint-every",
        type=int,
        default=10_000,
        help="env steps between the source run's evaluations and checkpoints",
    )
    p.add_argument(
        "--source-segment",
        type=int,
        default=5,
        help="checkpoints between checks whether the source run has reached the medium level "
        "(it stops there; each check restarts the run from its checkpoint)",
    )
    p.add_argument("--source-seed", type=int, default=0)
    p.add_argument(
        "--source-set",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="a setting of the source SAC run",
    )
    p.add_argument(
        "--level",
        action="append",
        default=[],
        metavar="ENV=LOW:EXPERT",
        help="the task's low and expert returns (default: 0 and "
        "factorl.report.EXPERT_LEVELS on the Control Suite)",
    )
    p.add_argument(
        "--fraction",
        type=float,
        default=0.5,
        help="'medium': the share of the way from low to expert (0.5)",
    )
    p.add_argument("--medium-episodes", type=int, default=1000, help="episodes of medium-v0")
    p.add_argument("--noise", type=float, default=0.0, help="collect --noise of medium-v0")
    p.add_argument(
        "--report-only",
        action="store_true",
        help="write the table, summary and curves from the trials finished so far; train and "
        "collect nothing (a table that grows as a long protocol goes on)",
    )
    p.add_argument(
        "--reuse-results",
        default=None,
        metavar="DIR",
        help="take a trial's results file from DIR (e.g. results/learning for the online "
        "baseline) when it is a finished run whose config equals the trial's, setting by "
        "setting, instead of training it again",
    )
    p.add_argument("--work-dir", default="runs/offline")
    p.add_argument("--out-dir", default="results/offline")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    command = " ".join(["python bench/offline_protocol.py", *map(shlex.quote, argv)])
    levels = _levels(args.level)
    envs = _split(args.envs)
    missing = [env for env in envs if env not in levels]
    if missing:
        print(
            f"error: no level for {missing[0]}: give --level {missing[0]}=LOW:EXPERT",
            file=sys.stderr,
        )
        return 2
    if args.reuse_results and not Path(args.reuse_results).is_dir():
        print(f"error: --reuse-results {args.reuse_results} is not a folder", file=sys.stderr)
        return 2
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    recipes, rows, results, commands, pending = {}, [], [], [], []
    try:
        for env in envs:
            work = Path(args.work_dir) / _safe(env)
            work.mkdir(parents=True, exist_ok=True)
            threshold = medium_threshold(levels[env], args.fraction)
            run_dir = source_run(env, args, work, threshold)
            medium = pick_medium(env, run_dir, levels[env], args.fraction, work)
            made = make_datasets(env, run_dir, medium["checkpoint_env_step"], args)
            recipes[env] = {
                "source_run": str(run_dir),
                "source_seed": args.source_seed,
                "source_steps": args.source_steps,
                "source_env_steps": json.loads((work / "source-done.json").read_text())["env_step"],
                "source_checkpoint_every": args.source_checkpoint_every,
                "medium_checkpoint": medium,
                "datasets": made,
            }
            planned = comparison(env, made, args, command)
            pending += [
                trial.name
                for _, trial, settings in planned
                if not all(p.is_file() for p in result_paths(trial, settings))
            ]
            env_rows, env_results = summarise(env, planned)
            rows += env_rows
            results += env_results
            commands += sweep_commands(env, made, args)
    except (ProtocolError, ConfigError, ckpt.CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    summary = {
        "benchmark": "offline_protocol",
        "command": command,
        "equivalent_sweep_commands": commands,
        "settings": vars(args),
        "levels": {env: {"low": levels[env].low, "expert": levels[env].expert} for env in envs},
        "recipes": recipes,
        "rows": rows,
        "pending_trials": pending,  # not finished yet (--report-only); their seeds are left out
        "wall_time_s_this_invocation": time.time() - started,
        **provenance(SOURCE_REVISION),
    }
    write_json(out / "summary.json", summary)
    text = [
        "# Offline-to-online protocol\n",
        f"Generated by `{command}`; rerun it rather than edit this file (finished stages are "
        "skipped). Per-trial results files beside it; `summary.json` holds every number.\n",
        "Offline-phase end eval: the greedy evaluation after `data.offline_steps` updates from the "
        "dataset, before any env step. Final eval: the last evaluation. Mean and Student-t 95% "
        "interval over seeds.\n",
        *(
            [
                "An algorithm with settings in brackets: its results files ran at those, not at "
                "this command's (say, before a default changed).\n"
            ]
            if any(r["changed_settings"] for r in rows)
            else []
        ),
        table(rows),
        *(
            [f"Not finished yet, left out: {len(pending)} trials ({', '.join(pending)}).\n"]
            if pending
            else []
        ),
        "## Datasets\n",
        *(recipe_text(env, recipes[env]) for env in envs),
        "## Equivalent sweep commands\n",
        "```bash\n" + "\n".join(commands) + "\n```\n",
    ]
    (out / "offline.md").write_text("\n".join(text))
    if results:
        plot_curves([run_from_result(r, r.get("command", "")) for r in results], out, levels)
    print(f"[protocol] wrote {out / 'offline.md'} and {out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
