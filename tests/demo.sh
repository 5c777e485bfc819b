#!/usr/bin/env bash
# lvsd as a NAT director, end to end, in network namespaces: the README's
# demonstration.
#
#   sudo tests/demo.sh
#
# What it does (see /work/shared/TESTBED.md for the rules it keeps):
#   1. installs the Debian packages it uses, only those missing (iproute2
#      nftables ethtool curl procps), and builds lvsd, lvsadm and the
#      lvs-testsrv real server (cargo build --release);
#   2. builds the namespace lab the end-to-end tests use (tests/support/mod.rs,
#      Lab::nat): a client, a director and three real servers behind a bridge,
#      all in namespaces named after a prefix unique to this run;
#   3. starts lvs-testsrv in each real server, and lvsd in the director with
#      config/nat.toml (copied to a temporary directory, its admin socket
#      moved there): TCP 198.19.0.100:80 wrr 1:2:3 and UDP 198.19.0.100:53 rr;
#   4. sends 600 HTTP requests (separate connections) and 30 UDP queries from
#      the client to the VIP and counts which real server answered;
#   5. shows lvsadm -L -n, lvsadm -L -n --stats and lvsadm --status;
#   6. stops everything it started and deletes exactly the namespaces and the
#      directory it made, also on failure or Ctrl-C.
#
# Every packet stays inside the namespaces; addresses are from 198.18.0.0/15.
# Needs root; re-runs itself with sudo when it can. Exit status 0 when every
# request and query was answered.
#
# Environment: LVSD_DEMO_CONFIG names another source config (default
# <repo>/config/nat.toml); it must serve the services above.
set -euo pipefail

SELF=$(readlink -f "${BASH_SOURCE[0]}")
REPO=$(cd "$(dirname "$SELF")/.." && pwd)

if (($# > 0)); then
    case $1 in
    -h | --help)
        sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$SELF"
        exit 0
        ;;
    *)
        echo "demo.sh: takes no arguments (see --help)" >&2
        exit 2
        ;;
    esac
fi

if ((EUID != 0)); then
    if command -v sudo >/dev/null 2>&1; then
        echo "demo.sh: network namespaces need root; re-running with sudo" >&2
        # sudo resets the environment: keep PATH (cargo) and cargo's settings.
        keep=("PATH=$PATH")
        for v in CARGO_HOME RUSTUP_HOME CARGO_TARGET_DIR LVSD_DEMO_CONFIG; do
            if [[ -n ${!v:-} ]]; then
                keep+=("$v=${!v}")
            fi
        done
        exec sudo -- env "${keep[@]}" "$SELF" "$@"
    fi
    echo "demo.sh: this demo builds network namespaces and installs packages," \
        "so it needs root, and sudo is not installed: run it as root." >&2
    exit 1
fi

# ---------------------------------------------------------------- constants

readonly VIP=198.19.0.100
readonly CLIENT_ADDR=198.18.0.2 DIRECTOR_EXT=198.18.0.1 DIRECTOR_INT=198.18.1.1
readonly REAL_SERVERS=3 WEIGHTS=(0 1 2 3) # WEIGHTS[i]: weight of rsi
readonly HTTP_REQUESTS=600 UDP_QUERIES=30
readonly PACKAGES=(iproute2 nftables ethtool curl procps)
# Namespaces are <prefix>-client, <prefix>-director, <prefix>-lan, <prefix>-rsN.
readonly PREFIX="lvsdemo$$"
SRC_CONFIG=${LVSD_DEMO_CONFIG:-$REPO/config/nat.toml}
BIN=${CARGO_TARGET_DIR:-$REPO/target}/release

# What this run made, for cleanup: namespaces (in creation order), the
# processes it started, its temporary directory.
CREATED_NS=()
SERVER_PIDS=()
LVSD_PID=
TMP=
SOCK=
T0=

# ------------------------------------------------------------------ helpers

step() { printf '\n==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
die() {
    printf 'demo.sh: %s\n' "$*" >&2
    exit 1
}
now() { printf '%s' "$EPOCHREALTIME"; }
# Seconds since $1 (an EPOCHREALTIME), one decimal.
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

ns() { printf '%s-%s' "$PREFIX" "$1"; }

# 02:00:a:b:c:d for the interface holding a.b.c.d; 02:01:... for the
# bridge-side end of its veth (as mac_of / peer_mac_of in tests/support).
mac_of() {
    local IFS=.
    # shellcheck disable=SC2086 # split the address on dots
    printf '02:00:%02x:%02x:%02x:%02x' $1
}
peer_mac_of() {
    local IFS=.
    # shellcheck disable=SC2086
    printf '02:01:%02x:%02x:%02x:%02x' $1
}

# Whether pid $1 is running (a zombie is not).
alive() {
    local state
    state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    [[ $state != Z* ]]
}

# Waits up to $2 seconds for pid $1 to exit.
wait_exit() {
    local pid=$1 i
    for ((i = 0; i < $2 * 20; i++)); do
        alive "$pid" || return 0
        sleep 0.05
    done
    ! alive "$pid"
}

# Waits (at most $4 s) until log $1 has the line $2; fails at once if the
# process $3 writing it exits.
wait_for_line() {
    local log=$1 line=$2 pid=$3 i
    for ((i = 0; i < $4 * 20; i++)); do
        if grep -qxF -- "$line" "$log" 2>/dev/null; then
            return 0
        fi
        alive "$pid" || die "$(basename "$log" .log) exited before saying '$line'"
        sleep 0.05
    done
    die "no '$line' from $(basename "$log" .log) within $4 s"
}

# Runs `ip -n <ns of role $1> ...`.
ipn() {
    local role=$1
    shift
    ip -n "$(ns "$role")" "$@"
}

# Runs a command in the namespace of role $1.
in_ns() {
    local role=$1
    shift
    ip netns exec "$(ns "$role")" "$@"
}

# ------------------------------------------------------------------ cleanup

cleanup() {
    local rc=$? pid name i left f
    trap '' INT TERM # finish cleaning up even on a second Ctrl-C
    trap - EXIT
    set +e
    if ((rc != 0)) && [[ -n $TMP && -d $TMP ]]; then
        for f in "$TMP"/*.log; do
            [[ -s $f ]] || continue
            printf '\n--- last lines of %s ---\n' "$(basename "$f")" >&2
            tail -n 20 "$f" >&2
        done
    fi
    if [[ -n $TMP || ${#CREATED_NS[@]} -gt 0 || ${#SERVER_PIDS[@]} -gt 0 ]]; then
        step "Cleaning up"
    fi
    if [[ -n $LVSD_PID ]] && alive "$LVSD_PID"; then
        kill -TERM "$LVSD_PID" 2>/dev/null
        if wait_exit "$LVSD_PID" 5; then
            wait "$LVSD_PID" 2>/dev/null
            info "lvsd stopped (SIGTERM, exit status $?)"
        else
            info "lvsd ignored SIGTERM for 5 s: killing it"
            kill -KILL "$LVSD_PID" 2>/dev/null
            wait "$LVSD_PID" 2>/dev/null
        fi
        if command -v nft >/dev/null 2>&1 && [[ -e /run/netns/$(ns director) ]]; then
            left=$(in_ns director nft list tables 2>/dev/null)
            info "nftables tables left in the director: ${left:-none}"
        fi
    fi
    if ((${#SERVER_PIDS[@]} > 0)); then
        kill -TERM "${SERVER_PIDS[@]}" 2>/dev/null
        for pid in "${SERVER_PIDS[@]}"; do
            wait_exit "$pid" 2 || kill -KILL "$pid" 2>/dev/null
            wait "$pid" 2>/dev/null
        done
        info "stopped ${#SERVER_PIDS[@]} test servers"
    fi
    # Anything still inside this run's namespaces was started by this run.
    for name in "${CREATED_NS[@]}"; do
        for pid in $(ip netns pids "$name" 2>/dev/null); do
            info "killing leftover pid $pid in $name"
            kill -KILL "$pid" 2>/dev/null
        done
    done
    for ((i = ${#CREATED_NS[@]} - 1; i >= 0; i--)); do
        ip netns del "${CREATED_NS[i]}" || info "could not delete namespace ${CREATED_NS[i]}"
    done
    ((${#CREATED_NS[@]} == 0)) || info "deleted ${#CREATED_NS[@]} namespaces ($PREFIX-*)"
    if [[ -n $TMP && -d $TMP ]]; then
        rm -rf -- "$TMP"
        info "removed $TMP"
    fi
    if [[ -n $T0 ]]; then
        info "$(since "$T0") s after the build"
    fi
    if ((rc == 0)); then
        printf '\nDemo finished.\n'
    else
        printf '\nDemo FAILED (exit status %d).\n' "$rc" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'echo; echo "demo.sh: interrupted" >&2; exit 130' INT
trap 'echo "demo.sh: terminated" >&2; exit 143' TERM

# ------------------------------------------------------- 1. packages, build

[[ -f $SRC_CONFIG ]] || die "no config $SRC_CONFIG (the demo serves what it names)"

step "Checking Debian packages: ${PACKAGES[*]}"
if command -v dpkg-query >/dev/null 2>&1; then
    missing=()
    for p in "${PACKAGES[@]}"; do
        if [[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true) != installed ]]; then
            missing+=("$p")
        fi
    done
    if ((${#missing[@]} == 0)); then
        info "all installed"
    else
        info "installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update
        apt-get install -y --no-install-recommends "${missing[@]}"
    fi
else
    info "no dpkg-query (not Debian?): not installing; the demo needs ${PACKAGES[*]}"
fi

step "Building lvsd, lvsadm and lvs-testsrv (cargo build --release)"
command -v cargo >/dev/null 2>&1 ||
    die "cargo not found: install a Rust toolchain (1.80 or newer, e.g. from https://rustup.rs)"
build=(cargo build --release -p lvsd -p lvsadm -p lvs-tests --bins)
cd "$REPO"
if [[ -n ${SUDO_USER:-} && $SUDO_USER != root && $(stat -c %U "$REPO") == "$SUDO_USER" ]] &&
    command -v sudo >/dev/null 2>&1; then
    # Build as the user who ran sudo, so target/ stays theirs.
    sudo -u "$SUDO_USER" -H -- env "PATH=$PATH" \
        ${CARGO_TARGET_DIR:+"CARGO_TARGET_DIR=$CARGO_TARGET_DIR"} "${build[@]}"
else
    "${build[@]}"
fi
for b in lvsd lvsadm lvs-testsrv; do
    [[ -x $BIN/$b ]] || die "$BIN/$b was not built"
done
T0=$(now)

TMP=$(mktemp -d "/tmp/$PREFIX.XXXXXX")
SOCK=$TMP/lvsd.sock

# ---------------------------------------------------------------- 2. the lab

step "Building the namespace lab (prefix $PREFIX)"
roles=(client director lan)
for ((i = 1; i <= REAL_SERVERS; i++)); do
    roles+=("rs$i")
done
for role in "${roles[@]}"; do
    ip netns add "$(ns "$role")"
    CREATED_NS+=("$(ns "$role")")
    # IPv6 off (no ND/MLD noise), and the kernel does not forward: only lvsd
    # moves packets between the director's two sides.
    in_ns "$role" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 \
        net.ipv6.conf.default.disable_ipv6=1 net.ipv4.ip_forward=0
    ipn "$role" link set lo up
done

# A veth pair from ($1 ns, $2 interface, $3 address) to ($4 ns, $5 interface,
# $6 address, or "" for a bridge port), offloads off at both ends.
veth() {
    local a_ns=$1 a_if=$2 a_addr=$3 b_ns=$4 b_if=$5 b_addr=$6 b_mac
    if [[ -n $b_addr ]]; then
        b_mac=$(mac_of "$b_addr")
    else
        b_mac=$(peer_mac_of "$a_addr")
    fi
    ipn "$a_ns" link add "$a_if" address "$(mac_of "$a_addr")" type veth \
        peer name "$b_if" address "$b_mac" netns "$(ns "$b_ns")"
    local end role ifname addr
    for end in "$a_ns $a_if $a_addr" "$b_ns $b_if $b_addr"; do
        read -r role ifname addr <<<"$end"
        in_ns "$role" ethtool -K "$ifname" tso off gso off gro off tx off rx off sg off >/dev/null
        if [[ -n $addr ]]; then
            ipn "$role" addr add "$addr/24" dev "$ifname"
            ipn "$role" link set "$ifname" up
        fi
    done
}
rs_addr() { printf '198.18.1.%d' $((10 + $1)); }

veth client eth0 "$CLIENT_ADDR" director ext0 "$DIRECTOR_EXT"
veth director int0 "$DIRECTOR_INT" lan dir0 ""
for ((i = 1; i <= REAL_SERVERS; i++)); do
    veth "rs$i" eth0 "$(rs_addr "$i")" lan "rs$i" ""
done

# The bridge, with a static FDB entry for the MAC behind each port.
ipn lan link add br0 type bridge
ports=("dir0 $DIRECTOR_INT")
for ((i = 1; i <= REAL_SERVERS; i++)); do
    ports+=("rs$i $(rs_addr "$i")")
done
for port in "${ports[@]}"; do
    read -r ifname behind <<<"$port"
    ipn lan link set "$ifname" master br0 up
    bridge -n "$(ns lan)" fdb add "$(mac_of "$behind")" dev "$ifname" master static
done
ipn lan link set br0 up

ipn client route add 198.19.0.0/16 via "$DIRECTOR_EXT"
for ((i = 1; i <= REAL_SERVERS; i++)); do
    ipn "rs$i" route add default via "$DIRECTOR_INT"
done
info "client    $(ns client): eth0 $CLIENT_ADDR, 198.19.0.0/16 via $DIRECTOR_EXT"
info "director  $(ns director): ext0 $DIRECTOR_EXT, int0 $DIRECTOR_INT (ip_forward=0)"
info "lan       $(ns lan): br0 over dir0 rs1..rs$REAL_SERVERS"
for ((i = 1; i <= REAL_SERVERS; i++)); do
    info "rs$i       $(ns "rs$i"): eth0 $(rs_addr "$i"), default via $DIRECTOR_INT"
done

# --------------------------------------------------------- 3. real servers

step "Starting lvs-testsrv in rs1..rs$REAL_SERVERS (HTTP :8080, UDP :5353)"
for ((i = 1; i <= REAL_SERVERS; i++)); do
    addr=$(rs_addr "$i")
    # Not through in_ns: a backgrounded function runs in a subshell, and $!
    # would be that subshell's pid. `ip netns exec` execs the server, so here
    # $! is the server's own pid.
    ip netns exec "$(ns "rs$i")" "$BIN/lvs-testsrv" --name "rs$i" \
        --http "$addr:8080" --udp "$addr:5353" </dev/null >"$TMP/rs$i.log" 2>&1 &
    SERVER_PIDS+=("$!")
    wait_for_line "$TMP/rs$i.log" ready "$!" 5
    info "rs$i ready (pid $!)"
done

# ------------------------------------------------------------------ 4. lvsd

step "Starting lvsd in the director"
config=$TMP/nat.toml
sock_line="admin_socket = \"$SOCK\""
if grep -Eq '^[[:space:]]*admin_socket[[:space:]]*=' "$SRC_CONFIG"; then
    sed -E "s|^[[:space:]]*admin_socket[[:space:]]*=.*$|$sock_line|" "$SRC_CONFIG" >"$config"
else
    sed "/^[[:space:]]*\[daemon\]/a $sock_line" "$SRC_CONFIG" >"$config"
fi
[[ $(grep -c "^$sock_line\$" "$config") == 1 ]] ||
    die "could not point $SRC_CONFIG's admin_socket at $SOCK (no [daemon] table?)"
info "config: $SRC_CONFIG, admin_socket moved to $SOCK"
check=$("$BIN/lvsd" --check --config "$config" 2>&1) || die "lvsd rejects $config: $check"
info "lvsd --check: $check"
ip netns exec "$(ns director)" "$BIN/lvsd" --config "$config" </dev/null >"$TMP/lvsd.log" 2>&1 &
LVSD_PID=$!
for ((i = 0; ; i++)); do
    if "$BIN/lvsadm" --socket "$SOCK" -L -n >/dev/null 2>&1; then
        break
    fi
    alive "$LVSD_PID" || die "lvsd exited during startup"
    ((i < 200)) || die "lvsd's admin socket $SOCK did not answer within 10 s"
    sleep 0.05
done
info "lvsd running (pid $LVSD_PID), admin socket answers"

# --------------------------------------------------------------- 5. traffic

step "Waiting for the first answer through the VIP $VIP"
t=$(now)
for ((i = 0; ; i++)); do
    if [[ -n $(in_ns client curl -s --max-time 2 "http://$VIP/" 2>/dev/null) ]]; then
        break
    fi
    alive "$LVSD_PID" || die "lvsd exited"
    ((i < 50)) || die "no answer from http://$VIP/ within 10 s"
    sleep 0.2
done
info "answered after $(since "$t") s (one more connection in the counters below)"

step "$HTTP_REQUESTS HTTP requests to http://$VIP/ (one connection each, wrr 1:2:3)"
t=$(now)
# One curl, URLs /1 .. /600, `Connection: close`: a new connection each.
# Bounded: 2 s to connect, 5 s per request, 60 s in all.
timeout 60 ip netns exec "$(ns client)" curl -sS --connect-timeout 2 --max-time 5 \
    -H 'Connection: close' "http://$VIP/[1-$HTTP_REQUESTS]" \
    >"$TMP/http.out" 2>"$TMP/curl.log" || true
elapsed=$(since "$t")
http_ok=0
for ((i = 1; i <= REAL_SERVERS; i++)); do
    n=$(grep -cx "rs$i" "$TMP/http.out" || true)
    http_ok=$((http_ok + n))
    expect=$((HTTP_REQUESTS * WEIGHTS[i] / 6))
    info "$(printf 'rs%d (weight %d): %4d answers   (expected %d)' "$i" "${WEIGHTS[i]}" "$n" "$expect")"
done
info "$http_ok of $HTTP_REQUESTS answered in $elapsed s"
if [[ -s $TMP/curl.log ]]; then
    info "curl said: $(head -n 3 "$TMP/curl.log")"
fi

step "$UDP_QUERIES UDP queries to $VIP:53 (a new source port each, rr)"
# Runs inside the client namespace: bash's /dev/udp gives a connected UDP
# socket; dd reads one whole datagram (bash's read would take one byte).
udp_queries() {
    local i
    for ((i = 1; i <= $1; i++)); do
        exec 3<>"/dev/udp/$2/53" || continue
        printf 'demo query %d\n' "$i" >&3
        timeout 1 dd bs=4096 count=1 status=none <&3
        exec 3<&-
    done
}
t=$(now)
timeout 45 ip netns exec "$(ns client)" bash -c \
    "$(declare -f udp_queries); udp_queries $UDP_QUERIES $VIP" >"$TMP/udp.out" 2>"$TMP/udp.log" || true
elapsed=$(since "$t")
udp_ok=0
for ((i = 1; i <= REAL_SERVERS; i++)); do
    n=$(grep -c "^rs$i demo query " "$TMP/udp.out" || true)
    udp_ok=$((udp_ok + n))
    info "$(printf 'rs%d: %3d answers   (expected %d)' "$i" "$n" $((UDP_QUERIES / REAL_SERVERS)))"
done
info "$udp_ok of $UDP_QUERIES answered in $elapsed s (e.g. \"$(head -n 1 "$TMP/udp.out")\")"

# -------------------------------------------------------------- 6. lvsadm

step "lvsadm -L -n  (the virtual services and their real servers)"
"$BIN/lvsadm" --socket "$SOCK" -L -n
step "lvsadm -L -n --stats  (traffic counters)"
"$BIN/lvsadm" --socket "$SOCK" -L -n --stats
step "lvsadm --status  (lvsd's per-shard counters)"
"$BIN/lvsadm" --socket "$SOCK" --status

((http_ok == HTTP_REQUESTS)) || die "only $http_ok of $HTTP_REQUESTS HTTP requests were answered"
((udp_ok == UDP_QUERIES)) || die "only $udp_ok of $UDP_QUERIES UDP queries were answered"
# The EXIT trap cleans up.
