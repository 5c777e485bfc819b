//! `lvs-tundecap`: user-space IP-in-IP decapsulation for a TUN-mode real
//! server, on kernels without the ipip / ip6_tunnel drivers.
//!
//! ```text
//! lvs-tundecap [--dev lvstun0] [--no-ipv6]
//! ```
//!
//! Creates a TUN device (`IFF_TUN | IFF_NO_PI`, default name `lvstun0`) in
//! the caller's network namespace, brings it up and turns reverse-path
//! filtering off on it and on `all` (the inner packet comes from the client
//! and is addressed to the VIP on `lo`: the kernel must accept it from this
//! device). Then it reads every packet of IP protocol 4 (IPv4-in-IPv4) from
//! an `AF_INET` raw socket and every packet of next header 41 (IPv6-in-IPv6)
//! from an `AF_INET6` raw socket, strips the outer header and writes the
//! inner packet into the TUN device, where the kernel receives it as if it
//! had arrived on a link. The real server's answer then leaves by its normal
//! route (directly to the client, source VIP).
//!
//! An `AF_INET` raw socket hands over the whole packet (outer header
//! included); an `AF_INET6` one only what follows the IPv6 header chain. A
//! packet whose inner header does not match (version, length) is counted as
//! bad and dropped. The kernel sends no "protocol unreachable" for protocol
//! 4 / 41 while a raw socket takes them.
//!
//! Prints `ready` on stdout once both sockets and the device are set up, and
//! on SIGTERM, SIGINT or SIGHUP prints `decapsulated v4=<n> v6=<n> bad=<n>`
//! on stderr and exits 0 (the device goes away with its descriptor).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

use nix::sys::signal::{SigSet, Signal};

const USAGE: &str = "usage: lvs-tundecap [--dev NAME] [--no-ipv6]";
/// `_IOW('T', 202, int)`.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
/// Largest packet read from a raw socket (a reassembled IPv4 datagram fits).
const BUF: usize = 65_536;

#[derive(Default)]
struct Counters {
    v4: AtomicU64,
    v6: AtomicU64,
    bad: AtomicU64,
}

/// `struct ifreq` with the name and a flags short, padded to its 40 bytes.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

impl IfReq {
    fn new(name: &str) -> io::Result<IfReq> {
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags: 0,
            _pad: [0; 22],
        };
        if name.is_empty() || name.len() >= libc::IFNAMSIZ {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad interface name {name:?}"),
            ));
        }
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        Ok(req)
    }
}

fn os_err<T>(what: &str) -> io::Result<T> {
    let e = io::Error::last_os_error();
    Err(io::Error::new(e.kind(), format!("{what}: {e}")))
}

/// Creates the TUN device `name` and returns its descriptor.
fn open_tun(name: &str) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/net/tun")
        .map_err(|e| io::Error::new(e.kind(), format!("/dev/net/tun: {e}")))?;
    let mut req = IfReq::new(name)?;
    req.flags = libc::c_short::try_from(libc::IFF_TUN | libc::IFF_NO_PI).expect("fits a short");
    // SAFETY: TUNSETIFF reads and writes a struct ifreq, which `req` is
    // (name, flags, padding to its full size).
    if unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, std::ptr::addr_of_mut!(req)) } < 0 {
        return os_err("TUNSETIFF");
    }
    Ok(file)
}

/// Sets IFF_UP on interface `name`.
fn link_up(name: &str) -> io::Result<()> {
    // SAFETY: socket() has no memory-safety preconditions.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return os_err("socket for SIOCSIFFLAGS");
    }
    // SAFETY: fd is a fresh descriptor that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut req = IfReq::new(name)?;
    // SAFETY: SIOCGIFFLAGS / SIOCSIFFLAGS read and write a struct ifreq.
    if unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCGIFFLAGS,
            std::ptr::addr_of_mut!(req),
        )
    } < 0
    {
        return os_err("SIOCGIFFLAGS");
    }
    req.flags |= libc::c_short::try_from(libc::IFF_UP | libc::IFF_RUNNING).expect("fits a short");
    // SAFETY: as above.
    if unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCSIFFLAGS,
            std::ptr::addr_of_mut!(req),
        )
    } < 0
    {
        return os_err("SIOCSIFFLAGS");
    }
    Ok(())
}

fn sysctl(key: &str, value: &str) -> io::Result<()> {
    std::fs::write(format!("/proc/sys/net/{key}"), value)
        .map_err(|e| io::Error::new(e.kind(), format!("{key}: {e}")))
}

fn raw_socket(family: libc::c_int, protocol: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket() has no memory-safety preconditions.
    let fd = unsafe { libc::socket(family, libc::SOCK_RAW | libc::SOCK_CLOEXEC, protocol) };
    if fd < 0 {
        return os_err(&format!(
            "raw socket (family {family}, protocol {protocol})"
        ));
    }
    // SAFETY: fd is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The inner packet of an IPv4 packet carrying protocol 4, if well formed.
fn inner_of_ipv4(pkt: &[u8]) -> Option<&[u8]> {
    if pkt.len() < 20 || pkt[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(pkt[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([pkt[2], pkt[3]]));
    if ihl < 20 || total < ihl || total > pkt.len() || pkt[9] != 4 {
        return None;
    }
    let inner = &pkt[ihl..total];
    valid_inner(inner, 4).then_some(inner)
}

/// Whether `inner` starts with an IP header of `version` whose length fits.
fn valid_inner(inner: &[u8], version: u8) -> bool {
    match version {
        4 => {
            inner.len() >= 20
                && inner[0] >> 4 == 4
                && usize::from(u16::from_be_bytes([inner[2], inner[3]])) <= inner.len()
        }
        _ => {
            inner.len() >= 40
                && inner[0] >> 4 == 6
                && 40 + usize::from(u16::from_be_bytes([inner[4], inner[5]])) <= inner.len()
        }
    }
}

/// Reads from raw socket `sock` and writes each inner packet to `tun`.
fn pump(sock: OwnedFd, tun: Arc<File>, v6: bool, counters: Arc<Counters>) {
    let mut buf = vec![0u8; BUF];
    loop {
        // SAFETY: buf is a live, writable buffer of buf.len() bytes.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                eprintln!("lvs-tundecap: recv: {e}");
                thread::sleep(std::time::Duration::from_millis(10));
            }
            continue;
        }
        let pkt = &buf[..n.unsigned_abs()];
        let inner = if v6 {
            valid_inner(pkt, 6).then_some(pkt)
        } else {
            inner_of_ipv4(pkt)
        };
        let Some(inner) = inner else {
            counters.bad.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        match (&*tun).write(inner) {
            // A TUN device takes a packet whole or not at all.
            Ok(n) if n == inner.len() => {
                let c = if v6 { &counters.v6 } else { &counters.v4 };
                c.fetch_add(1, Ordering::Relaxed);
            }
            Ok(n) => {
                counters.bad.fetch_add(1, Ordering::Relaxed);
                eprintln!(
                    "lvs-tundecap: the TUN device took {n} of {} bytes",
                    inner.len()
                );
            }
            Err(e) => {
                counters.bad.fetch_add(1, Ordering::Relaxed);
                eprintln!("lvs-tundecap: writing to the TUN device: {e}");
            }
        }
    }
}

/// Reads and discards what the kernel routes into the device (nothing is
/// expected; IPv6 may send router solicitations or MLD on a new link).
fn drain(tun: Arc<File>) {
    let mut buf = vec![0u8; BUF];
    loop {
        // SAFETY: buf is a live, writable buffer of buf.len() bytes.
        let n = unsafe { libc::read(tun.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> io::Result<()> {
    thread::Builder::new()
        .name(name.to_owned())
        .stack_size(256 * 1024)
        .spawn(f)
        .map(drop)
}

fn run() -> Result<(), String> {
    let mut dev = "lvstun0".to_owned();
    let mut ipv6 = true;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--dev" => dev = args.next().ok_or(format!("--dev needs a value\n{USAGE}"))?,
            "--no-ipv6" => ipv6 = false,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown option {other}\n{USAGE}")),
        }
    }

    // Block the termination signals before any thread starts, so that only
    // the main thread's sigwait sees them.
    let mut signals = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        signals.add(s);
    }
    signals
        .thread_block()
        .map_err(|e| format!("blocking signals: {e}"))?;

    let tun = Arc::new(open_tun(&dev).map_err(|e| e.to_string())?);
    for key in [
        format!("ipv4/conf/{dev}/rp_filter"),
        "ipv4/conf/all/rp_filter".to_owned(),
    ] {
        sysctl(&key, "0").map_err(|e| e.to_string())?;
    }
    // The kernel's own IPv6 chatter on the device is of no use.
    if ipv6 {
        let _ = sysctl(&format!("ipv6/conf/{dev}/router_solicitations"), "0");
        let _ = sysctl(&format!("ipv6/conf/{dev}/accept_dad"), "0");
    }
    link_up(&dev).map_err(|e| e.to_string())?;

    let counters = Arc::new(Counters::default());
    let raw4 = raw_socket(libc::AF_INET, libc::IPPROTO_IPIP).map_err(|e| e.to_string())?;
    let raw6 = if ipv6 {
        Some(raw_socket(libc::AF_INET6, libc::IPPROTO_IPV6).map_err(|e| e.to_string())?)
    } else {
        None
    };
    {
        let (tun, c) = (tun.clone(), counters.clone());
        spawn("ipip", move || pump(raw4, tun, false, c)).map_err(|e| e.to_string())?;
    }
    if let Some(raw6) = raw6 {
        let (tun, c) = (tun.clone(), counters.clone());
        spawn("ip6ip6", move || pump(raw6, tun, true, c)).map_err(|e| e.to_string())?;
    }
    {
        let tun = tun.clone();
        spawn("drain", move || drain(tun)).map_err(|e| e.to_string())?;
    }

    let mut out = io::stdout().lock();
    writeln!(out, "ready")
        .and_then(|()| out.flush())
        .map_err(|e| format!("stdout: {e}"))?;
    drop(out);

    signals.wait().map_err(|e| format!("sigwait: {e}"))?;
    eprintln!(
        "decapsulated v4={} v6={} bad={}",
        counters.v4.load(Ordering::Relaxed),
        counters.v6.load(Ordering::Relaxed),
        counters.bad.load(Ordering::Relaxed)
    );
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lvs-tundecap: {e}");
            ExitCode::FAILURE
        }
    }
}
