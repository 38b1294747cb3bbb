#!/usr/bin/env bash
# gitmouth vs OpenSSH's sshd, side by side, on this machine, interleaved run by
# run: the packet layer against `openssl speed`, connection set-up latency
# (sequential, and with 8 in flight), server and client CPU per connection,
# clone and push wall time and server CPU (process tree, git included), and
# memory per idle authenticated session (100 and 1000 with the real `ssh`,
# 10,000 with our load generator). See bench/README.md.
#
# Knobs (environment):
#   BENCH_ONLY=a,b           sections to run (default all): packet latency
#                            parallel clone push memory loadgen
#   BENCH_RUNS=5             runs per figure (clone: +1 warm-up; parallel: +1)
#   BENCH_LATENCY_RUNS=50    sequential connections per server and key exchange
#   BENCH_INFLIGHT=8         connections in flight in the parallel section
#   BENCH_PARALLEL_CONNS=64  connections per parallel run
#   BENCH_SIZE_MB=200        size of the incompressible repository (1 MiB files)
#   BENCH_MEM_SESSIONS="100 1000"  idle sessions held with the real ssh client
#   BENCH_MEM_RUNS=5         runs per memory figure (ssh; gm-loadgen: one)
#   BENCH_LOADGEN_SESSIONS=10000   sessions held with gm-loadgen
#   BENCH_LOADGEN_SSHD=1     also try sshd with gm-loadgen (up to the floor)
#   BENCH_MEM_FLOOR_MB=6144  stop opening sessions when MemAvailable is below
#   BENCH_NOFILE=65536       open-file limit set for the servers and clients
#   BENCH_PIN_CPU=last       the CPU the packet benchmark is pinned to
#   BENCH_OP_TIMEOUT=300     seconds allowed for any one git command
#   BENCH_SSHD_USER=gitbench login user for sshd (created, with /bin/sh as its
#                            shell, and deleted at the end); `root` logs in
#                            as root, whose shell start-up then counts too
#   BENCH_GITMOUTH=PATH      use this binary instead of building one
#   BENCH_TOOLS=DIR          gm-loadgen and gm-packet-bench from DIR instead
#   BENCH_RAW=FILE           also copy the raw per-run results (TSV) here, and
#                            the header (machine, versions, limits) to FILE.header
#   BENCH_KEEP=1             keep the temporary directory (path is printed)
#   BENCH_CIPHERS, BENCH_KEXES  space-separated lists overriding the defaults
set -euo pipefail
export LC_ALL=C

ONLY=${BENCH_ONLY:-packet,latency,parallel,clone,push,memory,loadgen}
SIZE_MB=${BENCH_SIZE_MB:-200}
RUNS=${BENCH_RUNS:-5}
LAT_RUNS=${BENCH_LATENCY_RUNS:-50}
INFLIGHT=${BENCH_INFLIGHT:-8}
PAR_CONNS=${BENCH_PARALLEL_CONNS:-64}
MEM_SESSIONS=${BENCH_MEM_SESSIONS:-"100 1000"}
MEM_RUNS=${BENCH_MEM_RUNS:-5}
LG_SESSIONS=${BENCH_LOADGEN_SESSIONS:-10000}
LG_SSHD=${BENCH_LOADGEN_SSHD:-1}
FLOOR_MB=${BENCH_MEM_FLOOR_MB:-6144}
NOFILE=${BENCH_NOFILE:-65536}
OP_TIMEOUT=${BENCH_OP_TIMEOUT:-300}
SSHD_USER=${BENCH_SSHD_USER:-gitbench}
# cipher[:mac]; the MAC is only negotiated for the non-AEAD ciphers.
CIPHERS=${BENCH_CIPHERS:-"chacha20-poly1305@openssh.com aes128-gcm@openssh.com aes256-gcm@openssh.com aes128-ctr:hmac-sha2-256-etm@openssh.com"}
KEXES=${BENCH_KEXES:-"sntrup761x25519-sha512@openssh.com curve25519-sha256"}
NCPU=$(nproc)
PIN_CPU=${BENCH_PIN_CPU:-last}
[[ $PIN_CPU == last ]] && PIN_CPU=$((NCPU - 1))
# Limits that let 1000 (ssh) and 10,000 (gm-loadgen) idle sessions be held,
# the same for the whole run (they change nothing for one connection).
GM_LIMITS=(--per-user-max-connections 0 --unused-connection-timeout 0 --idle-timeout 86400
    --max-connections $((LG_SESSIONS + 2000)) --max-sessions 10 --max-startups 200:30:400
    --per-source-max-startups 200 --per-source-startup-queue 1000 --startup-queue 1000)
SSHD_LIMITS="MaxStartups 200:30:400
MaxSessions 10
UnusedConnectionTimeout none
ClientAliveInterval 0
LoginGraceTime 120"
LG_CONCURRENCY=64     # sessions in set-up at once: gm-loadgen
SSH_CONCURRENCY=16    # and real ssh clients

section() { [[ ,$ONLY, == *,$1,* ]]; }
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
HOLDER_PID=""  # idle_ssh.py or gm-loadgen while it holds sessions
CREATED_USER=""
CG=""          # our control groups' parent directory
stop_pid() { # pid [signal]: ends one process we started, by its id
    local pid=$1 i
    [[ -n $pid ]] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill "-${2:-TERM}" "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -9 "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}
# Ends whatever is left in our control groups (sshd's per-session processes
# outlive its listener), by process id: TERM, then KILL after 20 s.
empty_groups() {
    local d pids i sig=TERM
    for ((i = 0; i < 300; i++)); do
        pids=""
        for d in "$CG"/*/; do [[ -f $d/cgroup.procs ]] && pids+=" $(tr '\n' ' ' <"$d/cgroup.procs")"; done
        [[ -z ${pids// /} ]] && return 0
        ((i == 100)) && sig=KILL
        ((i % 10 == 0)) && kill "-$sig" $pids 2>/dev/null
        sleep 0.2
    done
    log "warning: processes left in $CG:$pids"
}
cleanup() {
    local rc=$? d i
    trap - EXIT INT TERM
    set +e
    stop_pid "$HOLDER_PID"
    for pid in $GM_PID $SSHD_PID $GM_REAPER $SSHD_REAPER; do stop_pid "$pid"; done
    [[ -n $CG && -d $CG ]] && empty_groups
    if [[ -n $CREATED_USER ]]; then
        userdel "$CREATED_USER" 2>/dev/null || log "warning: could not delete user $CREATED_USER"
    fi
    if [[ -n $CG && -d $CG ]]; then
        for ((i = 0; i < 25; i++)); do
            for d in "$CG"/*/; do [[ -d $d ]] && rmdir "$d" 2>/dev/null; done
            rmdir "$CG" 2>/dev/null && break
            sleep 0.2
        done
        [[ -d $CG ]] && log "warning: could not remove the control group $CG"
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
for tool in ssh ssh-keygen git python3 timeout ss taskset openssl xargs; do
    command -v "$tool" >/dev/null || die "$tool is missing"
done
for s in ${ONLY//,/ }; do
    [[ $s =~ ^(packet|latency|parallel|clone|push|memory|loadgen)$ ]] || die "unknown section in BENCH_ONLY: $s"
done
if [[ ! -x /usr/sbin/sshd ]]; then
    log "installing openssh-server (sshd is missing)"
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y --no-install-recommends openssh-server >&2 ||
        die "apt-get install openssh-server failed"
fi
SSHD=/usr/sbin/sshd

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
if [[ -z ${BENCH_GITMOUTH:-} || -z ${BENCH_TOOLS:-} ]]; then
    log "building gitmouth and the bench tools (release)"
    (cd "$ROOT" && timeout 3600 cargo build --release -p gitmouth-smol -p gm-bench-tools >&2) || die "cargo build failed"
fi
GITMOUTH=${BENCH_GITMOUTH:-$TARGET/release/gitmouth}
TOOLS=${BENCH_TOOLS:-$TARGET/release}
[[ -x $GITMOUTH ]] || die "no gitmouth binary at $GITMOUTH"
for t in gm-loadgen gm-packet-bench; do [[ -x $TOOLS/$t ]] || die "no $t in $TOOLS"; done

# Open files: each held session is a socket (and, for the real ssh client, a
# process with its own). Raised for this shell and so for everything it starts.
ulimit -Hn "$NOFILE" 2>/dev/null || true
ulimit -n "$NOFILE" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if (($(ulimit -n) < NOFILE)); then
    log "warning: open files limited to $(ulimit -n) here (hard limit), not $NOFILE"
fi
NOFILE=$(ulimit -n)
((NOFILE > LG_SESSIONS + 100)) || die "open files limited to $NOFILE: too few for $LG_SESSIONS sessions"

WORK=$(mktemp -d /tmp/gitmouth-bench.XXXXXX)
chmod 755 "$WORK"   # the sshd login user reads the key and writes its repositories here
RESULTS=$WORK/results.tsv
printf 'test\tvariant\tserver\trun\tn\tseconds\tcpu_server\tcpu_own\tcpu_client\tcpu_ssh\tvalue\tpss0\tpss1\n' >"$RESULTS"
CLK_TCK=$(getconf CLK_TCK)

# --- CPU accounting: one control group per server, two for the client ----------
# cgroup v1's cpuacct where mounted (cpuacct.usage, ns), else cgroup v2
# (cpu.stat usage_usec). A server and everything it starts (git, sshd's
# per-connection processes, re-parented or not) is counted in its group.
if [[ -f /sys/fs/cgroup/cpuacct/cpuacct.usage ]]; then
    CG=/sys/fs/cgroup/cpuacct/gitmouth-bench.$$
else
    v2=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
    [[ -n $v2 ]] || die "no cgroup v1 cpuacct nor cgroup v2 mounted: cannot account CPU per process tree"
    CG=$v2/gitmouth-bench.$$
fi
for g in gitmouth sshd client client-ssh; do mkdir -p "$CG/$g" || die "cannot create control group $CG/$g"; done
cg_ns() { # group: CPU nanoseconds used by it so far
    local f=$CG/$1 line
    if [[ -f $f/cpuacct.usage ]]; then
        cat "$f/cpuacct.usage"
    else
        while read -r line; do
            [[ $line == usage_usec* ]] && { echo $((${line#usage_usec } * 1000)); return; }
        done <"$f/cpu.stat"
    fi
}
in_cg() { # group command...: runs the command inside the group
    sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$CG/$1" "${@:2}"
}
cg_count() { wc -l <"$CG/$1/cgroup.procs"; }

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

# Both servers run under bench/subreaper.py, which reaps what they orphan,
# in their own control group (the subreaper itself is not in it).
start_server() { # name command...
    local name=$1 reaper pid i
    shift
    python3 "$ROOT/bench/subreaper.py" --cgroup "$CG/$name" "$WORK/$name.pid" "$@" >"$WORK/$name.log" 2>&1 &
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
start_gitmouth() {
    start_server gitmouth env HOME="$WORK/gm-home" "$GITMOUTH" --listen "127.0.0.1:$GM_PORT" --data-dir "$WORK/gm" \
        --host-key "$WORK/host_ed25519" --authorized-keys "$WORK/client_ed25519.pub" \
        "${GM_LIMITS[@]}" --log warn
    wait_port gitmouth "$GM_REAPER" "$GM_PORT"
}

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
LogLevel ERROR
$SSHD_LIMITS
EOF
"$SSHD" -t -f "$WORK/sshd_config" || die "sshd rejects its configuration"
start_sshd() {
    start_server sshd "$SSHD" -D -e -f "$WORK/sshd_config"
    wait_port sshd "$SSHD_REAPER" "$SSHD_PORT"
}
# A fresh server process (for the memory figures: its heap holds nothing
# freed by earlier work).
restart_server() { # server
    if [[ $1 == gitmouth ]]; then
        stop_pid "$GM_PID"
        stop_pid "$GM_REAPER"
        rm -f "$WORK/gitmouth.pid"
        start_gitmouth
    else
        stop_pid "$SSHD_PID"
        stop_pid "$SSHD_REAPER"
        rm -f "$WORK/sshd.pid"
        start_sshd
    fi
}
start_gitmouth
start_sshd
log "gitmouth on 127.0.0.1:$GM_PORT (pid $GM_PID), sshd on 127.0.0.1:$SSHD_PORT (pid $SSHD_PID, login $SSHD_USER)"

LIMITS_TEXT="limits: open files $NOFILE (servers and clients); gitmouth ${GM_LIMITS[*]};
        sshd $(tr '\n' ';' <<<"$SSHD_LIMITS" | sed 's/;$//; s/;/; /g'); kernel pid_max $(cat /proc/sys/kernel/pid_max),
        ephemeral ports $(tr '\t' - </proc/sys/net/ipv4/ip_local_port_range), processes per user $(ulimit -u)"
log "$LIMITS_TEXT"

# --- client side -------------------------------------------------------------
# The client's ssh runs in its own control group, through a wrapper named ssh
# (git recognises OpenSSH by the name and passes GIT_PROTOCOL with -o SendEnv).
mkdir -p "$WORK/bin"
cat >"$WORK/bin/ssh" <<EOF
#!/bin/sh
echo \$\$ >"$CG/client-ssh/cgroup.procs"
exec $(command -v ssh) "\$@"
EOF
chmod 755 "$WORK/bin/ssh"
SSH_OPTS="-F /dev/null -i $WORK/client_ed25519 -o IdentitiesOnly=yes -o BatchMode=yes \
-o StrictHostKeyChecking=yes -o UserKnownHostsFile=$WORK/known_hosts -o HostKeyAlgorithms=ssh-ed25519"
SSH_BASE="$WORK/bin/ssh $SSH_OPTS -o LogLevel=ERROR"
export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.invalid GIT_AUTHOR_DATE='2024-01-01T00:00:00Z'
export GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.invalid GIT_COMMITTER_DATE='2024-01-01T00:00:00Z'

url() { # server repo-name
    case $1 in
    gitmouth) echo "ssh://git@127.0.0.1:$GM_PORT/$2.git" ;;
    sshd) echo "ssh://$SSHD_USER@127.0.0.1:$SSHD_PORT$WORK/sshd-repos/$2.git" ;;
    esac
}
server_port() { if [[ $1 == gitmouth ]]; then echo "$GM_PORT"; else echo "$SSHD_PORT"; fi; }
server_pid() { if [[ $1 == gitmouth ]]; then echo "$GM_PID"; else echo "$SSHD_PID"; fi; }
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

# The server's own CPU ticks (gitmouth: its process alone, without git).
own_ticks() {
    local stat f
    stat=$(<"/proc/$1/stat")
    stat=${stat##*) }
    read -r -a f <<<"$stat"
    echo $((f[11] + f[12]))
}
# Established TCP connections to a server's port.
conns() { ss -Htn state established "( sport = :$(server_port "$1") )" | wc -l; }
# Waits until the server has nothing left of earlier work: no process in its
# group but itself, no connection open.
wait_server_idle() { # server [max-seconds, default 30]
    local i
    for ((i = 0; i < ${2:-30} * 20; i++)); do
        if [[ $(cg_count "$1") == 1 && $(conns "$1") == 0 ]]; then return 0; fi
        sleep 0.05
    done
    log "warning: $1 still has $(($(cg_count "$1") - 1)) processes and $(conns "$1") connections; its CPU time for this run may be off"
}
us() { local t=${1/./}; echo $((10#$t)); }   # EPOCHREALTIME -> microseconds
fmt6() { printf '%d.%06d' $(($1 / 1000000)) $(($1 % 1000000)); } # µs -> s

# Runs one timed command (in the client's group) against a server and appends
# a result line: wall time, server CPU (its group), the server's own CPU
# (gitmouth: without git), the client's CPU (git and the rest) and its ssh's.
# timed test variant server run n -- command...
timed() {
    local test=$1 variant=$2 server=$3 run=$4 n=$5
    shift 6
    local t0 t1 s0 s1 o0 o1 c0 c1 h0 h1 pid
    pid=$(server_pid "$server")
    wait_server_idle "$server"
    s0=$(cg_ns "$server") o0=$(own_ticks "$pid") c0=$(cg_ns client) h0=$(cg_ns client-ssh)
    t0=$EPOCHREALTIME
    if ! in_cg client timeout "$OP_TIMEOUT" "$@"; then
        die "$test $variant against $server failed or timed out: $*"
    fi
    t1=$EPOCHREALTIME
    wait_server_idle "$server"
    s1=$(cg_ns "$server") o1=$(own_ticks "$pid") c1=$(cg_ns client) h1=$(cg_ns client-ssh)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t-\t-\t-\n' "$test" "$variant" "$server" "$run" "$n" \
        "$(fmt6 $(($(us "$t1") - $(us "$t0"))))" "$(fmt6 $(((s1 - s0) / 1000)))" \
        "$(fmt6 $(((o1 - o0) * 1000000 / CLK_TCK)))" "$(fmt6 $(((c1 - c0) / 1000)))" \
        "$(fmt6 $(((h1 - h0) / 1000)))" >>"$RESULTS"
}
row() { # test variant server run n seconds value pss0 pss1
    printf '%s\t%s\t%s\t%s\t%s\t%s\t-\t-\t-\t-\t%s\t%s\t%s\n' "$@" >>"$RESULTS"
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
T_START=$SECONDS

# --- repositories --------------------------------------------------------------
git init -q -b main "$WORK/tiny"
echo tiny >"$WORK/tiny/README"
git -C "$WORK/tiny" add README
git -C "$WORK/tiny" commit -q -m tiny
REPOS=tiny
PACK_BYTES=0
if section clone || section push; then
    log "generating a ${SIZE_MB} MiB repository of incompressible data"
    git init -q -b main "$WORK/src"
    python3 "$ROOT/bench/random_files.py" "$WORK/src" "$SIZE_MB"
    git -C "$WORK/src" add -A
    git -C "$WORK/src" commit -q -m "incompressible data"
    git -C "$WORK/src" -c gc.auto=0 repack -a -d -q
    git -C "$WORK/src" prune-packed
    PACK_BYTES=$(stat -c %s "$WORK"/src/.git/objects/pack/*.pack)
    log "commit $(git -C "$WORK/src" rev-parse --short HEAD), pack of $PACK_BYTES bytes"
    REPOS="tiny bench"
fi

GIT_SSH_COMMAND=$SSH_BASE
export GIT_SSH_COMMAND
for s in $SERVERS; do
    for r in $REPOS; do
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
    for r in $REPOS; do
        d=$(server_repo_dir "$s" "$r")
        git --git-dir "$d" -c gc.auto=0 repack -a -d -q
        git --git-dir "$d" prune-packed
        [[ $s == sshd ]] && chown -R "$SSHD_USER:" "$d"
    done
done

for s in $SERVERS; do
    # git protocol v2 on both (sshd passes GIT_PROTOCOL on through AcceptEnv)
    out=$(GIT_SSH_COMMAND=$SSH_BASE GIT_TRACE_PACKET=1 timeout 60 git ls-remote "$(url "$s" tiny)" 2>&1 >/dev/null) ||
        die "ls-remote against $s failed: $out"
    grep -q "< version 2" <<<"$out" || die "$s does not speak git protocol v2"
    if section clone || section push; then
        for c in $CIPHERS; do check_negotiated "$s" "$(ssh_cmd_for_cipher "$c")" "server->client cipher: ${c%%:*}"; done
    fi
    for k in $KEXES; do check_negotiated "$s" "$SSH_BASE -o KexAlgorithms=$k" "kex: algorithm: $k"; done
done

# --- packet layer ----------------------------------------------------------------
if section packet; then
    log "packet layer: gm-packet-bench and openssl speed, pinned to CPU $PIN_CPU, $RUNS runs"
    pb_args=()
    for c in $CIPHERS; do pb_args+=(--cipher "$c"); done
    for ((run = 1; run <= RUNS; run++)); do
        timeout 600 taskset -c "$PIN_CPU" "$TOOLS/gm-packet-bench" --tsv --openssl --seconds 1 "${pb_args[@]}" >"$WORK/packet.out" ||
            die "gm-packet-bench failed"
        while IFS=$'\t' read -r cipher what mbs; do
            row packet "$cipher" "$what" "$run" 1 - "$mbs" - -
        done <"$WORK/packet.out"
        log "packet run $run/$RUNS"
    done
fi

# --- connection set-up, sequential -------------------------------------------------
if section latency; then
    for k in $KEXES; do
        GIT_SSH_COMMAND="$SSH_BASE -o KexAlgorithms=$k"
        export GIT_SSH_COMMAND
        for ((run = -2; run <= LAT_RUNS; run++)); do # runs -2..0 warm up
            for s in $SERVERS; do
                timed setup "$k" "$s" "$run" 1 -- git ls-remote -q "$(url "$s" tiny)" >/dev/null
            done
        done
        log "sequential set-up $k: $LAT_RUNS runs"
    done
    unset GIT_SSH_COMMAND
fi

# --- connection set-up, N in flight --------------------------------------------------
if section parallel; then
    for k in $KEXES; do
        GIT_SSH_COMMAND="$SSH_BASE -o KexAlgorithms=$k"
        export GIT_SSH_COMMAND
        for ((run = 0; run <= RUNS; run++)); do # run 0 warms up
            for s in $SERVERS; do
                timed parallel "$k" "$s" "$run" "$PAR_CONNS" -- sh -c \
                    'seq "$1" | xargs -P "$2" -I{} git ls-remote -q "$3" >/dev/null' sh "$PAR_CONNS" "$INFLIGHT" "$(url "$s" tiny)"
            done
            log "$INFLIGHT in flight, $k: run $run/$RUNS"
        done
    done
    unset GIT_SSH_COMMAND
fi

# --- clone -----------------------------------------------------------------------
if section clone; then
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
    unset GIT_SSH_COMMAND
fi

# --- push --------------------------------------------------------------------------
if section push; then
    for c in $CIPHERS; do
        export GIT_SSH_COMMAND
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
    unset GIT_SSH_COMMAND
fi

# --- memory per idle authenticated session --------------------------------------------
# An idle authenticated session: key exchange, publickey authentication, no
# channel (what `ssh -N` holds; gm-loadgen does the same). Measured as
#   (PSS of the server's group with N sessions - PSS with none) / N.
pss() { python3 "$ROOT/bench/pss.py" --cgroup "$CG/$1"; }
# hold test variant server run timeout-secs command...: starts the holder,
# waits for its `held=` line, measures, ends it.
hold() {
    local test=$1 variant=$2 server=$3 run=$4 tmo=$5
    shift 5
    local p0 n0 p1 n1 line held status i
    # A fresh server, warmed by one connection, with nothing else open.
    restart_server "$server"
    GIT_SSH_COMMAND=$SSH_BASE timeout 60 git ls-remote -q "$(url "$server" tiny)" >/dev/null ||
        die "ls-remote against the restarted $server failed"
    wait_server_idle "$server"
    sleep 1
    read -r p0 n0 < <(pss "$server")
    rm -f "$WORK/held" "$WORK/status"
    "$@" >"$WORK/held" 2>>"$WORK/holder.log" &
    HOLDER_PID=$!
    for ((i = 0; i < tmo * 10; i++)); do
        [[ -s $WORK/held ]] && break
        kill -0 "$HOLDER_PID" 2>/dev/null || break
        sleep 0.1
    done
    line=$(head -1 "$WORK/held" 2>/dev/null || true)
    if [[ $line != held=* ]]; then
        stop_pid "$HOLDER_PID"
        HOLDER_PID=""
        die "$test $variant against $server: the sessions were not held within $tmo s; see $WORK/holder.log"
    fi
    sleep 3 # let the last sessions settle (and a keepalive round pass for some)
    read -r p1 n1 < <(pss "$server")
    status=$(cat "$WORK/status" 2>/dev/null || echo "?")
    held=$(sed 's/.*held=\([0-9]*\).*/\1/' <<<"$line")
    # Sessions the server ended since they were held are not counted.
    [[ $status =~ ^held=([0-9]+) ]] && ((BASH_REMATCH[1] < held)) && held=${BASH_REMATCH[1]}
    log "$test $variant $server: $line; now $status; server group: $n0 -> $n1 processes, $(conns "$server") connections, PSS $p0 -> $p1 KiB"
    row "$test" "$variant" "$server" "$run" "$held" "$(sed 's/.*seconds=\([0-9.]*\).*/\1/' <<<"$line")" \
        "$(sed 's/.*reason=\([a-z-]*\).*/\1/' <<<"$line")" "$p0" "$p1"
    stop_pid "$HOLDER_PID"
    HOLDER_PID=""
    wait_server_idle "$server" 300 # thousands of sshd processes take a while to end
}
if section memory; then
    for n in $MEM_SESSIONS; do
        for ((run = 1; run <= MEM_RUNS; run++)); do
            for s in $SERVERS; do
                user=git
                [[ $s == sshd ]] && user=$SSHD_USER
                hold memory "ssh-$n" "$s" "$run" $((60 + n / 5)) \
                    python3 "$ROOT/bench/idle_ssh.py" "$n" "$SSH_CONCURRENCY" "$FLOOR_MB" "$WORK/status" \
                    "$(command -v ssh)" $SSH_OPTS -o LogLevel=VERBOSE -o KexAlgorithms=curve25519-sha256 -N -p "$(server_port "$s")" "$user@127.0.0.1"
            done
        done
    done
fi
if section loadgen; then
    servers=gitmouth
    [[ $LG_SSHD == 1 ]] && servers="gitmouth sshd"
    for s in $servers; do
        user=git
        [[ $s == sshd ]] && user=$SSHD_USER
        hold loadgen "gm-loadgen-$LG_SESSIONS" "$s" 1 $((120 + LG_SESSIONS / 10)) \
            "$TOOLS/gm-loadgen" --addr "127.0.0.1:$(server_port "$s")" --key "$WORK/client_ed25519" --user "$user" \
            --count "$LG_SESSIONS" --concurrency "$LG_CONCURRENCY" --kex curve25519-sha256 \
            --floor-mb "$FLOOR_MB" --status "$WORK/status" --hold 3600
    done
fi

# --- report ----------------------------------------------------------------------
{
    echo "machine: $NCPU CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), Linux $(uname -r), $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "client:  $(ssh -V 2>&1), $(git --version), $(openssl version)"
    echo "sshd:    openssh-server $(dpkg-query -W -f '${Version}' openssh-server 2>/dev/null || echo '?'), login $SSHD_USER"
    echo "gitmouth: $("$GITMOUTH" --version 2>/dev/null || echo '?') ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'))"
    echo "load average: $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end; $((SECONDS - T_START)) s"
    echo "sections: $ONLY; $RUNS runs per figure, $LAT_RUNS sequential connections, $INFLIGHT in flight x $PAR_CONNS per run;"
    echo "  repository ${SIZE_MB} MiB of random data, pack $PACK_BYTES bytes; cgroup CPU accounting in ${CG%/*}"
    echo "$LIMITS_TEXT"
} >"$RESULTS.header"
if [[ -n ${BENCH_RAW:-} ]]; then
    cp "$RESULTS" "$BENCH_RAW"
    cp "$RESULTS.header" "$BENCH_RAW.header"
fi
python3 "$ROOT/bench/report.py" --ncpu "$NCPU" "$RESULTS"
