//! Micro-benchmarks of the data path's parts (criterion):
//!
//! - `parse`: Ethernet + IPv4 + TCP views over a SYN frame (`new_checked`)
//! - `checksum`: RFC 1624 incremental updates against a full recompute
//! - `sched`: one pick of rr, wrr and wlc over 10 destinations
//! - `conn`: connection-table lookups (hit, miss) and inserts
//! - `dataplane`: one batch of 64 frames through `dataplane::process`
//!   (established UDP flows, established TCP segments, replies, new TCP
//!   connections)
//!
//! `cargo bench -p lvsd --bench micro` runs them; docs/benchmarks.md has
//! the figures.

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use lvsd::conn::{ConnTable, Key, NewConn};
use lvsd::dataplane::{
    self, Ctx, Frame, IcmpBudget, Iface, Interfaces, NeighTable, Neighbor, Verdict,
};
use lvsd::rules::{Dest, DestState, Model, RuleTable, ServiceState, DEFAULT_TIMEOUTS};
use lvsd::sched::new_scheduler;
use lvsd::wire::checksum::{checksum, update16, update32};
use lvsd::wire::ethernet::{EthernetFrame, MacAddr};
use lvsd::wire::ipv4::Ipv4Packet;
use lvsd::wire::tcp::TcpPacket;
use lvsd_proto::{DestSpec, Method, Op, Protocol, ServiceKey, ServiceSpec};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

const BATCH: usize = 64;
const BATCH_U16: u16 = 64;
const VNET_LEN: usize = 10;
const EXT_MAC: [u8; 6] = [2, 0, 198, 18, 0, 1];
const INT_MAC: [u8; 6] = [2, 0, 198, 18, 1, 1];
const CLIENT_MAC: [u8; 6] = [2, 0, 198, 18, 0, 2];
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const VIP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 100);

fn rs(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 1, 11 + u8::try_from(i).expect("few servers"))
}

/// The ones'-complement checksum folded and complemented, as the wire has it.
fn fill_checksums(frame: &mut [u8]) {
    let ip_start = VNET_LEN + 14;
    let ihl = usize::from(frame[ip_start] & 0x0f) * 4;
    frame[ip_start + 10..ip_start + 12].fill(0);
    let c = checksum(&frame[ip_start..ip_start + ihl]);
    frame[ip_start + 10..ip_start + 12].copy_from_slice(&c.to_be_bytes());
    let proto = frame[ip_start + 9];
    let total = usize::from(u16::from_be_bytes([
        frame[ip_start + 2],
        frame[ip_start + 3],
    ]));
    let l4 = ip_start + ihl;
    let at = if proto == 6 { 16 } else { 6 };
    frame[l4 + at..l4 + at + 2].fill(0);
    let mut pseudo = Vec::with_capacity(12 + total);
    pseudo.extend_from_slice(&frame[ip_start + 12..ip_start + 20]);
    pseudo.extend_from_slice(&[0, proto]);
    let l4_len = u16::try_from(total - ihl).expect("small packet");
    pseudo.extend_from_slice(&l4_len.to_be_bytes());
    pseudo.extend_from_slice(&frame[l4..ip_start + total]);
    let mut c = checksum(&pseudo);
    if proto == 17 && c == 0 {
        c = 0xffff;
    }
    frame[l4 + at..l4 + at + 2].copy_from_slice(&c.to_be_bytes());
}

/// A frame as lvsd receives it: a zero virtio-net header, Ethernet, IPv4,
/// then TCP (flags) or UDP with `payload` bytes.
#[allow(clippy::too_many_arguments)]
fn frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: SocketAddr,
    dst: SocketAddr,
    tcp_flags: Option<u8>,
    payload: usize,
) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src.ip(), dst.ip()) else {
        unreachable!("IPv4 only")
    };
    let l4_len = if tcp_flags.is_some() { 20 } else { 8 } + payload;
    let total = 20 + l4_len;
    let mut f = vec![0u8; VNET_LEN];
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x00]);
    let total16 = u16::try_from(total).expect("small packet");
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&total16.to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x40, 0, 64]);
    f.push(if tcp_flags.is_some() { 6 } else { 17 });
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&s.octets());
    f.extend_from_slice(&d.octets());
    f.extend_from_slice(&src.port().to_be_bytes());
    f.extend_from_slice(&dst.port().to_be_bytes());
    match tcp_flags {
        Some(flags) => {
            f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        }
        None => {
            let len = u16::try_from(l4_len).expect("small packet");
            f.extend_from_slice(&len.to_be_bytes());
            f.extend_from_slice(&[0, 0]);
        }
    }
    f.resize(f.len() + payload, 0xab);
    fill_checksums(&mut f);
    f
}

fn dest_spec(addr: SocketAddr, weight: u32) -> DestSpec {
    DestSpec {
        addr,
        weight,
        method: Method::Nat,
        u_threshold: 0,
        l_threshold: 0,
    }
}

/// Rules, interfaces and neighbours of the bench lab (tests/bench.sh): a TCP
/// service VIP:80 and a UDP service VIP:53 over three real servers.
struct World {
    rules: RuleTable,
    neigh: NeighTable,
    icmp: IcmpBudget,
    ifaces: Interfaces,
}

impl World {
    fn new() -> World {
        let mut m = Model::new(1);
        for (protocol, port, rport) in [(Protocol::Tcp, 80, 8080), (Protocol::Udp, 53, 5353)] {
            let key = ServiceKey {
                protocol,
                addr: SocketAddr::from((VIP, port)),
            };
            m.apply(&Op::AddService {
                service: ServiceSpec {
                    key,
                    scheduler: "rr".into(),
                    persistent: None,
                },
            })
            .expect("valid service");
            for i in 0..3 {
                m.apply(&Op::AddDest {
                    service: key,
                    dest: dest_spec(SocketAddr::from((rs(i), rport)), 1),
                })
                .expect("valid destination");
            }
        }
        let mut neigh = NeighTable::default();
        for i in 0..3 {
            let [_, _, c, d] = rs(i).octets();
            neigh.map.insert(
                IpAddr::V4(rs(i)),
                Neighbor {
                    iface: 1,
                    mac: MacAddr([2, 0, 198, 18, c, d]),
                },
            );
        }
        let mut ifaces = Interfaces::default();
        for (name, ifindex, mac, addr) in [
            ("ext0", 2, EXT_MAC, Ipv4Addr::new(198, 18, 0, 1)),
            ("int0", 3, INT_MAC, Ipv4Addr::new(198, 18, 1, 1)),
        ] {
            ifaces.list.push(Iface {
                name: name.into(),
                ifindex,
                mac: MacAddr(mac),
                mtu: 1500,
                addrs: vec![(addr, 24)],
                addrs6: Vec::new(),
            });
            ifaces.local.insert(IpAddr::V4(addr));
        }
        World {
            rules: m.build(1, &ifaces.local, None),
            neigh,
            ifaces,
            icmp: IcmpBudget::new(),
        }
    }

    fn ctx(&self, now: u64) -> Ctx<'_> {
        Ctx {
            shard: 0,
            now,
            rules: &self.rules,
            neigh: &self.neigh,
            ifaces: &self.ifaces,
            icmp: &self.icmp,
        }
    }
}

fn client(port: u16) -> SocketAddr {
    SocketAddr::from((CLIENT, port))
}

fn bench_parse(c: &mut Criterion) {
    let f = frame(
        EXT_MAC,
        CLIENT_MAC,
        client(40000),
        SocketAddr::from((VIP, 80)),
        Some(0x02),
        0,
    );
    let eth_bytes = &f[VNET_LEN..];
    c.bench_function("parse/eth_ipv4_tcp_new_checked", |b| {
        b.iter(|| {
            let eth = EthernetFrame::new_checked(black_box(eth_bytes)).expect("ethernet");
            let ip = Ipv4Packet::new_checked(eth.payload()).expect("ipv4");
            let tcp = TcpPacket::new_checked(ip.payload()).expect("tcp");
            black_box((
                eth.dst_addr(),
                ip.src_addr(),
                ip.dst_addr(),
                tcp.src_port(),
                tcp.dst_port(),
                tcp.syn(),
            ))
        })
    });
    c.bench_function("parse/eth_ipv4_tcp_with_header_checksum", |b| {
        b.iter(|| {
            let eth = EthernetFrame::new_checked(black_box(eth_bytes)).expect("ethernet");
            let ip = Ipv4Packet::new_checked(eth.payload()).expect("ipv4");
            let ok = ip.verify_checksum();
            let tcp = TcpPacket::new_checked(ip.payload()).expect("tcp");
            black_box((ok, tcp.src_port(), tcp.dst_port()))
        })
    });
}

fn bench_checksum(c: &mut Criterion) {
    let mut g = c.benchmark_group("checksum");
    let old = [198u8, 19, 0, 100];
    let new = [198u8, 18, 1, 11];
    g.bench_function("update32+update16 (address and port)", |b| {
        b.iter(|| {
            let x = update32(black_box(0x1c46), black_box(old), black_box(new));
            black_box(update16(x, black_box(80), black_box(8080)))
        })
    });
    for len in [20usize, 60, 1480] {
        let data: Vec<u8> = (0..len)
            .map(|i| u8::try_from(i * 7 % 251).unwrap_or(0))
            .collect();
        g.bench_function(format!("full recompute, {len} bytes"), |b| {
            b.iter(|| black_box(checksum(black_box(&data))))
        });
    }
    g.finish();
}

fn bench_sched(c: &mut Criterion) {
    let mut g = c.benchmark_group("sched/pick_of_10");
    let dests: Vec<Dest> = (0..10u8)
        .map(|i| Dest {
            spec: dest_spec(
                SocketAddr::from((Ipv4Addr::new(198, 18, 1, 11 + i), 8080)),
                u32::from(i) + 1,
            ),
            state: Arc::new(DestState::new(1)),
            local: false,
        })
        .collect();
    for (i, d) in dests.iter().enumerate() {
        let n = u32::try_from(i).expect("ten");
        d.state
            .active
            .store(100 + n * 13 % 7, std::sync::atomic::Ordering::Relaxed);
        d.state
            .inactive
            .store(n * 5, std::sync::atomic::Ordering::Relaxed);
    }
    for name in ["rr", "wrr", "wlc"] {
        let s = new_scheduler(name, &dests).expect("known scheduler");
        g.bench_function(name, |b| b.iter(|| black_box(s.pick(black_box(&dests)))));
    }
    g.finish();
}

fn new_conn(i: u32, dest: &Arc<DestState>, svc: &Arc<ServiceState>) -> NewConn {
    let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 64, 0)) + (i >> 16));
    let port = u16::try_from(i & 0xffff).expect("masked");
    NewConn {
        protocol: Protocol::Tcp,
        method: Method::Nat,
        client: SocketAddr::from((ip, port)),
        vip: SocketAddr::from((VIP, 80)),
        dest_addr: SocketAddr::from((rs(usize::try_from(i % 3).expect("small")), 8080)),
        client_iface: 0,
        client_mac: CLIENT_MAC,
        dest: dest.clone(),
        service: svc.clone(),
    }
}

fn in_key(i: u32) -> Key {
    let c = new_conn(
        i,
        &Arc::new(DestState::new(1)),
        &Arc::new(ServiceState::new(1)),
    );
    Key {
        protocol: c.protocol,
        src: c.client,
        dst: c.vip,
    }
}

fn bench_conn(c: &mut Criterion) {
    let mut g = c.benchmark_group("conn");
    let dest = Arc::new(DestState::new(1));
    let svc = Arc::new(ServiceState::new(1));
    for n in [1_000u32, 100_000] {
        let mut t = ConnTable::new(n as usize, 0);
        for i in 0..n {
            t.insert(new_conn(i, &dest, &svc), 0, &DEFAULT_TIMEOUTS)
                .expect("room");
        }
        // Keys in a scattered order (a stride coprime with n).
        let keys: Vec<Key> = (0..4096u32)
            .map(|k| in_key(k.wrapping_mul(7919) % n))
            .collect();
        let mut k = 0usize;
        g.bench_function(format!("lookup_in hit, {n} entries"), |b| {
            b.iter(|| {
                k = (k + 1) & 4095;
                black_box(t.lookup_in(black_box(&keys[k])))
            })
        });
        let miss = in_key(n + 12345);
        g.bench_function(format!("lookup_in miss, {n} entries"), |b| {
            b.iter(|| black_box(t.lookup_in(black_box(&miss))))
        });
    }
    g.throughput(Throughput::Elements(1024));
    g.bench_function("insert 1024 into an empty table", |b| {
        b.iter_batched(
            || ConnTable::new(1 << 20, 0),
            |mut t| {
                for i in 0..1024 {
                    black_box(t.insert(new_conn(i, &dest, &svc), 0, &DEFAULT_TIMEOUTS))
                        .expect("room");
                }
                t
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// One frame through the data path; the frame fills its buffer (NAT needs
/// no headroom).
fn process(ctx: &Ctx, conns: &mut ConnTable, iface: u16, buf: &mut [u8]) -> Verdict {
    let len = buf.len();
    let mut f = Frame { buf, start: 0, len };
    dataplane::process(ctx, conns, iface, &mut f)
}

fn bench_dataplane(c: &mut Criterion) {
    let w = World::new();
    let mut g = c.benchmark_group("dataplane/batch_of_64");
    g.throughput(Throughput::Elements(BATCH as u64));
    let vip53 = SocketAddr::from((VIP, 53));
    let vip80 = SocketAddr::from((VIP, 80));

    // Established flows: the connections exist (a first pass made them).
    let udp: Vec<Vec<u8>> = (0..BATCH_U16)
        .map(|i| frame(EXT_MAC, CLIENT_MAC, client(10000 + i), vip53, None, 18))
        .collect();
    let syn: Vec<Vec<u8>> = (0..BATCH_U16)
        .map(|i| frame(EXT_MAC, CLIENT_MAC, client(20000 + i), vip80, Some(0x02), 0))
        .collect();
    let ack: Vec<Vec<u8>> = (0..BATCH_U16)
        .map(|i| frame(EXT_MAC, CLIENT_MAC, client(20000 + i), vip80, Some(0x10), 0))
        .collect();
    let mut conns = ConnTable::new(1 << 20, 0);
    let ctx = w.ctx(1);
    let mut replies = Vec::new();
    for f in udp.iter().chain(&syn) {
        let mut f = f.clone();
        let v = process(&ctx, &mut conns, 0, &mut f);
        assert!(matches!(v, Verdict::Forward { iface: 1 }), "{v:?}");
    }
    // The real servers' replies to the TCP connections (SYN-ACK shaped as ACK).
    for i in 0..BATCH_U16 {
        let key = Key {
            protocol: Protocol::Tcp,
            src: client(20000 + i),
            dst: vip80,
        };
        let id = conns.lookup_in(&key).expect("made above");
        let dest = conns.get(id).expect("live").dest_addr;
        replies.push(frame(
            INT_MAC,
            [2, 0, 198, 18, 1, 11],
            dest,
            client(20000 + i),
            Some(0x10),
            0,
        ));
    }

    for (name, frames) in [
        ("udp established", &udp),
        ("tcp ack established", &ack),
        ("tcp replies", &replies),
    ] {
        let iface = if name == "tcp replies" { 1 } else { 0 };
        g.bench_function(name, |b| {
            b.iter_batched_ref(
                || frames.clone(),
                |batch| {
                    for f in batch.iter_mut() {
                        black_box(process(&ctx, &mut conns, iface, f));
                    }
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.bench_function("tcp syn, new connections", |b| {
        b.iter_batched_ref(
            || (syn.clone(), ConnTable::new(1 << 16, 0)),
            |(batch, table)| {
                for f in batch.iter_mut() {
                    black_box(process(&ctx, table, 0, f));
                }
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(
    benches,
    bench_parse,
    bench_checksum,
    bench_sched,
    bench_conn,
    bench_dataplane
);
criterion_main!(benches);
