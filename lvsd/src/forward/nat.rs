//! NAT (masquerading): rewrite the destination of packets to the real server
//! and the source of its replies back to the VIP.
//!
//! Checksums are updated incrementally (RFC 1624). When the frame came with a
//! partial checksum (a virtio header with NEEDS_CSUM: the transport checksum
//! field holds only the pseudo-header sum and the NIC or the kernel finishes
//! it), only the pseudo-header part is adjusted: the address, not the port,
//! which the finishing sum covers anyway.
//!
//! The TTL is decremented here, as a router does (RFC 1812 section 5.3.1);
//! the caller drops packets whose TTL would reach zero.

use crate::wire::checksum::{
    fold, pseudo_header_v4, pseudo_header_v6, sum, update128, update128_partial, update16,
    update32, update32_partial,
};
use crate::wire::ipv4::{IpProtocol, Ipv4Packet};
use crate::wire::ipv6::{Ipv6Packet, HEADER_LEN as V6_HEADER_LEN};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Which end of the packet changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The destination: client to real server (VIP:vport becomes RIP:rport).
    Dst,
    /// The source: real server to client (RIP:rport becomes VIP:vport).
    Src,
}

/// Offsets of the checksum field in the transport headers.
const TCP_CHECKSUM: usize = 16;
const UDP_CHECKSUM: usize = 6;
/// Offsets of the ports.
const SRC_PORT: usize = 0;
const DST_PORT: usize = 2;

/// Rewrites one IPv4 packet in place: the address and port on `side` become
/// `addr:port`, the TTL drops by one, and the IP and transport checksums
/// follow. `packet` holds exactly the validated IPv4 packet (header and
/// transport header within it); `partial` says the transport checksum is a
/// partial one. Returns false (and changes nothing) for a protocol other
/// than TCP or UDP or a transport header that does not fit.
pub fn rewrite_v4(packet: &mut [u8], side: Side, addr: Ipv4Addr, port: u16, partial: bool) -> bool {
    let plen = packet.len();
    let mut ip = Ipv4Packet::new_unchecked(&mut *packet);
    let (csum_at, min_len) = match ip.next_header() {
        IpProtocol::Tcp => (TCP_CHECKSUM, 20),
        IpProtocol::Udp => (UDP_CHECKSUM, 8),
        _ => return false,
    };
    let hl = usize::from(ip.header_len());
    let total = usize::from(ip.total_len()).min(plen);
    if total < hl + min_len {
        return false;
    }
    let proto: u8 = ip.next_header().into();
    let ttl = ip.ttl();
    let old_addr = match side {
        Side::Dst => ip.dst_addr(),
        Side::Src => ip.src_addr(),
    };
    // The IP header: address and TTL (the TTL shares a 16-bit word with the
    // protocol number).
    let mut c = ip.checksum();
    c = update32(c, old_addr.octets(), addr.octets());
    let new_ttl = ttl.saturating_sub(1);
    c = update16(
        c,
        u16::from_be_bytes([ttl, proto]),
        u16::from_be_bytes([new_ttl, proto]),
    );
    ip.set_checksum(c);
    ip.set_ttl(new_ttl);
    match side {
        Side::Dst => ip.set_dst_addr(addr),
        Side::Src => ip.set_src_addr(addr),
    }

    // The transport header.
    let l4 = &mut packet[hl..total];
    let port_at = match side {
        Side::Dst => DST_PORT,
        Side::Src => SRC_PORT,
    };
    let old_port = u16::from_be_bytes([l4[port_at], l4[port_at + 1]]);
    l4[port_at..port_at + 2].copy_from_slice(&port.to_be_bytes());
    let old_c = u16::from_be_bytes([l4[csum_at], l4[csum_at + 1]]);
    if csum_at == UDP_CHECKSUM && old_c == 0 && !partial {
        // UDP sent without a checksum (RFC 768): as IPVS's UDP handlers,
        // compute the whole one (an update of 0 would be wrong).
        let (src, dst) = {
            let ip = Ipv4Packet::new_unchecked(&packet[..hl]);
            (ip.src_addr(), ip.dst_addr())
        };
        let l4 = &mut packet[hl..total];
        let len = u32::try_from(l4.len()).unwrap_or(0);
        let c = full_udp_checksum(pseudo_header_v4(src, dst, 17, len), l4);
        l4[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
        return true;
    }
    let mut c = old_c;
    if partial {
        // Ports are covered by the sum the NIC or kernel finishes.
        c = update32_partial(c, old_addr.octets(), addr.octets());
    } else {
        c = update32(c, old_addr.octets(), addr.octets());
        c = update16(c, old_port, port);
        if csum_at == UDP_CHECKSUM && c == 0 {
            c = 0xffff; // a computed zero is sent as all ones (RFC 768)
        }
    }
    l4[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
    true
}

/// Rewrites one IPv6 packet in place, as [`rewrite_v4`] does: the address
/// and port on `side`, the hop limit, and the transport checksum (IPv6 has
/// no header checksum). The transport header may follow extension headers
/// (hop-by-hop, routing, destination options).
pub fn rewrite_v6(packet: &mut [u8], side: Side, addr: Ipv6Addr, port: u16, partial: bool) -> bool {
    let plen = packet.len();
    let total = Ipv6Packet::new_unchecked(&*packet).total_len().min(plen);
    // The transport header, past any extension headers.
    let Some((upper, l4_at)) = crate::wire::ipv6::upper_layer(&packet[..total]) else {
        return false;
    };
    let (csum_at, min_len) = match upper {
        IpProtocol::Tcp => (TCP_CHECKSUM, 20),
        IpProtocol::Udp => (UDP_CHECKSUM, 8),
        _ => return false,
    };
    if total < l4_at + min_len {
        return false;
    }
    let mut ip = Ipv6Packet::new_unchecked(&mut *packet);
    let old_addr = match side {
        Side::Dst => ip.dst_addr(),
        Side::Src => ip.src_addr(),
    };
    let hop = ip.hop_limit();
    ip.set_hop_limit(hop.saturating_sub(1));
    match side {
        Side::Dst => ip.set_dst_addr(addr),
        Side::Src => ip.set_src_addr(addr),
    }
    let l4 = &mut packet[l4_at..total];
    let port_at = match side {
        Side::Dst => DST_PORT,
        Side::Src => SRC_PORT,
    };
    let old_port = u16::from_be_bytes([l4[port_at], l4[port_at + 1]]);
    l4[port_at..port_at + 2].copy_from_slice(&port.to_be_bytes());
    let mut c = u16::from_be_bytes([l4[csum_at], l4[csum_at + 1]]);
    if csum_at == UDP_CHECKSUM && c == 0 && !partial {
        // A zero UDP checksum, which IPv6 allows only for tunnels (RFC
        // 6935; a real server's stack drops it): computed whole, as IPVS's
        // UDP handlers do (an update of 0 would be wrong).
        let (src, dst) = {
            let ip = Ipv6Packet::new_unchecked(&packet[..V6_HEADER_LEN]);
            (ip.src_addr(), ip.dst_addr())
        };
        let l4 = &mut packet[l4_at..total];
        let len = u32::try_from(l4.len()).unwrap_or(0);
        let c = full_udp_checksum(pseudo_header_v6(src, dst, 17, len), l4);
        l4[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
        return true;
    }
    if partial {
        c = update128_partial(c, old_addr.octets(), addr.octets());
    } else {
        c = update128(c, old_addr.octets(), addr.octets());
        c = update16(c, old_port, port);
        if csum_at == UDP_CHECKSUM && c == 0 {
            c = 0xffff;
        }
    }
    l4[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
    true
}

/// The whole checksum of the UDP datagram `l4` (its checksum field 0)
/// under the pseudo-header sum `pseudo`; a computed 0 goes as all ones.
fn full_udp_checksum(pseudo: u32, l4: &[u8]) -> u16 {
    match !fold(pseudo + sum(l4)) {
        0 => 0xffff,
        c => c,
    }
}

/// [`rewrite_v4`] or [`rewrite_v6`], by the address's version. False when the
/// packet's version differs.
pub fn rewrite(packet: &mut [u8], side: Side, addr: IpAddr, port: u16, partial: bool) -> bool {
    match (addr, packet.first().map(|b| b >> 4)) {
        (IpAddr::V4(a), Some(4)) => rewrite_v4(packet, side, a, port, partial),
        (IpAddr::V6(a), Some(6)) => rewrite_v6(packet, side, a, port, partial),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A UDP datagram without a checksum gets a whole one, as from IPVS's
    /// UDP handlers (an IPv6 real server would drop it without; over IPv4
    /// both are valid), on both versions; one with a checksum gets it
    /// updated. Either way the result verifies.
    #[test]
    fn udp_zero_checksum_is_computed() {
        for check in [0u16, 0x1234] {
            let mut p = vec![0u8; V6_HEADER_LEN + 8 + 4];
            let src: Ipv6Addr = "2001:db8::2".parse().unwrap();
            {
                let mut ip = Ipv6Packet::new_unchecked(&mut p[..]);
                ip.set_version_defaults();
                ip.set_payload_len(12);
                ip.set_next_header(IpProtocol::Udp);
                ip.set_hop_limit(64);
                ip.set_src_addr(src);
                ip.set_dst_addr("2001:db8::100".parse().unwrap());
            }
            p[V6_HEADER_LEN + 4..V6_HEADER_LEN + 6].copy_from_slice(&12u16.to_be_bytes());
            p[V6_HEADER_LEN + 8..].copy_from_slice(b"ping");
            if check != 0 {
                let c = !fold(
                    pseudo_header_v6(src, "2001:db8::100".parse().unwrap(), 17, 12)
                        + sum(&p[V6_HEADER_LEN..]),
                );
                p[V6_HEADER_LEN + UDP_CHECKSUM..V6_HEADER_LEN + UDP_CHECKSUM + 2]
                    .copy_from_slice(&c.to_be_bytes());
            }
            let rs: Ipv6Addr = "2001:db8:1::11".parse().unwrap();
            assert!(rewrite_v6(&mut p, Side::Dst, rs, 5353, false));
            assert_eq!(Ipv6Packet::new_unchecked(&p[..]).dst_addr(), rs);
            let verify = fold(pseudo_header_v6(src, rs, 17, 12) + sum(&p[V6_HEADER_LEN..]));
            assert_eq!(verify, 0xffff, "checksum {check:#x}: does not verify");
        }
        // IPv4.
        let mut p = vec![0u8; 20 + 8 + 4];
        {
            let mut ip = Ipv4Packet::new_unchecked(&mut p[..]);
            ip.set_version(4);
            ip.set_header_len(20);
            ip.set_total_len(32);
            ip.set_ttl(64);
            ip.set_next_header(IpProtocol::Udp);
            ip.set_src_addr(Ipv4Addr::new(198, 18, 0, 2));
            ip.set_dst_addr(Ipv4Addr::new(198, 19, 0, 100));
            ip.fill_checksum();
        }
        p[24..26].copy_from_slice(&12u16.to_be_bytes());
        p[28..].copy_from_slice(b"ping");
        let rs = Ipv4Addr::new(198, 18, 1, 11);
        assert!(rewrite_v4(&mut p, Side::Dst, rs, 5353, false));
        let c = u16::from_be_bytes([p[26], p[27]]);
        assert_ne!(c, 0, "a checksum now");
        let verify =
            fold(pseudo_header_v4(Ipv4Addr::new(198, 18, 0, 2), rs, 17, 12) + sum(&p[20..]));
        assert_eq!(verify, 0xffff);
    }
}
