//! Schedulers: pick a destination for a new connection.
//!
//! One trait, one file per scheduler, one factory ([`new_scheduler`]), as
//! IPVS has one module per scheduler. A scheduler is built with the rule table
//! it serves and lives exactly as long as that table; state it needs across
//! picks (a round-robin position) is behind atomics or a mutex, because every
//! shard picks from the same table. Destinations that are not
//! [`Dest::available`] (weight 0, over their upper threshold) are never picked.

pub mod lc;
pub mod rr;
pub mod wlc;
pub mod wrr;

pub use self::lc::LeastConnection;
pub use self::rr::RoundRobin;
pub use self::wlc::WeightedLeastConnection;
pub use self::wrr::WeightedRoundRobin;

use crate::rules::Dest;
use std::fmt::Debug;

/// A scheduling algorithm bound to one service's destinations.
pub trait Scheduler: Send + Sync + Debug {
    /// The name ipvsadm shows ("rr", "wrr", ...).
    fn name(&self) -> &'static str;

    /// Index into `dests` of the destination for a new connection, or None
    /// when no destination is available. `dests` is the same slice the
    /// scheduler was built with.
    fn pick(&self, dests: &[Dest]) -> Option<usize>;

    /// The scheduler for this service in the next rule table, whose
    /// destinations are `new` (this one's were `old`): every change to the
    /// rules builds a new table, and the round-robin schedulers carry their
    /// position over, as IPVS keeps a service's scheduler across changes.
    /// None: build a fresh one (a scheduler with no position).
    fn successor(&self, _old: &[Dest], _new: &[Dest]) -> Option<Box<dyn Scheduler>> {
        None
    }
}

/// Scheduler names this build knows, in the order `lvsadm -h` lists them.
pub const NAMES: &[&str] = &["rr", "wrr", "lc", "wlc"];

/// Builds the scheduler `name` for `dests`, or None for an unknown name.
pub fn new_scheduler(name: &str, dests: &[Dest]) -> Option<Box<dyn Scheduler>> {
    match name {
        "rr" => Some(Box::new(RoundRobin::new())),
        "wrr" => Some(Box::new(WeightedRoundRobin::new(dests))),
        "lc" => Some(Box::new(LeastConnection)),
        "wlc" => Some(Box::new(WeightedLeastConnection)),
        _ => None,
    }
}

/// Destinations for the schedulers' tests.
#[cfg(test)]
pub(crate) mod testutil {
    use crate::rules::{Dest, DestState};
    use lvsd_proto::{DestSpec, Method};
    use std::net::{Ipv4Addr, SocketAddr};
    use std::sync::atomic::Ordering::Relaxed;
    use std::sync::Arc;

    /// Destinations 10.0.0.1:80, 10.0.0.2:80, ... with these weights.
    pub fn dests(weights: &[u32]) -> Vec<Dest> {
        (1..)
            .zip(weights)
            .map(|(host, &weight)| Dest {
                spec: DestSpec {
                    addr: SocketAddr::from((Ipv4Addr::new(10, 0, 0, host), 80)),
                    weight,
                    method: Method::Nat,
                    u_threshold: 0,
                    l_threshold: 0,
                },
                state: Arc::new(DestState::new(1)),
                local: false,
            })
            .collect()
    }

    pub fn set_conns(dest: &Dest, active: u32, inactive: u32) {
        dest.state.active.store(active, Relaxed);
        dest.state.inactive.store(inactive, Relaxed);
    }

    /// `n` picks, as indices (None as usize::MAX).
    pub fn picks(s: &dyn super::Scheduler, dests: &[Dest], n: usize) -> Vec<usize> {
        (0..n)
            .map(|_| s.pick(dests).unwrap_or(usize::MAX))
            .collect()
    }

    /// How often each destination was picked in `n` picks.
    pub fn shares(s: &dyn super::Scheduler, dests: &[Dest], n: usize) -> Vec<usize> {
        let mut counts = vec![0; dests.len()];
        for _ in 0..n {
            if let Some(c) = s.pick(dests).and_then(|i| counts.get_mut(i)) {
                *c += 1;
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::{dests, set_conns};
    use super::*;

    #[test]
    fn every_name_builds_and_names_itself() {
        let ds = dests(&[1, 2]);
        for &name in NAMES {
            let s = new_scheduler(name, &ds).expect(name);
            assert_eq!(s.name(), name);
        }
        assert!(new_scheduler("sh", &ds).is_none());
        assert!(new_scheduler("", &ds).is_none());
    }

    #[test]
    fn no_dests_or_all_weight_zero_picks_none() {
        for &name in NAMES {
            let s = new_scheduler(name, &[]).unwrap();
            assert_eq!(s.pick(&[]), None, "{name}");
            let ds = dests(&[0, 0, 0]);
            let s = new_scheduler(name, &ds).unwrap();
            assert_eq!(s.pick(&ds), None, "{name}");
        }
    }

    #[test]
    fn weight_zero_is_quiesced_for_every_scheduler() {
        // The middle destination is quiesced and has the fewest connections,
        // so lc and wlc would pick it were weight 0 not excluded.
        let ds = dests(&[1, 0, 1]);
        set_conns(&ds[0], 5, 0);
        set_conns(&ds[2], 5, 0);
        for &name in NAMES {
            let s = new_scheduler(name, &ds).unwrap();
            for _ in 0..20 {
                let i = s.pick(&ds).unwrap();
                assert_ne!(i, 1, "{name} picked a weight-0 destination");
            }
        }
    }

    #[test]
    fn over_upper_threshold_is_skipped_for_every_scheduler() {
        let mut ds = dests(&[5, 1, 1]);
        ds[0].spec.u_threshold = 3;
        set_conns(&ds[0], 2, 1); // 3 connections: at the threshold
        set_conns(&ds[1], 50, 0);
        set_conns(&ds[2], 50, 0);
        for &name in NAMES {
            let s = new_scheduler(name, &ds).unwrap();
            for _ in 0..20 {
                assert_ne!(s.pick(&ds), Some(0), "{name}");
            }
        }
        // Under the threshold again, it can be picked.
        set_conns(&ds[0], 2, 0);
        for &name in NAMES {
            let s = new_scheduler(name, &ds).unwrap();
            assert!((0..20).any(|_| s.pick(&ds) == Some(0)), "{name}");
        }
        // All over: None.
        for d in &mut ds {
            d.spec.u_threshold = 1;
        }
        set_conns(&ds[0], 1, 0);
        for &name in NAMES {
            let s = new_scheduler(name, &ds).unwrap();
            assert_eq!(s.pick(&ds), None, "{name}");
        }
    }

    #[test]
    fn schedulers_are_shareable() {
        fn assert_send_sync<T: Send + Sync>(_: &T) {}
        let ds = dests(&[1]);
        for &name in NAMES {
            assert_send_sync(&new_scheduler(name, &ds).unwrap());
        }
    }
}
