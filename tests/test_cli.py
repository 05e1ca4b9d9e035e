"""The command line: train, resume, eval, envs, and clear errors."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from factorl.agents import ALGORITHMS
from factorl.cli import main
from factorl.io import checkpoint as ckpt
from factorl.io.logging import read_metrics
from factorl.train import load_config, make_config

TINY = [
    "--agent.width", "32", "--replay.batch-size", "32", "--agent.learning-starts", "100",
    "--agent.update-every", "2", "--runner.eval-every", "200", "--runner.eval-episodes", "1",
    "--runner.log-every", "100", "--run.progress", "lines", "--run.no-tensorboard",
]  # fmt: skip


def _json_line(text):
    return json.loads(text.strip().splitlines()[-1])


def test_train_then_resume_then_eval(tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["train", "decqn", "--env.id", "gym:Pendulum-v1", "--run.steps", "200",
                 "--run.dir", str(run), *TINY])  # fmt: skip
    assert code == 0
    out, err = capsys.readouterr()
    assert _json_line(out)["env_step"] == 200
    assert "[factorl] step 100/200" in err  # plain progress lines when not a terminal
    assert load_config(run).agent.width == 32  # the resolved config is saved

    assert main(["train", "--resume", str(run), "--run.steps", "400"]) == 0
    out, _ = capsys.readouterr()
    assert _json_line(out)["env_step"] == 400
    assert ckpt.latest_checkpoint(run / "checkpoints").name == "step_0000000400"
    assert max(r["env_step"] for r in read_metrics(run)) == 400

    assert main(["eval", str(run), "--episodes", "2"]) == 0
    result = _json_line(capsys.readouterr().out)
    assert len(result["returns"]) == 2 and result["env"] == "gym:Pendulum-v1"


def test_resume_without_an_algorithm_name_continues_the_runs_own(tmp_path, capsys):
    run = tmp_path / "cqn"
    cqn = ["--agent.width", "16", "--replay.batch-size", "16", "--agent.random-steps", "50",
           "--agent.learning-starts", "50", "--runner.eval-every", "100",
           "--runner.eval-episodes", "1", "--run.progress", "none",
           "--run.no-tensorboard"]  # fmt: skip
    assert main(["train", "cqn", "--env.id", "gym:Pendulum-v1", "--run.steps", "100",
                 "--run.dir", str(run), *cqn]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--run.steps", "150"]) == 0
    assert _json_line(capsys.readouterr().out)["env_step"] == 150
    assert main(["train", "decqn", "--resume", str(run)]) == 2
    assert "is a cqn run" in capsys.readouterr().err


def test_resume_refuses_to_change_the_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--env.id", "gym:Pendulum-v1", "--run.steps", "100",
                 "--run.dir", str(run), *TINY]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--agent.bins", "5", "--run.seed", "2"]) == 2
    err = capsys.readouterr().err
    assert "cannot change run.seed (saved 0, given 2), agent.bins (saved 3, given 5)" in err
    assert main(["train", "--resume", str(run), "--run.dir", str(tmp_path / "b")]) == 2
    assert "differs from --resume" in capsys.readouterr().err


def _parsed_config(monkeypatch, argv):
    """The config `factorl train` builds from `argv` (training replaced by a stand-in)."""
    import factorl.cli as cli

    seen = {}
    monkeypatch.setattr(cli, "train", lambda cfg, **_: seen.setdefault("cfg", cfg))
    with pytest.raises(AttributeError):  # the stand-in returns a config, not a result
        cli.main(["train", *argv])
    return seen["cfg"]


def test_default_train_uses_the_quickstart_preset(monkeypatch):
    cfg = _parsed_config(monkeypatch, [])
    assert cfg.algo == "decqn" and cfg.env.id == "gym:Pendulum-v1"
    assert cfg.run.steps == 20_000 and cfg.agent.width == 256
    # with an explicit environment the reference defaults apply
    cfg = _parsed_config(monkeypatch, ["--env.id", "dmc:cheetah-run"])
    assert cfg.agent.width == 512 and cfg.agent.update_every == 8
    # explicit flags win over the preset
    cfg = _parsed_config(monkeypatch, ["--preset", "quickstart", "--agent.width", "64"])
    assert cfg.agent.width == 64 and cfg.run.steps == 20_000


@pytest.mark.parametrize("spelling", ["--replay.n-step", "--replay.n_step"])
def test_flags_are_dotted_keys_in_either_spelling(monkeypatch, spelling):
    cfg = _parsed_config(
        monkeypatch,
        ["cqn", "--env.id=dmc:cheetah-run", "--run.steps", "1000", spelling, "2",
         "--env.num_envs", "2", "--runner.no-save-replay", "--agent.learning-rate", "3e-4"],
    )  # fmt: skip
    assert cfg.algo == "cqn" and cfg.env.id == "dmc:cheetah-run" and cfg.run.steps == 1000
    assert cfg.replay.n_step == 2 and cfg.env.num_envs == 2 and cfg.runner.save_replay is False
    assert cfg.agent.learning_rate == 3e-4
    # the same keys, as make_config takes them, give the same config
    assert cfg == make_config(
        "cqn",
        {"env.id": "dmc:cheetah-run", "run.steps": 1000, "replay.n_step": 2, "env.num_envs": 2,
         "runner.save_replay": False, "agent.learning_rate": 3e-4},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "nosuchalgo"], "available: " + ", ".join(sorted(ALGORITHMS))),
        (["train", "--agent.bins", "0", "--run.steps", "10"], "agent.bins must be >= 2; got 0"),
        (["train", "--run.steps", "-1"], "run.steps must be >= 1; got -1"),
        (["train", "--agent.huber-delta", "0"], "agent.huber_delta must be > 0.0; got 0"),
        (["train", "--run.wandb-project", " "], "run.wandb_project must not be empty; leave it"),
        (["train", "--env.action-repeat", "10000"], "env.action_repeat must be >= 1 and <= 1000"),
        (["train", "revalued", "--agent.huber-delta", "0"], "agent.huber_delta must be > 0.0"),
        (["train", "--run.progress", "fancy"], "run.progress must be one of 'auto'"),
        (["train", "--run.steps", "abc"], "run.steps must be an integer, got 'abc'"),
        (["train", "cqn", "--agent.width", "3.5"], "agent.width must be an integer, got '3.5'"),
        (["train", "--agent.gamma=x"], "agent.gamma must be a number, got 'x'"),
        (["train", "--run.seed"], "--run.seed expects a value"),
        (["train", "--runner.save-replay=no"], "--runner.save-replay takes no value"),
        (["train", "--steps", "10"], "unknown option --steps; did you mean --run.steps?"),
        (["train", "--run.stesp", "10"], "unknown option --run.stesp; did you mean --run.steps"),
        (["train", "--run.run-dir", "x"], "unknown option --run.run-dir; did you mean --run.dir"),
        (["train", "sac", "--agent.bins", "3"], "unknown option --agent.bins"),
        (["train", "decqn", "extra"], "unexpected argument 'extra'"),
        (["train", "--env.id", "dmc:cheetah-runn", "--run.steps", "10"], "cheetah-run"),
        (["train", "--env.id", "Pendulum-v1", "--run.steps", "10"], "gym:Pendulum-v1"),
        (["train", "--preset", "nope"], "unknown preset 'nope' for decqn; available: none"),
        (["train", "--resume"], "--resume: expected one argument"),
        (["eval", "/nonexistent/run"], "/nonexistent/run does not exist"),
        (["eval", "/no/run", "--video-episodes", "2"], "--video-episodes sets the episodes of the"),
        (["train", "cqn-as"], "unknown algorithm 'cqn-as' (did you mean cqn_as?); available"),
        (["train", "DecQN"], "(did you mean decqn?)"),
        (["train", "--algo", "sac"], "--algo: the algorithm is named first, as in 'factorl train"),
        (["train", "--import", "factorl_no_such_module"], "PYTHONPATH=. for a file in this folder"),
        (
            ["eval", "/nonexistent/run", "--episodes", "100001"],
            "--episodes must be an integer in [1, 100,000], got 100001",
        ),
        (["collect", "/no/run", "--episodes", "100001", "--out", "a-v0"], "in [1, 100,000], got"),
        (["train", "--runner.eval-episodes", "100001"], "eval_episodes must be >= 1 and <= 100000"),
        (["frobnicate"], "unknown command"),
    ],
)
def test_bad_input_exits_with_a_clear_one_line_message(argv, message, capsys, tmp_path):
    argv = [*argv, "--run.dir", str(tmp_path / "r")] if argv[0] == "train" else argv
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    # one line, the usage excepted for an unknown command
    lines = [line for line in err.splitlines() if line.startswith("factorl: error:")]
    assert len(lines) == 1 and (argv[0] == "frobnicate" or err == lines[0] + "\n"), err


def _help_entries(text):
    """(section titles, {flag: its help on one line}) of tyro's help, drawn with box characters
    on a terminal and plain ones otherwise (as under pytest's capture)."""
    titles, entries, flag = [], {}, None
    for line in text.splitlines():
        row = line.strip("│ ")
        header = re.fullmatch(r"[╭─ ]*((\w+ )?options)[─╮ ]*", row)
        if header or not row.strip("╰╯─-"):  # a section's panel starts, or a panel or entry ends
            titles += [header[1]] if header else []
            flag = None
        elif row.startswith("--"):
            flag = row.split()[0].rstrip(",")
            entries[flag] = row
        elif flag is not None:
            entries[flag] += " " + row
    return titles, {flag: " ".join(row.split()) for flag, row in entries.items()}


@pytest.mark.parametrize("algo", sorted(ALGORITHMS))
def test_help_lists_every_flag_by_section_with_the_reference_defaults(algo, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")  # narrow enough for one panel above the other
    assert main(["train", algo, "-h"]) == 0
    titles, entries = _help_entries(capsys.readouterr().out)
    assert titles == [
        "options", "run options", "env options", "replay options", "agent options",
        "runner options", "data options",
    ]  # fmt: skip
    reference = make_config(algo).settings()
    for key, value in reference.items():
        flag = "--" + key.replace("_", "-")
        assert f"(default: {value})" in entries[flag], (algo, key, entries.get(flag))
    # ...which are not the quickstart preset's: it changes agent settings and the budget
    quickstart = make_config(algo, preset="quickstart").settings()
    changed = [key for key, value in quickstart.items() if value != reference[key]]
    assert any(key.startswith("agent.") for key in changed) and "run.steps" in changed
    assert {"--resume", "--overwrite", "--import", "--preset"} <= set(entries)


def test_envs_lists_control_suite_tasks(capsys):
    assert main(["envs"]) == 0
    out = capsys.readouterr().out
    assert "dmc:cheetah-run" in out and "dmc:walker-walk" in out and "gym:" in out
    for family in ("gymnax:", "playground:", "jaxmarl:MPE_", "jaxmarl:smax-"):
        assert family in out
    lines = out.splitlines()
    assert "factorl:two-step-game" in lines and "pettingzoo:mpe2.simple_spread_v3" in lines


def test_console_script_entry_point(tmp_path):
    # the `factorl` script pip installed beside this interpreter, from [project.scripts]
    script = shutil.which("factorl", path=str(Path(sys.executable).parent))
    assert script is not None, "no factorl script beside the interpreter: pip install -e ."
    proc = subprocess.run(
        [script, "train", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0
    assert "--replay.n-step" in proc.stdout and "--agent.epsilon-mode" in proc.stdout
    assert "--resume" in proc.stdout and "--preset" in proc.stdout


def test_out_of_device_memory_is_one_line_and_other_runtime_errors_are_not_hidden(
    monkeypatch, capsys
):
    import jax

    from factorl import cli

    def fails(message):
        def command(argv):
            raise jax.errors.JaxRuntimeError(message)

        return command

    oom = "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 800000000000 bytes."
    monkeypatch.setitem(cli.COMMANDS, "train", fails(oom))
    assert main(["train"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("factorl: error: out of cpu memory (RESOURCE_")
    assert "lower replay.batch_size, agent.width or run.num_seeds" in err
    monkeypatch.setitem(cli.COMMANDS, "train", fails("INTERNAL: something else"))
    with pytest.raises(jax.errors.JaxRuntimeError, match="INTERNAL"):
        main(["train"])
