"""Configuration: plain dataclasses whose field metadata (help text, bounds, choices) drives both
validation and the command-line flags, so a field is declared once.

A run is described by `RunConfig`: the algorithm name, the `TrainConfig` of the loop (environment,
budget, evaluation, logging, checkpoints) and the algorithm's own config dataclass.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

#: seeds go to NumPy's RandomState (env seed + 1 included) and JAX keys: 31 bits fit them all
SEED_MAX = 2**31 - 2


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and what it accepts."""


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


def field_type(cls: type, name: str) -> type:
    """The concrete type of a dataclass field (resolving `from __future__` annotations)."""
    hint = typing.get_type_hints(cls)[name]
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
        choices = meta.get("choices")
        if choices and value not in choices:
            raise ConfigError(f"{name} must be {_describe_range(meta)}; got {value!r}")
        low, high = meta.get("low"), meta.get("high")
        too_low = low is not None and (value <= low if meta.get("low_open") else value < low)
        too_high = high is not None and value > high
        if too_low or too_high:
            raise ConfigError(f"{name} must be {_describe_range(meta)}; got {value!r}")


@dataclass
class TrainConfig:
    """The training loop: environment, budget, evaluation, logging and checkpoints."""

    env: str = option(
        "gym:Pendulum-v1",
        "environment id: dmc:DOMAIN-TASK or gym:ID (Box action space) on the host runner; "
        "gymnax:ID or playground:NAME (JAX-native) on the device runner",
    )
    seed: int = option(
        0,
        "random seed (networks, exploration, replay sampling, environments)",
        low=0,
        high=SEED_MAX,
    )
    steps: int = option(1_000_000, "environment steps to train for (agent steps)", low=1)
    num_envs: int = option(
        1,
        "environments stepped together; the agent acts on all in one call and the budget and "
        "every interval count their steps summed",
        low=1,
        high=4096,
    )
    num_seeds: int = option(
        1,
        "seeds trained side by side in one process (seed, seed + 1, ...); JAX-native "
        "environments (gymnax:, playground:) only",
        low=1,
        high=1024,
    )
    action_repeat: int = option(1, "repeat each action this many env steps", low=1)
    eval_every: int = option(10_000, "evaluate the greedy policy every N env steps", low=1)
    eval_episodes: int = option(5, "episodes per evaluation", low=1)
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
    run_dir: str | None = option(None, "run folder (default: runs/ALGO-ENV-sSEED-TIME)")
    progress: str = option(
        "auto",
        "progress display: bar (live), lines (periodic plain lines), none; auto: bar on a tty",
        choices=("auto", "bar", "lines", "none"),
    )
    tensorboard: bool = option(True, "write TensorBoard event files under RUN_DIR/tb")


@dataclass
class RunConfig:
    """Everything that defines a run: algorithm, loop settings and algorithm settings."""

    algo: str
    train: TrainConfig
    agent: Any

    def to_dict(self) -> dict[str, Any]:
        return {
            "algo": self.algo,
            "train": dataclasses.asdict(self.train),
            "agent": dataclasses.asdict(self.agent),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def validate(self) -> None:
        validate(self.train, "train.")
        validate(self.agent, f"{self.algo}.")
        if hasattr(self.agent, "check"):
            self.agent.check()
        self._check_learning_can_start()

    def _check_learning_can_start(self) -> None:
        """Refuse a replay too small to ever hold `learning_starts` sampleable transitions.

        A step becomes sampleable once the n-step (or action-sequence) window after it is stored,
        so a full buffer holds capacity - window + 1 of them between episode ends.
        """
        a, algo = self.agent, self.algo
        capacity = getattr(a, "replay_capacity", None)
        starts = getattr(a, "learning_starts", None)
        if capacity is None or starts is None:
            return
        window = max(getattr(a, "n_step", 1), getattr(a, "horizon", 1))
        n = self.train.num_envs  # every environment's stream holds capacity // n slots
        usable = n * (capacity // n - window + 1)
        if starts > usable:
            raise ConfigError(
                f"{algo}.replay_capacity {capacity} holds at most {usable} sampleable transitions,"
                f" fewer than {algo}.learning_starts {starts}, so learning would never start; "
                "raise --replay-capacity or lower --learning-starts"
            )


def from_dict(cls: type, values: dict[str, Any], section: str) -> Any:
    """Build a config dataclass from a dict, rejecting unknown keys with a clear message."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(
            f"unknown {section} option(s): {', '.join(unknown)}; known: {', '.join(sorted(names))}"
        )
    return cls(**values)
