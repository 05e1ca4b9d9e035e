"""factorl: reinforcement learning over factorised action spaces, in JAX.

Quick use::

    import factorl
    cfg = factorl.make_config("decqn", {"env": "gym:Pendulum-v1", "steps": 20_000})
    result = factorl.train(cfg)
    policy = factorl.load_agent(result.run_dir)
    action = policy(observation)
"""

from factorl.config import ConfigError, RunConfig, TrainConfig
from factorl.envs import available_envs, make_env
from factorl.factorisation import ActionFactorisation
from factorl.train import (
    Policy,
    TrainingStopped,
    TrainResult,
    evaluate,
    load_agent,
    load_config,
    make_config,
    train,
)

__version__ = "0.1.0"

__all__ = [
    "ActionFactorisation",
    "ConfigError",
    "Policy",
    "RunConfig",
    "TrainConfig",
    "TrainResult",
    "TrainingStopped",
    "available_envs",
    "evaluate",
    "load_agent",
    "load_config",
    "make_config",
    "make_env",
    "train",
]
