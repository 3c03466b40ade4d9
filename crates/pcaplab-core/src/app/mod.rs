//! Application-layer fields of a single packet: DNS question/answers, TLS
//! ClientHello SNI + JA3, HTTP/1.x request line + Host.
//!
//! One packet in, fields out: there is no reassembly across packets. The
//! payload is the transport payload (bytes after the TCP/UDP header) and may be
//! cut short by the capture's snap length. DNS messages are walked in place
//! ([`dns`]); ClientHellos and requests are parsed by `tls-parser` and
//! `httparse`, behind cheap pre-checks so that payloads of no interest are
//! rejected in a few nanoseconds.
//!
//! Never panics on any input bytes.

use std::fmt::Write as _;

pub use crate::flows::{IPPROTO_TCP, IPPROTO_UDP};
use dns::{dns_message, dns_over_tcp};
use md5::{Digest, Md5};
use tls_parser::{
    SNIType, TlsClientHelloContents, TlsExtension, TlsExtensionType, TlsMessage,
    TlsMessageHandshake, parse_tls_client_hello_extension, parse_tls_extension_unknown,
    parse_tls_handshake_client_hello, parse_tls_plaintext, parse_tls_record_header,
};

mod dns;
pub mod quic;

/// Application fields of one packet; all None/empty when the packet carries none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppFields {
    /// First question's name, no trailing dot; the root name is `<Root>` (as tshark prints it).
    pub dns_qname: Option<String>,
    /// First question's numeric QTYPE.
    pub dns_qtype: Option<u16>,
    /// Responses only (QR=1): the 4-bit RCODE of the header; None on queries.
    pub dns_rcode: Option<u8>,
    /// Answer section of responses, one text per record: A/AAAA -> address,
    /// CNAME/NS/PTR -> name, MX -> "<pref> <name>", TXT -> strings joined
    /// (lossy UTF-8), anything else -> "TYPE<n>".
    pub dns_answers: Vec<String>,
    /// TLS ClientHello server_name (host_name entry).
    pub tls_sni: Option<String>,
    /// JA3 of the ClientHello: lowercase hex md5 of the JA3 string.
    pub tls_ja3: Option<String>,
    /// Set when the TLS fields above come from a ClientHello carried in QUIC Initial packets:
    /// the QUIC version of the packets (see [`quic`]). TLS over TCP leaves it None.
    pub quic_version: Option<u32>,
    /// HTTP request method.
    pub http_method: Option<String>,
    /// HTTP Host header value, trimmed.
    pub http_host: Option<String>,
    /// HTTP request-target as sent.
    pub http_uri: Option<String>,
}

impl AppFields {
    /// Reset to empty, keeping the answers vector's allocation.
    pub fn clear(&mut self) {
        self.dns_qname = None;
        self.dns_qtype = None;
        self.dns_rcode = None;
        self.dns_answers.clear();
        self.tls_sni = None;
        self.tls_ja3 = None;
        self.quic_version = None;
        self.http_method = None;
        self.http_host = None;
        self.http_uri = None;
    }

    /// True when no field is set.
    pub fn is_empty(&self) -> bool {
        self.dns_qname.is_none()
            && self.dns_qtype.is_none()
            && self.dns_rcode.is_none()
            && self.dns_answers.is_empty()
            && self.tls_sni.is_none()
            && self.tls_ja3.is_none()
            && self.quic_version.is_none()
            && self.http_method.is_none()
            && self.http_host.is_none()
            && self.http_uri.is_none()
    }
}

const DNS_PORT: u16 = 53;
const MDNS_PORT: u16 = 5353;
const LLMNR_PORT: u16 = 5355;
/// SSDP: HTTP requests over UDP (UPnP discovery).
const SSDP_PORT: u16 = 1900;

/// Decode `payload` of a packet with the given IP protocol and ports into `out` (cleared first).
/// Returns true when any field was set.
///
/// At most one of DNS, TLS and HTTP is decoded:
/// - UDP with either port 53, 5353 (mDNS) or 5355 (LLMNR): DNS message.
/// - TCP with either port 53: 2-byte length prefix + DNS message (only when the
///   whole message is in this payload).
/// - other TCP (or TCP port 53 that did not yield DNS): TLS ClientHello or
///   HTTP/1.x request, by content.
pub fn app_fields(
    ip_proto: u8,
    src_port: u16,
    dst_port: u16,
    payload: &[u8],
    out: &mut AppFields,
) -> bool {
    parse_app(ip_proto, src_port, dst_port, payload, out);
    !out.is_empty()
}

/// What [`parse_app`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// No application message starts here.
    Nothing,
    /// A whole message (or all the fields it can give).
    Complete,
    /// A message that continues past this payload — a ClientHello, HTTP request head or DNS
    /// over TCP message split over TCP segments: `out` holds what the part gave; the
    /// payload with the next segments appended may give more.
    Partial,
}

/// [`app_fields`], also telling whether the message continues past `payload`.
pub fn parse_app(
    ip_proto: u8,
    src_port: u16,
    dst_port: u16,
    payload: &[u8],
    out: &mut AppFields,
) -> Parsed {
    out.clear();
    let is_port = |p: u16| src_port == p || dst_port == p;
    let parsed = match ip_proto {
        IPPROTO_UDP if is_port(DNS_PORT) || is_port(MDNS_PORT) || is_port(LLMNR_PORT) => {
            dns_message(payload, out);
            Parsed::Complete
        }
        IPPROTO_UDP if is_port(SSDP_PORT) => http_request(payload, out),
        IPPROTO_TCP => {
            let mut parsed = Parsed::Nothing;
            if is_port(DNS_PORT) {
                parsed = dns_over_tcp(payload, out);
            }
            if out.is_empty() && parsed != Parsed::Partial {
                parsed = match payload.first() {
                    Some(0x16) => tls_client_hello(payload, out),
                    // TLS 1.3 middlebox compatibility (RFC 8446 §D.4): the second ClientHello,
                    // after a HelloRetryRequest, may follow a ChangeCipherSpec record.
                    Some(0x14) => match payload {
                        [0x14, 3, _, 0, 1, 1, hello @ ..] => tls_client_hello(hello, out),
                        _ => Parsed::Nothing,
                    },
                    Some(b'A'..=b'Z') => http_request(payload, out),
                    _ => Parsed::Nothing,
                };
            }
            parsed
        }
        _ => Parsed::Nothing,
    };
    match parsed {
        Parsed::Complete if out.is_empty() => Parsed::Nothing,
        p => p,
    }
}

// ---------------------------------------------------------------------------
// TLS ClientHello: SNI + JA3
// ---------------------------------------------------------------------------

const TLS_HANDSHAKE: u8 = 0x16;
const TLS_CLIENT_HELLO: u8 = 1;

/// GREASE values (RFC 8701): 0x0a0a, 0x1a1a, ... 0xfafa.
fn is_grease(v: u16) -> bool {
    let [hi, lo] = v.to_be_bytes();
    hi == lo && lo & 0x0f == 0x0a
}

fn tls_client_hello(payload: &[u8], out: &mut AppFields) -> Parsed {
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

// ---------------------------------------------------------------------------
// HTTP/1.x request
// ---------------------------------------------------------------------------

/// Methods that mark a payload as an HTTP/1.x request: RFC 9110's, WebDAV's, and UPnP's (GENA
/// eventing over TCP, SSDP discovery over UDP), which tshark also shows as HTTP.
const HTTP_METHODS: [&[u8]; 20] = [
    b"GET ",
    b"POST ",
    b"HEAD ",
    b"PUT ",
    b"DELETE ",
    b"OPTIONS ",
    b"CONNECT ",
    b"PATCH ",
    b"TRACE ",
    b"PROPFIND ",
    b"PROPPATCH ",
    b"MKCOL ",
    b"COPY ",
    b"MOVE ",
    b"LOCK ",
    b"UNLOCK ",
    b"SUBSCRIBE ",
    b"UNSUBSCRIBE ",
    b"NOTIFY ",
    b"M-SEARCH ",
];
const HTTP_MAX_HEADERS: usize = 64;

fn http_request(payload: &[u8], out: &mut AppFields) -> Parsed {
    if !HTTP_METHODS.iter().any(|m| payload.starts_with(m)) {
        return Parsed::Nothing;
    }
    let mut headers = [httparse::EMPTY_HEADER; HTTP_MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    // Complete, Partial (headers cut) and header errors are all fine as long
    // as the request line was parsed: on Partial/Err httparse leaves
    // `req.headers` as the whole array, whose first entries hold the headers
    // that were complete and the rest EMPTY_HEADER (empty name).
    let parsed = match req.parse(payload) {
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Ok(httparse::Status::Complete(head)) => {
            // A body announced by Content-Length that continues past this payload: the
            // request ends (and tshark shows it) where the body does.
            let body = req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| {
                    std::str::from_utf8(h.value)
                        .ok()?
                        .trim()
                        .parse::<usize>()
                        .ok()
                });
            match body {
                Some(len) if head.saturating_add(len) > payload.len() => Parsed::Partial,
                _ => Parsed::Complete,
            }
        }
        Err(_) => Parsed::Nothing,
    };
    let (Some(method), Some(path), Some(_)) = (req.method, req.path, req.version) else {
        // A request line that continues in the next segment.
        return parsed;
    };
    out.http_method = Some(method.to_owned());
    out.http_uri = Some(path.to_owned());
    out.http_host = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("host"))
        .map(|h| String::from_utf8_lossy(h.value).trim().to_owned());
    match parsed {
        Parsed::Partial => Parsed::Partial,
        _ => Parsed::Complete,
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use dns::tests::{dns_query, dns_response};

    pub(crate) fn run(proto: u8, sport: u16, dport: u16, payload: &[u8]) -> AppFields {
        let mut out = AppFields::default();
        let set = app_fields(proto, sport, dport, payload, &mut out);
        assert_eq!(set, !out.is_empty());
        out
    }

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
    fn modern_client_hello() -> Vec<u8> {
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
    fn tls_client_hello_after_change_cipher_spec() {
        let mut seg = vec![0x14, 3, 3, 0, 1, 1];
        seg.extend_from_slice(&modern_client_hello());
        let f = run(IPPROTO_TCP, 51000, 443, &seg);
        assert_eq!(f.tls_sni.as_deref(), Some("www.example.com"));
        assert_eq!(f.tls_ja3.as_deref(), Some(MODERN_JA3_MD5));
        // A ChangeCipherSpec record alone: nothing.
        assert!(run(IPPROTO_TCP, 51000, 443, &seg[..6]).is_empty());
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

    // ---- HTTP ----

    #[test]
    fn http_get_with_host() {
        let p =
            b"GET /index.html?q=1&r=%20 HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: t\r\n\r\n";
        let f = run(IPPROTO_TCP, 50000, 80, p);
        assert_eq!(f.http_method.as_deref(), Some("GET"));
        assert_eq!(f.http_host.as_deref(), Some("www.example.com"));
        assert_eq!(f.http_uri.as_deref(), Some("/index.html?q=1&r=%20"));
        assert!(f.dns_qname.is_none() && f.tls_sni.is_none());
    }

    #[test]
    fn http_lowercase_host_trimmed() {
        let p = b"POST http://proxy.example/x HTTP/1.0\r\nAccept: */*\r\nhost:   example.org  \r\n\r\nbody";
        let f = run(IPPROTO_TCP, 50000, 3128, p);
        assert_eq!(f.http_method.as_deref(), Some("POST"));
        assert_eq!(f.http_host.as_deref(), Some("example.org"));
        assert_eq!(f.http_uri.as_deref(), Some("http://proxy.example/x"));
    }

    #[test]
    fn http_headers_cut_short() {
        let p = b"PUT /upload HTTP/1.1\r\nUser-Agent: x\r\nHOST: files.example\r\nContent-Le";
        let f = run(IPPROTO_TCP, 50000, 80, p);
        assert_eq!(f.http_method.as_deref(), Some("PUT"));
        assert_eq!(f.http_uri.as_deref(), Some("/upload"));
        assert_eq!(f.http_host.as_deref(), Some("files.example"));

        // Host line itself cut: not reported.
        let f = run(IPPROTO_TCP, 50000, 80, b"GET / HTTP/1.1\r\nHost: exa");
        assert_eq!(f.http_uri.as_deref(), Some("/"));
        assert_eq!(f.http_host, None);

        // Request line cut: nothing.
        assert!(run(IPPROTO_TCP, 50000, 80, b"GET /very/long/pa").is_empty());
        assert!(run(IPPROTO_TCP, 50000, 80, b"GET ").is_empty());
    }

    #[test]
    fn http_body_past_the_payload_is_partial() {
        let head = b"POST /ocsp HTTP/1.1\r\nHost: ocsp.example\r\nContent-Length: 5\r\n\r\n";
        let mut out = AppFields::default();
        assert_eq!(
            parse_app(IPPROTO_TCP, 5, 80, head, &mut out),
            Parsed::Partial
        );
        assert_eq!(out.http_host.as_deref(), Some("ocsp.example"));
        let whole = [&head[..], b"hello"].concat();
        assert_eq!(
            parse_app(IPPROTO_TCP, 5, 80, &whole, &mut out),
            Parsed::Complete
        );
        assert_eq!(out.http_method.as_deref(), Some("POST"));
    }

    #[test]
    fn ssdp_over_udp() {
        let f = run(
            IPPROTO_UDP,
            49152,
            1900,
            b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\n\r\n",
        );
        assert_eq!(f.http_method.as_deref(), Some("M-SEARCH"));
        assert_eq!(f.http_uri.as_deref(), Some("*"));
        assert_eq!(f.http_host.as_deref(), Some("239.255.255.250:1900"));
        // Other UDP ports are not HTTP.
        assert!(
            run(
                IPPROTO_UDP,
                49152,
                1901,
                b"NOTIFY * HTTP/1.1\r\nHost: h\r\n\r\n"
            )
            .is_empty()
        );
    }

    #[test]
    fn http_non_requests() {
        for p in [
            &b"HTTP/1.1 200 OK\r\nHost: x\r\n\r\n"[..],
            b"GETX / HTTP/1.1\r\n\r\n",
            b"get / HTTP/1.1\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"SSH-2.0-OpenSSH_9.6\r\n",
            b"GET / FTP/1.0\r\n\r\n",
            b"",
        ] {
            assert!(run(IPPROTO_TCP, 50000, 80, p).is_empty(), "{p:?}");
        }
    }

    #[test]
    fn clear_and_is_empty() {
        let mut f = run(IPPROTO_UDP, 53, 1, &dns_response());
        assert!(!f.is_empty());
        f.clear();
        assert!(f.is_empty());
        assert_eq!(f, AppFields::default());
        // app_fields clears previous content.
        let mut out = run(IPPROTO_TCP, 1, 443, &modern_client_hello());
        assert!(!app_fields(IPPROTO_TCP, 1, 2, b"\x00\x01", &mut out));
        assert!(out.is_empty());
    }

    // ---- robustness ----

    pub(crate) struct XorShift(pub(crate) u64);
    impl XorShift {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        pub(crate) fn below(&mut self, n: u64) -> usize {
            usize::try_from(self.next() % n).expect("small")
        }
    }

    fn all_branches(p: &[u8], out: &mut AppFields) {
        for (proto, sp, dp) in [
            (IPPROTO_UDP, 53, 1),
            (IPPROTO_UDP, 5353, 5353),
            (IPPROTO_UDP, 1, 5355),
            (IPPROTO_TCP, 1, 53),
            (IPPROTO_TCP, 1, 443),
            (IPPROTO_TCP, 80, 1),
            (1, 53, 53),
        ] {
            let set = app_fields(proto, sp, dp, p, out);
            assert_eq!(set, !out.is_empty());
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut out = AppFields::default();
        let seeds = [
            dns_response(),
            dns_query("www.example.com", 1),
            modern_client_hello(),
            b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(),
        ];
        for i in 0..6000 {
            let len = match i % 4 {
                0 => rng.below(16),
                1 => rng.below(80),
                2 => rng.below(600),
                _ => rng.below(1600),
            };
            let mut p: Vec<u8> = (0..len).map(|_| rng.next().to_le_bytes()[3]).collect();
            // Steer some payloads past the pre-checks.
            match i % 5 {
                1 if p.len() >= 6 => p[..6].copy_from_slice(&[0x16, 3, 1, 1, 0, 1]),
                2 if p.len() >= 4 => p[..4].copy_from_slice(b"GET "),
                3 if p.len() >= 12 => p[4..12].copy_from_slice(&[0, 1, 0, 2, 0, 0, 0, 0]),
                _ => {}
            }
            all_branches(&p, &mut out);

            // Mutated valid packets: flip a few bytes, cut at a random length.
            let mut m = seeds[i % seeds.len()].clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(m.len() as u64);
                m[at] = rng.next().to_le_bytes()[0];
            }
            let cut = rng.below(m.len() as u64 + 1);
            all_branches(&m[..cut], &mut out);
        }
        // Every prefix of the valid packets.
        for s in &seeds {
            for cut in 0..=s.len() {
                all_branches(&s[..cut], &mut out);
            }
        }
    }

    #[test]
    #[ignore = "micro-benchmark; run with --release -- --ignored --nocapture"]
    fn bench_app_fields() {
        use std::hint::black_box;
        use std::time::Instant;

        let mut rng = XorShift(42);
        let mut other: Vec<u8> = (0..1400).map(|_| rng.next().to_le_bytes()[0]).collect();
        other[0] = 0x17; // TLS application data, the common case on 443
        let dns = dns_response();
        let hello = modern_client_hello();
        let mut out = AppFields::default();
        let mut bench = |name: &str, proto: u8, sp: u16, dp: u16, payload: &[u8], iters: u32| {
            let start = Instant::now();
            for _ in 0..iters {
                black_box(app_fields(
                    black_box(proto),
                    black_box(sp),
                    black_box(dp),
                    black_box(payload),
                    &mut out,
                ));
            }
            let ns = start.elapsed().as_nanos() as f64 / f64::from(iters);
            println!("{name:40} {ns:9.1} ns/call");
        };
        bench(
            "1400-byte non-matching TCP",
            IPPROTO_TCP,
            443,
            50000,
            &other,
            5_000_000,
        );
        bench(
            "1400-byte non-matching TCP, port 53",
            IPPROTO_TCP,
            53,
            50000,
            &other,
            5_000_000,
        );
        bench(
            "DNS response (3 answers)",
            IPPROTO_UDP,
            53,
            50000,
            &dns,
            500_000,
        );
        bench(
            "DNS query",
            IPPROTO_UDP,
            50000,
            53,
            &dns_query("www.example.com", 1),
            500_000,
        );
        bench(
            "TLS ClientHello (SNI + JA3)",
            IPPROTO_TCP,
            50000,
            443,
            &hello,
            200_000,
        );
        bench(
            "TLS ClientHello cut in half (SNI)",
            IPPROTO_TCP,
            50000,
            443,
            &hello[..hello.len() / 2],
            200_000,
        );
        bench("HTTP GET", IPPROTO_TCP, 50000, 80, b"GET /index.html HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: curl/8.0\r\nAccept: */*\r\n\r\n", 500_000);
    }
}
