//! Round robin (IPVS `rr`): each new connection goes to the next available
//! destination after the one picked last, in table order, weights aside
//! (except that weight 0 quiesces a destination).
//!
//! The position is one `AtomicUsize`, the index to start the next search
//! from. A pick scans forward from it and publishes "one past the pick" with a
//! compare-exchange, retrying from the newer position if another shard picked
//! meanwhile, so concurrent picks still step through the destinations in turn.

use super::Scheduler;
use crate::rules::Dest;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct RoundRobin {
    /// Where the next search starts (taken modulo the number of dests).
    next: AtomicUsize,
}

impl RoundRobin {
    pub fn new() -> RoundRobin {
        RoundRobin::default()
    }
}

/// The first available destination at or after index `from` (modulo the
/// length), wrapping around to the start.
fn first_available(dests: &[Dest], from: usize) -> Option<usize> {
    let from = from % dests.len().max(1);
    let (head, tail) = dests.split_at(from);
    tail.iter()
        .position(Dest::available)
        .map(|i| from + i)
        .or_else(|| head.iter().position(Dest::available))
}

impl Scheduler for RoundRobin {
    fn name(&self) -> &'static str {
        "rr"
    }

    fn pick(&self, dests: &[Dest]) -> Option<usize> {
        let mut from = self.next.load(Relaxed);
        loop {
            let picked = first_available(dests, from)?;
            match self
                .next
                .compare_exchange_weak(from, picked + 1, Relaxed, Relaxed)
            {
                Ok(_) => return Some(picked),
                Err(now) => from = now,
            }
        }
    }

    /// Goes on after the destination picked last, wherever it now is; if
    /// it is gone, with the one that followed it (IPVS's rr steps back to
    /// the removed one's predecessor).
    fn successor(&self, old: &[Dest], new: &[Dest]) -> Option<Box<dyn Scheduler>> {
        let next = self.next.load(Relaxed);
        let after_last = match next.checked_sub(1) {
            None => 0,
            Some(last) => {
                let last = last % old.len().max(1);
                old.get(last)
                    .and_then(|d| new.iter().position(|n| n.addr() == d.addr()))
                    .map_or(last, |i| i + 1)
            }
        };
        Some(Box::new(RoundRobin {
            next: AtomicUsize::new(after_last),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{dests, picks, shares};
    use super::*;
    use std::sync::Arc;

    #[test]
    fn cycles_in_order() {
        let ds = dests(&[1, 1, 1]);
        let rr = RoundRobin::new();
        assert_eq!(picks(&rr, &ds, 7), [0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn ignores_weights() {
        let ds = dests(&[5, 1, 3]);
        let rr = RoundRobin::new();
        assert_eq!(shares(&rr, &ds, 300), [100, 100, 100]);
    }

    #[test]
    fn skips_quiesced_and_resumes_after_last_pick() {
        let mut ds = dests(&[1, 0, 1, 1]);
        let rr = RoundRobin::new();
        assert_eq!(picks(&rr, &ds, 4), [0, 2, 3, 0]);
        // Destination 1 back in service: the cycle goes on from 0 to 1.
        ds[1].spec.weight = 1;
        assert_eq!(picks(&rr, &ds, 4), [1, 2, 3, 0]);
        // Only one available: always it.
        for (d, w) in ds.iter_mut().zip([0, 0, 1, 0]) {
            d.spec.weight = w;
        }
        assert_eq!(picks(&rr, &ds, 3), [2, 2, 2]);
    }

    #[test]
    fn survives_a_shorter_slice() {
        // Not the documented use, but it must not panic.
        let ds = dests(&[1, 1, 1]);
        let rr = RoundRobin::new();
        assert_eq!(picks(&rr, &ds, 3), [0, 1, 2]);
        assert_eq!(rr.pick(&ds[..1]), Some(0));
        assert_eq!(rr.pick(&[]), None);
    }

    #[test]
    fn concurrent_picks_share_evenly() {
        let ds = Arc::new(dests(&[1, 1, 1, 1]));
        let rr = Arc::new(RoundRobin::new());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (ds, rr) = (Arc::clone(&ds), Arc::clone(&rr));
                std::thread::spawn(move || shares(&*rr, &ds, 1000))
            })
            .collect();
        let mut total = [0usize; 4];
        for t in threads {
            for (sum, n) in total.iter_mut().zip(t.join().unwrap()) {
                *sum += n;
            }
        }
        assert_eq!(total, [1000; 4]);
    }
}
