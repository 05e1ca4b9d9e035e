"""Aggregate reports over seeds and tasks (`factorl report RUNS... --out DIR`).

A run's score is its final greedy evaluation return (the last `eval` record of its
`metrics.jsonl`, or the last point of a learning-result file's curve). Scores are grouped by task
(env id) and algorithm over seeds and summarised as Agarwal et al. (2021), "Deep reinforcement
learning at the edge of the statistical precipice" (NeurIPS), recommend for few runs: the
interquartile mean (IQM), mean, median and optimality gap with stratified-bootstrap confidence
intervals, performance profiles and the probability of improvement, all computed by their
library, rliable. Where a task has an expert level, scores are normalised, (return - low) /
(expert - low); elsewhere they stay raw returns, which are summarised per task but never averaged
across tasks (their scales differ).

Loading runs needs nothing beyond the standard library and NumPy, and reads JSON only: nothing
from a run folder or results file is imported or executed. rliable and matplotlib come with the
`report` extra and are imported when a report is written.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from factorl.core.config import install_hint

#: 3-bin factorised expert returns on DMC (REValueD authors' offline datasets), from the
#: reference note; returns of a trained agent, not learning-curve points.
EXPERT_LEVELS = {
    "dmc:walker-walk": 900.3,
    "dmc:walker-run": 701.2,
    "dmc:cheetah-run": 664.57,
    "dmc:quadruped-walk": 781.19,
    "dmc:quadruped-run": 753.4,
    "dmc:finger-spin": 853.62,
    "dmc:fish-swim": 418.58,
    "dmc:humanoid-stand": 711.9,
    "dmc:dog-trot": 724.37,
}
EXPERT_LABEL = "3-bin expert level"

#: coverage of every interval in a report
CONFIDENCE = 0.95
#: the aggregate metrics, in the order of rliable's figures
METRICS = ("IQM", "mean", "median", "optimality gap")
INSTALL_HINT = install_hint("report")
#: what a run folder holds (the names factorl.io.logging and the run session write)
METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.json"


class ReportError(ValueError):
    """Input a report cannot be made from, or a missing extra: the message is one line that
    says what to do."""


@dataclass(frozen=True)
class Run:
    """One seed of one algorithm on one task: its greedy evaluations, by env step."""

    algo: str
    env: str
    seed: int
    curve: tuple[tuple[int, float], ...]  # (env step, mean eval return), increasing steps
    source: str  # the run folder or file it was read from, for messages

    @property
    def final_step(self) -> int:
        return self.curve[-1][0]

    def score(self, at_step: int | None = None) -> float:
        """The last evaluation return at or before `at_step` (None: the final one)."""
        return self.point_at(self.final_step if at_step is None else at_step)[1]

    def point_at(self, step: int) -> tuple[int, float]:
        """The last evaluation at or before `step`."""
        earlier = [p for p in self.curve if p[0] <= step]
        if not earlier:
            raise ReportError(
                f"{self.source} (seed {self.seed}) has no evaluation at or before env step "
                f"{step:,} (its first is at {self.curve[0][0]:,}); give a later --at-step"
            )
        return earlier[-1]


@dataclass(frozen=True)
class Level:
    """What normalised scores 0 and 1 mean on a task: (return - low) / (expert - low)."""

    expert: float
    low: float = 0.0  # the Control Suite's lowest return: rewards lie in [0, 1]
    label: str = EXPERT_LABEL

    def normalise(self, returns: np.ndarray) -> np.ndarray:
        return (np.asarray(returns, dtype=float) - self.low) / (self.expert - self.low)

    def describe(self) -> str:
        if self.low == 0.0:
            return f"return / {self.expert:g}"
        return f"(return - {self.low:g}) / ({self.expert:g} - {self.low:g})"


def default_levels() -> dict[str, Level]:
    return {env: Level(value) for env, value in EXPERT_LEVELS.items()}


def parse_level(text: str) -> tuple[str, Level]:
    """`ENV=EXPERT` or `ENV=LOW:EXPERT` (the --level option) as (env id, level)."""
    env, sep, value = text.rpartition("=")  # env ids hold ':' but never '='
    low_text, _, expert_text = value.rpartition(":")
    try:
        expert = float(expert_text)
        low = float(low_text) if low_text else 0.0
    except ValueError:
        expert = low = math.nan
    if not sep or not env or not (math.isfinite(expert) and math.isfinite(low)):
        raise ReportError(
            f"--level {text}: expected ENV=EXPERT or ENV=LOW:EXPERT with numbers, e.g. "
            "dmc:walker-walk=900 or jaxmarl:MPE_simple_spread_v3=-60:-20"
        )
    if expert == low:
        raise ReportError(f"--level {text}: the expert level must differ from the low one")
    return env, Level(expert, low, "expert level")


# ---------------------------------------------------------------------------------- loading


def _one_line(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _curve(points: Iterable[Any], source: str) -> tuple[tuple[int, float], ...]:
    """(env step, eval return) pairs by step; a step evaluated twice keeps its last value."""
    by_step: dict[int, float] = {}
    for point in points:
        step = point.get("env_step") if isinstance(point, dict) else None
        value = point.get("eval_return") if isinstance(point, dict) else None
        if not isinstance(step, int) or isinstance(step, bool):
            raise ReportError(
                f"{source}: an evaluation has no whole env_step ({_one_line(point)}); "
                "pass run folders written by factorl train or files written by factorl sweep"
            )
        # bool is an int to Python but never a return; the metrics writer stores NaN as "nan"
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or not math.isfinite(value):
            raise ReportError(
                f"{source}: the evaluation at env step {step:,} has eval_return "
                f"{_one_line(value)}, not a finite number; leave this run out"
            )
        by_step[step] = float(value)
    return tuple(sorted(by_step.items()))


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ReportError(f"cannot read {path} ({getattr(e, 'strerror', None) or e})") from None
    try:
        return json.loads(text)  # data only: nothing read here is imported or run
    except RecursionError:
        raise ReportError(f"{path} is not a results file (its JSON nests too deeply)") from None
    except json.JSONDecodeError as e:
        raise ReportError(
            f"{path} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}); pass the "
            "result files factorl sweep writes, or run folders"
        ) from None


def run_from_result(data: Any, source: str) -> Run:
    """The run a learning-result file (factorl sweep's JSON) describes."""
    if not isinstance(data, dict) or data.get("benchmark") != "learning":
        raise ReportError(
            f'{source} is not a learning-result file (no "benchmark": "learning"); pass the '
            "result files factorl sweep writes, or run folders"
        )
    kinds = {"algo": str, "env": str, "seed": int, "curve": list}
    for key, kind in kinds.items():
        if not isinstance(data.get(key), kind) or isinstance(data.get(key), bool):
            raise ReportError(f"{source} has no valid {key!r} ({kind.__name__}); is it complete?")
    curve = _curve(data["curve"], source)
    if not curve:
        raise ReportError(f"{source} holds no evaluation (its curve is empty); leave it out")
    return Run(_variant_name(data["algo"], data.get("grid"), source), data["env"], data["seed"],
               curve, source)  # fmt: skip


def _variant_name(algo: str, grid: Any, source: str) -> str:
    """The name a run is reported under: its algorithm, and for a trial of a sweep's --grid
    its axis values, `decqn[learning_rate=0.0001]`, so that each grid value is compared as an
    algorithm of its own (the field name alone, as the sweep names its trials)."""
    if grid is None:
        return algo
    scalar = (str, int, float, bool)
    if not isinstance(grid, dict) or not all(
        isinstance(k, str) and isinstance(v, scalar) for k, v in grid.items()
    ):
        raise ReportError(f"{source} has a malformed 'grid' (a map of settings to values)")
    if not grid:
        return algo
    fields = [key.partition(".")[2] for key in grid]
    # two axes of one field name in different sections keep their whole keys
    names = fields if len(set(fields)) == len(fields) else list(grid)
    values = ", ".join(f"{n}={str(v)[:40]}" for n, v in zip(names, grid.values(), strict=True))
    return f"{algo}[{values}]"


def runs_from_folder(path: Path) -> list[Run]:
    """One run per seed of a run folder (a device run may train several side by side, each of
    its records then tagged with its `seed`)."""
    from factorl.core.config import ConfigError
    from factorl.io.logging import read_metrics
    from factorl.runners.session import load_config

    if not (path / METRICS_FILE).is_file():
        raise ReportError(
            f"{path} has no {METRICS_FILE}: its run has not started, or it is not a run folder; "
            "train it with factorl train, or leave it out"
        )
    try:
        cfg = load_config(path)  # json, checked as make_config checks: no code is run
        records = read_metrics(path)
    except ConfigError as e:
        raise ReportError(str(e)) from None
    except (OSError, UnicodeDecodeError, RecursionError) as e:
        raise ReportError(f"cannot read {path / METRICS_FILE} ({e})") from None
    runs = []
    for seed in range(cfg.run.seed, cfg.run.seed + cfg.run.num_seeds):
        evals = [
            r
            for r in records
            if isinstance(r, dict)
            and r.get("event") == "eval"
            and r.get("seed", cfg.run.seed) == seed
        ]
        if not evals:
            which = f" for seed {seed}" if cfg.run.num_seeds > 1 else ""
            raise ReportError(
                f"{path} has no evaluation record{which} yet: train it past its first evaluation "
                "(runner.eval_every), or leave it out"
            )
        runs.append(Run(cfg.algo, cfg.env.id, seed, _curve(evals, str(path)), str(path)))
    return runs


def _is_run_folder(path: Path) -> bool:
    return (path / METRICS_FILE).is_file() or (path / CONFIG_FILE).is_file()


def _load_path(path: Path) -> list[Run]:
    if path.is_file():
        return [run_from_result(_read_json(path), str(path))]
    if not path.is_dir():
        raise ReportError(f"{path} does not exist")
    if _is_run_folder(path):
        return runs_from_folder(path)
    # a folder of runs (runs/learning) or of result files (results/learning), one level deep;
    # other JSON files there (a throughput result, say) are not learning results and are skipped
    found: list[Run] = []
    for child in sorted(path.iterdir()):
        if child.is_dir() and _is_run_folder(child):
            found += runs_from_folder(child)
        elif child.is_file() and child.suffix == ".json":
            data = _read_json(child)
            if isinstance(data, dict) and data.get("benchmark") == "learning":
                found.append(run_from_result(data, str(child)))
    if not found:
        raise ReportError(
            f"{path} is not a run folder (no {METRICS_FILE}) and holds no run folders or "
            "learning-result JSON files; pass run folders written by factorl train or files "
            "written by factorl sweep"
        )
    return found


def load_runs(paths: Sequence[str | Path]) -> list[Run]:
    """Every run in `paths`: run folders, learning-result JSON files, or folders holding
    either; one seed of one algorithm on one task may come from one place only."""
    runs = [run for path in paths for run in _load_path(Path(path))]
    if not runs:
        raise ReportError("no runs given; pass run folders or learning-result JSON files")
    seen: dict[tuple[str, str, int], str] = {}
    for run in runs:
        key = (run.algo, run.env, run.seed)
        if key in seen:  # counting a seed twice would narrow every interval
            raise ReportError(
                f"seed {run.seed} of {run.algo} on {run.env} comes from both {seen[key]} and "
                f"{run.source}; pass one of them"
            )
        seen[key] = run.source
    return sorted(runs, key=lambda r: (r.env, r.algo, r.seed))


# ------------------------------------------------------------------------------- statistics


def _missing_extra(error: ImportError) -> ReportError:
    return ReportError(
        f"factorl report needs the report extra (rliable, matplotlib), which cannot be "
        f"imported ({error}): {INSTALL_HINT}"
    )


def _pyplot() -> Any:
    """matplotlib.pyplot, drawing to files only (no display is needed or wanted)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise _missing_extra(e) from e
    return plt


def require_extra() -> tuple[Any, Any, Any, Any]:
    """rliable's library, metrics and plot_utils and matplotlib.pyplot, or a one-line error
    naming the extra that brings them."""
    plt = _pyplot()
    try:
        from rliable import library, metrics, plot_utils
    except ImportError as e:
        raise _missing_extra(e) from e
    return library, metrics, plot_utils, plt


@dataclass(frozen=True)
class Estimate:
    """A point estimate and its confidence interval."""

    point: float
    low: float
    high: float


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """rliable's stratified bootstraps draw from NumPy's global generator (np.random.choice;
    their `random_state` reaches arch's generator, which they do not use), so seed that for a
    reproducible report and put it back after."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def aggregate(
    scores: Mapping[str, np.ndarray], reps: int = 2000, seed: int = 0
) -> dict[str, dict[str, Estimate]]:
    """IQM, mean, median and optimality gap (at 1) of each entry's scores [runs, tasks], with
    stratified-bootstrap intervals (runs resampled within each task)."""
    library, metrics, _, _ = require_extra()

    def all_metrics(x: np.ndarray) -> np.ndarray:
        return np.array(
            [
                metrics.aggregate_iqm(x),
                metrics.aggregate_mean(x),
                metrics.aggregate_median(x),
                metrics.aggregate_optimality_gap(x),
            ]
        )

    data = {key: np.asarray(value, dtype=float) for key, value in scores.items()}
    with _seeded(seed):
        points, intervals = library.get_interval_estimates(
            data, all_metrics, reps=reps, confidence_interval_size=CONFIDENCE
        )
    return {
        key: {
            name: Estimate(float(points[key][i]), *map(float, intervals[key][:, i]))
            for i, name in enumerate(METRICS)
        }
        for key in data
    }


def probability_of_improvement(
    pairs: Mapping[tuple[str, str], tuple[np.ndarray, np.ndarray]], reps: int = 2000, seed: int = 0
) -> dict[tuple[str, str], Estimate]:
    """P(X > Y) for each pair (X's scores [runs, tasks], Y's [runs, tasks] on the same tasks):
    the Mann-Whitney probability that a run of X beats a run of Y on a task, averaged over
    tasks, with each side resampled within each task."""
    library, metrics, _, _ = require_extra()
    data = {
        f"{x},{y}": (np.asarray(sx, dtype=float), np.asarray(sy, dtype=float))
        for (x, y), (sx, sy) in pairs.items()
    }
    with _seeded(seed):
        points, intervals = library.get_interval_estimates(
            data,
            metrics.probability_of_improvement,
            reps=reps,
            confidence_interval_size=CONFIDENCE,
        )
    return {
        (x, y): Estimate(float(points[f"{x},{y}"]), *map(float, intervals[f"{x},{y}"][:, 0]))
        for x, y in pairs
    }


def performance_profiles(
    scores: Mapping[str, np.ndarray], taus: np.ndarray, reps: int = 2000, seed: int = 0
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The fraction of runs (over all runs and tasks) scoring above each tau, per entry, and its
    interval [2, len(taus)]: rliable's score distributions."""
    library, _, _, _ = require_extra()
    data = {key: np.asarray(value, dtype=float) for key, value in scores.items()}
    with _seeded(seed):
        return library.create_performance_profile(
            data, taus, reps=reps, confidence_interval_size=CONFIDENCE
        )


# --------------------------------------------------------------------------- learning curves


def t_interval(values: Sequence[float]) -> tuple[float, float]:
    """Mean and half-width of the 95% Student-t interval (half-width nan for one value)."""
    from scipy import stats

    arr = np.asarray(values, dtype=float)
    mean = float(arr.mean())
    if len(arr) < 2:
        return mean, math.nan
    half = float(stats.t.ppf(0.975, len(arr) - 1) * arr.std(ddof=1) / math.sqrt(len(arr)))
    return mean, half


def return_range(env: str) -> tuple[float, float]:
    """The range an episode's return can take: [0, 1000] on the Control Suite (rewards in [0, 1]
    on each of 1000 control steps, also when action repeat sums them), unbounded elsewhere."""
    return (0.0, 1000.0) if env.startswith("dmc:") else (-math.inf, math.inf)


def curve_band(
    group: Sequence[Run], env: str, value_range: tuple[float, float] | None = None
) -> tuple[list[int], np.ndarray, np.ndarray, np.ndarray]:
    """Steps every run of `group` evaluated at, the mean over runs there, and the 95% t band,
    cut to `value_range` (default `return_range(env)`; a band of zero width for a single run)."""
    steps = sorted(set.intersection(*({s for s, _ in r.curve} for r in group)))
    stats = [t_interval([r.score(s) for r in group]) for s in steps]
    mean = np.array([m for m, _ in stats])
    half = np.array([h if math.isfinite(h) else 0.0 for _, h in stats])
    low, high = return_range(env) if value_range is None else value_range
    return steps, mean, np.clip(mean - half, low, high), np.clip(mean + half, low, high)


def file_name(env: str) -> str:
    return env.replace(":", "-").replace("/", "-")


def plot_curves(
    runs: Sequence[Run],
    out_dir: Path,
    levels: Mapping[str, Level] | None = None,
    marks: Mapping[tuple[str, str], tuple[int, float, str]] | None = None,
    *,
    prefix: str = "curves",
    ylabel: str = "evaluation return",
    value_range: tuple[float, float] | None = None,
) -> list[Path]:
    """`out_dir/PREFIX-TASK.png` per task: each algorithm's mean eval return over seeds (or
    whatever the runs' curves hold: `ylabel`, cut to `value_range`) with the 95% t band, the
    task's expert level as a dashed line, and `marks` ((env, algo) -> (step, value, label): a
    reference figure) as crosses. Needs matplotlib and scipy only."""
    plt = _pyplot()
    levels = default_levels() if levels is None else levels
    marks = marks or {}
    by_env: dict[str, dict[str, list[Run]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        by_env[run.env][run.algo].append(run)
    written = []
    for env, algos in sorted(by_env.items()):
        fig, ax = plt.subplots(figsize=(6, 4))
        for algo, group in sorted(algos.items()):
            steps, mean, band_low, band_high = curve_band(group, env, value_range)
            (line,) = ax.plot(
                steps, mean, label=f"{algo} ({len(group)} seed{'s' * (len(group) > 1)})"
            )
            ax.fill_between(steps, band_low, band_high, alpha=0.2)
            if (env, algo) in marks:
                step, value, label = marks[(env, algo)]
                ax.plot([step], [value], "x", color=line.get_color(), ms=9, mew=2, label=label)
        if env in levels:
            ax.axhline(levels[env].expert, color="grey", ls="--", lw=1, label=levels[env].label)
        ax.set_xlabel("environment steps")
        ax.set_ylabel(ylabel)
        ax.set_title(env)
        ax.legend(loc="best", fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = Path(out_dir) / f"{prefix}-{file_name(env)}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


# ------------------------------------------------------------------------------------ report


@dataclass(frozen=True)
class TaskScores:
    """The scores on one task: per algorithm, one per seed (in seed order)."""

    env: str
    level: Level | None
    runs: Mapping[str, Sequence[Run]]
    returns: Mapping[str, np.ndarray]
    steps: Mapping[str, Sequence[int]]  # env step of each score

    def scores(self, algo: str) -> np.ndarray:
        """Normalised where the task has a level, raw returns otherwise."""
        raw = self.returns[algo]
        return self.level.normalise(raw) if self.level else raw


def task_scores(
    runs: Sequence[Run], levels: Mapping[str, Level], at_step: int | None = None
) -> dict[str, TaskScores]:
    """Runs grouped by task and algorithm, scored at `at_step` (None: each run's final
    evaluation)."""
    groups: dict[str, dict[str, list[Run]]] = defaultdict(lambda: defaultdict(list))
    for run in sorted(runs, key=lambda r: r.seed):
        groups[run.env][run.algo].append(run)
    tasks = {}
    for env, algos in sorted(groups.items()):
        points = {a: [r.point_at(r.final_step if at_step is None else at_step) for r in g]
                  for a, g in algos.items()}  # fmt: skip
        tasks[env] = TaskScores(
            env,
            levels.get(env),
            dict(algos),
            {a: np.array([v for _, v in p]) for a, p in points.items()},
            {a: [s for s, _ in p] for a, p in points.items()},
        )
    return tasks


def _matrix(columns: Sequence[np.ndarray]) -> tuple[np.ndarray, bool]:
    """Scores of several tasks as [runs, tasks], as rliable takes them, and whether some task
    had more runs than the fewest (those keep their lowest seeds)."""
    n = min(len(c) for c in columns)
    return np.stack([np.asarray(c[:n]) for c in columns], axis=1), any(len(c) > n for c in columns)


def _cell(estimate: Estimate, normalised: bool) -> str:
    digits = 3 if normalised else 1
    return f"{estimate.point:.{digits}f} [{estimate.low:.{digits}f}, {estimate.high:.{digits}f}]"


def _steps(steps: Iterable[int]) -> str:
    low, high = min(steps), max(steps)
    return f"{low:,}" if low == high else f"{low:,}-{high:,}"


def _taus(values: Iterable[np.ndarray], normalised: bool) -> np.ndarray:
    """Thresholds for a profile: over every score, and over [0, 1] for normalised scores."""
    flat = np.concatenate([np.ravel(v) for v in values])
    low, high = float(flat.min()), float(flat.max())
    if normalised:
        low, high = min(low, 0.0), max(high, 1.0)
    if high - low < 1e-9:
        low, high = low - 1.0, high + 1.0
    return np.linspace(low, high, 101)


class _Plots:
    """Figures written with rliable's plotting functions, closed as soon as saved."""

    def __init__(self, out: Path, reps: int, seed: int) -> None:
        _, _, self.rly, self.plt = require_extra()
        self.out, self.reps, self.seed = out, reps, seed
        self.written: list[Path] = []

    def save(self, fig: Any, name: str) -> Path:
        path = self.out / name
        fig.savefig(path, dpi=100, bbox_inches="tight")  # rliable puts labels outside the axes
        self.plt.close(fig)
        self.written.append(path)
        return path

    def profiles(
        self, scores: Mapping[str, np.ndarray], normalised: bool, title: str, name: str
    ) -> Path:
        taus = _taus(scores.values(), normalised)
        profiles, intervals = performance_profiles(scores, taus, self.reps, self.seed)
        fig, ax = self.plt.subplots(figsize=(7, 4))
        what = "normalised score" if normalised else "return"
        self.rly.plot_performance_profiles(
            profiles, taus, performance_profile_cis=intervals, ax=ax,
            xlabel=f"{what} (τ)", ylabel="fraction of runs with score > τ",
            labelsize="large", ticklabelsize="medium",
        )  # fmt: skip
        ax.set_title(title)
        ax.legend(fontsize=8)
        return self.save(fig, name)

    def aggregates(self, estimates: Mapping[str, Mapping[str, Estimate]]) -> Path:
        points = {a: np.array([e[m].point for m in METRICS]) for a, e in estimates.items()}
        intervals = {
            a: np.array([[e[m].low for m in METRICS], [e[m].high for m in METRICS]])
            for a, e in estimates.items()
        }
        fig, _ = self.rly.plot_interval_estimates(
            points, intervals, list(METRICS), xlabel="normalised score", row_height=0.6, wspace=0.25
        )
        return self.save(fig, "aggregates.png")

    def improvement(self, estimates: Mapping[tuple[str, str], Estimate]) -> Path:
        points = {f"{x},{y}": e.point for (x, y), e in estimates.items()}
        intervals = {f"{x},{y}": np.array([e.low, e.high]) for (x, y), e in estimates.items()}
        fig, ax = self.plt.subplots(figsize=(5, 0.6 * len(points) + 1))
        self.rly.plot_probability_of_improvement(
            points, intervals, ax=ax, xticks=[0.0, 0.25, 0.5, 0.75, 1.0]
        )
        return self.save(fig, "improvement.png")


def write_report(
    runs: Sequence[Run],
    out: str | Path,
    levels: Mapping[str, Level] | None = None,
    reps: int = 2000,
    seed: int = 0,
    at_step: int | None = None,
    command: str = "factorl report",
) -> list[Path]:
    """Write `report.md`, the aggregate, profile and improvement plots and the learning curves
    of `runs` into `out`; returns the files written. `levels` (default: EXPERT_LEVELS) gives the
    tasks whose scores are normalised; `reps` bootstrap resamples, drawn from `seed`."""
    require_extra()
    if not runs:
        raise ReportError("no runs given; pass run folders or learning-result JSON files")
    if reps < 1:
        raise ReportError(f"--reps must be >= 1, got {reps}")
    if not 0 <= seed < 2**32:  # what NumPy's generator takes
        raise ReportError(f"--seed must be in [0, 2**32), got {seed}")
    levels = default_levels() if levels is None else levels
    tasks = task_scores(runs, levels, at_step)  # refuses an --at-step before writing anything
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ReportError(
            f"cannot write to {out} ({e.strerror or e}); choose another --out"
        ) from None
    algos = sorted({r.algo for r in runs})
    plots = _Plots(out, reps, seed)
    # across tasks: normalised scores only (raw returns of different tasks have other scales),
    # on the tasks every algorithm ran (a mean over different task sets compares nothing)
    common = [e for e, t in tasks.items() if t.level and set(t.runs) == set(algos)]
    lines = _header(runs, tasks, algos, reps, seed, at_step, command)
    lines += _per_task(tasks, reps, seed)
    lines += _across_tasks(tasks, algos, common, plots)
    lines += _improvement(tasks, algos, plots)
    lines += _profiles(tasks, algos, common, plots)
    curves = plot_curves(runs, out, levels)
    plots.written += curves
    lines += [
        "## Learning curves",
        "",
        "Mean evaluation return over seeds with the 95% Student-t band (cut to the returns a "
        "task can have), the expert level dashed.",
        "",
        *(f"![learning curves]({path.name})" for path in curves),
        "",
    ]
    lines += _every_run(tasks)
    path = out / "report.md"
    try:
        path.write_text("\n".join(lines) + "\n")
    except OSError as e:
        raise ReportError(f"cannot write {path} ({e.strerror or e})") from None
    return [path, *plots.written]


def _per_task(tasks: Mapping[str, TaskScores], reps: int, seed: int) -> list[str]:
    lines = [
        "## Per task",
        "",
        "| task | score | algorithm | seeds | env steps | IQM | mean | median | optimality gap |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for env, task in tasks.items():
        estimates = aggregate({a: task.scores(a)[:, None] for a in task.runs}, reps, seed)
        score = f"normalised: {task.level.describe()}" if task.level else "raw return"
        for algo, est in estimates.items():
            seeds = [r.seed for r in task.runs[algo]]
            gap = _cell(est["optimality gap"], True) if task.level else "-"
            lines.append(
                f"| {env} | {score} | {algo} | {len(seeds)} ({', '.join(map(str, seeds))}) | "
                f"{_steps(task.steps[algo])} | "
                + " | ".join(_cell(est[m], bool(task.level)) for m in METRICS[:3])
                + f" | {gap} |"
            )
    lines += [
        "",
        "On one task, rliable's median (the median over tasks of each task's mean) is that "
        "task's mean, and the IQM of fewer than 4 runs trims none, so those columns can repeat "
        "the mean. The optimality gap needs a level to fall short of: tasks with raw returns "
        "have none.",
    ]
    if any(len(set(steps)) > 1 for t in tasks.values() for steps in t.steps.values()):
        lines.append(
            "Some runs of a task were scored at different env steps (a range above); "
            "--at-step N scores every run at one budget."
        )
    return [*lines, ""]


def _common_matrices(
    tasks: Mapping[str, TaskScores], algos: Sequence[str], envs: Sequence[str]
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Each algorithm's scores on `envs` as [runs, tasks], and the algorithms cut to fit."""
    matrices, cut = {}, []
    for algo in algos:
        matrices[algo], truncated = _matrix([tasks[e].scores(algo) for e in envs])
        if truncated:
            cut.append(algo)
    return matrices, cut


def _across_tasks(
    tasks: Mapping[str, TaskScores], algos: Sequence[str], common: Sequence[str], plots: _Plots
) -> list[str]:
    lines = ["## Across tasks", ""]
    if not common:
        return [
            *lines,
            "No task has an expert level that every algorithm ran, and raw returns of different "
            "tasks are not averaged (their scales differ): see the per-task table, or give "
            "levels with --level ENV=EXPERT.",
            "",
        ]
    matrices, cut = _common_matrices(tasks, algos, common)
    across = aggregate(matrices, plots.reps, plots.seed)
    left = [e for e in tasks if e not in common]
    lines.append(
        f"Normalised scores on the {len(common)} task{'s' * (len(common) > 1)} with an "
        f"expert level that every algorithm ran: {', '.join(common)}."
        + (f" Left out: {', '.join(left)}." if left else "")
        + (
            " Where an algorithm has more seeds on some of these tasks, its lowest seeds of "
            f"each are used: {', '.join(f'{a} ({len(matrices[a])} per task)' for a in cut)}."
            if cut
            else ""
        )
    )
    lines += [
        "",
        "| algorithm | runs | IQM | mean | median | optimality gap |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for algo, est in across.items():
        cells = " | ".join(_cell(est[m], True) for m in METRICS)
        lines.append(f"| {algo} | {matrices[algo].size} | {cells} |")
    plots.aggregates(across)
    return [*lines, "", "![aggregate metrics with 95% intervals](aggregates.png)", ""]


def _improvement(tasks: Mapping[str, TaskScores], algos: Sequence[str], plots: _Plots) -> list[str]:
    lines = ["## Probability of improvement", ""]
    pairs, pair_tasks, pair_cut = {}, {}, set()
    for x, y in itertools.combinations(algos, 2):
        envs = [e for e, t in tasks.items() if x in t.runs and y in t.runs]
        if envs:
            matrices, cut = _common_matrices(tasks, (x, y), envs)
            pairs[(x, y)], pair_tasks[(x, y)] = (matrices[x], matrices[y]), envs
            pair_cut |= set(cut)
    if not pairs:
        return [*lines, "No two algorithms ran the same task: nothing to compare.", ""]
    improvement = probability_of_improvement(pairs, plots.reps, plots.seed)
    lines += [
        "P(X > Y): the probability that a run of X scores above a run of Y on a task "
        "(Mann-Whitney, ties counting half), averaged over the tasks both ran; 0.5 is no "
        "difference, and P(Y > X) = 1 - P(X > Y). It compares runs within a task only, so "
        "tasks with raw returns count too."
        + (
            f" {', '.join(sorted(pair_cut))} ran more seeds on some tasks than on others: "
            "the lowest seeds of each task are used, as many as on its task with fewest."
            if pair_cut
            else ""
        ),
        "",
        "| X | Y | tasks | P(X > Y) |",
        "| --- | --- | --- | --- |",
    ]
    for (x, y), est in improvement.items():
        lines.append(f"| {x} | {y} | {', '.join(pair_tasks[(x, y)])} | {_cell(est, True)} |")
    plots.improvement(improvement)
    return [*lines, "", "![probability of improvement with 95% intervals](improvement.png)", ""]


def _profiles(
    tasks: Mapping[str, TaskScores], algos: Sequence[str], common: Sequence[str], plots: _Plots
) -> list[str]:
    lines = [
        "## Performance profiles",
        "",
        "The fraction of runs whose score exceeds each threshold τ, with 95% bands: a curve "
        "above another everywhere is better at every level of performance.",
        "",
    ]
    if common:
        matrices, _ = _common_matrices(tasks, algos, common)
        plots.profiles(matrices, True, "tasks with an expert level", "profiles.png")
        lines += ["![performance profiles across tasks](profiles.png)", ""]
    for env, task in tasks.items():
        if env not in common:  # each task in one profile: across tasks, or its own
            name = f"profile-{file_name(env)}.png"
            scores = {a: task.scores(a)[:, None] for a in task.runs}
            plots.profiles(scores, bool(task.level), env, name)
            lines += [f"![performance profile on {env}]({name})", ""]
    return lines


def _every_run(tasks: Mapping[str, TaskScores]) -> list[str]:
    lines = [
        "## Every run",
        "",
        "| task | algorithm | seed | env step | return | normalised | from |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for env, task in tasks.items():
        for algo, group in task.runs.items():
            normalised = task.scores(algo)
            for i, run in enumerate(group):
                norm = f"{normalised[i]:.3f}" if task.level else "-"
                lines.append(
                    f"| {env} | {algo} | {run.seed} | {task.steps[algo][i]:,} | "
                    f"{task.returns[algo][i]:.1f} | {norm} | {run.source} |"
                )
    return lines


def _header(
    runs: Sequence[Run],
    tasks: Mapping[str, TaskScores],
    algos: Sequence[str],
    reps: int,
    seed: int,
    at_step: int | None,
    command: str,
) -> list[str]:
    when = "final" if at_step is None else f"last (at or before env step {at_step:,})"
    return [
        "# Aggregate report",
        "",
        f"Generated by `{command}` from {len(runs)} runs of {', '.join(algos)} on "
        f"{len(tasks)} task{'s' * (len(tasks) > 1)}; rerun it rather than edit this file.",
        "",
        f"A run's score is its {when} greedy evaluation return. Per task and across tasks: the "
        "interquartile mean (IQM, the mean of the middle half of the runs), mean, median and "
        "optimality gap (how far scores fall below the expert level on average, a score above "
        "it counting as at it; lower is better), each with a 95% stratified-bootstrap "
        f"confidence interval ({reps} resamples of the runs within each task, seed {seed}), "
        "as Agarwal et al. (2021) recommend; computed with rliable. Where a task has an expert "
        "level, scores are normalised, (return - low) / (expert - low): 1 is expert level. "
        "Elsewhere they are raw returns, summarised per task only.",
        "",
    ]
