//! The daemon's control path, end to end: boot-time config files, reload on
//! SIGHUP, the admin socket's permissions and error handling, shutdown, and a
//! flood of malformed frames.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use support::{curl, lvsd_bin, Lab};

fn config(weights: &[(u8, u32)]) -> String {
    let mut s = String::from(
        "[daemon]\ninterfaces = [\"ext0\", \"int0\"]\nshards = 1\nadmin_socket = \"lvsd.sock\"\nsocket_mode = \"0666\"\nbuffers = 128\n\n[[service]]\nprotocol = \"tcp\"\naddress = \"198.19.0.100:80\"\nscheduler = \"wrr\"\n",
    );
    for (rs, w) in weights {
        s += &format!(
            "\n  [[service.real_server]]\n  address = \"198.18.1.{}:8080\"\n  weight = {w}\n  method = \"nat\"\n",
            10 + rs
        );
    }
    s
}

fn lab(name: &str, servers: usize, cfg: &str) -> Lab {
    lab_under(&[], name, servers, cfg)
}

/// As [`lab`], with lvsd started under `wrapper` (see `Lab::start_lvsd_under`).
fn lab_under(wrapper: &[&str], name: &str, servers: usize, cfg: &str) -> Lab {
    let lab = Lab::nat(name, servers).expect("lab");
    for i in 1..=servers {
        lab.spawn_testsrv(i, Some(8080), None).expect("real server");
    }
    lab.start_lvsd_under(wrapper, cfg).expect("lvsd");
    lab
}

fn list(lab: &Lab) -> String {
    let out = lab.lvsadm(&["-L", "-n"]);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn nft_tables(lab: &Lab) -> String {
    lab.exec_ok(lab.ns("director"), &["nft", "list", "tables"])
        .unwrap()
}

/// Every example in config/ is a valid configuration.
#[test]
fn every_example_config_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let mut check = std::process::Command::new(lvsd_bin().unwrap());
            check.arg("--check").arg("--config").arg(&path);
            let out = support::run_bounded(check, support::EXEC_TIMEOUT).unwrap();
            assert!(
                out.status.success(),
                "{} does not load: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            n += 1;
        }
    }
    assert!(n >= 3, "config/ holds only {n} examples");
}

/// The NAT example runs as it is (only its socket path moved) and serves.
#[test]
fn nat_example_serves() {
    if !Lab::skip_unless_root() {
        return;
    }
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/nat.toml"))
            .unwrap();
    // Without this path replaced, lvsd would put its socket in the host's
    // /run/lvsd, outside the lab.
    assert!(
        text.contains("\"/run/lvsd/lvsd.sock\""),
        "config/nat.toml no longer names /run/lvsd/lvsd.sock:\n{text}"
    );
    let text = text.replace("\"/run/lvsd/lvsd.sock\"", "\"lvsd.sock\"");
    let lab = lab("example", 3, &text);
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        if let Ok(b) = curl(&lab, lab.ns("client"), "http://198.19.0.100/") {
            break b;
        }
        assert!(Instant::now() < deadline, "{}", lab.lvsd_log());
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(body.starts_with("rs"), "{body}");
}

/// A bad file: lvsd says which file, line and problem, exits 2, and leaves
/// no trace (no nftables table, no socket).
#[test]
fn bad_config_is_refused_and_touches_nothing() {
    if !Lab::skip_unless_root() {
        return;
    }
    let lab = Lab::nat("badcfg", 1).expect("lab");
    let path = lab.dir.join("bad.toml");
    let text = config(&[(1, 1)]).replace("\"wrr\"", "\"fastest\"");
    std::fs::write(&path, &text).unwrap();
    let bin = lvsd_bin().unwrap();
    let out = lab.exec(
        lab.ns("director"),
        &[bin.to_str().unwrap(), "--config", path.to_str().unwrap()],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let line = text.lines().position(|l| l.contains("fastest")).unwrap() + 1;
    assert!(
        err.contains(&format!("bad.toml:{line}:")) && err.contains("unknown scheduler 'fastest'"),
        "{err}"
    );
    assert!(!nft_tables(&lab).contains("lvsd"), "nftables touched");
    assert!(!lab.dir.join("lvsd.sock").exists());

    // An interface that does not exist is refused before anything is set up.
    std::fs::write(&path, config(&[(1, 1)]).replace("\"int0\"", "\"nope0\"")).unwrap();
    let out = lab.exec(
        lab.ns("director"),
        &[bin.to_str().unwrap(), "--config", path.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope0"));
    assert!(!nft_tables(&lab).contains("lvsd"), "nftables touched");
    assert!(!xdp_attached(&lab, "ext0"), "an XDP program left on ext0");
}

/// SIGHUP re-reads the file through the same path as lvsadm: a good file
/// replaces the rules, a bad one changes nothing and lvsd keeps running.
#[test]
fn sighup_reloads_the_config() {
    if !Lab::skip_unless_root() {
        return;
    }
    let lab = lab("reload", 2, &config(&[(1, 1)]));
    let pid = lab.lvsd().unwrap().0.to_string();
    let cfg_path = lab.dir.join("lvsd.toml");
    assert!(!list(&lab).contains("198.18.1.12"));

    std::fs::write(&cfg_path, config(&[(1, 2), (2, 5)])).unwrap();
    lab.exec_ok(lab.ns("director"), &["kill", "-HUP", &pid])
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !list(&lab).contains("198.18.1.12:8080             Masq    5") {
        assert!(
            Instant::now() < deadline,
            "reload not applied: {}",
            list(&lab)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(list(&lab).contains("198.18.1.11:8080             Masq    2"));

    let good = list(&lab);
    std::fs::write(
        &cfg_path,
        config(&[(1, 1)]).replace("weight = 1", "weight = -1"),
    )
    .unwrap();
    assert!(!lab.lvsd_log().contains("reload refused"));
    lab.exec_ok(lab.ns("director"), &["kill", "-HUP", &pid])
        .unwrap();
    // First the refusal, so the rules are compared after the reload was
    // tried, not before.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !lab.lvsd_log().contains("reload refused") {
        assert!(
            Instant::now() < deadline,
            "no 'reload refused' within 5 s: {}",
            lab.lvsd_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(list(&lab), good, "a bad reload changed the rules");
    assert!(lab.is_running(lab.lvsd().unwrap()));
}

/// Anyone who can open the socket may read; only root may change.
#[test]
fn only_root_may_change() {
    if !Lab::skip_unless_root() {
        return;
    }
    let lab = lab("perm", 1, &config(&[(1, 1)]));
    let as_nobody = |args: &[&str]| lvsadm_as_nobody(&lab, "--clear-groups", args);
    let read = as_nobody(&["-L", "-n"]);
    assert!(read.status.success(), "{read:?}");
    assert!(String::from_utf8_lossy(&read.stdout).contains("198.19.0.100:80"));
    let write = as_nobody(&["-A", "-t", "198.19.0.101:80", "-s", "rr"]);
    assert!(!write.status.success());
    assert!(
        String::from_utf8_lossy(&write.stderr).contains("Permission denied"),
        "{write:?}"
    );
    assert!(!list(&lab).contains("198.19.0.101"));
    // Root may.
    let out = lab.lvsadm(&["-A", "-t", "198.19.0.101:80", "-s", "rr"]);
    assert!(out.status.success(), "{out:?}");
    assert!(list(&lab).contains("198.19.0.101:80 rr"));
}

/// Malformed or invalid requests get an error saying what was wrong, and the
/// rules stay as they were.
#[test]
fn bad_admin_requests_change_nothing() {
    if !Lab::skip_unless_root() {
        return;
    }
    let lab = lab("badreq", 1, &config(&[(1, 1)]));
    let before = list(&lab);
    let s = UnixStream::connect(lab.socket_path()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut ask = |line: &[u8]| -> String {
        w.write_all(line).unwrap();
        w.write_all(b"\n").unwrap();
        let mut answer = String::new();
        r.read_line(&mut answer).unwrap();
        answer
    };
    let a = ask(b"this is not json");
    assert!(
        a.contains("\"malformed\"") && a.contains("malformed request"),
        "{a}"
    );
    let a = ask(br#"{"v":1,"op":{"op":"add_service"}}"#);
    assert!(
        a.contains("\"malformed\"") && a.contains("missing field"),
        "{a}"
    );
    let a = ask(br#"{"v":9,"op":{"op":"clear"}}"#);
    assert!(a.contains("\"version\""), "{a}");
    let a = ask(&[0xff, 0xfe, 0x00, 0x01]);
    assert!(a.contains("\"malformed\""), "{a}");
    // Valid JSON, invalid change: a batch whose last step fails.
    let a = ask(br#"{"v":1,"op":{"op":"batch","ops":[{"op":"clear"},{"op":"delete_service","service":{"protocol":"tcp","addr":"198.19.0.200:80"}}]}}"#);
    assert!(
        a.contains("\"no_service\"") && a.contains("operation 2"),
        "{a}"
    );
    // The connection still works after errors.
    let a = ask(br#"{"v":1,"op":{"op":"version"}}"#);
    assert!(a.contains("\"version\""), "{a}");
    assert_eq!(list(&lab), before);
    // lvsadm's own errors, with ipvsadm's words.
    let out = lab.lvsadm(&[
        "-a",
        "-t",
        "198.19.0.100:80",
        "-r",
        "198.18.1.11:8080",
        "-m",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Destination already exists"));
    let out = lab.lvsadm(&["-D", "-t", "198.19.0.222:80"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("No such service"));
    assert_eq!(list(&lab), before);
}

/// SIGTERM: lvsd exits 0 and removes its nftables table and its socket.
#[test]
fn sigterm_undoes_the_setup() {
    if !Lab::skip_unless_root() {
        return;
    }
    let lab = lab("term", 1, &config(&[(1, 1)]));
    assert!(nft_tables(&lab).contains("table netdev lvsd"));
    for dev in ["ext0", "int0"] {
        assert!(xdp_attached(&lab, dev), "no XDP program on {dev}");
    }
    let status = lab.stop_lvsd().unwrap();
    assert!(status.success(), "{status:?}: {}", lab.lvsd_log());
    assert!(!nft_tables(&lab).contains("lvsd"), "{}", nft_tables(&lab));
    assert!(!lab.socket_path().exists());
    for dev in ["ext0", "int0"] {
        assert!(!xdp_attached(&lab, dev), "XDP program left on {dev}");
    }
}

/// Killed (SIGKILL, no chance to clean up): the XDP programs leave with
/// the process, and a new lvsd starts in the same namespace (the claim on
/// the namespace went with the old one; its nftables table and socket file
/// are taken over) and serves.
#[test]
fn a_killed_lvsd_leaves_no_xdp_and_can_be_replaced() {
    if !Lab::skip_unless_root() {
        return;
    }
    let cfg = config(&[(1, 1)]);
    let lab = lab("kill9", 1, &cfg);
    let first = lab.lvsd().unwrap();
    for dev in ["ext0", "int0"] {
        assert!(xdp_attached(&lab, dev), "no XDP program on {dev}");
    }
    lab.exec_ok(lab.ns("director"), &["kill", "-KILL", &first.0.to_string()])
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while lab.is_running(first) {
        assert!(Instant::now() < deadline, "lvsd survived SIGKILL");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The kernel lets the programs go as it closes the dead process's
    // descriptors, which may finish a moment after the exit is seen.
    let deadline = Instant::now() + Duration::from_secs(5);
    while xdp_attached(&lab, "ext0") || xdp_attached(&lab, "int0") {
        assert!(
            Instant::now() < deadline,
            "an XDP program stayed attached after SIGKILL"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    lab.start_lvsd(&cfg)
        .expect("a new lvsd in the namespace of a killed one");
    assert_ne!(lab.lvsd(), Some(first));
    for dev in ["ext0", "int0"] {
        assert!(xdp_attached(&lab, dev), "no XDP program on {dev}");
    }
    let body = curl(&lab, lab.ns("client"), "http://198.19.0.100/").expect("served");
    assert_eq!(body, "rs1\n");
}

/// While lvsd runs on XDP, traffic that is not its own still reaches the
/// director's kernel: ARP for the director's addresses and TCP to servers
/// of the director's own, from the client's side and from the real
/// servers' side, with the VIP served alongside.
#[test]
fn the_directors_own_traffic_reaches_its_kernel() {
    if !Lab::skip_unless_root() {
        return;
    }
    let lab = lab("owntraffic", 1, &config(&[(1, 1)]));
    let st = lab.daemon_stats();
    assert!(st.backend.starts_with("xdp"), "{st:?}");
    for dev in ["ext0", "int0"] {
        assert!(xdp_attached(&lab, dev), "no XDP program on {dev}");
    }
    let own: Vec<std::net::SocketAddr> = ["198.18.0.1:9090", "198.18.1.1:9090"]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
    lab.spawn_testsrv_in("director", "director", &own, &[], &[])
        .expect("a server in the director");
    for (ns, addr) in [("client", own[0]), ("rs1", own[1])] {
        // Forget the director's MAC, so ARP has to go through as well.
        lab.exec_ok(ns, &["ip", "neigh", "flush", "all"]).unwrap();
        let body = curl(&lab, lab.ns(ns), &format!("http://{addr}/"))
            .unwrap_or_else(|e| panic!("the director's own server at {addr} from {ns}: {e}"));
        assert_eq!(body, "director\n", "{addr} from {ns}");
    }
    let body = curl(&lab, lab.ns("client"), "http://198.19.0.100/").expect("served");
    assert_eq!(body, "rs1\n");
    let st = lab.daemon_stats();
    assert!(st.backend.starts_with("xdp"), "{st:?}");
}

/// `-x` (upper threshold) through lvsadm, the daemon and real traffic: once
/// a real server holds as many connections as its threshold, new
/// connections go to the other one.
#[test]
fn upper_threshold_stops_new_connections() {
    if !Lab::skip_unless_root() {
        return;
    }
    const LIMIT: usize = 2;
    let lab = lab("uthresh", 2, &config(&[(1, 1), (2, 1)]));
    lab.lvsadm_ok(&[
        "-e",
        "-t",
        "198.19.0.100:80",
        "-r",
        "198.18.1.11:8080",
        "-m",
        "-w",
        "1",
        "-x",
        &LIMIT.to_string(),
    ]);
    assert!(
        list(&lab).contains("198.18.1.11:8080             Masq    1"),
        "{}",
        list(&lab)
    );
    // Keep-alive connections, held open, until rs1 has LIMIT of them.
    let mut held = Vec::new();
    let mut on_rs1 = 0;
    for _ in 0..4 * LIMIT {
        if on_rs1 == LIMIT {
            break;
        }
        let (stream, server) = lab.in_ns(lab.ns("client"), || {
            use std::io::Read;
            let mut s = std::net::TcpStream::connect_timeout(
                &"198.19.0.100:80".parse().unwrap(),
                Duration::from_secs(2),
            )
            .expect("connecting to the VIP");
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: vip\r\n\r\n").unwrap();
            let mut answer = Vec::new();
            let mut buf = [0u8; 1024];
            while !answer.ends_with(b"\r\n\r\nrs1\n") && !answer.ends_with(b"\r\n\r\nrs2\n") {
                let n = s.read(&mut buf).expect("an answer on a held connection");
                assert!(n > 0, "the connection closed");
                answer.extend_from_slice(&buf[..n]);
            }
            let server =
                String::from_utf8_lossy(&answer[answer.len() - 4..answer.len() - 1]).into_owned();
            (s, server)
        });
        if server == "rs1" {
            on_rs1 += 1;
        }
        held.push(stream);
    }
    assert_eq!(on_rs1, LIMIT, "rs1 never got {LIMIT} connections");
    let bodies = support::curl_many(&lab, "http://198.19.0.100/", 10);
    assert_eq!(bodies.len(), 10, "{bodies:?}");
    assert!(
        bodies.iter().all(|b| b == "rs2"),
        "rs1 took a new connection at its threshold: {bodies:?}"
    );
    drop(held);
}

/// One lvsd per network namespace: a second one, on the first one's admin
/// socket or on another, stops before it sets anything up, and the first
/// keeps its socket, its nftables table and its XDP programs and still
/// serves and takes changes. A daemon in another namespace pointed at the
/// same socket path stops too, and leaves the file alone.
#[test]
fn a_second_lvsd_changes_nothing() {
    if !Lab::skip_unless_root() {
        return;
    }
    let lab = lab("second", 1, &config(&[(1, 1)]));
    let bin = lvsd_bin().unwrap();
    let first = lab.lvsd().unwrap();
    let cases = [
        (
            "same",
            "director",
            config(&[(1, 1)]),
            "another lvsd is running in this network namespace",
        ),
        (
            "other",
            "director",
            config(&[(1, 1)]).replace("\"lvsd.sock\"", "\"other.sock\""),
            "another lvsd is running in this network namespace",
        ),
        (
            "elsewhere",
            "client",
            config(&[(1, 1)]),
            "another lvsd is already listening on",
        ),
    ];
    for (weight, (name, ns, text, said)) in (2..).zip(cases) {
        let path = lab.dir.join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        let out = lab.exec(
            lab.ns(ns),
            &[bin.to_str().unwrap(), "--config", path.to_str().unwrap()],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains(said), "{name}: {err}");
        assert!(lab.is_running(first), "{name}: {}", lab.lvsd_log());
        assert!(lab.socket_path().exists(), "{name}: socket file removed");
        assert!(!lab.dir.join("other.sock").exists(), "{name}");
        assert!(
            nft_tables(&lab).contains("table netdev lvsd"),
            "{name}: {}",
            nft_tables(&lab)
        );
        for dev in ["ext0", "int0"] {
            assert!(
                xdp_attached(&lab, dev),
                "{name}: XDP program gone from {dev}"
            );
        }
        let w = weight.to_string();
        let mut edit: Vec<&str> = "-e -t 198.19.0.100:80 -r 198.18.1.11:8080 -m -w"
            .split(' ')
            .collect();
        edit.push(&w);
        lab.lvsadm_ok(&edit);
        assert!(
            list(&lab).contains(&format!("Masq    {w}")),
            "{name}: {}",
            list(&lab)
        );
        assert_eq!(
            curl(&lab, "client", "http://198.19.0.100/").unwrap().trim(),
            "rs1",
            "{name}"
        );
    }
    assert!(
        !lab.lvsd_log().contains("ERROR"),
        "the first lvsd logged errors: {}",
        lab.lvsd_log()
    );
}

/// Whether an XDP program is attached to the director's `dev`.
fn xdp_attached(lab: &Lab, dev: &str) -> bool {
    let out = lab
        .exec_ok(
            lab.ns("director"),
            &["ip", "-d", "link", "show", "dev", dev],
        )
        .unwrap();
    out.contains("prog/xdp")
}

/// Where XDP cannot be used (an interface whose MTU is above what fits a
/// UMEM frame, and above what veth's XDP takes), `backend = "auto"` falls
/// back to packet sockets and serves; `backend = "xdp"` refuses to start and
/// says why.
#[test]
fn xdp_unavailable_falls_back_or_fails() {
    if !Lab::skip_unless_root() {
        return;
    }
    let lab = Lab::nat("noxdp", 1).expect("lab");
    lab.spawn_testsrv(1, Some(8080), None).expect("real server");
    lab.exec_ok(
        lab.ns("client"),
        &["ip", "link", "set", "eth0", "mtu", "9000"],
    )
    .unwrap();
    lab.exec_ok(
        lab.ns("director"),
        &["ip", "link", "set", "ext0", "mtu", "9000"],
    )
    .unwrap();
    let auto = config(&[(1, 1)]).replace("shards = 1\n", "");
    lab.start_lvsd(&auto).expect("lvsd");
    let st = lab.daemon_stats();
    assert_eq!(st.backend, "packet", "{st:?}");
    let log = lab.lvsd_log();
    assert!(
        log.contains("XDP backend unavailable") && log.contains("ext0"),
        "{log}"
    );
    for dev in ["ext0", "int0"] {
        assert!(
            !xdp_attached(&lab, dev),
            "a half set-up backend stayed on {dev}"
        );
    }
    let body =
        curl(&lab, lab.ns("client"), "http://198.19.0.100/").expect("served over packet sockets");
    assert_eq!(body.trim(), "rs1");
    assert!(lab.stop_lvsd().unwrap().success());

    let forced = auto.replace("[daemon]\n", "[daemon]\nbackend = \"xdp\"\n");
    let err = lab
        .start_lvsd(&forced)
        .expect_err("lvsd must refuse to start")
        .to_string();
    assert!(err.contains("setting up the XDP backend"), "{err}");
    assert!(!xdp_attached(&lab, "int0"));
}

/// Several XDP shards share each queue's fill ring, which the kernel's
/// generic (skb) XDP did not lock as one until a 2025 fix: with more than
/// one shard lvsd attaches only in the driver. On two-queue macvlan
/// interfaces (no XDP in the driver), `xdp` with two shards refuses to start
/// and says why, `auto` runs on packet sockets, and one shard runs on the
/// generic XDP.
#[test]
fn several_xdp_shards_need_the_drivers_own_xdp() {
    if !Lab::skip_unless_root() {
        return;
    }
    let lab = Lab::nat("xdpgen", 1).expect("lab");
    let dir = lab.ns("director");
    for (dev, on, addr) in [
        ("mv0", "ext0", "198.18.5.1/24"),
        ("mv1", "int0", "198.18.6.1/24"),
    ] {
        let made = lab.exec_ok(
            dir,
            &[
                "ip",
                "link",
                "add",
                dev,
                "numtxqueues",
                "2",
                "numrxqueues",
                "2",
                "link",
                on,
                "type",
                "macvlan",
            ],
        );
        if let Err(e) = &made {
            if e.to_string().contains("Unknown device type") {
                Lab::require_or_skip("this kernel has no macvlan");
                return;
            }
        }
        made.unwrap();
        lab.exec_ok(dir, &["ip", "addr", "add", addr, "dev", dev])
            .unwrap();
        lab.exec_ok(dir, &["ip", "link", "set", dev, "up"]).unwrap();
    }
    let cfg = |backend: &str, shards: u32| {
        format!(
            "[daemon]\ninterfaces = [\"mv0\", \"mv1\"]\nbackend = \"{backend}\"\nshards = {shards}\nadmin_socket = \"lvsd.sock\"\nsocket_mode = \"0666\"\nbuffers = 128\n\n[[service]]\nprotocol = \"udp\"\naddress = \"198.19.0.200:53\"\nscheduler = \"rr\"\n\n  [[service.real_server]]\n  address = \"198.18.6.10:53\"\n  method = \"nat\"\n"
        )
    };
    let err = lab
        .start_lvsd(&cfg("xdp", 2))
        .expect_err("two XDP shards on generic XDP must be refused")
        .to_string();
    assert!(
        err.contains("mv0") && err.contains("several shards need the driver's own XDP"),
        "{err}"
    );
    assert!(!xdp_attached(&lab, "mv0") && !xdp_attached(&lab, "mv1"));

    lab.start_lvsd(&cfg("auto", 2))
        .expect("lvsd on packet sockets");
    let st = lab.daemon_stats();
    assert_eq!(
        (st.backend.as_str(), st.shards.len()),
        ("packet", 2),
        "{st:?}"
    );
    let log = lab.lvsd_log();
    assert!(log.contains("XDP backend unavailable"), "{log}");
    assert!(lab.stop_lvsd().unwrap().success());

    lab.start_lvsd(&cfg("xdp", 1))
        .expect("one shard on generic XDP");
    let st = lab.daemon_stats();
    assert!(st.backend.starts_with("xdp"), "{st:?}");
    assert!(xdp_attached(&lab, "mv0"), "the program is on mv0");
    assert!(lab.stop_lvsd().unwrap().success());
}

/// XDP runs a shard per receive queue: on single-queue interfaces `auto`
/// keeps the two shards asked for on packet sockets and says why, `xdp` runs
/// one shard; on four-queue interfaces two shards serve two queues each.
#[test]
fn xdp_shards_follow_the_receive_queues() {
    if !Lab::skip_unless_root() {
        return;
    }
    let two = config(&[(1, 1)]).replace("shards = 1", "shards = 2");
    let lab = lab("xdpq1", 1, &two);
    let st = lab.daemon_stats();
    assert_eq!(
        (st.backend.as_str(), st.shards.len()),
        ("packet", 2),
        "{st:?}"
    );
    let log = lab.lvsd_log();
    assert!(
        log.contains(
            "XDP backend not used: 2 shards asked for, the interfaces' receive queues allow 1"
        ),
        "{log}"
    );
    assert!(lab.stop_lvsd().unwrap().success());
    lab.start_lvsd(&two.replace("[daemon]\n", "[daemon]\nbackend = \"xdp\"\n"))
        .expect("lvsd");
    let st = lab.daemon_stats();
    assert_eq!(st.shards.len(), 1, "{st:?}");
    assert_eq!(st.backend, "xdp (copy mode, 2 AF_XDP sockets)");
    assert!(lab.lvsd_log().contains("XDP backend: 1 shard(s)"));
    let body = curl(&lab, lab.ns("client"), "http://198.19.0.100/").expect("served");
    assert_eq!(body.trim(), "rs1");
    drop(lab);

    let lab = Lab::nat_multiqueue("xdpq4", 1, 4).expect("lab");
    lab.spawn_testsrv(1, Some(8080), None).expect("real server");
    lab.start_lvsd(&two).expect("lvsd");
    let st = lab.daemon_stats();
    assert_eq!(st.shards.len(), 2, "{st:?}");
    assert_eq!(st.backend, "xdp (copy mode, 16 AF_XDP sockets)");
    for _ in 0..20 {
        let body = curl(&lab, lab.ns("client"), "http://198.19.0.100/").expect("served");
        assert_eq!(body.trim(), "rs1");
    }
    let st = lab.daemon_stats();
    assert_eq!(st.drops("no_conn"), 0, "{st:?}");
    let rx: u64 = st.shards.iter().map(|s| s.rx_xdp_frames).sum();
    assert!(rx >= 20 * 5, "{st:?}");
}

/// A flood of malformed frames: every one counted as a drop under the
/// reason for its kind of damage, lvsd keeps running and forwarding.
#[test]
fn malformed_flood_is_counted_and_survived() {
    if !Lab::skip_unless_root() {
        return;
    }
    let lab = lab("flood", 1, &config(&[(1, 1)]));
    let mac = lab.mac(lab.ns("director"), "ext0").unwrap();
    let dst: Vec<u8> = mac
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    let reasons = |st: &lvsd_proto::DaemonStats| -> BTreeMap<String, u64> {
        st.shards
            .iter()
            .flat_map(|s| s.drops.iter())
            .fold(BTreeMap::new(), |mut m, (r, n)| {
                *m.entry(r.clone()).or_insert(0) += n;
                m
            })
    };
    let before = reasons(&lab.daemon_stats());
    const PER_KIND: usize = 2000;
    let frames = malformed_frames(&dst);
    // How many frames of each kind went out.
    let sent_per_kind = lab.in_ns(lab.ns("client"), || {
        let fd = raw_socket("eth0");
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut sent = vec![0u64; frames.len()];
        'outer: for _ in 0..PER_KIND {
            for ((_, f), n) in frames.iter().zip(sent.iter_mut()) {
                if Instant::now() > deadline {
                    break 'outer;
                }
                // SAFETY: fd is a bound packet socket; f is a valid buffer.
                let rc = unsafe { libc::send(fd, f.as_ptr().cast(), f.len(), 0) };
                if rc == f.len() as isize {
                    *n += 1;
                } else {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }
        // SAFETY: closing our own descriptor.
        unsafe { libc::close(fd) };
        sent
    });
    let sent: u64 = sent_per_kind.iter().sum();
    assert!(
        sent > (frames.len() * PER_KIND / 2) as u64,
        "sent only {sent}"
    );
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for ((reason, _), n) in frames.iter().zip(&sent_per_kind) {
        *want.entry((*reason).to_owned()).or_insert(0) += n;
    }
    // Wait (bounded) until every frame sent has been counted somewhere.
    let deadline = Instant::now() + Duration::from_secs(10);
    let delta = loop {
        assert!(
            lab.is_running(lab.lvsd().unwrap()),
            "lvsd died: {}",
            lab.lvsd_log()
        );
        let after = reasons(&lab.daemon_stats());
        let delta: BTreeMap<String, u64> = after
            .iter()
            .map(|(r, n)| {
                (
                    r.clone(),
                    n.saturating_sub(before.get(r).copied().unwrap_or(0)),
                )
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        if delta.values().sum::<u64>() >= sent || Instant::now() >= deadline {
            break delta;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        delta, want,
        "drops by reason (the change during the flood) against the frames sent of each kind"
    );
    // Still forwarding.
    let body = curl(&lab, lab.ns("client"), "http://198.19.0.100/").unwrap();
    assert_eq!(body, "rs1\n");
}

/// A packet socket bound to `ifname` in the calling thread's namespace.
fn raw_socket(ifname: &str) -> i32 {
    let name = std::ffi::CString::new(ifname).unwrap();
    // SAFETY: plain libc calls with valid arguments; results are checked.
    unsafe {
        let fd = libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW,
            i32::from(0x0003u16.to_be()),
        );
        assert!(
            fd >= 0,
            "packet socket: {}",
            std::io::Error::last_os_error()
        );
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = 17;
        sll.sll_protocol = 0x0003u16.to_be();
        sll.sll_ifindex = i32::try_from(libc::if_nametoindex(name.as_ptr())).unwrap();
        let rc = libc::bind(
            fd,
            (&sll as *const libc::sockaddr_ll).cast(),
            u32::try_from(std::mem::size_of::<libc::sockaddr_ll>()).unwrap(),
        );
        assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
        fd
    }
}

fn ip_checksum(h: &[u8]) -> u16 {
    let mut sum: u32 = h
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !u16::try_from(sum).unwrap()
}

/// One frame of each kind of damage, all addressed to the VIP's service,
/// with the drop reason lvsd counts it under.
fn malformed_frames(dst_mac: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let eth = |payload: &[u8]| {
        let mut f = dst_mac.to_vec();
        f.extend([0x02, 0x00, 0xc6, 0x12, 0x00, 0x02, 0x08, 0x00]);
        f.extend_from_slice(payload);
        f
    };
    let ip = |ihl_byte: u8, total: u16, frag: u16, ttl: u8, proto: u8, body: &[u8], fix: bool| {
        let mut h = vec![ihl_byte, 0];
        h.extend(total.to_be_bytes());
        h.extend([0, 1]);
        h.extend(frag.to_be_bytes());
        h.extend([ttl, proto, 0, 0, 198, 18, 0, 2, 198, 19, 0, 100]);
        if fix {
            let c = ip_checksum(&h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
        }
        h.extend_from_slice(body);
        h
    };
    let tcp_syn = {
        let mut t = vec![
            0x9c, 0x40, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
        ];
        t[16] = 0x12;
        t
    };
    vec![
        // Shorter than an IPv4 header.
        ("truncated", eth(&[0x45, 0, 0, 20, 0, 0])),
        // IHL below 5.
        ("malformed", eth(&ip(0x44, 40, 0, 64, 6, &tcp_syn, true))),
        // Total length beyond the frame.
        ("truncated", eth(&ip(0x45, 1400, 0, 64, 6, &tcp_syn, true))),
        // Bad header checksum.
        (
            "bad_checksum",
            eth(&ip(0x45, 40, 0, 64, 6, &tcp_syn, false)),
        ),
        // A fragment.
        (
            "fragment",
            eth(&ip(0x45, 40, 0x2000, 64, 6, &tcp_syn, true)),
        ),
        // TTL 1.
        ("ttl_exceeded", eth(&ip(0x45, 40, 0, 1, 6, &tcp_syn, true))),
        // A TCP header cut short.
        (
            "malformed",
            eth(&ip(0x45, 28, 0, 64, 6, &tcp_syn[..8], true)),
        ),
    ]
}

/// Members of the configured admin group may change, as root may; the
/// socket is group-owned by it. Uses Debian's existing `adm` group (gid 4)
/// so the test adds nothing to the host.
#[test]
fn admin_group_may_change() {
    if !Lab::skip_unless_root() {
        return;
    }
    let Some(gid) = std::fs::read_to_string("/etc/group").ok().and_then(|g| {
        g.lines()
            .find(|l| l.starts_with("adm:"))
            .and_then(|l| l.split(':').nth(2).map(str::to_owned))
    }) else {
        Lab::require_or_skip("no adm group in /etc/group");
        return;
    };
    let cfg = config(&[(1, 1)]).replace(
        "socket_mode = \"0666\"",
        "socket_mode = \"0660\"\nadmin_group = \"adm\"",
    );
    let lab = lab("group", 1, &cfg);
    let run = |groups: &str, args: &[&str]| lvsadm_as_nobody(&lab, groups, args);
    let in_group = format!("--groups={gid}");
    let out = run(&in_group, &["-A", "-t", "198.19.0.101:80", "-s", "rr"]);
    assert!(out.status.success(), "a member of adm may change: {out:?}");
    assert!(list(&lab).contains("198.19.0.101:80 rr"));
    // Not a member: the socket's mode keeps it out altogether.
    let out = run("--clear-groups", &["-L", "-n"]);
    assert!(!out.status.success(), "{out:?}");
}

/// A real server that does not answer ARP is asked again and counted as a
/// failure; the one that answers is resolved.
#[test]
fn unanswered_neighbours_are_counted() {
    if !Lab::skip_unless_root() {
        return;
    }
    let cfg = config(&[(1, 1)])
        + "\n  [[service.real_server]]\n  address = \"198.18.1.99:8080\"\n  method = \"nat\"\n";
    let lab = lab("neigh", 1, &cfg);
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        let n = lab.daemon_stats().neighbors;
        if n.failures >= 1 {
            assert_eq!(n.resolved, 1, "{n:?}");
            assert!(n.requests > n.replies, "{n:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no unanswered request counted: {n:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = String::from_utf8_lossy(&lab.lvsadm(&["--status"]).stdout).into_owned();
    assert!(status.contains("neighbours: 1 resolved"), "{status}");
}

/// A real server that answers no ARP is left out of scheduling once its
/// requests go unanswered: under lc it would otherwise (no connections,
/// so always the least loaded) be picked for every new connection and each
/// one dropped as no_neighbor.
#[test]
fn unreachable_real_servers_get_no_connections() {
    if !Lab::skip_unless_root() {
        return;
    }
    let cfg = config(&[(1, 1)]).replace("\"wrr\"", "\"lc\"")
        + "\n  [[service.real_server]]\n  address = \"198.18.1.99:8080\"\n  method = \"nat\"\n";
    let lab = lab("unreach", 1, &cfg);
    // Three unanswered requests (one a second) mark it.
    let deadline = Instant::now() + Duration::from_secs(8);
    while lab.daemon_stats().neighbors.failures < 3 {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            lab.daemon_stats().neighbors
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // No wait for the mark itself: the resolver marks a server after its
    // third unanswered request, at the end of that round, and counts the
    // third failure only when it asks a fourth time, a second later (see
    // lvsd/src/io/neigh.rs); so the mark is already set here.
    let before = lab.daemon_stats().drops("no_neighbor");
    let bodies = support::curl_many(&lab, "http://198.19.0.100/", 20);
    assert_eq!(bodies.len(), 20, "{bodies:?}");
    assert!(bodies.iter().all(|b| b == "rs1"), "{bodies:?}");
    assert_eq!(lab.daemon_stats().drops("no_neighbor"), before);
}

/// Each shard thread of `lab`'s lvsd: its number, allowed CPUs, nice value
/// and scheduling policy (from /proc), sorted by number.
fn shard_threads(lab: &Lab) -> Vec<(String, String, i64, i64)> {
    let pid = lab.lvsd().unwrap().0;
    let mut seen = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let Some(shard) = name.trim().strip_prefix("lvsd-shard") else {
            continue;
        };
        let status = std::fs::read_to_string(dir.join("status")).unwrap();
        let cpus = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap()
            .trim()
            .to_string();
        let stat = dir.join("stat");
        let (nice, policy) = (stat_field(&stat, 19), stat_field(&stat, 41));
        seen.push((shard.to_string(), cpus, nice, policy));
    }
    seen.sort();
    seen
}

/// Field `n` (numbered as in proc(5): after "(comm)" come fields 3
/// onwards) of a /proc/.../stat file; 19 is the nice value, 41 the policy.
fn stat_field(path: &Path, n: usize) -> i64 {
    let stat = std::fs::read_to_string(path).unwrap();
    stat[stat.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .nth(n - 3)
        .unwrap()
        .parse()
        .unwrap()
}

const SCHED_OTHER: i64 = 0;
const SCHED_BATCH: i64 = 3;

/// `cpus` pins each shard thread to its CPU; `shard_nice` and
/// `shard_policy` set how the kernel schedules it.
#[test]
fn shards_are_pinned() {
    if !Lab::skip_unless_root() {
        return;
    }
    let cfg = config(&[(1, 1)]).replace(
        "shards = 1",
        "shards = 2\ncpus = [1, 0]\nshard_nice = 5\nshard_policy = \"normal\"",
    );
    let lab = lab("pin", 1, &cfg);
    assert_eq!(
        shard_threads(&lab),
        [
            ("0".to_string(), "1".to_string(), 5, SCHED_OTHER),
            ("1".to_string(), "0".to_string(), 5, SCHED_OTHER)
        ],
        "{}",
        lab.lvsd_log()
    );
}

/// By default the shards run at nice -20 under SCHED_BATCH (ahead of the
/// host's processes, without preempting them on every frame), not pinned;
/// the daemon's other threads keep its own nice value.
#[test]
fn shards_run_ahead_by_default() {
    if !Lab::skip_unless_root() {
        return;
    }
    let cfg = config(&[(1, 1)]).replace("shards = 1", "shards = 2");
    let lab = lab("prio", 1, &cfg);
    // lvsd inherits this process's CPUs and nice value.
    let own = std::fs::read_to_string("/proc/self/status").unwrap();
    let all = own
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim();
    let shards = shard_threads(&lab);
    assert_eq!(shards.len(), 2, "{}", lab.lvsd_log());
    for (_, cpus, nice, policy) in &shards {
        assert_eq!((cpus.as_str(), *nice, *policy), (all, -20, SCHED_BATCH));
    }
    let pid = lab.lvsd().unwrap().0;
    assert_eq!(
        stat_field(Path::new(&format!("/proc/{pid}/stat")), 19),
        stat_field(Path::new("/proc/self/stat"), 19)
    );
}

/// Without CAP_SYS_NICE lvsd cannot raise its shards' priority: it says so
/// and leaves them as they were, policy included, and forwards as usual.
#[test]
fn shards_without_cap_sys_nice_stay_as_they_were() {
    if !Lab::skip_unless_root() {
        return;
    }
    let cfg = config(&[(1, 1)]).replace("shards = 1", "shards = 2");
    let no_cap = [
        "setpriv",
        "--inh-caps=-sys_nice",
        "--bounding-set=-sys_nice",
        "--",
    ];
    let lab = lab_under(&no_cap, "nocap", 1, &cfg);
    let own_nice = stat_field(Path::new("/proc/self/stat"), 19);
    let shards = shard_threads(&lab);
    assert_eq!(shards.len(), 2, "{}", lab.lvsd_log());
    for (_, _, nice, policy) in &shards {
        assert_eq!(
            (*nice, *policy),
            (own_nice, SCHED_OTHER),
            "{}",
            lab.lvsd_log()
        );
    }
    assert!(
        lab.lvsd_log().contains("cannot set nice value -20"),
        "{}",
        lab.lvsd_log()
    );
    let body = curl(&lab, lab.ns("client"), "http://198.19.0.100/").expect("served");
    assert!(!body.is_empty());
}

/// Runs lvsadm against the lab's lvsd as user and group `nobody`, with the
/// supplementary groups `groups` gives setpriv (`--clear-groups`,
/// `--groups=N`). The lab's directory is opened up so nobody can reach the
/// socket at all; the socket's own mode still applies.
fn lvsadm_as_nobody(lab: &Lab, groups: &str, args: &[&str]) -> std::process::Output {
    std::fs::set_permissions(
        &lab.dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mut c = std::process::Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", groups])
        .arg(support::lvsadm_bin().unwrap())
        .arg("--socket")
        .arg(lab.socket_path())
        .args(args);
    support::run_bounded(c, support::EXEC_TIMEOUT).unwrap()
}
