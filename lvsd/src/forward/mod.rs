//! Rewriting one packet for one connection: one module per forwarding
//! method (as DPVS has one transmit function per method), plus the ICMP
//! messages the director answers or builds. No I/O, no lookups: the caller
//! has validated the headers and decided what to do.
//!
//! A [`Frame`] is a received frame inside its buffer, with room before it
//! (for the tunnel methods' outer header) and after it (for replies that are
//! longer than the request).

pub mod dr;
pub mod icmp;
pub mod nat;
pub mod reset;
pub mod tun;

pub use nat::Side;

use crate::wire::{ethernet, vnet};

/// Bytes in front of the IP header: the virtio-net header and Ethernet.
pub const L2_LEN: usize = vnet::HEADER_LEN + ethernet::HEADER_LEN;

/// A frame at `buf[start..start + len]`: virtio-net header, Ethernet header,
/// IP packet.
pub struct Frame<'a> {
    pub buf: &'a mut [u8],
    pub start: usize,
    pub len: usize,
}

impl Frame<'_> {
    /// The whole frame.
    pub fn bytes(&mut self) -> &mut [u8] {
        let end = (self.start + self.len).min(self.buf.len());
        &mut self.buf[self.start.min(end)..end]
    }

    /// The IP packet (after the virtio-net and Ethernet headers).
    pub fn l3(&mut self) -> &mut [u8] {
        let end = (self.start + self.len).min(self.buf.len());
        let from = (self.start + L2_LEN).min(end);
        &mut self.buf[from..end]
    }

    /// Makes the frame exactly `l3_len` bytes of IP packet long (dropping
    /// Ethernet padding, or growing into the room after it). False when the
    /// buffer has no room.
    pub fn set_l3_len(&mut self, l3_len: usize) -> bool {
        if self.start + L2_LEN + l3_len > self.buf.len() {
            return false;
        }
        self.len = L2_LEN + l3_len;
        true
    }
}
