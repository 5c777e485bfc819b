//! Frames handed between shards (the XDP backend with several shards).
//!
//! Each shard serves some receive queues of every interface, and the NIC (or
//! veth) picks the queue, so a frame can reach a shard that does not hold its
//! connection: the two directions of a NAT connection hash to unrelated
//! queues. A connection belongs to the shard its client's address and port
//! hash to, with the hash the packet sockets' fanout program uses
//! ([`super::fanout`]), so frames the kernel's slow path delivers agree.
//!
//! A shard that receives a frame another shard owns copies it into a lane to
//! that shard: one single-producer single-consumer ring of frame-sized slots
//! per ordered pair of shards. The owner copies it into a frame of its own
//! UMEM and runs it through the data path as if it had received it.
//!
//! Waking: a shard about to block marks itself asleep; a shard that has just
//! published frames to a sleeping shard writes to that shard's eventfd,
//! which the sleeper polls from its io_uring. Both sides put a full fence
//! between their store and their load, so either the sleeper sees the
//! frames or the producer sees the mark.

use crate::rules::FastSet;
use std::cell::UnsafeCell;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{fence, AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

/// Bytes of frame one slot holds (the slot is 2 KiB with its header).
pub const SLOT_DATA: usize = 2044;

#[repr(C, align(64))]
struct Slot {
    iface: u16,
    len: u16,
    data: [u8; SLOT_DATA],
}

/// An index on a cache line of its own.
#[repr(align(64))]
struct Index(AtomicU32);

struct Lane {
    slots: Box<[UnsafeCell<Slot>]>,
    /// Next slot the consumer reads.
    head: Index,
    /// Next slot the producer writes, as published.
    tail: Index,
    mask: u32,
}

// SAFETY: slots from `head` up to `tail` belong to the consumer, the others
// to the producer; each side is one `Producer` or `Consumer`, which are not
// Clone, and each crosses the boundary only through the Release store and
// Acquire load of the index it advances.
unsafe impl Sync for Lane {}
// SAFETY: as above; the slots are plain bytes.
unsafe impl Send for Lane {}

/// The writing end of a lane.
pub struct Producer {
    lane: Arc<Lane>,
    tail: u32,
    /// The consumer's head when last read: the producer rereads it only
    /// when the lane looks full.
    head: u32,
    /// Pushed since the last publish.
    unpublished: bool,
    /// Published since the consumer was last told (see [`Handoff::flush`]).
    to_wake: bool,
}

/// The reading end of a lane.
pub struct Consumer {
    lane: Arc<Lane>,
    /// Next slot to read.
    read: u32,
    /// Slots below `read` not yet given back (see [`Consumer::release`]).
    unreleased: bool,
}

/// A lane of `slots` slots (a power of two).
fn lane(slots: u32) -> (Producer, Consumer) {
    let slots = slots.max(2).next_power_of_two();
    let lane = Arc::new(Lane {
        slots: (0..slots)
            .map(|_| {
                UnsafeCell::new(Slot {
                    iface: 0,
                    len: 0,
                    data: [0; SLOT_DATA],
                })
            })
            .collect(),
        head: Index(AtomicU32::new(0)),
        tail: Index(AtomicU32::new(0)),
        mask: slots - 1,
    });
    (
        Producer {
            lane: lane.clone(),
            tail: 0,
            head: 0,
            unpublished: false,
            to_wake: false,
        },
        Consumer {
            lane,
            read: 0,
            unreleased: false,
        },
    )
}

impl Producer {
    /// Copies `frame`, received on interface slot `iface`, into the lane;
    /// false when the lane is full or the frame longer than a slot.
    fn push(&mut self, iface: u16, frame: &[u8]) -> bool {
        let Ok(len) = u16::try_from(frame.len()) else {
            return false;
        };
        if frame.len() > SLOT_DATA {
            return false;
        }
        if self.tail.wrapping_sub(self.head) > self.lane.mask {
            self.head = self.lane.head.0.load(Ordering::Acquire);
            if self.tail.wrapping_sub(self.head) > self.lane.mask {
                return false;
            }
        }
        let cell = &self.lane.slots[(self.tail & self.lane.mask) as usize];
        // SAFETY: the slot at `tail` is not between the consumer's head and
        // the published tail (checked above), so it is the producer's.
        let slot = unsafe { &mut *cell.get() };
        slot.iface = iface;
        slot.len = len;
        slot.data[..frame.len()].copy_from_slice(frame);
        self.tail = self.tail.wrapping_add(1);
        self.unpublished = true;
        true
    }

    /// Whether every frame pushed has been read and released by the
    /// consumer (so it has also sent them).
    fn idle(&self) -> bool {
        !self.unpublished && self.lane.head.0.load(Ordering::Acquire) == self.tail
    }

    /// Makes every pushed frame visible to the consumer; true if there were
    /// any.
    fn publish(&mut self) -> bool {
        if !self.unpublished {
            return false;
        }
        self.unpublished = false;
        self.to_wake = true;
        self.lane.tail.0.store(self.tail, Ordering::Release);
        true
    }
}

impl Consumer {
    /// Whether frames wait to be read.
    fn pending(&self) -> bool {
        self.lane.tail.0.load(Ordering::Acquire) != self.read
    }

    /// Runs `f` on up to `max` frames (interface slot, bytes), oldest first.
    /// Their slots stay taken until [`Consumer::release`]. Returns how many
    /// there were.
    fn drain(&mut self, max: u32, mut f: impl FnMut(u16, &[u8])) -> u32 {
        let tail = self.lane.tail.0.load(Ordering::Acquire);
        let n = tail.wrapping_sub(self.read).min(max);
        for k in 0..n {
            let cell = &self.lane.slots[(self.read.wrapping_add(k) & self.lane.mask) as usize];
            // SAFETY: the slot is below the published tail and at or past
            // the published head: the producer wrote it before its Release
            // store of the tail, which the Acquire load above saw, and will
            // not touch it until the head moves past it.
            let slot = unsafe { &*cell.get() };
            let len = usize::from(slot.len).min(SLOT_DATA);
            f(slot.iface, &slot.data[..len]);
        }
        if n > 0 {
            self.read = self.read.wrapping_add(n);
            self.unreleased = true;
        }
        n
    }

    /// Gives back the slots of every frame read so far.
    fn release(&mut self) {
        if self.unreleased {
            self.unreleased = false;
            self.lane.head.0.store(self.read, Ordering::Release);
        }
    }
}

/// A shard's wake-up: an eventfd and the mark that it is about to block.
pub struct Waker {
    fd: OwnedFd,
    asleep: AtomicBool,
}

impl Waker {
    fn new() -> io::Result<Waker> {
        // SAFETY: plain eventfd creation.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Waker {
            // SAFETY: just created, owned by nobody else.
            fd: unsafe { OwnedFd::from_raw_fd(raw) },
            asleep: AtomicBool::new(false),
        })
    }

    /// Wakes the shard if it said it is about to block.
    fn wake(&self) {
        if self.asleep.load(Ordering::SeqCst) && self.asleep.swap(false, Ordering::SeqCst) {
            let one = 1u64.to_ne_bytes();
            // SAFETY: writes 8 bytes from a live buffer to our eventfd.
            // Failure (EAGAIN: the counter is near overflow) means a wake-up
            // is pending anyway.
            let _ = unsafe { libc::write(self.fd.as_raw_fd(), one.as_ptr().cast(), 8) };
        }
    }
}

/// One shard's ends of the lanes: to every other shard and from it.
pub struct Handoff {
    /// This shard's index.
    pub id: usize,
    /// Number of shards.
    pub shards: usize,
    /// Lane to shard i (None for this shard).
    out: Vec<Option<Producer>>,
    inbox: Vec<Consumer>,
    /// Every shard's waker, by shard.
    wakers: Vec<Arc<Waker>>,
}

/// Slots per lane for `shards` shards: 2,048 with two shards, fewer with
/// more, at least 64. The n(n-1) lanes of 2 KiB slots take 8 MiB for 2
/// shards, 24 MiB for 4, 30 MiB for 16, 124 MiB for 32 and 504 MiB for 64.
fn lane_slots(shards: usize) -> u32 {
    let lanes = (shards * shards.saturating_sub(1)).max(1);
    let per = (16_384 / lanes).max(64);
    let pow = if per.is_power_of_two() {
        per
    } else {
        per.next_power_of_two() / 2
    };
    u32::try_from(pow.min(2048)).unwrap_or(2048)
}

/// The lanes between `shards` shards: element i is shard i's.
pub fn mesh(shards: usize) -> io::Result<Vec<Handoff>> {
    let wakers: Vec<Arc<Waker>> = (0..shards)
        .map(|_| Waker::new().map(Arc::new))
        .collect::<io::Result<_>>()?;
    let mut set: Vec<Handoff> = (0..shards)
        .map(|id| Handoff {
            id,
            shards,
            out: (0..shards).map(|_| None).collect(),
            inbox: Vec::new(),
            wakers: wakers.clone(),
        })
        .collect();
    let slots = lane_slots(shards);
    for from in 0..shards {
        for to in (0..shards).filter(|&to| to != from) {
            let (p, c) = lane(slots);
            set[from].out[to] = Some(p);
            set[to].inbox.push(c);
        }
    }
    Ok(set)
}

impl Handoff {
    /// Copies a frame into the lane to shard `to`; false when it is full.
    pub fn push(&mut self, to: usize, iface: u16, frame: &[u8]) -> bool {
        match self.out.get_mut(to) {
            Some(Some(p)) => p.push(iface, frame),
            _ => false,
        }
    }

    /// Whether everything this shard queued to shard `to` has been taken
    /// and sent: only then may this shard run `to`'s frames itself without
    /// overtaking frames of the same flow still in the lane.
    pub fn lane_idle(&self, to: usize) -> bool {
        matches!(self.out.get(to), Some(Some(p)) if p.idle())
    }

    /// Publishes what was pushed and wakes the shards that got frames.
    pub fn flush(&mut self) {
        // Every lane's tail first, then one fence, then the asleep marks:
        // a mark read before some lane's tail store could miss a sleeper
        // that had looked at that lane before the store.
        let mut any = false;
        for p in self.out.iter_mut().flatten() {
            any |= p.publish();
        }
        if !any {
            return;
        }
        fence(Ordering::SeqCst);
        for (p, w) in self.out.iter_mut().zip(&self.wakers) {
            if let Some(p) = p.as_mut().filter(|p| p.to_wake) {
                p.to_wake = false;
                w.wake();
            }
        }
    }

    /// Runs `f` on up to `max` frames from each other shard; returns how
    /// many there were and whether any lane has more. Call
    /// [`Handoff::release`] once they are sent.
    pub fn drain(&mut self, max: u32, mut f: impl FnMut(u16, &[u8])) -> (u32, bool) {
        let mut total = 0;
        let mut more = false;
        for c in &mut self.inbox {
            let n = c.drain(max, &mut f);
            total += n;
            more |= n == max && c.pending();
        }
        (total, more)
    }

    /// Tells the other shards that the frames drained so far are sent.
    pub fn release(&mut self) {
        for c in &mut self.inbox {
            c.release();
        }
    }

    /// Marks this shard as about to block. False (and not marked) when
    /// frames are already waiting: the shard should look again instead.
    pub fn sleep(&self) -> bool {
        let w = &self.wakers[self.id];
        w.asleep.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if self.inbox.iter().any(Consumer::pending) {
            w.asleep.store(false, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Clears the mark after waking up.
    pub fn awake(&self) {
        self.wakers[self.id].asleep.store(false, Ordering::Relaxed);
    }

    /// This shard's eventfd, to poll.
    pub fn wake_fd(&self) -> RawFd {
        self.wakers[self.id].fd.as_raw_fd()
    }

    /// Resets this shard's eventfd after a wake-up.
    pub fn clear_wake(&self) {
        let mut v = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a live buffer from our eventfd
        // (non-blocking: EAGAIN when already clear).
        let _ = unsafe { libc::read(self.wake_fd(), v.as_mut_ptr().cast(), 8) };
    }
}

/// The shard that owns the connection of `frame` (an Ethernet frame as the
/// XDP program redirects them: untagged IPv4 or IPv6), out of `shards`:
/// the packet sockets' fanout rule. For IPv4, the client is the source when
/// the destination is a VIP and the destination otherwise; IPv6 goes to
/// shard 0, as the fanout program sends it.
pub fn owner(frame: &[u8], vips: &FastSet<IpAddr>, shards: usize) -> usize {
    if shards <= 1 || frame.len() < 34 || frame[12..14] != [0x08, 0x00] {
        return 0;
    }
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    let l4 = 14 + ihl;
    if frame.len() < l4 + 4 {
        return 0;
    }
    let addr = |at: usize| Ipv4Addr::new(frame[at], frame[at + 1], frame[at + 2], frame[at + 3]);
    let port = |at: usize| u16::from_be_bytes([frame[at], frame[at + 1]]);
    let (src, dst) = (addr(26), addr(30));
    let hash = if vips.contains(&IpAddr::V4(dst)) {
        super::fanout::flow_hash(src, port(l4))
    } else {
        super::fanout::flow_hash(dst, port(l4 + 2))
    };
    hash as usize % shards
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_keeps_order_and_refuses_when_full() {
        let (mut p, mut c) = lane(4);
        for i in 0..4u8 {
            assert!(p.push(u16::from(i), &[i; 10]));
        }
        assert!(!p.push(9, &[9; 10]), "a fifth frame in four slots");
        // Nothing is visible before publish.
        assert_eq!(c.drain(10, |_, _| panic!("unpublished frame read")), 0);
        assert!(p.publish());
        let mut seen = Vec::new();
        assert_eq!(c.drain(3, |iface, b| seen.push((iface, b.to_vec()))), 3);
        assert_eq!(seen[0], (0, vec![0; 10]));
        assert_eq!(seen[2], (2, vec![2; 10]));
        // Read, but not released: the slots are still taken.
        assert!(!p.push(7, &[0; 3]));
        assert!(!p.idle());
        c.release();
        // Three slots are free again.
        for i in 0..3u8 {
            assert!(p.push(7, &[i + 10; 3]));
        }
        assert!(!p.push(7, &[0; 3]));
        p.publish();
        seen.clear();
        assert_eq!(c.drain(10, |iface, b| seen.push((iface, b.to_vec()))), 4);
        assert_eq!(seen[0], (3, vec![3; 10]));
        assert_eq!(seen[3], (7, vec![12; 3]));
        assert!(!c.pending());
        assert!(!p.idle(), "read but not released");
        c.release();
        assert!(p.idle());
    }

    #[test]
    fn lane_refuses_frames_longer_than_a_slot() {
        let (mut p, _c) = lane(2);
        assert!(!p.push(0, &vec![0; SLOT_DATA + 1]));
        assert!(p.push(0, &vec![0; SLOT_DATA]));
    }

    #[test]
    fn lane_across_threads_loses_nothing() {
        let (mut p, mut c) = lane(64);
        let n = 100_000u32;
        let t = std::thread::spawn(move || {
            let mut i = 0u32;
            while i < n {
                if p.push(0, &i.to_le_bytes()) {
                    i += 1;
                } else {
                    p.publish();
                    std::thread::yield_now();
                }
            }
            p.publish();
        });
        let mut next = 0u32;
        let mut spins = 0u64;
        while next < n && spins < 100_000_000 {
            c.drain(32, |_, b| {
                assert_eq!(b, next.to_le_bytes());
                next += 1;
            });
            c.release();
            spins += 1;
        }
        t.join().unwrap();
        assert_eq!(next, n);
    }

    #[test]
    fn sleeping_shard_is_woken_once_and_not_when_frames_wait() {
        let mut m = mesh(2).unwrap();
        let (a, b) = m.split_at_mut(1);
        let (a, b) = (&mut a[0], &mut b[0]);
        assert!(b.sleep(), "nothing waits: may block");
        assert!(a.push(1, 0, &[1, 2, 3]));
        a.flush();
        // The eventfd now reads 1, once.
        let mut v = [0u8; 8];
        // SAFETY: reads 8 bytes into a live buffer.
        let r = unsafe { libc::read(b.wake_fd(), v.as_mut_ptr().cast(), 8) };
        assert_eq!(r, 8);
        assert_eq!(u64::from_ne_bytes(v), 1);
        // A frame waits: the shard must not block.
        assert!(!b.sleep());
        let (n, more) = b.drain(8, |iface, bytes| {
            assert_eq!((iface, bytes), (0, &[1u8, 2, 3][..]));
        });
        assert_eq!((n, more), (1, false));
        assert!(!a.lane_idle(1), "drained, not yet released");
        b.release();
        assert!(a.lane_idle(1));
        // Awake shards get no write.
        b.awake();
        assert!(a.push(1, 0, &[4]));
        a.flush();
        // SAFETY: as above.
        let r = unsafe { libc::read(b.wake_fd(), v.as_mut_ptr().cast(), 8) };
        assert_eq!(r, -1, "no wake-up for a shard that is not asleep");
    }

    #[test]
    fn every_sleeping_shard_that_got_frames_is_woken() {
        let mut m = mesh(3).unwrap();
        assert!(m[1].sleep() && m[2].sleep());
        assert!(m[0].push(1, 0, &[1]) && m[0].push(2, 0, &[2]));
        m[0].flush();
        for shard in [1, 2] {
            let mut v = [0u8; 8];
            // SAFETY: reads 8 bytes into a live buffer.
            let r = unsafe { libc::read(m[shard].wake_fd(), v.as_mut_ptr().cast(), 8) };
            assert_eq!(r, 8, "shard {shard} was not woken");
        }
        // A shard with frames waiting does not sleep; once it has taken
        // them, it may, and a flush with nothing published wakes nobody.
        assert!(!m[1].sleep());
        assert_eq!(m[1].drain(8, |_, b| assert_eq!(b, [1])), (1, false));
        m[1].release();
        assert!(m[1].sleep());
        m[0].flush();
        let mut v = [0u8; 8];
        // SAFETY: as above.
        let r = unsafe { libc::read(m[1].wake_fd(), v.as_mut_ptr().cast(), 8) };
        assert_eq!(r, -1);
    }

    fn frame(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 8];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[23] = 17;
        f[26..30].copy_from_slice(&src);
        f[30..34].copy_from_slice(&dst);
        f[34..36].copy_from_slice(&sport.to_be_bytes());
        f[36..38].copy_from_slice(&dport.to_be_bytes());
        f
    }

    #[test]
    fn both_directions_of_a_nat_connection_have_one_owner() {
        let vip = [198, 19, 0, 1];
        let mut vips = FastSet::default();
        vips.insert(IpAddr::V4(Ipv4Addr::from(vip)));
        let mut owners = [0usize; 4];
        for port in 1000..1400u16 {
            let client = [198, 18, 0, (port % 200) as u8];
            let inbound = frame(client, port, vip, 80);
            let reply = frame([198, 18, 1, 11], 8080, client, port);
            let o = owner(&inbound, &vips, 4);
            assert_eq!(o, owner(&reply, &vips, 4));
            assert_eq!(
                o,
                super::super::fanout::flow_hash(Ipv4Addr::from(client), port) as usize % 4
            );
            owners[o] += 1;
        }
        assert!(owners.iter().all(|&n| n > 50), "spread: {owners:?}");
        // IPv6, short and non-IP frames: shard 0.
        let mut v6 = frame([1; 4], 1, vip, 80);
        v6[12..14].copy_from_slice(&[0x86, 0xdd]);
        assert_eq!(owner(&v6, &vips, 4), 0);
        assert_eq!(owner(&[0u8; 20], &vips, 4), 0);
    }

    #[test]
    fn lanes_stay_bounded() {
        assert_eq!(lane_slots(2), 2048);
        assert_eq!(lane_slots(4), 1024);
        assert_eq!(lane_slots(64), 64);
    }
}
