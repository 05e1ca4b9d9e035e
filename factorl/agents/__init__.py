"""The algorithms factorl implements, by name."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from factorl.agents.cqn import CQN
from factorl.agents.cqn_as import CQNAS
from factorl.agents.decqn import DecQN
from factorl.agents.revalued import REValueD
from factorl.agents.sac import SAC
from factorl.agents.td3 import TD3

ALGORITHMS: dict[str, type] = {
    "decqn": DecQN,
    "revalued": REValueD,
    "cqn": CQN,
    "cqn_as": CQNAS,
    "sac": SAC,
    "td3": TD3,
}
#: each algorithm's config dataclass (its flags and defaults)
CONFIGS: dict[str, type] = {name: cls.Config for name, cls in ALGORITHMS.items()}


def get_algorithm(name: str) -> type:
    """The agent class for `name`, or a clear error listing the known algorithms."""
    try:
        return ALGORITHMS[name]
    except KeyError:
        from factorl.config import ConfigError

        known = ", ".join(sorted(ALGORITHMS))
        raise ConfigError(f"unknown algorithm {name!r}; available: {known}") from None


def agent_overrides(algos: Sequence[str], items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per-algorithm option dicts from `[ALGO.]KEY=VALUE` strings, typed by the config fields.

    The `--agent-override` of the benchmark scripts: an unscoped KEY applies to every algorithm in
    `algos` that has that option. An unknown algorithm, a scope outside `algos`, a key that none
    of them has, or a value of the wrong type raises ConfigError, so a typo stops a sweep before
    it trains runs labelled with settings they did not use. Ranges are checked later, by
    `make_config`.
    """
    from factorl.config import ConfigError

    for algo in algos:
        get_algorithm(algo)
    result: dict[str, dict[str, Any]] = {a: {} for a in algos}
    for item in items:
        target, sep, text = item.partition("=")
        if not sep or not target.strip():
            raise ConfigError(f"--agent-override expects [ALGO.]KEY=VALUE, got {item!r}")
        algo, dot, key = target.strip().rpartition(".")
        key = key.replace("-", "_")
        if dot and algo not in result:
            raise ConfigError(
                f"--agent-override {item!r} names {algo!r}, which is not among the algorithms "
                f"({', '.join(algos)})"
            )
        chosen = [algo] if dot else list(algos)
        applied = False
        for name in chosen:
            cls = CONFIGS[name]
            if key in {f.name for f in dataclasses.fields(cls)}:
                result[name][key] = _parse_value(cls, key, text)
                applied = True
        if not applied:
            known = sorted({f.name for a in chosen for f in dataclasses.fields(CONFIGS[a])})
            raise ConfigError(
                f"--agent-override {item!r}: no selected algorithm has option {key!r}; "
                f"known: {', '.join(known)}"
            )
    return result


def _parse_value(cls: type, key: str, text: str) -> Any:
    from factorl.config import ConfigError, field_type

    kind = field_type(cls, key)
    if kind is bool:
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key} must be true or false, got {text!r}")
    if kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            raise ConfigError(f"{key} must be {kind.__name__}, got {text!r}") from None
    return text
