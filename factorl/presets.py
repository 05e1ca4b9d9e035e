"""Named presets: small sets of overrides on top of the reference defaults.

The reference hyperparameters are tuned for 1M-step Control Suite runs. A first run should show
learning in minutes, so `factorl train` without `--env.id` uses the `quickstart` preset: DecQN on
Pendulum-v1 with a narrower network, a larger learning rate and more learner steps per env step.
A preset is a dict of dotted keys, like `make_config`'s overrides; explicit values always win.
"""

from __future__ import annotations

from typing import Any

from factorl.core.config import ConfigError

#: VDN's and QMIX's quickstart: JaxMARL's MPE settings (the agents' defaults) at a 2M-step budget,
#: with epsilon and the learning rate decaying over the shorter run as JaxMARL scales them
_MARL_QUICKSTART = {
    "env.id": "jaxmarl:MPE_simple_spread_v3",
    "env.num_envs": 8,
    "run.steps": 2_000_000,
    "runner.eval_every": 100_000,
    "runner.eval_episodes": 64,
    "runner.log_every": 20_800,
    "agent.epsilon_decay_steps": 200_000,
    "agent.lr_decay_steps": 9_615,
}

#: JaxMARL's SMAX settings (`ql_rnn_smax.yaml`) on the 3m map, its 1e7-step budget: 16 envs x
#: 128-step rollouts, 8 updates of 32 rollouts each per rollout batch (one per 256 env steps), the
#: target copied every 10 rollout batches (80 updates), rewards x 10 in the targets. Sized for a
#: GPU: a 512-wide GRU unrolled over 128 steps is slow on a CPU.
_SMAX = {
    "env.id": "jaxmarl:smax-3m",
    "env.num_envs": 16,
    "run.steps": 10_000_000,
    "runner.eval_every": 500_000,
    "runner.eval_episodes": 512,
    "runner.log_every": 102_400,
    "replay.capacity": 640_000,
    "agent.hidden_size": 512,
    "agent.gamma": 0.99,
    "agent.learning_rate": 5e-5,
    "agent.max_grad_norm": 10.0,
    "agent.target_update_period": 80,
    "agent.epsilon_decay_steps": 1_000_000,
    "agent.sequence_length": 128,
    "agent.update_every": 256,
    "agent.reward_scale": 10.0,
}

#: SMAX 3m sized for a CPU: JaxMARL's SMAX settings above with the agent network of pymarl's SMAC
#: defaults (GRU 64, learning rate 5e-4, epsilon to 0.05 over 50k steps) and a 2M-step budget,
#: evaluated on 128 episodes every 100k steps (results/marl's SMAX runs)
_SMAX_CPU = {
    **_SMAX,
    "run.steps": 2_000_000,
    "runner.eval_every": 100_000,
    "runner.eval_episodes": 128,
    "runner.log_every": 20_480,
    "runner.checkpoint_every": 200_000,
    "agent.hidden_size": 64,
    "agent.learning_rate": 5e-4,
    "agent.epsilon_decay_steps": 50_000,
}
#: QMIX's mixer at JaxMARL's SMAX sizes
_SMAX_MIXER = {"agent.mixer_embed_dim": 64, "agent.hypernet_hidden": 256}

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "revalued": {
        "quickstart": {
            # a small ensemble and net that learn Pendulum in 10k steps; the regulariser is off,
            # as in the official code, since at 0.5 these settings did not learn (docs/revalued.md)
            "env.id": "gym:Pendulum-v1",
            "run.steps": 10_000,
            "runner.eval_every": 2_500,
            "agent.ensemble_size": 3,
            "agent.width": 128,
            "agent.learning_rate": 1e-3,
            "agent.update_every": 2,
            "agent.random_steps": 1000,
            "agent.learning_starts": 1000,
            "agent.epsilon_decay": 0.99,
            "agent.reg_coef": 0.0,
        },
    },
    "decqn": {
        "quickstart": {
            # learns Pendulum within the budget (tests/test_learning.py holds a run to it)
            "env.id": "gym:Pendulum-v1",
            "run.steps": 20_000,
            "runner.eval_every": 2_500,
            "agent.width": 256,
            "agent.learning_rate": 1e-3,
            "agent.update_every": 2,
        },
    },
    "sac": {
        "quickstart": {
            # the reference net, with the warm-up shortened to fit an 8k-step budget
            "env.id": "gym:Pendulum-v1",
            "run.steps": 8_000,
            "runner.eval_every": 2_000,
            "agent.random_steps": 1_000,
            "agent.learning_starts": 1_000,
        },
    },
    "td3": {
        "quickstart": {
            # the reference net, with the warm-up shortened to fit an 8k-step budget
            "env.id": "gym:Pendulum-v1",
            "run.steps": 8_000,
            "runner.eval_every": 2_000,
            "agent.random_steps": 1_000,
            "agent.learning_starts": 1_000,
        },
    },
    "cqn": {
        "quickstart": {
            # a narrower net and larger steps than the Control Suite's reference values, so it
            # learns Pendulum within the budget (tests/test_learning.py holds a run to it)
            "env.id": "gym:Pendulum-v1",
            "run.steps": 12_000,
            "runner.eval_every": 2_000,
            "agent.width": 128,
            "replay.batch_size": 128,
            "agent.learning_rate": 1e-3,
            "agent.random_steps": 1000,
            "agent.learning_starts": 1000,
        },
    },
    "cqn_as": {
        "quickstart": {
            # CQN's quickstart with a learner step every env step: sequences learn Pendulum later
            # and less steadily than CQN, and when they start varies from seed to seed
            # (docs/cqn_as.md), so the budget leaves a few thousand steps' margin
            # (tests/test_learning.py holds a run to it)
            "env.id": "gym:Pendulum-v1",
            "run.steps": 16_000,
            "runner.eval_every": 2_000,
            "agent.width": 128,
            "replay.batch_size": 128,
            "agent.learning_rate": 1e-3,
            "agent.update_every": 1,
            "agent.random_steps": 1000,
            "agent.learning_starts": 1000,
        },
    },
    "vdn": {"quickstart": _MARL_QUICKSTART, "smax": _SMAX, "smax-cpu": _SMAX_CPU},
    "qmix": {
        "quickstart": _MARL_QUICKSTART,
        "smax": {**_SMAX, **_SMAX_MIXER},
        "smax-cpu": {**_SMAX_CPU, **_SMAX_MIXER},
    },
    "arsq": {
        "quickstart": {
            # a narrower net and larger steps than the reference values, which are sized for
            # the Control Suite, so it learns Pendulum within the budget
            "env.id": "gym:Pendulum-v1",
            "run.steps": 12_000,
            "runner.eval_every": 2_000,
            "agent.width": 128,
            "replay.batch_size": 128,
            "agent.learning_rate": 1e-3,
            "agent.value_learning_rate": 1e-3,
            "agent.random_steps": 1000,
            "agent.learning_starts": 1000,
        },
    },
}


def preset_settings(algo: str, name: str | None) -> dict[str, Any]:
    """The dotted-key settings of preset `name` of `algo` (none for None or "none")."""
    if name in (None, "none"):
        return {}
    available = PRESETS.get(algo, {})
    if name not in available:
        known = ", ".join(["none", *sorted(available)])
        raise ConfigError(f"unknown preset {name!r} for {algo}; available: {known}")
    return dict(available[name])
