#!/usr/bin/env python3
"""Renders BENCHMARKS.md from the outputs scripts/benchmarks.sh keeps in one directory.

Usage: render-benchmarks.py DIR --revision REV --date YYYY-MM-DD > BENCHMARKS.md

Reads, when present: cluster.log and runtimes.log (the tables the benches print),
weak.csv and strong.csv (sweeps), find-max.csv, replay.json, coldstart-trials.csv,
coldstart-bursts.csv, coldstart-runtimes.log, durability.log, the failover reports, chaos.json
and chaos-ha.json. A question whose outputs are missing is said to be
missing, never filled in.
"""

import argparse
import csv
import json
import re
import statistics
import sys
from pathlib import Path

INTRO = """# Volley benchmarks: the current figures

One table per question, each with its date, revision and command, all rendered by
`scripts/render-benchmarks.py` from the outputs of `scripts/benchmarks.sh`. How the
figures moved, newest first, is in [docs/history.md](docs/history.md).

## The machine and its floor

Every figure: the project's `rust-svc` VM, 2 cores (AMD EPYC, virtualised), 24 GiB,
Debian 12, release builds. Client, dispatcher, workers and Redis share the 2 cores.
A TCP ping-pong between two threads over loopback takes 62 µs p50, 94 µs p99 on it: the
floor under any latency below. The VM drifts by tens of µs within minutes, so compare
rows of one run, not runs of two days.
"""


def heading(title, args, command):
    return f"\n## {title} ({args.date}, `{args.revision}`)\n\n`{command}`\n"


def missing(what):
    return f"\nNot measured in this run: {what} is missing.\n"


def section(d, name, render):
    """`render` of the output `name` in `d`, or the note that it is missing."""
    path = d / name
    return render(path) if path.exists() else missing(name)


def tables_of(log):
    """The markdown tables a bench printed, in order, each with the caption line before it."""
    lines = log.read_text().splitlines()
    out = []
    for i, line in enumerate(lines):
        if not line.startswith("|"):
            continue
        header = i + 1 < len(lines) and lines[i + 1].startswith("|---")
        if header:
            caption = lines[i - 1] if i > 0 else ""
            out.append("")
            if caption and not caption.startswith(("|", "==")):
                out.extend([caption, ""])
        out.append(line)
    return "\n".join(out).strip() + "\n"


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def num(v):
    return float(v) if v not in ("", None) else None


def scaling(d):
    weak, strong = d / "weak.csv", d / "strong.csv"
    if not weak.exists():
        return missing("weak.csv")
    data = [r for r in rows(weak) if r["OpType"] == "sleep" and r["TaskMs"] == "100"]
    workers = sorted({int(r["nWorkers"]) for r in data})
    modes = [m for m in ("local", "pull", "push") if any(r["Mode"] == m for r in data)]
    out = ["| 100 ms sleep, efficiency (mean of repeats) | " + " | ".join(str(w) for w in workers) + " |",
           "|---|" + "---:|" * len(workers)]
    for m in modes:
        cells = []
        for w in workers:
            e = [num(r["Efficiency"]) for r in data if r["Mode"] == m and int(r["nWorkers"]) == w]
            e = [x for x in e if x is not None]
            cells.append(f"{statistics.mean(e):.2f} %" if e else "–")
        out.append(f"| {m} | " + " | ".join(cells) + " |")
    text = "\n" + "\n".join(out) + "\n"
    if strong.exists():
        s = rows(strong)
        by = {}
        for r in s:
            by.setdefault(r["Mode"], {})[int(r["nWorkers"])] = float(r["TotalTime"])
        parts = []
        for m, t in sorted(by.items()):
            lo, hi = min(t), max(t)
            parts.append(f"{m} {t[lo]:.2f} s on {lo} → {t[hi]:.3f} s on {hi} (speedup {t[lo] / t[hi]:.1f})")
        text += "\nStrong scaling: " + "; ".join(parts) + ".\n"
    return text


def find_max(path):
    out = ["| mode | highest offered rate meeting the SLO | p50 / p99 there |", "|---|---:|---:|"]
    data = rows(path)
    for m in ("local", "pull", "push"):
        passing = [r for r in data if r["mode"] == m and r["verdict"] == "pass"]
        if not passing:
            if any(r["mode"] == m for r in data):
                out.append(f"| {m} | none of the probes | – |")
            continue
        best = max(passing, key=lambda r: float(r["offered_rate"]))
        out.append(f"| {m} | {float(best['offered_rate']):,.0f}/s | {float(best['p50_ms']):.2f} / {float(best['p99_ms']):.1f} ms |")
    return "\n" + "\n".join(out) + "\n"


def replay(path):
    r = json.loads(path.read_text())
    out = [
        "| measure | value |",
        "|---|---:|",
        f"| scheduled · issued · completed | {r['scheduled']:,} · {r['issued']:,} · {r['completed']:,} |",
        f"| failed · refused · unfinished · unknown | {r['failed']} · {r['refused']} · {r['unfinished']} · {r['unknown']} |",
        f"| latency from the intended send, p50 / p99 / p99.9 | {r['p50_ms']:.1f} / {r['p99_ms']:.1f} / {r['p999_ms']:,.0f} ms |",
        f"| slowdown p50 / p99 | {r['slowdown_p50']:.2f} / {r['slowdown_p99']:.2f} |",
        f"| lateness p99 | {r['lateness_p99_ms']:.2f} ms |",
        f"| invitro's verdict | {verdict(r['verdict'])} |",
    ]
    return "\n" + "\n".join(out) + "\n"


def verdict(v):
    if isinstance(v, dict):
        said = "pass" if v.get("pass") else "fail"
        notes = len(v.get("warnings", [])) + len(v.get("failures", []))
        return f"{said}, {notes} warnings or failures" if notes else said
    return str(v)


STAGES = [
    ("cold − warm latency", "extra_us"),
    ("submitted → decision", "queued_us"),
    ("decision → spawn", "decide_us"),
    ("spawn → the worker's `main`", "spawn_us"),
    ("`main` → init done", "init_us"),
    ("init done → registered", "register_us"),
    ("registered → dispatched", "dispatch_us"),
    ("residual the stages leave unexplained", "residual_us"),
]


def coldstart(d):
    trials, bursts = d / "coldstart-trials.csv", d / "coldstart-bursts.csv"
    if not trials.exists():
        return missing("coldstart-trials.csv")
    t = rows(trials)
    out = [f"| stage, over {len(t)} trials (ms) | min | median | max |", "|---|---:|---:|---:|"]
    for label, key in STAGES:
        v = [float(r[key]) / 1000 for r in t]
        out.append(f"| {label} | {min(v):.2f} | {statistics.median(v):.2f} | {max(v):.2f} |")
    text = "\n" + "\n".join(out) + "\n"
    if bursts.exists():
        b = rows(bursts)
        out = ["| slots per instance | policy | sent | lost | cold | p50 | p99 | needed instances ready after | peak instances |",
               "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in b:
            ready = f"{float(r['time_to_ready_s']):.2f} s" if r["time_to_ready_s"] else "never"
            out.append(f"| {r['slots']} | `{r['policy']}` | {r['sent']} | {r['lost']} | {r['cold_starts']} | "
                       f"{float(r['p50_ms']):.1f} ms | {float(r['p99_ms']):.1f} ms | {ready} | {r['peak_instances']} |")
        text += "\nBursts from zero:\n\n" + "\n".join(out) + "\n"
    return text


def chaos(path):
    reports = json.loads(path.read_text())
    if isinstance(reports, dict):
        reports = [reports]
    ha = any(r.get("takeover_ms") for r in reports)
    out = ["| mode | acknowledged | lost | unfinished | wrong | API mismatches | requeues |"
           + (" leader takeover | leaders deposed around the Redis restart |" if ha else ""),
           "|---|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if ha else "")]
    for r in reports:
        takeover = ", ".join(f"{t:,.0f} ms" for t in r.get("takeover_ms", [])) or "–"
        out.append(f"| {r['mode']} | {r['acknowledged']:,} | {r['lost']} | {r['unfinished']} | {r['wrong']} | "
                   f"{r['api_mismatches']} | {r['requeues']} |"
                   + (f" {takeover} | {r.get('leaders_deposed', 0)} |" if ha else ""))
    return "\n" + "\n".join(out) + "\n"


def durability(path):
    """scripts/redis-durability.sh's lines: tasks/s and CPU per task per store, as ranges
    over its runs, and each run's rate against the memory store's of the same run."""
    pattern = re.compile(r"^(\S+)\s+(\d+) tasks/s\s+dispatcher\s+([\d.]+) µs/task\s+redis\s+([\d.]+) µs/task"
                         r"\s+redis commands/task ([\d.]+)")
    runs, current = [], None
    for line in path.read_text().splitlines():
        if line.startswith("run "):
            current = {}
            runs.append(current)
        m = pattern.match(line)
        if m and current is not None:
            current[m.group(1)] = [float(x) for x in m.groups()[1:]]
    labels = [l for l in ("memory", "redis-off", "redis-aof-everysec", "redis-aof-always", "redis-off-ha")
              if any(l in r for r in runs)]
    span = lambda v, f: f"{f(min(v))} – {f(max(v))}" if min(v) != max(v) else f(v[0])
    out = ["| store | tasks/s | ÷ memory | dispatcher µs/task | Redis µs/task | Redis commands/task |",
           "|---|---:|---:|---:|---:|---:|"]
    for l in labels:
        got = [r[l] for r in runs if l in r]
        ratio = [r[l][0] / r["memory"][0] for r in runs if l in r and "memory" in r and r["memory"][0]]
        redis = "–" if l == "memory" else span([g[2] for g in got], lambda x: f"{x:.2f}")
        cmds = "–" if l == "memory" else span([g[3] for g in got], lambda x: f"{x:.4f}")
        out.append(f"| {l} | {span([g[0] for g in got], lambda x: f'{x:,.0f}')} | "
                   f"{span(ratio, lambda x: f'{x:.2f}') if ratio else '–'} | "
                   f"{span([g[1] for g in got], lambda x: f'{x:.2f}')} | {redis} | {cmds} |")
    return "\n" + "\n".join(out) + "\n"


def failover(d):
    """The three `client failover` runs of scripts/benchmarks.sh, one row each."""
    cases = [("SIGKILL", "failover-kill/kill/failover-kill.json"),
             ("SIGSTOP, resumed 2 s after the takeover", "failover-stall/stall/failover-stall.json"),
             ("SIGSTOP, resumed 8 s later", "failover-stall-long/stall/failover-stall.json")]
    out = ["| fault | takeover | longest without a completion | p50 / p99 before | p50 / p99 in the window "
           "| refused | in doubt | lost | not terminal | old leader's exit |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    found = False
    for label, name in cases:
        path = d / name
        if not path.exists():
            out.append(f"| {label} | not measured in this run | | | | | | | | |")
            continue
        found = True
        r = json.loads(path.read_text())
        pp = lambda w: f"{r[w]['p50_ms']:.2f} / {r[w]['p99_ms']:,.1f} ms"
        exit_code = r.get("old_leader_exit")
        out.append(f"| {label} | {r['takeover_ms']:,.0f} ms | {r['service_gap_ms']:,.0f} ms | {pp('before')} | "
                   f"{pp('during')} | {r['refused']:,} | {r['in_doubt']:,} | {r['lost']} | {r['not_terminal']} | "
                   f"{'–' if exit_code is None else exit_code} |")
    return "\n" + "\n".join(out) + "\n" if found else missing("the failover reports")


def course(path):
    """The course FaaS's weak-scaling study through REST: TotalTime per mode and workers,
    the 1 s sleeps' efficiency (5 s over TotalTime) and each mode against local."""
    r = rows(path)
    times = {(x["Mode"], x["OpType"], int(x["nWorkers"])): float(x["TotalTime"]) for x in r}
    modes = [m for m in ("local", "pull", "push") if any(k[0] == m for k in times)]
    workers = sorted({k[2] for k in times})
    out = ["| mode | optype | " + " | ".join(f"{n} workers" if n > 1 else "1 worker" for n in workers) + " |",
           "|---|---|" + "---:|" * len(workers)]
    for optype in ("sleep", "no_op"):
        for m in modes:
            cells = [f"{times[(m, optype, n)]:.3f} s" if (m, optype, n) in times else "–" for n in workers]
            out.append(f"| {m} | {optype} | " + " | ".join(cells) + " |")
    top = workers[-1] if workers else 0
    notes = []
    for m in modes:
        t = times.get((m, "sleep", top))
        local = times.get(("local", "sleep", top))
        if t:
            ratio = f", {local / t:.3f} of local's speed" if local and m != "local" else ""
            notes.append(f"{m} {t:.3f} s ({t - 5:+.3f} s from the ideal 5 s, efficiency {5 / t:.3f}{ratio})")
    text = "\n" + "\n".join(out) + "\n"
    if notes:
        text += f"\nAt {top} workers, 1 s sleeps: " + "; ".join(notes) + ".\n"
    return text


def cpu_curve(path):
    """CPU per task by role against the offered rate (`client load --curve`)."""
    out = ["| mode | workers × slots | target /s | offered /s | p50 ms | p99 ms | generator µs | dispatcher µs | workers µs"
           " | floor µs (generator · relay · echo) | × floor |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for x in rows(path):
        short = "" if x["rate_ok"] == "true" else " (short)"
        floor = [num(x.get(k) or "nan") for k in ("floor_generator_us", "floor_relay_us", "floor_echo_us")]
        mine = [num(x["generator_us"]), num(x["dispatcher_us"]), num(x["worker_us"])]
        times = " · ".join(f"{m / f:.1f}" if f > 0 else "–" for m, f in zip(mine, floor))
        floors = " · ".join(f"{f:.1f}" for f in floor) if all(f > 0 for f in floor) else "–"
        point = x.get("point") or "listed"
        target = f"{num(x['target_rate']):,.0f}"
        if point == "highest":
            target += " (highest meeting the SLO)"
        elif point == "highest-capped":
            target += " (the search's ceiling met the SLO)"
        steal = num(x.get("steal_pct") or "0")
        if steal >= 1.0:
            target += f" (steal {steal:.1f} %)"
        out.append(f"| {x['mode']} | {x['workers']} × {x['slots']} | {target} | "
                   f"{num(x['offered_rate']):,.0f}{short} | {num(x['p50_ms']):.2f} | {num(x['p99_ms']):.2f} | "
                   f"{mine[0]:.1f} | {mine[1]:.1f} | {mine[2]:.1f} | {floors} | {times} |")
    return "\n" + "\n".join(out) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dir", type=Path)
    p.add_argument("--revision", required=True)
    p.add_argument("--date", required=True)
    a = p.parse_args()
    d = a.dir
    if not d.is_dir():
        sys.exit(f"render-benchmarks: {d} is not a directory")
    parts = [INTRO]
    parts.append(heading("Throughput, CPU per task and latency", a,
                         "VOLLEY_BENCH_SKIP_REDIS=1 VOLLEY_BENCH_MODES=pull,push VOLLEY_BENCH_TASKS=100000 "
                         "VOLLEY_BENCH_LATENCY_SAMPLES=2000 cargo bench -p volley-perf --bench cluster"))
    parts.append(section(d, "cluster.log", lambda p: "\n" + tables_of(p)))
    parts.append(heading("User functions: warm latency, throughput, start to READY", a,
                         "cargo bench -p volley-perf --bench runtimes"))
    parts.append(section(d, "runtimes.log", lambda p: "\n" + tables_of(p)))
    parts.append(heading("Scaling, closed loop", a,
                         "client sweep --scaling weak|strong --workers 1,2,4,8,16 --modes local,pull,push (scripts/benchmarks.sh)"))
    parts.append(scaling(d))
    parts.append(heading("Open loop: the highest rate that meets an SLO", a,
                         "client load --find-max --slo 'p99<50ms,success>=0.999' --rates 1000..200000 --optype noop "
                         "--arrival poisson --fresh --workers 2 --slots 2"))
    parts.append(section(d, "find-max.csv", find_max))
    parts.append(heading("Open loop: CPU per task against the offered rate", a,
                         "client load --curve --for 10s --warmup 2s --drain 5s (noop, Poisson, one ExecuteStream call)"))
    parts.append(section(d, "cpu-curve.csv", cpu_curve))
    parts.append(heading("Trace replay: the Azure Functions 2019 sample", a,
                         "client replay --functions 50 --minutes 540..560 --compress 10 --cluster pull:2:16"))
    parts.append(section(d, "replay.json", replay))
    parts.append(heading("Cold starts", a, "client coldstart --scenarios zero --trials 30 --init-ms 250 --keepalive 1s"))
    parts.append(coldstart(d))
    parts.append(heading("Cold starts per language", a,
                         "client coldstart --runtimes python,node,java,native --trials 30 --keepalive 500ms"))
    parts.append(section(d, "coldstart-runtimes.log", lambda p: "\n" + tables_of(p)))
    parts.append(heading("The course FaaS's clients through REST: weak scaling", a,
                         "scripts/course-weak-scaling.sh (5 tasks per worker, a thread each, 100 ms polls)"))
    parts.append(section(d, "course/performance_test.csv", course))
    parts.append(heading("The durable path: Redis against the memory store", a,
                         "scripts/redis-durability.sh (300,000 noops, pull, 2 workers × 1 slot, two runs)"))
    parts.append(section(d, "durability.log", durability))
    parts.append(heading("Failover of an --ha pair under load", a,
                         "client failover --faults kill|stall --rate 5000 (lease 1,000 ms, 2 push workers × 2 slots)"))
    parts.append(failover(d))
    parts.append(heading("Chaos", a, "client chaos --for 60s --modes push,pull --seed 7"))
    parts.append(section(d, "chaos.json", chaos))
    parts.append(heading("Chaos with an --ha pair, the leader killed", a,
                         "client chaos --for 60s --modes push,pull --seed 7 --ha"))
    parts.append(section(d, "chaos-ha.json", chaos))
    sys.stdout.write("".join(parts))


if __name__ == "__main__":
    main()
