"""The algorithms factorl implements, by name."""

from __future__ import annotations

from factorl.agents.cqn import CQN, CQNConfig
from factorl.agents.cqn_as import CQNAS, CQNASConfig
from factorl.agents.decqn import DecQN, DecQNConfig

ALGORITHMS: dict[str, type] = {"decqn": DecQN, "cqn": CQN, "cqn_as": CQNAS}
CONFIGS: dict[str, type] = {"decqn": DecQNConfig, "cqn": CQNConfig, "cqn_as": CQNASConfig}


def get_algorithm(name: str) -> type:
    """The agent class for `name`, or a clear error listing the known algorithms."""
    try:
        return ALGORITHMS[name]
    except KeyError:
        from factorl.config import ConfigError

        known = ", ".join(sorted(ALGORITHMS))
        raise ConfigError(f"unknown algorithm {name!r}; available: {known}") from None
