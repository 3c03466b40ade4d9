//! TLS ClientHello: the server name (SNI) and JA3.
//!
//! The ClientHello is parsed by `tls-parser` behind a cheap pre-check (handshake record,
//! ClientHello message type), so that payloads of no interest are rejected in a few
//! nanoseconds. A ClientHello cut short (split over TCP segments, snap length) still gives its
//! SNI when the extension is complete, and is reported as [`Parsed::Partial`].
//!
//! Never panics on any input bytes.

use std::fmt::Write as _;

use md5::{Digest, Md5};
use tls_parser::{
    SNIType, TlsClientHelloContents, TlsExtension, TlsExtensionType, TlsMessage,
    TlsMessageHandshake, parse_tls_client_hello_extension, parse_tls_extension_unknown,
    parse_tls_handshake_client_hello, parse_tls_plaintext, parse_tls_record_header,
};

use super::{AppFields, Parsed};

const TLS_HANDSHAKE: u8 = 0x16;
const TLS_CLIENT_HELLO: u8 = 1;

/// GREASE values (RFC 8701): 0x0a0a, 0x1a1a, ... 0xfafa.
fn is_grease(v: u16) -> bool {
    let [hi, lo] = v.to_be_bytes();
    hi == lo && lo & 0x0f == 0x0a
}

pub(super) fn tls_client_hello(payload: &[u8], out: &mut AppFields) -> Parsed {
    // Cheap pre-check: handshake record, version major 3, first handshake
    // message is a ClientHello.
    if payload.len() < 6
        || payload[0] != TLS_HANDSHAKE
        || payload[1] != 3
        || payload[5] != TLS_CLIENT_HELLO
    {
        return Parsed::Nothing;
    }
    match parse_tls_plaintext(payload) {
        Ok((_, record)) => {
            let hello = record.msg.iter().find_map(|m| match m {
                TlsMessage::Handshake(TlsMessageHandshake::ClientHello(ch)) => Some(ch),
                _ => None,
            });
            if let Some(ch) = hello {
                let info = scan_extensions(ch.ext.unwrap_or_default());
                out.tls_ja3 = ja3_string(ch, &info).map(|s| md5_hex(s.as_bytes()));
                out.tls_sni = info.sni;
            }
            Parsed::Complete
        }
        Err(_) => tls_client_hello_partial(payload, out),
    }
}

/// The record is cut short (ClientHello split over TCP segments, snap length)
/// or the handshake message continues in a further record. tls-parser's
/// record/message parsers need the whole message, but its ClientHello body
/// parser accepts a body whose extension block is cut (`ext` = None), and its
/// single-extension parser can walk the extensions that are complete.
fn tls_client_hello_partial(payload: &[u8], out: &mut AppFields) -> Parsed {
    let Ok((rest, hdr)) = parse_tls_record_header(payload) else {
        // Not even the 5-byte record header: more may come.
        return Parsed::Partial;
    };
    let rec = &rest[..rest.len().min(usize::from(hdr.len))];
    // 4-byte handshake header: type (checked above), 24-bit length.
    let Some(&[_, l0, l1, l2]) = rec.get(..4) else {
        return Parsed::Partial;
    };
    let msg_len = usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2);
    let body = &rec[4..];
    let complete = body.len() >= msg_len;
    let body = &body[..body.len().min(msg_len)];
    let Ok((after, ch)) = parse_tls_handshake_client_hello(body) else {
        return if complete {
            Parsed::Nothing
        } else {
            Parsed::Partial
        };
    };
    if complete {
        // Whole ClientHello present (only the record was cut): full result.
        let info = scan_extensions(ch.ext.unwrap_or_default());
        out.tls_ja3 = ja3_string(&ch, &info).map(|s| md5_hex(s.as_bytes()));
        out.tls_sni = info.sni;
        return Parsed::Complete;
    }
    // Extension block cut: skip its 2-byte length and walk what is there.
    let exts = match ch.ext {
        Some(e) => e,
        None => after.get(2..).unwrap_or_default(),
    };
    out.tls_sni = scan_extensions(exts).sni;
    Parsed::Partial
}

/// What JA3 and SNI need from the extension block.
#[derive(Default)]
struct HelloExtensions {
    sni: Option<String>,
    /// Extension types in order of appearance, GREASE included (filtered later).
    types: Vec<u16>,
    curves: Vec<u16>,
    point_formats: Vec<u8>,
    /// The whole block was walked (no malformed or cut extension).
    complete: bool,
}

fn scan_extensions(mut rem: &[u8]) -> HelloExtensions {
    let mut info = HelloExtensions::default();
    while !rem.is_empty() {
        match parse_tls_client_hello_extension(rem) {
            Ok((next, ext)) => {
                let t = match &ext {
                    // tls-parser's GREASE test (t & 0x0f0f == 0x0a0a) is
                    // looser than JA3's; keep the real type and filter later.
                    TlsExtension::Grease(t, _) => *t,
                    other => TlsExtensionType::from(other).0,
                };
                info.types.push(t);
                match ext {
                    TlsExtension::SNI(names) if info.sni.is_none() => {
                        info.sni = names
                            .iter()
                            .find(|(kind, _)| *kind == SNIType::HostName)
                            .map(|(_, name)| String::from_utf8_lossy(name).into_owned());
                    }
                    TlsExtension::EllipticCurves(groups) => {
                        info.curves = groups.iter().map(|g| g.0).collect();
                    }
                    TlsExtension::EcPointFormats(pf) => info.point_formats = pf.to_vec(),
                    _ => {}
                }
                rem = next;
            }
            // Known type with content tls-parser rejects (e.g. a non-empty
            // extended_master_secret): keep its type for JA3, skip its body.
            Err(_) => match parse_tls_extension_unknown(rem) {
                Ok((next, TlsExtension::Unknown(t, _))) => {
                    info.types.push(t.0);
                    rem = next;
                }
                _ => return info,
            },
        }
    }
    info.complete = true;
    info
}

/// JA3 string of a ClientHello: "SSLVersion,Ciphers,Extensions,EllipticCurves,
/// EllipticCurvePointFormats", decimal values joined by '-', GREASE removed
/// from ciphers, extensions and curves. None when the extension block is
/// malformed (the list would be incomplete).
fn ja3_string(ch: &TlsClientHelloContents<'_>, ext: &HelloExtensions) -> Option<String> {
    if !ext.complete {
        return None;
    }
    fn list<I: Iterator<Item = u16>>(s: &mut String, values: I) {
        for (i, v) in values.enumerate() {
            if i > 0 {
                s.push('-');
            }
            let _ = write!(s, "{v}");
        }
    }
    let mut s = String::with_capacity(160);
    let _ = write!(s, "{},", ch.version.0);
    list(
        &mut s,
        ch.ciphers.iter().map(|c| c.0).filter(|&c| !is_grease(c)),
    );
    s.push(',');
    list(&mut s, ext.types.iter().copied().filter(|&t| !is_grease(t)));
    s.push(',');
    list(
        &mut s,
        ext.curves.iter().copied().filter(|&c| !is_grease(c)),
    );
    s.push(',');
    list(&mut s, ext.point_formats.iter().map(|&p| u16::from(p)));
    Some(s)
}

fn md5_hex(data: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Md5::digest(data);
    let mut s = String::with_capacity(32);
    for b in digest.iter() {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    s
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::app::tests::run;
    use crate::app::{IPPROTO_TCP, IPPROTO_UDP};

    // ---- TLS builders ----

    fn ext(t: u16, data: &[u8]) -> Vec<u8> {
        let mut v = t.to_be_bytes().to_vec();
        v.extend_from_slice(&u16::try_from(data.len()).expect("ext len").to_be_bytes());
        v.extend_from_slice(data);
        v
    }

    fn u16s(prefix_len_bytes: usize, values: &[u16]) -> Vec<u8> {
        let body: Vec<u8> = values.iter().flat_map(|v| v.to_be_bytes()).collect();
        let mut v = Vec::new();
        if prefix_len_bytes == 1 {
            v.push(u8::try_from(body.len()).expect("len"));
        } else {
            v.extend_from_slice(&u16::try_from(body.len()).expect("len").to_be_bytes());
        }
        v.extend_from_slice(&body);
        v
    }

    fn client_hello_record(version: u16, ciphers: &[u16], exts: Option<&[u8]>) -> Vec<u8> {
        let mut body = version.to_be_bytes().to_vec();
        body.extend_from_slice(&[0x11; 32]); // random
        body.push(32);
        body.extend_from_slice(&[0x22; 32]); // session id
        body.extend_from_slice(&u16s(2, ciphers));
        body.extend_from_slice(&[1, 0]); // compression: null
        if let Some(e) = exts {
            body.extend_from_slice(&u16::try_from(e.len()).expect("len").to_be_bytes());
            body.extend_from_slice(e);
        }
        let len = u32::try_from(body.len()).expect("len").to_be_bytes();
        let mut hs = vec![TLS_CLIENT_HELLO, len[1], len[2], len[3]];
        hs.extend_from_slice(&body);
        let mut rec = vec![TLS_HANDSHAKE, 3, 1];
        rec.extend_from_slice(&u16::try_from(hs.len()).expect("len").to_be_bytes());
        rec.extend_from_slice(&hs);
        rec
    }

    fn sni_ext(host: &str) -> Vec<u8> {
        let mut entry = vec![0];
        entry.extend_from_slice(&u16::try_from(host.len()).expect("len").to_be_bytes());
        entry.extend_from_slice(host.as_bytes());
        let mut d = u16::try_from(entry.len())
            .expect("len")
            .to_be_bytes()
            .to_vec();
        d.extend_from_slice(&entry);
        ext(0, &d)
    }

    /// A Chrome-like TLS 1.3 ClientHello (legacy version TLS 1.2) with GREASE.
    pub(crate) fn modern_client_hello() -> Vec<u8> {
        let mut e = Vec::new();
        e.extend(ext(0x1a1a, &[]));
        e.extend(sni_ext("www.example.com"));
        e.extend(ext(23, &[]));
        e.extend(ext(0xff01, &[0]));
        e.extend(ext(10, &u16s(2, &[0x2a2a, 29, 23, 24])));
        e.extend(ext(11, &[1, 0]));
        e.extend(ext(35, &[]));
        e.extend(ext(16, b"\x00\x0c\x02h2\x08http/1.1"));
        e.extend(ext(13, &u16s(2, &[0x0403, 0x0804, 0x0401])));
        e.extend(ext(43, &u16s(1, &[0x3a3a, 0x0304, 0x0303])));
        let mut ks = vec![0, 36, 0, 29, 0, 32];
        ks.extend_from_slice(&[0x33; 32]);
        e.extend(ext(51, &ks));
        e.extend(ext(45, &[1, 1]));
        e.extend(ext(0x4a4a, &[0]));
        e.extend(ext(21, &[0; 120]));
        client_hello_record(
            0x0303,
            &[0x0a0a, 0x1301, 0x1302, 0xc02b, 0xc02f, 0x009c],
            Some(&e),
        )
    }

    const MODERN_JA3: &str =
        "771,4865-4866-49195-49199-156,0-23-65281-10-11-35-16-13-43-51-45-21,29-23-24,0";
    // printf '%s' "$MODERN_JA3" | md5sum
    const MODERN_JA3_MD5: &str = "0a3d930f33ffbef4ae12153717793ec4";

    fn hello_of(rec: &[u8]) -> TlsClientHelloContents<'_> {
        let (_, body) = rec.split_at(9);
        let (_, ch) = parse_tls_handshake_client_hello(body).expect("client hello");
        ch
    }

    #[test]
    fn grease_values() {
        let all: Vec<u16> = (0..=u16::MAX).filter(|&v| is_grease(v)).collect();
        assert_eq!(all.len(), 16);
        assert_eq!(all.first(), Some(&0x0a0a));
        assert_eq!(all.last(), Some(&0xfafa));
        assert!(!is_grease(0x0a1a));
    }

    #[test]
    fn ja3_string_modern() {
        let rec = modern_client_hello();
        let ch = hello_of(&rec);
        let info = scan_extensions(ch.ext.expect("extensions"));
        assert_eq!(ja3_string(&ch, &info).as_deref(), Some(MODERN_JA3));
        assert_eq!(md5_hex(MODERN_JA3.as_bytes()), MODERN_JA3_MD5);
    }

    #[test]
    fn tls_client_hello_fields() {
        let rec = modern_client_hello();
        let f = run(IPPROTO_TCP, 51000, 443, &rec);
        assert_eq!(f.tls_sni.as_deref(), Some("www.example.com"));
        assert_eq!(f.tls_ja3.as_deref(), Some(MODERN_JA3_MD5));
        assert!(f.dns_qname.is_none() && f.http_method.is_none());
        // By content: any port.
        assert_eq!(run(IPPROTO_TCP, 51000, 8443, &rec).tls_sni, f.tls_sni);
        // Not over UDP.
        assert!(run(IPPROTO_UDP, 51000, 443, &rec).is_empty());
        // Trailing bytes of a following record in the same segment: fine.
        let mut two = rec.clone();
        two.extend_from_slice(&[0x14, 3, 3, 0, 1, 1]);
        assert_eq!(run(IPPROTO_TCP, 1, 2, &two), f);
    }

    #[test]
    fn tls_old_hello_without_extensions() {
        let rec = client_hello_record(0x0301, &[0x002f, 0x0035, 0x000a], None);
        let ch = hello_of(&rec);
        let info = scan_extensions(ch.ext.unwrap_or_default());
        assert_eq!(ja3_string(&ch, &info).as_deref(), Some("769,47-53-10,,,"));
        let f = run(IPPROTO_TCP, 1, 443, &rec);
        // printf '%s' '769,47-53-10,,,' | md5sum
        assert_eq!(
            f.tls_ja3.as_deref(),
            Some("7bc4acc37e8095387bed8c0b30a6081a")
        );
        assert_eq!(f.tls_sni, None);
    }

    #[test]
    fn tls_malformed_known_extension_still_counted() {
        // extended_master_secret must be empty; tls-parser rejects content,
        // the type still belongs in JA3.
        let mut e = sni_ext("a.example");
        e.extend(ext(23, &[7]));
        e.extend(ext(10, &u16s(2, &[29])));
        let rec = client_hello_record(0x0303, &[0x1301], Some(&e));
        let ch = hello_of(&rec);
        let info = scan_extensions(ch.ext.expect("extensions"));
        assert_eq!(
            ja3_string(&ch, &info).as_deref(),
            Some("771,4865,0-23-10,29,")
        );
        assert_eq!(
            run(IPPROTO_TCP, 1, 443, &rec).tls_sni.as_deref(),
            Some("a.example")
        );
    }

    #[test]
    fn tls_client_hello_cut() {
        let rec = modern_client_hello();
        // Cut in half: SNI (early in the extensions) is there, JA3 is not.
        let half = &rec[..rec.len() / 2];
        let f = run(IPPROTO_TCP, 51000, 443, half);
        assert_eq!(f.tls_sni.as_deref(), Some("www.example.com"));
        assert_eq!(f.tls_ja3, None);
        // Cut before the SNI extension is complete: nothing.
        for cut in 0..120 {
            let f = run(IPPROTO_TCP, 51000, 443, &rec[..cut]);
            assert!(f.is_empty(), "cut {cut}: {f:?}");
        }
        // Every cut: no panic, never a JA3 for an incomplete hello.
        for cut in 0..rec.len() {
            let f = run(IPPROTO_TCP, 51000, 443, &rec[..cut]);
            assert_eq!(f.tls_ja3, None);
        }
    }

    #[test]
    fn tls_handshake_split_over_records() {
        // Record is complete but carries only the first part of the
        // handshake message (the rest would follow in a second record).
        let rec = modern_client_hello();
        let mut first = rec[..150].to_vec();
        first[3..5].copy_from_slice(&145u16.to_be_bytes());
        first.extend_from_slice(&[0x16, 3, 3, 0, 10]); // next record's header
        let f = run(IPPROTO_TCP, 51000, 443, &first);
        assert_eq!(f.tls_sni.as_deref(), Some("www.example.com"));
        assert_eq!(f.tls_ja3, None);

        // Record announces more (a further handshake message) than the
        // segment holds, but the ClientHello itself is complete: full result.
        let mut longer = rec.clone();
        let rec_len = u16::try_from(rec.len() - 5 + 40).expect("len");
        longer[3..5].copy_from_slice(&rec_len.to_be_bytes());
        let f = run(IPPROTO_TCP, 51000, 443, &longer);
        assert_eq!(f.tls_sni.as_deref(), Some("www.example.com"));
        assert_eq!(f.tls_ja3.as_deref(), Some(MODERN_JA3_MD5));
    }
}
