//! ICMP (RFC 792) and ICMPv6 (RFC 4443) messages: the common 8-byte header
//! (type, code, checksum, 4 bytes that depend on the type) and the body.
//!
//! For error messages the body begins with the offending packet's IP header
//! and at least its first 8 transport bytes (the ports), which is what the
//! director needs to find the connection an error is about.

use super::checksum;
use super::{clamped, clamped_mut, read_u16, write_u16, Error, Result};
use core::net::Ipv6Addr;

mod field {
    use crate::wire::Field;

    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    pub const REST: Field = 4..8;
}

pub const HEADER_LEN: usize = 8;

/// ICMPv4 types lvsd acts on.
pub mod v4 {
    pub const ECHO_REPLY: u8 = 0;
    pub const DEST_UNREACHABLE: u8 = 3;
    pub const SOURCE_QUENCH: u8 = 4;
    pub const ECHO_REQUEST: u8 = 8;
    pub const TIME_EXCEEDED: u8 = 11;
    pub const PARAMETER_PROBLEM: u8 = 12;
    /// Destination unreachable, fragmentation needed and DF set (RFC 1191).
    pub const CODE_FRAG_NEEDED: u8 = 4;
    /// Destination unreachable, port unreachable.
    pub const CODE_PORT_UNREACHABLE: u8 = 3;

    /// Whether the type carries an offending packet.
    pub fn is_error(t: u8) -> bool {
        matches!(
            t,
            DEST_UNREACHABLE | SOURCE_QUENCH | TIME_EXCEEDED | PARAMETER_PROBLEM
        )
    }
}

/// ICMPv6 types lvsd acts on.
pub mod v6 {
    pub const DEST_UNREACHABLE: u8 = 1;
    /// Destination unreachable, port unreachable.
    pub const CODE_PORT_UNREACHABLE: u8 = 4;
    pub const PACKET_TOO_BIG: u8 = 2;
    pub const TIME_EXCEEDED: u8 = 3;
    pub const PARAMETER_PROBLEM: u8 = 4;
    pub const ECHO_REQUEST: u8 = 128;
    pub const ECHO_REPLY: u8 = 129;
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    pub const NEIGHBOR_ADVERT: u8 = 136;
    /// NDP option: target link-layer address (RFC 4861 section 4.6.1).
    pub const OPT_TARGET_LL: u8 = 2;
    /// NDP option: source link-layer address.
    pub const OPT_SOURCE_LL: u8 = 1;
    /// Neighbor advertisement flags: solicited, override.
    pub const NA_SOLICITED_OVERRIDE: u32 = 0x6000_0000;

    /// Whether the type carries an offending packet.
    pub fn is_error(t: u8) -> bool {
        t < 128
    }
}

/// A view of an ICMP or ICMPv6 message.
#[derive(Debug, Clone)]
pub struct IcmpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> IcmpPacket<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        IcmpPacket { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(Self::new_unchecked(buffer))
    }

    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The four type-specific header bytes (identifier and sequence, MTU, ...).
    pub fn rest(&self) -> [u8; 4] {
        let mut r = [0u8; 4];
        r.copy_from_slice(&self.buffer.as_ref()[field::REST]);
        r
    }

    pub fn body(&self) -> &[u8] {
        clamped(self.buffer.as_ref(), HEADER_LEN, usize::MAX)
    }

    /// Whether an ICMPv4 checksum is right.
    pub fn verify_checksum_v4(&self) -> bool {
        checksum::checksum(self.buffer.as_ref()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> IcmpPacket<T> {
    pub fn set_msg_type(&mut self, t: u8) {
        self.buffer.as_mut()[field::TYPE] = t;
    }

    pub fn set_msg_code(&mut self, c: u8) {
        self.buffer.as_mut()[field::CODE] = c;
    }

    pub fn set_checksum(&mut self, c: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, c);
    }

    pub fn set_rest(&mut self, r: [u8; 4]) {
        self.buffer.as_mut()[field::REST].copy_from_slice(&r);
    }

    pub fn body_mut(&mut self) -> &mut [u8] {
        clamped_mut(self.buffer.as_mut(), HEADER_LEN, usize::MAX)
    }

    /// Computes the ICMPv4 checksum over the whole message.
    pub fn fill_checksum_v4(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(c);
    }

    /// Computes the ICMPv6 checksum (with the IPv6 pseudo-header).
    pub fn fill_checksum_v6(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        self.set_checksum(0);
        let data = self.buffer.as_ref();
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let sum = checksum::pseudo_header_v6(src, dst, 58, len) + checksum::sum(data);
        let c = !checksum::fold(sum);
        self.set_checksum(c);
    }
}

/// The ICMPv6 checksum of `msg` between `src` and `dst` verifies.
pub fn verify_checksum_v6(msg: &[u8], src: Ipv6Addr, dst: Ipv6Addr) -> bool {
    let len = u32::try_from(msg.len()).unwrap_or(u32::MAX);
    let sum = checksum::pseudo_header_v6(src, dst, 58, len) + checksum::sum(msg);
    checksum::fold(sum) == 0xffff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_request_v4() {
        let mut m = [8u8, 0, 0, 0, 0x12, 0x34, 0, 1, b'h', b'i'];
        let mut p = IcmpPacket::new_checked(&mut m[..]).unwrap();
        p.fill_checksum_v4();
        assert!(p.verify_checksum_v4());
        assert_eq!(p.msg_type(), v4::ECHO_REQUEST);
        assert_eq!(p.rest(), [0x12, 0x34, 0, 1]);
        assert_eq!(p.body(), b"hi");
        assert!(IcmpPacket::new_checked(&m[..7]).is_err());
    }

    #[test]
    fn v6_checksum() {
        let src: Ipv6Addr = "fd00:198:18::2".parse().unwrap();
        let dst: Ipv6Addr = "fd00:198:19::100".parse().unwrap();
        let mut m = [128u8, 0, 0, 0, 0, 1, 0, 1, 1, 2, 3];
        let mut p = IcmpPacket::new_unchecked(&mut m[..]);
        p.fill_checksum_v6(src, dst);
        assert!(verify_checksum_v6(&m, src, dst));
        m[9] ^= 1;
        assert!(!verify_checksum_v6(&m, src, dst));
        assert!(v6::is_error(v6::PACKET_TOO_BIG) && !v6::is_error(v6::ECHO_REQUEST));
    }
}
