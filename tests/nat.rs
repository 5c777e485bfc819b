//! lvsd as a NAT director, end to end: real curl, wrk and UDP clients in one
//! namespace, lvsd in another, real servers behind a bridge, all on the
//! kernels' own TCP/UDP stacks.

mod support;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use support::{count, curl_many, Lab};

/// A NAT config: TCP VIP:80 to each real server's 8080 with `weights`, and
/// UDP VIP:53 to each real server's 5353; frames arrive by `backend`
/// ("xdp" runs one shard).
fn nat_config(backend: &str, shards: usize, scheduler: &str, weights: &[u32]) -> String {
    let mut s = format!(
        r#"[daemon]
interfaces = ["ext0", "int0"]
backend = "{backend}"
shards = {shards}
admin_socket = "lvsd.sock"
socket_mode = "0666"
buffers = 256
log = "info"

[[service]]
protocol = "tcp"
address = "198.19.0.100:80"
scheduler = "{scheduler}"
"#
    );
    for (i, w) in weights.iter().enumerate() {
        s += &format!(
            "\n  [[service.real_server]]\n  address = \"198.18.1.{}:8080\"\n  weight = {w}\n  method = \"nat\"\n",
            11 + i
        );
    }
    s += "\n[[service]]\nprotocol = \"udp\"\naddress = \"198.19.0.100:53\"\nscheduler = \"rr\"\n";
    for i in 0..weights.len() {
        s += &format!(
            "\n  [[service.real_server]]\n  address = \"198.18.1.{}:5353\"\n  method = \"nat\"\n",
            11 + i
        );
    }
    s
}

/// A lab with `n` real servers serving HTTP on 8080 and UDP on 5353, and
/// lvsd started with `config`.
fn lab_with_lvsd(name: &str, n: usize, config: &str) -> Lab {
    lab_with_lvsd_queues(name, n, 1, config)
}

/// [`lab_with_lvsd`] on veths with `queues` queues each.
fn lab_with_lvsd_queues(name: &str, n: usize, queues: u32, config: &str) -> Lab {
    let lab = Lab::nat_multiqueue(name, n, queues).expect("building the lab");
    for i in 1..=n {
        lab.spawn_testsrv(i, Some(8080), Some(5353))
            .expect("real server");
    }
    lab.start_lvsd(config).expect("starting lvsd");
    wait_resolved(&lab, n);
    lab
}

/// Waits (bounded) until the neighbour resolver has found `n` real servers
/// and a request through the VIP succeeds, so no connection the test makes
/// is scheduled to a server whose MAC address is not known yet.
fn wait_resolved(lab: &Lab, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let resolved = lab.daemon_stats().neighbors.resolved;
        if resolved >= n as u64 {
            let out = lab.exec(
                lab.ns("client"),
                &["curl", "-s", "--max-time", "2", "http://198.19.0.100/"],
            );
            if out.status.success() && !out.stdout.is_empty() {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{resolved} of {n} real servers resolved, or no answer through the VIP, \
             within 10 s; lvsd log:\n{}",
            lab.lvsd_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn curl_through_vip_splits_by_weight() {
    if !Lab::skip_unless_root() {
        return;
    }
    let lab = lab_with_lvsd("wrr", 2, &nat_config("xdp", 1, "wrr", &[1, 3]));
    let bodies = curl_many(&lab, "http://198.19.0.100/", 400);
    let counts = count(&bodies);
    let rs1 = counts.get("rs1").copied().unwrap_or(0);
    let rs2 = counts.get("rs2").copied().unwrap_or(0);
    assert_eq!(rs1 + rs2, 400, "every request answered: {counts:?}");
    let share = rs1 as f64 / 400.0;
    assert!(
        (share - 0.25).abs() <= 0.05,
        "rs1 got {rs1} of 400 ({:.1}%), expected 25% +- 5%: {counts:?}",
        share * 100.0
    );
    let st = lab.daemon_stats();
    assert!(st.backend.starts_with("xdp"), "{st:?}");
    assert!(
        st.shards[0].rx_xdp_frames >= 400 * 5,
        "the AF_XDP sockets carried the connections: {st:?}"
    );
    // The AF_XDP drop reasons are listed (the key is there whenever the
    // backend is XDP; that the kernel's XDP_STATISTICS are read is a unit
    // test's matter), and nothing was lost at this rate.
    assert_eq!(st.drops("xdp_ring_full"), 0, "{st:?}");
    assert!(st.shards[0].drops.contains_key("xdp_fill_empty"), "{st:?}");
    let list = lab.lvsadm_ok(&["-L", "-n"]);
    assert!(list.contains("TCP  198.19.0.100:80 wrr"), "{list}");
    assert!(
        list.contains("  -> 198.18.1.11:8080             Masq    1      "),
        "{list}"
    );
    assert!(
        list.contains("  -> 198.18.1.12:8080             Masq    3      "),
        "{list}"
    );
}

#[test]
fn udp_service_answers() {
    if !Lab::skip_unless_root() {
        return;
    }
    let lab = lab_with_lvsd("udp", 2, &nat_config("xdp", 1, "rr", &[1, 1]));
    let replies = lab.in_ns(lab.ns("client"), || {
        let mut replies = Vec::new();
        for i in 0..4 {
            let s = UdpSocket::bind("198.18.0.2:0").expect("bind");
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            s.send_to(format!("ping{i}").as_bytes(), "198.19.0.100:53")
                .unwrap();
            let mut buf = [0u8; 256];
            let (n, from) = s.recv_from(&mut buf).expect("a UDP reply through the VIP");
            assert_eq!(
                from.to_string(),
                "198.19.0.100:53",
                "the reply comes from the VIP"
            );
            replies.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        replies
    });
    let mut servers: Vec<&str> = replies
        .iter()
        .map(|r| r.split(' ').next().unwrap())
        .collect();
    servers.sort_unstable();
    assert_eq!(servers, ["rs1", "rs1", "rs2", "rs2"], "{replies:?}");
    assert!(replies.iter().any(|r| r.ends_with(" ping0")), "{replies:?}");
}

/// Sends one datagram with `ttl` from the client to VIP:53 on a connected
/// socket with IP_RECVERR, and returns the error its receive reports
/// (None when a reply comes back).
fn udp_error(ttl: u32) -> Option<i32> {
    use std::os::fd::AsRawFd;
    let s = UdpSocket::bind("198.18.0.2:0").expect("bind");
    s.set_ttl(ttl).unwrap();
    let on: libc::c_int = 1;
    // SAFETY: setsockopt on our socket with a live int.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_RECVERR,
            (&on as *const libc::c_int).cast(),
            libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).unwrap(),
        )
    };
    assert_eq!(rc, 0, "IP_RECVERR");
    s.connect("198.19.0.100:53").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.send(b"ping").unwrap();
    let mut buf = [0u8; 256];
    s.recv(&mut buf)
        .err()
        .map(|e| e.raw_os_error().unwrap_or(-1))
}

/// What IPVS's users expect when no real server can take a connection: with
/// every real server quiesced (weight 0), lvsd refuses a new connection at
/// once with an ICMP port unreachable from the VIP, so curl fails with
/// "couldn't connect" (exit 7) instead of resending its SYN until its time
/// runs out (exit 28), and a UDP client's receive fails with ECONNREFUSED.
/// A datagram whose TTL runs out at the director gets "time exceeded".
/// Both backends.
#[test]
fn refusals_reach_the_client() {
    if !Lab::skip_unless_root() {
        return;
    }
    for backend in ["xdp", "packet"] {
        let name = format!("refuse{}", &backend[..1]);
        let lab = lab_with_lvsd(&name, 1, &nat_config(backend, 1, "rr", &[1]));
        let client = lab.ns("client");
        let err = lab.in_ns(client, || udp_error(1));
        assert_eq!(err, Some(libc::EHOSTUNREACH), "{backend}: TTL 1");
        assert_eq!(
            lab.in_ns(client, || udp_error(64)),
            None,
            "{backend}: TTL 64"
        );
        for (proto, port) in [("-t", "80:8080"), ("-u", "53:5353")] {
            let (vport, rport) = port.split_once(':').unwrap();
            lab.lvsadm_ok(&[
                "-e",
                proto,
                &format!("198.19.0.100:{vport}"),
                "-r",
                &format!("198.18.1.11:{rport}"),
                "-m",
                "-w",
                "0",
            ]);
        }
        let out = lab.exec(
            client,
            &["curl", "-sS", "--max-time", "5", "http://198.19.0.100/"],
        );
        assert_eq!(
            out.status.code(),
            Some(7),
            "{backend}: curl to a quiesced service: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let err = lab.in_ns(client, || udp_error(64));
        assert_eq!(err, Some(libc::ECONNREFUSED), "{backend}: UDP");
        let st = lab.daemon_stats();
        assert!(st.drops("no_dest") >= 2, "{backend}: {st:?}");
        assert!(st.drops("ttl_exceeded") >= 1, "{backend}: {st:?}");
    }
}

/// Counts, in the client's own kernel, the packets and bytes it sends to and
/// receives from the VIP for one protocol: the ground truth for --stats.
struct ClientCounters<'a> {
    lab: &'a Lab,
}

impl<'a> ClientCounters<'a> {
    fn install(lab: &'a Lab) -> Self {
        let rules = "table ip lvstest {
  chain out { type filter hook output priority 0; policy accept;
    ip daddr 198.19.0.100 tcp dport 80 counter
    ip daddr 198.19.0.100 udp dport 53 counter
  }
  chain in { type filter hook input priority 0; policy accept;
    ip saddr 198.19.0.100 tcp sport 80 counter
    ip saddr 198.19.0.100 udp sport 53 counter
  }
}";
        let path = lab.dir.join("counters.nft");
        std::fs::write(&path, rules).unwrap();
        lab.exec_ok(lab.ns("client"), &["nft", "-f", path.to_str().unwrap()])
            .expect("installing client counters");
        ClientCounters { lab }
    }

    /// (packets, bytes) of the rule matching `what` ("tcp dport 80", ...).
    fn read(&self, what: &str) -> (u64, u64) {
        let text = self
            .lab
            .exec_ok(
                self.lab.ns("client"),
                &["nft", "list", "table", "ip", "lvstest"],
            )
            .unwrap();
        let line = text.lines().find(|l| l.contains(what)).expect(what);
        let num = |key: &str| -> u64 {
            let rest = &line[line.find(key).unwrap() + key.len()..];
            rest.split_whitespace().next().unwrap().parse().unwrap()
        };
        (num("packets "), num("bytes "))
    }
}

/// The numbers of one line of `lvsadm -L -n --stats --exact`.
fn stats_line(out: &str, prefix: &str) -> Vec<u64> {
    let line = out
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?} in\n{out}"));
    line[prefix.len()..]
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect()
}

#[test]
fn stats_match_the_packets_sent_xdp() {
    stats_match_the_packets_sent("xdp", 1);
}

#[test]
fn stats_match_the_packets_sent_packet_sockets() {
    stats_match_the_packets_sent("packet", 2);
}

/// Two XDP shards on two-queue interfaces: frames that reach the shard
/// which does not own their connection are handed over, and counted once.
#[test]
fn stats_match_the_packets_sent_xdp_two_shards() {
    stats_match_the_packets_sent("xdp", 2);
}

/// lvsd's counters equal the client kernel's own, with frames arriving by
/// `backend` across `shards` shards (XDP: on veths with one queue per
/// shard).
fn stats_match_the_packets_sent(backend: &str, shards: usize) {
    if !Lab::skip_unless_root() {
        return;
    }
    let queues = if backend == "xdp" { shards } else { 1 };
    let lab = lab_with_lvsd_queues(
        &format!("stats{}{shards}", &backend[..1]),
        2,
        u32::try_from(queues).unwrap(),
        &nat_config(backend, shards, "rr", &[1, 1]),
    );
    let st = lab.daemon_stats();
    assert!(st.backend.starts_with(backend), "{st:?}");
    assert_eq!(st.shards.len(), shards, "{st:?}");
    let counters = ClientCounters::install(&lab);
    lab.lvsadm_ok(&["-Z"]);

    // TCP: 40 connections with curl.
    let bodies = curl_many(&lab, "http://198.19.0.100/", 40);
    assert_eq!(bodies.len(), 40);
    // UDP: one flow of 25 datagrams of 100 bytes, each answered.
    lab.in_ns(lab.ns("client"), || {
        let s = UdpSocket::bind("198.18.0.2:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        for _ in 0..25 {
            s.send_to(&[b'x'; 100], "198.19.0.100:53").unwrap();
            let mut buf = [0u8; 512];
            s.recv_from(&mut buf).expect("UDP reply");
        }
    });
    // The last ACKs and FINs may still be on their way through a shard:
    // read both sides until they agree (at most 5 s), then compare.
    let deadline = Instant::now() + Duration::from_secs(5);
    let (out, tcp, udp, tcp_client, udp_client) = loop {
        let out = lab.lvsadm_ok(&["-L", "-n", "--stats", "--exact"]);
        let tcp = stats_line(&out, "TCP  198.19.0.100:80");
        let udp = stats_line(&out, "UDP  198.19.0.100:53");
        let tcp_client = (counters.read("tcp dport 80"), counters.read("tcp sport 80"));
        let udp_client = (counters.read("udp dport 53"), counters.read("udp sport 53"));
        let ((o_p, o_b), (i_p, i_b)) = tcp_client;
        if tcp[1..] == [o_p, i_p, o_b, i_b] || Instant::now() >= deadline {
            break (out, tcp, udp, tcp_client, udp_client);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let ((tcp_out_p, tcp_out_b), (tcp_in_p, tcp_in_b)) = tcp_client;
    let ((udp_out_p, udp_out_b), (udp_in_p, udp_in_b)) = udp_client;
    assert_eq!(
        tcp,
        vec![40, tcp_out_p, tcp_in_p, tcp_out_b, tcp_in_b],
        "{out}"
    );
    assert_eq!(udp, vec![1, 25, 25, 25 * 128, udp_in_b], "{out}");
    assert_eq!((udp_out_p, udp_out_b, udp_in_p), (25, 25 * 128, 25));
    // The destinations add up to the service.
    let d1 = stats_line(&out, "  -> 198.18.1.11:8080");
    let d2 = stats_line(&out, "  -> 198.18.1.12:8080");
    let sum: Vec<u64> = d1.iter().zip(&d2).map(|(a, b)| a + b).collect();
    assert_eq!(sum, tcp, "{out}");
    if shards == 1 {
        assert_eq!((d1[0], d2[0]), (20, 20), "rr splits 40 evenly: {out}");
    } else {
        // Each shard runs its own rr over the two servers.
        assert!(d1[0].abs_diff(d2[0]) <= 2 * shards as u64, "{out}");
    }
    let st = lab.daemon_stats();
    assert_eq!(
        st.drops("no_conn"),
        0,
        "a frame missed its connection: {st:?}"
    );
    // The kernel's own drops at the shards' packet sockets are reported
    // (read from PACKET_STATISTICS), and at this rate there are none.
    assert!(
        st.shards
            .iter()
            .all(|s| s.drops.get("socket_full") == Some(&0)),
        "{st:?}"
    );

    if backend == "packet" {
        // -Z zeroes the rate estimates too (ipvsadm's -Z does), also from a
        // restore (-R). A UDP load (20 datagrams/s) until the estimate
        // shows it: lvsd samples every two seconds, and a rate needs two
        // samples (at most 8 s).
        let s = lab.in_ns(lab.ns("client"), || {
            UdpSocket::bind("198.18.0.2:0").unwrap()
        });
        let lvsadm = support::lvsadm_bin().unwrap();
        let socket = lab.socket_path();
        let restore_zero = format!(
            "echo -Z | {} --socket {} -R",
            lvsadm.display(),
            socket.display()
        );
        for zero in ["-Z", "-R"] {
            let deadline = Instant::now() + Duration::from_secs(8);
            let mut out = String::new();
            while Instant::now() < deadline {
                for _ in 0..10 {
                    s.send_to(&[b'x'; 100], "198.19.0.100:53").unwrap();
                    std::thread::sleep(Duration::from_millis(50));
                }
                out = lab.lvsadm_ok(&["-L", "-n", "--rate", "--exact"]);
                if stats_line(&out, "UDP  198.19.0.100:53")[1] > 0 {
                    break;
                }
            }
            let rates = stats_line(&out, "UDP  198.19.0.100:53");
            assert!(rates[1] > 0 && rates[3] > 0, "no rate under load: {out}");
            if zero == "-Z" {
                lab.lvsadm_ok(&["-Z"]);
            } else {
                let mut sh = std::process::Command::new("sh");
                sh.args(["-c", &restore_zero]);
                let out = support::run_bounded(sh, support::EXEC_TIMEOUT).unwrap();
                assert!(out.status.success(), "{restore_zero}: {out:?}");
            }
            let out = lab.lvsadm_ok(&["-L", "-n", "--rate", "--exact"]);
            assert_eq!(
                stats_line(&out, "UDP  198.19.0.100:53"),
                [0; 5],
                "{zero}: {out}"
            );
            assert_eq!(
                stats_line(&out, "  -> 198.18.1.11:5353"),
                [0; 5],
                "{zero}: {out}"
            );
        }
    }
}

/// Both shards carry traffic, and every reply found its connection: the
/// fanout program sends both directions of a flow to the same shard.
#[test]
fn two_shards_share_the_load() {
    two_shards_share_the_load_on("packet", 1);
}

/// The same with two XDP shards, one per queue: the XDP program steers each
/// frame to the shard that owns its connection, on whichever queue it came,
/// so every reply finds its connection.
#[test]
fn two_xdp_shards_share_the_load() {
    two_shards_share_the_load_on("xdp", 2);
}

fn two_shards_share_the_load_on(backend: &str, queues: u32) {
    if !Lab::skip_unless_root() {
        return;
    }
    let lab = lab_with_lvsd_queues(
        &format!("shards{}", &backend[..1]),
        2,
        queues,
        &nat_config(backend, 2, "rr", &[1, 1]),
    );
    let bodies = curl_many(&lab, "http://198.19.0.100/", 200);
    assert_eq!(bodies.len(), 200);
    let status = lab.lvsadm_ok(&["--status"]);
    let st = lab.daemon_stats();
    assert_eq!(st.shards.len(), 2, "{status}");
    assert!(st.backend.starts_with(backend), "{status}");
    for (i, s) in st.shards.iter().enumerate() {
        assert!(
            s.tx_frames > 100,
            "shard {i} forwarded only {} frames: {st:?}",
            s.tx_frames
        );
        // Closed connections linger (TIME_WAIT) in the shard that owns them.
        assert!(
            s.conns > 20,
            "shard {i} holds {} connections: {status}",
            s.conns
        );
    }
    if backend == "xdp" {
        assert!(
            st.backend.contains("8 AF_XDP sockets"),
            "each shard on two queues of two interfaces: {status}"
        );
        for (i, s) in st.shards.iter().enumerate() {
            assert!(s.rx_xdp_frames > 100, "shard {i}: {status}");
        }
        // The XDP program steers each connection to the shard its client's
        // address and port hash to: every connection is listed once, and
        // each shard holds exactly the ones that hash to it.
        let listed = lab.lvsadm_ok(&["-L", "-c", "-n"]);
        let mut want = [0u64; 2];
        for l in listed.lines().filter(|l| l.contains("198.19.0.100:80")) {
            let client: std::net::SocketAddrV4 = l
                .split_whitespace()
                .find_map(|w| w.parse().ok())
                .unwrap_or_else(|| panic!("no client address in {l:?}"));
            let h = lvsd::io::fanout::flow_hash(*client.ip(), client.port());
            want[h as usize % 2] += 1;
        }
        let held: Vec<u64> = st.shards.iter().map(|s| s.conns).collect();
        assert!(want[0] + want[1] >= 200, "{listed}");
        assert_eq!(
            held, want,
            "connections per shard against the hash: {listed}"
        );
    }
    assert_eq!(
        st.drops("no_conn"),
        0,
        "replies reached the wrong shard: {st:?}"
    );
    assert_eq!(
        st.neighbors.resolved, 2,
        "both real servers resolved: {st:?}"
    );
}

/// The `Conns` column (connections scheduled so far) of the line starting
/// with `prefix` in `lvsadm -L -n --stats --exact`, 0 when there is none.
fn conns_of(lab: &Lab, prefix: &str) -> u64 {
    let out = lab.lvsadm_ok(&["-L", "-n", "--stats", "--exact"]);
    if out.lines().any(|l| l.starts_with(prefix)) {
        stats_line(&out, prefix)[0]
    } else {
        0
    }
}

/// ESTABLISHED entries to real server `rip_port` in `lvsadm -L -c -n`.
fn established_to(lab: &Lab, rip_port: &str) -> usize {
    lab.lvsadm_ok(&["-L", "-c", "-n"])
        .lines()
        .filter(|l| l.contains("ESTABLISHED") && l.contains(rip_port))
        .count()
}

/// Weight changes, an added and a removed real server, all under load: no
/// request fails, the load goes on through every step, long-lived
/// connections to the removed server carry on, the added server takes new
/// connections and a server set to weight 0 takes none.
#[test]
fn changes_under_load_break_no_connection() {
    if !Lab::skip_unless_root() {
        return;
    }
    // Two XDP shards on two-queue veths: the changes meet frames handed
    // between shards as well.
    let lab = Lab::nat_multiqueue("churn", 3, 2).expect("lab");
    for i in 1..=3 {
        lab.spawn_testsrv(i, Some(8080), None).expect("real server");
    }
    lab.start_lvsd(&nat_config("xdp", 2, "wlc", &[1, 1]))
        .expect("lvsd");
    wait_resolved(&lab, 2);
    lab.lvsadm_ok(&["-Z"]);
    let client = lab.ns("client");
    const SERVICE: &str = "TCP  198.19.0.100:80";
    const RS1: &str = "198.18.1.11:8080";
    const RS2: &str = "  -> 198.18.1.12:8080";
    const RS3: &str = "  -> 198.18.1.13:8080";
    let (keepalive, closing, rs1_held, rs1_kept, (rs2_at_w0, rs3_at_w0)) =
        std::thread::scope(|s| {
            // Long-lived keep-alive connections, and a new connection per
            // request.
            let k = s.spawn(|| {
                lab.exec_timeout(
                    client,
                    &[
                        "wrk",
                        "-t1",
                        "-c8",
                        "-d9s",
                        "--timeout",
                        "3s",
                        "http://198.19.0.100/",
                    ],
                    Duration::from_secs(30),
                )
            });
            let c = s.spawn(|| {
                lab.exec_timeout(
                    client,
                    &[
                        "wrk",
                        "-t1",
                        "-c4",
                        "-d9s",
                        "--timeout",
                        "3s",
                        "-H",
                        "Connection: close",
                        "http://198.19.0.100/",
                    ],
                    Duration::from_secs(30),
                )
            });
            let steps: [&[&str]; 4] = [
                &[
                    "-e",
                    "-t",
                    "198.19.0.100:80",
                    "-r",
                    "198.18.1.11:8080",
                    "-m",
                    "-w",
                    "5",
                ],
                &[
                    "-a",
                    "-t",
                    "198.19.0.100:80",
                    "-r",
                    "198.18.1.13:8080",
                    "-m",
                    "-w",
                    "2",
                ],
                &["-d", "-t", "198.19.0.100:80", "-r", "198.18.1.11:8080"],
                &[
                    "-e",
                    "-t",
                    "198.19.0.100:80",
                    "-r",
                    "198.18.1.12:8080",
                    "-m",
                    "-w",
                    "0",
                ],
            ];
            let mut conns = conns_of(&lab, SERVICE);
            let (mut rs1_held, mut rs1_kept) = (0, 0);
            for (i, step) in steps.iter().enumerate() {
                std::thread::sleep(Duration::from_millis(1500));
                // New connections were made in the window before each step.
                let now = conns_of(&lab, SERVICE);
                assert!(now > conns, "no new connection before step {}", i + 1);
                conns = now;
                match i {
                    // rs1 holds connections (the keep-alive ones among
                    // them) when it is removed ...
                    2 => rs1_held = established_to(&lab, RS1),
                    // ... and still holds them 1.5 s after it is gone.
                    3 => rs1_kept = established_to(&lab, RS1),
                    _ => {}
                }
                lab.lvsadm_ok(step);
            }
            // rs2 at weight 0 from here on: a moment for the shards to take
            // the new table, then its count of connections must stay.
            std::thread::sleep(Duration::from_millis(300));
            let at_w0 = (conns_of(&lab, RS2), conns_of(&lab, RS3));
            (
                k.join().unwrap(),
                c.join().unwrap(),
                rs1_held,
                rs1_kept,
                at_w0,
            )
        });
    for (name, out) in [("keep-alive", &keepalive), ("new-connection", &closing)] {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "wrk ({name}) failed: {text}");
        assert!(
            !text.contains("Socket errors"),
            "wrk ({name}) saw socket errors:\n{text}"
        );
        assert!(
            !text.contains("Non-2xx"),
            "wrk ({name}) saw failed requests:\n{text}"
        );
        let requests: u64 = text
            .lines()
            .find(|l| l.contains("requests in"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(requests > 0, "wrk ({name}) made no request:\n{text}");
    }
    assert!(
        rs1_held > 0,
        "rs1 held no established connection when it was removed"
    );
    assert!(
        rs1_kept > 0,
        "rs1's {rs1_held} established connections were dropped with it"
    );
    let out = lab.lvsadm_ok(&["-L", "-n", "--stats", "--exact"]);
    assert!(!out.contains(RS1), "rs1 was removed: {out}");
    let (rs2, rs3) = (stats_line(&out, RS2)[0], stats_line(&out, RS3)[0]);
    assert_eq!(
        rs2, rs2_at_w0,
        "rs2 took new connections at weight 0: {out}"
    );
    assert!(
        rs3_at_w0 > 0 && rs3 > rs3_at_w0,
        "the added server took new connections (at rs2's weight 0: {rs3_at_w0}): {out}"
    );
    let st = lab.daemon_stats();
    assert_eq!(st.shards.len(), 2, "{st:?}");
    assert_eq!(st.drops("no_conn"), 0, "{st:?}");
    for (i, s) in st.shards.iter().enumerate() {
        assert!(s.rx_xdp_frames > 100, "shard {i} got no share: {st:?}");
    }
}

/// A client on the VIP's own link ARPs for the VIP; lvsd answers for it (the
/// director's kernel does not own the address) with its interface's MAC.
#[test]
fn lvsd_answers_arp_for_the_vip() {
    if !Lab::skip_unless_root() {
        return;
    }
    let lab = lab_with_lvsd("arp", 1, &nat_config("xdp", 1, "rr", &[1]));
    let client = lab.ns("client");
    lab.exec_ok(
        client,
        &["ip", "route", "add", "198.19.0.100/32", "dev", "eth0"],
    )
    .unwrap();
    lab.exec_ok(client, &["ip", "neigh", "flush", "all"])
        .unwrap();
    let body = support::curl(&lab, client, "http://198.19.0.100/").expect("curl on-link");
    assert_eq!(body, "rs1\n");
    let neigh = lab
        .exec_ok(client, &["ip", "neigh", "show", "198.19.0.100"])
        .unwrap();
    let mac = lab.mac(lab.ns("director"), "ext0").unwrap();
    assert!(
        neigh.contains(&mac),
        "VIP resolved to {neigh}, expected {mac}"
    );
}

/// Path MTU through NAT, on both backends: the client's link has a
/// 1000-byte MTU (the director's ext0 too) while the client advertises an
/// MSS for 1500, as a client behind a tunnel may. The real server's
/// full-size segments cannot go on to the client; the ICMP "fragmentation
/// needed" lvsd sends makes the real server's kernel send smaller ones, and
/// a 200 kB download completes (without it the transfer stalls).
#[test]
fn path_mtu_through_nat() {
    if !Lab::skip_unless_root() {
        return;
    }
    for backend in ["xdp", "packet"] {
        let lab = Lab::nat(&format!("pmtu{}", &backend[..1]), 1).expect("building the lab");
        lab.spawn_testsrv(1, Some(8080), Some(5353))
            .expect("real server");
        narrow_client_link(&lab);
        lab.start_lvsd(&nat_config(backend, 1, "rr", &[1]))
            .expect("lvsd");
        wait_resolved(&lab, 1);
        assert_downloads(&lab, 200_000, 15, backend);
    }
}

/// The client's link (and the director's end of it) at a 1000-byte MTU,
/// while the client advertises an MSS for 1500, as a client behind a
/// tunnel may.
fn narrow_client_link(lab: &Lab) {
    lab.set_mtu("director", "ext0", 1000).unwrap();
    lab.set_mtu("client", "eth0", 1000).unwrap();
    lab.ip_ok(
        "client",
        "route change 198.19.0.0/16 via 198.18.0.1 advmss 1460",
    )
    .unwrap();
}

/// Downloads `bytes` through the VIP with curl (at most `secs`) and checks
/// every byte came; `what` names the case in the failure.
fn assert_downloads(lab: &Lab, bytes: usize, secs: u32, what: &str) {
    let out = lab.exec(
        lab.ns("client"),
        &[
            "curl",
            "-sS",
            "--max-time",
            &secs.to_string(),
            "-o",
            "/dev/null",
            "-w",
            "%{size_download}",
            &format!("http://198.19.0.100/bytes/{bytes}"),
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        bytes.to_string(),
        "{what}: {}; {:?}",
        String::from_utf8_lossy(&out.stderr),
        lab.daemon_stats()
    );
}

/// Offloads left on (the kernel's defaults on veth: TSO, GSO, checksum
/// offload), the packet backend: the real server's and the client's
/// kernels hand lvsd TCP super-frames of up to 64 kB with partial
/// checksums, which lvsd rewrites once and the kernel segments on the way
/// out. A 4 MB download and a 2 MB upload through NAT arrive whole, and no
/// frame is dropped as truncated or too big.
#[test]
fn nat_with_offloads_on() {
    if !Lab::skip_unless_root() {
        return;
    }
    let lab = Lab::nat_with_offloads("offload", 1).expect("building the lab");
    lab.spawn_testsrv(1, Some(8080), None).expect("real server");
    let tso = lab.exec_ok("rs1", &["ethtool", "-k", "eth0"]).unwrap();
    assert!(
        tso.contains("tcp-segmentation-offload: on"),
        "TSO is off on rs1's eth0:\n{tso}"
    );
    lab.start_lvsd(&nat_config("packet", 1, "rr", &[1]))
        .expect("lvsd");
    wait_resolved(&lab, 1);
    const DOWN: usize = 4 << 20;
    const UP: usize = 2 << 20;
    assert_downloads(&lab, DOWN, 20, "download");
    let upload = lab.dir.join("upload.bin");
    std::fs::write(&upload, vec![b'u'; UP]).unwrap();
    let head = lab.exec(
        lab.ns("client"),
        &[
            "curl",
            "-sS",
            "--max-time",
            "20",
            "-T",
            upload.to_str().unwrap(),
            "-D",
            "-",
            "-o",
            "/dev/null",
            "http://198.19.0.100/",
        ],
    );
    let text = String::from_utf8_lossy(&head.stdout);
    assert!(
        text.contains(&format!("X-Received: {UP}")),
        "upload: {text}{}; {:?}",
        String::from_utf8_lossy(&head.stderr),
        lab.daemon_stats()
    );
    let st = lab.daemon_stats();
    assert!(st.backend.starts_with("packet"), "{st:?}");
    for reason in ["truncated", "too_big", "malformed", "bad_checksum"] {
        assert_eq!(st.drops(reason), 0, "{reason}: {st:?}");
    }
    // Super-frames did reach lvsd: frames larger than the 1500-byte MTU on
    // average.
    let (frames, bytes) = st
        .shards
        .iter()
        .fold((0, 0), |(f, b), s| (f + s.rx_frames, b + s.rx_bytes));
    assert!(
        frames > 0 && bytes / frames > 1514,
        "{bytes} bytes in {frames} frames: no super-frames; {st:?}"
    );
}

/// `lvsadm --set` applies: with a 3 s UDP timeout a UDP connection leaves
/// the connection table (`lvsadm -L -c -n`) a few seconds after its last
/// datagram, where the default (300 s) would keep it for minutes.
#[test]
fn set_udp_timeout_expires_entries() {
    if !Lab::skip_unless_root() {
        return;
    }
    let lab = lab_with_lvsd("udptmo", 1, &nat_config("packet", 1, "rr", &[1]));
    lab.lvsadm_ok(&["--set", "900", "120", "3"]);
    let shown = lab.lvsadm_ok(&["-L", "--timeout"]);
    assert!(shown.contains("900 120 3"), "{shown}");
    let port = lab.in_ns(lab.ns("client"), || {
        let s = UdpSocket::bind("198.18.0.2:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.send_to(b"once", "198.19.0.100:53").unwrap();
        let mut buf = [0u8; 256];
        s.recv_from(&mut buf).expect("a UDP reply");
        s.local_addr().unwrap().port()
    });
    let sent = Instant::now();
    let entry = format!("198.18.0.2:{port}");
    let listed = |lab: &Lab| {
        lab.lvsadm_ok(&["-L", "-c", "-n"])
            .lines()
            .any(|l| l.starts_with("UDP") && l.contains(&entry))
    };
    assert!(listed(&lab), "{}", lab.lvsadm_ok(&["-L", "-c", "-n"]));
    let deadline = sent + Duration::from_secs(12);
    while listed(&lab) {
        assert!(
            Instant::now() < deadline,
            "the UDP entry is still there 12 s after its datagram: {}",
            lab.lvsadm_ok(&["-L", "-c", "-n"])
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let gone_after = sent.elapsed();
    assert!(
        gone_after >= Duration::from_millis(2500),
        "gone after {gone_after:?}, before its 3 s timeout"
    );
}

/// Sends `msg` from `sock` to VIP:53 and returns the reply, or None when
/// none comes within 2 s.
fn udp_ask(sock: &UdpSocket, msg: &str) -> Option<String> {
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    sock.send_to(msg.as_bytes(), "198.19.0.100:53").unwrap();
    let mut buf = [0u8; 256];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// A real server removed while a connection to it lasts keeps its
/// neighbour entry: after rs1 is removed and rs2 added (whose resolution
/// republishes the neighbour table), the client's UDP flow to rs1 still
/// gets its answers from rs1 (lvsd used to forget rs1's MAC and drop them
/// as no_neighbor).
#[test]
fn a_removed_server_keeps_its_connections_reachable() {
    if !Lab::skip_unless_root() {
        return;
    }
    // rs2 serves, but only rs1 is in the rules at first.
    let lab = Lab::nat("linger", 2).expect("building the lab");
    for i in 1..=2 {
        lab.spawn_testsrv(i, Some(8080), Some(5353))
            .expect("real server");
    }
    lab.start_lvsd(&nat_config("xdp", 1, "rr", &[1]))
        .expect("starting lvsd");
    wait_resolved(&lab, 1);
    let client = lab.ns("client");
    let sock = lab.in_ns(client, || UdpSocket::bind("198.18.0.2:0").expect("bind"));
    let first = lab.in_ns(client, || udp_ask(&sock, "a"));
    assert_eq!(first.as_deref(), Some("rs1 a"), "{}", lab.lvsd_log());
    let replies = lab.daemon_stats().neighbors.replies;
    // rs1 leaves both services (the TCP one would keep its address wanted).
    lab.lvsadm_ok(&["-d", "-u", "198.19.0.100:53", "-r", "198.18.1.11:5353"]);
    lab.lvsadm_ok(&["-d", "-t", "198.19.0.100:80", "-r", "198.18.1.11:8080"]);
    lab.lvsadm_ok(&[
        "-a",
        "-u",
        "198.19.0.100:53",
        "-r",
        "198.18.1.12:5353",
        "-m",
    ]);
    // Bounded: rs2 resolves within a few ARP rounds.
    let deadline = Instant::now() + Duration::from_secs(10);
    while lab.daemon_stats().neighbors.replies == replies {
        assert!(
            Instant::now() < deadline,
            "rs2 never resolved: {:?}",
            lab.daemon_stats()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    let again = lab.in_ns(client, || udp_ask(&sock, "b"));
    let st = lab.daemon_stats();
    assert_eq!(again.as_deref(), Some("rs1 b"), "{st:?}");
    assert_eq!(st.drops("no_neighbor"), 0, "{st:?}");
}

/// With two shards, an ICMP error about a connection reaches the shard that
/// holds it. The client's kernel answers replies to a port it has closed
/// with "port unreachable" to the VIP, about the VIP's datagram to it;
/// lvsd translates it on to the real server. The fanout program used to
/// hash such an error by its own addresses and ICMP type, so about half
/// went to the other shard and were dropped as no_conn.
#[test]
fn icmp_errors_reach_their_connections_shard() {
    if !Lab::skip_unless_root() {
        return;
    }
    let lab = lab_with_lvsd("icmp2", 1, &nat_config("packet", 2, "rr", &[1]));
    let client = lab.ns("client");
    // The client's kernel would send 6 errors to the VIP, then one a second.
    lab.exec_ok(client, &["sysctl", "-qw", "net.ipv4.icmp_ratelimit=0"])
        .unwrap();
    let before = lab.daemon_stats();
    let sent = lab.in_ns(client, || {
        for i in 0..24 {
            let s = UdpSocket::bind("198.18.0.2:0").expect("bind");
            s.send_to(format!("gone{i}").as_bytes(), "198.19.0.100:53")
                .unwrap();
            // Closed before rs1's answer comes back.
        }
        24
    });
    // Bounded: the answers and the errors about them come within a second.
    let deadline = Instant::now() + Duration::from_secs(5);
    let forwarded = loop {
        let st = lab.daemon_stats();
        let icmp_in = st.shards.iter().map(|s| s.rx_frames).sum::<u64>()
            - before.shards.iter().map(|s| s.rx_frames).sum::<u64>();
        // Each exchange: datagram, answer, error (3 frames).
        if icmp_in >= 3 * sent || Instant::now() >= deadline {
            break st;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        forwarded.drops("no_conn") - before.drops("no_conn"),
        0,
        "{forwarded:?}"
    );
    // Both shards held connections (else the test shows nothing).
    assert!(
        forwarded.shards.iter().all(|s| s.rx_frames > 0),
        "{forwarded:?}"
    );
}

/// A lowered MTU is taken up while lvsd runs: the director's ext0 and the
/// client's link go to 1000 bytes after lvsd started; lvsd's "fragmentation
/// needed" to the real server follows the new MTU and a 200 kB download
/// completes (with the MTU read only at start, the full-size segments went
/// out regardless and were lost).
#[test]
fn a_lowered_mtu_is_taken_up() {
    if !Lab::skip_unless_root() {
        return;
    }
    let lab = lab_with_lvsd("mtu", 1, &nat_config("xdp", 1, "rr", &[1]));
    narrow_client_link(&lab);
    // Bounded: lvsd re-reads its interfaces every 2 s and says so.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lab.lvsd_log().contains("ext0: MTU 1500 now 1000") {
        assert!(Instant::now() < deadline, "{}", lab.lvsd_log());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_downloads(&lab, 200_000, 15, "after the MTU change");
}

/// With more than one shard the shards' sockets see only lvsd's
/// interfaces: traffic on the director's loopback is not copied to them
/// (it was, and counted as received and passed).
#[test]
fn shards_see_only_lvsd_interfaces() {
    if !Lab::skip_unless_root() {
        return;
    }
    let lab = lab_with_lvsd("lo", 1, &nat_config("packet", 2, "rr", &[1]));
    let rx = |lab: &Lab| {
        lab.daemon_stats()
            .shards
            .iter()
            .map(|s| s.rx_frames)
            .sum::<u64>()
    };
    let before = rx(&lab);
    lab.in_ns(lab.ns("director"), || {
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
        for _ in 0..200 {
            s.send_to(b"x", "127.0.0.1:9").unwrap();
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let seen = rx(&lab) - before;
    // At least 200 frames crossed lo; a few ARP or neighbour frames may
    // cross lvsd's own interfaces meanwhile.
    assert!(seen < 20, "{seen} frames reached the shards");
}

/// A connection lvsd no longer knows (it restarted, or the entry expired)
/// is reset at once, as the director's own stack resets it under IPVS: the
/// client's next write gets a reset instead of being resent for minutes.
#[test]
fn a_forgotten_connection_is_reset() {
    use std::io::{Read, Write};
    if !Lab::skip_unless_root() {
        return;
    }
    let config = nat_config("xdp", 1, "rr", &[1]);
    let lab = lab_with_lvsd("rst", 1, &config);
    let client = lab.ns("client");
    let stream = lab.in_ns(client, || {
        std::net::TcpStream::connect("198.19.0.100:80").expect("connect")
    });
    lab.stop_lvsd().unwrap();
    lab.start_lvsd(&config).expect("starting lvsd again");
    wait_resolved(&lab, 1);
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    (&stream).write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut buf = [0u8; 64];
    let got = (&stream).read(&mut buf).map_err(|e| e.kind());
    assert_eq!(
        got,
        Err(std::io::ErrorKind::ConnectionReset),
        "{:?}",
        lab.daemon_stats()
    );
}
