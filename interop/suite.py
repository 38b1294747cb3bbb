#!/usr/bin/env python3
"""gitmouth's interoperability suite: real SSH clients against the real server.

Started by `interop/run` (which installs the clients and builds the server
binaries first); see interop/README.md. Run directly only with the venv's
Python:

    interop/.venv/bin/python interop/suite.py [--quick] [--runtime R] [--only RE]
                                             [--keep] [--list]

For each runtime it starts gitmouth servers on 127.0.0.1 (port chosen by the
kernel, read back from the server's `listening address=` log line), drives
every client through clone, push and fetch, prints a table of results and
exits non-zero if any case failed. Every external command has a timeout;
every server is stopped by its PID at exit.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import hashlib
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable
sys.path.insert(0, str(HERE / "lib"))
sys.path.insert(0, str(HERE))

from common import (  # noqa: E402
    DEFAULT_TIMEOUT,
    CaseFailed,
    CaseSkipped,
    Ran,
    must,
    run,
)

# --- servers -----------------------------------------------------------------

PIDFILE: Path | None = None
SERVERS: list["Server"] = []


@dataclass
class Offer:
    kex: list = field(default_factory=list)
    hostkey: list = field(default_factory=list)
    ciphers: list = field(default_factory=list)
    macs: list = field(default_factory=list)


class Server:
    def __init__(self, runtime: str, name: str, binary: Path, work: Path, keys: "Keys", args: list,
                 exempt: bool = True):
        self.runtime, self.name = runtime, name
        self.dir = work / f"server-{runtime}-{name}"
        self.dir.mkdir(parents=True)
        self.log_path = self.dir / "server.log"
        self.args = args
        self.binary = binary
        self.keys = keys
        self.proc = None
        self.port = None
        self.error = None
        self.offer: Offer | None = None
        self.exempt = exempt

    def start(self, host_keys: list[str]) -> bool:
        cmd = [
            str(self.binary),
            "--listen", "127.0.0.1:0",
            "--data-dir", str(self.dir / "data"),
            "--authorized-keys", str(self.keys.authorized_keys),
        ]
        if self.exempt:
            # Every client comes from 127.0.0.1: without this, the failures
            # some cases provoke would get it penalised.
            cmd += ["--admission-exempt", "127.0.0.0/8"]
        for hk in host_keys:
            cmd += ["--host-key", str(self.keys.host[hk])]
        cmd += self.args
        self.cmdline = cmd
        self.host_keys = host_keys
        env = dict(os.environ, RUST_LOG="debug,polling=info,async_io=info", NO_COLOR="1")
        env.pop("APISERVER_KEY", None)
        env.pop("GITMOUTH_PORT", None)
        env.pop("GITMOUTH_PRIVATE_KEY", None)
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            cmd, cwd=self.dir, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
        log.close()
        SERVERS.append(self)
        if PIDFILE:
            with open(PIDFILE, "a") as f:
                f.write(f"{self.proc.pid}\n")
        deadline = time.monotonic() + 60
        pattern = re.compile(rb"listening address=127\.0\.0\.1:(\d+)")
        while time.monotonic() < deadline:
            m = pattern.search(self.log_path.read_bytes())
            if m:
                self.port = int(m.group(1))
                break
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)  # polling the log for the listening line
        if self.port is None:
            self.stop()
            text = self.log_path.read_text(errors="replace").splitlines()
            errors = [l.strip() for l in text if "error" in l.lower()] or text[-3:]
            self.error = (
                f"{self.runtime} server '{self.name}' did not start "
                f"(exit {self.proc.returncode}): {' | '.join(errors[:3])}"
            )
            return False
        self.known_hosts = self.dir / "known_hosts"
        self.known_hosts.write_text(
            "".join(f"[127.0.0.1]:{self.port} {self.keys.host_pub(hk)}\n" for hk in host_keys)
        )
        return True

    def log_tail(self, n=20) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return ""
        return " | ".join(lines[-n:])

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def stop_all_servers():
    for s in SERVERS:
        try:
            s.stop()
        except Exception:
            pass


# --- keys --------------------------------------------------------------------


class Keys:
    """Every key of a run, made fresh in the run's temp dir."""

    def __init__(self, d: Path):
        self.dir = d
        d.mkdir(parents=True)
        self.user = {}
        self.host = {}
        gen = [
            ("user", "ed25519", ["-t", "ed25519"]),
            ("user", "ecdsa", ["-t", "ecdsa", "-b", "256"]),
            ("user", "rsa", ["-t", "rsa", "-b", "3072"]),
            ("user", "ecdsa-pem", ["-t", "ecdsa", "-b", "256", "-m", "PEM"]),
            ("host", "ed25519", ["-t", "ed25519"]),
            ("host", "rsa", ["-t", "rsa", "-b", "3072"]),
            ("host", "ecdsa", ["-t", "ecdsa", "-b", "256"]),
        ]
        lines = []
        for kind, name, args in gen:
            path = d / f"{kind}_{name}"
            comment = f"{name}-user" if kind == "user" else f"host-{name}"
            must(run(["ssh-keygen", "-q", "-N", "", "-C", comment, *args, "-f", path]), "ssh-keygen")
            getattr(self, kind)[name] = path
            if kind == "user":
                lines.append(Path(f"{path}.pub").read_text())
        self.authorized_keys = d / "authorized_keys"
        self.authorized_keys.write_text("".join(lines))

    def host_pub(self, name: str) -> str:
        words = Path(f"{self.host[name]}.pub").read_text().split()
        return f"{words[0]} {words[1]}"

    def host_fingerprint(self, name: str) -> str:
        blob = base64.b64decode(self.host_pub(name).split()[1])
        return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")

    def ppk(self, name: str) -> Path:
        out = self.dir / f"user_{name}.ppk"
        if not out.exists():
            must(run(["puttygen", self.user[name], "-O", "private", "-o", out]), "puttygen")
        return out

    def dropbear(self, name: str) -> Path:
        out = self.dir / f"user_{name}.dropbear"
        if not out.exists():
            must(
                run(["dropbearconvert", "openssh", "dropbear", self.user[name], out]),
                "dropbearconvert",
            )
        return out


# --- the suite ---------------------------------------------------------------


@dataclass
class Result:
    client: str
    version: str
    runtime: str
    case: str
    status: str  # PASS FAIL SKIP
    reason: str = ""
    seconds: float = 0.0


class Suite:
    def __init__(self, args):
        self.args = args
        self.work = Path(tempfile.mkdtemp(prefix="gitmouth-interop-"))
        self.results: list[Result] = []
        self.versions: dict[str, str] = {}
        self.missing = self._missing_packages()
        self.bin_dir = Path(os.environ.get("INTEROP_BIN_DIR", ROOT / "target" / "release"))
        self.keys = Keys(self.work / "keys")
        self.home = self.work / "home"
        (self.home / ".ssh").mkdir(parents=True)
        (self.home / ".gitconfig").write_text(
            "[user]\n\tname = Interop\n\temail = interop@example.invalid\n"
            "[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n"
        )
        self.counter = 0
        self.java_classes: Path | None = None
        self.java_error: str | None = None
        self.dbclient_stats: dict[str, list] = {}
        self.audit_findings: dict[str, list] = {}
        self.not_tried: list[str] = []

    # - environment -

    def _missing_packages(self) -> dict[str, str]:
        """Packages interop/run could not install: name -> reason."""
        out = {}
        for item in os.environ.get("INTEROP_MISSING", "").split(";;"):
            if item.strip():
                name, _, reason = item.partition("=")
                out[name.strip()] = reason.strip()
        return out

    def env(self, **extra) -> dict:
        e = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("GIT_", "SSH_", "XDG_CONFIG")) and k not in ("DISPLAY",)
        }
        venv_bin = os.path.dirname(PY)
        e["PATH"] = venv_bin + os.pathsep + e.get("PATH", "/usr/bin:/bin")
        e.update(
            HOME=str(self.home),
            GIT_CONFIG_NOSYSTEM="1",
            GIT_TERMINAL_PROMPT="0",
            LC_ALL="C",
        )
        e.update({k: str(v) for k, v in extra.items()})
        return e

    def fresh(self, label: str) -> Path:
        self.counter += 1
        d = self.work / "cases" / f"{self.counter:03d}-{re.sub(r'[^A-Za-z0-9._-]+', '_', label)}"
        d.mkdir(parents=True)
        return d

    def repo_name(self, label: str) -> str:
        self.counter += 1
        return f"r{self.counter:03d}-{re.sub(r'[^a-z0-9-]+', '-', label.lower())}"[:60]

    def make_source(self, d: Path, label: str) -> Path:
        src = d / "src"
        must(run(["git", "init", "-q", "-b", "main", src], env=self.env()), "git init")
        (src / "README").write_text(f"interop case {label}\n")
        must(run(["git", "add", "README"], cwd=src, env=self.env()), "git add")
        must(run(["git", "commit", "-q", "-m", f"first: {label}"], cwd=src, env=self.env()), "git commit")
        return src

    def rev(self, repo: Path, ref: str = "HEAD") -> str:
        return must(run(["git", "rev-parse", ref], cwd=repo, env=self.env()), "git rev-parse").out.strip()

    def commit_second(self, src: Path, label: str) -> str:
        (src / "second.txt").write_text(f"second commit, {label}\n")
        must(run(["git", "add", "second.txt"], cwd=src, env=self.env()), "git add")
        must(run(["git", "commit", "-q", "-m", "second"], cwd=src, env=self.env()), "git commit")
        return self.rev(src)

    def git_roundtrip(self, label: str, env: dict, url: str, full: bool = True, git_args=()) -> str:
        """push A (creates the repository), clone, push B, fetch: the ids must match."""
        d = self.fresh(label)
        src = self.make_source(d, label)
        a = self.rev(src)
        g = ["git", *git_args]
        must(run([*g, "push", "-q", url, "main"], cwd=src, env=env), "git push (create)")
        clone = d / "clone"
        must(run([*g, "clone", "-q", url, clone], cwd=d, env=env), "git clone")
        got = self.rev(clone)
        if got != a:
            raise CaseFailed(f"clone HEAD {got} != pushed {a}")
        if not full:
            return f"push+clone {a[:8]}"
        b = self.commit_second(src, label)
        must(run([*g, "push", "-q", url, "main"], cwd=src, env=env), "git push (second)")
        must(run([*g, "fetch", "-q", "origin"], cwd=clone, env=env), "git fetch")
        got = self.rev(clone, "refs/remotes/origin/main")
        if got != b:
            raise CaseFailed(f"fetched origin/main {got} != pushed {b}")
        return f"push {a[:8]}, clone, push {b[:8]}, fetch"

    # - bookkeeping -

    def record(self, client, runtime, case, func):
        case_id = f"{runtime}/{client}/{case}"
        if self.args.only and not re.search(self.args.only, case_id):
            return
        if self.args.list:
            print(case_id)
            return
        version = self.versions.get(client, "?")
        start = time.monotonic()
        try:
            detail = func() or ""
            status, reason = "PASS", detail
        except CaseSkipped as e:
            status, reason = "SKIP", str(e)
        except CaseFailed as e:
            status, reason = "FAIL", str(e)
        except Exception as e:  # a bug of the suite's own shows as a failure too
            status, reason = "FAIL", f"suite error {type(e).__name__}: {e}"
        secs = time.monotonic() - start
        r = Result(client, version, runtime, case, status, reason, secs)
        self.results.append(r)
        short = reason if len(reason) < 300 else reason[:300] + "..."
        print(f"  {status:4} {case_id}  ({secs:.1f} s)  {short}", flush=True)

    def need_command(self, cmd: str, package: str):
        if shutil.which(cmd, path=self.env()["PATH"]) is None:
            why = self.missing.get(package, "not installed")
            raise CaseSkipped(f"{cmd} missing: package {package} could not be had ({why})")

    def need_module(self, module: str, package: str):
        try:
            __import__(module)
        except Exception as e:
            why = self.missing.get(package, f"import failed: {e}")
            raise CaseSkipped(f"Python package {package} could not be had ({why})")

    def need_server(self, server: Server):
        if server.port is None:
            raise CaseFailed(server.error or "server not running")

    # - versions -

    def collect_versions(self):
        v = self.versions

        def first_line(cmd, stream="both"):
            if shutil.which(cmd[0]) is None:
                return "not installed"
            r = run(cmd, timeout=20)
            text = (r.out + "\n" + r.err).strip().splitlines()
            return text[0].strip() if text else "?"

        def deb(pkg):
            r = run(["dpkg-query", "-W", "-f", "${Version}", pkg], timeout=20)
            return r.out.strip() if r.rc == 0 else "not installed"

        def pypi(pkg):
            try:
                return importlib.metadata.version(pkg)
            except importlib.metadata.PackageNotFoundError:
                return "not installed"

        v["git"] = first_line(["git", "--version"])
        v["openssh"] = f"{first_line(['ssh', '-V'])} (deb {deb('openssh-client')})"
        v["plink"] = f"{first_line(['plink', '-V'])} (deb putty-tools {deb('putty-tools')})"
        v["dbclient"] = f"{first_line(['dbclient', '-V'])} (deb dropbear-bin {deb('dropbear-bin')})"
        v["paramiko"] = f"paramiko {pypi('paramiko')}"
        v["asyncssh"] = f"asyncssh {pypi('asyncssh')}"
        v["dulwich"] = f"dulwich {pypi('dulwich')}"
        v["ssh-audit"] = f"ssh-audit {pypi('ssh-audit')}"
        v["pygit2"] = f"pygit2 {pypi('pygit2')}"
        v["ssh-python"] = f"ssh-python {pypi('ssh-python')}"
        v["ssh2-python"] = f"ssh2-python {pypi('ssh2-python')}"
        probe = run([PY, str(HERE / "lib" / "libversions.py")], timeout=60)
        if probe.rc == 0:
            for line in probe.out.splitlines():
                k, _, val = line.partition("=")
                if k in v and val:
                    v[k] += f" ({val})"
        jgit = deb("libjgit-java")
        jars = sorted(p.name for p in Path("/usr/share/java").glob("jsch-*.jar")) if Path("/usr/share/java").exists() else []
        v["jgit"] = (
            f"JGit (deb libjgit-java {jgit}), JSch (deb libjsch-java {deb('libjsch-java')}, "
            f"{', '.join(jars) or 'no jar'}), {first_line(['java', '-version'])}"
        )

    # - per runtime -

    def runtime_cases(self, runtime: str, binary: Path):
        print(f"== runtime {runtime}: {binary}", flush=True)
        servers = {}
        servers["default"] = Server(runtime, "default", binary, self.work, self.keys, [])
        servers["default"].start(["ed25519", "rsa"])
        if not self.args.quick:
            servers["legacy"] = Server(
                runtime, "legacy", binary, self.work, self.keys, ["--legacy-algorithms"]
            )
            servers["legacy"].start(["ed25519", "ecdsa", "rsa"])
        # ssh-audit's servers keep admission control on loopback as well, as
        # a server deployed with these settings would have it.
        servers["audit"] = Server(runtime, "audit", binary, self.work, self.keys, [], exempt=False)
        servers["audit"].start(["ed25519", "rsa"])
        servers["pq"] = Server(
            runtime, "pq", binary, self.work, self.keys,
            ["--kex-algorithms", "mlkem768x25519-sha256,sntrup761x25519-sha512"], exempt=False,
        )
        servers["pq"].start(["ed25519", "rsa"])
        for s in servers.values():
            if s.port:
                print(f"   server {s.name}: pid {s.proc.pid}, port {s.port}, log {s.log_path}")
                s.offer = self.read_offer(s)
            else:
                print(f"   server {s.name}: FAILED TO START: {s.error}")
        try:
            from cases import all_cases  # noqa: E402

            all_cases(self, runtime, servers)
        finally:
            for s in servers.values():
                if s is not None:
                    s.stop()

    def read_offer(self, server: Server) -> Offer | None:
        """The server's KEXINIT lists, as OpenSSH's ssh -vvv prints them."""
        r = run(
            [
                "ssh", "-vvv", "-F", "/dev/null", "-p", server.port,
                "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
                "-o", f"UserKnownHostsFile={server.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
                "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=20",
                "-i", self.keys.user["ed25519"], "git@127.0.0.1", "true",
            ],
            timeout=30,
            env=self.env(),
        )
        text = r.err
        at = text.find("peer server KEXINIT proposal")
        if at < 0:
            print(f"   (could not read the KEXINIT of {server.name}: {r.tail()})")
            return None
        o = Offer()
        for line in text[at:].splitlines()[1:12]:
            m = re.match(r"debug2: (KEX algorithms|host key algorithms|ciphers stoc|MACs stoc): (.*)", line)
            if m:
                names = m.group(2).split(",")
                attr = {"KEX algorithms": "kex", "host key algorithms": "hostkey",
                        "ciphers stoc": "ciphers", "MACs stoc": "macs"}[m.group(1)]
                setattr(o, attr, names)
        print(f"   {server.name} offers kex={','.join(o.kex)}")
        print(f"   {server.name} offers hostkey={','.join(o.hostkey)} ciphers={','.join(o.ciphers)} macs={','.join(o.macs)}")
        return o

    # - output -

    def summary(self, started: float) -> int:
        rows = [("client", "version", "runtime", "case", "result", "time", "detail / reason")]
        for r in self.results:
            ver = r.version if len(r.version) < 60 else r.version[:57] + "..."
            reason = r.reason.replace("\n", " ")
            if len(reason) > 160:
                reason = reason[:157] + "..."
            rows.append((r.client, ver, r.runtime, r.case, r.status, f"{r.seconds:.1f}s", reason))
        widths = [max(len(row[i]) for row in rows) for i in range(6)]
        print("\n==== summary ====")
        for row in rows:
            print("  ".join(row[i].ljust(widths[i]) for i in range(6)) + "  " + row[6])
        counts = {s: sum(1 for r in self.results if r.status == s) for s in ("PASS", "FAIL", "SKIP")}
        elapsed = time.monotonic() - started
        print("\n==== versions ====")
        for k, val in self.versions.items():
            print(f"  {k:12} {val}")
        if self.dbclient_stats:
            print("\n==== dbclient clones in a row ====")
            for k, vals in self.dbclient_stats.items():
                print(f"  {k}: {vals}")
        if self.not_tried:
            print("\n==== offered by the server, not tried: the client lacks it ====")
            for line in self.not_tried:
                print(f"  {line}")
        skipped = [r for r in self.results if r.status == "SKIP"]
        if skipped:
            print("\n" + "!" * 72)
            print(f"!!! {len(skipped)} CASES SKIPPED: their client could not be had:")
            for r in skipped:
                print(f"!!!   {r.runtime}/{r.client}/{r.case}: {r.reason}")
            print("!" * 72)
        failed = [r for r in self.results if r.status == "FAIL"]
        if failed:
            print(f"\n==== {len(failed)} FAILED ====")
            for r in failed:
                print(f"  {r.runtime}/{r.client}/{r.case}: {r.reason}")
        print(
            f"\ninterop: {counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped "
            f"in {elapsed:.0f} s ({'quick' if self.args.quick else 'full'} mode)"
        )
        report = os.environ.get("INTEROP_REPORT")
        if report:
            self.write_report(Path(report), counts, elapsed)
            print(f"report written to {report}")
        return 1 if failed else 0

    def write_report(self, path: Path, counts, elapsed):
        lines = [
            "# gitmouth interoperability run",
            "",
            f"- date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
            f"- mode: {'quick' if self.args.quick else 'full'}; duration {elapsed:.0f} s",
            f"- result: {counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped",
            "",
            "## Versions",
            "",
        ]
        lines += [f"- {k}: {val}" for k, val in self.versions.items()]
        lines += ["", "## Results", "", "| client | runtime | case | result | time | detail |", "|---|---|---|---|---|---|"]
        for r in self.results:
            reason = r.reason.replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {r.client} | {r.runtime} | {r.case} | {r.status} | {r.seconds:.1f}s | {reason} |")
        if self.dbclient_stats:
            lines += ["", "## dbclient clones in a row", ""]
            lines += [f"- {k}: {vals}" for k, vals in self.dbclient_stats.items()]
        if self.audit_findings:
            lines += ["", "## ssh-audit findings", ""]
            for k, vals in self.audit_findings.items():
                lines.append(f"- {k}: {vals if vals else 'none'}")
        path.write_text("\n".join(lines) + "\n")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="one runtime (smol), a handful of cases")
    p.add_argument("--runtime", choices=["smol", "async-std", "both"], default=None)
    p.add_argument("--only", help="run only cases whose id RUNTIME/CLIENT/CASE matches this regex")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (keys, logs, repos)")
    p.add_argument("--list", action="store_true", help="list the case ids and exit")
    args = p.parse_args()
    runtime = args.runtime or ("smol" if args.quick else "both")
    runtimes = ["smol", "async-std"] if runtime == "both" else [runtime]

    global PIDFILE
    started = time.monotonic()
    suite = Suite(args)
    PIDFILE = Path(os.environ["INTEROP_PIDFILE"]) if os.environ.get("INTEROP_PIDFILE") else None
    atexit.register(stop_all_servers)

    def on_signal(signum, _frame):
        stop_all_servers()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    sys.path.insert(0, str(HERE))
    print(f"interop: work dir {suite.work}", flush=True)
    if not args.list:
        suite.collect_versions()
        for k, val in suite.versions.items():
            print(f"   {k:12} {val}")
    binaries = {"smol": "gitmouth", "async-std": "gitmouth-async-std"}
    try:
        for rt in runtimes:
            binary = suite.bin_dir / binaries[rt]
            if not binary.exists() and not args.list:
                suite.results.append(Result("server", "-", rt, "binary", "FAIL", f"{binary} missing"))
                continue
            suite.runtime_cases(rt, binary)
    finally:
        stop_all_servers()
    if args.list:
        shutil.rmtree(suite.work, ignore_errors=True)
        return 0
    rc = suite.summary(started)
    if rc == 0 and not args.keep:
        shutil.rmtree(suite.work, ignore_errors=True)
    else:
        print(f"work dir kept (keys, server logs, client output): {suite.work}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
