#!/usr/bin/env bash
# Instructions gitmouth's own process executes to serve one clone, counted by
# valgrind's callgrind (git, which gitmouth starts, is not traced): a figure
# that other work on the machine does not change, for comparing two builds
# of the relay. See bench/README.md ("Instruction counts of one clone").
#
#   bench/callgrind_clone.sh [GITMOUTH...]
#
# Each binary (default: the release build in CARGO_TARGET_DIR or target/)
# serves one `git clone --bare` per cipher, started afresh under callgrind
# each time; the report gives the instructions (Ir) of the whole server
# process, start-up, key exchange and shutdown included, and per byte of the
# pack. Knobs: BENCH_SIZE_MB (50), BENCH_CIPHERS (as bench/compare.sh),
# BENCH_KEEP=1 keeps the temporary directory (callgrind's files are there).
# Needs valgrind, git, ssh, ssh-keygen and python3; does not need root.
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SIZE_MB=${BENCH_SIZE_MB:-50}
CIPHERS=${BENCH_CIPHERS:-"chacha20-poly1305@openssh.com aes128-gcm@openssh.com aes256-gcm@openssh.com aes128-ctr:hmac-sha2-256-etm@openssh.com"}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BINARIES=("$@")
((${#BINARIES[@]})) || BINARIES=("$TARGET/release/gitmouth")
for b in "${BINARIES[@]}"; do [[ -x $b ]] || { echo "no gitmouth binary at $b" >&2; exit 1; }; done
command -v valgrind >/dev/null || { echo "valgrind is missing (apt-get install valgrind)" >&2; exit 1; }

WORK=$(mktemp -d /tmp/gitmouth-callgrind.XXXXXX)
GM_PID=
cleanup() {
    [[ -n $GM_PID ]] && kill "$GM_PID" 2>/dev/null && wait "$GM_PID" 2>/dev/null
    if [[ ${BENCH_KEEP:-} == 1 ]]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
log() { echo "callgrind_clone: $*" >&2; }

export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.invalid GIT_AUTHOR_DATE='2024-01-01T00:00:00Z'
export GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.invalid GIT_COMMITTER_DATE='2024-01-01T00:00:00Z'

ssh-keygen -q -t ed25519 -N '' -C bench-host -f "$WORK/host_ed25519"
ssh-keygen -q -t ed25519 -N '' -C bench -f "$WORK/client_ed25519"
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
printf '[127.0.0.1]:%s %s\n' "$PORT" "$(cut -d' ' -f1,2 "$WORK/host_ed25519.pub")" >"$WORK/known_hosts"

# The same repository as bench/compare.sh's: 1 MiB files of Python's
# random.Random(i), one commit, one pack, served as it is stored.
log "generating a $SIZE_MB MiB repository"
git init -q -b main "$WORK/src"
python3 "$ROOT/bench/random_files.py" "$WORK/src" "$SIZE_MB"
git -C "$WORK/src" add -A
git -C "$WORK/src" commit -q -m "incompressible data"
mkdir -p "$WORK/gm/repos" "$WORK/gm-home"
git clone -q --bare "$WORK/src" "$WORK/gm/repos/bench.git"
git --git-dir "$WORK/gm/repos/bench.git" -c gc.auto=0 repack -a -d -q
git --git-dir "$WORK/gm/repos/bench.git" prune-packed
rm -rf "$WORK/src"
PACK_BYTES=$(stat -c %s "$WORK"/gm/repos/bench.git/objects/pack/*.pack)

SSH="ssh -F /dev/null -i $WORK/client_ed25519 -o IdentitiesOnly=yes -o UserKnownHostsFile=$WORK/known_hosts -o HostKeyAlgorithms=ssh-ed25519 -o LogLevel=ERROR"

printf '%-42s %-40s %14s %10s\n' cipher binary "Ir (server)" "Ir/byte"
for c in $CIPHERS; do
    cipher=${c%%:*} mac=
    [[ $c == *:* ]] && mac="-m ${c#*:}"
    for b in "${BINARIES[@]}"; do
        out=$WORK/callgrind.out.$RANDOM
        env HOME="$WORK/gm-home" valgrind --tool=callgrind --callgrind-out-file="$out" \
            "$b" --listen "127.0.0.1:$PORT" --data-dir "$WORK/gm" --host-key "$WORK/host_ed25519" \
            --authorized-keys "$WORK/client_ed25519.pub" --log warn 2>"$WORK/valgrind.log" &
        GM_PID=$!
        for ((i = 0; i < 600; i++)); do
            (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
            kill -0 "$GM_PID" 2>/dev/null || { cat "$WORK/valgrind.log" >&2; exit 1; }
            sleep 0.1
        done
        rm -rf "$WORK/clone"
        GIT_SSH_COMMAND="$SSH -c $cipher $mac" timeout 900 git clone -q --bare "ssh://git@127.0.0.1:$PORT/bench.git" "$WORK/clone"
        [[ $(stat -c %s "$WORK"/clone/objects/pack/*.pack) == "$PACK_BYTES" ]] || { echo "clone differs" >&2; exit 1; }
        kill -TERM "$GM_PID"
        wait "$GM_PID" || true
        GM_PID=
        ir=$(awk '/^(summary|totals):/ { print $2; exit }' "$out")
        printf '%-42s %-40s %14s %10.3f\n' "$c" "$b" "$ir" "$(awk -v a="$ir" -v b="$PACK_BYTES" 'BEGIN { print a / b }')"
    done
done
log "pack of $PACK_BYTES bytes; $(nproc) CPUs; valgrind $(valgrind --version)"
