"""Configuration: plain dataclasses whose field metadata (help text, bounds, choices) drives both
validation and the command-line flags, so a field is declared once.

A run is described by a `Config` in sections: `run` (seed, budget, folder, display), `env` (which
environment, how many side by side), `replay` (buffer and learner batches, with each algorithm's
reference values), `agent` (the algorithm's own config dataclass) and `runner` (evaluation,
logging, checkpoints). A setting is named by one dotted key, `section.field` (`run.steps`,
`env.id`, `replay.n_step`), in every syntax: `make_config` overrides, presets, `parse_override`
strings (`agent.width=256`, for benchmarks and sweeps), and the command line, where it is the
flag (`--replay.n-step 3`).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import math
import numbers
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: seeds go to NumPy's RandomState (env seed + 1 included) and JAX keys: 31 bits fit them all
SEED_MAX = 2**31 - 2
#: episodes of one evaluation or collection: far beyond any protocol's, short of a typo's
MAX_EPISODES = 100_000


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and what it accepts."""


def check_episodes(episodes: object, name: str = "episodes") -> None:
    """Refuse an episode count (of an evaluation or a collection) that is not an integer in
    [1, MAX_EPISODES], naming it as `name` (the flag the user gave it with, say)."""
    # NumPy's integers count as integers (numbers.Integral), as they did for the checks this
    # one replaced
    whole = isinstance(episodes, numbers.Integral) or (
        isinstance(episodes, float) and episodes.is_integer()
    )
    if isinstance(episodes, bool) or not whole or not 1 <= episodes <= MAX_EPISODES:
        raise ConfigError(f"{name} must be an integer in [1, {MAX_EPISODES:,}], got {episodes!r}")


def install_hint(extra: str) -> str:
    """How to install the optional dependencies `extra` (a pyproject extra), for the one-line
    error of a feature that needs them: in a clone with the tested pins, or from the index."""
    return f'pip install -c constraints.txt -e ".[{extra}]" (or pip install "factorl[{extra}]")'


def one_line(text: object) -> str:
    """`text` (an exception, say) as one line: every run of whitespace, newlines included,
    becomes one space. Every error factorl reports is one line."""
    return " ".join(str(text).split())


# ------------------------------------------------------------------------------------- algorithms
#: algorithms by name: what `build_config`, the CLI and the runners look an algorithm up in.
#: `factorl.agents` registers factorl's own when the package is imported; the registry lives here
#: so that the config, which must know each algorithm's settings, does not import the algorithms
ALGORITHMS: dict[str, type] = {}
_ALGORITHM_NAME = re.compile(r"[a-z][a-z0-9_]*")


def register_algorithm(name: str, agent_class: type) -> None:
    """Make `agent_class` configurable and trainable as `name`: an algorithm written outside
    factorl registers the same way as factorl's own. The class declares its settings as `Config`
    (a dataclass of `option`s), its reference replay as `REPLAY` and the replay settings it
    cannot use as `REPLAY_FIXED` (see `factorl.core.agent.JaxAgent`)."""
    if not _ALGORITHM_NAME.fullmatch(name):
        raise ValueError(f"algorithm names are lower-case identifiers; got {name!r}")
    missing = [a for a in ("Config", "REPLAY", "REPLAY_FIXED") if not hasattr(agent_class, a)]
    if missing:
        raise TypeError(f"{agent_class.__name__} lacks {', '.join(missing)}")
    if ALGORITHMS.get(name, agent_class) is not agent_class:
        raise ValueError(f"an algorithm named {name!r} is already registered")
    ALGORITHMS[name] = agent_class


def get_algorithm(name: str) -> type:
    """The agent class registered as `name`, or a one-line error listing the known ones."""
    try:
        return ALGORITHMS[name]
    except KeyError:
        known = ", ".join(sorted(ALGORITHMS))
        # flags take - for _ and the papers capitalise names (cqn-as, DecQN): point at the name
        spelled = str(name).lower().replace("-", "_")
        close = difflib.get_close_matches(spelled, list(ALGORITHMS), n=1, cutoff=0.75)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(f"unknown algorithm {name!r}{hint}; available: {known}") from None


def option(
    default: Any,
    help: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    choices: tuple[Any, ...] | None = None,
) -> Any:
    """A dataclass field with documentation and bounds (checked by `validate`)."""
    meta = {"help": help, "low": low, "high": high, "low_open": low_open, "choices": choices}
    return field(default=default, metadata=meta)


def _describe_range(meta: dict[str, Any]) -> str:
    low, high = meta.get("low"), meta.get("high")
    if meta.get("choices"):
        return "one of " + ", ".join(repr(c) for c in meta["choices"])
    parts = []
    if low is not None:
        parts.append(f"{'>' if meta.get('low_open') else '>='} {low}")
    if high is not None:
        parts.append(f"<= {high}")
    return " and ".join(parts) if parts else "any value"


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    # resolving a class's string annotations is slow, and every config validation asks
    return typing.get_type_hints(cls)


def field_type(cls: type, name: str, keep_none: bool = False) -> Any:
    """The concrete type of a dataclass field (resolving `from __future__` annotations); an
    optional field's type without None unless `keep_none`."""
    hint = _type_hints(cls)[name]
    if keep_none:
        return hint
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = args[0]
    return hint


def validate(config: Any, section: str = "") -> None:
    """Check types and bounds of every field; raise ConfigError naming the first bad one."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        meta = f.metadata
        name = f"{section}{f.name}"
        if value is None:
            continue
        kind = field_type(type(config), f.name)
        if kind is bool:
            if not isinstance(value, bool):
                raise ConfigError(f"{name} must be true or false, got {value!r}")
        elif kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name} must be an integer, got {value!r}")
        elif kind is float:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ConfigError(f"{name} must be finite, got {value!r}")
        elif kind is str and not isinstance(value, str):
            raise ConfigError(f"{name} must be a string, got {value!r}")
        elif kind is str and not value.strip():  # no setting means anything by blank text
            raise ConfigError(f"{name} must not be empty; leave it out for its default")
        choices = meta.get("choices")
        if choices and value not in choices:
            raise ConfigError(f"{name} must be {_describe_range(meta)}; got {value!r}")
        low, high = meta.get("low"), meta.get("high")
        too_low = low is not None and (value <= low if meta.get("low_open") else value < low)
        too_high = high is not None and value > high
        if too_low or too_high:
            raise ConfigError(f"{name} must be {_describe_range(meta)}; got {value!r}")


@dataclass
class RunSettings:
    """The run: its seed, budget and folder, what it shows while training and where it logs."""

    seed: int = option(
        0,
        "random seed (networks, exploration, replay sampling, environments)",
        low=0,
        high=SEED_MAX,
    )
    steps: int = option(1_000_000, "environment steps to train for (agent steps)", low=1)
    num_seeds: int = option(
        1,
        "seeds trained side by side in one process (seed, seed + 1, ...); JAX-native "
        "environments (gymnax:, playground:) only",
        low=1,
        high=1024,
    )
    dir: str | None = option(None, "run folder; None: a new runs/ALGO-ENV-sSEED-TIME")
    progress: str = option(
        "auto",
        "progress display: bar (live), lines (periodic plain lines), none; auto: bar on a tty",
        choices=("auto", "bar", "lines", "none"),
    )
    tensorboard: bool = option(True, "write TensorBoard event files under RUN_DIR/tb")
    wandb: bool = option(
        False,
        "also log every metrics record and the config to Weights & Biases (files under "
        "RUN_DIR/wandb; a resume continues the same W&B run). Needs the wandb extra; "
        "WANDB_MODE=offline logs without an account (docs/logging.md)",
    )
    wandb_project: str = option("factorl", "W&B project of the run (with run.wandb)")
    wandb_entity: str | None = option(
        None, "W&B entity (user or team) of the run; None: your default entity"
    )
    wandb_group: str | None = option(None, "W&B group of the run, e.g. one per sweep or task")
    wandb_tags: str | None = option(None, "W&B tags of the run, comma-separated (a,b)")

    def wandb_init(self) -> dict[str, Any]:
        """The keyword arguments of `wandb.init` these settings give: project, entity, group
        and tags (a list)."""
        tags = [t.strip() for t in (self.wandb_tags or "").split(",") if t.strip()]
        return {
            "project": self.wandb_project,
            "entity": self.wandb_entity,
            "group": self.wandb_group,
            "tags": tags or None,
        }


#: far beyond any task's use (the Control Suite's are 1-8): at 1000, one step is an episode there
_MAX_ACTION_REPEAT = 1000


@dataclass
class EnvSettings:
    """The environment, and how many copies are stepped together."""

    id: str = option(
        "gym:Pendulum-v1",
        "environment id: dmc:DOMAIN-TASK or gym:ID (Box action space) on the host runner; "
        "gymnax:ID or playground:NAME (JAX-native) on the device runner",
    )
    num_envs: int = option(
        1,
        "environments stepped together; the agent acts on all in one call and the budget and "
        "every interval count their steps summed",
        low=1,
        high=4096,
    )
    action_repeat: int = option(
        1,
        "repeat each action this many simulator steps, rewards summed; budgets, intervals and "
        "warm-ups still count agent steps (the logs' env_frames count simulator steps)",
        low=1,
        high=_MAX_ACTION_REPEAT,
    )


@dataclass
class RunnerSettings:
    """The training loop's evaluation, logging and checkpoints."""

    eval_every: int = option(10_000, "evaluate the greedy policy every N env steps", low=1)
    eval_episodes: int = option(5, "episodes per evaluation", low=1, high=MAX_EPISODES)
    log_every: int = option(1_000, "write a metrics record every N env steps", low=1)
    checkpoint_every: int = option(50_000, "save a checkpoint every N env steps", low=1)
    checkpoint_minutes: float = option(
        5.0,
        "also save a checkpoint when this many minutes of wall time have passed since the last "
        "one, so a killed run loses at most that much (0: off)",
        low=0.0,
    )
    keep_checkpoints: int = option(2, "how many recent checkpoints to keep", low=1)
    save_replay: bool = option(True, "include the replay buffer in checkpoints (exact resume)")
    video_every: int = option(
        0,
        "write an MP4 of one greedy episode every N env steps to RUN_DIR/videos (and TensorBoard)"
        "; 0: off. Host environments (dmc:, gym:) only; needs the video extra (docs/videos.md)",
        low=0,
    )


@dataclass
class DataSettings:
    """Learning from a dataset: a local Minari dataset in a second replay buffer, an offline
    phase of updates from it alone, then online training with a fixed share of every batch
    drawn from it (docs/datasets.md). Single-agent algorithms, on either runner."""

    dataset: str | None = option(
        None,
        "local Minari dataset id (NAME-vN or NAMESPACE/NAME-vN, e.g. from factorl collect) "
        "loaded into a second replay buffer; None: no dataset",
    )
    offline_steps: int = option(
        0, "learner updates from the dataset alone before the first environment step", low=0
    )
    share: float = option(
        0.5,
        "fraction of every online batch drawn from the dataset (CQN's demo batches: 0.5); 0: the "
        "dataset serves the offline phase only",
        low=0.0,
        high=1.0,
    )


#: environment id families of single-agent environments, where a dataset can be used
DATASET_ENV_FAMILIES = ("gym", "dmc", "gymnax", "playground")


def window_rows(capacity: int, num_envs: int, window: int, block: int = 0) -> int:
    """Steps each environment's stream holds in a replay sampled in windows of `window` steps:
    `capacity` shared equally, rounded down to whole `block`-step blocks where the windows are
    aligned blocks (`block` 0: windows start at any step). A ValueError naming
    replay.capacity when that leaves a stream shorter than one window."""
    rows = capacity // num_envs  # every stream gets the same number of slots
    if block:
        rows -= rows % block
    if rows < window:
        raise ValueError(
            f"replay.capacity {capacity} leaves {rows} steps per environment for {num_envs} "
            f"environments, fewer than the {window}-step window; raise replay.capacity"
        )
    return rows


def most_sampleable(rows: int, num_envs: int, window: int, aligned: bool) -> int:
    """The most transitions a replay of `num_envs` streams of `rows` steps ever counts as
    sampleable (what `learning_starts` is compared with): every stored step when windows are
    aligned blocks, else those with a whole window after them."""
    return num_envs * (rows if aligned else rows - window + 1)


@dataclass(frozen=True)
class ReplaySettings:
    """The replay buffer and the batches the learner samples from it. Each algorithm declares its
    reference values (`REPLAY` next to its config) and the settings it cannot use."""

    capacity: int = option(
        1_000_000, "replay buffer capacity (transitions, summed over environments)", low=1
    )
    batch_size: int = option(256, "learner batch size", low=1)
    n_step: int = option(1, "n-step return length", low=1)
    prioritized: bool = option(False, "prioritised replay (False: uniform)")
    priority_alpha: float = option(0.6, "prioritisation exponent alpha", low=0.0)
    priority_beta: float = option(0.4, "importance-sampling exponent beta", low=0.0)


def sections(algo: str) -> dict[str, type]:
    """The config dataclass of each section of `algo`'s config, in order."""
    return {name: type(value) for name, value in section_defaults(algo).items()}


def section_defaults(algo: str) -> dict[str, Any]:
    """Each section of `algo`'s config at its reference values: the replay section is the
    algorithm's own (`REPLAY`), the agent section its config dataclass."""
    agent = get_algorithm(algo)
    return {
        "run": RunSettings(),
        "env": EnvSettings(),
        "replay": agent.REPLAY,
        "agent": agent.Config(),
        "runner": RunnerSettings(),
        "data": DataSettings(),
    }


def setting_keys(algo: str) -> list[str]:
    """Every dotted key `algo`'s config has, section by section."""
    return [
        f"{name}.{f.name}" for name, cls in sections(algo).items() for f in dataclasses.fields(cls)
    ]


def _close_keys(key: str, known: Sequence[str]) -> str:
    """The "did you mean ...?" of a mistyped dotted key ("" if nothing is close): the keys whose
    field is the given name (a key given without its section), else the nearest spellings."""
    field_name = key.rpartition(".")[2]
    close = [k for k in known if k.rpartition(".")[2] == field_name]
    close = close or difflib.get_close_matches(key, known, n=2, cutoff=0.75)
    return f"did you mean {' or '.join(close)}?" if close else ""


def _split_key(algo: str, key: str) -> tuple[str, str]:
    """(section, field) of a dotted key, or a one-line error naming the closest keys."""
    section, _, name = str(key).partition(".")
    classes = sections(algo)
    if section in classes and name in {f.name for f in dataclasses.fields(classes[section])}:
        return section, name
    hint = _close_keys(str(key), setting_keys(algo)) or "keys are SECTION.FIELD"
    raise ConfigError(
        f"unknown setting {key!r} for {algo}; {hint} ('factorl train {algo} -h' lists them)"
    )


@dataclass
class Config:
    """Everything that defines a run: the algorithm and its settings, section by section."""

    algo: str
    run: RunSettings
    env: EnvSettings
    replay: ReplaySettings
    agent: Any
    runner: RunnerSettings
    data: DataSettings = field(default_factory=DataSettings)

    def to_dict(self) -> dict[str, Any]:
        """The config by sections, as saved in a run folder's config.json."""
        return {
            "algo": self.algo,
            **{name: dataclasses.asdict(getattr(self, name)) for name in sections(self.algo)},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def settings(self) -> dict[str, Any]:
        """Every setting by its dotted key (`run.steps`, `replay.n_step`, ...)."""
        return flatten(self.to_dict())

    def validate(self) -> None:
        for name in sections(self.algo):
            validate(getattr(self, name), f"{name}.")
        if hasattr(self.agent, "check"):
            self.agent.check()
        self._check_replay()
        self._check_learning_can_start()
        self._check_data()

    def _check_data(self) -> None:
        """Refuse a data setting that would do nothing, or a dataset where it cannot be used."""
        data = self.data
        if data.dataset is None:
            if data.offline_steps:
                raise ConfigError(
                    "data.offline_steps learns from a dataset; name one with data.dataset"
                )
            return
        if getattr(get_algorithm(self.algo), "MULTI_AGENT", False):
            raise ConfigError(
                f"data.dataset is for single-agent algorithms; {self.algo} learns from windows "
                "of a team's steps, which a Minari dataset does not hold"
            )
        family = self.env.id.partition(":")[0]
        if family not in DATASET_ENV_FAMILIES:
            raise ConfigError(
                "data.dataset needs a single-agent environment (gym:, dmc:, gymnax:, "
                f"playground:); {self.env.id} is not one"
            )

    def _check_replay(self) -> None:
        """Refuse a replay setting the algorithm cannot use (it must keep its reference value)."""
        agent = get_algorithm(self.algo)
        for name, reason in agent.REPLAY_FIXED.items():
            value, reference = getattr(self.replay, name), getattr(agent.REPLAY, name)
            if value != reference:
                raise ConfigError(
                    f"replay.{name} must stay {reference!r} for {self.algo} ({reason}); "
                    f"got {value!r}"
                )
        if self.replay.capacity < self.replay.n_step:
            raise ConfigError("replay.capacity must be at least replay.n_step")

    def _check_learning_can_start(self) -> None:
        """Refuse a replay too small to ever hold `learning_starts` sampleable transitions.

        A step becomes sampleable once the window after it is stored (n-step return, action
        sequence, or a recurrent learner's sequence), so a full stream holds rows - window + 1
        of them between episode ends; with aligned windows (VDN, QMIX) every step of a complete
        block counts.
        """
        capacity, starts = self.replay.capacity, self.agent.learning_starts
        sequence_length = getattr(self.agent, "sequence_length", 1)
        window = max(self.replay.n_step, getattr(self.agent, "horizon", 1), sequence_length)
        aligned = bool(getattr(self.agent, "aligned_windows", False))
        n = self.env.num_envs  # every environment's stream holds capacity // n slots
        try:
            rows = window_rows(capacity, n, window, sequence_length if aligned else 0)
        except ValueError as e:
            raise ConfigError(str(e)) from e
        usable = most_sampleable(rows, n, window, aligned)
        if starts > usable:
            raise ConfigError(
                f"replay.capacity {capacity} holds at most {usable} sampleable transitions, fewer "
                f"than agent.learning_starts {starts}, so learning would never start; raise "
                "replay.capacity or lower agent.learning_starts"
            )


def flatten(nested: Mapping[str, Any]) -> dict[str, Any]:
    """{"run": {"steps": 5}, "algo": "x"} -> {"run.steps": 5}: the dotted keys of a config dict
    by sections (`algo`, not a setting, is left out)."""
    return {
        f"{section}.{name}": value
        for section, values in nested.items()
        if isinstance(values, Mapping)
        for name, value in values.items()
    }


def build_config(algo: str, settings: Mapping[str, Any]) -> Config:
    """A validated Config of `algo`: its reference defaults with `settings` (dotted keys) set."""
    defaults = section_defaults(algo)
    values: dict[str, dict[str, Any]] = {name: {} for name in defaults}
    for key, value in settings.items():
        section, name = _split_key(algo, key)
        values[section][name] = value
    parts = {name: dataclasses.replace(defaults[name], **values[name]) for name in defaults}
    cfg = Config(algo, **parts)
    cfg.validate()
    return cfg


#: where each setting of the first layout's flat `train` section lives now (run folders written
#: before the config had sections keep {"algo", "train": {...}, "agent": {...}})
_FIRST_LAYOUT_TRAIN = {
    "env": "env.id",
    "num_envs": "env.num_envs",
    "action_repeat": "env.action_repeat",
    **{name: f"run.{name}" for name in ("seed", "steps", "num_seeds", "progress")},
    "run_dir": "run.dir",
    "tensorboard": "run.tensorboard",
    **{f.name: f"runner.{f.name}" for f in dataclasses.fields(RunnerSettings)},
}


#: where each setting of earlier layouts that moved or was renamed lives now
_EARLIER_KEYS = {
    "run.run_dir": "run.dir",
    "agent.replay_capacity": "replay.capacity",
    **{
        f"agent.{name}": f"replay.{name}"
        for name in ("batch_size", "n_step", "prioritized", "priority_alpha", "priority_beta")
    },
}


#: settings added after run folders were written without them, whose default is not what those
#: runs did: (algorithm, setting) -> the value they ran with. Filled in only for runs the setting
#: acts on (all of these act on dataset rows), so an old online run still reads as the defaults.
#: tests/test_config.py fails on a setting the committed results files lack until it is listed
#: here or, with why its default is what they did, in its ADDED_AT_EARLIER_BEHAVIOUR.
_BEFORE_ADDED = {(algo, "agent.demo_bin_mean"): "others" for algo in ("cqn", "cqn_as")}


def saved_settings(data: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(algo, dotted settings) of a parsed config.json, of any layout: by sections, by sections
    with the replay settings still in `agent`, or the first one's flat `train` and `agent`
    sections. A pure transform: nothing is imported or run, and the settings still go through
    `build_config`'s checks."""
    algo = data["algo"]
    if not isinstance(algo, str):
        raise ConfigError(f"the algorithm must be a name, got {algo!r}")
    if "train" in data:
        if not isinstance(data["train"], Mapping) or not isinstance(data.get("agent", {}), Mapping):
            raise ConfigError("its train and agent sections must be objects")
        # a key the first layout did not have stays `train.KEY`, which build_config refuses
        settings = {_FIRST_LAYOUT_TRAIN.get(k, f"train.{k}"): v for k, v in data["train"].items()}
        settings.update(flatten({"agent": data.get("agent", {})}))
    else:
        settings = flatten({k: v for k, v in data.items() if k != "algo"})
    settings = {_EARLIER_KEYS.get(k, k): v for k, v in settings.items()}
    if settings.get("data.dataset"):
        for (owner, key), value in _BEFORE_ADDED.items():
            if owner == algo and key not in settings:
                settings[key] = value
    return algo, settings


def parse_value(algo: str, key: str, text: str) -> Any:
    """`text` as a value of setting `key`, typed by its field: integers, numbers, true/false
    for booleans, none for an optional field. Bounds are checked later, by `validate`."""
    section, name = _split_key(algo, key)
    cls = sections(algo)[section]
    kind = field_type(cls, name)
    optional = field_type(cls, name, keep_none=True) is not kind
    if optional and text.strip().lower() in ("none", "null"):
        return None
    if kind is bool:
        lowered = text.strip().lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        raise ConfigError(f"{key} must be true or false, got {text!r}")
    try:
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise ConfigError(f"{key} must be {what}, got {text!r}") from None
    return text


def _override_parts(text: str) -> tuple[str, str]:
    """(dotted key, value text) of `SECTION.FIELD=VALUE`; hyphens in FIELD become underscores."""
    key, sep, value = text.partition("=")
    section, dot, name = key.strip().partition(".")
    if not sep or not dot or not section or not name:
        raise ConfigError(
            f"an override is SECTION.FIELD=VALUE (e.g. agent.width=256), got {text!r}"
        )
    return f"{section}.{name.replace('-', '_')}", value


def parse_override(text: str, algo: str) -> tuple[str, Any]:
    """One override in its string form, `SECTION.FIELD=VALUE` (for benchmark flags and sweeps),
    as (dotted key, value typed by the field): `parse_override("agent.width=256", "decqn")` is
    `("agent.width", 256)`. FIELD may be spelled with hyphens, as on the command line."""
    key, value = _override_parts(text)
    return key, parse_value(algo, key, value)


def overrides_by_algo(algos: Sequence[str], items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Each algorithm's overrides from `SECTION.FIELD=VALUE` strings (a benchmark's `--set`).

    An item applies to every algorithm in `algos` that has its key; a key none of them has, or a
    value of the wrong type, is a ConfigError, so a typo stops a sweep before it trains runs
    labelled with settings they did not use. Ranges are checked later, by `make_config`.
    """
    result: dict[str, dict[str, Any]] = {algo: {} for algo in algos}
    for item in items:
        key, text = _override_parts(item)
        having = [algo for algo in algos if key in setting_keys(algo)]
        if not having:
            known = sorted({k for algo in algos for k in setting_keys(algo)})
            hint = _close_keys(key, known)
            raise ConfigError(
                f"{item!r}: no selected algorithm ({', '.join(algos)}) has setting {key!r}"
                + (f"; {hint}" if hint else "")
            )
        for algo in having:
            result[algo][key] = parse_value(algo, key, text)
    return result
