//! The connection table of one shard.
//!
//! Every connection has two keys, as in IPVS and DPVS: the inbound key
//! (protocol, CIP:cport, VIP:vport) that the client's packets carry, and the
//! outbound key (protocol, RIP:rport, CIP:cport) that a NAT real server's
//! replies carry. Both map to one slab slot.
//!
//! Invariants:
//! - The table never holds more than `capacity` entries; when full, new
//!   connections are refused (the caller counts the drop) and existing ones
//!   carry on, as katran does under a flood.
//! - Every entry is counted exactly once in its destination's ActiveConn
//!   (ESTABLISHED) or InActConn (any other state), from insertion to removal.
//! - Time is an argument. Expiry uses a timer wheel of [`TICK_MS`] slots;
//!   refreshing an entry only moves its deadline, and the wheel re-files it
//!   lazily when its old slot comes up, so a packet never touches the wheel.

pub mod state;

use crate::rules::{DestState, FastMap, ServiceState};
use lvsd_proto::{ConnInfo, Method, Protocol, Timeouts};
use slab::Slab;
use state::{next_tcp, Dir, Event, State};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// Width of one timer-wheel slot.
pub const TICK_MS: u64 = 250;
/// Slots in the wheel: 4096 * 250 ms = 1024 s, above the longest default
/// timeout (900 s). Longer deadlines are re-filed each turn.
const WHEEL_SLOTS: usize = 4096;

/// One direction's lookup key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    pub protocol: Protocol,
    pub src: SocketAddr,
    pub dst: SocketAddr,
}

/// One connection.
#[derive(Debug)]
pub struct Conn {
    pub protocol: Protocol,
    /// How this connection's packets reach the real server.
    pub method: Method,
    pub state: State,
    /// Counted in InActConn rather than ActiveConn.
    inactive: bool,
    pub client: SocketAddr,
    pub vip: SocketAddr,
    /// RIP:rport.
    pub dest_addr: SocketAddr,
    /// Where replies to the client leave: interface slot and next-hop MAC,
    /// learned from the client's first frame.
    pub client_iface: u16,
    pub client_mac: [u8; 6],
    pub dest: Arc<DestState>,
    pub service: Arc<ServiceState>,
    /// Deadline in ms of the shard's clock.
    pub expires: u64,
    generation: u32,
}

/// What a new connection needs besides its keys.
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

/// Index of a connection in the table, valid until the next expiry pass.
pub type ConnId = usize;

/// Why an insert was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertError {
    Full,
}

/// A shard's connections.
pub struct ConnTable {
    entries: Slab<Conn>,
    inbound: FastMap<Key, ConnId>,
    outbound: FastMap<Key, ConnId>,
    wheel: Vec<Vec<(u32, u32)>>,
    /// The wheel has been processed up to (not including) this tick.
    wheel_tick: u64,
    capacity: usize,
    next_generation: u32,
}

impl ConnTable {
    /// A table for at most `capacity` connections, starting at time `now`.
    pub fn new(capacity: usize, now: u64) -> Self {
        ConnTable {
            entries: Slab::new(),
            inbound: FastMap::default(),
            outbound: FastMap::default(),
            wheel: vec![Vec::new(); WHEEL_SLOTS],
            wheel_tick: now / TICK_MS,
            capacity,
            next_generation: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    #[inline]
    pub fn lookup_in(&self, key: &Key) -> Option<ConnId> {
        self.inbound.get(key).copied()
    }

    #[inline]
    pub fn lookup_out(&self, key: &Key) -> Option<ConnId> {
        self.outbound.get(key).copied()
    }

    #[inline]
    pub fn get(&self, id: ConnId) -> Option<&Conn> {
        self.entries.get(id)
    }

    /// Inserts a new connection in its initial state (SYN_RECV-bound TCP
    /// starts at NONE and moves on its first packet; UDP is UDP), counted as
    /// inactive, as IPVS binds a new connection to its destination.
    pub fn insert(&mut self, c: NewConn, now: u64, t: &Timeouts) -> Result<ConnId, InsertError> {
        if self.entries.len() >= self.capacity {
            return Err(InsertError::Full);
        }
        let state = match c.protocol {
            Protocol::Tcp => State::None,
            Protocol::Udp => State::Udp,
        };
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let expires = now + state.timeout_ms(t);
        c.dest.inactive.fetch_add(1, Relaxed);
        let inbound = Key {
            protocol: c.protocol,
            src: c.client,
            dst: c.vip,
        };
        let outbound = Key {
            protocol: c.protocol,
            src: c.dest_addr,
            dst: c.client,
        };
        let id = self.entries.insert(Conn {
            protocol: c.protocol,
            method: c.method,
            state,
            inactive: true,
            client: c.client,
            vip: c.vip,
            dest_addr: c.dest_addr,
            client_iface: c.client_iface,
            client_mac: c.client_mac,
            dest: c.dest,
            service: c.service,
            expires,
            generation,
        });
        self.inbound.insert(inbound, id);
        // Only NAT replies come back through the director. Two clients cannot
        // share CIP:cport towards one RIP:rport through different VIPs
        // without colliding here; IPVS has the same limit. The newer
        // connection wins the reply path.
        if c.method == Method::Nat {
            self.outbound.insert(outbound, id);
        }
        self.file(id, expires, generation);
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
        let Some(c) = self.entries.get_mut(id) else {
            return;
        };
        if let Some((syn, fin, ack, rst)) = tcp_flags {
            if let Some(ev) = Event::from_flags(syn, fin, ack, rst) {
                let new = next_tcp(c.state, dir, ev);
                if new != c.state {
                    let active = new == State::Established;
                    if c.inactive && active {
                        c.dest.inactive.fetch_sub(1, Relaxed);
                        c.dest.active.fetch_add(1, Relaxed);
                        c.inactive = false;
                    } else if !c.inactive && !active {
                        c.dest.active.fetch_sub(1, Relaxed);
                        c.dest.inactive.fetch_add(1, Relaxed);
                        c.inactive = true;
                    }
                    c.state = new;
                }
            }
        }
        c.expires = now + c.state.timeout_ms(t);
    }

    fn file(&mut self, id: ConnId, expires: u64, generation: u32) {
        // Never file into a slot already passed, nor more than one turn
        // ahead: such entries are re-filed when their slot comes up.
        let tick =
            (expires / TICK_MS).clamp(self.wheel_tick, self.wheel_tick + WHEEL_SLOTS as u64 - 1);
        let slot = usize::try_from(tick % WHEEL_SLOTS as u64).unwrap_or(0);
        let id = u32::try_from(id).unwrap_or(u32::MAX);
        self.wheel[slot].push((id, generation));
    }

    /// Removes every connection whose deadline has passed; returns how many.
    /// Call once per batch with the batch's clock.
    pub fn expire(&mut self, now: u64) -> usize {
        let now_tick = now / TICK_MS;
        let mut removed = 0;
        while self.wheel_tick < now_tick {
            let slot = usize::try_from(self.wheel_tick % WHEEL_SLOTS as u64).unwrap_or(0);
            self.wheel_tick += 1;
            let due = std::mem::take(&mut self.wheel[slot]);
            for (id, generation) in due {
                let id = id as usize;
                let Some(c) = self.entries.get(id) else {
                    continue;
                };
                if c.generation != generation {
                    continue; // the slot was freed and reused
                }
                if c.expires <= now {
                    self.remove(id);
                    removed += 1;
                } else {
                    let (expires, generation) = (c.expires, c.generation);
                    self.file(id, expires, generation);
                }
            }
        }
        removed
    }

    fn remove(&mut self, id: ConnId) {
        let c = self.entries.remove(id);
        let inbound = Key {
            protocol: c.protocol,
            src: c.client,
            dst: c.vip,
        };
        let outbound = Key {
            protocol: c.protocol,
            src: c.dest_addr,
            dst: c.client,
        };
        if self.inbound.get(&inbound) == Some(&id) {
            self.inbound.remove(&inbound);
        }
        if self.outbound.get(&outbound) == Some(&id) {
            self.outbound.remove(&outbound);
        }
        if c.inactive {
            c.dest.inactive.fetch_sub(1, Relaxed);
        } else {
            c.dest.active.fetch_sub(1, Relaxed);
        }
    }

    /// Removes every connection (shutdown), keeping destination counts right.
    pub fn clear(&mut self) {
        let ids: Vec<ConnId> = self.entries.iter().map(|(id, _)| id).collect();
        for id in ids {
            self.remove(id);
        }
    }

    /// The entries as `ipvsadm -L -c` lists them.
    pub fn list(&self, now: u64) -> Vec<ConnInfo> {
        self.entries
            .iter()
            .map(|(_, c)| ConnInfo {
                protocol: c.protocol,
                client: c.client,
                vip: c.vip,
                dest: c.dest_addr,
                state: c.state.name().to_string(),
                expires_ms: c.expires.saturating_sub(now),
            })
            .collect()
    }
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
        // Refreshed at 50 s: lives to 110 s, not 60 s.
        t.touch(a, Dir::Input, flags(true, false, false, false), 50_000, &T);
        assert_eq!(t.expire(61_000), 0);
        assert_eq!(t.expire(110_500), 1);
        assert!(t.is_empty());
        assert_eq!((d.active.load(Relaxed), d.inactive.load(Relaxed)), (0, 0));
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
}
