"""Command line: `factorl train`, `factorl eval`, `factorl envs`.

Flags are generated from the config dataclasses (a field `n_step` is `--n-step`), so the CLI and the
Python API cannot drift apart. argparse (standard library, well kept) is enough for that: the only
custom part is the two-phase parse that picks the algorithm before its flags are known.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from factorl.agents import ALGORITHMS, CONFIGS
from factorl.checkpoint import CheckpointError
from factorl.config import SEED_MAX, ConfigError, TrainConfig, field_type
from factorl.presets import PRESETS, apply_preset
from factorl.runfolder import RunFolderError
from factorl.train import (
    StoppedAtOnce,
    TrainingStopped,
    evaluate,
    load_config,
    make_config,
    train,
)


def _add_fields(parser: argparse.ArgumentParser, cls: type, title: str) -> None:
    group = parser.add_argument_group(title)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        kind = field_type(cls, f.name)
        help_text = f"{f.metadata.get('help', '')} (default: {f.default})"
        if kind is bool:
            group.add_argument(
                flag, dest=f.name, action=argparse.BooleanOptionalAction, help=help_text
            )
        else:
            choices = f.metadata.get("choices")
            group.add_argument(
                flag, dest=f.name, type=kind, choices=choices, metavar=f.name.upper(),
                help=help_text,
            )  # fmt: skip


def _add_import(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        metavar="MODULE",
        help="import MODULE first, e.g. a package that registers Gymnasium environments "
        "(repeatable). Environment ids never import code, and a run folder's config cannot ask "
        "for an import: name it here each time",
    )


def _import_modules(modules: list[str] | None) -> None:
    from factorl.envs import import_env_modules

    try:
        import_env_modules(modules or [])
    except ValueError as e:
        raise ConfigError(str(e)) from e


def _train_parser(algo: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"factorl train {algo}",
        description=f"Train {algo}. Every flag defaults to the reference value shown.",
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument(
        "--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its latest checkpoint"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="let a new run replace a previous run in --run-dir (its config, metrics, TensorBoard "
        "files and checkpoints); without it such a folder is refused",
    )
    _add_import(parser)
    presets = ["none", *sorted(PRESETS.get(algo, {}))]
    parser.add_argument(
        "--preset",
        choices=presets,
        help="overrides on top of the reference defaults (explicit flags win); default: "
        "quickstart when --env is not given and the algorithm has one, else none",
    )
    _add_fields(parser, TrainConfig, "training loop")
    _add_fields(parser, CONFIGS[algo], f"{algo} options")
    return parser


def _split(algo: str, values: dict) -> tuple[dict, dict]:
    train_names = {f.name for f in dataclasses.fields(TrainConfig)}
    train = {k: v for k, v in values.items() if k in train_names}
    agent = {k: v for k, v in values.items() if k not in train_names}
    return train, agent


def cmd_train(argv: Sequence[str]) -> int:
    argv = list(argv)
    algo = "decqn"
    explicit = bool(argv) and not argv[0].startswith("-")
    if explicit:
        algo = argv.pop(0)
        if algo not in ALGORITHMS:
            known = ", ".join(sorted(ALGORITHMS))
            raise ConfigError(f"unknown algorithm {algo!r}; available: {known}")
    else:
        # `factorl train --resume RUN_DIR` continues whatever algorithm that run used
        peek = argparse.ArgumentParser(add_help=False)
        peek.add_argument("--resume")
        run = peek.parse_known_args(argv)[0].resume
        if run is not None:
            algo = load_config(run).algo
    values = vars(_train_parser(algo).parse_args(argv))
    resume = values.pop("resume", None)
    preset = values.pop("preset", None)
    overwrite = values.pop("overwrite", False)
    _import_modules(values.pop("imports", None))
    fresh_default = resume is None and "env" not in values
    if preset is None and fresh_default and "quickstart" in PRESETS.get(algo, {}):
        preset = "quickstart"
    train_values, agent_values = _split(algo, values)
    if resume is not None:
        if overwrite:
            raise ConfigError("--overwrite starts a new run; it cannot be used with --resume")
        cfg = load_config(resume)
        if cfg.algo != algo:
            raise ConfigError(f"{resume} is a {cfg.algo} run; resume it with 'factorl train "
                              f"{cfg.algo} --resume {resume}'")  # fmt: skip
        if preset not in (None, "none"):
            train_values, agent_values = apply_preset(algo, preset, train_values, agent_values)
        given_dir = train_values.pop("run_dir", None)
        if given_dir is not None and Path(given_dir).resolve() != Path(resume).resolve():
            raise ConfigError(f"--run-dir {given_dir} differs from --resume {resume}; give one")
        # the Trainer refuses any change that would change the run, naming each
        cfg = make_config(
            cfg.algo, {**dataclasses.asdict(cfg.train), **train_values},
            {**dataclasses.asdict(cfg.agent), **agent_values},
        )  # fmt: skip
    else:
        cfg = make_config(algo, train_values, agent_values, preset=preset)
    result = train(cfg, resume=resume, overwrite=overwrite)
    summary = {
        "run_dir": str(result.run_dir),
        "env_step": result.env_step,
        "last_eval_return": result.last_eval_return,
        "status": result.status,
    }
    print(json.dumps(summary))
    if result.status != "interrupted":
        return 0
    # the shell's codes for a process ended by that signal, as schedulers expect
    return 143 if result.stop_signal == "SIGTERM" else 130


def cmd_eval(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="factorl eval", description="Evaluate the greedy policy of a saved run."
    )
    parser.add_argument("run_dir", help="a run folder written by 'factorl train'")
    parser.add_argument("--episodes", type=int, default=10, help="episodes to run (default 10)")
    parser.add_argument("--seed", type=int, default=None, help="evaluation seed")
    _add_import(parser)
    args = parser.parse_args(argv)
    if args.episodes < 1:
        raise ConfigError(f"--episodes must be >= 1, got {args.episodes}")
    if args.seed is not None and not 0 <= args.seed <= SEED_MAX:
        raise ConfigError(f"--seed must be in [0, {SEED_MAX}], got {args.seed}")
    _import_modules(args.imports)
    result = evaluate(args.run_dir, episodes=args.episodes, seed=args.seed)
    print(json.dumps(result))
    return 0


def cmd_envs(argv: Sequence[str]) -> int:
    from factorl.envs import available_envs

    argparse.ArgumentParser(prog="factorl envs", description="List environment ids.").parse_args(
        argv
    )
    for env_id in available_envs():
        print(env_id)
    print("gym:ID  (any registered Gymnasium id with a Box action space, e.g. gym:Pendulum-v1)")
    return 0


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "envs": cmd_envs}
USAGE = """usage: factorl COMMAND [ARGS]

commands:
  train [ALGO] [--flags]   train an agent (ALGO: {algos}; default decqn). 'factorl train ALGO -h'
                           lists every flag. With no arguments: DecQN on gym:Pendulum-v1.
  eval RUN_DIR             evaluate a saved agent
  envs                     list environment ids
"""


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    usage = USAGE.format(algos=", ".join(sorted(ALGORITHMS)))
    if not argv or argv[0] in ("-h", "--help"):
        print(usage)
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(usage, file=sys.stderr)
        print(f"factorl: error: unknown command {command!r}", file=sys.stderr)
        return 2
    try:
        return COMMANDS[command](rest)
    except ConfigError as e:
        print(f"factorl: error: {e}", file=sys.stderr)
        return 2
    except StoppedAtOnce as e:
        print(f"factorl: {e}", file=sys.stderr)
        return 130
    except (CheckpointError, TrainingStopped, RunFolderError) as e:
        print(f"factorl: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
