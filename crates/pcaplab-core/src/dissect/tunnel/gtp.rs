//! GTP-U version 1 (3GPP TS 29.281 §5): an 8-byte mandatory header, optional sequence number,
//! N-PDU number and extension headers, then (in a G-PDU) the user's IP packet.

use super::{Decap, DecapError, Encap, Inner, be16, be32};

/// The only message type that carries a user packet.
const G_PDU: u8 = 0xff;

/// Decodes a GTP-U message (a UDP payload, port 2152): `Ok(None)` for a well-formed
/// signalling message (echo, error indication, end marker, ...) that carries no packet.
pub fn parse(p: &[u8]) -> Result<Option<Decap<'_>>, DecapError> {
    let (Some(&b0), Some(&msg_type), Some(len), Some(teid)) =
        (p.first(), p.get(1), be16(p, 2), be32(p, 4))
    else {
        return Err("gtp: header truncated");
    };
    if b0 >> 5 != 1 {
        return Err("gtp: not version 1");
    }
    if b0 & 0x10 == 0 {
        return Err("gtp: GTP' not supported");
    }
    // The length counts the bytes after the mandatory header, optional fields included.
    let body = p
        .get(8..8 + usize::from(len))
        .ok_or("gtp: length exceeds packet")?;
    let mut at = 0;
    if b0 & 0x07 != 0 {
        // Sequence number u16, N-PDU number u8, next extension header type u8.
        let mut next = *body.get(3).ok_or("gtp: optional fields truncated")?;
        at = 4;
        while next != 0 {
            let units = usize::from(*body.get(at).ok_or("gtp: extension header truncated")?);
            if units == 0 {
                return Err("gtp: zero-length extension header");
            }
            at += units * 4;
            next = *body.get(at - 1).ok_or("gtp: extension header truncated")?;
        }
    }
    if msg_type != G_PDU {
        return Ok(None);
    }
    match body.get(at..) {
        Some(data) if !data.is_empty() => Ok(Some(Decap {
            encap: Encap::GtpU,
            id: Some(teid),
            inner: Inner::Ip,
            data,
        })),
        _ => Err("gtp: empty G-PDU"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pdu(teid: u32, data: &[u8]) -> Result<Option<Decap<'_>>, DecapError> {
        Ok(Some(Decap {
            encap: Encap::GtpU,
            id: Some(teid),
            inner: Inner::Ip,
            data,
        }))
    }

    #[test]
    fn plain_g_pdu_bounded_by_length() {
        let p = [0x30, 0xff, 0, 2, 0, 0, 0x01, 0x02, 0x45, 0x00, 0xee];
        assert_eq!(parse(&p), pdu(0x102, &[0x45, 0x00]));
    }

    #[test]
    fn sequence_and_extension_headers() {
        // S and E set; seq 1, N-PDU 0, next type 0x85 (PDU session container, 1 unit), then IP.
        let p = [
            0x36, 0xff, 0, 9, 0, 0, 0, 7, 0, 1, 0, 0x85, 1, 0x10, 0x05, 0x00, 0x45,
        ];
        assert_eq!(parse(&p), pdu(7, &[0x45]));
        let two = [
            0x34, 0xff, 0, 13, 0, 0, 0, 7, 0, 0, 0, 0x85, 1, 0, 0, 0x85, 1, 0, 0, 0, 0x60,
        ];
        assert_eq!(parse(&two), pdu(7, &[0x60]));
        let zero = [
            0x34, 0xff, 0, 9, 0, 0, 0, 7, 0, 0, 0, 0x85, 0, 0, 0, 0, 0x45,
        ];
        assert_eq!(parse(&zero), Err("gtp: zero-length extension header"));
        let long = [
            0x34, 0xff, 0, 9, 0, 0, 0, 7, 0, 0, 0, 0x85, 2, 0, 0, 0, 0x45,
        ];
        assert_eq!(parse(&long), Err("gtp: extension header truncated"));
        let cut = [0x34, 0xff, 0, 4, 0, 0, 0, 7, 0, 0, 0, 0x85];
        assert_eq!(parse(&cut), Err("gtp: extension header truncated"));
        assert_eq!(
            parse(&[0x31, 0xff, 0, 3, 0, 0, 0, 7, 0, 0, 0]),
            Err("gtp: optional fields truncated")
        );
    }

    #[test]
    fn signalling_messages_carry_nothing() {
        assert_eq!(parse(&[0x32, 0x01, 0, 4, 0, 0, 0, 0, 0, 1, 0, 0]), Ok(None));
        assert_eq!(parse(&[0x30, 0xfe, 0, 0, 0, 0, 0, 9]), Ok(None));
    }

    #[test]
    fn errors() {
        assert_eq!(
            parse(&[0x30, 0xff, 0, 0, 0, 0, 0]),
            Err("gtp: header truncated")
        );
        assert_eq!(
            parse(&[0x50, 0xff, 0, 0, 0, 0, 0, 1, 0x45]),
            Err("gtp: not version 1")
        );
        assert_eq!(
            parse(&[0x20, 0xff, 0, 1, 0, 0, 0, 1, 0x45]),
            Err("gtp: GTP' not supported")
        );
        assert_eq!(
            parse(&[0x30, 0xff, 0, 2, 0, 0, 0, 1, 0x45]),
            Err("gtp: length exceeds packet")
        );
        assert_eq!(
            parse(&[0x30, 0xff, 0, 0, 0, 0, 0, 1, 0x45]),
            Err("gtp: empty G-PDU")
        );
        assert_eq!(
            parse(&[0x32, 0xff, 0, 4, 0, 0, 0, 1, 0, 0, 0, 0]),
            Err("gtp: empty G-PDU")
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
