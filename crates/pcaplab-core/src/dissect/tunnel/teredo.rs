//! Teredo (RFC 4380 §5.1.1): an optional authentication indicator, an optional origin
//! indication, then the IPv6 packet.

use super::{Decap, DecapError, Encap, Inner};

/// Decodes a Teredo UDP payload (port 3544).
pub fn parse(p: &[u8]) -> Result<Decap<'_>, DecapError> {
    let mut rest = p;
    if rest.starts_with(&[0x00, 0x01]) {
        // Client-id length, auth-value length, those two fields, 8-byte nonce, confirmation.
        let (Some(&id_len), Some(&au_len)) = (rest.get(2), rest.get(3)) else {
            return Err("teredo: authentication truncated");
        };
        let len = 4 + usize::from(id_len) + usize::from(au_len) + 8 + 1;
        rest = rest.get(len..).ok_or("teredo: authentication truncated")?;
    }
    if rest.starts_with(&[0x00, 0x00]) {
        // Obfuscated port u16 and obfuscated IPv4 address.
        rest = rest.get(8..).ok_or("teredo: origin indication truncated")?;
    }
    match rest.first() {
        Some(b) if b >> 4 == 6 => {}
        Some(_) => return Err("teredo: not IPv6"),
        None => return Err("teredo: IPv6 header truncated"),
    }
    if rest.len() < 40 {
        return Err("teredo: IPv6 header truncated");
    }
    Ok(Decap {
        encap: Encap::Teredo,
        id: None,
        inner: Inner::Ip,
        data: rest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ipv6() -> [u8; 40] {
        let mut h = [0u8; 40];
        h[0] = 0x60;
        h[6] = 59; // no next header: a bubble
        h
    }

    fn ok(data: &[u8]) -> Result<Decap<'_>, DecapError> {
        Ok(Decap {
            encap: Encap::Teredo,
            id: None,
            inner: Inner::Ip,
            data,
        })
    }

    #[test]
    fn bare_ipv6() {
        let h = ipv6();
        assert_eq!(parse(&h), ok(&h));
    }

    #[test]
    fn authentication_then_origin() {
        let h = ipv6();
        let mut p = vec![
            0x00, 0x01, 2, 1, 0xc1, 0xc2, 0xa1, 1, 2, 3, 4, 5, 6, 7, 8, 0,
        ];
        p.extend_from_slice(&[0x00, 0x00, 0xfe, 0xdc, 0x3f, 0xff, 0xff, 0xfe]);
        p.extend_from_slice(&h);
        assert_eq!(parse(&p), ok(&h));
        assert_eq!(parse(&p[16..]), ok(&h));
        assert_eq!(parse(&p[..15]), Err("teredo: authentication truncated"));
        assert_eq!(parse(&p[..3]), Err("teredo: authentication truncated"));
        assert_eq!(
            parse(&p[16..23]),
            Err("teredo: origin indication truncated")
        );
    }

    #[test]
    fn errors() {
        let mut h = ipv6();
        assert_eq!(parse(&h[..39]), Err("teredo: IPv6 header truncated"));
        assert_eq!(
            parse(&[0x00, 0x00, 0, 0, 0, 0, 0, 0]),
            Err("teredo: IPv6 header truncated")
        );
        assert_eq!(parse(&[]), Err("teredo: IPv6 header truncated"));
        h[0] = 0x45;
        assert_eq!(parse(&h), Err("teredo: not IPv6"));
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
