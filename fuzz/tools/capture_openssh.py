#!/usr/bin/env python3
"""Records what the machine's OpenSSH client sends to a server, as seeds.

A fake server on 127.0.0.1 sends a version line and a plaintext KEXINIT
offering one key exchange; `ssh` answers with its version line, its KEXINIT
and its KEX_ECDH_INIT, then waits for a reply that never comes. For each
configuration below this writes, relative to the current directory (run it
from the repository root):

  fuzz/corpus/server_session/capture-openssh-<name>
      the client's bytes, plus a plaintext NEWKEYS: against the fuzzing
      server (which negotiates the same method) this runs the whole first
      key exchange with a real client's key share (behind the target's
      3-byte header: standalone mode, an empty control stream)
  fuzz/corpus/kexinit/capture-openssh-<name>     the client's KEXINIT payload
  fuzz/corpus/version_line/capture-openssh       its version line and what follows

The client's share is random, so a fresh capture differs byte for byte but
exercises the same paths.
"""
import os
import socket
import struct
import subprocess

LISTS = ['ssh-ed25519',
         'chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-gcm@openssh.com,aes256-ctr,aes128-ctr'] + \
        ['chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-gcm@openssh.com,aes256-ctr,aes128-ctr'] + \
        ['hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com'] * 2 + ['none', 'none', '', '']


def string(b):
    return struct.pack('>I', len(b)) + b


def packet(payload):
    pad = 8 - (5 + len(payload)) % 8
    if pad < 4:
        pad += 8
    return struct.pack('>IB', 1 + len(payload) + pad, pad) + payload + b'\0' * pad


def server_kexinit(kex):
    lists = [kex + ',kex-strict-s-v00@openssh.com'] + LISTS
    return packet(bytes([20]) + b'\x11' * 16 + b''.join(string(l.encode()) for l in lists) + b'\0' * 5)


def capture(kex, ssh_options):
    srv = socket.socket()
    srv.bind(('127.0.0.1', 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    ssh = subprocess.Popen(
        ['ssh', '-F', '/dev/null', '-p', str(port), '-o', 'StrictHostKeyChecking=no',
         '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes'] + ssh_options +
        ['git@127.0.0.1', "git-upload-pack 'app.git'"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    conn, _ = srv.accept()
    conn.sendall(b'SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u6\r\n')
    conn.settimeout(2.0)
    got, sent_kexinit = b'', False
    while True:
        try:
            data = conn.recv(65536)
        except socket.timeout:
            break
        if not data:
            break
        got += data
        if not sent_kexinit and b'\n' in got:
            conn.sendall(server_kexinit(kex))
            sent_kexinit = True
    ssh.kill()
    ssh.wait()
    conn.close()
    srv.close()
    return got


def kexinit_payload(stream):
    at = stream.index(b'\n') + 1
    length, pad = struct.unpack('>IB', stream[at:at + 5])
    return stream[at + 5:at + 4 + length - pad]


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
        f.write(data)
    print(path, len(data))


CONFIGS = [
    # OpenSSH's default lists: our server picks sntrup761x25519-sha512, the
    # client's first choice, which the fake server offered by its other name.
    ('default-sntrup', 'sntrup761x25519-sha512@openssh.com', []),
    ('curve25519-chacha', 'curve25519-sha256', ['-o', 'KexAlgorithms=curve25519-sha256']),
    ('curve25519-libssh-aes128ctr', 'curve25519-sha256@libssh.org',
     ['-o', 'KexAlgorithms=curve25519-sha256@libssh.org', '-o', 'Ciphers=aes128-ctr',
      '-o', 'MACs=hmac-sha2-512-etm@openssh.com']),
    ('curve25519-aes256gcm', 'curve25519-sha256',
     ['-o', 'KexAlgorithms=curve25519-sha256', '-o', 'Ciphers=aes256-gcm@openssh.com']),
]

NEWKEYS = packet(bytes([21]))

# The server_session input header (fuzz/bodies/src/server_session.rs):
# flags 0 (standalone), a control stream of length 0; the rest is the wire.
SESSION_HEADER = b'\0\0\0'

for name, kex, options in CONFIGS:
    stream = capture(kex, options)
    write(f'fuzz/corpus/server_session/capture-openssh-{name}', SESSION_HEADER + stream + NEWKEYS)
    write(f'fuzz/corpus/kexinit/capture-openssh-{name}', kexinit_payload(stream))
    if name == 'default-sntrup':
        write('fuzz/corpus/version_line/capture-openssh', stream[:300])
