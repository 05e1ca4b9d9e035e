"""The command line: train, resume, eval, envs, and clear errors."""

import json
import subprocess
import sys

import pytest

from factorl import checkpoint as ckpt
from factorl.agents import ALGORITHMS
from factorl.cli import main
from factorl.logging import read_metrics
from factorl.train import load_config

TINY = [
    "--width", "32", "--batch-size", "32", "--learning-starts", "100", "--update-every", "2",
    "--eval-every", "200", "--eval-episodes", "1", "--log-every", "100", "--progress", "lines",
    "--no-tensorboard",
]  # fmt: skip


def _json_line(text):
    return json.loads(text.strip().splitlines()[-1])


def test_train_then_resume_then_eval(tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["train", "decqn", "--env", "gym:Pendulum-v1", "--steps", "200",
                 "--run-dir", str(run), *TINY])  # fmt: skip
    assert code == 0
    out, err = capsys.readouterr()
    assert _json_line(out)["env_step"] == 200
    assert "[factorl] step 100/200" in err  # plain progress lines when not a terminal
    assert load_config(run).agent.width == 32  # the resolved config is saved

    assert main(["train", "--resume", str(run), "--steps", "400"]) == 0
    out, _ = capsys.readouterr()
    assert _json_line(out)["env_step"] == 400
    assert ckpt.latest_checkpoint(run / "checkpoints").name == "step_0000000400"
    assert max(r["env_step"] for r in read_metrics(run)) == 400

    assert main(["eval", str(run), "--episodes", "2"]) == 0
    result = _json_line(capsys.readouterr().out)
    assert len(result["returns"]) == 2 and result["env"] == "gym:Pendulum-v1"


def test_resume_without_an_algorithm_name_continues_the_runs_own(tmp_path, capsys):
    run = tmp_path / "cqn"
    cqn = ["--width", "16", "--batch-size", "16", "--random-steps", "50", "--learning-starts",
           "50", "--eval-every", "100", "--eval-episodes", "1", "--progress", "none",
           "--no-tensorboard"]  # fmt: skip
    assert main(["train", "cqn", "--env", "gym:Pendulum-v1", "--steps", "100",
                 "--run-dir", str(run), *cqn]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--steps", "150"]) == 0
    assert _json_line(capsys.readouterr().out)["env_step"] == 150
    assert main(["train", "decqn", "--resume", str(run)]) == 2
    assert "is a cqn run" in capsys.readouterr().err


def test_resume_refuses_to_change_the_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--env", "gym:Pendulum-v1", "--steps", "100", "--run-dir", str(run),
                 *TINY]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--bins", "5"]) == 2
    assert "cannot change --bins" in capsys.readouterr().err


def test_default_train_uses_the_quickstart_preset(monkeypatch):
    import factorl.cli as cli

    seen = {}
    monkeypatch.setattr(cli, "train", lambda cfg, **_: seen.setdefault("cfg", cfg))
    with pytest.raises(AttributeError):  # the fake train returns a config, not a result
        cli.main(["train"])
    cfg = seen["cfg"]
    assert cfg.algo == "decqn" and cfg.train.env == "gym:Pendulum-v1"
    assert cfg.train.steps == 20_000 and cfg.agent.width == 256
    # with an explicit environment the reference defaults apply
    seen.clear()
    with pytest.raises(AttributeError):
        cli.main(["train", "--env", "dmc:cheetah-run"])
    assert seen["cfg"].agent.width == 512 and seen["cfg"].agent.update_every == 8


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "nosuchalgo"], "available: " + ", ".join(sorted(ALGORITHMS))),
        (["train", "--bins", "0", "--steps", "10"], "decqn.bins must be >= 2"),
        (["train", "--steps", "-1"], "train.steps must be >= 1"),
        (["train", "--env", "dmc:cheetah-runn", "--steps", "10"], "cheetah-run"),
        (["train", "--env", "Pendulum-v1", "--steps", "10"], "gym:Pendulum-v1"),
        (["train", "--preset", "nope"], "invalid choice"),
        (["eval", "/nonexistent/run"], "not a factorl run folder"),
        (["frobnicate"], "unknown command"),
    ],
)
def test_bad_input_exits_with_a_clear_message(argv, message, capsys, tmp_path):
    argv = [*argv, "--run-dir", str(tmp_path / "r")] if argv[0] == "train" else argv
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own usage errors
        code = e.code
    assert code == 2
    assert message in capsys.readouterr().err


def test_envs_lists_control_suite_tasks(capsys):
    assert main(["envs"]) == 0
    out = capsys.readouterr().out
    assert "dmc:cheetah-run" in out and "dmc:walker-walk" in out and "gym:" in out


def test_console_script_entry_point(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "factorl.cli", "train", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0
    assert "--n-step" in proc.stdout and "--epsilon-mode" in proc.stdout
    assert "--resume" in proc.stdout and "--preset" in proc.stdout
