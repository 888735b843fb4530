#!/usr/bin/env python3
"""Benchmark this profiler side by side with plain Python, Fil and memray.

    python benchmarks/run.py [--quick] [--only NAME[,NAME...]] [--reps N] [--tools plain,ours,fil,memray] [--keep]

Creates (once, cached in benchmarks/.venvs/) one virtualenv per tool, runs every workload in benchmarks/workloads/
under each tool, alternating the tools within each repetition (plain, ours, fil, memray, plain, ours, ...) so that a
slow drift of the machine hits all of them alike, and prints a table. The same table goes to
benchmarks/results/latest.md and, with every run's raw numbers, to benchmarks/results/latest.json.
See benchmarks/README.md for what each workload and column means. This measures; it never fails on a timing.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench import catalog, envs, measure, report  # noqa: E402

BENCH_DIR = envs.BENCH_DIR
RUNS_DIR = os.path.join(BENCH_DIR, ".build", "runs")
RESULTS_DIR = os.path.join(BENCH_DIR, "results")

MAX_TIMEOUT_S = 600
MIN_TIMEOUT_S = 120
TIMEOUT_FACTOR = 20  # a tool may take this many times plain's first run before it is killed


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="scale every workload down ~10x (FILBENCH_SCALE=0.1)")
    p.add_argument("--scale", type=float, help="set FILBENCH_SCALE explicitly (overrides --quick)")
    p.add_argument("--only", help="comma-separated workload names (startup always runs: it is the peak baseline)")
    p.add_argument("--reps", type=int, default=3, help="repetitions per workload and tool (default 3)")
    p.add_argument("--tools", default=",".join(envs.TOOLS), help="comma-separated subset of plain,ours,fil,memray")
    p.add_argument("--keep", action="store_true", help="keep profiler output under benchmarks/.build/runs/")
    p.add_argument("--python", default=sys.executable, help="interpreter to build the virtualenvs from")
    args = p.parse_args(argv)
    args.scale = args.scale if args.scale is not None else (0.1 if args.quick else 1.0)
    requested = [t for t in args.tools.split(",") if t]
    args.tools = [t for t in envs.TOOLS if t in requested]  # always in the alternation order plain, ours, fil, memray
    if not args.tools or set(requested) - set(envs.TOOLS):
        p.error(f"--tools takes a subset of {','.join(envs.TOOLS)}")
    names = [w.name for w in catalog.WORKLOADS]
    if args.only:
        wanted = args.only.split(",")
        bad = [n for n in wanted if n not in catalog.BY_NAME]
        if bad:
            p.error(f"unknown workload(s) {', '.join(bad)}; choose from {', '.join(names)}")
        args.workloads = [w for w in catalog.WORKLOADS if w.name in wanted or w.name == "startup"]
    else:
        args.workloads = list(catalog.WORKLOADS)
    if args.reps < 1:
        p.error("--reps must be at least 1")
    return args


def child_env(tool_env, scale):
    env = dict(os.environ)
    for key in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "FILBENCH_PREPARE"):
        env.pop(key, None)
    env["VIRTUAL_ENV"] = tool_env.path
    env["PATH"] = os.path.join(tool_env.path, "bin") + os.pathsep + env.get("PATH", "")
    env["FILBENCH_SCALE"] = repr(scale)
    env["PYTHONHASHSEED"] = "0"
    return env


def prepare(workload, scale):
    """The untimed setup a workload asks for, run with the harness's own interpreter (stdlib only)."""
    env = dict(os.environ, FILBENCH_PREPARE="1", FILBENCH_SCALE=repr(scale))
    done = subprocess.run([sys.executable, workload.path], env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        return f"prepare step failed: {done.stderr.strip()[-300:]}"
    return None


def measure_once(tool, tool_env, workload, rep, scale, timeout_s, keep):
    run_dir = os.path.join(RUNS_DIR, workload.name, f"{tool}-{rep}")
    out_dir = os.path.join(run_dir, "out")
    os.makedirs(out_dir, exist_ok=True)
    cmd, capture = catalog.command(tool, tool_env, workload, out_dir, scale)
    env = child_env(tool_env, scale)
    stderr_path = os.path.join(run_dir, "stderr.txt")
    run = measure.run_command(
        cmd,
        cwd=run_dir,
        env=env,
        timeout_s=timeout_s,
        stdout_path=os.path.join(run_dir, "stdout.txt"),
        stderr_path=stderr_path,
    )
    run.facts = measure.read_facts(stderr_path)
    if run.status == "ok" and not workload.render:
        if tool in ("ours", "fil"):
            run.reported_peak = measure.prof_peak(out_dir)
            if run.reported_peak is None:
                run.status, run.detail = "failed", "no readable peak-memory.prof: " + measure.tail(stderr_path)
        elif tool == "memray":
            run.reported_peak = measure.memray_peak(
                tool_env.bin("memray"), capture, os.path.join(run_dir, "stats.json"), env
            )
            if run.reported_peak is None:
                run.status, run.detail = "failed", "memray stats --json gave no peak_memory"
    if not keep:
        shutil.rmtree(out_dir, ignore_errors=True)
    return run


def describe(run):
    if run.status != "ok":
        return f"{run.status.upper()} after {run.wall_s:.2f} s: {run.detail[:200]}"
    text = f"{run.wall_s:6.2f} s  {run.max_rss_kib / 1024:8.1f} MiB RSS"
    if run.reported_peak is not None:
        text += f"  reported peak {run.reported_peak / report.MIB:.1f} MiB"
    return text


def main(argv=None):
    args = parse_args(argv)
    started = time.time()
    machine = report.machine_info()
    print(f"machine: {machine['cpu']}, {machine['usable_cores']} cores, Python {machine['python']}; "
          f"scale {args.scale}, {args.reps} repetitions")

    tool_envs = {}
    for tool in args.tools:
        tool_envs[tool] = envs.ensure(tool, python=args.python)
        e = tool_envs[tool]
        print(f"[{tool}] " + ("ready: " + json.dumps(e.versions) if e.available else "UNAVAILABLE: " + e.reason))

    shutil.rmtree(RUNS_DIR, ignore_errors=True)
    raw = {}
    table = {}
    for workload in args.workloads:
        raw[workload.name] = {t: [] for t in args.tools}
        cells = table[workload.name] = {}
        runnable = [t for t in args.tools if t in workload.tools and tool_envs[t].available]
        for tool in args.tools:
            if tool not in workload.tools:
                cells[tool] = {"status": "n/a"}
            elif not tool_envs[tool].available:
                cells[tool] = {"status": "unavailable"}
        if not runnable:
            continue
        if workload.prepare:
            problem = prepare(workload, args.scale)
            if problem:
                print(f"[{workload.name}] {problem}")
                for tool in runnable:
                    cells[tool] = {"status": "failed", "failure": problem}
                continue
        timeout_s = MAX_TIMEOUT_S
        for rep in range(args.reps):
            for tool in runnable:
                run = measure_once(tool, tool_envs[tool], workload, rep, args.scale, timeout_s, args.keep)
                raw[workload.name][tool].append(asdict(run))
                print(f"[{workload.name}] rep {rep + 1}/{args.reps} {tool:6} {describe(run)}", flush=True)
                if tool == "plain" and rep == 0 and run.status == "ok":
                    timeout_s = min(MAX_TIMEOUT_S, max(MIN_TIMEOUT_S, TIMEOUT_FACTOR * run.wall_s))
        for tool in runnable:
            cells[tool] = report.summarize_cell(raw[workload.name][tool])

    report.derive(table, args.tools)
    meta = {
        "command": " ".join(["python", "benchmarks/run.py", *(sys.argv[1:] if argv is None else argv)]),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "duration_s": round(time.time() - started, 1),
        "reps": args.reps,
        "scale": args.scale,
        "machine": machine,
        "tools": {t: {"available": e.available, "reason": e.reason, "versions": e.versions}
                  for t, e in tool_envs.items()},
    }
    print()
    print(report.text_table(table, args.tools))
    print(f"\n{meta['duration_s']:.0f} s in all")

    os.makedirs(RESULTS_DIR, exist_ok=True)
    with open(os.path.join(RESULTS_DIR, "latest.json"), "w") as f:
        json.dump({"meta": meta, "summary": table, "runs": raw}, f, indent=1, sort_keys=False)
    with open(os.path.join(RESULTS_DIR, "latest.md"), "w") as f:
        f.write(report.markdown(table, args.tools, meta))
    print(f"wrote {os.path.relpath(RESULTS_DIR)}/latest.json and latest.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
