//! The XDP backend: an XDP program on every interface lvsd forwards on
//! sends the frames lvsd forwards to its AF_XDP sockets ([`super::xsk`])
//! and passes everything else to the kernel as if nothing were there.
//!
//! The program redirects exactly what the nftables filter
//! ([`super::kernel`]) keeps from the kernel: TCP and UDP to a virtual
//! service (address, protocol, port), and TCP and UDP from a NAT real server
//! (address, protocol, port) not addressed to the director itself. Frames it
//! passes (ARP, ICMP, IP options, fragments, other traffic) reach the
//! kernel, and so lvsd's packet sockets, which handle them as they do without
//! XDP. A queue with no AF_XDP socket also passes.
//!
//! The program is assembled here at start-up (eBPF bytecode, no compiler
//! needed at build time); the service sets are BPF hash maps kept in step
//! with the rule table by [`XdpFilter::sync`].

use super::bpf::{self, Asm, Cond, Label, Map, Size, R};
use super::kernel::{Elements, FilterSets};
use super::xsk::XskSet;
use crate::dataplane::Interfaces;
use lvsd_proto::Protocol;
use std::collections::BTreeSet;
use std::io;
use std::net::IpAddr;
use std::os::fd::OwnedFd;

// The program compares header fields read with little-endian loads against
// constants written for that byte order.
const _: () = assert!(
    cfg!(target_endian = "little"),
    "the XDP program assumes little-endian"
);

/// Most elements per set.
const MAX_ELEMENTS: u32 = 65_536;
const MAX_LOCAL: u32 = 4_096;
const XDP_PASS: i32 = 2;

/// The maps the program reads.
pub struct XdpFilter {
    svc4: Map,
    nat4: Map,
    local4: Map,
    svc6: Map,
    nat6: Map,
    local6: Map,
    services: Elements,
    nat_dests: Elements,
    local: BTreeSet<IpAddr>,
}

fn proto_num(p: Protocol) -> u8 {
    match p {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
    }
}

/// A map key: address, port (both in network order), protocol, zero.
fn key(ip: IpAddr, p: Protocol, port: u16) -> Vec<u8> {
    let mut k = match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    k.extend_from_slice(&port.to_be_bytes());
    k.extend_from_slice(&[proto_num(p), 0]);
    k
}

fn addr_key(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

impl XdpFilter {
    pub fn new() -> io::Result<XdpFilter> {
        let h = |k, max| Map::create(bpf::MAP_HASH, k, 1, max);
        Ok(XdpFilter {
            svc4: h(8, MAX_ELEMENTS)?,
            nat4: h(8, MAX_ELEMENTS)?,
            local4: h(4, MAX_LOCAL)?,
            svc6: h(20, MAX_ELEMENTS)?,
            nat6: h(20, MAX_ELEMENTS)?,
            local6: h(16, MAX_LOCAL)?,
            services: Elements::new(),
            nat_dests: Elements::new(),
            local: BTreeSet::new(),
        })
    }

    /// Brings the maps in line: services, NAT destinations (with removed
    /// ones that still have connections) and the host's own addresses.
    /// Elements are added before stale ones go, so nothing in both sets ever
    /// falls back to the slow path in between. Each change is recorded as it
    /// succeeds, so after a failure (a full map, say) the recorded sets are
    /// still what the maps hold and the next sync retries the rest; the
    /// first error is returned.
    pub fn sync(&mut self, want: &FilterSets) -> io::Result<()> {
        let (s, d, l) = (&want.services, &want.nat_dests, &want.local);
        let XdpFilter {
            svc4,
            nat4,
            local4,
            svc6,
            nat6,
            local6,
            services,
            nat_dests,
            local,
        } = self;
        let one = [1u8];
        let mut err = None;
        let set_local = |ip: IpAddr| {
            let m = if ip.is_ipv4() { &*local4 } else { &*local6 };
            m.update(&addr_key(ip), &one)
        };
        let del_local = |ip: IpAddr| {
            let m = if ip.is_ipv4() { &*local4 } else { &*local6 };
            m.delete(&addr_key(ip))
        };
        let set_in = |v4: &Map, v6: &Map, (ip, p, port): (IpAddr, Protocol, u16)| {
            let m = if ip.is_ipv4() { v4 } else { v6 };
            m.update(&key(ip, p, port), &one)
        };
        let del_in = |v4: &Map, v6: &Map, (ip, p, port): (IpAddr, Protocol, u16)| {
            let m = if ip.is_ipv4() { v4 } else { v6 };
            m.delete(&key(ip, p, port))
        };
        // Local addresses first: a NAT destination entry must never redirect
        // the director's own traffic.
        add_missing(l, local, set_local, &mut err);
        add_missing(s, services, |e| set_in(svc4, svc6, e), &mut err);
        add_missing(d, nat_dests, |e| set_in(nat4, nat6, e), &mut err);
        remove_stale(s, services, |e| del_in(svc4, svc6, e), &mut err);
        remove_stale(d, nat_dests, |e| del_in(nat4, nat6, e), &mut err);
        remove_stale(l, local, del_local, &mut err);
        err.map_or(Ok(()), Err)
    }

    /// The program for the interface with MAC address `mac`, redirecting to
    /// the sockets in `xsks`.
    pub fn program(
        &self,
        mac: [u8; 6],
        xsks: &Map,
        shards: usize,
    ) -> Result<Vec<bpf::Insn>, String> {
        program(
            mac,
            xsks.fd(),
            shards,
            [&self.svc4, &self.nat4, &self.local4],
            [&self.svc6, &self.nat6, &self.local6],
        )
    }
}

/// The programs attached to the interfaces and their socket maps; dropping
/// this detaches them.
pub struct Attached {
    _links: Vec<OwnedFd>,
    _progs: Vec<OwnedFd>,
    _xsks: Vec<Map>,
}

/// Adds to the maps (through `add`) what `want` has and `have` lacks,
/// recording each success in `have`; keeps the first error in `err`.
fn add_missing<T: Ord + Copy>(
    want: &BTreeSet<T>,
    have: &mut BTreeSet<T>,
    mut add: impl FnMut(T) -> io::Result<()>,
    err: &mut Option<io::Error>,
) {
    let missing: Vec<T> = want.difference(have).copied().collect();
    for t in missing {
        match add(t) {
            Ok(()) => {
                have.insert(t);
            }
            Err(e) => {
                err.get_or_insert(e);
            }
        }
    }
}

/// Removes from the maps (through `del`) what `have` has and `want` lacks,
/// recording each success in `have`; an element already gone counts as
/// removed. Keeps the first error in `err`.
fn remove_stale<T: Ord + Copy>(
    want: &BTreeSet<T>,
    have: &mut BTreeSet<T>,
    mut del: impl FnMut(T) -> io::Result<()>,
    err: &mut Option<io::Error>,
) {
    let stale: Vec<T> = have.difference(want).copied().collect();
    for t in stale {
        match del(t) {
            Ok(()) => {
                have.remove(&t);
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                have.remove(&t);
            }
            Err(e) => {
                err.get_or_insert(e);
            }
        }
    }
}

/// An interface to attach to: name, ifindex, MAC address, and (socket map
/// key, socket) pairs.
pub type Target = (String, u32, [u8; 6], Vec<(u32, i32)>);

/// Loads and attaches the program on each interface of `ifaces`.
pub fn attach(filter: &XdpFilter, ifaces: &[Target], shards: usize) -> io::Result<Attached> {
    let mut a = Attached {
        _links: Vec::new(),
        _progs: Vec::new(),
        _xsks: Vec::new(),
    };
    for (name, ifindex, mac, sockets) in ifaces {
        let max = sockets.iter().map(|(q, _)| q + 1).max().unwrap_or(1);
        let xsks = Map::create(bpf::MAP_XSKMAP, 4, 4, max)?;
        for (q, fd) in sockets {
            xsks.update(&q.to_ne_bytes(), &fd.to_ne_bytes())?;
        }
        let insns = filter
            .program(*mac, &xsks, shards)
            .map_err(io::Error::other)?;
        let prog = bpf::load_xdp(&insns, "lvsd_xdp")?;
        // With several shards, several sockets share each queue's fill
        // ring. The generic (skb) mode locked each socket rather than the
        // shared ring until a 2025 kernel fix, so two CPUs could take the
        // same frame; the driver's own XDP runs a queue on one CPU at a
        // time.
        let link = bpf::attach_xdp(&prog, *ifindex, shards > 1).map_err(|e| {
            let why = if shards > 1 {
                " (several shards need the driver's own XDP support)"
            } else {
                ""
            };
            io::Error::new(e.kind(), format!("attaching to {name}: {e}{why}"))
        })?;
        a._links.push(link);
        a._progs.push(prog);
        a._xsks.push(xsks);
    }
    Ok(a)
}

/// Entries per AF_XDP ring, at most (fewer with many queues).
const RING: u32 = 2048;
/// The largest MTU whose frames (with Ethernet and a VLAN tag) fit a UMEM
/// frame after the kernel's 256 bytes of XDP headroom.
#[allow(clippy::cast_possible_truncation)] // 2048 - 274 fits u32
pub const MAX_MTU: u32 = (super::xsk::FRAME - 256 - 18) as u32;
/// UMEM frames per shard, at most (64 MiB of 2 KiB frames; the one UMEM all
/// shards share holds at most this many times the shards).
const MAX_FRAMES: usize = 32_768;
/// Most receive queues bound per interface.
const MAX_QUEUES: u32 = 64;

/// A running XDP backend: the maps lvsd updates, the attached programs, and
/// the sockets, one set per shard (each goes to its shard).
pub struct Backend {
    pub filter: XdpFilter,
    pub attached: Attached,
    pub shards: Vec<XskSet>,
}

impl Backend {
    /// How it runs, for the log and `lvsadm --status`.
    pub fn describe(&self) -> String {
        let mode = if self.shards.iter().all(XskSet::zero_copy) {
            "zero-copy"
        } else {
            "copy"
        };
        let sockets: usize = self.shards.iter().map(|s| s.sockets.len()).sum();
        format!("xdp ({mode} mode, {sockets} AF_XDP sockets)")
    }
}

/// Receive queues of interface `name` (as sysfs lists them; 1 if unknown).
fn rx_queues(name: &str) -> u32 {
    let n = std::fs::read_dir(format!("/sys/class/net/{name}/queues"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count()
        })
        .unwrap_or(1);
    u32::try_from(n).unwrap_or(1).clamp(1, MAX_QUEUES)
}

/// Ring entries such that `n` times two rings' worth of frames stays
/// within [`MAX_FRAMES`] (the UMEM holds three rings' worth per queue, see
/// [`setup`]).
fn ring_size(n: usize) -> u32 {
    let per = MAX_FRAMES / (2 * n.max(1));
    let pow = if per.is_power_of_two() {
        per
    } else {
        per.next_power_of_two() / 2
    };
    u32::try_from(pow).unwrap_or(RING).clamp(64, RING)
}

/// How many shards the XDP backend can run when `wanted` are asked for: a
/// shard needs a receive queue of its own on every interface (to transmit
/// on it), so no more than the interface with the fewest queues has.
pub fn shards_for(ifaces: &Interfaces, wanted: usize) -> usize {
    ifaces
        .list
        .iter()
        .map(|i| rx_queues(&i.name) as usize)
        .min()
        .unwrap_or(1)
        .min(wanted)
        .max(1)
}

/// Sets up the XDP backend on every interface for `shards` shards (see
/// [`shards_for`]): one UMEM, and on every receive queue one AF_XDP socket
/// per shard (queue q's fill, completion and TX rings with shard q mod
/// `shards`); the program redirects each frame to its connection's shard's
/// socket on the queue it came in on.
pub fn setup(ifaces: &Interfaces, shards: usize) -> io::Result<Backend> {
    for i in &ifaces.list {
        if i.mtu > MAX_MTU {
            return Err(io::Error::other(format!(
                "{}: MTU {} is above the {MAX_MTU} the XDP backend takes",
                i.name, i.mtu
            )));
        }
    }
    let shards = shards.max(1);
    let filter = XdpFilter::new()?;
    let mut bindings = Vec::new();
    for (slot, i) in ifaces.list.iter().enumerate() {
        let slot = u16::try_from(slot).map_err(|_| io::Error::other("too many interfaces"))?;
        let queues = rx_queues(&i.name);
        if (queues as usize) < shards {
            return Err(io::Error::other(format!(
                "{}: {queues} receive queue(s) for {shards} shards",
                i.name
            )));
        }
        for q in 0..queues {
            bindings.push((slot, i.ifindex, q));
        }
    }
    // Three rings' worth of frames per queue (its fill ring, the RX rings
    // its frames wait in, a TX ring), within MAX_FRAMES per shard.
    let ring = ring_size((bindings.len() * 3).div_ceil(2 * shards));
    let sets = XskSet::for_shards(&bindings, shards, ring, ifaces.list.len())?;
    // The program's socket map: queue q's socket of shard j at q * shards
    // + j.
    let n = u32::try_from(shards).map_err(|_| io::Error::other("too many shards"))?;
    let per_iface: Vec<Target> = ifaces
        .list
        .iter()
        .enumerate()
        .map(|(slot, i)| {
            let socks = sets
                .iter()
                .zip(0u32..)
                .flat_map(|(set, j)| set.sockets.iter().map(move |s| (j, s)))
                .filter(|(_, s)| usize::from(s.slot) == slot)
                .map(|(j, s)| (s.queue * n + j, s.raw_fd()))
                .collect();
            (i.name.clone(), i.ifindex, i.mac.0, socks)
        })
        .collect();
    let attached = attach(&filter, &per_iface, shards)?;
    Ok(Backend {
        filter,
        attached,
        shards: sets,
    })
}

/// Offsets of the fields the program reads.
const ETH_TYPE: i16 = 12;
const ETH_LEN: i16 = 14;
const V4_VER_IHL: i16 = ETH_LEN;
const V4_FRAG: i16 = ETH_LEN + 6;
const V4_PROTO: i16 = ETH_LEN + 9;
const V4_SRC: i16 = ETH_LEN + 12;
const V4_DST: i16 = ETH_LEN + 16;
const V4_L4: i16 = ETH_LEN + 20;
const V6_NEXT: i16 = ETH_LEN + 6;
const V6_SRC: i16 = ETH_LEN + 8;
const V6_DST: i16 = ETH_LEN + 24;
const V6_L4: i16 = ETH_LEN + 40;
/// Stack slots: the set key, then the local-address key.
const KEY: i16 = -24;
const LOCAL_KEY: i16 = -40;

/// Copies `words` 32-bit words from the packet at `from` to the stack at
/// `to` (through r2).
fn copy_words(a: &mut Asm, from: i16, to: i16, words: i16) {
    for w in 0..words {
        a.load(Size::W, R::R2, R::R8, from + 4 * w)
            .store(Size::W, R::R10, to + 4 * w, R::R2);
    }
}

/// The lookups for one IP version, with r7 the L4 protocol: to
/// `to_service` when (destination, its port, protocol) is a service, to
/// `from_nat` when (source, its port, protocol) is a NAT destination and the
/// destination not a local address; to `pass` otherwise. Addresses are
/// `words` 32-bit words long; `at` holds the offsets of the source, the
/// destination and the L4 header. The key's layout is [`key`]'s.
fn lookups(
    a: &mut Asm,
    maps: [&Map; 3],
    words: i16,
    (src, dst, l4): (i16, i16, i16),
    (to_service, from_nat): (Label, Label),
    pass: Label,
) {
    let port_at = KEY + 4 * words;
    copy_words(a, dst, KEY, words);
    a.load(Size::H, R::R2, R::R8, l4 + 2)
        .store(Size::H, R::R10, port_at, R::R2)
        .store(Size::B, R::R10, port_at + 2, R::R7)
        .store_imm(Size::B, R::R10, port_at + 3, 0);
    lookup(a, maps[0], KEY);
    a.jmp_imm(Cond::Ne, R::R0, 0, to_service);
    // The same key with the source and its port (protocol and pad stay).
    copy_words(a, src, KEY, words);
    a.load(Size::H, R::R2, R::R8, l4)
        .store(Size::H, R::R10, port_at, R::R2);
    lookup(a, maps[1], KEY);
    a.jmp_imm(Cond::Eq, R::R0, 0, pass);
    copy_words(a, dst, LOCAL_KEY, words);
    lookup(a, maps[2], LOCAL_KEY);
    a.jmp_imm(Cond::Ne, R::R0, 0, pass).jmp(from_nat);
}

/// Looks up the key at fp+`at` in `map`; r0 is the result.
fn lookup(a: &mut Asm, map: &Map, at: i16) {
    a.load_map(R::R1, map.fd())
        .mov(R::R2, R::R10)
        .add_imm(R::R2, i32::from(at))
        .call(bpf::HELPER_MAP_LOOKUP);
}

/// The program. Registers: r6 the context, r7 the L4 protocol, r8 the
/// packet's start, r9 its end (callee-saved: they survive helper calls).
/// Only frames addressed to `mac` are candidates: lvsd would pass any other
/// (a promiscuous interface's), and a redirected frame never reaches the
/// kernel.
fn program(
    mac: [u8; 6],
    xsks: i32,
    shards: usize,
    v4: [&Map; 3],
    v6: [&Map; 3],
) -> Result<Vec<bpf::Insn>, String> {
    let shards = i32::try_from(shards.max(1)).map_err(|_| "too many shards".to_string())?;
    let mut a = Asm::default();
    let pass = a.label();
    let redirect = a.label();
    let client_src = a.label();
    let client_dst = a.label();
    let hash = a.label();
    let first_shard = a.label();
    let ipv4 = a.label();
    let ipv6 = a.label();
    let l4v4 = a.label();
    let l4v6 = a.label();

    a.mov(R::R6, R::R1)
        .load(Size::W, R::R8, R::R6, 0)
        .load(Size::W, R::R9, R::R6, 4)
        .mov(R::R2, R::R8)
        .add_imm(R::R2, i32::from(ETH_LEN))
        .jmp_reg(Cond::Gt, R::R2, R::R9, pass)
        // The destination MAC, read little-endian.
        .load(Size::W, R::R2, R::R8, 0)
        .jmp32_imm(
            Cond::Ne,
            R::R2,
            u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]),
            pass,
        )
        .load(Size::H, R::R2, R::R8, 4)
        .jmp_imm(
            Cond::Ne,
            R::R2,
            i32::from(u16::from_le_bytes([mac[4], mac[5]])),
            pass,
        )
        .load(Size::H, R::R7, R::R8, ETH_TYPE)
        // Network order read as a little-endian u16.
        .jmp_imm(Cond::Eq, R::R7, 0x0008, ipv4)
        .jmp_imm(Cond::Eq, R::R7, 0xdd86, ipv6)
        .jmp(pass);

    // IPv4 without options or fragmentation, TCP or UDP.
    a.bind(ipv4)
        .mov(R::R2, R::R8)
        .add_imm(R::R2, i32::from(V4_L4 + 4))
        .jmp_reg(Cond::Gt, R::R2, R::R9, pass)
        .load(Size::B, R::R2, R::R8, V4_VER_IHL)
        .jmp_imm(Cond::Ne, R::R2, 0x45, pass)
        .load(Size::H, R::R2, R::R8, V4_FRAG)
        // More-fragments and the offset, network order read little-endian.
        .and_imm(R::R2, 0xff3f)
        .jmp_imm(Cond::Ne, R::R2, 0, pass)
        .load(Size::B, R::R7, R::R8, V4_PROTO)
        .jmp_imm(Cond::Eq, R::R7, 6, l4v4)
        .jmp_imm(Cond::Ne, R::R7, 17, pass);
    a.bind(l4v4);
    lookups(
        &mut a,
        v4,
        1,
        (V4_SRC, V4_DST, V4_L4),
        (client_src, client_dst),
        pass,
    );

    // IPv6, TCP or UDP right after the fixed header.
    a.bind(ipv6)
        .mov(R::R2, R::R8)
        .add_imm(R::R2, i32::from(V6_L4 + 4))
        .jmp_reg(Cond::Gt, R::R2, R::R9, pass)
        .load(Size::B, R::R7, R::R8, V6_NEXT)
        .jmp_imm(Cond::Eq, R::R7, 6, l4v6)
        .jmp_imm(Cond::Ne, R::R7, 17, pass);
    a.bind(l4v6);
    lookups(
        &mut a,
        v6,
        4,
        (V6_SRC, V6_DST, V6_L4),
        (first_shard, first_shard),
        pass,
    );

    // The shard that owns the connection: the client's address and port
    // hashed as fanout::flow_hash does (IPv6: the first shard), so both
    // directions of a connection reach the same shard.
    a.bind(client_src)
        .load(Size::W, R::R2, R::R8, V4_SRC)
        .load(Size::H, R::R3, R::R8, V4_L4)
        .jmp(hash);
    a.bind(client_dst)
        .load(Size::W, R::R2, R::R8, V4_DST)
        .load(Size::H, R::R3, R::R8, V4_L4 + 2);
    a.bind(hash)
        .from_be(R::R2, 32)
        .from_be(R::R3, 16)
        .xor32(R::R2, R::R3)
        .mul32_imm(R::R2, super::fanout::HASH_MUL as i32)
        .rsh32_imm(R::R2, 16)
        .mod32_imm(R::R2, shards)
        .jmp(redirect);
    a.bind(first_shard).mov_imm(R::R2, 0);
    // To that shard's socket on the receive queue (key queue * shards +
    // shard); to the kernel if there is none.
    a.bind(redirect)
        .load(Size::W, R::R3, R::R6, 16)
        .mul32_imm(R::R3, shards)
        .add32(R::R2, R::R3)
        .load_map(R::R1, xsks)
        .mov_imm(R::R3, XDP_PASS)
        .call(bpf::HELPER_REDIRECT_MAP)
        .exit();
    a.bind(pass).mov_imm(R::R0, XDP_PASS).exit();
    a.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    #[test]
    fn rings_shrink_with_many_queues() {
        assert_eq!(ring_size(2), 2048);
        assert_eq!(ring_size(8), 2048);
        assert_eq!(ring_size(16), 1024);
        assert_eq!(ring_size(24), 512);
        assert_eq!(ring_size(128), 128);
        assert_eq!(ring_size(10_000), 64);
    }

    #[test]
    fn keys_are_network_order() {
        let k = key("198.18.0.1".parse().unwrap(), Protocol::Udp, 53);
        assert_eq!(k, [198, 18, 0, 1, 0, 53, 17, 0]);
        let k6 = key("2001:db8::1".parse().unwrap(), Protocol::Tcp, 80);
        assert_eq!(k6.len(), 20);
        assert_eq!(&k6[16..], &[0, 80, 6, 0]);
    }

    fn nat(n: u32) -> Vec<(Protocol, SocketAddr)> {
        (0..n)
            .map(|i| {
                let ip = std::net::Ipv4Addr::from(0xc612_0000 + i); // 198.18.x.y
                (Protocol::Tcp, SocketAddr::from((ip, 8080)))
            })
            .collect()
    }

    /// The filter's maps, or None (and a line saying the test is skipped)
    /// where BPF maps cannot be made, unless the run requires the
    /// privileged tests (`LVS_REQUIRE_NETNS` set and not "0", as CI sets
    /// it).
    fn filter_or_skip() -> Option<XdpFilter> {
        match XdpFilter::new() {
            Ok(f) => Some(f),
            Err(e) if std::env::var("LVS_REQUIRE_NETNS").is_ok_and(|v| v != "0") => {
                panic!("LVS_REQUIRE_NETNS is set but BPF maps cannot be made: {e}")
            }
            Err(e) => {
                eprintln!("skipped: cannot create BPF maps here (needs root): {e}");
                None
            }
        }
    }

    /// A sync that fails part-way (more NAT destinations than the map
    /// holds) leaves the recorded sets true to the maps, and the next sync
    /// converges; an element deleted behind lvsd's back does not wedge it.
    #[test]
    fn sync_survives_a_failure_and_converges() {
        let Some(mut f) = filter_or_skip() else {
            return;
        };
        let svc = [(Protocol::Udp, "198.19.0.100:53".parse().unwrap())];
        let local = ["198.18.0.1".parse().unwrap()];
        let too_many = nat(MAX_ELEMENTS + 1);
        let sets =
            |svc: &[(Protocol, SocketAddr)], nat: &[(Protocol, SocketAddr)], l: &[IpAddr]| {
                FilterSets::new(svc.iter().copied(), nat.iter().copied(), l.iter().copied())
            };
        let e = f.sync(&sets(&svc, &too_many, &local)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::E2BIG), "{e}");
        assert_eq!(f.nat_dests.len(), MAX_ELEMENTS as usize);
        assert!(f.svc4.contains(&key(svc[0].1.ip(), Protocol::Udp, 53)));

        // Fewer now: the rest must go, the service must stay.
        let few = nat(3);
        f.sync(&sets(&svc, &few, &local)).unwrap();
        assert_eq!(f.nat_dests.len(), 3);
        for (p, a) in nat(MAX_ELEMENTS + 1) {
            let want = few.contains(&(p, a));
            assert_eq!(f.nat4.contains(&key(a.ip(), p, a.port())), want, "{a}");
        }

        // Someone removed an element: removing it again is not an error.
        let (p, a) = few[0];
        f.nat4.delete(&key(a.ip(), p, a.port())).unwrap();
        f.sync(&sets(&svc, &[], &local)).unwrap();
        assert!(f.nat_dests.is_empty());
        f.sync(&FilterSets::default()).unwrap();
        assert!(!f.svc4.contains(&key(svc[0].1.ip(), Protocol::Udp, 53)));
        assert!(!f.local4.contains(&addr_key(local[0])));
    }

    /// The kernel's verifier accepts the program (needs root: skipped
    /// otherwise, and said so).
    #[test]
    fn verifier_accepts_the_program() {
        let Some(filter) = filter_or_skip() else {
            return;
        };
        let xsks = Map::create(bpf::MAP_XSKMAP, 4, 4, 4).unwrap();
        let insns = filter.program([0x02, 0, 0, 0, 0, 0x81], &xsks, 2).unwrap();
        bpf::load_xdp(&insns, "lvsd_test").unwrap();
    }
}
