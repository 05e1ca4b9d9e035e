"""The algorithms factorl implements, registered by name (`factorl.core.config.ALGORITHMS`)."""

from __future__ import annotations

from factorl.agents.arsq import ARSQ
from factorl.agents.cqn import CQN
from factorl.agents.cqn_as import CQNAS
from factorl.agents.decqn import DecQN
from factorl.agents.revalued import REValueD
from factorl.agents.sac import SAC
from factorl.agents.td3 import TD3
from factorl.agents.value_decomposition import QMIX, VDN
from factorl.core.config import ALGORITHMS, get_algorithm, register_algorithm

for _name, _agent in {
    "decqn": DecQN,
    "revalued": REValueD,
    "cqn": CQN,
    "cqn_as": CQNAS,
    "sac": SAC,
    "td3": TD3,
    "vdn": VDN,
    "qmix": QMIX,
    "arsq": ARSQ,
}.items():
    register_algorithm(_name, _agent)

#: each algorithm's config dataclass (its flags and defaults)
CONFIGS: dict[str, type] = {name: cls.Config for name, cls in ALGORITHMS.items()}

__all__ = ["ALGORITHMS", "CONFIGS", "get_algorithm", "register_algorithm"]
