//! The reset a TCP segment to a service gets when it belongs to no
//! connection (an entry that expired, a director that restarted): under
//! IPVS such a segment goes on to the director's own stack, which has no
//! socket for it and answers with a reset at once (RFC 793, "Reset
//! Generation"), so the client learns its connection is gone instead of
//! retransmitting for minutes.

use crate::wire::checksum::{fold, pseudo_header_v4, pseudo_header_v6, sum};
use crate::wire::ipv4::{IpProtocol, Ipv4Packet, Ipv4Repr};
use crate::wire::ipv6::{Ipv6Packet, HEADER_LEN as V6_LEN};
use crate::wire::tcp::TcpPacket;

/// TTL of segments the director originates.
const TTL: u8 = 64;
const V4_LEN: usize = 20;
const TCP_LEN: usize = 20;
/// The same, as the length fields take it.
const TCP_LEN_U16: u16 = 20;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

/// Replaces the segment at `l3` (an IPv4 or IPv6 packet of `len` bytes
/// with its TCP header at `l4`, validated by the caller, not a reset) with
/// the reset that answers it, from its destination to its source. Returns
/// the reset's length, or None when the buffer has no room.
pub fn answer(buf: &mut [u8], l3: usize, len: usize, l4: usize) -> Option<usize> {
    let seg = buf.get(l3..l3 + len)?;
    let t = TcpPacket::new_checked(seg.get(l4..)?).ok()?;
    let (sport, dport) = (t.src_port(), t.dst_port());
    let data = seg.len() - l4 - usize::from(t.header_len());
    // RFC 793: an ACK is answered from the sequence it acknowledges;
    // anything else with an ACK of everything it occupied.
    let (seq, ack, flags) = if t.ack() {
        (t.ack_number(), 0, RST)
    } else {
        let occupied = u32::try_from(data).unwrap_or(0) + u32::from(t.syn()) + u32::from(t.fin());
        (0, t.seq_number().wrapping_add(occupied), RST | ACK)
    };
    let v4 = seg.first().map(|b| b >> 4) == Some(4);
    let ip_len = if v4 { V4_LEN } else { V6_LEN };
    let total = ip_len + TCP_LEN;
    if l3 + total > buf.len() {
        return None;
    }
    let out = &mut buf[l3..l3 + total];
    let pseudo = if v4 {
        let ip = Ipv4Packet::new_unchecked(&*out);
        let (src, dst) = (ip.dst_addr(), ip.src_addr());
        Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: IpProtocol::Tcp,
            payload_len: TCP_LEN,
            ttl: TTL,
        }
        .emit(&mut Ipv4Packet::new_unchecked(&mut out[..V4_LEN]));
        pseudo_header_v4(src, dst, 6, u32::from(TCP_LEN_U16))
    } else {
        let mut ip = Ipv6Packet::new_unchecked(&mut out[..V6_LEN]);
        let (src, dst) = (ip.dst_addr(), ip.src_addr());
        ip.set_version_defaults();
        ip.set_payload_len(TCP_LEN_U16);
        ip.set_next_header(IpProtocol::Tcp);
        ip.set_hop_limit(TTL);
        ip.set_src_addr(src);
        ip.set_dst_addr(dst);
        pseudo_header_v6(src, dst, 6, u32::from(TCP_LEN_U16))
    };
    let tcp = &mut out[ip_len..];
    tcp.fill(0);
    tcp[0..2].copy_from_slice(&dport.to_be_bytes());
    tcp[2..4].copy_from_slice(&sport.to_be_bytes());
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    tcp[8..12].copy_from_slice(&ack.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = flags;
    let c = !fold(pseudo + sum(tcp));
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    Some(total)
}
