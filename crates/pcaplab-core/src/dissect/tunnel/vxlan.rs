//! VXLAN (RFC 7348 §5): an 8-byte header (flags, reserved, 24-bit VNI, reserved), then the
//! inner Ethernet frame.

use super::{Decap, DecapError, Encap, Inner, be32};

/// The I flag: the VNI is valid.
const FLAG_I: u8 = 0x08;

/// Decodes a VXLAN header (a UDP payload, port 4789).
pub fn parse(p: &[u8]) -> Result<Decap<'_>, DecapError> {
    let (Some(&flags), Some(word), Some(data)) = (p.first(), be32(p, 4), p.get(8..)) else {
        return Err("vxlan: header truncated");
    };
    if flags & FLAG_I == 0 {
        return Err("vxlan: VNI flag not set");
    }
    Ok(Decap {
        encap: Encap::Vxlan,
        id: Some(word >> 8),
        inner: Inner::Ethernet,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_vni_and_payload() {
        let p = [0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0x00, 0xaa, 0xbb];
        let want = Decap {
            encap: Encap::Vxlan,
            id: Some(0x12_3456),
            inner: Inner::Ethernet,
            data: &[0xaa, 0xbb],
        };
        assert_eq!(parse(&p), Ok(want));
    }

    #[test]
    fn header_only_gives_empty_payload() {
        let p = [0x08, 0, 0, 0, 0, 0, 1, 0xff];
        assert_eq!(parse(&p).map(|d| (d.id, d.data.len())), Ok((Some(1), 0)));
    }

    #[test]
    fn rejects_missing_i_flag() {
        assert_eq!(
            parse(&[0x00, 0, 0, 0, 0, 0, 1, 0]),
            Err("vxlan: VNI flag not set")
        );
    }

    #[test]
    fn rejects_truncated() {
        assert_eq!(parse(&[]), Err("vxlan: header truncated"));
        assert_eq!(
            parse(&[0x08, 0, 0, 0, 0, 0, 1]),
            Err("vxlan: header truncated")
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
