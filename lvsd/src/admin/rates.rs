//! Rate estimates for `--rate`, as IPVS's estimator makes them: every two
//! seconds the counters are sampled, the per-second rate over the interval
//! is computed, and a moving average moves a quarter of the way towards it.

use crate::rules::Model;
use lvsd_proto::{Rates, ServiceKey, Stats};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

#[derive(Debug, Clone, Copy, Default)]
struct Estimate {
    last: Stats,
    /// cps, inpps, outpps, inbps, outbps.
    avg: [f64; 5],
}

impl Estimate {
    /// An estimate that starts at counters `now`, at 0.
    fn starting_at(now: Stats) -> Estimate {
        Estimate {
            last: now,
            avg: [0.0; 5],
        }
    }

    fn update(&mut self, now: Stats, secs: f64) {
        let d = [
            now.conns.wrapping_sub(self.last.conns),
            now.inpkts.wrapping_sub(self.last.inpkts),
            now.outpkts.wrapping_sub(self.last.outpkts),
            now.inbytes.wrapping_sub(self.last.inbytes),
            now.outbytes.wrapping_sub(self.last.outbytes),
        ];
        for (avg, delta) in self.avg.iter_mut().zip(d) {
            let rate = delta as f64 / secs;
            *avg += (rate - *avg) / 4.0;
        }
        self.last = now;
    }

    fn rates(&self) -> Rates {
        // Rates are far below 2^53; a saturating float cast is what we want.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let r = |v: f64| v.max(0.0).round() as u64;
        Rates {
            cps: r(self.avg[0]),
            inpps: r(self.avg[1]),
            outpps: r(self.avg[2]),
            inbps: r(self.avg[3]),
            outbps: r(self.avg[4]),
        }
    }
}

/// Estimates for every service and destination.
#[derive(Debug, Default)]
pub struct RateEstimator {
    services: HashMap<ServiceKey, Estimate>,
    dests: HashMap<(ServiceKey, SocketAddr), Estimate>,
    last: Option<Instant>,
}

impl RateEstimator {
    /// Takes one sample of every counter.
    pub fn sample(&mut self, model: &Model) {
        let now = Instant::now();
        let secs = self
            .last
            .map(|t| now.duration_since(t).as_secs_f64())
            .unwrap_or(2.0)
            .max(0.001);
        self.last = Some(now);
        let mut services = HashMap::new();
        let mut dests = HashMap::new();
        for s in &model.services {
            let key = s.spec.key;
            let sum = s.state.stats.sum();
            let mut e = self
                .services
                .get(&key)
                .copied()
                .unwrap_or(Estimate::starting_at(sum));
            e.update(sum, secs);
            services.insert(key, e);
            for d in &s.dests {
                let sum = d.state.stats.sum();
                let mut e = self
                    .dests
                    .get(&(key, d.spec.addr))
                    .copied()
                    .unwrap_or(Estimate::starting_at(sum));
                e.update(sum, secs);
                dests.insert((key, d.spec.addr), e);
            }
        }
        self.services = services;
        self.dests = dests;
    }

    /// Zeroing (`-Z`), as IPVS zeroes its estimators: the averages of
    /// `only` (every service when `None`) and its destinations start again
    /// from 0 and from the counters as they are now.
    pub fn zero(&mut self, model: &Model, only: Option<&ServiceKey>) {
        for s in &model.services {
            let key = s.spec.key;
            if only.is_some_and(|k| *k != key) {
                continue;
            }
            self.services
                .insert(key, Estimate::starting_at(s.state.stats.sum()));
            for d in &s.dests {
                self.dests.insert(
                    (key, d.spec.addr),
                    Estimate::starting_at(d.state.stats.sum()),
                );
            }
        }
    }

    pub fn service(&self, key: &ServiceKey) -> Rates {
        self.services
            .get(key)
            .map(Estimate::rates)
            .unwrap_or_default()
    }

    pub fn dest(&self, key: &ServiceKey, addr: &SocketAddr) -> Rates {
        self.dests
            .get(&(*key, *addr))
            .map(Estimate::rates)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converges_to_steady_rate() {
        let mut e = Estimate::default();
        let mut total = Stats::default();
        for _ in 0..40 {
            total.inpkts += 2000; // 1000 packets/s over 2 s
            total.conns += 20;
            e.update(total, 2.0);
        }
        let r = e.rates();
        assert_eq!(r.inpps, 1000);
        assert_eq!(r.cps, 10);
        assert_eq!(r.outpps, 0);
    }

    #[test]
    fn zeroing_starts_the_averages_again() {
        use lvsd_proto::{DestSpec, Method, Op, Protocol, ServiceSpec};
        let key = |a: &str| ServiceKey {
            protocol: Protocol::Tcp,
            addr: a.parse().unwrap(),
        };
        let (a, b) = (key("198.19.0.100:80"), key("198.19.0.101:80"));
        let mut m = Model::new(1);
        for k in [a, b] {
            m.apply(&Op::AddService {
                service: ServiceSpec {
                    key: k,
                    scheduler: "rr".into(),
                    persistent: None,
                },
            })
            .unwrap();
            m.apply(&Op::AddDest {
                service: k,
                dest: DestSpec {
                    addr: "198.18.1.11:8080".parse().unwrap(),
                    weight: 1,
                    method: Method::Nat,
                    u_threshold: 0,
                    l_threshold: 0,
                },
            })
            .unwrap();
        }
        let traffic = |m: &Model| {
            for s in &m.services {
                s.state.stats.shard(0).count_in(1000);
                s.dests[0].state.stats.shard(0).count_in(1000);
            }
        };
        let mut e = RateEstimator::default();
        e.sample(&m);
        traffic(&m);
        e.sample(&m);
        let rs = m.services[0].dests[0].spec.addr;
        assert!(e.service(&a).inpps > 0 && e.dest(&a, &rs).inbps > 0);
        let before_b = e.service(&b);
        e.zero(&m, Some(&a));
        assert_eq!(e.service(&a), Rates::default());
        assert_eq!(e.dest(&a, &rs), Rates::default());
        assert_eq!(e.service(&b), before_b, "another service's rates kept");
        // Counted before the zeroing, not after: the next sample stays 0.
        e.sample(&m);
        assert_eq!(e.service(&a), Rates::default());
        e.zero(&m, None);
        assert_eq!(e.service(&b), Rates::default());
    }
}
