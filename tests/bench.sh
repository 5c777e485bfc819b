#!/usr/bin/env bash
# lvsd's benchmark against the peers a user would otherwise pick.
#
#   sudo tests/bench.sh            # full run (3 runs, ~10 minutes), updates docs/
#   sudo tests/bench.sh --quick    # 1 run, short durations, results in a temp dir
#
# Options:
#   --quick            1 run, 2 s per load; results are printed, docs/ untouched
#   --runs N           runs per peer (default 3)
#   --duration S       seconds per load (default 5)
#   --peers "A B .."   subset of: lvsd nft_dnat haproxy kernel_forward
#   --no-build         use the existing target/release binaries
#   --no-extras        skip shard scaling and rule swaps under load
#   --profile          also record perf profiles (lvsd and nft_dnat, UDP and
#                      TCP load) into docs/bench/profile-*.txt
#   --write / --no-write   update docs/benchmarks.md and docs/bench/ (default:
#                      write in a full run, not with --quick)
#   --lvsd-set 'KEY = VALUE'   an extra [daemon] line for lvsd's config
#                      (repeatable), e.g. 'buffer_size = 2048', to try settings
#   --lvsd-bin DIR     take lvsd and lvsadm from DIR (another build, to
#                      compare versions; implies --no-build)
#   --udp-rate N       send the UDP load at N frames/s instead of as fast as
#                      the generator can (a fixed load: CPU per packet without
#                      the peers competing for CPU with the generator; not
#                      for docs/, so it implies --no-write)
#   --nice N           run the benchmark (and so every peer) at this nice
#                      level (default -10: other work on a shared machine
#                      disturbs the figures less; 0 leaves it alone)
#
# It builds ONE namespace topology (tests/support/mod.rs's NAT lab: client,
# director, a bridge "lan", three real servers; offloads off, static FDB
# entries), then measures every peer on it, one after the other, metric by
# metric within each run, the order rotating from one run to the next:
#   lvsd            the release build, started in the director namespace
#   nft_dnat        the director's kernel: nftables DNAT with numgen inc
#   haproxy         HAProxy in TCP mode in the director namespace (no UDP)
#   kernel_forward  plain IPv4 forwarding; the client addresses the real
#                   servers directly (the ceiling)
# Metrics: UDP packets/s delivered to the real servers (60-byte frames, 4096
# flows, counted by an nftables ingress counter in each real server), TCP
# connections/s (wrk, Connection: close), latency p50/p99 (benchtool lat:
# one new connection per request at a fixed rate), one-stream bulk (iperf3),
# CPU per packet. See docs/benchmarks.md for the method.
#
# TESTBED rules: all traffic stays inside the namespaces made here
# (198.18.0.0/15 addresses), every load is bounded in count and time, and the
# EXIT trap removes exactly the processes and namespaces this run made (its
# own prefix lvb<pid>).
set -euo pipefail

ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
cd "$ROOT"

ORIG_ARGS="$*"
RUNS=3 DUR=5 QUICK=0 BUILD=1 EXTRAS=1 PROFILE=0 WRITE='' NICE=-10 LVSD_SET=() LVSD_DIR= UDP_RATE=0
PEERS="lvsd nft_dnat haproxy kernel_forward"
while (($#)); do
    case $1 in
    --quick) QUICK=1 RUNS=1 DUR=2 ;;
    --runs) RUNS=$2; shift ;;
    --duration) DUR=$2; shift ;;
    --peers) PEERS=$2; shift ;;
    --no-build) BUILD=0 ;;
    --no-extras) EXTRAS=0 ;;
    --profile) PROFILE=1 ;;
    --nice) NICE=$2; shift ;;
    --udp-rate) UDP_RATE=$2; shift ;;
    --lvsd-set) LVSD_SET+=("$2"); shift ;;
    --lvsd-bin) LVSD_DIR=$2; BUILD=0; shift ;;
    --write) WRITE=1 ;;
    --no-write) WRITE=0 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
[[ -n $WRITE ]] || WRITE=$((1 - QUICK))
[[ $UDP_RATE =~ ^[0-9]+$ ]] || { echo "bench.sh: --udp-rate takes frames/s" >&2; exit 2; }
((UDP_RATE == 0)) || WRITE=0
for p in $PEERS; do
    case $p in lvsd | nft_dnat | haproxy | kernel_forward) ;; *) echo "bench.sh: unknown peer $p" >&2; exit 2 ;; esac
done
[[ $RUNS =~ ^[1-9][0-9]?$ && $DUR =~ ^[1-9][0-9]?$ ]] || { echo "bench.sh: --runs 1..99, --duration 1..99" >&2; exit 2; }

if [[ $(id -u) -ne 0 ]]; then
    echo "bench.sh: skipped: needs root (network namespaces, packet sockets, nftables)" >&2
    exit 77
fi
if ! ip netns list >/dev/null 2>&1; then
    echo "bench.sh: skipped: \`ip netns\` does not work here" >&2
    exit 77
fi

# Every process the run starts inherits this priority (all peers alike).
if [[ $NICE != 0 ]]; then renice -n "$NICE" -p $$ >/dev/null; fi

# --- packages (only the missing ones) ---------------------------------------
need=(iproute2 nftables ethtool wrk iperf3 haproxy gcc procps coreutils)
((PROFILE)) && need+=(linux-perf)
missing=()
for p in "${need[@]}"; do
    [[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true) == installed ]] || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "bench.sh: installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v python3 >/dev/null || { echo "bench.sh: python3 is needed for the report" >&2; exit 1; }

# --- the run's own names and its cleanup -------------------------------------
P="lvb$$"
TMP=$(mktemp -d "/tmp/$P.XXXXXX")
NSS=()  # namespaces this run created, in creation order
PIDS=() # background processes this run started
cleanup() {
    local rc=$? pid ns i
    set +e
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    sleep 0.3
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null; done
    # Anything else still running inside this run's namespaces was started
    # by this run (the names are unique to it).
    for ns in "${NSS[@]}"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
    done
    for ((i = ${#NSS[@]} - 1; i >= 0; i--)); do ip netns del "${NSS[i]}" 2>/dev/null; done
    if ((rc != 0)); then
        [[ -s $TMP/raw.tsv ]] && cp "$TMP/raw.tsv" "/tmp/$P-raw.tsv" && echo "bench.sh: samples so far kept in /tmp/$P-raw.tsv" >&2
        echo "bench.sh: failed (exit $rc); last lines of the logs:" >&2
        for f in "$TMP"/*.log; do [[ -s $f ]] && { echo "--- $f" >&2; tail -n 5 "$f" >&2; }; done
    fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
ns() { echo "$P-$1"; }
nsx() { local n=$1; shift; ip netns exec "$(ns "$n")" "$@"; }
# bgrun ROLE NAME CMD...: start CMD in ROLE's namespace in the background,
# bounded by `timeout` (30 min), output to $TMP/NAME.log; sets BG_PID.
bgrun() {
    local n=$1 name=$2; shift 2
    ip netns exec "$(ns "$n")" timeout -k 5 1800 "$@" >"$TMP/$name.log" 2>&1 &
    BG_PID=$!
    PIDS+=("$BG_PID")
}
stop_pid() { # stop_pid PID: TERM, wait up to 5 s, KILL
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
wait_line() { # wait_line FILE TEXT SECONDS
    local i
    for ((i = 0; i < $3 * 20; i++)); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
    echo "bench.sh: '$2' did not appear in $1" >&2
    return 1
}

# --- build --------------------------------------------------------------------
if ((BUILD)); then
    log "building lvsd and lvsadm (release)"
    cargo build --release -q -p lvsd -p lvsadm
fi
LVSD=${LVSD_DIR:-$ROOT/target/release}/lvsd
LVSADM=${LVSD_DIR:-$ROOT/target/release}/lvsadm
[[ -x $LVSD && -x $LVSADM ]] || { echo "bench.sh: $LVSD or $LVSADM missing (drop --no-build)" >&2; exit 1; }
gcc -O2 -Wall -pthread -o "$TMP/benchtool" tests/bench/benchtool.c
BT=$TMP/benchtool

# --- the topology (mirrors tests/support/mod.rs) -----------------------------
VIP=198.19.0.100
CLIENT=198.18.0.2 DIR_EXT=198.18.0.1 DIR_INT=198.18.1.1
NRS=3
RS=(198.18.1.11 198.18.1.12 198.18.1.13)
mac_of() { local IFS=.; set -- $1; printf '02:00:%02x:%02x:%02x:%02x' "$1" "$2" "$3" "$4"; }
peer_mac_of() { local IFS=.; set -- $1; printf '02:01:%02x:%02x:%02x:%02x' "$1" "$2" "$3" "$4"; }
offloads_off() { nsx "$1" ethtool -K "$2" tso off gso off gro off tx off rx off sg off >/dev/null 2>&1 || true; }

log "building the namespace topology (prefix $P)"
ROLES=(client director lan)
for ((i = 1; i <= NRS; i++)); do ROLES+=("rs$i"); done
for r in "${ROLES[@]}"; do
    ip netns add "$(ns "$r")"
    NSS+=("$(ns "$r")")
    nsx "$r" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 net.ipv4.ip_forward=0
    ip -n "$(ns "$r")" link set lo up
done
# One queue per CPU on every veth (as a multi-queue NIC has), so an XDP
# director can run a shard per queue; the kernel's own forwarding does not
# use veth queues.
QUEUES=$(nproc); ((QUEUES <= 8)) || QUEUES=8
veth() { # veth NS_A IF_A ADDR_A NS_B IF_B [ADDR_B]
    local mac_b
    if [[ -n ${6:-} ]]; then mac_b=$(mac_of "$6"); else mac_b=$(peer_mac_of "$3"); fi
    local q="numtxqueues ${VETH_QUEUES:-$QUEUES} numrxqueues ${VETH_QUEUES:-$QUEUES}"
    ip -n "$(ns "$1")" link add "$2" $q address "$(mac_of "$3")" type veth peer name "$5" $q address "$mac_b" netns "$(ns "$4")"
    offloads_off "$1" "$2"
    offloads_off "$4" "$5"
    ip -n "$(ns "$1")" addr add "$3/24" dev "$2"
    ip -n "$(ns "$1")" link set "$2" up
    if [[ -n ${6:-} ]]; then
        ip -n "$(ns "$4")" addr add "$6/24" dev "$5"
        ip -n "$(ns "$4")" link set "$5" up
    fi
}
veth client eth0 $CLIENT director ext0 $DIR_EXT
veth director int0 $DIR_INT lan dir0
# The real servers' links keep one queue: veth passes the queue a frame was
# sent on along with it, and the bridge would then pick dir0's transmit
# queue from that instead of from the flow's hash, putting most replies on
# one queue of the director (no NIC's receive hashing does that).
for ((i = 1; i <= NRS; i++)); do VETH_QUEUES=1 veth "rs$i" eth0 "${RS[i - 1]}" lan "rs$i"; done
ip -n "$(ns lan)" link add br0 type bridge
for port in dir0 $(for ((i = 1; i <= NRS; i++)); do echo "rs$i"; done); do
    ip -n "$(ns lan)" link set "$port" master br0 up
done
bridge -n "$(ns lan)" fdb add "$(mac_of $DIR_INT)" dev dir0 master static
for ((i = 1; i <= NRS; i++)); do bridge -n "$(ns lan)" fdb add "$(mac_of "${RS[i - 1]}")" dev "rs$i" master static; done
ip -n "$(ns lan)" link set br0 up
# If br_netfilter is loaded on this host, bridged frames would go through
# iptables hooks in the lan namespace: turn that off there (per namespace).
nsx lan sh -c 'for k in /proc/sys/net/bridge/bridge-nf-call-*; do [ -e "$k" ] && echo 0 >"$k"; done; true'
ip -n "$(ns client)" route add 198.19.0.0/16 via $DIR_EXT
ip -n "$(ns client)" route add 198.18.1.0/24 via $DIR_EXT # kernel_forward only
for ((i = 1; i <= NRS; i++)); do ip -n "$(ns "rs$i")" route add default via $DIR_INT; done
# Many short connections: wide port ranges, TIME_WAIT reuse, deep backlogs.
for r in client director "${ROLES[@]:3}"; do
    nsx "$r" sysctl -qw net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_tw_reuse=1 \
        net.core.somaxconn=4096 net.ipv4.tcp_max_syn_backlog=4096
done

# Real servers: an HTTP server on :8080, iperf3 on rs1:5201, and a netdev
# ingress rule that counts and drops the UDP load (port 5353) on arrival.
HTTPD_PIDS=()
for ((i = 1; i <= NRS; i++)); do
    bgrun "rs$i" "httpd$i" "$BT" httpd "${RS[i - 1]}" 8080 1790
    HTTPD_PIDS+=("$BG_PID")
    wait_line "$TMP/httpd$i.log" ready 5
    nsx "rs$i" nft -f - <<EOF
table netdev lvb_count {
    chain in {
        type filter hook ingress device eth0 priority 0; policy accept;
        udp dport 5353 counter drop
    }
}
EOF
done
bgrun rs1 iperf3 iperf3 -s -B "${RS[0]}" -p 5201
sleep 0.3

# The UDP packets that reached the real servers so far (sum of the counters).
rs_udp_count() {
    local i sum=0 n
    for ((i = 1; i <= NRS; i++)); do
        n=$(nsx "rs$i" nft list chain netdev lvb_count in | sed -n 's/.*counter packets \([0-9]*\).*/\1/p')
        sum=$((sum + ${n:-0}))
    done
    echo "$sum"
}
# CPU ticks (utime+stime, USER_HZ) of the given pids, their children (bgrun
# starts everything under `timeout`) and ksoftirqd/*.
KSOFT=$(pgrep -d' ' -x 'ksoftirqd/[0-9]+' || true)
ticks() {
    local pid p sum=0 f
    for pid in "$@" $(for p in "$@"; do pgrep -P "$p"; done) $KSOFT; do
        [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/stat ]] || continue
        f=$(sed 's/.*) //' "/proc/$pid/stat")
        set -- $f
        sum=$((sum + ${12} + ${13}))
    done
    echo "$sum"
}
proc_ticks() { # utime+stime of the process bgrun started as PID (under timeout)
    local pid p sum=0 f
    for pid in "$1" $(pgrep -P "$1"); do
        [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/stat ]] || continue
        f=$(sed 's/.*) //' "/proc/$pid/stat"); set -- $f; sum=$((sum + ${12} + ${13}))
    done
    echo "$sum"
}
HZ=$(getconf CLK_TCK)
load1() { cut -d' ' -f1 /proc/loadavg; }
# CPU seconds (user+sys) of this shell's waited-for children so far.
children_cpu() { times | awk 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/); printf "%.3f", u[1] * 60 + u[2] + s[1] * 60 + s[2] }'; }
RAW=$TMP/raw.tsv
: >"$RAW"
# record RUN PEER METRIC VALUE: one sample, with the load average.
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$(load1)" >>"$RAW"; }

# --- the peers -----------------------------------------------------------------
DIRECTOR_PID= # the peer's user-space process, if it has one
lvsd_config() { # lvsd_config [BACKEND:SHARDS]: with it, that backend and
    # that many shards; without, lvsd's defaults (the XDP backend where it
    # works, a shard per CPU as far as the queues allow)
    local i
    cat <<EOF
[daemon]
interfaces = ["ext0", "int0"]
${1:+backend = \"${1%:*}\"
shards = ${1#*:}}
admin_socket = "$TMP/lvsd.sock"
log = "warn"
$(printf '%s\n' "${LVSD_SET[@]}")

[[service]]
protocol = "tcp"
address = "$VIP:80"
scheduler = "rr"
EOF
    for ((i = 0; i < NRS; i++)); do printf '  [[service.real_server]]\n  address = "%s:8080"\n  method = "nat"\n' "${RS[i]}"; done
    for port in 53:5353 54:5354; do
        printf '\n[[service]]\nprotocol = "udp"\naddress = "%s:%s"\nscheduler = "rr"\n' $VIP "${port%:*}"
        for ((i = 0; i < NRS; i++)); do printf '  [[service.real_server]]\n  address = "%s:%s"\n  method = "nat"\n' "${RS[i]}" "${port#*:}"; done
    done
    printf '\n[[service]]\nprotocol = "tcp"\naddress = "%s:5201"\nscheduler = "rr"\n  [[service.real_server]]\n  address = "%s:5201"\n  method = "nat"\n' $VIP "${RS[0]}"
}
# The admin socket is a file: lvsadm needs no network namespace (and skips
# the cost of `ip netns exec`).
lvsadm() { "$LVSADM" --socket "$TMP/lvsd.sock" "$@"; }
# Logs lvsd's non-zero drops and its hand-off counts (totals since start).
log_lvsd_counts() {
    log "    lvsd: $(lvsadm --status | awk '$1 == "drop" && $NF > 0 { printf "%s %s, ", $2, $NF } $1 ~ /^hand/ { printf "%s %s, ", $1, $NF }')"
}
peer_up() { # peer_up PEER [BACKEND:SHARDS]
    DIRECTOR_PID=
    case $1 in
    lvsd)
        lvsd_config "${2:-}" >"$TMP/lvsd.toml"
        bgrun director lvsd "$LVSD" --config "$TMP/lvsd.toml"
        DIRECTOR_PID=$BG_PID
        local i
        for ((i = 0; i < 100; i++)); do [[ -S $TMP/lvsd.sock ]] && lvsadm -L -n >/dev/null 2>&1 && break; sleep 0.1; done
        lvsadm -L -n >/dev/null || { cat "$TMP/lvsd.log" >&2; return 1; }
        ;;
    nft_dnat)
        nsx director sysctl -qw net.ipv4.ip_forward=1
        local m="{ 0 : ${RS[0]}, 1 : ${RS[1]}, 2 : ${RS[2]} }"
        nsx director nft -f - <<EOF
table ip lvb_nat {
    chain pre {
        type nat hook prerouting priority dstnat; policy accept;
        ip daddr $VIP tcp dport 80 dnat to numgen inc mod 3 map $m : 8080
        ip daddr $VIP udp dport 53 dnat to numgen inc mod 3 map $m : 5353
        ip daddr $VIP udp dport 54 dnat to numgen inc mod 3 map $m : 5354
        ip daddr $VIP tcp dport 5201 dnat to ${RS[0]}:5201
    }
}
EOF
        ;;
    haproxy)
        nsx director ip addr add $VIP/32 dev lo
        {
            printf 'global\n    maxconn 8000\n\ndefaults\n    mode tcp\n    timeout connect 2s\n    timeout client 10s\n    timeout server 10s\n\n'
            printf 'frontend f80\n    bind %s:80\n    default_backend b80\nbackend b80\n    balance roundrobin\n' $VIP
            for ((i = 0; i < NRS; i++)); do printf '    server rs%d %s:8080\n' $((i + 1)) "${RS[i]}"; done
            printf 'frontend f5201\n    bind %s:5201\n    default_backend b5201\nbackend b5201\n    server rs1 %s:5201\n' $VIP "${RS[0]}"
        } >"$TMP/haproxy.cfg"
        bgrun director haproxy haproxy -db -f "$TMP/haproxy.cfg"
        DIRECTOR_PID=$BG_PID
        sleep 0.5
        kill -0 "$DIRECTOR_PID" 2>/dev/null || { cat "$TMP/haproxy.log" >&2; return 1; }
        ;;
    kernel_forward)
        nsx director sysctl -qw net.ipv4.ip_forward=1
        ;;
    esac
    # Warm up: resolve neighbours, open a few connections.
    nsx client "$BT" lat "$(target_addr "$1")" "$(target_port "$1" 80)" 200 20 2 >/dev/null || true
    sleep 0.5
}
peer_down() {
    case $1 in
    lvsd) stop_pid "$DIRECTOR_PID" ;;
    nft_dnat)
        nsx director nft delete table ip lvb_nat
        nsx director sysctl -qw net.ipv4.ip_forward=0
        ;;
    haproxy)
        stop_pid "$DIRECTOR_PID"
        nsx director ip addr del $VIP/32 dev lo
        ;;
    kernel_forward) nsx director sysctl -qw net.ipv4.ip_forward=0 ;;
    esac
    DIRECTOR_PID=
}
# Where the client sends: the VIP, or (kernel_forward) the real servers.
target_addr() { if [[ $1 == kernel_forward ]]; then echo "${RS[0]}"; else echo $VIP; fi; }
target_port() { # target_port PEER VPORT
    if [[ $1 == kernel_forward ]]; then
        case $2 in 80) echo 8080 ;; 53) echo 5353 ;; 54) echo 5354 ;; *) echo "$2" ;; esac
    else echo "$2"; fi
}

# --- the metrics -----------------------------------------------------------------
FLOWS=4096
# udp_pps RUN PEER LABEL THREADS: packets/s delivered to the real servers
# while the blaster sends as fast as it can, measured over a window from 1 s
# after the start to DUR s (the blaster is then stopped); also CPU per packet.
udp_pps() {
    local run=$1 peer=$2 label=$3 threads=$4 dsts port
    if [[ $peer == kernel_forward ]]; then dsts=$(IFS=,; echo "${RS[*]}"); port=5353; else dsts=$VIP; port=53; fi
    bgrun client blast "$BT" blast eth0 "$(mac_of $CLIENT)" "$(mac_of $DIR_EXT)" $CLIENT "$dsts" $port $FLOWS \
        $(((DUR + 5) * 5000000)) $((DUR + 5)) "$UDP_RATE" "$threads"
    local bpid=$BG_PID pids c0 c1 t0 t1 k0 k1 d0=0 d1=0
    pids="$bpid $DIRECTOR_PID"
    sleep 1
    k0=$(ticks $pids); [[ -z $DIRECTOR_PID ]] || d0=$(proc_ticks "$DIRECTOR_PID")
    c0=$(rs_udp_count); t0=$(date +%s.%N)
    sleep $((DUR - 1))
    c1=$(rs_udp_count); t1=$(date +%s.%N)
    k1=$(ticks $pids); [[ -z $DIRECTOR_PID ]] || d1=$(proc_ticks "$DIRECTOR_PID")
    local alive=1
    pgrep -P "$bpid" >/dev/null || alive=0
    stop_pid "$bpid"
    local pps cpu dcpu
    pps=$(awk -v a="$c0" -v b="$c1" -v s="$t0" -v e="$t1" 'BEGIN { printf "%.0f", (b - a) / (e - s) }')
    cpu=$(awk -v k=$((k1 - k0)) -v n=$((c1 - c0)) -v hz="$HZ" 'BEGIN { if (n > 0) printf "%.0f", k / hz * 1e9 / n; else print "nan" }')
    dcpu=$(awk -v k=$((d1 - d0)) -v n=$((c1 - c0)) -v hz="$HZ" 'BEGIN { if (n > 0) printf "%.0f", k / hz * 1e9 / n; else print "nan" }')
    if ((!alive)); then
        # The machine was so busy that sampling outlasted the blaster's time
        # bound: the window is not a steady load and its CPU is gone.
        log "  $peer $label: the generator ended before the window did (machine too busy); sample dropped"
        pps=nan cpu=nan dcpu=nan
    fi
    record "$run" "$peer" "$label" "$pps"
    record "$run" "$peer" "${label}_cpu_ns" "$cpu"
    [[ -z $DIRECTOR_PID ]] || record "$run" "$peer" "${label}_proc_cpu_ns" "$dcpu"
    log "  $peer $label: $pps pkt/s delivered ($(sed -n 's/sent \([0-9]*\) seconds \([0-9.]*\)/\1 sent in \2 s/p' "$TMP/blast.log")), path CPU $cpu ns/pkt (load $(load1))"
    if [[ $peer == lvsd ]]; then # where lvsd lost what it did not deliver (since start)
        log_lvsd_counts
    fi
}
# wrk_run PEER SECONDS CONNS LOG: wrk with Connection: close against the
# peer; kernel_forward runs one wrk per real server (a third of the
# connections each). Prints "req/s errors".
wrk_run() {
    local peer=$1 secs=$2 conns=$3 out=$4 i pids=()
    rm -f "$out".* # a previous run may have left more files than this one writes
    if [[ $peer == kernel_forward ]]; then
        for ((i = 0; i < NRS; i++)); do
            nsx client timeout $((secs + 10)) wrk -t1 -c$((conns / NRS)) -d"${secs}s" --timeout 2s \
                -H 'Connection: close' "http://${RS[i]}:8080/" >"$out.$i" 2>&1 &
            pids+=($!)
        done
    else
        nsx client timeout $((secs + 10)) wrk -t2 -c"$conns" -d"${secs}s" --timeout 2s \
            -H 'Connection: close' "http://$VIP/" >"$out.0" 2>&1 &
        pids+=($!)
    fi
    for i in "${pids[@]}"; do wait "$i" || true; done
    cat "$out".* | awk '
        /^Requests\/sec:/ { rps += $2 }
        /Socket errors:/ { gsub(",", ""); err += $4 + $6 + $8 + $10 }
        /Non-2xx/ { err += $NF }
        END { printf "%.0f %d\n", rps, err }'
}
# tcp_cps RUN PEER: connections/s with wrk; also the CPU per connection of
# the whole path (wrk, the real servers, the director's process, ksoftirqd)
# and of the director's process alone.
tcp_cps() { # tcp_cps RUN PEER [LABEL_PREFIX]
    local run=$1 peer=$2 pre=${3:-} r k0 k1 d0=0 d1=0 w0 w1
    k0=$(ticks "${HTTPD_PIDS[@]}" $DIRECTOR_PID); [[ -z $DIRECTOR_PID ]] || d0=$(proc_ticks "$DIRECTOR_PID")
    w0=$(children_cpu)
    r=$(wrk_run "$peer" "$DUR" 60 "$TMP/wrk")
    w1=$(children_cpu)
    k1=$(ticks "${HTTPD_PIDS[@]}" $DIRECTOR_PID); [[ -z $DIRECTOR_PID ]] || d1=$(proc_ticks "$DIRECTOR_PID")
    set -- $r
    local conns=$(($1 * DUR))
    record "$run" "$peer" "${pre}tcp_cps" "$1"
    record "$run" "$peer" "${pre}tcp_errors" "$2"
    if [[ -n $pre ]]; then
        log "  $peer ${pre}tcp_cps: $1 conn/s, $2 errors (load $(load1))"
        return
    fi
    record "$run" "$peer" tcp_path_cpu_us_per_conn \
        "$(awk -v k=$((k1 - k0)) -v w0="$w0" -v w1="$w1" -v n="$conns" -v hz="$HZ" 'BEGIN { if (n > 0) printf "%.1f", (k / hz + w1 - w0) * 1e6 / n; else print "nan" }')"
    [[ -z $DIRECTOR_PID ]] || record "$run" "$peer" tcp_proc_cpu_us_per_conn \
        "$(awk -v k=$((d1 - d0)) -v n="$conns" -v hz="$HZ" 'BEGIN { if (n > 0) printf "%.1f", k / hz * 1e6 / n; else print "nan" }')"
    log "  $peer tcp_cps: $1 conn/s, $2 errors (load $(load1))"
    if [[ $peer == lvsd ]]; then
        log_lvsd_counts
    fi
}
LAT_RATE=500
latency() { # latency RUN PEER [LABEL_PREFIX]
    local run=$1 peer=$2 pre=${3:-} n out
    n=$((LAT_RATE * (DUR > 3 ? 3 : DUR)))
    out=$(nsx client "$BT" lat "$(target_addr "$peer")" "$(target_port "$peer" 80)" $LAT_RATE $n $((DUR + 5)))
    set -- $out # ok N err E p50_us A p90_us B p99_us C max_us D
    record "$run" "$peer" "${pre}p50_ms" "$(awk -v u="$6" 'BEGIN { printf "%.3f", u / 1000 }')"
    record "$run" "$peer" "${pre}p99_ms" "$(awk -v u="${10}" 'BEGIN { printf "%.3f", u / 1000 }')"
    record "$run" "$peer" "${pre}lat_errors" "$4"
    log "  $peer ${pre}latency at $LAT_RATE conn/s: $out"
}
bulk() {
    local run=$1 peer=$2 gbps
    nsx client timeout $((DUR + 10)) iperf3 -c "$(target_addr "$peer")" -p 5201 -t "$DUR" -J >"$TMP/iperf3.json" 2>&1 || true
    gbps=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%.3f" % (d["end"]["sum_received"]["bits_per_second"] / 1e9))' "$TMP/iperf3.json" 2>/dev/null || echo nan)
    record "$run" "$peer" bulk_gbps "$gbps"
    log "  $peer bulk: $gbps Gbit/s (load $(load1))"
}

# --- the runs --------------------------------------------------------------------
log "machine: $(nproc) CPUs, kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
read -ra PEER_LIST <<<"$PEERS"
# What each run measures: every peer, and (with the extras) lvsd with each
# backend and shard count for the shard-scaling table, as "lvsd@BACKEND:N".
UNITS=("${PEER_LIST[@]}")
if ((EXTRAS)) && [[ " $PEERS " == *" lvsd "* ]]; then
    UNITS+=(lvsd@xdp:1 lvsd@xdp:2 lvsd@packet:1 lvsd@packet:2)
fi
# One run is three rounds: the UDP loads, then connections/s and latency,
# then bulk. Each round measures every unit in turn (the director started
# for it and stopped after), so a metric's figures for all the peers and
# settings are taken within a minute or two of each other, and a slow
# stretch of a shared machine falls on all of them rather than on the one
# unit whose block it hit. The order rotates from run to
# run (run 2 starts with the second unit), so no unit always goes first or
# always follows the same one.
for ((run = 1; run <= RUNS; run++)); do
    for round in udp tcp bulk; do
        for ((ui = 0; ui < ${#UNITS[@]}; ui++)); do
            unit=${UNITS[(ui + run - 1) % ${#UNITS[@]}]}
            peer=${unit%@*} setting= pre=
            if [[ $unit == *@* ]]; then
                setting=${unit#*@}
                pre="${setting%:*}_shards${setting#*:}_"
            fi
            # HAProxy forwards no UDP here; bulk is measured for the peers only.
            [[ $round == udp && $peer == haproxy ]] && continue
            [[ $round == bulk && -n $setting ]] && continue
            log "run $run/$RUNS, $round: $peer${setting:+ on ${setting%:*} with ${setting#*:} shard(s)}"
            peer_up "$peer" "$setting"
            case $round in
            udp)
                udp_pps "$run" "$peer" "udp_pps_${pre}1gen" 1
                udp_pps "$run" "$peer" "udp_pps_${pre}2gen" 2
                ;;
            tcp)
                tcp_cps "$run" "$peer" "$pre"
                latency "$run" "$peer" "$pre"
                ;;
            bulk) bulk "$run" "$peer" ;;
            esac
            peer_down "$peer"
        done
    done
done

if ((EXTRAS)) && [[ " $PEERS " == *" lvsd "* ]]; then
    # Rule swaps under load: 1,000 `lvsadm -e` weight changes (alternating
    # between the TCP service and a UDP service, weights 1 and 2) while a UDP
    # load (sequence-numbered, counted by a sink in each real server) and a
    # wrk load run against lvsd. The loads run until the changes are done
    # (at most SWAP_MAX s), then are stopped and their counts compared.
    log "rule swaps under load"
    peer_up lvsd
    SWAP_RATE=20000 SWAP_MAX=120 SWAPS=1000
    sink_pids=()
    for ((i = 1; i <= NRS; i++)); do
        bgrun "rs$i" "sink$i" "$BT" sink "${RS[i - 1]}" 5354 $((SWAP_RATE * SWAP_MAX + 1)) $((SWAP_MAX + 15)) 1500
        sink_pids+=("$BG_PID")
        wait_line "$TMP/sink$i.log" ready 5
    done
    bgrun client swapblast "$BT" blast eth0 "$(mac_of $CLIENT)" "$(mac_of $DIR_EXT)" $CLIENT $VIP 54 $FLOWS \
        $((SWAP_RATE * SWAP_MAX)) "$SWAP_MAX" $SWAP_RATE 1
    blast_pid=$BG_PID
    # Not through a shell function: $! must be timeout's pid (ip execs it),
    # which passes SIGINT on to wrk.
    ip netns exec "$(ns client)" timeout -s INT $((SWAP_MAX + 5)) wrk -t1 -c32 -d"${SWAP_MAX}s" --timeout 2s \
        -H 'Connection: close' "http://$VIP/" >"$TMP/swapwrk.log" 2>&1 &
    wrk_pid=$!
    PIDS+=("$wrk_pid")
    sleep 1
    t0=$(date +%s.%N) applied=0 failed=0
    for ((k = 0; k < SWAPS; k++)); do
        w=$((1 + (k / 2) % 2)) r=${RS[(k / 2) % NRS]}
        if ((k % 2 == 0)); then args=(-e -t "$VIP:80" -r "$r:8080" -m -w "$w")
        else args=(-e -u "$VIP:54" -r "$r:5354" -m -w "$w"); fi
        if lvsadm "${args[@]}" >/dev/null 2>>"$TMP/swap-errors.log"; then applied=$((applied + 1)); else failed=$((failed + 1)); fi
        (($(date +%s) - ${t0%.*} < SWAP_MAX - 10)) || break
    done
    t1=$(date +%s.%N)
    sleep 1
    # Stop the loads: wrk prints its totals on SIGINT (timeout passes it on),
    # the blaster its count on SIGTERM; the sinks end 1.5 s after the last
    # datagram.
    kill -INT "$wrk_pid" 2>/dev/null || true
    wait "$wrk_pid" || true
    stop_pid "$blast_pid"
    for pid in "${sink_pids[@]}"; do wait "$pid" || true; done
    sent=$(sed -n 's/sent \([0-9]*\).*/\1/p' "$TMP/swapblast.log")
    uniq=$(cat "$TMP"/sink*.log | awk '/^received/ { u += $4 } END { print u + 0 }')
    dups=$(cat "$TMP"/sink*.log | awk '/^received/ { d += $6 } END { print d + 0 }')
    read -r conns wrk_err < <(awk '
        /requests in/ { n = $1 }
        /Socket errors:/ { gsub(",", ""); err += $4 + $6 + $8 + $10 }
        /Non-2xx/ { err += $NF }
        END { printf "%d %d\n", n, err }' "$TMP/swapwrk.log")
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
    record 1 lvsd swap_changes "$applied"
    record 1 lvsd swap_change_errors "$failed"
    record 1 lvsd swap_seconds "$secs"
    record 1 lvsd swap_udp_sent "${sent:-0}"
    record 1 lvsd swap_udp_lost "$((${sent:-0} - uniq))"
    record 1 lvsd swap_udp_dup "$dups"
    record 1 lvsd swap_tcp_conns "$conns"
    record 1 lvsd swap_tcp_errors "$wrk_err"
    log "  $applied changes ($failed refused) in $secs s; UDP sent ${sent:-0} lost $((${sent:-0} - uniq)) dup $dups;" \
        "TCP $conns connections, $wrk_err errors"
    peer_down lvsd
fi

if ((PROFILE)); then
    mkdir -p "$TMP/report"
    # perf with the software cpu-clock event (this VM has no hardware
    # counters), the whole machine (-a: softirq work runs in whichever task
    # is on the CPU), call graphs, during a UDP and a TCP load. The machine is
    # shared: other processes (rustc...) show up under their own names.
    for peer in lvsd nft_dnat; do
        peer_up "$peer"
        for load in udp tcp; do
            log "profiling $peer under $load load"
            data=$TMP/perf-$peer-$load.data
            perf record -q -a -g -e cpu-clock -F 1999 -o "$data" -- sleep "$DUR" >/dev/null 2>&1 &
            ppid=$!
            if [[ $load == udp ]]; then
                nsx client timeout $((DUR + 5)) "$BT" blast eth0 "$(mac_of $CLIENT)" "$(mac_of $DIR_EXT)" $CLIENT $VIP 53 $FLOWS \
                    $((DUR * 5000000)) "$DUR" 0 1 >"$TMP/pblast.log"
                what="$(cat "$TMP/pblast.log")"
            else
                what="$(wrk_run "$peer" "$DUR" 60 "$TMP/pwrk") (conn/s errors)"
            fi
            wait "$ppid" || true
            rep() { perf report -i "$data" --stdio --no-children -g none --percent-limit 0.5 "$@" 2>/dev/null | grep -v '^#' | grep -v '^$'; }
            ( # head closes pipes early: no pipefail here
                set +e +o pipefail
                echo "# $peer under $load load: perf record -a -g -e cpu-clock -F 1999, $DUR s, $(date -u '+%F %H:%M UTC')"
                echo "# load: $what; load average $(cut -d' ' -f1-3 /proc/loadavg)"
                echo
                echo "## CPU by thread name (comm), share of all samples on both CPUs"
                rep --sort comm | head -20
                echo
                echo "## by CPU and thread name"
                rep --sort cpu,comm | head -12
                echo
                echo "## top symbols, all threads (self time)"
                rep --sort comm,sym | head -45
                if [[ $peer == lvsd ]]; then
                    echo
                    echo "## lvsd shard threads: what they were doing (tests/bench/perfsplit.py)"
                    perf script -i "$data" -F comm,tid,ip,sym,dso 2>/dev/null | python3 tests/bench/perfsplit.py lvsd-shard
                    echo
                    echo "## lvsd shard threads only: top symbols (self time, share of the shards' samples)"
                    rep --comms lvsd-shard0,lvsd-shard1 --percentage relative --sort sym | head -40
                    echo
                    echo "## lvsd shard threads: call chains into the kernel (caller view, >= 2%)"
                    perf report -i "$data" --stdio --children --comms lvsd-shard0,lvsd-shard1 --sort sym \
                        -g caller,2,callee,function,percent --percent-limit 5 2>/dev/null | grep -v '^#' | grep -v '^$' | head -120
                fi
            ) >"$TMP/report/profile-$peer-$load.txt"
            if ((WRITE)); then mkdir -p docs/bench && cp "$TMP/report/profile-$peer-$load.txt" docs/bench/; fi
        done
        peer_down "$peer"
    done
fi

# --- the report ----------------------------------------------------------------------
OUT=$TMP/report
mkdir -p "$OUT"
MACHINE="$(nproc) CPUs ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)), $(free -g | awk '/^Mem:/ { print $2 }') GiB, kernel $(uname -r)"
CMDLINE="tests/bench.sh${ORIG_ARGS:+ $ORIG_ARGS}"
python3 tests/bench/report.py --raw "$RAW" --out "$OUT" --machine "$MACHINE" \
    --command "sudo $CMDLINE (runs $RUNS, ${DUR} s per load)" --date "$(date -u '+%F %H:%M UTC')" \
    --loadavg "$(cut -d' ' -f1-3 /proc/loadavg)"
cat "$OUT/table.md"
if ((WRITE)); then
    mkdir -p docs/bench
    cp "$OUT/results.json" "$OUT/results-full.json" "$OUT/plot.svg" "$OUT/table.md" docs/bench/
    cp "$RAW" docs/bench/raw.tsv
    python3 tests/bench/report.py --splice docs/benchmarks.md --table "$OUT/table.md"
    log "wrote docs/bench/ and the table in docs/benchmarks.md"
else
    log "results in $OUT (removed on exit; --write keeps them)"
    cp -r "$OUT" "/tmp/$P-report" && log "copied to /tmp/$P-report"
fi
