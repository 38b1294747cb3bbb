#!/usr/bin/env bash
# gitmouth vs OpenSSH's sshd, side by side, on this machine: clone and push
# throughput per cipher, connection set-up latency per key exchange, and the
# servers' CPU time per operation. See bench/README.md.
#
# Knobs (environment):
#   BENCH_SIZE_MB=200        size of the incompressible repository (1 MiB files)
#   BENCH_RUNS=3             timed clones and pushes per server and cipher
#   BENCH_LATENCY_RUNS=50    timed `git ls-remote` per server and key exchange
#   BENCH_OP_TIMEOUT=300     seconds allowed for any one git command
#   BENCH_SSHD_USER=gitbench login user for sshd (created, with /bin/sh as its
#                            shell, and deleted at the end); `root` logs in
#                            as root, whose shell start-up then counts too
#   BENCH_GITMOUTH=PATH      use this binary instead of building one
#   BENCH_RAW=FILE           also copy the raw per-run results (TSV) here
#   BENCH_KEEP=1             keep the temporary directory (path is printed)
#   BENCH_CIPHERS, BENCH_KEXES  space-separated lists overriding the defaults
set -euo pipefail
export LC_ALL=C

SIZE_MB=${BENCH_SIZE_MB:-200}
RUNS=${BENCH_RUNS:-3}
LAT_RUNS=${BENCH_LATENCY_RUNS:-50}
OP_TIMEOUT=${BENCH_OP_TIMEOUT:-300}
SSHD_USER=${BENCH_SSHD_USER:-gitbench}
# cipher[:mac]; the MAC is only negotiated for the non-AEAD ciphers.
CIPHERS=${BENCH_CIPHERS:-"chacha20-poly1305@openssh.com aes128-gcm@openssh.com aes256-gcm@openssh.com aes128-ctr:hmac-sha2-256-etm@openssh.com"}
KEXES=${BENCH_KEXES:-"sntrup761x25519-sha512@openssh.com curve25519-sha256"}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SERVERS="gitmouth sshd"

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- cleanup ---------------------------------------------------------------
WORK=""
GM_PID=""      # the servers
SSHD_PID=""
GM_REAPER=""   # and the subreapers they run under (bench/subreaper.py)
SSHD_REAPER=""
CREATED_USER=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for pid in $GM_PID $SSHD_PID $GM_REAPER $SSHD_REAPER; do
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            for _ in 1 2 3 4 5 6 7 8 9 10; do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.2
            done
            kill -9 "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n $CREATED_USER ]]; then
        userdel "$CREATED_USER" 2>/dev/null || log "warning: could not delete user $CREATED_USER"
    fi
    if [[ -n $WORK && -d $WORK ]]; then
        if [[ ${BENCH_KEEP:-0} == 1 ]]; then
            log "kept $WORK"
        else
            rm -rf "$WORK"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- prerequisites -----------------------------------------------------------
[[ $(id -u) == 0 ]] || die "run as root: sshd must switch to the login user (and may need installing)"
for tool in ssh ssh-keygen git python3 timeout pgrep; do
    command -v "$tool" >/dev/null || die "$tool is missing"
done
if [[ ! -x /usr/sbin/sshd ]]; then
    log "installing openssh-server (sshd is missing)"
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y --no-install-recommends openssh-server >&2 ||
        die "apt-get install openssh-server failed"
fi
SSHD=/usr/sbin/sshd

if [[ -n ${BENCH_GITMOUTH:-} ]]; then
    GITMOUTH=$BENCH_GITMOUTH
else
    log "building gitmouth (release)"
    (cd "$ROOT" && cargo build --release -p gitmouth-smol >&2)
    GITMOUTH=${CARGO_TARGET_DIR:-$ROOT/target}/release/gitmouth
fi
[[ -x $GITMOUTH ]] || die "no gitmouth binary at $GITMOUTH"

WORK=$(mktemp -d /tmp/gitmouth-bench.XXXXXX)
chmod 755 "$WORK"   # the sshd login user reads the key and writes its repositories here
RESULTS=$WORK/results.tsv
printf 'test\tvariant\tserver\trun\tseconds\tcpu_self\tcpu_children\tbytes\n' >"$RESULTS"
CLK_TCK=$(getconf CLK_TCK)

# --- keys, ports, user -------------------------------------------------------
ssh-keygen -q -t ed25519 -N '' -C bench-host -f "$WORK/host_ed25519"
ssh-keygen -q -t ed25519 -N '' -C bench -f "$WORK/client_ed25519"
chmod 644 "$WORK/client_ed25519.pub"
read -r GM_PORT SSHD_PORT < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(2)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in ss))')
hostkey=$(cut -d' ' -f1,2 "$WORK/host_ed25519.pub")
printf '[127.0.0.1]:%s %s\n[127.0.0.1]:%s %s\n' "$GM_PORT" "$hostkey" "$SSHD_PORT" "$hostkey" >"$WORK/known_hosts"

if [[ $SSHD_USER != root ]]; then
    mkdir -p "$WORK/sshd-home"
    if getent passwd "$SSHD_USER" >/dev/null; then
        usermod -d "$WORK/sshd-home" -s /bin/sh -p '*' "$SSHD_USER"
    else
        # '*' rather than useradd's '!': without PAM, sshd refuses locked accounts.
        useradd --system --no-create-home --home-dir "$WORK/sshd-home" --shell /bin/sh -p '*' "$SSHD_USER"
        CREATED_USER=$SSHD_USER
    fi
    chown "$SSHD_USER:" "$WORK/sshd-home"
fi
mkdir -p "$WORK/sshd-repos" "$WORK/gm" "$WORK/gm-home"
chown "$SSHD_USER:" "$WORK/sshd-repos"

# --- servers -----------------------------------------------------------------
wait_port() { # name reaper-pid port
    local i
    for ((i = 0; i < 100; i++)); do
        kill -0 "$2" 2>/dev/null || die "$1 exited at start; see $WORK/$1.log"
        if (exec 3<>"/dev/tcp/127.0.0.1/$3") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    die "$1 does not listen on port $3"
}

# Both servers run under bench/subreaper.py, which reaps what they orphan, so
# that all their CPU time can be counted.
start_server() { # name command...
    local name=$1 reaper pid i
    shift
    python3 "$ROOT/bench/subreaper.py" "$WORK/$name.pid" "$@" >"$WORK/$name.log" 2>&1 &
    reaper=$!
    for ((i = 0; i < 100; i++)); do
        [[ -s $WORK/$name.pid ]] && break
        kill -0 "$reaper" 2>/dev/null || die "$name did not start; see $WORK/$name.log"
        sleep 0.05
    done
    pid=$(<"$WORK/$name.pid")
    if [[ $name == gitmouth ]]; then GM_REAPER=$reaper GM_PID=$pid; else SSHD_REAPER=$reaper SSHD_PID=$pid; fi
}

# HOME points at an empty directory so that root's ~/.gitconfig does not reach
# the git that gitmouth runs (the sshd user's home is empty too).
start_server gitmouth env HOME="$WORK/gm-home" "$GITMOUTH" --listen "127.0.0.1:$GM_PORT" --data-dir "$WORK/gm" \
    --host-key "$WORK/host_ed25519" --authorized-keys "$WORK/client_ed25519.pub" \
    --log warn

mkdir -p -m 755 /run/sshd   # sshd's privilege separation directory
cat >"$WORK/sshd_config" <<EOF
Port $SSHD_PORT
ListenAddress 127.0.0.1
HostKey $WORK/host_ed25519
AuthorizedKeysFile $WORK/client_ed25519.pub
UsePAM no
StrictModes no
PidFile $WORK/sshd-own.pid
AcceptEnv GIT_PROTOCOL
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
PrintMotd no
PrintLastLog no
X11Forwarding no
UseDNS no
MaxStartups 100:30:200
LogLevel ERROR
EOF
"$SSHD" -t -f "$WORK/sshd_config" || die "sshd rejects its configuration"
start_server sshd "$SSHD" -D -e -f "$WORK/sshd_config"

wait_port gitmouth "$GM_REAPER" "$GM_PORT"
wait_port sshd "$SSHD_REAPER" "$SSHD_PORT"
log "gitmouth on 127.0.0.1:$GM_PORT (pid $GM_PID), sshd on 127.0.0.1:$SSHD_PORT (pid $SSHD_PID, login $SSHD_USER)"

# --- client side -------------------------------------------------------------
SSH_BASE="ssh -F /dev/null -i $WORK/client_ed25519 -o IdentitiesOnly=yes -o BatchMode=yes \
-o StrictHostKeyChecking=yes -o UserKnownHostsFile=$WORK/known_hosts -o HostKeyAlgorithms=ssh-ed25519 \
-o LogLevel=ERROR"
export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.invalid GIT_AUTHOR_DATE='2024-01-01T00:00:00Z'
export GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.invalid GIT_COMMITTER_DATE='2024-01-01T00:00:00Z'

url() { # server repo-name
    case $1 in
    gitmouth) echo "ssh://git@127.0.0.1:$GM_PORT/$2.git" ;;
    sshd) echo "ssh://$SSHD_USER@127.0.0.1:$SSHD_PORT$WORK/sshd-repos/$2.git" ;;
    esac
}
server_pids() { if [[ $1 == gitmouth ]]; then echo "$GM_PID $GM_REAPER"; else echo "$SSHD_PID $SSHD_REAPER"; fi; }
server_repo_dir() { # server repo-name
    if [[ $1 == gitmouth ]]; then echo "$WORK/gm/repos/$2.git"; else echo "$WORK/sshd-repos/$2.git"; fi
}
# An empty repository to push into, made beforehand (not timed) on both
# servers alike. (gitmouth would create it on the push, with a `git init`
# before and a few small git commands after to point HEAD at the pushed
# branch; the initial pushes below go that way.)
prepare_push_target() { # server repo-name
    local d
    d=$(server_repo_dir "$1" "$2")
    git -c init.defaultBranch=main init -q --bare "$d"
    [[ $1 == sshd ]] && chown -R "$SSHD_USER:" "$d"
    return 0
}
ssh_cmd_for_cipher() { # cipher[:mac]
    local cipher=${1%%:*} mac=""
    [[ $1 == *:* ]] && mac=" -m ${1#*:}"
    echo "$SSH_BASE -c $cipher$mac"
}

# A server's CPU time in clock ticks: its own (utime+stime), and that of its
# finished descendants (its cutime+cstime, plus its subreaper's for those it
# orphaned).
cpu_ticks() { # server-pid reaper-pid
    local stat f r
    stat=$(<"/proc/$1/stat")
    stat=${stat##*) }
    read -r -a f <<<"$stat"
    stat=$(<"/proc/$2/stat")
    stat=${stat##*) }
    read -r -a r <<<"$stat"
    echo "$((f[11] + f[12])) $((f[13] + f[14] + r[13] + r[14]))"
}
# Descendants' CPU time is counted only once they are reaped: wait until the
# server has no child processes left and its subreaper no orphans.
wait_server_idle() { # server-pid reaper-pid
    local i
    for ((i = 0; i < 200; i++)); do
        if ! pgrep -P "$1" >/dev/null && [[ $(pgrep -P "$2") == "$1" ]]; then
            return 0
        fi
        sleep 0.05
    done
    log "warning: server $1 still has children; its CPU time for this run is incomplete"
}

# Runs one timed git command against a server and appends a result line.
# timed test variant server run bytes -- command...
timed() {
    local test=$1 variant=$2 server=$3 run=$4 bytes=$5
    shift 6
    local pids t0 t1 a b
    read -r -a pids < <(server_pids "$server")
    wait_server_idle "${pids[@]}"
    read -r -a a < <(cpu_ticks "${pids[@]}")
    t0=$EPOCHREALTIME
    if ! timeout "$OP_TIMEOUT" "$@"; then
        die "$test $variant against $server failed or timed out: $*"
    fi
    t1=$EPOCHREALTIME
    wait_server_idle "${pids[@]}"
    read -r -a b < <(cpu_ticks "${pids[@]}")
    python3 -c 'import sys
t0, t1, tck = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
a0, a1, b0, b1 = map(int, sys.argv[4:8])
print("\t".join(sys.argv[8:12] + ["%.4f" % (t1 - t0), "%.2f" % ((b0 - a0) / tck),
                                  "%.2f" % ((b1 - a1) / tck), sys.argv[12]]))' \
        "$t0" "$t1" "$CLK_TCK" "${a[@]}" "${b[@]}" "$test" "$variant" "$server" "$run" "$bytes" >>"$RESULTS"
}

# Checks, once per server and setting, that the client really negotiated what
# we asked for (ssh -v names the algorithms).
check_negotiated() { # server ssh-command expected-pattern
    local out
    out=$(GIT_SSH_COMMAND="${2/LogLevel=ERROR/LogLevel=DEBUG1}" timeout 60 git ls-remote "$(url "$1" tiny)" 2>&1 >/dev/null) ||
        die "ls-remote against $1 failed: $out"
    grep -q -- "$3" <<<"$out" || die "$1: expected '$3' in the negotiation, got: $(grep 'kex: ' <<<"$out")"
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
read -r load1 _ </proc/loadavg
if python3 -c "import sys; sys.exit(float(sys.argv[1]) < 0.5)" "$load1"; then
    log "warning: load average $load1 before the start: other work on this machine adds noise"
fi

# --- repositories --------------------------------------------------------------
log "generating a ${SIZE_MB} MiB repository of incompressible data"
git init -q -b main "$WORK/src"
python3 - "$WORK/src" "$SIZE_MB" <<'EOF'
import os, random, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    with open(os.path.join(d, "blob%04d.bin" % i), "wb") as f:
        f.write(random.Random(i).randbytes(1 << 20))
EOF
git -C "$WORK/src" add -A
git -C "$WORK/src" commit -q -m "incompressible data"
git -C "$WORK/src" -c gc.auto=0 repack -a -d -q
git -C "$WORK/src" prune-packed
PACK_BYTES=$(stat -c %s "$WORK"/src/.git/objects/pack/*.pack)
log "commit $(git -C "$WORK/src" rev-parse --short HEAD), pack of $PACK_BYTES bytes"

git init -q -b main "$WORK/tiny"
echo tiny >"$WORK/tiny/README"
git -C "$WORK/tiny" add README
git -C "$WORK/tiny" commit -q -m tiny

GIT_SSH_COMMAND=$SSH_BASE
export GIT_SSH_COMMAND
for s in $SERVERS; do
    for r in tiny bench; do
        [[ $s == sshd ]] && prepare_push_target "$s" "$r"
        src=$WORK/src
        [[ $r == tiny ]] && src=$WORK/tiny
        timeout "$OP_TIMEOUT" git -C "$src" push -q "$(url "$s" "$r")" main ||
            die "initial push of $r to $s failed"
    done
done
unset GIT_SSH_COMMAND
# Serve clones from one pack on both servers, whatever receive-pack kept
# (below receive.unpackLimit objects it stores them loose).
for s in $SERVERS; do
    d=$(server_repo_dir "$s" bench)
    git --git-dir "$d" -c gc.auto=0 repack -a -d -q
    git --git-dir "$d" prune-packed
    [[ $s == sshd ]] && chown -R "$SSHD_USER:" "$d"
done

for s in $SERVERS; do
    # git protocol v2 on both (sshd passes GIT_PROTOCOL on through AcceptEnv)
    out=$(GIT_SSH_COMMAND=$SSH_BASE GIT_TRACE_PACKET=1 timeout 60 git ls-remote "$(url "$s" tiny)" 2>&1 >/dev/null) ||
        die "ls-remote against $s failed: $out"
    grep -q "< version 2" <<<"$out" || die "$s does not speak git protocol v2"
    for c in $CIPHERS; do check_negotiated "$s" "$(ssh_cmd_for_cipher "$c")" "server->client cipher: ${c%%:*}"; done
    for k in $KEXES; do check_negotiated "$s" "$SSH_BASE -o KexAlgorithms=$k" "kex: algorithm: $k"; done
done

# --- 1. clone throughput ---------------------------------------------------------
for c in $CIPHERS; do
    export GIT_SSH_COMMAND
    GIT_SSH_COMMAND=$(ssh_cmd_for_cipher "$c")
    for ((run = 0; run <= RUNS; run++)); do # run 0 warms up and is discarded
        for s in $SERVERS; do
            rm -rf "$WORK/clone"
            timed clone "$c" "$s" "$run" "$PACK_BYTES" -- git clone -q --bare "$(url "$s" bench)" "$WORK/clone"
        done
        log "clone $c run $run/$RUNS"
    done
    rm -rf "$WORK/clone"
done

# --- 2. push throughput ----------------------------------------------------------
for c in $CIPHERS; do
    GIT_SSH_COMMAND=$(ssh_cmd_for_cipher "$c")
    for ((run = 1; run <= RUNS; run++)); do
        for s in $SERVERS; do
            name=push-$run-${c%%[:@]*}
            prepare_push_target "$s" "$name"
            timed push "$c" "$s" "$run" "$PACK_BYTES" -- git -C "$WORK/src" push -q "$(url "$s" "$name")" main
            rm -rf "$(server_repo_dir "$s" "$name")"
        done
        log "push $c run $run/$RUNS"
    done
done

# --- 3. connection set-up latency --------------------------------------------------
for k in $KEXES; do
    GIT_SSH_COMMAND="$SSH_BASE -o KexAlgorithms=$k"
    for ((run = -2; run <= LAT_RUNS; run++)); do # runs -2..0 warm up
        for s in $SERVERS; do
            timed ls-remote "$k" "$s" "$run" 0 -- git ls-remote -q "$(url "$s" tiny)" >/dev/null
        done
    done
    log "ls-remote $k: $LAT_RUNS runs"
done
unset GIT_SSH_COMMAND

# --- report ----------------------------------------------------------------------
[[ -n ${BENCH_RAW:-} ]] && cp "$RESULTS" "$BENCH_RAW"
{
    echo "machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), Linux $(uname -r)"
    echo "client:  $(ssh -V 2>&1), $(git --version)"
    echo "sshd:    openssh-server $(dpkg-query -W -f '${Version}' openssh-server 2>/dev/null || echo '?'), login $SSHD_USER"
    echo "gitmouth: $("$GITMOUTH" --version 2>/dev/null || echo '?') ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'))"
    echo "load average: $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
    echo "repository: ${SIZE_MB} MiB of random data, pack $PACK_BYTES bytes; $RUNS runs per cell (clone: +1 warm-up), $LAT_RUNS for latency"
} >&2
python3 "$ROOT/bench/report.py" "$RESULTS"
