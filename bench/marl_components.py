"""Inside each program: the learner update's cost and the rollout's speed, factorl's VDN or QMIX
and JaxMARL's own baseline at the MPE settings of `marl_jaxmarl.py`, alternated in one process.

Whole runs (`marl_jaxmarl.py`) say how fast each side trains; this says where the time goes. Each
side's full training program runs twice per round on the same number of rollouts, once learning
and once not, and the update's cost is the difference over the updates taken:

- JaxMARL: its compiled `make_train` at `TOTAL_TIMESTEPS` = 208 x (U + 32) and at
  208 x (2U + 32), tests off, `LEARNING_STARTS` 0, `NUM_EPOCHS` 1 against 0. Its flashbax buffer
  can be sampled only once it holds 32 rollouts per environment row (`min_length_time_axis` =
  the batch size), so the programs take about U and 2U updates. Each call also initialises its
  networks and buffer and runs the first 32 rollouts; the difference between the two budgets
  leaves exactly that out, so U rollouts (and U updates) are timed as on factorl's side.
- factorl: the device runner's chunk program (`run`) for 26 x U vector steps of 8 environments
  (U updates, one per 208 env steps), each time from a fresh state run untimed past
  `learning_starts` (10k env steps), against the same configuration with `agent.learning_starts`
  at the replay's capacity, which those steps do not reach.

The order of the four programs alternates round by round, so a drift in the machine's speed hits
every one alike. Run it under a Python that has factorl, jaxmarl, hydra-core and omegaconf:

    PYTHON bench/marl_components.py --algo vdn --rounds 8 --jaxmarl-src JAXMARL_CHECKOUT \\
        --out bench/results/marl-components-vdn.json
"""

from __future__ import annotations

import argparse
import copy
import importlib
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import finish, provenance  # bench/ is not a package
from marl_jaxmarl import ROLLOUT, factorl_settings

from factorl.io.system import source_revision
from factorl.runners.device import _compiled_program
from factorl.train import make_config

#: rollouts before JaxMARL's buffer can be sampled (its min_length_time_axis, the batch size)
JAXMARL_FIRST_SAMPLE = 32
VECTOR_STEPS_PER_UPDATE = 26  # factorl: 8 environments x 26 = 208 env steps per update


def jaxmarl_program(src: str, algo: str, updates: int, epochs: int):
    """A zero-argument function that runs JaxMARL's compiled program once and returns its time,
    and its env steps."""
    sys.path.insert(0, f"{src}/baselines/QLearning")
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    module = importlib.import_module({"vdn": "vdn_rnn", "qmix": "qmix_rnn"}[algo])
    steps = ROLLOUT * (updates + JAXMARL_FIRST_SAMPLE)  # about `updates` updates
    overrides = ["+alg=ql_rnn_mpe", f"alg.TOTAL_TIMESTEPS={steps}", "SEED=0",
                 "WANDB_MODE=disabled", "SAVE_PATH=null", "alg.TEST_DURING_TRAINING=False",
                 "alg.LEARNING_STARTS=0", f"alg.NUM_EPOCHS={epochs}"]  # fmt: skip
    with initialize_config_dir(config_dir=f"{src}/baselines/QLearning/config", version_base=None):
        cfg = compose(config_name="config", overrides=overrides)
    config = OmegaConf.to_container(cfg)
    config = {**config, **config["alg"]}
    env, _ = module.env_from_config(copy.deepcopy(config))
    rngs = jax.random.split(jax.random.PRNGKey(0), 1)
    compiled = jax.jit(jax.vmap(module.make_train(config, env))).lower(rngs).compile()
    jax.block_until_ready(compiled(rngs))

    def once():
        start = time.perf_counter()
        jax.block_until_ready(compiled(rngs))
        return time.perf_counter() - start

    return once, steps


def factorl_program(algo: str, updates: int, learn: bool):
    """A zero-argument function that runs factorl's chunk program once and returns its time,
    and its env steps."""
    settings = factorl_settings(algo, 2_000_000, "<unused>")
    if not learn:
        settings["agent.learning_starts"] = 130_000  # the replay's capacity: never reached here
    program = _compiled_program(make_config(algo, settings))
    vector_steps = VECTOR_STEPS_PER_UPDATE * updates

    def once():
        # from the same state every time, untimed: past learning_starts (10k env steps) in the
        # learning configuration, so the replay holds about what JaxMARL's does
        state = program.init(np.zeros(1, np.int32))
        state, _ = program.run(state, np.int32(1260), None)
        jax.block_until_ready(state)
        start = time.perf_counter()
        state, _ = program.run(state, np.int32(vector_steps), None)
        jax.block_until_ready(state)
        return time.perf_counter() - start

    once()
    return once, vector_steps * 8


def _difference(longer, shorter):
    """A program pair as one: the longer one's time less the shorter one's, run back to back,
    and the env steps between them: what the longer does beyond its init and first rollouts."""
    (run_longer, steps_longer), (run_shorter, steps_shorter) = longer, shorter

    def once():
        return run_longer() - run_shorter()

    return once, steps_longer - steps_shorter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", choices=["vdn", "qmix"], required=True)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--updates", type=int, default=100, help="updates per timed program")
    parser.add_argument("--jaxmarl-src", required=True, help="a JaxMARL checkout")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    src, u = args.jaxmarl_src, args.updates
    programs = {
        # each JaxMARL time is the difference of its program at 2U and at U updates
        "jaxmarl_learn": _difference(
            jaxmarl_program(src, args.algo, 2 * u, 1), jaxmarl_program(src, args.algo, u, 1)
        ),
        "jaxmarl_rollout": _difference(
            jaxmarl_program(src, args.algo, 2 * u, 0), jaxmarl_program(src, args.algo, u, 0)
        ),
        "factorl_learn": factorl_program(args.algo, args.updates, True),
        "factorl_rollout": factorl_program(args.algo, args.updates, False),
    }
    times: dict[str, list[float]] = {name: [] for name in programs}
    for r in range(args.rounds):
        order = list(programs) if r % 2 == 0 else list(programs)[::-1]
        for name in order:
            times[name].append(round(programs[name][0](), 4))
        print(f"round {r}: {[(n, times[n][-1]) for n in order]}", file=sys.stderr, flush=True)
    summary = {}
    for side in ("jaxmarl", "factorl"):
        learn, rollout = np.median(times[f"{side}_learn"]), np.median(times[f"{side}_rollout"])
        env_steps = programs[f"{side}_rollout"][1]
        update_ms = (learn - rollout) / args.updates * 1e3
        rollout_rate = env_steps / rollout
        summary[side] = {
            "update_ms_in_program": round(float(update_ms), 2),
            "rollout_env_steps_per_s": round(float(rollout_rate)),
            # one update per 208 env steps, as in training
            "cycle_ms": round(float(update_ms + ROLLOUT / rollout_rate * 1e3), 2),
        }
    summary["factorl_over_jaxmarl_cycle_speed"] = round(
        summary["jaxmarl"]["cycle_ms"] / summary["factorl"]["cycle_ms"], 3
    )
    report = {
        "benchmark": f"{args.algo} on MPE simple spread: the update and the rollout inside "
        "factorl's and JaxMARL's programs",
        "command": " ".join(sys.argv),
        "settings": {
            "updates": args.updates,
            "rounds": args.rounds,
            "factorl_settings": factorl_settings(args.algo, 2_000_000, "<unused>"),
        },
        **provenance(None, packages=["jaxmarl"]),
        "source_revision": source_revision(),
        "times_s": times,
        "summary": summary,
    }
    print(finish(report, args.out))


if __name__ == "__main__":
    main()
