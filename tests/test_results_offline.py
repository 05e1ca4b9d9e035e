"""The offline results on the pages equal the results files they quote (see page_figures.py):
results/offline/** (bench/offline_protocol.py's offline.md pages, the READMEs' tables, sentences
and commits)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable

from page_figures import (
    LEARNING,
    ROOT,
    Figure,
    N,
    add,
    bench_offline,
    ci_figures,
    collect,
    compare_generated,
    data,
    demo_bin_mean,
    dmc_rows,
    learning_run,
    md_tables,
    offline_rows,
    page_tests,
    page_text,
    rules_in,
    safe,
    seed_files,
    sentence,
    statement,
    table,
)

from factorl.report import EXPERT_LEVELS

# ---------------------------------------------------- pages bench/offline_protocol.py generates


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
    said = "An algorithm with settings in brackets: its results files ran at those"
    labelled = any(r["changed_settings"] for r in offline_rows(folder))
    if labelled or said in body:  # the sentence stands where a row has brackets, only there
        add(
            figures,
            page,
            body[: body.find(said)].count("\n") + 1 if said in body else 0,
            "what an algorithm's brackets mean",
            said if said in body else None,
            labelled,
            f"the changed settings of {folder}/'s files",
        )
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
        rows = {
            (proto.algorithm_text(r["algo"], r["changed_settings"]), r["dataset"]): r
            for r in offline_rows(folder)
        }
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
        # "CQN*": trained with the demonstration losses' earlier bin mean (the note below it)
        starred = name.endswith("*")
        algo = name.rstrip("*").lower()
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
            # absent, or a starred row's, which the run at the current default replaces
            add(
                figures,
                page,
                line,
                what,
                offline,
                bool(m) and not any(demo_bin_mean(w) == "all" for w in waiting),
                "those seeds' results files absent or trained at the earlier bin mean",
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
        if algo == "cqn" and label != "online":
            means = sorted({demo_bin_mean(p) for p in seed_files(folder, algo, env, f"{label}-v0")})
            add(
                figures,
                page,
                line,
                f"{what}: the demonstration losses' bin mean",
                "others" if starred else "all",
                ", ".join(means),
                f"{source} config agent.demo_bin_mean",
            )
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
    folder = "results/offline/dmc"
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
    # CQN from walker-walk's medium data: the trials at the default bin mean (the row) and the
    # ones they replaced (earlier-bin-mean/), seed by seed
    cqn = rows[("dmc:walker-walk", "cqn", "medium")]
    earlier_paths = seed_files(f"{folder}/earlier-bin-mean", "cqn", "dmc:walker-walk", "medium-v0")
    earlier = [data(p) for p in earlier_paths]
    if len(earlier) != 3 or any(demo_bin_mean(p) != "others" for p in earlier_paths):
        add(figures, page, 0, "earlier-bin-mean/: 3 trials at others", "3", False, folder)
    earlier_offline = [bench_offline().offline_eval(r) for r in earlier]
    default_offline = cqn["offline_end_eval"]["per_seed"]

    # "seed {s0} scored {d0}", "seeds {s0} and {s1} scored {d0} and {d1}", "seeds {s0}-{s1}
    # scored {d0}, {d1} and {d2}": the seeds and a listing of placeholders NAME0, NAME1, ...
    def seeds_of(n: int) -> str:
        return {1: "seed {s0}", 2: "seeds {s0} and {s1}"}.get(n, "seeds {s0}-{s1}")

    def listing(name: str, n: int) -> str:
        listed = [f"{{{name}{i}}}" for i in range(n)]
        return listed[0] if n == 1 else ", ".join(listed[:-1]) + " and " + listed[-1]

    n = len(default_offline)
    scores, which = listing("d", n), seeds_of(n)
    sentence(
        figures,
        page,
        "CQN from walker-walk medium",
        "its three trials at the earlier bin mean scored {e0}, {e1} and {e2}, near the source "
        "policy's {b}, where DecQN's scored {c} on average (CQN's demonstration margin loss on "
        "every dataset row is one candidate reason); at the default bin mean, "
        + f"{which} scored {scores}"
        + ".",
        {
            **{f"e{i}": v for i, v in enumerate(earlier_offline)},
            "b": ww["medium_checkpoint"]["eval_return"],
            "c": off("walker-walk", "decqn", "medium"),
            "s0": min(cqn["seeds"]),
            **({"s1": max(cqn["seeds"])} if n > 1 else {}),
            **{f"d{i}": v for i, v in enumerate(default_offline)},
        },
        f"{folder}/cqn__*medium-v0*.json, {folder}/earlier-bin-mean/, summary.json",
    )
    finals = [*cqn["final_eval"]["per_seed"], *(r["curve"][-1]["eval_return"] for r in earlier)]
    sentence(
        figures,
        page,
        "CQN from walker-walk medium online",
        "Online every one of these CQN trials ends between online CQN and DecQN from the same data "
        "({a}-{b} at 100k).",
        {"a": min(finals), "b": max(finals)},
        f"{folder}/cqn__*medium-v0*.json, {folder}/earlier-bin-mean/",
    )
    between = all(
        rows[("dmc:walker-walk", "cqn", "online")]["final_eval"]["mean"]
        < final
        < rows[("dmc:walker-walk", "decqn", "medium")]["final_eval"]["mean"]
        for final in finals
    )
    statement(
        figures,
        page,
        "CQN from walker-walk medium: each trial between",
        "ends between online CQN and DecQN from the same data",
        between,
        "results/offline/dmc/*.json",
    )
    # CQN from walker-walk's medium-replay data, seed by seed as they land
    replay = rows[("dmc:walker-walk", "cqn", "medium-replay")]
    replay_off, replay_final = (replay[k]["per_seed"] for k in ("offline_end_eval", "final_eval"))
    n = len(replay["seeds"])
    decqn_replay = rows[("dmc:walker-walk", "decqn", "medium-replay")]
    online = rows[("dmc:walker-walk", "cqn", "online")]
    sentence(
        figures,
        page,
        "CQN from walker-walk medium-replay",
        "From walker-walk's medium-replay data, CQN's "
        + f"{seeds_of(n)} scored {listing('o', n)} after the offline phase "
        + "(DecQN's mean there: {d}), and "
        + listing("f", n)
        + " at 100k, below online CQN's {c} and DecQN's {e} from the same data.",
        {
            "s0": min(replay["seeds"]),
            **({"s1": max(replay["seeds"])} if n > 1 else {}),
            **{f"o{i}": v for i, v in enumerate(replay_off)},
            **{f"f{i}": v for i, v in enumerate(replay_final)},
            "d": decqn_replay["offline_end_eval"]["mean"],
            "c": online["final_eval"]["mean"],
            "e": decqn_replay["final_eval"]["mean"],
        },
        f"{folder}/cqn__*medium-replay-v0*.json, summary.json",
    )
    statement(
        figures,
        page,
        "CQN from walker-walk medium-replay: each trial below",
        "below online CQN's",
        all(
            f < min(online["final_eval"]["mean"], decqn_replay["final_eval"]["mean"])
            for f in replay_final
        ),
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
    # CQN from data, trial by trial: "<task> <data> seed <s>[\\*] at <commits>", ";" between
    m = re.search(r"\*\*CQN\*\* from data[^:]*: (.+?) \(resumed", body, re.S)
    shown_trials = {}
    for item in (m[1] if m else "").split(";"):
        item = " ".join(item.split())  # lines wrap anywhere
        t = re.fullmatch(r"(\S+) (\S+) seed (\d+)(\\\*)? at (.+)", item)
        if t is None:
            add(figures, page, 0, f"CQN commits item {item!r}", item, None, folder)
            continue
        shown_trials[(t[1], t[2], int(t[3]))] = (bool(t[4]), re.findall(r"\b[0-9a-f]{7}\b", t[5]))
    line = body[: m.start(1)].count("\n") + 1 if m else 0
    for path in sorted((ROOT / folder).glob("cqn__*__dataset=*.json")):
        f = re.fullmatch(r"cqn__dmc-(.+?)__dataset=dmc-\1-(.+)-v0__s(\d+)\.json", path.name)
        key = (f[1], f[2], int(f[3]))
        what = f"commits of CQN {' '.join(map(str, key))}"
        shown = shown_trials.pop(key, None)
        found = sorted(revisions(path.name)[0])
        earlier = demo_bin_mean(f"{folder}/{path.name}") == "others"
        add(
            figures,
            page,
            line,
            what,
            shown and ("starred " * shown[0] + ", ".join(sorted(shown[1]))),
            "starred " * earlier + ", ".join(found),
            f"{folder}/{path.name} segments and config agent.demo_bin_mean (a star: others)",
        )
    for key in shown_trials:
        add(figures, page, line, f"CQN commits of {key}", " ".join(map(str, key)), None, folder)
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


# ---------------------------------------------------------------------------------------- tests

COLLECTORS: list[Callable[[], list[Figure]]] = [
    offline_md,
    offline_100k_md,
    offline_dmc_md,
    offline_readme_tables,
    offline_dmc_readme_table,
    offline_readme_sentences,
    offline_dmc_sentences,
    offline_dmc_commits,
]

FIGURES = collect(COLLECTORS)


PAGES = {
    "results/offline/README.md",
    "results/offline/offline.md",
    "results/offline/pendulum-100k/offline.md",
    "results/offline/dmc/README.md",
    "results/offline/dmc/offline.md",
}

test_the_page_shows_what_the_data_holds, test_every_check_finds_its_figures = page_tests(
    FIGURES, PAGES, more_than=300
)
