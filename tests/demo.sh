#!/usr/bin/env bash
# lvsd end to end, in network namespaces: the README's demonstration. Part 1
# shows lvsd as a NAT director; part 2 one service whose real servers are
# reached by NAT, direct routing and IP-in-IP tunneling at once.
#
#   sudo tests/demo.sh [--method nat|mixed|all]
#
#   --method nat     part 1 only
#   --method mixed   part 2 only
#   --method all     both, one after the other (the default)
#
# What it does (see /work/shared/TESTBED.md for the rules it keeps):
#   1. installs the Debian packages it uses, only those missing (iproute2
#      nftables ethtool curl procps), and builds lvsd, lvsadm, the
#      lvs-testsrv real server and the lvs-tundecap IP-in-IP decapsulator
#      (cargo build --release);
#   2. builds the namespace lab the end-to-end tests use (tests/support/mod.rs,
#      Lab::nat): a client, a director and three real servers behind a bridge,
#      all in namespaces named after a prefix unique to this run;
#   Part 1, NAT (docs/methods.md):
#   3. starts lvs-testsrv in each real server, and lvsd in the director with
#      config/nat.toml (copied to a temporary directory, its admin socket
#      moved there): TCP 198.19.0.100:80 wrr 1:2:3 and UDP 198.19.0.100:53 rr;
#   4. sends 600 HTTP requests (separate connections) and 30 UDP queries from
#      the client to the VIP and counts which real server answered;
#   5. shows lvsadm -L -n, lvsadm -L -n --stats and lvsadm --status;
#   Part 2, mixed methods (as Lab::build with NAT, DR and TUN real servers):
#   6. re-wires the lab: the client joins the LAN (lan0 198.18.1.2), rs2 and
#      rs3 hold the VIP on lo without answering ARP for it and route the
#      client via its lan0, rs3 runs lvs-tundecap (this kernel has no ipip
#      driver); rs1 stays a NAT server;
#   7. starts lvsd with config/mixed.toml: TCP 198.19.0.100:80 wrr, rs1 NAT
#      to :8080 weight 1, rs2 direct routing weight 2, rs3 tunneling weight 3;
#   8. sends 600 HTTP requests, counts the answers per real server, shows
#      lvsadm -L -n (Masq, Route, Tunnel) and --stats, and proves that the
#      DR and TUN replies went straight to the client: the director forwarded
#      none of them (OutPkts 0), the client's kernel saw them arrive on lan0
#      from rs2's and rs3's MAC, and rs3 got its packets through the tunnel;
#   9. stops everything it started and deletes exactly the namespaces and the
#      directory it made, also on failure or Ctrl-C.
#
# Every packet stays inside the namespaces; addresses are from 198.18.0.0/15.
# Needs root; re-runs itself with sudo when it can. Exit status 0 when every
# request and query was answered and the replies took the expected path.
#
# Environment: LVSD_DEMO_CONFIG names another source config for part 1
# (default <repo>/config/nat.toml), LVSD_DEMO_MIXED_CONFIG one for part 2
# (default <repo>/config/mixed.toml); each must serve the services above.
set -euo pipefail

SELF=$(readlink -f "${BASH_SOURCE[0]}")
REPO=$(cd "$(dirname "$SELF")/.." && pwd)
ARGS=("$@")

usage_error() {
    echo "demo.sh: $* (see --help)" >&2
    exit 2
}
METHOD=all
while (($# > 0)); do
    case $1 in
    -h | --help)
        sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$SELF"
        exit 0
        ;;
    --method)
        (($# >= 2)) || usage_error "--method needs a value: nat, mixed or all"
        METHOD=$2
        shift 2
        ;;
    --method=*)
        METHOD=${1#--method=}
        shift
        ;;
    *)
        usage_error "unknown argument '$1'"
        ;;
    esac
done
case $METHOD in
nat | mixed | all) ;;
*) usage_error "--method is nat, mixed or all, not '$METHOD'" ;;
esac
RUN_NAT=false RUN_MIXED=false
[[ $METHOD == mixed ]] || RUN_NAT=true
[[ $METHOD == nat ]] || RUN_MIXED=true
readonly METHOD RUN_NAT RUN_MIXED

if ((EUID != 0)); then
    if command -v sudo >/dev/null 2>&1; then
        echo "demo.sh: network namespaces need root; re-running with sudo" >&2
        # sudo resets the environment: keep PATH (cargo) and cargo's settings.
        keep=("PATH=$PATH")
        for v in CARGO_HOME RUSTUP_HOME CARGO_TARGET_DIR LVSD_DEMO_CONFIG LVSD_DEMO_MIXED_CONFIG; do
            if [[ -n ${!v:-} ]]; then
                keep+=("$v=${!v}")
            fi
        done
        exec sudo -- env "${keep[@]}" "$SELF" "${ARGS[@]}"
    fi
    echo "demo.sh: this demo builds network namespaces and installs packages," \
        "so it needs root, and sudo is not installed: run it as root." >&2
    exit 1
fi

# ---------------------------------------------------------------- constants

readonly VIP=198.19.0.100
readonly CLIENT_ADDR=198.18.0.2 DIRECTOR_EXT=198.18.0.1 DIRECTOR_INT=198.18.1.1
# The client's address on the LAN (part 2): DR and TUN real servers send
# their replies there, past the director.
readonly CLIENT_LAN=198.18.1.2
readonly REAL_SERVERS=3 WEIGHTS=(0 1 2 3) # WEIGHTS[i]: weight of rsi
# Part 2: MIXED_METHODS[i] is rsi's method (the weights are WEIGHTS).
readonly MIXED_METHODS=(- nat dr tun)
readonly HTTP_REQUESTS=600 UDP_QUERIES=30
readonly PACKAGES=(iproute2 nftables ethtool curl procps)
# Namespaces are <prefix>-client, <prefix>-director, <prefix>-lan, <prefix>-rsN.
readonly PREFIX="lvsdemo$$"
SRC_CONFIG=${LVSD_DEMO_CONFIG:-$REPO/config/nat.toml}
SRC_MIXED_CONFIG=${LVSD_DEMO_MIXED_CONFIG:-$REPO/config/mixed.toml}
BIN=${CARGO_TARGET_DIR:-$REPO/target}/release

# What this run made, for cleanup: namespaces (in creation order), the
# processes it started, its temporary directory.
CREATED_NS=()
SERVER_PIDS=()
TUNDECAP_PID=
LVSD_PID=
TMP=
SOCK=
T0=
# What went wrong, reported at the end (a part that fails does not stop the
# next one).
FAILURES=()

# ------------------------------------------------------------------ helpers

step() { printf '\n==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
part() { printf '\n\n######## %s\n' "$*"; }
die() {
    printf 'demo.sh: %s\n' "$*" >&2
    exit 1
}
fail() {
    FAILURES+=("$*")
    printf '    FAILED: %s\n' "$*"
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

# Stops our child $1: SIGTERM, SIGKILL after $2 s; reaps it. Sets STOPPED_RC
# to its exit status and returns 1 if it had to be killed.
STOPPED_RC=
stop_child() {
    local pid=$1 grace=$2 killed=0
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_exit "$pid" "$grace"; then
        kill -KILL "$pid" 2>/dev/null || true
        killed=1
    fi
    STOPPED_RC=0
    wait "$pid" 2>/dev/null || STOPPED_RC=$?
    return "$killed"
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

# Stops lvsd (SIGTERM, SIGKILL after 5 s) and says whether it left its
# nftables table behind.
stop_lvsd() {
    local left
    [[ -n $LVSD_PID ]] || return 0
    if alive "$LVSD_PID"; then
        if stop_child "$LVSD_PID" 5; then
            info "lvsd stopped (SIGTERM, exit status $STOPPED_RC)"
        else
            info "lvsd ignored SIGTERM for 5 s: killed it"
        fi
        if command -v nft >/dev/null 2>&1 && [[ -e /run/netns/$(ns director) ]]; then
            left=$(in_ns director nft list tables 2>/dev/null || true)
            info "nftables tables left in the director: ${left:-none}"
        fi
    else
        wait "$LVSD_PID" 2>/dev/null || true
    fi
    LVSD_PID=
}

# Stops the test servers and lvs-tundecap this run started.
stop_servers() {
    local pid
    if [[ -n $TUNDECAP_PID ]]; then
        stop_child "$TUNDECAP_PID" 2 || true
        TUNDECAP_PID=
        info "stopped lvs-tundecap"
    fi
    if ((${#SERVER_PIDS[@]} > 0)); then
        kill -TERM "${SERVER_PIDS[@]}" 2>/dev/null || true
        for pid in "${SERVER_PIDS[@]}"; do
            stop_child "$pid" 2 || true
        done
        info "stopped ${#SERVER_PIDS[@]} test servers"
        SERVER_PIDS=()
    fi
}

# ------------------------------------------------------------------ cleanup

cleanup() {
    local rc=$? pid name i f
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
    stop_lvsd
    stop_servers
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

if $RUN_NAT; then
    [[ -f $SRC_CONFIG ]] || die "no config $SRC_CONFIG (the demo serves what it names)"
fi
if $RUN_MIXED; then
    [[ -f $SRC_MIXED_CONFIG ]] || die "no config $SRC_MIXED_CONFIG (the demo serves what it names)"
fi

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

step "Building lvsd, lvsadm, lvs-testsrv and lvs-tundecap (cargo build --release)"
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
for b in lvsd lvsadm lvs-testsrv lvs-tundecap; do
    [[ -x $BIN/$b ]] || die "$BIN/$b was not built"
done
T0=$(now)

TMP=$(mktemp -d "/tmp/$PREFIX.XXXXXX")

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
    # Two queues at each end, as a multi-queue NIC has: lvsd's XDP backend
    # runs a shard per queue (on a machine with two CPUs or more).
    ipn "$a_ns" link add "$a_if" numtxqueues 2 numrxqueues 2 address "$(mac_of "$a_addr")" type veth \
        peer name "$b_if" numtxqueues 2 numrxqueues 2 address "$b_mac" netns "$(ns "$b_ns")"
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

# Makes $1 a port of the LAN bridge, with a static FDB entry for the MAC of
# the interface holding address $2 behind it.
bridge_port() {
    ipn lan link set "$1" master br0 up
    bridge -n "$(ns lan)" fdb add "$(mac_of "$2")" dev "$1" master static
}

veth client eth0 "$CLIENT_ADDR" director ext0 "$DIRECTOR_EXT"
veth director int0 "$DIRECTOR_INT" lan dir0 ""
for ((i = 1; i <= REAL_SERVERS; i++)); do
    veth "rs$i" eth0 "$(rs_addr "$i")" lan "rs$i" ""
done

# The bridge, with a static FDB entry for the MAC behind each port.
ipn lan link add br0 type bridge
bridge_port dir0 "$DIRECTOR_INT"
for ((i = 1; i <= REAL_SERVERS; i++)); do
    bridge_port "rs$i" "$(rs_addr "$i")"
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

# ------------------------------------------------ lvsd and client helpers

# Starts lvs-testsrv named $2 in the namespace of role $1 with the listener
# options $3..., logging to $TMP/<$log_name>.log; waits until it is ready.
start_server() {
    local role=$1 name=$2 log=$TMP/$3.log
    shift 3
    # Not through in_ns: a backgrounded function runs in a subshell, and $!
    # would be that subshell's pid. `ip netns exec` execs the server, so here
    # $! is the server's own pid.
    ip netns exec "$(ns "$role")" "$BIN/lvs-testsrv" --name "$name" "$@" \
        </dev/null >"$log" 2>&1 &
    SERVER_PIDS+=("$!")
    wait_for_line "$log" ready "$!" 5
    info "$name ready (pid $!): $*"
}

# Copies config $1 to $TMP/$2.toml with its admin socket moved into $TMP,
# checks it with lvsd --check and starts lvsd in the director with it.
start_lvsd() {
    local src=$1 name=$2 config sock_line check i
    config=$TMP/$name.toml
    SOCK=$TMP/$name.sock
    sock_line="admin_socket = \"$SOCK\""
    if grep -Eq '^[[:space:]]*admin_socket[[:space:]]*=' "$src"; then
        sed -E "s|^[[:space:]]*admin_socket[[:space:]]*=.*$|$sock_line|" "$src" >"$config"
    else
        sed "/^[[:space:]]*\[daemon\]/a $sock_line" "$src" >"$config"
    fi
    [[ $(grep -c "^$sock_line\$" "$config") == 1 ]] ||
        die "could not point $src's admin_socket at $SOCK (no [daemon] table?)"
    info "config: $src, admin_socket moved to $SOCK"
    check=$("$BIN/lvsd" --check --config "$config" 2>&1) || die "lvsd rejects $config: $check"
    info "lvsd --check: $check"
    ip netns exec "$(ns director)" "$BIN/lvsd" --config "$config" </dev/null \
        >"$TMP/lvsd-$name.log" 2>&1 &
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
}

lvsadm() { "$BIN/lvsadm" --socket "$SOCK" "$@"; }

# Waits (at most 10 s) for the first HTTP answer through the VIP.
first_answer() {
    local t i
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
}

# Sends $HTTP_REQUESTS HTTP requests to the VIP from the client and prints
# how many each real server answered ($1: a label per server, "rs<i>
# <label>"); sets HTTP_OK.
HTTP_OK=0
http_requests() {
    local out=$TMP/$1.out err=$TMP/curl-$1.log t elapsed n expect i width
    shift
    local labels=("$@")
    t=$(now)
    # One curl, URLs /1 .. /600, `Connection: close`: a new connection each.
    # Bounded: 2 s to connect, 5 s per request, 60 s in all.
    timeout 60 ip netns exec "$(ns client)" curl -sS --connect-timeout 2 --max-time 5 \
        -H 'Connection: close' "http://$VIP/[1-$HTTP_REQUESTS]" \
        >"$out" 2>"$err" || true
    elapsed=$(since "$t")
    HTTP_OK=0
    width=0
    for ((i = 1; i <= REAL_SERVERS; i++)); do
        labels[i - 1]="rs$i (${labels[i - 1]}):"
        ((${#labels[i - 1]} <= width)) || width=${#labels[i - 1]}
    done
    for ((i = 1; i <= REAL_SERVERS; i++)); do
        n=$(grep -cx "rs$i" "$out" || true)
        HTTP_OK=$((HTTP_OK + n))
        expect=$((HTTP_REQUESTS * WEIGHTS[i] / 6))
        info "$(printf '%-*s %4d answers   (expected %d)' "$width" "${labels[i - 1]}" "$n" "$expect")"
    done
    info "$HTTP_OK of $HTTP_REQUESTS answered in $elapsed s"
    if [[ -s $err ]]; then
        info "curl said: $(head -n 3 "$err")"
    fi
}

# ------------------------------------------------------------ part 1: NAT

if $RUN_NAT; then
    $RUN_MIXED && part "Part 1 of 2: NAT (${SRC_CONFIG#"$REPO"/})"

    step "Starting lvs-testsrv in rs1..rs$REAL_SERVERS (HTTP :8080, UDP :5353)"
    for ((i = 1; i <= REAL_SERVERS; i++)); do
        addr=$(rs_addr "$i")
        start_server "rs$i" "rs$i" "rs$i" --http "$addr:8080" --udp "$addr:5353"
    done

    step "Starting lvsd in the director"
    start_lvsd "$SRC_CONFIG" nat

    first_answer

    step "$HTTP_REQUESTS HTTP requests to http://$VIP/ (one connection each, wrr 1:2:3)"
    http_requests http "weight ${WEIGHTS[1]}" "weight ${WEIGHTS[2]}" "weight ${WEIGHTS[3]}"
    http_ok=$HTTP_OK

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

    step "lvsadm -L -n  (the virtual services and their real servers)"
    lvsadm -L -n
    step "lvsadm -L -n --stats  (traffic counters)"
    lvsadm -L -n --stats
    step "lvsadm --status  (lvsd's per-shard counters)"
    lvsadm --status

    ((http_ok == HTTP_REQUESTS)) ||
        fail "NAT: only $http_ok of $HTTP_REQUESTS HTTP requests were answered"
    ((udp_ok == UDP_QUERIES)) ||
        fail "NAT: only $udp_ok of $UDP_QUERIES UDP queries were answered"

    if $RUN_MIXED; then
        step "Stopping part 1's lvsd and test servers"
        stop_lvsd
        stop_servers
    fi
fi

# -------------------------------------------------- part 2: mixed methods

# The method names ipvsadm's Forward column uses.
forward_name() {
    case $1 in
    nat) printf Masq ;;
    dr) printf Route ;;
    tun) printf Tunnel ;;
    esac
}

# How lvsadm -n names rsi ($1) in part 2: NAT to port 8080, DR and TUN on
# the service's port 80.
mixed_dest() {
    if [[ ${MIXED_METHODS[$1]} == nat ]]; then
        printf '%s:8080' "$(rs_addr "$1")"
    else
        printf '%s:80' "$(rs_addr "$1")"
    fi
}

# Packets counted by the client's nftables rule with comment $1.
client_counter() {
    in_ns client nft list table inet lvsdemo |
        awk -v c="comment \"$1\"" 'index($0, c) {
            for (i = 1; i < NF; i++) if ($i == "packets") { print $(i + 1); exit }
        }'
}

if $RUN_MIXED; then
    $RUN_NAT && part "Part 2 of 2: NAT, direct routing and tunneling in one service (${SRC_MIXED_CONFIG#"$REPO"/})"

    step "Re-wiring the lab: rs1 NAT, rs2 direct routing, rs3 IP-in-IP tunneling"
    # The client joins the LAN too, standing in for the router that would
    # carry DR and TUN replies to a real client past the director. The VIP
    # stays routed via eth0 (the director), so replies from the VIP come in
    # on another interface than the VIP's route: rp_filter off.
    veth client lan0 "$CLIENT_LAN" lan cl0 ""
    bridge_port cl0 "$CLIENT_LAN"
    in_ns client sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 \
        net.ipv4.conf.eth0.rp_filter=0 net.ipv4.conf.lan0.rp_filter=0
    info "client    lan0 $CLIENT_LAN on the LAN bridge, rp_filter=0 (replies from the VIP arrive on lan0)"
    for ((i = 1; i <= REAL_SERVERS; i++)); do
        m=${MIXED_METHODS[i]}
        case $m in
        nat)
            info "rs$i       NAT: unchanged, default via $DIRECTOR_INT (replies go back through the director)"
            ;;
        dr | tun)
            # The VIP on lo, never announced nor answered in ARP (docs/methods.md),
            # and the client reached over the LAN, not through the director.
            in_ns "rs$i" sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 \
                net.ipv4.conf.eth0.arp_ignore=1 net.ipv4.conf.eth0.arp_announce=2
            ipn "rs$i" addr add "$VIP/32" dev lo
            ipn "rs$i" route del default
            ipn "rs$i" route add 198.18.0.0/24 via "$CLIENT_LAN"
            extra=
            if [[ $m == tun ]]; then
                # The inner packet's source is the client, which is not routed
                # via the tunnel device: rp_filter off.
                in_ns "rs$i" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.eth0.rp_filter=0
                extra=", rp_filter=0"
            fi
            info "rs$i       $(forward_name "$m"): VIP $VIP/32 on lo, arp_ignore=1 arp_announce=2$extra," \
                "198.18.0.0/24 via $CLIENT_LAN (replies straight to the client)"
            ;;
        esac
    done

    step "Starting the real servers"
    for ((i = 1; i <= REAL_SERVERS; i++)); do
        case ${MIXED_METHODS[i]} in
        nat) start_server "rs$i" "rs$i" "mixed-rs$i" --http "$(rs_addr "$i"):8080" ;;
        # A DR or TUN server gets packets for VIP:80, the service's port.
        dr) start_server "rs$i" "rs$i" "mixed-rs$i" --http 0.0.0.0:80 ;;
        tun)
            # This kernel has no ipip driver: lvs-tundecap takes IP protocol 4
            # from a raw socket and writes the inner packet into TUN device
            # lvstun0, where the kernel receives it as if from a link.
            ip netns exec "$(ns "rs$i")" "$BIN/lvs-tundecap" --dev lvstun0 --no-ipv6 \
                </dev/null >"$TMP/tundecap-rs$i.log" 2>&1 &
            TUNDECAP_PID=$!
            wait_for_line "$TMP/tundecap-rs$i.log" ready "$TUNDECAP_PID" 5
            info "lvs-tundecap ready in rs$i (pid $TUNDECAP_PID): decapsulates IP-in-IP into lvstun0"
            start_server "rs$i" "rs$i" "mixed-rs$i" --http 0.0.0.0:80
            ;;
        esac
    done

    step "Starting lvsd in the director"
    start_lvsd "$SRC_MIXED_CONFIG" mixed

    first_answer

    # Counts, in the client's kernel, the replies from VIP:80 by the way they
    # came: through the director (eth0) or straight from rs2 / rs3 (lan0,
    # sent from their MAC addresses).
    rules="table inet lvsdemo {
  chain input {
    type filter hook input priority 0; policy accept;
    iifname \"eth0\" ip saddr $VIP tcp sport 80 counter comment \"director\""
    for ((i = 1; i <= REAL_SERVERS; i++)); do
        [[ ${MIXED_METHODS[i]} == nat ]] && continue
        rules+="
    iifname \"lan0\" ether saddr $(mac_of "$(rs_addr "$i")") ip saddr $VIP tcp sport 80 counter comment \"rs$i\""
    done
    rules+="
  }
}"
    in_ns client nft -f - <<<"$rules"

    labels=()
    for ((i = 1; i <= REAL_SERVERS; i++)); do
        labels+=("$(forward_name "${MIXED_METHODS[i]}"), weight ${WEIGHTS[i]}")
    done
    step "$HTTP_REQUESTS HTTP requests to http://$VIP/ (one connection each, wrr 1:2:3)"
    http_requests mixed "${labels[@]}"
    ((HTTP_OK == HTTP_REQUESTS)) ||
        fail "mixed: only $HTTP_OK of $HTTP_REQUESTS HTTP requests were answered"

    step "lvsadm -L -n  (Forward: Masq = NAT, Route = direct routing, Tunnel = IP-in-IP)"
    list=$(lvsadm -L -n)
    printf '%s\n' "$list"
    for ((i = 1; i <= REAL_SERVERS; i++)); do
        want=$(forward_name "${MIXED_METHODS[i]}")
        got=$(awk -v d="$(mixed_dest "$i")" '$1 == "->" && $2 == d { print $3 }' <<<"$list")
        [[ $got == "$want" ]] ||
            fail "lvsadm lists $(mixed_dest "$i") as '${got:-nothing}', the lab wired rs$i for $want"
    done
    step "lvsadm -L -n --stats  (OutPkts: replies the director forwarded)"
    lvsadm -L -n --stats

    step "Did the DR and TUN replies bypass the director?"
    failures_before=${#FAILURES[@]}
    stats=$(lvsadm -L -n --stats --exact)
    info "the director's counters (lvsadm -L -n --stats --exact):"
    direct_in=0 direct_out=0 direct_names=() in_pkts=()
    for ((i = 1; i <= REAL_SERVERS; i++)); do
        m=${MIXED_METHODS[i]}
        dest=$(mixed_dest "$i")
        pkts_in='' pkts_out=''
        read -r pkts_in pkts_out < <(awk -v d="$dest" '$1 == "->" && $2 == d { print $4, $5 }' <<<"$stats") || true
        if [[ -z $pkts_in || -z $pkts_out ]]; then
            fail "lvsadm --stats has no line for $dest"
            continue
        fi
        in_pkts[i]=$pkts_in
        info "$(printf '  rs%d %-8s InPkts %5d  OutPkts %5d' \
            "$i" "($(forward_name "$m"))" "$pkts_in" "$pkts_out")"
        ((pkts_in > 0)) || fail "rs$i ($m): the director forwarded no packets to it"
        if [[ $m == nat ]]; then
            ((pkts_out > 0)) || fail "rs$i (NAT): none of its replies came through the director"
        else
            direct_names+=("rs$i")
            direct_in=$((direct_in + pkts_in)) direct_out=$((direct_out + pkts_out))
            ((pkts_out == 0)) || fail "rs$i ($m): $pkts_out of its replies went through the director"
        fi
    done
    if ((${#FAILURES[@]} == failures_before && direct_in > 0 && direct_out == 0)); then
        who=${direct_names[*]}
        info "=> DR and TUN replies went straight to the client: the director forwarded" \
            "$direct_in packets to ${who// /, } and none of their replies (OutPkts 0)"
    fi
    via_director=$(client_counter director)
    seen="client's kernel: replies from $VIP:80 came $via_director times through the director (eth0)"
    for ((i = 1; i <= REAL_SERVERS; i++)); do
        [[ ${MIXED_METHODS[i]} == nat ]] && continue
        n=$(client_counter "rs$i")
        seen+=", $n straight from rs$i's MAC (lan0)"
        ((n > 0)) || fail "the client saw no reply straight from rs$i"
    done
    info "$seen"
    if [[ -n $TUNDECAP_PID ]]; then
        # lvs-tundecap prints its counters when it stops.
        stop_child "$TUNDECAP_PID" 2 || true
        TUNDECAP_PID=
        for ((i = 1; i <= REAL_SERVERS; i++)); do
            [[ ${MIXED_METHODS[i]} == tun ]] || continue
            decap=$(grep -m1 '^decapsulated ' "$TMP/tundecap-rs$i.log" || true)
            v4=$(sed -n 's/.* v4=\([0-9]*\).*/\1/p' <<<"$decap")
            if ((${v4:-0} == 0)); then
                info "rs$i's lvs-tundecap: ${decap:-no counters}"
                fail "rs$i decapsulated no IP-in-IP packets"
            elif ((v4 == ${in_pkts[i]:-0})); then
                info "rs$i's lvs-tundecap: $decap: each of the $v4 packets the director" \
                    "sent rs$i came through the IP-in-IP tunnel"
            else
                info "rs$i's lvs-tundecap: $decap (the director sent rs$i ${in_pkts[i]:-?} packets)"
            fi
        done
    fi
fi

if ((${#FAILURES[@]} > 0)); then
    printf '\n' >&2
    for f in "${FAILURES[@]}"; do
        printf 'demo.sh: %s\n' "$f" >&2
    done
    exit 1
fi
# The EXIT trap cleans up.
