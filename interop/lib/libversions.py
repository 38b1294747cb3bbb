"""Prints the versions of the C libraries bundled in the Python wheels.

pygit2's wheel bundles libgit2 and libssh2, ssh2-python's libssh2,
ssh-python's libssh; each is asked for its own version. One line each,
`client=...`; a library that cannot be loaded prints nothing.
"""

import ctypes
import glob
import os


def bundled(package_module, libs_dir: str, pattern: str, func: str):
    base = os.path.dirname(os.path.dirname(os.path.abspath(package_module.__file__)))
    found = glob.glob(os.path.join(base, libs_dir, pattern))
    if not found:
        return None
    lib = ctypes.CDLL(found[0])
    f = getattr(lib, func)
    f.restype = ctypes.c_char_p
    f.argtypes = [ctypes.c_int]
    return f(0).decode()


try:
    import pygit2

    v = bundled(pygit2, "pygit2.libs", "libssh2*", "libssh2_version")
    print(f"pygit2=libgit2 {pygit2.LIBGIT2_VERSION}, libssh2 {v}")
except Exception:
    pass

try:
    import ssh2.utils

    print(f"ssh2-python=libssh2 {ssh2.utils.version().decode()}")
except Exception:
    pass

try:
    import ssh.session

    v = bundled(ssh, "ssh_python.libs", "libssh-*", "ssh_version")
    print(f"ssh-python=libssh {v}")
except Exception:
    pass
