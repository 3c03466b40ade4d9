//! GRE (RFC 2784, RFC 2890 key and sequence, RFC 1701 routing), PPTP's enhanced GRE
//! (RFC 2637 §4.1, version 1) and ERSPAN types I–III (draft-foschiano-erspan).

use super::{Decap, DecapError, Encap, Inner, be16, be32};

const C: u16 = 0x8000;
const R: u16 = 0x4000;
const K: u16 = 0x2000;
const S: u16 = 0x1000;
const A: u16 = 0x0080;
const TRUNCATED: DecapError = "gre: header truncated";

fn decap(encap: Encap, id: Option<u32>, inner: Inner, data: &[u8]) -> Decap<'_> {
    Decap {
        encap,
        id,
        inner,
        data,
    }
}

/// Decodes a GRE header; `over_udp` says it came in UDP (RFC 8086) rather than IP.
pub fn parse(p: &[u8], over_udp: bool) -> Result<Decap<'_>, DecapError> {
    let (Some(flags), Some(proto)) = (be16(p, 0), be16(p, 2)) else {
        return Err(TRUNCATED);
    };
    match flags & 0x7 {
        0 => version0(p, flags, proto, over_udp),
        1 => pptp(p, flags, proto),
        _ => Err("gre: unsupported version"),
    }
}

/// Four bytes if `bit` is set in `flags`: the optional words of a GRE header.
fn word(flags: u16, bit: u16) -> usize {
    if flags & bit != 0 { 4 } else { 0 }
}

fn version0(p: &[u8], flags: u16, proto: u16, over_udp: bool) -> Result<Decap<'_>, DecapError> {
    // Checksum and offset (C or R), key (K), sequence number (S). A key cut short leaves `at`
    // past the end, and the slicing below reports it.
    let key_at = 4 + word(flags, C | R);
    let id = be32(p, key_at).filter(|_| flags & K != 0);
    let mut at = key_at + word(flags, K) + word(flags, S);
    if flags & R != 0 {
        // Source Route Entries: AF u16, offset u8, length u8, `length` bytes; the last has AF
        // 0 and length 0. Each step moves on 4 bytes or more, so the walk ends.
        loop {
            let (Some(af), Some(&len)) = (be16(p, at), p.get(at + 3)) else {
                return Err("gre: routing truncated");
            };
            at += 4 + usize::from(len);
            if af == 0 && len == 0 {
                break;
            }
        }
    }
    let data = p.get(at..).ok_or(TRUNCATED)?;
    let sequenced = flags & S != 0;
    let inner = match proto {
        0x6558 => Inner::Ethernet,
        // PPP over plain GRE (version 0), as PPTP carries it over enhanced GRE.
        0x880b => Inner::Ppp,
        // Cisco MetaData (a security group tag); in GRE its EtherType comes first.
        0x8909 => {
            let next = be16(data, 0).ok_or(TRUNCATED)?;
            let data = data.get(8..).ok_or(TRUNCATED)?;
            let encap = if over_udp { Encap::GreUdp } else { Encap::Gre };
            return Ok(decap(encap, id, Inner::EtherType(next), data));
        }
        0x88be | 0x22eb => Inner::Erspan { proto, sequenced },
        _ => Inner::EtherType(proto),
    };
    let encap = if over_udp { Encap::GreUdp } else { Encap::Gre };
    Ok(decap(encap, id, inner, data))
}

fn pptp(p: &[u8], flags: u16, proto: u16) -> Result<Decap<'_>, DecapError> {
    if flags & (C | R) != 0 || flags & K == 0 {
        return Err("pptp: bad gre flags");
    }
    if proto != 0x880b {
        return Err("pptp: protocol not ppp");
    }
    // The key field: payload length u16 (bytes 4..6), call id u16.
    let call = be16(p, 6).ok_or("pptp: header truncated")?;
    let at = 8 + word(flags, S) + word(flags, A);
    let data = p.get(at..).ok_or("pptp: header truncated")?;
    Ok(decap(Encap::Pptp, Some(u32::from(call)), Inner::Ppp, data))
}

/// Decodes what GRE's [`Inner::Erspan`] carries: the ERSPAN header, then a mirrored frame.
pub fn erspan(proto: u16, sequenced: bool, data: &[u8]) -> Result<Decap<'_>, DecapError> {
    let (encap, version, header_len) = match (proto, sequenced) {
        (0x88be, false) => return Ok(decap(Encap::Erspan1, None, Inner::Ethernet, data)),
        (0x88be, true) => (Encap::Erspan2, 1, 8),
        (0x22eb, _) => (Encap::Erspan3, 2, 12),
        _ => return Err("erspan: unknown protocol"),
    };
    let (Some(&b0), Some(session)) = (data.first(), be16(data, 2)) else {
        return Err("erspan: header truncated");
    };
    if b0 >> 4 != version {
        return Err("erspan: unexpected version");
    }
    // Type III: the O bit (low bit of byte 11) adds an 8-byte platform-specific subheader.
    let o_bit = encap == Encap::Erspan3 && data.get(11).is_some_and(|b| b & 1 != 0);
    let start = header_len + if o_bit { 8 } else { 0 };
    let rest = data.get(start..).ok_or("erspan: header truncated")?;
    let id = Some(u32::from(session & 0x3ff));
    Ok(decap(encap, id, Inner::Ethernet, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use {Encap as E, Inner as I};

    // C, K 7, S 9, then the payload.
    const CKS: [u8; 17] = [
        0xb0, 0, 0x65, 0x58, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 9, 0x45,
    ];
    // R: checksum/offset, one SRE (AF 0x0800, length 1), the terminator, the payload.
    const SRE: [u8; 18] = [0x40, 0, 8, 0, 0, 0, 0, 0, 8, 0, 0, 1, 9, 0, 0, 0, 0, 0x45];
    // PPTP: K, S, A, version 1; payload length 1, call id 0x1234, seq 5, ack 4.
    const PP: [u8; 17] = [
        0x30, 0x81, 0x88, 0x0b, 0, 1, 0x12, 0x34, 0, 0, 0, 5, 0, 0, 0, 4, 0x45,
    ];
    const GRE2: [u8; 9] = [0x10, 0, 0x88, 0xbe, 0, 0, 0, 1, 0x45];
    const T2: [u8; 9] = [0x10, 0, 0xfc, 0x05, 0, 0, 0, 0, 0x45];
    const T3: [u8; 13] = [0x20, 0, 0x03, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0x45];
    const T3O: [u8; 21] = [
        0x20, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0x45,
    ];

    #[test]
    fn decodes() {
        let [s2, s3] = [(0x88be, true), (0x22eb, false)]
            .map(|(proto, sequenced)| I::Erspan { proto, sequenced });
        let gre = [
            (&CKS[..], false, E::Gre, Some(7), I::Ethernet),
            (&SRE, false, E::Gre, None, I::EtherType(0x0800)),
            (&GRE2, true, E::GreUdp, None, s2),
            (&[0, 0, 0x22, 0xeb, 0x45], false, E::Gre, None, s3),
            (&PP, false, E::Pptp, Some(0x1234), I::Ppp),
        ];
        for (p, udp, e, id, i) in gre {
            assert_eq!(parse(p, udp), Ok(decap(e, id, i, &[0x45])), "{p:02x?}");
        }
        let ack_only = Ok(decap(E::Pptp, Some(3), I::Ppp, &[]));
        assert_eq!(parse(&[0x20, 1, 0x88, 0x0b, 0, 0, 0, 3], false), ack_only);
        let erspans = [
            (0x88be, false, &[0x45][..], E::Erspan1, None),
            (0x88be, true, &T2, E::Erspan2, Some(5)),
            (0x22eb, false, &T3, E::Erspan3, Some(0x3ff)),
            (0x22eb, true, &T3O, E::Erspan3, Some(9)),
        ];
        for (proto, seq, p, e, id) in erspans {
            let want = Ok(decap(e, id, I::Ethernet, &[0x45]));
            assert_eq!(erspan(proto, seq, p), want);
        }
    }

    #[test]
    fn errors() {
        let cases = [
            (parse(&[0, 0, 8], false), TRUNCATED),
            (parse(&CKS[..11], false), TRUNCATED),
            (parse(&CKS[..15], false), TRUNCATED),
            (parse(&SRE[..11], false), "gre: routing truncated"),
            (parse(&SRE[..16], false), "gre: routing truncated"),
            (parse(&[0, 2, 8, 0], false), "gre: unsupported version"),
            (parse(&PP[..7], false), "pptp: header truncated"),
            (parse(&PP[..15], false), "pptp: header truncated"),
            (parse(&[0, 1, 0x88, 0x0b], false), "pptp: bad gre flags"),
            (parse(&[0xa0, 1, 0x88, 0x0b], false), "pptp: bad gre flags"),
            (parse(&[0x20, 1, 8, 0], false), "pptp: protocol not ppp"),
            (erspan(0x88be, true, &T2[..7]), "erspan: header truncated"),
            (erspan(0x88be, true, &T3), "erspan: unexpected version"),
            (erspan(0x22eb, true, &[0x20]), "erspan: header truncated"),
            (erspan(0x22eb, true, &T3[..11]), "erspan: header truncated"),
            (erspan(0x22eb, true, &T3O[..19]), "erspan: header truncated"),
            (erspan(0x22eb, true, &T2), "erspan: unexpected version"),
            (erspan(0x0800, true, &T2), "erspan: unknown protocol"),
        ];
        for (i, (got, want)) in cases.into_iter().enumerate() {
            assert_eq!(got, Err(want), "case {i}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(p in prop::collection::vec(any::<u8>(), 0..128), udp: bool, seq: bool) {
            let within = |d: &[u8]| super::super::within(&p, d);
            if let Ok(d) = parse(&p, udp) {
                prop_assert!(within(d.data));
            }
            for proto in [0x88be, 0x22eb] {
                if let Ok(d) = erspan(proto, seq, &p) {
                    prop_assert!(within(d.data));
                }
            }
        }
    }
}
