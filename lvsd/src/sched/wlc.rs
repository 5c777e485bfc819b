//! Weighted least connection (IPVS `wlc`, the IPVS default): the available
//! destination with the smallest `overhead / weight`, overhead being
//! `active * 256 + inactive`. As in IPVS the ratio is compared by
//! cross-multiplying, `loh * w > doh * lw` (the candidate wins only when
//! strictly better, so ties go to the first in table order). The products are
//! taken in u128: an overhead (< 2^41) times a `u32` weight can exceed u64.
//! No state of its own.

use super::Scheduler;
use crate::rules::Dest;

#[derive(Debug, Default, Clone, Copy)]
pub struct WeightedLeastConnection;

impl Scheduler for WeightedLeastConnection {
    fn name(&self) -> &'static str {
        "wlc"
    }

    fn pick(&self, dests: &[Dest]) -> Option<usize> {
        // (index, overhead, weight) of the best so far.
        let mut least: Option<(usize, u64, u32)> = None;
        for (i, d) in dests.iter().enumerate() {
            // `available` also rules out weight 0.
            if !d.available() {
                continue;
            }
            let (doh, dw) = (d.state.overhead(), d.weight());
            let better = match least {
                None => true,
                Some((_, loh, lw)) => {
                    u128::from(loh) * u128::from(dw) > u128::from(doh) * u128::from(lw)
                }
            };
            if better {
                least = Some((i, doh, dw));
            }
        }
        least.map(|(i, _, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{dests, set_conns};
    use super::*;

    #[test]
    fn smallest_overhead_per_weight_wins() {
        // Overheads 1024, 768, 512 over weights 4, 1, 1: 256, 768, 512.
        let ds = dests(&[4, 1, 1]);
        set_conns(&ds[0], 4, 0);
        set_conns(&ds[1], 3, 0);
        set_conns(&ds[2], 2, 0);
        assert_eq!(WeightedLeastConnection.pick(&ds), Some(0));
        // lc would pick 2 here; wlc too once 0 is loaded enough.
        set_conns(&ds[0], 9, 0); // 2304 / 4 = 576 > 512
        assert_eq!(WeightedLeastConnection.pick(&ds), Some(2));
    }

    #[test]
    fn inactive_count_a_256th() {
        let ds = dests(&[2, 1]);
        set_conns(&ds[0], 1, 0); // 256 / 2 = 128
        set_conns(&ds[1], 0, 127); // 127 / 1
        assert_eq!(WeightedLeastConnection.pick(&ds), Some(1));
        set_conns(&ds[1], 0, 129); // 129 / 1
        assert_eq!(WeightedLeastConnection.pick(&ds), Some(0));
    }

    #[test]
    fn ties_go_to_the_first() {
        // 512 / 2 == 256 / 1.
        let ds = dests(&[1, 2, 1]);
        set_conns(&ds[0], 1, 0);
        set_conns(&ds[1], 2, 0);
        set_conns(&ds[2], 1, 0);
        assert_eq!(WeightedLeastConnection.pick(&ds), Some(0));
        // All idle: the first available.
        let ds = dests(&[0, 3, 5]);
        assert_eq!(WeightedLeastConnection.pick(&ds), Some(1));
    }

    #[test]
    fn weight_zero_never_picked() {
        let ds = dests(&[0, 1]);
        set_conns(&ds[1], 1000, 1000);
        assert_eq!(WeightedLeastConnection.pick(&ds), Some(1));
        assert_eq!(WeightedLeastConnection.pick(&ds[..1]), None);
    }

    #[test]
    fn huge_counts_do_not_overflow() {
        // Overheads near 2^40 times weights near 2^32: past u64. One fewer
        // inactive connection on the second must still tell them apart.
        let ds = dests(&[u32::MAX, u32::MAX]);
        set_conns(&ds[0], u32::MAX, u32::MAX);
        set_conns(&ds[1], u32::MAX, u32::MAX - 1);
        assert_eq!(WeightedLeastConnection.pick(&ds), Some(1));
        set_conns(&ds[1], u32::MAX, u32::MAX);
        assert_eq!(WeightedLeastConnection.pick(&ds), Some(0));
    }
}
