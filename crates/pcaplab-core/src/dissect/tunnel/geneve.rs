//! Geneve (RFC 8926 §3.4): an 8-byte base header (version, option length, O/C flags,
//! protocol type, 24-bit VNI), variable-length options, then the payload.

use super::{Decap, DecapError, Encap, Inner, be16, be32};

/// Transparent Ethernet bridging: the payload is an Ethernet frame.
const ETH_BRIDGING: u16 = 0x6558;

/// Decodes a Geneve header (a UDP payload, port 6081); options are skipped.
pub fn parse(p: &[u8]) -> Result<Decap<'_>, DecapError> {
    let (Some(&b0), Some(proto), Some(word)) = (p.first(), be16(p, 2), be32(p, 4)) else {
        return Err("geneve: header truncated");
    };
    if b0 >> 6 != 0 {
        return Err("geneve: unsupported version");
    }
    let header_len = 8 + usize::from(b0 & 0x3f) * 4;
    let data = p.get(header_len..).ok_or("geneve: options truncated")?;
    let inner = if proto == ETH_BRIDGING {
        Inner::Ethernet
    } else {
        Inner::EtherType(proto)
    };
    Ok(Decap {
        encap: Encap::Geneve,
        id: Some(word >> 8),
        inner,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ethernet_without_options() {
        let p = [0x00, 0x00, 0x65, 0x58, 0x00, 0x00, 0x2a, 0x00, 0xde, 0xad];
        let want = Decap {
            encap: Encap::Geneve,
            id: Some(42),
            inner: Inner::Ethernet,
            data: &[0xde, 0xad],
        };
        assert_eq!(parse(&p), Ok(want));
    }

    #[test]
    fn skips_options_and_keeps_ethertype() {
        // opt_len 2 (8 bytes of options), O and C set, IPv4 payload, VNI 0xabcdef.
        let p = [
            0x02, 0xc0, 0x08, 0x00, 0xab, 0xcd, 0xef, 0x00, 1, 2, 3, 4, 5, 6, 7, 8, 0x45, 0x00,
        ];
        let want = Decap {
            encap: Encap::Geneve,
            id: Some(0xab_cdef),
            inner: Inner::EtherType(0x0800),
            data: &[0x45, 0x00],
        };
        assert_eq!(parse(&p), Ok(want));
    }

    #[test]
    fn rejects_nonzero_version() {
        assert_eq!(
            parse(&[0x40, 0, 0x65, 0x58, 0, 0, 1, 0]),
            Err("geneve: unsupported version")
        );
    }

    #[test]
    fn rejects_truncated() {
        assert_eq!(
            parse(&[0x00, 0, 0x65, 0x58, 0, 0, 1]),
            Err("geneve: header truncated")
        );
        assert_eq!(
            parse(&[0x01, 0, 0x65, 0x58, 0, 0, 1, 0, 1, 2, 3]),
            Err("geneve: options truncated")
        );
    }

    proptest! {
        #[test]
        fn never_panics(p in prop::collection::vec(any::<u8>(), 0..128)) {
            if let Ok(d) = parse(&p) {
                prop_assert!(super::super::within(&p, d.data));
            }
        }
    }
}
