//! Zero-copy views over packet headers, and the Internet checksum.
//!
//! Each protocol has a view, `XPacket<T: AsRef<[u8]>>`, that wraps a buffer
//! and reads (or, with `T: AsMut<[u8]>`, writes) header fields in place, and
//! where useful an owned `XRepr` with `parse`, `emit` and `buffer_len`.
//!
//! Invariants:
//! - Untrusted bytes enter only through `new_checked()`. Once it has
//!   succeeded, no getter, setter or payload accessor of that view can panic:
//!   fixed fields lie inside the length it checked, and variable-length
//!   accessors clamp to the buffer even if a setter has since changed a length
//!   field.
//! - `new_unchecked()` is for buffers the caller built itself; on a buffer
//!   shorter than the fixed header its accessors may panic.
//! - Nothing here allocates or does I/O.
//! - Unknown protocol numbers are data (`Unknown(n)` variants), not errors.
//!
//! Multi-byte fields are in network byte order, except in [`vnet`], which is
//! in host byte order like the kernel's `virtio_net_hdr` for packet sockets.

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmp;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod udp;
pub mod vnet;

pub use self::arp::{ArpOperation, ArpPacket, ArpRepr};
pub use self::ethernet::{EtherType, EthernetFrame, MacAddr};
pub use self::icmp::IcmpPacket;
pub use self::ipv4::{IpProtocol, Ipv4Packet, Ipv4Repr};
pub use self::ipv6::Ipv6Packet;
pub use self::tcp::TcpPacket;
pub use self::udp::UdpPacket;
pub use self::vnet::VnetHeader;

/// The byte range of a fixed-size header field.
pub type Field = core::ops::Range<usize>;
/// The byte range from a field's start to the end of the buffer.
pub type Rest = core::ops::RangeFrom<usize>;

/// Why a buffer was refused. Small and `Copy`: the data path counts drops by
/// this reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The buffer is shorter than the header (or than a length field says).
    #[error("truncated packet")]
    Truncated,
    /// A field holds a value the header cannot have (bad version, a length
    /// below the minimum, an unsupported hardware type, a bad checksum).
    #[error("malformed packet")]
    Malformed,
}

pub type Result<T> = core::result::Result<T, Error>;

/// Reads the big-endian `u16` at `field` (two bytes).
#[inline]
pub(crate) fn read_u16(data: &[u8], field: Field) -> u16 {
    let mut b = [0u8; 2];
    b.copy_from_slice(&data[field]);
    u16::from_be_bytes(b)
}

/// Writes `value` big-endian at `field` (two bytes).
#[inline]
pub(crate) fn write_u16(data: &mut [u8], field: Field, value: u16) {
    data[field].copy_from_slice(&value.to_be_bytes());
}

/// Reads the big-endian `u32` at `field` (four bytes).
#[inline]
pub(crate) fn read_u32(data: &[u8], field: Field) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&data[field]);
    u32::from_be_bytes(b)
}

/// Writes `value` big-endian at `field` (four bytes).
#[inline]
pub(crate) fn write_u32(data: &mut [u8], field: Field, value: u32) {
    data[field].copy_from_slice(&value.to_be_bytes());
}

/// Reads the IPv4 address at `field` (four bytes).
#[inline]
pub(crate) fn read_ipv4(data: &[u8], field: Field) -> core::net::Ipv4Addr {
    core::net::Ipv4Addr::from(read_u32(data, field))
}

/// The bytes `start..end` of `data`, with both ends clamped to the buffer so
/// that a length field changed after validation cannot cause a panic.
#[inline]
pub(crate) fn clamped(data: &[u8], start: usize, end: usize) -> &[u8] {
    let end = end.min(data.len());
    let start = start.min(end);
    &data[start..end]
}

/// Mutable form of [`clamped`].
#[inline]
pub(crate) fn clamped_mut(data: &mut [u8], start: usize, end: usize) -> &mut [u8] {
    let end = end.min(data.len());
    let start = start.min(end);
    &mut data[start..end]
}
