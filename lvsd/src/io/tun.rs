//! The local-node device: a TUN interface through which lvsd hands packets
//! of local-node connections to the director's own stack, as if they had
//! arrived on an interface. The director's answers leave by its own routing,
//! from the VIP, which must therefore be one of its addresses.
//!
//! The device (`lvsd-local`) exists while lvsd holds it open and vanishes
//! when lvsd exits. Reverse-path filtering is turned off on it, since the
//! clients it carries are reached through other interfaces.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The device's name.
pub const NAME: &str = "lvsd-local";

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;

/// Creates the device, brings it up and returns its descriptor.
pub fn open() -> io::Result<OwnedFd> {
    // SAFETY: open(2) of a fixed path; the result is checked.
    let fd = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; zero is valid.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(NAME.bytes()) {
        *dst = src as libc::c_char;
    }
    ifr.ifr_ifru.ifru_flags = IFF_TUN | IFF_NO_PI;
    // SAFETY: TUNSETIFF takes a pointer to an ifreq that lives for the call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF, &mut ifr) } < 0 {
        return Err(io::Error::last_os_error());
    }
    up(&ifr)?;
    for path in [
        format!("/proc/sys/net/ipv4/conf/{NAME}/rp_filter"),
        format!("/proc/sys/net/ipv4/conf/{NAME}/accept_local"),
    ] {
        let value = if path.ends_with("rp_filter") {
            "0"
        } else {
            "1"
        };
        if let Err(e) = std::fs::write(&path, value) {
            tracing::warn!("setting {path}: {e}");
        }
    }
    Ok(fd)
}

fn up(ifr: &libc::ifreq) -> io::Result<()> {
    // SAFETY: a plain datagram socket for the interface ioctls.
    let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if s < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `s` is ours.
    let s = unsafe { OwnedFd::from_raw_fd(s) };
    let mut req = *ifr;
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we own.
    unsafe {
        if libc::ioctl(s.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= 0x1; // IFF_UP
        if libc::ioctl(s.as_raw_fd(), libc::SIOCSIFFLAGS, &mut req) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
