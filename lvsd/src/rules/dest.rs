//! Destinations (real servers) as the data path and schedulers see them.

use crate::stats::ShardedStats;
use lvsd_proto::{DestSpec, Method, Stats};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
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
}

impl DestState {
    pub fn new(shards: usize) -> Self {
        DestState {
            active: AtomicU32::new(0),
            inactive: AtomicU32::new(0),
            persist: AtomicU32::new(0),
            stats: ShardedStats::new(shards),
            zero_base: Mutex::new(Stats::default()),
        }
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

    /// Whether the destination may take a new connection: a weight above 0
    /// and, when an upper threshold is set, fewer connections than it.
    #[inline]
    pub fn available(&self) -> bool {
        self.spec.weight > 0
            && (self.spec.u_threshold == 0 || self.state.conns() < u64::from(self.spec.u_threshold))
    }
}
