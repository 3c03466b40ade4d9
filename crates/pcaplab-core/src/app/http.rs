//! HTTP/1.x requests: method, request-target and Host.
//!
//! The request head is parsed by `httparse` behind a cheap pre-check (a known method followed
//! by a space). A head cut short still gives the request line and the headers that are
//! complete, and is reported as [`Parsed::Partial`].
//!
//! Never panics on any input bytes.

use super::{AppFields, Parsed};

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
}
