//! The namespace lab itself, without lvsd: topology, real servers, cleanup.

mod support;

use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use support::{count, curl, curl_many, curl_many_from, mac_of, Lab, ProcId, VIP};

/// Every namespace named by `ip netns list`.
fn netns_list() -> Vec<String> {
    let mut c = std::process::Command::new("ip");
    c.args(["netns", "list"]);
    let out = support::run_bounded(c, Duration::from_secs(10)).expect("running ip netns list");
    assert!(out.status.success(), "ip netns list failed: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// What must be gone once a lab is dropped.
struct Traces {
    namespaces: Vec<String>,
    dir: PathBuf,
    pids: Vec<ProcId>,
}

fn assert_cleaned_up(t: &Traces) {
    let left: Vec<String> = netns_list()
        .into_iter()
        .filter(|n| t.namespaces.contains(n))
        .collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    assert!(!t.dir.exists(), "{} left behind", t.dir.display());
    for pid in &t.pids {
        let proc_dir = PathBuf::from(format!("/proc/{}", pid.0));
        assert!(!proc_dir.exists(), "process {} still exists", pid.0);
    }
}

#[test]
fn nat_lab_without_lvsd() {
    if !Lab::skip_unless_root() {
        return;
    }
    let lab = Lab::nat("smoke", 2).expect("building the lab");
    let names = lab.namespaces();
    assert_eq!(names.len(), 5, "client, director, lan, rs1, rs2: {names:?}");
    let listed = netns_list();
    for name in &names {
        assert!(name.starts_with(lab.prefix()), "{name}");
        assert!(listed.contains(name), "{name} not in ip netns list");
    }

    let rs1 = lab
        .spawn_testsrv(1, Some(8080), Some(5353))
        .expect("rs1 testsrv");
    let rs2 = lab
        .spawn_testsrv(2, Some(8080), Some(5353))
        .expect("rs2 testsrv");

    // The director reaches the real servers over the bridge.
    assert_eq!(
        curl(&lab, "director", "http://198.18.1.11:8080/").unwrap(),
        "rs1\n"
    );
    assert_eq!(
        curl(&lab, "director", "http://198.18.1.12:8080/").unwrap(),
        "rs2\n"
    );
    let bodies = curl_many_from(&lab, "director", "http://198.18.1.11:8080/", 20);
    assert_eq!(count(&bodies), [("rs1".to_owned(), 20)].into());

    // UDP from the director to rs2, with std sockets on a thread inside the
    // director's namespace.
    let reply = lab.in_ns("director", || {
        let sock = UdpSocket::bind("198.18.1.1:0").expect("bind in director");
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 512];
        for _ in 0..3 {
            sock.send_to(b"hello", "198.18.1.12:5353").expect("send");
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                return Some((String::from_utf8_lossy(&buf[..n]).into_owned(), from));
            }
        }
        None
    });
    let (text, from) = reply.expect("no UDP reply from rs2");
    assert_eq!(text, "rs2 hello");
    assert_eq!(from, "198.18.1.12:5353".parse::<SocketAddr>().unwrap());

    // Nothing forwards the VIP without lvsd: the director's kernel refuses
    // it (host unreachable: curl exits 7) or drops it (curl's connect
    // timeout: exit 28).
    let out = lab.exec(
        "client",
        &[
            "curl",
            "-sS",
            "--connect-timeout",
            "2",
            "--max-time",
            "5",
            &format!("http://{VIP}/"),
        ],
    );
    assert!(
        matches!(out.status.code(), Some(7 | 28)),
        "curl to the VIP without lvsd: {out:?}"
    );
    let direct = lab.in_ns("client", || {
        TcpStream::connect_timeout(&SocketAddr::from((VIP, 80)), Duration::from_secs(1))
    });
    assert!(direct.is_err(), "client reached the VIP without lvsd");

    // The namespaces are set up as documented.
    assert_eq!(lab.mac("rs1", "eth0").unwrap(), mac_of(lab.rs_addr(1)));
    assert_eq!(lab.mac("director", "int0").unwrap(), "02:00:c6:12:01:01");
    let features = lab.exec_ok("rs1", &["ethtool", "-k", "eth0"]).unwrap();
    for off in [
        "tcp-segmentation-offload: off",
        "generic-segmentation-offload: off",
        "generic-receive-offload: off",
        "scatter-gather: off",
        "tx-checksumming: off",
        "rx-checksumming: off",
    ] {
        assert!(
            features.contains(off),
            "rs1 eth0 lacks {off:?}:\n{features}"
        );
    }
    let fdb = lab
        .exec_ok("lan", &["bridge", "fdb", "show", "br", "br0"])
        .unwrap();
    for (mac, port) in [
        ("02:00:c6:12:01:01", "dir0"),
        ("02:00:c6:12:01:0b", "rs1"),
        ("02:00:c6:12:01:0c", "rs2"),
    ] {
        assert!(
            fdb.lines()
                .any(|l| l.starts_with(&format!("{mac} dev {port} ")) && l.contains("static")),
            "no static FDB entry for {mac} on {port}:\n{fdb}"
        );
    }
    for role in ["client", "director", "rs1"] {
        let v6 = lab
            .exec_ok(role, &["cat", "/proc/sys/net/ipv6/conf/all/disable_ipv6"])
            .unwrap();
        assert_eq!(v6.trim(), "1", "IPv6 still on in {role}");
        let fwd = lab.in_ns(role, || {
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap()
        });
        assert_eq!(fwd.trim(), "0", "ip_forward on in {role}");
    }

    // lvs-testsrv exits cleanly on SIGTERM.
    let status = lab.stop(rs2).expect("stopping rs2");
    assert!(status.success(), "testsrv exited with {status}");
    assert_eq!(lab.log(rs2), "ready\n");
    assert!(!lab.is_running(rs2));

    let traces = Traces {
        namespaces: names,
        dir: lab.dir.clone(),
        pids: vec![rs1, rs2],
    };
    drop(lab);
    assert_cleaned_up(&traces);
}

#[test]
fn lab_cleans_up_after_a_panic() {
    if !Lab::skip_unless_root() {
        return;
    }
    let traces: Mutex<Option<Traces>> = Mutex::new(None);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let lab = Lab::nat("panic", 1).expect("building the lab");
        let rs1 = lab.spawn_testsrv(1, Some(8080), None).expect("rs1 testsrv");
        *traces.lock().unwrap() = Some(Traces {
            namespaces: lab.namespaces(),
            dir: lab.dir.clone(),
            pids: vec![rs1],
        });
        panic!("deliberate panic: the lab must still clean up");
    }));
    assert!(result.is_err(), "the closure should have panicked");
    let traces = traces.into_inner().unwrap().expect("the lab was built");
    assert_eq!(traces.namespaces.len(), 4);
    assert_cleaned_up(&traces);
}

/// The topology carries NAT traffic both ways when something forwards it:
/// here the director's own kernel (nftables DNAT, round robin), standing in
/// for lvsd. Checks the routes, the bridge and the helpers on the client.
#[test]
fn nat_lab_forwards_with_kernel_dnat() {
    if !Lab::skip_unless_root() {
        return;
    }
    let lab = Lab::nat("kdnat", 2).expect("building the lab");
    for rs in 1..=2 {
        lab.spawn_testsrv(rs, Some(8080), None).expect("testsrv");
    }
    let rules = lab.dir.join("dnat.nft");
    std::fs::write(
        &rules,
        "table ip lvt {\n\
         \tchain pre {\n\
         \t\ttype nat hook prerouting priority dstnat; policy accept;\n\
         \t\tip daddr 198.19.0.100 tcp dport 80 \
         dnat to numgen inc mod 2 map { 0 : 198.18.1.11, 1 : 198.18.1.12 } : 8080\n\
         \t}\n\
         }\n",
    )
    .unwrap();
    lab.exec_ok("director", &["nft", "-f", rules.to_str().unwrap()])
        .expect("loading the DNAT rules");
    lab.in_ns("director", || {
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").unwrap();
    });

    let url = format!("http://{VIP}/");
    let bodies = curl_many(&lab, &url, 40);
    assert_eq!(
        count(&bodies),
        [("rs1".to_owned(), 20), ("rs2".to_owned(), 20)].into()
    );

    // The real server sees the client's own address (NAT keeps it).
    let head = lab
        .exec_ok(
            "client",
            &[
                "curl",
                "-sS",
                "--max-time",
                "5",
                "-D",
                "-",
                "-o",
                "/dev/null",
                &url,
            ],
        )
        .unwrap();
    assert!(head.contains("X-Client: 198.18.0.2:"), "{head}");

    // lvs-testsrv serves wrk (keep-alive, 64 connections, 2 s) without an
    // error; how fast is the benchmarks' business, not this test's.
    let wrk = lab
        .exec_ok(
            "client",
            &["wrk", "-t2", "-c64", "-d2s", "--timeout", "2s", &url],
        )
        .unwrap();
    assert!(
        !wrk.contains("Socket errors") && !wrk.contains("Non-2xx"),
        "{wrk}"
    );
    let requests: u64 = wrk
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("no request count in:\n{wrk}"));
    assert!(requests > 0, "no request answered:\n{wrk}");
}
