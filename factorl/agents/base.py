"""What every agent here shares above the core protocol: the host replay buffer it learns from.

It lives on the agents' floor, not in `factorl.core.agent`, because the core must not import the
replay floor above it.
"""

from __future__ import annotations

import dataclasses

from factorl.core.agent import JaxAgent, stream_capacity
from factorl.replay.host import ReplayBuffer


class ReplayAgent(JaxAgent):
    """A `JaxAgent` whose replay buffer is built from its replay settings. A subclass only says
    what one transition's action is, with `replay_actions`."""

    def replay_actions(self) -> tuple[int, int]:
        """(M, K): the action dimensions stored per step and the consecutive actions a sample
        carries (1: the action taken; K for an agent that scores action sequences)."""
        raise NotImplementedError

    def make_replay(self, obs_shape: tuple[int, ...], num_envs: int = 1) -> ReplayBuffer:
        """n-step replay with this agent's settings and discount, its capacity shared equally by
        the environments' streams. A setting in `REPLAY_FIXED` keeps its reference value
        (`REPLAY`'s) whatever was passed: the algorithm cannot use another."""
        fixed = {name: getattr(self.REPLAY, name) for name in self.REPLAY_FIXED}
        r = dataclasses.replace(self.replay_settings, **fixed)
        num_dims, horizon = self.replay_actions()
        return ReplayBuffer(
            stream_capacity(r.capacity, num_envs),
            obs_shape,
            (num_dims,),
            n_step=r.n_step,
            gamma=self.config.gamma,
            prioritized=r.prioritized,
            alpha=r.priority_alpha,
            beta=r.priority_beta,
            action_horizon=horizon,
            num_envs=num_envs,
        )
