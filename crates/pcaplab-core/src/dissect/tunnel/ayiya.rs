//! AYIYA, Anything In Anything (draft-massar-v6ops-ayiya): an 8-byte header, the identity
//! (2^IDlen bytes), the signature (siglen × 4 bytes), then the payload.

use super::{Decap, DecapError, Encap, Inner};

const OP_FORWARD: u8 = 1;
const NEXT_IPV4: u8 = 4;
const NEXT_IPV6: u8 = 41;

/// Decodes an AYIYA message (a UDP payload, port 5072): `Ok(None)` for a well-formed message
/// that forwards nothing (heartbeat, echo, motd, ...).
pub fn parse(p: &[u8]) -> Result<Option<Decap<'_>>, DecapError> {
    let (Some(&ids), Some(&sig), Some(&op), Some(&next)) =
        (p.first(), p.get(1), p.get(2), p.get(3))
    else {
        return Err("ayiya: header truncated");
    };
    // A nibble shifts at most 15 places: the identity is at most 32 KiB.
    let id_len = 1usize << (ids >> 4);
    let sig_len = usize::from(sig >> 4) * 4;
    let data = p
        .get(8 + id_len + sig_len..)
        .ok_or("ayiya: header truncated")?;
    match (op & 0x0f, next) {
        (OP_FORWARD, NEXT_IPV4 | NEXT_IPV6) => Ok(Some(Decap {
            encap: Encap::Ayiya,
            id: None,
            inner: Inner::Ip,
            data,
        })),
        (OP_FORWARD, _) => Err("ayiya: forwarded payload not IP"),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn forward_ipv6() {
        // IDlen 4 (16 bytes), siglen 5 (20 bytes), SHA-1, auth 2, opcode 1, next 41.
        let mut p = vec![0x41, 0x52, 0x21, 41, 0, 0, 0, 1];
        p.extend_from_slice(&[0xaa; 36]);
        p.extend_from_slice(&[0x60, 0, 0, 0]);
        let want = Decap {
            encap: Encap::Ayiya,
            id: None,
            inner: Inner::Ip,
            data: &[0x60, 0, 0, 0],
        };
        assert_eq!(parse(&p), Ok(Some(want)));
        assert_eq!(parse(&p[..43]), Err("ayiya: header truncated"));
    }

    #[test]
    fn forward_ipv4_without_signature() {
        // IDlen 1 (2 bytes), no signature.
        let p = [0x11, 0x00, 0x01, 4, 0, 0, 0, 0, 1, 2, 0x45];
        let want = Decap {
            encap: Encap::Ayiya,
            id: None,
            inner: Inner::Ip,
            data: &[0x45],
        };
        assert_eq!(parse(&p), Ok(Some(want)));
    }

    #[test]
    fn other_opcodes_and_errors() {
        assert_eq!(parse(&[0x00, 0x00, 0x00, 59, 0, 0, 0, 0, 9]), Ok(None));
        assert_eq!(
            parse(&[0x00, 0x00, 0x01, 17, 0, 0, 0, 0, 9]),
            Err("ayiya: forwarded payload not IP")
        );
        assert_eq!(parse(&[0x00, 0x00, 0x01]), Err("ayiya: header truncated"));
        assert_eq!(
            parse(&[0x00, 0x00, 0x01, 41, 0, 0, 0, 0]),
            Err("ayiya: header truncated")
        );
        assert_eq!(
            parse(&[0xf0, 0xf0, 0x01, 41, 0, 0, 0, 0, 1, 2, 3]),
            Err("ayiya: header truncated")
        );
    }

    proptest! {
        #[test]
        fn never_panics(p in prop::collection::vec(any::<u8>(), 0..128)) {
            if let Ok(Some(d)) = parse(&p) {
                prop_assert!(super::super::within(&p, d.data));
            }
        }
    }
}
