//! Keeping the director's own kernel out of lvsd's way.
//!
//! A packet socket gets a copy of every frame; the kernel still processes
//! the original. For traffic lvsd forwards, the kernel must do nothing: not
//! forward it (a second copy), not answer it with a reset or an ICMP error.
//! lvsd installs an nftables `netdev` table whose ingress chain, on every
//! interface lvsd forwards on, drops
//! - packets to a virtual service (VIP, protocol, port), and
//! - packets from a NAT real server (RIP, protocol, port) that are not
//!   addressed to the director itself (its health checks are),
//!
//! The packet tap runs before the ingress hook, so lvsd still sees them. The
//! table is named `lvsd` (one lvsd per network namespace), replaced when lvsd
//! starts, kept in step with the rule table, and deleted when lvsd stops.

use crate::dataplane::Interfaces;
use lvsd_proto::Protocol;
use std::collections::BTreeSet;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};

const TABLE: &str = "lvsd";

/// Why nft failed.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// nft could not be run
    #[error("cannot run nft (install nftables): {0}")]
    Spawn(std::io::Error),
    /// nft refused the script
    #[error("nft refused the ruleset: {0}")]
    Nft(String),
}

/// (address, protocol, port) elements of a set.
pub type Elements = BTreeSet<(IpAddr, Protocol, u16)>;

/// What lvsd's traffic is, for the filters that keep it from the kernel
/// (this nftables table, and the XDP program's maps): computed once per
/// rule change, given to both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterSets {
    /// Virtual services.
    pub services: Elements,
    /// NAT real servers, including removed ones that still have connections.
    pub nat_dests: Elements,
    /// The host's own addresses.
    pub local: BTreeSet<IpAddr>,
}

impl FilterSets {
    pub fn new(
        services: impl Iterator<Item = (Protocol, SocketAddr)>,
        nat_dests: impl Iterator<Item = (Protocol, SocketAddr)>,
        local: impl Iterator<Item = IpAddr>,
    ) -> FilterSets {
        FilterSets {
            services: services.map(|(p, a)| (a.ip(), p, a.port())).collect(),
            nat_dests: nat_dests.map(|(p, a)| (a.ip(), p, a.port())).collect(),
            local: local.collect(),
        }
    }
}

/// The installed table and the set contents last written.
pub struct KernelFilter {
    written: FilterSets,
}

fn nft(script: &str) -> Result<(), KernelError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(KernelError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(KernelError::Spawn)?;
    }
    let out = child.wait_with_output().map_err(KernelError::Spawn)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(KernelError::Nft(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

fn proto(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    }
}

fn elements(set: &Elements, v6: bool) -> String {
    set.iter()
        .filter(|(ip, _, _)| ip.is_ipv6() == v6)
        .map(|(ip, p, port)| format!("{ip} . {} . {port}", proto(*p)))
        .collect::<Vec<_>>()
        .join(", ")
}

impl KernelFilter {
    /// Installs the table on `ifaces`, replacing a stale one.
    pub fn install(ifaces: &Interfaces) -> Result<Self, KernelError> {
        let devices = ifaces
            .list
            .iter()
            .map(|i| format!("\"{}\"", i.name))
            .collect::<Vec<_>>()
            .join(", ");
        // Deleting a table that is not there fails; ignore that one.
        let _ = nft(&format!("delete table netdev {TABLE}\n"));
        let script = format!(
            "table netdev {TABLE} {{
  set services {{ type ipv4_addr . inet_proto . inet_service; }}
  set nat_dests {{ type ipv4_addr . inet_proto . inet_service; }}
  set local {{ type ipv4_addr; }}
  set services6 {{ type ipv6_addr . inet_proto . inet_service; }}
  set nat_dests6 {{ type ipv6_addr . inet_proto . inet_service; }}
  set local6 {{ type ipv6_addr; }}
  chain ingress {{
    type filter hook ingress devices = {{ {devices} }} priority -500; policy accept;
    ip daddr . meta l4proto . th dport @services drop
    ip saddr . meta l4proto . th sport @nat_dests ip daddr != @local drop
    ip6 daddr . meta l4proto . th dport @services6 drop
    ip6 saddr . meta l4proto . th sport @nat_dests6 ip6 daddr != @local6 drop
  }}
}}
"
        );
        nft(&script)?;
        Ok(KernelFilter {
            written: FilterSets::default(),
        })
    }

    /// Writes the sets. Does nothing when nothing changed.
    pub fn sync(&mut self, sets: &FilterSets) -> Result<(), KernelError> {
        if *sets == self.written {
            return Ok(());
        }
        let (s, d, l) = (&sets.services, &sets.nat_dests, &sets.local);
        let mut script = String::new();
        for (suffix, v6) in [("", false), ("6", true)] {
            for set in ["services", "nat_dests", "local"] {
                script += &format!("flush set netdev {TABLE} {set}{suffix}\n");
            }
            for (set, elems) in [
                ("services", elements(s, v6)),
                ("nat_dests", elements(d, v6)),
            ] {
                if !elems.is_empty() {
                    script += &format!("add element netdev {TABLE} {set}{suffix} {{ {elems} }}\n");
                }
            }
            let addrs: Vec<String> = l
                .iter()
                .filter(|a| a.is_ipv6() == v6)
                .map(ToString::to_string)
                .collect();
            if !addrs.is_empty() {
                script += &format!(
                    "add element netdev {TABLE} local{suffix} {{ {} }}\n",
                    addrs.join(", ")
                );
            }
        }
        nft(&script)?;
        self.written = sets.clone();
        Ok(())
    }

    /// Deletes the table.
    pub fn remove(&self) {
        if let Err(e) = nft(&format!("delete table netdev {TABLE}\n")) {
            tracing::warn!("removing the nftables table: {e}");
        }
    }
}
