//! Application-layer fields of a single packet: DNS question/answers, TLS
//! ClientHello SNI, JA3, JA4, ALPN and version, HTTP/1.x request line, Host and
//! User-Agent, HTTP response status and Content-Type, SSH identification strings,
//! DHCP message type, host name and address; and the services ([`Services`]) they
//! confirm.
//!
//! One packet in, fields out: there is no reassembly across packets. The
//! payload is the transport payload (bytes after the TCP/UDP header) and may be
//! cut short by the capture's snap length. One module per protocol: DNS messages
//! are walked in place (`dns.rs`); ClientHellos (`tls.rs`) and requests (`http.rs`)
//! are parsed by `tls-parser` and `httparse`, behind cheap pre-checks so that
//! payloads of no interest are rejected in a few nanoseconds.
//!
//! Never panics on any input bytes.

pub use crate::flows::{IPPROTO_TCP, IPPROTO_UDP};
use dhcp::dhcp_message;
use dns::{dns_message, dns_over_tcp};
use http::{http_request, http_response};
pub use service::Services;
use ssh::ssh_banner;
pub use tls::{Ja4, ja4_alpn, ja4_of, ja4_version, tls_client_hello, tls_version_text};

mod dhcp;
mod dns;
mod http;
pub mod quic;
mod service;
mod ssh;
mod tls;

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
    /// JA4 of the ClientHello (FoxIO's TLS client fingerprint, see [`Ja4`]), e.g.
    /// `t13d1516h2_8daaf6152771_e5627efa2ab1`; `q` instead of `t` for a ClientHello carried
    /// by QUIC ([`AppFields::quic_version`]).
    pub tls_ja4: Option<String>,
    /// The ClientHello's offered ALPN protocols, in order, joined by commas (lossy UTF-8).
    pub tls_alpn: Option<String>,
    /// The highest version the ClientHello offers: the highest of its supported_versions
    /// (GREASE left out), else its version field; as JA4 takes it. Shown by
    /// [`tls_version_text`].
    pub tls_version: Option<u16>,
    /// Set when the TLS fields above come from a ClientHello carried in QUIC Initial packets:
    /// the QUIC version of the packets (see [`quic`]). TLS over TCP leaves it None.
    pub quic_version: Option<u32>,
    /// HTTP request method.
    pub http_method: Option<String>,
    /// HTTP Host header value, trimmed.
    pub http_host: Option<String>,
    /// HTTP request-target as sent.
    pub http_uri: Option<String>,
    /// HTTP request User-Agent header value, trimmed.
    pub http_user_agent: Option<String>,
    /// HTTP response status code.
    pub http_status: Option<u16>,
    /// HTTP response Content-Type header value, trimmed.
    pub http_content_type: Option<String>,
    /// SSH identification string (`SSH-2.0-OpenSSH_9.6`), without its CR LF.
    pub ssh_banner: Option<String>,
    /// DHCP message type (option 53: 1 DISCOVER, 2 OFFER, 3 REQUEST, 5 ACK, …).
    pub dhcp_msg_type: Option<u8>,
    /// DHCP client host name (option 12), lossy UTF-8.
    pub dhcp_hostname: Option<String>,
    /// DHCP address: given (`yiaddr` of an OFFER or ACK) or asked for (option 50).
    pub dhcp_addr: Option<String>,
    /// Buffers of fields cleared, for the next packet's (see [`SpareText`]).
    spare: SpareText,
}

/// Strings of cleared fields, kept so that one `AppFields` decoding packet after packet
/// (the decoder's scratch space) does not allocate its DNS and HTTP texts again for each.
/// Not a field: any two are equal, and it is not shown.
#[derive(Clone, Default)]
struct SpareText(Vec<String>);

/// Most buffers kept, and the largest one kept.
const SPARE_TEXTS: usize = 64;
const SPARE_CAPACITY: usize = 1024;

impl SpareText {
    fn keep(&mut self, s: Option<String>) {
        if let Some(mut s) = s
            && self.0.len() < SPARE_TEXTS
            && s.capacity() <= SPARE_CAPACITY
        {
            s.clear();
            self.0.push(s);
        }
    }

    /// An empty string, with room from an earlier field's if one is kept.
    fn take(&mut self) -> String {
        self.0.pop().unwrap_or_default()
    }

    /// `s`, in a buffer kept if there is one.
    fn text(&mut self, s: &str) -> String {
        let mut t = self.take();
        t.push_str(s);
        t
    }
}

impl PartialEq for SpareText {
    fn eq(&self, _: &SpareText) -> bool {
        true
    }
}

impl Eq for SpareText {}

impl std::fmt::Debug for SpareText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SpareText")
    }
}

impl AppFields {
    /// Reset to empty, keeping the answers vector's allocation and the buffers of the DNS and
    /// HTTP texts.
    pub fn clear(&mut self) {
        self.clear_dns();
        for s in [
            &mut self.http_method,
            &mut self.http_host,
            &mut self.http_uri,
            &mut self.http_user_agent,
            &mut self.http_content_type,
        ] {
            self.spare.keep(s.take());
        }
        self.tls_sni = None;
        self.tls_ja3 = None;
        self.tls_ja4 = None;
        self.tls_alpn = None;
        self.tls_version = None;
        self.quic_version = None;
        self.http_status = None;
        self.ssh_banner = None;
        self.dhcp_msg_type = None;
        self.dhcp_hostname = None;
        self.dhcp_addr = None;
    }

    /// Reset the DNS fields, keeping their buffers.
    fn clear_dns(&mut self) {
        self.spare.keep(self.dns_qname.take());
        self.dns_qtype = None;
        self.dns_rcode = None;
        // Most packets have no answers: no drain to set up and drop.
        if !self.dns_answers.is_empty() {
            for a in self.dns_answers.drain(..) {
                self.spare.keep(Some(a));
            }
        }
    }

    /// True when no field is set.
    pub fn is_empty(&self) -> bool {
        self.dns_qname.is_none()
            && self.dns_qtype.is_none()
            && self.dns_rcode.is_none()
            && self.dns_answers.is_empty()
            && self.tls_sni.is_none()
            && self.tls_ja3.is_none()
            && self.tls_ja4.is_none()
            && self.tls_alpn.is_none()
            && self.tls_version.is_none()
            && self.quic_version.is_none()
            && self.http_method.is_none()
            && self.http_host.is_none()
            && self.http_uri.is_none()
            && self.http_user_agent.is_none()
            && self.http_status.is_none()
            && self.http_content_type.is_none()
            && self.ssh_banner.is_none()
            && self.dhcp_msg_type.is_none()
            && self.dhcp_hostname.is_none()
            && self.dhcp_addr.is_none()
    }

    /// The services these fields confirm.
    pub fn services(&self) -> Services {
        Services::of(self)
    }
}

const DNS_PORT: u16 = 53;
const MDNS_PORT: u16 = 5353;
const LLMNR_PORT: u16 = 5355;
/// SSDP: HTTP requests over UDP (UPnP discovery).
const SSDP_PORT: u16 = 1900;

/// UDP ports whose payload is a DNS message (DNS, mDNS, LLMNR).
fn is_dns_port(src_port: u16, dst_port: u16) -> bool {
    [DNS_PORT, MDNS_PORT, LLMNR_PORT].contains(&src_port)
        || [DNS_PORT, MDNS_PORT, LLMNR_PORT].contains(&dst_port)
}

/// Whether a UDP packet between these ports is read by its ports (DNS, mDNS, LLMNR, DHCP,
/// SSDP) rather than by its content: such a payload is never taken for QUIC, whose long header
/// a malformed DNS message can look like (ID `0x8000`, flags 0 and 256 questions read as a
/// version 1 Initial).
pub fn udp_by_port(src_port: u16, dst_port: u16) -> bool {
    let is_port = |p: u16| src_port == p || dst_port == p;
    is_dns_port(src_port, dst_port)
        || is_port(dhcp::SERVER_PORT)
        || is_port(dhcp::CLIENT_PORT)
        || is_port(SSDP_PORT)
}

/// Decode `payload` of a packet with the given IP protocol and ports into `out` (cleared first).
/// Returns true when any field was set.
///
/// At most one protocol is decoded:
/// - UDP with either port 53, 5353 (mDNS) or 5355 (LLMNR): DNS message.
/// - UDP with either port 67 or 68: DHCP message.
/// - UDP with either port 1900: SSDP (an HTTP/1.x request or response).
/// - TCP with either port 53: 2-byte length prefix + DNS message (only when the
///   whole message is in this payload).
/// - other TCP (or TCP port 53 that did not yield DNS): TLS ClientHello (a handshake
///   record, or a ChangeCipherSpec record and a handshake record), SSH identification
///   string, HTTP/1.x request or response, by content, on any port.
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
        IPPROTO_UDP if is_dns_port(src_port, dst_port) => {
            dns_message(payload, out);
            Parsed::Complete
        }
        IPPROTO_UDP if is_port(dhcp::SERVER_PORT) || is_port(dhcp::CLIENT_PORT) => {
            dhcp_message(payload, out)
        }
        IPPROTO_UDP if is_port(SSDP_PORT) => match payload.first() {
            Some(b'H') => http_response(payload, out),
            _ => http_request(payload, out),
        },
        IPPROTO_TCP => {
            let mut parsed = Parsed::Nothing;
            if is_port(DNS_PORT) {
                parsed = dns_over_tcp(payload, out);
            }
            if out.is_empty() && parsed != Parsed::Partial {
                parsed = match payload.first() {
                    // A handshake record, or a ChangeCipherSpec record before one.
                    Some(0x16 | 0x14) => tls_client_hello(payload, false, out),
                    Some(b'S') if payload.starts_with(b"SSH-") => ssh_banner(payload, out),
                    Some(b'H') if payload.starts_with(b"HTTP/") => http_response(payload, out),
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
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use dns::tests::{dns_query, dns_response};
    use tls::tests::modern_client_hello;

    pub(crate) fn run(proto: u8, sport: u16, dport: u16, payload: &[u8]) -> AppFields {
        let mut out = AppFields::default();
        let set = app_fields(proto, sport, dport, payload, &mut out);
        assert_eq!(set, !out.is_empty());
        out
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

    #[test]
    fn a_cleared_dns_message_leaves_its_buffers_for_the_next() {
        let fresh = run(IPPROTO_UDP, 53, 1, &dns_response());
        let mut scratch = fresh.clone();
        for _ in 0..3 {
            scratch.clear();
            assert_eq!(scratch.spare.0.len(), 1 + fresh.dns_answers.len());
            parse_app(IPPROTO_UDP, 53, 1, &dns_response(), &mut scratch);
            assert_eq!(scratch, fresh);
            // Every text came from a buffer kept.
            assert!(scratch.spare.0.is_empty());
        }
        // HTTP's texts too.
        let get = b"GET /x HTTP/1.1\r\nHost: h.example\r\nUser-Agent: u\r\n\r\n";
        let fresh = run(IPPROTO_TCP, 40000, 80, get);
        let mut scratch = fresh.clone();
        for _ in 0..3 {
            scratch.clear();
            assert_eq!(scratch.spare.0.len(), 4);
            parse_app(IPPROTO_TCP, 40000, 80, get, &mut scratch);
            assert_eq!(scratch, fresh);
            assert!(scratch.spare.0.is_empty());
        }
        // Only so many, and none too large, are kept.
        let mut many = AppFields {
            dns_answers: vec!["x".repeat(SPARE_CAPACITY + 1); 2],
            ..AppFields::default()
        };
        many.dns_answers
            .extend(vec![String::from("a"); 2 * SPARE_TEXTS]);
        many.clear();
        assert_eq!(many.spare.0.len(), SPARE_TEXTS);
        assert!(many.spare.0.iter().all(|s| s.capacity() <= SPARE_CAPACITY));
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
            (IPPROTO_UDP, 68, 67),
            (IPPROTO_UDP, 1900, 1),
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
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n".to_vec(),
            b"SSH-2.0-OpenSSH_9.6\r\n".to_vec(),
            dhcp::tests::dhcp(1, 3, [0; 4], &[(12, b"host"), (50, &[10, 0, 0, 9])]),
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
                4 if p.len() >= 12 => {
                    p[..12].copy_from_slice(&[0x14, 3, 3, 0, 1, 1, 0x16, 3, 3, 1, 0, 1]);
                }
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
