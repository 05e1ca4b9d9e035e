"""The learning results on the pages equal the results files they quote (see page_figures.py):
results/learning.md and results/marl/learning.md (bench/report.py's tables), the results tables
and sentences of README.md and results/README.md, and the docs' algorithm pages."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
from page_figures import (
    LEARNING,
    MARL_JSON,
    NUMBER,
    ROOT,
    Figure,
    N,
    add,
    at,
    bench_offline,
    bench_report,
    ci_figures,
    collect,
    compare_generated,
    data,
    demo_bin_mean,
    dmc_rows,
    final,
    jaxmarl_qmix_1e7,
    learning_run,
    list_figures,
    marl_returns,
    marl_speeds,
    md_tables,
    mean_ci,
    page_tests,
    page_text,
    point,
    ratios,
    runs,
    safe,
    seed_files,
    sentence,
    statement,
    table,
)

# -------------------------------------------------------------- pages bench/report.py generates


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


# --------------------------------------------------------------------------- hand-copied tables


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


# ------------------------------------------------------------------------------------ sentences


def hours(run: dict[str, Any]) -> float:
    return run["wall_time_s"] / 3600


def marl_finals(algo: str, env: str, key: str = "eval_return") -> list[float]:
    return [final(r, key) for r in runs("results/marl", algo, env)]


def marl_mean_at(algo: str, env: str, step: int, key: str = "eval_return") -> float:
    return float(np.mean([at(r, step, key) for r in runs("results/marl", algo, env)]))


MPE = "jaxmarl:MPE_simple_spread_v3"
SMAX = "jaxmarl:smax-3m"


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


def cqn_medium_seeds(seeds: list[int], total: int, *, prefix: str) -> tuple[str, dict]:
    """The seeds of a row that may be part-way through its seeds: "" once all `total` are in,
    else `prefix` + "seed {s0} so far" / "seeds {s0}-{s1} so far" (a template and its values)."""
    if len(seeds) == total:
        return "", {}
    if len(seeds) == 1:
        return prefix + "seed {s0} so far", {"s0": seeds[0]}
    return prefix + "seeds {s0}-{s1} so far", {"s0": min(seeds), "s1": max(seeds)}


def offline_sentence(figures, page) -> None:
    """The offline-to-online summary the README and results/README.md give. CQN's walker-walk
    medium row is quoted at whichever bin mean its files were trained with (all one: the
    table's check) and with the seeds it has so far."""
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
    earlier = {
        demo_bin_mean(p)
        for p in seed_files("results/offline/dmc", "cqn", "dmc:walker-walk", "medium-v0")
    } == {"others"}
    # the protocol's seeds
    n_seeds = len(rows[("dmc:walker-walk", "decqn", "medium")]["seeds"])
    source = "results/offline/dmc/*.json"
    if page == "README.md":
        seeds, seed_values = cqn_medium_seeds(cqn["seeds"], n_seeds, prefix=", ")
        offline = f"({{cqn_o}} after the offline phase{seeds})"
        qualifier = (
            f" {offline}, with its demonstration losses' earlier bin mean (being rerun at the "
            "default);"
            if earlier
            else f" at its default bin mean {offline};"
        )
        sentence(
            figures,
            page,
            "offline dmc",
            "DecQN from the datasets ends above online CQN at 100k env steps (walker-walk {ww_m} "
            "and {ww_mr} against {ww_cqn}, cheetah-run {cr_m} and {cr_mr} against {cr_cqn}, {n} "
            "seeds); CQN from walker-walk's medium dataset ends at {cqn_f}" + qualifier,
            {
                **values,
                **seed_values,
                "n": n_seeds,
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
    one = len(cqn["seeds"]) == 1
    cqn_values: dict[str, Any] = {
        "o": cqn["offline_end_eval"]["mean"],
        "f": cqn["final_eval"]["mean"],
    }
    if not one:
        cqn_values["oh"] = mean_ci(cqn["offline_end_eval"]["per_seed"])[1]
        cqn_values["fh"] = mean_ci(cqn["final_eval"]["per_seed"])[1]
    seeds, seed_values = cqn_medium_seeds(cqn["seeds"], n_seeds, prefix="")
    cqn_text = (
        "CQN from walker-walk's medium dataset, with its demonstration losses' earlier bin mean "
        "(`agent.demo_bin_mean others`, being rerun at the default): "
        if earlier
        else "CQN from walker-walk's medium dataset at its default bin mean: "
    )
    cqn_text += (
        "{o} after the offline phase (DecQN's: {doff} ± {doffh}), {f} at 100k"
        if one
        else "{o} ± {oh} after the offline phase (DecQN's: {doff} ± {doffh}), {f} ± {fh} at 100k"
    )
    cqn_text += f" ({seeds or 'seeds {s0}-{s1}'})."
    if not seeds:
        seed_values = {"s0": min(cqn["seeds"]), "s1": max(cqn["seeds"])}
    sentence(
        figures,
        page,
        "offline dmc",
        "on `dmc:walker-walk`, DecQN from the medium ({wsm}M steps) and medium-replay ({wsr}k) "
        "datasets reaches {ww_m} ± {ww_mh} and {ww_mr} ± {ww_mrh} at 100k env steps, against "
        "online CQN's {ww_cqn} ± {ww_cqnh}; on `dmc:cheetah-run`, DecQN from medium ({csm}M) and "
        "medium-replay ({csr}k) reaches {cr_m} ± {cr_mh} and {cr_mr} ± {cr_mrh}, against online "
        "CQN's {cr_cqn} ± {cr_cqnh} (seeds 0-2). " + cqn_text,
        {
            **{k: v[0] for k, v in cis.items()},
            **{f"{k}h": v[1] for k, v in cis.items()},
            "wsm": steps[("walker-walk", "medium")] / 1e6,
            "wsr": steps[("walker-walk", "medium-replay")] / 1e3,
            "csm": steps[("cheetah-run", "medium")] / 1e6,
            "csr": steps[("cheetah-run", "medium-replay")] / 1e3,
            **cqn_values,
            **seed_values,
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


def cqn_as_batch64_rows() -> list[Figure]:
    """docs/cqn_as.md's Pendulum table, its "batch 64" rows: each cell the evaluation of the
    results file in results/variants/cqn_as-pendulum-batch64 at that step, and a row per file."""
    page, folder = "docs/cqn_as.md", "results/variants/cqn_as-pendulum-batch64"
    t = table(page, "execution", "seed", "16k")
    figures: list[Figure] = []
    shown = set()
    for line, row in t.rows:
        execution, _, batch = row[0].partition(", batch ")
        if batch != "64":
            continue
        name = f"cqn_as__gym-Pendulum-v1__execution={execution}__s{row[1]}.json"
        path = ROOT / folder / name
        if not path.is_file():
            add(figures, page, line, f"{row[0]} seed {row[1]}", row[0], None, f"{folder}/{name}")
            continue
        shown.add(name)
        run = data(f"{folder}/{name}")
        ran = (run["config"]["agent"]["execution"], run["config"]["replay"]["batch_size"])
        what = f"{row[0]} seed {row[1]}"
        add(figures, page, line, f"{what}: settings", row[0], ran == (execution, 64), name)
        curve = {r["env_step"]: r["eval_return"] for r in run["curve"]}
        for column, cell in zip(t.header[2:], row[2:], strict=True):
            step = int(column.removesuffix("k")) * 1000
            if cell or step in curve:
                add(figures, page, line, f"{what} at {column}", cell or None, curve.get(step), name)
    for path in sorted((ROOT / folder).glob("*.json")):
        if path.name not in shown:
            add(figures, page, t.line, f"{path.name}: row", None, path.name, folder)
    ensemble_s1 = data(f"{folder}/cqn_as__gym-Pendulum-v1__execution=ensemble__s1.json")
    sentence(
        figures,
        page,
        "batch 64, ensembling",
        "with ensembling seed 1 is still at {a} at 16k, so the quickstart keeps batch 128",
        {"a": at(ensemble_s1, 16_000)},
        folder,
    )
    return figures


# ---------------------------------------------------------------------------------------- tests

COLLECTORS: list[Callable[[], list[Figure]]] = [
    learning_md,
    marl_learning_md,
    readme_results,
    marl_tables,
    docs_algorithm_tables,
    results_vector_table,
    results_200k_table,
    readme_sentences,
    results_readme_sentences,
    docs_sentences,
    cqn_as_batch64_rows,
]

FIGURES = collect(COLLECTORS)


PAGES = {
    "README.md",
    "results/README.md",
    "results/learning.md",
    "results/marl/learning.md",
    "docs/sac.md",
    "docs/td3.md",
    "docs/cqn.md",
    "docs/revalued.md",
    "docs/decqn.md",
    "docs/qmix.md",
    "docs/vdn.md",
    "docs/arsq.md",
}

test_the_page_shows_what_the_data_holds, test_every_check_finds_its_figures = page_tests(
    FIGURES, PAGES, more_than=600
)
