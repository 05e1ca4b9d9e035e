"""The algorithms factorl implements, by name."""

from __future__ import annotations

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
        from factorl.core.config import ConfigError

        known = ", ".join(sorted(ALGORITHMS))
        raise ConfigError(f"unknown algorithm {name!r}; available: {known}") from None
