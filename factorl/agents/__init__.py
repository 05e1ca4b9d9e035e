"""The algorithms factorl implements, by name."""

from __future__ import annotations

from factorl.agents.cqn import CQN, CQNConfig
from factorl.agents.decqn import DecQN, DecQNConfig

ALGORITHMS: dict[str, type] = {"decqn": DecQN, "cqn": CQN}
CONFIGS: dict[str, type] = {"decqn": DecQNConfig, "cqn": CQNConfig}


def get_algorithm(name: str) -> type:
    """The agent class for `name`, or a clear error listing the known algorithms."""
    try:
        return ALGORITHMS[name]
    except KeyError:
        from factorl.config import ConfigError

        known = ", ".join(sorted(ALGORITHMS))
        raise ConfigError(f"unknown algorithm {name!r}; available: {known}") from None
