#!/usr/bin/env python3
"""Where the call chain's wake-ups land, from a scheduler trace.

For every wake-up: which process woke which, whether the wakee was placed on the
waker's vCPU or on the other one ("cross"), and how long it then waited before it ran.
On a VM where waking a halted vCPU is expensive, the cross wake-ups are where a call's
latency goes that no process's CPU time shows (docs/BENCHMARKS.md, seventh session).

Record while a load runs (any rate; 500 rps is the gateway-cost scenario's), then read:

    perf record -q -o sched.data -a \
        -e sched:sched_switch,sched:sched_wakeup,sched:sched_waking -- sleep 2
    perf script -i sched.data | python3 loadtest/tools/wake_placement.py [--top N]
"""

import argparse
import collections
import re
import sys

LINE = re.compile(r"^\s*(.+?)\s+(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+sched:(\w+):\s+(.*)$")
WOKEN = re.compile(r"comm=(.*?) pid=(\d+)")
PLACED = re.compile(r"pid=(\d+) .*target_cpu=(\d+)")
NEXT = re.compile(r"next_pid=(\d+)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=20, help="rows to print")
    args = parser.parse_args()

    waking = {}  # pid -> (time, waker comm, waker cpu, wakee comm)
    placed = {}  # pid -> the same plus the cpu it was placed on
    waits = collections.defaultdict(list)
    for line in sys.stdin:
        m = LINE.match(line)
        if not m:
            continue
        comm, _pid, cpu, t, kind, rest = m.groups()
        t, cpu = float(t), int(cpu)
        if kind == "sched_waking":
            w = WOKEN.search(rest)
            if w:
                waking[int(w.group(2))] = (t, comm, cpu, w.group(1))
        elif kind == "sched_wakeup":
            w = PLACED.search(rest)
            if w and int(w.group(1)) in waking:
                pid = int(w.group(1))
                placed[pid] = waking.pop(pid) + (int(w.group(2)),)
        elif kind == "sched_switch":
            w = NEXT.search(rest)
            if w and int(w.group(1)) in placed:
                t0, waker, waker_cpu, wakee, target = placed.pop(int(w.group(1)))
                waits[(waker[:16], wakee[:16], waker_cpu != target)].append((t - t0) * 1e6)

    print(f"{'waker':<16} -> {'wakee':<16} {'vCPU':<5} {'count':>6} {'p50 us':>7} {'mean us':>8}")
    rows = sorted(waits.items(), key=lambda kv: -len(kv[1]))[: args.top]
    for (waker, wakee, cross), v in rows:
        v.sort()
        where = "cross" if cross else "same"
        print(f"{waker:<16} -> {wakee:<16} {where:<5} {len(v):>6} {v[len(v) // 2]:>7.1f} {sum(v) / len(v):>8.1f}")


if __name__ == "__main__":
    main()
