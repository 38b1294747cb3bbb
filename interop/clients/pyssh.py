"""One SSH library speaks the git wire protocol to gitmouth, with no git client.

    pyssh.py --lib paramiko|asyncssh|ssh-python|ssh2-python --port N --key FILE
             --known-hosts FILE --repo NAME --src DIR --work DIR
             [--mode full|short] [--kex K] [--cipher C] [--mac M]

Over ONE connection, each step a new session channel (as git runs one
command per channel):

 1. exec `git-receive-pack '/NAME.git'`: read the v0 advertisement of the
    not-yet-existing repository, send `0{40} A refs/heads/main` with
    `report-status` and a pack from `git pack-objects`, expect `unpack ok`
    and `ok refs/heads/main`, exit status 0;
 2. exec `git-upload-pack '/NAME.git'` (protocol v0): the advertisement
    must show refs/heads/main = A; want A, done; the pack (side-band-64k) is
    indexed with `git index-pack --stdin --strict` into an empty bare
    repository, A must be a commit with the right tree, `git rev-list
    --objects A` must succeed and `git verify-pack` list A;
 (--mode full goes on:)
 3. a second commit B is made in --src and pushed as in 1 (A -> B, a pack
    of B ^A);
 4. exec `git-upload-pack` with GIT_PROTOCOL=version=2 sent in an SSH env
    request: the answer must start `version 2` (else the server ignored
    the env request), list ls-refs and fetch; `command=ls-refs` must show
    refs/heads/main = B; `command=fetch` want B, done: the pack is checked
    as in 2.

The host key is pinned (--known-hosts, OpenSSH known_hosts format), never
accepted blindly. Prints one line per step; exit 0 on success, 1 with the
reason on the last line of stderr otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import socket
import subprocess
import sys
import threading
import time
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import gitwire  # noqa: E402
from gitwire import ZERO, ProtocolError, Reader  # noqa: E402

TIMEOUT = 30


def known_host_keys(path: str) -> list[tuple[str, str]]:
    out = []
    with open(path) as f:
        for line in f:
            words = line.split()
            if len(words) >= 3:
                out.append((words[1], words[2]))
    return out


# --- paramiko -------------------------------------------------------------


class ParamikoConn:
    def __init__(self, a):
        import logging

        import paramiko

        seen = []

        class KexLog(logging.Handler):
            def emit(self, record):
                msg = record.getMessage()
                if msg.startswith("Kex: "):
                    seen.append(msg[5:])

        log = logging.getLogger("paramiko.transport")
        log.setLevel(logging.DEBUG)
        log.addHandler(KexLog())
        log.propagate = False
        self.client = paramiko.SSHClient()
        self.client.load_host_keys(a.known_hosts)
        self.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        disabled = {}
        t = paramiko.Transport
        for opt, attr, key in (
            (a.kex, "_preferred_kex", "kex"),
            (a.cipher, "_preferred_ciphers", "ciphers"),
            (a.mac, "_preferred_macs", "macs"),
        ):
            if opt:
                known = getattr(t, attr)
                if opt not in known:
                    raise ProtocolError(f"paramiko does not know {opt} (it has {known})")
                disabled[key] = [x for x in known if x != opt]
        self.client.connect(
            "127.0.0.1",
            port=a.port,
            username="git",
            key_filename=a.key,
            look_for_keys=False,
            allow_agent=False,
            timeout=TIMEOUT,
            banner_timeout=TIMEOUT,
            auth_timeout=TIMEOUT,
            disabled_algorithms=disabled or None,
        )
        tr = self.client.get_transport()
        self.describe = (
            f"kex={','.join(seen) or '?'} "
            f"cipher={tr.remote_cipher} mac={tr.remote_mac} hostkey={tr.host_key_type}"
        )

    def exec(self, cmd: str, env: dict | None = None):
        chan = self.client.get_transport().open_session(timeout=TIMEOUT)
        chan.settimeout(TIMEOUT)
        if env:
            for k, v in env.items():
                chan.set_environment_variable(k, v)
        chan.exec_command(cmd)

        class C:
            def send(self, data):
                chan.sendall(data)

            def recv(self):
                return chan.recv(65536)

            def send_eof(self):
                chan.shutdown_write()

            def exit_status(self):
                return chan.recv_exit_status()

            def close(self):
                chan.close()

        c = C()
        c.reader = Reader(c)
        return c

    def close(self):
        self.client.close()


# --- asyncssh --------------------------------------------------------------


class AsyncsshConn:
    def __init__(self, a):
        import asyncssh
        import asyncssh.connection

        seen = []
        real_get_kex = asyncssh.connection.get_kex

        def get_kex(conn, alg):
            seen.append(alg.decode())
            return real_get_kex(conn, alg)

        asyncssh.connection.get_kex = get_kex
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        kw = {}
        if a.kex:
            kw["kex_algs"] = [a.kex]
        if a.cipher:
            kw["encryption_algs"] = [a.cipher]
        if a.mac:
            kw["mac_algs"] = [a.mac]

        async def connect():
            return await asyncssh.connect(
                "127.0.0.1",
                a.port,
                username="git",
                client_keys=[a.key],
                known_hosts=a.known_hosts,
                agent_path=None,
                config=[],
                login_timeout=TIMEOUT,
                **kw,
            )

        self.conn = self.run(connect())
        c = self.conn
        self.describe = (
            f"kex={','.join(seen) or '?'} "
            f"cipher={c.get_extra_info('send_cipher')} mac={c.get_extra_info('send_mac')}"
        )

    def run(self, coro):
        return asyncio.run_coroutine_threadsafe(
            asyncio.wait_for(coro, TIMEOUT), self.loop
        ).result()

    def exec(self, cmd: str, env: dict | None = None):
        outer = self
        proc = self.run(self.conn.create_process(cmd, env=env or {}, encoding=None))

        class C:
            def send(self, data):
                async def w():
                    proc.stdin.write(data)
                    await proc.stdin.drain()

                outer.run(w())

            def recv(self):
                return outer.run(proc.stdout.read(65536))

            def send_eof(self):
                async def e():
                    proc.stdin.write_eof()

                outer.run(e())

            def exit_status(self):
                done = outer.run(proc.wait())
                return done.exit_status

            def close(self):
                proc.close()

        c = C()
        c.reader = Reader(c)
        return c

    def close(self):
        self.conn.close()
        try:
            self.run(self.conn.wait_closed())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)


# --- ssh-python (libssh) ---------------------------------------------------


class LibsshChannel:
    """One exec channel. Holds the libssh channel as an attribute (not in a
    closure) so that LibsshConn.close() can free it while the session is
    still connected."""

    def __init__(self, chan):
        self.chan = chan
        self.reader = Reader(self)

    def send(self, data):
        view = memoryview(data)
        while view:
            n = self.chan.write(bytes(view))
            n = n[1] if isinstance(n, tuple) else n
            if n <= 0:
                raise ProtocolError(f"libssh write returned {n}")
            view = view[n:]

    def recv(self):
        deadline = time.monotonic() + TIMEOUT
        while True:
            size, data = self.chan.read(65536)
            if size > 0:
                return data[:size]
            if self.chan.is_eof() or size < 0:
                return b""
            if time.monotonic() > deadline:
                raise ProtocolError("libssh read timed out")

    def send_eof(self):
        self.chan.send_eof()

    def exit_status(self):
        deadline = time.monotonic() + TIMEOUT
        while not self.chan.is_eof():
            self.chan.read(65536)
            if time.monotonic() > deadline:
                raise ProtocolError("no EOF from the server")
        return self.chan.get_exit_status()

    def close(self):
        self.chan.close()


class LibsshConn:
    def __init__(self, a):
        from ssh import options
        from ssh.key import import_privkey_file
        from ssh.session import Session

        s = Session()
        s.options_set(options.HOST, "127.0.0.1")
        s.options_set(options.USER, "git")
        s.options_set_port(a.port)
        s.options_set(options.TIMEOUT, str(TIMEOUT))
        if a.kex:
            s.options_set(options.KEY_EXCHANGE, a.kex)
        if a.cipher:
            s.options_set(options.CIPHERS_C_S, a.cipher)
            s.options_set(options.CIPHERS_S_C, a.cipher)
        if a.mac:
            s.options_set(options.HMAC_C_S, a.mac)
            s.options_set(options.HMAC_S_C, a.mac)
        # libssh opens (and later closes) the socket itself: a socket owned
        # by Python as well would be closed twice, and libssh, freeing a
        # channel, could then poll a descriptor already reused.
        s.connect()
        server_key = s.get_server_publickey()
        blob = server_key.export_pubkey_base64().decode()
        if blob not in [b for _, b in known_host_keys(a.known_hosts)]:
            raise ProtocolError(f"host key {blob[:30]}... is not the pinned one")
        s.userauth_publickey(import_privkey_file(a.key))
        self.s = s
        self.channels: list[LibsshChannel] = []
        self.describe = (
            f"kex={s.get_kex_algo().decode()} cipher={s.get_cipher_out().decode()} "
            f"mac={s.get_hmac_out().decode()}"
        )

    def exec(self, cmd: str, env: dict | None = None):
        chan = self.s.channel_new()
        chan.open_session()
        for k, v in (env or {}).items():
            rc = chan.request_env(k, v)
            if rc != 0:
                raise ProtocolError(f"env request {k} refused ({rc})")
        chan.request_exec(cmd)
        c = LibsshChannel(chan)
        self.channels.append(c)
        return c

    def close(self):
        # Free each channel while the session is connected, then disconnect.
        import gc

        for c in self.channels:
            if not c.chan.is_closed():
                c.chan.close()
            c.chan = None
        self.channels.clear()
        gc.collect()
        self.s.disconnect()


# --- ssh2-python (libssh2) -------------------------------------------------


class Libssh2Conn:
    def __init__(self, a):
        from ssh2 import session as ss

        self.sock = socket.create_connection(("127.0.0.1", a.port), timeout=TIMEOUT)
        s = ss.Session()
        s.set_timeout(TIMEOUT * 1000)
        if a.kex:
            s.method_pref(ss.LIBSSH2_METHOD_KEX, a.kex)
        if a.cipher:
            s.method_pref(ss.LIBSSH2_METHOD_CRYPT_CS, a.cipher)
            s.method_pref(ss.LIBSSH2_METHOD_CRYPT_SC, a.cipher)
        if a.mac:
            s.method_pref(ss.LIBSSH2_METHOD_MAC_CS, a.mac)
            s.method_pref(ss.LIBSSH2_METHOD_MAC_SC, a.mac)
        s.handshake(self.sock)
        blob, _kind = s.hostkey()
        b64 = base64.b64encode(blob).decode()
        if b64 not in [b for _, b in known_host_keys(a.known_hosts)]:
            raise ProtocolError(f"host key {b64[:30]}... is not the pinned one")
        s.userauth_publickey_fromfile("git", a.key)
        self.s = s
        m = ss
        self.describe = (
            f"kex={s.methods(m.LIBSSH2_METHOD_KEX)} cipher={s.methods(m.LIBSSH2_METHOD_CRYPT_CS)} "
            f"mac={s.methods(m.LIBSSH2_METHOD_MAC_CS)} hostkey={s.methods(m.LIBSSH2_METHOD_HOSTKEY)}"
        )

    def exec(self, cmd: str, env: dict | None = None):
        chan = self.s.open_session()
        for k, v in (env or {}).items():
            rc = chan.setenv(k, v)
            if rc != 0:
                raise ProtocolError(f"env request {k} refused ({rc})")
        chan.execute(cmd)

        class C:
            def send(self, data):
                view = memoryview(data)
                while view:
                    rc, n = chan.write(bytes(view))
                    if n <= 0:
                        raise ProtocolError(f"libssh2 write returned {rc}, {n}")
                    view = view[n:]

            def recv(self):
                size, data = chan.read(65536)
                if size < 0:
                    raise ProtocolError(f"libssh2 read error {size}")
                return data[:size] if size else b""

            def send_eof(self):
                chan.send_eof()

            def exit_status(self):
                chan.wait_eof()
                chan.close()
                chan.wait_closed()
                return chan.get_exit_status()

            def close(self):
                chan.close()

        c = C()
        c.reader = Reader(c)
        return c

    def close(self):
        self.s.disconnect()
        self.sock.close()


LIBS = {
    "paramiko": ParamikoConn,
    "asyncssh": AsyncsshConn,
    "ssh-python": LibsshConn,
    "ssh2-python": Libssh2Conn,
}


def git(args, cwd):
    return gitwire.run_git(args, cwd=cwd).decode().strip()


def step(msg):
    print(msg, flush=True)


def push_step(conn, a, old: str, new: str):
    path = f"'/{a.repo}.git'"
    chan = conn.exec(f"git-receive-pack {path}")
    refs, caps = gitwire.read_v0_advertisement(chan.reader)
    have = refs.get("refs/heads/main", ZERO)
    if have != old:
        raise ProtocolError(f"receive-pack advertises main={have}, expected {old}: {refs}")
    if "report-status" not in caps:
        raise ProtocolError(f"receive-pack lacks report-status: {sorted(caps)}")
    pack = gitwire.build_pack(a.src, new, old)
    report = gitwire.push(chan, old, new, "refs/heads/main", pack)
    chan.send_eof()
    status = chan.exit_status()
    if report[:2] != ["unpack ok", "ok refs/heads/main"]:
        raise ProtocolError(f"report-status: {report}")
    if status != 0:
        raise ProtocolError(f"receive-pack exit status {status}")
    step(f"push {old[:8]}..{new[:8]}: {report} exit {status}")


def fetch_v0_step(conn, a, tip: str):
    chan = conn.exec(f"git-upload-pack '/{a.repo}.git'")
    refs, caps = gitwire.read_v0_advertisement(chan.reader)
    if refs.get("refs/heads/main") != tip or refs.get("HEAD") != tip:
        raise ProtocolError(f"v0 advertisement {refs}, expected main=HEAD={tip}")
    pack = gitwire.fetch_v0(chan, tip, caps)
    chan.send_eof()
    status = chan.exit_status()
    if status != 0:
        raise ProtocolError(f"upload-pack exit status {status}")
    tree = git(["rev-parse", f"{tip}^{{tree}}"], a.src)
    gitwire.check_pack(pack, os.path.join(a.work, "v0.git"), tip, tree)
    step(f"fetch v0 {tip[:8]}: {len(pack)} byte pack checked, exit {status}")


def fetch_v2_step(conn, a, tip: str):
    chan = conn.exec(f"git-upload-pack '/{a.repo}.git'", env={"GIT_PROTOCOL": "version=2"})
    caps = gitwire.read_v2_capabilities(chan.reader)
    names = {c.split("=")[0] for c in caps}
    if not {"ls-refs", "fetch"} <= names:
        raise ProtocolError(f"v2 capabilities lack ls-refs/fetch: {caps}")
    refs = gitwire.ls_refs_v2(chan)
    if refs.get("refs/heads/main") != tip:
        raise ProtocolError(f"v2 ls-refs {refs}, expected main={tip}")
    pack = gitwire.fetch_v2(chan, tip)
    chan.send_eof()
    status = chan.exit_status()
    if status != 0:
        raise ProtocolError(f"upload-pack (v2) exit status {status}")
    tree = git(["rev-parse", f"{tip}^{{tree}}"], a.src)
    gitwire.check_pack(pack, os.path.join(a.work, "v2.git"), tip, tree)
    step(f"fetch v2 {tip[:8]}: capabilities {sorted(names)}; {len(pack)} byte pack checked")


def main():
    import faulthandler

    faulthandler.dump_traceback_later(float(os.environ.get("PYSSH_STACK_AFTER", "150")), exit=True)
    p = argparse.ArgumentParser()
    p.add_argument("--lib", required=True, choices=LIBS)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--known-hosts", required=True)
    p.add_argument("--repo", required=True)
    p.add_argument("--src", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--mode", default="full", choices=["full", "short"])
    p.add_argument("--kex")
    p.add_argument("--cipher")
    p.add_argument("--mac")
    a = p.parse_args()
    try:
        conn = LIBS[a.lib](a)
        step(f"connected: {conn.describe}")
        first = git(["rev-parse", "HEAD"], a.src)
        push_step(conn, a, ZERO, first)
        fetch_v0_step(conn, a, first)
        if a.mode == "full":
            with open(os.path.join(a.src, "second.txt"), "w") as f:
                f.write(f"second commit through {a.lib}\n")
            git(["add", "second.txt"], a.src)
            git(["commit", "-q", "-m", "second"], a.src)
            second = git(["rev-parse", "HEAD"], a.src)
            push_step(conn, a, first, second)
            fetch_v2_step(conn, a, second)
        conn.close()
    except Exception as e:  # the reason is the last line the driver reports
        traceback.print_exc()
        print(f"FAILED: {type(e).__name__}: {e}".replace("\n", " "), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
