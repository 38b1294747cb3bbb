"""libgit2 (through pygit2, whose wheel bundles libssh2) pushes, clones and fetches.

    pygit2_case.py --url URL --key FILE --src DIR --work DIR [--mode full|clone]

Credentials: a `pygit2.Keypair` for user git (the key file and its .pub).
Host key: libgit2 checks $HOME/.ssh/known_hosts itself (the driver writes
the server's keys there for [127.0.0.1]:PORT); the certificate_check
callback accepts only what libgit2 found valid, so the host key is pinned.

full: push main (A) to a new repository, clone it, make commit B in --src,
push it, fetch it into the clone, check each id. clone: push A and clone it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import traceback


def git(args, cwd):
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, timeout=60
    ).stdout.decode().strip()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--src", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--mode", default="full", choices=["full", "clone"])
    a = p.parse_args()
    try:
        import pygit2

        class Callbacks(pygit2.RemoteCallbacks):
            def __init__(self):
                super().__init__()
                self.rejected = []

            def credentials(self, url, username_from_url, allowed_types):
                if not allowed_types & pygit2.enums.CredentialType.SSH_KEY:
                    raise RuntimeError(f"server allows no key auth ({allowed_types})")
                return pygit2.Keypair(username_from_url or "git", a.key + ".pub", a.key, "")

            def certificate_check(self, certificate, valid, host):
                if not valid:
                    raise RuntimeError(f"host key of {host} not in known_hosts")
                return True

            def push_update_reference(self, refname, message):
                if message is not None:
                    self.rejected.append((refname, message))

        def push(repo):
            cb = Callbacks()
            remote = repo.remotes["gitmouth"]
            remote.push(["refs/heads/main:refs/heads/main"], callbacks=cb)
            if cb.rejected:
                raise RuntimeError(f"push rejected: {cb.rejected}")

        src = pygit2.Repository(a.src)
        src.remotes.create("gitmouth", a.url)
        first = git(["rev-parse", "HEAD"], a.src)
        push(src)
        print(f"push {first[:8]}", flush=True)

        clone_dir = os.path.join(a.work, "clone")
        clone = pygit2.clone_repository(a.url, clone_dir, callbacks=Callbacks())
        got = str(clone.head.target)
        if got != first:
            raise AssertionError(f"clone HEAD {got} != pushed {first}")
        print(f"clone {got[:8]}", flush=True)
        if a.mode == "clone":
            return

        with open(os.path.join(a.src, "second.txt"), "w") as f:
            f.write("through libgit2\n")
        git(["add", "second.txt"], a.src)
        git(["commit", "-q", "-m", "second"], a.src)
        second = git(["rev-parse", "HEAD"], a.src)
        push(src)
        print(f"push {second[:8]}", flush=True)

        clone.remotes["origin"].fetch(callbacks=Callbacks())
        got = git(["rev-parse", "refs/remotes/origin/main"], clone_dir)
        if got != second:
            raise AssertionError(f"fetched origin/main {got} != pushed {second}")
        print(f"fetch {got[:8]}", flush=True)
        git(["fsck", "--connectivity-only"], clone_dir)
    except Exception as e:
        traceback.print_exc()
        print(f"FAILED: {type(e).__name__}: {e}".replace("\n", " "), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
