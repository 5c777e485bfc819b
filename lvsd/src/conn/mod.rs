//! The connection table of one shard.
//!
//! Every connection has two keys, as in IPVS and DPVS: the inbound key
//! (protocol, CIP:cport, VIP:vport) that the client's packets carry, and the
//! outbound key (protocol, RIP:rport, CIP:cport) that a NAT real server's
//! replies carry.
//!
//! Layout, sized in memory rather than in buckets: one [`Table`] per address
//! family holds fixed-size entries (52 bytes for IPv4) in a pool reserved
//! for the capacity and resident as far as used (`heads::Pool`), and two
//! bucket arrays of `u32` heads, one per key, mapped for the table's
//! capacity (rounded up to a power of two) and used as far as the number of
//! connections calls for (linear hashing, see [`Table`]; a page of the
//! arrays becomes resident when first used). Entries chain through `u32`
//! links stored in the entries themselves, so an IPv4 connection costs 52
//! bytes plus two bucket slots per three entries or more: 60 to 63 bytes in
//! a large table. Destinations are referred to by a `u32` index into a
//! small per-shard registry instead of a pointer.
//!
//! Invariants:
//! - The table never holds more than `capacity` entries; when full, new
//!   connections are refused (the caller counts the drop) and existing ones
//!   carry on, as katran does under a flood.
//! - Every entry is counted exactly once in its destination's ActiveConn
//!   (the handshake's states and ESTABLISHED, as IPVS) or InActConn (any
//!   other state, and UDP), from insertion to removal.
//! - Every live entry is on exactly one timer-wheel list, no later than its
//!   deadline. Time is an argument: the wheel has [`TICK_MS`] slots; a
//!   refresh that moves a deadline later only changes the deadline, and the
//!   wheel re-files the entry lazily when its old slot comes up, so most
//!   packets never touch the wheel; one that moves it earlier (a TCP state
//!   with a shorter timeout: ESTABLISHED to FIN_WAIT, CLOSE...) re-files the
//!   entry at once, which the lists' back links make O(1). Entries leave the
//!   table through expiry, which walks the wheel, and through
//!   [`ConnTable::remove`] (a SYN reusing a closed connection's ports).

mod heads;
pub mod state;

use crate::rules::{DestState, FastMap, ServiceState};
use heads::{Heads, Pool};
use lvsd_proto::{ConnInfo, Method, Protocol, Timeouts};
use state::{next_tcp, Dir, Event, State};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// Width of one timer-wheel slot.
pub const TICK_MS: u64 = 250;
/// Slots in the wheel: 4096 * 250 ms = 1024 s, above the longest default
/// timeout (900 s). Longer deadlines are re-filed each turn.
const WHEEL_SLOTS: usize = 4096;
/// The end of a chain.
const NIL: u32 = u32::MAX;
/// Marks a wheel back link as a slot number rather than an entry index
/// (entry indices stay below it: [`MAX_CAPACITY`]).
const SLOT_TAG: u32 = 1 << 31;
/// Entry flag bits.
const F_INACTIVE: u8 = 1;
const F_FREE: u8 = 2;
const F_REPLY_KEY: u8 = 4;
/// The forwarding method sits in flag bits 3 and 4.
const METHOD_SHIFT: u8 = 3;

/// One direction's lookup key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    pub protocol: Protocol,
    pub src: SocketAddr,
    pub dst: SocketAddr,
}

/// An address family's address as the table stores it.
pub trait Addr: Copy + Eq + Default {
    fn from_ip(ip: IpAddr) -> Option<Self>;
    fn to_ip(self) -> IpAddr;
    /// Bits for hashing.
    fn mix(self) -> u64;
}

impl Addr for u32 {
    fn from_ip(ip: IpAddr) -> Option<Self> {
        match ip {
            IpAddr::V4(a) => Some(u32::from(a)),
            IpAddr::V6(_) => None,
        }
    }
    fn to_ip(self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(self))
    }
    fn mix(self) -> u64 {
        u64::from(self)
    }
}

impl Addr for [u8; 16] {
    fn from_ip(ip: IpAddr) -> Option<Self> {
        match ip {
            IpAddr::V6(a) => Some(a.octets()),
            IpAddr::V4(_) => None,
        }
    }
    fn to_ip(self) -> IpAddr {
        IpAddr::V6(Ipv6Addr::from(self))
    }
    fn mix(self) -> u64 {
        let v = u128::from_be_bytes(self);
        // Truncation intended: fold both halves into the hash input.
        #[allow(clippy::cast_possible_truncation)]
        let (hi, lo) = ((v >> 64) as u64, v as u64);
        hi.rotate_left(29) ^ lo
    }
}

/// MurmurHash3's 64-bit finaliser: every input bit reaches every output
/// bit, so the low bits the bucket mask keeps depend on ports and addresses
/// alike.
fn fmix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// A key's hash under a table's `seed`: random per table, as IPVS seeds
/// its jhash, so no one can work out off line which keys share a bucket and
/// send them to make one chain long.
fn hash(seed: u64, protocol: u8, a: u64, ap: u16, b: u64, bp: u16) -> u64 {
    let x = a ^ (u64::from(ap) << 32) ^ (u64::from(protocol) << 56);
    let y = b ^ (u64::from(bp) << 32);
    fmix(x ^ fmix(y ^ seed))
}

/// A random 64-bit value (from the standard library's random hash keys).
fn random_seed() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(0x6c76_7364_u64)
}

/// One connection as stored: 52 bytes for IPv4.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
struct Entry<A> {
    cip: A,
    vip: A,
    rip: A,
    cport: u16,
    vport: u16,
    rport: u16,
    protocol: u8,
    state: u8,
    /// F_* bits, and the method at METHOD_SHIFT.
    flags: u8,
    client_iface: u8,
    client_mac: [u8; 6],
    /// Deadline in wheel ticks.
    expires: u32,
    /// Index in the destination registry.
    dest: u32,
    in_next: u32,
    out_next: u32,
    timer_next: u32,
    /// The entry before this one on its wheel list, or [`SLOT_TAG`] and the
    /// slot for the list's first entry.
    timer_prev: u32,
}

fn method_code(m: Method) -> u8 {
    match m {
        Method::Nat => 0,
        Method::Dr => 1,
        Method::Tun => 2,
        Method::Local => 3,
    }
}

fn method_of(code: u8) -> Method {
    match code & 3 {
        0 => Method::Nat,
        1 => Method::Dr,
        2 => Method::Tun,
        _ => Method::Local,
    }
}

const STATES: [State; 12] = [
    State::None,
    State::Established,
    State::SynSent,
    State::SynRecv,
    State::FinWait,
    State::TimeWait,
    State::Close,
    State::CloseWait,
    State::LastAck,
    State::Listen,
    State::SynAck,
    State::Udp,
];

fn state_of(code: u8) -> State {
    STATES
        .get(usize::from(code))
        .copied()
        .unwrap_or(State::None)
}

fn protocol_of(code: u8) -> Protocol {
    if code == 17 {
        Protocol::Udp
    } else {
        Protocol::Tcp
    }
}

fn ticks(ms: u64) -> u32 {
    u32::try_from(ms.div_ceil(TICK_MS)).unwrap_or(u32::MAX)
}

/// A destination, its service, and how many connections point at it.
type Held = (Arc<DestState>, Arc<ServiceState>, u32);

/// The destinations this shard's connections point at, by index.
#[derive(Default)]
struct Registry {
    slots: Vec<Option<Held>>,
    free: Vec<u32>,
    by_ptr: FastMap<usize, u32>,
}

impl Registry {
    fn acquire(&mut self, dest: &Arc<DestState>, service: &Arc<ServiceState>) -> u32 {
        let key = Arc::as_ptr(dest) as usize;
        if let Some(&i) = self.by_ptr.get(&key) {
            if let Some(Some(slot)) = self.slots.get_mut(i as usize) {
                slot.2 += 1;
                return i;
            }
        }
        let entry = Some((dest.clone(), service.clone(), 1));
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = entry;
                i
            }
            None => {
                self.slots.push(entry);
                u32::try_from(self.slots.len() - 1).unwrap_or(NIL)
            }
        };
        self.by_ptr.insert(key, i);
        i
    }

    fn release(&mut self, i: u32) {
        let Some(slot) = self.slots.get_mut(i as usize) else {
            return;
        };
        let gone = match slot {
            Some((dest, _, n)) => {
                *n -= 1;
                (*n == 0).then_some(Arc::as_ptr(dest) as usize)
            }
            None => None,
        };
        if let Some(key) = gone {
            *slot = None;
            self.by_ptr.remove(&key);
            self.free.push(i);
        }
    }

    fn get(&self, i: u32) -> Option<(&Arc<DestState>, &Arc<ServiceState>)> {
        match self.slots.get(i as usize) {
            Some(Some((d, s, _))) => Some((d, s)),
            _ => None,
        }
    }
}

/// The connections of one address family.
///
/// The bucket arrays grow with the table by linear hashing: `level_mask + 1`
/// buckets plus the `split` first ones of the next size are in use, and
/// whenever an insert leaves more than three entries for every four
/// buckets, the bucket at `split` is split in two (its chains re-linked
/// between it and bucket `split + level_mask + 1`), up to the capacity's
/// buckets. So a packet's bucket read stays within the part of the arrays
/// the table's size calls for (in the cache, for a few thousand flows),
/// and the table is never rehashed all at once.
struct Table<A> {
    /// Entries ever used, live or free; room for the table's capacity.
    entries: Pool<Entry<A>>,
    /// Head of the list of free entries (linked through `in_next`).
    free: u32,
    len: usize,
    /// Chain heads by inbound and by outbound key; `used()` of each are in
    /// use (the rest unwritten).
    in_buckets: Heads,
    out_buckets: Heads,
    /// Buckets of the current level, minus one (a power of two minus one).
    level_mask: u64,
    /// The buckets below this one have been split into the next level.
    split: usize,
    wheel: Vec<u32>,
    /// The wheel has been processed up to (not including) this tick.
    wheel_tick: u64,
    /// The key hash's random seed.
    seed: u64,
}

/// Buckets a table starts with (or fewer, for a smaller capacity).
const FIRST_BUCKETS: usize = 1024;

impl<A: Addr> Table<A> {
    /// A table for up to `capacity` entries, with buckets for `buckets`.
    fn new(capacity: usize, buckets: usize, now: u64) -> Self {
        let slots = buckets.clamp(16, 1 << 31).next_power_of_two();
        let first = slots.min(FIRST_BUCKETS);
        let mut in_buckets = Heads::zeroed(slots);
        let mut out_buckets = Heads::zeroed(slots);
        in_buckets[..first].fill(NIL);
        out_buckets[..first].fill(NIL);
        Table {
            entries: Pool::with_capacity(capacity),
            free: NIL,
            len: 0,
            in_buckets,
            out_buckets,
            level_mask: first as u64 - 1,
            split: 0,
            wheel: vec![NIL; WHEEL_SLOTS],
            wheel_tick: now / TICK_MS,
            seed: random_seed(),
        }
    }

    /// Buckets in use.
    fn used(&self) -> usize {
        usize::try_from(self.level_mask).unwrap_or(0) + 1 + self.split
    }

    /// The bucket a key's hash falls in.
    fn bucket(&self, h: u64) -> usize {
        let b = usize::try_from(h & self.level_mask).unwrap_or(0);
        if b < self.split {
            usize::try_from(h & (self.level_mask << 1 | 1)).unwrap_or(0)
        } else {
            b
        }
    }

    fn in_hash(seed: u64, e: &Entry<A>) -> u64 {
        hash(seed, e.protocol, e.cip.mix(), e.cport, e.vip.mix(), e.vport)
    }

    fn out_hash(seed: u64, e: &Entry<A>) -> u64 {
        hash(seed, e.protocol, e.rip.mix(), e.rport, e.cip.mix(), e.cport)
    }

    /// Splits buckets until there are four for every three entries, or
    /// no buckets are left.
    fn grow(&mut self) {
        while self.len * 4 > self.used() * 3 && self.used() < self.in_buckets.len() {
            self.split_one();
        }
    }

    /// Splits the bucket at `split`.
    fn split_one(&mut self) {
        let from = self.split;
        let half = self.level_mask + 1;
        let to = from + usize::try_from(half).unwrap_or(0);
        let seed = self.seed;
        let heads = [&mut self.in_buckets, &mut self.out_buckets];
        for (k, head) in heads.into_iter().enumerate() {
            let mut i = std::mem::replace(&mut head[from], NIL);
            head[to] = NIL;
            while i != NIL {
                let e = &mut self.entries[i as usize];
                let (h, link) = if k == 0 {
                    (Self::in_hash(seed, e), &mut e.in_next)
                } else {
                    (Self::out_hash(seed, e), &mut e.out_next)
                };
                let next = *link;
                let b = if h & half == 0 { from } else { to };
                *link = head[b];
                head[b] = i;
                i = next;
            }
        }
        self.split += 1;
        if self.split as u64 == half {
            self.level_mask = self.level_mask << 1 | 1;
            self.split = 0;
        }
    }

    fn in_bucket(&self, p: u8, cip: A, cport: u16, vip: A, vport: u16) -> usize {
        self.bucket(hash(self.seed, p, cip.mix(), cport, vip.mix(), vport))
    }

    fn out_bucket(&self, p: u8, rip: A, rport: u16, cip: A, cport: u16) -> usize {
        self.bucket(hash(self.seed, p, rip.mix(), rport, cip.mix(), cport))
    }

    fn lookup_in(&self, p: u8, cip: A, cport: u16, vip: A, vport: u16) -> Option<u32> {
        let mut i = self.in_buckets[self.in_bucket(p, cip, cport, vip, vport)];
        while let Some(e) = self.entries.get(i as usize) {
            if e.cip == cip
                && e.cport == cport
                && e.vip == vip
                && e.vport == vport
                && e.protocol == p
            {
                return Some(i);
            }
            i = e.in_next;
        }
        None
    }

    fn lookup_out(&self, p: u8, rip: A, rport: u16, cip: A, cport: u16) -> Option<u32> {
        let mut i = self.out_buckets[self.out_bucket(p, rip, rport, cip, cport)];
        while let Some(e) = self.entries.get(i as usize) {
            if e.rip == rip
                && e.rport == rport
                && e.cip == cip
                && e.cport == cport
                && e.protocol == p
            {
                return Some(i);
            }
            i = e.out_next;
        }
        None
    }

    /// Files `e` and returns its index. There is always room while the
    /// caller holds fewer connections than its capacity: every pool slot is
    /// live or on the free list, and each family's pool is as large as the
    /// whole capacity.
    fn insert(&mut self, mut e: Entry<A>) -> u32 {
        let i = if self.free != NIL {
            let i = self.free;
            self.free = self.entries[i as usize].in_next;
            i
        } else {
            match self.entries.push(e) {
                Ok(i) => u32::try_from(i).unwrap_or(NIL),
                Err(_) => {
                    debug_assert!(false, "a full pool under the capacity");
                    return NIL;
                }
            }
        };
        let b = self.in_bucket(e.protocol, e.cip, e.cport, e.vip, e.vport);
        e.in_next = self.in_buckets[b];
        self.in_buckets[b] = i;
        if e.flags & F_REPLY_KEY != 0 {
            let b = self.out_bucket(e.protocol, e.rip, e.rport, e.cip, e.cport);
            e.out_next = self.out_buckets[b];
            self.out_buckets[b] = i;
        } else {
            e.out_next = NIL;
        }
        e.timer_next = NIL;
        self.entries[i as usize] = e;
        self.len += 1;
        self.file(i);
        self.grow();
        i
    }

    /// Puts entry `i` on the wheel list of its deadline's slot.
    fn file(&mut self, i: u32) {
        // Never into a slot already passed, nor more than one turn ahead:
        // such entries are re-filed when their slot comes up.
        let last = self.wheel_tick + WHEEL_SLOTS as u64 - 1;
        let tick = u64::from(self.entries[i as usize].expires).clamp(self.wheel_tick, last);
        let slot = usize::try_from(tick % WHEEL_SLOTS as u64).unwrap_or(0);
        let tag = SLOT_TAG | u32::try_from(slot).unwrap_or(0);
        let next = self.wheel[slot];
        if next != NIL {
            self.entries[next as usize].timer_prev = i;
        }
        let e = &mut self.entries[i as usize];
        e.timer_next = next;
        e.timer_prev = tag;
        self.wheel[slot] = i;
    }

    /// Takes entry `i` off its wheel list (it must be on one).
    fn unfile(&mut self, i: u32) {
        let Entry {
            timer_prev: prev,
            timer_next: next,
            ..
        } = self.entries[i as usize];
        if prev & SLOT_TAG != 0 {
            self.wheel[(prev & !SLOT_TAG) as usize] = next;
        } else {
            self.entries[prev as usize].timer_next = next;
        }
        if next != NIL {
            self.entries[next as usize].timer_prev = prev;
        }
    }

    /// Takes live entry `i` off its wheel list and key chains and frees it.
    fn take(&mut self, i: u32) -> Option<Entry<A>> {
        let live = self
            .entries
            .get(i as usize)
            .is_some_and(|e| e.flags & F_FREE == 0);
        live.then(|| {
            self.unfile(i);
            self.unlink(i)
        })
    }

    /// Re-files entry `i` after its deadline moved earlier.
    fn refile(&mut self, i: u32) {
        self.unfile(i);
        self.file(i);
    }

    /// Unlinks entry `i` from its key chains and frees it; returns it.
    fn unlink(&mut self, i: u32) -> Entry<A> {
        let e = self.entries[i as usize];
        let b = self.in_bucket(e.protocol, e.cip, e.cport, e.vip, e.vport);
        unlink_chain(&mut self.in_buckets[b], &mut self.entries, i, |x| {
            &mut x.in_next
        });
        if e.flags & F_REPLY_KEY != 0 {
            let b = self.out_bucket(e.protocol, e.rip, e.rport, e.cip, e.cport);
            unlink_chain(&mut self.out_buckets[b], &mut self.entries, i, |x| {
                &mut x.out_next
            });
        }
        let slot = &mut self.entries[i as usize];
        slot.flags = F_FREE;
        slot.in_next = self.free;
        self.free = i;
        self.len -= 1;
        e
    }

    /// Walks the wheel up to `now`; returns the entries that expired.
    fn expire(&mut self, now: u64, mut gone: impl FnMut(Entry<A>)) {
        let now_tick = now / TICK_MS;
        while self.wheel_tick < now_tick {
            let slot = usize::try_from(self.wheel_tick % WHEEL_SLOTS as u64).unwrap_or(0);
            self.wheel_tick += 1;
            let mut i = std::mem::replace(&mut self.wheel[slot], NIL);
            while i != NIL {
                let next = self.entries[i as usize].timer_next;
                if u64::from(self.entries[i as usize].expires) * TICK_MS <= now {
                    gone(self.unlink(i));
                } else {
                    self.file(i);
                }
                i = next;
            }
        }
    }

    fn live(&self) -> impl Iterator<Item = (u32, &Entry<A>)> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.flags & F_FREE == 0)
            .map(|(i, e)| (u32::try_from(i).unwrap_or(NIL), e))
    }
}

/// Removes `i` from the chain starting at `head`, linked by `link`.
fn unlink_chain<A>(
    head: &mut u32,
    entries: &mut [Entry<A>],
    i: u32,
    link: fn(&mut Entry<A>) -> &mut u32,
) {
    if *head == i {
        *head = *link(&mut entries[i as usize]);
        return;
    }
    let mut p = *head;
    while p != NIL {
        let next = *link(&mut entries[p as usize]);
        if next == i {
            let after = *link(&mut entries[i as usize]);
            *link(&mut entries[p as usize]) = after;
            return;
        }
        p = next;
    }
}

/// A connection as the data path reads it.
#[derive(Debug, Clone, Copy)]
pub struct Conn<'a> {
    pub protocol: Protocol,
    pub method: Method,
    pub state: State,
    pub client: SocketAddr,
    pub vip: SocketAddr,
    /// RIP:rport.
    pub dest_addr: SocketAddr,
    /// Where replies to the client leave: interface slot and next-hop MAC,
    /// learned from the client's first frame.
    pub client_iface: u16,
    pub client_mac: [u8; 6],
    pub dest: &'a Arc<DestState>,
    pub service: &'a Arc<ServiceState>,
    /// Deadline in ms of the shard's clock.
    pub expires: u64,
}

/// What a new connection needs.
pub struct NewConn {
    pub protocol: Protocol,
    pub method: Method,
    pub client: SocketAddr,
    pub vip: SocketAddr,
    pub dest_addr: SocketAddr,
    pub client_iface: u16,
    pub client_mac: [u8; 6],
    pub dest: Arc<DestState>,
    pub service: Arc<ServiceState>,
}

/// A connection's handle, valid until the next expiry pass.
pub type ConnId = usize;

/// IPv6 handles carry this bit.
const V6_BIT: usize = 1 << 32;

/// Why an insert was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertError {
    Full,
    /// Addresses of mixed families, or an interface slot above 255.
    Invalid,
}

/// A shard's connections.
pub struct ConnTable {
    v4: Table<u32>,
    v6: Table<[u8; 16]>,
    registry: Registry,
    capacity: usize,
}

fn proto_code(p: Protocol) -> u8 {
    p.number()
}

/// The most connections one table holds: entry indices are `u32`s below
/// NIL, with room to spare (the configuration refuses more).
pub const MAX_CAPACITY: usize = 1 << 31;

impl ConnTable {
    /// A table for at most `capacity` connections (at most
    /// [`MAX_CAPACITY`]), starting at time `now`. IPv6 connections share the
    /// capacity; their bucket arrays start small.
    pub fn new(capacity: usize, now: u64) -> Self {
        let capacity = capacity.min(MAX_CAPACITY);
        ConnTable {
            v4: Table::new(capacity, capacity, now),
            v6: Table::new(capacity, (capacity / 16).max(16), now),
            registry: Registry::default(),
            capacity,
        }
    }

    pub fn len(&self) -> usize {
        self.v4.len + self.v6.len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The connection whose client packets carry `key` (CIP:cport to VIP:vport).
    #[inline]
    pub fn lookup_in(&self, key: &Key) -> Option<ConnId> {
        let p = proto_code(key.protocol);
        match (key.src.ip(), key.dst.ip()) {
            (IpAddr::V4(c), IpAddr::V4(v)) => self
                .v4
                .lookup_in(
                    p,
                    u32::from(c),
                    key.src.port(),
                    u32::from(v),
                    key.dst.port(),
                )
                .map(|i| i as usize),
            (IpAddr::V6(c), IpAddr::V6(v)) => self
                .v6
                .lookup_in(p, c.octets(), key.src.port(), v.octets(), key.dst.port())
                .map(|i| i as usize | V6_BIT),
            _ => None,
        }
    }

    /// The NAT connection whose replies carry `key` (RIP:rport to CIP:cport).
    #[inline]
    pub fn lookup_out(&self, key: &Key) -> Option<ConnId> {
        let p = proto_code(key.protocol);
        match (key.src.ip(), key.dst.ip()) {
            (IpAddr::V4(r), IpAddr::V4(c)) => self
                .v4
                .lookup_out(
                    p,
                    u32::from(r),
                    key.src.port(),
                    u32::from(c),
                    key.dst.port(),
                )
                .map(|i| i as usize),
            (IpAddr::V6(r), IpAddr::V6(c)) => self
                .v6
                .lookup_out(p, r.octets(), key.src.port(), c.octets(), key.dst.port())
                .map(|i| i as usize | V6_BIT),
            _ => None,
        }
    }

    fn view<A: Addr>(&self, e: &Entry<A>) -> Option<Conn<'_>> {
        if e.flags & F_FREE != 0 {
            return None;
        }
        let (dest, service) = self.registry.get(e.dest)?;
        Some(Conn {
            protocol: protocol_of(e.protocol),
            method: method_of(e.flags >> METHOD_SHIFT),
            state: state_of(e.state),
            client: SocketAddr::new(e.cip.to_ip(), e.cport),
            vip: SocketAddr::new(e.vip.to_ip(), e.vport),
            dest_addr: SocketAddr::new(e.rip.to_ip(), e.rport),
            client_iface: u16::from(e.client_iface),
            client_mac: e.client_mac,
            dest,
            service,
            expires: u64::from(e.expires) * TICK_MS,
        })
    }

    #[inline]
    pub fn get(&self, id: ConnId) -> Option<Conn<'_>> {
        let i = id & !V6_BIT;
        if id & V6_BIT == 0 {
            self.v4.entries.get(i).and_then(|e| self.view(e))
        } else {
            self.v6.entries.get(i).and_then(|e| self.view(e))
        }
    }

    /// Inserts a new connection in its initial state (TCP starts at NONE and
    /// moves on its first packet; UDP is UDP), counted as inactive, as IPVS
    /// binds a new connection to its destination. Only NAT connections get a
    /// reply key: no other method's replies come back through the director.
    pub fn insert(&mut self, c: NewConn, now: u64, t: &Timeouts) -> Result<ConnId, InsertError> {
        if self.len() >= self.capacity {
            return Err(InsertError::Full);
        }
        let client_iface = u8::try_from(c.client_iface).map_err(|_| InsertError::Invalid)?;
        let state = match c.protocol {
            Protocol::Tcp => State::None,
            Protocol::Udp => State::Udp,
        };
        let reply = if c.method == Method::Nat {
            F_REPLY_KEY
        } else {
            0
        };
        let flags = F_INACTIVE | reply | (method_code(c.method) << METHOD_SHIFT);
        let (cip, vip, rip) = (c.client.ip(), c.vip.ip(), c.dest_addr.ip());
        macro_rules! entry {
            ($a:ty) => {
                Entry::<$a> {
                    cip: <$a>::from_ip(cip).ok_or(InsertError::Invalid)?,
                    vip: <$a>::from_ip(vip).ok_or(InsertError::Invalid)?,
                    rip: <$a>::from_ip(rip).ok_or(InsertError::Invalid)?,
                    cport: c.client.port(),
                    vport: c.vip.port(),
                    rport: c.dest_addr.port(),
                    protocol: proto_code(c.protocol),
                    state: state as u8,
                    flags,
                    client_iface,
                    client_mac: c.client_mac,
                    expires: ticks(now + state.timeout_ms(t)),
                    dest: 0,
                    in_next: NIL,
                    out_next: NIL,
                    timer_next: NIL,
                    timer_prev: NIL,
                }
            };
        }
        let id = if cip.is_ipv4() {
            let mut e = entry!(u32);
            e.dest = self.registry.acquire(&c.dest, &c.service);
            self.v4.insert(e) as usize
        } else {
            let mut e = entry!([u8; 16]);
            e.dest = self.registry.acquire(&c.dest, &c.service);
            self.v6.insert(e) as usize | V6_BIT
        };
        c.dest.inactive.fetch_add(1, Relaxed);
        c.dest.bound();
        Ok(id)
    }

    /// Feeds one packet of connection `id` through the state machine and
    /// refreshes its deadline. `tcp_flags` is (syn, fin, ack, rst) for TCP.
    pub fn touch(
        &mut self,
        id: ConnId,
        dir: Dir,
        tcp_flags: Option<(bool, bool, bool, bool)>,
        now: u64,
        t: &Timeouts,
    ) {
        let i = id & !V6_BIT;
        // A deadline moved earlier is re-filed now; one moved later waits
        // for its slot.
        if id & V6_BIT == 0 {
            if touch_entry(
                self.v4.entries.get_mut(i),
                &self.registry,
                dir,
                tcp_flags,
                now,
                t,
            ) {
                self.v4.refile(u32::try_from(i).unwrap_or(NIL));
            }
        } else if touch_entry(
            self.v6.entries.get_mut(i),
            &self.registry,
            dir,
            tcp_flags,
            now,
            t,
        ) {
            self.v6.refile(u32::try_from(i).unwrap_or(NIL));
        }
    }

    /// Removes connection `id` now (a SYN reusing a closed connection's
    /// ports starts a new one).
    pub fn remove(&mut self, id: ConnId) {
        let Ok(i) = u32::try_from(id & !V6_BIT) else {
            return;
        };
        let gone = if id & V6_BIT == 0 {
            self.v4.take(i).map(|e| (e.dest, e.flags))
        } else {
            self.v6.take(i).map(|e| (e.dest, e.flags))
        };
        if let Some((dest, flags)) = gone {
            self.forget(dest, flags);
        }
    }

    /// Removes every connection whose deadline has passed; returns how many.
    /// Call once per batch with the batch's clock.
    pub fn expire(&mut self, now: u64) -> usize {
        let mut gone = Vec::new();
        self.v4.expire(now, |e| gone.push((e.dest, e.flags)));
        self.v6.expire(now, |e| gone.push((e.dest, e.flags)));
        let n = gone.len();
        for (dest, flags) in gone {
            self.forget(dest, flags);
        }
        n
    }

    /// Releases a removed entry's hold on its destination.
    fn forget(&mut self, dest: u32, flags: u8) {
        if let Some((d, _)) = self.registry.get(dest) {
            if flags & F_INACTIVE != 0 {
                d.inactive.fetch_sub(1, Relaxed);
            } else {
                d.active.fetch_sub(1, Relaxed);
            }
            d.unbound();
        }
        self.registry.release(dest);
    }

    /// Removes every connection (shutdown), keeping destination counts right.
    pub fn clear(&mut self) {
        let mut gone = Vec::new();
        let v4: Vec<u32> = self.v4.live().map(|(i, _)| i).collect();
        for i in v4 {
            let e = self.v4.unlink(i);
            gone.push((e.dest, e.flags));
        }
        let v6: Vec<u32> = self.v6.live().map(|(i, _)| i).collect();
        for i in v6 {
            let e = self.v6.unlink(i);
            gone.push((e.dest, e.flags));
        }
        for (dest, flags) in gone {
            self.forget(dest, flags);
        }
        // The wheel's lists ran through the entries just freed.
        self.v4.wheel.fill(NIL);
        self.v6.wheel.fill(NIL);
    }

    /// The entries as `ipvsadm -L -c` lists them.
    pub fn list(&self, now: u64) -> Vec<ConnInfo> {
        let info = |c: Conn| ConnInfo {
            protocol: c.protocol,
            client: c.client,
            vip: c.vip,
            dest: c.dest_addr,
            state: c.state.name().to_string(),
            expires_ms: c.expires.saturating_sub(now),
        };
        let v4 = self.v4.live().filter_map(|(_, e)| self.view(e)).map(info);
        let v6 = self.v6.live().filter_map(|(_, e)| self.view(e)).map(info);
        v4.chain(v6).collect()
    }

    /// Bytes of one IPv4 entry, for reports.
    pub const V4_ENTRY_BYTES: usize = std::mem::size_of::<Entry<u32>>();
}

/// Runs one packet through entry `e`'s state machine and sets its new
/// deadline; true when that deadline is earlier than before.
fn touch_entry<A>(
    e: Option<&mut Entry<A>>,
    registry: &Registry,
    dir: Dir,
    tcp_flags: Option<(bool, bool, bool, bool)>,
    now: u64,
    t: &Timeouts,
) -> bool {
    let Some(e) = e else { return false };
    if e.flags & F_FREE != 0 {
        return false;
    }
    let mut state = state_of(e.state);
    if let Some((syn, fin, ack, rst)) = tcp_flags {
        // A segment with none of the four flags closes the connection,
        // as IPVS's set_tcp_state does (it starts from CLOSE).
        let new = Event::from_flags(syn, fin, ack, rst)
            .map_or(State::Close, |ev| next_tcp(state, dir, ev));
        if new != state {
            let active = new.is_active();
            let inactive = e.flags & F_INACTIVE != 0;
            if let Some((d, _)) = registry.get(e.dest) {
                if inactive && active {
                    d.inactive.fetch_sub(1, Relaxed);
                    d.active.fetch_add(1, Relaxed);
                    e.flags &= !F_INACTIVE;
                } else if !inactive && !active {
                    d.active.fetch_sub(1, Relaxed);
                    d.inactive.fetch_add(1, Relaxed);
                    e.flags |= F_INACTIVE;
                }
            }
            state = new;
            e.state = new as u8;
        }
    }
    let before = e.expires;
    e.expires = ticks(now + state.timeout_ms(t));
    e.expires < before
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::DEFAULT_TIMEOUTS as T;

    fn new_conn(dest: &Arc<DestState>, cport: u16) -> NewConn {
        NewConn {
            protocol: Protocol::Tcp,
            method: Method::Nat,
            client: SocketAddr::from(([198, 18, 0, 2], cport)),
            vip: "198.19.0.100:80".parse().unwrap(),
            dest_addr: "198.18.1.11:8080".parse().unwrap(),
            client_iface: 0,
            client_mac: [2, 0, 0, 0, 0, 1],
            dest: dest.clone(),
            service: Arc::new(ServiceState::new(1)),
        }
    }

    fn flags(syn: bool, fin: bool, ack: bool, rst: bool) -> Option<(bool, bool, bool, bool)> {
        Some((syn, fin, ack, rst))
    }

    #[test]
    fn entry_is_small() {
        assert_eq!(ConnTable::V4_ENTRY_BYTES, 52);
    }

    #[test]
    fn lookup_both_ways_and_counts() {
        let d = Arc::new(DestState::new(1));
        let mut t = ConnTable::new(10, 0);
        let id = t.insert(new_conn(&d, 40000), 0, &T).unwrap();
        let inb = Key {
            protocol: Protocol::Tcp,
            src: "198.18.0.2:40000".parse().unwrap(),
            dst: "198.19.0.100:80".parse().unwrap(),
        };
        let out = Key {
            protocol: Protocol::Tcp,
            src: "198.18.1.11:8080".parse().unwrap(),
            dst: "198.18.0.2:40000".parse().unwrap(),
        };
        assert_eq!(t.lookup_in(&inb), Some(id));
        assert_eq!(t.lookup_out(&out), Some(id));
        assert_eq!(
            t.lookup_in(&Key {
                protocol: Protocol::Udp,
                ..inb
            }),
            None
        );
        let c = t.get(id).unwrap();
        assert_eq!(c.client, inb.src);
        assert_eq!(c.dest_addr, out.src);
        assert_eq!(c.client_mac, [2, 0, 0, 0, 0, 1]);
        assert_eq!((d.active.load(Relaxed), d.inactive.load(Relaxed)), (0, 1));
        t.touch(id, Dir::Input, flags(true, false, false, false), 1, &T);
        t.touch(id, Dir::Output, flags(true, false, true, false), 2, &T);
        t.touch(id, Dir::Input, flags(false, false, true, false), 3, &T);
        assert_eq!(t.get(id).unwrap().state, State::Established);
        assert_eq!((d.active.load(Relaxed), d.inactive.load(Relaxed)), (1, 0));
        t.touch(id, Dir::Input, flags(false, true, true, false), 4, &T);
        assert_eq!((d.active.load(Relaxed), d.inactive.load(Relaxed)), (0, 1));
    }

    #[test]
    fn ipv6_and_other_methods() {
        let d = Arc::new(DestState::new(1));
        let mut t = ConnTable::new(10, 0);
        let mut c = new_conn(&d, 1);
        c.client = "[fd00:198:18::2]:40000".parse().unwrap();
        c.vip = "[fd00:198:19::100]:80".parse().unwrap();
        c.dest_addr = "[fd00:198:18:1::11]:80".parse().unwrap();
        c.method = Method::Dr;
        let id = t.insert(c, 0, &T).unwrap();
        let inb = Key {
            protocol: Protocol::Tcp,
            src: "[fd00:198:18::2]:40000".parse().unwrap(),
            dst: "[fd00:198:19::100]:80".parse().unwrap(),
        };
        assert_eq!(t.lookup_in(&inb), Some(id));
        // DR connections have no reply key.
        let out = Key {
            protocol: Protocol::Tcp,
            src: "[fd00:198:18:1::11]:80".parse().unwrap(),
            dst: inb.src,
        };
        assert_eq!(t.lookup_out(&out), None);
        assert_eq!(t.get(id).unwrap().method, Method::Dr);
        let mut bad = new_conn(&d, 2);
        bad.vip = "[fd00:198:19::100]:80".parse().unwrap();
        assert_eq!(t.insert(bad, 0, &T).unwrap_err(), InsertError::Invalid);
        t.clear();
        assert!(t.is_empty());
        assert_eq!(d.inactive.load(Relaxed), 0);
    }

    /// Every live entry is on exactly one wheel list, and each list's back
    /// links mirror its forward links.
    fn assert_wheel_consistent<A: Copy>(t: &Table<A>) {
        let mut seen = vec![false; t.entries.len()];
        for (slot, &head) in t.wheel.iter().enumerate() {
            let mut prev = SLOT_TAG | u32::try_from(slot).unwrap();
            let mut i = head;
            while i != NIL {
                let e = &t.entries[i as usize];
                assert_eq!(e.timer_prev, prev, "entry {i} in slot {slot}");
                assert!(
                    !std::mem::replace(&mut seen[i as usize], true),
                    "entry {i} twice"
                );
                prev = i;
                i = e.timer_next;
            }
        }
        for (i, e) in t.entries.iter().enumerate() {
            assert_eq!(seen[i], e.flags & F_FREE == 0, "entry {i}");
        }
    }

    /// A connection that closes after its deadline was pushed far out
    /// (ESTABLISHED: 900 s) leaves at its new, earlier deadline, among
    /// other entries on the same wheel lists, which stay as they were.
    #[test]
    fn a_deadline_moved_earlier_is_kept() {
        let d = Arc::new(DestState::new(1));
        let mut t = ConnTable::new(100, 0);
        let ids: Vec<ConnId> = (1..=3)
            .map(|p| t.insert(new_conn(&d, p), 0, &T).unwrap())
            .collect();
        for &id in &ids {
            t.touch(id, Dir::Input, flags(true, false, false, false), 0, &T);
            t.touch(id, Dir::Output, flags(true, false, true, false), 0, &T);
            t.touch(id, Dir::Input, flags(false, false, true, false), 0, &T);
        }
        // Traffic for 100 s: the wheel re-files them past their first slots.
        for s in 1..=100u64 {
            assert_eq!(t.expire(s * 1000), 0);
            for &id in &ids {
                t.touch(
                    id,
                    Dir::Input,
                    flags(false, false, true, false),
                    s * 1000,
                    &T,
                );
            }
        }
        // The middle one is reset at 100 s (CLOSE: 10 s), the first
        // closes with FINs (TIME_WAIT: 120 s), the third stays.
        t.touch(
            ids[1],
            Dir::Input,
            flags(false, false, false, true),
            100_000,
            &T,
        );
        t.touch(
            ids[0],
            Dir::Input,
            flags(false, true, true, false),
            100_000,
            &T,
        );
        t.touch(
            ids[0],
            Dir::Output,
            flags(false, true, true, false),
            100_000,
            &T,
        );
        assert_eq!(t.get(ids[1]).unwrap().state, State::Close);
        assert_wheel_consistent(&t.v4);
        assert_eq!(t.expire(109_000), 0);
        assert_eq!(t.expire(110_500), 1, "the reset one leaves at 110 s");
        assert!(t.get(ids[1]).is_none());
        let tw = t.get(ids[0]).unwrap();
        assert_eq!(tw.state, State::TimeWait);
        assert_eq!(tw.expires, 220_000);
        assert_eq!(t.expire(219_000), 0);
        assert_eq!(t.expire(220_500), 1, "the closed one at 220 s");
        assert_eq!(t.len(), 1);
        assert_wheel_consistent(&t.v4);
        assert_eq!(t.expire(999_000), 0, "the idle one until 1,000 s");
        assert_eq!(t.expire(1_000_500), 1);
        assert!(t.is_empty());
        assert_eq!((d.active.load(Relaxed), d.inactive.load(Relaxed)), (0, 0));
    }

    #[test]
    fn remove_takes_an_entry_off_everything() {
        let d = Arc::new(DestState::new(1));
        let mut t = ConnTable::new(10, 0);
        let ids: Vec<ConnId> = (1..=3)
            .map(|p| t.insert(new_conn(&d, p), 0, &T).unwrap())
            .collect();
        t.remove(ids[1]);
        t.remove(ids[1]);
        assert_eq!(t.len(), 2);
        assert!(t.get(ids[1]).is_none());
        assert_eq!(d.inactive.load(Relaxed), 2);
        assert_wheel_consistent(&t.v4);
        assert_eq!(t.expire(61_000), 2, "the others expire as before");
        assert!(t.is_empty());
    }

    #[test]
    fn full_table_refuses() {
        let d = Arc::new(DestState::new(1));
        let mut t = ConnTable::new(2, 0);
        t.insert(new_conn(&d, 1), 0, &T).unwrap();
        t.insert(new_conn(&d, 2), 0, &T).unwrap();
        assert_eq!(
            t.insert(new_conn(&d, 3), 0, &T).unwrap_err(),
            InsertError::Full
        );
        assert_eq!(t.len(), 2);
    }

    /// Either family may take the whole capacity, one after the other:
    /// each pool holds the capacity, and freed entries come back.
    #[test]
    fn either_family_fills_the_capacity() {
        let d = Arc::new(DestState::new(1));
        let mut t = ConnTable::new(4, 0);
        let v6 = |port: u16| {
            let mut c = new_conn(&d, port);
            c.client = SocketAddr::from((Ipv6Addr::new(0xfd00, 0x198, 0x18, 0, 0, 0, 0, 2), port));
            c.vip = "[fd00:198:19::100]:80".parse().unwrap();
            c.dest_addr = "[fd00:198:18:1::11]:80".parse().unwrap();
            c
        };
        // Each step ends every connection's longest timeout.
        let mut now = 0u64;
        for round in 0..3u16 {
            for p in 1..=4 {
                t.insert(v6(round * 10 + p), now, &T).unwrap();
            }
            assert_eq!(
                t.insert(new_conn(&d, 9), now, &T).unwrap_err(),
                InsertError::Full
            );
            now += 10_000_000;
            assert_eq!(t.expire(now), 4);
            for p in 1..=4 {
                t.insert(new_conn(&d, round * 10 + p), now, &T).unwrap();
            }
            assert_eq!(t.insert(v6(9), now, &T).unwrap_err(), InsertError::Full);
            now += 10_000_000;
            assert_eq!(t.expire(now), 4);
        }
        assert_eq!((t.v4.entries.len(), t.v6.entries.len()), (4, 4));
    }

    #[test]
    fn expiry_by_state_timeout() {
        let d = Arc::new(DestState::new(1));
        let mut t = ConnTable::new(10, 0);
        let a = t.insert(new_conn(&d, 1), 0, &T).unwrap();
        t.touch(a, Dir::Input, flags(true, false, false, false), 0, &T); // SYN_RECV: 60 s
        let b = t.insert(new_conn(&d, 2), 0, &T).unwrap();
        t.touch(b, Dir::Input, flags(false, false, false, true), 0, &T); // CLOSE: 10 s
        assert_eq!(t.expire(9_000), 0);
        assert_eq!(t.expire(10_500), 1);
        assert!(t.get(a).is_some());
        assert!(t.get(b).is_none());
        // Refreshed at 50 s: lives to 110 s, not 60 s.
        t.touch(a, Dir::Input, flags(true, false, false, false), 50_000, &T);
        assert_eq!(t.expire(61_000), 0);
        assert_eq!(t.expire(110_500), 1);
        assert!(t.is_empty());
        assert_eq!((d.active.load(Relaxed), d.inactive.load(Relaxed)), (0, 0));
        assert!(t.registry.by_ptr.is_empty(), "the destination is released");
    }

    #[test]
    fn long_pause_and_long_timeouts() {
        let d = Arc::new(DestState::new(1));
        let mut t = ConnTable::new(10, 0);
        let long = Timeouts {
            tcp: 5000,
            tcp_fin: 120,
            udp: 300,
        };
        let a = t.insert(new_conn(&d, 1), 0, &long).unwrap();
        t.touch(a, Dir::Input, flags(true, false, false, false), 0, &long);
        t.touch(a, Dir::Output, flags(true, false, true, false), 0, &long);
        t.touch(a, Dir::Input, flags(false, false, true, false), 0, &long); // 5000 s
        assert_eq!(t.expire(2_000_000), 0);
        assert_eq!(t.expire(4_999_000), 0);
        assert_eq!(t.expire(5_001_000), 1);
    }

    /// Many connections in a small bucket array: chains, removal from the
    /// middle of a chain, reuse of freed entries.
    #[test]
    fn chains_and_reuse() {
        let d = Arc::new(DestState::new(1));
        let mut t = ConnTable::new(4000, 0);
        let key = |port: u16| Key {
            protocol: Protocol::Tcp,
            src: SocketAddr::from(([198, 18, 0, 2], port)),
            dst: "198.19.0.100:80".parse().unwrap(),
        };
        for p in 1..=4000u16 {
            let id = t.insert(new_conn(&d, p), 0, &T).unwrap();
            // Odd ports close (CLOSE: 10 s), even ones stay (SYN_RECV: 60 s).
            let rst = p % 2 == 1;
            t.touch(id, Dir::Input, flags(!rst, false, false, rst), 0, &T);
        }
        assert_eq!(t.expire(11_000), 2000);
        for p in 1..=4000u16 {
            assert_eq!(t.lookup_in(&key(p)).is_some(), p % 2 == 0, "port {p}");
        }
        for p in (1..=4000u16).step_by(2) {
            t.insert(new_conn(&d, p), 11_000, &T).unwrap();
        }
        assert_eq!(t.len(), 4000);
        assert_eq!(t.v4.entries.len(), 4000, "freed entries are reused");
        for p in 1..=4000u16 {
            let id = t.lookup_in(&key(p)).unwrap();
            assert_eq!(t.get(id).unwrap().client.port(), p);
        }
    }

    /// Keys that differ only in the client port spread over the buckets
    /// (of a table grown to 65,536).
    #[test]
    fn ports_spread_over_buckets() {
        let mut used = vec![0u32; 1 << 16];
        let seed = random_seed();
        for port in 0..=u16::MAX {
            let h = hash(seed, 6, 0xc612_0002, port, 0xc613_0064, 80);
            used[usize::try_from(h & 0xffff).unwrap()] += 1;
        }
        let longest = used.iter().max().copied().unwrap_or(0);
        assert!(longest <= 12, "a chain of {longest}");
    }

    /// Each table hashes with its own seed: keys that share a bucket in one
    /// table do not in another.
    #[test]
    fn tables_have_their_own_seeds() {
        let (a, b) = (Table::<u32>::new(16, 16, 0), Table::<u32>::new(16, 16, 0));
        assert_ne!(a.seed, b.seed);
        let h = |t: &Table<u32>| hash(t.seed, 6, 0xc612_0002, 40000, 0xc613_0064, 80);
        assert_ne!(h(&a), h(&b));
    }

    /// The buckets grow one split at a time as connections arrive, up to
    /// the capacity's, and every connection stays reachable by both keys
    /// through the splits, expiry and reuse.
    #[test]
    fn buckets_grow_with_the_table() {
        let d = Arc::new(DestState::new(1));
        let mut t = ConnTable::new(60_000, 0);
        assert_eq!(t.v4.used(), FIRST_BUCKETS);
        let inb = |port: u16| Key {
            protocol: Protocol::Tcp,
            src: SocketAddr::from(([198, 18, 0, 2], port)),
            dst: "198.19.0.100:80".parse().unwrap(),
        };
        let out = |port: u16| Key {
            protocol: Protocol::Tcp,
            src: "198.18.1.11:8080".parse().unwrap(),
            dst: SocketAddr::from(([198, 18, 0, 2], port)),
        };
        let mut ids = vec![0; 60_001];
        for p in 1..=60_000u16 {
            ids[usize::from(p)] = t.insert(new_conn(&d, p), 0, &T).unwrap();
            let want = (4 * usize::from(p))
                .div_ceil(3)
                .clamp(FIRST_BUCKETS, 1 << 16);
            assert_eq!(t.v4.used(), want);
        }
        for p in 1..=60_000u16 {
            assert_eq!(t.lookup_in(&inb(p)), Some(ids[usize::from(p)]), "port {p}");
            assert_eq!(t.lookup_out(&out(p)), Some(ids[usize::from(p)]), "port {p}");
        }
        // Chains stay short: no bucket holds more than a handful.
        let longest = (0..t.v4.used())
            .map(|b| {
                let mut n = 0;
                let mut i = t.v4.in_buckets[b];
                while i != NIL {
                    n += 1;
                    i = t.v4.entries[i as usize].in_next;
                }
                n
            })
            .max()
            .unwrap_or(0);
        assert!(longest <= 12, "a chain of {longest}");
        // Half close and expire; the rest are still found, the freed
        // entries come back, and the buckets never shrink.
        for p in 1..=60_000u16 {
            // Odd ports close (CLOSE: 10 s), even ones stay (SYN_RECV: 60 s).
            let rst = p % 2 == 1;
            t.touch(
                ids[usize::from(p)],
                Dir::Input,
                flags(!rst, false, false, rst),
                0,
                &T,
            );
        }
        assert_eq!(t.expire(11_000), 30_000);
        for p in 1..=60_000u16 {
            assert_eq!(t.lookup_in(&inb(p)).is_some(), p % 2 == 0, "port {p}");
            assert_eq!(t.lookup_out(&out(p)).is_some(), p % 2 == 0, "port {p}");
        }
        for p in (1..=60_000u16).step_by(2) {
            t.insert(new_conn(&d, p), 11_000, &T).unwrap();
        }
        assert_eq!(t.v4.used(), 1 << 16);
        for p in 1..=60_000u16 {
            assert!(t.lookup_in(&inb(p)).is_some(), "port {p}");
            assert!(t.lookup_out(&out(p)).is_some(), "port {p}");
        }
    }

    /// A table cleared (at shutdown) and used again counts and expires
    /// only what it holds: the wheel forgot the cleared entries.
    #[test]
    fn clear_leaves_a_table_that_works() {
        let d = Arc::new(DestState::new(1));
        let mut t = ConnTable::new(100, 0);
        for p in 1..=50u16 {
            t.insert(new_conn(&d, p), 0, &T).unwrap();
        }
        t.clear();
        assert_eq!((t.len(), d.inactive.load(Relaxed)), (0, 0));
        for p in 1..=20u16 {
            t.insert(new_conn(&d, p), 1_000, &T).unwrap();
        }
        assert_eq!(t.expire(1_000_000), 20);
        assert_eq!((t.len(), d.inactive.load(Relaxed)), (0, 0));
    }

    /// A table smaller than the first level starts at its capacity's size
    /// and never splits past it.
    #[test]
    fn small_tables_keep_their_size() {
        let d = Arc::new(DestState::new(1));
        let mut t = ConnTable::new(100, 0);
        assert_eq!(t.v4.used(), 128);
        for p in 1..=100u16 {
            t.insert(new_conn(&d, p), 0, &T).unwrap();
        }
        assert_eq!(t.v4.used(), 128);
    }
}
