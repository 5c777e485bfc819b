//! The control path: one [`Control`] owns the rule model and applies every
//! change, whether it comes from the admin socket, the boot-time config or a
//! reload. [`server`] only decodes requests, checks who may change things and
//! hands typed operations here.
//!
//! A change is applied to a copy of the model, validated, built into a new
//! rule table and swapped in with one atomic store; the shards pick it up at
//! their next batch. A refused change leaves model, table and kernel as they
//! were.

pub mod rates;
pub mod server;

use crate::dataplane::{DropReason, Interfaces, ShardCounters};
use crate::io::kernel::{FilterSets, KernelFilter};
use crate::io::shard::ShardRequest;
use crate::io::xdp::XdpFilter;
use crate::rules::{DestState, Model, RuleError, RuleTable};
use crate::stats;
use arc_swap::ArcSwap;
use lvsd_proto::{
    DaemonStats, DestInfo, DestSpec, ErrorKind, Method, Op, Protocol, Response, ServiceInfo,
    ServiceKey, ShardStats, Snapshot, VersionInfo,
};
use rates::RateEstimator;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::time::Duration;

/// How the control path reaches one shard.
pub struct ShardHandle {
    pub counters: Arc<ShardCounters>,
    pub requests: Sender<ShardRequest>,
}

/// The owner of the rules.
pub struct Control {
    model: Model,
    pub rules: Arc<ArcSwap<RuleTable>>,
    pub ifaces: Arc<ArcSwap<Interfaces>>,
    kernel: Option<KernelFilter>,
    /// The XDP program's maps (XDP backend only).
    xdp: Option<XdpFilter>,
    /// What `--status` says about how frames arrive.
    backend: String,
    shards: Vec<ShardHandle>,
    rates: RateEstimator,
    conn_table_size: u64,
    neighbors: Option<Arc<crate::io::neigh::NeighCounters>>,
    /// Removed destinations whose connections still carry traffic: the
    /// kernel filter keeps dropping NAT ones' replies, and the neighbour
    /// resolver keeps them all resolved, until the last one ends.
    lingering: Vec<Lingering>,
}

/// A removed destination that may still have connections.
struct Lingering {
    protocol: Protocol,
    addr: SocketAddr,
    method: Method,
    state: Arc<DestState>,
}

impl Control {
    pub fn new(
        model: Model,
        ifaces: Arc<ArcSwap<Interfaces>>,
        kernel: Option<KernelFilter>,
        conn_table_size: u64,
    ) -> Self {
        let rules = Arc::new(ArcSwap::from_pointee(model.build(
            1,
            &ifaces.load().local,
            None,
        )));
        Control {
            model,
            rules,
            ifaces,
            kernel,
            xdp: None,
            backend: "packet".into(),
            shards: Vec::new(),
            rates: RateEstimator::default(),
            conn_table_size,
            neighbors: None,
            lingering: Vec::new(),
        }
    }

    /// Hands over the XDP program's maps, kept in step with the rules from
    /// now on, and how `--status` names the backend.
    pub fn set_xdp(&mut self, filter: XdpFilter, backend: String) {
        self.xdp = Some(filter);
        self.backend = backend;
        self.sync_kernel();
    }

    pub fn add_shard(&mut self, h: ShardHandle) {
        self.shards.push(h);
    }

    /// Where `--status` reads the neighbour resolver's counters.
    pub fn set_neighbor_counters(&mut self, c: Arc<crate::io::neigh::NeighCounters>) {
        self.neighbors = Some(c);
    }

    /// Takes the kernel filter out (to remove it at shutdown).
    pub fn take_kernel(&mut self) -> Option<KernelFilter> {
        self.kernel.take()
    }

    /// Brings the kernel filter in line with the rules (at start and after
    /// every change).
    pub fn sync_kernel(&mut self) {
        if self.kernel.is_none() && self.xdp.is_none() {
            return;
        }
        let services = self
            .model
            .services
            .iter()
            .map(|s| (s.spec.key.protocol, s.spec.key.addr));
        let dests = self
            .model
            .services
            .iter()
            .flat_map(|s| {
                s.dests
                    .iter()
                    .filter(|d| d.spec.method == Method::Nat)
                    .map(move |d| (s.spec.key.protocol, d.spec.addr))
            })
            .chain(
                self.lingering
                    .iter()
                    .filter(|l| l.method == Method::Nat)
                    .map(|l| (l.protocol, l.addr)),
            );
        let sets = FilterSets::new(services, dests, self.ifaces.load().local.iter().copied());
        if let Some(x) = self.xdp.as_mut() {
            if let Err(e) = x.sync(&sets) {
                tracing::error!("updating the XDP program's maps: {e}");
            }
        }
        if let Some(k) = self.kernel.as_mut() {
            if let Err(e) = k.sync(&sets) {
                tracing::error!("updating the kernel filter: {e}");
            }
        }
    }

    /// Applies a change: validated, built, swapped in, or refused whole.
    pub fn apply(&mut self, op: &Op) -> Result<(), RuleError> {
        let before = self.model.clone();
        self.model.apply(op)?;
        // Destinations that left the model but may still have connections.
        for s in &before.services {
            for d in &s.dests {
                let still = self.model.services.iter().any(|n| {
                    n.spec.key.protocol == s.spec.key.protocol
                        && n.dests.iter().any(|nd| Arc::ptr_eq(&nd.state, &d.state))
                });
                if !still {
                    self.lingering.push(Lingering {
                        protocol: s.spec.key.protocol,
                        addr: d.spec.addr,
                        method: d.spec.method,
                        state: d.state.clone(),
                    });
                }
            }
        }
        // -Z, alone or in a restore's batch, zeroes the rates too.
        let ops = match op {
            Op::Batch { ops } => ops.as_slice(),
            one => std::slice::from_ref(one),
        };
        for o in ops {
            if let Op::Zero { service } = o {
                self.rates.zero(&self.model, service.as_ref());
            }
        }
        if op.is_change() && !matches!(op, Op::Zero { .. }) {
            self.publish();
            self.sync_kernel();
        }
        Ok(())
    }

    /// Answers one request (the caller has checked permissions).
    pub fn handle(&mut self, op: &Op) -> Response {
        match op {
            Op::Version => Response::Version(VersionInfo {
                daemon: env!("CARGO_PKG_VERSION").to_string(),
                conn_table_size: self.conn_table_size,
            }),
            Op::List { service } => self.snapshot(service.as_ref()),
            Op::ListConns => self.list_conns(),
            Op::GetTimeouts => Response::Timeouts(self.model.timeouts),
            Op::DaemonStats => Response::DaemonStats(self.daemon_stats()),
            _ => match self.apply(op) {
                Ok(()) => Response::Ok,
                Err(e) => Response::Error {
                    kind: e.kind,
                    message: e.message,
                },
            },
        }
    }

    fn snapshot(&self, only: Option<&ServiceKey>) -> Response {
        if let Some(key) = only {
            if !self.model.services.iter().any(|s| s.spec.key == *key) {
                return Response::Error {
                    kind: ErrorKind::NoService,
                    message: format!("no such service: {key}"),
                };
            }
        }
        let local = self.ifaces.load().local.clone();
        let services = self
            .model
            .services
            .iter()
            .filter(|s| only.is_none_or(|k| *k == s.spec.key))
            .map(|s| ServiceInfo {
                spec: s.spec.clone(),
                stats: stats::sub(s.state.stats.sum(), base(&s.state.zero_base)),
                rates: self.rates.service(&s.spec.key),
                dests: s
                    .dests
                    .iter()
                    .map(|d| DestInfo {
                        spec: DestSpec {
                            method: if local.contains(&d.spec.addr.ip()) {
                                Method::Local
                            } else {
                                d.spec.method
                            },
                            ..d.spec.clone()
                        },
                        configured: local.contains(&d.spec.addr.ip()).then_some(d.spec.method),
                        active_conns: d.state.active.load(Relaxed),
                        inact_conns: d.state.inactive.load(Relaxed),
                        persist_conns: d.state.persist.load(Relaxed),
                        stats: stats::sub(d.state.stats.sum(), base(&d.state.zero_base)),
                        rates: self.rates.dest(&s.spec.key, &d.spec.addr),
                    })
                    .collect(),
            })
            .collect();
        Response::Services(Snapshot {
            conn_table_size: self.conn_table_size,
            services,
        })
    }

    fn list_conns(&self) -> Response {
        let mut conns = Vec::new();
        for (i, s) in self.shards.iter().enumerate() {
            let (tx, rx) = mpsc::channel();
            if s.requests.send(ShardRequest::ListConns(tx)).is_err() {
                continue;
            }
            match rx.recv_timeout(Duration::from_secs(2)) {
                Ok(mut c) => conns.append(&mut c),
                Err(_) => tracing::warn!("shard {i} did not list its connections in time"),
            }
        }
        Response::Conns { conns }
    }

    fn daemon_stats(&self) -> DaemonStats {
        DaemonStats {
            backend: self.backend.clone(),
            shards: self
                .shards
                .iter()
                .map(|s| {
                    let c = &s.counters;
                    ShardStats {
                        rx_frames: c.rx_frames.load(Relaxed),
                        rx_bytes: c.rx_bytes.load(Relaxed),
                        rx_xdp_frames: c.rx_xdp_frames.load(Relaxed),
                        tx_frames: c.tx_frames.load(Relaxed),
                        tx_bytes: c.tx_bytes.load(Relaxed),
                        passed: c.passed.load(Relaxed),
                        conns: c.conns.load(Relaxed),
                        drops: DropReason::ALL
                            .iter()
                            .map(|r| (r.name().to_string(), c.drops[*r as usize].load(Relaxed)))
                            .chain(std::iter::once((
                                "socket_full".to_string(),
                                c.socket_full.load(Relaxed),
                            )))
                            .chain(
                                self.xdp
                                    .is_some()
                                    .then(|| {
                                        [
                                            (
                                                "xdp_ring_full".to_string(),
                                                c.xdp_ring_full.load(Relaxed),
                                            ),
                                            (
                                                "xdp_fill_empty".to_string(),
                                                c.xdp_fill_empty.load(Relaxed),
                                            ),
                                        ]
                                    })
                                    .into_iter()
                                    .flatten(),
                            )
                            .collect(),
                    }
                })
                .collect(),
            neighbors: self
                .neighbors
                .as_ref()
                .map(|n| lvsd_proto::NeighborStats {
                    resolved: n.resolved.load(Relaxed),
                    requests: n.requests.load(Relaxed),
                    replies: n.replies.load(Relaxed),
                    failures: n.failures.load(Relaxed),
                })
                .unwrap_or_default(),
        }
    }

    /// Every two seconds: rate estimates, and forgetting removed
    /// destinations whose last connection has ended.
    pub fn tick(&mut self) {
        self.rates.sample(&self.model);
        let before = self.lingering.len();
        // Only this list holds the state once no connection does.
        self.lingering.retain(|l| Arc::strong_count(&l.state) > 1);
        if self.lingering.len() != before {
            self.sync_kernel();
            self.publish();
        }
    }

    /// The interfaces were re-read with new addresses, MTUs or MACs: the
    /// kernel filter and the rule table (which real servers are local)
    /// follow.
    pub fn interfaces_changed(&mut self) {
        self.sync_kernel();
        self.publish();
    }

    /// Builds a rule table from the model and swaps it in.
    fn publish(&mut self) {
        let previous = self.rules.load();
        let local = self.ifaces.load().local.clone();
        let mut t = self
            .model
            .build(previous.generation + 1, &local, Some(&previous));
        let mut lingering: Vec<std::net::IpAddr> = self
            .lingering
            .iter()
            .map(|l| l.addr.ip())
            .filter(|ip| !local.contains(ip))
            .collect();
        lingering.sort_unstable();
        lingering.dedup();
        t.lingering = lingering;
        self.rules.store(Arc::new(t));
    }

    pub fn model(&self) -> &Model {
        &self.model
    }
}

fn base(m: &std::sync::Mutex<lvsd_proto::Stats>) -> lvsd_proto::Stats {
    match m.lock() {
        Ok(b) => *b,
        Err(p) => *p.into_inner(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lvsd_proto::{DestSpec, ServiceKey, ServiceSpec};
    use std::net::IpAddr;

    pub(super) fn control() -> Control {
        let ifaces = Interfaces::int0_for_tests();
        Control::new(
            Model::new(1),
            Arc::new(ArcSwap::from_pointee(ifaces)),
            None,
            1024,
        )
    }

    /// A removed real server stays in the table's lingering list, whatever
    /// its method, as long as a connection holds its state, so the
    /// neighbour resolver keeps it resolved and its connections carry on;
    /// then it leaves the list.
    #[test]
    fn removed_servers_linger_while_connections_last() {
        let mut c = control();
        let key = ServiceKey {
            protocol: Protocol::Tcp,
            addr: "198.19.0.100:80".parse().unwrap(),
        };
        let dest = |ip: &str, method| DestSpec {
            addr: format!("{ip}:80").parse().unwrap(),
            weight: 1,
            method,
            u_threshold: 0,
            l_threshold: 0,
        };
        c.apply(&Op::AddService {
            service: ServiceSpec {
                key,
                scheduler: "rr".into(),
                persistent: None,
            },
        })
        .unwrap();
        for (ip, m) in [("198.18.1.11", Method::Dr), ("198.18.1.12", Method::Nat)] {
            c.apply(&Op::AddDest {
                service: key,
                dest: dest(ip, m),
            })
            .unwrap();
        }
        // Connections hold their destination's state.
        let held: Vec<Arc<DestState>> = c.rules.load().services[0]
            .dests
            .iter()
            .map(|d| d.state.clone())
            .collect();
        for ip in ["198.18.1.11", "198.18.1.12"] {
            c.apply(&Op::DeleteDest {
                service: key,
                dest: format!("{ip}:80").parse().unwrap(),
            })
            .unwrap();
        }
        let ips = |c: &Control| c.rules.load().lingering.clone();
        let both: Vec<IpAddr> = vec![
            "198.18.1.11".parse().unwrap(),
            "198.18.1.12".parse().unwrap(),
        ];
        assert_eq!(ips(&c), both);
        c.tick();
        assert_eq!(ips(&c), both, "connections still hold them");
        drop(held);
        c.tick();
        assert!(ips(&c).is_empty(), "{:?}", ips(&c));
    }
}
