//! The neighbour resolver: finds the MAC address of every real server, by
//! ARP (IPv4) and neighbour discovery (IPv6, RFC 4861), and publishes the
//! table the shards read.
//!
//! It runs on its own thread with its own packet socket, filtered in the
//! kernel to ARP and neighbour advertisements. Every real server of the rule
//! table on a subnet of one of lvsd's interfaces is wanted; an unresolved one
//! is asked for once a second, a resolved one is re-asked after [`REFRESH`]
//! and forgotten when [`STALE`] passes without an answer. Unanswered
//! requests are counted; a real server left unanswered for
//! [`UNREACHABLE_AFTER`] requests, or on no subnet of lvsd's interfaces, is
//! marked unreachable and gets no new connections until it answers.

use super::sys;
use crate::dataplane::{Interfaces, NeighTable, Neighbor};
use crate::rules::RuleTable;
use crate::wire::arp::{ArpOperation, ArpPacket, ArpRepr};
use crate::wire::ethernet::{EtherType, EthernetFrame, MacAddr, HEADER_LEN};
use crate::wire::icmp::{v6, IcmpPacket};
use crate::wire::ipv4::IpProtocol;
use crate::wire::ipv6::Ipv6Packet;
use arc_swap::ArcSwap;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Re-ask a resolved neighbour this often.
const REFRESH: Duration = Duration::from_secs(30);
/// Forget a neighbour that has not answered for this long.
const STALE: Duration = Duration::from_secs(90);
/// Ask an unresolved neighbour this often.
const RETRY: Duration = Duration::from_secs(1);
/// Unanswered requests after which an unresolved real server is left out
/// of scheduling (`DestState::unreachable`) until it answers.
const UNREACHABLE_AFTER: u32 = 3;

#[derive(Debug)]
struct Entry {
    iface: u16,
    mac: Option<MacAddr>,
    seen: Option<Instant>,
    asked: Option<Instant>,
    /// Requests sent since the last answer.
    unanswered: u32,
}

/// Counters the resolver keeps.
#[derive(Debug, Default)]
pub struct NeighCounters {
    /// Neighbours resolved now (a gauge).
    pub resolved: AtomicU64,
    pub requests: AtomicU64,
    pub replies: AtomicU64,
    pub failures: AtomicU64,
}

/// Runs until `stop` is set.
pub fn run(
    ifaces: Arc<ArcSwap<Interfaces>>,
    rules: Arc<ArcSwap<RuleTable>>,
    out: Arc<ArcSwap<NeighTable>>,
    counters: Arc<NeighCounters>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<()> {
    let sock = sys::packet_socket(sys::ETH_P_ALL_BE, 0)?;
    let fd = sock.as_raw_fd();
    sys::attach_filter(fd, &answers_filter())?;
    sys::ignore_outgoing(fd)?;
    let mut entries: HashMap<IpAddr, Entry> = HashMap::new();
    let mut buf = vec![0u8; 2048];
    let mut off_subnet: HashSet<IpAddr> = HashSet::new();
    let mut generation = u64::MAX;
    while !stop.load(Ordering::Relaxed) {
        let ifs = ifaces.load();
        let table = rules.load();
        let mut changed = false;
        if table.generation != generation {
            generation = table.generation;
            changed = want(&mut entries, &mut off_subnet, &ifs, &table);
        }
        let now = Instant::now();
        for (ip, e) in entries.iter_mut() {
            let due = match (e.mac, e.asked) {
                (_, None) => true,
                (None, Some(t)) => now.duration_since(t) >= RETRY,
                (Some(_), Some(t)) => {
                    now.duration_since(e.seen.unwrap_or(t)) >= REFRESH
                        && now.duration_since(t) >= RETRY
                }
            };
            if e.mac.is_some() && e.seen.is_some_and(|s| now.duration_since(s) >= STALE) {
                e.mac = None;
                changed = true;
            }
            if due {
                if e.asked.is_some() && e.unanswered > 0 {
                    counters.failures.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(me) = ifs.list.get(usize::from(e.iface)) {
                    let frame = match *ip {
                        IpAddr::V4(v4) => me.addr_on_link(v4).map(|src| request(me.mac, src, v4)),
                        IpAddr::V6(v6) => me.addr6_on_link(v6).map(|src| solicit(me.mac, src, v6)),
                    };
                    if let Some(frame) = frame {
                        match sys::send_frame(fd, me.ifindex, &frame) {
                            Ok(()) => {
                                counters.requests.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(err) => {
                                tracing::warn!("ARP request for {ip} on {}: {err}", me.name)
                            }
                        }
                    }
                }
                e.asked = Some(now);
                e.unanswered += 1;
            }
        }
        // Read answers for up to 100 ms.
        let until = Instant::now() + Duration::from_millis(100);
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let ms = i32::try_from(left.as_millis()).unwrap_or(100).max(1);
            let Some((n, ifindex)) = sys::recv_frame(fd, &mut buf, ms)? else {
                break;
            };
            let Some(slot) = ifs.slot(ifindex) else {
                continue;
            };
            let Some((ip, mac)) = parse_answer(&buf[..n]) else {
                continue;
            };
            if let Some(e) = entries.get_mut(&ip) {
                if e.iface == slot {
                    counters.replies.fetch_add(1, Ordering::Relaxed);
                    if e.mac != Some(mac) {
                        changed = true;
                    }
                    e.mac = Some(mac);
                    e.seen = Some(Instant::now());
                    e.unanswered = 0;
                }
            }
        }
        // The schedulers leave out real servers that cannot be reached: a
        // frame for one would be dropped (no_neighbor), and under lc/wlc an
        // unreachable server, having no connections, would be picked for
        // every new one.
        for d in table.services.iter().flat_map(|s| &s.dests) {
            if d.local {
                continue;
            }
            let unreachable = entries
                .get(&d.addr().ip())
                .is_none_or(|e| e.mac.is_none() && e.unanswered >= UNREACHABLE_AFTER);
            // Written only on a change: the shards update counters in the
            // same cache line.
            if d.state.unreachable.load(Ordering::Relaxed) != unreachable {
                d.state.unreachable.store(unreachable, Ordering::Relaxed);
            }
        }
        if changed {
            let mut t = NeighTable::default();
            for (ip, e) in &entries {
                if let Some(mac) = e.mac {
                    t.map.insert(
                        *ip,
                        Neighbor {
                            iface: e.iface,
                            mac,
                        },
                    );
                }
            }
            counters
                .resolved
                .store(t.map.len() as u64, Ordering::Relaxed);
            out.store(Arc::new(t));
        }
    }
    Ok(())
}

/// Brings the wanted set in line with the rule table: its real servers,
/// and removed ones whose connections still carry traffic. Says whether an
/// entry left (the published table must follow). A real server on no
/// subnet of lvsd's is logged once, not at every change.
fn want(
    entries: &mut HashMap<IpAddr, Entry>,
    off_subnet: &mut HashSet<IpAddr>,
    ifs: &Interfaces,
    table: &RuleTable,
) -> bool {
    let mut wanted: HashMap<IpAddr, u16> = HashMap::new();
    let mut unplaced = HashSet::new();
    let addrs = table
        .services
        .iter()
        .flat_map(|s| s.dests.iter().filter(|d| !d.local).map(|d| d.addr().ip()))
        .chain(table.lingering.iter().copied());
    for ip in addrs {
        match ifs.on_link(ip) {
            Some(slot) => {
                wanted.insert(ip, slot);
            }
            None => {
                if !off_subnet.contains(&ip) {
                    tracing::warn!(
                        "real server {ip} is on no subnet of lvsd's interfaces; it cannot be reached"
                    );
                }
                unplaced.insert(ip);
            }
        }
    }
    *off_subnet = unplaced;
    let before = entries.len();
    entries.retain(|ip, _| wanted.contains_key(ip));
    let removed = entries.len() != before;
    for (ip, iface) in wanted {
        entries.entry(ip).or_insert(Entry {
            iface,
            mac: None,
            seen: None,
            asked: None,
            unanswered: 0,
        });
    }
    removed
}

/// A broadcast ARP request from `mac`/`src` for `target`.
fn request(mac: MacAddr, src: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let repr = ArpRepr {
        operation: ArpOperation::Request,
        source_hardware_addr: mac,
        source_protocol_addr: src,
        target_hardware_addr: MacAddr([0; 6]),
        target_protocol_addr: target,
    };
    let mut frame = vec![0u8; HEADER_LEN + repr.buffer_len()];
    let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
    eth.set_dst_addr(MacAddr::BROADCAST);
    eth.set_src_addr(mac);
    eth.set_ethertype(EtherType::Arp);
    let mut arp = ArpPacket::new_unchecked(eth.payload_mut());
    repr.emit(&mut arp);
    frame
}

/// A neighbour solicitation from `mac`/`src` for `target`, to the target's
/// solicited-node multicast address (RFC 4861 section 4.3).
fn solicit(mac: MacAddr, src: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let t = target.octets();
    let group = Ipv6Addr::from([
        0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, t[13], t[14], t[15],
    ]);
    let mut frame = vec![0u8; HEADER_LEN + 40 + 32];
    let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
    eth.set_dst_addr(MacAddr([0x33, 0x33, 0xff, t[13], t[14], t[15]]));
    eth.set_src_addr(mac);
    eth.set_ethertype(EtherType::Ipv6);
    let mut ip = Ipv6Packet::new_unchecked(eth.payload_mut());
    ip.set_version_defaults();
    ip.set_payload_len(32);
    ip.set_next_header(IpProtocol::Icmpv6);
    ip.set_hop_limit(255);
    ip.set_src_addr(src);
    ip.set_dst_addr(group);
    let msg = ip.payload_mut();
    msg[8..24].copy_from_slice(&t);
    msg[24] = v6::OPT_SOURCE_LL;
    msg[25] = 1;
    msg[26..32].copy_from_slice(&mac.0);
    let mut m = IcmpPacket::new_unchecked(msg);
    m.set_msg_type(v6::NEIGHBOR_SOLICIT);
    m.fill_checksum_v6(src, group);
    frame
}

/// The kernel-side filter of the resolver's socket: ARP, and ICMPv6
/// neighbour advertisements without extension headers.
fn answers_filter() -> Vec<libc::sock_filter> {
    let op = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    vec![
        op(0x28, 0, 0, 12),     // ldh [12]           EtherType
        op(0x15, 5, 0, 0x0806), // jeq ARP            -> accept
        op(0x15, 0, 5, 0x86dd), // jeq IPv6           else reject
        op(0x30, 0, 0, 20),     // ldb [20]           next header
        op(0x15, 0, 3, 58),     // jeq ICMPv6         else reject
        op(0x30, 0, 0, 54),     // ldb [54]           ICMPv6 type
        op(0x15, 0, 1, 136),    // jeq advertisement  else reject
        op(0x06, 0, 0, 0xffff), // accept
        op(0x06, 0, 0, 0),      // reject
    ]
}

/// The (IP, MAC) an ARP frame or neighbour advertisement tells about its
/// sender: an ARP reply, any ARP request (a neighbour asking reveals its own
/// address), or an advertisement's target.
fn parse_answer(frame: &[u8]) -> Option<(IpAddr, MacAddr)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let mac = eth.src_addr();
    if mac.is_broadcast() || mac.is_multicast() || mac == MacAddr([0; 6]) {
        return None;
    }
    match eth.ethertype() {
        EtherType::Arp => {
            let arp = ArpPacket::new_checked(eth.payload()).ok()?;
            Some((
                IpAddr::V4(arp.sender_protocol_addr()),
                arp.sender_hardware_addr(),
            ))
        }
        EtherType::Ipv6 => {
            let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
            if ip.next_header() != IpProtocol::Icmpv6 || ip.hop_limit() != 255 {
                return None;
            }
            let m = IcmpPacket::new_checked(ip.payload()).ok()?;
            if m.msg_type() != v6::NEIGHBOR_ADVERT {
                return None;
            }
            let t: [u8; 16] = m.body().get(..16)?.try_into().ok()?;
            Some((IpAddr::V6(Ipv6Addr::from(t)), mac))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Removed real servers whose connections last are resolved like the
    /// others; when they go, the published table must follow (`want` says
    /// so); an off-subnet one is only noted.
    #[test]
    fn lingering_servers_are_wanted() {
        let ifs = Interfaces::int0_for_tests();
        let rs: IpAddr = Ipv4Addr::new(198, 18, 1, 11).into();
        let far: IpAddr = Ipv4Addr::new(198, 19, 9, 9).into();
        let mut table = RuleTable::empty();
        table.lingering = vec![rs, far];
        let (mut entries, mut off) = (HashMap::new(), HashSet::new());
        assert!(!want(&mut entries, &mut off, &ifs, &table));
        assert!(entries.contains_key(&rs));
        assert_eq!(off, HashSet::from([far]));
        table.lingering.clear();
        assert!(want(&mut entries, &mut off, &ifs, &table), "an entry left");
        assert!(entries.is_empty() && off.is_empty());
    }

    #[test]
    fn request_then_answer() {
        let me = MacAddr([2, 0, 0, 0, 0, 1]);
        let f = request(
            me,
            Ipv4Addr::new(198, 18, 1, 1),
            Ipv4Addr::new(198, 18, 1, 11),
        );
        assert_eq!(f.len(), 42);
        assert_eq!(&f[..6], &[0xff; 6]);
        // The request itself announces its sender.
        assert_eq!(
            parse_answer(&f),
            Some((IpAddr::V4(Ipv4Addr::new(198, 18, 1, 1)), me))
        );
        assert_eq!(parse_answer(&f[..30]), None);
    }
}
