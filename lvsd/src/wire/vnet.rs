//! The 10-byte `struct virtio_net_hdr` that a packet socket with
//! `PACKET_VNET_HDR` puts before each frame (received) and expects before
//! each frame (sent). It carries checksum-offload and GSO metadata so that the
//! kernel need not checksum or segment on our behalf.
//!
//! Byte order: the kernel fills it in as legacy virtio does, in host byte
//! order (`vio_le()` is `virtio_legacy_is_little_endian()`), so this view
//! reads and writes the 16-bit fields in native order: little-endian on
//! x86-64 and aarch64.
//!
//! Layout (`include/uapi/linux/virtio_net.h`): flags u8, gso_type u8,
//! hdr_len u16, gso_size u16, csum_start u16, csum_offset u16.
//!
//! With [`F_NEEDS_CSUM`] the L4 checksum field, at `csum_start +
//! csum_offset` from the start of the frame, holds only the folded
//! pseudo-header sum ([`update32_partial`](super::checksum::update32_partial) is the
//! way to keep it right across an address rewrite); whoever finishes the
//! checksum sums from `csum_start` to the end and complements.

use super::{Error, Field, Result};

/// Length of `struct virtio_net_hdr` (without `num_buffers`).
pub const HEADER_LEN: usize = 10;

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the L4 checksum is partial (see module docs).
pub const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`: the checksum was already verified.
pub const F_DATA_VALID: u8 = 2;

/// `VIRTIO_NET_HDR_GSO_NONE`: a single frame.
pub const GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`: a TCP/IPv4 super-segment.
pub const GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_UDP`: UFO.
pub const GSO_UDP: u8 = 3;
/// `VIRTIO_NET_HDR_GSO_TCPV6`.
pub const GSO_TCPV6: u8 = 4;
/// `VIRTIO_NET_HDR_GSO_ECN`: flag bit, the super-segment has CWR set.
pub const GSO_ECN: u8 = 0x80;

mod field {
    use crate::wire::{Field, Rest};

    pub const FLAGS: usize = 0;
    pub const GSO_TYPE: usize = 1;
    pub const HDR_LEN: Field = 2..4;
    pub const GSO_SIZE: Field = 4..6;
    pub const CSUM_START: Field = 6..8;
    pub const CSUM_OFFSET: Field = 8..10;
    pub const PAYLOAD: Rest = 10..;
}

fn read_ne16(data: &[u8], field: Field) -> u16 {
    let mut b = [0u8; 2];
    b.copy_from_slice(&data[field]);
    u16::from_ne_bytes(b)
}

fn write_ne16(data: &mut [u8], field: Field, value: u16) {
    data[field].copy_from_slice(&value.to_ne_bytes());
}

/// A view of a `virtio_net_hdr` and the frame after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VnetHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VnetHeader<T> {
    /// Wraps `buffer` without checking it; accessors panic if it is shorter
    /// than [`HEADER_LEN`].
    pub const fn new_unchecked(buffer: T) -> VnetHeader<T> {
        VnetHeader { buffer }
    }

    /// Wraps `buffer`, refusing one shorter than the header.
    pub fn new_checked(buffer: T) -> Result<VnetHeader<T>> {
        let header = Self::new_unchecked(buffer);
        header.check_len()?;
        Ok(header)
    }

    /// `Truncated` if the buffer cannot hold the header.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    pub fn gso_type(&self) -> u8 {
        self.buffer.as_ref()[field::GSO_TYPE]
    }

    /// Length of the headers (Ethernet to L4) of a GSO super-segment.
    pub fn hdr_len(&self) -> u16 {
        read_ne16(self.buffer.as_ref(), field::HDR_LEN)
    }

    /// Payload bytes per segment of a GSO super-segment (the MSS).
    pub fn gso_size(&self) -> u16 {
        read_ne16(self.buffer.as_ref(), field::GSO_SIZE)
    }

    /// Offset from the start of the frame where checksumming starts.
    pub fn csum_start(&self) -> u16 {
        read_ne16(self.buffer.as_ref(), field::CSUM_START)
    }

    /// Offset of the checksum field from `csum_start`.
    pub fn csum_offset(&self) -> u16 {
        read_ne16(self.buffer.as_ref(), field::CSUM_OFFSET)
    }

    /// The L4 checksum is partial and must be finished.
    pub fn needs_csum(&self) -> bool {
        self.flags() & F_NEEDS_CSUM != 0
    }

    /// The kernel already verified the checksum.
    pub fn data_valid(&self) -> bool {
        self.flags() & F_DATA_VALID != 0
    }

    /// The frame is a GSO super-segment (any type but NONE, the ECN bit
    /// aside).
    pub fn is_gso(&self) -> bool {
        self.gso_type() & !GSO_ECN != GSO_NONE
    }

    /// The Ethernet frame after the header.
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(field::PAYLOAD).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VnetHeader<T> {
    pub fn set_flags(&mut self, flags: u8) {
        self.buffer.as_mut()[field::FLAGS] = flags;
    }

    pub fn set_gso_type(&mut self, gso_type: u8) {
        self.buffer.as_mut()[field::GSO_TYPE] = gso_type;
    }

    pub fn set_hdr_len(&mut self, len: u16) {
        write_ne16(self.buffer.as_mut(), field::HDR_LEN, len);
    }

    pub fn set_gso_size(&mut self, size: u16) {
        write_ne16(self.buffer.as_mut(), field::GSO_SIZE, size);
    }

    pub fn set_csum_start(&mut self, start: u16) {
        write_ne16(self.buffer.as_mut(), field::CSUM_START, start);
    }

    pub fn set_csum_offset(&mut self, offset: u16) {
        write_ne16(self.buffer.as_mut(), field::CSUM_OFFSET, offset);
    }

    /// Writes an all-zero header: no checksum offload, no GSO, for a frame
    /// whose checksums are complete.
    pub fn clear(&mut self) {
        self.buffer.as_mut()[..HEADER_LEN].fill(0);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        self.buffer
            .as_mut()
            .get_mut(field::PAYLOAD)
            .unwrap_or(&mut [])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A TCP/IPv4 GSO super-segment as the kernel hands it to a packet socket
    /// on a little-endian host: checksum partial from byte 34 (Ethernet 14 +
    /// IPv4 20), field at +16; headers 66 bytes (TCP with timestamps); MSS
    /// 1448.
    #[cfg(target_endian = "little")]
    static GSO_BYTES: [u8; 12] = [
        0x01, // flags: NEEDS_CSUM
        0x01, // gso_type: TCPV4
        0x42, 0x00, // hdr_len 66
        0xa8, 0x05, // gso_size 1448
        0x22, 0x00, // csum_start 34
        0x10, 0x00, // csum_offset 16
        0xee, 0xff, // first bytes of the frame
    ];

    #[cfg(target_endian = "little")]
    #[test]
    fn deconstruct() {
        let header = VnetHeader::new_checked(&GSO_BYTES[..]).unwrap();
        assert_eq!(header.flags(), F_NEEDS_CSUM);
        assert!(header.needs_csum());
        assert!(!header.data_valid());
        assert_eq!(header.gso_type(), GSO_TCPV4);
        assert!(header.is_gso());
        assert_eq!(header.hdr_len(), 66);
        assert_eq!(header.gso_size(), 1448);
        assert_eq!(header.csum_start(), 34);
        assert_eq!(header.csum_offset(), 16);
        assert_eq!(header.payload(), &[0xee, 0xff]);
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn construct() {
        let mut bytes = [0xa5u8; 12];
        let mut header = VnetHeader::new_unchecked(&mut bytes[..]);
        header.set_flags(F_NEEDS_CSUM);
        header.set_gso_type(GSO_TCPV4);
        header.set_hdr_len(66);
        header.set_gso_size(1448);
        header.set_csum_start(34);
        header.set_csum_offset(16);
        header.payload_mut().copy_from_slice(&[0xee, 0xff]);
        assert_eq!(bytes, GSO_BYTES);
    }

    #[test]
    fn plain_frame() {
        // What the kernel prepends to an ordinary received frame whose
        // checksum it verified.
        let bytes = [
            F_DATA_VALID, // flags
            GSO_NONE,     // gso_type
            0x00,
            0x00, // hdr_len
            0x00,
            0x00, // gso_size
            0x00,
            0x00, // csum_start
            0x00,
            0x00, // csum_offset
        ];
        let header = VnetHeader::new_checked(&bytes[..]).unwrap();
        assert!(header.data_valid() && !header.needs_csum() && !header.is_gso());
        assert_eq!(header.payload(), &[] as &[u8]);
    }

    #[test]
    fn clear() {
        let mut bytes = [0xa5u8; 11];
        VnetHeader::new_checked(&mut bytes[..]).unwrap().clear();
        assert_eq!(bytes, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xa5]);
    }

    #[test]
    fn gso_types() {
        let mut bytes = [0u8; 10];
        for (gso_type, is_gso) in [
            (GSO_NONE, false),
            (GSO_ECN, false),
            (GSO_TCPV4, true),
            (GSO_TCPV4 | GSO_ECN, true),
            (GSO_UDP, true),
            (GSO_TCPV6, true),
        ] {
            let mut header = VnetHeader::new_unchecked(&mut bytes[..]);
            header.set_gso_type(gso_type);
            assert_eq!(header.is_gso(), is_gso, "{gso_type:#x}");
        }
    }

    #[test]
    fn truncated() {
        let bytes = [0u8; 10];
        for n in 0..10 {
            assert_eq!(
                VnetHeader::new_checked(&bytes[..n]).unwrap_err(),
                Error::Truncated
            );
        }
    }

    proptest! {
        #[test]
        fn fields_round_trip(
            flags in any::<u8>(),
            gso_type in any::<u8>(),
            values in any::<[u16; 4]>(),
            tail in proptest::collection::vec(any::<u8>(), 0..8),
        ) {
            let mut bytes = vec![0u8; HEADER_LEN];
            bytes.extend_from_slice(&tail);
            let mut header = VnetHeader::new_checked(&mut bytes[..]).unwrap();
            header.set_flags(flags);
            header.set_gso_type(gso_type);
            header.set_hdr_len(values[0]);
            header.set_gso_size(values[1]);
            header.set_csum_start(values[2]);
            header.set_csum_offset(values[3]);
            let header = VnetHeader::new_checked(&bytes[..]).unwrap();
            prop_assert_eq!((header.flags(), header.gso_type()), (flags, gso_type));
            prop_assert_eq!(
                [header.hdr_len(), header.gso_size(), header.csum_start(), header.csum_offset()],
                values
            );
            prop_assert_eq!(header.payload(), &tail[..]);
        }
    }
}
