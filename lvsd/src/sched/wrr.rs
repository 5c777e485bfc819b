//! Weighted round robin (IPVS `wrr`).
//!
//! A current weight `cw` starts at the largest weight and steps down by the
//! greatest common divisor of the weights, back to the largest after it
//! reaches the gcd. At each value the destinations are scanned in table
//! order and every one whose weight is at least `cw` is picked once. Over one
//! full cycle a destination of weight `w` is picked `w / gcd` times, and heavy
//! destinations get their extra picks spread over the cycle rather than in a
//! burst: for weights 4, 3, 2 the picks are A A B A B C A B C.
//!
//! Differences from a literal transcription of ip_vs_wrr.c, with the same
//! picks: when no available destination reaches the current weight (the
//! heaviest ones are over their threshold), `cw` drops straight to the
//! heaviest available weight instead of scanning every empty level, so a pick
//! costs at most about two scans of the table.
//!
//! The gcd and the maximum are computed once, when the scheduler is built for
//! its table (a table never changes); the position (index, cw) is behind a
//! mutex shared by all shards.

use super::Scheduler;
use crate::rules::Dest;
use std::sync::{Mutex, PoisonError};

#[derive(Debug)]
pub struct WeightedRoundRobin {
    /// The gcd of the non-zero weights; 0 when every weight is 0.
    gcd: u32,
    /// The largest weight.
    max: u32,
    position: Mutex<Position>,
}

#[derive(Debug)]
struct Position {
    /// The next index to examine at the current weight.
    next: usize,
    /// The current weight.
    cw: u32,
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl WeightedRoundRobin {
    pub fn new(dests: &[Dest]) -> WeightedRoundRobin {
        let weights = dests.iter().map(Dest::weight);
        let g = weights.clone().fold(0, gcd);
        let max = weights.max().unwrap_or(0);
        WeightedRoundRobin {
            gcd: g,
            max,
            position: Mutex::new(Position { next: 0, cw: max }),
        }
    }

    /// The gcd of the non-zero weights the scheduler was built with.
    pub fn gcd(&self) -> u32 {
        self.gcd
    }

    /// The largest weight the scheduler was built with.
    pub fn max_weight(&self) -> u32 {
        self.max
    }
}

/// The largest weight among available destinations (0 if none).
fn max_available(dests: &[Dest]) -> u32 {
    dests
        .iter()
        .filter(|d| d.available())
        .map(Dest::weight)
        .max()
        .unwrap_or(0)
}

impl Scheduler for WeightedRoundRobin {
    fn name(&self) -> &'static str {
        "wrr"
    }

    fn pick(&self, dests: &[Dest]) -> Option<usize> {
        if self.max == 0 {
            return None;
        }
        // A panic cannot happen while the lock is held; should one ever
        // poison it, the position is still a valid position.
        let mut pos = self.position.lock().unwrap_or_else(PoisonError::into_inner);
        // Pass 1 finishes the current weight level. Then cw moves to the
        // next level that has a candidate, so pass 2 finds one unless the
        // connection counts of other shards changed in between; pass 3 is a
        // retry for that race, after which the pick gives up.
        for _ in 0..3 {
            while let Some(d) = dests.get(pos.next) {
                let i = pos.next;
                pos.next += 1;
                if d.weight() >= pos.cw && d.available() {
                    return Some(i);
                }
            }
            let top = max_available(dests);
            if top == 0 {
                return None;
            }
            pos.next = 0;
            pos.cw = if pos.cw > self.gcd {
                pos.cw - self.gcd
            } else {
                self.max
            };
            // Levels above `top` would be scanned in vain. `top` is itself a
            // level: a multiple of the gcd, not above the maximum.
            pos.cw = pos.cw.min(top);
        }
        None
    }

    /// The same destinations and weights (a change elsewhere in the rules):
    /// the position as it is. Otherwise, as IPVS's wrr on a change to its
    /// service: the scan starts again at the first destination, at the
    /// current weight level where it is still one (else the largest).
    fn successor(&self, old: &[Dest], new: &[Dest]) -> Option<Box<dyn Scheduler>> {
        let mut next = WeightedRoundRobin::new(new);
        let pos = self.position.lock().unwrap_or_else(PoisonError::into_inner);
        let same = old.len() == new.len()
            && old
                .iter()
                .zip(new)
                .all(|(a, b)| a.addr() == b.addr() && a.weight() == b.weight());
        let p = next
            .position
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if same {
            (p.next, p.cw) = (pos.next, pos.cw);
        } else if next.gcd > 0 && pos.cw > 0 && pos.cw <= next.max {
            p.cw = (pos.cw / next.gcd).max(1) * next.gcd;
        }
        Some(Box::new(next))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{dests, picks, set_conns, shares};
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ipvs_order_for_4_3_2() {
        let ds = dests(&[4, 3, 2]);
        let wrr = WeightedRoundRobin::new(&ds);
        assert_eq!((wrr.gcd(), wrr.max_weight()), (1, 4));
        let (a, b, c) = (0, 1, 2);
        assert_eq!(picks(&wrr, &ds, 9), [a, a, b, a, b, c, a, b, c]);
        // And the cycle repeats.
        assert_eq!(picks(&wrr, &ds, 9), [a, a, b, a, b, c, a, b, c]);
    }

    #[test]
    fn shares_over_900_picks_match_weights() {
        let ds = dests(&[4, 3, 2]);
        let wrr = WeightedRoundRobin::new(&ds);
        assert_eq!(shares(&wrr, &ds, 900), [400, 300, 200]);
    }

    #[test]
    fn gcd_steps() {
        // Weights 100, 50, 50: gcd 50, cycle A, A B C.
        let ds = dests(&[100, 50, 50]);
        let wrr = WeightedRoundRobin::new(&ds);
        assert_eq!(wrr.gcd(), 50);
        assert_eq!(picks(&wrr, &ds, 8), [0, 0, 1, 2, 0, 0, 1, 2]);
    }

    #[test]
    fn equal_weights_are_round_robin() {
        let ds = dests(&[7, 7, 7]);
        let wrr = WeightedRoundRobin::new(&ds);
        assert_eq!(picks(&wrr, &ds, 6), [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn weight_zero_never_picked() {
        let ds = dests(&[0, 2, 0, 1]);
        let wrr = WeightedRoundRobin::new(&ds);
        assert_eq!(wrr.gcd(), 1);
        assert_eq!(shares(&wrr, &ds, 300), [0, 200, 0, 100]);
    }

    #[test]
    fn overloaded_heaviest_is_skipped_and_rest_keep_their_ratio() {
        let mut ds = dests(&[10, 3, 1]);
        ds[0].spec.u_threshold = 1;
        set_conns(&ds[0], 1, 0);
        let wrr = WeightedRoundRobin::new(&ds);
        // Levels 10..4 are empty; at 3..2 only B, at 1 B and C.
        assert_eq!(picks(&wrr, &ds, 8), [1, 1, 1, 2, 1, 1, 1, 2]);
        // Back under its threshold: A comes back at the next level 10.
        set_conns(&ds[0], 0, 0);
        let counts = shares(&wrr, &ds, 14 * 10);
        assert_eq!(counts, [100, 30, 10]);
    }

    proptest! {
        #[test]
        fn shares_are_proportional_to_weights(
            weights in proptest::collection::vec(0..12u32, 1..7),
            cycles in 1..5usize,
        ) {
            let ds = dests(&weights);
            let wrr = WeightedRoundRobin::new(&ds);
            let g = weights.iter().copied().fold(0, gcd);
            prop_assume!(g > 0);
            let per_cycle: usize = weights.iter().map(|&w| (w / g) as usize).sum();
            let counts = shares(&wrr, &ds, per_cycle * cycles);
            let expect: Vec<usize> = weights.iter().map(|&w| (w / g) as usize * cycles).collect();
            prop_assert_eq!(counts, expect);
        }

        #[test]
        fn never_none_while_one_is_available(weights in proptest::collection::vec(0..5u32, 1..6)) {
            let ds = dests(&weights);
            let wrr = WeightedRoundRobin::new(&ds);
            let any = weights.iter().any(|&w| w > 0);
            for _ in 0..20 {
                prop_assert_eq!(wrr.pick(&ds).is_some(), any);
            }
        }
    }
}
