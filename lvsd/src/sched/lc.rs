//! Least connection (IPVS `lc`): the available destination with the
//! smallest connection overhead, `active * 256 + inactive`
//! ([`DestState::overhead`](crate::rules::DestState::overhead)); weights
//! only matter in that 0 quiesces. Ties go to the first in table order.
//! No state of its own.

use super::Scheduler;
use crate::rules::Dest;

#[derive(Debug, Default, Clone, Copy)]
pub struct LeastConnection;

impl Scheduler for LeastConnection {
    fn name(&self) -> &'static str {
        "lc"
    }

    fn pick(&self, dests: &[Dest]) -> Option<usize> {
        let mut least: Option<(usize, u64)> = None;
        for (i, d) in dests.iter().enumerate() {
            if !d.available() {
                continue;
            }
            let overhead = d.state.overhead();
            match least {
                Some((_, lowest)) if overhead >= lowest => {}
                _ => least = Some((i, overhead)),
            }
        }
        least.map(|(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{dests, set_conns};
    use super::*;

    #[test]
    fn fewest_connections_wins() {
        let ds = dests(&[1, 1, 1]);
        set_conns(&ds[0], 3, 0);
        set_conns(&ds[1], 1, 10);
        set_conns(&ds[2], 2, 0);
        // Overheads 768, 266, 512.
        assert_eq!(LeastConnection.pick(&ds), Some(1));
    }

    #[test]
    fn one_active_outweighs_255_inactive() {
        let ds = dests(&[1, 1]);
        set_conns(&ds[0], 1, 0); // 256
        set_conns(&ds[1], 0, 255); // 255
        assert_eq!(LeastConnection.pick(&ds), Some(1));
        set_conns(&ds[1], 0, 257); // 257
        assert_eq!(LeastConnection.pick(&ds), Some(0));
    }

    #[test]
    fn ties_go_to_the_first() {
        let ds = dests(&[1, 5, 1]);
        set_conns(&ds[0], 2, 0);
        set_conns(&ds[1], 1, 0);
        set_conns(&ds[2], 1, 0);
        assert_eq!(LeastConnection.pick(&ds), Some(1));
        set_conns(&ds[0], 1, 0);
        assert_eq!(LeastConnection.pick(&ds), Some(0));
    }

    #[test]
    fn weights_do_not_matter_but_zero_quiesces() {
        let ds = dests(&[100, 1, 0]);
        set_conns(&ds[0], 10, 0);
        set_conns(&ds[1], 9, 0);
        assert_eq!(LeastConnection.pick(&ds), Some(1));
        // Weight 0, no connections: still never picked.
        assert_eq!(LeastConnection.pick(&ds[2..]), None);
    }
}
