//! TLS ClientHello: the server name (SNI), JA3, JA4, the offered ALPN protocols and the
//! highest offered version.
//!
//! The ClientHello is parsed by `tls-parser` behind a cheap pre-check (handshake record,
//! ClientHello message type), so that payloads of no interest are rejected in a few
//! nanoseconds. A ClientHello cut short (split over TCP segments, snap length) still gives its
//! SNI and ALPN when those extensions are complete, and is reported as [`Parsed::Partial`];
//! JA3, JA4 and the version need the whole ClientHello.
//!
//! JA4 is FoxIO's TLS client fingerprint (BSD 3-Clause; the other JA4+ methods are under
//! another licence and are not here), computed as `technical_details/JA4.md` of
//! FoxIO-LLC/ja4 specifies it: see [`Ja4`]. A ClientHello that came over QUIC (decrypted from
//! its Initial packets, wrapped in a TLS record) is given with `quic` set and has the `q`
//! prefix.
//!
//! Never panics on any input bytes.

use std::borrow::Cow;
use std::fmt::Write as _;

use aws_lc_rs::digest::{Context, SHA256};
use md5::{Digest, Md5};
use tls_parser::{
    SNIType, TlsClientHelloContents, TlsExtension, TlsExtensionType, TlsMessage,
    TlsMessageHandshake, parse_tls_client_hello_extension, parse_tls_extension_unknown,
    parse_tls_handshake_client_hello, parse_tls_plaintext, parse_tls_record_header,
};

use super::{AppFields, Parsed};
use crate::text::HEX;

const TLS_CHANGE_CIPHER_SPEC: u8 = 0x14;
const TLS_HANDSHAKE: u8 = 0x16;
const TLS_CLIENT_HELLO: u8 = 1;

const EXT_SERVER_NAME: u16 = 0x0000;
const EXT_SIGNATURE_ALGORITHMS: u16 = 0x000d;
const EXT_ALPN: u16 = 0x0010;
const EXT_SUPPORTED_VERSIONS: u16 = 0x002b;

/// GREASE values (RFC 8701): 0x0a0a, 0x1a1a, ... 0xfafa.
fn is_grease(v: u16) -> bool {
    let [hi, lo] = v.to_be_bytes();
    hi == lo && lo & 0x0f == 0x0a
}

/// Decode a TLS ClientHello at the start of `payload` (a TLS record) into `out`'s TLS fields.
/// A ChangeCipherSpec record before it is skipped: a TLS 1.3 client sends one right before
/// its second ClientHello, after a HelloRetryRequest (RFC 8446, D.4), often in one segment.
///
/// `quic` tells that the ClientHello came over QUIC (its CRYPTO frames, wrapped in a TLS
/// record by the caller): JA4 then has the `q` prefix instead of `t` (the caller sets
/// [`AppFields::quic_version`]).
pub fn tls_client_hello(payload: &[u8], quic: bool, out: &mut AppFields) -> Parsed {
    let payload = skip_change_cipher_spec(payload);
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
                whole_hello(ch, quic, out);
            }
            Parsed::Complete
        }
        Err(_) => tls_client_hello_partial(payload, quic, out),
    }
}

/// `payload` after a ChangeCipherSpec record at its start (`14 03 0x 00 01 01`), if any.
fn skip_change_cipher_spec(payload: &[u8]) -> &[u8] {
    match payload {
        [TLS_CHANGE_CIPHER_SPEC, 3, _, 0, 1, 1, rest @ ..] => rest,
        _ => payload,
    }
}

/// The record is cut short (ClientHello split over TCP segments, snap length)
/// or the handshake message continues in a further record. tls-parser's
/// record/message parsers need the whole message, but its ClientHello body
/// parser accepts a body whose extension block is cut (`ext` = None), and its
/// single-extension parser can walk the extensions that are complete.
fn tls_client_hello_partial(payload: &[u8], quic: bool, out: &mut AppFields) -> Parsed {
    let Ok((rest, hdr)) = parse_tls_record_header(payload) else {
        // Not even the 5-byte record header: more may come.
        return Parsed::Partial;
    };
    let rec = &rest[..rest.len().min(usize::from(hdr.len))];
    let Some((body, complete)) = handshake_body(rec) else {
        return Parsed::Partial;
    };
    let Ok((after, ch)) = parse_tls_handshake_client_hello(body) else {
        return if complete {
            Parsed::Nothing
        } else {
            Parsed::Partial
        };
    };
    if complete {
        // Whole ClientHello present (only the record was cut): full result.
        whole_hello(&ch, quic, out);
        return Parsed::Complete;
    }
    // Extension block cut: skip its 2-byte length and walk what is there.
    let exts = match ch.ext {
        Some(e) => e,
        None => after.get(2..).unwrap_or_default(),
    };
    let info = scan_extensions(exts);
    out.tls_alpn = alpn_text(info.alpn);
    out.tls_sni = info.sni;
    Parsed::Partial
}

/// The ClientHello body in a handshake record's bytes `rec` (4-byte handshake header: type,
/// checked by the caller, and 24-bit length), cut to the message's length, and whether the
/// whole message is there. None when not even the header is.
fn handshake_body(rec: &[u8]) -> Option<(&[u8], bool)> {
    let Some(&[_, l0, l1, l2]) = rec.get(..4) else {
        return None;
    };
    let msg_len = usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2);
    let body = &rec[4..];
    Some((&body[..body.len().min(msg_len)], body.len() >= msg_len))
}

/// All the fields of a whole ClientHello.
fn whole_hello(ch: &TlsClientHelloContents<'_>, quic: bool, out: &mut AppFields) {
    let info = scan_extensions(ch.ext.unwrap_or_default());
    out.tls_ja3 = ja3_string(ch, &info).map(|s| md5_hex(s.as_bytes()));
    if let Some(ja4) = Ja4::new(ch, &info, quic) {
        out.tls_ja4 = Some(ja4.fingerprint());
        out.tls_version = Some(ja4.version);
    }
    out.tls_alpn = alpn_text(info.alpn);
    out.tls_sni = info.sni;
}

/// What JA3, JA4, SNI and ALPN need from the extension block.
#[derive(Default)]
struct HelloExtensions<'a> {
    sni: Option<String>,
    /// Extension types in order of appearance, GREASE included (filtered later).
    types: Vec<u16>,
    curves: Vec<u16>,
    point_formats: Vec<u8>,
    /// The first ALPN extension's data as sent: 2-byte list length, then length-prefixed
    /// protocol names.
    alpn: Option<&'a [u8]>,
    /// The first signature_algorithms extension's data as sent: 2-byte length, then the
    /// 2-byte schemes.
    sig_algs: Option<&'a [u8]>,
    /// The first supported_versions extension's data as sent: 1-byte length, then the 2-byte
    /// versions.
    supported_versions: Option<&'a [u8]>,
    /// The whole block was walked (no malformed or cut extension).
    complete: bool,
}

fn scan_extensions(mut rem: &[u8]) -> HelloExtensions<'_> {
    let mut info = HelloExtensions::default();
    while !rem.is_empty() {
        let (next, t) = match parse_tls_client_hello_extension(rem) {
            Ok((next, ext)) => {
                let t = match &ext {
                    // tls-parser's GREASE test (t & 0x0f0f == 0x0a0a) is
                    // looser than JA3's; keep the real type and filter later.
                    TlsExtension::Grease(t, _) => *t,
                    other => TlsExtensionType::from(other).0,
                };
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
                (next, t)
            }
            // Known type with content tls-parser rejects (e.g. a non-empty
            // extended_master_secret): keep its type for JA3, skip its body.
            Err(_) => match parse_tls_extension_unknown(rem) {
                Ok((next, TlsExtension::Unknown(t, _))) => (next, t.0),
                _ => return info,
            },
        };
        info.types.push(t);
        // The extension's data: after its 4-byte header, up to the next one.
        let data = rem.get(4..rem.len() - next.len()).unwrap_or_default();
        let slot = match t {
            EXT_ALPN => Some(&mut info.alpn),
            EXT_SIGNATURE_ALGORITHMS => Some(&mut info.sig_algs),
            EXT_SUPPORTED_VERSIONS => Some(&mut info.supported_versions),
            _ => None,
        };
        if let Some(slot) = slot {
            slot.get_or_insert(data);
        }
        rem = next;
    }
    info.complete = true;
    info
}

/// The 2-byte values of a list with a `len_bytes`-byte length prefix (1 or 2), as far as
/// both the declared length and the data go.
fn u16_list(data: &[u8], len_bytes: usize) -> impl Iterator<Item = u16> + '_ {
    let declared = match (len_bytes, data) {
        (1, [n, ..]) => usize::from(*n),
        (2, [h, l, ..]) => usize::from(u16::from_be_bytes([*h, *l])),
        _ => 0,
    };
    let list = data.get(len_bytes..).unwrap_or_default();
    list[..list.len().min(declared)]
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
}

/// The protocol names of an ALPN extension's data, in order, as far as they are well formed.
fn alpn_protocols(data: &[u8]) -> impl Iterator<Item = &[u8]> + '_ {
    let declared = match data {
        [h, l, ..] => usize::from(u16::from_be_bytes([*h, *l])),
        _ => 0,
    };
    let list = data.get(2..).unwrap_or_default();
    let mut rem = &list[..list.len().min(declared)];
    std::iter::from_fn(move || {
        let (&n, rest) = rem.split_first()?;
        let name = rest.get(..usize::from(n))?;
        rem = &rest[usize::from(n)..];
        Some(name)
    })
}

/// The offered ALPN protocols joined by commas (lossy UTF-8), as tshark shows
/// `tls.handshake.extensions_alpn_str` with `-E aggregator=,`; None without any.
fn alpn_text(alpn: Option<&[u8]>) -> Option<String> {
    let mut protocols = alpn_protocols(alpn?).peekable();
    protocols.peek()?;
    let mut s = String::new();
    for (i, p) in protocols.enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&String::from_utf8_lossy(p));
    }
    Some(s)
}

/// JA3 string of a ClientHello: "SSLVersion,Ciphers,Extensions,EllipticCurves,
/// EllipticCurvePointFormats", decimal values joined by '-', GREASE removed
/// from ciphers, extensions and curves. None when the extension block is
/// malformed (the list would be incomplete).
fn ja3_string(ch: &TlsClientHelloContents<'_>, ext: &HelloExtensions<'_>) -> Option<String> {
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
    let digest = Md5::digest(data);
    let mut s = String::with_capacity(32);
    for b in digest.iter() {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    s
}

// ---------------------------------------------------------------------------------------------
// JA4
// ---------------------------------------------------------------------------------------------

/// The parts of a ClientHello's JA4 (FoxIO's `technical_details/JA4.md`), GREASE values
/// (RFC 8701) left out everywhere:
///
/// - `a`, 10 characters: `t` (TLS over TCP) or `q` (QUIC); the version, two characters
///   ([`ja4_version`]): the highest of supported_versions, else the ClientHello's version;
///   `d` when there is a server_name extension, else `i`; the number of cipher suites and of
///   extensions (server_name and ALPN included), two digits each, at most 99; the first and
///   last character of the first ALPN protocol, `00` without one (see [`ja4_alpn`]).
/// - `b`: the cipher suites as 4-digit lowercase hex, sorted, joined by commas.
/// - `c`: the extension types likewise, sorted, server_name and ALPN left out; then, when
///   there are signature algorithms, `_` and the signature_algorithms values in the order
///   sent.
///
/// JA4 is `a_B_C` where `B` and `C` are the first 12 hex digits of the SHA-256 of `b` and `c`,
/// or `000000000000` when the cipher list, or the extension list, is empty. JA4_r, the raw
/// form, is `a_b_c`. Lists are neither deduplicated nor cut at 99.
pub struct Ja4 {
    a: [u8; 10],
    /// The highest offered version (GREASE left out).
    version: u16,
    /// Cipher suites (sorted), then extension types (sorted, without server_name and
    /// ALPN), then signature algorithms (as sent): one allocation.
    values: Vec<u16>,
    /// Where the extension types and the signature algorithms start in `values`.
    exts_at: usize,
    sigs_at: usize,
}

impl Ja4 {
    /// The JA4 parts of a whole ClientHello; None when its extension block is malformed.
    fn new(ch: &TlsClientHelloContents<'_>, ext: &HelloExtensions<'_>, quic: bool) -> Option<Self> {
        if !ext.complete {
            return None;
        }
        let mut values = Vec::with_capacity(ch.ciphers.len() + ext.types.len() + 16);
        values.extend(ch.ciphers.iter().map(|c| c.0).filter(|&c| !is_grease(c)));
        let n_ciphers = values.len();
        values.sort_unstable();
        let exts_at = values.len();
        let mut n_exts = 0;
        for &t in ext.types.iter().filter(|&&t| !is_grease(t)) {
            n_exts += 1;
            if t != EXT_SERVER_NAME && t != EXT_ALPN {
                values.push(t);
            }
        }
        values[exts_at..].sort_unstable();
        let sigs_at = values.len();
        if let Some(sigs) = ext.sig_algs {
            values.extend(u16_list(sigs, 2).filter(|&s| !is_grease(s)));
        }
        let version = ext
            .supported_versions
            .and_then(|v| u16_list(v, 1).filter(|&v| !is_grease(v)).max())
            .unwrap_or(ch.version.0);

        let mut a = [0u8; 10];
        a[0] = if quic { b'q' } else { b't' };
        a[1..3].copy_from_slice(ja4_version(version));
        a[3] = if ext.types.contains(&EXT_SERVER_NAME) {
            b'd'
        } else {
            b'i'
        };
        a[4..6].copy_from_slice(&two_digits(n_ciphers));
        a[6..8].copy_from_slice(&two_digits(n_exts));
        let first_alpn = ext.alpn.and_then(|d| alpn_protocols(d).next());
        a[8..10].copy_from_slice(&ja4_alpn(first_alpn));
        Some(Self {
            a,
            version,
            values,
            exts_at,
            sigs_at,
        })
    }

    fn ciphers(&self) -> &[u16] {
        &self.values[..self.exts_at]
    }

    fn extensions(&self) -> &[u16] {
        &self.values[self.exts_at..self.sigs_at]
    }

    fn signatures(&self) -> &[u16] {
        &self.values[self.sigs_at..]
    }

    /// Feed section `c`'s text to `put`.
    fn put_c(&self, put: &mut impl FnMut(&[u8])) {
        put_hex_list(self.extensions(), put);
        if !self.signatures().is_empty() {
            put(b"_");
            put_hex_list(self.signatures(), put);
        }
    }

    /// The JA4 fingerprint, e.g. `t13d1516h2_8daaf6152771_e5627efa2ab1`.
    pub fn fingerprint(&self) -> String {
        let mut s = String::with_capacity(36);
        s.extend(self.a.iter().map(|&b| char::from(b)));
        s.push('_');
        if self.ciphers().is_empty() {
            s.push_str("000000000000");
        } else {
            let mut h = Context::new(&SHA256);
            put_hex_list(self.ciphers(), &mut |b| h.update(b));
            push_hex12(&mut s, h.finish().as_ref());
        }
        s.push('_');
        if self.extensions().is_empty() {
            s.push_str("000000000000");
        } else {
            let mut h = Context::new(&SHA256);
            self.put_c(&mut |b| h.update(b));
            push_hex12(&mut s, h.finish().as_ref());
        }
        s
    }

    /// The raw form JA4_r: the same sections unhashed.
    pub fn raw(&self) -> String {
        let mut buf = Vec::with_capacity(12 + 5 * self.values.len());
        buf.extend_from_slice(&self.a);
        buf.push(b'_');
        put_hex_list(self.ciphers(), &mut |b| buf.extend_from_slice(b));
        buf.push(b'_');
        self.put_c(&mut |b| buf.extend_from_slice(b));
        // Only ASCII was written.
        String::from_utf8_lossy(&buf).into_owned()
    }
}

/// JA4 and JA4_r of the whole ClientHello at the start of `payload` (a TLS record as in
/// [`tls_client_hello`]); None when there is none, or it is cut short or malformed. For tests
/// and tools: the packet table has the JA4 only.
pub fn ja4_of(payload: &[u8], quic: bool) -> Option<Ja4> {
    let payload = skip_change_cipher_spec(payload);
    if payload.len() < 6 || payload[0] != TLS_HANDSHAKE || payload[5] != TLS_CLIENT_HELLO {
        return None;
    }
    let (rest, hdr) = parse_tls_record_header(payload).ok()?;
    let (body, complete) = handshake_body(rest.get(..usize::from(hdr.len))?)?;
    if !complete {
        return None;
    }
    let (_, ch) = parse_tls_handshake_client_hello(body).ok()?;
    let info = scan_extensions(ch.ext.unwrap_or_default());
    Ja4::new(&ch, &info, quic)
}

/// Values as 4-digit lowercase hex joined by commas, fed to `put` piece by piece.
fn put_hex_list(values: &[u16], put: &mut impl FnMut(&[u8])) {
    for (i, &v) in values.iter().enumerate() {
        let [hi, lo] = v.to_be_bytes();
        let hex = [
            b',',
            HEX[usize::from(hi >> 4)],
            HEX[usize::from(hi & 0x0f)],
            HEX[usize::from(lo >> 4)],
            HEX[usize::from(lo & 0x0f)],
        ];
        put(if i == 0 { &hex[1..] } else { &hex });
    }
}

/// The first 12 hex digits of a digest.
fn push_hex12(s: &mut String, digest: &[u8]) {
    for &b in &digest[..6] {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
}

/// `n` as two decimal digits, at most 99.
fn two_digits(n: usize) -> [u8; 2] {
    let n = n.min(99) as u8;
    [b'0' + n / 10, b'0' + n % 10]
}

/// JA4's two characters for a TLS version: `13`, `12`, `11`, `10`, `s3` (SSL 3.0), `s2`
/// (SSL 2.0), `d1`, `d2`, `d3` (DTLS 1.0, 1.2, 1.3), `00` for anything else.
pub fn ja4_version(v: u16) -> &'static [u8; 2] {
    match v {
        0x0304 => b"13",
        0x0303 => b"12",
        0x0302 => b"11",
        0x0301 => b"10",
        0x0300 => b"s3",
        0x0002 => b"s2",
        0xfeff => b"d1",
        0xfefd => b"d2",
        0xfefc => b"d3",
        _ => b"00",
    }
}

/// JA4's two ALPN characters: the first and last byte of the first protocol (one byte: twice);
/// `00` without a protocol or when it is empty. When either byte is not ASCII alphanumeric,
/// the first and last hex digit of the protocol instead (`0x30 0xAB` gives `3b`).
pub fn ja4_alpn(first: Option<&[u8]>) -> [u8; 2] {
    match first {
        Some(&[f, ..]) => {
            let l = first.and_then(|p| p.last().copied()).unwrap_or(f);
            if f.is_ascii_alphanumeric() && l.is_ascii_alphanumeric() {
                [f, l]
            } else {
                [HEX[usize::from(f >> 4)], HEX[usize::from(l & 0x0f)]]
            }
        }
        _ => *b"00",
    }
}

/// Text of the highest offered version for the `tls_version` column: `TLS 1.3`, `TLS 1.2`,
/// `TLS 1.1`, `TLS 1.0`, `SSL 3.0`, `SSL 2.0`, `DTLS 1.0`, `DTLS 1.2`, `DTLS 1.3` (as tshark
/// names them), else the number in hex as tshark prints it, e.g. `0x7f1c` (a TLS 1.3 draft).
pub fn tls_version_text(v: u16) -> Cow<'static, str> {
    Cow::Borrowed(match v {
        0x0304 => "TLS 1.3",
        0x0303 => "TLS 1.2",
        0x0302 => "TLS 1.1",
        0x0301 => "TLS 1.0",
        0x0300 => "SSL 3.0",
        0x0002 => "SSL 2.0",
        0xfeff => "DTLS 1.0",
        0xfefd => "DTLS 1.2",
        0xfefc => "DTLS 1.3",
        _ => return Cow::Owned(format!("0x{v:04x}")),
    })
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

    // ---- JA4 ----

    /// JA4 and JA4_r of a ClientHello record.
    fn ja4_pair(rec: &[u8], quic: bool) -> (String, String) {
        let j = ja4_of(rec, quic).expect("a whole ClientHello");
        (j.fingerprint(), j.raw())
    }

    /// The example of FoxIO's `technical_details/JA4.md`, with GREASE added to the ciphers,
    /// extensions, signature algorithms and versions (which JA4 leaves out everywhere).
    fn spec_example_hello(sig_algs: &[u16]) -> Vec<u8> {
        let mut e = Vec::new();
        for t in [
            0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023, 0x0012,
            0x002b, 0xff01, 0x000b, 0x000a, 0x0015,
        ] {
            match t {
                0x0000 => e.extend(sni_ext("example.com")),
                0x0010 => e.extend(ext(t, b"\x00\x0c\x02h2\x08http/1.1")),
                0x000d => e.extend(ext(t, &u16s(2, sig_algs))),
                0x002b => e.extend(ext(t, &u16s(1, &[0xdada, 0x0304, 0x0303]))),
                _ => e.extend(ext(t, &[])),
            }
            if t == 0x0033 {
                e.extend(ext(0x9a9a, &[]));
            }
        }
        client_hello_record(
            0x0303,
            &[
                0x3a3a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8,
                0xc013, 0xc014, 0x009c, 0x009d, 0x002f, 0x0035,
            ],
            Some(&e),
        )
    }

    const SPEC_SIGS: [u16; 9] = [
        0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601, 0x2a2a,
    ];

    #[test]
    fn ja4_spec_example() {
        let rec = spec_example_hello(&SPEC_SIGS);
        let (ja4, raw) = ja4_pair(&rec, false);
        assert_eq!(ja4, "t13d1516h2_8daaf6152771_e5627efa2ab1");
        assert_eq!(
            raw,
            "t13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,\
             cca9_0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_0403,\
             0804,0401,0503,0805,0501,0806,0601"
        );
        // Through the packet parser: the same, with ALPN and version.
        let f = run(IPPROTO_TCP, 50000, 443, &rec);
        assert_eq!(f.tls_ja4.as_deref(), Some(ja4.as_str()));
        assert_eq!(f.tls_alpn.as_deref(), Some("h2,http/1.1"));
        assert_eq!(f.tls_version, Some(0x0304));
        // Over QUIC: `q`, nothing else changes.
        let mut out = AppFields::default();
        assert_eq!(tls_client_hello(&rec, true, &mut out), Parsed::Complete);
        assert_eq!(
            out.tls_ja4.as_deref(),
            Some("q13d1516h2_8daaf6152771_e5627efa2ab1")
        );
        assert_eq!(out.tls_sni.as_deref(), Some("example.com"));
    }

    #[test]
    fn ja4_without_signature_algorithms() {
        // An empty signature_algorithms list: the extension list alone, no underscore
        // (the spec's example hash).
        let (ja4, raw) = ja4_pair(&spec_example_hello(&[]), false);
        assert_eq!(ja4, "t13d1516h2_8daaf6152771_6d807ffa2a79");
        assert!(
            raw.ends_with("_0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01")
        );
    }

    #[test]
    fn ja4_modern_client_hello() {
        let f = run(IPPROTO_TCP, 51000, 443, &modern_client_hello());
        assert_eq!(
            f.tls_ja4.as_deref(),
            Some("t13d0512h2_c03c18a8b7cd_303605e647f4")
        );
        assert_eq!(f.tls_alpn.as_deref(), Some("h2,http/1.1"));
        assert_eq!(f.tls_version, Some(0x0304));
    }

    #[test]
    fn client_hello_after_change_cipher_spec() {
        // The second ClientHello after a HelloRetryRequest, behind a ChangeCipherSpec record.
        let rec = spec_example_hello(&SPEC_SIGS);
        let mut two = vec![0x14, 3, 3, 0, 1, 1];
        two.extend_from_slice(&rec);
        let f = run(IPPROTO_TCP, 50000, 443, &two);
        assert_eq!(f, run(IPPROTO_TCP, 50000, 443, &rec));
        assert_eq!(ja4_pair(&two, false), ja4_pair(&rec, false));
        // Cut: followed like any ClientHello.
        let mut out = AppFields::default();
        assert_eq!(
            super::super::parse_app(IPPROTO_TCP, 50000, 443, &two[..100], &mut out),
            Parsed::Partial
        );
        // A ChangeCipherSpec record alone, or another record behind it: nothing.
        assert!(run(IPPROTO_TCP, 50000, 443, &two[..6]).is_empty());
        assert!(
            run(
                IPPROTO_TCP,
                50000,
                443,
                &[0x14, 3, 3, 0, 1, 1, 0x17, 3, 3, 0, 1, 0]
            )
            .is_empty()
        );
    }

    #[test]
    fn ja4_no_extensions() {
        // No extension block at all: legacy version, `i`, `00` ALPN, empty extension hash.
        let rec = client_hello_record(0x0301, &[0x002f, 0x0035, 0x000a], None);
        let (ja4, raw) = ja4_pair(&rec, false);
        assert_eq!(ja4, "t10i030000_5704bdfc91c6_000000000000");
        assert_eq!(raw, "t10i030000_000a,002f,0035_");
        let f = run(IPPROTO_TCP, 1, 443, &rec);
        assert_eq!(f.tls_version, Some(0x0301));
        assert_eq!(f.tls_alpn, None);
        // SSL 3.0.
        let rec = client_hello_record(0x0300, &[0x000a], None);
        assert!(ja4_pair(&rec, false).0.starts_with("ts3i010000_"));
    }

    #[test]
    fn ja4_only_sni_and_alpn() {
        // Both extensions counted, neither in the list: the list is empty.
        let mut e = sni_ext("a.example");
        e.extend(ext(16, b"\x00\x03\x02h2"));
        let rec = client_hello_record(0x0303, &[0x1301], Some(&e));
        assert_eq!(
            ja4_pair(&rec, false).0,
            "t12d0102h2_0f2cb44170f4_000000000000"
        );
    }

    #[test]
    fn ja4_no_ciphers_and_caps() {
        let rec = client_hello_record(0x0303, &[], Some(&ext(23, &[])));
        let (ja4, raw) = ja4_pair(&rec, false);
        assert!(ja4.starts_with("t12i000100_000000000000_"), "{ja4}");
        assert!(raw.starts_with("t12i000100__0017"), "{raw}");
        // More than 99 ciphers and extensions: 99, with every value in the lists.
        let ciphers: Vec<u16> = (1..=120).collect();
        let e: Vec<u8> = (0x100..0x100 + 120).flat_map(|t| ext(t, &[])).collect();
        let (ja4, raw) = ja4_pair(&client_hello_record(0x0303, &ciphers, Some(&e)), false);
        assert!(ja4.starts_with("t12i999900_0f8860b09f90_"), "{ja4}");
        assert_eq!(raw.matches(',').count(), 119 + 119);
    }

    #[test]
    fn ja4_versions() {
        let with_versions = |versions: &[u16]| {
            let rec = client_hello_record(0x0303, &[0x1301], Some(&ext(43, &u16s(1, versions))));
            let f = run(IPPROTO_TCP, 1, 443, &rec);
            (f.tls_ja4.expect("ja4")[1..3].to_string(), f.tls_version)
        };
        assert_eq!(
            with_versions(&[0x0304, 0x0303]),
            ("13".into(), Some(0x0304))
        );
        // The highest, wherever it is; GREASE left out.
        assert_eq!(
            with_versions(&[0x0301, 0x0304, 0xfafa]),
            ("13".into(), Some(0x0304))
        );
        assert_eq!(
            with_versions(&[0x0302, 0x0301]),
            ("11".into(), Some(0x0302))
        );
        // Only GREASE: the ClientHello's version.
        assert_eq!(with_versions(&[0x4a4a]), ("12".into(), Some(0x0303)));
        // A TLS 1.3 draft: unknown to JA4.
        assert_eq!(with_versions(&[0x7f1c]), ("00".into(), Some(0x7f1c)));
        assert_eq!(ja4_version(0x0002), b"s2");
        assert_eq!(ja4_version(0xfefd), b"d2");
        assert_eq!(tls_version_text(0x0304), "TLS 1.3");
        assert_eq!(tls_version_text(0x0300), "SSL 3.0");
        assert_eq!(tls_version_text(0x7f1c), "0x7f1c");
    }

    #[test]
    fn ja4_alpn_characters() {
        // FoxIO's JA4.md examples.
        assert_eq!(&ja4_alpn(Some(b"h2")), b"h2");
        assert_eq!(&ja4_alpn(Some(b"http/1.1")), b"h1");
        assert_eq!(&ja4_alpn(Some(&[0xab])), b"ab");
        assert_eq!(&ja4_alpn(Some(&[0xab, 0xcd])), b"ad");
        assert_eq!(&ja4_alpn(Some(&[0x30, 0xab])), b"3b");
        assert_eq!(&ja4_alpn(Some(&[0x30, 0x31, 0xab, 0xcd])), b"3d");
        assert_eq!(&ja4_alpn(Some(&[0x30, 0xab, 0xcd, 0x31])), b"01");
        // One character is both; none, or an empty first protocol, is `00`.
        assert_eq!(&ja4_alpn(Some(b"x")), b"xx");
        assert_eq!(&ja4_alpn(Some(b"")), b"00");
        assert_eq!(&ja4_alpn(None), b"00");
        // Non-ASCII (UTF-8 é = c3 a9) at the end.
        assert_eq!(&ja4_alpn(Some("hé".as_bytes())), b"69");

        // In a hello: the first protocol counts; an empty first protocol is `00`.
        let alpn_hello = |data: &[u8]| {
            let rec = client_hello_record(0x0303, &[0x1301], Some(&ext(16, data)));
            let f = run(IPPROTO_TCP, 1, 443, &rec);
            (f.tls_ja4.expect("ja4")[8..10].to_string(), f.tls_alpn)
        };
        assert_eq!(
            alpn_hello(b"\x00\x0c\x08http/1.1\x02h2"),
            ("h1".into(), Some("http/1.1,h2".into()))
        );
        assert_eq!(
            alpn_hello(b"\x00\x04\x00\x02h2"),
            ("00".into(), Some(",h2".into()))
        );
        assert_eq!(alpn_hello(b"\x00\x00"), ("00".into(), None));
        assert_eq!(
            alpn_hello(b"\x00\x02\x01\x00"),
            ("00".into(), Some("\0".into()))
        );
    }

    #[test]
    fn ja4_none_for_cut_hellos_but_alpn_early() {
        let rec = spec_example_hello(&SPEC_SIGS);
        for cut in 0..rec.len() {
            let f = run(IPPROTO_TCP, 51000, 443, &rec[..cut]);
            assert_eq!(f.tls_ja4, None, "cut {cut}");
            assert_eq!(f.tls_version, None, "cut {cut}");
            assert!(ja4_of(&rec[..cut], false).is_none());
        }
        // ALPN is the fourth extension: a hello cut after it has it.
        let f = run(IPPROTO_TCP, 51000, 443, &rec[..rec.len() - 40]);
        assert_eq!(f.tls_alpn.as_deref(), Some("h2,http/1.1"));
        assert_eq!(f.tls_sni.as_deref(), Some("example.com"));
    }
}
