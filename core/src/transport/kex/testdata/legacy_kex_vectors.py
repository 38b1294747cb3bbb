#!/usr/bin/env python3
"""Known answers for the legacy key exchanges, from implementations
independent of ours (RFC 5656 and RFC 8268 give no test vectors):

- ecdh-sha2-nistp256/384/521: OpenSSL's ECDH, through Python's
  `cryptography`;
- diffie-hellman-group14-sha256 and group16-sha512: Python's integers, on
  the RFC 3526 primes as OpenSSL has them built in (`openssl genpkey
  -genparam -algorithm DH -pkeyopt group:modp_2048`), checked here against
  the RFC's formula p = 2^n - 2^(n-64) - 1 + 2^64 * ([2^(n-130) pi] + c).

Run: python3 legacy_kex_vectors.py > legacy_kex_vectors.txt
(needs `cryptography` and `mpmath` from PyPI, and the `openssl` command).
Each output line is `<method> <field> <hex>`; the shares are the bytes of
the SSH string (for DH, of the mpint) without the length prefix, and K is
the mpint as it enters the exchange hash, length prefix included.
"""
import hashlib
import subprocess

import mpmath
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def mpint_body(v):
    b = v.to_bytes((v.bit_length() + 7) // 8, "big")
    if b and b[0] & 0x80:
        b = b"\0" + b
    return b


def mpint(v):
    body = mpint_body(v)
    return len(body).to_bytes(4, "big") + body


def seed(label, n):
    out = b""
    while len(out) < n:
        out += hashlib.sha512(label + bytes([len(out)])).digest()
    return int.from_bytes(out[:n], "big")


def ecdh():
    for method, curve, n in [
        ("ecdh-sha2-nistp256", ec.SECP256R1(), 32),
        ("ecdh-sha2-nistp384", ec.SECP384R1(), 48),
        ("ecdh-sha2-nistp521", ec.SECP521R1(), 66),
    ]:
        # Below the group order in every case (2^(8n-2) < n for P-256/384,
        # 2^519 < n for P-521).
        bits = 519 if n == 66 else 8 * n - 2
        dc = seed(b"client " + method.encode(), n) % (1 << bits)
        ds = seed(b"server " + method.encode(), n) % (1 << bits)
        kc = ec.derive_private_key(dc, curve)
        ks = ec.derive_private_key(ds, curve)
        x = ks.exchange(ec.ECDH(), kc.public_key())
        assert x == kc.exchange(ec.ECDH(), ks.public_key())
        point = lambda k: k.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        yield method, "client_secret", dc.to_bytes(n, "big")
        yield method, "server_secret", ds.to_bytes(n, "big")
        yield method, "client_share", point(kc)
        yield method, "server_share", point(ks)
        yield method, "k", mpint(int.from_bytes(x, "big"))


def modp(group, bits, offset):
    pem = subprocess.run(
        ["openssl", "genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt", f"group:{group}"],
        check=True, capture_output=True,
    ).stdout
    numbers = serialization.load_pem_parameters(pem).parameter_numbers()
    mpmath.mp.prec = bits + 64
    formula = (1 << bits) - (1 << (bits - 64)) - 1 + (1 << 64) * (
        int(mpmath.floor(mpmath.mpf(2) ** (bits - 130) * mpmath.pi)) + offset
    )
    assert numbers.g == 2 and numbers.p == formula, group
    return numbers.p


def dh():
    for method, group, bits, offset in [
        ("diffie-hellman-group14-sha256", "modp_2048", 2048, 124476),
        ("diffie-hellman-group16-sha512", "modp_4096", 4096, 240904),
    ]:
        p = modp(group, bits, offset)
        xc = seed(b"client " + method.encode(), 64)
        xs = seed(b"server " + method.encode(), 64)
        e, f = pow(2, xc, p), pow(2, xs, p)
        k = pow(f, xc, p)
        assert k == pow(e, xs, p)
        yield method, "prime", p.to_bytes(bits // 8, "big")
        yield method, "client_secret", xc.to_bytes(64, "big")
        yield method, "server_secret", xs.to_bytes(64, "big")
        yield method, "client_share", mpint_body(e)
        yield method, "server_share", mpint_body(f)
        yield method, "k", mpint(k)


for method, field, value in [*ecdh(), *dh()]:
    print(method, field, value.hex())
