"""The git wire protocol over any SSH channel, for the library clients.

Each SSH library (paramiko, asyncssh, libssh through ssh-python, libssh2
through ssh2-python) is wrapped in a small object with these methods, and
everything here is written once against it:

    send(data: bytes)       write all of data to the remote command's stdin
    recv() -> bytes         some bytes of its stdout, b"" at EOF
    send_eof()              close its stdin
    exit_status() -> int    wait for the command to end and return its status
    close()

Only what a real git client does is used: pkt-lines, the protocol v0
advertisement and fetch (want/done, side-band-64k, ofs-delta), protocol v2
(`version 2` capability advertisement, `command=ls-refs`,
`command=fetch`), and push with `report-status`. Packs received are checked
with the local `git index-pack` and `git rev-list --objects`, packs sent
are built with `git pack-objects`.
"""

from __future__ import annotations

import glob
import os
import subprocess

ZERO = "0" * 40
FLUSH = object()
DELIM = object()
RESPONSE_END = object()


class ProtocolError(Exception):
    pass


def pkt(data: bytes | str) -> bytes:
    if isinstance(data, str):
        data = data.encode()
    return b"%04x" % (len(data) + 4) + data


class Reader:
    """Buffered reads of pkt-lines (and raw bytes) from a channel."""

    def __init__(self, chan):
        self.chan = chan
        self.buf = b""
        self.eof = False

    def _fill(self, n: int) -> None:
        while len(self.buf) < n and not self.eof:
            data = self.chan.recv()
            if not data:
                self.eof = True
            else:
                self.buf += data

    def read_exact(self, n: int) -> bytes:
        self._fill(n)
        if len(self.buf) < n:
            raise ProtocolError(
                f"EOF after {len(self.buf)} of {n} bytes (buffer {self.buf[:200]!r})"
            )
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_pkt(self):
        head = self.read_exact(4)
        try:
            size = int(head, 16)
        except ValueError:
            raise ProtocolError(f"bad pkt-line length {head!r}") from None
        if size == 0:
            return FLUSH
        if size == 1:
            return DELIM
        if size == 2:
            return RESPONSE_END
        if size < 4:
            raise ProtocolError(f"bad pkt-line length {size}")
        return self.read_exact(size - 4)

    def read_until_flush(self) -> list:
        out = []
        while True:
            p = self.read_pkt()
            if p is FLUSH:
                return out
            out.append(p)

    def read_to_eof(self) -> bytes:
        while not self.eof:
            self._fill(len(self.buf) + 65536)
        out, self.buf = self.buf, b""
        return out


def parse_v0_advertisement(pkts: list) -> tuple[dict[str, str], set[str]]:
    """refs (name -> id) and capabilities of a v0 ref advertisement."""
    refs: dict[str, str] = {}
    caps: set[str] = set()
    for i, p in enumerate(pkts):
        if not isinstance(p, bytes):
            raise ProtocolError(f"unexpected marker in v0 advertisement: {pkts!r}")
        line = p.rstrip(b"\n")
        if i == 0:
            if line.startswith(b"version "):
                raise ProtocolError(f"expected a v0 advertisement, got {line!r}")
            if b"\0" in line:
                line, capstr = line.split(b"\0", 1)
                caps = set(capstr.decode().split())
        oid, name = line.decode().split(" ", 1)
        if name != "capabilities^{}":
            refs[name] = oid
    return refs, caps


def read_v0_advertisement(reader: Reader) -> tuple[dict[str, str], set[str]]:
    return parse_v0_advertisement(reader.read_until_flush())


def demux_sideband(reader: Reader) -> tuple[bytes, bytes]:
    """Band 1 (the pack) and band 2 (progress) until a flush; band 3 fails."""
    data, progress = [], []
    while True:
        p = reader.read_pkt()
        if p is FLUSH:
            break
        if not isinstance(p, bytes) or not p:
            raise ProtocolError(f"unexpected sideband packet {p!r}")
        band, payload = p[0], p[1:]
        if band == 1:
            data.append(payload)
        elif band == 2:
            progress.append(payload)
        elif band == 3:
            raise ProtocolError(f"remote error: {payload!r}")
        else:
            raise ProtocolError(f"unknown sideband {band}")
    return b"".join(data), b"".join(progress)


def fetch_v0(chan, want: str, caps: set[str]) -> bytes:
    """After the advertisement: want <id>, done; returns the pack."""
    use = [c for c in ("side-band-64k", "ofs-delta") if c in caps]
    use.append("agent=gitmouth-interop/1")
    chan.send(pkt(f"want {want} {' '.join(use)}\n") + b"0000" + pkt("done\n"))
    reader = chan.reader
    nak = reader.read_pkt()
    if nak != b"NAK\n":
        raise ProtocolError(f"expected NAK, got {nak!r}")
    if "side-band-64k" in use:
        pack, _ = demux_sideband(reader)
    else:
        pack = reader.read_to_eof()
    if not pack.startswith(b"PACK"):
        raise ProtocolError(f"not a pack: {pack[:40]!r}")
    return pack


def read_v2_capabilities(reader: Reader) -> list[str]:
    pkts = reader.read_until_flush()
    if not pkts or pkts[0] != b"version 2\n":
        raise ProtocolError(
            "the server did not answer in protocol v2 (was GIT_PROTOCOL=version=2 "
            f"passed on through the SSH env request?): first packets {pkts[:3]!r}"
        )
    return [p.decode().rstrip("\n") for p in pkts[1:]]


def ls_refs_v2(chan) -> dict[str, str]:
    chan.send(
        pkt("command=ls-refs\n")
        + pkt("agent=gitmouth-interop/1\n")
        + b"0001"
        + pkt("symrefs\n")
        + pkt("peel\n")
        + pkt("ref-prefix HEAD\n")
        + pkt("ref-prefix refs/heads/\n")
        + b"0000"
    )
    refs = {}
    for p in chan.reader.read_until_flush():
        words = p.decode().rstrip("\n").split(" ")
        refs[words[1]] = words[0]
    return refs


def fetch_v2(chan, want: str) -> bytes:
    chan.send(
        pkt("command=fetch\n")
        + pkt("agent=gitmouth-interop/1\n")
        + b"0001"
        + pkt("ofs-delta\n")
        + pkt("no-progress\n")
        + pkt(f"want {want}\n")
        + pkt("done\n")
        + b"0000"
    )
    reader = chan.reader
    head = reader.read_pkt()
    if head != b"packfile\n":
        raise ProtocolError(f"expected the packfile section, got {head!r}")
    pack, _ = demux_sideband(reader)
    if not pack.startswith(b"PACK"):
        raise ProtocolError(f"not a pack: {pack[:40]!r}")
    return pack


def push(chan, old: str, new: str, ref: str, pack: bytes) -> list[str]:
    """After receive-pack's advertisement: one update with report-status."""
    cmd = f"{old} {new} {ref}\0report-status agent=gitmouth-interop/1\n"
    chan.send(pkt(cmd) + b"0000" + pack)
    report = [p.decode().rstrip("\n") for p in chan.reader.read_until_flush()]
    return report


def run_git(args: list[str], cwd=None, data: bytes | None = None, timeout=60) -> bytes:
    out = subprocess.run(
        ["git", *args],
        cwd=cwd,
        input=data,
        capture_output=True,
        timeout=timeout,
    )
    if out.returncode != 0:
        raise ProtocolError(
            f"git {' '.join(args)} exited {out.returncode}: {out.stderr.decode(errors='replace')}"
        )
    return out.stdout


def check_pack(pack: bytes, bare_repo: str, commit: str, tree: str) -> None:
    """Index the pack into bare_repo; commit and all it reaches must be there."""
    run_git(["init", "-q", "--bare", bare_repo])
    run_git(["index-pack", "--stdin", "--strict"], cwd=bare_repo, data=pack)
    kind = run_git(["cat-file", "-t", commit], cwd=bare_repo).decode().strip()
    if kind != "commit":
        raise ProtocolError(f"{commit} is a {kind}, not a commit")
    got_tree = run_git(["rev-parse", f"{commit}^{{tree}}"], cwd=bare_repo).decode().strip()
    if got_tree != tree:
        raise ProtocolError(f"tree {got_tree} != {tree}")
    run_git(["rev-list", "--objects", commit], cwd=bare_repo)
    packs = glob.glob(os.path.join(bare_repo, "objects", "pack", "*.idx"))
    if len(packs) != 1:
        raise ProtocolError(f"expected one pack in {bare_repo}, found {packs}")
    listing = run_git(["verify-pack", "-v", packs[0]]).decode()
    if commit not in listing:
        raise ProtocolError(f"verify-pack does not list {commit}")


def build_pack(repo: str, new: str, old: str) -> bytes:
    revs = f"{new}\n" + (f"^{old}\n" if old != ZERO else "")
    return run_git(["pack-objects", "--stdout", "--revs", "-q"], cwd=repo, data=revs.encode())
