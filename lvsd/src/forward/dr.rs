//! Direct routing (gatewaying): the packet goes unchanged to the real
//! server's MAC address; only the TTL or hop limit drops by one, as through
//! any router (RFC 1812 section 5.3.1, RFC 8200 section 3). The real server
//! holds the VIP on a non-ARPing interface and answers the client itself.

use crate::wire::checksum::update16;
use crate::wire::ipv4::Ipv4Packet;

/// Decrements the IPv4 TTL (and updates the header checksum) or the IPv6
/// hop limit of a validated packet. The caller has checked it is above 1.
pub fn decrement_ttl(l3: &mut [u8]) {
    match l3.first().map(|b| b >> 4) {
        Some(4) => {
            let mut ip = Ipv4Packet::new_unchecked(&mut *l3);
            let ttl = ip.ttl();
            let proto: u8 = ip.next_header().into();
            let new = ttl.saturating_sub(1);
            let c = update16(
                ip.checksum(),
                u16::from_be_bytes([ttl, proto]),
                u16::from_be_bytes([new, proto]),
            );
            ip.set_ttl(new);
            ip.set_checksum(c);
        }
        Some(6) if l3.len() > 7 => l3[7] = l3[7].saturating_sub(1),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_and_checksum() {
        let mut p = [
            0x45, 0, 0, 20, 0, 1, 0x40, 0, 64, 6, 0, 0, 198, 18, 0, 2, 198, 19, 0, 100,
        ];
        Ipv4Packet::new_unchecked(&mut p[..]).fill_checksum();
        decrement_ttl(&mut p);
        let ip = Ipv4Packet::new_checked(&p[..]).unwrap();
        assert_eq!(ip.ttl(), 63);
        assert!(ip.verify_checksum());
        let mut v6 = [0x60u8; 40];
        v6[7] = 9;
        decrement_ttl(&mut v6);
        assert_eq!(v6[7], 8);
    }
}
