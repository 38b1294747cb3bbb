#!/usr/bin/env python3
"""Runs a server as the child of a child subreaper, so that its CPU time can be
counted in full.

A process's CPU time reaches its parent's cutime/cstime only when the parent
waits for it. sshd's per-connection monitor exits without waiting for the
session process it forked, which is then re-parented; its time (and that of
the shell and git under it) would be lost. As a subreaper (prctl
PR_SET_CHILD_SUBREAPER), this process inherits such orphans and reaps them, so
the server's whole CPU time is

    server utime+stime+cutime+cstime  +  this process's cutime+cstime

(while the server runs, its own time is not in ours). Usage:

    subreaper.py [--cgroup DIR] PIDFILE COMMAND [ARGS...]

writes the server's pid to PIDFILE, forwards SIGTERM/SIGINT to it, and exits
with its status once it has exited. With --cgroup, the server is moved into
the control group DIR (its `cgroup.procs`) before it is executed, so that it
and everything it starts are accounted there (CPU time in cpuacct.usage or
cpu.stat, the processes to sum PSS over), and this process is not.
"""

import ctypes
import os
import signal
import sys

PR_SET_CHILD_SUBREAPER = 36


def main():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.exit("subreaper: prctl: " + os.strerror(ctypes.get_errno()))
    args = sys.argv[1:]
    cgroup = None
    if args[:1] == ["--cgroup"]:
        cgroup, args = args[1], args[2:]
    pidfile, argv = args[0], args[1:]
    pid = os.fork()
    if pid == 0:
        try:
            if cgroup:
                with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
                    f.write(f"{os.getpid()}\n")
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)

    def forward(signum, _frame):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    with open(pidfile + ".tmp", "w") as f:
        f.write(f"{pid}\n")
    os.rename(pidfile + ".tmp", pidfile)
    while True:
        try:
            child, status = os.wait()
        except ChildProcessError:
            sys.exit(1)
        if child == pid:
            sys.exit(os.waitstatus_to_exitcode(status) & 0xFF)


if __name__ == "__main__":
    main()
