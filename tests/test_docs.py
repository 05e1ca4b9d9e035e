"""Each algorithm page's config table lists every config field with the default the code has.

The pages are the reference users read for flags and defaults; this keeps them from drifting
when a default changes in code. The README's factorisation example is run too, and every
`factorl train` and `factorl sweep` command the docs show is parsed as the CLI would.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from factorl import sweep
from factorl.agents import ALGORITHMS, CONFIGS
from factorl.cli import parse_train_args
from factorl.io.runfolder import read_segments

DOCS = Path(__file__).resolve().parent.parent / "docs"
#: pages that document only what they change or add to another page's table
BASE_PAGE = {"cqn_as": "cqn"}


def config_table(page: str, heading: str = "## Config fields") -> dict[str, str]:
    """field name -> default cell, from the table under `heading` of docs/{page}.md.

    A row may name several fields ("levels, bins | 3, 5"); their defaults are then split on
    commas too, unless the counts differ (one default shared by all).
    """
    text = (DOCS / f"{page}.md").read_text()
    assert heading in text, f"docs/{page}.md has no '{heading}' section"
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in rows[0].strip("|").split("|")]
    column = header.index("default")
    table = {}
    for row in rows[2:]:  # skip the header and the |---| rule
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        names = [name.strip() for name in cells[0].split(",")]
        defaults = [value.strip() for value in cells[column].split(",")]
        if len(defaults) != len(names):
            defaults = [cells[column]] * len(names)
        table.update(zip(names, defaults, strict=True))
    return table


def matches(cell: str, default: object) -> bool:
    cell = cell.strip("`")
    if isinstance(default, bool):
        return cell.lower() in (("true", "on") if default else ("false", "off"))
    if isinstance(default, int | float):
        try:
            return float(cell.replace("_", "")) == float(default)  # 1_000_000 reads as a number
        except ValueError:
            return False
    if isinstance(default, tuple):
        compact = cell.replace(" ", "")
        return compact in (str(default).replace(" ", ""), "x".join(map(str, default)))
    return cell == str(default)


def test_parser_reads_multi_field_rows_and_rejects_wrong_defaults():
    table = config_table("cqn")
    assert table["levels"] == "3" and table["num_atoms"] == "51" and table["v_max"] == "200"
    assert matches("1e-4", 1e-4) and matches("1000000", 1_000_000) and matches("on", True)
    assert not matches("1e-3", 1e-4) and not matches("false", True) and not matches("x", 3)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_config_table_matches_code(name):
    table = config_table(name)
    if name in BASE_PAGE:
        table = {**config_table(BASE_PAGE[name]), **table}
    fields = {f.name: f.default for f in dataclasses.fields(CONFIGS[name])}
    problems = [
        f"{k}: not in the table (default {v!r})" for k, v in fields.items() if k not in table
    ]
    problems += [
        f"{k}: table says {table[k]!r}, code has {v!r}"
        for k, v in fields.items()
        if k in table and not matches(table[k], v)
    ]
    problems += [f"{k}: in the table but not a config field" for k in table if k not in fields]
    assert not problems, f"docs/{name}.md is out of date:\n" + "\n".join(problems)


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_replay_table_matches_the_algorithms_reference_replay(name):
    table = config_table(name, "## Replay settings")
    if name in BASE_PAGE:
        table = {**config_table(BASE_PAGE[name], "## Replay settings"), **table}
    reference = dataclasses.asdict(ALGORITHMS[name].REPLAY)
    assert {"capacity", "batch_size"} <= set(table), f"docs/{name}.md: replay table incomplete"
    problems = [f"{k}: not a replay setting" for k in table if k not in reference]
    problems += [
        f"{k}: table says {table[k]!r}, code has {reference[k]!r}"
        for k in table
        if k in reference and not matches(table[k], reference[k])
    ]
    assert not problems, f"docs/{name}.md is out of date:\n" + "\n".join(problems)


def test_the_readme_factorisation_example_runs_as_its_comments_say():
    readme = (DOCS.parent / "README.md").read_text()
    blocks = [b.split("```", 1)[0] for b in readme.split("```python\n")[1:]]
    (example,) = [b for b in blocks if b.startswith("from factorl import ActionFactorisation")]
    scope: dict = {}
    exec(example, scope)  # the README's own code, nothing else
    assert scope["bins"].encode([[0.4, -0.9]]).tolist() == [[1, 0]]
    assert scope["path"].shape == (1, 3, 2)
    assert scope["seq"].index_shape == (4, 3, 2)
    centre = scope["zoom"].decode(scope["path"])[0]
    half_finest = 2 / 125 / 2  # half the width of a finest interval on [-1, 1]
    assert abs(float(centre[0]) - 0.3) <= half_finest and abs(float(centre[1]) + 0.8) <= half_finest


def user_pages() -> list[Path]:
    """The pages users read: the README, docs/, bench/README.md and every page of results/."""
    root = DOCS.parent
    pages = [root / "README.md", *sorted(DOCS.glob("*.md")), root / "bench" / "README.md"]
    return pages + sorted((root / "results").rglob("*.md"))


#: commands that name something a reader supplies (a run folder, a module, a shell variable)
PLACEHOLDERS = ("RUN_DIR", "NAME", "ALGO", "my_envs", "...", "$", "--resume")


def documented_commands(program: str = r"factorl (?:train|sweep)\b") -> list[tuple[str, str]]:
    """(file, command) for every command matching `program` in the README, docs/,
    bench/README.md and results/: lines of shell blocks (continuations joined, comments cut)
    and inline code spans with arguments."""
    root = DOCS.parent
    # a command starts its line, or follows `&&` or VAR=value settings
    start = r"(?:^|&& )(?:\w+=\S+ )*"
    found = []
    for page in user_pages():
        text = page.read_text()
        name = str(page.relative_to(root))
        # the parts between fences alternate prose, code, prose, ...
        parts = re.split(r"^```.*$", text, flags=re.M)
        for block in parts[1::2]:
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split(" # ", 1)[0]
                found += [(name, m) for m in re.findall(f"{start}((?:{program}).*)", line)]
        for prose in parts[::2]:  # with arguments (prose names a program bare)
            found += [(name, m) for m in re.findall(f"`((?:{program})\\s[^`]*)`", prose)]
    return [(name, " ".join(command.split())) for name, command in found]


def test_every_documented_train_and_sweep_command_parses():
    checked, problems = 0, []
    for page, command in dict.fromkeys(documented_commands()):
        if any(p in command for p in PLACEHOLDERS):
            continue
        argv = shlex.split(command)
        if "-h" in argv:
            continue
        try:
            assert argv[1] in ("train", "sweep"), "not a train or sweep command"
            if argv[1] == "train":
                parse_train_args(argv[2:])
            else:  # --list checks every trial's config and environment id, and trains nothing
                out = io.StringIO()
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                    code = sweep.cmd_sweep([a for a in argv[2:] if a != "--list"] + ["--list"])
                if code:
                    problems.append(f"{page}: {command}: {out.getvalue().strip()}")
        except Exception as e:
            problems.append(f"{page}: {command}: {type(e).__name__}: {e}")
        checked += 1
    assert checked >= 40, f"only {checked} commands found: the extraction is broken"
    assert not problems, "documented commands the CLI refuses:\n" + "\n".join(problems)


#: runs each script's argument parser on the argv given and stops there: a bench script does its
#: work after parsing, and may set up the process (threads, XLA flags), hence its own process
_PARSE_ONLY = """
import argparse, json, runpy, sys
class Parsed(Exception):
    pass
def parse_only(self, args=None, namespace=None):
    parse_args(self, args, namespace)
    raise Parsed
parse_args, argparse.ArgumentParser.parse_args = argparse.ArgumentParser.parse_args, parse_only
outcomes = []
for argv in json.loads(sys.argv[1]):
    sys.argv = argv
    try:
        if argv[0] == "factorl":
            from factorl.cli import main
            main(argv[1:])
        else:
            runpy.run_path(argv[0], run_name="__main__")
        outcomes.append("ran past its parser")
    except Parsed:
        outcomes.append("")
    except SystemExit as e:
        outcomes.append(f"exit {e.code}")
print(json.dumps(outcomes))
"""


#: the values a reader puts for the docs' placeholders, where a parser checks their type
_PLACEHOLDER_VALUES = {"STEP": "1000", "N": "10", "SIGMA": "0.1", "RUNS...": "runs"}


def test_every_other_documented_command_parses():
    """The bench scripts' commands and factorl's collect, eval, report and envs."""
    # bench/learning.py is quoted as the name older results files record; factorl sweep replaced it
    programs = r"python bench/\w+\.py|factorl (?:collect|eval|report|envs)\b"
    commands = [
        (page, command)
        for page, command in dict.fromkeys(documented_commands(programs))
        if "bench/learning.py" not in command and "..." not in command.replace("RUNS...", "")
    ]
    argvs = []
    for _, command in commands:
        argv = shlex.split(re.sub(r"\[[^]]*\]", "", command))  # `[--flag value]`: optional
        argvs.append([_PLACEHOLDER_VALUES.get(a, a) for a in argv[argv[0] == "python" :]])
    assert len(argvs) >= 55, f"only {len(argvs)} commands found: the extraction is broken"
    run = subprocess.run(
        [sys.executable, "-c", _PARSE_ONLY, json.dumps(argvs)],
        cwd=DOCS.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    outcomes = json.loads(run.stdout.splitlines()[-1])
    problems = [f"{p}: {c}: {o}" for (p, c), o in zip(commands, outcomes, strict=True) if o]
    assert not problems, "documented commands their parsers refuse:\n" + "\n".join(problems)


def test_the_readme_python_api_example_runs(tmp_path, monkeypatch):
    readme = (DOCS.parent / "README.md").read_text()
    blocks = [b.split("```", 1)[0] for b in readme.split("```python\n")[1:]]
    (example,) = [b for b in blocks if b.startswith("import factorl\n")]
    # the same calls on a small budget: Pendulum for walker-walk, hundreds of steps for 200k
    small = {'"dmc:walker-walk"': '"gym:Pendulum-v1"', "200_000": "400", "400_000": "600"}
    small["episodes=10"] = "episodes=2"
    for old, new in small.items():
        assert old in example, f"the README example no longer has {old}"
        example = example.replace(old, new)
    monkeypatch.chdir(tmp_path)  # its run folders go to ./runs
    scope: dict = {}
    exec(example, scope)  # the README's own code, resized
    assert scope["env"].action_space.contains(np.asarray(scope["action"], np.float32))
    assert scope["result"].env_step == 400
    runs = list((tmp_path / "runs").iterdir())
    assert runs == [Path(scope["result"].run_dir).resolve()]
    # trained on in the same folder from where it stopped
    assert [s["from_env_step"] for s in read_segments(runs[0])] == [0, 400]


def _outside_code(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def _anchors(page: Path) -> Iterator[str]:
    """The anchors GitHub gives the headings of `page` (lower case, punctuation dropped,
    spaces as hyphens, -1, -2, ... on repeats)."""
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6} (.*)$", _outside_code(page.read_text()), re.M):
        anchor = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        seen[anchor] = seen.get(anchor, -1) + 1
        yield anchor if seen[anchor] == 0 else f"{anchor}-{seen[anchor]}"


def test_every_relative_link_in_the_docs_resolves():
    root = DOCS.parent
    checked, broken = 0, []
    for page in user_pages():
        for target in re.findall(r"\]\(([^)\s]+)\)", _outside_code(page.read_text())):
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            checked += 1
            path, _, anchor = target.partition("#")
            dest = page.parent / path if path else page
            if not dest.exists():
                broken.append(f"{page.relative_to(root)}: {target}: no such file")
            elif anchor and dest.suffix == ".md" and anchor not in set(_anchors(dest)):
                broken.append(f"{page.relative_to(root)}: {target}: no such heading")
    assert checked >= 100, f"only {checked} links found: the extraction is broken"
    assert not broken, "broken links:\n" + "\n".join(broken)
