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

/// SKF_AD_OFF + SKF_AD_PROTOCOL: the frame's EtherType, host order.
const AD_PROTOCOL: u32 = 0xffff_f000;
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
    // Not a VIP: hash the destination (the client of a reply). The outbound
    // block is 5 instructions after the inbound block of 5.
    p.push(stmt(JMP | JA, 5));
    // Inbound: the client is the source.
    p.extend([
        stmt(LDX | B | MSH, NET),
        stmt(LD | H | IND, NET),
        stmt(ST, 0),
        stmt(LD | W | ABS, NET + 12),
        stmt(JMP | JA, 4),
    ]);
    // Outbound: the client is the destination.
    p.extend([
        stmt(LDX | B | MSH, NET),
        stmt(LD | H | IND, NET + 2),
        stmt(ST, 0),
        stmt(LD | W | ABS, NET + 16),
    ]);
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
        let (mut a, mut x, mut m0, mut pc) = (0u32, 0u32, 0u32, 0usize);
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
                c if c == LD | W | ABS => a = rd(i.k, 4),
                c if c == LD | H | IND => a = rd(i.k + x, 2),
                c if c == LDX | B | MSH => x = (rd(i.k, 1) & 0xf) * 4,
                c if c == LDX | W | MEM => x = m0,
                c if c == ST => m0 = a,
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

    #[test]
    fn too_many_vips() {
        let many: Vec<Ipv4Addr> = (0..=u32::try_from(MAX_VIPS).unwrap())
            .map(Ipv4Addr::from)
            .collect();
        assert!(program(&many).is_none());
        assert!(program(&many[..MAX_VIPS]).is_some());
    }
}
