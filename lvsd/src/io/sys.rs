//! Packet sockets and the few raw system calls lvsd needs.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// ETH_P_ALL and ETH_P_ARP in network byte order, as packet sockets take them.
/// linux/if_ether.h: every protocol.
pub const ETH_P_ALL_BE: u16 = 0x0003u16.to_be();
/// linux/if_ether.h: ARP.
pub const ETH_P_ARP_BE: u16 = 0x0806u16.to_be();
/// AF_PACKET as sockaddr_ll.sll_family holds it.
pub const AF_PACKET_FAMILY: u16 = 17;

/// From linux/if_packet.h (not all are in the libc crate).
const PACKET_VNET_HDR: libc::c_int = 15;
const PACKET_QDISC_BYPASS: libc::c_int = 20;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const PACKET_FANOUT: libc::c_int = 18;
const PACKET_FANOUT_DATA: libc::c_int = 22;
const PACKET_FANOUT_CBPF: u32 = 6;

/// Page-aligned memory, populated up front, unmapped on drop: anonymous
/// (buffer rings, the AF_XDP UMEM) or a socket's shared rings.
pub struct Mapping {
    pub ptr: *mut u8,
    pub len: usize,
}

impl Mapping {
    pub fn anonymous(len: usize) -> io::Result<Mapping> {
        Self::map(-1, len, 0, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS)
    }

    /// `len` bytes of what `fd` offers at `offset` (an AF_XDP ring).
    pub fn shared(fd: RawFd, len: usize, offset: u64) -> io::Result<Mapping> {
        Self::map(fd, len, offset, libc::MAP_SHARED)
    }

    fn map(fd: RawFd, len: usize, offset: u64, flags: libc::c_int) -> io::Result<Mapping> {
        let offset = libc::off_t::try_from(offset).map_err(|_| io::Error::other("bad offset"))?;
        // SAFETY: a new mapping; no existing memory is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags | libc::MAP_POPULATE,
                fd,
                offset,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            ptr: ptr.cast(),
            len,
        })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: exactly what mmap returned; users drop whatever used the
        // memory (a registered ring, a socket) first.
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
    }
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    let len = libc::socklen_t::try_from(size_of::<T>()).unwrap_or(libc::socklen_t::MAX);
    // SAFETY: `value` points to a live, initialised T of `len` bytes for the
    // duration of the call; the kernel copies it.
    let rc = unsafe { libc::setsockopt(fd, level, name, (value as *const T).cast(), len) };
    check(rc).map(drop)
}

/// A raw AF_PACKET socket for `protocol` (network byte order), bound to
/// `ifindex` (0: every interface).
pub fn packet_socket(protocol_be: u16, ifindex: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = check(unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::c_int::from(protocol_be),
        )
    })?;
    // SAFETY: `fd` is a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut sll: libc::sockaddr_ll = zeroed_sll();
    sll.sll_family = AF_PACKET_FAMILY;
    sll.sll_protocol = protocol_be;
    sll.sll_ifindex = i32::try_from(ifindex).unwrap_or(0);
    let len = libc::socklen_t::try_from(size_of::<libc::sockaddr_ll>()).unwrap_or(0);
    // SAFETY: `sll` is a valid sockaddr_ll of `len` bytes.
    check(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            len,
        )
    })?;
    Ok(fd)
}

/// A zeroed sockaddr_ll.
pub fn zeroed_sll() -> libc::sockaddr_ll {
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

/// Options of a data-path socket: virtio-net headers on receive and send (so
/// GSO super-frames and partial checksums pass through intact), no copies of
/// our own transmissions, no qdisc on send, large buffers.
pub fn tune_data_socket(fd: RawFd, rcvbuf: usize) -> io::Result<()> {
    setsockopt(fd, libc::SOL_PACKET, PACKET_VNET_HDR, &1i32)?;
    setsockopt(fd, libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, &1i32)?;
    setsockopt(fd, libc::SOL_PACKET, PACKET_QDISC_BYPASS, &1i32)?;
    let size = i32::try_from(rcvbuf).unwrap_or(i32::MAX);
    // SO_RCVBUFFORCE needs CAP_NET_ADMIN, which lvsd has; fall back quietly.
    if setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &size).is_err() {
        setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &size)?;
    }
    let _ = setsockopt(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, &size);
    Ok(())
}

/// Frames the kernel dropped at packet socket `fd` since the last call
/// (PACKET_STATISTICS, which the read resets).
pub fn packet_drops(fd: RawFd) -> io::Result<u32> {
    const PACKET_STATISTICS: libc::c_int = 6;
    #[repr(C)]
    struct TpacketStats {
        packets: u32,
        drops: u32,
    }
    let mut st = TpacketStats {
        packets: 0,
        drops: 0,
    };
    let mut len = libc::socklen_t::try_from(size_of::<TpacketStats>()).unwrap_or(0);
    // SAFETY: `st` is writable for `len` bytes, as the kernel fills it.
    check(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_PACKET,
            PACKET_STATISTICS,
            (&mut st as *mut TpacketStats).cast(),
            &mut len,
        )
    })?;
    Ok(st.drops)
}

/// Joins `fd` to fanout group `group` in classic-BPF mode, ignoring the
/// frames the host sends (PACKET_FANOUT_FLAG_IGNORE_OUTGOING: a group does
/// not heed its members' PACKET_IGNORE_OUTGOING; kernel 4.20+, and joined
/// without it before).
pub fn join_fanout(fd: RawFd, group: u16) -> io::Result<()> {
    const FLAG_IGNORE_OUTGOING: u32 = 0x4000;
    let arg: u32 = u32::from(group) | ((PACKET_FANOUT_CBPF | FLAG_IGNORE_OUTGOING) << 16);
    match setsockopt(fd, libc::SOL_PACKET, PACKET_FANOUT, &arg) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            let arg: u32 = u32::from(group) | (PACKET_FANOUT_CBPF << 16);
            setsockopt(fd, libc::SOL_PACKET, PACKET_FANOUT, &arg)
        }
        r => r,
    }
}

/// Installs (or replaces) the group's classic BPF program through member `fd`.
pub fn set_fanout_program(fd: RawFd, prog: &[libc::sock_filter]) -> io::Result<()> {
    let fprog = libc::sock_fprog {
        len: u16::try_from(prog.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "BPF program too long"))?,
        filter: prog.as_ptr().cast_mut(),
    };
    setsockopt(fd, libc::SOL_PACKET, PACKET_FANOUT_DATA, &fprog)
}

/// Sends one frame out of `ifindex` on a packet socket (control path only).
pub fn send_frame(fd: RawFd, ifindex: u32, frame: &[u8]) -> io::Result<()> {
    let mut sll = zeroed_sll();
    sll.sll_family = AF_PACKET_FAMILY;
    sll.sll_ifindex = i32::try_from(ifindex).unwrap_or(0);
    let len = libc::socklen_t::try_from(size_of::<libc::sockaddr_ll>()).unwrap_or(0);
    // SAFETY: `frame` and `sll` are valid for the call's duration.
    let rc = unsafe {
        libc::sendto(
            fd,
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&sll as *const libc::sockaddr_ll).cast(),
            len,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Receives one frame with a timeout; returns its length and ingress ifindex,
/// or None on timeout.
pub fn recv_frame(fd: RawFd, buf: &mut [u8], timeout_ms: i32) -> io::Result<Option<(usize, u32)>> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = match check(unsafe { libc::poll(&mut pfd, 1, timeout_ms) }) {
        // A signal for the process may land on this thread: poll is not
        // restarted, and the caller's loop is the retry.
        Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(None),
        r => r?,
    };
    if n == 0 {
        return Ok(None);
    }
    let mut sll = zeroed_sll();
    let mut len = libc::socklen_t::try_from(size_of::<libc::sockaddr_ll>()).unwrap_or(0);
    // SAFETY: `buf` and `sll` are valid and writable for their lengths.
    let rc = unsafe {
        libc::recvfrom(
            fd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
            (&mut sll as *mut libc::sockaddr_ll).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
        ) {
            return Ok(None);
        }
        return Err(e);
    }
    let n = usize::try_from(rc).unwrap_or(0);
    Ok(Some((n, u32::try_from(sll.sll_ifindex).unwrap_or(0))))
}

/// Attaches a classic BPF socket filter (SO_ATTACH_FILTER).
pub fn attach_filter(fd: RawFd, prog: &[libc::sock_filter]) -> io::Result<()> {
    let fprog = libc::sock_fprog {
        len: u16::try_from(prog.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "BPF program too long"))?,
        filter: prog.as_ptr().cast_mut(),
    };
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog)
}

/// Stops the socket from seeing frames the host sends.
pub fn ignore_outgoing(fd: RawFd) -> io::Result<()> {
    setsockopt(fd, libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, &1i32)
}
