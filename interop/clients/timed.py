"""Runs a command (an SSH client for git), relays its stdout, and records when
its last stdout byte came and when it exited.

    timed.py TIMING_FILE COMMAND...

stdin and stderr are the command's own; stdout is copied through. One JSON
line is appended to TIMING_FILE: {"wall": seconds from start to exit,
"exit_after_last_byte": seconds from the last byte the command wrote (for a
clone: the end of the pack git receives) to its exit}. That second number
is what "dbclient exits within 2 s of the transfer" is measured on. The
exit status is the command's.
"""

import json
import os
import subprocess
import sys
import time


def main():
    timing, cmd = sys.argv[1], sys.argv[2:]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, bufsize=0)
    last = start
    fd = proc.stdout.fileno()
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        last = time.monotonic()
        view = memoryview(chunk)
        while view:
            try:
                n = os.write(1, view)
            except BrokenPipeError:
                n = len(view)
            view = view[n:]
    rc = proc.wait()
    end = time.monotonic()
    with open(timing, "a") as f:
        f.write(json.dumps({"wall": end - start, "exit_after_last_byte": end - last, "rc": rc}) + "\n")
    sys.exit(rc)


if __name__ == "__main__":
    main()
