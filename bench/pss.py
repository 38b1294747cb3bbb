#!/usr/bin/env python3
"""Proportional set size of a group of processes, in KiB.

    pss.py --cgroup DIR      every process in the control group DIR
    pss.py PID...            these processes and all their descendants

Sums the `Pss:` line of /proc/PID/smaps_rollup (pages shared by several
processes are divided among them, so the sum over a server's processes is
what that server costs, its shared libraries counted once in all). Prints
`KIB PROCESSES`. A process that exits while it is read is skipped.
"""

import os
import sys


def descendants(roots):
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(d))
    seen, todo = set(), list(roots)
    while todo:
        p = todo.pop()
        if p not in seen:
            seen.add(p)
            todo.extend(children.get(p, []))
    return seen


def pss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def main():
    args = sys.argv[1:]
    if args[:1] == ["--cgroup"]:
        with open(os.path.join(args[1], "cgroup.procs")) as f:
            pids = {int(x) for x in f.read().split()}
    elif args:
        pids = descendants(int(a) for a in args)
    else:
        sys.exit(__doc__)
    total = n = 0
    for pid in pids:
        kib = pss_kib(pid)
        if kib is not None:
            total += kib
            n += 1
    print(total, n)


if __name__ == "__main__":
    main()
