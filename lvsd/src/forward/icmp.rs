//! ICMP the director answers, builds, or passes on.
//!
//! - Echo requests to a VIP are answered in place ([`echo_reply`]).
//! - When a tunnelled packet would not fit, the client gets "fragmentation
//!   needed" or "packet too big" built from its own packet ([`error_v4`],
//!   [`error_v6`]), so its path-MTU discovery adapts (RFC 1191, RFC 8201).
//! - An error about a NAT connection (a real server's port unreachable, a
//!   router's fragmentation needed) is translated like the connection's
//!   packets, outer and embedded headers both ([`translate`]), as IPVS does.

use super::Side;
use crate::wire::checksum::{self, update16};
use crate::wire::icmp::{v4, v6, IcmpPacket, HEADER_LEN as ICMP_LEN};
use crate::wire::ipv4::{IpProtocol, Ipv4Packet, Ipv4Repr};
use crate::wire::ipv6::{Ipv6Packet, HEADER_LEN as V6_LEN, MIN_MTU as V6_MIN_MTU};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The most an ICMPv4 error carries: a 576-byte datagram (RFC 1812 4.3.2.3).
const V4_ERROR_MAX: usize = 576;
const V4_LEN: usize = 20;
/// TTL of messages the director originates.
const TTL: u8 = 64;

/// Turns a validated echo request (IPv4 or IPv6, at the start of `l3`, total
/// length `len`) into its reply in place. Swapping the addresses leaves every
/// checksum as it was; the type and TTL changes are applied incrementally.
pub fn echo_reply(l3: &mut [u8], len: usize) {
    let len = len.min(l3.len());
    match l3.first().map(|b| b >> 4) {
        Some(4) => {
            let mut ip = Ipv4Packet::new_unchecked(&mut l3[..len]);
            let (src, dst) = (ip.src_addr(), ip.dst_addr());
            ip.set_src_addr(dst);
            ip.set_dst_addr(src);
            let (ttl, proto) = (ip.ttl(), u8::from(ip.next_header()));
            let c = update16(
                ip.checksum(),
                u16::from_be_bytes([ttl, proto]),
                u16::from_be_bytes([TTL, proto]),
            );
            ip.set_ttl(TTL);
            ip.set_checksum(c);
            let hl = usize::from(ip.header_len());
            flip_type(&mut l3[hl..len], v4::ECHO_REPLY);
        }
        Some(6) if len >= V6_LEN + ICMP_LEN => {
            let mut ip = Ipv6Packet::new_unchecked(&mut l3[..len]);
            let (src, dst) = (ip.src_addr(), ip.dst_addr());
            ip.set_src_addr(dst);
            ip.set_dst_addr(src);
            ip.set_hop_limit(TTL);
            flip_type(&mut l3[V6_LEN..len], v6::ECHO_REPLY);
        }
        _ => {}
    }
}

fn flip_type(msg: &mut [u8], to: u8) {
    let Ok(mut m) = IcmpPacket::new_checked(msg) else {
        return;
    };
    let (t, code) = (m.msg_type(), m.msg_code());
    let c = update16(
        m.checksum(),
        u16::from_be_bytes([t, code]),
        u16::from_be_bytes([to, code]),
    );
    m.set_msg_type(to);
    m.set_checksum(c);
}

/// Replaces the IPv4 packet at `buf[l3..l3 + orig_len]` with an ICMP error
/// about it, from `from` to the packet's source, quoting as much of it as
/// fits in 576 bytes. Returns the new packet's length, or None when the
/// buffer has no room.
pub fn error_v4(
    buf: &mut [u8],
    l3: usize,
    orig_len: usize,
    from: Ipv4Addr,
    kind: (u8, u8),
    rest: [u8; 4],
) -> Option<usize> {
    let quote = orig_len.min(V4_ERROR_MAX - V4_LEN - ICMP_LEN);
    let total = V4_LEN + ICMP_LEN + quote;
    if l3 + total > buf.len() || orig_len < V4_LEN {
        return None;
    }
    let to = Ipv4Packet::new_unchecked(&buf[l3..l3 + orig_len]).src_addr();
    buf.copy_within(l3..l3 + quote, l3 + V4_LEN + ICMP_LEN);
    let repr = Ipv4Repr {
        src_addr: from,
        dst_addr: to,
        next_header: IpProtocol::Icmp,
        payload_len: ICMP_LEN + quote,
        ttl: TTL,
    };
    repr.emit(&mut Ipv4Packet::new_unchecked(&mut buf[l3..l3 + V4_LEN]));
    let mut m = IcmpPacket::new_unchecked(&mut buf[l3 + V4_LEN..l3 + total]);
    m.set_msg_type(kind.0);
    m.set_msg_code(kind.1);
    m.set_rest(rest);
    m.fill_checksum_v4();
    Some(total)
}

/// [`error_v4`] for IPv6: the error quotes as much of the packet as fits in
/// the minimum MTU (RFC 4443 section 2.4).
pub fn error_v6(
    buf: &mut [u8],
    l3: usize,
    orig_len: usize,
    from: Ipv6Addr,
    kind: (u8, u8),
    rest: [u8; 4],
) -> Option<usize> {
    let quote = orig_len.min(V6_MIN_MTU - V6_LEN - ICMP_LEN);
    let total = V6_LEN + ICMP_LEN + quote;
    if l3 + total > buf.len() || orig_len < V6_LEN {
        return None;
    }
    let to = Ipv6Packet::new_unchecked(&buf[l3..l3 + orig_len]).src_addr();
    buf.copy_within(l3..l3 + quote, l3 + V6_LEN + ICMP_LEN);
    let mut ip = Ipv6Packet::new_unchecked(&mut buf[l3..l3 + V6_LEN]);
    ip.set_version_defaults();
    ip.set_payload_len(u16::try_from(ICMP_LEN + quote).unwrap_or(u16::MAX));
    ip.set_next_header(IpProtocol::Icmpv6);
    ip.set_hop_limit(TTL);
    ip.set_src_addr(from);
    ip.set_dst_addr(to);
    let mut m = IcmpPacket::new_unchecked(&mut buf[l3 + V6_LEN..l3 + total]);
    m.set_msg_type(kind.0);
    m.set_msg_code(kind.1);
    m.set_rest(rest);
    m.fill_checksum_v6(from, to);
    Some(total)
}

/// Where the connection's addresses sit in an ICMP error's embedded packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Embedded {
    pub protocol: IpProtocol,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    /// Length of the quoted IP header (with any IPv6 extension headers):
    /// where its transport header starts in the ICMP body.
    pub ip_len: usize,
}

/// Reads the embedded packet of an ICMP(v6) error body: an IP header and at
/// least the 8 transport bytes holding the ports. The embedded packet is
/// usually cut short, so its length fields are not checked against the body.
pub fn embedded(body: &[u8]) -> Option<Embedded> {
    match body.first().map(|b| b >> 4)? {
        4 => {
            let hl = usize::from(body[0] & 0x0f) * 4;
            if hl < V4_LEN || body.len() < hl + 8 {
                return None;
            }
            let a = |o: usize| {
                IpAddr::V4(Ipv4Addr::new(
                    body[o],
                    body[o + 1],
                    body[o + 2],
                    body[o + 3],
                ))
            };
            Some(Embedded {
                protocol: IpProtocol::from(body[9]),
                src: a(12),
                dst: a(16),
                sport: u16::from_be_bytes([body[hl], body[hl + 1]]),
                dport: u16::from_be_bytes([body[hl + 2], body[hl + 3]]),
                ip_len: hl,
            })
        }
        6 => {
            // The quoted packet's transport header may follow extension
            // headers, as in the packets lvsd forwards.
            let (protocol, at) = crate::wire::ipv6::upper_layer(body)?;
            if body.len() < at + 8 {
                return None;
            }
            let a = |o: usize| {
                let mut b = [0u8; 16];
                b.copy_from_slice(&body[o..o + 16]);
                IpAddr::V6(Ipv6Addr::from(b))
            };
            Some(Embedded {
                protocol,
                src: a(8),
                dst: a(24),
                sport: u16::from_be_bytes([body[at], body[at + 1]]),
                dport: u16::from_be_bytes([body[at + 2], body[at + 3]]),
                ip_len: at,
            })
        }
        _ => None,
    }
}

/// Translates a validated ICMP(v6) error of total length `len` for a NAT
/// connection: the outer header's address on `outer` becomes `outer_addr`,
/// the embedded packet's address and port on `inner` become
/// `inner_addr:inner_port`, the TTL or hop limit drops by one, and the
/// checksums follow (the ICMP one recomputed: the message is small).
pub fn translate(
    l3: &mut [u8],
    len: usize,
    outer: Side,
    outer_addr: IpAddr,
    inner: Side,
    inner_addr: IpAddr,
    inner_port: u16,
) -> bool {
    let len = len.min(l3.len());
    let l3 = &mut l3[..len];
    let (hl, v6) = match (l3.first().map(|b| b >> 4), outer_addr) {
        (Some(4), IpAddr::V4(_)) => (usize::from(l3[0] & 0x0f) * 4, false),
        (Some(6), IpAddr::V6(_)) => (V6_LEN, true),
        _ => return false,
    };
    let body_at = hl + ICMP_LEN;
    let Some(e) = embedded(l3.get(body_at..).unwrap_or(&[])) else {
        return false;
    };
    // The embedded header.
    let inner_ip = &mut l3[body_at..];
    match (inner_addr, v6) {
        (IpAddr::V4(a), false) => {
            let at = if inner == Side::Src { 12 } else { 16 };
            let old: [u8; 4] = inner_ip[at..at + 4].try_into().unwrap_or([0; 4]);
            inner_ip[at..at + 4].copy_from_slice(&a.octets());
            let c = u16::from_be_bytes([inner_ip[10], inner_ip[11]]);
            let c = checksum::update32(c, old, a.octets());
            inner_ip[10..12].copy_from_slice(&c.to_be_bytes());
        }
        (IpAddr::V6(a), true) => {
            let at = if inner == Side::Src { 8 } else { 24 };
            inner_ip[at..at + 16].copy_from_slice(&a.octets());
        }
        _ => return false,
    }
    let port_at = e.ip_len + if inner == Side::Src { 0 } else { 2 };
    inner_ip[port_at..port_at + 2].copy_from_slice(&inner_port.to_be_bytes());
    // The outer header and the ICMP checksum.
    match outer_addr {
        IpAddr::V4(a) => {
            let mut ip = Ipv4Packet::new_unchecked(&mut *l3);
            match outer {
                Side::Src => ip.set_src_addr(a),
                Side::Dst => ip.set_dst_addr(a),
            }
            ip.set_ttl(ip.ttl().saturating_sub(1));
            ip.fill_checksum();
            IcmpPacket::new_unchecked(&mut l3[hl..]).fill_checksum_v4();
        }
        IpAddr::V6(a) => {
            let mut ip = Ipv6Packet::new_unchecked(&mut *l3);
            match outer {
                Side::Src => ip.set_src_addr(a),
                Side::Dst => ip.set_dst_addr(a),
            }
            ip.set_hop_limit(ip.hop_limit().saturating_sub(1));
            let (s, d) = (ip.src_addr(), ip.dst_addr());
            IcmpPacket::new_unchecked(&mut l3[V6_LEN..]).fill_checksum_v6(s, d);
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp_v4(total: usize) -> Vec<u8> {
        let mut p = vec![0u8; total];
        let repr = Ipv4Repr {
            src_addr: Ipv4Addr::new(198, 18, 0, 2),
            dst_addr: Ipv4Addr::new(198, 19, 0, 100),
            next_header: IpProtocol::Udp,
            payload_len: total - 20,
            ttl: 64,
        };
        repr.emit(&mut Ipv4Packet::new_unchecked(&mut p[..]));
        p[20..22].copy_from_slice(&40000u16.to_be_bytes());
        p[22..24].copy_from_slice(&53u16.to_be_bytes());
        p
    }

    #[test]
    fn echo_reply_v4_keeps_checksums() {
        let mut p = udp_v4(28);
        p[9] = 1; // ICMP
        Ipv4Packet::new_unchecked(&mut p[..]).fill_checksum();
        p[20] = v4::ECHO_REQUEST;
        IcmpPacket::new_unchecked(&mut p[20..]).fill_checksum_v4();
        echo_reply(&mut p, 28);
        let ip = Ipv4Packet::new_checked(&p[..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.src_addr(), Ipv4Addr::new(198, 19, 0, 100));
        let m = IcmpPacket::new_checked(&p[20..]).unwrap();
        assert_eq!(m.msg_type(), v4::ECHO_REPLY);
        assert!(m.verify_checksum_v4());
    }

    #[test]
    fn frag_needed_quotes_the_packet() {
        let orig = udp_v4(1500);
        let mut buf = vec![0u8; 2000];
        buf[100..1600].copy_from_slice(&orig);
        let n = error_v4(
            &mut buf,
            100,
            1500,
            Ipv4Addr::new(198, 18, 0, 1),
            (v4::DEST_UNREACHABLE, v4::CODE_FRAG_NEEDED),
            [0, 0, 0x05, 0x64],
        )
        .unwrap();
        assert_eq!(n, 576);
        let ip = Ipv4Packet::new_checked(&buf[100..100 + n]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.dst_addr(), Ipv4Addr::new(198, 18, 0, 2));
        let m = IcmpPacket::new_checked(ip.payload()).unwrap();
        assert!(m.verify_checksum_v4());
        assert_eq!(m.rest(), [0, 0, 0x05, 0x64]);
        assert_eq!(&m.body()[..28], &orig[..28]);
        let e = embedded(m.body()).unwrap();
        assert_eq!((e.sport, e.dport), (40000, 53));
    }

    /// An ICMPv6 error quoting a packet with an extension header: the
    /// ports are read past it.
    #[test]
    fn embedded_v6_walks_extension_headers() {
        let mut body = vec![0u8; V6_LEN];
        body[0] = 0x60;
        body[6] = 60; // destination options
        body[8..24].copy_from_slice(&"fd00:198:19::100".parse::<Ipv6Addr>().unwrap().octets());
        body[24..40].copy_from_slice(&"fd00:198:18::2".parse::<Ipv6Addr>().unwrap().octets());
        body.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
        body.extend_from_slice(&80u16.to_be_bytes());
        body.extend_from_slice(&40000u16.to_be_bytes());
        body.extend_from_slice(&[0; 4]);
        let e = embedded(&body).unwrap();
        assert_eq!(
            (e.protocol, e.sport, e.dport, e.ip_len),
            (IpProtocol::Tcp, 80, 40000, V6_LEN + 8)
        );
    }

    #[test]
    fn translate_port_unreachable() {
        // rs 198.18.1.11 says port unreachable about CIP:40000 -> RIP:5353.
        let mut inner = udp_v4(28);
        inner[16..20].copy_from_slice(&[198, 18, 1, 11]);
        inner[22..24].copy_from_slice(&5353u16.to_be_bytes());
        Ipv4Packet::new_unchecked(&mut inner[..]).fill_checksum();
        let mut buf = vec![0u8; 200];
        buf[..28].copy_from_slice(&inner);
        let n = error_v4(
            &mut buf,
            0,
            28,
            Ipv4Addr::new(198, 18, 1, 11),
            (3, 3),
            [0; 4],
        )
        .unwrap();
        assert!(translate(
            &mut buf,
            n,
            Side::Src,
            "198.19.0.100".parse().unwrap(),
            Side::Dst,
            "198.19.0.100".parse().unwrap(),
            53
        ));
        let ip = Ipv4Packet::new_checked(&buf[..n]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.src_addr(), Ipv4Addr::new(198, 19, 0, 100));
        let m = IcmpPacket::new_checked(ip.payload()).unwrap();
        assert!(m.verify_checksum_v4());
        let e = embedded(m.body()).unwrap();
        assert_eq!(e.dst, "198.19.0.100".parse::<IpAddr>().unwrap());
        assert_eq!(e.dport, 53);
        let inner = Ipv4Packet::new_checked(&m.body()[..28]).unwrap();
        assert!(inner.verify_checksum());
    }
}
