//! A fault-injecting HTTP proxy for the AWS emulator: the binaries under test talk to it
//! (`AWS_ENDPOINT_URL`), it forwards to moto, and the test scripts what goes wrong.
//!
//! Every request is classified by the AWS operation it is — `s3:GetObject`, `s3:UploadPart`,
//! `dynamodb:PutItem`, `sqs:DeleteMessage`, `sns:Publish`, … (IAM's action names) — and a
//! [`Rule`] says which of them fail and how: S3's `503 SlowDown`, a throttling error or a `500`
//! in each service's own error format (what AWS answers, so the clients' retry classifiers see
//! the real thing), a response body cut after K bytes, a connection closed before or after
//! the request reached moto, or a delay. A rule can be limited to requests whose S3 path or
//! request body contains a string (one object, one item, one receipt handle), can let the first
//! matches through, and fires for the next N matches or for ever.
//!
//! The proxy also keeps a ledger: every request's operation, its subject and what became of it,
//! and the response bytes it passed on per operation.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{HOST, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

/// What a matching request gets instead of (or on top of) moto's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// S3's `503 SlowDown`; other services' throttling error (DynamoDB and SQS
    /// `400 ThrottlingException`, SNS `400 Throttling`). Not forwarded.
    Throttle,
    /// `500 InternalError` in the service's error format. Not forwarded.
    InternalError,
    /// Forwarded; the response's headers and its first `n` body bytes are passed on, then the
    /// connection is closed (a reset mid-download).
    CutBody(usize),
    /// Not forwarded: the connection is closed without an answer.
    Drop,
    /// Forwarded, so it takes effect, but the answer is lost: the connection is closed.
    DropAnswer,
    /// Forwarded after this delay.
    Delay(Duration),
}

/// Which requests a [`Fault`] hits.
#[derive(Clone, Debug)]
pub struct Rule {
    op: String,
    fault: Fault,
    matching: Option<String>,
    skip: u32,
    times: Option<u32>,
}

impl Rule {
    /// Every request of operation `op` (`"s3:GetObject"`, `"dynamodb:PutItem"`, …): for ever,
    /// unless [`Rule::times`] limits it.
    pub fn new(op: &str, fault: Fault) -> Rule {
        Rule {
            op: op.to_owned(),
            fault,
            matching: None,
            skip: 0,
            times: None,
        }
    }

    /// Only requests whose subject (an S3 request's decoded path `/bucket/key`, any other
    /// request's body) contains `text`.
    pub fn matching(mut self, text: &str) -> Rule {
        self.matching = Some(text.to_owned());
        self
    }

    /// Let the first `n` matching requests through untouched.
    pub fn after(mut self, n: u32) -> Rule {
        self.skip = n;
        self
    }

    /// Fault the next `n` matching requests only.
    pub fn times(mut self, n: u32) -> Rule {
        self.times = Some(n);
        self
    }

    fn hits(&self, op: &str, subject: &str) -> bool {
        self.op == op && self.matching.as_ref().is_none_or(|m| subject.contains(m))
    }
}

/// One request the proxy saw.
#[derive(Clone, Debug)]
pub struct Seen {
    pub op: String,
    /// The S3 path, or the first 200 characters of the body.
    pub subject: String,
    /// `None`: forwarded untouched; else the fault it got.
    pub fault: Option<Fault>,
    /// The status moto (or the fault) answered; `None` when the connection was dropped first.
    pub status: Option<u16>,
    /// Response body bytes passed on to the client.
    pub bytes: u64,
}

#[derive(Default)]
struct Ledger {
    rules: Vec<Rule>,
    seen: Vec<Seen>,
}

struct Shared {
    upstream: SocketAddr,
    ledger: Mutex<Ledger>,
}

impl Shared {
    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The proxy: listening on a loopback port of its own, stopped when dropped.
pub struct FaultProxy {
    port: u16,
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl FaultProxy {
    /// A proxy forwarding to `upstream` (moto's endpoint, `http://127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> FaultProxy {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .unwrap_or_else(|e| panic!("upstream {upstream} is not http://IP:PORT: {e}"));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fault-proxy")
            .enable_all()
            .build()
            .expect("the proxy's runtime");
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let shared = Arc::new(Shared {
            upstream,
            ledger: Mutex::new(Ledger::default()),
        });
        let accept = Arc::clone(&shared);
        runtime.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = Arc::clone(&accept);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let shared = Arc::clone(&shared);
                        async move { handle(&shared, request).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FaultProxy {
            port,
            shared,
            runtime: Some(runtime),
        }
    }

    /// Where clients should send their requests (`AWS_ENDPOINT_URL`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Add a rule; rules are tried in the order they were added, the first that fires wins.
    pub fn inject(&self, rule: Rule) -> &Self {
        self.shared.ledger().rules.push(rule);
        self
    }

    /// Remove every rule (requests are forwarded untouched again).
    pub fn heal(&self) {
        self.shared.ledger().rules.clear();
    }

    /// Every request so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.ledger().seen.clone()
    }

    /// Requests of operation `op` so far.
    pub fn count(&self, op: &str) -> usize {
        self.shared
            .ledger()
            .seen
            .iter()
            .filter(|s| s.op == op)
            .count()
    }

    /// Faults injected so far into operation `op`.
    pub fn faults(&self, op: &str) -> usize {
        self.shared
            .ledger()
            .seen
            .iter()
            .filter(|s| s.op == op && s.fault.is_some())
            .count()
    }

    /// Response body bytes passed on to clients for operation `op`, on requests whose subject
    /// contains `matching` (`""`: all of them).
    pub fn bytes(&self, op: &str, matching: &str) -> u64 {
        self.shared
            .ledger()
            .seen
            .iter()
            .filter(|s| s.op == op && s.subject.contains(matching))
            .map(|s| s.bytes)
            .sum()
    }

    /// Forget the requests seen and the bytes counted (rules stay).
    pub fn reset_counts(&self) {
        self.shared.ledger().seen.clear();
    }
}

type ProxyBody = BoxBody<Bytes, std::io::Error>;

fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

/// The fault the first live rule that matches gives, counting it against that rule.
fn fire(rules: &mut [Rule], op: &str, subject: &str) -> Option<Fault> {
    for rule in rules.iter_mut().filter(|r| r.hits(op, subject)) {
        if rule.skip > 0 {
            rule.skip -= 1;
            continue;
        }
        match rule.times.as_mut() {
            Some(0) => continue,
            Some(n) => *n -= 1,
            None => {}
        }
        return Some(rule.fault);
    }
    None
}

/// Serve one request: classify it, consult the rules, forward or fail it.
async fn handle(
    shared: &Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, std::io::Error> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    let (service, op) = classify(&parts, &body);
    let subject = if service == "s3" {
        percent_encoding::percent_decode_str(parts.uri.path())
            .decode_utf8_lossy()
            .into_owned()
    } else {
        String::from_utf8_lossy(&body).into_owned()
    };
    let (fault, index) = {
        let mut ledger = shared.ledger();
        let fired = fire(&mut ledger.rules, &op, &subject);
        ledger.seen.push(Seen {
            op,
            subject: subject.chars().take(200).collect(),
            fault: fired,
            status: None,
            bytes: 0,
        });
        (fired, ledger.seen.len() - 1)
    };
    let record_status = |status: Option<u16>| {
        if let Some(s) = shared.ledger().seen.get_mut(index) {
            s.status = status;
        }
    };
    match fault {
        Some(f @ (Fault::Throttle | Fault::InternalError)) => {
            let response = error_response(&service, f);
            record_status(Some(response.status().as_u16()));
            return Ok(response);
        }
        Some(Fault::Drop) => {
            return Err(std::io::Error::other("fault: connection dropped"));
        }
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        _ => {}
    }
    let response = forward(shared.upstream, parts, body).await?;
    record_status(Some(response.status().as_u16()));
    if fault == Some(Fault::DropAnswer) {
        return Err(std::io::Error::other("fault: answer dropped"));
    }
    let (parts, body) = response.into_parts();
    let counted = Counted {
        inner: body,
        shared: Arc::clone(shared),
        index,
        left: match fault {
            Some(Fault::CutBody(n)) => Some(n),
            _ => None,
        },
        pause: None,
    };
    Ok(Response::from_parts(parts, counted.boxed()))
}

/// Send the request to moto on a connection of its own; the answer's body streams through.
async fn forward(
    upstream: SocketAddr,
    mut parts: hyper::http::request::Parts,
    body: Bytes,
) -> Result<Response<Incoming>, std::io::Error> {
    let stream = TcpStream::connect(upstream).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(connection);
    // Keep the Host the client signed; only the request target loses any absolute form.
    if let Some(pq) = parts.uri.path_and_query() {
        parts.uri = pq.as_str().parse().map_err(std::io::Error::other)?;
    }
    if !parts.headers.contains_key(HOST) {
        let host = HeaderValue::from_str(&upstream.to_string()).map_err(std::io::Error::other)?;
        parts.headers.insert(HOST, host);
    }
    sender
        .send_request(Request::from_parts(parts, Full::new(body)))
        .await
        .map_err(std::io::Error::other)
}

/// moto's response body, counted per operation, cut short when the fault says so.
struct Counted {
    inner: Incoming,
    shared: Arc<Shared>,
    /// The request's entry in the ledger.
    index: usize,
    /// Bytes still to pass on before the cut (`None`: no cut).
    left: Option<usize>,
    /// Once they are passed on, a pause before the cut, so that the server writes out what it
    /// holds (the headers, the bytes before the cut) before it closes the connection.
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Body for Counted {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if self.left == Some(0) {
            let pause = self
                .pause
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(Duration::from_millis(50))));
            if pause.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            return Poll::Ready(Some(Err(std::io::Error::other("fault: body cut"))));
        }
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(std::io::Error::other(e)))),
            Poll::Ready(Some(Ok(frame))) => frame,
        };
        let frame = match frame.into_data() {
            Ok(mut data) => {
                if let Some(left) = self.left {
                    data.truncate(left);
                    self.left = Some(left - data.len());
                }
                if let Some(seen) = self.shared.ledger().seen.get_mut(self.index) {
                    seen.bytes += data.len() as u64;
                }
                Frame::data(data)
            }
            Err(other) => other,
        };
        Poll::Ready(Some(Ok(frame)))
    }

    fn size_hint(&self) -> SizeHint {
        // The headers keep moto's Content-Length even when the body is cut: the client must see
        // a short body, as after a reset.
        self.inner.size_hint()
    }
}

/// The service (`s3`, `dynamodb`, `sqs`, `sns`) and operation (`s3:GetObject`, …) of a request.
fn classify(parts: &hyper::http::request::Parts, body: &[u8]) -> (String, String) {
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    // JSON protocols name the operation in X-Amz-Target.
    let target = header("x-amz-target");
    if let Some(op) = target.strip_prefix("DynamoDB_20120810.") {
        return ("dynamodb".into(), format!("dynamodb:{op}"));
    }
    if let Some(op) = target.strip_prefix("AmazonSQS.") {
        return ("sqs".into(), format!("sqs:{op}"));
    }
    // Query protocols (SNS; SQS's older one) name it in the form body; the signature's
    // credential scope names the service.
    let authorization = header("authorization");
    for service in ["sns", "sqs"] {
        if authorization.contains(&format!("/{service}/aws4_request")) {
            let action = String::from_utf8_lossy(body)
                .split('&')
                .find_map(|kv| kv.strip_prefix("Action=").map(str::to_owned))
                .unwrap_or_else(|| "Unknown".into());
            return (service.into(), format!("{service}:{action}"));
        }
    }
    let query = parts.uri.query().unwrap_or("");
    let has = |name: &str| {
        query
            .split('&')
            .any(|kv| kv == name || kv.starts_with(&format!("{name}=")))
    };
    let path = parts.uri.path().trim_start_matches('/');
    let object = path.split_once('/').is_some_and(|(_, key)| !key.is_empty());
    let method = parts.method.as_str();
    let op = match (method, object) {
        ("GET", true) if has("uploadId") => "ListParts",
        ("GET", true) => "GetObject",
        ("GET", false) if path.is_empty() => "ListBuckets",
        ("GET", false) if has("list-type") => "ListObjectsV2",
        ("GET", false) => "ListObjects",
        ("HEAD", true) => "HeadObject",
        ("HEAD", false) => "HeadBucket",
        ("PUT", true) if has("partNumber") => "UploadPart",
        ("PUT", true) if !header("x-amz-copy-source").is_empty() => "CopyObject",
        ("PUT", true) => "PutObject",
        ("PUT", false) => "CreateBucket",
        ("POST", true) if has("uploads") => "CreateMultipartUpload",
        ("POST", true) if has("uploadId") => "CompleteMultipartUpload",
        ("POST", false) if has("delete") => "DeleteObjects",
        ("DELETE", true) if has("uploadId") => "AbortMultipartUpload",
        ("DELETE", true) => "DeleteObject",
        ("DELETE", false) => "DeleteBucket",
        _ => "Other",
    };
    ("s3".into(), format!("s3:{op}"))
}

/// The error a service answers for `fault`, in its own protocol's format.
fn error_response(service: &str, fault: Fault) -> Response<ProxyBody> {
    let throttle = fault == Fault::Throttle;
    let (status, content_type, body) = match service {
        "s3" => {
            let (status, code, message) = if throttle {
                (503, "SlowDown", "Please reduce your request rate.")
            } else {
                (
                    500,
                    "InternalError",
                    "We encountered an internal error. Please try again.",
                )
            };
            (
                status,
                "application/xml",
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>FAULTPROXY</RequestId></Error>"
                ),
            )
        }
        "dynamodb" | "sqs" => {
            let namespace = if service == "dynamodb" {
                "com.amazonaws.dynamodb.v20120810"
            } else {
                "com.amazonaws.sqs"
            };
            let (status, code, message) = if throttle {
                (
                    400,
                    "ThrottlingException",
                    "Rate of requests exceeds the allowed throughput.",
                )
            } else {
                (500, "InternalServerError", "Internal server error")
            };
            (
                status,
                "application/x-amz-json-1.0",
                format!("{{\"__type\":\"{namespace}#{code}\",\"message\":\"{message}\"}}"),
            )
        }
        _ => {
            let (status, kind, code, message) = if throttle {
                (400, "Sender", "Throttling", "Rate exceeded")
            } else {
                (500, "Receiver", "InternalError", "Internal error")
            };
            (
                status,
                "text/xml",
                format!(
                    "<ErrorResponse xmlns=\"http://sns.amazonaws.com/doc/2010-03-31/\"><Error><Type>{kind}</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>FAULTPROXY</RequestId></ErrorResponse>"
                ),
            )
        }
    };
    let mut response = Response::new(full(body));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    if service == "sqs" {
        // SQS's JSON protocol also carries the query protocol's code, which the SDK prefers.
        let code = if throttle {
            "ThrottlingException;Sender"
        } else {
            "InternalError;Receiver"
        };
        response
            .headers_mut()
            .insert("x-amzn-query-error", HeaderValue::from_static(code));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: &str, uri: &str, headers: &[(&str, &str)]) -> hyper::http::request::Parts {
        let mut b = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).expect("request").into_parts().0
    }

    #[test]
    fn requests_are_classified_by_operation() {
        let s3 = |m: &str, u: &str| classify(&parts(m, u, &[]), b"").1;
        assert_eq!(s3("GET", "/b/k.pcap"), "s3:GetObject");
        assert_eq!(s3("GET", "/b?list-type=2&prefix=x"), "s3:ListObjectsV2");
        assert_eq!(s3("PUT", "/b/k"), "s3:PutObject");
        assert_eq!(s3("PUT", "/b/k?partNumber=1&uploadId=u"), "s3:UploadPart");
        assert_eq!(s3("POST", "/b/k?uploads"), "s3:CreateMultipartUpload");
        assert_eq!(s3("POST", "/b/k?uploadId=u"), "s3:CompleteMultipartUpload");
        assert_eq!(s3("DELETE", "/b/k?uploadId=u"), "s3:AbortMultipartUpload");
        assert_eq!(s3("DELETE", "/b/k"), "s3:DeleteObject");
        assert_eq!(s3("HEAD", "/b/k"), "s3:HeadObject");
        let ddb = parts(
            "POST",
            "/",
            &[("x-amz-target", "DynamoDB_20120810.PutItem")],
        );
        assert_eq!(classify(&ddb, b"{}").1, "dynamodb:PutItem");
        let sqs = parts(
            "POST",
            "/",
            &[("x-amz-target", "AmazonSQS.ChangeMessageVisibility")],
        );
        assert_eq!(classify(&sqs, b"{}").1, "sqs:ChangeMessageVisibility");
        let sns = parts(
            "POST",
            "/",
            &[(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=test/20261204/us-east-1/sns/aws4_request, SignedHeaders=host, Signature=0",
            )],
        );
        assert_eq!(
            classify(&sns, b"Action=Publish&Version=2010-03-31").1,
            "sns:Publish"
        );
    }

    /// A stand-in for moto: answers every request with 100,000 bytes, counting requests.
    fn upstream() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = std::sync::Arc::clone(&served);
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let head = "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nConnection: close\r\n\r\n";
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&[b'x'; 100_000]);
            }
        });
        (url, served)
    }

    /// `GET path` through the proxy: the status (`None`: no answer) and the body bytes read
    /// before the connection ended.
    fn get(proxy: &FaultProxy, path: &str) -> (Option<u16>, usize) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(proxy.endpoint().trim_start_matches("http://"))
            .expect("connect");
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: AWS4-HMAC-SHA256 Credential=t/20261204/us-east-1/s3/aws4_request\r\nConnection: close\r\n\r\n"
        );
        s.write_all(request.as_bytes()).expect("send");
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
            return (None, 0);
        };
        let status = std::str::from_utf8(&answer[9..12])
            .ok()
            .and_then(|c| c.parse().ok());
        (status, answer.len() - end - 4)
    }

    #[test]
    fn the_proxy_injects_each_fault_and_counts_what_it_passed_on() {
        use std::sync::atomic::Ordering::SeqCst;
        let (url, served) = upstream();
        let proxy = FaultProxy::start(&url);
        // Untouched.
        assert_eq!(get(&proxy, "/b/k"), (Some(200), 100_000));
        assert_eq!(proxy.bytes("s3:GetObject", "/b/k"), 100_000);
        // Throttled: S3's 503 SlowDown, never forwarded.
        proxy.inject(Rule::new("s3:GetObject", Fault::Throttle).times(1));
        let (status, _) = get(&proxy, "/b/k");
        assert_eq!(status, Some(503));
        assert_eq!(served.load(SeqCst), 1);
        // Cut after 1,000 bytes.
        proxy.inject(Rule::new("s3:GetObject", Fault::CutBody(1000)).times(1));
        assert_eq!(get(&proxy, "/b/k"), (Some(200), 1000));
        assert_eq!(served.load(SeqCst), 2);
        // Dropped before forwarding: no answer, nothing served.
        proxy.inject(Rule::new("s3:GetObject", Fault::Drop).times(1));
        assert_eq!(get(&proxy, "/b/k"), (None, 0));
        assert_eq!(served.load(SeqCst), 2);
        // Forwarded, answer lost.
        proxy.inject(Rule::new("s3:GetObject", Fault::DropAnswer).times(1));
        assert_eq!(get(&proxy, "/b/k"), (None, 0));
        assert_eq!(served.load(SeqCst), 3);
        // Delayed.
        proxy.inject(Rule::new("s3:GetObject", Fault::Delay(Duration::from_millis(300))).times(1));
        let started = std::time::Instant::now();
        assert_eq!(get(&proxy, "/b/k"), (Some(200), 100_000));
        assert!(started.elapsed() >= Duration::from_millis(300));
        // The ledger: six requests, four faulted, the bytes passed on.
        assert_eq!(proxy.count("s3:GetObject"), 6);
        assert_eq!(proxy.faults("s3:GetObject"), 5);
        assert_eq!(proxy.bytes("s3:GetObject", ""), 201_000);
    }

    #[test]
    fn rules_match_skip_and_run_out() {
        let mut rules = vec![
            Rule::new("s3:GetObject", Fault::Throttle)
                .matching("a.pcap")
                .after(1)
                .times(2),
            Rule::new("s3:GetObject", Fault::InternalError),
        ];
        let mut get = |path: &str| fire(&mut rules, "s3:GetObject", path);
        // c.pcap: only the second rule, for ever.
        assert_eq!(get("/b/c.pcap"), Some(Fault::InternalError));
        // a.pcap: the first match passes the first rule (and meets the second), the next two
        // are throttled, then the first rule has run out.
        assert_eq!(get("/b/a.pcap"), Some(Fault::InternalError));
        assert_eq!(get("/b/a.pcap"), Some(Fault::Throttle));
        assert_eq!(get("/b/a.pcap"), Some(Fault::Throttle));
        assert_eq!(get("/b/a.pcap"), Some(Fault::InternalError));
        assert_eq!(fire(&mut rules, "s3:PutObject", "/b/a.pcap"), None);
    }
}
