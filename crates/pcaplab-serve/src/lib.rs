//! `pcaplab serve`: the SNS endpoint and the analyst page.
//!
//! - `POST /sns` (and `/update`, the lab's path) takes SNS deliveries. Every one is verified
//!   ([`sns::Verifier`]); anything that fails is answered 403, logged, and changes nothing.
//!   Notifications are recorded (the page's "last updated" and recent list), subscription
//!   confirmations are confirmed (`auto_confirm`) or their token kept for `GET /get_token`.
//! - `GET /` lists the captures, `GET /captures/{id}` shows one with its charts;
//!   `GET /api/captures`, `/api/captures/{id}` and `/api/updates` are the same data as JSON.
//! - `GET /api/captures/{id}/flows.pcap?flow=<Community ID>` cuts a flow's packets out of the
//!   capture, `GET /api/captures/{id}/outputs/{format}` sends a dataset file ([`download`]).
//!
//! Everything is bounded: request bodies, requests in flight, each request's time, the
//! notifications kept, the tokens kept, the captures listed.

mod bounded;
pub mod captures;
mod der;
pub mod download;
pub mod page;
pub mod sns;

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::{get, post};
use pcaplab_cloud::Aws;
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::bounded::Bounded;
use crate::captures::{Captures, Source};
use crate::sns::{Kind, Message, Verifier};

/// Largest request body: an SNS message is at most 256 KiB, and JSON escaping can double it.
pub const MAX_BODY: usize = 1024 * 1024;
/// Requests handled at once; more are answered 503.
pub const MAX_REQUESTS: usize = 64;
/// One request's time limit, certificate fetches included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Notifications kept for the page.
pub const HISTORY: usize = 100;
/// Message ids remembered to drop SNS's redeliveries of one message.
const SEEN: usize = 4096;
/// Subscription confirmations whose tokens are kept for `/get_token`.
const PENDING: usize = 16;
/// Longest excerpt of a notification that is not a pcaplab announcement.
const EXCERPT: usize = 300;

/// How the server behaves.
pub struct Config {
    /// GET the SubscribeURL of a verified SubscriptionConfirmation (otherwise keep its token
    /// for `/get_token`, as the lab did).
    pub auto_confirm: bool,
    /// The AWS configuration, if one was loaded: needed to extract a flow from a capture or
    /// dataset on S3 (without it, such a download is answered 503).
    pub aws: Option<Arc<Aws>>,
}

/// What a pcaplab announcement says (the JSON the Lambda function and the watcher publish).
#[derive(Clone, Debug, Serialize)]
pub struct Announcement {
    pub s3_id: String,
    pub status: Option<String>,
    pub packets: Option<u64>,
    pub bytes: Option<u64>,
}

impl Announcement {
    fn parse(message: &str) -> Option<Announcement> {
        let v: serde_json::Value = serde_json::from_str(message).ok()?;
        Some(Announcement {
            s3_id: v.get("s3Id")?.as_str()?.to_owned(),
            status: v.get("status").and_then(|s| s.as_str()).map(str::to_owned),
            packets: v.get("packets").and_then(serde_json::Value::as_u64),
            bytes: v.get("bytes").and_then(serde_json::Value::as_u64),
        })
    }
}

/// One verified delivery, as the page shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Update {
    pub received_at: String,
    pub kind: Kind,
    pub topic_arn: String,
    pub message_id: String,
    pub timestamp: String,
    pub subject: Option<String>,
    pub announcement: Option<Announcement>,
    /// The start of the message, when it is not an announcement.
    pub excerpt: String,
}

/// A subscription waiting for someone to confirm it with its token.
#[derive(Clone, Debug, Serialize)]
pub struct Pending {
    pub topic_arn: String,
    pub token: String,
    pub subscribe_url: String,
    pub received_at: String,
}

/// The page's view of the deliveries so far.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Snapshot {
    /// Bumped by every recorded delivery: the page reloads when it changes.
    pub version: u64,
    pub last_updated: Option<String>,
    pub accepted: u64,
    pub rejected: u64,
    pub last_rejection: Option<String>,
    /// Oldest first, at most [`HISTORY`].
    pub recent: VecDeque<Update>,
    pub pending: VecDeque<Pending>,
}

struct Updates {
    snapshot: Snapshot,
    /// Topic and message id of the deliveries recorded, the last [`SEEN`].
    seen: Bounded<String, ()>,
}

impl Default for Updates {
    fn default() -> Self {
        Updates {
            snapshot: Snapshot::default(),
            seen: Bounded::new(SEEN),
        }
    }
}

impl Updates {
    /// Record a verified delivery; false if this message id was recorded already.
    fn record(&mut self, m: &Message) -> bool {
        if !self
            .seen
            .insert(format!("{}\n{}", m.topic_arn, m.message_id), ())
        {
            return false;
        }
        let now = rfc3339(SystemTime::now());
        let s = &mut self.snapshot;
        s.version += 1;
        s.accepted += 1;
        s.last_updated = Some(now.clone());
        let announcement = match m.kind {
            Kind::Notification => Announcement::parse(&m.message),
            _ => None,
        };
        let excerpt = if announcement.is_some() {
            String::new()
        } else {
            excerpt(&m.message)
        };
        // A capture announced again (a redelivered notification converted once more, a publish
        // retried after its answer was lost) is listed once, as its latest announcement.
        if let Some(a) = &announcement {
            s.recent.retain(|u| {
                u.announcement
                    .as_ref()
                    .is_none_or(|old| old.s3_id != a.s3_id)
            });
        }
        s.recent.push_back(Update {
            received_at: now,
            kind: m.kind,
            topic_arn: m.topic_arn.clone(),
            message_id: m.message_id.clone(),
            timestamp: m.timestamp.clone(),
            subject: m.subject.clone(),
            announcement,
            excerpt,
        });
        while s.recent.len() > HISTORY {
            s.recent.pop_front();
        }
        true
    }

    fn reject(&mut self, why: String) {
        self.snapshot.rejected += 1;
        self.snapshot.last_rejection = Some(why);
    }
}

fn excerpt(s: &str) -> String {
    if s.chars().count() <= EXCERPT {
        s.to_owned()
    } else {
        let mut e: String = s.chars().take(EXCERPT - 1).collect();
        e.push('…');
        e
    }
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The running server's state.
pub struct App {
    captures: Captures,
    verifier: Verifier,
    config: Config,
    updates: Mutex<Updates>,
    requests: Semaphore,
    /// Flow extracts running ([`download::MAX_EXTRACTS`]).
    extracts: Arc<Semaphore>,
}

impl App {
    pub fn new(source: Source, verifier: Verifier, config: Config) -> Arc<App> {
        Arc::new(App {
            captures: Captures::new(source),
            verifier,
            config,
            updates: Mutex::new(Updates::default()),
            requests: Semaphore::new(MAX_REQUESTS),
            extracts: Arc::new(Semaphore::new(download::MAX_EXTRACTS)),
        })
    }

    fn updates(&self) -> std::sync::MutexGuard<'_, Updates> {
        self.updates.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn snapshot(&self) -> Snapshot {
        self.updates().snapshot.clone()
    }

    fn source_name(&self) -> String {
        match self.captures.source() {
            Source::Dir(d) => format!("directory {}", d.display()),
            Source::Table { table, .. } => format!("DynamoDB table {table}"),
        }
    }
}

/// The routes, with their limits.
pub fn router(app: Arc<App>) -> Router {
    // An extract may take longer than a page: it has its own time limit.
    let extracts = Router::new()
        .route("/api/captures/{id}/flows.pcap", get(download::flow_pcap))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&app),
            extract_limits,
        ));
    Router::new()
        .route("/", get(index))
        .route("/captures/{id}", get(capture_page))
        .route("/api/captures", get(api_list))
        .route("/api/captures/{id}", get(api_detail))
        .route(
            "/api/captures/{id}/outputs/{format}",
            get(download::output_file),
        )
        .route("/api/updates", get(api_updates))
        .route("/get_token", get(get_token))
        .route("/sns", post(sns_endpoint))
        .route("/update", post(sns_endpoint))
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(Arc::clone(&app), limits))
        .merge(extracts)
        .with_state(app)
}

/// Serve until `shutdown` completes; requests in flight are finished first.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(app))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn limits(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    limited(&app, REQUEST_TIMEOUT, request, next).await
}

async fn extract_limits(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    limited(&app, download::EXTRACT_TIMEOUT, request, next).await
}

/// At most [`MAX_REQUESTS`] at once, each answered (its body may stream after) within `time`.
async fn limited(app: &App, time: Duration, request: Request, next: Next) -> Response {
    let Ok(_permit) = app.requests.try_acquire() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "busy: too many requests\n").into_response();
    };
    match tokio::time::timeout(time, next.run(request)).await {
        Ok(response) => response,
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "timed out\n").into_response(),
    }
}

async fn sns_endpoint(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let header_type = headers
        .get("x-amz-sns-message-type")
        .map(|v| v.to_str().unwrap_or("(not text)"));
    let message = match app.verifier.verify(&body, header_type).await {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, "SNS delivery rejected");
            app.updates().reject(e.to_string());
            return (StatusCode::FORBIDDEN, format!("rejected: {e}\n")).into_response();
        }
    };
    match message.kind {
        Kind::Notification | Kind::UnsubscribeConfirmation => {
            let fresh = app.updates().record(&message);
            tracing::info!(
                kind = message.kind.as_str(),
                topic = %message.topic_arn,
                message_id = %message.message_id,
                duplicate = !fresh,
                "SNS delivery accepted"
            );
            if fresh {
                app.captures.invalidate().await;
            }
            (StatusCode::OK, "ok\n").into_response()
        }
        Kind::SubscriptionConfirmation if app.config.auto_confirm => {
            match app.verifier.confirm(&message).await {
                Ok(()) => {
                    app.updates().record(&message);
                    tracing::info!(topic = %message.topic_arn, "subscription confirmed");
                    (StatusCode::OK, "confirmed\n").into_response()
                }
                Err(e) => {
                    // SNS sends the confirmation again; the next attempt may work.
                    tracing::warn!(topic = %message.topic_arn, error = %e, "cannot confirm the subscription");
                    (StatusCode::BAD_GATEWAY, format!("cannot confirm: {e}\n")).into_response()
                }
            }
        }
        Kind::SubscriptionConfirmation => {
            let mut updates = app.updates();
            if updates.record(&message) {
                let pending = &mut updates.snapshot.pending;
                pending.push_back(Pending {
                    topic_arn: message.topic_arn.clone(),
                    token: message.token.clone().unwrap_or_default(),
                    subscribe_url: message.subscribe_url.clone().unwrap_or_default(),
                    received_at: rfc3339(SystemTime::now()),
                });
                while pending.len() > PENDING {
                    pending.pop_front();
                }
            }
            drop(updates);
            tracing::info!(topic = %message.topic_arn, "subscription confirmation kept: token at /get_token");
            (StatusCode::OK, "token kept\n").into_response()
        }
    }
}

/// The newest pending confirmation's token, as the lab showed it.
async fn get_token(State(app): State<Arc<App>>) -> Response {
    match app.updates().snapshot.pending.back() {
        Some(p) => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!(
                "{}\n\nTopicArn: {}\nSubscribeURL: {}\nReceived: {}\n\
                 Confirm with: aws sns confirm-subscription --topic-arn {} --token <the token above>\n",
                p.token, p.topic_arn, p.subscribe_url, p.received_at, p.topic_arn
            ),
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "no subscription confirmation received (or it was confirmed automatically)\n",
        )
            .into_response(),
    }
}

fn no_store<R: IntoResponse>(r: R) -> Response {
    let mut r = r.into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn index(State(app): State<Arc<App>>) -> Response {
    let listing = app.captures.list().await;
    let snapshot = app.snapshot();
    let html = page::index(
        &snapshot,
        listing.as_ref().map_err(ToString::to_string),
        &app.source_name(),
    );
    let status = if listing.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::BAD_GATEWAY
    };
    no_store((status, Html(html)))
}

async fn capture_page(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let snapshot = app.snapshot();
    match app.captures.get(&id).await {
        Ok(Some(detail)) => no_store(Html(page::capture(&snapshot, &detail))),
        Ok(None) => no_store((
            StatusCode::NOT_FOUND,
            Html(page::message(&snapshot, "No such capture", &id)),
        )),
        Err(e) => no_store((
            StatusCode::BAD_GATEWAY,
            Html(page::message(
                &snapshot,
                "Cannot read the capture",
                &e.to_string(),
            )),
        )),
    }
}

async fn api_list(State(app): State<Arc<App>>) -> Response {
    match app.captures.list().await {
        Ok(listing) => no_store(Json(listing)),
        Err(e) => api_error(StatusCode::BAD_GATEWAY, &e.to_string()),
    }
}

async fn api_detail(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    match app.captures.get(&id).await {
        Ok(Some(detail)) => no_store(Json(detail)),
        Ok(None) => api_error(StatusCode::NOT_FOUND, &format!("no capture {id:?}")),
        Err(e) => api_error(StatusCode::BAD_GATEWAY, &e.to_string()),
    }
}

async fn api_updates(State(app): State<Arc<App>>) -> Response {
    no_store(Json(app.snapshot()))
}

pub(crate) fn api_error(status: StatusCode, message: &str) -> Response {
    no_store((status, Json(serde_json::json!({ "error": message }))))
}
