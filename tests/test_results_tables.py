"""The numbers on the user-facing pages equal the committed results files they quote.

The README, results/, docs/ and bench/README.md hold tables (and sentences) of numbers copied
from, or generated out of, the JSON files in results/ and bench/results/. Each check here reads
the page as it is now, finds the table or sentence, takes the numbers it shows and recomputes
them from the JSON files, with the project's own statistics (`factorl.report.t_interval`, and the
table code of `bench/report.py` and `bench/offline_protocol.py` for the pages those scripts
generate; for bench/README.md, the fields and derivations of the bench/ script that wrote each
file), rounded as the page rounds them. A row of a table with no data behind it fails, as does a
generated row that the page lacks. Figures that no committed file holds (timings taken by hand,
estimates, the reference note's figures) are listed in `UNTRACED`, whose entries must still be on
their pages, so that the list stays true.

Nothing here trains or reaches the network; the whole file reads about 160 JSON files.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import re
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from factorl.report import EXPERT_LEVELS, t_interval

ROOT = Path(__file__).resolve().parents[1]

# ------------------------------------------------------------------------------------ helpers


def _bench(name: str):
    """A script of bench/ as a module (under a name of its own: test_report loads them too)."""
    spec = importlib.util.spec_from_file_location(
        f"results_tables_{name}", ROOT / "bench" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@functools.cache
def bench_report():
    return _bench("report")


@functools.cache
def bench_offline():
    return _bench("offline_protocol")


@functools.cache
def page_text(page: str) -> str:
    return (ROOT / page).read_text()


@functools.cache
def data(path: str) -> Any:
    """A committed JSON file, by its path from the repository root."""
    return json.loads((ROOT / path).read_text())


def safe(env: str) -> str:
    """An env id as results file names spell it (dmc:walker-walk -> dmc-walker-walk)."""
    return env.replace(":", "-").replace("/", "-")


def seed_files(folder: str, algo: str, env: str, dataset: str | None = None) -> list[str]:
    """The results files of one trial in `folder`, seed by seed (no dataset: online only)."""
    middle = f"__dataset={safe(env)}-{dataset}" if dataset else ""
    pattern = re.compile(
        rf"{re.escape(algo)}__{re.escape(safe(env))}{re.escape(middle)}__s(\d+)\.json"
    )
    found = [
        (int(m[1]), p.name)
        for p in (ROOT / folder).glob("*.json")
        if (m := pattern.fullmatch(p.name))
    ]
    return [f"{folder}/{name}" for _, name in sorted(found)]


def runs(folder: str, algo: str, env: str, dataset: str | None = None) -> list[dict[str, Any]]:
    return [data(path) for path in seed_files(folder, algo, env, dataset)]


def point(run: dict[str, Any], step: int) -> dict[str, Any]:
    """The evaluation at exactly `step` (a page that says "at 100k" means that evaluation)."""
    found = [p for p in run["curve"] if p["env_step"] == step and p.get("phase") != "offline"]
    if not found:
        raise LookupError(f"{run['algo']} {run['env']} seed {run['seed']}: no evaluation at {step}")
    return found[0]


def at(run: dict[str, Any], step: int, key: str = "eval_return") -> float:
    return float(point(run, step)[key])


def final(run: dict[str, Any], key: str = "eval_return") -> float:
    return float(run["curve"][-1][key])


def offline_end(run: dict[str, Any]) -> float | None:
    """The evaluation after the offline phase, as bench/offline_protocol.py reads it."""
    return bench_offline().offline_eval(run)


def mean_ci(values: Iterable[float]) -> tuple[float, float]:
    return t_interval(list(values))


# ---------------------------------------------------------------------- figures and comparing

#: a number as pages print them (not the digits inside a name such as TD3 or v5)
NUMBER = r"(?<![\w.])-?\d+(?:,\d{3})*(?:\.\d+)?"
#: a number as a regular expression's group
N = f"({NUMBER})"


@dataclass(frozen=True)
class Figure:
    """One number (or short text) on a page and what the data says it should be.

    `expected` is a number (compared at the page's precision), a string (compared exactly), a
    bool (a statement about the data that must hold) or None (no data behind the figure).
    `shown` None: the data has it and the page does not."""

    page: str
    line: int
    what: str
    shown: str | None
    expected: Any
    source: str = ""
    error: str = ""

    @property
    def id(self) -> str:
        return f"{self.page}: {self.what}"


def rounded(value: float, shown: str) -> list[str]:
    """`value` rounded and printed as `shown` prints its number (its decimals, its commas): as
    Python prints it, and rounded half up from its shortest decimal form (14350 / 1000 is 14.35,
    which a person rounds to 14.4 where Python, seeing 14.349999..., prints 14.3)."""
    text = shown.replace(",", "")
    decimals = len(text.split(".")[1]) if "." in text else 0
    half_up = Decimal(repr(float(value))).quantize(Decimal(1).scaleb(-decimals), ROUND_HALF_UP)
    out = []
    for number in (float(value), float(half_up)):
        printed = f"{number:,.{decimals}f}" if "," in shown else f"{number:.{decimals}f}"
        out.append(printed[1:] if printed.startswith("-") and float(printed) == 0 else printed)
    return out


def check(figure: Figure) -> str | None:
    """None if the page agrees with the data, else what is wrong."""
    where = f"{figure.page}:{figure.line}: {figure.what}"
    if figure.error:
        return f"{where}: {figure.error}"
    if figure.shown is None:
        return f"{where}: the data ({figure.source}) has {figure.expected!r}; the page lacks it"
    if figure.expected is None:
        return f"{where}: {figure.shown!r} on the page has no data behind it"
    if isinstance(figure.expected, bool | np.bool_):
        if figure.expected:
            return None
        return (
            f"{where}: the page says {figure.shown!r}, which the data ({figure.source}) contradicts"
        )
    if isinstance(figure.expected, str):
        if figure.shown == figure.expected:
            return None
        return f"{where}: page {figure.shown!r}, data {figure.expected!r} ({figure.source})"
    if not re.fullmatch(NUMBER, figure.shown):
        return f"{where}: {figure.shown!r} is not a number"
    want = rounded(float(figure.expected), figure.shown)
    if figure.shown in want:
        return None
    value = float(figure.expected)
    return f"{where}: page {figure.shown}, data {want[0]} ({value!r}; {figure.source})"


def add(
    figures: list[Figure],
    page: str,
    line: int,
    what: str,
    shown: str | None,
    expected: Any,
    source: str = "",
    error: str = "",
) -> None:
    """One more figure (see `Figure`)."""
    figures.append(Figure(page, line, what, shown, expected, source, error))


# ------------------------------------------------------------------------------ markdown tables


@dataclass
class Table:
    page: str
    line: int  # of the header
    header: list[str]
    rows: list[tuple[int, list[str]]]  # (line, cells)


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().removeprefix("|").removesuffix("|").split("|")]


def md_tables(text: str, page: str = "") -> list[Table]:
    """Every table of a markdown text, outside code blocks."""
    lines, found, fenced, i = text.splitlines(), [], False, 0
    while i < len(lines):
        if lines[i].lstrip().startswith("```"):
            fenced = not fenced
        elif (
            not fenced
            and lines[i].startswith("|")
            and i + 1 < len(lines)
            and re.match(r"\|\s*-{3}", lines[i + 1])
        ):
            j, rows = i + 2, []
            while j < len(lines) and lines[j].startswith("|"):
                rows.append((j + 1, cells(lines[j])))
                j += 1
            found.append(Table(page, i + 1, cells(lines[i]), rows))
            i = j
            continue
        i += 1
    return found


def table(page: str, *words: str) -> Table:
    """The one table of `page` whose header holds all `words`."""
    hits = [
        t for t in md_tables(page_text(page), page) if all(w in " | ".join(t.header) for w in words)
    ]
    if len(hits) != 1:
        raise LookupError(f"{len(hits)} tables with {words} in the header (expected one)")
    return hits[0]


def split_ci(cell: str) -> tuple[str, str] | None:
    """("537.0", "495.2") from "537.0 ± 495.2"."""
    m = re.fullmatch(rf"({NUMBER}) ± ({NUMBER})", cell.strip())
    return (m[1], m[2]) if m else None


def ci_figures(figures, page, line, what, cell, values, source) -> None:
    """The figures of a "mean ± half" cell against the Student-t interval of `values`."""
    parts = split_ci(cell)
    if parts is None:
        add(figures, page, line, what, cell, None, source, "not a 'mean ± half' cell")
        return
    mean, half = mean_ci(values)
    add(figures, page, line, f"{what}, mean", parts[0], mean, source)
    add(figures, page, line, f"{what}, 95% half-width", parts[1], half, source)


def list_figures(figures, page, line, what, text, values, source, sep=r",\s*|\s*/\s*") -> None:
    """A list of numbers, one per seed, against `values` (the same count, the same order)."""
    shown = [s for s in re.split(sep, text.strip()) if s]
    if len(shown) != len(values):
        add(
            figures,
            page,
            line,
            what,
            text,
            None,
            source,
            f"{len(shown)} values shown, {len(values)} in the data",
        )
        return
    for i, (s, v) in enumerate(zip(shown, values, strict=True)):
        add(figures, page, line, f"{what} [{i}]", s, v, source)


# ----------------------------------------------------------------------------------- sentences


def template(text: str) -> re.Pattern:
    """A regular expression from plain text: `{name}` is a number (a named group), `...` any
    text (shortest), a space any run of white space (sentences wrap)."""
    parts = re.split(r"(\{\w+\}|\.\.\.)", text)
    out = []
    for part in parts:
        if re.fullmatch(r"\{\w+\}", part):
            out.append(f"(?P<{part[1:-1]}>{NUMBER})")
        elif part == "...":
            out.append(r"[\s\S]*?")
        else:
            out.append(r"\s+".join(re.escape(w) for w in part.split(" ")))
    return re.compile("".join(out))


def _find_once(figures, page, label, text) -> re.Match | None:
    found = list(template(text).finditer(page_text(page)))
    if len(found) != 1:
        add(
            figures,
            page,
            0,
            label,
            None,
            None,
            "",
            f"{text[:70]!r} found {len(found)} times on the page (expected once)",
        )
        return None
    return found[0]


def sentence(
    figures: list[Figure], page: str, label: str, text: str, expected: dict[str, Any], source: str
) -> None:
    """The numbers of one sentence of `page` (matched by `template(text)`, exactly once) against
    `expected`: placeholder name -> value."""
    m = _find_once(figures, page, label, text)
    if m is None:
        return
    if set(m.groupdict()) != set(expected):
        raise KeyError(
            f"{label}: placeholders {sorted(m.groupdict())}, values for {sorted(expected)}"
        )
    body = page_text(page)
    for name, value in expected.items():
        line = body[: m.start(name)].count("\n") + 1
        add(figures, page, line, f"{label}: {name}", m[name], value, source)


def statement(figures, page: str, label: str, text: str, holds: bool, source: str) -> None:
    """A statement of `page` (plain text, found once) that the data must bear out."""
    m = _find_once(figures, page, label, text)
    if m is not None:
        line = page_text(page)[: m.start()].count("\n") + 1
        add(figures, page, line, label, " ".join(m[0].split()), holds, source)


# ---------------------------------------------------------------- pages bench/ scripts generate


def compare_generated(
    figures: list[Figure],
    page: str,
    page_tables: list[Table],
    made: list[Table],
    keys: Callable[[list[str]], int],
    source: str,
) -> None:
    """Every row of the page's tables against the same table made now from the data, cell by
    cell, matched by its key columns; a made row the page lacks fails too."""
    by_header = {tuple(t.header): t for t in made}
    for shown in page_tables:
        fresh = by_header.get(tuple(shown.header))
        if fresh is None:
            add(
                figures,
                page,
                shown.line,
                f"table {' | '.join(shown.header)[:50]}",
                " | ".join(shown.header),
                None,
                source,
                "no such table is made from the data",
            )
            continue
        k = keys(shown.header)
        rows = {tuple(c[:k]): c for _, c in fresh.rows}
        seen = set()
        for line, row in shown.rows:
            key = tuple(row[:k])
            seen.add(key)
            want = rows.get(key)
            for col, (name, cell) in enumerate(zip(shown.header, row, strict=True)):
                if col < k:
                    continue
                what = f"{' / '.join(key)}: {name}"
                add(figures, page, line, what, cell, None if want is None else want[col], source)
        for key, row in rows.items():
            if key not in seen:
                add(
                    figures,
                    page,
                    shown.line,
                    f"{' / '.join(key)}: row",
                    None,
                    " | ".join(row),
                    source,
                )


def learning_page(page: str, folder: str) -> list[Figure]:
    """results/learning.md and results/marl/learning.md: bench/report.py's three tables."""
    report = bench_report()
    found = report.load_runs(ROOT / folder)
    made = []
    for text in (report.table(found), report.win_rate_table(found), report.runs_table(found)):
        made += md_tables(text) if text else []
    figures: list[Figure] = []
    shown = md_tables(page_text(page), page)
    if len(shown) != len(made):
        add(
            figures,
            page,
            0,
            "tables",
            str(len(shown)),
            None,
            folder,
            f"the page has {len(shown)} tables, the data makes {len(made)}",
        )
    compare_generated(
        figures,
        page,
        shown,
        made,
        lambda header: 3 if "seed" in header else 2,
        f"bench/report.py on {folder}/",
    )
    return figures


def learning_md() -> list[Figure]:
    return learning_page("results/learning.md", "results/learning")


def marl_learning_md() -> list[Figure]:
    return learning_page("results/marl/learning.md", "results/marl")


def offline_rows(folder: str) -> list[dict[str, Any]]:
    """bench/offline_protocol.py's rows (algorithm x dataset, mean and interval over seeds) from
    the results files in `folder`."""
    proto = bench_offline()
    groups: dict[tuple[str, str, str], list[tuple[int, dict]]] = defaultdict(list)
    for path in sorted((ROOT / folder).glob("*__*__s*.json")):
        parts = path.stem.split("__")
        run = data(f"{folder}/{path.name}")
        assert parts[0] == run["algo"] and parts[1] == safe(run["env"]), f"{folder}/{path.name}"
        label = proto.ONLINE
        if len(parts) == 4:
            (label,) = [k for k, tail in proto.DATASETS if parts[2] == f"dataset={parts[1]}-{tail}"]
        groups[(run["env"], run["algo"], label)].append((int(parts[-1][1:]), run))
    rows = []
    for (env, algo, label), seeds in groups.items():
        seeds.sort(key=lambda s: s[0])
        offline = [offline_end(r) for _, r in seeds]
        rows.append(
            {
                "env": env,
                "algo": algo,
                "dataset": label,
                "seeds": [s for s, _ in seeds],
                "final_env_step": min(int(r["final_env_step"]) for _, r in seeds),
                "offline_end_eval": None
                if label == proto.ONLINE
                else proto._cell([v for v in offline if v is not None]),
                "final_eval": proto._cell([final(r) for _, r in seeds]),
                "runs": [r for _, r in seeds],
            }
        )
    return rows


def offline_page(page: str, folder: str) -> list[Figure]:
    """results/offline/**/offline.md: bench/offline_protocol.py's table, its left-out trials and
    its dataset recipes (from summary.json, which holds the recipe: the source runs are not
    committed)."""
    proto = bench_offline()
    figures: list[Figure] = []
    made = md_tables(proto.table(offline_rows(folder)))
    shown = md_tables(page_text(page), page)
    compare_generated(
        figures,
        page,
        shown,
        made,
        lambda header: 3,
        f"bench/offline_protocol.py's table of {folder}/",
    )
    summary = data(f"{folder}/summary.json")
    body = page_text(page)
    m = re.search(r"Not finished yet, left out: (\d+) trials \(([^)]*)\)", body)
    pending = summary.get("pending_trials") or []
    if m or pending:
        listed = m[2].split(", ") if m else []
        line = body[: m.start()].count("\n") + 1 if m else 0
        add(
            figures,
            page,
            line,
            "trials left out",
            m[1] if m else None,
            len(listed),
            "the names listed",
        )
        absent = all(not (ROOT / folder / f"{n}.json").exists() for n in listed)
        add(
            figures,
            page,
            line,
            "left-out trials have no results file",
            m[0][:60] if m else None,
            absent,
            folder,
        )
        add(
            figures,
            page,
            line,
            "left-out trials as summary.json",
            m[0][:60] if m else None,
            listed == pending,
            f"{folder}/summary.json",
        )
    for env, recipe in summary["recipes"].items():
        section = re.search(rf"^### {re.escape(env)}\n([\s\S]*?)(?=^#|\Z)", body, re.M)
        if section is None:
            add(figures, page, 0, f"{env} recipe", None, env, f"{folder}/summary.json")
            continue
        text, base = section[1], body[: section.start(1)].count("\n") + 1
        medium = recipe["medium_checkpoint"]
        level = medium["level"]
        source = f"{folder}/summary.json recipes[{env}]"
        rules = {
            "medium checkpoint: env step #, eval return # (normalised #)": [
                medium["checkpoint_env_step"],
                medium["eval_return"],
                medium["normalised_score"],
            ],
            "at or above # = # + # x (# - #)": [
                medium["threshold"],
                level["low"],
                medium["fraction"],
                level["expert"],
                level["low"],
            ],
            "source run: SAC, seed #": [recipe["source_seed"]],
            "checkpointed every #": [recipe["source_checkpoint_every"]],
        }
        if "source_env_steps" in recipe:
            rules["trained to env step # (at most #"] = [
                recipe["source_env_steps"],
                recipe["source_steps"],
            ]
        else:  # the older recipe line: the run's budget, which it ran to
            rules["SAC, seed #, # env steps"] = [recipe["source_seed"], recipe["source_steps"]]
        for label, made_set in recipe["datasets"].items():
            rules[f"- {label}: `{made_set['dataset']}`, # steps, # episodes"] = [
                made_set["steps"],
                made_set["episodes"],
            ]
            shown = re.search(rf"- {re.escape(label)}: .*: `([^`]*)`", text)
            what = f"{env} recipe: {label} command"
            add(figures, page, base, what, shown and shown[1], made_set["command"], source)
        rules_in(figures, page, base, f"{env} recipe", text, rules, source)
    return figures


def offline_md() -> list[Figure]:
    return offline_page("results/offline/offline.md", "results/offline")


def offline_100k_md() -> list[Figure]:
    return offline_page("results/offline/pendulum-100k/offline.md", "results/offline/pendulum-100k")


def offline_dmc_md() -> list[Figure]:
    return offline_page("results/offline/dmc/offline.md", "results/offline/dmc")


# --------------------------------------------------------------------------- hand-copied tables

LEARNING = "results/learning"
#: the algorithms as pages name them
ALGO_NAMES = {"DecQN": "decqn", "SAC": "sac", "TD3": "td3", "REValueD": "revalued", "CQN": "cqn"}


def learning_finals(
    algo: str, env: str, step: int = 100_000, folder: str = LEARNING
) -> list[float]:
    found = runs(folder, algo, env)
    if not found:
        raise LookupError(f"no {algo} runs on {env} in {folder}/")
    return [at(r, step) for r in found]


def readme_results() -> list[Figure]:
    """README "Results": mean ± 95% interval at 100k per task and algorithm."""
    page = "README.md"
    t = table(page, "task", "DecQN", "SAC", "TD3", "REValueD", "CQN")
    figures: list[Figure] = []
    for line, row in t.rows:
        env = row[0].strip("`")
        for name, cell in zip(t.header[1:], row[1:], strict=True):
            algo = ALGO_NAMES.get(name, name)
            source = f"{LEARNING}/{algo}__{safe(env)}__s*.json at 100k"
            if not seed_files(LEARNING, algo, env):
                add(figures, page, line, f"{env} {name}", cell, None, source)
                continue
            ci_figures(
                figures, page, line, f"{env} {name}", cell, learning_finals(algo, env), source
            )
    return figures


def docs_algorithm_tables() -> list[Figure]:
    """docs/sac.md and docs/td3.md: "mean ± half (seed 0, seed 1, seed 2)" at 100k per task."""
    figures: list[Figure] = []
    for algo in ("sac", "td3"):
        page = f"docs/{algo}.md"
        t = table(page, "task", "eval return at 100k")
        for line, (task, cell) in t.rows:
            env = task.strip("`")
            source = f"{LEARNING}/{algo}__{safe(env)}__s*.json at 100k"
            m = re.fullmatch(r"(.+) \((.+)\)", cell)
            if not seed_files(LEARNING, algo, env) or m is None:
                add(figures, page, line, env, cell, None, source)
                continue
            values = learning_finals(algo, env)
            ci_figures(figures, page, line, env, m[1], values, source)
            list_figures(figures, page, line, f"{env} per seed", m[2], values, source)
    return figures


def results_vector_table() -> list[Figure]:
    """results/README.md, DecQN with 8 environments against 1."""
    page = "results/README.md"
    t = table(page, "task", "environments", "seeds", "per seed")
    figures: list[Figure] = []
    for line, (task, envs, seeds, cell, per_seed) in t.rows:
        env = f"dmc:{task}"
        folder = {
            "8 (this run)": "results/learning-vector",
            "1 ([learning.md](learning.md))": LEARNING,
        }.get(envs)
        if folder is None or not seed_files(folder, "decqn", env):
            add(figures, page, line, f"{task} {envs}", cell, None, "no results folder")
            continue
        found = runs(folder, "decqn", env)
        source = f"{folder}/decqn__{safe(env)}__s*.json at 100k"
        num_envs = {r["config"]["train"].get("num_envs", 1) for r in found}
        add(
            figures,
            page,
            line,
            f"{task} {envs}: environments",
            envs.split()[0],
            num_envs.pop() if len(num_envs) == 1 else None,
            source,
        )
        add(figures, page, line, f"{task} {envs}: seeds", seeds, len(found), source)
        values = [at(r, 100_000) for r in found]
        ci_figures(figures, page, line, f"{task} {envs}", cell, values, source)
        list_figures(figures, page, line, f"{task} {envs}: per seed", per_seed, values, source)
    # "On both tasks the 8-environment mean falls inside the 1-environment interval."
    inside = []
    for env in ("dmc:cheetah-run", "dmc:walker-walk"):
        mean8 = np.mean([at(r, 100_000) for r in runs("results/learning-vector", "decqn", env)])
        mean1, half1 = mean_ci(learning_finals("decqn", env))
        inside.append(abs(mean8 - mean1) <= half1)
    statement(
        figures,
        page,
        "8 environments inside 1's interval",
        "On both tasks the 8-environment mean falls inside the 1-environment interval.",
        all(inside),
        "results/learning-vector and results/learning at 100k",
    )
    return figures


def results_200k_table() -> list[Figure]:
    """results/README.md, DecQN walker-walk seed 0 to 200k: each evaluation, mean and range."""
    page = "results/README.md"
    path = f"{LEARNING}/decqn__dmc-walker-walk__s0.json"
    run = data(path)
    t = table(page, "env steps", "eval return (mean of 5)", "range over episodes")
    figures: list[Figure] = []
    seen = set()
    for line, (steps, mean, spread) in t.rows:
        step = int(steps.replace(",", ""))
        seen.add(step)
        found = [p for p in run["curve"] if p["env_step"] == step]
        if not found:
            add(figures, page, line, f"{steps} steps", mean, None, path)
            continue
        p = found[0]
        episodes = re.search(r"mean of (\d+)", t.header[1])
        shown = episodes and episodes[1]
        add(figures, page, line, f"{steps} steps: episodes", shown, len(p["eval_returns"]), path)
        add(figures, page, line, f"{steps} steps: mean", mean, p["eval_return"], path)
        low, high = re.split(r"\s+\u2013\s+", spread)
        add(
            figures, page, line, f"{steps} steps: lowest episode", low, min(p["eval_returns"]), path
        )
        add(
            figures,
            page,
            line,
            f"{steps} steps: highest episode",
            high,
            max(p["eval_returns"]),
            path,
        )
    for p in run["curve"]:
        if p["env_step"] not in seen:
            add(
                figures, page, t.line, f"{p['env_step']:,} steps: row", None, p["eval_return"], path
            )
    return figures


MARL_JSON = "bench/results/marl-{side}-mpe-{algo}{tail}.json"


def marl_returns(side: str, algo: str) -> list[float]:
    """Greedy test returns per seed at 2M steps on MPE simple spread: JaxMARL's runs once per
    seed, factorl's three seeds side by side (commit 69f9919)."""
    if side == "jaxmarl":
        rounds = data(MARL_JSON.format(side="jaxmarl", algo=algo, tail=""))["rounds"]
    else:
        rounds = data(MARL_JSON.format(side="factorl", algo=algo, tail="-3seeds-69f9919"))["rounds"]
    (only,) = rounds
    return [float(x) for x in only[side]["test_return_per_seed"]]


def marl_speeds(side: str, algo: str) -> list[float]:
    """env steps/s after compile of seed 0 alone, per round, commit 69f9919."""
    rounds = data(MARL_JSON.format(side="jaxmarl", algo=algo, tail="-69f9919"))["rounds"]
    return [float(r[side]["env_steps_per_s_after_compile"]) for r in rounds]


def speed_list(figures, page, line, what, text, speeds, source) -> None:
    """ "17.1k, 19.4k" or "17.1k / 19.4k" against env steps/s."""
    shown = re.split(r",\s*|\s*/\s*", text.strip())
    if len(shown) != len(speeds) or not all(s.endswith("k") for s in shown):
        add(figures, page, line, what, text, None, source, f"expected {len(speeds)} figures in k")
        return
    for i, (s, v) in enumerate(zip(shown, speeds, strict=True)):
        add(figures, page, line, f"{what} [{i}]", s[:-1], v / 1000, source)


def marl_tables() -> list[Figure]:
    """The MPE simple spread comparison with JaxMARL in README.md and results/README.md."""
    figures: list[Figure] = []
    page = "README.md"
    t = table(page, "JaxMARL return (per seed)", "factorl return (per seed)")
    for line, (name, jm, fl, jm_speed, fl_speed) in t.rows:
        algo = name.lower()
        for side, cell in (("jaxmarl", jm), ("factorl", fl)):
            source = f"bench/results/marl-{side}-mpe-{algo}*.json"
            m = re.fullmatch(rf"({NUMBER}) \((.+)\)", cell)
            values = marl_returns(side, algo)
            if m is None:
                add(figures, page, line, f"{name} {side} return", cell, None, source)
                continue
            add(figures, page, line, f"{name} {side} mean return", m[1], np.mean(values), source)
            list_figures(
                figures, page, line, f"{name} {side} return per seed", m[2], values, source
            )
        for side, cell in (("jaxmarl", jm_speed), ("factorl", fl_speed)):
            speed_list(
                figures,
                page,
                line,
                f"{name} {side} env steps/s",
                cell,
                marl_speeds(side, algo),
                f"bench/results/marl-jaxmarl-mpe-{algo}-69f9919.json",
            )
    page = "results/README.md"
    t = table(page, "greedy test return, seeds 0 / 1 / 2", "mean", "env steps/s after compile")
    for line, (name, per_seed, mean, speeds) in t.rows:
        side, algo = name.split()[0].lower(), name.split()[1].lower()
        values = marl_returns(side, algo)
        source = f"bench/results/marl-{side}-mpe-{algo}*.json"
        list_figures(figures, page, line, f"{name} return per seed", per_seed, values, source)
        add(figures, page, line, f"{name} mean return", mean, np.mean(values), source)
        speed_list(
            figures,
            page,
            line,
            f"{name} env steps/s",
            speeds,
            marl_speeds(side, algo),
            f"bench/results/marl-jaxmarl-mpe-{algo}-69f9919.json",
        )
    return figures


def covered(text: str, spans: list[tuple[int, int]], page: str) -> list[tuple[int, str]]:
    """The numbers of `text` outside `spans` and outside the page's UNTRACED fragments: figures
    with nothing behind them. (start, number) each."""
    excused = []
    for entry_page, fragment, _ in UNTRACED:
        if entry_page == page:
            excused += [(m.start(), m.end()) for m in template(fragment).finditer(text)]
    loose = []
    for m in re.finditer(NUMBER, text):
        start = m.start() + (1 if m[0].startswith("-") else 0)
        if not any(a < m.end() and start < b for a, b in spans + excused):
            loose.append((m.start(), m[0]))
    return loose


def rules_in(figures, page, line, what, text, rules, source, *, every_number=False) -> None:
    """The numbers of `text` (a table cell, a section; `line` its first line) by `rules`: plain
    text with `#` for each number, found once (see `template`) -> the numbers' values, in order.
    With `every_number`, any other number in `text` fails (a figure with nothing behind it)."""
    spans = []
    for rule, values in rules.items():
        parts = rule.split("#")
        text_rule = "".join(f"{part}{{n{i}}}" for i, part in enumerate(parts[:-1])) + parts[-1]
        hits = list(template(text_rule).finditer(text))
        if len(hits) != 1 or len(values) != rule.count("#"):
            error = f"found {len(hits)} times in {text[:80]!r}"
            add(figures, page, line, f"{what}: {rule}", None, values, source, error)
            continue
        for i, value in enumerate(values):
            spans.append(hits[0].span(f"n{i}"))
            at_line = line + text[: hits[0].start(f"n{i}")].count("\n")
            add(figures, page, at_line, f"{what}: {rule} [{i}]", hits[0][f"n{i}"], value, source)
    if every_number:
        for _, loose in covered(text, spans, page):
            add(figures, page, line, f"{what}: {loose}", loose, None, source)


def readme_throughput() -> list[Figure]:
    """README "Throughput": each figure against the bench/results file its row links (and the
    processor the row names, where the file records one)."""
    page = "README.md"
    t = table(page, "what", "figure", "machine", "JSON")
    figures: list[Figure] = []

    def res(name: str) -> dict[str, Any]:
        return data(f"bench/results/{name}.json")["results"]

    value4, sac_td3 = (
        res("throughput-value4-cheetah-run"),
        res("throughput-sac-td3-plain-halfcheetah"),
    )
    plain = data("bench/results/throughput-sac-td3-plain-halfcheetah.json")["plain_td3"]
    vector = data("bench/results/host-vector-decqn-dmc-cheetah-run.json")
    session = data("bench/results/host-runner-session-decqn-cheetah-run.json")
    floors = res("throughput-cqn-decqn-walker-walk")
    arsq = {w: res(f"throughput-arsq-cqn-walker-walk-w{w}")["arsq"] for w in (512, 256)}
    device = res("device-gymnax-pendulum")
    #: the row (by words of its "what") -> (the files it must link, rules for its figure)
    rows: dict[str, tuple[list[str], dict[str, list[Any]]]] = {
        "training loop, `dmc:cheetah-run`": (
            ["throughput-value4-cheetah-run"],
            {
                "DecQN #": [value4["decqn"]["loop_sps"]],
                "REValueD (K = #) #": [
                    value4["revalued"]["agent_config"]["ensemble_size"],
                    value4["revalued"]["loop_sps"],
                ],
                "CQN #": [value4["cqn"]["loop_sps"]],
                "CQN-AS (width #) #": [
                    value4["cqn_as"]["agent_config"]["width"],
                    value4["cqn_as"]["loop_sps"],
                ],
            },
        ),
        "training loop, `gym:HalfCheetah-v5`": (
            ["throughput-sac-td3-plain-halfcheetah"],
            {"SAC #": [sac_td3["sac"]["loop_sps"]], "TD3 #": [sac_td3["td3"]["loop_sps"]]},
        ),
        "TD3 loop against a plain": (
            ["throughput-sac-td3-plain-halfcheetah"],
            {"#x": [plain["learning_sps_ratio"]]},
        ),
        "N = 8 against N = 1": (
            ["host-vector-decqn-dmc-cheetah-run"],
            {
                "#x env steps/s": [
                    vector["n8_vs_n1_new"]["medians"]["A_over_B_env_steps_per_s_pairwise_median"]
                ]
            },
        ),
        "N = 1 against its single-environment predecessor": (
            ["host-vector-decqn-dmc-cheetah-run"],
            {
                "#x over # pairs": [
                    vector["n1_new_vs_old_combined"]["new_over_old_pairwise_median"],
                    vector["n1_new_vs_old_combined"]["pairs"],
                ]
            },
        ),
        "shared run session": (
            ["host-runner-session-decqn-cheetah-run"],
            {
                "#x over # pairs (#-#:": [
                    session["summary"]["new_over_old_pairwise_median"],
                    len(session["pairs"]),
                    session["summary"]["new_over_old_pairwise_min"],
                    session["summary"]["new_over_old_pairwise_max"],
                ]
            },
        ),
        "learner update, `dmc:walker-walk`": (
            ["throughput-cqn-decqn-walker-walk", "throughput-arsq-cqn-walker-walk-w512"],
            {
                "DecQN #": [floors["decqn"]["update_ms"]],
                "CQN #": [floors["cqn"]["update_ms"]],
                # width 256: not linked from the row, but committed beside it
                "ARSQ # (width #; # at width #)": [
                    arsq[512]["update_ms"],
                    arsq[512]["agent_config"]["width"],
                    arsq[256]["update_ms"],
                    arsq[256]["agent_config"]["width"],
                ],
            },
        ),
        "device runner, `gymnax:Pendulum-v1`": (
            ["device-gymnax-pendulum"],
            {
                "#x (DecQN)": [device["decqn"]["8"]["wall_ratio_to_one_seed"]],
                "#x (SAC)": [device["sac"]["8"]["wall_ratio_to_one_seed"]],
            },
        ),
        "device runner, `playground:CheetahRun`": (
            ["playground-cheetah-run", "playground-cheetah-run-decqn-n64-uniform"],
            {
                "random actions #": [
                    res("playground-cheetah-run")["random"]["N=64"]["while"]["env_steps_per_s"]
                ],
                "DecQN learning #": [
                    res("playground-cheetah-run-decqn-n64-uniform")["decqn"]["N=64"]["while"][
                        "env_steps_per_s"
                    ]
                ],
            },
        ),
    }
    for line, (what, cell, machine, links) in t.rows:
        linked = re.findall(r"\(bench/results/([\w.-]+)\.json\)", links)
        hits = [k for k in rows if k in what]
        if len(hits) != 1:
            add(figures, page, line, what, cell, None, f"{linked}")
            continue
        files, rules = rows[hits[0]]
        for name in files:
            add(figures, page, line, f"{what}: links {name}", links, name in linked, "JSON")
        rules_in(figures, page, line, what, cell, rules, ", ".join(files), every_number=True)
        for name in linked:
            info = data(f"bench/results/{name}.json").get("machine")
            cpu = (
                (info.get("processor") or info.get("cpu_model")) if isinstance(info, dict) else None
            )
            for word in ("AMD EPYC", "Intel Xeon"):
                if word in machine and cpu:
                    holds = all(w in cpu for w in word.split())
                    source = f"bench/results/{name}.json machine"
                    add(figures, page, line, f"{what}: machine of {name}", machine, holds, source)
    return figures


def offline_readme_tables() -> list[Figure]:
    """results/offline/README.md: the 30k and 100k tables (offline-phase end and final eval)."""
    page = "results/offline/README.md"
    proto = bench_offline()
    figures: list[Figure] = []
    for folder, words in (
        ("results/offline", "final eval (30k env steps)"),
        ("results/offline/pendulum-100k", "final eval (100k env steps)"),
    ):
        t = table(page, "algorithm", "dataset", words)
        rows = {(r["algo"], r["dataset"]): r for r in offline_rows(folder)}
        offline_steps = {
            r["config"]["data"]["offline_steps"]
            for row in rows.values()
            for r in row["runs"]
            if row["dataset"] != proto.ONLINE
        }
        final_steps = {row["final_env_step"] for row in rows.values()}
        m = re.search(rf"\({N}k updates, 0 env steps\)", t.header[2])
        add(
            figures,
            page,
            t.line,
            f"{folder}: offline updates",
            m and m[1],
            offline_steps.pop() / 1000 if len(offline_steps) == 1 else None,
            folder,
        )
        m = re.search(rf"\({N}k env steps\)", t.header[3])
        add(
            figures,
            page,
            t.line,
            f"{folder}: final env steps",
            m and m[1],
            final_steps.pop() / 1000 if len(final_steps) == 1 else None,
            folder,
        )
        seen = set()
        for line, (algo, dataset, offline, last) in t.rows:
            key = (algo, proto.ONLINE if dataset == "online only" else dataset)
            seen.add(key)
            row = rows.get(key)
            what = f"{folder} {algo} {dataset}"
            if row is None:
                add(figures, page, line, what, last, None, folder)
                continue
            source = f"{folder}/{algo}__*.json ({dataset})"
            add(
                figures,
                page,
                line,
                f"{what}: offline-phase end",
                offline,
                proto._text(row["offline_end_eval"]),
                source,
            )
            add(figures, page, line, f"{what}: final", last, proto._text(row["final_eval"]), source)
        for key in sorted(rows.keys() - seen):
            add(figures, page, t.line, f"{folder} {' '.join(key)}: row", None, key, folder)
    return figures


def dmc_rows() -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(r["env"], r["algo"], r["dataset"]): r for r in offline_rows("results/offline/dmc")}


def offline_dmc_readme_table() -> list[Figure]:
    """results/offline/dmc/README.md "So far": after the offline phase, at 100k, per seed."""
    page = "results/offline/dmc/README.md"
    folder = "results/offline/dmc"
    summary = data(f"{folder}/summary.json")
    rows = dmc_rows()
    t = table(page, "task", "algorithm", "data", "after the offline phase", "per seed at 100k")
    figures: list[Figure] = []
    seen = set()
    for line, (task, name, dataset, offline, last, per_seed) in t.rows:
        algo = name.lower()
        what = f"{task} {name} {dataset}"
        if name == "ARSQ" and offline == "not run yet":
            ran = [p.name for p in (ROOT / folder).glob("arsq__*.json")]
            add(figures, page, line, what, offline, not ran, f"{folder}/arsq__*.json")
            continue
        if dataset == "the rest":
            m = re.fullmatch(
                rf"running \(seeds? {N}(?:-{N})? of (walker-walk|cheetah-run) "
                r"(medium|medium-replay) next\)",
                offline,
            )
            first, last_seed = (int(m[1]), int(m[2] or m[1])) if m else (0, -1)
            task_next, data_next = (m[3], m[4]) if m else ("", "")
            waiting = [
                f"{folder}/cqn__dmc-{task_next}__dataset=dmc-{task_next}-{data_next}-v0__s{s}.json"
                for s in range(first, last_seed + 1)
            ]
            add(
                figures,
                page,
                line,
                what,
                offline,
                bool(m) and not any((ROOT / w).exists() for w in waiting),
                "those seeds' results files absent",
            )
            continue
        env = f"dmc:{task}"
        m = re.fullmatch(rf"(medium-replay|medium|none) \((?:{N}([kM]) steps|online)\)", dataset)
        label = None if m is None else {"none": "online"}.get(m[1], m[1])
        row = rows.get((env, algo, label))
        if row is None:
            add(figures, page, line, what, last, None, folder)
            continue
        seen.add((env, algo, label))
        source = f"{folder}/{algo}__{safe(env)}__*.json ({label})"
        if m[2]:
            steps = summary["recipes"][env]["datasets"][label]["steps"]
            add(
                figures,
                page,
                line,
                f"{what}: dataset steps",
                m[2],
                steps / {"k": 1e3, "M": 1e6}[m[3]],
                f"{folder}/summary.json",
            )
        for col, cell in (("after the offline phase", offline), ("at 100k", last)):
            field = "offline_end_eval" if col.startswith("after") else "final_eval"
            cell_value = row[field]
            if cell_value is None:
                add(figures, page, line, f"{what}: {col}", cell, "-", source)
            elif len(row["seeds"]) == 1:
                m1 = re.fullmatch(rf"{N} \(seed {N} only\)", cell)
                add(figures, page, line, f"{what}: {col}", m1 and m1[1], cell_value["mean"], source)
                add(
                    figures,
                    page,
                    line,
                    f"{what}: {col}, the seed",
                    m1 and m1[2],
                    row["seeds"][0],
                    source,
                )
            else:
                # a row with fewer than three seeds so far names them: "(seeds 0-1)"
                m2 = re.fullmatch(rf"(.+?) \(seeds {N}-{N}\)", cell)
                if m2 or len(row["seeds"]) < 3:
                    shown = m2 and f"{m2[2]}-{m2[3]}"
                    want = f"{min(row['seeds'])}-{max(row['seeds'])}"
                    add(figures, page, line, f"{what}: {col}, seeds", shown, want, source)
                    cell = m2[1] if m2 else cell
                ci_figures(
                    figures, page, line, f"{what}: {col}", cell, cell_value["per_seed"], source
                )
        if row["final_env_step"] != 100_000:
            add(figures, page, line, f"{what}: at 100k", last, False, source)
        values = dict(zip(row["seeds"], row["final_eval"]["per_seed"], strict=True))
        slots = [c.strip() for c in per_seed.split(",")]
        for seed in sorted(set(values) - set(range(len(slots)))):
            add(figures, page, line, f"{what}: seed {seed} at 100k", None, values[seed], source)
        for seed, s in enumerate(slots):
            what_seed = f"{what}: seed {seed} at 100k"
            if s != "-" and seed in values:
                add(figures, page, line, what_seed, s, values[seed], source)
            else:  # a seed not run yet shows "-"
                want = f"{values[seed]:.1f}" if seed in values else "-"
                add(figures, page, line, what_seed, s, want, source)
    for key in sorted(rows.keys() - seen):
        add(figures, page, t.line, f"{' '.join(key)}: row", None, key, folder)
    return figures


# ------------------------------------------------------------------------------------ sentences


def learning_run(algo: str, env: str, seed: int, folder: str = LEARNING) -> dict[str, Any]:
    return data(f"{folder}/{algo}__{safe(env)}__s{seed}.json")


def hours(run: dict[str, Any]) -> float:
    return run["wall_time_s"] / 3600


def ratios(algo: str, tail: str) -> list[float]:
    """factorl's env steps/s over JaxMARL's, round by round (pair by pair)."""
    rounds = data(MARL_JSON.format(side="jaxmarl", algo=algo, tail=tail))["rounds"]
    return [
        r["factorl"]["env_steps_per_s_after_compile"]
        / r["jaxmarl"]["env_steps_per_s_after_compile"]
        for r in rounds
    ]


def marl_finals(algo: str, env: str, key: str = "eval_return") -> list[float]:
    return [final(r, key) for r in runs("results/marl", algo, env)]


def marl_mean_at(algo: str, env: str, step: int, key: str = "eval_return") -> float:
    return float(np.mean([at(r, step, key) for r in runs("results/marl", algo, env)]))


MPE = "jaxmarl:MPE_simple_spread_v3"
SMAX = "jaxmarl:smax-3m"


def jaxmarl_qmix_1e7() -> list[float]:
    return [
        float(
            data(f"bench/results/marl-jaxmarl-mpe-qmix-1e7-s{s}.json")["rounds"][0]["jaxmarl"][
                "test_return"
            ]
        )
        for s in range(5)
    ]


def jaxmarl_curve(seed: int) -> dict[int, list[float]]:
    jm = data(f"bench/results/marl-jaxmarl-mpe-qmix-1e7-s{seed}.json")["rounds"][0]["jaxmarl"]
    return {row[0]: row[1:] for row in jm["curve"]}


def near(curve: dict[int, list[float]], step: int) -> list[float]:
    """The curve's test nearest `step` (JaxMARL tests every 499,824 env steps)."""
    return curve[min(curve, key=lambda s: abs(s - step))]


def readme_sentences() -> list[Figure]:
    page = "README.md"
    figures: list[Figure] = []
    vdn, qmix = mean_ci(marl_finals("vdn", MPE)), mean_ci(marl_finals("qmix", MPE))
    jm = mean_ci(jaxmarl_qmix_1e7())
    sentence(
        figures,
        page,
        "MPE 1e7",
        "VDN's three seeds end at a greedy test return of {vm} ± {vh}",
        {"vm": vdn[0], "vh": vdn[1]},
        "results/marl/vdn__jaxmarl-MPE*",
    )
    sentence(
        figures,
        page,
        "MPE 1e7 QMIX",
        "QMIX's at {qm} ± {qh}, and JaxMARL's own QMIX over five seeds at {jm} ± {jh}:",
        {"qm": qmix[0], "qh": qmix[1], "jm": jm[0], "jh": jm[1]},
        "results/marl/qmix__jaxmarl-MPE*, bench/results/marl-jaxmarl-mpe-qmix-1e7-s*.json",
    )
    wv, wq = (
        mean_ci(marl_finals("vdn", SMAX, "eval_win_rate")),
        mean_ci(marl_finals("qmix", SMAX, "eval_win_rate")),
    )
    sentence(
        figures,
        page,
        "SMAX win rates",
        "VDN's three seeds win {vm} ± {vh} of their greedy test battles after 2M env steps and "
        "QMIX's {qm} ± {qh}",
        {"vm": wv[0], "vh": wv[1], "qm": wq[0], "qh": wq[1]},
        "results/marl/*__jaxmarl-smax-3m__s*.json",
    )
    rv, rq = ratios("vdn", "-69f9919"), ratios("qmix", "-69f9919")
    sentence(
        figures,
        page,
        "MPE speed ratios",
        "one seed trains at {v1}-{v2}x (VDN) and {q1}-{q2}x (QMIX) JaxMARL's env steps/s",
        {"v1": min(rv), "v2": max(rv), "q1": min(rq), "q2": max(rq)},
        "bench/results/marl-jaxmarl-mpe-*-69f9919.json",
    )
    offline_sentence(figures, page)
    return figures


def offline_sentence(figures, page) -> None:
    """The offline-to-online summary the README and results/README.md give."""
    rows = dmc_rows()

    def f(env, algo, label, field="final_eval"):
        return rows[(f"dmc:{env}", algo, label)][field]["mean"]

    values = {
        "ww_m": f("walker-walk", "decqn", "medium"),
        "ww_mr": f("walker-walk", "decqn", "medium-replay"),
        "ww_cqn": f("walker-walk", "cqn", "online"),
        "cr_m": f("cheetah-run", "decqn", "medium"),
        "cr_mr": f("cheetah-run", "decqn", "medium-replay"),
        "cr_cqn": f("cheetah-run", "cqn", "online"),
    }
    cqn = rows[("dmc:walker-walk", "cqn", "medium")]
    # the protocol's seeds, which CQN's row (quoted as a whole) must have
    n_seeds = len(rows[("dmc:walker-walk", "decqn", "medium")]["seeds"])
    source = "results/offline/dmc/*.json"
    if page == "README.md":
        sentence(
            figures,
            page,
            "offline dmc",
            "DecQN from the datasets ends above online CQN at 100k env steps (walker-walk {ww_m} "
            "and {ww_mr} against {ww_cqn}, cheetah-run {cr_m} and {cr_mr} against {cr_cqn}, {n} "
            "seeds); CQN from walker-walk's medium dataset ends at {cqn_f} ({cqn_o} after the "
            "offline phase);",
            {
                **values,
                "n": len(rows[("dmc:walker-walk", "decqn", "medium")]["seeds"]),
                "cqn_f": cqn["final_eval"]["mean"],
                "cqn_o": cqn["offline_end_eval"]["mean"],
            },
            source,
        )
        above = all(
            values[f"{e}_{d}"] > values[f"{e}_cqn"] for e in ("ww", "cr") for d in ("m", "mr")
        )
        statement(
            figures,
            page,
            "offline dmc: DecQN above CQN",
            "DecQN from the datasets ends above online CQN at 100k env steps",
            above,
            source,
        )
        if len(cqn["seeds"]) != n_seeds:
            add(figures, page, 0, "offline dmc: CQN's row has every seed", "3 seeds", False, source)
        return
    cis = {
        k: mean_ci(rows[key]["final_eval"]["per_seed"])
        for k, key in (
            ("ww_m", ("dmc:walker-walk", "decqn", "medium")),
            ("ww_mr", ("dmc:walker-walk", "decqn", "medium-replay")),
            ("ww_cqn", ("dmc:walker-walk", "cqn", "online")),
            ("cr_m", ("dmc:cheetah-run", "decqn", "medium")),
            ("cr_mr", ("dmc:cheetah-run", "decqn", "medium-replay")),
            ("cr_cqn", ("dmc:cheetah-run", "cqn", "online")),
        )
    }
    decqn_medium_offline = rows[("dmc:walker-walk", "decqn", "medium")]["offline_end_eval"][
        "per_seed"
    ]
    steps = {
        (env, label): data("results/offline/dmc/summary.json")["recipes"][f"dmc:{env}"]["datasets"][
            label
        ]["steps"]
        for env in ("walker-walk", "cheetah-run")
        for label, _ in bench_offline().DATASETS
    }
    sentence(
        figures,
        page,
        "offline dmc",
        "on `dmc:walker-walk`, DecQN from the medium ({wsm}M steps) and medium-replay ({wsr}k) "
        "datasets reaches {ww_m} ± {ww_mh} and {ww_mr} ± {ww_mrh} at 100k env steps, against "
        "online CQN's {ww_cqn} ± {ww_cqnh}; on `dmc:cheetah-run`, DecQN from medium ({csm}M) and "
        "medium-replay ({csr}k) reaches {cr_m} ± {cr_mh} and {cr_mr} ± {cr_mrh}, against online "
        "CQN's {cr_cqn} ± {cr_cqnh} (seeds 0-2). CQN from walker-walk's medium dataset: {o} ± "
        "{oh} after the offline phase (DecQN's: {doff} ± {doffh}), {f} ± {fh} at 100k (seeds "
        "{first}-{last}).",
        {
            **{k: v[0] for k, v in cis.items()},
            **{f"{k}h": v[1] for k, v in cis.items()},
            "wsm": steps[("walker-walk", "medium")] / 1e6,
            "wsr": steps[("walker-walk", "medium-replay")] / 1e3,
            "csm": steps[("cheetah-run", "medium")] / 1e6,
            "csr": steps[("cheetah-run", "medium-replay")] / 1e3,
            **dict(zip(("o", "oh"), mean_ci(cqn["offline_end_eval"]["per_seed"]), strict=True)),
            **dict(zip(("f", "fh"), mean_ci(cqn["final_eval"]["per_seed"]), strict=True)),
            "first": min(cqn["seeds"]),
            "last": max(cqn["seeds"]),
            **dict(zip(("doff", "doffh"), mean_ci(decqn_medium_offline), strict=True)),
        },
        source + ", results/offline/dmc/summary.json",
    )


def results_readme_sentences() -> list[Figure]:
    page = "results/README.md"
    figures: list[Figure] = []
    s1, s2 = (learning_run("decqn", "dmc:cheetah-run", s) for s in (1, 2))
    sentence(
        figures,
        page,
        "DecQN cheetah-run seeds 1-2 wall time",
        "DecQN cheetah-run seeds 1 and 2, which had it mostly alone, took {a}-{b} h.",
        {"a": min(hours(s1), hours(s2)), "b": max(hours(s1), hours(s2))},
        f"{LEARNING}/decqn__dmc-cheetah-run__s1/s2.json",
    )
    s0 = learning_run("decqn", "dmc:walker-walk", 0)
    sentence(
        figures,
        page,
        "200k run at 100k",
        "is not a like-for-like comparison with our {ours}:",
        {"ours": at(s0, 100_000)},
        f"{LEARNING}/decqn__dmc-walker-walk__s0.json",
    )
    sentence(
        figures,
        page,
        "200k run wall time",
        "The wall time ({h} h) overstates the cost",
        {"h": hours(s0)},
        f"{LEARNING}/decqn__dmc-walker-walk__s0.json",
    )
    path = "results/playground-cheetah-run/decqn__playground-CheetahRun__s0.json"
    pg = data(path)
    stop = re.search(rf"{N} min after its start, at env step (\d+)", pg["command"])
    first = re.search(r"stopped at env step (\d+)", pg["note"])
    sentence(
        figures,
        page,
        "playground run",
        "One seed, {envs} environments, DecQN's reference settings but uniform replay, commit "
        "99790c6, the shared 2-core CPU; stopped by hand after {mins} min at env step {step}. "
        "Greedy evaluation ({eps} episodes) went from {a} at {a_step} steps to {b} at {b_step} "
        "and {c} at {c_step}.",
        {
            "envs": pg["config"]["train"]["num_envs"],
            "mins": float(stop[1]),
            "step": int(stop[2]),
            "eps": len(pg["curve"][0]["eval_returns"]),
            "a": pg["curve"][0]["eval_return"],
            "a_step": pg["curve"][0]["env_step"],
            "b": pg["curve"][-2]["eval_return"],
            "b_step": pg["curve"][-2]["env_step"],
            "c": pg["curve"][-1]["eval_return"],
            "c_step": pg["curve"][-1]["env_step"],
        },
        f"{path} (curve, config, command)",
    )
    add(
        figures,
        page,
        0,
        "playground run: checkpoint step",
        str(int(stop[2])),
        str(int(pg["checkpoint"].rsplit("_", 1)[1])),
        f"{path} checkpoint",
    )
    sentence(
        figures,
        page,
        "playground first attempt",
        "the first attempt stopped at env step {step} on a",
        {"step": int(first[1])},
        f"{path} note",
    )
    rv, rq = ratios("vdn", "-69f9919"), ratios("qmix", "-69f9919")
    old_vdn = ratios("vdn", "-18fa82b") + ratios("vdn", "-944e859")
    (old_qmix,) = ratios("qmix", "-f3c5387")
    bdf = {
        a: data(MARL_JSON.format(side="jaxmarl", algo=a, tail=""))["rounds"][0]["factorl"][
            "test_return"
        ]
        for a in ("vdn", "qmix")
    }
    sentence(
        figures,
        page,
        "MPE speed",
        "it trains {v1}-{v2}x (VDN) and {q1}-{q2}x (QMIX) as many env steps per second, pair by "
        "pair. Before 69f9919 ... factorl ran at {o1}-{o2}x (VDN) and {oq}x (QMIX) JaxMARL's "
        "speed, with returns of {bv} and {bq} at bdf1240.",
        {
            "v1": min(rv),
            "v2": max(rv),
            "q1": min(rq),
            "q2": max(rq),
            "o1": min(old_vdn),
            "o2": max(old_vdn),
            "oq": old_qmix,
            "bv": bdf["vdn"],
            "bq": bdf["qmix"],
        },
        "bench/results/marl-jaxmarl-mpe-{vdn,qmix}{-69f9919,-18fa82b,-944e859,-f3c5387,}.json",
    )
    above = all(
        np.mean(marl_returns("factorl", a)) > np.mean(marl_returns("jaxmarl", a))
        for a in ("vdn", "qmix")
    )
    statement(
        figures,
        page,
        "MPE returns above JaxMARL's",
        "factorl's mean returns are above JaxMARL's",
        above,
        "bench/results/marl-*-mpe-*.json",
    )
    # VDN and QMIX to 1e7 on MPE
    vdn_runs = runs("results/marl", "vdn", MPE)
    cfg = vdn_runs[0]["config"]
    vdn = mean_ci(marl_finals("vdn", MPE))
    paused = re.search(
        r"paused \(SIGSTOP\) for about (\d+) minutes", " ".join(vdn_runs[0]["notes"])
    )
    sentence(
        figures,
        page,
        "VDN 1e7",
        "the learning rate decaying linearly over all {updates} updates), the three seeds in one "
        "device-runner program, greedy tests of {eps} episodes every {every}k steps, commit "
        "4686fad. Final greedy test return **{m} ± {h}** (mean ± 95% interval; seeds {s0}, {s1}, "
        "{s2}), from {a} at 500k and {b} at 2M.",
        {
            "updates": cfg["agent"]["lr_decay_steps"],
            "eps": cfg["runner"]["eval_episodes"],
            "every": cfg["runner"]["eval_every"] / 1000,
            "m": vdn[0],
            "h": vdn[1],
            **{f"s{i}": v for i, v in enumerate(marl_finals("vdn", MPE))},
            "a": marl_mean_at("vdn", MPE, 500_000),
            "b": marl_mean_at("vdn", MPE, 2_000_000),
        },
        "results/marl/vdn__jaxmarl-MPE_simple_spread_v3__s*.json",
    )
    sentence(
        figures,
        page,
        "VDN 1e7 pause",
        "the process was paused for about {mins} minutes",
        {"mins": int(paused[1])},
        "results/marl/vdn__jaxmarl-MPE_simple_spread_v3__s0.json notes",
    )
    qmix = mean_ci(marl_finals("qmix", MPE))
    sentence(
        figures,
        page,
        "QMIX 1e7",
        "Final greedy test return **{m} ± {h}** (seeds {s0}, {s1}, {s2}): seed 2 improved",
        {
            "m": qmix[0],
            "h": qmix[1],
            **{f"s{i}": v for i, v in enumerate(marl_finals("qmix", MPE))},
        },
        "results/marl/qmix__jaxmarl-MPE_simple_spread_v3__s*.json",
    )
    jm = jaxmarl_qmix_1e7()
    jm_ci = mean_ci(jm)
    s2, s3 = jaxmarl_curve(2), jaxmarl_curve(3)
    sentence(
        figures,
        page,
        "JaxMARL QMIX 1e7",
        "Its seeds 0 and 1 end at {j0} and {j1}; seeds 2-4, run with their curves kept "
        "(`--curves`), end at **{j2}**, **{j3}** and **{j4}**: seed 2 fell from {s2a} at 2.5M ... "
        "its mean Q drifting from {q_a} to {q_b}; ... seed 3 dipped to {s3a} at 5M ... Over its "
        "five seeds JaxMARL's final test return is **{m} ± {h}** (mean ± Student-t 95% interval), "
        "factorl's over three {fm} ± {fh}:",
        {
            **{f"j{i}": v for i, v in enumerate(jm)},
            "m": jm_ci[0],
            "h": jm_ci[1],
            "fm": qmix[0],
            "fh": qmix[1],
            "s2a": near(s2, 2_500_000)[0],
            "q_a": near(s2, 2_500_000)[1],
            "q_b": near(s2, 10_000_000)[1],
            "s3a": near(s3, 5_000_000)[0],
        },
        "bench/results/marl-jaxmarl-mpe-qmix-1e7-s*.json (test_return, curve), "
        "results/marl/qmix__*",
    )
    # SMAX
    for algo, text in (
        (
            "vdn",
            "Final greedy win rate **{m} ± {h}** (mean ± 95% interval; seeds {s0}, {s1}, {s2}), "
            "from {a} at 100k and {b} at 500k; test return {r1}-{r2}.",
        ),
        (
            "qmix",
            "final greedy win rate **{m} ± {h}** (seeds {s0}, {s1}, {s2}), from {a} at 100k and "
            "{b} at 500k; test return {r1} ± {r2}.",
        ),
    ):
        wins = marl_finals(algo, SMAX, "eval_win_rate")
        returns = marl_finals(algo, SMAX)
        ci = mean_ci(wins)
        r = (min(returns), max(returns)) if algo == "vdn" else mean_ci(returns)
        sentence(
            figures,
            page,
            f"{algo} SMAX",
            text,
            {
                "m": ci[0],
                "h": ci[1],
                **{f"s{i}": v for i, v in enumerate(wins)},
                "a": marl_mean_at(algo, SMAX, 100_000, "eval_win_rate"),
                "b": marl_mean_at(algo, SMAX, 500_000, "eval_win_rate"),
                "r1": r[0],
                "r2": r[1],
            },
            f"results/marl/{algo}__jaxmarl-smax-3m__s*.json",
        )
    smax_vdn = runs("results/marl", "vdn", SMAX)
    sentence(
        figures,
        page,
        "VDN SMAX wall time",
        "so the {h} h of wall time overstates the cost",
        {"h": hours(smax_vdn[0])},
        "results/marl/vdn__jaxmarl-smax-3m__s0.json",
    )
    agent = runs("results/marl", "qmix", SMAX)[0]["config"]["agent"]
    sentence(
        figures,
        page,
        "QMIX SMAX mixer",
        "SMAX mixer sizes {a} / {b})",
        {"a": agent["mixer_embed_dim"], "b": agent["hypernet_hidden"]},
        "results/marl/qmix__jaxmarl-smax-3m__s0.json config",
    )
    offline_sentence(figures, page)
    return figures


def docs_sentences() -> list[Figure]:
    figures: list[Figure] = []
    # docs/cqn.md: seed by seed, and over the seeds
    page = "docs/cqn.md"
    w = [learning_run("cqn", "dmc:walker-walk", s) for s in range(3)]
    c = [learning_run("cqn", "dmc:cheetah-run", s) for s in range(3)]
    src = f"{LEARNING}/cqn__dmc-*__s*.json"
    sentence(
        figures,
        page,
        "walker-walk seed 0",
        "greedy eval return (mean of 5 episodes) {a10} at 10k, {a50} at 50k, {a80} at 80k, {a90} "
        "at 90k and {a100} at 100k env steps, in {h} h of wall time",
        {**{f"a{k}": at(w[0], k * 1000) for k in (10, 50, 80, 90, 100)}, "h": hours(w[0])},
        src,
    )
    sentence(
        figures,
        page,
        "walker-walk seed 1",
        "Seed 1 reaches {a50} at 50k and {a100} at 100k, in {h} h, also shared.",
        {"a50": at(w[1], 50_000), "a100": at(w[1], 100_000), "h": hours(w[1])},
        src,
    )
    shared = re.search(r"Trained to ([\d,]+) steps", " ".join(w[2]["notes"]))
    sentence(
        figures,
        page,
        "walker-walk seed 2",
        "Seed 2 reaches {a50} at 50k and {a100} at 100k, in {h} h (shared to {shared} steps",
        {
            "a50": at(w[2], 50_000),
            "a100": at(w[2], 100_000),
            "h": hours(w[2]),
            "shared": int(shared[1].replace(",", "")),
        },
        src + " (notes)",
    )
    wm = mean_ci(at(r, 100_000) for r in w)
    sentence(
        figures,
        page,
        "walker-walk over seeds",
        "alone after). Over the three seeds: {m} ± {h} at 100k",
        {"m": wm[0], "h": wm[1]},
        src,
    )
    alone = re.search(r"alone and unpinned to ([\d,]+) steps", " ".join(c[0]["notes"]))
    sentence(
        figures,
        page,
        "cheetah-run seed 0",
        "seed 0: {a10} at 10k, {a50} at 50k, {a80} at 80k, {a90} at 90k and {a100} at 100k env "
        "steps, in {h} h (alone to {alone} steps",
        {
            **{f"a{k}": at(c[0], k * 1000) for k in (10, 50, 80, 90, 100)},
            "h": hours(c[0]),
            "alone": int(alone[1].replace(",", "")),
        },
        src + " (notes)",
    )
    sentence(
        figures,
        page,
        "cheetah-run seed 1",
        "Seed 1: {a50} at 50k and {a100} at 100k, in {h} h",
        {"a50": at(c[1], 50_000), "a100": at(c[1], 100_000), "h": hours(c[1])},
        src,
    )
    stopped = re.search(r"to ([\d,]+) steps, was stopped", " ".join(c[2]["notes"]))
    sentence(
        figures,
        page,
        "cheetah-run seed 2",
        "Seed 2: {a50} at 50k and {a100} at 100k, in {h} h (stopped at {stop} steps",
        {
            "a50": at(c[2], 50_000),
            "a100": at(c[2], 100_000),
            "h": hours(c[2]),
            "stop": int(stopped[1].replace(",", "")),
        },
        src + " (notes)",
    )
    cis = {a: mean_ci(learning_finals(a, "dmc:cheetah-run")) for a in ALGO_NAMES.values()}
    sentence(
        figures,
        page,
        "cheetah-run over seeds",
        "unit tests). Over the three seeds: {m} ± {h} at 100k",
        {"m": cis["cqn"][0], "h": cis["cqn"][1]},
        src,
    )
    sentence(
        figures,
        page,
        "cheetah-run others",
        "DecQN has {d} ± {dh}, SAC {s} ± {sh}, TD3 {t} ± {th} and REValueD {r} ± {rh}",
        {
            "d": cis["decqn"][0],
            "dh": cis["decqn"][1],
            "s": cis["sac"][0],
            "sh": cis["sac"][1],
            "t": cis["td3"][0],
            "th": cis["td3"][1],
            "r": cis["revalued"][0],
            "rh": cis["revalued"][1],
        },
        f"{LEARNING}/*__dmc-cheetah-run__s*.json",
    )

    def interval(a):
        return cis[a][0] - cis[a][1], cis[a][0] + cis[a][1]

    lo, hi = interval("cqn")
    holds = all(lo > interval(a)[1] for a in ("td3", "revalued")) and all(
        lo <= interval(a)[1] and interval(a)[0] <= hi for a in ("decqn", "sac")
    )
    statement(
        figures,
        page,
        "cheetah-run intervals",
        "CQN's interval lies above TD3's and REValueD's but overlaps DecQN's and SAC's",
        holds,
        f"{LEARNING}/*__dmc-cheetah-run__s*.json",
    )
    # docs/revalued.md
    page = "docs/revalued.md"
    w = [learning_run("revalued", "dmc:walker-walk", s) for s in range(3)]
    c = [learning_run("revalued", "dmc:cheetah-run", s) for s in range(3)]
    src = f"{LEARNING}/revalued__dmc-*__s*.json"
    wm, cm = mean_ci(at(r, 100_000) for r in w), mean_ci(at(r, 100_000) for r in c)
    sentence(
        figures,
        page,
        "walker-walk",
        "seeds 0, 1 and 2 reach greedy eval returns of {a0}, {a1} and {a2} at 100k env steps "
        "(mean of 5 episodes each; {m} ± {h} over the seeds, Student-t 95%), in {w0}, {w1} and "
        "{w2} h",
        {
            **{f"a{i}": at(r, 100_000) for i, r in enumerate(w)},
            "m": wm[0],
            "h": wm[1],
            **{f"w{i}": hours(r) for i, r in enumerate(w)},
        },
        src,
    )
    sentence(
        figures,
        page,
        "cheetah-run",
        "and 2 reach {a0}, {a1} and {a2} at 100k ({b0}, {b1} and {b2} at 70k; {m} ± {h} over the "
        "seeds), in {w0}, {w1} and {w2} h",
        {
            **{f"a{i}": at(r, 100_000) for i, r in enumerate(c)},
            **{f"b{i}": at(r, 70_000) for i, r in enumerate(c)},
            "m": cm[0],
            "h": cm[1],
            **{f"w{i}": hours(r) for i, r in enumerate(c)},
        },
        src,
    )
    reg0 = data("results/variants/revalued-reg0/revalued__dmc-walker-walk__s0.json")
    sentence(
        figures,
        page,
        "at 30k",
        "Ours at 30k: {a0}, {a1} and {a2} for seeds 0-2 with the reconstructed regulariser "
        "(`reg_coef` 0.5), and {r} for seed 0 without it",
        {**{f"a{i}": at(r, 30_000) for i, r in enumerate(w)}, "r": at(reg0, 30_000)},
        src + ", results/variants/revalued-reg0/",
    )
    add(
        figures,
        page,
        0,
        "at 30k: reg_coef of the variant",
        "0",
        reg0["config"]["agent"]["reg_coef"],
        "results/variants/revalued-reg0/ config",
    )
    # docs/decqn.md
    page = "docs/decqn.md"
    s0 = learning_run("decqn", "dmc:walker-walk", 0)
    sentence(
        figures,
        page,
        "walker-walk seed 0",
        "greedy eval return {a} at 10k env steps, {b} at 100k, {c} at 200k ({n} episodes each",
        {
            "a": at(s0, 10_000),
            "b": at(s0, 100_000),
            "c": at(s0, 200_000),
            "n": len(point(s0, 200_000)["eval_returns"]),
        },
        f"{LEARNING}/decqn__dmc-walker-walk__s0.json",
    )
    # docs/vdn.md and docs/qmix.md
    rv, rq = ratios("vdn", "-69f9919"), ratios("qmix", "-69f9919")
    for algo in ("vdn", "qmix"):
        page = f"docs/{algo}.md"
        wins = np.mean(marl_finals(algo, SMAX, "eval_win_rate"))
        sentence(
            figures,
            page,
            "SMAX wins",
            f"at it {algo.upper()} wins {{w}}% of its greedy test battles",
            {"w": 100 * wins},
            f"results/marl/{algo}__jaxmarl-smax-3m__s*.json",
        )
        sentence(
            figures,
            page,
            "MPE beside JaxMARL",
            "(VDN {fv} vs {jv}, QMIX {fq} vs {jq}), one seed at {v1}-{v2}x (VDN) / {q1}-{q2}x "
            "(QMIX)",
            {
                "fv": np.mean(marl_returns("factorl", "vdn")),
                "jv": np.mean(marl_returns("jaxmarl", "vdn")),
                "fq": np.mean(marl_returns("factorl", "qmix")),
                "jq": np.mean(marl_returns("jaxmarl", "qmix")),
                "v1": min(rv),
                "v2": max(rv),
                "q1": min(rq),
                "q2": max(rq),
            },
            "bench/results/marl-*-mpe-*.json",
        )
    page = "docs/qmix.md"
    qmix, jm = marl_finals("qmix", MPE), jaxmarl_qmix_1e7()
    sentence(
        figures,
        page,
        "MPE 1e7",
        "seeds 0-2 side by side: {m} ± {h} ({s0}, {s1}, {s2}), one seed unstable while the "
        "learning rate was high; JaxMARL's QMIX, seeds 0 and 1: {j0} and {j1}. JaxMARL's seeds "
        "2-4 end at {j2}, {j3} and {j4},",
        {
            "m": mean_ci(qmix)[0],
            "h": mean_ci(qmix)[1],
            **{f"s{i}": v for i, v in enumerate(qmix)},
            **{f"j{i}": v for i, v in enumerate(jm)},
        },
        "results/marl/qmix__jaxmarl-MPE*, bench/results/marl-jaxmarl-mpe-qmix-1e7-s*.json",
    )
    sentence(
        figures,
        page,
        "MPE 1e7 over seeds",
        "over five seeds JaxMARL's QMIX ends at {jm} ± {jh}, factorl's over three at {fm} ± {fh}.",
        {
            "jm": mean_ci(jm)[0],
            "jh": mean_ci(jm)[1],
            "fm": mean_ci(qmix)[0],
            "fh": mean_ci(qmix)[1],
        },
        "results/marl/qmix__jaxmarl-MPE*, bench/results/marl-jaxmarl-mpe-qmix-1e7-s*.json",
    )
    # docs/arsq.md, docs/sac.md, docs/td3.md: throughput
    tp = {
        w: data(f"bench/results/throughput-arsq-cqn-walker-walk-w{w}.json")["results"]
        for w in (512, 256)
    }
    sentence(
        figures,
        "docs/arsq.md",
        "update floors",
        "{a512} ms at width {w512} and {a256} ms at width {w256}, beside CQN's {c512} and {c256} "
        "ms",
        {
            "a512": tp[512]["arsq"]["update_ms"],
            "w512": tp[512]["arsq"]["agent_config"]["width"],
            "a256": tp[256]["arsq"]["update_ms"],
            "w256": tp[256]["arsq"]["agent_config"]["width"],
            "c512": tp[512]["cqn"]["update_ms"],
            "c256": tp[256]["cqn"]["update_ms"],
        },
        "bench/results/throughput-arsq-cqn-walker-walk-w{512,256}.json",
    )
    plain = data("bench/results/throughput-sac-td3-plain-halfcheetah.json")
    sentence(
        figures,
        "docs/sac.md",
        "HalfCheetah throughput",
        "at the default settings: {u} ms per update, {s} env steps/s for the whole loop",
        {"u": plain["results"]["sac"]["update_ms"], "s": plain["results"]["sac"]["loop_sps"]},
        "bench/results/throughput-sac-td3-plain-halfcheetah.json",
    )
    sentence(
        figures,
        "docs/td3.md",
        "HalfCheetah throughput",
        "{u} ms per update (median), {s} env steps/s for the whole loop. That is {r}x a plain",
        {
            "u": plain["results"]["td3"]["update_ms"],
            "s": plain["results"]["td3"]["loop_sps"],
            "r": plain["plain_td3"]["learning_sps_ratio"],
        },
        "bench/results/throughput-sac-td3-plain-halfcheetah.json",
    )
    cqn_as = [
        res["cqn_as"]
        for res in (
            data("bench/results/throughput-cqn_as-cheetah-run.json")["results"],
            data("bench/results/throughput-value4-cheetah-run.json")["results"],
        )
    ]
    value4 = data("bench/results/throughput-value4-cheetah-run.json")["results"]
    sentence(
        figures,
        "docs/cqn_as.md",
        "update time",
        "at the reference width of {w} one update takes {a}-{b} s on this 2-core CPU (two "
        "throughput runs, ...), about {r} times CQN's in the run that timed both",
        {
            "w": cqn_as[0]["agent_config"]["width"],
            "a": min(r["update_ms"] for r in cqn_as) / 1000,
            "b": max(r["update_ms"] for r in cqn_as) / 1000,
            "r": value4["cqn_as"]["update_ms"] / value4["cqn"]["update_ms"],
        },
        "bench/results/throughput-{cqn_as,value4}-cheetah-run.json",
    )
    if {r["agent_config"]["width"] for r in cqn_as} != {cqn_as[0]["agent_config"]["width"]}:
        add(figures, "docs/cqn_as.md", 0, "update time: widths", "1024", None, "widths")
    return figures


def offline_readme_sentences() -> list[Figure]:
    page = "results/offline/README.md"
    figures: list[Figure] = []
    for folder in ("results/offline", "results/offline/pendulum-100k"):
        summary = data(f"{folder}/summary.json")
        (recipe,) = summary["recipes"].values()
        (level,) = summary["levels"].values()
        medium = recipe["medium_checkpoint"]
        evals = {p["env_step"]: p["eval_return"] for p in medium["source_evaluations"]}
        step = medium["checkpoint_env_step"]
        sets = recipe["datasets"]
        src = f"{folder}/summary.json"
        if folder == "results/offline":
            sentence(
                figures,
                page,
                "medium level",
                "whose greedy evaluation ({eps} episodes) reaches {low} + {frac} x ({expert} - "
                "{low2}) = {thr}.",
                {
                    "eps": summary["settings"]["eval_episodes"],
                    "low": level["low"],
                    "frac": medium["fraction"],
                    "expert": level["expert"],
                    "low2": level["low"],
                    "thr": medium["threshold"],
                },
                src,
            )
            later = [v for s, v in evals.items() if s >= 8000]
            before = [v for s, v in evals.items() if s < step]
            sentence(
                figures,
                page,
                "expert level",
                "- expert {expert}: a good Pendulum policy returns about -150; the source SAC "
                "run's own evaluations level off at {a} to {b} from {k}k env steps on.",
                {"expert": level["expert"], "a": max(later), "b": min(later), "k": 8},
                src + " source_evaluations",
            )
            sentence(
                figures,
                page,
                "low level",
                "- low {low}: a random policy returns about -1200 to -1500; the source run's "
                "evaluations before it learned ({s1} to {s2} env steps) were {a} to {b}.",
                {
                    "low": level["low"],
                    "s1": min(s for s in evals if s < step),
                    "s2": max(s for s in evals if s < step),
                    "a": max(before),
                    "b": min(before),
                },
                src + " source_evaluations",
            )
            after = sorted(s for s in evals if s > step)[:2]
            sentence(
                figures,
                page,
                "recipe",
                "- source run: SAC, seed {seed}, {steps} env steps, evaluated ({eps} episodes) "
                "and checkpointed every {every} - medium checkpoint: env step {step}, greedy eval "
                "return {ret} (normalised {norm}), the first at or above {thr} ({p1}: {v1}; {p2}: "
                "{v2}; {p3}: {v3}) - medium: `gymnax-Pendulum-v1/medium-v0`, {m_ep} episodes, "
                "{m_st} steps, the {ck}-step policy greedy (noise {noise}): ... - medium-replay: "
                "`gymnax-Pendulum-v1/medium-replay-v0`, {r_ep} episodes, {r_st} steps, the run's "
                "replay up to that checkpoint (`overwritten_steps` {ow}):",
                {
                    "seed": recipe["source_seed"],
                    "steps": recipe["source_steps"],
                    "eps": summary["settings"]["eval_episodes"],
                    "every": recipe["source_checkpoint_every"],
                    "step": step,
                    "ret": medium["eval_return"],
                    "norm": medium["normalised_score"],
                    "thr": medium["threshold"],
                    "p1": max(s for s in evals if s < step),
                    "v1": evals[max(s for s in evals if s < step)],
                    "p2": after[0],
                    "v2": evals[after[0]],
                    "p3": after[1],
                    "v3": evals[after[1]],
                    "m_ep": sets["medium"]["episodes"],
                    "m_st": sets["medium"]["steps"],
                    "ck": sets["medium"]["factorl"]["checkpoint_env_step"],
                    "noise": sets["medium"]["factorl"]["noise"],
                    "r_ep": sets["medium-replay"]["episodes"],
                    "r_st": sets["medium-replay"]["steps"],
                    "ow": sets["medium-replay"]["factorl"]["overwritten_steps"],
                },
                src + " recipes",
            )
        else:
            sentence(
                figures,
                page,
                "recipe 100k",
                "Recipe as above (checkpoint {step}, {ret}; medium {m_st} steps in {m_ep} "
                "episodes; medium-replay {r_st} steps in {r_ep} episodes).",
                {
                    "step": step,
                    "ret": medium["eval_return"],
                    "m_st": sets["medium"]["steps"],
                    "m_ep": sets["medium"]["episodes"],
                    "r_st": sets["medium-replay"]["steps"],
                    "r_ep": sets["medium-replay"]["episodes"],
                },
                src + " recipes",
            )
    rows30 = {(r["algo"], r["dataset"]): r for r in offline_rows("results/offline")}
    rows100 = {(r["algo"], r["dataset"]): r for r in offline_rows("results/offline/pendulum-100k")}

    def secs(rows, algo, dataset):
        (wall,) = {
            round(r["wall_time_s"]) for r in rows[(algo, dataset)]["runs"]
        }  # seeds side by side
        return wall

    def span(rows, algo):
        walls = [
            r["wall_time_s"]
            for (a, d), row in rows.items()
            if a == algo and d != "online"
            for r in row["runs"]
        ]
        return min(walls), max(walls)

    sentence(
        figures,
        page,
        "30k trial wall times",
        "ARSQ {a1}-{a2} s each, CQN {c1}-{c2} s, DecQN {d1}-{d2} s,",
        {
            "a1": span(rows30, "arsq")[0],
            "a2": span(rows30, "arsq")[1],
            "c1": span(rows30, "cqn")[0],
            "c2": span(rows30, "cqn")[1],
            "d1": span(rows30, "decqn")[0],
            "d2": span(rows30, "decqn")[1],
        },
        "results/offline/*__dataset=*.json wall_time_s",
    )
    sentence(
        figures,
        page,
        "100k trial wall times",
        "(trials: ARSQ {am} and {ar} s, CQN {cm} and {cr} s, online CQN {co} s, DecQN {dm} and "
        "{dr} s)",
        {
            "am": secs(rows100, "arsq", "medium"),
            "ar": secs(rows100, "arsq", "medium-replay"),
            "cm": secs(rows100, "cqn", "medium"),
            "cr": secs(rows100, "cqn", "medium-replay"),
            "co": secs(rows100, "cqn", "online"),
            "dm": secs(rows100, "decqn", "medium"),
            "dr": secs(rows100, "decqn", "medium-replay"),
        },
        "results/offline/pendulum-100k/*.json wall_time_s",
    )
    offline_means = [
        row["offline_end_eval"]["mean"] for row in rows30.values() if row["offline_end_eval"]
    ]
    sentence(
        figures,
        page,
        "30k offline phase",
        "all six are at {a} to {b}, the random level.",
        {"a": max(offline_means), "b": min(offline_means)},
        "results/offline/*__dataset=*.json",
    )
    add(
        figures,
        page,
        0,
        "30k offline phase: six rows",
        "six",
        "six" if len(offline_means) == 6 else str(len(offline_means)),
        "results/offline/*__dataset=*.json",
    )
    bc = data("results/offline/bc-check.json")
    per = {k: v["offline_end_eval_per_seed"] for k, v in bc["runs"].items()}
    updates = re.search(r"--data.offline-steps (\d+)", bc["command"])
    sentence(
        figures,
        page,
        "bc-check",
        "whose 50 episodes average {dm}; CQN, {upd} offline updates, {n} seeds) ... CQN's greedy "
        "policy returns {b0} / {b1} / {b2}, the dataset's level; with the TD loss at CQN's "
        "defaults it returns {d0} / {d1} / {d2}, and with the TD loss weighted 0.1 (the RLBench "
        "code's setting with demonstrations) {c0} / {c1} / {c2}.",
        {
            "dm": bc["dataset_mean_return"],
            "upd": int(updates[1]),
            "n": len(per["default"]),
            **{f"b{i}": v for i, v in enumerate(per["bc_pure"])},
            **{f"d{i}": v for i, v in enumerate(per["default"])},
            **{f"c{i}": v for i, v in enumerate(per["cw01"])},
        },
        "results/offline/bc-check.json",
    )
    for key, flags in (
        ("bc_pure", "--agent.critic-weight 0 --agent.demo-margin 1.0"),
        ("cw01", "--agent.critic-weight 0.1"),
    ):
        add(
            figures,
            page,
            0,
            f"bc-check: flags of {key}",
            flags,
            bc["runs"][key]["extra_flags"],
            "results/offline/bc-check.json",
        )
    ar = rows30[("arsq", "medium-replay")]["final_eval"]
    sentence(
        figures,
        page,
        "30k ARSQ medium-replay",
        "only ARSQ from medium-replay is near the expert level ({m} ± {h});",
        {"m": ar["mean"], "h": ar["ci95"]},
        "results/offline/arsq__*medium-replay*.json",
    )
    off = rows100[("arsq", "medium-replay")]["offline_end_eval"]
    sentence(
        figures,
        page,
        "100k ARSQ offline",
        "on average ({m}), with an interval of ± {h};",
        {"m": off["mean"], "h": off["ci95"]},
        "results/offline/pendulum-100k/arsq__*medium-replay*.json",
    )
    a, c, o = (
        rows100[k]["final_eval"]
        for k in (("arsq", "medium-replay"), ("cqn", "medium-replay"), ("cqn", "online"))
    )
    sentence(
        figures,
        page,
        "100k at the expert level",
        "are at the expert level ({a} ± {ah}, {c} ± {ch}) with the narrowest intervals; pure "
        "online CQN's {o} ± {oh} overlaps every row.",
        {
            "a": a["mean"],
            "ah": a["ci95"],
            "c": c["mean"],
            "ch": c["ci95"],
            "o": o["mean"],
            "oh": o["ci95"],
        },
        "results/offline/pendulum-100k/*.json",
    )
    halves = sorted(row["final_eval"]["ci95"] for row in rows100.values())
    narrowest = sorted([a["ci95"], c["ci95"]]) == halves[:2]
    overlaps = all(
        abs(row["final_eval"]["mean"] - o["mean"]) <= row["final_eval"]["ci95"] + o["ci95"]
        for row in rows100.values()
    )
    statement(
        figures,
        page,
        "100k narrowest intervals",
        "with the narrowest intervals",
        narrowest,
        "results/offline/pendulum-100k/*.json",
    )
    statement(
        figures,
        page,
        "100k online overlaps every row",
        "overlaps every row",
        overlaps,
        "results/offline/pendulum-100k/*.json",
    )
    return figures


def offline_dmc_sentences() -> list[Figure]:
    page = "results/offline/dmc/README.md"
    figures: list[Figure] = []
    summary = data("results/offline/dmc/summary.json")
    ww, cr = (summary["recipes"][f"dmc:{e}"] for e in ("walker-walk", "cheetah-run"))
    src = "results/offline/dmc/summary.json recipes"
    sentence(
        figures,
        page,
        "source runs",
        "Source runs: SAC seed {seed}, evaluated and checkpointed every {k}k env steps.",
        {"seed": ww["source_seed"], "k": ww["source_checkpoint_every"] / 1000},
        src,
    )
    if (
        cr["source_seed"] != ww["source_seed"]
        or cr["source_checkpoint_every"] != ww["source_checkpoint_every"]
    ):
        add(figures, page, 0, "source runs alike", "Source runs", False, src)
    sentence(
        figures,
        page,
        "medium checkpoints",
        "walker-walk's {ws}k ({wr} >= {wt}), cheetah-run's {cs}k ({cr} >= {ct};",
        {
            "ws": ww["medium_checkpoint"]["checkpoint_env_step"] / 1000,
            "wr": ww["medium_checkpoint"]["eval_return"],
            "wt": ww["medium_checkpoint"]["threshold"],
            "cs": cr["medium_checkpoint"]["checkpoint_env_step"] / 1000,
            "cr": cr["medium_checkpoint"]["eval_return"],
            "ct": cr["medium_checkpoint"]["threshold"],
        },
        src,
    )
    for env, recipe in (("dmc:walker-walk", ww), ("dmc:cheetah-run", cr)):
        level = recipe["medium_checkpoint"]["level"]
        if level["expert"] != EXPERT_LEVELS[env] or level["low"] != 0:
            add(
                figures,
                page,
                0,
                f"{env}: half the expert level of EXPERT_LEVELS",
                "EXPERT_LEVELS",
                False,
                src,
            )
    sac0 = learning_run("sac", "dmc:cheetah-run", 0)
    upto = cr["medium_checkpoint"]["checkpoint_env_step"]
    source_evals = {
        p["env_step"]: p["eval_return"]
        for p in cr["medium_checkpoint"]["source_evaluations"]
        if p["env_step"] <= upto
    }
    learning_evals = {p["env_step"]: p["eval_return"] for p in sac0["curve"]}
    # results/learning's run ends at 100k: the two agree wherever both evaluated, and that is
    # all of results/learning's curve
    equal = set(learning_evals) <= set(source_evals) and all(
        math.isclose(v, source_evals[s], rel_tol=1e-9) for s, v in learning_evals.items()
    )
    statement(
        figures,
        page,
        "cheetah-run source run equals results/learning's SAC seed 0",
        "the source run's evaluations to there equal results/learning's SAC seed 0",
        equal,
        f"{src}, {LEARNING}/sac__dmc-cheetah-run__s0.json",
    )
    wd, cd = ww["datasets"], cr["datasets"]
    sentence(
        figures,
        page,
        "datasets",
        "medium-v0: {ep} greedy episodes of that policy ({st} steps); medium-replay-v0: the run's "
        "replay up to it ({a} and {b} steps).",
        {
            "ep": wd["medium"]["episodes"],
            "st": wd["medium"]["steps"],
            "a": wd["medium-replay"]["steps"],
            "b": cd["medium-replay"]["steps"],
        },
        src,
    )
    if (cd["medium"]["episodes"], cd["medium"]["steps"]) != (
        wd["medium"]["episodes"],
        wd["medium"]["steps"],
    ):
        add(figures, page, 0, "medium datasets alike", "medium-v0", False, src)
    rows = dmc_rows()
    reused = []
    for env in ("dmc:walker-walk", "dmc:cheetah-run"):
        for run in rows[(env, "cqn", "online")]["runs"]:
            origin = data(run["reused_from"]) if run.get("reused_from") else None
            reused.append(
                origin is not None
                and origin["curve"] == run["curve"]
                and run["reused_from"].startswith(f"{LEARNING}/")
            )
    statement(
        figures,
        page,
        "online CQN is results/learning's",
        "**Online CQN** is `results/learning`'s CQN runs",
        all(reused),
        "results/offline/dmc/cqn__*__s*.json reused_from",
    )

    def off(env, algo, label):
        return rows[(f"dmc:{env}", algo, label)]["offline_end_eval"]["mean"]

    sentence(
        figures,
        page,
        "offline phase",
        "is at the random level ({a} and {b}); on the more varied medium-replay data it holds "
        "about a third of the expert level on either task (walker-walk {c}, cheetah-run {d}).",
        {
            "a": off("walker-walk", "decqn", "medium"),
            "b": off("cheetah-run", "decqn", "medium"),
            "c": off("walker-walk", "decqn", "medium-replay"),
            "d": off("cheetah-run", "decqn", "medium-replay"),
        },
        "results/offline/dmc/decqn__*.json",
    )
    cqn = rows[("dmc:walker-walk", "cqn", "medium")]
    sentence(
        figures,
        page,
        "CQN from walker-walk medium",
        "its greedy policies score {a} on average, near the source policy's {b}, where DecQN's "
        "scored {c}",
        {
            "a": off("walker-walk", "cqn", "medium"),
            "b": ww["medium_checkpoint"]["eval_return"],
            "c": off("walker-walk", "decqn", "medium"),
        },
        "results/offline/dmc/*.json, summary.json",
    )
    sentence(
        figures,
        page,
        "CQN from walker-walk medium online",
        "Online each of its seeds ends between online CQN and DecQN from the same data ({a} on "
        "average).",
        {"a": cqn["final_eval"]["mean"]},
        "results/offline/dmc/cqn__*medium*.json",
    )
    between = all(
        rows[("dmc:walker-walk", "cqn", "online")]["final_eval"]["mean"]
        < final
        < rows[("dmc:walker-walk", "decqn", "medium")]["final_eval"]["mean"]
        for final in cqn["final_eval"]["per_seed"]
    )
    statement(
        figures,
        page,
        "CQN from walker-walk medium: each seed between",
        "between online CQN and DecQN from the same data",
        between,
        "results/offline/dmc/*.json",
    )
    minutes = [
        r["wall_time_s"] / 60
        for (_, algo, label), row in rows.items()
        if algo == "decqn"
        for r in row["runs"]
    ]
    sentence(
        figures,
        page,
        "DecQN trial wall times",
        "{a}-{b} minutes per trial on the 2-core machine",
        {"a": min(minutes), "b": max(minutes)},
        "results/offline/dmc/decqn__*.json wall_time_s",
    )
    tp = {
        name: data(f"bench/results/{name}.json")["results"]
        for name in (
            "throughput-arsq-cqn-walker-walk-w512",
            "throughput-cqn-decqn-walker-walk",
            "throughput-arsq-cqn-walker-walk-w256",
        )
    }
    sentence(
        figures,
        page,
        "update floors",
        "DecQN {d} ms, CQN {c} ms, ARSQ {a} ms before",
        {
            "d": tp["throughput-cqn-decqn-walker-walk"]["decqn"]["update_ms"],
            "c": tp["throughput-cqn-decqn-walker-walk"]["cqn"]["update_ms"],
            "a": tp["throughput-arsq-cqn-walker-walk-w512"]["arsq"]["update_ms"],
        },
        "bench/results/throughput-{cqn-decqn-walker-walk,arsq-cqn-walker-walk-w512}.json",
    )
    sentence(
        figures,
        page,
        "ARSQ at width 256",
        "(width {w}: {ms} ms per update)",
        {
            "w": tp["throughput-arsq-cqn-walker-walk-w256"]["arsq"]["agent_config"]["width"],
            "ms": tp["throughput-arsq-cqn-walker-walk-w256"]["arsq"]["update_ms"],
        },
        "bench/results/throughput-arsq-cqn-walker-walk-w256.json",
    )
    return figures


def offline_dmc_commits() -> list[Figure]:
    """results/offline/dmc/README.md: the commits that trained each group of trials, as the
    files' `segments` record them."""
    page = "results/offline/dmc/README.md"
    folder = "results/offline/dmc"
    body = page_text(page)
    figures: list[Figure] = []

    def revisions(pattern: str) -> list[set[str]]:
        paths = sorted((ROOT / folder).glob(pattern))
        return [
            {s["source_revision"][:7] for s in json.loads(p.read_text())["segments"]} for p in paths
        ]

    groups = {
        "DecQN walker-walk": (
            r"\*\*DecQN\*\* trained at commits (.+?) \(walker-walk;",
            "decqn__dmc-walker-walk__dataset=*.json",
        ),
        "DecQN cheetah-run medium": (
            r"\), (\w+) \(cheetah-run medium\)",
            "decqn__dmc-cheetah-run__dataset=*-medium-v0__s*.json",
        ),
        "DecQN cheetah-run medium-replay": (
            r"and ([\w ]+?) \(cheetah-run medium-replay\)",
            "decqn__dmc-cheetah-run__dataset=*-medium-replay-v0__s*.json",
        ),
        "CQN walker-walk medium seed 0": (
            r"walker-walk medium seed 0 trained at (.+?), seed 1",
            "cqn__dmc-walker-walk__dataset=*-medium-v0__s0.json",
        ),
        "CQN walker-walk medium seed 1": (
            r", seed 1 at (.+?), seed 2",
            "cqn__dmc-walker-walk__dataset=*-medium-v0__s1.json",
        ),
        "CQN walker-walk medium seed 2": (
            r", seed 2 at (.+?)\s+\(resumed",
            "cqn__dmc-walker-walk__dataset=*-medium-v0__s2.json",
        ),
    }
    for what, (pattern, files) in groups.items():
        m = re.search(pattern, body, re.S)
        shown = sorted(re.findall(r"\b[0-9a-f]{7}\b", m[1])) if m else None
        found = sorted(set().union(*revisions(files)))
        line = body[: m.start(1)].count("\n") + 1 if m else 0
        source = f"{folder}/{files} segments"
        add(
            figures,
            page,
            line,
            f"commits of {what}",
            shown and ", ".join(shown),
            ", ".join(found),
            source,
        )
    resumed = [r for r in revisions("decqn__dmc-walker-walk__dataset=*.json") if len(r) > 1]
    statement(
        figures,
        page,
        "one DecQN walker-walk trial resumed",
        "(walker-walk; one trial resumed across both)",
        len(resumed) == 1,
        f"{folder}/decqn__dmc-walker-walk__dataset=*.json segments",
    )
    return figures


# ------------------------------------------------------------------------------ bench/README.md

BENCH = "bench/README.md"


def bench_json(name: str) -> dict[str, Any]:
    """bench/results/NAME.json."""
    return data(f"bench/results/{name}.json")


def agents_of(name: str) -> Iterable[dict[str, Any]]:
    """results.ALGO of a throughput.py report, by algorithm."""
    return bench_json(name)["results"].values()


def bench_src(*names: str) -> str:
    return ", ".join(f"bench/results/{name}.json" for name in names)


def common(values: Iterable[Any]) -> Any:
    """The value that every item shares (a figure the page gives once for several files), else a
    text saying that they differ, which no figure on a page equals."""
    found = list(dict.fromkeys(values))
    return found[0] if len(found) == 1 else f"the files differ: {found}"


def to_tens(value: float) -> float:
    """`value` to the nearest ten, for a figure the page rounds so ("about 130")."""
    return float(round(value, -1))


def commits_in(
    figures: list[Figure], page: str, label: str, text: str, revisions: list[str], source: str
) -> None:
    """The commits that `text` names (plain text as for `template`, found once on the page, each
    `{c}` a commit) against the revisions the results files record, in order."""
    parts = [template(part).pattern for part in text.split("{c}")]
    found = list(re.finditer("([0-9a-f]{7,40})".join(parts), page_text(page)))
    if len(found) != 1 or len(revisions) != text.count("{c}"):
        error = f"{text[:70]!r} found {len(found)} times on the page (expected once)"
        add(figures, page, 0, label, None, revisions, source, error)
        return
    m = found[0]
    for i, revision in enumerate(revisions):
        line = page_text(page)[: m.start(i + 1)].count("\n") + 1
        what = f"{label}: commit" + (f" [{i}]" if len(revisions) > 1 else "")
        add(figures, page, line, what, m[i + 1], revision[: len(m[i + 1])], source)


def tables_of(page: str, *words: str) -> list[Table]:
    """Every table of `page` whose header holds all `words`, in the page's order."""
    return [
        t for t in md_tables(page_text(page), page) if all(w in " | ".join(t.header) for w in words)
    ]


def cells_by(figures, page, t: Table, what: str, rows: dict[str, tuple], source: str) -> None:
    """A table whose rows (by their first cell) are known: `rows` maps that cell to one rule per
    further column (see `rules_in`: plain text with `#` per number -> the values), and every
    other number in those cells fails. A row the page lacks, or one the data lacks, fails."""
    seen = set()
    for line, row in t.rows:
        rules = rows.get(row[0])
        if rules is None:
            add(figures, page, line, f"{what}: {row[0]}", " | ".join(row), None, source)
            continue
        seen.add(row[0])
        for name, cell, rule in zip(t.header[1:], row[1:], rules, strict=True):
            cell_rules = {rule[0]: rule[1]} if rule else {}
            at_what = f"{what}: {row[0]}: {name}"
            rules_in(figures, page, line, at_what, cell, cell_rules, source, every_number=True)
            if not rule and cell:
                add(figures, page, line, at_what, cell, "", source)
    for label in rows.keys() - seen:
        add(figures, page, t.line, f"{what}: {label}: row", None, label, source)


#: the throughput tables' agents, as the rows name them -> results keys
THROUGHPUT_AGENTS = {
    "DecQN": "decqn",
    "REValueD": "revalued",
    "CQN": "cqn",
    "CQN-AS": "cqn_as",
    "SAC": "sac",
    "TD3": "td3",
}
#: the throughput tables' columns -> the field of results.ALGO (bench/throughput.py)
THROUGHPUT_COLUMNS = {
    "env steps per update": "update_every",
    "update (ms)": "update_ms",  # the median
    "act (µs)": "act_us",  # the median
    "loop (steps/s)": "loop_sps",
    "floors allow (steps/s)": "ideal_sps",
    "loop / floors": "loop_overhead_ratio",  # (1/loop_sps) / ideal, the two step times
}


def throughput_table(figures: list[Figure], t: Table, files: dict[str, str]) -> None:
    """A table of throughput.py's agents, each row against results.ALGO of the file `files`
    names for that algorithm; "(K = 10)" and "(width 1024)" in a row's name are its config."""
    seen = set()
    for line, row in t.rows:
        m = re.fullmatch(rf"([\w-]+)(?: \((K =|width) {N}\))?", row[0])
        algo = THROUGHPUT_AGENTS.get(m[1]) if m else None
        if algo not in files:
            add(figures, BENCH, line, f"throughput table: {row[0]}", row[0], None, str(files))
            continue
        seen.add(algo)
        name = files[algo]
        r = bench_json(name)["results"][algo]
        source = f"bench/results/{name}.json results.{algo}"
        if m[2]:
            key = {"K =": "ensemble_size", "width": "width"}[m[2]]
            what = f"{name}: {row[0]}: {key}"
            add(figures, BENCH, line, what, m[3], r["agent_config"][key], source)
        for column, cell in zip(t.header[1:], row[1:], strict=True):
            field = THROUGHPUT_COLUMNS.get(column)
            value = None if field is None else r[field]
            add(figures, BENCH, line, f"{name}: {m[1]}: {column}", cell, value, source)
    for algo in files.keys() - seen:
        add(figures, BENCH, t.line, f"{files[algo]}: {algo}: row", None, algo, files[algo])


def gflops(r: dict[str, Any]) -> float:
    """GFLOP/s of a median update: XLA's count of its operations over its median time."""
    return r["update_flops"] / (r["update_ms"] * 1e-3) / 1e9


def random_steps_assumed(plain_td3: dict[str, Any]) -> float:
    """The random-action steps that bench/throughput.py's derived "steps / elapsed" rates assume,
    solved from each rate (step / rate = R / random_sps + (step - R) / learning_sps); a text if
    the rates disagree."""
    found = set()
    for side, rates in plain_td3["derived_cumulative_sps"].items():
        random_sps, learning_sps = (plain_td3[f"{side}_{k}_sps"] for k in ("random", "learning"))
        for step, rate in rates.items():
            n = float(step)
            found.add(round((n / rate - n / learning_sps) / (1 / random_sps - 1 / learning_sps)))
    return common(found)


def bench_throughput() -> list[Figure]:
    """bench/README.md, throughput.py's runs: the summary's loop rates, the three tables of
    agents, the plain TD3 table, and the figures the text derives from them."""
    figures: list[Figure] = []
    value4, value, cqn_as, plain, first = (
        "throughput-value4-cheetah-run",
        "throughput-value-cheetah-run",
        "throughput-cqn_as-cheetah-run",
        "throughput-sac-td3-plain-halfcheetah",
        "throughput-sac-td3-halfcheetah",
    )
    v4, v, ca, p, p0 = (bench_json(n)["results"] for n in (value4, value, cqn_as, plain, first))
    pt = bench_json(plain)["plain_td3"]
    project = (value4, value, cqn_as, plain)
    # the summary
    sentence(
        figures,
        BENCH,
        "summary: learning starts",
        "except that learning starts after {n} transitions. Rows in one table",
        {"n": common(r["agent_config"]["learning_starts"] for n in project for r in agents_of(n))},
        bench_src(*project),
    )
    sentence(
        figures,
        BENCH,
        "summary: the project's machine",
        "on the project's {c}-core CPU machine with nothing else running",
        {"c": common(bench_json(n)["machine"]["cpu_count"] for n in project)},
        bench_src(*project) + " machine",
    )
    sentence(
        figures,
        BENCH,
        "summary: loop rates",
        "On `dmc:cheetah-run`: DecQN {d}, REValueD (K = {k}) {r}, CQN {c}, CQN-AS (width {w}) {a} "
        "([JSON](results/throughput-value4-cheetah-run.json)). On `gym:HalfCheetah-v5`: SAC {s}, "
        "TD3 {t}; a plain single-file JAX TD3 loop timed beside ours runs at the same rate "
        "(factorl / plain {p} in the learning phase;",
        {
            "d": v4["decqn"]["loop_sps"],
            "k": v4["revalued"]["agent_config"]["ensemble_size"],
            "r": v4["revalued"]["loop_sps"],
            "c": v4["cqn"]["loop_sps"],
            "w": v4["cqn_as"]["agent_config"]["width"],
            "a": v4["cqn_as"]["loop_sps"],
            "s": p["sac"]["loop_sps"],
            "t": p["td3"]["loop_sps"],
            "p": pt["learning_sps_ratio"],
        },
        bench_src(value4, plain),
    )
    decqn_config = v4["decqn"]["agent_config"]
    sentence(
        figures,
        BENCH,
        "DecQN's reference settings",
        "for DecQN: width {w}, batch {b}, one update per {u} env steps, learning after 1000",
        {
            "w": decqn_config["width"],
            "b": decqn_config["batch_size"],
            "u": decqn_config["update_every"],
        },
        bench_src(value4) + " results.decqn.agent_config (only learning_starts overridden)",
    )
    statement(
        figures,
        BENCH,
        "DecQN's reference settings: no other overrides",
        "for DecQN: width",
        set(v4["decqn"]["agent_overrides"]) <= {"learning_starts", "random_steps"},
        bench_src(value4) + " results.decqn.agent_overrides",
    )
    # "Measured on the project's machine"
    machines = [bench_json(n)["machine"] for n in project]
    sentence(
        figures,
        BENCH,
        "project machine",
        "({c}-core AMD EPYC VM, {gb} GB, JAX 0.10.2 on the CPU)",
        {
            "c": common(m["cpu_count"] for m in machines),
            "gb": common(m["memory_gb"] for m in machines),
        },
        bench_src(*project) + " machine",
    )
    statement(
        figures,
        BENCH,
        "project machine: processor, JAX, backend",
        "AMD EPYC VM, ... JAX 0.10.2 on the CPU",
        all(
            "AMD EPYC" in bench_json(n)["machine"]["processor"]
            and bench_json(n)["versions"]["jax"] == "0.10.2"
            and bench_json(n)["jax_backend"] == "cpu"
            for n in project
        ),
        bench_src(*project) + " machine, versions, jax_backend",
    )
    sentence(
        figures,
        BENCH,
        "reference settings",
        "Reference settings, except that learning starts after {n} transitions so",
        {"n": common(r["agent_config"]["learning_starts"] for n in project for r in agents_of(n))},
        bench_src(*project),
    )
    # the four value agents, one run
    commits_in(
        figures,
        BENCH,
        "value agents' run",
        "all four value agents in one run at commit {c}",
        [bench_json(value4)["source_revision"]],
        bench_src(value4),
    )
    sentence(
        figures,
        BENCH,
        "value agents' env floors",
        "its raw env floor was {a} steps/s against {b} (a check",
        {
            "a": bench_json(value4)["env_floor"]["raw_env_sps"],
            "b": bench_json(value)["env_floor"]["raw_env_sps"],
        },
        bench_src(value4, value) + " env_floor",
    )
    tables = tables_of(BENCH, *THROUGHPUT_COLUMNS)
    if len(tables) != 3:
        add(figures, BENCH, 0, "throughput tables", str(len(tables)), 3, "", "expected three")
        return figures
    throughput_table(figures, tables[0], dict.fromkeys(v4, value4))
    throughput_table(figures, tables[1], {**dict.fromkeys(v, value), "cqn_as": cqn_as})
    throughput_table(figures, tables[2], dict.fromkeys(p, plain))
    config = bench_json(value4)["config"]
    sentence(
        figures,
        BENCH,
        "value agents' command",
        "python bench/throughput.py --env dmc:cheetah-run --algos decqn,revalued,cqn,cqn_as "
        "--steps {steps} ... --warmup {warmup} --updates {updates} --acts {acts} --set "
        "agent.learning_starts={ls} ... --set agent.random_steps={rs} --out "
        "bench/results/throughput-value4-cheetah-run.json",
        {
            "steps": config["steps"],
            "warmup": config["warmup"],
            "updates": config["updates"],
            "acts": config["acts"],
            "ls": v4["decqn"]["agent_overrides"]["learning_starts"],
            "rs": v4["decqn"]["agent_overrides"]["random_steps"],
        },
        bench_src(value4) + " config",
    )
    statement(
        figures,
        BENCH,
        "value agents' command: algorithms",
        "--algos decqn,revalued,cqn,cqn_as --steps",
        config["algos"] == ["decqn", "revalued", "cqn", "cqn_as"]
        and all(r["agent_overrides"] == v4["decqn"]["agent_overrides"] for r in v4.values()),
        bench_src(value4) + " config",
    )
    order = ("decqn", "revalued", "cqn", "cqn_as")
    rates = {a: gflops(v4[a]) for a in order}
    sentence(
        figures,
        BENCH,
        "value agents' GFLOP/s",
        "(`update_flops`: {a}, {b}, {c} and {d} GFLOP), the updates ran at {ra} (DecQN), {rb} "
        "(REValueD), {rc} (CQN) and {rd} (CQN-AS) GFLOP/s: REValueD's update cost {x}x DecQN's for "
        "{y}x the work",
        {
            **{k: v4[a]["update_flops"] / 1e9 for k, a in zip("abcd", order, strict=True)},
            **{f"r{k}": rates[a] for k, a in zip("abcd", order, strict=True)},
            "x": v4["revalued"]["update_ms"] / v4["decqn"]["update_ms"],
            "y": v4["revalued"]["update_flops"] / v4["decqn"]["update_flops"],
        },
        bench_src(value4) + " update_flops / update_ms",
    )
    statement(
        figures,
        BENCH,
        "CQN-AS at a third of the others' rate",
        "uses the CPU at about a third of the rate of the others",
        abs(rates["cqn_as"] / np.mean([rates[a] for a in order[:3]]) - 1 / 3) < 0.05,
        bench_src(value4) + " update_flops / update_ms",
    )
    # the earlier run
    commits_in(
        figures,
        BENCH,
        "earlier value run",
        "DecQN, REValueD and CQN at commit {c} while",
        [bench_json(value)["source_revision"]],
        bench_src(value),
    )
    statement(
        figures,
        BENCH,
        "earlier value run: +dirty",
        'its "+dirty" is that same file',
        bench_json(value)["source_revision"].endswith("+dirty"),
        bench_src(value) + " source_revision",
    )
    sentence(
        figures,
        BENCH,
        "earlier value run: floor and load",
        "(raw env floor {f} steps/s with random actions; ... so the recorded load average of {l} "
        "is mostly",
        {
            "f": bench_json(value)["env_floor"]["raw_env_sps"],
            "l": bench_json(value)["machine"]["load_avg_at_start"][0],
        },
        bench_src(value) + " env_floor, machine",
    )
    v_rates = {a: gflops(v[a]) for a in order[:3]}
    decqn = v["decqn"]
    sentence(
        figures,
        BENCH,
        "earlier value run: GFLOP/s",
        "(`update_flops` in the JSON: {a}, {b} and {c} GFLOP), the median updates above run at "
        "{ra} (DecQN), {rb} (REValueD) and {rc} (CQN) GFLOP/s: the K = {k} ensemble under `vmap` "
        "keeps {x}x the arithmetic rate of DecQN's two critics, and its update costs {u}x DecQN's "
        "for {w}x the work. For DecQN the loop costs {o}x the sum of its floors, and the update "
        "alone is {pct}% of its time.",
        {
            **{k: v[a]["update_flops"] / 1e9 for k, a in zip("abc", order[:3], strict=True)},
            **{f"r{k}": v_rates[a] for k, a in zip("abc", order[:3], strict=True)},
            "k": v["revalued"]["agent_config"]["ensemble_size"],
            "x": v_rates["revalued"] / v_rates["decqn"],
            "u": v["revalued"]["update_ms"] / decqn["update_ms"],
            "w": v["revalued"]["update_flops"] / decqn["update_flops"],
            "o": decqn["loop_overhead_ratio"],
            "pct": 100 / decqn["loop_vs_update_floor"],
        },
        bench_src(value) + " results",
    )
    step_ms = 1e3 / decqn["raw_env_sps"]
    sentence(
        figures,
        BENCH,
        "earlier value run: act and env step",
        "one jitted `act` call ({a} ms) costs {x} times a simulator step ({s} ms)",
        {"a": decqn["act_us"] / 1e3, "x": decqn["act_us"] / 1e3 / step_ms, "s": step_ms},
        bench_src(value) + " results.decqn act_us, raw_env_sps",
    )
    cfg = ca["cqn_as"]["agent_config"]
    sentence(
        figures,
        BENCH,
        "CQN-AS at width 1024",
        "CQN-AS at the reference width of {w} (a GPU-sized critic: {l} levels x {b} sequences x "
        "{h} GRU steps per update) costs {s} s per update here",
        {
            "w": cfg["width"],
            "l": cfg["levels"],
            "b": cfg["batch_size"],
            "h": cfg["horizon"],
            "s": ca["cqn_as"]["update_ms"] / 1e3,
        },
        bench_src(cqn_as) + " results.cqn_as",
    )
    # gym:HalfCheetah-v5, SAC and TD3 against a plain TD3 loop
    sac, td3 = p["sac"], p["td3"]
    sentence(
        figures,
        BENCH,
        "HalfCheetah settings",
        "at issue #4's settings (batch {b}, {w}x... networks, one update per env step; raw env "
        "floor {f} steps/s), measured at commit f38e930 with nothing else running (the recorded "
        "load average of {l} at the start",
        {
            "b": common(r["batch_size"] for r in (sac, td3)),
            "w": common(r["agent_config"]["width"] for r in (sac, td3)),
            "f": bench_json(plain)["env_floor"]["raw_env_sps"],
            "l": bench_json(plain)["machine"]["load_avg_at_start"][0],
        },
        bench_src(plain),
    )
    statement(
        figures,
        BENCH,
        "HalfCheetah: two layers of 256, one update per env step",
        "256x256 networks, one update per env step",
        sac["update_every"] == td3["update_every"] == 1
        and all(
            r["agent_config"]["width"] == 256 and r["agent_config"]["depth"] == 2
            for r in p.values()
        ),
        bench_src(plain) + " results",
    )
    commits_in(
        figures,
        BENCH,
        "HalfCheetah run",
        "measured at commit {c} with nothing else running",
        [bench_json(plain)["source_revision"]],
        bench_src(plain),
    )
    config = bench_json(plain)["config"]
    sentence(
        figures,
        BENCH,
        "HalfCheetah command",
        "python bench/throughput.py --env gym:HalfCheetah-v5 --algos sac,td3 --steps {steps} "
        "--warmup {warmup} ... --updates {updates} --acts {acts} --plain-td3 ... --set "
        "agent.learning_starts={ls} --set agent.random_steps={rs}",
        {
            "steps": config["steps"],
            "warmup": config["warmup"],
            "updates": config["updates"],
            "acts": config["acts"],
            "ls": common(r["agent_overrides"]["learning_starts"] for r in p.values()),
            "rs": common(r["agent_overrides"]["random_steps"] for r in p.values()),
        },
        bench_src(plain) + " config",
    )
    statement(
        figures,
        BENCH,
        "HalfCheetah command: algorithms and --plain-td3",
        "--algos sac,td3 --steps",
        config["algos"] == ["sac", "td3"] and config["plain_td3"] is True,
        bench_src(plain) + " config",
    )
    for label, text in (
        ("plain TD3 chunks", "alternating chunks of {c} env steps, so"),
        ("plain TD3 chunks, results", "alternating {c}-step chunks with factorl's loop"),
    ):
        sentence(
            figures, BENCH, label, text, {"c": pt["chunk_steps"]}, bench_src(plain) + " plain_td3"
        )
    source = bench_src(plain) + " plain_td3"
    steps = sorted(int(k) for k in pt["derived_cumulative_sps"]["factorl"])
    sentence(
        figures,
        BENCH,
        "plain TD3: the derived rates",
        "at {a}k, {b}k and {c}M steps with TD3's default {r} random steps",
        {
            "a": steps[0] / 1e3,
            "b": steps[1] / 1e3,
            "c": steps[2] / 1e6,
            "r": random_steps_assumed(pt),
        },
        source,
    )
    sentence(
        figures,
        BENCH,
        "plain TD3: the derived rates, read",
        "would show between {a}k and {b}k steps after {r}k random ones",
        {"a": steps[0] / 1e3, "b": steps[1] / 1e3, "r": random_steps_assumed(pt) / 1e3},
        source,
    )
    t = table(BENCH, "factorl TD3 loop", "plain JAX TD3 loop", "factorl / plain")
    phases = {
        "learning phase (steps/s)": ("factorl_learning_sps", "plain_learning_sps"),
        "random-action phase (steps/s)": ("factorl_random_sps", "plain_random_sps"),
    }
    seen = set()
    for line, (label, ours, theirs, ratio) in t.rows:
        derived = re.fullmatch(
            rf'derived "steps / elapsed" at {N}k, {N}k random steps first', label
        ) or re.fullmatch(rf"the same at {N}k", label)
        if label in phases:
            f, q = (pt[key] for key in phases[label])
        elif derived:
            step = str(int(float(derived[1]) * 1000))
            f, q = (pt["derived_cumulative_sps"][side].get(step) for side in ("factorl", "plain"))
            if derived.re.groups == 2:  # the random steps the derivation assumed
                what = f"plain TD3: {label}: random steps"
                add(figures, BENCH, line, what, derived[2], random_steps_assumed(pt) / 1e3, source)
        else:
            add(figures, BENCH, line, label, ours, None, source)
            continue
        seen.add(label)
        add(figures, BENCH, line, f"plain TD3: {label}: factorl", ours, f, source)
        add(figures, BENCH, line, f"plain TD3: {label}: plain", theirs, q, source)
        add(figures, BENCH, line, f"plain TD3: {label}: ratio", ratio, f / q, source)
    shown_steps = {re.search(r"at (\d+)k", s)[1] for s in seen if "at " in s}
    for step in pt["derived_cumulative_sps"]["factorl"]:
        if str(int(step) // 1000) not in shown_steps and int(step) < 1_000_000:
            add(figures, BENCH, t.line, f"plain TD3: derived at {step}: row", None, step, source)
    sentence(
        figures,
        BENCH,
        "SAC in the steady state",
        "Our SAC ({s} steps/s in the steady state) is faster than the quoted SAC range. Our TD3 is "
        "**not** clearly faster than a plain JAX TD3: it runs at {r}x the plain loop above.",
        {"s": sac["loop_sps"], "r": pt["learning_sps_ratio"]},
        bench_src(plain),
    )
    m = _find_once(
        figures, BENCH, "steady-state rate of either loop", "of either loop here (about {a})"
    )
    if m:
        line = page_text(BENCH)[: m.start("a")].count("\n") + 1
        for side in ("factorl", "plain"):
            what = f"steady-state rate of either loop: {side}"
            add(figures, BENCH, line, what, m["a"], pt[f"{side}_learning_sps"], source)
    mean_flops = (
        pt["plain_critic_step_flops"]
        + pt["plain_actor_step_flops"] / td3["agent_config"]["policy_delay"]
    )
    sentence(
        figures,
        BENCH,
        "TD3 update's FLOPs",
        "XLA's cost analysis gives {c} MFLOP for a critic-only step and {a} for a step that also "
        "moves the actor, about the same work as the plain loop's two jitted steps ({pc} + {pa}). "
        "That "
        "is about {g} GFLOP/s at the {ms} ms mean",
        {
            # factorl's critic-only step is not in the file: the plain loop's critic step, the
            # same work by the page's own account
            "c": pt["plain_critic_step_flops"] / 1e6,
            # TD3's update_flops: a lax.cond counts both branches (bench/README.md, above)
            "a": td3["update_flops"] / 1e6,
            "pc": pt["plain_critic_step_flops"] / 1e6,
            "pa": pt["plain_actor_step_flops"] / 1e6,
            # a mean update: the critic every step, the actor every policy_delay steps
            "g": to_tens(mean_flops / (td3["update_ms_mean"] * 1e-3) / 1e9),
            "ms": td3["update_ms_mean"],
        },
        bench_src(plain) + " plain_td3, results.td3 (update_ms_mean, policy_delay)",
    )
    sentence(
        figures,
        BENCH,
        "TD3 loop before and after",
        "What took the TD3 loop from {a} steps/s (the first measurement, earlier the same day) to "
        "{b}:",
        {"a": p0["td3"]["loop_sps"], "b": td3["loop_sps"]},
        bench_src(first, plain),
    )
    created = [bench_json(n)["created"] for n in (first, plain)]
    statement(
        figures,
        BENCH,
        "TD3's first measurement earlier the same day",
        "(the first measurement, earlier the same day)",
        created[0][:10] == created[1][:10] and created[0] < created[1],
        bench_src(first, plain) + " created",
    )
    sentence(
        figures,
        BENCH,
        "TD3 sampling and act before and after",
        "uniform replay sampling without the sum tree ({s1} to {s2} ms), and a cheaper `act` ({a1} "
        "to {a2} µs)",
        {
            "s1": p0["td3"]["sample_ms"],
            "s2": td3["sample_ms"],
            "a1": p0["td3"]["act_us"],
            "a2": td3["act_us"],
        },
        bench_src(first, plain) + " results.td3",
    )
    return figures


def bench_host() -> list[Figure]:
    """bench/README.md, host_vector.py's rounds (the summary, the table, what it says) and the
    shared run session's pairs."""
    figures: list[Figure] = []
    name = "host-vector-decqn-dmc-cheetah-run"
    hv = bench_json(name)
    source = bench_src(name)
    rounds = {
        "N=1 new vs old, round 1": "n1_new_vs_old_round1",
        "N=1 new vs old, round 2": "n1_new_vs_old_round2",
        "N=8 vs N=1, new": "n8_vs_n1_new",
        "N=1 new vs old, no updates, round 1": "n1_new_vs_old_no_updates_round1",
        "N=1 new vs old, no updates, round 2": "n1_new_vs_old_no_updates_round2",
    }
    both = hv["n1_new_vs_old_combined"]
    n8 = hv["n8_vs_n1_new"]
    sentence(
        figures,
        BENCH,
        "summary: several environments",
        "({r}x over {n} alternating pairs, spread about ±10%), and at N = {a} gives {q}x the env "
        "steps/s of N = {b} for DecQN",
        {
            "r": both["new_over_old_pairwise_median"],
            "n": both["pairs"],
            "a": common(r["num_envs"] for r in n8["runs"]["A"]),
            "q": n8["medians"]["A_over_B_env_steps_per_s_pairwise_median"],
            "b": common(r["num_envs"] for r in n8["runs"]["B"]),
        },
        source,
    )
    n1 = [r for k in rounds.values() if k != "n8_vs_n1_new" for s in "AB" for r in hv[k]["runs"][s]]
    sentence(
        figures,
        BENCH,
        "summary: N = 1",
        "the host runner at N = {n} shows no speed difference",
        {"n": common(r["num_envs"] for r in n1)},
        source + " runs",
    )
    learning = [r for r in n1 + n8["runs"]["A"] + n8["runs"]["B"] if r["timed_updates"]]
    sentence(
        figures,
        BENCH,
        "host vector settings",
        "at its reference settings (learning after {l} transitions, one update per {u} env steps;",
        {
            "l": common(r["learning_starts"] for r in learning),
            "u": common(r["timed_env_steps"] / r["timed_updates"] for r in learning),
        },
        source + " runs (timed env steps per timed update)",
    )
    commits_in(
        figures,
        BENCH,
        "host vector commits",
        "for commit {c} (N environments behind Gymnasium's `SyncVectorEnv`, one batched `act`) "
        "against its parent {c} (one environment)",
        [hv["commits"]["new"], hv["commits"]["old"]],
        source + " commits",
    )
    counted = [r for key in rounds.values() for side in "AB" for r in hv[key]["runs"][side]]
    sentence(
        figures,
        BENCH,
        "host vector warm-up",
        "runs it untimed until env step {w} and the first learner update",
        {"w": common(r["warmup_env_steps"] for r in counted)},
        source + " runs",
    )
    session_runs = [
        pair[side]
        for pair in bench_json("host-runner-session-decqn-cheetah-run")["pairs"]
        for side in ("new", "old")
    ]
    sentence(
        figures,
        BENCH,
        "host vector act calls",
        'then times {a} `agent.act(state, obs, step, "explore")` calls alone (obs `[N, {d}]`;',
        {
            "a": common(r["act_calls"] for r in session_runs),
            "d": common(r["obs_shape"][1] for r in session_runs),
        },
        "bench/results/host-runner-session-decqn-cheetah-run.json pairs (the same script's "
        "runs; host-vector-decqn-dmc-cheetah-run.json does not record them)",
    )

    def flags(command: str) -> dict[str, float]:
        return {k: float(v) for k, v in re.findall(r"--([a-z-]+) (\d+)", command)}

    with_n8, no_updates = (
        flags(hv[k]["A_command"]) for k in ("n8_vs_n1_new", "n1_new_vs_old_no_updates_round1")
    )
    profiled = flags(hv["profile"]["with_updates"]["command_suffix"])
    sentence(
        figures,
        BENCH,
        "host vector commands",
        "python bench/host_vector.py --steps {s} --warmup {w} [--num-envs {n}] "
        "PYTHONPATH=WORKTREE python bench/host_vector.py --steps {s2} --warmup {w2} "
        "--learning-starts {l2} # no updates PYTHONPATH=WORKTREE python bench/host_vector.py "
        "--steps {s3} --warmup {w3} --profile FILE",
        {
            "s": with_n8["steps"],
            "w": with_n8["warmup"],
            "n": with_n8["num-envs"],
            "s2": no_updates["steps"],
            "w2": no_updates["warmup"],
            "l2": no_updates["learning-starts"],
            "s3": profiled["steps"],
            "w3": profiled["warmup"],
        },
        source + " (the rounds' commands, the profile's command_suffix)",
    )
    sentence(
        figures,
        BENCH,
        "host vector machine",
        "The machine had {n} cores (Intel Xeon)",
        {"n": hv["machine"]["nproc"]},
        source + " machine",
    )
    statement(
        figures,
        BENCH,
        "host vector machine: Intel Xeon",
        "cores (Intel Xeon) and",
        "Intel" in hv["machine"]["cpu_model"] and "Xeon" in hv["machine"]["cpu_model"],
        source + " machine.cpu_model",
    )
    start, end = (
        hv[k]["loadavg_1_5_15"][0] for k in ("load_average_start_of_all", "load_average_end_of_all")
    )
    others = [
        hv[key][when]["loadavg_1_5_15"][0]
        for key in rounds.values()
        for when in ("load_at_start", "load_at_end")
    ]
    others.remove(start)  # the first round's start and the last one's end are the whole span's
    others.remove(end)
    sentence(
        figures,
        BENCH,
        "host vector load",
        "(1-minute load average {a} at the start, between {b} and {c} at the starts and ends of "
        "the other rounds, {d} at the end)",
        {"a": start, "b": min(others), "c": max(others), "d": end},
        source + " load averages",
    )
    t = table(BENCH, "comparison", "pairs", "A/B steps/s, pairwise median (min-max)")
    rows: dict[str, tuple] = {}
    for label, key in rounds.items():
        m = hv[key]["medians"]
        act = [m["A_act_us_per_env_step"], m["B_act_us_per_env_step"]]
        if m["A_act_us_per_call"] != m["A_act_us_per_env_step"] or (
            m["B_act_us_per_call"] != m["B_act_us_per_env_step"]
        ):  # N > 1: per env step and per call
            act_rule = (
                "# vs # (# vs # per call)",
                [*act, m["A_act_us_per_call"], m["B_act_us_per_call"]],
            )
        else:
            act_rule = ("# vs #", act)
        rows[label] = (
            ("#", [hv[key]["pairs"]]),
            ("# vs #", [m["A_env_steps_per_s"], m["B_env_steps_per_s"]]),
            (
                "# (#-#)",
                [
                    m["A_over_B_env_steps_per_s_pairwise_median"],
                    m["A_over_B_env_steps_per_s_pairwise_min"],
                    m["A_over_B_env_steps_per_s_pairwise_max"],
                ],
            ),
            act_rule,
        )
    rows["N=1 new vs old, both rounds"] = (
        ("#", [both["pairs"]]),
        ("# vs #", [both["new_median_env_steps_per_s"], both["old_median_env_steps_per_s"]]),
        (
            "# (#-#); new slower in # of #",
            [
                both["new_over_old_pairwise_median"],
                both["min"],
                both["max"],
                both["pairs_new_slower"],
                both["pairs"],
            ],
        ),
        None,
    )
    cells_by(figures, BENCH, t, "host vector", rows, source)
    wall = {k: hv[k]["whole_process_figures"]["A/B wall"]["median"] for k in rounds.values()}
    sentence(
        figures,
        BENCH,
        "host vector whole-process wall time",
        "new/old at N=1: {a} and {b} (pairwise medians of the two rounds); N=8/N=1: {c}.",
        {
            "a": wall["n1_new_vs_old_round1"],
            "b": wall["n1_new_vs_old_round2"],
            "c": wall["n8_vs_n1_new"],
        },
        source + " whole_process_figures",
    )
    medians = {k: hv[k]["medians"] for k in rounds.values()}
    profile = hv["profile"]
    learn = np.mean(
        [
            profile["with_updates"][s]["Trainer.learn"]
            for s in ("old_us_per_env_step", "new_us_per_env_step")
        ]
    )
    step = np.mean(
        [
            profile["with_updates"][s]["Trainer.step"]
            for s in ("old_us_per_env_step", "new_us_per_env_step")
        ]
    )
    sentence(
        figures,
        BENCH,
        "host vector: N=1 against the old loop",
        "The pairwise medians are {a} and {b}, and {c} over all {n} pairs",
        {
            "a": medians["n1_new_vs_old_round1"]["A_over_B_env_steps_per_s_pairwise_median"],
            "b": medians["n1_new_vs_old_round2"]["A_over_B_env_steps_per_s_pairwise_median"],
            "c": both["new_over_old_pairwise_median"],
            "n": both["pairs"],
        },
        source,
    )
    sentence(
        figures,
        BENCH,
        "host vector: the learner update's share",
        "about {p}% of an env step is the wait for the learner update (about {l} ms of {s} ms "
        "under the profiler)",
        {"p": 100 * learn / step, "l": learn / 1e3, "s": step / 1e3},
        source + " profile.with_updates (mean of the two commits)",
    )
    vector = {
        mode: profile[mode]["new_us_per_env_step"][
            "gymnasium SyncVectorEnv.step (includes dmc env.step)"
        ]
        - profile[mode]["new_us_per_env_step"]["factorl dmc env.step"]
        for mode in ("with_updates", "no_updates")
    }
    micro = hv["env_step_microbench"]["runs"]
    singles = [r["single_median_us"] for r in micro]
    vector1 = [r["vector1_median_us"] for r in micro]
    wrapper = float(np.mean([b - a for a, b in zip(singles, vector1, strict=True)]))
    sentence(
        figures,
        BENCH,
        "host vector: the profiles",
        "the profiles of {n} timed steps per commit (two runs each)",
        {"n": profile["with_updates"]["steps"]},
        source + " profile",
    )
    sentence(
        figures,
        BENCH,
        "host vector: SyncVectorEnv's cost",
        "It adds {a}-{b} µs per env step under cProfile. Stepping the env directly and through a "
        "1-env `SyncVectorEnv` outside the loop, with no profiler, gave {c}-{d} µs against {e}-{f} "
        "µs, so about +{g} µs per env step.",
        {
            # SyncVectorEnv.step less the dmc step inside it, new commit, to tens as the
            # file's findings give it ("+~70-90 us")
            "a": to_tens(min(vector.values())),
            "b": to_tens(max(vector.values())),
            "c": min(singles),
            "d": max(singles),
            "e": min(vector1),
            "f": max(vector1),
            "g": wrapper,
        },
        source + " profile, env_step_microbench",
    )
    own = re.search(
        r"Trainer.env_step's own time grows by ~(\d+)-(\d+) us", " ".join(profile["findings"])
    )
    sentence(
        figures,
        BENCH,
        "host vector: env_step's own time",
        "`Trainer.env_step`'s own time grows by {a}-{b} µs under cProfile",
        {"a": own and float(own[1]), "b": own and float(own[2])},
        source + " profile.findings (the profile's own reading)",
    )
    act = {k: m["A_over_B_act_us_per_env_step_pairwise_median"] for k, m in medians.items()}
    sentence(
        figures,
        BENCH,
        "host vector: act alone",
        "alone, new/old pairwise medians of {a} and {b} (rounds with learning) and {c} and {d} "
        "(no-update rounds)",
        {
            "a": act["n1_new_vs_old_round1"],
            "b": act["n1_new_vs_old_round2"],
            "c": act["n1_new_vs_old_no_updates_round1"],
            "d": act["n1_new_vs_old_no_updates_round2"],
        },
        source,
    )
    sentence(
        figures,
        BENCH,
        "host vector: the wrapper against a step with learning",
        "Against {s} ms per env step with learning that is under 1%.",
        {"s": step / 1e3},
        source + " profile.with_updates",
    )
    statement(
        figures,
        BENCH,
        "host vector: the wrapper is under 1% of a step with learning",
        "with learning that is under 1%",
        wrapper / step < 0.01,
        source + " env_step_microbench, profile",
    )
    nu1 = hv["n1_new_vs_old_no_updates_round1"]
    sentence(
        figures,
        BENCH,
        "host vector: the no-update rounds",
        "the second no-update round ({a}) is in line with. The first round's {b} ran at the same "
        "load ({l1} to {l2})",
        {
            "a": medians["n1_new_vs_old_no_updates_round2"][
                "A_over_B_env_steps_per_s_pairwise_median"
            ],
            "b": nu1["medians"]["A_over_B_env_steps_per_s_pairwise_median"],
            "l1": nu1["load_at_start"]["loadavg_1_5_15"][0],
            "l2": nu1["load_at_end"]["loadavg_1_5_15"][0],
        },
        source,
    )
    m8 = n8["medians"]
    sentence(
        figures,
        BENCH,
        "host vector: N=8 updates",
        "is the same (one per {u} env steps) and dominates",
        {
            "u": common(
                r["timed_env_steps"] / r["timed_updates"] for s in "AB" for r in n8["runs"][s]
            )
        },
        source + " n8_vs_n1_new runs (timed env steps per timed update)",
    )
    sentence(
        figures,
        BENCH,
        "host vector: N=8",
        "env steps/s rise only {r}\N{MULTIPLICATION SIGN} ({a} vs {b}), because ... `act` costs "
        "{c} µs per call for {n} observations against {d} µs for 1, so {e} µs per env step "
        "against {f} ({g}\N{MULTIPLICATION SIGN}).",
        {
            "r": m8["A_over_B_env_steps_per_s_pairwise_median"],
            "a": m8["A_env_steps_per_s"],
            "b": m8["B_env_steps_per_s"],
            "c": m8["A_act_us_per_call"],
            "n": common(r["num_envs"] for r in n8["runs"]["A"]),
            "d": m8["B_act_us_per_call"],
            "e": m8["A_act_us_per_env_step"],
            "f": m8["B_act_us_per_env_step"],
            "g": m8["A_over_B_act_us_per_env_step_pairwise_median"],
        },
        source + " n8_vs_n1_new",
    )
    # the shared run session
    name = "host-runner-session-decqn-cheetah-run"
    session = bench_json(name)
    source = bench_src(name)
    commits_in(
        figures,
        BENCH,
        "run session commits",
        "### The shared run session (commit {c} against {c})",
        [session["new_commit"], session["old_commit"]],
        source,
    )
    window = [float(re.search(r"load ([\d.]+)", w)[1]) for w in session["window"]]
    sentence(
        figures,
        BENCH,
        "run session pairs",
        "{n} alternating pairs on a quiet machine (load {a} at the start, {b} at the end)",
        {"n": len(session["pairs"]), "a": window[0], "b": window[-1]},
        source + " pairs, window",
    )
    runs_ = [pair[side] for pair in session["pairs"] for side in ("new", "old")]
    summary = session["summary"]
    sentence(
        figures,
        BENCH,
        "run session result",
        "```bash PYTHONPATH=WORKTREE python bench/host_vector.py --steps {s} --warmup {w} "
        "--learning-starts {l} ``` Median {a} against {b} env steps/s; new/old pairwise median {r} "
        "({lo}-{hi}), the new commit slower in {k} of {n} pairs",
        {
            "s": common(r["timed_env_steps"] for r in runs_),
            "w": common(r["warmup_env_steps"] for r in runs_),
            "l": common(r["learning_starts"] for r in runs_),
            "a": summary["env_steps_per_s_median_new"],
            "b": summary["env_steps_per_s_median_old"],
            "r": summary["new_over_old_pairwise_median"],
            "lo": summary["new_over_old_pairwise_min"],
            "hi": summary["new_over_old_pairwise_max"],
            "k": summary["pairs_new_slower"],
            "n": len(session["pairs"]),
        },
        source,
    )
    return figures


def bench_kill9() -> list[Figure]:
    """bench/README.md, kill9.py's run: the summary and the section's result."""
    figures: list[Figure] = []
    name = "kill9-decqn-dmc-cartpole-balance"
    k9 = bench_json(name)
    source = bench_src(name)
    config, counts = k9["config"], k9["counts"]
    continued = (
        counts["resumes_from_checkpoint"] == counts["kills_delivered"]
        and counts["restarts_from_zero"] == counts["restarts_with_start_command"] == 0
    )
    identical = k9["comparison"]["identical"] and k9["passed"]
    run = config["algo"] == "decqn" and config["env"] == "dmc:cartpole-balance"
    sentence(
        figures,
        BENCH,
        "summary: kill -9",
        "{k} kills during a DecQN run on `dmc:cartpole-balance`, each resume",
        {"k": counts["kills_delivered"]},
        source + " counts",
    )
    statement(
        figures,
        BENCH,
        "summary: kill -9 result",
        "on `dmc:cartpole-balance`, each resume continued from a checkpoint, and the run ended "
        "identical to an uninterrupted one",
        run and continued and identical,
        source + " config, counts, comparison",
    )
    sentence(
        figures,
        BENCH,
        "kill9 defaults",
        "python bench/kill9.py # DecQN on dmc:cartpole-balance, {s} steps, {k} kills",
        {"s": config["steps"], "k": config["kills"]},
        source + " config (the run used the defaults)",
    )
    commits_in(
        figures,
        BENCH,
        "kill9 run",
        "commit {c}, `python bench/kill9.py` with its defaults",
        [k9["source_revision"]],
        source,
    )
    sentence(
        figures,
        BENCH,
        "kill9 result",
        "DecQN at reference settings on `dmc:cartpole-balance`, {s} env steps, a checkpoint every "
        "{m} minutes): {k} kills delivered, each resume continued from a checkpoint",
        {"s": config["steps"], "m": config["checkpoint_minutes"], "k": counts["kills_delivered"]},
        source + " config, counts",
    )
    statement(
        figures,
        BENCH,
        "kill9 result: identical in every item",
        "each resume continued from a checkpoint, and the killed run ended identical to the "
        "uninterrupted one in every item compared",
        run and continued and identical and all(k9["comparison"].values()),
        source + " counts, comparison",
    )
    sentence(
        figures,
        BENCH,
        "kill9 load",
        "(load average about {l} on {c} cores)",
        {"l": k9["machine"]["load_avg_at_start"][0], "c": k9["machine"]["cpu_count"]},
        source + " machine",
    )
    return figures


def bench_device() -> list[Figure]:
    """bench/README.md, the device runner: seeds vmapped (device.py), MuJoCo Playground
    (playground.py) and peak memory (device_memory.py, checkpoint_memory.py)."""
    figures: list[Figure] = []
    # device.py
    name = "device-gymnax-pendulum"
    dev = bench_json(name)
    source = bench_src(name)
    most = max(dev["results"]["decqn"], key=int)
    sentence(
        figures,
        BENCH,
        "summary: several seeds",
        "trains {s} vmapped seeds in {d}x (DecQN) and {a}x (SAC) the wall time of one",
        {
            "s": int(most),
            "d": dev["results"]["decqn"][most]["wall_ratio_to_one_seed"],
            "a": dev["results"]["sac"][most]["wall_ratio_to_one_seed"],
        },
        source,
    )
    sentence(
        figures,
        BENCH,
        "summary: several seeds, the machine",
        "the wall time of one on a {c}-core CPU; not measured on a GPU",
        {"c": dev["machine"]["cpus"]},
        source + " machine",
    )
    sentence(
        figures,
        BENCH,
        "device runner chunk",
        "Wall time of one compiled chunk of the device runner ({e} environments x {c} vector "
        "steps: ... The S values are timed in {r} rounds",
        {"e": dev["num_envs"], "c": dev["chunk_vector_steps"], "r": dev["rounds"]},
        source,
    )
    commits_in(
        figures,
        BENCH,
        "device runner run",
        "Commit {c} (the runner's code as at 75d6ffb)",
        [dev["commit"]],
        source,
    )
    order = sorted(dev["results"]["decqn"], key=int)
    sentence(
        figures,
        BENCH,
        "device runner order",
        "in alternating order ({a} {b} {c} {d}, then {e} {f} {g} {h}, ...)",
        dict(zip("abcdefgh", map(int, order + order[::-1]), strict=True)),
        source + " results",
    )
    sentence(
        figures,
        BENCH,
        "device runner machine",
        "CPU backend, {c} cores; another process",
        {"c": dev["machine"]["cpus"]},
        source + " machine",
    )
    statement(
        figures,
        BENCH,
        "device runner: CPU backend",
        "CPU backend, 2 cores; another process",
        dev["machine"]["backend"] == "cpu",
        source + " machine.backend",
    )
    statement(
        figures,
        BENCH,
        "device runner: more than linear at S = 8",
        "(more than linearly at S = 8; not investigated)",
        all(r[most]["wall_ratio_to_one_seed"] > int(most) for r in dev["results"].values()),
        source,
    )
    sentence(
        figures,
        BENCH,
        "device runner load",
        "another process shared the machine for part of the run (load average {a} at the start, "
        "{b} at the end)",
        {"a": dev["machine"]["load_average_start"][0], "b": dev["machine"]["load_average_end"][0]},
        source + " machine",
    )
    sentence(
        figures,
        BENCH,
        "device runner command",
        "python bench/device.py --chunk {c} --rounds {r} --out "
        "bench/results/device-gymnax-pendulum.json",
        {"c": dev["chunk_vector_steps"], "r": dev["rounds"]},
        source,
    )
    t = table(BENCH, "agent", "S = 1", "env steps/s, all seeds")
    seen = set()
    for line, row in t.rows:
        algo = THROUGHPUT_AGENTS.get(row[0])
        found = dev["results"].get(algo)
        if found is None:
            add(figures, BENCH, line, f"device runner: {row[0]}", row[0], None, source)
            continue
        seen.add(algo)
        for column, cell in zip(t.header[1:], row[1:], strict=True):
            what = f"device runner: {row[0]}: {column}"
            ratio = re.fullmatch(r"S = (\d+)", column)
            rate = re.fullmatch(r"env steps/s, all seeds \(S = (\d+) / (\d+)\)", column)
            if ratio:
                value = found.get(ratio[1], {}).get("wall_ratio_to_one_seed")
                add(figures, BENCH, line, what, cell, value, source)
            elif rate:
                values = [found.get(s, {}).get("env_steps_per_s_all_seeds") for s in rate.groups()]
                rules_in(
                    figures, BENCH, line, what, cell, {"# / #": values}, source, every_number=True
                )
            else:
                add(figures, BENCH, line, what, cell, None, source)
        shown = {
            re.fullmatch(r"S = (\d+)", c)[1] for c in t.header[1:] if re.fullmatch(r"S = (\d+)", c)
        }
        for s in sorted(found.keys() - shown, key=int):
            add(figures, BENCH, line, f"device runner: {row[0]}: S = {s}", None, s, source)
    for algo in dev["results"].keys() - seen:
        add(figures, BENCH, t.line, f"device runner: {algo}: row", None, algo, source)
    statement(
        figures,
        BENCH,
        "device runner: the issue's target not met",
        "(S = 8 in at most 2x the wall time of S = 1) is not met here",
        all(r["8"]["wall_ratio_to_one_seed"] > 2 for r in dev["results"].values()),
        source,
    )
    # playground.py
    main, uniform = "playground-cheetah-run", "playground-cheetah-run-decqn-n64-uniform"
    pg, pgu = bench_json(main), bench_json(uniform)
    source = bench_src(main, uniform)
    sizes = sorted({int(n.split("=")[1]) for mode in pg["results"].values() for n in mode})
    sentence(
        figures,
        BENCH,
        "playground: environments",
        "Env steps/s with random actions and with DecQN learning, N = {a} and {b} environments",
        {"a": sizes[0], "b": sizes[-1]},
        bench_src(main) + " results",
    )
    if len(sizes) != 2:
        add(figures, BENCH, 0, "playground: two sizes", "N = 1 and 64", False, bench_src(main))
    cases = [case for f in (pg, pgu) for mode in f["results"].values() for case in mode.values()]
    loads = [case[k][0] for case in cases for k in ("load_avg_before", "load_avg_after")]
    sentence(
        figures,
        BENCH,
        "playground: load",
        "Measured on the shared 2-core CPU (load {a} to {b}, so read the ratios",
        {"a": min(loads), "b": max(loads)},
        source + " (each case's 1-minute load before and after)",
    )
    t = table(BENCH, "env steps/s", "while loop", "select (former)")
    seen = set()
    for line, row in t.rows:
        m = re.fullmatch(rf"(random actions|DecQN learning), N = {N}(, uniform replay)?", row[0])
        mode = m and {"random actions": "random", "DecQN learning": "decqn"}[m[1]]
        f, fname = (pgu, uniform) if m and m[3] else (pg, main)
        case = f["results"].get(mode, {}).get(f"N={m[2]}") if m else None
        if case is None:
            add(figures, BENCH, line, f"playground: {row[0]}", " | ".join(row), None, source)
            continue
        seen.add((fname, mode, m[2]))
        prioritized = f["decqn_settings"]["prioritized"]
        if mode == "decqn" and bool(m[3]) == prioritized:
            add(figures, BENCH, line, f"playground: {row[0]}: replay", row[0], False, fname)
        for column, cell in zip(t.header[1:], row[1:], strict=True):
            path = {"while loop": "while", "select (former)": "select"}.get(column)
            value = case[path]["env_steps_per_s"] if path else None
            add(
                figures,
                BENCH,
                line,
                f"playground: {row[0]}: {column}",
                cell,
                value,
                bench_src(fname),
            )
    for mode, by_n in pg["results"].items():
        for n in by_n:
            key = (main, mode, n.split("=")[1])
            if key not in seen and not (mode == "decqn" and n == "N=64"):  # the uniform rerun's
                add(
                    figures, BENCH, t.line, f"playground: {mode} {n}: row", None, n, bench_src(main)
                )
    statement(
        figures,
        BENCH,
        "playground: the uniform rerun's command",
        "python bench/playground.py --num-envs 64 --modes decqn --uniform-replay",
        all(f in pgu["command"] for f in ("--num-envs 64", "--modes decqn", "--uniform-replay")),
        bench_src(uniform) + " command",
    )
    stopped = pg["results"]["decqn"]["N=64"]["while"]
    statement(
        figures,
        BENCH,
        "playground: prioritised N = 64 stopped learning",
        "With prioritised replay the N = 64 DecQN case stopped learning before its timed span",
        pg["decqn_settings"]["prioritized"]
        and stopped["learning_stopped"]
        and stopped["timed_learner_steps"] == 0
        and not pgu["decqn_settings"]["prioritized"],
        source + " decqn_settings, results.decqn.N=64",
    )
    # device_memory.py
    name = "device-memory-vdn-mpe"
    mem = bench_json(name)
    source = bench_src(name)
    settings, modes = mem["settings"], mem["modes"]
    buffer = common(mode["replay_buffer_mb"] for mode in modes.values())
    donated, copied = (modes[k]["peak_rss_mb_after_each_chunk"] for k in ("donated", "copied"))
    sentence(
        figures,
        BENCH,
        "summary: device runner memory",
        "with a {mb} MB replay buffer (VDN on MPE, {cap}M transitions), a training chunk peaks at "
        "{d} MB with the run state donated, as `factorl train` runs it since b962769, against "
        "{c1}-{c2} MB when the state is copied",
        {
            "mb": buffer,
            "cap": settings["capacity"] / 1e6,
            "d": common(donated),
            "c1": min(copied),
            "c2": max(copied),
        },
        source,
    )
    sentence(
        figures,
        BENCH,
        "device memory machine",
        "CPU backend, {c} cores, at commit 6d24dda",
        {"c": mem["machine"]["cpu_count"]},
        source + " machine",
    )
    commits_in(
        figures,
        BENCH,
        "device memory run",
        "at commit {c} (the runner as at b962769;",
        [mem["source_revision"]],
        source,
    )
    t = table(BENCH, "after init", "after chunks")
    header = re.fullmatch(
        rf"VDN, `jaxmarl:MPE_simple_spread_v3`, {N} envs, replay {N}M transitions \({N} MB\)",
        t.header[0],
    )
    chunks = re.fullmatch(r"after chunks ([\d /]+)", t.header[2])
    what = "device memory: header"
    for label, i, value in (
        ("envs", 1, settings["num_envs"]),
        ("capacity", 2, settings["capacity"] / 1e6),
        ("buffer", 3, buffer),
    ):
        add(figures, BENCH, t.line, f"{what}: {label}", header and header[i], value, source)
    statement(
        figures,
        BENCH,
        "device memory: VDN on MPE",
        "| VDN, `jaxmarl:MPE_simple_spread_v3`, 8 envs",
        settings["algo"] == "vdn" and settings["env"] == "jaxmarl:MPE_simple_spread_v3",
        source + " settings",
    )
    add(
        figures,
        BENCH,
        t.line,
        f"{what}: chunks",
        chunks and chunks[1],
        " / ".join(str(c) for c in range(1, settings["chunks"] + 1)),
        source + " settings.chunks",
    )
    rows = {
        label: (
            ("# MB", [modes[mode]["peak_rss_mb_after_init"]]),
            (
                " / ".join(["#"] * len(modes[mode]["peak_rss_mb_after_each_chunk"])) + " MB",
                modes[mode]["peak_rss_mb_after_each_chunk"],
            ),
        )
        for label, mode in (("donated (`factorl train`)", "donated"), ("copied", "copied"))
    }
    cells_by(figures, BENCH, t, "device memory", rows, source)
    # checkpoint_memory.py
    name = "checkpoint-memory"
    ck = bench_json(name)
    source = bench_src(name)
    npz, msgpack = ck["formats"]["npz"], ck["formats"]["msgpack"]
    sentence(
        figures,
        BENCH,
        "summary: checkpoint memory",
        "a state holding a {mb} MB array adds {w} MB to the peak resident memory when written as "
        "format 3's `state.npz` and {l} MB (the state itself) when loaded, against {mw} MB and "
        "{ml} MB with the msgpack of formats 1 and 2",
        {
            "mb": ck["settings"]["large_array_mb"],
            "w": npz["save"]["peak_rss_mb_added"],
            "l": npz["load"]["peak_rss_mb_added"],
            "mw": msgpack["save"]["peak_rss_mb_added"],
            "ml": msgpack["load"]["peak_rss_mb_added"],
        },
        source,
    )
    commits_in(
        figures,
        BENCH,
        "checkpoint memory run",
        "at commit {c} (other work running)",
        [ck["source_revision"]],
        source,
    )
    sentence(
        figures,
        BENCH,
        "checkpoint memory machine",
        "CPU backend, {c} cores, at commit 18619ce",
        {"c": ck["machine"]["cpu_count"]},
        source + " machine",
    )
    sentence(
        figures,
        BENCH,
        "checkpoint memory command",
        "python bench/checkpoint_memory.py --out bench/results/checkpoint-memory.json # --mb {mb}",
        {"mb": ck["settings"]["large_array_mb"]},
        source + " settings",
    )
    t = table(BENCH, "write: peak before / after (added)", "load: peak before / after (added)")
    m = re.fullmatch(rf"{N} MB array", t.header[0])
    add(
        figures,
        BENCH,
        t.line,
        "checkpoint memory: array",
        m and m[1],
        ck["settings"]["large_array_mb"],
        source,
    )

    def cell(op: dict[str, int]) -> tuple:
        return (
            "# / # MB (+#)",
            [op["peak_rss_mb_before"], op["peak_rss_mb_after"], op["peak_rss_mb_added"]],
        )

    rows = {
        f"{label}, `{f['state_file']['name']}`": (cell(f["save"]), cell(f["load"]))
        for label, f in (("format 3", npz), ("formats 1-2", msgpack))
    }
    cells_by(figures, BENCH, t, "checkpoint memory", rows, source)
    return figures


def marl_file(algo: str, tail: str) -> dict[str, Any]:
    """bench/results/marl-jaxmarl-mpe-ALGO{tail}.json (tail "" is bdf1240's 3-seed runs)."""
    return data(MARL_JSON.format(side="jaxmarl", algo=algo, tail=tail))


def factorl_file(algo: str, tail: str) -> dict[str, Any]:
    """bench/results/marl-factorl-mpe-ALGO{tail}.json: factorl's side alone."""
    return data(MARL_JSON.format(side="factorl", algo=algo, tail=tail))


def rollout() -> int:
    """Env steps per update of JaxMARL's MPE settings: bench/marl_jaxmarl.py's ROLLOUT (read
    from its source: importing it would import JAX)."""
    m = re.search(
        r"^ROLLOUT = (\d+) \* (\d+)", (ROOT / "bench" / "marl_jaxmarl.py").read_text(), re.M
    )
    return int(m[1]) * int(m[2])


def marl_header(
    figures, what: str, t: Table, files: list[dict[str, Any]], rounds: int | None
) -> None:
    """The header of one of marl_jaxmarl.py's tables: the budget, the seeds, the rounds."""
    source = "bench/results/marl-*-mpe-*.json settings, rounds"
    header = " | ".join(t.header)
    m = re.search(rf"MPE simple spread, {N}M env steps", header)
    budget = common(f["settings"]["env_steps"] for f in files) / 1e6
    add(figures, BENCH, t.line, f"{what}: header: budget", m and m[1], budget, source)
    m = re.search(r"seeds ([\d /]+) \(mean\)", header)
    seeds = max(f["settings"]["seeds"] for f in files)
    shown = " / ".join(map(str, range(seeds)))
    add(figures, BENCH, t.line, f"{what}: header: seeds", m and m[1], shown, source)
    first = common(f["settings"].get("first_seed") or 0 for f in files)
    for m in re.finditer(r"seed (\d+)\b", header):
        add(figures, BENCH, t.line, f"{what}: header: seed {m[1]}", m[1], first, source)
    if rounds is not None:
        m = re.search(r"round ([\d /]+) \|", header)
        shown = " / ".join(map(str, range(1, rounds + 1)))
        add(figures, BENCH, t.line, f"{what}: header: rounds", m and m[1], shown, source)


def bench_marl() -> list[Figure]:
    """bench/README.md, VDN and QMIX beside JaxMARL: the summary, marl_components.py's table and
    marl_jaxmarl.py's two tables and rounds."""
    figures: list[Figure] = []
    algos = ("vdn", "qmix")
    now = {a: marl_file(a, "-69f9919") for a in algos}
    three = {a: factorl_file(a, "-3seeds-69f9919") for a in algos}
    bdf = {a: marl_file(a, "") for a in algos}
    alone = {a: factorl_file(a, "-1seed") for a in algos}
    src_now = "bench/results/marl-{jaxmarl-mpe-ALGO-69f9919,factorl-mpe-ALGO-3seeds-69f9919}.json"
    # the summary
    settings = [f["settings"] for f in (*now.values(), *three.values())]
    first = common(s.get("first_seed") for s in settings if s["seeds"] > 1)
    sentence(
        figures,
        BENCH,
        "summary: MARL",
        "at JaxMARL's MPE settings cut to {m}M env steps, seeds {a}-{b}, factorl's mean greedy "
        "test returns are above JaxMARL's within seed noise (VDN {fv} vs {jv}, QMIX {fq} vs {jq}), "
        "and "
        "one seed trains at {v1}-{v2}x (VDN) and {q1}-{q2}x (QMIX) JaxMARL's env steps/s",
        {
            "m": common(s["env_steps"] for s in settings) / 1e6,
            "a": first,
            "b": first + common(s["seeds"] for s in settings if s["seeds"] > 1) - 1,
            "fv": np.mean(marl_returns("factorl", "vdn")),
            "jv": np.mean(marl_returns("jaxmarl", "vdn")),
            "fq": np.mean(marl_returns("factorl", "qmix")),
            "jq": np.mean(marl_returns("jaxmarl", "qmix")),
            "v1": min(ratios("vdn", "-69f9919")),
            "v2": max(ratios("vdn", "-69f9919")),
            "q1": min(ratios("qmix", "-69f9919")),
            "q2": max(ratios("qmix", "-69f9919")),
        },
        src_now + ", bench/results/marl-jaxmarl-mpe-ALGO.json (JaxMARL's returns)",
    )
    statement(
        figures,
        BENCH,
        "summary: MARL returns above JaxMARL's",
        "factorl's mean greedy test returns are above JaxMARL's",
        all(
            np.mean(marl_returns("factorl", a)) > np.mean(marl_returns("jaxmarl", a)) for a in algos
        ),
        src_now,
    )

    def alternated(f: dict[str, Any]) -> bool:
        orders = [list(r) for r in f["rounds"]]
        return len(orders) == 2 and orders[1] == orders[0][::-1] and len(orders[0]) == 2

    statement(
        figures,
        BENCH,
        "summary: MARL rounds",
        "two alternated rounds each",
        all(alternated(f) for f in now.values()),
        "bench/results/marl-jaxmarl-mpe-ALGO-69f9919.json rounds",
    )
    comp = {
        "69f9919": "marl-components-vdn-69f9919",
        "a64c155": "marl-components-vdn-a64c155",
        "run a": "marl-components-vdn",
        "run b": "marl-components-vdn-b",
    }
    summary = {k: bench_json(n)["summary"] for k, n in comp.items()}
    s, b = summary["69f9919"], summary["a64c155"]
    sentence(
        figures,
        BENCH,
        "summary: MARL components",
        "VDN's update costs {f} ms in factorl and {j} ms in JaxMARL and factorl's rollout is the "
        "faster: {r}x per update cycle ([JSON](results/marl-components-vdn-69f9919.json)); at the "
        "commit before, {r2}x, its update {f2} against {j2} ms",
        {
            "f": s["factorl"]["update_ms_in_program"],
            "j": s["jaxmarl"]["update_ms_in_program"],
            "r": s["factorl_over_jaxmarl_cycle_speed"],
            "r2": b["factorl_over_jaxmarl_cycle_speed"],
            "f2": b["factorl"]["update_ms_in_program"],
            "j2": b["jaxmarl"]["update_ms_in_program"],
        },
        bench_src(comp["69f9919"], comp["a64c155"]) + " summary",
    )
    statement(
        figures,
        BENCH,
        "summary: factorl's rollout the faster",
        "factorl's rollout is the faster",
        s["factorl"]["rollout_env_steps_per_s"] > s["jaxmarl"]["rollout_env_steps_per_s"],
        bench_src(comp["69f9919"]) + " summary",
    )
    # marl_components.py
    t = table(BENCH, "update in program", "rollout", "per cycle")
    m = re.fullmatch(rf"VDN, MPE, {N} updates, {N} rounds, medians", t.header[0])
    cycle = re.fullmatch(rf"per cycle \({N} env steps \+ 1 update\)", t.header[3])
    src_comp = bench_src(*comp.values())
    for label, i, key in (("updates", 1, "updates"), ("rounds", 2, "rounds")):
        value = common(bench_json(n)["settings"][key] for n in comp.values())
        add(
            figures,
            BENCH,
            t.line,
            f"MARL components: {label}",
            m and m[i],
            value,
            src_comp + " settings",
        )
    add(
        figures,
        BENCH,
        t.line,
        "MARL components: env steps per cycle",
        cycle and cycle[1],
        rollout(),
        "bench/marl_jaxmarl.py ROLLOUT",
    )
    statement(
        figures,
        BENCH,
        "MARL components: VDN",
        "| VDN, MPE, 100 updates",
        all(bench_json(n)["benchmark"].startswith("vdn on MPE") for n in comp.values()),
        src_comp + " benchmark",
    )
    rows = {}
    for key, sm in summary.items():
        rows[f"{key}: JaxMARL / factorl"] = (
            (
                "# / # ms",
                [sm["jaxmarl"]["update_ms_in_program"], sm["factorl"]["update_ms_in_program"]],
            ),
            (
                "#k / #k env steps/s",
                [sm[side]["rollout_env_steps_per_s"] / 1e3 for side in ("jaxmarl", "factorl")],
            ),
            (
                "# / # ms (#x)",
                [
                    sm["jaxmarl"]["cycle_ms"],
                    sm["factorl"]["cycle_ms"],
                    sm["factorl_over_jaxmarl_cycle_speed"],
                ],
            ),
        )
    cells_by(figures, BENCH, t, "MARL components", rows, src_comp + " summary")
    for key in ("69f9919", "a64c155"):
        revision = bench_json(comp[key])["source_revision"]
        add(
            figures,
            BENCH,
            t.line,
            f"MARL components: {key}: commit",
            key,
            revision[:7],
            bench_src(comp[key]),
        )
    sentence(
        figures,
        BENCH,
        "MARL components: command",
        "PYTHON bench/marl_components.py --algo vdn --rounds {r} --jaxmarl-src",
        {"r": common(bench_json(n)["settings"]["rounds"] for n in comp.values())},
        src_comp + " settings",
    )
    sentence(
        figures,
        BENCH,
        "MARL components: the update at a64c155",
        "factorl's cost {p}% more than JaxMARL's inside the program",
        {
            "p": 100
            * (b["factorl"]["update_ms_in_program"] / b["jaxmarl"]["update_ms_in_program"] - 1)
        },
        bench_src(comp["a64c155"]) + " summary",
    )
    runs_ab = [bench_json(comp[k]) for k in ("run a", "run b")]
    commits_in(
        figures,
        BENCH,
        "MARL components: runs a and b",
        "The two rows below: at commit {c}, beside another",
        [common(f["source_revision"] for f in runs_ab)],
        bench_src(comp["run a"], comp["run b"]),
    )
    sentence(
        figures,
        BENCH,
        "MARL components: runs a and b load",
        "beside another process (load average {a} and {b} at the start)",
        {
            "a": runs_ab[0]["machine"]["load_avg_at_start"][0],
            "b": runs_ab[1]["machine"]["load_avg_at_start"][0],
        },
        bench_src(comp["run a"], comp["run b"]) + " machine",
    )
    jm_rates = [sm["jaxmarl"]["rollout_env_steps_per_s"] for sm in summary.values()]
    sentence(
        figures,
        BENCH,
        "MARL components: runs vary",
        "Runs of the same program on this machine vary by up to {x}x between hours",
        {"x": max(jm_rates) / min(jm_rates)},
        src_comp + " summary (JaxMARL's program, the same in all four: its rollout rate)",
    )
    # marl_jaxmarl.py: the setup
    all_2m = [*now.values(), *three.values(), *bdf.values(), *alone.values()]
    statement(
        figures,
        BENCH,
        "MARL: jaxmarl 0.2.0",
        "its environments from the `jaxmarl` 0.2.0 wheel",
        all(f["versions"]["jaxmarl"] == "0.2.0" for f in all_2m),
        "bench/results/marl-*-mpe-*.json versions",
    )
    factorl_settings = [f["settings"]["factorl_settings"] for f in all_2m]
    sentence(
        figures,
        BENCH,
        "MARL: budget and epsilon",
        "with the budget cut to {m}M env steps, compiles it and runs it. factorl trains the same "
        "algorithm at the same settings (the agents' defaults are JaxMARL's MPE values; epsilon "
        "decays over {p}% of the run",
        {
            "m": common(f["settings"]["env_steps"] for f in all_2m) / 1e6,
            "p": common(
                100 * s["agent.epsilon_decay_steps"] / s["run.steps"] for s in factorl_settings
            ),
        },
        "bench/results/marl-*-mpe-*.json settings",
    )
    sentence(
        figures,
        BENCH,
        "MARL: test episodes",
        "averaged over {n} episodes, at the end of training. ... Both include the periodic "
        "{m}-episode greedy tests.",
        {
            "n": common(s["runner.eval_episodes"] for s in factorl_settings),
            "m": common(s["runner.eval_episodes"] for s in factorl_settings),
        },
        "bench/results/marl-*-mpe-*.json settings.factorl_settings",
    )
    sentence(
        figures,
        BENCH,
        "MARL: the machine",
        "CPU backend, {c} cores, nothing else running.",
        {"c": common(f["machine"]["cpu_count"] for f in all_2m)},
        "bench/results/marl-*-mpe-*.json machine",
    )
    statement(
        figures,
        BENCH,
        "MARL: jaxlib 0.10.2",
        "deadlocks jaxlib 0.10.2 on this 2-thread CPU",
        all(f["versions"]["jaxlib"] == "0.10.2" and f["machine"]["cpu_count"] == 2 for f in all_2m),
        "bench/results/marl-*-mpe-*.json versions, machine",
    )
    for label, text, f, values in (
        (
            "69f9919, both sides",
            "python bench/marl_jaxmarl.py --algo vdn --steps {s} --rounds {r} \\",
            now["vdn"],
            {"r": len(now["vdn"]["rounds"])},
        ),
        (
            "69f9919, three seeds",
            "python bench/marl_jaxmarl.py --algo vdn --steps {s} --seeds {n} --only factorl \\",
            three["vdn"],
            {"n": three["vdn"]["settings"]["seeds"]},
        ),
        (
            "bdf1240, both sides",
            "python bench/marl_jaxmarl.py --algo vdn --steps {s} --seeds {n} \\ --jaxmarl-src",
            bdf["vdn"],
            {"n": bdf["vdn"]["settings"]["seeds"]},
        ),
        (
            "bdf1240, seed 0 alone",
            "python bench/marl_jaxmarl.py --algo vdn --steps {s} --only factorl \\",
            alone["vdn"],
            {},
        ),
    ):
        sentence(
            figures,
            BENCH,
            f"MARL command, {label}",
            text,
            {"s": f["settings"]["env_steps"], **values},
            "bench/results/marl-*-mpe-vdn*.json settings, rounds",
        )
    # the two load averages: the 1-minute figure at the start of each file the commands wrote
    for label, text, files in (
        (
            "MARL 69f9919 load",
            "the machine otherwise idle (load average {a}-{b} at the starts)",
            [*now.values(), *three.values()],
        ),
        (
            "MARL bdf1240 load",
            "the learner as at 668af8c; load average {a}-{b} at the starts",
            [*bdf.values(), *alone.values()],
        ),
    ):
        loads = [f["machine"]["load_avg_at_start"][0] for f in files]
        sentence(
            figures,
            BENCH,
            label,
            text,
            {"a": min(loads), "b": max(loads)},
            "the 1-minute load average at the start of each file its paragraph's commands write",
        )
    # the table at 69f9919
    commits_in(
        figures,
        BENCH,
        "MARL 69f9919",
        "At commit {c} (the GRU unroll with a hand-written backward pass)",
        [common(f["source_revision"][:7] for f in (*now.values(), *three.values()))],
        src_now,
    )
    t = table(BENCH, "greedy test return, seeds 0 / 1 / 2 (mean)", "round 1 / 2")
    marl_header(
        figures, "MARL at 69f9919", t, [*now.values(), *three.values()], len(now["vdn"]["rounds"])
    )
    rows = {}
    for algo, name in (("vdn", "VDN (`vdn_rnn.py`)"), ("qmix", "QMIX (`qmix_rnn.py`)")):
        jm, fl = marl_returns("jaxmarl", algo), marl_returns("factorl", algo)
        rounds = now[algo]["rounds"]
        rows[f"JaxMARL {name}"] = (
            ("# / # / # (#)", [*jm, np.mean(jm)]),
            ("#k / #k", [x / 1e3 for x in marl_speeds("jaxmarl", algo)]),
            ("# s / # s", [r["jaxmarl"]["wall_s"] for r in rounds]),
        )
        rows[f"factorl {name.split()[0]}"] = (
            ("# / # / # (#)", [*fl, np.mean(fl)]),
            (
                "#k / #k (#x / #x)",
                [*(x / 1e3 for x in marl_speeds("factorl", algo)), *ratios(algo, "-69f9919")],
            ),
            ("# s / # s", [r["factorl"]["wall_s"] for r in rounds]),
        )
    cells_by(
        figures,
        BENCH,
        t,
        "MARL at 69f9919",
        rows,
        src_now + ", bench/results/marl-jaxmarl-mpe-ALGO.json",
    )
    statement(
        figures,
        BENCH,
        "MARL 69f9919: JaxMARL's seed 0 again",
        "its seed 0 gave the same return again in these rounds",
        all(
            r["jaxmarl"]["test_return"] == marl_returns("jaxmarl", a)[0]
            for a in algos
            for r in now[a]["rounds"]
        ),
        "bench/results/marl-jaxmarl-mpe-ALGO{-69f9919,}.json",
    )
    seed0 = {a: common(r["factorl"]["test_return"] for r in now[a]["rounds"]) for a in algos}
    sentence(
        figures,
        BENCH,
        "MARL 69f9919: three seeds in one program, and seed 0 alone",
        "(at {v}k (VDN) and {q}k (QMIX) env steps/s in total: vmapped seeds still buy no "
        "throughput on this CPU); factorl's seed 0 alone ends at {a} (VDN) and {b} (QMIX).",
        {
            "v": three["vdn"]["rounds"][0]["factorl"]["env_steps_per_s_after_compile"] / 1e3,
            "q": three["qmix"]["rounds"][0]["factorl"]["env_steps_per_s_after_compile"] / 1e3,
            "a": seed0["vdn"],
            "b": seed0["qmix"],
        },
        src_now,
    )
    statement(
        figures,
        BENCH,
        "MARL 69f9919: vmapped seeds buy no throughput",
        "vmapped seeds still buy no throughput on this CPU",
        all(
            three[a]["rounds"][0]["factorl"]["env_steps_per_s_after_compile"]
            <= min(marl_speeds("factorl", a))
            for a in algos
        ),
        src_now,
    )
    # the table at bdf1240
    commits_in(
        figures,
        BENCH,
        "MARL bdf1240",
        "Earlier, factorl at commit {c} (the learner as at 668af8c;",
        [common(f["source_revision"][:7] for f in (*bdf.values(), *alone.values()))],
        "bench/results/marl-{jaxmarl-mpe-ALGO,factorl-mpe-ALGO-1seed}.json",
    )
    t = table(BENCH, "greedy test return, seeds 0 / 1 / 2 (mean)", "one seed per process")
    marl_header(figures, "MARL at bdf1240", t, [*bdf.values(), *alone.values()], None)
    rows = {}
    for algo, name in (("vdn", "VDN (`vdn_rnn.py`)"), ("qmix", "QMIX (`qmix_rnn.py`)")):
        jm = bdf[algo]["rounds"][0]["jaxmarl"]
        fl = bdf[algo]["rounds"][0]["factorl"]["test_return_per_seed"]
        one = alone[algo]["rounds"][0]["factorl"]
        walls = [p["wall_s"] for p in jm["processes"]]
        rows[f"JaxMARL {name}"] = (
            ("# / # / # (#)", [*jm["test_return_per_seed"], jm["test_return"]]),
            (
                " / ".join(["#k"] * len(jm["processes"])),
                [p["env_steps_per_s_after_compile"] / 1e3 for p in jm["processes"]],
            ),
            ("#-# s", [min(walls), max(walls)]),
        )
        rows[f"factorl {name.split()[0]}"] = (
            ("# / # / # (#)", [*fl, np.mean(fl)]),
            (
                "#k (seed # alone)",
                [
                    one["env_steps_per_s_after_compile"] / 1e3,
                    alone[algo]["settings"].get("first_seed") or 0,
                ],
            ),
            ("# s", [one["wall_s"]]),
        )
    cells_by(
        figures,
        BENCH,
        t,
        "MARL at bdf1240",
        rows,
        "bench/results/marl-{jaxmarl-mpe-ALGO,factorl-mpe-ALGO-1seed}.json",
    )
    # re-measured: 18fa82b, 944e859
    r18, r94 = marl_file("vdn", "-18fa82b"), marl_file("vdn", "-944e859")

    def speeds(f: dict[str, Any], side: str) -> list[float]:
        return [r[side]["env_steps_per_s_after_compile"] / 1e3 for r in f["rounds"]]

    statement(
        figures,
        BENCH,
        "MARL 18fa82b: the script of 18fa82b",
        "Re-measured at commit 18fa82b",
        "18fa82b" in " ".join(r18["notes"]),
        "bench/results/marl-jaxmarl-mpe-vdn-18fa82b.json notes",
    )
    statement(
        figures,
        BENCH,
        "MARL 18fa82b: two rounds A B B A",
        "VDN, seed 0, two rounds A B B A",
        alternated(r18)
        and r18["settings"]["seeds"] == 1
        and r18["settings"].get("first_seed") == 0,
        "bench/results/marl-jaxmarl-mpe-vdn-18fa82b.json rounds",
    )
    sentence(
        figures,
        BENCH,
        "MARL 18fa82b",
        "on the otherwise idle machine, JaxMARL {j1}k and {j2}k env steps/s, factorl {f1}k and "
        "{f2}k, **{r1}x and {r2}x**",
        {
            **dict(zip(("j1", "j2"), speeds(r18, "jaxmarl"), strict=True)),
            **dict(zip(("f1", "f2"), speeds(r18, "factorl"), strict=True)),
            **dict(zip(("r1", "r2"), ratios("vdn", "-18fa82b"), strict=True)),
        },
        "bench/results/marl-jaxmarl-mpe-vdn-18fa82b.json",
    )
    commits_in(
        figures,
        BENCH,
        "MARL 944e859",
        "Again at {c} (the run state donated",
        [r94["source_revision"]],
        "bench/results/marl-jaxmarl-mpe-vdn-944e859.json",
    )
    per_100k = [
        (b[1] - a[1]) / ((b[0] - a[0]) / 100_000)
        for r in r94["rounds"]
        for a, b in zip(
            r["factorl"]["train_wall_time_s"][1:],
            r["factorl"]["train_wall_time_s"][2:],
            strict=False,
        )
    ]
    sentence(
        figures,
        BENCH,
        "MARL 944e859",
        "each train record's time kept): JaxMARL {j1}k and {j2}k, factorl {f1}k and {f2}k, **{r1}x "
        "and {r2}x**; factorl's time per 100k env steps held at {a}-{b} s from the second record "
        "to the last",
        {
            **dict(zip(("j1", "j2"), speeds(r94, "jaxmarl"), strict=True)),
            **dict(zip(("f1", "f2"), speeds(r94, "factorl"), strict=True)),
            **dict(zip(("r1", "r2"), ratios("vdn", "-944e859"), strict=True)),
            "a": min(per_100k),
            "b": max(per_100k),
        },
        "bench/results/marl-jaxmarl-mpe-vdn-944e859.json (rounds, train_wall_time_s)",
    )
    sentence(
        figures,
        BENCH,
        "MARL 18fa82b, referred back",
        "is now left out ({r}x above)",
        {"r": ratios("vdn", "-18fa82b")[0]},
        "bench/results/marl-jaxmarl-mpe-vdn-18fa82b.json",
    )
    # bdf1240: three seeds in one program, seed 0 alone, the returns
    fl3 = {a: bdf[a]["rounds"][0]["factorl"] for a in algos}
    jm3 = {a: bdf[a]["rounds"][0]["jaxmarl"] for a in algos}
    sentence(
        figures,
        BENCH,
        "MARL bdf1240: three seeds in one program",
        "The three factorl seeds side by side in one program ran at {v}k (VDN) and {q}k (QMIX) env "
        "steps/s in total: on this CPU vmapped seeds buy no throughput over one seed ({wv} s and "
        "{wq} s of wall time for the three)",
        {
            "v": fl3["vdn"]["env_steps_per_s_after_compile"] / 1e3,
            "q": fl3["qmix"]["env_steps_per_s_after_compile"] / 1e3,
            "wv": fl3["vdn"]["wall_s"],
            "wq": fl3["qmix"]["wall_s"],
        },
        "bench/results/marl-jaxmarl-mpe-ALGO.json",
    )
    statement(
        figures,
        BENCH,
        "MARL bdf1240: no throughput over one seed",
        "on this CPU vmapped seeds buy no throughput over one seed",
        all(
            fl3[a]["env_steps_per_s_after_compile"]
            <= alone[a]["rounds"][0]["factorl"]["env_steps_per_s_after_compile"]
            for a in algos
        ),
        "bench/results/marl-{jaxmarl-mpe-ALGO,factorl-mpe-ALGO-1seed}.json",
    )
    seed0_jm = {
        a: [
            r["jaxmarl"]["test_return_per_seed"][0]
            if "processes" in r["jaxmarl"]
            else r["jaxmarl"]["test_return"]
            for f in (
                bdf[a],
                now[a],
                marl_file(a, "-f3c5387"),
                *((r18, r94, marl_file(a, "-cc5c371")) if a == "vdn" else ()),
            )
            for r in f["rounds"]
            if "jaxmarl" in r
        ]
        for a in algos
    }
    statement(
        figures,
        BENCH,
        "MARL: JaxMARL's runs are deterministic",
        "JaxMARL's seed 0 reproduces the issue's figures to the digit (its runs are deterministic)",
        all(len(set(v)) == 1 for v in seed0_jm.values()),
        "bench/results/marl-jaxmarl-mpe-*.json (every seed-0 return at 2M steps)",
    )
    vdn_alone = [r["factorl"]["test_return"] for f in (alone["vdn"], r18, r94) for r in f["rounds"]]
    sentence(
        figures,
        BENCH,
        "MARL bdf1240: seed 0 alone and among three",
        "and so does factorl's seed 0 alone across runs ({a} and {b}). Seed 0 among three side by "
        "side ends elsewhere ({c}, {d})",
        {
            "a": alone["vdn"]["rounds"][0]["factorl"]["test_return"],
            "b": alone["qmix"]["rounds"][0]["factorl"]["test_return"],
            "c": fl3["vdn"]["test_return_per_seed"][0],
            "d": fl3["qmix"]["test_return_per_seed"][0],
        },
        "bench/results/marl-{factorl-mpe-ALGO-1seed,jaxmarl-mpe-ALGO}.json",
    )
    statement(
        figures,
        BENCH,
        "MARL: factorl's seed 0 alone the same across runs",
        "and so does factorl's seed 0 alone across runs",
        len(set(vdn_alone)) == 1,
        "bench/results/marl-{factorl-mpe-vdn-1seed,jaxmarl-mpe-vdn-18fa82b,jaxmarl-mpe-vdn-944e859}.json",
    )
    jq = jm3["qmix"]["test_return_per_seed"]
    jv = jm3["vdn"]["test_return_per_seed"]
    sentence(
        figures,
        BENCH,
        "MARL bdf1240: returns over three seeds",
        "(its seeds span {s}), so the single-seed comparison of the earlier rounds below "
        "overstated the gap; over three seeds factorl's VDN is {d} below JaxMARL's mean with a "
        "spread of {sp} "
        "on their side, and its QMIX {q} above.",
        {
            "s": max(jq) - min(jq),
            "d": jm3["vdn"]["test_return"] - fl3["vdn"]["test_return"],
            "sp": max(jv) - min(jv),
            "q": fl3["qmix"]["test_return"] - jm3["qmix"]["test_return"],
        },
        "bench/results/marl-jaxmarl-mpe-ALGO.json",
    )
    statement(
        figures,
        BENCH,
        "MARL bdf1240: JaxMARL's seed 0 its best on QMIX",
        "JaxMARL's seed 0 was its best by far on QMIX",
        jq[0] == max(jq),
        "bench/results/marl-jaxmarl-mpe-qmix.json",
    )
    # the earlier rounds, one seed each
    f3 = {a: marl_file(a, "-f3c5387")["rounds"][0] for a in algos}
    commits_in(
        figures,
        BENCH,
        "MARL f3c5387",
        "Earlier rounds, one seed each (factorl at {c},",
        [common(marl_file(a, "-f3c5387")["source_revision"] for a in algos)],
        "bench/results/marl-jaxmarl-mpe-ALGO-f3c5387.json",
    )
    sentence(
        figures,
        BENCH,
        "MARL f3c5387",
        "JaxMARL VDN {a}k env steps/s, {b}; factorl VDN {c}k, {d}; JaxMARL QMIX {e}k, {f}; factorl "
        "QMIX {g}k, {h}.",
        {
            "a": f3["vdn"]["jaxmarl"]["env_steps_per_s_after_compile"] / 1e3,
            "b": f3["vdn"]["jaxmarl"]["test_return"],
            "c": f3["vdn"]["factorl"]["env_steps_per_s_after_compile"] / 1e3,
            "d": f3["vdn"]["factorl"]["test_return"],
            "e": f3["qmix"]["jaxmarl"]["env_steps_per_s_after_compile"] / 1e3,
            "f": f3["qmix"]["jaxmarl"]["test_return"],
            "g": f3["qmix"]["factorl"]["env_steps_per_s_after_compile"] / 1e3,
            "h": f3["qmix"]["factorl"]["test_return"],
        },
        "bench/results/marl-jaxmarl-mpe-ALGO-f3c5387.json",
    )
    cc = marl_file("vdn", "-cc5c371")
    commits_in(
        figures,
        BENCH,
        "MARL cc5c371",
        "At {c} ([JSON](results/marl-jaxmarl-mpe-vdn-cc5c371.json))",
        [cc["source_revision"]],
        "bench/results/marl-jaxmarl-mpe-vdn-cc5c371.json",
    )
    sentence(
        figures,
        BENCH,
        "MARL cc5c371",
        "factorl VDN gave {a}k and {b}k env steps/s and {r} against JaxMARL's {c}k and {d}k.",
        {
            **dict(zip("ab", speeds(cc, "factorl"), strict=True)),
            "r": common(r["factorl"]["test_return"] for r in cc["rounds"]),
            **dict(zip("cd", speeds(cc, "jaxmarl"), strict=True)),
        },
        "bench/results/marl-jaxmarl-mpe-vdn-cc5c371.json",
    )
    # JaxMARL's QMIX to 1e7
    long = [bench_json(f"marl-jaxmarl-mpe-qmix-1e7-s{s}") for s in range(5)]
    seeds = [f["settings"].get("first_seed") or 0 for f in long]
    curves = [s for s, f in zip(seeds, long, strict=True) if "curve" in f["rounds"][0]["jaxmarl"]]
    sentence(
        figures,
        BENCH,
        "MARL JaxMARL QMIX to 1e7",
        "for seeds {c1}-{c2}, `--curves` (its test return, mean Q and loss at every test): final "
        "greedy test returns {a}, {b}, {c}, {d}, {e} for seeds {s1}-{s2}",
        {
            "c1": min(curves),
            "c2": max(curves),
            **dict(zip("abcde", jaxmarl_qmix_1e7(), strict=True)),
            "s1": min(seeds),
            "s2": max(seeds),
        },
        "bench/results/marl-jaxmarl-mpe-qmix-1e7-sS.json",
    )
    statement(
        figures,
        BENCH,
        "MARL JaxMARL QMIX to 1e7: the budget and the seeds",
        "JaxMARL's QMIX alone at its full 1e7 steps",
        all(f["settings"]["env_steps"] == 10_000_000 for f in long)
        and seeds == list(range(5))
        and curves == list(range(min(curves), 5)),
        "bench/results/marl-jaxmarl-mpe-qmix-1e7-sS.json settings",
    )
    return figures


def bench_offline_floors() -> list[Figure]:
    """bench/README.md, offline_protocol.py's section: the update floors on walker-walk and
    DecQN's trial times."""
    figures: list[Figure] = []
    names = (
        "throughput-cqn-decqn-walker-walk",
        "throughput-arsq-cqn-walker-walk-w512",
        "throughput-arsq-cqn-walker-walk-w256",
    )
    floors, w512, w256 = (bench_json(n)["results"] for n in names)
    sentence(
        figures,
        BENCH,
        "walker-walk update floors",
        "DecQN {d} ms, CQN {c} ms ([JSON](results/throughput-cqn-decqn-walker-walk.json)); ARSQ "
        "{a} ms and CQN {c2} ms at width {w}, {a2} and {c3} ms at width {w2}",
        {
            "d": floors["decqn"]["update_ms"],
            "c": floors["cqn"]["update_ms"],
            "a": w512["arsq"]["update_ms"],
            "c2": w512["cqn"]["update_ms"],
            "w": common(r["agent_config"]["width"] for r in w512.values()),
            "a2": w256["arsq"]["update_ms"],
            "c3": w256["cqn"]["update_ms"],
            "w2": common(r["agent_config"]["width"] for r in w256.values()),
        },
        bench_src(*names),
    )
    sentence(
        figures,
        BENCH,
        "walker-walk update floors: the machine",
        "`throughput.py` on the {c}-core machine (the session's background run",
        {"c": common(bench_json(n)["machine"]["cpu_count"] for n in names)},
        bench_src(*names) + " machine",
    )
    commits_in(
        figures,
        BENCH,
        "walker-walk update floors",
        "[256](results/throughput-arsq-cqn-walker-walk-w256.json)), all at {c}.",
        [common(bench_json(n)["source_revision"] for n in names)],
        bench_src(*names),
    )
    arsq = w512["arsq"]
    sentence(
        figures,
        BENCH,
        "ARSQ's update",
        "ARSQ's update is {g} GFLOP there: each of the 18 positions ({l} levels x 6 joints) runs "
        "the whole advantage net on its own conditioning vector, for {b} samples and both critics",
        {
            "g": arsq["update_flops"] / 1e9,
            "l": arsq["agent_config"]["levels"],
            "b": arsq["batch_size"],
        },
        bench_src(names[1]) + " results.arsq",
    )
    minutes = [
        r["wall_time_s"] / 60
        for (env, algo, _), row in dmc_rows().items()
        if algo == "decqn" and env == "dmc:walker-walk"
        for r in row["runs"]
    ]
    sentence(
        figures,
        BENCH,
        "DecQN's offline trials",
        "DecQN (one update per {u} env steps) took {a}-{b} minutes.",
        {"u": floors["decqn"]["update_every"], "a": min(minutes), "b": max(minutes)},
        "results/offline/dmc/decqn__dmc-walker-walk__*.json wall_time_s (the paragraph's task), "
        + bench_src(names[0]),
    )
    return figures


# ------------------------------------------------------------------- figures with no data file

#: (page, text, why): figures on the pages that no committed results file holds. Each text must
#: still be on its page (test below); in a checked table cell they are the only numbers allowed
#: without data.
UNTRACED: list[tuple[str, str, str]] = [
    (
        "docs/arsq.md",
        "| runner, env id, seed | 2k | 4k | 6k | 8k | 10k | 12k | env steps/s |",
        "the Pendulum table: runs with no committed results file",
    ),
    (
        "docs/cqn_as.md",
        "| execution | seed | 8k | 10k | 12k | 14k | 16k | 20k | 24k |",
        "the Pendulum table: runs with no committed results file",
    ),
    (
        "docs/cqn_as.md",
        "(which is at -190 by 6k steps)",
        "CQN's Pendulum run (docs/cqn.md), no committed results file",
    ),
    (
        "docs/reports.md",
        "| `dmc:walker-walk` | 900.3 |",
        "the expert levels table: factorl.report.EXPERT_LEVELS (code, not a results file)",
    ),
    (
        "README.md",
        "(spread about ±10%: no difference resolved)",
        "a reading of the pairs, not a field of host-vector-decqn-dmc-cheetah-run.json (its "
        "pairwise ratios run 0.910-1.749)",
    ),
    (
        "README.md",
        "(about 1.6 h per trial here)",
        "an estimate from update floors, no results file",
    ),
    (
        "results/learning.md",
        "372.5 at 100k",
        "bench/report.py OFFICIAL_POINTS: the reference note's figure for the official code",
    ),
    (
        "results/learning.md",
        "166.3 at 30k",
        "bench/report.py OFFICIAL_POINTS: the reference note's figure for the official code",
    ),
    (
        "results/learning.md",
        "379.5 at 50k",
        "bench/report.py OFFICIAL_POINTS: the reference note's figure for the official code",
    ),
    (
        "results/learning.md",
        "| 900.3 |",
        "expert level column: factorl.report.EXPERT_LEVELS (the REValueD authors' datasets), not "
        "a results file",
    ),
    (
        "results/learning.md",
        "| 664.57 |",
        "expert level column: factorl.report.EXPERT_LEVELS, not a results file",
    ),
    (
        "results/README.md",
        "the reference note's 3-bin expert level for walker-walk (a trained data-collecting "
        "agent, not a learning-curve point) is 900.3",
        "factorl.report.EXPERT_LEVELS",
    ),
    ("results/README.md", "The note's 372.5 at 100k", "the reference note, not a results file"),
    (
        "results/README.md",
        "to about -212 from 4M on",
        "a description of the curve in marl-jaxmarl-mpe-qmix-1e7-s2.json (it passes -129.4 at "
        "4.5M)",
    ),
    (
        "results/README.md",
        "seed 4 dropped to about -215 between 2.5M and 3.5M and came back to a plateau near -75",
        "a description of marl-jaxmarl-mpe-qmix-1e7-s4.json's curve",
    ),
    (
        "results/README.md",
        "and recovered to -31",
        "a description: seed 3 ends at -29.9 (-31.1 at 9.5M)",
    ),
    (
        "results/README.md",
        "seed 1 sat near -78 from 2M steps on",
        "a description of results/marl/qmix__*__s1.json's curve",
    ),
    (
        "results/README.md",
        "(greedy tests near -210)",
        "a description of results/marl/qmix__*__s0.json's curve",
    ),
    (
        "results/README.md",
        "(-73 from 7.5M)",
        "a description: seed 0 reads -72.8, -72.9, -72.7, -120.3, -72.1, -74.7 from 7.5M",
    ),
    (
        "results/offline/README.md",
        "618 s of wall time for the whole command (source run and datasets about 75 s",
        "timed outside the files (summary.json's wall_time_s_this_invocation is 615.3 s)",
    ),
    ("results/offline/README.md", "for its first 100 s or so", "an observation, no file"),
    (
        "results/offline/README.md",
        "1178 s of wall time for the whole command",
        "timed outside the files (summary.json's wall_time_s_this_invocation is 1175.7 s)",
    ),
    (
        "results/offline/README.md",
        "a good Pendulum policy returns about -150",
        "general knowledge of the task",
    ),
    (
        "results/offline/README.md",
        "a random policy returns about -1200 to -1500",
        "general knowledge of the task",
    ),
    (
        "results/offline/README.md",
        "cost about 0.2 s per vmapped learner step here",
        "an observation, no file",
    ),
    ("results/offline/dmc/README.md", "(7% fewer FLOPs since)", "no file: measured after the JSON"),
    (
        "results/offline/dmc/README.md",
        "about 1.6 h for CQN and 9 h for ARSQ, so the 12 CQN trials are about 19 CPU hours and "
        "the 12 ARSQ trials about 110",
        "estimates from the update floors",
    ),
    (
        "docs/sac.md",
        "| gaussian | -1517 | -342 | -179 | -170 | 146 s |",
        "Pendulum runs with no committed results file",
    ),
    (
        "docs/sac.md",
        "| bernoulli (fraction 0.5) | -1255 | -190 | -474 | -172 | 111 s |",
        "Pendulum runs with no committed results file",
    ),
    (
        "docs/sac.md",
        "| bernoulli (fraction 0.2) | -1280 | -190 | -266 | -171 | 71 s |",
        "Pendulum runs with no committed results file",
    ),
    (
        "docs/td3.md",
        "-1470 at 2k steps, -1057 at 4k, -299 at 6k and -174 at 8k, in 116 s",
        "Pendulum run with no committed results file",
    ),
    (
        "docs/revalued.md",
        "| K | width | tau | reg_coef | seed | 2.5k | 5k | 7.5k | 10k | wall |",
        "the Pendulum table: runs with no committed results file",
    ),
    (
        "docs/revalued.md",
        "at 166.3 at 30k env steps on walker-walk, seed 0",
        "the reference note, not a results file",
    ),
    (
        "docs/cqn.md",
        "-1295 at 2k steps, -314 at 4k, -190 at 6k, -144 at 10k, -162 at 12k",
        "Pendulum run with no committed results file",
    ),
    (
        "docs/cqn.md",
        "the official state-based code at 379.5 at 50k env steps",
        "the reference note, not a results file",
    ),
    (
        "docs/decqn.md",
        "-192 mean over 10 episodes at 10k steps",
        "Pendulum run with no committed results file",
    ),
    (
        "docs/qmix.md",
        "greedy return 8 for seeds 0, 1 and 2 (the test)",
        "a unit test's outcome, no file",
    ),
    (
        "docs/vdn.md",
        "greedy return 7 for seeds 0, 1 and 2 (the test)",
        "a unit test's outcome, no file",
    ),
    (
        "docs/qmix.md",
        "with the same collapses to about -210 and the same plateau near -75",
        "a description of the curves",
    ),
    ("docs/arsq.md", "which took 7% of the update's FLOPs off", "no file: measured after the JSON"),
    ("docs/arsq.md", "is about nine hours there", "an estimate from the update floor"),
    (
        BENCH,
        "| flag | default | meaning |",
        "the flag table: bench/throughput.py's defaults (code, not a results file)",
    ),
    (
        BENCH,
        "spread about ±10%), and at N = 8",
        "a reading of the pairs, not a field of host-vector-decqn-dmc-cheetah-run.json (its "
        "pairwise ratios run 0.910-1.749)",
    ),
    (BENCH, "so single runs vary by ±10-20%", "a reading of the runs, not a field"),
    (BENCH, "while single pairs spread by about ±10%", "a reading of the pairs, not a field"),
    (BENCH, "shown broken at the 1-2% level", "a reading of the spread, not a field"),
    (
        BENCH,
        "Against about 0.7 ms per step without updates it is about 3-4%",
        "an estimate from the no-update rounds' speeds (0.67-0.80 ms per step) and the wrapper's "
        "+21 µs",
    ),
    (
        BENCH,
        "(a check right after gave 8,300)",
        "no committed file (throughput-cqn_as-cheetah-run.json's 8,295 steps/s is from the day "
        "before)",
    ),
    (
        BENCH,
        "A run just before this one, same command, gave loop rates within 4%, update floors within "
        "2% and act times within 10% of these, except CQN's update floor (42.6 ms median, with its "
        "loop at 28 steps/s",
        "the run before throughput-value-cheetah-run.json, whose file it overwrote",
    ),
    (
        BENCH,
        "Issue #4 quotes, for this machine kind at these settings, 85-130 env steps/s for a widely "
        "used single-file PyTorch SAC and 255-390 for its JAX TD3",
        "the issue's figures, not ours",
    ),
    (BENCH, "The quoted 255-390", "the issue's figures, not ours"),
    (BENCH, "single-threaded Eigen was 5% slower", "XLA:CPU options tried by hand, no file"),
    (
        BENCH,
        "not computing the actor loss on critic-only steps (8% of the update), no in-jit select of "
        "new-or-old state for the NaN guard (4%)",
        "measured change by change between the two files' commits, no file",
    ),
    (
        BENCH,
        "(width 256, one update per 2 env steps, batch 256)",
        "device-gymnax-pendulum.json records no agent settings (bench/device.py sets them)",
    ),
    (
        BENCH,
        "the 16 MiB chunks NumPy copies each leaf's bytes through",
        "NumPy's copy buffer, not a results field (the +16 MB it explains is checked)",
    ),
    (
        BENCH,
        "(within 7%, 4% of it the 27th GRU step of factorl's windows)",
        "an update timed alone, no file",
    ),
    (BENCH, "(78 in factorl's update against 48, the same bytes)", "HLO counted by hand, no file"),
    (
        BENCH,
        "(69f9919: 9.6 ms against 12.2 ms for the update in program, the two commits alternated "
        "in one process)",
        "no file (marl-components-vdn-69f9919.json, a later run, has factorl's update at 8.88 ms)",
    ),
    (BENCH, "(commit c793d09;", "JaxMARL's checkout: the files do not record its commit"),
    (BENCH, "the 3-seed process sat idle for 15 minutes", "an observation, no file"),
    (
        BENCH,
        "one VDN learner step at MPE's batch shapes, timed alone, takes about 9.4 ms",
        "timed alone, no file",
    ),
    (
        BENCH,
        "factorl's rollout runs at 98-110k env steps/s against JaxMARL's 106-117k",
        "measured and, as the page says, not kept as figures",
    ),
    (
        BENCH,
        "one call of 12,500 vector steps runs as fast as five of 2,500",
        "measured and not kept as figures",
    ),
    (
        BENCH,
        "two of the five collapsing to about -210 on the way",
        "a description of the curves (seeds 0 and 1 kept none)",
    ),
    (
        BENCH,
        "(32.0 GFLOP; 264 and 251 ms against 280 and 271 ms in alternated runs of the two commits)",
        "no file: measured after the JSON",
    ),
    (
        BENCH,
        "a trial of 20k offline updates and 100k env steps is about 1.6 h for CQN and 9 h for ARSQ",
        "estimates from the update floors",
    ),
]

#: figures that disagree with their data, by id; each must still fail (strict)
XFAIL: dict[str, str] = {}

COLLECTORS: list[Callable[[], list[Figure]]] = [
    learning_md,
    marl_learning_md,
    offline_md,
    offline_100k_md,
    offline_dmc_md,
    readme_results,
    readme_throughput,
    marl_tables,
    docs_algorithm_tables,
    results_vector_table,
    results_200k_table,
    offline_readme_tables,
    offline_dmc_readme_table,
    readme_sentences,
    results_readme_sentences,
    docs_sentences,
    offline_readme_sentences,
    offline_dmc_sentences,
    offline_dmc_commits,
    bench_throughput,
    bench_host,
    bench_kill9,
    bench_device,
    bench_marl,
    bench_offline_floors,
]


def collect() -> list[Figure]:
    """Every figure of every check; a check that cannot read its page or data is a failing
    figure of its own (the file still collects)."""
    out, ids = [], defaultdict(int)
    for collector in COLLECTORS:
        try:
            found = collector()
        except Exception as e:  # reported as a failing figure, with the error
            found = [
                Figure(collector.__name__, 0, "reading", None, None, "", f"{type(e).__name__}: {e}")
            ]
        if not found:
            found = [Figure(collector.__name__, 0, "reading", None, None, "", "found no figures")]
        for figure in found:
            ids[figure.id] += 1
            n = ids[figure.id]
            out.append(
                figure
                if n == 1
                else Figure(
                    figure.page,
                    figure.line,
                    f"{figure.what} #{n}",
                    figure.shown,
                    figure.expected,
                    figure.source,
                    figure.error,
                )
            )
    return out


FIGURES = collect()


@pytest.mark.parametrize(
    "figure",
    [
        pytest.param(
            f,
            id=f.id,
            marks=[pytest.mark.xfail(strict=True, reason=XFAIL[f.id])] if f.id in XFAIL else [],
        )
        for f in FIGURES
    ],
)
def test_the_page_shows_what_the_data_holds(figure):
    problem = check(figure)
    if problem is not None:  # the message says it all: no traceback (cheaper for the XFAILs)
        pytest.fail(problem, pytrace=False)


def test_every_check_finds_its_figures():
    counts = defaultdict(int)
    for f in FIGURES:
        counts[f.page] += 1
    pages = {
        "README.md",
        "results/README.md",
        "results/learning.md",
        "results/marl/learning.md",
        "results/offline/README.md",
        "results/offline/offline.md",
        "results/offline/pendulum-100k/offline.md",
        "results/offline/dmc/README.md",
        "results/offline/dmc/offline.md",
        "docs/sac.md",
        "docs/td3.md",
        "docs/cqn.md",
        "docs/revalued.md",
        "docs/decqn.md",
        "docs/qmix.md",
        "docs/vdn.md",
        "docs/arsq.md",
        "bench/README.md",
    }
    assert pages <= set(counts), f"no figures read from {sorted(pages - set(counts))}"
    assert len(FIGURES) > 700, f"only {len(FIGURES)} figures: a table or sentence went unread"


def test_the_known_mismatches_are_still_figures():
    missing = set(XFAIL) - {f.id for f in FIGURES}
    assert not missing, (
        f"XFAIL entries that match no figure (fixed or renamed? drop them): {missing}"
    )


@pytest.mark.parametrize(
    "page, text, why", UNTRACED, ids=[f"{p}: {t[:40]}" for p, t, _ in UNTRACED]
)
def test_untraced_figures_are_still_on_their_pages(page, text, why):
    assert template(text).search(page_text(page)), (
        f"{page} no longer says {text!r}: drop it from UNTRACED"
    )
