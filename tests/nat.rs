//! lvsd as a NAT director, end to end: real curl, wrk and UDP clients in one
//! namespace, lvsd in another, real servers behind a bridge, all on the
//! kernels' own TCP/UDP stacks.

mod support;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use support::{count, curl_many, Lab};

/// A NAT config: TCP VIP:80 to each real server's 8080 with `weights`, and
/// UDP VIP:53 to each real server's 5353.
fn nat_config(shards: usize, scheduler: &str, weights: &[u32]) -> String {
    let mut s = format!(
        r#"[daemon]
interfaces = ["ext0", "int0"]
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
    let lab = Lab::nat(name, n).expect("building the lab");
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

fn lvsadm_ok(lab: &Lab, args: &[&str]) -> String {
    let out = lab.lvsadm(args);
    assert!(
        out.status.success(),
        "lvsadm {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn curl_through_vip_splits_by_weight() {
    if !Lab::skip_unless_root() {
        return;
    }
    let lab = lab_with_lvsd("wrr", 2, &nat_config(2, "wrr", &[1, 3]));
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
    let list = lvsadm_ok(&lab, &["-L", "-n"]);
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
    let lab = lab_with_lvsd("udp", 2, &nat_config(1, "rr", &[1, 1]));
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
