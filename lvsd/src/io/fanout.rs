//! The classic BPF program that spreads frames over shards.
//!
//! Every packet of a connection must reach the shard that holds it, in both
//! directions. A NAT connection's packets have nothing in common but the
//! client's address and port: client to VIP carries them as its source, the
//! real server's reply as its destination. So the program hashes the source
//! when the destination is a VIP and the destination otherwise, and both
//! directions land on the same shard. The kernel takes the result modulo the
//! number of sockets in the group. Frames that are not IPv4 go to shard 0.
//!
//! Loads use SKF_NET_OFF-relative offsets, so they read the IP header
//! wherever the MAC header ends.

use std::net::Ipv4Addr;

// Classic BPF encoding (linux/filter.h, linux/bpf_common.h).
const LD: u16 = 0x00;
const LDX: u16 = 0x01;
const ST: u16 = 0x02;
const ALU: u16 = 0x04;
const JMP: u16 = 0x05;
const RET: u16 = 0x06;
const MISC: u16 = 0x07;
const W: u16 = 0x00;
const H: u16 = 0x08;
const B: u16 = 0x10;
const ABS: u16 = 0x20;
const IND: u16 = 0x40;
const MEM: u16 = 0x60;
const MSH: u16 = 0xa0;
const JA: u16 = 0x00;
const JEQ: u16 = 0x10;
const K: u16 = 0x00;
const X: u16 = 0x08;
const A: u16 = 0x10;
const MUL: u16 = 0x20;
const RSH: u16 = 0x70;
const XOR: u16 = 0xa0;
const ADD: u16 = 0x00;
const AND: u16 = 0x50;
const LSH: u16 = 0x60;
const TAX: u16 = 0x00;
const TXA: u16 = 0x80;

/// SKF_AD_OFF + SKF_AD_PROTOCOL: the frame's EtherType, host order.
const AD_PROTOCOL: u32 = 0xffff_f000;
/// SKF_AD_OFF + SKF_AD_PKTTYPE: the frame's packet type.
const AD_PKTTYPE: u32 = 0xffff_f004;
/// SKF_AD_OFF + SKF_AD_IFINDEX: the interface the frame was seen on.
const AD_IFINDEX: u32 = 0xffff_f008;
/// SKF_AD_OFF + SKF_AD_VLAN_TAG: the frame's VLAN tag (TCI).
const AD_VLAN_TAG: u32 = 0xffff_f02c;
/// SKF_AD_OFF + SKF_AD_VLAN_TAG_PRESENT: the frame carries a VLAN tag.
const AD_VLAN_TAG_PRESENT: u32 = 0xffff_f030;
/// PACKET_OUTGOING (linux/if_packet.h): a frame the host sends.
const PACKET_OUTGOING: u32 = 4;
/// SKF_NET_OFF: offsets from the network header.
const NET: u32 = 0xfff0_0000;

/// The most VIPs one program can test (jump offsets are 8 bits).
pub const MAX_VIPS: usize = 250;

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// Builds the program for these VIPs; None when there are too many.
pub fn program(vips: &[Ipv4Addr]) -> Option<Vec<libc::sock_filter>> {
    if vips.len() > MAX_VIPS {
        return None;
    }
    let n = vips.len();
    let mut p = vec![
        stmt(LD | H | ABS, AD_PROTOCOL),
        jump(JMP | JEQ | K, 0x0800, 1, 0),
        stmt(RET | K, 0),
        stmt(LD | W | ABS, NET + 16), // destination address
    ];
    // VIP i jumps over the remaining tests and the `ja` to the inbound block.
    for (i, vip) in vips.iter().enumerate() {
        let skip = u8::try_from(n - i).unwrap_or(u8::MAX);
        p.push(jump(JMP | JEQ | K, u32::from(*vip), skip, 0));
    }
    // Not a VIP: hash the destination (the client of a reply).
    let outbound = direction(false, 0);
    let inbound = direction(true, u32::try_from(outbound.len()).unwrap_or(0));
    p.push(stmt(JMP | JA, u32::try_from(inbound.len()).unwrap_or(0)));
    p.extend(inbound);
    p.extend(outbound);
    // Mix address and port.
    p.extend([
        stmt(LDX | W | MEM, 0),
        stmt(ALU | XOR | X, 0),
        stmt(ALU | MUL | K, HASH_MUL),
        stmt(ALU | RSH | K, 16),
        stmt(RET | A, 0),
    ]);
    Some(p)
}

/// A shard socket's own filter: frames seen on lvsd's interfaces
/// (`ifindexes`, at most [`MAX_VIPS`]) that the host did not send and that
/// carry no VLAN ID. The
/// shards' sockets are bound to every interface (one fanout group for
/// all), and in a group the socket's own "ignore outgoing" no longer
/// applies; without this, every frame on the host's other interfaces,
/// loopback and lvsd's local-node device, and every one the host sends,
/// would be copied to a shard only to be passed.
pub fn interface_filter(ifindexes: &[u32]) -> Vec<libc::sock_filter> {
    let n = ifindexes.len().min(MAX_VIPS);
    let mut p = vec![
        stmt(LD | W | ABS, AD_PKTTYPE),
        jump(
            JMP | JEQ | K,
            PACKET_OUTGOING,
            u8::try_from(n + 6).unwrap_or(u8::MAX),
            0,
        ),
        // A frame still carrying a VLAN tag with a VLAN ID on lvsd's
        // interface belongs to a VLAN device on top of it, not to lvsd; a
        // priority tag (ID 0) is untagged traffic, as the kernel takes it.
        stmt(LD | W | ABS, AD_VLAN_TAG_PRESENT),
        jump(JMP | JEQ | K, 0, 3, 0),
        stmt(LD | W | ABS, AD_VLAN_TAG),
        stmt(ALU | AND | K, 0x0fff),
        jump(JMP | JEQ | K, 0, 0, u8::try_from(n + 1).unwrap_or(u8::MAX)),
        stmt(LD | W | ABS, AD_IFINDEX),
    ];
    for (i, &ifx) in ifindexes[..n].iter().enumerate() {
        p.push(jump(
            JMP | JEQ | K,
            ifx,
            u8::try_from(n - i).unwrap_or(u8::MAX),
            0,
        ));
    }
    p.push(stmt(RET | K, 0));
    p.push(stmt(RET | K, u32::MAX));
    p
}

/// One direction's block: leaves the client's port in M[0] and its address
/// in A, and jumps `to_mix` instructions past its own end. Inbound (to a
/// VIP) the client is the source; outbound (a reply) the destination. An
/// ICMP error is about a packet of the connection going the other way:
/// the client is found in the packet it quotes (its destination inbound,
/// its source outbound), so the error reaches the shard that holds the
/// connection.
fn direction(inbound: bool, to_mix: u32) -> Vec<libc::sock_filter> {
    let (port, addr) = if inbound { (0, 12) } else { (2, 16) };
    let (quoted_port, quoted_addr) = if inbound { (2, 16) } else { (0, 12) };
    // Instruction indexes: the head 0..7, the plain block 7..11, the
    // error block 11..23.
    const LEN: u32 = 23;
    vec![
        stmt(LDX | B | MSH, NET),
        stmt(LD | B | ABS, NET + 9), // protocol
        jump(JMP | JEQ | K, 1, 0, 4),
        stmt(LD | B | IND, NET), // ICMP type
        jump(JMP | JEQ | K, 3, 6, 0),
        jump(JMP | JEQ | K, 11, 5, 0),
        jump(JMP | JEQ | K, 12, 4, 0),
        // Plain: the ports follow the IP header.
        stmt(LD | H | IND, NET + port),
        stmt(ST, 0),
        stmt(LD | W | ABS, NET + addr),
        stmt(JMP | JA, LEN - 11 + to_mix),
        // An error: the quoted IP header starts 8 bytes into the ICMP
        // message, its ports after its own header.
        stmt(MISC | TXA, 0),
        stmt(ST, 1),
        stmt(LD | B | IND, NET + 8),
        stmt(ALU | AND | K, 0xf),
        stmt(ALU | LSH | K, 2),
        stmt(ALU | ADD | X, 0),
        stmt(MISC | TAX, 0),
        stmt(LD | H | IND, NET + 8 + quoted_port),
        stmt(ST, 0),
        stmt(LDX | W | MEM, 1),
        stmt(LD | W | IND, NET + 8 + quoted_addr),
        stmt(JMP | JA, to_mix),
    ]
}

/// The same hash in Rust (the XDP program's steering computes it too): the
/// shard a client's connections belong to, for tests to check.
pub fn flow_hash(client: Ipv4Addr, port: u16) -> u32 {
    ((u32::from(client) ^ u32::from(port)).wrapping_mul(HASH_MUL)) >> 16
}

/// The hash's multiplier (the XDP program's steering uses it too).
pub const HASH_MUL: u32 = 0x9e37_79b1;

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny interpreter of the subset the program uses, over an IPv4
    /// packet (network header at offset 0), to check the jumps.
    fn run(p: &[libc::sock_filter], ethertype: u16, pkt: &[u8]) -> u32 {
        run_meta(p, (ethertype, 0, 0, None), pkt)
    }

    /// [`run`] with the frame's (EtherType, ifindex, packet type, VLAN tag:
    /// None or its TCI).
    fn run_meta(p: &[libc::sock_filter], meta: (u16, u32, u32, Option<u32>), pkt: &[u8]) -> u32 {
        let (ethertype, ifindex, pkttype, vlan) = meta;
        let (mut a, mut x, mut m, mut pc) = (0u32, 0u32, [0u32; 16], 0usize);
        let rd = |off: u32, len: usize| -> u32 {
            let o = (off - NET) as usize;
            pkt[o..o + len]
                .iter()
                .fold(0, |v, &b| (v << 8) | u32::from(b))
        };
        loop {
            let i = p[pc];
            pc += 1;
            match i.code {
                c if c == LD | H | ABS && i.k == AD_PROTOCOL => a = u32::from(ethertype),
                c if c == LD | W | ABS && i.k == AD_IFINDEX => a = ifindex,
                c if c == LD | W | ABS && i.k == AD_PKTTYPE => a = pkttype,
                c if c == LD | W | ABS && i.k == AD_VLAN_TAG_PRESENT => {
                    a = u32::from(vlan.is_some())
                }
                c if c == LD | W | ABS && i.k == AD_VLAN_TAG => a = vlan.unwrap_or(0),
                c if c == LD | W | ABS => a = rd(i.k, 4),
                c if c == LD | B | ABS => a = rd(i.k, 1),
                c if c == LD | W | IND => a = rd(i.k + x, 4),
                c if c == LD | H | IND => a = rd(i.k + x, 2),
                c if c == LD | B | IND => a = rd(i.k + x, 1),
                c if c == LDX | B | MSH => x = (rd(i.k, 1) & 0xf) * 4,
                c if c == LDX | W | MEM => x = m[i.k as usize],
                c if c == ST => m[i.k as usize] = a,
                c if c == MISC | TAX => x = a,
                c if c == MISC | TXA => a = x,
                c if c == ALU | ADD | X => a = a.wrapping_add(x),
                c if c == ALU | AND | K => a &= i.k,
                c if c == ALU | LSH | K => a <<= i.k,
                c if c == JMP | JEQ | K => pc += usize::from(if a == i.k { i.jt } else { i.jf }),
                c if c == JMP | JA => pc += i.k as usize,
                c if c == ALU | XOR | X => a ^= x,
                c if c == ALU | MUL | K => a = a.wrapping_mul(i.k),
                c if c == ALU | RSH | K => a >>= i.k,
                c if c == RET | A => return a,
                c if c == RET | K => return i.k,
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
    }

    fn packet(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
        let mut p = vec![0u8; 28];
        p[0] = 0x45;
        p[12..16].copy_from_slice(&src);
        p[16..20].copy_from_slice(&dst);
        p[20..22].copy_from_slice(&sport.to_be_bytes());
        p[22..24].copy_from_slice(&dport.to_be_bytes());
        p
    }

    #[test]
    fn both_directions_hash_alike() {
        let vips = [
            Ipv4Addr::new(198, 19, 0, 100),
            Ipv4Addr::new(198, 19, 0, 101),
        ];
        let p = program(&vips).unwrap();
        for (cport, vip) in [(40000u16, [198, 19, 0, 100]), (51234, [198, 19, 0, 101])] {
            let inbound = run(&p, 0x0800, &packet([198, 18, 0, 2], cport, vip, 80));
            let reply = run(
                &p,
                0x0800,
                &packet([198, 18, 1, 11], 8080, [198, 18, 0, 2], cport),
            );
            assert_eq!(inbound, reply);
            assert_eq!(inbound, flow_hash(Ipv4Addr::new(198, 18, 0, 2), cport));
        }
        assert_eq!(run(&p, 0x0806, &[]), 0);
    }

    /// An ICMP error (`t`, `code`) from `from` to `to`, quoting `quoted`
    /// (an IP packet's first 28 bytes), behind an IP header of `ihl` words.
    fn icmp_error(from: [u8; 4], to: [u8; 4], t: u8, code: u8, quoted: &[u8], ihl: u8) -> Vec<u8> {
        let hl = usize::from(ihl) * 4;
        let mut p = vec![0u8; hl + 8];
        p[0] = 0x40 | ihl;
        p[9] = 1;
        p[12..16].copy_from_slice(&from);
        p[16..20].copy_from_slice(&to);
        p[hl] = t;
        p[hl + 1] = code;
        p.extend_from_slice(quoted);
        p
    }

    /// ICMP errors about a connection hash to the shard that holds it: a
    /// router's error to the VIP about lvsd's packet to the client, and an
    /// error to the client about its packet to a real server (NAT), also
    /// behind IP options; an echo request to the VIP still goes somewhere.
    #[test]
    fn icmp_errors_hash_to_their_connection() {
        let vips = [Ipv4Addr::new(198, 19, 0, 100)];
        let p = program(&vips).unwrap();
        let (client, cport) = ([198, 18, 0, 2], 40000u16);
        let want = flow_hash(Ipv4Addr::from(client), cport);
        let vip = [198, 19, 0, 100];
        let to_client = packet(vip, 80, client, cport);
        let to_rs = packet(client, cport, [198, 18, 1, 11], 8080);
        for (t, code) in [(3u8, 4u8), (11, 0), (12, 0)] {
            for ihl in [5u8, 6] {
                let router = [198, 18, 0, 254];
                let e = icmp_error(router, vip, t, code, &to_client, ihl);
                assert_eq!(
                    run(&p, 0x0800, &e),
                    want,
                    "to the VIP: {t}/{code}, ihl {ihl}"
                );
                let e = icmp_error([198, 18, 1, 11], client, t, code, &to_rs, ihl);
                assert_eq!(
                    run(&p, 0x0800, &e),
                    want,
                    "to the client: {t}/{code}, ihl {ihl}"
                );
            }
        }
        // Quoting a packet with options of its own.
        let mut quoted = vec![0u8; 32];
        quoted[0] = 0x46;
        quoted[12..16].copy_from_slice(&vip);
        quoted[16..20].copy_from_slice(&client);
        quoted[24..26].copy_from_slice(&80u16.to_be_bytes());
        quoted[26..28].copy_from_slice(&cport.to_be_bytes());
        let e = icmp_error([198, 18, 0, 254], vip, 3, 4, &quoted, 5);
        assert_eq!(run(&p, 0x0800, &e), want, "quoted options");
        // Not an error: hashed as before (type and code as the port).
        let mut echo = icmp_error(client, vip, 8, 0, &[], 5);
        echo.extend_from_slice(&[0u8; 4]);
        assert_eq!(
            run(&p, 0x0800, &echo),
            flow_hash(Ipv4Addr::from(client), 0x0800)
        );
    }

    /// The shard sockets' filter keeps what arrives on lvsd's interfaces
    /// and nothing the host sends or sees elsewhere.
    #[test]
    fn interface_filter_keeps_lvsd_interfaces_only() {
        let p = interface_filter(&[3, 7]);
        let pkt = packet([198, 18, 0, 2], 40000, [198, 19, 0, 100], 80);
        for (ifindex, pkttype, vlan, kept) in [
            (3, 0, None, true),          // to us, on ext0
            (7, 0, None, true),          // to us, on int0
            (7, 1, None, true),          // broadcast (ARP)
            (7, 3, None, true),          // to another host (a bridge port)
            (3, 4, None, false),         // the host sending on ext0
            (1, 0, None, false),         // loopback
            (9, 0, None, false),         // another interface, or local-node
            (3, 0, Some(0x000a), false), // VLAN 10: a VLAN device's
            (3, 0, Some(0xa00a), false), // VLAN 10, priority 5
            (3, 0, Some(0xa000), true),  // a priority tag only (VLAN ID 0)
        ] {
            let got = run_meta(&p, (0x0800, ifindex, pkttype, vlan), &pkt);
            assert_eq!(
                got != 0,
                kept,
                "ifindex {ifindex}, type {pkttype}, vlan {vlan:?}"
            );
        }
        assert_eq!(
            run_meta(&interface_filter(&[]), (0x0800, 3, 0, None), &pkt),
            0
        );
    }

    #[test]
    fn too_many_vips() {
        let many: Vec<Ipv4Addr> = (0..=u32::try_from(MAX_VIPS).unwrap())
            .map(Ipv4Addr::from)
            .collect();
        assert!(program(&many).is_none());
        assert!(program(&many[..MAX_VIPS]).is_some());
    }
}
