//! IPv6 fixed headers (RFC 8200 section 3).
//!
//! [`Ipv6Packet::new_checked`] guarantees: version 6, the 40-byte header
//! inside the buffer, and header + payload length <= buffer length (longer
//! buffers, e.g. Ethernet padding, are fine: [`Ipv6Packet::payload`] ends at
//! the payload length). Extension headers are not walked: the next-header
//! field is reported as it is.

use super::ipv4::IpProtocol;
use super::{clamped, clamped_mut, read_u16, write_u16, Error, Result};
use core::net::Ipv6Addr;

mod field {
    use crate::wire::Field;

    pub const VER_TC_FLOW: Field = 0..4;
    pub const LENGTH: Field = 4..6;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Field = 8..24;
    pub const DST_ADDR: Field = 24..40;
}

/// Length of the fixed header.
pub const HEADER_LEN: usize = 40;
/// The minimum link MTU every IPv6 link has (RFC 8200 section 5).
pub const MIN_MTU: usize = 1280;

/// A view of an IPv6 packet.
#[derive(Debug, Clone)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv6Packet { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    pub fn check_len(&self) -> Result<()> {
        let data = self.buffer.as_ref();
        if data.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if data[0] >> 4 != 6 {
            return Err(Error::Malformed);
        }
        if HEADER_LEN + usize::from(self.payload_len()) > data.len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn payload_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Header plus payload.
    pub fn total_len(&self) -> usize {
        HEADER_LEN + usize::from(self.payload_len())
    }

    /// The traffic class (DSCP and ECN).
    pub fn traffic_class(&self) -> u8 {
        let b = &self.buffer.as_ref()[field::VER_TC_FLOW];
        (b[0] << 4) | (b[1] >> 4)
    }

    pub fn next_header(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[field::NEXT_HEADER])
    }

    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    pub fn src_addr(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::SRC_ADDR]);
        Ipv6Addr::from(a)
    }

    pub fn dst_addr(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::DST_ADDR]);
        Ipv6Addr::from(a)
    }

    /// The payload, up to the payload length.
    pub fn payload(&self) -> &[u8] {
        let end = self.total_len();
        clamped(self.buffer.as_ref(), HEADER_LEN, end)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Writes version 6, traffic class 0 and flow label 0.
    pub fn set_traffic_class(&mut self, tc: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_TC_FLOW];
        b[0] = (b[0] & 0xf0) | (tc >> 4);
        b[1] = (b[1] & 0x0f) | (tc << 4);
    }

    pub fn set_version_defaults(&mut self) {
        self.buffer.as_mut()[field::VER_TC_FLOW].copy_from_slice(&[0x60, 0, 0, 0]);
    }

    pub fn set_payload_len(&mut self, len: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH, len);
    }

    pub fn set_next_header(&mut self, p: IpProtocol) {
        self.buffer.as_mut()[field::NEXT_HEADER] = p.into();
    }

    pub fn set_hop_limit(&mut self, h: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = h;
    }

    pub fn set_src_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&a.octets());
    }

    pub fn set_dst_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&a.octets());
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.total_len();
        clamped_mut(self.buffer.as_mut(), HEADER_LEN, end)
    }
}

/// Where the upper-layer header of an IPv6 packet starts, past the
/// extension headers a router or host may put before it (RFC 8200 4):
/// hop-by-hop options (0), routing (43) and destination options (60) are
/// walked; anything else, the fragment header (44) included, is the
/// answer. None when a header runs past the packet, or after eight of them.
pub fn upper_layer(packet: &[u8]) -> Option<(IpProtocol, usize)> {
    let mut next = IpProtocol::from(*packet.get(6)?);
    let mut at = HEADER_LEN;
    for _ in 0..8 {
        match u8::from(next) {
            0 | 43 | 60 => {
                let len = (usize::from(*packet.get(at + 1)?) + 1) * 8;
                next = IpProtocol::from(*packet.get(at)?);
                at += len;
                if at > packet.len() {
                    return None;
                }
            }
            _ => return Some((next, at)),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upper_layer_walks_extension_headers() {
        let mut p = vec![0u8; 40];
        p[0] = 0x60;
        p[6] = 6;
        assert_eq!(upper_layer(&p), Some((IpProtocol::Tcp, 40)));
        // Destination options (8 bytes), then hop-by-hop (16), then UDP.
        p[6] = 60;
        p.extend_from_slice(&[0, 0, 1, 4, 0, 0, 0, 0]);
        p.extend_from_slice(&[17, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(upper_layer(&p), Some((IpProtocol::Udp, 64)));
        // A fragment header is an answer, not walked.
        p[40] = 44;
        assert_eq!(upper_layer(&p), Some((IpProtocol::Unknown(44), 48)));
        // Cut short.
        assert_eq!(upper_layer(&p[..44]), None);
    }

    // A TCP SYN header from fd00:198:18::2 to fd00:198:19::100, payload 20.
    static PACKET: [u8; 60] = [
        0x60, 0x00, 0x00, 0x00, // version, class, flow
        0x00, 0x14, 0x06, 0x40, // length 20, TCP, hop limit 64
        0xfd, 0x00, 0x01, 0x98, 0x00, 0x18, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, // src
        0xfd, 0x00, 0x01, 0x98, 0x00, 0x19, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00, // dst
        0x9c, 0x40, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
    ];

    #[test]
    fn deconstruct() {
        let p = Ipv6Packet::new_checked(&PACKET[..]).unwrap();
        assert_eq!(p.payload_len(), 20);
        assert_eq!(p.next_header(), IpProtocol::Tcp);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src_addr(), "fd00:198:18::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(
            p.dst_addr(),
            "fd00:198:19::100".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(p.payload().len(), 20);
    }

    #[test]
    fn construct() {
        let mut buf = [0u8; 60];
        let mut p = Ipv6Packet::new_unchecked(&mut buf[..]);
        p.set_version_defaults();
        p.set_payload_len(20);
        p.set_next_header(IpProtocol::Tcp);
        p.set_hop_limit(64);
        p.set_src_addr("fd00:198:18::2".parse().unwrap());
        p.set_dst_addr("fd00:198:19::100".parse().unwrap());
        p.payload_mut().copy_from_slice(&PACKET[40..]);
        assert_eq!(buf, PACKET);
    }

    #[test]
    fn truncated_and_overlong() {
        assert_eq!(
            Ipv6Packet::new_checked(&PACKET[..39]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            Ipv6Packet::new_checked(&PACKET[..59]).unwrap_err(),
            Error::Truncated
        );
        let mut long = PACKET.to_vec();
        long.extend([0; 6]);
        let p = Ipv6Packet::new_checked(&long[..]).unwrap();
        assert_eq!(p.payload().len(), 20);
        let mut v4 = PACKET;
        v4[0] = 0x45;
        assert_eq!(
            Ipv6Packet::new_checked(&v4[..]).unwrap_err(),
            Error::Malformed
        );
    }
}
