//! IPv4 headers (RFC 791).
//!
//! [`Ipv4Packet::new_checked`] guarantees: version 4, IHL >= 5, the header
//! (options included) inside the buffer, and header length <= total length
//! <= buffer length. A buffer longer than the total length (Ethernet padding)
//! is accepted; [`Ipv4Packet::payload`] ends at the total length.

use super::checksum;
use super::{read_ipv4, read_u16, write_u16, Error, Result};
use core::fmt;
use core::net::Ipv4Addr;

/// The IP protocol number (IANA "Assigned Internet Protocol Numbers"), the
/// IPv4 Protocol field. Others are kept as `Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpProtocol {
    /// 1.
    Icmp,
    /// 4: IP in IP (RFC 2003), what the tunnel forwarding method sends.
    IpIp,
    /// 6.
    Tcp,
    /// 17.
    Udp,
    /// 41: IPv6 in IPv4.
    Ipv6,
    /// 58.
    Icmpv6,
    Unknown(u8),
}

impl From<u8> for IpProtocol {
    fn from(value: u8) -> Self {
        match value {
            1 => IpProtocol::Icmp,
            4 => IpProtocol::IpIp,
            6 => IpProtocol::Tcp,
            17 => IpProtocol::Udp,
            41 => IpProtocol::Ipv6,
            58 => IpProtocol::Icmpv6,
            other => IpProtocol::Unknown(other),
        }
    }
}

impl From<IpProtocol> for u8 {
    fn from(value: IpProtocol) -> Self {
        match value {
            IpProtocol::Icmp => 1,
            IpProtocol::IpIp => 4,
            IpProtocol::Tcp => 6,
            IpProtocol::Udp => 17,
            IpProtocol::Ipv6 => 41,
            IpProtocol::Icmpv6 => 58,
            IpProtocol::Unknown(other) => other,
        }
    }
}

impl fmt::Display for IpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpProtocol::Icmp => write!(f, "ICMP"),
            IpProtocol::IpIp => write!(f, "IPIP"),
            IpProtocol::Tcp => write!(f, "TCP"),
            IpProtocol::Udp => write!(f, "UDP"),
            IpProtocol::Ipv6 => write!(f, "IPv6"),
            IpProtocol::Icmpv6 => write!(f, "ICMPv6"),
            IpProtocol::Unknown(v) => write!(f, "protocol {v}"),
        }
    }
}

mod field {
    use crate::wire::Field;

    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Field = 2..4;
    pub const IDENT: Field = 4..6;
    pub const FLG_OFF: Field = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Field = 10..12;
    pub const SRC_ADDR: Field = 12..16;
    pub const DST_ADDR: Field = 16..20;
}

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = field::DST_ADDR.end;
/// Largest IPv4 header: IHL 15, 60 bytes.
pub const MAX_HEADER_LEN: usize = 60;

/// Don't Fragment, in the flags/fragment-offset word.
const DF: u16 = 0x4000;
/// More Fragments.
const MF: u16 = 0x2000;
/// Fragment offset in 8-byte units.
const OFFSET_MASK: u16 = 0x1fff;

/// A view of an IPv4 packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps `buffer` without checking it; accessors panic if it is shorter
    /// than [`HEADER_LEN`].
    pub const fn new_unchecked(buffer: T) -> Ipv4Packet<T> {
        Ipv4Packet { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Ipv4Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Truncated` if the buffer is shorter than 20 bytes, than the header
    /// length or than the total length; `Malformed` if the version is not 4,
    /// IHL is below 5 or the total length is below the header length.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 4 {
            return Err(Error::Malformed);
        }
        let header_len = usize::from(self.header_len());
        if header_len < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if header_len > len {
            return Err(Error::Truncated);
        }
        let total_len = usize::from(self.total_len());
        if total_len < header_len {
            return Err(Error::Malformed);
        }
        if total_len > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole buffer, padding included.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL * 4, at most 60), options included.
    pub fn header_len(&self) -> u8 {
        (self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// The former TOS byte: DSCP in the top six bits, ECN in the low two.
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    /// Total length of the datagram, header included.
    pub fn total_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH)
    }

    pub fn ident(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::IDENT)
    }

    pub fn dont_frag(&self) -> bool {
        read_u16(self.buffer.as_ref(), field::FLG_OFF) & DF != 0
    }

    pub fn more_frags(&self) -> bool {
        read_u16(self.buffer.as_ref(), field::FLG_OFF) & MF != 0
    }

    /// Fragment offset in bytes (the field counts 8-byte units).
    pub fn frag_offset(&self) -> u16 {
        (read_u16(self.buffer.as_ref(), field::FLG_OFF) & OFFSET_MASK) << 3
    }

    /// A fragment of a larger datagram: MF set or a non-zero offset.
    pub fn is_fragment(&self) -> bool {
        read_u16(self.buffer.as_ref(), field::FLG_OFF) & (MF | OFFSET_MASK) != 0
    }

    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    pub fn next_header(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[field::PROTOCOL])
    }

    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    pub fn src_addr(&self) -> Ipv4Addr {
        read_ipv4(self.buffer.as_ref(), field::SRC_ADDR)
    }

    pub fn dst_addr(&self) -> Ipv4Addr {
        read_ipv4(self.buffer.as_ref(), field::DST_ADDR)
    }

    /// The header, options included.
    pub fn header_bytes(&self) -> &[u8] {
        super::clamped(self.buffer.as_ref(), 0, usize::from(self.header_len()))
    }

    /// Whether the header checksum is right.
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(self.header_bytes()) == 0
    }

    /// The bytes from the end of the header to the total length (padding
    /// after the total length excluded).
    pub fn payload(&self) -> &[u8] {
        super::clamped(
            self.buffer.as_ref(),
            usize::from(self.header_len()),
            usize::from(self.total_len()),
        )
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets the version nibble from the low 4 bits of `version`.
    pub fn set_version(&mut self, version: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0x0f) | ((version & 0x0f) << 4);
    }

    /// Sets IHL from a length in bytes, rounded down to 4-byte words and
    /// capped at 60.
    pub fn set_header_len(&mut self, len: u8) {
        let words = (len / 4).min(15);
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0xf0) | words;
    }

    pub fn set_dscp_ecn(&mut self, value: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = value;
    }

    pub fn set_total_len(&mut self, len: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH, len);
    }

    pub fn set_ident(&mut self, ident: u16) {
        write_u16(self.buffer.as_mut(), field::IDENT, ident);
    }

    fn set_flg_off_bits(&mut self, mask: u16, value: u16) {
        let data = self.buffer.as_mut();
        let word = (read_u16(data, field::FLG_OFF) & !mask) | (value & mask);
        write_u16(data, field::FLG_OFF, word);
    }

    pub fn set_dont_frag(&mut self, value: bool) {
        self.set_flg_off_bits(DF, if value { DF } else { 0 });
    }

    pub fn set_more_frags(&mut self, value: bool) {
        self.set_flg_off_bits(MF, if value { MF } else { 0 });
    }

    /// Sets the fragment offset from a byte count (rounded down to 8 bytes).
    pub fn set_frag_offset(&mut self, bytes: u16) {
        self.set_flg_off_bits(OFFSET_MASK, bytes >> 3);
    }

    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    pub fn set_next_header(&mut self, protocol: IpProtocol) {
        self.buffer.as_mut()[field::PROTOCOL] = protocol.into();
    }

    pub fn set_checksum(&mut self, checksum: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, checksum);
    }

    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }

    /// Computes the header checksum and stores it.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let check = checksum::checksum(self.header_bytes());
        self.set_checksum(check);
    }

    /// The header, options included, for rewriting options in place.
    pub fn header_bytes_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.header_len());
        super::clamped_mut(self.buffer.as_mut(), 0, end)
    }

    /// Mutable form of [`payload`](Self::payload).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (start, end) = (
            usize::from(self.header_len()),
            usize::from(self.total_len()),
        );
        super::clamped_mut(self.buffer.as_mut(), start, end)
    }
}

/// An unfragmented IPv4 header without options, owned and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    pub src_addr: Ipv4Addr,
    pub dst_addr: Ipv4Addr,
    pub next_header: IpProtocol,
    /// Bytes after the header.
    pub payload_len: usize,
    pub ttl: u8,
}

impl Ipv4Repr {
    /// Reads a packet after checking its lengths again. `Malformed` for a
    /// wrong header checksum or a fragment. Options are skipped: the header
    /// [`emit`](Self::emit) writes back has none.
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>) -> Result<Ipv4Repr> {
        packet.check_len()?;
        if !packet.verify_checksum() || packet.is_fragment() {
            return Err(Error::Malformed);
        }
        Ok(Ipv4Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: usize::from(packet.total_len()) - usize::from(packet.header_len()),
            ttl: packet.ttl(),
        })
    }

    /// Bytes [`emit`](Self::emit) writes: 20.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes a 20-byte header into `packet`: DSCP/ECN 0, ident 0, DF clear,
    /// offset 0, total length 20 + `payload_len`, and a correct checksum. The
    /// payload is left to the caller. A `payload_len` over 65515 (more than
    /// IPv4 can carry; [`parse`](Self::parse) never yields one) is written as
    /// total length 65535. Panics if the buffer is shorter than 20 bytes, as
    /// any setter of an unchecked view does.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv4Packet<T>) {
        let total = u16::try_from(HEADER_LEN.saturating_add(self.payload_len)).unwrap_or(u16::MAX);
        packet.set_version(4);
        packet.set_header_len(20);
        packet.set_dscp_ecn(0);
        packet.set_total_len(total);
        packet.set_ident(0);
        // Flags (reserved, DF, MF) and offset all zero.
        write_u16(packet.buffer.as_mut(), field::FLG_OFF, 0);
        packet.set_ttl(self.ttl);
        packet.set_next_header(self.next_header);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A TCP SYN from 198.51.100.7 to 192.0.2.10, header plus the first 8
    /// bytes of the TCP header (the rest is in tcp.rs's tests).
    static SYN_BYTES: [u8; 28] = [
        0x45, // version 4, IHL 5
        0x00, // DSCP/ECN
        0x00, 0x1c, // total length 28
        0x1c, 0x46, // identification
        0x40, 0x00, // DF, offset 0
        0x40, // TTL 64
        0x06, // protocol TCP
        0x32, 0x51, // header checksum
        0xc6, 0x33, 0x64, 0x07, // source 198.51.100.7
        0xc0, 0x00, 0x02, 0x0a, // destination 192.0.2.10
        0xd4, 0x31, 0x00, 0x50, 0x1a, 0x2b, 0x3c, 0x4d, // payload
    ];

    /// The same header as captured with its 40-byte TCP SYN: total length 60,
    /// checksum 0x3231.
    static SYN_HEADER_60: [u8; 20] = [
        0x45, 0x00, 0x00, 0x3c, // version/IHL, DSCP/ECN, total length 60
        0x1c, 0x46, 0x40, 0x00, // ident, DF
        0x40, 0x06, 0x32, 0x31, // TTL, TCP, checksum
        0xc6, 0x33, 0x64, 0x07, // source
        0xc0, 0x00, 0x02, 0x0a, // destination
    ];

    const CIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
    const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);

    #[test]
    fn deconstruct() {
        let packet = Ipv4Packet::new_checked(&SYN_BYTES[..]).unwrap();
        assert_eq!(packet.version(), 4);
        assert_eq!(packet.header_len(), 20);
        assert_eq!(packet.dscp_ecn(), 0);
        assert_eq!(packet.total_len(), 28);
        assert_eq!(packet.ident(), 0x1c46);
        assert!(packet.dont_frag());
        assert!(!packet.more_frags());
        assert_eq!(packet.frag_offset(), 0);
        assert!(!packet.is_fragment());
        assert_eq!(packet.ttl(), 64);
        assert_eq!(packet.next_header(), IpProtocol::Tcp);
        assert_eq!(packet.checksum(), 0x3251);
        assert_eq!(packet.src_addr(), CIP);
        assert_eq!(packet.dst_addr(), VIP);
        assert!(packet.verify_checksum());
        assert_eq!(packet.header_bytes(), &SYN_BYTES[..20]);
        assert_eq!(packet.payload(), &SYN_BYTES[20..]);
    }

    #[test]
    fn captured_checksum() {
        let packet = Ipv4Packet::new_unchecked(&SYN_HEADER_60[..]);
        assert!(packet.verify_checksum());
        assert_eq!(packet.checksum(), 0x3231);
        let mut bytes = SYN_HEADER_60;
        bytes[10..12].copy_from_slice(&[0, 0]);
        Ipv4Packet::new_unchecked(&mut bytes[..]).fill_checksum();
        assert_eq!(bytes, SYN_HEADER_60);
        // One flipped bit anywhere in the header breaks it.
        for i in 0..20 {
            let mut bytes = SYN_HEADER_60;
            bytes[i] ^= 0x10;
            assert!(
                !Ipv4Packet::new_unchecked(&bytes[..]).verify_checksum(),
                "byte {i}"
            );
        }
        // A buffer with only the header fails the total-length check.
        assert_eq!(
            Ipv4Packet::new_checked(&SYN_HEADER_60[..]).unwrap_err(),
            Error::Truncated
        );
    }

    #[test]
    fn construct() {
        // Zeroed, not 0xa5: no setter writes the reserved flag bit.
        let mut bytes = [0u8; 28];
        let mut packet = Ipv4Packet::new_unchecked(&mut bytes[..]);
        packet.set_version(4);
        packet.set_header_len(20);
        packet.set_dscp_ecn(0);
        packet.set_total_len(28);
        packet.set_ident(0x1c46);
        packet.set_dont_frag(true);
        packet.set_more_frags(false);
        packet.set_frag_offset(0);
        packet.set_ttl(64);
        packet.set_next_header(IpProtocol::Tcp);
        packet.set_src_addr(CIP);
        packet.set_dst_addr(VIP);
        packet.fill_checksum();
        packet.payload_mut().copy_from_slice(&SYN_BYTES[20..]);
        assert_eq!(bytes, SYN_BYTES);
    }

    #[test]
    fn repr_parse_and_emit() {
        let repr = Ipv4Repr {
            src_addr: CIP,
            dst_addr: VIP,
            next_header: IpProtocol::Tcp,
            payload_len: 8,
            ttl: 64,
        };
        let packet = Ipv4Packet::new_checked(&SYN_BYTES[..]).unwrap();
        assert_eq!(Ipv4Repr::parse(&packet), Ok(repr));
        let mut bytes = [0xa5u8; 28];
        repr.emit(&mut Ipv4Packet::new_unchecked(&mut bytes[..]));
        // Emit writes ident 0 and DF clear: 0x1c46 + 0x4000 less in the sum.
        assert_eq!(
            &bytes[..20],
            &[
                0x45, 0x00, 0x00, 0x1c, // version/IHL, DSCP/ECN, total length
                0x00, 0x00, 0x00, 0x00, // ident, flags/offset
                0x40, 0x06, 0x8e, 0x97, // TTL, protocol, checksum
                0xc6, 0x33, 0x64, 0x07, // source
                0xc0, 0x00, 0x02, 0x0a, // destination
            ]
        );
        assert_eq!(repr.buffer_len(), 20);
        let mut header = [0u8; 20];
        let max = Ipv4Repr {
            payload_len: 65_515,
            ..repr
        };
        max.emit(&mut Ipv4Packet::new_unchecked(&mut header[..]));
        assert_eq!(&header[2..4], &[0xff, 0xff]);
        let huge = Ipv4Repr {
            payload_len: usize::MAX,
            ..repr
        };
        huge.emit(&mut Ipv4Packet::new_unchecked(&mut header[..]));
        assert_eq!(&header[2..4], &[0xff, 0xff]);
    }

    #[test]
    fn repr_refuses_bad_checksum_and_fragments() {
        let mut bytes = SYN_BYTES;
        bytes[11] ^= 1;
        let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(Ipv4Repr::parse(&packet), Err(Error::Malformed));

        let mut bytes = SYN_BYTES;
        let mut packet = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
        packet.set_more_frags(true);
        packet.fill_checksum();
        assert!(packet.is_fragment());
        assert_eq!(Ipv4Repr::parse(&packet), Err(Error::Malformed));
    }

    #[test]
    fn fragments() {
        let mut bytes = SYN_BYTES;
        let mut packet = Ipv4Packet::new_unchecked(&mut bytes[..]);
        packet.set_frag_offset(1480);
        assert_eq!(packet.frag_offset(), 1480);
        assert!(packet.dont_frag(), "DF kept");
        assert!(packet.is_fragment());
        assert_eq!(&bytes[6..8], &[0x40, 0xb9]); // DF | 185
        let mut packet = Ipv4Packet::new_unchecked(&mut bytes[..]);
        packet.set_dont_frag(false);
        packet.set_frag_offset(0);
        packet.set_more_frags(true);
        assert_eq!(&bytes[6..8], &[0x20, 0x00]);
        // Largest offset: 8191 * 8.
        let mut packet = Ipv4Packet::new_unchecked(&mut bytes[..]);
        packet.set_frag_offset(0xffff);
        assert_eq!(packet.frag_offset(), 65_528);
    }

    #[test]
    fn truncated() {
        for n in 0..28 {
            assert_eq!(
                Ipv4Packet::new_checked(&SYN_BYTES[..n]).unwrap_err(),
                Error::Truncated,
                "{n}"
            );
        }
        // IHL 6 needs 24 bytes of header.
        let mut bytes = SYN_BYTES;
        bytes[0] = 0x46;
        assert!(Ipv4Packet::new_checked(&bytes[..]).is_ok());
        assert_eq!(
            Ipv4Packet::new_checked(&bytes[..22]).unwrap_err(),
            Error::Truncated
        );
    }

    #[test]
    fn malformed() {
        // (byte offset, value): version 6, IHL 4, total length 19.
        for (at, value) in [(0, 0x65), (0, 0x44), (3, 19)] {
            let mut bytes = SYN_BYTES;
            bytes[at] = value;
            assert_eq!(
                Ipv4Packet::new_checked(&bytes[..]).unwrap_err(),
                Error::Malformed
            );
        }
        // IHL 15 (60 bytes) with a total length of 28.
        let mut bytes = [0u8; 64];
        bytes[..28].copy_from_slice(&SYN_BYTES);
        bytes[0] = 0x4f;
        assert_eq!(
            Ipv4Packet::new_checked(&bytes[..]).unwrap_err(),
            Error::Malformed
        );
    }

    #[test]
    fn overlong() {
        // Ethernet pads the 28-byte datagram to 46 bytes.
        let mut bytes = [0u8; 46];
        bytes[..28].copy_from_slice(&SYN_BYTES);
        let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.payload(), &SYN_BYTES[20..]);
        assert!(packet.verify_checksum());
    }

    #[test]
    fn options() {
        // IHL 6: one word of options (NOP NOP NOP EOL).
        let mut bytes = [0u8; 32];
        bytes[..20].copy_from_slice(&SYN_BYTES[..20]);
        bytes[20..24].copy_from_slice(&[0x01, 0x01, 0x01, 0x00]);
        bytes[24..].copy_from_slice(&SYN_BYTES[20..]);
        let mut packet = Ipv4Packet::new_unchecked(&mut bytes[..]);
        packet.set_header_len(24);
        packet.set_total_len(32);
        packet.fill_checksum();
        let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.header_len(), 24);
        assert!(packet.verify_checksum());
        assert_eq!(packet.payload(), &SYN_BYTES[20..]);
        let repr = Ipv4Repr::parse(&packet).unwrap();
        assert_eq!(repr.payload_len, 8);
    }

    #[test]
    fn setters_after_check_cannot_make_accessors_panic() {
        let mut bytes = SYN_BYTES;
        let mut packet = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
        packet.set_header_len(60);
        packet.set_total_len(0xffff);
        assert_eq!(packet.header_bytes().len(), 28);
        assert_eq!(packet.payload(), &[] as &[u8]);
        assert_eq!(packet.payload_mut().len(), 0);
        packet.fill_checksum();
        let _ = packet.verify_checksum();
    }

    #[test]
    fn protocol_numbers() {
        for v in 0..=255u8 {
            assert_eq!(u8::from(IpProtocol::from(v)), v);
        }
        assert_eq!(IpProtocol::from(4), IpProtocol::IpIp);
        assert_eq!(IpProtocol::from(132), IpProtocol::Unknown(132));
    }

    proptest! {
        #[test]
        fn repr_round_trip(
            src in any::<[u8; 4]>(),
            dst in any::<[u8; 4]>(),
            protocol in any::<u8>(),
            ttl in any::<u8>(),
            payload_len in 0..100usize,
        ) {
            let repr = Ipv4Repr {
                src_addr: Ipv4Addr::from(src),
                dst_addr: Ipv4Addr::from(dst),
                next_header: IpProtocol::from(protocol),
                payload_len,
                ttl,
            };
            let mut bytes = vec![0xa5u8; repr.buffer_len() + payload_len];
            repr.emit(&mut Ipv4Packet::new_unchecked(&mut bytes[..]));
            let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
            prop_assert!(packet.verify_checksum());
            prop_assert_eq!(Ipv4Repr::parse(&packet), Ok(repr));
        }

        #[test]
        fn address_rewrite_incremental_equals_recompute(new in any::<[u8; 4]>(), dst in any::<bool>()) {
            let mut bytes = SYN_BYTES;
            let mut packet = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
            let old = if dst {
                let old = packet.dst_addr();
                packet.set_dst_addr(Ipv4Addr::from(new));
                old
            } else {
                let old = packet.src_addr();
                packet.set_src_addr(Ipv4Addr::from(new));
                old
            };
            let incremental = checksum::update32(packet.checksum(), old.octets(), new);
            packet.fill_checksum();
            prop_assert_eq!(incremental, packet.checksum());
        }

        #[test]
        fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(packet) = Ipv4Packet::new_checked(&bytes[..]) {
                prop_assert_eq!(
                    usize::from(packet.header_len()) + packet.payload().len(),
                    usize::from(packet.total_len())
                );
                let _ = (packet.verify_checksum(), packet.frag_offset(), Ipv4Repr::parse(&packet));
            }
        }
    }
}
