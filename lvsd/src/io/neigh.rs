//! The neighbour resolver: finds the MAC address of every real server by ARP
//! and publishes the table the shards read.
//!
//! It runs on its own thread with its own ARP packet socket. Every real
//! server of the rule table on a subnet of one of lvsd's interfaces is
//! wanted; an unresolved one is asked for once a second, a resolved one is
//! re-asked after [`REFRESH`] and forgotten when [`STALE`] passes without an
//! answer. Unanswered requests are counted.

use super::sys;
use crate::dataplane::{Interfaces, NeighTable, Neighbor};
use crate::rules::RuleTable;
use crate::wire::arp::{ArpOperation, ArpPacket, ArpRepr};
use crate::wire::ethernet::{EtherType, EthernetFrame, MacAddr, HEADER_LEN};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
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
    let sock = sys::packet_socket(sys::ETH_P_ARP_BE, 0)?;
    let fd = sock.as_raw_fd();
    let mut entries: HashMap<Ipv4Addr, Entry> = HashMap::new();
    let mut buf = vec![0u8; 2048];
    let mut generation = u64::MAX;
    while !stop.load(Ordering::Relaxed) {
        let ifs = ifaces.load();
        let table = rules.load();
        if table.generation != generation {
            generation = table.generation;
            want(&mut entries, &ifs, &table);
        }
        let now = Instant::now();
        let mut changed = false;
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
                    if let Some(src_ip) = me.addr_on_link(*ip) {
                        let frame = request(me.mac, src_ip, *ip);
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
        if changed {
            let mut t = NeighTable::default();
            for (ip, e) in &entries {
                if let Some(mac) = e.mac {
                    t.map.insert(
                        IpAddr::V4(*ip),
                        Neighbor {
                            iface: e.iface,
                            mac,
                        },
                    );
                }
            }
            out.store(Arc::new(t));
        }
    }
    Ok(())
}

/// Brings the wanted set in line with the rule table.
fn want(entries: &mut HashMap<Ipv4Addr, Entry>, ifs: &Interfaces, table: &RuleTable) {
    let mut wanted: HashMap<Ipv4Addr, u16> = HashMap::new();
    for s in &table.services {
        for d in &s.dests {
            if let IpAddr::V4(ip) = d.addr().ip() {
                match ifs.on_link(ip) {
                    Some(slot) => {
                        wanted.insert(ip, slot);
                    }
                    None => tracing::warn!(
                        "real server {ip} is on no subnet of lvsd's interfaces; it cannot be reached"
                    ),
                }
            }
        }
    }
    entries.retain(|ip, _| wanted.contains_key(ip));
    for (ip, iface) in wanted {
        entries.entry(ip).or_insert(Entry {
            iface,
            mac: None,
            seen: None,
            asked: None,
            unanswered: 0,
        });
    }
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

/// The (IP, MAC) an ARP frame tells about its sender: a reply, or any
/// request (a neighbour asking reveals its own address).
fn parse_answer(frame: &[u8]) -> Option<(Ipv4Addr, MacAddr)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EtherType::Arp {
        return None;
    }
    let arp = ArpPacket::new_checked(eth.payload()).ok()?;
    let mac = arp.sender_hardware_addr();
    if mac.is_broadcast() || mac.is_multicast() || mac == MacAddr([0; 6]) {
        return None;
    }
    Some((arp.sender_protocol_addr(), mac))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(parse_answer(&f), Some((Ipv4Addr::new(198, 18, 1, 1), me)));
        assert_eq!(parse_answer(&f[..30]), None);
    }
}
