//! One frame in, one verdict out.
//!
//! [`process`] takes a received [`Frame`] (the virtio-net header the packet
//! socket prepends, the Ethernet frame, room before and after it in its
//! buffer), the shard's connection table, and a [`Ctx`] holding the rule
//! table and neighbour table loaded once for the batch and the batch's
//! clock. It rewrites the frame in place and says where it goes. It makes no
//! system call and reads no clock, so every case is testable with byte
//! arrays (`lvsd/tests/dataplane.rs`).
//!
//! Invariants:
//! - A frame lvsd does not own (not for a VIP service, not a reply or an
//!   ICMP error of one of its connections, not an ARP or neighbour
//!   solicitation for a VIP, not an echo request to a VIP) is
//!   [`Verdict::Pass`]: left to the kernel, untouched.
//! - A frame lvsd owns but cannot forward is [`Verdict::Drop`] with a
//!   reason; the caller counts it. Nothing here panics on any input.
//! - Forwarded frames stay inside their buffer: a tunnel's outer header uses
//!   the room before the frame, a reply that grows uses the room after it.

use crate::conn::state::{Dir, State};
use crate::conn::{ConnTable, Key, NewConn};
use crate::forward::icmp::{self as icmpx, Embedded};
use crate::forward::nat::rewrite;
use crate::forward::tun::{encap_v4, encap_v6, Encap};
use crate::forward::{dr, Side, L2_LEN};
use crate::rules::{FastMap, FastSet, RuleTable};
use crate::wire::arp::{ArpOperation, ArpPacket};
use crate::wire::ethernet::{EtherType, EthernetFrame, MacAddr};
use crate::wire::icmp::{v4, v6, IcmpPacket, HEADER_LEN as ICMP_LEN};
use crate::wire::ipv4::{IpProtocol, Ipv4Packet};
use crate::wire::ipv6::{Ipv6Packet, HEADER_LEN as V6_LEN};
use crate::wire::tcp::TcpPacket;
use crate::wire::udp::UdpPacket;
use crate::wire::vnet::{self, VnetHeader};
use lvsd_proto::{Method, Protocol};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::AtomicU64;

pub use crate::forward::Frame;

/// Room a receive buffer keeps before the frame: the largest outer header
/// a tunnel adds (IPv6, 40 bytes) and then some.
pub const HEADROOM: usize = 64;

/// Why a frame was dropped. Every reason has a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum DropReason {
    /// Shorter than its headers claim, or cut by the receive buffer.
    Truncated,
    /// A header field no valid packet has.
    Malformed,
    /// The IPv4 header checksum (or an ICMP checksum) is wrong.
    BadChecksum,
    /// An IP fragment for a service: lvsd does not reassemble.
    Fragment,
    /// TTL or hop limit would reach zero.
    TtlExceeded,
    /// Not TCP, UDP or ICMP, addressed to a VIP.
    UnsupportedProtocol,
    /// A non-SYN TCP segment for a VIP, a real server's reply or an ICMP
    /// error, with no connection.
    NoConn,
    /// The service has no available destination.
    NoDest,
    /// The connection table is full.
    ConnTableFull,
    /// The next hop's MAC address is not resolved yet.
    NoNeighbor,
    /// Too big for the next link (or to tunnel) and not allowed to say so:
    /// no DF, or a GSO super-frame to tunnel.
    TooBig,
    /// The kernel refused to send the frame.
    TxError,
}

impl DropReason {
    pub const ALL: [DropReason; 12] = [
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
        DropReason::TooBig,
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
            DropReason::TooBig => "too_big",
            DropReason::TxError => "tx_error",
        }
    }
}

/// What to do with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send the (rewritten) frame out of interface slot `iface`.
    Forward {
        iface: u16,
    },
    /// Hand the IP packet, now alone in the frame, to the director's own
    /// stack (a local-node connection).
    Local,
    /// Not lvsd's: leave it to the kernel.
    Pass,
    Drop(DropReason),
    /// The packet is dropped (counted under the reason) and the frame now
    /// holds an ICMP error about it for its sender: send it out of
    /// interface slot `iface`.
    Refuse {
        iface: u16,
        why: DropReason,
    },
}

/// One shard's frame counters (single writer: see [`crate::stats`]).
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct ShardCounters {
    pub rx_frames: AtomicU64,
    pub rx_bytes: AtomicU64,
    /// Of `rx_frames`, those from AF_XDP sockets.
    pub rx_xdp_frames: AtomicU64,
    /// Frames the kernel dropped before lvsd saw them (XDP backend): an
    /// AF_XDP receive ring was full, or a fill ring was empty. Gauges read
    /// from the kernel.
    pub xdp_ring_full: AtomicU64,
    pub xdp_fill_empty: AtomicU64,
    /// Frames the kernel dropped at the shard's packet socket (its receive
    /// queue was full: the shard fell behind, or every buffer was in
    /// use), summed from PACKET_STATISTICS.
    pub socket_full: AtomicU64,
    pub tx_frames: AtomicU64,
    pub tx_bytes: AtomicU64,
    pub passed: AtomicU64,
    /// Connections in the shard's table (a gauge).
    pub conns: AtomicU64,
    pub drops: [AtomicU64; DropReason::ALL.len()],
}

/// An interface lvsd forwards on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    pub name: String,
    pub ifindex: u32,
    pub mac: MacAddr,
    pub mtu: u32,
    /// IPv4 addresses with prefix lengths.
    pub addrs: Vec<(Ipv4Addr, u8)>,
    /// IPv6 addresses with prefix lengths.
    pub addrs6: Vec<(Ipv6Addr, u8)>,
}

fn same_prefix(a: &[u8], b: &[u8], len: u8) -> bool {
    let bits = usize::from(len).min(a.len() * 8);
    let (whole, rest) = (bits / 8, bits % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        a[whole] & mask == b[whole] & mask
    }
}

impl Iface {
    /// This interface's IPv4 address on the subnet of `ip`, if it has one.
    pub fn addr_on_link(&self, ip: Ipv4Addr) -> Option<Ipv4Addr> {
        self.addrs
            .iter()
            .find(|(a, len)| same_prefix(&a.octets(), &ip.octets(), *len))
            .map(|(a, _)| *a)
    }

    /// This interface's IPv6 address on the subnet of `ip`, if it has one.
    pub fn addr6_on_link(&self, ip: Ipv6Addr) -> Option<Ipv6Addr> {
        self.addrs6
            .iter()
            .find(|(a, len)| same_prefix(&a.octets(), &ip.octets(), *len))
            .map(|(a, _)| *a)
    }

    /// Whether `ip` is on one of this interface's subnets.
    pub fn on_link(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => self.addr_on_link(v4).is_some(),
            IpAddr::V6(v6) => self.addr6_on_link(v6).is_some(),
        }
    }

    /// The address to send from to `ip`: one on its subnet, else the first
    /// of its family.
    pub fn source_for(&self, ip: IpAddr) -> Option<IpAddr> {
        match ip {
            IpAddr::V4(v4) => self
                .addr_on_link(v4)
                .or_else(|| self.addrs.first().map(|a| a.0))
                .map(IpAddr::V4),
            IpAddr::V6(v6) => self
                .addr6_on_link(v6)
                .or_else(|| self.addrs6.first().map(|a| a.0))
                .map(IpAddr::V6),
        }
    }
}

/// The interfaces lvsd forwards on, and every address the host owns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interfaces {
    pub list: Vec<Iface>,
    /// Every address of the host (any interface): traffic to these is the
    /// kernel's own.
    pub local: FastSet<IpAddr>,
}

impl Interfaces {
    /// One interface, int0 at 198.18.1.1/24, for the crate's unit tests.
    #[cfg(test)]
    pub(crate) fn int0_for_tests() -> Self {
        Interfaces {
            list: vec![Iface {
                name: "int0".into(),
                ifindex: 2,
                mac: MacAddr([2, 0, 0, 0, 0, 2]),
                mtu: 1500,
                addrs: vec![(Ipv4Addr::new(198, 18, 1, 1), 24)],
                addrs6: Vec::new(),
            }],
            local: FastSet::default(),
        }
    }

    /// The slot of the interface with `ifindex`.
    pub fn slot(&self, ifindex: u32) -> Option<u16> {
        self.list
            .iter()
            .position(|i| i.ifindex == ifindex)
            .and_then(|p| u16::try_from(p).ok())
    }

    /// The slot of the interface whose subnet holds `ip`.
    pub fn on_link(&self, ip: IpAddr) -> Option<u16> {
        self.list
            .iter()
            .position(|i| i.on_link(ip))
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
    /// The shard's allowance of ICMP errors.
    pub icmp: &'a IcmpBudget,
}

/// The ICMP errors one shard may send (port unreachable, time exceeded),
/// limited as the kernel limits its own: a bucket for all of them
/// (`icmp_msgs_per_sec`, `icmp_msgs_burst`) and one per destination
/// address (`icmp_ratelimit`: one a second, bursts of six). A flood of
/// packets lvsd refuses gets few answers, and a spoofed source few more.
/// Single-threaded (the shard's).
#[derive(Debug)]
pub struct IcmpBudget {
    tokens: std::cell::Cell<u32>,
    at_ms: std::cell::Cell<u64>,
    /// Per destination: (tokens, when last refilled, ms).
    peers: std::cell::RefCell<std::collections::HashMap<IpAddr, (u32, u64)>>,
}

impl IcmpBudget {
    /// Errors per second, per shard (the kernel's default, per host).
    pub const PER_SEC: u32 = 1000;
    /// Errors that may go out at once.
    pub const BURST: u32 = 50;
    /// Errors one destination may get at once, then one a second.
    pub const PEER_BURST: u32 = 6;
    pub const PEER_INTERVAL_MS: u64 = 1000;
    /// Destinations remembered at most (then forgotten all at once: the
    /// map stays small under a spoofed flood).
    const PEERS: usize = 4096;

    pub fn new() -> Self {
        IcmpBudget {
            tokens: std::cell::Cell::new(Self::BURST),
            at_ms: std::cell::Cell::new(0),
            peers: std::cell::RefCell::new(std::collections::HashMap::new()),
        }
    }

    /// Takes one error's token for `peer` at `now_ms`, if both the
    /// destination's bucket and the shard's have one.
    pub fn take(&self, now_ms: u64, peer: IpAddr) -> bool {
        let earned = now_ms.saturating_sub(self.at_ms.get()) * u64::from(Self::PER_SEC) / 1000;
        if earned > 0 {
            let t = u64::from(self.tokens.get()) + earned;
            self.tokens
                .set(u32::try_from(t.min(u64::from(Self::BURST))).unwrap_or(Self::BURST));
            self.at_ms.set(now_ms);
        }
        if self.tokens.get() == 0 {
            return false;
        }
        let mut peers = self.peers.borrow_mut();
        if peers.len() >= Self::PEERS && !peers.contains_key(&peer) {
            peers.clear();
        }
        let (tokens, at) = peers.entry(peer).or_insert((Self::PEER_BURST, now_ms));
        let earned = now_ms.saturating_sub(*at) / Self::PEER_INTERVAL_MS;
        if earned > 0 {
            let t = u64::from(*tokens) + earned;
            *tokens = u32::try_from(t.min(u64::from(Self::PEER_BURST))).unwrap_or(0);
            *at += earned * Self::PEER_INTERVAL_MS;
        }
        if *tokens == 0 {
            return false;
        }
        *tokens -= 1;
        self.tokens.set(self.tokens.get() - 1);
        true
    }
}

impl Default for IcmpBudget {
    fn default() -> Self {
        Self::new()
    }
}

/// What the receiving interface and frame tell every handler.
struct Rx<'a, 'b> {
    ctx: &'b Ctx<'a>,
    iface: u16,
    me: &'b Iface,
    src_mac: MacAddr,
    /// The transport checksum is partial (virtio NEEDS_CSUM).
    partial: bool,
    /// The frame is a GSO super-frame.
    gso: bool,
    /// The frame came without a virtio-net header (see [`process_bare`]).
    bare: bool,
}

/// Where a handled frame goes at layer 2.
enum Out {
    /// No layer-2 work: pass, drop, or hand to the local stack.
    Done(Verdict),
    /// To the neighbour `ip` (a real server), via the neighbour table.
    Neighbor(IpAddr),
    /// To `mac` out of interface slot `iface`.
    Mac(u16, MacAddr),
    /// Back to the sender, out of the interface it came in on.
    Back,
    /// An ICMP error back to the sender (as `Back`); the packet it answers
    /// is counted as dropped for the reason.
    Refuse(DropReason),
}

fn drop(r: DropReason) -> Out {
    Out::Done(Verdict::Drop(r))
}

const PASS: Out = Out::Done(Verdict::Pass);

/// Processes one frame received on interface slot `iface`, with the
/// virtio-net header the kernel put before it.
pub fn process(ctx: &Ctx, conns: &mut ConnTable, iface: u16, f: &mut Frame) -> Verdict {
    process_frame(ctx, conns, iface, f, false)
}

/// Processes one frame received on interface slot `iface` that came
/// without a virtio-net header (AF_XDP: no offloads): the header's bytes
/// before the Ethernet header are headroom whose content is left as it is
/// (never read; written only where the frame then needs a header: replies
/// lvsd builds in place, and tunnels). Not writing it spares a store into
/// a cache line the packet does not share.
pub fn process_bare(ctx: &Ctx, conns: &mut ConnTable, iface: u16, f: &mut Frame) -> Verdict {
    process_frame(ctx, conns, iface, f, true)
}

fn process_frame(
    ctx: &Ctx,
    conns: &mut ConnTable,
    iface: u16,
    f: &mut Frame,
    bare: bool,
) -> Verdict {
    let Some(me) = ctx.ifaces.list.get(usize::from(iface)) else {
        return Verdict::Pass;
    };
    let bytes = f.bytes();
    if bytes.len() < L2_LEN {
        return Verdict::Drop(DropReason::Truncated);
    }
    let (partial, gso) = if bare {
        (false, false)
    } else {
        let vh = VnetHeader::new_unchecked(&bytes[..vnet::HEADER_LEN]);
        (vh.needs_csum(), vh.is_gso())
    };
    let eth = EthernetFrame::new_unchecked(&bytes[vnet::HEADER_LEN..]);
    let (dst_mac, src_mac, ethertype) = (eth.dst_addr(), eth.src_addr(), eth.ethertype());
    let ndp_multicast = ethertype == EtherType::Ipv6 && dst_mac.is_multicast();
    if dst_mac != me.mac && !dst_mac.is_broadcast() && !ndp_multicast {
        return Verdict::Pass;
    }
    let rx = Rx {
        ctx,
        iface,
        me,
        src_mac,
        partial,
        gso,
        bare,
    };
    let out = match ethertype {
        EtherType::Arp => arp(&rx, f),
        EtherType::Ipv4 => ipv4(&rx, conns, f),
        EtherType::Ipv6 => ipv6(&rx, conns, f),
        _ => PASS,
    };
    finish(&rx, f, out)
}

/// Writes the Ethernet addresses for where the frame goes.
fn finish(rx: &Rx, f: &mut Frame, out: Out) -> Verdict {
    let (iface, mac) = match out {
        Out::Done(v) => return v,
        Out::Neighbor(ip) => match rx.ctx.neigh.map.get(&ip) {
            Some(n) => (n.iface, n.mac),
            None => return Verdict::Drop(DropReason::NoNeighbor),
        },
        Out::Mac(i, m) => (i, m),
        Out::Back | Out::Refuse(_) => (rx.iface, rx.src_mac),
    };
    let Some(out_if) = rx.ctx.ifaces.list.get(usize::from(iface)) else {
        return Verdict::Drop(DropReason::NoNeighbor);
    };
    let bytes = f.bytes();
    let mut eth = EthernetFrame::new_unchecked(&mut bytes[vnet::HEADER_LEN..]);
    eth.set_dst_addr(mac);
    eth.set_src_addr(out_if.mac);
    match out {
        Out::Refuse(why) => Verdict::Refuse { iface, why },
        _ => Verdict::Forward { iface },
    }
}

/// A frame lvsd built itself: no offload state.
fn clear_vnet(f: &mut Frame) {
    let bytes = f.bytes();
    VnetHeader::new_unchecked(&mut bytes[..vnet::HEADER_LEN]).clear();
}

/// Whether lvsd answers for `ip`: a VIP the kernel does not own.
fn answers_for(rx: &Rx, ip: IpAddr) -> bool {
    rx.ctx.rules.vips.contains(&ip) && !rx.ctx.ifaces.local.contains(&ip)
}

/// Turns an ARP request for a VIP into the reply, in place.
fn arp(rx: &Rx, f: &mut Frame) -> Out {
    let Ok(mut a) = ArpPacket::new_checked(f.l3()) else {
        return PASS;
    };
    if a.operation() != ArpOperation::Request {
        return PASS;
    }
    let target = a.target_protocol_addr();
    if !answers_for(rx, IpAddr::V4(target)) {
        return PASS;
    }
    let asker_mac = a.sender_hardware_addr();
    let asker_ip = a.sender_protocol_addr();
    a.set_operation(ArpOperation::Reply);
    a.set_sender_hardware_addr(rx.me.mac);
    a.set_sender_protocol_addr(target);
    a.set_target_hardware_addr(asker_mac);
    a.set_target_protocol_addr(asker_ip);
    clear_vnet(f);
    Out::Mac(rx.iface, asker_mac)
}

/// The transport facts of one packet.
struct Flow {
    protocol: Protocol,
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
    /// (syn, fin, ack, rst) for TCP.
    flags: Option<(bool, bool, bool, bool)>,
    /// Length of the IP packet, header included.
    len: usize,
    /// TTL or hop limit.
    ttl: u8,
}

/// Ports and flags of a TCP or UDP header.
/// TCP's (syn, fin, ack, rst).
type TcpFlags = Option<(bool, bool, bool, bool)>;

fn ports(protocol: Protocol, l4: &[u8]) -> Option<(u16, u16, TcpFlags)> {
    match protocol {
        Protocol::Tcp => TcpPacket::new_checked(l4).ok().map(|t| {
            (
                t.src_port(),
                t.dst_port(),
                Some((t.syn(), t.fin(), t.ack(), t.rst())),
            )
        }),
        Protocol::Udp => UdpPacket::new_checked(l4)
            .ok()
            .map(|u| (u.src_port(), u.dst_port(), None)),
    }
}

fn transport(p: IpProtocol) -> Option<Protocol> {
    match p {
        IpProtocol::Tcp => Some(Protocol::Tcp),
        IpProtocol::Udp => Some(Protocol::Udp),
        _ => None,
    }
}

fn ipv4(rx: &Rx, conns: &mut ConnTable, f: &mut Frame) -> Out {
    let l3 = f.l3();
    let ip = match Ipv4Packet::new_checked(&*l3) {
        Ok(ip) => ip,
        Err(crate::wire::Error::Truncated) => return drop(DropReason::Truncated),
        Err(_) => return drop(DropReason::Malformed),
    };
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let to_vip = rx.ctx.rules.vips.contains(&IpAddr::V4(dst));
    if !to_vip && rx.ctx.ifaces.local.contains(&IpAddr::V4(dst)) {
        return PASS;
    }
    let next = ip.next_header();
    let protocol = transport(next);
    if protocol.is_none() && next != IpProtocol::Icmp {
        return if to_vip {
            drop(DropReason::UnsupportedProtocol)
        } else {
            PASS
        };
    }
    let ours = |r| if to_vip { drop(r) } else { PASS };
    if !ip.verify_checksum() {
        return ours(DropReason::BadChecksum);
    }
    if ip.is_fragment() {
        return ours(DropReason::Fragment);
    }
    let (len, hl, ttl) = (
        usize::from(ip.total_len()),
        usize::from(ip.header_len()),
        ip.ttl(),
    );
    let Some(protocol) = protocol else {
        return icmp4(rx, conns, f, len, hl, ttl, to_vip);
    };
    let found = ports(protocol, ip.payload());
    let addrs = (IpAddr::V4(src), IpAddr::V4(dst));
    tcp_udp(rx, conns, f, (protocol, found), addrs, (len, ttl), to_vip)
}

fn ipv6(rx: &Rx, conns: &mut ConnTable, f: &mut Frame) -> Out {
    let l3 = f.l3();
    let ip = match Ipv6Packet::new_checked(&*l3) {
        Ok(ip) => ip,
        Err(crate::wire::Error::Truncated) => return drop(DropReason::Truncated),
        Err(_) => return drop(DropReason::Malformed),
    };
    let (src, dst, next, len, hop) = (
        ip.src_addr(),
        ip.dst_addr(),
        ip.next_header(),
        ip.total_len(),
        ip.hop_limit(),
    );
    let solicited = match IcmpPacket::new_checked(ip.payload()) {
        // RFC 4861 section 7.1.1: code 0, at least 24 bytes, a good
        // checksum, a unicast target; anything else is not answered.
        Ok(m)
            if next == IpProtocol::Icmpv6
                && m.msg_type() == v6::NEIGHBOR_SOLICIT
                && m.msg_code() == 0
                && crate::wire::icmp::verify_checksum_v6(ip.payload(), src, dst) =>
        {
            m.body()
                .get(..16)
                .and_then(|t| <[u8; 16]>::try_from(t).ok())
                .filter(|t| t[0] != 0xff)
        }
        _ => None,
    };
    if let Some(target) = solicited {
        return neighbor_solicit(rx, f, src, hop, Ipv6Addr::from(target));
    }
    let to_vip = rx.ctx.rules.vips.contains(&IpAddr::V6(dst));
    if !to_vip && (rx.ctx.ifaces.local.contains(&IpAddr::V6(dst)) || dst.is_multicast()) {
        return PASS;
    }
    let ours = |r| if to_vip { drop(r) } else { PASS };
    // TCP and UDP may follow extension headers, as IPVS finds them
    // (ipv6_find_hdr); ICMPv6 is handled directly after the fixed header.
    let Some((upper, at)) = crate::wire::ipv6::upper_layer(&l3[..len.min(l3.len())]) else {
        return ours(DropReason::Malformed);
    };
    let protocol = match (next, upper) {
        (IpProtocol::Icmpv6, _) => None,
        (_, IpProtocol::Tcp | IpProtocol::Udp) => transport(upper),
        // 44: the fragment header.
        (_, IpProtocol::Unknown(44)) => return ours(DropReason::Fragment),
        _ => return ours(DropReason::UnsupportedProtocol),
    };
    let Some(protocol) = protocol else {
        return icmp6(rx, conns, f, len, hop, to_vip);
    };
    let found = ports(protocol, &l3[at..len.min(l3.len())]);
    let addrs = (IpAddr::V6(src), IpAddr::V6(dst));
    tcp_udp(rx, conns, f, (protocol, found), addrs, (len, hop), to_vip)
}

/// The common tail of [`ipv4`] and [`ipv6`] for TCP and UDP: the transport
/// header must have been readable, and the frame is cut to the IP length.
fn tcp_udp(
    rx: &Rx,
    conns: &mut ConnTable,
    f: &mut Frame,
    (protocol, found): (Protocol, Option<(u16, u16, TcpFlags)>),
    (src, dst): (IpAddr, IpAddr),
    (len, ttl): (usize, u8),
    to_vip: bool,
) -> Out {
    let ours = |r| if to_vip { drop(r) } else { PASS };
    let Some((sport, dport, flags)) = found else {
        return ours(DropReason::Malformed);
    };
    if !f.set_l3_len(len) {
        return ours(DropReason::Truncated);
    }
    let flow = Flow {
        protocol,
        src,
        sport,
        dst,
        dport,
        flags,
        len,
        ttl,
    };
    l4(rx, conns, f, &flow, to_vip)
}

/// A TCP or UDP packet: to a virtual service, or a NAT real server's reply.
fn l4(rx: &Rx, conns: &mut ConnTable, f: &mut Frame, flow: &Flow, to_vip: bool) -> Out {
    let ctx = rx.ctx;
    let t = &ctx.rules.timeouts;
    if to_vip {
        let vip = SocketAddr::new(flow.dst, flow.dport);
        let client = SocketAddr::new(flow.src, flow.sport);
        let key = Key {
            protocol: flow.protocol,
            src: client,
            dst: vip,
        };
        // As IPVS with its default conn_reuse_mode: a SYN on a connection
        // in TIME_WAIT or CLOSE (the client reusing its port) ends it and
        // starts a new one, scheduled afresh.
        let is_syn = flow
            .flags
            .is_some_and(|(syn, fin, ack, rst)| syn && !ack && !fin && !rst);
        let mut found = conns.lookup_in(&key);
        if let Some(id) = found.filter(|&id| {
            is_syn
                && conns
                    .get(id)
                    .is_some_and(|c| matches!(c.state, State::TimeWait | State::Close))
        }) {
            conns.remove(id);
            found = None;
        }
        let id = match found {
            Some(id) => id,
            None => {
                let Some(svc) = ctx.rules.service(flow.protocol, vip) else {
                    return PASS;
                };
                // As IPVS: only a SYN starts a TCP connection. Anything
                // else but a reset is answered with one (as the director's
                // own stack answers it under IPVS).
                if let Some((syn, fin, ack, rst)) = flow.flags {
                    if rst {
                        return drop(DropReason::NoConn);
                    }
                    if !syn || ack || fin {
                        return reset(rx, f, flow);
                    }
                }
                // As IPVS: the client hears at once that no server takes
                // it (port unreachable, from the VIP), instead of retrying.
                let Some(d) = svc.schedule() else {
                    return refuse(rx, f, flow, Some(flow.dst), DropReason::NoDest);
                };
                let method = d.method();
                // A local node takes the packet whatever its TTL, as IPVS's
                // local delivery does; the others would forward it.
                if method != Method::Local && flow.ttl <= 1 {
                    return refuse(rx, f, flow, Some(flow.dst), DropReason::TtlExceeded);
                }
                if method != Method::Local && !ctx.neigh.map.contains_key(&d.addr().ip()) {
                    return drop(DropReason::NoNeighbor);
                }
                let new = NewConn {
                    protocol: flow.protocol,
                    method,
                    client,
                    vip,
                    dest_addr: d.addr(),
                    client_iface: rx.iface,
                    client_mac: rx.src_mac.0,
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
        let Some(method) = conns.get(id).map(|c| c.method) else {
            return drop(DropReason::NoConn);
        };
        if method != Method::Local && flow.ttl <= 1 {
            return refuse(rx, f, flow, Some(flow.dst), DropReason::TtlExceeded);
        }
        let dir = if method == Method::Nat {
            Dir::Input
        } else {
            Dir::InputOnly
        };
        conns.touch(id, dir, flow.flags, ctx.now, t);
        let Some(c) = conns.get(id) else {
            return drop(DropReason::NoConn);
        };
        c.service.stats.shard(ctx.shard).count_in(flow.len);
        c.dest.stats.shard(ctx.shard).count_in(flow.len);
        let dest = c.dest_addr;
        return inbound(rx, f, method, dest, flow.len);
    }

    // A reply from a NAT real server?
    let key = Key {
        protocol: flow.protocol,
        src: SocketAddr::new(flow.src, flow.sport),
        dst: SocketAddr::new(flow.dst, flow.dport),
    };
    let Some(id) = conns.lookup_out(&key) else {
        return if ctx.rules.nat_dests.contains(&(flow.protocol, key.src)) {
            drop(DropReason::NoConn)
        } else {
            PASS
        };
    };
    if flow.ttl <= 1 {
        return refuse(rx, f, flow, None, DropReason::TtlExceeded);
    }
    conns.touch(id, Dir::Output, flow.flags, ctx.now, t);
    let Some(c) = conns.get(id) else {
        return drop(DropReason::NoConn);
    };
    c.service.stats.shard(ctx.shard).count_out(flow.len);
    c.dest.stats.shard(ctx.shard).count_out(flow.len);
    let (vip, iface, mac) = (c.vip, c.client_iface, MacAddr(c.client_mac));
    if let Some(mtu) = exceeds(rx, iface, flow.len) {
        return too_big(rx, f, flow.len, mtu);
    }
    if !rewrite(f.l3(), Side::Src, vip.ip(), vip.port(), rx.partial) {
        return drop(DropReason::Malformed);
    }
    Out::Mac(iface, mac)
}

/// Sends a client's packet (the IP packet of `f`, `len` bytes) on to its
/// connection's real server by the connection's method.
fn inbound(rx: &Rx, f: &mut Frame, method: Method, dest: SocketAddr, len: usize) -> Out {
    // NAT and DR: the next hop, and whether the packet fits its link.
    let hop = || {
        let n = rx.ctx.neigh.map.get(&dest.ip())?;
        Some((n.iface, n.mac, exceeds(rx, n.iface, len)))
    };
    match method {
        Method::Nat | Method::Dr => {
            let Some((iface, mac, too_big_for)) = hop() else {
                return drop(DropReason::NoNeighbor);
            };
            if let Some(mtu) = too_big_for {
                return too_big(rx, f, len, mtu);
            }
            if method == Method::Dr {
                dr::decrement_ttl(f.l3());
            } else if !rewrite(f.l3(), Side::Dst, dest.ip(), dest.port(), rx.partial) {
                return drop(DropReason::Malformed);
            }
            Out::Mac(iface, mac)
        }
        Method::Tun => tunnel(rx, f, dest.ip(), len),
        Method::Local => {
            // The director's stack takes the packet from a device without
            // offloads: a partial checksum (a GRO super-frame, or a peer
            // that left it to the hardware) is finished here, and a
            // super-frame goes in as one large packet.
            if rx.partial && !finish_checksum(f, len) {
                return drop(DropReason::Malformed);
            }
            f.start += L2_LEN;
            f.len = len;
            Out::Done(Verdict::Local)
        }
    }
}

/// Finishes the partial transport checksum of the frame in `f`, as its
/// virtio-net header asks (from `csum_start` to the end of the frame, the
/// sum stored at `csum_start + csum_offset`, which holds the pseudo-header's
/// sum until then), to the end of the IP packet of `len` bytes (not into
/// the Ethernet padding of a short frame). False when the header points
/// outside the packet.
fn finish_checksum(f: &mut Frame, len: usize) -> bool {
    let bytes = f.bytes();
    let vh = VnetHeader::new_unchecked(&bytes[..vnet::HEADER_LEN]);
    let start = vnet::HEADER_LEN + usize::from(vh.csum_start());
    let at = start + usize::from(vh.csum_offset());
    let end = (L2_LEN + len).min(bytes.len());
    if start < L2_LEN || at + 2 > end {
        return false;
    }
    let c = !crate::wire::checksum::fold(crate::wire::checksum::sum(&bytes[start..end]));
    // UDP sends a computed 0 as all ones (0 means "none").
    let c = if c == 0 { 0xffff } else { c };
    bytes[at..at + 2].copy_from_slice(&c.to_be_bytes());
    true
}

/// Wraps the packet for the real server at `rip`, or tells the client it is
/// too big for the tunnel.
fn tunnel(rx: &Rx, f: &mut Frame, rip: IpAddr, len: usize) -> Out {
    let ctx = rx.ctx;
    let Some(n) = ctx.neigh.map.get(&rip) else {
        return drop(DropReason::NoNeighbor);
    };
    let Some(out_if) = ctx.ifaces.list.get(usize::from(n.iface)) else {
        return drop(DropReason::NoNeighbor);
    };
    if rx.gso {
        // A super-frame cannot be segmented inside a tunnel by the kernel
        // through a packet socket; see docs/operations.md on offloads.
        return drop(DropReason::TooBig);
    }
    if rx.bare {
        // The encapsulation moves the header with the frame and reads it.
        clear_vnet(f);
    }
    let mtu = usize::try_from(out_if.mtu).unwrap_or(1500);
    let result = match (rip, out_if.source_for(rip)) {
        (IpAddr::V4(r), Some(IpAddr::V4(src))) => encap_v4(f, len, src, r, mtu),
        (IpAddr::V6(r), Some(IpAddr::V6(src))) => encap_v6(f, len, src, r, mtu),
        _ => return drop(DropReason::NoNeighbor),
    };
    match result {
        Encap::Done => Out::Neighbor(rip),
        Encap::NoRoom => drop(DropReason::TooBig),
        Encap::TooBig { inner_mtu } => too_big(rx, f, len, inner_mtu),
    }
}

/// The packet of `f` (`len` bytes, as its sender sent it) does not fit the
/// next link (`mtu` bytes of IP): an ICMP "fragmentation needed" (IPv4, for
/// a packet with DF set) or "packet too big" (IPv6) back to the sender, as
/// a router (and IPVS) sends; a packet without DF is dropped (lvsd does not
/// fragment), as is a GSO super-frame, which the kernel segments itself and
/// never reaches here.
fn too_big(rx: &Rx, f: &mut Frame, len: usize, mtu: usize) -> Out {
    if !may_answer(f.l3()) {
        return drop(DropReason::TooBig);
    }
    let l3_at = f.start + L2_LEN;
    let sender = match f.l3().first().map(|b| b >> 4) {
        Some(4) => IpAddr::V4(Ipv4Packet::new_unchecked(&f.l3()[..]).src_addr()),
        _ => IpAddr::V6(Ipv6Packet::new_unchecked(&f.l3()[..]).src_addr()),
    };
    let Some(from) = rx.me.source_for(sender) else {
        return drop(DropReason::TooBig);
    };
    let mtu16 = u16::try_from(mtu).unwrap_or(u16::MAX);
    let built = match from {
        IpAddr::V4(from) => {
            if !Ipv4Packet::new_unchecked(&f.l3()[..]).dont_frag() {
                return drop(DropReason::TooBig);
            }
            let [hi, lo] = mtu16.to_be_bytes();
            icmpx::error_v4(
                f.buf,
                l3_at,
                len,
                from,
                (v4::DEST_UNREACHABLE, v4::CODE_FRAG_NEEDED),
                [0, 0, hi, lo],
            )
        }
        IpAddr::V6(from) => icmpx::error_v6(
            f.buf,
            l3_at,
            len,
            from,
            (v6::PACKET_TOO_BIG, 0),
            u32::from(mtu16).to_be_bytes(),
        ),
    };
    match built {
        Some(n) if f.set_l3_len(n) => {
            clear_vnet(f);
            Out::Back
        }
        _ => drop(DropReason::TooBig),
    }
}

/// Answers the packet of `f` (`flow`) with an ICMP error, as a router and
/// IPVS do: port unreachable when no real server can take a new
/// connection, time exceeded (in transit) when its TTL or hop limit runs
/// out here. From `from` (the VIP, for packets to one), else from lvsd's
/// address on the link the packet came in on. Within the shard's ICMP
/// budget; the packet is counted as dropped for `why` either way.
fn refuse(rx: &Rx, f: &mut Frame, flow: &Flow, from: Option<IpAddr>, why: DropReason) -> Out {
    if rx.gso || !may_answer(f.l3()) || !to_our_mac(f) || !rx.ctx.icmp.take(rx.ctx.now, flow.src) {
        return drop(why);
    }
    let Some(from) = from.or_else(|| rx.me.source_for(flow.src)) else {
        return drop(why);
    };
    let l3_at = f.start + L2_LEN;
    let ttl = why == DropReason::TtlExceeded;
    let built = match from {
        IpAddr::V4(from) => {
            let kind = if ttl {
                (v4::TIME_EXCEEDED, 0)
            } else {
                (v4::DEST_UNREACHABLE, v4::CODE_PORT_UNREACHABLE)
            };
            icmpx::error_v4(f.buf, l3_at, flow.len, from, kind, [0; 4])
        }
        IpAddr::V6(from) => {
            let kind = if ttl {
                (v6::TIME_EXCEEDED, 0)
            } else {
                (v6::DEST_UNREACHABLE, v6::CODE_PORT_UNREACHABLE)
            };
            icmpx::error_v6(f.buf, l3_at, flow.len, from, kind, [0; 4])
        }
    };
    match built {
        Some(n) if f.set_l3_len(n) => {
            clear_vnet(f);
            Out::Refuse(why)
        }
        _ => drop(why),
    }
}

/// Answers a TCP segment to a service that belongs to no connection with
/// a reset from the VIP (counted as no_conn either way).
fn reset(rx: &Rx, f: &mut Frame, flow: &Flow) -> Out {
    if rx.gso || !may_answer(f.l3()) || !to_our_mac(f) {
        return drop(DropReason::NoConn);
    }
    let l4 = match f.l3().first() {
        Some(b) if b >> 4 == 4 => usize::from(b & 0xf) * 4,
        _ => match crate::wire::ipv6::upper_layer(f.l3()) {
            Some((_, at)) => at,
            None => return drop(DropReason::NoConn),
        },
    };
    // A segment the stack would find corrupt gets no reset from it either.
    if !rx.partial && !transport_checksum_ok(f.l3(), l4, flow) {
        return drop(DropReason::NoConn);
    }
    let l3_at = f.start + L2_LEN;
    match crate::forward::reset::answer(f.buf, l3_at, flow.len, l4) {
        Some(n) if f.set_l3_len(n) => {
            clear_vnet(f);
            Out::Refuse(DropReason::NoConn)
        }
        _ => drop(DropReason::NoConn),
    }
}

/// Whether the frame was sent to lvsd's MAC address (not broadcast or
/// multicast, which the kernel never answers with an error or a reset).
fn to_our_mac(f: &mut Frame) -> bool {
    f.bytes().get(vnet::HEADER_LEN).is_some_and(|b| b & 1 == 0)
}

/// Whether the TCP segment at `l4` in `l3` (of `flow.len` bytes) has a
/// correct checksum.
fn transport_checksum_ok(l3: &[u8], l4: usize, flow: &Flow) -> bool {
    use crate::wire::checksum::{fold, pseudo_header_v4, pseudo_header_v6, sum};
    let Some(seg) = l3.get(l4..flow.len) else {
        return false;
    };
    let n = u32::try_from(seg.len()).unwrap_or(0);
    let pseudo = match (flow.src, flow.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => pseudo_header_v4(s, d, 6, n),
        (IpAddr::V6(s), IpAddr::V6(d)) => pseudo_header_v6(s, d, 6, n),
        _ => return false,
    };
    fold(pseudo + sum(seg)) == 0xffff
}

/// Whether an ICMP error may answer the IP packet `l3`: its source is a
/// unicast host (not unspecified, broadcast, multicast or loopback: the
/// kernel drops such sources before IPVS sees them), and it is not an ICMP
/// error itself (RFC 1122 3.2.2, RFC 4443 2.4(e)).
fn may_answer(l3: &[u8]) -> bool {
    match l3.first().map(|b| b >> 4) {
        Some(4) if l3.len() >= 20 => {
            let ip = Ipv4Packet::new_unchecked(l3);
            let src = ip.src_addr();
            let hl = usize::from(l3[0] & 0xf) * 4;
            let error = ip.next_header() == IpProtocol::Icmp
                && l3.get(hl).is_some_and(|&t| v4::is_error(t));
            !(src.is_unspecified()
                || src.is_broadcast()
                || src.is_multicast()
                || src.is_loopback()
                || error)
        }
        Some(6) if l3.len() >= V6_LEN => {
            let ip = Ipv6Packet::new_unchecked(l3);
            let src = ip.src_addr();
            // ICMPv6 errors are the types below 128.
            let error =
                ip.next_header() == IpProtocol::Icmpv6 && l3.get(V6_LEN).is_some_and(|&t| t < 128);
            !(src.is_unspecified() || src.is_multicast() || src.is_loopback() || error)
        }
        _ => false,
    }
}

/// The MTU of interface slot `iface`, when a packet of `len` bytes (not a
/// GSO super-frame) is larger.
fn exceeds(rx: &Rx, iface: u16, len: usize) -> Option<usize> {
    if rx.gso {
        return None;
    }
    let out_if = rx.ctx.ifaces.list.get(usize::from(iface))?;
    let mtu = usize::try_from(out_if.mtu).unwrap_or(usize::MAX);
    (len > mtu).then_some(mtu)
}

#[allow(clippy::too_many_arguments)]
fn icmp4(
    rx: &Rx,
    conns: &mut ConnTable,
    f: &mut Frame,
    len: usize,
    hl: usize,
    ttl: u8,
    to_vip: bool,
) -> Out {
    let ours = |r| if to_vip { drop(r) } else { PASS };
    if !f.set_l3_len(len) {
        return ours(DropReason::Truncated);
    }
    let l3 = f.l3();
    let Ok(m) = IcmpPacket::new_checked(&l3[hl.min(l3.len())..]) else {
        return ours(DropReason::Malformed);
    };
    let t = m.msg_type();
    if to_vip && t == v4::ECHO_REQUEST {
        let dst = Ipv4Packet::new_unchecked(&l3[..]).dst_addr();
        if !answers_for(rx, IpAddr::V4(dst)) {
            return PASS;
        }
        if !m.verify_checksum_v4() {
            return drop(DropReason::BadChecksum);
        }
        icmpx::echo_reply(l3, len);
        clear_vnet(f);
        return Out::Back;
    }
    if !v4::is_error(t) {
        return ours(DropReason::UnsupportedProtocol);
    }
    let Some(e) = icmpx::embedded(m.body()) else {
        return ours(DropReason::Malformed);
    };
    let csum_ok = m.verify_checksum_v4();
    icmp_error(rx, conns, f, &e, (len, ttl), to_vip, csum_ok)
}

fn icmp6(rx: &Rx, conns: &mut ConnTable, f: &mut Frame, len: usize, hop: u8, to_vip: bool) -> Out {
    let ours = |r| if to_vip { drop(r) } else { PASS };
    if !f.set_l3_len(len) {
        return ours(DropReason::Truncated);
    }
    let l3 = f.l3();
    let (src, dst) = {
        let ip = Ipv6Packet::new_unchecked(&l3[..]);
        (ip.src_addr(), ip.dst_addr())
    };
    let Ok(m) = IcmpPacket::new_checked(&l3[V6_LEN.min(l3.len())..]) else {
        return ours(DropReason::Malformed);
    };
    let t = m.msg_type();
    if to_vip && t == v6::ECHO_REQUEST {
        if !answers_for(rx, IpAddr::V6(dst)) {
            return PASS;
        }
        if !crate::wire::icmp::verify_checksum_v6(&l3[V6_LEN..], src, dst) {
            return drop(DropReason::BadChecksum);
        }
        icmpx::echo_reply(l3, len);
        clear_vnet(f);
        return Out::Back;
    }
    if !v6::is_error(t) {
        return ours(DropReason::UnsupportedProtocol);
    }
    let Some(e) = icmpx::embedded(m.body()) else {
        return ours(DropReason::Malformed);
    };
    let csum_ok = crate::wire::icmp::verify_checksum_v6(&l3[V6_LEN..], src, dst);
    icmp_error(rx, conns, f, &e, (len, hop), to_vip, csum_ok)
}

/// An ICMP error about the packet `e`: to a VIP (about a packet the service
/// sent a client) it goes to the connection's real server; from a NAT real
/// server's side it goes, translated, to the client.
#[allow(clippy::too_many_arguments)]
fn icmp_error(
    rx: &Rx,
    conns: &mut ConnTable,
    f: &mut Frame,
    e: &Embedded,
    (len, ttl): (usize, u8),
    to_vip: bool,
    csum_ok: bool,
) -> Out {
    let ours = |r| if to_vip { drop(r) } else { PASS };
    let Some(protocol) = transport(e.protocol) else {
        return ours(DropReason::UnsupportedProtocol);
    };
    // Both directions' keys read the embedded packet backwards.
    let key = Key {
        protocol,
        src: SocketAddr::new(e.dst, e.dport),
        dst: SocketAddr::new(e.src, e.sport),
    };
    let ctx = rx.ctx;
    if to_vip {
        let Some(c) = conns.lookup_in(&key).and_then(|id| conns.get(id)) else {
            return drop(DropReason::NoConn);
        };
        // As IPVS: an error about a connection is checked before it is
        // translated and passed on.
        if !csum_ok {
            return drop(DropReason::BadChecksum);
        }
        if c.method != Method::Local && ttl <= 1 {
            return drop(DropReason::TtlExceeded);
        }
        c.service.stats.shard(ctx.shard).count_in(len);
        c.dest.stats.shard(ctx.shard).count_in(len);
        let (method, dest) = (c.method, c.dest_addr);
        if method == Method::Nat {
            let ok = icmpx::translate(
                f.l3(),
                len,
                Side::Dst,
                dest.ip(),
                Side::Src,
                dest.ip(),
                dest.port(),
            );
            return if ok {
                Out::Neighbor(dest.ip())
            } else {
                drop(DropReason::Malformed)
            };
        }
        return inbound(rx, f, method, dest, len);
    }
    let Some(c) = conns.lookup_out(&key).and_then(|id| conns.get(id)) else {
        return PASS;
    };
    if !csum_ok {
        return drop(DropReason::BadChecksum);
    }
    if ttl <= 1 {
        return drop(DropReason::TtlExceeded);
    }
    c.service.stats.shard(ctx.shard).count_out(len);
    c.dest.stats.shard(ctx.shard).count_out(len);
    let (vip, iface, mac) = (c.vip, c.client_iface, MacAddr(c.client_mac));
    if !icmpx::translate(
        f.l3(),
        len,
        Side::Src,
        vip.ip(),
        Side::Dst,
        vip.ip(),
        vip.port(),
    ) {
        return drop(DropReason::Malformed);
    }
    Out::Mac(iface, mac)
}

/// Answers a neighbour solicitation for a VIP (RFC 4861 section 7.2.4) with
/// an advertisement, in place.
fn neighbor_solicit(rx: &Rx, f: &mut Frame, src: Ipv6Addr, hop: u8, target: Ipv6Addr) -> Out {
    if hop != 255 {
        return PASS;
    }
    if !answers_for(rx, IpAddr::V6(target)) {
        return PASS;
    }
    // Duplicate address detection asks from ::; the answer goes to all nodes.
    let (dst, flags, dst_mac) = if src.is_unspecified() {
        (
            Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1),
            0x2000_0000u32,
            MacAddr([0x33, 0x33, 0, 0, 0, 1]),
        )
    } else {
        (src, v6::NA_SOLICITED_OVERRIDE, rx.src_mac)
    };
    const NA_LEN_U16: u16 = 32; // ICMP header, target, one option
    const NA_LEN: usize = NA_LEN_U16 as usize;
    if !f.set_l3_len(V6_LEN + NA_LEN) {
        return PASS;
    }
    let l3 = f.l3();
    let mut ip = Ipv6Packet::new_unchecked(&mut l3[..V6_LEN]);
    ip.set_version_defaults();
    ip.set_payload_len(NA_LEN_U16);
    ip.set_next_header(IpProtocol::Icmpv6);
    ip.set_hop_limit(255);
    ip.set_src_addr(target);
    ip.set_dst_addr(dst);
    let msg = &mut l3[V6_LEN..V6_LEN + NA_LEN];
    msg[ICMP_LEN..ICMP_LEN + 16].copy_from_slice(&target.octets());
    msg[ICMP_LEN + 16] = v6::OPT_TARGET_LL;
    msg[ICMP_LEN + 17] = 1;
    msg[ICMP_LEN + 18..ICMP_LEN + 24].copy_from_slice(&rx.me.mac.0);
    let mut m = IcmpPacket::new_unchecked(msg);
    m.set_msg_type(v6::NEIGHBOR_ADVERT);
    m.set_msg_code(0);
    m.set_rest(flags.to_be_bytes());
    m.fill_checksum_v6(target, dst);
    clear_vnet(f);
    Out::Mac(rx.iface, dst_mac)
}
