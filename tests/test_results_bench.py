"""The measurements on the pages equal the bench/results files they quote (see page_figures.py):
bench/README.md, each figure against the fields and derivations of the bench/ script that wrote
its file, and the README's throughput table."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from page_figures import (
    BENCH,
    MARL_JSON,
    ROOT,
    Figure,
    N,
    Table,
    add,
    collect,
    data,
    dmc_rows,
    find_once,
    jaxmarl_qmix_1e7,
    marl_returns,
    marl_speeds,
    md_tables,
    page_tests,
    page_text,
    ratios,
    rules_in,
    sentence,
    statement,
    table,
    template,
)

# ------------------------------------------------------------------------------------ README.md


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


# ------------------------------------------------------------------------------ bench/README.md


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
    m = find_once(
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


# ---------------------------------------------------------------------------------------- tests

COLLECTORS: list[Callable[[], list[Figure]]] = [
    readme_throughput,
    bench_throughput,
    bench_host,
    bench_kill9,
    bench_device,
    bench_marl,
    bench_offline_floors,
]

FIGURES = collect(COLLECTORS)


PAGES = {
    "README.md",
    "bench/README.md",
}

test_the_page_shows_what_the_data_holds, test_every_check_finds_its_figures = page_tests(
    FIGURES, PAGES, more_than=600
)
