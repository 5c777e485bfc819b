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

/// Waits (bounded) until a request through the VIP succeeds, so the
/// neighbour resolver has found the real servers.
fn wait_resolved(lab: &Lab, _n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = lab.exec(
            lab.ns("client"),
            &["curl", "-s", "--max-time", "2", "http://198.19.0.100/"],
        );
        if out.status.success() && !out.stdout.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no answer through the VIP within 10 s; lvsd log:\n{}",
            lab.lvsd_log()
        );
        std::thread::sleep(Duration::from_millis(200));
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
    // The kernel's own AF_XDP drop counters are reported, and nothing was
    // lost at this rate.
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
    std::thread::sleep(Duration::from_millis(300));

    let out = lab.lvsadm_ok(&["-L", "-n", "--stats", "--exact"]);
    let tcp = stats_line(&out, "TCP  198.19.0.100:80");
    let udp = stats_line(&out, "UDP  198.19.0.100:53");
    let (tcp_out_p, tcp_out_b) = counters.read("tcp dport 80");
    let (tcp_in_p, tcp_in_b) = counters.read("tcp sport 80");
    let (udp_out_p, udp_out_b) = counters.read("udp dport 53");
    let (udp_in_p, udp_in_b) = counters.read("udp sport 53");
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
                let st = std::process::Command::new("sh")
                    .args(["-c", &restore_zero])
                    .status()
                    .unwrap();
                assert!(st.success(), "{restore_zero}: {st}");
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

/// Weight changes, an added and a removed real server, all under load: no
/// request fails, long-lived connections to the removed server carry on, and
/// the added server takes new connections.
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
    let (keepalive, closing) = std::thread::scope(|s| {
        // Long-lived keep-alive connections, and a new connection per request.
        let k = s.spawn(|| {
            lab.exec_timeout(
                client,
                &[
                    "wrk",
                    "-t1",
                    "-c8",
                    "-d8s",
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
                    "-d8s",
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
        for step in steps {
            std::thread::sleep(Duration::from_millis(1500));
            lab.lvsadm_ok(step);
        }
        (k.join().unwrap(), c.join().unwrap())
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
        assert!(
            requests > 100,
            "wrk ({name}) made only {requests} requests:\n{text}"
        );
    }
    let out = lab.lvsadm_ok(&["-L", "-n", "--stats", "--exact"]);
    assert!(!out.contains("198.18.1.11:8080"), "rs1 was removed: {out}");
    let rs3 = stats_line(&out, "  -> 198.18.1.13:8080");
    assert!(rs3[0] > 0, "the added server took new connections: {out}");
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
        lab.set_mtu("director", "ext0", 1000).unwrap();
        lab.set_mtu("client", "eth0", 1000).unwrap();
        lab.ip_ok(
            "client",
            "route change 198.19.0.0/16 via 198.18.0.1 advmss 1460",
        )
        .unwrap();
        lab.start_lvsd(&nat_config(backend, 1, "rr", &[1]))
            .expect("lvsd");
        wait_resolved(&lab, 1);
        let out = lab.exec(
            lab.ns("client"),
            &[
                "curl",
                "-sS",
                "--max-time",
                "15",
                "-o",
                "/dev/null",
                "-w",
                "%{size_download}",
                "http://198.19.0.100/bytes/200000",
            ],
        );
        let got = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            got,
            "200000",
            "{backend}: {}; {:?}",
            String::from_utf8_lossy(&out.stderr),
            lab.daemon_stats()
        );
    }
}
