//! `lvs-testsrv`: a tiny real server for the namespace tests.
//!
//! ```text
//! lvs-testsrv --name rs1 --http 198.18.1.11:8080 --udp 198.18.1.11:5353
//! ```
//!
//! Each `--http` and `--udp` listener is optional and may be repeated. An
//! address may be IPv4 or IPv6 (`[fd00:198:18:1::11]:8080`, `[::]:80`); an
//! IPv6 listener is IPv6-only (`IPV6_V6ONLY`), so `0.0.0.0:80` and `[::]:80`
//! can be bound side by side. `--bind-any` sets `IP_FREEBIND` /
//! `IPV6_FREEBIND` on every listener, so it may bind an address (a VIP) that
//! is not (yet) one of the namespace's own.
//!
//! - HTTP/1.1: every request gets `200 OK` with the body `<name>\n` and a
//!   `Content-Length`. Keep-alive is the HTTP/1.1 default and honoured, as is
//!   `Connection: close` (and HTTP/1.0's keep-alive opt-in). A response also
//!   carries `X-Server: <name>` and `X-Client: <peer ip:port>`, so a test can
//!   see the source address the real server saw, and `X-Received: <n>`, the
//!   number of request-body bytes it read (so an upload, `curl -T`, can be
//!   checked). A `GET /bytes/<n>` is answered with a body of `n` bytes (at
//!   most [`MAX_BYTES`]) instead of the name, for large responses. One thread
//!   per connection, at most [`MAX_CONNS`] at once; further clients wait in
//!   the backlog. `Expect: 100-continue` is answered with `100 Continue`.
//! - UDP: each datagram is answered with `<name> ` followed by its bytes.
//!
//! Prints `ready` on stdout once every listener is bound, and exits with
//! status 0 on SIGTERM, SIGINT or SIGHUP.

use nix::sys::signal::{SigSet, Signal};
use nix::sys::socket::SockaddrStorage;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::ExitCode;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

/// Most HTTP connections served at once.
const MAX_CONNS: usize = 512;
/// Largest request head (request line and headers) accepted.
const MAX_HEAD: usize = 64 * 1024;
/// A keep-alive connection idle for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A response that cannot be written within this time ends the connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Stack size of the per-connection and per-socket threads.
const STACK: usize = 128 * 1024;
/// The largest body `GET /bytes/<n>` sends.
const MAX_BYTES: usize = 64 * 1024 * 1024;

const USAGE: &str = "usage: lvs-testsrv [--name NAME] [--bind-any] [--http ADDR:PORT]... \
                     [--udp ADDR:PORT]...";

struct Args {
    name: String,
    http: Vec<SocketAddr>,
    udp: Vec<SocketAddr>,
    bind_any: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        name: "testsrv".to_owned(),
        http: Vec::new(),
        udp: Vec::new(),
        bind_any: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        if flag == "--bind-any" {
            args.bind_any = true;
            continue;
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let addr = || {
            value
                .parse::<SocketAddr>()
                .map_err(|e| format!("{flag} {value}: {e}"))
        };
        match flag.as_str() {
            "--name" => args.name = value.clone(),
            "--http" => args.http.push(addr()?),
            "--udp" => args.udp.push(addr()?),
            _ => return Err(format!("unknown option {flag}\n{USAGE}")),
        }
    }
    if args.http.is_empty() && args.udp.is_empty() {
        return Err(format!("no listener given\n{USAGE}"));
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("lvs-testsrv: {e}");
            return ExitCode::from(2);
        }
    };

    // Block the termination signals before any thread starts, so every
    // thread inherits the mask and only the main thread's sigwait sees them.
    let mut signals = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        signals.add(s);
    }
    if let Err(e) = signals.thread_block() {
        eprintln!("lvs-testsrv: blocking signals: {e}");
        return ExitCode::FAILURE;
    }

    let name: Arc<str> = Arc::from(args.name.as_str());
    let slots = Arc::new(Slots::new(MAX_CONNS));
    for addr in &args.http {
        let listener = match bind_tcp(*addr, args.bind_any) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("lvs-testsrv: bind tcp {addr}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let (name, slots) = (name.clone(), slots.clone());
        if !spawn(format!("http {addr}"), move || {
            serve_http(listener, name, slots)
        }) {
            return ExitCode::FAILURE;
        }
    }
    for addr in &args.udp {
        let socket = match bind_udp(*addr, args.bind_any) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("lvs-testsrv: bind udp {addr}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let name = name.clone();
        if !spawn(format!("udp {addr}"), move || serve_udp(socket, name)) {
            return ExitCode::FAILURE;
        }
    }

    let mut out = io::stdout().lock();
    if writeln!(out, "ready").and_then(|()| out.flush()).is_err() {
        return ExitCode::FAILURE;
    }
    drop(out);

    match signals.wait() {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lvs-testsrv: sigwait: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A socket of `kind` bound to `addr`: IPv6-only for an IPv6 address, with
/// `SO_REUSEADDR` (as std's listeners have it), and with `IP_FREEBIND` /
/// `IPV6_FREEBIND` when `bind_any`.
fn bound_socket(addr: SocketAddr, kind: libc::c_int, bind_any: bool) -> io::Result<OwnedFd> {
    let family = if addr.is_ipv6() {
        libc::AF_INET6
    } else {
        libc::AF_INET
    };
    // SAFETY: socket() has no memory-safety preconditions.
    let fd = unsafe { libc::socket(family, kind | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let set = |level: libc::c_int, opt: libc::c_int| -> io::Result<()> {
        let one: libc::c_int = 1;
        // SAFETY: the option value is a live c_int of the size given.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                level,
                opt,
                std::ptr::addr_of!(one).cast(),
                libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).expect("small"),
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    set(libc::SOL_SOCKET, libc::SO_REUSEADDR)?;
    if addr.is_ipv6() {
        set(libc::IPPROTO_IPV6, libc::IPV6_V6ONLY)?;
        if bind_any {
            set(libc::IPPROTO_IPV6, libc::IPV6_FREEBIND)?;
        }
    } else if bind_any {
        set(libc::IPPROTO_IP, libc::IP_FREEBIND)?;
    }
    let sa = SockaddrStorage::from(addr);
    nix::sys::socket::bind(fd.as_raw_fd(), &sa).map_err(io::Error::from)?;
    Ok(fd)
}

fn bind_tcp(addr: SocketAddr, bind_any: bool) -> io::Result<TcpListener> {
    let fd = bound_socket(addr, libc::SOCK_STREAM, bind_any)?;
    // SAFETY: listen() on a descriptor we own.
    if unsafe { libc::listen(fd.as_raw_fd(), 1024) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(TcpListener::from(fd))
}

fn bind_udp(addr: SocketAddr, bind_any: bool) -> io::Result<UdpSocket> {
    bound_socket(addr, libc::SOCK_DGRAM, bind_any).map(UdpSocket::from)
}

fn spawn(name: String, f: impl FnOnce() + Send + 'static) -> bool {
    match thread::Builder::new().name(name).stack_size(STACK).spawn(f) {
        Ok(_) => true,
        Err(e) => {
            eprintln!("lvs-testsrv: spawning a thread: {e}");
            false
        }
    }
}

/// A counting semaphore bounding the number of connection threads.
struct Slots {
    free: Mutex<usize>,
    cond: Condvar,
}

impl Slots {
    fn new(n: usize) -> Self {
        Slots {
            free: Mutex::new(n),
            cond: Condvar::new(),
        }
    }

    fn acquire(&self) {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            free = self.cond.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
    }

    fn release(&self) {
        *self.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.cond.notify_one();
    }
}

/// Gives a slot back when a connection thread ends, however it ends.
struct SlotGuard(Arc<Slots>);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.0.release();
    }
}

fn serve_http(listener: TcpListener, name: Arc<str>, slots: Arc<Slots>) {
    loop {
        slots.acquire();
        let guard = SlotGuard(slots.clone());
        let (stream, peer) = match listener.accept() {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                eprintln!("lvs-testsrv: accept: {e}");
                drop(guard);
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let name = name.clone();
        // If the spawn fails the closure, and with it the guard, is dropped.
        spawn(format!("conn {peer}"), move || {
            let _guard = guard;
            if let Err(e) = serve_conn(stream, peer, &name) {
                if !quiet_error(&e) {
                    eprintln!("lvs-testsrv: {peer}: {e}");
                }
            }
        });
    }
}

/// Errors that are a normal end of a connection from a test's point of view.
fn quiet_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::TimedOut
    )
}

/// What the server needs to know about one request.
struct Head {
    keep_alive: bool,
    head_only: bool,
    body: Body,
    /// The client waits for `100 Continue` before sending the body.
    expect_continue: bool,
    /// `GET /bytes/<n>`: answer with `n` bytes.
    bytes: Option<usize>,
}

enum Body {
    Length(usize),
    /// A body whose end we do not look for (chunked): answer, then close.
    Unknown,
}

fn serve_conn(mut stream: TcpStream, peer: SocketAddr, name: &str) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; 16 * 1024];
    let body = format!("{name}\n");
    loop {
        // Read until a complete head is buffered (pipelined requests may
        // already be there).
        let head_len = loop {
            if let Some(end) = find_head_end(&buf) {
                break end;
            }
            if buf.len() > MAX_HEAD {
                stream.write_all(
                    b"HTTP/1.1 431 Request Header Fields Too Large\r\n\
                      Content-Length: 0\r\nConnection: close\r\n\r\n",
                )?;
                return Ok(());
            }
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                return Ok(()); // the client closed between requests
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let Some(head) = parse_head(&buf[..head_len]) else {
            stream.write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )?;
            return Ok(());
        };
        buf.drain(..head_len);
        if head.expect_continue && buf.is_empty() {
            stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }

        // Skip (and count) the request body, if any.
        let mut received = 0usize;
        let keep_alive = match head.body {
            Body::Length(mut left) => {
                let have = left.min(buf.len());
                buf.drain(..have);
                left -= have;
                received += have;
                while left > 0 {
                    let n = stream.read(&mut chunk[..left.min(16 * 1024)])?;
                    if n == 0 {
                        return Ok(());
                    }
                    left -= n;
                    received += n;
                }
                head.keep_alive
            }
            Body::Unknown => false,
        };

        let length = head.bytes.unwrap_or(body.len());
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {length}\r\n\
             X-Server: {name}\r\nX-Client: {peer}\r\nX-Received: {received}\r\n{}\r\n",
            if keep_alive {
                "Connection: keep-alive\r\n"
            } else {
                "Connection: close\r\n"
            },
        );
        stream.write_all(response.as_bytes())?;
        if !head.head_only {
            match head.bytes {
                None => stream.write_all(body.as_bytes())?,
                Some(mut left) => {
                    let fill = [b'x'; 16 * 1024];
                    while left > 0 {
                        let n = left.min(fill.len());
                        stream.write_all(&fill[..n])?;
                        left -= n;
                    }
                }
            }
        }
        if !keep_alive {
            // Close after the response; reset the rest of a pipeline.
            let _ = stream.shutdown(Shutdown::Write);
            return Ok(());
        }
    }
}

/// The length of the head including its blank line, if complete.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

fn parse_head(head: &[u8]) -> Option<Head> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let mut request = lines.next()?.split_ascii_whitespace();
    let method = request.next()?;
    let target = request.next()?;
    let version = request.next()?;
    if request.next().is_some() || !version.starts_with("HTTP/1.") {
        return None;
    }
    let http10 = version == "HTTP/1.0";
    let (mut close, mut keep_alive_token) = (false, false);
    let mut length = 0usize;
    let mut chunked = false;
    let mut expect_continue = false;
    for line in lines.filter(|l| !l.is_empty()) {
        let (key, value) = line.split_once(':')?;
        let value = value.trim();
        if key.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                close |= token.eq_ignore_ascii_case("close");
                keep_alive_token |= token.eq_ignore_ascii_case("keep-alive");
            }
        } else if key.eq_ignore_ascii_case("content-length") {
            length = value.parse().ok()?;
        } else if key.eq_ignore_ascii_case("transfer-encoding") {
            chunked = !value.eq_ignore_ascii_case("identity");
        } else if key.eq_ignore_ascii_case("expect") {
            expect_continue = value.eq_ignore_ascii_case("100-continue");
        }
    }
    let bytes = match target.strip_prefix("/bytes/") {
        Some(n) if method == "GET" || method == "HEAD" => {
            Some(n.parse::<usize>().ok()?.min(MAX_BYTES))
        }
        _ => None,
    };
    Some(Head {
        keep_alive: !close && (!http10 || keep_alive_token),
        head_only: method == "HEAD",
        body: if chunked {
            Body::Unknown
        } else {
            Body::Length(length)
        },
        expect_continue,
        bytes,
    })
}

fn serve_udp(socket: UdpSocket, name: Arc<str>) {
    let mut buf = vec![0u8; 65536];
    let mut reply = Vec::with_capacity(65536 + name.len() + 1);
    loop {
        let (n, peer) = match socket.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("lvs-testsrv: udp recv: {e}");
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        reply.clear();
        reply.extend_from_slice(name.as_bytes());
        reply.push(b' ');
        reply.extend_from_slice(&buf[..n]);
        // A reply larger than a datagram can carry is cut to fit.
        reply.truncate(65507);
        if let Err(e) = socket.send_to(&reply, peer) {
            eprintln!("lvs-testsrv: udp send to {peer}: {e}");
        }
    }
}
