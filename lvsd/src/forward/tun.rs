//! IP-in-IP tunneling: the client's packet, unchanged but for its TTL, is
//! wrapped in an outer header to the real server (IPv4 in IPv4, protocol 4,
//! RFC 2003; IPv6 in IPv6, next header 41, RFC 2473). The real server
//! unwraps it, holds the VIP itself, and answers the client directly.
//!
//! The outer header goes in the room before the frame: the virtio-net and
//! Ethernet headers move forward by the outer header's length and the inner
//! packet stays where it is. When the wrapped packet would not fit the
//! outgoing link's MTU, nothing is changed and the caller tells the client
//! (ICMP "fragmentation needed" or ICMPv6 "packet too big").

use super::{dr, Frame, L2_LEN};
use crate::wire::ipv4::{IpProtocol, Ipv4Packet, Ipv4Repr};
use crate::wire::ipv6::{Ipv6Packet, HEADER_LEN as V6_HEADER_LEN};
use crate::wire::vnet;
use crate::wire::vnet::VnetHeader;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Outer header lengths.
pub const V4_OVERHEAD: usize = 20;
pub const V6_OVERHEAD: usize = V6_HEADER_LEN;

/// The result of an encapsulation attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encap {
    Done,
    /// The wrapped packet would exceed the MTU; the client's packets must
    /// shrink to `inner_mtu`.
    TooBig {
        inner_mtu: usize,
    },
    /// The receive buffer has no room in front (cannot happen with lvsd's
    /// buffer layout; counted if it does).
    NoRoom,
}

fn shift_l2(f: &mut Frame, by: usize) -> bool {
    if f.start < by {
        return false;
    }
    let (start, new) = (f.start, f.start - by);
    f.buf.copy_within(start..start + L2_LEN, new);
    f.start = new;
    // A partial checksum's start is counted from the Ethernet header.
    let mut vh = VnetHeader::new_unchecked(&mut f.buf[new..new + vnet::HEADER_LEN]);
    if vh.needs_csum() {
        let cs = vh.csum_start();
        vh.set_csum_start(cs.saturating_add(u16::try_from(by).unwrap_or(0)));
    }
    true
}

/// Wraps the validated IPv4 packet of `f` (total length `inner_len`) in an
/// IPv4 header from `src` to `dst`, for a link of `mtu` bytes.
pub fn encap_v4(
    f: &mut Frame,
    inner_len: usize,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    mtu: usize,
) -> Encap {
    if inner_len + V4_OVERHEAD > mtu {
        return Encap::TooBig {
            inner_mtu: mtu.saturating_sub(V4_OVERHEAD),
        };
    }
    let inner = Ipv4Packet::new_unchecked(&f.l3()[..]);
    // As IPVS's ipip (ip_vs_prepare_tunneled_skb) and RFC 2003: DF, DSCP
    // and ECN copied to the outer header, and the inner TTL once
    // decremented; the identification 0 with DF (as ip_select_ident gives
    // a packet of no socket), else the inner one's.
    let (df, tos) = (inner.dont_frag(), inner.dscp_ecn());
    let ident = if df { 0 } else { inner.ident() };
    let ttl = inner.ttl().saturating_sub(1);
    dr::decrement_ttl(f.l3());
    if !shift_l2(f, V4_OVERHEAD) {
        return Encap::NoRoom;
    }
    let at = f.start + L2_LEN;
    let repr = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::IpIp,
        payload_len: inner_len,
        ttl,
    };
    let mut outer = Ipv4Packet::new_unchecked(&mut f.buf[at..at + V4_OVERHEAD]);
    repr.emit(&mut outer);
    outer.set_dont_frag(df);
    outer.set_dscp_ecn(tos);
    outer.set_ident(ident);
    outer.fill_checksum();
    f.len = L2_LEN + V4_OVERHEAD + inner_len;
    Encap::Done
}

/// Wraps the validated IPv6 packet of `f` (`inner_len` bytes with its
/// header) in an IPv6 header from `src` to `dst`, for a link of `mtu` bytes.
pub fn encap_v6(
    f: &mut Frame,
    inner_len: usize,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    mtu: usize,
) -> Encap {
    if inner_len + V6_OVERHEAD > mtu {
        return Encap::TooBig {
            inner_mtu: mtu.saturating_sub(V6_OVERHEAD),
        };
    }
    let Ok(payload_len) = u16::try_from(inner_len) else {
        return Encap::TooBig {
            inner_mtu: usize::from(u16::MAX) - V6_OVERHEAD,
        };
    };
    let inner = Ipv6Packet::new_unchecked(&f.l3()[..]);
    let (tc, hop) = (inner.traffic_class(), inner.hop_limit().saturating_sub(1));
    dr::decrement_ttl(f.l3());
    if !shift_l2(f, V6_OVERHEAD) {
        return Encap::NoRoom;
    }
    let at = f.start + L2_LEN;
    let mut outer = Ipv6Packet::new_unchecked(&mut f.buf[at..at + V6_OVERHEAD]);
    outer.set_version_defaults();
    outer.set_traffic_class(tc);
    outer.set_payload_len(payload_len);
    outer.set_next_header(IpProtocol::Ipv6);
    outer.set_hop_limit(hop);
    outer.set_src_addr(src);
    outer.set_dst_addr(dst);
    f.len = L2_LEN + V6_OVERHEAD + inner_len;
    Encap::Done
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_v4(buf: &mut [u8], start: usize, total: u16, df: bool) {
        let l3 = start + L2_LEN;
        let mut ip = Ipv4Packet::new_unchecked(&mut buf[l3..l3 + usize::from(total)]);
        ip.set_version(4);
        ip.set_header_len(20);
        ip.set_total_len(total);
        ip.set_ttl(64);
        ip.set_next_header(IpProtocol::Tcp);
        ip.set_dont_frag(df);
        ip.set_src_addr(Ipv4Addr::new(198, 18, 0, 2));
        ip.set_dst_addr(Ipv4Addr::new(198, 19, 0, 100));
        ip.fill_checksum();
        buf[start + vnet::HEADER_LEN + 12] = 0x08; // ethertype IPv4
    }

    #[test]
    fn v4_wraps_in_place() {
        let mut buf = vec![0u8; 2048];
        frame_v4(&mut buf, 64, 40, true);
        let (r, start, len, bytes) = wrap40(&mut buf);
        assert_eq!(r, Encap::Done);
        assert_eq!((start, len), (44, L2_LEN + 60));
        let outer = Ipv4Packet::new_checked(&bytes[L2_LEN..]).unwrap();
        assert!(outer.verify_checksum());
        assert_eq!(outer.next_header(), IpProtocol::IpIp);
        assert!(outer.dont_frag());
        assert_eq!(outer.total_len(), 60);
        let inner = Ipv4Packet::new_checked(outer.payload()).unwrap();
        assert_eq!(inner.ttl(), 63);
        assert!(inner.verify_checksum());
        assert_eq!(bytes[vnet::HEADER_LEN + 12], 0x08);
    }

    /// Wraps the 40-byte packet at offset 64 of `buf` for 198.18.1.11: the
    /// result, the frame's new start and length, and its bytes.
    fn wrap40(buf: &mut [u8]) -> (Encap, usize, usize, Vec<u8>) {
        let mut f = Frame {
            buf,
            start: 64,
            len: L2_LEN + 40,
        };
        let r = encap_v4(
            &mut f,
            40,
            Ipv4Addr::new(198, 18, 1, 1),
            Ipv4Addr::new(198, 18, 1, 11),
            1500,
        );
        (r, f.start, f.len, f.bytes().to_vec())
    }

    /// DSCP, ECN and the decremented TTL carry over to the outer header,
    /// DF only where the inner packet has it, and the identification when
    /// there is no DF (0 with it, as the kernel's).
    #[test]
    fn v4_outer_header_copies_the_marks() {
        for df in [true, false] {
            let mut buf = vec![0u8; 2048];
            frame_v4(&mut buf, 64, 40, df);
            let l3 = 64 + L2_LEN;
            let mut ip = Ipv4Packet::new_unchecked(&mut buf[l3..l3 + 40]);
            ip.set_dscp_ecn(0xb9); // EF, ECT(1)
            ip.set_ident(0x1234);
            ip.fill_checksum();
            let (r, _, _, bytes) = wrap40(&mut buf);
            assert_eq!(r, Encap::Done);
            let outer = Ipv4Packet::new_checked(&bytes[L2_LEN..]).unwrap();
            assert!(outer.verify_checksum());
            let ident = if df { 0 } else { 0x1234 };
            assert_eq!(
                (
                    outer.dscp_ecn(),
                    outer.ident(),
                    outer.dont_frag(),
                    outer.ttl()
                ),
                (0xb9, ident, df, 63)
            );
        }
    }

    #[test]
    fn v6_outer_header_copies_the_traffic_class() {
        let mut buf = vec![0u8; 2048];
        let l3 = 64 + L2_LEN;
        let mut ip = Ipv6Packet::new_unchecked(&mut buf[l3..l3 + 60]);
        ip.set_version_defaults();
        ip.set_traffic_class(0xb9);
        ip.set_payload_len(20);
        ip.set_next_header(IpProtocol::Tcp);
        ip.set_hop_limit(64);
        assert_eq!(ip.traffic_class(), 0xb9);
        assert_eq!(&buf[l3..l3 + 2], &[0x6b, 0x90], "version 6 kept");
        let mut f = Frame {
            buf: &mut buf,
            start: 64,
            len: L2_LEN + 60,
        };
        let any = "2001:db8::1".parse().unwrap();
        assert_eq!(encap_v6(&mut f, 60, any, any, 1500), Encap::Done);
        let outer = Ipv6Packet::new_unchecked(f.l3());
        assert_eq!(
            (outer.traffic_class(), outer.next_header()),
            (0xb9, IpProtocol::Ipv6)
        );
    }

    #[test]
    fn v4_too_big() {
        let mut buf = vec![0u8; 4096];
        frame_v4(&mut buf, 64, 1500, true);
        let mut f = Frame {
            buf: &mut buf,
            start: 64,
            len: L2_LEN + 1500,
        };
        let r = encap_v4(
            &mut f,
            1500,
            Ipv4Addr::new(1, 1, 1, 1),
            Ipv4Addr::new(2, 2, 2, 2),
            1500,
        );
        assert_eq!(r, Encap::TooBig { inner_mtu: 1480 });
        assert_eq!(f.start, 64, "nothing changed");
    }
}
