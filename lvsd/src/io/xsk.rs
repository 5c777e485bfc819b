//! AF_XDP sockets: the fast path of the XDP backend.
//!
//! One UMEM (a region of fixed-size frames) per shard is shared by that
//! shard's sockets, one socket per (interface, receive queue). A frame
//! received on one interface is transmitted on another by handing the same
//! frame to the other socket's TX ring: no copy in lvsd, and the kernel's one
//! copy (in copy mode) or none (zero-copy drivers).
//!
//! Each socket has four single-producer single-consumer rings shared with
//! the kernel: fill (frames lvsd gives for receiving), RX (frames received),
//! TX (frames to send) and completion (frames sent). The shard's free list
//! holds every frame that is in none of them.
//!
//! Ownership of frames (the safety argument for every raw access here): a
//! frame belongs to the kernel from the moment its address is published in a
//! fill or TX ring until an RX or completion ring returns it; otherwise to
//! this shard's thread.

// UMEM addresses, lengths and ring offsets are u64 and u32 in the kernel's
// ABI; on the 64-bit targets lvsd is built for (checked below) they convert
// to usize without loss, and the values converted back are bounded by the
// UMEM's size.
#![allow(clippy::cast_possible_truncation)]

use std::io;
use std::mem::size_of;

const _: () = assert!(
    size_of::<usize>() == 8,
    "the AF_XDP backend needs a 64-bit target"
);
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::sys::Mapping;

/// Bytes per UMEM frame (aligned mode: a power of two, at most a page).
pub const FRAME: usize = 2048;
/// Where in its frame the kernel puts a received packet (XDP_PACKET_HEADROOM
/// with no UMEM headroom).
const RX_OFFSET: usize = 256;

/// One ring. `local` is this side's index: the producer index for the fill
/// and TX rings, the consumer index for RX and completion.
struct Ring {
    _map: Mapping,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    descs: *mut u8,
    mask: u32,
    size: u32,
    local: u32,
}

impl Ring {
    fn new(
        fd: RawFd,
        off: &libc::xdp_ring_offset,
        size: u32,
        elem: usize,
        pgoff: u64,
        producer_side: bool,
    ) -> io::Result<Ring> {
        let len = off.desc as usize + size as usize * elem;
        let map = Mapping::shared(fd, len, pgoff)?;
        // SAFETY: the offsets come from XDP_MMAP_OFFSETS for this mapping;
        // the kernel aligns the indices for 32-bit atomic access.
        let (producer, consumer, descs) = unsafe {
            (
                map.ptr.add(off.producer as usize).cast::<AtomicU32>(),
                map.ptr.add(off.consumer as usize).cast::<AtomicU32>(),
                map.ptr.add(off.desc as usize),
            )
        };
        // SAFETY: valid pointers into the mapping (above).
        let local = unsafe {
            if producer_side {
                (*producer).load(Ordering::Relaxed)
            } else {
                (*consumer).load(Ordering::Relaxed)
            }
        };
        Ok(Ring {
            _map: map,
            producer,
            consumer,
            descs,
            mask: size - 1,
            size,
            local,
        })
    }

    /// Consumer side: entries ready to read.
    fn ready(&self) -> u32 {
        // SAFETY: points into the live mapping.
        unsafe { (*self.producer).load(Ordering::Acquire) }.wrapping_sub(self.local)
    }

    /// Consumer side: hands `n` read entries back.
    fn release(&mut self, n: u32) {
        self.local = self.local.wrapping_add(n);
        // SAFETY: points into the live mapping.
        unsafe { (*self.consumer).store(self.local, Ordering::Release) }
    }

    /// Producer side: free slots.
    fn free(&self) -> u32 {
        // SAFETY: points into the live mapping.
        let cons = unsafe { (*self.consumer).load(Ordering::Acquire) };
        self.size - self.local.wrapping_sub(cons)
    }

    /// Producer side: published entries the kernel has not taken yet.
    fn unconsumed(&self) -> u32 {
        // SAFETY: points into the live mapping.
        let cons = unsafe { (*self.consumer).load(Ordering::Acquire) };
        self.local.wrapping_sub(cons)
    }

    /// Producer side: publishes every entry written so far.
    fn publish(&self) {
        // SAFETY: points into the live mapping.
        unsafe { (*self.producer).store(self.local, Ordering::Release) }
    }

    /// Entry `i` places after the local index, as a frame address (fill and
    /// completion rings).
    fn addr_at(&self, i: u32) -> *mut u64 {
        let idx = (self.local.wrapping_add(i) & self.mask) as usize;
        // SAFETY: idx <= mask, inside the descriptor array.
        unsafe { self.descs.cast::<u64>().add(idx) }
    }

    /// Entry `i` places after the local index, as a descriptor (RX and TX).
    fn desc_at(&self, i: u32) -> *mut libc::xdp_desc {
        let idx = (self.local.wrapping_add(i) & self.mask) as usize;
        // SAFETY: idx <= mask, inside the descriptor array.
        unsafe { self.descs.cast::<libc::xdp_desc>().add(idx) }
    }
}

/// One AF_XDP socket bound to one queue of one interface.
pub struct Socket {
    fd: OwnedFd,
    rx: Ring,
    tx: Ring,
    fill: Ring,
    comp: Ring,
    /// The interface's slot in the shard's interface list.
    pub slot: u16,
    pub queue: u32,
    /// TX entries written since the last kick.
    pending: u32,
    /// Bound in zero-copy mode: the driver reads the TX ring itself.
    zero_copy: bool,
}

impl Socket {
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Socket option: frames one copy-mode send call may transmit (at most the
/// TX ring's size; not in the libc crate yet).
const XDP_MAX_TX_SKB_BUDGET: libc::c_int = 9;

fn setsockopt<T>(fd: RawFd, opt: libc::c_int, v: &T) -> io::Result<()> {
    // SAFETY: `v` is a valid T of the size passed.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_XDP,
            opt,
            (v as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The kernel structures [`getsockopt`] reads: plain data, all-zero valid.
trait Plain {}
impl Plain for libc::xdp_options {}
impl Plain for libc::xdp_mmap_offsets {}
impl Plain for libc::xdp_statistics {}

fn getsockopt<T: Plain>(fd: RawFd, opt: libc::c_int) -> io::Result<T> {
    // SAFETY: T is plain old data (Plain), for which all-zero is valid.
    let mut v: T = unsafe { std::mem::zeroed() };
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: `v` and `len` are valid for the kernel to write, `len` bytes.
    let r =
        unsafe { libc::getsockopt(fd, libc::SOL_XDP, opt, (&mut v as *mut T).cast(), &mut len) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(v)
    }
}

/// The shard's UMEM and its sockets.
pub struct XskSet {
    /// Declared (so dropped) before the UMEM they use.
    pub sockets: Vec<Socket>,
    area: Mapping,
    /// Free frames, by address within the UMEM.
    free: Vec<u64>,
    /// For each interface slot, the socket that transmits on it.
    tx_for: Vec<Option<usize>>,
    /// Whether the kernel runs the sockets in zero-copy mode.
    pub zero_copy: bool,
    failed_sends: u64,
    /// Since when a TX ring has held frames the kernel turned away.
    unsent_since: Option<Instant>,
    sent_frames: u64,
    sent_bytes: u64,
}

// SAFETY: the raw pointers point into mappings the set owns; the set moves
// to its shard thread once, and only that thread touches the rings and
// frames afterwards.
unsafe impl Send for XskSet {}

/// What to do with a received frame.
pub enum Action {
    /// Send `frame[start..start + len]` on interface slot `slot`.
    Send { slot: u16, start: usize, len: usize },
    /// Give the frame back to the free list.
    Recycle,
}

/// Where to bind: (interface slot, ifindex, queue).
pub type Binding = (u16, u32, u32);

impl XskSet {
    /// Creates the UMEM and one socket per binding, `ring` entries per ring.
    pub fn new(bindings: &[Binding], ring: u32, slots: usize) -> io::Result<XskSet> {
        if bindings.is_empty() || !ring.is_power_of_two() {
            return Err(io::Error::other("no interface to bind AF_XDP sockets to"));
        }
        let frames = bindings.len() * ring as usize * 2;
        let area = Mapping::anonymous(frames * FRAME)?;
        let mut set = XskSet {
            area,
            sockets: Vec::with_capacity(bindings.len()),
            free: (0..frames as u64).rev().map(|i| i * FRAME as u64).collect(),
            tx_for: vec![None; slots],
            zero_copy: false,
            failed_sends: 0,
            unsent_since: None,
            sent_frames: 0,
            sent_bytes: 0,
        };
        let mut owner: Option<RawFd> = None;
        for &(slot, ifindex, queue) in bindings {
            let s = set.open(ifindex, queue, slot, ring, owner)?;
            owner.get_or_insert(s.fd.as_raw_fd());
            if let Some(t) = set.tx_for.get_mut(usize::from(slot)) {
                t.get_or_insert(set.sockets.len());
            }
            set.sockets.push(s);
        }
        set.zero_copy = set.sockets.iter().all(|s| s.zero_copy);
        for i in 0..set.sockets.len() {
            set.refill(i);
        }
        Ok(set)
    }

    fn open(
        &self,
        ifindex: u32,
        queue: u32,
        slot: u16,
        ring: u32,
        owner: Option<RawFd>,
    ) -> io::Result<Socket> {
        // SAFETY: plain socket creation.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: just created, owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let s = fd.as_raw_fd();
        if owner.is_none() {
            let reg = libc::xdp_umem_reg {
                addr: self.area.ptr as u64,
                len: self.area.len as u64,
                chunk_size: FRAME as u32,
                headroom: 0,
                flags: 0,
                tx_metadata_len: 0,
            };
            setsockopt(s, libc::XDP_UMEM_REG, &reg)?;
        }
        // Every (interface, queue) has its own fill and completion rings,
        // shared UMEM or not.
        setsockopt(s, libc::XDP_UMEM_FILL_RING, &ring)?;
        setsockopt(s, libc::XDP_UMEM_COMPLETION_RING, &ring)?;
        setsockopt(s, libc::XDP_RX_RING, &ring)?;
        setsockopt(s, libc::XDP_TX_RING, &ring)?;
        // In copy mode a send call transmits at most this many frames (32
        // by default, then EAGAIN): one call per pass instead of one per 32
        // frames. Kernel 6.17+; older kernels keep their default.
        let _ = setsockopt(s, XDP_MAX_TX_SKB_BUDGET, &ring);
        let off: libc::xdp_mmap_offsets = getsockopt(s, libc::XDP_MMAP_OFFSETS)?;
        let d = size_of::<libc::xdp_desc>();
        let rx = Ring::new(s, &off.rx, ring, d, libc::XDP_PGOFF_RX_RING as u64, false)?;
        let tx = Ring::new(s, &off.tx, ring, d, libc::XDP_PGOFF_TX_RING as u64, true)?;
        let fill = Ring::new(s, &off.fr, ring, 8, libc::XDP_UMEM_PGOFF_FILL_RING, true)?;
        let comp = Ring::new(
            s,
            &off.cr,
            ring,
            8,
            libc::XDP_UMEM_PGOFF_COMPLETION_RING,
            false,
        )?;
        let sa = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: if owner.is_some() {
                libc::XDP_SHARED_UMEM
            } else {
                0
            },
            sxdp_ifindex: ifindex,
            sxdp_queue_id: queue,
            sxdp_shared_umem_fd: owner.map_or(0, |o| o as u32),
        };
        // SAFETY: `sa` is a valid sockaddr_xdp of the size passed.
        let r = unsafe {
            libc::bind(
                s,
                (&sa as *const libc::sockaddr_xdp).cast(),
                size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Socket {
            fd,
            rx,
            tx,
            fill,
            comp,
            slot,
            queue,
            pending: 0,
            zero_copy: getsockopt::<libc::xdp_options>(s, libc::XDP_OPTIONS)
                .is_ok_and(|o| o.flags & libc::XDP_OPTIONS_ZEROCOPY != 0),
        })
    }

    /// Takes back every frame the kernel has finished sending.
    pub fn reclaim(&mut self) {
        for s in &mut self.sockets {
            let n = s.comp.ready();
            for i in 0..n {
                // SAFETY: entries below `ready` were written by the kernel.
                let addr = unsafe { *s.comp.addr_at(i) };
                self.free.push(addr & !(FRAME as u64 - 1));
            }
            if n > 0 {
                s.comp.release(n);
            }
        }
    }

    /// Gives socket `i`'s fill ring as many free frames as it has room for.
    pub fn refill(&mut self, i: usize) {
        let s = &mut self.sockets[i];
        let n = s
            .fill
            .free()
            .min(u32::try_from(self.free.len()).unwrap_or(u32::MAX));
        for k in 0..n {
            if let Some(addr) = self.free.pop() {
                // SAFETY: slot `k` past the producer index is ours to write.
                unsafe { *s.fill.addr_at(k) = addr };
            }
        }
        if n > 0 {
            s.fill.local = s.fill.local.wrapping_add(n);
            s.fill.publish();
        }
    }

    /// Runs `f` on up to `max` frames received on socket `i`, then sends or
    /// recycles each as `f` says. `f` gets the whole UMEM frame and where the
    /// packet starts in it and how long it is. Returns how many frames came.
    pub fn receive(
        &mut self,
        i: usize,
        max: u32,
        mut f: impl FnMut(&mut [u8], usize, usize) -> Action,
    ) -> u32 {
        let n = self.sockets[i].rx.ready().min(max);
        for k in 0..n {
            // SAFETY: k < ready: the kernel wrote this descriptor.
            let d = unsafe { *self.sockets[i].rx.desc_at(k) };
            let base = (d.addr & !(FRAME as u64 - 1)).min((self.area.len - FRAME) as u64);
            let off = ((d.addr - base) as usize).min(FRAME);
            let len = (d.len as usize).min(FRAME - off);
            // SAFETY: `base` is a frame inside the UMEM, handed to this
            // thread by the RX ring; no other slice of it exists while `f`
            // runs.
            let frame =
                unsafe { std::slice::from_raw_parts_mut(self.area.ptr.add(base as usize), FRAME) };
            let action = f(frame, off, len);
            self.dispose(base, action);
        }
        if n > 0 {
            self.sockets[i].rx.release(n);
        }
        n
    }

    /// Copies `packet` into a free frame, where the kernel would have put
    /// it, and runs `f` on it as [`XskSet::receive`] does. False (nothing
    /// run) when no frame is free or the packet does not fit.
    pub fn inject(
        &mut self,
        packet: &[u8],
        f: impl FnOnce(&mut [u8], usize, usize) -> Action,
    ) -> bool {
        if packet.len() > FRAME - RX_OFFSET {
            return false;
        }
        let Some(base) = self.free.pop() else {
            return false;
        };
        // SAFETY: a free frame is this thread's (module docs) and inside the
        // UMEM; no other slice of it exists while `f` runs.
        let frame =
            unsafe { std::slice::from_raw_parts_mut(self.area.ptr.add(base as usize), FRAME) };
        frame[RX_OFFSET..RX_OFFSET + packet.len()].copy_from_slice(packet);
        let action = f(frame, RX_OFFSET, packet.len());
        self.dispose(base, action);
        true
    }

    /// Sends or recycles the frame at `base` as `action` says.
    fn dispose(&mut self, base: u64, action: Action) {
        match action {
            Action::Send { slot, start, len }
                if start < FRAME
                    && self.send(slot, base + start as u64, len.min(FRAME - start)) => {}
            Action::Send { .. } => {
                self.failed_sends += 1;
                self.free.push(base);
            }
            Action::Recycle => self.free.push(base),
        }
    }

    /// The kernel's drop counters summed over the sockets: frames lost
    /// because an RX ring was full, and because a fill ring was empty.
    pub fn kernel_drops(&self) -> (u64, u64) {
        let mut sum = (0, 0);
        for s in &self.sockets {
            if let Ok(st) = getsockopt::<libc::xdp_statistics>(s.raw_fd(), libc::XDP_STATISTICS) {
                sum.0 += st.rx_dropped + st.rx_ring_full;
                sum.1 += st.rx_fill_ring_empty_descs;
            }
        }
        sum
    }

    /// Frames and bytes queued for sending, and sends that found no room
    /// (the frame was dropped), since the last call.
    pub fn take_stats(&mut self) -> (u64, u64, u64) {
        (
            std::mem::take(&mut self.sent_frames),
            std::mem::take(&mut self.sent_bytes),
            std::mem::take(&mut self.failed_sends),
        )
    }

    /// Queues `len` bytes at UMEM address `addr` for sending on interface
    /// slot `slot`. False (the frame stays lvsd's) when that interface has no
    /// socket or its TX ring is full.
    fn send(&mut self, slot: u16, addr: u64, len: usize) -> bool {
        let Some(Some(i)) = self.tx_for.get(usize::from(slot)).copied() else {
            return false;
        };
        if self.sockets[i].tx.free() <= self.sockets[i].pending {
            // Full (many shards' frames for one interface in one pass): send
            // what is queued, and take back what the kernel has sent, first.
            self.reclaim();
            kick(&mut self.sockets[i]);
            if self.sockets[i].tx.free() <= self.sockets[i].pending {
                return false;
            }
        }
        let s = &mut self.sockets[i];
        // SAFETY: slot `pending` past the producer index is ours to write.
        unsafe {
            *s.tx.desc_at(s.pending) = libc::xdp_desc {
                addr,
                len: len as u32,
                options: 0,
            };
        }
        s.pending += 1;
        self.sent_frames += 1;
        self.sent_bytes += len as u64;
        true
    }

    /// Publishes queued sends and asks the kernel to transmit them. Says
    /// whether a TX ring still holds frames the kernel turned away (a busy
    /// driver in copy mode: kick again soon), and whether what must not
    /// overtake them may go on: at once when none are left, otherwise
    /// only once the driver has turned frames away for `HOLD_MAX` (a
    /// stalled queue must not hold up every other interface).
    pub fn flush(&mut self) -> Flushed {
        let mut all = true;
        for s in &mut self.sockets {
            all &= kick(s);
        }
        if all {
            self.unsent_since = None;
            return Flushed {
                unsent: false,
                go_on: true,
            };
        }
        let since = *self.unsent_since.get_or_insert_with(Instant::now);
        Flushed {
            unsent: true,
            go_on: since.elapsed() >= HOLD_MAX,
        }
    }
}

/// What [`XskSet::flush`] left.
pub struct Flushed {
    /// A TX ring still holds frames.
    pub unsent: bool,
    /// Frames that must not overtake them may be handed on.
    pub go_on: bool,
}

/// Longest that frames turned away by a driver hold up what must follow
/// them.
const HOLD_MAX: Duration = Duration::from_millis(10);

/// Publishes socket `s`'s queued sends and asks the kernel to transmit
/// what its TX ring holds. True when nothing is left for a later kick: in
/// copy mode the kernel took every frame within the call; in zero-copy
/// mode the woken driver takes them from the ring itself.
fn kick(s: &mut Socket) -> bool {
    if s.pending > 0 {
        s.tx.local = s.tx.local.wrapping_add(s.pending);
        s.tx.publish();
        s.pending = 0;
    }
    // Kick while anything published is still in the ring, not only after
    // new sends: a kick the driver turned away (busy) must be retried, or a
    // full ring would never drain.
    let waiting = s.tx.unconsumed();
    if waiting == 0 {
        return true;
    }
    // The copy-mode transmit path sends a bounded batch per call and says
    // EAGAIN when more remain.
    let rounds = waiting / 16 + 2;
    for _ in 0..rounds {
        // SAFETY: a zero-length send on our own socket.
        let r = unsafe {
            libc::sendto(
                s.fd.as_raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
        if r >= 0 {
            break;
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::EAGAIN) {
            // Down, or a frame dropped on the way (EBUSY): no frame waits
            // for the driver, and the next kick goes on with the ring.
            return true;
        }
    }
    s.zero_copy || s.tx.unconsumed() == 0
}
