#!/usr/bin/env python3
"""Opens N idle authenticated sessions with the real OpenSSH client and holds them.

    idle_ssh.py N CONCURRENCY FLOOR_MB STATUS_FILE SSH_COMMAND...

Starts SSH_COMMAND (an `ssh ... -N user@host`: no channel, no command) N
times, at most CONCURRENCY of them authenticating at once. A session counts
as held once its client logs `Authenticated to` (the command must include
`-o LogLevel=VERBOSE`; its stderr comes here). It stops opening early when
/proc/meminfo's MemAvailable falls under FLOOR_MB (0: never) or more than
100 clients failed. Then it prints on stdout

    held=N failed=F lost=L seconds=S reason=REASON

and holds the sessions, rewriting STATUS_FILE every second with
`held=N failed=F lost=L` (lost: held clients that exited since), until it
gets SIGTERM or SIGINT; then it ends every client it started (SIGTERM by
process id, SIGKILL after 5 s) and exits. Progress goes to stderr.
"""

import os
import selectors
import signal
import subprocess
import sys
import time

MAX_FAILURES = 100
SETUP_TIMEOUT = 60.0


def mem_available_mb():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    return 1 << 62


def write_status(path, held, failed, lost):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"held={held} failed={failed} lost={lost}\n")
    os.rename(tmp, path)


def main():
    n, concurrency, floor_mb = (int(x) for x in sys.argv[1:4])
    status, cmd = sys.argv[4], sys.argv[5:]
    procs = []  # every client started, to end them all at the end
    stopping = False

    def stop(_signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    sel = selectors.DefaultSelector()
    pending = {}  # fd -> (process, started, partial stderr)
    held_procs = []
    held = failed = lost = 0
    started = 0
    reason = "count"
    t0 = time.monotonic()
    try:
        while not stopping:
            while started < n and len(pending) < concurrency and reason == "count":
                p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
                procs.append(p)
                os.set_blocking(p.stderr.fileno(), False)
                sel.register(p.stderr, selectors.EVENT_READ)
                pending[p.stderr.fileno()] = (p, time.monotonic(), b"")
                started += 1
            if not pending:
                break
            for key, _ in sel.select(timeout=0.5):
                fd = key.fd
                p, since, text = pending[fd]
                try:
                    chunk = os.read(fd, 4096)
                except BlockingIOError:
                    continue
                text += chunk
                if b"Authenticated to" in text:
                    sel.unregister(key.fileobj)
                    del pending[fd]
                    held_procs.append(p)
                    held += 1
                    if held % 100 == 0:
                        print(f"idle_ssh: {held} held, {failed} failed, "
                              f"{time.monotonic() - t0:.1f} s", file=sys.stderr)
                    if floor_mb and mem_available_mb() < floor_mb and reason == "count":
                        print(f"idle_ssh: MemAvailable under {floor_mb} MiB: stop opening",
                              file=sys.stderr)
                        reason = "memory-floor"
                elif not chunk or time.monotonic() - since > SETUP_TIMEOUT:
                    sel.unregister(key.fileobj)
                    del pending[fd]
                    failed += 1
                    if failed <= 5:
                        last = text.decode(errors="replace").strip().splitlines()[-1:] or ["?"]
                        print(f"idle_ssh: a client failed: {last[0]}", file=sys.stderr)
                    if failed > MAX_FAILURES and reason == "count":
                        reason = "failures"
                else:
                    pending[fd] = (p, since, text[-4096:])
            # clients stuck without output
            now = time.monotonic()
            for fd, (p, since, text) in list(pending.items()):
                if now - since > SETUP_TIMEOUT:
                    sel.unregister(p.stderr)
                    del pending[fd]
                    failed += 1
        if not stopping:
            print(f"held={held} failed={failed} lost={lost} seconds={time.monotonic() - t0:.1f} "
                  f"reason={reason}", flush=True)
        while not stopping:
            alive = [p for p in held_procs if p.poll() is None]
            lost += len(held_procs) - len(alive)
            held_procs = alive
            write_status(status, len(held_procs), failed, lost)
            time.sleep(1)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + 5
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


if __name__ == "__main__":
    main()
