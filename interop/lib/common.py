"""What the suite's driver (suite.py) and its cases (cases.py) share:
running an external command with a timeout, the case outcomes, and the
algorithm names the suite expects."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
ROOT = HERE.parent
PY = sys.executable

# What --legacy-algorithms adds (issue 9): the suite expects exactly these.
LEGACY_KEX = [
    "ecdh-sha2-nistp256",
    "ecdh-sha2-nistp384",
    "ecdh-sha2-nistp521",
    "diffie-hellman-group14-sha256",
    "diffie-hellman-group16-sha512",
]
LEGACY_MACS = ["hmac-sha2-256", "hmac-sha2-512"]
KEX_MARKERS = ("ext-info-", "kex-strict-", "kexguess2@")
# ssh-audit on the default configuration may warn only about this: the
# classical (not post-quantum) fallback key exchange.
AUDIT_ALLOWED_DEFAULT = {("kex", "curve25519-sha256"), ("kex", "curve25519-sha256@libssh.org")}

DEFAULT_TIMEOUT = 60


# --- running things ----------------------------------------------------------


@dataclass
class Ran:
    cmd: list
    rc: int
    out: str
    err: str
    seconds: float
    timed_out: bool = False

    def tail(self, n: int = 6) -> str:
        lines = [l for l in (self.err + "\n" + self.out).splitlines() if l.strip()]
        return " | ".join(lines[-n:])


def run(cmd, *, timeout=DEFAULT_TIMEOUT, env=None, cwd=None, input=None) -> Ran:
    """Runs cmd in its own process group; on timeout the whole group is killed."""
    start = time.monotonic()
    cmd = [str(c) for c in cmd]
    proc = subprocess.Popen(
        cmd,
        env=env,
        cwd=cwd,
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(input=input, timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
        timed_out = True
    return Ran(
        [str(c) for c in cmd],
        proc.returncode if not timed_out else -9,
        out.decode(errors="replace"),
        (err.decode(errors="replace") + (f"\nTIMED OUT after {timeout} s" if timed_out else "")),
        time.monotonic() - start,
        timed_out,
    )


class CaseFailed(Exception):
    pass


class CaseSkipped(Exception):
    pass


def must(r: Ran, what: str) -> Ran:
    if r.rc != 0:
        raise CaseFailed(f"{what} exited {r.rc}: {r.tail()}")
    return r


