//! Byte-array tests of the data path: [`lvsd::dataplane::process`] driven
//! through the library's public API only, with no sockets and a clock set by
//! hand.
//!
//! The lab, as in the end-to-end tests:
//! - slot 0 `ext0`, 02:00:00:00:00:01, 198.18.0.1/24: clients (198.18.0.2,
//!   198.18.0.3) reach the VIP 198.19.0.100 through it;
//! - slot 1 `int0`, 02:00:00:00:00:02, 198.18.1.1/24: the real servers
//!   198.18.1.11 (02:00:00:00:01:11) and 198.18.1.12 (02:00:00:00:01:12);
//! - NAT services TCP 198.19.0.100:80 -> 198.18.1.11:8080 and UDP
//!   198.19.0.100:53 -> 198.18.1.11:5353;
//! - for the ICMP, other-method and IPv6 tests and the properties
//!   (`busy_lab`): direct routing on :81, tunneling on :82, a local node on
//!   :83, and IPv6 NAT [2001:db8:ff::100]:80 -> [2001:db8:1::11]:8080.
//!
//! Frames are processed in a buffer laid out as a shard's (`HEADROOM`
//! bytes before the frame, room after it), since a forwarded frame may move
//! (a tunnel's outer header) or change length (Ethernet padding dropped, a
//! reply built in place).
//!
//! Tests are tables in katran's shape: {description, input frame, expected
//! verdict, expected output frame}. Expected frames are built independently
//! with the wire builders (every checksum computed from scratch), so a
//! byte-for-byte match also proves that the incremental checksum updates
//! equal a full recompute. Checksums of forwarded frames are checked once
//! more with a naive RFC 1071 sum written here, not lvsd's.

use lvsd::conn::state::State;
use lvsd::conn::{ConnTable, Key};
use lvsd::dataplane::{
    process, process_bare, Ctx, DropReason, Frame, IcmpBudget, Iface, Interfaces, NeighTable,
    Neighbor, Verdict, HEADROOM,
};
use lvsd::rules::{DestState, Model, RuleTable};
use lvsd::wire::arp::{ArpOperation, ArpPacket, ArpRepr};
use lvsd::wire::checksum::{fold, pseudo_header_v4};
use lvsd::wire::ethernet::{EtherType, EthernetFrame, MacAddr};
use lvsd::wire::icmp;
use lvsd::wire::ipv4::{IpProtocol, Ipv4Packet, Ipv4Repr};
use lvsd::wire::ipv6::Ipv6Packet;
use lvsd::wire::tcp::{self, flag, TcpPacket};
use lvsd::wire::udp::{self, UdpPacket};
use lvsd::wire::vnet::{self, VnetHeader};
use lvsd_proto::{DestSpec, Method, Op, Protocol, Request, ServiceKey, ServiceSpec, Stats};
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

// ---------------------------------------------------------------------------
// The lab
// ---------------------------------------------------------------------------

const EXT_MAC: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x00, 0x01]);
const INT_MAC: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x00, 0x02]);
/// The client's MAC (or its router's) as ext0 sees it.
const CLIENT_MAC: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x00, 0xc1]);
const CLIENT2_MAC: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x00, 0xc2]);
const RS1_MAC: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x01, 0x11]);
const RS2_MAC: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x01, 0x12]);
/// Someone else's unicast MAC on the segment.
const OTHER_MAC: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x00, 0x99]);

const EXT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const INT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
const CIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const CIP2: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);
const VIP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 100);
const RIP1: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 11);
const RIP2: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 12);

const CPORT: u16 = 40000;
const HTTP: u16 = 80;
const HTTP_R: u16 = 8080;
const DNS: u16 = 53;
const DNS_R: u16 = 5353;

/// The IPv6 side of the lab, for the property tests.
const EXT_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const INT_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
const CIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 0x100);
const RIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x11);

/// Room a test buffer has after the frame: enough for any reply lvsd
/// builds (an ICMPv6 error quotes up to 1280 bytes).
const TAILROOM: usize = 1280;

const EXT: u16 = 0;
const INT: u16 = 1;

/// Offsets in a frame: the virtio-net header, then Ethernet, then IPv4
/// (without options), then the transport header.
const L2: usize = vnet::HEADER_LEN;
const L3: usize = L2 + 14;
const L4: usize = L3 + 20;

/// IPVS's CLOSE timeout, ms.
const CLOSE_MS: u64 = 10_000;

fn tcp_key(vport: u16) -> ServiceKey {
    ServiceKey {
        protocol: Protocol::Tcp,
        addr: SocketAddr::from((VIP, vport)),
    }
}

fn udp_key(vport: u16) -> ServiceKey {
    ServiceKey {
        protocol: Protocol::Udp,
        addr: SocketAddr::from((VIP, vport)),
    }
}

fn add_service(key: ServiceKey) -> Op {
    Op::AddService {
        service: ServiceSpec {
            key,
            scheduler: "rr".into(),
            persistent: None,
        },
    }
}

fn nat_dest(rip: Ipv4Addr, port: u16, weight: u32) -> DestSpec {
    DestSpec {
        addr: SocketAddr::from((rip, port)),
        weight,
        method: Method::Nat,
        u_threshold: 0,
        l_threshold: 0,
    }
}

/// Everything one shard sees: rules, neighbours, interfaces, its connection
/// table and its clock.
struct Lab {
    model: Model,
    rules: RuleTable,
    neigh: NeighTable,
    icmp: IcmpBudget,
    ifaces: Interfaces,
    conns: ConnTable,
    now: u64,
    /// The last processed frame ended inside its buffer.
    inside: bool,
}

impl Lab {
    fn new() -> Lab {
        let mut model = Model::new(1);
        let ops = [
            add_service(tcp_key(HTTP)),
            Op::AddDest {
                service: tcp_key(HTTP),
                dest: nat_dest(RIP1, HTTP_R, 1),
            },
            add_service(udp_key(DNS)),
            Op::AddDest {
                service: udp_key(DNS),
                dest: nat_dest(RIP1, DNS_R, 1),
            },
        ];
        for op in &ops {
            model.apply(op).expect("lab rules are valid");
        }

        let mut ifaces = Interfaces::default();
        ifaces.list.push(Iface {
            name: "ext0".into(),
            ifindex: 2,
            mac: EXT_MAC,
            mtu: 1500,
            addrs: vec![(EXT_IP, 24)],
            addrs6: vec![(EXT_IP6, 64)],
        });
        ifaces.list.push(Iface {
            name: "int0".into(),
            ifindex: 3,
            mac: INT_MAC,
            mtu: 1500,
            addrs: vec![(INT_IP, 24)],
            addrs6: vec![(INT_IP6, 64)],
        });
        for ip in [
            IpAddr::V4(EXT_IP),
            IpAddr::V4(INT_IP),
            IpAddr::V6(EXT_IP6),
            IpAddr::V6(INT_IP6),
        ] {
            ifaces.local.insert(ip);
        }
        let rules = model.build(1, &ifaces.local, None);

        let mut neigh = NeighTable::default();
        for (ip, mac) in [(RIP1, RS1_MAC), (RIP2, RS2_MAC)] {
            neigh
                .map
                .insert(IpAddr::V4(ip), Neighbor { iface: INT, mac });
        }

        let now = 1_000;
        Lab {
            model,
            rules,
            neigh,
            ifaces,
            icmp: IcmpBudget::new(),
            conns: ConnTable::new(1024, now),
            now,
            inside: true,
        }
    }

    /// Runs one frame received on `iface` through the data path, in a
    /// buffer laid out as a shard's: [`HEADROOM`] bytes before the frame and
    /// room after it. On Forward or Local, `frame` becomes what the
    /// [`Frame`] then designates (it may have moved or changed length); on
    /// Pass or Drop, it becomes the bytes where the input was, so a caller
    /// can check they are untouched.
    fn process(&mut self, iface: u16, frame: &mut Vec<u8>) -> Verdict {
        self.run(iface, frame, process)
    }

    /// As [`Lab::process`], for a frame without a virtio-net header (the
    /// AF_XDP backend's): `frame`'s first bytes are only room for one.
    fn process_bare(&mut self, iface: u16, frame: &mut Vec<u8>) -> Verdict {
        self.run(iface, frame, process_bare)
    }

    fn run(
        &mut self,
        iface: u16,
        frame: &mut Vec<u8>,
        data_path: fn(&Ctx, &mut ConnTable, u16, &mut Frame) -> Verdict,
    ) -> Verdict {
        let ctx = Ctx {
            shard: 0,
            now: self.now,
            rules: &self.rules,
            neigh: &self.neigh,
            ifaces: &self.ifaces,
            icmp: &self.icmp,
        };
        let n = frame.len();
        let mut buf = vec![0u8; HEADROOM + n + TAILROOM];
        buf[HEADROOM..HEADROOM + n].copy_from_slice(frame);
        let mut f = Frame {
            buf: &mut buf,
            start: HEADROOM,
            len: n,
        };
        let verdict = data_path(&ctx, &mut self.conns, iface, &mut f);
        self.inside = f.start + f.len <= f.buf.len();
        *frame = match verdict {
            Verdict::Forward { .. } | Verdict::Refuse { .. } | Verdict::Local => f.bytes().to_vec(),
            Verdict::Pass | Verdict::Drop(_) => buf[HEADROOM..HEADROOM + n].to_vec(),
        };
        verdict
    }

    /// Changes the rules and swaps in a new table, as the admin path does.
    fn apply(&mut self, op: &Op) {
        self.model.apply(op).expect("valid change");
        self.rules = self
            .model
            .build(self.rules.generation + 1, &self.ifaces.local, None);
    }

    /// The shared state of the destination `rip:rport` of `key`.
    fn dest(&self, key: ServiceKey, rip: Ipv4Addr, rport: u16) -> Arc<DestState> {
        let svc = self.rules.service(key.protocol, key.addr).expect("service");
        let d = svc
            .dests
            .iter()
            .find(|d| d.addr() == SocketAddr::from((rip, rport)))
            .expect("destination");
        d.state.clone()
    }

    /// (ActiveConn, InActConn) of the HTTP service's real server.
    fn http_counts(&self) -> (u32, u32) {
        let d = self.dest(tcp_key(HTTP), RIP1, HTTP_R);
        (d.active.load(Relaxed), d.inactive.load(Relaxed))
    }

    /// The state of the connection of client `cip:cport` to VIP:`vport`.
    fn state(&self, protocol: Protocol, cip: Ipv4Addr, cport: u16, vport: u16) -> Option<State> {
        let key = Key {
            protocol,
            src: SocketAddr::from((cip, cport)),
            dst: SocketAddr::from((VIP, vport)),
        };
        let id = self.conns.lookup_in(&key)?;
        self.conns.get(id).map(|c| c.state)
    }

    fn service_stats(&self, key: ServiceKey) -> Stats {
        let svc = self.rules.service(key.protocol, key.addr).expect("service");
        svc.state.stats.sum()
    }
}

// ---------------------------------------------------------------------------
// Frame builders
// ---------------------------------------------------------------------------

/// The transport part of a test packet.
#[derive(Clone, Debug)]
enum Transport {
    Tcp {
        flags: u8,
        seq: u32,
        ack: u32,
    },
    /// `checksum: false` sends it without one (0, RFC 768).
    Udp {
        checksum: bool,
    },
    /// Any other protocol number; the payload is the whole IP payload.
    Raw(u8),
}

/// One IPv4 packet in an Ethernet frame after a virtio-net header of zeros.
#[derive(Clone, Debug)]
struct Pkt {
    dst_mac: MacAddr,
    src_mac: MacAddr,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    ttl: u8,
    l4: Transport,
    payload: Vec<u8>,
}

impl Pkt {
    fn l4_len(&self) -> usize {
        let header = match self.l4 {
            Transport::Tcp { .. } => tcp::HEADER_LEN,
            Transport::Udp { .. } => udp::HEADER_LEN,
            Transport::Raw(_) => 0,
        };
        header + self.payload.len()
    }

    fn frame(&self) -> Vec<u8> {
        let l4_len = self.l4_len();
        let mut f = vec![0u8; L4 + l4_len];
        let mut eth = EthernetFrame::new_unchecked(&mut f[L2..]);
        eth.set_dst_addr(self.dst_mac);
        eth.set_src_addr(self.src_mac);
        eth.set_ethertype(EtherType::Ipv4);
        let next_header = match self.l4 {
            Transport::Tcp { .. } => IpProtocol::Tcp,
            Transport::Udp { .. } => IpProtocol::Udp,
            Transport::Raw(p) => IpProtocol::from(p),
        };
        Ipv4Repr {
            src_addr: *self.src.ip(),
            dst_addr: *self.dst.ip(),
            next_header,
            payload_len: l4_len,
            ttl: self.ttl,
        }
        .emit(&mut Ipv4Packet::new_unchecked(&mut f[L3..]));
        let (src, dst) = (*self.src.ip(), *self.dst.ip());
        let (sport, dport) = (self.src.port(), self.dst.port());
        let seg = &mut f[L4..];
        match self.l4 {
            Transport::Tcp { flags, seq, ack } => {
                seg[tcp::HEADER_LEN..].copy_from_slice(&self.payload);
                tcp::emit_segment(seg, sport, dport, seq, ack, flags, 64240).expect("fits");
                TcpPacket::new_unchecked(seg).fill_checksum(src, dst);
            }
            Transport::Udp { checksum } => {
                seg[udp::HEADER_LEN..].copy_from_slice(&self.payload);
                udp::emit_datagram(seg, sport, dport).expect("fits");
                if checksum {
                    UdpPacket::new_unchecked(seg).fill_checksum(src, dst);
                }
            }
            Transport::Raw(_) => seg.copy_from_slice(&self.payload),
        }
        f
    }
}

fn sock(ip: Ipv4Addr, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(ip, port)
}

fn tcp_l4(flags: u8, seq: u32, ack: u32) -> Transport {
    Transport::Tcp { flags, seq, ack }
}

/// Client -> VIP:`vport` as it arrives on ext0.
fn from_client(vport: u16, l4: Transport) -> Pkt {
    Pkt {
        dst_mac: EXT_MAC,
        src_mac: CLIENT_MAC,
        src: sock(CIP, CPORT),
        dst: sock(VIP, vport),
        ttl: 64,
        l4,
        payload: Vec::new(),
    }
}

/// The same packet as it must leave int0 for RS1 at `rport`.
fn to_rs(rport: u16, l4: Transport) -> Pkt {
    Pkt {
        dst_mac: RS1_MAC,
        src_mac: INT_MAC,
        src: sock(CIP, CPORT),
        dst: sock(RIP1, rport),
        ttl: 63,
        l4,
        payload: Vec::new(),
    }
}

/// RS1:`rport` -> client as it arrives on int0.
fn from_rs(rport: u16, l4: Transport) -> Pkt {
    Pkt {
        dst_mac: INT_MAC,
        src_mac: RS1_MAC,
        src: sock(RIP1, rport),
        dst: sock(CIP, CPORT),
        ttl: 64,
        l4,
        payload: Vec::new(),
    }
}

/// The reply as it must leave ext0 for the client, from VIP:`vport`.
fn to_client(vport: u16, l4: Transport) -> Pkt {
    Pkt {
        dst_mac: CLIENT_MAC,
        src_mac: EXT_MAC,
        src: sock(VIP, vport),
        dst: sock(CIP, CPORT),
        ttl: 63,
        l4,
        payload: Vec::new(),
    }
}

fn syn() -> Transport {
    tcp_l4(flag::SYN, 1000, 0)
}

fn syn_ack() -> Transport {
    tcp_l4(flag::SYN | flag::ACK, 5000, 1001)
}

fn ack() -> Transport {
    tcp_l4(flag::ACK, 1001, 5001)
}

fn udp_csum() -> Transport {
    Transport::Udp { checksum: true }
}

fn udp_no_csum() -> Transport {
    Transport::Udp { checksum: false }
}

/// A DNS query for example.com A: 29 bytes, odd, so the checksum pads.
const QUERY: &[u8] =
    b"\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01";
const GET: &[u8] = b"GET / HTTP/1.0\r\n\r\n";
const RESPONSE: &[u8] = b"HTTP/1.0 200 OK\r\n\r\nhi!";

/// An ICMP message of type `t` (code 0, id 1, seq 1, "ping"): an echo
/// request (8), its reply (0), a timestamp request (13). Checksum included.
fn icmp_msg(t: u8) -> Vec<u8> {
    let mut m = vec![t, 0, 0, 0, 0, 1, 0, 1, b'p', b'i', b'n', b'g'];
    let c = ref_checksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// Mutates the IPv4 header of `f` and recomputes its checksum.
fn edit_ip(mut f: Vec<u8>, edit: impl FnOnce(&mut Ipv4Packet<&mut [u8]>)) -> Vec<u8> {
    let mut ip = Ipv4Packet::new_unchecked(&mut f[L3..]);
    edit(&mut ip);
    ip.fill_checksum();
    f
}

/// Inserts IPv4 options (a multiple of 4 bytes) after the fixed header.
fn with_ip_options(mut f: Vec<u8>, options: &[u8]) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0);
    let at = L3 + 20;
    f.splice(at..at, options.iter().copied());
    let extra = u16::try_from(options.len()).expect("short options");
    edit_ip(f, |ip| {
        ip.set_header_len(u8::try_from(20 + options.len()).expect("at most 40 bytes of options"));
        let total = ip.total_len() + extra;
        ip.set_total_len(total);
    })
}

/// Appends Ethernet padding (bytes after the IP total length).
fn padded(mut f: Vec<u8>, n: usize) -> Vec<u8> {
    f.resize(f.len() + n, 0);
    f
}

/// A frame whose Ethernet payload is `payload`.
fn eth_frame(dst: MacAddr, src: MacAddr, ethertype: EtherType, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; L3 + payload.len()];
    let mut eth = EthernetFrame::new_unchecked(&mut f[L2..]);
    eth.set_dst_addr(dst);
    eth.set_src_addr(src);
    eth.set_ethertype(ethertype);
    eth.payload_mut().copy_from_slice(payload);
    f
}

fn arp_frame(dst: MacAddr, src: MacAddr, repr: ArpRepr) -> Vec<u8> {
    let mut body = vec![0u8; repr.buffer_len()];
    repr.emit(&mut ArpPacket::new_unchecked(&mut body[..]));
    eth_frame(dst, src, EtherType::Arp, &body)
}

/// "Who has `target`? Tell 198.18.0.2", broadcast from the client.
fn arp_request(target: Ipv4Addr) -> ArpRepr {
    ArpRepr {
        operation: ArpOperation::Request,
        source_hardware_addr: CLIENT_MAC,
        source_protocol_addr: CIP,
        target_hardware_addr: MacAddr([0; 6]),
        target_protocol_addr: target,
    }
}

/// A minimal IPv6 header (TCP to [2001:db8::100]:80), enough to look real.
fn ipv6_bytes() -> Vec<u8> {
    let mut b = vec![0x60, 0, 0, 0, 0, 20, 6, 64];
    b.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    b.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
    b.extend_from_slice(&[0x9c, 0x40, 0x00, 0x50]);
    b.extend_from_slice(&[0; 16]);
    b
}

// ---------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------

/// A naive RFC 1071 checksum, independent of lvsd's: 16-bit words, an odd
/// byte padded with zero, carries folded at the end, complemented.
fn ref_checksum(data: &[u8]) -> u16 {
    let mut acc: u64 = 0;
    for pair in data.chunks(2) {
        let hi = u64::from(pair[0]) << 8;
        let lo = pair.get(1).map_or(0, |&b| u64::from(b));
        acc += hi | lo;
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !u16::try_from(acc).expect("folded")
}

/// The checksum over the IPv4 or IPv6 pseudo-header and `segment`, by
/// [`ref_checksum`]. 0 when the segment's own checksum field is right; the
/// value to store when that field is 0.
fn ref_l4_checksum(
    src: impl Into<IpAddr>,
    dst: impl Into<IpAddr>,
    protocol: u8,
    segment: &[u8],
) -> u16 {
    let mut data = Vec::with_capacity(40 + segment.len());
    match (src.into(), dst.into()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let len = u16::try_from(segment.len()).expect("fits an IPv4 packet");
            data.extend_from_slice(&s.octets());
            data.extend_from_slice(&d.octets());
            data.extend_from_slice(&[0, protocol]);
            data.extend_from_slice(&len.to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let len = u32::try_from(segment.len()).expect("fits an IPv6 packet");
            data.extend_from_slice(&s.octets());
            data.extend_from_slice(&d.octets());
            data.extend_from_slice(&len.to_be_bytes());
            data.extend_from_slice(&[0, 0, 0, protocol]);
        }
        _ => panic!("mixed address families"),
    }
    data.extend_from_slice(segment);
    ref_checksum(&data)
}

/// Asserts that the IPv4 header checksum and the TCP or UDP checksum of a
/// frame are right, recomputed in full. A UDP checksum of 0 (none) passes.
fn assert_checksums(desc: &str, frame: &[u8]) {
    let eth = EthernetFrame::new_checked(&frame[L2..]).expect("Ethernet header");
    assert_eq!(eth.ethertype(), EtherType::Ipv4, "{desc}: EtherType");
    let ip = Ipv4Packet::new_checked(eth.payload()).expect("IPv4 header");
    assert_eq!(
        ref_checksum(ip.header_bytes()),
        0,
        "{desc}: IPv4 header checksum"
    );
    assert!(ip.verify_checksum(), "{desc}: IPv4 header checksum (lvsd)");
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    match ip.next_header() {
        IpProtocol::Tcp => {
            assert_eq!(
                ref_l4_checksum(src, dst, 6, ip.payload()),
                0,
                "{desc}: TCP checksum"
            );
            let t = TcpPacket::new_checked(ip.payload()).expect("TCP header");
            assert!(t.verify_checksum(src, dst), "{desc}: TCP checksum (lvsd)");
        }
        IpProtocol::Udp => {
            let u = UdpPacket::new_checked(ip.payload()).expect("UDP header");
            if u.checksum() != 0 {
                assert_eq!(
                    ref_l4_checksum(src, dst, 17, u.datagram()),
                    0,
                    "{desc}: UDP checksum"
                );
            }
        }
        _ => {}
    }
    assert_ip_checks(desc, eth.payload());
}

/// Asserts that every IPv4 header checksum of the IP packet `l3` is right
/// and so is its TCP, UDP, ICMP or ICMPv6 checksum (of the inner packet, in
/// a tunnel), all recomputed in full.
fn assert_ip_checks(desc: &str, l3: &[u8]) {
    assert!(ip_headers_ok(l3), "{desc}: IPv4 header checksum");
    assert_ne!(l4_ok(l3), Some(false), "{desc}: transport checksum");
}

/// Hex of a frame split by layer (vnet | Ethernet | rest), for messages.
fn hex(f: &[u8]) -> String {
    let h = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let cut = |a: usize, b: usize| &f[a.min(f.len())..b.min(f.len())];
    format!(
        "{} | {} | {} | {}",
        h(cut(0, L2)),
        h(cut(L2, L3)),
        h(cut(L3, L4)),
        h(cut(L4, f.len()))
    )
}

fn assert_frame_eq(desc: &str, got: &[u8], want: &[u8]) {
    assert!(
        got == want,
        "{desc}: output frame differs\n got: {}\nwant: {}",
        hex(got),
        hex(want)
    );
}

/// What a frame must look like after [`process`].
enum Output {
    /// Byte for byte the input: Pass, and drops.
    Unchanged,
    /// Byte for byte this frame.
    Frame(Vec<u8>),
}

/// One row of a table: a fresh lab, `setup` run on it, then `input`
/// processed on `iface`.
struct Case {
    description: &'static str,
    setup: fn(&mut Lab),
    iface: u16,
    input: Vec<u8>,
    verdict: Verdict,
    output: Output,
}

fn no_setup(_: &mut Lab) {}

/// A row whose packet's TTL runs out here: time exceeded back to its
/// sender, from `from`, out of the interface it came in on.
fn time_exceeded(
    description: &'static str,
    setup: fn(&mut Lab),
    iface: u16,
    sent: Pkt,
    from: Ipv4Addr,
) -> Case {
    let input = sent.frame();
    Case {
        description,
        setup,
        iface,
        output: Output::Frame(refused(&input, from, (11, 0))),
        input,
        verdict: Verdict::Refuse {
            iface,
            why: DropReason::TtlExceeded,
        },
    }
}

/// Sends the client's SYN to VIP:80 first, so a connection exists.
fn open_http(lab: &mut Lab) {
    let mut f = from_client(HTTP, syn()).frame();
    assert_eq!(lab.process(EXT, &mut f), Verdict::Forward { iface: INT });
}

/// Sends the client's query to VIP:53 first, so a connection exists.
fn open_dns(lab: &mut Lab) {
    let mut f = Pkt {
        payload: QUERY.to_vec(),
        ..from_client(DNS, udp_csum())
    }
    .frame();
    assert_eq!(lab.process(EXT, &mut f), Verdict::Forward { iface: INT });
}

fn run_cases(cases: Vec<Case>) {
    for case in cases {
        let mut lab = Lab::new();
        (case.setup)(&mut lab);
        let mut frame = case.input.clone();
        let verdict = lab.process(case.iface, &mut frame);
        assert_eq!(verdict, case.verdict, "{}: verdict", case.description);
        assert!(lab.inside, "{}: frame left its buffer", case.description);
        match &case.output {
            Output::Unchanged => assert_frame_eq(case.description, &frame, &case.input),
            Output::Frame(want) => assert_frame_eq(case.description, &frame, want),
        }
        let ethertype = frame
            .get(L2..)
            .and_then(|b| EthernetFrame::new_checked(b).ok())
            .map(|e| e.ethertype());
        match (verdict, ethertype) {
            (Verdict::Forward { .. }, Some(EtherType::Ipv4)) => {
                assert_checksums(case.description, &frame)
            }
            (Verdict::Forward { .. }, Some(EtherType::Ipv6)) => {
                assert_ip_checks(case.description, &frame[L3..])
            }
            (Verdict::Local, _) => assert_ip_checks(case.description, &frame),
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------
// 1, 2, 8: a whole TCP connection, then its expiry
// ---------------------------------------------------------------------------

/// One packet of a scenario, processed in order on one lab.
struct Step {
    description: &'static str,
    iface: u16,
    input: Vec<u8>,
    verdict: Verdict,
    output: Vec<u8>,
    /// The connection's state after the packet.
    state: State,
    /// The real server's (ActiveConn, InActConn) after the packet.
    counts: (u32, u32),
}

#[test]
fn tcp_connection_through_nat() {
    let data = |l4, payload: &[u8], p: fn(u16, Transport) -> Pkt, port| Pkt {
        payload: payload.to_vec(),
        ..p(port, l4)
    };
    let data_in = tcp_l4(flag::PSH | flag::ACK, 1001, 5001);
    let data_out = tcp_l4(flag::PSH | flag::ACK, 5001, 1019);
    let rst = tcp_l4(flag::RST, 1019, 0);
    let steps = vec![
        Step {
            description: "client SYN to VIP:80 goes to RS1:8080 on int0",
            iface: EXT,
            input: from_client(HTTP, syn()).frame(),
            verdict: Verdict::Forward { iface: INT },
            output: to_rs(HTTP_R, syn()).frame(),
            state: State::SynRecv,
            counts: (1, 0),
        },
        Step {
            description: "RS1's SYN-ACK goes back to the client from VIP:80",
            iface: INT,
            input: from_rs(HTTP_R, syn_ack()).frame(),
            verdict: Verdict::Forward { iface: EXT },
            output: to_client(HTTP, syn_ack()).frame(),
            state: State::SynRecv,
            counts: (1, 0),
        },
        Step {
            description: "client ACK establishes the connection",
            iface: EXT,
            input: from_client(HTTP, ack()).frame(),
            verdict: Verdict::Forward { iface: INT },
            output: to_rs(HTTP_R, ack()).frame(),
            state: State::Established,
            counts: (1, 0),
        },
        Step {
            description: "client request (odd length)",
            iface: EXT,
            input: data(data_in.clone(), GET, from_client, HTTP).frame(),
            verdict: Verdict::Forward { iface: INT },
            output: data(data_in, GET, to_rs, HTTP_R).frame(),
            state: State::Established,
            counts: (1, 0),
        },
        Step {
            description: "RS1 response (odd length)",
            iface: INT,
            input: data(data_out.clone(), RESPONSE, from_rs, HTTP_R).frame(),
            verdict: Verdict::Forward { iface: EXT },
            output: data(data_out, RESPONSE, to_client, HTTP).frame(),
            state: State::Established,
            counts: (1, 0),
        },
        Step {
            description: "client RST closes",
            iface: EXT,
            input: from_client(HTTP, rst.clone()).frame(),
            verdict: Verdict::Forward { iface: INT },
            output: to_rs(HTTP_R, rst).frame(),
            state: State::Close,
            counts: (0, 1),
        },
    ];

    let mut lab = Lab::new();
    for step in steps {
        lab.now += 10;
        let mut frame = step.input.clone();
        let verdict = lab.process(step.iface, &mut frame);
        let desc = step.description;
        assert_eq!(verdict, step.verdict, "{desc}: verdict");
        assert_frame_eq(desc, &frame, &step.output);
        assert_checksums(desc, &frame);
        assert_eq!(lab.conns.len(), 1, "{desc}: one connection");
        assert_eq!(
            lab.state(Protocol::Tcp, CIP, CPORT, HTTP),
            Some(step.state),
            "{desc}: state"
        );
        assert_eq!(lab.http_counts(), step.counts, "{desc}: (active, inactive)");
    }

    let stats = lab.service_stats(tcp_key(HTTP));
    assert_eq!(
        (stats.conns, stats.inpkts, stats.outpkts),
        (1, 4, 2),
        "service counters"
    );

    // 8: CLOSE lives 10 s after the RST, then the entry and its count go.
    let closed_at = lab.now;
    assert_eq!(lab.conns.expire(closed_at + CLOSE_MS - 1_000), 0);
    assert_eq!(lab.conns.len(), 1);
    assert_eq!(lab.conns.expire(closed_at + CLOSE_MS + 1_000), 1);
    assert_eq!(lab.conns.len(), 0);
    assert_eq!(lab.http_counts(), (0, 0));
    // With the entry gone, RS1's late segment is no one's.
    lab.now = closed_at + CLOSE_MS + 1_000;
    let mut late = from_rs(HTTP_R, ack()).frame();
    assert_eq!(
        lab.process(INT, &mut late),
        Verdict::Drop(DropReason::NoConn)
    );
}

/// Tests 1 and 2 field by field, as the brief lists them; the scenario above
/// compares the same frames byte for byte.
#[test]
fn syn_and_syn_ack_fields() {
    let mut lab = Lab::new();
    let mut f = from_client(HTTP, syn()).frame();
    assert_eq!(lab.process(EXT, &mut f), Verdict::Forward { iface: INT });
    {
        let eth = EthernetFrame::new_checked(&f[L2..]).unwrap();
        assert_eq!(eth.dst_addr(), RS1_MAC, "dst MAC is the RS's");
        assert_eq!(eth.src_addr(), INT_MAC, "src MAC is int0's");
        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
        assert_eq!(ip.src_addr(), CIP);
        assert_eq!(ip.dst_addr(), RIP1);
        assert_eq!(ip.ttl(), 63, "TTL decremented");
        let t = TcpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!((t.src_port(), t.dst_port()), (CPORT, HTTP_R));
    }
    assert_checksums("SYN", &f);
    assert_eq!(lab.conns.len(), 1);
    // As IPVS since Linux 4.7: the handshake counts as active.
    assert_eq!(lab.http_counts(), (1, 0), "ActiveConn 1");

    let mut f = from_rs(HTTP_R, syn_ack()).frame();
    assert_eq!(lab.process(INT, &mut f), Verdict::Forward { iface: EXT });
    {
        let eth = EthernetFrame::new_checked(&f[L2..]).unwrap();
        assert_eq!(eth.dst_addr(), CLIENT_MAC, "dst MAC learned from the SYN");
        assert_eq!(eth.src_addr(), EXT_MAC);
        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
        assert_eq!((ip.src_addr(), ip.dst_addr(), ip.ttl()), (VIP, CIP, 63));
        let t = TcpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!((t.src_port(), t.dst_port()), (HTTP, CPORT));
    }
    assert_checksums("SYN-ACK", &f);

    let mut f = from_client(HTTP, ack()).frame();
    assert_eq!(lab.process(EXT, &mut f), Verdict::Forward { iface: INT });
    assert_eq!(
        lab.state(Protocol::Tcp, CIP, CPORT, HTTP),
        Some(State::Established)
    );
    assert_eq!(lab.http_counts(), (1, 0), "ActiveConn 1");
}

// ---------------------------------------------------------------------------
// 1, 3: forwarded frames
// ---------------------------------------------------------------------------

/// A query payload whose datagram, once NATed to RIP1:5353, sums to 0xffff:
/// its checksum computes to 0 and must go out as 0xffff (RFC 768).
fn payload_for_zero_udp_checksum() -> Vec<u8> {
    let mut p = b"\0\0query".to_vec();
    let mut out = to_rs(DNS_R, udp_no_csum());
    out.payload = p.clone();
    let f = out.frame();
    let len = u32::try_from(f.len() - L4).unwrap();
    let s = fold(pseudo_header_v4(CIP, RIP1, 17, len) + lvsd::wire::checksum::sum(&f[L4..]));
    p[..2].copy_from_slice(&(!s).to_be_bytes());
    p
}

#[test]
fn forwarded() {
    let zero_payload = payload_for_zero_udp_checksum();
    let zero_out = Pkt {
        payload: zero_payload.clone(),
        ..to_rs(DNS_R, udp_csum())
    }
    .frame();
    assert_eq!(
        &zero_out[L4 + 6..L4 + 8],
        &[0xff, 0xff],
        "the fixture computes to 0"
    );
    let options = [0x01, 0x01, 0x01, 0x00]; // NOP NOP NOP EOL
    let query = |p: fn(u16, Transport) -> Pkt, port, l4| Pkt {
        payload: QUERY.to_vec(),
        ..p(port, l4)
    };

    run_cases(vec![
        Case {
            description: "client SYN to VIP:80 -> RS1:8080",
            setup: no_setup,
            iface: EXT,
            input: from_client(HTTP, syn()).frame(),
            verdict: Verdict::Forward { iface: INT },
            output: Output::Frame(to_rs(HTTP_R, syn()).frame()),
        },
        Case {
            description: "client SYN with Ethernet padding leaves without it",
            setup: no_setup,
            iface: EXT,
            input: padded(from_client(HTTP, syn()).frame(), 6),
            verdict: Verdict::Forward { iface: INT },
            output: Output::Frame(to_rs(HTTP_R, syn()).frame()),
        },
        Case {
            description: "client SYN with IPv4 options (IHL 6)",
            setup: no_setup,
            iface: EXT,
            input: with_ip_options(from_client(HTTP, syn()).frame(), &options),
            verdict: Verdict::Forward { iface: INT },
            output: Output::Frame(with_ip_options(to_rs(HTTP_R, syn()).frame(), &options)),
        },
        Case {
            description: "client SYN with TTL 2 leaves with TTL 1",
            setup: no_setup,
            iface: EXT,
            input: Pkt {
                ttl: 2,
                ..from_client(HTTP, syn())
            }
            .frame(),
            verdict: Verdict::Forward { iface: INT },
            output: Output::Frame(
                Pkt {
                    ttl: 1,
                    ..to_rs(HTTP_R, syn())
                }
                .frame(),
            ),
        },
        Case {
            description: "RS1 SYN-ACK -> client from VIP:80",
            setup: open_http,
            iface: INT,
            input: from_rs(HTTP_R, syn_ack()).frame(),
            verdict: Verdict::Forward { iface: EXT },
            output: Output::Frame(to_client(HTTP, syn_ack()).frame()),
        },
        Case {
            description: "UDP query with a checksum -> RS1:5353, checksum verifies",
            setup: no_setup,
            iface: EXT,
            input: query(from_client, DNS, udp_csum()).frame(),
            verdict: Verdict::Forward { iface: INT },
            output: Output::Frame(query(to_rs, DNS_R, udp_csum()).frame()),
        },
        Case {
            description: "UDP query without a checksum (0) gets a whole one, as from IPVS",
            setup: no_setup,
            iface: EXT,
            input: query(from_client, DNS, udp_no_csum()).frame(),
            verdict: Verdict::Forward { iface: INT },
            output: Output::Frame(query(to_rs, DNS_R, udp_csum()).frame()),
        },
        Case {
            description: "UDP query whose new checksum computes to 0 leaves with 0xffff",
            setup: no_setup,
            iface: EXT,
            input: Pkt {
                payload: zero_payload,
                ..from_client(DNS, udp_csum())
            }
            .frame(),
            verdict: Verdict::Forward { iface: INT },
            output: Output::Frame(zero_out),
        },
        Case {
            description: "UDP answer with a checksum -> client from VIP:53",
            setup: open_dns,
            iface: INT,
            input: query(from_rs, DNS_R, udp_csum()).frame(),
            verdict: Verdict::Forward { iface: EXT },
            output: Output::Frame(query(to_client, DNS, udp_csum()).frame()),
        },
        Case {
            description: "UDP answer without a checksum gets a whole one",
            setup: open_dns,
            iface: INT,
            input: query(from_rs, DNS_R, udp_no_csum()).frame(),
            verdict: Verdict::Forward { iface: EXT },
            output: Output::Frame(query(to_client, DNS, udp_csum()).frame()),
        },
        Case {
            description: "UDP answer with Ethernet padding leaves without it",
            setup: open_dns,
            iface: INT,
            input: padded(query(from_rs, DNS_R, udp_csum()).frame(), 3),
            verdict: Verdict::Forward { iface: EXT },
            output: Output::Frame(query(to_client, DNS, udp_csum()).frame()),
        },
        Case {
            description: "ICMP echo request to the VIP is answered back to the client",
            setup: no_setup,
            iface: EXT,
            input: Pkt {
                payload: icmp_msg(icmp::v4::ECHO_REQUEST),
                ..from_client(0, Transport::Raw(1))
            }
            .frame(),
            verdict: Verdict::Forward { iface: EXT },
            output: Output::Frame(
                Pkt {
                    ttl: 64,
                    payload: icmp_msg(icmp::v4::ECHO_REPLY),
                    ..to_client(0, Transport::Raw(1))
                }
                .frame(),
            ),
        },
    ]);
}

#[test]
fn udp_connection_counts() {
    let mut lab = Lab::new();
    open_dns(&mut lab);
    assert_eq!(lab.conns.len(), 1);
    assert_eq!(lab.state(Protocol::Udp, CIP, CPORT, DNS), Some(State::Udp));
    let d = lab.dest(udp_key(DNS), RIP1, DNS_R);
    assert_eq!((d.active.load(Relaxed), d.inactive.load(Relaxed)), (0, 1));
    // A second query of the same flow reuses the entry.
    open_dns(&mut lab);
    assert_eq!(lab.conns.len(), 1);
}

// ---------------------------------------------------------------------------
// 4: partial checksums (virtio NEEDS_CSUM)
// ---------------------------------------------------------------------------

/// Marks `f` as the kernel hands over a frame with a partial checksum:
/// NEEDS_CSUM, csum_start at the transport header (frame offset 34), the
/// offset of the checksum field, and in that field the folded,
/// non-complemented pseudo-header sum.
fn make_partial(mut f: Vec<u8>) -> Vec<u8> {
    let (src, dst, protocol, len, csum_offset) = {
        let ip = Ipv4Packet::new_checked(&f[L3..]).unwrap();
        let off: u16 = match ip.next_header() {
            IpProtocol::Tcp => 16,
            _ => 6,
        };
        let len = u32::try_from(ip.payload().len()).unwrap();
        (
            ip.src_addr(),
            ip.dst_addr(),
            u8::from(ip.next_header()),
            len,
            off,
        )
    };
    let mut v = VnetHeader::new_unchecked(&mut f[..L2]);
    v.set_flags(vnet::F_NEEDS_CSUM);
    v.set_csum_start(u16::try_from(L4 - L2).unwrap());
    v.set_csum_offset(csum_offset);
    let at = L4 + usize::from(csum_offset);
    let partial = fold(pseudo_header_v4(src, dst, protocol, len));
    f[at..at + 2].copy_from_slice(&partial.to_be_bytes());
    f
}

/// Does what the NIC or kernel does with a partial checksum: sums from
/// csum_start to the end of the packet and stores the complement.
fn finish_partial(f: &mut [u8]) {
    let v = VnetHeader::new_checked(&f[..L2]).unwrap();
    let start = L2 + usize::from(v.csum_start());
    let at = start + usize::from(v.csum_offset());
    let end = L3 + usize::from(Ipv4Packet::new_checked(&f[L3..]).unwrap().total_len());
    let c = ref_checksum(&f[start..end]);
    f[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

#[test]
fn partial_checksum_follows_the_new_addresses() {
    struct PartialCase {
        description: &'static str,
        setup: fn(&mut Lab),
        iface: u16,
        input: Pkt,
        verdict: Verdict,
        /// The output with a full checksum, once the partial one is finished.
        finished: Pkt,
    }
    let q = |p: Pkt| Pkt {
        payload: QUERY.to_vec(),
        ..p
    };
    let cases = [
        PartialCase {
            description: "TCP SYN client -> VIP, partial",
            setup: no_setup,
            iface: EXT,
            input: from_client(HTTP, syn()),
            verdict: Verdict::Forward { iface: INT },
            finished: to_rs(HTTP_R, syn()),
        },
        PartialCase {
            description: "TCP data RS -> client, partial",
            setup: open_http,
            iface: INT,
            input: Pkt {
                payload: RESPONSE.to_vec(),
                ..from_rs(HTTP_R, syn_ack())
            },
            verdict: Verdict::Forward { iface: EXT },
            finished: Pkt {
                payload: RESPONSE.to_vec(),
                ..to_client(HTTP, syn_ack())
            },
        },
        PartialCase {
            description: "UDP client -> VIP, partial",
            setup: no_setup,
            iface: EXT,
            input: q(from_client(DNS, udp_csum())),
            verdict: Verdict::Forward { iface: INT },
            finished: q(to_rs(DNS_R, udp_csum())),
        },
        PartialCase {
            description: "UDP RS -> client, partial",
            setup: open_dns,
            iface: INT,
            input: q(from_rs(DNS_R, udp_csum())),
            verdict: Verdict::Forward { iface: EXT },
            finished: q(to_client(DNS, udp_csum())),
        },
    ];
    for case in cases {
        let desc = case.description;
        let mut lab = Lab::new();
        (case.setup)(&mut lab);
        let input = make_partial(case.input.frame());
        let mut f = input.clone();
        assert_eq!(lab.process(case.iface, &mut f), case.verdict, "{desc}");

        // The field is the pseudo-header sum over the NEW addresses.
        let (src, dst) = (*case.finished.src.ip(), *case.finished.dst.ip());
        let (protocol, off) = match case.finished.l4 {
            Transport::Tcp { .. } => (6, 16),
            _ => (17, 6),
        };
        let len = u32::try_from(case.finished.l4_len()).unwrap();
        let want = fold(pseudo_header_v4(src, dst, protocol, len));
        let at = L4 + off;
        let got = u16::from_be_bytes([f[at], f[at + 1]]);
        assert_eq!(
            got, want,
            "{desc}: partial field {got:#06x}, want {want:#06x}"
        );
        // The virtio header still asks for the checksum to be finished.
        assert_eq!(&f[..L2], &input[..L2], "{desc}: vnet header kept");
        // Finished as the device would, it is the frame built from scratch.
        finish_partial(&mut f);
        let mut expect = case.finished.frame();
        expect[..L2].copy_from_slice(&input[..L2]);
        assert_frame_eq(desc, &f, &expect);
        assert_checksums(desc, &f);
    }
}

/// The MSS of the GSO super-frames below, and their TCP payload: 20 kB,
/// about 14 segments' worth, far above every interface's MTU.
const GSO_MSS: u16 = 1448;
const GSO_PAYLOAD: usize = 20_000;

/// Marks `f` (a TCP/IPv4 frame, its checksum complete) as the kernel hands
/// over a TCP super-frame with offloads on: a partial checksum as
/// [`make_partial`], plus `gso_type` TCPV4, `gso_size` [`GSO_MSS`] and
/// `hdr_len` the Ethernet, IPv4 and TCP headers; DF set, as TCP sends.
fn make_gso(f: Vec<u8>) -> Vec<u8> {
    let mut f = make_partial(edit_ip(f, |ip| ip.set_dont_frag(true)));
    let mut v = VnetHeader::new_unchecked(&mut f[..L2]);
    v.set_gso_type(vnet::GSO_TCPV4);
    v.set_gso_size(GSO_MSS);
    v.set_hdr_len(u16::try_from(L4 + tcp::HEADER_LEN - L2).unwrap());
    f
}

/// `p` carrying the super-frames' payload (bytes that vary, so a checksum
/// or copy slip shows).
fn with_gso_payload(p: Pkt) -> Pkt {
    Pkt {
        payload: (0..GSO_PAYLOAD)
            .map(|i| u8::try_from(i % 251).unwrap())
            .collect(),
        ..p
    }
}

/// GSO super-frames (offloads left on: the kernel hands a packet socket a
/// TCP segment of up to 64 kB with a partial checksum, and segments it on
/// the way out). NAT rewrites one once, both ways: byte for byte the frame
/// built with the new addresses, the virtio-net header kept (so the kernel
/// still segments and finishes the checksum), the partial checksum over
/// the new addresses. The MTU check does not apply to a super-frame (its
/// segments fit), also where the next link is smaller than the frame and
/// DF is set. A tunnel cannot carry one: dropped as too_big, untouched.
#[test]
fn gso_super_frames() {
    let request = tcp_l4(flag::PSH | flag::ACK, 1001, 5001);
    let reply = tcp_l4(
        flag::PSH | flag::ACK,
        5001,
        1001 + u32::try_from(GSO_PAYLOAD).unwrap(),
    );
    struct GsoCase {
        description: &'static str,
        /// The MTU of the interface the frame leaves by.
        out_mtu: u32,
        iface: u16,
        input: Pkt,
        verdict: Verdict,
        want: Pkt,
    }
    let mut cases = Vec::new();
    for out_mtu in [1500, 1000] {
        cases.push(GsoCase {
            description: "NAT super-frame client -> VIP",
            out_mtu,
            iface: EXT,
            input: with_gso_payload(from_client(HTTP, request.clone())),
            verdict: Verdict::Forward { iface: INT },
            want: with_gso_payload(to_rs(HTTP_R, request.clone())),
        });
        cases.push(GsoCase {
            description: "NAT super-frame RS -> client",
            out_mtu,
            iface: INT,
            input: with_gso_payload(from_rs(HTTP_R, reply.clone())),
            verdict: Verdict::Forward { iface: EXT },
            want: with_gso_payload(to_client(HTTP, reply.clone())),
        });
    }
    for case in cases {
        let desc = format!("{} (next link MTU {})", case.description, case.out_mtu);
        let mut lab = Lab::new();
        open_http(&mut lab);
        let out_slot = match case.verdict {
            Verdict::Forward { iface } => usize::from(iface),
            _ => unreachable!(),
        };
        lab.ifaces.list[out_slot].mtu = case.out_mtu;
        let input = make_gso(case.input.frame());
        assert!(input.len() - L2 > 10_000, "{desc}: a super-frame");
        let mut f = input.clone();
        assert_eq!(lab.process(case.iface, &mut f), case.verdict, "{desc}");
        assert!(lab.inside, "{desc}: frame left its buffer");
        // Byte for byte: the frame built with the new addresses, marked as
        // the kernel marks a super-frame (its partial checksum computed
        // from scratch over the new addresses), the vnet header as it came.
        let want = make_gso(case.want.frame());
        assert_eq!(&want[..L2], &input[..L2], "{desc}: same vnet header");
        assert_frame_eq(&desc, &f, &want);
        // Finished as the kernel would, every checksum is right.
        finish_partial(&mut f);
        assert_checksums(&desc, &f);
        // Counted once, with its whole length.
        let stats = lab.service_stats(tcp_key(HTTP));
        let len = (20 + tcp::HEADER_LEN + GSO_PAYLOAD) as u64;
        let syn_len = (20 + tcp::HEADER_LEN) as u64;
        let counted = if case.iface == EXT {
            (stats.inpkts, stats.inbytes)
        } else {
            (stats.outpkts, stats.outbytes)
        };
        let want_counted = if case.iface == EXT {
            (2, syn_len + len)
        } else {
            (1, len)
        };
        assert_eq!(counted, want_counted, "{desc}: (packets, bytes) counted");
    }

    // A tunnel: the kernel cannot segment a super-frame inside IP-in-IP
    // written to a packet socket.
    let mut lab = busy_lab();
    let mut f = from_client(TUN_PORT, syn()).frame();
    assert_eq!(lab.process(EXT, &mut f), Verdict::Forward { iface: INT });
    let input = make_gso(with_gso_payload(from_client(TUN_PORT, request.clone())).frame());
    let mut f = input.clone();
    assert_eq!(
        lab.process(EXT, &mut f),
        Verdict::Drop(DropReason::TooBig),
        "TUN super-frame"
    );
    assert_frame_eq("TUN super-frame", &f, &input);
}

/// A frame from an AF_XDP socket has no virtio-net header, only room for
/// one: `process_bare` must not read it (here it holds bytes that would
/// say "partial checksum, GSO super-frame"), must forward exactly what
/// `process` makes of the frame with an all-zero header, must leave the
/// room unwritten on the NAT path (the point: no store into that cache
/// line), and must clear it where the frame then needs a header (a tunnel,
/// whose encapsulation moves and reads it).
#[test]
fn bare_frames_leave_the_header_room_alone() {
    let q = |p: Pkt| Pkt {
        payload: QUERY.to_vec(),
        ..p
    };
    // (description, setup, interface, frame, whether it is tunnelled)
    type Case = (&'static str, fn(&mut Lab), u16, Vec<u8>, bool);
    let cases: [Case; 5] = [
        (
            "TCP SYN client -> VIP",
            no_setup,
            EXT,
            from_client(HTTP, syn()).frame(),
            false,
        ),
        (
            "UDP client -> VIP",
            no_setup,
            EXT,
            q(from_client(DNS, udp_csum())).frame(),
            false,
        ),
        (
            "TCP data RS -> client",
            open_http,
            INT,
            Pkt {
                payload: RESPONSE.to_vec(),
                ..from_rs(HTTP_R, syn_ack())
            }
            .frame(),
            false,
        ),
        (
            "UDP RS -> client",
            open_dns,
            INT,
            q(from_rs(DNS_R, udp_csum())).frame(),
            false,
        ),
        (
            "TCP SYN to a tunnelled service",
            |lab| *lab = busy_lab(),
            EXT,
            from_client(TUN_PORT, syn()).frame(),
            true,
        ),
    ];
    for (desc, setup, iface, frame, tunnelled) in cases {
        assert_eq!(&frame[..L2], &[0; L2], "{desc}: built with a zero header");
        let mut want = frame.clone();
        let mut lab = Lab::new();
        setup(&mut lab);
        let verdict = lab.process(iface, &mut want);
        assert!(
            matches!(verdict, Verdict::Forward { .. }),
            "{desc}: {verdict:?}"
        );

        let mut got = frame;
        got[..L2].fill(0xff);
        let mut lab = Lab::new();
        setup(&mut lab);
        assert_eq!(lab.process_bare(iface, &mut got), verdict, "{desc}");
        assert_frame_eq(desc, &got[L2..], &want[L2..]);
        assert_checksums(desc, &got);
        let room = if tunnelled { [0; L2] } else { [0xff; L2] };
        assert_eq!(&got[..L2], &room, "{desc}: the header room");
    }
}

// ---------------------------------------------------------------------------
// 5: drops, one row per reason
// ---------------------------------------------------------------------------

#[test]
fn drops() {
    let drop = Verdict::Drop;
    let syn_frame = || from_client(HTTP, syn()).frame();
    let cases = vec![
        Case {
            description: "frame shorter than the virtio-net header",
            setup: no_setup,
            iface: EXT,
            input: vec![0u8; vnet::HEADER_LEN - 1],
            verdict: drop(DropReason::Truncated),
            output: Output::Unchanged,
        },
        Case {
            description: "empty frame",
            setup: no_setup,
            iface: EXT,
            input: Vec::new(),
            verdict: drop(DropReason::Truncated),
            output: Output::Unchanged,
        },
        Case {
            description: "Ethernet header cut at 13 bytes",
            setup: no_setup,
            iface: EXT,
            input: syn_frame()[..L2 + 13].to_vec(),
            verdict: drop(DropReason::Truncated),
            output: Output::Unchanged,
        },
        Case {
            description: "IPv4 header cut at 19 bytes",
            setup: no_setup,
            iface: EXT,
            input: syn_frame()[..L3 + 19].to_vec(),
            verdict: drop(DropReason::Truncated),
            output: Output::Unchanged,
        },
        Case {
            description: "IPv4 with IHL 4",
            setup: no_setup,
            iface: EXT,
            input: {
                let mut f = syn_frame();
                f[L3] = 0x44;
                f
            },
            verdict: drop(DropReason::Malformed),
            output: Output::Unchanged,
        },
        Case {
            description: "IP version 6 in an IPv4 EtherType",
            setup: no_setup,
            iface: EXT,
            input: {
                let mut f = syn_frame();
                f[L3] = 0x65;
                f
            },
            verdict: drop(DropReason::Malformed),
            output: Output::Unchanged,
        },
        Case {
            description: "IPv4 total length 20 bytes beyond the buffer",
            setup: no_setup,
            iface: EXT,
            input: edit_ip(syn_frame(), |ip| {
                let t = ip.total_len();
                ip.set_total_len(t + 20);
            }),
            verdict: drop(DropReason::Truncated),
            output: Output::Unchanged,
        },
        Case {
            description: "IPv4 total length below the header length",
            setup: no_setup,
            iface: EXT,
            input: edit_ip(syn_frame(), |ip| ip.set_total_len(19)),
            verdict: drop(DropReason::Malformed),
            output: Output::Unchanged,
        },
        Case {
            description: "bad IPv4 header checksum to the VIP",
            setup: no_setup,
            iface: EXT,
            input: {
                let mut f = syn_frame();
                f[L3 + 10] ^= 0x5a;
                f
            },
            verdict: drop(DropReason::BadChecksum),
            output: Output::Unchanged,
        },
        Case {
            description: "first fragment (MF) to the VIP",
            setup: no_setup,
            iface: EXT,
            input: edit_ip(syn_frame(), |ip| ip.set_more_frags(true)),
            verdict: drop(DropReason::Fragment),
            output: Output::Unchanged,
        },
        Case {
            description: "last fragment (offset 1480) to the VIP",
            setup: no_setup,
            iface: EXT,
            input: edit_ip(syn_frame(), |ip| ip.set_frag_offset(1480)),
            verdict: drop(DropReason::Fragment),
            output: Output::Unchanged,
        },
        time_exceeded(
            "SYN with TTL 1 to the VIP",
            no_setup,
            EXT,
            Pkt {
                ttl: 1,
                ..from_client(HTTP, syn())
            },
            VIP,
        ),
        time_exceeded(
            "SYN with TTL 0 to the VIP",
            no_setup,
            EXT,
            Pkt {
                ttl: 0,
                ..from_client(HTTP, syn())
            },
            VIP,
        ),
        time_exceeded(
            "ACK with TTL 1 on an existing connection",
            open_http,
            EXT,
            Pkt {
                ttl: 1,
                ..from_client(HTTP, ack())
            },
            VIP,
        ),
        time_exceeded(
            "RS reply with TTL 1",
            open_http,
            INT,
            Pkt {
                ttl: 1,
                ..from_rs(HTTP_R, syn_ack())
            },
            INT_IP,
        ),
        Case {
            description: "GRE to the VIP",
            setup: no_setup,
            iface: EXT,
            input: Pkt {
                payload: vec![0, 0, 0x08, 0x00],
                ..from_client(0, Transport::Raw(47))
            }
            .frame(),
            verdict: drop(DropReason::UnsupportedProtocol),
            output: Output::Unchanged,
        },
        Case {
            description: "ICMP timestamp request to the VIP",
            setup: no_setup,
            iface: EXT,
            input: Pkt {
                payload: icmp_msg(13),
                ..from_client(0, Transport::Raw(1))
            }
            .frame(),
            verdict: drop(DropReason::UnsupportedProtocol),
            output: Output::Unchanged,
        },
        Case {
            description: "ICMP echo request to the VIP with a bad ICMP checksum",
            setup: no_setup,
            iface: EXT,
            input: Pkt {
                payload: {
                    let mut m = icmp_msg(icmp::v4::ECHO_REQUEST);
                    m[2] ^= 0x10;
                    m
                },
                ..from_client(0, Transport::Raw(1))
            }
            .frame(),
            verdict: drop(DropReason::BadChecksum),
            output: Output::Unchanged,
        },
        Case {
            description: "TCP header cut short inside the IP packet, to the VIP",
            setup: no_setup,
            iface: EXT,
            input: Pkt {
                payload: syn_frame()[L4..L4 + 12].to_vec(),
                ..from_client(0, Transport::Raw(6))
            }
            .frame(),
            verdict: drop(DropReason::Malformed),
            output: Output::Unchanged,
        },
        Case {
            description: "UDP length field 4 to the VIP",
            setup: no_setup,
            iface: EXT,
            input: {
                let mut f = Pkt {
                    payload: QUERY.to_vec(),
                    ..from_client(DNS, udp_no_csum())
                }
                .frame();
                f[L4 + 4..L4 + 6].copy_from_slice(&4u16.to_be_bytes());
                f
            },
            verdict: drop(DropReason::Malformed),
            output: Output::Unchanged,
        },
        Case {
            description:
                "ACK to VIP:80 with no connection: a reset from the sequence it acknowledges",
            setup: no_setup,
            iface: EXT,
            input: from_client(HTTP, ack()).frame(),
            verdict: Verdict::Refuse {
                iface: EXT,
                why: DropReason::NoConn,
            },
            output: Output::Frame(reset_to_client(flag::RST, 5001, 0)),
        },
        Case {
            description: "SYN-ACK to VIP:80 with no connection: a reset",
            setup: no_setup,
            iface: EXT,
            input: from_client(HTTP, syn_ack()).frame(),
            verdict: Verdict::Refuse {
                iface: EXT,
                why: DropReason::NoConn,
            },
            output: Output::Frame(reset_to_client(flag::RST, 1001, 0)),
        },
        Case {
            description: "FIN without ACK and no connection: a reset acknowledging it",
            setup: no_setup,
            iface: EXT,
            input: Pkt {
                payload: b"bye".to_vec(),
                ..from_client(HTTP, tcp_l4(flag::FIN, 1001, 0))
            }
            .frame(),
            verdict: Verdict::Refuse {
                iface: EXT,
                why: DropReason::NoConn,
            },
            output: Output::Frame(reset_to_client(flag::RST | flag::ACK, 0, 1005)),
        },
        Case {
            description: "RST to VIP:80 with no connection: dropped, not answered",
            setup: no_setup,
            iface: EXT,
            input: from_client(HTTP, tcp_l4(flag::RST, 1001, 0)).frame(),
            verdict: drop(DropReason::NoConn),
            output: Output::Unchanged,
        },
        Case {
            description: "every destination has weight 0: port unreachable from the VIP",
            setup: |lab| {
                lab.apply(&Op::EditDest {
                    service: tcp_key(HTTP),
                    dest: nat_dest(RIP1, HTTP_R, 0),
                })
            },
            iface: EXT,
            input: syn_frame(),
            verdict: Verdict::Refuse {
                iface: EXT,
                why: DropReason::NoDest,
            },
            output: Output::Frame(refused(&syn_frame(), VIP, (3, 3))),
        },
        Case {
            description: "no neighbour entry for the real server",
            setup: |lab| {
                lab.neigh.map.remove(&IpAddr::V4(RIP1));
            },
            iface: EXT,
            input: syn_frame(),
            verdict: drop(DropReason::NoNeighbor),
            output: Output::Unchanged,
        },
        Case {
            description: "connection table full (capacity 1) for a second client",
            setup: |lab| {
                lab.conns = ConnTable::new(1, lab.now);
                open_http(lab);
            },
            iface: EXT,
            input: Pkt {
                src_mac: CLIENT2_MAC,
                src: sock(CIP2, CPORT),
                ..from_client(HTTP, syn())
            }
            .frame(),
            verdict: drop(DropReason::ConnTableFull),
            output: Output::Unchanged,
        },
        Case {
            description: "RS1:8080 reply with no connection",
            setup: no_setup,
            iface: INT,
            input: from_rs(HTTP_R, syn_ack()).frame(),
            verdict: drop(DropReason::NoConn),
            output: Output::Unchanged,
        },
        Case {
            description: "RS1:5353 UDP reply with no connection",
            setup: no_setup,
            iface: INT,
            input: from_rs(DNS_R, udp_csum()).frame(),
            verdict: drop(DropReason::NoConn),
            output: Output::Unchanged,
        },
    ];
    // The frame was rewritten before the missing slot was noticed, so only
    // the verdict is checked here.
    let mut lab = Lab::new();
    lab.neigh.map.insert(
        IpAddr::V4(RIP1),
        Neighbor {
            iface: 9,
            mac: RS1_MAC,
        },
    );
    let mut f = syn_frame();
    assert_eq!(
        lab.process(EXT, &mut f),
        drop(DropReason::NoNeighbor),
        "neighbour on an interface slot that does not exist"
    );
    run_cases(cases);

    // Side effects: the refused second client left the table as it was.
    let mut lab = Lab::new();
    lab.conns = ConnTable::new(1, lab.now);
    open_http(&mut lab);
    let mut f = Pkt {
        src: sock(CIP2, CPORT),
        ..from_client(HTTP, syn())
    }
    .frame();
    assert_eq!(lab.process(EXT, &mut f), drop(DropReason::ConnTableFull));
    assert_eq!(lab.conns.len(), 1);
    assert_eq!(lab.http_counts(), (1, 0));
    // Dropped SYNs create nothing.
    let mut lab = Lab::new();
    let mut f = Pkt {
        ttl: 1,
        ..from_client(HTTP, syn())
    }
    .frame();
    lab.process(EXT, &mut f);
    assert!(lab.conns.is_empty());
    assert_eq!(lab.http_counts(), (0, 0));
}

// ---------------------------------------------------------------------------
// 6: frames that are the kernel's
// ---------------------------------------------------------------------------

#[test]
fn passes() {
    let pass = |description, iface, input| Case {
        description,
        setup: no_setup,
        iface,
        input,
        verdict: Verdict::Pass,
        output: Output::Unchanged,
    };
    let syn_to = |dst_mac, dst: Ipv4Addr, port| {
        Pkt {
            dst_mac,
            dst: sock(dst, port),
            ..from_client(HTTP, syn())
        }
        .frame()
    };
    run_cases(vec![
        pass(
            "SYN to VIP:80 for another unicast MAC",
            EXT,
            syn_to(OTHER_MAC, VIP, HTTP),
        ),
        pass(
            "SYN to VIP:80 for a multicast MAC",
            EXT,
            syn_to(MacAddr([0x01, 0x00, 0x5e, 0x00, 0x00, 0x01]), VIP, HTTP),
        ),
        pass(
            "TCP to the local address 198.18.0.1",
            EXT,
            syn_to(EXT_MAC, EXT_IP, 22),
        ),
        pass(
            "TCP to the local address 198.18.1.1 on int0",
            INT,
            syn_to(INT_MAC, INT_IP, 22),
        ),
        pass(
            "TCP to VIP:22, not a service",
            EXT,
            syn_to(EXT_MAC, VIP, 22),
        ),
        pass(
            "UDP to VIP:80, a TCP-only port",
            EXT,
            Pkt {
                payload: QUERY.to_vec(),
                ..from_client(HTTP, udp_csum())
            }
            .frame(),
        ),
        pass(
            "ICMP to a local address",
            EXT,
            Pkt {
                dst: sock(EXT_IP, 0),
                payload: icmp_msg(icmp::v4::ECHO_REQUEST),
                ..from_client(0, Transport::Raw(1))
            }
            .frame(),
        ),
        pass(
            "routed TCP between two hosts that are not lvsd's",
            INT,
            Pkt {
                dst_mac: INT_MAC,
                src_mac: RS2_MAC,
                src: sock(Ipv4Addr::new(198, 18, 1, 50), 1234),
                dst: sock(CIP, 5555),
                ..from_client(HTTP, syn())
            }
            .frame(),
        ),
        pass(
            "RS1 from a port that is no destination (ssh)",
            INT,
            Pkt {
                src: sock(RIP1, 22),
                ..from_rs(HTTP_R, syn_ack())
            }
            .frame(),
        ),
        pass(
            "IPv6",
            EXT,
            eth_frame(EXT_MAC, CLIENT_MAC, EtherType::Ipv6, &ipv6_bytes()),
        ),
        pass(
            "unknown EtherType (LLDP 0x88cc)",
            EXT,
            eth_frame(EXT_MAC, CLIENT_MAC, EtherType::Unknown(0x88cc), &[0u8; 46]),
        ),
        pass(
            "VLAN-tagged frame (0x8100)",
            EXT,
            eth_frame(EXT_MAC, CLIENT_MAC, EtherType::Unknown(0x8100), &[0u8; 46]),
        ),
        pass(
            "received on an interface slot lvsd does not know",
            7,
            from_client(HTTP, syn()).frame(),
        ),
    ]);
}

// ---------------------------------------------------------------------------
// 7: ARP
// ---------------------------------------------------------------------------

#[test]
fn arp() {
    let reply = arp_frame(
        CLIENT_MAC,
        EXT_MAC,
        ArpRepr {
            operation: ArpOperation::Reply,
            source_hardware_addr: EXT_MAC,
            source_protocol_addr: VIP,
            target_hardware_addr: CLIENT_MAC,
            target_protocol_addr: CIP,
        },
    );
    let request_from_vnet = {
        let mut f = arp_frame(MacAddr::BROADCAST, CLIENT_MAC, arp_request(VIP));
        VnetHeader::new_unchecked(&mut f[..L2]).set_flags(vnet::F_DATA_VALID);
        f
    };
    let pass = |description, input| Case {
        description,
        setup: no_setup,
        iface: EXT,
        input,
        verdict: Verdict::Pass,
        output: Output::Unchanged,
    };
    run_cases(vec![
        Case {
            description: "broadcast request for the VIP is answered on ext0",
            setup: no_setup,
            iface: EXT,
            input: arp_frame(MacAddr::BROADCAST, CLIENT_MAC, arp_request(VIP)),
            verdict: Verdict::Forward { iface: EXT },
            output: Output::Frame(reply.clone()),
        },
        Case {
            description: "padded (60-byte) request for the VIP keeps its padding",
            setup: no_setup,
            iface: EXT,
            input: padded(
                arp_frame(MacAddr::BROADCAST, CLIENT_MAC, arp_request(VIP)),
                18,
            ),
            verdict: Verdict::Forward { iface: EXT },
            output: Output::Frame(padded(reply.clone(), 18)),
        },
        Case {
            description: "unicast refresh request for the VIP",
            setup: no_setup,
            iface: EXT,
            input: arp_frame(EXT_MAC, CLIENT_MAC, arp_request(VIP)),
            verdict: Verdict::Forward { iface: EXT },
            output: Output::Frame(reply.clone()),
        },
        Case {
            description: "the reply goes out with a cleared virtio-net header",
            setup: no_setup,
            iface: EXT,
            input: request_from_vnet,
            verdict: Verdict::Forward { iface: EXT },
            output: Output::Frame(reply),
        },
        pass(
            "request for 198.18.0.1, the kernel's",
            arp_frame(MacAddr::BROADCAST, CLIENT_MAC, arp_request(EXT_IP)),
        ),
        pass(
            "request for an address that is nobody's here",
            arp_frame(
                MacAddr::BROADCAST,
                CLIENT_MAC,
                arp_request(Ipv4Addr::new(198, 18, 0, 77)),
            ),
        ),
        pass(
            "a reply",
            arp_frame(
                EXT_MAC,
                CLIENT_MAC,
                ArpRepr {
                    operation: ArpOperation::Reply,
                    ..arp_request(VIP)
                },
            ),
        ),
        pass(
            "request for the VIP to another unicast MAC",
            arp_frame(OTHER_MAC, CLIENT_MAC, arp_request(VIP)),
        ),
        pass(
            "truncated ARP (27 bytes)",
            arp_frame(MacAddr::BROADCAST, CLIENT_MAC, arp_request(VIP))[..L3 + 27].to_vec(),
        ),
    ]);

    // Field by field, as the brief lists them.
    let mut lab = Lab::new();
    let mut f = arp_frame(MacAddr::BROADCAST, CLIENT_MAC, arp_request(VIP));
    assert_eq!(lab.process(EXT, &mut f), Verdict::Forward { iface: EXT });
    let eth = EthernetFrame::new_checked(&f[L2..]).unwrap();
    assert_eq!((eth.dst_addr(), eth.src_addr()), (CLIENT_MAC, EXT_MAC));
    let a = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).unwrap()).unwrap();
    assert_eq!(a.operation, ArpOperation::Reply);
    assert_eq!(
        (a.source_hardware_addr, a.source_protocol_addr),
        (EXT_MAC, VIP)
    );
    assert_eq!(
        (a.target_hardware_addr, a.target_protocol_addr),
        (CLIENT_MAC, CIP)
    );
}

// ---------------------------------------------------------------------------
// Beyond the brief's NAT list: ICMP errors of NAT connections, the other
// forwarding methods, IPv6 (the lab of `busy_lab`)
// ---------------------------------------------------------------------------

const ROUTER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 254);
/// Services of the other methods: direct routing, tunneling, a local node.
const DR_PORT: u16 = 81;
const TUN_PORT: u16 = 82;
const LOCAL_PORT: u16 = 83;

/// The reset VIP:80 sends the client (window 0, no options).
fn reset_to_client(flags: u8, seq: u32, ack: u32) -> Vec<u8> {
    let mut f = Pkt {
        dst_mac: CLIENT_MAC,
        src_mac: EXT_MAC,
        src: sock(VIP, HTTP),
        dst: sock(CIP, CPORT),
        ttl: 64,
        l4: tcp_l4(flags, seq, ack),
        payload: Vec::new(),
    }
    .frame();
    let mut t = TcpPacket::new_unchecked(&mut f[L4..]);
    t.set_window_len(0);
    t.fill_checksum(VIP, CIP);
    f
}

/// The ICMP error (`kind`: type and code) from `from` that answers
/// `sent`, a frame received on EXT from the client or on INT from RS1, as
/// it leaves back towards the sender: the whole packet quoted.
fn refused(sent: &[u8], from: Ipv4Addr, kind: (u8, u8)) -> Vec<u8> {
    let eth = EthernetFrame::new_checked(&sent[L2..]).unwrap();
    let ip = Ipv4Packet::new_checked(&sent[L3..]).unwrap();
    let len = usize::from(ip.total_len());
    Pkt {
        dst_mac: eth.src_addr(),
        src_mac: eth.dst_addr(),
        src: sock(from, 0),
        dst: sock(ip.src_addr(), 0),
        ttl: 64,
        l4: Transport::Raw(1),
        payload: icmp_error_msg(kind.0, kind.1, [0; 4], &sent[L3..L3 + len]),
    }
    .frame()
}

/// An ICMP error message (type `t`, code `code`, the four bytes after the
/// checksum `rest`) quoting `body`, checksum included.
fn icmp_error_msg(t: u8, code: u8, rest: [u8; 4], body: &[u8]) -> Vec<u8> {
    let mut m = vec![t, code, 0, 0];
    m.extend_from_slice(&rest);
    m.extend_from_slice(body);
    let c = ref_checksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// An IPv6 packet in an Ethernet frame after a virtio-net header of zeros.
fn v6_frame(
    macs: (MacAddr, MacAddr),
    src: Ipv6Addr,
    dst: Ipv6Addr,
    next: u8,
    hop: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut ip = vec![0x60, 0, 0, 0];
    ip.extend_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
    ip.extend_from_slice(&[next, hop]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    ip.extend_from_slice(payload);
    eth_frame(macs.0, macs.1, EtherType::Ipv6, &ip)
}

/// A TCP segment without payload, its checksum computed for `src` -> `dst`.
fn tcp_segment(src: SocketAddr, dst: SocketAddr, flags: u8) -> Vec<u8> {
    let mut seg = vec![0u8; tcp::HEADER_LEN];
    tcp::emit_segment(&mut seg, src.port(), dst.port(), 1000, 0, flags, 64240).unwrap();
    let c = ref_l4_checksum(src.ip(), dst.ip(), 6, &seg);
    seg[16..18].copy_from_slice(&c.to_be_bytes());
    seg
}

/// An ICMPv6 message of type `t` and `body` (after the 4-byte checksum
/// word) from `src` to `dst`, checksum included.
fn icmp6_msg(src: Ipv6Addr, dst: Ipv6Addr, t: u8, body: &[u8]) -> Vec<u8> {
    icmp6_coded(src, dst, (t, 0), body)
}

/// [`icmp6_msg`] with a code.
fn icmp6_coded(src: Ipv6Addr, dst: Ipv6Addr, (t, code): (u8, u8), body: &[u8]) -> Vec<u8> {
    let mut m = vec![t, code, 0, 0];
    m.extend_from_slice(body);
    let c = ref_l4_checksum(src, dst, 58, &m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// A neighbour solicitation from the client for `target`, to its
/// solicited-node multicast address, with the source link-layer option.
fn neighbor_solicit(target: Ipv6Addr) -> Vec<u8> {
    let t = target.octets();
    let group = Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, t[13], t[14], t[15],
    ]);
    let mut body = vec![0u8; 4];
    body.extend_from_slice(&t);
    body.extend_from_slice(&[icmp::v6::OPT_SOURCE_LL, 1]);
    body.extend_from_slice(&CLIENT_MAC.0);
    let msg = icmp6_msg(CIP6, group, icmp::v6::NEIGHBOR_SOLICIT, &body);
    let mac = MacAddr([0x33, 0x33, 0xff, t[13], t[14], t[15]]);
    v6_frame((mac, CLIENT_MAC), CIP6, group, 58, 255, &msg)
}

/// The lab plus services of every method and an IPv6 NAT service, with a
/// connection open in each NAT service.
fn busy_lab() -> Lab {
    let mut lab = Lab::new();
    let dest = |rip: Ipv4Addr, port, method| DestSpec {
        addr: SocketAddr::from((rip, port)),
        weight: 1,
        method,
        u_threshold: 0,
        l_threshold: 0,
    };
    let v6_key = ServiceKey {
        protocol: Protocol::Tcp,
        addr: SocketAddr::from((VIP6, HTTP)),
    };
    lab.apply(&Op::Batch {
        ops: vec![
            add_service(tcp_key(DR_PORT)),
            Op::AddDest {
                service: tcp_key(DR_PORT),
                dest: dest(RIP2, DR_PORT, Method::Dr),
            },
            add_service(tcp_key(TUN_PORT)),
            Op::AddDest {
                service: tcp_key(TUN_PORT),
                dest: dest(RIP2, TUN_PORT, Method::Tun),
            },
            add_service(tcp_key(LOCAL_PORT)),
            Op::AddDest {
                service: tcp_key(LOCAL_PORT),
                dest: dest(INT_IP, LOCAL_PORT, Method::Nat),
            },
            add_service(v6_key),
            Op::AddDest {
                service: v6_key,
                dest: DestSpec {
                    addr: SocketAddr::from((RIP6, HTTP_R)),
                    ..dest(RIP1, HTTP_R, Method::Nat)
                },
            },
        ],
    });
    lab.neigh.map.insert(
        IpAddr::V6(RIP6),
        Neighbor {
            iface: INT,
            mac: RS1_MAC,
        },
    );
    open_http(&mut lab);
    open_dns(&mut lab);
    let mut f = v6_syn();
    assert_eq!(lab.process(EXT, &mut f), Verdict::Forward { iface: INT });
    lab
}

fn v6_syn() -> Vec<u8> {
    let (c, v) = (
        SocketAddr::from((CIP6, CPORT)),
        SocketAddr::from((VIP6, HTTP)),
    );
    v6_frame(
        (EXT_MAC, CLIENT_MAC),
        CIP6,
        VIP6,
        6,
        64,
        &tcp_segment(c, v, flag::SYN),
    )
}

/// The IP packet of a frame.
fn l3(f: &[u8]) -> &[u8] {
    &f[L3..]
}

#[test]
fn icmp_errors_and_other_methods() {
    // RS1 says "port unreachable" about the query lvsd sent it.
    let query_to_rs = Pkt {
        payload: QUERY.to_vec(),
        ..to_rs(DNS_R, udp_csum())
    }
    .frame();
    let quoted = &l3(&query_to_rs)[..28];
    // Translated, the quote is the client's own query (TTL as RS1 got it),
    // but for the UDP checksum, which neither IPVS nor lvsd touch.
    let mut quoted_back = Pkt {
        ttl: 63,
        payload: QUERY.to_vec(),
        ..from_client(DNS, udp_csum())
    }
    .frame()[L3..L3 + 28]
        .to_vec();
    quoted_back[26..28].copy_from_slice(&quoted[26..28]);

    // A router says "fragmentation needed" about lvsd's SYN-ACK to the
    // client; RS1 must hear it about its own.
    let syn_ack_out = to_client(HTTP, syn_ack()).frame();
    let frag_needed = [0, 0, 0x05, 0x00];
    let syn_ack_in = Pkt {
        ttl: 63,
        ..from_rs(HTTP_R, syn_ack())
    }
    .frame();

    // A SYN that does not fit the tunnel (1510 bytes + 20 > 1500), DF set.
    let big_syn = |df| {
        edit_ip(
            Pkt {
                payload: vec![0x5a; 1470],
                ..from_client(TUN_PORT, syn())
            }
            .frame(),
            |ip| ip.set_dont_frag(df),
        )
    };
    let big = big_syn(true);

    // A SYN through the tunnel: the outer header in front, the inner packet
    // with its TTL decremented.
    let tun_out = {
        let inner = Pkt {
            ttl: 63,
            ..from_client(TUN_PORT, syn())
        }
        .frame();
        let mut outer = vec![0u8; 20];
        Ipv4Repr {
            src_addr: INT_IP,
            dst_addr: RIP2,
            next_header: IpProtocol::IpIp,
            payload_len: inner.len() - L3,
            // The inner TTL, decremented (as IPVS).
            ttl: 63,
        }
        .emit(&mut Ipv4Packet::new_unchecked(&mut outer[..]));
        outer.extend_from_slice(l3(&inner));
        eth_frame(RS2_MAC, INT_MAC, EtherType::Ipv4, &outer)
    };

    let (c6, v6, r6) = (
        SocketAddr::from((CIP6, CPORT)),
        SocketAddr::from((VIP6, HTTP)),
        SocketAddr::from((RIP6, HTTP_R)),
    );
    let na = {
        let mut body = vec![0x60, 0, 0, 0];
        body.extend_from_slice(&VIP6.octets());
        body.extend_from_slice(&[icmp::v6::OPT_TARGET_LL, 1]);
        body.extend_from_slice(&EXT_MAC.0);
        let msg = icmp6_msg(VIP6, CIP6, icmp::v6::NEIGHBOR_ADVERT, &body);
        v6_frame((CLIENT_MAC, EXT_MAC), VIP6, CIP6, 58, 255, &msg)
    };
    let ping6 = |src, dst, t| {
        let msg = icmp6_msg(src, dst, t, &[0, 1, 0, 1, b'p', b'i', b'n', b'g']);
        v6_frame((EXT_MAC, CLIENT_MAC), src, dst, 58, 64, &msg)
    };
    let pong6 = {
        let msg = icmp6_msg(
            VIP6,
            CIP6,
            icmp::v6::ECHO_REPLY,
            &[0, 1, 0, 1, b'p', b'i', b'n', b'g'],
        );
        v6_frame((CLIENT_MAC, EXT_MAC), VIP6, CIP6, 58, 64, &msg)
    };

    let cases = vec![
        Case {
            description: "RS1's port unreachable goes to the client, from the VIP",
            setup: open_dns,
            iface: INT,
            input: Pkt {
                payload: icmp_error_msg(3, 3, [0; 4], quoted),
                ..from_rs(0, Transport::Raw(1))
            }
            .frame(),
            verdict: Verdict::Forward { iface: EXT },
            output: Output::Frame(
                Pkt {
                    payload: icmp_error_msg(3, 3, [0; 4], &quoted_back),
                    ..to_client(0, Transport::Raw(1))
                }
                .frame(),
            ),
        },
        Case {
            description: "a router's fragmentation needed to the VIP goes to RS1",
            setup: open_http,
            iface: EXT,
            input: Pkt {
                src: sock(ROUTER, 0),
                payload: icmp_error_msg(3, 4, frag_needed, &l3(&syn_ack_out)[..28]),
                ..from_client(0, Transport::Raw(1))
            }
            .frame(),
            verdict: Verdict::Forward { iface: INT },
            output: Output::Frame(
                Pkt {
                    src: sock(ROUTER, 0),
                    payload: icmp_error_msg(3, 4, frag_needed, &l3(&syn_ack_in)[..28]),
                    ..to_rs(0, Transport::Raw(1))
                }
                .frame(),
            ),
        },
        Case {
            description: "an ICMP error to the VIP about no connection",
            setup: no_setup,
            iface: EXT,
            input: Pkt {
                src: sock(ROUTER, 0),
                payload: icmp_error_msg(3, 4, frag_needed, &l3(&syn_ack_out)[..28]),
                ..from_client(0, Transport::Raw(1))
            }
            .frame(),
            verdict: Verdict::Drop(DropReason::NoConn),
            output: Output::Unchanged,
        },
        Case {
            description: "DR: the SYN goes unchanged but for TTL and MACs",
            setup: |lab| *lab = busy_lab(),
            iface: EXT,
            input: from_client(DR_PORT, syn()).frame(),
            verdict: Verdict::Forward { iface: INT },
            output: Output::Frame(
                Pkt {
                    dst_mac: RS2_MAC,
                    src_mac: INT_MAC,
                    ttl: 63,
                    ..from_client(DR_PORT, syn())
                }
                .frame(),
            ),
        },
        Case {
            description: "TUN: the SYN is wrapped in IPv4 from int0 to RS2",
            setup: |lab| *lab = busy_lab(),
            iface: EXT,
            input: from_client(TUN_PORT, syn()).frame(),
            verdict: Verdict::Forward { iface: INT },
            output: Output::Frame(tun_out),
        },
        Case {
            description: "TUN: too big with DF: fragmentation needed back to the client",
            setup: |lab| *lab = busy_lab(),
            iface: EXT,
            input: big.clone(),
            verdict: Verdict::Forward { iface: EXT },
            output: Output::Frame(
                Pkt {
                    dst_mac: CLIENT_MAC,
                    src_mac: EXT_MAC,
                    src: sock(EXT_IP, 0),
                    dst: sock(CIP, 0),
                    ttl: 64,
                    l4: Transport::Raw(1),
                    payload: icmp_error_msg(3, 4, [0, 0, 0x05, 0xc8], &l3(&big)[..548]),
                }
                .frame(),
            ),
        },
        Case {
            description: "TUN: too big without DF",
            setup: |lab| *lab = busy_lab(),
            iface: EXT,
            input: big_syn(false),
            verdict: Verdict::Drop(DropReason::TooBig),
            output: Output::Unchanged,
        },
        Case {
            description: "local node: the IP packet goes to the director's stack",
            setup: |lab| *lab = busy_lab(),
            iface: EXT,
            input: from_client(LOCAL_PORT, syn()).frame(),
            verdict: Verdict::Local,
            output: Output::Frame(l3(&from_client(LOCAL_PORT, syn()).frame()).to_vec()),
        },
        Case {
            description: "IPv6 NAT: SYN to [VIP6]:80 -> [RIP6]:8080",
            setup: |lab| *lab = busy_lab(),
            iface: EXT,
            input: v6_frame(
                (EXT_MAC, CLIENT_MAC),
                CIP6,
                VIP6,
                6,
                64,
                &tcp_segment(c6, v6, flag::ACK),
            ),
            verdict: Verdict::Forward { iface: INT },
            output: Output::Frame(v6_frame(
                (RS1_MAC, INT_MAC),
                CIP6,
                RIP6,
                6,
                63,
                &tcp_segment(c6, r6, flag::ACK),
            )),
        },
        Case {
            description: "IPv6 NAT: the reply from [RIP6]:8080",
            setup: |lab| *lab = busy_lab(),
            iface: INT,
            input: v6_frame(
                (INT_MAC, RS1_MAC),
                RIP6,
                CIP6,
                6,
                64,
                &tcp_segment(r6, c6, flag::SYN | flag::ACK),
            ),
            verdict: Verdict::Forward { iface: EXT },
            output: Output::Frame(v6_frame(
                (CLIENT_MAC, EXT_MAC),
                VIP6,
                CIP6,
                6,
                63,
                &tcp_segment(v6, c6, flag::SYN | flag::ACK),
            )),
        },
        Case {
            description: "neighbour solicitation for the IPv6 VIP is advertised",
            setup: |lab| *lab = busy_lab(),
            iface: EXT,
            input: neighbor_solicit(VIP6),
            verdict: Verdict::Forward { iface: EXT },
            output: Output::Frame(na),
        },
        Case {
            description: "neighbour solicitation for a host address is the kernel's",
            setup: |lab| *lab = busy_lab(),
            iface: EXT,
            input: neighbor_solicit(EXT_IP6),
            verdict: Verdict::Pass,
            output: Output::Unchanged,
        },
        Case {
            description: "ICMPv6 echo request to the IPv6 VIP is answered",
            setup: |lab| *lab = busy_lab(),
            iface: EXT,
            input: ping6(CIP6, VIP6, icmp::v6::ECHO_REQUEST),
            verdict: Verdict::Forward { iface: EXT },
            output: Output::Frame(pong6),
        },
    ];
    run_cases(cases);
}

/// Test 4 for IPv6 NAT: the partial field follows the new address too.
#[test]
fn partial_checksum_v6() {
    use lvsd::wire::checksum::pseudo_header_v6;
    let mut lab = busy_lab();
    let mut f = v6_syn();
    // Another client port: busy_lab opened CPORT's connection already.
    f[L3 + 40..L3 + 42].copy_from_slice(&(CPORT + 1).to_be_bytes());
    let mut v = VnetHeader::new_unchecked(&mut f[..L2]);
    v.set_flags(vnet::F_NEEDS_CSUM);
    v.set_csum_start(14 + 40);
    v.set_csum_offset(16);
    let at = L3 + 40 + 16;
    let before = fold(pseudo_header_v6(CIP6, VIP6, 6, 20));
    f[at..at + 2].copy_from_slice(&before.to_be_bytes());
    assert_eq!(lab.process(EXT, &mut f), Verdict::Forward { iface: INT });
    let want = fold(pseudo_header_v6(CIP6, RIP6, 6, 20));
    let got = u16::from_be_bytes([f[at], f[at + 1]]);
    assert_eq!(got, want, "partial field {got:#06x}, want {want:#06x}");
    assert_eq!(&f[L3 + 40 + 2..L3 + 40 + 4], &HTTP_R.to_be_bytes());
}

/// Found while writing these tests: an ICMP error about a connection is
/// translated without its checksum being checked first, and the
/// translation recomputes the checksum, so a corrupted message leaves with
/// a valid one. IPVS checks first and drops ("Incoming ICMP: failed
/// checksum" in ip_vs_in_icmp, "Forward ICMP: failed checksum" in
/// handle_response_icmp).
#[test]
fn corrupted_icmp_errors_are_dropped() {
    let quoted = Pkt {
        payload: QUERY.to_vec(),
        ..to_rs(DNS_R, udp_csum())
    }
    .frame();
    let syn_ack_out = to_client(HTTP, syn_ack()).frame();
    let corrupt = |mut m: Vec<u8>| {
        m[2] ^= 0x40;
        m
    };
    run_cases(vec![
        Case {
            description: "RS1's port unreachable with a bad ICMP checksum",
            setup: open_dns,
            iface: INT,
            input: Pkt {
                payload: corrupt(icmp_error_msg(3, 3, [0; 4], &l3(&quoted)[..28])),
                ..from_rs(0, Transport::Raw(1))
            }
            .frame(),
            verdict: Verdict::Drop(DropReason::BadChecksum),
            output: Output::Unchanged,
        },
        Case {
            description: "a router's fragmentation needed to the VIP with a bad ICMP checksum",
            setup: open_http,
            iface: EXT,
            input: Pkt {
                src: sock(ROUTER, 0),
                payload: corrupt(icmp_error_msg(3, 4, [0, 0, 5, 0], &l3(&syn_ack_out)[..28])),
                ..from_client(0, Transport::Raw(1))
            }
            .frame(),
            verdict: Verdict::Drop(DropReason::BadChecksum),
            output: Output::Unchanged,
        },
    ]);
}

/// Found while writing these tests: a neighbour solicitation for a VIP is
/// answered without the checks RFC 4861 section 7.1.1 requires (ICMP
/// checksum valid, code 0); the kernel discards such messages.
#[test]
fn invalid_neighbor_solicitations_are_not_answered() {
    let bad_checksum = {
        let mut f = neighbor_solicit(VIP6);
        f[L3 + 40 + 2] ^= 0x40;
        f
    };
    let code_1 = {
        let mut f = neighbor_solicit(VIP6);
        let (src, dst) = {
            let ip = Ipv6Packet::new_checked(&f[L3..]).unwrap();
            (ip.src_addr(), ip.dst_addr())
        };
        let m = &mut f[L3 + 40..];
        m[1] = 1;
        m[2..4].fill(0);
        let c = ref_l4_checksum(src, dst, 58, m);
        m[2..4].copy_from_slice(&c.to_be_bytes());
        f
    };
    let row = |description, input| Case {
        description,
        setup: |lab| *lab = busy_lab(),
        iface: EXT,
        input,
        verdict: Verdict::Pass,
        output: Output::Unchanged,
    };
    run_cases(vec![
        row(
            "solicitation for the IPv6 VIP with a bad ICMPv6 checksum",
            bad_checksum,
        ),
        row("solicitation for the IPv6 VIP with code 1", code_1),
    ]);
}

// ---------------------------------------------------------------------------
// 9: properties
// ---------------------------------------------------------------------------

/// Valid frames to start mutations from, with the interface each arrives
/// on. In [`busy_lab`] every one is forwarded (or handed to the local stack).
fn seeds() -> Vec<(u16, Vec<u8>)> {
    let quoted = Pkt {
        payload: QUERY.to_vec(),
        ..to_rs(DNS_R, udp_csum())
    }
    .frame();
    let syn_ack_out = to_client(HTTP, syn_ack()).frame();
    vec![
        (EXT, from_client(HTTP, syn()).frame()),
        (
            EXT,
            Pkt {
                payload: GET.to_vec(),
                ..from_client(HTTP, tcp_l4(flag::PSH | flag::ACK, 1001, 5001))
            }
            .frame(),
        ),
        (INT, from_rs(HTTP_R, syn_ack()).frame()),
        (
            EXT,
            Pkt {
                payload: QUERY.to_vec(),
                ..from_client(DNS, udp_csum())
            }
            .frame(),
        ),
        (
            INT,
            Pkt {
                payload: QUERY.to_vec(),
                ..from_rs(DNS_R, udp_no_csum())
            }
            .frame(),
        ),
        (
            EXT,
            make_partial(
                Pkt {
                    payload: GET.to_vec(),
                    ..from_client(HTTP, ack())
                }
                .frame(),
            ),
        ),
        (
            EXT,
            arp_frame(MacAddr::BROADCAST, CLIENT_MAC, arp_request(VIP)),
        ),
        (
            EXT,
            with_ip_options(from_client(HTTP, syn()).frame(), &[1, 1, 1, 0]),
        ),
        (
            EXT,
            Pkt {
                payload: icmp_msg(icmp::v4::ECHO_REQUEST),
                ..from_client(0, Transport::Raw(1))
            }
            .frame(),
        ),
        (
            INT,
            Pkt {
                payload: icmp_error_msg(3, 3, [0; 4], &l3(&quoted)[..28]),
                ..from_rs(0, Transport::Raw(1))
            }
            .frame(),
        ),
        (
            EXT,
            Pkt {
                src: sock(ROUTER, 0),
                payload: icmp_error_msg(3, 4, [0, 0, 5, 0], &l3(&syn_ack_out)[..28]),
                ..from_client(0, Transport::Raw(1))
            }
            .frame(),
        ),
        (EXT, from_client(DR_PORT, syn()).frame()),
        (EXT, from_client(TUN_PORT, syn()).frame()),
        (
            EXT,
            edit_ip(
                Pkt {
                    payload: vec![0x5a; 1470],
                    ..from_client(TUN_PORT, syn())
                }
                .frame(),
                |ip| ip.set_dont_frag(true),
            ),
        ),
        (EXT, from_client(LOCAL_PORT, syn()).frame()),
        (EXT, v6_syn()),
        (
            INT,
            v6_frame(
                (INT_MAC, RS1_MAC),
                RIP6,
                CIP6,
                6,
                64,
                &tcp_segment(
                    SocketAddr::from((RIP6, HTTP_R)),
                    SocketAddr::from((CIP6, CPORT)),
                    flag::SYN | flag::ACK,
                ),
            ),
        ),
        (EXT, neighbor_solicit(VIP6)),
        (EXT, {
            let msg = icmp6_msg(
                CIP6,
                VIP6,
                icmp::v6::ECHO_REQUEST,
                &[0, 1, 0, 1, b'p', b'i', b'n', b'g'],
            );
            v6_frame((EXT_MAC, CLIENT_MAC), CIP6, VIP6, 58, 64, &msg)
        }),
    ]
}

/// Whether every IPv4 header checksum of the IP packet `l3` is right: its
/// own, and an IP-in-IP tunnel's inner one. IPv6 has none.
fn ip_headers_ok(l3: &[u8]) -> bool {
    match l3.first().map(|b| b >> 4) {
        Some(4) => Ipv4Packet::new_checked(l3).is_ok_and(|ip| {
            ref_checksum(ip.header_bytes()) == 0
                && (ip.next_header() != IpProtocol::IpIp || ip_headers_ok(ip.payload()))
        }),
        Some(6) => Ipv6Packet::new_checked(l3).is_ok(),
        _ => false,
    }
}

/// Whether the TCP, UDP, ICMP or ICMPv6 checksum of the IP packet `l3`
/// (inside a tunnel, of the inner packet) is right, recomputed in full;
/// None when there is nothing to check: another protocol, UDP over IPv4
/// without a checksum, headers that do not parse.
fn l4_ok(l3: &[u8]) -> Option<bool> {
    let (src, dst, next, payload): (IpAddr, IpAddr, IpProtocol, &[u8]) =
        match l3.first().map(|b| b >> 4)? {
            4 => {
                let ip = Ipv4Packet::new_checked(l3).ok()?;
                let (s, d) = (ip.src_addr().into(), ip.dst_addr().into());
                let (hl, end) = (usize::from(ip.header_len()), usize::from(ip.total_len()));
                (s, d, ip.next_header(), &l3[hl..end])
            }
            6 => {
                let ip = Ipv6Packet::new_checked(l3).ok()?;
                let (s, d) = (ip.src_addr().into(), ip.dst_addr().into());
                (s, d, ip.next_header(), &l3[40..ip.total_len()])
            }
            _ => return None,
        };
    match next {
        IpProtocol::Tcp => Some(ref_l4_checksum(src, dst, 6, payload) == 0),
        IpProtocol::Udp => {
            let u = UdpPacket::new_checked(payload).ok()?;
            if u.checksum() == 0 && src.is_ipv4() {
                return None;
            }
            Some(ref_l4_checksum(src, dst, 17, u.datagram()) == 0)
        }
        IpProtocol::Icmp => Some(ref_checksum(payload) == 0),
        IpProtocol::Icmpv6 => Some(ref_l4_checksum(src, dst, 58, payload) == 0),
        IpProtocol::IpIp | IpProtocol::Ipv6 => l4_ok(payload),
        _ => None,
    }
}

/// The invariants of every frame lvsd sends: it lies inside its buffer,
/// every IPv4 header checksum is right, an ICMP message it built or
/// translated has a right checksum, and a TCP or UDP checksum that was
/// right when the frame came in (and was not partial) is still right.
fn check_sent(
    lab: &Lab,
    verdict: Verdict,
    input: &[u8],
    output: &[u8],
) -> Result<(), TestCaseError> {
    prop_assert!(lab.inside, "the frame left its buffer");
    let out_l3 = match verdict {
        Verdict::Forward { .. } | Verdict::Refuse { .. } => {
            prop_assert!(output.len() >= L3, "a frame without Ethernet");
            let ethertype = EthernetFrame::new_checked(&output[L2..])
                .map(|e| e.ethertype())
                .ok();
            if ethertype == Some(EtherType::Arp) {
                return Ok(());
            }
            &output[L3..]
        }
        Verdict::Local => output,
        Verdict::Pass | Verdict::Drop(_) => return Ok(()),
    };
    prop_assert!(ip_headers_ok(out_l3), "IP header: {}", hex(output));
    let partial = VnetHeader::new_checked(input).is_ok_and(|v| v.needs_csum());
    let in_l3 = input.get(L3..).unwrap_or(&[]);
    let out_l4 = l4_ok(out_l3);
    let is_icmp = |l3: &[u8]| match l3.first().map(|b| b >> 4) {
        Some(4) => Ipv4Packet::new_checked(l3).is_ok_and(|ip| ip.next_header() == IpProtocol::Icmp),
        Some(6) => {
            Ipv6Packet::new_checked(l3).is_ok_and(|ip| ip.next_header() == IpProtocol::Icmpv6)
        }
        _ => false,
    };
    if is_icmp(out_l3) {
        prop_assert_eq!(out_l4, Some(true), "ICMP checksum: {}", hex(output));
    } else if !partial && l4_ok(in_l3) == Some(true) {
        prop_assert_eq!(out_l4, Some(true), "transport checksum: {}", hex(output));
    }
    Ok(())
}

proptest! {
    #[test]
    fn process_never_panics_on_any_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
        iface in 0u16..3,
    ) {
        let mut lab = busy_lab();
        let mut f = bytes.clone();
        let v = lab.process(iface, &mut f);
        check_sent(&lab, v, &bytes, &f)?;
        if v == Verdict::Pass {
            prop_assert_eq!(&f, &bytes, "a passed frame is untouched");
        }
    }

    /// Valid frames with bytes changed, optionally the IPv4 header checksum
    /// made right again (so that the damage reaches past it), optionally cut.
    #[test]
    fn process_never_panics_on_damaged_frames(
        seed in any::<proptest::sample::Index>(),
        flips in proptest::collection::vec((any::<proptest::sample::Index>(), 1..=255u8), 0..6),
        fix_ip_checksum in any::<bool>(),
        cut in any::<proptest::sample::Index>(),
        do_cut in any::<bool>(),
    ) {
        let seeds = seeds();
        let (iface, mut input) = seeds[seed.index(seeds.len())].clone();
        for (at, x) in flips {
            let i = at.index(input.len());
            input[i] ^= x;
        }
        if fix_ip_checksum && input.len() >= L3 + 20 && input[L3] >> 4 == 4 {
            let hl = usize::from(input[L3] & 0x0f) * 4;
            if hl >= 20 && L3 + hl <= input.len() {
                input[L3 + 10..L3 + 12].fill(0);
                let c = ref_checksum(&input[L3..L3 + hl]);
                input[L3 + 10..L3 + 12].copy_from_slice(&c.to_be_bytes());
            }
        }
        if do_cut {
            input.truncate(cut.index(input.len() + 1));
        }
        let mut lab = busy_lab();
        let mut f = input.clone();
        let v = lab.process(iface, &mut f);
        check_sent(&lab, v, &input, &f)?;
        if v == Verdict::Pass {
            prop_assert_eq!(&f, &input, "a passed frame is untouched");
        }
    }

    /// Undamaged seeds are all sent on (so the test above does reach every
    /// rewrite), whatever the TTL above 1.
    #[test]
    fn seeds_are_sent(seed in any::<proptest::sample::Index>(), ttl in 2..=255u8) {
        let seeds = seeds();
        let (iface, mut input) = seeds[seed.index(seeds.len())].clone();
        let is_v4 = EthernetFrame::new_checked(&input[L2..]).unwrap().ethertype() == EtherType::Ipv4;
        if is_v4 {
            input = edit_ip(input, |ip| ip.set_ttl(ttl));
        }
        let mut lab = busy_lab();
        let mut f = input.clone();
        let v = lab.process(iface, &mut f);
        prop_assert!(matches!(v, Verdict::Forward { .. } | Verdict::Local), "{:?}", v);
        check_sent(&lab, v, &input, &f)?;
    }

    /// The admin protocol decoder returns Ok or Err on any bytes.
    #[test]
    fn request_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = serde_json::from_slice::<Request>(&bytes);
    }

    /// ... and on damaged valid requests, which get much further.
    #[test]
    fn request_decoder_never_panics_on_damaged_requests(
        which in any::<proptest::sample::Index>(),
        flips in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<proptest::sample::Index>(),
    ) {
        let requests = [
            Request::new(add_service(tcp_key(HTTP))),
            Request::new(Op::AddDest { service: tcp_key(HTTP), dest: nat_dest(RIP1, HTTP_R, 1) }),
            Request::new(Op::Batch { ops: vec![Op::Clear, add_service(udp_key(DNS))] }),
            Request::new(Op::Zero { service: None }),
        ];
        let request = &requests[which.index(requests.len())];
        let mut bytes = serde_json::to_vec(request).unwrap();
        // Undamaged, it round-trips.
        let decoded = serde_json::from_slice::<Request>(&bytes).ok();
        prop_assert_eq!(decoded.as_ref(), Some(request));
        for (at, b) in flips {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        bytes.truncate(cut.index(bytes.len() + 1));
        let _ = serde_json::from_slice::<Request>(&bytes);
    }
}

#[test]
fn request_decoder_survives_deep_nesting() {
    // serde_json's recursion limit turns this into an error, not a stack
    // overflow.
    let mut deep = br#"{"v":1,"op":{"op":"batch","ops":"#.to_vec();
    deep.extend_from_slice(&[b'['; 100_000]);
    assert!(serde_json::from_slice::<Request>(&deep).is_err());
}

/// The checkers the properties rely on do see damage.
#[test]
fn checkers_catch_damage() {
    let f = from_client(HTTP, syn()).frame();
    assert!(ip_headers_ok(l3(&f)));
    assert_eq!(l4_ok(l3(&f)), Some(true));
    let mut bad = f.clone();
    bad[L4 + 5] ^= 1;
    assert_eq!(l4_ok(l3(&bad)), Some(false));
    let mut bad = f.clone();
    bad[L3 + 8] ^= 1;
    assert!(!ip_headers_ok(l3(&bad)));
    let ping = Pkt {
        payload: icmp_msg(icmp::v4::ECHO_REQUEST),
        ..from_client(0, Transport::Raw(1))
    }
    .frame();
    assert_eq!(l4_ok(l3(&ping)), Some(true));
    let mut bad = ping.clone();
    bad[L4 + 9] ^= 1;
    assert_eq!(l4_ok(l3(&bad)), Some(false));
    let v6 = v6_syn();
    assert_eq!(l4_ok(l3(&v6)), Some(true));
    let mut bad = v6.clone();
    bad[L3 + 8] ^= 1; // the source address, in the pseudo-header
    assert_eq!(l4_ok(l3(&bad)), Some(false));
}

/// As IPVS with its default conn_reuse_mode: a SYN on a connection in
/// TIME_WAIT or CLOSE (the client reusing its port) ends that connection and
/// is scheduled afresh; a SYN on a live connection stays with it.
#[test]
fn a_syn_on_a_closed_connection_is_scheduled_afresh() {
    let mut lab = Lab::new();
    lab.apply(&Op::AddDest {
        service: tcp_key(HTTP),
        dest: nat_dest(RIP2, HTTP_R, 1),
    });
    let rs_of = |f: &[u8]| Ipv4Addr::new(f[L3 + 16], f[L3 + 17], f[L3 + 18], f[L3 + 19]);
    let mut f = from_client(HTTP, syn()).frame();
    assert_eq!(lab.process(EXT, &mut f), Verdict::Forward { iface: INT });
    assert_eq!(rs_of(&f), RIP1);
    // A retransmitted SYN stays with the connection (SYN_RECV).
    let mut f = from_client(HTTP, syn()).frame();
    lab.process(EXT, &mut f);
    assert_eq!(rs_of(&f), RIP1);
    // Established, then reset by the client; its next SYN from the same
    // port goes by rr.
    for (iface, mut f) in [
        (INT, from_rs(HTTP_R, syn_ack()).frame()),
        (EXT, from_client(HTTP, ack()).frame()),
        (EXT, from_client(HTTP, tcp_l4(flag::RST, 1001, 0)).frame()),
    ] {
        lab.process(iface, &mut f);
    }
    assert_eq!(
        lab.state(Protocol::Tcp, CIP, CPORT, HTTP),
        Some(State::Close)
    );
    let mut f = from_client(HTTP, syn()).frame();
    assert_eq!(lab.process(EXT, &mut f), Verdict::Forward { iface: INT });
    assert_eq!(rs_of(&f), RIP2, "rescheduled");
    assert_eq!(
        lab.state(Protocol::Tcp, CIP, CPORT, HTTP),
        Some(State::SynRecv)
    );
    assert_eq!(lab.conns.len(), 1, "the closed connection is gone");
    assert_eq!(lab.http_counts(), (0, 0), "RS1 no longer counts it");
    let rs2 = lab.dest(tcp_key(HTTP), RIP2, HTTP_R);
    assert_eq!(rs2.active.load(Relaxed), 1);
}

/// A NAT packet larger than the next link's MTU: with DF, an ICMP
/// "fragmentation needed" goes back to its sender (the client for a
/// request, the real server for a reply) from the director's address on
/// that side, quoting the packet as it was sent; without DF it is dropped
/// as too_big (lvsd does not fragment). One that fits goes on.
#[test]
fn nat_packets_too_big_for_the_next_link() {
    let mut lab = Lab::new();
    open_http(&mut lab);
    let big = |p: fn(u16, Transport) -> Pkt, port: u16, l4: Transport, n: usize| {
        Pkt {
            payload: vec![0x55; n],
            ..p(port, l4)
        }
        .frame()
    };
    let df = |f: Vec<u8>| edit_ip(f, |ip| ip.set_dont_frag(true));
    let request = tcp_l4(flag::PSH | flag::ACK, 1001, 5001);
    let reply = tcp_l4(flag::PSH | flag::ACK, 5001, 2201);
    let cases = [
        // (the link that is small, sender's side, the packet, ICMP from, to)
        (
            INT,
            EXT,
            df(big(from_client, HTTP, request.clone(), 1200)),
            EXT_IP,
            CIP,
        ),
        (
            EXT,
            INT,
            df(big(from_rs, HTTP_R, reply.clone(), 1200)),
            INT_IP,
            RIP1,
        ),
    ];
    for (small, side, sent, from, to) in cases {
        lab.ifaces.list[usize::from(small)].mtu = 1000;
        let mut f = sent.clone();
        assert_eq!(lab.process(side, &mut f), Verdict::Forward { iface: side });
        let ip = Ipv4Packet::new_checked(&f[L3..]).unwrap();
        assert_eq!(
            (ip.src_addr(), ip.dst_addr(), ip.next_header()),
            (from, to, IpProtocol::Icmp)
        );
        let m = &f[L4..];
        assert_eq!((m[0], m[1]), (3, 4), "fragmentation needed");
        assert_eq!(
            u16::from_be_bytes([m[6], m[7]]),
            1000,
            "the next link's MTU"
        );
        assert_eq!(&m[8..48], &sent[L3..L3 + 40], "the packet as sent");
        assert_checksums("fragmentation needed", &f);
        // Without DF: dropped, nothing sent.
        let mut f = edit_ip(sent.clone(), |ip| ip.set_dont_frag(false));
        assert_eq!(lab.process(side, &mut f), Verdict::Drop(DropReason::TooBig));
        lab.ifaces.list[usize::from(small)].mtu = 1500;
    }
    // Within the MTU: forwarded as before.
    let mut f = df(big(from_client, HTTP, request, 1000));
    assert_eq!(lab.process(EXT, &mut f), Verdict::Forward { iface: INT });
}

/// ICMP errors are limited per shard as the kernel limits its own: one
/// client flooding SYNs to a service no real server can take gets
/// `PEER_BURST` answers at once, then one a second; many clients together
/// get `BURST` at once, then `PER_SEC` a second; the rest are dropped and
/// counted as no_dest without an answer.
#[test]
fn refusals_are_rate_limited() {
    let mut lab = Lab::new();
    lab.apply(&Op::EditDest {
        service: tcp_key(HTTP),
        dest: nat_dest(RIP1, HTTP_R, 0),
    });
    let refused = Verdict::Refuse {
        iface: EXT,
        why: DropReason::NoDest,
    };
    // SYNs from `clients` addresses (198.18.0.100 onwards), `each` from
    // every one; the number answered.
    let flood = |lab: &mut Lab, clients: u8, each: u16| {
        let mut answered = 0;
        for c in 0..clients {
            for port in 0..each {
                let mut f = Pkt {
                    src: sock(Ipv4Addr::new(198, 18, 0, 100 + c), 1000 + port),
                    ..from_client(HTTP, syn())
                }
                .frame();
                let v = lab.process(EXT, &mut f);
                if v == refused {
                    answered += 1;
                } else {
                    assert_eq!(v, Verdict::Drop(DropReason::NoDest), "SYN {c}/{port}");
                }
            }
        }
        answered
    };
    assert_eq!(flood(&mut lab, 1, 20), IcmpBudget::PEER_BURST, "one client");
    lab.now += IcmpBudget::PEER_INTERVAL_MS;
    assert_eq!(flood(&mut lab, 1, 20), 1, "a second later");
    lab.now += 60_000;
    assert_eq!(flood(&mut lab, 100, 1), IcmpBudget::BURST, "many clients");
    assert_eq!(flood(&mut lab, 100, 1), 0, "the burst is spent");
    lab.now += 10;
    assert_eq!(
        flood(&mut lab, 100, 1),
        IcmpBudget::PER_SEC / 100,
        "10 ms later"
    );
}

/// No ICMP error answers a source that is not a unicast host, nor an ICMP
/// error (the kernel drops such sources before IPVS; RFC 1122 3.2.2).
#[test]
fn refusals_answer_unicast_hosts_only() {
    let mut lab = Lab::new();
    for src in [
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::BROADCAST,
        Ipv4Addr::new(224, 0, 0, 1),
        Ipv4Addr::LOCALHOST,
    ] {
        let mut f = Pkt {
            src: sock(src, 68),
            ttl: 1,
            ..from_client(HTTP, syn())
        }
        .frame();
        let v = lab.process(EXT, &mut f);
        assert_eq!(v, Verdict::Drop(DropReason::TtlExceeded), "from {src}");
    }
}

/// IPv6: a SYN to a service no real server can take is answered with an
/// ICMPv6 port unreachable (type 1, code 4) from the VIP, quoting the SYN;
/// one whose hop limit runs out, with time exceeded (type 3, code 0).
#[test]
fn v6_refusals() {
    let mut lab = busy_lab();
    let syn_from = |port: u16, hop: u8| {
        v6_frame(
            (EXT_MAC, CLIENT_MAC),
            CIP6,
            VIP6,
            6,
            hop,
            &tcp_segment(
                SocketAddr::from((CIP6, port)),
                SocketAddr::from((VIP6, HTTP)),
                flag::SYN,
            ),
        )
    };
    let answer = |sent: &[u8], kind: (u8, u8)| {
        let mut body = vec![0u8; 4];
        body.extend_from_slice(&sent[L3..]);
        let msg = icmp6_coded(VIP6, CIP6, kind, &body);
        v6_frame((CLIENT_MAC, EXT_MAC), VIP6, CIP6, 58, 64, &msg)
    };
    let sent = syn_from(CPORT + 1, 1);
    let mut f = sent.clone();
    let v = lab.process(EXT, &mut f);
    assert_eq!(
        v,
        Verdict::Refuse {
            iface: EXT,
            why: DropReason::TtlExceeded
        }
    );
    assert_frame_eq("hop limit 1", &f, &answer(&sent, (3, 0)));
    lab.apply(&Op::EditDest {
        service: ServiceKey {
            protocol: Protocol::Tcp,
            addr: SocketAddr::from((VIP6, HTTP)),
        },
        dest: DestSpec {
            addr: SocketAddr::from((RIP6, HTTP_R)),
            weight: 0,
            method: Method::Nat,
            u_threshold: 0,
            l_threshold: 0,
        },
    });
    let sent = syn_from(CPORT + 2, 64);
    let mut f = sent.clone();
    let v = lab.process(EXT, &mut f);
    assert_eq!(
        v,
        Verdict::Refuse {
            iface: EXT,
            why: DropReason::NoDest
        }
    );
    assert_frame_eq("no destination", &f, &answer(&sent, (1, 4)));
}

/// A local-node packet whose transport checksum the sender left to the
/// hardware (NEEDS_CSUM, as GRO and virtual peers hand them over) leaves
/// for the director's stack with the checksum finished: the TUN it goes
/// through has no offloads, and the stack would drop it as corrupt. A
/// short frame's Ethernet padding is not summed.
#[test]
fn local_node_packets_get_their_checksum_finished() {
    for payload in [Vec::new(), b"GET / HTTP/1.0\r\n\r\n".to_vec()] {
        let mut lab = busy_lab();
        let sent = Pkt {
            payload: payload.clone(),
            ..from_client(LOCAL_PORT, syn())
        }
        .frame();
        let mut f = make_partial(sent.clone());
        // Padding after a short packet, as a frame below 60 bytes has.
        f.extend_from_slice(&[0xee; 6]);
        assert_eq!(lab.process(EXT, &mut f), Verdict::Local);
        assert_eq!(f, l3(&sent).to_vec(), "the packet with its full checksum");
        assert_ip_checks("local node", &f);
    }
}

/// An ICMP error too big for the tunnel to its connection's real server is
/// dropped, not answered with "fragmentation needed" (no ICMP error about
/// an ICMP error, RFC 1122 3.2.2; IPVS's `ensure_mtu_is_adequate` drops it).
#[test]
fn no_icmp_error_about_an_icmp_error() {
    let mut lab = busy_lab();
    let mut f = from_client(TUN_PORT, syn()).frame();
    assert_eq!(lab.process(EXT, &mut f), Verdict::Forward { iface: INT });
    // A router on the client's side: host unreachable about RS2's reply
    // VIP:82 -> CIP, DF set, 1490 bytes in all (over the tunnel's room).
    let quoted = Pkt {
        payload: vec![0x11; 1434],
        ..to_client(TUN_PORT, syn_ack())
    }
    .frame();
    let err = edit_ip(
        Pkt {
            dst_mac: EXT_MAC,
            src_mac: CLIENT_MAC,
            src: sock(ROUTER, 0),
            dst: sock(VIP, 0),
            ttl: 64,
            l4: Transport::Raw(1),
            payload: icmp_error_msg(3, 1, [0; 4], &quoted[L3..]),
        }
        .frame(),
        |ip| ip.set_dont_frag(true),
    );
    let mut f = err.clone();
    assert_eq!(lab.process(EXT, &mut f), Verdict::Drop(DropReason::TooBig));
    assert_frame_eq("untouched", &f, &err);
}

/// A local node takes a new connection's SYN whatever its TTL (IPVS's local
/// delivery never checks it); a forwarded one with TTL 1 gets time exceeded.
#[test]
fn local_node_ignores_the_ttl() {
    let mut lab = busy_lab();
    let mut f = Pkt {
        ttl: 1,
        ..from_client(LOCAL_PORT, syn())
    }
    .frame();
    assert_eq!(lab.process(EXT, &mut f), Verdict::Local);
    let mut f = Pkt {
        ttl: 1,
        src: sock(CIP2, CPORT),
        ..from_client(HTTP, syn())
    }
    .frame();
    assert_eq!(
        lab.process(EXT, &mut f),
        Verdict::Refuse {
            iface: EXT,
            why: DropReason::TtlExceeded
        }
    );
}

/// A segment with none of SYN, FIN, ACK and RST closes its connection, as
/// IPVS's state machine does (it starts from CLOSE and finds no event).
#[test]
fn a_segment_without_flags_closes() {
    let mut lab = Lab::new();
    open_http(&mut lab);
    let mut f = from_rs(HTTP_R, syn_ack()).frame();
    assert_eq!(lab.process(INT, &mut f), Verdict::Forward { iface: EXT });
    let mut f = from_client(HTTP, ack()).frame();
    assert_eq!(lab.process(EXT, &mut f), Verdict::Forward { iface: INT });
    assert_eq!(lab.http_counts(), (1, 0));
    let mut f = from_client(HTTP, tcp_l4(flag::PSH, 1001, 0)).frame();
    assert_eq!(lab.process(EXT, &mut f), Verdict::Forward { iface: INT });
    assert_eq!(
        lab.state(Protocol::Tcp, CIP, CPORT, HTTP),
        Some(State::Close)
    );
    assert_eq!(lab.http_counts(), (0, 1));
}

/// IPv6 with an extension header before TCP (destination options here): a
/// new connection to VIP6 is forwarded with the header kept and the
/// transport checksum right for the real server, and the reply comes back
/// translated, as IPVS finds the transport header past extension headers.
#[test]
fn ipv6_extension_headers_are_walked() {
    let mut lab = busy_lab();
    let (c, v, r) = (
        SocketAddr::from((CIP6, CPORT + 7)),
        SocketAddr::from((VIP6, HTTP)),
        SocketAddr::from((RIP6, HTTP_R)),
    );
    let opts = [6u8, 0, 1, 4, 0, 0, 0, 0];
    let with_opts = |seg: Vec<u8>| [opts.as_slice(), &seg].concat();
    let mut f = v6_frame(
        (EXT_MAC, CLIENT_MAC),
        CIP6,
        VIP6,
        60,
        64,
        &with_opts(tcp_segment(c, v, flag::SYN)),
    );
    assert_eq!(lab.process(EXT, &mut f), Verdict::Forward { iface: INT });
    let want = v6_frame(
        (RS1_MAC, INT_MAC),
        CIP6,
        RIP6,
        60,
        63,
        &with_opts(tcp_segment(c, r, flag::SYN)),
    );
    assert_frame_eq("SYN with destination options", &f, &want);
    let mut f = v6_frame(
        (INT_MAC, RS1_MAC),
        RIP6,
        CIP6,
        60,
        64,
        &with_opts(tcp_segment(r, c, flag::SYN | flag::ACK)),
    );
    assert_eq!(lab.process(INT, &mut f), Verdict::Forward { iface: EXT });
    let want = v6_frame(
        (CLIENT_MAC, EXT_MAC),
        VIP6,
        CIP6,
        60,
        63,
        &with_opts(tcp_segment(v, c, flag::SYN | flag::ACK)),
    );
    assert_frame_eq("the reply", &f, &want);
}

/// No reset for a segment the stack would find corrupt, and no error or
/// reset for a frame sent to a broadcast address (the kernel answers
/// neither).
#[test]
fn no_answers_to_corrupt_or_broadcast_frames() {
    let mut lab = Lab::new();
    let mut bad = from_client(HTTP, ack()).frame();
    bad[L4 + 16] ^= 0xff;
    let sent = bad.clone();
    assert_eq!(
        lab.process(EXT, &mut bad),
        Verdict::Drop(DropReason::NoConn)
    );
    assert_frame_eq("a corrupt segment", &bad, &sent);
    let mut f = Pkt {
        dst_mac: MacAddr::BROADCAST,
        ..from_client(HTTP, ack())
    }
    .frame();
    assert_eq!(lab.process(EXT, &mut f), Verdict::Drop(DropReason::NoConn));
    lab.apply(&Op::EditDest {
        service: tcp_key(HTTP),
        dest: nat_dest(RIP1, HTTP_R, 0),
    });
    let mut f = Pkt {
        dst_mac: MacAddr::BROADCAST,
        ..from_client(HTTP, syn())
    }
    .frame();
    assert_eq!(lab.process(EXT, &mut f), Verdict::Drop(DropReason::NoDest));
}
