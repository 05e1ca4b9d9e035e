"""The numbers on the user-facing pages equal the committed results files they quote: the
machinery the checks share.

The README, results/, docs/ and bench/README.md hold tables (and sentences) of numbers copied
from, or generated out of, the JSON files in results/ and bench/results/. Each check reads the
page as it is now, finds the table or sentence, takes the numbers it shows and recomputes them
from the JSON files, with the project's own statistics (`factorl.report.t_interval`, and the table
code of `bench/report.py` and `bench/offline_protocol.py` for the pages those scripts generate; for
bench/README.md, the fields and derivations of the bench/ script that wrote each file), rounded as
the page rounds them. A row of a table with no data behind it fails, as does a generated row that
the page lacks. Figures that no committed file holds (timings taken by hand, estimates, the
reference note's figures) are listed in `UNTRACED`, whose entries must still be on their pages, so
that the list stays true.

The checks are split by subject, each test module with its collectors (one function per table or
group of sentences, returning `Figure`s), its `COLLECTORS`, its `FIGURES = collect(COLLECTORS)`
and one test per figure:

- test_results_learning.py: results/learning.md, results/marl/learning.md, the learning results
  and sentences of README.md and results/README.md, the docs' algorithm pages;
- test_results_offline.py: results/offline/** (the generated offline.md pages, the READMEs' tables
  and sentences);
- test_results_bench.py: bench/README.md and the README's throughput table (bench/results/);
- test_results_pages.py: `XFAIL` against the figures of all three, and `UNTRACED` against its
  pages.

This module holds what they share: reading pages and files, `Figure` and `check`, markdown tables,
sentence templates, the data helpers more than one module reads, `UNTRACED`, `XFAIL`, `collect`
and the bodies of the per-module tests.

Nothing here trains or reaches the network; the checks together read about 160 JSON files.
"""

from __future__ import annotations

import functools
import importlib.util
import json
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

from factorl.core.config import saved_settings
from factorl.report import t_interval

ROOT = Path(__file__).resolve().parents[1]

# ------------------------------------------------------------------------------------ helpers


def _bench(name: str):
    """A script of bench/ as a module (under a name of its own: test_report loads them too)."""
    spec = importlib.util.spec_from_file_location(
        f"page_figures_{name}", ROOT / "bench" / f"{name}.py"
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


def find_once(figures, page, label, text) -> re.Match | None:
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
    m = find_once(figures, page, label, text)
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
    m = find_once(figures, page, label, text)
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


# --------------------------------------------------------- data that more than one module reads


def offline_rows(folder: str) -> list[dict[str, Any]]:
    """bench/offline_protocol.py's rows (algorithm x dataset x settings its files changed from
    the command's, mean and interval over seeds) from the results files in `folder`."""
    proto = bench_offline()
    paths = sorted((ROOT / folder).glob("*__*__s*.json"))
    algos = sorted({path.name.split("__")[0] for path in paths})
    command_sets = proto._sets(algos, data(f"{folder}/summary.json")["settings"]["set"])
    groups: dict[tuple[str, str, str, str], list[tuple[int, dict]]] = defaultdict(list)
    for path in paths:
        parts = path.stem.split("__")
        run = data(f"{folder}/{path.name}")
        assert parts[0] == run["algo"] and parts[1] == safe(run["env"]), f"{folder}/{path.name}"
        label = proto.ONLINE
        if len(parts) == 4:
            (label,) = [k for k, tail in proto.DATASETS if parts[2] == f"dataset={parts[1]}-{tail}"]
        changed = proto.changed_settings(run["config"], dict(command_sets[run["algo"]]))
        key = (run["env"], run["algo"], label, json.dumps(changed, sort_keys=True))
        groups[key].append((int(parts[-1][1:]), run))
    rows = []
    for (env, algo, label, changed), seeds in groups.items():
        seeds.sort(key=lambda s: s[0])
        offline = [offline_end(r) for _, r in seeds]
        rows.append(
            {
                "env": env,
                "algo": algo,
                "dataset": label,
                "changed_settings": json.loads(changed),
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


LEARNING = "results/learning"


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


def demo_bin_mean(path: str) -> str | None:
    """A results file's `agent.demo_bin_mean`, "others" where its config predates the setting
    (the only mean there was: `saved_settings` fills it in); None if there is no such file."""
    if not (ROOT / path).exists():
        return None
    return saved_settings(data(path)["config"])[1]["agent.demo_bin_mean"]


def dmc_rows() -> dict[tuple[str, str, str], dict[str, Any]]:
    """The Control Suite protocol's rows by (task, algorithm, dataset): each such has one set
    of settings at a time (a rerun at others moves the earlier files aside)."""
    rows = offline_rows("results/offline/dmc")
    keyed = {(r["env"], r["algo"], r["dataset"]): r for r in rows}
    assert len(keyed) == len(rows), "two rows of one algorithm and dataset at other settings"
    return keyed


def learning_run(algo: str, env: str, seed: int, folder: str = LEARNING) -> dict[str, Any]:
    return data(f"{folder}/{algo}__{safe(env)}__s{seed}.json")


def ratios(algo: str, tail: str) -> list[float]:
    """factorl's env steps/s over JaxMARL's, round by round (pair by pair)."""
    rounds = data(MARL_JSON.format(side="jaxmarl", algo=algo, tail=tail))["rounds"]
    return [
        r["factorl"]["env_steps_per_s_after_compile"]
        / r["jaxmarl"]["env_steps_per_s_after_compile"]
        for r in rounds
    ]


def jaxmarl_qmix_1e7() -> list[float]:
    return [
        float(
            data(f"bench/results/marl-jaxmarl-mpe-qmix-1e7-s{s}.json")["rounds"][0]["jaxmarl"][
                "test_return"
            ]
        )
        for s in range(5)
    ]


BENCH = "bench/README.md"


# ------------------------------------------------------------------- figures with no data file

#: (page, text, why): figures on the pages that no committed results file holds. Each text must
#: still be on its page (test_results_pages.py); in a checked table cell they are the only numbers
#: allowed without data.
UNTRACED: list[tuple[str, str, str]] = [
    (
        "docs/arsq.md",
        "| runner, env id, seed | 2k | 4k | 6k | 8k | 10k | 12k | env steps/s |",
        "the Pendulum table: runs with no committed results file",
    ),
    (
        "docs/cqn_as.md",
        "| execution | seed | 8k | 10k | 12k | 14k | 16k | 20k | 24k |",
        "the Pendulum table: runs with no committed results file, except the batch 64 rows "
        "(test_results_learning.py checks those)",
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


# ----------------------------------------------------------------------------------- collecting


def collect(collectors: Iterable[Callable[[], list[Figure]]]) -> list[Figure]:
    """Every figure of every check in `collectors`; a check that cannot read its page or data is
    a failing figure of its own (the module still collects)."""
    out, ids = [], defaultdict(int)
    for collector in collectors:
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


def page_tests(figures: list[Figure], pages: set[str], more_than: int):
    """A test module's two tests over its `figures`: one per figure (those in `XFAIL` must fail,
    strict), and one that every page in `pages` gave figures, more than `more_than` in all.
    A module binds them to its own names: `test_a, test_b = page_tests(...)`."""

    @pytest.mark.parametrize(
        "figure",
        [
            pytest.param(
                f,
                id=f.id,
                marks=[pytest.mark.xfail(strict=True, reason=XFAIL[f.id])] if f.id in XFAIL else [],
            )
            for f in figures
        ],
    )
    def test_the_page_shows_what_the_data_holds(figure):
        problem = check(figure)
        if problem is not None:  # the message says it all: no traceback (cheaper for XFAILs)
            pytest.fail(problem, pytrace=False)

    def test_every_check_finds_its_figures():
        counts = defaultdict(int)
        for f in figures:
            counts[f.page] += 1
        assert pages <= set(counts), f"no figures read from {sorted(pages - set(counts))}"
        assert len(figures) > more_than, (
            f"only {len(figures)} figures: a table or sentence went unread"
        )

    return test_the_page_shows_what_the_data_holds, test_every_check_finds_its_figures
