"""dulwich (pure-Python git) pushes, clones and fetches over one of its SSH vendors.

    dulwich_case.py --vendor subprocess|paramiko|plink --url URL --src DIR
                    --work DIR [--key FILE]

 - subprocess: dulwich's default, `SubprocessSSHVendor`, which runs the
   command in $GIT_SSH_COMMAND (set by the driver to OpenSSH's ssh with the
   test key and pinned host key); it asks for protocol v2 with
   `-o SetEnv GIT_PROTOCOL=version=2`;
 - paramiko: `dulwich.contrib.paramiko_vendor.ParamikoSSHVendor` (shipped
   in dulwich's wheel up to 1.1.0), with --key and no agent; it sends
   GIT_PROTOCOL=version=2 in an env request;
 - plink: `PLinkSSHVendor`, which runs $GIT_SSH (the driver's wrapper that
   calls PuTTY's plink with -batch, the pinned host key and a .ppk key).

Steps: push main (commit A) to a new repository, clone it, make commit B
in --src with git, push it, fetch it into the clone, and check each id.
"""

from __future__ import annotations

import argparse
import io
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
    p.add_argument("--vendor", required=True, choices=["subprocess", "paramiko", "plink"])
    p.add_argument("--url", required=True)
    p.add_argument("--src", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--key")
    a = p.parse_args()
    try:
        import dulwich.client
        from dulwich import porcelain

        if a.vendor == "paramiko":
            from dulwich.contrib.paramiko_vendor import ParamikoSSHVendor

            os.environ.pop("GIT_SSH_COMMAND", None)
            os.environ.pop("GIT_SSH", None)
            vendor = ParamikoSSHVendor(
                key_filename=a.key, look_for_keys=False, allow_agent=False, timeout=30
            )
            dulwich.client.get_ssh_vendor = lambda: vendor
        elif a.vendor == "plink":
            dulwich.client.get_ssh_vendor = dulwich.client.PLinkSSHVendor
        else:
            dulwich.client.get_ssh_vendor = dulwich.client.SubprocessSSHVendor

        err = io.BytesIO()
        first = git(["rev-parse", "HEAD"], a.src)
        porcelain.push(a.src, a.url, "refs/heads/main", errstream=err)
        print(f"push {first[:8]}", flush=True)

        clone = os.path.join(a.work, "clone")
        porcelain.clone(a.url, clone, errstream=err)
        got = git(["rev-parse", "HEAD"], clone)
        if got != first:
            raise AssertionError(f"clone HEAD {got} != pushed {first}")
        print(f"clone {got[:8]}", flush=True)

        with open(os.path.join(a.src, "second.txt"), "w") as f:
            f.write(f"through dulwich's {a.vendor} vendor\n")
        git(["add", "second.txt"], a.src)
        git(["commit", "-q", "-m", "second"], a.src)
        second = git(["rev-parse", "HEAD"], a.src)
        porcelain.push(a.src, a.url, "refs/heads/main", errstream=err)
        print(f"push {second[:8]}", flush=True)

        porcelain.fetch(clone, "origin", errstream=err)
        got = git(["rev-parse", "refs/remotes/origin/main"], clone)
        if got != second:
            raise AssertionError(f"fetched origin/main {got} != pushed {second}")
        print(f"fetch {got[:8]}", flush=True)
        git(["fsck", "--connectivity-only"], clone)
    except Exception as e:
        traceback.print_exc()
        print(f"FAILED: {type(e).__name__}: {e}".replace("\n", " "), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
