"""Weights & Biases logging (`--run.wandb`): the W&B run holds the records of metrics.jsonl at
their env steps, a resumed run goes on logging to the same W&B run, W&B changes nothing in the
run, and a missing extra, a W&B that cannot start or fails while logging is one line, never a
lost run.

One test starts a real W&B in offline mode (no account, no network) and reads its files back;
the other tests give factorl a stand-in `wandb` module that records its calls, so they start no
W&B service.
"""

import io
import json
import struct
import sys
import types
from pathlib import Path

import pytest
from conftest import records, same_leaves, tensorboard_events, tiny_config

from factorl.cli import main
from factorl.io.logging import RunLogger, WandbRun, _plotted, read_metrics, read_wandb_id
from factorl.io.runfolder import holds_a_run
from factorl.train import train

#: a tiny run's evaluations land at 300 and 600; the first part stops at the first
SPLIT = 300


@pytest.fixture(autouse=True)
def offline_wandb(tmp_path, monkeypatch):
    """W&B offline and quiet, with its settings, cache and data folders in tmp."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))


def read_wandb_file(path):
    """The records (wandb_internal_pb2.Record) of a W&B transaction log, `run-ID.wandb`: a
    7-byte header, then 32 KiB blocks of chunks, each with a 7-byte header (checksum, length,
    type: 1 whole, 2 first, 3 middle, 4 last); a block's tail shorter than a header is
    padding."""
    from wandb.proto import wandb_internal_pb2

    data, block, at, chunks, found = Path(path).read_bytes(), 32768, 7, b"", []
    assert data[:4] == b":W&B"
    while at + 7 <= len(data):
        if block - at % block < 7:
            at += block - at % block
            continue
        _checksum, length, kind = struct.unpack("<IHB", data[at : at + 7])
        chunks += data[at + 7 : at + 7 + length]
        at += 7 + length
        if kind in (1, 4):
            found.append(wandb_internal_pb2.Record.FromString(chunks))
            chunks = b""
    return found


def offline_runs(run_dir):
    """{folder name: records} of every offline W&B run under RUN_DIR/wandb, oldest first."""
    folders = sorted((Path(run_dir) / "wandb").glob("offline-run-*"))
    return {f.name: read_wandb_file(next(f.glob("run-*.wandb"))) for f in folders}


def history(found):
    """The rows logged with `run.log`, without W&B's own fields (_step, _runtime, ...)."""
    rows = []
    for record in found:
        if record.WhichOneof("record_type") == "history":
            items = {item.key or "/".join(item.nested_key): item for item in record.history.item}
            rows.append(
                {k: json.loads(v.value_json) for k, v in items.items() if not k.startswith("_")}
            )
    return rows


def expected_rows(run_dir):
    """What W&B is given for each record of metrics.jsonl: its numeric fields as KIND/FIELD,
    and its env step."""
    rows = []
    for record in read_metrics(run_dir):
        kind = record["event"]
        row = {
            f"{kind}/{k}": v
            for k, v in record.items()
            if k not in ("event", "env_step")
            and isinstance(v, int | float)
            and not isinstance(v, bool)
        }
        rows.append({**row, "env_step": record["env_step"]})
    return rows


def test_offline_wandb_holds_every_record_resumes_the_same_run_and_changes_nothing(tmp_path):
    """The one test that starts W&B itself (offline), in one test so that pytest-xdist never
    runs it twice: a tiny run straight through without W&B, and the same run with W&B stopped
    at env step SPLIT and resumed."""
    plain = train(tiny_config(tmp_path / "plain", steps=600))
    logged = tiny_config(tmp_path / "logged", steps=600, overrides={"run.wandb": True})
    first = train(logged, stop_after=SPLIT)
    resumed = train(logged, resume=tmp_path / "logged")
    assert first.env_step == SPLIT and resumed.env_step == 600

    # W&B changes nothing in the run
    assert records(resumed.run_dir) == records(plain.run_dir)
    assert same_leaves(resumed.state, plain.state)

    # one offline run per process (the first part and the resumed one), both of the id kept in
    # the run folder: online they are one W&B run
    found = offline_runs(resumed.run_dir)
    assert len(found) == 2
    run_id = read_wandb_id(resumed.run_dir)
    assert run_id
    ids = set()
    for records_ in found.values():
        (run,) = [r.run for r in records_ if r.WhichOneof("record_type") == "run"]
        ids.add((run.run_id, run.project, run.display_name))
    assert ids == {(run_id, "factorl", "logged")}

    # the resumed part logs from the checkpoint on: together, exactly metrics.jsonl's records
    rows = [row for records_ in found.values() for row in history(records_)]
    assert rows == expected_rows(resumed.run_dir)
    evals = [(r["env_step"], r["eval/eval_return"]) for r in rows if "eval/eval_return" in r]
    metrics = read_metrics(resumed.run_dir)
    assert evals == [(r["env_step"], r["eval_return"]) for r in metrics if r["event"] == "eval"]
    assert [step for step, _ in evals] == [300, 600]
    for records_ in found.values():
        kinds = [r.WhichOneof("record_type") for r in records_]
        assert kinds.count("exit") == 1  # each process finished its W&B run
        metric = {r.metric.glob_name: r.metric.step_metric for r in records_ if r.metric.glob_name}
        # charts are against env_step (an offline phase's: offline_step), not W&B's step
        assert metric == {
            "train/*": "env_step",
            "eval/*": "env_step",
            "episode/*": "env_step",
            "offline/*": "offline_step",
        }
        config = {
            u.key: json.loads(u.value_json)
            for r in records_
            if r.WhichOneof("record_type") == "config"
            for u in r.config.update
        }
        assert config["algo"] == "decqn" and config["run"]["wandb"] is True
        assert config["agent"]["width"] == 32


# ------------------------------------------------------------------------------- a stand-in wandb
class FakeRun:
    """What factorl calls on a W&B run, recorded in `calls`."""

    def __init__(self, calls, fail_log_after=None, **init):
        self.calls, self.init, self.fail_log_after = calls, init, fail_log_after
        self.config = types.SimpleNamespace(
            update=lambda values, **kw: calls.append(("config", values, kw))
        )

    def define_metric(self, name, **options):
        self.calls.append(("define_metric", name, options))

    def log(self, data):
        logged = sum(call[0] == "log" for call in self.calls)
        if self.fail_log_after is not None and logged >= self.fail_log_after:
            raise RuntimeError("the W&B service is gone")
        self.calls.append(("log", data))

    def finish(self, exit_code=0):
        self.calls.append(("finish", exit_code))


def fake_wandb(monkeypatch, init_error=None, fail_log_after=None):
    """Install a stand-in `wandb` module; returns the list its calls are recorded in."""
    calls = []

    def init(**kwargs):
        calls.append(("init", kwargs))
        if init_error is not None:
            raise init_error
        return FakeRun(calls, fail_log_after, **kwargs)

    module = types.SimpleNamespace(
        init=init,
        Settings=lambda **kwargs: kwargs,
        Video=lambda path, format: ("video", path, format),
    )
    monkeypatch.setitem(sys.modules, "wandb", module)
    return calls


def logged(calls):
    return [call[1] for call in calls if call[0] == "log"]


def test_a_stopped_run_finishes_its_wandb_run_after_its_last_record(tmp_path, monkeypatch):
    calls = fake_wandb(monkeypatch)
    overrides = {"env.id": "gym:FactorlTestSigint-v0", "run.wandb": True, "run.wandb_tags": "a, b"}
    result = train(tiny_config(tmp_path / "run", steps=600, overrides=overrides))
    assert result.status == "interrupted" and result.stop_signal == "SIGINT"
    (init,) = [call[1] for call in calls if call[0] == "init"]
    assert init["id"] == read_wandb_id(tmp_path / "run") and init["resume"] == "allow"
    assert init["dir"] == str(tmp_path / "run") and init["project"] == "factorl"
    assert init["tags"] == ["a", "b"] and init["settings"] == {"console": "off"}
    assert logged(calls) == expected_rows(tmp_path / "run")
    assert calls[-1] == ("finish", 0)  # once, after the last record, as a clean stop
    assert [call for call in calls if call[0] == "finish"] == [("finish", 0)]


def test_a_crashed_run_finishes_its_wandb_run_as_failed(tmp_path, monkeypatch):
    calls = fake_wandb(monkeypatch)
    overrides = {"env.id": "gym:FactorlTestCrash-v0", "run.wandb": True}
    with pytest.raises(RuntimeError, match="simulator exploded"):
        train(tiny_config(tmp_path / "run", steps=600, overrides=overrides))
    assert logged(calls) == expected_rows(tmp_path / "run")
    assert [call for call in calls if call[0] == "finish"] == [("finish", 1)]
    assert calls[-1] == ("finish", 1)


def test_records_of_several_seeds_videos_and_offline_steps_go_to_wandb_on_their_axes(monkeypatch):
    calls = fake_wandb(monkeypatch)
    run = WandbRun(FakeRun(calls), sys.modules["wandb"])
    run.log({"event": "eval", "env_step": 40, "eval_return": -3.5, "eval_returns": [-3.5],
             "seed": 7, "final": True, "eval_return_std": "nan"})  # fmt: skip
    run.video(Path("videos/step_0000000040.mp4"), 40)
    # an offline phase's records are all at env step 0: they are plotted against offline_step
    run.log({"event": "train", "env_step": 0, "phase": "offline", "offline_step": 200,
             "loss": 0.5})  # fmt: skip
    run.finish(failed=True)
    run.finish()  # idempotent: the W&B run was already finished
    assert calls == [
        ("log", {"eval/eval_return/seed_7": -3.5, "env_step": 40}),
        ("log", {"eval/video": ("video", "videos/step_0000000040.mp4", "mp4"), "env_step": 40}),
        ("log", {"offline/train/loss": 0.5, "offline_step": 200}),
        ("finish", 1),
    ]


def test_a_failing_wandb_is_dropped_and_the_run_goes_on(tmp_path, monkeypatch):
    calls = fake_wandb(monkeypatch, fail_log_after=2)
    run = WandbRun.start(tmp_path, {"project": "factorl"}, {"algo": "decqn"})
    console = io.StringIO()
    logger = RunLogger(
        tmp_path, 300, 0, progress="none", tensorboard=False, wandb=run, stream=console
    )
    for step in (100, 200, 300):
        logger.record({"event": "train", "env_step": step, "loss": 1.0})
    logger.close()
    assert [r["env_step"] for r in read_metrics(tmp_path)] == [100, 200, 300]
    assert len(logged(calls)) == 2 and logger.error is None
    # shown without a progress display: it is not progress
    lines = console.getvalue().splitlines()
    assert len(lines) == 1 and "continuing without W&B" in lines[0]
    assert "the W&B service is gone" in lines[0]


def test_a_wandb_id_file_that_is_not_an_id_is_not_used(tmp_path):
    for text in ('{"id": "../../x"}', '{"id": 3}', "[1]", "not json"):
        (tmp_path / "wandb.json").write_text(text)
        assert read_wandb_id(tmp_path) is None
    (tmp_path / "wandb.json").write_text('{"id": "ab12cd34"}')
    assert read_wandb_id(tmp_path) == "ab12cd34"


# ------------------------------------------------------------------------------- refused at start
TINY_FLAGS = ["--agent.width", "32", "--run.steps", "300", "--run.progress", "none"]


def test_wandb_that_cannot_start_is_one_line_before_the_run_is_written(
    tmp_path, monkeypatch, capsys
):
    fake_wandb(monkeypatch, init_error=RuntimeError("api_key not configured (no-tty)\nlogin"))
    run = tmp_path / "run"
    code = main(["train", "--run.dir", str(run), "--run.wandb", *TINY_FLAGS])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert "api_key not configured (no-tty) login" in err
    assert "wandb login" in err and "WANDB_MODE=offline" in err
    assert not holds_a_run(run)  # the same command can simply be run again
    assert not (run / "config.json").exists()


def test_wandb_without_its_extra_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    run = tmp_path / "run"
    code = main(["train", "--run.dir", str(run), "--run.wandb", *TINY_FLAGS])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert 'pip install -c constraints.txt -e ".[wandb]"' in err
    assert not run.exists()


def test_the_wandb_flags_are_in_the_help(capsys):
    assert main(["train", "decqn", "-h"]) == 0
    out = capsys.readouterr().out
    for flag in ("--run.wandb", "--run.wandb-project", "--run.wandb-entity", "--run.wandb-tags"):
        assert flag in out
    assert "WANDB_MODE=offline" in out


def test_tensorboard_and_wandb_plot_an_offline_phase_against_offline_step():
    online = {"event": "eval", "env_step": 300, "learner_step": 20, "eval_return": -3.0,
              "eval_returns": [-3.0], "final": False}  # fmt: skip
    offline = {"event": "eval", "env_step": 0, "phase": "offline", "offline_step": 500,
               "learner_step": 500, "eval_return": -2.0}  # fmt: skip
    assert _plotted(online) == ("eval", "env_step", 300, {"learner_step": 20, "eval_return": -3.0})
    assert _plotted(offline) == (
        "offline/eval",
        "offline_step",
        500,
        {"learner_step": 500, "eval_return": -2.0},
    )


def tensorboard_scalars(logdir: Path) -> list[tuple[int, str, float]]:
    """(step, tag, value) of every scalar in the TensorBoard event files of `logdir`."""
    events = tensorboard_events(logdir)
    return [(e.step, v.tag, v.simple_value) for e in events for v in e.summary.value]


def test_tensorboard_names_the_seeds_of_a_run_as_wandb_does(tmp_path):
    """A device run of several seeds writes a record per seed: each is a curve of its own
    (KIND/FIELD/seed_S), not values of one tag at the same step."""
    logger = RunLogger(tmp_path, 300, 0, progress="none", tensorboard=True)
    logger.record({"event": "eval", "env_step": 100, "seed": 0, "eval_return": -1.5})
    logger.record({"event": "eval", "env_step": 100, "seed": 1, "eval_return": -2.5})
    logger.record({"event": "train", "env_step": 100, "loss": 0.25})  # one seed: no tag
    logger.close()
    scalars = tensorboard_scalars(tmp_path / "tb")
    assert scalars == [
        (100, "eval/eval_return/seed_0", -1.5),
        (100, "eval/eval_return/seed_1", -2.5),
        (100, "train/loss", 0.25),
    ]


def test_messages_show_without_a_progress_display_until_the_console_fails(tmp_path):
    """`--run.progress none` hides the progress, not what a message says (how to resume after
    a stop, a dropped writer); a console that failed takes no more lines."""
    console = io.StringIO()
    logger = RunLogger(tmp_path, 300, 0, progress="none", tensorboard=False, stream=console)
    logger.message("[factorl] training decqn")  # progress: not shown
    logger.message(
        "[factorl] stopped by SIGTERM; continue with: factorl train --resume X", important=True
    )
    logger.record({"event": "train", "env_step": 100, "loss": 1.0})
    assert console.getvalue() == (
        "[factorl] stopped by SIGTERM; continue with: factorl train --resume X\n"
    )
    console.close()  # a closed console: the next message fails, and the ones after are dropped
    logger.message("lost", important=True)
    logger.message("lost too", important=True)
    assert logger.mode == "none" and logger._display_broken
    logger.close()
