//! TCP segments (RFC 9293).
//!
//! [`TcpPacket::new_checked`] guarantees at least 20 bytes and a data offset
//! of at least 5 words that lies inside the buffer. The view covers exactly
//! one segment: the checksum functions sum the whole buffer, so give them the
//! IPv4 payload, not a padded frame.

use super::checksum;
use super::ipv4::IpProtocol;
use super::{read_u16, read_u32, write_u16, write_u32, Error, Result};
use core::net::Ipv4Addr;

/// Flag bits of the flags byte (header byte 13), RFC 9293 section 3.1 and
/// RFC 3168 (ECE, CWR).
pub mod flag {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}

mod field {
    use crate::wire::Field;

    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const SEQ_NUM: Field = 4..8;
    pub const ACK_NUM: Field = 8..12;
    /// Data offset in the high nibble; reserved bits and NS below it.
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WIN_SIZE: Field = 14..16;
    pub const CHECKSUM: Field = 16..18;
    pub const URGENT: Field = 18..20;
}

/// Length of a TCP header without options.
pub const HEADER_LEN: usize = field::URGENT.end;

/// A view of a TCP segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wraps `buffer` without checking it; accessors panic if it is shorter
    /// than [`HEADER_LEN`].
    pub const fn new_unchecked(buffer: T) -> TcpPacket<T> {
        TcpPacket { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<TcpPacket<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Truncated` if the buffer is shorter than 20 bytes or than the data
    /// offset; `Malformed` if the data offset is below 5 words.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let header_len = usize::from(self.header_len());
        if header_len < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if header_len > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole segment.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    pub fn src_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::SRC_PORT)
    }

    pub fn dst_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::DST_PORT)
    }

    pub fn seq_number(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::SEQ_NUM)
    }

    pub fn ack_number(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::ACK_NUM)
    }

    /// Header length in bytes (data offset * 4, at most 60), options
    /// included.
    pub fn header_len(&self) -> u8 {
        (self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    /// The flags byte: CWR ECE URG ACK PSH RST SYN FIN, see [`flag`].
    pub fn flags_byte(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    fn has(&self, bit: u8) -> bool {
        self.flags_byte() & bit != 0
    }

    pub fn fin(&self) -> bool {
        self.has(flag::FIN)
    }

    pub fn syn(&self) -> bool {
        self.has(flag::SYN)
    }

    pub fn rst(&self) -> bool {
        self.has(flag::RST)
    }

    pub fn psh(&self) -> bool {
        self.has(flag::PSH)
    }

    pub fn ack(&self) -> bool {
        self.has(flag::ACK)
    }

    pub fn urg(&self) -> bool {
        self.has(flag::URG)
    }

    pub fn ece(&self) -> bool {
        self.has(flag::ECE)
    }

    pub fn cwr(&self) -> bool {
        self.has(flag::CWR)
    }

    pub fn window_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::WIN_SIZE)
    }

    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    pub fn urgent_at(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::URGENT)
    }

    /// The option bytes between the fixed header and the data offset.
    pub fn options(&self) -> &[u8] {
        super::clamped(
            self.buffer.as_ref(),
            HEADER_LEN,
            usize::from(self.header_len()),
        )
    }

    /// The data after the header, to the end of the buffer.
    pub fn payload(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        super::clamped(data, usize::from(self.header_len()), data.len())
    }

    /// Whether the checksum over the pseudo-header and the whole buffer is
    /// right.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        segment_sum(self.buffer.as_ref(), src, dst) == 0xffff
    }
}

/// Folded sum of the pseudo-header and `data`, the segment with its checksum
/// field as it stands.
fn segment_sum(data: &[u8], src: Ipv4Addr, dst: Ipv4Addr) -> u16 {
    // A segment comes from an IPv4 payload (at most 65535 bytes); a longer
    // buffer saturates the length and simply fails to verify.
    let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
    let pseudo = checksum::pseudo_header_v4(src, dst, IpProtocol::Tcp.into(), len);
    checksum::fold(pseudo + checksum::sum(data))
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    pub fn set_src_port(&mut self, port: u16) {
        write_u16(self.buffer.as_mut(), field::SRC_PORT, port);
    }

    pub fn set_dst_port(&mut self, port: u16) {
        write_u16(self.buffer.as_mut(), field::DST_PORT, port);
    }

    pub fn set_seq_number(&mut self, seq: u32) {
        write_u32(self.buffer.as_mut(), field::SEQ_NUM, seq);
    }

    pub fn set_ack_number(&mut self, ack: u32) {
        write_u32(self.buffer.as_mut(), field::ACK_NUM, ack);
    }

    /// Sets the data offset from a length in bytes, rounded down to 4-byte
    /// words and capped at 60. The reserved bits and NS are kept.
    pub fn set_header_len(&mut self, len: u8) {
        let words = (len / 4).min(15);
        let b = &mut self.buffer.as_mut()[field::DATA_OFF];
        *b = (*b & 0x0f) | (words << 4);
    }

    pub fn set_flags_byte(&mut self, flags: u8) {
        self.buffer.as_mut()[field::FLAGS] = flags;
    }

    fn set_flag(&mut self, bit: u8, value: bool) {
        let b = &mut self.buffer.as_mut()[field::FLAGS];
        if value {
            *b |= bit;
        } else {
            *b &= !bit;
        }
    }

    pub fn set_fin(&mut self, value: bool) {
        self.set_flag(flag::FIN, value);
    }

    pub fn set_syn(&mut self, value: bool) {
        self.set_flag(flag::SYN, value);
    }

    pub fn set_rst(&mut self, value: bool) {
        self.set_flag(flag::RST, value);
    }

    pub fn set_psh(&mut self, value: bool) {
        self.set_flag(flag::PSH, value);
    }

    pub fn set_ack(&mut self, value: bool) {
        self.set_flag(flag::ACK, value);
    }

    pub fn set_urg(&mut self, value: bool) {
        self.set_flag(flag::URG, value);
    }

    pub fn set_window_len(&mut self, window: u16) {
        write_u16(self.buffer.as_mut(), field::WIN_SIZE, window);
    }

    pub fn set_checksum(&mut self, checksum: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, checksum);
    }

    pub fn set_urgent_at(&mut self, urgent: u16) {
        write_u16(self.buffer.as_mut(), field::URGENT, urgent);
    }

    /// Computes the checksum over the pseudo-header and the whole buffer, and
    /// stores it.
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let check = !segment_sum(self.buffer.as_ref(), src, dst);
        self.set_checksum(check);
    }

    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.header_len());
        super::clamped_mut(self.buffer.as_mut(), HEADER_LEN, end)
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = usize::from(self.header_len());
        let data = self.buffer.as_mut();
        let end = data.len();
        super::clamped_mut(data, start, end)
    }
}

/// Writes a 20-byte TCP header without options at the start of `buf`: data
/// offset 5, urgent pointer 0, checksum 0 (call
/// [`TcpPacket::fill_checksum`] on the finished segment). The payload is
/// whatever follows in `buf`. `Truncated` if `buf` is shorter than 20 bytes.
pub fn emit_segment(
    buf: &mut [u8],
    src_port: u16,
    dst_port: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
) -> Result<()> {
    let header = buf.get_mut(..HEADER_LEN).ok_or(Error::Truncated)?;
    header.fill(0);
    let mut packet = TcpPacket::new_unchecked(header);
    packet.set_src_port(src_port);
    packet.set_dst_port(dst_port);
    packet.set_seq_number(seq);
    packet.set_ack_number(ack);
    packet.set_header_len(20);
    packet.set_flags_byte(flags);
    packet.set_window_len(window);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
    const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);

    /// A Linux-style SYN, 198.51.100.7:54321 -> 192.0.2.10:80, with MSS,
    /// SACK-permitted, timestamps and window-scale options.
    static SYN_BYTES: [u8; 40] = [
        0xd4, 0x31, // source port 54321
        0x00, 0x50, // destination port 80
        0x1a, 0x2b, 0x3c, 0x4d, // sequence number
        0x00, 0x00, 0x00, 0x00, // acknowledgment number
        0xa0, // data offset 10 words
        0x02, // flags: SYN
        0xfa, 0xf0, // window 64240
        0x09, 0xfa, // checksum
        0x00, 0x00, // urgent pointer
        0x02, 0x04, 0x05, 0xb4, // MSS 1460
        0x04, 0x02, // SACK permitted
        0x08, 0x0a, 0x00, 0x9a, 0x2b, 0x3c, 0x00, 0x00, 0x00, 0x00, // timestamps
        0x01, // NOP
        0x03, 0x03, 0x07, // window scale 7
    ];

    /// The server's first data segment back, 192.0.2.10:80 ->
    /// 198.51.100.7:54321, ACK|PSH, 17 bytes of data (odd length).
    static DATA_BYTES: [u8; 37] = [
        0x00, 0x50, // source port 80
        0xd4, 0x31, // destination port 54321
        0x11, 0x22, 0x33, 0x44, // sequence number
        0x1a, 0x2b, 0x3c, 0x4e, // acknowledgment number
        0x50, // data offset 5 words
        0x18, // flags: ACK PSH
        0x01, 0xfd, // window 509
        0x92, 0x52, // checksum
        0x00, 0x00, // urgent pointer
        b'H', b'T', b'T', b'P', b'/', b'1', b'.', b'1', b' ', b'2', b'0', b'0', b' ', b'O', b'K',
        b'\r', b'\n', // payload
    ];

    #[test]
    fn deconstruct_syn() {
        let packet = TcpPacket::new_checked(&SYN_BYTES[..]).unwrap();
        assert_eq!(packet.src_port(), 54321);
        assert_eq!(packet.dst_port(), 80);
        assert_eq!(packet.seq_number(), 0x1a2b_3c4d);
        assert_eq!(packet.ack_number(), 0);
        assert_eq!(packet.header_len(), 40);
        assert_eq!(packet.flags_byte(), flag::SYN);
        assert!(packet.syn());
        assert!(!(packet.fin() || packet.rst() || packet.psh() || packet.ack() || packet.urg()));
        assert!(!(packet.ece() || packet.cwr()));
        assert_eq!(packet.window_len(), 64240);
        assert_eq!(packet.checksum(), 0x09fa);
        assert_eq!(packet.urgent_at(), 0);
        assert_eq!(packet.options(), &SYN_BYTES[20..]);
        assert_eq!(packet.payload(), &[] as &[u8]);
        assert!(packet.verify_checksum(CIP, VIP));
        // The pseudo-header counts: swapped or changed addresses fail.
        assert!(!packet.verify_checksum(VIP, Ipv4Addr::new(198, 51, 100, 8)));
    }

    #[test]
    fn deconstruct_data() {
        let packet = TcpPacket::new_checked(&DATA_BYTES[..]).unwrap();
        assert_eq!((packet.src_port(), packet.dst_port()), (80, 54321));
        assert_eq!(packet.seq_number(), 0x1122_3344);
        assert_eq!(packet.ack_number(), 0x1a2b_3c4e);
        assert_eq!(packet.header_len(), 20);
        assert!(packet.ack() && packet.psh() && !packet.syn());
        assert_eq!(packet.window_len(), 509);
        assert_eq!(packet.options(), &[] as &[u8]);
        assert_eq!(packet.payload(), b"HTTP/1.1 200 OK\r\n");
        assert!(packet.verify_checksum(VIP, CIP));
    }

    #[test]
    fn construct_data() {
        let mut bytes = [0xa5u8; 37];
        bytes[20..].copy_from_slice(b"HTTP/1.1 200 OK\r\n");
        emit_segment(
            &mut bytes,
            80,
            54321,
            0x1122_3344,
            0x1a2b_3c4e,
            flag::ACK | flag::PSH,
            509,
        )
        .unwrap();
        TcpPacket::new_checked(&mut bytes[..])
            .unwrap()
            .fill_checksum(VIP, CIP);
        assert_eq!(bytes, DATA_BYTES);
        assert_eq!(
            emit_segment(&mut [0u8; 19], 1, 2, 3, 4, 5, 6),
            Err(Error::Truncated)
        );
    }

    #[test]
    fn construct_with_setters() {
        let mut bytes = [0u8; 40];
        let mut packet = TcpPacket::new_unchecked(&mut bytes[..]);
        packet.set_src_port(54321);
        packet.set_dst_port(80);
        packet.set_seq_number(0x1a2b_3c4d);
        packet.set_ack_number(0);
        packet.set_header_len(40);
        packet.set_syn(true);
        packet.set_window_len(64240);
        packet.set_urgent_at(0);
        packet.options_mut().copy_from_slice(&SYN_BYTES[20..]);
        packet.fill_checksum(CIP, VIP);
        assert_eq!(bytes, SYN_BYTES);
    }

    #[test]
    fn flag_setters() {
        let mut bytes = SYN_BYTES;
        let mut packet = TcpPacket::new_unchecked(&mut bytes[..]);
        packet.set_syn(false);
        packet.set_ack(true);
        packet.set_fin(true);
        packet.set_rst(true);
        packet.set_psh(true);
        packet.set_urg(true);
        assert_eq!(packet.flags_byte(), 0x3d);
        packet.set_rst(false);
        assert_eq!(packet.flags_byte(), 0x39);
        // The data offset is untouched, and vice versa.
        assert_eq!(packet.header_len(), 40);
        packet.set_header_len(20);
        assert_eq!(packet.flags_byte(), 0x39);
        assert_eq!(bytes[12], 0x50);
    }

    #[test]
    fn truncated() {
        for n in 0..40 {
            assert_eq!(
                TcpPacket::new_checked(&SYN_BYTES[..n]).unwrap_err(),
                Error::Truncated,
                "{n}"
            );
        }
    }

    #[test]
    fn malformed() {
        for offset in 0..5u8 {
            let mut bytes = DATA_BYTES;
            bytes[12] = offset << 4;
            assert_eq!(
                TcpPacket::new_checked(&bytes[..]).unwrap_err(),
                Error::Malformed
            );
        }
    }

    #[test]
    fn overlong_buffer_is_payload() {
        // TCP has no length field: trailing bytes are data, and the checksum
        // no longer matches. Callers pass the IPv4 payload, never the frame.
        let mut bytes = [0u8; 41];
        bytes[..40].copy_from_slice(&SYN_BYTES);
        let packet = TcpPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.payload(), &[0]);
        assert!(!packet.verify_checksum(CIP, VIP));
    }

    #[test]
    fn setters_after_check_cannot_make_accessors_panic() {
        let mut bytes = DATA_BYTES;
        let mut packet = TcpPacket::new_checked(&mut bytes[..]).unwrap();
        packet.set_header_len(60);
        assert_eq!(packet.options().len(), 17);
        assert_eq!(packet.payload(), &[] as &[u8]);
        assert_eq!(packet.payload_mut().len(), 0);
        assert_eq!(packet.options_mut().len(), 17);
    }

    proptest! {
        #[test]
        fn nat_rewrite_incremental_equals_recompute(
            new_addr in any::<[u8; 4]>(),
            new_port in any::<u16>(),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            // Rewrite VIP:80 to RIP:port as a NAT director does: the port is in
            // the segment, the address only in the pseudo-header.
            let mut bytes = vec![0u8; 20 + payload.len()];
            bytes[20..].copy_from_slice(&payload);
            emit_segment(&mut bytes, 54321, 80, 1, 2, flag::ACK, 1000).unwrap();
            let mut packet = TcpPacket::new_checked(&mut bytes[..]).unwrap();
            packet.set_seq_number(0xdead_beef);
            packet.fill_checksum(CIP, VIP);
            let rip = Ipv4Addr::from(new_addr);
            let check = checksum::update32(packet.checksum(), VIP.octets(), new_addr);
            let check = checksum::update16(check, 80, new_port);
            packet.set_dst_port(new_port);
            packet.set_checksum(check);
            prop_assert!(packet.verify_checksum(CIP, rip));
            packet.fill_checksum(CIP, rip);
            prop_assert_eq!(packet.checksum(), check);
        }

        #[test]
        fn partial_checksum_rewrite(new_addr in any::<[u8; 4]>(), payload in proptest::collection::vec(any::<u8>(), 0..64)) {
            // Checksum offload left the pseudo-header sum in the field; after a
            // source rewrite (+ update32_partial) a device finishing the sum
            // must get the right full checksum.
            let mut bytes = vec![0u8; 20 + payload.len()];
            bytes[20..].copy_from_slice(&payload);
            emit_segment(&mut bytes, 80, 54321, 7, 8, flag::ACK, 1000).unwrap();
            let len = u32::try_from(bytes.len()).unwrap();
            let partial = checksum::fold(checksum::pseudo_header_v4(VIP, CIP, 6, len));
            let new_src = Ipv4Addr::from(new_addr);
            let partial = checksum::update32_partial(partial, VIP.octets(), new_addr);
            let mut packet = TcpPacket::new_checked(&mut bytes[..]).unwrap();
            packet.set_checksum(partial);
            // What the device does: complement of the sum from csum_start.
            let finished = checksum::checksum(packet.as_bytes());
            packet.set_checksum(finished);
            prop_assert!(packet.verify_checksum(new_src, CIP));
        }

        #[test]
        fn emit_round_trip(
            ports in any::<(u16, u16)>(),
            seq in any::<u32>(),
            ack in any::<u32>(),
            flags in any::<u8>(),
            window in any::<u16>(),
        ) {
            let mut bytes = [0u8; 20];
            emit_segment(&mut bytes, ports.0, ports.1, seq, ack, flags, window).unwrap();
            let packet = TcpPacket::new_checked(&bytes[..]).unwrap();
            prop_assert_eq!((packet.src_port(), packet.dst_port()), ports);
            prop_assert_eq!((packet.seq_number(), packet.ack_number()), (seq, ack));
            prop_assert_eq!((packet.flags_byte(), packet.window_len()), (flags, window));
            prop_assert_eq!(packet.header_len(), 20);
        }

        #[test]
        fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(packet) = TcpPacket::new_checked(&bytes[..]) {
                prop_assert_eq!(usize::from(packet.header_len()) + packet.payload().len(), bytes.len());
                let _ = (packet.options(), packet.verify_checksum(CIP, VIP), packet.flags_byte());
            }
        }
    }
}
