//! UDP datagrams (RFC 768).
//!
//! [`UdpPacket::new_checked`] guarantees at least 8 bytes and a length field
//! between 8 and the buffer length; bytes after the length (padding) are not
//! part of the datagram and are left out of the payload and the checksum.
//!
//! Over IPv4 a checksum of 0 means "none was computed"; a computed 0 is sent
//! as `0xffff`. Code that updates a checksum incrementally must do the same:
//! leave a 0 field alone, and store an updated 0 as `0xffff`.

use super::checksum;
use super::ipv4::IpProtocol;
use super::{read_u16, write_u16, Error, Result};
use core::net::Ipv4Addr;

mod field {
    use crate::wire::Field;

    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const LENGTH: Field = 4..6;
    pub const CHECKSUM: Field = 6..8;
}

/// Length of the UDP header.
pub const HEADER_LEN: usize = field::CHECKSUM.end;

/// A view of a UDP datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps `buffer` without checking it; accessors panic if it is shorter
    /// than [`HEADER_LEN`].
    pub const fn new_unchecked(buffer: T) -> UdpPacket<T> {
        UdpPacket { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<UdpPacket<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Truncated` if the buffer is shorter than 8 bytes or than the length
    /// field; `Malformed` if the length field is below 8.
    pub fn check_len(&self) -> Result<()> {
        let buf_len = self.buffer.as_ref().len();
        if buf_len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let len = usize::from(self.len());
        if len < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if len > buf_len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn src_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::SRC_PORT)
    }

    pub fn dst_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// The length field: header plus payload.
    pub fn len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Whether the payload is empty (the length field is 8 or less).
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= HEADER_LEN
    }

    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The datagram: the buffer up to the length field.
    pub fn datagram(&self) -> &[u8] {
        super::clamped(self.buffer.as_ref(), 0, usize::from(self.len()))
    }

    /// The bytes from 8 to the length field.
    pub fn payload(&self) -> &[u8] {
        super::clamped(self.buffer.as_ref(), HEADER_LEN, usize::from(self.len()))
    }

    /// Whether the checksum is right; a checksum of 0 (none) is accepted.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        self.checksum() == 0 || datagram_sum(self.datagram(), src, dst) == 0xffff
    }
}

/// Folded sum of the pseudo-header and `data`, the datagram with its checksum
/// field as it stands. The pseudo-header length is the datagram's length,
/// which equals the length field once [`UdpPacket::check_len`] has passed.
fn datagram_sum(data: &[u8], src: Ipv4Addr, dst: Ipv4Addr) -> u16 {
    let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
    let pseudo = checksum::pseudo_header_v4(src, dst, IpProtocol::Udp.into(), len);
    checksum::fold(pseudo + checksum::sum(data))
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    pub fn set_src_port(&mut self, port: u16) {
        write_u16(self.buffer.as_mut(), field::SRC_PORT, port);
    }

    pub fn set_dst_port(&mut self, port: u16) {
        write_u16(self.buffer.as_mut(), field::DST_PORT, port);
    }

    pub fn set_len(&mut self, len: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH, len);
    }

    pub fn set_checksum(&mut self, checksum: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, checksum);
    }

    /// Computes the checksum over the pseudo-header and the datagram (up to
    /// the length field) and stores it, a computed 0 as `0xffff`.
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let check = match !datagram_sum(self.datagram(), src, dst) {
            0 => 0xffff,
            c => c,
        };
        self.set_checksum(check);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        super::clamped_mut(self.buffer.as_mut(), HEADER_LEN, end)
    }
}

/// Writes a UDP header at the start of `buf`, for a datagram of exactly
/// `buf.len()` bytes (the payload is what follows), checksum 0 (call
/// [`UdpPacket::fill_checksum`] after writing the payload). `Truncated` if
/// `buf` is shorter than 8 bytes; `Malformed` if longer than 65535.
pub fn emit_datagram(buf: &mut [u8], src_port: u16, dst_port: u16) -> Result<()> {
    let len = u16::try_from(buf.len()).map_err(|_| Error::Malformed)?;
    let header = buf.get_mut(..HEADER_LEN).ok_or(Error::Truncated)?;
    let mut packet = UdpPacket::new_unchecked(header);
    packet.set_src_port(src_port);
    packet.set_dst_port(dst_port);
    packet.set_len(len);
    packet.set_checksum(0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
    const DNS_VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);

    /// A DNS query for example.com A, 198.51.100.7:40000 -> 192.0.2.53:53;
    /// 37 bytes, so the checksum pads an odd byte.
    static QUERY_BYTES: [u8; 37] = [
        0x9c, 0x40, // source port 40000
        0x00, 0x35, // destination port 53
        0x00, 0x25, // length 37
        0xfb, 0x82, // checksum
        0xab, 0xcd, 0x01, 0x00, // DNS id, flags RD
        0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // counts: 1 question
        0x07, b'e', b'x', b'a', b'm', b'p', b'l', b'e', // "example"
        0x03, b'c', b'o', b'm', 0x00, // "com", root
        0x00, 0x01, 0x00, 0x01, // type A, class IN
    ];

    #[test]
    fn deconstruct() {
        let packet = UdpPacket::new_checked(&QUERY_BYTES[..]).unwrap();
        assert_eq!(packet.src_port(), 40000);
        assert_eq!(packet.dst_port(), 53);
        assert_eq!(packet.len(), 37);
        assert!(!packet.is_empty());
        assert_eq!(packet.checksum(), 0xfb82);
        assert_eq!(packet.payload(), &QUERY_BYTES[8..]);
        assert!(packet.verify_checksum(CIP, DNS_VIP));
        assert!(!packet.verify_checksum(CIP, Ipv4Addr::new(192, 0, 2, 54)));
    }

    #[test]
    fn construct() {
        let mut bytes = [0xa5u8; 37];
        bytes[8..].copy_from_slice(&QUERY_BYTES[8..]);
        emit_datagram(&mut bytes, 40000, 53).unwrap();
        UdpPacket::new_checked(&mut bytes[..])
            .unwrap()
            .fill_checksum(CIP, DNS_VIP);
        assert_eq!(bytes, QUERY_BYTES);
    }

    #[test]
    fn construct_with_setters() {
        let mut bytes = [0u8; 37];
        let mut packet = UdpPacket::new_unchecked(&mut bytes[..]);
        packet.set_src_port(40000);
        packet.set_dst_port(53);
        packet.set_len(37);
        packet.payload_mut().copy_from_slice(&QUERY_BYTES[8..]);
        packet.fill_checksum(CIP, DNS_VIP);
        assert_eq!(bytes, QUERY_BYTES);
    }

    #[test]
    fn no_checksum_is_accepted() {
        let mut bytes = QUERY_BYTES;
        bytes[6..8].copy_from_slice(&[0, 0]);
        let packet = UdpPacket::new_checked(&bytes[..]).unwrap();
        assert!(packet.verify_checksum(CIP, DNS_VIP));
        assert!(packet.verify_checksum(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST));
    }

    #[test]
    fn computed_zero_is_sent_as_ffff() {
        // With a two-byte payload p = 0 the checksum is c; with p = c the sum
        // becomes 0xffff and the computed checksum 0.
        let mut bytes = [0u8; 10];
        emit_datagram(&mut bytes, 1, 2).unwrap();
        let mut packet = UdpPacket::new_checked(&mut bytes[..]).unwrap();
        packet.fill_checksum(CIP, DNS_VIP);
        let c = packet.checksum();
        packet.payload_mut().copy_from_slice(&c.to_be_bytes());
        packet.fill_checksum(CIP, DNS_VIP);
        assert_eq!(packet.checksum(), 0xffff);
        assert!(packet.verify_checksum(CIP, DNS_VIP));
    }

    #[test]
    fn truncated() {
        for n in 0..37 {
            assert_eq!(
                UdpPacket::new_checked(&QUERY_BYTES[..n]).unwrap_err(),
                Error::Truncated,
                "{n}"
            );
        }
        assert_eq!(emit_datagram(&mut [0u8; 7], 1, 2), Err(Error::Truncated));
        assert_eq!(
            emit_datagram(&mut vec![0u8; 65_536], 1, 2),
            Err(Error::Malformed)
        );
    }

    #[test]
    fn malformed() {
        for len in 0..8u8 {
            let mut bytes = QUERY_BYTES;
            bytes[4..6].copy_from_slice(&[0, len]);
            assert_eq!(
                UdpPacket::new_checked(&bytes[..]).unwrap_err(),
                Error::Malformed
            );
        }
        // Exactly a header is a valid empty datagram.
        let header = [0x9c, 0x40, 0x00, 0x35, 0x00, 0x08, 0x00, 0x00];
        let packet = UdpPacket::new_checked(&header[..]).unwrap();
        assert!(packet.is_empty());
        assert_eq!(packet.payload(), &[] as &[u8]);
    }

    #[test]
    fn overlong() {
        // Padding after the length field is neither payload nor summed.
        let mut bytes = [0xeeu8; 46];
        bytes[..37].copy_from_slice(&QUERY_BYTES);
        let packet = UdpPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.payload(), &QUERY_BYTES[8..]);
        assert_eq!(packet.datagram(), &QUERY_BYTES[..]);
        assert!(packet.verify_checksum(CIP, DNS_VIP));
        let mut packet = UdpPacket::new_checked(&mut bytes[..]).unwrap();
        packet.fill_checksum(CIP, DNS_VIP);
        assert_eq!(packet.checksum(), 0xfb82);
    }

    #[test]
    fn setters_after_check_cannot_make_accessors_panic() {
        let mut bytes = QUERY_BYTES;
        let mut packet = UdpPacket::new_checked(&mut bytes[..]).unwrap();
        packet.set_len(0xffff);
        assert_eq!(packet.payload().len(), 29);
        packet.set_len(3);
        assert_eq!(packet.payload(), &[] as &[u8]);
        assert_eq!(packet.payload_mut().len(), 0);
        packet.fill_checksum(CIP, DNS_VIP);
        let _ = packet.verify_checksum(CIP, DNS_VIP);
    }

    proptest! {
        #[test]
        fn nat_rewrite_incremental_equals_recompute(
            new_addr in any::<[u8; 4]>(),
            new_port in any::<u16>(),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut bytes = vec![0u8; 8 + payload.len()];
            bytes[8..].copy_from_slice(&payload);
            emit_datagram(&mut bytes, 40000, 53).unwrap();
            let mut packet = UdpPacket::new_checked(&mut bytes[..]).unwrap();
            packet.fill_checksum(CIP, DNS_VIP);
            let rip = Ipv4Addr::from(new_addr);
            let check = checksum::update32(packet.checksum(), DNS_VIP.octets(), new_addr);
            let check = checksum::update16(check, 53, new_port);
            let check = if check == 0 { 0xffff } else { check };
            packet.set_dst_port(new_port);
            packet.set_checksum(check);
            prop_assert!(packet.verify_checksum(CIP, rip));
            packet.fill_checksum(CIP, rip);
            prop_assert_eq!(packet.checksum(), check);
        }

        #[test]
        fn emit_round_trip(ports in any::<(u16, u16)>(), payload in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut bytes = vec![0u8; 8 + payload.len()];
            bytes[8..].copy_from_slice(&payload);
            emit_datagram(&mut bytes, ports.0, ports.1).unwrap();
            let mut packet = UdpPacket::new_checked(&mut bytes[..]).unwrap();
            packet.fill_checksum(CIP, DNS_VIP);
            prop_assert!(packet.checksum() != 0);
            prop_assert!(packet.verify_checksum(CIP, DNS_VIP));
            prop_assert_eq!((packet.src_port(), packet.dst_port()), ports);
            prop_assert_eq!(packet.payload(), &payload[..]);
        }

        #[test]
        fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(packet) = UdpPacket::new_checked(&bytes[..]) {
                prop_assert_eq!(packet.payload().len() + 8, usize::from(packet.len()));
                let _ = packet.verify_checksum(CIP, DNS_VIP);
            }
        }
    }
}
