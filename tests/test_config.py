"""The config in sections and its one override syntax: dotted keys in `make_config`, presets,
`parse_override` strings and config.json, old run folders included."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from factorl.core.config import (
    _BEFORE_ADDED,
    MAX_EPISODES,
    Config,
    ConfigError,
    check_episodes,
    most_sampleable,
    overrides_by_algo,
    parse_override,
    saved_settings,
    setting_keys,
    window_rows,
)
from factorl.presets import PRESETS
from factorl.train import load_config, make_config


def test_the_config_is_in_sections_and_saved_by_them():
    cfg = make_config("decqn", {"env.id": "dmc:cheetah-run", "run.steps": 1000, "replay.n_step": 2})
    assert isinstance(cfg, Config)
    assert (cfg.env.id, cfg.run.steps, cfg.replay.n_step) == ("dmc:cheetah-run", 1000, 2)
    saved = cfg.to_dict()
    assert list(saved) == ["algo", "run", "env", "replay", "agent", "runner", "data"]
    assert saved["env"] == {"id": "dmc:cheetah-run", "num_envs": 1, "action_repeat": 1}
    assert saved["runner"]["eval_every"] == 10_000 and saved["replay"]["n_step"] == 2
    # every setting has one dotted key, and those keys rebuild the same config
    assert list(cfg.settings()) == setting_keys("decqn")
    assert make_config("decqn", cfg.settings()) == cfg


@pytest.mark.parametrize(
    ("text", "algo", "expected"),
    [
        ("agent.width=256", "decqn", ("agent.width", 256)),
        ("agent.learning_rate=3e-4", "decqn", ("agent.learning_rate", 3e-4)),
        ("replay.prioritized=false", "decqn", ("replay.prioritized", False)),
        ("runner.save_replay=True", "decqn", ("runner.save_replay", True)),
        ("replay.n-step=5", "decqn", ("replay.n_step", 5)),  # the flag spelling, as on the CLI
        ("env.id=gym:Pendulum-v1", "sac", ("env.id", "gym:Pendulum-v1")),  # only the first '='
        ("agent.target_entropy=none", "sac", ("agent.target_entropy", None)),
        ("agent.target_entropy=-2.5", "sac", ("agent.target_entropy", -2.5)),
        ("agent.epsilon_mode=joint", "decqn", ("agent.epsilon_mode", "joint")),
    ],
)
def test_parse_override_types_the_value_by_its_field(text, algo, expected):
    key, value = parse_override(text, algo)
    assert (key, value) == expected and type(value) is type(expected[1])


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("agent.width=wide", "agent.width must be an integer, got 'wide'"),
        ("replay.prioritized=yes", "replay.prioritized must be true or false, got 'yes'"),
        ("agent.gamma=x", "agent.gamma must be a number, got 'x'"),
        ("width=3", "an override is SECTION.FIELD=VALUE"),
        ("agent.width", "an override is SECTION.FIELD=VALUE"),
        ("agent.depth=2", "unknown setting 'agent.depth' for decqn"),
    ],
)
def test_parse_override_refuses_bad_input_in_one_line(text, match):
    with pytest.raises(ConfigError, match=match) as err:
        parse_override(text, "decqn")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("episodes", [0, -1, MAX_EPISODES + 1, 2.5, True, "5", float("nan")])
def test_episode_counts_outside_the_bound_are_refused_by_the_flag_name(episodes):
    message = r"^--episodes must be an integer in \[1, 100,000\], got "
    with pytest.raises(ConfigError, match=message):
        check_episodes(episodes, "--episodes")


@pytest.mark.parametrize("episodes", [1, 3.0, MAX_EPISODES, np.int64(7), np.float64(2.0)])
def test_episode_counts_in_the_bound_pass(episodes):
    check_episodes(episodes)


def test_overrides_by_algo_apply_to_every_algorithm_that_has_the_setting():
    got = overrides_by_algo(
        ["decqn", "sac"], ["agent.width=64", "agent.epsilon=0.2", "agent.depth=3", "run.seed=4"]
    )
    assert got == {
        "decqn": {"agent.width": 64, "agent.epsilon": 0.2, "run.seed": 4},
        "sac": {"agent.width": 64, "agent.depth": 3, "run.seed": 4},
    }
    with pytest.raises(ConfigError, match=r"no selected algorithm \(decqn, sac\) has setting"):
        overrides_by_algo(["decqn", "sac"], ["agent.widht=3"])
    with pytest.raises(ConfigError, match=r"agent\.width must be an integer"):
        overrides_by_algo(["decqn"], ["agent.width=3.5"])


def test_presets_are_dotted_keys_of_their_algorithm():
    for algo, presets in PRESETS.items():
        for name, values in presets.items():
            assert set(values) <= set(setting_keys(algo)), (algo, name)


def test_a_run_folder_of_the_first_flat_layout_is_read_into_sections(tmp_path):
    old = {
        "algo": "decqn",
        "train": {"env": "gym:Pendulum-v1", "seed": 3, "steps": 500, "num_envs": 2,
                  "num_seeds": 1, "action_repeat": 1, "eval_every": 100, "eval_episodes": 1,
                  "log_every": 50, "checkpoint_every": 250, "checkpoint_minutes": 0.0,
                  "keep_checkpoints": 1, "save_replay": False, "run_dir": "runs/x",
                  "progress": "none", "tensorboard": False},
        "agent": {"width": 32, "n_step": 2, "replay_capacity": 4000, "prioritized": False},
    }  # fmt: skip
    algo, settings = saved_settings(old)
    assert algo == "decqn"
    assert settings["env.id"] == "gym:Pendulum-v1" and settings["env.num_envs"] == 2
    assert settings["run.seed"] == 3 and settings["run.dir"] == "runs/x"
    assert settings["runner.save_replay"] is False and settings["runner.eval_every"] == 100
    assert settings["agent.width"] == 32 and settings["replay.n_step"] == 2
    assert settings["replay.capacity"] == 4000 and settings["replay.prioritized"] is False
    run = tmp_path / "old"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(old))
    cfg = load_config(run)
    assert (cfg.env.num_envs, cfg.run.steps, cfg.runner.log_every) == (2, 500, 50)
    # a first-layout key this version does not know is named, not dropped
    (run / "config.json").write_text(json.dumps({**old, "train": {"frobs": 1}}))
    with pytest.raises(ConfigError, match=r"unknown setting 'train\.frobs'"):
        load_config(run)


def test_a_run_folder_saved_with_run_run_dir_reads_as_run_dir(tmp_path):
    saved = make_config("decqn", {"run.steps": 100, "run.dir": "runs/y"}).to_dict()
    saved["run"]["run_dir"] = saved["run"].pop("dir")  # the setting's name before run.dir
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(saved))
    assert load_config(run).run.dir == "runs/y"


def test_load_config_checks_a_saved_config_as_make_config_does(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    saved = make_config("decqn", {"run.steps": 100}).to_dict()
    (run / "config.json").write_text(json.dumps({**saved, "run": {**saved["run"], "steps": 0}}))
    with pytest.raises(ConfigError, match=r"not a valid factorl config: run\.steps must be >= 1"):
        load_config(run)
    (run / "config.json").write_text(json.dumps(["decqn"]))
    with pytest.raises(ConfigError, match="not a valid factorl config"):
        load_config(run)
    (run / "config.json").write_text("[" * 100_000 + "]" * 100_000)  # deeper than Python recurses
    with pytest.raises(ConfigError, match="not a valid factorl config: nested too deeply"):
        load_config(run)


def test_a_run_folder_without_its_config_says_how_to_go_on(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(ConfigError, match="not a factorl run folder"):
        load_config(run)
    (run / ".lock").write_text("")  # stopped as it started, before writing anything
    with pytest.raises(ConfigError, match="holds no run yet"):
        load_config(run)
    (run / "metrics.jsonl").write_text("")  # a run's records, its config removed
    with pytest.raises(ConfigError, match=r"records but no config\.json file .*--overwrite"):
        load_config(run)


def test_each_algorithm_has_its_reference_replay_and_refuses_what_it_cannot_use():
    decqn, cqn, sac = (make_config(a).replay for a in ("decqn", "cqn", "sac"))
    assert (decqn.n_step, decqn.batch_size, decqn.prioritized, decqn.priority_beta) == (
        3,
        256,
        True,
        0.2,
    )
    assert (cqn.batch_size, cqn.n_step, cqn.prioritized) == (512, 1, False)
    assert (sac.n_step, sac.prioritized) == (1, False)
    assert make_config("sac", {"replay.prioritized": True}).replay.prioritized  # it weights TD
    refused = {
        ("sac", "replay.n_step", 3): "replay.n_step must stay 1 for sac (its critic targets",
        ("td3", "replay.n_step", 2): "replay.n_step must stay 1 for td3",
        ("cqn", "replay.prioritized", True): "must stay False for cqn (its loss applies no",
        ("cqn_as", "replay.priority_beta", 1.0): "replay.priority_beta must stay 0.4 for cqn_as",
    }
    for (algo, key, value), message in refused.items():
        with pytest.raises(ConfigError, match=re.escape(message)) as err:
            make_config(algo, {key: value})
        assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=r"did you mean replay\.batch_size\?"):
        make_config("decqn", {"agent.batch_size": 64})  # moved to the replay section


def test_a_config_json_with_the_replay_settings_in_agent_is_read_into_the_replay_section():
    saved = make_config("decqn", {"replay.n_step": 2, "replay.capacity": 3000}).to_dict()
    agent = {**saved.pop("agent"), "n_step": 2, "replay_capacity": 3000, "batch_size": 64}
    del saved["replay"]
    algo, settings = saved_settings({**saved, "agent": agent})
    cfg = make_config(algo, settings)
    assert (cfg.replay.n_step, cfg.replay.capacity, cfg.replay.batch_size) == (2, 3000, 64)


def test_a_setting_added_later_reads_as_what_runs_before_it_did():
    # CQN and CQN-AS runs from data written before agent.demo_bin_mean averaged over the other
    # bins only
    for algo in ("cqn", "cqn_as"):
        old = make_config(algo, {"data.dataset": "x/medium-v0"}).to_dict()
        del old["agent"]["demo_bin_mean"]
        assert saved_settings(old)[1]["agent.demo_bin_mean"] == "others"
    # ...an online run never used it, so it reads as today's defaults, equal setting by setting
    online = make_config("cqn").to_dict()
    del online["agent"]["demo_bin_mean"]
    assert make_config(*saved_settings(online)) == make_config("cqn")
    # ...and a run that names it keeps its own
    old["agent"]["demo_bin_mean"] = "all"
    assert saved_settings(old)[1]["agent.demo_bin_mean"] == "all"


def test_an_algorithm_registered_from_outside_is_configured_like_factorl_s_own(
    monkeypatch, tmp_path
):
    from conftest import TINY_DECQN, tiny_config

    from factorl.agents import ALGORITHMS, register_algorithm
    from factorl.agents.decqn import DecQN
    from factorl.train import train

    class MyDecQN(DecQN):
        """A user's variant, defined outside factorl."""

    monkeypatch.setitem(ALGORITHMS, "my_decqn", MyDecQN)  # removed again after the test
    cfg = make_config("my_decqn", {"agent.width": 64, "replay.n_step": 2})
    assert (cfg.algo, cfg.agent.width, cfg.replay.n_step) == ("my_decqn", 64, 2)
    result = train(tiny_config(tmp_path / "run", "my_decqn", 300, TINY_DECQN))
    assert isinstance(result.agent, MyDecQN) and int(result.state.learner_step) > 0
    register_algorithm("my_decqn", MyDecQN)  # registering the same class again is harmless
    with pytest.raises(ValueError, match="already registered"):
        register_algorithm("decqn", MyDecQN)
    with pytest.raises(ValueError, match="lower-case identifiers"):
        register_algorithm("My DecQN", MyDecQN)
    with pytest.raises(TypeError, match="lacks Config"):
        register_algorithm("nothing", object)
    with pytest.raises(ConfigError, match=r"unknown algorithm 'nope'; available: .*decqn"):
        make_config("nope")


def test_window_rows_and_the_most_sampleable_transitions():
    # 1000 slots for 8 streams: 125 each; aligned 26-step blocks keep 4 whole blocks (104)
    assert window_rows(1000, 8, 26) == 125
    assert window_rows(1000, 8, 26, block=26) == 104
    assert most_sampleable(125, 8, 26, aligned=False) == 8 * 100  # a window after each
    assert most_sampleable(104, 8, 26, aligned=True) == 8 * 104  # every step of a block
    with pytest.raises(ValueError, match=r"leaves 20 steps per environment.*26-step window"):
        window_rows(100, 5, 26)
    with pytest.raises(ValueError, match=r"leaves 0 steps per environment"):
        window_rows(200, 8, 26, block=26)  # 25 slots hold no whole block


@pytest.mark.parametrize(("aligned", "most"), [(True, 832), (False, 800)])
def test_vdn_refuses_a_replay_that_can_never_start_learning(aligned, most):
    # 1000 slots, 8 streams of 125 steps: aligned, 4 whole 26-step blocks each, every step
    # sampleable (8 x 104); else every step with a 26-step window after it (8 x 100)
    values = {
        "env.id": "jaxmarl:MPE_simple_spread_v3",
        "env.num_envs": 8,
        "replay.capacity": 1000,
        "agent.aligned_windows": aligned,
    }
    with pytest.raises(ConfigError, match=f"holds at most {most} sampleable transitions"):
        make_config("vdn", {**values, "agent.learning_starts": most + 1})
    make_config("vdn", {**values, "agent.learning_starts": most})
    with pytest.raises(ConfigError, match="for 8 environments, fewer than the 26-step window"):
        make_config("vdn", {**values, "replay.capacity": 200, "agent.learning_starts": 10})


#: settings that committed results files were written without, each with why reading such a
#: file (or its run folder) with today's default reproduces what that run did. A setting added
#: later whose default does not goes in `factorl.core.config._BEFORE_ADDED` instead.
ADDED_AT_EARLIER_BEHAVIOUR = {
    "agent.critic_weight": "weighs the critic loss against the demonstration losses, at 1.0",
    "agent.demo_weight": "CQN's demonstration losses act on dataset rows only",
    "agent.demo_margin": "CQN's demonstration losses act on dataset rows only",
    "agent.demo_fosd": "CQN's demonstration losses act on dataset rows only",
    "agent.torso": "REValueD's default torso is DecQN's, the one it had before the option",
    "agent.truncation": "VDN/QMIX bootstrap at truncation by default, as before the option",
    "data.dataset": "none is online training, all there was before datasets",
    "data.offline_steps": "acts only with a dataset",
    "data.share": "acts only with a dataset",
    "env.num_envs": "one environment, all there was before the option",
    "replay.n_step": "SAC and TD3 default to one-step returns, as before the option",
    "replay.prioritized": "uniform replay by default, all there was before the option",
    "replay.priority_alpha": "acts only with prioritized replay",
    "replay.priority_beta": "acts only with prioritized replay",
    "run.num_seeds": "one seed per process, all there was before the option",
    "run.wandb": "logging only; off by default",
    "run.wandb_project": "logging only",
    "run.wandb_entity": "logging only",
    "run.wandb_group": "logging only",
    "run.wandb_tags": "logging only",
    "runner.checkpoint_minutes": "when checkpoints are written; resume is exact either way",
    "runner.video_every": "videos render on an environment of their own; off by default",
}


def committed_run_configs() -> list[tuple[str, dict]]:
    """(path, config) of every committed results file that records a run's config.json (the
    benchmark files whose `config` is the benchmark's own arguments are left out)."""
    root = Path(__file__).resolve().parents[1]
    found = []
    for folder in ("results", "bench/results", "docs"):
        for path in sorted((root / folder).rglob("*.json")):
            data = json.loads(path.read_text())
            config = data.get("config") if isinstance(data, dict) else None
            if isinstance(config, dict) and ("run" in config or "train" in config):
                found.append((str(path.relative_to(root)), config))
    return found


def test_every_setting_a_committed_run_lacks_reads_as_what_that_run_did():
    # a setting added after a run was written is read from its default, so adding one must say
    # whether that default is what earlier runs did (the dict above) or not (_BEFORE_ADDED)
    configs = committed_run_configs()
    assert len(configs) > 100, "the results files moved: point committed_run_configs at them"
    for path, config in configs:
        algo, settings = saved_settings(config)
        make_config(algo, settings)  # each still reads as a valid config
        for key in sorted(make_config(algo).settings().keys() - settings.keys()):
            assert key in ADDED_AT_EARLIER_BEHAVIOUR or (algo, key) in _BEFORE_ADDED, (
                f"{path} has no {key}: if its default is what such a run did, add it to "
                "ADDED_AT_EARLIER_BEHAVIOUR here; if not, add the value it ran with to "
                "factorl.core.config._BEFORE_ADDED"
            )
