//! Counters: per shard, single writer, summed when asked.
//!
//! Invariant: each [`Counters`] block is written by exactly one shard thread,
//! so an increment is a relaxed load and store, not a locked read-modify-write;
//! readers (the admin thread) may see a slightly stale value, never a torn one.
//! Blocks are cache-line aligned so shards never share a line.

use lvsd_proto::Stats;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Add `n` to a counter that only the calling shard writes.
#[inline]
pub fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

/// One shard's traffic counters for a service or a destination.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct Counters {
    pub conns: AtomicU64,
    pub inpkts: AtomicU64,
    pub outpkts: AtomicU64,
    pub inbytes: AtomicU64,
    pub outbytes: AtomicU64,
}

impl Counters {
    #[inline]
    pub fn count_in(&self, bytes: usize) {
        bump(&self.inpkts, 1);
        bump(&self.inbytes, bytes as u64);
    }

    #[inline]
    pub fn count_out(&self, bytes: usize) {
        bump(&self.outpkts, 1);
        bump(&self.outbytes, bytes as u64);
    }

    #[inline]
    pub fn count_conn(&self) {
        bump(&self.conns, 1);
    }

    pub fn read(&self) -> Stats {
        Stats {
            conns: self.conns.load(Relaxed),
            inpkts: self.inpkts.load(Relaxed),
            outpkts: self.outpkts.load(Relaxed),
            inbytes: self.inbytes.load(Relaxed),
            outbytes: self.outbytes.load(Relaxed),
        }
    }
}

/// Counters of one object (service or destination), one block per shard.
#[derive(Debug)]
pub struct ShardedStats {
    shards: Box<[Counters]>,
}

impl ShardedStats {
    pub fn new(shards: usize) -> Self {
        ShardedStats {
            shards: (0..shards.max(1)).map(|_| Counters::default()).collect(),
        }
    }

    /// The block shard `i` writes. Out-of-range shards share the last block
    /// rather than panic (they cannot occur: shard ids come from the config).
    #[inline]
    pub fn shard(&self, i: usize) -> &Counters {
        let last = self.shards.len() - 1;
        &self.shards[i.min(last)]
    }

    /// The sum over shards.
    pub fn sum(&self) -> Stats {
        self.shards
            .iter()
            .map(Counters::read)
            .fold(Stats::default(), add)
    }
}

/// Field-wise sum.
pub fn add(a: Stats, b: Stats) -> Stats {
    Stats {
        conns: a.conns.wrapping_add(b.conns),
        inpkts: a.inpkts.wrapping_add(b.inpkts),
        outpkts: a.outpkts.wrapping_add(b.outpkts),
        inbytes: a.inbytes.wrapping_add(b.inbytes),
        outbytes: a.outbytes.wrapping_add(b.outbytes),
    }
}

/// Field-wise difference, for counters zeroed by keeping a baseline.
pub fn sub(a: Stats, b: Stats) -> Stats {
    Stats {
        conns: a.conns.wrapping_sub(b.conns),
        inpkts: a.inpkts.wrapping_sub(b.inpkts),
        outpkts: a.outpkts.wrapping_sub(b.outpkts),
        inbytes: a.inbytes.wrapping_sub(b.inbytes),
        outbytes: a.outbytes.wrapping_sub(b.outbytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_sum() {
        let s = ShardedStats::new(2);
        s.shard(0).count_in(100);
        s.shard(1).count_in(50);
        s.shard(1).count_out(10);
        s.shard(0).count_conn();
        let t = s.sum();
        assert_eq!(
            (t.conns, t.inpkts, t.inbytes, t.outpkts, t.outbytes),
            (1, 2, 150, 1, 10)
        );
        assert_eq!(sub(t, t), Stats::default());
    }
}
