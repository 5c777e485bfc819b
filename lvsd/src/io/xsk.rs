//! AF_XDP sockets: the fast path of the XDP backend.
//!
//! One UMEM (a region of fixed-size frames) is shared by every shard's
//! sockets. Each shard has a socket on every receive queue of every
//! interface: on its own queues (queue mod shards) the socket with the
//! queue's fill, completion and TX rings, on the others one that only
//! receives. The XDP program steers each frame to the socket of the shard
//! that owns its connection ([`super::xdp`]). A frame received on one
//! interface is transmitted on another by handing the same frame to the
//! shard's socket there: no copy in lvsd, and the kernel's one copy (in copy
//! mode) or none (zero-copy drivers).
//!
//! Rings shared with the kernel: per socket an RX ring (frames received)
//! and, on the shard's own queues, a TX ring (frames to send); per queue a
//! fill ring (frames lvsd gives for receiving, which every shard tops up
//! from its own free frames, under the ring's lock) and a completion ring
//! (frames sent, read by the queue's shard). A shard's free list holds the
//! frames it has that are in none of them.
//!
//! Ownership of frames (the safety argument for every raw access here): a
//! frame belongs to the kernel from the moment its address is published in a
//! fill or TX ring until an RX or completion ring returns it, then to the
//! shard whose ring returned it, until that shard publishes it again.

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
use std::sync::{Arc, Mutex};

use super::sys::Mapping;

/// Bytes per UMEM frame (aligned mode: a power of two, at most a page).
pub const FRAME: usize = 2048;

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

/// A queue's fill ring, shared by every shard's socket on that queue (each
/// shard tops it up from its own free frames).
type SharedFill = Arc<Mutex<Ring>>;

/// One AF_XDP socket bound to one queue of one interface: the queue's own
/// shard's (with the TX and completion rings), or another shard's, which
/// only receives (what the XDP program steers to that shard).
pub struct Socket {
    fd: OwnedFd,
    rx: Ring,
    /// On the shard's own queues: its TX and completion rings.
    tx: Option<Ring>,
    comp: Option<Ring>,
    fill: SharedFill,
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

/// The UMEM every shard's sockets share.
struct Umem(Mapping);

// SAFETY: the mapping lives as long as the Umem; which thread touches which
// frame follows the ownership rules in the module docs.
unsafe impl Send for Umem {}
// SAFETY: as for Send: shards share the mapping, never a frame.
unsafe impl Sync for Umem {}

// SAFETY: a ring's pointers point into its own mapping; the shared fill
// rings are only touched under their mutex.
unsafe impl Send for Ring {}

/// A shard's sockets, over the UMEM all shards share.
pub struct XskSet {
    /// Declared (so dropped) before the UMEM they use.
    pub sockets: Vec<Socket>,
    area: Arc<Umem>,
    /// Free frames, by address within the UMEM.
    free: Vec<u64>,
    /// For each interface slot, the socket that transmits on it.
    tx_for: Vec<Option<usize>>,
    failed_sends: u64,
    sent_frames: u64,
    sent_bytes: u64,
}

// SAFETY: the raw pointers point into mappings the set owns or shares (the
// UMEM, and the fill rings of other shards' queues, each behind its mutex);
// the set moves to its shard thread once, and only that thread touches its
// own rings and the frames it holds afterwards.
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
    /// Creates the UMEM and, for every binding, one socket per shard: the
    /// queue's own shard (queue mod `shards`) gets the one with the fill,
    /// completion and TX rings; each other shard one that shares them and
    /// receives what the XDP program steers to it. `ring` entries per ring,
    /// `slots` interfaces. Returns one set per shard.
    pub fn for_shards(
        bindings: &[Binding],
        shards: usize,
        ring: u32,
        slots: usize,
    ) -> io::Result<Vec<XskSet>> {
        if bindings.is_empty() || shards == 0 || !ring.is_power_of_two() {
            return Err(io::Error::other("no interface to bind AF_XDP sockets to"));
        }
        // Per queue: its fill ring, its RX rings (however many shards
        // share the queue, they draw on one fill ring), one TX ring.
        let frames = bindings.len() * ring as usize * 3;
        let area = Arc::new(Umem(Mapping::anonymous(frames * FRAME)?));
        let mut sets: Vec<XskSet> = (0..shards)
            .map(|_| XskSet {
                area: Arc::clone(&area),
                sockets: Vec::new(),
                free: Vec::new(),
                tx_for: vec![None; slots],
                failed_sends: 0,
                sent_frames: 0,
                sent_bytes: 0,
            })
            .collect();
        let mut umem_owner: Option<RawFd> = None;
        for &(slot, ifindex, queue) in bindings {
            let own = queue as usize % shards;
            let first = open(&area.0, ifindex, queue, slot, ring, umem_owner, None)?;
            let fill = Arc::clone(&first.fill);
            let first_fd = first.raw_fd();
            umem_owner.get_or_insert(first_fd);
            let set = &mut sets[own];
            if let Some(t) = set.tx_for.get_mut(usize::from(slot)) {
                t.get_or_insert(set.sockets.len());
            }
            set.sockets.push(first);
            let others = sets.iter_mut().enumerate().filter(|(j, _)| *j != own);
            for set in others.map(|(_, set)| set) {
                let s = open(
                    &area.0,
                    ifindex,
                    queue,
                    slot,
                    ring,
                    Some(first_fd),
                    Some(Arc::clone(&fill)),
                )?;
                set.sockets.push(s);
            }
        }
        // The frames shared out among the shards, then each shard fills
        // its own queues' fill rings from its share.
        let mut all: Vec<u64> = (0..frames as u64).rev().map(|i| i * FRAME as u64).collect();
        let share = all.len() / shards;
        for set in &mut sets {
            let at = all.len().saturating_sub(share);
            set.free = all.split_off(at);
        }
        if let Some(last) = sets.last_mut() {
            last.free.append(&mut all);
        }
        for set in &mut sets {
            for i in 0..set.sockets.len() {
                if set.sockets[i].tx.is_some() {
                    set.refill(i);
                }
            }
        }
        Ok(sets)
    }

    /// Whether the kernel runs every socket of the set in zero-copy mode.
    pub fn zero_copy(&self) -> bool {
        self.sockets.iter().all(|s| s.zero_copy)
    }

    /// Takes back every frame the kernel has finished sending.
    pub fn reclaim(&mut self) {
        for s in &mut self.sockets {
            let Some(comp) = s.comp.as_mut() else {
                continue;
            };
            let n = comp.ready();
            for i in 0..n {
                // SAFETY: entries below `ready` were written by the kernel.
                let addr = unsafe { *comp.addr_at(i) };
                self.free.push(addr & !(FRAME as u64 - 1));
            }
            if n > 0 {
                comp.release(n);
            }
        }
    }

    /// Gives socket `i`'s fill ring (its queue's, which other shards
    /// share) as many free frames as it has room for. False when another
    /// shard was filling it just then and this one has frames to give: the
    /// caller should come back rather than sleep on them.
    pub fn refill(&mut self, i: usize) -> bool {
        if self.free.is_empty() {
            return true;
        }
        let Ok(mut fill) = self.sockets[i].fill.try_lock() else {
            return false;
        };
        let n = fill
            .free()
            .min(u32::try_from(self.free.len()).unwrap_or(u32::MAX));
        for k in 0..n {
            if let Some(addr) = self.free.pop() {
                // SAFETY: slot `k` past the producer index is ours to write
                // (the ring's producer side is behind its lock).
                unsafe { *fill.addr_at(k) = addr };
            }
        }
        if n > 0 {
            fill.local = fill.local.wrapping_add(n);
            fill.publish();
        }
        true
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
            let base = (d.addr & !(FRAME as u64 - 1)).min((self.area.0.len - FRAME) as u64);
            let off = ((d.addr - base) as usize).min(FRAME);
            let len = (d.len as usize).min(FRAME - off);
            // SAFETY: `base` is a frame inside the UMEM, handed to this
            // thread by the RX ring; no other slice of it exists while `f`
            // runs.
            let frame = unsafe {
                std::slice::from_raw_parts_mut(self.area.0.ptr.add(base as usize), FRAME)
            };
            let action = f(frame, off, len);
            self.dispose(base, action);
        }
        if n > 0 {
            self.sockets[i].rx.release(n);
        }
        n
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
    /// because one of this shard's RX rings was full, and because a fill
    /// ring of one of its own queues was empty (every socket on a queue
    /// reports that queue's count; the queue's shard adds it, once).
    pub fn kernel_drops(&self) -> (u64, u64) {
        let mut sum = (0, 0);
        for s in &self.sockets {
            if let Ok(st) = getsockopt::<libc::xdp_statistics>(s.raw_fd(), libc::XDP_STATISTICS) {
                // Not `rx_dropped`: in copy mode the kernel counts there
                // each frame it had no fill frame for, which is the
                // queue's fill-empty count below. Its other causes (a
                // frame larger than a UMEM frame, or in several buffers)
                // do not arise: setup refuses an MTU a frame cannot hold,
                // and the program does not take multi-buffer frames.
                sum.0 += st.rx_ring_full;
                if s.comp.is_some() {
                    sum.1 += st.rx_fill_ring_empty_descs;
                }
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
        let room = |s: &Socket| s.tx.as_ref().map_or(0, Ring::free) > s.pending;
        if !room(&self.sockets[i]) {
            // Full (a pass's frames for one interface): send what is
            // queued, and take back what the kernel has sent, first.
            self.reclaim();
            kick(&mut self.sockets[i]);
            if !room(&self.sockets[i]) {
                return false;
            }
        }
        let s = &mut self.sockets[i];
        let Some(tx) = s.tx.as_ref() else {
            return false;
        };
        // SAFETY: slot `pending` past the producer index is ours to write.
        unsafe {
            *tx.desc_at(s.pending) = libc::xdp_desc {
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

    /// Publishes queued sends and asks the kernel to transmit them. True
    /// when a TX ring still holds frames the kernel turned away (a busy
    /// driver in copy mode): kick again soon.
    pub fn flush(&mut self) -> bool {
        let mut unsent = false;
        for s in &mut self.sockets {
            unsent |= !kick(s);
        }
        unsent
    }
}

/// Opens a socket on `queue` of `ifindex` over the UMEM `area`. The first
/// socket of all registers the UMEM (`shared_with` None); a queue's first
/// socket (`fill` None) gets fill, completion, RX and TX rings and shares
/// the UMEM with `shared_with`; another shard's socket on the same queue
/// (`fill` the queue's) only an RX ring, and shares the first's rings.
fn open(
    area: &Mapping,
    ifindex: u32,
    queue: u32,
    slot: u16,
    ring: u32,
    shared_with: Option<RawFd>,
    fill: Option<SharedFill>,
) -> io::Result<Socket> {
    // SAFETY: plain socket creation.
    let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: just created, owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let s = fd.as_raw_fd();
    if shared_with.is_none() {
        let reg = libc::xdp_umem_reg {
            addr: area.ptr as u64,
            len: area.len as u64,
            chunk_size: FRAME as u32,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        setsockopt(s, libc::XDP_UMEM_REG, &reg)?;
    }
    let first = fill.is_none();
    if first {
        // Every (interface, queue) has its own fill and completion rings.
        setsockopt(s, libc::XDP_UMEM_FILL_RING, &ring)?;
        setsockopt(s, libc::XDP_UMEM_COMPLETION_RING, &ring)?;
        setsockopt(s, libc::XDP_TX_RING, &ring)?;
    }
    setsockopt(s, libc::XDP_RX_RING, &ring)?;
    let off: libc::xdp_mmap_offsets = getsockopt(s, libc::XDP_MMAP_OFFSETS)?;
    let d = size_of::<libc::xdp_desc>();
    let rx = Ring::new(s, &off.rx, ring, d, libc::XDP_PGOFF_RX_RING as u64, false)?;
    let (tx, comp, fill) = match fill {
        Some(f) => (None, None, f),
        None => {
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
            (Some(tx), Some(comp), Arc::new(Mutex::new(fill)))
        }
    };
    let sa = libc::sockaddr_xdp {
        sxdp_family: libc::AF_XDP as u16,
        sxdp_flags: if shared_with.is_some() {
            libc::XDP_SHARED_UMEM
        } else {
            0
        },
        sxdp_ifindex: ifindex,
        sxdp_queue_id: queue,
        sxdp_shared_umem_fd: shared_with.map_or(0, |o| o as u32),
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
        comp,
        fill,
        slot,
        queue,
        pending: 0,
        zero_copy: getsockopt::<libc::xdp_options>(s, libc::XDP_OPTIONS)
            .is_ok_and(|o| o.flags & libc::XDP_OPTIONS_ZEROCOPY != 0),
    })
}

/// Publishes socket `s`'s queued sends and asks the kernel to transmit
/// what its TX ring holds. True when nothing is left for a later kick: in
/// copy mode the kernel took every frame within the call; in zero-copy
/// mode the woken driver takes them from the ring itself.
fn kick(s: &mut Socket) -> bool {
    let Some(tx) = s.tx.as_mut() else {
        return true; // receives only
    };
    if s.pending > 0 {
        tx.local = tx.local.wrapping_add(s.pending);
        tx.publish();
        s.pending = 0;
    }
    // Kick while anything published is still in the ring, not only after
    // new sends: a kick the driver turned away (busy) must be retried, or a
    // full ring would never drain.
    let waiting = tx.unconsumed();
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
    s.zero_copy || tx.unconsumed() == 0
}
