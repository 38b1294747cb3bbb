"""Writes N files of 1 MiB, blob0000.bin ..., each the bytes of Python's
random.Random(i): incompressible, and the same on every run, so that
bench/compare.sh and bench/callgrind_clone.sh measure the same repository.

Usage: python3 bench/random_files.py DIR N
"""
import os
import random
import sys

d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    with open(os.path.join(d, "blob%04d.bin" % i), "wb") as f:
        f.write(random.Random(i).randbytes(1 << 20))
