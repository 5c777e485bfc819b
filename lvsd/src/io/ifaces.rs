//! Discovering the interfaces lvsd forwards on, and the host's addresses.

use crate::dataplane::{Iface, Interfaces};
use crate::wire::ethernet::MacAddr;
use std::net::IpAddr;
use std::path::Path;

/// Why an interface cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum IfaceError {
    /// the interface does not exist
    #[error("interface {0} does not exist")]
    Missing(String),
    /// an attribute could not be read
    #[error("interface {name}: cannot read {what}: {err}")]
    Read {
        name: String,
        what: &'static str,
        err: String,
    },
    /// listing addresses failed
    #[error("cannot list the host's addresses: {0}")]
    Addrs(nix::Error),
}

fn read_attr(name: &str, what: &'static str) -> Result<String, IfaceError> {
    let dir = Path::new("/sys/class/net").join(name);
    if !dir.exists() {
        return Err(IfaceError::Missing(name.to_string()));
    }
    std::fs::read_to_string(dir.join(what))
        .map(|s| s.trim().to_string())
        .map_err(|e| IfaceError::Read {
            name: name.to_string(),
            what,
            err: e.to_string(),
        })
}

fn parse_mac(s: &str) -> Option<MacAddr> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(MacAddr(mac))
}

/// Reads the named interfaces and every address on the host.
pub fn discover(names: &[String]) -> Result<Interfaces, IfaceError> {
    let mut out = Interfaces::default();
    let addrs: Vec<_> = nix::ifaddrs::getifaddrs()
        .map_err(IfaceError::Addrs)?
        .collect();
    for a in &addrs {
        if let Some(sin) = a.address.as_ref().and_then(|s| s.as_sockaddr_in()) {
            out.local.insert(IpAddr::V4(sin.ip()));
        }
        if let Some(sin6) = a.address.as_ref().and_then(|s| s.as_sockaddr_in6()) {
            out.local.insert(IpAddr::V6(sin6.ip()));
        }
    }
    for name in names {
        let ifindex: u32 = read_attr(name, "ifindex")?
            .parse()
            .map_err(|_| IfaceError::Read {
                name: name.clone(),
                what: "ifindex",
                err: "not a number".into(),
            })?;
        let mac = parse_mac(&read_attr(name, "address")?).ok_or_else(|| IfaceError::Read {
            name: name.clone(),
            what: "address",
            err: "not an Ethernet address".into(),
        })?;
        let mtu: u32 = read_attr(name, "mtu")?.parse().unwrap_or(1500);
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for a in addrs.iter().filter(|a| &a.interface_name == name) {
            let ip = a
                .address
                .as_ref()
                .and_then(|s| s.as_sockaddr_in())
                .map(|s| s.ip());
            let mask = a
                .netmask
                .as_ref()
                .and_then(|s| s.as_sockaddr_in())
                .map(|s| s.ip());
            if let (Some(ip), Some(mask)) = (ip, mask) {
                let len = u8::try_from(u32::from(mask).count_ones()).unwrap_or(32);
                v4.push((ip, len));
            }
            let ip6 = a
                .address
                .as_ref()
                .and_then(|s| s.as_sockaddr_in6())
                .map(|s| s.ip());
            let mask6 = a
                .netmask
                .as_ref()
                .and_then(|s| s.as_sockaddr_in6())
                .map(|s| s.ip());
            if let (Some(ip), Some(mask)) = (ip6, mask6) {
                let len = u8::try_from(u128::from(mask).count_ones()).unwrap_or(128);
                v6.push((ip, len));
            }
        }
        // Global addresses first: they are the ones to send from.
        v6.sort_by_key(|(ip, _)| (ip.segments()[0] & 0xffc0) == 0xfe80);
        out.list.push(Iface {
            name: name.clone(),
            ifindex,
            mac,
            mtu,
            addrs: v4,
            addrs6: v6,
        });
    }
    Ok(out)
}

/// Re-reads the interfaces `now` describes (their MTU, MAC and addresses
/// may change while lvsd runs); an MTU above `mtu_limit` (the XDP
/// backend's) is warned about. Ok(Some(new)) when something changed on
/// the same interfaces, Ok(None) when nothing did; an error when one is
/// gone or was made anew (its sockets are gone: lvsd needs a restart).
pub fn refresh(now: &Interfaces, mtu_limit: Option<u32>) -> Result<Option<Interfaces>, String> {
    let names: Vec<String> = now.list.iter().map(|i| i.name.clone()).collect();
    let new = discover(&names).map_err(|e| format!("re-reading the interfaces: {e}"))?;
    if *now == new {
        return Ok(None);
    }
    for (old, i) in now.list.iter().zip(&new.list) {
        if old.ifindex != i.ifindex {
            return Err(format!(
                "interface {} was made anew (index {} now {}); restart lvsd",
                i.name, old.ifindex, i.ifindex
            ));
        }
        if old.mtu != i.mtu {
            tracing::info!("interface {}: MTU {} now {}", i.name, old.mtu, i.mtu);
            if let Some(limit) = mtu_limit.filter(|&l| i.mtu > l) {
                tracing::warn!(
                    "interface {}: MTU {} is above the {limit} the XDP backend takes: larger frames are lost; lower it, or restart lvsd with backend = \"packet\"",
                    i.name,
                    i.mtu
                );
            }
        }
        if old.mac != i.mac {
            tracing::warn!(
                "interface {}: MAC address changed; the XDP program steers by the old one until lvsd restarts",
                i.name
            );
        }
        if (&old.addrs, &old.addrs6) != (&i.addrs, &i.addrs6) {
            tracing::info!("interface {}: addresses changed", i.name);
        }
    }
    Ok(Some(new))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs() {
        assert_eq!(
            parse_mac("02:00:5e:10:00:01"),
            Some(MacAddr([2, 0, 0x5e, 0x10, 0, 1]))
        );
        assert_eq!(parse_mac("02:00:5e:10:00"), None);
        assert_eq!(parse_mac("02:00:5e:10:00:01:02"), None);
        assert_eq!(parse_mac("zz:00:5e:10:00:01"), None);
    }

    #[test]
    fn missing_interface() {
        assert!(matches!(
            discover(&["lvsd-no-such-if0".to_string()]),
            Err(IfaceError::Missing(_))
        ));
    }
}
