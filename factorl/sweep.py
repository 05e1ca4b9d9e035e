"""`factorl sweep`: algorithms x environments x override values x seeds, one run folder and one
results file per trial, on Ray (this machine or a cluster) or one trial per process (a job array).

    factorl sweep --algos decqn,cqn --envs dmc:walker-walk,dmc:cheetah-run --seeds 0-2 \
        --steps 100000 --grid agent.learning_rate=1e-4,3e-4 --set replay.n_step=1

The grid, in the order `--list` shows and `--array-index` counts: for each algorithm (`--algos`
order), each environment (`--envs` order), each combination of its `--grid` values (axes in the
order given, the last one varying fastest; an axis applies to the algorithms that have its key),
each seed. With `--vmap-seeds`, the seeds of one configuration are one trial.

A trial trains in `--work-dir/NAME` (resuming from its latest checkpoint when the folder holds a
run) and, once finished, writes `--out-dir/NAME.json` atomically: the evaluation curve, the
config, the machine, library versions and code revision, the command, and the `segments` (each
process that trained it, with its revision and starting env step). NAME is `ALGO__ENV__sSEED`,
with one `__FIELD=VALUE` per grid axis before the seed. A trial whose results file exists is
finished and never rerun, so a sweep stopped any way at all continues where it was when its
command is run again; a trial whose worker dies is retried by Ray and resumes from its checkpoint.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import factorl
from factorl.core.config import (
    Config,
    ConfigError,
    get_algorithm,
    one_line,
    overrides_by_algo,
    parse_value,
    setting_keys,
)
from factorl.envs.host import import_env_modules
from factorl.io import checkpoint as ckpt
from factorl.io.logging import read_metrics
from factorl.io.runfolder import (
    CONFIG_FILE,
    RunFolderError,
    describe_os_error,
    nearest_existing,
    read_segments,
)
from factorl.io.system import factorl_revision, local_time, provenance
from factorl.runners.device import is_jax_env
from factorl.train import CHECKPOINT_DIR, TrainingStopped, load_config, make_config, train

#: the code this process runs, taken at start: commits made while a long run goes on do not count
SOURCE_REVISION = factorl_revision()
#: what a missing Ray says
RAY_MISSING = (
    "factorl sweep runs its trials on Ray, which is not installed: pip install -c constraints.txt "
    '-e ".[sweep]" (or run one trial per process with --array-index I)'
)
#: the settings each trial takes from the sweep's own flags, not from --set or --grid (the others
#: it sets, such as runner.log_every, --set may change)
SWEEP_KEYS = frozenset(
    {
        "env.id",
        "run.seed",
        "run.num_seeds",
        "run.steps",
        "run.dir",
        "runner.eval_every",
        "runner.eval_episodes",
    }
)
#: the share of its GPUs' memory a trial's JAX takes when trials share a GPU (--gpus-per-trial
#: below 1): JAX takes 75% of the whole GPU at start by default, so a second trial on the same
#: GPU could not start; the rest of the share is left to each process's CUDA context
GPU_MEMORY_SHARE = 0.85
#: a local Ray's object store: trials return a few lines each, so the minimum Ray accepts will do
LOCAL_OBJECT_STORE_BYTES = 80 * 1024**2
#: the most trials in one grid, and the most seeds --seeds may name: every trial's config is
#: checked before anything trains, and a grid past this is a typo (0-99999999) more likely than
#: a plan; a larger study is several sweeps
MAX_TRIALS = 10_000
#: how long a trial waits for its run folder while another process holds it: a restarted
#: driver can reach a trial whose previous worker is still being stopped with the old driver
TRIAL_LOCK_WAIT = 120.0


class SweepError(ValueError):
    """A sweep cannot start or go on; the message says what to do."""


class TrialInterrupted(RuntimeError):
    """A trial on Ray stopped by a signal (a preempted or drained node sends SIGTERM) after
    saving a checkpoint: raised so that Ray retries it, as it retries a dead worker, and the
    retry resumes from that checkpoint."""


# ------------------------------------------------------------------------------------- the grid
@dataclass(frozen=True)
class Trial:
    """One cell of the grid: an algorithm on an environment with the axis values `variant`
    (dotted key -> value), for `seeds` (several only with --vmap-seeds: one run of
    `run.num_seeds`)."""

    index: int
    algo: str
    env: str
    seeds: tuple[int, ...]
    variant: tuple[tuple[str, Any], ...] = ()
    labels: tuple[str, ...] = ()  # the variant's parts of the name, FIELD=VALUE

    @property
    def name(self) -> str:
        """The run folder's name."""
        first, last = self.seeds[0], self.seeds[-1]
        return _name(
            self.algo, self.env, self.labels, f"{first}" if first == last else f"{first}-{last}"
        )

    def result_names(self) -> list[str]:
        """The results files' names (without .json), one per seed."""
        return [_name(self.algo, self.env, self.labels, str(seed)) for seed in self.seeds]


@dataclass(frozen=True)
class Settings:
    """What every trial shares: budget, evaluation, fixed overrides and folders."""

    steps: int = 100_000
    eval_every: int = 10_000
    eval_episodes: int = 5
    fixed: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # algo -> --set values
    work_dir: str = "runs/learning"
    out_dir: str = "results/learning"
    command: str = "factorl sweep"
    imports: tuple[str, ...] = ()  # --import: modules each trial's process imports first


def _name(algo: str, env: str, labels: Sequence[str], seed: str) -> str:
    return "__".join([algo, _safe(env), *labels, f"s{seed}"])


def _safe(text: str) -> str:
    """`text` usable in a file name: `:` and `/` become `-` (as results/learning's names)."""
    return text.replace(":", "-").replace("/", "-")


def run_name(algo: str, env: str, seed: int) -> str:
    """The name of a trial without grid axes: `ALGO__ENV__sSEED` (results/learning's files)."""
    return _name(algo, env, (), str(seed))


def parse_seeds(text: str) -> list[int]:
    """`0,1,2`, `0-9` or a mix (`0-2,7`), in the order given; repeats, and more than
    `MAX_TRIALS` seeds, are an error."""
    seeds: list[int] = []
    for part in text.split(","):
        # at most 12 digits: run.seed's range has 10, and int() of a huge text is slow or refused
        match = re.fullmatch(r"\s*(\d{1,12})\s*(?:-\s*(\d{1,12})\s*)?", part, re.ASCII)
        if not match or (match[2] is not None and int(match[2]) < int(match[1])):
            raise SweepError(f"--seeds takes seeds and ranges such as 0,1,2 or 0-9; got {part!r}")
        low = int(match[1])
        high = int(match[2]) if match[2] is not None else low
        # counted before the range is made: 0-99999999 would take minutes and gigabytes
        if len(seeds) + high - low + 1 > MAX_TRIALS:
            raise SweepError(
                f"--seeds {text} names more than {MAX_TRIALS:,} seeds; split the sweep into "
                "several of fewer seeds"
            )
        seeds += range(low, high + 1)
    if len(set(seeds)) != len(seeds):
        raise SweepError(f"--seeds {text} names a seed twice")
    return seeds


def parse_names(flag: str, text: str) -> list[str]:
    """The comma-separated items of `--algos` or `--envs` (see `_check_names`)."""
    return _check_names(flag, [item.strip() for item in text.split(",")])


def _check_names(flag: str, items: Sequence[str]) -> list[str]:
    """`items`, unless one is empty or given twice (two trials would share a name, and the
    second would skip as finished once the first's results exist)."""
    if not all(items):
        raise SweepError(
            f"{flag} {','.join(items)!r} has an empty item; give comma-separated names"
        )
    twice = [item for i, item in enumerate(items) if item in items[:i]]
    if twice:
        raise SweepError(f"{flag} names {twice[0]} twice; give it once")
    return list(items)


def parse_grid(items: Sequence[str]) -> list[tuple[str, list[str]]]:
    """The override axes of `--grid SECTION.FIELD=V1,V2,...` (repeatable): (dotted key, value
    texts), in the order given. Values are typed per algorithm by `expand_grid`."""
    axes: list[tuple[str, list[str]]] = []
    for item in items:
        key, sep, values = item.partition("=")
        section, dot, name = key.strip().partition(".")
        texts = [v.strip() for v in values.split(",")]
        if not sep or not dot or not section or not name or not all(texts):
            raise SweepError(
                f"--grid is SECTION.FIELD=VALUE,VALUE,... (e.g. agent.learning_rate=1e-4,3e-4); "
                f"got {item!r}"
            )
        key = f"{section}.{name.replace('-', '_')}"
        if any(key == k for k, _ in axes):
            raise SweepError(f"--grid {key} is given twice; give its values in one --grid")
        axes.append((key, texts))
    return axes


def _labels(axes: Sequence[tuple[str, list[str]]]) -> dict[str, str]:
    """Each axis key's label in trial names: its field name, or the whole key where two axes
    share a field name."""
    fields = [key.partition(".")[2] for key, _ in axes]
    return {
        key: f if fields.count(f) == 1 else key for (key, _), f in zip(axes, fields, strict=True)
    }


def build_grid(
    algos: Sequence[str],
    envs: Sequence[str],
    seeds: Sequence[int],
    axes: Sequence[tuple[str, list[str]]] = (),
    *,
    vmap_seeds: bool = False,
) -> list[Trial]:
    """Every trial, in the documented order (see the module's docstring). An axis key that no
    algorithm has, a value of the wrong type or a value given twice, two trials of one name, or
    more than `MAX_TRIALS` trials is a SweepError."""
    _check_names("--algos", algos)
    _check_names("--envs", envs)
    for algo in algos:
        get_algorithm(algo)  # an unknown name is a one-line ConfigError listing the known ones
    labels = _labels(axes)
    typed: dict[str, list[tuple[tuple[str, Any], str]]] = {}  # "algo key" -> [(item, label)]
    for key, texts in axes:
        having = [algo for algo in algos if key in setting_keys(algo)]
        if not having:
            raise SweepError(f"--grid {key}: no selected algorithm ({', '.join(algos)}) has it")
        if key in SWEEP_KEYS:
            raise SweepError(f"--grid {key}: the sweep sets it from its own flags")
        for algo in having:
            values = [parse_value(algo, key, text) for text in texts]
            if len({repr(v) for v in values}) != len(values):
                raise SweepError(f"--grid {key} names a value twice ({','.join(texts)})")
            typed[f"{algo} {key}"] = [
                ((key, v), f"{labels[key]}={_safe(t)}") for v, t in zip(values, texts, strict=True)
            ]
    # counted before the trials are made: a few --grid axes multiply to more than fits in memory
    count = sum(
        len(envs)
        * math.prod(len(typed[f"{algo} {key}"]) for key, _ in axes if f"{algo} {key}" in typed)
        * (1 if vmap_seeds else len(seeds))
        for algo in algos
    )
    if count > MAX_TRIALS:
        raise SweepError(
            f"the grid has {count:,} trials, more than {MAX_TRIALS:,}; split it into several "
            "sweeps (fewer --algos, --envs, --grid values or --seeds)"
        )
    trials: list[Trial] = []
    for algo in algos:
        own = [typed[f"{algo} {key}"] for key, _ in axes if f"{algo} {key}" in typed]
        for env in envs:
            for combination in itertools.product(*own):
                variant = tuple(item for item, _ in combination)
                names = tuple(label for _, label in combination)
                groups = [tuple(seeds)] if vmap_seeds else [(s,) for s in seeds]
                for group in groups:
                    trials.append(Trial(len(trials), algo, env, group, variant, names))
    # distinct ids can share a name (gym:a/b-v0 and gym:a-b-v0, grid values a/b and a-b): the
    # second trial would take the first one's run folder, and skip once its results exist
    seen: dict[str, Trial] = {}
    for trial in trials:
        for name in dict.fromkeys([trial.name, *trial.result_names()]):
            if name in seen and seen[name] is not trial:
                raise SweepError(
                    f"trials {seen[name].index} and {trial.index} would both be named {name}; "
                    "give ids and --grid values that differ in more than ':' and '/'"
                )
            seen[name] = trial
    return trials


def trial_config(trial: Trial, settings: Settings) -> Config:
    """The validated config of `trial` (a ConfigError names a bad value)."""
    return make_config(
        trial.algo,
        {
            "env.id": trial.env,
            "run.seed": trial.seeds[0],
            **({"run.num_seeds": len(trial.seeds)} if len(trial.seeds) > 1 else {}),
            "run.steps": settings.steps,
            "runner.eval_every": settings.eval_every,
            "runner.eval_episodes": settings.eval_episodes,
            "runner.checkpoint_every": settings.eval_every,
            "run.dir": str(Path(settings.work_dir) / trial.name),
            "run.progress": "lines",
            "runner.log_every": settings.eval_every,
            **settings.fixed.get(trial.algo, {}),
            **dict(trial.variant),
        },
    )


def fixed_overrides(algos: Sequence[str], items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Each algorithm's `--set SECTION.FIELD=VALUE` values: an item applies to every algorithm
    that has its key; one none has, or a setting the sweep's own flags give, is an error."""
    found = overrides_by_algo(algos, items)
    clash = sorted({key for values in found.values() for key in values} & SWEEP_KEYS)
    if clash:
        raise SweepError(
            f"--set {clash[0]}: the sweep sets it from its own flags (--envs, --seeds, --steps, "
            "--eval-every, --eval-episodes, --work-dir, --vmap-seeds)"
        )
    return found


def check_trials(trials: Sequence[Trial], settings: Settings) -> None:
    """Refuse, before anything trains, a grid any trial of which would fail to start: a bad
    value (its config), a dataset id that is not one, an unknown environment id, seeds that
    cannot be vmapped, or a --work-dir or --out-dir that is not a folder."""
    # the trials of one configuration differ only in run.seed and run.dir (which names the
    # seed): the first and the largest seed of each stand for the rest, and keep a grid of
    # thousands of seeds quick to check
    groups: dict[tuple[str, str, tuple[tuple[str, Any], ...]], list[Trial]] = {}
    for trial in trials:
        groups.setdefault((trial.algo, trial.env, trial.variant), []).append(trial)
    checked = [
        trial
        for group in groups.values()
        for trial in dict.fromkeys([group[0], max(group, key=lambda t: t.seeds[-1])])
    ]
    for trial in checked:
        try:
            cfg = trial_config(trial, settings)
            dataset = cfg.settings().get("data.dataset")
            # the config leaves the id's form to the dataset loader, which a trial meets only
            # once it runs
            if dataset is not None:
                from factorl.io.datasets import check_dataset_id

                check_dataset_id(dataset)
        except ConfigError as e:
            raise SweepError(f"{trial.name}: {one_line(e)}") from None
    for trial in trials:
        if len(trial.seeds) > 1:
            if not is_jax_env(trial.env):
                raise SweepError(
                    f"--vmap-seeds needs JAX-native environments (gymnax:, playground:, "
                    f"jaxmarl:, factorl:); {trial.env} runs on the host: leave the flag out"
                )
            first = trial.seeds[0]
            if list(trial.seeds) != list(range(first, first + len(trial.seeds))):
                raise SweepError(
                    "--vmap-seeds trains consecutive seeds side by side (run.num_seeds); give "
                    f"--seeds as a range such as {first}-{first + len(trial.seeds) - 1}"
                )
    for flag, folder in (("--work-dir", settings.work_dir), ("--out-dir", settings.out_dir)):
        _check_folder(flag, Path(folder))
    for env in dict.fromkeys(t.env for t in trials):
        _check_env(env)


def _check_folder(flag: str, folder: Path) -> None:
    """A one-line SweepError where `folder`, or the nearest of its parents that exists (the
    rest are made), is not a folder."""
    there = nearest_existing(folder)
    if not there.is_dir():
        raise SweepError(f"{flag} {folder}: {there} is not a folder; choose a folder")


def _check_env(env_id: str) -> None:
    """A one-line SweepError for an environment id that cannot be built."""
    try:
        if is_jax_env(env_id):
            from factorl.envs.device import make_jax_env
            from factorl.envs.marl import is_marl_env, make_marl_env

            (make_marl_env if is_marl_env(env_id) else make_jax_env)(env_id)
        else:
            from factorl.envs.host import make_env

            make_env(env_id).close()
    except ValueError as e:  # unknown ids, and missing extras (MissingExtraError)
        raise SweepError(one_line(e)) from None


# ---------------------------------------------------------------------------- results and runs
def write_json(path: Path, data: Any, *, replace: bool = True) -> None:
    """Write `data` atomically at the indent the committed results/learning files use: a reader,
    or a restarted sweep, finds the whole file or none (see `ckpt.write_json` for `replace`)."""
    ckpt.write_json(path, data, indent=1, replace=replace)


def summarise_run(run_dir: Path, command: str, seed: int | None = None) -> dict[str, Any]:
    """The results record of a finished run folder; for a run of several seeds side by side
    (the device runner's `run.num_seeds`), that of `seed`."""
    cfg = load_config(run_dir)
    if seed is None:
        if cfg.run.num_seeds > 1:
            raise SweepError(f"{run_dir} trained {cfg.run.num_seeds} seeds: name one")
        seed = cfg.run.seed
    # read_metrics refuses a line that is not a JSON object
    records = [r for r in read_metrics(run_dir) if r.get("seed", cfg.run.seed) == seed]
    for record in records:
        _check_record(run_dir, record)
    curve = [
        {
            "env_step": r["env_step"],
            "env_frames": r.get("env_frames", r["env_step"]),
            "eval_return": r["eval_return"],
            "eval_returns": r.get("eval_returns", []),
            **({"eval_win_rate": r["eval_win_rate"]} if "eval_win_rate" in r else {}),
            # the evaluation at the end of an offline phase is at env step 0: its tag tells it
            # from an evaluation before any training
            **{k: r[k] for k in ("phase", "offline_step") if k in r},
            "wall_time": r["wall_time"],
        }
        for r in records
        if r.get("event") == "eval"
    ]
    if not curve:
        raise SweepError(
            f"{run_dir} has no evaluation records for seed {seed}: train it past its first "
            "evaluation (runner.eval_every), or leave it out"
        )
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
        **provenance(SOURCE_REVISION),  # the process writing this file
        "segments": read_segments(run_dir),  # each process that trained the run
        "command": command,
        "created": local_time(),
        **({"seeds_side_by_side": cfg.run.num_seeds} if cfg.run.num_seeds > 1 else {}),
    }


#: what the fields of an evaluation record must hold for its results file to be read (as
#: `factorl report` reads it): always present, then present in some
_EVAL_FIELDS = {"env_step": "whole", "eval_return": "finite", "wall_time": "finite"}
_EVAL_OPTIONAL = {
    "env_frames": "whole",
    "offline_step": "whole",
    "eval_win_rate": "finite",
    "eval_returns": "finites",
    "phase": "text",
}


def _is(kind: str, value: Any) -> bool:
    if isinstance(value, bool):  # an int to Python, never a count or a return
        return False
    if kind == "whole":
        return isinstance(value, int) and value >= 0
    if kind == "finite":
        return isinstance(value, int | float) and math.isfinite(value)
    if kind == "finites":
        return isinstance(value, list) and all(_is("finite", v) for v in value)
    return isinstance(value, str)


_KIND_WORDS = {
    "whole": "a whole number",
    "finite": "a finite number",
    "finites": "a list of finite numbers",
    "text": "a string",
}


def _check_record(run_dir: Path, record: Mapping[str, Any]) -> None:
    """A SweepError naming the run and the record where a record summarised into a results
    file holds what `factorl report` would refuse (the metrics writer stores NaN as "nan")."""
    if record.get("event") == "eval":
        for key in _EVAL_FIELDS:
            if key not in record:
                _bad_record(run_dir, record, f"has no {key}")
        fields = {**_EVAL_FIELDS, **_EVAL_OPTIONAL}
    else:
        fields = {"wall_time": "finite"}  # the latest is the results file's wall_time_s
    for key, kind in fields.items():
        if key in record and not _is(kind, record[key]):
            value = repr(record[key])
            value = value if len(value) <= 40 else value[:37] + "..."
            _bad_record(run_dir, record, f"has {key} {value}, not {_KIND_WORDS[kind]}")


def _bad_record(run_dir: Path, record: Any, what: str) -> NoReturn:
    text = one_line(json.dumps(record) if not isinstance(record, str) else repr(record))
    text = text if len(text) <= 80 else text[:77] + "..."
    raise SweepError(
        f"{run_dir}: a record of its metrics.jsonl {what} ({text}); factorl report would refuse "
        "its results: repair or remove that line, or leave this run out"
    )


def summarise_folder(
    run_dir: Path, out_dir: Path, command: str, *, overwrite: bool = False
) -> list[Path]:
    """Write the results file of every seed a finished run folder trained (`--from-run`).
    Every seed is summarised before any file is written, and a results file that exists (a
    sweep's finished trial, say) is replaced only with `overwrite`: on any error, nothing is
    written."""
    cfg = load_config(run_dir)
    out_dir = Path(out_dir)
    _check_folder("--out-dir", out_dir)
    found = []
    for seed in range(cfg.run.seed, cfg.run.seed + cfg.run.num_seeds):
        data = summarise_run(run_dir, command, seed)
        found.append((out_dir / (run_name(data["algo"], data["env"], seed) + ".json"), data))
    there = [path for path, _ in found if path.exists() or path.is_symlink()]
    if there and not overwrite:
        _exists_already(there[0])
    written = []
    for path, data in found:
        try:
            # without --overwrite, a file that appeared since the check above is not replaced
            write_json(path, data, replace=overwrite)
        except FileExistsError:
            _exists_already(path)
        except OSError as e:
            raise SweepError(f"cannot write {path} ({describe_os_error(e)})") from None
        written.append(path)
    return written


def _exists_already(path: Path) -> NoReturn:
    raise SweepError(
        f"{path} exists already (a sweep's finished trial?); remove it, choose another "
        "--out-dir, or add --overwrite to replace it"
    )


def result_paths(trial: Trial, settings: Settings) -> list[Path]:
    return [Path(settings.out_dir) / f"{name}.json" for name in trial.result_names()]


def is_finished(trial: Trial, settings: Settings) -> bool:
    """Whether every results file of `trial` exists (what makes a restarted sweep skip it)."""
    return all(path.exists() for path in result_paths(trial, settings))


def run_trial(trial: Trial, settings: Settings) -> dict[str, Any]:
    """Train `trial` to its budget in its run folder, resuming from the latest checkpoint there,
    then write its results files; a finished trial is left alone. Returns the outcome,
    {"name", "status": finished|skipped|interrupted|error, "message"}: errors are reported, not
    raised, so that Ray retries only a trial whose worker died."""
    if is_finished(trial, settings):
        return {"name": trial.name, "status": "skipped", "message": "results exist"}
    run_dir = Path(settings.work_dir) / trial.name
    try:
        import_env_modules(settings.imports)  # a Ray worker is a process of its own
        cfg = trial_config(trial, settings)
        # a run killed before its first checkpoint has a config to restart from
        started = (run_dir / CONFIG_FILE).is_file()
        result = train(cfg, resume=run_dir if started else None, lock_wait=TRIAL_LOCK_WAIT)
        if result.status != "completed" or result.env_step < settings.steps:
            return {
                "name": trial.name,
                "status": "interrupted",
                "message": f"stopped at env step {result.env_step}; run the sweep again to resume",
            }
        written = []
        for seed, path in zip(trial.seeds, result_paths(trial, settings), strict=True):
            data = summarise_run(run_dir, settings.command, seed)
            if trial.variant:
                data["grid"] = dict(trial.variant)
            write_json(path, data)
            written.append(str(path))
    except (ConfigError, ckpt.CheckpointError, TrainingStopped, RunFolderError, SweepError) as e:
        # as the CLI does: one line naming the trial, not a traceback
        return {"name": trial.name, "status": "error", "message": one_line(e)}
    return {"name": trial.name, "status": "finished", "message": "wrote " + ", ".join(written)}


# ---------------------------------------------------------------------------------------- Ray
def run_trial_on_ray(
    trial: Trial, settings: Settings, cores: frozenset[int] | None = None
) -> dict[str, Any]:
    """`run_trial` as a Ray task, on the CPUs `cores` alone when given: an interrupted trial
    raises `TrialInterrupted`, which the task retries."""
    if cores is not None:
        pin_to_cores(cores)
    outcome = run_trial(trial, settings)
    if outcome["status"] == "interrupted":
        raise TrialInterrupted(outcome["message"])
    return outcome


def import_ray() -> Any:
    """Ray, or a one-line SweepError naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise SweepError(RAY_MISSING) from None
    return ray


def pin_to_cores(cores: frozenset[int]) -> None:
    """Let this process run on the CPUs `cores` only. JAX sizes its CPU thread pool from the
    process's CPU affinity when it first computes (XLA_FLAGS' thread settings no longer limit
    it), so a worker pinned before its trial keeps that trial's XLA threads on its own cores
    instead of every trial spreading threads over all of them. Without `sched_setaffinity`
    (macOS) this does nothing."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cores)


def core_shares(cores: Sequence[int], slots: int) -> list[frozenset[int]]:
    """The CPUs of each of `slots` trials running at once: a block of `cores` each when there
    are at least as many cores as slots (one trial at a time keeps them all), else one core
    each, in turn."""
    n = len(cores)
    if slots >= n:
        return [frozenset({cores[i % n]}) for i in range(slots)]
    return [frozenset(cores[i * n // slots : (i + 1) * n // slots]) for i in range(slots)]


def usable_cores() -> list[int]:
    """The CPUs this process may run on, in order."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def worker_env(gpus_per_trial: float, *, local: bool = True) -> dict[str, str]:
    """Environment variables of the trials' workers: on a local Ray, this factorl first on their
    path (the workers then import the code the driver runs, installed or not; a cluster's nodes
    have their own install); with a fraction of a GPU per trial, that share of the GPU's memory
    for each trial's JAX (`GPU_MEMORY_SHARE` of it), unless XLA_PYTHON_CLIENT_MEM_FRACTION is
    set already."""
    env = {}
    if local:
        package_root = str(Path(factorl.__file__).resolve().parents[1])
        path = [p for p in (package_root, os.environ.get("PYTHONPATH")) if p]
        env["PYTHONPATH"] = os.pathsep.join(path)
    if 0 < gpus_per_trial < 1 and "XLA_PYTHON_CLIENT_MEM_FRACTION" not in os.environ:
        env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{GPU_MEMORY_SHARE * gpus_per_trial:.4g}"
    return env


@contextmanager
def ray_session(
    address: str | None, max_parallel: int | None, gpus_per_trial: float = 0.0
) -> Iterator[Any]:
    """Ray for the sweep: the session this process already has, the cluster at `address`, or a
    local Ray with `max_parallel` CPUs (default: the cores this process may use), without the
    dashboard; shut down at the end unless it was there before."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    options: dict[str, Any] = {
        "include_dashboard": False,
        "runtime_env": {"env_vars": worker_env(gpus_per_trial, local=address is None)},
        "log_to_driver": True,
    }
    if address is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        options |= {
            "num_cpus": max_parallel or cores,
            "object_store_memory": LOCAL_OBJECT_STORE_BYTES,
        }
    else:
        options["address"] = address
    try:
        ray.init(**options)
    except (ConnectionError, ValueError, RuntimeError) as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise SweepError(f"cannot start {where} ({one_line(e)})") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def run_on_ray(
    trials: Sequence[Trial],
    settings: Settings,
    *,
    address: str | None = None,
    max_parallel: int | None = None,
    max_retries: int = 3,
    gpus_per_trial: float = 0.0,
) -> dict[str, dict[str, Any]]:
    """Run `trials` as Ray tasks of one CPU (and `gpus_per_trial` GPUs) each, at most
    `max_parallel` at a time (default: as many as Ray can place); a task whose worker dies is
    retried up to `max_retries` times, as is one stopped by a signal (preemption), each retry
    resuming from the trial's checkpoint. Returns
    each trial's outcome by name, printing one line per trial as it ends.

    On a Ray on this machine (no `address`), CPU trials run at most one per core at a time by
    default, each pinned to cores of its own (`core_shares`, `pin_to_cores`)."""
    outcomes: dict[str, dict[str, Any]] = {}
    if not trials:
        return outcomes
    cores = usable_cores() if address is None and not gpus_per_trial else []
    with ray_session(address, max_parallel, gpus_per_trial) as ray:
        task = ray.remote(run_trial_on_ray).options(
            num_cpus=1,
            num_gpus=gpus_per_trial,
            max_retries=max_retries,
            retry_exceptions=[TrialInterrupted],
        )
        waiting = list(trials)
        running: dict[Any, tuple[Trial, int]] = {}
        limit = max_parallel or len(cores) or len(trials)
        shares = core_shares(cores, limit) if cores else [None] * limit
        free_slots = list(range(limit))  # a slot's trial runs on shares[slot]
        while waiting or running:
            while waiting and len(running) < limit:
                trial, slot = waiting.pop(0), free_slots.pop(0)
                running[task.remote(trial, settings, shares[slot])] = (trial, slot)
            done, _ = ray.wait(list(running), num_returns=1)
            for ref in done:
                trial, slot = running.pop(ref)
                free_slots.append(slot)
                try:
                    outcome = ray.get(ref)
                except TrialInterrupted as e:  # stopped by signals more often than retried
                    lines = str(e).strip().splitlines()
                    why = lines[-1] if lines else "stopped by a signal"
                    outcome = {"name": trial.name, "status": "interrupted", "message": why}
                except ray.exceptions.RayError as e:  # retries used up, or Ray itself failed
                    lines = str(e).strip().splitlines()
                    why = lines[-1] if lines else type(e).__name__
                    outcome = {"name": trial.name, "status": "error", "message": why}
                outcomes[trial.name] = outcome
                _print_outcome(outcome)
    return outcomes


def _print_outcome(outcome: Mapping[str, Any]) -> None:
    stream = sys.stderr if outcome["status"] == "error" else sys.stdout
    print(f"{outcome['status']} {outcome['name']}: {outcome['message']}", file=stream, flush=True)


# ----------------------------------------------------------------------------------- command
HELP = """\
Train algorithms x environments x seeds (x --grid values) as one run folder and one results file
per trial, on Ray: a local Ray with one trial per core by default, or the cluster at --address.
A trial whose results file exists is skipped, so the same command continues a stopped sweep;
a trial whose worker dies is retried and resumes from its checkpoint. --array-index I runs only
the I-th trial, here, without Ray (a SLURM job array: --list gives the count). See docs/scale.md.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="factorl sweep",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    grid = parser.add_argument_group("the grid")
    grid.add_argument("--algos", default="decqn", help="comma-separated algorithms (decqn)")
    grid.add_argument("--envs", default="dmc:walker-walk", help="comma-separated environment ids")
    grid.add_argument("--seeds", default="0", help="seeds: 0,1,2 or 0-9 or both (0)")
    grid.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="SECTION.FIELD=V1,V2",
        help="an axis of override values, by the dotted key of 'factorl train ALGO -h' "
        "(repeatable; each algorithm that has the key takes every value)",
    )
    grid.add_argument(
        "--set",
        dest="fixed",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="a setting of every trial (repeatable); it applies to each algorithm that has it",
    )
    grid.add_argument("--steps", type=int, default=100_000, help="env steps per trial (100000)")
    grid.add_argument(
        "--eval-every", type=int, default=10_000, help="env steps between evaluations and "
        "checkpoints (10000)"
    )  # fmt: skip
    grid.add_argument("--eval-episodes", type=int, default=5, help="episodes per evaluation (5)")
    grid.add_argument(
        "--vmap-seeds",
        action="store_true",
        help="train the seeds of each configuration side by side in one trial (run.num_seeds; "
        "JAX-native environments, --seeds a range): one results file per seed",
    )
    where = parser.add_argument_group("where")
    where.add_argument("--work-dir", default="runs/learning", help="run folders (runs/learning)")
    where.add_argument(
        "--out-dir", default="results/learning", help="results files (results/learning)"
    )
    run = parser.add_argument_group("how")
    run.add_argument("--address", help="an existing Ray cluster (e.g. ray://HEAD:10001 or auto)")
    run.add_argument(
        "--max-parallel",
        type=int,
        metavar="N",
        help="trials at a time (default: one per core of a local Ray, or what the cluster holds)",
    )
    run.add_argument(
        "--max-retries",
        type=int,
        default=3,
        help="restarts of a trial whose worker dies, each from its checkpoint (3)",
    )
    run.add_argument(
        "--gpus-per-trial", type=float, default=0.0, help="GPUs each Ray trial takes (0)"
    )
    run.add_argument(
        "--array-index",
        type=int,
        metavar="I",
        help="run only trial I of the grid, in this process, without Ray, and exit",
    )
    run.add_argument(
        "--list", action="store_true", help="print the grid with indices and the count, and exit"
    )
    run.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE in the driver and in every trial first, e.g. a package that "
        "registers Gymnasium environments (repeatable; as 'factorl train --import')",
    )
    other = parser.add_argument_group("summarise a run trained elsewhere")
    other.add_argument(
        "--from-run",
        metavar="RUN_DIR",
        help="write the results file(s) of this finished run folder into --out-dir (one per "
        "seed), and exit",
    )
    other.add_argument(
        "--train-command", help="with --from-run: the command that trained it (recorded as is)"
    )
    other.add_argument(
        "--overwrite",
        action="store_true",
        help="with --from-run: replace results files that exist in --out-dir (refused otherwise)",
    )
    return parser


def _print_grid(trials: Sequence[Trial], settings: Settings) -> None:
    width = len(str(len(trials) - 1))
    for trial in trials:
        mark = "  (finished)" if is_finished(trial, settings) else ""
        print(f"{trial.index:>{width}}  {trial.name}{mark}")
    print(
        f"{len(trials)} trials: --array-index 0 to {len(trials) - 1} (SLURM: "
        f"#SBATCH --array=0-{len(trials) - 1})"
    )


def cmd_sweep(argv: Sequence[str]) -> int:
    """`factorl sweep ...`: see `HELP` and docs/scale.md. Exit code 0 when every trial is
    finished, 1 when one failed or was interrupted, 2 for a bad grid or flag."""
    args = _parser().parse_args(argv)
    command = " ".join(["factorl sweep", *argv])
    try:
        return _sweep(args, command)
    except SweepError as e:
        print(f"factorl: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # finished trials keep their results files, the others their checkpoints
        print("factorl: sweep stopped; run the same command again to continue", file=sys.stderr)
        return 130


def plan_sweep(args: argparse.Namespace, command: str) -> tuple[list[Trial], Settings]:
    """The whole grid of the command line and what its trials share, checked as running it
    checks it, whatever the mode: --list shows only a grid that runs, and each --array-index
    task of a job array sized from it refuses or runs the same grid."""
    for flag, value, low in (
        ("--steps", args.steps, 1),
        ("--eval-every", args.eval_every, 1),
        ("--eval-episodes", args.eval_episodes, 1),
        ("--max-parallel", args.max_parallel, 1),
        ("--max-retries", args.max_retries, 0),
    ):
        if value is not None and value < low:
            raise SweepError(f"{flag} must be >= {low}; got {value}")
    gpus = args.gpus_per_trial
    # Ray refuses a negative share, and fails on nan or inf with an error that names no flag
    if not (math.isfinite(gpus) and gpus >= 0 and round(gpus, 4) == gpus):
        raise SweepError(
            f"--gpus-per-trial is 0 or more, in steps of 0.0001 (e.g. 1 or 0.25); got {gpus}"
        )
    if args.overwrite:
        raise SweepError(
            "--overwrite is for --from-run; a sweep skips a finished trial: remove its results "
            "file to train it again"
        )
    algos = parse_names("--algos", args.algos)
    envs = parse_names("--envs", args.envs)
    try:
        import_env_modules(args.imports)  # before the environment ids are checked
        fixed = fixed_overrides(algos, args.fixed)
        for key, _ in parse_grid(args.grid):
            if any(key in values for values in fixed.values()):
                raise SweepError(f"{key} is in both --set and --grid; keep one")
        trials = build_grid(
            algos, envs, parse_seeds(args.seeds), parse_grid(args.grid), vmap_seeds=args.vmap_seeds
        )
    except ConfigError as e:
        raise SweepError(str(e)) from None
    settings = Settings(
        steps=args.steps,
        eval_every=args.eval_every,
        eval_episodes=args.eval_episodes,
        fixed=fixed,
        work_dir=args.work_dir,
        out_dir=args.out_dir,
        command=command,
        imports=tuple(args.imports),
    )
    check_trials(trials, settings)
    return trials, settings


def _sweep(args: argparse.Namespace, command: str) -> int:
    if args.from_run:
        try:
            paths = summarise_folder(
                Path(args.from_run),
                Path(args.out_dir),
                args.train_command or command,
                overwrite=args.overwrite,
            )
        except (ConfigError, RunFolderError) as e:  # not a run folder, a damaged one
            raise SweepError(one_line(e)) from None
        for path in paths:
            print(f"wrote {path}")
        return 0
    trials, settings = plan_sweep(args, command)
    if args.list:
        _print_grid(trials, settings)
        return 0
    if args.array_index is not None:
        if not 0 <= args.array_index < len(trials):
            raise SweepError(
                f"--array-index {args.array_index} is outside the grid of {len(trials)} trials "
                f"(0 to {len(trials) - 1}; --list shows them)"
            )
        outcome = run_trial(trials[args.array_index], settings)
        _print_outcome(outcome)
        return 0 if outcome["status"] in ("finished", "skipped") else 1
    import_ray()  # before anything else: say at once what to install
    todo = []
    for trial in trials:
        if is_finished(trial, settings):
            print(f"skipped {trial.name}: results exist")
        else:
            todo.append(trial)
    outcomes = run_on_ray(
        todo,
        settings,
        address=args.address,
        max_parallel=args.max_parallel,
        max_retries=args.max_retries,
        gpus_per_trial=args.gpus_per_trial,
    )
    bad = [name for name, o in outcomes.items() if o["status"] not in ("finished", "skipped")]
    if bad:
        print(
            f"{len(bad)} of {len(trials)} trials did not finish; run the same command again to "
            "continue them",
            file=sys.stderr,
        )
        return 1
    return 0
