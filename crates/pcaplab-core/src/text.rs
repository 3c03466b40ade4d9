//! Addresses as text (MACs, IPv4 and IPv6 addresses), formatted straight into the value buffer
//! of an Arrow text column.
//!
//! An address is built in a register and stored whole: a MAC's 17 bytes as 16 and one, an IPv4
//! address's digits and dots (at most 15) as all 16 bytes, the tail then cut off again. That is
//! a few stores, where appending a formatted `&str` to a `StringBuilder` is a call to `memcpy`
//! per value (measured on small TCP packets, four addresses each: those calls and the
//! formatting into an intermediate `String` were 11% of the conversion's CPU time).

use arrow_array::StringArray;
use arrow_buffer::{Buffer, NullBufferBuilder, OffsetBuffer, ScalarBuffer};
use arrow_schema::ArrowError;

use crate::dissect::Addr;

/// Lowercase hex digits (also JA3's and JA4's, in `app/tls.rs`).
pub(crate) const HEX: &[u8; 16] = b"0123456789abcdef";

/// Each byte's two lowercase hex digits.
const HEX_PAIRS: [[u8; 2]; 256] = {
    let mut t = [[0; 2]; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = [HEX[i >> 4], HEX[i & 0xf]];
        i += 1;
    }
    t
};

/// Each byte in decimal followed by a dot, padded to four bytes, and the length of its digits.
const DECIMAL_DOT: [([u8; 4], usize); 256] = {
    let mut t = [([0; 4], 0); 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = if b >= 100 {
            ([b'0' + b / 100, b'0' + b / 10 % 10, b'0' + b % 10, b'.'], 3)
        } else if b >= 10 {
            ([b'0' + b / 10, b'0' + b % 10, b'.', 0], 2)
        } else {
            ([b'0' + b, b'.', 0, 0], 1)
        };
        i += 1;
    }
    t
};

/// A MAC address as tshark writes it: six lowercase hex pairs joined by colons, as its first
/// 16 bytes and its last.
///
/// Built in a register, not byte by byte in memory: small stores followed by one wide load of
/// the same bytes stall the load (store forwarding fails; measured, most of the formatting's
/// time).
pub(crate) fn mac_text(m: &[u8; 6]) -> ([u8; 16], u8) {
    // Colons at 2, 5, 8, 11 and 14; the sixth pair at 15 and 16.
    let mut head = u128::from_le_bytes(*b"00:00:00:00:00:0");
    for (i, &b) in m[..5].iter().enumerate() {
        let pair = u128::from(u16::from_le_bytes(HEX_PAIRS[usize::from(b)]));
        head = head & !(0xffff << (24 * i)) | pair << (24 * i);
    }
    let [hi, lo] = HEX_PAIRS[usize::from(m[5])];
    head = head & !(0xff << 120) | u128::from(hi) << 120;
    (head.to_le_bytes(), lo)
}

/// An IPv4 address in dotted decimal, as `Ipv4Addr`'s `Display` writes it: the first `n` bytes
/// of the array, where `n` is the second value returned. Each byte is put as four (its digits,
/// a dot, padding) where the next one starts, in a register (see [`mac_text`]).
pub(crate) fn ipv4_text(a: &[u8; 4]) -> ([u8; 16], usize) {
    let mut text = 0u128;
    let mut n = 0;
    for &b in a {
        let (digits, len) = DECIMAL_DOT[usize::from(b)];
        // At most 3 × 4 bytes before the last: within the 16.
        text |= u128::from(u32::from_le_bytes(digits)) << (8 * n);
        n += len + 1;
    }
    // Without the last byte's dot.
    (text.to_le_bytes(), n - 1)
}

/// Room for an IPv6 address's text: eight groups of four hex digits and seven colons.
const IPV6_TEXT: usize = 39;

/// An IPv6 address as `Ipv6Addr`'s `Display` writes it (and tshark): lowercase hex groups
/// without leading zeros, the first longest run of two or more zero groups as `::`, an
/// IPv4-mapped address as `::ffff:` and its IPv4 address in dotted decimal. The first `n`
/// bytes of the array, where `n` is the second value returned. (`Display` goes through the
/// formatting machinery group by group: measured, 2.5% of the DNS input's instructions were
/// its AAAA answers'.)
pub(crate) fn ipv6_text(a: &[u8; 16]) -> ([u8; IPV6_TEXT], usize) {
    let mut out = Text::<IPV6_TEXT>::default();
    let groups: [u16; 8] = std::array::from_fn(|i| u16::from_be_bytes([a[2 * i], a[2 * i + 1]]));
    if groups[..5] == [0; 5] && groups[5] == 0xffff {
        out.put(b"::ffff:");
        let (v4, n) = ipv4_text(&[a[12], a[13], a[14], a[15]]);
        out.put(&v4[..n]);
        return (out.bytes, out.len);
    }
    // The first longest run of zero groups (start, length).
    let (mut zeros, mut run) = ((0, 0), (0, 0));
    for (i, &g) in groups.iter().enumerate() {
        if g == 0 {
            run = if run.1 == 0 {
                (i, 1)
            } else {
                (run.0, run.1 + 1)
            };
            if run.1 > zeros.1 {
                zeros = run;
            }
        } else {
            run = (0, 0);
        }
    }
    let put_groups = |out: &mut Text<IPV6_TEXT>, groups: &[u16]| {
        for (i, &g) in groups.iter().enumerate() {
            if i > 0 {
                out.put(b":");
            }
            let digits = match g {
                0x1000.. => 4,
                0x100.. => 3,
                0x10.. => 2,
                _ => 1,
            };
            for d in (0..digits).rev() {
                out.put(&[HEX[usize::from(g >> (4 * d) & 0xf)]]);
            }
        }
    };
    if zeros.1 > 1 {
        put_groups(&mut out, &groups[..zeros.0]);
        out.put(b"::");
        put_groups(&mut out, &groups[zeros.0 + zeros.1..]);
    } else {
        put_groups(&mut out, &groups);
    }
    (out.bytes, out.len)
}

/// Text of at most `N` bytes, on the stack (an address's here, a DNS name's in `app/dns.rs`).
pub(crate) struct Text<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> Default for Text<N> {
    fn default() -> Self {
        Text {
            bytes: [0; N],
            len: 0,
        }
    }
}

impl<const N: usize> Text<N> {
    /// Append `b`; the callers never pass `N` bytes in all (were one to, the text would be
    /// cut there, not overrun).
    pub(crate) fn put(&mut self, b: &[u8]) {
        if let Some(to) = self.bytes.get_mut(self.len..self.len + b.len()) {
            to.copy_from_slice(b);
            self.len += b.len();
        }
    }

    /// The bytes put so far.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Append ASCII text (an address's, from this module) to a `String`.
pub(crate) fn push_ascii(s: &mut String, text: &[u8]) {
    match std::str::from_utf8(text) {
        Ok(t) => s.push_str(t),
        // Not ASCII after all: each byte as the character of that number, as for ASCII.
        Err(_) => s.extend(text.iter().map(|&b| char::from(b))),
    }
}

/// A text column (Arrow `Utf8`) of addresses, nullable.
pub(crate) struct AddrColumn {
    values: Vec<u8>,
    /// Row `i` is `values[offsets[i]..offsets[i + 1]]`.
    offsets: Vec<i32>,
    nulls: NullBufferBuilder,
}

impl AddrColumn {
    /// Room for `rows` rows of `bytes` bytes of text in all.
    pub(crate) fn with_capacity(rows: usize, bytes: usize) -> Self {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        AddrColumn {
            values: Vec::with_capacity(bytes),
            offsets,
            nulls: NullBufferBuilder::new(rows),
        }
    }

    /// End the (non-null) row whose text is what `values` gained since the last one. Past the
    /// 2 GiB an Arrow `Utf8` column can hold, the offsets stop growing and
    /// [`AddrColumn::finish`] fails. Inlined: a call costs more than its few stores (measured:
    /// the call's own pushes and pops were most of its time).
    #[inline(always)]
    fn end_row(&mut self) {
        self.offsets
            .push(i32::try_from(self.values.len()).unwrap_or(i32::MAX));
        self.nulls.append_non_null();
    }

    #[inline]
    pub(crate) fn mac(&mut self, m: &[u8; 6]) {
        let (head, last) = mac_text(m);
        self.values.extend_from_slice(&head);
        self.values.push(last);
        self.end_row();
    }

    #[inline]
    pub(crate) fn ipv4(&mut self, a: &[u8; 4]) {
        let (t, n) = ipv4_text(a);
        let end = self.values.len() + n;
        self.values.extend_from_slice(&t);
        self.values.truncate(end);
        self.end_row();
    }

    pub(crate) fn addr(&mut self, a: &Addr) {
        match a {
            Addr::V4(v4) => self.ipv4(v4),
            Addr::V6(v6) => {
                let (t, n) = ipv6_text(v6);
                self.values.extend_from_slice(&t[..n]);
                self.end_row();
            }
        }
    }

    pub(crate) fn append_null(&mut self) {
        self.append_nulls(1);
    }

    pub(crate) fn append_nulls(&mut self, n: usize) {
        let last = self.offsets.last().copied().unwrap_or_default();
        self.offsets.extend(std::iter::repeat_n(last, n));
        self.nulls.append_n_nulls(n);
    }

    /// The rows so far as an array; the column is left empty.
    pub(crate) fn finish(&mut self) -> Result<StringArray, ArrowError> {
        let values = std::mem::take(&mut self.values);
        let offsets = std::mem::replace(&mut self.offsets, vec![0]);
        let nulls = self.nulls.finish();
        if i32::try_from(values.len()).is_err() {
            return Err(ArrowError::InvalidArgumentError(format!(
                "{} bytes of addresses in one column: more than the 2 GiB an Arrow text column holds",
                values.len()
            )));
        }
        // The offsets start at 0 and never decrease: `OffsetBuffer::new` accepts them.
        StringArray::try_new(
            OffsetBuffer::new(ScalarBuffer::from(offsets)),
            Buffer::from_vec(values),
            nulls,
        )
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use arrow_array::Array;

    use super::*;

    #[test]
    fn formats_as_the_standard_library_and_tshark_do() {
        for b in 0..=255u8 {
            for a in [
                [b, 0, 9, 10],
                [99, b, 100, 255],
                [1, 2, b, b],
                [255, 254, 199, b],
            ] {
                let (t, n) = ipv4_text(&a);
                assert_eq!(&t[..n], Ipv4Addr::from(a).to_string().as_bytes());
            }
            let m = [b, 0, 0x1b, 0xab, 0xef, b ^ 0xff];
            let want = m
                .iter()
                .map(|x| format!("{x:02x}"))
                .collect::<Vec<_>>()
                .join(":");
            let (head, last) = mac_text(&m);
            assert_eq!([&head[..], &[last]].concat(), want.as_bytes());
        }
    }

    #[test]
    fn ipv6_as_the_standard_library_writes_it() {
        let check = |a: [u8; 16]| {
            let (t, n) = ipv6_text(&a);
            assert_eq!(
                std::str::from_utf8(&t[..n]).expect("ASCII"),
                Ipv6Addr::from(a).to_string(),
                "{a:?}"
            );
        };
        // Every pattern of zero and non-zero groups, with groups of each digit count.
        for zeros in 0..=255u8 {
            for value in [1u16, 0xf, 0x10, 0xab, 0x100, 0xfff, 0x1000, 0xffff] {
                let mut a = [0u8; 16];
                for g in 0..8 {
                    if zeros >> g & 1 == 0 {
                        let v = value.rotate_left(g as u32 * 3) | 1;
                        a[2 * g..2 * g + 2].copy_from_slice(&v.to_be_bytes());
                    }
                }
                check(a);
            }
        }
        // IPv4-mapped and its near misses (IPv4-compatible, other prefixes), and random ones.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut a = [0u8; 16];
            a[8..].copy_from_slice(&x.to_be_bytes());
            a[..8].copy_from_slice(&x.rotate_left(29).to_be_bytes());
            match i % 4 {
                0 => {
                    a[..10].fill(0);
                    a[10..12].copy_from_slice(&[0xff, 0xff]);
                }
                1 => a[..12].fill(0),
                2 => {
                    a[..10].fill(0);
                    a[10..12].copy_from_slice(&[0xff, u8::try_from(i % 255).expect("< 255")]);
                }
                _ => {}
            }
            check(a);
        }
        let mut s = String::from("x ");
        let (t, n) = ipv6_text(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        push_ascii(&mut s, &t[..n]);
        assert_eq!(s, "x fe80::1");
    }

    #[test]
    fn a_column_of_every_kind_with_nulls_between() {
        let v6 = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let mut c = AddrColumn::with_capacity(2, 8);
        c.append_nulls(2);
        c.mac(&[0, 0x1b, 0xab, 0xcd, 0xef, 0xff]);
        c.addr(&Addr::V4([192, 168, 0, 255]));
        c.append_null();
        c.addr(&Addr::V6(v6));
        c.ipv4(&[0, 10, 100, 9]);
        let a = c.finish().expect("a valid column");
        let rows: Vec<Option<&str>> = a.iter().collect();
        assert_eq!(
            rows,
            [
                None,
                None,
                Some("00:1b:ab:cd:ef:ff"),
                Some("192.168.0.255"),
                None,
                Some("2001:db8::1"),
                Some("0.10.100.9"),
            ]
        );
        assert_eq!(a.null_count(), 3);
        // Finishing leaves an empty column, ready for more rows.
        c.ipv4(&[10, 0, 0, 1]);
        let b = c.finish().expect("a valid column");
        assert_eq!(b.len(), 1);
        assert_eq!(b.value(0), "10.0.0.1");
        assert!(b.nulls().is_none());
    }
}
