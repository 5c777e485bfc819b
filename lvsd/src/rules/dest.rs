//! Destinations (real servers) as the data path and schedulers see them.

use crate::stats::ShardedStats;
use lvsd_proto::{DestSpec, Method, Stats};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// State of a destination that outlives any one rule table: counters and
/// connection counts carry over when a new table is swapped in, and a
/// connection keeps its destination's state alive after the destination is
/// removed (as IPVS keeps removed destinations in its trash list).
#[derive(Debug)]
pub struct DestState {
    /// Connections in ESTABLISHED (IPVS's ActiveConn).
    pub active: AtomicU32,
    /// Connections in any other state (IPVS's InActConn).
    pub inactive: AtomicU32,
    /// Persistence templates pointing here.
    pub persist: AtomicU32,
    pub stats: ShardedStats,
    /// Counters at the last `-Z`: what lvsadm shows is the difference.
    pub zero_base: Mutex<Stats>,
    /// The neighbour resolver has had no answer from it for a while (or it
    /// is on none of lvsd's subnets): new connections go elsewhere.
    pub unreachable: AtomicBool,
    /// IPVS's overload flag: set when a new connection brings the count to
    /// the upper threshold, cleared when a connection's end brings it below
    /// the lower one (three quarters of the upper one when that is 0).
    overloaded: AtomicBool,
    /// The thresholds of the newest table: upper << 32 | lower.
    thresholds: AtomicU64,
}

impl DestState {
    pub fn new(shards: usize) -> Self {
        DestState {
            active: AtomicU32::new(0),
            inactive: AtomicU32::new(0),
            persist: AtomicU32::new(0),
            stats: ShardedStats::new(shards),
            zero_base: Mutex::new(Stats::default()),
            unreachable: AtomicBool::new(false),
            overloaded: AtomicBool::new(false),
            thresholds: AtomicU64::new(0),
        }
    }

    fn upper_lower(&self) -> (u64, u64) {
        let t = self.thresholds.load(Relaxed);
        (t >> 32, t & 0xffff_ffff)
    }

    /// Takes a new table's thresholds; a raised or removed upper threshold
    /// ends an overload, as in IPVS.
    pub fn set_thresholds(&self, upper: u32, lower: u32) {
        let (old_upper, _) = self.upper_lower();
        if upper == 0 || u64::from(upper) > old_upper {
            self.overloaded.store(false, Relaxed);
        }
        self.thresholds
            .store((u64::from(upper) << 32) | u64::from(lower), Relaxed);
    }

    /// A connection was bound to this destination (counted already).
    pub fn bound(&self) {
        let (upper, _) = self.upper_lower();
        if upper != 0 && self.conns() >= upper {
            self.overloaded.store(true, Relaxed);
        }
    }

    /// A connection bound to this destination ended (uncounted already).
    pub fn unbound(&self) {
        let (upper, lower) = self.upper_lower();
        let c = self.conns();
        let below = if lower != 0 {
            c < lower
        } else {
            upper == 0 || c * 4 < upper * 3
        };
        if below {
            self.overloaded.store(false, Relaxed);
        }
    }

    /// Overloaded: at the upper threshold, or above the lower one since it
    /// was reached.
    #[inline]
    pub fn overloaded(&self, upper: u32) -> bool {
        (upper != 0 && self.conns() >= u64::from(upper)) || self.overloaded.load(Relaxed)
    }

    /// IPVS's connection overhead: active connections weigh 256 inactive ones
    /// (ip_vs_dest_conn_overhead).
    #[inline]
    pub fn overhead(&self) -> u64 {
        (u64::from(self.active.load(Relaxed)) << 8) + u64::from(self.inactive.load(Relaxed))
    }

    /// All connections, for the thresholds.
    #[inline]
    pub fn conns(&self) -> u64 {
        u64::from(self.active.load(Relaxed)) + u64::from(self.inactive.load(Relaxed))
    }
}

/// One destination in one rule table: its configuration (immutable for the
/// life of the table) and its shared state.
#[derive(Debug, Clone)]
pub struct Dest {
    pub spec: DestSpec,
    pub state: Arc<DestState>,
    /// The address is one of the director's own: the director's stack serves
    /// the connection whatever method was asked for (IPVS's local node).
    pub local: bool,
}

impl Dest {
    pub fn addr(&self) -> SocketAddr {
        self.spec.addr
    }

    pub fn weight(&self) -> u32 {
        self.spec.weight
    }

    /// How packets reach this destination: [`Method::Local`] for a local
    /// node, else the configured method.
    pub fn method(&self) -> Method {
        if self.local {
            Method::Local
        } else {
            self.spec.method
        }
    }

    /// Whether the destination may take a new connection: a weight above 0,
    /// not overloaded (see [`DestState::overloaded`]) and not unreachable.
    #[inline]
    pub fn available(&self) -> bool {
        self.spec.weight > 0
            && !self.state.overloaded(self.spec.u_threshold)
            && !self.state.unreachable.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(upper: u32, lower: u32) -> Dest {
        let state = Arc::new(DestState::new(1));
        state.set_thresholds(upper, lower);
        Dest {
            spec: DestSpec {
                addr: "198.18.1.11:8080".parse().unwrap(),
                weight: 1,
                method: Method::Nat,
                u_threshold: upper,
                l_threshold: lower,
            },
            state,
            local: false,
        }
    }

    /// `n` new connections, counted and bound.
    fn bind(d: &Dest, n: u32) {
        for _ in 0..n {
            d.state.inactive.fetch_add(1, Relaxed);
            d.state.bound();
        }
    }

    /// `n` connections ended.
    fn unbind(d: &Dest, n: u32) {
        for _ in 0..n {
            d.state.inactive.fetch_sub(1, Relaxed);
            d.state.unbound();
        }
    }

    /// IPVS's overload hysteresis: off at the upper threshold, back below
    /// the lower one, or below three quarters of the upper one without it.
    #[test]
    fn thresholds_have_hysteresis() {
        let d = dest(4, 2);
        bind(&d, 3);
        assert!(d.available());
        bind(&d, 1);
        assert!(!d.available(), "4 of 4");
        unbind(&d, 2);
        assert!(!d.available(), "2 is not below the lower threshold");
        unbind(&d, 1);
        assert!(d.available(), "1 is");

        let d = dest(8, 0);
        bind(&d, 8);
        unbind(&d, 2);
        assert!(!d.available(), "6 is not below three quarters of 8");
        unbind(&d, 1);
        assert!(d.available(), "5 is");

        // Raising the upper threshold ends an overload at once.
        let d = dest(4, 1);
        bind(&d, 4);
        unbind(&d, 1);
        assert!(!d.available());
        d.state.set_thresholds(4, 1);
        assert!(!d.available(), "the same thresholds again");
        d.state.set_thresholds(10, 1);
        let mut raised = d.clone();
        raised.spec.u_threshold = 10;
        assert!(raised.available());
    }

    #[test]
    fn unreachable_takes_no_new_connections() {
        let d = dest(0, 0);
        assert!(d.available());
        d.state.unreachable.store(true, Relaxed);
        assert!(!d.available());
    }
}
