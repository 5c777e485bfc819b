//! The lvsadm binary against a fake lvsd: a Unix socket in a temporary
//! directory that answers with canned responses and records the requests.

use lvsd_proto::{
    read_message, write_message, DestInfo, DestSpec, ErrorKind, Method, Op, Protocol, Rates,
    Request, Response, ServiceInfo, ServiceKey, ServiceSpec, Snapshot, Stats,
};
use std::io::{BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A fresh directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("lvsadm-cli-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How long the fake daemon waits for lvsadm to connect or to send, and how
/// long lvsadm may run.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Listens on `dir/lvsd.sock`; answers one connection with `answers`, one
/// per request, and hands back the requests it got. Bounded: it panics (and
/// so does `join()` on its handle) if lvsadm does not connect, or does not
/// send a request, within [`TIMEOUT`].
fn fake_lvsd(dir: &Path, answers: Vec<Response>) -> (PathBuf, JoinHandle<Vec<Request>>) {
    let path = dir.join("lvsd.sock");
    let listener = UnixListener::bind(&path).unwrap();
    listener.set_nonblocking(true).unwrap();
    let handle = std::thread::spawn(move || {
        let deadline = Instant::now() + TIMEOUT;
        let stream = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(
                        Instant::now() < deadline,
                        "lvsadm did not connect within {TIMEOUT:?}"
                    );
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        stream.set_nonblocking(false).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(TIMEOUT)).unwrap();
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        let mut got = Vec::new();
        for answer in answers {
            let request: Request = read_message(&mut reader).unwrap();
            got.push(request);
            write_message(&mut writer, &answer).unwrap();
        }
        got
    });
    (path, handle)
}

fn lvsadm(args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lvsadm"));
    cmd.args(args)
        .env_remove("LVSD_SOCKET")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    // Bounded: the pipes are read on their own threads, and lvsadm is
    // killed if it runs longer than TIMEOUT.
    let pipe = |p: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = p {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = pipe(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = pipe(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    // lvsadm may exit without reading its input (a broken pipe is fine).
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("lvsadm {args:?} still running after {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn web_key() -> ServiceKey {
    ServiceKey {
        protocol: Protocol::Tcp,
        addr: "198.19.0.100:80".parse().unwrap(),
    }
}

fn snapshot() -> Snapshot {
    let dest = |addr: &str, weight, active, inact| DestInfo {
        spec: DestSpec {
            addr: addr.parse().unwrap(),
            weight,
            method: Method::Nat,
            u_threshold: 0,
            l_threshold: 0,
        },
        configured: None,
        active_conns: active,
        inact_conns: inact,
        persist_conns: 0,
        stats: Stats::default(),
        rates: Rates::default(),
    };
    Snapshot {
        conn_table_size: 4096,
        services: vec![ServiceInfo {
            spec: ServiceSpec {
                key: web_key(),
                scheduler: "wrr".into(),
                persistent: None,
            },
            stats: Stats::default(),
            rates: Rates::default(),
            dests: vec![
                dest("198.18.1.12:8080", 1, 2, 30),
                dest("198.18.1.11:8080", 3, 4, 50),
            ],
        }],
    }
}

#[test]
fn list_prints_ipvsadm_format() {
    let dir = TempDir::new();
    let (sock, server) = fake_lvsd(dir.path(), vec![Response::Services(snapshot())]);
    let out = lvsadm(&["-Ln", "--socket", sock.to_str().unwrap()], "", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  198.19.0.100:80 wrr
  -> 198.18.1.11:8080             Masq    3      4          50        
  -> 198.18.1.12:8080             Masq    1      2          30        
"
    );
    assert_eq!(text(&out.stderr), "");
    let got = server.join().unwrap();
    assert_eq!(got, vec![Request::new(Op::List { service: None })]);
}

#[test]
fn refused_add_prints_ipvsadm_message_and_exits_255() {
    let dir = TempDir::new();
    let (sock, server) = fake_lvsd(
        dir.path(),
        vec![Response::Error {
            kind: ErrorKind::ServiceExists,
            message: "tcp 198.19.0.100:80 exists".into(),
        }],
    );
    // LVSD_SOCKET is honoured when --socket is absent.
    let out = lvsadm(
        &["-A", "-t", "198.19.0.100:80", "-s", "wrr"],
        "",
        &[("LVSD_SOCKET", sock.to_str().unwrap())],
    );
    assert_eq!(
        out.status.code(),
        Some(255),
        "a refused change exits 255, as ipvsadm"
    );
    assert_eq!(text(&out.stdout), "");
    assert_eq!(text(&out.stderr), "Service already exists\n");
    let got = server.join().unwrap();
    assert_eq!(
        got,
        vec![Request::new(Op::AddService {
            service: ServiceSpec {
                key: web_key(),
                scheduler: "wrr".into(),
                persistent: None,
            }
        })]
    );
}

#[test]
fn restore_sends_one_batch() {
    let dir = TempDir::new();
    let (sock, server) = fake_lvsd(dir.path(), vec![Response::Ok]);
    let rules = "-A -t 198.19.0.100:80 -s wrr\n-a -t 198.19.0.100:80 -r 198.18.1.11:8080 -m -w 3\n";
    let out = lvsadm(&["-R", "--socket", sock.to_str().unwrap()], rules, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let got = server.join().unwrap();
    assert_eq!(got.len(), 1);
    match &got[0].op {
        Op::Batch { ops } => {
            assert_eq!(ops.len(), 2);
            assert!(matches!(ops[1], Op::AddDest { .. }));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unreachable_daemon_exits_1() {
    let dir = TempDir::new();
    let sock = dir.path().join("nobody.sock");
    let out = lvsadm(&["-L", "-n", "--socket", sock.to_str().unwrap()], "", &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "lvsadm: cannot reach lvsd at {}: ",
            sock.display()
        )),
        "{err}"
    );
    assert!(err.trim_end().ends_with("(is lvsd running?)"), "{err}");
}

#[test]
fn bad_command_line_exits_2_without_connecting() {
    let dir = TempDir::new();
    let sock = dir.path().join("nobody.sock");
    let out = lvsadm(
        &[
            "-a",
            "-t",
            "198.19.0.100:80",
            "-r",
            "198.18.1.11",
            "-w",
            "70000",
        ],
        "",
        &[("LVSD_SOCKET", sock.to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stderr), "illegal weight specified\n");
    let out = lvsadm(&["-L", "-S"], "", &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stderr), "multiple commands specified\n");
}

#[test]
fn host_option_runs_ssh_with_quoted_arguments() {
    let dir = TempDir::new();
    // A stand-in ssh that shows its arguments and exits 7.
    let ssh = dir.path().join("ssh");
    std::fs::write(
        &ssh,
        "#!/bin/sh\nfor a in \"$@\"; do echo \"[$a]\"; done\nexit 7\n",
    )
    .unwrap();
    std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = lvsadm(
        &[
            "-A",
            "-H",
            "root@lb1",
            "-t",
            "[2001:db8::1]:80",
            "-s",
            "wrr",
        ],
        "",
        &[("PATH", &path)],
    );
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "[root@lb1]\n[lvsadm]\n[-A]\n[-t]\n['[2001:db8::1]:80']\n[-s]\n[wrr]\n"
    );
    // A bad command line fails here, before any ssh.
    let out = lvsadm(&["-H", "root@lb1", "-A"], "", &[("PATH", &path)]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stdout), "");
}
