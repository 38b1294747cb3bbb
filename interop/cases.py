"""The suite's cases: every client, each with its variants.

`all_cases(suite, runtime, servers)` records every case of one runtime.
servers: "default" (ed25519 + RSA host keys, default lists), "legacy"
(--legacy-algorithms, ed25519 + ECDSA P-256 + RSA host keys), "pq"
(--kex-algorithms mlkem768x25519-sha256,sntrup761x25519-sha512; for
ssh-audit). Quick mode records only the cases marked quick, against
"default" (and "pq" for ssh-audit).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import statistics
import time
from pathlib import Path

from common import (
    AUDIT_ALLOWED_DEFAULT,
    HERE,
    KEX_MARKERS,
    LEGACY_KEX,
    LEGACY_MACS,
    PY,
    CaseFailed,
    CaseSkipped,
    must,
    run,
)

CLIENT_TIMEOUT = 180
DBCLIENT_EXIT_LIMIT = 2.0


def ssh_query(what: str) -> list[str]:
    r = run(["ssh", "-Q", what], timeout=10)
    return r.out.split() if r.rc == 0 else []


def url(server, name: str) -> str:
    return f"ssh://git@127.0.0.1:{server.port}/{name}.git"


# --- OpenSSH -------------------------------------------------------------------


def openssh_command(suite, server, key: Path, options=(), log: Path | None = None) -> str:
    words = [
        "ssh", "-F", "/dev/null",
        "-o", "BatchMode=yes",
        "-o", "IdentitiesOnly=yes",
        "-o", "IdentityAgent=none",
        "-o", f"UserKnownHostsFile={server.known_hosts}",
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "ConnectTimeout=20",
        "-i", str(key),
    ]
    for o in options:
        words += ["-o", o]
    if log is not None:
        words += ["-v", "-E", str(log)]
    return shlex.join(words)


def openssh_case(suite, server, label, key="ed25519", options=(), expect=None, git_args=()):
    """A git round trip through OpenSSH; expect: {"kex": ..., "cipher": ..., ...}
    to be checked in ssh's own -v log for every connection it made."""

    def case():
        suite.need_server(server)
        log = suite.work / "cases" / f"ssh-{suite.counter + 1:03d}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        env = suite.env(GIT_SSH_COMMAND=openssh_command(suite, server, suite.keys.user[key], options, log))
        detail = suite.git_roundtrip(label, env, url(server, suite.repo_name(label)), git_args=git_args)
        text = log.read_text(errors="replace") if log.exists() else ""
        seen = check_ssh_log(text, expect or {})
        return f"{detail}; {seen}"

    return case


def check_ssh_log(text: str, expect: dict) -> str:
    kex = re.findall(r"debug1: kex: algorithm: (\S+)", text)
    hk = re.findall(r"debug1: kex: host key algorithm: (\S+)", text)
    sc = re.findall(r"debug1: kex: server->client cipher: (\S+) MAC: (\S+)", text)
    auth = re.findall(r"debug1: Server accepts key: \S+ (\S+)", text)
    if not kex:
        raise CaseFailed("ssh's log shows no key exchange")
    checks = {
        "kex": kex,
        "hostkey": hk,
        "cipher": [c for c, _ in sc],
        "mac": [m for _, m in sc],
    }
    for k, want in expect.items():
        got = set(checks[k])
        if got != {want}:
            raise CaseFailed(f"expected {k} {want} on every connection, ssh's log shows {sorted(got)}")
    return (
        f"{len(kex)} connections: kex {sorted(set(kex))}, hostkey {sorted(set(hk))}, "
        f"cipher/mac {sorted(set(sc))}, user key {sorted(set(auth))}"
    )


def rsa_alg_in_server_log(suite, server, alg):
    def check(result: str) -> str:
        log = server.log_text()
        if alg not in log:
            raise CaseFailed(f"the server's log never names {alg}")
        return result

    return check


def openssh_cases(suite, rt, servers, quick):
    client = "openssh"
    default = servers["default"]
    legacy = servers.get("legacy")
    rec = lambda case, f: suite.record(client, rt, case, f)  # noqa: E731
    try:
        suite.need_command("ssh", "openssh-client")
    except CaseSkipped as e:
        rec("all", lambda: (_ for _ in ()).throw(e))
        return
    rec("roundtrip ed25519 (defaults)", openssh_case(suite, default, "openssh-default"))
    rec(
        "user key rsa-sha2-512",
        openssh_case(suite, default, "openssh-rsa512", "rsa", ["PubkeyAcceptedAlgorithms=rsa-sha2-512"]),
    )
    if quick:
        return
    rec(
        "user key rsa-sha2-256",
        openssh_case(suite, default, "openssh-rsa256", "rsa", ["PubkeyAcceptedAlgorithms=rsa-sha2-256"]),
    )
    rec(
        "user key ecdsa-sha2-nistp256",
        openssh_case(suite, default, "openssh-ecdsa", "ecdsa", ["PubkeyAcceptedAlgorithms=ecdsa-sha2-nistp256"]),
    )
    rec(
        "git protocol v0",
        openssh_case(suite, default, "openssh-v0", git_args=["-c", "protocol.version=0"]),
    )
    offer = default.offer
    if offer is None:
        rec("algorithm matrix", lambda: (_ for _ in ()).throw(CaseFailed(
            default.error or "could not read the default server's KEXINIT")))
    else:
        client_kex, client_ciphers = ssh_query("kex"), ssh_query("cipher")
        client_macs, client_hk = ssh_query("mac"), ssh_query("HostKeyAlgorithms")
        for kex in offer.kex:
            if kex.startswith(KEX_MARKERS):
                continue
            if kex not in client_kex:
                suite.not_tried.append(f"{rt}/openssh: kex {kex} (unknown to this ssh; see `ssh -Q kex`)")
                continue
            rec(f"kex {kex}", openssh_case(
                suite, default, f"kex-{kex}", options=[f"KexAlgorithms={kex}"], expect={"kex": kex}))
        for hk in offer.hostkey:
            if hk in client_hk:
                rec(f"hostkey {hk}", openssh_case(
                    suite, default, f"hk-{hk}", options=[f"HostKeyAlgorithms={hk}"], expect={"hostkey": hk}))
        for c in offer.ciphers:
            if c in client_ciphers:
                rec(f"cipher {c}", openssh_case(
                    suite, default, f"cipher-{c}", options=[f"Ciphers={c}"], expect={"cipher": c}))
            else:
                suite.not_tried.append(f"{rt}/openssh: cipher {c} (unknown to this ssh)")
        ctr = [c for c in offer.ciphers if c.endswith("-ctr") and c in client_ciphers]
        for mac in offer.macs:
            if mac not in client_macs:
                continue
            for c in ctr:
                rec(f"mac {mac} with {c}", openssh_case(
                    suite, default, f"mac-{mac}-{c}", options=[f"Ciphers={c}", f"MACs={mac}"],
                    expect={"cipher": c, "mac": mac}))

    # Legacy algorithms are off by default: an ecdh-only client is refused.
    def no_legacy_by_default():
        suite.need_server(default)
        r = run(
            ["ssh", "-p", str(default.port), "-F", "/dev/null", "-o", "BatchMode=yes",
             "-o", "KexAlgorithms=ecdh-sha2-nistp256", "-o", "StrictHostKeyChecking=no",
             "-o", "UserKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes",
             "-i", str(suite.keys.user["ed25519"]), "git@127.0.0.1", "true"],
            timeout=30, env=suite.env())
        if r.rc == 0 or "no matching key exchange" not in r.err:
            raise CaseFailed(f"expected 'no matching key exchange method', got rc {r.rc}: {r.tail()}")
        return "ssh -o KexAlgorithms=ecdh-sha2-nistp256: no matching key exchange method"

    rec("default server refuses ecdh-sha2-nistp256", no_legacy_by_default)

    if legacy is None:
        return

    def legacy_offer():
        suite.need_server(legacy)
        o = legacy.offer
        if o is None:
            raise CaseFailed("could not read the legacy server's KEXINIT")
        missing = [k for k in LEGACY_KEX if k not in o.kex] + [m for m in LEGACY_MACS if m not in o.macs]
        if "ecdsa-sha2-nistp256" not in o.hostkey:
            missing.append("ecdsa-sha2-nistp256 (host key)")
        if missing:
            raise CaseFailed(f"--legacy-algorithms does not offer {missing}")
        return f"offers {len(o.kex)} kex, macs {o.macs}, hostkeys {o.hostkey}"

    rec("legacy: offers what issue 9 lists", legacy_offer)
    client_kex, client_macs = ssh_query("kex"), ssh_query("mac")
    for kex in LEGACY_KEX:
        if kex in client_kex:
            rec(f"legacy kex {kex}", openssh_case(
                suite, legacy, f"legacy-kex-{kex}", options=[f"KexAlgorithms={kex}"], expect={"kex": kex}))
    for mac in LEGACY_MACS:
        if mac in client_macs:
            rec(f"legacy mac {mac} with aes128-ctr", openssh_case(
                suite, legacy, f"legacy-mac-{mac}", options=["Ciphers=aes128-ctr", f"MACs={mac}"],
                expect={"cipher": "aes128-ctr", "mac": mac}))
    rec("legacy hostkey ecdsa-sha2-nistp256", openssh_case(
        suite, legacy, "legacy-hk-ecdsa", options=["HostKeyAlgorithms=ecdsa-sha2-nistp256"],
        expect={"hostkey": "ecdsa-sha2-nistp256"}))
    rec("legacy: modern client still gets the defaults", openssh_case(
        suite, legacy, "legacy-modern", expect={"cipher": "chacha20-poly1305@openssh.com"}
        if "chacha20-poly1305@openssh.com" in ssh_query("cipher") else {}))


# --- PuTTY plink -----------------------------------------------------------------


def plink_setup(suite, server, key: str, session: dict | None = None) -> dict:
    """A directory with a `plink` wrapper (so git picks ssh.variant=plink by
    its name): -batch, the pinned host keys, the .ppk key, a saved session."""
    d = suite.fresh(f"plink-{key}")
    wrap = d / "bin"
    wrap.mkdir()
    ppk = suite.keys.ppk(key)
    words = ["/usr/bin/plink" if Path("/usr/bin/plink").exists() else shutil.which("plink"),
             "-batch", "-noagent", "-i", str(ppk)]
    for hk in server.host_keys:
        words += ["-hostkey", suite.keys.host_fingerprint(hk)]
    home = d / "home"
    (home / ".putty" / "sessions").mkdir(parents=True)
    shutil.copy(suite.home / ".gitconfig", home / ".gitconfig")
    if session:
        (home / ".putty" / "sessions" / "interop").write_text(
            "".join(f"{k}={v}\n" for k, v in session.items()))
        words += ["-load", "interop"]
    script = wrap / "plink"
    script.write_text("#!/bin/sh\nexec " + shlex.join(words) + ' "$@"\n')
    script.chmod(0o755)
    return {"wrapper": script, "home": home}


def plink_case(suite, server, label, key="ed25519", full=True, session=None, expect_log=None):
    def case():
        suite.need_command("plink", "putty-tools")
        suite.need_command("puttygen", "putty-tools")
        suite.need_server(server)
        p = plink_setup(suite, server, key, session)
        env = suite.env(GIT_SSH=p["wrapper"], HOME=p["home"])
        env.pop("GIT_SSH_COMMAND", None)
        detail = suite.git_roundtrip(label, env, url(server, suite.repo_name(label)), full=full)
        if expect_log:
            r = run([str(p["wrapper"]), "-v", "-P", str(server.port), "git@127.0.0.1",
                     f"git-upload-pack '/{suite.repo_name('plink-probe')}.git'"],
                    timeout=30, env=env, input=b"0000")
            shown = [l.strip() for l in r.err.splitlines() if re.search(expect_log, l)]
            if not shown:
                raise CaseFailed(f"plink -v does not show /{expect_log}/: {r.tail(12)}")
            detail += f"; plink -v: {shown[0]}"
        return detail

    return case


def plink_cases(suite, rt, servers, quick):
    default, legacy = servers["default"], servers.get("legacy")
    rec = lambda case, f: suite.record("plink", rt, case, f)  # noqa: E731
    rec("roundtrip ed25519 (git ssh.variant=plink)", plink_case(suite, default, "plink-ed25519"))
    if quick:
        return
    rec("push+clone ecdsa-sha2-nistp256", plink_case(suite, default, "plink-ecdsa", "ecdsa", full=False))
    rec("push+clone rsa", plink_case(suite, default, "plink-rsa", "rsa", full=False))
    # A saved session that allows only one cipher family (PuTTY's names).
    for name, cipher, expect in (
        ("chacha20-poly1305", "chacha20,WARN", r"Initialised ChaCha20"),
        ("aes-gcm", "aesgcm,WARN", r"Initialised AES-\d+ GCM"),
        ("aes-ctr + etm mac", "aes,WARN", r"Initialised AES-\d+ SDCTR"),
    ):
        rec(f"cipher {name} (saved session Cipher={cipher})", plink_case(
            suite, default, f"plink-{name}", session={"Cipher": cipher}, expect_log=expect))
    if legacy is not None:
        # PuTTY's "ecdh" family puts Curve25519 before the NIST curves, so a
        # saved session cannot make plink pick ecdh-sha2-nistp*; it can pick
        # the legacy DH groups. Every family is named (PuTTY inserts the ones
        # left out at their default places, ahead of what is listed).
        for first, expect in (
            ("dh-group14-sha1", r"Doing Diffie-Hellman key exchange using 2048-bit modulus and hash SHA-256"),
            ("dh-group16-sha512", r"Doing Diffie-Hellman key exchange using 4096-bit modulus and hash SHA-512"),
        ):
            rest = [k for k in PUTTY_KEX if k != first]
            kex = ",".join([first, "WARN", *rest])
            name = {"dh-group14-sha1": "diffie-hellman-group14-sha256",
                    "dh-group16-sha512": "diffie-hellman-group16-sha512"}[first]
            rec(f"legacy kex {name} (saved session KEX={first},WARN,...)", plink_case(
                suite, legacy, f"plink-legacy-{first}", session={"KEX": kex}, expect_log=expect))


PUTTY_KEX = [
    "ntru-curve25519", "ecdh", "dh-gex-sha1", "dh-group18-sha512", "dh-group17-sha512",
    "dh-group16-sha512", "dh-group15-sha512", "dh-group14-sha1", "rsa", "dh-group1-sha1",
]


# --- Dropbear dbclient ---------------------------------------------------------


def dbclient_command(suite, server, key: str, extra=(), timing: Path | None = None) -> str:
    # No -y: the host keys are pinned in $HOME/.ssh/known_hosts, in Dropbear's
    # form ("127.0.0.1 TYPE KEY", no port); an unknown key would make dbclient
    # ask on a terminal it does not have, and fail.
    kh = suite.home / ".ssh" / "known_hosts"
    lines = "".join(f"127.0.0.1 {suite.keys.host_pub(hk)}\n" for hk in sorted(suite.keys.host))
    if not kh.exists() or kh.read_text() != lines:
        kh.write_text(lines)
    words = ["dbclient", "-i", str(suite.keys.dropbear(key)), "-p", str(server.port), *extra]
    if timing is not None:
        words = [PY, str(HERE / "clients" / "timed.py"), str(timing), *words]
    return shlex.join(words)


def dbclient_case(suite, server, label, key="ed25519", full=True, extra=()):
    def case():
        suite.need_command("dbclient", "dropbear-bin")
        suite.need_command("dropbearconvert", "dropbear-bin")
        suite.need_server(server)
        env = suite.env(GIT_SSH_COMMAND=dbclient_command(suite, server, key, extra), GIT_SSH_VARIANT="simple")
        name = suite.repo_name(label)
        return suite.git_roundtrip(label, env, f"git@127.0.0.1:{name}.git", full=full)

    return case


def dbclient_in_a_row(suite, server, rt, count):
    def case():
        suite.need_command("dbclient", "dropbear-bin")
        suite.need_server(server)
        d = suite.fresh("dbclient-row")
        src = suite.make_source(d, "dbclient-row")
        name = suite.repo_name("dbclient-row")
        target = f"git@127.0.0.1:{name}.git"
        plain = suite.env(GIT_SSH_COMMAND=dbclient_command(suite, server, "ed25519"), GIT_SSH_VARIANT="simple")
        must(run(["git", "push", "-q", target, "main"], cwd=src, env=plain), "git push")
        tip = suite.rev(src)
        timing = d / "timing.jsonl"
        env = suite.env(
            GIT_SSH_COMMAND=dbclient_command(suite, server, "ed25519", timing=timing),
            GIT_SSH_VARIANT="simple",
        )
        walls, lags = [], []
        for i in range(count):
            dest = d / f"clone-{i}"
            r = run(["git", "clone", "-q", target, dest], env=env, cwd=d, timeout=60)
            if r.rc != 0:
                raise CaseFailed(f"clone {i + 1} of {count} failed: {r.tail()}")
            if suite.rev(dest) != tip:
                raise CaseFailed(f"clone {i + 1}: wrong HEAD")
            walls.append(r.seconds)
            shutil.rmtree(dest)
        for line in timing.read_text().splitlines():
            t = json.loads(line)
            lags.append(t["exit_after_last_byte"])
        if len(lags) != count:
            raise CaseFailed(f"{len(lags)} timings for {count} clones")
        stats = (
            f"{count} clones: wall max {max(walls):.2f} s, median {statistics.median(walls):.2f} s; "
            f"dbclient exit after its last byte: max {max(lags):.3f} s, median {statistics.median(lags):.3f} s"
        )
        suite.dbclient_stats[rt] = stats
        slow = [(i + 1, round(lag, 2)) for i, lag in enumerate(lags) if lag > DBCLIENT_EXIT_LIMIT]
        if slow:
            raise CaseFailed(f"dbclient exited more than {DBCLIENT_EXIT_LIMIT} s after the transfer: {slow}; {stats}")
        return stats

    return case


def dbclient_cases(suite, rt, servers, quick):
    default, legacy = servers["default"], servers.get("legacy")
    rec = lambda case, f: suite.record("dbclient", rt, case, f)  # noqa: E731
    rec("roundtrip ed25519", dbclient_case(suite, default, "db-ed25519"))
    count = int(os.environ.get("INTEROP_DBCLIENT_CLONES", "5" if quick else "50"))
    rec(f"{count} clones in a row, each exits within {DBCLIENT_EXIT_LIMIT:g} s",
        dbclient_in_a_row(suite, default, rt, count))
    if quick:
        return
    rec("push+clone ecdsa-sha2-nistp256", dbclient_case(suite, default, "db-ecdsa", "ecdsa", full=False))
    rec("push+clone rsa", dbclient_case(suite, default, "db-rsa", "rsa", full=False))
    rec("cipher chacha20-poly1305", dbclient_case(
        suite, default, "db-chacha", extra=["-c", "chacha20-poly1305@openssh.com"]))
    if legacy is not None:
        for c in ("aes128-ctr", "aes256-ctr"):
            rec(f"legacy {c} + hmac-sha2-256", dbclient_case(
                suite, legacy, f"db-legacy-{c}", extra=["-c", c, "-m", "hmac-sha2-256"]))


# --- Python SSH libraries speaking the git protocol ------------------------------

LIB_PACKAGES = {
    "paramiko": ("paramiko", "paramiko"),
    "asyncssh": ("asyncssh", "asyncssh"),
    "ssh-python": ("ssh.session", "ssh-python"),
    "ssh2-python": ("ssh2.session", "ssh2-python"),
}


def pyssh_case(suite, server, lib, label, key="ed25519", mode="full", kex=None, cipher=None, mac=None):
    def case():
        module, package = LIB_PACKAGES[lib]
        suite.need_module(module, package)
        suite.need_server(server)
        d = suite.fresh(label)
        src = suite.make_source(d, label)
        cmd = [PY, str(HERE / "clients" / "pyssh.py"), "--lib", lib, "--port", str(server.port),
               "--key", str(suite.keys.user[key]), "--known-hosts", str(server.known_hosts),
               "--repo", suite.repo_name(label), "--src", str(src), "--work", str(d), "--mode", mode]
        for opt, val in (("--kex", kex), ("--cipher", cipher), ("--mac", mac)):
            if val:
                cmd += [opt, val]
        r = run(cmd, timeout=CLIENT_TIMEOUT, env=suite.env())
        (d / "client.log").write_text(r.out + "\n--- stderr ---\n" + r.err)
        if r.rc != 0:
            last = [l for l in r.err.splitlines() if l.startswith("FAILED")]
            raise CaseFailed((last[-1] if last else r.tail()) + f" (log {d / 'client.log'})")
        lines = r.out.splitlines()
        return "; ".join(lines)

    return case


def pyssh_cases(suite, rt, servers, quick):
    default, legacy = servers["default"], servers.get("legacy")
    for lib in ("paramiko", "asyncssh", "ssh-python", "ssh2-python"):
        rec = lambda case, f, lib=lib: suite.record(lib, rt, case, f)  # noqa: E731
        if quick and lib != "paramiko":
            continue
        rec("wire: push, v0 fetch, push, v2 fetch (ed25519)", pyssh_case(suite, default, lib, f"{lib}-ed25519"))
        if quick:
            continue
        rec("wire: push, v0 fetch (ecdsa-sha2-nistp256)", pyssh_case(
            suite, default, lib, f"{lib}-ecdsa", key="ecdsa", mode="short"))
        rec("wire: push, v0 fetch (rsa)", pyssh_case(suite, default, lib, f"{lib}-rsa", key="rsa", mode="short"))
        if legacy is not None:
            rec("legacy: ecdh-sha2-nistp256, aes128-ctr, hmac-sha2-256", pyssh_case(
                suite, legacy, lib, f"{lib}-legacy-ecdh", mode="short",
                kex="ecdh-sha2-nistp256", cipher="aes128-ctr", mac="hmac-sha2-256"))
            rec("legacy: diffie-hellman-group14-sha256", pyssh_case(
                suite, legacy, lib, f"{lib}-legacy-dh14", mode="short", kex="diffie-hellman-group14-sha256"))


# --- dulwich ---------------------------------------------------------------------


def dulwich_case(suite, server, vendor, label):
    def case():
        suite.need_module("dulwich", "dulwich")
        if vendor == "paramiko":
            suite.need_module("paramiko", "paramiko")
            suite.need_module("dulwich.contrib.paramiko_vendor", "dulwich")
        if vendor == "plink":
            suite.need_command("plink", "putty-tools")
        suite.need_server(server)
        d = suite.fresh(label)
        src = suite.make_source(d, label)
        env = suite.env()
        cmd = [PY, str(HERE / "clients" / "dulwich_case.py"), "--vendor", vendor,
               "--url", url(server, suite.repo_name(label)), "--src", str(src), "--work", str(d)]
        if vendor == "subprocess":
            env["GIT_SSH_COMMAND"] = openssh_command(suite, server, suite.keys.user["ed25519"])
        elif vendor == "paramiko":
            cmd += ["--key", str(suite.keys.user["ed25519"])]
            # paramiko's vendor accepts any host key: pin it through ~/.ssh/known_hosts? It
            # uses MissingHostKeyPolicy (accept); the key is checked by the wire cases.
        else:
            p = plink_setup(suite, server, "ed25519")
            env["GIT_SSH"] = str(p["wrapper"])
            env["HOME"] = str(p["home"])
        r = run(cmd, timeout=CLIENT_TIMEOUT, env=env)
        (d / "client.log").write_text(r.out + "\n--- stderr ---\n" + r.err)
        if r.rc != 0:
            last = [l for l in r.err.splitlines() if l.startswith("FAILED")]
            raise CaseFailed((last[-1] if last else r.tail()) + f" (log {d / 'client.log'})")
        return "; ".join(r.out.splitlines())

    return case


def dulwich_cases(suite, rt, servers, quick):
    default = servers["default"]
    for vendor in ("subprocess", "paramiko", "plink"):
        if quick and vendor != "subprocess":
            continue
        label = {"subprocess": "SubprocessSSHVendor (OpenSSH ssh)",
                 "paramiko": "ParamikoSSHVendor", "plink": "PLinkSSHVendor"}[vendor]
        suite.record("dulwich", rt, f"roundtrip via {label}", dulwich_case(suite, default, vendor, f"dulwich-{vendor}"))


# --- libgit2 (pygit2) ---------------------------------------------------------------


def pygit2_case(suite, server, label, key="ed25519", mode="full"):
    def case():
        suite.need_module("pygit2", "pygit2")
        suite.need_server(server)
        d = suite.fresh(label)
        src = suite.make_source(d, label)
        home = d / "home"
        (home / ".ssh").mkdir(parents=True)
        shutil.copy(server.known_hosts, home / ".ssh" / "known_hosts")
        shutil.copy(suite.home / ".gitconfig", home / ".gitconfig")
        cmd = [PY, str(HERE / "clients" / "pygit2_case.py"), "--url", url(server, suite.repo_name(label)),
               "--key", str(suite.keys.user[key]), "--src", str(src), "--work", str(d), "--mode", mode]
        r = run(cmd, timeout=CLIENT_TIMEOUT, env=suite.env(HOME=home))
        (d / "client.log").write_text(r.out + "\n--- stderr ---\n" + r.err)
        if r.rc != 0:
            last = [l for l in r.err.splitlines() if l.startswith("FAILED")]
            raise CaseFailed((last[-1] if last else r.tail()) + f" (log {d / 'client.log'})")
        return "; ".join(r.out.splitlines())

    return case


def pygit2_cases(suite, rt, servers, quick):
    default = servers["default"]
    rec = lambda case, f: suite.record("pygit2", rt, case, f)  # noqa: E731
    rec("roundtrip ed25519 (Keypair)", pygit2_case(suite, default, "pygit2-ed25519"))
    if quick:
        return
    rec("push+clone ecdsa-sha2-nistp256", pygit2_case(suite, default, "pygit2-ecdsa", "ecdsa", "clone"))
    rec("push+clone rsa", pygit2_case(suite, default, "pygit2-rsa", "rsa", "clone"))


# --- JGit + JSch ------------------------------------------------------------------------

JARS = ["org.eclipse.jgit.jar", "jsch.jar", "slf4j-api.jar", "slf4j-nop.jar", "jzlib.jar", "javaewah.jar"]


def java_classpath() -> str:
    return ":".join(f"/usr/share/java/{j}" for j in JARS)


def compile_java(suite):
    if suite.java_classes or suite.java_error:
        return
    suite.need_command("javac", "default-jdk-headless")
    for j in JARS[:2]:
        if not Path(f"/usr/share/java/{j}").exists():
            pkg = "libjgit-java" if "jgit" in j else "libjsch-java"
            raise CaseSkipped(f"/usr/share/java/{j} missing: package {pkg} could not be had "
                              f"({suite.missing.get(pkg, 'not installed')})")
    out = suite.work / "java"
    out.mkdir(exist_ok=True)
    r = run(["javac", "-nowarn", "-d", out, "-cp", java_classpath(), HERE / "java" / "JGitInterop.java"], timeout=180)
    if r.rc != 0:
        suite.java_error = f"javac failed: {r.tail()}"
    else:
        suite.java_classes = out


def jgit_case(suite, server, label):
    def case():
        compile_java(suite)
        if suite.java_error:
            raise CaseFailed(suite.java_error)
        suite.need_server(server)
        d = suite.fresh(label)
        src = suite.make_source(d, label)
        u = url(server, suite.repo_name(label))
        kh = d / "known_hosts"
        # JSch 0.1.x verifies only ssh-rsa (SHA-1), DSA or ECDSA host keys: pin the ECDSA one.
        kh.write_text(f"[127.0.0.1]:{server.port} {suite.keys.host_pub('ecdsa')}\n")
        java = ["java", "-cp", f"{suite.java_classes}:{java_classpath()}", "JGitInterop"]
        key = str(suite.keys.user["ecdsa-pem"])
        env = suite.env()
        log = []

        def jrun(*args):
            r = run([*java, args[0], key, str(kh), *[str(a) for a in args[1:]]], timeout=120, env=env)
            log.append(r.out + r.err)
            (d / "client.log").write_text("\n".join(log))
            if r.rc != 0:
                raise CaseFailed(f"JGit {args[0]} exited {r.rc}: {r.tail(8)}")
            return r

        a = suite.rev(src)
        r = jrun("push", src, u)
        negotiated = sorted(set(re.findall(r"jsch: kex: ((?:server->client|client->server) [^\n]*)", r.err)))
        clone = d / "clone"
        jrun("clone", u, clone)
        if suite.rev(clone) != a:
            raise CaseFailed("JGit clone: wrong HEAD")
        b = suite.commit_second(src, label)
        jrun("push", src, u)
        jrun("fetch", clone)
        if suite.rev(clone, "refs/remotes/origin/main") != b:
            raise CaseFailed("JGit fetch: wrong origin/main")
        return f"push {a[:8]}, clone, push {b[:8]}, fetch; {'; '.join(negotiated)}"

    return case


def jgit_cases(suite, rt, servers, quick):
    if quick or servers.get("legacy") is None:
        return
    suite.record("jgit", rt, "roundtrip ecdsa user key, ecdsa host key (legacy server)",
                 jgit_case(suite, servers["legacy"], "jgit"))


# --- ssh-audit ------------------------------------------------------------------------


def audit_findings(report: dict) -> list[tuple[str, str, str, str]]:
    """(section, algorithm, level, text) for every fail and warn note, and CVEs."""
    out = []
    for section in ("kex", "key", "enc", "mac"):
        for alg in report.get(section, []) or []:
            notes = alg.get("notes", {}) or {}
            for level in ("fail", "warn"):
                for text in notes.get(level, []) or []:
                    out.append((section, alg.get("algorithm", "?"), level, text))
    for cve in report.get("cves", []) or []:
        out.append(("cve", cve.get("name", "?"), "fail", cve.get("description", "")))
    return out


def audit_case(suite, server, rt, allowed: set, label: str):
    def case():
        suite.need_command("ssh-audit", "ssh-audit")
        suite.need_server(server)
        r = run(["ssh-audit", "-j", "-p", str(server.port), "127.0.0.1"], timeout=120, env=suite.env())
        try:
            report = json.loads(r.out)
        except json.JSONDecodeError:
            raise CaseFailed(f"ssh-audit printed no JSON (rc {r.rc}): {r.tail()}") from None
        d = suite.fresh(f"audit-{label}")
        (d / "ssh-audit.json").write_text(json.dumps(report, indent=2))
        findings = audit_findings(report)
        suite.audit_findings[f"{rt}/{label}"] = findings
        print(f"   ssh-audit findings ({label}): {findings if findings else 'none'}")
        notes = [n for n in report.get("additional_notes") or [] if n]
        for note in notes:
            print(f"   ssh-audit additional note ({label}): {note}")
        # The Terrapin note is given to every server offering chacha20-poly1305
        # with strict kex (OpenSSH's own included) and asks nothing of it; any
        # other note (e.g. DHEat: connections not throttled) counts as a finding.
        for note in notes:
            if not note.startswith("Be aware that, while this target properly supports the strict key exchange"):
                findings.append(("note", "-", "warn", note))
        recs = report.get("recommendations") or {}
        if recs:
            print(f"   ssh-audit recommendations ({label}): {json.dumps(recs)}")
        unexpected = [f for f in findings if not (f[2] == "warn" and (f[0], f[1]) in allowed)]
        if unexpected:
            raise CaseFailed(f"ssh-audit reports {unexpected}")
        return f"findings: {findings if findings else 'none'} (exit {r.rc})"

    return case


def audit_cases(suite, rt, servers, quick):
    suite.record("ssh-audit", rt, "default configuration: only the curve25519 fallback warned",
                 audit_case(suite, servers["audit"], rt, AUDIT_ALLOWED_DEFAULT, "default"))
    suite.record("ssh-audit", rt, "--kex-algorithms mlkem768x25519-sha256,sntrup761x25519-sha512: nothing",
                 audit_case(suite, servers["pq"], rt, set(), "pq-only"))


def all_cases(suite, rt, servers):
    quick = suite.args.quick
    openssh_cases(suite, rt, servers, quick)
    plink_cases(suite, rt, servers, quick)
    dbclient_cases(suite, rt, servers, quick)
    pyssh_cases(suite, rt, servers, quick)
    dulwich_cases(suite, rt, servers, quick)
    pygit2_cases(suite, rt, servers, quick)
    jgit_cases(suite, rt, servers, quick)
    audit_cases(suite, rt, servers, quick)
