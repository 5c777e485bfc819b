//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! Terms used below:
//! - a *sum* is a ones'-complement sum of 16-bit big-endian words, kept in a
//!   `u32` so that several sums can be added before they are folded; [`sum`]
//!   and [`pseudo_header_v4`] return sums already folded to at most `0xffff`,
//!   so adding up to 65536 of them cannot overflow;
//! - [`fold`] adds the carries back in and gives the 16-bit sum;
//! - the *full* checksum that IPv4, TCP and UDP put on the wire is the
//!   complement of the folded sum ([`checksum`]);
//! - a *partial* checksum is what a sender that offloads the checksum
//!   (`CHECKSUM_PARTIAL`, virtio's `F_NEEDS_CSUM`) leaves in the field: the
//!   folded pseudo-header sum, not complemented. The device adds the sum of the
//!   segment and complements.
//!
//! The `update*` functions change a checksum for one field that changed from
//! `old` to `new`, without reading the rest of the packet. The field must be
//! 16-bit aligned relative to the start of the checksummed data, as every
//! field we rewrite (ports, addresses) is.

use core::net::{Ipv4Addr, Ipv6Addr};

/// The ones'-complement sum of `data` taken as big-endian 16-bit words, an odd
/// trailing byte padded with a zero byte (RFC 1071 section 4.1). The result is
/// folded to at most `0xffff`, and is 0 only when every byte is 0.
pub fn sum(data: &[u8]) -> u32 {
    // A 32-bit big-endian word hi:lo is hi * 2^16 + lo, and 2^16 = 1 modulo
    // 0xffff, so adding whole 32-bit words and folding at the end gives the
    // same ones'-complement sum as adding 16-bit words. A u64 cannot overflow
    // before 2^32 words (16 GiB), far beyond any packet.
    let mut acc: u64 = 0;
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let tail = words.remainder();
    let mut pairs = tail.chunks_exact(2);
    for p in &mut pairs {
        acc += u64::from(u16::from_be_bytes([p[0], p[1]]));
    }
    if let [last] = pairs.remainder() {
        acc += u64::from(*last) << 8;
    }
    u32::from(fold64(acc))
}

/// Folds a 64-bit accumulator to 16 bits with end-around carry.
fn fold64(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    // Cast is exact: the loop leaves acc <= 0xffff.
    #[allow(clippy::cast_possible_truncation)]
    let folded = acc as u16;
    folded
}

/// Adds the carries of `sum` back into its low 16 bits until none are left.
/// The result is NOT complemented; see [`checksum`] for that.
pub fn fold(sum: u32) -> u16 {
    fold64(u64::from(sum))
}

/// The full Internet checksum of `data`: the complement of its folded sum.
/// Computed over data whose checksum field is zero, it is the value to store;
/// computed over data with the checksum in place, it is 0 when the data is
/// intact.
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data))
}

/// The sum of the IPv4 pseudo-header that TCP and UDP checksums cover (RFC 793
/// section 3.1, RFC 768): source, destination, zero byte and protocol, and the
/// length of the TCP or UDP segment. Folded to at most `0xffff`.
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u32) -> u32 {
    let words = [
        u64::from(u32::from(src)),
        u64::from(u32::from(dst)),
        u64::from(protocol),
        u64::from(length),
    ];
    u32::from(fold64(words.iter().sum()))
}

/// Splits four bytes into their two big-endian 16-bit words.
fn words(b: [u8; 4]) -> [u16; 2] {
    [
        u16::from_be_bytes([b[0], b[1]]),
        u16::from_be_bytes([b[2], b[3]]),
    ]
}

/// A full (complemented) checksum after a 16-bit field changed from `old` to
/// `new`: `HC' = ~(~HC + ~m + m')`, RFC 1624 equation 3. For any data that
/// is not all zero bytes (every real header has a non-zero version, protocol
/// or length) it equals a full recompute; equation 2 can give `0xffff` where
/// the recompute gives `0x0000`.
///
/// For UDP the caller must leave a checksum of 0 (none) alone, and store a
/// result of 0 as `0xffff` (RFC 768).
pub fn update16(check: u16, old: u16, new: u16) -> u16 {
    !fold(u32::from(!check) + u32::from(!old) + u32::from(new))
}

/// [`update16`] for a 32-bit field, such as an IPv4 address, given as the
/// bytes in wire order.
pub fn update32(check: u16, old: [u8; 4], new: [u8; 4]) -> u16 {
    let [o1, o2] = words(old);
    let [n1, n2] = words(new);
    !fold(u32::from(!check) + u32::from(!o1) + u32::from(!o2) + u32::from(n1) + u32::from(n2))
}

/// A partial checksum field (the folded, non-complemented pseudo-header sum
/// left by checksum offload) after a 16-bit pseudo-header field changed from
/// `old` to `new`: the field minus `old` plus `new`, in ones' complement.
pub fn update16_partial(field: u16, old: u16, new: u16) -> u16 {
    fold(u32::from(field) + u32::from(!old) + u32::from(new))
}

/// [`update16_partial`] for a 32-bit field, such as an IPv4 address in the
/// pseudo-header, given as the bytes in wire order.
pub fn update32_partial(field: u16, old: [u8; 4], new: [u8; 4]) -> u16 {
    let [o1, o2] = words(old);
    let [n1, n2] = words(new);
    fold(u32::from(field) + u32::from(!o1) + u32::from(!o2) + u32::from(n1) + u32::from(n2))
}

/// The sum of the IPv6 pseudo-header (RFC 8200 section 8.1): source,
/// destination, upper-layer length and next header. Folded to at most
/// `0xffff`.
pub fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, length: u32) -> u32 {
    let s = sum(&src.octets()) + sum(&dst.octets());
    u32::from(fold64(
        u64::from(s) + u64::from(length) + u64::from(next_header),
    ))
}

/// [`update32`] for a 128-bit field, such as an IPv6 address.
pub fn update128(check: u16, old: [u8; 16], new: [u8; 16]) -> u16 {
    let mut acc = u32::from(!check);
    for i in (0..16).step_by(2) {
        acc += u32::from(!u16::from_be_bytes([old[i], old[i + 1]]));
        acc += u32::from(u16::from_be_bytes([new[i], new[i + 1]]));
    }
    !fold(acc)
}

/// [`update32_partial`] for a 128-bit field.
pub fn update128_partial(field: u16, old: [u8; 16], new: [u8; 16]) -> u16 {
    let mut acc = u32::from(field);
    for i in (0..16).step_by(2) {
        acc += u32::from(!u16::from_be_bytes([old[i], old[i + 1]]));
        acc += u32::from(u16::from_be_bytes([new[i], new[i + 1]]));
    }
    fold(acc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The worked example of RFC 1071 section 3.
    static RFC1071_BYTES: [u8; 8] = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];

    #[test]
    fn rfc1071_example() {
        assert_eq!(fold(sum(&RFC1071_BYTES)), 0xddf2);
        assert_eq!(checksum(&RFC1071_BYTES), 0x220d);
    }

    #[test]
    fn every_length_up_to_nine() {
        // Odd lengths pad with a zero byte; every remainder branch of `sum`.
        let data = [0x12u8, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x11];
        let expect: [u16; 10] = [
            0x0000, 0x1200, 0x1234, 0x6834, 0x68ac, 0x02ad, 0x0369, 0xe169, 0xe259, 0xf359,
        ];
        for (n, want) in expect.iter().enumerate() {
            assert_eq!(fold(sum(&data[..n])), *want, "length {n}");
        }
    }

    #[test]
    fn zero_length() {
        assert_eq!(sum(&[]), 0);
        assert_eq!(fold(0), 0);
        assert_eq!(checksum(&[]), 0xffff);
    }

    #[test]
    fn odd_length() {
        assert_eq!(sum(&[0xab]), 0xab00);
        assert_eq!(checksum(&[0xab]), 0x54ff);
        assert_eq!(sum(&[0x00, 0x01, 0x02]), 0x0201);
    }

    #[test]
    fn fold_carries_twice() {
        // 0xffff + 0xffff = 0x1fffe -> 0xffff; 0xffff_ffff -> 0xffff.
        assert_eq!(fold(0x1fffe), 0xffff);
        assert_eq!(fold(0xffff_ffff), 0xffff);
        assert_eq!(fold(0x0001_0000), 0x0001);
    }

    #[test]
    fn pseudo_header_example() {
        // 10.0.0.1 -> 10.0.0.2, TCP, 20 bytes:
        // 0a00 + 0001 + 0a00 + 0002 + 0006 + 0014 = 0x141d
        let s = pseudo_header_v4(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            6,
            20,
        );
        assert_eq!(s, 0x141d);
        // A length over 16 bits adds both halves.
        let s = pseudo_header_v4(Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED, 0, 0x1_0002);
        assert_eq!(s, 3);
    }

    #[test]
    fn verify_in_place_is_zero() {
        let mut data = [0x45, 0x00, 0x00, 0x1c, 0x12, 0x34, 0x00, 0x00, 0xab];
        let c = checksum(&data);
        // Store it at an aligned offset (here 6..8), then recheck.
        data[6..8].copy_from_slice(&c.to_be_bytes());
        assert_eq!(checksum(&data), 0);
    }

    #[test]
    fn update_rfc1624_example() {
        // RFC 1624 section 3: the other header words sum to 0xcd7a and a field
        // goes 0x5555 -> 0x3285. HC = ~(0xcd7a + 0x5555) = 0xdd2f; a recompute
        // gives ~(0xcd7a + 0x3285) = 0x0000, and so must the update (eqn 2
        // would give 0xffff).
        let check = !fold(0xcd7a + 0x5555);
        assert_eq!(check, 0xdd2f);
        assert_eq!(update16(check, 0x5555, 0x3285), 0x0000);
        // The partial form keeps the sum itself: 0x22d0 -> 0xffff.
        assert_eq!(update16_partial(0x22d0, 0x5555, 0x3285), 0xffff);
    }

    /// A buffer of even length, a checksum slot and a field slot apart from
    /// it (offsets in bytes, both even). The buffer starts with a fixed
    /// non-zero word that is neither slot, so, as in every real header, the
    /// summed data is never all zero (where a recompute gives 0xffff and the
    /// RFC 1624 update gives 0: the one case the two forms differ).
    fn packet(field_words: usize) -> impl Strategy<Value = (Vec<u8>, usize, usize)> {
        (field_words + 1..40usize)
            .prop_flat_map(move |words| {
                (
                    proptest::collection::vec(any::<u8>(), words * 2),
                    0..words,
                    0..words + 1 - field_words,
                )
            })
            .prop_filter("field must not overlap the checksum", move |(_, c, f)| {
                *c < *f || *c >= *f + field_words
            })
            .prop_map(|(body, c, f)| {
                let mut data = vec![0x45, 0x00];
                data.extend_from_slice(&body);
                (data, c * 2 + 2, f * 2 + 2)
            })
    }

    /// Stores the full checksum of `data` (slot zeroed) in the slot at `at`.
    fn fill(data: &mut [u8], at: usize) -> u16 {
        data[at..at + 2].copy_from_slice(&[0, 0]);
        let c = checksum(data);
        data[at..at + 2].copy_from_slice(&c.to_be_bytes());
        c
    }

    proptest! {
        #[test]
        fn update16_matches_recompute((mut data, c, f) in packet(1), new in any::<u16>()) {
            let check = fill(&mut data, c);
            let old = u16::from_be_bytes([data[f], data[f + 1]]);
            data[f..f + 2].copy_from_slice(&new.to_be_bytes());
            let incremental = update16(check, old, new);
            prop_assert_eq!(incremental, fill(&mut data, c));
            prop_assert_eq!(checksum(&data), 0);
        }

        #[test]
        fn update32_matches_recompute((mut data, c, f) in packet(2), new in any::<[u8; 4]>()) {
            let check = fill(&mut data, c);
            let mut old = [0u8; 4];
            old.copy_from_slice(&data[f..f + 4]);
            data[f..f + 4].copy_from_slice(&new);
            let incremental = update32(check, old, new);
            prop_assert_eq!(incremental, fill(&mut data, c));
        }

        #[test]
        fn update32_twice_is_two_update16(check in any::<u16>(), old in any::<[u8; 4]>(), new in any::<[u8; 4]>()) {
            let [o1, o2] = words(old);
            let [n1, n2] = words(new);
            prop_assert_eq!(update32(check, old, new), update16(update16(check, o1, n1), o2, n2));
        }

        #[test]
        fn partial_address_change_matches_recompute(
            src in any::<[u8; 4]>(),
            dst in any::<[u8; 4]>(),
            new in any::<[u8; 4]>(),
            proto in any::<u8>(),
            len in any::<u16>(),
            change_dst in any::<bool>(),
        ) {
            let s = |b: [u8; 4]| Ipv4Addr::from(b);
            let before = fold(pseudo_header_v4(s(src), s(dst), proto, u32::from(len)));
            let (src2, dst2, old) = if change_dst { (src, new, dst) } else { (new, dst, src) };
            let after = fold(pseudo_header_v4(s(src2), s(dst2), proto, u32::from(len)));
            // A real pseudo-header has a non-zero protocol, so its folded sum
            // is never 0. Skip the all-zero input, for which 0 and 0xffff
            // (the same ones'-complement number) are both right.
            prop_assume!(before != 0 && after != 0);
            prop_assert_eq!(update32_partial(before, old, new), after);
        }

        #[test]
        fn partial_length_change_matches_recompute(
            src in any::<[u8; 4]>(),
            dst in any::<[u8; 4]>(),
            proto in 1..=255u8,
            len in any::<u16>(),
            new_len in any::<u16>(),
        ) {
            let s = |b: [u8; 4]| Ipv4Addr::from(b);
            let before = fold(pseudo_header_v4(s(src), s(dst), proto, u32::from(len)));
            let after = fold(pseudo_header_v4(s(src), s(dst), proto, u32::from(new_len)));
            prop_assert_eq!(update16_partial(before, len, new_len), after);
        }

        #[test]
        fn sum_of_halves_is_sum_of_whole(data in proptest::collection::vec(any::<u8>(), 0..200), cut in 0..100usize) {
            // Splitting at an even offset gives the same folded sum.
            let cut = (cut * 2).min(data.len() & !1);
            let (a, b) = data.split_at(cut);
            prop_assert_eq!(fold(sum(a) + sum(b)), fold(sum(&data)));
        }
    }

    proptest! {
        #[test]
        fn update128_matches_recompute(
            data in proptest::collection::vec(any::<u8>(), 40..80),
            new in any::<[u8; 16]>(),
        ) {
            let mut d = data.clone();
            let before = checksum(&d);
            let old: [u8; 16] = d[8..24].try_into().unwrap();
            d[8..24].copy_from_slice(&new);
            prop_assume!(d.iter().any(|&b| b != 0));
            prop_assert_eq!(update128(before, old, new), checksum(&d));
            let partial_before = fold(sum(&data));
            prop_assert_eq!(update128_partial(partial_before, old, new), fold(sum(&d)));
        }
    }
}
