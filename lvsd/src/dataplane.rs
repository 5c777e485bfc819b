//! One frame in, one verdict out.
//!
//! [`process`] takes a received frame (the virtio-net header the packet
//! socket prepends, then the Ethernet frame), the shard's connection table,
//! and a [`Ctx`] holding the rule table and neighbour table loaded once for
//! the batch and the batch's clock. It rewrites the frame in place and says
//! where it goes. It makes no system call and reads no clock, so every case
//! is testable with byte arrays.
//!
//! Invariants:
//! - A frame lvsd does not own (not for a VIP service, not a reply of one of
//!   its connections, not an ARP request for a VIP) is [`Verdict::Pass`]:
//!   left to the kernel, untouched.
//! - A frame lvsd owns but cannot forward is [`Verdict::Drop`] with a reason;
//!   the caller counts it. Nothing here panics on any input.
//! - A forwarded frame keeps its length: rewrites are in place.

use crate::conn::state::Dir;
use crate::conn::{ConnTable, Key, NewConn};
use crate::forward::nat::{rewrite_v4, Side};
use crate::rules::{FastMap, FastSet, RuleTable};
use crate::wire::arp::{ArpOperation, ArpPacket};
use crate::wire::ethernet::{EtherType, EthernetFrame, MacAddr};
use crate::wire::ipv4::{IpProtocol, Ipv4Packet};
use crate::wire::tcp::TcpPacket;
use crate::wire::udp::UdpPacket;
use crate::wire::vnet::{self, VnetHeader};
use lvsd_proto::Protocol;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::AtomicU64;

/// Why a frame was dropped. Every reason has a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum DropReason {
    /// Shorter than its headers claim, or cut by the receive buffer.
    Truncated,
    /// A header field no valid packet has.
    Malformed,
    /// The IPv4 header checksum is wrong.
    BadChecksum,
    /// An IP fragment for a service: lvsd does not reassemble.
    Fragment,
    /// TTL would reach zero.
    TtlExceeded,
    /// Not TCP or UDP, addressed to a VIP.
    UnsupportedProtocol,
    /// A non-SYN TCP segment for a VIP, or a real server's reply, with no
    /// connection.
    NoConn,
    /// The service has no available destination.
    NoDest,
    /// The connection table is full.
    ConnTableFull,
    /// The next hop's MAC address is not resolved yet.
    NoNeighbor,
    /// The kernel refused to send the frame.
    TxError,
}

impl DropReason {
    pub const ALL: [DropReason; 11] = [
        DropReason::Truncated,
        DropReason::Malformed,
        DropReason::BadChecksum,
        DropReason::Fragment,
        DropReason::TtlExceeded,
        DropReason::UnsupportedProtocol,
        DropReason::NoConn,
        DropReason::NoDest,
        DropReason::ConnTableFull,
        DropReason::NoNeighbor,
        DropReason::TxError,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::Malformed => "malformed",
            DropReason::BadChecksum => "bad_checksum",
            DropReason::Fragment => "fragment",
            DropReason::TtlExceeded => "ttl_exceeded",
            DropReason::UnsupportedProtocol => "unsupported_protocol",
            DropReason::NoConn => "no_conn",
            DropReason::NoDest => "no_dest",
            DropReason::ConnTableFull => "conn_table_full",
            DropReason::NoNeighbor => "no_neighbor",
            DropReason::TxError => "tx_error",
        }
    }
}

/// What to do with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send the rewritten frame out of interface slot `iface`.
    Forward {
        iface: u16,
    },
    /// Not lvsd's: leave it to the kernel.
    Pass,
    Drop(DropReason),
}

/// One shard's frame counters (single writer: see [`crate::stats`]).
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct ShardCounters {
    pub rx_frames: AtomicU64,
    pub rx_bytes: AtomicU64,
    pub tx_frames: AtomicU64,
    pub tx_bytes: AtomicU64,
    pub passed: AtomicU64,
    /// Connections in the shard's table (a gauge).
    pub conns: AtomicU64,
    pub drops: [AtomicU64; DropReason::ALL.len()],
}

/// An interface lvsd forwards on.
#[derive(Debug, Clone)]
pub struct Iface {
    pub name: String,
    pub ifindex: u32,
    pub mac: MacAddr,
    pub mtu: u32,
    /// IPv4 addresses with prefix lengths.
    pub addrs: Vec<(Ipv4Addr, u8)>,
}

impl Iface {
    /// This interface's address on the subnet of `ip`, if it has one.
    pub fn addr_on_link(&self, ip: Ipv4Addr) -> Option<Ipv4Addr> {
        self.addrs.iter().find_map(|&(a, len)| {
            let mask = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len.min(32)))
            };
            (u32::from(a) & mask == u32::from(ip) & mask).then_some(a)
        })
    }
}

/// The interfaces lvsd forwards on, and every address the host owns.
#[derive(Debug, Clone, Default)]
pub struct Interfaces {
    pub list: Vec<Iface>,
    /// Every address of the host (any interface): traffic to these is the
    /// kernel's own.
    pub local: FastSet<IpAddr>,
}

impl Interfaces {
    /// The slot of the interface with `ifindex`.
    pub fn slot(&self, ifindex: u32) -> Option<u16> {
        self.list
            .iter()
            .position(|i| i.ifindex == ifindex)
            .and_then(|p| u16::try_from(p).ok())
    }

    /// The slot of the interface whose subnet holds `ip`.
    pub fn on_link(&self, ip: Ipv4Addr) -> Option<u16> {
        self.list
            .iter()
            .position(|i| i.addr_on_link(ip).is_some())
            .and_then(|p| u16::try_from(p).ok())
    }
}

/// A resolved neighbour: where it is and its MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neighbor {
    pub iface: u16,
    pub mac: MacAddr,
}

/// Neighbours the resolver has found, published whole on every change.
#[derive(Debug, Clone, Default)]
pub struct NeighTable {
    pub map: FastMap<IpAddr, Neighbor>,
}

/// What one batch shares.
pub struct Ctx<'a> {
    pub shard: usize,
    /// Milliseconds on the shard's monotonic clock, read once per batch.
    pub now: u64,
    pub rules: &'a RuleTable,
    pub neigh: &'a NeighTable,
    pub ifaces: &'a Interfaces,
}

/// Processes one frame received on interface slot `iface`. `frame` starts
/// with the 10-byte virtio-net header.
pub fn process(ctx: &Ctx, conns: &mut ConnTable, iface: u16, frame: &mut [u8]) -> Verdict {
    let Some(me) = ctx.ifaces.list.get(usize::from(iface)) else {
        return Verdict::Pass;
    };
    if frame.len() < vnet::HEADER_LEN {
        return Verdict::Drop(DropReason::Truncated);
    }
    let (vh, eth_bytes) = frame.split_at_mut(vnet::HEADER_LEN);
    let partial = VnetHeader::new_unchecked(&*vh).needs_csum();
    let Ok(mut eth) = EthernetFrame::new_checked(&mut *eth_bytes) else {
        return Verdict::Drop(DropReason::Truncated);
    };
    let dst_mac = eth.dst_addr();
    if dst_mac != me.mac && !dst_mac.is_broadcast() {
        return Verdict::Pass;
    }
    let src_mac = eth.src_addr();
    match eth.ethertype() {
        EtherType::Arp => arp(ctx, me, eth.payload_mut()).map_or(Verdict::Pass, |reply_to| {
            eth.set_dst_addr(reply_to);
            eth.set_src_addr(me.mac);
            VnetHeader::new_unchecked(&mut *vh).clear();
            Verdict::Forward { iface }
        }),
        EtherType::Ipv4 => {
            let v = ipv4(ctx, conns, iface, src_mac, partial, eth.payload_mut());
            if let Hop::To(out, next_mac) = v.1 {
                let Some(out_if) = ctx.ifaces.list.get(usize::from(out)) else {
                    return Verdict::Drop(DropReason::NoNeighbor);
                };
                eth.set_src_addr(out_if.mac);
                eth.set_dst_addr(next_mac);
            }
            v.0
        }
        _ => Verdict::Pass,
    }
}

/// Where a forwarded packet goes at layer 2.
enum Hop {
    None,
    To(u16, MacAddr),
}

/// Turns an ARP request for a VIP that the kernel does not own into the reply,
/// in place. Returns the MAC to send the reply to.
fn arp(ctx: &Ctx, me: &crate::dataplane::Iface, payload: &mut [u8]) -> Option<MacAddr> {
    let mut a = ArpPacket::new_checked(payload).ok()?;
    if a.operation() != ArpOperation::Request {
        return None;
    }
    let target = a.target_protocol_addr();
    let ip = IpAddr::V4(target);
    if !ctx.rules.vips.contains(&ip) || ctx.ifaces.local.contains(&ip) {
        return None;
    }
    let asker_mac = a.sender_hardware_addr();
    let asker_ip = a.sender_protocol_addr();
    a.set_operation(ArpOperation::Reply);
    a.set_sender_hardware_addr(me.mac);
    a.set_sender_protocol_addr(target);
    a.set_target_hardware_addr(asker_mac);
    a.set_target_protocol_addr(asker_ip);
    Some(asker_mac)
}

fn ipv4(
    ctx: &Ctx,
    conns: &mut ConnTable,
    iface: u16,
    src_mac: MacAddr,
    partial: bool,
    bytes: &mut [u8],
) -> (Verdict, Hop) {
    let drop = |r| (Verdict::Drop(r), Hop::None);
    let pass = (Verdict::Pass, Hop::None);
    let ip = match Ipv4Packet::new_checked(&*bytes) {
        Ok(ip) => ip,
        Err(crate::wire::Error::Truncated) => return drop(DropReason::Truncated),
        Err(_) => return drop(DropReason::Malformed),
    };
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let to_vip = ctx.rules.vips.contains(&IpAddr::V4(dst));
    if !to_vip && ctx.ifaces.local.contains(&IpAddr::V4(dst)) {
        return pass;
    }
    let protocol = match ip.next_header() {
        IpProtocol::Tcp => Protocol::Tcp,
        IpProtocol::Udp => Protocol::Udp,
        _ if to_vip => return drop(DropReason::UnsupportedProtocol),
        _ => return pass,
    };
    if !ip.verify_checksum() {
        return if to_vip {
            drop(DropReason::BadChecksum)
        } else {
            pass
        };
    }
    if ip.is_fragment() {
        return if to_vip {
            drop(DropReason::Fragment)
        } else {
            pass
        };
    }
    let ttl = ip.ttl();
    let total = usize::from(ip.total_len());
    let hl = usize::from(ip.header_len());
    let l4 = ip.payload();
    let (sport, dport, flags) = match protocol {
        Protocol::Tcp => match TcpPacket::new_checked(l4) {
            Ok(t) => (
                t.src_port(),
                t.dst_port(),
                Some((t.syn(), t.fin(), t.ack(), t.rst())),
            ),
            Err(_) => {
                return if to_vip {
                    drop(DropReason::Malformed)
                } else {
                    pass
                }
            }
        },
        Protocol::Udp => match UdpPacket::new_checked(l4) {
            Ok(u) => (u.src_port(), u.dst_port(), None),
            Err(_) => {
                return if to_vip {
                    drop(DropReason::Malformed)
                } else {
                    pass
                }
            }
        },
    };
    let _ = hl;
    let packet = &mut bytes[..total];
    let t = &ctx.rules.timeouts;

    if to_vip {
        let vip = SocketAddr::new(IpAddr::V4(dst), dport);
        let client = SocketAddr::new(IpAddr::V4(src), sport);
        let key = Key {
            protocol,
            src: client,
            dst: vip,
        };
        let id = match conns.lookup_in(&key) {
            Some(id) => id,
            None => {
                let Some(svc) = ctx.rules.service(protocol, vip) else {
                    return pass;
                };
                // As IPVS: only a SYN starts a TCP connection.
                if let Some((syn, fin, ack, rst)) = flags {
                    if !syn || ack || fin || rst {
                        return drop(DropReason::NoConn);
                    }
                }
                if ttl <= 1 {
                    return drop(DropReason::TtlExceeded);
                }
                let Some(d) = svc.schedule() else {
                    return drop(DropReason::NoDest);
                };
                if !ctx.neigh.map.contains_key(&d.addr().ip()) {
                    return drop(DropReason::NoNeighbor);
                }
                let new = NewConn {
                    protocol,
                    client,
                    vip,
                    dest_addr: d.addr(),
                    client_iface: iface,
                    client_mac: src_mac.0,
                    dest: d.state.clone(),
                    service: svc.state.clone(),
                };
                match conns.insert(new, ctx.now, t) {
                    Ok(id) => {
                        svc.state.stats.shard(ctx.shard).count_conn();
                        d.state.stats.shard(ctx.shard).count_conn();
                        id
                    }
                    Err(_) => return drop(DropReason::ConnTableFull),
                }
            }
        };
        if ttl <= 1 {
            return drop(DropReason::TtlExceeded);
        }
        conns.touch(id, Dir::Input, flags, ctx.now, t);
        let Some(c) = conns.get(id) else {
            return drop(DropReason::NoConn);
        };
        let IpAddr::V4(rip) = c.dest_addr.ip() else {
            return drop(DropReason::Malformed);
        };
        let Some(n) = ctx.neigh.map.get(&c.dest_addr.ip()) else {
            return drop(DropReason::NoNeighbor);
        };
        c.service.stats.shard(ctx.shard).count_in(total);
        c.dest.stats.shard(ctx.shard).count_in(total);
        if !rewrite_v4(packet, Side::Dst, rip, c.dest_addr.port(), partial) {
            return drop(DropReason::Malformed);
        }
        return (Verdict::Forward { iface: n.iface }, Hop::To(n.iface, n.mac));
    }

    // A reply from a real server?
    let key = Key {
        protocol,
        src: SocketAddr::new(IpAddr::V4(src), sport),
        dst: SocketAddr::new(IpAddr::V4(dst), dport),
    };
    let Some(id) = conns.lookup_out(&key) else {
        return if ctx.rules.nat_dests.contains(&(protocol, key.src)) {
            drop(DropReason::NoConn)
        } else {
            pass
        };
    };
    if ttl <= 1 {
        return drop(DropReason::TtlExceeded);
    }
    conns.touch(id, Dir::Output, flags, ctx.now, t);
    let Some(c) = conns.get(id) else {
        return drop(DropReason::NoConn);
    };
    let IpAddr::V4(vip) = c.vip.ip() else {
        return drop(DropReason::Malformed);
    };
    c.service.stats.shard(ctx.shard).count_out(total);
    c.dest.stats.shard(ctx.shard).count_out(total);
    if !rewrite_v4(packet, Side::Src, vip, c.vip.port(), partial) {
        return drop(DropReason::Malformed);
    }
    (
        Verdict::Forward {
            iface: c.client_iface,
        },
        Hop::To(c.client_iface, MacAddr(c.client_mac)),
    )
}
