"""Turn learning-benchmark JSON files into a per-task table and learning-curve plots.

    python bench/report.py --in results/learning --out results

Writes `OUT/learning.md` (per task and algorithm: seeds, final eval return as mean and 95%
confidence interval over seeds, env steps, wall time per run and return per CPU-hour; where the
evaluations report wins, as on SMAX, the final win rate too) and `OUT/curves-TASK.png` (mean over
seeds with the 95% interval shaded; `OUT/winrate-TASK.png` likewise for win rates). The interval is
Student's t over seeds (scipy), which with 3 seeds is wide, as it should be. On the Control Suite,
where an episode's return lies in [0, 1000], the shaded band is cut to that range: a mean return
cannot lie outside it, and a band reaching below zero only hides the other curves. The table gives
the interval uncut.

Two kinds of reference figure from `../shared/reference/algorithms.md` are shown beside ours where
the note has one: the 3-bin factorised expert returns (returns of a trained data-collecting agent,
not learning-curve points; a column and a dashed line), and the official code's own eval return on
walker-walk, seed 0 (a column, with our mean at the same step, and a cross on the plot).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from factorl.report import (
    EXPERT_LEVELS,
    default_levels,
    plot_curves,
    run_from_result,
    t_interval,
)

#: The official code's own figures from the reference note (walker-walk, seed 0, the same 2-core
#: machine kind): (env step, greedy eval return). DecQN's is the REValueD repository's DecQN
#: variant. One seed each, so a point to read beside ours, not a comparison.
OFFICIAL_POINTS = {
    ("dmc:walker-walk", "decqn"): (100_000, 372.5),
    ("dmc:walker-walk", "revalued"): (30_000, 166.3),
    ("dmc:walker-walk", "cqn"): (50_000, 379.5),
}


def load_runs(folder: Path) -> list[dict[str, Any]]:
    runs = []
    for path in sorted(Path(folder).glob("*.json")):
        data = json.loads(path.read_text())
        if data.get("benchmark") == "learning":
            runs.append(data)
    return runs


def table(runs: list[dict[str, Any]]) -> str:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        groups[(run["env"], run["algo"])].append(run)
    lines = [
        "| task | algorithm | seeds | env steps | final eval return (mean ± 95% CI) "
        "| expert level | official code, seed 0 (ours, mean) | wall time to that step (h) "
        "| return per CPU-hour |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (env, algo), group in sorted(groups.items()):
        steps = min(r["final_env_step"] for r in group)
        finals = [_value_at(r, steps) for r in group]
        mean, half = t_interval(finals)
        d = _decimals(finals)
        ci = f"{mean:.{d}f} ± {half:.{d}f}" if math.isfinite(half) else f"{mean:.{d}f}"
        hours = [_point_at(r, steps)["wall_time"] / 3600 for r in group]  # time to reach `steps`
        cpus = group[0]["machine"].get("cpu_count") or 1
        per_cpu_hour = mean / (np.mean(hours) * cpus) if np.mean(hours) > 0 else math.nan
        expert = EXPERT_LEVELS.get(env)
        lines.append(
            f"| {env} | {algo} | {len(group)} | {steps:,} | {ci} | "
            f"{expert if expert is not None else '-'} | {_official_cell(env, algo, group)} | "
            f"{np.mean(hours):.2f} | {per_cpu_hour:.1f} |"
        )
    return "\n".join(lines) + "\n"


def _decimals(returns: list[float]) -> int:
    """Decimals to print returns with: one, or three where they are a few units (SMAX's), where
    one decimal says nothing."""
    return 1 if max(abs(x) for x in returns) >= 10 else 3


def _official_cell(env: str, algo: str, group: list[dict[str, Any]]) -> str:
    """The official code's figure and our mean at the same step ("-" where we have none)."""
    if (env, algo) not in OFFICIAL_POINTS:
        return "-"
    step, value = OFFICIAL_POINTS[(env, algo)]
    reached = all(step in {p["env_step"] for p in r["curve"]} for r in group)
    ours = f"{np.mean([_value_at(r, step) for r in group]):.1f}" if reached else "-"
    return f"{value:.1f} at {step // 1000}k ({ours})"


def win_rate_table(runs: list[dict[str, Any]]) -> str:
    """Per task and algorithm whose evaluations report wins (SMAX), the final greedy win rate
    over seeds ("" when no run reports them)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        if all("eval_win_rate" in p for p in run["curve"]):
            groups[(run["env"], run["algo"])].append(run)
    if not groups:
        return ""
    lines = [
        "| task | algorithm | seeds | env steps | final eval win rate (mean ± 95% CI) | per seed |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for (env, algo), group in sorted(groups.items()):
        steps = min(r["final_env_step"] for r in group)
        rates = [float(_point_at(r, steps)["eval_win_rate"]) for r in group]
        mean, half = t_interval(rates)
        ci = f"{mean:.3f} ± {half:.3f}" if math.isfinite(half) else f"{mean:.3f}"
        per_seed = ", ".join(f"{x:.3f}" for x in rates)
        lines.append(f"| {env} | {algo} | {len(group)} | {steps:,} | {ci} | {per_seed} |")
    return "\n".join(lines) + "\n"


def _short(revision: str | None) -> str:
    if not revision:
        return "-"  # files written before revisions were recorded
    return revision[:10] + ("+dirty" if revision.endswith("+dirty") else "")


def _revisions(run: dict[str, Any]) -> list[str | None]:
    """The code revisions that trained `run`, in order: one per session for a resumed run."""
    segments = run.get("segments") or [{"source_revision": run.get("source_revision")}]
    revisions = [segment["source_revision"] for segment in segments]
    return [r for i, r in enumerate(revisions) if i == 0 or r != revisions[i - 1]]


def runs_table(runs: list[dict[str, Any]]) -> str:
    """One row per run: its last evaluation, its wall time and the code it ran (every commit, in
    order, for a run resumed across sessions)."""
    lines = [
        "| task | algorithm | seed | env steps | final eval return | wall time (h) | commit |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in sorted(runs, key=lambda r: (r["env"], r["algo"], r["seed"])):
        short = " → ".join(_short(r) for r in _revisions(run))
        last = run["curve"][-1]
        value = float(last["eval_return"])
        lines.append(
            f"| {run['env']} | {run['algo']} | {run['seed']} | {run['final_env_step']:,} | "
            f"{value:.{_decimals([value])}f} | {run['wall_time_s'] / 3600:.2f} | {short} |"
        )
    return "\n".join(lines) + "\n"


def _point_at(run: dict[str, Any], step: int) -> dict[str, Any]:
    """The last evaluation at or before `step`."""
    return [p for p in run["curve"] if p["env_step"] <= step][-1]


def _value_at(run: dict[str, Any], step: int) -> float:
    return float(_point_at(run, step)["eval_return"])


def plot(runs: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """`out_dir/curves-TASK.png` per task (factorl.report's curves), with the official code's
    figures as crosses."""
    marks = {key: (step, value, f"{key[1]}, official code (seed 0)")
             for key, (step, value) in OFFICIAL_POINTS.items()}  # fmt: skip
    return plot_curves(
        [
            run_from_result(run, f"{run['algo']} on {run['env']}, seed {run['seed']}")
            for run in runs
        ],
        out_dir,
        default_levels(),
        marks,
    )


def plot_win_rates(runs: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """`out_dir/winrate-TASK.png` per task whose evaluations report wins."""
    won = [
        run_from_result(
            {**run, "curve": [{**p, "eval_return": p["eval_win_rate"]} for p in run["curve"]]},
            f"{run['algo']} on {run['env']}, seed {run['seed']}",
        )
        for run in runs
        if all("eval_win_rate" in p for p in run["curve"])
    ]
    if not won:
        return []
    return plot_curves(
        won, out_dir, {}, prefix="winrate", ylabel="evaluation win rate", value_range=(0.0, 1.0)
    )


def header(inp: str, out: str) -> str:
    """The title and where the tables come from, so a reader of the generated file knows to
    rerun the command rather than edit it, and where each run's provenance is."""
    source = Path(os.path.relpath(inp, out)).as_posix()
    return (
        "# Learning results\n\n"
        f"Generated by `python bench/report.py --in {inp} --out {out}` from the run files in "
        f"[`{source}/`]({source}) (config, machine, versions and commits of each run); rerun it "
        "rather than edit this file.\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--in", dest="inp", default="results/learning")
    parser.add_argument("--out", default="results")
    args = parser.parse_args(argv)
    runs = load_runs(Path(args.inp))
    if not runs:
        print(f"no learning results in {args.inp}", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    wins = win_rate_table(runs)
    wins = f"\n## Win rates\n\nGreedy evaluations won, at the same steps.\n\n{wins}" if wins else ""
    (out / "learning.md").write_text(
        f"{header(args.inp, args.out)}\n{table(runs)}{wins}\n## Every run\n\n"
        f"Last evaluation of each run and its total wall time.\n\n{runs_table(runs)}"
    )
    for path in [out / "learning.md", *plot(runs, out), *plot_win_rates(runs, out)]:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
