//! HTTP/1.x requests (method, request-target, Host, User-Agent) and responses (status code,
//! Content-Type).
//!
//! The head is parsed by `httparse` behind a cheap pre-check (a known method followed by a
//! space; `HTTP/` for a response). A head cut short still gives the request or status line
//! and the headers that are complete, and is reported as [`Parsed::Partial`].
//!
//! Never panics on any input bytes.

use super::{AppFields, Parsed, SpareText};

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

pub(super) fn http_request(payload: &[u8], out: &mut AppFields) -> Parsed {
    if !HTTP_METHODS.iter().any(|m| payload.starts_with(m)) {
        return Parsed::Nothing;
    }
    let mut headers = [httparse::EMPTY_HEADER; HTTP_MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    // Complete, Partial (headers cut) and header errors are all fine as long
    // as the request line was parsed: on Partial/Err httparse leaves
    // `req.headers` as the whole array, whose first entries hold the headers
    // that were complete and the rest EMPTY_HEADER (empty name).
    let parsed = head_status(req.parse(payload), req.headers, payload.len());
    let (Some(method), Some(path), Some(_)) = (req.method, req.path, req.version) else {
        // A request line that continues in the next segment.
        return parsed;
    };
    let spare = &mut out.spare;
    out.http_method = Some(spare.text(method));
    out.http_uri = Some(spare.text(path));
    out.http_host = header(spare, req.headers, "host");
    out.http_user_agent = header(spare, req.headers, "user-agent");
    match parsed {
        Parsed::Partial => Parsed::Partial,
        _ => Parsed::Complete,
    }
}

/// A response head at the start of `payload`: its status code and Content-Type.
pub(super) fn http_response(payload: &[u8], out: &mut AppFields) -> Parsed {
    if !payload.starts_with(b"HTTP/1.") {
        return Parsed::Nothing;
    }
    let mut headers = [httparse::EMPTY_HEADER; HTTP_MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    // Servers send `Name : value` (a space before the colon); tshark reads the header, so do
    // httparse's lenient mode, instead of stopping at it.
    let r = httparse::ParserConfig::default()
        .allow_spaces_after_header_name_in_responses(true)
        .parse_response(&mut resp, payload);
    let parsed = head_status(r, resp.headers, payload.len());
    let (Some(code), Some(_)) = (resp.code, resp.version) else {
        return parsed;
    };
    out.http_status = Some(code);
    out.http_content_type = header(&mut out.spare, resp.headers, "content-type");
    match parsed {
        Parsed::Partial => Parsed::Partial,
        _ => Parsed::Complete,
    }
}

/// What httparse's result says of a head in a payload of `len` bytes: a head cut short, or a
/// body announced by Content-Length that continues past the payload (the message ends, and
/// tshark shows it, where the body does), is [`Parsed::Partial`].
fn head_status(r: httparse::Result<usize>, headers: &[httparse::Header<'_>], len: usize) -> Parsed {
    match r {
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Ok(httparse::Status::Complete(head)) => {
            let body = headers
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
                Some(body) if head.saturating_add(body) > len => Parsed::Partial,
                _ => Parsed::Complete,
            }
        }
        Err(_) => Parsed::Nothing,
    }
}

/// The value of the first header named `name` (ASCII case-insensitive), lossy UTF-8, trimmed,
/// in one of the spare buffers.
fn header(spare: &mut SpareText, headers: &[httparse::Header<'_>], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| spare.text(String::from_utf8_lossy(h.value).trim()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::tests::run;
    use crate::app::{IPPROTO_TCP, IPPROTO_UDP, parse_app};

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
    fn http_user_agent_and_responses() {
        let p = b"GET / HTTP/1.1\r\nHost: h\r\nuser-agent:  curl/8.5.0 \r\n\r\n";
        let f = run(IPPROTO_TCP, 50000, 80, p);
        assert_eq!(f.http_user_agent.as_deref(), Some("curl/8.5.0"));
        let p = b"HTTP/1.1 404 Not Found\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 2\r\n\r\nab";
        let f = run(IPPROTO_TCP, 80, 50000, p);
        assert_eq!(f.http_status, Some(404));
        assert_eq!(
            f.http_content_type.as_deref(),
            Some("text/html; charset=utf-8")
        );
        assert!(f.http_method.is_none());
        // A body past the payload, and a head cut short: partial, with what they gave.
        let mut out = AppFields::default();
        let p = b"HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\nab";
        assert_eq!(parse_app(IPPROTO_TCP, 80, 5, p, &mut out), Parsed::Partial);
        assert_eq!(out.http_status, Some(200));
        let p = b"HTTP/1.1 301 Moved\r\nContent-Ty";
        assert_eq!(parse_app(IPPROTO_TCP, 80, 5, p, &mut out), Parsed::Partial);
        assert_eq!(out.http_status, Some(301));
        // A space before a header's colon (sent by real servers): the headers after it count.
        let p = b"HTTP/1.1 200 OK\r\nAccess-Control-Allow-Credentials : true\r\nContent-Type: a/b\r\n\r\n";
        assert_eq!(
            run(IPPROTO_TCP, 80, 5, p).http_content_type.as_deref(),
            Some("a/b")
        );
        // SSDP's responses over UDP.
        let p = b"HTTP/1.1 200 OK\r\nST: upnp:rootdevice\r\n\r\n";
        assert_eq!(run(IPPROTO_UDP, 1900, 5000, p).http_status, Some(200));
        // Not responses.
        assert!(run(IPPROTO_TCP, 80, 5, b"HTTP/2 200\r\n\r\n").is_empty());
        assert!(run(IPPROTO_TCP, 80, 5, b"HTTP/1.1 abc OK\r\n\r\n").is_empty());
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
            // Responses and SSH banners give their own fields, never a request's.
            let f = run(IPPROTO_TCP, 50000, 80, p);
            assert!(f.http_method.is_none() && f.http_uri.is_none(), "{p:?}");
            assert!(f.http_host.is_none(), "{p:?}");
        }
    }
}
