//! Virtual services, their destinations, and the rule table.
//!
//! Two forms of the same rules:
//! - [`Model`]: the control path's editable description (what `-A`, `-a`, a
//!   config file say), changed only by [`Model::apply`].
//! - [`RuleTable`]: the immutable, indexed form the data path reads through
//!   one `ArcSwap`. It is built from a validated model and never changes;
//!   every change builds a new one and swaps it in.
//!
//! Invariants:
//! - A model only ever holds a state that [`Model::apply`] validated: keys are
//!   unique, schedulers exist, every destination obeys its method's rules.
//! - Counters and connection counts ([`DestState`], [`ServiceState`]) are
//!   shared by every table built from the same service or destination, so a
//!   swap loses none of them; removing and re-adding an object within one
//!   batch (a reload, `-R` after `-C`) keeps its state too.

pub mod dest;

pub use dest::{Dest, DestState};

use crate::sched::{self, Scheduler};
use crate::stats::ShardedStats;
use lvsd_proto::{
    DestSpec, ErrorKind, Method, Op, Protocol, ServiceKey, ServiceSpec, Stats, Timeouts,
};
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasherDefault;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

/// IPVS's default timeouts (ip_vs_proto_tcp.c / ip_vs_proto_udp.c), seconds.
pub const DEFAULT_TIMEOUTS: Timeouts = Timeouts {
    tcp: 900,
    tcp_fin: 120,
    udp: 300,
};

/// A fast, non-cryptographic hasher for the data path's small fixed keys
/// (multiply-rotate, as FxHash). Keys come from packets, but the tables it
/// indexes are bounded and the worst case is a slower lookup, not a failure.
#[derive(Default, Clone, Copy)]
pub struct FastHasher(u64);

impl std::hash::Hasher for FastHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(w));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.write_u64(u64::from(i));
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
}

pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;
pub type FastSet<K> = HashSet<K, BuildHasherDefault<FastHasher>>;

/// A change that was refused; the model is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RuleError {
    pub kind: ErrorKind,
    pub message: String,
}

impl RuleError {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        RuleError {
            kind,
            message: message.into(),
        }
    }
}

/// Counters of a service that outlive any one table.
#[derive(Debug)]
pub struct ServiceState {
    pub stats: ShardedStats,
    /// Counters at the last `-Z`: what lvsadm shows is the difference.
    pub zero_base: Mutex<Stats>,
}

impl ServiceState {
    pub fn new(shards: usize) -> Self {
        ServiceState {
            stats: ShardedStats::new(shards),
            zero_base: Mutex::new(Stats::default()),
        }
    }
}

/// A destination in the model.
#[derive(Debug, Clone)]
pub struct DestEntry {
    pub spec: DestSpec,
    pub state: Arc<DestState>,
}

/// A service in the model.
#[derive(Debug, Clone)]
pub struct ServiceEntry {
    pub spec: ServiceSpec,
    pub state: Arc<ServiceState>,
    pub dests: Vec<DestEntry>,
}

/// The control path's description of every service.
#[derive(Debug, Clone)]
pub struct Model {
    pub services: Vec<ServiceEntry>,
    pub timeouts: Timeouts,
    shards: usize,
}

/// States removed earlier in the same batch, reused when the same object is
/// added again so a reload keeps counters and connection counts.
#[derive(Default)]
struct Graveyard {
    services: HashMap<ServiceKey, Arc<ServiceState>>,
    dests: HashMap<(ServiceKey, SocketAddr), Arc<DestState>>,
    /// Services a `-Z` in the batch zeroes, once the whole batch stands
    /// (their counters live in state shared with the running table, which
    /// a refused batch must leave alone).
    zero: Vec<ServiceEntry>,
}

impl Model {
    pub fn new(shards: usize) -> Self {
        Model {
            services: Vec::new(),
            timeouts: DEFAULT_TIMEOUTS,
            shards,
        }
    }

    fn find(&self, key: &ServiceKey) -> Option<usize> {
        self.services.iter().position(|s| s.spec.key == *key)
    }

    fn find_mut(
        &mut self,
        key: &ServiceKey,
        kind: ErrorKind,
    ) -> Result<&mut ServiceEntry, RuleError> {
        let msg = match kind {
            ErrorKind::NoService => format!("no such service: {key}"),
            _ => format!("service not defined: {key}"),
        };
        self.services
            .iter_mut()
            .find(|s| s.spec.key == *key)
            .ok_or_else(|| RuleError::new(kind, msg))
    }

    /// Applies one operation; on error the model is unchanged. Read-only
    /// operations are accepted and change nothing.
    pub fn apply(&mut self, op: &Op) -> Result<(), RuleError> {
        let mut next = self.clone();
        let mut grave = Graveyard::default();
        next.apply_in(op, &mut grave)?;
        *self = next;
        grave.zero.iter().for_each(zero);
        Ok(())
    }

    fn apply_in(&mut self, op: &Op, grave: &mut Graveyard) -> Result<(), RuleError> {
        match op {
            Op::Version | Op::List { .. } | Op::ListConns | Op::GetTimeouts | Op::DaemonStats => {}
            Op::AddService { service } => {
                validate_service(service)?;
                if self.find(&service.key).is_some() {
                    return Err(RuleError::new(
                        ErrorKind::ServiceExists,
                        format!("service already exists: {}", service.key),
                    ));
                }
                let state = grave
                    .services
                    .remove(&service.key)
                    .unwrap_or_else(|| Arc::new(ServiceState::new(self.shards)));
                self.services.push(ServiceEntry {
                    spec: service.clone(),
                    state,
                    dests: Vec::new(),
                });
            }
            Op::EditService { service } => {
                validate_service(service)?;
                let entry = self.find_mut(&service.key, ErrorKind::NoService)?;
                entry.spec = service.clone();
            }
            Op::DeleteService { service } => {
                let i = self.find(service).ok_or_else(|| {
                    RuleError::new(ErrorKind::NoService, format!("no such service: {service}"))
                })?;
                let gone = self.services.remove(i);
                bury(grave, gone);
            }
            Op::Clear => {
                for gone in std::mem::take(&mut self.services) {
                    bury(grave, gone);
                }
            }
            Op::AddDest { service, dest } => {
                let shards = self.shards;
                let entry = self.find_mut(service, ErrorKind::NoService)?;
                validate_dest(&entry.spec, dest)?;
                if entry.dests.iter().any(|d| d.spec.addr == dest.addr) {
                    return Err(RuleError::new(
                        ErrorKind::DestExists,
                        format!("destination {} already exists in {service}", dest.addr),
                    ));
                }
                let state = grave
                    .dests
                    .remove(&(*service, dest.addr))
                    .unwrap_or_else(|| Arc::new(DestState::new(shards)));
                entry.dests.push(DestEntry {
                    spec: dest.clone(),
                    state,
                });
            }
            Op::EditDest { service, dest } => {
                let entry = self.find_mut(service, ErrorKind::NoService)?;
                validate_dest(&entry.spec, dest)?;
                let d = entry
                    .dests
                    .iter_mut()
                    .find(|d| d.spec.addr == dest.addr)
                    .ok_or_else(|| {
                        RuleError::new(
                            ErrorKind::NoDest,
                            format!("no such destination {} in {service}", dest.addr),
                        )
                    })?;
                d.spec = dest.clone();
            }
            Op::DeleteDest { service, dest } => {
                let entry = self.find_mut(service, ErrorKind::NoService)?;
                let i = entry
                    .dests
                    .iter()
                    .position(|d| d.spec.addr == *dest)
                    .ok_or_else(|| {
                        RuleError::new(
                            ErrorKind::NoDest,
                            format!("no such destination {dest} in {service}"),
                        )
                    })?;
                let gone = entry.dests.remove(i);
                grave.dests.insert((*service, *dest), gone.state);
            }
            Op::Zero { service } => match service {
                Some(key) => {
                    let i = self.find(key).ok_or_else(|| {
                        RuleError::new(ErrorKind::NoService, format!("no such service: {key}"))
                    })?;
                    grave.zero.push(self.services[i].clone());
                }
                None => grave.zero.extend(self.services.iter().cloned()),
            },
            Op::SetTimeouts { timeouts } => {
                let longest = timeouts.tcp.max(timeouts.tcp_fin).max(timeouts.udp);
                if longest > lvsd_proto::MAX_TIMEOUT {
                    return Err(RuleError::new(
                        ErrorKind::Invalid,
                        format!(
                            "timeout {longest} s is over 31 days ({} s)",
                            lvsd_proto::MAX_TIMEOUT
                        ),
                    ));
                }
                // As ipvsadm --set: a zero leaves that timeout as it is.
                let t = &mut self.timeouts;
                if timeouts.tcp != 0 {
                    t.tcp = timeouts.tcp;
                }
                if timeouts.tcp_fin != 0 {
                    t.tcp_fin = timeouts.tcp_fin;
                }
                if timeouts.udp != 0 {
                    t.udp = timeouts.udp;
                }
            }
            Op::Batch { ops } => {
                for (n, op) in ops.iter().enumerate() {
                    if matches!(op, Op::Batch { .. }) {
                        return Err(RuleError::new(
                            ErrorKind::Invalid,
                            lvsd_proto::batch_error(n + 1, "batches do not nest"),
                        ));
                    }
                    self.apply_in(op, grave).map_err(|e| RuleError {
                        kind: e.kind,
                        message: lvsd_proto::batch_error(n + 1, &e.message),
                    })?;
                }
            }
        }
        Ok(())
    }

    /// Builds the immutable table the data path reads. `local` holds the
    /// director's own addresses: destinations there are local nodes. A
    /// service that was in `previous` with the same scheduler keeps its
    /// scheduler's position (see [`sched::Scheduler::successor`]).
    pub fn build(
        &self,
        generation: u64,
        local: &FastSet<IpAddr>,
        previous: Option<&RuleTable>,
    ) -> RuleTable {
        let mut services = Vec::with_capacity(self.services.len());
        let mut index = FastMap::default();
        let mut vips = FastSet::default();
        let mut nat_dests = FastSet::default();
        for (i, s) in self.services.iter().enumerate() {
            let dests: Vec<Dest> = s
                .dests
                .iter()
                .map(|d| Dest {
                    spec: d.spec.clone(),
                    state: d.state.clone(),
                    local: local.contains(&d.spec.addr.ip()),
                })
                .collect();
            for d in &dests {
                if d.method() == Method::Nat {
                    nat_dests.insert((s.spec.key.protocol, d.addr()));
                }
                d.state
                    .set_thresholds(d.spec.u_threshold, d.spec.l_threshold);
            }
            // Validation guarantees the scheduler exists; an unknown one would
            // have been refused by apply(), so the fallback never runs.
            let carried = previous
                .and_then(|p| p.service(s.spec.key.protocol, s.spec.key.addr))
                .filter(|old| old.sched.name() == s.spec.scheduler)
                .and_then(|old| old.sched.successor(&old.dests, &dests));
            let sched = carried
                .or_else(|| sched::new_scheduler(&s.spec.scheduler, &dests))
                .or_else(|| sched::new_scheduler("rr", &dests))
                .expect("rr always exists");
            index.insert(s.spec.key, i);
            vips.insert(s.spec.key.addr.ip());
            services.push(Service {
                spec: s.spec.clone(),
                state: s.state.clone(),
                dests,
                sched,
            });
        }
        RuleTable {
            generation,
            services,
            index,
            vips,
            nat_dests,
            timeouts: self.timeouts,
            lingering: Vec::new(),
        }
    }
}

fn bury(grave: &mut Graveyard, gone: ServiceEntry) {
    for d in gone.dests {
        grave.dests.insert((gone.spec.key, d.spec.addr), d.state);
    }
    grave.services.insert(gone.spec.key, gone.state);
}

fn zero(s: &ServiceEntry) {
    set_base(&s.state.zero_base, s.state.stats.sum());
    for d in &s.dests {
        set_base(&d.state.zero_base, d.state.stats.sum());
    }
}

fn set_base(base: &Mutex<Stats>, now: Stats) {
    match base.lock() {
        Ok(mut b) => *b = now,
        Err(poisoned) => *poisoned.into_inner() = now,
    }
}

fn validate_service(s: &ServiceSpec) -> Result<(), RuleError> {
    if !sched::NAMES.contains(&s.scheduler.as_str()) {
        return Err(RuleError::new(
            ErrorKind::NoScheduler,
            format!(
                "unknown scheduler '{}' (known: {})",
                s.scheduler,
                sched::NAMES.join(", ")
            ),
        ));
    }
    if s.persistent.is_some() {
        return Err(RuleError::new(
            ErrorKind::Unsupported,
            "persistent services are not implemented yet",
        ));
    }
    let ip = s.key.addr.ip();
    if !is_unicast(ip) {
        return Err(RuleError::new(
            ErrorKind::Invalid,
            format!("virtual address {ip} is not a unicast address"),
        ));
    }
    if s.key.addr.port() == 0 {
        return Err(RuleError::new(
            ErrorKind::Invalid,
            "a service needs a port (port 0 is only for persistent services)",
        ));
    }
    Ok(())
}

fn validate_dest(svc: &ServiceSpec, d: &DestSpec) -> Result<(), RuleError> {
    if d.weight > 65535 {
        return Err(RuleError::new(
            ErrorKind::Invalid,
            format!("weight {} is out of range 0..65535", d.weight),
        ));
    }
    if !is_unicast(d.addr.ip()) || d.addr.port() == 0 {
        return Err(RuleError::new(
            ErrorKind::Invalid,
            format!("real server {} needs a unicast address and a port", d.addr),
        ));
    }
    if d.addr.is_ipv4() != svc.key.addr.is_ipv4() {
        return Err(RuleError::new(
            ErrorKind::Invalid,
            format!(
                "real server {} and virtual service {} are of different IP versions",
                d.addr, svc.key.addr
            ),
        ));
    }
    match d.method {
        Method::Nat => {}
        Method::Dr | Method::Tun if d.addr.port() != svc.key.addr.port() => {
            return Err(RuleError::new(
                ErrorKind::Invalid,
                format!(
                    "real server {}: direct routing and tunneling cannot change the port (the service's is {})",
                    d.addr,
                    svc.key.addr.port()
                ),
            ))
        }
        Method::Dr | Method::Tun => {}
        Method::Local => {
            return Err(RuleError::new(
                ErrorKind::Invalid,
                "\"local\" is not a method to ask for: a real server at one of the director's own addresses is served locally",
            ))
        }
    }
    // As IPVS: also when there is no upper threshold (0).
    if d.l_threshold > d.u_threshold {
        return Err(RuleError::new(
            ErrorKind::Invalid,
            "lower threshold is above the upper threshold",
        ));
    }
    Ok(())
}

fn is_unicast(ip: IpAddr) -> bool {
    !(ip.is_unspecified() || ip.is_multicast() || ip == IpAddr::from([255, 255, 255, 255]))
}

/// One service in one rule table.
#[derive(Debug)]
pub struct Service {
    pub spec: ServiceSpec,
    pub state: Arc<ServiceState>,
    pub dests: Vec<Dest>,
    pub sched: Box<dyn Scheduler>,
}

impl Service {
    /// Picks a destination for a new connection.
    #[inline]
    pub fn schedule(&self) -> Option<&Dest> {
        self.sched.pick(&self.dests).and_then(|i| self.dests.get(i))
    }
}

/// The immutable rule table. Built by [`Model::build`], read by the data path.
#[derive(Debug)]
pub struct RuleTable {
    /// Increases by one with every table swapped in.
    pub generation: u64,
    pub services: Vec<Service>,
    index: FastMap<ServiceKey, usize>,
    /// Every address that is a VIP of some service.
    pub vips: FastSet<IpAddr>,
    /// (protocol, RIP:port) of every NAT destination: replies from these are
    /// lvsd's to translate back.
    pub nat_dests: FastSet<(Protocol, SocketAddr)>,
    pub timeouts: Timeouts,
    /// Addresses of removed real servers whose connections still carry
    /// traffic (set by the control path): the neighbour resolver keeps
    /// them resolved until the last connection ends.
    pub lingering: Vec<IpAddr>,
}

impl RuleTable {
    pub fn empty() -> Self {
        Model::new(1).build(0, &FastSet::default(), None)
    }

    /// The service for (protocol, VIP:port), if any.
    #[inline]
    pub fn service(&self, protocol: Protocol, vip: SocketAddr) -> Option<&Service> {
        self.index
            .get(&ServiceKey {
                protocol,
                addr: vip,
            })
            .and_then(|&i| self.services.get(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> ServiceKey {
        ServiceKey {
            protocol: Protocol::Tcp,
            addr: s.parse().unwrap(),
        }
    }

    /// As IPVS: a lower threshold above the upper one is refused, also
    /// when there is no upper one.
    #[test]
    fn lower_threshold_needs_an_upper_one_above_it() {
        let mut m = Model::new(1);
        m.apply(&svc("198.19.0.100:80", "rr")).unwrap();
        let with = |u, l| match dest("198.19.0.100:80", "198.18.1.11:8080", 1) {
            Op::AddDest { service, mut dest } => {
                dest.u_threshold = u;
                dest.l_threshold = l;
                Op::AddDest { service, dest }
            }
            _ => unreachable!(),
        };
        assert!(m.apply(&with(0, 5)).is_err());
        assert!(m.apply(&with(4, 5)).is_err());
        m.apply(&with(10, 5)).unwrap();
    }

    /// A `-Z` in a batch the daemon refuses zeroes nothing (the counters
    /// live in state the running table shares); in one it accepts, it does.
    #[test]
    fn zero_in_a_refused_batch_changes_nothing() {
        let mut m = Model::new(1);
        m.apply(&svc("198.19.0.100:80", "rr")).unwrap();
        m.apply(&dest("198.19.0.100:80", "198.18.1.11:8080", 1))
            .unwrap();
        let s = &m.services[0];
        s.state.stats.shard(0).count_conn();
        s.dests[0].state.stats.shard(0).count_conn();
        let bases = |m: &Model| {
            let s = &m.services[0];
            let b = |x: &Mutex<Stats>| x.lock().unwrap().conns;
            (b(&s.state.zero_base), b(&s.dests[0].state.zero_base))
        };
        let refused = Op::Batch {
            ops: vec![
                Op::Zero { service: None },
                dest("198.19.0.199:80", "198.18.1.11:8080", 1),
            ],
        };
        assert!(m.apply(&refused).is_err());
        assert_eq!(bases(&m), (0, 0), "refused: nothing zeroed");
        let accepted = Op::Batch {
            ops: vec![
                Op::Zero {
                    service: Some(key("198.19.0.100:80")),
                },
                dest("198.19.0.100:80", "198.18.1.12:8080", 1),
            ],
        };
        m.apply(&accepted).unwrap();
        assert_eq!(bases(&m), (1, 1), "accepted: zeroed");
    }

    fn svc(s: &str, sched: &str) -> Op {
        Op::AddService {
            service: ServiceSpec {
                key: key(s),
                scheduler: sched.into(),
                persistent: None,
            },
        }
    }

    fn dest_edit(s: &str, r: &str, w: u32) -> Op {
        match dest(s, r, w) {
            Op::AddDest { service, dest } => Op::EditDest { service, dest },
            other => other,
        }
    }

    fn dest(s: &str, r: &str, w: u32) -> Op {
        Op::AddDest {
            service: key(s),
            dest: DestSpec {
                addr: r.parse().unwrap(),
                weight: w,
                method: Method::Nat,
                u_threshold: 0,
                l_threshold: 0,
            },
        }
    }

    /// A change anywhere in the rules builds a new table; a round-robin
    /// service goes on where it was (before, every change sent the next
    /// connection of every service to its first destination).
    #[test]
    fn schedulers_keep_their_position_across_changes() {
        let local = FastSet::default();
        let mut m = Model::new(1);
        for (vip, sched) in [("198.19.0.100:80", "rr"), ("198.19.0.101:80", "wrr")] {
            m.apply(&svc(vip, sched)).unwrap();
            for rs in 11..=14 {
                m.apply(&dest(vip, &format!("198.18.1.{rs}:8080"), 1))
                    .unwrap();
            }
        }
        m.apply(&svc("198.19.0.102:80", "rr")).unwrap();
        m.apply(&dest("198.19.0.102:80", "198.18.1.11:8080", 1))
            .unwrap();
        let pick = |t: &RuleTable, vip: &str| {
            let s = t.service(Protocol::Tcp, vip.parse().unwrap()).unwrap();
            s.sched.pick(&s.dests).unwrap()
        };
        let mut t = m.build(1, &local, None);
        let mut got = (Vec::new(), Vec::new());
        for round in 0..6 {
            got.0.push(pick(&t, "198.19.0.100:80"));
            got.1.push(pick(&t, "198.19.0.101:80"));
            // A weight change on another service, then the next table.
            m.apply(&dest_edit("198.19.0.102:80", "198.18.1.11:8080", round + 2))
                .unwrap();
            t = m.build(round as u64 + 2, &local, Some(&t));
        }
        assert_eq!(got.0, [0, 1, 2, 3, 0, 1], "rr");
        assert_eq!(got.1, [0, 1, 2, 3, 0, 1], "wrr");

        // rr: the destination picked last removed: on from its index.
        let rr = "198.19.0.100:80";
        assert_eq!(pick(&t, rr), 2);
        m.apply(&Op::DeleteDest {
            service: key(rr),
            dest: "198.18.1.13:8080".parse().unwrap(),
        })
        .unwrap();
        t = m.build(20, &local, Some(&t));
        assert_eq!(pick(&t, rr), 2, "198.18.1.14, now third");
        // wrr: a change to its own service starts the scan again, as
        // IPVS's does.
        let wrr = "198.19.0.101:80";
        m.apply(&dest_edit(wrr, "198.18.1.14:8080", 1)).unwrap();
        t = m.build(21, &local, Some(&t));
        assert_eq!(
            pick(&t, wrr),
            2,
            "an edit to the same weight changes nothing"
        );
        m.apply(&dest_edit(wrr, "198.18.1.14:8080", 2)).unwrap();
        t = m.build(22, &local, Some(&t));
        assert_eq!(pick(&t, wrr), 0, "from the first, at the current level");
    }

    #[test]
    fn add_edit_delete() {
        let mut m = Model::new(2);
        m.apply(&svc("198.19.0.100:80", "wrr")).unwrap();
        m.apply(&dest("198.19.0.100:80", "198.18.1.11:8080", 1))
            .unwrap();
        m.apply(&dest("198.19.0.100:80", "198.18.1.12:8080", 3))
            .unwrap();
        let t = m.build(1, &FastSet::default(), None);
        let s = t
            .service(Protocol::Tcp, "198.19.0.100:80".parse().unwrap())
            .unwrap();
        assert_eq!(s.dests.len(), 2);
        assert!(t.vips.contains(&"198.19.0.100".parse::<IpAddr>().unwrap()));
        assert!(t
            .nat_dests
            .contains(&(Protocol::Tcp, "198.18.1.12:8080".parse().unwrap())));
        assert!(t
            .service(Protocol::Udp, "198.19.0.100:80".parse().unwrap())
            .is_none());

        let e = m.apply(&svc("198.19.0.100:80", "rr")).unwrap_err();
        assert_eq!(e.kind, ErrorKind::ServiceExists);
        let e = m
            .apply(&dest("198.19.0.100:80", "198.18.1.11:8080", 1))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::DestExists);
        let e = m
            .apply(&dest("198.19.0.101:80", "198.18.1.11:8080", 1))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::NoService);
        let e = m.apply(&svc("198.19.0.101:80", "nope")).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NoScheduler);
        m.apply(&Op::DeleteDest {
            service: key("198.19.0.100:80"),
            dest: "198.18.1.11:8080".parse().unwrap(),
        })
        .unwrap();
        assert_eq!(m.services[0].dests.len(), 1);
    }

    #[test]
    fn failed_batch_changes_nothing() {
        let mut m = Model::new(1);
        m.apply(&svc("198.19.0.100:80", "rr")).unwrap();
        let before = format!(
            "{:?}",
            m.services.iter().map(|s| &s.spec).collect::<Vec<_>>()
        );
        let bad = Op::Batch {
            ops: vec![
                Op::Clear,
                svc("198.19.0.101:80", "rr"),
                dest("198.19.0.102:80", "198.18.1.11:80", 1),
            ],
        };
        let e = m.apply(&bad).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NoService);
        assert!(e.message.starts_with("operation 3:"), "{}", e.message);
        let after = format!(
            "{:?}",
            m.services.iter().map(|s| &s.spec).collect::<Vec<_>>()
        );
        assert_eq!(before, after);
    }

    #[test]
    fn reload_keeps_state() {
        let mut m = Model::new(1);
        m.apply(&svc("198.19.0.100:80", "rr")).unwrap();
        m.apply(&dest("198.19.0.100:80", "198.18.1.11:80", 1))
            .unwrap();
        let old = m.services[0].dests[0].state.clone();
        m.apply(&Op::Batch {
            ops: vec![
                Op::Clear,
                svc("198.19.0.100:80", "wrr"),
                dest("198.19.0.100:80", "198.18.1.11:80", 5),
            ],
        })
        .unwrap();
        assert!(Arc::ptr_eq(&old, &m.services[0].dests[0].state));
        assert_eq!(m.services[0].dests[0].spec.weight, 5);
    }

    #[test]
    fn set_timeouts_zero_keeps() {
        let mut m = Model::new(1);
        m.apply(&Op::SetTimeouts {
            timeouts: Timeouts {
                tcp: 0,
                tcp_fin: 30,
                udp: 0,
            },
        })
        .unwrap();
        assert_eq!(
            m.timeouts,
            Timeouts {
                tcp: 900,
                tcp_fin: 30,
                udp: 300
            }
        );
    }

    #[test]
    fn set_timeouts_over_31_days_is_refused_whole() {
        let mut m = Model::new(1);
        let set = |tcp, udp| Op::SetTimeouts {
            timeouts: Timeouts {
                tcp,
                tcp_fin: 0,
                udp,
            },
        };
        let e = m.apply(&set(60, lvsd_proto::MAX_TIMEOUT + 1)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Invalid);
        assert!(e.message.contains("over 31 days"), "{}", e.message);
        assert_eq!(m.timeouts, DEFAULT_TIMEOUTS, "nothing changed");
        m.apply(&set(lvsd_proto::MAX_TIMEOUT, 0)).unwrap();
        assert_eq!(m.timeouts.tcp, lvsd_proto::MAX_TIMEOUT);
    }
}
