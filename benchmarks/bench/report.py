"""From measured runs to the summary table: text for the terminal, Markdown and JSON for results/.

Per workload and tool: the median over successful repetitions of wall time and peak RSS; slowdown = median wall /
plain's median wall; the reported peak (median) against the workload's known true peak, after subtracting the same
tool's reported peak for `startup` (interpreter + numpy) so the error is about the workload's own memory; and for a
workload that holds a known number of live allocations, (peak RSS under the tool - plain's) / that number.
"""

import os
import platform
import statistics

MIB = 1024 * 1024

COLUMNS = [
    ("workload", "workload"),
    ("tool", "tool"),
    ("status", "status"),
    ("wall_s", "median wall s"),
    ("slowdown", "slowdown"),
    ("peak_rss_mib", "peak RSS MiB"),
    ("reported_peak_mib", "reported peak MiB"),
    ("true_peak_mib", "true peak MiB"),
    ("peak_error_pct", "peak err %"),
    ("overhead_bytes_per_alloc", "B/alloc overhead"),
]


def machine_info():
    """CPU model, cores, memory, OS and the harness's Python, as plain strings."""
    info = {"cpu": "unknown", "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0))}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    info["memory_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
                    break
    except OSError:
        pass
    info["os"] = platform.platform()
    info["python"] = platform.python_version()
    return info


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize_cell(runs):
    """Status and medians of one workload x tool from its list of Run (as dicts)."""
    ok = [r for r in runs if r["status"] == "ok"]
    bad = [r for r in runs if r["status"] != "ok"]
    if not runs:
        status = "not run"
    elif not bad:
        status = "ok"
    elif not ok:
        status = "timeout" if all(r["status"] == "timeout" for r in bad) else "failed"
    else:
        status = f"{len(bad)}/{len(runs)} failed"
    cell = {"status": status, "wall_s": _median([r["wall_s"] for r in ok])}
    rss = _median([r["max_rss_kib"] for r in ok])
    cell["peak_rss_mib"] = rss / 1024 if rss is not None else None
    peak = _median([r["reported_peak"] for r in ok])
    cell["reported_peak"] = peak
    cell["reported_peak_mib"] = peak / MIB if peak is not None else None
    facts = {}
    for r in ok:
        facts.update(r["facts"])
    cell["facts"] = facts
    if bad:
        cell["failure"] = bad[-1]["detail"]
    return cell


def derive(table, tools):
    """Fill slowdown, true peak, error and per-allocation overhead into table[workload][tool] cells in place."""
    startup = table.get("startup", {})
    for name, cells in table.items():
        plain = cells.get("plain", {})
        true_peak = next((c["facts"]["TRUE_PEAK_BYTES"] for c in cells.values()
                          if c.get("facts", {}).get("TRUE_PEAK_BYTES")), None)
        live = next((c["facts"]["LIVE_ALLOCATIONS"] for c in cells.values()
                     if c.get("facts", {}).get("LIVE_ALLOCATIONS")), None)
        for tool, cell in cells.items():
            if cell.get("wall_s") is None:
                continue
            if plain.get("wall_s") and tool != "plain":
                cell["slowdown"] = cell["wall_s"] / plain["wall_s"]
            if true_peak:
                cell["true_peak_mib"] = true_peak / MIB
                if cell.get("reported_peak") is not None:
                    baseline = startup.get(tool, {}).get("reported_peak")
                    if name != "startup" and baseline is not None:
                        net = cell["reported_peak"] - baseline
                        cell["baseline_subtracted_mib"] = baseline / MIB
                    else:
                        net = cell["reported_peak"]
                    cell["peak_error_pct"] = (net - true_peak) / true_peak * 100
            if live and tool != "plain" and plain.get("peak_rss_mib") is not None:
                cell["overhead_bytes_per_alloc"] = (cell["peak_rss_mib"] - plain["peak_rss_mib"]) * MIB / live


def _fmt(key, value):
    if value is None:
        return ""
    if key in ("wall_s",):
        return f"{value:.2f}"
    if key == "slowdown":
        return f"{value:.2f}x"
    if key in ("peak_rss_mib", "reported_peak_mib", "true_peak_mib"):
        return f"{value:.1f}"
    if key == "peak_error_pct":
        return f"{value:+.2f}"
    if key == "overhead_bytes_per_alloc":
        return f"{value:.1f}"
    return str(value)


def rows(table, tools):
    """One list of formatted strings per workload x tool, in COLUMNS order."""
    out = []
    for name, cells in table.items():
        for tool in tools:
            cell = cells.get(tool, {"status": "n/a"})
            out.append([name, tool] + [_fmt(key, cell.get(key)) for key, _ in COLUMNS[2:]])
    return out


def text_table(table, tools):
    header = [title for _, title in COLUMNS]
    body = rows(table, tools)
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    previous = None
    for r in body:
        if previous is not None and r[0] != previous:
            lines.append("")
        previous = r[0]
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    return "\n".join(lines)


def markdown(table, tools, meta):
    m = meta["machine"]
    lines = [
        "# Benchmark results",
        "",
        f"Run {meta['finished']} with `{meta['command']}` ({meta['reps']} repetitions, scale {meta['scale']}).",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), {m.get('memory_gib', '?')} GiB, "
        f"{m['os']}, Python {m['python']}.",
        "",
        "Tools: " + "; ".join(_tool_line(t, meta["tools"][t]) for t in tools) + ".",
        "",
        "| " + " | ".join(title for _, title in COLUMNS) + " |",
        "|" + "|".join("---" if i < 3 else "---:" for i in range(len(COLUMNS))) + "|",
    ]
    for r in rows(table, tools):
        lines.append("| " + " | ".join(r) + " |")
    failures = [(n, t, c["failure"]) for n, cells in table.items() for t, c in cells.items() if c.get("failure")]
    if failures:
        lines += ["", "Failures (last one per cell):", ""]
        lines += [f"- {n} / {t}: `{d[:300]}`" for n, t, d in failures]
    lines += ["", "How to read this table: see benchmarks/README.md.", ""]
    return "\n".join(lines)


def _tool_line(tool, info):
    if not info["available"]:
        return f"{tool} unavailable ({info['reason'][:200]})"
    versions = info["versions"]
    name = {"ours": "filprofiler (this repo)", "fil": "filprofiler", "memray": "memray"}.get(tool)
    dist = "filprofiler" if tool in ("ours", "fil") else tool
    extra = f" {name} {versions.get(dist)}," if name else ""
    return f"{tool}:{extra} numpy {versions.get('numpy')}, pandas {versions.get('pandas')}"
