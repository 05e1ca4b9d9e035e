"""factorl: reinforcement learning over factorised action spaces, in JAX.

Quick use::

    import factorl
    cfg = factorl.make_config("decqn", {"env.id": "gym:Pendulum-v1", "run.steps": 20_000})
    result = factorl.train(cfg)
    policy = factorl.load_agent(result.run_dir)
    action = policy(observation)
"""

from factorl.core.config import (
    Config,
    ConfigError,
    EnvSettings,
    RunnerSettings,
    RunSettings,
    parse_override,
)
from factorl.envs.host import available_envs, make_env
from factorl.maths.factorisation import ActionFactorisation
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
    "Config",
    "ConfigError",
    "EnvSettings",
    "Policy",
    "RunSettings",
    "RunnerSettings",
    "TrainResult",
    "TrainingStopped",
    "available_envs",
    "evaluate",
    "load_agent",
    "load_config",
    "make_config",
    "make_env",
    "parse_override",
    "train",
]
