"""VDN and QMIX side by side with JaxMARL's own recurrent baselines, on the same machine.

JaxMARL's `baselines/QLearning/vdn_rnn.py` and `qmix_rnn.py` run unmodified from a checkout
(`--jaxmarl-src`) under a Python that has jaxmarl, hydra-core and omegaconf (`--jaxmarl-python`):
this script imports their `make_train` and `env_from_config`, composes their `ql_rnn_mpe` config
with the budget cut to `--steps`, compiles and runs it, and reads their last greedy test. factorl
trains the same algorithm at the same settings through `factorl.train` (the device runner). Each
side runs in a fresh process; the rounds alternate which goes first, so a drift in the machine's
speed hits both alike.

The same metric on both sides: the greedy test return is the sum over the agents of each agent's
episode return (JaxMARL's MPE log wrapper multiplies rewards by the number of agents and averages
over agents; factorl's MPE reward is the sum over agents), averaged over 512 test episodes, at
the end of training. Wall time counts the whole process (imports, compilation, training and
tests); env steps/s is after compilation (JaxMARL: steps / run time of the compiled program;
factorl: env steps from its first greedy test, by which time the training and test programs
are both compiled, to its last train record / the wall time between them).

    python bench/marl_jaxmarl.py --algo vdn --steps 2000000 --rounds 2 \\
        --jaxmarl-src ~/JaxMARL --jaxmarl-python ~/venv-jaxmarl/bin/python \\
        --out bench/results/marl-jaxmarl-mpe-vdn.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import finish, provenance  # bench/ is not a package

from factorl.io.system import source_revision

ENV = "MPE_simple_spread_v3"
TEST_EPISODES = 512
TEST_FRACTION = 0.05  # JaxMARL's TEST_INTERVAL: a greedy test every 5% of training
EPS_DECAY_FRACTION = 0.1  # JaxMARL's EPS_DECAY: epsilon decays over 10% of the updates
ROLLOUT = 8 * 26  # JaxMARL's NUM_ENVS x NUM_STEPS: env steps per update


def factorl_settings(algo: str, steps: int, run_dir: str, seeds: int = 1) -> dict:
    """factorl's dotted-key settings equal to JaxMARL's ql_rnn_mpe at a budget of `steps`."""
    return {
        "env.id": f"jaxmarl:{ENV}",
        "env.num_envs": 8,
        "run.steps": steps,
        "run.num_seeds": seeds,
        "run.dir": run_dir,
        "run.progress": "none",
        "run.tensorboard": False,
        "runner.eval_every": int(steps * TEST_FRACTION),
        "runner.eval_episodes": TEST_EPISODES,
        "runner.log_every": int(steps * TEST_FRACTION),
        "runner.checkpoint_every": 10 * steps,
        # the agent's defaults are JaxMARL's MPE ones (docs/vdn.md); these two are fractions
        # of the budget there
        "agent.epsilon_decay_steps": int(steps * EPS_DECAY_FRACTION),
        "agent.lr_decay_steps": steps // ROLLOUT,
    }


def run_factorl(algo: str, steps: int, seeds: int = 1) -> dict:
    start = time.perf_counter()
    # imported here, so the wall time includes them as JaxMARL's includes its imports
    from factorl.io.logging import read_metrics
    from factorl.train import make_config, train

    with tempfile.TemporaryDirectory() as tmp:
        result = train(make_config(algo, factorl_settings(algo, steps, f"{tmp}/run", seeds)))
        records = read_metrics(result.run_dir)
    wall = time.perf_counter() - start
    trains = [r for r in records if r["event"] == "train" and r.get("seed", 0) == 0]
    evals = [r for r in records if r["event"] == "eval"]
    # from the first test on: the test program compiles at that first test, and JaxMARL's
    # run time, which counts no compilation, is the comparison
    first = next(r for r in evals if r.get("seed", 0) == 0)
    last = trains[-1]
    final = [r["eval_return"] for r in evals if r["env_step"] == evals[-1]["env_step"]]
    seed_0 = [r for r in evals if r.get("seed", 0) == 0]
    return {
        "wall_s": round(wall, 1),
        "env_steps": result.env_step,
        # env steps of every seed (the seeds train side by side in one program)
        "env_steps_per_s_after_compile": round(
            seeds
            * (last["env_step"] - first["env_step"])
            / (last["wall_time"] - first["wall_time"])
        ),
        "test_return": sum(final) / len(final),
        "test_return_per_seed": final,
        "test_returns_seed_0": [(r["env_step"], round(r["eval_return"], 3)) for r in seed_0],
        # when each train record was written: how the speed held up over the run
        "train_wall_time_s": [(r["env_step"], r["wall_time"]) for r in trains],
    }


_JAXMARL_DRIVER = """
import copy, importlib, json, sys, time
start = time.perf_counter()
src, module, steps, seed = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
curves = sys.argv[5:] == ["curves"]
sys.path.insert(0, src + "/baselines/QLearning")
import jax, numpy as np
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
mod = importlib.import_module(module)
with initialize_config_dir(config_dir=src + "/baselines/QLearning/config", version_base=None):
    cfg = compose(config_name="config", overrides=["+alg=ql_rnn_mpe",
        f"alg.TOTAL_TIMESTEPS={steps}", f"SEED={seed}", "WANDB_MODE=disabled",
        "SAVE_PATH=null"])
config = OmegaConf.to_container(cfg)
config = {**config, **config["alg"]}
logged = []
if curves:  # its per-update metrics reach only wandb.log: collect them there instead of W&B
    import types
    config["WANDB_MODE"] = "collect"
    mod.wandb = types.SimpleNamespace(log=lambda m: logged.append(
        {k: float(np.asarray(v).mean()) for k, v in m.items()}))
env, _ = mod.env_from_config(copy.deepcopy(config))
rngs = jax.random.split(jax.random.PRNGKey(config["SEED"]), config["NUM_SEEDS"])
train = jax.jit(jax.vmap(mod.make_train(config, env)))
t = time.perf_counter(); compiled = train.lower(rngs).compile(); compile_s = time.perf_counter() - t
t = time.perf_counter(); outs = jax.block_until_ready(compiled(rngs))
run_s = time.perf_counter() - t
ts, _, test, _ = outs["runner_state"]
env_steps = int(np.asarray(jax.device_get(ts.timesteps)).reshape(-1)[0])
test = {k: float(np.asarray(v).mean()) for k, v in jax.device_get(test).items()}
# with curves: every greedy test (each TEST_INTERVAL of the updates), with the mean loss and
# Q-value of the updates since the previous one
curve, since = [], []
every = int(config["NUM_UPDATES"] * config["TEST_INTERVAL"])
for m in sorted(logged, key=lambda m: m["update_steps"]):
    since.append(m)
    if int(m["update_steps"]) % every == 0:
        curve.append([int(m["env_step"]), round(m["test_returned_episode_returns"], 3),
                      round(float(np.mean([x["qvals"] for x in since])), 4),
                      round(float(np.mean([x["loss"] for x in since])), 4)])
        since = []
print(json.dumps({"wall_s": round(time.perf_counter() - start, 1), "compile_s": round(compile_s, 1),
    "run_s": round(run_s, 1), "env_steps": env_steps,
    "env_steps_per_s_after_compile": round(env_steps / run_s),
    "test_return": test["returned_episode_returns"],
    **({"curve_columns": ["env_step", "test_return", "mean_qvals", "mean_loss"],
        "curve": curve} if curves else {})}))
"""


def run_jaxmarl(
    algo: str,
    steps: int,
    src: str,
    python: str,
    seeds: int = 1,
    first_seed: int = 0,
    curves: bool = False,
) -> dict:
    """JaxMARL's script at `SEED` first_seed .. first_seed+seeds-1, one process each. Not its
    `NUM_SEEDS`: its vmapped init over seeds (Flax's orthogonal initializer, a batched QR)
    deadlocks jaxlib 0.10.2 on a 2-thread CPU, the hang factorl's own `orthogonal` works
    around."""
    module = {"vdn": "vdn_rnn", "qmix": "qmix_rnn"}[algo]
    runs = []
    for seed in range(first_seed, first_seed + seeds):
        start = time.perf_counter()
        done = subprocess.run(
            [python, "-c", _JAXMARL_DRIVER, src, module, str(steps), str(seed),
             *(["curves"] if curves else [])],
            capture_output=True, text=True, check=False, cwd=tempfile.gettempdir(),
        )  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"JaxMARL's {module} failed:\n{done.stderr[-3000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        result["wall_s"] = round(time.perf_counter() - start, 1)  # the whole process
        runs.append(result)
    if seeds == 1:
        return runs[0]
    returns = [r["test_return"] for r in runs]
    return {
        "wall_s": round(sum(r["wall_s"] for r in runs), 1),
        "run_s": round(sum(r["run_s"] for r in runs), 1),
        "env_steps": runs[0]["env_steps"],
        "env_steps_per_s_after_compile": round(
            sum(r["env_steps"] for r in runs) / sum(r["run_s"] for r in runs)
        ),
        "test_return": sum(returns) / seeds,
        "test_return_per_seed": returns,
        "processes": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", choices=["vdn", "qmix"], required=True)
    parser.add_argument("--steps", type=int, default=2_000_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=1, help="seeds vmapped in one program")
    parser.add_argument("--jaxmarl-src", help="a JaxMARL checkout (its baselines/ folder)")
    parser.add_argument("--jaxmarl-python", help="a Python with jaxmarl, hydra-core, omegaconf")
    parser.add_argument("--only", choices=["factorl", "jaxmarl"], help="run one side")
    parser.add_argument(
        "--first-seed", type=int, default=0, help="JaxMARL's side: the first SEED (default 0)"
    )
    parser.add_argument("--side", choices=["factorl"], help=argparse.SUPPRESS)
    parser.add_argument(
        "--curves",
        action="store_true",
        help="JaxMARL's side: keep its test returns, mean Q-values and losses at every test "
        "(its metrics reach only wandb.log, which then collects them instead; it runs slower, "
        "so its env steps/s is not a speed figure)",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.side == "factorl":  # the child process of one factorl measurement
        print(json.dumps(run_factorl(args.algo, args.steps, args.seeds)))
        return
    sides = [args.only] if args.only else ["jaxmarl", "factorl"]
    if "jaxmarl" in sides and not (args.jaxmarl_src and args.jaxmarl_python):
        raise SystemExit("--jaxmarl-src and --jaxmarl-python are needed to run JaxMARL's side")
    report = {
        "benchmark": f"{args.algo} on {ENV}: factorl and JaxMARL's {args.algo}_rnn.py",
        "command": " ".join(sys.argv),
        "settings": {
            "env_steps": args.steps,
            "seeds": args.seeds,
            "first_seed": args.first_seed,
            "jaxmarl_config": "ql_rnn_mpe (8 envs x 26 steps, GRU 64, buffer 5000 rollouts, "
            "batch 32, lr 0.005 decaying linearly, gamma 0.9, learning starts 10k, target every "
            "200 updates, epsilon 1 -> 0.05 over 10% of updates)",
            "factorl_settings": factorl_settings(args.algo, args.steps, "<tmp>", args.seeds),
            "test": f"greedy, {TEST_EPISODES} episodes, sum over agents of episode returns",
        },
        **provenance(None, packages=["jaxmarl"]),
        "rounds": [],
    }
    report["source_revision"] = source_revision()
    for r in range(args.rounds):
        row = {}
        for side in sides if r % 2 == 0 else sides[::-1]:
            if side == "jaxmarl":
                row[side] = run_jaxmarl(args.algo, args.steps, args.jaxmarl_src,
                                        args.jaxmarl_python, args.seeds,
                                        args.first_seed, args.curves)  # fmt: skip
            else:
                cmd = [sys.executable, __file__, "--side", "factorl", "--algo", args.algo,
                       "--steps", str(args.steps), "--seeds", str(args.seeds)]  # fmt: skip
                start = time.perf_counter()
                out = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if out.returncode != 0:
                    raise SystemExit(f"factorl failed:\n{out.stderr[-3000:]}")
                row[side] = json.loads(out.stdout.strip().splitlines()[-1])
                row[side]["wall_s"] = round(time.perf_counter() - start, 1)
            print(f"round {r}: {side} {row[side]}", file=sys.stderr, flush=True)
        report["rounds"].append(row)
    print(finish(report, args.out))


if __name__ == "__main__":
    main()
